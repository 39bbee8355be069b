"""fastmlp.layers and fastmlp.functions against fastmlp.reference on identical inputs.

Every compiled layer gets its input in each layout (C, F, strided, read-only,
big-endian) while the reference gets the C-contiguous array with the same
values: the SPEC says every layout gives the result a C array gives, so the
compiled result must match the reference's in shape, dtype and value.
Tolerances are TESTING.md's (see conftest). Also: inputs bitwise unchanged
after forward and backward (flags.writeable included), outputs never alias
inputs, and the book's apple/orange/tax numbers.
"""
import numpy as np
import pytest
from conftest import (
    DTYPES,
    SHAPES,
    assert_bits_identical,
    assert_bitwise,
    assert_same_meta,
    assert_within,
    elementwise_bound,
    reduction_bound,
    snapshot,
    to_layout,
    unit_roundoff,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastmlp import functions as F
from fastmlp import layers as L
from fastmlp.reference import functions as RF
from fastmlp.reference import layers as R

ELEMENTWISE_SHAPES = [(1,), (2,), (3, 1), (17, 3), (100, 17), (1023,), (2, 3, 4), (1, 1023, 2)]
CLASS_SHAPES = [(1, 1), (1, 2), (2, 3), (3, 17), (17, 3), (100, 10), (1023, 2), (2, 1023), (100, 1023)]
IMAGE_SHAPES = [(1, 1, 1, 1), (2, 3, 4, 5), (17, 1, 2, 3), (3, 2, 1, 17)]


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _ints(rng, shape, dtype):
    return rng.integers(-8, 9, size=shape).astype(dtype)


class Untouched:
    """Snapshots of arrays handed to a layer; ``check()`` asserts they are bitwise unchanged."""

    def __init__(self, **arrays):
        self.arrays = arrays
        self.before = {k: snapshot(v) for k, v in arrays.items()}

    def check(self):
        for k, a in self.arrays.items():
            assert snapshot(a) == self.before[k], f"{k} was modified (or its flags changed)"


def assert_no_alias(outputs, inputs):
    for i, out in enumerate(outputs):
        for name, a in inputs.items():
            assert not np.shares_memory(out, a), f"output {i} shares memory with {name}"


def softmax_bound(ref, n_classes, dtype):
    """(2C + 6)·u·|ref|: a length-C sum plus exp and division roundings (see test_kernels)."""
    return ((2 * n_classes + 6) * unit_roundoff(dtype) * np.abs(np.asarray(ref, np.float64))
            + 4 * float(np.finfo(dtype).smallest_subnormal))


def ce_bound(x, onehot, dtype):
    """Reduction bound for the mean cross-entropy (K = C + N over |t|·(|lse| + |x|))."""
    x = np.asarray(x, np.float64)
    m = np.abs(x).max(axis=1, keepdims=True)
    mag = np.sum(np.abs(onehot) * (m + np.log(x.shape[1]) + np.abs(x))) / x.shape[0]
    return 2 * (x.shape[1] + x.shape[0] + 4) * unit_roundoff(dtype) * mag


# ---------------------------------------------------------------- Mul / Add

@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_mul_layer(rng, dtype, layout, shape):
    x, y, dout = (_rand(rng, shape, dtype) for _ in range(3))
    xl, yl, dl = (to_layout(a, layout) for a in (x, y, dout))
    keep = Untouched(x=xl, y=yl, dout=dl)
    c, r = L.MulLayer(), R.MulLayer()
    out = c.forward(xl, yl)
    assert_bitwise(out, r.forward(x, y))
    dx, dy = c.backward(dl)
    rdx, rdy = r.backward(dout)
    assert_bitwise(dx, rdx)
    assert_bitwise(dy, rdy)
    keep.check()
    assert_no_alias([out, dx, dy], keep.arrays)


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_add_layer(rng, dtype, layout, shape):
    x, y, dout = (_rand(rng, shape, dtype) for _ in range(3))
    xl, yl, dl = (to_layout(a, layout) for a in (x, y, dout))
    keep = Untouched(x=xl, y=yl, dout=dl)
    c, r = L.AddLayer(), R.AddLayer()
    out = c.forward(xl, yl)
    assert_bitwise(out, r.forward(x, y))
    dx, dy = c.backward(dl)
    rdx, rdy = r.backward(dout)
    assert_bitwise(dx, rdx)
    assert_bitwise(dy, rdy)
    assert not np.shares_memory(dx, dy)
    keep.check()
    assert_no_alias([out, dx, dy], keep.arrays)


@pytest.mark.parametrize("x_dtype,y_dtype", [(np.float32, np.float64), (np.int64, np.float32),
                                             (np.float32, np.float32), (np.int32, np.int64)])
def test_mul_add_mixed_dtypes(rng, x_dtype, y_dtype):
    x, y = _ints(rng, (3, 4), x_dtype), _ints(rng, (3, 4), y_dtype)
    for C, Rf in ((L.MulLayer, R.MulLayer), (L.AddLayer, R.AddLayer)):
        c, r = C(), Rf()
        out = r.forward(x, y)
        assert_bitwise(c.forward(x, y), out)
        dout = _ints(rng, (3, 4), out.dtype)  # (a dout of another dtype: test_backward_dtype_...)
        for g, rg in zip(c.backward(dout), r.backward(dout)):
            assert_bitwise(g, rg)


def test_book_apple_orange_tax():
    """The book's buy_apple_orange.py (ch. 5), on the compiled layers."""
    apple, apple_num, orange, orange_num, tax = 100, 2, 150, 3, 1.1
    mul_apple, mul_orange = L.MulLayer(), L.MulLayer()
    add_apple_orange, mul_tax = L.AddLayer(), L.MulLayer()
    apple_price = mul_apple.forward(apple, apple_num)
    orange_price = mul_orange.forward(orange, orange_num)
    all_price = add_apple_orange.forward(apple_price, orange_price)
    price = mul_tax.forward(all_price, tax)
    dall_price, dtax = mul_tax.backward(1)
    dapple_price, dorange_price = add_apple_orange.backward(dall_price)
    dorange, dorange_num = mul_orange.backward(dorange_price)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    assert price == 715.0000000000001  # the book prints exactly this
    assert int(price) == 715
    assert dapple == pytest.approx(2.2)
    assert dapple_num == pytest.approx(110)
    assert dorange == pytest.approx(3.3)
    assert dorange_num == pytest.approx(165)
    assert dtax == pytest.approx(650)


def test_book_apple_example_on_arrays(dtype):
    """The same graph with 1-element arrays: float results in the dtype, same numbers."""
    a = lambda v: np.array([v], dtype)  # noqa: E731
    mul_apple, mul_tax = L.MulLayer(), L.MulLayer()
    price = mul_tax.forward(mul_apple.forward(a(100), a(2)), a(1.1))
    assert price.dtype == dtype and price.shape == (1,)
    dprice, dtax = mul_tax.backward(a(1))
    dapple, dapple_num = mul_apple.backward(dprice)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert price[0] == pytest.approx(220, rel=tol)
    assert (dapple[0], dapple_num[0], dtax[0]) == pytest.approx((2.2, 110, 200), rel=tol)


# ---------------------------------------------------------------- Relu / Sigmoid

SPECIAL = np.array([0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4, 88.0, -88.0, 700.0, -700.0, 3e38, -3e38])


def _activation_input(rng, shape, dtype):
    x = _rand(rng, shape, dtype, 5.0)
    flat = x.reshape(-1)
    k = min(flat.size, SPECIAL.size)
    with np.errstate(over="ignore"):
        flat[:k] = SPECIAL[:k].astype(dtype)
    return x


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_relu_layer(rng, dtype, layout, shape):
    x, dout = _activation_input(rng, shape, dtype), _rand(rng, shape, dtype)
    xl, dl = to_layout(x, layout), to_layout(dout, layout)
    keep = Untouched(x=xl, dout=dl)
    c, r = L.Relu(), R.Relu()
    out = c.forward(xl)
    assert_bitwise(out, r.forward(x))
    assert_bitwise(c.mask, r.mask)
    dx = c.backward(dl)
    assert_bitwise(dx, r.backward(dout))
    keep.check()  # the book's Relu.backward overwrites dout; this one must not
    assert_no_alias([out, dx, c.mask], keep.arrays)


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_sigmoid_layer(rng, dtype, layout, shape):
    x, dout = _activation_input(rng, shape, dtype), _rand(rng, shape, dtype)
    xl, dl = to_layout(x, layout), to_layout(dout, layout)
    keep = Untouched(x=xl, dout=dl)
    c, r = L.Sigmoid(), R.Sigmoid()
    with np.errstate(all="raise"):  # stable: no overflow warning for any x
        out = c.forward(xl)
    ref = r.forward(x)
    assert_same_meta(out, ref)
    # Cross-precision: against the reference evaluated in float64 on the same values.
    ref64 = np.asarray(RF.sigmoid(x.astype(np.float64)))
    assert_within(out, ref64.astype(dtype), elementwise_bound(ref64, dtype), "sigmoid forward")
    assert c.out is out or np.array_equal(c.out, out)
    dx = c.backward(dl)
    r.out = out.copy()  # same y on both sides: isolate backward from forward rounding
    rdx = r.backward(dout)
    assert_within(dx, rdx, elementwise_bound(rdx, dtype), "sigmoid backward")
    keep.check()
    assert_no_alias([out, dx], keep.arrays)


# ---------------------------------------------------------------- Affine

def _check_affine(rng, dtype, layout, x, W, b, dout, integer_valued=False):
    xl, Wl, bl, dl = (to_layout(a, layout) for a in (x, W, b, dout))
    keep = Untouched(x=xl, W=Wl, b=bl, dout=dl)
    c, r = L.Affine(Wl, bl), R.Affine(W, b)
    out, rout = c.forward(xl), r.forward(x)
    dx, rdx = c.backward(dl), r.backward(dout)
    assert c.original_x_shape == x.shape
    if integer_valued:
        for got, ref in ((out, rout), (dx, rdx), (c.dW, r.dW), (c.db, r.db)):
            assert_bitwise(got, ref)
    else:
        x2 = np.abs(x.reshape(x.shape[0], -1)).astype(np.float64)
        aW, ad = np.abs(W).astype(np.float64), np.abs(dout).astype(np.float64)
        n, k = x2.shape
        m = W.shape[1]
        assert_within(out, rout, reduction_bound(x2 @ aW + np.abs(b), k + 1, dtype, rout), "x @ W + b")
        assert_within(dx, rdx, reduction_bound((ad @ aW.T).reshape(x.shape), m, dtype, rdx), "dx")
        assert_within(c.dW, r.dW, reduction_bound(x2.T @ ad, n, dtype, r.dW), "dW")
        assert_within(c.db, r.db, reduction_bound(ad.sum(axis=0), n, dtype, r.db), "db")
    keep.check()
    assert_no_alias([out, dx, c.dW, c.db], keep.arrays)
    return c


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_affine_layer(rng, dtype, layout, n, k, m):
    x, W, b = _rand(rng, (n, k), dtype), _rand(rng, (k, m), dtype), _rand(rng, m, dtype)
    _check_affine(rng, dtype, layout, x, W, b, _rand(rng, (n, m), dtype))


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_affine_layer_integer_valued_bitwise(rng, dtype, layout, n, k, m):
    x, W, b = _ints(rng, (n, k), dtype), _ints(rng, (k, m), dtype), _ints(rng, m, dtype)
    _check_affine(rng, dtype, layout, x, W, b, _ints(rng, (n, m), dtype), integer_valued=True)


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize("m", [1, 3, 17])
def test_affine_layer_4d_input(rng, dtype, layout, shape, m):
    k = int(np.prod(shape[1:]))
    x, W, b = _rand(rng, shape, dtype), _rand(rng, (k, m), dtype), _rand(rng, m, dtype)
    c = _check_affine(rng, dtype, layout, x, W, b, _rand(rng, (shape[0], m), dtype))
    assert c.x.shape == (shape[0], k)


def test_affine_holds_params_by_reference(rng, dtype):
    W, b = _rand(rng, (5, 3), dtype), _rand(rng, 3, dtype)
    c = L.Affine(W, b)
    assert c.W is W and c.b is b
    x = _rand(rng, (4, 5), dtype)
    W -= dtype(0.5) * W  # an optimizer's in-place step
    b += dtype(1)
    out = c.forward(x)
    assert_within(out, x @ W + b, reduction_bound(np.abs(x).astype(float) @ np.abs(W) + np.abs(b), 6,
                                                  dtype, x @ W + b), "after an in-place update")


def test_affine_w_dtype_decides(rng):
    W32, b32 = _rand(rng, (5, 3), np.float32), _rand(rng, 3, np.float32)
    x64 = _rand(rng, (4, 5), np.float64)
    c, r = L.Affine(W32, b32), R.Affine(W32, b32)
    out = c.forward(x64)
    assert_same_meta(out, r.forward(x64))
    assert out.dtype == np.float32
    dx = c.backward(np.ones((4, 3)))
    assert dx.dtype == c.dW.dtype == c.db.dtype == np.float32


@given(data=st.data(), dtype=st.sampled_from(DTYPES))
def test_affine_hypothesis(data, dtype):
    n, k, m = (data.draw(st.integers(1, 40)) for _ in range(3))
    width = 32 if dtype == np.float32 else 64
    elems = st.floats(-1e4, 1e4, width=width)
    x = data.draw(hnp.arrays(dtype, (n, k), elements=elems))
    W = data.draw(hnp.arrays(dtype, (k, m), elements=elems))
    b = data.draw(hnp.arrays(dtype, (m,), elements=elems))
    dout = data.draw(hnp.arrays(dtype, (n, m), elements=elems))
    layout = data.draw(st.sampled_from(["C", "F", "strided", "readonly"]))
    _check_affine(None, dtype, layout, x, W, b, dout)


# ---------------------------------------------------------------- SoftmaxWithLoss

def _check_softmax_with_loss(dtype, layout, x, t, onehot, dout=1.0):
    n, c_ = x.shape
    xl, tl = to_layout(x, layout), to_layout(t, layout)
    keep = Untouched(x=xl, t=tl)
    c, r = L.SoftmaxWithLoss(), R.SoftmaxWithLoss()
    loss, rloss = c.forward(xl, tl), r.forward(x, t)
    assert isinstance(loss, float)
    assert c.loss == loss
    assert_same_meta(c.y, r.y)
    assert_within(c.y, r.y, softmax_bound(r.y, c_, dtype), "softmax")
    bound = 2 * ce_bound(x, onehot, dtype) + 4 * unit_roundoff(dtype) * abs(rloss)
    assert abs(loss - rloss) <= bound, (loss, rloss, bound)
    dx, rdx = c.backward(dout), r.backward(dout)
    gbound = softmax_bound(r.y, c_, dtype) * abs(dout) / n + elementwise_bound(rdx, dtype)
    assert_within(dx, rdx, gbound, "(y - t) * dout / N")
    keep.check()
    assert_no_alias([dx, c.y], keep.arrays)
    assert not np.shares_memory(dx, c.y)
    return c


@pytest.mark.parametrize("n,c", CLASS_SHAPES)
def test_softmax_with_loss_labels(rng, dtype, layout, n, c):
    x = _rand(rng, (n, c), dtype, 3.0)
    labels = rng.integers(0, c, n)
    layer = _check_softmax_with_loss(dtype, layout, x, labels, np.eye(c)[labels])
    np.testing.assert_array_equal(layer.t, labels)


@pytest.mark.parametrize("n,c", CLASS_SHAPES)
def test_softmax_with_loss_onehot(rng, dtype, layout, n, c):
    x = _rand(rng, (n, c), dtype, 3.0)
    onehot = np.eye(c, dtype=dtype)[rng.integers(0, c, n)]
    layer = _check_softmax_with_loss(dtype, layout, x, onehot, onehot, dout=0.5)
    np.testing.assert_array_equal(layer.t, onehot)


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float64])
def test_softmax_with_loss_label_dtypes(rng, dtype, label_dtype):
    x = _rand(rng, (17, 5), dtype)
    labels = rng.integers(0, 5, 17)
    ref = L.SoftmaxWithLoss()
    ref_loss, ref_dx = ref.forward(x, labels), ref.backward()
    c = L.SoftmaxWithLoss()
    assert c.forward(x, labels.astype(label_dtype)) == ref_loss
    assert_bitwise(c.backward(), ref_dx)
    onehot = np.eye(5)[labels].astype(np.int64)
    c = L.SoftmaxWithLoss()
    assert c.forward(x, onehot) == ref_loss
    # The one-hot kernel rounds y - t to the dtype before scaling, the label kernel does
    # not (its "- 1" is a C double): equal to rounding (4u), not bitwise, in float32.
    assert_within(c.backward(), ref_dx, elementwise_bound(ref_dx, dtype), "one-hot vs labels gradient")


