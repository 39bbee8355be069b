"""Child processes using fastmlp after the parent has used it: fork, spawn, forkserver.

GNU OpenMP (libgomp) keeps a thread pool per thread that started a team; a process
forked from that thread inherits the pool's bookkeeping but not its threads, and its
next team waits for them forever. So after fastmlp handed its kernels more than one
thread, a forked child runs them serially (fastmlp.threads.get_num_threads() is 1
there). The parent here runs multi-threaded OpenMP kernels (directly with n_threads=2,
and through the layers with the backend's gates opened as for an OpenMP-threaded BLAS);
each child predicts, takes a gradient and an optimizer step, fits a small estimator and
runs a kernel, under a timeout (a hang is a failure), and its results are compared with
the parent's. numpy's own OpenBLAS (pthreads) has its own fork handler: the products in
the children exercise it.
"""
import multiprocessing as mp
import os
import pickle
import select
import signal
import threading
import time
import traceback
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import threads as T
from fastmlp._kernels import activations

TIMEOUT = 60                        # seconds; a child still running then is hung
BIG = (60, 1000)                    # 60000 items: several 16384-item kernel chunks

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
              pytest.mark.filterwarnings("ignore:n=.* cores available:RuntimeWarning")]


def _open_gates():
    """Make the layers' kernels take their OpenMP path with 2 threads, as they do beside an
    OpenMP-threaded BLAS (numpy's own wheels ship a pthreads one: there they stay serial)."""
    T.OPENMP_SHARES_BLAS_POOL = True
    T.PARALLEL_MIN_ELEMENTS = 0
    fastmlp.set_num_threads(2)


