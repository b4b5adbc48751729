/* dataloader.c - epoch orders, batch gathering and the prefetch thread; see
 * dataloader.h.
 *
 * make_batch() is the whole job of producing batch k: gather the rows named
 * by order[k*B .. k*B+B) into new tensors (copied from a dense dataset's
 * tensors, or made by a lazy one's producer), then apply the transforms. Without
 * prefetch dataloader_next calls it directly; with prefetch a worker thread
 * calls it ahead of the consumer and parks results in a small ring. Both
 * paths run the same function on the same inputs, hence identical batches.
 *
 * Synchronisation is one mutex and three condition variables:
 *   cv_work   the worker waits for room in the ring or a new epoch;
 *   cv_ready  the consumer waits for a batch;
 *   cv_idle   begin/end_epoch wait for the worker to finish the batch it is
 *             making, so the epoch order can be rewritten while nobody reads
 *             it (the worker only reads order, dataset and transforms, and
 *             only while `busy`).
 * A generation counter, bumped whenever the epoch changes, lets a batch
 * finished for an epoch that has since been dropped be thrown away.
 */
#include "core/data/dataloader.h"

#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"

/* dense batches at least this large are gathered in parallel (lazy ones always) */
#define GATHER_PARALLEL_BYTES ((size_t)1 << 20)

typedef struct {
    Batch batch;
    int rc;
    char error[ERROR_MAX]; /* the worker's message: error_get() is per thread */
} Slot;

struct DataLoader {
    Tensor *inputs, *targets;  /* retained from a dense dataset */
    DatasetProducer *producer; /* retained from a lazy one */
    DatasetField input, target; /* one sample's */
    int64_t n, batch_size, num_batches;
    bool shuffle, drop_last;
    size_t input_row, target_row; /* bytes per sample */
    TransformList transforms;
    AugmentList augment;    /* per sample, before the transforms */
    DatasetField augmented; /* one sample after them */
    bool eval;              /* deterministic augmentation */
    uint64_t seed;
    Device device; /* batches are uploaded there; changed only while idle */
    int gather_threads; /* the creating thread's OpenMP budget (a job's share) */
    int rank, world;    /* this loader's rows of each batch (dataloader_set_shard) */

    Rng rng;       /* runs on across epochs */
    Rng epoch_rng; /* before the current epoch's shuffle */
    int64_t *order;
    int epoch;
    int64_t next_batch; /* the next one dataloader_next returns */
    bool epoch_active;

    /* prefetch (only when depth > 0) */
    int depth;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready, cv_idle;
    Slot *ring;
    int head, count;
    int64_t produce_next; /* the next batch the worker makes */
    bool producing, busy, quit;
    uint64_t generation;
};

void batch_release(Batch *b) {
    if (!b) return;
    tensor_release(b->inputs);
    tensor_release(b->targets);
    memset(b, 0, sizeof *b);
}

int64_t dataloader_num_batches(const DataLoader *dl) { return dl->num_batches; }

int64_t dataloader_batch_size(const DataLoader *dl) { return dl->batch_size; }

int64_t dataloader_num_samples(const DataLoader *dl) {
    return dl->drop_last ? dl->num_batches * dl->batch_size : dl->n;
}

const int64_t *dataloader_order(const DataLoader *dl) { return dl->order; }

/* A failure of the threads of a batch: the one at the lowest position
 * is kept, so the error does not depend on which thread ended first. */
typedef struct {
    int64_t at; /* -1: none */
    char msg[ERROR_MAX];
} BatchFailure;

static void batch_failure_keep(BatchFailure *f, int64_t at, const char *prefix) {
#pragma omp critical(dataloader_batch_failure)
    if (f->at < 0 || at < f->at) {
        f->at = at;
        snprintf(f->msg, sizeof f->msg, "%s%s", prefix, error_get()); /* error_get is per thread */
    }
}

/* A lazy dataset's rows: the producer called on one slice of the batch
 * per thread, whatever the batch's bytes (making a sample, decoding an
 * image, costs more than copying it). 0, or -1 with the first failing
 * slice's error. */
static int gather_lazy(const DataLoader *dl, const int64_t *idx, int64_t size, char *xd,
                       char *yd) {
    int64_t slices = dl->gather_threads;
    if (slices > size) slices = size;
    BatchFailure failed = {.at = -1};
#pragma omp parallel for schedule(static) num_threads((int)slices) if (slices > 1)
    for (int64_t c = 0; c < slices; c++) {
        int64_t a = size * c / slices, b = size * (c + 1) / slices;
        if (dl->producer->ops->gather(dl->producer, idx + a, b - a, xd + (size_t)a * dl->input_row,
                                      yd + (size_t)a * dl->target_row) != 0)
            batch_failure_keep(&failed, c, "");
    }
    return failed.at < 0 ? 0 : error_set("%s", failed.msg);
}

