/* test_blocked_layout.c - the blocked layout [N, C/16, H, W, 16]
 * (core/ops.h's TENSOR_BLOCK): the conversions, element by element and
 * differentiated; Conv2d in every pair of layouts (the stem's NCHW input,
 * 3x3, strided 1x1 downsample, 7x7, grouped, with bias) against the NCHW
 * op on oneDNN and on im2col, forward and every gradient, as its own node
 * (not through NCHW), also under bf16 and through NCHW where the library
 * is off or only the bias trains; batch norm in training and eval against
 * NCHW, its running statistics too; max pooling (the 2x2 kernels, ties,
 * others through NCHW); float64 gradient checks of the three ops (float64
 * runs through NCHW: the native kernels are the float32 comparisons');
 * modules' forward in the layout and its errors; a ResNet, whose
 * convolutions after the stem read the layout on the CPU (counted in its
 * autograd graph) and give what NCHW gives (ResNet-50 with its max-pool
 * stem and Bottlenecks: test_resnet's PyTorch parity); and a Sequential's
 * runs of convolutions, through batch norm, ReLU, 2x2 pools and residual
 * blocks. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/cpu/cpu.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

/* float32 copy of a float64 gradcheck input, as a leaf wanting grad */
static Tensor *f32(Tensor *t) {
    Tensor *c = tensor_to_dtype(t, DTYPE_FLOAT32), *leaf = c ? tensor_detach(c) : NULL;
    tensor_release(c);
    cr_assert(leaf, "%s", error_get());
    tensor_set_requires_grad(leaf, true);
    return leaf;
}

static double at4(const Tensor *t, int64_t n, int64_t c, int64_t h, int64_t w) {
    const float *d = tensor_data(t);
    return d[((n * t->shape[1] + c) * t->shape[2] + h) * t->shape[3] + w];
}

static double at5(const Tensor *t, int64_t n, int64_t c, int64_t h, int64_t w) {
    const float *d = tensor_data(t);
    int64_t blocks = t->shape[1], H = t->shape[2], W = t->shape[3];
    return d[(((n * blocks + c / 16) * H + h) * W + w) * 16 + c % 16];
}

/* ---- the conversions ---- */

Test(blocked_layout, conversions_place_each_channel_and_round_trip) {
    Tensor *x = gradcheck_uniform32(SHAPE(2, 32, 3, 5), 1);
    Tensor *b = tensor_to_blocked(x);
    cr_assert(b, "%s", error_get());
    int64_t want[5] = {2, 2, 3, 5, 16};
    cr_assert_eq(b->ndim, 5);
    for (int d = 0; d < 5; d++) cr_assert_eq(b->shape[d], want[d], "dim %d", d);
    for (int64_t n = 0; n < 2; n++)
        for (int64_t c = 0; c < 32; c++)
            for (int64_t h = 0; h < 3; h++)
                for (int64_t w = 0; w < 5; w++)
                    cr_assert_eq(at5(b, n, c, h, w), at4(x, n, c, h, w), "[%lld %lld %lld %lld]",
                                 (long long)n, (long long)c, (long long)h, (long long)w);
    Tensor *back = tensor_from_blocked(b);
    cr_assert(back, "%s", error_get());
    assert_tensor_close(back, x, 0, 0, "round trip");
    tensor_release(x), tensor_release(b), tensor_release(back);
}

static Tensor *to_blocked_fn(Tensor **in, void *ctx) {
    (void)ctx;
    return tensor_to_blocked(in[0]);
}

static Tensor *from_blocked_fn(Tensor **in, void *ctx) {
    (void)ctx;
    return tensor_from_blocked(in[0]);
}

Test(blocked_layout, conversions_gradcheck_float64) {
    Tensor *x = gradcheck_input(SHAPE(2, 16, 2, 3), -1, 1, 2);
    Tensor *b = gradcheck_input(SHAPE(1, 2, 3, 2, 16), -1, 1, 3);
    gradcheck("to_blocked", to_blocked_fn, NULL, 1, &x);
    gradcheck("from_blocked", from_blocked_fn, NULL, 1, &b);
    tensor_release(x), tensor_release(b);
}

