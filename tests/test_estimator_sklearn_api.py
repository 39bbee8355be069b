"""fastmlp's estimators where a scikit-learn user swaps the import: the same call
signatures, exceptions, attribute semantics (``coefs_``/``intercepts_`` as lists that can be
assigned) and behaviour on divergence and impossible stratified splits, each checked against
sklearn's own MLP doing the same thing."""
import inspect
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as sk
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from fastmlp.estimator import MLPClassifier, MLPRegressor

PAIRS = [(MLPClassifier, sk.MLPClassifier), (MLPRegressor, sk.MLPRegressor)]


def _blobs(n=90, n_classes=3, n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, n)
    return centers[y] + rng.normal(size=(n, n_features)), y


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)   # sklearn's overflow in matmul
        return fn(*args, **kwargs)


def _positional(fn):
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind == p.POSITIONAL_OR_KEYWORD]


# ----------------------------------------------------------------------------- signatures

@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["clf", "reg"])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_positional_parameters_are_sklearns(ours, theirs, method):
    """The positional parameters are sklearn's, in sklearn's order; fastmlp's extras are
    keyword-only."""
    assert _positional(getattr(ours, method)) == _positional(getattr(theirs, method))
    extras = [p for p in inspect.signature(getattr(ours, method)).parameters.values()
              if p.name not in _positional(getattr(theirs, method))]
    assert {p.name for p in extras} >= {"X_val", "y_val", "comm"}
    assert all(p.kind == p.KEYWORD_ONLY for p in extras)


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["clf", "reg"])
def test_positional_third_argument_is_sample_weight(ours, theirs):
    """``fit(X, y, w)`` means sample weights, as in sklearn: the same model as
    ``sample_weight=w`` and, as sklearn's, not the unweighted one."""
    X, y = _blobs()
    w = np.random.default_rng(1).integers(0, 4, len(y)).astype(float)
    kw = dict(hidden_layer_sizes=(6,), max_iter=3, random_state=0)
    for cls in (ours, theirs):
        pos = _quiet(cls(**kw).fit, X, y, w)
        key = _quiet(cls(**kw).fit, X, y, sample_weight=w)
        plain = _quiet(cls(**kw).fit, X, y)
        for a, b in zip(pos.coefs_, key.coefs_):
            np.testing.assert_array_equal(a, b)
        assert not np.array_equal(pos.coefs_[0], plain.coefs_[0]), cls
    with pytest.raises(TypeError):
        ours(**kw).fit(X, y, None, X, y)     # X_val / y_val only by keyword


def test_partial_fit_positional_order_is_sklearns():
    """sklearn >= 1.7: ``partial_fit(X, y, sample_weight, classes)``."""
    X, y = _blobs()
    w = np.ones(len(y))
    for cls in (MLPClassifier, sk.MLPClassifier):
        est = cls(hidden_layer_sizes=(5,), random_state=0).partial_fit(X, y, w, [0, 1, 2])
        assert list(est.classes_) == [0, 1, 2]


# ----------------------------------------------------------------------------- divergence

_DIVERGING = dict(hidden_layer_sizes=100, activation="identity", solver="sgd", alpha=1e-4,
                  learning_rate="constant", learning_rate_init=1, shuffle=True, max_iter=20,
                  n_iter_no_change=10, random_state=0)


def test_divergence_error_is_a_value_error_as_sklearns():
    """Without early stopping a diverging fit raises; sklearn raises ValueError ("non-finite
    parameter weights"), fastmlp a DivergenceError that is a ValueError and a
    FloatingPointError."""
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="non-finite"):
        _quiet(sk.MLPRegressor(**_DIVERGING).fit, X, y)
    with pytest.raises(ValueError, match="diverged") as info:
        _quiet(MLPRegressor(**_DIVERGING).fit, X, y)
    assert isinstance(info.value, fastmlp.DivergenceError)
    assert isinstance(info.value, FloatingPointError)


def test_divergence_with_early_stopping_returns_as_sklearns():
    """sklearn's non-regression test for its issue #29504, on both: fit returns, the last
    validation score is a float NaN and the model predicts finite values (the best
    epoch's parameters: those a fit stopping at that epoch ends with)."""
    X, y = load_iris(return_X_y=True)
    for cls in (sk.MLPRegressor, MLPRegressor):
        est = _quiet(cls(early_stopping=True, **_DIVERGING).fit, X, y)
        assert str(est.validation_scores_[-1]) == str(np.nan)
        assert isinstance(est.validation_scores_[-1], float)
        assert np.isfinite(est.predict(X)).all()
    with pytest.warns(ConvergenceWarning, match="diverged"):
        est = MLPRegressor(early_stopping=True, **_DIVERGING).fit(X, y)
    assert est.stop_training_ and not np.isfinite(est.loss_curve_[-1])
    assert len(est.loss_curve_) == len(est.validation_scores_) == est.n_iter_
    best = int(np.nanargmax(est.validation_scores_)) + 1
    short = _quiet(MLPRegressor(early_stopping=True, **dict(_DIVERGING, max_iter=best)).fit,
                   X, y)
    assert short.best_validation_score_ == est.best_validation_score_
    for a, b in zip(short.coefs_ + short.intercepts_, est.coefs_ + est.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_divergence_in_partial_fit_with_early_stopping_stops():
    X, y = load_iris(return_X_y=True)
    est = MLPRegressor(early_stopping=True, **_DIVERGING)
    for _ in range(20):
        _quiet(est.partial_fit, X, y)
        if est.stop_training_:
            break
    assert est.stop_training_ and np.isnan(est.validation_scores_[-1])
    assert np.isfinite(est.predict(X)).all()
