/* exp, sigmoid and tanh over arrays, written so GCC vectorises them (no libm call per element).
 *
 * libm's exp/expf is a scalar call per element: the Sigmoid layer ran at 0.4-0.9x numpy's and a
 * sigmoid network step spent much of its time there. Here exp is plain C arithmetic that GCC
 * turns into SIMD code for each clone of fastmlp_clones.h (baseline x86-64, AVX2, AVX-512):
 *
 *   x = k ln2 + r,  k = round(x / ln2) (the 1.5 * 2^52 shift trick), |r| <= ln2 / 2 (+ rounding),
 *       r = (x - k * LN2_HI) - k * LN2_LO  (Cody-Waite: LN2_HI has 32 significant bits, so
 *       k * LN2_HI is exact for |k| < 2^21)
 *   exp(r) = 1 + (r + r^2 * P(r)),  P the Taylor series of (e^r - 1 - r) / r^2 up to r^11
 *       (degree 13 in all; truncation error < 0.04 ulp on |r| <= 0.347); for float32
 *       results up to r^6 (degree 8: below 2^-8 of a float's ulp), r = x - k ln2 in one
 *       step and one 2^k
 *   exp(x) = exp(r) * 2^k1 * 2^k2,  k1 = round(k / 2), k2 = k - k1, each 2^ki built from its
 *       exponent bits; the first product is exact, so a subnormal result is rounded once.
 *
 * Edges, exactly: x is clamped to [-746, 710] first (exp(-746) rounds to +0, exp(710) overflows;
 * [-104, 89] for float32 results, where the same holds after the final rounding),
 * so exp(+inf) = +inf, exp(-inf) = +0, results below 2^-1074 / 2 are +0, subnormal results are
 * produced (not flushed), and NaN stays NaN (the clamps compare false on NaN and the
 * arithmetic carries it). No branches, no errno, no floating-point exceptions relied upon.
 *
 * float32 exp (softmax) is computed in double (the float is widened, exp taken in double, the
 * result rounded once to float), so it is within 0.5 + 2^-8 ulp: correctly rounded except
 * where the true value lies within 2^-8 ulp of a tie; float32's overflow (x > 88.72) and
 * underflow (subnormals, then +0 below -103.97) come out of that last rounding. float32
 * sigmoid and tanh, the hidden layers' passes, run in float arithmetic (fastmlp_sigmoid1_f,
 * fastmlp_tanh1_f below) with twice the SIMD lanes and float division: beside 2-thread GEMMs
 * the double path cost a float32 sigmoid network 0.86x a ReLU one's samples/s.
 *
 * Measured error (tests/exp_ulps.c: `cc -O3 -fno-math-errno -ffp-contract=off -Ikernels
 * tests/exp_ulps.c -lm && ./a.out 1 100000000`; GCC 12.2, glibc 2.36, 2026-11-29, on this
 * project's VM, whose AMD EPYC exposes AVX2 but not AVX-512, so the AVX2 clone; the baseline
 * clone gives the same bits (tests/test_fast_exp.py::test_baseline_and_avx2_code_agree_bitwise
 * compiles the passes for x86-64 and x86-64-v3 and compares), and
 * tests/test_fast_exp.py::test_ulp_program reruns the program on a stride):
 *   float32 exp vs glibc expf, all 2^32 float32 bit patterns (`./a.out 1 1000 exp`): max
 *     1 ulp; 187,745 of the 4,294,967,296 results differ (by 1 ulp: near-ties the two round differently), NaN
 *     exactly where expf gives NaN; every float32 in [88.6, 88.8] (overflow) and [-104.5, -87]
 *     (subnormal results, then 0) gives inf, 0 and subnormals exactly where exp in double
 *     rounded to float does, within 1 ulp of it (test_fast_exp.py);
 *   float32 sigmoid and tanh (in float), all 2^32 bit patterns (`./a.out 1 1000`, 2026-11-30),
 *     vs the double libm formula rounded to float: max 2 ulps for both (125,478,705 and
 *     149,025,424 differ, almost all by 1), NaN exactly where it gives NaN;
 *   float64 exp, 130,000,035 inputs (10^8 uniform in [-745.2, 709.8], 10^7 each in [-1, 1],
 *     [-745.2, -708.4] (subnormal results) and [-25, 25], and 35 edges: +-0, +-inf, NaN,
 *     both sides of the overflow and underflow thresholds, subnormal inputs): max 1 ulp
 *     against glibc exp (11,648,036 differ), max 0.98 ulp against long double expl;
 *     sigmoid max 2.36 ulp against 1 / (1 + expl(-x)), tanh max 2.52 ulp against tanhl.
 *
 * tanh(x) = sign(x) * -m / (2 + m), m = expm1(-2|x|) = 2^k * expm1(r) + (2^k - 1), where
 * expm1(r) = r + r^2 * P(r) with the same P: accurate near 0 (no cancellation), and
 * |x| >= 22 gives +-1 exactly (tanh(22) rounds to 1 in double). sigmoid(x) = 1 / (1 + e) for
 * x >= 0, e / (1 + e) for x < 0, e = exp(-|x|): exp never overflows.
 */
