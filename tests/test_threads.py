"""Thread counts: results must not depend on them (SPEC; TESTING.md: bitwise for 1..16 threads).

The kernels are called directly with n_threads = 1, 2, 4 over arrays of
several 16384-item chunks (so the OpenMP branch really splits the work), and
the layers are run under set_num_threads(1|2|4) with the backend's
threads.PARALLEL_MIN_ELEMENTS set to 0 so its OpenMP path is taken. Also the
set/get_num_threads API (bounds, the warning above the cores, None restoring the
counts fastmlp found, no silent undo by an estimator fit's BLAS limit), OMP_NUM_THREADS,
and concurrent use of separate layer instances from Python threads. Fork safety is in
test_fork.py.
"""
import os
import subprocess
import sys
import tempfile
import threading
import warnings

import numpy as np
import pytest
from conftest import numpy_blas_threads as _numpy_blas_threads
from conftest import set_numpy_blas as _set_numpy_blas
from conftest import DTYPES, assert_bits_identical
from threadpoolctl import ThreadpoolController, threadpool_info

import fastmlp
from fastmlp import _backend, _blas
from fastmlp import functions as F
from fastmlp import layers as L
from fastmlp import threads as T
from fastmlp._kernels import activations, affine, optim, softmax_ce
from fastmlp._kernels import threads as omp

THREADS = [1, 2, 4]
# More threads than cores is allowed with a RuntimeWarning; the tests below ask for 4 on
# machines of any size (test_more_threads_than_cores_warns checks the warning itself).
pytestmark = pytest.mark.filterwarnings("ignore:n=.* cores available:RuntimeWarning")
BIG = 3 * 16384 + 123  # several kernel chunks, and a ragged last one


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _same_for_all_thread_counts(run):
    """run(n_threads) -> list of arrays/floats; all thread counts must give identical bits."""
    results = {n: run(n) for n in THREADS}
    for n in THREADS[1:]:
        for i, (a, b) in enumerate(zip(results[1], results[n])):
            a, b = np.asarray(a), np.asarray(b)
            assert a.tobytes() == b.tobytes(), (
                f"result {i} differs between 1 and {n} threads "
                f"(max |diff| {np.max(np.abs(a.astype(np.float64) - b)):.3g})")


def test_openmp_is_built_in():
    """Otherwise every n_threads > 1 below would silently run serially and prove nothing.

    A build made on purpose without OpenMP (``FASTMLP_NO_OPENMP=1 pip install .``) runs
    these tests with that variable set: then no OpenMP is the expected outcome.
    """
    assert fastmlp.threads.openmp_enabled() == (os.environ.get("FASTMLP_NO_OPENMP") != "1")


def test_without_openmp_asking_for_threads_warns_once(monkeypatch, restore_threads):
    monkeypatch.setattr(fastmlp.threads, "openmp_enabled", lambda: False)
    monkeypatch.setattr(fastmlp.threads, "_warned_no_openmp", False)
    with pytest.warns(RuntimeWarning, match="without OpenMP"):
        fastmlp.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastmlp.set_num_threads(2)   # the second time: silent
        fastmlp.set_num_threads(1)


# ---------------------------------------------------------------- kernel modules, n_threads given

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_activation_kernels_bitwise_across_n_threads(rng, dtype):
    x, dout = _rand(rng, BIG, dtype, 3.0), _rand(rng, BIG, dtype)

    def run(n):
        out, mask = np.empty_like(x), np.empty(BIG, np.uint8)
        activations.relu_forward(x, out, mask, n)
        dx = np.empty_like(x)
        activations.relu_backward(dout, mask, dx, n)
        s, ds = np.empty_like(x), np.empty_like(x)
        activations.sigmoid_forward(x, s, n)
        activations.sigmoid_backward(dout, s, ds, n)
        return [out, mask, dx, s, ds]

    _same_for_all_thread_counts(run)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("n,c", [(64, 1023), (1023, 64), (5, 3)])
