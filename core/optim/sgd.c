/* sgd.c - torch.optim.SGD (PyTorch 1.13, one parameter group).
 *
 * For each parameter p with a grad g, torch's _single_tensor_sgd does
 *
 *     d = g + weight_decay * p                      (if weight_decay != 0)
 *     if momentum != 0:
 *         buf = clone(d)                            on the buffer's first use
 *         buf = momentum * buf + (1 - dampening) * d  afterwards
 *         d = nesterov ? d + momentum * buf : buf
 *     p -= lr * d
 *
 * all of which runs in the backend's fused sgd_update kernel. The first use
 * is special (no dampening), so the step's numbers say `first` = the buffer
 * did not exist yet; it is created only when a step uses it, and a restored
 * checkpoint brings it back, so a resumed run takes the same branch.
 */
#include <math.h>
#include <stdlib.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/optim/optimizer.h"

typedef struct {
    Optimizer base; /* first: the block is freed as an Optimizer */
    SgdOptions o;
} Sgd;

enum { HP_MOMENTUM, HP_DAMPENING, HP_WEIGHT_DECAY, HP_NESTEROV };

static void sgd_get_hparams(const Optimizer *opt, double *v) {
    const SgdOptions *o = &((const Sgd *)opt)->o;
    v[HP_MOMENTUM] = o->momentum;
    v[HP_DAMPENING] = o->dampening;
    v[HP_WEIGHT_DECAY] = o->weight_decay;
    v[HP_NESTEROV] = o->nesterov ? 1 : 0;
}

/* torch's ValueErrors, plus non-finite values, which torch lets through
 * into NaN parameters. */
static int sgd_check(double lr, double momentum, double dampening, double weight_decay,
                     bool nesterov) {
    if (!(lr >= 0) || isinf(lr)) return error_set("invalid learning rate %g", lr);
    if (!(momentum >= 0) || isinf(momentum)) return error_set("invalid momentum value %g", momentum);
    if (!isfinite(dampening)) return error_set("invalid dampening value %g", dampening);
    if (!(weight_decay >= 0) || isinf(weight_decay))
        return error_set("invalid weight_decay value %g", weight_decay);
    if (nesterov && (momentum <= 0 || dampening != 0))
        return error_set("nesterov momentum requires a momentum and zero dampening");
    return 0;
}

/* torch refuses nesterov without momentum when the optimizer is made, not
 * after: a OneCycleLR down to base_momentum 0 (or a checkpoint of it) sets
 * momentum 0, which the update then skips, Nesterov's term with it. */
static int sgd_set_hparams(Optimizer *opt, double lr, const double *v, bool apply) {
    double nesterov = v[HP_NESTEROV];
    if (nesterov != 0 && nesterov != 1) return error_set("nesterov must be 0 or 1, got %g", nesterov);
    if (sgd_check(lr, v[HP_MOMENTUM], v[HP_DAMPENING], v[HP_WEIGHT_DECAY],
                  nesterov != 0 && v[HP_MOMENTUM] != 0) != 0)
        return -1;
    if (apply) {
        opt->lr = lr;
        ((Sgd *)opt)->o = (SgdOptions){.lr = lr,
                                       .momentum = v[HP_MOMENTUM],
                                       .dampening = v[HP_DAMPENING],
                                       .weight_decay = v[HP_WEIGHT_DECAY],
                                       .nesterov = nesterov != 0};
    }
    return 0;
}

/* Any momentum buffer, or none, is a valid SGD state (as in torch, a buffer
 * is kept but unused while momentum is 0). */
static int sgd_check_state(const Optimizer *opt, const double *values, int i,
                           Tensor *const *slots, int64_t step) {
    return 0;
}

void sgd_update_consts(double *out, double lr, double momentum, double dampening,
                       double weight_decay, bool nesterov, bool first) {
    out[SGD_WEIGHT_DECAY] = weight_decay;
    out[SGD_MOMENTUM] = momentum;
    out[SGD_ONE_MINUS_DAMPENING] = 1.0 - dampening;
    out[SGD_NEG_LR] = -lr;
    out[SGD_NESTEROV] = nesterov;
    out[SGD_FIRST] = first;
}

/* A buffer is made at its first use; optimizer_step.c drops it again if
 * the step fails (kept, it would lose that use: a buffer starts as d). */
static int sgd_prepare(Optimizer *opt, int n, const int *index, bool decay) {
    const SgdOptions *o = &((Sgd *)opt)->o;
    for (int k = 0; k < n; k++) {
        Tensor **buf = optimizer_slot(opt, index[k], 0);
        bool first = o->momentum != 0 && !*buf;
        if (first && !(*buf = tensor_zeros_like(opt->params[index[k]])))
            return error_prefix("SGD: momentum buffer of parameter %d", index[k]);
        sgd_update_consts(optimizer_consts(opt, index[k]), opt->lr, o->momentum, o->dampening,
                          decay ? o->weight_decay : 0, o->nesterov, first);
    }
    return 0;
}

/* A buffer is passed wherever there is one; the kernels use it while the
 * step's momentum is not 0. */
static int sgd_bind(Optimizer *opt, int n, OptimUpdate *u, const int *index) {
    for (int k = 0; k < n; k++) {
        u[k].state[0] = *optimizer_slot(opt, index[k], 0);
        if (!u[k].state[0] && ((Sgd *)opt)->o.momentum != 0)
            return error_set("SGD: parameter %d has no momentum buffer yet", index[k]);
    }
    return 0;
}

static void sgd_update(const Backend *be, int n, const OptimUpdate *u) { be->sgd_update(n, u); }

static const OptimizerType sgd_type = {
    .name = "SGD",
    .n_slots = 1,
    .slot_names = {"momentum_buffer"},
    .has_step = false,
    .n_hparams = 4,
    .hparam_names = {"momentum", "dampening", "weight_decay", "nesterov"},
    .n_consts = SGD_CONSTS,
    .prepare = sgd_prepare,
    .bind = sgd_bind,
    .update = sgd_update,
    .free = NULL,
    .get_hparams = sgd_get_hparams,
    .set_hparams = sgd_set_hparams,
    .check_state = sgd_check_state,
};

Optimizer *sgd_new(Tensor *const *params, int n, SgdOptions opts) {
    if (sgd_check(opts.lr, opts.momentum, opts.dampening, opts.weight_decay, opts.nesterov) != 0) {
        error_prefix("SGD");
        return NULL;
    }
    Sgd *s = calloc(1, sizeof *s);
    if (!s) {
        error_set("SGD: out of memory");
        return NULL;
    }
    s->base.type = &sgd_type;
    s->base.lr = opts.lr;
    s->o = opts;
    if (optimizer_init(&s->base, params, n) != 0) {
        optimizer_free(&s->base);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const Backend *be = backend_for(params[i]->device);
        if (!be || !be->sgd_update) {
            if (be) error_set("SGD: the %s backend has no sgd_update kernel", be->name);
            else error_prefix("SGD: parameter %d", i);
            optimizer_free(&s->base);
            return NULL;
        }
    }
    return &s->base;
}
