/* tensor_view.c - views: view, reshape, squeeze, flatten, permute,
 * transpose, expand, narrow; see tensor.h.
 *
 * A view shares its input's storage (tensor_make_view) and is recorded by
 * autograd as a ViewBackward node, whose backward reshapes, re-permutes,
 * sums or pads the gradient back to the input's shape.
 */
#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"

/* Backward of every view: ints[0] says which kind, the rest its arguments. */
enum { VIEW_RESHAPE, VIEW_PERMUTE, VIEW_EXPAND, VIEW_NARROW };

static int view_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *in = node->inputs[0];
    switch (node->ints[0]) {
    case VIEW_RESHAPE: {
        Tensor *c = tensor_contiguous(gy);
        gx[0] = tensor_view(c, in->ndim, in->shape);
        tensor_release(c);
        break;
    }
    case VIEW_PERMUTE: { /* invert the permutation */
        int inverse[TENSOR_MAX_DIMS];
        for (int i = 0; i < in->ndim; i++) inverse[node->ints[1 + i]] = i;
        gx[0] = tensor_permute(gy, inverse);
        break;
    }
    case VIEW_EXPAND:
        gx[0] = autograd_reduce_to_shape(gy, in->ndim, in->shape);
        break;
    case VIEW_NARROW: { /* zeros with gy placed in the narrowed window */
        int dim = (int)node->ints[1];
        Tensor *z = tensor_zeros_like(in);
        Tensor *window = tensor_narrow(z, dim, node->ints[2], gy->shape[dim]);
        if (tensor_copy_(window, gy) != 0) {
            tensor_release(z);
            z = NULL;
        }
        tensor_release(window);
        gx[0] = z;
        break;
    }
    }
    return gx[0] ? 0 : -1;
}

/* Wraps a fresh view of t with its autograd node. */
static Tensor *finish_view(Tensor *t, Tensor *v, int kind, const int64_t *args, int nargs) {
    if (!v || !autograd_needs_grad(1, &t)) return v;
    AutogradNode *node = autograd_record(v, "ViewBackward", view_backward, 1, &t);
    if (!node) {
        tensor_release(v);
        return NULL;
    }
    node->ints[0] = kind;
    for (int i = 0; i < nargs; i++) node->ints[1 + i] = args[i];
    return v;
}

/* Resolves a single -1 in `shape` against numel. */
static int infer_shape(const char *what, const Tensor *t, int ndim, const int64_t *shape,
                       int64_t *out) {
    char buf[160];
    int64_t known = 1;
    int infer = -1;
    if (ndim > TENSOR_MAX_DIMS)
        return error_set("%s: %d dimensions (at most %d)", what, ndim, TENSOR_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return error_set("%s: only one dimension can be -1", what);
            infer = i;
        } else if (shape[i] < 0) {
            return error_set("%s: invalid size %lld in dimension %d", what, (long long)shape[i], i);
        } else {
            known *= shape[i];
        }
    }
    int64_t numel = tensor_numel(t);
    if (infer >= 0 && known != 0 && numel % known == 0) out[infer] = numel / known;
    int64_t total = 1;
    for (int i = 0; i < ndim; i++) total *= out[i];
    if (total != numel || (infer >= 0 && known == 0)) {
        /* e.g. "view(3, -1) of a tensor of 10 elements" */
        size_t used = (size_t)snprintf(buf, sizeof buf, "%s(", what);
        for (int i = 0; i < ndim && used < sizeof buf; i++)
            used += (size_t)snprintf(buf + used, sizeof buf - used, i ? ", %lld" : "%lld",
                                     (long long)shape[i]);
        return error_set("%s) of a tensor of %lld elements", buf, (long long)numel);
    }
    return 0;
}

/* Strides for viewing t as `shape` without copying, or false if the memory
 * layout does not allow it (PyTorch's computeStride). */
