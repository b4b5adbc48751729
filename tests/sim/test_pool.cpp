/* test_pool.cpp - gpu/kernels/pool.cu on the CPU by tests/sim against
 * torch's CPU definitions: max pooling with padding and dilation (the
 * first maximum's flat index, a tie placed in the input; the backward
 * summing each output's gradient into its maximum), average pooling with
 * count_include_pad (the divisor the window clipped to the padded input,
 * ceil_mode's last window smaller),
 * adaptive average pooling's bins (floor(o * in / out) to
 * ceil((o + 1) * in / out)), each with its backward; float32 and float64.
 *
 * Prints "sim_pool: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/test_common.h"

/* A window over [2, 3, 9, 8] with output sizes from the usual formula. */
static GpuWindow window(int64_t k, int64_t stride, int64_t pad, int64_t dil) {
    GpuWindow w = {2, 3, 9, 8, k, k, stride, stride, pad, pad, dil, dil, 0, 0};
    w.out_h = (w.height + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    w.out_w = (w.width + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    return w;
}

static int64_t planes(const GpuWindow &w) { return w.batch * w.channels; }

template <typename T> static void max_case(void) {
    GpuWindow w = window(3, 2, 1, 2);
    int64_t in = w.height * w.width, out = w.out_h * w.out_w, np = planes(w);
    std::vector<T> x = sim_as<T>(sim_values(np * in, 12)), gy = sim_as<T>(sim_values(np * out, 13));
    x[0 * in + 1 * w.width + 1] = x[0 * in + 1 * w.width + 3] = 50; /* a tie in one window */
    std::vector<T> y((size_t)(np * out)), gx((size_t)(np * in), (T)NAN);
    std::vector<int64_t> idx((size_t)(np * out), -1);
    std::vector<long double> want((size_t)(np * out)), want_gx((size_t)(np * in), 0);
    std::vector<int64_t> want_idx((size_t)(np * out));
    for (int64_t p = 0; p < np; p++)
        for (int64_t o = 0; o < out; o++) {
            int64_t oh = o / w.out_w, ow = o % w.out_w, best = -1;
            for (int64_t ki = 0; ki < w.kernel_h; ki++)
                for (int64_t kj = 0; kj < w.kernel_w; kj++) {
                    int64_t ih = oh * w.stride_h - w.pad_h + ki * w.dilation_h;
                    int64_t iw = ow * w.stride_w - w.pad_w + kj * w.dilation_w;
                    if (ih < 0 || ih >= w.height || iw < 0 || iw >= w.width) continue;
                    int64_t at = ih * w.width + iw;
                    if (best < 0 || x[p * in + at] > x[p * in + best]) best = at;
                }
            want[p * out + o] = x[p * in + best];
            want_idx[p * out + o] = best;
            want_gx[p * in + best] += gy[p * out + o];
        }
    gpu_launch_max_pool2d(sim_dtype<T>(), &w, x.data(), y.data(), idx.data());
    gpu_launch_max_pool2d_backward(sim_dtype<T>(), &w, gy.data(), idx.data(), gx.data());
    char name[64];
    snprintf(name, sizeof name, "max_pool2d k 3 s 2 p 1 d 2 %s: y, index",
             sim_dtype_name(sizeof(T)));
    sim_expect_near(name, y, want, 0);
    sim_verdict(idx == want_idx, "  (indices: the first maximum)", 0);
    snprintf(name, sizeof name, "max_pool2d backward %s", sim_dtype_name(sizeof(T)));
    sim_expect_near(name, gx, want_gx, 1e-6);
}

template <typename T> static void avg_case(void) {
    GpuWindow w = window(3, 2, 1, 1);
    w.out_w = 5; /* ceil_mode: the last column's window clipped to the padded input */
    int64_t in = w.height * w.width, out = w.out_h * w.out_w, np = planes(w);
    std::vector<T> x = sim_as<T>(sim_values(np * in, 14)), gy = sim_as<T>(sim_values(np * out, 15));
    std::vector<T> y((size_t)(np * out)), gx((size_t)(np * in), (T)NAN);
    std::vector<long double> want((size_t)(np * out), 0), want_gx((size_t)(np * in), 0);
    for (int64_t p = 0; p < np; p++)
        for (int64_t o = 0; o < out; o++) {
            int64_t h0 = o / w.out_w * w.stride_h - w.pad_h;
            int64_t w0 = o % w.out_w * w.stride_w - w.pad_w;
            int64_t h1 = std::min(h0 + w.kernel_h, w.height + w.pad_h);
            int64_t w1 = std::min(w0 + w.kernel_w, w.width + w.pad_w);
            long double divisor = (long double)((h1 - h0) * (w1 - w0));
            for (int64_t ih = std::max<int64_t>(h0, 0); ih < std::min(h1, w.height); ih++)
                for (int64_t iw = std::max<int64_t>(w0, 0); iw < std::min(w1, w.width); iw++) {
                    want[p * out + o] += x[p * in + ih * w.width + iw] / divisor;
                    want_gx[p * in + ih * w.width + iw] += gy[p * out + o] / divisor;
                }
        }
    gpu_launch_avg_pool2d(sim_dtype<T>(), &w, x.data(), y.data());
    gpu_launch_avg_pool2d_backward(sim_dtype<T>(), &w, gy.data(), gx.data());
    char name[64];
    snprintf(name, sizeof name, "avg_pool2d k 3 s 2 p 1 ceil %s", sim_dtype_name(sizeof(T)));
    sim_expect_near(name, y, want, 1e-6);
    snprintf(name, sizeof name, "avg_pool2d backward %s", sim_dtype_name(sizeof(T)));
    sim_expect_near(name, gx, want_gx, 1e-6);
}

template <typename T> static void adaptive_case(void) {
    GpuWindow w = {2, 3, 9, 8, 0, 0, 0, 0, 0, 0, 1, 1, 4, 3}; /* to 4 x 3 */
    int64_t in = w.height * w.width, out = w.out_h * w.out_w, np = planes(w);
    std::vector<T> x = sim_as<T>(sim_values(np * in, 16)), gy = sim_as<T>(sim_values(np * out, 17));
    std::vector<T> y((size_t)(np * out)), gx((size_t)(np * in), (T)NAN);
    std::vector<long double> want((size_t)(np * out), 0), want_gx((size_t)(np * in), 0);
    auto lo = [](int64_t o, int64_t n_in, int64_t n_out) { return o * n_in / n_out; };
    auto hi = [](int64_t o, int64_t n_in, int64_t n_out) {
        return ((o + 1) * n_in + n_out - 1) / n_out;
    };
    for (int64_t p = 0; p < np; p++)
        for (int64_t oh = 0; oh < w.out_h; oh++)
            for (int64_t ow = 0; ow < w.out_w; ow++) {
                int64_t h0 = lo(oh, w.height, w.out_h), h1 = hi(oh, w.height, w.out_h);
                int64_t w0 = lo(ow, w.width, w.out_w), w1 = hi(ow, w.width, w.out_w);
                long double count = (long double)((h1 - h0) * (w1 - w0));
                int64_t o = p * out + oh * w.out_w + ow;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) {
                        want[o] += x[p * in + ih * w.width + iw] / count;
                        want_gx[p * in + ih * w.width + iw] += gy[o] / count;
                    }
            }
    gpu_launch_adaptive_avg_pool2d(sim_dtype<T>(), &w, x.data(), y.data());
    gpu_launch_adaptive_avg_pool2d_backward(sim_dtype<T>(), &w, gy.data(), gx.data());
    char name[64];
    snprintf(name, sizeof name, "adaptive_avg_pool2d 9x8 to 4x3 %s", sim_dtype_name(sizeof(T)));
    sim_expect_near(name, y, want, 1e-6);
    snprintf(name, sizeof name, "adaptive_avg_pool2d backward %s", sim_dtype_name(sizeof(T)));
    sim_expect_near(name, gx, want_gx, 1e-6);
}

int main(void) {
    max_case<float>();
    max_case<double>();
    avg_case<float>();
    avg_case<double>();
    adaptive_case<float>();
    adaptive_case<double>();
    return sim_summary("pool");
}
