/* matmul.c - matrix products on the backend's GEMM: torch.matmul and
 * nn.functional.linear.
 *
 * A 2-d operand that is a transposed view of contiguous memory is handed to
 * GEMM with its transpose flag instead of being copied, so the backward
 * products (gy @ W, gy^T @ x) cost no copies. 1-d operands of matmul become
 * matrices through unsqueeze/squeeze views, whose own backward handles them.
 */
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

/* A GEMM operand: a contiguous matrix, transposed or not. */
typedef struct {
    Tensor *t; /* owned reference */
    bool trans;
    int64_t ld;
} GemmOperand;

/* Matrix [rows, cols] (a 2-d tensor) as a GEMM operand, copying only if it is
 * neither contiguous nor a transposed contiguous matrix. */
static int gemm_operand(Tensor *m, GemmOperand *op) {
    if (m->strides[1] == 1 && m->strides[0] >= (m->shape[1] > 1 ? m->shape[1] : 1)) {
        op->t = tensor_retain(m);
        op->trans = false;
        op->ld = m->strides[0] > 0 ? m->strides[0] : 1;
        return 0;
    }
    if (m->strides[0] == 1 && m->strides[1] >= (m->shape[0] > 1 ? m->shape[0] : 1)) {
        op->t = tensor_retain(m);
        op->trans = true;
        op->ld = m->strides[1];
        return 0;
    }
    bool prev = autograd_set_enabled(false);
    op->t = tensor_contiguous(m);
    autograd_set_enabled(prev);
    op->trans = false;
    op->ld = m->shape[1] > 0 ? m->shape[1] : 1;
    return op->t ? 0 : -1;
}

/* out[m, n] = a[m, k] @ b[k, n] (+ beta * out); 2-d, no autograd. */
static int mm_into(Tensor *a, Tensor *b, Tensor *out, double beta) {
    GemmOperand oa = {0}, ob = {0};
    if (gemm_operand(a, &oa) != 0 || gemm_operand(b, &ob) != 0) {
        tensor_release(oa.t);
        return -1;
    }
    int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
    if (m > 0 && n > 0) {
        if (k == 0 && beta == 0.0)
            tensor_fill_(out, 0.0);
        else
            backend_for(out->device)->gemm(out->dtype, oa.trans, ob.trans, m, n, k, 1.0,
                                           tensor_data(oa.t), oa.ld, tensor_data(ob.t), ob.ld,
                                           beta, tensor_data(out), n);
    }
    tensor_release(oa.t);
    tensor_release(ob.t);
    return 0;
}

static Tensor *mm(Tensor *a, Tensor *b) {
    Tensor *out = tensor_empty(SHAPE(a->shape[0], b->shape[1]), a->dtype, a->device);
    if (out && mm_into(a, b, out, 0.0) != 0) {
        tensor_release(out);
        return NULL;
    }
    return out;
}

static int check_operands(const char *op, const Tensor *a, const Tensor *b) {
    if (!a || !b) return -1;
    if (!dtype_is_float(a->dtype) || a->dtype != b->dtype)
        return error_set("%s: expected float tensors of one dtype, got %s and %s", op,
                         dtype_name(a->dtype), dtype_name(b->dtype));
    if (!device_equal(a->device, b->device))
        return error_set("%s: tensors on different devices", op);
    return 0;
}

/* ---- batched matmul for ndim >= 2 ---- */

static int matmul_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *a = node->inputs[0], *b = node->inputs[1];
    if (a->requires_grad) { /* gy @ b^T, summed over broadcast batch dims */
        Tensor *bt = tensor_transpose(b, -1, -2);
        Tensor *g = tensor_matmul(gy, bt);
        gx[0] = autograd_reduce_to_shape(g, a->ndim, a->shape);
        tensor_release(bt);
        tensor_release(g);
        if (!gx[0]) return -1;
    }
    if (b->requires_grad) { /* a^T @ gy */
        Tensor *at = tensor_transpose(a, -1, -2);
        Tensor *g = tensor_matmul(at, gy);
        gx[1] = autograd_reduce_to_shape(g, b->ndim, b->shape);
        tensor_release(at);
        tensor_release(g);
        if (!gx[1]) return -1;
    }
    return 0;
}

