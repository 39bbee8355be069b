/* Row-major GEMM on numpy's own BLAS, reached through function pointers.
 *
 * fastmlp/_backend.py finds the BLAS library numpy is linked against
 * (threadpoolctl), looks up its Fortran sgemm/dgemm symbols with ctypes and
 * hands their addresses to set_blas() of each kernel module that multiplies.
 * Using numpy's BLAS means fastmlp and the caller's numpy share one thread
 * pool: a second pool alternating with it on few cores is many times slower.
 * Each extension module includes this header and so keeps its own pointers.
 */
#ifndef FASTMLP_BLAS_H
#define FASTMLP_BLAS_H
#include <stddef.h>
#include <stdint.h>

typedef void (*fastmlp_sgemm32_t)(const char *, const char *, const int32_t *, const int32_t *,
                                  const int32_t *, const float *, const float *, const int32_t *,
                                  const float *, const int32_t *, const float *, float *,
                                  const int32_t *);
typedef void (*fastmlp_sgemm64_t)(const char *, const char *, const int64_t *, const int64_t *,
                                  const int64_t *, const float *, const float *, const int64_t *,
                                  const float *, const int64_t *, const float *, float *,
                                  const int64_t *);
typedef void (*fastmlp_dgemm32_t)(const char *, const char *, const int32_t *, const int32_t *,
                                  const int32_t *, const double *, const double *, const int32_t *,
                                  const double *, const int32_t *, const double *, double *,
                                  const int32_t *);
typedef void (*fastmlp_dgemm64_t)(const char *, const char *, const int64_t *, const int64_t *,
                                  const int64_t *, const double *, const double *, const int64_t *,
                                  const double *, const int64_t *, const double *, double *,
                                  const int64_t *);

static void *fastmlp_sgemm_ptr = NULL;
static void *fastmlp_dgemm_ptr = NULL;
static int fastmlp_blas_ilp64 = 0;

static void fastmlp_set_blas(size_t sgemm, size_t dgemm, int ilp64) {
    fastmlp_sgemm_ptr = (void *)sgemm;
    fastmlp_dgemm_ptr = (void *)dgemm;
    fastmlp_blas_ilp64 = ilp64;
}

static int fastmlp_has_blas(void) {
    return fastmlp_sgemm_ptr != NULL && fastmlp_dgemm_ptr != NULL;
}

/* C (m x n) = alpha * op(A) @ op(B) + beta * C, all row-major.
 * lda, ldb, ldc are the row lengths of the arrays as stored.
 * A row-major matrix read column-major is its transpose, so BLAS is asked
 * for C^T = op(B)^T op(A)^T: the operands swap places. */
#define FASTMLP_GEMM_BODY(PTR, T32, T64, REAL)                                                   \
    const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';                                \
    if (fastmlp_blas_ilp64) {                                                                     \
        const int64_t M = n, N = m, K = k, LA = lda, LB = ldb, LC = ldc;                          \
        ((T64)PTR)(&tb, &ta, &M, &N, &K, &alpha, B, &LB, A, &LA, &beta, C, &LC);                  \
    } else {                                                                                      \
        const int32_t M = (int32_t)n, N = (int32_t)m, K = (int32_t)k;                             \
        const int32_t LA = (int32_t)lda, LB = (int32_t)ldb, LC = (int32_t)ldc;                    \
        ((T32)PTR)(&tb, &ta, &M, &N, &K, &alpha, B, &LB, A, &LA, &beta, C, &LC);                  \
    }

static inline void fastmlp_sgemm_rm(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
                                    ptrdiff_t k, float alpha, const float *A, ptrdiff_t lda,
                                    const float *B, ptrdiff_t ldb, float beta, float *C,
                                    ptrdiff_t ldc) {
    FASTMLP_GEMM_BODY(fastmlp_sgemm_ptr, fastmlp_sgemm32_t, fastmlp_sgemm64_t, float)
}

static inline void fastmlp_dgemm_rm(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
                                    ptrdiff_t k, double alpha, const double *A, ptrdiff_t lda,
                                    const double *B, ptrdiff_t ldb, double beta, double *C,
                                    ptrdiff_t ldc) {
    FASTMLP_GEMM_BODY(fastmlp_dgemm_ptr, fastmlp_dgemm32_t, fastmlp_dgemm64_t, double)
}
#endif
