/* test_cpu_kernels.c - the CPU backend's core kernels (elementwise, reduce,
 * gemm, softmax, random, optimizer updates) called directly through
 * cpu_backend on small hand-built tensors, in float32 and float64, against
 * hand values and naive loops. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "core/cpu/dnnl.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "tests/support/fixture.h"
#include "tests/support/optim_one.h"

static const DType float_dtypes[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
#define FOR_EACH_DTYPE(dt)                                                                         \
    for (int di_ = 0; di_ < 2; di_++)                                                              \
        for (DType dt = float_dtypes[di_], once_ = 1; once_; once_ = 0)

static Tensor *from(const double *v, int ndim, const int64_t *shape, DType dt) {
    Tensor *t = tensor_from_doubles(v, ndim, shape, dt);
    cr_assert(t != NULL, "tensor_from_doubles: %s", error_get());
    return t;
}

static Tensor *empty(int ndim, const int64_t *shape, DType dt) {
    Tensor *t = tensor_empty(ndim, shape, dt, DEVICE_CPU_INIT);
    cr_assert(t != NULL, "tensor_empty: %s", error_get());
    return t;
}

static Tensor *view(Tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                    int64_t offset) {
    Tensor *v = tensor_make_view(t, ndim, shape, strides, offset);
    cr_assert(v != NULL, "tensor_make_view: %s", error_get());
    return v;
}

/* Exact comparison that also accepts NaN == NaN and tells -0.0 from 0.0
 * when `signed_zero`. */
static void assert_exact(const Tensor *t, const double *want, int64_t n, const char *what) {
    cr_assert_eq(tensor_numel(t), n, "%s: numel", what);
    for (int64_t i = 0; i < n; i++) {
        double got = tensor_get(t, i);
        if (isnan(want[i]))
            cr_assert(isnan(got), "%s[%lld]: got %.17g, want NaN", what, (long long)i, got);
        else
            cr_assert(got == want[i] && signbit(got) == signbit(want[i]),
                      "%s[%lld]: got %.17g, want %.17g", what, (long long)i, got, want[i]);
    }
}

/* Rounds v to the dtype, as the kernels store it. */
static double round_to(DType dt, double v) { return dt == DTYPE_FLOAT32 ? (double)(float)v : v; }

/* ---- binary ---- */

Test(cpu_kernels, binary_dense_every_op) {
    const double av[] = {1, -2, 4, 0.25, 2, NAN, 3, -1};
    const double bv[] = {2, 4, -1, 0.5, 3, 1, 3, -1};
    FOR_EACH_DTYPE(dt) {
        Tensor *a = from(av, SHAPE(2, 4), dt), *b = from(bv, SHAPE(2, 4), dt);
        Tensor *out = empty(SHAPE(2, 4), dt);
        const struct {
            BinaryOp op;
            double want[8];
        } cases[] = {
            {BINARY_ADD, {3, 2, 3, 0.75, 5, NAN, 6, -2}},
            {BINARY_SUB, {-1, -6, 5, -0.25, -1, NAN, 0, 0}},
            {BINARY_MUL, {2, -8, -4, 0.125, 6, NAN, 9, 1}},
            {BINARY_DIV, {0.5, -0.5, -4, 0.5, round_to(dt, 2.0 / 3.0), NAN, 1, 1}},
            {BINARY_POW, {1, 16, 0.25, 0.5, 8, NAN, 27, -1}},
            {BINARY_MAX, {2, 4, 4, 0.5, 3, NAN, 3, -1}},
            {BINARY_GT, {0, 0, 1, 0, 0, 0, 0, 0}},
            {BINARY_EQ, {0, 0, 0, 0, 0, 0, 1, 1}},
        };
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            char what[32];
            snprintf(what, sizeof what, "binary op %d %s", (int)cases[c].op, dtype_name(dt));
            cpu_backend.binary(cases[c].op, a, b, out);
            assert_exact(out, cases[c].want, 8, what);
        }
        tensor_release(a);
        tensor_release(b);
        tensor_release(out);
    }
}

Test(cpu_kernels, binary_max_propagates_nan_from_either_side) {
    const double av[] = {NAN, 1, 2, -INFINITY};
    const double bv[] = {1, NAN, 3, -1};
    FOR_EACH_DTYPE(dt) {
        Tensor *a = from(av, SHAPE(4), dt), *b = from(bv, SHAPE(4), dt), *out = empty(SHAPE(4), dt);
        cpu_backend.binary(BINARY_MAX, a, b, out);
        assert_exact(out, (double[]){NAN, NAN, 3, -1}, 4, "max");
        tensor_release(a);
        tensor_release(b);
        tensor_release(out);
    }
}

Test(cpu_kernels, binary_scalar_broadcast_either_side) {
    const double sv[] = {10};
    const double bv[] = {1, 2, 3, 4, 5, 6};
    FOR_EACH_DTYPE(dt) {
        Tensor *s = from(sv, SHAPE(1), dt), *b = from(bv, SHAPE(2, 3), dt);
        Tensor *sb = view(s, SHAPE(2, 3), (int64_t[]){0, 0}, 0);
        Tensor *out = empty(SHAPE(2, 3), dt);
        cpu_backend.binary(BINARY_SUB, sb, b, out);
        assert_exact(out, (double[]){9, 8, 7, 6, 5, 4}, 6, "scalar - b");
        cpu_backend.binary(BINARY_SUB, b, sb, out);
        assert_exact(out, (double[]){-9, -8, -7, -6, -5, -4}, 6, "b - scalar");
        cpu_backend.binary(BINARY_DIV, sb, sb, out); /* both broadcast: strided path */
        assert_exact(out, (double[]){1, 1, 1, 1, 1, 1}, 6, "scalar / scalar");
        tensor_release(sb);
        tensor_release(s);
        tensor_release(b);
        tensor_release(out);
    }
}

Test(cpu_kernels, binary_general_strides_match_naive) {
    /* a: [2, 1, 3] broadcast to [2, 4, 3]; b: [4, 1] broadcast to [2, 4, 3]. */
    const double av[] = {1, 2, 3, 4, 5, 6};
    const double bv[] = {10, 20, 30, 40};
    FOR_EACH_DTYPE(dt) {
        Tensor *a = from(av, SHAPE(2, 1, 3), dt), *b = from(bv, SHAPE(4, 1), dt);
        Tensor *ab = view(a, SHAPE(2, 4, 3), (int64_t[]){3, 0, 1}, 0);
        Tensor *bb = view(b, SHAPE(2, 4, 3), (int64_t[]){0, 1, 0}, 0);
        Tensor *out = empty(SHAPE(2, 4, 3), dt);
        cpu_backend.binary(BINARY_MUL, ab, bb, out);
        double want[24];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 3; k++) want[(i * 4 + j) * 3 + k] = av[i * 3 + k] * bv[j];
        assert_exact(out, want, 24, "broadcast mul");
        tensor_release(ab);
        tensor_release(bb);
        tensor_release(a);
        tensor_release(b);
        tensor_release(out);
    }
}

