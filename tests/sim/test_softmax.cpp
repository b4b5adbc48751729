/* test_softmax.cpp - gpu/kernels/softmax.cu on the CPU by tests/sim
 * against softmax and log_softmax and their backwards in long double (the
 * backward from the kernel's own y, as the op's), rows of 5, 70 and 1000
 * columns, float32 and float64.
 *
 * Prints "sim_softmax: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/test_common.h"

template <typename T> static void softmax_case(int64_t rows, int64_t cols, bool log_) {
    std::vector<T> x = sim_as<T>(sim_values(rows * cols, 5));
    std::vector<T> gy = sim_as<T>(sim_values(rows * cols, 6));
    std::vector<T> y((size_t)(rows * cols)), gx((size_t)(rows * cols));
    gpu_launch_softmax(sim_dtype<T>(), x.data(), y.data(), rows, cols, log_);
    gpu_launch_softmax_backward(sim_dtype<T>(), y.data(), gy.data(), gx.data(), rows, cols, log_);
    std::vector<long double> want_y((size_t)(rows * cols)), want_gx((size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++) {
        const T *xr = &x[r * cols], *yr = &y[r * cols], *gr = &gy[r * cols];
        long double mx = xr[0], sum = 0, dot = 0, gsum = 0;
        for (int64_t c = 0; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
        for (int64_t c = 0; c < cols; c++) sum += expl(xr[c] - mx);
        for (int64_t c = 0; c < cols; c++) {
            want_y[r * cols + c] = log_ ? xr[c] - mx - logl(sum) : expl(xr[c] - mx) / sum;
            dot += (long double)gr[c] * yr[c];
            gsum += gr[c];
        }
        for (int64_t c = 0; c < cols; c++)
            want_gx[r * cols + c] = log_ ? gr[c] - expl((long double)yr[c]) * gsum
                                         : yr[c] * (gr[c] - dot);
    }
    char name[96];
    snprintf(name, sizeof name, "%s [%lld, %lld] %s: y", log_ ? "log_softmax" : "softmax",
             (long long)rows, (long long)cols, sim_dtype_name(sizeof(T)));
    sim_expect_near(name, y, want_y, 2e-6);
    snprintf(name, sizeof name, "%s [%lld, %lld] %s: gx", log_ ? "log_softmax" : "softmax",
             (long long)rows, (long long)cols, sim_dtype_name(sizeof(T)));
    sim_expect_near(name, gx, want_gx, 2e-6);
}

int main(void) {
    for (int log_ = 0; log_ < 2; log_++) {
        softmax_case<float>(9, 5, log_);
        softmax_case<float>(4, 1000, log_);
        softmax_case<double>(7, 70, log_);
    }
    return sim_summary("softmax");
}
