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
#include "core/dist/reducer.h"
#include "core/error.h"
#include "core/train_dist.h"

#define SLOTS 2 /* steps whose numbers may be in flight */

/* A step's numbers, one float64 each, in this order: the counts, the
 * norm, the data-parallel batches a rank's share of left nothing to divide
 * its loss by, then each batch's loss. */
enum { NUMBER_CORRECT, NUMBER_LABELLED, NUMBER_GRAD_NORM, NUMBER_EMPTY_SHARES, NUMBER_LOSSES };

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
    bool abandoned;            /* replays that may never end: not waited for */
    Tensor *host;              /* [SLOTS, numbers] float64, page-locked */
    void *reads[SLOTS];        /* the backend's handles of copies in flight */
    int marks[SLOTS];          /* data parallel: each step's point, for the
                                  watchdog (dist_reducer_mark) */
    int first, count;          /* the oldest slot in flight, how many are */
};

#define TRAIN_GRAPH_STR_(x) #x
#define TRAIN_GRAPH_STR(x) TRAIN_GRAPH_STR_(x)

const char *train_graph_unsupported(const Trainer *t) {
    const Backend *be = backend_for(t->device);
    if (!be) error_clear(); /* not a failure: the answer is no */
    if (!be || !be->graph_capture_begin || !be->read_begin || !be->from_host_queued)
        return "the device has no CUDA graphs";
    if (dist_active(t->dist) && !(t->dist->all_reduce_device && t->dist->join_device))
        return "a data-parallel step whose ranks sum on the host (MPI) reads results back";
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
    for (; g->count > 0 && !g->abandoned; g->count--, g->first = (g->first + 1) % SLOTS)
        g->be->read_end(g->reads[g->first]);
    if (g->update && !g->abandoned) g->be->graph_free(g->update); /* which waits for it */
    if (g->exec && !g->abandoned) g->be->graph_free(g->exec);
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
    if (!g->abandoned) tensor_release(g->host); /* else a replay may still write it */
    free(g->grads);
    free(g);
}

bool train_graph_off(const TrainGraph *g) { return g->off; }

/* The group's watchdog for the work before `mark` (-1: all queued). */
static int watch(TrainGraph *g, Trainer *t, int mark) {
    if (!t->reducer || dist_reducer_watch(t->reducer, mark) == 0) return 0;
    g->abandoned = true; /* its replays may never end: not waited for */
    return -1;
}

int train_graph_watch(TrainGraph *g, Trainer *t) {
    return watch(g, t, g->count > 0 ? g->marks[g->first] : -1);
}

bool train_graph_captured(const TrainGraph *g) { return g->exec != NULL; }

int train_graph_pending(const TrainGraph *g) { return g->count; }

/* 1 where a (integral, float64) is not 0, else 0: min(|a|, 1). */
static Tensor *nonzero(Tensor *a) {
    Tensor *m = a ? tensor_abs(a) : NULL;
    Tensor *r = m ? tensor_clamp(m, NAN, 1) : NULL;
    tensor_release(m);
    return r;
}

/* v (one element on the device) written into vec[i], as float64. */
static int put_at(Tensor *vec, int64_t i, Tensor *v) {
    Tensor *slot = tensor_narrow(vec, 0, i, 1);
    Tensor *d = tensor_to_dtype(v, DTYPE_FLOAT64);
    int rc = slot && d ? tensor_copy_(slot, d) : -1;
    tensor_release(slot), tensor_release(d);
    return rc;
}

static int put_number(TrainGraph *g, int i, Tensor *v) { return put_at(g->numbers, i, v); }

/* vec[i] as a 0-dim tensor. */
static Tensor *element(Tensor *vec, int64_t i) {
    Tensor *slot = tensor_narrow(vec, 0, i, 1);
    Tensor *v = slot ? tensor_view(slot, 0, NULL) : NULL;
    tensor_release(slot);
    return v;
}

/* *sum + v into *sum (v itself when *sum is NULL). */
static int accumulate(Tensor **sum, Tensor *v) {
    Tensor *s = *sum ? tensor_add(*sum, v) : tensor_retain(v);
    if (!s) return -1;
    tensor_release(*sum);
    *sum = s;
    return 0;
}

