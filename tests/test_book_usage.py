"""fastmlp used the way the book's chapter 5 and 6 scripts use the book's modules (issue 13).

"Deep Learning from Scratch" runs ``ch05/*.py`` and ``ch06/*.py`` against its
``common/*``, ``ch05/two_layer_net.py`` and ``ch05/layer_naive.py``. The issue's
target is that those scripts run unchanged when these modules are plain re-exports
of fastmlp (``bench/book_scripts.py`` runs them). These tests make the same calls,
with the same keyword names, attributes and semantics, on small problems, and
check the values against small numpy computations of the book's formulas written
here (the expected values are computed independently of fastmlp).

Where a name's home in fastmlp is not fixed by the issue (``smooth_curve``,
``shuffle_dataset``), :func:`book_name` looks in the modules a re-export would use.
"""
import importlib
import math
from collections import OrderedDict

import numpy as np
import pytest

import fastmlp
from fastmlp import functions, layers, optimizers

EPS_BN = 10e-7   # the book's BatchNormalization epsilon (1e-6)
EPS_OPT = 1e-7   # the book's AdaGrad/RMSprop/Adam epsilon


def book_name(name, *modules):
    """The object ``name`` from the first of ``modules`` (fastmlp modules) that has it."""
    for mod_name in modules:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    pytest.fail(f"fastmlp has no {name} (looked in {', '.join(modules)})")


UTIL_MODULES = ("fastmlp.util", "fastmlp.utils", "fastmlp.functions", "fastmlp.datasets", "fastmlp")


def extend_class():
    cls = getattr(fastmlp, "MultiLayerNetExtend", None)
    if cls is None:
        pytest.fail("fastmlp has no MultiLayerNetExtend")
    return cls


# -- numpy versions of the book's formulas -------------------------------------------------

def np_softmax(a):
    a = a - a.max(axis=-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=-1, keepdims=True)


def np_loss(scores, t, book=False):
    """Mean cross-entropy of softmax(scores): exact, or with the book's ``log(p + 1e-7)``."""
    labels = t.argmax(axis=1) if t.ndim == 2 else t
    a = scores - scores.max(axis=1, keepdims=True)
    logp = a - np.log(np.exp(a).sum(axis=1, keepdims=True))
    if book:
        return -np.log(np.exp(logp[np.arange(len(labels)), labels]) + 1e-7).mean()
    return -logp[np.arange(len(labels)), labels].mean()


def assert_loss(got, scores, t, decay=0.0, rel=1e-10):
    """``got`` is the loss of ``scores`` to rounding: exact, as fastmlp's SoftmaxWithLoss
    computes it, or with the 1e-7 the book adds inside the log (SPEC: they differ by about
    1e-7 / p for a true-class probability p)."""
    exact, book = np_loss(scores, t) + decay, np_loss(scores, t, book=True) + decay
    assert got == pytest.approx(exact, rel=rel) or got == pytest.approx(book, rel=rel), \
        (got, exact, book)


ACT = {"relu": lambda a: np.maximum(a, 0), "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
       "tanh": np.tanh, "identity": lambda a: a}


def np_forward(params, x, n_hidden, activation="relu", use_bn=False, masks=None,
               ratio=None, train=True, running=None):
    """Scores of a MultiLayerNet(Extend): per hidden layer Affine, [BatchNorm], activation,
    [Dropout: times its mask when training, times (1 - ratio) otherwise]."""
    h = x.reshape(x.shape[0], -1).astype(np.float64)
    for i in range(1, n_hidden + 1):
        a = h @ params[f"W{i}"] + params[f"b{i}"]
        if use_bn:
            if train:
                mu = a.mean(axis=0)
                xc = a - mu
                xn = xc / np.sqrt((xc ** 2).mean(axis=0) + EPS_BN)
            else:
                mean, var = running[i]
                xn = (a - mean) / np.sqrt(var + EPS_BN)
            a = params[f"gamma{i}"] * xn + params[f"beta{i}"]
        h = ACT[activation](a)
        if ratio is not None:
            h = h * masks[i] if train else h * (1.0 - ratio)
    L = n_hidden + 1
    return h @ params[f"W{L}"] + params[f"b{L}"]


def np_central_gradient(f, params, h=1e-6):
    """Central differences of f(params) over every element of every array in ``params``
    (float64 copies; the arrays of ``params`` are not touched)."""
    p = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    grads = {}
    for k, arr in p.items():
        g = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + h
            fp = f(p)
            arr[idx] = old - h
            fm = f(p)
            arr[idx] = old
            g[idx] = (fp - fm) / (2 * h)
        grads[k] = g
    return grads


def assert_grad_close(got, want, atol=1e-7, rtol=1e-5):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k], dtype=np.float64), want[k], rtol=rtol,
                                   atol=atol, err_msg=k)


def mnist_like(rng, n, d=20, c=10, one_hot=True):
    """Book-style data: float32 pixels in [0, 1] and float64 one-hot rows (load_mnist's)."""
    x = rng.random((n, d)).astype(np.float32)
    labels = rng.integers(0, c, n)
    return x, (np.eye(c)[labels] if one_hot else labels)


