/* window2d.c - input checks and output size of a 2-d window; see window2d.h. */
#include "core/ops/window2d.h"

#include "core/error.h"

/* The window over [N, C, H, W] of `shape`, its arguments checked. */
static int init_shape(const char *op, const int64_t *shape, int kernel_h, int kernel_w,
                      int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h,
                      int dilation_w, Window2d *w);

int window2d_init(const char *op, const Tensor *x, int kernel_h, int kernel_w, int stride_h,
                  int stride_w, int pad_h, int pad_w, Window2d *w) {
    return window2d_init_dilated(op, x->ndim, x->shape, kernel_h, kernel_w, stride_h, stride_w,
                                 pad_h, pad_w, 1, 1, w);
}

static int expect_4d(const char *op, int ndim, const int64_t *shape) {
    char s[128];
    if (ndim == 4) return 0;
    return error_set("%s: expected a 4-d input [N, C, H, W], got %s", op,
                     shape_str(ndim, shape, s, sizeof s));
}

int window2d_init_dilated(const char *op, int ndim, const int64_t *shape, int kernel_h,
                          int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w,
                          int dilation_h, int dilation_w, Window2d *w) {
    if (expect_4d(op, ndim, shape) != 0) return -1;
    return init_shape(op, shape, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                      dilation_h, dilation_w, w);
}

int window2d_init_pool(const char *op, int ndim, const int64_t *shape, int kh, int kw, int sh,
                       int sw, int ph, int pw, Window2d *w) {
    if (sh == 0) sh = kh;
    if (sw == 0) sw = kw;
    if (kh >= 1 && kw >= 1 && (ph > kh / 2 || pw > kw / 2)) {
        char s[128];
        return error_set("%s: padding %dx%d must be at most half the kernel %dx%d (input %s)", op,
                         ph, pw, kh, kw, shape_str(ndim, shape, s, sizeof s));
    }
    if (expect_4d(op, ndim, shape) != 0) return -1;
    return init_shape(op, shape, kh, kw, sh, sw, ph, pw, 1, 1, w);
}

static int init_shape(const char *op, const int64_t *shape, int kernel_h, int kernel_w,
                      int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h,
                      int dilation_w, Window2d *w) {
    char s[128];
    shape_str(4, shape, s, sizeof s);
    if (kernel_h < 1 || kernel_w < 1)
        return error_set("%s: kernel size must be positive, got %dx%d", op, kernel_h, kernel_w);
    if (stride_h < 1 || stride_w < 1)
        return error_set("%s: stride must be positive, got %dx%d", op, stride_h, stride_w);
    if (pad_h < 0 || pad_w < 0)
        return error_set("%s: padding must be non-negative, got %dx%d", op, pad_h, pad_w);
    if (dilation_h < 1 || dilation_w < 1)
        return error_set("%s: dilation must be positive, got %dx%d", op, dilation_h, dilation_w);
    int64_t ph = shape[2] + 2 * (int64_t)pad_h, pw = shape[3] + 2 * (int64_t)pad_w;
    /* the span a dilated kernel covers */
    int64_t eh = (int64_t)dilation_h * (kernel_h - 1) + 1, ew = (int64_t)dilation_w * (kernel_w - 1) + 1;
    if (ph < eh || pw < ew)
        return error_set("%s: kernel %lldx%lld is larger than the padded input %lldx%lld (input "
                         "%s, padding %dx%d)",
                         op, (long long)eh, (long long)ew, (long long)ph, (long long)pw, s, pad_h,
                         pad_w);
    *w = (Window2d){
        .batch = shape[0],
        .channels = shape[1],
        .height = shape[2],
        .width = shape[3],
        .kernel_h = kernel_h,
        .kernel_w = kernel_w,
        .stride_h = stride_h,
        .stride_w = stride_w,
        .pad_h = pad_h,
        .pad_w = pad_w,
        .dilation_h = dilation_h,
        .dilation_w = dilation_w,
        .out_h = (ph - eh) / stride_h + 1,
        .out_w = (pw - ew) / stride_w + 1,
    };
    return 0;
}
