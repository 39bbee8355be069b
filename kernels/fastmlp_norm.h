/* Dropout and batch normalisation passes (the book's ch. 6 layers), written so they vectorise.
 *
 * Dropout's mask is a pure function of (key, flat index): element i is kept when the
 * uniform u_i = h_i * 2^-32 in [0, 1) exceeds the drop ratio (the book's `rand > ratio`),
 * h_i = mix32(mix32(i ^ key_lo) ^ key_hi) with mix32 a 32-bit integer hash (two
 * xorshift-multiply rounds; "lowbias32") and key_lo/key_hi the halves of a 64-bit key
 * (the index is taken modulo 2^32). 32-bit lanes vectorise on every x86-64 clone. The
 * key is drawn from a numpy Generator once per forward pass (fastmlp/_streams.py), so a
 * seeded run repeats bit for bit, the numpy twin (fastmlp/reference/_regularization.py)
 * draws the same masks, and no thread count or SIMD width changes them. The comparison
 * is done on the integer: u_i > ratio  <=>  h_i > floor(ratio * 2^32) (capped at 2^32-1,
 * so ratio 1 keeps nothing).
 *
 * Batch normalisation works on (n, m) row-major blocks, column statistics accumulated
 * row by row in the array's precision (a fixed order: the bits never depend on threads).
 * Compiled like fastmlp_simd.h's passes (FASTMLP_CLONES, -ffp-contract=off: no FMA).
 */
#ifndef FASTMLP_NORM_H
#define FASTMLP_NORM_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fastmlp_clones.h"

/* FASTMLP_IVDEP before an inner loop: its iterations carry no dependence through memory
 * (the arrays it writes are the caller's own, distinct buffers), so the compiler may
 * vectorise it without proving that pointers do not alias. All accesses stay in bounds
 * whatever the pointers are. */
#if defined(__clang__)
#define FASTMLP_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define FASTMLP_IVDEP _Pragma("GCC ivdep")
#elif defined(_MSC_VER)
#define FASTMLP_IVDEP __pragma(loop(ivdep))
#else
#define FASTMLP_IVDEP
#endif

static inline uint32_t fastmlp_mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352DU;
    x ^= x >> 15;
    x *= 0x846CA68BU;
    return x ^ (x >> 16);
}

#define FASTMLP_DEFINE_NORM(T, S, SQRT)                                                      \
/* out = x * keep, mask = keep, keep_i = mix32(mix32(i ^ key_lo) ^ key_hi) > threshold,    \
 * over [start, end); out may be x. */                                                       \
FASTMLP_CLONES static void fastmlp_dropout_forward_##S(const T *x, T *out, unsigned char *mask,\
                                                       uint64_t key, uint32_t threshold,     \
                                                       ptrdiff_t start, ptrdiff_t end) {     \
    const uint32_t lo = (uint32_t)key, hi = (uint32_t)(key >> 32);                           \
    uint32_t index = (uint32_t)start;   /* i mod 2^32 in 32-bit lanes (64-bit ones narrow) */ \
    for (ptrdiff_t i = start; i < end; i++, index++) {                                       \
        uint32_t h = fastmlp_mix32(fastmlp_mix32(index ^ lo) ^ hi);                          \
        T keep = h > threshold ? 1 : 0;   /* a select: a byte-to-float cast would not vectorise */\
        mask[i] = h > threshold;                                                             \
        out[i] = x[i] * keep;                                                                \
    }                                                                                        \
}                                                                                            \
/* dx = dout * mask over [start, end) (a product, as the book's: NaN * 0 stays NaN). */      \
FASTMLP_CLONES static void fastmlp_dropout_backward_##S(const T *dout, const unsigned char *mask,\
                                                        T *dx, ptrdiff_t start, ptrdiff_t end) { \
    for (ptrdiff_t i = start; i < end; i++)                                                  \
        dx[i] = dout[i] * (T)mask[i];                                                        \
}                                                                                            \
/* out = x * s over [start, end): dropout at test time, s = 1 - ratio. */                    \
FASTMLP_CLONES static void fastmlp_scale_##S(const T *x, T *out, T s, ptrdiff_t start,       \
                                             ptrdiff_t end) {                                \
    for (ptrdiff_t i = start; i < end; i++)                                                  \
        out[i] = x[i] * s;                                                                   \
}                                                                                            \
/* The rest of training-mode batch normalisation once mean (m) holds the column means of   \
 * x (n x m): xc = x - mean (not stored when xc is NULL), std = sqrt(var + eps) with        \
 * var = sum_i xc^2 / n, and the running statistics = momentum * running + (1 - momentum)  \
 * * (mean, var). xc must not alias x (FASTMLP_IVDEP). */                                    \