# -- ch05: layer_naive (buy_apple.py, buy_apple_orange.py) ----------------------------------

def test_buy_apple_with_python_numbers():
    apple, apple_num, tax = 100, 2, 1.1
    mul_apple_layer, mul_tax_layer = layers.MulLayer(), layers.MulLayer()
    price = mul_tax_layer.forward(mul_apple_layer.forward(apple, apple_num), tax)
    dapple_price, dtax = mul_tax_layer.backward(1)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)
    assert price == (apple * apple_num) * tax and int(price) == 220
    assert dapple == 1 * tax * apple_num and str(dapple) == "2.2"
    assert dapple_num == 1 * tax * apple and int(dapple_num) == 110
    assert dtax == apple * apple_num == 200


def test_buy_apple_orange_with_python_numbers():
    apple, apple_num, orange, orange_num, tax = 100, 2, 150, 3, 1.1
    mul_apple, mul_orange, mul_tax = layers.MulLayer(), layers.MulLayer(), layers.MulLayer()
    add = layers.AddLayer()
    all_price = add.forward(mul_apple.forward(apple, apple_num),
                            mul_orange.forward(orange, orange_num))
    price = mul_tax.forward(all_price, tax)
    dall_price, dtax = mul_tax.backward(1)
    dapple_price, dorange_price = add.backward(dall_price)
    dorange, dorange_num = mul_orange.backward(dorange_price)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    assert price == 650 * tax and int(price) == 715
    assert (str(dapple), int(dapple_num)) == (str(tax * apple_num), 110)
    assert (str(dorange), int(dorange_num)) == (str(tax * orange_num), 165)
    assert dtax == 650
    assert mul_apple.x == apple and mul_apple.y == apple_num   # the book's attributes


# -- ch05: two_layer_net (gradient_check.py, train_neuralnet.py) ----------------------------

def test_two_layer_net_book_construction():
    np.random.seed(0)
    net = fastmlp.TwoLayerNet(input_size=784, hidden_size=50, output_size=10)
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    assert net.params["W1"].shape == (784, 50) and net.params["W2"].shape == (50, 10)
    assert not net.params["b1"].any() and not net.params["b2"].any()
    assert abs(net.params["W1"].std() - 0.01) < 0.0005   # weight_init_std=0.01
    assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]
    assert isinstance(net.lastLayer, layers.SoftmaxWithLoss)
    assert net.layers["Affine1"].W is net.params["W1"]


def test_gradient_check_script_usage(rng):
    """gradient_check.py: numerical_gradient and gradient on 3 one-hot samples, per key."""
    net = fastmlp.TwoLayerNet(input_size=12, hidden_size=6, output_size=10, weight_init_std=0.3)
    x, t = mnist_like(rng, 3, d=12)
    grad_numerical = net.numerical_gradient(x, t)
    grad_backprop = net.gradient(x, t)
    p = net.params

    def loss(q):
        return np_loss(np_forward(q, x, 1), t)

    want = np_central_gradient(loss, p)
    assert_grad_close(grad_backprop, want)
    assert_grad_close(grad_numerical, want, atol=1e-6, rtol=1e-4)
    for key in grad_numerical.keys():
        assert np.average(np.abs(grad_backprop[key] - grad_numerical[key])) < 1e-6
    assert_loss(net.loss(x, t), np_forward(p, x, 1), t, rel=1e-12)


def test_train_neuralnet_loop_updates_params_in_place(rng):
    """train_neuralnet.py: params[key] -= lr * grad[key], then loss and accuracy."""
    net = fastmlp.TwoLayerNet(input_size=20, hidden_size=8, output_size=10, weight_init_std=0.1)
    x, t = mnist_like(rng, 60)
    losses = []
    for i in range(30):
        batch_mask = rng.choice(60, 10)
        grad = net.gradient(x[batch_mask], t[batch_mask])
        before = {k: v.copy() for k, v in net.params.items()}
        g = {k: np.array(v) for k, v in grad.items()}
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= 0.5 * grad[key]
        for key in before:
            np.testing.assert_allclose(net.params[key], before[key] - 0.5 * g[key], rtol=1e-15)
        losses.append(net.loss(x, t))
        assert_loss(losses[-1], np_forward(net.params, x, 1), t, rel=1e-12)
    assert losses[-1] < losses[0]
    want = np.mean(np_forward(net.params, x, 1).argmax(axis=1) == t.argmax(axis=1))
    assert net.accuracy(x, t) == want                       # one-hot t, as the script passes
    assert net.accuracy(x, t.argmax(axis=1)) == want        # labels


# -- common/functions.py -------------------------------------------------------------------

