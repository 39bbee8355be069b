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
 * results never depend on the clone.
 */
#ifndef FASTMLP_SIMD_H
#define FASTMLP_SIMD_H
#include <math.h>
#include <stddef.h>
#include <stdlib.h>   /* defines __GLIBC__ where it applies */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \
    && __GNUC__ >= 11
#define FASTMLP_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FASTMLP_CLONES
#endif

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

/* The optimizer rules (kernels/optim.pyx numbers them), hyper-parameters combined in double
 * as the book's Python code does, then rounded to the parameter dtype as numpy would. */
enum { FASTMLP_SGD, FASTMLP_MOMENTUM, FASTMLP_NESTEROV, FASTMLP_ADAGRAD, FASTMLP_RMSPROP,
       FASTMLP_ADAM };
typedef struct {
    double lr, momentum, momentum_sq, lr_step, decay, one_minus_decay;
    double one_minus_beta1, one_minus_beta2, eps;
} fastmlp_hyper;

#define FASTMLP_DEFINE_UPDATE(T, S, SQRT)                                                    \
/* One rule over elements [start, end) of one parameter p (s1, s2: its state arrays). */    \
FASTMLP_CLONES static void fastmlp_update_##S(int rule, T *p, const T *g, T *s1, T *s2,      \
                                              const fastmlp_hyper *hp, ptrdiff_t start,     \
                                              ptrdiff_t end) {                              \
    const T lr = (T)hp->lr, mom = (T)hp->momentum, mom_sq = (T)hp->momentum_sq;             \
    const T lr_step = (T)hp->lr_step, decay = (T)hp->decay;                                 \
    const T one_minus_decay = (T)hp->one_minus_decay, eps = (T)hp->eps;                     \
    const T b1 = (T)hp->one_minus_beta1, b2 = (T)hp->one_minus_beta2;                       \
    ptrdiff_t i;                                                                            \
    switch (rule) {                                                                         \
    case FASTMLP_SGD:          /* p -= lr * g */                                            \
        for (i = start; i < end; i++)                                                       \
            p[i] -= lr * g[i];                                                              \
        break;                                                                              \
    case FASTMLP_MOMENTUM:     /* v = momentum * v - lr * g; p += v */                      \
        for (i = start; i < end; i++) {                                                     \
            s1[i] = mom * s1[i] - lr * g[i];                                                \
            p[i] += s1[i];                                                                  \
        }                                                                                   \
        break;                                                                              \
    case FASTMLP_NESTEROV:     /* the book's form */                                        \
        for (i = start; i < end; i++) {                                                     \
            s1[i] *= mom;                                                                   \
            s1[i] -= lr * g[i];                                                             \
            p[i] += mom_sq * s1[i];                                                         \
            p[i] -= lr_step * g[i];                                                         \
        }                                                                                   \
        break;                                                                              \
    case FASTMLP_ADAGRAD:      /* h += g^2; p -= lr * g / (sqrt(h) + eps) */                \
        for (i = start; i < end; i++) {                                                     \
            s1[i] += g[i] * g[i];                                                           \
            p[i] -= lr * g[i] / (SQRT(s1[i]) + eps);                                        \
        }                                                                                   \
        break;                                                                              \
    case FASTMLP_RMSPROP:      /* h = decay*h + (1-decay)*g^2; p -= lr*g/(sqrt(h)+eps) */   \
        for (i = start; i < end; i++) {                                                     \
            s1[i] *= decay;                                                                 \
            s1[i] += one_minus_decay * g[i] * g[i];                                         \
            p[i] -= lr * g[i] / (SQRT(s1[i]) + eps);                                        \
        }                                                                                   \
        break;                                                                              \
    default:                   /* Adam with the bias-corrected rate lr (= lr_t) */          \
        for (i = start; i < end; i++) {                                                     \
            s1[i] += b1 * (g[i] - s1[i]);                                                   \
            s2[i] += b2 * (g[i] * g[i] - s2[i]);                                            \
            p[i] -= lr * s1[i] / (SQRT(s2[i]) + eps);                                       \
        }                                                                                   \
    }                                                                                       \
}

FASTMLP_DEFINE_PASSES(float, f)
FASTMLP_DEFINE_PASSES(double, d)
FASTMLP_DEFINE_UPDATE(float, f, sqrtf)
FASTMLP_DEFINE_UPDATE(double, d, sqrt)

#endif
