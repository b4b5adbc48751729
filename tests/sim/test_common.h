/* test_common.h - what tests/sim's tests share: deterministic inputs, the
 * verdict line, and "sim_NAME: N passed, M failed" at the end. */
#ifndef TRAIND_TESTS_SIM_TEST_COMMON_H
#define TRAIND_TESTS_SIM_TEST_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include <algorithm>
#include <vector>

#include "gpu/kernels.h"
#include "tests/sim/sim_runtime.h"

static int sim_passed, sim_failed;

/* One check's line on stderr, counted; a failure recorded by the kernel
 * file (gpu_record_msg) fails it too. */
static inline void sim_verdict(bool ok, const char *name, double err) {
    if (sim_error()[0]) fprintf(stderr, "  %s: recorded: %s\n", name, sim_error());
    ok = ok && !sim_error()[0];
    sim_clear_error();
    if (ok) sim_passed++;
    else sim_failed++;
    fprintf(stderr, "%s sim %-56s err %.3g\n", ok ? "  " : "FAIL", name, err);
}

/* n values in [lo, lo + 4) from a 64-bit LCG. */
static inline std::vector<double> sim_values(int64_t n, uint64_t seed, double lo = -2) {
    std::vector<double> x((size_t)(n > 0 ? n : 0));
    for (auto &v : x) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v = lo + (double)(seed >> 40) / (double)(1ull << 24) * 4.0;
    }
    return x;
}

template <typename T> static inline std::vector<T> sim_as(const std::vector<double> &x) {
    return std::vector<T>(x.begin(), x.end());
}

template <typename T> static inline int sim_dtype() { return sizeof(T) == 4 ? GPU_F32 : GPU_F64; }

/* max |got - want| over max(max |want|, 1), within the tolerance of T
 * (float32: tol32, float64: 1e-12); a NaN where the other is not, and the
 * other way round, is an infinite error. */
template <typename T>
static inline void sim_expect_near(const char *name, const std::vector<T> &got,
                                   const std::vector<long double> &want, double tol32) {
    double err = 0, scale = 1;
    for (size_t i = 0; i < want.size(); i++) {
        bool got_nan = got[i] != got[i], want_nan = want[i] != want[i];
        if (got_nan != want_nan) err = INFINITY;
        if (got_nan || want_nan) continue;
        err = fmax(err, fabs((double)((long double)got[i] - want[i])));
        scale = fmax(scale, fabs((double)want[i]));
    }
    err /= scale;
    sim_verdict(err <= (sizeof(T) == 4 ? tol32 : 1e-12), name, err);
}

static inline const char *sim_dtype_name(size_t size) { return size == 4 ? "f32" : "f64"; }

static inline int sim_summary(const char *name) {
    printf("sim_%s: %d passed, %d failed\n", name, sim_passed, sim_failed);
    return sim_failed ? 1 : 0;
}

#endif
