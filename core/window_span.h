/* window_span.h - where a pooling window lies along one axis of the input:
 * the arithmetic that the CPU kernels (core/cpu/pool.c) and their CUDA
 * twins (gpu/kernels/pool.cu) must share exactly. Plain C with no includes
 * of core's, so that nvcc can compile it too (as a device function there).
 */
#ifndef TRAIND_CORE_WINDOW_SPAN_H
#define TRAIND_CORE_WINDOW_SPAN_H

#include <stdint.h>

#ifdef __CUDACC__
#define WINDOW_SPAN_FN static inline __host__ __device__
#else
#define WINDOW_SPAN_FN static inline
#endif

/* A window's clipped input range along one axis: first and one-past-last
 * position, stepping by dilation; `padded` is the extent within the padded
 * input (for the average's divisor, count_include_pad). */
typedef struct {
    int64_t start, end, padded;
} Span;

/* The window of output position o: it starts at o*stride - pad, spans
 * (kernel - 1)*dilation + 1 positions, and is clipped to [0, size). */
WINDOW_SPAN_FN Span window_span(int64_t o, int64_t stride, int64_t pad, int64_t kernel,
                                int64_t dilation, int64_t size) {
    int64_t s = o * stride - pad;
    int64_t e = s + (kernel - 1) * dilation + 1;
    int64_t pe = e < size + pad ? e : size + pad;
    Span span = {s, e, pe - s};
    /* Step start up to the first tap inside the image, keeping the dilation grid. */
    if (span.start < 0) span.start += dilation * ((-span.start + dilation - 1) / dilation);
    if (span.end > size) span.end = size;
    return span;
}

/* AdaptiveAvgPool2d's bin o of n_out over an axis of n_in positions, as
 * torch's start = floor(o * n_in / n_out), end = ceil((o + 1) * n_in / n_out):
 * the bins tile the axis, overlapping when n_out does not divide n_in;
 * `padded` is end - start (no padding). */
WINDOW_SPAN_FN Span adaptive_span(int64_t o, int64_t n_out, int64_t n_in) {
    int64_t start = o * n_in / n_out;
    int64_t end = ((o + 1) * n_in + n_out - 1) / n_out;
    Span span = {start, end, end - start};
    return span;
}

#endif
