"""Failed or interrupted calls leave no half-states (issue #10, part 4).

Real interrupts: a SIGINT reaches the main thread at a seeded random moment of a
run, either from ``setitimer`` (its SIGALRM handler raises SIGINT, so Python's
SIGINT handler runs as for a Ctrl-C) or from a timer thread calling
``_thread.interrupt_main``. After each one:

(i)  the parameters (and the optimizer state) equal bitwise those after some
     number k of whole steps of an uninterrupted reference run with the same
     seed, and k is what the counters and histories say (``current_iter``,
     ``train_loss_list``; ``t_``, ``n_iter_``, ``loss_curve_``, Adam's ``iter``);
(ii) so no update is half applied (no match = a half-applied update);
(iii) the model still predicts, and Python's SIGINT handler is restored.

A Trainer interrupted and then resumed ends bitwise where an uninterrupted
run ends. A fit that fails before it has built its new network, or that is
interrupted before that, leaves a fitted estimator bitwise as it was.
"""
import _thread
import signal
import threading
import time
import warnings

import numpy as np
import pytest

from fastmlp import MultiLayerNet, _sigint, optimizers
from fastmlp.trainer import Trainer

pytestmark = [
    pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                       reason="signals reach the main thread only"),
    # a SIGINT that lands in a finalizer (say, an old progress bar's __del__) is reported
    # as unraisable and lost, by Python's rules: that trial is simply not interrupted
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

sklearn = pytest.importorskip("sklearn")
from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402
from fastmlp import _estimator_base as est_module  # noqa: E402  (builds the network)

STATE_NAMES = ("v", "h", "m")
STATS = {}   # kind -> counters, printed at the end (pytest -s)


# ----------------------------------------------------------------------------- interrupts

_ARMED = [False]   # whether the next SIGALRM is a trial's (a stray one does nothing)


def _alarm(signum, frame):
    if _ARMED[0]:
        _ARMED[0] = False
        signal.raise_signal(signal.SIGINT)   # Python's SIGINT handler runs as for a Ctrl-C


@pytest.fixture(scope="module", autouse=True)
def _alarm_handler():
    previous = signal.signal(signal.SIGALRM, _alarm)
    yield
    _ARMED[0] = False
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


class Interrupt:
    """One SIGINT to the main thread after ``delay`` seconds, while the block runs.

    ``hit`` tells whether a KeyboardInterrupt reached the block (it is swallowed
    when it arrives outside the code under test, e.g. just after it returned)."""

    def __init__(self, delay, how):
        self.delay, self.how, self.late = delay, how, False
        self._timer = None

    def __enter__(self):
        try:
            if self.how == "itimer":
                _ARMED[0] = True
                signal.setitimer(signal.ITIMER_REAL, self.delay)
            else:
                self._timer = threading.Timer(self.delay, _thread.interrupt_main)
                self._timer.start()
        except KeyboardInterrupt:   # fired before the code under test started: not a trial
            self.late = True
        return self

    def _disarm(self):
        _ARMED[0] = False
        if self.how == "itimer":
            signal.setitimer(signal.ITIMER_REAL, 0)
        elif self._timer is not None:
            self._timer.cancel()
            self._timer.join()

    def __exit__(self, exc_type, exc, tb):
        try:
            try:
                self._disarm()
            finally:
                time.sleep(0)          # a SIGINT already on its way is handled here
                time.sleep(0)
        except KeyboardInterrupt:
            self.late = True
            self._disarm()
        if exc_type is KeyboardInterrupt:   # arrived outside the code under test
            self.late = True
            return True
        return False


def _interrupted(run, delay, how):
    """Run ``run()`` with one SIGINT after ``delay`` seconds; True when the KeyboardInterrupt
    came out of ``run`` (one landing in the harness itself, not a trial, is dropped)."""
    interrupted = False
    try:
        with Interrupt(delay, how):
            try:
                run()
            except KeyboardInterrupt:
                interrupted = True
    except KeyboardInterrupt:
        pass
    return interrupted


def _count(kind, **flags):
    stats = STATS.setdefault(kind, {"trials": 0})
    stats["trials"] += 1
    for name, value in flags.items():
        stats[name] = stats.get(name, 0) + int(bool(value))


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for kind, stats in sorted(STATS.items()):
        print(f"\n[interrupts] {kind}: {stats}")


