/* flatten.c - nn.Flatten(start_dim=1, end_dim=-1): dims start..end merged
 * into one, as a view when the strides allow (tensor_flatten). */
#include "core/error.h"
#include "core/nn/module.h"

typedef struct {
    Module base;
    int start_dim, end_dim;
} Flatten;

/* start and end wrapped against ndim, or -1 with an error. A 0-d input
 * counts as 1-d, as in torch. */
static int flatten_dims(int start_dim, int end_dim, int ndim, int *start, int *end) {
    int n = ndim ? ndim : 1;
    int s = start_dim < 0 ? start_dim + n : start_dim;
    int e = end_dim < 0 ? end_dim + n : end_dim;
    if (s < 0 || s >= n)
        return error_set("start_dim=%d is out of range for a %d-d input", start_dim, ndim);
    if (e < 0 || e >= n)
        return error_set("end_dim=%d is out of range for a %d-d input", end_dim, ndim);
    if (s > e)
        return error_set("start_dim=%d comes after end_dim=%d for a %d-d input", start_dim, end_dim,
                         ndim);
    *start = s;
    *end = e;
    return 0;
}

int nn_flatten_shape(int start_dim, int end_dim, int ndim, const int64_t *in, int *out_ndim,
                     int64_t *out) {
    int s = 0, e = 0;
    if (flatten_dims(start_dim, end_dim, ndim, &s, &e) != 0) return -1;
    if (ndim == 0) {
        out[0] = 1;
        *out_ndim = 1;
        return 0;
    }
    int k = 0;
    for (int i = 0; i < s; i++) out[k++] = in[i];
    int64_t merged = 1;
    for (int i = s; i <= e; i++)
        if (__builtin_mul_overflow(merged, in[i], &merged)) /* a spec's sizes are anyone's */
            return error_set("dims %d to %d of its input hold more than 2^63 values", s,
                             e);
    out[k++] = merged;
    for (int i = e + 1; i < ndim; i++) out[k++] = in[i];
    *out_ndim = k;
    return 0;
}

static int flatten_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim,
                               int64_t *out) {
    const Flatten *f = (const Flatten *)m;
    return nn_flatten_shape(f->start_dim, f->end_dim, ndim, in, out_ndim, out);
}

static Tensor *flatten_forward(Module *m, Tensor *x) {
    int s = 0, e = 0;
    const Flatten *f = (const Flatten *)m;
    if (flatten_dims(f->start_dim, f->end_dim, x->ndim, &s, &e) != 0) return NULL;
    return tensor_flatten(x, s, e);
}

static const ModuleVTable flatten_vtable = {
    .type = "Flatten",
    .forward = flatten_forward,
    .infer_shape = flatten_infer_shape,
};

Module *nn_flatten(int start_dim, int end_dim) {
    Flatten *f = (Flatten *)module_alloc(sizeof *f, &flatten_vtable);
    if (!f) return NULL;
    f->start_dim = start_dim;
    f->end_dim = end_dim;
    return &f->base;
}
