/* adam.c - torch.optim.Adam and torch.optim.AdamW (PyTorch 1.13, one
 * parameter group, maximize/foreach/capturable off).
 *
 * For each parameter p with a grad g, with its own step counter t:
 *
 *     t += 1
 *     Adam:  g = g + weight_decay * p           (L2, if weight_decay != 0)
 *     AdamW: p = p * (1 - lr * weight_decay)    (decoupled)
 *     m = beta1 * m + (1 - beta1) * g
 *     v = beta2 * v + (1 - beta2) * g * g
 *     v_hat = amsgrad ? (vmax = max(vmax, v)) : v
 *     p -= lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
 *
 * in the backend's fused adam_update kernel, with the numbers (lr / (1 -
 * beta1^t), ...) adam_update_consts computes in double. State (m, v, vmax:
 * zeros, as torch creates them) appears on a parameter's first step; a
 * parameter without a grad keeps its counter, so counters can differ, as in
 * torch.
 */
#include <math.h>
#include <stdlib.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/optim/optimizer.h"

typedef struct {
    Optimizer base; /* first: the block is freed as an Optimizer */
    AdamOptions o;
    bool decoupled; /* AdamW */
} Adam;

enum { SLOT_EXP_AVG, SLOT_EXP_AVG_SQ, SLOT_MAX_EXP_AVG_SQ };
enum { HP_BETA1, HP_BETA2, HP_EPS, HP_WEIGHT_DECAY, HP_AMSGRAD };

AdamOptions adam_options_default(void) {
    return (AdamOptions){.lr = 1e-3, .betas = {0.9, 0.999}, .eps = 1e-8, .weight_decay = 0,
                         .amsgrad = false};
}

AdamOptions adamw_options_default(void) {
    AdamOptions o = adam_options_default();
    o.weight_decay = 1e-2;
    return o;
}

static void adam_get_hparams(const Optimizer *opt, double *v) {
    const AdamOptions *o = &((const Adam *)opt)->o;
    v[HP_BETA1] = o->betas[0];
    v[HP_BETA2] = o->betas[1];
    v[HP_EPS] = o->eps;
    v[HP_WEIGHT_DECAY] = o->weight_decay;
    v[HP_AMSGRAD] = o->amsgrad ? 1 : 0;
}

/* torch's ValueErrors, plus non-finite values. */
static int adam_check(const AdamOptions *o) {
    if (!(o->lr >= 0) || isinf(o->lr)) return error_set("invalid learning rate %g", o->lr);
    if (!(o->eps >= 0) || isinf(o->eps)) return error_set("invalid epsilon value %g", o->eps);
    for (int k = 0; k < 2; k++)
        if (!(o->betas[k] >= 0 && o->betas[k] < 1))
            return error_set("invalid beta parameter at index %d: %g", k, o->betas[k]);
    if (!(o->weight_decay >= 0) || isinf(o->weight_decay))
        return error_set("invalid weight_decay value %g", o->weight_decay);
    return 0;
}

static int adam_set_hparams(Optimizer *opt, double lr, const double *v, bool apply) {
    double amsgrad = v[HP_AMSGRAD];
    if (amsgrad != 0 && amsgrad != 1) return error_set("amsgrad must be 0 or 1, got %g", amsgrad);
    AdamOptions o = {.lr = lr,
                     .betas = {v[HP_BETA1], v[HP_BETA2]},
                     .eps = v[HP_EPS],
                     .weight_decay = v[HP_WEIGHT_DECAY],
                     .amsgrad = amsgrad != 0};
    if (adam_check(&o) != 0) return -1;
    if (apply) {
        opt->lr = lr;
        ((Adam *)opt)->o = o;
    }
    return 0;
}

/* A parameter has no state, or step + exp_avg + exp_avg_sq (+ max_exp_avg_sq
 * under amsgrad; torch keeps one that amsgrad no longer uses, so do we). */
static int adam_check_state(const Optimizer *opt, const double *values, int i,
                            Tensor *const *slots, int64_t step) {
    bool any = step >= 0 || slots[SLOT_EXP_AVG] || slots[SLOT_EXP_AVG_SQ] ||
               slots[SLOT_MAX_EXP_AVG_SQ];
    if (!any) return 0;
    const char *missing = step < 0                     ? "step"
                          : !slots[SLOT_EXP_AVG]       ? "exp_avg"
                          : !slots[SLOT_EXP_AVG_SQ]    ? "exp_avg_sq"
                          : values[HP_AMSGRAD] != 0 && !slots[SLOT_MAX_EXP_AVG_SQ]
                              ? "max_exp_avg_sq"
                              : NULL;
    if (missing) return error_set("state of parameter %d is incomplete: 'state.%d.%s' is missing", i, i, missing);
    return 0;
}

