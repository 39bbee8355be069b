"""The vectorised exp of kernels/fastmlp_exp.h and the sigmoid, tanh and softmax built on it.

Bounds (stated in ulps of the true value, from long double, numpy's ``np.exp``/``np.tanh``
on ``np.longdouble``, 64-bit significand on x86-64, so the reference itself is ~2^-11 ulp
of a double from the truth): float32 exp is computed in double and rounded once, so it is
within 1 ulp of the correctly rounded value (0 almost always); float32 sigmoid and tanh are
computed in float, within 2 ulps of the double formula rounded to float over all 2^32
inputs, so within 2.5 of the truth;
float64 exp within 1 ulp (measured max 0.95), sigmoid within 2.5 and tanh within 3
(measured 2.1 and 2.5; see the header's comment for the exhaustive and sampled runs,
which test_ulp_program repeats on a stride of the float32 range).
"""
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_bits_identical, assert_within, elementwise_bound, to_layout

import fastmlp
from fastmlp import _backend
from fastmlp import functions as F
from fastmlp import layers as L
from fastmlp.reference import functions as RF
from fastmlp.reference import layers as R

ROOT = Path(__file__).resolve().parents[1]
LD = np.longdouble
HAVE_LONG_DOUBLE = np.finfo(LD).nmant >= 63   # x86-64's 80-bit long double
needs_long_double = pytest.mark.skipif(not HAVE_LONG_DOUBLE,
                                       reason="long double is no wider than double here")
BOUND_ULPS = {"exp": {np.float32: 1.0, np.float64: 1.0},
              "sigmoid": {np.float32: 2.5, np.float64: 2.5},
              "tanh": {np.float32: 2.5, np.float64: 3.0}}


def ulps_from_true(got, true, dtype):
    """|got - true| in ulps of ``true`` rounded to ``dtype`` (subnormal spacing below the
    normal range); 0 where both are equal (infinities) or both NaN."""
    got = np.asarray(got, dtype)
    with np.errstate(over="ignore"):
        rounded = np.asarray(true).astype(dtype)
    spacing = np.spacing(np.abs(rounded)).astype(LD)
    spacing = np.where(spacing > 0, spacing, LD(np.finfo(dtype).smallest_subnormal))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got.astype(LD) - np.asarray(true, LD)) / spacing
    same = (got == rounded) | (np.isnan(got) & np.isnan(rounded))
    return np.where(same, 0, err).astype(np.float64)


def _random_inputs(rng, dtype, n=200_000):
    """Uniform over exp's finite range, over [-1, 1], the subnormal-result range, and wide
    normal values, plus every float of a few binades around 0 (subnormal inputs too)."""
    info = np.finfo(dtype)
    hi = float(np.log(info.max))
    lo = float(np.log(info.smallest_subnormal)) - 0.5
    sub = float(np.log(info.tiny))
    parts = [rng.uniform(lo, hi, n), rng.uniform(-1, 1, n // 4), rng.uniform(lo, sub, n // 4),
             rng.normal(0, 10, n // 4), rng.normal(0, 1e-6, n // 8),
             np.array([info.smallest_subnormal, -info.smallest_subnormal, info.tiny, -info.tiny])]
    return np.concatenate(parts).astype(dtype)


@needs_long_double
@pytest.mark.parametrize("name", ["exp", "sigmoid", "tanh"])
def test_random_within_stated_ulps(rng, dtype, name):
    x = _random_inputs(rng, dtype)
    xl = x.astype(LD)
    with np.errstate(over="ignore"):
        true = {"exp": lambda: np.exp(xl), "tanh": lambda: np.tanh(xl),
                "sigmoid": lambda: 1 / (1 + np.exp(-xl))}[name]()
        got = {"exp": _backend.exp, "sigmoid": F.sigmoid, "tanh": F.tanh}[name](x)
    err = ulps_from_true(got, true, dtype)
    worst = int(np.argmax(err))
    assert err.max() <= BOUND_ULPS[name][dtype], (
        f"{name}({x[worst]!r}) = {got[worst]!r}, true {true[worst]!r}: {err[worst]:.3f} ulps")


def _edges(dtype):
    info = np.finfo(dtype)
    big = float(np.log(info.max))
    small = float(np.log(info.smallest_subnormal))
    tiny = float(np.log(info.tiny))
    vals = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan, big, np.nextafter(big, 1e9),
            np.nextafter(big, 0), 2 * big, info.max, small, small - 1, np.nextafter(small, 0),
            tiny, np.nextafter(tiny, 0), -info.max, info.smallest_subnormal, info.tiny,
            -info.smallest_subnormal, 1e-30, -1e-30, 0.5 * np.log(2), -0.5 * np.log(2), 22.0,
            -22.0, 9.0, -9.0, 1e4, -1e4]
    return np.array(vals, dtype)


@needs_long_double
def test_exp_edges(dtype):
    """+-inf, NaN, overflow to +inf, underflow to +0 through the subnormals (not flushed)."""
    x = _edges(dtype)
    with np.errstate(over="ignore", under="ignore"):
        got = _backend.exp(x)
        true = np.exp(x.astype(LD))
        want = true.astype(dtype)   # the correctly rounded values (overflow -> inf, 0)
    assert np.array_equal(np.isnan(got), np.isnan(x))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert np.array_equal(got == 0, want == 0)
    assert got[x == np.inf][0] == np.inf and got[x == -np.inf][0] == 0
    assert not np.signbit(got[~np.isnan(got)]).any()   # exp is never -0
    assert (got[(x == 0)] == 1).all()
    subnormal = (want > 0) & (want < np.finfo(dtype).tiny)
    assert subnormal.sum() >= 2 and (got[subnormal] > 0).all()
    assert ulps_from_true(got, true, dtype).max() <= 1


def _every_float32(a, b):
    lo, hi = sorted(np.array([a, b], np.float32).view(np.int32).tolist())
    return np.arange(lo, hi + 1, dtype=np.int32).view(np.float32)


def test_float32_thresholds_every_value():
    """Every float32 around the overflow threshold and over the subnormal-result range:
    inf, 0 and subnormals exactly where exp in double rounded once to float has them, and
    every value within 1 ulp (1 subnormal step) of it."""
    x = np.concatenate([_every_float32(88.6, 88.8), _every_float32(-104.5, -87.0)])
    with np.errstate(over="ignore", under="ignore"):
        want = np.exp(x.astype(np.float64)).astype(np.float32)
    assert np.isinf(want).any() and (want == 0).any() and (want < np.finfo(np.float32).tiny).any()
    got = _backend.exp(x)
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert np.array_equal(got == 0, want == 0)
    tiny = np.finfo(np.float32).tiny
    assert np.array_equal(got < tiny, want < tiny)
    steps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64))
    assert steps.max() <= 1


