"""Backprop of the reference layers and networks against numerical differentiation.

Bounds (TESTING.md):
- float64: step h = 1e-5 * max(1, max|x|); per element |a - n| <= 1e-8 + 1e-5 |n|.
- float32 (smoke): h = 1e-2; per element |a - n| <= 1e-3 + 5e-2 |n|; and the
  preferred cross-precision check, the float32 backprop against the float64
  numerical gradient at the same point: |a - n| <= 1e-5 max|n| + 1e-3 |n|.
- networks in float64: gradient_check max_rel_error <= 1e-6.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmlp import reference as R
from fastmlp.gradient import gradient_check, numerical_gradient
from fastmlp.reference import layers as L

SEEDS = st.integers(0, 2**32 - 1)
FLOATS = [np.float32, np.float64]
FAST = settings(max_examples=15, deadline=None)


def step(x, dtype):
    return 1e-5 * max(1.0, float(np.abs(x).max())) if dtype == np.float64 else 1e-2


def assert_grad_close(analytic, numeric, dtype, what=""):
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    assert a.shape == n.shape, what
    if dtype == np.float64:
        tol = 1e-8 + 1e-5 * np.abs(n)
    else:
        tol = 1e-3 + 5e-2 * np.abs(n)
    bad = np.abs(a - n) > tol
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} elements off; worst |a-n| = {np.abs(a - n).max():.3e}")


def assert_cross_precision(analytic32, numeric64, what=""):
    a = np.asarray(analytic32, dtype=np.float64)
    scale = np.abs(numeric64).max()
    bad = np.abs(a - numeric64) > 1e-5 * scale + 1e-3 * np.abs(numeric64)
    assert not bad.any(), f"{what}: worst |a-n| = {np.abs(a - numeric64).max():.3e}"


def nontrivial(g):
    """Mostly-zero gradients prove nothing: require more than half non-zero."""
    g = np.asarray(g)
    assert np.count_nonzero(np.abs(g) > 1e-6) > g.size / 2


def away_from_zero(rng, shape, dtype, low=0.1):
    """Values with |v| in [low, 2]: a kink at 0 is never within a step."""
    return (rng.choice([-1.0, 1.0], shape) * rng.uniform(low, 2.0, shape)).astype(dtype)


# --------------------------------------------------------------------------
# numerical_gradient itself
# --------------------------------------------------------------------------

class TestNumericalGradient:
    @pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 1, 3)])
    @pytest.mark.parametrize("dtype", FLOATS)
    def test_known_gradients(self, shape, dtype):
        x = np.random.default_rng(0).uniform(-2, 2, shape).astype(dtype)
        h = step(x, dtype)
        g = numerical_gradient(lambda z: np.sum(np.sin(z) + z**3), x, h)
        assert g.shape == x.shape and g.dtype == dtype
        expected = np.cos(x.astype(np.float64)) + 3 * x.astype(np.float64) ** 2
        tol = 1e-8 if dtype == np.float64 else 5e-3
        np.testing.assert_allclose(g, expected, rtol=tol, atol=tol)

    def test_book_example(self):
        # ch. 4: the gradient of x0**2 + x1**2 at (3, 4) is (6, 8)
        g = numerical_gradient(lambda x: np.sum(x**2), np.array([3.0, 4.0]))
        np.testing.assert_allclose(g, [6.0, 8.0], rtol=1e-9)

    @pytest.mark.parametrize("dtype", FLOATS)
    def test_restores_x_bitwise(self, dtype):
        x = np.array([[0.1, -0.0, 1e-30], [3.3, -7.7, 1e3]], dtype=dtype)
        snapshot = x.tobytes()
        numerical_gradient(lambda z: float(np.sum(z * z)), x, 1e-3)
        assert x.tobytes() == snapshot

    def test_restores_x_when_f_raises(self):
        x = np.array([1.0, 2.0, 3.0])
        snapshot = x.tobytes()
        calls = []

        def f(z):
            calls.append(z.copy())
            if len(calls) == 4:
                raise KeyError("boom")
            return z.sum()

        with pytest.raises(KeyError):
            numerical_gradient(f, x)
        assert x.tobytes() == snapshot
        assert calls[3][1] != 2.0  # it really was perturbed when f raised

    def test_non_contiguous_view_and_big_endian(self):
        base = np.arange(12.0).reshape(3, 4)
        view = base[:, ::2]
        g = numerical_gradient(lambda z: np.sum(z**2), view, 1e-5)
        np.testing.assert_allclose(g, 2 * view, rtol=1e-9)
        np.testing.assert_array_equal(base, np.arange(12.0).reshape(3, 4))
        be = np.array([1.0, -2.0], dtype=">f8")
        np.testing.assert_allclose(numerical_gradient(lambda z: np.sum(z**2), be, 1e-5), [2.0, -4.0],
                                   rtol=1e-9)

    def test_bad_arguments(self):
        x = np.ones(3)
        with pytest.raises(TypeError, match="f"):
            numerical_gradient(None, x)
        with pytest.raises(TypeError, match="x"):
            numerical_gradient(np.sum, [1.0, 2.0])
        with pytest.raises(TypeError, match="x"):
            numerical_gradient(np.sum, np.ones(3, dtype=np.int64))
        ro = np.ones(3)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="x"):
            numerical_gradient(np.sum, ro)
        with pytest.raises(ValueError, match="h"):
            numerical_gradient(np.sum, x, h=0.0)
        with pytest.raises(ValueError, match="h"):
            numerical_gradient(np.sum, x, h=1e-30)  # 1 + 1e-30 == 1
        np.testing.assert_array_equal(x, np.ones(3))


# --------------------------------------------------------------------------
# every reference layer
# --------------------------------------------------------------------------

def check_elementwise_layer(make_layer, x, dout, dtype):
    """d/dx of sum(forward(x) * dout) equals backward(dout)."""
    layer = make_layer()
    numeric = numerical_gradient(lambda z: np.sum(layer.forward(z) * dout), x, step(x, dtype))
    layer.forward(x)
    analytic = layer.backward(dout)
    assert analytic.dtype == dtype
    assert_grad_close(analytic, numeric, dtype, type(layer).__name__)
    return analytic


@pytest.mark.parametrize("dtype", FLOATS)
@given(seed=SEEDS, n=st.integers(1, 4), k=st.integers(1, 5))
@FAST
def test_gradcheck_relu(dtype, seed, n, k):
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, (n, k), dtype)
    dout = rng.standard_normal((n, k)).astype(dtype)
    check_elementwise_layer(L.Relu, x, dout, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@given(seed=SEEDS, n=st.integers(1, 4), k=st.integers(1, 5))
@FAST
def test_gradcheck_sigmoid(dtype, seed, n, k):
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal((n, k))).astype(dtype)
    dout = rng.standard_normal((n, k)).astype(dtype)
    analytic = check_elementwise_layer(L.Sigmoid, x, dout, dtype)
    if dtype == np.float32:
        x64, d64 = x.astype(np.float64), dout.astype(np.float64)
        layer = L.Sigmoid()
        numeric64 = numerical_gradient(lambda z: np.sum(layer.forward(z) * d64), x64, step(x64, np.float64))
        assert_cross_precision(analytic, numeric64, "Sigmoid f32 vs f64")


@pytest.mark.parametrize("cls", [L.MulLayer, L.AddLayer])
@pytest.mark.parametrize("dtype", FLOATS)
@given(seed=SEEDS, n=st.integers(1, 4), k=st.integers(1, 4))
@FAST
def test_gradcheck_mul_add(cls, dtype, seed, n, k):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)).astype(dtype)
    y = rng.standard_normal((n, k)).astype(dtype)
    dout = rng.standard_normal((n, k)).astype(dtype)
    layer = cls()
    num_x = numerical_gradient(lambda z: np.sum(layer.forward(z, y) * dout), x, step(x, dtype))
    num_y = numerical_gradient(lambda z: np.sum(layer.forward(x, z) * dout), y, step(y, dtype))
    layer.forward(x, y)
    dx, dy = layer.backward(dout)
    assert_grad_close(dx, num_x, dtype, f"{cls.__name__} dx")
    assert_grad_close(dy, num_y, dtype, f"{cls.__name__} dy")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("x_shape", [(3, 4), (2, 2, 3), (2, 2, 1, 3)])
@given(seed=SEEDS, n_out=st.integers(1, 4))
@FAST
def test_gradcheck_affine(dtype, x_shape, seed, n_out):
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(x_shape[1:]))
    x = rng.standard_normal(x_shape).astype(dtype)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    dout = rng.standard_normal((x_shape[0], n_out)).astype(dtype)
    layer = L.Affine(W, b)

    def f(_):
        return np.sum(layer.forward(x) * dout)

    # W and b are held by reference, so perturbing them in place is seen by the layer
    num_W = numerical_gradient(f, W, step(W, dtype))
    num_b = numerical_gradient(f, b, step(b, dtype))
    num_x = numerical_gradient(lambda z: np.sum(layer.forward(z) * dout), x, step(x, dtype))
    layer.forward(x)
    dx = layer.backward(dout)
    assert dx.shape == x_shape
    assert_grad_close(dx, num_x, dtype, "Affine dx")
    assert_grad_close(layer.dW, num_W, dtype, "Affine dW")
    assert_grad_close(layer.db, num_b, dtype, "Affine db")
    nontrivial(layer.dW)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("onehot", [False, True])
@given(seed=SEEDS, n=st.integers(1, 5), c=st.integers(2, 6), dout=st.sampled_from([1, 0.5, 3.0]))
@FAST
def test_gradcheck_softmax_with_loss(dtype, onehot, seed, n, c, dout):
    rng = np.random.default_rng(seed)
    x = (2 * rng.standard_normal((n, c))).astype(dtype)
    labels = rng.integers(0, c, n)
    t = np.eye(c, dtype=dtype)[labels] if onehot else labels
    layer = L.SoftmaxWithLoss()
    numeric = numerical_gradient(lambda z: dout * layer.forward(z, t), x, step(x, dtype))
    layer.forward(x, t)
    analytic = layer.backward(dout)
    assert analytic.dtype == dtype
    assert_grad_close(analytic, numeric, dtype, "SoftmaxWithLoss")
    nontrivial(analytic)
    if dtype == np.float32:
        x64 = x.astype(np.float64)
        ref = L.SoftmaxWithLoss()
        numeric64 = numerical_gradient(lambda z: dout * ref.forward(z, labels), x64, step(x64, np.float64))
        assert_cross_precision(analytic, numeric64, "SoftmaxWithLoss f32 vs f64")


@pytest.mark.parametrize("dtype", FLOATS)
@given(seed=SEEDS, n=st.integers(1, 5), k=st.integers(1, 4))
@FAST
def test_gradcheck_mse_loss(dtype, seed, n, k):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, k)).astype(dtype)
    t = rng.standard_normal((n, k)).astype(dtype)
    layer = R.MSELoss()
    numeric = numerical_gradient(lambda z: layer.forward(z, t), y, step(y, dtype))
    layer.forward(y, t)
    assert_grad_close(layer.backward(), numeric, dtype, "MSELoss")


def test_layer_check_can_fail():
    """The per-element bound is tight enough to catch a gradient off by 1e-4 relative."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    layer = L.Sigmoid()
    numeric = numerical_gradient(lambda z: np.sum(layer.forward(z)), x, step(x, np.float64))
    with pytest.raises(AssertionError):
        assert_grad_close(numeric * (1 + 1e-4), numeric, np.float64, "perturbed")


