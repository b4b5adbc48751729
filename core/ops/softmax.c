/* softmax.c - softmax and log_softmax over any dimension.
 *
 * The backend only knows the last dimension of a [rows, cols] matrix, so the
 * op brings `dim` last first: a plain reshape when it already is, otherwise a
 * transpose made contiguous (one copy), and the inverse on the way out. The
 * output is contiguous in the input's shape, as torch's is. Backward reuses
 * the same round trip around backend->softmax_backward, from the saved
 * output y (both gradients need only y, never x).
 */
#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

/* t as a contiguous [rows, cols] matrix with `dim` last. Grad mode must be
 * off: the reshapes are internal and not part of the graph. */
static Tensor *to_rows(Tensor *t, int dim) {
    int last = t->ndim - 1;
    int64_t cols = t->ndim > 0 ? t->shape[dim] : 1, rows = 1;
    for (int i = 0; i < t->ndim; i++)
        if (i != dim) rows *= t->shape[i];
    Tensor *moved = (t->ndim > 0 && dim != last) ? tensor_transpose(t, dim, last)
                                                 : tensor_retain(t);
    Tensor *c = tensor_contiguous(moved);
    Tensor *m = tensor_view(c, SHAPE(rows, cols));
    tensor_release(moved);
    tensor_release(c);
    return m;
}

/* The inverse of to_rows: m [rows, cols] back to `like`'s shape, contiguous. */
static Tensor *from_rows(Tensor *m, const Tensor *like, int dim) {
    if (!m) return NULL;
    int last = like->ndim - 1;
    if (like->ndim == 0 || dim == last) return tensor_view(m, like->ndim, like->shape);
    int64_t moved[TENSOR_MAX_DIMS];
    for (int i = 0; i < like->ndim; i++) moved[i] = like->shape[i];
    moved[dim] = like->shape[last];
    moved[last] = like->shape[dim];
    Tensor *v = tensor_view(m, like->ndim, moved);
    Tensor *back = tensor_transpose(v, dim, last);
    Tensor *out = tensor_contiguous(back);
    tensor_release(v);
    tensor_release(back);
    return out;
}

/* ints[0] = dim (normalised), ints[1] = log; saved[0] = y (detached alias). */
static int softmax_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0];
    int dim = (int)node->ints[0];
    bool log = node->ints[1] != 0;
    const Backend *be = backend_for(x->device);
    if (!be) return -1;
    Tensor *y2 = to_rows(node->saved[0], dim);
    Tensor *gy2 = y2 ? to_rows(gy, dim) : NULL;
    Tensor *gx2 = gy2 ? tensor_empty_like(y2) : NULL;
    if (gx2 && tensor_numel(gx2) > 0) be->softmax_backward(y2, gy2, gx2, log);
    gx[0] = from_rows(gx2, x, dim);
    tensor_release(y2);
    tensor_release(gy2);
    tensor_release(gx2);
    return gx[0] ? 0 : -1;
}

static Tensor *softmax_op(const char *name, Tensor *a, int dim, bool log) {
    if (!a) return NULL;
    if (!dtype_is_float(a->dtype))
        return error_set("%s: expected a float tensor, got %s", name, dtype_name(a->dtype)), NULL;
    int d = tensor_wrap_dim(dim, a->ndim, name);
    if (d < 0) return NULL;
    const Backend *be = backend_for(a->device);
    if (!be) return NULL;

    bool prev = autograd_set_enabled(false);
    Tensor *x2 = to_rows(a, d);
    Tensor *y2 = x2 ? tensor_empty_like(x2) : NULL;
    if (y2 && tensor_numel(y2) > 0) be->softmax(x2, y2, log);
    Tensor *out = from_rows(y2, a, d);
    autograd_set_enabled(prev);
    tensor_release(x2);
    tensor_release(y2);

    if (out && autograd_needs_grad(1, &a)) {
        AutogradNode *node = autograd_record(
            out, log ? "LogSoftmaxBackward" : "SoftmaxBackward", softmax_backward, 1, &a);
        /* Saving out itself would make it own itself: keep a detached alias. */
        Tensor *alias = node ? tensor_detach(out) : NULL;
        if (!alias) {
            tensor_release(out);
            return NULL;
        }
        node->ints[0] = d;
        node->ints[1] = log;
        node->saved[0] = alias;
    }
    return out;
}

Tensor *tensor_softmax(Tensor *a, int dim) { return softmax_op("softmax", a, dim, false); }

Tensor *tensor_log_softmax(Tensor *a, int dim) { return softmax_op("log_softmax", a, dim, true); }
