/* optimizer.c - what every optimizer shares: parameter checks, zero_grad,
 * and the flattened state_dict that checkpoints carry (the step loop is
 * optimizer_step.c's). The update rules are the types' (sgd.c, adam.c); this
 * file knows them only through their OptimizerType: slot and hyperparameter
 * names, and hooks to read, validate and apply hyperparameters.
 */
#include "core/optim/optimizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"

/* Step counters are stored as float64; beyond 2^53 they would round. */
#define MAX_STEP 9007199254740992.0

int optimizer_init(Optimizer *opt, Tensor *const *params, int n) {
    const char *name = opt->type->name;
    if (n < 1 || !params) return error_set("%s: optimizer got an empty parameter list", name);
    for (int i = 0; i < n; i++) {
        Tensor *p = params[i];
        if (!p) return error_set("%s: parameter %d is NULL", name, i);
        if (!dtype_is_float(p->dtype))
            return error_set("%s: parameter %d has dtype %s; only float32 and float64 can be "
                             "optimized", name, i, dtype_name(p->dtype));
        if (p->grad_fn) return error_set("%s: can't optimize a non-leaf tensor (parameter %d)", name, i);
        if (!tensor_is_contiguous(p)) return error_set("%s: parameter %d is not contiguous", name, i);
        /* Two parameters over one storage would be updated twice. */
        for (int j = 0; j < i; j++) {
            if (params[j] == p)
                return error_set("%s: parameter %d appears more than once (also parameter %d)",
                                 name, i, j);
            if (params[j]->storage == p->storage)
                return error_set("%s: parameters %d and %d share storage", name, j, i);
        }
    }
    opt->params = calloc((size_t)n, sizeof *opt->params);
    opt->state = calloc((size_t)n * (size_t)(opt->type->n_slots ? opt->type->n_slots : 1),
                        sizeof *opt->state);
    opt->steps = calloc((size_t)n, sizeof *opt->steps);
    opt->consts = calloc((size_t)n * (size_t)opt->type->n_consts, sizeof *opt->consts);
    if (!opt->params || !opt->state || !opt->steps || !opt->consts)
        return error_set("%s: out of memory", name);
    for (int i = 0; i < n; i++) opt->params[i] = tensor_retain(params[i]);
    opt->n_params = opt->n_decay = n;
    return 0;
}

int optimizer_set_no_decay_from(Optimizer *opt, int first) {
    if (first < 0 || first > opt->n_params)
        return error_set("%s: no-decay group from parameter %d of %d", opt->type->name, first,
                         opt->n_params);
    opt->n_decay = first;
    return 0;
}

void optimizer_free(Optimizer *opt) {
    if (!opt) return;
    if (opt->type->free) opt->type->free(opt);
    for (int i = 0; i < opt->n_params; i++) {
        tensor_release(opt->params[i]);
        for (int j = 0; j < opt->type->n_slots; j++) tensor_release(*optimizer_slot(opt, i, j));
    }
    free(opt->params);
    free(opt->state);
    free(opt->steps);
    free(opt->consts);
    for (int d = 0; d < OPTIMIZER_MAX_DEVICES; d++) {
        tensor_release(opt->copies[d].numbers);
        free(opt->copies[d].sent);
    }
    free(opt);
}

const char *optimizer_name(const Optimizer *opt) { return opt ? opt->type->name : "(null)"; }

void optimizer_zero_grad(Optimizer *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n_params; i++) tensor_zero_grad(opt->params[i]);
}

/* ---- state_dict ---- */

static int put(TensorDict *out, const char *key, Tensor *t) {
    int rc = t ? tensor_dict_set(out, key, t) : -1;
    tensor_release(t);
    return rc;
}

static int put_scalar(TensorDict *out, const char *key, double v) {
    return put(out, key, tensor_scalar(v, DTYPE_FLOAT64, DEVICE_CPU_INIT));
}

/* param_groups.<g>.*: lr, the hyperparameters (weight_decay 0 in the
 * no-decay group) and the indices of parameters [first, end). */
