/* optimizer_step.c - an optimizer's step: every parameter with a grad, in
 * runs of one device, dtype and weight-decay group, each run one fused
 * update of its backend (on a GPU, one kernel launch per 24 parameters).
 *
 * A step has two halves. The host's (optimizer_step_prepare) makes missing
 * state, counts the step and computes each parameter's numbers for the
 * update into opt->consts, then queues their copy to the parameters'
 * devices (Backend.from_host_queued), so the host never waits for the
 * device. The device's (optimizer_step_apply) launches the updates, which
 * read the numbers there. A CUDA graph captures the second half once and
 * replays it after each step's first half (core/train_graph.c). Each half
 * is all or nothing: the first undoes the state it made and the counters
 * it moved when any run fails, the second binds every run before it
 * launches any.
 */
#include "core/optim/optimizer.h"

#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"

/* The step's parameters: those with a grad, each grad contiguous. */
typedef struct {
    OptimUpdate *u;
    int *index; /* u[k] is parameter index[k] */
    int count;
} Updates;

static void updates_release(Updates *s) {
    for (int k = 0; k < s->count; k++) tensor_release((Tensor *)s->u[k].grad);
    free(s->u);
    free(s->index);
}

/* The grad of parameter i fits it (NULL grads are skipped by the caller). */
static int check_grad(const Optimizer *opt, int i) {
    const Tensor *p = opt->params[i], *g = p->grad;
    const char *name = opt->type->name;
    char a[128], b[128];
    if (!device_equal(p->device, g->device))
        return error_set("%s: parameter %d is on %s but its grad on %s", name, i,
                         device_name(p->device, a, sizeof a), device_name(g->device, b, sizeof b));
    if (p->dtype != g->dtype)
        return error_set("%s: parameter %d has dtype %s but its grad %s", name, i,
                         dtype_name(p->dtype), dtype_name(g->dtype));
    if (!tensor_same_shape(p, g))
        return error_set("%s: parameter %d has shape %s but its grad %s", name, i,
                         tensor_shape_str(p, a, sizeof a), tensor_shape_str(g, b, sizeof b));
    return 0;
}

/* Every grad is checked before any parameter changes. */
static int collect(Optimizer *opt, Updates *s) {
    *s = (Updates){0};
    for (int i = 0; i < opt->n_params; i++)
        if (opt->params[i]->grad && check_grad(opt, i) != 0) return -1;
    s->u = calloc((size_t)opt->n_params + 1, sizeof *s->u);
    s->index = calloc((size_t)opt->n_params + 1, sizeof *s->index);
    if (!s->u || !s->index) return error_set("%s: out of memory", opt->type->name);
    for (int i = 0; i < opt->n_params; i++) {
        Tensor *g = opt->params[i]->grad;
        if (!g) continue; /* as torch: no grad, no update, no state change */
        s->u[s->count].param = opt->params[i];
        s->index[s->count] = i;
        if (!(s->u[s->count++].grad = tensor_contiguous(g))) return -1;
    }
    return 0;
}

/* The end of the run from `start`: one device, dtype and group. */
static int run_end(const Optimizer *opt, const Updates *s, int start) {
    const Tensor *p0 = s->u[start].param;
    bool decay = s->index[start] < opt->n_decay;
    int end = start + 1;
    for (; end < s->count; end++) {
        const Tensor *p = s->u[end].param;
        if (!device_equal(p->device, p0->device) || p->dtype != p0->dtype ||
            (s->index[end] < opt->n_decay) != decay)
            break;
    }
    return end;
}

/* The copy of opt->consts on `device`, made there when `make`. */
static OptimizerConstsCopy *copy_on(Optimizer *opt, Device device, bool make) {
    char name[64];
    OptimizerConstsCopy *unused = NULL;
    for (int d = 0; d < OPTIMIZER_MAX_DEVICES; d++) {
        OptimizerConstsCopy *c = &opt->copies[d];
        if (c->numbers && device_equal(c->numbers->device, device)) return c;
        if (!c->numbers && !unused) unused = c;
    }
    device_name(device, name, sizeof name);
    if (!make) {
        error_set("%s: no update numbers on %s yet (no step prepared)", opt->type->name, name);
        return NULL;
    }
    if (!unused) {
        error_set("%s: parameters on more than %d devices", opt->type->name,
                  OPTIMIZER_MAX_DEVICES);
        return NULL;
    }
    int64_t shape[] = {opt->n_params, opt->type->n_consts};
    if (!(unused->numbers = tensor_empty(2, shape, DTYPE_FLOAT64, device))) {
        error_prefix("%s: update numbers on %s", opt->type->name, name);
        return NULL;
    }
    return unused;
}

