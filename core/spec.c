/* spec.c - parsing and validating a job spec (see spec.h).
 *
 * The parse walks the JSON once, top level first: unknown fields are
 * refused before anything is read, then each section in the order the
 * design document lists them. Every value is copied out of the jansson tree,
 * so the JobSpec stands alone once the tree is freed. The data section lives
 * in spec_data.c, the model's layers in spec_model.c, the typed field
 * readers in spec_json.c.
 */
#include "core/spec.h"

#include <errno.h>
#include <math.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/optim/lr_expr.h"
#include "core/spec_json.h"

#define MAX_BATCH_SIZE ((int64_t)1 << 31)
#define MAX_NAME 128
#define MAX_ACCUMULATE_STEPS 65536

static const char *const top_fields[] = {
    "name",    "data",      "model", "loss",   "optimizer", "scheduler",  "epochs", "batch_size",
    "shuffle", "drop_last", "seed",  "device", "metrics",   "checkpoint", "init",   "allow_tf32",
    "clip_grad_norm", "accumulate_steps", "precision", "ranks", "nodes", "gpus", "devices",
    "bucket_cap_mb", "cuda_graphs", NULL};

/* "clip_grad_norm": a max_norm above 0 (torch.nn.utils.clip_grad_norm_'s),
 * or absent for none. */
static int parse_clip_grad_norm(JobSpec *spec, const json_t *root) {
    if (spec_get_number(root, "", "clip_grad_norm", false, 0, &spec->clip_grad_norm)) return -1;
    if (json_object_get(root, "clip_grad_norm") && !(spec->clip_grad_norm > 0))
        return error_at("clip_grad_norm", "must be a number above 0 (the gradients' largest "
                        "norm), got %g", spec->clip_grad_norm);
    return 0;
}

/* ---- loss ---- */

static const struct {
    const char *name;
    SpecLossType type;
} losses[] = {
    {"MSELoss", SPEC_LOSS_MSE},
    {"L1Loss", SPEC_LOSS_L1},
    {"CrossEntropyLoss", SPEC_LOSS_CROSS_ENTROPY},
    {"NLLLoss", SPEC_LOSS_NLL},
    {"BCELoss", SPEC_LOSS_BCE},
    {"BCEWithLogitsLoss", SPEC_LOSS_BCE_WITH_LOGITS},
};
#define NUM_LOSSES ((int)(sizeof losses / sizeof losses[0]))

const char *spec_loss_name(SpecLossType type) {
    for (int i = 0; i < NUM_LOSSES; i++)
        if (losses[i].type == type) return losses[i].name;
    return "?";
}

static const char *const loss_fields[] = {"type", "reduction", NULL};
static const char *const cross_entropy_fields[] = {"type", "reduction", "ignore_index",
                                                   "label_smoothing", NULL};
static const char *const nll_fields[] = {"type", "reduction", "ignore_index", NULL};

/* The class losses' options, torch's defaults when absent. */
static int parse_class_loss(JobSpec *spec, const json_t *v) {
    ClassLossOptions *o = &spec->class_loss;
    if (spec_get_int(v, "loss", "ignore_index", false, o->ignore_index, INT64_MIN, INT64_MAX,
                     &o->ignore_index) ||
        spec_get_number(v, "loss", "label_smoothing", false, o->label_smoothing,
                        &o->label_smoothing))
        return -1;
    if (o->label_smoothing < 0 || o->label_smoothing > 1)
        return error_at("loss.label_smoothing", "must be in [0, 1], got %g", o->label_smoothing);
    return 0;
}

