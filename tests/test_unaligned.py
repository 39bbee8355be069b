"""Unaligned (but valid) numpy arrays through every function, layer, optimizer and network.

A view of a buffer at an odd byte offset (``np.frombuffer(buf, offset=1)``) is
C-contiguous, native-endian and writeable, yet its floats are not aligned:
loading them as ``float``/``double`` in C is undefined behaviour (UBSan:
"load of misaligned address"). fastmlp must copy such arrays to aligned memory
before a kernel reads them (``_backend.contiguous``) and keep them off its
C fast paths (``_arrays.ready``), and give what the reference gives. Run under
the sanitizer build (.ci/sanitize), these tests also prove no kernel reads one.
"""
import numpy as np
import pytest
from conftest import TOL

import fastmlp
from fastmlp import functions as F
from fastmlp import layers as L
from fastmlp import optimizers as O
from fastmlp import reference as R
from fastmlp.reference import functions as RF
from fastmlp.reference import layers as RL
from fastmlp.reference import optimizers as RO

DTYPES = [np.float32, np.float64]


def unaligned(a):
    """The values of ``a`` in a writeable, C-contiguous array at offset 1 of a bytearray."""
    a = np.ascontiguousarray(a)
    buf = bytearray(a.nbytes + 1)
    out = np.frombuffer(buf, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned and out.flags.c_contiguous and out.flags.writeable
    return out


def _close(got, want, dtype, what=""):
    """TESTING.md's simpler fallback bound: rtol, atol scaled by the reference's magnitude."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=TOL[dtype]["rtol"],
                               atol=TOL[dtype]["atol_scale"] * scale, err_msg=what)


def _same(got, want):
    """Bitwise the same result as for the aligned copy of the input."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


@pytest.fixture(params=DTYPES, ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(10)


def test_helper_makes_unaligned_arrays(dtype):
    a = unaligned(np.arange(7, dtype=dtype))
    assert a.ctypes.data % np.dtype(dtype).itemsize != 0
    assert np.array_equal(a, np.arange(7, dtype=dtype))


# ---------------------------------------------------------------- functions

@pytest.mark.parametrize("shape", [(1,), (5,), (17, 3), (2, 3, 4)])
def test_functions_elementwise(dtype, rng, shape):
    x = rng.standard_normal(shape).astype(dtype)
    for f, rf in ((F.sigmoid, RF.sigmoid), (F.relu, RF.relu)):
        got = f(unaligned(x))
        _same(got, f(x))
        _close(got, rf(x), dtype, f.__name__)


@pytest.mark.parametrize("shape", [(5,), (1, 1), (17, 3), (3, 1023)])
def test_softmax_and_losses(dtype, rng, shape):
    x = rng.standard_normal(shape).astype(dtype)
    _same(F.softmax(unaligned(x)), F.softmax(x))
    _close(F.softmax(unaligned(x)), RF.softmax(x), dtype, "softmax")
    y = RF.softmax(x)
    y2 = y.reshape(1, -1) if y.ndim == 1 else y
    labels = rng.integers(0, y2.shape[1], y2.shape[0]).astype(np.intp)
    onehot = np.eye(y2.shape[1], dtype=dtype)[labels]
    t = unaligned(labels)
    assert F.cross_entropy_error(unaligned(y2), t) == F.cross_entropy_error(y2, labels)
    assert F.cross_entropy_error(unaligned(y2), unaligned(onehot)) == \
        F.cross_entropy_error(y2, onehot)
    # the reference adds the book's 1e-7 in the array's precision (float32 rounds it)
    assert F.cross_entropy_error(unaligned(y2), t) == pytest.approx(
        RF.cross_entropy_error(y2, labels), rel=TOL[dtype]["loss"],
        abs=4 * float(np.finfo(dtype).eps))
    target = rng.standard_normal(x.shape).astype(dtype)
    assert F.mean_squared_error(unaligned(x), unaligned(target)) == \
        F.mean_squared_error(x, target)
    assert F.mean_squared_error(unaligned(x), unaligned(target)) == pytest.approx(
        RF.mean_squared_error(x, target), rel=TOL[dtype]["loss"])


# ---------------------------------------------------------------- layers

def test_mul_add_layers(dtype, rng):
    x, y, dout = (rng.standard_normal((17, 3)).astype(dtype) for _ in range(3))
    for cls, ref_cls in ((L.MulLayer, RL.MulLayer), (L.AddLayer, RL.AddLayer)):
        layer, ref = cls(), ref_cls()
        _close(layer.forward(unaligned(x), unaligned(y)), ref.forward(x, y), dtype, cls.__name__)
        for got, want in zip(layer.backward(unaligned(dout)), ref.backward(dout)):
            _close(got, want, dtype, cls.__name__ + ".backward")


@pytest.mark.parametrize("cls,ref_cls", [(L.Relu, RL.Relu), (L.Sigmoid, RL.Sigmoid)],
                         ids=["Relu", "Sigmoid"])
def test_activation_layers(dtype, rng, cls, ref_cls):
    x, dout = (rng.standard_normal((100, 17)).astype(dtype) for _ in range(2))
    layer, ref = cls(), ref_cls()
    _close(layer.forward(unaligned(x)), ref.forward(x), dtype, "forward")
    _close(layer.backward(unaligned(dout)), ref.backward(dout), dtype, "backward")


@pytest.mark.parametrize("n,k,m", [(1, 1, 1), (3, 17, 2), (100, 17, 10), (2, 1023, 3)])
def test_affine_layer(dtype, rng, n, k, m):
    x = rng.standard_normal((n, k)).astype(dtype)
    W = rng.standard_normal((k, m)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    dout = rng.standard_normal((n, m)).astype(dtype)
    layer, ref = L.Affine(unaligned(W), unaligned(b)), RL.Affine(W.copy(), b.copy())
    _close(layer.forward(unaligned(x)), ref.forward(x), dtype, "forward")
    _close(layer.backward(unaligned(dout)), ref.backward(dout), dtype, "dx")
    _close(layer.dW, ref.dW, dtype, "dW")
    _close(layer.db, ref.db, dtype, "db")
    # an aligned layer given the same values gives the same bits
    aligned = L.Affine(W, b)
    _same(aligned.forward(x), layer.forward(unaligned(x)))


@pytest.mark.parametrize("targets", ["labels", "onehot"])
def test_softmax_with_loss(dtype, rng, targets):
    x = rng.standard_normal((17, 5)).astype(dtype)
    labels = rng.integers(0, 5, 17).astype(np.intp)
    t = labels if targets == "labels" else np.eye(5, dtype=dtype)[labels]
    layer, ref = L.SoftmaxWithLoss(), RL.SoftmaxWithLoss()
    assert layer.forward(unaligned(x), unaligned(t)) == pytest.approx(
        ref.forward(x, t), rel=TOL[dtype]["loss"])
    _close(layer.backward(), ref.backward(), dtype, "backward")
    _close(layer.backward(0.5), ref.backward(0.5), dtype, "backward(dout)")


def test_mse_loss(dtype, rng):
    y, t = (rng.standard_normal((17, 3)).astype(dtype) for _ in range(2))
    layer, ref = L.MSELoss(), RL.MSELoss()
    assert layer.forward(unaligned(y), unaligned(t)) == pytest.approx(
        ref.forward(y, t), rel=TOL[dtype]["loss"])
    _close(layer.backward(), ref.backward(), dtype, "backward")


# ---------------------------------------------------------------- optimizers

OPTIMIZERS = [("SGD", {}), ("Momentum", {}), ("Nesterov", {}), ("AdaGrad", {}),
              ("RMSprop", {}), ("Adam", {})]


@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
@pytest.mark.parametrize("which", ["params", "grads", "both"])
def test_optimizers(dtype, rng, name, kw, which):
    shapes = {"W1": (17, 3), "b1": (3,), "W2": (3, 1023), "b2": (1023,)}
    start = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    params = {k: unaligned(v) if which in ("params", "both") else v.copy()
              for k, v in start.items()}
    ref_params = {k: v.copy() for k, v in start.items()}
    opt, ref = getattr(O, name)(**kw), getattr(RO, name)(**kw)
    held = dict(params)
    for _ in range(3):
        g = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
        opt.update(params, {k: unaligned(v) if which in ("grads", "both") else v
                            for k, v in g.items()})
        ref.update(ref_params, g)
    for k in shapes:
        assert params[k] is held[k]   # updated in place, unaligned or not
        _close(params[k], ref_params[k], dtype, k)


# ---------------------------------------------------------------- networks

@pytest.mark.parametrize("kw", [dict(activation="relu"), dict(activation="sigmoid"),
                                dict(activation="relu", loss="mse")],
                         ids=["relu", "sigmoid", "mse"])
@pytest.mark.parametrize("n", [1, 17])
def test_networks_unaligned_batches(dtype, rng, kw, n):
    net = fastmlp.MultiLayerNet(9, [7, 6], 4, dtype=dtype, seed=3, **kw)
    ref = R.MultiLayerNet(9, [7, 6], 4, dtype=dtype, seed=3, **kw)
    x = rng.standard_normal((n, 9)).astype(dtype)
    if kw.get("loss") == "mse":
        targets = [rng.standard_normal((n, 4)).astype(dtype)]
    else:
        labels = rng.integers(0, 4, n)
        targets = [labels, labels.astype(np.int32), np.eye(4, dtype=dtype)[labels]]
    for t in targets:
        got, want = net.gradient(unaligned(x), unaligned(t)), ref.gradient(x, t)
        for key in want:
            _close(got[key], want[key], dtype, key)
        weights = unaligned(rng.random(n).astype(dtype))
        got_w = net.gradient(unaligned(x), unaligned(t), sample_weight=weights)
        plain = net.gradient(x, t, sample_weight=np.array(weights))
        for key in plain:
            _same(got_w[key], plain[key])


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_network_predict_unaligned(dtype, rng, activation):
    net = fastmlp.MultiLayerNet(9, [7, 6], 4, dtype=dtype, seed=3, activation=activation)
    ref = R.MultiLayerNet(9, [7, 6], 4, dtype=dtype, seed=3, activation=activation)
    x = rng.standard_normal((17, 9)).astype(dtype)
    t = rng.integers(0, 4, 17)
    _close(net.predict(unaligned(x)), ref.predict(x), dtype, "predict")
    assert net.accuracy(unaligned(x), unaligned(t)) == ref.accuracy(x, t)


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_network_train_step_unaligned(dtype, rng, optimizer):
    net = fastmlp.MultiLayerNet(9, [7], 4, dtype=dtype, seed=3)
    ref = R.MultiLayerNet(9, [7], 4, dtype=dtype, seed=3)
    opt, ref_opt = getattr(O, optimizer)(lr=0.01), getattr(RO, optimizer)(lr=0.01)
    for _ in range(3):
        x = rng.standard_normal((17, 9)).astype(dtype)
        t = rng.integers(0, 4, 17)
        loss = net.train_step(unaligned(x), unaligned(t), opt)
        assert loss == pytest.approx(ref.loss(x, t), rel=1e-3 if dtype == np.float32 else 1e-9)
        ref_opt.update(ref.params, ref.gradient(x, t))
    for key in ref.params:
        _close(net.params[key], ref.params[key], dtype, key)


def test_network_with_unaligned_parameters(dtype, rng):
    """Parameters swapped for unaligned arrays: the compiled paths must not read them as is."""
    net = fastmlp.MultiLayerNet(9, [7], 4, dtype=dtype, seed=3)
    ref = R.MultiLayerNet(9, [7], 4, dtype=dtype, seed=3)
    for key in list(net.params):
        net.params[key] = unaligned(net.params[key])
        assert getattr(net.layers[f"Affine{key[1:]}"], key[0]) is net.params[key]
    x = rng.standard_normal((17, 9)).astype(dtype)
    t = rng.integers(0, 4, 17)
    _close(net.predict(x), ref.predict(x), dtype, "predict")
    got, want = net.gradient(x, t), ref.gradient(x, t)
    for key in want:
        _close(got[key], want[key], dtype, key)
    opt, ref_opt = O.SGD(lr=0.1), RO.SGD(lr=0.1)
    net.train_step(x, t, opt)
    ref_opt.update(ref.params, ref.gradient(x, t))
    for key in ref.params:
        _close(net.params[key], ref.params[key], dtype, key)