/* opt->consts queued to the copy on the device of each run, unless that
 * copy holds them already (SGD's at a constant lr): each send is a
 * kernel launch on a GPU. */
static int send_consts(Optimizer *opt, const Updates *s) {
    size_t bytes = (size_t)opt->n_params * (size_t)opt->type->n_consts * sizeof *opt->consts;
    for (int start = 0; start < s->count; start = run_end(opt, s, start)) {
        OptimizerConstsCopy *c = copy_on(opt, s->u[start].param->device, true);
        if (!c) return -1;
        if (c->sent && memcmp(c->sent, opt->consts, bytes) == 0) continue;
        if (!c->sent && !(c->sent = malloc(bytes)))
            return error_set("%s: out of memory", opt->type->name);
        Device device = c->numbers->device;
        const Backend *be = backend_for(device);
        int (*copy)(Device, void *, const void *, size_t) =
            be->from_host_queued ? be->from_host_queued : be->from_host;
        if (copy(device, tensor_data(c->numbers), opt->consts, bytes) != 0) {
            free(c->sent); /* what the device holds is unknown now */
            c->sent = NULL;
            return error_prefix("%s: update numbers", opt->type->name);
        }
        memcpy(c->sent, opt->consts, bytes);
    }
    return 0;
}

/* Every run's host part, all or nothing: on a failure the state made and
 * the counters moved are undone. */
static int prepare_all(Optimizer *opt, const Updates *s) {
    size_t n_slots = (size_t)opt->n_params * (size_t)opt->type->n_slots;
    int64_t *steps = malloc((size_t)opt->n_params * sizeof *steps);
    bool *had = malloc(n_slots + 1);
    if (!steps || !had) {
        free(steps), free(had);
        return error_set("%s: out of memory", opt->type->name);
    }
    memcpy(steps, opt->steps, (size_t)opt->n_params * sizeof *steps);
    for (size_t j = 0; j < n_slots; j++) had[j] = opt->state[j] != NULL;
    int rc = 0;
    for (int start = 0, end; rc == 0 && start < s->count; start = end) {
        end = run_end(opt, s, start);
        bool decay = s->index[start] < opt->n_decay;
        rc = opt->type->prepare(opt, end - start, s->index + start, decay);
    }
    if (rc == 0) rc = send_consts(opt, s);
    bool made = false;
    for (size_t j = 0; j < n_slots; j++) {
        if (had[j] || !opt->state[j]) continue;
        made = true;
        if (rc != 0) tensor_release(opt->state[j]), opt->state[j] = NULL;
    }
    if (rc != 0) memcpy(opt->steps, steps, (size_t)opt->n_params * sizeof *steps);
    else if (made) opt->states_made++;
    free(steps), free(had);
    return rc;
}

/* Every run bound to its state and numbers before any update launches. */
static int apply_all(Optimizer *opt, Updates *s) {
    for (int start = 0, end; start < s->count; start = end) {
        end = run_end(opt, s, start);
        OptimizerConstsCopy *c = copy_on(opt, s->u[start].param->device, false);
        if (!c) return -1;
        for (int k = start; k < end; k++)
            s->u[k].consts = (const double *)tensor_data(c->numbers) +
                             (size_t)s->index[k] * (size_t)opt->type->n_consts;
        if (opt->type->bind(opt, end - start, s->u + start, s->index + start) != 0) return -1;
    }
    for (int start = 0, end; start < s->count; start = end) {
        end = run_end(opt, s, start);
        opt->type->update(backend_for(s->u[start].param->device), end - start, s->u + start);
    }
    return 0;
}

/* The halves asked for. */
static int step_halves(Optimizer *opt, bool prepare, bool apply) {
    if (!opt) return error_set("optimizer_step: NULL optimizer");
    /* The kernels touch raw buffers; nothing here is recorded, but a
     * contiguous copy of a grad that requires grad would be. */
    bool prev = autograd_set_enabled(false);
    Updates s;
    int rc = collect(opt, &s);
    if (rc == 0 && prepare) rc = prepare_all(opt, &s);
    if (rc == 0 && apply) rc = apply_all(opt, &s);
    updates_release(&s);
    autograd_set_enabled(prev);
    return rc;
}

int optimizer_step(Optimizer *opt) { return step_halves(opt, true, true); }

int optimizer_step_prepare(Optimizer *opt) { return step_halves(opt, true, false); }

int optimizer_step_apply(Optimizer *opt) { return step_halves(opt, false, true); }