# --------------------------------------------------------------------------
# networks: gradient_check
# --------------------------------------------------------------------------

def batch(n, d, c, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


NETWORKS = {
    "TwoLayerNet": lambda dtype: R.TwoLayerNet(5, 6, 3, dtype=dtype, seed=0),
    "TwoLayerNet std=1": lambda dtype: R.TwoLayerNet(5, 6, 3, weight_init_std=1.0, dtype=dtype, seed=1),
    "MultiLayerNet relu wd": lambda dtype: R.MultiLayerNet(
        5, [6, 4], 3, activation="relu", weight_init_std="he", weight_decay_lambda=0.1,
        dtype=dtype, seed=2),
    "MultiLayerNet sigmoid wd": lambda dtype: R.MultiLayerNet(
        5, [6, 4], 3, activation="sigmoid", weight_init_std="xavier", weight_decay_lambda=0.1,
        dtype=dtype, seed=3),
}


@pytest.mark.parametrize("onehot", [False, True])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_gradient_check_float64(name, onehot):
    net = NETWORKS[name](np.float64)
    x, t = batch(6, 5, 3, seed=10)
    if onehot:
        t = np.eye(3)[t]
    before = {k: v.copy() for k, v in net.params.items()}
    report = gradient_check(net, x, t)
    assert list(report) == list(net.params)
    for key, entry in report.items():
        assert set(entry) == {"mean_abs_diff", "max_rel_error"}
        assert entry["max_rel_error"] <= 1e-6, (key, entry)
        assert entry["mean_abs_diff"] <= 1e-8, (key, entry)
    # numerical differentiation restored every parameter bit for bit
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, before[k], strict=True)
    nontrivial(net.gradient(x, t)["W2"])


