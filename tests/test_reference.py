"""The pure-numpy reference (fastmlp.reference): hand-derived values, book examples,
dtype rules, no mutation of inputs, and named errors for bad input.

Gradient checks of the same code live in test_gradcheck_reference.py.
"""
import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmlp import reference as R
from fastmlp.reference import functions as F
from fastmlp.reference import layers as L

FLOATS = [np.float32, np.float64]
U = {np.float32: np.finfo(np.float32).eps / 2, np.float64: np.finfo(np.float64).eps / 2}
SEEDS = st.integers(0, 2**32 - 1)


def raises_naming(exc, name):
    """pytest.raises whose message must name ``name`` as a word."""
    return pytest.raises(exc, match=rf"(^|\W){re.escape(name)}(\W|$)")


def readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------
# functions
# --------------------------------------------------------------------------

class TestSigmoid:
    def test_hand_values(self):
        x = np.array([0.0, math.log(3.0), -math.log(3.0), math.log(9.0)])
        np.testing.assert_allclose(F.sigmoid(x), [0.5, 0.75, 0.25, 0.9], rtol=1e-15)

    def test_large_arguments_no_overflow_warning(self):
        x = np.array([-1e308, -1000.0, -745.0, 745.0, 1000.0, 1e308])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                out = F.sigmoid(x)
        assert np.all(np.isfinite(out))
        np.testing.assert_array_equal(out[[0, 1, 4, 5]], [0.0, 0.0, 1.0, 1.0])
        assert 0 < out[2] < 1e-300  # exp(-745) is subnormal, still exact-ish, not 0/0

    @given(st.floats(-50, 50, allow_nan=False))
    def test_symmetry(self, v):
        x = np.array([v, -v])
        s = F.sigmoid(x)
        assert abs(s[0] + s[1] - 1.0) <= 2 * U[np.float64]

    @given(st.floats(-30, 30, allow_nan=False))
    def test_matches_naive_formula_where_safe(self, v):
        expected = 1.0 / (1.0 + math.exp(-v))
        assert F.sigmoid(v) == pytest.approx(expected, rel=4 * U[np.float64])

    def test_dtypes(self):
        assert F.sigmoid(np.zeros(3, np.float32)).dtype == np.float32
        assert F.sigmoid(np.zeros(3, np.int64)).dtype == np.float64
        assert F.sigmoid(np.zeros(3, np.float16)).dtype == np.float64
        assert F.sigmoid(0) == 0.5


class TestRelu:
    def test_hand_values(self):
        out = F.relu(np.array([-2.0, -0.0, 0.0, 0.5, 3.0]))
        np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, 0.5, 3.0])

    def test_dtypes(self):
        assert F.relu(np.ones((2, 2), np.float32)).dtype == np.float32
        assert F.relu(np.ones((2, 2), np.int32)).dtype == np.float64


class TestSoftmax:
    def test_hand_values_1d(self):
        x = np.log([1.0, 2.0, 3.0])
        np.testing.assert_allclose(F.softmax(x), [1 / 6, 2 / 6, 3 / 6], rtol=1e-15)

    def test_row_wise_2d(self):
        x = np.array([np.log([1.0, 2.0, 3.0]), np.log([1.0, 1.0, 2.0]) + 100.0])
        np.testing.assert_allclose(F.softmax(x), [[1 / 6, 2 / 6, 3 / 6], [0.25, 0.25, 0.5]], rtol=1e-14)

    def test_extreme_logits_finite(self):
        x = np.array([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = F.softmax(x)
        assert np.all(np.isfinite(y))
        np.testing.assert_array_equal(y[0], [1.0, 0.0, 0.0])
        np.testing.assert_array_equal(y[1], [0.5, 0.5, 0.0])
        np.testing.assert_allclose(y[2], [1 / 3] * 3, rtol=1e-15)

    @pytest.mark.parametrize("dtype", FLOATS)
    @given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(1, 12))
    @settings(max_examples=30, deadline=None)
    def test_rows_sum_to_one_and_shift_invariant(self, dtype, seed, n, c):
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal((n, c)) * 20).astype(dtype)
        y = F.softmax(x)
        assert y.dtype == dtype
        assert np.all(y >= 0)
        assert np.all(np.abs(y.sum(axis=1) - 1) <= 4 * c * U[dtype])
        shifted = F.softmax((x.astype(np.float64) + 7.0).astype(dtype))
        np.testing.assert_allclose(shifted, y, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-30)

    def test_3d_rejected(self):
        with raises_naming(ValueError, "x"):
            F.softmax(np.zeros((2, 2, 2)))


