/* lr_scheduler.c - LR schedulers with torch 1.13's get_lr() arithmetic; see
 * lr_scheduler.h.
 *
 * The whole schedule is one function, next_lr(epoch, lr): the lr at `epoch`
 * given the lr at epoch - 1, a line-by-line transcription of each class's
 * get_lr() with group['lr'] = lr. Construction is next_lr(0, base_lr), as
 * PyTorch's _initial_step; a resume replays next_lr from 0, which is exact
 * where a closed form would differ in the last bits.
 */
#include "core/optim/lr_scheduler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/optim/lr_expr.h"

struct LrScheduler {
    LrSchedulerConfig cfg; /* lr_lambda NULL, milestones -> our copy */
    LrExpr *lambda;        /* LambdaLR */
    int64_t *milestones;   /* MultiStepLR, non-decreasing */
    double base_lr;
    double lr;
    int64_t last_epoch;
};

static const char *const type_names[] = {
    [LR_SCHEDULER_LAMBDA] = "LambdaLR",
    [LR_SCHEDULER_STEP] = "StepLR",
    [LR_SCHEDULER_MULTI_STEP] = "MultiStepLR",
    [LR_SCHEDULER_EXPONENTIAL] = "ExponentialLR",
    [LR_SCHEDULER_COSINE] = "CosineAnnealingLR",
};
#define N_TYPES ((int)(sizeof type_names / sizeof type_names[0]))

/* Keeps T_max * 2 and pi * epoch exact in int64 and double. */
#define COSINE_MAX_T ((int64_t)1 << 52)

const char *lr_scheduler_type_name(LrSchedulerType type) {
    return (int)type >= 0 && (int)type < N_TYPES ? type_names[type] : "unknown";
}

int lr_scheduler_type_parse(const char *name, LrSchedulerType *out) {
    for (int i = 0; i < N_TYPES; i++)
        if (name && strcmp(name, type_names[i]) == 0) {
            *out = (LrSchedulerType)i;
            return 0;
        }
    return error_set("unknown scheduler type '%s' (known: LambdaLR, StepLR, MultiStepLR, "
                     "ExponentialLR, CosineAnnealingLR)", name ? name : "(null)");
}

void lr_scheduler_config_init(LrSchedulerConfig *cfg, LrSchedulerType type) {
    memset(cfg, 0, sizeof *cfg);
    cfg->type = type;
    cfg->gamma = type == LR_SCHEDULER_EXPONENTIAL ? NAN : 0.1;
    cfg->eta_min = 0.0;
}

/* The lr at `epoch` from the lr at epoch - 1 (at epoch 0: from base_lr). */
static int next_lr(const LrScheduler *s, int64_t epoch, double lr, double *out) {
    const LrSchedulerConfig *c = &s->cfg;
    double r = lr;
    switch (c->type) {
    case LR_SCHEDULER_LAMBDA: {
        double f;
        if (lr_expr_eval(s->lambda, (double)epoch, &f) != 0)
            return error_prefix("LambdaLR: lr_lambda at epoch %lld", (long long)epoch);
        r = s->base_lr * f;
        break;
    }
    case LR_SCHEDULER_STEP:
        if (epoch != 0 && epoch % c->step_size == 0) r = lr * c->gamma;
        break;
    case LR_SCHEDULER_MULTI_STEP: {
        /* torch keeps a Counter: a milestone listed k times gives gamma ** k. */
        size_t lo = 0, hi = c->n_milestones; /* first milestone >= epoch */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (s->milestones[mid] < epoch) lo = mid + 1;
            else hi = mid;
        }
        int64_t k = 0;
        while (lo < c->n_milestones && s->milestones[lo] == epoch) k++, lo++;
        if (k) r = lr * pow(c->gamma, (double)k);
        break;
    }
    case LR_SCHEDULER_EXPONENTIAL:
        if (epoch != 0) r = lr * c->gamma;
        break;
    case LR_SCHEDULER_COSINE: {
        /* torch's branch for _step_count == 1 and last_epoch > 0 is never
         * taken: we always start at epoch 0 and replay. */
        double T = (double)c->T_max, eta = c->eta_min, e = (double)epoch;
        if (epoch == 0)
            r = lr;
        else if ((epoch - 1 - c->T_max) % (2 * c->T_max) == 0)
            r = lr + (s->base_lr - eta) * (1 - cos(M_PI / T)) / 2;
        else
            r = (1 + cos(M_PI * e / T)) / (1 + cos(M_PI * (e - 1) / T)) * (lr - eta) + eta;
        break;
    }
    default:
        return error_set("scheduler: bad type %d", (int)c->type);
    }
    if (!isfinite(r))
        return error_set("%s: lr is not finite at epoch %lld", lr_scheduler_type_name(c->type),
                         (long long)epoch);
    *out = r;
    return 0;
}

static int check_gamma(const LrSchedulerConfig *c) {
    const char *name = lr_scheduler_type_name(c->type);
    if (isnan(c->gamma) && c->type == LR_SCHEDULER_EXPONENTIAL)
        return error_set("ExponentialLR: gamma is required");
    if (!isfinite(c->gamma) || c->gamma < 0)
        return error_set("%s: gamma must be a finite number >= 0, got %g", name, c->gamma);
    return 0;
}

