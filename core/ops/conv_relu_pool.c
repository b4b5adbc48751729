/* conv_relu_pool.c - max_pool2d(relu(conv2d(x))) as one op (core/ops.h).
 *
 * Where the backend has conv2d_relu_max_pool2d (the CPU's oneDNN) and
 * takes the case, the forward is that one call and the backward its
 * companion, which reads what the forward saved (the ReLU's output and the
 * pooling's argmax, in the library's layouts). Anything else (float64,
 * the GPU, a shape the library refuses) runs conv2d, relu and max_pool2d
 * one by one, which also gives every argument error its usual message.
 */
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/window2d.h"

static Tensor *one_by_one(Tensor *x, Tensor *weight, Tensor *bias, const Conv2dParams *cp,
                          const Pool2dParams *pp) {
    Tensor *y = tensor_conv2d_with(x, weight, bias, cp);
    Tensor *r = tensor_relu(y);
    Tensor *out = tensor_max_pool2d(r, pp->kernel_h, pp->kernel_w, pp->stride_h, pp->stride_w,
                                    pp->pad_h, pp->pad_w);
    tensor_release(y);
    tensor_release(r);
    return out;
}

/* Both windows, or -1 where an argument is off (the one-by-one ops then
 * say which). ints: the node's 13 parameters, conv's then the pool's. */
static int block_of(const Tensor *x, const Tensor *weight, const Tensor *bias,
                    const Conv2dParams *cp, const Pool2dParams *pp, ConvReluPool *b,
                    int64_t *ints) {
    if (conv2d_window(x, weight, bias, cp, &b->conv) != 0) return -1;
    int64_t conv_out[4] = {b->conv.batch, weight->shape[0], b->conv.out_h, b->conv.out_w};
    if (window2d_init_pool("max_pool2d", 4, conv_out, pp->kernel_h, pp->kernel_w, pp->stride_h,
                           pp->stride_w, pp->pad_h, pp->pad_w, &b->pool) != 0)
        return -1;
    b->out_channels = weight->shape[0], b->groups = cp->groups, b->bias = bias != NULL;
    const int64_t p[13] = {cp->stride_h,     cp->stride_w,     cp->pad_h,        cp->pad_w,
                           cp->dilation_h,   cp->dilation_w,   cp->groups,       pp->kernel_h,
                           pp->kernel_w,     b->pool.stride_h, b->pool.stride_w, pp->pad_h,
                           pp->pad_w};
    if (ints) memcpy(ints, p, sizeof p);
    return 0;
}

static void params_of(const int64_t *k, Conv2dParams *cp, Pool2dParams *pp) {
    *cp =
        (Conv2dParams){(int)k[0], (int)k[1], (int)k[2], (int)k[3], (int)k[4], (int)k[5], (int)k[6]};
    *pp = (Pool2dParams){(int)k[7], (int)k[8], (int)k[9], (int)k[10], (int)k[11], (int)k[12]};
}

/* inputs: x, weight[, bias], contiguous; saved: the backend's two. */
static int block_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0], *weight = node->inputs[1];
    Tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
    Conv2dParams cp;
    Pool2dParams pp;
    params_of(node->ints, &cp, &pp);
    ConvReluPool b;
    if (block_of(x, weight, bias, &cp, &pp, &b, NULL) != 0) return -1;
    const Backend *be = backend_for(x->device);
    if (!be) return -1;
    Tensor *gyc = tensor_contiguous(gy);
    Tensor *gi = x->requires_grad ? tensor_empty_like(x) : NULL;
    Tensor *gw = weight->requires_grad ? tensor_empty_like(weight) : NULL;
    Tensor *gb = bias && bias->requires_grad ? tensor_empty_like(bias) : NULL;
    bool ok = gyc && (gi || !x->requires_grad) && (gw || !weight->requires_grad) &&
              (gb || !bias || !bias->requires_grad);
    if (ok)
        ok = be->conv2d_relu_max_pool2d_backward(&b, x, weight, node->saved, gyc, gi, gw, gb) == 0;
    tensor_release(gyc);
    if (!ok) {
        tensor_release(gi), tensor_release(gw), tensor_release(gb);
        return -1;
    }
    gx[0] = gi;
    gx[1] = gw;
    if (bias) gx[2] = gb;
    return 0;
}

/* The backend's fused forward over contiguous inputs, recorded; 1 when it
 * leaves the case to the three ops. */
static int fused(const Backend *be, ConvReluPool *b, const int64_t *ints, Tensor **inputs,
                 int n_inputs, Tensor **out) {
    Tensor *saved[2] = {NULL, NULL};
    const Window2d *p = &b->pool;
    *out = tensor_empty(SHAPE(p->batch, p->channels, p->out_h, p->out_w), inputs[0]->dtype,
                        inputs[0]->device);
    int rc = *out ? be->conv2d_relu_max_pool2d(b, inputs[0], inputs[1],
                                               n_inputs > 2 ? inputs[2] : NULL, *out, saved)
                  : -1;
    if (rc == 0 && autograd_needs_grad(n_inputs, inputs)) {
        AutogradNode *node =
            autograd_record(*out, "ConvReluMaxPoolBackward", block_backward, n_inputs, inputs);
        if (node) {
            for (int i = 0; i < 13; i++) node->ints[i] = ints[i];
            autograd_save(node, 0, saved[0]);
            autograd_save(node, 1, saved[1]);
        }
        rc = node ? 0 : -1;
    }
    tensor_release(saved[0]);
    tensor_release(saved[1]);
    if (rc != 0) {
        tensor_release(*out);
        *out = NULL;
    }
    return rc;
}

Tensor *tensor_conv2d_relu_max_pool2d(Tensor *x, Tensor *weight, Tensor *bias,
                                      const Conv2dParams *cp, const Pool2dParams *pp) {
    if (!x || !weight) return NULL;
    const Backend *be = backend_for(x->device);
    ConvReluPool b;
    int64_t ints[13];
    if (!be || !be->conv2d_relu_max_pool2d || block_of(x, weight, bias, cp, pp, &b, ints) != 0)
        return one_by_one(x, weight, bias, cp, pp);
    Tensor *xc = tensor_contiguous(x), *wc = tensor_contiguous(weight);
    Tensor *bc = bias ? tensor_contiguous(bias) : NULL;
    Tensor *inputs[3] = {xc, wc, bc}, *out = NULL;
    int rc = xc && wc && (!bias || bc) ? fused(be, &b, ints, inputs, bias ? 3 : 2, &out) : -1;
    tensor_release(xc), tensor_release(wc), tensor_release(bc);
    return rc == 1 ? one_by_one(x, weight, bias, cp, pp) : out;
}