Test(cpu_kernels, binary_transposed_and_offset_views) {
    /* a = storage [0..11] as [3, 4]; its transpose [4, 3]; b = a narrow
     * with an offset and a row stride of 4. */
    double v[12];
    for (int i = 0; i < 12; i++) v[i] = i;
    FOR_EACH_DTYPE(dt) {
        Tensor *base = from(v, SHAPE(3, 4), dt);
        Tensor *at = view(base, SHAPE(4, 3), (int64_t[]){1, 4}, 0); /* base^T */
        Tensor *bn = view(base, SHAPE(4, 3), (int64_t[]){0, 4}, 1); /* column 1, repeated */
        Tensor *out = empty(SHAPE(4, 3), dt);
        cpu_backend.binary(BINARY_ADD, at, bn, out);
        double want[12];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++) want[i * 3 + j] = v[j * 4 + i] + v[1 + j * 4];
        assert_exact(out, want, 12, "transposed add");
        tensor_release(at);
        tensor_release(bn);
        tensor_release(base);
        tensor_release(out);
    }
}

Test(cpu_kernels, binary_zero_dim_and_empty) {
    FOR_EACH_DTYPE(dt) {
        Tensor *a = tensor_scalar(3, dt, DEVICE_CPU_INIT),
               *b = tensor_scalar(4, dt, DEVICE_CPU_INIT);
        Tensor *out = tensor_scalar(0, dt, DEVICE_CPU_INIT);
        cr_assert(a && b && out);
        cpu_backend.binary(BINARY_POW, a, b, out);
        cr_assert_eq(tensor_item(out), 81);
        Tensor *e = empty(SHAPE(0, 3), dt);
        cpu_backend.binary(BINARY_ADD, e, e, e); /* nothing to do, nothing touched */
        tensor_release(a);
        tensor_release(b);
        tensor_release(out);
        tensor_release(e);
    }
}

/* ---- unary ---- */

Test(cpu_kernels, unary_every_op) {
    const double xv[] = {-2, -0.5, 0, 0.25, 1.5, 4};
    FOR_EACH_DTYPE(dt) {
        Tensor *x = from(xv, SHAPE(6), dt), *out = empty(SHAPE(6), dt);
        for (int op = UNARY_NEG; op <= UNARY_CLAMP_MAX; op++) {
            double alpha = 0.75;
            if (op == UNARY_POW) alpha = 3;
            cpu_backend.unary((UnaryOp)op, x, alpha, out);
            for (int i = 0; i < 6; i++) {
                double v = xv[i], w = 0;
                switch ((UnaryOp)op) {
                case UNARY_NEG: w = -v; break;
                case UNARY_EXP: w = exp(v); break;
                case UNARY_LOG: w = log(v); break;
                case UNARY_SQRT: w = sqrt(v); break;
                case UNARY_ABS: w = fabs(v); break;
                case UNARY_SIGN: w = v > 0 ? 1 : v < 0 ? -1 : 0; break;
                case UNARY_RELU: w = v > 0 ? v : 0; break;
                case UNARY_SIGMOID: w = 1 / (1 + exp(-v)); break;
                case UNARY_TANH: w = tanh(v); break;
                case UNARY_POW: w = v * v * v; break;
                case UNARY_MUL_SCALAR: w = v * 0.75; break;
                case UNARY_ADD_SCALAR: w = v + 0.75; break;
                case UNARY_RSUB_SCALAR: w = 0.75 - v; break;
                case UNARY_RDIV_SCALAR: w = 0.75 / v; break;
                case UNARY_GT_SCALAR: w = v > 0.75; break;
                case UNARY_CLAMP_MIN: w = v < 0.75 ? 0.75 : v; break;
                case UNARY_CLAMP_MAX: w = v > 0.75 ? 0.75 : v; break;
                default: cr_assert_fail("op %d", op);
                }
                double got = tensor_get(out, i);
                double tol = dt == DTYPE_FLOAT32 ? 5e-7 * fabs(w) : 1e-15 * fabs(w);
                if (isnan(w))
                    cr_assert(isnan(got), "op %d x=%g: got %g, want NaN", op, v, got);
                else if (isinf(w))
                    cr_assert_eq(got, w, "op %d x=%g: got %g, want %g", op, v, got, w);
                else
                    cr_assert(fabs(got - w) <= tol, "op %d x=%g (%s): got %.17g, want %.17g", op, v,
                              dtype_name(dt), got, w);
            }
        }
        tensor_release(x);
        tensor_release(out);
    }
}

Test(cpu_kernels, unary_float_edge_cases_match_torch) {
    const double xv[] = {0, -0.0, NAN, -100, 100, -1000};
    FOR_EACH_DTYPE(dt) {
        Tensor *x = from(xv, SHAPE(6), dt), *out = empty(SHAPE(6), dt);
        cpu_backend.unary(UNARY_RELU, x, 0, out);
        assert_exact(out, (double[]){0, -0.0, NAN, 0, 100, 0}, 6, "relu");
        cpu_backend.unary(UNARY_SIGN, x, 0, out);
        assert_exact(out, (double[]){0, 0, 0, -1, 1, -1}, 6, "sign");
        cpu_backend.unary(UNARY_CLAMP_MIN, x, 1, out);
        assert_exact(out, (double[]){1, 1, NAN, 1, 100, 1}, 6, "clamp_min");
        cpu_backend.unary(UNARY_SIGMOID, x, 0, out);
        cr_assert_eq(tensor_get(out, 0), 0.5);
        cr_assert(tensor_get(out, 3) > 0 && tensor_get(out, 3) < 1e-40,
                  "sigmoid(-100) tiny, not 0");
        cr_assert_eq(tensor_get(out, 4), 1);
        cr_assert_eq(tensor_get(out, 5), 0); /* exp(-1000) underflows cleanly, no NaN */
        cpu_backend.unary(UNARY_POW, x, 2, out);
        assert_exact(out, (double[]){0, 0, NAN, 10000, 10000, 1e6}, 6, "pow 2");
        cpu_backend.unary(UNARY_GT_SCALAR, x, -1, out);
        assert_exact(out, (double[]){1, 1, 0, 0, 1, 0}, 6, "gt scalar");
        tensor_release(x);
        tensor_release(out);
    }
}

