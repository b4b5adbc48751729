/* attention.c - causal scaled-dot-product attention, as
 * F.scaled_dot_product_attention(q, k, v, is_causal=True) over [B, H, T, D]:
 * softmax(q k^T / sqrt(D) + mask) v, where query i sees keys j <= i.
 *
 * One fused kernel of the backend does the forward without a T x T matrix
 * (core/cpu/attention.c, gpu/kernels/attention.cu) and saves each query
 * row's logsumexp; the hand-written backward recomputes the probabilities
 * from it (FlashAttention-2). The node saves the contiguous q, k, v, the
 * output and the logsumexp: O(B H T D) memory, never O(T^2).
 *
 * Dropout on the probabilities (F.scaled_dot_product_attention's dropout_p,
 * nanoGPT's attn_dropout) is part of the same kernels: the mask is not
 * stored but drawn again in the backward from the counter-based stream
 * (seed, offset), B H T T numbers of it (core/backend.h's AttentionArgs).
 */
#include <math.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/like_input.h"

static const char *OP = "causal_attention";

static int check_one(const char *what, const Tensor *t, const Tensor *q) {
    char s[128], s2[128];
    if (!tensor_same_shape(t, q))
        return error_set("%s: %s has shape %s but q has %s", OP, what,
                         tensor_shape_str(t, s, sizeof s), tensor_shape_str(q, s2, sizeof s2));
    return ops_check_like_input(OP, what, t, q);
}

static int check_args(const Tensor *q, const Tensor *k, const Tensor *v) {
    char s[128];
    if (q->ndim != 4)
        return error_set("%s: expected q, k, v of shape [B, H, T, D], got q %s", OP,
                         tensor_shape_str(q, s, sizeof s));
    if (!dtype_is_float(q->dtype))
        return error_set("%s: expected float tensors, got %s", OP, dtype_name(q->dtype));
    if (q->shape[3] < 1 || q->shape[3] > ATTENTION_MAX_HEAD_DIM)
        return error_set("%s: head dim D must be 1 to %d, got %lld (q %s)", OP,
                         ATTENTION_MAX_HEAD_DIM, (long long)q->shape[3],
                         tensor_shape_str(q, s, sizeof s));
    return check_one("k", k, q) || check_one("v", v, q);
}

/* t contiguous as [BH, T, D] (grad mode off). */
static Tensor *heads(Tensor *t) {
    Tensor *c = tensor_contiguous(t);
    Tensor *h = c ? tensor_view(c, SHAPE(t->shape[0] * t->shape[1], t->shape[2], t->shape[3]))
                  : NULL;
    tensor_release(c);
    return h;
}

static void release_ctx(void *ctx) { tensor_release(ctx); }

/* The AttentionArgs a node keeps in scalars (scale, dropout) and ints
 * (seed, offset, heads, sample_stride, the offset base's address). */
static AttentionArgs node_args(const AutogradNode *node) {
    return (AttentionArgs){node->scalars[0],         node->scalars[1],
                           (uint64_t)node->ints[0],  (uint64_t)node->ints[1],
                           node->ints[2],            (uint64_t)node->ints[3],
                           (const uint64_t *)(uintptr_t)node->ints[4]};
}

/* inputs: q, k, v; saved: q, k, v as [BH, T, D], out [BH, T, D]; ctx: lse
 * [BH, T]; the AttentionArgs (node_args). */
static int attention_backward(AutogradNode *node, Tensor *gy, Tensor **grads) {
    Tensor *q = node->saved[0], *k = node->saved[1], *v = node->saved[2], *o = node->saved[3];
    Tensor *lse = node->ctx;
    const Backend *be = backend_for(q->device);
    if (!be) return -1;
    Tensor *go = heads(gy);
    Tensor *delta = tensor_empty(2, lse->shape, q->dtype, q->device);
    Tensor *g[3] = {tensor_empty_like(q), tensor_empty_like(q), tensor_empty_like(q)};
    int rc = go && delta && g[0] && g[1] && g[2] ? 0 : -1;
    AttentionArgs args = node_args(node);
    if (rc == 0 && tensor_numel(q) > 0)
        be->causal_attention_backward(q, k, v, o, lse, go, &args, delta, g[0], g[1], g[2]);
    tensor_release(go), tensor_release(delta);
    for (int i = 0; i < 3; i++) {
        Tensor *in = node->inputs[i];
        grads[i] = rc == 0 && in->requires_grad ? tensor_view(g[i], in->ndim, in->shape) : NULL;
        if (rc == 0 && in->requires_grad && !grads[i]) rc = -1;
        tensor_release(g[i]);
    }
    return rc;
}

