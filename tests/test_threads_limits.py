"""``fastmlp.threadpool_limits`` and the oversubscription warning of fits and ``fastmlp train``.

The thread counts are read back through threadpoolctl (numpy's BLAS) and OpenMP's own
``omp_get_max_threads``, not through fastmlp's bookkeeping. The warning's rule, "the other
processes' 1-minute load average plus the threads about to be used exceeds the available
cores", is checked with injected loads and cores, both ways.
"""
import os
import time
import warnings

import numpy as np
import pytest
from conftest import numpy_blas_threads as _numpy_blas_threads
from conftest import set_numpy_blas as _set_numpy_blas

import fastmlp
from fastmlp import _blas
from fastmlp import _oversubscription as O
from fastmlp import threads as T
from fastmlp._kernels import threads as omp
from fastmlp.cli import main


def _omp(n):
    """What OpenMP reports after asking for n (a build without OpenMP has one thread)."""
    return n if T.openmp_enabled() else 1


@pytest.fixture
def thread_state():
    """fastmlp's setting, numpy's BLAS and OpenMP's count put back afterwards; both pools
    start at 3 so that every change below is visible."""
    if _blas.numpy_blas_path() is None or _numpy_blas_threads() is None:
        pytest.skip("numpy's BLAS cannot be controlled through threadpoolctl here")
    saved = {k: getattr(T, k) for k in ("_requested", "_originals")}
    blas, omp_max = _numpy_blas_threads(), omp.omp_max_threads()
    fastmlp.set_num_threads(None)
    _set_numpy_blas(3)
    omp.set_omp_max_threads(3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "n=.* cores available", RuntimeWarning)
        yield
    for k, v in saved.items():
        setattr(T, k, v)
    _set_numpy_blas(blas)
    omp.set_omp_max_threads(omp_max)


def _counts():
    return _numpy_blas_threads(), omp.omp_max_threads(), fastmlp.get_num_threads()


# ---------------------------------------------------------------- threadpool_limits

@pytest.mark.parametrize("n", [1, 2])
def test_limits_both_pools_and_restores_them(thread_state, n):
    with fastmlp.threadpool_limits(n) as limiter:
        assert limiter.n == n
        assert _counts() == (n, _omp(n), n)
    assert _counts() == (3, _omp(3), _omp(3))


def test_restores_on_exception(thread_state):
    with pytest.raises(KeyError):
        with fastmlp.threadpool_limits(1):
            raise KeyError("inside")
    assert _counts() == (3, _omp(3), _omp(3))


def test_restores_a_set_num_threads_setting_and_ends_one_made_inside(thread_state):
    fastmlp.set_num_threads(2)
    with fastmlp.threadpool_limits(1):
        assert _counts() == (1, 1, 1)
        fastmlp.set_num_threads(4)     # ends with the block
        assert _counts() == (4, _omp(4), 4)
    assert _counts() == (2, _omp(2), 2)
    fastmlp.set_num_threads(None)      # the originals from before the block
    assert _counts() == (3, _omp(3), _omp(3))


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-2, ValueError), (T.MAX_THREADS + 1, ValueError),
                                     (1.0, TypeError), (True, TypeError), ("2", TypeError),
                                     (None, TypeError)])
def test_rejects_bad_counts_before_changing_anything(thread_state, bad, exc):
    with pytest.raises(exc, match=r"\bn\b"):
        fastmlp.threadpool_limits(bad)
    assert _counts() == (3, _omp(3), _omp(3))


def test_one_with_per_instance(thread_state):
    limiter = fastmlp.threadpool_limits(1)
    with limiter:
        with pytest.raises(RuntimeError, match="already in use"):
            limiter.__enter__()
        assert _counts() == (1, 1, 1)
    assert _counts() == (3, _omp(3), _omp(3))
    with limiter:                      # usable again once left
        assert _numpy_blas_threads() == 1
    assert _numpy_blas_threads() == 3


def test_nested_blocks(thread_state):
    with fastmlp.threadpool_limits(2):
        with fastmlp.threadpool_limits(1):
            assert _counts() == (1, 1, 1)
        assert _counts() == (2, _omp(2), 2)
    assert _counts() == (3, _omp(3), _omp(3))


