/* test_gpu.c - the CUDA backend (gpu/) against the CPU backend: every op
 * through the public ops, forward and backward, on tensors moved with
 * tensor_to_device (relative error printed per op), the raw kernels the
 * ops do not reach in every form (GEMM transposes and leading dimensions,
 * Philox offsets, copies and fills of all four dtypes, the fused
 * optimizer updates), the caching allocator's reuse, an out-of-memory that
 * fails cleanly and leaves the device usable, and the trainer's parity jobs
 * (tests/fixtures/jobs) run on cuda against the same jobs on the CPU
 * (the CPU path is itself checked against PyTorch).
 *
 * Every test skips with "no CUDA device: ..." when gpu_init() finds none or
 * the build has no CUDA (make GPU=0, no nvcc); then only the skips run.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/data/dataloader.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "core/optim/optimizer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/train.h"
#include "job/build.h"
#include "tests/support/batches.h"
#include "tests/support/need_gpu.h"
#include "tests/support/optim_one.h"
#include "tests/support/pool_ties.h"
#ifdef TRAIND_CUDA
#include "gpu/conv_cudnn.h"
#include "gpu/gpu.h"
#include "gpu/kernels.h"
#endif

static const Device CUDA0 = {DEVICE_CUDA, 0};


/* ---- helpers ---- */

static Tensor *rand_t(Rng *r, int ndim, const int64_t *shape, DType dt, double lo, double hi) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    cr_assert(v);
    for (int64_t i = 0; i < n; i++) v[i] = rng_uniform_range(r, lo, hi);
    Tensor *t = tensor_from_doubles(v, ndim, shape, dt);
    free(v);
    cr_assert(t, "%s", error_get());
    return t;
}

static Tensor *labels(Rng *r, int64_t n, int64_t classes) {
    double v[256];
    cr_assert(n <= 256);
    for (int64_t i = 0; i < n; i++) v[i] = (double)rng_below(r, (uint64_t)classes);
    Tensor *t = tensor_from_doubles(v, SHAPE(n), DTYPE_INT64);
    cr_assert(t);
    return t;
}

static Tensor *to_gpu(Tensor *t) {
    Tensor *g = tensor_to_device(t, CUDA0);
    cr_assert(g, "to cuda: %s", error_get());
    return g;
}

/* max |got - want| / max |want| over all elements (normwise); NaN in
 * the same places counts as equal. got may live on the GPU. */
static double rel_err(const Tensor *got, const Tensor *want) {
    int64_t n = tensor_numel(want);
    cr_assert_eq(tensor_numel(got), n);
    double *a = malloc((size_t)(n ? n : 1) * sizeof *a), *b = malloc((size_t)(n ? n : 1) * sizeof *b);
    cr_assert(a && b);
    cr_assert_eq(tensor_to_doubles(got, a, n), 0, "to host: %s", error_get());
    cr_assert_eq(tensor_to_doubles(want, b, n), 0, "%s", error_get());
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) {
            if (!(isnan(a[i]) && isnan(b[i]))) diff = INFINITY;
            continue;
        }
        double d = fabs(a[i] - b[i]);
        if (d > diff) diff = d;
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    free(a);
    free(b);
    return scale > 0 ? diff / scale : diff;
}

static void check_close(const char *what, DType dt, const Tensor *got, const Tensor *want,
                        double tol) {
    double e = rel_err(got, want);
    fprintf(stderr, "gpu %-36s %-7s rel err %.3g\n", what, dtype_name(dt), e);
    cr_assert(e <= tol, "%s (%s): relative error %g > %g", what, dtype_name(dt), e, tol);
}

/* ---- forward and backward of an op, CPU vs CUDA ---- */

typedef Tensor *(*OpFn)(Tensor **in, const void *ctx);

/* Runs f on the CPU inputs and on their GPU copies; float inputs require
 * grad. loss = sum(f(in) * w) with a random w, so every gradient entry
 * matters. Compares the output and every input's gradient. */
static void op_parity(const char *name, int nin, Tensor **cpu_in, OpFn f, const void *ctx,
                      DType dt, double tol) {
    Tensor *gpu_in[8];
    cr_assert(nin <= 8);
    for (int i = 0; i < nin; i++) gpu_in[i] = to_gpu(cpu_in[i]);
    for (int i = 0; i < nin; i++)
        if (dtype_is_float(cpu_in[i]->dtype)) {
            cr_assert_eq(tensor_set_requires_grad(cpu_in[i], true), 0);
            cr_assert_eq(tensor_set_requires_grad(gpu_in[i], true), 0);
        }
    Tensor *yc = f(cpu_in, ctx);
    cr_assert(yc, "%s on cpu: %s", name, error_get());
    Tensor *yg = f(gpu_in, ctx);
    cr_assert(yg, "%s on cuda: %s", name, error_get());
    cr_assert(device_equal(yg->device, CUDA0), "%s: output not on cuda", name);
    char what[96];
    snprintf(what, sizeof what, "%s forward", name);
    check_close(what, dt, yg, yc, tol);
    if (dtype_is_float(yc->dtype) && yc->requires_grad) {
        Rng r;
        rng_init(&r, 99);
        Tensor *w = rand_t(&r, yc->ndim, yc->shape, yc->dtype, -1, 1);
        Tensor *wg = to_gpu(w);
        Tensor *pc = tensor_mul(yc, w), *pg = tensor_mul(yg, wg);
        Tensor *lc = tensor_sum(pc), *lg = tensor_sum(pg);
        cr_assert(lc && lg, "%s", error_get());
        cr_assert_eq(tensor_backward(lc), 0, "%s backward on cpu: %s", name, error_get());
        cr_assert_eq(tensor_backward(lg), 0, "%s backward on cuda: %s", name, error_get());
        for (int i = 0; i < nin; i++) {
            if (!cpu_in[i]->grad) continue;
            cr_assert(gpu_in[i]->grad, "%s: no gradient for input %d on cuda", name, i);
            snprintf(what, sizeof what, "%s grad[%d]", name, i);
            check_close(what, dt, gpu_in[i]->grad, cpu_in[i]->grad, tol);
        }
        tensor_release(w);
        tensor_release(wg);
        tensor_release(pc);
        tensor_release(pg);
        tensor_release(lc);
        tensor_release(lg);
    }
    tensor_release(yc);
    tensor_release(yg);
    for (int i = 0; i < nin; i++) tensor_release(gpu_in[i]);
#ifdef TRAIND_CUDA
    cr_assert_null(gpu_last_error(), "%s: %s", name, gpu_last_error());
#endif
}

static Tensor *op_add(Tensor **in, const void *c) { (void)c; return tensor_add(in[0], in[1]); }
static Tensor *op_sub(Tensor **in, const void *c) { (void)c; return tensor_sub(in[0], in[1]); }
static Tensor *op_mul(Tensor **in, const void *c) { (void)c; return tensor_mul(in[0], in[1]); }
static Tensor *op_div(Tensor **in, const void *c) { (void)c; return tensor_div(in[0], in[1]); }
static Tensor *op_pow(Tensor **in, const void *c) { (void)c; return tensor_pow(in[0], in[1]); }
static Tensor *op_pow_s(Tensor **in, const void *c) {
    return tensor_pow_scalar(in[0], *(const double *)c);
}
static Tensor *op_add_s(Tensor **in, const void *c) { (void)c; return tensor_add_scalar(in[0], 0.7); }
static Tensor *op_mul_s(Tensor **in, const void *c) { (void)c; return tensor_mul_scalar(in[0], -1.3); }
static Tensor *op_neg(Tensor **in, const void *c) { (void)c; return tensor_neg(in[0]); }
static Tensor *op_exp(Tensor **in, const void *c) { (void)c; return tensor_exp(in[0]); }
static Tensor *op_log(Tensor **in, const void *c) { (void)c; return tensor_log(in[0]); }
static Tensor *op_sqrt(Tensor **in, const void *c) { (void)c; return tensor_sqrt(in[0]); }
static Tensor *op_abs(Tensor **in, const void *c) { (void)c; return tensor_abs(in[0]); }
static Tensor *op_relu(Tensor **in, const void *c) { (void)c; return tensor_relu(in[0]); }
static Tensor *op_sigmoid(Tensor **in, const void *c) { (void)c; return tensor_sigmoid(in[0]); }
static Tensor *op_tanh(Tensor **in, const void *c) { (void)c; return tensor_tanh(in[0]); }
static Tensor *op_clamp(Tensor **in, const void *c) { (void)c; return tensor_clamp(in[0], -0.3, 0.4); }
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
static Tensor *op_matmul(Tensor **in, const void *c) { (void)c; return tensor_matmul(in[0], in[1]); }
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
static Tensor *op_conv(Tensor **in, const void *c) {
    const int *p = c; /* stride, pad */
    return tensor_conv2d(in[0], in[1], in[2], p[0], p[0], p[1], p[1]);
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

static void release_all(int n, Tensor **t) {
    for (int i = 0; i < n; i++) tensor_release(t[i]);
}

/* One op in both dtypes: make(r, dt, in) builds fresh CPU inputs. */
typedef int (*MakeFn)(Rng *r, DType dt, Tensor **in);

static void both_dtypes(const char *name, MakeFn make, OpFn f, const void *ctx, double tol32) {
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int k = 0; k < 2; k++) {
        Rng r;
        rng_init(&r, 7 + (uint64_t)k);
        Tensor *in[8];
        int n = make(&r, dts[k], in);
        op_parity(name, n, in, f, ctx, dts[k], dts[k] == DTYPE_FLOAT32 ? tol32 : 1e-11);
        release_all(n, in);
    }
}

