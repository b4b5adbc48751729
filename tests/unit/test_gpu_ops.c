/* test_gpu_ops.c - every op of the CUDA backend (gpu/) against the CPU
 * backend, through the public ops, forward and backward, in float32 and
 * float64 (tests/support/parity.h; the relative error printed per op):
 * elementwise ops and activations, reductions, products, softmax and the
 * losses, pooling, dropout, batch and layer norm, causal attention, the
 * embedding, and a whole GPT. Convolutions are in test_gpu_conv.c.
 *
 * Every test skips with "no CUDA device: ..." when gpu_init() finds none or
 * the build has no CUDA (make GPU=0, no nvcc).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "tests/support/need_gpu.h"
#include "tests/support/parity.h"
#include "tests/support/pool_ties.h"
#ifdef TRAIND_CUDA
#include "gpu/kernels.h"
#endif

static Tensor *labels(Rng *r, int64_t n, int64_t classes) {
    double v[256];
    cr_assert(n <= 256);
    for (int64_t i = 0; i < n; i++) v[i] = (double)rng_below(r, (uint64_t)classes);
    Tensor *t = tensor_from_doubles(v, SHAPE(n), DTYPE_INT64);
    cr_assert(t);
    return t;
}

static Tensor *op_add(Tensor **in, const void *c) { (void)c; return tensor_add(in[0], in[1]); }
static Tensor *op_sub(Tensor **in, const void *c) { (void)c; return tensor_sub(in[0], in[1]); }
static Tensor *op_mul(Tensor **in, const void *c) { (void)c; return tensor_mul(in[0], in[1]); }
static Tensor *op_div(Tensor **in, const void *c) { (void)c; return tensor_div(in[0], in[1]); }
static Tensor *op_pow(Tensor **in, const void *c) { (void)c; return tensor_pow(in[0], in[1]); }
static Tensor *op_pow_s(Tensor **in, const void *c) {
    return tensor_pow_scalar(in[0], *(const double *)c);
}
static Tensor *op_add_s(Tensor **in, const void *c) {
    (void)c;
    return tensor_add_scalar(in[0], 0.7);
}
static Tensor *op_mul_s(Tensor **in, const void *c) {
    (void)c;
    return tensor_mul_scalar(in[0], -1.3);
}
static Tensor *op_neg(Tensor **in, const void *c) { (void)c; return tensor_neg(in[0]); }
static Tensor *op_exp(Tensor **in, const void *c) { (void)c; return tensor_exp(in[0]); }
static Tensor *op_log(Tensor **in, const void *c) { (void)c; return tensor_log(in[0]); }
static Tensor *op_sqrt(Tensor **in, const void *c) { (void)c; return tensor_sqrt(in[0]); }
static Tensor *op_abs(Tensor **in, const void *c) { (void)c; return tensor_abs(in[0]); }
static Tensor *op_relu(Tensor **in, const void *c) { (void)c; return tensor_relu(in[0]); }
static Tensor *op_sigmoid(Tensor **in, const void *c) { (void)c; return tensor_sigmoid(in[0]); }
static Tensor *op_tanh(Tensor **in, const void *c) { (void)c; return tensor_tanh(in[0]); }
static Tensor *op_clamp(Tensor **in, const void *c) {
    (void)c;
    return tensor_clamp(in[0], -0.3, 0.4);
}
static Tensor *op_gelu(Tensor **in, const void *c) { return tensor_gelu(in[0], *(const bool *)c); }
static Tensor *op_silu(Tensor **in, const void *c) { (void)c; return tensor_silu(in[0]); }
static Tensor *op_leaky_relu(Tensor **in, const void *c) {
    return tensor_leaky_relu(in[0], *(const double *)c);
}
static Tensor *op_sum(Tensor **in, const void *c) { (void)c; return tensor_sum(in[0]); }
static Tensor *op_mean(Tensor **in, const void *c) { (void)c; return tensor_mean(in[0]); }
static Tensor *op_sum_02(Tensor **in, const void *c) {
    (void)c;
    int dims[] = {0, 2};
    return tensor_sum_dims(in[0], 2, dims, false);
}
static Tensor *op_sum_1(Tensor **in, const void *c) {
    (void)c;
    int dims[] = {1};
    return tensor_sum_dims(in[0], 1, dims, true);
}
static Tensor *op_sum_01(Tensor **in, const void *c) {
    (void)c;
    int dims[] = {0, 1};
    return tensor_sum_dims(in[0], 2, dims, false);
}
static Tensor *op_sum_023(Tensor **in, const void *c) {
    (void)c;
    int dims[] = {0, 2, 3};
    return tensor_sum_dims(in[0], 3, dims, false);
}
static Tensor *op_sum_last(Tensor **in, const void *c) {
    (void)c;
    int dims[] = {1};
    return tensor_sum_dims(in[0], 1, dims, false);
}
static Tensor *op_mean_0(Tensor **in, const void *c) {
    (void)c;
    int dims[] = {0};
    return tensor_mean_dims(in[0], 1, dims, false);
}
static Tensor *op_argmax(Tensor **in, const void *c) { (void)c; return tensor_argmax_last(in[0]); }
static Tensor *op_matmul(Tensor **in, const void *c) {
    (void)c;
    return tensor_matmul(in[0], in[1]);
}
static Tensor *op_matmul_t(Tensor **in, const void *c) {
    (void)c; /* a^T @ b through a transposed view */
    Tensor *at = tensor_transpose(in[0], 0, 1);
    Tensor *y = tensor_matmul(at, in[1]);
    tensor_release(at);
    return y;
}
static Tensor *op_linear(Tensor **in, const void *c) {
    (void)c;
    return tensor_linear(in[0], in[1], in[2]);
}
static Tensor *op_softmax(Tensor **in, const void *c) { (void)c; return tensor_softmax(in[0], -1); }
static Tensor *op_log_softmax(Tensor **in, const void *c) {
    (void)c;
    return tensor_log_softmax(in[0], -1);
}
static Tensor *op_max_pool(Tensor **in, const void *c) {
    const int *p = c; /* kernel, stride, pad */
    return tensor_max_pool2d(in[0], p[0], p[0], p[1], p[1], p[2], p[2]);
}
static Tensor *op_avg_pool(Tensor **in, const void *c) {
    const int *p = c;
    return tensor_avg_pool2d(in[0], p[0], p[0], p[1], p[1], p[2], p[2]);
}
static Tensor *op_adaptive_avg_pool(Tensor **in, const void *c) {
    const int *p = c; /* out_h, out_w */
    return tensor_adaptive_avg_pool2d(in[0], p[0], p[1]);
}
static Tensor *op_dropout(Tensor **in, const void *c) {
    (void)c;
    return tensor_dropout(in[0], 0.3, true, 1234, 5);
}
static Tensor *op_batch_norm(Tensor **in, const void *c) {
    (void)c;
    return tensor_batch_norm(in[0], NULL, NULL, in[1], in[2], true, 0.1, 1e-5);
}
static Tensor *op_cross_entropy(Tensor **in, const void *c) {
    (void)c;
    return tensor_cross_entropy(in[0], in[1], REDUCTION_MEAN);
}
static Tensor *op_nll(Tensor **in, const void *c) {
    (void)c;
    Tensor *lp = tensor_log_softmax(in[0], -1);
    Tensor *y = tensor_nll_loss(lp, in[1], REDUCTION_SUM);
    tensor_release(lp);
    return y;
}
static Tensor *op_cross_entropy_with(Tensor **in, const void *c) {
    const ClassLossOptions *o = c;
    return tensor_cross_entropy_with(in[0], in[1], o->label_smoothing == 0.5 ? REDUCTION_SUM
                                                                           : REDUCTION_MEAN, o);
}
static Tensor *op_nll_with(Tensor **in, const void *c) {
    Tensor *lp = tensor_log_softmax(in[0], -1);
    Tensor *y = tensor_nll_loss_with(lp, in[1], REDUCTION_MEAN, c);
    tensor_release(lp);
    return y;
}
static Tensor *op_mse(Tensor **in, const void *c) {
    (void)c;
    return tensor_mse_loss(in[0], in[1], REDUCTION_MEAN);
}
static Tensor *op_l1(Tensor **in, const void *c) {
    (void)c;
    return tensor_l1_loss(in[0], in[1], REDUCTION_MEAN);
}
static Tensor *op_bce_logits(Tensor **in, const void *c) {
    (void)c;
    return tensor_bce_with_logits(in[0], in[1], REDUCTION_MEAN);
}