def test_exp_subnormal_results(rng, dtype):
    """Results below the normal range come out as subnormals within one subnormal step."""
    info = np.finfo(dtype)
    x = rng.uniform(np.log(info.smallest_subnormal), np.log(info.tiny), 10_000).astype(dtype)
    with np.errstate(under="ignore"):
        want = np.exp(x.astype(np.float64)) if dtype == np.float32 else np.exp(x)
        got = _backend.exp(x)
    step = float(info.smallest_subnormal)
    assert (np.abs(got.astype(np.float64) - want) <= 1.0 * step).all()
    assert (got < info.tiny).any() and (got > 0).any()


def test_sigmoid_tanh_edges(dtype):
    x = _edges(dtype)
    s, t = F.sigmoid(x), F.tanh(x)
    finite = ~np.isnan(x)
    assert np.array_equal(np.isnan(s), ~finite) and np.array_equal(np.isnan(t), ~finite)
    assert ((s[finite] >= 0) & (s[finite] <= 1)).all()
    assert ((t[finite] >= -1) & (t[finite] <= 1)).all()
    assert s[x == np.inf][0] == 1 and s[x == -np.inf][0] == 0
    assert t[x == np.inf][0] == 1 and t[x == -np.inf][0] == -1
    # tanh keeps the sign of zero and is odd, bit for bit
    assert_bits_identical(F.tanh(np.array([0.0, -0.0], dtype)), np.array([0.0, -0.0], dtype))
    assert_bits_identical(F.tanh(-x[finite]), -F.tanh(x[finite]))
    # tiny inputs: tanh(x) = x and sigmoid(x) = 1/2 to the last bit
    tiny = np.array([1e-30, -1e-30, np.finfo(dtype).smallest_subnormal], dtype)
    assert_bits_identical(F.tanh(tiny), tiny)
    assert (F.sigmoid(tiny) == dtype(0.5)).all()
    # saturation: tanh is exactly +-1 from |x| = 22 (float64) / 9.01 (float32)
    sat = np.array([22.0, 40.0, 1e300 if dtype == np.float64 else 1e30], dtype)
    assert (F.tanh(sat) == 1).all() and (F.tanh(-sat) == -1).all()


