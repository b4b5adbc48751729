/* dropout.c - nn.Dropout(p=0.5): in training, zero each element with
 * probability p and scale the rest by 1/(1-p); in eval, the identity.
 *
 * The mask comes from the counter-based stream of the model's shared Rng
 * (module_set_rng): a training forward uses numbers [offset, offset+numel)
 * of stream `seed` and advances the offset by numel, whatever p is (in a
 * data-parallel job: its rows' places among the global batch's numbers,
 * module_draw_stream, and the offset moves past all of them). So the
 * masks of a run are a pure function of (seed, offset), which a checkpoint
 * saves, and CPU and GPU draw the same masks (at p = 0 the numbers are
 * passed over).
 */
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

typedef struct {
    Module base;
    double p;
} Dropout;

static Tensor *dropout_forward(Module *m, Tensor *x) {
    const Dropout *d = (const Dropout *)m;
    if (!m->training) return tensor_dropout(x, d->p, false, 0, 0);
    if (!x) return NULL;
    int64_t rows = x->ndim > 0 ? x->shape[0] : 1;
    if (rows == 0) return tensor_retain(x); /* no element, no number drawn */
    ModuleStream st;
    if (module_draw_stream(m, rows, tensor_numel(x) / rows, &st) != 0)
        return error_prefix("mask"), NULL;
    return tensor_dropout_rows(x, d->p, true, st.seed, st.offset, st.row_stride, st.base);
}

static const ModuleVTable dropout_vtable = {
    .type = "Dropout",
    .forward = dropout_forward,
    .infer_shape = module_infer_same_shape,
};

Module *nn_dropout(double p) {
    if (!(p >= 0 && p <= 1)) /* also rejects NAN */
        return error_set("Dropout: p must be in [0, 1], got %g", p), NULL;
    Dropout *d = (Dropout *)module_alloc(sizeof *d, &dropout_vtable);
    if (!d) return NULL;
    d->p = p;
    return &d->base;
}
