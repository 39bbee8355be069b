# OpenMP when the compiler has it, serial stubs when it does not (one source, two builds).
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTMLP_USE_OPENMP 1
    #else
    #define FASTMLP_USE_OPENMP 0
    #define omp_get_max_threads() 1   /* a macro: no unused-function warning where unused */
    #endif
    """
    bint FASTMLP_USE_OPENMP
    int omp_get_max_threads() noexcept nogil

# Elementwise loops are split into chunks of this many items (a fixed size, so the
# results do not depend on the thread count). A compile-time constant of the kernels,
# kept here; the thread policy that uses it (which kernel gets how many threads:
# PARALLEL_MIN_ELEMENTS, kernel_threads) lives in fastmlp/threads.py. A kernel runs
# serially unless given more than one thread.
cdef enum:
    CHUNK = 16384