Test(blocked_layout, conversions_refuse_other_shapes) {
    Tensor *x = gradcheck_uniform32(SHAPE(2, 24, 3, 3), 4);
    fixture_expect_error(tensor_to_blocked(x), "C a multiple of 16, got [2, 24, 3, 3]");
    fixture_expect_error(tensor_from_blocked(x),
                         "expected the blocked layout [N, C/16, H, W, 16], got [2, 24, 3, 3]");
    Tensor *odd = gradcheck_uniform32(SHAPE(2, 1, 3, 3, 8), 5);
    fixture_expect_error(tensor_from_blocked(odd), "got [2, 1, 3, 3, 8]");
    tensor_release(x), tensor_release(odd);
}

/* ---- Conv2d in the layout ---- */

typedef struct {
    const char *name;
    int64_t x[4], w[4];
    bool bias, x_blocked, out_blocked;
    Conv2dParams p;
} ConvCase;

static const ConvCase conv_cases[] = {
    {"stem 3x3: NCHW in, blocked out", {3, 3, 9, 8}, {32, 3, 3, 3}, false, false, true,
     {1, 1, 1, 1, 1, 1, 1}},
    {"3x3 blocked to blocked", {2, 32, 7, 9}, {32, 32, 3, 3}, false, true, true,
     {1, 1, 1, 1, 1, 1, 1}},
    {"downsample 1x1 stride 2", {2, 32, 7, 6}, {64, 32, 1, 1}, false, true, true,
     {2, 2, 0, 0, 1, 1, 1}},
    {"3x3 stride 2, bias", {2, 16, 9, 9}, {32, 16, 3, 3}, true, true, true,
     {2, 2, 1, 1, 1, 1, 1}},
    {"7x7 stride 2 stem", {2, 3, 20, 18}, {16, 3, 7, 7}, false, false, true,
     {2, 2, 3, 3, 1, 1, 1}},
    {"blocked in, NCHW out, 24 channels", {2, 16, 6, 5}, {24, 16, 3, 3}, true, true, false,
     {1, 1, 1, 1, 1, 1, 1}},
    {"grouped 2, dilated", {2, 32, 9, 8}, {32, 16, 3, 3}, true, true, true,
     {1, 1, 2, 2, 2, 2, 2}},
};

typedef struct {
    Tensor *x, *w, *b;
} ConvInputs;

static ConvInputs conv_inputs(const ConvCase *k, uint64_t seed) {
    ConvInputs in;
    Tensor *x = gradcheck_input(4, k->x, -1, 1, seed);
    Tensor *w = gradcheck_input(4, k->w, -0.5, 0.5, seed + 1);
    Tensor *b = gradcheck_input(SHAPE(k->w[0]), -0.2, 0.2, seed + 2);
    in.x = f32(x), in.w = f32(w), in.b = k->bias ? f32(b) : NULL;
    tensor_release(x), tensor_release(w), tensor_release(b);
    return in;
}

/* out (as NCHW) and the gradients of x, weight and bias of sum(out * up),
 * the op run in the case's layouts or all NCHW; `native`: the layouts'
 * run must be the convolution's own node, not one through NCHW */
static void conv_run(const ConvCase *k, bool layouts, bool native, Tensor **got) {
    ConvInputs in = conv_inputs(k, 10);
    Tensor *x = layouts && k->x_blocked ? tensor_to_blocked(in.x) : tensor_retain(in.x);
    Tensor *y = tensor_conv2d_layout(x, in.w, in.b, &k->p, layouts && k->out_blocked);
    cr_assert(y, "%s: %s", k->name, error_get());
    cr_assert_eq(y->ndim, layouts && k->out_blocked ? 5 : 4, "%s", k->name);
    if (layouts && native) {
        cr_assert_str_eq(y->grad_fn->name, "ConvolutionBackward", "%s", k->name);
        cr_assert_eq(y->grad_fn->inputs[0]->ndim, k->x_blocked ? 5 : 4, "%s", k->name);
    }
    Tensor *out = y->ndim == 5 ? tensor_from_blocked(y) : tensor_retain(y);
    Tensor *up = gradcheck_uniform32(out->ndim, out->shape, 99);
    cr_assert(tensor_backward_with(out, up) == 0, "%s: %s", k->name, error_get());
    got[0] = out, got[1] = tensor_retain(in.x->grad), got[2] = tensor_retain(in.w->grad);
    got[3] = in.b ? tensor_retain(in.b->grad) : NULL;
    tensor_release(up), tensor_release(x), tensor_release(y);
    tensor_release(in.x), tensor_release(in.w), tensor_release(in.b);
}

