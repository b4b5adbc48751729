/* train_dist.h - what a data-parallel run adds to the training loop
 * (core/train.c's side of it; not for other callers).
 *
 * Each rank trains on its shard of every global batch (the loaders'
 * dataloader_set_shard) with the same model, which starts as rank 0's.
 * For one batch the ranks agree on the global mean loss and on each rank's
 * share of it: rank r's local mean loss is scaled by d_r / sum d before its
 * backward, d being what the loss divides by (labelled targets of a class
 * loss, all target values otherwise), so that the summed gradients are
 * the gradient of the global batch's mean loss, as one process computes
 * it. The gradients are summed by the bucketed reducer (core/dist), and
 * BatchNorm and Dropout see the whole batch through module_set_dist.
 */
#ifndef TRAIND_CORE_TRAIN_DIST_H
#define TRAIND_CORE_TRAIN_DIST_H

#include "core/train.h"

/* A batch's loss and counts: one rank's, or the global batch's. */
typedef struct {
    double loss;     /* mean over the batch (NaN for an empty share) */
    double weight;   /* this rank's share of the global mean (1 in one process) */
    int64_t samples; /* rows */
    int64_t correct, labelled;
} TrainBatchTotals;

/* Sets the run up as one rank of t->dist (shards, model, reducer), after
 * checking that it can be: -1 with an error. A no-op in one process. */
int train_dist_begin(Trainer *t);
void train_dist_end(Trainer *t);

/* What the loss of this rank's share of a batch divides by. */
int train_dist_denominator(Tensor *target, int64_t ignore, double *out);

/* The global batch's totals from each rank's *local (its loss, with
 * `denominator`); *local itself in one process. */
int train_dist_reduce_batch(Trainer *t, const TrainBatchTotals *local, double denominator,
                            TrainBatchTotals *global);

/* Whether any rank's `local` holds (a rank asked to stop), the same answer
 * on every rank, in *any. 0, or -1 with the error when the ranks could not
 * be asked (a failed collective: a peer gone, NCCL's error): a failure of
 * the run, never taken for a stop. */
int train_dist_any(Trainer *t, bool local, bool *any);

#endif