static int mk_bcast(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(3, 1, 4), dt, -2, 2);
    in[1] = rand_t(r, SHAPE(1, 5, 4), dt, 0.5, 2);
    return 2;
}
static int mk_pow(Rng *r, DType dt, Tensor **in) { /* positive bases: no NaN to hide behind */
    in[0] = rand_t(r, SHAPE(3, 1, 4), dt, 0.2, 2);
    in[1] = rand_t(r, SHAPE(1, 5, 4), dt, -1.5, 2);
    return 2;
}
static int mk_row(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(6, 7), dt, -2, 2);
    in[1] = rand_t(r, SHAPE(7), dt, 0.5, 2);
    return 2;
}
static int mk_same(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(5, 33), dt, 0.2, 2);
    in[1] = rand_t(r, SHAPE(5, 33), dt, -1.5, 1.5);
    return 2;
}
static int mk_one(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(4, 77), dt, -3, 3);
    return 1;
}
static int mk_tails(Rng *r, DType dt, Tensor **in) { /* the activations' tails */
    in[0] = rand_t(r, SHAPE(4, 77), dt, -30, 30);
    return 1;
}
static int mk_pos(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(4, 77), dt, 0.1, 3);
    return 1;
}
static int mk_3d(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(3, 4, 300), dt, -1, 1);
    return 1;
}
/* BatchNorm's per-channel sums: 8 channels of 16 x 33 x 33, each summed in
 * several chunks (blocks) whose partial sums a second kernel adds */
static int mk_nchw(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(16, 8, 33, 33), dt, -1, 1);
    return 1;
}
/* more rows than the column sums' 32 lanes, columns not a multiple of 32 */
static int mk_tall(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(1000, 70), dt, -4, 4);
    return 1;
}
static int mk_wide(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(9, 1000), dt, -4, 4);
    return 1;
}
static int mk_mm(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(37, 45), dt, -1, 1);
    in[1] = rand_t(r, SHAPE(45, 29), dt, -1, 1);
    return 2;
}
static int mk_mm_t(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(45, 37), dt, -1, 1);
    in[1] = rand_t(r, SHAPE(45, 29), dt, -1, 1);
    return 2;
}
static int mk_linear(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(64, 130), dt, -1, 1);
    in[1] = rand_t(r, SHAPE(40, 130), dt, -0.1, 0.1);
    in[2] = rand_t(r, SHAPE(40), dt, -0.1, 0.1);
    return 3;
}
static int mk_conv(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(3, 3, 11, 10), dt, -1, 1);
    in[1] = rand_t(r, SHAPE(5, 3, 3, 3), dt, -0.3, 0.3);
    in[2] = rand_t(r, SHAPE(5), dt, -0.1, 0.1);
    return 3;
}
static int mk_image(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(2, 3, 12, 11), dt, -1, 1);
    return 1;
}
static int mk_bn(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(8, 4, 5, 5), dt, -2, 3);
    in[1] = rand_t(r, SHAPE(4), dt, 0.5, 1.5);
    in[2] = rand_t(r, SHAPE(4), dt, -0.5, 0.5);
    return 3;
}
static int mk_cls(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(50, 10), dt, -3, 3);
    in[1] = labels(r, 50, 10);
    return 2;
}
/* Every third label the ignored -100; a vocabulary wider than a warp's
 * stride many times over; every label ignored (a NaN mean, zero gradient). */
static int mk_cls_ignored(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(50, 10), dt, -3, 3);
    in[1] = labels(r, 50, 10);
    int64_t *y = tensor_data(in[1]);
    for (int i = 0; i < 50; i += 3) y[i] = -100;
    return 2;
}
static int mk_cls_wide(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(40, 3001), dt, -3, 3);
    in[1] = labels(r, 40, 3001);
    ((int64_t *)tensor_data(in[1]))[7] = -100;
    return 2;
}
static int mk_cls_all_ignored(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(6, 10), dt, -3, 3);
    double v[6] = {-100, -100, -100, -100, -100, -100};
    in[1] = tensor_from_doubles(v, SHAPE(6), DTYPE_INT64);
    cr_assert(in[1]);
    return 2;
}
static int mk_reg(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(16, 3), dt, -2, 2);
    in[1] = rand_t(r, SHAPE(16, 3), dt, -2, 2);
    return 2;
}
static int mk_bce(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(16, 3), dt, -4, 4);
    in[1] = rand_t(r, SHAPE(16, 3), dt, 0, 1);
    return 2;
}

Test(gpu, elementwise_binary) {
    test_need_gpu();
    both_dtypes("add broadcast", mk_bcast, op_add, NULL, 2e-7);
    both_dtypes("sub row", mk_row, op_sub, NULL, 2e-7);
    both_dtypes("mul broadcast", mk_bcast, op_mul, NULL, 2e-7);
    both_dtypes("div", mk_same, op_div, NULL, 2e-7);
    both_dtypes("pow tensor", mk_pow, op_pow, NULL, 1e-6);
}

Test(gpu, elementwise_unary) {
    test_need_gpu();
    static const double e2 = 2.0, e05 = 0.5, e17 = 1.7, em1 = -1.0;
    both_dtypes("pow 2", mk_one, op_pow_s, &e2, 2e-7);
    both_dtypes("pow 0.5", mk_pos, op_pow_s, &e05, 2e-7);
    both_dtypes("pow 1.7", mk_pos, op_pow_s, &e17, 1e-6);
    both_dtypes("pow -1", mk_pos, op_pow_s, &em1, 2e-7);
    both_dtypes("add_scalar", mk_one, op_add_s, NULL, 2e-7);
    both_dtypes("mul_scalar", mk_one, op_mul_s, NULL, 2e-7);
    both_dtypes("neg", mk_one, op_neg, NULL, 0);
    both_dtypes("exp", mk_one, op_exp, NULL, 1e-6);
    both_dtypes("log", mk_pos, op_log, NULL, 1e-6);
    both_dtypes("sqrt", mk_pos, op_sqrt, NULL, 2e-7);
    both_dtypes("abs", mk_one, op_abs, NULL, 0);
    both_dtypes("relu", mk_one, op_relu, NULL, 0);
    both_dtypes("sigmoid", mk_one, op_sigmoid, NULL, 1e-6);
    both_dtypes("tanh", mk_one, op_tanh, NULL, 1e-6);
    both_dtypes("clamp", mk_one, op_clamp, NULL, 0);
}

Test(gpu, elementwise_activations) {
    test_need_gpu();
    static const bool exact = false, tanh_approx = true;
    static const double slope = 0.01, slope2 = 0.2;
    both_dtypes("gelu", mk_one, op_gelu, &exact, 1e-6);
    both_dtypes("gelu tails", mk_tails, op_gelu, &exact, 1e-6);
    both_dtypes("gelu tanh", mk_one, op_gelu, &tanh_approx, 1e-6);
    both_dtypes("gelu tanh tails", mk_tails, op_gelu, &tanh_approx, 1e-6);
    both_dtypes("silu", mk_one, op_silu, NULL, 1e-6);
    both_dtypes("silu tails", mk_tails, op_silu, NULL, 1e-6);
    both_dtypes("leaky_relu", mk_one, op_leaky_relu, &slope, 0);
    both_dtypes("leaky_relu 0.2", mk_one, op_leaky_relu, &slope2, 0);
}

Test(gpu, reductions) {
    test_need_gpu();
    both_dtypes("sum all", mk_3d, op_sum, NULL, 1e-6);
    both_dtypes("mean all", mk_3d, op_mean, NULL, 1e-6);
    both_dtypes("sum dims (0, 2)", mk_3d, op_sum_02, NULL, 1e-6);
    both_dtypes("sum dim 1 keepdim", mk_3d, op_sum_1, NULL, 1e-6);
    both_dtypes("mean dim 0", mk_wide, op_mean_0, NULL, 1e-6);
    /* the column sums (reduced dims leading): merged leading dims, many rows */
    both_dtypes("sum dims (0, 1)", mk_3d, op_sum_01, NULL, 1e-6);
    both_dtypes("mean dim 0 [1000, 70]", mk_tall, op_mean_0, NULL, 1e-6);
    /* [outer, kept, inner] split over blocks: per channel, all, per row */
    both_dtypes("sum dims (0, 2, 3) [16, 8, 33, 33]", mk_nchw, op_sum_023, NULL, 1e-6);
    both_dtypes("sum all [1000, 70]", mk_tall, op_sum, NULL, 1e-6);
    both_dtypes("sum dim 1 [1000, 70]", mk_tall, op_sum_last, NULL, 1e-6);
    both_dtypes("argmax last", mk_wide, op_argmax, NULL, 0);
}

Test(gpu, matmul_linear) {
    test_need_gpu();
    both_dtypes("matmul", mk_mm, op_matmul, NULL, 2e-6);
    both_dtypes("matmul a^T", mk_mm_t, op_matmul_t, NULL, 2e-6);
    both_dtypes("linear", mk_linear, op_linear, NULL, 2e-6);
}

Test(gpu, softmax_and_losses) {
    test_need_gpu();
    both_dtypes("softmax", mk_wide, op_softmax, NULL, 1e-6);
    both_dtypes("log_softmax", mk_wide, op_log_softmax, NULL, 1e-6);
    both_dtypes("cross_entropy", mk_cls, op_cross_entropy, NULL, 1e-6);
    both_dtypes("nll(log_softmax)", mk_cls, op_nll, NULL, 1e-6);
    /* label_smoothing 0.5 runs with reduction "sum", the others "mean" */
    const ClassLossOptions smooth = {-100, 0.1}, smooth_sum = {-100, 0.5}, plain = {-100, 0},
                           custom = {4, 0.2};
    both_dtypes("cross_entropy eps 0.1 ignored", mk_cls_ignored, op_cross_entropy_with, &smooth,
                1e-6);
    both_dtypes("cross_entropy eps 0.5 sum ignored", mk_cls_ignored, op_cross_entropy_with,
                &smooth_sum, 1e-6);
    both_dtypes("cross_entropy ignore_index 4", mk_cls, op_cross_entropy_with, &custom, 1e-6);
    both_dtypes("cross_entropy eps 0.1 C=3001", mk_cls_wide, op_cross_entropy_with, &smooth,
                1e-6);
    both_dtypes("cross_entropy all ignored", mk_cls_all_ignored, op_cross_entropy_with, &smooth,
                1e-6);
    both_dtypes("nll ignored", mk_cls_ignored, op_nll_with, &plain, 1e-6);
    both_dtypes("mse", mk_reg, op_mse, NULL, 1e-6);
    both_dtypes("l1", mk_reg, op_l1, NULL, 1e-6);
    both_dtypes("bce_with_logits", mk_bce, op_bce_logits, NULL, 1e-6);
}