/* Every case in its layouts against NCHW; `library` for the NCHW run
 * (oneDNN, or im2col + GEMM). */
static void conv_layouts_equal_nchw(bool library, double rtol) {
    for (size_t c = 0; c < sizeof conv_cases / sizeof *conv_cases; c++) {
        const ConvCase *k = &conv_cases[c];
        Tensor *blocked[4], *plain[4];
        conv_run(k, true, true, blocked);
        cpu_conv_library(library);
        conv_run(k, false, false, plain);
        cpu_conv_library(true);
        const char *what[4] = {"out", "gx", "gweight", "gbias"};
        for (int i = 0; i < 4; i++) {
            char name[96];
            snprintf(name, sizeof name, "%s: %s", k->name, what[i]);
            cr_assert_eq(blocked[i] != NULL, i < 3 || k->bias, "%s", name);
            if (blocked[i]) assert_tensor_close(blocked[i], plain[i], rtol, 1e-5, name);
            tensor_release(blocked[i]), tensor_release(plain[i]);
        }
    }
}

Test(blocked_layout, conv_layouts_equal_nchw_on_onednn) {
    conv_layouts_equal_nchw(true, 1e-5);
}

Test(blocked_layout, conv_layouts_equal_im2col) {
    conv_layouts_equal_nchw(false, 1e-4);
}

/* the library off: the layout runs through NCHW, the same values */
Test(blocked_layout, conv_layouts_through_nchw_without_the_library) {
    cpu_conv_library(false);
    for (size_t c = 0; c < sizeof conv_cases / sizeof *conv_cases; c++) {
        const ConvCase *k = &conv_cases[c];
        Tensor *blocked[4], *plain[4];
        conv_run(k, true, false, blocked);
        conv_run(k, false, false, plain);
        for (int i = 0; i < 4; i++) {
            cr_assert_eq(blocked[i] != NULL, i < 3 || k->bias, "%s: gradient %d", k->name, i);
            if (blocked[i]) assert_tensor_close(blocked[i], plain[i], 0, 0, k->name);
            tensor_release(blocked[i]), tensor_release(plain[i]);
        }
    }
}

/* bf16 products: the blocked plans read bf16 as the NCHW ones do */
Test(blocked_layout, conv_layouts_under_bf16) {
    Device cpu = DEVICE_CPU_INIT;
    if (cpu_check_precision(cpu, PRECISION_BF16) != 0) {
        cr_skip_test("no bf16 on this CPU: %s", error_get());
        return;
    }
    cpu_set_precision(cpu, PRECISION_BF16);
    conv_layouts_equal_nchw(true, 1e-5);
}

static Tensor *conv_fn(Tensor **in, void *ctx) {
    const ConvCase *k = ctx;
    Tensor *x = k->x_blocked ? tensor_to_blocked(in[0]) : tensor_retain(in[0]);
    Tensor *y = tensor_conv2d_layout(x, in[1], in[2], &k->p, k->out_blocked);
    tensor_release(x);
    return y;
}

Test(blocked_layout, conv_gradcheck_float64) {
    const ConvCase *k = &conv_cases[3];
    Tensor *in[3] = {gradcheck_input(SHAPE(1, 16, 5, 4), -1, 1, 30),
                     gradcheck_input(SHAPE(32, 16, 3, 3), -1, 1, 31),
                     gradcheck_input(SHAPE(32), -1, 1, 32)};
    gradcheck("conv2d blocked", conv_fn, (void *)k, 3, in);
    for (int i = 0; i < 3; i++) tensor_release(in[i]);
}

/* a frozen weight with a trainable bias: the library computes the bias
 * gradient in its weight pass, so this case goes through NCHW */