Test(cpu_kernels, unary_backward_relu_sigmoid_tanh) {
    const double xv[] = {-1, 0, 2, 0.5};
    const double gv[] = {3, 5, 7, -2};
    FOR_EACH_DTYPE(dt) {
        Tensor *x = from(xv, SHAPE(4), dt), *gy = from(gv, SHAPE(4), dt);
        Tensor *gx = empty(SHAPE(4), dt);
        cpu_backend.unary_backward(UNARY_RELU, x, NULL, 0, gy, gx);
        assert_exact(gx, (double[]){0, 0, 7, -2}, 4, "relu backward"); /* x = 0 gives 0 */

        /* y = 0.25 -> y(1-y) = 0.1875; tanh: 1 - y^2 = 0.9375. Hand values. */
        const double yv[] = {0.25, 0.5, 0.75, -0.5};
        Tensor *yy = from(yv, SHAPE(4), dt);
        cpu_backend.unary_backward(UNARY_SIGMOID, NULL, yy, 0, gy, gx);
        assert_exact(gx, (double[]){3 * 0.1875, 5 * 0.25, 7 * 0.1875, -2 * 1.5 * -0.5}, 4,
                     "sigmoid backward");
        cpu_backend.unary_backward(UNARY_TANH, NULL, yy, 0, gy, gx);
        assert_exact(gx, (double[]){3 * 0.9375, 5 * 0.75, 7 * 0.4375, -2 * 0.75}, 4,
                     "tanh backward");
        tensor_release(x);
        tensor_release(yy);
        tensor_release(gy);
        tensor_release(gx);
    }
}

/* ---- sum ---- */

/* Naive keepdim sum of x [2, 3, 4] over the dims set in `mask`. */
static void naive_sum(const double *x, int mask, double *out, int64_t oshape[3]) {
    const int64_t shape[3] = {2, 3, 4};
    for (int d = 0; d < 3; d++) oshape[d] = (mask >> d) & 1 ? 1 : shape[d];
    for (int i = 0; i < oshape[0] * oshape[1] * oshape[2]; i++) out[i] = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) {
                int oi = mask & 1 ? 0 : i, oj = mask & 2 ? 0 : j, ok = mask & 4 ? 0 : k;
                out[(oi * oshape[1] + oj) * oshape[2] + ok] += x[(i * 3 + j) * 4 + k];
            }
}

Test(cpu_kernels, sum_every_dim_set) {
    double xv[24];
    for (int i = 0; i < 24; i++) xv[i] = (i * 7 % 11) - 4.5;
    FOR_EACH_DTYPE(dt) {
        Tensor *x = from(xv, SHAPE(2, 3, 4), dt);
        for (int mask = 0; mask < 8; mask++) {
            double want[24];
            int64_t oshape[3];
            naive_sum(xv, mask, want, oshape);
            Tensor *out = empty(3, oshape, dt);
            cpu_backend.sum(x, out);
            char what[32];
            snprintf(what, sizeof what, "sum mask %d", mask);
            assert_exact(out, want, oshape[0] * oshape[1] * oshape[2], what);
            tensor_release(out);
        }
        tensor_release(x);
    }
}

Test(cpu_kernels, sum_wide_columns_and_size_one_dims) {
    /* [3, 1, 600] over dim 0: the blocked column path, with a block boundary. */
    int64_t cols = 600;
    double *xv = malloc(3 * 600 * sizeof *xv);
    cr_assert(xv);
    for (int i = 0; i < 1800; i++) xv[i] = i % 13;
    FOR_EACH_DTYPE(dt) {
        Tensor *x = from(xv, SHAPE(3, 1, 600), dt), *out = empty(SHAPE(1, 1, 600), dt);
        cpu_backend.sum(x, out);
        for (int64_t j = 0; j < cols; j++)
            cr_assert_eq(tensor_get(out, j), xv[j] + xv[600 + j] + xv[1200 + j], "col %lld",
                         (long long)j);
        tensor_release(x);
        tensor_release(out);
    }
    free(xv);
}

Test(cpu_kernels, sum_scalar_and_empty) {
    FOR_EACH_DTYPE(dt) {
        Tensor *x = tensor_scalar(2.5, dt, DEVICE_CPU_INIT),
               *out = tensor_scalar(0, dt, DEVICE_CPU_INIT);
        cpu_backend.sum(x, out);
        cr_assert_eq(tensor_item(out), 2.5);
        Tensor *e = empty(SHAPE(0, 3), dt), *eo = empty(SHAPE(1, 3), dt);
        cpu_backend.sum(e, eo);
        assert_exact(eo, (double[]){0, 0, 0}, 3, "empty sum");
        tensor_release(x);
        tensor_release(out);
        tensor_release(e);
        tensor_release(eo);
    }
}

