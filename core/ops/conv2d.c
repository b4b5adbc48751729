/* conv2d.c - 2-d convolution (groups = 1) as im2col + GEMM, with its backward.
 *
 * Per image n of the batch, with K = C*kh*kw and L = out_h*out_w:
 *   forward       out[n] [O, L]  = weight [O, K] @ im2col(x[n]) [K, L] (+ bias)
 *   weight grad   gW     [O, K] += gy[n] [O, L] @ im2col(x[n])^T      (beta = 1)
 *   input grad    gx[n]          = col2im(weight^T [K, O] @ gy[n] [O, L])
 *   bias grad     gb     [O]    += gy[n] [O, L] @ ones [L]
 * so one column buffer of K*L elements is the only scratch, whatever the
 * batch size; the bias is a rank-1 GEMM update, keeping every step on the
 * backend's kernels (and so on the tensor's device). A 1x1 kernel with
 * stride 1 and no padding skips im2col: the image already is its columns.
 */
#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/window2d.h"

/* Image n of a contiguous [N, ...] tensor, as a raw (device) pointer. */
static void *image_at(const Tensor *t, int64_t n) {
    int64_t per = t->shape[1] * t->shape[2] * t->shape[3];
    return (char *)tensor_data(t) + (size_t)(n * per) * dtype_size(t->dtype);
}

static bool is_identity_window(const Window2d *g) {
    return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 && g->stride_w == 1 &&
           g->pad_h == 0 && g->pad_w == 0;
}

/* dtype and device of `t` against the input x. */
static int check_like_input(const char *what, const Tensor *t, const Tensor *x) {
    if (t->dtype != x->dtype)
        return error_set("conv2d: %s is %s but input is %s", what, dtype_name(t->dtype),
                         dtype_name(x->dtype));
    if (!device_equal(t->device, x->device)) {
        char a[16], b[16];
        return error_set("conv2d: %s is on %s but input is on %s", what,
                         device_name(t->device, a, sizeof a), device_name(x->device, b, sizeof b));
    }
    return 0;
}

static int conv2d_check(const Tensor *x, const Tensor *weight, const Tensor *bias, int stride_h,
                        int stride_w, int pad_h, int pad_w, Window2d *g) {
    char sw[128], sb[128];
    if (!dtype_is_float(x->dtype))
        return error_set("conv2d: expected a float input, got %s", dtype_name(x->dtype));
    if (check_like_input("weight", weight, x) || (bias && check_like_input("bias", bias, x)))
        return -1;
    if (weight->ndim != 4)
        return error_set("conv2d: weight must be 4-d [out_channels, in_channels, kh, kw], got %s",
                         tensor_shape_str(weight, sw, sizeof sw));
    for (int i = 0; i < 4; i++)
        if (weight->shape[i] < 1)
            return error_set("conv2d: weight %s has an empty dimension",
                             tensor_shape_str(weight, sw, sizeof sw));
    if (x->ndim == 4 && x->shape[1] != weight->shape[1])
        return error_set("conv2d: input has %lld channels but weight expects %lld (%s)",
                         (long long)x->shape[1], (long long)weight->shape[1],
                         tensor_shape_str(weight, sw, sizeof sw));
    if (bias && (bias->ndim != 1 || bias->shape[0] != weight->shape[0]))
        return error_set("conv2d: bias has shape %s but weight %s needs [%lld]",
                         tensor_shape_str(bias, sb, sizeof sb),
                         tensor_shape_str(weight, sw, sizeof sw), (long long)weight->shape[0]);
    if (weight->shape[2] > INT32_MAX || weight->shape[3] > INT32_MAX)
        return error_set("conv2d: weight %s is too large", tensor_shape_str(weight, sw, sizeof sw));
    if (window2d_init("conv2d", x, (int)weight->shape[2], (int)weight->shape[3], stride_h, stride_w,
                      pad_h, pad_w, g) != 0)
        return -1;
    return 0;
}

/* out = conv(x, weight) + bias on contiguous operands; no autograd. */
static Tensor *conv2d_forward(const Backend *be, const Window2d *g, const Tensor *x,
                              const Tensor *weight, const Tensor *bias) {
    DType dt = x->dtype;
    int64_t O = weight->shape[0], K = g->channels * g->kernel_h * g->kernel_w;
    int64_t L = g->out_h * g->out_w;
    bool direct = is_identity_window(g);
    Tensor *out = tensor_empty(SHAPE(g->batch, O, g->out_h, g->out_w), dt, x->device);
    Tensor *cols = direct ? NULL : tensor_empty(SHAPE(K, L), dt, x->device);
    Tensor *ones = bias ? tensor_full(SHAPE(L), 1.0, dt, x->device) : NULL;
    if (!out || (!direct && !cols) || (bias && !ones)) {
        tensor_release(out);
        tensor_release(cols);
        tensor_release(ones);
        return NULL;
    }
    for (int64_t n = 0; n < g->batch; n++) {
        const void *c = image_at(x, n);
        if (!direct) {
            be->im2col(dt, g, c, tensor_data(cols));
            c = tensor_data(cols);
        }
        be->gemm(dt, false, false, O, L, K, 1.0, tensor_data(weight), K, c, L, 0.0,
                 image_at(out, n), L);
        if (bias) /* out[n] += bias [O, 1] @ ones [1, L] */
            be->gemm(dt, false, false, O, L, 1, 1.0, tensor_data(bias), 1, tensor_data(ones), L,
                     1.0, image_at(out, n), L);
    }
    tensor_release(cols);
    tensor_release(ones);
    return out;
}