Test(blocked_layout, conv_with_only_its_bias_trained) {
    const ConvCase *k = &conv_cases[3];
    Tensor *got[2][2];
    for (int layouts = 0; layouts < 2; layouts++) {
        ConvInputs in = conv_inputs(k, 20);
        tensor_set_requires_grad(in.w, false);
        Tensor *x = layouts ? tensor_to_blocked(in.x) : tensor_retain(in.x);
        Tensor *y = tensor_conv2d_layout(x, in.w, in.b, &k->p, layouts);
        Tensor *out = y && layouts ? tensor_from_blocked(y) : tensor_retain(y);
        cr_assert(out, "%s", error_get());
        Tensor *up = gradcheck_uniform32(out->ndim, out->shape, 21);
        cr_assert(tensor_backward_with(out, up) == 0, "%s", error_get());
        cr_assert_null(in.w->grad);
        got[layouts][0] = tensor_retain(in.x->grad), got[layouts][1] = tensor_retain(in.b->grad);
        Tensor *drop[7] = {in.x, in.w, in.b, x, y, out, up};
        for (int i = 0; i < 7; i++) tensor_release(drop[i]);
    }
    assert_tensor_close(got[1][0], got[0][0], 1e-5, 1e-5, "gx");
    assert_tensor_close(got[1][1], got[0][1], 1e-5, 1e-5, "gbias");
    for (int i = 0; i < 4; i++) tensor_release(got[i / 2][i % 2]);
}

/* the fused Conv2d, ReLU, MaxPool2d op given x in the layout: its ops one
 * by one read it */
Test(blocked_layout, fused_block_reads_a_blocked_input) {
    Tensor *x = gradcheck_uniform32(SHAPE(2, 16, 6, 6), 22);
    Tensor *w = gradcheck_uniform32(SHAPE(16, 16, 3, 3), 23);
    Tensor *b = tensor_to_blocked(x);
    Conv2dParams cp = {1, 1, 1, 1, 1, 1, 1};
    Pool2dParams pp = {2, 2, 2, 2, 0, 0};
    Tensor *fused = tensor_conv2d_relu_max_pool2d(b, w, NULL, &cp, &pp);
    Tensor *plain = tensor_conv2d_relu_max_pool2d(x, w, NULL, &cp, &pp);
    cr_assert(fused && plain, "%s", error_get());
    assert_tensor_close(fused, plain, 1e-5, 1e-6, "fused block on a blocked x");
    Tensor *drop[5] = {x, w, b, fused, plain};
    for (int i = 0; i < 5; i++) tensor_release(drop[i]);
}

Test(blocked_layout, conv_refuses_outputs_that_do_not_fill_blocks) {
    ConvInputs in = conv_inputs(&conv_cases[5], 40);
    fixture_expect_error(tensor_conv2d_layout(in.x, in.w, in.b, &conv_cases[5].p, true),
                         "24 output channels do not fill blocks of 16");
    tensor_release(in.x), tensor_release(in.w), tensor_release(in.b);
}

/* ---- batch norm in the layout ---- */

typedef struct {
    Tensor *y, *gx, *gw, *gb, *mean, *var;
} NormResult;

/* batch norm of x [3, 32, 5, 4] in either layout, training (batch
 * statistics, running ones updated) or eval */
static NormResult norm_run(bool blocked, bool training) {
    Tensor *x64 = gradcheck_input(SHAPE(3, 32, 5, 4), -2, 3, 50);
    Tensor *w64 = gradcheck_input(SHAPE(32), 0.5, 1.5, 51);
    Tensor *b64 = gradcheck_input(SHAPE(32), -1, 1, 52);
    Tensor *m64 = gradcheck_input(SHAPE(32), -0.5, 0.5, 53);
    Tensor *v64 = gradcheck_input(SHAPE(32), 0.5, 2, 54);
    Tensor *x = f32(x64), *w = f32(w64), *b = f32(b64);
    Tensor *mean = f32(m64), *var = f32(v64); /* buffers: no gradient */
    tensor_set_requires_grad(mean, false), tensor_set_requires_grad(var, false);
    Tensor *xin = blocked ? tensor_to_blocked(x) : tensor_retain(x);
    Tensor *y = (blocked ? tensor_batch_norm_blocked : tensor_batch_norm_sync)(
        xin, mean, var, w, b, training, 0.1, NULL, 1e-5, NULL);
    cr_assert(y, "%s", error_get());
    Tensor *out = blocked ? tensor_from_blocked(y) : tensor_retain(y);
    Tensor *up = gradcheck_uniform32(out->ndim, out->shape, 55);
    cr_assert(tensor_backward_with(out, up) == 0, "%s", error_get());
    NormResult r = {out, tensor_retain(x->grad), tensor_retain(w->grad), tensor_retain(b->grad),
                    mean, var};
    tensor_release(up), tensor_release(y), tensor_release(xin);
    tensor_release(x), tensor_release(w), tensor_release(b);
    Tensor *t64[5] = {x64, w64, b64, m64, v64};
    for (int i = 0; i < 5; i++) tensor_release(t64[i]);
    return r;
}