static Tensor *matmul_nd(Tensor *a, Tensor *b) {
    char sa[128], sb[128];
    int64_t n = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1];
    int64_t k2 = b->shape[b->ndim - 2], m = b->shape[b->ndim - 1];
    if (k != k2)
        return error_set("matmul: shapes %s and %s cannot be multiplied (%lld != %lld)",
                         tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb),
                         (long long)k, (long long)k2),
               NULL;
    Tensor *out = NULL;
    if (a->ndim == 2 && b->ndim == 2) {
        out = mm(a, b);
    } else {
        int bnd;
        int64_t batch[TENSOR_MAX_DIMS];
        if (broadcast_shapes("matmul", a->ndim - 2, a->shape, b->ndim - 2, b->shape, &bnd,
                             batch) != 0)
            return NULL;
        int64_t nb = 1;
        for (int i = 0; i < bnd; i++) nb *= batch[i];
        int64_t ashape[TENSOR_MAX_DIMS], bshape[TENSOR_MAX_DIMS], oshape[TENSOR_MAX_DIMS];
        memcpy(ashape, batch, (size_t)bnd * sizeof *batch);
        memcpy(bshape, batch, (size_t)bnd * sizeof *batch);
        memcpy(oshape, batch, (size_t)bnd * sizeof *batch);
        ashape[bnd] = n, ashape[bnd + 1] = k;
        bshape[bnd] = k, bshape[bnd + 1] = m;
        oshape[bnd] = n, oshape[bnd + 1] = m;
        bool prev = autograd_set_enabled(false);
        Tensor *ae = tensor_expand(a, bnd + 2, ashape), *be = tensor_expand(b, bnd + 2, bshape);
        Tensor *a3 = tensor_reshape(ae, SHAPE(nb, n, k)), *b3 = tensor_reshape(be, SHAPE(nb, k, m));
        out = (a3 && b3) ? tensor_empty(bnd + 2, oshape, a->dtype, a->device) : NULL;
        Tensor *o3 = tensor_view(out, SHAPE(nb, n, m));
        for (int64_t i = 0; o3 && i < nb; i++) {
            Tensor *ai = tensor_narrow(a3, 0, i, 1), *bi = tensor_narrow(b3, 0, i, 1),
                   *oi = tensor_narrow(o3, 0, i, 1);
            Tensor *a2 = tensor_view(ai, SHAPE(n, k)), *b2 = tensor_view(bi, SHAPE(k, m)),
                   *o2 = tensor_view(oi, SHAPE(n, m));
            int rc = (a2 && b2 && o2) ? mm_into(a2, b2, o2, 0.0) : -1;
            tensor_release(ai), tensor_release(bi), tensor_release(oi);
            tensor_release(a2), tensor_release(b2), tensor_release(o2);
            if (rc != 0) {
                tensor_release(out);
                out = NULL;
            }
        }
        if (!o3) {
            tensor_release(out);
            out = NULL;
        }
        tensor_release(o3);
        tensor_release(ae), tensor_release(be), tensor_release(a3), tensor_release(b3);
        autograd_set_enabled(prev);
    }
    Tensor *inputs[2] = {a, b};
    if (out && autograd_needs_grad(2, inputs) &&
        !autograd_record(out, "MmBackward", matmul_backward, 2, inputs)) {
        tensor_release(out);
        return NULL;
    }
    return out;
}

Tensor *tensor_matmul(Tensor *a, Tensor *b) {
    if (check_operands("matmul", a, b) != 0) return NULL;
    if (a->ndim == 0 || b->ndim == 0)
        return error_set("matmul: both arguments need at least 1 dimension"), NULL;
    /* 1-d operands: a vector on the left is a row, on the right a column;
     * the added dimension is removed from the result. */
    Tensor *a2 = a->ndim == 1 ? tensor_unsqueeze(a, 0) : tensor_retain(a);
    Tensor *b2 = b->ndim == 1 ? tensor_unsqueeze(b, 1) : tensor_retain(b);
    Tensor *out = (a2 && b2) ? matmul_nd(a2, b2) : NULL;
    tensor_release(a2);
    tensor_release(b2);
    if (out && b->ndim == 1) {
        Tensor *s = tensor_squeeze(out, -1);
        tensor_release(out);
        out = s;
    }
    if (out && a->ndim == 1) {
        Tensor *s = tensor_squeeze(out, out->ndim == 1 ? 0 : -2);
        tensor_release(out);
        out = s;
    }
    return out;
}