/* 1 where a row's label (float64) is not `ignore`, else 0. */
static Tensor *labelled_rows(Tensor *y, int64_t ignore) {
    Tensor *shifted = tensor_add_scalar(y, -(double)ignore);
    Tensor *mask = nonzero(shifted);
    tensor_release(shifted);
    return mask;
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
    Tensor *wrong = nonzero(diff), *valid = y ? labelled_rows(y, ignore) : NULL;
    Tensor *wrong_valid = wrong && valid ? tensor_mul(wrong, valid) : NULL;
    Tensor *n_wrong = wrong_valid ? tensor_sum(wrong_valid) : NULL;
    Tensor *n_valid = valid ? tensor_sum(valid) : NULL;
    Tensor *n_right = n_wrong && n_valid ? tensor_sub(n_valid, n_wrong) : NULL;
    int rc = n_right ? 0 : -1;
    if (rc == 0) rc = accumulate(correct, n_right) == 0 && accumulate(labelled, n_valid) == 0
                          ? 0
                          : -1;
    Tensor *temps[] = {p, y, diff, wrong, valid, wrong_valid, n_wrong, n_valid, n_right};
    for (size_t i = 0; i < sizeof temps / sizeof *temps; i++) tensor_release(temps[i]);
    return rc;
}

/* What a data-parallel batch's loss divides by, on the device (float64,
 * 0-dim), as train_dist_denominator counts it on the host: the labelled
 * targets of a class loss, every target value otherwise. */
static Tensor *denominator(Tensor *y, int64_t ignore) {
    if (y->dtype != DTYPE_INT64)
        return tensor_scalar((double)tensor_numel(y), DTYPE_FLOAT64, y->device);
    Tensor *y64 = tensor_to_dtype(y, DTYPE_FLOAT64);
    Tensor *labelled = y64 ? labelled_rows(y64, ignore) : NULL;
    Tensor *d = labelled ? tensor_sum(labelled) : NULL;
    tensor_release(y64), tensor_release(labelled);
    return d;
}

/* This rank's [loss x d, d, 1 where d is 0] (float64 [3]) for the batch. */
static Tensor *local_totals(Tensor *loss, Tensor *d) {
    Tensor *totals = tensor_zeros(SHAPE(3), DTYPE_FLOAT64, loss->device);
    Tensor *l64 = tensor_to_dtype(loss, DTYPE_FLOAT64);
    Tensor *weighted = l64 && d ? tensor_mul(l64, d) : NULL;
    Tensor *some = nonzero(d), *minus = some ? tensor_neg(some) : NULL;
    Tensor *none = minus ? tensor_add_scalar(minus, 1) : NULL;
    bool ok = totals && weighted && none && put_at(totals, 0, weighted) == 0 &&
              put_at(totals, 1, d) == 0 && put_at(totals, 2, none) == 0;
    tensor_release(l64), tensor_release(weighted), tensor_release(some);
    tensor_release(minus), tensor_release(none);
    if (!ok) tensor_release(totals);
    return ok ? totals : NULL;
}

int train_graph_dist_share(Trainer *t, Tensor *loss, Tensor *y, int64_t ignore, int batches,
                           TrainGraphShare *out) {
    *out = (TrainGraphShare){0};
    bool prev = autograd_set_enabled(false);
    Tensor *d = denominator(y, ignore);
    Tensor *local = d ? local_totals(loss, d) : NULL;
    Tensor *sums = local ? tensor_all_reduce_sum(local, t->dist) : NULL;
    Tensor *weighted = sums ? element(sums, 0) : NULL, *total = sums ? element(sums, 1) : NULL;
    Tensor *weight = total ? tensor_div(d, total) : NULL; /* train_dist_reduce_batch's */
    Tensor *n = tensor_scalar(batches, DTYPE_FLOAT64, loss->device);
    Tensor *scale = weight && n ? tensor_div(weight, n) : NULL; /* scaled_backward's */
    out->loss = weighted && total ? tensor_div(weighted, total) : NULL;
    out->scale = scale ? tensor_to_dtype(scale, loss->dtype) : NULL;
    out->empty_shares = sums ? element(sums, 2) : NULL;
    Tensor *temps[] = {d, local, sums, weighted, total, weight, n, scale};
    for (size_t i = 0; i < sizeof temps / sizeof *temps; i++) tensor_release(temps[i]);
    autograd_set_enabled(prev);
    if (out->loss && out->scale && out->empty_shares) return 0;
    tensor_release(out->loss), tensor_release(out->scale), tensor_release(out->empty_shares);
    *out = (TrainGraphShare){0};
    return error_prefix("data parallel: the batch's totals");
}

/* The step's sums on the device as its batches are recorded (each NULL
 * until a batch adds to it). */
typedef struct {
    Tensor *correct, *labelled, *empty_shares;
} DeviceSums;

/* What the graph keeps of batch i's outputs: its loss, its counts and
 * empty shares added to the step's. */
static int keep_batch(TrainGraph *g, int i, const TrainGraphOutputs *out, DeviceSums *sums,
                      int64_t ignore) {
    bool prev = autograd_set_enabled(false);
    int rc = put_number(g, NUMBER_LOSSES + i, out->loss);
    if (rc == 0 && out->pred)
        rc = add_counts(&sums->correct, &sums->labelled, out->pred, out->labels, ignore);
    if (rc == 0 && out->empty_shares) rc = accumulate(&sums->empty_shares, out->empty_shares);
    autograd_set_enabled(prev);
    return rc;
}

