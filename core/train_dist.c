/* train_dist.c - a data-parallel run's side of the training loop; see
 * train_dist.h. */
#include "core/train_dist.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/dist/reducer.h"
#include "core/error.h"
#include "core/tensor_dict.h"

/* A BatchNorm anywhere in the tree that takes its batch's statistics in
 * that mode: its forward joins a collective (in eval, only one without
 * running stats). */
static bool batch_stats_forward(const Module *m, bool training) {
    if (strncmp(module_type(m), "BatchNorm", 9) == 0 && nn_batch_norm_batch_stats(m, training))
        return true;
    for (int i = 0; i < m->n_children; i++)
        if (batch_stats_forward(m->children[i], training)) return true;
    return false;
}

/* A rank with no rows in a loader's short last batch skips its forward;
 * a BatchNorm's collectives (collective: the model's forward has them in
 * this loader's mode) would then wait for it forever. */
static int check_last_batch(const Trainer *t, const DataLoader *dl, const char *which,
                            bool collective) {
    int world = dist_world(t->dist);
    int64_t n = dataloader_num_samples(dl), batch = dataloader_batch_size(dl);
    int64_t last = n % batch ? n % batch : batch;
    if (last >= world || !collective) return 0;
    return error_set("data parallel: the %s set's last batch holds %" PRId64 " samples (%" PRId64
                     " samples in batches of %" PRId64 "), fewer than the %d ranks, and the "
                     "model's BatchNorm needs rows on every rank; choose a batch_size that "
                     "leaves at least %d",
                     which, last, n, batch, world, world);
}

/* Every parameter and buffer as rank 0 has it (DDP's start). */
static int broadcast_model(Trainer *t) {
    TensorDict sd;
    tensor_dict_init(&sd);
    int rc = module_state_dict(t->model, &sd);
    for (int i = 0; rc == 0 && i < sd.count; i++)
        rc = dist_broadcast_tensor(t->dist, sd.tensors[i], 0);
    tensor_dict_free(&sd);
    return rc;
}

int train_dist_begin(Trainer *t) {
    if (!dist_active(t->dist)) return 0;
    int rank = dist_rank(t->dist), world = dist_world(t->dist);
    t->dist_collective_forward = batch_stats_forward(t->model, true);
    int64_t batch = dataloader_batch_size(t->train);
    if (batch % world != 0)
        return error_set("data parallel: batch_size %" PRId64 " (the global batch) does not divide "
                         "by the %d ranks (%" PRId64 " = %d x %" PRId64 " + %" PRId64 "); choose "
                         "a multiple of %d",
                         batch, world, batch, world, batch / world, batch % world, world);
    if (check_last_batch(t, t->train, "train", t->dist_collective_forward) != 0) return -1;
    if (t->val && check_last_batch(t, t->val, "val", batch_stats_forward(t->model, false)) != 0)
        return -1;
    if (dataloader_set_shard(t->train, rank, world) != 0) return -1;
    if (t->val && dataloader_set_shard(t->val, rank, world) != 0) return -1;
    t->rows = dist_rows_of(0, rank, world);
    module_set_dist(t->model, t->dist, &t->rows);
    if (broadcast_model(t) != 0) return error_prefix("data parallel: broadcasting the model");
    int64_t bucket = t->bucket_bytes > 0 ? t->bucket_bytes : DIST_BUCKET_BYTES;
    t->reducer = dist_reducer_new(t->dist, t->opt->params, t->opt->n_params, bucket);
    return t->reducer ? 0 : -1;
}

void train_dist_end(Trainer *t) {
    dist_reducer_free(t->reducer);
    t->reducer = NULL;
    module_set_dist(t->model, NULL, NULL);
}

int train_dist_denominator(Tensor *target, int64_t ignore, double *out) {
    if (target->dtype != DTYPE_INT64) {
        *out = (double)tensor_numel(target);
        return 0;
    }
    Tensor *host = tensor_host_contiguous(target);
    if (!host) return -1;
    const int64_t *y = tensor_data(host);
    int64_t n = tensor_numel(host), d = 0;
    for (int64_t i = 0; i < n; i++) d += y[i] != ignore;
    tensor_release(host);
    *out = (double)d;
    return 0;
}

/* A batch of fewer rows than ranks: those without rows ran no forward, and
 * their Dropout layers drew no numbers. Their stream would fall behind
 * the others', and every mask after differ from one process's: every
 * rank takes the offset of those that ran (the same on each of them). */
static int sync_rng(Trainer *t, bool ran) {
    int64_t v[2] = {ran ? (int64_t)t->rng->offset : 0, ran ? 1 : 0};
    if (dist_all_reduce(t->dist, v, 2, DTYPE_INT64) != 0) return -1;
    if (v[1] > 0) t->rng->offset = (uint64_t)(v[0] / v[1]);
    return 0;
}

int train_dist_reduce_batch(Trainer *t, const TrainBatchTotals *local, double denominator,
                            TrainBatchTotals *global) {
    *global = *local;
    if (!dist_active(t->dist)) return 0;
    /* an empty share (or one whose targets are all ignored) adds nothing */
    double sums[5] = {denominator > 0 ? local->loss * denominator : 0, denominator,
                      (double)local->correct, (double)local->labelled, denominator > 0 ? 0 : 1};
    if (dist_all_reduce(t->dist, sums, 5, DTYPE_FLOAT64) != 0) return -1;
    /* A rank without a share skips its backward; a BatchNorm's backward
     * collectives would wait for it. Every rank sees this at once. */
    if (sums[4] > 0 && t->dist_collective_forward && autograd_is_enabled())
        return error_set("data parallel: %.0f of the %d ranks have no labelled target in this "
                         "batch, and the model's BatchNorm needs every rank's backward",
                         sums[4], dist_world(t->dist));
    /* every rank knows the batch's rows, so all or none of them sync */
    if (t->rng && t->rows.total < dist_world(t->dist) && sync_rng(t, local->samples > 0) != 0)
        return -1;
    global->loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    global->weight = sums[1] > 0 ? denominator / sums[1] : 0;
    global->samples = t->rows.total;
    global->correct = (int64_t)sums[2];
    global->labelled = (int64_t)sums[3];
    return 0;
}

int train_dist_any(Trainer *t, bool local, bool *any) {
    *any = local;
    if (!dist_active(t->dist)) return 0;
    int64_t n = local ? 1 : 0;
    if (dist_all_reduce(t->dist, &n, 1, DTYPE_INT64) != 0) return -1;
    *any = n > 0;
    return 0;
}
