/* pool.cu - max, average and adaptive average pooling over [N, C, H, W]:
 * the twins of core/cpu/pool.c, with its semantics (torch's CPU kernels):
 *  - max: padding is -inf; a NaN wins and propagates (the last NaN when
 *    there are several); index = flat h*W+w of the first maximum;
 *  - avg: count_include_pad, the divisor is the window clipped to the
 *    padded input; sums in double;
 *  - adaptive avg: torch's bins (adaptive_span), the mean of each.
 * Forwards: one thread per output. Backwards: one thread per input pixel,
 * gathering from the windows that cover it in the CPU's (oh, ow) order, so
 * no atomics and the same order of additions as the CPU's scatter.
 */
#include "core/window_span.h"
#include "gpu/kernels/common.cuh"

/* The output positions along one axis whose window may cover input i. */
__device__ inline void covering(int64_t i, int64_t stride, int64_t pad, int64_t kernel,
                                int64_t dilation, int64_t n_out, int64_t *lo, int64_t *hi) {
    int64_t top = i + pad;                                  /* o*stride <= top */
    int64_t bottom = top - (kernel - 1) * dilation;         /* o*stride >= bottom */
    int64_t a = bottom <= 0 ? 0 : (bottom + stride - 1) / stride;
    int64_t b = top < 0 ? -1 : top / stride;
    if (b > n_out - 1) b = n_out - 1;
    *lo = a;
    *hi = b + 1;
}

/* Output t of a forward ([N*C, OH, OW] row-major): its plane (n*C + c) and
 * its window clipped to the input, rows hs and columns ws. */
struct OutputWindow {
    int64_t plane;
    Span hs, ws;
};

__device__ inline OutputWindow output_window(const GpuWindow &w, int64_t t) {
    int64_t ow = t % w.out_w, oh = (t / w.out_w) % w.out_h;
    OutputWindow o;
    o.plane = t / (w.out_w * w.out_h);
    o.hs = window_span(oh, w.stride_h, w.pad_h, w.kernel_h, w.dilation_h, w.height);
    o.ws = window_span(ow, w.stride_w, w.pad_w, w.kernel_w, w.dilation_w, w.width);
    return o;
}

/* Does window o along this axis contain input position i (on its
 * dilation grid, inside the clipped span)? */
__device__ inline bool in_window(int64_t i, Span s, int64_t dilation) {
    return i >= s.start && i < s.end && (i - s.start) % dilation == 0;
}

template <typename T>
__global__ void max_pool_kernel(GpuWindow w, const T *x, T *out, int64_t *idx) {
    const int64_t W = w.width;
    const int64_t total = w.batch * w.channels * w.out_h * w.out_w;
    GRID_STRIDE(t, total) {
        const OutputWindow o = output_window(w, t);
        const T *plane = x + o.plane * w.height * W;
        int64_t best_i = o.hs.start * W + o.ws.start;
        T best = (T)-INFINITY;
        for (int64_t ih = o.hs.start; ih < o.hs.end; ih += w.dilation_h)
            for (int64_t iw = o.ws.start; iw < o.ws.end; iw += w.dilation_w) {
                T v = plane[ih * W + iw];
                if (v > best || v != v) {
                    best = v;
                    best_i = ih * W + iw;
                }
            }
        out[t] = best;
        idx[t] = best_i;
    }
}

template <typename T>
__global__ void max_pool_backward_kernel(GpuWindow w, const T *gy, const int64_t *idx, T *gx) {
    const int64_t H = w.height, W = w.width, OH = w.out_h, OW = w.out_w;
    const int64_t total = w.batch * w.channels * H * W;
    GRID_STRIDE(t, total) {
        int64_t iw = t % W, ih = (t / W) % H, p = t / (W * H);
        int64_t pos = ih * W + iw, oh_lo, oh_hi, ow_lo, ow_hi;
        covering(ih, w.stride_h, w.pad_h, w.kernel_h, w.dilation_h, OH, &oh_lo, &oh_hi);
        covering(iw, w.stride_w, w.pad_w, w.kernel_w, w.dilation_w, OW, &ow_lo, &ow_hi);
        const T *g = gy + p * OH * OW;
        const int64_t *ix = idx + p * OH * OW;
        T acc = (T)0;
        for (int64_t oh = oh_lo; oh < oh_hi; oh++)
            for (int64_t ow = ow_lo; ow < ow_hi; ow++)
                if (ix[oh * OW + ow] == pos) acc += g[oh * OW + ow];
        gx[t] = acc;
    }
}

