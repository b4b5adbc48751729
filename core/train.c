/* train.c - the training loop and its metrics; see train.h.
 *
 * train_run() is the seed's PyTorch loop statement for statement; the rest
 * of this file is bookkeeping around it. TrainState is kept exact at every
 * point where the loop can stop (the top of each step, each validation
 * batch, the end of an epoch), so that whatever train_save_checkpoint()
 * (train_checkpoint.c) writes there, train_resume() + train_run() continue
 * with the same batches in the same order, the same dropout masks and the
 * same optimizer state: the same losses, bit for bit.
 */
#include "core/train.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/clock.h"
#include "core/dist/reducer.h"
#include "core/error.h"
#include "core/train_dist.h"
#include "core/train_graph.h"
#include "core/train_loop.h"

void train_init(Trainer *t) {
    memset(t, 0, sizeof *t);
    t->device = DEVICE_CPU_INIT;
}

/* A cancel on any rank stops them all at the same point: 1 when one
 * came, 0 when none did, -1 with the error when the ranks could not be
 * asked. */
static int cancelled(Trainer *t) {
    bool any;
    if (train_dist_any(t, t->cancel && atomic_load(t->cancel) != 0, &any) != 0)
        return error_prefix("step %" PRId64 ": asking the ranks whether to stop", t->state.step);
    return any;
}

/* Rank 0 speaks for a data-parallel job: metrics, logs, checkpoints. */
static bool reporter(const Trainer *t) { return dist_rank(t->dist) == 0; }

/* The device's backend when it counts its memory (a GPU), else NULL. */
static const Backend *memory_tracker(Device device) {
    const Backend *b = backend_for(device);
    if (!b) error_clear(); /* not this function's failure to report */
    return b && b->memory_stats && b->memory_reset_peak ? b : NULL;
}

static void emit(const Trainer *t, const char *name, int64_t step, int epoch, double value) {
    if (t->cb.metric && reporter(t)) t->cb.metric(t->cb.user, name, step, epoch, value);
}

void train_logf(const Trainer *t, const char *fmt, ...) {
    if (!t->cb.log || !reporter(t)) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    t->cb.log(t->cb.user, line);
}

/* "data parallel: 2 ranks over mpi, gradients in 3 buckets of up to 25
 * MiB" (bytes below one MiB). */
static void log_buckets(const Trainer *t) {
    int64_t cap = dist_reducer_bucket_bytes(t->reducer);
    char size[48];
    if (cap < ((int64_t)1 << 20))
        snprintf(size, sizeof size, "%lld bytes", (long long)cap);
    else
        snprintf(size, sizeof size, "%.6g MiB", (double)cap / 1048576.0);
    int n = dist_reducer_num_buckets(t->reducer);
    int world = dist_world(t->dist);
    train_logf(t, "data parallel: %d rank%s over %s, gradients in %d bucket%s of up to %s", world,
               world == 1 ? "" : "s", t->dist->backend, n, n == 1 ? "" : "s", size);
}

/* Batches a step of accumulate_steps takes: it, 1 when unset (0) or 1. */
static int batches_per_step(int accumulate_steps) {
    return accumulate_steps > 1 ? accumulate_steps : 1;
}

int train_batches_per_step(const Trainer *t) { return batches_per_step(t->accumulate_steps); }

int64_t train_steps_for(int64_t batches, int accumulate_steps) {
    int64_t k = batches_per_step(accumulate_steps);
    return (batches + k - 1) / k;
}

int64_t train_steps_per_epoch(const Trainer *t) {
    return train_steps_for(dataloader_num_batches(t->train), t->accumulate_steps);
}

double train_samples_per_s(const TrainState *s) {
    return s->samples > 0 && s->elapsed_s > 0 ? (double)s->samples / s->elapsed_s : 0;
}

int64_t train_total_steps(const Trainer *t) {
    if (!t->train || t->epochs <= 0) return 0;
    return (int64_t)t->epochs * train_steps_per_epoch(t);
}

/* ---- one batch ---- */

/* The batch's tensors on the trainer's device (new references). */
static int to_device(const Trainer *t, const Batch *b, Tensor **x, Tensor **y) {
    *x = device_equal(b->inputs->device, t->device) ? tensor_retain(b->inputs)
                                                     : tensor_to_device(b->inputs, t->device);
    *y = device_equal(b->targets->device, t->device) ? tensor_retain(b->targets)
                                                      : tensor_to_device(b->targets, t->device);
    if (*x && *y) return 0;
    tensor_release(*x);
    tensor_release(*y);
    *x = *y = NULL;
    return -1;
}