LARGE_LOGITS = [(np.float32, b) for b in (1e4, 1e30, 3e38)] + \
               [(np.float64, b) for b in (1e4, 1e30, 3e38, 1e300)]


@pytest.mark.parametrize("dtype,big", LARGE_LOGITS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_softmax_with_loss_large_logits(dtype, big):
    """SPEC: numerically stable for logits of any size: finite loss and gradient, no warnings."""
    x = np.array([[big, -big, 0.0], [-big, big, big / 2], [0.0, 0.0, -big]], dtype)
    labels = np.array([0, 0, 2])
    exact = (0.0 + 2 * float(big) + float(big) + np.log(2)) / 3  # row 0: 0, row 1: 2big, row 2: big + log 2
    layer = L.SoftmaxWithLoss()
    with np.errstate(all="raise"):
        loss = layer.forward(x, labels)
        dx = layer.backward()
    assert np.isfinite(loss) and loss == pytest.approx(exact, rel=1e-6)
    assert np.isfinite(layer.y).all() and np.isfinite(dx).all()
    expected = np.array([[0, 0, 0], [-1, 1, 0], [0.5, 0.5, -1]]) / 3
    np.testing.assert_allclose(dx, expected.astype(dtype), rtol=4 * unit_roundoff(dtype), atol=0)


@pytest.mark.parametrize("n,c", [(1, 2), (17, 3), (100, 10), (3, 1023)])
def test_softmax_with_loss_matches_book_cross_entropy(rng, dtype, n, c):
    """SPEC: the loss matches the book's cross_entropy_error (1e-7 inside the log) to 1e-6,
    wherever that is possible: every true class has probability >= 0.1 here."""
    labels = rng.integers(0, c, n)
    x = _rand(rng, (n, c), dtype)
    x[np.arange(n), labels] += dtype(np.log(c) + 3)
    layer = L.SoftmaxWithLoss()
    loss = layer.forward(x, labels)
    book = RF.cross_entropy_error(RF.softmax(x.astype(np.float64)), labels)
    assert abs(loss - book) <= 1e-6, (loss, book)
    assert abs(F.cross_entropy_error(layer.y, labels) - book) <= 1e-6


@given(data=st.data(), dtype=st.sampled_from(DTYPES))
def test_softmax_with_loss_hypothesis(data, dtype):
    n, c = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 30))
    width = 32 if dtype == np.float32 else 64
    x = data.draw(hnp.arrays(dtype, (n, c), elements=st.floats(-1e3, 1e3, width=width)))
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    onehot = data.draw(st.booleans())
    t = np.eye(c, dtype=dtype)[labels] if onehot else labels
    _check_softmax_with_loss(dtype, "C", x, t, np.eye(c)[labels], dout=data.draw(
        st.floats(-4, 4, allow_nan=False)))