/* The step's sums into its numbers: the counts summed over the ranks in a
 * data-parallel step (the empty shares already are). */
static int put_sums(TrainGraph *g, Trainer *t, const DeviceSums *sums) {
    Tensor *const at[] = {sums->correct, sums->labelled, sums->empty_shares};
    const int number[] = {NUMBER_CORRECT, NUMBER_LABELLED, NUMBER_EMPTY_SHARES};
    bool prev = autograd_set_enabled(false);
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (!at[i]) continue;
        bool counts = number[i] != NUMBER_EMPTY_SHARES;
        Tensor *v = counts ? tensor_all_reduce_sum(at[i], t->dist) : tensor_retain(at[i]);
        rc = v ? put_number(g, number[i], v) : -1;
        tensor_release(v);
    }
    autograd_set_enabled(prev);
    return rc;
}

/* The step as the capture records it: each batch's body (the gradients
 * summed over them; in a data-parallel step the last one's reduced over
 * the ranks as its backward goes), then the counts and clipping, its
 * numbers written. 0, or -1 with an error. */
static int record_step(TrainGraph *g, Trainer *t, TrainGraphBody body, int64_t ignore) {
    DeviceSums sums = {0};
    Tensor *norm = NULL;
    bool armed = false;
    int rc = 0;
    for (int i = 0; i < g->batches && rc == 0; i++) {
        TrainGraphOutputs out = {0};
        if (i == g->batches - 1 && t->reducer) dist_reducer_arm(t->reducer), armed = true;
        rc = body(t, g->x[i], g->y[i], g->batches, &out);
        if (rc == 0) rc = keep_batch(g, i, &out, &sums, ignore);
        tensor_release(out.loss), tensor_release(out.pred), tensor_release(out.labels);
        tensor_release(out.empty_shares);
    }
    if (armed && rc == 0) rc = dist_reducer_finish_queued(t->reducer);
    else if (armed) dist_reducer_disarm(t->reducer);
    if (rc == 0) rc = put_sums(g, t, &sums);
    if (rc == 0 && g->clips && !(norm = optimizer_clip_grad_norm(t->opt, t->clip_grad_norm)))
        rc = -1;
    if (rc == 0 && norm) rc = put_number(g, NUMBER_GRAD_NORM, norm);
    tensor_release(sums.correct), tensor_release(sums.labelled);
    tensor_release(sums.empty_shares), tensor_release(norm);
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

/* A data-parallel step's ranks replay their graphs together or none does
 * (a rank's graph holds collectives its peers' op-by-op steps would not
 * meet): `captured` this rank's capture's answer, the ranks' agreed one
 * returned. */
static int agree(TrainGraph *g, Trainer *t, int captured, char *why, size_t n) {
    bool any;
    if (train_dist_any(t, captured == 0, &any) != 0) return -1;
    if (!any || captured == 0) return captured;
    return decline(g, t, t->rng ? t->rng->offset : 0,
                   "another rank's capture failed (its log says why)", why, n);
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
    if (g->update && g->update_states != t->opt->states_made) {
        if (watch(g, t, -1) != 0) return -1; /* graph_free waits */
        g->be->graph_free(g->update), g->update = NULL;
    }
    if (g->update) return g->be->graph_launch(g->update);
    if (optimizer_step_apply(t->opt) != 0) return -1;
    if (g->update_off[0]) return 0;
    /* before a capture, whose failure is forgotten, the step's own are
     * reported: a wait (the first replay, and after state was made) */
    if (watch(g, t, -1) != 0 || wait_device(g) != 0) return -1;
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

/* The replay's numbers copied to the next host slot, not waited for (the
 * step's point marked for a data-parallel watchdog). */
static int read_begin(TrainGraph *g, Trainer *t) {
    if (g->count == SLOTS) return error_set("cuda graphs: %d steps' numbers in flight", SLOTS);
    int slot = (g->first + g->count) % SLOTS;
    g->marks[slot] = t->reducer ? dist_reducer_mark(t->reducer) : -1;
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
        if (rc >= 0 && dist_active(t->dist)) rc = agree(g, t, rc, why, n);
        if (rc <= 0) return rc;
    }
    if (replay(g, t) != 0) return -1;
    if (t->rng) t->rng->offset += g->rng_advance;
    return read_begin(g, t);
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
                               .empty_shares = (int64_t)host[NUMBER_EMPTY_SHARES],
                               .grad_norm = g->clips ? host[NUMBER_GRAD_NORM] : NAN};
    return 0;
}