static int mk_bcast(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(3, 1, 4), dt, -2, 2);
    in[1] = parity_rand(r, SHAPE(1, 5, 4), dt, 0.5, 2);
    return 2;
}
static int mk_pow(Rng *r, DType dt, Tensor **in) { /* positive bases: no NaN to hide behind */
    in[0] = parity_rand(r, SHAPE(3, 1, 4), dt, 0.2, 2);
    in[1] = parity_rand(r, SHAPE(1, 5, 4), dt, -1.5, 2);
    return 2;
}
static int mk_row(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(6, 7), dt, -2, 2);
    in[1] = parity_rand(r, SHAPE(7), dt, 0.5, 2);
    return 2;
}
static int mk_same(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(5, 33), dt, 0.2, 2);
    in[1] = parity_rand(r, SHAPE(5, 33), dt, -1.5, 1.5);
    return 2;
}
static int mk_one(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(4, 77), dt, -3, 3);
    return 1;
}
static int mk_tails(Rng *r, DType dt, Tensor **in) { /* the activations' tails */
    in[0] = parity_rand(r, SHAPE(4, 77), dt, -30, 30);
    return 1;
}
static int mk_pos(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(4, 77), dt, 0.1, 3);
    return 1;
}
static int mk_3d(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(3, 4, 300), dt, -1, 1);
    return 1;
}
/* BatchNorm's per-channel sums: 8 channels of 16 x 33 x 33, each summed in
 * several chunks (blocks) whose partial sums a second kernel adds */
