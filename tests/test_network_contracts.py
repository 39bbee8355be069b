"""The networks' API contracts (issue 11): ``gradient(weight_decay=)``, ``fused_sgd_step``,
``train_step`` through the one loop step, one class tree, ``config()``/``from_config()``."""
import json

import numpy as np
import pytest

import fastmlp
from fastmlp import reference as R

CLASSES = [fastmlp.MultiLayerNet, R.MultiLayerNet]
DTYPES = [np.float32, np.float64]


def _data(rng, n=7, n_in=5, n_out=3, loss="cross_entropy"):
    x = rng.standard_normal((n, n_in))
    if loss == "mse":
        return x, rng.standard_normal((n, n_out))
    return x, rng.integers(0, n_out, n)


def _net(cls, dtype, decay=0.0, **kw):
    kw = {"activation": "relu", "loss": "cross_entropy"} | kw
    return cls(5, [6, 4], 3, weight_decay_lambda=decay, dtype=dtype, seed=1, **kw)


def _copy(grads):
    return {k: v.copy() for k, v in grads.items()}


def _layer_path(net):
    """Make the compiled net take its layer path: a Fortran-ordered W1 (same values)."""
    net.params["W1"] = np.asfortranarray(net.params["W1"])


def _bits_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


# ---------------------------------------------------------------- gradient(weight_decay=)

# the reference has only the layer path ("fused" is its default path)
@pytest.mark.parametrize("cls, path", [(c, p) for c in CLASSES for p in ("fused", "layers")
                                       if not (p == "layers" and c is R.MultiLayerNet)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [{}, {"activation": "sigmoid", "loss": "mse"}])
def test_weight_decay_argument_equals_the_attribute_bit_for_bit(cls, path, dtype, kw):
    rng = np.random.default_rng(3)
    x, t = _data(rng, loss=kw.get("loss", "cross_entropy"))
    for attr, arg in ((0.0, 0.3), (0.3, 0.0), (0.1, 0.3)):
        by_arg, by_attr, plain = (_net(cls, dtype, d, **kw) for d in (attr, arg, attr))
        if path == "layers":
            for net in (by_arg, by_attr, plain):
                _layer_path(net)
        got = _copy(by_arg.gradient(x, t, weight_decay=arg))
        want = _copy(by_attr.gradient(x, t))
        _bits_equal(got, want)
        assert by_arg.last_loss == by_attr.last_loss
        assert by_arg.weight_decay_lambda == attr   # the call changed no attribute
        # and the next call without the argument uses the attribute again
        _bits_equal(_copy(by_arg.gradient(x, t)), _copy(plain.gradient(x, t)))
        assert by_arg.last_loss == plain.last_loss


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_decay_argument_compiled_matches_reference(dtype):
    rng = np.random.default_rng(4)
    x, t = _data(rng)
    net, ref = _net(fastmlp.MultiLayerNet, dtype), _net(R.MultiLayerNet, dtype)
    got, want = net.gradient(x, t, weight_decay=0.25), ref.gradient(x, t, weight_decay=0.25)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=tol, atol=tol)
    assert net.last_loss == pytest.approx(ref.last_loss, rel=tol)
    assert net.last_loss == pytest.approx(ref.loss(x, t) + 0.125 * sum(
        float(np.sum(ref.params[f"W{i}"].astype(np.float64) ** 2)) for i in (1, 2, 3)), rel=tol)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("bad, exc", [(-1.0, ValueError), (float("nan"), ValueError),
                                      (float("inf"), ValueError), ("a", TypeError),
                                      (True, TypeError)])
def test_bad_weight_decay_argument_is_named_and_changes_nothing(cls, bad, exc):
    rng = np.random.default_rng(5)
    x, t = _data(rng)
    net = _net(cls, np.float64, 0.1)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(exc, match=r"^weight_decay must"):
        net.gradient(x, t, weight_decay=bad)
    assert net.weight_decay_lambda == 0.1
    _bits_equal(dict(net.params), before)
    if cls is fastmlp.MultiLayerNet:
        with pytest.raises(exc, match=r"^weight_decay must"):
            net.fused_sgd_step(x, t, 0.1, weight_decay=bad)
        _bits_equal(dict(net.params), before)