Test(gpu, conv_pool) {
    test_need_gpu();
    test_gpu_cudnn(false); /* im2col + GEMM here; cuDNN below (cudnn_conv_against_cpu) */
    static const int s1p0[] = {1, 0}, s2p1[] = {2, 1};
    both_dtypes("conv2d s1 p0", mk_conv, op_conv, s1p0, 2e-6);
    both_dtypes("conv2d s2 p1", mk_conv, op_conv, s2p1, 2e-6);
    static const int k2[] = {2, 2, 0}, k3s2p1[] = {3, 2, 1};
    both_dtypes("max_pool2d 2x2", mk_image, op_max_pool, k2, 0);
    both_dtypes("max_pool2d k3 s2 p1", mk_image, op_max_pool, k3s2p1, 0);
    both_dtypes("avg_pool2d 2x2", mk_image, op_avg_pool, k2, 2e-7);
    both_dtypes("avg_pool2d k3 s2 p1", mk_image, op_avg_pool, k3s2p1, 2e-7);
    /* 12x11 images: ResNet's global mean, overlapping bins, more bins than pixels */
    static const int to1[] = {1, 1}, to5x4[] = {5, 4}, to16x13[] = {16, 13};
    both_dtypes("adaptive_avg_pool2d 1x1", mk_image, op_adaptive_avg_pool, to1, 2e-7);
    both_dtypes("adaptive_avg_pool2d 5x4", mk_image, op_adaptive_avg_pool, to5x4, 2e-7);
    both_dtypes("adaptive_avg_pool2d 16x13", mk_image, op_adaptive_avg_pool, to16x13, 2e-7);
}

/* Tied windows against PyTorch (tests/fixtures/pool_ties.json): the first
 * maximum in scan order, its index and the gradient routed to it. */
Test(gpu, max_pool_ties) {
    test_need_gpu();
    pool_ties_check_all(CUDA0);
}

Test(gpu, dropout_batch_norm) {
    test_need_gpu();
    both_dtypes("dropout p=0.3", mk_one, op_dropout, NULL, 0);
    both_dtypes("batch_norm train", mk_bn, op_batch_norm, NULL, 2e-6);
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
        in[n++] = rand_t(&r, SHAPE(k->rows, k->cols), dt, -2, 3);
        pshape[0] = k->cols;
    } else {
        in[n++] = rand_t(&r, SHAPE(4, 5, 6, 8), dt, -2, 3);
    }
    if (k->weight) in[n++] = rand_t(&r, k->nd, pshape, dt, 0.5, 1.5);
    if (k->bias) in[n++] = rand_t(&r, k->nd, pshape, dt, -0.5, 0.5);
    op_parity(name, n, in, op_layer_norm, k, dt, dt == DTYPE_FLOAT32 ? 1e-5 : 1e-11);
    release_all(n, in);
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
    for (int i = 0; i < 3; i++) in[i] = rand_t(&r, SHAPE(b, h, t, d), dt, -2, 2);
    char name[64];
    snprintf(name, sizeof name, "causal_attention [%lld, %lld, %lld, %lld] p %g", (long long)b,
             (long long)h, (long long)t, (long long)d, p);
    double tol = dt == DTYPE_FLOAT32 ? 2e-5 : 1e-11;
    AttentionQK qk = {p, in[0], in[1]};
    if (t == 1) op_parity(name, 1, &in[2], op_attention_v, &qk, dt, tol);
    else op_parity(name, 3, in, op_attention, &p, dt, tol);
    release_all(3, in);
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
        Tensor *in[2] = {rand_t(&r, SHAPE(50, 37), dts[k], -1, 1), NULL};
        double idx[6 * 40];
        for (int i = 0; i < 6 * 40; i++) idx[i] = (double)rng_below(&r, 50);
        in[1] = tensor_from_doubles(idx, SHAPE(6, 40), DTYPE_INT64);
        cr_assert(in[1]);
        op_parity("embedding [50, 37] by [6, 40]", 2, in, op_embedding, NULL, dts[k], 0);
        /* a bad index: its row zeros, the error at the next read, then a
         * good lookup reads fine again */
        Tensor *bad = tensor_from_doubles((const double[]){3, 50}, SHAPE(2), DTYPE_INT64);
        Tensor *wg = to_gpu(in[0]), *bg = to_gpu(bad);
        Tensor *out = tensor_embedding(wg, bg);
        cr_assert(out, "%s", error_get());
        cr_assert_null(tensor_to_device(out, DEVICE_CPU_INIT));
        cr_assert(strstr(error_get(), "embedding: index 50 at position 1 is out of range for "
                                      "num_embeddings 50"),
                  "%s", error_get());
        Tensor *back = tensor_to_device(out, DEVICE_CPU_INIT);
        cr_assert(back, "read again after the report: %s", error_get());
        for (int64_t c = 0; c < 37; c++) cr_assert_eq(tensor_get(back, 37 + c), 0, "row 1 zeros");
        Tensor *ig = to_gpu(in[1]), *good = tensor_embedding(wg, ig);
        Tensor *good_back = good ? tensor_to_device(good, DEVICE_CPU_INIT) : NULL;
        cr_assert(good_back, "a good lookup after the report: %s", error_get());
        tensor_release(bad), tensor_release(wg), tensor_release(bg), tensor_release(out);
        tensor_release(back), tensor_release(ig), tensor_release(good), tensor_release(good_back);
        release_all(2, in);
    }
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
    Tensor *xs[2] = {x, to_gpu(x)}, *ys[2] = {y, to_gpu(y)}, *logits[2], *loss[2];
    for (int i = 0; i < 2; i++) {
        logits[i] = module_forward(m[i], xs[i]);
        cr_assert(logits[i], "%s", error_get());
        Tensor *flat = tensor_reshape(logits[i], SHAPE(150, 97));
        loss[i] = tensor_cross_entropy(flat, ys[i], REDUCTION_MEAN);
        cr_assert(loss[i] && tensor_backward(loss[i]) == 0, "%s", error_get());
        tensor_release(flat);
    }
    check_close("gpt logits", DTYPE_FLOAT32, logits[1], logits[0], 1e-5);
    check_close("gpt loss", DTYPE_FLOAT32, loss[1], loss[0], 1e-6);
    int n0, n1;
    Tensor **p0 = module_parameters(m[0], &n0), **p1 = module_parameters(m[1], &n1);
    cr_assert(p0 && p1 && n0 == n1);
    for (int i = 0; i < n0; i++) {
        char what[48];
        snprintf(what, sizeof what, "gpt grad of parameter %d", i);
        check_close(what, DTYPE_FLOAT32, p1[i]->grad, p0[i]->grad, 1e-4);
    }
    free(p0), free(p1);
    for (int i = 0; i < 2; i++) {
        tensor_release(logits[i]), tensor_release(loss[i]);
        module_free(m[i]);
    }
    tensor_release(xs[1]), tensor_release(ys[1]), tensor_release(x), tensor_release(y);
}

/* ---- raw kernels ---- */

Test(gpu, philox_stream_matches_cpu) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    cr_assert(be, "%s", error_get());
    uint64_t offsets[] = {0, 3, 1ull << 33};
    int64_t sizes[] = {1001, 1, 2, 3, 5};
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int o = 0; o < 3; o++)
        for (int k = 0; k < 4 * 5; k++) { /* k % 4: dtype and base; k / 4: size */
            int64_t n = sizes[k / 4];
            /* k % 4 >= 2: the offset split between the argument and a base
             * in device memory, another remainder mod 4 each (a replay's) */
            uint64_t split = k % 4 >= 2 && offsets[o] ? offsets[o] / 2 + 1 : 0;
            Tensor *base = tensor_from_doubles((const double[]){(double)split}, SHAPE(1),
                                               DTYPE_INT64);
            Tensor *gbase = base ? tensor_to_device(base, CUDA0) : NULL;
            Tensor *g = tensor_empty(SHAPE(n), dts[k % 2], CUDA0);
            Tensor *c = tensor_empty(SHAPE(n), dts[k % 2], DEVICE_CPU_INIT);
            cr_assert(g && c && gbase, "%s", error_get());
            be->uniform(g, 0x123456789abcdefull, offsets[o] - split,
                        k % 4 >= 2 ? tensor_data(gbase) : NULL);
            cpu_backend.uniform(c, 0x123456789abcdefull, offsets[o], NULL);
            Tensor *h = tensor_to_device(g, DEVICE_CPU_INIT);
            cr_assert(h, "%s", error_get());
            for (int64_t i = 0; i < n; i++) {
                cr_assert_eq(tensor_get(h, i), tensor_get(c, i),
                             "offset %llu element %lld of %lld", (unsigned long long)offsets[o],
                             (long long)i, (long long)n);
                cr_assert_eq(tensor_get(h, i),
                             (double)philox_uniform(0x123456789abcdefull, offsets[o] + (uint64_t)i));
            }
            tensor_release(g), tensor_release(c), tensor_release(h);
            tensor_release(base), tensor_release(gbase);
        }
}

/* C = alpha op(A) op(B) + beta C on sub-matrices (ld > width), every
 * transpose combination, and k = 0. */
/* A job's "allow_tf32": the thread's float32 products on TF32 tensor cores
 * (10-bit mantissas: normwise error near 1e-4..1e-3), and full float32
 * again when it is turned off (near 1e-7). */
Test(gpu, allow_tf32_per_thread) {
    test_need_gpu();
    Rng r;
    rng_init(&r, 5);
    Tensor *a = rand_t(&r, SHAPE(256, 1024), DTYPE_FLOAT32, -1, 1);
    Tensor *b = rand_t(&r, SHAPE(1024, 256), DTYPE_FLOAT32, -1, 1);
    Tensor *ga = to_gpu(a), *gb = to_gpu(b);
    Tensor *want = tensor_matmul(a, b);
    const Backend *be = backend_for(CUDA0);
    cr_assert(be && be->allow_tf32);
    be->allow_tf32(CUDA0, true);
    Tensor *tf = tensor_matmul(ga, gb);
    be->allow_tf32(CUDA0, false);
    Tensor *full = tensor_matmul(ga, gb);
    cr_assert(want && tf && full, "%s", error_get());
    double e_tf = rel_err(tf, want), e_full = rel_err(full, want);
    fprintf(stderr, "gpu matmul allow_tf32            float32 rel err %.3g (off: %.3g)\n", e_tf,
            e_full);
    cr_assert(e_tf > 1e-5 && e_tf < 5e-3, "TF32 error %g", e_tf);
    cr_assert(e_full < 1e-5, "float32 error %g", e_full);
    Tensor *all[] = {a, b, ga, gb, want, tf, full};
    for (int i = 0; i < 7; i++) tensor_release(all[i]);
}