# ---------------------------------------------------------------- MSELoss

@pytest.mark.parametrize("n,k", [(1, 1), (2, 3), (17, 1), (3, 100), (1023, 2), (100, 1023)])
def test_mse_loss_layer(rng, dtype, layout, n, k):
    y, t = _rand(rng, (n, k), dtype), _rand(rng, (n, k), dtype)
    yl, tl = to_layout(y, layout), to_layout(t, layout)
    keep = Untouched(y=yl, t=tl)
    c, r = L.MSELoss(), R.MSELoss()
    loss, rloss = c.forward(yl, tl), r.forward(y, t)
    assert isinstance(loss, float) and c.loss == loss
    assert abs(loss - rloss) <= reduction_bound(rloss, y.size + 2, dtype, rloss)
    for dout in (1, 0.25):
        dx, rdx = c.backward(dout), r.backward(dout)
        assert_within(dx, rdx, elementwise_bound(rdx, dtype), "(y - t) * dout / N")
        assert_no_alias([dx], keep.arrays)
    keep.check()
    assert L.IdentityWithLoss is L.MSELoss


# ---------------------------------------------------------------- functions

@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_functions_relu_sigmoid(rng, dtype, layout, shape):
    x = _activation_input(rng, shape, dtype)
    xl = to_layout(x, layout)
    keep = Untouched(x=xl)
    assert_bitwise(F.relu(xl), RF.relu(x))
    with np.errstate(all="raise"):
        s = F.sigmoid(xl)
    assert_same_meta(s, RF.sigmoid(x))
    ref64 = np.asarray(RF.sigmoid(x.astype(np.float64)))
    assert_within(s, ref64.astype(dtype), elementwise_bound(ref64, dtype), "sigmoid")
    keep.check()


