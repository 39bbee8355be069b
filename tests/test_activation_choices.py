"""tanh and identity hidden layers wherever an activation is named: networks (fused and layer
by layer), save/load, the estimators (scikit-learn's names), the command line, the bench."""
import argparse
import json

import numpy as np
import pytest
from conftest import assert_bits_identical

import fastmlp
from fastmlp import _bench as bench
from fastmlp import layers as L
from fastmlp import reference as R
from fastmlp.cli import main

ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity"]
NUMPY_ACT = {"relu": lambda z: np.maximum(z, 0), "logistic": lambda z: 1 / (1 + np.exp(-z)),
             "tanh": np.tanh, "identity": lambda z: z}


@pytest.mark.parametrize("activation", ["tanh", "identity"])
def test_network_layers_and_fused_path(dtype, activation):
    net = fastmlp.MultiLayerNet(7, [9, 5], 3, activation=activation, dtype=dtype, seed=2)
    ref = R.MultiLayerNet(7, [9, 5], 3, activation=activation, dtype=dtype, seed=2)
    cls = {"tanh": (L.Tanh, R.Tanh), "identity": (L.Identity, R.Identity)}[activation]
    assert [type(v) for v in net.layers.values()][1::2] == [cls[0]] * 2
    assert [type(v) for v in ref.layers.values()][1::2] == [cls[1]] * 2
    assert net._fused.plan(net) is not None   # the fused kernel runs this network
    x = np.random.default_rng(0).normal(0, 1, (11, 7)).astype(dtype)
    t = np.arange(11) % 3
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(net.predict(x), ref.predict(x), **tol)
    grads, rgrads = net.gradient(x, t), ref.gradient(x, t)
    for k in rgrads:
        np.testing.assert_allclose(grads[k], rgrads[k], **tol)
    # after the fused call the activation layers hold what the layer path would leave
    for layer in list(net.layers.values())[1::2]:
        if activation == "tanh":
            assert layer.out is not None and layer.out.dtype == dtype
        else:
            assert layer.shape == (11, layer.shape[1]) and layer.dtype is dtype


def test_tanh_net_gradient_check():
    net = fastmlp.MultiLayerNet(5, [6, 4], 3, activation="tanh", weight_init_std="tanh",
                                weight_decay_lambda=0.1, seed=1)
    x = np.random.default_rng(1).normal(0, 1, (4, 5))
    t = np.array([0, 2, 1, 2])
    numeric = net.numerical_gradient(x, t)
    analytic = net.gradient(x, t)
    for k in numeric:
        assert np.all(np.abs(analytic[k] - numeric[k]) <= 1e-8 + 1e-5 * np.abs(numeric[k])), k


def test_weight_init_names():
    """'tanh' is an init name for Xavier's sqrt(1/n_in), as 'sigmoid' and 'xavier' are."""
    a = fastmlp.MultiLayerNet(400, [300], 3, weight_init_std="tanh", seed=0)
    b = fastmlp.MultiLayerNet(400, [300], 3, weight_init_std="xavier", seed=0)
    assert_bits_identical(a.params["W1"], b.params["W1"])
    with pytest.raises(ValueError, match="activation"):
        fastmlp.MultiLayerNet(4, [3], 2, activation="softplus")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_save_load_round_trip(tmp_path, activation):
    net = fastmlp.MultiLayerNet(6, [5, 4], 3, activation=activation, dtype=np.float32, seed=4)
    x = np.random.default_rng(2).normal(0, 1, (8, 6)).astype(np.float32)
    before = net.predict(x)
    fastmlp.save(net, tmp_path / "net.fmlp")
    back = fastmlp.load(tmp_path / "net.fmlp")
    assert back.activation == activation and back.config() == net.config()
    assert_bits_identical(back.predict(x), before)


