/* FASTMLP_CLONES: compile a loop for AVX-512, AVX2 and baseline x86-64, picked at load time.
 *
 * With GCC >= 11 on x86-64 glibc (target_clones); elsewhere a plain function. Shared by
 * fastmlp_simd.h (elementwise passes) and fastmlp_optim.h (optimizer rules) so the
 * condition is written once. setup.py builds with -ffp-contract=off, so every clone does
 * the same IEEE operations in the same order: results never depend on the clone.
 */
#ifndef FASTMLP_CLONES_H
#define FASTMLP_CLONES_H
#include <stdlib.h>   /* defines __GLIBC__ where it applies */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \
    && __GNUC__ >= 11
#define FASTMLP_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FASTMLP_CLONES
#endif

#endif
