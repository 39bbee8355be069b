"""fastmlp.MLPClassifier / MLPRegressor: scikit-learn's estimator checks, parity with
sklearn's MLP on digits, and what they add (X_val, sample_weight, partial_fit and warm_start
that keep the optimizer state, callbacks, float32)."""
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

import fastmlp
from fastmlp.estimator import MLPClassifier, MLPRegressor
from fastmlp.trainer import DivergenceError



@pytest.fixture(scope="module")
def digits():
    (X, y), (X_test, y_test) = fastmlp.datasets.load_digits()
    return (np.asarray(X, np.float64), np.asarray(y), np.asarray(X_test, np.float64),
            np.asarray(y_test))


def _blobs(n=120, n_classes=3, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, n)
    X = centers[y] + rng.normal(size=(n, n_features))
    return X, y


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- sklearn's checks

# Every check runs; none is expected to fail. The one skip is sklearn's own for the
# multilabel decision_function check (MLPClassifier has none, as sklearn's). The instances
# use the default parameters (200 epochs of Adam), which is quick on the checks' tiny data.
@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_compatible_estimator(estimator, check):
    with threadpool_limits(1):  # tiny GEMMs: one BLAS thread avoids pool hand-offs
        check(estimator)


# ----------------------------------------------------------------------------- parity with sklearn

@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_digits_accuracy_at_least_sklearn(digits, dtype):
    """Same hyper-parameters (hidden (100,), adam, 200 epochs): fastmlp's mean test accuracy
    over three seeds is at least sklearn's minus 0.01 (3.6 of the 359 test digits)."""
    from sklearn.neural_network import MLPClassifier as SkMLP
    X, y, X_test, y_test = digits
    X, X_test = X.astype(dtype), X_test.astype(dtype)
    hp = dict(hidden_layer_sizes=(100,), solver="adam", max_iter=200)
    ours, theirs = [], []
    with threadpool_limits(1):
        for seed in range(3):
            model = _quiet(MLPClassifier(random_state=seed, **hp).fit, X, y)
            assert model.coefs_[0].dtype == dtype
            ours.append(model.score(X_test, y_test))
            theirs.append(_quiet(SkMLP(random_state=seed, **hp).fit, X, y).score(X_test, y_test))
    assert np.mean(ours) >= np.mean(theirs) - 0.01, (ours, theirs)
    assert min(ours) >= 0.95


def test_objective_is_sklearns():
    """loss_curve_ reports sklearn's objective: mean log-loss (classifier) or half the squared
    error averaged over samples and outputs (regressor), plus 0.5*alpha*sum(W**2)/n_samples.
    With a vanishing learning rate the first epoch's loss is that of the final parameters."""
    from scipy.special import log_softmax
    X, y = _blobs(60, 3, 4)
    alpha = 0.3
    kw = dict(hidden_layer_sizes=(7,), alpha=alpha, batch_size=60, shuffle=False,
              learning_rate_init=1e-12, max_iter=1, random_state=0)
    clf = _quiet(MLPClassifier(**kw).fit, X, y)
    penalty = 0.5 * alpha * sum(float(np.sum(W ** 2)) for W in clf.coefs_) / len(X)
    logits = clf._net.predict(X)
    expected = -np.mean(log_softmax(logits, axis=1)[np.arange(len(X)), y]) + penalty
    np.testing.assert_allclose(clf.loss_curve_[0], expected, rtol=1e-9)

    Y = np.column_stack([X[:, 0], X[:, 1] * 2, X[:, 2] - X[:, 3]])
    reg = _quiet(MLPRegressor(**kw).fit, X, Y)
    penalty = 0.5 * alpha * sum(float(np.sum(W ** 2)) for W in reg.coefs_) / len(X)
    expected = 0.5 * np.mean((reg.predict(X) - Y) ** 2) + penalty
    np.testing.assert_allclose(reg.loss_curve_[0], expected, rtol=1e-9)


def _sklearn_trajectory(optimizer, params, grads):
    for g in grads:
        optimizer.update_params(params, g)
    return params