void adam_update_consts(double *out, double lr, double beta1, double beta2, double eps,
                        double weight_decay, bool decoupled, int64_t step) {
    double bias_correction1 = 1.0 - pow(beta1, (double)step);
    double bias_correction2 = 1.0 - pow(beta2, (double)step);
    out[ADAM_BETA1] = beta1;
    out[ADAM_ONE_MINUS_BETA1] = 1.0 - beta1;
    out[ADAM_BETA2] = beta2;
    out[ADAM_ONE_MINUS_BETA2] = 1.0 - beta2;
    out[ADAM_WEIGHT_DECAY] = decoupled ? 0 : weight_decay;
    out[ADAM_DECAY] = decoupled ? 1.0 - lr * weight_decay : 1;
    out[ADAM_EPS] = eps;
    out[ADAM_NEG_STEP_SIZE] = -(lr / bias_correction1);
    out[ADAM_BC2_SQRT] = sqrt(bias_correction2);
}

/* State made at a parameter's first step (a loaded state has all three;
 * optimizer_step.c drops what was made if the step fails), then every
 * counter moved. */
static int adam_prepare(Optimizer *opt, int n, const int *index, bool decay) {
    Adam *a = (Adam *)opt;
    for (int k = 0; k < n; k++) {
        int i = index[k];
        Tensor *p = opt->params[i];
        Tensor **m = optimizer_slot(opt, i, SLOT_EXP_AVG);
        Tensor **v = optimizer_slot(opt, i, SLOT_EXP_AVG_SQ);
        Tensor **vmax = optimizer_slot(opt, i, SLOT_MAX_EXP_AVG_SQ);
        if (*m) continue;
        opt->steps[i] = 0;
        if (!(*m = tensor_zeros_like(p)) || !(*v = tensor_zeros_like(p)) ||
            (a->o.amsgrad && !(*vmax = tensor_zeros_like(p))))
            return error_prefix("%s: state of parameter %d", opt->type->name, i);
    }
    for (int k = 0; k < n; k++)
        adam_update_consts(optimizer_consts(opt, index[k]), opt->lr, a->o.betas[0],
                           a->o.betas[1], a->o.eps, decay ? a->o.weight_decay : 0, a->decoupled,
                           ++opt->steps[index[k]]);
    return 0;
}

static int adam_bind(Optimizer *opt, int n, OptimUpdate *u, const int *index) {
    bool amsgrad = ((Adam *)opt)->o.amsgrad;
    for (int k = 0; k < n; k++) {
        for (int j = 0; j < 3; j++) u[k].state[j] = *optimizer_slot(opt, index[k], j);
        if (!amsgrad) u[k].state[SLOT_MAX_EXP_AVG_SQ] = NULL;
        if (!u[k].state[0] || !u[k].state[1] || (amsgrad && !u[k].state[2]))
            return error_set("%s: parameter %d has no state yet", opt->type->name, index[k]);
    }
    return 0;
}

static void adam_update(const Backend *be, int n, const OptimUpdate *u) { be->adam_update(n, u); }

#define ADAM_TYPE(NAME)                                                                     \
    {                                                                                       \
        .name = NAME, .n_slots = 3,                                                         \
        .slot_names = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}, .has_step = true,        \
        .n_hparams = 5,                                                                     \
        .hparam_names = {"betas.0", "betas.1", "eps", "weight_decay", "amsgrad"},           \
        .n_consts = ADAM_CONSTS, .prepare = adam_prepare, .bind = adam_bind,                 \
        .update = adam_update, .free = NULL,                                                \
        .get_hparams = adam_get_hparams, .set_hparams = adam_set_hparams,                   \
        .check_state = adam_check_state,                                                    \
    }

static const OptimizerType adam_type = ADAM_TYPE("Adam");
static const OptimizerType adamw_type = ADAM_TYPE("AdamW");

static Optimizer *new_adam(const OptimizerType *type, bool decoupled, Tensor *const *params,
                           int n, AdamOptions opts) {
    if (adam_check(&opts) != 0) {
        error_prefix("%s", type->name);
        return NULL;
    }
    Adam *a = calloc(1, sizeof *a);
    if (!a) {
        error_set("%s: out of memory", type->name);
        return NULL;
    }
    a->base.type = type;
    a->base.lr = opts.lr;
    a->o = opts;
    a->decoupled = decoupled;
    if (optimizer_init(&a->base, params, n) != 0) {
        optimizer_free(&a->base);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const Backend *be = backend_for(params[i]->device);
        if (!be || !be->adam_update) {
            if (be) error_set("%s: the %s backend has no adam_update kernel", type->name, be->name);
            else error_prefix("%s: parameter %d", type->name, i);
            optimizer_free(&a->base);
            return NULL;
        }
    }
    return &a->base;
}

Optimizer *adam_new(Tensor *const *params, int n, AdamOptions opts) {
    return new_adam(&adam_type, false, params, n, opts);
}

Optimizer *adamw_new(Tensor *const *params, int n, AdamOptions opts) {
    return new_adam(&adamw_type, true, params, n, opts);
}
