"""Each function of fastmlp._backend (the one door to the compiled kernels) against numpy.

The oracle is a numpy one-liner or fastmlp.reference.functions on the same
values; tolerances are TESTING.md's: the reduction bound for GEMMs, column
sums and losses, rtol 4u elementwise, bitwise for Relu/Mul/Add and for
integer-valued data. Also: the np.matmul fallback agrees bitwise with the
BLAS route, out= arrays are used, and no function writes into its inputs.
"""
import numpy as np
import pytest
from conftest import (
    DTYPES,
    SHAPES,
    SIZES,
    assert_bits_identical,
    assert_bitwise,
    assert_within,
    elementwise_bound,
    reduction_bound,
    snapshot,
    unit_roundoff,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastmlp
from fastmlp import _backend
from fastmlp.reference import functions as RF
from fastmlp.reference import layers as R

LOG_EPS = 1e-7  # the book's delta inside the log


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _ints(rng, shape, dtype, high=8):
    """Integer-valued data with abs(v) <= 8: every product and sum below is exact."""
    return rng.integers(-high, high + 1, size=shape).astype(dtype)


def _softmax_oracle(x):
    """softmax of what a kernel actually exponentiates: fl(x - rowmax) in x's dtype, then in f64.

    Softmax is shift-invariant, so this is the exact softmax of the rounded
    shifted logits (removing the conditioning of x - max, which both the
    kernel and the reference incur identically).
    """
    shifted = x - x.max(axis=-1, keepdims=True)
    return RF.softmax(shifted.astype(np.float64))


def _softmax_bound(ref, n_classes, dtype):
    """(2C + 6)·u·|ref|: a length-C sum (2·C·u, TESTING.md) plus exp and division roundings."""
    u = unit_roundoff(dtype)
    return (2 * n_classes + 6) * u * np.abs(ref) + 4 * float(np.finfo(dtype).smallest_subnormal)


def _book_loss(y, labels):
    """The book's cross_entropy_error in float64: -sum(log(y[i, t_i] + 1e-7)) / N."""
    y = np.asarray(y, np.float64)
    return float(-np.sum(np.log(y[np.arange(y.shape[0]), labels] + LOG_EPS)) / y.shape[0])


# ---------------------------------------------------------------- matrix products

@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_vs_numpy(rng, dtype, m, k, n, trans_a, trans_b):
    a = _rand(rng, (k, m) if trans_a else (m, k), dtype)
    b = _rand(rng, (n, k) if trans_b else (k, n), dtype)
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    got = _backend.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    ref = opa @ opb
    assert_within(got, ref, reduction_bound(np.abs(opa).astype(np.float64) @ np.abs(opb), k, dtype, ref),
                  "matmul")


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_integer_valued_bitwise(rng, dtype, m, k, n):
    a, b = _ints(rng, (m, k), dtype), _ints(rng, (k, n), dtype)
    assert_bitwise(_backend.matmul(a, b), a @ b)
    assert_bitwise(_backend.matmul(np.ascontiguousarray(a.T), b, trans_a=True), a @ b)
    assert_bitwise(_backend.matmul(a, np.ascontiguousarray(b.T), trans_b=True), a @ b)


@given(data=st.data(), dtype=st.sampled_from(DTYPES))
def test_matmul_hypothesis(data, dtype):
    m, k, n = (data.draw(st.integers(1, 70)) for _ in range(3))
    elems = st.floats(-1e3, 1e3, width=32 if dtype == np.float32 else 64)
    a = data.draw(hnp.arrays(dtype, (m, k), elements=elems))
    b = data.draw(hnp.arrays(dtype, (k, n), elements=elems))
    got = _backend.matmul(a, b)
    ref = a @ b
    assert_within(got, ref, reduction_bound(np.abs(a).astype(np.float64) @ np.abs(b), k, dtype, ref),
                  "matmul")


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_affine_forward_vs_numpy(rng, dtype, n, k, m):
    x, W, b = _rand(rng, (n, k), dtype), _rand(rng, (k, m), dtype), _rand(rng, m, dtype)
    got = _backend.affine_forward(x, W, b)
    ref = x @ W + b
    mag = np.abs(x).astype(np.float64) @ np.abs(W) + np.abs(b)
    assert_within(got, ref, reduction_bound(mag, k + 1, dtype, ref), "x @ W + b")


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_affine_backward_vs_numpy(rng, dtype, n, k, m):
    x, W, dout = _rand(rng, (n, k), dtype), _rand(rng, (k, m), dtype), _rand(rng, (n, m), dtype)
    dx, dW, db = _backend.affine_backward(dout, x, W)
    ax, aW, ad = (np.abs(v).astype(np.float64) for v in (x, W, dout))
    ref = dout @ W.T
    assert_within(dx, ref, reduction_bound(ad @ aW.T, m, dtype, ref), "dx = dout @ W.T")
    ref = x.T @ dout
    assert_within(dW, ref, reduction_bound(ax.T @ ad, n, dtype, ref), "dW = x.T @ dout")
    ref = dout.sum(axis=0)
    assert_within(db, ref, reduction_bound(ad.sum(axis=0), n, dtype, ref), "db = dout.sum(0)")


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_affine_integer_valued_bitwise(rng, dtype, n, k, m):
    x, W, b = _ints(rng, (n, k), dtype), _ints(rng, (k, m), dtype), _ints(rng, m, dtype)
    dout = _ints(rng, (n, m), dtype)
    assert_bitwise(_backend.affine_forward(x, W, b), x @ W + b)
    dx, dW, db = _backend.affine_backward(dout, x, W)
    assert_bitwise(dx, dout @ W.T)
    assert_bitwise(dW, x.T @ dout)
    assert_bitwise(db, dout.sum(axis=0))


def test_affine_backward_without_dx_and_with_out(rng, dtype):
    x, W, dout = _rand(rng, (17, 100), dtype), _rand(rng, (100, 3), dtype), _rand(rng, (17, 3), dtype)
    full = _backend.affine_backward(dout, x, W)
    dx, dW, db = _backend.affine_backward(dout, x, W, need_dx=False)
    assert dx is None
    assert_bitwise(dW, full[1])
    assert_bitwise(db, full[2])
    outs = np.empty((17, 100), dtype), np.empty((100, 3), dtype), np.empty(3, dtype)
    got = _backend.affine_backward(dout, x, W, dx=outs[0], dW=outs[1], db=outs[2])
    for g, o, f in zip(got, outs, full):
        assert g is o
        assert_bitwise(g, f)
    out = np.empty((17, 3), dtype)
    assert _backend.affine_forward(x, W, np.zeros(3, dtype), out=out) is out


@pytest.mark.parametrize("n,m", [(1, 1), (3, 2), (1023, 17), (17, 1023), (2, 100), (1000, 100)])
def test_column_sums_vs_numpy(rng, dtype, n, m):
    a = _rand(rng, (n, m), dtype)
    got = _backend.column_sums(a)
    ref = a.sum(axis=0)
    assert_within(got, ref, reduction_bound(np.abs(a).astype(np.float64).sum(0), n, dtype, ref),
                  "column sums")
    ints = _ints(rng, (n, m), dtype)
    assert_bitwise(_backend.column_sums(ints), ints.sum(axis=0))


# ---------------------------------------------------------------- np.matmul fallback route

@pytest.mark.parametrize("n,k,m", SHAPES)
def test_matmul_fallback_agrees_with_blas_route(rng, dtype, n, k, m, monkeypatch, restore_threads):
    """np.matmul(out=) uses the same BLAS and pool: same bits at the same thread count."""
    fastmlp.set_num_threads(1)
    x, W, b = _rand(rng, (n, k), dtype), _rand(rng, (k, m), dtype), _rand(rng, m, dtype)
    dout = _rand(rng, (n, m), dtype)
    blas = (_backend.affine_forward(x, W, b), *_backend.affine_backward(dout, x, W),
            _backend.matmul(x, dout, trans_a=True),
            _backend.matmul(dout, W, trans_b=True))
    assert _backend.USE_BLAS, "numpy's BLAS was not connected: the GEMM-pointer route is untested"
    monkeypatch.setattr(_backend, "USE_BLAS", False)
    fallback = (_backend.affine_forward(x, W, b), *_backend.affine_backward(dout, x, W),
                _backend.matmul(x, dout, trans_a=True),
                _backend.matmul(dout, W, trans_b=True))
    mags = (np.abs(x).astype(np.float64) @ np.abs(W) + np.abs(b), np.abs(dout).astype(np.float64) @ np.abs(W).T,
            np.abs(x).T.astype(np.float64) @ np.abs(dout), np.abs(dout).astype(np.float64).sum(0),
            np.abs(x).T.astype(np.float64) @ np.abs(dout), np.abs(dout).astype(np.float64) @ np.abs(W).T)
    ks = (k + 1, m, n, n, n, m)
    for name, p, q, mag, kk in zip(["out", "dx", "dW", "db", "x.T@dout", "dout@W.T"], blas, fallback,
                                   mags, ks):
        assert_within(p, q, 2 * reduction_bound(mag, kk, dtype, q), name)
        if p.ndim == 1 or min(p.shape) > 1:
            # numpy's matmul switches to GEMV when the result has a unit dimension;
            # otherwise both routes run the same GEMM and must give the same bits.
            assert np.array_equal(p, q), (f"{name}: BLAS route and np.matmul fallback differ, max "
                                          f"|diff| {np.max(np.abs(p.astype(np.float64) - q)):.3g}")


def test_fallback_layers_match_reference(rng, dtype, monkeypatch):
    """The whole Affine layer on the fallback route, against the reference (reduction bound)."""
    from fastmlp import layers as L
    from fastmlp.reference import layers as R

    monkeypatch.setattr(_backend, "USE_BLAS", False)
    x, W, b = _rand(rng, (17, 100), dtype), _rand(rng, (100, 3), dtype), _rand(rng, 3, dtype)
    dout = _rand(rng, (17, 3), dtype)
    c, r = L.Affine(W, b), R.Affine(W, b)
    got, ref = c.forward(x), r.forward(x)
    mag = np.abs(x).astype(np.float64) @ np.abs(W) + np.abs(b)
    assert_within(got, ref, reduction_bound(mag, 101, dtype, ref), "fallback forward")
    dx, rdx = c.backward(dout), r.backward(dout)
    assert_within(dx, rdx, reduction_bound(np.abs(dout).astype(float) @ np.abs(W).T, 3, dtype, rdx), "dx")
    assert_within(c.dW, r.dW, reduction_bound(np.abs(x).T.astype(float) @ np.abs(dout), 17, dtype, r.dW),
                  "dW")
    assert_within(c.db, r.db, reduction_bound(np.abs(dout).astype(float).sum(0), 17, dtype, r.db), "db")


# ---------------------------------------------------------------- activations

SPECIALS = [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 1e4, -1e4, 88.0, -88.0, 700.0, -700.0,
            np.inf, -np.inf, np.nan]


def _with_specials(rng, size, dtype):
    x = _rand(rng, size, dtype, scale=5.0)
    with np.errstate(over="ignore"):
        sp = np.array(SPECIALS).astype(dtype)
    x[: min(size, sp.size)] = sp[: min(size, sp.size)]
    return x


@pytest.mark.parametrize("size", SIZES + [3 * 16384 + 5])
def test_relu_forward_backward_bitwise(rng, dtype, size):
    x = _with_specials(rng, size, dtype).reshape(-1, 1) if size % 2 else _with_specials(rng, size, dtype)
    before = snapshot(x)
    out, mask = _backend.relu_forward(x)
    assert_bitwise(mask, x <= 0)
    assert_bitwise(out, np.where(x <= 0, dtype(0), x))
    assert snapshot(x) == before
    dout = _rand(rng, x.shape, dtype)
    dbefore = snapshot(dout)
    dx = _backend.relu_backward(dout, mask)
    assert_bitwise(dx, np.where(x <= 0, dtype(0), dout))
    assert snapshot(dout) == dbefore, "relu_backward wrote into dout"
    assert not np.shares_memory(dx, dout) and not np.shares_memory(out, x)


def test_relu_out_arrays_are_used(rng, dtype):
    x = _rand(rng, (17, 3), dtype)
    out, mask = np.empty_like(x), np.empty(x.shape, np.bool_)
    got_out, got_mask = _backend.relu_forward(x, out=out, mask=mask)
    assert got_out is out and got_mask is mask
    assert_bitwise(out, np.maximum(x, 0))
    dx = np.empty_like(x)
    assert _backend.relu_backward(x, mask, out=dx) is dx


@pytest.mark.parametrize("size", SIZES + [3 * 16384 + 5])
def test_sigmoid_forward_vs_reference(rng, dtype, size):
    """Cross-precision: the kernel in dtype against the reference in float64 on the same values."""
    x = _with_specials(rng, size, dtype)
    with np.errstate(all="raise"):  # the stable sigmoid never overflows
        got = _backend.sigmoid_forward(x)
    ref = np.asarray(RF.sigmoid(x.astype(np.float64)))
    assert_within(got, ref.astype(dtype), elementwise_bound(ref, dtype), "sigmoid")
    assert np.all((got >= 0) & (got <= 1) | np.isnan(x))


@pytest.mark.parametrize("size", SIZES)
def test_sigmoid_backward_vs_numpy(rng, dtype, size):
    y = np.asarray(RF.sigmoid(_rand(rng, size, dtype, 4.0)))
    dout = _rand(rng, size, dtype)
    got = _backend.sigmoid_backward(dout, y)
    ref = dout * (1 - y) * y
    assert_within(got, ref, elementwise_bound(ref, dtype), "dout * (1 - y) * y")


@given(x=hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=1, max_dims=3, max_side=20),
                    elements={"allow_nan": True, "allow_infinity": True, "allow_subnormal": True}))
