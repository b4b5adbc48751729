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
 * blocked_layout) gets NCHW from those ops. The conversions are views
 * and one copy, so autograd differentiates them as any view.
 */
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

Tensor *tensor_to_blocked(Tensor *x) {
    if (!x) return NULL;
    char s[128];
    if (x->ndim != 4 || x->shape[1] % TENSOR_BLOCK != 0)
        return error_set("to_blocked: expected [N, C, H, W] with C a multiple of %d, got %s",
                         TENSOR_BLOCK, tensor_shape_str(x, s, sizeof s)),
               NULL;
    const int64_t *d = x->shape;
    Tensor *split = tensor_reshape(x, SHAPE(d[0], d[1] / TENSOR_BLOCK, TENSOR_BLOCK, d[2], d[3]));
    Tensor *lanes_last = tensor_permute(split, (int[]){0, 1, 3, 4, 2});
    Tensor *out = tensor_contiguous(lanes_last);
    tensor_release(split), tensor_release(lanes_last);
    return out;
}

Tensor *tensor_from_blocked(Tensor *x) {
    if (!x) return NULL;
    int64_t nchw[4];
    if (tensor_blocked_nchw("from_blocked", x->ndim, x->shape, nchw) != 0) return NULL;
    Tensor *lanes_second = tensor_permute(x, (int[]){0, 1, 4, 2, 3});
    Tensor *c = tensor_contiguous(lanes_second);
    Tensor *out = tensor_reshape(c, 4, nchw);
    tensor_release(lanes_second), tensor_release(c);
    return out;
}
