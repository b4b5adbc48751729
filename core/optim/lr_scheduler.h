/* lr_scheduler.h - learning-rate schedulers, as torch.optim.lr_scheduler.
 *
 * LambdaLR, StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR,
 * OneCycleLR and SequentialLR for one parameter group, with PyTorch 1.13's
 * exact arithmetic: the "chainable" schedulers (all but LambdaLR and
 * OneCycleLR) compute each lr from the previous one, as torch's get_lr() does
 * from group['lr'], so the values agree bit for bit rather than merely to the
 * closed form. SequentialLR keeps torch's quirks: the scheduler taking over
 * at a milestone is restarted with step(0) (its closed form at epoch 0), and
 * a OneCycleLR among its schedulers sets the initial lr the others start
 * from, as its constructor overwrites group['initial_lr'].
 *
 * A "step" here is one scheduler.step(): an epoch or, with interval "step",
 * one optimizer step; the scheduler does not care which.
 *
 * A scheduler knows nothing of optimizers or tensors. The trainer does
 *
 *     LrScheduler *s = lr_scheduler_new(&cfg, opt_lr);   // lr for epoch 0
 *     for each epoch:
 *         optimizer lr = lr_scheduler_get_lr(s); train one epoch;
 *         lr_scheduler_step(s);                          // after the epoch
 *
 * and, to resume from a checkpoint, stores lr_scheduler_last_epoch() and
 * restores it with lr_scheduler_set_last_epoch(), which replays the steps so
 * the following lrs are those of an uninterrupted run.
 */
#ifndef TRAIND_CORE_OPTIM_LR_SCHEDULER_H
#define TRAIND_CORE_OPTIM_LR_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/optim/lr_expr.h"

typedef enum {
    LR_SCHEDULER_LAMBDA,       /* "LambdaLR" */
    LR_SCHEDULER_STEP,         /* "StepLR" */
    LR_SCHEDULER_MULTI_STEP,   /* "MultiStepLR" */
    LR_SCHEDULER_EXPONENTIAL,  /* "ExponentialLR" */
    LR_SCHEDULER_COSINE,       /* "CosineAnnealingLR" */
    LR_SCHEDULER_LINEAR,       /* "LinearLR" */
    LR_SCHEDULER_ONE_CYCLE,    /* "OneCycleLR" */
    LR_SCHEDULER_SEQUENTIAL,   /* "SequentialLR" */
} LrSchedulerType;

/* When the trainer calls scheduler.step(): after each epoch (the default of
 * all but OneCycleLR) or after each optimizer step (OneCycleLR's default, as
 * torch users step it per batch). */
typedef enum { LR_INTERVAL_DEFAULT, LR_INTERVAL_EPOCH, LR_INTERVAL_STEP } LrSchedulerInterval;

/* Replaying a chainable scheduler to a resumed epoch costs one step per epoch;
 * this bounds it (and any last_epoch) to something sane. */
#define LR_SCHEDULER_MAX_EPOCH 10000000LL
#define LR_SCHEDULER_MAX_MILESTONES 1024
#define LR_SCHEDULER_MAX_CHILDREN 64

typedef struct LrSchedulerConfig LrSchedulerConfig;

/* Arguments named as in PyTorch. Fill with lr_scheduler_config_init() to get
 * PyTorch's defaults (gamma 0.1 for StepLR/MultiStepLR, eta_min 0). */
struct LrSchedulerConfig {
    LrSchedulerType type;
    LrSchedulerInterval interval; /* top level only; SequentialLR's schedulers follow it */
    const char *lr_lambda;      /* LambdaLR: expression over epoch (lr_expr.h) */
    int64_t step_size;          /* StepLR: > 0 */
    double gamma;               /* StepLR, MultiStepLR, ExponentialLR: >= 0 */
    const int64_t *milestones;  /* MultiStepLR: >= 0, non-decreasing; a repeat */
    size_t n_milestones;        /*   multiplies by gamma twice, as torch's Counter */
    int64_t T_max;              /* CosineAnnealingLR: > 0 */
    double eta_min;             /* CosineAnnealingLR: >= 0 */
    double start_factor;        /* LinearLR: in (0, 1], default 1/3 */
    double end_factor;          /* LinearLR: in [0, 1], default 1 */
    int64_t total_iters;        /* LinearLR: > 0, default 5 */
    double max_lr;              /* OneCycleLR: required, > 0 */
    int64_t total_steps;        /* OneCycleLR: > 0, or 0: epochs * steps_per_epoch */
    int64_t epochs;             /* OneCycleLR: 0: the job's (lr_scheduler_new_in) */
    int64_t steps_per_epoch;    /* OneCycleLR: 0: the job's batches per epoch, or 1
                                   with interval "epoch" */
    double pct_start;           /* OneCycleLR: in [0, 1], default 0.3 */
    bool anneal_linear;         /* OneCycleLR: anneal_strategy "linear" (default "cos") */
    double div_factor;          /* OneCycleLR: > 0, default 25 */
    double final_div_factor;    /* OneCycleLR: > 0, default 1e4 */
    bool three_phase;           /* OneCycleLR: default false */
    bool cycle_momentum;        /* OneCycleLR: default true: SGD's momentum or
                                   Adam's beta1 follows base/max_momentum */
    double base_momentum;       /* OneCycleLR: default 0.85 */
    double max_momentum;        /* OneCycleLR: default 0.95 */
    const LrSchedulerConfig *schedulers; /* SequentialLR: 1..LR_SCHEDULER_MAX_CHILDREN,
                                   none a SequentialLR, at most one OneCycleLR;
                                   its milestones (n_schedulers - 1 of them) are
                                   strictly increasing and >= 1 */
    size_t n_schedulers;
};