/* Each row's predicted class (argmax, queued on the device) and its label,
 * from out [B, C] and int64 labels [B] (out [B, T, C] and labels [B, T]:
 * each token a row), for count_correct to read later. */
static int predict(Tensor *out, Tensor *target, Tensor **pred, Tensor **labels) {
    *pred = *labels = NULL;
    Tensor *rows = NULL;
    if (tensor_tokens_as_rows(out, target, &rows, labels) != 0) return -1;
    if (rows->ndim != 2 || (*labels)->dtype != DTYPE_INT64 || (*labels)->ndim != 1 ||
        (*labels)->shape[0] != rows->shape[0]) {
        char a[64], b[64];
        error_set("accuracy needs [B, C] outputs and int64 [B] labels, got outputs %s and %s "
                  "targets %s",
                  tensor_shape_str(out, a, sizeof a), dtype_name(target->dtype),
                  tensor_shape_str(target, b, sizeof b));
    } else {
        *pred = tensor_argmax_last(rows);
    }
    tensor_release(rows);
    if (*pred) return 0;
    tensor_release(*labels);
    *labels = NULL;
    return -1;
}

/* Adds to *correct the rows whose prediction equals their label, and to
 * *labelled the rows whose label is not `ignore`: an ignored target is
 * neither right nor wrong, as torch users count it
 * ((pred == y)[y != ignore_index].sum() / (y != ignore_index).sum()). */
static int count_correct(Tensor *pred, Tensor *labels, int64_t ignore, int64_t *correct,
                         int64_t *labelled) {
    Tensor *pcc = tensor_host_contiguous(pred), *tcc = tensor_host_contiguous(labels);
    int rc = -1;
    if (pcc && tcc) {
        const int64_t *p = tensor_data(pcc), *y = tensor_data(tcc);
        int64_t n = tensor_numel(tcc), c = 0, l = 0;
        for (int64_t i = 0; i < n; i++) {
            c += y[i] != ignore && p[i] == y[i];
            l += y[i] != ignore;
        }
        *correct += c;
        *labelled += l;
        rc = 0;
    }
    tensor_release(pcc);
    tensor_release(tcc);
    return rc;
}

/* The batch-mean loss, through whichever loss function the trainer has; a
 * class loss of a sequence model over all its tokens. */
static Tensor *batch_loss(const Trainer *t, Tensor *out, Tensor *y) {
    if (!t->class_loss) return t->loss(out, y, REDUCTION_MEAN);
    Tensor *rows, *labels;
    if (tensor_tokens_as_rows(out, y, &rows, &labels) != 0) return NULL;
    Tensor *loss = t->class_loss(rows, labels, REDUCTION_MEAN, &t->class_options);
    tensor_release(rows), tensor_release(labels);
    return loss;
}

/* The targets accuracy skips: the class loss's ignore_index, else torch's
 * default (-100, which tensor_cross_entropy ignores too). */
static int64_t ignored_label(const Trainer *t) {
    return t->class_loss ? t->class_options.ignore_index : CLASS_LOSS_DEFAULTS.ignore_index;
}