template <typename T> __global__ void avg_pool_kernel(GpuWindow w, const T *x, T *out) {
    const int64_t W = w.width;
    const int64_t total = w.batch * w.channels * w.out_h * w.out_w;
    GRID_STRIDE(t, total) {
        const OutputWindow o = output_window(w, t);
        const T *plane = x + o.plane * w.height * W;
        double sum = 0;
        for (int64_t ih = o.hs.start; ih < o.hs.end; ih += w.dilation_h)
            for (int64_t iw = o.ws.start; iw < o.ws.end; iw += w.dilation_w)
                sum += (double)plane[ih * W + iw];
        out[t] = (T)(sum / (double)(o.hs.padded * o.ws.padded));
    }
}

template <typename T> __global__ void avg_pool_backward_kernel(GpuWindow w, const T *gy, T *gx) {
    const int64_t H = w.height, W = w.width, OH = w.out_h, OW = w.out_w;
    const int64_t total = w.batch * w.channels * H * W;
    GRID_STRIDE(t, total) {
        int64_t iw = t % W, ih = (t / W) % H, p = t / (W * H);
        int64_t oh_lo, oh_hi, ow_lo, ow_hi;
        covering(ih, w.stride_h, w.pad_h, w.kernel_h, w.dilation_h, OH, &oh_lo, &oh_hi);
        covering(iw, w.stride_w, w.pad_w, w.kernel_w, w.dilation_w, OW, &ow_lo, &ow_hi);
        const T *g = gy + p * OH * OW;
        T acc = (T)0;
        for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
            Span hs = window_span(oh, w.stride_h, w.pad_h, w.kernel_h, w.dilation_h, H);
            if (!in_window(ih, hs, w.dilation_h)) continue;
            for (int64_t ow = ow_lo; ow < ow_hi; ow++) {
                Span ws = window_span(ow, w.stride_w, w.pad_w, w.kernel_w, w.dilation_w, W);
                if (!in_window(iw, ws, w.dilation_w)) continue;
                acc += (T)((double)g[oh * OW + ow] / (double)(hs.padded * ws.padded));
            }
        }
        gx[t] = acc;
    }
}

/* AdaptiveAvgPool2d: output t's bins by adaptive_span, the mean in double. */
template <typename T> __global__ void adaptive_avg_pool_kernel(GpuWindow w, const T *x, T *out) {
    const int64_t H = w.height, W = w.width, OH = w.out_h, OW = w.out_w;
    const int64_t total = w.batch * w.channels * OH * OW;
    GRID_STRIDE(t, total) {
        int64_t ow = t % OW, oh = (t / OW) % OH, p = t / (OW * OH);
        Span hs = adaptive_span(oh, OH, H), ws = adaptive_span(ow, OW, W);
        const T *plane = x + p * H * W;
        double sum = 0;
        for (int64_t ih = hs.start; ih < hs.end; ih++)
            for (int64_t iw = ws.start; iw < ws.end; iw++) sum += (double)plane[ih * W + iw];
        out[t] = (T)(sum / (double)(hs.padded * ws.padded));
    }
}

/* The bins covering input i along an axis are exactly the outputs
 * [floor(i*n_out/n_in), ceil((i+1)*n_out/n_in)): the inverse of
 * adaptive_span's rule. Gathered in (oh, ow) order, as the CPU scatters. */
template <typename T>
__global__ void adaptive_avg_pool_backward_kernel(GpuWindow w, const T *gy, T *gx) {
    const int64_t H = w.height, W = w.width, OH = w.out_h, OW = w.out_w;
    const int64_t total = w.batch * w.channels * H * W;
    GRID_STRIDE(t, total) {
        int64_t iw = t % W, ih = (t / W) % H, p = t / (W * H);
        Span oh_range = adaptive_span(ih, H, OH), ow_range = adaptive_span(iw, W, OW);
        const T *g = gy + p * OH * OW;
        T acc = (T)0;
        for (int64_t oh = oh_range.start; oh < oh_range.end; oh++) {
            Span hs = adaptive_span(oh, OH, H);
            for (int64_t ow = ow_range.start; ow < ow_range.end; ow++) {
                Span ws = adaptive_span(ow, OW, W);
                acc += (T)((double)g[oh * OW + ow] / (double)(hs.padded * ws.padded));
            }
        }
        gx[t] = acc;
    }
}