/* Rows idx[0..size) of the dataset into xd and yd. */
static int gather_rows(const DataLoader *dl, const int64_t *idx, int64_t size, char *xd,
                       char *yd) {
    if (dl->producer) return gather_lazy(dl, idx, size, xd, yd);
    const char *xs = tensor_data(dl->inputs), *ys = tensor_data(dl->targets);
    /* A large batch is gathered by several threads: one thread copying
     * 16 MB of scattered rows takes longer than a GPU step on them. The
     * prefetch thread is not the job's, so the job's thread budget is
     * passed on explicitly. */
#pragma omp parallel for schedule(static) num_threads(dl->gather_threads) \
    if ((size_t)size * dl->input_row >= GATHER_PARALLEL_BYTES)
    for (int64_t i = 0; i < size; i++) {
        memcpy(xd + (size_t)i * dl->input_row, xs + (size_t)idx[i] * dl->input_row, dl->input_row);
        memcpy(yd + (size_t)i * dl->target_row, ys + (size_t)idx[i] * dl->target_row,
               dl->target_row);
    }
    return 0;
}

static size_t field_bytes(const DatasetField *f) {
    size_t n = dtype_size(f->dtype);
    for (int i = 0; i < f->ndim; i++) n *= (size_t)f->shape[i];
    return n;
}

static void batch_shape(const DatasetField *f, int64_t size, int64_t *shape) {
    shape[0] = size;
    memcpy(shape + 1, f->shape, (size_t)f->ndim * sizeof *shape);
}

/* A new batch-sized tensor of one sample field, [size, field...]. */
static Tensor *batch_tensor(const DataLoader *dl, const DatasetField *f, int64_t size) {
    int64_t shape[TENSOR_MAX_DIMS];
    batch_shape(f, size, shape);
    /* gathered into page-locked memory when the batch goes to a GPU */
    return tensor_empty_pinned(f->ndim + 1, shape, f->dtype, dl->device);
}

/* The same in plain memory: the rows augmentation reads. */
static Tensor *batch_cpu_tensor(const DatasetField *f, int64_t size) {
    int64_t shape[TENSOR_MAX_DIMS];
    batch_shape(f, size, shape);
    return tensor_empty(f->ndim + 1, shape, f->dtype, DEVICE_CPU_INIT);
}

/* Each gathered sample of raw [size, input...] through the per-sample
 * transforms into x, spread over the loader's threads. */
static int augment_rows(const DataLoader *dl, const int64_t *idx, int64_t size, int epoch,
                        const Tensor *raw, Tensor *x) {
    size_t in_row = dl->input_row, out_row = field_bytes(&dl->augmented);
    int threads = size > 1 ? dl->gather_threads : 1;
    BatchFailure failed = {.at = -1};
    const char *src = tensor_data(raw);
    char *dst = tensor_data(x);
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads) if (threads > 1)
    for (int64_t i = 0; i < size; i++) {
        if (augment_sample(&dl->augment, dl->seed, epoch, idx[i], !dl->eval, dl->input.dtype,
                           dl->input.ndim, dl->input.shape, src + (size_t)i * in_row,
                           dst + (size_t)i * out_row) != 0) {
            char prefix[48];
            snprintf(prefix, sizeof prefix, "sample %lld: ", (long long)idx[i]);
            batch_failure_keep(&failed, i, prefix);
        }
    }
    return failed.at < 0 ? 0 : error_set("%s", failed.msg);
}

/* The batch's input rows: gathered, and augmented when the loader has
 * per-sample transforms. A new reference, or NULL with an error. */
static Tensor *gather_inputs(const DataLoader *dl, const int64_t *idx, int64_t size, int epoch,
                             Tensor *y) {
    bool augment = dl->augment.count > 0;
    Tensor *x = batch_tensor(dl, augment ? &dl->augmented : &dl->input, size);
    Tensor *rows = augment ? batch_cpu_tensor(&dl->input, size) : tensor_retain(x);
    int rc = x && rows ? gather_rows(dl, idx, size, tensor_data(rows), tensor_data(y)) : -1;
    if (rc == 0 && augment) rc = augment_rows(dl, idx, size, epoch, rows, x);
    tensor_release(rows);
    if (rc == 0) return x;
    tensor_release(x);
    return NULL;
}

