"""Shared fixtures and checks for the kernel, equivalence, bad-input and thread tests.

Tolerances follow ../shared/TESTING.md: u is the unit roundoff of the dtype,
reductions (GEMM, db, losses) use the forward-error bound
``abs(got - ref) <= 2*K*u*(abs(X) @ abs(W)) + 4*u*abs(ref)``, elementwise
ops ``rtol 4u`` (Relu/Add/Mul bitwise), integer-valued data bitwise.
"""
import os
import signal

# A run started in the background by a non-interactive shell inherits SIGINT ignored, and
# then neither this process nor its children (which inherit an ignored signal) can see a
# Ctrl-C: the interrupt tests need Python's own handler, as in a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# scikit-learn's estimator checks test numpy input through the array API only with
# this set (its own CI sets it); it must be set before scipy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import _blas  # noqa: E402
from fastmlp import threads as _threads  # noqa: E402

# Modest example counts: the whole kernel/equivalence/bad-input/thread set runs in < 60 s.
settings.register_profile(
    "fastmlp", max_examples=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("FASTMLP_HYPOTHESIS_PROFILE", "fastmlp"))

DTYPES = [np.float32, np.float64]
LAYOUTS = ["C", "F", "strided", "readonly", "bigendian"]
SIZES = [1, 2, 3, 17, 100, 1023]
# (batch, features, outputs): every size at least once, odd combinations, small x large.
SHAPES = [(1, 1, 1), (2, 3, 1), (3, 2, 17), (17, 100, 3), (100, 17, 2), (1, 1023, 3),
          (1023, 3, 1), (3, 1023, 100), (17, 1, 1023), (100, 100, 17), (2, 17, 100)]


def unit_roundoff(dtype):
    """u: half the machine epsilon (1.1e-16 for float64, 6.0e-8 for float32)."""
    return float(np.finfo(dtype).eps) / 2


# Elementwise rtol (4u, allows FMA), loss-scalar rtol, numpy-fallback rtol/atol-scale, per dtype.
TOL = {
    np.float32: {"elementwise": 4 * unit_roundoff(np.float32), "loss": 1e-5,
                 "rtol": 1e-4, "atol_scale": 1e-5},
    np.float64: {"elementwise": 4 * unit_roundoff(np.float64), "loss": 1e-12,
                 "rtol": 1e-9, "atol_scale": 1e-12},
}


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: reproducible, different per test."""
    seed = sum(map(ord, request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)


@pytest.fixture(params=DTYPES, ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture
def tol(dtype):
    return TOL[dtype]


@pytest.fixture(params=LAYOUTS)
def layout(request):
    return request.param


@pytest.fixture(params=[1, 2, 4], ids=lambda n: f"threads{n}")
def n_threads(request):
    return request.param


def to_layout(a, layout):
    """A new array with the values of ``a`` (C-contiguous) in the given memory layout.

    ``C``: C-contiguous copy. ``F``: Fortran order. ``strided``: every other
    element of a larger buffer along each axis (non-contiguous, with the gaps
    filled with a sentinel). ``readonly``: a C copy with ``writeable=False``.
    ``bigendian``: the same values stored big-endian.
    """
    a = np.ascontiguousarray(a) if np.ndim(a) else np.array(a)
    if layout == "C":
        return a.copy()
    if layout == "F":
        return np.asfortranarray(a) if a.ndim >= 2 else np.asfortranarray(a).copy()
    if layout == "strided":
        if a.ndim == 0:
            return a.copy()
        big = np.empty(tuple(2 * s for s in a.shape), a.dtype)
        big[...] = 7 if a.dtype.kind in "biu" else (np.nan if a.dtype.kind == "f" else 0)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "bigendian":
        return a.astype(a.dtype.newbyteorder(">"))
    raise ValueError(f"unknown layout {layout!r}")


def snapshot(a):
    """(bytes, dtype, shape, strides, writeable) of an array: compare before/after a call."""
    return (np.ascontiguousarray(a).tobytes(), a.dtype, a.shape, a.strides, a.flags.writeable)


def assert_same_meta(got, ref):
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"shape {got.shape} != reference {ref.shape}"
    assert got.dtype == ref.dtype, f"dtype {got.dtype} != reference {ref.dtype}"


def assert_bitwise(got, ref):
    """Equal dtype, shape and values (NaN == NaN; +0 == -0 as numpy compares)."""
    assert_same_meta(got, ref)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref), strict=True)


def assert_bits_identical(got, ref):
    """Identical bytes (sign of zero and NaN payloads included)."""
    assert_same_meta(got, ref)
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(ref).tobytes()


def assert_within(got, ref, bound, what=""):
    """abs(got - ref) <= bound elementwise, in float64, with the worst offender reported."""
    assert_same_meta(got, ref)
    g, r = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    bound = np.broadcast_to(np.asarray(bound, np.float64), r.shape)
    with np.errstate(invalid="ignore"):
        err = np.abs(g - r)
    same = (g == r) | (np.isnan(g) & np.isnan(r))  # equal infinities and NaN where NaN is due
    bad = ~same & ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - np.nan_to_num(bound), -np.inf)), r.shape)
        pytest.fail(f"{what}: {int(bad.sum())} of {r.size} outside the bound; at {i}: "
                    f"got {g[i]!r}, ref {r[i]!r}, |diff| {err[i]:.3g} > bound {bound[i]:.3g}")


def reduction_bound(abs_product, k, dtype, ref):
    """TESTING.md's forward-error bound for a length-k reduction: 2·K·u·(|X|@|W|) + 4u·|ref|."""
    u = unit_roundoff(dtype)
    return 2 * k * u * np.asarray(abs_product, np.float64) + 4 * u * np.abs(np.asarray(ref, np.float64))