/* "precision": "bf16" on the GPU: float32 products (a matmul, a
 * convolution through im2col + GEMM) within bf16's rounding of the CPU's
 * float32, per thread; float64 untouched; float32 again when switched off. */
Test(gpu, bf16_precision_per_thread) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    cr_assert(be && be->check_precision && be->set_precision);
    cr_assert_eq(be->check_precision(CUDA0, PRECISION_BF16), 0, "%s", error_get());
    Rng r;
    rng_init(&r, 9);
    Tensor *a = rand_t(&r, SHAPE(256, 1024), DTYPE_FLOAT32, -1, 1);
    Tensor *b = rand_t(&r, SHAPE(1024, 256), DTYPE_FLOAT32, -1, 1);
    Tensor *x = rand_t(&r, SHAPE(4, 8, 12, 12), DTYPE_FLOAT32, -1, 1);
    Tensor *w = rand_t(&r, SHAPE(16, 8, 3, 3), DTYPE_FLOAT32, -1, 1);
    Tensor *a64 = rand_t(&r, SHAPE(64, 128), DTYPE_FLOAT64, -1, 1);
    Tensor *b64 = rand_t(&r, SHAPE(128, 32), DTYPE_FLOAT64, -1, 1);
    Tensor *ga = to_gpu(a), *gb = to_gpu(b), *gx = to_gpu(x), *gw = to_gpu(w);
    Tensor *ga64 = to_gpu(a64), *gb64 = to_gpu(b64);
    Tensor *want = tensor_matmul(a, b), *want_c = tensor_conv2d(x, w, NULL, 1, 1, 1, 1);
    Tensor *want64 = tensor_matmul(a64, b64);
    be->set_precision(CUDA0, PRECISION_BF16);
    Tensor *mm = tensor_matmul(ga, gb), *cv = tensor_conv2d(gx, gw, NULL, 1, 1, 1, 1);
    Tensor *mm64 = tensor_matmul(ga64, gb64);
    be->set_precision(CUDA0, PRECISION_FLOAT32);
    Tensor *full = tensor_matmul(ga, gb);
    cr_assert(want && want_c && want64 && mm && cv && mm64 && full, "%s", error_get());
    double e_mm = rel_err(mm, want), e_cv = rel_err(cv, want_c), e64 = rel_err(mm64, want64);
    double e_full = rel_err(full, want);
    fprintf(stderr, "gpu bf16 matmul %.3g conv2d %.3g (float64 %.3g, float32 after %.3g)\n", e_mm,
            e_cv, e64, e_full);
    /* bf16 keeps 8 bits: each product rounds by up to 2^-8 relative */
    cr_assert(e_mm > 1e-4 && e_mm < 2e-2, "bf16 matmul error %g", e_mm);
    cr_assert(e_cv > 1e-4 && e_cv < 2e-2, "bf16 conv2d error %g", e_cv);
    cr_assert(e64 < 1e-12, "float64 under bf16: error %g", e64);
    cr_assert(e_full < 1e-5, "float32 after bf16: error %g", e_full);
    Tensor *all[] = {a, b, x, w, a64, b64, ga, gb, gx, gw, ga64, gb64, want, want_c, want64,
                     mm, cv, mm64, full};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_release(all[i]);
}

/* Batch norm's channel passes (core/backend.h) on the GPU against the CPU:
 * [N, C, S] with S of 1 (BatchNorm1d), 16 (a 4x4 map, fewer than a warp)
 * and 33x33 (several chunks a channel); every variant of both ops. */
static void gpu_channel_case(int ndim, const int64_t *shape, DType dt) {
    Rng r;
    rng_init(&r, (uint64_t)(shape[0] * 31 + ndim));
    int64_t c = shape[1];
    Tensor *u = rand_t(&r, ndim, shape, dt, 99, 101), *v = rand_t(&r, ndim, shape, dt, -1, 1);
    Tensor *p[4];
    for (int k = 0; k < 4; k++) p[k] = rand_t(&r, SHAPE(c), dt, k == 0 ? 99 : -1, k == 0 ? 101 : 1);
    Tensor *gu = to_gpu(u), *gv = to_gpu(v), *gp[4];
    for (int k = 0; k < 4; k++) gp[k] = to_gpu(p[k]);
    const Backend *be = backend_for(CUDA0);
    char what[96];
    for (int variant = 0; variant < 4; variant++) {
        bool centred = variant & 1, with_v = variant & 2;
        Tensor *want = tensor_empty(SHAPE(c), dt, DEVICE_CPU_INIT);
        Tensor *got = tensor_empty(SHAPE(c), dt, CUDA0);
        cpu_backend.channel_sum_product(u, centred ? p[0] : NULL, with_v ? v : NULL,
                                        with_v ? p[1] : NULL, 1, want);
        be->channel_sum_product(gu, centred ? gp[0] : NULL, with_v ? gv : NULL,
                                with_v ? gp[1] : NULL, 1, got);
        snprintf(what, sizeof what, "channel sums %s variant %d S=%lld", ndim > 2 ? "map" : "rows",
                 variant, (long long)(tensor_numel(u) / shape[0] / c));
        check_close(what, dt, got, want, dt == DTYPE_FLOAT32 ? 1e-6 : 1e-12);
        tensor_release(want), tensor_release(got);
    }
    for (int with_v = 0; with_v < 2; with_v++) {
        Tensor *want = tensor_empty(ndim, shape, dt, DEVICE_CPU_INIT);
        Tensor *got = tensor_empty(ndim, shape, dt, CUDA0);
        cpu_backend.channel_affine(u, p[2], with_v ? v : NULL, with_v ? p[0] : NULL,
                                   with_v ? p[3] : NULL, with_v ? p[1] : NULL, 1, want);
        be->channel_affine(gu, gp[2], with_v ? gv : NULL, with_v ? gp[0] : NULL,
                           with_v ? gp[3] : NULL, with_v ? gp[1] : NULL, 1, got);
        snprintf(what, sizeof what, "channel affine%s", with_v ? " (v - m)" : "");
        check_close(what, dt, got, want, dt == DTYPE_FLOAT32 ? 1e-6 : 1e-13);
        tensor_release(want), tensor_release(got);
    }
    Tensor *all[] = {u, v, gu, gv};
    release_all(4, all);
    release_all(4, p);
    release_all(4, gp);
}

Test(gpu, batch_norm_channel_passes) {
    test_need_gpu();
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int k = 0; k < 2; k++) {
        gpu_channel_case(SHAPE(300, 7), dts[k]);
        gpu_channel_case(SHAPE(64, 48, 4, 4), dts[k]);
        gpu_channel_case(SHAPE(16, 8, 33, 33), dts[k]);
    }
}

/* float32 products through cuBLASLt against cuBLAS's sgemm and the CPU:
 * transposes, padded leading dimensions, operands 4 bytes off a 16-byte
 * boundary (another plan: cuBLASLt's kernels assume alignment), beta 0
 * and not, a shape of the GEMM job's size; each plan made once. */
/* cuBLASLt's counter and switch (0 and nothing without CUDA) */
static uint64_t lt_runs(void) {
#ifdef TRAIND_CUDA
    return gpu_cublaslt_runs();
#else
    return 0;
#endif
}
static uint64_t lt_plans(void) {
#ifdef TRAIND_CUDA
    return gpu_cublaslt_plans();
#else
    return 0;
#endif
}
static void lt_enable(bool on) {
#ifdef TRAIND_CUDA
    gpu_cublaslt_set_enabled(on);
#else
    (void)on;
#endif
}
static size_t lt_plan_limit(size_t n) {
#ifdef TRAIND_CUDA
    return gpu_cublaslt_plan_limit(n);
#else
    return n;
#endif
}

/* C = 0.75 op(A) op(B) + beta C with leading dimensions `pad` past the
 * rows and the operands `shift` floats past an allocation. Rows of 16
 * bytes at 16-byte addresses must run on cuBLASLt; others (4-byte
 * alignment) may be declined by its heuristic, and then run on cuBLAS:
 * their numbers are checked either way, and which ran is printed. */
static void lt_case(int ta, int tb, int64_t m, int64_t n, int64_t k, int64_t pad, int64_t shift,
                    double beta) {
    int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
    Rng r;
    rng_init(&r, (uint64_t)(m * 7 + n * 3 + k + ta * 2 + tb));
    Tensor *a = rand_t(&r, SHAPE(ar * lda + shift), DTYPE_FLOAT32, -1, 1);
    Tensor *b = rand_t(&r, SHAPE(br * ldb + shift), DTYPE_FLOAT32, -1, 1);
    Tensor *c = rand_t(&r, SHAPE(m * ldc + shift), DTYPE_FLOAT32, -1, 1);
    Tensor *ag = to_gpu(a), *bg = to_gpu(b), *lt = to_gpu(c), *sg = to_gpu(c);
    const float *ah = (const float *)tensor_data(a) + shift;
    const float *bh = (const float *)tensor_data(b) + shift;
    cpu_backend.gemm(DTYPE_FLOAT32, ta, tb, m, n, k, 0.75, ah, lda, bh, ldb, beta,
                     (float *)tensor_data(c) + shift, ldc);
    const float *ad = (const float *)tensor_data(ag) + shift;
    const float *bd = (const float *)tensor_data(bg) + shift;
    uint64_t runs = lt_runs();
    backend_for(CUDA0)->gemm(DTYPE_FLOAT32, ta, tb, m, n, k, 0.75, ad, lda, bd, ldb, beta,
                             (float *)tensor_data(lt) + shift, ldc);
    bool aligned = shift % 4 == 0 && lda % 4 == 0 && ldb % 4 == 0 && ldc % 4 == 0;
    uint64_t ran = lt_runs() - runs;
    cr_assert(ran == 1 || (!aligned && ran == 0), "an aligned product did not run on cuBLASLt");
    lt_enable(false);
    backend_for(CUDA0)->gemm(DTYPE_FLOAT32, ta, tb, m, n, k, 0.75, ad, lda, bd, ldb, beta,
                             (float *)tensor_data(sg) + shift, ldc);
    lt_enable(true);
    cr_assert_eq(lt_runs(), runs + ran, "TRAIND_CUBLASLT off still ran cuBLASLt");
    char what[96];
    snprintf(what, sizeof what, "%s %lldx%lldx%lld ta=%d tb=%d ld+%lld +%lld beta %g",
             ran ? "cublasLt" : "declined", (long long)m, (long long)n, (long long)k, ta, tb,
             (long long)pad, (long long)shift, beta);
    check_close(what, DTYPE_FLOAT32, lt, c, 2e-6);
    check_close("  ... cublasSgemm", DTYPE_FLOAT32, sg, c, 2e-6);
    Tensor *all[] = {a, b, c, ag, bg, lt, sg};
    release_all(7, all);
}

