/* lr_scheduler.c - LR schedulers with torch 1.13's get_lr() arithmetic; see
 * lr_scheduler.h.
 *
 * The whole schedule is one function, next_lr(epoch, lr): the lr at `epoch`
 * given the lr at epoch - 1, a line-by-line transcription of each class's
 * get_lr() with group['lr'] = lr. Construction is next_lr(0, base_lr), as
 * PyTorch's _initial_step; a resume replays next_lr from 0, which is exact
 * where a closed form would differ in the last bits. OneCycleLR, like
 * LambdaLR, depends on the step alone. A SequentialLR holds its schedulers
 * as children and hands each step to one of them; a resume replays it.
 */
#include "core/optim/lr_scheduler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/optim/lr_expr.h"

struct LrScheduler {
    LrSchedulerConfig cfg; /* lr_lambda, milestones and schedulers NULL */
    LrExpr *lambda;        /* LambdaLR */
    int64_t *milestones;   /* MultiStepLR (non-decreasing), SequentialLR (increasing) */
    double base_lr;
    double lr;
    int64_t last_epoch;
    /* OneCycleLR */
    int64_t total_steps;   /* resolved */
    double momentum;       /* with cfg.cycle_momentum: the current step's */
    /* SequentialLR */
    LrScheduler **children;
    size_t n_children;
    double initial_lr;     /* group['initial_lr'] once all were built */
};

static const char *const type_names[] = {
    [LR_SCHEDULER_LAMBDA] = "LambdaLR",
    [LR_SCHEDULER_STEP] = "StepLR",
    [LR_SCHEDULER_MULTI_STEP] = "MultiStepLR",
    [LR_SCHEDULER_EXPONENTIAL] = "ExponentialLR",
    [LR_SCHEDULER_COSINE] = "CosineAnnealingLR",
    [LR_SCHEDULER_LINEAR] = "LinearLR",
    [LR_SCHEDULER_ONE_CYCLE] = "OneCycleLR",
    [LR_SCHEDULER_SEQUENTIAL] = "SequentialLR",
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
                     "ExponentialLR, CosineAnnealingLR, LinearLR, OneCycleLR, SequentialLR)",
                     name ? name : "(null)");
}

void lr_scheduler_config_init(LrSchedulerConfig *cfg, LrSchedulerType type) {
    memset(cfg, 0, sizeof *cfg);
    cfg->type = type;
    cfg->gamma = type == LR_SCHEDULER_EXPONENTIAL ? NAN : 0.1;
    cfg->eta_min = 0.0;
    cfg->start_factor = 1.0 / 3;
    cfg->end_factor = 1.0;
    cfg->total_iters = 5;
    cfg->max_lr = NAN;
    cfg->pct_start = 0.3;
    cfg->div_factor = 25.0;
    cfg->final_div_factor = 1e4;
    cfg->cycle_momentum = true;
    cfg->base_momentum = 0.85;
    cfg->max_momentum = 0.95;
}

/* The interval the config asks for, its default resolved. */
static LrSchedulerInterval interval_of(const LrSchedulerConfig *cfg) {
    if (cfg->interval != LR_INTERVAL_DEFAULT) return cfg->interval;
    return cfg->type == LR_SCHEDULER_ONE_CYCLE ? LR_INTERVAL_STEP : LR_INTERVAL_EPOCH;
}

