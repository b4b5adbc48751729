/* lr_scheduler.h - learning-rate schedulers, as torch.optim.lr_scheduler.
 *
 * LambdaLR, StepLR, MultiStepLR, ExponentialLR and CosineAnnealingLR for one
 * parameter group, with PyTorch 1.13's exact arithmetic: the "chainable"
 * schedulers (all but LambdaLR) compute each lr from the previous one, as
 * torch's get_lr() does from group['lr'], so the values agree bit for bit
 * rather than merely to the closed form.
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

#include <stddef.h>
#include <stdint.h>

typedef enum {
    LR_SCHEDULER_LAMBDA,       /* "LambdaLR" */
    LR_SCHEDULER_STEP,         /* "StepLR" */
    LR_SCHEDULER_MULTI_STEP,   /* "MultiStepLR" */
    LR_SCHEDULER_EXPONENTIAL,  /* "ExponentialLR" */
    LR_SCHEDULER_COSINE,       /* "CosineAnnealingLR" */
} LrSchedulerType;

/* Replaying a chainable scheduler to a resumed epoch costs one step per epoch;
 * this bounds it (and any last_epoch) to something sane. */
#define LR_SCHEDULER_MAX_EPOCH 10000000LL
#define LR_SCHEDULER_MAX_MILESTONES 1024

/* Arguments named as in PyTorch. Fill with lr_scheduler_config_init() to get
 * PyTorch's defaults (gamma 0.1 for StepLR/MultiStepLR, eta_min 0). */
typedef struct {
    LrSchedulerType type;
    const char *lr_lambda;      /* LambdaLR: expression over epoch (lr_expr.h) */
    int64_t step_size;          /* StepLR: > 0 */
    double gamma;               /* StepLR, MultiStepLR, ExponentialLR: >= 0 */
    const int64_t *milestones;  /* MultiStepLR: >= 0, non-decreasing; a repeat */
    size_t n_milestones;        /*   multiplies by gamma twice, as torch's Counter */
    int64_t T_max;              /* CosineAnnealingLR: > 0 */
    double eta_min;             /* CosineAnnealingLR: >= 0 */
} LrSchedulerConfig;

typedef struct LrScheduler LrScheduler;

/* Zeroes *cfg, sets the type and PyTorch's defaults. ExponentialLR's gamma has
 * no default there, so it is left NaN here and lr_scheduler_new asks for it. */
void lr_scheduler_config_init(LrSchedulerConfig *cfg, LrSchedulerType type);
/* "StepLR" -> LR_SCHEDULER_STEP, ... 0, or -1 naming the known types. */
int lr_scheduler_type_parse(const char *name, LrSchedulerType *out);
const char *lr_scheduler_type_name(LrSchedulerType type);

/* A scheduler at epoch 0 (PyTorch's initial step done). The config is copied;
 * the caller keeps ownership of lr_lambda and milestones. NULL on a bad
 * config, e.g. "StepLR: step_size must be > 0, got 0" or
 * "LambdaLR: lr_lambda: unexpected character '$' at position 6". */
LrScheduler *lr_scheduler_new(const LrSchedulerConfig *cfg, double base_lr);
void lr_scheduler_free(LrScheduler *s);

/* The lr for the current epoch. */
double lr_scheduler_get_lr(const LrScheduler *s);
/* The initial lr the schedule scales (PyTorch's base_lrs[0]). */
double lr_scheduler_base_lr(const LrScheduler *s);
/* Advances one epoch. -1 with the scheduler unchanged if the new lr cannot be
 * computed (an lr_lambda that divides by zero at this epoch, overflow). */
int lr_scheduler_step(LrScheduler *s);
/* Epochs stepped so far (PyTorch's last_epoch): 0 after construction. */
int64_t lr_scheduler_last_epoch(const LrScheduler *s);
/* Puts the scheduler where lr_scheduler_step() x epoch from construction
 * would have, for resuming. 0 <= epoch <= LR_SCHEDULER_MAX_EPOCH. -1 with
 * the scheduler unchanged on error. */
int lr_scheduler_set_last_epoch(LrScheduler *s, int64_t epoch);

#endif