def _duration(run, repeats=3):
    """The shortest wall time of ``run()`` (seconds)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _delays(seed, duration, n):
    """``n`` seeded delays spread over a run of ``duration`` seconds (and a bit beyond)."""
    rng = np.random.default_rng(seed)
    return [(float(d), "itimer" if i % 2 else "thread")
            for i, d in enumerate(rng.uniform(2e-5, 1.05 * duration, n))]


def _snap_optimizer(opt):
    snap = {}
    for name in STATE_NAMES:
        state = getattr(opt, name, None)
        snap[name] = None if state is None else {k: v.copy() for k, v in state.items()}
    snap["iter"] = getattr(opt, "iter", None)
    snap["lr"] = getattr(opt, "lr", None)
    return snap


def _snap(params, opt):
    return {"params": {k: v.copy() for k, v in params.items()}, "opt": _snap_optimizer(opt)}


def _same_arrays(a, b):
    if a is None or b is None:
        return a is None and b is None
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def _same_optimizer(snap, opt, lr=True):
    now = _snap_optimizer(opt)
    # a state not yet created (None) and an all-zero one are the same state
    for name in STATE_NAMES:
        a, b = snap[name], now[name]
        if (a is None) != (b is None):
            c = a if a is not None else b
            if any(np.any(v) for v in c.values()):
                return False
        elif not _same_arrays(a, b):
            return False
    return now["iter"] == snap["iter"] and (not lr or now["lr"] == snap["lr"])


def _match(snaps, params):
    """Indices of the reference snapshots whose parameters equal ``params`` bitwise."""
    return [i for i, s in enumerate(snaps) if _same_arrays(s["params"], params)]


# ----------------------------------------------------------------------------- Trainer

def _trainer_data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(160, 12))
    t = x[:, :4].argmax(axis=1)
    xt = rng.normal(size=(48, 12))
    return x, t, xt, xt[:, :4].argmax(axis=1)


TRAINER_OPTIMIZERS = [("SGD", {"lr": 0.1}), ("Momentum", {"lr": 0.05}),
                      ("Nesterov", {"lr": 0.05}), ("AdaGrad", {"lr": 0.05}),
                      ("RMSprop", {"lr": 0.01}), ("Adam", {"lr": 0.01})]


def _make_trainer(name, kw, data, lr_decay=0.9):
    net = MultiLayerNet(12, [16, 16], 4, seed=1)
    x, t, xt, tt = data
    return Trainer(net, x, t, xt, tt, epochs=4, mini_batch_size=16, optimizer=name,
                   optimizer_param=dict(kw), verbose=False, lr_decay=lr_decay, seed=3,
                   sampling="epoch")


def _decayed(lr, epochs, decay=0.9):
    for _ in range(epochs):
        lr *= decay
    return lr


@pytest.mark.parametrize("name, kw", TRAINER_OPTIMIZERS, ids=[n for n, _ in TRAINER_OPTIMIZERS])
def test_trainer_interrupted_anywhere_is_whole_steps_and_resumes_exactly(name, kw):
    data = _trainer_data()
    ref = _make_trainer(name, kw, data)
    snaps = [_snap(ref.network.params, ref.optimizer)]
    epochs_at = [0]
    while ref.current_iter < ref.max_iter:
        ref.train_step()
        snaps.append(_snap(ref.network.params, ref.optimizer))
        epochs_at.append(ref.current_epoch)
    final_acc = ref.train()
    duration = _duration(lambda: _make_trainer(name, kw, data).train())

    half, inconsistent, mid = 0, 0, 0
    for i, (delay, how) in enumerate(_delays(sum(map(ord, name)), duration, 40)):
        tr = _make_trainer(name, kw, data)
        interrupted = _interrupted(lambda: tr.train(), delay, how)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        k = tr.current_iter
        matches = _match(snaps, tr.network.params)
        half += not matches
        ok = (k in matches and tr.train_loss_list == ref.train_loss_list[:k]
              and _same_optimizer(snaps[k]["opt"], tr.optimizer, lr=False)
              and tr.current_epoch == epochs_at[k]   # an epoch's end comes with its last step
              and tr.optimizer.lr == _decayed(kw["lr"], tr.current_epoch)
              and tr.train_acc_list == ref.train_acc_list[:tr.current_epoch]
              and tr.test_acc_list == ref.test_acc_list[:tr.current_epoch])
        inconsistent += not ok
        mid += interrupted and 0 < k < ref.max_iter
        _count(f"Trainer/{name}", interrupted=interrupted, mid_run=interrupted and 0 < k < ref.max_iter)
        assert ok, (name, i, delay, how, k, matches)
        assert np.isfinite(tr.network.predict(data[2])).all()
        # resuming gives the uninterrupted run, bit for bit
        assert tr.train() == final_acc
        assert _same_arrays(tr.network.params, ref.network.params)
        assert tr.train_loss_list == ref.train_loss_list
        assert tr.train_acc_list == ref.train_acc_list and tr.test_acc_list == ref.test_acc_list
        assert _same_optimizer(_snap_optimizer(ref.optimizer), tr.optimizer)
    assert half == 0 and inconsistent == 0
    assert mid >= 3, f"only {mid} interrupts landed inside the run"


@pytest.mark.parametrize("name, kw", [TRAINER_OPTIMIZERS[0], TRAINER_OPTIMIZERS[-1]],
                         ids=["SGD", "Adam"])
def test_trainer_train_step_loop_interrupted_is_whole_steps(name, kw):
    """The user's own loop of train_step() calls (each installs the deferral itself)."""
    data = _trainer_data()
    ref = _make_trainer(name, kw, data)
    snaps = [_snap(ref.network.params, ref.optimizer)]
    while ref.current_iter < ref.max_iter:
        ref.train_step()
        snaps.append(_snap(ref.network.params, ref.optimizer))

    def loop(tr):
        while tr.current_iter < tr.max_iter:
            tr.train_step()

    duration = _duration(lambda: loop(_make_trainer(name, kw, data)))
    for delay, how in _delays(31, duration, 30):
        tr = _make_trainer(name, kw, data)
        interrupted = _interrupted(lambda: loop(tr), delay, how)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        k = tr.current_iter
        assert _match(snaps, tr.network.params) == [k]
        assert tr.train_loss_list == ref.train_loss_list[:k]
        assert _same_optimizer(snaps[k]["opt"], tr.optimizer)
        _count(f"Trainer.train_step/{name}", interrupted=interrupted,
               mid_run=interrupted and 0 < k < ref.max_iter)
        loop(tr)   # and on to the uninterrupted end
        assert _same_arrays(tr.network.params, ref.network.params)
        assert tr.train_acc_list == ref.train_acc_list