static int put_group(const Optimizer *opt, TensorDict *out, int g, int first, int end) {
    const OptimizerType *type = opt->type;
    char key[256];
    snprintf(key, sizeof key, "param_groups.%d.lr", g);
    int rc = put_scalar(out, key, opt->lr);
    double values[OPTIMIZER_MAX_HPARAMS];
    type->get_hparams(opt, values);
    for (int j = 0; j < type->n_hparams && rc == 0; j++) {
        bool no_decay = g == 1 && strcmp(type->hparam_names[j], "weight_decay") == 0;
        snprintf(key, sizeof key, "param_groups.%d.%s", g, type->hparam_names[j]);
        rc = put_scalar(out, key, no_decay ? 0 : values[j]);
    }
    if (rc != 0) return rc;
    Tensor *idx = tensor_empty(SHAPE(end - first), DTYPE_INT64, DEVICE_CPU_INIT);
    if (idx)
        for (int i = first; i < end; i++) ((int64_t *)tensor_data(idx))[i - first] = i;
    snprintf(key, sizeof key, "param_groups.%d.params", g);
    return put(out, key, idx);
}

int optimizer_state_dict(const Optimizer *opt, TensorDict *out) {
    if (!opt || !out) return error_set("optimizer_state_dict: NULL argument");
    const OptimizerType *type = opt->type;
    char key[256];
    bool prev = autograd_set_enabled(false);
    int rc = 0;
    for (int i = 0; i < opt->n_params && rc == 0; i++) {
        bool any = false;
        for (int j = 0; j < type->n_slots && rc == 0; j++) {
            Tensor *t = *optimizer_slot((Optimizer *)opt, i, j);
            if (!t) continue;
            any = true;
            snprintf(key, sizeof key, "state.%d.%s", i, type->slot_names[j]);
            rc = put(out, key, tensor_clone(t)); /* a snapshot, not the live buffer */
        }
        if (rc == 0 && any && type->has_step) {
            snprintf(key, sizeof key, "state.%d.step", i);
            rc = put_scalar(out, key, (double)opt->steps[i]);
        }
    }
    if (rc == 0) rc = put_group(opt, out, 0, 0, opt->n_decay);
    if (rc == 0 && opt->n_decay < opt->n_params)
        rc = put_group(opt, out, 1, opt->n_decay, opt->n_params);
    autograd_set_enabled(prev);
    if (rc != 0) error_prefix("optimizer_state_dict: %s", type->name);
    return rc;
}

/* ---- load_state_dict ---- */

/* A hyperparameter or step: exactly one element, finite. */
static int read_scalar(const char *key, const Tensor *t, double *out) {
    char s[128];
    if (tensor_numel(t) != 1)
        return error_set("'%s' must hold one value, got shape %s", key, tensor_shape_str(t, s, sizeof s));
    double v = tensor_item(t);
    if (!isfinite(v)) return error_set("'%s' is %g, not a finite number", key, v);
    *out = v;
    return 0;
}

/* "state.<i>.<rest>" -> i, rest; -1 if the index is not a plain number. */
/* An index as torch writes one: digits without a leading zero, so that no
 * two keys ("state.0.x", "state.00.x") name one slot. */
static int parse_index(const char *key, const char *p, long *index, const char **rest) {
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '.'))
        return error_set("'%s': expected a parameter index", key);
    errno = 0;
    char *end;
    long v = strtol(p, &end, 10);
    if (errno || *end != '.') return error_set("'%s': expected a parameter index", key);
    *index = v;
    *rest = end + 1;
    return 0;
}

/* A state tensor of parameter i, copied to the parameter's device and dtype. */
static Tensor *load_slot(const Optimizer *opt, int i, const char *key, const Tensor *t) {
    const Tensor *p = opt->params[i];
    char a[128], b[128];
    if (!dtype_is_float(t->dtype)) {
        error_set("'%s' has dtype %s, expected a float tensor", key, dtype_name(t->dtype));
        return NULL;
    }
    if (!tensor_same_shape(p, t)) {
        error_set("'%s' has shape %s, parameter %d has %s", key, tensor_shape_str(t, a, sizeof a),
                  i, tensor_shape_str(p, b, sizeof b));
        return NULL;
    }
    Tensor *c = tensor_empty_like(p);
    if (c && tensor_copy_(c, t) != 0) {
        tensor_release(c);
        return NULL;
    }
    return c;
}

/* Parses every key of `dict` in the optimizer's namespaces into the
 * candidate state (slots, steps) and hyperparameters. */