static int mk_nchw(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(16, 8, 33, 33), dt, -1, 1);
    return 1;
}
/* more rows than the column sums' 32 lanes, columns not a multiple of 32 */
static int mk_tall(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(1000, 70), dt, -4, 4);
    return 1;
}
static int mk_wide(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(9, 1000), dt, -4, 4);
    return 1;
}
static int mk_mm(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(37, 45), dt, -1, 1);
    in[1] = parity_rand(r, SHAPE(45, 29), dt, -1, 1);
    return 2;
}
static int mk_mm_t(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(45, 37), dt, -1, 1);
    in[1] = parity_rand(r, SHAPE(45, 29), dt, -1, 1);
    return 2;
}
static int mk_linear(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(64, 130), dt, -1, 1);
    in[1] = parity_rand(r, SHAPE(40, 130), dt, -0.1, 0.1);
    in[2] = parity_rand(r, SHAPE(40), dt, -0.1, 0.1);
    return 3;
}
static int mk_image(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(2, 3, 12, 11), dt, -1, 1);
    return 1;
}
static int mk_bn(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(8, 4, 5, 5), dt, -2, 3);
    in[1] = parity_rand(r, SHAPE(4), dt, 0.5, 1.5);
    in[2] = parity_rand(r, SHAPE(4), dt, -0.5, 0.5);
    return 3;
}
static int mk_cls(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(50, 10), dt, -3, 3);
    in[1] = labels(r, 50, 10);
    return 2;
}
/* Every third label the ignored -100; a vocabulary wider than a warp's
 * stride many times over; every label ignored (a NaN mean, zero gradient). */
static int mk_cls_ignored(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(50, 10), dt, -3, 3);
    in[1] = labels(r, 50, 10);
    int64_t *y = tensor_data(in[1]);
    for (int i = 0; i < 50; i += 3) y[i] = -100;
    return 2;
}
static int mk_cls_wide(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(40, 3001), dt, -3, 3);
    in[1] = labels(r, 40, 3001);
    ((int64_t *)tensor_data(in[1]))[7] = -100;
    return 2;
}
static int mk_cls_all_ignored(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(6, 10), dt, -3, 3);
    double v[6] = {-100, -100, -100, -100, -100, -100};
    in[1] = tensor_from_doubles(v, SHAPE(6), DTYPE_INT64);
    cr_assert(in[1]);
    return 2;
}
static int mk_reg(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(16, 3), dt, -2, 2);
    in[1] = parity_rand(r, SHAPE(16, 3), dt, -2, 2);
    return 2;
}
static int mk_bce(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(16, 3), dt, -4, 4);
    in[1] = parity_rand(r, SHAPE(16, 3), dt, 0, 1);
    return 2;
}