def test_book_functions(rng):
    x = rng.standard_normal((4, 5))
    x[0, :2] = 0.0
    assert functions.identity_function(x) is x or np.array_equal(functions.identity_function(x), x)
    step = functions.step_function(x)
    assert np.array_equal(step, (x > 0).astype(int)) and step.dtype.kind == "i"
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(functions.sigmoid_grad(x), (1 - s) * s, rtol=1e-14)
    np.testing.assert_array_equal(functions.relu_grad(x), (x >= 0).astype(float))  # 1 at x == 0
    y, t = np_softmax(x), np.eye(5)[[0, 3, 1, 4]]
    assert functions.sum_squared_error(y, t) == pytest.approx(0.5 * np.sum((y - t) ** 2), rel=1e-14)
    book_ce = -np.sum(np.log(y[np.arange(4), [0, 3, 1, 4]] + 1e-7)) / 4
    assert functions.softmax_loss(x, t) == pytest.approx(book_ce, rel=1e-12)
    assert functions.softmax_loss(x, np.array([0, 3, 1, 4])) == pytest.approx(book_ce, rel=1e-12)


# -- common/util.py ------------------------------------------------------------------------

def np_smooth(x):
    """The book's loss smoothing: an 11-tap Kaiser(beta=2) window, normalised, over x padded
    with x[10], ..., x[1] in front and x[-1], ..., x[-10] behind; as long as x."""
    x = np.asarray(x, dtype=np.float64)
    w = np.kaiser(11, 2)
    w = w / w.sum()
    padded = np.concatenate([x[1:11][::-1], x, x[-10:][::-1]])
    out = np.array([np.dot(w[::-1], padded[i:i + 11]) for i in range(len(padded) - 10)])
    return out[5:-5]


def test_smooth_curve_of_a_loss_list(rng):
    smooth_curve = book_name("smooth_curve", *UTIL_MODULES)
    losses = [float(v) for v in 2.3 * np.exp(-np.arange(200) / 50) + 0.1 * rng.random(200)]
    got = smooth_curve(losses)                         # a list of Python floats, as the scripts pass
    assert len(got) == len(losses)
    np.testing.assert_allclose(got, np_smooth(losses), rtol=1e-12)
    const = smooth_curve([0.7] * 30)
    np.testing.assert_allclose(const, 0.7, rtol=1e-14)


@pytest.mark.parametrize("shape", [(10, 3), (10, 1, 2, 2)])
def test_shuffle_dataset_uses_numpy_global_state(shape):
    shuffle_dataset = book_name("shuffle_dataset", *UTIL_MODULES)
    x = np.arange(np.prod(shape), dtype=float).reshape(shape)
    t = np.arange(10)
    x0, t0 = x.copy(), t.copy()
    np.random.seed(7)
    xs, ts = shuffle_dataset(x, t)
    perm = np.random.RandomState(7).permutation(10)   # the book: np.random.permutation(N)
    np.testing.assert_array_equal(ts, perm)
    np.testing.assert_array_equal(xs, x[perm])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)


# -- common/optimizer.py (optimizer_compare_naive.py, optimizer_compare_mnist.py) ----------

def book_step(name, state, p, g, hp):
    """One step of the book's optimizer ``name`` on numbers or arrays; returns the new p."""
    lr = hp["lr"]
    if name == "SGD":
        return p - lr * g
    if name == "Momentum":
        state["v"] = hp["momentum"] * state.get("v", 0 * p) - lr * g
        return p + state["v"]
    if name == "Nesterov":   # corrected 2021-01-18: the velocity is updated after the parameter
        m, v = hp["momentum"], state.get("v", 0 * p)
        p = p + m * m * v - (1 + m) * lr * g
        state["v"] = m * v - lr * g
        return p
    if name == "AdaGrad":
        state["h"] = state.get("h", 0 * p) + g * g
        return p - lr * g / (np.sqrt(state["h"]) + EPS_OPT)
    if name == "RMSprop":
        d = hp["decay_rate"]
        state["h"] = state.get("h", 0 * p) * d + (1 - d) * g * g
        return p - lr * g / (np.sqrt(state["h"]) + EPS_OPT)
    if name == "Adam":
        it = state["iter"] = state.get("iter", 0) + 1
        b1, b2 = hp["beta1"], hp["beta2"]
        lr_t = lr * np.sqrt(1.0 - b2 ** it) / (1.0 - b1 ** it)
        m = state.get("m", 0 * p)
        v = state.get("v", 0 * p)
        state["m"] = m + (1 - b1) * (g - m)
        state["v"] = v + (1 - b2) * (g ** 2 - v)
        return p - lr_t * state["m"] / (np.sqrt(state["v"]) + EPS_OPT)
    raise AssertionError(name)


