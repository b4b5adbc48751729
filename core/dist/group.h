/* group.h - the ranks of one data-parallel job, as torch.distributed's
 * process group: who this process is (rank of world) and the collectives
 * the trainer needs, behind a table of function pointers that a
 * communication library fills in (dist/mpi.c: Open MPI over shared memory
 * or a network). core/ never calls a library itself.
 *
 * Collectives take host memory. Every rank calls them in the same order
 * with the same counts (MPI's rule); the trainer keeps that order because
 * all ranks run the same graph. A NULL group, or a world of one, is the
 * single process: every helper below is then a no-op that succeeds.
 *
 * DistRows says which rows of a global batch this rank holds: DDP with
 * PyTorch's DistributedSampler hands rank r the samples r, r + world, ...
 * of the shuffled order, so in batch k it holds rows first, first +
 * stride, ... of the k-th global batch of `total` rows. Dropout draws a
 * row's mask from its global position, so masks do not depend on the
 * number of ranks.
 */
#ifndef TRAIND_CORE_DIST_GROUP_H
#define TRAIND_CORE_DIST_GROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct DistGroup DistGroup;
typedef struct DistRequest DistRequest; /* an all-reduce in flight */

struct DistGroup {
    const char *backend; /* "mpi" */
    int rank, world;
    /* buf[0..count) summed over the ranks, in place. dtype: float32,
     * float64 or int64. 0, or -1 with an error. */
    int (*all_reduce)(DistGroup *g, void *buf, int64_t count, DType dtype);
    /* The same, started: *req is finished by wait (which frees it). */
    int (*all_reduce_start)(DistGroup *g, void *buf, int64_t count, DType dtype, DistRequest **req);
    /* Lets the library progress requests in flight (MPI moves a
     * non-blocking collective only inside its own calls). */
    void (*progress)(DistGroup *g, DistRequest *req);
    int (*wait)(DistGroup *g, DistRequest *req);
    /* buf on a GPU, summed over the ranks: ordered after the work queued
     * on the device so far, beside the work queued after it (the library's
     * own stream), so a gradient bucket's reduction overlaps the rest of
     * the backward pass; the host does not wait. join_device orders the
     * device's later work after every all-reduce started and, with
     * `wait`, waits for them as a watchdog: a failure the library finds,
     * or a timeout, is the step's error instead of a hang. NULL where the
     * library has none: the reducer then stages the gradients through
     * host memory. */
    int (*all_reduce_device)(DistGroup *g, void *buf, int64_t count, DType dtype, Device device);
    int (*join_device)(DistGroup *g, Device device, bool wait);
    /* A point of the device's work so far (a number, or -1 with an error),
     * and the watchdog's wait (join_device's, with `wait`) for the work
     * before it: a CUDA graph's step is watched alone while the next one
     * is queued. NULL where join_device is, or where the library has no
     * marks (the caller then waits for all, by join_device). */
    int (*mark_device)(DistGroup *g, Device device);
    int (*watch_device)(DistGroup *g, Device device, int mark);
    /* root's bytes into every rank's buf. */
    int (*broadcast)(DistGroup *g, void *buf, int64_t bytes, int root);
    /* Ends every rank's process: one rank's failure would otherwise leave
     * the others waiting in a collective forever. */
    void (*abort)(DistGroup *g, int code);
    void *impl;
    /* Every collective runs even in a world of one: checks the whole path
     * on one device (TRAIND_DIST_ONE_RANK=1, gpu/check.sh's NCCL check). */
    bool always;
};

typedef struct {
    int64_t first, stride, total;
} DistRows;

/* True for a group of more than one rank (or one that runs its
 * collectives always). */
bool dist_active(const DistGroup *g);
int dist_rank(const DistGroup *g);  /* 0 without a group */
int dist_world(const DistGroup *g); /* 1 without a group */

/* g->all_reduce / broadcast, or nothing for the single process. */
int dist_all_reduce(DistGroup *g, void *buf, int64_t count, DType dtype);
int dist_broadcast(DistGroup *g, void *buf, int64_t bytes, int root);

/* Every rank's copy of t (any device) made rank root's. */
int dist_broadcast_tensor(DistGroup *g, Tensor *t, int root);

/* The rows of a global batch of `total` samples that `rank` of `world`
 * holds, and how many: interleaved as DistributedSampler's order. */
DistRows dist_rows_of(int64_t total, int rank, int world);
int64_t dist_rows_count(const DistRows *r);

#endif
