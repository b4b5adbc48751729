/* test_conv_relu_pool.c - max_pool2d(relu(conv2d(x))) as one op: the
 * CPU's fused oneDNN path against the three ops one by one (im2col, our
 * ReLU and max-pool), forward and every gradient, over shapes where the
 * blocked layout pads (channels not a multiple of 16, odd sizes), grouped
 * and strided convolutions, padded and overlapping pools, a first layer
 * whose input needs no gradient, no bias; its float64 gradient check; and
 * a Sequential's Conv2d, ReLU, MaxPool2d giving what its layers give one
 * by one, errors named as before. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/autograd.h"
#include "core/cpu/cpu.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

typedef struct {
    const char *name;
    int64_t x[4], w[4];
    bool bias, x_grad;
    Conv2dParams conv;
    Pool2dParams pool;
} Case;

static const Case cases[] = {
    {"3x3 same, pool 2",
     {5, 3, 11, 9},
     {8, 3, 3, 3},
     true,
     true,
     {1, 1, 1, 1, 1, 1, 1},
     {2, 2, 0, 0, 0, 0}},
    {"first layer, no bias",
     {4, 1, 12, 12},
     {20, 1, 3, 3},
     false,
     false,
     {1, 1, 1, 1, 1, 1, 1},
     {2, 2, 2, 2, 0, 0}},
    {"groups 2 stride 2, pool 3 s2 p1",
     {3, 4, 13, 10},
     {6, 2, 3, 3},
     true,
     true,
     {2, 2, 1, 1, 1, 1, 2},
     {3, 3, 2, 2, 1, 1}},
    {"32 -> 40 channels, pool 2x3 s1",
     {2, 32, 8, 7},
     {40, 32, 3, 3},
     true,
     true,
     {1, 1, 0, 0, 1, 1, 1},
     {2, 3, 1, 1, 0, 0}},
    {"16 -> 32 channels, odd 13x11, pool 2",
     {3, 16, 13, 11},
     {32, 16, 3, 3},
     true,
     true,
     {1, 1, 1, 1, 1, 1, 1},
     {2, 2, 2, 2, 0, 0}},
};

/* float32 copy of a float64 gradcheck input, as a leaf wanting grad or not */
static Tensor *f32(Tensor *t, bool grad) {
    Tensor *c = tensor_to_dtype(t, DTYPE_FLOAT32), *leaf = c ? tensor_detach(c) : NULL;
    tensor_release(c);
    cr_assert(leaf, "%s", error_get());
    tensor_set_requires_grad(leaf, grad);
    return leaf;
}

/* out and the three gradients of sum(out * up) for one path */
static void run(const Case *k, bool fused, Tensor *const *in64, Tensor **got) {
    cpu_conv_library(fused);
    Tensor *x = f32(in64[0], k->x_grad), *w = f32(in64[1], true);
    Tensor *b = k->bias ? f32(in64[2], true) : NULL;
    Tensor *out = fused ? tensor_conv2d_relu_max_pool2d(x, w, b, &k->conv, &k->pool) : NULL;
    if (!fused) { /* the three ops, with the library off: im2col, ours, ours */
        Tensor *y = tensor_conv2d_with(x, w, b, &k->conv), *r = tensor_relu(y);
        out = tensor_max_pool2d(r, k->pool.kernel_h, k->pool.kernel_w, k->pool.stride_h,
                                k->pool.stride_w, k->pool.pad_h, k->pool.pad_w);
        tensor_release(y), tensor_release(r);
    }
    cr_assert(out, "%s: %s", k->name, error_get());
    Tensor *up = gradcheck_uniform32(out->ndim, out->shape, 99);
    cr_assert(tensor_backward_with(out, up) == 0, "%s: %s", k->name, error_get());
    got[0] = out, got[1] = tensor_retain(x->grad), got[2] = tensor_retain(w->grad);
    got[3] = b ? tensor_retain(b->grad) : NULL;
    tensor_release(up), tensor_release(x), tensor_release(w), tensor_release(b);
}