def test_softmax_ce_kernels_bitwise_across_n_threads(rng, dtype, n, c):
    x = _rand(rng, (n, c), dtype, 4.0)
    labels = rng.integers(0, c, n).astype(np.intp)
    onehot = np.eye(c, dtype=dtype)[labels]

    def run(k):
        y0, y1, y2 = (np.empty_like(x) for _ in range(3))
        softmax_ce.softmax_forward(x, y0, k)
        loss1 = softmax_ce.softmax_ce_forward_labels(x, labels, y1, k)
        loss2 = softmax_ce.softmax_ce_forward_onehot(x, onehot, y2, k)
        return [y0, y1, y2, np.float64(loss1), np.float64(loss2)]

    _same_for_all_thread_counts(run)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("n,m", [(37, 1000), (2000, 100), (1, 5000), (1023, 17)])
def test_column_sums_and_affine_backward_bitwise_across_n_threads(rng, dtype, n, m):
    """db = dout.sum(0): split over columns, never over rows, so the bits cannot change."""
    dout = _rand(rng, (n, m), dtype)
    x, W = _rand(rng, (n, 7), dtype), _rand(rng, (7, m), dtype)

    def run(k):
        sums = np.empty(m, dtype)
        affine.column_sums(dout, sums, k)
        dx, dW, db = np.empty((n, 7), dtype), np.empty((7, m), dtype), np.empty(m, dtype)
        affine.affine_backward(dout, x, W, dx, dW, db, k)
        return [sums, db]

    _same_for_all_thread_counts(run)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
                                  "nesterov_sklearn"])
def test_optimizer_kernel_bitwise_across_n_threads(rng, dtype, rule):
    shapes = [(BIG,), (300, 200), (5,)]
    p0 = [_rand(rng, s, dtype) for s in shapes]
    g = [_rand(rng, s, dtype) for s in shapes]
    h0 = [np.abs(_rand(rng, s, dtype)) for s in shapes]
    m0 = [_rand(rng, s, dtype) for s in shapes]
    code = _backend.OPTIMIZER_RULES[rule]
    two_states = rule == "adam"
    one_state = rule != "sgd"

    def run(k):
        p, h, m = [a.copy() for a in p0], [a.copy() for a in h0], [a.copy() for a in m0]
        optim.update(code, p, g, m if one_state else None, h if two_states else None, 0.01,
                     0.9, 0.99, 0.9, 0.999, 1e-7, k)
        return p + h + m

    _same_for_all_thread_counts(run)


# ---------------------------------------------------------------- through set_num_threads

def test_backend_hands_the_thread_count_to_the_kernels(parallel_kernels, monkeypatch, rng):
    """With the threshold at 0, set_num_threads(n) reaches the kernels as n_threads = n."""
    seen = []

    class Spy:
        def __init__(self, module):
            self._m = module

        def __getattr__(self, name):
            fn = getattr(self._m, name)

            def wrapper(*args):
                seen.append((name, args[-1]))
                return fn(*args)
            return wrapper

    monkeypatch.setattr(_backend, "activations", Spy(activations))
    for n in THREADS:
        fastmlp.set_num_threads(n)
        assert fastmlp.get_num_threads() == n
        assert T.kernel_threads(1) == n
        L.Relu().forward(np.ones((3, 4)))
        assert seen[-1] == ("relu_forward", n)


def test_small_work_stays_serial(restore_threads, monkeypatch):
    fastmlp.set_num_threads(4)
    monkeypatch.setattr(T, "OPENMP_SHARES_BLAS_POOL", True)
    assert T.kernel_threads(T.PARALLEL_MIN_ELEMENTS - 1) == 1
    assert T.kernel_threads(T.PARALLEL_MIN_ELEMENTS) == 4
    monkeypatch.setattr(T, "OPENMP_SHARES_BLAS_POOL", False)   # beside a pthreads BLAS: serial
    assert T.kernel_threads(10 * T.PARALLEL_MIN_ELEMENTS) == 1


