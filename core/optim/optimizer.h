/* optimizer.h - torch.optim: SGD, Adam and AdamW over one parameter group.
 *
 * An Optimizer holds its parameters (retained), the learning rate, and the
 * per-parameter state PyTorch keeps in optimizer.state[p]: SGD's
 * momentum_buffer, Adam's exp_avg / exp_avg_sq / max_exp_avg_sq and its
 * per-parameter step counter. The arithmetic is PyTorch 1.13's exactly
 * (see sgd.c, adam.c) and runs in the fused sgd_update / adam_update kernels
 * of the parameters' backend, so the same code drives CPU and GPU tensors:
 * one call per step for every parameter with a grad (per device and dtype),
 * which a GPU runs as one kernel launch over the list.
 *
 * The trainer does, as a PyTorch loop does,
 *
 *     Optimizer *opt = sgd_new(params, n, (SgdOptions){.lr = 0.01, .momentum = 0.9});
 *     for each batch:
 *         optimizer_zero_grad(opt); loss = ...; tensor_backward(loss);
 *         opt->lr = lr_scheduler_get_lr(s);   // lr is public
 *         optimizer_step(opt);
 *
 * As in torch, a parameter whose grad is NULL at a step is skipped: neither
 * it nor its state (step counter included) changes.
 *
 * Checkpoints: optimizer_state_dict() flattens torch's state_dict() into
 * named tensors, PyTorch's nesting joined by dots:
 *
 *     state.<i>.momentum_buffer                  SGD (once it exists)
 *     state.<i>.exp_avg, state.<i>.exp_avg_sq,   Adam/AdamW (once param i
 *     state.<i>.max_exp_avg_sq (amsgrad),        has had a step)
 *     state.<i>.step                             0-dim float64
 *     param_groups.0.lr, .momentum, .dampening,  hyperparameters, each a
 *       .weight_decay, .nesterov, .betas.0,      0-dim float64 (booleans
 *       .betas.1, .eps, .amsgrad                 0 or 1)
 *     param_groups.0.params                      int64 [n]: 0..n-1, as torch
 *
 * With optimizer_set_no_decay_from(opt, k), parameters k..n-1 form torch's
 * second group, {"params": [...], "weight_decay": 0.0}, as nanoGPT's
 * configure_optimizers builds it: param_groups.0.params lists 0..k-1 and
 * param_groups.1.* (the same hyperparameters, weight_decay 0) k..n-1.
 *
 * State tensors are copies (a snapshot), on the parameters' device and dtype.
 * optimizer_load_state_dict() restores all of it, hyperparameters included
 * (as torch's load_state_dict does), into an optimizer built over parameters
 * of the same shapes, so that the resumed run continues the trajectory bit
 * for bit.
 */
#ifndef TRAIND_CORE_OPTIM_OPTIMIZER_H
#define TRAIND_CORE_OPTIM_OPTIMIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/tensor.h"
#include "core/tensor_dict.h"

typedef struct Optimizer Optimizer;

/* ---- construction (torch.optim's arguments and defaults) ---- */

/* torch.optim.SGD. Zero-initialising gives torch's defaults; lr is required
 * there, so set it. Errors as torch's ValueErrors: "SGD: invalid learning
 * rate -1", "SGD: nesterov momentum requires a momentum and zero dampening". */
typedef struct {
    double lr;
    double momentum;
    double dampening;
    double weight_decay; /* L2, added to the gradient */
    bool nesterov;
} SgdOptions;

/* torch.optim.Adam / AdamW. Start from adam_options_default() or
 * adamw_options_default(): lr 1e-3, betas (0.9, 0.999), eps 1e-8,
 * weight_decay 0 (Adam, L2 added to the gradient) or 1e-2 (AdamW, decoupled:
 * param *= 1 - lr * weight_decay), amsgrad false. */
typedef struct {
    double lr;
    double betas[2];
    double eps;
    double weight_decay;
    bool amsgrad;
} AdamOptions;