def elementwise_bound(ref, dtype, atol_subnormals=True):
    """rtol 4u (FMA allowed); results in the subnormal range get a few subnormal steps."""
    u = unit_roundoff(dtype)
    bound = 4 * u * np.abs(np.asarray(ref, np.float64))
    if atol_subnormals:
        bound = bound + 4 * float(np.finfo(dtype).smallest_subnormal)
    return bound


@pytest.fixture(autouse=True, scope="session")
def _machine_load_does_not_warn():
    """Whether this (shared, often busy) machine is oversubscribed must not change what a
    test sees: the warning, once per process, counts as given. tests/test_progress_threads.py
    checks it with injected loads and cores."""
    from fastmlp import _oversubscription
    _oversubscription._warned = True
    yield


def numpy_blas_threads():
    """numpy's BLAS thread count as threadpoolctl reports it (the library fastmlp uses)."""
    from threadpoolctl import threadpool_info
    path = _blas.numpy_blas_path()
    counts = [i["num_threads"] for i in threadpool_info() if i["filepath"] == path]
    return counts[0] if counts else None


def set_numpy_blas(n):
    """Limit numpy's BLAS (only it: not scipy's bundled copy) to ``n`` threads."""
    from threadpoolctl import ThreadpoolController
    ThreadpoolController().select(filepath=_blas.numpy_blas_path()).limit(limits=n)


@pytest.fixture
def restore_threads():
    """Put fastmlp's thread setting and numpy's BLAS pool back as they were."""
    from threadpoolctl import ThreadpoolController

    path = _blas.numpy_blas_path()
    ctl = ThreadpoolController()
    before = [lib.num_threads for lib in ctl.select(filepath=path).lib_controllers] if path else []
    yield
    fastmlp.set_num_threads(None)
    if path and before:
        ThreadpoolController().select(filepath=path).limit(limits=before[0])


@pytest.fixture
def parallel_kernels(monkeypatch, restore_threads):
    """Make every kernel take its OpenMP path whenever more than one thread is set."""
    monkeypatch.setattr(_threads, "PARALLEL_MIN_ELEMENTS", 0)
    # fastmlp.threads keeps the kernels serial beside a pthreads BLAS (for speed); the
    # OpenMP path must still give the same bits, so the tests open that gate.
    monkeypatch.setattr(_threads, "OPENMP_SHARES_BLAS_POOL", True)
    yield