#ifndef FASTMLP_EXP_H
#define FASTMLP_EXP_H
#include <stddef.h>
#include <stdint.h>
#include "fastmlp_clones.h"

#define FASTMLP_LOG2E 1.4426950408889634             /* 1 / ln 2 */
#define FASTMLP_LN2_HI 6.93147180369123816490e-01     /* 0x3fe62e42fee00000 */
#define FASTMLP_LN2_LO 1.90821492927058770002e-10     /* ln 2 - LN2_HI */
#define FASTMLP_SHIFT 6755399441055744.0              /* 1.5 * 2^52: x + SHIFT - SHIFT rounds x */
#define FASTMLP_LN2 0.6931471805599453                 /* ln 2 rounded to double */

typedef union { double d; uint64_t u; } fastmlp_bits;

/* |x| and copysign inline: GCC's and clang's builtins; <math.h>'s functions with other
 * compilers (MSVC), which inline them too. The same IEEE operation either way. */
#if defined(__GNUC__)
#define FASTMLP_FABS(x) __builtin_fabs(x)
#define FASTMLP_FABSF(x) __builtin_fabsf(x)
#define FASTMLP_COPYSIGN(x, s) __builtin_copysign(x, s)
#define FASTMLP_COPYSIGNF(x, s) __builtin_copysignf(x, s)
#else
#include <math.h>
#define FASTMLP_FABS(x) fabs(x)
#define FASTMLP_FABSF(x) fabsf(x)
#define FASTMLP_COPYSIGN(x, s) copysign(x, s)
#define FASTMLP_COPYSIGNF(x, s) copysignf(x, s)
#endif

/* Hide a constant from the optimiser: with a clamp's bound known, GCC threads the clamped path
 * through the whole computation (it folds to a constant there), leaving a branch per element
 * that stops the loop from vectorising. The passes load their bounds through this once. */
#if defined(__GNUC__)
#define FASTMLP_OPAQUE(v) __asm__("" : "+m"(v))
#else
#define FASTMLP_OPAQUE(v) ((void)0)
#endif

/* (e^r - 1 - r) / r^2 by Horner over the exact Taylor coefficients 1/n! rounded to double:
 * n = 2..13 when wide (float64 results), n = 2..8 for float32 results (truncation below
 * 2^-32 relative on |r| <= ln2 / 2, 2^-8 of a float's ulp). ``wide`` is a compile-time
 * constant at every call, so each pass keeps one branch-free chain (Horner's for float64,
 * Estrin's for float32, whose error budget has room for its other rounding order). */
static inline double fastmlp_exp_poly(double r, int wide) {
    if (!wide) {   /* Estrin's scheme: a shorter dependency chain than Horner's, same terms */
        double r2 = r * r, r4 = r2 * r2;
        double lo = (0.5 + 0.16666666666666666 * r)                       /* 1/2!, 1/3! */
                    + (0.041666666666666664 + 0.008333333333333333 * r) * r2;   /* 1/4!, 1/5! */
        double hi = (0.001388888888888889 + 0.0001984126984126984 * r)    /* 1/6!, 1/7! */
                    + 2.48015873015873e-05 * r2;                          /* 1/8! */
        return lo + hi * r4;
    }
    double p = 1.6059043836821613e-10;     /* 1/13! */
    p = p * r + 2.08767569878681e-09;      /* 1/12! */
    p = p * r + 2.505210838544172e-08;     /* 1/11! */
    p = p * r + 2.755731922398589e-07;     /* 1/10! */
    p = p * r + 2.7557319223985893e-06;    /* 1/9! */
    p = p * r + 2.48015873015873e-05;      /* 1/8! */
    p = p * r + 0.0001984126984126984;     /* 1/7! */
    p = p * r + 0.001388888888888889;      /* 1/6! */
    p = p * r + 0.008333333333333333;      /* 1/5! */
    p = p * r + 0.041666666666666664;      /* 1/4! */
    p = p * r + 0.16666666666666666;       /* 1/3! */
    p = p * r + 0.5;                       /* 1/2! */
    return p;
}

