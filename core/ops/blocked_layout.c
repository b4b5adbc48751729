/* blocked_layout.c - the blocked layout of [N, C, H, W] activations, and
 * the conversions to and from it.
 *
 * oneDNN's convolutions run on nChw16c: channel c of pixel (h, w) at
 * [n][c / 16][h][w][c % 16]. A network whose convolutions are separated
 * only by batch norm, ReLU and additions (a ResNet) loses a quarter of
 * its convolution time to reordering each input and output between that
 * and NCHW. Here the layout is a tensor of its own shape,
 * [N, C/16, H, W, 16]: elementwise ops need no telling, convolutions and
 * batch norm are told (tensor_conv2d_with reads a 5-d input as blocked,
 * tensor_conv2d_layout writes it, tensor_batch_norm_blocked), and a
 * backend that does not run it natively (core/backend.h's
 * blocked_layout) gets NCHW from those ops. The conversions run on the
 * backend's kernel (convert_blocked) where it has the layout, each the
 * other's backward; elsewhere they are views and one copy, differentiated
 * as any view.
 */
#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

bool tensor_blocked_layout_native(const Tensor *x) {
    const Backend *be = x ? backend_for(x->device) : NULL;
    return be && be->blocked_layout && be->blocked_layout(x);
}

int tensor_blocked_nchw(const char *op, int ndim, const int64_t *shape, int64_t nchw[4]) {
    char s[128];
    if (ndim != 5 || shape[4] != TENSOR_BLOCK)
        return error_set("%s: expected the blocked layout [N, C/%d, H, W, %d], got %s", op,
                         TENSOR_BLOCK, TENSOR_BLOCK, shape_str(ndim, shape, s, sizeof s));
    nchw[0] = shape[0], nchw[1] = shape[1] * TENSOR_BLOCK, nchw[2] = shape[2], nchw[3] = shape[3];
    return 0;
}

int tensor_nchw_shape(const char *op, const Tensor *x, int *ndim, int64_t *shape) {
    *ndim = x->ndim == 5 ? 4 : x->ndim;
    if (x->ndim == 5) return tensor_blocked_nchw(op, x->ndim, x->shape, shape);
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    return 0;
}

/* The conversion on the backend's kernel, recorded with backward
 * `back` (the other conversion); x contiguous or made so. */
static Tensor *convert(Tensor *x, int ndim, const int64_t *shape, const char *name,
                       BackwardFn back) {
    Tensor *xc = tensor_contiguous(x);
    Tensor *out = xc ? tensor_empty(ndim, shape, x->dtype, x->device) : NULL;
    if (out) backend_for(x->device)->convert_blocked(xc, out);
    if (out && autograd_needs_grad(1, &xc) && !autograd_record(out, name, back, 1, &xc)) {
        tensor_release(out);
        out = NULL;
    }
    tensor_release(xc);
    return out;
}

/* Where the backend has no kernel: a view with the lanes last, copied. */
static Tensor *permuted(Tensor *x, int ndim, const int64_t *split, const int *perm,
                        int out_ndim, const int64_t *out_shape) {
    Tensor *s = tensor_reshape(x, ndim, split);
    Tensor *p = tensor_permute(s, perm);
    Tensor *c = tensor_contiguous(p);
    Tensor *out = tensor_reshape(c, out_ndim, out_shape);
    tensor_release(s), tensor_release(p), tensor_release(c);
    return out;
}

static bool has_kernel(const Tensor *x) {
    return tensor_blocked_layout_native(x) && backend_for(x->device)->convert_blocked;
}

static int to_blocked_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    return (gx[0] = tensor_from_blocked(gy)) ? 0 : -1;
}

static int from_blocked_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    return (gx[0] = tensor_to_blocked(gy)) ? 0 : -1;
}

Tensor *tensor_to_blocked(Tensor *x) {
    if (!x) return NULL;
    char s[128];
    if (x->ndim != 4 || x->shape[1] % TENSOR_BLOCK != 0)
        return error_set("to_blocked: expected [N, C, H, W] with C a multiple of %d, got %s",
                         TENSOR_BLOCK, tensor_shape_str(x, s, sizeof s)),
               NULL;
    const int64_t *d = x->shape;
    int64_t out[5] = {d[0], d[1] / TENSOR_BLOCK, d[2], d[3], TENSOR_BLOCK};
    if (has_kernel(x)) return convert(x, 5, out, "ToBlockedBackward", to_blocked_backward);
    return permuted(x, SHAPE(d[0], d[1] / TENSOR_BLOCK, TENSOR_BLOCK, d[2], d[3]),
                    (int[]){0, 1, 3, 4, 2}, 5, out);
}

Tensor *tensor_from_blocked(Tensor *x) {
    if (!x) return NULL;
    int64_t nchw[4];
    if (tensor_blocked_nchw("from_blocked", x->ndim, x->shape, nchw) != 0) return NULL;
    if (has_kernel(x)) return convert(x, 4, nchw, "FromBlockedBackward", from_blocked_backward);
    return permuted(x, 5, x->shape, (int[]){0, 1, 4, 2, 3}, 4, nchw);
}