Test(gpu, elementwise_binary) {
    test_need_gpu();
    parity_both_dtypes("add broadcast", mk_bcast, op_add, NULL, 2e-7);
    parity_both_dtypes("sub row", mk_row, op_sub, NULL, 2e-7);
    parity_both_dtypes("mul broadcast", mk_bcast, op_mul, NULL, 2e-7);
    parity_both_dtypes("div", mk_same, op_div, NULL, 2e-7);
    parity_both_dtypes("pow tensor", mk_pow, op_pow, NULL, 1e-6);
}

Test(gpu, elementwise_unary) {
    test_need_gpu();
    static const double e2 = 2.0, e05 = 0.5, e17 = 1.7, em1 = -1.0;
    parity_both_dtypes("pow 2", mk_one, op_pow_s, &e2, 2e-7);
    parity_both_dtypes("pow 0.5", mk_pos, op_pow_s, &e05, 2e-7);
    parity_both_dtypes("pow 1.7", mk_pos, op_pow_s, &e17, 1e-6);
    parity_both_dtypes("pow -1", mk_pos, op_pow_s, &em1, 2e-7);
    parity_both_dtypes("add_scalar", mk_one, op_add_s, NULL, 2e-7);
    parity_both_dtypes("mul_scalar", mk_one, op_mul_s, NULL, 2e-7);
    parity_both_dtypes("neg", mk_one, op_neg, NULL, 0);
    parity_both_dtypes("exp", mk_one, op_exp, NULL, 1e-6);
    parity_both_dtypes("log", mk_pos, op_log, NULL, 1e-6);
    parity_both_dtypes("sqrt", mk_pos, op_sqrt, NULL, 2e-7);
    parity_both_dtypes("abs", mk_one, op_abs, NULL, 0);
    parity_both_dtypes("relu", mk_one, op_relu, NULL, 0);
    parity_both_dtypes("sigmoid", mk_one, op_sigmoid, NULL, 1e-6);
    parity_both_dtypes("tanh", mk_one, op_tanh, NULL, 1e-6);
    parity_both_dtypes("clamp", mk_one, op_clamp, NULL, 0);
}

Test(gpu, elementwise_activations) {
    test_need_gpu();
    static const bool exact = false, tanh_approx = true;
    static const double slope = 0.01, slope2 = 0.2;
    parity_both_dtypes("gelu", mk_one, op_gelu, &exact, 1e-6);
    parity_both_dtypes("gelu tails", mk_tails, op_gelu, &exact, 1e-6);
    parity_both_dtypes("gelu tanh", mk_one, op_gelu, &tanh_approx, 1e-6);
    parity_both_dtypes("gelu tanh tails", mk_tails, op_gelu, &tanh_approx, 1e-6);
    parity_both_dtypes("silu", mk_one, op_silu, NULL, 1e-6);
    parity_both_dtypes("silu tails", mk_tails, op_silu, NULL, 1e-6);
    parity_both_dtypes("leaky_relu", mk_one, op_leaky_relu, &slope, 0);
    parity_both_dtypes("leaky_relu 0.2", mk_one, op_leaky_relu, &slope2, 0);
}

Test(gpu, reductions) {
    test_need_gpu();
    parity_both_dtypes("sum all", mk_3d, op_sum, NULL, 1e-6);
    parity_both_dtypes("mean all", mk_3d, op_mean, NULL, 1e-6);
    parity_both_dtypes("sum dims (0, 2)", mk_3d, op_sum_02, NULL, 1e-6);
    parity_both_dtypes("sum dim 1 keepdim", mk_3d, op_sum_1, NULL, 1e-6);
    parity_both_dtypes("mean dim 0", mk_wide, op_mean_0, NULL, 1e-6);
    /* the column sums (reduced dims leading): merged leading dims, many rows */
    parity_both_dtypes("sum dims (0, 1)", mk_3d, op_sum_01, NULL, 1e-6);
    parity_both_dtypes("mean dim 0 [1000, 70]", mk_tall, op_mean_0, NULL, 1e-6);
    /* [outer, kept, inner] split over blocks: per channel, all, per row */
    parity_both_dtypes("sum dims (0, 2, 3) [16, 8, 33, 33]", mk_nchw, op_sum_023, NULL, 1e-6);
    parity_both_dtypes("sum all [1000, 70]", mk_tall, op_sum, NULL, 1e-6);
    parity_both_dtypes("sum dim 1 [1000, 70]", mk_tall, op_sum_last, NULL, 1e-6);
    parity_both_dtypes("argmax last", mk_wide, op_argmax, NULL, 0);
}

