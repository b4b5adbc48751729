/* conv_relu_pool.c - max_pool2d(relu(conv2d(x))) as one op, and such
 * blocks in a row (core/ops.h).
 *
 * Where the backend has conv2d_relu_max_pool2d (the CPU's oneDNN) and
 * takes the case, the forward is that one call and the backward its
 * companion, which reads what the forward saved (the ReLU's output and the
 * pooling's argmax, in the library's layouts). Anything else (float64,
 * the GPU, a shape the library refuses) runs conv2d, relu and max_pool2d
 * one by one, which also gives every argument error its usual message.
 * In a row, a block whose next one the backend takes too hands its output
 * on in the backend's blocked layout (and gets its gradient back in it):
 * that tensor lives only between the two blocks and their backward nodes.
 */
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/window2d.h"

static Tensor *one_by_one(Tensor *x, const ConvReluPoolArgs *a) {
    const Pool2dParams *pp = &a->pool;
    Tensor *y = tensor_conv2d_with(x, a->weight, a->bias, &a->conv);
    Tensor *r = tensor_relu(y);
    Tensor *out = tensor_max_pool2d(r, pp->kernel_h, pp->kernel_w, pp->stride_h, pp->stride_w,
                                    pp->pad_h, pp->pad_w);
    tensor_release(y);
    tensor_release(r);
    return out;
}

/* A node's ints: the convolution's 7 parameters and the pool's 6, then
 * the layouts it read and wrote. */
enum { PARAMS = 13, X_BLOCKED = PARAMS, OUT_BLOCKED, NODE_INTS };

/* Both windows, or -1 where an argument is off (the one-by-one ops then
 * say which) or x is in the blocked layout of core/ops.h (which the ops
 * one by one read; the chain hands on the library's own). ints: the
 * node's PARAMS (the layouts are the caller's). */
static int block_of(const Tensor *x, const ConvReluPoolArgs *a, ConvReluPool *b, int64_t *ints) {
    const Conv2dParams *cp = &a->conv;
    const Pool2dParams *pp = &a->pool;
    memset(b, 0, sizeof *b);
    if (x->ndim != 4 || conv2d_window(x, a->weight, a->bias, cp, &b->conv) != 0) return -1;
    int64_t conv_out[4] = {b->conv.batch, a->weight->shape[0], b->conv.out_h, b->conv.out_w};
    if (window2d_init_pool("max_pool2d", 4, conv_out, pp->kernel_h, pp->kernel_w, pp->stride_h,
                           pp->stride_w, pp->pad_h, pp->pad_w, &b->pool) != 0)
        return -1;
    b->out_channels = a->weight->shape[0], b->groups = cp->groups, b->bias = a->bias != NULL;
    const int64_t p[PARAMS] = {cp->stride_h,     cp->stride_w,     cp->pad_h,        cp->pad_w,
                           cp->dilation_h,   cp->dilation_w,   cp->groups,       pp->kernel_h,
                           pp->kernel_w,     b->pool.stride_h, b->pool.stride_w, pp->pad_h,
                           pp->pad_w};
    if (ints) memcpy(ints, p, sizeof p);
    return 0;
}

static ConvReluPoolArgs args_of(AutogradNode *node) {
    const int64_t *k = node->ints;
    return (ConvReluPoolArgs){
        node->inputs[1], node->n_inputs > 2 ? node->inputs[2] : NULL,
        (Conv2dParams){(int)k[0], (int)k[1], (int)k[2], (int)k[3], (int)k[4], (int)k[5], (int)k[6]},
        (Pool2dParams){(int)k[7], (int)k[8], (int)k[9], (int)k[10], (int)k[11], (int)k[12]}};
}

/* inputs: x, weight[, bias], contiguous; saved: the backend's two. */
static int block_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0], *weight = node->inputs[1];
    Tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
    ConvReluPoolArgs a = args_of(node);
    ConvReluPool b;
    if (block_of(x, &a, &b, NULL) != 0) return -1;
    b.x_blocked = node->ints[X_BLOCKED], b.out_blocked = node->ints[OUT_BLOCKED];
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

/* The backend's fused forward over contiguous inputs into out, recorded;
 * 1 when it leaves the case to the three ops. */
