"""MultiLayerNetExtend (the book's ch. 6 network): compiled vs reference, the book's keys,
layer names and modes, numerical gradients, dropout streams, training as ch06's scripts do."""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference as R

from conftest import TOL, assert_bitwise

CONFIGS = [dict(), dict(use_dropout=True), dict(use_batchnorm=True),
           dict(use_dropout=True, use_batchnorm=True, dropout_ration=0.2)]
IDS = ["plain", "dropout", "batchnorm", "both"]


def _data(rng, n=9, d=20, c=5, dtype=np.float64):
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, c, n)


def _close(got, ref, dtype, scale=None):
    """Within the fallback tolerance of TESTING.md, atol relative to ``scale`` (default: the
    reference's largest entry; the gradients of one call share the largest over all of them,
    since with batch norm b's gradient is rounding noise around 0)."""
    tol = TOL[dtype]
    if scale is None:
        scale = float(np.abs(ref).max())
    np.testing.assert_allclose(got, ref, rtol=tol["rtol"], atol=tol["atol_scale"] * scale)


@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
def test_compiled_matches_reference(rng, dtype, kw):
    c = fastmlp.MultiLayerNetExtend(20, [11, 7], 5, activation="relu", dtype=dtype, seed=3, **kw)
    r = R.MultiLayerNetExtend(20, [11, 7], 5, activation="relu", dtype=dtype, seed=3, **kw)
    assert list(c.layers) == list(r.layers) and list(c.params) == list(r.params)
    for step in range(3):   # running statistics and mask streams move in step
        x, t = _data(rng, dtype=dtype)
        gc, gr = c.gradient(x, t), r.gradient(x, t)
        assert list(gc) == list(gr)
        scale = max(float(np.abs(g).max()) for g in gr.values())
        for key in gc:
            assert gc[key].dtype == dtype
            _close(gc[key], gr[key], dtype, scale)
        _close(c.last_loss, r.last_loss, dtype)
        for flg in (False, True):
            _close(c.predict(x, train_flg=flg), r.predict(x, train_flg=flg), dtype)
        _close(c.loss(x, t), r.loss(x, t), dtype)
        assert c.accuracy(x, t) == r.accuracy(x, t)


def test_book_names_and_keys():
    net = fastmlp.MultiLayerNetExtend(784, [100, 100, 100], 10, use_dropout=True,
                                      use_batchnorm=True, seed=0)
    assert list(net.layers) == [
        "Affine1", "BatchNorm1", "Activation_function1", "Dropout1",
        "Affine2", "BatchNorm2", "Activation_function2", "Dropout2",
        "Affine3", "BatchNorm3", "Activation_function3", "Dropout3", "Affine4"]
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4",
                                "gamma1", "beta1", "gamma2", "beta2", "gamma3", "beta3"]
    assert (net.params["gamma2"] == 1).all() and (net.params["beta2"] == 0).all()
    assert net.layers["BatchNorm1"].gamma is net.params["gamma1"]
    assert net.layers["Dropout2"].dropout_ratio == 0.5
    assert isinstance(net.layers["Dropout1"], fastmlp.layers.Dropout)
    x, t = _data(np.random.default_rng(0), 4, 784, 10)
    assert list(net.gradient(x, t)) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2",
                                        "beta2", "W3", "b3", "gamma3", "beta3", "W4", "b4"]
    new = np.full(100, 2.0)
    net.params["gamma1"] = new
    assert net.layers["BatchNorm1"].gamma is new