Test(gpu, matmul_linear) {
    test_need_gpu();
    parity_both_dtypes("matmul", mk_mm, op_matmul, NULL, 2e-6);
    parity_both_dtypes("matmul a^T", mk_mm_t, op_matmul_t, NULL, 2e-6);
    parity_both_dtypes("linear", mk_linear, op_linear, NULL, 2e-6);
}

Test(gpu, softmax_and_losses) {
    test_need_gpu();
    parity_both_dtypes("softmax", mk_wide, op_softmax, NULL, 1e-6);
    parity_both_dtypes("log_softmax", mk_wide, op_log_softmax, NULL, 1e-6);
    parity_both_dtypes("cross_entropy", mk_cls, op_cross_entropy, NULL, 1e-6);
    parity_both_dtypes("nll(log_softmax)", mk_cls, op_nll, NULL, 1e-6);
    /* label_smoothing 0.5 runs with reduction "sum", the others "mean" */
    const ClassLossOptions smooth = {-100, 0.1}, smooth_sum = {-100, 0.5}, plain = {-100, 0},
                           custom = {4, 0.2};
    parity_both_dtypes("cross_entropy eps 0.1 ignored", mk_cls_ignored, op_cross_entropy_with,
                       &smooth, 1e-6);
    parity_both_dtypes("cross_entropy eps 0.5 sum ignored", mk_cls_ignored, op_cross_entropy_with,
                       &smooth_sum, 1e-6);
    parity_both_dtypes("cross_entropy ignore_index 4", mk_cls, op_cross_entropy_with, &custom,
                       1e-6);
    parity_both_dtypes("cross_entropy eps 0.1 C=3001", mk_cls_wide, op_cross_entropy_with, &smooth,
                       1e-6);
    parity_both_dtypes("cross_entropy all ignored", mk_cls_all_ignored, op_cross_entropy_with,
                       &smooth, 1e-6);
    parity_both_dtypes("nll ignored", mk_cls_ignored, op_nll_with, &plain, 1e-6);
    parity_both_dtypes("mse", mk_reg, op_mse, NULL, 1e-6);
    parity_both_dtypes("l1", mk_reg, op_l1, NULL, 1e-6);
    parity_both_dtypes("bce_with_logits", mk_bce, op_bce_logits, NULL, 1e-6);
}

Test(gpu, pools) {
    test_need_gpu();
    static const int k2[] = {2, 2, 0}, k3s2p1[] = {3, 2, 1};
    parity_both_dtypes("max_pool2d 2x2", mk_image, op_max_pool, k2, 0);
    parity_both_dtypes("max_pool2d k3 s2 p1", mk_image, op_max_pool, k3s2p1, 0);
    parity_both_dtypes("avg_pool2d 2x2", mk_image, op_avg_pool, k2, 2e-7);
    parity_both_dtypes("avg_pool2d k3 s2 p1", mk_image, op_avg_pool, k3s2p1, 2e-7);
    /* 12x11 images: ResNet's global mean, overlapping bins, more bins than pixels */
    static const int to1[] = {1, 1}, to5x4[] = {5, 4}, to16x13[] = {16, 13};
    parity_both_dtypes("adaptive_avg_pool2d 1x1", mk_image, op_adaptive_avg_pool, to1, 2e-7);
    parity_both_dtypes("adaptive_avg_pool2d 5x4", mk_image, op_adaptive_avg_pool, to5x4, 2e-7);
    parity_both_dtypes("adaptive_avg_pool2d 16x13", mk_image, op_adaptive_avg_pool, to16x13, 2e-7);
}

/* Tied windows against PyTorch (tests/fixtures/pool_ties.json): the first
 * maximum in scan order, its index and the gradient routed to it. */
Test(gpu, max_pool_ties) {
    test_need_gpu();
    pool_ties_check_all(CUDA0);
}

Test(gpu, dropout_batch_norm) {
    test_need_gpu();
    parity_both_dtypes("dropout p=0.3", mk_one, op_dropout, NULL, 0);
    parity_both_dtypes("batch_norm train", mk_bn, op_batch_norm, NULL, 2e-6);
}

/* LayerNorm over the last ctx->nd dims of in[0], with in[1] (weight) and
 * in[2] (bias) as ctx says: rows of one warp each, and the column sums of
 * gweight / gbias over one and over many row chunks (300 rows: 5 chunks;
 * 20000 rows: the 256-chunk cap), columns not a multiple of 32. */