static int check_config(const LrSchedulerConfig *c) {
    switch (c->type) {
    case LR_SCHEDULER_LAMBDA:
        if (!c->lr_lambda) return error_set("LambdaLR: lr_lambda is required");
        return 0;
    case LR_SCHEDULER_STEP:
        if (c->step_size <= 0)
            return error_set("StepLR: step_size must be > 0, got %lld", (long long)c->step_size);
        return check_gamma(c);
    case LR_SCHEDULER_MULTI_STEP:
        if (c->n_milestones > LR_SCHEDULER_MAX_MILESTONES)
            return error_set("MultiStepLR: %zu milestones, at most %d", c->n_milestones,
                             LR_SCHEDULER_MAX_MILESTONES);
        if (c->n_milestones && !c->milestones)
            return error_set("MultiStepLR: milestones is NULL");
        for (size_t i = 0; i < c->n_milestones; i++) {
            if (c->milestones[i] < 0)
                return error_set("MultiStepLR: milestones[%zu] is %lld, must be >= 0", i,
                                 (long long)c->milestones[i]);
            if (i > 0 && c->milestones[i] < c->milestones[i - 1])
                return error_set("MultiStepLR: milestones must be in increasing order, "
                                 "milestones[%zu] = %lld after %lld", i,
                                 (long long)c->milestones[i], (long long)c->milestones[i - 1]);
        }
        return check_gamma(c);
    case LR_SCHEDULER_EXPONENTIAL:
        return check_gamma(c);
    case LR_SCHEDULER_COSINE:
        if (c->T_max <= 0 || c->T_max > COSINE_MAX_T)
            return error_set("CosineAnnealingLR: T_max must be in 1..%lld, got %lld",
                             (long long)COSINE_MAX_T, (long long)c->T_max);
        if (!isfinite(c->eta_min) || c->eta_min < 0)
            return error_set("CosineAnnealingLR: eta_min must be a finite number >= 0, got %g",
                             c->eta_min);
        return 0;
    }
    return error_set("scheduler: unknown type %d", (int)c->type);
}

LrScheduler *lr_scheduler_new(const LrSchedulerConfig *cfg, double base_lr) {
    if (!cfg) {
        error_set("scheduler: config is NULL");
        return NULL;
    }
    if (check_config(cfg) != 0) return NULL;
    if (!isfinite(base_lr) || base_lr < 0) {
        error_set("%s: lr must be a finite number >= 0, got %g", lr_scheduler_type_name(cfg->type),
                  base_lr);
        return NULL;
    }
    LrScheduler *s = calloc(1, sizeof *s);
    if (!s) {
        error_set("%s: out of memory", lr_scheduler_type_name(cfg->type));
        return NULL;
    }
    s->cfg = *cfg;
    s->cfg.lr_lambda = NULL;
    s->cfg.milestones = NULL;
    s->base_lr = base_lr;
    if (cfg->type == LR_SCHEDULER_LAMBDA) {
        s->lambda = lr_expr_parse(cfg->lr_lambda);
        if (!s->lambda) {
            error_prefix("LambdaLR: lr_lambda");
            goto fail;
        }
    }
    if (cfg->type == LR_SCHEDULER_MULTI_STEP && cfg->n_milestones) {
        s->milestones = malloc(cfg->n_milestones * sizeof *s->milestones);
        if (!s->milestones) {
            error_set("MultiStepLR: out of memory");
            goto fail;
        }
        memcpy(s->milestones, cfg->milestones, cfg->n_milestones * sizeof *s->milestones);
    }
    if (next_lr(s, 0, base_lr, &s->lr) != 0) goto fail;
    return s;
fail:
    lr_scheduler_free(s);
    return NULL;
}

void lr_scheduler_free(LrScheduler *s) {
    if (!s) return;
    lr_expr_free(s->lambda);
    free(s->milestones);
    free(s);
}

double lr_scheduler_get_lr(const LrScheduler *s) { return s->lr; }

double lr_scheduler_base_lr(const LrScheduler *s) { return s->base_lr; }

int64_t lr_scheduler_last_epoch(const LrScheduler *s) { return s->last_epoch; }

int lr_scheduler_step(LrScheduler *s) {
    if (s->last_epoch >= LR_SCHEDULER_MAX_EPOCH)
        return error_set("%s: cannot step past epoch %lld", lr_scheduler_type_name(s->cfg.type),
                         (long long)LR_SCHEDULER_MAX_EPOCH);
    double lr;
    if (next_lr(s, s->last_epoch + 1, s->lr, &lr) != 0) return -1;
    s->lr = lr;
    s->last_epoch++;
    return 0;
}

int lr_scheduler_set_last_epoch(LrScheduler *s, int64_t epoch) {
    if (epoch < 0 || epoch > LR_SCHEDULER_MAX_EPOCH)
        return error_set("%s: last_epoch must be in 0..%lld, got %lld",
                         lr_scheduler_type_name(s->cfg.type), (long long)LR_SCHEDULER_MAX_EPOCH,
                         (long long)epoch);
    double lr;
    if (s->cfg.type == LR_SCHEDULER_LAMBDA) {
        /* Not chainable: the lr depends on the epoch alone. */
        if (next_lr(s, epoch, s->lr, &lr) != 0) return -1;
    } else {
        if (next_lr(s, 0, s->base_lr, &lr) != 0) return -1;
        for (int64_t e = 1; e <= epoch; e++)
            if (next_lr(s, e, lr, &lr) != 0) return -1;
    }
    s->lr = lr;
    s->last_epoch = epoch;
    return 0;
}
