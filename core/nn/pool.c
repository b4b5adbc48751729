/* pool.c - nn.MaxPool2d and nn.AvgPool2d over [N, C, H, W].
 *
 * torch's arguments (kernel_size, stride=None meaning the kernel size,
 * padding=0) with its limits checked at construction: padding at most half
 * the kernel. dilation 1, ceil_mode False, and for the average
 * count_include_pad True. The math is tensor_max_pool2d / tensor_avg_pool2d.
 */
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

typedef struct {
    Module base;
    Size2d kernel, stride, padding; /* stride already defaulted */
} Pool2d;

int nn_window2d_shape(Size2d kernel, Size2d stride, Size2d padding, int ndim, const int64_t *in,
                      int *out_ndim, int64_t *out) {
    char s[128];
    if (ndim != 4)
        return error_set("expected a 4-d input [N, C, H, W], got %s",
                         shape_str(ndim, in, s, sizeof s));
    int64_t ph = in[2] + 2 * (int64_t)padding.h, pw = in[3] + 2 * (int64_t)padding.w;
    if (ph < kernel.h || pw < kernel.w)
        return error_set("kernel %dx%d is larger than the padded input %lldx%lld (input %s, "
                         "padding %dx%d)",
                         kernel.h, kernel.w, (long long)ph, (long long)pw,
                         shape_str(ndim, in, s, sizeof s), padding.h, padding.w);
    out[0] = in[0];
    out[1] = in[1];
    out[2] = (ph - kernel.h) / stride.h + 1;
    out[3] = (pw - kernel.w) / stride.w + 1;
    *out_ndim = 4;
    return 0;
}

static int pool_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim, int64_t *out) {
    const Pool2d *p = (const Pool2d *)m;
    return nn_window2d_shape(p->kernel, p->stride, p->padding, ndim, in, out_ndim, out);
}

static Tensor *max_pool2d_forward(Module *m, Tensor *x) {
    const Pool2d *p = (const Pool2d *)m;
    return tensor_max_pool2d(x, p->kernel.h, p->kernel.w, p->stride.h, p->stride.w, p->padding.h,
                             p->padding.w);
}

static Tensor *max_pool2d_forward_blocked(Module *m, Tensor *x) {
    const Pool2d *p = (const Pool2d *)m;
    Tensor *y = tensor_max_pool2d_blocked(x, p->kernel.h, p->kernel.w, p->stride.h, p->stride.w,
                                          p->padding.h, p->padding.w);
    tensor_release(x);
    return y;
}

static Tensor *avg_pool2d_forward(Module *m, Tensor *x) {
    const Pool2d *p = (const Pool2d *)m;
    return tensor_avg_pool2d(x, p->kernel.h, p->kernel.w, p->stride.h, p->stride.w, p->padding.h,
                             p->padding.w);
}

static const ModuleVTable max_pool2d_vtable;

bool nn_max_pool2d_args(const Module *m, Pool2dParams *p) {
    if (m->vtable != &max_pool2d_vtable) return false;
    const Pool2d *q = (const Pool2d *)m;
    *p = (Pool2dParams){q->kernel.h, q->kernel.w, q->stride.h, q->stride.w, q->padding.h,
                        q->padding.w};
    return true;
}

static const ModuleVTable max_pool2d_vtable = {
    .type = "MaxPool2d",
    .forward = max_pool2d_forward,
    .infer_shape = pool_infer_shape,
    .forward_blocked = max_pool2d_forward_blocked,
};
static const ModuleVTable avg_pool2d_vtable = {
    .type = "AvgPool2d",
    .forward = avg_pool2d_forward,
    .infer_shape = pool_infer_shape,
};

static Module *pool_new(const ModuleVTable *vt, Size2d kernel, Size2d stride, Size2d padding) {
    const char *type = vt->type;
    if (kernel.h <= 0 || kernel.w <= 0)
        return error_set("%s: kernel_size must be positive, got (%d, %d)", type, kernel.h,
                         kernel.w), NULL;
    if (stride.h == 0 && stride.w == 0) stride = kernel; /* torch's stride=None */
    if (stride.h <= 0 || stride.w <= 0)
        return error_set("%s: stride must be positive, got (%d, %d)", type, stride.h, stride.w),
               NULL;
    if (padding.h < 0 || padding.w < 0)
        return error_set("%s: padding must be non-negative, got (%d, %d)", type, padding.h,
                         padding.w), NULL;
    if (padding.h > kernel.h / 2 || padding.w > kernel.w / 2)
        return error_set("%s: padding (%d, %d) must be at most half of kernel_size (%d, %d)",
                         type, padding.h, padding.w, kernel.h, kernel.w), NULL;
    Pool2d *p = (Pool2d *)module_alloc(sizeof *p, vt);
    if (!p) return NULL;
    p->kernel = kernel;
    p->stride = stride;
    p->padding = padding;
    return &p->base;
}

Module *nn_max_pool2d(Size2d kernel_size, Size2d stride, Size2d padding) {
    return pool_new(&max_pool2d_vtable, kernel_size, stride, padding);
}

Module *nn_avg_pool2d(Size2d kernel_size, Size2d stride, Size2d padding) {
    return pool_new(&avg_pool2d_vtable, kernel_size, stride, padding);
}
