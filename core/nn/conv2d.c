/* conv2d.c - nn.Conv2d over [N, C, H, W], with groups and dilation.
 *
 * weight [out_channels, in_channels / groups, kh, kw] and bias
 * [out_channels], initialised as torch's reset_parameters() with fan_in =
 * in_channels / groups * kh * kw. The math is tensor_conv2d_with (im2col +
 * GEMM per group).
 */
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

typedef struct {
    Module base;
    int64_t in_channels, out_channels, groups;
    Size2d kernel, stride, padding, dilation;
} Conv2d;

int nn_conv2d_shape(int64_t in_channels, int64_t out_channels, Size2d kernel, Size2d stride,
                    Size2d padding, int ndim, const int64_t *in, int *out_ndim, int64_t *out) {
    return nn_conv2d_shape_dilated(in_channels, out_channels, kernel, stride, padding, SIZE2D(1),
                                   ndim, in, out_ndim, out);
}

int nn_conv2d_shape_dilated(int64_t in_channels, int64_t out_channels, Size2d kernel,
                            Size2d stride, Size2d padding, Size2d dilation, int ndim,
                            const int64_t *in, int *out_ndim, int64_t *out) {
    char s[128];
    if (ndim == 4 && in[1] != in_channels)
        return error_set("in_channels=%lld but its input has %lld channels (input %s)",
                         (long long)in_channels, (long long)in[1],
                         shape_str(ndim, in, s, sizeof s));
    /* a dilated kernel spans d * (k - 1) + 1 */
    Size2d span = {dilation.h * (kernel.h - 1) + 1, dilation.w * (kernel.w - 1) + 1};
    if (nn_window2d_shape(span, stride, padding, ndim, in, out_ndim, out) != 0) return -1;
    out[1] = out_channels;
    return 0;
}

static int conv2d_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim, int64_t *out) {
    const Conv2d *c = (const Conv2d *)m;
    return nn_conv2d_shape_dilated(c->in_channels, c->out_channels, c->kernel, c->stride,
                                   c->padding, c->dilation, ndim, in, out_ndim, out);
}

static Tensor *conv2d_forward(Module *m, Tensor *x);
static Tensor *conv2d_forward_blocked(Module *m, Tensor *x);

static const ModuleVTable conv2d_vtable = {
    .type = "Conv2d",
    .forward = conv2d_forward,
    .infer_shape = conv2d_infer_shape,
    .forward_blocked = conv2d_forward_blocked,
};

bool nn_conv2d_args(Module *m, Tensor **weight, Tensor **bias, Conv2dParams *p) {
    if (m->vtable != &conv2d_vtable) return false;
    const Conv2d *c = (const Conv2d *)m;
    *p = (Conv2dParams){c->stride.h,   c->stride.w,   c->padding.h,    c->padding.w,
                        c->dilation.h, c->dilation.w, (int)c->groups};
    *weight = module_get(m, "weight");
    *bias = module_get(m, "bias");
    return true;
}

/* The layer's convolution of x, its output blocked where out_blocked. */
static Tensor *conv2d_apply(Module *m, Tensor *x, bool out_blocked) {
    Tensor *weight = NULL, *bias = NULL;
    Conv2dParams p;
    nn_conv2d_args(m, &weight, &bias, &p);
    return tensor_conv2d_layout(x, weight, bias, &p, out_blocked);
}

static Tensor *conv2d_forward(Module *m, Tensor *x) { return conv2d_apply(m, x, false); }

static Tensor *conv2d_forward_blocked(Module *m, Tensor *x) {
    Tensor *y = conv2d_apply(m, x, true);
    tensor_release(x);
    return y;
}

Module *nn_conv2d(int64_t in_channels, int64_t out_channels, Size2d kernel_size, Size2d stride,
                  Size2d padding, bool bias, Rng *rng) {
    return nn_conv2d_grouped(in_channels, out_channels, kernel_size, stride, padding, SIZE2D(1),
                             1, bias, rng);
}

Module *nn_conv2d_grouped(int64_t in_channels, int64_t out_channels, Size2d kernel_size,
                          Size2d stride, Size2d padding, Size2d dilation, int64_t groups,
                          bool bias, Rng *rng) {
    if (in_channels <= 0)
        return error_set("Conv2d: in_channels must be positive, got %lld",
                         (long long)in_channels), NULL;
    if (out_channels <= 0)
        return error_set("Conv2d: out_channels must be positive, got %lld",
                         (long long)out_channels), NULL;
    if (kernel_size.h <= 0 || kernel_size.w <= 0)
        return error_set("Conv2d: kernel_size must be positive, got (%d, %d)", kernel_size.h,
                         kernel_size.w), NULL;
    if (stride.h <= 0 || stride.w <= 0)
        return error_set("Conv2d: stride must be positive, got (%d, %d)", stride.h, stride.w),
               NULL;
    if (padding.h < 0 || padding.w < 0)
        return error_set("Conv2d: padding must be non-negative, got (%d, %d)", padding.h,
                         padding.w), NULL;
    if (dilation.h <= 0 || dilation.w <= 0)
        return error_set("Conv2d: dilation must be positive, got (%d, %d)", dilation.h,
                         dilation.w), NULL;
    if (groups <= 0 || in_channels % groups || out_channels % groups)
        return error_set("Conv2d: groups=%lld must divide in_channels=%lld and "
                         "out_channels=%lld", (long long)groups, (long long)in_channels,
                         (long long)out_channels), NULL;
    if (!rng) return error_set("Conv2d: no Rng to initialise the weights from"), NULL;

    Conv2d *c = (Conv2d *)module_alloc(sizeof *c, &conv2d_vtable);
    if (!c) return NULL;
    c->in_channels = in_channels;
    c->out_channels = out_channels;
    c->kernel = kernel_size;
    c->stride = stride;
    c->padding = padding;
    c->dilation = dilation;
    c->groups = groups;
    Module *m = &c->base;
    int64_t wshape[4] = {out_channels, in_channels / groups, kernel_size.h, kernel_size.w};
    if (module_add_param(m, "weight",
                         tensor_empty(4, wshape, DTYPE_FLOAT32, DEVICE_CPU_INIT)) != 0 ||
        (bias && module_add_param(m, "bias", tensor_empty(1, &out_channels, DTYPE_FLOAT32,
                                                          DEVICE_CPU_INIT)) != 0) ||
        nn_init_linear_like(module_get(m, "weight"), module_get(m, "bias"), rng) != 0) {
        error_prefix("Conv2d");
        module_free(m);
        return NULL;
    }
    return m;
}