@pytest.mark.parametrize("shape", [(1,), (2,), (1023,), (1, 1), (3, 17), (100, 1023), (1023, 2)])
def test_functions_softmax(rng, dtype, layout, shape):
    x = _rand(rng, shape, dtype, 4.0)
    xl = to_layout(x, layout)
    keep = Untouched(x=xl)
    got, ref = F.softmax(xl), RF.softmax(x)
    assert_within(got, ref, softmax_bound(ref, shape[-1], dtype), "softmax")
    sums = np.asarray(got, np.float64).sum(axis=-1)
    assert np.all(np.abs(sums - 1) <= 4 * shape[-1] * unit_roundoff(dtype))
    keep.check()
    assert not np.shares_memory(got, xl)


@pytest.mark.parametrize("n,c", CLASS_SHAPES)
def test_functions_cross_entropy_error(rng, dtype, layout, n, c):
    y = np.asarray(RF.softmax(_rand(rng, (n, c), dtype, 2.0)))
    labels = rng.integers(0, c, n)
    onehot = np.eye(c, dtype=dtype)[labels]
    yl = to_layout(y, layout)
    keep = Untouched(y=yl)
    ref = RF.cross_entropy_error(y, labels)
    tol = 1e-6 if dtype == np.float32 else 1e-12 * max(1.0, abs(ref))
    for t in (labels, to_layout(labels, layout), onehot, to_layout(onehot, layout)):
        got = F.cross_entropy_error(yl, t)
        assert isinstance(got, float)
        assert abs(got - ref) <= tol, (got, ref)
    keep.check()
    # One sample as a 1-D y: the book's reshape(1, -1), with a label or a one-hot row.
    assert F.cross_entropy_error(y[0], labels[0]) == pytest.approx(RF.cross_entropy_error(y[0], labels[0]),
                                                                   rel=1e-5, abs=tol)
    assert F.cross_entropy_error(y[0], onehot[0]) == pytest.approx(RF.cross_entropy_error(y[0], onehot[0]),
                                                                   rel=1e-5, abs=tol)


