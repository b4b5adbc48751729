/* test_layer_norm.cpp - gpu/kernels/layer_norm.cu on the CPU by tests/sim
 * against its formulas in long double: the forward (y, mean, rstd) with
 * and without weight and bias, gx from the stored mean and rstd, and gw,
 * gb by row chunks into the scratch (the last chunk short) added in
 * order; rows of 33 and 768 (a transformer's), float32 and float64.
 *
 * Prints "sim_layer_norm: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/test_common.h"

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
    char name[96];
    const char *dt = sim_dtype_name(sizeof(T)), *kind = affine ? "affine" : "plain";
    snprintf(name, sizeof name, "layer_norm [%lld, %lld] %s %s: y", (long long)rows,
             (long long)cols, kind, dt);
    sim_expect_near(name, y, want_y, 2e-6);
    snprintf(name, sizeof name, "layer_norm [%lld, %lld] %s %s: mean, rstd", (long long)rows,
             (long long)cols, kind, dt);
    std::vector<T> mr(mean);
    mr.insert(mr.end(), rstd.begin(), rstd.end());
    std::vector<long double> want_mr(want_m);
    want_mr.insert(want_mr.end(), want_r.begin(), want_r.end());
    sim_expect_near(name, mr, want_mr, 2e-6);

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
    snprintf(name, sizeof name, "layer_norm [%lld, %lld] %s %s: gx", (long long)rows,
             (long long)cols, kind, dt);
    sim_expect_near(name, gx, want_gx, 2e-6);
    snprintf(name, sizeof name, "layer_norm [%lld, %lld] %s %s: gw, gb", (long long)rows,
             (long long)cols, kind, dt);
    std::vector<T> wb(gw);
    wb.insert(wb.end(), gb.begin(), gb.end());
    std::vector<long double> want_wb(want_gw);
    want_wb.insert(want_wb.end(), want_gb.begin(), want_gb.end());
    sim_expect_near(name, wb, want_wb, 2e-6);
}

int main(void) {
    layer_norm_case<float>(37, 33, true);
    layer_norm_case<float>(10, 768, false);
    layer_norm_case<double>(37, 33, false);
    layer_norm_case<double>(10, 768, true);
    return sim_summary("layer_norm");
}
