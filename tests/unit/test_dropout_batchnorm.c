/* test_dropout_batchnorm.c - dropout (mask statistics, exact scaling,
 * reproducibility, eval identity, gradient) and batch norm (gradients by
 * finite differences in float64, running statistics, parity with PyTorch's
 * BatchNorm1d/2d from tests/fixtures/gen_losses.py, and errors). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "core/rng.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

#define RTOL 1e-5
#define ATOL 1e-6

/* ---- dropout ---- */

Test(dropout, fraction_zeroed_near_p_and_scaling_exact) {
    const int64_t n = 100000;
    const double ps[] = {0.1, 0.3, 0.5, 0.9};
    Tensor *x = tensor_full(SHAPE(100, 1000), 1.5, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
        double p = ps[k];
        Tensor *y = tensor_dropout(x, p, true, 42, 7);
        cr_assert(y != NULL, "%s", error_get());
        const float *v = tensor_data(y);
        const float kept = (float)1.5 * (float)(1.0 / (1.0 - p));
        int64_t zeros = 0;
        for (int64_t i = 0; i < n; i++) {
            /* Exactly the rule: kept iff u >= p, u the stream's number. */
            bool keep = philox_uniform(42, 7 + (uint64_t)i) >= (float)p;
            cr_assert_eq(v[i], keep ? kept : 0.0f, "p %g: y[%ld] = %.9g, want %.9g", p, (long)i,
                         v[i], keep ? kept : 0.0f);
            zeros += v[i] == 0.0f;
        }
        /* Binomial: 6 standard deviations is at most 0.0095. */
        double frac = (double)zeros / (double)n;
        cr_expect(fabs(frac - p) < 6 * sqrt(p * (1 - p) / (double)n) + 1e-9,
                  "p %g: %g of the elements were zeroed", p, frac);
        tensor_release(y);
    }
    tensor_release(x);
}

Test(dropout, same_seed_and_offset_same_mask) {
    Tensor *x = gradcheck_input(SHAPE(8, 16), 1, 2, 1); /* no zeros in x */
    Tensor *a = tensor_dropout(x, 0.5, true, 3, 100);
    Tensor *b = tensor_dropout(x, 0.5, true, 3, 100);
    Tensor *c = tensor_dropout(x, 0.5, true, 4, 100);
    Tensor *d = tensor_dropout(x, 0.5, true, 3, 101);
    cr_assert(a && b && c && d, "%s", error_get());
    assert_tensor_close(a, b, 0, 0, "same seed and offset");
    int diff_seed = 0, shifted_equal = 1;
    for (int64_t i = 0; i < 128; i++) {
        diff_seed += (tensor_get(a, i) == 0) != (tensor_get(c, i) == 0);
        /* Offset + 1 is the same stream shifted by one element. */
        if (i + 1 < 128)
            shifted_equal &= (tensor_get(a, i + 1) == 0) == (tensor_get(d, i) == 0);
    }
    cr_expect(diff_seed > 20, "another seed changed only %d of 128 mask bits", diff_seed);
    cr_expect(shifted_equal, "offset + 1 is not the stream shifted by one");
    tensor_release(x), tensor_release(a), tensor_release(b), tensor_release(c), tensor_release(d);
}

/* A mask whose offset is split between the argument and a base in memory
 * (as a CUDA graph's replay reads it) is the mask at their sum, row by row
 * too; so is a Dropout module's while its Rng has a device base. */
Test(dropout, offset_base_adds_to_the_offset) {
    Tensor *x = gradcheck_input(SHAPE(6, 10), 1, 2, 1);
    uint64_t base = 37;
    Tensor *want = tensor_dropout_rows(x, 0.4, true, 3, 140, 25, NULL);
    Tensor *got = tensor_dropout_rows(x, 0.4, true, 3, 140 - base, 25, &base);
    cr_assert(want && got, "%s", error_get());
    assert_tensor_close(got, want, 0, 0, "rows 25 numbers apart");
    /* captured at offset 163, the module's numbers 37 past it; replayed
     * from 1000: drawn at 1037 */
    Module *m = nn_dropout(0.4);
    Rng plain, graphed;
    rng_init(&plain, 3);
    rng_init(&graphed, 3);
    plain.offset = 1037;
    graphed.offset = 200;
    graphed.device_base = &base;
    graphed.capture_base = 163;
    base = 1000;
    module_set_rng(m, &plain);
    Tensor *a = module_forward(m, x);
    module_set_rng(m, &graphed);
    Tensor *b = module_forward(m, x);
    cr_assert(a && b, "%s", error_get());
    assert_tensor_close(b, a, 0, 0, "drawn at 1000 + (200 - 163)");
    cr_assert(plain.offset == 1097 && graphed.offset == 260, "each moved on by 60");
    tensor_release(x), tensor_release(want), tensor_release(got), tensor_release(a);
    tensor_release(b);
    module_free(m);
}

