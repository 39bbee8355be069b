"""The rest of the book's ``common/functions.py`` and ``common/util.py`` (issue 13).

Each function is held to a stated expectation written here from its definition, and
the compiled one (``fastmlp.functions``) to its numpy twin (``fastmlp.reference``).
Tolerances follow ../shared/TESTING.md: elementwise rtol 4u, loss scalars 1e-12 (f64)
and 1e-5 (f32), integer-valued data bitwise.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastmlp import functions as F
from fastmlp import util
from fastmlp.reference import functions as R

DTYPES = [np.float32, np.float64]
U = {np.float32: float(np.finfo(np.float32).eps) / 2, np.float64: float(np.finfo(np.float64).eps) / 2}
SPECIAL = [-np.inf, -1e30, -800.0, -3.5, -1e-300, -0.0, 0.0, 1e-300, 0.5, 3.5, 800.0, 1e30,
           np.inf, np.nan]


def _arrays(dtype):
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=9),
                      elements=st.floats(width=np.dtype(dtype).itemsize * 8))   # inf, NaN too


# ---------------------------------------------------------------- activations and their derivatives

@pytest.mark.parametrize("module", [F, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_step_function_is_one_above_zero(module, dtype):
    x = np.array(SPECIAL, dtype)
    got = module.step_function(x)
    assert got.dtype == np.dtype(int) and got.shape == x.shape
    want = [1 if (v == v and v > 0) else 0 for v in x.tolist()]   # NaN: 0
    assert got.tolist() == want
    assert int(module.step_function(2.0)) == 1 and int(module.step_function(-2)) == 0


@pytest.mark.parametrize("module", [F, R], ids=["compiled", "reference"])
def test_identity_function_returns_its_argument(module):
    x = np.arange(5.0)
    assert module.identity_function(x) is x
    assert module.identity_function(3) == 3


@pytest.mark.parametrize("module", [F, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_grad_is_one_from_zero_up(module, dtype):
    """The book's derivative: 1 where x >= 0 (so 1 at 0 and at -0.0), 0 below and for NaN."""
    x = np.array(SPECIAL, dtype)
    got = np.asarray(module.relu_grad(x))
    assert got.dtype == dtype
    assert got.tolist() == [1.0 if v >= 0 else 0.0 for v in x.tolist()]