Test(cpu_kernels, sum_float32_accumulates_in_double) {
    /* 2^20 copies of 0.1f: a float32 running sum drifts by ~1%; the double
     * accumulator gives the correctly rounded float. */
    int64_t n = 1 << 20;
    Tensor *x = tensor_full(SHAPE(1 << 20), 0.1, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *out = empty(SHAPE(1), DTYPE_FLOAT32);
    cr_assert(x);
    cpu_backend.sum(x, out);
    cr_assert_eq(tensor_get(out, 0), (double)(float)((double)0.1f * (double)n));
    tensor_release(x);
    tensor_release(out);
}

/* ---- max / gather / scatter ---- */

Test(cpu_kernels, max_last_dim_first_max_and_nan) {
    const double xv[] = {1, 5, 5, 2, /**/ -3, -1, -2, -1, /**/ 0, NAN, 9, NAN};
    FOR_EACH_DTYPE(dt) {
        Tensor *x = from(xv, SHAPE(3, 4), dt), *out = empty(SHAPE(3), dt);
        Tensor *idx = tensor_empty(SHAPE(3), DTYPE_INT64, DEVICE_CPU_INIT);
        cpu_backend.max_last_dim(x, out, idx);
        assert_exact(out, (double[]){5, -1, NAN}, 3, "max");
        assert_exact(idx, (double[]){1, 1, 1}, 3, "argmax");
        cpu_backend.max_last_dim(x, NULL, idx); /* indices only */
        assert_exact(idx, (double[]){1, 1, 1}, 3, "argmax only");
        tensor_release(x);
        tensor_release(out);
        tensor_release(idx);
    }
}

Test(cpu_kernels, class_loss_rows_and_backward) {
    /* rows: lp [3, 3] with targets 2, ignored (-100), 0; eps 0 and 0.3 */
    const double xv[] = {-1, -2, -3, -4, -5, -6, -0.5, -1.5, -2.5};
    const double iv[] = {2, -100, 0}, gv[] = {2, 7, -1};
    FOR_EACH_DTYPE(dt) {
        Tensor *x = from(xv, SHAPE(3, 3), dt), *idx = from(iv, SHAPE(3), DTYPE_INT64);
        Tensor *g = from(gv, SHAPE(3), dt);
        Tensor *loss = empty(SHAPE(3), dt), *w = empty(SHAPE(3), dt), *gx = empty(SHAPE(3, 3), dt);
        cpu_backend.class_loss_rows(x, idx, -100, 0, loss, w);
        assert_exact(loss, (double[]){3, 0, 0.5}, 3, "nll rows");
        assert_exact(w, (double[]){1, 0, 1}, 3, "weights");
        cpu_backend.class_loss_rows_backward(g, idx, -100, 0, gx);
        assert_exact(gx, (double[]){0, 0, -2, 0, 0, 0, 1, 0, 0}, 9, "nll backward");
        /* eps 0.75 (eps / C = 0.25, all exact): -0.25 lp[t] - 0.25 sum(lp) */
        cpu_backend.class_loss_rows(x, idx, -100, 0.75, loss, w);
        assert_exact(loss, (double[]){0.75 + 1.5, 0, 0.125 + 1.125}, 3, "smoothed rows");
        cpu_backend.class_loss_rows_backward(g, idx, -100, 0.75, gx);
        assert_exact(gx, (double[]){-0.5, -0.5, -1, 0, 0, 0, 0.5, 0.25, 0.25}, 9,
                     "smoothed backward");
        tensor_release(x), tensor_release(idx), tensor_release(g), tensor_release(loss),
            tensor_release(w), tensor_release(gx);
    }
}

/* ---- gemm ---- */

Test(cpu_kernels, gemm_all_transpose_combos_match_naive) {
    const int64_t m = 3, n = 5, k = 4;
    Rng rng;
    rng_init(&rng, 42);
    double av[20], bv[20], cv[15];
    for (int i = 0; i < 20; i++) av[i] = rng_uniform_range(&rng, -1, 1);
    for (int i = 0; i < 20; i++) bv[i] = rng_uniform_range(&rng, -1, 1);
    for (int i = 0; i < 15; i++) cv[i] = rng_uniform_range(&rng, -1, 1);
    FOR_EACH_DTYPE(dt) {
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                /* op(A) [m, k] is stored as A [m, k] or A [k, m]; same for B. */
                Tensor *a = ta ? from(av, SHAPE(4, 3), dt) : from(av, SHAPE(3, 4), dt);
                Tensor *b = tb ? from(bv, SHAPE(5, 4), dt) : from(bv, SHAPE(4, 5), dt);
                Tensor *c = from(cv, SHAPE(3, 5), dt);
                double alpha = 1.5, beta = -0.5;
                cpu_backend.gemm(dt, ta, tb, m, n, k, alpha, tensor_data(a), ta ? m : k,
                                 tensor_data(b), tb ? k : n, beta, tensor_data(c), n);
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double s = 0;
                        for (int64_t p = 0; p < k; p++) {
                            double x = tensor_get(a, ta ? p * m + i : i * k + p);
                            double y = tensor_get(b, tb ? j * k + p : p * n + j);
                            s += x * y;
                        }
                        double want = alpha * s + beta * round_to(dt, cv[i * n + j]);
                        double got = tensor_get(c, i * n + j);
                        double tol = dt == DTYPE_FLOAT32 ? 1e-5 : 1e-13;
                        cr_assert(fabs(got - want) <= tol,
                                  "ta=%d tb=%d %s (%lld,%lld): %.9g vs %.9g", ta, tb,
                                  dtype_name(dt), (long long)i, (long long)j, got, want);
                    }
                tensor_release(a);
                tensor_release(b);
                tensor_release(c);
            }
    }
}

Test(cpu_kernels, gemm_row_strides_and_k_zero) {
    /* A is the left 2 columns of a [2, 3] buffer (lda = 3). */
    const double av[] = {1, 2, 99, 3, 4, 99};
    const double bv[] = {5, 6, 7, 8};
    FOR_EACH_DTYPE(dt) {
        Tensor *a = from(av, SHAPE(2, 3), dt), *b = from(bv, SHAPE(2, 2), dt);
        Tensor *c = tensor_full(SHAPE(2, 2), NAN, dt, DEVICE_CPU_INIT);
        cpu_backend.gemm(dt, false, false, 2, 2, 2, 1, tensor_data(a), 3, tensor_data(b), 2, 0,
                         tensor_data(c), 2);
        assert_exact(c, (double[]){19, 22, 43, 50}, 4, "gemm lda 3, beta 0 ignores NaN");
        cpu_backend.gemm(dt, false, false, 2, 2, 0, 1, NULL, 0, NULL, 0, 2, tensor_data(c), 2);
        assert_exact(c, (double[]){38, 44, 86, 100}, 4, "k = 0 scales by beta");
        tensor_release(a);
        tensor_release(b);
        tensor_release(c);
    }
}

static float *uniform_floats(int64_t n, Rng *rng) {
    float *x = malloc((size_t)n * sizeof *x);
    cr_assert(x != NULL);
    for (int64_t i = 0; i < n; i++) x[i] = (float)rng_uniform_range(rng, -1, 1);
    return x;
}

/* A plan maker that oneDNN "refuses" for key 1 (no kernel), runs out of
 * memory for key 2, and plans key 3; counting its calls. */
static int plans_made;

static void *fake_plan_make(const void *key) {
    plans_made++;
    int k = *(const int *)key;
    if (k == 1) return cpu_dnnl_failed(dnnl_unimplemented, "test primitive"), NULL;
    if (k == 2) return cpu_dnnl_failed(dnnl_out_of_memory, "test primitive"), NULL;
    int *plan = malloc(sizeof *plan);
    cr_assert(plan != NULL);
    *plan = k;
    return plan;
}

static void fake_plan_drop(void *plan) { free(plan); }

static DnnlPlanCache fake_plans = DNNL_PLAN_CACHE_INIT;

/* The plan cache keeps a key oneDNN refused, and says the same at the next
 * call without planning again; a failure that may pass (memory) is tried
 * again each time; a plan is made once. */