@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_gradient_per_element_many_batches(name):
    """Seed-robust form of the float64 check: the per-element bound on 20 random batches.

    (max_rel_error above is exact for a fixed batch; over random batches it is
    dominated by entries whose true gradient is ~1e-8, where the numerical
    noise floor of ~1e-11 alone gives a relative error of 1e-3.)
    """
    net = NETWORKS[name](np.float64)
    for seed in range(20):
        x, t = batch(6, 5, 3, seed=1000 + seed)
        analytic, numeric = net.gradient(x, t), net.numerical_gradient(x, t)
        for key in net.params:
            assert_grad_close(analytic[key], numeric[key], np.float64, f"{name} {key} batch {seed}")


@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_gradient_float32_smoke_and_cross_precision(name):
    net32, net64 = NETWORKS[name](np.float32), NETWORKS[name](np.float64)
    x, t = batch(6, 5, 3, seed=11)
    grads32 = net32.gradient(x, t)
    # float32 smoke check: the default step (1e-2) for the smooth sigmoid net; ReLU
    # nets use 1e-3, as a 1e-2 step moves pre-activations across the kink at 0.
    h = None if "sigmoid" in name else 1e-3
    numeric32 = net32.numerical_gradient(x, t, h=h)
    numeric64 = net64.numerical_gradient(x, t)
    for key in net32.params:
        assert grads32[key].dtype == np.float32 and numeric32[key].dtype == np.float32
        assert_grad_close(grads32[key], numeric32[key], np.float32, f"{name} {key} f32")
        assert_cross_precision(grads32[key], numeric64[key], f"{name} {key} f32 vs f64")