AdamOptions adam_options_default(void);
AdamOptions adamw_options_default(void);

/* Each takes n >= 1 distinct parameters: leaf, contiguous, float32 or float64
 * tensors, on any device whose backend has the update kernel. Every
 * parameter is retained. NULL with an error on bad options or parameters. */
Optimizer *sgd_new(Tensor *const *params, int n, SgdOptions opts);
Optimizer *adam_new(Tensor *const *params, int n, AdamOptions opts);
Optimizer *adamw_new(Tensor *const *params, int n, AdamOptions opts);

/* ---- use ---- */

/* One update of every parameter that has a grad. The grads must match their
 * parameter's shape, dtype and device; all are checked, and all the state
 * made, before any parameter changes. -1 with an error otherwise (or on
 * out-of-memory while creating state), nothing changed. */
int optimizer_step(Optimizer *opt);
/* optimizer_step in its two halves, for a step replayed by a CUDA graph
 * (core/train_graph.c). _prepare is the host's part: it makes missing
 * state, counts the step, and queues each updated parameter's numbers
 * (OptimUpdate.consts: lr, bias corrections) to its device without
 * waiting. _apply launches the updates, which read the numbers the last
 * _prepare queued. Each is all or nothing: -1 with an error and nothing
 * changed (no state made or counted, no parameter updated), e.g. when
 * _apply finds a parameter with no state or numbers yet. A graph captures
 * _apply once and runs _prepare before each replay; opt->states_made says
 * when the state tensors such a capture holds have changed. */
int optimizer_step_prepare(Optimizer *opt);
int optimizer_step_apply(Optimizer *opt);
/* Drops every parameter's grad (grad = NULL), as torch 2.x's default
 * zero_grad(set_to_none=True). torch 1.13's default zeroed the grads instead;
 * the two differ only for a parameter that gets no gradient in a step, which
 * is then skipped here rather than decayed with a zero gradient. */
void optimizer_zero_grad(Optimizer *opt);
/* torch.nn.utils.clip_grad_norm_(params, max_norm) (core/optim/clip_grad.c):
 * every gradient scaled to a total 2-norm of max_norm at most, on their
 * device, with no wait for it; returns that norm before scaling, a float64
 * 0-dim tensor on the parameters' device (0 when none has a gradient).
 * NULL with an error. */
Tensor *optimizer_clip_grad_norm(Optimizer *opt, double max_norm);
void optimizer_free(Optimizer *opt); /* NULL is fine; releases the parameters */

/* Parameters first..n-1 get no weight decay (torch's second param group);
 * -1 with an error unless 0 <= first <= n. */
int optimizer_set_no_decay_from(Optimizer *opt, int first);

/* "SGD", "Adam", "AdamW" */
const char *optimizer_name(const Optimizer *opt);

/* ---- checkpoints ---- */

/* Appends the state and hyperparameters (names above) to `out`, which the
 * caller initialised; entries of the same name are replaced. */
int optimizer_state_dict(const Optimizer *opt, TensorDict *out);
/* Restores what optimizer_state_dict wrote. Keys under "state." and
 * "param_groups." must all be known; other keys (a model's, a scheduler's)
 * are ignored, so one checkpoint dict can hold them all. Shapes, the
 * parameter count and the hyperparameters are checked, e.g.
 * "optimizer_load_state_dict: Adam: 'state.1.exp_avg' has shape [3], parameter 1 has [4]".
 * All or nothing: on error the optimizer is unchanged. */
int optimizer_load_state_dict(Optimizer *opt, const TensorDict *dict);

/* ---- for implementations (sgd.c, adam.c) ---- */

#define OPTIMIZER_MAX_SLOTS 4
#define OPTIMIZER_MAX_HPARAMS 8
#define OPTIMIZER_MAX_DEVICES 4