Test(cpu_kernels, onednn_plan_refusal_remembered_memory_retried) {
    bool owned;
    int k = 1;
    cr_assert_null(cpu_dnnl_plan(&fake_plans, &k, sizeof k, fake_plan_make, fake_plan_drop,
                                 &owned));
    const char *refused =
        "oneDNN test primitive: unimplemented: no kernel for this case on this CPU (status 3)";
    cr_assert_str_eq(error_get(), refused);
    error_clear();
    cr_assert_null(cpu_dnnl_plan(&fake_plans, &k, sizeof k, fake_plan_make, fake_plan_drop,
                                 &owned));
    cr_assert_str_eq(error_get(), refused);
    cr_assert_eq(plans_made, 1, "a refused key was planned again");

    k = 2;
    for (int i = 0; i < 2; i++) {
        cr_assert_null(cpu_dnnl_plan(&fake_plans, &k, sizeof k, fake_plan_make, fake_plan_drop,
                                     &owned));
        cr_assert_str_eq(error_get(), "oneDNN test primitive: out of memory (status 1)");
    }
    cr_assert_eq(plans_made, 3, "a failure for want of memory was kept");

    k = 3;
    int *a = cpu_dnnl_plan(&fake_plans, &k, sizeof k, fake_plan_make, fake_plan_drop, &owned);
    int *b = cpu_dnnl_plan(&fake_plans, &k, sizeof k, fake_plan_make, fake_plan_drop, &owned);
    cr_assert(a != NULL && a == b && *a == 3 && !owned);
    cr_assert_eq(plans_made, 4);
}

/* oneDNN's float32 matmul (gemm_dnnl.c) on a product large enough for
 * gemm.c's rule to send it there (m*n*k >= 2^20): every transpose, each
 * case its own row padding of A, B and C (so a plan kept under the wrong
 * key shows), beta 0 over NaN and beta 1, C's padding left as it was;
 * against a float64 loop. */
Test(cpu_kernels, gemm_on_onednn_all_transposes_strides_and_beta) {
    const int64_t m = 64, n = 96, k = 176;
    const float SENTINEL = 1234.5f;
    cr_assert_eq(cpu_gemm_library(DTYPE_FLOAT32, m, n, k, 1, 0), CPU_GEMM_DNNL);
    cr_assert_eq(cpu_gemm_library(DTYPE_FLOAT32, 64, 10, 128, 1, 1), CPU_GEMM_OPENBLAS);
    cr_assert_eq(cpu_gemm_library(DTYPE_FLOAT64, m, n, k, 1, 0), CPU_GEMM_OPENBLAS);
    Rng rng;
    rng_init(&rng, 7);
    for (int case_ = 0; case_ < 8; case_++) {
        bool ta = case_ & 1, tb = case_ & 2, accumulate = case_ & 4;
        int64_t lda = (ta ? m : k) + 1 + case_, ldb = (tb ? k : n) + 2 + case_ % 3;
        int64_t ldc = n + 1 + case_ % 2;
        float *a = uniform_floats((ta ? k : m) * lda, &rng);
        float *b = uniform_floats((tb ? n : k) * ldb, &rng);
        float *c0 = uniform_floats(m * n, &rng), *c = uniform_floats(m * ldc, &rng);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < ldc; j++)
                c[i * ldc + j] = j >= n ? SENTINEL : accumulate ? c0[i * n + j] : NAN;
        double beta = accumulate ? 1 : 0;
        cr_assert_eq(cpu_gemm_dnnl(dnnl_f32, ta, tb, m, n, k, 1, a, lda, b, ldb, beta, c, ldc), 0,
                     "ta=%d tb=%d beta=%g: %s", ta, tb, beta, error_get());
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = 0; j < n; j++) {
                double want = accumulate ? c0[i * n + j] : 0;
                for (int64_t p = 0; p < k; p++)
                    want += (double)a[ta ? p * lda + i : i * lda + p] *
                            (double)b[tb ? j * ldb + p : p * ldb + j];
                double got = c[i * ldc + j];
                cr_assert(fabs(got - want) <= 1e-5 * (1 + fabs(want)),
                          "ta=%d tb=%d beta=%g (%lld,%lld): %.9g vs %.9g", ta, tb, beta,
                          (long long)i, (long long)j, got, want);
            }
            for (int64_t j = n; j < ldc; j++)
                cr_assert_eq(c[i * ldc + j], SENTINEL, "row %lld's padding written", (long long)i);
        }
        free(a), free(b), free(c0), free(c);
    }
}

/* ---- softmax ---- */

Test(cpu_kernels, softmax_hand_values_and_stability) {
    const double xv[] = {0, log(2), log(3), /**/ 1000, 1000, -INFINITY};
    FOR_EACH_DTYPE(dt) {
        double tol = dt == DTYPE_FLOAT32 ? 1e-6 : 1e-15;
        Tensor *x = from(xv, SHAPE(2, 3), dt), *y = empty(SHAPE(2, 3), dt);
        cpu_backend.softmax(x, y, false);
        const double want[] = {1.0 / 6, 2.0 / 6, 3.0 / 6, 0.5, 0.5, 0};
        assert_tensor_values(y, want, 6, tol, "softmax");
        for (int r = 0; r < 2; r++) {
            double s = 0;
            for (int c = 0; c < 3; c++) s += tensor_get(y, r * 3 + c);
            cr_assert(fabs(s - 1) <= tol, "row %d sums to %.17g", r, s);
        }
        cpu_backend.softmax(x, y, true);
        const double lwant[] = {log(1.0 / 6), log(2.0 / 6), log(3.0 / 6),
                                -log(2),      -log(2),      -INFINITY};
        for (int i = 0; i < 5; i++)
            cr_assert(fabs(tensor_get(y, i) - lwant[i]) <= tol, "log_softmax[%d]: %.17g vs %.17g",
                      i, tensor_get(y, i), lwant[i]);
        cr_assert_eq(tensor_get(y, 5), -INFINITY);
        tensor_release(x);
        tensor_release(y);
    }
}