Test(gpu, cublaslt_against_cublas_and_cpu) {
    test_need_gpu();
    lt_enable(true);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            lt_case(ta, tb, 13, 17, 19, 3, 0, -0.5);
            lt_case(ta, tb, 13, 17, 19, 3, 1, 0.0);
            lt_case(ta, tb, 256, 96, 320, 3, 0, 0.0);
            lt_case(ta, tb, 256, 96, 320, 0, 0, -0.5);
            lt_case(ta, tb, 64, 32, 48, 4, 4, 0.0);
        }
    lt_case(0, 1, 512, 2048, 256, 3, 0, 0.0);
    lt_case(0, 1, 512, 2048, 256, 0, 0, 0.0); /* y = x W^T of a wide Linear */
    uint64_t plans = lt_plans();
    lt_case(0, 1, 512, 2048, 256, 0, 0, 0.0); /* the same plan again */
    cr_assert_eq(lt_plans(), plans, "the same product made another plan");
}

/* A product cuBLASLt's heuristic declines runs on cuBLAS, its numbers
 * right (the simulated device declines alignments under 16 bytes when
 * told to; a GPU's heuristic may decline 4-byte ones itself). */
Test(gpu, cublaslt_declined_runs_on_cublas) {
    test_need_gpu();
    if (!test_gpu_simulated()) cr_skip_test("the simulated device's: a GPU declines on its own");
    lt_enable(true);
    cr_assert_eq(setenv("TRAIND_SIMDEV_LT_MIN_ALIGN", "16", 1), 0);
    uint64_t runs = lt_runs();
    for (int t = 0; t < 2; t++) lt_case(t, !t, 13, 17, 19, 3, 1, 0.0);
    lt_case(0, 0, 31, 9, 7, 1, 2, 0.5);
    cr_assert_eq(lt_runs(), runs, "a declined product ran on cuBLASLt");
    lt_case(0, 1, 64, 32, 48, 0, 4, 0.0); /* 16-byte aligned: still cuBLASLt's */
    cr_assert_eq(lt_runs(), runs + 1);
    unsetenv("TRAIND_SIMDEV_LT_MIN_ALIGN");
}

/* Past the plan limit a new shape's plan serves its one call: the product
 * runs on cuBLASLt, its numbers right, and no plan is kept; a shape kept
 * before still runs there. */
Test(gpu, cublaslt_plans_past_the_limit_serve_one_call) {
    test_need_gpu();
    lt_enable(true);
    lt_case(0, 1, 40, 24, 32, 0, 0, 0.0);
    uint64_t plans = lt_plans(), runs = lt_runs();
    size_t limit = lt_plan_limit(0);
    lt_case(0, 1, 72, 24, 32, 0, 0, 0.0);  /* a new shape */
    lt_case(1, 1, 72, 24, 32, 0, 0, -0.5); /* another */
    cr_assert_eq(lt_plans(), plans, "a plan was kept past the limit");
    lt_case(0, 1, 40, 24, 32, 0, 0, 0.0); /* the kept one */
    cr_assert_eq(lt_runs(), runs + 3);
    lt_plan_limit(limit);
}

/* C = A^T B of 24x56 by 56x40 on the GPU, its numbers against the CPU's,
 * the simulated cuBLASLt told to fail its next call with status `fail`
 * (NULL: not); asserts how many products ran on cuBLASLt. */
static void lt_product(const char *fail, uint64_t want_runs) {
    Rng r;
    rng_init(&r, 5);
    Tensor *a = rand_t(&r, SHAPE(56, 24), DTYPE_FLOAT32, -1, 1);
    Tensor *b = rand_t(&r, SHAPE(56, 40), DTYPE_FLOAT32, -1, 1);
    Tensor *c = tensor_zeros(SHAPE(24, 40), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *ag = to_gpu(a), *bg = to_gpu(b), *cg = to_gpu(c);
    cpu_backend.gemm(DTYPE_FLOAT32, true, false, 24, 40, 56, 1.0, tensor_data(a), 24,
                     tensor_data(b), 40, 0.0, tensor_data(c), 40);
    if (fail) cr_assert_eq(setenv("TRAIND_SIMDEV_LT_FAIL", fail, 1), 0);
    uint64_t runs = lt_runs();
    backend_for(CUDA0)->gemm(DTYPE_FLOAT32, true, false, 24, 40, 56, 1.0, tensor_data(ag), 24,
                             tensor_data(bg), 40, 0.0, tensor_data(cg), 40);
    cr_assert_eq(lt_runs() - runs, want_runs, "told to fail with %s", fail ? fail : "nothing");
    check_close(fail ? fail : "cublasLt", DTYPE_FLOAT32, cg, c, 2e-6);
    Tensor *all[] = {a, b, c, ag, bg, cg};
    release_all(6, all);
}

/* A cuBLASLt run that fails for the moment (EXECUTION_FAILED, as after a
 * capture the driver invalidated) runs that product on cuBLAS and keeps
 * the shape's plan; one it refuses (NOT_SUPPORTED) declines the shape for
 * good. Either way the numbers are right. */
Test(gpu, cublaslt_failure_of_the_moment_keeps_the_plan) {
    test_need_gpu();
    if (!test_gpu_simulated()) cr_skip_test("the simulated device's: a GPU fails on its own");
    lt_enable(true);
    lt_product(NULL, 1); /* the plan made, run on cuBLASLt */
    lt_product("13", 0);
    lt_product(NULL, 1); /* the plan kept */
    lt_product("15", 0);
    lt_product(NULL, 0); /* declined for good */
}

Test(gpu, gemm_transposes_and_strides) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    cr_assert(be);
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int d = 0; d < 2; d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int kk = 0; kk < 2; kk++) {
                    DType dt = dts[d];
                    int64_t m = 13, n = 17, k = kk ? 0 : 19, pad = 3;
                    int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
                    int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
                    Rng r;
                    rng_init(&r, (uint64_t)(d * 8 + ta * 4 + tb * 2 + kk));
                    Tensor *a = rand_t(&r, SHAPE(ar ? ar : 1, lda), dt, -1, 1);
                    Tensor *b = rand_t(&r, SHAPE(br ? br : 1, ldb), dt, -1, 1);
                    Tensor *c = rand_t(&r, SHAPE(m, ldc), dt, -1, 1);
                    Tensor *ag = to_gpu(a), *bg = to_gpu(b), *cg = to_gpu(c);
                    cpu_backend.gemm(dt, ta, tb, m, n, k, 0.75, tensor_data(a), lda,
                                     tensor_data(b), ldb, -0.5, tensor_data(c), ldc);
                    be->gemm(dt, ta, tb, m, n, k, 0.75, tensor_data(ag), lda, tensor_data(bg), ldb,
                             -0.5, tensor_data(cg), ldc);
                    char what[64];
                    snprintf(what, sizeof what, "gemm ta=%d tb=%d k=%lld", ta, tb, (long long)k);
                    check_close(what, dt, cg, c, dt == DTYPE_FLOAT32 ? 2e-6 : 1e-13);
                    Tensor *all[] = {a, b, c, ag, bg, cg};
                    release_all(6, all);
                }
}

Test(gpu, copy_and_fill_all_dtypes) {
    test_need_gpu();
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_INT64, DTYPE_UINT8};
    double vals[24];
    for (int i = 0; i < 24; i++) vals[i] = (double)((i * 37) % 200);
    for (int s = 0; s < 4; s++) {
        Tensor *c = tensor_from_doubles(vals, SHAPE(2, 3, 4), dts[s]);
        Tensor *g = to_gpu(c);
        /* a strided copy on the device: permute then contiguous */
        int perm[] = {2, 0, 1};
        Tensor *pc = tensor_permute(c, perm), *pg = tensor_permute(g, perm);
        Tensor *cc = tensor_contiguous(pc), *cg = tensor_contiguous(pg);
        cr_assert(cc && cg, "%s", error_get());
        check_close("permute+contiguous", dts[s], cg, cc, 0);
        for (int t = 0; t < 4; t++) { /* dtype conversion on the device */
            Tensor *xc = tensor_to_dtype(pc, dts[t]), *xg = tensor_to_dtype(pg, dts[t]);
            cr_assert(xc && xg, "%s", error_get());
            check_close("strided to_dtype", dts[t], xg, xc, 0);
            tensor_release(xc);
            tensor_release(xg);
        }
        Tensor *fc = tensor_full(SHAPE(5, 7), 42.0, dts[s], DEVICE_CPU_INIT);
        Tensor *fg = tensor_full(SHAPE(5, 7), 42.0, dts[s], CUDA0);
        Tensor *zg = tensor_zeros(SHAPE(5, 7), dts[s], CUDA0);
        Tensor *zc = tensor_zeros(SHAPE(5, 7), dts[s], DEVICE_CPU_INIT);
        cr_assert(fc && fg && zg && zc, "%s", error_get());
        check_close("fill 42", dts[s], fg, fc, 0);
        check_close("zeros", dts[s], zg, zc, 0);
        Tensor *all[] = {c, g, pc, pg, cc, cg, fc, fg, zg, zc};
        release_all(10, all);
    }
    /* int64 beyond 2^53 keeps every bit through the device */
    int64_t big[2] = {(1ll << 62) + 1, -((1ll << 60) + 3)};
    Tensor *bc = tensor_from_buffer(big, SHAPE(2), DTYPE_INT64);
    Tensor *bg = to_gpu(bc);
    Tensor *bt = tensor_transpose(bg, 0, 0);
    Tensor *back = tensor_to_device(bg, DEVICE_CPU_INIT);
    cr_assert(back);
    cr_assert_eq(((int64_t *)tensor_data(back))[0], big[0]);
    cr_assert_eq(((int64_t *)tensor_data(back))[1], big[1]);
    Tensor *all[] = {bc, bg, bt, back};
    release_all(4, all);
}

