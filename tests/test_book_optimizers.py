"""The optimizers as the book's chapter 6 uses them (issue 13).

- ``Nesterov`` follows the book's ``common/optimizer.py`` as corrected on 2021-01-18:
  the parameter moves with the previous velocity, then the velocity is updated.
- ``params`` may hold Python numbers and numpy scalars (``optimizer_compare_naive``
  keeps ``params['x'] = -7.0``); the entry is rebound, as ``params[key] -= ...`` does.

The expectations are the book's formulas written out in Python floats (math.sqrt for
the square roots): the compiled rules do the same IEEE operations in the same order
(no FMA), so float64 trajectories are equal bit for bit.
"""
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import optimizers as C
from fastmlp.reference import optimizers as R

NAMES = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]
KWARGS = {"SGD": {"lr": 0.95}, "Momentum": {"lr": 0.1}, "Nesterov": {"lr": 0.1},
          "AdaGrad": {"lr": 1.5}, "RMSprop": {"lr": 0.3}, "Adam": {"lr": 0.3}}


def book_rule(name, kw, p, grads):
    """The book's update of one scalar parameter over the gradients ``grads``, in floats."""
    lr = kw["lr"]
    m_, b1, b2, d = kw.get("momentum", 0.9), 0.9, 0.999, 0.99
    v = h = m = 0.0
    for it, g in enumerate(grads, start=1):
        if name == "SGD":
            p -= lr * g
        elif name == "Momentum":
            v = m_ * v - lr * g
            p += v
        elif name == "Nesterov":     # corrected: p with the old v, then v
            p += m_ * m_ * v
            p -= (1 + m_) * lr * g
            v *= m_
            v -= lr * g
        elif name == "AdaGrad":
            h += g * g
            p -= lr * g / (math.sqrt(h) + 1e-7)
        elif name == "RMSprop":
            h *= d
            h += (1 - d) * g * g
            p -= lr * g / (math.sqrt(h) + 1e-7)
        else:
            lr_t = lr * math.sqrt(1.0 - b2 ** it) / (1.0 - b1 ** it)
            m += (1 - b1) * (g - m)
            v += (1 - b2) * (g * g - v)
            p -= lr_t * m / (math.sqrt(v) + 1e-7)
    return p


# ---------------------------------------------------------------- Nesterov, corrected

@pytest.mark.parametrize("module", [C, R], ids=["compiled", "reference"])
def test_nesterov_first_step_is_the_corrected_books(module):
    """w = 1 on f(w) = w**2 / 2 (grad = w), lr 0.1, momentum 0.9: 1 - 1.9 * 0.1 = 0.81
    (the old order, velocity first, gave 1 - 0.081 - 0.19 = 0.729)."""
    opt = module.Nesterov(lr=0.1, momentum=0.9)
    params = {"w": np.array([1.0])}
    opt.update(params, {"w": params["w"].copy()})
    assert params["w"][0] == pytest.approx(0.81, rel=1e-15)
    assert opt.v["w"][0] == pytest.approx(-0.1, rel=1e-15)
    assert "2021-01-18" in (module.Nesterov.__doc__ or "")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nesterov_compiled_equals_reference_bitwise(dtype):
    rng = np.random.default_rng(1)
    shapes = {"W1": (17, 5), "b1": (5,), "W2": (1023,)}
    ps = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    pc, pr = {k: v.copy() for k, v in ps.items()}, {k: v.copy() for k, v in ps.items()}
    oc, orf = C.Nesterov(0.05, 0.8), R.Nesterov(0.05, 0.8)
    for _ in range(7):
        g = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
        oc.update(pc, g)
        orf.update(pr, g)
    for k in shapes:
        np.testing.assert_array_equal(pc[k], pr[k])
        np.testing.assert_array_equal(oc.v[k], orf.v[k])


def test_nesterov_trajectory_is_the_books_formula():
    grads = [0.3, -1.25, 2.0, 0.0, -0.5]
    for module in (C, R):
        opt = module.Nesterov(lr=0.07, momentum=0.85)
        params = {"p": np.array([0.4])}
        for g in grads:
            opt.update(params, {"p": np.array([g])})
        assert params["p"][0] == book_rule("Nesterov", {"lr": 0.07, "momentum": 0.85}, 0.4, grads)


def test_saved_nesterov_state_continues_with_the_corrected_rule(tmp_path):
    """A saved Nesterov (format 1) holds v, the velocity after the steps taken; that is the
    same quantity under the old and the corrected order, so loading keeps it and the next
    step is the corrected rule from it."""
    rng = np.random.default_rng(2)
    net = fastmlp.MultiLayerNet(5, [4], 3, seed=0)
    opt = C.Nesterov(0.05, 0.9)
    x, t = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    for _ in range(3):
        opt.update(net.params, net.gradient(x, t))
    fastmlp.save(net, tmp_path / "n.fmlp", optimizer=opt)
    net2, opt2 = fastmlp.load(tmp_path / "n.fmlp", with_optimizer=True)
    ref = R.Nesterov(0.05, 0.9)
    ref.v = {k: v.copy() for k, v in opt2.v.items()}
    grads = {k: v.copy() for k, v in net2.gradient(x, t).items()}
    expected = {k: v.copy() for k, v in net2.params.items()}
    ref.update(expected, grads)
    opt2.update(net2.params, grads)
    for k in expected:
        np.testing.assert_array_equal(net2.params[k], expected[k])