@pytest.mark.parametrize("solver", ["nesterov", "momentum", "adam"])
def test_update_rules_are_sklearns(solver, rng):
    """solver='sgd' (with momentum, with or without Nesterov) and 'adam' follow sklearn's
    update formulas (sklearn.neural_network._stochastic_optimizers) to rounding."""
    from sklearn.neural_network._stochastic_optimizers import (
        AdamOptimizer,
        SGDOptimizer,
    )
    shapes = [(4, 3), (3,)]
    init = [rng.normal(size=s) for s in shapes]
    grads = [[rng.normal(size=s) for s in shapes] for _ in range(20)]
    if solver == "adam":
        ours = fastmlp.optimizers.Adam(0.01, 0.8, 0.99, eps=1e-6)
        theirs = AdamOptimizer([p.copy() for p in init], 0.01, 0.8, 0.99, 1e-6)
    else:
        nesterov = solver == "nesterov"
        ours = fastmlp.optimizers.Nesterov(0.05, 0.7, variant="sklearn") if nesterov else fastmlp.optimizers.Momentum(0.05, 0.7)
        theirs = SGDOptimizer([p.copy() for p in init], 0.05, "constant", 0.7, nesterov, 0.5)
    params = {"W": init[0].copy(), "b": init[1].copy()}
    sk_params = [p.copy() for p in init]
    for g in grads:
        ours.update(params, {"W": g[0], "b": g[1]})
        theirs.update_params(sk_params, g)
    np.testing.assert_allclose(params["W"], sk_params[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(params["b"], sk_params[1], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- what fastmlp adds

def test_partial_fit_keeps_adam_state():
    """Two partial_fit calls are one fit of two epochs, bit for bit: Adam's moments and step
    count, and the shuffling stream, carry over between calls."""
    X, y = _blobs(90)
    kw = dict(hidden_layer_sizes=(8,), batch_size=32, random_state=3)
    full = _quiet(MLPClassifier(max_iter=2, **kw).fit, X, y)
    inc = MLPClassifier(**kw)
    inc.partial_fit(X, y, classes=np.unique(y))
    steps = inc._optimizer.iter
    m1 = inc._optimizer.m["W1"].copy()
    assert steps == 3 and np.any(m1 != 0)
    inc.partial_fit(X, y)
    assert inc._optimizer.iter == 6
    assert inc.t_ == 2 * len(X) and len(inc.loss_curve_) == 2 and inc.n_iter_ == 1
    for a, b in zip(full.coefs_ + full.intercepts_, inc.coefs_ + inc.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert full.loss_curve_ == inc.loss_curve_


def test_partial_fit_validates_classes():
    X, y = _blobs(30)
    model = MLPClassifier()
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X, y)
    model.partial_fit(X[y != 2], y[y != 2], classes=[0, 1, 2])  # a chunk may miss a class
    assert list(model.classes_) == [0, 1, 2]
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        model.partial_fit(X, y + 1)


def test_warm_start_respects_max_iter_and_keeps_optimizer_state():
    X, y = _blobs(90)
    kw = dict(hidden_layer_sizes=(8,), batch_size=32, random_state=1, tol=0, n_iter_no_change=50)
    six = _quiet(MLPClassifier(max_iter=6, **kw).fit, X, y)
    warm = MLPClassifier(max_iter=3, warm_start=True, **kw)
    with pytest.warns(ConvergenceWarning):
        warm.fit(X, y)
    assert warm.n_iter_ == 3
    with pytest.warns(ConvergenceWarning):
        warm.fit(X, y)
    assert warm.n_iter_ == 3 and len(warm.loss_curve_) == 6 and warm.t_ == 6 * len(X)
    assert warm._optimizer.iter == 6 * 3
    for a, b in zip(six.coefs_ + six.intercepts_, warm.coefs_ + warm.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert six.loss_curve_ == warm.loss_curve_
    # without warm_start, fit starts over
    cold = _quiet(MLPClassifier(max_iter=3, **kw).fit, X, y)
    _quiet(cold.fit, X, y)
    assert len(cold.loss_curve_) == 3


def test_early_stopping_on_user_validation_set():
    X, y = _blobs(200, seed=1)
    X_val, y_val = _blobs(80, seed=1)[0] + 0.5, _blobs(80, seed=1)[1]
    model = MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, n_iter_no_change=3,
                          max_iter=300, random_state=0, learning_rate_init=0.01)
    model.fit(X, y, X_val=X_val, y_val=y_val)
    assert model.n_iter_ < 300 and model.stop_training_
    assert len(model.validation_scores_) == len(model.loss_curve_) == model.n_iter_
    assert len(model.validation_loss_curve_) == model.n_iter_
    assert np.all(np.isfinite(model.validation_loss_curve_))
    # the best parameters are restored: the validation accuracy now is the best one seen
    assert model.score(X_val, y_val) == model.best_validation_score_ == max(model.validation_scores_)
    with pytest.raises(ValueError, match="both X_val and y_val"):
        model.fit(X, y, X_val=X_val)


def test_validation_set_without_early_stopping_only_monitors():
    X, y = _blobs(100)
    model = _quiet(MLPClassifier(max_iter=5, random_state=0).fit, X, y, X_val=X[:20], y_val=y[:20])
    assert model.n_iter_ == 5 and len(model.validation_scores_) == 5


def test_early_stopping_internal_split_and_regressor():
    X, _ = _blobs(200)
    model = MLPRegressor(early_stopping=True, max_iter=500, random_state=0, n_iter_no_change=5,
                         learning_rate_init=0.01).fit(X, X @ np.arange(1.0, 6.0))
    assert model.n_iter_ < 500 and model.best_validation_score_ > 0.9
    assert len(model.validation_loss_curve_) == model.n_iter_


def test_partial_fit_with_early_stopping():
    X, y = _blobs(200)
    model = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, n_iter_no_change=2,
                          random_state=0, learning_rate_init=0.05)
    for _ in range(100):
        model.partial_fit(X, y, classes=[0, 1, 2], X_val=X[:50], y_val=y[:50])
        if model.stop_training_:
            break
    assert model.stop_training_, "patience never ran out"
    assert model.score(X[:50], y[:50]) == model.best_validation_score_


def test_sample_weight_integer_equals_repeated_rows(rng):
    X, y = _blobs(40)
    w = rng.integers(0, 4, len(X))
    kw = dict(hidden_layer_sizes=(6,), batch_size=1000, shuffle=False, random_state=0, max_iter=30)
    weighted = _quiet(MLPClassifier(**kw).fit, X, y, sample_weight=w)
    repeated = _quiet(MLPClassifier(**kw).fit, np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-9)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-9)
    # and for the regressor, through partial_fit
    t = X @ rng.normal(size=X.shape[1])
    a = MLPRegressor(**kw).partial_fit(X, t, sample_weight=w)
    b = MLPRegressor(**kw).partial_fit(np.repeat(X, w, axis=0), np.repeat(t, w))
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-9)


