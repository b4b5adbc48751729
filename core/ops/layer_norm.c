/* layer_norm.c - layer normalisation, as torch.nn.functional.layer_norm.
 *
 * Normalises over the last len(normalized_shape) dims of x, which must equal
 * normalized_shape, with the biased variance; weight and bias (each of
 * normalized_shape, or NULL) scale and shift elementwise. The op sees x as
 * [rows, cols] (cols = numel(normalized_shape)) and runs the backend's fused
 * kernels: one pass per row saves mean and rstd, and the hand-written
 * backward computes gx, gweight and gbias from them, instead of the ten ops
 * and their saved intermediates a composition (as batch_norm.c is) would
 * take on every transformer block.
 */
#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/like_input.h"

static const char *OP = "layer_norm";

/* weight or bias: normalized_shape, x's dtype and device. */
static int check_affine(const char *what, const Tensor *t, const Tensor *x, int nd,
                        const int64_t *shape) {
    if (!t) return 0;
    char s[128], ns[128];
    if (ops_check_like_input(OP, what, t, x)) return -1;
    bool same = t->ndim == nd;
    for (int i = 0; same && i < nd; i++) same = t->shape[i] == shape[i];
    if (!same)
        return error_set("%s: %s of shape %s does not match normalized_shape %s", OP, what,
                         tensor_shape_str(t, s, sizeof s), shape_str(nd, shape, ns, sizeof ns));
    return 0;
}

static int check_args(const Tensor *x, int nd, const int64_t *shape, const Tensor *w,
                      const Tensor *b, double eps) {
    char s[128], ns[128];
    if (!dtype_is_float(x->dtype))
        return error_set("%s: expected a float input, got %s", OP, dtype_name(x->dtype));
    if (nd < 1 || nd > TENSOR_MAX_DIMS)
        return error_set("%s: normalized_shape must have 1 to %d dims, got %d", OP,
                         TENSOR_MAX_DIMS, nd);
    if (!(eps >= 0)) return error_set("%s: eps must be >= 0, got %g", OP, eps);
    bool fits = x->ndim >= nd;
    for (int i = 0; fits && i < nd; i++) fits = x->shape[x->ndim - nd + i] == shape[i];
    if (!fits) {
        /* "[*, 64]" as torch words it: the dims the input must end with */
        shape_str(nd, shape, ns, sizeof ns);
        return error_set("%s: normalized_shape %s needs an input of shape [*, %s, got %s", OP,
                         ns, ns + 1, tensor_shape_str(x, s, sizeof s));
    }
    return check_affine("weight", w, x, nd, shape) || check_affine("bias", b, x, nd, shape);
}

/* t's data as a contiguous [n] or [rows, cols] tensor (grad mode off), or
 * NULL for NULL. */
static Tensor *flat_view(Tensor *t, int ndim, const int64_t *shape) {
    if (!t) return NULL;
    Tensor *c = tensor_contiguous(t);
    Tensor *v = c ? tensor_view(c, ndim, shape) : NULL;
    tensor_release(c);
    return v;
}

/* A gradient of [rows, cols] or [cols] back in the shape of `like`. */
static Tensor *grad_as(Tensor *g, const Tensor *like) {
    if (!g) return NULL;
    Tensor *v = tensor_view(g, like->ndim, like->shape);
    tensor_release(g);
    return v;
}

/* inputs: x, weight, bias (the last two may be NULL); saved: x [rows, cols],
 * mean, rstd, weight [cols]; ints: rows, cols. */