static int parse_loss(JobSpec *spec, const json_t *v) {
    if (!v) return error_at("loss", "required");
    const char *type, *red;
    if (spec_expect_object(v, "loss") || spec_get_string(v, "loss", "type", true, &type))
        return -1;
    int k = -1;
    for (int i = 0; i < NUM_LOSSES && k < 0; i++)
        if (strcmp(losses[i].name, type) == 0) k = i;
    if (k < 0) {
        const char *names[NUM_LOSSES + 1];
        for (int i = 0; i < NUM_LOSSES; i++) names[i] = losses[i].name;
        names[NUM_LOSSES] = NULL;
        int s = spec_suggest(type, names);
        if (s >= 0)
            return error_at("loss.type", "unknown loss '%s' (did you mean '%s'?)", type, names[s]);
        return error_at("loss.type",
                        "unknown loss '%s' (known: MSELoss, L1Loss, "
                        "CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss)",
                        type);
    }
    spec->loss = losses[k].type;
    spec->class_loss = CLASS_LOSS_DEFAULTS;
    const char *const *fields = spec->loss == SPEC_LOSS_CROSS_ENTROPY ? cross_entropy_fields
                                : spec->loss == SPEC_LOSS_NLL         ? nll_fields
                                                                      : loss_fields;
    if (spec_check_fields(v, "loss", fields, type) || parse_class_loss(spec, v) ||
        spec_get_string(v, "loss", "reduction", false, &red))
        return -1;
    if (!red || strcmp(red, "mean") == 0)
        spec->reduction = REDUCTION_MEAN;
    else if (strcmp(red, "sum") == 0)
        spec->reduction = REDUCTION_SUM;
    else if (strcmp(red, "none") == 0)
        return error_at("loss.reduction", "'none' gives one loss per sample, which cannot be "
                                          "trained on (use 'mean' or 'sum')");
    else
        return error_at("loss.reduction", "unknown reduction '%s' (known: mean, sum, none)", red);
    return 0;
}

bool job_spec_uses_labels(const JobSpec *spec) {
    return spec->loss == SPEC_LOSS_CROSS_ENTROPY || spec->loss == SPEC_LOSS_NLL;
}

/* Scores [N, T, C] and labels [N, T] of a sequence model over every
 * token, as nanoGPT's F.cross_entropy(logits.view(-1, C), targets.view(-1)). */
static Tensor *class_loss_over_tokens(const JobSpec *spec, Tensor *output, Tensor *target) {
    Tensor *o, *t;
    Tensor *loss = tensor_tokens_as_rows(output, target, &o, &t) != 0 ? NULL
                   : spec->loss == SPEC_LOSS_NLL
                       ? tensor_nll_loss_with(o, t, spec->reduction, &spec->class_loss)
                       : tensor_cross_entropy_with(o, t, spec->reduction, &spec->class_loss);
    tensor_release(o), tensor_release(t);
    return loss;
}

Tensor *job_spec_loss(const JobSpec *spec, Tensor *output, Tensor *target) {
    if (!output || !target) return NULL;
    switch (spec->loss) {
    case SPEC_LOSS_MSE: return tensor_mse_loss(output, target, spec->reduction);
    case SPEC_LOSS_L1: return tensor_l1_loss(output, target, spec->reduction);
    case SPEC_LOSS_CROSS_ENTROPY:
    case SPEC_LOSS_NLL: return class_loss_over_tokens(spec, output, target);
    case SPEC_LOSS_BCE: return tensor_bce_loss(output, target, spec->reduction);
    case SPEC_LOSS_BCE_WITH_LOGITS:
        return tensor_bce_with_logits(output, target, spec->reduction);
    }
    error_at("loss", "unknown type %d", (int)spec->loss);
    return NULL;
}

/* ---- optimizer ---- */

static const char *const sgd_fields[] = {"type",         "lr",       "momentum",    "dampening",
                                         "weight_decay", "nesterov", "no_decay_1d", NULL};
static const char *const adam_fields[] = {"type",         "lr",      "betas",       "eps",
                                          "weight_decay", "amsgrad", "no_decay_1d", NULL};

static int non_negative(const char *path, const char *key, double x) {
    char p[SPEC_PATH_MAX];
    if (x < 0) return error_at(spec_path_key(p, path, key), "must be >= 0, got %g", x);
    return 0;
}