def test_sample_weight_errors_leave_the_model_unchanged():
    X, y = _blobs(30)
    model = _quiet(MLPClassifier(max_iter=2, random_state=0).fit, X, y)
    before = [c.copy() for c in model.coefs_]
    for bad, match in [(np.zeros(30), "zero"), (-np.ones(30), "non-negative"),
                       (np.ones(29), "shape"), (np.full(30, np.nan), "NaN")]:
        with pytest.raises(ValueError, match=match):
            model.fit(X, y, sample_weight=bad)
    model.set_params(early_stopping=True)
    with pytest.raises(ValueError, match="validation set is too small"):
        model.fit(X[:6], y[:6])
    model.set_params(early_stopping=False)
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :3], y)
    assert model.n_features_in_ == 5
    for a, b in zip(before, model.coefs_):
        np.testing.assert_array_equal(a, b)
    assert model.n_features_in_ == 5


def test_callbacks_stop_training():
    X, y = _blobs(60)
    seen = []

    def cb(est, epoch, logs):
        seen.append((epoch, sorted(logs)))
        return epoch == 3

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = MLPClassifier(max_iter=50, callbacks=[cb], random_state=0).fit(
            X, y, X_val=X[:10], y_val=y[:10])
    assert model.n_iter_ == 3 and model.stop_training_
    assert seen == [(e, ["loss", "lr", "val_loss", "val_score"]) for e in (1, 2, 3)]
    with pytest.raises(TypeError, match="callbacks"):
        MLPClassifier(callbacks=[1]).fit(X, y)