/* Records the node on out; takes over the saved tensors (also on failure). */
static int record(Tensor *out, Tensor **inputs, Tensor **saved, Tensor *lse,
                  const AttentionArgs *args) {
    AutogradNode *node = autograd_record(out, "ScaledDotProductFlashAttentionBackward",
                                         attention_backward, 3, inputs);
    if (!node) {
        for (int i = 0; i < 4; i++) tensor_release(saved[i]);
        tensor_release(lse);
        return -1;
    }
    for (int i = 0; i < 4; i++) node->saved[i] = saved[i];
    node->ctx = lse;
    node->ctx_free = release_ctx;
    node->scalars[0] = args->scale;
    node->scalars[1] = args->dropout;
    node->ints[0] = (int64_t)args->seed;
    node->ints[1] = (int64_t)args->offset;
    node->ints[2] = args->heads;
    node->ints[3] = (int64_t)args->sample_stride;
    /* not held: a base exists only while a CUDA graph is captured, whose
     * backward runs within the same capture (core/train_graph.c) */
    node->ints[4] = (int64_t)(uintptr_t)args->offset_base;
    return 0;
}

Tensor *tensor_causal_attention(Tensor *q, Tensor *k, Tensor *v) {
    return tensor_causal_attention_dropout(q, k, v, 0, 0, 0, 0, NULL);
}

Tensor *tensor_causal_attention_dropout(Tensor *q, Tensor *k, Tensor *v, double dropout,
                                        uint64_t seed, uint64_t offset, uint64_t sample_stride,
                                        const uint64_t *base) {
    if (!q || !k || !v) return NULL;
    if (check_args(q, k, v)) return NULL;
    if (!(dropout >= 0 && dropout < 1)) {
        error_set("%s: dropout must be in [0, 1), got %g", OP, dropout);
        return NULL;
    }
    const Backend *be = backend_for(q->device);
    if (!be) return NULL;
    AttentionArgs args = {1.0 / sqrt((double)q->shape[3]), dropout, seed, offset,
                          sample_stride ? q->shape[1] : 0, sample_stride, base};
    bool prev = autograd_set_enabled(false);
    Tensor *s[4] = {heads(q), heads(k), heads(v), NULL};
    s[3] = s[0] ? tensor_empty_like(s[0]) : NULL;
    Tensor *lse = s[0] ? tensor_empty(SHAPE(s[0]->shape[0], s[0]->shape[1]), q->dtype, q->device)
                       : NULL;
    bool ok = s[1] && s[2] && s[3] && lse;
    if (ok && tensor_numel(q) > 0) be->causal_attention(s[0], s[1], s[2], &args, s[3], lse);
    Tensor *out = ok ? tensor_view(s[3], q->ndim, q->shape) : NULL;
    autograd_set_enabled(prev);
    Tensor *inputs[3] = {q, k, v};
    if (out && autograd_needs_grad(3, inputs)) {
        /* the node keeps the output's values in its own tensor: saving out
         * itself would make out own a node that owns out */
        Tensor *saved_out = tensor_detach(s[3]);
        tensor_release(s[3]);
        s[3] = saved_out;
        if (!saved_out || record(out, inputs, s, lse, &args) != 0) {
            if (!saved_out) {
                for (int i = 0; i < 3; i++) tensor_release(s[i]);
                tensor_release(lse);
            }
            tensor_release(out);
            return NULL;
        }
        return out;
    }
    for (int i = 0; i < 4; i++) tensor_release(s[i]);
    tensor_release(lse);
    return out;
}