/* 2^k for an integer-valued double k in [-1022, 1023], from k + SHIFT's bits. */
static inline double fastmlp_pow2(double k) {
    fastmlp_bits t, s;
    t.d = k + FASTMLP_SHIFT;
    s.u = (t.u - 0x4338000000000000ULL + 1023) << 52;   /* bits of SHIFT: 0x4338... */
    return s.d;
}

/* exp(x) in double; see the header comment for the method, edges and error. Not wide (a
 * float32 result): x is clamped to [-104, 89] by the caller's bounds, so one 2^k will do. */
static inline double fastmlp_exp1(double x, double lo, double hi, int wide) {
    x = x > hi ? hi : x;             /* FASTMLP_EXP_BOUNDS(T); NaN passes both */
    x = x < lo ? lo : x;
    double k = (x * FASTMLP_LOG2E + FASTMLP_SHIFT) - FASTMLP_SHIFT;
    /* float32 results: |k| <= 151, so one step's error (|k| ln2 2^-53 < 2^-45) is harmless */
    double r = wide ? (x - k * FASTMLP_LN2_HI) - k * FASTMLP_LN2_LO : x - k * FASTMLP_LN2;
    double e = 1.0 + (r + (r * r) * fastmlp_exp_poly(r, wide));
    if (!wide)
        return e * fastmlp_pow2(k);
    double k1 = (k * 0.5 + FASTMLP_SHIFT) - FASTMLP_SHIFT;
    return (e * fastmlp_pow2(k1)) * fastmlp_pow2(k - k1);
}

/* tanh(x) in double (see the header comment). */
static inline double fastmlp_tanh1(double x, double lo, int wide) {
    double y = -2.0 * FASTMLP_FABS(x);
    y = y < lo ? lo : y;             /* lo = -44: tanh(22) is 1 in double; NaN passes */
    double k = (y * FASTMLP_LOG2E + FASTMLP_SHIFT) - FASTMLP_SHIFT;
    double r = wide ? (y - k * FASTMLP_LN2_HI) - k * FASTMLP_LN2_LO : y - k * FASTMLP_LN2;
    double q = r + (r * r) * fastmlp_exp_poly(r, wide);   /* expm1(r) */
    double s = fastmlp_pow2(k);
    double m = s * q + (s - 1.0);                      /* expm1(y), in (-1, 0] */
    return FASTMLP_COPYSIGN(-m / (2.0 + m), x);
}

/* sigmoid(x) in double: exp only sees -|x|. */
static inline double fastmlp_sigmoid1(double x, double lo, double hi, int wide) {
    double e = fastmlp_exp1(-FASTMLP_FABS(x), lo, hi, wide);
    return (x >= 0 ? 1.0 : e) / (1.0 + e);
}

/* float32 sigmoid and tanh in float arithmetic: twice the SIMD lanes of the double path and
 * float division (the hidden-layer passes run beside multi-threaded GEMMs, so their cost shows).
 * The same method in float: k = round(y / ln2) (the 1.5 * 2^23 shift), Cody-Waite with a
 * 15-bit LN2_HI_F (k * LN2_HI_F exact for |k| < 512), expm1(r) = r + r^2 * P(r) with P the
 * Taylor terms 1/2! .. 1/7! (truncation below 0.1 ulp on |r| <= 0.347), 2^k from exponent bits
 * (two factors where the result may be subnormal). Errors: see the header comment. */
#define FASTMLP_LOG2E_F 1.44269504f
#define FASTMLP_LN2_HI_F 0.693145751953125f        /* 0x3f317200 */
#define FASTMLP_LN2_LO_F 1.42860677e-06f           /* ln 2 - LN2_HI_F */
#define FASTMLP_SHIFT_F 12582912.0f                /* 1.5 * 2^23 */