def test_verbose_progress_and_messages(capsys):
    X, y = _blobs(60)
    _quiet(MLPClassifier(max_iter=3, verbose=2, random_state=0).fit, X, y)
    out = capsys.readouterr().out
    assert "Iteration 3, loss = " in out


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_float32_preserved(Est):
    X, y = _blobs(50)
    X32 = X.astype(np.float32)
    model = _quiet(Est(max_iter=3, random_state=0).fit, X32, y)
    assert all(c.dtype == np.float32 for c in model.coefs_ + model.intercepts_)
    out = model.predict_proba(X32) if Est is MLPClassifier else model.predict(X32)
    assert out.dtype == np.float32
    # float64 input to a float32 model is converted; dtype= overrides the input's
    model.predict(X)
    model64 = _quiet(Est(max_iter=3, random_state=0, dtype=np.float64).fit, X32, y)
    assert model64.coefs_[0].dtype == np.float64
    model32 = _quiet(Est(max_iter=3, random_state=0, dtype="float32").fit, X, y)
    assert model32.coefs_[0].dtype == np.float32


def test_string_labels_and_binary():
    X, y = _blobs(80, n_classes=2)
    labels = np.array(["cat", "dog"])[y]
    model = _quiet(MLPClassifier(max_iter=50, random_state=0).fit, X, labels)
    assert list(model.classes_) == ["cat", "dog"]
    assert set(model.predict(X)) <= {"cat", "dog"} and model.score(X, labels) > 0.9
    proba = model.predict_proba(X)
    assert proba.shape == (80, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    objects = labels.astype(object)
    assert list(_quiet(MLPClassifier(max_iter=2).fit, X, objects).classes_) == ["cat", "dog"]


def test_multioutput_and_unsupported_options_raise_clearly():
    X, y = _blobs(30)
    with pytest.raises(ValueError, match="multi-output"):   # multilabel 0/1 is supported
        MLPClassifier().fit(X, np.column_stack([y, y == 1]).astype(int))
    for kwargs, match in [({"solver": "newton"}, "newton"), ({"activation": "softplus"}, "softplus"),
                          ({"hidden_layer_sizes": (0,)}, "> 0"), ({"alpha": -1}, "alpha"),
                          ({"batch_size": 0}, "batch_size"), ({"beta_1": 1.0}, "beta_1")]:
        with pytest.raises(ValueError, match=match):
            MLPClassifier(**kwargs).fit(X, y)
    with pytest.raises(ValueError, match="poisson"):
        MLPRegressor(loss="poisson").fit(X, y - 1.0)   # negative counts


@pytest.mark.parametrize("solver", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_every_solver_learns(solver):
    X, y = _blobs(150, seed=2)
    lr = {"adam": 0.01, "rmsprop": 0.01}.get(solver, 0.1)
    model = _quiet(MLPClassifier(solver=solver, learning_rate_init=lr, max_iter=60,
                                 random_state=0).fit, X, y)
    assert model.score(X, y) > 0.9


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_learning_rate_schedules(schedule):
    X, y = _blobs(100)
    model = _quiet(MLPClassifier(solver="sgd", learning_rate=schedule, learning_rate_init=0.1,
                                 max_iter=40, random_state=0, tol=1e-2, n_iter_no_change=2).fit,
                   X, y)
    assert model._optimizer.lr < 0.1


def test_divergence_raises():
    X, y = _blobs(50)
    with pytest.raises(DivergenceError, match="diverged"):
        MLPRegressor(solver="sgd", momentum=0, learning_rate_init=1e6, max_iter=50).fit(X, y * 1e6)


def test_coefs_are_views_and_shapes():
    X, y = _blobs(40)
    model = _quiet(MLPClassifier(hidden_layer_sizes=(7, 4), max_iter=2).fit, X, y)
    assert [c.shape for c in model.coefs_] == [(5, 7), (7, 4), (4, 3)]
    assert [b.shape for b in model.intercepts_] == [(7,), (4,), (3,)]
    assert model.n_layers_ == 4 and model.n_outputs_ == 3 and model.out_activation_ == "softmax"
    assert np.shares_memory(model.coefs_[0], model._net.params["W1"])


def test_pickle_round_trip():
    import pickle
    X, y = _blobs(40)
    model = _quiet(MLPClassifier(max_iter=3, random_state=0).fit, X, y)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(model.predict_proba(X), clone.predict_proba(X))
    clone.partial_fit(X, y)
    model.partial_fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), clone.predict_proba(X))


