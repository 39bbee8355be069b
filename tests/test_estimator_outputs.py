"""MLPClassifier on binary and multilabel targets (logistic outputs) and
MLPRegressor(loss='poisson') (exp output): the fitted model equals scikit-learn's from the
same initial weights (sgd and adam, float64), predictions have sklearn's shapes and
types, bad targets are refused before anything changes, fastmlp.save/load and pickle
round-trip bit for bit (their data-parallel fit: tests/test_distributed_estimator.py)."""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _problem(kind, n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    if kind == "binary":
        y = np.where(X[:, 0] + 0.5 * rng.standard_normal(n) > 0, "yes", "no")
    elif kind == "multilabel":
        y = (X[:, :3] + 0.5 * rng.standard_normal((n, 3)) > 0).astype(int)
    elif kind == "poisson":
        y = rng.poisson(np.exp(0.5 * X[:, 0])).astype(float)
    else:   # poisson with two outputs
        y = rng.poisson(np.exp(0.4 * X[:, :2])).astype(float)
    return X, y


def _same_start(kind, params, X, y, sample_weight=None):
    """(sklearn's fit, fastmlp's fit) from sklearn's initial weights."""
    regressor = kind.startswith("poisson")
    extra = {"loss": "poisson"} if regressor else {}
    theirs = (sk.MLPRegressor if regressor else sk.MLPClassifier)(**params, **extra)
    drawn = []
    init_coef = theirs._init_coef

    def record(fan_in, fan_out, dtype):   # sklearn's draw, kept for fastmlp
        W, b = init_coef(fan_in, fan_out, dtype)
        drawn.append((W.copy(), b.copy()))
        return W, b

    theirs._init_coef = record
    _quiet(theirs.fit, X, y, sample_weight=sample_weight)
    ours = (MLPRegressor if regressor else MLPClassifier)(**params, **extra)
    build = ours._build_network

    def from_sklearn(*args, **kwargs):
        net = build(*args, **kwargs)
        for i, (W, b) in enumerate(drawn, start=1):
            net.params[f"W{i}"][...] = W
            net.params[f"b{i}"][...] = b
        return net

    ours._build_network = from_sklearn
    _quiet(ours.fit, X, y, sample_weight=sample_weight)
    del ours._build_network
    return theirs, ours


def _close(a, b, rtol=1e-12):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    scale = max(float(np.abs(b).max()), 1e-300)
    assert float(np.abs(a - b).max()) <= rtol * scale, float(np.abs(a - b).max()) / scale


KINDS = ["binary", "multilabel", "poisson", "poisson2"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_fit_equals_sklearn_from_same_start(kind, solver, weighted):
    """Same initial weights, same batches (shuffle=False): parameters, losses and fitted
    attributes equal sklearn's to 1e-12 (relative to their scale) after the steps of two
    epochs (weighted: one batch per epoch, since sklearn weighs the epoch loss by batch
    size and fastmlp by batch weight)."""
    X, y = _problem(kind)
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(X)) if weighted else None
    params = dict(hidden_layer_sizes=(6, 4), solver=solver, alpha=0.01, max_iter=2,
                  batch_size=len(X) if weighted else 16, shuffle=False, random_state=0,
                  learning_rate_init=0.05 if solver == "sgd" else 0.01, tol=0)
    theirs, ours = _same_start(kind, params, X, y, w)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == np.float64
        _close(a, b)
    _close(ours.loss_curve_, theirs.loss_curve_)
    _close(ours.loss_, theirs.loss_)
    for attr in ("n_outputs_", "out_activation_", "n_layers_", "n_iter_", "t_",
                 "n_features_in_"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    if kind in ("binary", "multilabel"):
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
        _close(ours.predict_proba(X), theirs.predict_proba(X))
    else:
        _close(ours.predict(X), theirs.predict(X))
    assert type(ours.predict(X)) is type(theirs.predict(X))
    assert ours.predict(X).dtype == theirs.predict(X).dtype


def test_output_shapes_are_sklearns():
    """Binary: one logistic unit, probabilities [1 - p, p]; one class: logistic too;
    more classes: softmax; multilabel: the indicator matrix."""
    X, y = _problem("binary")
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit, X, y)
    assert clf.coefs_[-1].shape == (5, 1) and clf.n_outputs_ == 1
    assert clf.out_activation_ == "logistic" and list(clf.classes_) == ["no", "yes"]
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    one = _quiet(MLPClassifier(hidden_layer_sizes=(3,), max_iter=5, random_state=0).fit,
                 X, np.full(len(X), 7))
    assert one.out_activation_ == "logistic" and (one.predict(X) == 7).all()
    three = _quiet(MLPClassifier(hidden_layer_sizes=(3,), max_iter=5, random_state=0).fit,
                   X, np.arange(len(X)) % 3)
    assert three.out_activation_ == "softmax" and three.n_outputs_ == 3
    X, Y = _problem("multilabel")
    ml = _quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit, X, Y)
    assert ml.n_outputs_ == 3 and list(ml.classes_) == [0, 1, 2]
    pred = ml.predict(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (ml.predict_proba(X) > 0.5).astype(int))