/* The fused updates against the CPU's, three steps, bit for bit up to
 * sqrt/division rounding (both are IEEE on the GPU, so in practice equal). */
Test(gpu, fused_optimizer_updates) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int d = 0; d < 2; d++)
        for (int variant = 0; variant < 4; variant++) {
            DType dt = dts[d];
            Rng r;
            rng_init(&r, 5 + (uint64_t)variant);
            Tensor *pc = rand_t(&r, SHAPE(1000), dt, -1, 1), *pg = to_gpu(pc);
            Tensor *s1c = tensor_zeros(SHAPE(1000), dt, DEVICE_CPU_INIT), *s1g = to_gpu(s1c);
            Tensor *s2c = tensor_zeros(SHAPE(1000), dt, DEVICE_CPU_INIT), *s2g = to_gpu(s2c);
            Tensor *s3c = tensor_zeros(SHAPE(1000), dt, DEVICE_CPU_INIT), *s3g = to_gpu(s3c);
            for (int step = 1; step <= 3; step++) {
                Tensor *gc = rand_t(&r, SHAPE(1000), dt, -1, 1), *gg = to_gpu(gc);
                switch (variant) {
                case 0: /* SGD momentum + weight decay + dampening */
                    sgd_one(&cpu_backend, pc, gc, s1c, 0.1, 0.9, 0.1, 0.01, false, step == 1);
                    sgd_one(be, pg, gg, s1g, 0.1, 0.9, 0.1, 0.01, false, step == 1);
                    break;
                case 1: /* SGD nesterov */
                    sgd_one(&cpu_backend, pc, gc, s1c, 0.05, 0.8, 0, 0, true, step == 1);
                    sgd_one(be, pg, gg, s1g, 0.05, 0.8, 0, 0, true, step == 1);
                    break;
                case 2: /* Adam, coupled weight decay, amsgrad */
                    adam_one(&cpu_backend, pc, gc, s1c, s2c, s3c, 1e-3, 0.9, 0.999, 1e-8, 0.01,
                                            false, step);
                    adam_one(be, pg, gg, s1g, s2g, s3g, 1e-3, 0.9, 0.999, 1e-8, 0.01, false,
                                    step);
                    break;
                default: /* AdamW */
                    adam_one(&cpu_backend, pc, gc, s1c, s2c, NULL, 1e-3, 0.9, 0.999, 1e-8, 0.01,
                                            true, step);
                    adam_one(be, pg, gg, s1g, s2g, NULL, 1e-3, 0.9, 0.999, 1e-8, 0.01, true,
                                    step);
                    break;
                }
                tensor_release(gc);
                tensor_release(gg);
            }
            const char *names[] = {"sgd momentum", "sgd nesterov", "adam amsgrad", "adamw"};
            check_close(names[variant], dt, pg, pc, dt == DTYPE_FLOAT32 ? 1e-6 : 1e-14);
            check_close(names[variant], dt, s1g, s1c, dt == DTYPE_FLOAT32 ? 1e-6 : 1e-14);
            Tensor *all[] = {pc, pg, s1c, s1g, s2c, s2g, s3c, s3g};
            release_all(8, all);
        }
}

/* The optimizers through optimizer_step on cuda, where one launch updates
 * a list of up to 24 tensors: 30 parameters (two launches) of 1 to 200,000
 * elements (several chunks of one tensor), one of them without a grad at
 * the second step (skipped: for Adam its step count falls behind the
 * others'), against the same optimizer on the CPU. */
Test(gpu, optimizers_update_lists_of_parameters) {
    test_need_gpu();
    enum { NP = 30 };
    for (int variant = 0; variant < 3; variant++) {
        Rng r;
        rng_init(&r, 40 + (uint64_t)variant);
        Tensor *pc[NP], *pg[NP];
        for (int i = 0; i < NP; i++) {
            int64_t n = i == 7 ? 200000 : 1 + (i * 37) % 500;
            pc[i] = rand_t(&r, SHAPE(n), DTYPE_FLOAT32, -1, 1);
            pg[i] = to_gpu(pc[i]);
        }
        Optimizer *oc, *og;
        if (variant == 0) {
            SgdOptions o = {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01};
            oc = sgd_new(pc, NP, o);
            og = sgd_new(pg, NP, o);
        } else {
            AdamOptions o = adam_options_default();
            o.weight_decay = 0.01;
            o.amsgrad = variant == 1;
            oc = variant == 1 ? adam_new(pc, NP, o) : adamw_new(pc, NP, o);
            og = variant == 1 ? adam_new(pg, NP, o) : adamw_new(pg, NP, o);
        }
        cr_assert(oc && og, "%s", error_get());
        for (int step = 1; step <= 3; step++) {
            for (int i = 0; i < NP; i++) {
                tensor_zero_grad(pc[i]);
                tensor_zero_grad(pg[i]);
                if (step == 2 && i == 5) continue; /* no grad: skipped */
                pc[i]->grad = rand_t(&r, pc[i]->ndim, pc[i]->shape, DTYPE_FLOAT32, -1, 1);
                pg[i]->grad = to_gpu(pc[i]->grad);
            }
            cr_assert_eq(optimizer_step(oc), 0, "%s", error_get());
            cr_assert_eq(optimizer_step(og), 0, "%s", error_get());
        }
        double worst = 0;
        for (int i = 0; i < NP; i++) {
            double e = rel_err(pg[i], pc[i]);
            worst = e > worst ? e : worst;
        }
        fprintf(stderr, "gpu %-36s %-7s rel err %.3g\n",
                variant == 0 ? "SGD over 30 parameters" : variant == 1 ? "Adam amsgrad over 30"
                                                                       : "AdamW over 30",
                "float32", worst);
        cr_assert(worst <= 1e-6, "variant %d: relative error %g", variant, worst);
        optimizer_free(oc);
        optimizer_free(og);
        for (int i = 0; i < NP; i++) {
            tensor_release(pc[i]);
            tensor_release(pg[i]);
        }
    }
}

/* ---- memory ---- */

/* The DataLoader on cuda: each batch is uploaded by the prefetch thread on
 * the copy stream (tensor_upload), beside the kernels the trainer queued.
 * The batches are the CPU loader's. And a batch released while kernels that
 * read it are still queued gives its block back to the allocator, which may
 * hand it to the next upload at once: the upload must wait for those
 * kernels, or their results change. */
