"""What a newcomer meets first (issue #15): the import from an unbuilt source tree,
``fastmlp.reference`` as an attribute, one-line reprs, pandas and other array-likes."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import reference as R

PACKAGE = Path(fastmlp.__file__).resolve().parent


def _python(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


# ---------------------------------------------------------------- importing


def test_unbuilt_source_tree_says_how_to_build(tmp_path):
    """Python run inside a clone imports its fastmlp/, whose _kernels has no compiled modules."""
    shutil.copytree(PACKAGE, tmp_path / "fastmlp",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    assert not list((tmp_path / "fastmlp").rglob("*.so"))
    proc = _python("import fastmlp", cwd=tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: "), proc.stderr
    assert str(tmp_path / "fastmlp") in last
    assert "no compiled modules" in last and "another directory" in last
    assert "python setup.py build_ext --inplace" in last and "pip install -e ." in last


def test_reference_is_an_attribute_and_loaded_lazily(tmp_path):
    code = ("import sys, fastmlp\n"
            "assert 'fastmlp.reference' not in sys.modules, 'imported eagerly'\n"
            "import fastmlp.reference as R\n"
            "assert fastmlp.reference is R and fastmlp.reference.TwoLayerNet is R.TwoLayerNet\n")
    proc = _python(code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _python("import fastmlp; print(fastmlp.reference.MultiLayerNet.__module__)", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fastmlp.reference.networks"
    with pytest.raises(AttributeError, match="no attribute 'referenc'"):
        fastmlp.referenc  # noqa: B018


# ---------------------------------------------------------------- reprs


@pytest.mark.parametrize("module", [fastmlp, R], ids=["compiled", "reference"])
def test_network_and_layer_reprs(module):
    net = module.MultiLayerNet(784, [100], 10, dtype=np.float32, seed=0)
    assert repr(net) == "MultiLayerNet(784-100-10, relu, float32)"
    net = module.MultiLayerNet(8, [5, 4], 3, activation="tanh", weight_decay_lambda=1e-4,
                               loss="mse", seed=0)
    assert repr(net) == ("MultiLayerNet(8-5-4-3, tanh, float64, weight_decay_lambda=0.0001, "
                         "loss='mse')")
    assert repr(module.TwoLayerNet(64, 50, 10, seed=0)) == "TwoLayerNet(64-50-10, relu, float64)"
    ext = module.MultiLayerNetExtend(6, [4], 3, use_dropout=True, dropout_ration=0.2,
                                     use_batchnorm=True, dtype=np.float32, seed=0)
    assert repr(ext) == ("MultiLayerNetExtend(6-4-3, relu, float32, use_dropout=True, "
                         "dropout_ration=0.2, use_batchnorm=True)")
    assert [repr(layer) for layer in ext.layers.values()] == [
        "Affine(6→4, float32)", "BatchNormalization(4, momentum=0.9, float32)", "Relu()",
        "Dropout(dropout_ratio=0.2)", "Affine(4→3, float32)"]
    layers = module.layers
    for name in ("MulLayer", "AddLayer", "Relu", "Sigmoid", "Tanh", "Identity",
                 "SoftmaxWithLoss", "MSELoss"):
        assert repr(getattr(layers, name)()) == f"{name}()"


def test_repr_of_a_mutated_network_does_not_raise():
    net = fastmlp.MultiLayerNet(6, [4], 3, seed=0)
    net.dtype = "not a dtype"
    assert repr(net) == "MultiLayerNet(6-4-3, relu, ?)"
    del net.hidden_size_list
    assert repr(net) == "MultiLayerNet(?)"


@pytest.mark.parametrize("module", [fastmlp.optimizers, R.optimizers], ids=["compiled", "reference"])
def test_optimizer_reprs(module):
    assert repr(module.SGD(lr=0.1)) == "SGD(lr=0.1)"
    assert repr(module.Momentum(lr=0.01, momentum=0.8)) == "Momentum(lr=0.01, momentum=0.8)"
    assert repr(module.Nesterov()) == "Nesterov(lr=0.01, momentum=0.9, variant='book')"
    assert repr(module.AdaGrad(lr=0.05)) == "AdaGrad(lr=0.05)"
    assert repr(module.RMSprop(lr=0.002, decay_rate=0.9)) == "RMSprop(lr=0.002, decay_rate=0.9)"
    assert repr(module.Adam(lr=0.002, beta1=0.8, beta2=0.99, eps=1e-6)) == \
        "Adam(lr=0.002, beta1=0.8, beta2=0.99, eps=1e-06)"


def test_trainer_repr():
    (x, t), (xt, tt) = fastmlp.datasets.load_digits()
    net = fastmlp.MultiLayerNet(64, [20], 10, seed=0)
    trainer = fastmlp.Trainer(net, x, t, xt, tt, epochs=3, mini_batch_size=32, optimizer="adam",
                              optimizer_param={"lr": 0.002}, lr_decay=0.9, seed=0, verbose=False)
    expected = ("Trainer(network=MultiLayerNet(64-20-10, relu, float64), optimizer=Adam(lr=0.002, "
                "beta1=0.9, beta2=0.999, eps={eps}), epochs=3, batch_size=32, lr_decay=0.9)")
    eps = f"{trainer.optimizer.eps:.6g}"
    assert repr(trainer) == expected.format(eps=eps)
    assert len(repr(trainer)) < 200   # no arrays
    trainer = fastmlp.Trainer(net, x, t, xt, tt, epochs=1, mini_batch_size=32, sampling="epoch",
                              seed=0, verbose=False)
    trainer.train()
    assert repr(trainer) == ("Trainer(network=MultiLayerNet(64-20-10, relu, float64), "
                             "optimizer=SGD(lr=0.01), epochs=1, batch_size=32, sampling='epoch', "
                             "current_epoch=1)")


# ---------------------------------------------------------------- array-likes


def _digits(n=200):
    (x, t), (xt, tt) = fastmlp.datasets.load_digits()
    return x[:n], t[:n], xt[:n], tt[:n]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_networks_take_pandas_like_numpy(dtype):
    pd = pytest.importorskip("pandas")
    x, t, _, _ = _digits(50)
    x = x.astype(dtype)
    df, series = pd.DataFrame(x), pd.Series(t)
    for module in (fastmlp, R):
        net = module.MultiLayerNet(64, [16], 10, dtype=dtype, seed=0)
        np.testing.assert_array_equal(net.predict(df), net.predict(x), strict=True)
        assert net.loss(df, series) == net.loss(x, t)
        assert net.accuracy(df, series) == net.accuracy(x, t)
        g_df, g_np = net.gradient(df, series), net.gradient(x, t)
        for key in g_np:
            np.testing.assert_array_equal(g_df[key], g_np[key], strict=True)
    ref = R.MultiLayerNet(64, [16], 10, dtype=dtype, seed=0)   # the oracle, on numpy input
    np.testing.assert_allclose(fastmlp.MultiLayerNet(64, [16], 10, dtype=dtype, seed=0).predict(df),
                               ref.predict(x), rtol=1e-4 if dtype == np.float32 else 1e-9,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_trainer_takes_pandas_like_numpy():
    pd = pytest.importorskip("pandas")
    x, t, xt, tt = _digits()
    runs = []
    for data in ((x, t, xt, tt), (pd.DataFrame(x), pd.Series(t), pd.DataFrame(xt), pd.Series(tt))):
        net = fastmlp.MultiLayerNet(64, [16], 10, seed=0)
        trainer = fastmlp.Trainer(net, *data, epochs=2, mini_batch_size=20, optimizer="sgd",
                                  optimizer_param={"lr": 0.1}, seed=0, verbose=False)
        runs.append((trainer.train(), trainer.train_loss_list, dict(net.params)))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    for key in runs[0][2]:
        np.testing.assert_array_equal(runs[1][2][key], runs[0][2][key], strict=True)


def test_bad_array_likes_are_named():
    pd = pytest.importorskip("pandas")
    net = fastmlp.MultiLayerNet(2, [3], 2, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    cases = [
        (pd.DataFrame({"a": ["x", "y"], "b": ["z", "w"]}), TypeError, r"x must have a real numeric dtype, got object \(from DataFrame\)"),
        ([[1.0, 2.0], [3.0]], ValueError, "x must be a rectangular array"),
        ("1,2", TypeError, "x must be an array of numbers, got str"),
        (None, TypeError, r"x must have a real numeric dtype, got object \(from NoneType\)"),
        (np.ones((2, 2), dtype=complex), TypeError, "x must have a real numeric dtype, got complex128"),
        (np.array([["a", "b"]]), TypeError, "x must have a real numeric dtype, got <U1"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            net.predict(bad)
        with pytest.raises(error, match=message.replace("x must", "x_train must")):
            fastmlp.Trainer(net, bad, [0, 1], [[0.0, 1.0]], [1], epochs=1, mini_batch_size=1,
                            verbose=False)
    with pytest.raises(TypeError, match=r"t must have a real numeric dtype, got object \(from Series\)"):
        net.loss([[0.0, 1.0]], pd.Series(["cat"]))
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, before[k], strict=True)