Test(dropout, eval_and_p0_return_the_input_p1_gives_zeros) {
    Tensor *x = gradcheck_input(SHAPE(4, 5), -1, 1, 2);
    Tensor *e = tensor_dropout(x, 0.5, false, 1, 0);
    Tensor *z = tensor_dropout(x, 0.0, true, 1, 0);
    cr_assert(e == x && z == x, "eval / p = 0 should return the input itself");
    tensor_release(e), tensor_release(z);
    Tensor *o = tensor_dropout(x, 1.0, true, 1, 0);
    cr_assert(o != NULL, "%s", error_get());
    for (int64_t i = 0; i < 20; i++) cr_expect_eq(tensor_get(o, i), 0.0);
    Tensor *l = tensor_sum(o);
    cr_assert(tensor_backward(l) == 0, "%s", error_get());
    for (int64_t i = 0; i < 20; i++) cr_expect_eq(tensor_get(x->grad, i), 0.0);
    tensor_release(o), tensor_release(l), tensor_release(x);
}

Test(dropout, gradient_is_mask_times_scale) {
    Tensor *x = tensor_full(SHAPE(32, 32), 1.0, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    tensor_set_requires_grad(x, true);
    Tensor *y = tensor_dropout(x, 0.25, true, 9, 0);
    Tensor *l = tensor_sum(y);
    cr_assert(tensor_backward(l) == 0, "%s", error_get());
    /* x is all ones, so y is the scaled mask itself. */
    assert_tensor_close(x->grad, y, 0, 0, "gradient vs mask * scale");
    int64_t kept = 0;
    for (int64_t i = 0; i < 1024; i++) kept += tensor_get(y, i) != 0;
    cr_expect(kept > 0 && kept < 1024);
    tensor_release(y), tensor_release(l), tensor_release(x);
}

static Tensor *dropout_fn(Tensor **in, void *ctx) {
    return tensor_dropout(in[0], *(double *)ctx, true, 5, 11);
}

Test(dropout, gradcheck_float64) {
    Tensor *x = gradcheck_input(SHAPE(3, 4, 5), -1, 1, 3);
    double p = 0.4;
    gradcheck("dropout p 0.4", dropout_fn, &p, 1, &x);
    tensor_release(x);
}

Test(dropout, bad_inputs) {
    Tensor *x = tensor_zeros(SHAPE(3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_dropout(x, 1.5, true, 0, 0),
                 "dropout: probability has to be between 0 and 1, but got 1.5");
    fixture_expect_error(tensor_dropout(x, -0.1, false, 0, 0), "but got -0.1");
    fixture_expect_error(tensor_dropout(x, NAN, true, 0, 0), "but got nan");
    Tensor *i = tensor_zeros(SHAPE(3), DTYPE_INT64, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_dropout(i, 0.5, true, 0, 0),
                         "dropout: expected a float tensor, got int64");
    tensor_release(x), tensor_release(i);
}

/* ---- batch norm: gradients ---- */

typedef struct {
    bool training, affine;
    Tensor *running_mean, *running_var;
} BnArgs;

static Tensor *bn_fn(Tensor **in, void *ctx) {
    const BnArgs *a = ctx;
    return tensor_batch_norm(in[0], a->running_mean, a->running_var, a->affine ? in[1] : NULL,
                             a->affine ? in[2] : NULL, a->training, 0.1, 1e-5);
}

static void bn_gradcheck(const char *name, int ndim, const int64_t *shape, bool training,
                         bool affine, uint64_t seed) {
    int64_t c = shape[1];
    Tensor *in[3] = {gradcheck_input(ndim, shape, -2, 2, seed),
                     gradcheck_input(SHAPE(c), 0.5, 1.5, seed + 1),
                     gradcheck_input(SHAPE(c), -1, 1, seed + 2)};
    Tensor *rm = gradcheck_input(SHAPE(c), -0.5, 0.5, seed + 3);
    Tensor *rv = gradcheck_input(SHAPE(c), 0.5, 2, seed + 4);
    tensor_set_requires_grad(rm, false);
    tensor_set_requires_grad(rv, false);
    BnArgs a = {training, affine, rm, rv};
    gradcheck(name, bn_fn, &a, affine ? 3 : 1, in);
    for (int i = 0; i < 3; i++) tensor_release(in[i]);
    tensor_release(rm), tensor_release(rv);
}

Test(batch_norm, gradcheck_train_and_eval_2d_3d_4d) {
    bn_gradcheck("batch_norm train [6, 3]", SHAPE(6, 3), true, true, 1);
    bn_gradcheck("batch_norm train [4, 3, 5]", SHAPE(4, 3, 5), true, true, 10);
    bn_gradcheck("batch_norm train [2, 3, 3, 4]", SHAPE(2, 3, 3, 4), true, true, 20);
    bn_gradcheck("batch_norm train no affine", SHAPE(2, 2, 3, 3), true, false, 30);
    bn_gradcheck("batch_norm eval [6, 3]", SHAPE(6, 3), false, true, 40);
    bn_gradcheck("batch_norm eval [2, 3, 3, 4]", SHAPE(2, 3, 3, 4), false, true, 50);
}

/* ---- batch norm: values ---- */

Test(batch_norm, hand_checked_train_step_and_running_stats) {
    /* Channel 0: {1, 3}, channel 1: {2, 6}: means 2 and 4, biased variances
     * 1 and 4, unbiased 2 and 8. */
    Tensor *x = tensor_from_string("[[1, 2], [3, 6]]", DTYPE_FLOAT64);
    Tensor *rm = tensor_zeros(SHAPE(2), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *rv = tensor_full(SHAPE(2), 1.0, DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *y = tensor_batch_norm(x, rm, rv, NULL, NULL, true, 0.1, 0.0);
    cr_assert(y != NULL, "%s", error_get());
    assert_tensor_values(y, (double[]){-1, -1, 1, 1}, 4, 1e-15, "normalised");
    assert_tensor_values(rm, (double[]){0.2, 0.4}, 2, 1e-15, "running_mean");
    assert_tensor_values(rv, (double[]){0.9 + 0.1 * 2, 0.9 + 0.1 * 8}, 2, 1e-15, "running_var");
    /* Eval uses the running statistics and leaves them alone. */
    Tensor *w = tensor_from_string("[2, 3]", DTYPE_FLOAT64);
    Tensor *b = tensor_from_string("[0.5, -1]", DTYPE_FLOAT64);
    Tensor *ye = tensor_batch_norm(x, rm, rv, w, b, false, 0.1, 0.0);
    cr_assert(ye != NULL, "%s", error_get());
    double want[4] = {(1 - 0.2) / sqrt(1.1) * 2 + 0.5, (2 - 0.4) / sqrt(1.7) * 3 - 1,
                      (3 - 0.2) / sqrt(1.1) * 2 + 0.5, (6 - 0.4) / sqrt(1.7) * 3 - 1};
    assert_tensor_values(ye, want, 4, 1e-14, "eval");
    assert_tensor_values(rm, (double[]){0.2, 0.4}, 2, 1e-15, "running_mean after eval");
    /* A batch of one is fine in eval. */
    Tensor *one = tensor_from_string("[[1, 2]]", DTYPE_FLOAT64);
    Tensor *yo = tensor_batch_norm(one, rm, rv, NULL, NULL, false, 0.1, 1e-5);
    cr_expect(yo != NULL, "%s", error_get());
    tensor_release(x), tensor_release(rm), tensor_release(rv), tensor_release(y);
    tensor_release(w), tensor_release(b), tensor_release(ye), tensor_release(one),
        tensor_release(yo);
}

Test(batch_norm, running_stats_get_no_gradient_and_train_without_them) {
    Tensor *x = gradcheck_input(SHAPE(5, 3, 2), -1, 1, 60);
    Tensor *y = tensor_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
    cr_assert(y != NULL, "%s", error_get());
    /* Each channel has mean 0 and biased variance 1/(1 + eps/var). */
    Tensor *m = tensor_mean_dims(y, 2, (int[]){0, 2}, false);
    assert_tensor_values(m, (double[]){0, 0, 0}, 3, 1e-12, "channel means");
    Tensor *l = tensor_sum(y);
    cr_assert(tensor_backward(l) == 0, "%s", error_get());
    /* sum of a normalised channel does not depend on x. */
    for (int64_t i = 0; i < 30; i++) cr_expect(fabs(tensor_get(x->grad, i)) < 1e-12);
    tensor_release(x), tensor_release(y), tensor_release(m), tensor_release(l);
}

/* ---- batch norm: errors ---- */

Test(batch_norm, bad_inputs) {
    Tensor *x = tensor_zeros(SHAPE(1, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *rm = tensor_zeros(SHAPE(4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *rv = tensor_full(SHAPE(4), 1, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_batch_norm(x, rm, rv, NULL, NULL, true, 0.1, 1e-5),
                 "batch_norm: expected more than 1 value per channel when training, got input "
                 "of shape [1, 4]");
    Tensor *x4 = tensor_zeros(SHAPE(1, 4, 1, 1), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_batch_norm(x4, NULL, NULL, NULL, NULL, true, 0.1, 1e-5),
                 "got input of shape [1, 4, 1, 1]");
    Tensor *x2 = tensor_zeros(SHAPE(3, 5), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_batch_norm(x2, NULL, NULL, rm, NULL, true, 0.1, 1e-5),
                 "batch_norm: weight of shape [4] does not match the 5 channels of input [3, 5]");
    fixture_expect_error(tensor_batch_norm(x2, rm, rv, NULL, NULL, true, 0.1, 1e-5),
                 "batch_norm: running_mean of shape [4]");
    fixture_expect_error(tensor_batch_norm(x2, NULL, NULL, NULL, NULL, false, 0.1, 1e-5),
                 "running_mean and running_var are required in eval mode");
    fixture_expect_error(tensor_batch_norm(x, rm, NULL, NULL, NULL, true, 0.1, 1e-5),
                 "must be given together");
    Tensor *d = tensor_zeros(SHAPE(4), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *x3 = tensor_zeros(SHAPE(2, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_batch_norm(x3, NULL, NULL, NULL, d, true, 0.1, 1e-5),
                 "batch_norm: bias is float64 but input is float32");
    Tensor *v = tensor_zeros(SHAPE(4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_batch_norm(v, NULL, NULL, NULL, NULL, true, 0.1, 1e-5),
                 "batch_norm: expected input of shape [N, C] or [N, C, *], got [4]");
    Tensor *i = tensor_zeros(SHAPE(2, 4), DTYPE_INT64, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_batch_norm(i, NULL, NULL, NULL, NULL, true, 0.1, 1e-5),
                 "batch_norm: expected a float input, got int64");
    /* Running stats untouched by the failed calls. */
    assert_tensor_values(rm, (double[]){0, 0, 0, 0}, 4, 0, "running_mean");
    tensor_release(x), tensor_release(rm), tensor_release(rv), tensor_release(x4);
    tensor_release(x2), tensor_release(d), tensor_release(x3), tensor_release(v),
        tensor_release(i);
}

/* ---- batch norm: parity with PyTorch (float32) ---- */

static void check_batch_norm_case(json_t *fx, const char *name) {
    json_t *kase = fixture_case(fx, name);
    Tensor *x = fixture_tensor(kase, "x"), *w = fixture_tensor(kase, "weight");
    Tensor *b = fixture_tensor(kase, "bias"), *gw = fixture_tensor(kase, "gw");
    Tensor *rm = fixture_tensor(kase, "running_mean"), *rv = fixture_tensor(kase, "running_var");
    double momentum = fixture_number(kase, "momentum"), eps = fixture_number(kase, "eps");
    tensor_set_requires_grad(x, true);
    tensor_set_requires_grad(w, true);
    tensor_set_requires_grad(b, true);

    Tensor *out = tensor_batch_norm(x, rm, rv, w, b, true, momentum, eps);
    cr_assert(out != NULL, "%s: %s", name, error_get());
    Tensor *l = tensor_mul(out, gw);
    Tensor *s = tensor_sum(l);
    cr_assert(tensor_backward(s) == 0, "%s: %s", name, error_get());

    const char *keys[] = {"out", "gx", "gweight", "gbias", "running_mean_after",
                          "running_var_after"};
    Tensor *got[] = {out, x->grad, w->grad, b->grad, rm, rv};
    for (int k = 0; k < 6; k++) fixture_assert_close(kase, keys[k], got[k], RTOL, ATOL, name);

    /* Eval with the updated running statistics. */
    Tensor *xe = fixture_tensor(kase, "x_eval"), *want_e = fixture_tensor(kase, "out_eval");
    Tensor *oe = tensor_batch_norm(xe, rm, rv, w, b, false, momentum, eps);
    cr_assert(oe != NULL, "%s eval: %s", name, error_get());
    char what[96];
    snprintf(what, sizeof what, "%s out_eval", name);
    assert_tensor_close(oe, want_e, RTOL, ATOL, what);

    tensor_release(x), tensor_release(w), tensor_release(b), tensor_release(gw);
    tensor_release(rm), tensor_release(rv), tensor_release(out), tensor_release(l);
    tensor_release(s), tensor_release(xe), tensor_release(want_e), tensor_release(oe);
}

Test(batch_norm_torch, batchnorm1d_train_step_and_eval) {
    json_t *fx = fixture_load("losses");
    check_batch_norm_case(fx, "batchnorm1d");
    check_batch_norm_case(fx, "batchnorm1d_3d");
    json_decref(fx);
}

Test(batch_norm_torch, batchnorm2d_train_step_and_eval) {
    json_t *fx = fixture_load("losses");
    check_batch_norm_case(fx, "batchnorm2d");
    json_decref(fx);
}

/* A data-parallel rank's rows 1, 3, 5 of a batch of 6 (module_set_dist):
 * the Dropout module gives them the masks those rows get in one process,
 * and both move the stream past the whole batch. */
Test(dropout, rank_rows_get_their_global_masks) {
    Tensor *all = gradcheck_uniform32(SHAPE(6, 5), 3);
    double v[30], mine[15];
    tensor_to_doubles(all, v, 30);
    for (int j = 0; j < 3; j++) memcpy(mine + 5 * j, v + 5 * (1 + 2 * j), sizeof(double) * 5);
    Tensor *part = tensor_from_doubles(mine, SHAPE(3, 5), DTYPE_FLOAT32);
    Module *one = nn_dropout(0.5), *rank = nn_dropout(0.5);
    Rng r1, r2;
    rng_init(&r1, 9), rng_init(&r2, 9);
    r1.offset = r2.offset = 13;
    module_set_rng(one, &r1);
    module_set_rng(rank, &r2);
    DistGroup pair = {.backend = "test", .rank = 1, .world = 2};
    DistRows rows = {1, 2, 6};
    module_set_dist(rank, &pair, &rows);
    Tensor *y_all = module_forward(one, all), *y_part = module_forward(rank, part);
    cr_assert(y_all && y_part, "%s", error_get());
    for (int j = 0; j < 3; j++) {
        Tensor *want = tensor_narrow(y_all, 0, 1 + 2 * j, 1), *got = tensor_narrow(y_part, 0, j, 1);
        assert_tensor_close(got, want, 0, 0, "row of the rank");
        tensor_release(want), tensor_release(got);
    }
    cr_assert_eq(r1.offset, 13 + 30);
    cr_assert_eq(r2.offset, 13 + 30, "the stream moves past the global batch");
    tensor_release(all), tensor_release(part), tensor_release(y_all), tensor_release(y_part);
    module_free(one), module_free(rank);
}

/* A Dropout module at p = 0 passes its numbers over: the stream moves on
 * as at p > 0, so later masks do not depend on p. */
Test(dropout, p0_passes_the_numbers_over) {
    Tensor *x = gradcheck_uniform32(SHAPE(4, 5), 1);
    Module *off = nn_dropout(0.0), *on = nn_dropout(0.25);
    Rng r;
    rng_init(&r, 3);
    module_set_rng(off, &r);
    module_set_rng(on, &r);
    Tensor *y = module_forward(off, x);
    cr_assert(y, "%s", error_get());
    assert_tensor_close(y, x, 0, 0, "p = 0 in training is the identity");
    cr_assert_eq(r.offset, 20);
    Tensor *z = module_forward(on, x);
    cr_assert(z, "%s", error_get());
    cr_assert_eq(r.offset, 40);
    tensor_release(x), tensor_release(y), tensor_release(z);
    module_free(off), module_free(on);
}