Test(cpu_kernels, softmax_backward_both_variants) {
    const double yv[] = {0.2, 0.3, 0.5};
    const double gv[] = {1, -2, 0.5};
    Tensor *y = from(yv, SHAPE(1, 3), DTYPE_FLOAT64), *gy = from(gv, SHAPE(1, 3), DTYPE_FLOAT64);
    Tensor *gx = empty(SHAPE(1, 3), DTYPE_FLOAT64);
    /* sum(gy * y) = 0.2 - 0.6 + 0.25 = -0.15 */
    cpu_backend.softmax_backward(y, gy, gx, false);
    assert_tensor_values(gx, (double[]){0.2 * 1.15, 0.3 * -1.85, 0.5 * 0.65}, 3, 1e-15,
                         "softmax backward");
    /* log variant, y = log p: gx = gy - p * sum(gy), sum(gy) = -0.5 */
    const double lv[] = {log(0.2), log(0.3), log(0.5)};
    Tensor *ly = from(lv, SHAPE(1, 3), DTYPE_FLOAT64);
    cpu_backend.softmax_backward(ly, gy, gx, true);
    assert_tensor_values(gx, (double[]){1 + 0.1, -2 + 0.15, 0.5 + 0.25}, 3, 1e-15,
                         "log_softmax backward");
    tensor_release(y);
    tensor_release(ly);
    tensor_release(gy);
    tensor_release(gx);
}

/* ---- uniform ---- */

Test(cpu_kernels, uniform_is_the_philox_stream) {
    FOR_EACH_DTYPE(dt) {
        Tensor *out = empty(SHAPE(3, 7), dt);
        cpu_backend.uniform(out, 1234, 6, NULL); /* offset mid-block */
        for (int64_t i = 0; i < 21; i++) {
            double v = tensor_get(out, i);
            cr_assert_eq(v, (double)philox_uniform(1234, 6 + i), "element %lld", (long long)i);
            cr_assert(v >= 0 && v < 1);
        }
        tensor_release(out);
    }
}

/* ---- optimizer updates (float64, hand-computed) ---- */

Test(cpu_kernels, sgd_plain_momentum_nesterov) {
    Tensor *p = from((double[]){1, -2}, SHAPE(2), DTYPE_FLOAT64);
    Tensor *g = from((double[]){0.5, 1}, SHAPE(2), DTYPE_FLOAT64);
    /* plain: p -= 0.1 * g */
    sgd_one(&cpu_backend, p, g, NULL, 0.1, 0, 0, 0, false, true);
    assert_tensor_values(p, (double[]){0.95, -2.1}, 2, 1e-15, "sgd plain");

    /* momentum 0.9, wd 0.1, from p = 1: d = 0.5 + 0.1 = 0.6, buf = 0.6,
     * p = 0.94; step 2: d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134,
     * p = 0.94 - 0.1134 = 0.8266. */
    Tensor *p1 = from((double[]){1}, SHAPE(1), DTYPE_FLOAT64);
    Tensor *g1 = from((double[]){0.5}, SHAPE(1), DTYPE_FLOAT64);
    Tensor *b1 = empty(SHAPE(1), DTYPE_FLOAT64);
    sgd_one(&cpu_backend, p1, g1, b1, 0.1, 0.9, 0, 0.1, false, true);
    assert_tensor_values(p1, (double[]){0.94}, 1, 1e-15, "sgd momentum step 1");
    assert_tensor_values(b1, (double[]){0.6}, 1, 1e-15, "buf step 1");
    sgd_one(&cpu_backend, p1, g1, b1, 0.1, 0.9, 0, 0.1, false, false);
    assert_tensor_values(p1, (double[]){0.8266}, 1, 1e-15, "sgd momentum step 2");
    assert_tensor_values(b1, (double[]){1.134}, 1, 1e-15, "buf step 2");
    /* dampening 0.5 on step 3: d = 0.5 + 0.08266 = 0.58266,
     * buf = 0.9 * 1.134 + 0.5 * 0.58266 = 1.31193, p = 0.8266 - 0.131193 */
    sgd_one(&cpu_backend, p1, g1, b1, 0.1, 0.9, 0.5, 0.1, false, false);
    assert_tensor_values(b1, (double[]){1.31193}, 1, 1e-15, "buf dampened");
    assert_tensor_values(p1, (double[]){0.695407}, 1, 1e-15, "sgd dampened");

    /* nesterov from p = 1, g = 0.5, no wd: buf = 0.5, d = 0.5 + 0.45 = 0.95 */
    Tensor *p2 = from((double[]){1}, SHAPE(1), DTYPE_FLOAT64);
    sgd_one(&cpu_backend, p2, g1, b1, 0.1, 0.9, 0, 0, true, true);
    assert_tensor_values(p2, (double[]){0.905}, 1, 1e-15, "nesterov step 1");
    /* step 2: buf = 0.45 + 0.5 = 0.95, d = 0.5 + 0.855 = 1.355 */
    sgd_one(&cpu_backend, p2, g1, b1, 0.1, 0.9, 0, 0, true, false);
    assert_tensor_values(p2, (double[]){0.7695}, 1, 1e-15, "nesterov step 2");
    Tensor *ts[] = {p, g, p1, g1, b1, p2};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_release(ts[i]);
}

