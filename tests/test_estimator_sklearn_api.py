"""fastmlp's estimators where a scikit-learn user swaps the import: the same call
signatures, exceptions, attribute semantics (``coefs_``/``intercepts_`` as lists that can be
assigned) and behaviour on divergence and impossible stratified splits, each checked against
sklearn's own MLP doing the same thing."""
import inspect
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ----------------------------------------------------------------------------- coefs_ / intercepts_

def _close(a, b):
    """TESTING.md's float64 fallback tolerance."""
    scale = max(1.0, float(np.max(np.abs(b))))
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * scale)


def _sgd_pair(ours, theirs):
    kw = dict(hidden_layer_sizes=(6, 5), solver="sgd", momentum=0.0, learning_rate_init=0.01,
              batch_size=16, shuffle=False, max_iter=2, tol=0.0, random_state=0)
    return ours(**kw), theirs(**kw)


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["clf", "reg"])
def test_assigning_coefs_and_intercepts_as_sklearn(ours, theirs):
    """The same edits on both: the whole lists replaced by sklearn's, one item replaced,
    then a warm-started fit (plain SGD, no shuffling): fastmlp's predictions and parameters
    follow sklearn's."""
    X, y = _blobs(80)
    if theirs is sk.MLPRegressor:
        y = X @ np.arange(1.0, 5.0) / 10
    a, b = _sgd_pair(ours, theirs)
    _quiet(a.fit, X, y)
    _quiet(b.fit, X, y)
    a.coefs_ = list(b.coefs_)                      # the attribute
    for i, v in enumerate(b.intercepts_):
        a.intercepts_[i] = v                       # item by item
    predict = "predict_proba" if hasattr(b, "predict_proba") else "predict"
    _close(getattr(a, predict)(X), getattr(b, predict)(X))
    W = np.random.default_rng(3).normal(size=b.coefs_[1].shape)
    for est in (a, b):
        est.coefs_[1] = W.copy()
        est.intercepts_[-1] = np.zeros_like(b.intercepts_[-1])
    _close(getattr(a, predict)(X), getattr(b, predict)(X))
    for est in (a, b):
        est.set_params(warm_start=True)
        _quiet(est.fit, X, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        _close(p, q)
    _close(getattr(a, predict)(X), getattr(b, predict)(X))


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(hidden=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       n_features=st.integers(1, 4), n_outputs=st.integers(1, 3), seed=st.integers(0, 2**16),
       by_item=st.booleans())
def test_assigned_layers_predict_as_sklearn(hidden, n_features, n_outputs, seed, by_item):
    """Any architecture: the same new layers given to both (whole lists or item by item)
    give sklearn's predictions."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(12, n_features))
    y = rng.normal(size=(12, n_outputs)) if n_outputs > 1 else rng.normal(size=12)
    kw = dict(hidden_layer_sizes=hidden, max_iter=1, random_state=0)
    ours, theirs = (_quiet(cls(**kw).fit, X, y) for cls in (MLPRegressor, sk.MLPRegressor))
    coefs = [rng.normal(size=c.shape) for c in theirs.coefs_]
    intercepts = [rng.normal(size=b.shape) for b in theirs.intercepts_]
    for est in (ours, theirs):
        if by_item:
            for i, (W, b) in enumerate(zip(coefs, intercepts)):
                est.coefs_[i], est.intercepts_[i] = W.copy(), b.copy()
        else:
            est.coefs_, est.intercepts_ = [W.copy() for W in coefs], [b.copy() for b in intercepts]
    _close(ours.predict(X), theirs.predict(X))


def test_bad_coefs_change_nothing():
    X, y = _blobs(60)
    est = _quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit, X, y)
    before = [p.copy() for p in est.coefs_ + est.intercepts_]
    good = [c.copy() for c in est.coefs_]
    cases = [
        (lambda: est.coefs_.__setitem__(0, np.ones((3, 5))), ValueError, r"coefs_\[0\].*shape"),
        (lambda: est.intercepts_.__setitem__(-1, np.ones(4)), ValueError,
         r"intercepts_\[1\].*shape"),
        (lambda: est.coefs_.__setitem__(1, np.full((5, 3), "a")), TypeError, r"coefs_\[1\]"),
        (lambda: est.coefs_.__setitem__(1, np.ones((5, 3), complex)), TypeError, r"coefs_\[1\]"),
        (lambda: est.coefs_.__setitem__(0, np.full((4, 5), np.nan)), ValueError,
         r"coefs_\[0\].*NaN"),
        (lambda: est.coefs_.__setitem__(2, good[0]), IndexError, "coefs_"),
        (lambda: setattr(est, "coefs_", good[:1]), ValueError, "coefs_ must hold 2"),
        (lambda: setattr(est, "coefs_", [good[0], np.ones((5, 2))]), ValueError,
         r"coefs_\[1\]"),
        (lambda: setattr(est, "intercepts_", np.ones(5)), TypeError, "intercepts_"),
        (lambda: est.coefs_.append(good[0]), TypeError, "coefs_"),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()
        for p, q in zip(est.coefs_ + est.intercepts_, before):
            np.testing.assert_array_equal(p, q)
    with pytest.raises(AttributeError, match="fitted"):
        MLPClassifier().coefs_ = good


def test_coefs_copies_are_plain_lists_and_float32_casts():
    import copy
    import pickle
    X, y = _blobs(60)
    est = _quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0,
                               dtype=np.float32).fit, X, y)
    for dup in (copy.deepcopy(est.coefs_), pickle.loads(pickle.dumps(est.coefs_))):
        assert type(dup) is list
        dup[0][...] = 0
        assert est.coefs_[0].any()
    W = np.random.default_rng(0).normal(size=(4, 5))   # float64 into a float32 model
    est.coefs_[0] = W
    np.testing.assert_array_equal(est.coefs_[0], W.astype(np.float32))
    assert est.coefs_[0].dtype == np.float32


def test_assigning_coefs_from_themselves_reversed():
    """The new arrays may be the network's own (a plain list would swap them)."""
    X = np.random.default_rng(0).normal(size=(30, 4))
    est = _quiet(MLPRegressor(hidden_layer_sizes=(4, 4), max_iter=2, random_state=0).fit,
                 X, X[:, ::-1])
    old = [c.copy() for c in est.coefs_]
    est.coefs_ = est.coefs_[::-1]
    for new, expected in zip(est.coefs_, old[::-1]):
        np.testing.assert_array_equal(new, expected)


# ----------------------------------------------------------------------------- the validation split

def test_unstratifiable_early_stopping_split_as_sklearn():
    """Two classes, one with a single member: sklearn's stratified split raises its "least
    populated class" ValueError, and so does fastmlp's (naming the class); with three
    classes sklearn does not stratify and both fit."""
    X = np.random.default_rng(0).normal(size=(40, 3))
    binary = np.array(["a"] * 39 + ["b"])
    three = np.array(["a"] * 20 + ["c"] * 19 + ["b"])
    kw = dict(early_stopping=True, max_iter=3, random_state=0)
    for cls in (sk.MLPClassifier, MLPClassifier):
        with pytest.raises(ValueError, match="least populated class"):
            _quiet(cls(**kw).fit, X, binary)
        with pytest.raises(ValueError):    # a validation set of 1 sample cannot hold 2 classes
            _quiet(cls(**kw).fit, X[:10], np.arange(10) % 2)
        _quiet(cls(**kw).fit, X, three)
    with pytest.raises(ValueError, match=r"\['b'\].*X_val"):
        MLPClassifier(**kw).fit(X, binary)
    _quiet(MLPClassifier(**kw).fit, X, binary, X_val=X[:5], y_val=binary[-5:])


# ----------------------------------------------------------------------------- optimizer state

@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["clf", "reg"])
def test_which_calls_keep_the_optimizer_state(ours, theirs):
    """README's claim: sklearn's partial_fit keeps its optimizer (Adam's step count grows),
    its warm-started fit starts a new one; fastmlp keeps it in both."""
    X, y = _blobs(60)
    kw = dict(hidden_layer_sizes=(5,), max_iter=2, random_state=0, warm_start=True)
    steps = {}
    for cls, count in ((theirs, lambda opt: opt.t), (ours, lambda opt: opt.iter)):
        est = _quiet(cls(**kw).fit, X, y)
        opt, after_fit = est._optimizer, count(est._optimizer)
        _quiet(est.partial_fit, X, y)
        assert est._optimizer is opt and count(opt) > after_fit
        after_partial = count(opt)
        _quiet(est.fit, X, y)
        steps[cls] = (est._optimizer is opt, count(est._optimizer) > after_partial)
    assert steps[theirs] == (False, False)
    assert steps[ours] == (True, True)