FASTMLP_CLONES static void fastmlp_bn_center_##S(const T *x, ptrdiff_t n, ptrdiff_t m,      \
                                                 const T *mean, double eps, double momentum,\
                                                 T *xc, T *std, T *running_mean,            \
                                                 T *running_var) {                          \
    const T nn = (T)n, e = (T)eps, mom = (T)momentum, rest = (T)(1.0 - momentum);           \
    ptrdiff_t i, j;                                                                          \
    for (j = 0; j < m; j++)                                                                  \
        std[j] = 0;                                                                          \
    for (i = 0; i < n; i++) {                                                                \
        if (xc != NULL) {                                                                    \
            FASTMLP_IVDEP                                                                    \
            for (j = 0; j < m; j++) {                                                        \
                T c = x[i * m + j] - mean[j];                                                \
                xc[i * m + j] = c;                                                           \
                std[j] += c * c;                                                             \
            }                                                                                \
        } else {                                                                             \
            FASTMLP_IVDEP                                                                    \
            for (j = 0; j < m; j++) {                                                        \
                T c = x[i * m + j] - mean[j];                                                \
                std[j] += c * c;                                                             \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    for (j = 0; j < m; j++) {                                                                \
        T var = std[j] / nn;                                                                 \
        running_mean[j] = mom * running_mean[j] + rest * mean[j];                            \
        running_var[j] = mom * running_var[j] + rest * var;                                  \
        std[j] = SQRT(var + e);                                                              \
    }                                                                                        \
}                                                                                            \
/* Training-mode batch normalisation of x (n x m) per column j:                             \
 * mean = sum_i x / n, xc = x - mean, var = sum_i xc^2 / n, std = sqrt(var + eps),           \
 * xn = xc / std, out = gamma * xn + beta; running = momentum * running + (1 - momentum)    \
 * * (mean, var). mean (m) is scratch; out may be x (x is read before out is written);       \
 * xc, xn must not alias x. beta NULL: out = gamma * xn (the caller adds beta). */            \
FASTMLP_CLONES static void fastmlp_bn_train_##S(const T *x, const T *gamma, const T *beta,   \
                                                double eps, double momentum, ptrdiff_t n,    \
                                                ptrdiff_t m, T *out, T *xc, T *xn, T *std,   \
                                                T *mean, T *running_mean, T *running_var) {  \
    const T nn = (T)n;                                                                       \
    ptrdiff_t i, j;                                                                          \
    for (j = 0; j < m; j++)                                                                  \
        mean[j] = 0;                                                                         \
    for (i = 0; i < n; i++)                                                                  \
        for (j = 0; j < m; j++)                                                              \
            mean[j] += x[i * m + j];                                                         \
    for (j = 0; j < m; j++)                                                                  \
        mean[j] = mean[j] / nn;                                                              \
    fastmlp_bn_center_##S(x, n, m, mean, eps, momentum, xc, std, running_mean, running_var);\
    if (beta != NULL) {                                                                      \
        for (i = 0; i < n; i++)                                                              \
            for (j = 0; j < m; j++) {                                                        \
                T v = xc[i * m + j] / std[j];                                                \
                xn[i * m + j] = v;                                                           \
                out[i * m + j] = gamma[j] * v + beta[j];                                     \
            }                                                                                \
    } else {   /* the caller adds beta (fused with its activation) */                         \
        for (i = 0; i < n; i++)                                                              \
            for (j = 0; j < m; j++) {                                                        \
                T v = xc[i * m + j] / std[j];                                                \
                xn[i * m + j] = v;                                                           \
                out[i * m + j] = gamma[j] * v;                                               \
            }                                                                                \
    }                                                                                        \
}                                                                                            \
/* The whole network's hidden layer in training mode, in place on h (n x m, the Affine's   \
 * product): h += b, batch normalisation as fastmlp_bn_train (out = gamma * xn), then       \
 * relu(out + beta) with mask = (out + beta <= 0) as fastmlp_bias_relu, then (dmask not     \
 * NULL) dropout as fastmlp_dropout_forward: the same operations in the same order (the    \
 * same bits) in three passes instead of six, xc written in the last; dropout runs on each \
 * row while it is in the cache (one loop holding both would not vectorise). h, xc, xn,    \
 * mask, dmask, std, mean and the running statistics must be distinct buffers              \
 * (FASTMLP_IVDEP). */                                                                       \
FASTMLP_CLONES static void fastmlp_bn_relu_train_##S(T *h, const T *b, const T *gamma,      \
                                                     const T *beta, double eps,             \
                                                     double momentum, ptrdiff_t n,          \
                                                     ptrdiff_t m, T *xc, T *xn, T *std,     \
                                                     T *mean, T *running_mean,              \
                                                     T *running_var, unsigned char *mask,   \
                                                     unsigned char *dmask, uint64_t key,    \
                                                     uint32_t threshold) {                  \
    const T nn = (T)n;                                                                       \
    const uint32_t lo = (uint32_t)key, hi = (uint32_t)(key >> 32);                           \
    ptrdiff_t i, j;                                                                          \
    for (j = 0; j < m; j++)                                                                  \
        mean[j] = 0;                                                                         \
    for (i = 0; i < n; i++) {                                                                \
        FASTMLP_IVDEP                                                                        \
        for (j = 0; j < m; j++) {                                                            \
            T v = h[i * m + j] + b[j];                                                       \
            h[i * m + j] = v;                                                                \
            mean[j] += v;                                                                    \
        }                                                                                    \
    }                                                                                        \
    for (j = 0; j < m; j++)                                                                  \
        mean[j] = mean[j] / nn;                                                              \
    /* xc is stored by the last pass, from h as the centring pass computed it */            \
    fastmlp_bn_center_##S(h, n, m, mean, eps, momentum, NULL, std, running_mean, running_var);\
    for (i = 0; i < n; i++) {                                                                \
        FASTMLP_IVDEP                                                                        \
        for (j = 0; j < m; j++) {                                                            \
            T c = h[i * m + j] - mean[j];                                                    \
            xc[i * m + j] = c;                                                               \
            T v = c / std[j];                                                                \
            xn[i * m + j] = v;                                                               \
            T w = gamma[j] * v + beta[j];                                                    \
            h[i * m + j] = w <= 0 ? 0 : w;                                                   \
            mask[i * m + j] = w <= 0;                                                        \
        }                                                                                    \
        if (dmask != NULL) {                                                                 \
            uint32_t index = (uint32_t)(i * m);   /* as fastmlp_dropout_forward's */         \
            FASTMLP_IVDEP                                                                    \
            for (j = 0; j < m; j++, index++) {                                               \
                uint32_t r = fastmlp_mix32(fastmlp_mix32(index ^ lo) ^ hi);                  \
                T keep = r > threshold ? 1 : 0;                                              \
                dmask[i * m + j] = r > threshold;                                            \
                h[i * m + j] = h[i * m + j] * keep;                                          \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
/* Inference-mode batch normalisation: out = gamma * ((x - rmean) / sqrt(rvar + eps))       \
 * + beta per column (beta NULL: without it); scale (m) scratch; out may be x. */           \
FASTMLP_CLONES static void fastmlp_bn_infer_##S(const T *x, const T *gamma, const T *beta,   \
                                                const T *running_mean, const T *running_var, \
                                                double eps, ptrdiff_t n, ptrdiff_t m,        \
                                                T *out, T *scale) {                          \
    const T e = (T)eps;                                                                      \
    ptrdiff_t i, j;                                                                          \
    for (j = 0; j < m; j++)                                                                  \
        scale[j] = SQRT(running_var[j] + e);                                                 \
    if (beta != NULL) {                                                                      \
        for (i = 0; i < n; i++)                                                              \
            for (j = 0; j < m; j++)                                                          \
                out[i * m + j] = gamma[j] * ((x[i * m + j] - running_mean[j]) / scale[j])    \
                                 + beta[j];                                                  \
    } else {   /* the caller adds beta */                                                    \
        for (i = 0; i < n; i++)                                                              \
            for (j = 0; j < m; j++)                                                          \
                out[i * m + j] = gamma[j] * ((x[i * m + j] - running_mean[j]) / scale[j]);   \
    }                                                                                        \
}                                                                                            \
/* The per-column factors of batch normalisation's backward: a = gamma / std,              \
 * b = dbeta / n, c = dgamma / n (dx = a * (dout - b - xn * c)). */                          \
static void fastmlp_bn_backward_coefficients_##S(const T *gamma, const T *std,              \
                                                 const T *dgamma, const T *dbeta,           \
                                                 ptrdiff_t n, ptrdiff_t m, T *a, T *b,      \
                                                 T *c) {                                    \
    const T nn = (T)n;                                                                       \
    for (ptrdiff_t j = 0; j < m; j++) {                                                      \
        a[j] = gamma[j] / std[j];                                                            \
        b[j] = dbeta[j] / nn;                                                                \
        c[j] = dgamma[j] / nn;                                                               \
    }                                                                                        \
}                                                                                            \
/* Backward of fastmlp_bn_train per column: dbeta = sum dout, dgamma = sum xn * dout,       \
 * dx = gamma / std * (dout - dbeta / n - xn * dgamma / n) (the book's chain through        \
 * std, var and mean, collected). work (3m) is scratch; dx may be dout. */                   \
FASTMLP_CLONES static void fastmlp_bn_backward_##S(const T *dout, const T *xn, const T *gamma,\
                                                   const T *std, ptrdiff_t n, ptrdiff_t m,   \
                                                   T *dx, T *dgamma, T *dbeta, T *work) {    \
    T *a = work, *b = work + m, *c = work + 2 * m;                                           \
    ptrdiff_t i, j;                                                                          \
    for (j = 0; j < m; j++) {                                                                \
        dbeta[j] = 0;                                                                        \
        dgamma[j] = 0;                                                                       \
    }                                                                                        \
    for (i = 0; i < n; i++)                                                                  \
        for (j = 0; j < m; j++) {                                                            \
            dbeta[j] += dout[i * m + j];                                                     \
            dgamma[j] += xn[i * m + j] * dout[i * m + j];                                    \
        }                                                                                    \
    fastmlp_bn_backward_coefficients_##S(gamma, std, dgamma, dbeta, n, m, a, b, c);          \
    for (i = 0; i < n; i++)                                                                  \
        for (j = 0; j < m; j++)                                                              \
            dx[i * m + j] = a[j] * (dout[i * m + j] - b[j] - xn[i * m + j] * c[j]);          \
}                                                                                            \
/* Backward of fastmlp_bn_relu_train in place on d (n x m, the gradient of its output):    \
 * dropout's (d *= dmask, when dmask is not NULL), ReLU's (d = 0 where mask), then          \
 * fastmlp_bn_backward's, and db = the column sums of the result (the Affine's bias         \
 * gradient, as fastmlp_column_sums): the same operations in the same order (the same bits)\
 * in two passes instead of six, each row's steps done while it is in the cache. work (3m) \
 * is scratch; d, xn and the outputs must be distinct buffers (FASTMLP_IVDEP). */            \
FASTMLP_CLONES static void fastmlp_bn_relu_backward_##S(T *d, const unsigned char *dmask,   \
                                                        const unsigned char *mask,           \
                                                        const T *xn, const T *gamma,         \
                                                        const T *std, ptrdiff_t n,           \
                                                        ptrdiff_t m, T *dgamma, T *dbeta,    \
                                                        T *db, T *work) {                    \
    T *a = work, *b = work + m, *c = work + 2 * m;                                           \
    ptrdiff_t i, j;                                                                          \
    for (j = 0; j < m; j++) {                                                                \
        dbeta[j] = 0;                                                                        \
        dgamma[j] = 0;                                                                       \
        db[j] = 0;                                                                           \
    }                                                                                        \
    for (i = 0; i < n; i++) {                                                                \
        T *row = d + i * m;                                                                  \
        if (dmask != NULL) {                                                                 \
            FASTMLP_IVDEP                                                                    \
            for (j = 0; j < m; j++)                                                          \
                row[j] = row[j] * (T)dmask[i * m + j];                                       \
        }                                                                                    \
        FASTMLP_IVDEP                                                                        \
        for (j = 0; j < m; j++)                                                              \
            row[j] = mask[i * m + j] ? 0 : row[j];                                           \
        FASTMLP_IVDEP                                                                        \
        for (j = 0; j < m; j++) {                                                            \
            dbeta[j] += row[j];                                                              \
            dgamma[j] += xn[i * m + j] * row[j];                                             \
        }                                                                                    \
    }                                                                                        \
    fastmlp_bn_backward_coefficients_##S(gamma, std, dgamma, dbeta, n, m, a, b, c);          \
    for (i = 0; i < n; i++) {                                                                \
        FASTMLP_IVDEP                                                                        \
        for (j = 0; j < m; j++) {                                                            \
            T v = a[j] * (d[i * m + j] - b[j] - xn[i * m + j] * c[j]);                       \
            d[i * m + j] = v;                                                                \
            db[j] += v;                                                                      \
        }                                                                                    \
    }                                                                                        \
}

FASTMLP_DEFINE_NORM(float, f, sqrtf)
FASTMLP_DEFINE_NORM(double, d, sqrt)

#endif
