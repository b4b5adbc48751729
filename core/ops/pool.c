/* pool.c - max_pool2d and avg_pool2d over [N, C, H, W], with their backward.
 *
 * Both follow torch.nn.functional with dilation 1, ceil_mode=False and, for
 * the average, count_include_pad=True. max_pool2d keeps the argmax of every
 * window (an int64 tensor, as return_indices=True gives) so its backward is
 * a scatter of the output gradient; avg_pool2d's backward spreads each
 * output gradient evenly over its window. The kernels are the backend's.
 * tensor_max_pool2d_blocked pools x in the blocked layout (core/ops.h's
 * TENSOR_BLOCK): 2x2 stride-2 windows on the backend's kernels for it (the
 * CPU's, an argmax byte a window), others through NCHW.
 */
#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/window2d.h"

/* Checks x and the window, applying torch's defaults and limits
 * (window2d_init_pool). */
static int pool_check(const char *op, const Tensor *x, int kh, int kw, int sh, int sw, int ph,
                      int pw, Window2d *g) {
    if (!dtype_is_float(x->dtype))
        return error_set("%s: expected a float input, got %s", op, dtype_name(x->dtype));
    return window2d_init_pool(op, x->ndim, x->shape, kh, kw, sh, sw, ph, pw, g);
}

/* The node's window again, from the input it holds. ints: kh, kw, sh, sw,
 * ph, pw (stride already defaulted). */
static int node_window(const char *op, AutogradNode *node, Window2d *g) {
    const int64_t *k = node->ints;
    return window2d_init(op, node->inputs[0], (int)k[0], (int)k[1], (int)k[2], (int)k[3],
                         (int)k[4], (int)k[5], g);
}

static AutogradNode *record_pool(Tensor *out, const char *name, BackwardFn bw, Tensor *x,
                                 const Window2d *g) {
    AutogradNode *node = autograd_record(out, name, bw, 1, &x);
    if (!node) return NULL;
    int64_t params[6] = {g->kernel_h, g->kernel_w, g->stride_h, g->stride_w, g->pad_h, g->pad_w};
    for (int i = 0; i < 6; i++) node->ints[i] = params[i];
    return node;
}

/* ---- max ---- */

/* Records a max pool of x on out, which keeps its argmax (out released on
 * failure). */
static Tensor *record_max_pool(Tensor *out, BackwardFn bw, Tensor *x, const Window2d *g,
                               Tensor *argmax) {
    AutogradNode *node = record_pool(out, "MaxPool2DWithIndicesBackward", bw, x, g);
    if (!node) {
        tensor_release(out);
        return NULL;
    }
    autograd_save(node, 0, argmax);
    return out;
}

/* saved[0]: the int64 argmax indices. */
static int max_pool2d_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Window2d g;
    if (node_window("max_pool2d backward", node, &g) != 0) return -1;
    Tensor *x = node->inputs[0];
    const Backend *be = backend_for(x->device);
    Tensor *gyc = be ? tensor_contiguous(gy) : NULL;
    Tensor *gi = gyc ? tensor_empty_like(x) : NULL;
    if (gi) be->max_pool2d_backward(&g, gyc, node->saved[0], gi);
    tensor_release(gyc);
    gx[0] = gi;
    return gi ? 0 : -1;
}

Tensor *tensor_max_pool2d(Tensor *x, int kernel_h, int kernel_w, int stride_h, int stride_w,
                          int pad_h, int pad_w) {
    if (!x) return NULL;
    Window2d g;
    if (pool_check("max_pool2d", x, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, &g))
        return NULL;
    const Backend *be = backend_for(x->device);
    if (!be) return NULL;
    Tensor *xc = tensor_contiguous(x);
    int64_t shape[4] = {g.batch, g.channels, g.out_h, g.out_w};
    Tensor *out = xc ? tensor_empty(4, shape, x->dtype, x->device) : NULL;
    Tensor *idx = out ? tensor_empty(4, shape, DTYPE_INT64, x->device) : NULL;
    if (idx) {
        if (tensor_numel(out) > 0) be->max_pool2d(&g, xc, out, idx);
        if (autograd_needs_grad(1, &xc))
            out = record_max_pool(out, max_pool2d_backward, xc, &g, idx);
    } else {
        tensor_release(out);
        out = NULL;
    }
    tensor_release(idx);
    tensor_release(xc);
    return out;
}

/* ---- max over the blocked layout ---- */

