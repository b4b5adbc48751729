/* adaptive_pool.c - nn.AdaptiveAvgPool2d(output_size) over [N, C, H, W].
 *
 * output_size is an int or (h, w), both positive (torch's None, "keep that
 * input size", is not supported); the output is [N, C, h, w] whatever the
 * input's plane, which makes ResNet's head independent of the image size.
 * The math is tensor_adaptive_avg_pool2d.
 */
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

typedef struct {
    Module base;
    Size2d output_size;
} AdaptiveAvgPool2d;

int nn_adaptive_avg_pool2d_shape(Size2d output_size, int ndim, const int64_t *in, int *out_ndim,
                                 int64_t *out) {
    char s[128];
    if (ndim != 4)
        return error_set("expected a 4-d input [N, C, H, W], got %s",
                         shape_str(ndim, in, s, sizeof s));
    if (in[1] < 1 || in[2] < 1 || in[3] < 1)
        return error_set("expected non-empty channels and planes, got %s",
                         shape_str(ndim, in, s, sizeof s));
    out[0] = in[0];
    out[1] = in[1];
    out[2] = output_size.h;
    out[3] = output_size.w;
    *out_ndim = 4;
    return 0;
}

static int adaptive_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim,
                                int64_t *out) {
    const AdaptiveAvgPool2d *p = (const AdaptiveAvgPool2d *)m;
    return nn_adaptive_avg_pool2d_shape(p->output_size, ndim, in, out_ndim, out);
}

static Tensor *adaptive_forward(Module *m, Tensor *x) {
    const AdaptiveAvgPool2d *p = (const AdaptiveAvgPool2d *)m;
    return tensor_adaptive_avg_pool2d(x, p->output_size.h, p->output_size.w);
}

static const ModuleVTable adaptive_avg_pool2d_vtable = {
    .type = "AdaptiveAvgPool2d",
    .forward = adaptive_forward,
    .infer_shape = adaptive_infer_shape,
};

Module *nn_adaptive_avg_pool2d(Size2d output_size) {
    if (output_size.h <= 0 || output_size.w <= 0)
        return error_set("AdaptiveAvgPool2d: output_size must be positive, got (%d, %d)",
                         output_size.h, output_size.w), NULL;
    AdaptiveAvgPool2d *p = (AdaptiveAvgPool2d *)module_alloc(sizeof *p,
                                                             &adaptive_avg_pool2d_vtable);
    if (!p) return NULL;
    p->output_size = output_size;
    return &p->base;
}
