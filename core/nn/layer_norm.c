/* layer_norm.c - nn.LayerNorm(normalized_shape, eps=1e-5,
 * elementwise_affine=True, bias=True).
 *
 * Normalises over the last len(normalized_shape) dims of its input, which
 * must equal normalized_shape; the same in training and eval (no running
 * statistics). With elementwise_affine, parameters weight (ones) and bias
 * (zeros, only when bias) of normalized_shape, registered in torch's order
 * so the state_dict keys match. The math is tensor_layer_norm.
 */
#include <string.h>

#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

typedef struct {
    Module base;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS]; /* normalized_shape */
    double eps;
} LayerNorm;

int nn_layer_norm_shape(int norm_ndim, const int64_t *norm_shape, int ndim, const int64_t *in,
                        int *out_ndim, int64_t *out) {
    char s[128], ns[128];
    bool fits = ndim >= norm_ndim;
    for (int i = 0; fits && i < norm_ndim; i++) fits = in[ndim - norm_ndim + i] == norm_shape[i];
    if (!fits) {
        shape_str(norm_ndim, norm_shape, ns, sizeof ns);
        return error_set("normalized_shape=%s but its input %s does not end with %s", ns,
                         shape_str(ndim, in, s, sizeof s), ns);
    }
    return module_infer_same_shape(NULL, ndim, in, out_ndim, out);
}

static int layer_norm_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim,
                                  int64_t *out) {
    const LayerNorm *l = (const LayerNorm *)m;
    return nn_layer_norm_shape(l->ndim, l->shape, ndim, in, out_ndim, out);
}

static Tensor *layer_norm_forward(Module *m, Tensor *x) {
    LayerNorm *l = (LayerNorm *)m;
    return tensor_layer_norm(x, l->ndim, l->shape, module_get(m, "weight"), module_get(m, "bias"),
                             l->eps);
}

static const ModuleVTable layer_norm_vtable = {
    .type = "LayerNorm",
    .forward = layer_norm_forward,
    .infer_shape = layer_norm_infer_shape,
};

static int check_args(int ndim, const int64_t *shape, double eps) {
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS)
        return error_set("LayerNorm: normalized_shape must have 1 to %d dims, got %d",
                         TENSOR_MAX_DIMS, ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0)
            return error_set("LayerNorm: normalized_shape[%d] must be positive, got %lld", i,
                             (long long)shape[i]);
    if (!(eps > 0)) return error_set("LayerNorm: eps must be positive, got %g", eps);
    return 0;
}

Module *nn_layer_norm(int ndim, const int64_t *normalized_shape, double eps,
                      bool elementwise_affine, bool bias) {
    if (check_args(ndim, normalized_shape, eps)) return NULL;
    LayerNorm *l = (LayerNorm *)module_alloc(sizeof *l, &layer_norm_vtable);
    if (!l) return NULL;
    l->ndim = ndim;
    memcpy(l->shape, normalized_shape, (size_t)ndim * sizeof *normalized_shape);
    l->eps = eps;
    Module *m = &l->base;
    const Device cpu = DEVICE_CPU_INIT;
    int rc = 0;
    if (elementwise_affine) {
        rc = module_add_param(m, "weight", tensor_full(ndim, l->shape, 1.0, DTYPE_FLOAT32, cpu));
        if (rc == 0 && bias)
            rc = module_add_param(m, "bias", tensor_zeros(ndim, l->shape, DTYPE_FLOAT32, cpu));
    }
    if (rc != 0) {
        error_prefix("LayerNorm");
        module_free(m);
        return NULL;
    }
    return m;
}