static void norm_layouts_agree(bool training) {
    NormResult blocked = norm_run(true, training), plain = norm_run(false, training);
    Tensor **a = &blocked.y, **b = &plain.y;
    const char *what[6] = {"y", "gx", "gweight", "gbias", "running_mean", "running_var"};
    for (int i = 0; i < 6; i++) {
        assert_tensor_close(a[i], b[i], 1e-5, 1e-6, what[i]);
        tensor_release(a[i]), tensor_release(b[i]);
    }
}

Test(blocked_layout, batch_norm_training_equals_nchw) {
    norm_layouts_agree(true);
}

Test(blocked_layout, batch_norm_eval_equals_nchw) {
    norm_layouts_agree(false);
}

static Tensor *norm_fn(Tensor **in, void *ctx) {
    (void)ctx;
    return tensor_batch_norm_blocked(in[0], NULL, NULL, in[1], in[2], true, 0.1, NULL, 1e-5,
                                     NULL);
}

Test(blocked_layout, batch_norm_gradcheck_float64) {
    Tensor *in[3] = {gradcheck_input(SHAPE(2, 2, 3, 2, 16), -1, 2, 60),
                     gradcheck_input(SHAPE(32), 0.5, 1.5, 61),
                     gradcheck_input(SHAPE(32), -1, 1, 62)};
    gradcheck("batch_norm blocked", norm_fn, NULL, 3, in);
    for (int i = 0; i < 3; i++) tensor_release(in[i]);
}

Test(blocked_layout, batch_norm_refuses_other_shapes) {
    Tensor *x = gradcheck_uniform32(SHAPE(2, 32, 3, 3), 63);
    fixture_expect_error(tensor_batch_norm_blocked(x, NULL, NULL, NULL, NULL, true, 0.1, NULL,
                                                   1e-5, NULL),
                         "batch_norm: expected the blocked layout");
    Tensor *b = tensor_to_blocked(x);
    Tensor *w = gradcheck_uniform32(SHAPE(16), 64);
    fixture_expect_error(tensor_batch_norm_blocked(b, NULL, NULL, w, NULL, true, 0.1, NULL,
                                                   1e-5, NULL),
                         "weight of shape [16] does not match the 32 channels");
    tensor_release(x), tensor_release(b), tensor_release(w);
}

/* ---- max pooling in the layout ---- */

/* out (NCHW) and the input gradient of sum(out * up) for x [3, 32, 9, 7]
 * with values on a coarse grid (ties in most windows), pooled in the
 * layout or in NCHW */
static void pool_run(bool blocked, const Pool2dParams *p, Tensor **got) {
    enum { N = 3 * 32 * 9 * 7 };
    static double v[N];
    Tensor *u = gradcheck_input(SHAPE(3, 32, 9, 7), -1, 1, 100);
    cr_assert_eq(tensor_to_doubles(u, v, N), 0);
    for (int i = 0; i < N; i++) v[i] = round(v[i] * 2) / 2; /* 5 levels */
    Tensor *x = tensor_from_doubles(v, SHAPE(3, 32, 9, 7), DTYPE_FLOAT32);
    tensor_set_requires_grad(x, true);
    Tensor *in = blocked ? tensor_to_blocked(x) : tensor_retain(x);
    Tensor *y = (blocked ? tensor_max_pool2d_blocked : tensor_max_pool2d)(
        in, p->kernel_h, p->kernel_w, p->stride_h, p->stride_w, p->pad_h, p->pad_w);
    cr_assert(y, "%s", error_get());
    Tensor *out = blocked ? tensor_from_blocked(y) : tensor_retain(y);
    Tensor *up = gradcheck_uniform32(out->ndim, out->shape, 101);
    cr_assert(tensor_backward_with(out, up) == 0, "%s", error_get());
    got[0] = out, got[1] = tensor_retain(x->grad);
    Tensor *drop[4] = {u, x, in, y};
    for (int i = 0; i < 4; i++) tensor_release(drop[i]);
    tensor_release(up);
}