class TestCrossEntropyError:
    # The book's example (ch. 4): y is a softmax output, the true class is 2.
    Y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])

    def test_book_values(self):
        t = np.zeros(10)
        t[2] = 1
        assert F.cross_entropy_error(self.Y, t) == pytest.approx(-math.log(0.6 + 1e-7), rel=1e-15)
        assert F.cross_entropy_error(self.Y, t) == pytest.approx(0.510825457099338, rel=1e-12)
        t7 = np.zeros(10)
        t7[7] = 1
        assert F.cross_entropy_error(self.Y, t7) == pytest.approx(2.302584092994546, rel=1e-12)

    def test_label_forms_agree(self):
        onehot = np.eye(10)[2]
        expected = -math.log(0.6 + 1e-7)
        assert F.cross_entropy_error(self.Y, 2) == pytest.approx(expected, rel=1e-15)
        assert F.cross_entropy_error(self.Y, np.array([2])) == pytest.approx(expected, rel=1e-15)
        assert F.cross_entropy_error(self.Y[None], np.array([2])) == pytest.approx(expected, rel=1e-15)
        assert F.cross_entropy_error(self.Y[None], onehot[None]) == pytest.approx(expected, rel=1e-15)

    def test_batch_mean_and_zero_probability(self):
        y = np.array([[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]])
        t = np.array([0, 2])
        expected = -(math.log(0.5 + 1e-7) + math.log(1e-7)) / 2
        assert F.cross_entropy_error(y, t) == pytest.approx(expected, rel=1e-15)
        assert isinstance(F.cross_entropy_error(y, t), float)

    def test_bad_labels(self):
        with raises_naming(ValueError, "t"):
            F.cross_entropy_error(np.full((2, 3), 1 / 3), np.array([0, 3]))
        with raises_naming(ValueError, "t"):
            F.cross_entropy_error(np.full((2, 3), 1 / 3), np.array([0, 1, 2]))


class TestMeanSquaredError:
    def test_book_values(self):
        y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
        t = np.eye(10)[2]
        assert F.mean_squared_error(y, t) == pytest.approx(0.0975, rel=1e-13)
        y7 = np.array([0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0])
        assert F.mean_squared_error(y7, t) == pytest.approx(0.5975, rel=1e-13)

    def test_no_division_by_batch(self):
        y = np.array([[1.0, 2.0], [1.0, 2.0]])
        t = np.zeros((2, 2))
        assert F.mean_squared_error(y, t) == 5.0  # 0.5 * (1 + 4 + 1 + 4)

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="y and t"):
            F.mean_squared_error(np.zeros(3), np.zeros(4))


# --------------------------------------------------------------------------
# the book's computational-graph examples (ch. 5, buy_apple*.py)
# --------------------------------------------------------------------------

def test_book_buy_apple():
    apple, apple_num, tax = 100, 2, 1.1
    mul_apple_layer, mul_tax_layer = L.MulLayer(), L.MulLayer()
    apple_price = mul_apple_layer.forward(apple, apple_num)
    price = mul_tax_layer.forward(apple_price, tax)
    dapple_price, dtax = mul_tax_layer.backward(1)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)
    assert int(price) == 220 and price == pytest.approx(220.0, rel=1e-15)
    assert dapple == pytest.approx(2.2, rel=1e-15)
    assert int(dapple_num) == 110 and dapple_num == pytest.approx(110.0, rel=1e-15)
    assert dtax == 200


def test_book_buy_apple_orange():
    apple, apple_num, orange, orange_num, tax = 100, 2, 150, 3, 1.1
    mul_apple_layer, mul_orange_layer = L.MulLayer(), L.MulLayer()
    add_apple_orange_layer, mul_tax_layer = L.AddLayer(), L.MulLayer()

    apple_price = mul_apple_layer.forward(apple, apple_num)
    orange_price = mul_orange_layer.forward(orange, orange_num)
    all_price = add_apple_orange_layer.forward(apple_price, orange_price)
    price = mul_tax_layer.forward(all_price, tax)

    dall_price, dtax = mul_tax_layer.backward(1)
    dapple_price, dorange_price = add_apple_orange_layer.backward(dall_price)
    dorange, dorange_num = mul_orange_layer.backward(dorange_price)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)

    # what the book prints: 715, 110, 2.2, 3.3, 165, 650
    assert int(price) == 715
    assert int(dapple_num) == 110
    assert dapple == pytest.approx(2.2, rel=1e-15)
    assert dorange == pytest.approx(3.3, rel=1e-15)
    assert int(dorange_num) == 165
    assert dtax == 650
    assert dapple_num == pytest.approx(110.0, rel=1e-15)
    assert dorange_num == pytest.approx(165.0, rel=1e-15)


# --------------------------------------------------------------------------
# layers: values and attributes
# --------------------------------------------------------------------------