static int parse_optimizer(JobSpec *spec, const json_t *v) {
    const char *p = "optimizer", *type;
    if (!v) return error_at("optimizer", "required");
    if (spec_expect_object(v, p) || spec_get_string(v, p, "type", true, &type) ||
        spec_get_bool(v, p, "no_decay_1d", false, &spec->no_decay_1d))
        return -1;
    if (strcmp(type, "SGD") == 0) {
        SgdOptions *o = &spec->sgd;
        spec->optimizer = SPEC_OPTIM_SGD;
        if (spec_check_fields(v, p, sgd_fields, "SGD")) return -1;
        if (!json_object_get(v, "lr"))
            return error_at("optimizer.lr", "required (torch.optim.SGD has no default)");
        if (spec_get_number(v, p, "lr", true, 0, &o->lr) ||
            spec_get_number(v, p, "momentum", false, 0, &o->momentum) ||
            spec_get_number(v, p, "dampening", false, 0, &o->dampening) ||
            spec_get_number(v, p, "weight_decay", false, 0, &o->weight_decay) ||
            spec_get_bool(v, p, "nesterov", false, &o->nesterov) ||
            non_negative(p, "lr", o->lr) || non_negative(p, "momentum", o->momentum) ||
            non_negative(p, "weight_decay", o->weight_decay))
            return -1;
        if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
            return error_at("optimizer.nesterov",
                            "needs a momentum > 0 and zero dampening (got "
                            "momentum %g, dampening %g)",
                            o->momentum, o->dampening);
        return 0;
    }
    bool adamw = strcmp(type, "AdamW") == 0;
    if (!adamw && strcmp(type, "Adam") != 0) {
        static const char *const names[] = {"SGD", "Adam", "AdamW", NULL};
        int s = spec_suggest(type, names);
        if (s >= 0)
            return error_at("optimizer.type",
                            "unknown optimizer '%s' (did you mean "
                            "'%s'?)",
                            type, names[s]);
        return error_at("optimizer.type", "unknown optimizer '%s' (known: SGD, Adam, AdamW)", type);
    }
    AdamOptions *o = &spec->adam;
    *o = adamw ? adamw_options_default() : adam_options_default();
    spec->optimizer = adamw ? SPEC_OPTIM_ADAMW : SPEC_OPTIM_ADAM;
    if (spec_check_fields(v, p, adam_fields, type) ||
        spec_get_number(v, p, "lr", false, o->lr, &o->lr) ||
        spec_get_number(v, p, "eps", false, o->eps, &o->eps) ||
        spec_get_number(v, p, "weight_decay", false, o->weight_decay, &o->weight_decay) ||
        spec_get_bool(v, p, "amsgrad", false, &o->amsgrad) || non_negative(p, "lr", o->lr) ||
        non_negative(p, "eps", o->eps) || non_negative(p, "weight_decay", o->weight_decay))
        return -1;
    json_t *betas = json_object_get(v, "betas");
    if (betas) {
        if (!json_is_array(betas) || json_array_size(betas) != 2)
            return error_at("optimizer.betas", "expected a list of 2 numbers, got %s",
                            json_is_array(betas) ? "a list of another length"
                                                 : spec_json_kind(betas));
        for (size_t i = 0; i < 2; i++) {
            char pi[SPEC_PATH_MAX];
            spec_path_index(pi, "optimizer.betas", i);
            if (spec_number_value(json_array_get(betas, i), pi, &o->betas[i])) return -1;
            if (o->betas[i] < 0 || o->betas[i] >= 1)
                return error_at(pi, "must be in [0, 1), got %g", o->betas[i]);
        }
    }
    return 0;
}

double job_spec_lr(const JobSpec *spec) {
    return spec->optimizer == SPEC_OPTIM_SGD ? spec->sgd.lr : spec->adam.lr;
}

/* nanoGPT's configure_optimizers: matrices (2 or more dims) first, then
 * biases and norm weights, each in model order; returns where the second
 * group starts. */
static int order_decay_first(Tensor **params, int n) {
    Tensor **tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) return error_set("optimizer: out of memory");
    int k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++)
            if ((params[i]->ndim >= 2) == (pass == 0)) tmp[k++] = params[i];
    int first = 0;
    while (first < n && tmp[first]->ndim >= 2) first++;
    memcpy(params, tmp, (size_t)n * sizeof *tmp);
    free(tmp);
    return first;
}