typedef union { float f; uint32_t u; } fastmlp_bits_f;

static inline float fastmlp_expm1_poly_f(float r) {   /* (e^r - 1 - r) / r^2, Estrin */
    float r2 = r * r;
    float lo = (0.5f + 0.16666667f * r) + (0.041666668f + 0.008333334f * r) * r2;
    float hi = 0.0013888889f + 0.0001984127f * r;
    return lo + hi * (r2 * r2);
}

/* 2^k for an integer-valued float k in [-126, 127]. */
static inline float fastmlp_pow2_f(float k) {
    fastmlp_bits_f t, s;
    t.f = k + FASTMLP_SHIFT_F;
    s.u = (t.u - 0x4b400000u + 127u) << 23;   /* bits of SHIFT_F: 0x4b400000 */
    return s.f;
}

/* sigmoid(x) in float: e = exp(-|x|) (clamped at lo = -104, where it rounds to +0; a
 * subnormal e is rounded once, through two factors 2^k1 * 2^k2). */
static inline float fastmlp_sigmoid1_f(float x, float lo) {
    float y = -FASTMLP_FABSF(x);
    y = y < lo ? lo : y;             /* NaN passes */
    float k = (y * FASTMLP_LOG2E_F + FASTMLP_SHIFT_F) - FASTMLP_SHIFT_F;   /* [-150, 0] */
    float r = (y - k * FASTMLP_LN2_HI_F) - k * FASTMLP_LN2_LO_F;
    float e = 1.0f + (r + (r * r) * fastmlp_expm1_poly_f(r));
    float k1 = (k * 0.5f + FASTMLP_SHIFT_F) - FASTMLP_SHIFT_F;
    e = (e * fastmlp_pow2_f(k1)) * fastmlp_pow2_f(k - k1);
    return (x >= 0 ? 1.0f : e) / (1.0f + e);
}

/* tanh(x) in float: -m / (2 + m), m = expm1(-2|x|) (clamped at tlo = -18: tanh(9) rounds
 * to 1 in float, and 2^k stays normal). */
static inline float fastmlp_tanh1_f(float x, float tlo) {
    float y = -2.0f * FASTMLP_FABSF(x);
    y = y < tlo ? tlo : y;
    float k = (y * FASTMLP_LOG2E_F + FASTMLP_SHIFT_F) - FASTMLP_SHIFT_F;   /* [-26, 0] */
    float r = (y - k * FASTMLP_LN2_HI_F) - k * FASTMLP_LN2_LO_F;
    float q = r + (r * r) * fastmlp_expm1_poly_f(r);
    float s = fastmlp_pow2_f(k);
    float m = s * q + (s - 1.0f);
    return FASTMLP_COPYSIGNF(-m / (2.0f + m), x);
}

/* The per-type element functions the passes call: float32 in float, float64 in double. */
static inline float fastmlp_sigmoid_elt_f(float x, double lo, double hi) {
    (void)hi; return fastmlp_sigmoid1_f(x, (float)lo);
}
static inline double fastmlp_sigmoid_elt_d(double x, double lo, double hi) {
    return fastmlp_sigmoid1(x, lo, hi, 1);
}
static inline float fastmlp_tanh_elt_f(float x, double tlo) { return fastmlp_tanh1_f(x, (float)tlo); }
static inline double fastmlp_tanh_elt_d(double x, double tlo) { return fastmlp_tanh1(x, tlo, 1); }

/* The clamp bounds of exp (lo, hi) and tanh (tlo), opaque to the optimiser, for results of
 * type T: exp(-746) and exp(-104) round to 0 in double and float, exp(710) and exp(89)
 * overflow. ``wide``: T is double (the long polynomial and the split 2^k). */
#define FASTMLP_EXP_BOUNDS(T)                                                               \
    const int wide = sizeof(T) == sizeof(double);                                           \
    double lo = wide ? -746.0 : -104.0, hi = wide ? 710.0 : 89.0, tlo = wide ? -44.0 : -18.0; \
    FASTMLP_OPAQUE(lo); FASTMLP_OPAQUE(hi); FASTMLP_OPAQUE(tlo); (void)tlo

