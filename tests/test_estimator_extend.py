"""``dropout`` and ``batch_norm`` of MLPClassifier/MLPRegressor and ``fastmlp train --dropout
--batchnorm``: the network they build, reproducibility, pickling, parameters, bad input."""
import pickle
import re
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp.cli import main  # noqa: E402

SUMMARY = re.compile(r"^test acc (\d\.\d{4}) \| (\d+) epochs")


@pytest.fixture(scope="module")
def digits():
    return fastmlp.datasets.load_digits()


def _fit(cls, x, t, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(hidden_layer_sizes=(40,), max_iter=15, random_state=0, **kw).fit(x, t)


@pytest.mark.parametrize("kw", [dict(dropout=0.2), dict(batch_norm=True),
                                dict(dropout=0.1, batch_norm=True)])
def test_classifier_builds_the_extended_network(digits, kw):
    (x, t), (xt, tt) = digits
    clf = _fit(fastmlp.MLPClassifier, x, t, **kw)
    net = clf._net
    assert isinstance(net, fastmlp.MultiLayerNetExtend)
    assert net.use_dropout == (kw.get("dropout", 0) > 0)
    assert net.use_batchnorm == kw.get("batch_norm", False)
    assert clf.score(xt, tt) > 0.75   # 15 epochs of a 40-unit net learns the digits
    again = _fit(fastmlp.MLPClassifier, x, t, **kw)   # random_state repeats the run exactly
    np.testing.assert_array_equal(clf.predict_proba(xt), again.predict_proba(xt))
    restored = pickle.loads(pickle.dumps(clf))        # running statistics and stream kept
    np.testing.assert_array_equal(restored.predict_proba(xt), clf.predict_proba(xt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        restored.partial_fit(x, t)
        clf.partial_fit(x, t)
    np.testing.assert_array_equal(restored.predict_proba(xt), clf.predict_proba(xt))


def test_defaults_keep_the_plain_network(digits):
    (x, t), _ = digits
    clf = _fit(fastmlp.MLPClassifier, x, t)
    assert type(clf._net) is fastmlp.MultiLayerNet
    params = clf.get_params()
    assert params["dropout"] == 0.0 and params["batch_norm"] is False


def test_parameters_clone_and_set(digits):
    (x, t), _ = digits
    clf = fastmlp.MLPClassifier(dropout=0.3, batch_norm=True)
    copy = clone(clf)
    assert copy.get_params()["dropout"] == 0.3 and copy.get_params()["batch_norm"] is True
    copy.set_params(dropout=0.0, batch_norm=False)
    assert copy.dropout == 0.0 and not copy.batch_norm
    reg = fastmlp.MLPRegressor(batch_norm=True, dropout=0.1)
    assert clone(reg).get_params()["batch_norm"] is True


def test_regressor_with_batch_norm(digits):
    (x, t), (xt, tt) = digits
    y, yt = (t / 9.0)[:, None] * np.ones((1, 2)), (tt / 9.0)[:, None] * np.ones((1, 2))
    reg = _fit(fastmlp.MLPRegressor, x, y, batch_norm=True, learning_rate_init=0.01)
    assert isinstance(reg._net, fastmlp.MultiLayerNetExtend)
    assert reg.predict(xt).shape == yt.shape
    assert reg.score(xt, yt) > 0.3


def test_bad_values_are_named(digits):
    (x, t), _ = digits
    with pytest.raises(ValueError, match="dropout"):
        fastmlp.MLPClassifier(dropout=1.0).fit(x, t)
    with pytest.raises(TypeError, match="dropout"):
        fastmlp.MLPClassifier(dropout="a lot").fit(x, t)
    with pytest.raises(TypeError, match="batch_norm"):
        fastmlp.MLPClassifier(batch_norm="yes").fit(x, t)
    clf = _fit(fastmlp.MLPClassifier, x, t, dropout=0.2)
    before = {k: v.copy() for k, v in clf._net.params.items()}
    clf.set_params(warm_start=True, dropout=0.3)
    with pytest.raises(ValueError, match="dropout"):
        clf.fit(x, t)
    for k, v in before.items():
        np.testing.assert_array_equal(clf._net.params[k], v)


def test_cli_dropout_batchnorm(capsys):
    assert main(["train", "--epochs", "3", "--hidden", "40", "--dropout", "0.2", "--batchnorm",
                 "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "compiled MultiLayerNetExtend 64-40-10" in out and "dropout 0.2, batch norm" in out
    lines = [m for m in map(SUMMARY.match, out.splitlines()) if m]
    assert len(lines) == 1 and float(lines[0].group(1)) > 0.85 and lines[0].group(2) == "3"


@pytest.mark.parametrize("args, message", [
    (["--dropout", "1"], "ratio"), (["--dropout", "-0.1"], ">= 0"),
    (["--batchnorm", "--save", "model.fmlp"], "--save")])
def test_cli_refuses(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["train", "--epochs", "1", *args])
    except SystemExit as exc:   # argparse's errors
        code = exc.code
    assert code not in (0, None)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "model.fmlp").exists()


@pytest.mark.parametrize("kw", [dict(dropout=0.2), dict(batch_norm=True)])
def test_saving_an_estimator_with_dropout_or_batch_norm_says_so(kw, tmp_path):
    X = np.random.default_rng(0).standard_normal((30, 5))
    est = fastmlp.MLPClassifier(hidden_layer_sizes=(6,), max_iter=2, random_state=0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, np.arange(30) % 3)
    path = tmp_path / "m.fmlp"
    with pytest.raises(TypeError, match="dropout or batch_norm"):
        fastmlp.save(est, path)
    assert not path.exists()
