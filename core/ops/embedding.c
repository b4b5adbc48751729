/* embedding.c - F.embedding(index, weight): rows of weight [V, D] picked by
 * int64 indices of any shape, giving [*index.shape, D].
 *
 * Indices are checked against V by the backend's kernel (Backend.embedding):
 * the CPU's fails before it copies, naming the first bad index, its
 * position and V; a GPU's kernel reads no row outside the weight and
 * reports a bad index at the next read of a result, so no step waits for
 * the host to look at its indices (and a CUDA graph can hold the check).
 * The backward scatter-adds the output's gradient into a zeroed gradient of
 * the weight (torch's embedding_dense_backward); the index gets none.
 */
#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

static const char *OP = "embedding";

static int check_args(const Tensor *weight, const Tensor *index) {
    char s[128];
    if (weight->ndim != 2)
        return error_set("%s: weight must be [num_embeddings, embedding_dim], got %s", OP,
                         tensor_shape_str(weight, s, sizeof s));
    if (!dtype_is_float(weight->dtype))
        return error_set("%s: weight must be float, got %s", OP, dtype_name(weight->dtype));
    if (index->dtype != DTYPE_INT64)
        return error_set("%s: indices must be int64, got %s", OP, dtype_name(index->dtype));
    if (!device_equal(index->device, weight->device)) {
        char a[32], b[32];
        return error_set("%s: indices are on %s but weight is on %s", OP,
                         device_name(index->device, a, sizeof a),
                         device_name(weight->device, b, sizeof b));
    }
    if (index->ndim + 1 > TENSOR_MAX_DIMS)
        return error_set("%s: indices have %d dims, at most %d", OP, index->ndim,
                         TENSOR_MAX_DIMS - 1);
    return 0;
}

/* inputs: weight; saved: the contiguous indices [N]. */
static int embedding_backward(AutogradNode *node, Tensor *gy, Tensor **grads) {
    Tensor *w = node->inputs[0], *idx = node->saved[0];
    const Backend *be = backend_for(w->device);
    if (!be) return -1;
    Tensor *gc = tensor_contiguous(gy);
    Tensor *gw = gc ? tensor_empty(w->ndim, w->shape, w->dtype, w->device) : NULL;
    if (gw) be->embedding_backward(gc, idx, gw);
    tensor_release(gc);
    grads[0] = gw;
    return gw ? 0 : -1;
}

Tensor *tensor_embedding(Tensor *weight, Tensor *index) {
    if (!weight || !index) return NULL;
    if (check_args(weight, index)) return NULL;
    const Backend *be = backend_for(weight->device);
    if (!be) return NULL;
    int64_t n = tensor_numel(index), d = weight->shape[1];
    bool prev = autograd_set_enabled(false);
    Tensor *ic = tensor_contiguous(index), *wc = tensor_contiguous(weight);
    Tensor *flat = ic ? tensor_view(ic, SHAPE(n)) : NULL;
    Tensor *out2 = flat && wc ? tensor_empty(SHAPE(n, d), weight->dtype, weight->device) : NULL;
    if (out2 && n > 0 && be->embedding(wc, flat, out2) != 0)
        tensor_release(out2), out2 = NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    for (int i = 0; i < index->ndim; i++) shape[i] = index->shape[i];
    shape[index->ndim] = d;
    Tensor *out = out2 ? tensor_view(out2, index->ndim + 1, shape) : NULL;
    autograd_set_enabled(prev);
    tensor_release(ic), tensor_release(wc), tensor_release(out2);
    if (out && autograd_needs_grad(1, &weight)) {
        AutogradNode *node = autograd_record(out, "EmbeddingBackward", embedding_backward, 1,
                                             &weight);
        if (node) {
            autograd_save(node, 0, flat);
        } else {
            tensor_release(out);
            out = NULL;
        }
    }
    tensor_release(flat);
    return out;
}