static int layer_norm_backward(AutogradNode *node, Tensor *gy, Tensor **grads) {
    Tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->inputs[2];
    int64_t rows = node->ints[0], cols = node->ints[1];
    const Backend *be = backend_for(x->device);
    if (!be) return -1;
    Tensor *gy2 = flat_view(gy, SHAPE(rows, cols));
    if (!gy2) return -1;
    Tensor *gx = x->requires_grad ? tensor_empty_like(gy2) : NULL;
    Tensor *gw = w && w->requires_grad ? tensor_empty(SHAPE(cols), x->dtype, x->device) : NULL;
    Tensor *gb = b && b->requires_grad ? tensor_empty(SHAPE(cols), x->dtype, x->device) : NULL;
    /* float64 column sums per chunk of rows, whatever x's dtype */
    Tensor *partial = gw || gb ? tensor_empty(SHAPE(2, layer_norm_chunks(rows), cols),
                                              DTYPE_FLOAT64, x->device)
                               : NULL;
    int rc = (x->requires_grad && !gx) || (w && w->requires_grad && !gw) ||
                     (b && b->requires_grad && !gb) || ((gw || gb) && !partial)
                 ? -1
                 : 0;
    if (rc == 0 && cols > 0)
        be->layer_norm_backward(node->saved[0], node->saved[3], node->saved[1], node->saved[2],
                                gy2, gx, gw, gb, partial);
    tensor_release(gy2), tensor_release(partial);
    if (rc != 0) {
        tensor_release(gx), tensor_release(gw), tensor_release(gb);
        return -1;
    }
    grads[0] = grad_as(gx, x);
    grads[1] = grad_as(gw, w);
    grads[2] = grad_as(gb, b);
    return (gx && !grads[0]) || (gw && !grads[1]) || (gb && !grads[2]) ? -1 : 0;
}

/* Records the node; takes over x2, mean, rstd and w2 (also on failure). */
static int record(Tensor *out, Tensor **inputs, Tensor *x2, Tensor *mean, Tensor *rstd,
                  Tensor *w2, int64_t rows, int64_t cols) {
    AutogradNode *node = autograd_record(out, "NativeLayerNormBackward", layer_norm_backward, 3,
                                         inputs);
    if (!node) {
        tensor_release(x2), tensor_release(mean), tensor_release(rstd), tensor_release(w2);
        return -1;
    }
    node->saved[0] = x2;
    node->saved[1] = mean;
    node->saved[2] = rstd;
    node->saved[3] = w2;
    node->ints[0] = rows;
    node->ints[1] = cols;
    return 0;
}

Tensor *tensor_layer_norm(Tensor *x, int normalized_ndim, const int64_t *normalized_shape,
                          Tensor *weight, Tensor *bias, double eps) {
    if (!x) return NULL;
    if (check_args(x, normalized_ndim, normalized_shape, weight, bias, eps)) return NULL;
    const Backend *be = backend_for(x->device);
    if (!be) return NULL;
    int64_t cols = 1;
    for (int i = 0; i < normalized_ndim; i++) cols *= normalized_shape[i];
    int64_t rows = cols ? tensor_numel(x) / cols : 0;

    bool prev = autograd_set_enabled(false);
    Tensor *x2 = flat_view(x, SHAPE(rows, cols));
    Tensor *w2 = flat_view(weight, SHAPE(cols)), *b2 = flat_view(bias, SHAPE(cols));
    Tensor *y2 = x2 ? tensor_empty_like(x2) : NULL;
    Tensor *mean = tensor_empty(SHAPE(rows), x->dtype, x->device);
    Tensor *rstd = tensor_empty(SHAPE(rows), x->dtype, x->device);
    bool ok = y2 && mean && rstd && (!weight || w2) && (!bias || b2);
    if (ok && rows > 0 && cols > 0) be->layer_norm(x2, w2, b2, eps, y2, mean, rstd);
    Tensor *out = ok ? tensor_view(y2, x->ndim, x->shape) : NULL;
    autograd_set_enabled(prev);
    tensor_release(y2), tensor_release(b2);

    Tensor *inputs[3] = {x, weight, bias};
    if (out && autograd_needs_grad(3, inputs)) {
        if (record(out, inputs, x2, mean, rstd, w2, rows, cols) != 0) {
            tensor_release(out);
            return NULL;
        }
        return out;
    }
    tensor_release(x2), tensor_release(mean), tensor_release(rstd), tensor_release(w2);
    return out;
}
