/* reduce.c - sum and mean over all or some dimensions, and argmax.
 *
 * The backward of a sum broadcasts the gradient back over the reduced
 * dimensions: a stride-0 expand, so nothing is copied until it is used.
 */
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

/* ints[0..ndim) = input shape; the gradient of sum is gy expanded back. */
static int sum_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0];
    int64_t keep[TENSOR_MAX_DIMS];
    int nd = x->ndim;
    /* ints[nd + i] = 1 if dim i was reduced: rebuild the keepdim shape */
    for (int i = 0; i < nd; i++) keep[i] = node->ints[TENSOR_MAX_DIMS + i] ? 1 : x->shape[i];
    Tensor *g = tensor_reshape(gy, nd, keep);
    Tensor *e = tensor_expand(g, nd, x->shape);
    tensor_release(g);
    if (e && node->scalars[0] != 1.0) { /* mean: scale by 1/count */
        Tensor *s = tensor_mul_scalar(e, node->scalars[0]);
        tensor_release(e);
        e = s;
    }
    gx[0] = e;
    return e ? 0 : -1;
}

static Tensor *reduce(const char *name, Tensor *a, int n_dims, const int *dims, bool keepdim,
                      bool mean) {
    if (!a) return NULL;
    if (!dtype_is_float(a->dtype))
        return error_set("%s: expected a float tensor, got %s", name, dtype_name(a->dtype)), NULL;
    bool reduced[TENSOR_MAX_DIMS] = {false};
    for (int i = 0; i < n_dims; i++) {
        int d = tensor_wrap_dim(dims[i], a->ndim, name);
        if (d < 0) return NULL;
        if (reduced[d]) return error_set("%s: dimension %d repeated", name, d), NULL;
        reduced[d] = true;
    }
    int64_t kshape[TENSOR_MAX_DIMS], oshape[TENSOR_MAX_DIMS];
    int ond = 0;
    int64_t count = 1;
    for (int i = 0; i < a->ndim; i++) {
        kshape[i] = reduced[i] ? 1 : a->shape[i];
        if (reduced[i]) count *= a->shape[i];
        if (!reduced[i] || keepdim) oshape[ond++] = kshape[i];
    }
    Tensor *ac = tensor_contiguous(a);
    Tensor *out = ac ? tensor_empty(a->ndim, kshape, a->dtype, a->device) : NULL;
    if (out) {
        if (tensor_numel(ac) == 0)
            tensor_fill_(out, 0.0);
        else
            backend_for(a->device)->sum(ac, out);
    }
    tensor_release(ac);
    if (out && mean) {
        Tensor *s = NULL;
        bool prev = autograd_set_enabled(false);
        s = tensor_mul_scalar(out, 1.0 / (double)count);
        autograd_set_enabled(prev);
        tensor_release(out);
        out = s;
    }
    if (!out) return NULL;
    /* drop the reduced dims unless keepdim (a view of fresh memory) */
    Tensor *shaped = tensor_make_view(out, ond, oshape, out->strides, 0);
    if (shaped) {
        int64_t s = 1;
        for (int i = ond - 1; i >= 0; i--) shaped->strides[i] = s, s *= oshape[i];
    }
    tensor_release(out);
    if (shaped && autograd_needs_grad(1, &a)) {
        AutogradNode *node =
            autograd_record(shaped, mean ? "MeanBackward" : "SumBackward", sum_backward, 1, &a);
        if (!node) {
            tensor_release(shaped);
            return NULL;
        }
        for (int i = 0; i < a->ndim; i++) node->ints[TENSOR_MAX_DIMS + i] = reduced[i];
        node->scalars[0] = mean ? 1.0 / (double)count : 1.0;
    }
    return shaped;
}

static int all_dims(const Tensor *a, int *dims) {
    for (int i = 0; i < a->ndim; i++) dims[i] = i;
    return a->ndim;
}

Tensor *tensor_sum(Tensor *a) {
    int dims[TENSOR_MAX_DIMS];
    return a ? reduce("sum", a, all_dims(a, dims), dims, false, false) : NULL;
}

Tensor *tensor_mean(Tensor *a) {
    int dims[TENSOR_MAX_DIMS];
    return a ? reduce("mean", a, all_dims(a, dims), dims, false, true) : NULL;
}

Tensor *tensor_sum_dims(Tensor *a, int n_dims, const int *dims, bool keepdim) {
    return reduce("sum", a, n_dims, dims, keepdim, false);
}

Tensor *tensor_mean_dims(Tensor *a, int n_dims, const int *dims, bool keepdim) {
    return reduce("mean", a, n_dims, dims, keepdim, true);
}

Tensor *tensor_argmax_last(Tensor *a) {
    if (!a) return NULL;
    char s[128];
    if (a->ndim != 2 || !dtype_is_float(a->dtype))
        return error_set("argmax: expected a 2-d float tensor, got %s %s", dtype_name(a->dtype),
                         tensor_shape_str(a, s, sizeof s)),
               NULL;
    if (a->shape[1] == 0 && a->shape[0] > 0)
        return error_set("argmax: rows of %s have no elements", tensor_shape_str(a, s, sizeof s)),
               NULL;
    Tensor *ac = tensor_contiguous(a);
    Tensor *idx = ac ? tensor_empty(SHAPE(a->shape[0]), DTYPE_INT64, a->device) : NULL;
    if (idx && a->shape[0] > 0) backend_for(a->device)->max_last_dim(ac, NULL, idx);
    tensor_release(ac);
    return idx;
}
