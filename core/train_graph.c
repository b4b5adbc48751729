/* train_graph.c - a training step as a CUDA graph: see train_graph.h.
 *
 * Everything here goes through the device's Backend (its graph and read
 * entries) and the ops: core/ never sees CUDA.
 */
#include "core/train_graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"

#define SLOTS 2 /* steps whose numbers may be in flight */

/* A step's numbers, one float64 each, in this order: the counts, the
 * norm, then each batch's loss. */
enum { NUMBER_CORRECT, NUMBER_LABELLED, NUMBER_GRAD_NORM, NUMBER_LOSSES };

struct TrainGraph {
    Device device;
    const Backend *be;
    int batches;               /* a step's: the trainer's accumulate_steps */
    Tensor *x[TRAIN_GRAPH_MAX_BATCHES], *y[TRAIN_GRAPH_MAX_BATCHES];
                               /* the graph's batches: each step's copied in */
    void *exec;                /* the captured step, without its optimizer
                                  update; NULL before the capture */
    void *update;              /* the captured optimizer update
                                  (optimizer_step_apply), NULL until captured */
    uint64_t update_states;    /* the optimizer's states_made at its capture */
    char update_off[256];      /* why the update runs op by op for good */
    bool update_noted;         /* update_off handed to the caller */
    Tensor *numbers;           /* float64 [NUMBER_LOSSES + batches], written
                                  by each replay (the counts stay 0 without
                                  accuracy, the norm without clipping) */
    bool clips;                /* whether the step clips its gradients */
    int n_grads;
    Tensor **grads;            /* each parameter's .grad as the graph writes it */
    uint64_t rng_advance;      /* how far a step moves the Rng (Dropout) */
    Tensor *rng_base;          /* int64 [1]: the Rng's offset at the step's
                                  start, written before each replay */
    bool off;                  /* a capture failed */
    Tensor *host;              /* [SLOTS, numbers] float64, page-locked */
    void *reads[SLOTS];        /* the backend's handles of copies in flight */
    int first, count;          /* the oldest slot in flight, how many are */
};

#define TRAIN_GRAPH_STR_(x) #x
#define TRAIN_GRAPH_STR(x) TRAIN_GRAPH_STR_(x)

const char *train_graph_unsupported(const Trainer *t) {
    const Backend *be = backend_for(t->device);
    if (!be) error_clear(); /* not a failure: the answer is no */
    if (!be || !be->graph_capture_begin || !be->read_begin || !be->from_host_queued)
        return "the device has no CUDA graphs";
    if (dist_active(t->dist)) return "a data-parallel step all-reduces its gradients as it goes";
    if (t->accumulate_steps > TRAIN_GRAPH_MAX_BATCHES)
        return "a step of more than " TRAIN_GRAPH_STR(TRAIN_GRAPH_MAX_BATCHES)
               " batches (accumulate_steps)";
    return NULL;
}

static int64_t numbers_of(const TrainGraph *g) { return NUMBER_LOSSES + g->batches; }

TrainGraph *train_graph_new(const Trainer *t) {
    TrainGraph *g = calloc(1, sizeof *g);
    int n = t->opt->n_params;
    if (g) g->grads = calloc(n > 0 ? (size_t)n : 1, sizeof *g->grads);
    if (!g || !g->grads) {
        free(g);
        error_set("cuda graphs: out of memory");
        return NULL;
    }
    g->device = t->device;
    g->be = backend_for(t->device);
    g->batches = train_batches_per_step(t);
    if (g->batches > TRAIN_GRAPH_MAX_BATCHES) {
        error_set("cuda graphs: %d batches a step, at most %d", g->batches,
                  TRAIN_GRAPH_MAX_BATCHES);
        free(g->grads), free(g);
        return NULL;
    }
    g->n_grads = n;
    g->clips = t->clip_grad_norm > 0;
    g->host =
        tensor_empty_pinned(2, (int64_t[]){SLOTS, numbers_of(g)}, DTYPE_FLOAT64, t->device);
    if (!g->be || !g->host) {
        train_graph_free(g);
        error_prefix("cuda graphs");
        return NULL;
    }
    return g;
}

/* The captured step and what it made, gone; the pending reads waited for. */
static void drop_graph(TrainGraph *g) {
    for (; g->count > 0; g->count--, g->first = (g->first + 1) % SLOTS)
        g->be->read_end(g->reads[g->first]);
    if (g->update) g->be->graph_free(g->update);
    if (g->exec) g->be->graph_free(g->exec);
    g->exec = g->update = NULL;
    for (int i = 0; i < g->n_grads; i++) tensor_release(g->grads[i]), g->grads[i] = NULL;
    for (int i = 0; i < g->batches; i++) {
        tensor_release(g->x[i]), tensor_release(g->y[i]);
        g->x[i] = g->y[i] = NULL;
    }
    tensor_release(g->numbers), tensor_release(g->rng_base);
    g->numbers = g->rng_base = NULL;
}

