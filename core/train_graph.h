/* train_graph.h - a training step captured once as a CUDA graph and
 * replayed for each batch (a job's "cuda_graphs": true; train.c's).
 *
 * What the graphs hold: the step's forward, loss and backward of each of
 * its batches (accumulate_steps of them, the gradients summed as op by
 * op), clipping, the numbers its metrics need (each batch's loss, the
 * accuracy counts, the gradients' norm) on the device, and, in a second
 * graph launched after the first, the optimizer's update (captured at the
 * first replay, after running op by op once). Outside them: the
 * scheduler, and the optimizer's host part (optimizer_step_prepare: step
 * counts, the lr and Adam's bias corrections), which queues the step's
 * numbers to device memory, where the captured update reads them. Before
 * each replay the step's batches are copied into the graph's own input
 * tensors (train_graph_stage) and the parameters' .grad are the graph's
 * gradient tensors again (an uncaptured step in between may have replaced
 * them); after it the numbers are copied to page-locked host memory
 * without waiting: the trainer reads a step's numbers after queueing the
 * next step, so no step waits for the host.
 *
 * In a data-parallel step on GPUs the graph holds the ranks' collectives
 * too (the group's device all-reduce, NCCL): the gradient buckets,
 * BatchNorm's sums, and each batch's loss totals (train_graph_dist_share),
 * which the ranks otherwise agree on on the host before the backward.
 *
 * The graph is captured at the first step train.c hands it (after at least
 * one step run one by one, which makes the libraries' per-shape plans and
 * the optimizer's state). A capture fails, and the job's steps run one by
 * one from then on, saying why in its log, when anything in the step
 * synchronises or reads a result back (no layer of the job spec does).
 * Random numbers
 * (Dropout's masks, the attention's) are drawn where the Rng is at each
 * replay: its offset is written to device memory before the replay, and
 * the captured kernels add it to their own (Rng.device_base). A step with
 * a batch of another shape (the epoch's last, partial one) or fewer
 * batches (the epoch's last group) runs one by one too.
 */
#ifndef TRAIND_CORE_TRAIN_GRAPH_H
#define TRAIND_CORE_TRAIN_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/train.h"

typedef struct TrainGraph TrainGraph;

/* The most batches one step's graph holds (accumulate_steps): a graph
 * grows with each, and past this a launch saves nothing worth its size. */
#define TRAIN_GRAPH_MAX_BATCHES 64

/* What a batch's body leaves for the graph to keep: the batch's loss (a
 * 0-dim tensor; in a data-parallel step the global batch's) and, when
 * accuracy is counted, each row's predicted class and its label (int64,
 * the same shape); in a data-parallel step, empty_shares from
 * train_graph_dist_share. */
typedef struct {
    Tensor *loss, *pred, *labels, *empty_shares;
} TrainGraphOutputs;

/* A data-parallel batch in a graph: the ranks' totals summed on the
 * device, as train_dist_reduce_batch sums them on the host, so that no
 * rank waits for its loss before its backward. 0-dim tensors. */
typedef struct {
    Tensor *loss;         /* the global batch's mean loss (float64) */
    Tensor *scale;        /* what this rank's loss is multiplied by before its
                             backward: its share of the global mean over the
                             step's batches, rounded as scaled_backward rounds it */
    Tensor *empty_shares; /* the ranks whose share left nothing to divide by
                             (float64): a graph cannot skip their backward */
} TrainGraphShare;

/* For this rank's `loss` of a batch with targets y (`ignore` the label a
 * class loss skips) in a step of `batches`: 0, or -1 with an error. */
int train_graph_dist_share(Trainer *t, Tensor *loss, Tensor *y, int64_t ignore, int batches,
                           TrainGraphShare *out);

/* The forward of (x, y), its loss and the backward of the loss over
 * `batches` (the step's batches: the loss scaled by 1/batches), train.c's. */
typedef int (*TrainGraphBody)(Trainer *t, Tensor *x, Tensor *y, int batches,
                              TrainGraphOutputs *out);

/* A step's numbers, read back: each of its batches' loss (`batches` of
 * them, valid until the next train_graph_read), the accuracy counts (0
 * without accuracy) and the gradients' norm (NAN without clipping). */
typedef struct {
    const double *losses;
    int batches;
    int64_t correct, labelled;
    double grad_norm;
    int64_t empty_shares; /* data parallel: see TrainGraphShare */
} TrainGraphNumbers;

/* Why t's steps cannot be graphs (a static string), or NULL when they may:
 * its device has none (the CPU), its ranks sum on the host, or its steps have
 * more than TRAIN_GRAPH_MAX_BATCHES batches. */
const char *train_graph_unsupported(const Trainer *t);

/* A graph for t's steps, not captured yet; NULL with an error. */
TrainGraph *train_graph_new(const Trainer *t);

/* Frees g after waiting for its replays; the parameters' .grad are kept. */
void train_graph_free(TrainGraph *g);
/* Before the host reads the oldest step's numbers in a data-parallel
 * step: the group's watchdog waits for that step (its replay alone, the
 * next one still queued), so a stuck peer fails the step instead of the
 * read hanging; g's own waits for a replay are watched too. On that
 * failure g is abandoned: free then waits for none of its replays, and
 * leaves the graphs and the host memory their numbers are copied to. 0,
 * or -1 with an error. */
int train_graph_watch(TrainGraph *g, Trainer *t);

/* The step's batch i (x, y on the graph's device; i below the trainer's
 * accumulate_steps) copied into the graph's inputs, which the first step
 * makes in its shapes: 1, 0 when the graph's batch i has another shape
 * (the caller runs the step op by op), -1 with an error. */
int train_graph_stage(TrainGraph *g, int i, Tensor *x, Tensor *y);

/* Runs the training step of the batches staged by the graph, capturing it
 * first with `body` (once per batch, then clipping) when it has not been:
 * 1 when the step, its optimizer update included, is queued and its
 * numbers are on their way (train_graph_read); 0 when the caller must run
 * it one by one: the capture failed (then *why, n bytes, says why, and g
 * is off for good); -1 with an error. `ignore` is the label accuracy
 * skips. */
int train_graph_step(TrainGraph *g, Trainer *t, TrainGraphBody body, int64_t ignore, char *why,
                     size_t n);

/* Why the optimizer's update stopped being captured (its capture failed;
 * the update runs op by op beside the graph), the first time it is asked
 * after that happened; NULL otherwise. */
const char *train_graph_update_note(TrainGraph *g);

/* Whether g is off (a capture failed), and whether it holds a step. */
bool train_graph_off(const TrainGraph *g);
bool train_graph_captured(const TrainGraph *g);

/* Steps queued whose numbers are not read yet (0, 1 or 2). */
int train_graph_pending(const TrainGraph *g);

/* Waits for the numbers of the oldest step queued and not read: 0, or -1
 * with an error (a failure of anything queued before them). */
int train_graph_read(TrainGraph *g, TrainGraphNumbers *out);

#endif
