/* test_reduce.cpp - gpu/kernels/reduce.cu run on the CPU by tests/sim
 * (cuda_sim.h; tests/unit/test_gpu_ops.c checks the same kernels on a GPU
 * against the CPU backend), against sums in long double: each of
 * gpu_launch_sum's three kernels (the column sums of a bias's gradient,
 * the split sum of a full sum and of BatchNorm's per-channel sums over
 * [n, c, s] with a short last chunk, the general kernel for kept dims that
 * are not adjacent, a transposed view), BatchNorm's channel_sum_product
 * with and without means and a second factor, and max_last_dim's first
 * maximum and first NaN; float32 and float64.
 *
 * Prints "sim_reduce: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/test_common.h"

/* A kernel's results (dtype T) against the reference: max |got - want|
 * over max(max |want|, 1); T's tolerance (a double sum rounded once). */
/* out[o] over kept (size, stride) pairs, reduced (size, stride) pairs of x. */
template <typename T>
static void sum_case(const char *what, const std::vector<double> &x0, std::vector<int64_t> ks,
                     std::vector<int64_t> kst, std::vector<int64_t> rs, std::vector<int64_t> rst) {
    std::vector<T> x = sim_as<T>(x0);
    int64_t nout = 1, nred = 1;
    for (int64_t s : ks) nout *= s;
    for (int64_t s : rs) nred *= s;
    std::vector<long double> want((size_t)nout, 0);
    for (int64_t o = 0; o < nout; o++) {
        int64_t base = 0, rest = o;
        for (int i = (int)ks.size() - 1; i >= 0; i--) base += rest % ks[i] * kst[i], rest /= ks[i];
        for (int64_t r = 0; r < nred; r++) {
            int64_t off = base, left = r;
            for (int i = (int)rs.size() - 1; i >= 0; i--)
                off += left % rs[i] * rst[i], left /= rs[i];
            want[o] += (long double)x[off];
        }
    }
    std::vector<T> out((size_t)nout, (T)NAN);
    gpu_launch_sum(sim_dtype<T>(), x.data(), (int)ks.size(), ks.data(), kst.data(), (int)rs.size(),
                   rs.data(), rst.data(), out.data(), nout, nred);
    char name[128];
    snprintf(name, sizeof name, "sum %s %s", what, sizeof(T) == 4 ? "f32" : "f64");
    sim_expect_near(name, out, want, 1e-6);
}

template <typename T> static void sums(void) {
    std::vector<double> big = sim_values(100000, 1), small = sim_values(4 * 6 * 5, 2);
    std::vector<double> cols = sim_values(100 * 70, 3), bn = sim_values(3 * 5 * 37, 4);
    std::vector<double> wide = sim_values(9 * 2 * 4000, 5), odd = sim_values(41 * 2 * 37, 6);
    sum_case<T>("full 100000 (split)", big, {}, {}, {100000}, {1});
    sum_case<T>("full 3 (split, one warp)", small, {}, {}, {3}, {1});
    sum_case<T>("columns [100, 70] (column)", cols, {70}, {1}, {100}, {70});
    sum_case<T>("channels [3, 5, 37] (split)", bn, {5}, {37}, {3, 37}, {185, 1});
    sum_case<T>("channels [9, 2, 4000] (split, chunks)", wide, {2}, {4000}, {9, 4000}, {8000, 1});
    /* 2 chunks of 759 of 1517 positions (the last short), a block's step
     * of 256 moving o on by 6 and i by 34 */
    sum_case<T>("channels [41, 2, 37] (split, short chunk)", odd, {2}, {37}, {41, 37}, {74, 1});
    sum_case<T>("dims 0 and 2 of [4, 6, 5] (general)", small, {4, 5}, {30, 1}, {6}, {5});
    sum_case<T>("rows of [6, 20] transposed (general)", small, {20}, {6}, {6}, {1});
}