void train_graph_free(TrainGraph *g) {
    if (!g) return;
    if (g->be) drop_graph(g);
    tensor_release(g->host);
    free(g->grads);
    free(g);
}

bool train_graph_off(const TrainGraph *g) { return g->off; }

bool train_graph_captured(const TrainGraph *g) { return g->exec != NULL; }

int train_graph_pending(const TrainGraph *g) { return g->count; }

/* 1 where a (integral, float64) is not 0, else 0: min(|a|, 1). */
static Tensor *nonzero(Tensor *a) {
    Tensor *m = a ? tensor_abs(a) : NULL;
    Tensor *r = m ? tensor_clamp(m, NAN, 1) : NULL;
    tensor_release(m);
    return r;
}

/* v (a 0-dim tensor on the device) written into number i. */
static int put_number(TrainGraph *g, int i, Tensor *v) {
    Tensor *slot = tensor_narrow(g->numbers, 0, i, 1);
    Tensor *d = tensor_to_dtype(v, DTYPE_FLOAT64);
    int rc = slot && d ? tensor_copy_(slot, d) : -1;
    tensor_release(slot), tensor_release(d);
    return rc;
}

/* The accuracy counts of a batch on the device, as train.c's
 * count_correct counts them on the host: labelled = rows whose label is
 * not `ignore`, correct = labelled - those whose prediction differs;
 * added to *correct and *labelled (NULL before the step's first batch).
 * Float64: exact below 2^53. */
static int add_counts(Tensor **correct, Tensor **labelled, Tensor *pred, Tensor *labels,
                      int64_t ignore) {
    Tensor *p = tensor_to_dtype(pred, DTYPE_FLOAT64), *y = tensor_to_dtype(labels, DTYPE_FLOAT64);
    Tensor *diff = p && y ? tensor_sub(p, y) : NULL;
    Tensor *shifted = y ? tensor_add_scalar(y, -(double)ignore) : NULL;
    Tensor *wrong = nonzero(diff), *valid = nonzero(shifted);
    Tensor *wrong_valid = wrong && valid ? tensor_mul(wrong, valid) : NULL;
    Tensor *n_wrong = wrong_valid ? tensor_sum(wrong_valid) : NULL;
    Tensor *n_valid = valid ? tensor_sum(valid) : NULL;
    Tensor *n_right = n_wrong && n_valid ? tensor_sub(n_valid, n_wrong) : NULL;
    int rc = n_right ? 0 : -1;
    Tensor *sums[2] = {n_right, n_valid}, **into[2] = {correct, labelled};
    for (int i = 0; i < 2 && rc == 0; i++) {
        Tensor *sum = *into[i] ? tensor_add(*into[i], sums[i]) : tensor_retain(sums[i]);
        if (!sum) rc = -1;
        else tensor_release(*into[i]), *into[i] = sum;
    }
    Tensor *temps[] = {p, y, diff, shifted, wrong, valid, wrong_valid, n_wrong, n_valid, n_right};
    for (size_t i = 0; i < sizeof temps / sizeof *temps; i++) tensor_release(temps[i]);
    return rc;
}

/* What the graph keeps of batch i's outputs: its loss, its counts added
 * to the step's. */
static int keep_batch(TrainGraph *g, int i, const TrainGraphOutputs *out, Tensor **correct,
                      Tensor **labelled, int64_t ignore) {
    bool prev = autograd_set_enabled(false);
    int rc = put_number(g, NUMBER_LOSSES + i, out->loss);
    if (rc == 0 && out->pred) rc = add_counts(correct, labelled, out->pred, out->labels, ignore);
    autograd_set_enabled(prev);
    return rc;
}

/* The step as the capture records it: each batch's body (the gradients
 * summed over them), then the counts and clipping, its numbers written.
 * 0, or -1 with an error. */