def test_mul_add_arrays_and_dtypes():
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    y = np.array([[5.0, 6.0], [7.0, 8.0]], np.float32)
    mul = L.MulLayer()
    out = mul.forward(x, y)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x * y)
    dx, dy = mul.backward(np.full((2, 2), 2.0))
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, 2 * y)
    np.testing.assert_array_equal(dy, 2 * x)

    add = L.AddLayer()
    np.testing.assert_array_equal(add.forward(x, y.astype(np.int64)), x.astype(np.float64) + y)
    dout = np.array([[1.0, -1.0], [0.5, 2.0]])
    dx, dy = add.backward(dout)
    np.testing.assert_array_equal(dx, dout)
    np.testing.assert_array_equal(dy, dout)
    assert not np.shares_memory(dx, dout) and not np.shares_memory(dx, dy)
    with raises_naming(ValueError, "x"):
        add.forward(np.zeros(2), np.zeros(3))


def test_relu_layer():
    x = np.array([[1.0, -0.5], [-2.0, 3.0], [0.0, -0.0]])
    layer = L.Relu()
    out = layer.forward(x)
    np.testing.assert_array_equal(layer.mask, x <= 0)
    np.testing.assert_array_equal(out, [[1.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    dout = np.arange(1.0, 7.0).reshape(3, 2)
    np.testing.assert_array_equal(layer.backward(dout), [[1.0, 0.0], [0.0, 4.0], [0.0, 0.0]])
    np.testing.assert_array_equal(dout, np.arange(1.0, 7.0).reshape(3, 2))  # the book overwrites dout


def test_sigmoid_layer():
    x = np.array([[0.0, math.log(3.0)]])
    layer = L.Sigmoid()
    out = layer.forward(x)
    np.testing.assert_allclose(out, [[0.5, 0.75]], rtol=1e-15)
    assert layer.out is out or np.array_equal(layer.out, out)
    np.testing.assert_allclose(layer.backward(np.array([[4.0, 1.0]])), [[1.0, 0.1875]], rtol=1e-15)


def test_affine_4d_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 3, 2))
    W = rng.standard_normal((12, 5))
    b = rng.standard_normal(5)
    layer = L.Affine(W, b)
    out = layer.forward(x)
    assert out.shape == (3, 5)
    np.testing.assert_allclose(out, x.reshape(3, 12) @ W + b, rtol=1e-14)
    assert layer.original_x_shape == (3, 2, 3, 2)
    assert layer.x.shape == (3, 12)
    dout = rng.standard_normal((3, 5))
    dx = layer.backward(dout)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, (dout @ W.T).reshape(x.shape), rtol=1e-14)
    np.testing.assert_allclose(layer.dW, x.reshape(3, 12).T @ dout, rtol=1e-14)
    np.testing.assert_allclose(layer.db, dout.sum(axis=0), rtol=1e-14)
    assert layer.dW.shape == W.shape and layer.db.shape == b.shape


def test_affine_holds_params_by_reference():
    W = np.eye(2)
    b = np.zeros(2)
    layer = L.Affine(W, b)
    assert layer.W is W and layer.b is b
    x = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(layer.forward(x), [[1.0, 2.0]])
    W *= 3.0  # an optimizer updates params in place
    b += 1.0
    np.testing.assert_array_equal(layer.forward(x), [[4.0, 7.0]])


def test_affine_dtype_of_W_decides():
    W32 = np.ones((3, 2), np.float32)
    layer = L.Affine(W32, np.zeros(2, np.float32))
    out = layer.forward(np.ones((4, 3), np.float64))
    assert out.dtype == np.float32
    assert layer.backward(np.ones((4, 2))).dtype == np.float32
    assert layer.dW.dtype == np.float32 and layer.db.dtype == np.float32
    layer64 = L.Affine(np.ones((3, 2)), np.zeros(2))
    assert layer64.forward(np.ones((4, 3), np.int32)).dtype == np.float64
    assert layer64.forward(np.ones((4, 3), np.float32)).dtype == np.float64


@pytest.mark.parametrize("layout", ["fortran", "strided", "readonly", "bigendian"])
def test_affine_and_softmax_accept_any_layout(layout):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6))
    t = np.array([0, 2, 1, 2])
    W = rng.standard_normal((6, 3))
    b = rng.standard_normal(3)
    if layout == "fortran":
        x2 = np.asfortranarray(x)
    elif layout == "strided":
        x2 = np.repeat(x, 2, axis=1)[:, ::2]
        assert not x2.flags.c_contiguous
    elif layout == "readonly":
        x2 = readonly(x)
    else:
        x2 = x.astype(">f8")
    ref_layer, layer = L.Affine(W, b), L.Affine(W, b)
    np.testing.assert_array_equal(layer.forward(x2), ref_layer.forward(x))
    np.testing.assert_array_equal(layer.backward(np.ones((4, 3))), ref_layer.backward(np.ones((4, 3))))
    np.testing.assert_array_equal(layer.dW, ref_layer.dW)
    assert L.SoftmaxWithLoss().forward(x2[:, :3], t) == L.SoftmaxWithLoss().forward(x[:, :3], t)


