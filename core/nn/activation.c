/* activation.c - nn.ReLU, nn.Sigmoid, nn.Tanh and nn.Softmax(dim).
 *
 * Parameterless layers over the elementwise ops; the output has the input's
 * shape. Softmax keeps its dim (torch's implicit dim=None is deprecated, so
 * the dim is required here).
 */
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

static Tensor *relu_forward(Module *m, Tensor *x) { return tensor_relu(x); }
static Tensor *sigmoid_forward(Module *m, Tensor *x) { return tensor_sigmoid(x); }
static Tensor *tanh_forward(Module *m, Tensor *x) { return tensor_tanh(x); }

static const ModuleVTable relu_vtable = {"ReLU", relu_forward, module_infer_same_shape, NULL};
static const ModuleVTable sigmoid_vtable = {"Sigmoid", sigmoid_forward, module_infer_same_shape,
                                            NULL};
static const ModuleVTable tanh_vtable = {"Tanh", tanh_forward, module_infer_same_shape, NULL};

Module *nn_relu(void) { return module_alloc(sizeof(Module), &relu_vtable); }
Module *nn_sigmoid(void) { return module_alloc(sizeof(Module), &sigmoid_vtable); }
Module *nn_tanh(void) { return module_alloc(sizeof(Module), &tanh_vtable); }

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

static const ModuleVTable softmax_vtable = {"Softmax", softmax_forward, softmax_infer_shape,
                                            NULL};

Module *nn_softmax(int dim) {
    Softmax *s = (Softmax *)module_alloc(sizeof *s, &softmax_vtable);
    if (!s) return NULL;
    s->dim = dim;
    return &s->base;
}
