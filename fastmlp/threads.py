"""How many threads fastmlp computes with: its OpenMP kernels and numpy's BLAS pool.

The one home of fastmlp's thread policy (BLAS discovery itself is in ``_blas``):

- the user's setting: :func:`set_num_threads` / :func:`get_num_threads`, and for a block
  :class:`threadpool_limits`; the threads a step would use now: :func:`threads_in_use`
  (whether they oversubscribe a busy machine: ``_oversubscription``);
- which elementwise kernel gets more than one thread: :func:`kernel_threads`,
  :data:`PARALLEL_MIN_ELEMENTS`, :data:`OPENMP_SHARES_BLAS_POOL`;
- one BLAS thread while a small-step fit trains: :func:`blas_threads_for_step`,
  :data:`SMALL_STEP_FLOPS`;
- processes sharing one machine's cores (data-parallel ranks): :func:`threads_per_process`,
  :func:`set_threads_for_processes`.

State kept here (one process-wide setting, like numpy's BLAS pool itself), under one lock:

- ``_requested``: the count given to :func:`set_num_threads`, or None (the default);
- ``_generation``: bumped by every :func:`set_num_threads` call, so a temporary limit (a
  fit's one-BLAS-thread limit) can tell that the user chose meanwhile and must not undo
  that choice when it ends;
- ``_originals``: numpy's BLAS thread count and OpenMP's max threads as they were before
  fastmlp first changed them, restored by ``set_num_threads(None)``;
- ``_step_users``/``_step_token``: the fits now inside :func:`blas_threads_for_step`'s
  limit and how to undo it;
- fork safety: GNU OpenMP (libgomp) cannot start a thread team in a process forked from
  one whose forking thread already ran a team (the child waits for the parent's pool
  threads, which do not exist in it, forever). So once fastmlp may have handed its
  kernels more than one thread, a forked child keeps its kernels on one thread.
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Any, Literal

from . import _blas
from ._kernels import threads as _omp
from ._validation import check_positive_int

#: The most threads :func:`set_num_threads` accepts (a ValueError above it). A fixed,
#: machine-independent bound: far above any core count fastmlp is meant for, small enough
#: that no thread pool tries to start millions of threads or overflows a C ``int``
#: (OpenBLAS silently ignores 2**31 and caps larger counts at its build's maximum, 64 in
#: numpy's wheels). More threads than available cores is allowed, with a RuntimeWarning.
MAX_THREADS = 4096

#: Below this many elements an elementwise kernel runs serially: handing a short loop to a
#: thread team costs more than it wins.
PARALLEL_MIN_ELEMENTS = 1 << 20

#: OpenMP kernels are safe next to numpy's BLAS only when that BLAS runs on OpenMP too (one
#: pool). With a pthreads BLAS (numpy's own wheels), a GEMM followed by an OpenMP loop leaves
#: two sets of spinning threads fighting for the cores: measured here up to 60x slower. The
#: elementwise kernels then run serially (they cost 0-15% of a step beside the GEMMs) and
#: the BLAS keeps every core for the products.
OPENMP_SHARES_BLAS_POOL = _blas.threading_layer() == "openmp"

#: A training step whose matrix products total fewer flops than this (6 * batch * sum of
#: in*out over the layers; 8.9e6 for digits' 64-100-10 at batch 200) runs numpy's BLAS on
#: one thread while a fit trains (:func:`blas_threads_for_step`), unless
#: :func:`set_num_threads` was called. Such GEMMs take ~0.1-0.3 ms; handing them to a
#: thread pool costs more than it saves on few cores, and on a busy machine a pool that
#: waits for a descheduled thread made them ~10x slower (bench/bench_estimator.py).
#: sklearn's KMeans limits BLAS inside fit the same way.
SMALL_STEP_FLOPS = 16e6

_log = logging.getLogger(__name__)   # thread decisions, at DEBUG level
_lock = threading.RLock()
_requested: int | None = None   # set by set_num_threads; None means the default
_generation = 0            # bumped by every set_num_threads call
_originals: Any = None     # (numpy BLAS threads or None, OpenMP max threads) before fastmlp
_controller = None         # threadpoolctl controller of numpy's BLAS, looked up once
_warned_no_openmp = False
_teams_started = False     # fastmlp may have run an OpenMP team in this process
_fork_serial = False       # forked after that: kernels stay on one thread
_warned_fork_serial = False
_step_users = 0            # fits inside blas_threads_for_step's limit now
_step_token: Any = None    # from _limit_blas_temporarily, while that limit is on


def openmp_enabled() -> bool:
    """True when the compiled kernels were built with OpenMP."""
    return _omp.openmp_enabled()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _default_threads():
    if _omp.openmp_enabled():
        return _omp.omp_max_threads()  # OMP_NUM_THREADS and threadpool_limits respected
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cores()


def get_num_threads() -> int:
    """The number of threads fastmlp's kernels may use.

    The value given to :func:`set_num_threads`, else the available cores
    (``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` respected).

    In a process made by ``os.fork`` (or multiprocessing's "fork" start method) from
    one in which fastmlp ran its kernels on OpenMP threads, this is 1: GNU OpenMP hangs
    when such a child starts threads, so fastmlp's kernels stay serial there. numpy's
    BLAS is not affected. Processes started with "spawn" or "forkserver" are not
    affected either.
    """
    global _teams_started
    if _fork_serial:
        return 1
    n = _requested if _requested is not None else _default_threads()
    if n > 1 and not _teams_started and openmp_enabled() and OPENMP_SHARES_BLAS_POOL:
        # The kernels open an OpenMP team only beside an OpenMP-threaded BLAS (see
        # kernel_threads, which asks here for the team's size just before).
        _teams_started = True
    return n


def kernel_threads(n_elements: int) -> int:
    """Threads for an elementwise kernel over ``n_elements`` items: 1 unless it is safe
    (:data:`OPENMP_SHARES_BLAS_POOL`) and pays (:data:`PARALLEL_MIN_ELEMENTS`), else
    :func:`get_num_threads`."""
    if not OPENMP_SHARES_BLAS_POOL or n_elements < PARALLEL_MIN_ELEMENTS:
        return 1
    return get_num_threads()


# ---------------------------------------------------------------- numpy's BLAS pool

def _blas_controller():
    """threadpoolctl's controller of numpy's BLAS (where fastmlp's GEMMs run), or None."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        path = _blas.numpy_blas_path()
        if path is None:
            return None
        _controller = ThreadpoolController().select(filepath=path)
    return _controller if _controller.lib_controllers else None


def _blas_threads():
    """numpy's BLAS thread count now, or None when it cannot be controlled."""
    controller = _blas_controller()
    return None if controller is None else controller.lib_controllers[0].num_threads


def _set_blas_threads(n):
    controller = _blas_controller()
    if controller is None:
        return
    for lib in controller.lib_controllers:
        # threadpoolctl >= 3.8 silently ignores limits on a pthreads OpenBLAS set from any
        # thread but the first one that set one (its "controlling thread"), and standalone
        # limits never release that control. set_num_threads is a process-wide setting
        # allowed from any thread, so it goes past that rule (without taking control away
        # from the caller's own threadpool_limits).
        real_set = getattr(lib, "_real_set_num_threads", None)
        (real_set or lib.set_num_threads)(n)


def _save_originals():
    """Remember numpy's BLAS and OpenMP's thread counts before fastmlp first changes them.

    A temporary limit (a fit) saves them too, so that a set_num_threads call made while it
    is on does not take the fit's limit for the original; the limit's end forgets them
    again unless set_num_threads was called meanwhile."""
    global _originals
    if _originals is None:
        _originals = (_blas_threads(), _omp.omp_max_threads())


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in fastmlp's kernels and in numpy's BLAS.

    fastmlp multiplies matrices with the BLAS numpy itself is linked against,
    so this also sets the thread count of numpy's own BLAS pool: numpy's
    ``@`` in the same process runs with ``n`` threads afterwards too. It also
    sets OpenMP's default team size (``omp_set_num_threads``, which OpenMP
    applies to the calling thread).

    ``n`` is an int from 1 to :data:`MAX_THREADS` (4096): a ``TypeError`` for
    anything not an integer (``bool`` included), a ``ValueError`` outside that
    range; a ``RuntimeWarning`` when ``n`` is more than the cores available to
    the process (threads then share cores, usually slower; numpy's OpenBLAS
    also caps its pool at its build's maximum, 64).

    Pass ``None`` to return to the default: fastmlp's kernels follow
    ``OMP_NUM_THREADS``/the cores again, and numpy's BLAS pool and OpenMP's
    setting get back the counts they had before fastmlp first changed them.
    For a setting that ends with a block, use :class:`threadpool_limits`.

    An estimator fit that limits numpy's BLAS to one thread for small networks
    (:func:`blas_threads_for_step`) does not undo a ``set_num_threads`` call
    made while it runs (from a callback or another thread): that call wins.

    fastmlp's own kernels give the same bits for any ``n``: every reduction
    (bias gradients, losses) has a fixed order. The matrix products are
    numpy's BLAS, whose last bits may change with its thread count (OpenBLAS
    splits some products differently on 1 and 2 threads); at a fixed count,
    repeated runs are bitwise identical.
    """
    global _requested, _generation, _originals, _warned_no_openmp, _warned_fork_serial
    if n is not None:  # check everything before any state changes
        n = check_positive_int(n, "n")
        if n > MAX_THREADS:
            raise ValueError(f"n must be <= {MAX_THREADS} (fastmlp.threads.MAX_THREADS), got {n}")
        cores = available_cores()
        if n > cores:
            warnings.warn(f"n={n} threads is more than the {cores} cores available to this "
                          "process: threads will share cores (usually slower).",
                          RuntimeWarning, stacklevel=2)
        if n > 1 and not openmp_enabled() and not _warned_no_openmp:
            _warned_no_openmp = True
            warnings.warn("fastmlp was built without OpenMP: its kernels run single-threaded "
                          "(numpy's BLAS still uses the threads asked for).", RuntimeWarning,
                          stacklevel=2)
        if n > 1 and _fork_serial and not _warned_fork_serial:
            _warned_fork_serial = True
            warnings.warn("this process was forked after fastmlp ran OpenMP threads, and GNU "
                          "OpenMP hangs if such a child starts threads: fastmlp's kernels stay "
                          "single-threaded here (numpy's BLAS uses the threads asked for). "
                          "Start processes with multiprocessing's 'spawn' or 'forkserver' "
                          "method to use threads in them.", RuntimeWarning, stacklevel=2)
    with _lock:
        _generation += 1
        if n is None:
            _requested = None
            if _originals is not None:
                blas, omp = _originals
                _originals = None
                if blas is not None:
                    _set_blas_threads(blas)
                _omp.set_omp_max_threads(omp)
                _log.debug("set_num_threads(None): numpy's BLAS back to %s threads, OpenMP to %s",
                           blas, omp)
            return
        _save_originals()
        _requested = n
        _set_blas_threads(n)
        _omp.set_omp_max_threads(n)
        _log.debug("set_num_threads(%d): numpy's BLAS and OpenMP on %d threads", n, n)


def threads_in_use() -> int:
    """The threads a training step started now would use: numpy's BLAS pool's count (where
    the products run; fastmlp's elementwise kernels run serially beside a pthreads BLAS or
    share its OpenMP pool), or :func:`get_num_threads` when that pool cannot be read."""
    blas = _blas_threads()
    return get_num_threads() if blas is None else blas


class threadpool_limits:
    """Context manager: numpy's BLAS and fastmlp's kernels on ``n`` threads inside the
    block, both back as they were on leaving it (also when it raises)::

        with fastmlp.threadpool_limits(1):
            model.fit(X, y)          # one thread, whatever the machine

    numpy's BLAS pool is set through threadpoolctl (the pool numpy's own ``@`` uses too,
    process-wide), OpenMP's default team size with ``omp_set_num_threads``. Inside the
    block the count acts like :func:`set_num_threads`: a fit keeps it (no one-thread
    limit for small steps). On leaving, everything is as on entering: the BLAS and OpenMP
    counts, a :func:`set_num_threads` setting (one made inside the block ends with it),
    and a fit's one-thread limit still on. ``n`` as in :func:`set_num_threads` (int in
    ``[1, MAX_THREADS]``). Not reentrant: one ``with`` per instance.
    """

    def __init__(self, n: int) -> None:
        n = check_positive_int(n, "n")
        if n > MAX_THREADS:
            raise ValueError(f"n must be <= {MAX_THREADS} (fastmlp.threads.MAX_THREADS), got {n}")
        self.n = n
        self._saved: tuple[Any, ...] | None = None

    def __enter__(self) -> threadpool_limits:
        global _requested, _generation
        with _lock:
            if self._saved is not None:
                raise RuntimeError("this threadpool_limits is already in use")
            blas = _blas_threads()
            if _step_token is not None:   # a fit's limit is on: the count it goes back to
                blas = _step_token[0]
            self._saved = (_requested, _originals, blas, _omp.omp_max_threads())
            _generation += 1   # a fit's limit ending inside the block leaves n alone
            _requested = self.n
            _set_blas_threads(self.n)
            _omp.set_omp_max_threads(self.n)
        _log.debug("threadpool_limits(%d): numpy's BLAS and OpenMP on %d threads", self.n, self.n)
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        global _requested, _originals, _generation, _step_token
        with _lock:
            if self._saved is None:
                return False
            (_requested, _originals, blas, omp), self._saved = self._saved, None
            _generation += 1
            _omp.set_omp_max_threads(omp)
            if _step_token is not None:   # a fit entered before the block still runs
                previous, n, _, saved_originals = _step_token
                _step_token = (previous, n, _generation, saved_originals)
                blas = n
            if blas is not None:
                _set_blas_threads(blas)
        _log.debug("threadpool_limits(%d) ends: numpy's BLAS back to %s threads, OpenMP to %s",
                   self.n, blas, omp)
        return False


# ---------------------------------------------------------------- processes sharing cores

def threads_per_process(sharing: int, cores: int | None = None) -> int:
    """Threads for one of ``sharing`` processes that run on the same cores.

    The cores available to this process (:func:`available_cores`, its CPU affinity) divided
    among the ``sharing`` processes whose affinity overlaps it (itself included), at least
    1. Data-parallel ranks on one machine each run their own BLAS pool; pools that together
    ask for more threads than there are cores spin against each other: two ranks with 2
    BLAS threads each on 2 cores made a GEMM + all-reduce step ~70x slower here.

    Parameters
    ----------
    sharing : int >= 1
    cores : int, optional
        Default :func:`available_cores`.

    Returns
    -------
    int
    """
    sharing = check_positive_int(sharing, "sharing")
    cores = available_cores() if cores is None else check_positive_int(cores, "cores")
    return max(1, cores // sharing)


def set_threads_for_processes(sharing: int, warn: bool = True) -> int:
    """Give this process its share of the cores: :func:`threads_per_process` threads for
    numpy's BLAS and fastmlp's kernels (through :func:`set_num_threads`).

    A count chosen with :func:`set_num_threads` before is kept. With ``warn``, a
    ``RuntimeWarning`` says when the processes oversubscribe the cores: more processes
    than cores, or a kept count that with the other processes' exceeds them.

    Returns
    -------
    int
        The thread count now in use.
    """
    cores = available_cores()
    n = threads_per_process(sharing, cores)
    kept = _requested
    if warn and sharing > cores:
        warnings.warn(f"{sharing} processes share the {cores} cores available here: each runs "
                      "1 BLAS thread, and they still compete for cores (much slower: start "
                      f"at most {cores} ranks per machine, or bind each to its own cores)",
                      RuntimeWarning, stacklevel=2)
    elif warn and kept is not None and kept * sharing > cores:
        warnings.warn(f"set_num_threads({kept}) in each of {sharing} processes sharing {cores} "
                      f"cores oversubscribes them (much slower); {n} thread(s) each would fit",
                      RuntimeWarning, stacklevel=2)
    if kept is not None:
        return kept
    set_num_threads(n)
    return n


# ---------------------------------------------------------------- temporary limits

def _limit_blas_temporarily(n):
    """Limit numpy's BLAS to ``n`` threads for a while (a fit, see :class:`_StepBlasLimit`).

    Returns a token for :func:`_end_temporary_limit`, or None when nothing changed
    (the BLAS cannot be controlled or already runs on ``n`` threads or fewer).
    """
    with _lock:
        current = _blas_threads()
        if current is None or current <= n:
            return None
        saved_originals = _originals is None
        _save_originals()
        _set_blas_threads(n)
        _log.debug("a fit with small steps: numpy's BLAS on %d thread(s) (was %d)", n, current)
        return current, n, _generation, saved_originals


def _end_temporary_limit(token):
    """Undo :func:`_limit_blas_temporarily`, unless the setting was changed meanwhile.

    Restores the count seen before the limit only if nobody called
    :func:`set_num_threads` since and numpy's BLAS still runs on the limited count (a
    ``threadpoolctl`` change made meanwhile is kept as well). True when it restored.
    """
    global _originals
    if token is None:
        return False
    previous, n, generation, saved_originals = token
    with _lock:
        if generation != _generation:
            _log.debug("fit's BLAS limit ends: a thread count set meanwhile is kept")
            return False  # set_num_threads since: it holds the originals now
        if saved_originals:
            _originals = None  # nothing of fastmlp's left for set_num_threads(None) to undo
        if _blas_threads() != n:
            _log.debug("fit's BLAS limit ends: numpy's BLAS was changed meanwhile, kept")
            return False
        _set_blas_threads(previous)
        _log.debug("fit's BLAS limit ends: numpy's BLAS back to %d threads", previous)
        return True


def blas_threads_for_step(step_flops: float) -> _StepBlasLimit:
    """Context manager: numpy's BLAS on one thread while a fit with small steps trains.

    ``step_flops`` is the cost of one training step's matrix products (6 * batch *
    sum of in*out over the layers). Below :data:`SMALL_STEP_FLOPS` (16e6), and unless
    :func:`set_num_threads` was called, numpy's BLAS runs on one thread inside the
    ``with`` block: such products take ~0.1-0.3 ms and a thread pool costs more than it
    saves there. Otherwise (big steps, or a thread count chosen by the user) it does
    nothing. fastmlp's estimators train inside it; use it around your own loops too::

        with fastmlp.threads.blas_threads_for_step(6 * batch * (64 * 100 + 100 * 10)):
            for x, t in batches:
                optimizer.update(net.params, net.gradient(x, t))

    The limit is process-wide (numpy's BLAS pool is), so blocks in several Python
    threads nest: it is lifted when the last one leaves, back to the count found when
    the first one entered. It never undoes a choice made meanwhile: after a
    :func:`set_num_threads` call (from a callback or another thread), or when numpy's
    BLAS no longer runs on one thread (a ``threadpoolctl`` limit), leaving keeps the
    setting as it is. A process forked while a block is on starts with no limit (the
    count from before it), and a block entered in the parent does nothing when it is
    left in the child. ``__exit__`` may be called once per ``__enter__``.
    """
    return _StepBlasLimit(step_flops < SMALL_STEP_FLOPS and _requested is None)


class _StepBlasLimit:
    """What :func:`blas_threads_for_step` returns; ``active`` False: a no-op."""

    def __init__(self, active: bool) -> None:
        self._active = active
        self._pid: int | None = None   # the process that entered, until it leaves

    def __enter__(self) -> _StepBlasLimit:
        global _step_users, _step_token
        if self._active:
            with _lock:
                if _step_users == 0:
                    _step_token = _limit_blas_temporarily(1)
                _step_users += 1
                self._pid = os.getpid()
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        global _step_users, _step_token
        pid, self._pid = self._pid, None
        if pid is None or pid != os.getpid():  # inactive, left already, or forked since
            return False
        with _lock:
            _step_users -= 1
            if _step_users == 0:
                token, _step_token = _step_token, None
                _end_temporary_limit(token)
        return False


# ---------------------------------------------------------------- fork

def _after_fork_in_child():
    """In a forked child: a fresh lock (another thread may have held it at the fork), no
    fit's BLAS limit (no fit runs here: the count from before it), and serial kernels if
    the parent may have run OpenMP teams (see :func:`get_num_threads`)."""
    global _lock, _fork_serial, _warned_fork_serial, _step_users, _step_token
    _lock = threading.RLock()
    token, _step_token, _step_users = _step_token, None, 0
    _end_temporary_limit(token)
    if _teams_started and not _fork_serial:
        _fork_serial = True
        _warned_fork_serial = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