def test_gradient_check_report_values():
    net = NETWORKS["MultiLayerNet sigmoid wd"](np.float64)
    x, t = batch(4, 5, 3, seed=12)
    report = gradient_check(net, x, t, h=1e-5)
    a = net.gradient(x, t)
    n = net.numerical_gradient(x, t, h=1e-5)
    for key in net.params:
        diff = np.abs(a[key] - n[key])
        assert report[key]["mean_abs_diff"] == pytest.approx(diff.mean(), rel=1e-12, abs=1e-300)
        rel = diff / (np.abs(a[key]) + np.abs(n[key]))
        assert report[key]["max_rel_error"] == pytest.approx(rel.max(), rel=1e-12, abs=1e-300)


def test_gradient_check_detects_a_wrong_gradient():
    class BrokenNet(R.MultiLayerNet):
        def gradient(self, x, t):
            grads = super().gradient(x, t)
            grads["W2"] = grads["W2"] * 1.001
            return grads

    net = BrokenNet(5, [4], 3, weight_decay_lambda=0.1, seed=4)
    x, t = batch(5, 5, 3, seed=13)
    report = gradient_check(net, x, t)
    assert report["W2"]["max_rel_error"] > 1e-4
    assert report["W1"]["max_rel_error"] <= 1e-6


def test_weight_decay_gradient_is_checked():
    """Dropping the lambda*W term must break the check (the L2 term is really tested)."""
    class NoDecayGradient(R.MultiLayerNet):
        def gradient(self, x, t):
            grads = super().gradient(x, t)
            return {k: (g - self.weight_decay_lambda * self.params[k] if k.startswith("W") else g)
                    for k, g in grads.items()}

    net = NoDecayGradient(5, [4], 3, weight_decay_lambda=0.1, seed=5)
    x, t = batch(5, 5, 3, seed=14)
    report = gradient_check(net, x, t)
    assert report["W1"]["max_rel_error"] > 1e-3
