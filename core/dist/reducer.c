/* reducer.c - bucketed gradient all-reduce; see reducer.h.
 *
 * A bucket is one float buffer: each parameter's gradient in turn, then
 * one presence count per parameter (1 where this rank has a gradient),
 * reduced together in one collective. It lives in host memory, or, when
 * the parameters are on a GPU and the group reduces device memory (NCCL),
 * on the device, reduced beside the rest of the backward pass; finish
 * joins those reductions before anything reads the sums.
 */
#include "core/dist/reducer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"

typedef struct {
    int first, count;     /* params[order[first .. first + count)] */
    int64_t numel;        /* their values, before the presence counts */
    float *buf;           /* numel + count floats; on a device: the count presences' sums */
    Tensor *dev;          /* on a device: the numel + count floats */
    int pending;          /* gradients not yet final in this backward */
    DistRequest *request; /* in flight */
} Bucket;

struct DistReducer {
    DistGroup *group;
    int n;
    Tensor **params; /* borrowed */
    int *order;      /* bucket position -> parameter, reverse registration order */
    int *bucket_of;  /* parameter -> bucket */
    Bucket *buckets;
    int n_buckets, next_start;
    int64_t bucket_bytes; /* the size buckets were cut at */
    Device device; /* the parameters' */
    bool on_device; /* buckets on the device, reduced there */
    bool armed;
    int error; /* a failure inside the hook, reported by finish */
    char message[256];
};

static int plan_buckets(DistReducer *r, int64_t bucket_bytes) {
    r->buckets = calloc((size_t)(r->n > 0 ? r->n : 1), sizeof *r->buckets);
    if (!r->buckets) return error_set("out of memory");
    Bucket *b = NULL;
    for (int k = 0; k < r->n; k++) {
        int i = r->n - 1 - k;
        r->order[k] = i;
        int64_t bytes = tensor_numel(r->params[i]) * (int64_t)sizeof(float);
        if (!b || (b->numel * (int64_t)sizeof(float) + bytes > bucket_bytes && b->count > 0)) {
            b = &r->buckets[r->n_buckets++];
            b->first = k;
        }
        b->count++;
        b->numel += tensor_numel(r->params[i]);
        r->bucket_of[i] = (int)(b - r->buckets);
    }
    for (int j = 0; j < r->n_buckets; j++) {
        Bucket *bk = &r->buckets[j];
        int64_t all = bk->numel + bk->count;
        int64_t host = r->on_device ? bk->count : all;
        if (!(bk->buf = malloc((size_t)host * sizeof(float)))) return error_set("out of memory");
        if (r->on_device && !(bk->dev = tensor_empty(1, &all, DTYPE_FLOAT32, r->device)))
            return -1;
    }
    return 0;
}

DistReducer *dist_reducer_new(DistGroup *g, Tensor *const *params, int n, int64_t bucket_bytes) {
    for (int i = 0; i < n; i++)
        if (params[i]->dtype != DTYPE_FLOAT32)
            return error_set("data parallel: parameter %d is %s; gradients are reduced in "
                             "float32",
                             i, dtype_name(params[i]->dtype)),
                   NULL;
    DistReducer *r = calloc(1, sizeof *r);
    if (!r) return error_set("out of memory"), NULL;
    r->group = g;
    r->n = n;
    r->device = n > 0 ? params[0]->device : DEVICE_CPU_INIT;
    r->on_device = r->device.type != DEVICE_CPU && g->all_reduce_device && g->join_device;
    for (int i = 0; i < n; i++) r->on_device &= device_equal(params[i]->device, r->device);
    r->params = malloc((size_t)(n > 0 ? n : 1) * sizeof *r->params);
    r->order = malloc((size_t)(n > 0 ? n : 1) * sizeof *r->order);
    r->bucket_of = malloc((size_t)(n > 0 ? n : 1) * sizeof *r->bucket_of);
    if (!r->params || !r->order || !r->bucket_of) {
        error_set("out of memory");
        dist_reducer_free(r);
        return NULL;
    }
    memcpy(r->params, params, (size_t)n * sizeof *params);
    r->bucket_bytes = bucket_bytes;
    if (plan_buckets(r, bucket_bytes) != 0) {
        dist_reducer_free(r);
        return NULL;
    }
    return r;
}

/* The device's later work after every bucket's reduction; `wait`: the
 * host too (the step's sums are read next: a hang fails it instead). */
static int join(DistReducer *r, bool wait) {
    return r->on_device ? r->group->join_device(r->group, r->device, wait) : 0;
}