typedef struct {
    int nd;
    bool weight, bias;
    int64_t rows, cols; /* x [rows, cols] when nd == 1, else [4, 5, 6, 8] */
} LnCase;

static Tensor *op_layer_norm(Tensor **in, const void *c) {
    const LnCase *k = c;
    Tensor *x = in[0];
    return tensor_layer_norm(x, k->nd, x->shape + x->ndim - k->nd, k->weight ? in[1] : NULL,
                             k->bias ? in[k->weight ? 2 : 1] : NULL, 1e-5);
}

static void layer_norm_parity(const char *name, const LnCase *k, DType dt) {
    Rng r;
    rng_init(&r, 11);
    Tensor *in[3];
    int n = 0;
    int64_t pshape[2] = {6, 8};
    if (k->nd == 1) {
        in[n++] = parity_rand(&r, SHAPE(k->rows, k->cols), dt, -2, 3);
        pshape[0] = k->cols;
    } else {
        in[n++] = parity_rand(&r, SHAPE(4, 5, 6, 8), dt, -2, 3);
    }
    if (k->weight) in[n++] = parity_rand(&r, k->nd, pshape, dt, 0.5, 1.5);
    if (k->bias) in[n++] = parity_rand(&r, k->nd, pshape, dt, -0.5, 0.5);
    parity_op(name, n, in, op_layer_norm, k, dt, dt == DTYPE_FLOAT32 ? 1e-5 : 1e-11);
    parity_release_all(n, in);
}

Test(gpu, layer_norm) {
    test_need_gpu();
    static const struct {
        const char *name;
        LnCase k;
    } cases[] = {
        {"layer_norm [6, 33]", {1, true, true, 6, 33}},
        {"layer_norm [300, 129]", {1, true, true, 300, 129}},
        {"layer_norm [20000, 40]", {1, true, true, 20000, 40}},
        {"layer_norm [4, 5, 6, 8] over [6, 8]", {2, true, true, 0, 0}},
        {"layer_norm no affine [9, 1000]", {1, false, false, 9, 1000}},
        {"layer_norm weight only [70, 768]", {1, true, false, 70, 768}},
    };
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int d = 0; d < 2; d++) layer_norm_parity(cases[i].name, &cases[i].k, dts[d]);
}

/* Causal attention over [B, H, T, D] (in[0..2] = q, k, v): T of 1, T
 * not a multiple of the 16-row blocks or the 32-key tiles, several tiles
 * (T = 300), D of 1, 64, 100 and 128 (the widest, which needs more than
 * 48 KiB of shared memory in float64); without dropout and with 0.25, the
 * same mask drawn on both devices. */
static Tensor *op_attention(Tensor **in, const void *c) {
    const double *p = c; /* the dropout; its mask from stream 3 at 99 */
    return tensor_causal_attention_dropout(in[0], in[1], in[2], *p, 3, 99, 0, NULL);
}

/* T = 1: one key makes the softmax constant, so q's and k's gradients are
 * zero and both devices return rounding noise for them (the GPU's
 * rowsum(dO * O) and the CPU's rowsum(P * dP) round apart: 1e-17s of
 * opposite signs on one machine, zeros on another), which no relative
 * tolerance compares. There q and k are held fixed (moved to in[0]'s
 * device), the output and v's gradient compared. */
typedef struct {
    double p;
    Tensor *q, *k;
} AttentionQK;

static Tensor *op_attention_v(Tensor **in, const void *c) {
    const AttentionQK *a = c;
    Tensor *q = tensor_to_device(a->q, in[0]->device), *k = tensor_to_device(a->k, in[0]->device);
    Tensor *y = q && k ? tensor_causal_attention_dropout(q, k, in[0], a->p, 3, 99, 0, NULL) : NULL;
    tensor_release(q), tensor_release(k);
    return y;
}

