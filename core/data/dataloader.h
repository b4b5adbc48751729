/* dataloader.h - batches from a Dataset, as torch.utils.data.DataLoader.
 *
 * Each epoch visits the samples in file order, or with shuffle in a fresh
 * permutation drawn from the loader's Rng (Fisher-Yates with rng_below): the
 * same seed gives the same sequence of epoch orders, and every epoch draws a
 * new one because the Rng runs on across epochs, as a DataLoader with a
 * seeded generator does. Batches are cut in that order; the last, partial
 * one is returned unless drop_last. Each Batch holds new contiguous tensors
 * (rows gathered, then the transforms applied to the whole batch) on the
 * loader's device: a GPU loader gathers each batch into page-locked memory
 * and uploads it after its transforms (from the transforms' output, in
 * plain memory, when there are any), from the prefetch thread beside the
 * training's kernels (tensor_upload), so the next batch is on the GPU
 * before the trainer asks for it.
 *
 * With prefetch, one background thread prepares the next batches (a ring of
 * `prefetch` slots) while the caller trains on the current one; batches come
 * out identical to those made without it. begin_epoch, end_epoch and free
 * stop it cleanly, so a job may stop mid-epoch.
 *
 * Resuming: DataLoaderState {Rng at the start of the epoch, epoch, next
 * batch} is what a checkpoint saves; dataloader_restore regenerates that
 * epoch's order and continues from that batch, and the following epochs then
 * draw exactly the orders the interrupted run would have.
 *
 * Threads: a DataLoader is driven by one thread (the trainer's); the
 * prefetch thread only reads the dataset and the transforms.
 */
#ifndef TRAIND_CORE_DATA_DATALOADER_H
#define TRAIND_CORE_DATA_DATALOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/data/augment.h"
#include "core/data/dataset.h"
#include "core/data/transforms.h"
#include "core/dist/group.h"
#include "core/rng.h"

#define DATALOADER_MAX_PREFETCH 8

typedef struct {
    int64_t batch_size; /* >= 1 */
    bool shuffle;
    uint64_t seed;
    bool drop_last;
    int prefetch; /* batches prepared ahead by a background thread; 0: none. 2 is plenty */
    Device device; /* where batches are delivered; zeroed: the CPU */
    /* Per-sample image transforms (augment.h) before `transforms`, or NULL;
     * eval: their deterministic form (a validation loader). */
    const AugmentList *augment;
    bool eval;
    /* Threads that gather, decode and augment a batch (torch's num_workers,
     * as threads of the prefetch side); 0: the job's OpenMP threads. */
    int num_workers;
} DataLoaderOptions;

typedef struct {
    Tensor *inputs;  /* after the transforms */
    Tensor *targets; /* gathered rows of the dataset's targets */
    int64_t index;   /* of the batch within its epoch, from 0 */
    int64_t size;    /* samples in it (batch_size, or fewer for the last) */
    int epoch;
    DistRows rows; /* which rows of the global batch these are: all of it
                      (first 0, stride 1) unless the loader is a shard */
} Batch;

void batch_release(Batch *b); /* releases the tensors and zeroes *b */

typedef struct {
    Rng rng;       /* as it was before the epoch's shuffle */
    int epoch;
    int64_t batch; /* the next batch dataloader_next would return */
} DataLoaderState;

typedef struct DataLoader DataLoader;

/* The loader keeps references to the dataset's tensors (or its producer)
 * and its own copy of the transforms (NULL: none), so neither has to
 * outlive it. */
DataLoader *dataloader_new(const Dataset *ds, const DataLoaderOptions *opts,
                           const TransformList *transforms);
/* Stops and joins the prefetch thread, releases every pending batch. */
void dataloader_free(DataLoader *dl);

/* Delivers batches on `device` from the next begin_epoch on; ends the
 * current epoch, as dataloader_end_epoch. For a job whose device is chosen
 * after its loaders are made. -1 with an error when the device has no
 * backend. */
int dataloader_set_device(DataLoader *dl, Device device);

/* Makes the loader rank `rank`'s shard of a data-parallel job of `world`
 * ranks: every rank draws the same epoch orders and cuts the same global
 * batches of batch_size, and each Batch then holds only the rows
 * rank, rank + world, ... of its global batch (DistributedSampler's
 * interleaving), so the ranks' shards of batch k together are exactly the
 * one-process batch k. Batch counts and positions stay the global ones, so
 * a checkpoint resumes on any number of ranks. An epoch in progress goes
 * on from the batch it stood at. */
int dataloader_set_shard(DataLoader *dl, int rank, int world);

int64_t dataloader_num_batches(const DataLoader *dl);
int64_t dataloader_batch_size(const DataLoader *dl);
int64_t dataloader_num_samples(const DataLoader *dl);

/* Starts epoch `epoch`: draws its order (with shuffle) and starts
 * prefetching batch 0. Any batches left from the previous epoch are
 * dropped. */
int dataloader_begin_epoch(DataLoader *dl, int epoch);
/* The same, skipping to batch `first` (0..num_batches): for resuming. */
int dataloader_begin_epoch_at(DataLoader *dl, int epoch, int64_t first);

/* The next batch of the epoch into *out: returns 1, or 0 at the end of the
 * epoch (out zeroed), or -1 with an error. */
int dataloader_next(DataLoader *dl, Batch *out);

/* Stops the epoch early: prefetching stops, pending batches are released.
 * dataloader_next then returns 0 until the next begin_epoch. */
void dataloader_end_epoch(DataLoader *dl);

/* Where the loader stands, for a checkpoint; and back to it. */
void dataloader_state(const DataLoader *dl, DataLoaderState *out);
int dataloader_restore(DataLoader *dl, const DataLoaderState *st);

/* The sample order of the current epoch (num_samples indices; valid until
 * the next begin_epoch). For tests and debugging. */
const int64_t *dataloader_order(const DataLoader *dl);

#endif
