"""solver='lbfgs' against scikit-learn's: the same trajectory from the same initial weights,
the same stopping (max_iter, max_fun), warnings, errors and missing partial_fit; sklearn's
configurations passed through get_params; sparse X fitting as its dense twin."""
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
scipy_sparse = pytest.importorskip("scipy.sparse")

from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from threadpoolctl import threadpool_limits

from fastmlp.estimator import MLPClassifier, MLPRegressor


def _blobs(n=120, n_classes=3, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, n)
    return centers[y] + rng.normal(size=(n, n_features)), y


def _regression(n=120, seed=0):
    X, _ = _blobs(n, seed=seed)
    return X, np.column_stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2] / 4])


def _fit_both(sk, ours, X, y, scale=1.0):
    """Fit ``ours``, then ``sk`` from ``ours``' initial weights times ``scale`` (sklearn's
    ``_init_coef`` is handed them in order); returns the warnings each fit gave."""
    build, initial = ours._build_network, []

    def build_and_keep(*args, **kwargs):
        net = build(*args, **kwargs)
        initial.extend(net.params[f"{k}{i}"].copy()
                       for i in range(1, net.hidden_layer_num + 2) for k in "Wb")
        return net

    ours._build_network = build_and_keep
    caught = []
    with threadpool_limits(1), warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ours.fit(X, y)
        caught.append([w for w in rec if w.category is ConvergenceWarning])
        rec.clear()
        arrays = iter(initial)
        sk._init_coef = lambda fan_in, fan_out, dtype: ((next(arrays) * scale).astype(dtype),
                                                        (next(arrays) * scale).astype(dtype))
        sk.fit(X, y)
        caught.append([w for w in rec if w.category is ConvergenceWarning])
    del ours._build_network
    return caught


def _max_diff(sk, ours):
    return max(float(np.max(np.abs(a - b)))
               for a, b in zip(sk.coefs_ + sk.intercepts_, ours.coefs_ + ours.intercepts_))


CASES = [
    (SkClassifier, MLPClassifier, _blobs, dict(hidden_layer_sizes=(7,), alpha=1e-2)),
    (SkClassifier, MLPClassifier, _blobs, dict(hidden_layer_sizes=(6, 5), activation="tanh")),
    (SkRegressor, MLPRegressor, _regression, dict(hidden_layer_sizes=(7,), activation="logistic")),
    (SkRegressor, MLPRegressor, _regression, dict(hidden_layer_sizes=(8,), alpha=0.3)),
]


@pytest.mark.parametrize("sk_cls, our_cls, data, kw", CASES)
def test_short_trajectory_is_sklearns(sk_cls, our_cls, data, kw):
    """Five L-BFGS-B iterations from the same weights: the same parameters to 1e-10.

    Both sides evaluate the same objective and gradient, differing only by rounding (~1e-16
    relative; measured parameter differences after 5 iterations ~1e-15). L-BFGS-B amplifies
    such differences every iteration (its curvature pairs divide by s.y), so a trajectory is
    only comparable this tightly over a few iterations; the converged test covers the rest."""
    X, y = data()
    kw = dict(kw, solver="lbfgs", max_iter=5, random_state=0)
    sk, ours = sk_cls(**kw), our_cls(**kw)
    _fit_both(sk, ours, X, y)
    assert ours.n_iter_ == sk.n_iter_ == 5
    np.testing.assert_allclose(ours.loss_, sk.loss_, rtol=1e-12)
    assert _max_diff(sk, ours) <= 1e-10
    assert ours.t_ == sk.t_ == 0
    assert len(ours.loss_curve_) == 5 and ours.loss_curve_[-1] == ours.loss_


