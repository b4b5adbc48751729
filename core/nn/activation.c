/* activation.c - nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU(approximate),
 * nn.SiLU, nn.LeakyReLU(negative_slope), nn.Identity and nn.Softmax(dim).
 *
 * Parameterless layers over the elementwise ops; the output has the input's
 * shape. Softmax keeps its dim (torch's implicit dim=None is deprecated, so
 * the dim is required here). Identity returns its input itself, as torch's.
 */
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

static Tensor *relu_forward(Module *m, Tensor *x) { return tensor_relu(x); }
static Tensor *sigmoid_forward(Module *m, Tensor *x) { return tensor_sigmoid(x); }
static Tensor *tanh_forward(Module *m, Tensor *x) { return tensor_tanh(x); }

static Tensor *relu_forward_consume(Module *m, Tensor *x) { return tensor_relu_consume(x); }

/* elementwise: the blocked layout passes through as it is */
static const ModuleVTable relu_vtable = {
    .type = "ReLU",
    .forward = relu_forward,
    .infer_shape = module_infer_same_shape,
    .forward_consume = relu_forward_consume,
    .forward_blocked = relu_forward_consume,
};
static const ModuleVTable sigmoid_vtable = {
    .type = "Sigmoid",
    .forward = sigmoid_forward,
    .infer_shape = module_infer_same_shape,
};
static const ModuleVTable tanh_vtable = {
    .type = "Tanh",
    .forward = tanh_forward,
    .infer_shape = module_infer_same_shape,
};

Module *nn_relu(void) { return module_alloc(sizeof(Module), &relu_vtable); }
Module *nn_sigmoid(void) { return module_alloc(sizeof(Module), &sigmoid_vtable); }
Module *nn_tanh(void) { return module_alloc(sizeof(Module), &tanh_vtable); }

static Tensor *silu_forward(Module *m, Tensor *x) { return tensor_silu(x); }
static Tensor *identity_forward(Module *m, Tensor *x) { return tensor_retain(x); }

static const ModuleVTable silu_vtable = {
    .type = "SiLU",
    .forward = silu_forward,
    .infer_shape = module_infer_same_shape,
};
static Tensor *identity_forward_consume(Module *m, Tensor *x) { return x; }

static const ModuleVTable identity_vtable = {
    .type = "Identity",
    .forward = identity_forward,
    .infer_shape = module_infer_same_shape,
    .forward_consume = identity_forward_consume,
    .forward_blocked = identity_forward_consume,
};

Module *nn_silu(void) { return module_alloc(sizeof(Module), &silu_vtable); }
Module *nn_identity(void) { return module_alloc(sizeof(Module), &identity_vtable); }

/* The layers with one constant argument: GELU's approximation (0 none,
 * 1 tanh) and LeakyReLU's negative_slope. */
typedef struct {
    Module base;
    double arg;
} ArgActivation;

static Tensor *gelu_forward(Module *m, Tensor *x) {
    return tensor_gelu(x, ((ArgActivation *)m)->arg != 0);
}
static Tensor *leaky_relu_forward(Module *m, Tensor *x) {
    return tensor_leaky_relu(x, ((ArgActivation *)m)->arg);
}

static const ModuleVTable gelu_vtable = {
    .type = "GELU",
    .forward = gelu_forward,
    .infer_shape = module_infer_same_shape,
};
static const ModuleVTable leaky_relu_vtable = {
    .type = "LeakyReLU",
    .forward = leaky_relu_forward,
    .infer_shape = module_infer_same_shape,
};

static Module *arg_activation(const ModuleVTable *vtable, double arg) {
    ArgActivation *a = (ArgActivation *)module_alloc(sizeof *a, vtable);
    if (!a) return NULL;
    a->arg = arg;
    return &a->base;
}

Module *nn_gelu(bool approximate_tanh) { return arg_activation(&gelu_vtable, approximate_tanh); }
Module *nn_leaky_relu(double negative_slope) {
    return arg_activation(&leaky_relu_vtable, negative_slope);
}

typedef struct {
    Module base;
    int dim;
} Softmax;

int nn_softmax_shape(int dim, int ndim, const int64_t *in, int *out_ndim, int64_t *out) {
    /* torch treats a 0-d input as 1-d here (dim -1 or 0). */
    int n = ndim ? ndim : 1;
    if (dim < -n || dim >= n)
        return error_set("dim=%d is out of range for a %d-d input", dim, ndim);
    return module_infer_same_shape(NULL, ndim, in, out_ndim, out);
}

static int softmax_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim,
                               int64_t *out) {
    return nn_softmax_shape(((Softmax *)m)->dim, ndim, in, out_ndim, out);
}

static Tensor *softmax_forward(Module *m, Tensor *x) {
    return tensor_softmax(x, ((Softmax *)m)->dim);
}

static const ModuleVTable softmax_vtable = {
    .type = "Softmax",
    .forward = softmax_forward,
    .infer_shape = softmax_infer_shape,
};

Module *nn_softmax(int dim) {
    Softmax *s = (Softmax *)module_alloc(sizeof *s, &softmax_vtable);
    if (!s) return NULL;
    s->dim = dim;
    return &s->base;
}
