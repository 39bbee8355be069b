/* The elementwise passes between the matrix products, written so they vectorise.
 *
 * A portable build targets baseline x86-64 (SSE2), where the compiler turns a
 * ReLU whose mask is bytes and whose values are doubles into a scalar loop
 * with a branch per element: on random signs it mispredicts half the time
 * and cost 10-20% of a float64 training step. Here each pass is plain C in a
 * branch-free form, and with GCC on x86-64 glibc each is also compiled for
 * AVX2 and AVX-512 (target_clones): the loader picks the widest the CPU has.
 * Every clone does the same IEEE operations per element in the same order
 * (setup.py builds with -ffp-contract=off: no fused multiply-adds), so
 * results never depend on the clone. The optimizer rules are in fastmlp_optim.h.
 */
#ifndef FASTMLP_SIMD_H
#define FASTMLP_SIMD_H
#include <stddef.h>
#include "fastmlp_clones.h"

#define FASTMLP_DEFINE_PASSES(T, S)                                                          \
/* h = relu(h + b) per row of n x m, NaN kept; mask = (h + b <= 0) when mask is not NULL. */ \
FASTMLP_CLONES static void fastmlp_bias_relu_##S(T *h, const T *b, unsigned char *mask,      \
                                                 ptrdiff_t n, ptrdiff_t m) {                \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        T *row = h + i * m;                                                                 \
        if (mask != NULL) {                                                                 \
            unsigned char *mrow = mask + i * m;                                             \
            for (ptrdiff_t j = 0; j < m; j++) {                                             \
                T v = row[j] + b[j];                                                        \
                row[j] = v <= 0 ? 0 : v;                                                    \
                mrow[j] = v <= 0;                                                           \
            }                                                                               \
        } else {                                                                            \
            for (ptrdiff_t j = 0; j < m; j++) {                                             \
                T v = row[j] + b[j];                                                        \
                row[j] = v <= 0 ? 0 : v;                                                    \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
/* h += b per row of n x m. */                                                              \
FASTMLP_CLONES static void fastmlp_bias_##S(T *h, const T *b, ptrdiff_t n, ptrdiff_t m) {    \
    for (ptrdiff_t i = 0; i < n; i++)                                                       \
        for (ptrdiff_t j = 0; j < m; j++)                                                   \
            h[i * m + j] += b[j];                                                           \
}                                                                                           \
/* out = relu(x), NaN kept, mask = (x <= 0): the book's Relu.forward over [start, end). */  \
FASTMLP_CLONES static void fastmlp_relu_##S(const T *x, T *out, unsigned char *mask,        \
                                            ptrdiff_t start, ptrdiff_t end) {               \
    for (ptrdiff_t i = start; i < end; i++) {                                               \
        T v = x[i];                                                                         \
        out[i] = v <= 0 ? 0 : v;                                                            \
        mask[i] = v <= 0;                                                                   \
    }                                                                                       \
}                                                                                           \
/* dx = 0 where mask else dout, over [start, end); dx may be dout. */                      \
FASTMLP_CLONES static void fastmlp_relu_backward_##S(const T *dout, const unsigned char *mask,\
                                                     T *dx, ptrdiff_t start, ptrdiff_t end) { \
    for (ptrdiff_t i = start; i < end; i++)                                                 \
        dx[i] = mask[i] ? 0 : dout[i];                                                      \
}                                                                                           \
/* sums[j] = sum over rows i < n of a[i * lda + j], j < m, rows added in order (fixed bits). */\
FASTMLP_CLONES static void fastmlp_column_sums_##S(const T *a, ptrdiff_t lda, T *sums,       \
                                                   ptrdiff_t n, ptrdiff_t m) {              \
    for (ptrdiff_t j = 0; j < m; j++)                                                       \
        sums[j] = 0;                                                                        \
    for (ptrdiff_t i = 0; i < n; i++)                                                       \
        for (ptrdiff_t j = 0; j < m; j++)                                                   \
            sums[j] += a[i * lda + j];                                                      \
}

FASTMLP_DEFINE_PASSES(float, f)
FASTMLP_DEFINE_PASSES(double, d)

#endif