static bool view_strides(const Tensor *t, int ndim, const int64_t *shape, int64_t *strides) {
    if (tensor_numel(t) == 0 || tensor_is_contiguous(t)) {
        int64_t stride = 1;
        for (int i = ndim - 1; i >= 0; i--) {
            strides[i] = stride;
            stride *= shape[i] ? shape[i] : 1;
        }
        return true;
    }
    /* Walk chunks of old dims that are mutually contiguous. */
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->ndim ? t->strides[t->ndim - 1] : 1;
    int64_t tensor_numel_chunk = 1, view_numel = 1;
    for (int td = t->ndim - 1; td >= 0; td--) {
        tensor_numel_chunk *= t->shape[td];
        if (td == 0 || (t->shape[td - 1] != 1 &&
                        t->strides[td - 1] != tensor_numel_chunk * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel_chunk || shape[view_d] == 1)) {
                strides[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel_chunk) return false;
            if (td > 0) {
                chunk_base_stride = t->strides[td - 1];
                tensor_numel_chunk = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

Tensor *tensor_view(Tensor *t, int ndim, const int64_t *shape) {
    if (!t) return NULL;
    int64_t resolved[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    if (infer_shape("view", t, ndim, shape, resolved) != 0) return NULL;
    if (!view_strides(t, ndim, resolved, strides)) {
        char a[128], b[128];
        error_set("view: cannot view a non-contiguous tensor of shape %s as %s; use reshape",
                  tensor_shape_str(t, a, sizeof a), shape_str(ndim, resolved, b, sizeof b));
        return NULL;
    }
    Tensor *v = tensor_make_view(t, ndim, resolved, strides, t->offset);
    return finish_view(t, v, VIEW_RESHAPE, NULL, 0);
}

Tensor *tensor_reshape(Tensor *t, int ndim, const int64_t *shape) {
    if (!t) return NULL;
    int64_t resolved[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    if (infer_shape("reshape", t, ndim, shape, resolved) != 0) return NULL;
    if (view_strides(t, ndim, resolved, strides)) return tensor_view(t, ndim, resolved);
    Tensor *c = tensor_contiguous(t);
    Tensor *v = tensor_view(c, ndim, resolved);
    tensor_release(c);
    return v;
}

Tensor *tensor_unsqueeze(Tensor *t, int dim) {
    if (!t) return NULL;
    if (t->ndim >= TENSOR_MAX_DIMS)
        return error_set("unsqueeze: tensor already has %d dimensions", t->ndim), NULL;
    int d = tensor_wrap_dim(dim, t->ndim + 1, "unsqueeze");
    if (d < 0) return NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    for (int i = 0, j = 0; i <= t->ndim; i++) shape[i] = (i == d) ? 1 : t->shape[j++];
    return tensor_view(t, t->ndim + 1, shape);
}

Tensor *tensor_squeeze(Tensor *t, int dim) {
    if (!t) return NULL;
    if (t->ndim == 0) /* dim 0 or -1 only, as torch's */
        return tensor_wrap_dim(dim, 0, "squeeze") < 0 ? NULL : tensor_view(t, 0, NULL);
    int d = tensor_wrap_dim(dim, t->ndim, "squeeze");
    if (d < 0) return NULL;
    if (t->shape[d] != 1) return tensor_view(t, t->ndim, t->shape);
    int64_t shape[TENSOR_MAX_DIMS];
    for (int i = 0, j = 0; i < t->ndim; i++)
        if (i != d) shape[j++] = t->shape[i];
    return tensor_view(t, t->ndim - 1, shape);
}

Tensor *tensor_squeeze_all(Tensor *t) {
    if (!t) return NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) shape[n++] = t->shape[i];
    return tensor_view(t, n, shape);
}

Tensor *tensor_flatten(Tensor *t, int start_dim, int end_dim) {
    if (!t) return NULL;
    if (t->ndim == 0) return tensor_reshape(t, SHAPE(1));
    int s = tensor_wrap_dim(start_dim, t->ndim, "flatten");
    int e = tensor_wrap_dim(end_dim, t->ndim, "flatten");
    if (s < 0 || e < 0) return NULL;
    if (s > e)
        return error_set("flatten: start_dim %d is after end_dim %d", start_dim, end_dim), NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < s; i++) shape[n++] = t->shape[i];
    int64_t merged = 1;
    for (int i = s; i <= e; i++) merged *= t->shape[i];
    shape[n++] = merged;
    for (int i = e + 1; i < t->ndim; i++) shape[n++] = t->shape[i];
    return tensor_reshape(t, n, shape);
}

Tensor *tensor_permute(Tensor *t, const int *dims) {
    if (!t) return NULL;
    int64_t shape[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS], perm[TENSOR_MAX_DIMS];
    bool seen[TENSOR_MAX_DIMS] = {false};
    for (int i = 0; i < t->ndim; i++) {
        int d = tensor_wrap_dim(dims[i], t->ndim, "permute");
        if (d < 0) return NULL;
        if (seen[d]) return error_set("permute: dimension %d repeated", d), NULL;
        seen[d] = true;
        perm[i] = d;
        shape[i] = t->shape[d];
        strides[i] = t->strides[d];
    }
    Tensor *v = tensor_make_view(t, t->ndim, shape, strides, t->offset);
    return finish_view(t, v, VIEW_PERMUTE, perm, t->ndim);
}

Tensor *tensor_transpose(Tensor *t, int dim0, int dim1) {
    if (!t) return NULL;
    int a = tensor_wrap_dim(dim0, t->ndim, "transpose");
    int b = tensor_wrap_dim(dim1, t->ndim, "transpose");
    if (a < 0 || b < 0) return NULL;
    int dims[TENSOR_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) dims[i] = i;
    dims[a] = b;
    dims[b] = a;
    return tensor_permute(t, dims);
}

Tensor *tensor_expand(Tensor *t, int ndim, const int64_t *shape) {
    if (!t) return NULL;
    char a[128], b[128];
    if (ndim < t->ndim || ndim > TENSOR_MAX_DIMS)
        return error_set("expand: cannot expand %s to %s", tensor_shape_str(t, a, sizeof a),
                         shape_str(ndim, shape, b, sizeof b)),
               NULL;
    int64_t out_shape[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int64_t size = i < lead ? 1 : t->shape[i - lead];
        int64_t stride = i < lead ? 0 : t->strides[i - lead];
        if (shape[i] == -1 && i >= lead) {
            out_shape[i] = size;
            strides[i] = stride;
        } else if (size == shape[i]) {
            out_shape[i] = size;
            strides[i] = stride;
        } else if (size == 1 && shape[i] >= 0) {
            out_shape[i] = shape[i];
            strides[i] = 0;
        } else {
            return error_set("expand: cannot expand %s to %s (dimension %d)",
                             tensor_shape_str(t, a, sizeof a), shape_str(ndim, shape, b, sizeof b),
                             i),
                   NULL;
        }
    }
    Tensor *v = tensor_make_view(t, ndim, out_shape, strides, t->offset);
    return finish_view(t, v, VIEW_EXPAND, NULL, 0);
}

Tensor *tensor_narrow(Tensor *t, int dim, int64_t start, int64_t length) {
    if (!t) return NULL;
    if (t->ndim == 0) return error_set("narrow: a 0-d tensor has no dimension to narrow"), NULL;
    int d = tensor_wrap_dim(dim, t->ndim, "narrow");
    if (d < 0) return NULL;
    if (start < 0 || length < 0 || start > t->shape[d] - length) /* no start + length: it wraps */
        return error_set("narrow: length %lld from %lld is outside dimension %d of size %lld",
                         (long long)length, (long long)start, d, (long long)t->shape[d]),
               NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[d] = length;
    Tensor *v = tensor_make_view(t, t->ndim, shape, t->strides, t->offset + start * t->strides[d]);
    int64_t args[2] = {d, start};
    return finish_view(t, v, VIEW_NARROW, args, 2);
}