Test(gpu, dataloader_uploads_beside_queued_kernels) {
    test_need_gpu();
    enum { B = 64, NB = 24, REPS = 8 };
    /* each matmul ~50 us on an H200; the simulated device's take 4096x less */
    const int64_t F = test_gpu_simulated() ? 64 : 4096;
    Rng r;
    rng_init(&r, 11);
    Tensor *x = rand_t(&r, SHAPE(B * NB, F), DTYPE_FLOAT32, -1, 1);
    Tensor *y = tensor_empty(SHAPE(B * NB), DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert(y);
    for (int64_t i = 0; i < B * NB; i++) ((int64_t *)tensor_data(y))[i] = i % 10;
    Dataset *ds = dataset_from_tensors(x, y, "uploads");
    cr_assert(ds, "%s", error_get());
    DataLoaderOptions co = {.batch_size = B, .shuffle = true, .seed = 3};
    DataLoaderOptions go = co;
    go.prefetch = 2;
    go.device = CUDA0;
    DataLoader *cpu = dataloader_new(ds, &co, NULL), *gpu = dataloader_new(ds, &go, NULL);
    cr_assert(cpu && gpu, "%s", error_get());
    cr_assert_eq(assert_same_batches(cpu, gpu, 2, CUDA0), 2 * NB);

    Tensor *w = rand_t(&r, SHAPE(F, F), DTYPE_FLOAT32, -1, 1), *wg = to_gpu(w);
    Tensor *acc[NB];
    cr_assert_eq(dataloader_begin_epoch(gpu, 2), 0);
    for (int k = 0; k < NB; k++) {
        Batch b;
        cr_assert_eq(dataloader_next(gpu, &b), 1, "%s", error_get());
        acc[k] = NULL;
        for (int rep = 0; rep < REPS; rep++) { /* queued, not waited for */
            Tensor *p = tensor_matmul(b.inputs, wg);
            Tensor *sum = acc[k] ? tensor_add(acc[k], p) : tensor_retain(p);
            cr_assert(p && sum, "%s", error_get());
            tensor_release(p);
            tensor_release(acc[k]);
            acc[k] = sum;
        }
        batch_release(&b);
    }
    cr_assert_eq(dataloader_begin_epoch(cpu, 2), 0);
    for (int k = 0; k < NB; k++) {
        Batch a;
        cr_assert_eq(dataloader_next(cpu, &a), 1);
        Tensor *p = tensor_matmul(a.inputs, w);
        Tensor *want = tensor_mul_scalar(p, REPS);
        check_close("upload beside queued matmuls", DTYPE_FLOAT32, acc[k], want, 1e-5);
        tensor_release(p);
        tensor_release(want);
        tensor_release(acc[k]);
        batch_release(&a);
    }
    tensor_release(w);
    tensor_release(wg);
    dataloader_free(gpu);
    dataloader_free(cpu);
    dataset_free(ds);
}


Test(gpu, allocator_reuses_freed_blocks) {
    test_need_gpu();
#ifdef TRAIND_CUDA
    Tensor *a = tensor_empty(SHAPE(1000, 1000), DTYPE_FLOAT32, CUDA0);
    cr_assert(a, "%s", error_get());
    void *first = tensor_data(a);
    size_t in_use0, cached0, peak0;
    uint64_t mallocs0;
    gpu_allocator_stats(0, &in_use0, &cached0, &peak0, &mallocs0);
    tensor_release(a);
    size_t in_use1, cached1;
    gpu_allocator_stats(0, &in_use1, &cached1, NULL, NULL);
    cr_assert_lt(in_use1, in_use0);
    cr_assert_gt(cached1, cached0);
    Tensor *b = tensor_empty(SHAPE(1000, 1000), DTYPE_FLOAT32, CUDA0);
    cr_assert(b, "%s", error_get());
    uint64_t mallocs1;
    gpu_allocator_stats(0, NULL, NULL, NULL, &mallocs1);
    cr_assert_eq(mallocs1, mallocs0, "a block of the same size was not reused");
    cr_assert_eq(tensor_data(b), first);
    /* a training-like loop: no cudaMalloc after the first iteration */
    for (int it = 0; it < 5; it++) {
        Tensor *x = tensor_full(SHAPE(256, 300), 1.0, DTYPE_FLOAT32, CUDA0);
        Tensor *y = tensor_mul_scalar(x, 2.0);
        Tensor *s = tensor_sum(y);
        cr_assert(s, "%s", error_get());
        cr_assert_float_eq(tensor_item(s), 2.0 * 256 * 300, 1e-3);
        if (it == 0) gpu_allocator_stats(0, NULL, NULL, NULL, &mallocs0);
        tensor_release(x);
        tensor_release(y);
        tensor_release(s);
    }
    gpu_allocator_stats(0, NULL, NULL, NULL, &mallocs1);
    cr_assert_eq(mallocs1, mallocs0, "cudaMalloc in the loop after warm-up");
    tensor_release(b);
    gpu_allocator_trim(0);
    gpu_allocator_stats(0, NULL, &cached1, NULL, NULL);
    cr_assert_eq(cached1, 0);
#endif
}

/* tensor_empty_pinned on cuda: page-locked host memory from gpu/pinned.cu,
 * uploaded exactly, and cached by size for the next batch. */
Test(gpu, pinned_host_buffers) {
    test_need_gpu();
#ifdef TRAIND_CUDA
    size_t in0, cached0;
    gpu_pinned_stats(&in0, &cached0);
    Tensor *t = tensor_empty_pinned(SHAPE(1024, 1024), DTYPE_FLOAT32, CUDA0);
    cr_assert(t, "%s", error_get());
    cr_assert(tensor_is_pinned(t) && t->device.type == DEVICE_CPU);
    size_t in1;
    gpu_pinned_stats(&in1, NULL);
    cr_assert_geq(in1 - in0, (size_t)4 << 20);
    float *p = tensor_data(t);
    for (int i = 0; i < 1024 * 1024; i++) p[i] = (float)i * 0.25f - 7.0f;
    Tensor *g = tensor_upload(t, CUDA0);
    cr_assert(g, "%s", error_get());
    check_close("upload from pinned memory", DTYPE_FLOAT32, g, t, 0);
    void *first = tensor_data(t);
    tensor_release(t);
    size_t cached1;
    gpu_pinned_stats(NULL, &cached1);
    cr_assert_gt(cached1, cached0, "a freed buffer is kept");
    Tensor *again = tensor_empty_pinned(SHAPE(1024, 1024), DTYPE_FLOAT32, CUDA0);
    cr_assert(again && tensor_data(again) == first, "the kept buffer is taken back");
    tensor_release(again);
    tensor_release(g);
#endif
}

Test(gpu, out_of_memory_fails_cleanly) {
    test_need_gpu();
#ifdef TRAIND_CUDA
    char name[256];
    size_t total = 0, free_ = 0;
    cr_assert_eq(gpu_device_info(0, name, sizeof name, &total, &free_), 0, "%s", error_get());
    fprintf(stderr, "gpu device 0: %s, %zu MiB (%zu MiB free)\n", name, total >> 20, free_ >> 20);
    int64_t too_many = (int64_t)(total / sizeof(float)) * 2;
    Tensor *huge = tensor_empty(SHAPE(too_many), DTYPE_FLOAT32, CUDA0);
    cr_assert_null(huge);
    cr_assert(strstr(error_get(), "out of memory") && strstr(error_get(), "cuda:0"),
              "unclear error: %s", error_get());
    cr_assert_null(gpu_last_error(), "an OOM must not poison later ops: %s", gpu_last_error());
    /* the device still works */
    Tensor *a = tensor_full(SHAPE(3), 2.0, DTYPE_FLOAT32, CUDA0);
    Tensor *b = tensor_add_scalar(a, 1.0);
    Tensor *s = tensor_sum(b);
    cr_assert(s, "%s", error_get());
    cr_assert_float_eq(tensor_item(s), 9.0, 1e-6);
    Tensor *all[] = {a, b, s};
    release_all(3, all);
#endif
}

Test(gpu, device_info_and_errors) {
    test_need_gpu();
    Device bad = {DEVICE_CUDA, 63};
    if (backend_cuda_device_count() < 64) {
        cr_assert_null(tensor_empty(SHAPE(2), DTYPE_FLOAT32, bad));
        cr_assert(strstr(error_get(), "cuda:63"), "%s", error_get());
    }
#ifdef TRAIND_CUDA
    cr_assert_eq(gpu_device_info(-1, NULL, 0, NULL, NULL), -1);
#endif
}

/* ---- the trainer: parity jobs on cuda vs the CPU ---- */

typedef struct {
    int n;
    double loss[4096];
    char last_name[32];
    int peaks;           /* peak_memory_bytes metrics seen */
    double peak;         /* the last one */
} Losses;

static void rec_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    (void)step;
    (void)epoch;
    Losses *l = user;
    if (strcmp(name, "peak_memory_bytes") == 0) {
        l->peaks++;
        l->peak = value;
    }
    /* losses and accuracies; not train_time_s, which is the clock's */
    bool timing = strstr(name, "_time_s") != NULL;
    if (!timing && (strcmp(name, "loss") == 0 || strstr(name, "val_") == name ||
                    strstr(name, "train_") == name) && l->n < 4096)
        l->loss[l->n++] = value;
}

static void run_job(const char *path, Device device, Losses *out) {
    JobBuild b;
    memset(out, 0, sizeof *out);
    cr_assert_eq(job_build(&b, job_spec_parse_file(path), NULL), 0, "%s: %s", path, error_get());
    cr_assert_eq(job_build_to_device(&b, device), 0, "%s: %s", path, error_get());
    Trainer t;
    train_init(&t);
    job_build_trainer(&b, &t, device);
    t.cb = (TrainCallbacks){.user = out, .metric = rec_metric};
    cr_assert_eq(train_run(&t), 0, "%s on %s: %s", path,
                 device.type == DEVICE_CPU ? "cpu" : "cuda", error_get());
    job_build_free(&b);
}

Test(gpu, trainer_parity_jobs_on_cuda) {
    test_need_gpu();
    const char *cases[] = {"mlp_sgd_lambda", "cnn_adam_steplr", "batchnorm_dropout_sgd_multistep",
                           "csv_regression_adamw_cosine", "layernorm_mlp_adamw"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/jobs/%s.json", cases[i]);
        Losses *cpu = malloc(sizeof *cpu), *gpu = malloc(sizeof *gpu);
        cr_assert(cpu && gpu);
        run_job(path, DEVICE_CPU_INIT, cpu);
        run_job(path, CUDA0, gpu);
        cr_assert_eq(gpu->n, cpu->n, "%s: %d metrics on cuda, %d on cpu", cases[i], gpu->n,
                     cpu->n);
        double worst = 0;
        for (int k = 0; k < cpu->n; k++) {
            double e = fabs(gpu->loss[k] - cpu->loss[k]) / fmax(fabs(cpu->loss[k]), 1e-12);
            if (e > worst) worst = e;
        }
        fprintf(stderr, "gpu trainer %-36s %d metrics, worst rel err %.3g, peak %.0f bytes\n",
                cases[i], cpu->n, worst, gpu->peak);
        /* one peak_memory_bytes per epoch on cuda (the allocator's count),
         * none on the CPU */
        cr_assert(gpu->peaks > 0 && gpu->peak > 0 && cpu->peaks == 0, "%s: peaks %d/%d, %g",
                  cases[i], gpu->peaks, cpu->peaks, gpu->peak);
        cr_assert(worst <= 1e-4, "%s: cuda run differs from cpu by %g (relative)", cases[i],
                  worst);
        free(cpu);
        free(gpu);
    }
}

/* Conv2d with groups and dilation: the groups' GEMMs at offsets into the
 * column matrix and the dilated im2col, on the device (cuDNN off). */
static int mk_conv_groups(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(3, 6, 9, 8), dt, -1, 1);
    in[1] = rand_t(r, SHAPE(9, 2, 3, 3), dt, -1, 1);
    in[2] = rand_t(r, SHAPE(9), dt, -1, 1);
    return 3;
}
static Tensor *op_conv_groups(Tensor **in, const void *c) {
    return tensor_conv2d_with(in[0], in[1], in[2], c);
}

Test(gpu, conv_groups_dilation) {
    test_need_gpu();
    test_gpu_cudnn(false);
    static const Conv2dParams g3d2 = {2, 1, 2, 2, 2, 2, 3};
    both_dtypes("conv2d groups 3 dilation 2", mk_conv_groups, op_conv_groups, &g3d2, 2e-6);
}

/* ---- Conv2d on cuDNN (gpu/conv_cudnn.c) ---- */

/* cuDNN's counters: algorithm searches and passes run (0 without CUDA). */
static uint64_t cudnn_finds(void) {
    uint64_t f = 0;
#ifdef TRAIND_CUDA
    gpu_cudnn_stats(&f, NULL);
#endif
    return f;
}
static uint64_t cudnn_runs(void) {
    uint64_t r = 0;
#ifdef TRAIND_CUDA
    gpu_cudnn_stats(NULL, &r);
#endif
    return r;
}

/* An odd batch of 5, 4 channels in 2 groups, a 3x2 kernel dilated 2x1,
 * strides 1x2, padding 1x0. */
static int mk_conv_odd(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(5, 4, 13, 7), dt, -1, 1);
    in[1] = rand_t(r, SHAPE(6, 2, 3, 2), dt, -0.5, 0.5);
    in[2] = rand_t(r, SHAPE(6), dt, -0.1, 0.1);
    return 3;
}
/* no bias: the forward without the add, the filter pass without gb */
static int mk_conv_no_bias(Rng *r, DType dt, Tensor **in) {
    in[0] = rand_t(r, SHAPE(4, 8, 16, 16), dt, -1, 1);
    in[1] = rand_t(r, SHAPE(16, 8, 3, 3), dt, -0.2, 0.2);
    return 2;
}
static Tensor *op_conv_with_no_bias(Tensor **in, const void *c) {
    return tensor_conv2d_with(in[0], in[1], NULL, c);
}