def test_sigint_deferral_helper():
    """A SIGINT inside a critical section arrives at its end; the handler is restored after
    nesting; nothing is deferred in other threads or when SIGINT is ignored."""
    seen = []
    with _sigint.deferred_sigint() as critical:
        with _sigint.deferred_sigint() as inner:
            assert inner is critical and _sigint.critical_section() is critical
        assert signal.getsignal(signal.SIGINT) != signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            with critical:
                signal.raise_signal(signal.SIGINT)
                for _ in range(1000):   # many chances for the handler to run
                    seen.append(len(seen))
        assert len(seen) == 1000
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    out = []
    thread = threading.Thread(target=lambda: out.append(
        (type(_sigint.deferred_sigint().__enter__()).__name__,
         type(_sigint.critical_section()).__name__)))
    thread.start()
    thread.join()
    assert out == [("_NoDeferral", "_NoDeferral")]

    # install/uninstall hammered by interrupts: the handler is never left behind, and the
    # deferral counters end at rest
    def churn():
        for _ in range(3000):
            with _sigint.deferred_sigint() as critical:
                with critical:
                    pass
    duration = _duration(churn, repeats=1)
    for delay, how in _delays(37, duration, 40):
        _interrupted(churn, delay, how)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert _sigint._DEFERRAL.installs == 0

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _sigint.deferred_sigint() as critical:
            assert type(critical).__name__ == "_NoDeferral"
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------------------------- optimizers alone