def _layer_results(dtype, rng_seed):
    rng = np.random.default_rng(rng_seed)
    x = _rand(rng, (300, 200), dtype, 3.0)  # 60000 items: several chunks
    dout = _rand(rng, x.shape, dtype)
    labels = rng.integers(0, 200, 300)
    onehot = np.eye(200, dtype=dtype)[labels]
    out = []
    r = L.Relu()
    out += [r.forward(x), r.mask, r.backward(dout)]
    s = L.Sigmoid()
    out += [s.forward(x), s.backward(dout)]
    for t in (labels, onehot):
        sm = L.SoftmaxWithLoss()
        out += [np.float64(sm.forward(x, t)), sm.y, sm.backward(0.5)]
    ms = L.MSELoss()
    out += [np.float64(ms.forward(x, dout)), ms.backward()]
    mul, add = L.MulLayer(), L.AddLayer()
    out += [mul.forward(x, dout), *mul.backward(x), add.forward(x, dout), *add.backward(dout)]
    out += [F.softmax(x), F.sigmoid(x), F.relu(x), np.float64(F.cross_entropy_error(F.softmax(x), labels)),
            np.float64(F.mean_squared_error(x, dout))]
    a = L.Affine(_rand(rng, (200, 3), dtype), _rand(rng, 3, dtype))
    a.forward(x)
    a.backward(_rand(rng, (300, 3), dtype))
    out += [a.db]  # the reduction fastmlp owns (the GEMMs are numpy's BLAS: see below)
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_layers_bitwise_across_set_num_threads(parallel_kernels, dtype):
    def run(n):
        fastmlp.set_num_threads(n)
        return _layer_results(dtype, 7)

    _same_for_all_thread_counts(run)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("n,k,m", [(100, 784, 50), (100, 50, 10), (128, 784, 100), (100, 100, 100),
                                   (256, 256, 256), (100, 1023, 17)])
def test_affine_bitwise_across_fastmlp_threads(parallel_kernels, rng, dtype, n, k, m):
    """fastmlp's own work (bias add, db, the kernels' OpenMP paths) gives the same bits for
    any thread count. The GEMMs run in numpy's BLAS, whose bits can change with *its*
    thread count (OpenBLAS 0.3.31 measured here: 1 vs 2 threads differ in the last bits
    for (100, 100, 100) float32), so the BLAS pool is held at one count here."""
    from threadpoolctl import threadpool_limits

    x, W, b, dout = (_rand(rng, s, dtype) for s in ((n, k), (k, m), (m,), (n, m)))

    def run(t):
        fastmlp.set_num_threads(t)
        with threadpool_limits(limits=2, user_api="blas"):
            layer = L.Affine(W, b)
            out = layer.forward(x)
            dx = layer.backward(dout)
            return [out, dx, layer.dW, layer.db]

    _same_for_all_thread_counts(run)


def test_repeated_runs_bitwise(parallel_kernels):
    fastmlp.set_num_threads(2)
    first = _layer_results(np.float32, 3)
    for _ in range(3):
        for a, b in zip(first, _layer_results(np.float32, 3)):
            assert_bits_identical(a, b)


# ---------------------------------------------------------------- the API

@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError),
                                     ("2", TypeError), (2.0, TypeError), ([2], TypeError)])
def test_set_num_threads_rejects(restore_threads, bad, exc):
    before = fastmlp.get_num_threads()
    with pytest.raises(exc, match=r"\bn\b"):
        fastmlp.set_num_threads(bad)
    assert fastmlp.get_num_threads() == before


def test_set_num_threads_sets_blas_pool_and_none_restores_default(restore_threads):
    path = _blas.numpy_blas_path()
    default = fastmlp.get_num_threads()
    fastmlp.set_num_threads(np.int64(3))
    assert fastmlp.get_num_threads() == 3
    if path is not None:
        blas = ThreadpoolController().select(filepath=path).lib_controllers
        assert blas and all(lib.num_threads == 3 for lib in blas), "numpy's BLAS pool was not limited"
    fastmlp.set_num_threads(None)
    assert fastmlp.get_num_threads() == default