@pytest.mark.parametrize("module", [F, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_grad_is_the_derivative_of_sigmoid(module, dtype):
    """(1 - s) * s with s = sigmoid(x): 1/4 at 0, 0 (not NaN, no warning) far out, and the
    central difference of the float64 sigmoid elsewhere (TESTING.md step and bound)."""
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        far = np.asarray(module.sigmoid_grad(np.array([-1e30, -800.0, 800.0, 1e30], dtype)))
    assert far.dtype == dtype and np.all(far == 0)
    assert float(module.sigmoid_grad(np.array(0.0, dtype))) == 0.25
    x = np.linspace(-12, 12, 97).astype(dtype)
    got = np.asarray(module.sigmoid_grad(x), np.float64)
    xd = x.astype(np.float64)
    h = 1e-5 * np.maximum(1, np.abs(xd))

    def s(v):
        return 1 / (1 + np.exp(-v))

    numeric = (s(xd + h) - s(xd - h)) / (2 * h)
    tol = 1e-8 + 1e-5 * np.abs(numeric) if dtype == np.float64 else 1e-6 + 1e-4 * np.abs(numeric)
    assert np.all(np.abs(got - numeric) <= tol)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_compiled_activation_helpers_match_reference(dtype, data):
    x = data.draw(_arrays(dtype))
    before = x.copy()
    np.testing.assert_array_equal(F.step_function(x), R.step_function(x))
    np.testing.assert_array_equal(F.relu_grad(x), R.relu_grad(x))
    got, want = np.asarray(F.sigmoid_grad(x)), np.asarray(R.sigmoid_grad(x))
    assert got.dtype == want.dtype == dtype
    # (1 - s) * s moves by |1 - 2s| * ds when the sigmoid s moves by ds (the compiled and
    # the numpy sigmoid agree to a few u, TESTING.md), plus the product's own rounding
    s = np.asarray(R.sigmoid(x), np.float64)
    ds = np.abs(np.asarray(F.sigmoid(x), np.float64) - s)
    bound = np.abs(1 - 2 * s) * ds + ds ** 2 + 4 * U[dtype] * np.abs(want)
    err = np.abs(got.astype(np.float64) - want)
    assert np.all((err <= bound) | (np.isnan(got) & np.isnan(want)))
    assert np.all(np.isnan(got) == np.isnan(want))
    np.testing.assert_array_equal(x, before)   # inputs untouched


# ---------------------------------------------------------------- losses

@pytest.mark.parametrize("module", [F, R], ids=["compiled", "reference"])
def test_sum_squared_error_on_integer_values_is_exact(module):
    rng = np.random.default_rng(4)
    y, t = rng.integers(-8, 9, (7, 5)), rng.integers(-8, 9, (7, 5))
    assert module.sum_squared_error(y, t) == 0.5 * int(((y - t) ** 2).sum())
    assert module.sum_squared_error(y[0], t[0]) == 0.5 * int(((y[0] - t[0]) ** 2).sum())


def _book_softmax_loss(X, labels):
    """-mean(log(softmax(X)[i, t_i] + 1e-7)) over rows, in float64 from the definition."""
    X = np.atleast_2d(np.asarray(X, np.float64))
    total = 0.0
    for row, label in zip(X, np.atleast_1d(labels)):
        e = [math.exp(v - max(row)) for v in row]
        total -= math.log(e[label] / sum(e) + 1e-7)
    return total / X.shape[0]


@pytest.mark.parametrize("module", [F, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(1, 1), (1, 10), (3, 2), (17, 10), (100, 3)])
def test_softmax_loss_is_the_books_composition(module, dtype, n, c):
    rng = np.random.default_rng(n * 100 + c)
    X = (rng.standard_normal((n, c)) * 4).astype(dtype)
    labels = rng.integers(0, c, n)
    want = _book_softmax_loss(X, labels)
    # loss-scalar rtol; abs: log(y + 1e-7) of a y near 1 rounded in the dtype moves by ~u
    rtol, atol = (1e-12 if dtype == np.float64 else 1e-5), 8 * U[dtype]
    for t in (labels, np.eye(c)[labels]):   # labels, and one-hot rows read by argmax
        assert module.softmax_loss(X, t) == pytest.approx(want, rel=rtol, abs=atol)
    # one sample as a 1-d row: a label, or a one-hot row
    assert module.softmax_loss(X[0], labels[0]) == pytest.approx(
        _book_softmax_loss(X[:1], labels[:1]), rel=rtol, abs=atol)
    assert module.softmax_loss(X[0], np.eye(c)[labels[0]]) == pytest.approx(
        _book_softmax_loss(X[:1], labels[:1]), rel=rtol, abs=atol)


def test_softmax_loss_keeps_the_books_delta():
    """A confident wrong answer costs -log(1e-7), not infinity (the book's + 1e-7)."""
    X = np.array([[0.0, 1000.0]])
    assert F.softmax_loss(X, [0]) == pytest.approx(-math.log(1e-7), rel=1e-12)
    assert R.softmax_loss(X, [0]) == pytest.approx(-math.log(1e-7), rel=1e-12)


@pytest.mark.parametrize("module", [F, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("X,t,name", [
    (np.zeros((2, 3)), [0, 3], "t"), (np.zeros((2, 3)), [0], "t"),
    (np.zeros((2, 3, 1)), [0, 1], "x"), (np.zeros((2, 3)), ["a", "b"], "t"),
    ("abc", [0], "x")])
def test_softmax_loss_bad_input_names_the_argument(module, X, t, name):
    with pytest.raises((TypeError, ValueError), match=name):
        module.softmax_loss(X, t)


# ---------------------------------------------------------------- util

def _smoothed_by_definition(x):
    """Centred weighted average over 11 values, Kaiser(11, beta 2) weights summing to 1;
    the curve extended by x[5..1] before and x[-1..-5] after."""
    w = np.kaiser(11, 2.0)
    w = w / w.sum()
    ext = [x[i] for i in range(5, 0, -1)] + list(x) + [x[-1 - i] for i in range(5)]
    return np.array([sum(w[j] * ext[i + j] for j in range(11)) for i in range(len(x))])


@pytest.mark.parametrize("n", [11, 12, 40, 257])
@pytest.mark.parametrize("dtype", DTYPES)
def test_smooth_curve_is_a_centred_kaiser_average(n, dtype):
    rng = np.random.default_rng(n)
    x = rng.random(n).astype(dtype)
    before = x.copy()
    got = util.smooth_curve(x)
    assert got.shape == (n,) and got.dtype == dtype
    np.testing.assert_allclose(got, _smoothed_by_definition(x.astype(np.float64)),
                               rtol=64 * U[dtype], atol=0)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(util.smooth_curve(np.full(n, 3.25)), 3.25, rtol=1e-15)
    line = np.arange(n, dtype=np.float64)   # symmetric weights keep a line away from the ends
    np.testing.assert_allclose(util.smooth_curve(line)[5:-5], line[5:-5], rtol=1e-13)
    assert isinstance(util.smooth_curve(list(x.astype(np.float64))), np.ndarray)


@pytest.mark.parametrize("x", [np.arange(10.0), np.zeros((12, 2)), np.array(3.0), "curve"])
def test_smooth_curve_refuses_what_it_cannot_smooth(x):
    with pytest.raises((TypeError, ValueError), match="x"):
        util.smooth_curve(x)


def test_shuffle_dataset_follows_the_seeding_convention():
    rng = np.random.default_rng(0)
    x, t = rng.random((20, 3)), np.arange(20)
    x_before, t_before = x.copy(), t.copy()
    np.random.seed(11)
    expected = np.random.permutation(20)     # the book draws np.random.permutation(N)
    np.random.seed(11)
    xs, ts = util.shuffle_dataset(x, t)
    np.testing.assert_array_equal(ts, expected)
    np.testing.assert_array_equal(xs, x[expected])
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(t, t_before)
    state = np.random.get_state()[1].copy()
    xs5, ts5 = util.shuffle_dataset(x, t, seed=5)   # an int: its own stream, global untouched
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    np.testing.assert_array_equal(ts5, np.random.default_rng(5).permutation(20))
    np.testing.assert_array_equal(xs5, x[ts5])
    assert sorted(ts5.tolist()) == list(range(20))


def test_shuffle_dataset_takes_images_and_one_hot_rows():
    x = np.arange(6 * 1 * 2 * 2).reshape(6, 1, 2, 2)
    t = np.eye(6)
    xs, ts = util.shuffle_dataset(x, t, seed=np.random.default_rng(2))
    order = ts.argmax(axis=1)
    np.testing.assert_array_equal(xs, x[order])


@pytest.mark.parametrize("x,t,seed,error,name", [
    (np.zeros((3, 2)), np.zeros(4), None, ValueError, "rows"),
    (np.zeros(()), np.zeros(()), None, ValueError, "x"),
    (np.zeros((3, 2)), np.zeros(3), "s", TypeError, "seed"),
    (np.zeros((3, 2)), np.zeros(3), -1, ValueError, "seed"),
    ("x", np.zeros(3), None, TypeError, "x")])
def test_shuffle_dataset_bad_input(x, t, seed, error, name):
    state = np.random.get_state()[1].copy()
    with pytest.raises(error, match=name):
        util.shuffle_dataset(x, t, seed=seed)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