Optimizer *job_spec_build_optimizer(const JobSpec *spec, Module *model) {
    int n, no_decay_from = 0;
    Tensor **params = module_parameters(model, &n);
    if (!params) return NULL;
    if (spec->no_decay_1d && (no_decay_from = order_decay_first(params, n)) < 0) {
        free(params);
        return NULL;
    }
    Optimizer *opt = NULL;
    if (n == 0)
        error_at("optimizer", "the model has no parameters to optimize");
    else if (spec->optimizer == SPEC_OPTIM_SGD)
        opt = sgd_new(params, n, spec->sgd);
    else if (spec->optimizer == SPEC_OPTIM_ADAM)
        opt = adam_new(params, n, spec->adam);
    else
        opt = adamw_new(params, n, spec->adam);
    free(params);
    if (opt && spec->no_decay_1d && optimizer_set_no_decay_from(opt, no_decay_from) != 0) {
        optimizer_free(opt);
        opt = NULL;
    }
    if (!opt && n) error_prefix_at("optimizer");
    return opt;
}

/* ---- scheduler ---- */

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
        if (parse_scheduler_at(spec, &kids[i], json_array_get(list, i),
                               spec_path_index(pi, k, i), false))
            return -1;
        c->n_schedulers++;
        if (kids[i].type == LR_SCHEDULER_SEQUENTIAL)
            return error_at(pi, "a SequentialLR cannot hold another (torch's SequentialLR.step "
                                "takes no epoch to restart it at a milestone)");
    }
    if (parse_milestones(c, v, p, false)) return -1;
    if (c->n_milestones != n - 1)
        return error_at(spec_path_key(k, p, "milestones"), "%zu schedulers need %zu milestones "
                        "(the epochs or steps where the next takes over), got %zu",
                        n, n - 1, c->n_milestones);
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
        lr_expr_free(e);
        if (!(c->lr_lambda = spec_strdup(text))) return -1;
        return 0;
    }
    case LR_SCHEDULER_STEP:
        if (spec_get_int(v, p, "step_size", true, 0, 1, LR_SCHEDULER_MAX_EPOCH, &n) ||
            spec_get_number(v, p, "gamma", false, c->gamma, &c->gamma) ||
            non_negative(p, "gamma", c->gamma))
            return -1;
        c->step_size = n;
        return 0;
    case LR_SCHEDULER_MULTI_STEP:
        return parse_milestones(c, v, p, true) ||
               spec_get_number(v, p, "gamma", false, c->gamma, &c->gamma) ||
               non_negative(p, "gamma", c->gamma);
    case LR_SCHEDULER_EXPONENTIAL:
        return spec_get_number(v, p, "gamma", true, 0, &c->gamma) ||
               non_negative(p, "gamma", c->gamma);
    case LR_SCHEDULER_COSINE:
        if (spec_get_int(v, p, "T_max", true, 0, 1, LR_SCHEDULER_MAX_EPOCH, &n) ||
            spec_get_number(v, p, "eta_min", false, 0, &c->eta_min) ||
            non_negative(p, "eta_min", c->eta_min))
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

/* The job's numbers a OneCycleLR's total_steps is derived from are not
 * known while parsing (the batches per epoch need the data): its check here
 * takes 2^20 steps, which cannot make a phase empty unless pct_start is
 * 2^-20; the real numbers are checked when the job is built. */
#define SPEC_CHECK_STEPS ((int64_t)1 << 20)

static int parse_scheduler(JobSpec *spec, const json_t *v) {
    if (!v || json_is_null(v)) return 0;
    spec->has_lr_scheduler = true;
    if (parse_scheduler_at(spec, &spec->lr_scheduler, v, "scheduler", true)) return -1;
    /* What is left (an lr_lambda that fails at epoch 0, ...) the scheduler knows. */
    LrScheduler *s = lr_scheduler_new_in(&spec->lr_scheduler, job_spec_lr(spec), 1,
                                         SPEC_CHECK_STEPS);
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

/* ---- the loop's settings ---- */

static int parse_name(JobSpec *spec, const json_t *v, const char *fallback) {
    const char *name = fallback ? fallback : "";
    if (v) {
        if (!json_is_string(v))
            return error_at("name", "expected a string, got %s", spec_json_kind(v));
        name = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 0 || n > MAX_NAME)
            return error_at("name", "must have 1 to %d characters, got %zu", MAX_NAME, n);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
                return error_at("name", "control character at position %zu", i);
    }
    return (spec->name = spec_strdup(name)) ? 0 : -1;
}

