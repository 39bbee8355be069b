# Row-major GEMM over numpy's own BLAS (see fastmlp_blas.h), fused over float/double.
from cython cimport floating

cdef extern from "fastmlp_blas.h" nogil:
    void fastmlp_set_blas(size_t sgemm, size_t dgemm, size_t sgemv, size_t dgemv, int ilp64)
    int fastmlp_has_blas()
    void fastmlp_sgemm_rm(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          float alpha, const float *A, Py_ssize_t lda, const float *B,
                          Py_ssize_t ldb, float beta, float *C, Py_ssize_t ldc)
    void fastmlp_dgemm_rm(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          double alpha, const double *A, Py_ssize_t lda, const double *B,
                          Py_ssize_t ldb, double beta, double *C, Py_ssize_t ldc)


cdef inline void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      floating alpha, const floating *A, Py_ssize_t lda,
                      const floating *B, Py_ssize_t ldb,
                      floating beta, floating *C, Py_ssize_t ldc) noexcept nogil:
    """C (m x n) = alpha * op(A) @ op(B) + beta * C, row-major; ld* are stored row lengths."""
    if floating is float:
        fastmlp_sgemm_rm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        fastmlp_dgemm_rm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