/* ints: stride_h, stride_w, pad_h, pad_w. inputs: x, weight[, bias], all
 * contiguous (the op recorded its contiguous copies). */
static int conv2d_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0], *weight = node->inputs[1];
    Tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
    Window2d g;
    if (window2d_init("conv2d backward", x, (int)weight->shape[2], (int)weight->shape[3],
                      (int)node->ints[0], (int)node->ints[1], (int)node->ints[2],
                      (int)node->ints[3], &g) != 0)
        return -1;
    const Backend *be = backend_for(x->device);
    if (!be) return -1;
    DType dt = x->dtype;
    int64_t O = weight->shape[0], K = g.channels * g.kernel_h * g.kernel_w;
    int64_t L = g.out_h * g.out_w;
    bool direct = is_identity_window(&g);
    bool need_x = x->requires_grad, need_w = weight->requires_grad;
    bool need_b = bias && bias->requires_grad;

    Tensor *gyc = tensor_contiguous(gy);
    Tensor *cols = direct ? NULL : tensor_empty(SHAPE(K, L), dt, x->device);
    Tensor *gw = need_w ? tensor_zeros_like(weight) : NULL;
    Tensor *gb = need_b ? tensor_zeros_like(bias) : NULL;
    Tensor *ones = need_b ? tensor_full(SHAPE(L), 1.0, dt, x->device) : NULL;
    Tensor *gi = need_x ? tensor_empty_like(x) : NULL;
    bool ok = gyc && (direct || cols) && (!need_w || gw) && (!need_b || (gb && ones)) &&
              (!need_x || gi);
    for (int64_t n = 0; ok && n < g.batch; n++) {
        const void *gyn = image_at(gyc, n);
        if (need_w) {
            const void *c = image_at(x, n);
            if (!direct) {
                be->im2col(dt, &g, c, tensor_data(cols));
                c = tensor_data(cols);
            }
            be->gemm(dt, false, true, O, K, L, 1.0, gyn, L, c, L, 1.0, tensor_data(gw), K);
        }
        if (need_b)
            be->gemm(dt, false, false, O, 1, L, 1.0, gyn, L, tensor_data(ones), 1, 1.0,
                     tensor_data(gb), 1);
        if (need_x) {
            void *c = direct ? image_at(gi, n) : tensor_data(cols);
            be->gemm(dt, true, false, K, L, O, 1.0, tensor_data(weight), K, gyn, L, 0.0, c, L);
            if (!direct) be->col2im(dt, &g, c, image_at(gi, n));
        }
    }
    tensor_release(gyc);
    tensor_release(cols);
    tensor_release(ones);
    if (!ok) {
        tensor_release(gw);
        tensor_release(gb);
        tensor_release(gi);
        return -1;
    }
    gx[0] = gi;
    gx[1] = gw;
    if (bias) gx[2] = gb;
    return 0;
}

Tensor *tensor_conv2d(Tensor *x, Tensor *weight, Tensor *bias, int stride_h, int stride_w,
                      int pad_h, int pad_w) {
    if (!x || !weight) return NULL;
    Window2d g;
    if (conv2d_check(x, weight, bias, stride_h, stride_w, pad_h, pad_w, &g) != 0) return NULL;
    const Backend *be = backend_for(x->device);
    if (!be) return NULL;
    Tensor *xc = tensor_contiguous(x), *wc = tensor_contiguous(weight);
    Tensor *bc = bias ? tensor_contiguous(bias) : NULL;
    Tensor *out = NULL;
    if (xc && wc && (!bias || bc)) out = conv2d_forward(be, &g, xc, wc, bc);
    Tensor *inputs[3] = {xc, wc, bc};
    int n_inputs = bias ? 3 : 2;
    if (out && autograd_needs_grad(n_inputs, inputs)) {
        AutogradNode *node =
            autograd_record(out, "ConvolutionBackward", conv2d_backward, n_inputs, inputs);
        if (!node) {
            tensor_release(out);
            out = NULL;
        } else {
            node->ints[0] = stride_h;
            node->ints[1] = stride_w;
            node->ints[2] = pad_h;
            node->ints[3] = pad_w;
        }
    }
    tensor_release(xc);
    tensor_release(wc);
    tensor_release(bc);
    return out;
}