static void attention_parity(int64_t b, int64_t h, int64_t t, int64_t d, double p, DType dt) {
    Rng r;
    rng_init(&r, (uint64_t)(t * 131 + d));
    Tensor *in[3];
    for (int i = 0; i < 3; i++) in[i] = parity_rand(&r, SHAPE(b, h, t, d), dt, -2, 2);
    char name[64];
    snprintf(name, sizeof name, "causal_attention [%lld, %lld, %lld, %lld] p %g", (long long)b,
             (long long)h, (long long)t, (long long)d, p);
    double tol = dt == DTYPE_FLOAT32 ? 2e-5 : 1e-11;
    AttentionQK qk = {p, in[0], in[1]};
    if (t == 1) parity_op(name, 1, &in[2], op_attention_v, &qk, dt, tol);
    else parity_op(name, 3, in, op_attention, &p, dt, tol);
    parity_release_all(3, in);
}

/* Each shape twice: float32 heads of 32 and 64 in register tiles
 * (kernels/attention_tiled.cu), then with the tiles off in the warp-per-
 * row kernels that take every other head. Not T = 300 on the simulated
 * device, where tests/sim's attention suites run several tiles. */
Test(gpu, causal_attention) {
    test_need_gpu();
    static const int64_t shapes[][4] = {{1, 1, 1, 8},  {2, 3, 17, 16},  {1, 2, 33, 64},
                                        {2, 2, 300, 64}, {1, 1, 45, 100}, {1, 2, 70, 128},
                                        {3, 1, 5, 1},  {2, 2, 129, 32}, {1, 3, 64, 64}};
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int tiles = 1; tiles >= 0; tiles--) {
#ifdef TRAIND_CUDA
        gpu_attention_tiles_set_enabled(tiles);
        uint64_t runs = gpu_attention_tiles_runs();
#endif
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
            if (test_gpu_simulated() && shapes[i][2] > 200) continue;
            for (int k = 0; k < 2; k++)
                for (int drop = 0; drop < 2; drop++)
                    attention_parity(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3],
                                     drop ? 0.25 : 0, dts[k]);
        }
#ifdef TRAIND_CUDA
        cr_assert(tiles ? gpu_attention_tiles_runs() > runs : gpu_attention_tiles_runs() == runs,
                  "the attention's tiles %s", tiles ? "never ran" : "ran while off");
#endif
    }
#ifdef TRAIND_CUDA
    gpu_attention_tiles_set_enabled(true);
#endif
}

/* Embedding (in[0] = weight [V, D], in[1] = int64 indices) with repeated
 * indices: the weight's gradient summed in position order on both
 * devices, so bit for bit the CPU's (atomics would not be). */
static Tensor *op_embedding(Tensor **in, const void *c) {
    (void)c;
    return tensor_embedding(in[0], in[1]);
}

Test(gpu, embedding) {
    test_need_gpu();
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int k = 0; k < 2; k++) {
        Rng r;
        rng_init(&r, 21);
        Tensor *in[2] = {parity_rand(&r, SHAPE(50, 37), dts[k], -1, 1), NULL};
        double idx[6 * 40];
        for (int i = 0; i < 6 * 40; i++) idx[i] = (double)rng_below(&r, 50);
        in[1] = tensor_from_doubles(idx, SHAPE(6, 40), DTYPE_INT64);
        cr_assert(in[1]);
        parity_op("embedding [50, 37] by [6, 40]", 2, in, op_embedding, NULL, dts[k], 0);
        /* a bad index: its row zeros, the error at the next read, then a
         * good lookup reads fine again */
        Tensor *bad = tensor_from_doubles((const double[]){3, 50}, SHAPE(2), DTYPE_INT64);
        Tensor *wg = parity_to_gpu(in[0]), *bg = parity_to_gpu(bad);
        Tensor *out = tensor_embedding(wg, bg);
        cr_assert(out, "%s", error_get());
        cr_assert_null(tensor_to_device(out, DEVICE_CPU_INIT));
        cr_assert(strstr(error_get(), "embedding: index 50 at position 1 is out of range for "
                                      "num_embeddings 50"),
                  "%s", error_get());
        Tensor *back = tensor_to_device(out, DEVICE_CPU_INIT);
        cr_assert(back, "read again after the report: %s", error_get());
        for (int64_t c = 0; c < 37; c++) cr_assert_eq(tensor_get(back, 37 + c), 0, "row 1 zeros");
        Tensor *ig = parity_to_gpu(in[1]), *good = tensor_embedding(wg, ig);
        Tensor *good_back = good ? tensor_to_device(good, DEVICE_CPU_INIT) : NULL;
        cr_assert(good_back, "a good lookup after the report: %s", error_get());
        tensor_release(bad), tensor_release(wg), tensor_release(bg), tensor_release(out);
        tensor_release(back), tensor_release(ig), tensor_release(good), tensor_release(good_back);
        parity_release_all(2, in);
    }
}

