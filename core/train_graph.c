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

#define SLOTS 2   /* steps whose numbers may be in flight */
#define NUMBERS 4 /* loss, correct, labelled, grad_norm */

struct TrainGraph {
    Device device;
    const Backend *be;
    Tensor *x, *y;             /* the graph's batch: each batch is copied in */
    void *exec;                /* the captured step, without its optimizer
                                  update; NULL before the capture */
    void *update;              /* the captured optimizer update
                                  (optimizer_step_apply), NULL until captured */
    uint64_t update_states;    /* the optimizer's states_made at its capture */
    char update_off[256];      /* why the update runs op by op for good */
    bool update_noted;         /* update_off handed to the caller */
    Tensor *numbers[NUMBERS];  /* float64 0-dim, written by each replay; the
                                  counts NULL without accuracy, the norm
                                  without clipping */
    int n_grads;
    Tensor **grads;            /* each parameter's .grad as the graph writes it */
    uint64_t rng_advance;      /* how far a step moves the Rng (Dropout) */
    Tensor *rng_base;          /* int64 [1]: the Rng's offset at the step's
                                  start, written before each replay */
    bool off;                  /* a capture failed */
    Tensor *host;              /* [SLOTS, NUMBERS] float64, page-locked */
    void *reads[SLOTS];        /* the backend's handles of copies in flight */
    int first, count;          /* the oldest slot in flight, how many are */
};

const char *train_graph_unsupported(const Trainer *t) {
    const Backend *be = backend_for(t->device);
    if (!be) error_clear(); /* not a failure: the answer is no */
    if (!be || !be->graph_capture_begin || !be->read_begin || !be->from_host_queued)
        return "the device has no CUDA graphs";
    if (dist_active(t->dist)) return "a data-parallel step all-reduces its gradients as it goes";
    if (t->accumulate_steps > 1) return "a step of several batches (accumulate_steps)";
    return NULL;
}

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
    g->n_grads = n;
    g->host = tensor_empty_pinned(2, (int64_t[]){SLOTS, NUMBERS}, DTYPE_FLOAT64, t->device);
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
    for (int i = 0; i < NUMBERS; i++) tensor_release(g->numbers[i]), g->numbers[i] = NULL;
    for (int i = 0; i < g->n_grads; i++) tensor_release(g->grads[i]), g->grads[i] = NULL;
    tensor_release(g->x), tensor_release(g->y), tensor_release(g->rng_base);
    g->x = g->y = g->rng_base = NULL;
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

/* The accuracy counts on the device, as train.c's count_correct counts
 * them on the host: labelled = rows whose label is not `ignore`, correct =
 * labelled - those whose prediction differs. Float64: exact below 2^53. */
static int device_counts(TrainGraph *g, Tensor *pred, Tensor *labels, int64_t ignore) {
    Tensor *p = tensor_to_dtype(pred, DTYPE_FLOAT64), *y = tensor_to_dtype(labels, DTYPE_FLOAT64);
    Tensor *diff = p && y ? tensor_sub(p, y) : NULL;
    Tensor *shifted = y ? tensor_add_scalar(y, -(double)ignore) : NULL;
    Tensor *wrong = nonzero(diff), *valid = nonzero(shifted);
    Tensor *wrong_valid = wrong && valid ? tensor_mul(wrong, valid) : NULL;
    Tensor *n_wrong = wrong_valid ? tensor_sum(wrong_valid) : NULL;
    g->numbers[2] = valid ? tensor_sum(valid) : NULL;
    g->numbers[1] = n_wrong && g->numbers[2] ? tensor_sub(g->numbers[2], n_wrong) : NULL;
    Tensor *temps[] = {p, y, diff, shifted, wrong, valid, wrong_valid, n_wrong};
    for (size_t i = 0; i < sizeof temps / sizeof *temps; i++) tensor_release(temps[i]);
    return g->numbers[1] ? 0 : -1;
}

/* What the graph keeps of the body's outputs: the loss, the counts, the
 * norm. */