@pytest.mark.parametrize("sk_cls, our_cls, data, kw", CASES)
def test_whole_fit_within_scipys_own_spread(sk_cls, our_cls, data, kw):
    """A whole fit (max_iter=200): fastmlp's parameters and loss_ are as close to sklearn's
    as sklearn's own are to a second sklearn fit whose initial weights are moved by one ulp
    (x * (1 + 2**-52)): the spread scipy's L-BFGS-B itself gives to rounding-level changes.
    (On these non-convex fits that spread grows from ~1e-16 to ~1e-1 in parameters over a
    few hundred iterations; measured, fastmlp's gap is 0.5x-2x sklearn's own, here allowed
    up to 10x.) The two fits that converge early (status 0) must stop at the same iteration."""
    X, y = data()
    kw = dict(kw, solver="lbfgs", max_iter=200, random_state=0)
    sk, ours, moved = sk_cls(**kw), our_cls(**kw), sk_cls(**kw)
    _fit_both(sk, ours, X, y)
    _fit_both(moved, our_cls(**kw), X, y, scale=1 + 2.0 ** -52)
    own_loss_gap, own_param_gap = abs(moved.loss_ - sk.loss_), _max_diff(sk, moved)
    assert abs(ours.loss_ - sk.loss_) <= 10 * own_loss_gap + 1e-12 * max(1.0, sk.loss_)
    assert _max_diff(sk, ours) <= 10 * own_param_gap + 1e-12
    if sk.n_iter_ < 200:
        assert ours.n_iter_ == sk.n_iter_


@pytest.mark.parametrize("limit", [dict(max_iter=3), dict(max_fun=4)])
def test_max_iter_and_max_fun_stop_as_sklearn(limit):
    """Each limit stops both at the same iteration, with sklearn's ConvergenceWarning text."""
    X, y = _blobs()
    kw = dict(solver="lbfgs", hidden_layer_sizes=(5,), random_state=0, **limit)
    sk, ours = SkClassifier(**kw), MLPClassifier(**kw)
    ours_warned, sk_warned = _fit_both(sk, ours, X, y)
    assert ours.n_iter_ == sk.n_iter_
    assert ours.n_iter_ == limit.get("max_iter", ours.n_iter_) and ours.n_iter_ < 10
    assert [str(w.message) for w in ours_warned] == [str(w.message) for w in sk_warned]
    assert len(ours_warned) == 1


@pytest.mark.parametrize("bad", [0, -3, 1.5, "100", None])
def test_bad_max_fun_raises_sklearns_error_type(bad):
    """A value sklearn rejects is rejected before anything changes; sklearn's
    InvalidParameterError is both a ValueError and a TypeError, fastmlp raises ValueError for
    a value out of range and TypeError for a non-integer, so ``except`` on fastmlp's class
    catches sklearn's too."""
    X, y = _blobs(30)
    with pytest.raises(Exception) as sk_exc:
        SkClassifier(solver="lbfgs", max_fun=bad).fit(X, y)
    model = MLPClassifier(solver="lbfgs", max_fun=bad)
    with pytest.raises((ValueError, TypeError), match="max_fun") as ours:
        model.fit(X, y)
    assert isinstance(sk_exc.value, type(ours.value))
    assert not hasattr(model, "coefs_")


def test_partial_fit_unavailable_as_in_sklearn():
    """As sklearn's MLPClassifier: no partial_fit attribute with 'lbfgs', the same
    AttributeError. sklearn 1.9's MLPRegressor tests ``est._check_solver`` without calling
    it, so its partial_fit exists and runs a whole L-BFGS fit; fastmlp's regressor behaves
    as the classifier."""
    sk = SkClassifier(solver="lbfgs")
    with pytest.raises(AttributeError) as sk_exc:
        sk.partial_fit  # noqa: B018
    for our_cls in (MLPClassifier, MLPRegressor):
        ours = our_cls(solver="lbfgs")
        assert not hasattr(ours, "partial_fit")
        with pytest.raises(AttributeError) as our_exc:
            ours.partial_fit  # noqa: B018
        assert str(our_exc.value) == str(sk_exc.value).replace("MLPClassifier", our_cls.__name__)
        assert str(our_exc.value.__cause__) == str(sk_exc.value.__cause__)
        assert "lbfgs is not stochastic" in str(our_exc.value.__cause__)
        assert hasattr(our_cls(solver="sgd"), "partial_fit")


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_float32_computes_in_float32(Est):
    """float32 X: the model stays float32 and its fit is the float64 fit to float32 rounding
    (both converge; the objective agrees to float32's 1e-5)."""
    X, y = _blobs() if Est is MLPClassifier else _regression()
    kw = dict(solver="lbfgs", hidden_layer_sizes=(6,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m32 = Est(**kw).fit(X.astype(np.float32), y)
        m64 = Est(**kw).fit(X, y)
    assert all(p.dtype == np.float32 for p in m32.coefs_ + m32.intercepts_)
    np.testing.assert_allclose(m32.loss_curve_[:3], m64.loss_curve_[:3], rtol=1e-5)


def test_loss_is_sklearns_objective_with_sample_weight():
    """loss_ is sklearn's objective at the fitted parameters: the weighted mean log-loss
    plus 0.5 * alpha * sum(W**2) / sum(w), computed here in numpy."""
    from scipy.special import log_softmax
    X, y = _blobs(90)
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(X))
    alpha = 0.5
    model = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(6,), alpha=alpha, max_iter=2000,
                          tol=1e-10, random_state=0).fit(X, y, sample_weight=w)
    hidden = np.maximum(X @ model.coefs_[0] + model.intercepts_[0], 0)
    logits = hidden @ model.coefs_[1] + model.intercepts_[1]
    data = -np.average(log_softmax(logits, axis=1)[np.arange(len(X)), y], weights=w)
    penalty = 0.5 * alpha * sum(float(np.sum(W ** 2)) for W in model.coefs_) / w.sum()
    np.testing.assert_allclose(model.loss_, data + penalty, rtol=1e-10)


