/* test_gpu_conv.c - Conv2d on the GPU against the CPU, forward and all
 * three gradients: im2col + GEMM (strides, padding, groups, dilation), and
 * cuDNN (gpu/conv_cudnn.c): the passes that run there, the algorithm it
 * picks and caches per shape, and TRAIND_CUDNN=0.
 *
 * Every test skips with "no CUDA device: ..." where there is none.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "tests/support/need_gpu.h"
#include "tests/support/parity.h"
#ifdef TRAIND_CUDA
#include "gpu/conv_cudnn.h"
#include "gpu/gpu.h"
#endif

/* 3 images of 3 channels, 11x10, 5 filters of 3x3 */
static int mk_conv(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(3, 3, 11, 10), dt, -1, 1);
    in[1] = parity_rand(r, SHAPE(5, 3, 3, 3), dt, -0.3, 0.3);
    in[2] = parity_rand(r, SHAPE(5), dt, -0.1, 0.1);
    return 3;
}
/* 6 channels in 3 groups, 9 filters: the groups' GEMMs at offsets into
 * the column matrix */
static int mk_conv_groups(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(3, 6, 9, 8), dt, -1, 1);
    in[1] = parity_rand(r, SHAPE(9, 2, 3, 3), dt, -1, 1);
    in[2] = parity_rand(r, SHAPE(9), dt, -1, 1);
    return 3;
}
static Tensor *op_conv(Tensor **in, const void *c) {
    return tensor_conv2d_with(in[0], in[1], in[2], c);
}

/* im2col + GEMM on the device (cuDNN off): strides, padding, and the
 * dilated im2col of grouped filters. */
Test(gpu, conv_im2col) {
    test_need_gpu();
    test_gpu_cudnn(false);
    static const Conv2dParams s1p0 = {1, 1, 0, 0, 1, 1, 1}, s2p1 = {2, 2, 1, 1, 1, 1, 1},
                              g3d2 = {2, 1, 2, 2, 2, 2, 3};
    parity_both_dtypes("conv2d s1 p0", mk_conv, op_conv, &s1p0, 2e-6);
    parity_both_dtypes("conv2d s2 p1", mk_conv, op_conv, &s2p1, 2e-6);
    parity_both_dtypes("conv2d groups 3 dilation 2", mk_conv_groups, op_conv, &g3d2, 2e-6);
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
    in[0] = parity_rand(r, SHAPE(5, 4, 13, 7), dt, -1, 1);
    in[1] = parity_rand(r, SHAPE(6, 2, 3, 2), dt, -0.5, 0.5);
    in[2] = parity_rand(r, SHAPE(6), dt, -0.1, 0.1);
    return 3;
}
/* no bias: the forward without the add, the filter pass without gb */
static int mk_conv_no_bias(Rng *r, DType dt, Tensor **in) {
    in[0] = parity_rand(r, SHAPE(4, 8, 16, 16), dt, -1, 1);
    in[1] = parity_rand(r, SHAPE(16, 8, 3, 3), dt, -0.2, 0.2);
    return 2;
}
static Tensor *op_conv_with_no_bias(Tensor **in, const void *c) {
    return tensor_conv2d_with(in[0], in[1], NULL, c);
}

/* Runs one parity case through cuDNN and checks that all three passes
 * (forward, backward data, backward filter with the bias's gradient) ran
 * there in both dtypes: 6 passes. float32 to 1e-5, not im2col's 2e-6:
 * cuDNN may pick Winograd or FFT algorithms, which round differently. */
static void cudnn_case(const char *name, ParityInputs make, ParityOp f, const Conv2dParams *p) {
    uint64_t runs = cudnn_runs();
    parity_both_dtypes(name, make, f, p, 1e-5);
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
    cudnn_case("cudnn conv2d s1 p0", mk_conv, op_conv, &s1p0);
    cudnn_case("cudnn conv2d s2 p1", mk_conv, op_conv, &s2p1);
    cudnn_case("cudnn conv2d groups 3 dilation 2", mk_conv_groups, op_conv, &g3d2);
    cudnn_case("cudnn conv2d odd batch 5, 3x2", mk_conv_odd, op_conv, &odd);
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
    cudnn_case("cudnn conv2d s1 p0", mk_conv, op_conv, &s1p0);
    cr_assert_eq(simdev_cudnn_last_algo(), want, "TRAIND_CUDNN_PICK=%s", pick ? pick : "");
}

Test(gpu, cudnn_picks_the_fastest_deterministic) { cudnn_pick_case(NULL, 2); }

Test(gpu, cudnn_pick_first_takes_the_lowest_number) { cudnn_pick_case("first", 0); }

/* A convolution's output and gradients (x, weight, bias), copied to the
 * host: run on cuda:0 with upstream gradient `up`, from make's inputs. */
typedef struct {
    Tensor *t[4];
} ConvResult;


static ConvResult conv_on_gpu(ParityInputs make, DType dt, const Conv2dParams *p) {
    Rng r;
    rng_init(&r, 21);
    Tensor *in[8], *g[8];
    int n = make(&r, dt, in);
    for (int i = 0; i < n; i++) {
        g[i] = parity_to_gpu(in[i]);
        cr_assert_eq(tensor_set_requires_grad(g[i], true), 0);
    }
    Tensor *out = tensor_conv2d_with(g[0], g[1], n > 2 ? g[2] : NULL, p);
    cr_assert(out, "conv2d on cuda: %s", error_get());
    Tensor *up = parity_rand(&r, out->ndim, out->shape, dt, -1, 1), *upg = parity_to_gpu(up);
    cr_assert_eq(tensor_backward_with(out, upg), 0, "backward on cuda: %s", error_get());
    ConvResult res = {{parity_to_host(out), NULL, NULL, NULL}};
    for (int i = 0; i < n; i++) res.t[1 + i] = parity_to_host(g[i]->grad);
    Tensor *rel[] = {out, up, upg};
    parity_release_all(3, rel);
    parity_release_all(n, g);
    parity_release_all(n, in);
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
        double e = parity_rel_err(a->t[i], b->t[i]);
        if (e > worst) worst = e;
    }
    return worst;
}

static void conv_result_release(ConvResult *r) { parity_release_all(4, r->t); }

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
