# Row-major GEMM over numpy's own BLAS (see fastmlp_blas.h), fused over float/double.
from cython cimport floating

cdef extern from "fastmlp_blas.h" nogil:
    void fastmlp_set_blas(size_t sgemm, size_t dgemm, size_t sgemv, size_t dgemv, int ilp64)
    int fastmlp_has_blas()
    void fastmlp_sgemm_rm(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          float alpha, const float *A, Py_ssize_t lda, const float *B,
                          Py_ssize_t ldb, float beta, float *C, Py_ssize_t ldc)
    void fastmlp_set_blas_rows(size_t sgemm_batch, size_t dgemm_batch, size_t threads)
    void *fastmlp_sgemm_batch_ptr
    void *fastmlp_dgemm_batch_ptr
    int fastmlp_row_blocks(void *batch, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k)
    int fastmlp_sgemm_rows(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *A,
                           Py_ssize_t lda, const float *B, Py_ssize_t ldb, float *C,
                           Py_ssize_t ldc)
    int fastmlp_dgemm_rows(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double *A,
                           Py_ssize_t lda, const double *B, Py_ssize_t ldb, double *C,
                           Py_ssize_t ldc)
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


cdef inline void gemm_rows(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating *A,
                           Py_ssize_t lda, const floating *B, Py_ssize_t ldb, floating *C,
                           Py_ssize_t ldc) noexcept nogil:
    """C (m x n) = A @ B, row-major: as blocks of rows (of columns when n >= 8 m) on BLAS's
    pool where that applies (fastmlp_blas.h), else one GEMM."""
    if floating is float:
        if fastmlp_sgemm_rows(m, n, k, A, lda, B, ldb, C, ldc):
            return
    else:
        if fastmlp_dgemm_rows(m, n, k, A, lda, B, ldb, C, ldc):
            return
    gemm(False, False, m, n, k, 1, A, lda, B, ldb, 0, C, ldc)