DEFAULTS = {"SGD": {"lr": 0.01}, "Momentum": {"lr": 0.01, "momentum": 0.9},
            "Nesterov": {"lr": 0.01, "momentum": 0.9}, "AdaGrad": {"lr": 0.01},
            "RMSprop": {"lr": 0.01, "decay_rate": 0.99},
            "Adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999}}
NAIVE = [("SGD", 0.95), ("Momentum", 0.1), ("AdaGrad", 1.5), ("Adam", 0.3),
         ("Nesterov", 0.1), ("RMSprop", 0.1)]


@pytest.mark.parametrize("name,lr", NAIVE)
def test_optimizer_compare_naive_python_float_params(name, lr):
    """params['x'], params['y'] = -7.0, 2.0 (Python floats), grads from df, 30 updates."""
    optimizer = getattr(optimizers, name)(lr=lr)
    params, grads = {}, {}
    params["x"], params["y"] = -7.0, 2.0
    hp = dict(DEFAULTS[name], lr=lr)
    want, states = [-7.0, 2.0], ({}, {})
    history = []
    for _ in range(30):
        history.append((params["x"], params["y"]))
        grads["x"], grads["y"] = params["x"] / 10.0, 2.0 * params["y"]
        gx, gy = want[0] / 10.0, 2.0 * want[1]
        optimizer.update(params, grads)
        want = [book_step(name, states[0], want[0], gx, hp),
                book_step(name, states[1], want[1], gy, hp)]
        assert float(params["x"]) == pytest.approx(float(want[0]), rel=1e-12, abs=1e-12)
        assert float(params["y"]) == pytest.approx(float(want[1]), rel=1e-12, abs=1e-12)
    assert len(history) == 30 and history[0] == (-7.0, 2.0)


@pytest.mark.parametrize("name", ["SGD", "Momentum", "Adam"])
def test_optimizers_accept_numpy_scalars_and_0d_arrays(name):
    """The book's ``params[key] -= ...`` works on any number: 0-d arrays and numpy scalars.
    (Whether a 0-d array is updated in place, as the book's ``-=`` does, or its entry rebound,
    as the issue words it, is left open.)"""
    optimizer = getattr(optimizers, name)(lr=0.1)
    params = {"x": np.array(-7.0), "y": np.float64(2.0)}
    want, states = [-7.0, 2.0], ({}, {})
    for _ in range(5):
        grads = {"x": params["x"] / 10.0, "y": 2.0 * params["y"]}
        gx, gy = want[0] / 10.0, 2.0 * want[1]
        optimizer.update(params, grads)
        want = [book_step(name, states[0], want[0], gx, dict(DEFAULTS[name], lr=0.1)),
                book_step(name, states[1], want[1], gy, dict(DEFAULTS[name], lr=0.1))]
        assert float(params["x"]) == pytest.approx(float(want[0]), rel=1e-12, abs=1e-12)
        assert float(params["y"]) == pytest.approx(float(want[1]), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_optimizer_defaults_and_update_on_network_params(name, rng):
    """optimizer_compare_mnist.py: SGD(), Momentum(), AdaGrad(), Adam() updating a network."""
    optimizer = getattr(optimizers, name)()
    for key, value in DEFAULTS[name].items():
        assert getattr(optimizer, key) == value
    net = fastmlp.MultiLayerNet(input_size=20, hidden_size_list=[7, 5], output_size=10, seed=1)
    x, t = mnist_like(rng, 16, one_hot=False)
    want, states = {k: v.copy() for k, v in net.params.items()}, {k: {} for k in net.params}
    for _ in range(3):
        grads = net.gradient(x, t)
        g = {k: np.array(v) for k, v in grads.items()}
        optimizer.update(net.params, grads)
        for k in want:
            want[k] = book_step(name, states[k], want[k], g[k], DEFAULTS[name])
            np.testing.assert_allclose(net.params[k], want[k], rtol=1e-12, atol=1e-15, err_msg=k)


def test_nesterov_is_the_corrected_book_formula():
    """One step from w = 1 on f = w**2 / 2 (lr 0.1, momentum 0.9): 1 - 1.9 * 0.1 = 0.81."""
    opt = optimizers.Nesterov(lr=0.1, momentum=0.9)
    w = {"w": np.array([1.0])}
    opt.update(w, {"w": w["w"].copy()})
    assert w["w"][0] == pytest.approx(0.81, rel=1e-15)
    state, p = {}, 1.0
    p = book_step("Nesterov", state, p, p, {"lr": 0.1, "momentum": 0.9})
    for _ in range(5):
        opt.update(w, {"w": w["w"].copy()})
        p = book_step("Nesterov", state, p, p, {"lr": 0.1, "momentum": 0.9})
        assert w["w"][0] == pytest.approx(p, rel=1e-14)


# -- common/multi_layer_net.py (weight_init_compare.py, overfit_weight_decay.py) -----------

@pytest.mark.parametrize("weight_init_std,scale", [
    (0.01, lambda n: 0.01), ("sigmoid", lambda n: np.sqrt(1.0 / n)),
    ("xavier", lambda n: np.sqrt(1.0 / n)), ("relu", lambda n: np.sqrt(2.0 / n)),
    ("he", lambda n: np.sqrt(2.0 / n))])
def test_weight_init_compare_scales(weight_init_std, scale):
    net = fastmlp.MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100],
                                output_size=10, weight_init_std=weight_init_std)
    sizes = [784, 100, 100, 100, 100, 10]
    assert list(net.params) == [f"{p}{i}" for i in range(1, 6) for p in "Wb"]
    for i in range(1, 6):
        W = net.params[f"W{i}"]
        assert W.shape == (sizes[i - 1], sizes[i]) and not net.params[f"b{i}"].any()
        rel = 4 / math.sqrt(W.size)    # about four standard errors of a sample std
        assert abs(W.std() / scale(sizes[i - 1]) - 1) < rel, i
    assert list(net.layers)[:2] == ["Affine1", "Activation_function1"]


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
def test_multi_layer_net_weight_decay_loss_and_gradient(activation, rng):
    lam = 0.1
    net = fastmlp.MultiLayerNet(input_size=10, hidden_size_list=[6, 5], output_size=4,
                                activation=activation, weight_decay_lambda=lam, seed=3)
    x, t = mnist_like(rng, 8, d=10, c=4, one_hot=False)

    def decay(q):
        return sum(0.5 * lam * np.sum(q[f"W{i}"] ** 2) for i in (1, 2, 3))

    def loss(q):
        return np_loss(np_forward(q, x, 2, activation), t) + decay(q)

    assert_loss(net.loss(x, t), np_forward(net.params, x, 2, activation), t, decay(net.params),
                rel=1e-12)
    assert_grad_close(net.gradient(x, t), np_central_gradient(loss, net.params))
    np.testing.assert_allclose(net.predict(x), np_forward(net.params, x, 2, activation),
                               rtol=1e-12, atol=1e-14)