/* What one optimizer type is; the base code in optimizer.c drives it. */
typedef struct {
    const char *name;
    /* Per-parameter state tensors, saved as state.<i>.<slot_names[j]>. */
    int n_slots;
    const char *slot_names[OPTIMIZER_MAX_SLOTS];
    /* Whether parameters have a step counter (state.<i>.step). */
    bool has_step;
    /* Hyperparameters besides lr, saved as param_groups.0.<name>. */
    int n_hparams;
    const char *hparam_names[OPTIMIZER_MAX_HPARAMS];
    /* Doubles in a parameter's update numbers (SGD_CONSTS, ADAM_CONSTS). */
    int n_consts;
    /* Parameters index[0..n-1] (each with a checked grad; one device,
     * dtype and group) are about to be updated: makes their missing state,
     * moves their step counters, and writes each one's numbers at
     * optimizer_consts(), with the weight decay when `decay`, else none.
     * -1 with an error (optimizer_step.c undoes what it did). */
    int (*prepare)(Optimizer *opt, int n, const int *index, bool decay);
    /* Fills in the state of u (u[k] is parameter index[k]): -1 with an
     * error where it is missing. */
    int (*bind)(Optimizer *opt, int n, OptimUpdate *u, const int *index);
    /* The backend's fused update of the bound list. */
    void (*update)(const Backend *be, int n, const OptimUpdate *u);
    /* Frees what the type allocated besides the base (may be NULL). */
    void (*free)(Optimizer *opt);
    /* Hyperparameters as doubles, in hparam_names order. */
    void (*get_hparams)(const Optimizer *opt, double *values);
    /* Checks lr and values as the constructor does (error naming the
     * field); applies them only when `apply`. */
    int (*set_hparams)(Optimizer *opt, double lr, const double *values, bool apply);
    /* Whether param i's loaded state (slots[j] NULL when absent, step -1
     * when absent) is complete under the hyperparameters `values`. */
    int (*check_state)(const Optimizer *opt, const double *values, int i, Tensor *const *slots,
                       int64_t step);
} OptimizerType;

/* `consts` on one device, for its updates to read. */
typedef struct {
    Tensor *numbers; /* [n_params, n_consts] float64 */
    double *sent;    /* what was last queued there (NULL before the first):
                        the same numbers again are not sent */
} OptimizerConstsCopy;

struct Optimizer {
    const OptimizerType *type;
    double lr; /* public: the scheduler / trainer sets it before a step */
    int n_params;
    int n_decay;      /* parameters n_decay.. get no weight decay; n_params: all do */
    Tensor **params;  /* retained */
    Tensor **state;   /* n_params * type->n_slots; NULL until created */
    int64_t *steps;   /* per parameter; used when type->has_step */
    double *consts;   /* n_params * type->n_consts: the last prepared step's
                         numbers (optimizer_step.c) */
    OptimizerConstsCopy copies[OPTIMIZER_MAX_DEVICES]; /* on each device the
                         updates ran on */
    uint64_t states_made; /* moves whenever state tensors are made or loaded */
};

/* A type's struct starts with the base (struct Sgd { Optimizer base; ... })
 * and is allocated in one block, so optimizer_free() frees it with free().
 * optimizer_init validates params and fills the base of *opt (zeroed, type
 * set): retains the parameters and allocates empty state. */
int optimizer_init(Optimizer *opt, Tensor *const *params, int n);
/* Slot j of parameter i. */
static inline Tensor **optimizer_slot(Optimizer *opt, int i, int j) {
    return &opt->state[(size_t)i * (size_t)opt->type->n_slots + (size_t)j];
}
/* Parameter i's update numbers. */
static inline double *optimizer_consts(Optimizer *opt, int i) {
    return &opt->consts[(size_t)i * (size_t)opt->type->n_consts];
}
/* The numbers of sgd.c's and adam.c's updates, as torch computes them
 * (also for the kernel tests). */
void sgd_update_consts(double *out, double lr, double momentum, double dampening,
                       double weight_decay, bool nesterov, bool first);
void adam_update_consts(double *out, double lr, double beta1, double beta2, double eps,
                        double weight_decay, bool decoupled, int64_t step);

#endif