def test_elementwise_hypothesis(x):
    dtype = x.dtype.type
    before = snapshot(x)
    out, mask = _backend.relu_forward(x)
    assert_bitwise(out, np.where(x <= 0, dtype(0), x))
    s = _backend.sigmoid_forward(x)
    ref = np.asarray(RF.sigmoid(x.astype(np.float64)))
    assert_within(s, ref.astype(dtype), elementwise_bound(ref, dtype), "sigmoid")
    y = np.flip(x).copy()
    with np.errstate(all="ignore"):  # the numpy oracle may overflow; the kernels do not warn
        assert_bitwise(_backend.mul_forward(x, y), x * y)
        assert_bitwise(_backend.add_forward(x, y), x + y)
        dx, dy = _backend.mul_backward(x, y, out)
        assert_bitwise(dx, x * out)
        assert_bitwise(dy, x * y)
    assert snapshot(x) == before


# ---------------------------------------------------------------- softmax and the losses

@pytest.mark.parametrize("n,c", [(1, 1), (1, 2), (3, 17), (17, 3), (100, 1023), (1023, 2), (2, 100)])
def test_softmax_vs_oracle(rng, dtype, n, c):
    x = _rand(rng, (n, c), dtype, 3.0)
    got = _backend.softmax(x)
    ref = _softmax_oracle(x)
    assert_within(got, ref.astype(dtype), _softmax_bound(ref, c, dtype), "softmax")
    ref_same = RF.softmax(x)  # the reference in the same dtype
    assert_within(got, ref_same, _softmax_bound(ref_same, c, dtype), "softmax vs reference")
    u = unit_roundoff(dtype)
    sums = got.astype(np.float64).sum(axis=1)
    assert np.all(np.abs(sums - 1) <= 4 * c * u), f"row sums off by {np.max(np.abs(sums - 1)):.3g}"


