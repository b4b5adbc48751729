/* pool_ties.c - runs the max-pool tie cases (pool_ties.h) on any device:
 * the CPU from tests/unit/test_pool_ties.c, CUDA from tests/unit/test_gpu_ops.c. */
#include "tests/support/pool_ties.h"

#include <criterion/criterion.h>
#include <stdio.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "tests/support/fixture.h"

static int geometry(json_t *kase, const char *key) { return (int)fixture_number(kase, key); }

/* The case's window over x [N, C, H, W]: dilation 1, floor mode. */
static Window2d case_window(json_t *kase, const Tensor *x) {
    Window2d g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                  geometry(kase, "kh"), geometry(kase, "kw"), geometry(kase, "sh"),
                  geometry(kase, "sw"), geometry(kase, "ph"), geometry(kase, "pw"),
                  1, 1, 0, 0};
    g.out_h = (g.height + 2 * g.pad_h - g.kernel_h) / g.stride_h + 1;
    g.out_w = (g.width + 2 * g.pad_w - g.kernel_w) / g.stride_w + 1;
    return g;
}

/* case[key] converted to dtype and moved to device. */
static Tensor *fixture_on(json_t *kase, const char *key, DType dtype, Device device) {
    Tensor *t = fixture_tensor(kase, key);
    Tensor *d = tensor_to_dtype(t, dtype);
    cr_assert(d != NULL, "%s to %s: %s", key, dtype_name(dtype), error_get());
    Tensor *on = tensor_to_device(d, device);
    cr_assert(on != NULL, "%s to the device: %s", key, error_get());
    tensor_release(t), tensor_release(d);
    return on;
}

/* Asserts that `got` (on any device) equals case[key] exactly. */
static void assert_equals_torch(json_t *kase, const char *key, Tensor *got, const char *what) {
    Tensor *host = tensor_to_device(got, DEVICE_CPU_INIT);
    cr_assert(host != NULL, "%s: to the host: %s", what, error_get());
    char full[160];
    snprintf(full, sizeof full, "%s %s", what, key);
    Tensor *want = fixture_tensor(kase, key);
    assert_tensor_close(host, want, 0, 0, full);
    tensor_release(want), tensor_release(host);
}

/* The backend's kernel: the output and the argmax (first maximum) indices. */
static void check_kernel(json_t *kase, Device device, DType dtype, const char *what) {
    Tensor *x = fixture_on(kase, "x", dtype, device);
    Window2d g = case_window(kase, x);
    const int64_t shape[4] = {g.batch, g.channels, g.out_h, g.out_w};
    Tensor *out = tensor_empty(4, shape, dtype, device);
    Tensor *idx = tensor_empty(4, shape, DTYPE_INT64, device);
    const Backend *be = backend_for(device);
    cr_assert(out && idx && be, "%s: %s", what, error_get());
    be->max_pool2d(&g, x, out, idx);
    assert_equals_torch(kase, "out", out, what);
    assert_equals_torch(kase, "indices", idx, what);
    tensor_release(x), tensor_release(out), tensor_release(idx);
}

/* The op, forward and backward: sum(out * gy) sends gy to the first maxima. */
static void check_op(json_t *kase, Device device, DType dtype, const char *what) {
    Tensor *x = fixture_on(kase, "x", dtype, device), *gy = fixture_on(kase, "gy", dtype, device);
    cr_assert_eq(tensor_set_requires_grad(x, true), 0, "%s: %s", what, error_get());
    Tensor *out = tensor_max_pool2d(x, geometry(kase, "kh"), geometry(kase, "kw"),
                                    geometry(kase, "sh"), geometry(kase, "sw"),
                                    geometry(kase, "ph"), geometry(kase, "pw"));
    cr_assert(out != NULL, "%s: %s", what, error_get());
    assert_equals_torch(kase, "out", out, what);
    cr_assert_eq(tensor_backward_with(out, gy), 0, "%s backward: %s", what, error_get());
    cr_assert(x->grad != NULL, "%s: no gradient", what);
    assert_equals_torch(kase, "gx", x->grad, what);
    tensor_release(x), tensor_release(gy), tensor_release(out);
}

void pool_ties_check(json_t *fixture, const char *name, Device device, DType dtype) {
    json_t *kase = fixture_case(fixture, name);
    char dev[32], what[96];
    snprintf(what, sizeof what, "max_pool2d ties %s %s %s", name, dtype_name(dtype),
             device_name(device, dev, sizeof dev));
    check_kernel(kase, device, dtype, what);
    check_op(kase, device, dtype, what);
}

void pool_ties_check_all(Device device) {
    json_t *fx = fixture_load("pool_ties"), *cases = json_object_get(fx, "cases");
    cr_assert(json_object_size(cases) > 0, "pool_ties.json has no cases");
    const char *name;
    json_t *kase;
    json_object_foreach(cases, name, kase) {
        pool_ties_check(fx, name, device, DTYPE_FLOAT32);
        pool_ties_check(fx, name, device, DTYPE_FLOAT64);
    }
    json_decref(fx);
}
