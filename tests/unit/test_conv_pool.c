/* test_conv_pool.c - convolution and pooling: the CPU kernels on hand-checked
 * cases and against naive loops, the ops' gradients by finite differences in
 * float64, and parity with PyTorch (tests/fixtures/gen_conv_pool.py). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/cpu/cpu.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

/* ---- helpers ---- */

static Window2d window(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
    Window2d g = {n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, 0, 0};
    g.out_h = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    g.out_w = (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    return g;
}

static double *random_doubles(Rng *rng, int64_t n) {
    double *v = malloc((size_t)n * sizeof *v);
    cr_assert(v != NULL);
    for (int64_t i = 0; i < n; i++) v[i] = rng_uniform_range(rng, -1, 1);
    return v;
}

/* The definition of im2col, one element at a time. */
static void naive_im2col(const Window2d *g, const double *img, double *col) {
    int64_t r = 0;
    for (int64_t c = 0; c < g->channels; c++)
        for (int64_t ki = 0; ki < g->kernel_h; ki++)
            for (int64_t kj = 0; kj < g->kernel_w; kj++, r++)
                for (int64_t oh = 0; oh < g->out_h; oh++)
                    for (int64_t ow = 0; ow < g->out_w; ow++) {
                        int64_t ih = oh * g->stride_h - g->pad_h + ki * g->dilation_h;
                        int64_t iw = ow * g->stride_w - g->pad_w + kj * g->dilation_w;
                        bool in = ih >= 0 && ih < g->height && iw >= 0 && iw < g->width;
                        col[(r * g->out_h + oh) * g->out_w + ow] =
                            in ? img[(c * g->height + ih) * g->width + iw] : 0;
                    }
}

static const Window2d geometries[] = {
    /*  n  c  h  w kh kw sh sw ph pw dh dw */
    {1, 1, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 0, 0},
    {1, 2, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0},
    {1, 3, 7, 6, 3, 2, 2, 3, 1, 0, 1, 1, 0, 0},
    {1, 2, 6, 7, 3, 3, 2, 2, 2, 1, 2, 1, 0, 0},
    {1, 1, 4, 9, 2, 4, 1, 2, 1, 3, 3, 2, 0, 0},
    {1, 2, 2, 2, 5, 5, 1, 1, 2, 2, 1, 1, 0, 0}, /* kernel wider than the image */
};

static Window2d geometry(size_t i) {
    const Window2d *g = &geometries[i];
    return window(g->batch, g->channels, g->height, g->width, g->kernel_h, g->kernel_w,
                  g->stride_h, g->stride_w, g->pad_h, g->pad_w, g->dilation_h, g->dilation_w);
}

#define N_GEOMETRIES (sizeof geometries / sizeof geometries[0])

/* ---- im2col / col2im ---- */

Test(conv_kernels, im2col_hand_checked) {
    /* 1..9 in a 3x3 image, 2x2 kernel: each column row is one kernel tap. */
    float img[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, col[16];
    Window2d g = window(1, 1, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1);
    cpu_im2col(DTYPE_FLOAT32, &g, img, 1, col, g.out_h * g.out_w);
    float want[16] = {1, 2, 4, 5, 2, 3, 5, 6, 4, 5, 7, 8, 5, 6, 8, 9};
    for (int i = 0; i < 16; i++) cr_expect_eq(col[i], want[i], "col[%d] = %g", i, col[i]);

    /* Padding 1, stride 2, kernel 2: out 2x2; tap (0,0) sees the padded corner. */
    float col2[16];
    g = window(1, 1, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1);
    cr_assert_eq(g.out_h, 2);
    cpu_im2col(DTYPE_FLOAT32, &g, img, 1, col2, g.out_h * g.out_w);
    float want2[16] = {0, 0, 0, 5, 0, 0, 4, 6, 0, 2, 0, 8, 1, 3, 7, 9};
    for (int i = 0; i < 16; i++) cr_expect_eq(col2[i], want2[i], "col2[%d] = %g", i, col2[i]);
}

Test(conv_kernels, im2col_matches_naive_loop) {
    Rng rng;
    rng_init(&rng, 1);
    for (size_t gi = 0; gi < N_GEOMETRIES; gi++) {
        Window2d g = geometry(gi);
        int64_t n_img = g.channels * g.height * g.width;
        int64_t n_col = g.channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
        double *img = random_doubles(&rng, n_img);
        double *want = malloc((size_t)n_col * sizeof *want);
        double *got = malloc((size_t)n_col * sizeof *got);
        float *img32 = malloc((size_t)n_img * sizeof *img32);
        float *got32 = malloc((size_t)n_col * sizeof *got32);
        cr_assert(want && got && img32 && got32);
        for (int64_t i = 0; i < n_img; i++) img32[i] = (float)img[i];
        memset(got, 0x7f, (size_t)n_col * sizeof *got); /* garbage: padding must be written */
        memset(got32, 0x7f, (size_t)n_col * sizeof *got32);
        naive_im2col(&g, img, want);
        cpu_im2col(DTYPE_FLOAT64, &g, img, 1, got, g.out_h * g.out_w);
        cpu_im2col(DTYPE_FLOAT32, &g, img32, 1, got32, g.out_h * g.out_w);
        for (int64_t i = 0; i < n_col; i++) {
            cr_assert_eq(got[i], want[i], "geometry %zu: f64 col[%ld] = %g, want %g", gi, (long)i,
                         got[i], want[i]);
            cr_assert_eq(got32[i], (float)want[i], "geometry %zu: f32 col[%ld] = %g, want %g", gi,
                         (long)i, got32[i], want[i]);
        }
        free(img), free(want), free(got), free(img32), free(got32);
    }
}

Test(conv_kernels, col2im_is_adjoint_of_im2col) {
    /* <im2col(x), c> == <x, col2im(c)> for random x and c. */
    Rng rng;
    rng_init(&rng, 2);
    for (size_t gi = 0; gi < N_GEOMETRIES; gi++) {
        Window2d g = geometry(gi);
        int64_t n_img = g.channels * g.height * g.width;
        int64_t n_col = g.channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
        double *x = random_doubles(&rng, n_img), *c = random_doubles(&rng, n_col);
        double *xc = malloc((size_t)n_col * sizeof *xc), *cx = malloc((size_t)n_img * sizeof *cx);
        cr_assert(xc && cx);
        for (int64_t i = 0; i < n_img; i++) cx[i] = 1e30; /* col2im must zero first */
        cpu_im2col(DTYPE_FLOAT64, &g, x, 1, xc, g.out_h * g.out_w);
        cpu_col2im(DTYPE_FLOAT64, &g, c, g.out_h * g.out_w, 1, cx);
        double lhs = 0, rhs = 0;
        for (int64_t i = 0; i < n_col; i++) lhs += xc[i] * c[i];
        for (int64_t i = 0; i < n_img; i++) rhs += x[i] * cx[i];
        cr_assert(fabs(lhs - rhs) <= 1e-12 * (1 + fabs(lhs)), "geometry %zu: %.17g vs %.17g", gi,
                  lhs, rhs);
        free(x), free(c), free(xc), free(cx);
    }
}

Test(conv_kernels, col2im_counts_overlaps_float32) {
    /* All-ones columns: each pixel receives the number of windows covering it. */
    Window2d g = window(1, 1, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1);
    float col[16], img[9];
    for (int i = 0; i < 16; i++) col[i] = 1;
    cpu_col2im(DTYPE_FLOAT32, &g, col, g.out_h * g.out_w, 1, img);
    float want[9] = {1, 2, 1, 2, 4, 2, 1, 2, 1};
    for (int i = 0; i < 9; i++) cr_expect_eq(img[i], want[i], "img[%d] = %g", i, img[i]);
}

/* ---- pooling kernels ---- */

static Tensor *make(const double *v, int64_t n, int64_t c, int64_t h, int64_t w, DType dt) {
    Tensor *t = tensor_from_doubles(v, 4, (int64_t[]){n, c, h, w}, dt);
    cr_assert(t != NULL, "%s", error_get());
    return t;
}

Test(pool_kernels, max_pool_values_and_indices) {
    double v[16] = {1, 5, 2, 0, 3, 4, 8, 8, -1, -2, -3, -4, -5, -6, -7, -9};
    Tensor *x = make(v, 1, 1, 4, 4, DTYPE_FLOAT32);
    Window2d g = window(1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1);
    Tensor *out = tensor_empty(SHAPE(1, 1, 2, 2), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *idx = tensor_empty(SHAPE(1, 1, 2, 2), DTYPE_INT64, DEVICE_CPU_INIT);
    cpu_max_pool2d(&g, x, out, idx);
    assert_tensor_values(out, (double[]){5, 8, -1, -3}, 4, 0, "max");
    /* Ties keep the first maximum (8 at 6, not 7). */
    assert_tensor_values(idx, (double[]){1, 6, 8, 10}, 4, 0, "indices");

    /* Backward scatters gy to the argmax. */
    Tensor *gy = make((double[]){1, 2, 3, 4}, 1, 1, 2, 2, DTYPE_FLOAT32);
    Tensor *gx = tensor_full(SHAPE(1, 1, 4, 4), 99, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cpu_max_pool2d_backward(&g, gy, idx, gx);
    double want[16] = {0, 1, 0, 0, 0, 0, 2, 0, 3, 0, 4, 0, 0, 0, 0, 0};
    assert_tensor_values(gx, want, 16, 0, "gx");
    tensor_release(x), tensor_release(out), tensor_release(idx), tensor_release(gy),
        tensor_release(gx);
}

Test(pool_kernels, max_pool_padding_is_minus_infinity_and_nan_propagates) {
    /* All negative with padding: a 0 from the padding must never win. */
    double v[4] = {-1, -2, -3, -4};
    Tensor *x = make(v, 1, 1, 2, 2, DTYPE_FLOAT64);
    Window2d g = window(1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1); /* out 3x3 */
    Tensor *out = tensor_empty(SHAPE(1, 1, 3, 3), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *idx = tensor_empty(SHAPE(1, 1, 3, 3), DTYPE_INT64, DEVICE_CPU_INIT);
    cpu_max_pool2d(&g, x, out, idx);
    assert_tensor_values(out, (double[]){-1, -1, -2, -1, -1, -2, -3, -3, -4}, 9, 0, "max");
    assert_tensor_values(idx, (double[]){0, 0, 1, 0, 0, 1, 2, 2, 3}, 9, 0, "indices");

    /* A NaN wins every window it is in. */
    double vn[4] = {1, NAN, 3, 4};
    Tensor *xn = make(vn, 1, 1, 2, 2, DTYPE_FLOAT64);
    cpu_max_pool2d(&g, xn, out, idx);
    double got[9];
    tensor_to_doubles(out, got, 9);
    int nan_at[9] = {0, 1, 1, 0, 1, 1, 0, 0, 0};
    for (int i = 0; i < 9; i++)
        cr_expect_eq(isnan(got[i]) != 0, nan_at[i] != 0, "out[%d] = %g", i, got[i]);
    cr_expect_eq(tensor_get(idx, 4), 1);
    cr_expect_eq(tensor_get(idx, 8), 3);
    tensor_release(x), tensor_release(xn), tensor_release(out), tensor_release(idx);
}

Test(pool_kernels, avg_pool_counts_padding_in_divisor) {
    /* Ones 2x2, kernel 3, stride 1, pad 1: every window holds 4 ones of 9. */
    double v[4] = {1, 1, 1, 1};
    Tensor *x = make(v, 1, 1, 2, 2, DTYPE_FLOAT32);
    Window2d g = window(1, 1, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1);
    Tensor *out = tensor_empty(SHAPE(1, 1, 2, 2), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cpu_avg_pool2d(&g, x, out);
    double q = 4.0 / 9.0;
    assert_tensor_values(out, (double[]){q, q, q, q}, 4, 1e-7, "avg");

    /* Backward: each input pixel is in all 4 windows, each giving 1/9 of gy. */
    Tensor *gy = make((double[]){9, 18, 27, 36}, 1, 1, 2, 2, DTYPE_FLOAT32);
    Tensor *gx = tensor_full(SHAPE(1, 1, 2, 2), 99, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cpu_avg_pool2d_backward(&g, gy, gx);
    assert_tensor_values(gx, (double[]){10, 10, 10, 10}, 4, 1e-6, "gx");
    tensor_release(x), tensor_release(out), tensor_release(gy), tensor_release(gx);
}

Test(pool_kernels, avg_pool_backward_is_adjoint) {
    Rng rng;
    rng_init(&rng, 3);
    Window2d g = window(2, 3, 7, 6, 3, 2, 2, 1, 1, 1, 1, 1);
    int64_t nx = 2 * 3 * 7 * 6, ny = 2 * 3 * g.out_h * g.out_w;
    double *xv = random_doubles(&rng, nx), *gv = random_doubles(&rng, ny);
    Tensor *x = make(xv, 2, 3, 7, 6, DTYPE_FLOAT64);
    Tensor *gy = make(gv, 2, 3, g.out_h, g.out_w, DTYPE_FLOAT64);
    Tensor *y = tensor_empty(SHAPE(2, 3, g.out_h, g.out_w), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *gx = tensor_empty(SHAPE(2, 3, 7, 6), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cpu_avg_pool2d(&g, x, y);
    cpu_avg_pool2d_backward(&g, gy, gx);
    double lhs = 0, rhs = 0;
    for (int64_t i = 0; i < ny; i++) lhs += tensor_get(y, i) * gv[i];
    for (int64_t i = 0; i < nx; i++) rhs += xv[i] * tensor_get(gx, i);
    cr_assert(fabs(lhs - rhs) < 1e-12, "%.17g vs %.17g", lhs, rhs);
    free(xv), free(gv);
    tensor_release(x), tensor_release(gy), tensor_release(y), tensor_release(gx);
}

Test(pool_kernels, max_pool_indices_match_torch) {
    json_t *fx = fixture_load("conv_pool");
    json_t *kase = fixture_case(fx, "maxpool_k3s2p1");
    Tensor *x = fixture_tensor(kase, "x"), *want = fixture_tensor(kase, "out");
    Tensor *want_idx = fixture_tensor(kase, "indices");
    Window2d g = window(2, 3, 7, 7, 3, 3, 2, 2, 1, 1, 1, 1);
    Tensor *out = tensor_empty_like(want);
    Tensor *idx = tensor_empty(4, want->shape, DTYPE_INT64, DEVICE_CPU_INIT);
    cpu_max_pool2d(&g, x, out, idx);
    assert_tensor_close(out, want, 0, 0, "max_pool2d out");
    assert_tensor_close(idx, want_idx, 0, 0, "max_pool2d indices");
    tensor_release(x), tensor_release(want), tensor_release(want_idx), tensor_release(out),
        tensor_release(idx);
    json_decref(fx);
}

/* ---- ops: gradient checks in float64 ---- */

typedef struct {
    int kh, kw, sh, sw, ph, pw;
} Geom;

static Tensor *conv_fn(Tensor **in, void *ctx) {
    const Geom *g = ctx;
    return tensor_conv2d(in[0], in[1], in[2], g->sh, g->sw, g->ph, g->pw);
}

static Tensor *conv_nobias_fn(Tensor **in, void *ctx) {
    const Geom *g = ctx;
    return tensor_conv2d(in[0], in[1], NULL, g->sh, g->sw, g->ph, g->pw);
}

static Tensor *max_pool_fn(Tensor **in, void *ctx) {
    const Geom *g = ctx;
    return tensor_max_pool2d(in[0], g->kh, g->kw, g->sh, g->sw, g->ph, g->pw);
}

static Tensor *avg_pool_fn(Tensor **in, void *ctx) {
    const Geom *g = ctx;
    return tensor_avg_pool2d(in[0], g->kh, g->kw, g->sh, g->sw, g->ph, g->pw);
}

static void release_all(int n, Tensor **t) {
    for (int i = 0; i < n; i++) tensor_release(t[i]);
}

Test(conv2d, gradcheck_stride2_pad1_with_bias) {
    Geom g = {3, 3, 2, 2, 1, 1};
    Tensor *in[3] = {gradcheck_input(SHAPE(2, 3, 5, 6), -1, 1, 1),
                     gradcheck_input(SHAPE(4, 3, 3, 3), -1, 1, 2),
                     gradcheck_input(SHAPE(4), -1, 1, 3)};
    gradcheck("conv2d s2 p1", conv_fn, &g, 3, in);
    release_all(3, in);
}

Test(conv2d, gradcheck_rectangular_no_bias) {
    Geom g = {2, 3, 1, 2, 1, 0};
    Tensor *in[2] = {gradcheck_input(SHAPE(2, 2, 4, 7), -1, 1, 4),
                     gradcheck_input(SHAPE(3, 2, 2, 3), -1, 1, 5)};
    gradcheck("conv2d 2x3 s1x2 p1x0", conv_nobias_fn, &g, 2, in);
    release_all(2, in);
}

Test(conv2d, gradcheck_1x1_kernel_skips_im2col) {
    Geom g = {1, 1, 1, 1, 0, 0};
    Tensor *in[3] = {gradcheck_input(SHAPE(2, 3, 3, 4), -1, 1, 6),
                     gradcheck_input(SHAPE(5, 3, 1, 1), -1, 1, 7),
                     gradcheck_input(SHAPE(5), -1, 1, 8)};
    gradcheck("conv2d 1x1", conv_fn, &g, 3, in);
    release_all(3, in);
}

Test(conv2d, gradient_only_for_inputs_that_require_it) {
    Tensor *x = gradcheck_input(SHAPE(1, 2, 4, 4), -1, 1, 9);
    Tensor *w = gradcheck_input(SHAPE(3, 2, 3, 3), -1, 1, 10);
    Tensor *b = gradcheck_input(SHAPE(3), -1, 1, 11);
    tensor_set_requires_grad(x, false);
    tensor_set_requires_grad(b, false);
    Tensor *y = tensor_conv2d(x, w, b, 1, 1, 1, 1);
    Tensor *l = tensor_sum(y);
    cr_assert(tensor_backward(l) == 0, "%s", error_get());
    cr_expect(x->grad == NULL && b->grad == NULL);
    cr_assert(w->grad != NULL);
    /* d sum(y) / d w[o, c, i, j] = sum of x over the taps (i, j) visit. */
    Tensor *xs = tensor_sum_dims(x, 1, (int[]){0}, false); /* [2, 4, 4] */
    double got = tensor_get(w->grad, 0), want = 0; /* o=0, c=0, tap (0,0): x[0, 0, 0:3, 0:3] */
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) want += tensor_get(xs, i * 4 + j);
    cr_expect(fabs(got - want) < 1e-12, "%g vs %g", got, want);
    tensor_release(xs), tensor_release(y), tensor_release(l);
    tensor_release(x), tensor_release(w), tensor_release(b);
}

Test(conv2d, non_contiguous_input_matches_contiguous) {
    Tensor *x = gradcheck_input(SHAPE(2, 3, 5, 4), -1, 1, 12);
    Tensor *w = gradcheck_input(SHAPE(2, 3, 3, 3), -1, 1, 13);
    Tensor *xt = tensor_transpose(x, 2, 3); /* [2, 3, 4, 5], strided */
    Tensor *xc = tensor_contiguous(xt);
    cr_assert(!tensor_is_contiguous(xt));
    Tensor *a = tensor_conv2d(xt, w, NULL, 1, 2, 1, 0);
    Tensor *b = tensor_conv2d(xc, w, NULL, 1, 2, 1, 0);
    assert_tensor_close(a, b, 0, 0, "conv2d of a transposed view");
    /* The gradient flows back through the view to x. */
    Tensor *l = tensor_sum(a);
    cr_assert(tensor_backward(l) == 0, "%s", error_get());
    cr_assert(x->grad != NULL);
    cr_expect(tensor_same_shape(x->grad, x));
    tensor_release(l), tensor_release(a), tensor_release(b), tensor_release(xc);
    tensor_release(xt), tensor_release(x), tensor_release(w);
}

Test(max_pool2d, gradcheck_k3_s2_p1) {
    Geom g = {3, 3, 2, 2, 1, 1};
    Tensor *in[1] = {gradcheck_input(SHAPE(2, 2, 5, 6), -1, 1, 14)};
    gradcheck("max_pool2d k3 s2 p1", max_pool_fn, &g, 1, in);
    release_all(1, in);
}

Test(max_pool2d, gradcheck_default_stride_overlap) {
    Geom g = {2, 2, 0, 0, 0, 0}; /* stride 0 -> kernel */
    Tensor *in[1] = {gradcheck_input(SHAPE(1, 3, 4, 5), -1, 1, 15)};
    gradcheck("max_pool2d k2", max_pool_fn, &g, 1, in);
    Geom o = {3, 2, 1, 1, 1, 0}; /* overlapping windows: gradients add up */
    gradcheck("max_pool2d k3x2 s1 p1x0", max_pool_fn, &o, 1, in);
    release_all(1, in);
}

Test(avg_pool2d, gradcheck_k3_s2_p1) {
    Geom g = {3, 3, 2, 2, 1, 1};
    Tensor *in[1] = {gradcheck_input(SHAPE(2, 2, 5, 6), -1, 1, 16)};
    gradcheck("avg_pool2d k3 s2 p1", avg_pool_fn, &g, 1, in);
    Geom o = {2, 3, 1, 0, 1, 1}; /* stride 1x3 (0 -> kernel) with padding */
    gradcheck("avg_pool2d k2x3 s1x3 p1", avg_pool_fn, &o, 1, in);
    release_all(1, in);
}

/* ---- ops: parity with PyTorch (float32) ---- */

/* Runs the op of `kase`, backpropagates the fixture's weight gw and compares
 * the output and every gradient with torch's. */
static void check_case(json_t *fx, const char *name) {
    json_t *kase = fixture_case(fx, name);
    bool conv = strncmp(name, "conv", 4) == 0, max = strncmp(name, "max", 3) == 0;
    Tensor *x = fixture_tensor(kase, "x"), *gw = fixture_tensor(kase, "gw");
    Tensor *w = conv ? fixture_tensor(kase, "weight") : NULL;
    Tensor *b = conv ? fixture_tensor(kase, "bias") : NULL;
    tensor_set_requires_grad(x, true);
    Tensor *out;
    if (conv) {
        tensor_set_requires_grad(w, true);
        tensor_set_requires_grad(b, true);
        int s = (int)fixture_number(kase, "stride"), p = (int)fixture_number(kase, "padding");
        out = tensor_conv2d(x, w, b, s, s, p, p);
    } else {
        int k = (int)fixture_number(kase, "kernel"), s = (int)fixture_number(kase, "stride");
        int p = (int)fixture_number(kase, "padding");
        out = max ? tensor_max_pool2d(x, k, k, s, s, p, p) : tensor_avg_pool2d(x, k, k, s, s, p, p);
    }
    cr_assert(out != NULL, "%s: %s", name, error_get());
    Tensor *want = fixture_tensor(kase, "out");
    assert_tensor_close(out, want, 1e-5, 1e-6, name);
    cr_assert(tensor_backward_with(out, gw) == 0, "%s: %s", name, error_get());
    Tensor *gx = fixture_tensor(kase, "gx");
    assert_tensor_close(x->grad, gx, 1e-5, 1e-6, "gx");
    tensor_release(gx);
    if (conv) {
        Tensor *gwt = fixture_tensor(kase, "gweight"), *gbt = fixture_tensor(kase, "gbias");
        assert_tensor_close(w->grad, gwt, 1e-5, 1e-6, "gweight");
        assert_tensor_close(b->grad, gbt, 1e-5, 1e-6, "gbias");
        tensor_release(gwt), tensor_release(gbt);
    }
    tensor_release(want), tensor_release(out), tensor_release(gw);
    tensor_release(x), tensor_release(w), tensor_release(b);
}

Test(conv_pool_torch, conv2d) {
    json_t *fx = fixture_load("conv_pool");
    check_case(fx, "conv_s1p1");
    check_case(fx, "conv_s2p0");
    json_decref(fx);
}

Test(conv_pool_torch, max_pool2d) {
    json_t *fx = fixture_load("conv_pool");
    check_case(fx, "maxpool_k2");
    check_case(fx, "maxpool_k3s2p1");
    json_decref(fx);
}

Test(conv_pool_torch, avg_pool2d) {
    json_t *fx = fixture_load("conv_pool");
    check_case(fx, "avgpool_k2");
    check_case(fx, "avgpool_k3s2p1");
    json_decref(fx);
}

/* ---- ops: bad input ---- */

#define EXPECT_ERROR(call, text)                                                                 \
    do {                                                                                         \
        error_clear();                                                                           \
        Tensor *r_ = (call);                                                                     \
        cr_expect(r_ == NULL, "%s should fail", #call);                                          \
        tensor_release(r_);                                                                      \
        cr_expect(strstr(error_get(), text) != NULL, "error '%s' lacks '%s'", error_get(), text); \
    } while (0)

Test(conv2d, rejects_bad_shapes_with_clear_errors) {
    Device cpu = DEVICE_CPU_INIT;
    Tensor *x = tensor_zeros(SHAPE(2, 3, 5, 5), DTYPE_FLOAT32, cpu);
    Tensor *w1 = tensor_zeros(SHAPE(32, 1, 3, 3), DTYPE_FLOAT32, cpu);
    Tensor *w = tensor_zeros(SHAPE(4, 3, 3, 3), DTYPE_FLOAT32, cpu);
    Tensor *w64 = tensor_zeros(SHAPE(4, 3, 3, 3), DTYPE_FLOAT64, cpu);
    Tensor *big = tensor_zeros(SHAPE(4, 3, 8, 8), DTYPE_FLOAT32, cpu);
    Tensor *x3 = tensor_zeros(SHAPE(3, 5, 5), DTYPE_FLOAT32, cpu);
    Tensor *w2 = tensor_zeros(SHAPE(4, 27), DTYPE_FLOAT32, cpu);
    Tensor *b5 = tensor_zeros(SHAPE(5), DTYPE_FLOAT32, cpu);
    Tensor *xi = tensor_zeros(SHAPE(2, 3, 5, 5), DTYPE_INT64, cpu);
    EXPECT_ERROR(tensor_conv2d(x, w1, NULL, 1, 1, 0, 0),
                 "conv2d: input has 3 channels but weight expects 1 ([32, 1, 3, 3])");
    EXPECT_ERROR(tensor_conv2d(x3, w, NULL, 1, 1, 0, 0), "conv2d: expected a 4-d input");
    EXPECT_ERROR(tensor_conv2d(x3, w, NULL, 1, 1, 0, 0), "[3, 5, 5]");
    EXPECT_ERROR(tensor_conv2d(x, w2, NULL, 1, 1, 0, 0), "weight must be 4-d");
    EXPECT_ERROR(tensor_conv2d(x, big, NULL, 1, 1, 1, 1),
                 "kernel 8x8 is larger than the padded input 7x7");
    EXPECT_ERROR(tensor_conv2d(x, w, b5, 1, 1, 0, 0), "bias has shape [5]");
    EXPECT_ERROR(tensor_conv2d(x, w64, NULL, 1, 1, 0, 0), "weight is float64 but input is float32");
    EXPECT_ERROR(tensor_conv2d(xi, w, NULL, 1, 1, 0, 0), "expected a float input, got int64");
    EXPECT_ERROR(tensor_conv2d(x, w, NULL, 0, 1, 0, 0), "stride must be positive");
    EXPECT_ERROR(tensor_conv2d(x, w, NULL, 1, 1, -1, 0), "padding must be non-negative");
    error_set("earlier");
    cr_expect(tensor_conv2d(NULL, w, NULL, 1, 1, 0, 0) == NULL);
    cr_expect_str_eq(error_get(), "earlier");
    tensor_release(x), tensor_release(w1), tensor_release(w), tensor_release(w64);
    tensor_release(big), tensor_release(x3), tensor_release(w2), tensor_release(b5);
    tensor_release(xi);
}

Test(pool2d, rejects_bad_arguments_with_clear_errors) {
    Device cpu = DEVICE_CPU_INIT;
    Tensor *x = tensor_zeros(SHAPE(1, 2, 4, 4), DTYPE_FLOAT32, cpu);
    Tensor *x2 = tensor_zeros(SHAPE(4, 4), DTYPE_FLOAT32, cpu);
    Tensor *xi = tensor_zeros(SHAPE(1, 2, 4, 4), DTYPE_UINT8, cpu);
    EXPECT_ERROR(tensor_max_pool2d(x, 3, 3, 1, 1, 2, 2),
                 "max_pool2d: padding 2x2 must be at most half the kernel 3x3");
    EXPECT_ERROR(tensor_avg_pool2d(x, 2, 2, 0, 0, 0, 2), "avg_pool2d: padding 0x2");
    EXPECT_ERROR(tensor_max_pool2d(x2, 2, 2, 0, 0, 0, 0), "max_pool2d: expected a 4-d input");
    EXPECT_ERROR(tensor_avg_pool2d(x, 5, 5, 1, 1, 0, 0),
                 "avg_pool2d: kernel 5x5 is larger than the padded input 4x4");
    EXPECT_ERROR(tensor_max_pool2d(x, 0, 2, 1, 1, 0, 0), "kernel size must be positive");
    EXPECT_ERROR(tensor_max_pool2d(xi, 2, 2, 0, 0, 0, 0), "expected a float input, got uint8");
    EXPECT_ERROR(tensor_max_pool2d(x, 2, 2, -1, 1, 0, 0), "stride must be positive");
    tensor_release(x), tensor_release(x2), tensor_release(xi);
}

Test(pool2d, output_shapes_follow_torch) {
    Tensor *x = tensor_zeros(SHAPE(2, 3, 7, 7), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *a = tensor_max_pool2d(x, 2, 2, 0, 0, 0, 0);   /* 3x3, floor */
    Tensor *b = tensor_avg_pool2d(x, 3, 3, 2, 2, 1, 1);   /* 4x4 */
    Tensor *c = tensor_max_pool2d(x, 3, 1, 2, 1, 0, 0);   /* 3x7 */
    char s[64];
    cr_expect_str_eq(tensor_shape_str(a, s, sizeof s), "[2, 3, 3, 3]");
    cr_expect_str_eq(tensor_shape_str(b, s, sizeof s), "[2, 3, 4, 4]");
    cr_expect_str_eq(tensor_shape_str(c, s, sizeof s), "[2, 3, 3, 7]");
    tensor_release(x), tensor_release(a), tensor_release(b), tensor_release(c);
}

/* A batch: image i lands in columns i*L.. of rows `ld` apart, exactly as
 * one image alone would, and col2im of the batch undoes it image by image. */
Test(conv_kernels, batched_im2col_and_col2im_match_per_image) {
    Rng rng;
    rng_init(&rng, 9);
    Window2d g = geometry(1);
    int64_t per = g.channels * g.height * g.width, K = g.channels * g.kernel_h * g.kernel_w;
    int64_t L = g.out_h * g.out_w, n = 3, ld = n * L + 5;
    double *imgs = random_doubles(&rng, n * per);
    double *cols = calloc((size_t)(K * ld), sizeof *cols);
    double *one = malloc((size_t)(K * L) * sizeof *one);
    double *back = malloc((size_t)(n * per) * sizeof *back);
    double *back_one = malloc((size_t)per * sizeof *back_one);
    cr_assert(cols && one && back && back_one);
    cpu_im2col(DTYPE_FLOAT64, &g, imgs, n, cols, ld);
    cpu_col2im(DTYPE_FLOAT64, &g, cols, ld, n, back);
    for (int64_t i = 0; i < n; i++) {
        cpu_im2col(DTYPE_FLOAT64, &g, imgs + i * per, 1, one, L);
        for (int64_t r = 0; r < K; r++)
            for (int64_t c = 0; c < L; c++)
                cr_assert_eq(cols[r * ld + i * L + c], one[r * L + c], "image %ld row %ld col %ld",
                             (long)i, (long)r, (long)c);
        cpu_col2im(DTYPE_FLOAT64, &g, one, L, 1, back_one);
        for (int64_t j = 0; j < per; j++)
            cr_assert_eq(back[i * per + j], back_one[j], "col2im image %ld element %ld", (long)i,
                         (long)j);
    }
    free(imgs), free(cols), free(one), free(back), free(back_one);
}

/* ---- adaptive_avg_pool2d ---- */

Test(adaptive_avg_pool2d, bins_follow_torch_rule) {
    /* 5 columns into 3 bins: [0, 2), [1, 4), [3, 5): overlapping, sizes 2, 3, 2;
     * 1 row into 2 bins: both [0, 1). */
    double v[5] = {1, 2, 3, 4, 5};
    Tensor *x = make(v, 1, 1, 1, 5, DTYPE_FLOAT64);
    tensor_set_requires_grad(x, true);
    Tensor *y = tensor_adaptive_avg_pool2d(x, 2, 3);
    cr_assert(y != NULL, "%s", error_get());
    assert_tensor_values(y, (double[]){1.5, 3, 4.5, 1.5, 3, 4.5}, 6, 1e-15, "means");
    /* Backward: each bin gives its gradient / its size to its pixels. */
    Tensor *gy = make((double[]){2, 3, 4, 20, 30, 40}, 1, 1, 2, 3, DTYPE_FLOAT64);
    cr_assert(tensor_backward_with(y, gy) == 0, "%s", error_get());
    double want[5] = {11, 11 + 11, 11, 11 + 22, 22};
    assert_tensor_values(x->grad, want, 5, 1e-13, "gx");
    tensor_release(x), tensor_release(y), tensor_release(gy);
}

typedef struct {
    int out_h, out_w;
} OutSize;

static Tensor *adaptive_fn(Tensor **in, void *ctx) {
    const OutSize *o = ctx;
    return tensor_adaptive_avg_pool2d(in[0], o->out_h, o->out_w);
}

Test(adaptive_avg_pool2d, gradcheck) {
    Tensor *in[1] = {gradcheck_input(SHAPE(2, 3, 7, 5), -1, 1, 17)};
    const OutSize sizes[] = {{3, 2}, {1, 1}, {7, 5}, {9, 8}, {2, 4}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char name[64];
        snprintf(name, sizeof name, "adaptive_avg_pool2d 7x5 -> %dx%d", sizes[i].out_h,
                 sizes[i].out_w);
        gradcheck(name, adaptive_fn, (void *)&sizes[i], 1, in);
    }
    release_all(1, in);
}

Test(conv_pool_torch, adaptive_avg_pool2d) {
    json_t *fx = fixture_load("conv_pool");
    const char *names[] = {"adaptive_7x5_to_3x2", "adaptive_4x6_to_1x1", "adaptive_3x3_to_4x5"};
    for (int i = 0; i < 3; i++) {
        json_t *kase = fixture_case(fx, names[i]);
        Tensor *x = fixture_tensor(kase, "x"), *gw = fixture_tensor(kase, "gw");
        tensor_set_requires_grad(x, true);
        Tensor *out = tensor_adaptive_avg_pool2d(x, (int)fixture_number(kase, "out_h"),
                                                 (int)fixture_number(kase, "out_w"));
        cr_assert(out != NULL, "%s: %s", names[i], error_get());
        fixture_assert_close(kase, "out", out, 1e-5, 1e-6, names[i]);
        cr_assert(tensor_backward_with(out, gw) == 0, "%s: %s", names[i], error_get());
        fixture_assert_close(kase, "gx", x->grad, 1e-5, 1e-6, names[i]);
        tensor_release(x), tensor_release(gw), tensor_release(out);
    }
    json_decref(fx);
}

Test(adaptive_avg_pool2d, rejects_bad_input_with_clear_errors) {
    Device cpu = DEVICE_CPU_INIT;
    Tensor *x3 = tensor_zeros(SHAPE(2, 4, 4), DTYPE_FLOAT32, cpu);
    Tensor *empty = tensor_zeros(SHAPE(2, 3, 0, 4), DTYPE_FLOAT32, cpu);
    Tensor *xi = tensor_zeros(SHAPE(1, 2, 4, 4), DTYPE_INT64, cpu);
    Tensor *x = tensor_zeros(SHAPE(1, 2, 4, 4), DTYPE_FLOAT32, cpu);
    EXPECT_ERROR(tensor_adaptive_avg_pool2d(x3, 1, 1),
                 "adaptive_avg_pool2d: expected a 4-d input [N, C, H, W], got [2, 4, 4]");
    EXPECT_ERROR(tensor_adaptive_avg_pool2d(empty, 1, 1),
                 "expected non-empty channels and planes, got [2, 3, 0, 4]");
    EXPECT_ERROR(tensor_adaptive_avg_pool2d(xi, 1, 1), "expected a float input, got int64");
    EXPECT_ERROR(tensor_adaptive_avg_pool2d(x, 0, 2), "output size must be positive, got 0x2");
    /* An empty batch is fine, as in torch. */
    Tensor *none = tensor_zeros(SHAPE(0, 2, 4, 4), DTYPE_FLOAT32, cpu);
    Tensor *y = tensor_adaptive_avg_pool2d(none, 2, 2);
    cr_assert(y != NULL && y->shape[0] == 0 && y->shape[2] == 2, "%s", error_get());
    tensor_release(x3), tensor_release(empty), tensor_release(xi), tensor_release(x),
        tensor_release(none), tensor_release(y);
}