@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_optimizer_update_alone_is_whole_under_interrupts(name, layout):
    """A user's own loop: each update (with Adam's iter) is all or nothing, on the one-call
    path (C-contiguous dicts) and on the checked path (Fortran-ordered parameters)."""
    rng = np.random.default_rng(11)
    start = {"W": np.asarray(rng.normal(size=(120, 90)), order=layout),
             "b": rng.normal(size=90)}
    grads = [{"W": rng.normal(size=(120, 90)), "b": rng.normal(size=90)} for _ in range(150)]

    def run(params, opt, record=None):
        for g in grads:
            opt.update(params, g)
            if record is not None:
                record.append(_snap(params, opt))

    ref_params = {k: v.copy(order="K") for k, v in start.items()}
    ref_opt = optimizers.get_optimizer(name, lr=0.01)
    snaps = [_snap(ref_params, ref_opt)]
    run(ref_params, ref_opt, snaps)
    duration = _duration(lambda: run({k: v.copy(order="K") for k, v in start.items()},
                                     optimizers.get_optimizer(name, lr=0.01)))
    half = inconsistent = 0
    for delay, how in _delays(5, duration, 40):
        params = {k: v.copy(order="K") for k, v in start.items()}
        opt = optimizers.get_optimizer(name, lr=0.01)
        interrupted = _interrupted(lambda: run(params, opt), delay, how)
        matches = _match(snaps, params)
        half += not matches
        inconsistent += not (matches and _same_optimizer(snaps[matches[0]]["opt"], opt))
        _count(f"optimizer/{name}/{layout}", interrupted=interrupted,
               mid_run=interrupted and matches and 0 < matches[0] < len(grads))
    assert half == 0 and inconsistent == 0


# ----------------------------------------------------------------------------- estimators