class TestSoftmaxWithLoss:
    def test_hand_value_and_gradient(self):
        x = np.log(np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]))
        t = np.array([1, 0])
        layer = L.SoftmaxWithLoss()
        loss = layer.forward(x, t)
        assert isinstance(loss, float)
        assert loss == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2, rel=1e-14)
        assert layer.loss == loss
        np.testing.assert_allclose(layer.y, [[0.25, 0.5, 0.25], [0.25, 0.25, 0.5]], rtol=1e-15)
        dx = layer.backward()
        np.testing.assert_allclose(dx, [[0.125, -0.25, 0.125], [-0.375, 0.125, 0.25]], rtol=1e-14)
        np.testing.assert_allclose(layer.backward(dout=3.0), 3 * dx, rtol=1e-15)

    @given(seed=SEEDS, n=st.integers(1, 8), c=st.integers(2, 10))
    @settings(max_examples=30, deadline=None)
    def test_labels_and_onehot_agree_and_match_book(self, seed, n, c):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, c)) * 0.5
        t = rng.integers(0, c, n)
        a, b = L.SoftmaxWithLoss(), L.SoftmaxWithLoss()
        loss_labels = a.forward(x, t)
        loss_onehot = b.forward(x, np.eye(c)[t])
        assert loss_labels == pytest.approx(loss_onehot, rel=1e-12)
        np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-12, atol=1e-17)
        # The book's softmax + cross_entropy_error adds 1e-7 inside the log, so
        # exact - book = mean(log(1 + 1e-7 / y_true)), in [0, mean(1e-7 / y_true)];
        # below 1e-6 (the SPEC's tolerance) whenever every y_true >= 0.1.
        book = F.cross_entropy_error(F.softmax(x), t)
        y_true = a.y[np.arange(n), t]
        gap = loss_labels - book
        assert -1e-15 <= gap <= np.mean(1e-7 / y_true) + 1e-15
        if y_true.min() >= 0.1:
            assert gap <= 1e-6

    def test_close_to_book_when_true_class_probable(self):
        x = np.array([[2.0, 0.5, 0.1], [0.0, 1.0, 0.3], [0.2, 0.2, 0.2]])
        t = np.array([0, 1, 2])
        assert abs(L.SoftmaxWithLoss().forward(x, t) - F.cross_entropy_error(F.softmax(x), t)) <= 1e-6

    def test_extreme_logits(self):
        x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
        t = np.array([1, 0])
        layer = L.SoftmaxWithLoss()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = layer.forward(x, t)
            dx = layer.backward()
        assert math.isfinite(loss) and np.all(np.isfinite(dx))
        # exact log-softmax: -log p = 2e4 in row 0, 2e4 + log 2 in row 1
        assert loss == pytest.approx((2e4 + 2e4 + math.log(2.0)) / 2, rel=1e-15)
        np.testing.assert_allclose(dx, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], atol=1e-15)

    def test_float32(self):
        x = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
        layer = L.SoftmaxWithLoss()
        layer.forward(x, np.array([0, 0]))
        assert layer.y.dtype == np.float32
        assert layer.backward(np.float64(1.0)).dtype == np.float32


def test_mse_loss():
    y = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 3.0]])
    t = np.array([[0.0, 2.0], [0.0, 1.0], [1.0, 3.0]])
    layer = R.MSELoss()
    loss = layer.forward(y, t)
    assert loss == pytest.approx(0.5 * (1 + 4 + 4) / 3, rel=1e-15)
    assert layer.loss == loss
    np.testing.assert_allclose(layer.backward(), (y - t) / 3, rtol=1e-15)
    np.testing.assert_allclose(layer.backward(2), 2 * (y - t) / 3, rtol=1e-15)
    assert R.IdentityWithLoss is R.MSELoss
    with raises_naming(ValueError, "y"):
        layer.forward(np.zeros(3), np.zeros(3))


# --------------------------------------------------------------------------
# layers: state, mutation, errors
# --------------------------------------------------------------------------

LAYER_FACTORIES = {
    "MulLayer": L.MulLayer,
    "AddLayer": L.AddLayer,
    "Relu": L.Relu,
    "Sigmoid": L.Sigmoid,
    "Affine": lambda: L.Affine(np.ones((3, 2)), np.zeros(2)),
    "SoftmaxWithLoss": L.SoftmaxWithLoss,
    "MSELoss": L.MSELoss,
}