# ---------------------------------------------------------------- fused_sgd_step

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [{}, {"activation": "sigmoid", "loss": "mse"}])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_sgd_step_equals_gradient_then_sgd(dtype, kw, weighted):
    rng = np.random.default_rng(6)
    fused, plain = _net(fastmlp.MultiLayerNet, dtype, 0.05, **kw), _net(fastmlp.MultiLayerNet, dtype, 0.05, **kw)
    ref = _net(R.MultiLayerNet, dtype, 0.05, **kw)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for _ in range(5):
        x, t = _data(rng, loss=kw.get("loss", "cross_entropy"))
        w = rng.uniform(0.5, 2.0, len(x)) if weighted else None
        loss = fused.fused_sgd_step(x, t, 0.1, w, 0.2)
        assert type(loss) is float
        grads = plain.gradient(x, t, w, weight_decay=0.2)
        assert loss == pytest.approx(plain.last_loss, rel=tol)
        for k, g in grads.items():
            plain.params[k] -= dtype(0.1) * g
        if not weighted:
            ref_grads = ref.gradient(x, t, weight_decay=0.2)
            R.SGD(lr=0.1).update(ref.params, ref_grads)
    for k in plain.params:
        np.testing.assert_allclose(fused.params[k], plain.params[k], rtol=tol, atol=tol)
        if not weighted:
            np.testing.assert_allclose(fused.params[k], ref.params[k], rtol=50 * tol, atol=50 * tol)
    assert fused.weight_decay_lambda == 0.05
    assert all(layer.dW is None for name, layer in fused.layers.items() if name.startswith("Affine"))


@pytest.mark.parametrize("edit", ["reordered", "removed", "fortran W", "read-only b",
                                  "other dtype"])
def test_fused_sgd_step_returns_none_when_the_kernel_does_not_apply(edit):
    rng = np.random.default_rng(7)
    net = _net(fastmlp.MultiLayerNet, np.float64)
    x, t = _data(rng)
    if edit == "reordered":
        net.layers.move_to_end("Affine1")
    elif edit == "removed":
        del net.layers["Activation_function1"]
    elif edit == "fortran W":
        _layer_path(net)
    elif edit == "read-only b":
        net.params["b2"].flags.writeable = False
    else:
        net.params["W2"] = net.params["W2"].astype(np.float32)
    before = {k: np.array(v, copy=True) for k, v in net.params.items()}
    assert net.fused_sgd_step(x, t, 0.1) is None
    for k in before:
        assert np.array_equal(net.params[k], before[k]), k
    if edit == "read-only b":   # gradient still fuses (it writes no weight)
        assert net.gradient(x, t)["W1"] is net.gradient(x, t)["W1"]


def test_fused_sgd_step_lr_checked_and_non_finite_loss_changes_nothing():
    net = _net(fastmlp.MultiLayerNet, np.float64)
    x, t = np.full((3, 5), 1e308), np.array([0, 1, 2])
    net.params["W1"][...] = 1.0   # in place: the hidden layer overflows to inf
    before = {k: v.copy() for k, v in net.params.items()}
    for bad, exc in ((0.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), ("a", TypeError)):
        with pytest.raises(exc, match="lr"):
            net.fused_sgd_step(x, t, bad)
    assert not np.isfinite(net.fused_sgd_step(x, t, 0.1))
    _bits_equal(dict(net.params), before)


class _FusedSGD(fastmlp.optimizers.SGD):
    """SGD offering the fused rate (what the optimizers' fused_lr() contract promises)."""

    def fused_lr(self):
        return self.lr


@pytest.mark.parametrize("fusable", [True, False])
def test_train_step_is_the_loop_step(fusable):
    rng = np.random.default_rng(8)
    net, twin = _net(fastmlp.MultiLayerNet, np.float64, 0.1), _net(fastmlp.MultiLayerNet, np.float64, 0.1)
    if not fusable:
        _layer_path(net)
    for _ in range(3):
        x, t = _data(rng)
        loss = net.train_step(x, t, _FusedSGD(lr=0.05), weight_decay=0.3)
        assert (net.layers["Affine1"].dW is None) == fusable   # the fused pass stores no dW
        grads = twin.gradient(x, t, weight_decay=0.3)
        assert loss == pytest.approx(twin.last_loss, rel=1e-12)
        fastmlp.optimizers.SGD(lr=0.05).update(twin.params, grads)
    assert net.weight_decay_lambda == 0.1
    for k in twin.params:
        np.testing.assert_allclose(net.params[k], twin.params[k], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- one class tree

def test_two_layer_net_is_a_multi_layer_net_of_its_implementation():
    net, ref = fastmlp.TwoLayerNet(5, 4, 3), R.TwoLayerNet(5, 4, 3)
    assert isinstance(net, fastmlp.MultiLayerNet) and isinstance(net, fastmlp.networks.MultiLayerNet)
    assert isinstance(ref, R.MultiLayerNet) and R.TwoLayerNet is R.networks.TwoLayerNet
    assert not isinstance(ref, fastmlp.MultiLayerNet) and not isinstance(net, R.MultiLayerNet)
    x, t = np.random.default_rng(9).standard_normal((4, 5)), np.array([0, 1, 2, 0])
    assert net.gradient(x, t)["W1"] is net.gradient(x, t)["W1"]   # the fused path's buffers
    assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]


