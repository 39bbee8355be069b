"""What the compiled kernels were built with: OpenMP or not, and its thread count."""
from _omp cimport FASTMLP_USE_OPENMP, omp_get_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FASTMLP_USE_OPENMP)


def omp_max_threads():
    """OpenMP's default team size (OMP_NUM_THREADS or the cores); 1 without OpenMP."""
    return omp_get_max_threads()
