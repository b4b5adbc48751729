/* test_softmax_loss.c - softmax, log_softmax and the losses: gradients by
 * finite differences in float64 for every op and reduction, parity with
 * PyTorch (tests/fixtures/gen_losses.py), and the errors bad inputs give. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

#define RTOL 1e-5
#define ATOL 1e-6

static void release_all(int n, Tensor **t) {
    for (int i = 0; i < n; i++) tensor_release(t[i]);
}

static Tensor *labels(int n, const int64_t *v) {
    Tensor *t = tensor_from_buffer(v, 1, (int64_t[]){n}, DTYPE_INT64);
    cr_assert(t != NULL, "%s", error_get());
    return t;
}

/* ---- softmax ---- */

typedef struct {
    int dim;
    bool log;
} SoftmaxArgs;

static Tensor *softmax_fn(Tensor **in, void *ctx) {
    const SoftmaxArgs *a = ctx;
    return a->log ? tensor_log_softmax(in[0], a->dim) : tensor_softmax(in[0], a->dim);
}

Test(softmax, gradcheck_every_dim_2d_and_3d) {
    Tensor *x2 = gradcheck_input(SHAPE(3, 4), -2, 2, 1);
    Tensor *x3 = gradcheck_input(SHAPE(2, 3, 4), -2, 2, 2);
    Tensor *x1 = gradcheck_input(SHAPE(5), -2, 2, 3);
    for (int log = 0; log <= 1; log++) {
        for (int dim = -2; dim < 2; dim++) {
            SoftmaxArgs a = {dim, log};
            char name[64];
            snprintf(name, sizeof name, "%s 2-d dim %d", log ? "log_softmax" : "softmax", dim);
            gradcheck(name, softmax_fn, &a, 1, &x2);
        }
        for (int dim = -3; dim < 3; dim++) {
            SoftmaxArgs a = {dim, log};
            char name[64];
            snprintf(name, sizeof name, "%s 3-d dim %d", log ? "log_softmax" : "softmax", dim);
            gradcheck(name, softmax_fn, &a, 1, &x3);
        }
        SoftmaxArgs a = {0, log};
        gradcheck(log ? "log_softmax 1-d" : "softmax 1-d", softmax_fn, &a, 1, &x1);
    }
    tensor_release(x1), tensor_release(x2), tensor_release(x3);
}

Test(softmax, sums_to_one_and_log_matches_and_is_stable) {
    /* Large logits would overflow a naive exp. */
    Tensor *x = tensor_from_string("[[1000, 1001, 1002], [-1000, -1000, -1000]]", DTYPE_FLOAT64);
    Tensor *y = tensor_softmax(x, 1), *ly = tensor_log_softmax(x, -1);
    cr_assert(y && ly, "%s", error_get());
    double e = exp(1.0), z = 1 + e + e * e;
    double want[6] = {1 / z, e / z, e * e / z, 1.0 / 3, 1.0 / 3, 1.0 / 3};
    assert_tensor_values(y, want, 6, 1e-15, "softmax");
    for (int i = 0; i < 6; i++) want[i] = log(want[i]);
    assert_tensor_values(ly, want, 6, 1e-13, "log_softmax");
    cr_expect(tensor_is_contiguous(y));
    tensor_release(x), tensor_release(y), tensor_release(ly);
}

Test(softmax, non_last_dim_output_is_contiguous_and_non_contiguous_input_works) {
    Tensor *x = gradcheck_input(SHAPE(3, 4), -1, 1, 4);
    Tensor *xt = tensor_transpose(x, 0, 1); /* [4, 3], strided */
    Tensor *xc = tensor_contiguous(xt);
    Tensor *a = tensor_softmax(xt, 0), *b = tensor_softmax(xc, 0);
    cr_assert(a && b, "%s", error_get());
    cr_expect(tensor_is_contiguous(a));
    assert_tensor_close(a, b, 0, 1e-15, "softmax of a transposed view");
    /* Columns sum to one. */
    Tensor *s = tensor_sum_dims(a, 1, (int[]){0}, false);
    assert_tensor_values(s, (double[]){1, 1, 1}, 3, 1e-12, "column sums");
    tensor_release(x), tensor_release(xt), tensor_release(xc), tensor_release(a),
        tensor_release(b), tensor_release(s);
}