def test_omp_num_threads_respected():
    env = dict(os.environ, OMP_NUM_THREADS="3")
    proc = subprocess.run([sys.executable, "-c", "import fastmlp; print(fastmlp.get_num_threads())"],
                          capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"
    assert proc.stderr == ""


def test_separate_layers_from_python_threads(restore_threads):
    """One instance per thread (layers cache x): concurrent results equal the serial ones."""
    fastmlp.set_num_threads(1)
    rng = np.random.default_rng(11)
    W, b = _rand(rng, (64, 32), np.float64), _rand(rng, 32, np.float64)
    W.flags.writeable = False
    xs = [_rand(rng, (50, 64), np.float64) for _ in range(8)]
    labels = [rng.integers(0, 32, 50) for _ in range(8)]

    def work(i):
        a, r, s = L.Affine(W, b), L.Relu(), L.SoftmaxWithLoss()
        res = []
        for _ in range(20):
            h = r.forward(a.forward(xs[i]))
            loss = s.forward(h, labels[i])
            dx = a.backward(r.backward(s.backward()))
            res = [h, np.float64(loss), dx, a.dW, a.db]
        return res

    serial = [work(i) for i in range(8)]
    results = [None] * 8
    errors = []

    def target(i):
        try:
            results[i] = work(i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got, want in zip(results, serial):
        for g, w in zip(got, want):
            assert_bits_identical(g, w)


# ---------------------------------------------------------------- bounds, None, fits



@pytest.fixture
def thread_state():
    """Everything these tests change, put back afterwards: fastmlp's setting and saved
    originals, numpy's BLAS pool and OpenMP's max threads."""
    if _blas.numpy_blas_path() is None or _numpy_blas_threads() is None:
        pytest.skip("numpy's BLAS cannot be controlled through threadpoolctl here")
    saved = {k: getattr(T, k) for k in ("_requested", "_originals")}
    blas, omp_max = _numpy_blas_threads(), omp.omp_max_threads()
    yield blas, omp_max
    for k, v in saved.items():
        setattr(T, k, v)
    _set_numpy_blas(blas)
    omp.set_omp_max_threads(omp_max)


@pytest.mark.parametrize("bad", [T.MAX_THREADS + 1, 100000, 2**31, 2**31 - 1, 2**63, 2**64,
                                 np.int64(2**40), np.uint64(2**64 - 1)])
def test_set_num_threads_rejects_too_many(thread_state, bad):
    before = (T._requested, _numpy_blas_threads(), omp.omp_max_threads())
    with pytest.raises(ValueError, match=rf"\bn\b.*<= {T.MAX_THREADS}.*got {int(bad)}"):
        fastmlp.set_num_threads(bad)
    assert (T._requested, _numpy_blas_threads(), omp.omp_max_threads()) == before


def test_max_threads_is_accepted(thread_state, monkeypatch):
    monkeypatch.setattr(T, "available_cores", lambda: T.MAX_THREADS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastmlp.set_num_threads(T.MAX_THREADS)
    assert fastmlp.get_num_threads() == T.MAX_THREADS
    fastmlp.set_num_threads(None)


def test_more_threads_than_cores_warns(thread_state, monkeypatch):
    monkeypatch.setattr(T, "available_cores", lambda: 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastmlp.set_num_threads(3)     # as many as the cores: silent
    with pytest.warns(RuntimeWarning, match=r"n=4 .*3 cores") as record:
        fastmlp.set_num_threads(4)
    assert record[0].filename == __file__  # points at the caller
    assert fastmlp.get_num_threads() == 4  # a warning, not a refusal
    assert _numpy_blas_threads() == 4


def test_available_cores_is_the_affinity():
    if hasattr(os, "sched_getaffinity"):
        assert T.available_cores() == len(os.sched_getaffinity(0))
    assert T.available_cores() >= 1


@pytest.mark.parametrize("first,second", [(1, None), (2, 1), (1, 2)])
def test_none_restores_what_fastmlp_found(thread_state, first, second):
    """BLAS and OpenMP set elsewhere beforehand (here 3 and 3): set_num_threads changes both,
    None puts both back, however many calls came between."""
    def omp_(n):   # a build without OpenMP has one kernel thread, whatever is asked
        return n if T.openmp_enabled() else 1

    _set_numpy_blas(3)
    omp.set_omp_max_threads(3)
    fastmlp.set_num_threads(first)
    assert (_numpy_blas_threads(), omp.omp_max_threads()) == (first, omp_(first))
    if second is not None:
        fastmlp.set_num_threads(second)
        assert (_numpy_blas_threads(), omp.omp_max_threads()) == (second, omp_(second))
    fastmlp.set_num_threads(None)
    assert _numpy_blas_threads() == 3
    assert omp.omp_max_threads() == omp_(3)
    if T.openmp_enabled():
        assert fastmlp.get_num_threads() == 3     # the default follows OpenMP's setting again
    assert T._originals is None
    # nothing left to restore: a second None changes nothing, even after outside changes
    _set_numpy_blas(1)
    fastmlp.set_num_threads(None)
    assert _numpy_blas_threads() == 1


def test_none_without_a_set_changes_nothing(thread_state):
    _set_numpy_blas(3)
    fastmlp.set_num_threads(None)
    assert _numpy_blas_threads() == 3


def test_openmp_setting_seen_by_threadpoolctl(thread_state):
    fastmlp.set_num_threads(1)
    gomp = [i for i in threadpool_info() if i["user_api"] == "openmp"]
    if fastmlp.threads.openmp_enabled() and gomp:
        assert any(i["num_threads"] == 1 for i in gomp)
    fastmlp.set_num_threads(None)
    assert omp.omp_max_threads() == thread_state[1]


# A small fit (its steps under SMALL_STEP_FLOPS) runs numpy's BLAS on one thread and puts
# back the count it found. Its training loop is patched to act in the middle of the fit.

def _small_fit(monkeypatch, during):
    from fastmlp import _estimator_base as estimator

    original = estimator.BaseMLP._run_epochs
    seen = []

    def run_epochs(self, *args, **kwargs):
        seen.append(_numpy_blas_threads())
        during()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(estimator.BaseMLP, "_run_epochs", run_epochs)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        fastmlp.MLPClassifier(hidden_layer_sizes=(7,), max_iter=3, random_state=0).fit(X, y)
    assert seen == [1], "the fit did not limit numpy's BLAS to one thread"


def test_small_fit_restores_the_blas_count_it_found(thread_state, monkeypatch):
    fastmlp.set_num_threads(None)
    _set_numpy_blas(3)
    _small_fit(monkeypatch, lambda: None)
    assert _numpy_blas_threads() == 3
    assert T._originals is None  # the fit left nothing for set_num_threads(None) to undo


@pytest.mark.parametrize("n", [1, 2])
def test_set_num_threads_during_a_fit_is_not_undone(thread_state, monkeypatch, n):
    """n = 1 equals the fit's own limit: only the generation counter can tell it apart."""
    fastmlp.set_num_threads(None)
    _set_numpy_blas(3)
    _small_fit(monkeypatch, lambda: fastmlp.set_num_threads(n))
    assert _numpy_blas_threads() == n
    assert fastmlp.get_num_threads() == n
    fastmlp.set_num_threads(None)  # back to what fastmlp found before the fit began
    assert _numpy_blas_threads() == 3


def test_set_num_threads_from_another_thread_during_a_fit(thread_state, monkeypatch):
    fastmlp.set_num_threads(None)
    _set_numpy_blas(3)

    def from_another_thread():
        t = threading.Thread(target=fastmlp.set_num_threads, args=(2,))
        t.start()
        t.join()

    _small_fit(monkeypatch, from_another_thread)
    assert _numpy_blas_threads() == 2
    assert fastmlp.get_num_threads() == 2


def test_set_num_threads_none_during_a_fit(thread_state, monkeypatch):
    fastmlp.set_num_threads(2)
    fastmlp.set_num_threads(None)       # fastmlp back to the default, BLAS as found
    _set_numpy_blas(3)
    _small_fit(monkeypatch, lambda: fastmlp.set_num_threads(None))
    assert _numpy_blas_threads() == 3   # None's restore stands; the fit's exit keeps it


def test_threadpoolctl_change_during_a_fit_is_kept(thread_state, monkeypatch):
    fastmlp.set_num_threads(None)
    _set_numpy_blas(3)
    _small_fit(monkeypatch, lambda: _set_numpy_blas(2))
    assert _numpy_blas_threads() == 2
    assert T._originals is None   # and set_num_threads(None) will not undo it either
    fastmlp.set_num_threads(None)
    assert _numpy_blas_threads() == 2


def test_nested_fit_limits(thread_state):
    """Two overlapping fits (as from two Python threads): restored when the last one leaves."""
    fastmlp.set_num_threads(None)
    _set_numpy_blas(3)
    a, b = T.blas_threads_for_step(0), T.blas_threads_for_step(0)
    a.__enter__()
    b.__enter__()
    assert _numpy_blas_threads() == 1
    a.__exit__(None, None, None)
    assert _numpy_blas_threads() == 1
    b.__exit__(None, None, None)
    assert _numpy_blas_threads() == 3


def test_small_fit_in_a_worker_thread_limits_and_restores(thread_state, monkeypatch):
    """threadpoolctl (>= 3.8) ignores OpenBLAS limits set from threads other than the first
    one that set any (here the main thread, just below): fastmlp's limits still apply."""
    fastmlp.set_num_threads(None)
    _set_numpy_blas(3)
    errors = []

    def work():
        try:
            _small_fit(monkeypatch, lambda: None)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors, errors
    assert _numpy_blas_threads() == 3