#define FASTMLP_DEFINE_EXP_PASSES(T, S)                                                      \
/* out[i] = exp(x[i] - shift), i < n (softmax's exponentials; out may be x). */             \
FASTMLP_CLONES static void fastmlp_exp_##S(const T *x, T shift, T *out, ptrdiff_t n) {      \
    FASTMLP_EXP_BOUNDS(T);                                                                     \
    for (ptrdiff_t i = 0; i < n; i++)                                                       \
        out[i] = (T)fastmlp_exp1((double)(x[i] - shift), lo, hi, wide);                                   \
}                                                                                           \
/* out = sigmoid(x) over [start, end); out may be x. */                                     \
FASTMLP_CLONES static void fastmlp_sigmoid_##S(const T *x, T *out, ptrdiff_t start,         \
                                               ptrdiff_t end) {                             \
    FASTMLP_EXP_BOUNDS(T);                                                                     \
    for (ptrdiff_t i = start; i < end; i++)                                                 \
        out[i] = fastmlp_sigmoid_elt_##S(x[i], lo, hi);                                     \
}                                                                                           \
/* out = tanh(x) over [start, end); out may be x. */                                        \
FASTMLP_CLONES static void fastmlp_tanh_##S(const T *x, T *out, ptrdiff_t start,            \
                                            ptrdiff_t end) {                                \
    FASTMLP_EXP_BOUNDS(T);                                                                     \
    for (ptrdiff_t i = start; i < end; i++)                                                 \
        out[i] = fastmlp_tanh_elt_##S(x[i], tlo);                                          \
}                                                                                           \
/* dx = dout * ((1 - out) * (1 + out)) over [start, end): tanh's derivative from its output,  \
 * in T (1 - out is exact for out >= 0.5, unlike 1 - out^2). dx may be dout. */            \
FASTMLP_CLONES static void fastmlp_tanh_backward_##S(const T *dout, const T *out, T *dx,    \
                                                     ptrdiff_t start, ptrdiff_t end) {      \
    for (ptrdiff_t i = start; i < end; i++)                                                 \
        dx[i] = dout[i] * ((1 - out[i]) * (1 + out[i]));                                    \
}                                                                                           \
/* dx = dout * (1 - out) * out over [start, end): sigmoid's derivative from its output, in T,  \
 * left to right as the book writes it. dx may be dout. */                                 \
FASTMLP_CLONES static void fastmlp_sigmoid_backward_##S(const T *dout, const T *out, T *dx, \
                                                        ptrdiff_t start, ptrdiff_t end) {   \
    for (ptrdiff_t i = start; i < end; i++)                                                 \
        dx[i] = dout[i] * (1 - out[i]) * out[i];                                            \
}                                                                                           \
/* h = sigmoid(h + b) per row of n x m (h + b rounded to T first, as the layers do). */     \
FASTMLP_CLONES static void fastmlp_bias_sigmoid_##S(T *h, const T *b, ptrdiff_t n,          \
                                                    ptrdiff_t m) {                          \
    FASTMLP_EXP_BOUNDS(T);                                                                     \
    for (ptrdiff_t i = 0; i < n; i++)                                                       \
        for (ptrdiff_t j = 0; j < m; j++) {                                                 \
            T v = h[i * m + j] + b[j];                                                      \
            h[i * m + j] = fastmlp_sigmoid_elt_##S(v, lo, hi);                              \
        }                                                                                   \
}                                                                                           \
/* h = tanh(h + b) per row of n x m. */                                                     \
FASTMLP_CLONES static void fastmlp_bias_tanh_##S(T *h, const T *b, ptrdiff_t n,             \
                                                 ptrdiff_t m) {                             \
    FASTMLP_EXP_BOUNDS(T);                                                                     \
    for (ptrdiff_t i = 0; i < n; i++)                                                       \
        for (ptrdiff_t j = 0; j < m; j++) {                                                 \
            T v = h[i * m + j] + b[j];                                                      \
            h[i * m + j] = fastmlp_tanh_elt_##S(v, tlo);                                   \
        }                                                                                   \
}

FASTMLP_DEFINE_EXP_PASSES(float, f)
FASTMLP_DEFINE_EXP_PASSES(double, d)

#endif