# ----------------------------------------------------------------------------- get_params

def _sklearn_configurations():
    """Every solver x activation x learning_rate, with the booleans flipped along the way."""
    configs = []
    for i, (solver, activation, learning_rate) in enumerate(
            (s, a, lr) for s in ("lbfgs", "sgd", "adam")
            for a in ("identity", "logistic", "tanh", "relu")
            for lr in ("constant", "invscaling", "adaptive")):
        configs.append(dict(solver=solver, activation=activation, learning_rate=learning_rate,
                            hidden_layer_sizes=(4,) if i % 2 else (3, 4), max_iter=3,
                            early_stopping=bool(i % 3 == 0), nesterovs_momentum=bool(i % 2),
                            shuffle=bool(i % 4), warm_start=bool(i % 5 == 0),
                            momentum=0.0 if i % 7 == 0 else 0.9, batch_size=16 + i,
                            max_fun=50 + i, random_state=i, tol=1e-3, alpha=1e-3 * i))
    return configs


@pytest.mark.parametrize("sk_cls, our_cls", [(SkClassifier, MLPClassifier),
                                             (SkRegressor, MLPRegressor)])
def test_every_sklearn_configuration_is_accepted(sk_cls, our_cls):
    """``Ours(**sk.get_params())`` builds, fits and predicts for each sklearn configuration,
    and reports the same parameters back."""
    X, y = _blobs(60) if sk_cls is SkClassifier else _regression(60)
    configs = _sklearn_configurations()
    if sk_cls is SkRegressor:   # and each with sklearn's other loss, on counts
        configs += [dict(c, loss="poisson") for c in configs[::4]]
    for config in configs:
        if config.get("loss") == "poisson":
            y = np.abs(y)
        sk = sk_cls(**config)
        params = sk.get_params()
        ours = our_cls(**params)
        theirs = ours.get_params()
        assert {k: theirs[k] for k in params} == params
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours.fit(X, y)
        assert ours.predict(X).shape == (len(X),) + (() if sk_cls is SkClassifier else (2,))
        assert ours.n_iter_ >= 1


# ----------------------------------------------------------------------------- sparse X

@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_X_fits_as_its_dense_twin(solver, fmt, dtype):
    """Sparse X and X.toarray() give bitwise the same parameters, predictions and scores
    (the network sees the same dense rows in the same order)."""
    rng = np.random.default_rng(3)
    dense = (rng.normal(size=(150, 30)) * (rng.random((150, 30)) < 0.15)).astype(dtype)
    y = rng.integers(0, 3, 150)
    sparse = scipy_sparse.csr_matrix(dense) if fmt == "csr" else scipy_sparse.csc_matrix(dense)
    kw = dict(solver=solver, hidden_layer_sizes=(8,), max_iter=6, batch_size=32, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(**kw).fit(dense, y)
        b = MLPClassifier(**kw).fit(sparse, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(a.predict_proba(dense), b.predict_proba(sparse))
    assert a.score(dense, y) == b.score(sparse, y)
    if solver != "lbfgs":
        a.partial_fit(dense, y)
        b.partial_fit(sparse, y)
        np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])