@pytest.mark.parametrize("impl", [fastmlp, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("kw", [dict(use_batchnorm=True), dict(use_batchnorm=True,
                                                                weight_decay_lambda=0.1)])
def test_gradient_is_numerical(impl, kw):
    """batch_norm_gradient_check: backprop against central differences, every parameter."""
    rng = np.random.default_rng(1)
    net = impl.MultiLayerNetExtend(12, [8, 6], 4, use_batchnorm=kw["use_batchnorm"],
                                   weight_decay_lambda=kw.get("weight_decay_lambda", 0), seed=2)
    x, t = _data(rng, 5, 12, 4)
    num = net.numerical_gradient(x, t)
    grad = net.gradient(x, t)
    assert list(num) == list(grad)
    for key in grad:
        n, g = num[key], grad[key]
        assert np.all(np.abs(g - n) <= 1e-8 + 1e-5 * np.abs(n)), key


def test_dropout_masks_follow_the_seed(rng):
    x, t = _data(rng)
    runs = []
    for _ in range(2):
        net = fastmlp.MultiLayerNetExtend(20, [11, 7], 5, use_dropout=True, seed=9)
        runs.append([net.gradient(x, t)["W1"].copy() for _ in range(3)])
    ref = R.MultiLayerNetExtend(20, [11, 7], 5, use_dropout=True, seed=9)
    again = [ref.gradient(x, t)["W1"] for _ in range(3)]
    for a, b, g in zip(*runs, again):
        assert_bitwise(a, b)
        np.testing.assert_allclose(a, g, rtol=1e-12, atol=1e-14)
    assert not np.array_equal(runs[0][0], runs[0][1])   # a new mask every step
    layers = list(net.layers.values())
    assert layers[2].rng is net.rng and layers[5].rng is net.rng


def test_inference_mode_is_deterministic(rng):
    net = fastmlp.MultiLayerNetExtend(20, [11], 5, use_dropout=True, use_batchnorm=True, seed=1)
    x, t = _data(rng)
    net.gradient(x, t)
    a, b = net.predict(x), net.predict(x)
    assert_bitwise(a, b)
    assert not np.array_equal(net.predict(x, train_flg=True), net.predict(x, train_flg=True))


def test_without_extensions_it_is_a_multilayernet(rng, dtype):
    ext = fastmlp.MultiLayerNetExtend(20, [11, 7], 5, dtype=dtype, seed=4)
    plain = fastmlp.MultiLayerNet(20, [11, 7], 5, dtype=dtype, seed=4)
    x, t = _data(rng, dtype=dtype)
    for (k, a), (_, b) in zip(ext.gradient(x, t).items(), plain.gradient(x, t).items()):
        assert_bitwise(a, b)
    assert_bitwise(ext.predict(x), plain.predict(x))


def test_removed_layers_are_honoured(rng):
    """Deleting the dropout layers leaves a plain network, run by the fused path."""
    net = fastmlp.MultiLayerNetExtend(20, [11, 7], 5, use_dropout=True, seed=5)
    ref = fastmlp.MultiLayerNet(20, [11, 7], 5, seed=5)
    for name in [n for n in net.layers if n.startswith("Dropout")]:
        del net.layers[name]
    x, t = _data(rng)
    for (k, a), (_, b) in zip(net.gradient(x, t).items(), ref.gradient(x, t).items()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_trainer_runs_it_like_overfit_dropout():
    (x_train, t_train), (x_test, t_test) = fastmlp.datasets.load_digits()
    net = fastmlp.MultiLayerNetExtend(64, [50, 50], 10, use_dropout=True, dropout_ration=0.15,
                                      seed=0)
    trainer = fastmlp.Trainer(net, x_train[:300], t_train[:300], x_test, t_test, epochs=5,
                              mini_batch_size=50, optimizer="sgd", optimizer_param={"lr": 0.05},
                              verbose=False, seed=0)
    trainer.train()
    acc = trainer.test_acc_list
    assert len(acc) == 5 and acc[-1] > acc[0] + 0.15


def test_sgd_on_params_like_batch_norm_test():
    (x, t), _ = fastmlp.datasets.load_digits()
    x, t = x[:200], t[:200]
    net = fastmlp.MultiLayerNetExtend(64, [40, 40], 10, weight_init_std=0.05,
                                      use_batchnorm=True, seed=0)
    opt = fastmlp.optimizers.SGD(lr=0.05)
    first = net.loss(x, t, train_flg=True)
    gamma = net.params["gamma1"].copy()
    for i in range(60):
        batch = np.random.default_rng(i).choice(len(x), 50)
        opt.update(net.params, net.gradient(x[batch], t[batch]))
    assert not np.array_equal(gamma, net.params["gamma1"])
    assert net.layers["BatchNorm1"].gamma is net.params["gamma1"]
    assert net.loss(x, t, train_flg=True) < first
    assert net.accuracy(x, t) > 0.6


def test_config_round_trip(rng):
    net = fastmlp.MultiLayerNetExtend(20, [11], 5, use_dropout=True, dropout_ration=0.3,
                                      use_batchnorm=True, dtype=np.float32, seed=1)
    cfg = net.config()
    assert cfg["use_dropout"] and cfg["use_batchnorm"] and cfg["dropout_ration"] == 0.3
    copy = type(net).from_config(cfg, {k: v.copy() for k, v in net.params.items()})
    assert list(copy.layers) == list(net.layers)
    for k in net.params:
        assert_bitwise(copy.params[k], net.params[k])


def test_bad_arguments():
    with pytest.raises(TypeError, match="use_dropout"):
        fastmlp.MultiLayerNetExtend(4, [3], 2, use_dropout="yes")
    with pytest.raises(ValueError, match="dropout_ration"):
        fastmlp.MultiLayerNetExtend(4, [3], 2, dropout_ration=1.5)
    with pytest.raises(TypeError, match="use_batchnorm"):
        fastmlp.MultiLayerNetExtend(4, [3], 2, use_batchnorm=None)
    net = fastmlp.MultiLayerNetExtend(4, [3], 2, use_batchnorm=True, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match="x"):
        net.gradient(np.ones((2, 5)), np.array([0, 1]))
    with pytest.raises(ValueError, match="t"):
        net.gradient(np.ones((2, 4)), np.array([0, 7]))
    assert net.layers["BatchNorm1"].running_mean is None
    for k, v in before.items():
        assert_bitwise(net.params[k], v)
