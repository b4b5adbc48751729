/* reducer.h - the gradient all-reduce of a data-parallel step, as DDP's
 * Reducer does it.
 *
 * Parameters are grouped into buckets of about DIST_BUCKET_BYTES in
 * reverse registration order (the order a backward pass finishes them). A
 * bucket's all-reduce starts as soon as the last of its gradients is
 * final (an autograd leaf hook) and every earlier bucket has started, so
 * the reduction of the last layers overlaps the backward of the first,
 * and all ranks start their buckets in the same order. The gradients are
 * summed: each rank's loss was already weighted by its share of the
 * global batch.
 *
 * A parameter may have no gradient on some rank (a rank with no samples in
 * a short last batch skips its backward): each bucket carries a count of
 * the ranks that had one, and only a parameter that no rank touched keeps
 * a NULL .grad, as in a one-process step.
 */
#ifndef TRAIND_CORE_DIST_REDUCER_H
#define TRAIND_CORE_DIST_REDUCER_H

#include "core/dist/group.h"
#include "core/tensor.h"

#define DIST_BUCKET_BYTES ((int64_t)25 << 20)

typedef struct DistReducer DistReducer;

/* Over the n float32 parameters (borrowed; the optimizer's). NULL with an
 * error. */
DistReducer *dist_reducer_new(DistGroup *g, Tensor *const *params, int n, int64_t bucket_bytes);
void dist_reducer_free(DistReducer *r);

/* Before the step's last backward: buckets start as their gradients are
 * done. */
void dist_reducer_arm(DistReducer *r);
/* After it: starts what has not started, waits for every bucket and puts
 * the sums in each parameter's .grad. 0, or -1 with an error. */
int dist_reducer_finish(DistReducer *r);
/* The same queued on the device, for a step a CUDA graph captures: the
 * device's later work waits for the buckets, the host does not, and the
 * sums go to the parameters this rank has a gradient of (nothing is read
 * back). Device buckets only. */
int dist_reducer_finish_queued(DistReducer *r);
/* After arm, when the step will not finish (its capture failed): the
 * hooks off. */
void dist_reducer_disarm(DistReducer *r);
/* A point of the device's work so far (a mark), and the watchdog's wait on
 * the host for the work before it alone (a graph's step, while the next is
 * queued; 0, or -1 with an error). A mark of -1 (the group has none, or
 * could not make one) waits for every reduction queued so far and the
 * device's work before it. */
int dist_reducer_mark(DistReducer *r);
int dist_reducer_watch(DistReducer *r, int mark);

/* Buckets the parameters fall into, and the size they were cut at (for
 * tests and logs). */
int dist_reducer_num_buckets(const DistReducer *r);
int64_t dist_reducer_bucket_bytes(const DistReducer *r);

#endif