def test_tanh_layer():
    x = np.linspace(-4, 4, 12).reshape(3, 4)
    layer = layers.Tanh()
    out = layer.forward(x)
    np.testing.assert_allclose(out, np.tanh(x), rtol=1e-14, atol=1e-16)
    dout = np.cos(x)
    # dout * (1 - out**2) on the layer's own out, within the rounding of 1 - out**2, which
    # cancels near |x| = 4 (computed as (1 - out) * (1 + out) or 1 - out * out)
    got, want = layer.backward(dout), dout * (1 - out ** 2)
    u = np.finfo(np.float64).eps / 2
    assert np.all(np.abs(got - want) <= 4 * u * np.abs(dout) * (out ** 2 + np.abs(1 - out ** 2)))
    np.testing.assert_array_equal(layer.out, out)


def test_edited_layers_are_what_the_network_runs(rng):
    """A reader replaces or inserts a layer in net.layers: predict/loss/gradient run it."""
    net = fastmlp.MultiLayerNet(input_size=10, hidden_size_list=[6], output_size=4, seed=2)
    x, t = mnist_like(rng, 5, d=10, c=4, one_hot=False)
    net.layers["Activation_function1"] = layers.Sigmoid()
    np.testing.assert_allclose(net.predict(x), np_forward(net.params, x, 1, "sigmoid"),
                               rtol=1e-12, atol=1e-14)
    assert_grad_close(net.gradient(x, t),
                      np_central_gradient(lambda q: np_loss(np_forward(q, x, 1, "sigmoid"), t),
                                          net.params))
    edited = OrderedDict()
    for name, layer in net.layers.items():
        edited[name] = layer
        if name == "Activation_function1":
            edited["Extra"] = layers.Relu()     # sigmoid then relu: relu changes nothing
    net.layers = edited
    assert_loss(net.loss(x, t), np_forward(net.params, x, 1, "sigmoid"), t, rel=1e-12)


def test_seeded_networks_repeat_with_numpy_global_seed():
    """seed=None follows numpy's global state: np.random.seed makes the book's scripts repeat."""
    def build(cls, *args, **kw):
        np.random.seed(42)
        return cls(*args, **kw).params
    for cls, args in [(fastmlp.TwoLayerNet, (30, 8, 10)),
                      (fastmlp.MultiLayerNet, (30, [8, 8], 10))]:
        a, b = build(cls, *args), build(cls, *args)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
        np.random.seed(43)
        assert not np.array_equal(cls(*args).params["W1"], a["W1"])


def test_seeded_weights_are_the_books_draws():
    """With the same np.random.seed the network starts from the book's weights
    (scale * np.random.randn(n_in, n_out) per layer, in order), so the book's scripts
    and fastmlp can be compared run for run."""
    np.random.seed(5)
    net = fastmlp.MultiLayerNet(input_size=30, hidden_size_list=[8, 6], output_size=10)
    rs = np.random.RandomState(5)
    for i, (n_in, n_out) in enumerate([(30, 8), (8, 6), (6, 10)], start=1):
        np.testing.assert_array_equal(net.params[f"W{i}"],
                                      np.sqrt(2.0 / n_in) * rs.randn(n_in, n_out))
    np.random.seed(5)
    two = fastmlp.TwoLayerNet(input_size=30, hidden_size=8, output_size=10)
    rs = np.random.RandomState(5)
    np.testing.assert_array_equal(two.params["W1"], 0.01 * rs.randn(30, 8))
    np.testing.assert_array_equal(two.params["W2"], 0.01 * rs.randn(8, 10))


