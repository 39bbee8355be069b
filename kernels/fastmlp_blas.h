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

/* Row blocks on BLAS's own pool (optional; numpy's ILP64 OpenBLAS only). OpenBLAS splits a
 * product with few rows poorly between its threads: at (100, 784) @ (784, 100) float32 its
 * 2-thread sgemm was no faster than 1 thread here (258 vs 253 us). Its cblas_?gemm_batch
 * runs the products of a batch on the same pool, one single-threaded product per thread:
 * C's row blocks as a batch took 153 us. That routine jumps to a wrong address for any
 * product with m * n * k <= 100^3 in DYNAMIC_ARCH builds (its small-matrix branch takes a
 * table offset for a function), so a block must stay well above that: see
 * FASTMLP_ROWS_MIN_WORK. _blas.py sets these pointers only for OpenBLAS versions whose
 * routine has been checked. */
typedef void (*fastmlp_sgemm_batch64_t)(int, const int *, const int *, const int64_t *,
                                        const int64_t *, const int64_t *, const float *,
                                        const float **, const int64_t *, const float **,
                                        const int64_t *, const float *, float **,
                                        const int64_t *, int64_t, const int64_t *);
typedef void (*fastmlp_dgemm_batch64_t)(int, const int *, const int *, const int64_t *,
                                        const int64_t *, const int64_t *, const double *,
                                        const double **, const int64_t *, const double **,
                                        const int64_t *, const double *, double **,
                                        const int64_t *, int64_t, const int64_t *);
typedef int (*fastmlp_blas_threads_t)(void);

#define FASTMLP_ROWS_MAX_BLOCKS 8
#define FASTMLP_ROWS_MIN_WORK 1500000.0   /* per block: 1.5x the routine's small-matrix bound */
static void *fastmlp_sgemm_batch_ptr = NULL;
static void *fastmlp_dgemm_batch_ptr = NULL;
static void *fastmlp_blas_threads_ptr = NULL;

static inline void fastmlp_set_blas_rows(size_t sgemm_batch, size_t dgemm_batch, size_t threads) {
    fastmlp_sgemm_batch_ptr = (void *)sgemm_batch;
    fastmlp_dgemm_batch_ptr = (void *)dgemm_batch;
    fastmlp_blas_threads_ptr = (void *)threads;
}

/* Split C (m x n) = A (m x k) @ B (k x n) by its columns when it has many more columns than
 * rows. Each single-threaded product packs its own operands, so every row block packs all of
 * B (the layer's weights) and every column block all of A (the batch). Measured here (predict,
 * two threads, the two splits alternated): 784-1024-1024-10 at 100 rows 1.09x faster by
 * columns in float32 and float64; 784-256-256-10 and 784-512-512-10 at 100 rows and every
 * network at 1000 rows within 0.93-1.07x either way, so the columns only from 8x as many. */
#define FASTMLP_COLS_FROM 8
static inline int fastmlp_blocks_by_cols(ptrdiff_t m, ptrdiff_t n) {
    return n >= FASTMLP_COLS_FROM * m;
}

/* How many blocks C (m x n) = A (m x k) @ B (k x n) gets: one per BLAS thread, each with at
 * least FASTMLP_ROWS_MIN_WORK multiply-adds; 0 (one plain GEMM) when fewer than 2. */
static inline int fastmlp_row_blocks(void *batch, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k) {
    if (batch == NULL || fastmlp_blas_threads_ptr == NULL || !fastmlp_blas_ilp64)
        return 0;
    int blocks = ((fastmlp_blas_threads_t)fastmlp_blas_threads_ptr)();
    if (blocks > FASTMLP_ROWS_MAX_BLOCKS)
        blocks = FASTMLP_ROWS_MAX_BLOCKS;
    ptrdiff_t split = m, other = n;   /* the dimension cut into blocks, and the other */
    if (fastmlp_blocks_by_cols(m, n)) {
        split = n;
        other = m;
    }
    while (blocks >= 2 && (double)(split / blocks) * (double)other * (double)k
                          < FASTMLP_ROWS_MIN_WORK)
        blocks--;
    return blocks >= 2 ? blocks : 0;
}

/* C = A @ B (row-major, no transposes) as blocks of rows (or of columns, see
 * fastmlp_blocks_by_cols) on BLAS's pool; 0 when it does not apply (the caller then runs one
 * GEMM). The split dimension's s entries go s / blocks to a block, the first s % blocks one
 * more; each block is a batch entry of its own (group size 1). */
#define FASTMLP_ROWS_BODY(T, PTR, FN_T)                                                          \
    int blocks = fastmlp_row_blocks(PTR, m, n, k);                                                \
    if (blocks == 0)                                                                              \
        return 0;                                                                                 \
    int by_cols = fastmlp_blocks_by_cols(m, n);                                                   \
    ptrdiff_t split = by_cols ? n : m;                                                            \
    int no_trans[FASTMLP_ROWS_MAX_BLOCKS];                                                        \
    int64_t M[FASTMLP_ROWS_MAX_BLOCKS], N[FASTMLP_ROWS_MAX_BLOCKS], K[FASTMLP_ROWS_MAX_BLOCKS];   \
    int64_t LA[FASTMLP_ROWS_MAX_BLOCKS], LB[FASTMLP_ROWS_MAX_BLOCKS], LC[FASTMLP_ROWS_MAX_BLOCKS];\
    int64_t size[FASTMLP_ROWS_MAX_BLOCKS];                                                        \
    T alpha[FASTMLP_ROWS_MAX_BLOCKS], beta[FASTMLP_ROWS_MAX_BLOCKS];                              \
    const T *As[FASTMLP_ROWS_MAX_BLOCKS], *Bs[FASTMLP_ROWS_MAX_BLOCKS];                           \
    T *Cs[FASTMLP_ROWS_MAX_BLOCKS];                                                               \
    ptrdiff_t start = 0;                                                                          \
    for (int b = 0; b < blocks; b++) {                                                            \
        ptrdiff_t count = split / blocks + (b < split % blocks);                                  \
        no_trans[b] = 111;   /* CblasNoTrans */                                                   \
        M[b] = by_cols ? m : count; N[b] = by_cols ? count : n; K[b] = k;                         \
        LA[b] = lda; LB[b] = ldb; LC[b] = ldc; size[b] = 1;                                       \
        alpha[b] = 1; beta[b] = 0;                                                                \
        As[b] = by_cols ? A : A + start * lda;                                                    \
        Bs[b] = by_cols ? B + start : B;                                                          \
        Cs[b] = by_cols ? C + start : C + start * ldc;                                            \
        start += count;                                                                           \
    }                                                                                             \
    ((FN_T)PTR)(101 /* CblasRowMajor */, no_trans, no_trans, M, N, K, alpha, As, LA, Bs, LB,      \
                beta, Cs, LC, blocks, size);                                                      \
    return 1;

static inline int fastmlp_sgemm_rows(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *A,
                                     ptrdiff_t lda, const float *B, ptrdiff_t ldb, float *C,
                                     ptrdiff_t ldc) {
    FASTMLP_ROWS_BODY(float, fastmlp_sgemm_batch_ptr, fastmlp_sgemm_batch64_t)
}

static inline int fastmlp_dgemm_rows(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *A,
                                     ptrdiff_t lda, const double *B, ptrdiff_t ldb, double *C,
                                     ptrdiff_t ldc) {
    FASTMLP_ROWS_BODY(double, fastmlp_dgemm_batch_ptr, fastmlp_dgemm_batch64_t)
}
#endif