static void pools_equal_nchw(void) {
    const Pool2dParams pools[2] = {{2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}};
    for (int k = 0; k < 2; k++) {
        Tensor *blocked[2], *plain[2];
        pool_run(true, &pools[k], blocked);
        pool_run(false, &pools[k], plain);
        /* the same maxima and the same tie chosen: exactly equal */
        assert_tensor_close(blocked[0], plain[0], 0, 0, k ? "3x3 out" : "2x2 out");
        assert_tensor_close(blocked[1], plain[1], 0, 0, k ? "3x3 gx" : "2x2 gx");
        for (int i = 0; i < 2; i++) tensor_release(blocked[i]), tensor_release(plain[i]);
    }
}

Test(blocked_layout, max_pool_equals_nchw_ties_included) {
    pools_equal_nchw();
}

/* the 2x2 kernels' portable versions, which AVX-512 never runs */
Test(blocked_layout, max_pool_equals_nchw_portable) {
    cpu_kernels_portable(true);
    pools_equal_nchw();
}

static Tensor *pool_fn(Tensor **in, void *ctx) {
    (void)ctx;
    return tensor_max_pool2d_blocked(in[0], 2, 2, 2, 2, 0, 0);
}

Test(blocked_layout, max_pool_gradcheck_float64) {
    Tensor *x = gradcheck_input(SHAPE(2, 1, 5, 4, 16), -1, 1, 102);
    gradcheck("max_pool2d blocked", pool_fn, NULL, 1, &x);
    tensor_release(x);
}

/* ---- modules and a ResNet ---- */

Test(blocked_layout, modules_that_do_not_take_it_say_so) {
    Rng rng;
    rng_init(&rng, 1);
    Module *layers[2] = {nn_conv2d(3, 16, SIZE2D(3), SIZE2D(1), SIZE2D(1), false, &rng),
                         nn_linear(16, 4, true, &rng)};
    Module *seq = nn_sequential(2, layers);
    cr_assert(seq, "%s", error_get());
    Tensor *x = gradcheck_uniform32(SHAPE(2, 3, 4, 4), 70);
    fixture_expect_error(module_forward_blocked(seq, tensor_retain(x)),
                         "model[1] Linear: Linear does not take the blocked layout");
    Module *bn = nn_batch_norm2d(32, 1e-5, 0.1, true, true);
    Tensor *x16 = gradcheck_uniform32(SHAPE(2, 16, 4, 4), 71), *b = tensor_to_blocked(x16);
    fixture_expect_error(module_forward_blocked(bn, b),
                         "num_features=32 but its input has 16 channels (input [2, 16, 4, 4])");
    tensor_release(x), tensor_release(x16), module_free(seq), module_free(bn);
}

static bool seen(AutogradNode **nodes, int n, AutogradNode *node) {
    for (int i = 0; i < n; i++)
        if (nodes[i] == node) return true;
    return false;
}

/* Convolutions in t's graph, and of them those reading the layout. */
static void count_convs(Tensor *t, AutogradNode **nodes, int *n, int *convs, int *blocked) {
    AutogradNode *node = t->grad_fn;
    if (!node || seen(nodes, *n, node)) return;
    cr_assert(*n < 4096);
    nodes[(*n)++] = node;
    if (strcmp(node->name, "ConvolutionBackward") == 0) {
        (*convs)++;
        *blocked += node->inputs[0]->ndim == 5;
    }
    for (int i = 0; i < node->n_inputs; i++) count_convs(node->inputs[i], nodes, n, convs, blocked);
}

/* logits of resnet18 (small input) on x, and its conv counts */
static Tensor *resnet_logits(Module *m, Tensor *x, int *convs, int *blocked) {
    Tensor *y = module_forward(m, x);
    cr_assert(y, "%s", error_get());
    static AutogradNode *nodes[4096];
    int n = 0;
    *convs = *blocked = 0;
    count_convs(y, nodes, &n, convs, blocked);
    return y;
}