/* "precision": "float32" (default) or "bf16" (core/backend.h's Precision);
 * whether the job's device computes in it is checked where the device is
 * known (the daemon at submission, the trainer at its start). */
static int parse_precision(JobSpec *spec, const json_t *top) {
    const char *p;
    if (spec_get_string(top, "", "precision", false, &p)) return -1;
    if (!p || strcmp(p, "float32") == 0)
        spec->precision = PRECISION_FLOAT32;
    else if (strcmp(p, "bf16") == 0)
        spec->precision = PRECISION_BF16;
    else
        return error_at("precision", "expected \"float32\" or \"bf16\", got \"%s\"", p);
    return 0;
}

/* "metrics": ["accuracy", "perplexity"]: extra metrics of a classification
 * loss, each at most once. */
static int parse_metrics(JobSpec *spec, const json_t *v) {
    if (!v) return 0;
    if (!json_is_array(v))
        return error_at("metrics", "expected a list of strings, got %s", spec_json_kind(v));
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *m = json_array_get(v, i);
        char p[SPEC_PATH_MAX];
        spec_path_index(p, "metrics", i);
        if (!json_is_string(m)) return error_at(p, "expected a string, got %s", spec_json_kind(m));
        const char *name = json_string_value(m);
        bool *flag = strcmp(name, "accuracy") == 0     ? &spec->accuracy
                     : strcmp(name, "perplexity") == 0 ? &spec->perplexity
                                                       : NULL;
        if (!flag) return error_at(p, "unknown metric '%s' (known: accuracy, perplexity)", name);
        if (*flag) return error_at(p, "'%s' is listed twice", name);
        if (!job_spec_uses_labels(spec))
            return error_at(p,
                            "%s needs a classification loss (CrossEntropyLoss or "
                            "NLLLoss), not %s",
                            name, spec_loss_name(spec->loss));
        *flag = true;
    }
    return 0;
}

static const char *const checkpoint_fields[] = {"every_epochs", "keep_last", NULL};

static int parse_checkpoint(JobSpec *spec, const json_t *v) {
    int64_t every = 1, keep = 3;
    spec->checkpoint = !json_is_null(v);
    if (v && !json_is_null(v) &&
        (spec_expect_object(v, "checkpoint") ||
         spec_check_fields(v, "checkpoint", checkpoint_fields, NULL) ||
         spec_get_int(v, "checkpoint", "every_epochs", false, 1, 1, JOB_SPEC_MAX_EPOCHS, &every) ||
         spec_get_int(v, "checkpoint", "keep_last", false, 3, 1, 1000000, &keep)))
        return -1;
    spec->checkpoint_every_epochs = (int)every;
    spec->checkpoint_keep_last = (int)keep;
    return 0;
}

static int parse_init(JobSpec *spec, const json_t *top, const char *base_dir) {
    json_t *v = json_object_get(top, "init");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v))
        return error_at("init", "expected null or a string, got %s", spec_json_kind(v));
    return spec_get_path(top, "", "init", base_dir, &spec->init);
}

/* ---- the whole spec ---- */