@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
@pytest.mark.parametrize("estimator", ["MLPClassifier", "MLPRegressor"])
def test_estimator_activation_is_used(activation, estimator):
    """The fitted model's output equals a numpy forward pass through coefs_ with that activation."""
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (60, 5))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0) if estimator == "MLPClassifier" else X @ [1, 2, 0, 0, 1]
    est = getattr(fastmlp, estimator)(hidden_layer_sizes=(7, 4), activation=activation,
                                      max_iter=20, random_state=0, tol=0)
    est.fit(X, y)
    assert est.get_params()["activation"] == activation
    h = X
    for W, b in zip(est.coefs_[:-1], est.intercepts_[:-1]):
        h = NUMPY_ACT[activation](h @ W + b)
    out = h @ est.coefs_[-1] + est.intercepts_[-1]
    if estimator == "MLPClassifier":
        p = np.exp(out - out.max(1, keepdims=True))
        np.testing.assert_allclose(est.predict_proba(X), p / p.sum(1, keepdims=True), rtol=1e-10)
    else:
        np.testing.assert_allclose(est.predict(X), out.ravel(), rtol=1e-10, atol=1e-12)


def test_estimator_initial_weights_follow_sklearn():
    """sklearn's Glorot-uniform bound: sqrt(2 / (fan_in + fan_out)) for logistic, sqrt(6 / ...)
    for the others (tanh and identity included)."""
    pytest.importorskip("sklearn")
    X = np.random.default_rng(0).normal(0, 1, (20, 30))
    y = np.arange(20) % 2
    for activation, factor in [("tanh", 6), ("identity", 6), ("logistic", 2)]:
        est = fastmlp.MLPClassifier(hidden_layer_sizes=(40,), activation=activation,
                                    max_iter=1, learning_rate_init=1e-12, random_state=0)
        est.partial_fit(X, y, classes=[0, 1])
        bound = np.sqrt(factor / (30 + 40))
        W = est.coefs_[0]
        assert np.abs(W).max() <= bound and np.abs(W).max() > 0.9 * bound


@pytest.mark.parametrize("activation", ["tanh", "identity"])
def test_cli_train(tmp_path, capsys, activation):
    path = tmp_path / "net.fmlp"
    assert main(["train", "--epochs", "2", "--quiet", "--hidden", "20", "--activation",
                 activation, "--seed", "1", "--save", str(path)]) == 0
    acc = float(capsys.readouterr().out.split("test acc ")[1].split()[0])
    assert acc > 0.5   # learns the digits (chance: 0.1)
    net = fastmlp.load(path)
    assert net.activation == activation
    assert [type(v) for v in net.layers.values()][1] is {"tanh": L.Tanh,
                                                          "identity": L.Identity}[activation]


def test_bench_activations(tmp_path, capsys):
    parser = bench.add_arguments(argparse.ArgumentParser())
    path = tmp_path / "b.json"
    args = parser.parse_args(["--seconds", "0.01", "--repeats", "1", "--configs", "784-20-10@8",
                              "--dtypes", "float32", "--only", "fastmlp",
                              "--activations", "relu,logistic,tanh", "--json", str(path)])
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "sigmoid / relu" in out and "tanh / relu" in out
    rows = json.loads(path.read_text())["train"]
    assert [r["activation"] for r in rows] == ["relu", "sigmoid", "tanh"]
    assert all(r["results"]["fastmlp"]["samples_per_s"] > 0 for r in rows)
    bad = parser.parse_args(["--activations", "softplus"])
    assert bench.run(bad) == 1
    assert "unknown activation 'softplus'" in capsys.readouterr().err


@pytest.mark.parametrize("activation", ["tanh", "identity"])
def test_estimator_save_load(tmp_path, activation):
    pytest.importorskip("sklearn")
    X = np.random.default_rng(3).normal(0, 1, (40, 4))
    y = np.arange(40) % 3
    est = fastmlp.MLPClassifier(hidden_layer_sizes=(6,), activation=activation, max_iter=5,
                                random_state=0).fit(X, y)
    fastmlp.save(est, tmp_path / "est.fmlp")
    back = fastmlp.load(tmp_path / "est.fmlp")
    assert back.activation == activation
    assert_bits_identical(back.predict_proba(X), est.predict_proba(X))