@pytest.mark.parametrize("name", list(LAYER_FACTORIES))
def test_backward_before_forward(name):
    layer = LAYER_FACTORIES[name]()
    with pytest.raises(RuntimeError, match=name):
        layer.backward(np.ones((2, 2)))


def test_state_attributes_none_after_init():
    assert (L.MulLayer().x, L.MulLayer().y) == (None, None)
    assert L.Relu().mask is None and L.Sigmoid().out is None
    aff = L.Affine(np.ones((3, 2)), np.zeros(2))
    assert (aff.x, aff.original_x_shape, aff.dW, aff.db) == (None, None, None, None)
    for cls in (L.SoftmaxWithLoss, L.MSELoss):
        layer = cls()
        assert (layer.y, layer.t, layer.loss) == (None, None, None)


@pytest.mark.parametrize("dtype", FLOATS)
@given(seed=SEEDS, n=st.integers(1, 5), k=st.integers(1, 5))
@settings(max_examples=15, deadline=None)
def test_layers_never_write_to_inputs(dtype, seed, n, k):
    """Read-only inputs make any write raise; bitwise copies catch anything else."""
    rng = np.random.default_rng(seed)
    arrays = {name: readonly(rng.standard_normal((n, k)).astype(dtype))
              for name in ("x", "y", "dout", "W", "b")}
    arrays["W"] = readonly(rng.standard_normal((k, k)).astype(dtype))
    arrays["b"] = readonly(rng.standard_normal(k).astype(dtype))
    arrays["labels"] = readonly(rng.integers(0, k, n))
    before = {name: a.copy() for name, a in arrays.items()}
    x, y, dout = arrays["x"], arrays["y"], arrays["dout"]

    for layer in (L.MulLayer(), L.AddLayer()):
        layer.forward(x, y)
        layer.backward(dout)
    for layer in (L.Relu(), L.Sigmoid(), L.Affine(arrays["W"], arrays["b"])):
        layer.forward(x)
        layer.backward(dout)
    for t in (arrays["labels"], readonly(np.eye(k, dtype=dtype)[arrays["labels"]])):
        layer = L.SoftmaxWithLoss()
        layer.forward(x, t)
        layer.backward()
    layer = L.MSELoss()
    layer.forward(x, y)
    layer.backward()

    for name, a in arrays.items():
        assert not a.flags.writeable
        np.testing.assert_array_equal(a, before[name], strict=True)


BAD_LAYER_CALLS = [
    # (layer, method, args, exception, name in the message)
    ("Affine", "forward", (np.ones(3),), ValueError, "x"),
    ("Affine", "forward", (np.ones((2, 4)),), ValueError, "x"),
    ("Affine", "forward", (np.ones((2, 3), complex),), TypeError, "x"),
    ("Affine", "forward", ("abc",), TypeError, "x"),
    ("Affine", "forward", (np.ones((0, 3)),), ValueError, "x"),
    ("Affine", "backward", (np.ones((5, 2)),), ValueError, "dout"),
    ("Relu", "backward", (np.ones((3, 2)),), ValueError, "dout"),
    ("Sigmoid", "forward", (np.array([None, 1]),), TypeError, "x"),
    ("Sigmoid", "backward", (np.ones(4),), ValueError, "dout"),
    ("MulLayer", "forward", (np.ones(2), np.ones(3)), ValueError, "x"),
    ("MulLayer", "forward", (np.ones(2), [1j, 2j]), TypeError, "y"),
    ("MulLayer", "backward", (np.ones(7),), ValueError, "dout"),
    ("AddLayer", "backward", (np.ones(7),), ValueError, "dout"),
    ("SoftmaxWithLoss", "forward", (np.ones(3), np.array([0])), ValueError, "x"),
    ("SoftmaxWithLoss", "forward", (np.ones((2, 3)), np.array([0, 3])), ValueError, "t"),
    ("SoftmaxWithLoss", "forward", (np.ones((2, 3)), np.array([0, 1, 1])), ValueError, "t"),
    ("SoftmaxWithLoss", "forward", (np.ones((2, 3)), np.eye(4)[:2]), ValueError, "t"),
    ("SoftmaxWithLoss", "forward", (np.ones((2, 3)), np.array([0.5, 1.0])), ValueError, "t"),
    ("SoftmaxWithLoss", "backward", (np.ones(2),), ValueError, "dout"),
    ("MSELoss", "forward", (np.ones((2, 3)), np.ones((2, 2))), ValueError, "t"),
    ("MSELoss", "backward", (np.ones(2),), ValueError, "dout"),
]