@pytest.mark.parametrize("kind", ["binary", "multilabel", "poisson2"])
def test_validation_scores_with_new_outputs(kind):
    """Early stopping on a split and a given validation set: finite scores and losses; the
    validation loss of an untrained-on set equals the loss_curve_ data term's formula."""
    X, y = _problem(kind, n=80)
    cls = MLPRegressor if kind.startswith("poisson") else MLPClassifier
    extra = {"loss": "poisson"} if kind.startswith("poisson") else {}
    est = _quiet(cls(hidden_layer_sizes=(6,), early_stopping=True, max_iter=8,
                     random_state=0, **extra).fit, X, y)
    assert len(est.validation_scores_) == est.n_iter_
    assert np.isfinite(est.validation_loss_curve_).all()
    # the given-set loss at alpha=0 and a vanishing step is the training objective
    kw = dict(hidden_layer_sizes=(6,), alpha=0.0, learning_rate_init=1e-14, batch_size=80,
              max_iter=1, shuffle=False, random_state=0)
    est = _quiet(cls(**kw, **extra).fit, X, y, X_val=X, y_val=y)
    _close(est.validation_loss_curve_[0], est.loss_curve_[0], rtol=1e-9)


def test_poisson_targets_must_be_non_negative():
    X, y = _problem("poisson")
    reg = _quiet(MLPRegressor(loss="poisson", hidden_layer_sizes=(4,), max_iter=3,
                              random_state=0).fit, X, y)
    before = [a.copy() for a in reg.coefs_]
    with pytest.raises(ValueError, match="Some value.*of y are negative"):
        reg.fit(X, y - 1)
    with pytest.raises(ValueError, match="y_val"):
        reg.fit(X, y, X_val=X, y_val=-y)
    for a, b in zip(before, reg.coefs_):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="loss must be one of"):
        MLPRegressor(loss="gamma").fit(X, y)
    reg.set_params(warm_start=True, loss="squared_error")
    with pytest.raises(ValueError, match="same loss"):
        reg.fit(X, y)