static int record_step(TrainGraph *g, Trainer *t, TrainGraphBody body, int64_t ignore) {
    Tensor *correct = NULL, *labelled = NULL, *norm = NULL;
    int rc = 0;
    for (int i = 0; i < g->batches && rc == 0; i++) {
        TrainGraphOutputs out = {0};
        rc = body(t, g->x[i], g->y[i], g->batches, &out);
        if (rc == 0) rc = keep_batch(g, i, &out, &correct, &labelled, ignore);
        tensor_release(out.loss), tensor_release(out.pred), tensor_release(out.labels);
    }
    if (rc == 0 && correct)
        rc = put_number(g, NUMBER_CORRECT, correct) == 0 &&
                     put_number(g, NUMBER_LABELLED, labelled) == 0
                 ? 0
                 : -1;
    if (rc == 0 && g->clips && !(norm = optimizer_clip_grad_norm(t->opt, t->clip_grad_norm)))
        rc = -1;
    if (rc == 0 && norm) rc = put_number(g, NUMBER_GRAD_NORM, norm);
    tensor_release(correct), tensor_release(labelled), tensor_release(norm);
    return rc;
}

/* The capture failed (or may not be used): g off for good, everything the
 * attempt changed undone (its gradients were never computed, its numbers
 * drawn from the Rng never used), *why saying why. 0: the caller runs the
 * step itself. */
static int decline(TrainGraph *g, Trainer *t, uint64_t rng_offset, const char *reason,
                   char *why, size_t n) {
    snprintf(why, n, "%s", reason);
    g->off = true;
    drop_graph(g);
    optimizer_zero_grad(t->opt);
    if (t->rng) t->rng->offset = rng_offset;
    if (g->be->clear_error) g->be->clear_error(g->device);
    error_clear();
    return 0;
}

/* Waits for everything queued: -1 with the error of any of it. */
static int wait_device(TrainGraph *g) {
    void *done = g->be->read_begin(g->device, 0, NULL, NULL, NULL);
    return done ? g->be->read_end(done) : -1;
}

/* The optimizer's update captured as a graph of its own: it reads each
 * step's numbers, which optimizer_step_prepare queues before each replay,
 * from device memory, and the state tensors there were at its capture.
 * 0, or -1 with an error saying why not. */
static int capture_update(TrainGraph *g, Trainer *t) {
    if (g->be->graph_capture_begin(g->device) != 0) return -1;
    char failure[512] = "";
    if (optimizer_step_apply(t->opt) != 0) snprintf(failure, sizeof failure, "%s", error_get());
    g->update = g->be->graph_capture_end(g->device);
    if (failure[0] && g->update) g->be->graph_free(g->update), g->update = NULL;
    if (failure[0]) return error_set("%s", failure);
    if (!g->update) return -1;
    g->update_states = t->opt->states_made;
    return 0;
}

/* Captures the step on the batches staged: 1, 0 (declined: *why) or -1. */
static int capture(TrainGraph *g, Trainer *t, TrainGraphBody body, int64_t ignore, char *why,
                   size_t n) {
    g->numbers = tensor_zeros(SHAPE(numbers_of(g)), DTYPE_FLOAT64, g->device);
    g->rng_base = tensor_zeros(SHAPE(1), DTYPE_INT64, g->device);
    if (!g->numbers || !g->rng_base) return -1;
    optimizer_zero_grad(t->opt); /* the backward then writes each .grad whole */
    uint64_t offset = t->rng ? t->rng->offset : 0;
    char failure[512] = "";
    /* what is queued reports its own failures first: a capture that
     * cannot begin then declines, and the steps run op by op */
    if (wait_device(g) != 0) return -1;
    if (g->be->graph_capture_begin(g->device) != 0)
        return decline(g, t, offset, error_get(), why, n);
    if (t->rng) { /* masks drawn at the replay's offset (Dropout) */
        t->rng->device_base = tensor_data(g->rng_base);
        t->rng->capture_base = offset;
    }
    int rc = record_step(g, t, body, ignore);
    if (t->rng) t->rng->device_base = NULL;
    if (rc != 0) snprintf(failure, sizeof failure, "%s", error_get());
    g->exec = g->be->graph_capture_end(g->device);
    if (rc != 0 || !g->exec) return decline(g, t, offset, rc ? failure : error_get(), why, n);
    /* each replay moves the stream on as the capture did */
    g->rng_advance = t->rng ? t->rng->offset - offset : 0;
    if (t->rng) t->rng->offset = offset;
    for (int i = 0; i < g->n_grads; i++) g->grads[i] = tensor_retain(t->opt->params[i]->grad);
    return 1;
}

