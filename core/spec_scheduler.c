/* spec_scheduler.c - the job spec's "scheduler": torch's LR schedulers by
 * name, with their arguments, per epoch or per step ("interval"), nested
 * in a SequentialLR; see spec.h. Parsed into an LrSchedulerConfig, which
 * job_spec_build_lr_scheduler makes into a scheduler once the loader's
 * steps per epoch are known.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/optim/lr_expr.h"
#include "core/spec.h"
#include "core/spec_json.h"

static const char *const lambda_fields[] = {"type", "interval", "lr_lambda", NULL};
static const char *const step_fields[] = {"type", "interval", "step_size", "gamma", NULL};
static const char *const multi_step_fields[] = {"type", "interval", "milestones", "gamma", NULL};
static const char *const exponential_fields[] = {"type", "interval", "gamma", NULL};
static const char *const cosine_fields[] = {"type", "interval", "T_max", "eta_min", NULL};
static const char *const linear_fields[] = {"type", "interval", "start_factor", "end_factor",
                                            "total_iters", NULL};
static const char *const one_cycle_fields[] = {
    "type",         "interval",        "max_lr",         "total_steps",      "epochs",
    "steps_per_epoch", "pct_start",    "anneal_strategy", "cycle_momentum", "base_momentum",
    "max_momentum", "div_factor",      "final_div_factor", "three_phase",    NULL};
static const char *const sequential_fields[] = {"type", "interval", "schedulers", "milestones",
                                                NULL};
static const char *const scheduler_names[] = {
    "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
    "LinearLR", "OneCycleLR", "SequentialLR", NULL};

static int cmp_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* path.milestones, a list of epochs; sorted for MultiStepLR (torch keeps a
 * Counter of them: order does not matter, repeats count twice), kept in
 * order for SequentialLR (whose scheduler checks it). */
static int parse_milestones(LrSchedulerConfig *c, const json_t *obj, const char *path,
                            bool sort) {
    char p[SPEC_PATH_MAX];
    spec_path_key(p, path, "milestones");
    const json_t *v = json_object_get(obj, "milestones");
    if (!v) return error_at(p, "required");
    if (!json_is_array(v))
        return error_at(p, "expected a list of integers, got %s", spec_json_kind(v));
    size_t n = json_array_size(v);
    if (n > LR_SCHEDULER_MAX_MILESTONES)
        return error_at(p, "at most %d milestones, got %zu", LR_SCHEDULER_MAX_MILESTONES, n);
    int64_t *m = calloc(n ? n : 1, sizeof *m);
    if (!m) return error_at(p, "out of memory");
    c->milestones = m;
    c->n_milestones = n;
    for (size_t i = 0; i < n; i++) {
        char pi[SPEC_PATH_MAX];
        if (spec_int_value(json_array_get(v, i), spec_path_index(pi, p, i), 0,
                           LR_SCHEDULER_MAX_EPOCH, &m[i]))
            return -1;
    }
    if (sort) qsort(m, n, sizeof *m, cmp_int64);
    return 0;
}

/* path.interval: "epoch" or "step"; only the top-level scheduler has one. */
static int parse_interval(LrSchedulerConfig *c, const json_t *v, const char *path, bool top) {
    char p[SPEC_PATH_MAX];
    const char *iv;
    if (spec_get_string(v, path, "interval", false, &iv)) return -1;
    if (!iv) return 0;
    spec_path_key(p, path, "interval");
    if (!top)
        return error_at(p, "only the top-level scheduler has an interval; SequentialLR's "
                           "schedulers step when it does");
    if (strcmp(iv, "epoch") == 0) c->interval = LR_INTERVAL_EPOCH;
    else if (strcmp(iv, "step") == 0) c->interval = LR_INTERVAL_STEP;
    else return error_at(p, "unknown interval '%s' (known: epoch, step)", iv);
    return 0;
}

static int parse_linear(LrSchedulerConfig *c, const json_t *v, const char *p) {
    char k[SPEC_PATH_MAX];
    if (spec_get_number(v, p, "start_factor", false, c->start_factor, &c->start_factor) ||
        spec_get_number(v, p, "end_factor", false, c->end_factor, &c->end_factor) ||
        spec_get_int(v, p, "total_iters", false, c->total_iters, 1, LR_SCHEDULER_MAX_EPOCH,
                     &c->total_iters))
        return -1;
    if (!(c->start_factor > 0 && c->start_factor <= 1))
        return error_at(spec_path_key(k, p, "start_factor"), "must be above 0 and at most 1, "
                        "got %g", c->start_factor);
    if (!(c->end_factor >= 0 && c->end_factor <= 1))
        return error_at(spec_path_key(k, p, "end_factor"), "must be in [0, 1], got %g",
                        c->end_factor);
    return 0;
}