Test(blocked_layout, resnet_runs_in_it_on_the_cpu) {
    Rng rng;
    rng_init(&rng, 3);
    Module *m = nn_resnet(18, 10, 3, true, &rng);
    cr_assert(m, "%s", error_get());
    Tensor *x = gradcheck_uniform32(SHAPE(4, 3, 16, 16), 80);
    int convs, blocked;
    Tensor *y = resnet_logits(m, x, &convs, &blocked);
    /* 1 stem + 16 in blocks + 3 downsamples; all but the stem read it */
    cr_assert_eq(convs, 20);
    cr_assert_eq(blocked, 19);
    cpu_conv_library(false); /* no oneDNN: NCHW throughout */
    Tensor *plain = resnet_logits(m, x, &convs, &blocked);
    cr_assert_eq(convs, 20);
    cr_assert_eq(blocked, 0);
    assert_tensor_close(y, plain, 1e-4, 1e-5, "logits");
    tensor_release(y), tensor_release(plain), tensor_release(x), module_free(m);
}

/* ---- a Sequential's runs of convolutions ---- */

/* conv(3 -> c1) [bn] relu conv(c1 -> 32) [bn] relu maxpool flatten linear,
 * over [4, 3, 8, 8] */
static Module *vgg(Rng *rng, int64_t c1, bool bn) {
    Module *c[10];
    int n = 0;
    c[n++] = nn_conv2d(3, c1, SIZE2D(3), SIZE2D(1), SIZE2D(1), !bn, rng);
    if (bn) c[n++] = nn_batch_norm2d(c1, 1e-5, 0.1, true, true);
    c[n++] = nn_relu();
    c[n++] = nn_conv2d(c1, 32, SIZE2D(3), SIZE2D(1), SIZE2D(1), !bn, rng);
    if (bn) c[n++] = nn_batch_norm2d(32, 1e-5, 0.1, true, true);
    c[n++] = nn_relu();
    c[n++] = nn_max_pool2d(SIZE2D(2), SIZE2D(0), SIZE2D(0));
    c[n++] = nn_flatten(1, -1);
    c[n++] = nn_linear(32 * 4 * 4, 10, true, rng);
    Module *m = nn_sequential(n, c);
    cr_assert(m, "%s", error_get());
    return m;
}

/* The model's output and parameter gradients (of sum(y * up)) run whole
 * and layer by layer agree; *blocked: the whole run's convolutions that
 * read the layout. */
static void assert_runs_as_its_layers(Module *m, Tensor *x, int *blocked) {
    int np;
    Tensor **params = module_parameters(m, &np);
    Tensor *got[2][16] = {{NULL}};
    cr_assert(np <= 15);
    for (int whole = 1; whole >= 0; whole--) {
        Tensor *h = tensor_retain(x);
        if (whole) {
            Tensor *y = module_forward(m, h);
            tensor_release(h);
            h = y;
        }
        for (int i = 0; !whole && i < m->n_children && h; i++) {
            Tensor *next = module_forward(m->children[i], h);
            tensor_release(h);
            h = next;
        }
        cr_assert(h, "%s", error_get());
        if (whole) {
            static AutogradNode *nodes[4096];
            int n = 0, convs = 0;
            *blocked = 0;
            count_convs(h, nodes, &n, &convs, blocked);
        }
        Tensor *up = gradcheck_uniform32(h->ndim, h->shape, 90);
        cr_assert(tensor_backward_with(h, up) == 0, "%s", error_get());
        got[whole][0] = h;
        for (int p = 0; p < np; p++) {
            got[whole][p + 1] = tensor_retain(params[p]->grad);
            tensor_release(params[p]->grad);
            params[p]->grad = NULL;
        }
        tensor_release(up);
    }
    for (int p = 0; p <= np; p++) {
        char what[32];
        snprintf(what, sizeof what, p ? "parameter %d's gradient" : "output", p - 1);
        assert_tensor_close(got[1][p], got[0][p], 1e-4, 1e-5, what);
        tensor_release(got[0][p]), tensor_release(got[1][p]);
    }
    free(params);
}

