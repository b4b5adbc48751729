/* test_precision.c - a job's "precision": "bf16" on the CPU: each
 * convolution pass (oneDNN's forward, data and weight gradients, and the
 * Conv2d -> ReLU -> MaxPool2d block) and matrix product computed from
 * bf16 inputs lands within bf16's rounding of the float32 result, and not
 * on it (bf16 did run); the thread's precision is its own; a CPU without AVX512-BF16 or
 * AMX, and a device without bf16, are refused with the reason. Skips the
 * bf16 runs, saying why, on a CPU that lacks it. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/cpu/cpu.h"
#include "core/error.h"
#include "core/ops.h"
#include "tests/support/gradcheck.h"
#include "tests/support/parity.h"

static void need_bf16(void) {
    if (backend_check_precision(DEVICE_CPU_INIT, PRECISION_BF16) != 0)
        cr_skip_test("no bf16 on this CPU: %s", error_get());
}

/* worst, or d where it is worse; a NaN is the worst of all */
static double worse(double worst, double d) { return isnan(d) ? INFINITY : fmax(worst, d); }

/* out, gx, gw, gb of sum(f(x) * up) in precision p: the convolution, or
 * with block the Conv2d -> ReLU -> MaxPool2d block, fused or as the
 * three ops */
typedef enum { CONV, BLOCK_FUSED, BLOCK_THREE_OPS } What;

static void run(Precision p, What what, Tensor **got) {
    cpu_set_precision(DEVICE_CPU_INIT, p);
    Tensor *x = gradcheck_uniform32(SHAPE(4, 32, 14, 13), 1);
    Tensor *w = gradcheck_uniform32(SHAPE(48, 32, 3, 3), 2);
    Tensor *b = gradcheck_uniform32(SHAPE(48), 3);
    tensor_set_requires_grad(x, true), tensor_set_requires_grad(w, true);
    tensor_set_requires_grad(b, true);
    Conv2dParams cp = {1, 1, 1, 1, 1, 1, 1};
    Pool2dParams pp = {2, 2, 2, 2, 0, 0};
    Tensor *out = what == BLOCK_FUSED ? tensor_conv2d_relu_max_pool2d(x, w, b, &cp, &pp)
                                      : tensor_conv2d_with(x, w, b, &cp);
    if (what == BLOCK_THREE_OPS) {
        Tensor *r = tensor_relu(out);
        tensor_release(out);
        out = tensor_max_pool2d(r, 2, 2, 2, 2, 0, 0);
        tensor_release(r);
    }
    cr_assert(out, "%s", error_get());
    Tensor *up = gradcheck_uniform32(out->ndim, out->shape, 4);
    cr_assert(tensor_backward_with(out, up) == 0, "%s", error_get());
    got[0] = out, got[1] = tensor_retain(x->grad), got[2] = tensor_retain(w->grad);
    got[3] = tensor_retain(b->grad);
    tensor_release(up), tensor_release(x), tensor_release(w), tensor_release(b);
    cpu_set_precision(DEVICE_CPU_INIT, PRECISION_FLOAT32);
}

static const char *const names[4] = {"out", "gx", "gweight", "gbias"};

/* bf16 keeps 8 significant bits: inputs rounded by up to 2^-9 relative,
 * so a sum of 288 products is off by about that much, normwise; float32
 * is 2^16 times closer. */
Test(precision, bf16_convolution_passes) {
    need_bf16();
    Tensor *f32[4], *bf16[4];
    run(PRECISION_FLOAT32, CONV, f32);
    run(PRECISION_BF16, CONV, bf16);
    for (int i = 0; i < 4; i++) {
        double e = parity_rel_err(bf16[i], f32[i]);
        fprintf(stderr, "precision bf16 conv %s: relative error %.3g\n", names[i], e);
        cr_assert(e < 1e-2, "%s: bf16 off by %g of float32", names[i], e);
        /* the bias gradient sums gy alone, which bf16 does not round */
        if (i != 3) cr_assert(e > 1e-5, "%s: bf16 equals float32 (%g): did bf16 run?", names[i], e);
        tensor_release(f32[i]), tensor_release(bf16[i]);
    }
}

/* The block's pooling picks a window's maximum from y, which bf16 moves by
 * ~2^-9: where two values are that close the argmax, and so a gradient's
 * place, changes (as under torch.autocast). So its output is checked
 * against float32, and its gradients against the three ops in bf16,
 * whose convolution reads the same bf16 inputs. */