#define LAUNCH(KERNEL, T, total, ...)                                                              \
    KERNEL<T><<<gpu_blocks(total), GPU_THREADS, 0, gpu_stream()>>>(__VA_ARGS__)

extern "C" void gpu_launch_max_pool2d(int dtype, const GpuWindow *w, const void *x, void *out,
                                      int64_t *indices) {
    int64_t total = w->batch * w->channels * w->out_h * w->out_w;
    if (total <= 0) return;
    if (dtype == GPU_F32)
        LAUNCH(max_pool_kernel, float, total, *w, (const float *)x, (float *)out, indices);
    else
        LAUNCH(max_pool_kernel, double, total, *w, (const double *)x, (double *)out, indices);
    gpu_check_launch("max_pool2d kernel");
}

extern "C" void gpu_launch_max_pool2d_backward(int dtype, const GpuWindow *w, const void *gy,
                                               const int64_t *indices, void *gx) {
    int64_t total = w->batch * w->channels * w->height * w->width;
    if (total <= 0) return;
    if (dtype == GPU_F32)
        LAUNCH(max_pool_backward_kernel, float, total, *w, (const float *)gy, indices,
               (float *)gx);
    else
        LAUNCH(max_pool_backward_kernel, double, total, *w, (const double *)gy, indices,
               (double *)gx);
    gpu_check_launch("max_pool2d_backward kernel");
}

extern "C" void gpu_launch_avg_pool2d(int dtype, const GpuWindow *w, const void *x, void *out) {
    int64_t total = w->batch * w->channels * w->out_h * w->out_w;
    if (total <= 0) return;
    if (dtype == GPU_F32)
        LAUNCH(avg_pool_kernel, float, total, *w, (const float *)x, (float *)out);
    else
        LAUNCH(avg_pool_kernel, double, total, *w, (const double *)x, (double *)out);
    gpu_check_launch("avg_pool2d kernel");
}

extern "C" void gpu_launch_avg_pool2d_backward(int dtype, const GpuWindow *w, const void *gy,
                                               void *gx) {
    int64_t total = w->batch * w->channels * w->height * w->width;
    if (total <= 0) return;
    if (dtype == GPU_F32)
        LAUNCH(avg_pool_backward_kernel, float, total, *w, (const float *)gy, (float *)gx);
    else
        LAUNCH(avg_pool_backward_kernel, double, total, *w, (const double *)gy, (double *)gx);
    gpu_check_launch("avg_pool2d_backward kernel");
}

extern "C" void gpu_launch_adaptive_avg_pool2d(int dtype, const GpuWindow *w, const void *x,
                                               void *out) {
    int64_t total = w->batch * w->channels * w->out_h * w->out_w;
    if (total <= 0) return;
    if (dtype == GPU_F32)
        LAUNCH(adaptive_avg_pool_kernel, float, total, *w, (const float *)x, (float *)out);
    else
        LAUNCH(adaptive_avg_pool_kernel, double, total, *w, (const double *)x, (double *)out);
    gpu_check_launch("adaptive_avg_pool2d kernel");
}

extern "C" void gpu_launch_adaptive_avg_pool2d_backward(int dtype, const GpuWindow *w,
                                                        const void *gy, void *gx) {
    int64_t total = w->batch * w->channels * w->height * w->width;
    if (total <= 0) return;
    if (dtype == GPU_F32)
        LAUNCH(adaptive_avg_pool_backward_kernel, float, total, *w, (const float *)gy,
               (float *)gx);
    else
        LAUNCH(adaptive_avg_pool_backward_kernel, double, total, *w, (const double *)gy,
               (double *)gx);
    gpu_check_launch("adaptive_avg_pool2d_backward kernel");
}