Test(cpu_kernels, adam_adamw_amsgrad) {
    const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    /* Step 1 of Adam: m = 0.1 g, v = 0.001 g^2, bias-corrected to g and g^2:
     * p -= lr * g / (|g| + eps). */
    Tensor *p = from((double[]){1, -1}, SHAPE(2), DTYPE_FLOAT64);
    Tensor *g = from((double[]){0.5, -2}, SHAPE(2), DTYPE_FLOAT64);
    Tensor *m = tensor_zeros(SHAPE(2), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *v = tensor_zeros(SHAPE(2), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *vmax = tensor_zeros(SHAPE(2), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    adam_one(&cpu_backend, p, g, m, v, NULL, lr, b1, b2, eps, 0, false, 1);
    assert_tensor_values(p, (double[]){1 - 0.1 * 0.5 / (0.5 + eps), -1 + 0.1 * 2 / (2 + eps)}, 2,
                         1e-15, "adam step 1");
    assert_tensor_values(m, (double[]){0.05, -0.2}, 2, 1e-15, "exp_avg");
    assert_tensor_values(v, (double[]){0.00025, 0.004}, 2, 1e-15, "exp_avg_sq");

    /* Step 2 with g = 0.1 on element 0: m = 0.045 + 0.01 = 0.055,
     * v = 0.00024975 + 0.00001 = 0.00025975; bc1 = 0.19, bc2 = 0.001999. */
    tensor_release(g);
    g = from((double[]){0.1, -2}, SHAPE(2), DTYPE_FLOAT64);
    double p0 = tensor_get(p, 0);
    adam_one(&cpu_backend, p, g, m, v, NULL, lr, b1, b2, eps, 0, false, 2);
    double want = p0 - (lr / 0.19) * 0.055 / (sqrt(0.00025975) / sqrt(0.001999) + eps);
    cr_assert(fabs(tensor_get(p, 0) - want) <= 1e-15, "adam step 2: %.17g vs %.17g",
              tensor_get(p, 0), want);

    /* Adam weight decay is added to the grad: g = 0.5 + 0.1 * 1 = 0.6. */
    Tensor *q = from((double[]){1}, SHAPE(1), DTYPE_FLOAT64);
    Tensor *gq = from((double[]){0.5}, SHAPE(1), DTYPE_FLOAT64);
    Tensor *mq = tensor_zeros(SHAPE(1), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *vq = tensor_zeros(SHAPE(1), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    adam_one(&cpu_backend, q, gq, mq, vq, NULL, lr, b1, b2, eps, 0.1, false, 1);
    assert_tensor_values(q, (double[]){1 - 0.1 * 0.6 / (0.6 + eps)}, 1, 1e-15, "adam wd");
    /* AdamW decays the param first: 1 * (1 - 0.01) = 0.99, then the step. */
    tensor_fill_(q, 1);
    tensor_fill_(mq, 0);
    tensor_fill_(vq, 0);
    adam_one(&cpu_backend, q, gq, mq, vq, NULL, lr, b1, b2, eps, 0.1, true, 1);
    assert_tensor_values(q, (double[]){0.99 - 0.1 * 0.5 / (0.5 + eps)}, 1, 1e-15, "adamw");

    /* amsgrad: vmax keeps the larger second moment. Step 1 with g = 2,
     * step 2 with g = 0: v shrinks to 0.999 * 0.004, vmax stays 0.004. */
    tensor_fill_(m, 0);
    tensor_fill_(v, 0);
    tensor_release(g);
    g = from((double[]){2, 2}, SHAPE(2), DTYPE_FLOAT64);
    adam_one(&cpu_backend, p, g, m, v, vmax, lr, b1, b2, eps, 0, false, 1);
    assert_tensor_values(vmax, (double[]){0.004, 0.004}, 2, 1e-15, "vmax step 1");
    tensor_fill_(g, 0);
    p0 = tensor_get(p, 0);
    adam_one(&cpu_backend, p, g, m, v, vmax, lr, b1, b2, eps, 0, false, 2);
    assert_tensor_values(v, (double[]){0.003996, 0.003996}, 2, 1e-15, "v step 2");
    assert_tensor_values(vmax, (double[]){0.004, 0.004}, 2, 1e-15, "vmax step 2");
    want = p0 - (lr / 0.19) * 0.18 / (sqrt(0.004) / sqrt(0.001999) + eps);
    cr_assert(fabs(tensor_get(p, 0) - want) <= 1e-15, "amsgrad step 2: %.17g vs %.17g",
              tensor_get(p, 0), want);
    Tensor *ts[] = {p, g, m, v, vmax, q, gq, mq, vq};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_release(ts[i]);
}

Test(cpu_kernels, adam_float32_rounds_in_float32) {
    /* One float32 Adam step equals the same formula evaluated in float
     * arithmetic with float-cast hyper-parameters (torch's rounding). */
    Tensor *p = from((double[]){0.3}, SHAPE(1), DTYPE_FLOAT32);
    Tensor *g = from((double[]){0.7}, SHAPE(1), DTYPE_FLOAT32);
    Tensor *m = tensor_zeros(SHAPE(1), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *v = tensor_zeros(SHAPE(1), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    adam_one(&cpu_backend, p, g, m, v, NULL, 0.01, 0.9, 0.999, 1e-8, 0, false, 1);
    float gf = 0.7f;
    float mf = 0.0f * 0.9f + (float)(1 - 0.9) * gf;
    float vf = 0.0f * 0.999f + (float)(1 - 0.999) * gf * gf;
    float denom = sqrtf(vf) / (float)sqrt(1 - 0.999) + 1e-8f;
    float pf = 0.3f + (float)(-(0.01 / (1 - 0.9))) * mf / denom;
    cr_assert_eq(tensor_get(p, 0), (double)pf, "%.9g vs %.9g", tensor_get(p, 0), (double)pf);
    tensor_release(p);
    tensor_release(g);
    tensor_release(m);
    tensor_release(v);
}

/* The allocator's cache: a freed large block comes back for the same size,
 * small blocks and other sizes do not hit it, and trim empties it. */
Test(cpu_kernels, allocator_caches_large_blocks) {
    cpu_allocator_set_caching(true);
    cpu_allocator_trim();
    Device cpu = DEVICE_CPU_INIT;
    void *a = cpu_alloc(cpu, 1 << 20);
    cr_assert(a != NULL);
    cr_assert_eq((uintptr_t)a % 64, 0, "64-byte aligned");
    memset(a, 1, 1 << 20);
    cpu_free(cpu, a);
    cr_assert_eq(cpu_allocator_cached_bytes(), (size_t)1 << 20);
    void *b = cpu_alloc(cpu, (1 << 20) - 100); /* rounds to the same block */
    cr_assert_eq(b, a, "the cached block is reused");
    cr_assert_eq(cpu_allocator_cached_bytes(), 0);
    void *c = cpu_alloc(cpu, 2 << 20); /* a different size: fresh memory */
    cr_assert_neq(c, a);
    cpu_free(cpu, b);
    cpu_free(cpu, c);
    cr_assert_eq(cpu_allocator_cached_bytes(), (size_t)3 << 20);
    void *small = cpu_alloc(cpu, 100);
    cpu_free(cpu, small); /* below the threshold: not cached */
    cr_assert_eq(cpu_allocator_cached_bytes(), (size_t)3 << 20);
    cpu_allocator_trim();
    cr_assert_eq(cpu_allocator_cached_bytes(), 0);
    cpu_allocator_set_caching(false);
}

/* The cache holds what a step had at once: after 6 blocks of 512 MiB live
 * together (never touched: only address space), it may hold twice that,
 * and takes all six back; a machine's eighth of memory would have kept
 * fewer on a small machine. */
Test(cpu_kernels, allocator_cache_grows_to_the_high_water_mark) {
    cpu_allocator_set_caching(true);
    cpu_allocator_trim();
    Device cpu = DEVICE_CPU_INIT;
    size_t block = (size_t)512 << 20, before = cpu_allocator_cache_limit();
    cr_assert_geq(before, (size_t)512 << 20, "at least 512 MiB");
    void *b[6];
    for (int i = 0; i < 6; i++) cr_assert((b[i] = cpu_alloc(cpu, block)) != NULL);
    size_t limit = cpu_allocator_cache_limit();
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if ((size_t)pages * (size_t)page / 4 * 3 >= 12 * block)
        cr_assert_geq(limit, 12 * block, "twice the 3 GiB live");
    for (int i = 0; i < 6; i++) cpu_free(cpu, b[i]);
    if (limit >= 12 * block) cr_assert_eq(cpu_allocator_cached_bytes(), 6 * block);
    cpu_allocator_trim();
    cr_assert_eq(cpu_allocator_cached_bytes(), 0);
    cpu_allocator_set_caching(false);
}

/* ---- batch norm's channel passes over [N, C, S] (channel.c) ---- */

/* n random values in [-2, 2) plus `offset` (a mean far from 0: the
 * centred sums must not cancel). */
static double *channel_values(Rng *r, int64_t n, double offset) {
    double *v = malloc((size_t)n * sizeof *v);
    cr_assert(v);
    for (int64_t i = 0; i < n; i++) v[i] = offset + rng_uniform_range(r, -2, 2);
    return v;
}

/* Element (n, channel ch, position j) of [N, C, S], or of the blocked
 * [N, C/lanes, S, lanes] where lanes > 1. */
static int64_t channel_at(int64_t i, int64_t ch, int64_t j, int64_t c, int64_t s, int64_t lanes) {
    return ((i * (c / lanes) + ch / lanes) * s + j) * lanes + ch % lanes;
}

static void channel_case(int ndim, const int64_t *shape, DType dt, int64_t lanes) {
    int64_t n = shape[0], c = (ndim > 1 ? shape[1] : 1) * lanes, s = 1, total = 1;
    for (int d = 2; d < (lanes > 1 ? ndim - 1 : ndim); d++) s *= shape[d];
    for (int d = 0; d < ndim; d++) total *= shape[d];
    Rng r;
    rng_init(&r, (uint64_t)(total * 3 + ndim));
    double *u = channel_values(&r, total, 100), *v = channel_values(&r, total, -3);
    double *p[5]; /* mu, mv, a, b, d per channel */
    for (int k = 0; k < 5; k++) p[k] = channel_values(&r, c, k < 2 ? 100 * (1 - k) : 0);
    Tensor *tu = from(u, ndim, shape, dt), *tv = from(v, ndim, shape, dt), *tp[5];
    for (int k = 0; k < 5; k++) tp[k] = from(p[k], 1, (int64_t[]){c}, dt);
    /* the tensors' own values (rounded to dt) are the reference's */
    cr_assert_eq(tensor_to_doubles(tu, u, total), 0);
    cr_assert_eq(tensor_to_doubles(tv, v, total), 0);
    for (int k = 0; k < 5; k++) cr_assert_eq(tensor_to_doubles(tp[k], p[k], c), 0);
    double tol = dt == DTYPE_FLOAT32 ? 2e-6 : 1e-12;
    for (int variant = 0; variant < 4; variant++) { /* with / without mu, with / without v */
        bool centred = variant & 1, with_v = variant & 2;
        Tensor *out = empty(1, (int64_t[]){c}, dt);
        cpu_channel_sum_product(tu, centred ? tp[0] : NULL, with_v ? tv : NULL,
                                with_v ? tp[1] : NULL, lanes, out);
        double got[64];
        cr_assert_eq(tensor_to_doubles(out, got, c), 0);
        for (int64_t ch = 0; ch < c; ch++) {
            double want = 0, scale = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < s; j++) {
                    int64_t at = channel_at(i, ch, j, c, s, lanes);
                    double t = (u[at] - (centred ? p[0][ch] : 0)) * (with_v ? v[at] - p[1][ch] : 1);
                    want += t, scale += fabs(t);
                }
            cr_assert(fabs(got[ch] - want) <= tol * scale, "%s sum_product variant %d channel "
                      "%lld: %.17g, want %.17g", dtype_name(dt), variant, (long long)ch, got[ch],
                      want);
        }
        tensor_release(out);
    }
    for (int variant = 0; variant < 2; variant++) { /* a u + d; a u + b (v - m) + d */
        bool with_v = variant == 1;
        Tensor *out = empty(ndim, shape, dt);
        cpu_channel_affine(tu, tp[2], with_v ? tv : NULL, with_v ? tp[1] : NULL,
                           with_v ? tp[3] : NULL, tp[4], lanes, out);
        double *got = malloc((size_t)total * sizeof *got);
        cr_assert(got);
        cr_assert_eq(tensor_to_doubles(out, got, total), 0);
        for (int64_t at = 0; at < total; at++) {
            int64_t ch = lanes > 1 ? at / (s * lanes) % (c / lanes) * lanes + at % lanes
                                   : at / s % c;
            double want = p[2][ch] * u[at] + (with_v ? p[3][ch] * (v[at] - p[1][ch]) : 0) +
                          p[4][ch];
            double mag = fabs(p[2][ch] * u[at]) + fabs(p[4][ch]) +
                         (with_v ? fabs(p[3][ch] * (v[at] - p[1][ch])) : 0);
            cr_assert(fabs(got[at] - want) <= 4 * tol * mag, "%s affine variant %d at %lld: "
                      "%.17g, want %.17g", dtype_name(dt), variant, (long long)at, got[at], want);
        }
        free(got);
        tensor_release(out);
    }
    tensor_release(tu), tensor_release(tv);
    for (int k = 0; k < 5; k++) tensor_release(tp[k]), free(p[k]);
    free(u), free(v);
}

static void channel_cases(void) {
    FOR_EACH_DTYPE(dt) {
        channel_case(3, (int64_t[]){3, 5, 7}, dt, 1);
        channel_case(2, (int64_t[]){40, 6}, dt, 1);         /* BatchNorm1d: S = 1 */
        channel_case(4, (int64_t[]){4, 3, 33, 35}, dt, 1);  /* past CPU_PARALLEL_MIN */
        /* the blocked layout [N, C/16, H, W, 16]: 2 blocks, 32 channels */
        channel_case(5, (int64_t[]){3, 2, 5, 7, TENSOR_BLOCK}, dt, TENSOR_BLOCK);
        channel_case(5, (int64_t[]){4, 3, 17, 9, TENSOR_BLOCK}, dt, TENSOR_BLOCK); /* parallel */
    }
}

Test(cpu_kernels, channel_sum_product_and_affine) {
    channel_cases();
}

/* the blocked layout's portable float32 kernels, which AVX-512 never runs */
Test(cpu_kernels, channel_sum_product_and_affine_portable) {
    cpu_kernels_portable(true);
    channel_cases();
}