int train_graph_stage(TrainGraph *g, int i, Tensor *x, Tensor *y) {
    if (i < 0 || i >= g->batches)
        return error_set("cuda graphs: batch %d of a step of %d", i, g->batches);
    if (!g->x[i]) { /* before the capture: the graph's inputs in the batch's shapes */
        g->x[i] = tensor_empty(x->ndim, x->shape, x->dtype, x->device);
        g->y[i] = tensor_empty(y->ndim, y->shape, y->dtype, y->device);
        if (!g->x[i] || !g->y[i]) {
            tensor_release(g->x[i]), tensor_release(g->y[i]);
            g->x[i] = g->y[i] = NULL;
            return -1;
        }
    } else if (x->dtype != g->x[i]->dtype || y->dtype != g->y[i]->dtype ||
               !tensor_same_shape(x, g->x[i]) || !tensor_same_shape(y, g->y[i])) {
        return 0;
    }
    return tensor_copy_(g->x[i], x) == 0 && tensor_copy_(g->y[i], y) == 0 ? 1 : -1;
}

/* Each parameter's .grad the graph's again: a step run one by one in
 * between (the last, partial batch) replaced them. */
static void attach_grads(TrainGraph *g, Optimizer *opt) {
    for (int i = 0; i < g->n_grads; i++) {
        Tensor *p = opt->params[i];
        if (p->grad == g->grads[i]) continue;
        tensor_release(p->grad);
        p->grad = tensor_retain(g->grads[i]);
    }
}

/* The step's graph, the optimizer's host part (its numbers queued to the
 * device), then its update: the captured one, or, the first time and
 * whenever the optimizer has made state since the capture (SGD's momentum
 * buffer once momentum is not 0), op by op and captured anew. Should that
 * capture fail, the update runs op by op from then on. */
static int replay(TrainGraph *g, Trainer *t) {
    attach_grads(g, t->opt);
    if (g->rng_advance && g->be->from_host_queued(g->device, tensor_data(g->rng_base),
                                                  &t->rng->offset, sizeof t->rng->offset) != 0)
        return error_prefix("cuda graphs: the step's random numbers");
    if (g->be->graph_launch(g->exec) != 0 || optimizer_step_prepare(t->opt) != 0) return -1;
    if (g->update && g->update_states != t->opt->states_made)
        g->be->graph_free(g->update), g->update = NULL;
    if (g->update) return g->be->graph_launch(g->update);
    if (optimizer_step_apply(t->opt) != 0) return -1;
    if (g->update_off[0]) return 0;
    /* before a capture, whose failure is forgotten, the step's own are
     * reported: a wait (the first replay, and after state was made) */
    if (wait_device(g) != 0) return -1;
    if (capture_update(g, t) != 0) {
        snprintf(g->update_off, sizeof g->update_off, "%s", error_get());
        if (g->be->clear_error) g->be->clear_error(g->device);
        error_clear();
    }
    return 0;
}

const char *train_graph_update_note(TrainGraph *g) {
    if (!g->update_off[0] || g->update_noted) return NULL;
    g->update_noted = true;
    return g->update_off;
}

/* The replay's numbers copied to the next host slot, not waited for. */
static int read_begin(TrainGraph *g) {
    if (g->count == SLOTS) return error_set("cuda graphs: %d steps' numbers in flight", SLOTS);
    int slot = (g->first + g->count) % SLOTS;
    void *dst = (double *)tensor_data(g->host) + slot * numbers_of(g);
    const void *src = tensor_data(g->numbers);
    size_t bytes = (size_t)numbers_of(g) * sizeof(double);
    g->reads[slot] = g->be->read_begin(g->device, 1, &dst, &src, &bytes);
    if (!g->reads[slot]) return -1;
    g->count++;
    return 1;
}

int train_graph_step(TrainGraph *g, Trainer *t, TrainGraphBody body, int64_t ignore, char *why,
                     size_t n) {
    if (g->off) return 0;
    for (int i = 0; i < g->batches; i++)
        if (!g->x[i] || !g->y[i])
            return error_set("cuda graphs: batch %d of the step not staged", i);
    if (!g->exec) {
        int rc = capture(g, t, body, ignore, why, n);
        if (rc <= 0) return rc;
    }
    if (replay(g, t) != 0) return -1;
    if (t->rng) t->rng->offset += g->rng_advance;
    return read_begin(g);
}

int train_graph_read(TrainGraph *g, TrainGraphNumbers *out) {
    if (g->count == 0) return error_set("cuda graphs: no step's numbers in flight");
    int slot = g->first;
    g->first = (slot + 1) % SLOTS;
    g->count--;
    if (g->be->read_end(g->reads[slot]) != 0) return -1;
    const double *host = (const double *)tensor_data(g->host) + slot * numbers_of(g);
    *out = (TrainGraphNumbers){.losses = host + NUMBER_LOSSES,
                               .batches = g->batches,
                               .correct = (int64_t)host[NUMBER_CORRECT],
                               .labelled = (int64_t)host[NUMBER_LABELLED],
                               .grad_norm = g->clips ? host[NUMBER_GRAD_NORM] : NAN};
    return 0;
}