/* This rank's samples of the global batch that starts at order[start]
 * (its rows, as dist_rows_of gives them): the order itself for one rank,
 * else gathered into *buf (freed by the caller). */
static const int64_t *shard_indices(const DataLoader *dl, int64_t start, const DistRows *rows,
                                    int64_t size, int64_t **buf) {
    *buf = NULL;
    if (dl->world == 1) return dl->order + start;
    if (!(*buf = malloc((size_t)size * sizeof **buf))) return error_set("out of memory"), NULL;
    for (int64_t j = 0; j < size; j++)
        (*buf)[j] = dl->order[start + rows->first + j * rows->stride];
    return *buf;
}

/* Batch k of the current epoch (this rank's rows of it). Reads only
 * immutable state and `order`. A rank whose share of a short last batch
 * is empty gets a Batch of size 0 without tensors. */
static int make_batch(const DataLoader *dl, int64_t k, int epoch, Batch *out) {
    memset(out, 0, sizeof *out);
    int64_t start = k * dl->batch_size;
    int64_t total = dl->n - start < dl->batch_size ? dl->n - start : dl->batch_size;
    DistRows rows = dist_rows_of(total, dl->rank, dl->world);
    int64_t size = dist_rows_count(&rows), *buf = NULL;
    out->index = k;
    out->epoch = epoch;
    out->rows = rows;
    if (size == 0) return 0;
    const int64_t *idx = shard_indices(dl, start, &rows, size, &buf);
    Tensor *y = idx ? batch_tensor(dl, &dl->target, size) : NULL;
    Tensor *x = y ? gather_inputs(dl, idx, size, epoch, y) : NULL;
    free(buf);
    if (!x || !y) {
        error_prefix("batch %lld of epoch %d", (long long)k, epoch);
        goto fail;
    }
    out->inputs = transform_list_apply(&dl->transforms, x);
    tensor_release(x);
    x = NULL;
    if (!out->inputs) {
        error_prefix("batch %lld of epoch %d", (long long)k, epoch);
        goto fail;
    }
    out->targets = y;
    y = NULL;
    if (dl->device.type != DEVICE_CPU) {
        Tensor *xd = tensor_upload(out->inputs, dl->device);
        Tensor *yd = xd ? tensor_upload(out->targets, dl->device) : NULL;
        tensor_release(out->inputs);
        tensor_release(out->targets);
        out->inputs = xd;
        out->targets = yd;
        if (!yd) {
            error_prefix("batch %lld of epoch %d to the device", (long long)k, epoch);
            goto fail;
        }
    }
    out->size = size;
    return 0;
fail:
    tensor_release(x);
    tensor_release(y);
    batch_release(out);
    return -1;
}

/* ---- the prefetch thread ---- */

static void *worker_main(void *arg) {
    DataLoader *dl = arg;
    pthread_mutex_lock(&dl->mu);
    for (;;) {
        while (!dl->quit && !(dl->producing && dl->produce_next < dl->num_batches &&
                              dl->count < dl->depth))
            pthread_cond_wait(&dl->cv_work, &dl->mu);
        if (dl->quit) break;
        int64_t k = dl->produce_next++;
        uint64_t generation = dl->generation;
        int epoch = dl->epoch;
        dl->busy = true;
        pthread_mutex_unlock(&dl->mu);

        Slot slot;
        slot.rc = make_batch(dl, k, epoch, &slot.batch);
        if (slot.rc != 0) snprintf(slot.error, sizeof slot.error, "%s", error_get());

        pthread_mutex_lock(&dl->mu);
        dl->busy = false;
        pthread_cond_broadcast(&dl->cv_idle);
        if (generation != dl->generation) { /* the epoch was dropped meanwhile */
            batch_release(&slot.batch);
            continue;
        }
        dl->ring[(dl->head + dl->count) % dl->depth] = slot;
        dl->count++;
        pthread_cond_signal(&dl->cv_ready);
    }
    pthread_mutex_unlock(&dl->mu);
    return NULL;
}

/* Stops the worker's current epoch and drops what it made. Afterwards the
 * worker is waiting and will not touch `order` until `producing` is set. */