/* saved[0]: the uint8 argmax a window. */
static int max_pool2d_blocked_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0];
    const Backend *be = backend_for(x->device);
    Tensor *gyc = be ? tensor_contiguous(gy) : NULL;
    Tensor *gi = gyc ? tensor_empty_like(x) : NULL;
    if (gi) be->max_pool2d_2x2_blocked_backward(node->saved[0], gyc, gi);
    tensor_release(gyc);
    gx[0] = gi;
    return gi ? 0 : -1;
}

/* The 2x2 stride-2 window on the backend's kernels; out NULL on failure. */
static Tensor *max_pool2d_2x2_blocked(const Backend *be, Tensor *x, const Window2d *g) {
    Tensor *xc = tensor_contiguous(x);
    int64_t shape[5] = {g->batch, x->shape[1], g->out_h, g->out_w, TENSOR_BLOCK};
    Tensor *out = xc ? tensor_empty(5, shape, x->dtype, x->device) : NULL;
    Tensor *argmax = out ? tensor_empty(5, shape, DTYPE_UINT8, x->device) : NULL;
    if (argmax) be->max_pool2d_2x2_blocked(xc, out, argmax);
    if (!argmax) {
        tensor_release(out);
        out = NULL;
    } else if (autograd_needs_grad(1, &xc)) {
        out = record_max_pool(out, max_pool2d_blocked_backward, xc, g, argmax);
    }
    tensor_release(argmax), tensor_release(xc);
    return out;
}

Tensor *tensor_max_pool2d_blocked(Tensor *x, int kernel_h, int kernel_w, int stride_h,
                                  int stride_w, int pad_h, int pad_w) {
    if (!x) return NULL;
    int64_t nchw[4];
    Window2d g;
    if (tensor_blocked_nchw("max_pool2d", x->ndim, x->shape, nchw) != 0 ||
        window2d_init_pool("max_pool2d", 4, nchw, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                           pad_w, &g) != 0)
        return NULL;
    const Backend *be = backend_for(x->device);
    if (!be) return NULL;
    if (backend_window2d_2x2(&g) && tensor_blocked_layout_native(x) && be->max_pool2d_2x2_blocked)
        return max_pool2d_2x2_blocked(be, x, &g);
    Tensor *xn = tensor_from_blocked(x);
    Tensor *y = tensor_max_pool2d(xn, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w);
    Tensor *out = tensor_to_blocked(y);
    tensor_release(xn), tensor_release(y);
    return out;
}

bool tensor_max_pool2d_2x2(const Pool2dParams *p) {
    Window2d w = {.kernel_h = p->kernel_h,
                  .kernel_w = p->kernel_w,
                  .stride_h = p->stride_h ? p->stride_h : p->kernel_h,
                  .stride_w = p->stride_w ? p->stride_w : p->kernel_w,
                  .pad_h = p->pad_h,
                  .pad_w = p->pad_w,
                  .dilation_h = 1,
                  .dilation_w = 1};
    return backend_window2d_2x2(&w);
}

/* ---- average ---- */

static int avg_pool2d_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Window2d g;
    if (node_window("avg_pool2d backward", node, &g) != 0) return -1;
    Tensor *x = node->inputs[0];
    const Backend *be = backend_for(x->device);
    Tensor *gyc = be ? tensor_contiguous(gy) : NULL;
    Tensor *gi = gyc ? tensor_empty_like(x) : NULL;
    if (gi) be->avg_pool2d_backward(&g, gyc, gi);
    tensor_release(gyc);
    gx[0] = gi;
    return gi ? 0 : -1;
}

Tensor *tensor_avg_pool2d(Tensor *x, int kernel_h, int kernel_w, int stride_h, int stride_w,
                          int pad_h, int pad_w) {
    if (!x) return NULL;
    Window2d g;
    if (pool_check("avg_pool2d", x, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, &g))
        return NULL;
    const Backend *be = backend_for(x->device);
    if (!be) return NULL;
    Tensor *xc = tensor_contiguous(x);
    Tensor *out = xc ? tensor_empty(SHAPE(g.batch, g.channels, g.out_h, g.out_w), x->dtype,
                                    x->device)
                     : NULL;
    if (out) {
        if (tensor_numel(out) > 0) be->avg_pool2d(&g, xc, out);
        if (autograd_needs_grad(1, &xc) &&
            !record_pool(out, "AvgPool2DBackward", avg_pool2d_backward, xc, &g)) {
            tensor_release(out);
            out = NULL;
        }
    }
    tensor_release(xc);
    return out;
}
