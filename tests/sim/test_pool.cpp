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

/* One pooling problem over window w's planes: inputs, the kernels'
 * outputs (gx NaN until written) and the references. */
template <typename T> struct Pooling {
    GpuWindow w;
    int64_t in, out, np;
    std::vector<T> x, gy, y, gx;
    std::vector<long double> want, want_gx;

    Pooling(const GpuWindow &win, uint64_t seed)
        : w(win), in(win.height * win.width), out(win.out_h * win.out_w),
          np(win.batch * win.channels), x(sim_as<T>(sim_values(np * in, seed))),
          gy(sim_as<T>(sim_values(np * out, seed + 1))), y((size_t)(np * out)),
          gx((size_t)(np * in), (T)NAN), want((size_t)(np * out), 0),
          want_gx((size_t)(np * in), 0) {}

    /* Output o of plane p the mean of rows [h0, h1) x columns [w0, w1)
     * (clipped to the input) over `divisor`; its gradient spread there. */
    void average(int64_t p, int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                 long double divisor) {
        for (int64_t ih = std::max<int64_t>(h0, 0); ih < std::min(h1, w.height); ih++)
            for (int64_t iw = std::max<int64_t>(w0, 0); iw < std::min(w1, w.width); iw++) {
                want[p * out + o] += x[p * in + ih * w.width + iw] / divisor;
                want_gx[p * in + ih * w.width + iw] += gy[p * out + o] / divisor;
            }
    }

    /* y within tol_y and gx within 1e-6 (float32) of the references. */
    void expect(const char *label, double tol_y) {
        char name[96];
        snprintf(name, sizeof name, "%s %s", label, sim_dtype_name(sizeof(T)));
        sim_expect_near(name, y, want, tol_y);
        snprintf(name, sizeof name, "%s %s: backward", label, sim_dtype_name(sizeof(T)));
        sim_expect_near(name, gx, want_gx, 1e-6);
    }
};

template <typename T> static void max_case(void) {
    Pooling<T> k(window(3, 2, 1, 2), 12);
    const GpuWindow &w = k.w;
    k.x[1 * w.width + 1] = k.x[1 * w.width + 3] = 50; /* a tie in one window */
    std::vector<int64_t> idx((size_t)(k.np * k.out), -1), want_idx((size_t)(k.np * k.out));
    for (int64_t p = 0; p < k.np; p++)
        for (int64_t o = 0; o < k.out; o++) {
            int64_t oh = o / w.out_w, ow = o % w.out_w, best = -1;
            for (int64_t ki = 0; ki < w.kernel_h; ki++)
                for (int64_t kj = 0; kj < w.kernel_w; kj++) {
                    int64_t ih = oh * w.stride_h - w.pad_h + ki * w.dilation_h;
                    int64_t iw = ow * w.stride_w - w.pad_w + kj * w.dilation_w;
                    if (ih < 0 || ih >= w.height || iw < 0 || iw >= w.width) continue;
                    int64_t at = ih * w.width + iw;
                    if (best < 0 || k.x[p * k.in + at] > k.x[p * k.in + best]) best = at;
                }
            k.want[p * k.out + o] = k.x[p * k.in + best];
            want_idx[p * k.out + o] = best;
            k.want_gx[p * k.in + best] += k.gy[p * k.out + o];
        }
    gpu_launch_max_pool2d(sim_dtype<T>(), &w, k.x.data(), k.y.data(), idx.data());
    gpu_launch_max_pool2d_backward(sim_dtype<T>(), &w, k.gy.data(), idx.data(), k.gx.data());
    k.expect("max_pool2d k 3 s 2 p 1 d 2", 0);
    sim_verdict(idx == want_idx, "  (indices: the first maximum)", 0);
}

template <typename T> static void avg_case(void) {
    GpuWindow win = window(3, 2, 1, 1);
    win.out_w = 5; /* ceil_mode: the last column's window clipped to the padded input */
    Pooling<T> k(win, 14);
    const GpuWindow &w = k.w;
    for (int64_t p = 0; p < k.np; p++)
        for (int64_t o = 0; o < k.out; o++) {
            int64_t h0 = o / w.out_w * w.stride_h - w.pad_h;
            int64_t w0 = o % w.out_w * w.stride_w - w.pad_w;
            int64_t h1 = std::min(h0 + w.kernel_h, w.height + w.pad_h);
            int64_t w1 = std::min(w0 + w.kernel_w, w.width + w.pad_w);
            k.average(p, o, h0, h1, w0, w1, (long double)((h1 - h0) * (w1 - w0)));
        }
    gpu_launch_avg_pool2d(sim_dtype<T>(), &w, k.x.data(), k.y.data());
    gpu_launch_avg_pool2d_backward(sim_dtype<T>(), &w, k.gy.data(), k.gx.data());
    k.expect("avg_pool2d k 3 s 2 p 1 ceil", 1e-6);
}

template <typename T> static void adaptive_case(void) {
    Pooling<T> k(GpuWindow{2, 3, 9, 8, 0, 0, 0, 0, 0, 0, 1, 1, 4, 3}, 16); /* to 4 x 3 */
    const GpuWindow &w = k.w;
    auto lo = [](int64_t o, int64_t n_in, int64_t n_out) { return o * n_in / n_out; };
    auto hi = [](int64_t o, int64_t n_in, int64_t n_out) {
        return ((o + 1) * n_in + n_out - 1) / n_out;
    };
    for (int64_t p = 0; p < k.np; p++)
        for (int64_t oh = 0; oh < w.out_h; oh++)
            for (int64_t ow = 0; ow < w.out_w; ow++) {
                int64_t h0 = lo(oh, w.height, w.out_h), h1 = hi(oh, w.height, w.out_h);
                int64_t w0 = lo(ow, w.width, w.out_w), w1 = hi(ow, w.width, w.out_w);
                k.average(p, oh * w.out_w + ow, h0, h1, w0, w1,
                          (long double)((h1 - h0) * (w1 - w0)));
            }
    gpu_launch_adaptive_avg_pool2d(sim_dtype<T>(), &w, k.x.data(), k.y.data());
    gpu_launch_adaptive_avg_pool2d_backward(sim_dtype<T>(), &w, k.gy.data(), k.gx.data());
    k.expect("adaptive_avg_pool2d 9x8 to 4x3", 1e-6);
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