typedef struct LrScheduler LrScheduler;

/* Zeroes *cfg, sets the type and PyTorch's defaults. ExponentialLR's gamma and
 * OneCycleLR's max_lr have no default there, so they are left NaN here and
 * lr_scheduler_new asks for them. */
void lr_scheduler_config_init(LrSchedulerConfig *cfg, LrSchedulerType type);
/* "StepLR" -> LR_SCHEDULER_STEP, ... 0, or -1 naming the known types. */
int lr_scheduler_type_parse(const char *name, LrSchedulerType *out);
const char *lr_scheduler_type_name(LrSchedulerType type);

/* A scheduler at epoch 0 (PyTorch's initial step done). The config is copied;
 * the caller keeps ownership of lr_lambda, milestones and schedulers. A
 * OneCycleLR's total_steps (or epochs and steps_per_epoch) must be set. NULL on a bad
 * config, e.g. "StepLR: step_size must be > 0, got 0" or
 * "LambdaLR: lr_lambda: unexpected character '$' at position 6". */
LrScheduler *lr_scheduler_new(const LrSchedulerConfig *cfg, double base_lr);
/* The same with the job's numbers for a OneCycleLR (also one inside a
 * SequentialLR) whose total_steps is 0: its epochs, when 0, become `epochs`
 * and its steps_per_epoch, when 0, `steps_per_epoch` with interval "step"
 * or 1 with interval "epoch". */
LrScheduler *lr_scheduler_new_in(const LrSchedulerConfig *cfg, double base_lr, int64_t epochs,
                                 int64_t steps_per_epoch);
void lr_scheduler_free(LrScheduler *s);

/* Whether the trainer steps it after each optimizer step (interval "step",
 * OneCycleLR's default) rather than after each epoch. */
bool lr_scheduler_per_step(const LrScheduler *s);
/* Whether the schedule drives the optimizer's momentum (SGD's momentum,
 * Adam's beta1): a OneCycleLR with cycle_momentum, alone or in a
 * SequentialLR. Then *momentum is its value for the current step, which
 * the trainer sets with the lr. */
bool lr_scheduler_momentum(const LrScheduler *s, double *momentum);

/* The lr for the current epoch. */
double lr_scheduler_get_lr(const LrScheduler *s);
/* The initial lr the schedule scales (PyTorch's base_lrs[0]). */
double lr_scheduler_base_lr(const LrScheduler *s);
/* Advances one epoch. -1 with the scheduler unchanged if the new lr cannot be
 * computed (an lr_lambda that divides by zero at this epoch, overflow). */
int lr_scheduler_step(LrScheduler *s);
/* Epochs stepped so far (PyTorch's last_epoch): 0 after construction. */
int64_t lr_scheduler_last_epoch(const LrScheduler *s);
/* Evaluations of lr_lambda operations lr_scheduler_check_run makes in
 * all (a SequentialLR's schedulers share them): ~0.15 s. */
#define LR_SCHEDULER_CHECK_OPS (INT64_C(1) << 25)

/* Whether the scheduler, as constructed, can be stepped `steps` times,
 * before any is: a OneCycleLR's cycle holds the steps it is given, and an
 * lr_lambda's factor is a finite number >= 0 at each (at every step while
 * that costs at most LR_SCHEDULER_CHECK_OPS in all, a SequentialLR's
 * schedulers sharing it evenly, else at as many steps as it pays for,
 * spread evenly, the last included); a SequentialLR's schedulers each for
 * the steps it gives them (torch restarts one at its milestone). 0, or -1 with
 * an error at `path` (the scheduler's), e.g. "<path>.schedulers[1].lr_lambda:
 * is -0.5 at epoch 3: ...". */
int lr_scheduler_check_run(const LrScheduler *s, int64_t steps, const char *path);
/* An lr_lambda's factor at epoch `at`: a finite number >= 0. 0, or -1
 * with an error ("is -1 at epoch 2: ..."). */
int lr_scheduler_check_factor(const LrExpr *e, int64_t at);
/* Puts the scheduler where lr_scheduler_step() x epoch from construction
 * would have, for resuming. 0 <= epoch <= LR_SCHEDULER_MAX_EPOCH. -1 with
 * the scheduler unchanged on error. */
int lr_scheduler_set_last_epoch(LrScheduler *s, int64_t epoch);

#endif