def _work(kernel_threads):
    """What every process computes: name -> array."""
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((40, 30)), rng.integers(0, 4, 40)
    net = fastmlp.TwoLayerNet(30, 20, 4, seed=1)
    out = {"predict": net.predict(x)}
    grads = net.gradient(x, t)
    out.update({"grad_" + k: v for k, v in grads.items()})
    params = {k: v.copy() for k, v in net.params.items()}
    opt = fastmlp.optimizers.Adam(lr=0.01)
    for _ in range(3):
        opt.update(params, grads)
    out.update({"adam_" + k: v for k, v in params.items()})
    X, y = rng.standard_normal((80, 6)), rng.integers(0, 3, 80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        clf = fastmlp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
        out["fit_proba"] = clf.fit(X, y).predict_proba(X)
    big = rng.standard_normal(BIG)
    relu, mask = np.empty(big.size), np.empty(big.size, np.uint8)
    activations.relu_forward(big.reshape(-1), relu, mask, kernel_threads)
    out["kernel_relu"], out["kernel_mask"] = relu, mask
    layer = fastmlp.layers.Relu()   # through the backend: get_num_threads() threads
    out["layer_relu"] = layer.forward(big)
    out["layer_relu_backward"] = layer.backward(big)
    out["sigmoid"] = fastmlp.functions.sigmoid(big)
    out["softmax"] = fastmlp.functions.softmax(big)
    return out


def _in_child(mode):
    """A child's work: in a forked child with the parent's (inherited) settings; in a fresh
    (spawn/forkserver) process it opens the gates itself and uses 2 threads everywhere."""
    if mode in ("spawn", "forkserver"):
        _open_gates()
        kernel_threads = 2
    else:
        kernel_threads = fastmlp.get_num_threads()   # what fastmlp hands out here
    out = _work(kernel_threads)
    out["num_threads"] = np.array(fastmlp.get_num_threads())
    out["blas_matmul_ok"] = np.array(_blas_check())
    return out


def _blas_check():
    """numpy's BLAS, multi-threaded, in this process (its own fork handler must have run)."""
    a = np.random.default_rng(2).random((400, 300))
    return bool(np.allclose(a @ a.T, np.einsum("ik,jk->ij", a, a)))


def _mp_target(conn, mode):
    try:
        conn.send(("ok", _in_child(mode)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _run_mp(mode):
    """Run _in_child(mode) in a multiprocessing child of that start method, under TIMEOUT."""
    ctx = mp.get_context(mode)
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_mp_target, args=(child_conn, mode), daemon=True)
    proc.start()
    child_conn.close()
    try:
        if not parent_conn.poll(TIMEOUT):
            pytest.fail(f"the {mode} child hung (no result within {TIMEOUT} s)")
        status, payload = parent_conn.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert status == "ok", f"the {mode} child failed:\n{payload}"
    return payload


def _run_raw_fork(fn):
    """fn() in an os.fork child; its pickled result through a pipe, under TIMEOUT."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(r)
            try:
                data = pickle.dumps(("ok", fn()))
            except BaseException:
                data, code = pickle.dumps(("error", traceback.format_exc())), 1
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + TIMEOUT
    try:
        with os.fdopen(r, "rb") as f:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([f], [], [], left)[0]:
                    os.kill(pid, signal.SIGKILL)
                    pytest.fail(f"the forked child hung (no result within {TIMEOUT} s)")
                chunk = os.read(f.fileno(), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.waitpid(pid, 0)
    status, payload = pickle.loads(b"".join(chunks))
    assert status == "ok", f"the forked child failed:\n{payload}"
    return payload


@pytest.fixture
def parent_used_openmp(monkeypatch):
    """The parent (this process) runs OpenMP teams of 2 in this thread, directly and through
    the layers; fastmlp's setting, the gates and numpy's BLAS are put back afterwards."""
    monkeypatch.setattr(T, "OPENMP_SHARES_BLAS_POOL", True)
    monkeypatch.setattr(T, "PARALLEL_MIN_ELEMENTS", 0)
    blas = T._blas_threads()
    fastmlp.set_num_threads(2)
    ref = _work(kernel_threads=2)
    assert T._teams_started or not T.openmp_enabled()
    yield ref
    fastmlp.set_num_threads(None)
    if blas is not None:
        T._set_blas_threads(blas)


def _compare(got, ref):
    for k, want in ref.items():
        if k.startswith(("kernel_", "layer_", "sigmoid", "softmax")):
            # fastmlp's own kernels: the same bits for any thread count
            assert np.asarray(got[k]).tobytes() == np.asarray(want).tobytes(), k
        else:  # numpy's BLAS inside: its last bits may depend on its thread count
            np.testing.assert_allclose(got[k], want, rtol=1e-10, atol=1e-14, err_msg=k)
    assert bool(got["blas_matmul_ok"])


@pytest.mark.parametrize("mode", ["fork", "spawn", "forkserver"])
def test_children_after_parent_ran_openmp_teams(parent_used_openmp, mode):
    if mode not in mp.get_all_start_methods():
        pytest.skip(f"no {mode} start method here")
    got = _run_mp(mode)
    _compare(got, parent_used_openmp)
    forked = mode == "fork" and T.openmp_enabled()
    assert int(got["num_threads"]) == (1 if forked else 2)


def test_raw_fork_after_parent_ran_openmp_teams(parent_used_openmp):
    got = _run_raw_fork(lambda: _in_child("os.fork"))
    _compare(got, parent_used_openmp)
    assert int(got["num_threads"]) == (1 if T.openmp_enabled() else 2)


def test_forked_child_can_still_run_a_team_from_a_new_thread(parent_used_openmp):
    """libgomp's stale pool belongs to the thread that forked: a team of 2 started from a
    fresh thread in the child works (documents why the guard is about the forking thread)."""
    if not T.openmp_enabled():
        pytest.skip("built without OpenMP")

    def child():
        box = {}
        x = np.random.default_rng(3).standard_normal(5 * 16384)

        def run():
            out, mask = np.empty_like(x), np.empty(x.size, np.uint8)
            activations.relu_forward(x, out, mask, 2)
            box["out"] = out
        t = threading.Thread(target=run)
        t.start()
        t.join()
        return box["out"], np.maximum(x, 0)

    got, want = _run_raw_fork(child)
    assert got.tobytes() == want.tobytes()


def test_forked_child_set_num_threads_warns_and_stays_serial(parent_used_openmp):
    def child():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            fastmlp.set_num_threads(2)
        relu = fastmlp.layers.Relu().forward(np.ones(BIG))  # would hang with a team
        return ([str(w.message) for w in record], fastmlp.get_num_threads(),
                T._blas_threads(), float(relu.sum()))

    messages, n, blas, total = _run_raw_fork(child)
    if T.openmp_enabled():
        assert any("forked" in m for m in messages), messages
        assert n == 1
    assert blas in (None, 2)  # numpy's BLAS gets what was asked
    assert total == float(np.prod(BIG))


def test_fork_without_openmp_teams_keeps_the_thread_count(monkeypatch):
    """A parent whose kernels never ran OpenMP teams (numpy's pthreads BLAS: the usual case)
    gives its forked children the same thread count."""
    monkeypatch.setattr(T, "_teams_started", False)
    monkeypatch.setattr(T, "_fork_serial", False)
    n = fastmlp.get_num_threads()
    assert _run_raw_fork(fastmlp.get_num_threads) == n


def test_fork_during_a_fit_in_another_thread(monkeypatch):
    """A parent's fit (numpy's BLAS limited to one thread, fastmlp's locks held by other
    threads at the fork) leaves a forked child with neither: the BLAS count from before the
    fit, and fits and set_num_threads that do not deadlock."""
    if T._blas_threads() is None:
        pytest.skip("numpy's BLAS cannot be controlled through threadpoolctl here")
    blas = T._blas_threads()
    fastmlp.set_num_threads(None)
    T._set_blas_threads(3)
    fit = T.blas_threads_for_step(0)
    fit.__enter__()
    release = threading.Event()
    held = threading.Event()

    def hold_locks():
        with T._lock:   # the one lock of fastmlp's thread state (fit limits included)
            held.set()
            release.wait(TIMEOUT)

    holder = threading.Thread(target=hold_locks)
    holder.start()
    held.wait(TIMEOUT)
    try:
        assert T._blas_threads() == 1

        def child():
            before = T._blas_threads()
            fit.__exit__(None, None, None)   # entered in the parent: does nothing here
            rng = np.random.default_rng(0)
            X, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fastmlp.MLPClassifier(hidden_layer_sizes=(7,), max_iter=3,
                                      random_state=0).fit(X, y)
            after_fit = T._blas_threads()
            fastmlp.set_num_threads(1)
            fastmlp.set_num_threads(None)
            return before, after_fit, T._blas_threads()

        assert _run_raw_fork(child) == (3, 3, 3)
    finally:
        release.set()
        holder.join()
        fit.__exit__(None, None, None)
    assert T._blas_threads() == 3     # the parent's fit restores as usual
    T._set_blas_threads(blas)