def test_reference_imports_no_compiled_code():
    import subprocess
    import sys
    code = ("import sys, fastmlp.reference as R; R.MultiLayerNet(3, [2], 2).gradient([[1., 2, 3]], [1]); "
            "bad = sorted(m for m in sys.modules if m.startswith(('fastmlp._kernels', 'fastmlp._backend', "
            "'fastmlp._fused', 'fastmlp.networks', 'fastmlp.layers'))); print(bad)")
    # importing fastmlp.reference imports the package fastmlp first; block its __init__'s imports
    script = ("import importlib.util, sys, types; "
              "spec = importlib.util.find_spec('fastmlp'); pkg = types.ModuleType('fastmlp'); "
              "pkg.__path__ = list(spec.submodule_search_locations); sys.modules['fastmlp'] = pkg; "
              + code)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- config / from_config

NETS = {
    "multi": lambda m, dt: m.MultiLayerNet(5, [6, 4], 3, activation="sigmoid", weight_decay_lambda=0.125,
                                           dtype=dt, seed=2),
    "mse": lambda m, dt: m.MultiLayerNet(5, [6], 2, weight_decay_lambda=1e-3, dtype=dt, seed=2, loss="mse"),
    "two": lambda m, dt: m.TwoLayerNet(5, 6, 3, weight_init_std=0.3, dtype=dt, seed=2),
}


@pytest.mark.parametrize("module", [fastmlp, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(NETS))
def test_config_round_trip_is_bitwise(module, dtype, kind):
    net = NETS[kind](module, dtype)
    config = net.config()
    config = json.loads(json.dumps(config, allow_nan=False))            # JSON-able
    back = type(net).from_config(config, dict(net.params))
    assert type(back) is type(net) and back.config() == net.config()
    _bits_equal(dict(back.params), dict(net.params))
    assert all(back.params[k] is not net.params[k] for k in net.params)   # copied
    x = np.random.default_rng(0).standard_normal((4, 5))
    assert back.predict(x).tobytes() == net.predict(x).tobytes()
    zero = type(net).from_config(config)
    assert all(not p.any() for p in zero.params.values())


def test_config_values():
    net = fastmlp.MultiLayerNet(5, (6, 4), 3, weight_decay_lambda=1, dtype=np.float32)
    assert net.config() == {"input_size": 5, "hidden_size_list": [6, 4], "output_size": 3,
                            "activation": "relu", "weight_decay_lambda": 1.0, "dtype": "float32",
                            "loss": "cross_entropy"}
    assert type(net.config()["weight_decay_lambda"]) is float
    assert R.TwoLayerNet(5, 6, 3).config() == {"input_size": 5, "hidden_size": 6, "output_size": 3,
                                               "dtype": "float64"}


@pytest.mark.parametrize("cls", [fastmlp.MultiLayerNet, fastmlp.TwoLayerNet, R.MultiLayerNet])
def test_from_config_refuses_what_it_cannot_build(cls):
    net = cls(5, [6], 3) if "Multi" in cls.__name__ else cls(5, 6, 3)
    config, params = net.config(), dict(net.params)
    first = next(iter(config))
    bad_configs = [({k: v for k, v in config.items() if k != first}, ValueError, first),
                   (config | {"seed": 3}, ValueError, "seed"),
                   (config | {"dtype": "float16"}, ValueError, "dtype"),
                   (config | {"dtype": np.float64}, ValueError, "dtype"),
                   (config | {"input_size": 0}, ValueError, "input_size"),
                   (list(config.items()), TypeError, "config")]
    for bad, exc, name in bad_configs:
        with pytest.raises(exc, match=name):
            cls.from_config(bad)
    bad_params = [{k: v for k, v in params.items() if k != "b2"},
                  params | {"W3": params["W1"]},
                  params | {"W1": params["W1"].T.copy()},
                  params | {"b1": params["b1"].astype(np.float32)},
                  params | {"b1": params["b1"].tolist()}]
    for bad in bad_params:
        with pytest.raises(ValueError, match="params"):
            cls.from_config(config, bad)
    same = cls.from_config(config, params | {"W1": params["W1"].astype(">f8")})   # byte order
    assert np.array_equal(same.params["W1"], params["W1"])