def _exact_ce(x, t):
    """Exact mean cross-entropy -sum(t * log_softmax(x)) / N in float64 (t one-hot or soft)."""
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    log_y = (x - m) - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    return float(-np.sum(t * log_y) / x.shape[0])


def _ce_bound(x, t, dtype):
    """Reduction bound for the loss: the dot product of |t| with |logsumexp| + |x|, K = C + N."""
    x = np.asarray(x, np.float64)
    m = np.abs(x).max(axis=1, keepdims=True)
    mag = np.sum(np.abs(t) * (m + np.log(x.shape[1]) + np.abs(x))) / x.shape[0]
    return 2 * (x.shape[1] + x.shape[0] + 4) * unit_roundoff(dtype) * mag


LARGE_LOGITS = [(np.float32, b) for b in (1e4, 1e30, 3e38)] + \
               [(np.float64, b) for b in (1e4, 1e30, 3e38, 1e300)]


@pytest.mark.parametrize("dtype,big", LARGE_LOGITS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_softmax_large_logits_finite(dtype, big):
    """No overflow, no log(0): finite softmax, loss and gradient for logits of any finite size."""
    x = np.array([[big, -big, 0.0, big / 2], [-big, -big, -big, -big], [0, 0, big, big]], dtype)
    with np.errstate(all="raise"):
        y = _backend.softmax(x)
    np.testing.assert_array_equal(y[0], np.array([1, 0, 0, 0], dtype))
    np.testing.assert_array_equal(y[1], np.full(4, 0.25, dtype))
    np.testing.assert_array_equal(y[2], np.array([0, 0, 0.5, 0.5], dtype))
    labels = np.array([1, 0, 0], np.intp)
    onehot = np.eye(4, dtype=dtype)[labels]
    # Exact: row 0 costs 2*big, row 1 log 4, row 2 big + log 2 (x[t] = 0, two maxima at big).
    exact = (2 * float(big) + np.log(4) + float(big) + np.log(2)) / 3
    for lab, oh in ((labels, None), (None, onehot)):
        with np.errstate(all="raise"):
            y2, loss = _backend.softmax_ce_forward(x, lab, oh)
            grad = _backend.softmax_ce_backward(y2, lab, oh)
        assert np.isfinite(loss), loss
        assert loss == pytest.approx(exact, rel=1e-6)
        assert np.isfinite(grad).all()
        assert_bitwise(grad, ((y - onehot) * dtype(1 / 3)).astype(dtype))


@pytest.mark.parametrize("n,c", [(1, 1), (1, 2), (3, 17), (17, 3), (100, 1023), (1023, 2)])
def test_softmax_ce_labels_and_onehot(rng, dtype, n, c):
    x = _rand(rng, (n, c), dtype, 3.0)
    labels = rng.integers(0, c, n).astype(np.intp)
    onehot = np.eye(c, dtype=dtype)[labels]
    before = snapshot(x), snapshot(labels), snapshot(onehot)
    y_l, loss_l = _backend.softmax_ce_forward(x, labels, None)
    y_o, loss_o = _backend.softmax_ce_forward(x, None, onehot)
    assert (snapshot(x), snapshot(labels), snapshot(onehot)) == before
    assert_bits_identical(y_l, _backend.softmax(x))
    assert_bits_identical(y_o, y_l)
    assert isinstance(loss_l, float) and isinstance(loss_o, float)
    # The exact cross-entropy of the logits, against float64 and against the same-dtype reference.
    ref = _exact_ce(x, onehot)
    bound = _ce_bound(x, onehot, dtype) + 4 * unit_roundoff(dtype) * abs(ref)
    assert abs(loss_l - ref) <= bound, (loss_l, ref, bound)
    assert abs(loss_o - ref) <= bound, (loss_o, ref, bound)
    ref_layer = R.SoftmaxWithLoss()
    ref_loss = ref_layer.forward(x, labels)
    assert abs(loss_l - ref_loss) <= 2 * bound, (loss_l, ref_loss)
    # Gradient (y - t) * dout / N: elementwise on the kernel's own y.
    for dout in (1.0, 0.3):
        ref_g = (y_l - onehot) * dtype(dout / n)
        for got in (_backend.softmax_ce_backward(y_l, labels, None, dout),
                    _backend.softmax_ce_backward(y_l, None, onehot, dout)):
            assert_within(got, ref_g, elementwise_bound(ref_g, dtype), "softmax-CE gradient")


@pytest.mark.parametrize("n,c", [(1, 2), (17, 3), (100, 10), (3, 1023)])
def test_softmax_ce_loss_matches_book_formula(rng, dtype, n, c):
    """SPEC: the loss matches the book's cross_entropy_error(softmax(x), t) to 1e-6.

    The book adds 1e-7 inside the log, so the two can only agree where the
    true class has probability >= 0.1 (difference <= 1e-7 / y_t); the
    logits here make every true class dominant.
    """
    labels = rng.integers(0, c, n).astype(np.intp)
    x = _rand(rng, (n, c), dtype)
    x[np.arange(n), labels] += dtype(np.log(c) + 3)
    _, loss = _backend.softmax_ce_forward(x, labels, None)
    book = RF.cross_entropy_error(RF.softmax(x.astype(np.float64)), labels)
    assert abs(loss - book) <= 1e-6, (loss, book)


def test_softmax_ce_soft_targets(rng, dtype):
    """One-hot entry point with non-one-hot rows: -sum(t * log_softmax(x)) / N and (y - t) / N."""
    x = _rand(rng, (17, 5), dtype, 2.0)
    t = rng.random((17, 5)).astype(dtype)
    t /= t.sum(axis=1, keepdims=True)
    y, loss = _backend.softmax_ce_forward(x, None, t)
    ref = _exact_ce(x, t.astype(np.float64))
    assert abs(loss - ref) <= _ce_bound(x, t, dtype) + 4 * unit_roundoff(dtype) * abs(ref)
    g = _backend.softmax_ce_backward(y, None, t, 2.0)
    ref_g = (y - t) * dtype(2.0 / 17)
    assert_within(g, ref_g, elementwise_bound(ref_g, dtype), "soft-target gradient")


@pytest.mark.parametrize("n,c", [(1, 1), (3, 17), (100, 1023), (1023, 2)])
def test_cross_entropy_kernel_vs_reference(rng, dtype, n, c):
    """The book's cross_entropy_error on probabilities: -sum(log(y[i, t_i] + 1e-7)) / N."""
    y = np.asarray(RF.softmax(_rand(rng, (n, c), dtype, 2.0)))
    labels = rng.integers(0, c, n).astype(np.intp)
    got = _backend.cross_entropy(y, labels)
    ref = _book_loss(y, labels)  # the same float inputs, in float64
    assert got == pytest.approx(ref, rel=(2 * n + 4) * unit_roundoff(np.float64), abs=1e-15)
    # The same-dtype reference rounds y + 1e-7 to the dtype: an absolute error of about u.
    assert abs(got - RF.cross_entropy_error(y, labels)) <= (
        1e-6 if dtype == np.float32 else 1e-12 * max(1.0, abs(ref)))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (17, 100), (1023, 3), (3, 1023)])
