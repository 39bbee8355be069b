"""What the compiled kernels were built with: OpenMP or not, its thread count, the chunk size."""
from _omp cimport CHUNK, FASTMLP_USE_OPENMP, omp_get_max_threads

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define fastmlp_omp_set_num_threads(n) omp_set_num_threads(n)
    #else
    #define fastmlp_omp_set_num_threads(n) ((void)(n))
    #endif
    """
    void fastmlp_omp_set_num_threads(int n) noexcept nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FASTMLP_USE_OPENMP)


def omp_max_threads():
    """OpenMP's default team size (OMP_NUM_THREADS or the cores); 1 without OpenMP."""
    return omp_get_max_threads()


def set_omp_max_threads(int n):
    """Set OpenMP's default team size (``omp_set_num_threads``) in the OpenMP runtime the
    kernels use. Like every OpenMP setting it applies to the calling thread (and to the
    process's initial thread when called from it). A no-op without OpenMP."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    fastmlp_omp_set_num_threads(n)
