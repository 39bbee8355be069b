/* Error of kernels/fastmlp_exp.h against libm, in ulps: the figures in that header's comment.
 *
 *   cc -O3 -fno-math-errno -ffp-contract=off -Ikernels tests/exp_ulps.c -lm -o exp_ulps
 *   ./exp_ulps [float32 stride] [float64 samples] [exp]   (defaults 1 and 100000000; "exp":
 *                                                         float32 exp only, no sigmoid/tanh)
 *
 * float32: every stride-th of the 2^32 bit patterns (stride 1: all of them) through the
 * vectorised passes, against glibc's expf, and sigmoid and tanh against the double libm
 * results rounded to float. float64: random doubles (a fixed xorshift stream) uniform over
 * exp's finite range, over [-1, 1], over the subnormal-result range, plus the edges, against
 * exp (integer ulps between the two results) and against long double expl / tanhl (fractional
 * ulps of the true value). Prints key=value lines; tests/test_fast_exp.py runs it.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fastmlp_exp.h"

#define CHUNK 65536

static int64_t ordered32(float f) {   /* bit patterns as integers in the order of the values */
    int32_t i;
    memcpy(&i, &f, 4);
    return i < 0 ? (int64_t)INT32_MIN - i : i;
}

static int64_t ordered64(double d) {
    int64_t i;
    memcpy(&i, &d, 8);
    return i < 0 ? INT64_MIN - i : i;
}

/* ulps between a and b; 0 when both are NaN; -1 when only one is (a failure). */
static int64_t ulps32(float a, float b) {
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) ? 0 : -1;
    int64_t d = ordered32(a) - ordered32(b);
    return d < 0 ? -d : d;
}

static int64_t ulps64(double a, double b) {
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) ? 0 : -1;
    int64_t d = ordered64(a) - ordered64(b);   /* results are >= -1: no overflow */
    return d < 0 ? -d : d;
}

/* |got - ref| in ulps of ref rounded to double (subnormal spacing below 2^-1022). */
static double frac_ulps64(double got, long double ref) {
    if (isnan(got) || isnan((double)ref))
        return isnan(got) && isnan((double)ref) ? 0 : 1e300;
    if (isinf(got) || isinf((double)ref))
        return got == (double)ref ? 0 : 1e300;
    double r = (double)ref;
    double spacing = nextafter(fabs(r), INFINITY) - fabs(r);
    if (!(spacing > 0)) spacing = 4.9406564584124654e-324;
    return (double)(fabsl((long double)got - ref) / spacing);
}

typedef struct { int64_t max, n_diff, n_bad_nan; } stat32;

static void note32(stat32 *s, int64_t u) {
    if (u < 0) { s->n_bad_nan++; return; }
    if (u > 0) s->n_diff++;
    if (u > s->max) s->max = u;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static double uniform(double lo, double hi) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return lo + (hi - lo) * ((rng_state >> 11) * (1.0 / 9007199254740992.0));
}