def test_softmax_rows_and_extremes(rng, dtype):
    """Softmax on the vectorised exp: rows sum to 1 within 4*C*u, the reference within 4u
    per entry, no overflow for huge logits, and a row with -inf entries gives exact zeros."""
    x = rng.normal(0, 20, (64, 37)).astype(dtype)
    y = F.softmax(x)
    u = float(np.finfo(dtype).eps) / 2
    assert (np.abs(y.astype(np.float64).sum(1) - 1) <= 4 * 37 * u).all()
    # the reference from the same shifted logits x - max (rounded in dtype, as the kernel
    # has them), then in float64: what is left is exp's and the division's rounding
    shifted = (x - x.max(axis=1, keepdims=True)).astype(np.float64)
    ref = np.asarray(RF.softmax(shifted))
    assert_within(y, ref.astype(dtype), 8 * u * np.abs(ref) + 4 * float(np.finfo(dtype).tiny),
                  "softmax")
    big = np.array([[np.finfo(dtype).max, 0, -np.finfo(dtype).max], [-np.inf, 0, 1]], dtype)
    with np.errstate(all="raise"):
        yb = F.softmax(big)
    assert yb[0].tolist() == [1, 0, 0] and yb[1, 0] == 0 and np.isfinite(yb).all()


def test_ulp_program(tmp_path):
    """tests/exp_ulps.c (the program behind the header's figures) on every 4099th float32
    bit pattern and 10^6 float64 samples, compiled with the build's flags."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler {cc!r} to build tests/exp_ulps.c")
    exe = tmp_path / "exp_ulps"
    subprocess.run([cc, "-O3", "-fno-math-errno", "-ffp-contract=off", f"-I{ROOT / 'kernels'}",
                    str(ROOT / "tests" / "exp_ulps.c"), "-lm", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe), "4099", "1000000"], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    got = dict(line.split("=") for line in out.split())
    assert int(got["float32_inputs"]) == -(-2**32 // 4099)
    for name in ("exp", "sigmoid", "tanh"):
        assert int(got[f"float32_{name}_nan_mismatch"]) == 0
        assert int(got[f"float32_{name}_max_ulps"]) <= (1 if name == "exp" else 2)
    assert int(got["float64_exp_nan_mismatch"]) == 0
    assert int(got["float64_exp_max_ulps_vs_libm"]) <= 1
    if HAVE_LONG_DOUBLE:
        assert float(got["float64_exp_max_ulps_vs_expl"]) <= BOUND_ULPS["exp"][np.float64]
        assert (float(got["float64_sigmoid_max_ulps_vs_long_double"])
                <= BOUND_ULPS["sigmoid"][np.float64])
        assert float(got["float64_tanh_max_ulps_vs_tanhl"]) <= BOUND_ULPS["tanh"][np.float64]


# ---------------------------------------------------------------- the layers

@pytest.mark.parametrize("shape", [(1,), (3, 17), (100, 33), (2, 3, 5)])
def test_tanh_layer_vs_reference(rng, dtype, layout, shape):
    x = rng.normal(0, 2, shape).astype(dtype)
    dout = rng.normal(0, 1, shape).astype(dtype)
    xl, doutl = to_layout(x, layout), to_layout(dout, layout)
    c, r = L.Tanh(), R.Tanh()
    out, rout = c.forward(xl), r.forward(x)
    ref64 = np.tanh(x.astype(np.float64))
    bound = elementwise_bound(ref64, dtype)
    if dtype == np.float64:   # both sides' tanh err (<= 3 and numpy's ~1.2 ulps): 2 * 4u
        bound = 2 * bound
    assert_within(out, ref64.astype(dtype), bound, "tanh forward")
    assert_within(rout, ref64.astype(dtype), bound, "reference tanh forward")
    # backward from the same out: the same IEEE operations, so the same bits
    r.out = c.out
    assert_bits_identical(c.backward(doutl), r.backward(dout))


def test_tanh_backward_kernel_bitwise(rng, dtype):
    y = np.tanh(rng.normal(0, 2, 1000)).astype(dtype)
    y[:4] = [1, -1, 0, np.nextafter(dtype(1), dtype(0))]
    dout = rng.normal(0, 1, 1000).astype(dtype)
    assert_bits_identical(_backend.tanh_backward(dout, y), dout * ((1 - y) * (1 + y)))


def test_tanh_layer_gradient():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1.5, (4, 6))
    dout = rng.normal(0, 1, (4, 6))
    layer = L.Tanh()
    layer.forward(x)
    dx = layer.backward(dout)

    def f(_):
        return float(np.sum(L.Tanh().forward(x) * dout))
    numeric = fastmlp.gradient.numerical_gradient(f, x, 1e-5)
    np.testing.assert_allclose(dx, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("module", [L, R], ids=["compiled", "reference"])
def test_identity_layer(rng, dtype, module):
    x = rng.normal(0, 1, (5, 3)).astype(dtype)
    layer = module.Identity()
    assert layer.shape is None and layer.dtype is None
    out = layer.forward(x)
    assert_bits_identical(out, x)
    assert not np.shares_memory(out, x)
    dout = rng.normal(0, 1, (5, 3)).astype(dtype)
    dx = layer.backward(dout)
    assert_bits_identical(dx, dout)
    assert not np.shares_memory(dx, dout)
    with pytest.raises(ValueError, match="dout"):
        layer.backward(np.ones((3, 5)))
    with pytest.raises(RuntimeError):
        module.Identity().backward(dout)


@pytest.mark.parametrize("module", [L, R], ids=["compiled", "reference"])
def test_tanh_layer_bad_input(module):
    with pytest.raises(RuntimeError):
        module.Tanh().backward(np.ones(3))
    layer = module.Tanh()
    with pytest.raises(TypeError, match="x"):
        layer.forward("abc")
    assert layer.out is None
    layer.forward(np.ones(4))
    before = layer.out.copy()
    with pytest.raises(ValueError, match="dout"):
        layer.backward(np.ones(5))
    assert_bits_identical(layer.out, before)


def test_functions_tanh_matches_reference_semantics():
    assert F.tanh(np.zeros(3, np.float32)).dtype == np.float32
    assert RF.tanh(np.zeros(3, np.float32)).dtype == np.float32
    assert F.tanh(np.arange(3)).dtype == np.float64
    np.testing.assert_allclose(F.tanh([0.5, -2.0]), np.tanh([0.5, -2.0]), rtol=1e-15)


def test_threads_do_not_change_bits(dtype):
    """The chunked OpenMP kernels are elementwise: any thread count gives the same bits."""
    x = np.random.default_rng(3).normal(0, 4, 3 * 16384 + 5).astype(dtype)
    from fastmlp._kernels import activations
    outs = []
    for n in (1, 2, 4):
        for fn in (activations.tanh_forward, activations.sigmoid_forward):
            out = np.empty_like(x)
            fn(x, out, n)
            outs.append(out)
    for k in range(2):
        assert_bits_identical(outs[2 + k], outs[k])
        assert_bits_identical(outs[4 + k], outs[k])


CLONE_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <fastmlp_exp.h>
int main(void) {
    enum { N = 4099 };
    static double xd[N], od[N]; static float xf[N], of[N];
    unsigned long long s = 1;
    for (int i = 0; i < N; i++) {   /* spread over exp's whole range, edges included */
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        xd[i] = ((double)(s >> 11) / 9007199254740992.0 - 0.5) * 1500.0;
        xf[i] = (float)(xd[i] / 8.0);
    }
    fastmlp_exp_d(xd, 0.0, od, N); fwrite(od, sizeof od, 1, stdout);
    fastmlp_exp_f(xf, 0.0f, of, N); fwrite(of, sizeof of, 1, stdout);
    fastmlp_sigmoid_d(xd, od, 0, N); fwrite(od, sizeof od, 1, stdout);
    fastmlp_sigmoid_f(xf, of, 0, N); fwrite(of, sizeof of, 1, stdout);
    fastmlp_tanh_d(xd, od, 0, N); fwrite(od, sizeof od, 1, stdout);
    fastmlp_tanh_f(xf, of, 0, N); fwrite(of, sizeof of, 1, stdout);
    return 0;
}
"""