def test_a_fit_inside_keeps_the_blocks_count(thread_state, monkeypatch):
    """A small fit alone runs numpy's BLAS on one thread; inside the block it keeps n."""
    from fastmlp import _estimator_base
    seen = []
    original = _estimator_base.BaseMLP._run_epochs

    def run_epochs(self, *args, **kwargs):
        seen.append(_numpy_blas_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_estimator_base.BaseMLP, "_run_epochs", run_epochs)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 2, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ConvergenceWarning
        with fastmlp.threadpool_limits(2):
            fastmlp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X, y)
        fastmlp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X, y)
    assert seen == [2, 1]
    assert _numpy_blas_threads() == 3


@pytest.mark.parametrize("fit_ends_inside", [False, True])
def test_a_fit_limit_across_the_block(thread_state, fit_ends_inside):
    """A fit (its one-BLAS-thread limit) that began before the block: the block's count
    holds inside it; afterwards the fit's limit is back while it runs, and the count from
    before the fit once it ends."""
    fit = T.blas_threads_for_step(0)
    fit.__enter__()
    assert _numpy_blas_threads() == 1
    with fastmlp.threadpool_limits(2):
        assert _numpy_blas_threads() == 2
        if fit_ends_inside:
            fit.__exit__(None, None, None)
            assert _numpy_blas_threads() == 2
    if not fit_ends_inside:
        assert _numpy_blas_threads() == 1
        fit.__exit__(None, None, None)
    assert _numpy_blas_threads() == 3


# ---------------------------------------------------------------- the oversubscription rule

@pytest.mark.parametrize("threads,load,cores,expected", [
    (2, 0.0, 2, False), (2, 0.3, 2, False), (2, 0.6, 2, True), (1, 1.4, 2, False),
    (1, 1.6, 2, True), (4, 4.4, 8, False), (4, 4.6, 8, True), (8, 0.0, 4, True),
    (3, 1.5, 4, False)])
def test_rule(threads, load, cores, expected):
    """load + threads > cores + half a core (an idle machine's load is rarely 0)."""
    found = O.oversubscribed(threads, load=load, cores=cores)
    assert (found is not None) == expected
    if expected:
        assert found == (load, cores)


def test_other_load_leaves_out_this_process(monkeypatch):
    """Load 1.5, of which this process kept half a core busy over two minutes: 1.0 left."""
    monkeypatch.setattr(O, "_runnable_others", lambda: None)   # no current count: the average
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    monkeypatch.setattr(O, "_start_wall", time.monotonic() - 120.0)
    monkeypatch.setattr(O, "_start_cpu", time.process_time() - 60.0)
    assert O.other_load() == pytest.approx(1.0, abs=0.01)
    # just started: a second of CPU counts over the load average's one-minute window
    monkeypatch.setattr(O, "_start_wall", time.monotonic() - 1.0)
    monkeypatch.setattr(O, "_start_cpu", time.process_time() - 1.0)
    assert O.other_load() == pytest.approx(1.5 - 1 / 60, abs=0.01)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert O.other_load() == 0.0      # never negative


def test_a_load_that_has_ended_does_not_count(monkeypatch):
    """The average still holds a compile that finished a moment ago; nothing else runs now:
    no load. With 3 other tasks runnable now, the average (1.5) is the load."""
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    monkeypatch.setattr(O, "_start_wall", time.monotonic() - 120.0)
    monkeypatch.setattr(O, "_start_cpu", time.process_time())
    monkeypatch.setattr(O, "_runnable_others", lambda: 0)
    assert O.other_load() == 0.0
    assert O.oversubscribed(2, cores=2) is None
    monkeypatch.setattr(O, "_runnable_others", lambda: 3)
    assert O.other_load() == pytest.approx(1.5, abs=0.01)
    assert O.oversubscribed(2, cores=2) is not None


def test_runnable_count_is_read_where_the_platform_has_it():
    now = O._runnable_others()
    assert now is None if not os.path.exists("/proc/loadavg") else (isinstance(now, int) and now >= 0)


