/* gradcheck.c - finite differences against autograd; see gradcheck.h. */
#include "tests/support/gradcheck.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"

Tensor *gradcheck_input(int ndim, const int64_t *shape, double lo, double hi, uint64_t seed) {
    Tensor *t = tensor_empty(ndim, shape, DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cr_assert(t != NULL, "%s", error_get());
    Rng rng;
    rng_init(&rng, seed);
    double *d = tensor_data(t);
    for (int64_t i = 0; i < tensor_numel(t); i++) d[i] = rng_uniform_range(&rng, lo, hi);
    tensor_set_requires_grad(t, true);
    return t;
}

Tensor *gradcheck_uniform32(int ndim, const int64_t *shape, uint64_t seed) {
    Tensor *t64 = gradcheck_input(ndim, shape, -1, 1, seed);
    Tensor *c = tensor_to_dtype(t64, DTYPE_FLOAT32), *t = c ? tensor_detach(c) : NULL;
    tensor_release(c), tensor_release(t64);
    cr_assert(t, "%s", error_get());
    return t;
}

/* L = sum(f(inputs) * W), as a double; weights made on first call. */
static double weighted_loss(const char *name, GradcheckFn f, void *ctx, Tensor **inputs,
                            Tensor **weights, bool backward) {
    Tensor *y = f(inputs, ctx);
    cr_assert(y != NULL, "%s: forward failed: %s", name, error_get());
    if (!*weights) {
        Rng rng;
        rng_init(&rng, 1234);
        *weights = tensor_empty(y->ndim, y->shape, DTYPE_FLOAT64, DEVICE_CPU_INIT);
        double *w = tensor_data(*weights);
        for (int64_t i = 0; i < tensor_numel(y); i++) w[i] = rng_uniform_range(&rng, 0.5, 1.5);
    }
    Tensor *yw = tensor_mul(y, *weights);
    Tensor *l = tensor_sum(yw);
    cr_assert(l != NULL, "%s: loss failed: %s", name, error_get());
    double v = tensor_item(l);
    if (backward) cr_assert(tensor_backward(l) == 0, "%s: backward failed: %s", name, error_get());
    tensor_release(y);
    tensor_release(yw);
    tensor_release(l);
    return v;
}

void gradcheck_tol(const char *name, GradcheckFn f, void *ctx, int n_inputs, Tensor **inputs,
                   double eps, double atol, double rtol) {
    Tensor *weights = NULL;
    for (int i = 0; i < n_inputs; i++) {
        cr_assert(inputs[i]->dtype == DTYPE_FLOAT64, "%s: gradcheck needs float64 inputs", name);
        tensor_zero_grad(inputs[i]);
    }
    weighted_loss(name, f, ctx, inputs, &weights, true);
    for (int i = 0; i < n_inputs; i++) {
        Tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        cr_assert(x->grad != NULL, "%s: input %d got no gradient", name, i);
        Tensor *analytic = tensor_retain(x->grad);
        tensor_zero_grad(x);
        bool prev = autograd_set_enabled(false);
        double *d = tensor_data(x);
        for (int64_t j = 0; j < tensor_numel(x); j++) {
            double orig = d[j];
            d[j] = orig + eps;
            double lp = weighted_loss(name, f, ctx, inputs, &weights, false);
            d[j] = orig - eps;
            double lm = weighted_loss(name, f, ctx, inputs, &weights, false);
            d[j] = orig;
            double numeric = (lp - lm) / (2 * eps);
            double a = tensor_get(analytic, j);
            if (!(fabs(a - numeric) <= atol + rtol * fabs(numeric)))
                cr_assert_fail("%s: d/d input%d[%lld]: autograd %.10g, finite difference %.10g", name,
                         i, (long long)j, a, numeric);
        }
        autograd_set_enabled(prev);
        tensor_release(analytic);
    }
    tensor_release(weights);
}

void gradcheck(const char *name, GradcheckFn f, void *ctx, int n_inputs, Tensor **inputs) {
    gradcheck_tol(name, f, ctx, n_inputs, inputs, 1e-6, 1e-5, 1e-4);
}