@pytest.mark.parametrize("layer_name, method, args, exc, argname", BAD_LAYER_CALLS)
def test_bad_input_named_and_state_unchanged(layer_name, method, args, exc, argname):
    layer = LAYER_FACTORIES[layer_name]()
    good = {
        "MulLayer": (np.ones(2), np.full(2, 3.0)),
        "AddLayer": (np.ones(2), np.full(2, 3.0)),
        "Relu": (np.array([[1.0, -1.0], [2.0, -2.0]]),),
        "Sigmoid": (np.ones((2, 2)),),
        "Affine": (np.ones((2, 3)),),
        "SoftmaxWithLoss": (np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]), np.array([2, 0])),
        "MSELoss": (np.ones((2, 3)), np.zeros((2, 3))),
    }[layer_name]
    layer.forward(*good)
    state = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(layer).items()}
    with raises_naming(exc, argname):
        getattr(layer, method)(*args)
    for k, v in vars(layer).items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, state[k], strict=True)
        else:
            assert v == state[k], k


def test_affine_constructor_errors():
    with raises_naming(ValueError, "W"):
        L.Affine(np.ones(3), np.zeros(3))
    with raises_naming(ValueError, "b"):
        L.Affine(np.ones((3, 2)), np.zeros(3))
    with raises_naming(ValueError, "b"):
        L.Affine(np.ones((3, 2)), np.zeros((1, 2)))
    with raises_naming(TypeError, "W"):
        L.Affine(np.ones((3, 2), complex), np.zeros(2))


# --------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------

def numpy_forward(params, x, n_affine, activation):
    for i in range(1, n_affine + 1):
        x = x @ params[f"W{i}"] + params[f"b{i}"]
        if i < n_affine:
            x = np.maximum(x, 0) if activation == "relu" else 1 / (1 + np.exp(-x))
    return x


def numpy_loss(params, x, t, n_affine, activation, lam=0.0):
    z = numpy_forward(params, x, n_affine, activation)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    decay = sum(0.5 * lam * np.sum(params[f"W{i}"] ** 2) for i in range(1, n_affine + 1))
    return -logp[np.arange(len(t)), t].mean() + decay


class TestTwoLayerNet:
    def test_structure_and_init(self):
        net = R.TwoLayerNet(6, 5, 3, seed=42)
        assert list(net.params) == ["W1", "b1", "W2", "b2"]
        assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]
        assert isinstance(net.layers["Relu1"], L.Relu)
        assert isinstance(net.lastLayer, L.SoftmaxWithLoss) and net.lastLayer is net.last_layer
        rng = np.random.default_rng(42)
        np.testing.assert_array_equal(net.params["W1"], 0.01 * rng.standard_normal((6, 5)))
        np.testing.assert_array_equal(net.params["W2"], 0.01 * rng.standard_normal((5, 3)))
        np.testing.assert_array_equal(net.params["b1"], np.zeros(5))
        for name, p in net.params.items():
            assert p.dtype == np.float64 and p.flags.c_contiguous, name
        assert net.layers["Affine1"].W is net.params["W1"]
        assert net.layers["Affine2"].b is net.params["b2"]

    def test_seed_reproducible_and_float32(self):
        a = R.TwoLayerNet(4, 3, 2, weight_init_std=0.5, seed=7)
        b = R.TwoLayerNet(4, 3, 2, weight_init_std=0.5, seed=7)
        c = R.TwoLayerNet(4, 3, 2, weight_init_std=0.5, seed=7, dtype=np.float32)
        for name in a.params:
            np.testing.assert_array_equal(a.params[name], b.params[name])
            assert c.params[name].dtype == np.float32
            np.testing.assert_array_equal(c.params[name], a.params[name].astype(np.float32))
        x = np.arange(8.0).reshape(2, 4)
        assert c.predict(x).dtype == np.float32
        assert all(g.dtype == np.float32 for g in c.gradient(x, np.array([0, 1])).values())

    def test_predict_loss_accuracy_match_numpy(self):
        rng = np.random.default_rng(3)
        net = R.TwoLayerNet(5, 7, 4, weight_init_std=0.5, seed=3)
        x = rng.standard_normal((9, 5))
        t = rng.integers(0, 4, 9)
        np.testing.assert_allclose(net.predict(x), numpy_forward(net.params, x, 2, "relu"), rtol=1e-13)
        assert net.loss(x, t) == pytest.approx(numpy_loss(net.params, x, t, 2, "relu"), rel=1e-13)
        assert net.loss(x, np.eye(4)[t]) == pytest.approx(net.loss(x, t), rel=1e-14)
        expected_acc = np.mean(numpy_forward(net.params, x, 2, "relu").argmax(1) == t)
        assert net.accuracy(x, t) == expected_acc
        assert net.accuracy(x, np.eye(4)[t]) == expected_acc
        assert isinstance(net.accuracy(x, t), float)

    def test_accuracy_hand_value(self):
        net = R.TwoLayerNet(2, 2, 2, seed=0)
        net.params["W1"][...] = np.eye(2)
        net.params["W2"][...] = np.eye(2)
        x = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
        assert net.accuracy(x, np.array([0, 1, 1, 1])) == 0.75

    def test_predict_independent_of_caches(self):
        rng = np.random.default_rng(5)
        net = R.TwoLayerNet(4, 6, 3, weight_init_std=0.5, seed=5)
        fresh = R.TwoLayerNet(4, 6, 3, weight_init_std=0.5, seed=5)
        xa, xb = rng.standard_normal((7, 4)), rng.standard_normal((2, 4))
        net.gradient(xa, rng.integers(0, 3, 7))
        np.testing.assert_array_equal(net.predict(xb), fresh.predict(xb))
        np.testing.assert_array_equal(net.predict(xb), net.predict(xb))


