/* test_conv_relu_pool.c - max_pool2d(relu(conv2d(x))) as one op: the
 * CPU's fused oneDNN path against the three ops one by one (im2col, our
 * ReLU and max-pool), forward and every gradient, over shapes where the
 * blocked layout pads (channels not a multiple of 16, odd sizes), grouped
 * and strided convolutions, padded and overlapping pools, a first layer
 * whose input needs no gradient, no bias; its float64 gradient check;
 * blocks in a row (the chain), which hand nChw16c on where the channels
 * fill blocks of 16; and a Sequential's Conv2d, ReLU, MaxPool2d rows giving
 * what their layers give one by one, errors named as before. */
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
    /* first layers (no input gradient): the weight gradient from the
     * pool's argmax (conv_block_wgrad.c), borders padded and not */
    {"first layer RGB, bias, odd 13x11",
     {3, 3, 13, 11},
     {32, 3, 3, 3},
     true,
     false,
     {1, 1, 1, 1, 1, 1, 1},
     {2, 2, 2, 2, 0, 0}},
    {"first layer, pad 0, 10x9",
     {2, 2, 10, 9},
     {16, 2, 3, 3},
     true,
     false,
     {1, 1, 0, 0, 1, 1, 1},
     {2, 2, 2, 2, 0, 0}},
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
    cpu_kernels_portable(true);
    fused_equals_the_three_ops();
}

/* a cache kept no plan: each call makes its own and frees it (a daemon
 * past the limit), which ASan watches */
Test(conv_relu_pool, past_the_plan_cache_limit) {
    cpu_dnnl_plan_limit(0);
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

/* ---- blocks in a row: the tensor between two stays nChw16c ---- */

/* Four blocks over [3, 3, 32, 30]: 3 -> 16 -> 24 -> 32 -> 16 channels,
 * 32x30 -> 16x15 -> 7x7 (an odd row and column no window reads) -> 3x3
 * -> 1x1. 16 and 32 channels fill whole blocks of 16 and are handed on
 * blocked; 24 is not. */
enum { CHAIN = 4 };
static const int64_t chain_channels[CHAIN + 1] = {3, 16, 24, 32, 16};
static const bool chain_hands_on[CHAIN] = {true, false, true, false};

typedef struct {
    Tensor *x, *w[CHAIN], *b[CHAIN];
} ChainInputs;

static ChainInputs chain_inputs(DType dtype, bool x_grad) {
    ChainInputs in;
    Tensor *x = gradcheck_input(SHAPE(3, 3, 32, 30), -1, 1, 40);
    in.x = dtype == DTYPE_FLOAT32 ? f32(x, x_grad) : tensor_retain(x);
    tensor_release(x);
    for (int i = 0; i < CHAIN; i++) {
        int64_t ci = chain_channels[i], co = chain_channels[i + 1];
        Tensor *w = gradcheck_input(SHAPE(co, ci, 3, 3), -0.5, 0.5, 41 + (uint64_t)i);
        Tensor *b = gradcheck_input(SHAPE(co), -0.1, 0.3, 51 + (uint64_t)i);
        in.w[i] = dtype == DTYPE_FLOAT32 ? f32(w, true) : tensor_retain(w);
        in.b[i] = dtype == DTYPE_FLOAT32 ? f32(b, true) : tensor_retain(b);
        tensor_release(w), tensor_release(b);
    }
    return in;
}

static void chain_args(Tensor *const *w, Tensor *const *b, ConvReluPoolArgs *a) {
    for (int i = 0; i < CHAIN; i++)
        a[i] = (ConvReluPoolArgs){w[i], b[i], {1, 1, 1, 1, 1, 1, 1}, {2, 2, 0, 0, 0, 0}};
}

/* out, then the gradients of x, the weights and the biases of
 * sum(out * up), through the chain or its blocks one call each */
static void chain_run(bool chained, Tensor **got) {
    ChainInputs in = chain_inputs(DTYPE_FLOAT32, true);
    ConvReluPoolArgs a[CHAIN];
    chain_args(in.w, in.b, a);
    Tensor *out = NULL;
    if (chained) {
        int failed = -1;
        out = tensor_conv2d_relu_max_pool2d_chain(in.x, CHAIN, a, &failed);
        cr_assert(out, "block %d: %s", failed, error_get());
    } else {
        out = tensor_retain(in.x);
        for (int i = 0; i < CHAIN && out; i++) {
            Tensor *next = tensor_conv2d_relu_max_pool2d(out, a[i].weight, a[i].bias,
                                                         &a[i].conv, &a[i].pool);
            tensor_release(out);
            out = next;
        }
        cr_assert(out, "%s", error_get());
    }
    Tensor *up = gradcheck_uniform32(out->ndim, out->shape, 98);
    cr_assert(tensor_backward_with(out, up) == 0, "%s", error_get());
    got[0] = out, got[1] = tensor_retain(in.x->grad);
    for (int i = 0; i < CHAIN; i++) {
        got[2 + i] = tensor_retain(in.w[i]->grad);
        got[2 + CHAIN + i] = tensor_retain(in.b[i]->grad);
        tensor_release(in.w[i]), tensor_release(in.b[i]);
    }
    tensor_release(up), tensor_release(in.x);
}

enum { CHAIN_GOT = 2 + 2 * CHAIN };

/* The chain's output and every gradient are those of its blocks run one
 * by one, bit for bit (the same kernels: only the layouts between them
 * differ), and, within float32's reach, the three ops' with the library
 * off. */
static void chain_equals_its_blocks(void) {
    Tensor *chained[CHAIN_GOT], *single[CHAIN_GOT], *plain[CHAIN_GOT];
    chain_run(true, chained);
    chain_run(false, single);
    cpu_conv_library(false);
    chain_run(false, plain);
    cpu_conv_library(true);
    for (int i = 0; i < CHAIN_GOT; i++) {
        char name[64];
        snprintf(name, sizeof name, "chain: %s %d", i == 0 ? "out" : i == 1 ? "gx" : "grad", i);
        assert_tensor_close(chained[i], single[i], 0, 0, name);
        /* four layers deep, float32 sums in other orders drift further */
        assert_tensor_close(chained[i], plain[i], 1e-3, 1e-4, name);
        tensor_release(chained[i]), tensor_release(single[i]), tensor_release(plain[i]);
    }
}

Test(conv_relu_pool, chain_equals_its_blocks_one_by_one) {
    chain_equals_its_blocks();
}

/* under "precision": "bf16" the convolutions read bf16 reorders of the
 * handed-on nChw16c tensor, and still give what the blocks one by one do */
Test(conv_relu_pool, chain_equals_its_blocks_in_bf16) {
    if (backend_check_precision(DEVICE_CPU_INIT, PRECISION_BF16) != 0)
        cr_skip_test("no bf16 on this CPU: %s", error_get());
    cpu_set_precision(DEVICE_CPU_INIT, PRECISION_BF16);
    Tensor *chained[CHAIN_GOT], *single[CHAIN_GOT];
    chain_run(true, chained);
    chain_run(false, single);
    cpu_set_precision(DEVICE_CPU_INIT, PRECISION_FLOAT32);
    for (int i = 0; i < CHAIN_GOT; i++) {
        assert_tensor_close(chained[i], single[i], 0, 0, "bf16 chain");
        tensor_release(chained[i]), tensor_release(single[i]);
    }
}

Test(conv_relu_pool, chain_past_the_plan_cache_limit) {
    cpu_dnnl_plan_limit(0);
    chain_equals_its_blocks();
}

/* nChw16c of an NCHW float32 tensor whose channels fill blocks of 16 */
static Tensor *to_nchw16c(const Tensor *t) {
    const int64_t N = t->shape[0], C = t->shape[1], HW = t->shape[2] * t->shape[3];
    Tensor *b = tensor_empty_like(t);
    const float *from = tensor_data(t);
    float *to = tensor_data(b);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < HW; i++)
                to[((n * (C / 16) + c / 16) * HW + i) * 16 + c % 16] = from[(n * C + c) * HW + i];
    return b;
}

