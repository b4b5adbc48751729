/* adaptive_pool.c - adaptive_avg_pool2d over [N, C, H, W], with its backward.
 *
 * torch.nn.functional.adaptive_avg_pool2d: the output has a fixed size
 * [N, C, out_h, out_w] whatever the input's, each output the mean of its
 * bin, bins laid by torch's rule (adaptive_span in core/window_span.h:
 * start = floor(o*H/out_h), end = ceil((o+1)*H/out_h)), so ResNet's
 * AdaptiveAvgPool2d(1) is the mean over each plane. The backward spreads
 * each output gradient evenly over its bin. The kernels are the backend's.
 */
#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

/* The bins' geometry for x; kernel, stride and padding stay 0 (unused). */
static int adaptive_check(const Tensor *x, int out_h, int out_w, Window2d *g) {
    char s[128];
    if (!dtype_is_float(x->dtype))
        return error_set("adaptive_avg_pool2d: expected a float input, got %s",
                         dtype_name(x->dtype));
    if (x->ndim != 4)
        return error_set("adaptive_avg_pool2d: expected a 4-d input [N, C, H, W], got %s",
                         tensor_shape_str(x, s, sizeof s));
    if (x->shape[1] < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        return error_set("adaptive_avg_pool2d: expected non-empty channels and planes, got %s",
                         tensor_shape_str(x, s, sizeof s));
    if (out_h < 1 || out_w < 1)
        return error_set("adaptive_avg_pool2d: output size must be positive, got %dx%d", out_h,
                         out_w);
    *g = (Window2d){.batch = x->shape[0],
                    .channels = x->shape[1],
                    .height = x->shape[2],
                    .width = x->shape[3],
                    .out_h = out_h,
                    .out_w = out_w};
    return 0;
}

/* ints: out_h, out_w. */
static int adaptive_avg_pool2d_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0];
    Window2d g;
    if (adaptive_check(x, (int)node->ints[0], (int)node->ints[1], &g) != 0) return -1;
    const Backend *be = backend_for(x->device);
    Tensor *gyc = be ? tensor_contiguous(gy) : NULL;
    Tensor *gi = gyc ? tensor_empty_like(x) : NULL;
    if (gi && tensor_numel(gi) > 0) be->adaptive_avg_pool2d_backward(&g, gyc, gi);
    tensor_release(gyc);
    gx[0] = gi;
    return gi ? 0 : -1;
}

Tensor *tensor_adaptive_avg_pool2d(Tensor *x, int out_h, int out_w) {
    if (!x) return NULL;
    Window2d g;
    if (adaptive_check(x, out_h, out_w, &g) != 0) return NULL;
    const Backend *be = backend_for(x->device);
    if (!be) return NULL;
    Tensor *xc = tensor_contiguous(x);
    Tensor *out =
        xc ? tensor_empty(SHAPE(g.batch, g.channels, g.out_h, g.out_w), x->dtype, x->device)
           : NULL;
    if (out) {
        if (tensor_numel(out) > 0) be->adaptive_avg_pool2d(&g, xc, out);
        if (autograd_needs_grad(1, &xc)) {
            AutogradNode *node = autograd_record(out, "AdaptiveAvgPool2DBackward",
                                                 adaptive_avg_pool2d_backward, 1, &xc);
            if (node) {
                node->ints[0] = out_h;
                node->ints[1] = out_w;
            } else {
                tensor_release(out);
                out = NULL;
            }
        }
    }
    tensor_release(xc);
    return out;
}