class TestMultiLayerNet:
    @pytest.mark.parametrize("init, factor", [("relu", 2.0), ("he", 2.0), ("sigmoid", 1.0),
                                              ("Xavier", 1.0), (0.3, None)])
    def test_init_scales(self, init, factor):
        net = R.MultiLayerNet(8, [5, 4], 3, weight_init_std=init, seed=11)
        rng = np.random.default_rng(11)
        for i, (n_in, n_out) in enumerate([(8, 5), (5, 4), (4, 3)], start=1):
            scale = init if factor is None else np.sqrt(factor / n_in)
            np.testing.assert_array_equal(net.params[f"W{i}"], scale * rng.standard_normal((n_in, n_out)))
            np.testing.assert_array_equal(net.params[f"b{i}"], np.zeros(n_out))

    @pytest.mark.parametrize("activation, layer_cls", [("relu", L.Relu), ("sigmoid", L.Sigmoid)])
    def test_structure_and_loss(self, activation, layer_cls):
        rng = np.random.default_rng(2)
        net = R.MultiLayerNet(6, [5, 4], 3, activation=activation, weight_decay_lambda=0.1, seed=2)
        assert list(net.layers) == ["Affine1", "Activation_function1", "Affine2",
                                    "Activation_function2", "Affine3"]
        assert isinstance(net.layers["Activation_function2"], layer_cls)
        assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
        assert net.hidden_layer_num == 2
        x = rng.standard_normal((5, 6))
        t = rng.integers(0, 3, 5)
        expected = numpy_loss(net.params, x, t, 3, activation, lam=0.1)
        assert net.loss(x, t) == pytest.approx(expected, rel=1e-13)

    def test_weight_decay_adds_lambda_w(self):
        rng = np.random.default_rng(9)
        x = rng.standard_normal((6, 4))
        t = rng.integers(0, 3, 6)
        plain = R.MultiLayerNet(4, [5], 3, seed=9)
        decayed = R.MultiLayerNet(4, [5], 3, weight_decay_lambda=0.1, seed=9)
        g0, g1 = plain.gradient(x, t), decayed.gradient(x, t)
        for i in (1, 2):
            np.testing.assert_allclose(g1[f"W{i}"] - g0[f"W{i}"], 0.1 * plain.params[f"W{i}"],
                                       rtol=1e-12, atol=1e-15)
            np.testing.assert_array_equal(g1[f"b{i}"], g0[f"b{i}"])
        decay = 0.05 * sum(np.sum(plain.params[f"W{i}"] ** 2) for i in (1, 2))
        assert decayed.loss(x, t) == pytest.approx(plain.loss(x, t) + decay, rel=1e-14)

    def test_no_hidden_layers(self):
        net = R.MultiLayerNet(3, [], 2, weight_init_std=0.5, seed=0)
        assert list(net.layers) == ["Affine1"]
        x = np.ones((2, 3))
        np.testing.assert_allclose(net.predict(x), x @ net.params["W1"], rtol=1e-15)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(activation="softplus"), ValueError, "activation"),
    (dict(weight_init_std="lecun"), ValueError, "weight_init_std"),
    (dict(weight_init_std=-1.0), ValueError, "weight_init_std"),
    (dict(weight_decay_lambda=-0.1), ValueError, "weight_decay_lambda"),
    (dict(weight_decay_lambda=float("nan")), ValueError, "weight_decay_lambda"),
    (dict(dtype=np.int64), ValueError, "dtype"),
    (dict(hidden_size_list=[3, 0]), ValueError, "hidden_size_list"),
    (dict(hidden_size_list=3), TypeError, "hidden_size_list"),
    (dict(input_size=0), ValueError, "input_size"),
    (dict(output_size=2.5), TypeError, "output_size"),
])
def test_multilayer_constructor_errors(kwargs, exc, name):
    args = dict(input_size=4, hidden_size_list=[3], output_size=2) | kwargs
    with raises_naming(exc, name):
        R.MultiLayerNet(**args)


