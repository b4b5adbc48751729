/* conv.c - im2col and col2im, the CPU halves of convolution as a GEMM.
 *
 * im2col unrolls one image [C, H, W] into columns [C*kh*kw, out_h*out_w]
 * (the layout of Caffe and torch.nn.functional.unfold), so that
 * conv2d(x) = weight[O, C*kh*kw] @ columns. Rows lie `ld` apart, so the
 * images of a batch fill side-by-side blocks of one wide column matrix. col2im is its adjoint: it
 * scatter-adds columns back into a zeroed image, giving the input gradient.
 *
 * Each column row (c, ki, kj) reads image row ih = oh*sh - ph + ki*dh at
 * iw = ow*sw - pw + kj*dw. The ranges of oh and ow that land inside the image
 * depend only on ki and kj, so they are worked out once up front; the inner
 * loops then run without bounds checks: padding rows are zero-filled and
 * each output row is a short copy loop (rows are tens of elements: a loop
 * the compiler vectorises beats a memcpy call per row).
 *
 * Both dtypes share one loop body, instantiated per type by CONV_KERNELS.
 */
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"

/* floor(a / b) for b > 0 and any a. */
static int64_t floor_div(int64_t a, int64_t b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The [lo, hi) range of output positions o in [0, n_out) whose input
 * position o*stride + off falls inside [0, size). */
static void valid_range(int64_t off, int64_t stride, int64_t size, int64_t n_out, int64_t *lo,
                        int64_t *hi) {
    int64_t a = off >= 0 ? 0 : floor_div(-off + stride - 1, stride); /* ceil(-off/stride) */
    int64_t b = floor_div(size - 1 - off, stride) + 1;
    if (a > n_out) a = n_out;
    if (b > n_out) b = n_out;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

#define CONV_KERNELS(T, SUFFIX)                                                                    \
    static void im2col_##SUFFIX(const Window2d *w, const T *image, T *columns, int64_t ld) {                   \
        const int64_t H = w->height, W = w->width, OH = w->out_h, OW = w->out_w;                   \
        const int64_t sh = w->stride_h, sw = w->stride_w;                                          \
        T *col = columns;                                                                          \
        for (int64_t c = 0; c < w->channels; c++) {                                                \
            const T *plane = image + c * H * W;                                                    \
            for (int64_t ki = 0; ki < w->kernel_h; ki++) {                                         \
                int64_t hoff = ki * w->dilation_h - w->pad_h, oh_lo, oh_hi;                        \
                valid_range(hoff, sh, H, OH, &oh_lo, &oh_hi);                                      \
                for (int64_t kj = 0; kj < w->kernel_w; kj++) {                                     \
                    int64_t woff = kj * w->dilation_w - w->pad_w, ow_lo, ow_hi;                    \
                    valid_range(woff, sw, W, OW, &ow_lo, &ow_hi);                                  \
                    int64_t oh_end = ow_lo < ow_hi ? oh_hi : oh_lo; /* no column in range */       \
                    memset(col, 0, (size_t)(oh_lo * OW) * sizeof(T));                              \
                    for (int64_t oh = oh_lo; oh < oh_end; oh++) {                                  \
                        /* src: the input element of ow = ow_lo; never before the row */           \
                        const T *src = plane + (oh * sh + hoff) * W + ow_lo * sw + woff;           \
                        T *dst = col + oh * OW;                                                    \
                        /* short rows: plain loops, not library calls */                          \
                        for (int64_t i = 0; i < ow_lo; i++) dst[i] = 0;                            \
                        if (sw == 1) {                                                             \
                            for (int64_t i = ow_lo; i < ow_hi; i++) dst[i] = src[i - ow_lo];       \
                        } else {                                                                   \
                            for (int64_t i = 0; i < ow_hi - ow_lo; i++)                            \
                                dst[ow_lo + i] = src[i * sw];                                      \
                        }                                                                          \
                        for (int64_t i = ow_hi; i < OW; i++) dst[i] = 0;                           \
                    }                                                                              \
                    memset(col + oh_end * OW, 0, (size_t)((OH - oh_end) * OW) * sizeof(T));        \
                    col += ld;                                                                     \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void col2im_##SUFFIX(const Window2d *w, const T *columns, int64_t ld, T *image) {                 \
        const int64_t H = w->height, W = w->width, OH = w->out_h, OW = w->out_w;                   \
        const int64_t sh = w->stride_h, sw = w->stride_w;                                          \
        memset(image, 0, (size_t)(w->channels * H * W) * sizeof(T));                               \
        const T *col = columns;                                                                    \
        for (int64_t c = 0; c < w->channels; c++) {                                                \
            T *plane = image + c * H * W;                                                          \
            for (int64_t ki = 0; ki < w->kernel_h; ki++) {                                         \
                int64_t hoff = ki * w->dilation_h - w->pad_h, oh_lo, oh_hi;                        \
                valid_range(hoff, sh, H, OH, &oh_lo, &oh_hi);                                      \
                for (int64_t kj = 0; kj < w->kernel_w; kj++) {                                     \
                    int64_t woff = kj * w->dilation_w - w->pad_w, ow_lo, ow_hi;                    \
                    valid_range(woff, sw, W, OW, &ow_lo, &ow_hi);                                  \
                    int64_t oh_end = ow_lo < ow_hi ? oh_hi : oh_lo; /* no column in range */       \
                    for (int64_t oh = oh_lo; oh < oh_end; oh++) {                                  \
                        T *dst = plane + (oh * sh + hoff) * W + ow_lo * sw + woff;                 \
                        const T *src = col + oh * OW + ow_lo;                                      \
                        if (sw == 1) {                                                             \
                            for (int64_t i = 0; i < ow_hi - ow_lo; i++) dst[i] += src[i];          \
                        } else {                                                                   \
                            for (int64_t i = 0; i < ow_hi - ow_lo; i++)                            \
                                dst[i * sw] += src[i];                                             \
                        }                                                                          \
                    }                                                                              \
                    col += ld;                                                                     \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

CONV_KERNELS(float, f32)
CONV_KERNELS(double, f64)

/* Images are independent: split them over the OpenMP threads. */
void cpu_im2col(DType dtype, const Window2d *w, const void *images, int64_t n, void *columns,
                int64_t ld) {
    int64_t L = w->out_h * w->out_w, per = w->channels * w->height * w->width;
    size_t es = dtype_size(dtype);
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t i = 0; i < n; i++) {
        const char *img = (const char *)images + (size_t)(i * per) * es;
        char *col = (char *)columns + (size_t)(i * L) * es;
        if (dtype == DTYPE_FLOAT64)
            im2col_f64(w, (const double *)img, (double *)col, ld);
        else
            im2col_f32(w, (const float *)img, (float *)col, ld);
    }
}

void cpu_col2im(DType dtype, const Window2d *w, const void *columns, int64_t ld, int64_t n,
                void *images) {
    int64_t L = w->out_h * w->out_w, per = w->channels * w->height * w->width;
    size_t es = dtype_size(dtype);
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t i = 0; i < n; i++) {
        const char *col = (const char *)columns + (size_t)(i * L) * es;
        char *img = (char *)images + (size_t)(i * per) * es;
        if (dtype == DTYPE_FLOAT64)
            col2im_f64(w, (const double *)col, ld, (double *)img);
        else
            col2im_f32(w, (const float *)col, ld, (float *)img);
    }
}
