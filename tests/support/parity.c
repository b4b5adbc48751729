/* parity.c - an op on the GPU against the same op on the CPU (parity.h). */
#include "tests/support/parity.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#ifdef TRAIND_CUDA
#include "gpu/gpu.h"
#endif

Tensor *parity_rand(Rng *r, int ndim, const int64_t *shape, DType dt, double lo, double hi) {
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

Tensor *parity_to_gpu(Tensor *t) {
    Tensor *g = tensor_to_device(t, CUDA0);
    cr_assert(g, "to cuda: %s", error_get());
    return g;
}

Tensor *parity_to_host(Tensor *t) {
    Tensor *h = tensor_to_device(t, DEVICE_CPU_INIT);
    cr_assert(h, "to host: %s", error_get());
    return h;
}

void parity_release_all(int n, Tensor **t) {
    for (int i = 0; i < n; i++) tensor_release(t[i]);
}

double parity_rel_err(const Tensor *got, const Tensor *want) {
    int64_t n = tensor_numel(want);
    cr_assert_eq(tensor_numel(got), n);
    double *a = malloc((size_t)(n ? n : 1) * sizeof *a),
           *b = malloc((size_t)(n ? n : 1) * sizeof *b);
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

void parity_check_close(const char *what, DType dt, const Tensor *got, const Tensor *want,
                        double tol) {
    double e = parity_rel_err(got, want);
    fprintf(stderr, "gpu %-36s %-7s rel err %.3g\n", what, dtype_name(dt), e);
    cr_assert(e <= tol, "%s (%s): relative error %g > %g", what, dtype_name(dt), e, tol);
}

void parity_op(const char *name, int nin, Tensor **cpu_in, ParityOp f, const void *ctx, DType dt,
               double tol) {
    Tensor *gpu_in[8];
    cr_assert(nin <= 8);
    for (int i = 0; i < nin; i++) gpu_in[i] = parity_to_gpu(cpu_in[i]);
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
    parity_check_close(what, dt, yg, yc, tol);
    if (dtype_is_float(yc->dtype) && yc->requires_grad) {
        Rng r;
        rng_init(&r, 99);
        Tensor *w = parity_rand(&r, yc->ndim, yc->shape, yc->dtype, -1, 1);
        Tensor *wg = parity_to_gpu(w);
        Tensor *pc = tensor_mul(yc, w), *pg = tensor_mul(yg, wg);
        Tensor *lc = tensor_sum(pc), *lg = tensor_sum(pg);
        cr_assert(lc && lg, "%s", error_get());
        cr_assert_eq(tensor_backward(lc), 0, "%s backward on cpu: %s", name, error_get());
        cr_assert_eq(tensor_backward(lg), 0, "%s backward on cuda: %s", name, error_get());
        for (int i = 0; i < nin; i++) {
            if (!cpu_in[i]->grad) continue;
            cr_assert(gpu_in[i]->grad, "%s: no gradient for input %d on cuda", name, i);
            snprintf(what, sizeof what, "%s grad[%d]", name, i);
            parity_check_close(what, dt, gpu_in[i]->grad, cpu_in[i]->grad, tol);
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

void parity_both_dtypes(const char *name, ParityInputs make, ParityOp f, const void *ctx,
                        double tol32) {
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int k = 0; k < 2; k++) {
        Rng r;
        rng_init(&r, 7 + (uint64_t)k);
        Tensor *in[8];
        int n = make(&r, dts[k], in);
        parity_op(name, n, in, f, ctx, dts[k], dts[k] == DTYPE_FLOAT32 ? tol32 : 1e-11);
        parity_release_all(n, in);
    }
}