void dist_reducer_free(DistReducer *r) {
    if (!r) return;
    dist_reducer_disarm(r);
    if (r->next_start > 0) join(r, false); /* nothing may still write a bucket */
    for (int j = 0; j < r->n_buckets; j++) {
        if (r->buckets[j].request) r->group->wait(r->group, r->buckets[j].request);
        free(r->buckets[j].buf);
        tensor_release(r->buckets[j].dev);
    }
    free(r->buckets);
    free(r->params);
    free(r->order);
    free(r->bucket_of);
    free(r);
}

int dist_reducer_num_buckets(const DistReducer *r) {
    return r->n_buckets;
}

int64_t dist_reducer_bucket_bytes(const DistReducer *r) {
    return r->bucket_bytes;
}

/* A parameter's gradient (or zeros) and its presence into the bucket. */
static int pack(DistReducer *r, Bucket *b) {
    float *values = b->buf, *present = b->buf + b->numel;
    for (int k = 0; k < b->count; k++) {
        Tensor *p = r->params[r->order[b->first + k]];
        int64_t n = tensor_numel(p);
        present[k] = p->grad ? 1.0f : 0.0f;
        if (!p->grad) {
            memset(values, 0, (size_t)n * sizeof *values);
        } else {
            Tensor *host = tensor_host_contiguous(p->grad);
            if (!host) return -1;
            memcpy(values, tensor_data(host), (size_t)n * sizeof *values);
            tensor_release(host);
        }
        values += n;
    }
    return 0;
}

/* dev[off, off + n) := value. */
static int fill_slot(Tensor *dev, int64_t off, int64_t n, double value) {
    Tensor *slot = tensor_narrow(dev, 0, off, n);
    int rc = slot ? tensor_fill_(slot, value) : -1;
    tensor_release(slot);
    return rc;
}

/* The same into the device bucket, queued on the device: the presences
 * all 1 (one launch), then 0 for a gradient this rank lacks. */
static int pack_device(DistReducer *r, Bucket *b) {
    int64_t off = 0;
    int rc = fill_slot(b->dev, b->numel, b->count, 1.0);
    for (int k = 0; rc == 0 && k < b->count; k++) {
        Tensor *p = r->params[r->order[b->first + k]];
        int64_t n = tensor_numel(p);
        if (p->grad) {
            Tensor *slot = tensor_narrow(b->dev, 0, off, n);
            Tensor *flat = tensor_view(p->grad, 1, &n);
            rc = slot && flat ? tensor_copy_(slot, flat) : -1;
            tensor_release(slot), tensor_release(flat);
        } else {
            rc = fill_slot(b->dev, off, n, 0.0);
            if (rc == 0) rc = fill_slot(b->dev, b->numel + k, 1, 0.0);
        }
        off += n;
    }
    return rc;
}

/* Values and presences reduced on the device, beside the backward. */
static int reduce_device(DistReducer *r, Bucket *b) {
    if (pack_device(r, b) != 0) return -1;
    DistGroup *g = r->group;
    return g->all_reduce_device(g, tensor_data(b->dev), b->numel + b->count, DTYPE_FLOAT32,
                                r->device);
}

static int start_bucket(DistReducer *r, Bucket *b) {
    if (r->on_device) return reduce_device(r, b);
    if (pack(r, b) != 0) return -1;
    return r->group->all_reduce_start(r->group, b->buf, b->numel + b->count, DTYPE_FLOAT32,
                                      &b->request);
}

/* Starts the buckets that are ready, in order. */
static int start_ready(DistReducer *r) {
    while (r->next_start < r->n_buckets && r->buckets[r->next_start].pending == 0) {
        if (start_bucket(r, &r->buckets[r->next_start++]) != 0) return -1;
    }
    return 0;
}

static void on_leaf(void *ctx, Tensor *leaf) {
    DistReducer *r = ctx;
    if (r->error) return;
    for (int i = 0; i < r->n; i++) {
        if (r->params[i] != leaf) continue;
        Bucket *b = &r->buckets[r->bucket_of[i]];
        if (b->pending > 0) b->pending--;
        if (start_ready(r) != 0) {
            r->error = 1;
            snprintf(r->message, sizeof r->message, "%s", error_get());
        }
        break;
    }
    for (int j = 0; j < r->next_start; j++)
        if (r->buckets[j].request) r->group->progress(r->group, r->buckets[j].request);
}

/* Every bucket waits for all its gradients again. */
static void reset(DistReducer *r) {
    for (int j = 0; j < r->n_buckets; j++) r->buckets[j].pending = r->buckets[j].count;
    r->next_start = 0;
    r->error = 0;
}

void dist_reducer_disarm(DistReducer *r) {
    if (r->armed) autograd_set_leaf_hook(NULL, NULL, NULL);
    r->armed = false;
}

