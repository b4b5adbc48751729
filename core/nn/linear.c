/* linear.c - nn.Linear: y = x @ weight^T + bias over the last dimension.
 *
 * weight [out_features, in_features] and bias [out_features], initialised as
 * torch's reset_parameters() (core/nn/init.c). The math is tensor_linear.
 */
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

typedef struct {
    Module base;
    int64_t in_features, out_features;
} Linear;

int nn_linear_shape(int64_t in_features, int64_t out_features, int ndim, const int64_t *in,
                    int *out_ndim, int64_t *out) {
    if (ndim < 1) return error_set("expected an input with at least 1 dimension, got a 0-d one");
    if (in[ndim - 1] != in_features)
        return error_set("in_features=%lld but its input has %lld features", (long long)in_features,
                         (long long)in[ndim - 1]);
    for (int i = 0; i < ndim - 1; i++) out[i] = in[i];
    out[ndim - 1] = out_features;
    *out_ndim = ndim;
    return 0;
}

static int linear_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim, int64_t *out) {
    const Linear *l = (const Linear *)m;
    return nn_linear_shape(l->in_features, l->out_features, ndim, in, out_ndim, out);
}

static Tensor *linear_forward(Module *m, Tensor *x) {
    return tensor_linear(x, module_get(m, "weight"), module_get(m, "bias"));
}

static const ModuleVTable linear_vtable = {
    .type = "Linear",
    .forward = linear_forward,
    .infer_shape = linear_infer_shape,
};

Module *nn_linear(int64_t in_features, int64_t out_features, bool bias, Rng *rng) {
    if (in_features <= 0) {
        error_set("Linear: in_features must be positive, got %lld", (long long)in_features);
        return NULL;
    }
    if (out_features <= 0) {
        error_set("Linear: out_features must be positive, got %lld", (long long)out_features);
        return NULL;
    }
    if (!rng) {
        error_set("Linear: no Rng to initialise the weights from");
        return NULL;
    }
    Linear *l = (Linear *)module_alloc(sizeof *l, &linear_vtable);
    if (!l) return NULL;
    l->in_features = in_features;
    l->out_features = out_features;
    Module *m = &l->base;
    int64_t wshape[2] = {out_features, in_features};
    if (module_add_param(m, "weight",
                         tensor_empty(2, wshape, DTYPE_FLOAT32, DEVICE_CPU_INIT)) != 0 ||
        (bias && module_add_param(m, "bias", tensor_empty(1, &out_features, DTYPE_FLOAT32,
                                                          DEVICE_CPU_INIT)) != 0) ||
        nn_init_linear_like(module_get(m, "weight"), module_get(m, "bias"), rng) != 0) {
        error_prefix("Linear");
        module_free(m);
        return NULL;
    }
    return m;
}