def _est_data(kind, n=100, n_features=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    if kind == "clf":
        return X, np.array(["a", "b", "c"])[X[:, :3].argmax(axis=1)]
    return X, np.stack([X[:, 0] - X[:, 1], X[:, 2] * 0.5], axis=1)


COMMON = {"hidden_layer_sizes": (16,), "batch_size": 20, "max_iter": 6, "random_state": 0,
          "n_iter_no_change": 1000, "tol": 0.0}
EST_CONFIGS = {
    "clf-sgd-nesterov": (MLPClassifier, {"solver": "sgd", "momentum": 0.9,
                                          "nesterovs_momentum": True,
                                          "learning_rate_init": 0.05}),
    "clf-sgd-momentum": (MLPClassifier, {"solver": "sgd", "momentum": 0.9,
                                          "nesterovs_momentum": False,
                                          "learning_rate_init": 0.05}),
    "clf-sgd-invscaling-val": (MLPClassifier, {"solver": "sgd", "learning_rate": "invscaling",
                                                "learning_rate_init": 0.2}),
    "clf-adam": (MLPClassifier, {"solver": "adam", "learning_rate_init": 0.01}),
    "reg-sgd-nesterov": (MLPRegressor, {"solver": "sgd", "learning_rate_init": 0.01}),
    "reg-adam": (MLPRegressor, {"solver": "adam", "learning_rate_init": 0.01}),
}


def _recording(cls, log):
    """``cls`` whose optimizer appends a snapshot after every update to ``log``
    (``log[k]``: the state after k steps)."""

    class Recording(cls):
        def _make_optimizer(self, params):
            opt = super()._make_optimizer(params)
            update = opt.update

            def recorded(p, g):
                if not log:
                    log.append(_snap(p, opt))
                update(p, g)
                log.append(_snap(p, opt))

            opt.update = recorded
            return opt

    Recording.__name__ = cls.__name__
    return Recording


def _no_blas_limit_left():
    """A fit interrupted anywhere leaves no one-BLAS-thread limit behind (it would keep
    numpy's BLAS on one thread for the rest of the process)."""
    from fastmlp import threads
    assert threads._step_users == 0 and threads._step_token is None, (
        threads._step_users, threads._step_token)


def _quiet_fit(est, *args, **kwargs):
    """Call est.fit/partial_fit; (interrupted_inside, KeyboardInterrupt escaped)."""
    method = kwargs.pop("method", "fit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            getattr(est, method)(*args, **kwargs)
        except KeyboardInterrupt:
            return False, True
    return any("interrupted by user" in str(w.message) for w in caught), False


def _fitted_state(est):
    """Everything visible of a fitted estimator, copied."""
    out = {}
    for k, v in est.__dict__.items():
        if k.endswith("_") and not k.startswith("_") or k in ("_dtype", "_split_seed",
                                                               "_no_improvement_count"):
            out[k] = v.copy() if isinstance(v, (np.ndarray, list)) else v
    out["coefs_"] = [a.copy() for a in est.coefs_]
    out["intercepts_"] = [a.copy() for a in est.intercepts_]
    out["optimizer"] = _snap_optimizer(est._optimizer)
    out["optimizer_object"] = est._optimizer
    out["net_object"] = est._net
    return out


def _assert_same_state(before, est):
    after = _fitted_state(est)
    assert before.keys() == after.keys()
    for k, v in before.items():
        w = after[k]
        if k == "optimizer":
            assert _same_optimizer(v, est._optimizer)
        elif k in ("optimizer_object", "net_object"):
            assert v is w, k
        elif isinstance(v, list) and v and isinstance(v[0], np.ndarray):
            assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(v, w)), k
        elif isinstance(v, np.ndarray):
            assert v.dtype == w.dtype and np.array_equal(v, w), k
        elif isinstance(v, float) and np.isnan(v):
            assert np.isnan(w), k
        else:
            assert v == w, k


def _check_estimator(est, log, ref, n_per_epoch, batch, first_curve=0):
    """Invariants (i)-(iii) of an estimator after an interrupt; returns (half, inconsistent, k)."""
    matches = _match(log, est._net.params)
    k = (est.t_ - ref["t0"]) // batch
    ok = (k in matches and (est.t_ - ref["t0"]) % batch == 0
          # (the log holds the learning rate before an epoch's schedule step: checked apart)
          and _same_optimizer(log[k]["opt"], est._optimizer, lr=False)
          and est.loss_curve_ == ref["loss_curve_"][:first_curve + k // n_per_epoch]
          and (ref["validation_scores_"] is None
               or est.validation_scores_ == ref["validation_scores_"][:first_curve + k // n_per_epoch]))
    return (not matches), (not ok), k


@pytest.mark.parametrize("config", list(EST_CONFIGS))
def test_fit_interrupted_anywhere_keeps_whole_steps(config):
    cls, kw = EST_CONFIGS[config]
    kind = "clf" if cls is MLPClassifier else "reg"
    X, y = _est_data(kind)
    fit_kw = {}
    if config.endswith("-val"):
        fit_kw = dict(zip(("X_val", "y_val"), _est_data(kind, n=30, seed=1)))
    log = []
    reference = _recording(cls, log)(**COMMON, **kw)
    _quiet_fit(reference, X, y, **fit_kw)
    ref = {"t0": 0, "loss_curve_": list(reference.loss_curve_),
           "validation_scores_": reference.validation_scores_}
    assert len(log) == 6 * 5 + 1
    duration = _duration(lambda: _quiet_fit(cls(**COMMON, **kw), X, y, **fit_kw))

    half = inconsistent = mid = 0
    for i, (delay, how) in enumerate(_delays(sum(map(ord, config)), duration, 40)):
        est = cls(**COMMON, **kw)
        inside = escaped = False
        try:   # a SIGINT landing in the harness itself (not a trial) is dropped
            with Interrupt(delay, how):
                inside, escaped = _quiet_fit(est, X, y, **fit_kw)
        except KeyboardInterrupt:
            pass
        _no_blas_limit_left()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        if "_net" not in est.__dict__:
            # interrupted before the fit had built its network: nothing was set
            assert not hasattr(est, "n_features_in_") and not hasattr(est, "classes_")
            assert not hasattr(est, "loss_curve_") and not hasattr(est, "t_")
            _count(f"fit/{config}", interrupted=True, before_commit=True)
            continue
        h, bad, k = _check_estimator(est, log, ref, 5, 20)
        half += h
        inconsistent += bad
        mid += (inside or escaped) and 0 < k < 30
        _count(f"fit/{config}", interrupted=inside or escaped,
               mid_run=(inside or escaped) and 0 < k < 30)
        assert not bad, (config, i, delay, how, k)
        assert est.n_iter_ == k // 5
        if kw.get("learning_rate") == "invscaling" and est.n_iter_:
            # set at each epoch's end from the samples seen by then
            assert est._optimizer.lr == kw["learning_rate_init"] / (100 * est.n_iter_ + 1) ** 0.5
        else:
            assert est._optimizer.lr == kw["learning_rate_init"]
        pred = est.predict(X)
        assert pred.shape[0] == X.shape[0]
        if kind == "clf":
            assert set(pred) <= set(est.classes_)
        else:
            assert np.isfinite(pred).all()
    assert half == 0 and inconsistent == 0
    assert mid >= 3, f"only {mid} interrupts landed inside the run"


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_interrupted_anywhere_keeps_whole_steps(solver):
    X, y = _est_data("clf")
    classes = np.array(["a", "b", "c"])
    kw = dict(COMMON, solver=solver, learning_rate_init=0.05 if solver == "sgd" else 0.01)
    calls = 4

    def run(est):
        """(inside, escaped) of a sequence of partial_fit calls, stopping at an interrupt."""
        for _ in range(calls):
            inside, escaped = _quiet_fit(est, X, y, classes=classes, method="partial_fit")
            if inside or escaped:
                return inside, escaped
        return False, False

    log = []
    reference = _recording(MLPClassifier, log)(**kw)
    run(reference)
    ref = {"t0": 0, "loss_curve_": list(reference.loss_curve_), "validation_scores_": None}
    assert len(log) == calls * 5 + 1
    duration = _duration(lambda: run(MLPClassifier(**kw)))
    half = inconsistent = mid = 0
    for delay, how in _delays(17 + len(solver), duration, 40):
        est = MLPClassifier(**kw)
        inside = escaped = False
        try:   # a SIGINT landing in the harness itself (not a trial) is dropped
            with Interrupt(delay, how):
                try:
                    inside, escaped = run(est)
                except KeyboardInterrupt:   # between two calls
                    inside, escaped = False, True
        except KeyboardInterrupt:
            pass
        _no_blas_limit_left()
        if "_net" not in est.__dict__:
            assert not hasattr(est, "classes_") and not hasattr(est, "n_features_in_")
            _count(f"partial_fit/{solver}", interrupted=True, before_commit=True)
            continue
        h, bad, k = _check_estimator(est, log, ref, 5, 20)
        half += h
        inconsistent += bad
        mid += (inside or escaped) and 0 < k < calls * 5
        _count(f"partial_fit/{solver}", interrupted=inside or escaped,
               mid_run=(inside or escaped) and 0 < k < calls * 5)
        assert set(est.predict(X)) <= set(classes)
    assert half == 0 and inconsistent == 0
    assert mid >= 3


def test_refit_interrupted_before_its_commit_leaves_the_old_model():
    """A second fit (other classes, other features) interrupted anywhere: either the old
    model is untouched (interrupt before the new network was committed) or the new fit is
    consistent whole steps."""
    XA, yA = _est_data("clf", n=60, n_features=10, seed=3)
    rng = np.random.default_rng(4)
    XB = rng.normal(size=(100, 7))
    yB = XB[:, :4].argmax(axis=1)
    kw = dict(COMMON, solver="sgd", learning_rate_init=0.05)
    log = []
    reference = _recording(MLPClassifier, log)(**kw)
    _quiet_fit(reference, XB, yB)
    ref = {"t0": 0, "loss_curve_": list(reference.loss_curve_), "validation_scores_": None}
    duration = _duration(lambda: _quiet_fit(MLPClassifier(**kw), XB, yB))
    old_seen = new_seen = 0
    for delay, how in _delays(23, duration, 40):
        est = MLPClassifier(**kw)
        _quiet_fit(est, XA, yA)
        before = _fitted_state(est)
        pred_before = est.predict(XA)
        inside = escaped = False
        try:   # a SIGINT landing in the harness itself (not a trial) is dropped
            with Interrupt(delay, how):
                inside, escaped = _quiet_fit(est, XB, yB)
        except KeyboardInterrupt:
            pass
        _no_blas_limit_left()
        if est._net is before["net_object"]:
            _assert_same_state(before, est)
            assert np.array_equal(est.predict(XA), pred_before)
            old_seen += 1
        else:
            h, bad, k = _check_estimator(est, log, ref, 5, 20)
            assert not h and not bad
            assert list(est.classes_) == [0, 1, 2, 3] and est.n_features_in_ == 7
            new_seen += 1
        _count("refit", interrupted=inside or escaped, old_model_kept=est._net is before["net_object"])
    assert new_seen > 0


# ----------------------------------------------------------------------------- failed calls

def _fitted(cls=MLPClassifier, **kw):
    X, y = _est_data("clf" if cls is MLPClassifier else "reg")
    params = dict(COMMON, max_iter=3, solver="adam", learning_rate_init=0.01)
    params.update(kw)
    est = cls(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return est, X, y


def test_failed_refit_in_validation_changes_nothing():
    est, X, y = _fitted()
    before, pred = _fitted_state(est), est.predict(X)
    est.set_params(hidden_layer_sizes=(0,))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        est.fit(X[:, :5], np.arange(len(X)) % 4)
    est.set_params(hidden_layer_sizes=(16,), learning_rate_init=-1.0)
    with pytest.raises(ValueError, match="learning_rate_init"):
        est.fit(X, y)
    est.set_params(learning_rate_init=0.01)
    with pytest.raises(ValueError, match="y_val"):   # fails after X and y were validated
        est.fit(X[:, :4], np.arange(len(X)) % 5, X_val=X[:3, :4], y_val=[0, 1, 9])
    _assert_same_state(before, est)
    assert np.array_equal(est.predict(X), pred)


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("where", ["network", "optimizer"])
def test_refit_failing_while_building_changes_nothing(monkeypatch, where):
    """The reported bug: a refit whose network construction fails had already replaced
    classes_, so predict returned the new labels for the old network's outputs."""
    est, X, y = _fitted()
    before, pred, proba = _fitted_state(est), est.predict(X), est.predict_proba(X)

    def boom(*args, **kwargs):
        raise _Boom("construction failed")

    if where == "network":
        monkeypatch.setattr(est_module, "MultiLayerNet", boom)
    else:
        monkeypatch.setattr(MLPClassifier, "_make_optimizer", boom)
    X2 = np.random.default_rng(1).normal(size=(50, 6))
    y2 = np.arange(50) % 5 + 10            # other classes, other features
    with pytest.raises(_Boom):
        est.fit(X2, y2)
    monkeypatch.undo()
    _assert_same_state(before, est)
    assert list(est.classes_) == ["a", "b", "c"] and est.n_features_in_ == 10
    assert np.array_equal(est.predict(X), pred)
    assert np.array_equal(est.predict_proba(X), proba)
    with pytest.raises(ValueError):
        est.predict(X2)                    # still the 10-feature model


def test_failed_refit_keeps_feature_names(monkeypatch):
    pd = pytest.importorskip("pandas")
    X, y = _est_data("clf")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = MLPClassifier(**dict(COMMON, max_iter=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(frame, y)
    before = _fitted_state(est)
    monkeypatch.setattr(est_module, "MultiLayerNet",
                        lambda *a, **k: (_ for _ in ()).throw(_Boom("no")))
    with pytest.raises(_Boom):
        est.fit(X[:, :3], y)               # no names, other width
    monkeypatch.undo()
    _assert_same_state(before, est)
    assert list(est.feature_names_in_) == list(frame.columns)


def test_failed_warm_start_and_partial_fit_change_nothing():
    est, X, y = _fitted(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1)
    est.set_params(warm_start=True, momentum=0.5, learning_rate_init=0.3)
    before, lr = _fitted_state(est), est._optimizer.lr
    with pytest.raises(ValueError, match="classes"):
        est.fit(X, np.where(y == "a", "z", y))        # warm start with other classes
    with pytest.raises(ValueError):
        est.partial_fit(X, y, classes=["a", "b"])     # other classes than the first call
    with pytest.raises(ValueError, match="X_val"):
        est.partial_fit(X, y, X_val=X[:3])
    _assert_same_state(before, est)
    assert est._optimizer.lr == lr and est._optimizer.momentum == 0.9   # not yet re-tuned


def test_fresh_estimator_failed_fit_sets_nothing():
    X, y = _est_data("clf")
    est = MLPClassifier(**COMMON)
    with pytest.raises(ValueError):
        est.fit(X, y, X_val=X[:4], y_val=["a", "b", "c", "nope"])
    assert not any(k.endswith("_") and not k.startswith("__") for k in vars(est)
                   if k not in est.get_params())
    assert "_net" not in vars(est)


def test_divergence_mid_epoch_keeps_counters_with_the_params():
    """t_ counts the samples of every applied step, also of an epoch cut short."""
    from fastmlp.trainer import DivergenceError
    X, y = _est_data("reg")
    log = []

    class Blowing(_recording(MLPRegressor, log)):
        def _make_optimizer(self, params):
            opt = super()._make_optimizer(params)
            update = opt.update

            def blow(p, g):
                update(p, g)
                if len(log) == 8:   # after step 7 the next loss is not finite
                    p["W1"] *= 1e300
                    log[-1] = _snap(p, opt)

            opt.update = blow
            return opt

    est = Blowing(**dict(COMMON, solver="sgd", learning_rate_init=0.01))
    with pytest.raises(DivergenceError, match="epoch 2, batch 3"):
        est.fit(X, y)
    assert len(log) == 8 and _same_arrays(log[-1]["params"], est._net.params)
    assert est.t_ == 20 * 7 and est.n_iter_ == 1 and len(est.loss_curve_) == 1


# ----------------------------------------------------------------------------- Trainer construction

def test_trainer_construction_failure_changes_nothing():
    data = _trainer_data()
    x, t, xt, tt = data
    net = MultiLayerNet(12, [16], 4, seed=1)
    opt = optimizers.Adam(lr=0.01)
    for i in range(3):
        opt.update(net.params, net.gradient(x[16 * i:16 * i + 16], t[16 * i:16 * i + 16]))
    params, opt_state = _snap(net.params, opt)["params"], _snap_optimizer(opt)
    gen = np.random.default_rng(5)
    gen_state = gen.bit_generator.state
    inputs = [a.copy() for a in data]
    bad = [dict(epochs=0), dict(mini_batch_size=1000), dict(lr_decay=1.5),
           dict(seed="x"), dict(verbose="yes"), dict(optimizer_param={"lr": 0.1}),
           dict(evaluate_sample_num_per_epoch=0), dict(x_test=xt[:, :5]),
           dict(t_train=np.full(len(t), 9))]
    for change in bad:
        args = dict(network=net, x_train=x, t_train=t, x_test=xt, t_test=tt, epochs=2,
                    mini_batch_size=16, optimizer=opt, seed=gen, verbose=False)
        args.update(change)
        with pytest.raises((TypeError, ValueError)):
            Trainer(**args)
        assert _same_arrays(params, net.params) and _same_optimizer(opt_state, opt), change
        assert gen.bit_generator.state == gen_state
        assert all(np.array_equal(a, b) for a, b in zip(inputs, data))


def test_diverged_trainer_step_retries_the_same_batch():
    """A DivergenceError leaves the stream position too: after lowering the learning rate
    the next step uses the batch that diverged."""
    data = _trainer_data()
    tr = _make_trainer("SGD", {"lr": 0.1}, data, lr_decay=None)
    tr.train_step()
    pos, perm = tr._stream.pos, tr._stream.perm.copy()
    tr.network.params["W1"][0, 0] = np.nan
    from fastmlp.trainer import DivergenceError
    with pytest.raises(DivergenceError):
        tr.train_step()
    assert tr.current_iter == 1 and len(tr.train_loss_list) == 1
    assert tr._stream.pos == pos and np.array_equal(tr._stream.perm, perm)


def test_on_exit_runs_when_the_guard_ends_whatever_interrupts():
    """What a guarded block registers with on_exit (a fit's BLAS limit) is given back when
    the block ends: after a Ctrl-C too, and in threads other than the main one."""
    calls = []
    with pytest.raises(KeyboardInterrupt):
        guard = _sigint.deferred_sigint()
        with guard as critical:
            with critical:
                guard.on_exit(lambda: calls.append("given back"))
                signal.raise_signal(signal.SIGINT)   # deferred to the end of the section
                calls.append("section finished")
            calls.append("not reached")
    assert calls == ["section finished", "given back"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    in_thread = []

    def work():
        guard = _sigint.deferred_sigint()
        with guard:
            guard.on_exit(lambda: in_thread.append("given back"))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert in_thread == ["given back"]