Test(softmax, zero_dim_and_empty) {
    Tensor *s = tensor_scalar(3.0, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *y = tensor_softmax(s, 0), *ly = tensor_log_softmax(s, -1);
    cr_assert(y && ly, "%s", error_get());
    cr_expect_eq(y->ndim, 0);
    cr_expect_eq(tensor_item(y), 1.0);
    cr_expect_eq(tensor_item(ly), 0.0);
    Tensor *e = tensor_zeros(SHAPE(0, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *ye = tensor_softmax(e, 0);
    cr_assert(ye != NULL, "%s", error_get());
    cr_expect_eq(tensor_numel(ye), 0);
    tensor_release(s), tensor_release(y), tensor_release(ly), tensor_release(e),
        tensor_release(ye);
}

Test(softmax, bad_inputs) {
    Tensor *x = tensor_zeros(SHAPE(2, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_softmax(x, 2), "softmax: dimension 2 out of range");
    fixture_expect_error(tensor_log_softmax(x, -3), "log_softmax: dimension -3 out of range");
    Tensor *i = tensor_zeros(SHAPE(2, 3), DTYPE_INT64, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_softmax(i, 1), "softmax: expected a float tensor, got int64");
    error_set("earlier");
    fixture_expect_error(tensor_softmax(NULL, 0), "earlier");
    tensor_release(x), tensor_release(i);
}

/* ---- losses: gradient checks ---- */

typedef enum { L_MSE, L_L1, L_BCE, L_BCE_LOGITS, L_CE, L_NLL } LossKind;
static const char *loss_names[] = {"mse", "l1", "bce", "bce_with_logits", "cross_entropy",
                                   "nll"};
static const char *reduction_names[] = {"mean", "sum", "none"};

typedef struct {
    LossKind kind;
    Reduction reduction;
    Tensor *labels;                 /* class losses */
    const ClassLossOptions *options; /* class losses; NULL: the plain functions */
} LossArgs;

static Tensor *loss_fn(Tensor **in, void *ctx) {
    const LossArgs *a = ctx;
    switch (a->kind) {
    case L_MSE: return tensor_mse_loss(in[0], in[1], a->reduction);
    case L_L1: return tensor_l1_loss(in[0], in[1], a->reduction);
    case L_BCE: return tensor_bce_loss(in[0], in[1], a->reduction);
    case L_BCE_LOGITS: return tensor_bce_with_logits(in[0], in[1], a->reduction);
    case L_CE:
        return a->options ? tensor_cross_entropy_with(in[0], a->labels, a->reduction, a->options)
                          : tensor_cross_entropy(in[0], a->labels, a->reduction);
    case L_NLL:
        return a->options ? tensor_nll_loss_with(in[0], a->labels, a->reduction, a->options)
                          : tensor_nll_loss(in[0], a->labels, a->reduction);
    }
    return NULL;
}

/* Both input and float target are checked (the target's gradient exists in
 * torch too), for each reduction. */
Test(losses, gradcheck_elementwise_losses_every_reduction) {
    for (int k = L_MSE; k <= L_BCE_LOGITS; k++) {
        bool probs = k == L_BCE;
        Tensor *in[2] = {gradcheck_input(SHAPE(4, 3), probs ? 0.05 : -2, probs ? 0.95 : 2, 10 + k),
                         gradcheck_input(SHAPE(4, 3), probs ? 0 : -2, probs ? 1 : 2, 20 + k)};
        for (int r = 0; r < 3; r++) {
            LossArgs a = {(LossKind)k, (Reduction)r, NULL, NULL};
            char name[64];
            snprintf(name, sizeof name, "%s %s", loss_names[k], reduction_names[r]);
            gradcheck(name, loss_fn, &a, 2, in);
        }
        release_all(2, in);
    }
}

Test(losses, gradcheck_class_losses_every_reduction) {
    Tensor *lab = labels(5, (int64_t[]){2, 0, 3, 3, 1});
    for (int k = L_CE; k <= L_NLL; k++) {
        Tensor *x = gradcheck_input(SHAPE(5, 4), k == L_NLL ? -3 : -2, k == L_NLL ? 0 : 2, 30 + k);
        for (int r = 0; r < 3; r++) {
            LossArgs a = {(LossKind)k, (Reduction)r, lab, NULL};
            char name[64];
            snprintf(name, sizeof name, "%s %s", loss_names[k], reduction_names[r]);
            gradcheck(name, loss_fn, &a, 1, &x);
        }
        tensor_release(x);
    }
    tensor_release(lab);
}

/* label_smoothing and ignored targets (torch's default -100, and a class
 * index), every reduction; NLL with ignore_index. */
Test(losses, gradcheck_smoothing_and_ignored_targets) {
    Tensor *lab = labels(6, (int64_t[]){2, -100, 0, 3, -100, 1});
    Tensor *lab3 = labels(6, (int64_t[]){3, 0, 3, 1, 2, 3});
    const ClassLossOptions opts[] = {{-100, 0.1}, {-100, 0.5}, {-100, 1.0}, {3, 0.2}, {3, 0}};
    for (int k = L_CE; k <= L_NLL; k++) {
        Tensor *x = gradcheck_input(SHAPE(6, 4), k == L_NLL ? -3 : -2, k == L_NLL ? 0 : 2, 50 + k);
        for (size_t o = 0; o < sizeof opts / sizeof *opts; o++) {
            if (k == L_NLL && opts[o].label_smoothing != 0) continue;
            for (int r = 0; r < 3; r++) {
                LossArgs a = {(LossKind)k, (Reduction)r, opts[o].ignore_index == 3 ? lab3 : lab,
                              &opts[o]};
                char name[96];
                snprintf(name, sizeof name, "%s eps %g ignore %lld %s", loss_names[k],
                         opts[o].label_smoothing, (long long)opts[o].ignore_index,
                         reduction_names[r]);
                gradcheck(name, loss_fn, &a, 1, &x);
            }
        }
        tensor_release(x);
    }
    tensor_release(lab), tensor_release(lab3);
}

/* By hand: C = 4, uniform logits, so log p = -log 4 everywhere. A counted
 * row's loss is log 4 whatever eps; "mean" divides by the 2 counted rows;
 * the gradient of a counted row is (softmax - smoothed target) / 2. */
Test(losses, smoothing_and_ignore_hand_checked) {
    Tensor *z = tensor_zeros(SHAPE(3, 4), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    tensor_set_requires_grad(z, true);
    Tensor *lab = labels(3, (int64_t[]){1, -100, 3});
    ClassLossOptions o = {.ignore_index = -100, .label_smoothing = 0.2};
    Tensor *none = tensor_cross_entropy_with(z, lab, REDUCTION_NONE, &o);
    assert_tensor_values(none, (double[]){log(4.0), 0, log(4.0)}, 3, 1e-15, "none");
    Tensor *mean = tensor_cross_entropy_with(z, lab, REDUCTION_MEAN, &o);
    cr_assert(mean != NULL, "%s", error_get());
    cr_expect(fabs(tensor_item(mean) - log(4.0)) < 1e-15, "mean %.17g", tensor_item(mean));
    cr_assert(tensor_backward(mean) == 0, "%s", error_get());
    double on = (0.25 - (0.8 + 0.05)) / 2, off = (0.25 - 0.05) / 2;
    assert_tensor_values(z->grad, (double[]){off, on, off, off, 0, 0, 0, 0, off, off, off, on},
                         12, 1e-15, "gradient");
    /* the plain function ignores -100 too, as torch's default */
    Tensor *plain = tensor_cross_entropy(z, lab, REDUCTION_SUM);
    cr_assert(plain != NULL, "%s", error_get());
    cr_expect(fabs(tensor_item(plain) - 2 * log(4.0)) < 1e-15);
    tensor_release(z), tensor_release(lab), tensor_release(none), tensor_release(mean),
        tensor_release(plain);
}

/* A mean over no counted target is NaN, as torch's, but the gradient is 0
 * (not NaN: a batch of padding must not poison the weights); "sum" is 0. */
Test(losses, all_targets_ignored) {
    for (int k = L_CE; k <= L_NLL; k++) {
        Tensor *x = gradcheck_input(SHAPE(3, 4), -2, 0, 60 + k);
        Tensor *lab = labels(3, (int64_t[]){5, 5, 5});
        ClassLossOptions o = {.ignore_index = 5, .label_smoothing = k == L_CE ? 0.3 : 0};
        LossArgs a = {(LossKind)k, REDUCTION_MEAN, lab, &o};
        Tensor *mean = loss_fn(&x, &a);
        cr_assert(mean != NULL, "%s", error_get());
        cr_expect(isnan(tensor_item(mean)), "%s mean: %g", loss_names[k], tensor_item(mean));
        cr_assert(tensor_backward(mean) == 0, "%s", error_get());
        assert_tensor_values(x->grad, (double[12]){0}, 12, 0, "gradient");
        a.reduction = REDUCTION_SUM;
        Tensor *sum = loss_fn(&x, &a);
        cr_assert(sum != NULL, "%s", error_get());
        cr_expect_eq(tensor_item(sum), 0.0);
        tensor_release(x), tensor_release(lab), tensor_release(mean), tensor_release(sum);
    }
}

Test(losses, smoothing_and_ignore_bad_inputs) {
    Tensor *x = tensor_zeros(SHAPE(2, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *lab = labels(2, (int64_t[]){1, -100});
    ClassLossOptions o = {.ignore_index = -100, .label_smoothing = 1.5};
    fixture_expect_error(tensor_cross_entropy_with(x, lab, REDUCTION_MEAN, &o),
                         "cross_entropy: label_smoothing must be in [0, 1], got 1.5");
    o.label_smoothing = -0.1;
    fixture_expect_error(tensor_cross_entropy_with(x, lab, REDUCTION_MEAN, &o),
                         "label_smoothing must be in [0, 1], got -0.1");
    o.label_smoothing = 0.1;
    fixture_expect_error(tensor_nll_loss_with(x, lab, REDUCTION_MEAN, &o),
                         "nll_loss: has no label_smoothing (got 0.1");
    /* -100 is out of range once another index is the ignored one */
    o = (ClassLossOptions){.ignore_index = 0, .label_smoothing = 0};
    fixture_expect_error(tensor_cross_entropy_with(x, lab, REDUCTION_MEAN, &o),
                         "cross_entropy: target -100 at index 1 is out of range for 3 classes "
                         "(ignore_index is 0)");
    tensor_release(x), tensor_release(lab);
}

Test(losses, hand_checked_values) {
    Tensor *x = tensor_from_string("[1, 2, 3]", DTYPE_FLOAT64);
    Tensor *y = tensor_from_string("[1.5, 2, 1]", DTYPE_FLOAT64);
    Tensor *mse = tensor_mse_loss(x, y, REDUCTION_MEAN), *l1 = tensor_l1_loss(x, y, REDUCTION_SUM);
    cr_assert(mse && l1, "%s", error_get());
    cr_expect(fabs(tensor_item(mse) - (0.25 + 0 + 4) / 3) < 1e-15);
    cr_expect(fabs(tensor_item(l1) - 2.5) < 1e-15);
    /* Uniform logits: cross-entropy is log(C). */
    Tensor *z = tensor_zeros(SHAPE(2, 4), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *lab = labels(2, (int64_t[]){3, 0});
    Tensor *ce = tensor_cross_entropy(z, lab, REDUCTION_NONE);
    assert_tensor_values(ce, (double[]){log(4.0), log(4.0)}, 2, 1e-15, "cross_entropy");
    /* Huge logits stay finite: log(1 + exp(-1000)) = 0. */
    Tensor *big = tensor_from_string("[1000, -1000]", DTYPE_FLOAT64);
    Tensor *t = tensor_from_string("[1, 0]", DTYPE_FLOAT64);
    Tensor *bl = tensor_bce_with_logits(big, t, REDUCTION_SUM);
    cr_expect_eq(tensor_item(bl), 0.0);
    tensor_release(x), tensor_release(y), tensor_release(mse), tensor_release(l1);
    tensor_release(z), tensor_release(lab), tensor_release(ce), tensor_release(big);
    tensor_release(t), tensor_release(bl);
}

Test(losses, cross_entropy_backward_reaches_logits_only) {
    Tensor *x = gradcheck_input(SHAPE(3, 5), -1, 1, 40);
    Tensor *lab = labels(3, (int64_t[]){4, 0, 2});
    Tensor *l = tensor_cross_entropy(x, lab, REDUCTION_MEAN);
    cr_assert(l != NULL, "%s", error_get());
    cr_assert(tensor_backward(l) == 0, "%s", error_get());
    /* d/dx = (softmax(x) - onehot) / N; each row sums to 0. */
    Tensor *s = tensor_sum_dims(x->grad, 1, (int[]){1}, false);
    assert_tensor_values(s, (double[]){0, 0, 0}, 3, 1e-15, "row sums of the gradient");
    cr_expect(lab->grad == NULL && !lab->requires_grad);
    tensor_release(s), tensor_release(l), tensor_release(lab), tensor_release(x);
}

Test(losses, reduction_parse) {
    Reduction r;
    cr_expect(reduction_parse("mean", &r) == 0 && r == REDUCTION_MEAN);
    cr_expect(reduction_parse("sum", &r) == 0 && r == REDUCTION_SUM);
    cr_expect(reduction_parse("none", &r) == 0 && r == REDUCTION_NONE);
    cr_expect(reduction_parse("avg", &r) == -1);
    cr_expect(strstr(error_get(), "reduction: unknown \"avg\"") != NULL, "%s", error_get());
    cr_expect(reduction_parse(NULL, &r) == -1);
}

/* ---- losses: bad inputs ---- */

Test(losses, out_of_range_class) {
    Tensor *x = tensor_zeros(SHAPE(4, 10), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    tensor_set_requires_grad(x, true);
    Tensor *lab = labels(4, (int64_t[]){1, 2, 9, 12});
    fixture_expect_error(tensor_cross_entropy(x, lab, REDUCTION_MEAN),
                 "cross_entropy: target 12 at index 3 is out of range for 10 classes");
    Tensor *neg = labels(4, (int64_t[]){-1, 2, 9, 0});
    fixture_expect_error(tensor_nll_loss(x, neg, REDUCTION_SUM),
                 "nll_loss: target -1 at index 0 is out of range for 10 classes");
    tensor_release(x), tensor_release(lab), tensor_release(neg);
}

Test(losses, wrong_target_dtype) {
    Tensor *x = tensor_zeros(SHAPE(4, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *f = tensor_zeros(SHAPE(4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_cross_entropy(x, f, REDUCTION_MEAN),
                 "cross_entropy: expected an int64 target of class indices, got float32");
    fixture_expect_error(tensor_nll_loss(x, f, REDUCTION_MEAN),
                         "nll_loss: expected an int64 target");
    Tensor *i = tensor_zeros(SHAPE(4, 3), DTYPE_INT64, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_mse_loss(x, i, REDUCTION_MEAN),
                 "mse_loss: expected a float target, got int64");
    fixture_expect_error(tensor_bce_with_logits(x, i, REDUCTION_MEAN),
                 "bce_with_logits: expected a float target, got int64");
    Tensor *d = tensor_zeros(SHAPE(4, 3), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_l1_loss(x, d, REDUCTION_MEAN),
                 "l1_loss: input is float32 but target is float64");
    tensor_release(x), tensor_release(f), tensor_release(i), tensor_release(d);
}

Test(losses, mismatched_shapes) {
    Tensor *x = tensor_zeros(SHAPE(64, 1), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *y = tensor_zeros(SHAPE(64), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_mse_loss(x, y, REDUCTION_MEAN),
                 "mse_loss: input [64, 1] and target [64] differ in shape");
    fixture_expect_error(tensor_l1_loss(x, y, REDUCTION_MEAN),
                         "l1_loss: input [64, 1] and target [64]");
    fixture_expect_error(tensor_bce_loss(x, y, REDUCTION_MEAN),
                         "bce_loss: input [64, 1] and target [64]");
    fixture_expect_error(tensor_bce_with_logits(x, y, REDUCTION_MEAN),
                 "bce_with_logits: input [64, 1] and target [64]");
    /* Class losses: N must agree, input must be [N, C]. */
    Tensor *logits = tensor_zeros(SHAPE(3, 5), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *lab = labels(4, (int64_t[]){0, 1, 2, 3});
    fixture_expect_error(tensor_cross_entropy(logits, lab, REDUCTION_MEAN),
                 "cross_entropy: input [3, 5] and target [4] differ in batch size");
    Tensor *l3 = tensor_zeros(SHAPE(4, 5, 2), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_nll_loss(l3, lab, REDUCTION_MEAN),
                 "nll_loss: expected input of shape [N, C], got [4, 5, 2]");
    /* An unknown reduction value. */
    fixture_expect_error(tensor_mse_loss(y, y, (Reduction)7), "mse_loss: unknown reduction 7");
    tensor_release(x), tensor_release(y), tensor_release(logits), tensor_release(lab),
        tensor_release(l3);
}

Test(losses, bce_input_outside_unit_interval) {
    Tensor *x = tensor_from_string("[0.2, 0.0, 1.0, 1.5]", DTYPE_FLOAT32);
    Tensor *y = tensor_zeros(SHAPE(4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_bce_loss(x, y, REDUCTION_MEAN),
                 "bce_loss: input value 1.5 at index 3 is outside [0, 1]");
    Tensor *n = tensor_from_string("[-0.25]", DTYPE_FLOAT64);
    Tensor *yn = tensor_zeros(SHAPE(1), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_bce_loss(n, yn, REDUCTION_MEAN), "input value -0.25 at index 0");
    tensor_release(x), tensor_release(y), tensor_release(n), tensor_release(yn);
}

Test(losses, null_input_keeps_earlier_error) {
    Tensor *y = tensor_zeros(SHAPE(4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    error_set("earlier failure");
    fixture_expect_error(tensor_mse_loss(NULL, y, REDUCTION_MEAN), "earlier failure");
    fixture_expect_error(tensor_cross_entropy(y, NULL, REDUCTION_MEAN), "earlier failure");
    tensor_release(y);
}

/* ---- parity with PyTorch (float32) ---- */

/* Backpropagates the fixture's weight gw through out and checks out and the
 * gradients of x (and of the target, when the fixture has one). */
static void check_against_torch(json_t *kase, const char *name, Tensor *out, Tensor *x,
                                Tensor *target) {
    cr_assert(out != NULL, "%s: %s", name, error_get());
    Tensor *want = fixture_tensor(kase, "out"), *gw = fixture_tensor(kase, "gw");
    char what[96];
    snprintf(what, sizeof what, "%s out", name);
    assert_tensor_close(out, want, RTOL, ATOL, what);
    Tensor *l = tensor_mul(out, gw);
    Tensor *s = tensor_sum(l);
    cr_assert(tensor_backward(s) == 0, "%s: %s", name, error_get());
    Tensor *gx = fixture_tensor(kase, "gx");
    snprintf(what, sizeof what, "%s gx", name);
    cr_assert(x->grad != NULL, "%s: no gradient", name);
    assert_tensor_close(x->grad, gx, RTOL, ATOL, what);
    if (json_object_get(kase, "gtarget")) {
        Tensor *gt = fixture_tensor(kase, "gtarget");
        snprintf(what, sizeof what, "%s gtarget", name);
        cr_assert(target->grad != NULL, "%s: no target gradient", name);
        assert_tensor_close(target->grad, gt, RTOL, ATOL, what);
        tensor_release(gt);
    }
    tensor_release(want), tensor_release(gw), tensor_release(l), tensor_release(s),
        tensor_release(gx);
}

Test(softmax_loss_torch, softmax_and_log_softmax) {
    json_t *fx = fixture_load("losses");
    const char *names[] = {"softmax_dim0",     "softmax_dim1",        "softmax_3d_dim1",
                           "log_softmax_dim0", "log_softmax_dim1",    "log_softmax_3d_dim0",
                           "log_softmax_3d_dim2"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        json_t *kase = fixture_case(fx, names[i]);
        Tensor *x = fixture_tensor(kase, "x");
        tensor_set_requires_grad(x, true);
        int dim = (int)fixture_number(kase, "dim");
        Tensor *out = strncmp(names[i], "log", 3) == 0 ? tensor_log_softmax(x, dim)
                                                       : tensor_softmax(x, dim);
        check_against_torch(kase, names[i], out, x, NULL);
        tensor_release(out), tensor_release(x);
    }
    json_decref(fx);
}

Test(softmax_loss_torch, every_loss_every_reduction) {
    json_t *fx = fixture_load("losses");
    const char *prefixes[] = {"mse", "l1", "bce", "bce_with_logits", "cross_entropy", "nll"};
    for (int k = 0; k < 6; k++) {
        for (int r = 0; r < 3; r++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s", prefixes[k], reduction_names[r]);
            json_t *kase = fixture_case(fx, name);
            Tensor *x = fixture_tensor(kase, "x"), *t = fixture_tensor(kase, "target");
            tensor_set_requires_grad(x, true);
            if (t->dtype != DTYPE_INT64) tensor_set_requires_grad(t, true);
            LossArgs a = {(LossKind)k, (Reduction)r, t, NULL};
            Tensor *in[2] = {x, t};
            Tensor *out = loss_fn(in, &a);
            check_against_torch(kase, name, out, x, t);
            tensor_release(out), tensor_release(x), tensor_release(t);
        }
    }
    json_decref(fx);
}

Test(softmax_loss_torch, bce_edges_and_l1_ties) {
    json_t *fx = fixture_load("losses");
    const char *names[] = {"bce_edges", "l1_ties"};
    for (int i = 0; i < 2; i++) {
        json_t *kase = fixture_case(fx, names[i]);
        Tensor *x = fixture_tensor(kase, "x"), *t = fixture_tensor(kase, "target");
        tensor_set_requires_grad(x, true);
        if (json_object_get(kase, "gtarget")) tensor_set_requires_grad(t, true);
        Tensor *out = i == 0 ? tensor_bce_loss(x, t, REDUCTION_NONE)
                             : tensor_l1_loss(x, t, REDUCTION_NONE);
        check_against_torch(kase, names[i], out, x, t);
        tensor_release(out), tensor_release(x), tensor_release(t);
    }
    json_decref(fx);
}

/* gen_class_losses.py: every case of the file, so a new case is tested. */
Test(class_loss_torch, smoothing_and_ignore_index_every_case) {
    json_t *fx = fixture_load("class_losses");
    const char *name;
    json_t *kase;
    int n = 0;
    json_object_foreach(json_object_get(fx, "cases"), name, kase) {
        Tensor *x = fixture_tensor(kase, "x"), *t = fixture_tensor(kase, "target");
        tensor_set_requires_grad(x, true);
        ClassLossOptions o = {.ignore_index = (int64_t)fixture_number(kase, "ignore_index"),
                              .label_smoothing = fixture_number(kase, "eps")};
        LossArgs a = {fixture_number(kase, "kind") == 0 ? L_CE : L_NLL,
                      (Reduction)fixture_number(kase, "reduction"), t, &o};
        Tensor *out = loss_fn(&x, &a);
        if (json_object_get(kase, "out_is_nan")) {
            cr_assert(out != NULL, "%s: %s", name, error_get());
            cr_expect(isnan(tensor_item(out)), "%s: got %g, want NaN", name, tensor_item(out));
            cr_assert(tensor_backward(out) == 0, "%s: %s", name, error_get());
            fixture_assert_close(kase, "gx", x->grad, 0, 0, name);
        } else {
            check_against_torch(kase, name, out, x, NULL);
        }
        tensor_release(out), tensor_release(x), tensor_release(t);
        n++;
    }
    cr_expect_eq(n, 27, "cases in class_losses.json");
    json_decref(fx);
}
