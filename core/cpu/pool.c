/* pool.c - max, average and adaptive average pooling over [N, C, H, W] on
 * the CPU.
 *
 * Every (n, c) plane is pooled on its own, so the kernels loop over N*C
 * planes and, inside, over output positions; each window is clipped to the
 * image once, so the innermost loops carry no bounds checks.
 *
 * The semantics are those of torch's CPU kernels (ATen's MaxPoolKernel.cpp
 * and AvgPoolKernel.cpp):
 *  - max: padding counts as -inf; a NaN wins and propagates; the index is
 *    the flat h*W+w position of the maximum inside its input plane, the
 *    first one on ties (the last NaN when there are several);
 *  - avg: count_include_pad=True, ceil_mode=False: the divisor is the window
 *    clipped to the padded input, (hend-hstart)*(wend-wstart) with
 *    hend = min(hstart + kh, H + ph), before clipping to the real input. Sums
 *    run in double, as torch's accumulate type on the CPU;
 *  - adaptive avg: torch's bins (adaptive_span), the mean of each.
 * Both dtypes share one loop body, instantiated per type by POOL_KERNELS.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/window_span.h"

/* The bodies shared by the average pools, sliding and adaptive: every
 * output of each (n, c) plane is the mean over its rows HSPAN (a Span, of
 * oh) and columns WSPAN (of ow), stepping DH and DW, divided by the spans'
 * padded extents; the backward spreads each output gradient evenly over the
 * same window, planes apart (the adaptive bins overlap inside a plane, so
 * the additions stay in (oh, ow) order, the order gpu/kernels/pool.cu's
 * gather adds in). Sums in double. HSPAN and WSPAN may use oh, ow and the
 * locals the macro declares: H, W, OH, OW, dh, dw. */
#define MEAN_OVER_SPANS(T, w, x, out, HSPAN, WSPAN, DH, DW)                                        \
    const int64_t H = w->height, W = w->width, OH = w->out_h, OW = w->out_w;                       \
    const int64_t dh = DH, dw = DW;                                                                \
    _Pragma("omp parallel for schedule(static) if (w->batch * H * W >= CPU_PARALLEL_MIN)")         \
    for (int64_t p = 0; p < w->batch * w->channels; p++) {                                         \
        const T *plane = x + p * H * W;                                                            \
        for (int64_t oh = 0; oh < OH; oh++) {                                                      \
            Span hs = HSPAN;                                                                       \
            for (int64_t ow = 0; ow < OW; ow++) {                                                  \
                Span ws = WSPAN;                                                                   \
                double sum = 0;                                                                    \
                for (int64_t ih = hs.start; ih < hs.end; ih += dh)                                 \
                    for (int64_t iw = ws.start; iw < ws.end; iw += dw)                             \
                        sum += (double)plane[ih * W + iw];                                         \
                out[(p * OH + oh) * OW + ow] = (T)(sum / (double)(hs.padded * ws.padded));         \
            }                                                                                      \
        }                                                                                          \
    }

#define SPREAD_OVER_SPANS(T, w, gy, gx, HSPAN, WSPAN, DH, DW)                                      \
    const int64_t H = w->height, W = w->width, OH = w->out_h, OW = w->out_w;                       \
    const int64_t dh = DH, dw = DW;                                                                \
    _Pragma("omp parallel for schedule(static) if (w->batch * H * W >= CPU_PARALLEL_MIN)")         \
    for (int64_t p = 0; p < w->batch * w->channels; p++) {                                         \
        T *plane = gx + p * H * W;                                                                 \
        memset(plane, 0, (size_t)(H * W) * sizeof(T));                                             \
        for (int64_t oh = 0; oh < OH; oh++) {                                                      \
            Span hs = HSPAN;                                                                       \
            for (int64_t ow = 0; ow < OW; ow++) {                                                  \
                Span ws = WSPAN;                                                                   \
                T g = (T)((double)gy[(p * OH + oh) * OW + ow] / (double)(hs.padded * ws.padded));  \
                for (int64_t ih = hs.start; ih < hs.end; ih += dh)                                 \
                    for (int64_t iw = ws.start; iw < ws.end; iw += dw)                             \
                        plane[ih * W + iw] += g;                                                   \
            }                                                                                      \
        }                                                                                          \
    }