def test_without_sklearn_import_works_and_estimators_say_what_to_install():
    """scikit-learn hidden (sys.modules['sklearn'] = None): import fastmlp works, fastmlp.estimator
    imports, and creating an estimator raises ImportError naming the extra to install."""
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None\n"
        "import fastmlp, fastmlp.io\n"
        "from fastmlp.estimator import MLPClassifier, MLPRegressor\n"
        "assert 'sklearn' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "for cls in (MLPClassifier, MLPRegressor):\n"
        "    try:\n"
        "        cls()\n"
        "    except ImportError as exc:\n"
        "        assert 'pip install fastmlp[sklearn]' in str(exc), exc\n"
        "    else:\n"
        "        raise SystemExit('no ImportError')\n"
        "print('ok')\n")
    # the installed fastmlp, from a neutral directory (not the source tree)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tempfile.gettempdir(), timeout=120, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_warm_start_with_changed_architecture_raises():
    X, y = _blobs(40)
    model = _quiet(MLPClassifier(hidden_layer_sizes=(5,), warm_start=True, max_iter=2).fit, X, y)
    model.set_params(hidden_layer_sizes=(6,))
    with pytest.raises(ValueError, match="architecture"):
        model.fit(X, y)
    assert model.coefs_[0].shape == (5, 5)


def _blas_controller():
    from threadpoolctl import ThreadpoolController

    from fastmlp import _backend
    path = _backend.numpy_blas_path()
    if path is None:
        pytest.skip("numpy's BLAS library was not found")
    return ThreadpoolController().select(filepath=path)


def test_small_networks_train_on_one_blas_thread_and_restore_it():
    """Tiny steps (digits-sized GEMMs) run numpy's BLAS single-threaded during fit, restored
    afterwards, also when two fits overlap in two Python threads; an explicit
    fastmlp.set_num_threads(n) turns the policy off."""
    import threading

    ctl = _blas_controller()
    X, y = _blobs(60)
    seen = []

    def cb(est, epoch, logs):
        seen.append(ctl.info()[0]["num_threads"])

    with ctl.limit(limits=2):
        _quiet(MLPClassifier(max_iter=2, callbacks=[cb]).fit, X, y)
        assert seen == [1, 1] and ctl.info()[0]["num_threads"] == 2
        barrier = threading.Barrier(2)

        def fit():  # stops on tol before max_iter: no warning (catch_warnings is not thread-safe)
            barrier.wait()
            MLPClassifier(max_iter=30, tol=1e9, n_iter_no_change=5, random_state=0).fit(X, y)

        workers = [threading.Thread(target=fit) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert ctl.info()[0]["num_threads"] == 2
        seen.clear()
        try:
            fastmlp.set_num_threads(2)
            _quiet(MLPClassifier(max_iter=2, callbacks=[cb]).fit, X, y)
        finally:
            fastmlp.set_num_threads(None)
        assert seen == [2, 2]