/* BatchNorm's sum over (n, s) of (u - mu[k]) * (v - mv[k]) per channel k:
 * over [3, 4, 1000] (the split sum) or BatchNorm1d's [100, 70] (s = 1: the
 * column sums). */
template <typename T> static void channel_case(bool means, bool second, bool columns) {
    int64_t n = columns ? 100 : 3, c = columns ? 70 : 4, s = columns ? 1 : 1000;
    std::vector<T> u = sim_as<T>(sim_values(n * c * s, 6)), v = sim_as<T>(sim_values(n * c * s, 7));
    std::vector<T> mu = sim_as<T>(sim_values(c, 8)), mv = sim_as<T>(sim_values(c, 9));
    std::vector<long double> want((size_t)c, 0);
    for (int64_t k = 0; k < c; k++)
        for (int64_t o = 0; o < n; o++)
            for (int64_t i = 0; i < s; i++) {
                int64_t at = (o * c + k) * s + i;
                long double a = (long double)u[at] - (means ? (long double)mu[k] : 0);
                long double b = second ? (long double)v[at] - (means ? (long double)mv[k] : 0) : 1;
                want[k] += a * b;
            }
    std::vector<T> out((size_t)c, (T)NAN);
    gpu_launch_channel_sum_product(sim_dtype<T>(), u.data(), means ? mu.data() : nullptr,
                                   second ? v.data() : nullptr,
                                   means && second ? mv.data() : nullptr, out.data(), n, c, s);
    char name[128];
    snprintf(name, sizeof name, "channel_sum_product%s%s%s %s", columns ? " [n, c]" : "",
             means ? " - mean" : "", second ? " * (v - mean)" : "", sizeof(T) == 4 ? "f32" : "f64");
    sim_expect_near(name, out, want, 1e-6);
}

/* Rows with a tie (the first maximum), a NaN after a NaN (the first NaN),
 * a maximum past the first 32 columns, one column. */
template <typename T> static void max_cases(void) {
    int64_t rows = 5, cols = 70;
    std::vector<T> x = sim_as<T>(sim_values(rows * cols, 10));
    x[0 * cols + 3] = 9, x[0 * cols + 40] = 9;
    x[1 * cols + 50] = (T)NAN, x[1 * cols + 60] = (T)NAN, x[1 * cols + 2] = 100;
    x[2 * cols + 69] = 50;
    x[3 * cols + 0] = 7;
    std::vector<int64_t> want_idx = {3, 50, 69, 0, 0};
    for (int64_t c = 1; c < cols; c++)
        if (x[4 * cols + c] > x[4 * cols + want_idx[4]]) want_idx[4] = c;
    std::vector<T> out((size_t)rows);
    std::vector<int64_t> idx((size_t)rows, -1);
    gpu_launch_max_last_dim(sim_dtype<T>(), x.data(), rows, cols, out.data(), idx.data());
    bool ok = true;
    for (int64_t r = 0; r < rows; r++) {
        T want = x[r * cols + want_idx[r]];
        bool same = idx[r] == want_idx[r] && (out[r] == want || (want != want && out[r] != out[r]));
        if (!same)
            fprintf(stderr, "  row %lld: index %lld (want %lld)\n", (long long)r,
                    (long long)idx[r], (long long)want_idx[r]);
        ok = ok && same;
    }
    std::vector<T> one = {3};
    int64_t one_idx = -1;
    gpu_launch_max_last_dim(sim_dtype<T>(), one.data(), 1, 1, nullptr, &one_idx);
    ok = ok && one_idx == 0;
    sim_verdict(ok, sizeof(T) == 4 ? "max_last_dim ties, NaNs f32" : "max_last_dim ties, NaNs f64",
                0);
}

int main(void) {
    sums<float>();
    sums<double>();
    for (int k = 0; k < 8; k++) {
        channel_case<float>(k & 1, k & 2, k & 4);
        channel_case<double>(k & 1, k & 2, k & 4);
    }
    max_cases<float>();
    max_cases<double>();
    return sim_summary("reduce");
}
