/* sequential.c - nn.Sequential: children run in order, named "0", "1", ...
 *
 * The job spec's "model" list becomes one Sequential. Its forward and shape
 * inference just chain the children; a failing child has already named
 * itself ("model[3] Linear: ...") in module_forward / module_infer_shape,
 * so nothing is added here. An empty Sequential is the identity, as torch's.
 * Two rows run faster than layer by layer where the backend keeps its
 * convolution library's layout: Conv2d, ReLU, MaxPool2d as one op (in
 * chains), and convolutions with batch norm and ReLU between them in the
 * blocked layout (core/ops.h's TENSOR_BLOCK), as a VGG's or a ResNet's.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/nn/module.h"

static int sequential_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim,
                                  int64_t *out) {
    int n = ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) shape[i] = in[i];
    for (int i = 0; i < m->n_children; i++) {
        int next_n;
        int64_t next[TENSOR_MAX_DIMS];
        if (module_infer_shape(m->children[i], n, shape, &next_n, next) != 0) return -1;
        n = next_n;
        for (int k = 0; k < n; k++) shape[k] = next[k];
    }
    for (int i = 0; i < n; i++) out[i] = shape[i];
    *out_ndim = n;
    return 0;
}

/* The arguments of a Conv2d, ReLU, MaxPool2d starting at c (n children
 * left), or false when c does not start such a row. */
static bool block_at(Module **c, int n, ConvReluPoolArgs *a) {
    return n >= 3 && nn_conv2d_args(c[0], &a->weight, &a->bias, &a->conv) &&
           strcmp(c[1]->vtable->type, "ReLU") == 0 && nn_max_pool2d_args(c[2], &a->pool);
}

#define CHAIN_MAX 16

/* Conv2d, ReLU, MaxPool2d in a row run as one op, and such rows one after
 * another as a chain (tensor_conv2d_relu_max_pool2d_chain: on the CPU,
 * oneDNN keeps its blocked layout through the three and on to the next
 * convolution), after each layer's shape check, as module_forward checks
 * it. Returns how many children it ran (3 a block), or 0 when c does not
 * start a block. */
static int conv_relu_pool(Module **c, int n, Tensor *x, Tensor **out) {
    ConvReluPoolArgs blocks[CHAIN_MAX];
    int count = 0, nd = x->ndim, failed = 0, at = 0;
    int64_t shape[2][TENSOR_MAX_DIMS];
    memcpy(shape[0], x->shape, (size_t)nd * sizeof **shape);
    *out = NULL;
    for (; count < CHAIN_MAX && block_at(c + 3 * count, n - 3 * count, &blocks[count]); count++)
        for (int i = 0; i < 3; i++, at = !at)
            if (module_infer_shape(c[3 * count + i], nd, shape[at], &nd, shape[!at]) != 0)
                return 3 * (count + 1);
    if (count && !(*out = tensor_conv2d_relu_max_pool2d_chain(x, count, blocks, &failed)))
        module_prefix_error(c[3 * failed]);
    return 3 * count;
}

/* Whether m is a convolution of a run in the blocked layout: a Conv2d
 * whose output fills blocks of 16, or a residual block whose convolutions
 * all do. */
static bool blocked_conv(Module *m) {
    Tensor *w, *b;
    Conv2dParams p;
    if (nn_conv2d_args(m, &w, &b, &p)) return w->shape[0] % TENSOR_BLOCK == 0;
    return nn_resnet_block_takes_blocked(m);
}

/* Whether m may sit in such a run: a convolution; a 2x2 stride-2
 * MaxPool2d (the CPU's own kernel: other windows would go through NCHW);
 * or a layer that takes the layout as it comes (BatchNorm2d, ReLU,
 * Identity). */
static bool blocked_layer(Module *m) {
    Pool2dParams p;
    if (nn_max_pool2d_args(m, &p)) return tensor_max_pool2d_2x2(&p);
    return blocked_conv(m) || (m->n_children == 0 && m->vtable->forward_blocked &&
                               strcmp(m->vtable->type, "Conv2d") != 0);
}

/* How many children from c on run in the blocked layout (core/ops.h's
 * TENSOR_BLOCK) where x's backend has it: layers that take it (2x2
 * max-pools among them), starting with a convolution, up to one that
 * does not or that starts a Conv2d, ReLU, MaxPool2d row (which keeps its
 * own layout); 0 unless the run holds two convolutions, which then hand
 * the layout on with no reorder between them (the run's ends convert). */
static int blocked_run(Module **c, int n, const Tensor *x) {
    ConvReluPoolArgs row;
    if (x->ndim != 4 || !tensor_blocked_layout_native(x) || n < 1 || !blocked_conv(c[0]))
        return 0;
    if (c[0]->n_children > 0 && x->shape[1] % TENSOR_BLOCK != 0) return 0; /* a block's input */
    int len = 0, convs = 0;
    for (; len < n && blocked_layer(c[len]); len++) {
        if (len > 0 && block_at(c + len, n - len, &row)) break;
        convs += blocked_conv(c[len]);
    }
    return convs >= 2 ? len : 0;
}

/* The run's children in the blocked layout, x converted where a block
 * comes first (a Conv2d takes NCHW) and the output back to NCHW. */
static Tensor *forward_blocked_run(Module **c, int len, Tensor *x) {
    Tensor *h = c[0]->n_children > 0 ? tensor_to_blocked(x) : tensor_retain(x);
    for (int i = 0; i < len && h; i++) h = module_forward_blocked(c[i], h);
    Tensor *out = h ? tensor_from_blocked(h) : NULL;
    tensor_release(h);
    return out;
}

static Tensor *sequential_forward(Module *m, Tensor *x) {
    Tensor *h = tensor_retain(x);
    for (int i = 0; i < m->n_children && h;) {
        Module **c = m->children + i;
        int left = m->n_children - i;
        Tensor *next = NULL;
        int ran = conv_relu_pool(c, left, h, &next);
        if (!ran && (ran = blocked_run(c, left, h))) next = forward_blocked_run(c, ran, h);
        if (ran) tensor_release(h);
        h = ran ? next : module_forward_consume(c[0], h);
        i += ran ? ran : 1;
    }
    return h;
}

/* Each child in the blocked layout, which they take or fail naming. */
static Tensor *sequential_forward_blocked(Module *m, Tensor *x) {
    Tensor *h = x;
    for (int i = 0; i < m->n_children && h; i++) h = module_forward_blocked(m->children[i], h);
    return h;
}

static const ModuleVTable sequential_vtable = {
    .type = "Sequential",
    .forward = sequential_forward,
    .infer_shape = sequential_infer_shape,
    .forward_blocked = sequential_forward_blocked,
};

Module *nn_sequential(int n, Module **children) {
    if (n < 0 || (n > 0 && !children)) {
        error_set("Sequential: %d children given", n);
        return NULL;
    }
    Module *m = module_alloc(sizeof *m, &sequential_vtable);
    /* Always an array, even for n = 0: it marks the module a container. */
    if (m) m->children = malloc(sizeof *m->children);
    if (m && !m->children) error_set("Sequential: out of memory");
    bool ok = m && m->children;
    /* Every child is taken, also after a failure; a NULL child carries its
     * constructor's error, and the first error is kept. */
    for (int i = 0; i < n; i++) {
        if (ok)
            ok = module_add_child(m, NULL, children[i]) == 0;
        else
            module_free(children[i]);
    }
    if (ok) return m;
    module_free(m);
    return NULL;
}