/* A number in [lo, hi] (or above lo when lo_open). */
static int number_in(const json_t *v, const char *p, const char *key, double *x, double lo,
                     bool lo_open, double hi) {
    char k[SPEC_PATH_MAX];
    if (spec_get_number(v, p, key, false, *x, x)) return -1;
    if (!(lo_open ? *x > lo : *x >= lo) || !(*x <= hi)) {
        if (isinf(hi))
            return error_at(spec_path_key(k, p, key), "must be %s %g, got %g",
                            lo_open ? "above" : "at least", lo, *x);
        return error_at(spec_path_key(k, p, key), "must be in [%g, %g], got %g", lo, hi, *x);
    }
    return 0;
}

static int parse_one_cycle(const JobSpec *spec, LrSchedulerConfig *c, const json_t *v,
                           const char *p) {
    char k[SPEC_PATH_MAX];
    const char *anneal;
    bool has_total = json_object_get(v, "total_steps") != NULL;
    if (spec_get_number(v, p, "max_lr", true, 0, &c->max_lr) ||
        spec_get_int(v, p, "total_steps", false, 0, 1, LR_SCHEDULER_MAX_EPOCH, &c->total_steps) ||
        spec_get_int(v, p, "epochs", false, 0, 1, LR_SCHEDULER_MAX_EPOCH, &c->epochs) ||
        spec_get_int(v, p, "steps_per_epoch", false, 0, 1, LR_SCHEDULER_MAX_EPOCH,
                     &c->steps_per_epoch) ||
        number_in(v, p, "max_lr", &c->max_lr, 0, true, INFINITY) ||
        number_in(v, p, "pct_start", &c->pct_start, 0, false, 1) ||
        number_in(v, p, "div_factor", &c->div_factor, 0, true, INFINITY) ||
        number_in(v, p, "final_div_factor", &c->final_div_factor, 0, true, INFINITY) ||
        spec_get_bool(v, p, "three_phase", false, &c->three_phase) ||
        spec_get_bool(v, p, "cycle_momentum", true, &c->cycle_momentum) ||
        number_in(v, p, "base_momentum", &c->base_momentum, 0, false, INFINITY) ||
        number_in(v, p, "max_momentum", &c->max_momentum, 0, false, INFINITY) ||
        spec_get_string(v, p, "anneal_strategy", false, &anneal))
        return -1;
    if (has_total && (c->epochs || c->steps_per_epoch))
        return error_at(spec_path_key(k, p, "total_steps"), "give total_steps or epochs and "
                        "steps_per_epoch, not both");
    if (anneal && strcmp(anneal, "linear") == 0) c->anneal_linear = true;
    else if (anneal && strcmp(anneal, "cos") != 0)
        return error_at(spec_path_key(k, p, "anneal_strategy"),
                        "unknown anneal_strategy '%s' (known: cos, linear)", anneal);
    /* Adam's beta1 must stay below 1; SGD's momentum may be any >= 0 */
    if (c->cycle_momentum && spec->optimizer != SPEC_OPTIM_SGD &&
        (c->max_momentum >= 1 || c->base_momentum >= 1))
        return error_at(spec_path_key(k, p, c->max_momentum >= 1 ? "max_momentum" :
                                                                   "base_momentum"),
                        "with cycle_momentum it sets %s's beta1, which must be below 1",
                        spec->optimizer == SPEC_OPTIM_ADAM ? "Adam" : "AdamW");
    return 0;
}

static int parse_scheduler_at(const JobSpec *spec, LrSchedulerConfig *c, const json_t *v,
                              const char *p, bool top);