def test_mse_vs_numpy(rng, dtype, shape):
    y, t = _rand(rng, shape, dtype), _rand(rng, shape, dtype)
    got = _backend.mse_forward(y, t)
    n = shape[0]
    ref = 0.5 * np.sum((y - t) ** 2) / n
    assert isinstance(got, float)
    assert_within(np.float64(got), np.float64(ref),
                  reduction_bound(ref, y.size + 2, dtype, ref), "mse loss")
    for dout in (1.0, 0.7):
        g = _backend.mse_backward(y, t, dout)
        ref_g = (y - t) * dtype(dout / n)
        assert_within(g, ref_g, elementwise_bound(ref_g, dtype), "mse gradient")
    ints_y, ints_t = _ints(rng, shape, dtype), _ints(rng, shape, dtype)
    assert _backend.mse_forward(ints_y, ints_t) == 0.5 * float(np.sum((ints_y - ints_t) ** 2.0)) / n


# ---------------------------------------------------------------- Mul / Add

@pytest.mark.parametrize("size", SIZES)
def test_mul_add_bitwise(rng, dtype, size):
    x, y, dout = (_rand(rng, (size, 2), dtype) for _ in range(3))
    before = [snapshot(a) for a in (x, y, dout)]
    assert_bitwise(_backend.mul_forward(x, y), x * y)
    assert_bitwise(_backend.add_forward(x, y), x + y)
    dx, dy = _backend.mul_backward(dout, x, y)
    assert_bitwise(dx, dout * y)
    assert_bitwise(dy, dout * x)
    assert [snapshot(a) for a in (x, y, dout)] == before
    for out in (dx, dy):
        assert not any(np.shares_memory(out, a) for a in (x, y, dout))