static void stop_producing(DataLoader *dl) {
    if (dl->depth == 0) return;
    pthread_mutex_lock(&dl->mu);
    dl->generation++;
    dl->producing = false;
    while (dl->busy) pthread_cond_wait(&dl->cv_idle, &dl->mu);
    while (dl->count > 0) {
        batch_release(&dl->ring[dl->head].batch);
        dl->head = (dl->head + 1) % dl->depth;
        dl->count--;
    }
    dl->head = 0;
    pthread_mutex_unlock(&dl->mu);
}

/* ---- public ---- */

DataLoader *dataloader_new(const Dataset *ds, const DataLoaderOptions *opts,
                           const TransformList *transforms) {
    if (!ds || !opts) return error_set("dataloader: dataset and options needed"), NULL;
    if (opts->batch_size < 1)
        return error_set("dataloader: batch_size must be >= 1, not %lld",
                         (long long)opts->batch_size), NULL;
    if (opts->prefetch < 0 || opts->prefetch > DATALOADER_MAX_PREFETCH)
        return error_set("dataloader: prefetch must be 0..%d, not %d", DATALOADER_MAX_PREFETCH,
                         opts->prefetch), NULL;
    if (ds->n < 1) return error_set("dataloader: the dataset is empty"), NULL;
    DataLoader *dl = calloc(1, sizeof *dl);
    if (!dl) return error_set("dataloader: out of memory"), NULL;
    if (ds->producer)
        dl->producer = dataset_producer_retain(ds->producer);
    else {
        dl->inputs = tensor_retain(ds->inputs);
        dl->targets = tensor_retain(ds->targets);
    }
    dl->input = ds->input;
    dl->target = ds->target;
    dl->n = ds->n;
    dl->batch_size = opts->batch_size;
    dl->shuffle = opts->shuffle;
    dl->drop_last = opts->drop_last;
    dl->device = opts->device;
    dl->seed = opts->seed;
    dl->eval = opts->eval;
    dl->gather_threads = 1;
    dl->world = 1;
#ifdef _OPENMP
    dl->gather_threads = omp_get_max_threads();
#endif
    if (opts->num_workers > 0) dl->gather_threads = opts->num_workers;
    dl->augmented = dl->input;
    if (opts->augment) {
        dl->augment = *opts->augment;
        if (augment_list_output(&dl->augment, 0, dl->input.ndim, dl->input.shape,
                                dl->augmented.shape) != 0) {
            error_prefix("dataloader");
            goto fail;
        }
    }
    if (dl->device.type != DEVICE_CPU && !backend_for(dl->device)) {
        error_prefix("dataloader");
        goto fail;
    }
    dl->num_batches = opts->drop_last ? dl->n / dl->batch_size
                                      : (dl->n + dl->batch_size - 1) / dl->batch_size;
    dl->input_row = field_bytes(&dl->input);
    dl->target_row = field_bytes(&dl->target);
    rng_init(&dl->rng, opts->seed);
    dl->epoch_rng = dl->rng;
    dl->order = malloc((size_t)dl->n * sizeof *dl->order);
    if (!dl->order) {
        error_set("dataloader: out of memory for the order of %lld samples", (long long)dl->n);
        goto fail;
    }
    for (int64_t i = 0; i < dl->n; i++) dl->order[i] = i;
    if (transforms && transform_list_copy(&dl->transforms, transforms) != 0) goto fail;

    if (opts->prefetch > 0) {
        dl->ring = calloc((size_t)opts->prefetch, sizeof *dl->ring);
        if (!dl->ring) {
            error_set("dataloader: out of memory");
            goto fail;
        }
        pthread_mutex_init(&dl->mu, NULL);
        pthread_cond_init(&dl->cv_work, NULL);
        pthread_cond_init(&dl->cv_ready, NULL);
        pthread_cond_init(&dl->cv_idle, NULL);
        int rc = pthread_create(&dl->thread, NULL, worker_main, dl);
        if (rc != 0) {
            pthread_mutex_destroy(&dl->mu);
            pthread_cond_destroy(&dl->cv_work);
            pthread_cond_destroy(&dl->cv_ready);
            pthread_cond_destroy(&dl->cv_idle);
            error_set("dataloader: cannot start the prefetch thread: %s", strerror(rc));
            goto fail;
        }
        dl->depth = opts->prefetch;
    }
    return dl;
fail:
    dataloader_free(dl);
    return NULL;
}