static int parse_sequential(const JobSpec *spec, LrSchedulerConfig *c, const json_t *v,
                            const char *p) {
    char k[SPEC_PATH_MAX];
    const json_t *list = json_object_get(v, "schedulers");
    spec_path_key(k, p, "schedulers");
    if (!list) return error_at(k, "required");
    if (!json_is_array(list) || json_array_size(list) == 0)
        return error_at(k, "expected a list of schedulers, got %s",
                        json_is_array(list) ? "an empty list" : spec_json_kind(list));
    size_t n = json_array_size(list);
    if (n > LR_SCHEDULER_MAX_CHILDREN)
        return error_at(k, "at most %d schedulers, got %zu", LR_SCHEDULER_MAX_CHILDREN, n);
    LrSchedulerConfig *kids = calloc(n, sizeof *kids);
    if (!kids) return error_at(k, "out of memory");
    c->schedulers = kids;
    for (size_t i = 0; i < n; i++) {
        char pi[SPEC_PATH_MAX];
        c->n_schedulers++; /* before it is parsed: what a failed one holds is freed too */
        if (parse_scheduler_at(spec, &kids[i], json_array_get(list, i),
                               spec_path_index(pi, k, i), false))
            return -1;
        if (kids[i].type == LR_SCHEDULER_SEQUENTIAL)
            return error_at(pi, "a SequentialLR cannot hold another (torch's SequentialLR.step "
                                "takes no epoch to restart it at a milestone)");
    }
    if (parse_milestones(c, v, p, false)) return -1;
    spec_path_key(k, p, "milestones");
    if (c->n_milestones != n - 1)
        return error_at(k, "%zu schedulers need %zu milestones (the epochs or steps where the "
                           "next takes over), got %zu", n, n - 1, c->n_milestones);
    for (size_t i = 0; i < c->n_milestones; i++) {
        int64_t prev = i ? c->milestones[i - 1] : 0;
        char pi[SPEC_PATH_MAX];
        if (c->milestones[i] <= prev)
            return error_at(spec_path_index(pi, k, i), "must be above %lld (milestones increase, "
                            "from 1), got %lld", (long long)prev, (long long)c->milestones[i]);
    }
    return 0;
}

/* Frees what parse_scheduler_at allocated under c. */
static void scheduler_config_free(LrSchedulerConfig *c) {
    for (size_t i = 0; i < c->n_schedulers; i++)
        scheduler_config_free((LrSchedulerConfig *)&c->schedulers[i]);
    free((LrSchedulerConfig *)c->schedulers);
    free((char *)c->lr_lambda);
    free((int64_t *)c->milestones);
}

static int unknown_scheduler(const char *p, const char *type) {
    char k[SPEC_PATH_MAX];
    spec_path_key(k, p, "type");
    int s = spec_suggest(type, scheduler_names);
    if (s >= 0)
        return error_at(k, "unknown scheduler '%s' (did you mean '%s'?)", type, scheduler_names[s]);
    return error_at(k, "unknown scheduler '%s' (known: LambdaLR, StepLR, MultiStepLR, "
                       "ExponentialLR, CosineAnnealingLR, LinearLR, OneCycleLR, SequentialLR)",
                    type);
}

/* One scheduler object at path p into *c (zeroed); SequentialLR's
 * schedulers recurse with top false. */