void dist_reducer_arm(DistReducer *r) {
    reset(r);
    r->armed = true;
    autograd_set_leaf_hook(on_leaf, r, NULL);
}

/* The presences' sums to the host (after join). */
static int read_presences(Bucket *b) {
    Tensor *slot = tensor_narrow(b->dev, 0, b->numel, b->count);
    Tensor *host = slot ? tensor_host_contiguous(slot) : NULL;
    if (host) memcpy(b->buf, tensor_data(host), (size_t)b->count * sizeof *b->buf);
    tensor_release(slot), tensor_release(host);
    return host ? 0 : -1;
}

/* The device bucket's sums back into the gradients: those of the
 * parameters some rank had a gradient of, as the presences say, or, in a
 * graph's capture (`queued`: nothing may be read back), those this rank
 * has one of (a captured step's ranks run one graph on full batches, so
 * they have the same). */
static int unpack_device(DistReducer *r, Bucket *b, bool queued) {
    int64_t off = 0;
    int rc = queued ? 0 : read_presences(b);
    for (int k = 0; rc == 0 && k < b->count; k++) {
        Tensor *p = r->params[r->order[b->first + k]];
        int64_t n = tensor_numel(p);
        if (queued ? p->grad != NULL : b->buf[k] > 0) {
            Tensor *slot = tensor_narrow(b->dev, 0, off, n);
            Tensor *sum = slot ? tensor_view(slot, p->ndim, p->shape) : NULL;
            if (!sum)
                rc = -1;
            else if (p->grad)
                rc = tensor_copy_(p->grad, sum);
            else
                rc = (p->grad = tensor_clone(sum)) ? 0 : -1;
            tensor_release(slot), tensor_release(sum);
        }
        off += n;
    }
    return rc;
}

/* The bucket's sums back into the gradients. */
static int unpack(DistReducer *r, Bucket *b, bool queued) {
    if (r->on_device) return unpack_device(r, b, queued);
    const float *values = b->buf, *present = b->buf + b->numel;
    for (int k = 0; k < b->count; k++) {
        Tensor *p = r->params[r->order[b->first + k]];
        int64_t n = tensor_numel(p);
        if (present[k] > 0 && p->grad && p->grad->device.type == DEVICE_CPU) {
            /* .grad is contiguous and its own (autograd keeps it so) */
            memcpy(tensor_data(p->grad), values, (size_t)n * sizeof *values);
        } else if (present[k] > 0) {
            Tensor *sum = tensor_from_buffer(values, p->ndim, p->shape, DTYPE_FLOAT32);
            Tensor *g = tensor_to_device(sum, p->device);
            tensor_release(sum);
            if (!g) return -1;
            tensor_release(p->grad);
            p->grad = g;
        }
        values += n;
    }
    return 0;
}

/* finish, or, `queued`, finish_queued. */
static int finish(DistReducer *r, bool queued) {
    bool armed = r->armed;
    dist_reducer_disarm(r);
    if (queued && !r->on_device)
        return error_set("gradient all-reduce: a CUDA graph holds only a device's reductions");
    if (!armed) reset(r); /* no backward was hooked: everything starts here */
    int rc = r->error ? error_set("%s", r->message) : 0;
    /* what no hook started (a rank without samples, an unused parameter) */
    while (rc == 0 && r->next_start < r->n_buckets)
        rc = start_bucket(r, &r->buckets[r->next_start++]);
    if (join(r, !queued) != 0) rc = -1;
    for (int j = 0; j < r->n_buckets; j++) {
        Bucket *b = &r->buckets[j];
        if (b->request) { /* host buckets are in flight; device ones are queued */
            int wrc = r->group->wait(r->group, b->request);
            b->request = NULL;
            if (rc == 0 && wrc != 0) rc = -1;
        }
        if (rc == 0) rc = unpack(r, b, queued);
    }
    return rc == 0 ? 0 : error_prefix("gradient all-reduce");
}

int dist_reducer_finish(DistReducer *r) { return finish(r, false); }

int dist_reducer_finish_queued(DistReducer *r) { return finish(r, true); }

int dist_reducer_mark(DistReducer *r) {
    DistGroup *g = r->group;
    if (!r->on_device || !g->mark_device) return -1;
    int mark = g->mark_device(g, r->device);
    if (mark < 0) error_clear(); /* no mark: the watch waits for everything */
    return mark;
}

int dist_reducer_watch(DistReducer *r, int mark) {
    DistGroup *g = r->group;
    int rc = mark >= 0 && g->watch_device ? g->watch_device(g, r->device, mark) : join(r, true);
    return rc == 0 ? 0 : error_prefix("gradient all-reduce");
}