/* ---- linear: x @ W^T + b over x [*, in] ---- */

static int linear_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->inputs[2];
    Tensor *g2 = tensor_reshape(gy, SHAPE(-1, w->shape[0]));
    if (!g2) return -1;
    if (x->requires_grad) { /* gy @ W */
        Tensor *g = mm(g2, w);
        gx[0] = tensor_reshape(g, x->ndim, x->shape);
        tensor_release(g);
    }
    if (w->requires_grad) { /* gy^T @ x */
        Tensor *x2 = tensor_reshape(x, SHAPE(-1, w->shape[1]));
        Tensor *gt = tensor_transpose(g2, 0, 1);
        gx[1] = (x2 && gt) ? mm(gt, x2) : NULL;
        tensor_release(x2);
        tensor_release(gt);
    }
    if (b && b->requires_grad) gx[2] = tensor_sum_dims(g2, 1, (int[]){0}, false);
    tensor_release(g2);
    for (int i = 0; i < 3; i++)
        if (node->inputs[i] && node->inputs[i]->requires_grad && !gx[i]) return -1;
    return 0;
}

Tensor *tensor_linear(Tensor *x, Tensor *weight, Tensor *bias) {
    if (check_operands("linear", x, weight) != 0) return NULL;
    char sx[128], sw[128];
    if (weight->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != weight->shape[1])
        return error_set("linear: input of shape %s does not match weight of shape %s "
                         "(expected %lld input features)",
                         tensor_shape_str(x, sx, sizeof sx),
                         tensor_shape_str(weight, sw, sizeof sw),
                         weight->ndim == 2 ? (long long)weight->shape[1] : -1LL),
               NULL;
    int64_t out_f = weight->shape[0];
    if (bias && (check_operands("linear", x, bias) != 0 || bias->ndim != 1 ||
                 bias->shape[0] != out_f))
        return error_set("linear: bias of shape %s for %lld output features",
                         tensor_shape_str(bias, sx, sizeof sx), (long long)out_f),
               NULL;
    bool prev = autograd_set_enabled(false);
    Tensor *x2 = tensor_reshape(x, SHAPE(-1, weight->shape[1]));
    Tensor *wt = tensor_transpose(weight, 0, 1);
    int64_t rows = x2 ? x2->shape[0] : 0;
    Tensor *out = (x2 && wt) ? tensor_empty(SHAPE(rows, out_f), x->dtype, x->device) : NULL;
    if (out && bias) { /* out = bias broadcast, then += x @ W^T */
        Tensor *be = tensor_expand(bias, SHAPE(rows, out_f));
        if (!be || tensor_copy_(out, be) != 0) {
            tensor_release(out);
            out = NULL;
        }
        tensor_release(be);
    }
    if (out && mm_into(x2, wt, out, bias ? 1.0 : 0.0) != 0) {
        tensor_release(out);
        out = NULL;
    }
    tensor_release(x2);
    tensor_release(wt);
    int64_t oshape[TENSOR_MAX_DIMS];
    memcpy(oshape, x->shape, (size_t)x->ndim * sizeof *oshape);
    oshape[x->ndim - 1] = out_f;
    Tensor *shaped = tensor_view(out, x->ndim, oshape);
    tensor_release(out);
    autograd_set_enabled(prev);
    Tensor *inputs[3] = {x, weight, bias};
    if (shaped && autograd_needs_grad(3, inputs) &&
        !autograd_record(shaped, "LinearBackward", linear_backward, bias ? 3 : 2, inputs)) {
        tensor_release(shaped);
        return NULL;
    }
    return shaped;
}