# -- common/layers.py: Dropout and BatchNormalization --------------------------------------

def test_dropout_layer_book_semantics():
    x = np.random.default_rng(0).random((200, 50)) + 0.5
    layer = layers.Dropout(dropout_ratio=0.2)
    assert layer.dropout_ratio == 0.2 and layers.Dropout().dropout_ratio == 0.5
    out = layer.forward(x)                  # train_flg=True by default
    mask = np.asarray(layer.mask)
    assert mask.shape == x.shape
    np.testing.assert_array_equal(out, x * mask)   # kept units are not rescaled
    assert abs(mask.mean() - 0.8) < 0.02
    dout = np.ones_like(x) * 3.0
    np.testing.assert_array_equal(layer.backward(dout), dout * mask)
    np.testing.assert_allclose(layer.forward(x, train_flg=False), x * (1.0 - 0.2), rtol=1e-15)
    np.testing.assert_allclose(layer.forward(x, False), x * 0.8, rtol=1e-15)


def test_batch_normalization_layer_book_semantics(rng):
    D = 5
    gamma, beta = rng.random(D) + 0.5, rng.standard_normal(D)
    bn = layers.BatchNormalization(gamma, beta)
    assert bn.momentum == 0.9 and bn.running_mean is None and bn.running_var is None
    x = rng.standard_normal((8, D)) * 3 + 1
    out = bn.forward(x, train_flg=True)
    mu, var = x.mean(axis=0), x.var(axis=0)
    np.testing.assert_allclose(out, gamma * (x - mu) / np.sqrt(var + EPS_BN) + beta, rtol=1e-12)
    np.testing.assert_allclose(bn.running_mean, 0.1 * mu, rtol=1e-14)       # from zeros
    np.testing.assert_allclose(bn.running_var, 0.1 * var, rtol=1e-12)
    dout = rng.standard_normal((8, D))
    dx = bn.backward(dout)

    def f(q):
        xx = q["x"]
        m = xx.mean(axis=0)
        y = q["gamma"] * (xx - m) / np.sqrt(xx.var(axis=0) + EPS_BN) + q["beta"]
        return np.sum(y * dout)
    want = np_central_gradient(f, {"x": x, "gamma": gamma, "beta": beta})
    np.testing.assert_allclose(dx, want["x"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bn.dgamma, want["gamma"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(bn.dbeta, dout.sum(axis=0), rtol=1e-14)
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    test_out = bn.forward(x, train_flg=False)
    np.testing.assert_allclose(test_out, gamma * (x - rm) / np.sqrt(rv + EPS_BN) + beta, rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean, rm)   # test mode leaves them


def test_batch_normalization_running_stats_given_and_4d(rng):
    C, H, W = 2, 2, 3
    D = C * H * W
    gamma, beta = np.ones(D) * 2, np.zeros(D) + 0.5
    bn = layers.BatchNormalization(gamma, beta, momentum=0.5, running_mean=np.ones(D),
                                   running_var=np.ones(D) * 4)
    x = rng.standard_normal((6, C, H, W))
    out = bn.forward(x, train_flg=True)
    assert out.shape == x.shape and tuple(bn.input_shape) == x.shape
    x2 = x.reshape(6, -1)
    mu, var = x2.mean(axis=0), x2.var(axis=0)
    np.testing.assert_allclose(out.reshape(6, -1), 2 * (x2 - mu) / np.sqrt(var + EPS_BN) + 0.5,
                               rtol=1e-12)
    np.testing.assert_allclose(bn.running_mean, 0.5 * 1 + 0.5 * mu, rtol=1e-14)
    np.testing.assert_allclose(bn.running_var, 0.5 * 4 + 0.5 * var, rtol=1e-14)
    assert bn.backward(np.ones_like(x)).shape == x.shape


# -- common/multi_layer_net_extend.py (batch_norm_*.py, overfit_dropout.py) ----------------

def test_multi_layer_net_extend_signature_params_and_layers():
    cls = extend_class()
    net = cls(input_size=784, hidden_size_list=[100, 100], output_size=10, use_batchnorm=True)
    assert set(net.params) == {"W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2",
                               "W3", "b3"}
    for i in (1, 2):
        np.testing.assert_array_equal(net.params[f"gamma{i}"], np.ones(100))
        np.testing.assert_array_equal(net.params[f"beta{i}"], np.zeros(100))
    assert list(net.layers) == ["Affine1", "BatchNorm1", "Activation_function1", "Affine2",
                                "BatchNorm2", "Activation_function2", "Affine3"]
    net = cls(input_size=784, hidden_size_list=[100, 100, 100, 100, 100, 100], output_size=10,
              use_dropout=True, dropout_ration=0.2)
    assert [k for k in net.layers if k.startswith("Dropout")] == [f"Dropout{i}" for i in range(1, 7)]
    assert list(net.params) == [f"{p}{i}" for i in range(1, 8) for p in "Wb"]
    assert net.layers["Dropout1"].dropout_ratio == 0.2
    net = cls(784, [50], 10, "sigmoid", "sigmoid", 0.1, True, 0.3, True)   # positional, the book's order
    assert net.weight_decay_lambda == 0.1 and net.use_dropout and net.use_batchnorm
    assert list(net.layers) == ["Affine1", "BatchNorm1", "Activation_function1", "Dropout1", "Affine2"]


@pytest.mark.parametrize("n", [1, 4])
def test_batch_norm_gradient_check_usage(n, rng):
    """batch_norm_gradient_check.py: gradient, then numerical_gradient, on x_train[:1]."""
    cls = extend_class()
    net = cls(input_size=12, hidden_size_list=[6, 5], output_size=10, use_batchnorm=True)
    x, t = mnist_like(rng, n, d=12)
    if n == 1:   # one sample: each BatchNorm outputs beta, 0 at first, on ReLU's kink
        for i in (1, 2):
            net.params[f"beta{i}"][...] = rng.standard_normal(net.params[f"beta{i}"].shape)
    grad_backprop = net.gradient(x, t)
    grad_numerical = net.numerical_gradient(x, t)
    assert set(grad_backprop) == set(grad_numerical) == set(net.params)

    def loss(q):
        return np_loss(np_forward(q, x, 2, use_bn=True), t)

    want = np_central_gradient(loss, net.params)
    assert_grad_close(grad_backprop, want)
    assert_grad_close(grad_numerical, want, atol=1e-6, rtol=1e-4)
    assert_loss(net.loss(x, t, train_flg=True), np_forward(net.params, x, 2, use_bn=True), t)


def test_extend_batchnorm_running_stats_and_test_mode(rng):
    cls = extend_class()
    net = cls(input_size=10, hidden_size_list=[6, 5], output_size=4, use_batchnorm=True,
              weight_init_std=0.5)
    x, t = mnist_like(rng, 16, d=10, c=4, one_hot=False)
    p = {k: v.copy() for k, v in net.params.items()}
    net.gradient(x, t)
    a1 = x.astype(np.float64) @ p["W1"] + p["b1"]
    bn1 = net.layers["BatchNorm1"]
    np.testing.assert_allclose(bn1.running_mean, 0.1 * a1.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn1.running_var, 0.1 * a1.var(axis=0), rtol=1e-12)
    running = {i: (net.layers[f"BatchNorm{i}"].running_mean, net.layers[f"BatchNorm{i}"].running_var)
               for i in (1, 2)}
    want = np_forward(p, x, 2, use_bn=True, train=False, running=running)
    np.testing.assert_allclose(net.predict(x), want, rtol=1e-10, atol=1e-12)   # train_flg=False
    assert_loss(net.loss(x, t), want, t)
    assert net.accuracy(x, t) == np.mean(want.argmax(axis=1) == t)
    np.testing.assert_allclose(net.predict(x, train_flg=True),
                               np_forward(p, x, 2, use_bn=True, train=True), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("use_batchnorm", [False, True])
def test_extend_dropout_gradient_uses_the_layers_masks(use_batchnorm, rng):
    cls = extend_class()
    ratio = 0.3
    net = cls(input_size=10, hidden_size_list=[8, 8], output_size=4, use_dropout=True,
              dropout_ration=ratio, use_batchnorm=use_batchnorm, weight_decay_lambda=0.01)
    x, t = mnist_like(rng, 12, d=10, c=4, one_hot=False)
    for i in (1, 2, 3):   # a sample with every unit dropped puts the next layer at b = 0, ReLU's kink
        net.params[f"b{i}"][...] = 0.1 * rng.standard_normal(net.params[f"b{i}"].shape)
    if not use_batchnorm:   # test mode: every unit kept, scaled by 1 - ratio
        np.testing.assert_allclose(
            net.predict(x), np_forward(net.params, x, 2, ratio=ratio, train=False),
            rtol=1e-12, atol=1e-14)
    grads = {k: np.array(v) for k, v in net.gradient(x, t).items()}
    masks = {i: np.asarray(net.layers[f"Dropout{i}"].mask, dtype=np.float64) for i in (1, 2)}
    assert 0 < masks[1].mean() < 1

    def loss(q):
        decay = sum(0.5 * 0.01 * np.sum(q[f"W{i}"] ** 2) for i in (1, 2, 3))
        return np_loss(np_forward(q, x, 2, use_bn=use_batchnorm, masks=masks, ratio=ratio,
                                  train=True), t) + decay

    assert_grad_close(grads, np_central_gradient(loss, net.params))


def test_batch_norm_test_loop_with_sgd(rng):
    """batch_norm_test.py: two networks (with and without BN) stepped by one SGD."""
    cls = extend_class()
    kw = dict(input_size=20, hidden_size_list=[10, 10, 10], output_size=10, weight_init_std=0.1)
    bn_network, network = cls(**kw, use_batchnorm=True), cls(**kw)
    optimizer = optimizers.SGD(lr=0.01)
    x, t = mnist_like(rng, 50, one_hot=False)
    for i in range(5):
        batch_mask = rng.choice(50, 10)
        for _network in (bn_network, network):
            before = {k: v.copy() for k, v in _network.params.items()}
            grads = _network.gradient(x[batch_mask], t[batch_mask])
            g = {k: np.array(v) for k, v in grads.items()}
            optimizer.update(_network.params, grads)
            for k in before:
                np.testing.assert_allclose(_network.params[k], before[k] - 0.01 * g[k], rtol=1e-14)
    for _network in (bn_network, network):
        acc = _network.accuracy(x, t)
        assert acc * 50 == round(acc * 50)


def test_seeded_extend_network_repeats_with_dropout():
    cls = extend_class()
    x, t = mnist_like(np.random.default_rng(1), 10, d=10, c=4, one_hot=False)

    def run():
        np.random.seed(11)
        net = cls(10, [6, 6], 4, use_dropout=True, dropout_ration=0.5, use_batchnorm=True)
        g = net.gradient(x, t)
        return {k: np.array(v) for k, v in g.items()}, np.array(net.layers["Dropout1"].mask)
    (g1, m1), (g2, m2) = run(), run()
    np.testing.assert_array_equal(m1, m2)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


# -- common/trainer.py (overfit_dropout.py, hyperparameter_optimization.py) ----------------

@pytest.fixture(scope="module")
def digits():
    (x_train, t_train), (x_test, t_test) = fastmlp.datasets.load_digits()
    return x_train[:300], t_train[:300], x_test[:100], t_test[:100]


def test_hyperparameter_optimization_trainer_usage(digits, capsys):
    x_train, t_train, x_val, t_val = digits
    network = fastmlp.MultiLayerNet(input_size=64, hidden_size_list=[20, 20], output_size=10,
                                    weight_decay_lambda=1e-5)
    trainer = fastmlp.Trainer(network, x_train, t_train, x_val, t_val, epochs=4,
                              mini_batch_size=100, optimizer="sgd",
                              optimizer_param={"lr": 0.05}, verbose=False)
    assert isinstance(trainer.optimizer, optimizers.SGD) and trainer.optimizer.lr == 0.05
    trainer.train()
    assert capsys.readouterr().out == ""
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 4
    assert len(trainer.train_loss_list) == trainer.max_iter == 12
    for acc in trainer.train_acc_list:
        assert 0 <= acc <= 1 and acc * 300 == pytest.approx(round(acc * 300), abs=1e-9)
    for acc in trainer.test_acc_list:
        assert 0 <= acc <= 1 and acc * 100 == pytest.approx(round(acc * 100), abs=1e-9)


@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("momentum", "Momentum"),
                                      ("nesterov", "Nesterov"), ("adagrad", "AdaGrad"),
                                      ("rmsprop", "RMSprop"), ("adam", "Adam")])
def test_trainer_optimizer_names(name, cls, digits):
    x_train, t_train, x_test, t_test = digits
    net = fastmlp.MultiLayerNet(64, [10], 10, seed=0)
    trainer = fastmlp.Trainer(net, x_train, t_train, x_test, t_test, epochs=1,
                              optimizer=name, optimizer_param={"lr": 0.001}, verbose=False)
    assert type(trainer.optimizer) is getattr(optimizers, cls) and trainer.optimizer.lr == 0.001


def test_overfit_dropout_trainer_usage(digits, capsys):
    x_train, t_train, x_test, t_test = digits
    cls = extend_class()

    def run():
        np.random.seed(0)
        network = cls(input_size=64, hidden_size_list=[30, 30, 30], output_size=10,
                      use_dropout=True, dropout_ration=0.2)
        trainer = fastmlp.Trainer(network, x_train, t_train, x_test, t_test, epochs=3,
                                  mini_batch_size=100, optimizer="sgd",
                                  optimizer_param={"lr": 0.01}, verbose=True)
        trainer.train()
        return trainer
    a = run()
    out = capsys.readouterr().out
    assert out.count("=== epoch:") == 3 and "train acc" in out and "test acc" in out
    train_acc_list, test_acc_list = a.train_acc_list, a.test_acc_list
    assert len(train_acc_list) == len(test_acc_list) == 3
    b = run()
    assert b.train_loss_list == a.train_loss_list             # np.random.seed repeats the run
    assert b.test_acc_list == a.test_acc_list


def test_trainer_follows_numpy_global_seed(digits):
    x_train, t_train, x_test, t_test = digits

    def run(seed):
        np.random.seed(seed)
        net = fastmlp.MultiLayerNet(64, [20], 10)
        trainer = fastmlp.Trainer(net, x_train, t_train, x_test, t_test, epochs=2,
                                  mini_batch_size=50, verbose=False)
        trainer.train()
        return trainer.train_loss_list
    assert run(3) == run(3)
    assert run(3) != run(4)