def test_sparse_regressor_with_early_stopping_and_weights():
    X, Y = _regression(100)
    X[np.abs(X) < 1] = 0
    w = np.random.default_rng(2).uniform(0, 2, 100)
    kw = dict(hidden_layer_sizes=(5,), max_iter=4, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(**kw).fit(X, Y, sample_weight=w)
        b = MLPRegressor(**kw).fit(scipy_sparse.csr_matrix(X), Y, sample_weight=w)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    assert a.validation_scores_ == b.validation_scores_


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_X_is_never_densified_whole(solver, monkeypatch):
    """Every densification of a sparse X is of a bounded block of rows: a mini-batch (sgd,
    adam) or a block of the full-batch pass and of predict (``_sparse_rows.BLOCK_BYTES``,
    patched small here), never all of X's rows."""
    from fastmlp import _sparse_rows
    monkeypatch.setattr(_sparse_rows, "BLOCK_BYTES", 64 * 8 * 100)
    rng = np.random.default_rng(0)
    X = scipy_sparse.random(2000, 50, density=0.05, format="csr", random_state=1)
    y = rng.integers(0, 2, 2000)
    largest = []
    for cls in (scipy_sparse.csr_matrix, scipy_sparse.csr_array):
        original = cls.toarray

        def counting(self, *args, _original=original, **kwargs):
            largest.append(self.shape[0])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "toarray", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(solver=solver, hidden_layer_sizes=(4,), max_iter=2,
                              random_state=0).fit(X, y)
    model.predict(X)
    assert largest and max(largest) <= 200, max(largest)


# ----------------------------------------------------------------------------- fastmlp's extras

def test_interrupt_leaves_the_last_iterate_and_callbacks_stop():
    """Ctrl-C (here raised by a callback after iteration 4) stops the fit with sklearn's
    "interrupted" warning and the model at its last iterate: loss_ is the objective there.
    A callback returning True stops without a ConvergenceWarning."""
    X, y = _blobs()

    def interrupt(est, iteration, logs):
        if iteration == 4:
            raise KeyboardInterrupt

    kw = dict(solver="lbfgs", hidden_layer_sizes=(5,), random_state=0)
    with pytest.warns(UserWarning, match="interrupted"):
        model = MLPClassifier(callbacks=[interrupt], **kw).fit(X, y)
    assert model.n_iter_ == 4 and len(model.loss_curve_) == 4
    again = MLPClassifier(max_iter=4, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        again.fit(X, y)
    np.testing.assert_array_equal(model.coefs_[0], again.coefs_[0])
    assert model.loss_ == again.loss_

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        stopped = MLPClassifier(callbacks=[lambda est, it, logs: it == 3], **kw)
        stopped.fit(X, y, X_val=X[:20], y_val=y[:20])
    assert stopped.n_iter_ == 3 and stopped.stop_training_
    assert len(stopped.validation_scores_) == 3


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_save_load_and_warm_start(Est, tmp_path):
    import fastmlp
    X, y = _blobs() if Est is MLPClassifier else _regression()
    kw = dict(solver="lbfgs", hidden_layer_sizes=(5,), max_iter=5, max_fun=77, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = Est(**kw).fit(X, y)
        fastmlp.save(model, tmp_path / "m.fmlp")
        loaded = fastmlp.load(tmp_path / "m.fmlp")
        assert loaded.max_fun == 77
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        # warm start: five more iterations from the fitted parameters, as sklearn's
        ours = Est(warm_start=True, **kw)
        sk = (SkClassifier if Est is MLPClassifier else SkRegressor)(warm_start=True, **kw)
        _fit_both(sk, ours, X, y)
        ours.fit(X, y)
        sk.fit(X, y)
    assert ours.n_iter_ == sk.n_iter_ == 5 and len(ours.loss_curve_) == 10
    assert _max_diff(sk, ours) <= 1e-9


def test_packed_parameters_are_views_and_change_no_result():
    """``pack_parameters``: every parameter becomes a view of one buffer (the layers hold the
    views), values and the network's gradient bitwise unchanged, the padding zero."""
    import fastmlp
    from fastmlp._fused import pack_parameters
    rng = np.random.default_rng(0)
    net = fastmlp.MultiLayerNet(5, [7, 4], 3, seed=0)
    x, t = rng.normal(size=(9, 5)), rng.integers(0, 3, 9)
    before = {k: v.copy() for k, v in net.params.items()}
    grads = {k: v.copy() for k, v in net.gradient(x, t).items()}
    packed = pack_parameters(net)
    covered = np.zeros(packed.shape, bool)
    for i in (1, 2, 3):
        for kind in "Wb":
            name = f"{kind}{i}"
            view = net.params[name]
            assert np.shares_memory(view, packed)
            assert getattr(net.layers[f"Affine{i}"], kind) is view
            np.testing.assert_array_equal(view, before[name])
            start = (view.__array_interface__["data"][0] - packed.ctypes.data) // 8
            covered[start:start + view.size] = True
    assert not packed[~covered].any()
    for name, g in net.gradient(x, t).items():
        np.testing.assert_array_equal(g, grads[name])


# ----------------------------------------------------------------------------- one evaluation

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@example(seed=1, n=130, n_features=4, hidden=[5, 3], activation="tanh", alpha=0.7,
         weighted=True, regression_outputs=0, block_bytes=1)
@example(seed=2, n=150, n_features=3, hidden=[4], activation="relu", alpha=1e-4,
         weighted=False, regression_outputs=3, block_bytes=1)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 150), n_features=st.integers(1, 6),
       hidden=st.lists(st.integers(1, 6), min_size=1, max_size=2),
       activation=st.sampled_from(["identity", "logistic", "tanh", "relu"]),
       alpha=st.sampled_from([0.0, 1e-4, 0.7]), weighted=st.booleans(),
       regression_outputs=st.sampled_from([0, 1, 3]), block_bytes=st.sampled_from([None, 1]))
def test_one_evaluation_is_sklearns_loss_grad_lbfgs(seed, n, n_features, hidden, activation,
                                                    alpha, weighted, regression_outputs,
                                                    block_bytes):
    """The objective scipy sees, at one random point: fastmlp's (loss, gradient) against
    sklearn's ``_loss_grad_lbfgs`` (classifier with 3 classes, or 1-3 regression outputs;
    with sample weights; in one block or in blocks of 64 rows). Tolerances: TESTING.md's
    loss scalar rtol 1e-12 and the fallback rtol 1e-9, atol 1e-12 * scale for the gradient."""
    from fastmlp import _sparse_rows
    from fastmlp._estimator_base import Data
    from fastmlp._estimator_lbfgs import FullBatchObjective
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    w = rng.uniform(0.1, 2.0, n) if weighted else None
    kw = dict(solver="lbfgs", hidden_layer_sizes=tuple(hidden), activation=activation,
              alpha=alpha, max_iter=1, random_state=0)
    if regression_outputs:
        y = rng.normal(size=(n, regression_outputs))
        y = y[:, 0] if regression_outputs == 1 else y
        sk, ours = SkRegressor(**kw), MLPRegressor(**kw)
    else:
        y = np.arange(n) % 3
        sk, ours = SkClassifier(**kw), MLPClassifier(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X, y, sample_weight=w)
        ours.fit(X, y)
    for a, b in zip(sk.coefs_ + sk.intercepts_, ours.coefs_ + ours.intercepts_):
        a[...] = b[...] = rng.uniform(-1, 1, a.shape)
    Y = sk._label_binarizer.transform(y) if not regression_outputs else y.reshape(n, -1)
    layers = sk.n_layers_
    sk_loss, sk_grad = sk._loss_grad_lbfgs(
        np.hstack([a.ravel() for a in sk.coefs_ + sk.intercepts_]), X, Y, w,
        [X] + [None] * (layers - 1), [None] * (layers - 1),
        [np.empty_like(c) for c in sk.coefs_], [np.empty_like(b) for b in sk.intercepts_])

    targets = Y.astype(np.float64) if regression_outputs else np.asarray(y, np.intp)
    old = _sparse_rows.BLOCK_BYTES
    _sparse_rows.BLOCK_BYTES = block_bytes or old
    try:
        objective = FullBatchObjective(ours._net, Data(X, targets, w), alpha,
                                       regression_outputs if regression_outputs > 1 else None)
    finally:
        _sparse_rows.BLOCK_BYTES = old
    assert (len(objective.blocks) > 1) == (block_bytes is not None and n > 64)
    loss, grad = objective(objective.start())
    np.testing.assert_allclose(loss, sk_loss, rtol=1e-12)
    ours_grad = np.concatenate([view.ravel() for name, view in
                                sorted(zip(objective.names, objective.grad_views),
                                       key=lambda p: (p[0][0] == "b", int(p[0][1:])))])
    scale = np.abs(sk_grad).max()
    np.testing.assert_allclose(ours_grad, sk_grad, rtol=1e-9, atol=1e-12 * scale)