# ---------------------------------------------------------------- numbers in params

@pytest.mark.parametrize("module", [C, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_optimizer_compare_naive_with_python_floats(module, name):
    """ch06/optimizer_compare_naive: f(x, y) = x**2 / 20 + y**2 from (-7, 2), 30 steps,
    params and grads Python floats. Each entry is rebound to a numpy float64 (a float)."""
    opt = getattr(module, name)(**KWARGS[name])
    params = {"x": -7.0, "y": 2.0}
    grads = {"x": 0, "y": 0}
    given = {"x": [], "y": []}
    for _ in range(30):
        grads["x"], grads["y"] = params["x"] / 10.0, 2.0 * params["y"]
        given["x"].append(grads["x"])
        given["y"].append(grads["y"])
        opt.update(params, grads)
    for key, start in (("x", -7.0), ("y", 2.0)):
        assert isinstance(params[key], float) and type(params[key]) is np.float64
        assert params[key] == book_rule(name, KWARGS[name], start, given[key])


@pytest.mark.parametrize("name", NAMES)
def test_numbers_zero_d_arrays_and_numpy_scalars(name):
    """A 0-d float array is updated in place (it is an array); numbers beside arrays take
    the arrays' dtype (numpy's rule for Python numbers): among float32 arrays a numpy
    float32 scalar or a Python int is rebound to a float32 equal to the float32 array's
    result, beside a float64 array a numpy float32 scalar becomes a float64."""
    kw = KWARGS[name]
    zero_d = np.array(1.5)
    params = {"b": np.float32(0.75), "a": zero_d, "c": 2}
    getattr(C, name)(**kw).update(params, {"a": 0.5, "b": np.float32(-0.25), "c": 1.0})
    assert type(params["b"]) is np.float64 and type(params["c"]) is np.float64
    params = {"a": np.array([0.75], np.float32), "b": np.float32(0.75), "c": 2}
    opt = getattr(C, name)(**kw)
    for _ in range(3):
        opt.update(params, {"a": np.array([-0.25], np.float32), "b": -0.25, "c": 1.0})
    assert type(params["b"]) is np.float32 and type(params["c"]) is np.float32
    assert params["b"] == params["a"][0]
    zero_d = np.array(1.5)
    same = {"w": zero_d}
    opt = getattr(C, name)(**kw)
    opt.update(same, {"w": 0.5})
    assert same["w"] is zero_d and zero_d[()] == book_rule(name, kw, 1.5, [0.5])


@pytest.mark.parametrize("module", [C, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_scalar_state_round_trips(module, name):
    opt = getattr(module, name)(**KWARGS[name])
    params = {"x": -7.0}
    opt.update(params, {"x": 0.25})
    other = getattr(module, name)(**KWARGS[name])
    other.load_state_dict(opt.state_dict())
    p1, p2 = {"x": params["x"]}, {"x": params["x"]}
    opt.update(p1, {"x": -0.5})
    other.update(p2, {"x": -0.5})
    assert p1["x"] == p2["x"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("params,grads,error,match", [
    ({"x": True}, {"x": 1.0}, TypeError, r"params\['x'\]"),
    ({"x": "7"}, {"x": 1.0}, TypeError, r"params\['x'\]"),
    ({"x": 1 + 2j}, {"x": 1.0}, TypeError, r"params\['x'\]"),
    ({"x": -7.0}, {"x": np.ones(2)}, ValueError, r"grads\['x'\]"),
    ({"x": 10**400}, {"x": 1.0}, ValueError, r"params\['x'\]"),
    ({"x": -7.0}, {"x": "g"}, TypeError, r"grads\['x'\]"),
    ({"x": -7.0, "y": 2.0}, {"x": 1.0}, ValueError, "'y'"),
    ({"x": -7.0, "y": np.ones(2, np.float32), "z": np.ones(2)}, {"x": 1.0, "y": np.ones(2),
                                                                   "z": np.ones(2)},
     TypeError, "one dtype")])
def test_bad_numbers_change_nothing(name, params, grads, error, match):
    opt = getattr(C, name)(**KWARGS[name])
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in params.items()}
    state = opt.state_dict()
    with pytest.raises(error, match=match):
        opt.update(params, grads)
    assert params.keys() == before.keys()
    for k, v in before.items():
        assert type(params[k]) is type(v)
        np.testing.assert_array_equal(params[k], v)
    after = opt.state_dict()
    assert after.keys() == state.keys() and after["state"] == {} == state["state"]
    assert after.get("iter") == state.get("iter")
