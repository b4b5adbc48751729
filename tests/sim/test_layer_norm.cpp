/* test_layer_norm.cpp - gpu/kernels/layer_norm.cu on the CPU by tests/sim
 * against its formulas in long double: the forward (y, mean, rstd) with
 * and without weight and bias, gx from the stored mean and rstd, and gw,
 * gb by row chunks into the scratch (the last chunk short) added in
 * order; rows of 33 and 768 (a transformer's), float32 and float64.
 *
 * Prints "sim_layer_norm: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/test_common.h"

/* Outputs a and b (concatenated) against want_a and want_b, named
 * "layer_norm [rows, cols] kind dtype: what". */
template <typename T>
static void expect(const char *what, int64_t rows, int64_t cols, bool affine,
                   std::vector<T> a, const std::vector<T> &b, std::vector<long double> want_a,
                   const std::vector<long double> &want_b) {
    a.insert(a.end(), b.begin(), b.end());
    want_a.insert(want_a.end(), want_b.begin(), want_b.end());
    char name[96];
    snprintf(name, sizeof name, "layer_norm [%lld, %lld] %s %s: %s", (long long)rows,
             (long long)cols, affine ? "affine" : "plain", sim_dtype_name(sizeof(T)), what);
    sim_expect_near(name, a, want_a, 2e-6);
}

template <typename T> static void layer_norm_case(int64_t rows, int64_t cols, bool affine) {
    const double eps = 1e-5;
    std::vector<T> x = sim_as<T>(sim_values(rows * cols, 1));
    std::vector<T> gy = sim_as<T>(sim_values(rows * cols, 2));
    std::vector<T> w = sim_as<T>(sim_values(cols, 3, 0.5)), b = sim_as<T>(sim_values(cols, 4));
    std::vector<T> y((size_t)(rows * cols)), mean((size_t)rows), rstd((size_t)rows);
    gpu_launch_layer_norm(sim_dtype<T>(), x.data(), affine ? w.data() : nullptr,
                          affine ? b.data() : nullptr, eps, y.data(), mean.data(), rstd.data(),
                          rows, cols);
    std::vector<long double> want_y((size_t)(rows * cols)), want_m((size_t)rows),
        want_r((size_t)rows);
    for (int64_t r = 0; r < rows; r++) {
        long double m = 0, v = 0;
        for (int64_t c = 0; c < cols; c++) m += x[r * cols + c];
        m /= cols;
        for (int64_t c = 0; c < cols; c++) v += (x[r * cols + c] - m) * (x[r * cols + c] - m);
        long double rs = 1 / sqrtl(v / cols + eps);
        want_m[r] = m, want_r[r] = rs;
        for (int64_t c = 0; c < cols; c++)
            want_y[r * cols + c] =
                (x[r * cols + c] - m) * rs * (affine ? w[c] : 1) + (affine ? b[c] : 0);
    }
    expect<T>("y", rows, cols, affine, y, {}, want_y, {});
    expect<T>("mean, rstd", rows, cols, affine, mean, rstd, want_m, want_r);

    /* the backward from the stored (rounded) mean and rstd, as the op's */
    int64_t chunks = 3;
    std::vector<T> gx((size_t)(rows * cols)), gw((size_t)cols), gb((size_t)cols);
    std::vector<double> partial((size_t)(2 * chunks * cols));
    gpu_launch_layer_norm_backward(sim_dtype<T>(), x.data(), affine ? w.data() : nullptr,
                                   mean.data(), rstd.data(), gy.data(), gx.data(), gw.data(),
                                   gb.data(), partial.data(), chunks, rows, cols);
    std::vector<long double> want_gx((size_t)(rows * cols)), want_gw((size_t)cols, 0),
        want_gb((size_t)cols, 0);
    for (int64_t r = 0; r < rows; r++) {
        long double a = 0, bb = 0, m = mean[r], rs = rstd[r];
        for (int64_t c = 0; c < cols; c++) {
            long double g = (long double)gy[r * cols + c] * (affine ? w[c] : 1);
            long double xhat = (x[r * cols + c] - m) * rs;
            a += g, bb += g * xhat;
            want_gw[c] += gy[r * cols + c] * xhat;
            want_gb[c] += gy[r * cols + c];
        }
        a /= cols, bb /= cols;
        for (int64_t c = 0; c < cols; c++) {
            long double g = (long double)gy[r * cols + c] * (affine ? w[c] : 1);
            want_gx[r * cols + c] = rs * (g - a - (x[r * cols + c] - m) * rs * bb);
        }
    }
    expect<T>("gx", rows, cols, affine, gx, {}, want_gx, {});
    expect<T>("gw, gb", rows, cols, affine, gw, gb, want_gw, want_gb);
}

int main(void) {
    layer_norm_case<float>(37, 33, true);
    layer_norm_case<float>(10, 768, false);
    layer_norm_case<double>(37, 33, false);
    layer_norm_case<double>(10, 768, true);
    return sim_summary("layer_norm");
}