/* torch's OneCycleLR._annealing_cos / _annealing_linear */
static double anneal(bool linear, double start, double end, double pct) {
    if (linear) return (end - start) * pct + start;
    double cos_out = cos(M_PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR.get_lr() at step_num, with its momentum. Not chainable. */
static int one_cycle_lr(const LrScheduler *s, int64_t step_num, double *lr, double *momentum) {
    const LrSchedulerConfig *c = &s->cfg;
    if (step_num > s->total_steps)
        return error_set("OneCycleLR: tried to step %lld times, but total_steps is %lld",
                         (long long)step_num + 1, (long long)s->total_steps);
    double T = (double)s->total_steps, initial = s->base_lr, max = c->max_lr;
    double min = initial / c->final_div_factor;
    /* phases: end step, start/end lr, start/end momentum */
    double mx = c->max_momentum, bm = c->base_momentum;
    double ph[3][5] = {{c->pct_start * T - 1, initial, max, mx, bm},
                       {c->three_phase ? 2 * c->pct_start * T - 2 : T - 1, max,
                        c->three_phase ? initial : min, bm, mx},
                       {T - 1, initial, min, mx, mx}};
    int n = c->three_phase ? 3 : 2;
    double start_step = 0;
    for (int i = 0; i < n; i++) {
        double end_step = ph[i][0];
        if ((double)step_num <= end_step || i == n - 1) {
            double pct = ((double)step_num - start_step) / (end_step - start_step);
            *lr = anneal(c->anneal_linear, ph[i][1], ph[i][2], pct);
            *momentum = anneal(c->anneal_linear, ph[i][3], ph[i][4], pct);
            break;
        }
        start_step = end_step;
    }
    if (!isfinite(*momentum))
        return error_set("OneCycleLR: momentum is not finite at step %lld (a phase of no steps: "
                         "pct_start * total_steps is 1)", (long long)step_num);
    return 0;
}

/* The lr at `epoch` from the lr at epoch - 1 (at epoch 0: from the group's
 * lr); OneCycleLR's momentum into *momentum. */
static int next_lr(const LrScheduler *s, int64_t epoch, double lr, double *out, double *momentum) {
    const LrSchedulerConfig *c = &s->cfg;
    double r = lr;
    switch (c->type) {
    case LR_SCHEDULER_LINEAR:
        if (epoch == 0)
            r = lr * c->start_factor;
        else if (epoch <= c->total_iters)
            r = lr * (1. + (c->end_factor - c->start_factor) /
                               ((double)c->total_iters * c->start_factor +
                                (double)(epoch - 1) * (c->end_factor - c->start_factor)));
        break;
    case LR_SCHEDULER_ONE_CYCLE:
        if (one_cycle_lr(s, epoch, &r, momentum) != 0) return -1;
        break;
    case LR_SCHEDULER_SEQUENTIAL:
        return error_set("SequentialLR: stepped through its schedulers");
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

static int check_one_cycle(const LrSchedulerConfig *c) {
    if (isnan(c->max_lr)) return error_set("OneCycleLR: max_lr is required");
    if (!isfinite(c->max_lr) || c->max_lr <= 0)
        return error_set("OneCycleLR: max_lr must be a finite number > 0, got %g", c->max_lr);
    if (c->total_steps < 0 || c->total_steps > LR_SCHEDULER_MAX_EPOCH)
        return error_set("OneCycleLR: total_steps must be in 1..%lld, got %lld",
                         (long long)LR_SCHEDULER_MAX_EPOCH, (long long)c->total_steps);
    if (c->epochs < 0 || c->steps_per_epoch < 0)
        return error_set("OneCycleLR: epochs and steps_per_epoch must be > 0, got %lld and %lld",
                         (long long)c->epochs, (long long)c->steps_per_epoch);
    if (!(c->pct_start >= 0 && c->pct_start <= 1))
        return error_set("OneCycleLR: pct_start must be in [0, 1], got %g", c->pct_start);
    if (!(c->div_factor > 0) || !isfinite(c->div_factor))
        return error_set("OneCycleLR: div_factor must be a finite number > 0, got %g",
                         c->div_factor);
    if (!(c->final_div_factor > 0) || !isfinite(c->final_div_factor))
        return error_set("OneCycleLR: final_div_factor must be a finite number > 0, got %g",
                         c->final_div_factor);
    if (!(c->base_momentum >= 0) || !isfinite(c->base_momentum) || !(c->max_momentum >= 0) ||
        !isfinite(c->max_momentum))
        return error_set("OneCycleLR: base_momentum and max_momentum must be finite numbers >= 0, "
                         "got %g and %g", c->base_momentum, c->max_momentum);
    return 0;
}

static int check_sequential(const LrSchedulerConfig *c) {
    if (c->n_schedulers < 1 || c->n_schedulers > LR_SCHEDULER_MAX_CHILDREN || !c->schedulers)
        return error_set("SequentialLR: schedulers must be a list of 1..%d schedulers, got %zu",
                         LR_SCHEDULER_MAX_CHILDREN, c->schedulers ? c->n_schedulers : 0);
    if (c->n_milestones != c->n_schedulers - 1)
        return error_set("SequentialLR: %zu schedulers need %zu milestones, got %zu",
                         c->n_schedulers, c->n_schedulers - 1, c->n_milestones);
    if (c->n_milestones && !c->milestones) return error_set("SequentialLR: milestones is NULL");
    for (size_t i = 0; i < c->n_milestones; i++) {
        int64_t m = c->milestones[i], prev = i ? c->milestones[i - 1] : 0;
        /* torch takes any list, but a milestone 0 or out of order skips a
         * scheduler's restart or the scheduler itself */
        if (m <= prev || m > LR_SCHEDULER_MAX_EPOCH)
            return error_set("SequentialLR: milestones must be increasing, from 1 to %lld; "
                             "milestones[%zu] is %lld", (long long)LR_SCHEDULER_MAX_EPOCH, i,
                             (long long)m);
    }
    int one_cycles = 0;
    for (size_t i = 0; i < c->n_schedulers; i++) {
        LrSchedulerType t = c->schedulers[i].type;
        if (t == LR_SCHEDULER_SEQUENTIAL)
            return error_set("SequentialLR: schedulers[%zu] is a SequentialLR, which cannot be "
                             "nested (torch's SequentialLR.step takes no epoch to restart it)", i);
        if (t == LR_SCHEDULER_ONE_CYCLE && ++one_cycles > 1)
            return error_set("SequentialLR: schedulers[%zu] is a second OneCycleLR; torch's "
                             "OneCycleLRs share the optimizer's max_lr and min_lr, so only one "
                             "can be used", i);
    }
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
    case LR_SCHEDULER_LINEAR:
        /* torch 1.13 lets start_factor 0 through, then divides by zero */
        if (!(c->start_factor > 0 && c->start_factor <= 1))
            return error_set("LinearLR: start_factor must be in (0, 1], got %g", c->start_factor);
        if (!(c->end_factor >= 0 && c->end_factor <= 1))
            return error_set("LinearLR: end_factor must be in [0, 1], got %g", c->end_factor);
        if (c->total_iters <= 0 || c->total_iters > LR_SCHEDULER_MAX_EPOCH)
            return error_set("LinearLR: total_iters must be in 1..%lld, got %lld",
                             (long long)LR_SCHEDULER_MAX_EPOCH, (long long)c->total_iters);
        return 0;
    case LR_SCHEDULER_ONE_CYCLE:
        return check_one_cycle(c);
    case LR_SCHEDULER_SEQUENTIAL:
        return check_sequential(c);
    }
    return error_set("scheduler: unknown type %d", (int)c->type);
}

/* torch's step(0) on a scheduler SequentialLR hands over to: the closed form
 * at epoch 0 where the class has one, else get_lr() at epoch 0. */
static int restart_lr(const LrScheduler *s, double *lr, double *momentum) {
    const LrSchedulerConfig *c = &s->cfg;
    double b = s->base_lr;
    switch (c->type) {
    case LR_SCHEDULER_STEP:
    case LR_SCHEDULER_EXPONENTIAL:
        *lr = b * pow(c->gamma, 0.0);
        return 0;
    case LR_SCHEDULER_MULTI_STEP: {
        int64_t k = 0; /* bisect_right(milestones, 0) */
        while ((size_t)k < c->n_milestones && s->milestones[k] <= 0) k++;
        *lr = b * pow(c->gamma, (double)k);
        return 0;
    }
    case LR_SCHEDULER_COSINE:
        *lr = c->eta_min + (b - c->eta_min) * (1 + cos(M_PI * 0.0 / (double)c->T_max)) / 2;
        return 0;
    case LR_SCHEDULER_LINEAR:
        *lr = b * (c->start_factor + (c->end_factor - c->start_factor) * 0.0 / (double)c->total_iters);
        return 0;
    default: /* LambdaLR, OneCycleLR: get_lr() */
        return next_lr(s, 0, b, lr, momentum);
    }
}

static LrScheduler *create(const LrSchedulerConfig *cfg, double base_lr, int64_t epochs,
                           int64_t steps_per_epoch, LrSchedulerInterval interval);

/* OneCycleLR's total_steps, from the config or the job. */
static int resolve_total_steps(LrScheduler *s, int64_t epochs, int64_t steps_per_epoch,
                               LrSchedulerInterval interval) {
    const LrSchedulerConfig *c = &s->cfg;
    if (c->total_steps > 0) {
        s->total_steps = c->total_steps;
        return 0;
    }
    int64_t e = c->epochs ? c->epochs : epochs;
    int64_t k = c->steps_per_epoch ? c->steps_per_epoch
                                   : (interval == LR_INTERVAL_STEP ? steps_per_epoch : 1);
    if (e <= 0 || k <= 0)
        return error_set("OneCycleLR: total_steps is required (or epochs and steps_per_epoch)");
    if (e > LR_SCHEDULER_MAX_EPOCH / k)
        return error_set("OneCycleLR: epochs * steps_per_epoch = %lld * %lld is above %lld",
                         (long long)e, (long long)k, (long long)LR_SCHEDULER_MAX_EPOCH);
    s->total_steps = e * k;
    return 0;
}

/* The construction state of a SequentialLR's schedulers: each at its
 * epoch 0, the first one's lr chained from the group's initial_lr. */
static int sequential_reset(LrScheduler *s) {
    for (size_t i = 0; i < s->n_children; i++) {
        LrScheduler *k = s->children[i];
        double lr0 = i == 0 ? s->initial_lr : k->base_lr;
        if (next_lr(k, 0, lr0, &k->lr, &k->momentum) != 0) return -1;
        k->last_epoch = 0;
    }
    s->lr = s->children[0]->lr;
    s->last_epoch = 0;
    return 0;
}

/* The children of a SequentialLR, in order, as torch builds them: each takes
 * group['initial_lr'] as its base lr, which a OneCycleLR overwrites with
 * max_lr / div_factor for itself and those after it. */
static int sequential_init(LrScheduler *s, const LrSchedulerConfig *cfg, int64_t epochs,
                           int64_t steps_per_epoch, LrSchedulerInterval interval) {
    s->children = calloc(cfg->n_schedulers, sizeof *s->children);
    s->milestones = malloc((cfg->n_milestones ? cfg->n_milestones : 1) * sizeof *s->milestones);
    if (!s->children || !s->milestones) return error_set("SequentialLR: out of memory");
    memcpy(s->milestones, cfg->milestones, cfg->n_milestones * sizeof *s->milestones);
    double initial = s->base_lr;
    for (size_t i = 0; i < cfg->n_schedulers; i++) {
        s->children[i] = create(&cfg->schedulers[i], initial, epochs, steps_per_epoch, interval);
        if (!s->children[i]) return error_prefix("SequentialLR: schedulers[%zu]", i);
        s->n_children++;
        if (cfg->schedulers[i].type == LR_SCHEDULER_ONE_CYCLE) initial = s->children[i]->base_lr;
    }
    s->initial_lr = initial;
    return sequential_reset(s);
}

static int copy_milestones(LrScheduler *s, const LrSchedulerConfig *cfg) {
    if (!cfg->n_milestones) return 0;
    s->milestones = malloc(cfg->n_milestones * sizeof *s->milestones);
    if (!s->milestones) return error_set("MultiStepLR: out of memory");
    memcpy(s->milestones, cfg->milestones, cfg->n_milestones * sizeof *s->milestones);
    return 0;
}

static LrScheduler *create(const LrSchedulerConfig *cfg, double base_lr, int64_t epochs,
                           int64_t steps_per_epoch, LrSchedulerInterval interval) {
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
    s->cfg.schedulers = NULL;
    /* OneCycleLR ignores the optimizer's lr: it starts at max_lr / div_factor */
    s->base_lr = cfg->type == LR_SCHEDULER_ONE_CYCLE ? cfg->max_lr / cfg->div_factor : base_lr;
    int rc = 0;
    if (cfg->type == LR_SCHEDULER_LAMBDA) {
        s->lambda = lr_expr_parse(cfg->lr_lambda);
        if (!s->lambda) rc = error_prefix("LambdaLR: lr_lambda");
    } else if (cfg->type == LR_SCHEDULER_MULTI_STEP) {
        rc = copy_milestones(s, cfg);
    } else if (cfg->type == LR_SCHEDULER_ONE_CYCLE) {
        rc = resolve_total_steps(s, epochs, steps_per_epoch, interval);
    }
    if (rc == 0) {
        if (cfg->type == LR_SCHEDULER_SEQUENTIAL)
            rc = sequential_init(s, cfg, epochs, steps_per_epoch, interval);
        else
            rc = next_lr(s, 0, s->base_lr, &s->lr, &s->momentum);
    }
    if (rc != 0) {
        lr_scheduler_free(s);
        return NULL;
    }
    return s;
}

LrScheduler *lr_scheduler_new_in(const LrSchedulerConfig *cfg, double base_lr, int64_t epochs,
                                 int64_t steps_per_epoch) {
    return create(cfg, base_lr, epochs, steps_per_epoch, cfg ? interval_of(cfg) : LR_INTERVAL_DEFAULT);
}

LrScheduler *lr_scheduler_new(const LrSchedulerConfig *cfg, double base_lr) {
    return lr_scheduler_new_in(cfg, base_lr, 0, 0);
}

void lr_scheduler_free(LrScheduler *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_children; i++) lr_scheduler_free(s->children[i]);
    free(s->children);
    lr_expr_free(s->lambda);
    free(s->milestones);
    free(s);
}

double lr_scheduler_get_lr(const LrScheduler *s) { return s->lr; }

double lr_scheduler_base_lr(const LrScheduler *s) { return s->base_lr; }

int64_t lr_scheduler_last_epoch(const LrScheduler *s) { return s->last_epoch; }

bool lr_scheduler_per_step(const LrScheduler *s) {
    return interval_of(&s->cfg) == LR_INTERVAL_STEP;
}

bool lr_scheduler_momentum(const LrScheduler *s, double *momentum) {
    for (size_t i = 0; i < s->n_children; i++)
        if (lr_scheduler_momentum(s->children[i], momentum)) return true;
    if (s->cfg.type != LR_SCHEDULER_ONE_CYCLE || !s->cfg.cycle_momentum) return false;
    *momentum = s->momentum;
    return true;
}

/* SequentialLR.step(): the scheduler of the new epoch steps, or restarts
 * with step(0) when the epoch is its milestone. */
static int sequential_step(LrScheduler *s, int64_t epoch) {
    size_t idx = 0; /* bisect_right(milestones, epoch) */
    while (idx < s->cfg.n_milestones && s->milestones[idx] <= epoch) idx++;
    LrScheduler *k = s->children[idx];
    if (idx > 0 && s->milestones[idx - 1] == epoch) {
        double lr, m = k->momentum;
        if (restart_lr(k, &lr, &m) != 0) return -1;
        if (!isfinite(lr)) return error_set("%s: lr is not finite at epoch 0",
                                            lr_scheduler_type_name(k->cfg.type));
        k->lr = lr;
        k->momentum = m;
        k->last_epoch = 0;
    } else if (lr_scheduler_step(k) != 0) {
        return -1;
    }
    s->lr = k->lr;
    return 0;
}

int lr_scheduler_step(LrScheduler *s) {
    if (s->last_epoch >= LR_SCHEDULER_MAX_EPOCH)
        return error_set("%s: cannot step past epoch %lld", lr_scheduler_type_name(s->cfg.type),
                         (long long)LR_SCHEDULER_MAX_EPOCH);
    if (s->cfg.type == LR_SCHEDULER_SEQUENTIAL) {
        if (sequential_step(s, s->last_epoch + 1) != 0)
            return error_prefix("SequentialLR at epoch %lld", (long long)s->last_epoch + 1);
        s->last_epoch++;
        return 0;
    }
    double lr, m = s->momentum;
    if (next_lr(s, s->last_epoch + 1, s->lr, &lr, &m) != 0) return -1;
    s->lr = lr;
    s->momentum = m;
    s->last_epoch++;
    return 0;
}

/* Replays a SequentialLR from its construction to `epoch`. */
static int sequential_replay(LrScheduler *s, int64_t epoch) {
    if (sequential_reset(s) != 0) return -1;
    while (s->last_epoch < epoch)
        if (lr_scheduler_step(s) != 0) return -1;
    return 0;
}

/* ---- the check of a whole run ---- */

int lr_scheduler_check_factor(const LrExpr *e, int64_t at) {
    double f;
    if (lr_expr_eval(e, (double)at, &f) != 0) return error_prefix("at epoch %lld", (long long)at);
    if (!isfinite(f) || f < 0)
        return error_set("is %g at epoch %lld: the lr it scales must stay a finite number >= 0",
                         f, (long long)at);
    return 0;
}

/* At epochs 0..steps, or, when all would cost more than the *ops_left
 * operations left, at as many as they pay for spread evenly (both ends
 * included, 2 at least); what they cost taken from *ops_left. */
static int check_lambda_run(const LrExpr *e, int64_t steps, int64_t *ops_left) {
    int64_t ops = lr_expr_ops(e) > 0 ? lr_expr_ops(e) : 1;
    int64_t points = *ops_left / ops;
    if (points < 2) points = 2;
    if (points > steps + 1) points = steps + 1;
    *ops_left = *ops_left > points * ops ? *ops_left - points * ops : 0;
    for (int64_t j = 0; j < points; j++) {
        int64_t at = points == steps + 1 ? j : j * steps / (points - 1);
        if (lr_scheduler_check_factor(e, at) != 0) return -1;
    }
    return 0;
}

/* The steps a SequentialLR's child i is given of the parent's `steps`:
 * from its milestone (child 0: from construction) to the next one's eve. */
static int64_t child_steps(const LrScheduler *s, size_t i, int64_t steps) {
    int64_t from = i ? s->milestones[i - 1] : 0;
    int64_t to = i + 1 < s->n_children && s->milestones[i] - 1 < steps ? s->milestones[i] - 1
                                                                        : steps;
    return to > from ? to - from : 0;
}

/* The field a OneCycleLR's cycle comes from, the first the user gave. */
static const char *cycle_field(const LrSchedulerConfig *c) {
    return c->total_steps ? "total_steps" : c->epochs || !c->steps_per_epoch ? "epochs"
                                                                             : "steps_per_epoch";
}

static int check_run(const LrScheduler *s, int64_t steps, const char *path, int64_t *ops_left) {
    char at[ERROR_PATH_MAX];
    switch (s->cfg.type) {
    case LR_SCHEDULER_LAMBDA:
        if (check_lambda_run(s->lambda, steps, ops_left) == 0) return 0;
        snprintf(at, sizeof at, "%s.lr_lambda", path);
        return error_prefix_at(at);
    case LR_SCHEDULER_ONE_CYCLE:
        if (s->total_steps >= steps) return 0;
        snprintf(at, sizeof at, "%s.%s", path, cycle_field(&s->cfg));
        return error_at(at, "a cycle of %lld steps, but this job steps it %lld times "
                            "(OneCycleLR cannot step past its cycle)",
                        (long long)s->total_steps, (long long)steps);
    case LR_SCHEDULER_SEQUENTIAL: {
        /* the operations shared evenly: a list of 64 LambdaLRs costs what one does */
        int64_t share = *ops_left / (int64_t)(s->n_children ? s->n_children : 1);
        for (size_t i = 0; i < s->n_children; i++) {
            int64_t mine = share;
            snprintf(at, sizeof at, "%s.schedulers[%zu]", path, i);
            if (check_run(s->children[i], child_steps(s, i, steps), at, &mine) != 0) return -1;
        }
        return 0;
    }
    default:
        return 0;
    }
}

int lr_scheduler_check_run(const LrScheduler *s, int64_t steps, const char *path) {
    int64_t ops_left = LR_SCHEDULER_CHECK_OPS;
    return check_run(s, steps, path, &ops_left);
}

int lr_scheduler_set_last_epoch(LrScheduler *s, int64_t epoch) {
    if (epoch < 0 || epoch > LR_SCHEDULER_MAX_EPOCH)
        return error_set("%s: last_epoch must be in 0..%lld, got %lld",
                         lr_scheduler_type_name(s->cfg.type), (long long)LR_SCHEDULER_MAX_EPOCH,
                         (long long)epoch);
    if (s->cfg.type == LR_SCHEDULER_SEQUENTIAL) {
        int64_t was = s->last_epoch;
        if (sequential_replay(s, epoch) == 0) return 0;
        /* back to where it stood, which it reached once already */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", error_get());
        sequential_replay(s, was);
        return error_set("%s", msg);
    }
    double lr, m = s->momentum;
    if (s->cfg.type == LR_SCHEDULER_LAMBDA || s->cfg.type == LR_SCHEDULER_ONE_CYCLE) {
        /* Not chainable: the lr depends on the epoch alone. */
        if (next_lr(s, epoch, s->lr, &lr, &m) != 0) return -1;
    } else {
        if (next_lr(s, 0, s->base_lr, &lr, &m) != 0) return -1;
        for (int64_t e = 1; e <= epoch; e++)
            if (next_lr(s, e, lr, &lr, &m) != 0) return -1;
    }
    s->lr = lr;
    s->momentum = m;
    s->last_epoch = epoch;
    return 0;
}