Test(blocked_layout, sequential_runs_convolutions_with_batch_norm_in_it) {
    Rng rng;
    rng_init(&rng, 9);
    Module *m = vgg(&rng, 16, true);
    Tensor *x = gradcheck_uniform32(SHAPE(4, 3, 8, 8), 91);
    int blocked;
    assert_runs_as_its_layers(m, x, &blocked);
    cr_assert_eq(blocked, 1, "the second convolution reads the layout");
    module_free(m);

    /* 24 channels do not fill blocks: layer by layer */
    m = vgg(&rng, 24, true);
    assert_runs_as_its_layers(m, x, &blocked);
    cr_assert_eq(blocked, 0);
    module_free(m);

    /* no batch norm: the second convolution starts a Conv2d, ReLU,
     * MaxPool2d row, which keeps its own layout */
    m = vgg(&rng, 16, false);
    assert_runs_as_its_layers(m, x, &blocked);
    cr_assert_eq(blocked, 0);
    module_free(m);
    tensor_release(x);
}

/* two VGG stages: the run goes on through the 2x2 max-pool */
Test(blocked_layout, sequential_runs_through_its_pools) {
    Rng rng;
    rng_init(&rng, 11);
    int64_t ch[5] = {3, 16, 16, 32, 32};
    Module *c[16];
    int n = 0;
    for (int i = 0; i < 4; i++) {
        c[n++] = nn_conv2d(ch[i], ch[i + 1], SIZE2D(3), SIZE2D(1), SIZE2D(1), false, &rng);
        c[n++] = nn_batch_norm2d(ch[i + 1], 1e-5, 0.1, true, true);
        c[n++] = nn_relu();
        if (i % 2) c[n++] = nn_max_pool2d(SIZE2D(2), SIZE2D(0), SIZE2D(0));
    }
    c[n++] = nn_flatten(1, -1);
    c[n++] = nn_linear(32 * 2 * 2, 10, true, &rng);
    Module *m = nn_sequential(n, c);
    cr_assert(m, "%s", error_get());
    Tensor *x = gradcheck_uniform32(SHAPE(4, 3, 9, 9), 93);
    int blocked;
    assert_runs_as_its_layers(m, x, &blocked);
    cr_assert_eq(blocked, 3, "all but the first convolution read the layout");
    tensor_release(x), module_free(m);
}

Test(blocked_layout, sequential_runs_residual_blocks_in_it) {
    Rng rng;
    rng_init(&rng, 10);
    Module *c[4] = {nn_conv2d(3, 16, SIZE2D(3), SIZE2D(1), SIZE2D(1), false, &rng),
                    nn_batch_norm2d(16, 1e-5, 0.1, true, true), nn_relu(),
                    nn_basic_block(16, 32, 2, &rng)};
    Module *m = nn_sequential(4, c);
    cr_assert(m, "%s", error_get());
    Tensor *x = gradcheck_uniform32(SHAPE(4, 3, 8, 8), 92);
    int blocked;
    assert_runs_as_its_layers(m, x, &blocked);
    cr_assert_eq(blocked, 3, "the block's two convolutions and its downsample");
    tensor_release(x), module_free(m);

    /* a run that starts with a block converts its input first */
    Module *d[3] = {nn_basic_block(16, 16, 1, &rng), nn_basic_block(16, 32, 2, &rng),
                    nn_relu()};
    m = nn_sequential(3, d);
    cr_assert(m, "%s", error_get());
    x = gradcheck_uniform32(SHAPE(4, 16, 6, 6), 94);
    assert_runs_as_its_layers(m, x, &blocked);
    cr_assert_eq(blocked, 5, "every convolution of both blocks");
    module_free(m);

    /* a block of 8 planes does not fill blocks of 16: layer by layer */
    Module *e[2] = {nn_conv2d(16, 16, SIZE2D(3), SIZE2D(1), SIZE2D(1), false, &rng),
                    nn_basic_block(16, 8, 1, &rng)};
    m = nn_sequential(2, e);
    cr_assert(m, "%s", error_get());
    assert_runs_as_its_layers(m, x, &blocked);
    cr_assert_eq(blocked, 0);
    tensor_release(x), module_free(m);
}