def test_no_load_average_never_warns(monkeypatch):
    monkeypatch.delattr(os, "getloadavg")
    assert O.other_load() is None
    assert O.oversubscribed(64, cores=1) is None


@pytest.fixture
def fresh_warning():
    """The once-per-process warning not given yet (conftest counts it as given)."""
    O.reset_warning()
    yield
    O._warned = True


def _machine(monkeypatch, load, cores=2):
    monkeypatch.setattr(O, "other_load", lambda: load)
    monkeypatch.setattr(O, "available_cores", lambda: cores)


def test_warns_once_with_the_fix(fresh_warning, monkeypatch):
    _machine(monkeypatch, 1.0)
    with pytest.warns(O.OversubscriptionWarning, match=r"1\.0 cores busy.*2 threads, on 2 cores"
                      r".*Fix: do less") as record:
        assert O.warn_if_oversubscribed(2, "do less")
    assert len(record) == 1 and issubclass(record[0].category, RuntimeWarning)
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not O.warn_if_oversubscribed(2, "do less")   # once per process


def test_one_thread_or_a_quiet_machine_does_not_warn(fresh_warning, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _machine(monkeypatch, 5.0)
        assert not O.warn_if_oversubscribed(1, "nothing to fix")
        _machine(monkeypatch, 0.0)
        assert not O.warn_if_oversubscribed(2, "nothing to fix")
    assert not O._warned


def _fit(**kwargs):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 2, 40)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        warnings.filterwarnings("ignore", "Stochastic Optimizer")
        return fastmlp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0,
                                     **kwargs).fit(X, y)


def test_fit_warns_once_on_a_busy_machine(fresh_warning, monkeypatch, thread_state):
    fastmlp.set_num_threads(2)   # the fit then runs on 2 threads (no small-step limit)
    _machine(monkeypatch, 1.5)
    with pytest.warns(O.OversubscriptionWarning,
                      match=r"2 threads.*Fix: fastmlp\.set_num_threads\(1\)") as record:
        _fit()
    ours = [w for w in record if w.category is O.OversubscriptionWarning]
    assert len(ours) == 1 and ours[0].filename == __file__   # points at the fit call
    with warnings.catch_warnings():
        warnings.simplefilter("error", O.OversubscriptionWarning)
        _fit()                   # once


def test_fit_is_silent_on_a_quiet_machine_or_on_one_thread(fresh_warning, monkeypatch,
                                                           thread_state):
    fastmlp.set_num_threads(2)
    _machine(monkeypatch, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", O.OversubscriptionWarning)
        _fit()
        _machine(monkeypatch, 3.0)
        with fastmlp.threadpool_limits(1):
            _fit()
    assert not O._warned


@pytest.mark.parametrize("load,warned", [(1.5, True), (0.0, False)])
def test_train_command_warns_with_its_option(fresh_warning, monkeypatch, thread_state, capsys,
                                             load, warned):
    _machine(monkeypatch, load)
    assert main(["train", "--epochs", "1", "--quiet", "--hidden", "8", "--threads", "2"]) == 0
    err = capsys.readouterr().err.splitlines()
    if warned:
        assert len(err) == 1, err
        assert err[0].startswith("fastmlp train: warning: this machine is oversubscribed: ")
        assert err[0].endswith("Fix: --threads 1")
    else:
        assert err == []


@pytest.mark.parametrize("load,warned", [(1.5, True), (0.0, False)])
def test_bench_warns_by_the_same_rule(monkeypatch, capsys, load, warned):
    """``fastmlp bench`` (smallest run, fastmlp only) on numpy's BLAS pool as it is."""
    import argparse

    from fastmlp import _bench as bench
    _machine(monkeypatch, load, cores=_numpy_blas_threads() or 1)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--seconds", "0.01", "--repeats", "1", "--configs", "784-50-10",
                              "--dtypes", "float32", "--only", "fastmlp"])
    assert bench.run(args) == 0
    err = capsys.readouterr().err
    assert ("fastmlp bench: warning: other processes keep" in err) == warned