void dataloader_free(DataLoader *dl) {
    if (!dl) return;
    if (dl->depth > 0) {
        stop_producing(dl);
        pthread_mutex_lock(&dl->mu);
        dl->quit = true;
        pthread_cond_broadcast(&dl->cv_work);
        pthread_mutex_unlock(&dl->mu);
        pthread_join(dl->thread, NULL);
        pthread_mutex_destroy(&dl->mu);
        pthread_cond_destroy(&dl->cv_work);
        pthread_cond_destroy(&dl->cv_ready);
        pthread_cond_destroy(&dl->cv_idle);
    }
    free(dl->ring);
    free(dl->order);
    transform_list_free(&dl->transforms);
    tensor_release(dl->inputs);
    tensor_release(dl->targets);
    dataset_producer_release(dl->producer);
    free(dl);
}

int dataloader_begin_epoch_at(DataLoader *dl, int epoch, int64_t first) {
    if (first < 0 || first > dl->num_batches)
        return error_set("dataloader: cannot start epoch %d at batch %lld of %lld", epoch,
                         (long long)first, (long long)dl->num_batches);
    stop_producing(dl); /* from here the worker leaves `order` alone */
    dl->epoch_rng = dl->rng;
    for (int64_t i = 0; i < dl->n; i++) dl->order[i] = i;
    if (dl->shuffle) /* Fisher-Yates, from the back as Knuth gives it */
        for (int64_t i = dl->n - 1; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&dl->rng, (uint64_t)i + 1);
            int64_t tmp = dl->order[i];
            dl->order[i] = dl->order[j];
            dl->order[j] = tmp;
        }
    dl->epoch = epoch;
    dl->next_batch = first;
    dl->epoch_active = true;
    if (dl->depth > 0) {
        pthread_mutex_lock(&dl->mu);
        dl->produce_next = first;
        dl->producing = true;
        pthread_cond_signal(&dl->cv_work);
        pthread_mutex_unlock(&dl->mu);
    }
    return 0;
}

int dataloader_begin_epoch(DataLoader *dl, int epoch) {
    return dataloader_begin_epoch_at(dl, epoch, 0);
}

int dataloader_next(DataLoader *dl, Batch *out) {
    memset(out, 0, sizeof *out);
    if (!dl->epoch_active || dl->next_batch >= dl->num_batches) return 0;
    if (dl->depth == 0) {
        int rc = make_batch(dl, dl->next_batch, dl->epoch, out);
        dl->next_batch++;
        return rc == 0 ? 1 : -1;
    }
    pthread_mutex_lock(&dl->mu);
    /* The worker is making next_batch or has it ready: count == 0 means busy. */
    while (dl->count == 0) pthread_cond_wait(&dl->cv_ready, &dl->mu);
    Slot *slot = &dl->ring[dl->head];
    int rc = slot->rc;
    *out = slot->batch;
    memset(&slot->batch, 0, sizeof slot->batch);
    if (rc != 0) error_set("%s", slot->error);
    dl->head = (dl->head + 1) % dl->depth;
    dl->count--;
    dl->next_batch++;
    pthread_cond_signal(&dl->cv_work);
    pthread_mutex_unlock(&dl->mu);
    return rc == 0 ? 1 : -1;
}

void dataloader_end_epoch(DataLoader *dl) {
    stop_producing(dl);
    dl->epoch_active = false;
}

int dataloader_set_shard(DataLoader *dl, int rank, int world) {
    if (world < 1 || rank < 0 || rank >= world)
        return error_set("dataloader: rank %d of a world of %d", rank, world);
    /* an epoch in progress (a resumed run's) goes on where it stood */
    bool active = dl->epoch_active;
    DataLoaderState st;
    dataloader_state(dl, &st);
    dataloader_end_epoch(dl);
    dl->rank = rank;
    dl->world = world;
    return active ? dataloader_restore(dl, &st) : 0;
}

int dataloader_set_device(DataLoader *dl, Device device) {
    if (device.type != DEVICE_CPU && !backend_for(device)) return error_prefix("dataloader");
    dataloader_end_epoch(dl); /* the worker is idle: it reads device only while busy */
    dl->device = device;
    return 0;
}

void dataloader_state(const DataLoader *dl, DataLoaderState *out) {
    out->rng = dl->epoch_rng;
    out->epoch = dl->epoch;
    out->batch = dl->next_batch;
}

int dataloader_restore(DataLoader *dl, const DataLoaderState *st) {
    Rng saved = dl->rng;
    dl->rng = st->rng;
    if (dataloader_begin_epoch_at(dl, st->epoch, st->batch) != 0) {
        dl->rng = saved;
        return -1;
    }
    return 0;
}