# ---------------------------------------------------------------- optimizer updates

@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
                                  "nesterov_sklearn"])
def test_optimizer_update_kernel_vs_book(rng, dtype, rule):
    """One step of each rule over several parameters, against the book's optimizer.py line by line.

    Bound: 8u times the magnitudes of the terms added (rtol 4u for one step, TESTING.md,
    with room for the two or three roundings a rule chains).
    """
    shapes = [(17, 3), (3,), (1023,), (1, 1)]
    ps = [_rand(rng, s, dtype) for s in shapes]
    gs = [_rand(rng, s, dtype) for s in shapes]
    hs = [np.abs(_rand(rng, s, dtype)) for s in shapes]
    ms = [_rand(rng, s, dtype) for s in shapes]
    P, H, Mm = [p.copy() for p in ps], [h.copy() for h in hs], [m.copy() for m in ms]
    g_before = [snapshot(g) for g in gs]
    lr, mom, eps, decay, b1, b2 = 0.01, 0.9, 1e-7, 0.99, 0.9, 0.999
    lr_t = 0.001 * np.sqrt(1 - b2) / (1 - b1)
    code = _backend.OPTIMIZER_RULES[rule]
    if rule == "sgd":
        _backend.optimizer_update(code, P, gs, None, None, lr)
    elif rule in ("momentum", "nesterov", "nesterov_sklearn"):
        _backend.optimizer_update(code, P, gs, Mm, None, lr, momentum=mom)
    elif rule == "adagrad":
        _backend.optimizer_update(code, P, gs, H, None, lr, eps=eps)
    elif rule == "rmsprop":
        _backend.optimizer_update(code, P, gs, H, None, lr, decay_rate=decay, eps=eps)
    else:
        _backend.optimizer_update(code, P, gs, Mm, H, lr_t, beta1=b1, beta2=b2, eps=eps)
    u = unit_roundoff(dtype)
    for p, g, h, m, got in zip(ps, gs, hs, ms, P):
        if rule == "sgd":
            ref, scale = p - lr * g, np.abs(p) + np.abs(lr * g)
        elif rule == "momentum":
            v = mom * m - lr * g
            ref, scale = p + v, np.abs(p) + np.abs(mom * m) + np.abs(lr * g)
        elif rule == "nesterov":   # the corrected book: p moves with the old v, then v
            q = p.copy()
            q += mom * mom * m
            q -= (1 + mom) * lr * g
            ref, scale = q, np.abs(p) + np.abs(mom * m) + 3 * np.abs(lr * g)
        elif rule == "nesterov_sklearn":   # sklearn's: v = m*v - lr*g; p += m*v - lr*g
            v = mom * m - lr * g
            ref, scale = p + (mom * v - lr * g), np.abs(p) + np.abs(mom * m) + 2 * np.abs(lr * g)
        elif rule == "adagrad":
            hh = h + g * g
            step = lr * g / (np.sqrt(hh) + eps)
            ref, scale = p - step, np.abs(p) + np.abs(step)
        elif rule == "rmsprop":
            hh = h * dtype(decay)
            hh += (1 - decay) * g * g
            step = lr * g / (np.sqrt(hh) + eps)
            ref, scale = p - step, np.abs(p) + np.abs(step)
        else:
            mm = m + (1 - b1) * (g - m)
            vv = h + (1 - b2) * (g ** 2 - h)
            step = lr_t * mm / (np.sqrt(vv) + eps)
            ref, scale = p - step, np.abs(p) + np.abs(step)
        assert_within(got, ref.astype(dtype), 8 * u * scale.astype(np.float64), f"{rule} step")
    assert [snapshot(g) for g in gs] == g_before, "a gradient was modified"


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("k,n", [(1, 1), (1, 7), (5, 1), (17, 3), (784, 1023)])
def test_one_row_products_take_gemv_and_agree(dtype, trans_a, trans_b, k, n):
    """m == 1 goes to BLAS gemv (batch-1 inference); every operand layout agrees with numpy."""
    rng = np.random.default_rng(k * 31 + n)
    a = rng.standard_normal((k, 1) if trans_a else (1, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    got = _backend.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    A, Bm = (a.T if trans_a else a), (b.T if trans_b else b)
    want = A.astype(np.float64) @ Bm.astype(np.float64)
    bound = 2 * k * unit_roundoff(dtype) * (np.abs(A).astype(np.float64) @ np.abs(Bm)) \
        + 4 * unit_roundoff(dtype) * np.abs(want)
    assert got.shape == (1, n) and got.dtype == dtype
    assert np.all(np.abs(got - want) <= bound + np.finfo(dtype).tiny)