@pytest.mark.parametrize("shape", [(1,), (3,), (1023,), (2, 3), (100, 17)])
def test_functions_mean_squared_error(rng, dtype, layout, shape):
    y, t = _rand(rng, shape, dtype), _rand(rng, shape, dtype)
    yl, tl = to_layout(y, layout), to_layout(t, layout)
    keep = Untouched(y=yl, t=tl)
    got, ref = F.mean_squared_error(yl, tl), RF.mean_squared_error(y, t)
    assert isinstance(got, float)
    assert abs(got - ref) <= reduction_bound(ref, y.size + 2, dtype, ref)  # no division by N (book)
    ints = _ints(rng, shape, dtype), _ints(rng, shape, dtype)
    assert F.mean_squared_error(*ints) == RF.mean_squared_error(*ints)
    keep.check()


# ---------------------------------------------------------------- contracts beyond values

LAYER_CASES = {
    "Relu": lambda x: (L.Relu(), (x,)),
    "Sigmoid": lambda x: (L.Sigmoid(), (x,)),
    "Affine": lambda x: (L.Affine(np.linspace(-1, 1, x.shape[1] * 3).reshape(x.shape[1], 3).astype(x.dtype),
                                  np.arange(3).astype(x.dtype)), (x,)),
    "Mul": lambda x: (L.MulLayer(), (x, x[::-1].copy())),
    "Add": lambda x: (L.AddLayer(), (x, x[::-1].copy())),
    "SoftmaxWithLoss": lambda x: (L.SoftmaxWithLoss(), (x, np.arange(x.shape[0]) % x.shape[1])),
    "MSELoss": lambda x: (L.MSELoss(), (x, x[::-1].copy())),
}