#define POOL_KERNELS(T, SUFFIX)                                                                    \
    /* The common 2x2, stride 2, unpadded window without the general        \
     * clipping; the same rule (first max on ties, the last NaN wins). */   \
    static void max_pool_2x2_##SUFFIX(const Window2d *w, const T *x, T *out, int64_t *idx) {       \
        const int64_t H = w->height, W = w->width, OH = w->out_h, OW = w->out_w;                   \
        _Pragma("omp parallel for schedule(static) if (w->batch * H * W >= CPU_PARALLEL_MIN)")     \
        for (int64_t p = 0; p < w->batch * w->channels; p++) {                                     \
            const T *plane = x + p * H * W;                                                        \
            T *o = out + p * OH * OW;                                                              \
            int64_t *oi = idx + p * OH * OW;                                                       \
            for (int64_t oh = 0; oh < OH; oh++) {                                                  \
                const T *r0 = plane + 2 * oh * W, *r1 = r0 + W;                                    \
                for (int64_t ow = 0; ow < OW; ow++) {                                              \
                    int64_t i0 = 2 * oh * W + 2 * ow;                                              \
                    T best = r0[2 * ow];                                                           \
                    int64_t bi = i0;                                                               \
                    T c1 = r0[2 * ow + 1], c2 = r1[2 * ow], c3 = r1[2 * ow + 1];                   \
                    /* selects, not branches: the comparisons are data-dependent */        \
                    bool t1 = (c1 > best) | (c1 != c1);                                              \
                    best = t1 ? c1 : best, bi = t1 ? i0 + 1 : bi;                                  \
                    bool t2 = (c2 > best) | (c2 != c2);                                              \
                    best = t2 ? c2 : best, bi = t2 ? i0 + W : bi;                                  \
                    bool t3 = (c3 > best) | (c3 != c3);                                              \
                    best = t3 ? c3 : best, bi = t3 ? i0 + W + 1 : bi;                              \
                    o[oh * OW + ow] = best;                                                        \
                    oi[oh * OW + ow] = bi;                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void max_pool_##SUFFIX(const Window2d *w, const T *x, T *out, int64_t *idx) {           \
        const int64_t H = w->height, W = w->width, OH = w->out_h, OW = w->out_w;                   \
        const int64_t dh = w->dilation_h, dw = w->dilation_w;                                      \
        if (backend_window2d_2x2(w)) {                                                             \
            max_pool_2x2_##SUFFIX(w, x, out, idx);                                                 \
            return;                                                                                \
        }                                                                                          \
        for (int64_t p = 0; p < w->batch * w->channels; p++) {                                     \
            const T *plane = x + p * H * W;                                                        \
            for (int64_t oh = 0; oh < OH; oh++) {                                                  \
                Span hs = window_span(oh, w->stride_h, w->pad_h, w->kernel_h, dh, H);              \
                for (int64_t ow = 0; ow < OW; ow++) {                                              \
                    Span ws = window_span(ow, w->stride_w, w->pad_w, w->kernel_w, dw, W);          \
                    int64_t best_i = hs.start * W + ws.start;                                      \
                    T best = (T)-INFINITY;                                                         \
                    for (int64_t ih = hs.start; ih < hs.end; ih += dh) {                           \
                        for (int64_t iw = ws.start; iw < ws.end; iw += dw) {                       \
                            T v = plane[ih * W + iw];                                              \
                            if (v > best || isnan(v)) {                                            \
                                best = v;                                                          \
                                best_i = ih * W + iw;                                              \
                            }                                                                      \
                        }                                                                          \
                    }                                                                              \
                    out[(p * OH + oh) * OW + ow] = best;                                           \
                    idx[(p * OH + oh) * OW + ow] = best_i;                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void max_pool_backward_##SUFFIX(const Window2d *w, const T *gy, const int64_t *idx,     \
                                           T *gx) {                                                \
        const int64_t HW = w->height * w->width, OHW = w->out_h * w->out_w;                        \
        _Pragma("omp parallel for schedule(static) if (w->batch * HW >= CPU_PARALLEL_MIN)")        \
        for (int64_t p = 0; p < w->batch * w->channels; p++) {                                     \
            memset(gx + p * HW, 0, (size_t)HW * sizeof(T));                                        \
            for (int64_t o = 0; o < OHW; o++) gx[p * HW + idx[p * OHW + o]] += gy[p * OHW + o];    \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void avg_pool_##SUFFIX(const Window2d *w, const T *x, T *out) {                         \
        MEAN_OVER_SPANS(T, w, x, out, window_span(oh, w->stride_h, w->pad_h, w->kernel_h, dh, H),  \
                        window_span(ow, w->stride_w, w->pad_w, w->kernel_w, dw, W),                \
                        w->dilation_h, w->dilation_w);                                             \
    }                                                                                              \
                                                                                                   \
    static void avg_pool_backward_##SUFFIX(const Window2d *w, const T *gy, T *gx) {                \
        SPREAD_OVER_SPANS(T, w, gy, gx,                                                            \
                          window_span(oh, w->stride_h, w->pad_h, w->kernel_h, dh, H),              \
                          window_span(ow, w->stride_w, w->pad_w, w->kernel_w, dw, W),              \
                          w->dilation_h, w->dilation_w);                                           \
    }                                                                                              \
                                                                                                   \
    static void adaptive_avg_pool_##SUFFIX(const Window2d *w, const T *x, T *out) {                \
        MEAN_OVER_SPANS(T, w, x, out, adaptive_span(oh, OH, H), adaptive_span(ow, OW, W), 1, 1);   \
    }                                                                                              \
                                                                                                   \
    static void adaptive_avg_pool_backward_##SUFFIX(const Window2d *w, const T *gy, T *gx) {       \
        SPREAD_OVER_SPANS(T, w, gy, gx, adaptive_span(oh, OH, H), adaptive_span(ow, OW, W), 1,     \
                          1);                                                                      \
    }

POOL_KERNELS(float, f32)
POOL_KERNELS(double, f64)

/* The kernel of x's dtype: fn_f64 or fn_f32, on the tensors' data. */
#define BY_DTYPE(t, fn, ...) \
    ((t)->dtype == DTYPE_FLOAT64 ? fn##_f64(__VA_ARGS__) : fn##_f32(__VA_ARGS__))

void cpu_max_pool2d(const Window2d *w, const Tensor *x, Tensor *out, Tensor *indices) {
    BY_DTYPE(x, max_pool, w, tensor_data(x), tensor_data(out), tensor_data(indices));
}

void cpu_max_pool2d_backward(const Window2d *w, const Tensor *gy, const Tensor *indices,
                             Tensor *gx) {
    BY_DTYPE(gy, max_pool_backward, w, tensor_data(gy), tensor_data(indices), tensor_data(gx));
}

void cpu_avg_pool2d(const Window2d *w, const Tensor *x, Tensor *out) {
    BY_DTYPE(x, avg_pool, w, tensor_data(x), tensor_data(out));
}

void cpu_avg_pool2d_backward(const Window2d *w, const Tensor *gy, Tensor *gx) {
    BY_DTYPE(gy, avg_pool_backward, w, tensor_data(gy), tensor_data(gx));
}

void cpu_adaptive_avg_pool2d(const Window2d *w, const Tensor *x, Tensor *out) {
    BY_DTYPE(x, adaptive_avg_pool, w, tensor_data(x), tensor_data(out));
}

void cpu_adaptive_avg_pool2d_backward(const Window2d *w, const Tensor *gy, Tensor *gx) {
    BY_DTYPE(gy, adaptive_avg_pool_backward, w, tensor_data(gy), tensor_data(gx));
}