static void fused_equals_the_three_ops(void) {
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const Case *k = &cases[c];
        Tensor *in[3] = {gradcheck_input(4, k->x, -1, 1, 1 + c),
                         gradcheck_input(4, k->w, -1, 1, 2 + c),
                         gradcheck_input(SHAPE(k->w[0]), -1, 1, 3 + c)};
        Tensor *fused[4], *plain[4];
        run(k, true, in, fused);
        run(k, false, in, plain);
        const char *what[4] = {"out", "gx", "gweight", "gbias"};
        for (int i = 0; i < 4; i++) {
            char name[96];
            snprintf(name, sizeof name, "%s: %s", k->name, what[i]);
            bool want = i == 1 ? k->x_grad : i == 3 ? k->bias : true;
            cr_assert_eq(fused[i] != NULL, want, "%s: present %d", name, fused[i] != NULL);
            if (want) assert_tensor_close(fused[i], plain[i], 1e-4, 1e-5, name);
            tensor_release(fused[i]), tensor_release(plain[i]);
        }
        for (int i = 0; i < 3; i++) tensor_release(in[i]);
    }
}

Test(conv_relu_pool, fused_equals_the_three_ops) {
    fused_equals_the_three_ops();
}

/* the 2x2 pool's portable kernels, which an AVX-512 machine never runs */
Test(conv_relu_pool, fused_equals_the_three_ops_portable_pool) {
    cpu_pool_blocked_portable(true);
    fused_equals_the_three_ops();
}

/* a cache kept no plan: each call makes its own and frees it (a daemon
 * past the limit), which ASan watches */
Test(conv_relu_pool, past_the_plan_cache_limit) {
    cpu_conv_plan_limit(0);
    fused_equals_the_three_ops();
}

static Tensor *block_fn(Tensor **in, void *ctx) {
    const Case *k = ctx;
    return tensor_conv2d_relu_max_pool2d(in[0], in[1], in[2], &k->conv, &k->pool);
}

Test(conv_relu_pool, gradcheck_float64) {
    const Case *k = &cases[2];
    Tensor *in[3] = {gradcheck_input(SHAPE(2, 4, 7, 6), -1, 1, 21),
                     gradcheck_input(SHAPE(6, 2, 3, 3), -1, 1, 22),
                     gradcheck_input(SHAPE(6), -1, 1, 23)};
    gradcheck("conv2d relu max_pool2d", block_fn, (void *)k, 3, in);
    for (int i = 0; i < 3; i++) tensor_release(in[i]);
}

static Module *cnn(Rng *rng, int64_t in_channels) {
    Module *c[5] = {nn_conv2d(in_channels, 16, SIZE2D(3), SIZE2D(1), SIZE2D(1), true, rng),
                    nn_relu(), nn_max_pool2d(SIZE2D(2), SIZE2D(0), SIZE2D(0)), nn_flatten(1, -1),
                    nn_linear(16 * 5 * 5, 3, true, rng)};
    Module *m = nn_sequential(5, c);
    cr_assert(m, "%s", error_get());
    return m;
}

Test(conv_relu_pool, sequential_runs_the_row_as_its_layers_do) {
    Rng rng;
    rng_init(&rng, 5);
    Module *m = cnn(&rng, 2);
    Tensor *x = gradcheck_uniform32(SHAPE(3, 2, 10, 11), 7);
    Tensor *whole = module_forward(m, x);
    cr_assert(whole, "%s", error_get());
    Tensor *h = tensor_retain(x);
    for (int i = 0; i < m->n_children; i++) {
        Tensor *next = module_forward(m->children[i], h);
        tensor_release(h);
        h = next;
    }
    assert_tensor_close(whole, h, 1e-5, 1e-6, "Sequential vs its layers one by one");
    tensor_release(whole), tensor_release(h), tensor_release(x);

    /* a wrong input still names the layer, as module_forward does */
    x = tensor_zeros(SHAPE(1, 3, 10, 11), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(module_forward(m, x));
    cr_assert(strstr(error_get(), "model[0] Conv2d:") || strstr(error_get(), "[0] Conv2d:"),
              "error: %s", error_get());
    tensor_release(x);
    module_free(m);
}