def test_two_layer_constructor_errors_and_abstract_base():
    with raises_naming(ValueError, "hidden_size"):
        R.TwoLayerNet(4, 0, 2)
    with raises_naming(TypeError, "weight_init_std"):
        R.TwoLayerNet(4, 3, 2, weight_init_std="he")
    from fastmlp import _networks
    with pytest.raises(TypeError, match="layers_module"):
        _networks.TwoLayerNet(4, 3, 2)


def _bad_network_calls():
    x = np.random.default_rng(0).standard_normal((4, 5))
    t = np.array([0, 1, 2, 1])
    x_nan, x_inf = x.copy(), x.copy()
    x_nan[1, 2] = np.nan
    x_inf[0, 0] = -np.inf
    return [
        ("1-D x", x[0], t[:1], ValueError, "x", r"x\[None\]"),
        ("wrong features", x[:, :4], t, ValueError, "x", "input_size"),
        ("NaN in x", x_nan, t, ValueError, "x", "NaN"),
        ("inf in x", x_inf, t, ValueError, "x", "inf"),
        ("empty batch", x[:0], t[:0], ValueError, "x", "empty"),
        ("complex x", x.astype(complex), t, TypeError, "x", "dtype"),
        ("object x", x.astype(object), t, TypeError, "x", "dtype"),
        ("x not an array", "data", t, TypeError, "x", "str"),
        ("label out of range", x, np.array([0, 1, 3, 1]), ValueError, "t", "range"),
        ("negative label", x, np.array([0, -1, 2, 1]), ValueError, "t", "range"),
        ("batch mismatch", x, t[:3], ValueError, "t", "rows"),
        ("one-hot width", x, np.eye(4)[t], ValueError, "t", "width"),
        ("t 3-D", x, np.zeros((4, 3, 1)), ValueError, "t", "shape"),
        ("fractional labels", x, t + 0.5, ValueError, "t", "whole"),
    ]


def _bad_network_params():
    for case in _bad_network_calls():
        for method in ("loss", "gradient", "numerical_gradient", "accuracy", "predict"):
            if method in ("predict", "accuracy") and case[-1] in ("NaN", "inf"):
                continue  # predict and accuracy propagate NaN rather than reject it
            if method == "predict" and case[-2] == "t":
                continue  # predict takes no t
            yield pytest.param(method, case, id=f"{method}-{case[0]}")


@pytest.mark.parametrize("method, case", _bad_network_params())
def test_network_bad_input(method, case):
    _, x, t, exc, name, detail = case
    net = R.MultiLayerNet(5, [4], 3, weight_decay_lambda=0.1, seed=1)
    fresh = R.MultiLayerNet(5, [4], 3, weight_decay_lambda=0.1, seed=1)
    x_before = x.copy() if isinstance(x, np.ndarray) else x
    before = {k: v.copy() for k, v in net.params.items()}
    args = (x,) if method == "predict" else (x, t)
    with raises_naming(exc, name) as info:
        getattr(net, method)(*args)
    assert re.search(detail, str(info.value), re.IGNORECASE)
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, before[k], strict=True)
    if isinstance(x, np.ndarray) and x.dtype != object:
        np.testing.assert_array_equal(x, x_before, strict=True)
    # the next valid call behaves as on a fresh network
    xg = np.random.default_rng(2).standard_normal((3, 5))
    tg = np.array([2, 0, 1])
    assert net.loss(xg, tg) == fresh.loss(xg, tg)


def test_network_inputs_not_mutated():
    rng = np.random.default_rng(4)
    x = readonly(rng.standard_normal((6, 5)))
    t = readonly(rng.integers(0, 3, 6))
    t1h = readonly(np.eye(3)[t])
    net = R.MultiLayerNet(5, [4, 4], 3, activation="sigmoid", weight_decay_lambda=0.1, seed=0)
    for tt in (t, t1h):
        net.predict(x)
        net.loss(x, tt)
        net.accuracy(x, tt)
        net.gradient(x, tt)
    np.testing.assert_array_equal(x, np.random.default_rng(4).standard_normal((6, 5)))
    assert not x.flags.writeable and not t.flags.writeable


def test_network_converts_input_dtype():
    net = R.TwoLayerNet(3, 4, 2, weight_init_std=0.5, seed=0, dtype=np.float32)
    x_int = np.array([[1, 2, 3], [0, -1, 2]])
    out = net.predict(x_int)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, net.predict(x_int.astype(np.float32)))
    net64 = R.TwoLayerNet(3, 4, 2, weight_init_std=0.5, seed=0)
    assert net64.predict(x_int.astype(np.float32)).dtype == np.float64
    assert net64.loss([[1, 2, 3]], [1]) == net64.loss(np.array([[1.0, 2.0, 3.0]]), np.array([1]))