/* Runs one parity case through cuDNN and checks that all three passes
 * (forward, backward data, backward filter with the bias's gradient) ran
 * there in both dtypes: 6 passes. float32 to 1e-5, not im2col's 2e-6:
 * cuDNN may pick Winograd or FFT algorithms, which round differently. */
static void cudnn_case(const char *name, MakeFn make, OpFn f, const Conv2dParams *p) {
    uint64_t runs = cudnn_runs();
    both_dtypes(name, make, f, p, 1e-5);
    uint64_t ran = cudnn_runs() - runs;
    cr_assert_eq(ran, 6, "%s: %llu passes on cuDNN, expected 6 (forward, data, filter x 2 "
                 "dtypes)", name, (unsigned long long)ran);
}

/* Forward, input gradient, weight and bias gradients on cuDNN against the
 * CPU (float32 and float64): groups, dilation, strides, padding, an odd
 * batch, no bias. */
Test(gpu, cudnn_conv_against_cpu) {
    test_need_gpu();
    test_gpu_cudnn(true);
    static const Conv2dParams s1p0 = {1, 1, 0, 0, 1, 1, 1}, s2p1 = {2, 2, 1, 1, 1, 1, 1},
                              g3d2 = {2, 1, 2, 2, 2, 2, 3}, odd = {1, 2, 1, 0, 2, 1, 2},
                              plain = {1, 1, 1, 1, 1, 1, 1};
    cudnn_case("cudnn conv2d s1 p0", mk_conv, op_conv_groups, &s1p0);
    cudnn_case("cudnn conv2d s2 p1", mk_conv, op_conv_groups, &s2p1);
    cudnn_case("cudnn conv2d groups 3 dilation 2", mk_conv_groups, op_conv_groups, &g3d2);
    cudnn_case("cudnn conv2d odd batch 5, 3x2", mk_conv_odd, op_conv_groups, &odd);
    cudnn_case("cudnn conv2d no bias", mk_conv_no_bias, op_conv_with_no_bias, &plain);
}

/* The simulated device's cuDNN: which algorithm ran last (absent on a GPU). */
int simdev_cudnn_last_algo(void) __attribute__((weak));

/* Which algorithm a pass runs: by default the fastest deterministic one
 * the search timed, under TRAIND_CUDNN_PICK=first the deterministic one
 * of the lowest number (the simulated search offers 1, fastest and not
 * deterministic; 2, next, with a workspace; 0, slowest). */
static void cudnn_pick_case(const char *pick, int want) {
    test_need_gpu();
    if (!test_gpu_simulated() || !simdev_cudnn_last_algo)
        cr_skip_test("the simulated device's search: a GPU's timings are its own");
    test_gpu_cudnn(true);
    if (pick) cr_assert_eq(setenv("TRAIND_CUDNN_PICK", pick, 1), 0);
    static const Conv2dParams s1p0 = {1, 1, 0, 0, 1, 1, 1};
    cudnn_case("cudnn conv2d s1 p0", mk_conv, op_conv_groups, &s1p0);
    cr_assert_eq(simdev_cudnn_last_algo(), want, "TRAIND_CUDNN_PICK=%s", pick ? pick : "");
}

Test(gpu, cudnn_picks_the_fastest_deterministic) { cudnn_pick_case(NULL, 2); }

Test(gpu, cudnn_pick_first_takes_the_lowest_number) { cudnn_pick_case("first", 0); }

/* A convolution's output and gradients (x, weight, bias), copied to the
 * host: run on cuda:0 with upstream gradient `up`, from make's inputs. */
typedef struct {
    Tensor *t[4];
} ConvResult;

static Tensor *to_host(Tensor *t) {
    Tensor *h = tensor_to_device(t, DEVICE_CPU_INIT);
    cr_assert(h, "to host: %s", error_get());
    return h;
}

static ConvResult conv_on_gpu(MakeFn make, DType dt, const Conv2dParams *p) {
    Rng r;
    rng_init(&r, 21);
    Tensor *in[8], *g[8];
    int n = make(&r, dt, in);
    for (int i = 0; i < n; i++) {
        g[i] = to_gpu(in[i]);
        cr_assert_eq(tensor_set_requires_grad(g[i], true), 0);
    }
    Tensor *out = tensor_conv2d_with(g[0], g[1], n > 2 ? g[2] : NULL, p);
    cr_assert(out, "conv2d on cuda: %s", error_get());
    Tensor *up = rand_t(&r, out->ndim, out->shape, dt, -1, 1), *upg = to_gpu(up);
    cr_assert_eq(tensor_backward_with(out, upg), 0, "backward on cuda: %s", error_get());
    ConvResult res = {{to_host(out), NULL, NULL, NULL}};
    for (int i = 0; i < n; i++) res.t[1 + i] = to_host(g[i]->grad);
    Tensor *rel[] = {out, up, upg};
    release_all(3, rel);
    release_all(n, g);
    release_all(n, in);
#ifdef TRAIND_CUDA
    cr_assert_null(gpu_last_error(), "%s", gpu_last_error());
#endif
    return res;
}

/* The largest normwise relative difference over the four results. */
static double conv_result_err(const ConvResult *a, const ConvResult *b) {
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        cr_assert((a->t[i] == NULL) == (b->t[i] == NULL));
        if (!a->t[i]) continue;
        double e = rel_err(a->t[i], b->t[i]);
        if (e > worst) worst = e;
    }
    return worst;
}

static void conv_result_release(ConvResult *r) { release_all(4, r->t); }

/* The algorithms are searched once per shape and pass, then reused: a
 * second call searches nothing and, the chosen algorithms being
 * deterministic, gives the same bits. TF32 allowed is another plan
 * (searched once), and turning it off again returns to the first one. */
Test(gpu, cudnn_algorithm_cache_reused) {
    test_need_gpu();
    test_gpu_cudnn(true);
    static const Conv2dParams s2p1 = {2, 2, 1, 1, 1, 1, 1};
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int k = 0; k < 2; k++) {
        uint64_t f0 = cudnn_finds(), r0 = cudnn_runs();
        ConvResult first = conv_on_gpu(mk_conv, dts[k], &s2p1);
        uint64_t f1 = cudnn_finds(), r1 = cudnn_runs();
        ConvResult again = conv_on_gpu(mk_conv, dts[k], &s2p1);
        uint64_t f2 = cudnn_finds(), r2 = cudnn_runs();
        fprintf(stderr, "gpu cudnn cache %-7s searches %llu then %llu, passes %llu then %llu\n",
                dtype_name(dts[k]), (unsigned long long)(f1 - f0),
                (unsigned long long)(f2 - f1), (unsigned long long)(r1 - r0),
                (unsigned long long)(r2 - r1));
        cr_assert_eq(f1 - f0, 3, "first call: %llu searches, expected 3",
                     (unsigned long long)(f1 - f0));
        cr_assert_eq(f2, f1, "second call searched again");
        cr_assert(r1 - r0 == 3 && r2 - r1 == 3, "passes on cuDNN: %llu, %llu",
                  (unsigned long long)(r1 - r0), (unsigned long long)(r2 - r1));
        cr_assert_eq(conv_result_err(&first, &again), 0.0, "a second call gave other bits");
        conv_result_release(&again);
        if (dts[k] == DTYPE_FLOAT32) {
            const Backend *be = backend_for(CUDA0);
            cr_assert(be && be->allow_tf32);
            be->allow_tf32(CUDA0, true);
            ConvResult tf = conv_on_gpu(mk_conv, dts[k], &s2p1);
            be->allow_tf32(CUDA0, false);
            uint64_t f3 = cudnn_finds();
            ConvResult full = conv_on_gpu(mk_conv, dts[k], &s2p1);
            double e_tf = conv_result_err(&tf, &first);
            fprintf(stderr, "gpu cudnn allow_tf32             float32 rel err %.3g\n", e_tf);
            cr_assert_eq(f3 - f2, 3, "TF32: %llu searches, expected 3",
                         (unsigned long long)(f3 - f2));
            cr_assert(e_tf < 5e-3, "TF32 error %g", e_tf);
            cr_assert_eq(cudnn_finds(), f3, "TF32 off searched again");
            cr_assert_eq(conv_result_err(&full, &first), 0.0, "TF32 off gave other bits");
            conv_result_release(&tf);
            conv_result_release(&full);
        }
        conv_result_release(&first);
    }
}

/* TRAIND_CUDNN=0 (read at the first convolution) leaves every pass to
 * im2col + GEMM, which agrees with cuDNN; turned on again, cuDNN runs. */
Test(gpu, cudnn_off_by_environment_uses_im2col) {
    test_need_gpu();
    cr_assert_eq(setenv("TRAIND_CUDNN", "0", 1), 0);
#ifdef TRAIND_CUDA
    cr_assert(!gpu_cudnn_enabled(), "TRAIND_CUDNN=0 did not turn cuDNN off");
#endif
    static const Conv2dParams g3d2 = {2, 1, 2, 2, 2, 2, 3};
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int k = 0; k < 2; k++) {
        test_gpu_cudnn(false);
        uint64_t f0 = cudnn_finds(), r0 = cudnn_runs();
        ConvResult off = conv_on_gpu(mk_conv_groups, dts[k], &g3d2);
        cr_assert(cudnn_finds() == f0 && cudnn_runs() == r0, "cuDNN ran while off");
        test_gpu_cudnn(true);
        ConvResult on = conv_on_gpu(mk_conv_groups, dts[k], &g3d2);
        cr_assert_eq(cudnn_runs() - r0, 3, "cuDNN did not run when on");
        double e = conv_result_err(&on, &off), tol = dts[k] == DTYPE_FLOAT32 ? 1e-5 : 1e-11;
        fprintf(stderr, "gpu cudnn against im2col       %-7s rel err %.3g\n",
                dtype_name(dts[k]), e);
        cr_assert(e <= tol, "cuDNN and im2col differ by %g", e);
        conv_result_release(&off);
        conv_result_release(&on);
    }
}