Test(precision, bf16_conv_relu_pool_block) {
    need_bf16();
    Tensor *f32[4], *fused[4], *three[4];
    run(PRECISION_FLOAT32, BLOCK_FUSED, f32);
    run(PRECISION_BF16, BLOCK_FUSED, fused);
    run(PRECISION_BF16, BLOCK_THREE_OPS, three);
    double e = parity_rel_err(fused[0], f32[0]);
    cr_assert(e < 1e-2 && e > 1e-5, "out: bf16 off by %g of float32", e);
    for (int i = 0; i < 4; i++) {
        double d = parity_rel_err(fused[i], three[i]);
        fprintf(stderr, "precision bf16 block %s: relative error %.3g to the three ops\n", names[i],
                d);
        cr_assert(d < 1e-5, "%s: fused bf16 off by %g of the three ops in bf16", names[i], d);
        tensor_release(f32[i]), tensor_release(fused[i]), tensor_release(three[i]);
    }
}

static void *float32_thread(void *arg) {
    Tensor **got = arg;
    run(PRECISION_FLOAT32, CONV, got);
    return NULL;
}

/* x to bfloat16, round to nearest even (what oneDNN's reorder does) */
static double bf16_of(double x) {
    float f = (float)x;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Matrix products in bf16: both operands rounded to bfloat16, products
 * summed and written in float32, the bias added in float32. Linear's
 * x W^T + b (a transposed operand, accumulating onto the bias) and a plain
 * matmul against that computed in double from the rounded operands (float32
 * summation's error only), and off the float32 product by bf16's rounding
 * (so bf16 ran); Linear's input gradient likewise within bf16's rounding. */
Test(precision, bf16_matrix_products) {
    need_bf16();
    const int64_t m = 37, n = 45, k = 300;
    Tensor *x = gradcheck_uniform32(SHAPE(m, k), 5), *w = gradcheck_uniform32(SHAPE(n, k), 6);
    Tensor *b = gradcheck_uniform32(SHAPE(n), 7), *got[2][3], *wt = tensor_transpose(w, 0, 1);
    Tensor *wtc = tensor_contiguous(wt);
    tensor_set_requires_grad(x, true);
    for (int bf = 0; bf < 2; bf++) {
        cpu_set_precision(DEVICE_CPU_INIT, bf ? PRECISION_BF16 : PRECISION_FLOAT32);
        got[bf][0] = tensor_linear(x, w, b);
        got[bf][1] = tensor_matmul(x, wtc);
        cr_assert(got[bf][0] && got[bf][1], "%s", error_get());
        Tensor *s = tensor_sum(got[bf][0]);
        cr_assert_eq(tensor_backward(s), 0, "%s", error_get());
        got[bf][2] = tensor_retain(x->grad);
        tensor_zero_grad(x);
        tensor_release(s);
    }
    cpu_set_precision(DEVICE_CPU_INIT, PRECISION_FLOAT32);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double ref = 0;
            for (int64_t c = 0; c < k; c++)
                ref += bf16_of(tensor_get(x, i * k + c)) * bf16_of(tensor_get(w, j * k + c));
            double lin = tensor_get(got[1][0], i * n + j), mm = tensor_get(got[1][1], i * n + j);
            worst = worse(worse(worst, fabs(lin - (ref + tensor_get(b, j)))), fabs(mm - ref));
            scale = fmax(scale, fabs(ref));
        }
    cr_assert(worst <= 1e-6 * scale, "bf16 products off the bf16-rounded ones by %g (of %g)",
              worst, scale);
    const char *what[3] = {"linear", "matmul", "linear gx"};
    for (int i = 0; i < 3; i++) {
        double e = parity_rel_err(got[1][i], got[0][i]);
        fprintf(stderr, "precision bf16 %s: relative error %.3g\n", what[i], e);
        cr_assert(e > 1e-5 && e < 1e-2, "%s: %g from float32", what[i], e);
    }
    for (int bf = 0; bf < 2; bf++)
        for (int i = 0; i < 3; i++) tensor_release(got[bf][i]);
    tensor_release(x), tensor_release(w), tensor_release(b), tensor_release(wt),
        tensor_release(wtc);
}

Test(precision, per_thread) {
    need_bf16();
    Tensor *a[4], *b[4];
    run(PRECISION_FLOAT32, CONV, a);
    cpu_set_precision(DEVICE_CPU_INIT, PRECISION_BF16); /* this thread only */
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, float32_thread, b), 0);
    pthread_join(t, NULL);
    cpu_set_precision(DEVICE_CPU_INIT, PRECISION_FLOAT32);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(parity_rel_err(b[i], a[i]), 0, "another thread's bf16 leaked into float32");
        tensor_release(a[i]), tensor_release(b[i]);
    }
}

Test(precision, refused_where_it_cannot_run) {
    cr_assert_eq(backend_check_precision(DEVICE_CPU_INIT, PRECISION_FLOAT32), 0);
    /* a device that is not there (on a GPU machine too) */
    cr_assert_eq(backend_check_precision((Device){DEVICE_CUDA, 15}, PRECISION_BF16), -1);
    cr_assert(strlen(error_get()) > 0);
}