static const char *nonfinite_name(double v) {
    return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

/* clip_grad_norm on the step's gradients (core/optim/clip_grad.c), the
 * norm before clipping read into *norm: one wait for the device. */
static int clip_and_read(Trainer *t, double *norm) {
    Tensor *n = optimizer_clip_grad_norm(t->opt, t->clip_grad_norm);
    int rc = n ? tensor_to_doubles(n, norm, 1) : -1;
    tensor_release(n);
    return rc;
}

/* Batches per optimizer step: accumulate_steps, fewer for the epoch's
 * last group when its batches do not divide by it. */
static int64_t group_size(const Trainer *t) {
    int64_t k = train_batches_per_step(t);
    int64_t left = dataloader_num_batches(t->train) - t->state.batch;
    return left < k ? left : k;
}

/* A step's totals over its micro-batches: the unscaled loss * size,
 * samples and accuracy counts; the global batch's in a data-parallel run. */
typedef struct {
    double loss_sum;
    int64_t samples, correct, labelled;
} StepSums;

/* A batch's forward whose numbers are not read yet: the loss (0-dim; NULL
 * for a rank's empty share) and, when accuracy is counted, each row's
 * prediction and label. Reading waits for the device, so a step queues its
 * backward first (forward_read). */
typedef struct {
    Tensor *loss, *pred, *labels;
    int64_t samples;
} Forward;

static void forward_release(Forward *f) {
    tensor_release(f->loss);
    tensor_release(f->pred);
    tensor_release(f->labels);
    *f = (Forward){0};
}

/* This rank's forward and loss of batch b into *f; *denominator what its
 * loss divides by in a data-parallel job. */
static int batch_forward(Trainer *t, const Batch *b, Forward *f, double *denominator) {
    Tensor *x = NULL, *y = NULL, *out = NULL;
    int rc = -1;
    *f = (Forward){.samples = b->size};
    *denominator = 0;
    t->rows = b->rows; /* the model's Dropout and BatchNorm read it */
    if (b->size == 0) return 0;
    if (to_device(t, b, &x, &y) != 0) goto done;
    if (!(out = module_forward(t->model, x))) goto done;
    if (!(f->loss = batch_loss(t, out, y))) {
        error_prefix("loss");
        goto done;
    }
    if (t->accuracy && predict(out, y, &f->pred, &f->labels) != 0) goto done;
    if (dist_active(t->dist) && train_dist_denominator(y, ignored_label(t), denominator) != 0)
        goto done;
    rc = 0;
done:
    tensor_release(x);
    tensor_release(y);
    tensor_release(out);
    if (rc != 0) forward_release(f);
    return rc;
}

/* f's numbers read from the device, then summed over the ranks: the
 * batch's totals. */
static int forward_read(Trainer *t, const Forward *f, double denominator,
                        TrainBatchTotals *global) {
    TrainBatchTotals local = {.loss = NAN, .weight = 1, .samples = f->samples};
    /* a failed read (on a GPU: a kernel's failure, an index out of range,
     * found at this copy) is the device's error, not a NaN loss */
    if (f->loss && tensor_to_doubles(f->loss, &local.loss, 1) != 0) return -1;
    if (f->pred &&
        count_correct(f->pred, f->labels, ignored_label(t), &local.correct, &local.labelled) != 0)
        return -1;
    return train_dist_reduce_batch(t, &local, denominator, global);
}

/* The loss's backward, scaled to the mean over the step's n micro-batches
 * (as loss / accumulation_steps in a PyTorch loop) of this rank's `weight`
 * share of the batch. */
static int scaled_backward(Tensor *loss, double weight, int64_t n) {
    double k = weight / (double)n;
    Tensor *scaled = k != 1 ? tensor_mul_scalar(loss, k) : tensor_retain(loss);
    int rc = scaled && tensor_backward(scaled) == 0 ? 0 : error_prefix("backward");
    tensor_release(scaled);
    return rc;
}

/* forward_read, then a loss that is not finite fails the step. */
static int step_totals(Trainer *t, const Forward *f, double denominator,
                       TrainBatchTotals *global) {
    if (forward_read(t, f, denominator, global) != 0) return -1;
    if (isfinite(global->loss)) return 0;
    t->failed_together = true; /* the ranks' summed loss: the same on each */
    return error_set("loss is %s", nonfinite_name(global->loss));
}

/* Forward, loss and backward of one micro-batch whose loss is scaled by
 * 1/n (n micro-batches make the step), its totals added to *acc; a
 * data-parallel rank scales its loss by its share of the batch's (and
 * skips the forward when its share is empty). `last` arms the gradient
 * reducer for the step's last backward. In one process the backward is
 * queued before the loss is read, so a GPU has it to run while the host
 * waits; ranks agree on the batch's totals first (their losses' weights,
 * a NaN on any rank). */

static int micro_step(Trainer *t, const Batch *b, int64_t n, bool last, StepSums *acc) {
    Forward f;
    TrainBatchTotals global = {.loss = NAN, .weight = 1};
    double denominator;
    bool ranks = dist_active(t->dist);
    int rc = -1;
    if (batch_forward(t, b, &f, &denominator) != 0) return -1;
    if (ranks && step_totals(t, &f, denominator, &global) != 0) goto done;
    if (last && t->reducer) dist_reducer_arm(t->reducer);
    if (f.loss && global.weight > 0 && scaled_backward(f.loss, global.weight, n) != 0) goto done;
    if (!ranks && step_totals(t, &f, denominator, &global) != 0) goto done;
    acc->loss_sum += global.loss * (double)global.samples;
    acc->samples += global.samples;
    acc->correct += global.correct;
    acc->labelled += global.labelled;
    rc = 0;
done:
    forward_release(&f);
    return rc;
}

/* ---- steps as CUDA graphs (core/train_graph.h) ---- */

/* A data-parallel rank's backward in a graph: its loss scaled by its
 * share of the global batch's, which the ranks agree on on the device
 * (train_graph_dist_share); o->loss becomes the global batch's. */
static int graph_dist_backward(Trainer *t, Tensor *y, int batches, TrainGraphOutputs *o) {
    TrainGraphShare share;
    if (train_graph_dist_share(t, o->loss, y, ignored_label(t), batches, &share) != 0) return -1;
    Tensor *scaled = tensor_mul(o->loss, share.scale);
    int rc = scaled && tensor_backward(scaled) == 0 ? 0 : error_prefix("backward");
    tensor_release(scaled), tensor_release(share.scale), tensor_release(o->loss);
    o->loss = share.loss;
    o->empty_shares = share.empty_shares;
    return rc;
}

/* The graph's batch body: forward, loss, accuracy's predictions and
 * backward, as batch_forward and scaled_backward run them for one process
 * (weight 1: the same kernels), or for a rank. The graph clips after the
 * step's last. */
static int graph_body(Trainer *t, Tensor *x, Tensor *y, int batches, TrainGraphOutputs *o) {
    Tensor *out = module_forward(t->model, x);
    int rc = -1;
    if (!out) return -1;
    if (!(o->loss = batch_loss(t, out, y)))
        error_prefix("loss");
    else if (t->accuracy && predict(out, y, &o->pred, &o->labels) != 0)
        rc = -1;
    else if (dist_active(t->dist))
        rc = graph_dist_backward(t, y, batches, o);
    else
        rc = scaled_backward(o->loss, 1, batches);
    tensor_release(out);
    return rc;
}

/* The step's batches (bs, n of them) copied to the graph's inputs: 1, 0
 * when one has another shape than the graph's, -1 with an error. */
static int graph_stage(Trainer *t, const Batch *bs, int64_t n) {
    int rc = 1;
    t->rows = bs[0].rows; /* full batches: a rank holds the same rows of each */
    for (int64_t i = 0; i < n && rc == 1; i++) {
        Tensor *x, *y;
        if (to_device(t, &bs[i], &x, &y) != 0) return -1;
        rc = train_graph_stage(t->graph, (int)i, x, y);
        tensor_release(x), tensor_release(y);
    }
    return rc;
}

/* The step's batches bs (n of them, all full) by the graph: 1 when
 * queued, 0 when they must run op by op, -1 with an error. */
static int graph_step(Trainer *t, const Batch *bs, int64_t n) {
    int rc = graph_stage(t, bs, n);
    if (rc != 1) return rc;
    char why[512] = "";
    bool captured = train_graph_captured(t->graph);
    rc = train_graph_step(t->graph, t, graph_body, ignored_label(t), why, sizeof why);
    if (rc == 0 && train_graph_off(t->graph))
        train_logf(t, "cuda graphs: off, steps run op by op: %s", why);
    if (rc == 1 && !captured)
        train_logf(t, "cuda graphs: step %" PRId64 " captured, later steps of its shape replay it",
                   t->state.step + 1);
    const char *note = rc == 1 ? train_graph_update_note(t->graph) : NULL;
    if (note) train_logf(t, "cuda graphs: the optimizer's update runs op by op: %s", note);
    return rc;
}

/* The step's loss summed over its batches (each full, of q.samples /
 * batches samples) as micro_step sums it: into *loss_sum; -1 with the error
 * of the first that is not finite. */
static int graph_loss_sum(const TrainGraphNumbers *num, const TrainQueuedStep *q,
                          double *loss_sum) {
    double rows = (double)(q->samples / num->batches);
    *loss_sum = 0;
    if (num->empty_shares > 0)
        return error_set("step %" PRId64 ": a rank's share of a batch had no target its loss "
                         "counts, whose backward a CUDA graph cannot skip as a step run op by op "
                         "does; run the job without cuda_graphs",
                         q->step);
    for (int i = 0; i < num->batches; i++) {
        if (!isfinite(num->losses[i]))
            return error_set("step %" PRId64 ": loss is %s", q->step,
                             nonfinite_name(num->losses[i]));
        *loss_sum += num->losses[i] * rows;
    }
    return 0;
}

/* The numbers of the oldest step queued by the graph: its metrics emitted
 * and its sums added, as train_step does for a step run op by op. */
static int graph_read_oldest(Trainer *t) {
    TrainGraphNumbers num;
    int rc = train_graph_watch(t->graph, t); /* a rank's replay waits for its peers */
    if (rc == 0) rc = train_graph_read(t->graph, &num);
    TrainQueuedStep q = t->graph_steps[0];
    t->graph_steps[0] = t->graph_steps[1];
    double loss_sum = NAN;
    t->graph_failed = rc != 0 || graph_loss_sum(&num, &q, &loss_sum) != 0;
    if (rc != 0) /* the wait covers the next step too, when one is queued */
        return train_graph_pending(t->graph) > 0
                   ? error_prefix("step %" PRId64 " or %" PRId64, q.step, q.step + 1)
                   : error_prefix("step %" PRId64, q.step);
    if (t->graph_failed) return -1;
    emit(t, "loss", q.step, q.epoch, loss_sum / (double)q.samples);
    emit(t, "lr", q.step, q.epoch, q.lr);
    if (t->clip_grad_norm > 0) emit(t, "grad_norm", q.step, q.epoch, num.grad_norm);
    TrainState *s = &t->state;
    s->loss_sum += loss_sum;
    s->samples += q.samples;
    s->correct += num.correct;
    s->labelled += num.labelled;
    return 0;
}

/* Every queued step's numbers read: before a step runs op by op (metrics
 * stay in step order) and wherever the run may stop. */
static int graph_read_all(Trainer *t) {
    while (t->graph && train_graph_pending(t->graph) > 0)
        if (graph_read_oldest(t) != 0) return -1;
    return 0;
}

/* The step's batch `done` from the loader into *b: 0, or -1 with the
 * loader's error (or its end before the epoch's last batch). */
static int next_batch(Trainer *t, int epoch, int64_t done, Batch *b) {
    int64_t at = t->state.batch + done;
    int got = dataloader_next(t->train, b);
    if (got < 0) return error_prefix("epoch %d batch %" PRId64, epoch, at);
    if (got == 0)
        return error_set("epoch %d: the loader ended at batch %" PRId64 " of %" PRId64, epoch, at,
                         dataloader_num_batches(t->train));
    return 0;
}

static void release_batches(Batch *bs, int64_t n) {
    for (int64_t i = 0; i < n; i++) batch_release(&bs[i]);
}

/* The step's n batches into bs: 0, or -1 (none kept) with an error. */
static int load_batches(Trainer *t, int epoch, int64_t n, Batch *bs) {
    for (int64_t i = 0; i < n; i++)
        if (next_batch(t, epoch, i, &bs[i]) != 0) {
            release_batches(bs, i);
            return -1;
        }
    return 0;
}

/* Whether the step's n batches are those a graph holds: accumulate_steps
 * of them (one without accumulation), each full (the epoch's last batch
 * may be short). */
static bool graph_shaped(const Trainer *t, int64_t n) {
    int64_t end = t->state.batch + n; /* batches of the epoch after the step */
    return n == train_batches_per_step(t) &&
           end * dataloader_batch_size(t->train) <= dataloader_num_samples(t->train);
}

/* A step the graph queued (n full batches): the state advanced, its
 * numbers read after the next step is queued, or at the epoch's end. */
static int graph_queued(Trainer *t, int epoch, int64_t n) {
    TrainState *s = &t->state;
    int pending = train_graph_pending(t->graph);
    s->step++;
    s->batch += n;
    t->graph_steps[pending - 1] =
        (TrainQueuedStep){.step = s->step,
                          .samples = n * dataloader_batch_size(t->train),
                          .epoch = epoch,
                          .lr = t->opt->lr};
    return pending > 1 && graph_read_oldest(t) != 0 ? -1 : 1;
}

/* The step op by op: each of its n batches' forward, loss, metrics and
 * backward (the first `loaded` of them from bs, which it takes, the rest
 * from the loader), clipping and the optimizer's step; the state advanced.
 * `shaped`: the step is one a graph could hold (graph_shaped), so the
 * libraries' per-shape plans exist for its capture. 1, or -1. */
static int step_by_ops(Trainer *t, int epoch, int64_t n, Batch *bs, int64_t loaded,
                       bool shaped) {
    TrainState *s = &t->state;
    int64_t step = s->step + 1;
    StepSums sums = {0};
    int rc = 0;
    if (graph_read_all(t) != 0) { /* its error names the graph's step */
        release_batches(bs, loaded);
        return -1;
    }
    for (int64_t done = 0; done < n && rc == 0; done++) {
        Batch b = {0};
        if (done < loaded) {
            b = bs[done];
            bs[done] = (Batch){0};
        } else if (next_batch(t, epoch, done, &b) != 0) {
            release_batches(bs, loaded);
            return -1;
        }
        rc = micro_step(t, &b, n, done == n - 1, &sums);
        batch_release(&b);
    }
    release_batches(bs, loaded);
    if (rc == 0 && t->reducer) rc = dist_reducer_finish(t->reducer);
    if (rc != 0) return error_prefix("step %" PRId64, step);
    emit(t, "loss", step, epoch, sums.loss_sum / (double)sums.samples);
    emit(t, "lr", step, epoch, t->opt->lr);
    if (t->clip_grad_norm > 0) {
        double norm;
        if (clip_and_read(t, &norm) != 0) return error_prefix("step %" PRId64, step);
        emit(t, "grad_norm", step, epoch, norm);
    }
    if (optimizer_step(t->opt) != 0) return error_prefix("step %" PRId64, step);
    s->step = step;
    s->batch += n;
    if (shaped) t->graph_warm = true;
    s->loss_sum += sums.loss_sum;
    s->samples += sums.samples;
    s->correct += sums.correct;
    s->labelled += sums.labelled;
    return 1;
}

/* One optimizer step: zero_grad, then forward, loss, metrics and backward
 * of each of its batches (accumulate_steps; one without accumulation), by
 * the graph or op by op, (clipping,) step. 1 when a step was done, 0 at
 * the end of the epoch, -1 on error. The state advances only when the step
 * is done; a graph's step adds its sums when its numbers are read. */
static int train_step(Trainer *t, int epoch) {
    int64_t n = group_size(t), loaded = 0;
    if (n <= 0) return 0;
    optimizer_zero_grad(t->opt); /* a graph's replay writes .grad whole: no harm */
    bool shaped = graph_shaped(t, n);
    Batch bs[TRAIN_GRAPH_MAX_BATCHES];
    int rc = 0;
    if (shaped && t->graph && t->graph_warm && !train_graph_off(t->graph) &&
        n <= TRAIN_GRAPH_MAX_BATCHES) {
        if (load_batches(t, epoch, n, bs) != 0) return -1;
        loaded = n;
        rc = graph_step(t, bs, n);
    }
    if (rc != 0) release_batches(bs, loaded);
    if (rc < 0) return error_prefix("step %" PRId64, t->state.step + 1);
    if (rc == 1) return graph_queued(t, epoch, n);
    return step_by_ops(t, epoch, n, bs, loaded, shaped);
}

/* ---- validation (eval mode, no grad) ---- */

static int validate(Trainer *t, int epoch, double *val_loss, double *val_acc) {
    DataLoader *dl = t->val;
    module_train(t->model, false);
    bool prev = autograd_set_enabled(false);
    double loss_sum = 0;
    int64_t samples = 0, correct = 0, labelled = 0;
    int rc = -1;
    if (dataloader_begin_epoch(dl, epoch) != 0) goto done;
    for (;;) {
        int stop = cancelled(t);
        if (stop < 0) goto done;
        if (stop) {
            t->cancelled = true;
            error_set("cancelled at step %" PRId64 " (validation of epoch %d)", t->state.step,
                      epoch);
            goto done;
        }
        Batch b;
        int got = dataloader_next(dl, &b);
        if (got < 0) goto done;
        if (got == 0) break;
        Forward f;
        TrainBatchTotals global;
        double denominator;
        int brc = batch_forward(t, &b, &f, &denominator);
        if (brc == 0) {
            brc = forward_read(t, &f, denominator, &global);
            forward_release(&f);
        }
        batch_release(&b);
        if (brc != 0) goto done;
        loss_sum += global.loss * (double)global.samples;
        samples += global.samples;
        correct += global.correct;
        labelled += global.labelled;
    }
    *val_loss = samples > 0 ? loss_sum / (double)samples : NAN;
    /* a NaN's sign means nothing (inf - inf is -nan on x86): stored and
     * logged as the plain nan torch prints */
    if (isnan(*val_loss)) *val_loss = NAN;
    *val_acc = labelled > 0 ? (double)correct / (double)labelled : NAN;
    rc = 0;
done:
    if (rc != 0) {
        dataloader_end_epoch(dl);
        if (!t->cancelled) error_prefix("epoch %d validation", epoch);
    }
    autograd_set_enabled(prev);
    return rc;
}

/* ---- the loop ---- */

static int check_trainer(const Trainer *t) {
    if (!t->model || !t->opt || !t->train || !(t->loss || t->class_loss))
        return error_set("train: the trainer needs a model, an optimizer, a train loader and a "
                         "loss");
    if (t->epochs < 0) return error_set("train: epochs must be >= 0, got %d", t->epochs);
    if (t->checkpoint_every < 0)
        return error_set("train: checkpoint_every must be >= 0, got %d", t->checkpoint_every);
    if (t->state.epoch < 0 || t->state.batch < 0 || t->state.step < 0)
        return error_set("train: bad state (epoch %d, batch %" PRId64 ", step %" PRId64 ")",
                         t->state.epoch, t->state.batch, t->state.step);
    return 0;
}

/* The scheduler's lr, and the momentum of a OneCycleLR with cycle_momentum
 * (SGD's "momentum", Adam's "betas.0", as torch sets group['momentum'] or
 * group['betas']), into the optimizer for the next step. */
int train_apply_schedule(Trainer *t) {
    if (!t->lr_scheduler) return 0;
    Optimizer *opt = t->opt;
    opt->lr = lr_scheduler_get_lr(t->lr_scheduler);
    double m;
    if (!lr_scheduler_momentum(t->lr_scheduler, &m)) return 0;
    const OptimizerType *type = opt->type;
    int j = 0;
    while (j < type->n_hparams && strcmp(type->hparam_names[j], "momentum") != 0 &&
           strcmp(type->hparam_names[j], "betas.0") != 0)
        j++;
    if (j == type->n_hparams)
        return error_set("OneCycleLR: cycle_momentum needs an optimizer with a momentum or "
                         "betas, %s has neither", type->name);
    double values[OPTIMIZER_MAX_HPARAMS];
    type->get_hparams(opt, values);
    values[j] = m;
    if (type->set_hparams(opt, opt->lr, values, false) != 0)
        return error_prefix("OneCycleLR: cycle_momentum: %s", type->name);
    type->set_hparams(opt, opt->lr, values, true);
    return 0;
}

/* scheduler.step() and its lr (and momentum) into the optimizer. */
static int step_schedule(Trainer *t) {
    if (!t->lr_scheduler) return 0;
    if (lr_scheduler_step(t->lr_scheduler) != 0) return -1;
    return train_apply_schedule(t);
}

/* Adds the time since *t0 to the epoch's training time and restarts *t0:
 * after each step, so live progress sees the time of the steps it counts. */
static void add_train_time(TrainState *s, double *t0) {
    double now = clock_now_s();
    s->elapsed_s += now - *t0;
    *t0 = now;
}

/* The running sums of an epoch, zeroed for the next. */
static void clear_epoch_sums(TrainState *s) {
    s->batch = 0;
    s->loss_sum = 0;
    s->samples = s->correct = s->labelled = 0;
    s->elapsed_s = 0;
}

/* The epoch's steps, to its end; -1 with an error on a failure or a
 * cancel. Their time, from *t0 on, is added to the epoch's. */
static int run_steps(Trainer *t, int epoch, double *t0) {
    TrainState *s = &t->state;
    for (;;) {
        int stop = cancelled(t);
        if (stop < 0) {
            dataloader_end_epoch(t->train);
            return -1;
        }
        if (stop) {
            int rc = graph_read_all(t);
            dataloader_end_epoch(t->train);
            if (rc != 0) return -1;
            add_train_time(s, t0);
            t->cancelled = true;
            return error_set("cancelled at step %" PRId64, s->step);
        }
        int rc = train_step(t, epoch);
        if (rc == 0) break;
        rc = rc < 0 ? -1 : 0;
        /* interval "step": scheduler.step() after each optimizer step */
        if (rc == 0 && t->lr_scheduler && lr_scheduler_per_step(t->lr_scheduler) &&
            step_schedule(t) != 0)
            rc = error_prefix("step %" PRId64 " scheduler", s->step);
        if (rc != 0) {
            dataloader_end_epoch(t->train);
            return -1;
        }
        add_train_time(s, t0);
    }
    if (graph_read_all(t) != 0) return -1;
    add_train_time(s, t0);
    return 0;
}

/* The epoch's metrics (design.md "Metrics") and its log line. */
static void report_epoch(const Trainer *t, int epoch, double val_loss, double val_acc,
                         double epoch_time) {
    const TrainState *s = &t->state;
    double train_loss = s->samples > 0 ? s->loss_sum / (double)s->samples : NAN;
    double train_acc = s->labelled > 0 ? (double)s->correct / (double)s->labelled : NAN;
    double sps = train_samples_per_s(s);
    emit(t, "train_loss", s->step, epoch, train_loss);
    if (t->accuracy) emit(t, "train_accuracy", s->step, epoch, train_acc);
    if (t->perplexity) emit(t, "train_perplexity", s->step, epoch, exp(train_loss));
    if (t->val) {
        emit(t, "val_loss", s->step, epoch, val_loss);
        if (t->accuracy) emit(t, "val_accuracy", s->step, epoch, val_acc);
        if (t->perplexity) emit(t, "val_perplexity", s->step, epoch, exp(val_loss));
    }
    emit(t, "samples_per_s", s->step, epoch, sps);
    emit(t, "train_time_s", s->step, epoch, s->elapsed_s);
    emit(t, "epoch_time_s", s->step, epoch, epoch_time);
    const Backend *be = memory_tracker(t->device);
    if (be) { /* a GPU: its allocator's high-water mark */
        uint64_t in_use = 0, peak = 0;
        be->memory_stats(t->device, &in_use, &peak);
        emit(t, "peak_memory_bytes", s->step, epoch, (double)peak);
    }

    char acc[64] = "", val[96] = "";
    if (t->accuracy) snprintf(acc, sizeof acc, " train_accuracy %.4f", train_acc);
    if (t->val && t->accuracy)
        snprintf(val, sizeof val, " val_loss %.6g val_accuracy %.4f", val_loss, val_acc);
    else if (t->val)
        snprintf(val, sizeof val, " val_loss %.6g", val_loss);
    train_logf(t, "epoch %d: step %" PRId64 " train_loss %.6g%s%s lr %.6g %.0f samples/s %.2fs "
                  "(training %.2fs)",
               epoch, s->step, train_loss, acc, val, t->opt->lr, sps, epoch_time, s->elapsed_s);
}

/* After the epoch's metrics: scheduler.step() (per epoch), the next
 * epoch's clean state, and a checkpoint where one is due. */
static int finish_epoch(Trainer *t, int epoch) {
    TrainState *s = &t->state;
    if (t->lr_scheduler && !lr_scheduler_per_step(t->lr_scheduler) && step_schedule(t) != 0)
        return error_prefix("epoch %d scheduler", epoch);
    s->epoch = epoch + 1;
    clear_epoch_sums(s);
    if (t->cb.checkpoint && reporter(t) && t->checkpoint_every > 0 &&
        ((epoch + 1) % t->checkpoint_every == 0 || epoch + 1 == t->epochs)) {
        if (t->cb.checkpoint(t->cb.user, t, epoch, s->step) != 0)
            return error_prefix("checkpoint epoch-%d", epoch); /* its directory's name */
    }
    return 0;
}

static int train_epoch(Trainer *t, int epoch) {
    TrainState *s = &t->state;
    double t0 = clock_now_s();
    module_train(t->model, true);
    if (!s->epoch_begun) {
        if (dataloader_begin_epoch(t->train, epoch) != 0) return error_prefix("epoch %d", epoch);
        clear_epoch_sums(s);
    }
    s->epoch_begun = false;
    if (train_apply_schedule(t) != 0) return error_prefix("epoch %d scheduler", epoch);
    if (run_steps(t, epoch, &t0) != 0) return -1;

    /* A validation cut short (a cancel) adds nothing: the epoch stays in
     * progress and a resume validates it again, whole, and that
     * validation's time is the epoch's. */
    double v0 = clock_now_s(), val_loss = NAN, val_acc = NAN;
    if (t->val && validate(t, epoch, &val_loss, &val_acc) != 0) return -1;
    report_epoch(t, epoch, val_loss, val_acc, s->elapsed_s + (clock_now_s() - v0));
    return finish_epoch(t, epoch);
}

/* The run's graph, where its steps may be graphs; else a log line why
 * (the steps then run op by op). */
static void graph_begin(Trainer *t) {
    const char *why = train_graph_unsupported(t);
    t->graph_warm = false;
    if (!why && !(t->graph = train_graph_new(t))) why = error_get();
    if (why) train_logf(t, "cuda graphs: not used: %s", why);
    error_clear();
}

/* The graph freed after its replays; a failed run's error kept, not the
 * one a replay's read may report on the way. */
static void graph_end(Trainer *t) {
    if (!t->graph) return;
    Error kept = *error_last();
    train_graph_free(t->graph);
    t->graph = NULL;
    if (kept.message[0]) error_restore(&kept);
}

int train_run(Trainer *t) {
    if (check_trainer(t) != 0) return -1;
    t->cancelled = t->failed_together = false;
    if (backend_check_precision(t->device, t->precision) != 0) return error_prefix_at("precision");
    if (t->rng) module_set_rng(t->model, t->rng);
    /* Grad mode is per thread; the loop needs it on and gives it back. */
    bool prev = autograd_set_enabled(true);
    /* peak_memory_bytes counts from here: one job per GPU makes the
     * device's high-water mark this job's */
    const Backend *be = memory_tracker(t->device);
    if (be) be->memory_reset_peak(t->device);
    /* set for every run, so a thread's next job does not inherit it */
    const Backend *dev = backend_for(t->device);
    if (dev && dev->allow_tf32) dev->allow_tf32(t->device, t->allow_tf32);
    if (dev && dev->set_precision) dev->set_precision(t->device, t->precision);
    int rc = train_dist_begin(t);
    if (rc == 0 && t->reducer) log_buckets(t);
    if (rc == 0 && t->cuda_graphs) graph_begin(t);
    while (rc == 0 && t->state.epoch < t->epochs) {
        if (train_epoch(t, t->state.epoch) != 0) rc = -1;
    }
    graph_end(t);
    train_dist_end(t);
    autograd_set_enabled(prev);
    return rc;
}