static JobSpec *parse_root(const json_t *root, const char *base_dir, const char *fallback_name) {
    if (spec_expect_object(root, "")) return NULL;
    JobSpec *spec = calloc(1, sizeof *spec);
    if (!spec) {
        error_set("job spec: out of memory");
        return NULL;
    }
    int64_t epochs = 0, seed = 0, accumulate = 1;
    if (spec_check_fields(root, "", top_fields, NULL) ||
        parse_name(spec, json_object_get(root, "name"), fallback_name) ||
        spec_parse_data(spec, json_object_get(root, "data"), base_dir) ||
        spec_parse_model(spec, json_object_get(root, "model")) ||
        parse_loss(spec, json_object_get(root, "loss")) || spec_data_check_loss(spec) ||
        parse_optimizer(spec, json_object_get(root, "optimizer")) ||
        parse_scheduler(spec, json_object_get(root, "scheduler")) ||
        spec_get_int(root, "", "epochs", true, 0, 1, JOB_SPEC_MAX_EPOCHS, &epochs) ||
        spec_get_int(root, "", "batch_size", false, 1, 1, MAX_BATCH_SIZE, &spec->batch_size) ||
        spec_get_bool(root, "", "shuffle", false, &spec->shuffle) ||
        spec_get_bool(root, "", "drop_last", false, &spec->drop_last) ||
        spec_get_bool(root, "", "allow_tf32", false, &spec->allow_tf32) ||
        spec_get_bool(root, "", "cuda_graphs", false, &spec->cuda_graphs) ||
        parse_clip_grad_norm(spec, root) ||
        spec_get_int(root, "", "accumulate_steps", false, 1, 1, MAX_ACCUMULATE_STEPS,
                     &accumulate) ||
        spec_get_int(root, "", "seed", false, 0, 0, INT64_MAX, &seed) ||
        spec_parse_placement(spec, root) || parse_precision(spec, root) ||
        parse_metrics(spec, json_object_get(root, "metrics")) ||
        parse_checkpoint(spec, json_object_get(root, "checkpoint")) ||
        parse_init(spec, root, base_dir)) {
        job_spec_free(spec);
        return NULL;
    }
    spec->epochs = (int)epochs;
    spec->accumulate_steps = (int)accumulate;
    spec->seed = (uint64_t)seed;
    return spec;
}

static JobSpec *parse_text(const char *text, size_t len, const char *base_dir,
                           const char *fallback_name) {
    if (!text) {
        error_set("job spec: no text");
        return NULL;
    }
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        error_set("invalid JSON: line %d, column %d: %s", err.line, err.column, err.text);
        return NULL;
    }
    JobSpec *spec = parse_root(root, base_dir, fallback_name);
    json_decref(root);
    return spec;
}

JobSpec *job_spec_from_json(const json_t *root) { return parse_root(root, NULL, NULL); }

JobSpec *job_spec_parse(const char *json_text, size_t len) {
    return parse_text(json_text, len, NULL, NULL);
}

JobSpec *job_spec_parse_in(const char *json_text, size_t len, const char *base_dir) {
    return parse_text(json_text, len, base_dir, NULL);
}

JobSpec *job_spec_parse_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        error_set("%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(JOB_SPEC_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, JOB_SPEC_MAX_BYTES + 1, f) : 0;
    int bad = buf ? ferror(f) : 0;
    fclose(f);
    if (!buf || bad || n > JOB_SPEC_MAX_BYTES) {
        if (!buf)
            error_set("%s: out of memory", path);
        else if (bad)
            error_set("%s: read error", path);
        else
            error_set("%s: larger than %d bytes", path, JOB_SPEC_MAX_BYTES);
        free(buf);
        return NULL;
    }
    /* base directory and default name from the path: "dir/job.json" -> "dir", "job" */
    char *copy = strdup(path);
    if (!copy) {
        free(buf);
        error_set("%s: out of memory", path);
        return NULL;
    }
    char *slash = strrchr(copy, '/');
    const char *base = slash ? (slash == copy ? "/" : copy) : ".";
    char *file = slash ? slash + 1 : copy;
    if (slash && slash != copy) *slash = '\0';
    char name[MAX_NAME + 1];
    snprintf(name, sizeof name, "%s", file);
    size_t ln = strlen(name);
    if (ln > 5 && strcmp(name + ln - 5, ".json") == 0) name[ln - 5] = '\0';
    for (char *c = name; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '_';
    JobSpec *spec = parse_text(buf, n, base, name[0] ? name : NULL);
    free(buf);
    free(copy);
    if (!spec) error_prefix("%s", path);
    return spec;
}

void job_spec_free(JobSpec *spec) {
    if (!spec) return;
    free(spec->name);
    spec_data_free(spec);
    free(spec->layers);
    scheduler_config_free(&spec->lr_scheduler);
    free(spec->init);
    free(spec);
}