static int parse_dict(const Optimizer *opt, const TensorDict *dict, Tensor **slots,
                      int64_t *steps, double *lr, double *values) {
    const OptimizerType *type = opt->type;
    bool seen_lr = false, seen_params = false, seen[OPTIMIZER_MAX_HPARAMS] = {false};
    for (int k = 0; k < dict->count; k++) {
        const char *key = dict->names[k];
        const Tensor *t = dict->tensors[k];
        const char *rest;
        long i;
        if (strncmp(key, "state.", 6) == 0) {
            if (parse_index(key, key + 6, &i, &rest) != 0) return -1;
            if (i >= opt->n_params)
                return error_set("'%s': the optimizer has %d parameters", key, opt->n_params);
            if (type->has_step && strcmp(rest, "step") == 0) {
                double v;
                if (read_scalar(key, t, &v) != 0) return -1;
                if (v < 0 || v != floor(v) || v > MAX_STEP)
                    return error_set("'%s' is %g, not a step count", key, v);
                steps[i] = (int64_t)v;
                continue;
            }
            int j = 0;
            while (j < type->n_slots && strcmp(rest, type->slot_names[j]) != 0) j++;
            if (j == type->n_slots) return error_set("unexpected key '%s'", key);
            Tensor **slot = &slots[(size_t)i * (size_t)type->n_slots + (size_t)j];
            if (!(*slot = load_slot(opt, (int)i, key, t))) return -1;
        } else if (strncmp(key, "param_groups.", 13) == 0) {
            if (parse_index(key, key + 13, &i, &rest) != 0) return -1;
            int groups = opt->n_decay < opt->n_params ? 2 : 1;
            if (i >= groups)
                return error_set("'%s': the optimizer has %d parameter group(s)", key, groups);
            int in_group = i == 0 ? opt->n_decay : opt->n_params - opt->n_decay;
            if (strcmp(rest, "params") == 0) {
                if (t->ndim != 1 || tensor_numel(t) != in_group)
                    return error_set("'%s' lists %lld parameters, the optimizer's group has %d",
                                     key, (long long)tensor_numel(t), in_group);
                seen_params |= i == 0;
                continue;
            }
            if (i == 1) { /* the no-decay group repeats group 0's values */
                double ignored;
                if (read_scalar(key, t, &ignored) != 0) return -1;
                continue;
            }
            double *dst = NULL;
            if (strcmp(rest, "lr") == 0) {
                dst = lr;
                seen_lr = true;
            }
            for (int j = 0; j < type->n_hparams && !dst; j++)
                if (strcmp(rest, type->hparam_names[j]) == 0) {
                    dst = &values[j];
                    seen[j] = true;
                }
            if (!dst) return error_set("unexpected key '%s'", key);
            if (read_scalar(key, t, dst) != 0) return -1;
        }
        /* Anything else belongs to someone else (model, scheduler). */
    }
    if (!seen_lr) return error_set("missing 'param_groups.0.lr'");
    for (int j = 0; j < type->n_hparams; j++)
        if (!seen[j]) return error_set("missing 'param_groups.0.%s'", type->hparam_names[j]);
    if (!seen_params) return error_set("missing 'param_groups.0.params'");
    return 0;
}

int optimizer_load_state_dict(Optimizer *opt, const TensorDict *dict) {
    if (!opt || !dict) return error_set("optimizer_load_state_dict: NULL argument");
    const OptimizerType *type = opt->type;
    size_t nslots = (size_t)opt->n_params * (size_t)type->n_slots;
    Tensor **slots = calloc(nslots ? nslots : 1, sizeof *slots);
    int64_t *steps = malloc((size_t)opt->n_params * sizeof *steps);
    if (!slots || !steps) {
        free(slots);
        free(steps);
        return error_set("optimizer_load_state_dict: out of memory");
    }
    for (int i = 0; i < opt->n_params; i++) steps[i] = -1;
    double lr = 0, values[OPTIMIZER_MAX_HPARAMS] = {0};

    bool prev = autograd_set_enabled(false);
    int rc = parse_dict(opt, dict, slots, steps, &lr, values);
    if (rc == 0) rc = type->set_hparams(opt, lr, values, false);
    for (int i = 0; i < opt->n_params && rc == 0; i++)
        rc = type->check_state(opt, values, i, &slots[(size_t)i * (size_t)type->n_slots], steps[i]);
    autograd_set_enabled(prev);

    if (rc == 0) {
        /* Commit: nothing below can fail. */
        type->set_hparams(opt, lr, values, true);
        for (size_t s = 0; s < nslots; s++) {
            tensor_release(opt->state[s]);
            opt->state[s] = slots[s];
            slots[s] = NULL;
        }
        for (int i = 0; i < opt->n_params; i++) opt->steps[i] = steps[i] < 0 ? 0 : steps[i];
        opt->states_made++;
    } else {
        error_prefix("optimizer_load_state_dict: %s", type->name);
    }
    for (size_t s = 0; s < nslots; s++) tensor_release(slots[s]);
    free(slots);
    free(steps);
    return rc;
}