def _cpu_has(*flags):
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return all(f" {flag}" in text for flag in flags)


@pytest.mark.skipif(not _cpu_has("avx2", "fma"), reason="needs a CPU that runs x86-64-v3 code")
def test_baseline_and_avx2_code_agree_bitwise(tmp_path):
    """The passes compiled for baseline x86-64 and for x86-64-v3 (AVX2, FMA) with the
    build's flags (the two clones a load may pick here) give the same bits: every clone does
    the same IEEE operations in the same order (-ffp-contract=off)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler {cc!r}")
    source = tmp_path / "clones.c"
    source.write_text(CLONE_PROGRAM)
    outputs = []
    for arch in ("x86-64", "x86-64-v3"):
        exe = tmp_path / f"clones-{arch}"
        # FASTMLP_CLONES empty: one plain function per -march, not load-time dispatch
        subprocess.run([cc, "-O3", "-fno-math-errno", "-ffp-contract=off", f"-march={arch}",
                        "-DFASTMLP_CLONES_H", "-DFASTMLP_CLONES=", f"-I{ROOT / 'kernels'}",
                        str(source), "-lm", "-o", str(exe)], check=True)
        outputs.append(subprocess.run([str(exe)], capture_output=True, check=True).stdout)
    assert len(outputs[0]) == 6 * 4099 * 6 and outputs[0] == outputs[1]