/* Each node of the chain records the layouts it read and wrote, blocked
 * exactly where the channels fill blocks of 16; the tensor it handed on
 * holds the block's output in nChw16c. */
Test(conv_relu_pool, chain_hands_on_nchw16c_where_channels_fill_blocks) {
    ChainInputs in = chain_inputs(DTYPE_FLOAT32, false);
    ConvReluPoolArgs a[CHAIN];
    chain_args(in.w, in.b, a);
    Tensor *out = tensor_conv2d_relu_max_pool2d_chain(in.x, CHAIN, a, NULL);
    cr_assert(out, "%s", error_get());
    AutogradNode *node[CHAIN];
    Tensor *h = out;
    for (int i = CHAIN - 1; i >= 0; i--, h = node[i + 1]->inputs[0]) {
        node[i] = h->grad_fn;
        cr_assert(node[i] && strcmp(node[i]->name, "ConvReluMaxPoolBackward") == 0, "block %d", i);
        cr_assert_eq(node[i]->ints[14], chain_hands_on[i], "block %d writes blocked", i);
        cr_assert_eq(node[i]->ints[13], i > 0 && chain_hands_on[i - 1], "block %d reads", i);
    }
    Tensor *h0 = node[1]->inputs[0], *h2 = node[3]->inputs[0];
    Tensor *one = tensor_conv2d_relu_max_pool2d(in.x, a[0].weight, a[0].bias, &a[0].conv,
                                                &a[0].pool);
    Tensor *want = to_nchw16c(one);
    assert_tensor_close(h0, want, 0, 0, "block 0's output, nChw16c");
    tensor_release(want), tensor_release(one);
    Tensor *before = node[2]->inputs[0]; /* 24 channels: NCHW, read as is */
    one = tensor_conv2d_relu_max_pool2d(before, a[2].weight, a[2].bias, &a[2].conv, &a[2].pool);
    want = to_nchw16c(one);
    assert_tensor_close(h2, want, 0, 0, "block 2's output, nChw16c");
    tensor_release(want), tensor_release(one), tensor_release(out), tensor_release(in.x);
    for (int i = 0; i < CHAIN; i++) tensor_release(in.w[i]), tensor_release(in.b[i]);
}