static int fused(const Backend *be, const ConvReluPool *b, int64_t *ints, Tensor **inputs,
                 int n_inputs, Tensor *out) {
    Tensor *saved[2] = {NULL, NULL};
    int rc = be->conv2d_relu_max_pool2d(b, inputs[0], inputs[1], n_inputs > 2 ? inputs[2] : NULL,
                                        out, saved);
    if (rc == 0 && autograd_needs_grad(n_inputs, inputs)) {
        AutogradNode *node =
            autograd_record(out, "ConvReluMaxPoolBackward", block_backward, n_inputs, inputs);
        if (node) {
            ints[X_BLOCKED] = b->x_blocked, ints[OUT_BLOCKED] = b->out_blocked;
            for (int i = 0; i < NODE_INTS; i++) node->ints[i] = ints[i];
            autograd_save(node, 0, saved[0]);
            autograd_save(node, 1, saved[1]);
        }
        rc = node ? 0 : -1;
    }
    tensor_release(saved[0]);
    tensor_release(saved[1]);
    return rc;
}

/* Whether the backend hands block b's output, out, to the next block in
 * its blocked layout. */
static bool hands_on(const Backend *be, const ConvReluPool *b, Tensor *out,
                     const ConvReluPoolArgs *next, const Tensor *x) {
    ConvReluPool nb;
    if (!next || !be->conv2d_relu_max_pool2d_chains) return false;
    bool takes =
        block_of(out, next, &nb, NULL) == 0 && be->conv2d_relu_max_pool2d_chains(b, &nb, x);
    error_clear(); /* a shape the next block refuses: it says so when it runs */
    return takes;
}

/* A block handed a blocked input that it then did not take: the three ops
 * cannot read that layout. */
static Tensor *refused(void) {
    error_set("conv2d: a block refused the blocked layout it had said it takes");
    return NULL;
}

/* Block a over h, fused where the backend takes it: *blocked says whether
 * h is in the backend's blocked layout, and becomes whether the output is
 * (next: the block after a, or NULL). */
static Tensor *block_run(const Backend *be, Tensor *h, bool *blocked, const ConvReluPoolArgs *a,
                         const ConvReluPoolArgs *next) {
    ConvReluPool b;
    int64_t ints[NODE_INTS];
    bool was_blocked = *blocked;
    *blocked = false;
    if (!be || !be->conv2d_relu_max_pool2d || block_of(h, a, &b, ints) != 0) {
        /* not after hands_on, whose block_of passed */
        return was_blocked ? refused() : one_by_one(h, a);
    }
    const Window2d *p = &b.pool;
    Tensor *out =
        tensor_empty(SHAPE(p->batch, p->channels, p->out_h, p->out_w), h->dtype, h->device);
    Tensor *xc = tensor_contiguous(h), *wc = tensor_contiguous(a->weight);
    Tensor *bc = a->bias ? tensor_contiguous(a->bias) : NULL;
    Tensor *inputs[3] = {xc, wc, bc};
    b.x_blocked = was_blocked;
    b.out_blocked = out && hands_on(be, &b, out, next, h);
    int rc = out && xc && wc && (!a->bias || bc) ? fused(be, &b, ints, inputs, a->bias ? 3 : 2, out)
                                                 : -1;
    tensor_release(xc), tensor_release(wc), tensor_release(bc);
    if (rc != 0) tensor_release(out);
    if (rc == 1 && !was_blocked) return one_by_one(h, a);
    *blocked = b.out_blocked;
    return rc == 0 ? out : rc == 1 ? refused() : NULL;
}

Tensor *tensor_conv2d_relu_max_pool2d_chain(Tensor *x, int n, const ConvReluPoolArgs *blocks,
                                            int *failed) {
    if (!x) return NULL;
    const Backend *be = backend_for(x->device);
    Tensor *h = tensor_retain(x);
    bool blocked = false;
    for (int i = 0; i < n && h; i++) {
        Tensor *next = blocks[i].weight ? block_run(be, h, &blocked, &blocks[i],
                                                    i + 1 < n ? &blocks[i + 1] : NULL)
                                        : NULL;
        tensor_release(h);
        h = next;
        if (!h && failed) *failed = i;
    }
    return h;
}

Tensor *tensor_conv2d_relu_max_pool2d(Tensor *x, Tensor *weight, Tensor *bias,
                                      const Conv2dParams *cp, const Pool2dParams *pp) {
    ConvReluPoolArgs a = {weight, bias, *cp, *pp};
    return tensor_conv2d_relu_max_pool2d_chain(x, 1, &a, NULL);
}
