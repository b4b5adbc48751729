/* dropout.c - inverted dropout, as torch.nn.functional.dropout.
 *
 * In training each element is kept when u >= p, u uniform in [0, 1) from the
 * backend's counter-based stream at (seed, offset), and kept elements are
 * scaled by 1 / (1 - p), so eval needs no rescaling. The same (seed, offset)
 * gives the same mask on every device, which makes runs reproducible and
 * lets the caller replay a step. The scaled mask is saved: backward is
 * gy * mask. Eval mode and p == 0 return the input itself, as torch does.
 */
#include <math.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

/* saved[0]: the mask, already scaled by 1 / (1 - p). */
static int dropout_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    gx[0] = tensor_mul(gy, node->saved[0]);
    return gx[0] ? 0 : -1;
}

/* Where a mask's numbers start (tensor_dropout_rows's arguments). */
typedef struct {
    uint64_t seed, offset, row_stride;
    const uint64_t *base;
} MaskStream;

/* u into a: row i (dim 0) from number offset + i * row_stride of the
 * stream; one fill when the rows follow each other in it. */
static int fill_uniform(const Backend *be, Tensor *a, const MaskStream *st) {
    int64_t rows = a->ndim > 0 ? a->shape[0] : 1, per_row = tensor_numel(a) / rows;
    if (st->row_stride == (uint64_t)per_row || rows <= 1) {
        be->uniform(a, st->seed, st->offset, st->base);
        return 0;
    }
    for (int64_t i = 0; i < rows; i++) {
        Tensor *row = tensor_narrow(a, 0, i, 1);
        if (!row) return -1;
        be->uniform(row, st->seed, st->offset + (uint64_t)i * st->row_stride, st->base);
        tensor_release(row);
    }
    return 0;
}

/* (u >= p) / (1 - p) over x's shape, with the backend's kernels only. */
static Tensor *dropout_mask(const Backend *be, const Tensor *x, double p, const MaskStream *st) {
    Tensor *a = tensor_empty(x->ndim, x->shape, x->dtype, x->device);
    Tensor *b = a ? tensor_empty_like(a) : NULL;
    if (!b || (tensor_numel(a) > 0 && fill_uniform(be, a, st) != 0)) {
        tensor_release(a);
        tensor_release(b);
        return NULL;
    }
    if (tensor_numel(a) > 0) {
        /* Ping-pong between two buffers: kernels never write their input. */
        be->unary(UNARY_NEG, a, 0, b);                  /* -u */
        be->unary(UNARY_GT_SCALAR, b, -p, a);           /* -u > -p, i.e. dropped */
        be->unary(UNARY_RSUB_SCALAR, a, 1.0, b);        /* kept = 1 - dropped */
        be->unary(UNARY_MUL_SCALAR, b, 1.0 / (1.0 - p), a);
    }
    tensor_release(b);
    return a;
}

Tensor *tensor_dropout(Tensor *x, double p, bool training, uint64_t seed, uint64_t offset) {
    if (!x) return NULL;
    int64_t rows = x->ndim > 0 && x->shape[0] > 0 ? x->shape[0] : 1;
    return tensor_dropout_rows(x, p, training, seed, offset, (uint64_t)(tensor_numel(x) / rows),
                               NULL);
}

Tensor *tensor_dropout_rows(Tensor *x, double p, bool training, uint64_t seed, uint64_t offset,
                            uint64_t row_stride, const uint64_t *base) {
    if (!x) return NULL;
    if (!(p >= 0.0 && p <= 1.0))
        return error_set("dropout: probability has to be between 0 and 1, but got %g", p), NULL;
    if (!dtype_is_float(x->dtype))
        return error_set("dropout: expected a float tensor, got %s", dtype_name(x->dtype)), NULL;
    if (!training || p == 0.0) return tensor_retain(x);
    if (p == 1.0) return tensor_mul_scalar(x, 0.0); /* torch: input * 0, gradient 0 */

    const Backend *be = backend_for(x->device);
    if (!be) return NULL;
    MaskStream st = {.seed = seed, .offset = offset, .row_stride = row_stride, .base = base};
    Tensor *mask = dropout_mask(be, x, p, &st);
    if (!mask) return NULL;
    bool prev = autograd_set_enabled(false);
    Tensor *out = tensor_mul(x, mask);
    autograd_set_enabled(prev);
    if (out && autograd_needs_grad(1, &x)) {
        AutogradNode *node = autograd_record(out, "NativeDropoutBackward", dropout_backward, 1, &x);
        if (node)
            autograd_save(node, 0, mask);
        else {
            tensor_release(out);
            out = NULL;
        }
    }
    tensor_release(mask);
    return out;
}