static int keep_numbers(TrainGraph *g, const TrainGraphOutputs *out, int64_t ignore) {
    bool prev = autograd_set_enabled(false);
    g->numbers[0] = tensor_to_dtype(out->loss, DTYPE_FLOAT64);
    int rc = g->numbers[0] ? 0 : -1;
    if (rc == 0 && out->pred) rc = device_counts(g, out->pred, out->labels, ignore);
    if (rc == 0 && out->grad_norm && !(g->numbers[3] = tensor_retain(out->grad_norm))) rc = -1;
    autograd_set_enabled(prev);
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

/* The batch's tensors copied into the graph's own. */
static int copy_batch(TrainGraph *g, Tensor *x, Tensor *y) {
    return tensor_copy_(g->x, x) == 0 && tensor_copy_(g->y, y) == 0 ? 0 : -1;
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

/* Captures the step on (x, y): 1, 0 (declined: *why) or -1. */
static int capture(TrainGraph *g, Trainer *t, Tensor *x, Tensor *y, TrainGraphBody body,
                   int64_t ignore, char *why, size_t n) {
    g->x = tensor_empty(x->ndim, x->shape, x->dtype, x->device);
    g->y = tensor_empty(y->ndim, y->shape, y->dtype, y->device);
    g->rng_base = tensor_zeros(SHAPE(1), DTYPE_INT64, x->device);
    if (!g->x || !g->y || !g->rng_base || copy_batch(g, x, y) != 0) return -1;
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
    TrainGraphOutputs out = {0};
    int rc = body(t, g->x, g->y, &out);
    if (t->rng) t->rng->device_base = NULL;
    if (rc == 0) rc = keep_numbers(g, &out, ignore);
    if (rc != 0) snprintf(failure, sizeof failure, "%s", error_get());
    tensor_release(out.loss), tensor_release(out.pred), tensor_release(out.labels);
    tensor_release(out.grad_norm);
    g->exec = g->be->graph_capture_end(g->device);
    if (rc != 0 || !g->exec) return decline(g, t, offset, rc ? failure : error_get(), why, n);
    /* each replay moves the stream on as the capture did */
    g->rng_advance = t->rng ? t->rng->offset - offset : 0;
    if (t->rng) t->rng->offset = offset;
    for (int i = 0; i < g->n_grads; i++) g->grads[i] = tensor_retain(t->opt->params[i]->grad);
    return 1;
}

static bool same_batch(const TrainGraph *g, const Tensor *x, const Tensor *y) {
    return x->dtype == g->x->dtype && y->dtype == g->y->dtype && tensor_same_shape(x, g->x) &&
           tensor_same_shape(y, g->y);
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
    int slot = (g->first + g->count) % SLOTS, n = 0;
    double *host = (double *)tensor_data(g->host) + slot * NUMBERS;
    void *dst[NUMBERS];
    const void *src[NUMBERS];
    size_t bytes[NUMBERS];
    for (int i = 0; i < NUMBERS; i++) {
        if (!g->numbers[i]) continue;
        dst[n] = host + i;
        src[n] = tensor_data(g->numbers[i]);
        bytes[n++] = sizeof(double);
    }
    g->reads[slot] = g->be->read_begin(g->device, n, dst, src, bytes);
    if (!g->reads[slot]) return -1;
    g->count++;
    return 1;
}

int train_graph_step(TrainGraph *g, Trainer *t, Tensor *x, Tensor *y, TrainGraphBody body,
                     int64_t ignore, char *why, size_t n) {
    if (g->off) return 0;
    if (!g->exec) {
        int rc = capture(g, t, x, y, body, ignore, why, n);
        if (rc <= 0) return rc;
    } else if (!same_batch(g, x, y)) {
        return 0;
    } else if (copy_batch(g, x, y) != 0) {
        return -1;
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
    const double *host = (const double *)tensor_data(g->host) + slot * NUMBERS;
    *out = (TrainGraphNumbers){.loss = host[0], .grad_norm = NAN};
    if (g->numbers[1]) {
        out->correct = (int64_t)host[1];
        out->labelled = (int64_t)host[2];
    }
    if (g->numbers[3]) out->grad_norm = host[3];
    return 0;
}