def _run_layer(name, x_layout, x_c):
    """forward + backward of a layer whose first input is in a layout; all results."""
    layer, args = LAYER_CASES[name](x_c)
    out = layer.forward(x_layout, *args[1:])
    if name in ("SoftmaxWithLoss", "MSELoss"):
        grads = layer.backward()
    else:
        dout = np.ones(np.shape(out), np.asarray(out).dtype)
        grads = layer.backward(dout)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return [np.asarray(out)] + [np.asarray(g) for g in grads]


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_layout_gives_same_bits_as_c_contiguous(rng, dtype, layout, name):
    """SPEC: non-contiguous, Fortran, read-only and big-endian arrays give the same results."""
    x = _rand(rng, (17, 5), dtype)
    want = _run_layer(name, x, x)
    got = _run_layer(name, to_layout(x, layout), x)
    for g, w in zip(got, want):
        assert_bits_identical(g, w)


@pytest.mark.parametrize("fn", ["relu", "sigmoid"])
@pytest.mark.parametrize("value", [2.0, -1.5, np.float32(0.5), np.array(3.0), np.array(-2.0, np.float32)])
def test_functions_scalar_input_keeps_shape(fn, value):
    """A 0-d input gives a 0-d result, as the reference (and numpy) do."""
    got, ref = getattr(F, fn)(value), getattr(RF, fn)(value)
    assert np.shape(got) == np.shape(ref) == ()
    assert np.asarray(got).dtype == np.asarray(ref).dtype
    assert float(got) == pytest.approx(float(ref), rel=1e-6)


