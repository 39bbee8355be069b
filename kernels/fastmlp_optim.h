/* The optimizer rules: one in-place pass per parameter, the rule numbers defined here only.
 *
 * kernels/optim.pyx exports the numbers (optim.RULES) and fastmlp/_backend.py reads them
 * from there. Hyper-parameters are combined in double as the book's Python code does,
 * then rounded to the parameter dtype as numpy would, so a step matches the numpy
 * reference to rounding. Compiled like fastmlp_simd.h's passes (FASTMLP_CLONES, no FMA).
 */
#ifndef FASTMLP_OPTIM_H
#define FASTMLP_OPTIM_H
#include <math.h>
#include <stddef.h>

#include "fastmlp_clones.h"

enum fastmlp_rule {
    FASTMLP_SGD,               /* p -= lr*g */
    FASTMLP_MOMENTUM,          /* v = m*v - lr*g; p += v */
    FASTMLP_NESTEROV,          /* the book's Nesterov (2021): p += m*m*v - (1+m)*lr*g; v = m*v - lr*g */
    FASTMLP_ADAGRAD,           /* h += g^2; p -= lr*g/(sqrt(h)+eps) */
    FASTMLP_RMSPROP,           /* h = d*h + (1-d)*g^2; p -= lr*g/(sqrt(h)+eps) */
    FASTMLP_ADAM,              /* Adam, the bias correction folded into lr */
    FASTMLP_NESTEROV_SKLEARN,  /* scikit-learn's (Bengio's) Nesterov */
    FASTMLP_N_RULES
};

/* How many state arrays a rule keeps per parameter (s1, s2 below). */
static inline int fastmlp_rule_slots(int rule) {
    return rule == FASTMLP_SGD ? 0 : rule == FASTMLP_ADAM ? 2 : 1;
}

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
    case FASTMLP_NESTEROV:     /* the book's, as corrected in 2021: p first, then v */      \
        for (i = start; i < end; i++) {                                                     \
            p[i] += mom_sq * s1[i];                                                         \
            p[i] -= lr_step * g[i];                                                         \
            s1[i] *= mom;                                                                   \
            s1[i] -= lr * g[i];                                                             \
        }                                                                                   \
        break;                                                                              \
    case FASTMLP_NESTEROV_SKLEARN:  /* v = m*v - lr*g; p += m*v - lr*g (sklearn's order) */ \
        for (i = start; i < end; i++) {                                                     \
            s1[i] = mom * s1[i] - lr * g[i];                                                \
            p[i] += mom * s1[i] - lr * g[i];                                                \
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
    default:                   /* FASTMLP_ADAM with the bias-corrected rate lr (= lr_t) */  \
        for (i = start; i < end; i++) {                                                     \
            s1[i] += b1 * (g[i] - s1[i]);                                                   \
            s2[i] += b2 * (g[i] * g[i] - s2[i]);                                            \
            p[i] -= lr * s1[i] / (SQRT(s2[i]) + eps);                                       \
        }                                                                                   \
    }                                                                                       \
}

FASTMLP_DEFINE_UPDATE(float, f, sqrtf)
FASTMLP_DEFINE_UPDATE(double, d, sqrt)

#endif
