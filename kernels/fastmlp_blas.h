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

/* Fortran gemv: y = alpha * op(A) x + beta * y (only the types differ between the four). */
typedef void (*fastmlp_sgemv32_t)(const char *, const int32_t *, const int32_t *, const float *,
                                  const float *, const int32_t *, const float *, const int32_t *,
                                  const float *, float *, const int32_t *);
typedef void (*fastmlp_sgemv64_t)(const char *, const int64_t *, const int64_t *, const float *,
                                  const float *, const int64_t *, const float *, const int64_t *,
                                  const float *, float *, const int64_t *);
typedef void (*fastmlp_dgemv32_t)(const char *, const int32_t *, const int32_t *, const double *,
                                  const double *, const int32_t *, const double *, const int32_t *,
                                  const double *, double *, const int32_t *);
typedef void (*fastmlp_dgemv64_t)(const char *, const int64_t *, const int64_t *, const double *,
                                  const double *, const int64_t *, const double *, const int64_t *,
                                  const double *, double *, const int64_t *);

static void *fastmlp_sgemm_ptr = NULL;
static void *fastmlp_dgemm_ptr = NULL;
static void *fastmlp_sgemv_ptr = NULL;   /* optional: one-row products (batch 1) */
static void *fastmlp_dgemv_ptr = NULL;
static int fastmlp_blas_ilp64 = 0;

static void fastmlp_set_blas(size_t sgemm, size_t dgemm, size_t sgemv, size_t dgemv, int ilp64) {
    fastmlp_sgemm_ptr = (void *)sgemm;
    fastmlp_dgemm_ptr = (void *)dgemm;
    fastmlp_sgemv_ptr = (void *)sgemv;
    fastmlp_dgemv_ptr = (void *)dgemv;
    fastmlp_blas_ilp64 = ilp64;
}

static inline int fastmlp_has_blas(void) {
    return fastmlp_sgemm_ptr != NULL && fastmlp_dgemm_ptr != NULL;
}

/* C (m x n) = alpha * op(A) @ op(B) + beta * C, all row-major.
 * lda, ldb, ldc are the row lengths of the arrays as stored.
 * A row-major matrix read column-major is its transpose, so BLAS is asked
 * for C^T = op(B)^T op(A)^T: the operands swap places. */
/* A one-row product (m == 1) is a matrix-vector product: BLAS's gemm is several times
 * slower than its gemv there (batch-1 inference). C^T = op(B)^T op(A)^T, where op(A)^T
 * is a vector (stride 1, or lda when A is stored as a column) and B read column-major
 * is B^T: op(B) = B needs gemv 'N' on that (n x k) view, op(B) = B^T needs 'T'. */
#define FASTMLP_GEMV_BODY(PTR, T32, T64)                                                         \
    const char tv = trans_b ? 'T' : 'N';                                                          \
    if (fastmlp_blas_ilp64) {                                                                     \
        const int64_t R = trans_b ? k : n, S = trans_b ? n : k, LB = ldb;                         \
        const int64_t IX = trans_a ? lda : 1, IY = 1;                                             \
        ((T64)PTR)(&tv, &R, &S, &alpha, B, &LB, A, &IX, &beta, C, &IY);                          \
    } else {                                                                                      \
        const int32_t R = (int32_t)(trans_b ? k : n), S = (int32_t)(trans_b ? n : k);            \
        const int32_t LB = (int32_t)ldb, IX = (int32_t)(trans_a ? lda : 1), IY = 1;               \
        ((T32)PTR)(&tv, &R, &S, &alpha, B, &LB, A, &IX, &beta, C, &IY);                          \
    }

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
    if (m == 1 && fastmlp_sgemv_ptr != NULL) {
        FASTMLP_GEMV_BODY(fastmlp_sgemv_ptr, fastmlp_sgemv32_t, fastmlp_sgemv64_t)
        return;
    }
    FASTMLP_GEMM_BODY(fastmlp_sgemm_ptr, fastmlp_sgemm32_t, fastmlp_sgemm64_t, float)
}

static inline void fastmlp_dgemm_rm(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
                                    ptrdiff_t k, double alpha, const double *A, ptrdiff_t lda,
                                    const double *B, ptrdiff_t ldb, double beta, double *C,
                                    ptrdiff_t ldc) {
    if (m == 1 && fastmlp_dgemv_ptr != NULL) {
        FASTMLP_GEMV_BODY(fastmlp_dgemv_ptr, fastmlp_dgemv32_t, fastmlp_dgemv64_t)
        return;
    }
    FASTMLP_GEMM_BODY(fastmlp_dgemm_ptr, fastmlp_dgemm32_t, fastmlp_dgemm64_t, double)
}
#endif