@pytest.mark.parametrize("cls", ["Relu", "Sigmoid"])
def test_activation_layer_on_scalar(cls):
    """The book's layers work on a Python float: forward(2.0) then backward(1.0)."""
    c, r = getattr(L, cls)(), getattr(R, cls)()
    out, rout = c.forward(2.0), r.forward(2.0)
    assert np.shape(out) == np.shape(rout) == ()
    dx, rdx = c.backward(1.0), r.backward(1.0)
    assert np.shape(dx) == np.shape(rdx) == ()
    assert float(dx) == pytest.approx(float(rdx), rel=1e-15)


@pytest.mark.parametrize("cls", ["Relu", "Sigmoid", "MulLayer", "AddLayer"])
@pytest.mark.parametrize("fwd_dtype,dout_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_backward_dtype_is_forward_dtype(rng, cls, fwd_dtype, dout_dtype):
    """dout is converted to the dtype of the forward pass (the reference's rule, SPEC's dtype rule)."""
    x = _rand(rng, (3, 4), fwd_dtype)
    c, r = getattr(L, cls)(), getattr(R, cls)()
    args = (x,) if cls in ("Relu", "Sigmoid") else (x, x)
    c.forward(*args), r.forward(*args)
    dout = _rand(rng, (3, 4), dout_dtype)
    got, ref = c.backward(dout), r.backward(dout)
    got = got if isinstance(got, tuple) else (got,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    for g, rr in zip(got, ref):
        assert g.dtype == rr.dtype == fwd_dtype


def test_layer_reuse_with_new_batch(rng, dtype):
    """A second forward with another batch size replaces the cached state completely."""
    W, b = _rand(rng, (5, 3), dtype), _rand(rng, 3, dtype)
    c = L.Affine(W, b)
    c.forward(_rand(rng, (17, 5), dtype))
    c.backward(_rand(rng, (17, 3), dtype))
    x, dout = _rand(rng, (2, 5), dtype), _rand(rng, (2, 3), dtype)
    fresh = L.Affine(W, b)
    assert_bits_identical(c.forward(x), fresh.forward(x))
    assert_bits_identical(c.backward(dout), fresh.backward(dout))
    assert_bits_identical(c.dW, fresh.dW)
    assert_bits_identical(c.db, fresh.db)