/* float64 (which runs the three ops, no layout handed on) checks the
 * chain's gradients by finite differences, through two blocks */
static Tensor *chain_fn(Tensor **in, void *ctx) {
    (void)ctx;
    ConvReluPoolArgs a[2] = {{in[1], in[2], {1, 1, 1, 1, 1, 1, 1}, {2, 2, 0, 0, 0, 0}},
                             {in[3], in[4], {1, 1, 0, 0, 1, 1, 1}, {2, 2, 0, 0, 0, 0}}};
    return tensor_conv2d_relu_max_pool2d_chain(in[0], 2, a, NULL);
}

Test(conv_relu_pool, chain_gradcheck_float64) {
    Tensor *in[5] = {gradcheck_input(SHAPE(2, 2, 8, 8), -1, 1, 61),
                     gradcheck_input(SHAPE(3, 2, 3, 3), -1, 1, 62),
                     gradcheck_input(SHAPE(3), -1, 1, 63),
                     gradcheck_input(SHAPE(4, 3, 3, 3), -1, 1, 64),
                     gradcheck_input(SHAPE(4), -1, 1, 65)};
    gradcheck("conv2d relu max_pool2d chain", chain_fn, NULL, 5, in);
    for (int i = 0; i < 5; i++) tensor_release(in[i]);
}

static Module *cnn(Rng *rng, int64_t in_channels) {
    Module *c[5] = {nn_conv2d(in_channels, 16, SIZE2D(3), SIZE2D(1), SIZE2D(1), true, rng),
                    nn_relu(), nn_max_pool2d(SIZE2D(2), SIZE2D(0), SIZE2D(0)), nn_flatten(1, -1),
                    nn_linear(16 * 5 * 5, 3, true, rng)};
    Module *m = nn_sequential(5, c);
    cr_assert(m, "%s", error_get());
    return m;
}

/* m's forward over x gives what its children give run one by one */
static void assert_runs_as_its_layers(Module *m, Tensor *x, const char *what) {
    Tensor *whole = module_forward(m, x);
    cr_assert(whole, "%s: %s", what, error_get());
    Tensor *h = tensor_retain(x);
    for (int i = 0; i < m->n_children; i++) {
        Tensor *next = module_forward(m->children[i], h);
        tensor_release(h);
        h = next;
    }
    assert_tensor_close(whole, h, 1e-5, 1e-6, what);
    tensor_release(whole), tensor_release(h);
}

Test(conv_relu_pool, sequential_runs_the_row_as_its_layers_do) {
    Rng rng;
    rng_init(&rng, 5);
    Module *m = cnn(&rng, 2);
    Tensor *x = gradcheck_uniform32(SHAPE(3, 2, 10, 11), 7);
    assert_runs_as_its_layers(m, x, "Sequential vs its layers one by one");
    tensor_release(x);

    /* a wrong input still names the layer, as module_forward does */
    x = tensor_zeros(SHAPE(1, 3, 10, 11), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(module_forward(m, x));
    cr_assert(strstr(error_get(), "model[0] Conv2d:") || strstr(error_get(), "[0] Conv2d:"),
              "error: %s", error_get());
    tensor_release(x);
    module_free(m);
}

/* two blocks in a row (the chain, nChw16c between them) */
static Module *cnn2(Rng *rng, int64_t mid_in) {
    Module *c[8] = {nn_conv2d(2, 16, SIZE2D(3), SIZE2D(1), SIZE2D(1), true, rng),
                    nn_relu(),
                    nn_max_pool2d(SIZE2D(2), SIZE2D(0), SIZE2D(0)),
                    nn_conv2d(mid_in, 32, SIZE2D(3), SIZE2D(1), SIZE2D(1), true, rng),
                    nn_relu(),
                    nn_max_pool2d(SIZE2D(2), SIZE2D(0), SIZE2D(0)),
                    nn_flatten(1, -1),
                    nn_linear(32 * 3 * 2, 3, true, rng)};
    Module *m = nn_sequential(8, c);
    cr_assert(m, "%s", error_get());
    return m;
}

Test(conv_relu_pool, sequential_chains_blocks_as_its_layers_run) {
    Rng rng;
    rng_init(&rng, 6);
    Module *m = cnn2(&rng, 16);
    Tensor *x = gradcheck_uniform32(SHAPE(3, 2, 13, 11), 8);
    assert_runs_as_its_layers(m, x, "two blocks vs their layers one by one");
    module_free(m);

    /* the second block's error names its layer */
    m = cnn2(&rng, 8);
    cr_assert_null(module_forward(m, x));
    cr_assert(strstr(error_get(), "[3] Conv2d:"), "error: %s", error_get());
    tensor_release(x);
    module_free(m);
}