# ----------------------------------------------------------------------------- messages

def test_error_messages_as_sklearns():
    """The same call fails with the same exception and wording on both."""
    X, y = _blobs(60)
    cases = [
        (lambda cls: cls().fit(X, None), "This MLPClassifier estimator requires y to be passed"),
        (lambda cls: cls().partial_fit(X, y), "classes must be passed on the first call"),
        (lambda cls: cls(max_iter=2).partial_fit(X, y, classes=[0, 1, 2]).partial_fit(X, y + 5),
         r"`y` has classes not in `self.classes_`. `self.classes_` has \[0 1 2\]. "
         r"'y' has \[5 6 7\]"),
        (lambda cls: cls().partial_fit(X, y, classes=[0, 1, 2]).partial_fit(
            X, y, classes=[0, 1, 2, 3]), "is not the same as on last call to partial_fit"),
        (lambda cls: cls(max_iter=2, warm_start=True).fit(X, y).fit(X, y + 5),
         "warm_start can only be used where `y` has the same classes"),
        (lambda cls: cls(hidden_layer_sizes=(0,)).fit(X, y), r"hidden_layer_sizes must be > 0"),
        (lambda cls: cls(max_iter=1).predict(X), "This MLPClassifier instance is not fitted"),
    ]
    for call, match in cases:
        for cls in (sk.MLPClassifier, MLPClassifier):
            with pytest.raises(ValueError, match=match):
                _quiet(call, cls)