def test_multilabel_continuation_checks():
    X, Y = _problem("multilabel")
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit, X, Y)
    with pytest.raises(ValueError, match="multilabel"):
        clf.partial_fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="multi-output"):
        MLPClassifier().fit(X, np.column_stack([Y[:, 0], Y[:, 1] * 2]))
    clf.partial_fit(X, Y)   # keeps going on the same labels
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_and_pickle_round_trip(kind, tmp_path):
    """fastmlp.save/load and pickle give the same model bit for bit, which trains on
    exactly as the original."""
    X, y = _problem(kind)
    cls = MLPRegressor if kind.startswith("poisson") else MLPClassifier
    extra = {"loss": "poisson"} if kind.startswith("poisson") else {}
    est = _quiet(cls(hidden_layer_sizes=(5,), max_iter=3, random_state=0, **extra).fit, X, y)
    path = tmp_path / "model.fastmlp"
    fastmlp.save(est, path)
    for copy in (fastmlp.load(path), pickle.loads(pickle.dumps(est))):
        assert type(copy) is cls
        for a, b in zip(copy.coefs_ + copy.intercepts_, est.coefs_ + est.intercepts_):
            np.testing.assert_array_equal(a, b)
        for attr in ("n_outputs_", "out_activation_", "n_layers_", "loss_curve_", "t_"):
            assert getattr(copy, attr) == getattr(est, attr), attr
        if cls is MLPClassifier:
            np.testing.assert_array_equal(copy.classes_, est.classes_)
            np.testing.assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
        np.testing.assert_array_equal(copy.predict(X), est.predict(X))
        assert copy._net.loss_name == est._net.loss_name
    a = _quiet(fastmlp.load(path).partial_fit, X, y)
    b = _quiet(pickle.loads(pickle.dumps(est)).partial_fit, X, y)
    _quiet(est.partial_fit, X, y)
    for copy in (a, b):
        for p, q in zip(copy.coefs_, est.coefs_):
            np.testing.assert_array_equal(p, q)


def test_load_refuses_a_mismatched_output(tmp_path):
    """A file whose out_activation_ does not match its network's loss is refused (the file
    rewritten with valid checksums, so the check behind them is the one that refuses it)."""
    import json
    from _model_files import rewrite
    X, y = _problem("binary")
    est = _quiet(MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit, X, y)
    path = tmp_path / "m.fastmlp"
    fastmlp.save(est, path)

    def to_softmax(header):
        text = json.dumps(header)
        assert '"out_activation_": "logistic"' in text
        header.update(json.loads(text.replace('"out_activation_": "logistic"',
                                              '"out_activation_": "softmax"')))

    bad = rewrite(path, tmp_path / "bad.fastmlp", to_softmax)
    with pytest.raises(ValueError, match="out_activation_"):
        fastmlp.load(bad)
    fastmlp.load(rewrite(path, tmp_path / "same.fastmlp"))   # the rewrite alone is accepted


def test_binary_with_dropout_and_batch_norm():
    """The extended network takes the logistic output too (its fused path), and pickles."""
    X, y = _problem("binary", n=60)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(8,), dropout=0.1, batch_norm=True,
                               max_iter=20, random_state=0, learning_rate_init=0.01).fit, X, y)
    assert clf.out_activation_ == "logistic" and clf.coefs_[-1].shape == (8, 1)
    assert clf._net._fused_extend.plan(clf._net) is not None
    assert clf.score(X, y) > 0.7
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("solver, other", [("lbfgs", "adam"), ("adam", "sgd")])
def test_load_refuses_an_optimizer_record_of_another_solver(tmp_path, solver, other):
    """The optimizer record must be the one the saved solver trains with: an Adam state under
    solver='lbfgs' (which keeps none), or a plain SGD record under 'adam', is refused."""
    import json
    from _model_files import read, rewrite
    X, y = _problem("binary")
    path = tmp_path / "m.fastmlp"
    kw = dict(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
    fastmlp.save(_quiet(MLPClassifier(solver=other, momentum=0, **kw).fit, X, y), path)
    header = read(path)[0]
    assert f'"optimizer_key": ["{other}"' in json.dumps(header)

    def relabel(h):
        text = json.dumps(h).replace(f'"optimizer_key": ["{other}"', f'"optimizer_key": ["{solver}"')
        h.update(json.loads(text.replace(f'"solver": "{other}"', f'"solver": "{solver}"')))

    with pytest.raises(ValueError, match="optimizer record"):
        fastmlp.load(rewrite(path, tmp_path / "bad.fastmlp", relabel))