/* A class target out of range on the device: the loss is queued (the
 * target is not read back each step), and the read of it fails naming the
 * target, as torch's device assert; the CPU refuses it at once. */
Test(gpu, class_loss_target_out_of_range) {
    test_need_gpu();
    Rng r;
    rng_init(&r, 5);
    Tensor *x = parity_rand(&r, SHAPE(3, 10), DTYPE_FLOAT32, -1, 1);
    Tensor *y = tensor_from_doubles((const double[]){2, 10, -100}, SHAPE(3), DTYPE_INT64);
    cr_assert_null(tensor_cross_entropy(x, y, REDUCTION_MEAN));
    cr_assert(strstr(error_get(), "target 10 at index 1 is out of range for 10 classes"), "%s",
              error_get());
    Tensor *xg = parity_to_gpu(x), *yg = parity_to_gpu(y);
    Tensor *loss = tensor_cross_entropy(xg, yg, REDUCTION_MEAN);
    cr_assert(loss, "%s", error_get());
    cr_assert_null(tensor_to_device(loss, DEVICE_CPU_INIT));
    cr_assert(strstr(error_get(), "class loss: target 10 at index 1 is out of range for 10 "
                                  "classes"),
              "%s", error_get());
    Tensor *back = tensor_to_device(loss, DEVICE_CPU_INIT);
    cr_assert(back, "read again after the report: %s", error_get());
    tensor_release(x), tensor_release(y), tensor_release(xg), tensor_release(yg);
    tensor_release(loss), tensor_release(back);
}

/* A whole GPT (nanoGPT's, 2 layers, head size 64) from the same seed on
 * both devices: logits, the loss over tokens and every parameter's
 * gradient, the tied one included. */
Test(gpu, gpt_forward_backward) {
    test_need_gpu();
    Module *m[2];
    for (int i = 0; i < 2; i++) {
        Rng rng;
        rng_init(&rng, 3);
        m[i] = nn_gpt(97, 64, 2, 2, 128, 0, true, &rng);
        cr_assert(m[i], "%s", error_get());
    }
    cr_assert_eq(module_to(m[1], CUDA0), 0, "%s", error_get());
    Rng r;
    rng_init(&r, 4);
    double xv[3 * 50], yv[3 * 50];
    for (int i = 0; i < 150; i++)
        xv[i] = (double)rng_below(&r, 97), yv[i] = (double)rng_below(&r, 97);
    Tensor *x = tensor_from_doubles(xv, SHAPE(3, 50), DTYPE_INT64);
    Tensor *y = tensor_from_doubles(yv, SHAPE(150), DTYPE_INT64);
    Tensor *xs[2] = {x, parity_to_gpu(x)}, *ys[2] = {y, parity_to_gpu(y)}, *logits[2], *loss[2];
    for (int i = 0; i < 2; i++) {
        logits[i] = module_forward(m[i], xs[i]);
        cr_assert(logits[i], "%s", error_get());
        Tensor *flat = tensor_reshape(logits[i], SHAPE(150, 97));
        loss[i] = tensor_cross_entropy(flat, ys[i], REDUCTION_MEAN);
        cr_assert(loss[i] && tensor_backward(loss[i]) == 0, "%s", error_get());
        tensor_release(flat);
    }
    parity_check_close("gpt logits", DTYPE_FLOAT32, logits[1], logits[0], 1e-5);
    parity_check_close("gpt loss", DTYPE_FLOAT32, loss[1], loss[0], 1e-6);
    int n0, n1;
    Tensor **p0 = module_parameters(m[0], &n0), **p1 = module_parameters(m[1], &n1);
    cr_assert(p0 && p1 && n0 == n1);
    for (int i = 0; i < n0; i++) {
        char what[48];
        snprintf(what, sizeof what, "gpt grad of parameter %d", i);
        parity_check_close(what, DTYPE_FLOAT32, p1[i]->grad, p0[i]->grad, 1e-4);
    }
    free(p0), free(p1);
    for (int i = 0; i < 2; i++) {
        tensor_release(logits[i]), tensor_release(loss[i]);
        module_free(m[i]);
    }
    tensor_release(xs[1]), tensor_release(ys[1]), tensor_release(x), tensor_release(y);
}
