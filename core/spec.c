/* spec.c - parsing and validating a job spec (see spec.h).
 *
 * The parse walks the JSON once, top level first: unknown fields are
 * refused before anything is read, then each section in the order the
 * design document lists them. Every value is copied out of the jansson tree,
 * so the JobSpec stands alone once the tree is freed. The data section lives
 * in spec_data.c, the model's layers in spec_model.c, the LR scheduler in
 * spec_scheduler.c, the typed field readers in spec_json.c.
 */
#include "core/spec.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
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
            spec_non_negative(p, "lr", o->lr) || spec_non_negative(p, "momentum", o->momentum) ||
            spec_non_negative(p, "weight_decay", o->weight_decay))
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
        spec_get_bool(v, p, "amsgrad", false, &o->amsgrad) || spec_non_negative(p, "lr", o->lr) ||
        spec_non_negative(p, "eps", o->eps) || spec_non_negative(p, "weight_decay", o->weight_decay))
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

/* A path, or a daemon's checkpoint id: as a string, or the listing's
 * integer itself. */
static int parse_init(JobSpec *spec, const json_t *top, const char *base_dir) {
    json_t *v = json_object_get(top, "init");
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 1)
            return error_at("init", "a checkpoint id is >= 1, got %" JSON_INTEGER_FORMAT,
                            json_integer_value(v));
        char id[32];
        snprintf(id, sizeof id, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return (spec->init = spec_resolve_path(base_dir, id)) ? 0 : -1;
    }
    if (!json_is_string(v))
        return error_at("init", "expected null, a string or a checkpoint id, got %s",
                        spec_json_kind(v));
    return spec_get_path(top, "", "init", base_dir, &spec->init);
}

/* ---- the whole spec ---- */

/* "epochs", before the scheduler, which is checked with it. */
static int parse_epochs(JobSpec *spec, const json_t *root) {
    int64_t epochs;
    if (spec_get_int(root, "", "epochs", true, 0, 1, JOB_SPEC_MAX_EPOCHS, &epochs)) return -1;
    spec->epochs = (int)epochs;
    return 0;
}

static JobSpec *parse_root(const json_t *root, const char *base_dir, const char *fallback_name) {
    if (spec_expect_object(root, "")) return NULL;
    JobSpec *spec = calloc(1, sizeof *spec);
    if (!spec) {
        error_set("job spec: out of memory");
        return NULL;
    }
    int64_t seed = 0, accumulate = 1;
    if (spec_check_fields(root, "", top_fields, NULL) ||
        parse_name(spec, json_object_get(root, "name"), fallback_name) ||
        spec_parse_data(spec, json_object_get(root, "data"), base_dir) ||
        spec_parse_model(spec, json_object_get(root, "model")) ||
        parse_loss(spec, json_object_get(root, "loss")) || spec_data_check_loss(spec) ||
        parse_optimizer(spec, json_object_get(root, "optimizer")) ||
        parse_epochs(spec, root) ||
        spec_parse_scheduler(spec, json_object_get(root, "scheduler")) ||
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
    spec_scheduler_free(spec);
    free(spec->init);
    free(spec);
}