static int parse_scheduler_at(const JobSpec *spec, LrSchedulerConfig *c, const json_t *v,
                              const char *p, bool top) {
    const char *type;
    if (spec_expect_object(v, p) || spec_get_string(v, p, "type", true, &type)) return -1;
    LrSchedulerType t;
    if (lr_scheduler_type_parse(type, &t)) return unknown_scheduler(p, type);
    lr_scheduler_config_init(c, t);
    char k[SPEC_PATH_MAX];
    int64_t n;
    static const char *const *const fields[] = {
        [LR_SCHEDULER_LAMBDA] = lambda_fields,         [LR_SCHEDULER_STEP] = step_fields,
        [LR_SCHEDULER_MULTI_STEP] = multi_step_fields, [LR_SCHEDULER_EXPONENTIAL] = exponential_fields,
        [LR_SCHEDULER_COSINE] = cosine_fields,         [LR_SCHEDULER_LINEAR] = linear_fields,
        [LR_SCHEDULER_ONE_CYCLE] = one_cycle_fields,   [LR_SCHEDULER_SEQUENTIAL] = sequential_fields};
    if (spec_check_fields(v, p, fields[t], type) || parse_interval(c, v, p, top)) return -1;
    switch (t) {
    case LR_SCHEDULER_LAMBDA: {
        const char *text;
        if (spec_get_string(v, p, "lr_lambda", true, &text)) return -1;
        LrExpr *e = lr_expr_parse(text);
        if (!e) return error_prefix_at(spec_path_key(k, p, "lr_lambda"));
        int at0 = lr_scheduler_check_factor(e, 0); /* its first step is known */
        lr_expr_free(e);
        if (at0 != 0) return error_prefix_at(spec_path_key(k, p, "lr_lambda"));
        if (!(c->lr_lambda = spec_strdup(text))) return -1;
        return 0;
    }
    case LR_SCHEDULER_STEP:
        if (spec_get_int(v, p, "step_size", true, 0, 1, LR_SCHEDULER_MAX_EPOCH, &n) ||
            spec_get_number(v, p, "gamma", false, c->gamma, &c->gamma) ||
            spec_non_negative(p, "gamma", c->gamma))
            return -1;
        c->step_size = n;
        return 0;
    case LR_SCHEDULER_MULTI_STEP:
        return parse_milestones(c, v, p, true) ||
               spec_get_number(v, p, "gamma", false, c->gamma, &c->gamma) ||
               spec_non_negative(p, "gamma", c->gamma);
    case LR_SCHEDULER_EXPONENTIAL:
        return spec_get_number(v, p, "gamma", true, 0, &c->gamma) ||
               spec_non_negative(p, "gamma", c->gamma);
    case LR_SCHEDULER_COSINE:
        if (spec_get_int(v, p, "T_max", true, 0, 1, LR_SCHEDULER_MAX_EPOCH, &n) ||
            spec_get_number(v, p, "eta_min", false, 0, &c->eta_min) ||
            spec_non_negative(p, "eta_min", c->eta_min))
            return -1;
        c->T_max = n;
        return 0;
    case LR_SCHEDULER_LINEAR:
        return parse_linear(c, v, p);
    case LR_SCHEDULER_ONE_CYCLE:
        return parse_one_cycle(spec, c, v, p);
    case LR_SCHEDULER_SEQUENTIAL:
        return parse_sequential(spec, c, v, p);
    }
    return 0;
}

/* The batches per epoch a OneCycleLR's total_steps may be derived from
 * are not known while parsing (they need the data): its check here takes
 * 2^20 of them, or fewer where the epochs (the job's, or the largest a
 * OneCycleLR names) would take the cycle past LR_SCHEDULER_MAX_EPOCH,
 * which cannot make a phase empty unless pct_start is tiny; the real
 * numbers are checked when the job is built. */
#define SPEC_CHECK_STEPS ((int64_t)1 << 20)

/* The largest epochs a OneCycleLR of the tree names (0: none). */
static int64_t cycle_epochs(const LrSchedulerConfig *c) {
    int64_t e = c->type == LR_SCHEDULER_ONE_CYCLE ? c->epochs : 0;
    for (size_t i = 0; i < c->n_schedulers; i++) {
        int64_t k = cycle_epochs(&c->schedulers[i]);
        if (k > e) e = k;
    }
    return e;
}

int spec_parse_scheduler(JobSpec *spec, const json_t *v) {
    if (!v || json_is_null(v)) return 0;
    spec->has_lr_scheduler = true;
    if (parse_scheduler_at(spec, &spec->lr_scheduler, v, "scheduler", true)) return -1;
    /* What is left (an lr_lambda that fails at epoch 0, ...) the scheduler knows. */
    int64_t epochs = spec->epochs > 0 ? spec->epochs : 1, named = cycle_epochs(&spec->lr_scheduler);
    int64_t most = named > epochs ? named : epochs;
    int64_t steps = LR_SCHEDULER_MAX_EPOCH / most < SPEC_CHECK_STEPS ? LR_SCHEDULER_MAX_EPOCH / most
                                                                     : SPEC_CHECK_STEPS;
    LrScheduler *s = lr_scheduler_new_in(&spec->lr_scheduler, job_spec_lr(spec), epochs,
                                         steps > 0 ? steps : 1);
    if (!s) return error_prefix_at("scheduler");
    lr_scheduler_free(s);
    return 0;
}

int job_spec_build_lr_scheduler(const JobSpec *spec, double base_lr, int64_t steps_per_epoch,
                                LrScheduler **out) {
    *out = NULL;
    if (!spec->has_lr_scheduler) return 0;
    *out = lr_scheduler_new_in(&spec->lr_scheduler, base_lr, spec->epochs, steps_per_epoch);
    return *out ? 0 : error_prefix_at("scheduler");
}

void spec_scheduler_free(JobSpec *spec) {
    scheduler_config_free(&spec->lr_scheduler);
}