int main(int argc, char **argv) {
    uint64_t stride = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
    long samples = argc > 2 ? strtol(argv[2], NULL, 10) : 100000000L;
    int exp_only = argc > 3 && strcmp(argv[3], "exp") == 0;
    if (stride < 1) stride = 1;
    static float x[CHUNK], got[CHUNK], sig[CHUNK], th[CHUNK];
    stat32 e32 = {0}, s32 = {0}, t32 = {0};
    int64_t n32 = 0, finite32 = 0;
    uint64_t bits = 0;
    while (bits < (1ULL << 32)) {
        int n = 0;
        for (; n < CHUNK && bits < (1ULL << 32); n++, bits += stride) {
            uint32_t b = (uint32_t)bits;
            memcpy(&x[n], &b, 4);
        }
        fastmlp_exp_f(x, 0.0f, got, n);
        fastmlp_sigmoid_f(x, sig, 0, n);
        fastmlp_tanh_f(x, th, 0, n);
        for (int i = 0; i < n; i++) {
            int64_t u = ulps32(got[i], expf(x[i]));
            note32(&e32, u);
            if (isfinite(x[i])) finite32++;
            if (exp_only) continue;
            double xd = x[i];
            note32(&s32, ulps32(sig[i], (float)(1.0 / (1.0 + exp(-xd)))));
            note32(&t32, ulps32(th[i], (float)tanh(xd)));
        }
        n32 += n;
    }
    printf("float32_inputs=%lld\nfloat32_finite_inputs=%lld\n", (long long)n32, (long long)finite32);
    printf("float32_exp_max_ulps=%lld\nfloat32_exp_n_differ=%lld\nfloat32_exp_nan_mismatch=%lld\n",
           (long long)e32.max, (long long)e32.n_diff, (long long)e32.n_bad_nan);
    printf("float32_sigmoid_max_ulps=%lld\nfloat32_sigmoid_n_differ=%lld\nfloat32_sigmoid_nan_mismatch=%lld\n",
           (long long)s32.max, (long long)s32.n_diff, (long long)s32.n_bad_nan);
    printf("float32_tanh_max_ulps=%lld\nfloat32_tanh_n_differ=%lld\nfloat32_tanh_nan_mismatch=%lld\n",
           (long long)t32.max, (long long)t32.n_diff, (long long)t32.n_bad_nan);

    /* float64: four ranges of random inputs, then the edges */
    static double xd[CHUNK], gd[CHUNK], sd[CHUNK], td[CHUNK];
    const double ranges[4][2] = {{-745.2, 709.8}, {-1.0, 1.0}, {-745.2, -708.4}, {-25.0, 25.0}};
    const long counts[4] = {samples, samples / 10, samples / 10, samples / 10};
    const double edges[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, -NAN, 709.782712893384,
                            709.7827128933841, 709.78, 710.0, 1e308, -745.1332191019411,
                            -745.1332191019412, -745.2, -746.0, -1e308, -708.3964185322641,
                            -708.4, 1e-300, -1e-300, 4.9406564584124654e-324, 2.2e-308, 1e-17,
                            -1e-17, 0.5, -0.5, 0.34657359027997264, -0.34657359027997264,
                            1.0, -1.0, 22.0, -22.0, 19.0, 40.0, -40.0};
    int64_t max_libm = 0, nan_bad = 0, n64 = 0, differ = 0;
    double max_true = 0, max_tanh = 0, max_sig = 0;
    for (int range = 0; range <= 4; range++) {
        long todo = range < 4 ? counts[range] : (long)(sizeof edges / sizeof edges[0]);
        long done = 0;
        while (done < todo) {
            int n = 0;
            for (; n < CHUNK && done < todo; n++, done++)
                xd[n] = range < 4 ? uniform(ranges[range][0], ranges[range][1]) : edges[done];
            fastmlp_exp_d(xd, 0.0, gd, n);
            fastmlp_sigmoid_d(xd, sd, 0, n);
            fastmlp_tanh_d(xd, td, 0, n);
            for (int i = 0; i < n; i++) {
                int64_t u = ulps64(gd[i], exp(xd[i]));
                if (u < 0) nan_bad++;
                else { if (u > max_libm) max_libm = u; if (u) differ++; }
                long double xl = xd[i];
                double f = frac_ulps64(gd[i], expl(xl));
                if (f > max_true) max_true = f;
                f = frac_ulps64(td[i], tanhl(xl));
                if (f > max_tanh) max_tanh = f;
                f = frac_ulps64(sd[i], 1.0L / (1.0L + expl(-xl)));
                if (f > max_sig) max_sig = f;
            }
            n64 += n;
        }
    }
    printf("float64_inputs=%lld\nfloat64_exp_max_ulps_vs_libm=%lld\nfloat64_exp_n_differ=%lld\n"
           "float64_exp_nan_mismatch=%lld\nfloat64_exp_max_ulps_vs_expl=%.4f\n"
           "float64_sigmoid_max_ulps_vs_long_double=%.4f\nfloat64_tanh_max_ulps_vs_tanhl=%.4f\n",
           (long long)n64, (long long)max_libm, (long long)differ, (long long)nan_bad, max_true,
           max_sig, max_tanh);
    return 0;
}
