"""How many threads fastmlp computes with: its OpenMP kernels and numpy's BLAS pool."""
import os
import warnings

from threadpoolctl import ThreadpoolController

from ._kernels import threads as _omp
from ._validation import check_positive_int

_requested = None          # set by set_num_threads; None means the default
_warned_no_openmp = False


def openmp_enabled():
    """True when the compiled kernels were built with OpenMP."""
    return _omp.openmp_enabled()


def _default_threads():
    if _omp.openmp_enabled():
        return _omp.omp_max_threads()  # OMP_NUM_THREADS and threadpool_limits respected
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def get_num_threads():
    """The number of threads fastmlp's kernels may use.

    The value given to :func:`set_num_threads`, else the available cores
    (``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits`` respected).
    """
    return _requested if _requested is not None else _default_threads()


def set_num_threads(n):
    """Use ``n`` threads in fastmlp's kernels and in numpy's BLAS.

    fastmlp multiplies matrices with the BLAS numpy itself is linked against,
    so this also sets the thread count of numpy's own BLAS pool: numpy's
    ``@`` in the same process runs with ``n`` threads afterwards too. Pass
    ``None`` to return fastmlp's kernels to the default.

    fastmlp's own kernels give the same bits for any ``n``: every reduction
    (bias gradients, losses) has a fixed order. The matrix products are
    numpy's BLAS, whose last bits may change with its thread count (OpenBLAS
    splits some products differently on 1 and 2 threads); at a fixed count,
    repeated runs are bitwise identical.
    """
    global _requested, _warned_no_openmp
    if n is None:
        _requested = None
        return
    n = check_positive_int(n, "n")
    if n > 1 and not openmp_enabled() and not _warned_no_openmp:
        _warned_no_openmp = True
        warnings.warn("fastmlp was built without OpenMP: its kernels run single-threaded "
                      "(numpy's BLAS still uses the threads asked for).", RuntimeWarning,
                      stacklevel=2)
    _requested = n
    from ._backend import numpy_blas_path  # late: _backend imports this module
    path = numpy_blas_path()
    if path is not None:
        ThreadpoolController().select(filepath=path).limit(limits=n)
