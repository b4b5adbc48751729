/* test_dist_reducer.c - core/dist/reducer: DDP's bucketed gradient
 * all-reduce, against a group whose other rank is simulated: a collective
 * gives scale * x + add for each of this rank's floats x (scale 1, add 1:
 * another rank whose every gradient is ones; scale 2, add 0: a rank
 * identical to this one). Its sums land only at wait (host buckets) or at
 * join_device (device buckets), as a real all-reduce in flight would, so
 * a reducer that read a bucket early would read this rank's values alone.
 *
 * Checked: buckets of bucket_bytes in reverse registration order; the
 * first bucket starts inside the backward pass, before the first
 * parameter's gradient exists (the overlap); each bucket's floats (values,
 * then presences); the sums in .grad; a parameter no rank touched keeps no
 * gradient, one another rank touched gets the sum; device buckets (on the
 * stand-in GPU: the CPU backend registered as cuda) are joined before they
 * are read, and a GPU group without device all-reduce stages through the
 * host; a step a CUDA graph captures joins without the host's wait and
 * reads nothing back (a host group refuses it), and is watched alone by
 * the group's mark. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/dist/reducer.h"
#include "core/error.h"
#include "core/ops.h"
#include "tests/support/fixture.h"

#define MAX_STARTS 16
#define MAX_FLOATS 64

/* ---- the simulated other rank ---- */

typedef struct {
    double scale, add;
    Tensor *first_param; /* params[0]: its .grad at each start is recorded */
    int starts;
    int64_t count[MAX_STARTS];
    float floats[MAX_STARTS][MAX_FLOATS]; /* what this rank put in */
    bool first_param_had_grad[MAX_STARTS];
    float *in_flight[MAX_STARTS]; /* device all-reduces not yet joined */
    int n_in_flight, joins;
    bool joined_waiting; /* the last join's `wait` */
    int marks, watched;  /* marks made; the last mark watched (-1: none) */
} Other;

typedef struct {
    float *buf;
    int64_t count;
} FakeRequest;

static Other *other_of(DistGroup *g) {
    return g->impl;
}

static void record(Other *o, const float *buf, int64_t count) {
    cr_assert_lt(o->starts, MAX_STARTS);
    cr_assert_leq(count, MAX_FLOATS);
    o->count[o->starts] = count;
    memcpy(o->floats[o->starts], buf, (size_t)count * sizeof *buf);
    o->first_param_had_grad[o->starts] = o->first_param->grad != NULL;
    o->starts++;
}

static void sum_in(Other *o, float *buf, int64_t count) {
    for (int64_t i = 0; i < count; i++) buf[i] = (float)(o->scale * buf[i] + o->add);
}

static int fake_all_reduce(DistGroup *g, void *buf, int64_t count, DType dtype) {
    cr_assert_eq(dtype, DTYPE_FLOAT32);
    sum_in(other_of(g), buf, count);
    return 0;
}

static int fake_start(DistGroup *g, void *buf, int64_t count, DType dtype, DistRequest **req) {
    cr_assert_eq(dtype, DTYPE_FLOAT32);
    record(other_of(g), buf, count);
    FakeRequest *r = malloc(sizeof *r);
    cr_assert_not_null(r);
    *r = (FakeRequest){buf, count};
    *req = (DistRequest *)r;
    return 0;
}

static void fake_progress(DistGroup *g, DistRequest *req) {
    (void)g, (void)req;
}

static int fake_wait(DistGroup *g, DistRequest *req) {
    FakeRequest *r = (FakeRequest *)req;
    sum_in(other_of(g), r->buf, r->count);
    free(r);
    return 0;
}

static int fake_device(DistGroup *g, void *buf, int64_t count, DType dtype, Device device) {
    Other *o = other_of(g);
    cr_assert_eq(dtype, DTYPE_FLOAT32);
    cr_assert_eq(device.type, DEVICE_CUDA);
    record(o, buf, count);
    o->in_flight[o->n_in_flight++] = buf; /* counts kept in o->count */
    return 0;
}

static int fake_join(DistGroup *g, Device device, bool wait) {
    Other *o = other_of(g);
    o->joined_waiting = wait; /* the sums are made here, at once */
    cr_assert_eq(device.type, DEVICE_CUDA);
    for (int k = 0; k < o->n_in_flight; k++)
        sum_in(o, o->in_flight[k], o->count[o->starts - o->n_in_flight + k]);
    o->n_in_flight = 0;
    o->joins++;
    return 0;
}

static int fake_mark(DistGroup *g, Device device) {
    cr_assert_eq(device.type, DEVICE_CUDA);
    return other_of(g)->marks++;
}

static int fake_watch(DistGroup *g, Device device, int mark) {
    cr_assert_eq(device.type, DEVICE_CUDA);
    other_of(g)->watched = mark;
    return 0;
}

static DistGroup group_of(Other *o, bool device) {
    return (DistGroup){.backend = "test",
                       .rank = 0,
                       .world = 2,
                       .all_reduce = fake_all_reduce,
                       .all_reduce_start = fake_start,
                       .progress = fake_progress,
                       .wait = fake_wait,
                       .all_reduce_device = device ? fake_device : NULL,
                       .join_device = device ? fake_join : NULL,
                       .impl = o};
}

/* ---- the model: four vectors of 4, a chain, so a backward finishes
 * params[3] first and params[0] last ---- */

#define N_PARAMS 4
#define LEN 4

typedef struct {
    Tensor *p[N_PARAMS + 1]; /* p[N_PARAMS]: one the loss never uses */
} Chain;

static Chain chain_new(Device device) {
    Chain c;
    for (int i = 0; i <= N_PARAMS; i++) {
        float v[LEN];
        for (int j = 0; j < LEN; j++) v[j] = 0.1f * (float)(i + 1) + 0.01f * (float)j;
        Tensor *host = tensor_from_buffer(v, 1, (int64_t[]){LEN}, DTYPE_FLOAT32);
        c.p[i] = tensor_to_device(host, device);
        tensor_release(host);
        cr_assert(c.p[i] && tensor_set_requires_grad(c.p[i], true) == 0, "%s", error_get());
    }
    return c;
}

/* sum(p3 * sum(p2 * sum(p1 * sum(p0)))): d/dp_i is a constant vector. */
static Tensor *chain_loss(Chain *c) {
    Tensor *s = tensor_sum(c->p[0]);
    for (int i = 1; i < N_PARAMS; i++) {
        Tensor *m = tensor_mul(c->p[i], s);
        tensor_release(s);
        s = tensor_sum(m);
        tensor_release(m);
    }
    cr_assert_not_null(s, "%s", error_get());
    return s;
}

static void chain_free(Chain *c) {
    for (int i = 0; i <= N_PARAMS; i++) tensor_release(c->p[i]);
}

/* .grad of t (any device) as floats. */
static void grad_values(const Tensor *t, float *out) {
    cr_assert_not_null(t->grad);
    Tensor *host = tensor_host_contiguous(t->grad);
    cr_assert_not_null(host, "%s", error_get());
    memcpy(out, tensor_data(host), LEN * sizeof *out);
    tensor_release(host);
}

/* One step's backward through the reducer over n params, finished as a
 * step run op by op or, `queued`, as one a CUDA graph captures; each
 * param's local gradient into local[i] (taken from a plain backward
 * first). */
static void step_as(Chain *c, int n, DistGroup *g, int64_t bucket_bytes, bool queued,
                    DistReducer **out, float local[][LEN]) {
    Tensor *loss = chain_loss(c);
    cr_assert_eq(tensor_backward(loss), 0, "%s", error_get());
    tensor_release(loss);
    for (int i = 0; i < n; i++) {
        if (c->p[i]->grad) grad_values(c->p[i], local[i]);
        tensor_zero_grad(c->p[i]);
    }
    DistReducer *r = dist_reducer_new(g, c->p, n, bucket_bytes);
    cr_assert_not_null(r, "%s", error_get());
    dist_reducer_arm(r);
    loss = chain_loss(c);
    cr_assert_eq(tensor_backward(loss), 0, "%s", error_get());
    tensor_release(loss);
    int rc = queued ? dist_reducer_finish_queued(r) : dist_reducer_finish(r);
    cr_assert_eq(rc, 0, "%s", error_get());
    *out = r;
}

static void step(Chain *c, int n, DistGroup *g, int64_t bucket_bytes, DistReducer **out,
                 float local[][LEN]) {
    step_as(c, n, g, bucket_bytes, false, out, local);
}

/* Bucket k's floats as started: its params' local gradients in reverse
 * registration order from `first`, then one presence each. */
static void assert_bucket(const Other *o, int k, const int *params, int count, float local[][LEN]) {
    cr_assert_eq(o->count[k], (int64_t)count * (LEN + 1), "bucket %d: %ld floats", k,
                 (long)o->count[k]);
    for (int q = 0; q < count; q++) {
        for (int j = 0; j < LEN; j++)
            cr_assert_float_eq(o->floats[k][q * LEN + j], local[params[q]][j], 1e-6,
                               "bucket %d: param %d[%d]", k, params[q], j);
        cr_assert_eq(o->floats[k][count * LEN + q], 1.0f, "bucket %d: presence %d", k, q);
    }
}

static void assert_sums(Chain *c, int n, float local[][LEN], double scale, double add) {
    for (int i = 0; i < n; i++) {
        float got[LEN];
        grad_values(c->p[i], got);
        for (int j = 0; j < LEN; j++)
            cr_assert_float_eq(got[j], (float)(scale * local[i][j] + add), 1e-5,
                               "param %d[%d]: %g", i, j, got[j]);
    }
}

static void buckets_of_two(Device device, bool device_group) {
    Chain c = chain_new(device);
    Other o = {.scale = 1, .add = 1, .first_param = c.p[0]};
    DistGroup g = group_of(&o, device_group);
    float local[N_PARAMS][LEN];
    DistReducer *r;
    step(&c, N_PARAMS, &g, 2 * LEN * sizeof(float), &r, local);
    cr_assert_eq(dist_reducer_num_buckets(r), 2);
    cr_assert_eq(o.starts, 2);
    assert_bucket(&o, 0, (int[]){3, 2}, 2, local);
    assert_bucket(&o, 1, (int[]){1, 0}, 2, local);
    cr_assert(!o.first_param_had_grad[0],
              "the last layers' bucket starts while the backward pass still runs");
    cr_assert(o.first_param_had_grad[1]);
    assert_sums(&c, N_PARAMS, local, 1, 1);
    if (device_group) cr_assert_eq(o.joins, 1);
    dist_reducer_free(r);
    chain_free(&c);
}

Test(dist_reducer, host_buckets_start_in_reverse_order_during_backward) {
    buckets_of_two(DEVICE_CPU_INIT, false);
}

Test(dist_reducer, device_buckets_are_joined_before_they_are_read) {
    backend_register_cuda(&cpu_backend, 1);
    buckets_of_two((Device){.type = DEVICE_CUDA, .index = 0}, true);
}

Test(dist_reducer, a_gpu_group_without_device_all_reduce_stages_through_the_host) {
    backend_register_cuda(&cpu_backend, 1);
    buckets_of_two((Device){.type = DEVICE_CUDA, .index = 0}, false);
}

Test(dist_reducer, tiny_buckets_hold_one_parameter_each) {
    Chain c = chain_new(DEVICE_CPU_INIT);
    Other o = {.scale = 2, .add = 0, .first_param = c.p[0]};
    DistGroup g = group_of(&o, false);
    float local[N_PARAMS][LEN];
    DistReducer *r;
    step(&c, N_PARAMS, &g, 4, &r, local);
    cr_assert_eq(dist_reducer_num_buckets(r), N_PARAMS);
    for (int k = 0; k < N_PARAMS; k++) assert_bucket(&o, k, (int[]){N_PARAMS - 1 - k}, 1, local);
    cr_assert(!o.first_param_had_grad[N_PARAMS - 2]);
    assert_sums(&c, N_PARAMS, local, 2, 0);
    dist_reducer_free(r);
    chain_free(&c);
}

Test(dist_reducer, one_bucket_for_the_default_size) {
    Chain c = chain_new(DEVICE_CPU_INIT);
    Other o = {.scale = 2, .add = 0, .first_param = c.p[0]};
    DistGroup g = group_of(&o, false);
    DistReducer *r = dist_reducer_new(&g, c.p, N_PARAMS + 1, DIST_BUCKET_BYTES);
    cr_assert_not_null(r, "%s", error_get());
    cr_assert_eq(dist_reducer_num_buckets(r), 1);
    cr_assert_eq(dist_reducer_bucket_bytes(r), DIST_BUCKET_BYTES);
    dist_reducer_free(r);
    chain_free(&c);
}

/* An unused parameter holds its bucket back to finish (as DDP without
 * find_unused_parameters waits for it); there it goes with a presence of
 * 0. */
static void unused_parameter(Device device, bool device_group, double scale, double add) {
    Chain c = chain_new(device);
    Other o = {.scale = scale, .add = add, .first_param = c.p[0]};
    DistGroup g = group_of(&o, device_group);
    float local[N_PARAMS + 1][LEN];
    DistReducer *r;
    step(&c, N_PARAMS + 1, &g, 2 * LEN * sizeof(float), &r, local);
    cr_assert_eq(dist_reducer_num_buckets(r), 3);
    cr_assert_eq(o.starts, 3);
    cr_assert_eq(o.count[0], 2 * (LEN + 1));
    for (int j = 0; j < LEN; j++) cr_assert_eq(o.floats[0][j], 0.0f, "no gradient: zeros");
    cr_assert_eq(o.floats[0][2 * LEN], 0.0f, "presence of the unused parameter");
    cr_assert_eq(o.floats[0][2 * LEN + 1], 1.0f);
    assert_sums(&c, N_PARAMS, local, scale, add);
    Tensor *unused = c.p[N_PARAMS];
    if (add == 0) {
        cr_assert_null(unused->grad, "no rank touched it: no gradient, as one process");
    } else {
        float got[LEN];
        grad_values(unused, got);
        for (int j = 0; j < LEN; j++) cr_assert_float_eq(got[j], (float)add, 1e-6);
    }
    dist_reducer_free(r);
    chain_free(&c);
}

Test(dist_reducer, a_parameter_no_rank_touched_keeps_no_gradient) {
    unused_parameter(DEVICE_CPU_INIT, false, 2, 0);
}

Test(dist_reducer, a_parameter_another_rank_touched_gets_its_sum) {
    unused_parameter(DEVICE_CPU_INIT, false, 1, 1);
}

Test(dist_reducer, device_presences_are_summed_on_the_device) {
    backend_register_cuda(&cpu_backend, 1);
    Device cuda = {.type = DEVICE_CUDA, .index = 0};
    unused_parameter(cuda, true, 2, 0);
}

Test(dist_reducer, device_presences_from_another_rank) {
    backend_register_cuda(&cpu_backend, 1);
    Device cuda = {.type = DEVICE_CUDA, .index = 0};
    unused_parameter(cuda, true, 1, 1);
}

/* A step a CUDA graph captures: the device waits for the buckets, the host
 * does not (join without wait), nothing is read back, so the sums go to
 * the parameters this rank has a gradient of (a parameter only another
 * rank touched cannot be in a graph's step: its ranks run one graph). */
Test(dist_reducer, a_captured_step_joins_without_waiting_and_reads_nothing_back) {
    backend_register_cuda(&cpu_backend, 1);
    Chain c = chain_new((Device){.type = DEVICE_CUDA, .index = 0});
    Other o = {.scale = 1, .add = 1, .first_param = c.p[0]};
    DistGroup g = group_of(&o, true);
    float local[N_PARAMS + 1][LEN];
    DistReducer *r;
    step_as(&c, N_PARAMS + 1, &g, 2 * LEN * sizeof(float), true, &r, local);
    cr_assert_eq(o.joins, 1);
    cr_assert(!o.joined_waiting, "a capture cannot wait on the host");
    assert_sums(&c, N_PARAMS, local, 1, 1);
    cr_assert_null(c.p[N_PARAMS]->grad, "the unused parameter: no local gradient, no sum");
    cr_assert_eq(dist_reducer_mark(r), -1, "a group without marks");
    cr_assert_eq(dist_reducer_watch(r, -1), 0, "%s", error_get());
    cr_assert(o.joined_waiting, "no mark: the watch waits for everything");
    dist_reducer_free(r);
    chain_free(&c);
}

/* A graph's step is watched alone: the group's mark after its replay,
 * and the watch of that mark, not a wait for all the device queued. */
Test(dist_reducer, a_marked_step_is_watched_alone) {
    backend_register_cuda(&cpu_backend, 1);
    Chain c = chain_new((Device){.type = DEVICE_CUDA, .index = 0});
    Other o = {.scale = 2, .add = 0, .first_param = c.p[0], .watched = -1};
    DistGroup g = group_of(&o, true);
    g.mark_device = fake_mark, g.watch_device = fake_watch;
    DistReducer *r = dist_reducer_new(&g, c.p, N_PARAMS, DIST_BUCKET_BYTES);
    cr_assert_not_null(r, "%s", error_get());
    int first = dist_reducer_mark(r), second = dist_reducer_mark(r);
    cr_assert(first == 0 && second == 1, "marks %d, %d", first, second);
    cr_assert_eq(dist_reducer_watch(r, first), 0, "%s", error_get());
    cr_assert_eq(o.watched, 0);
    cr_assert_eq(o.joins, 0, "a marked step's watch joins nothing");
    dist_reducer_free(r);
    chain_free(&c);
}

Test(dist_reducer, a_host_group_cannot_be_captured) {
    Chain c = chain_new(DEVICE_CPU_INIT);
    Other o = {.scale = 2, .add = 0, .first_param = c.p[0]};
    DistGroup g = group_of(&o, false);
    DistReducer *r = dist_reducer_new(&g, c.p, N_PARAMS, DIST_BUCKET_BYTES);
    cr_assert_not_null(r, "%s", error_get());
    cr_assert_eq(dist_reducer_finish_queued(r), -1);
    cr_assert_str_eq(error_get(), "gradient all-reduce: a CUDA graph holds only a device's "
                                  "reductions");
    dist_reducer_free(r);
    chain_free(&c);
}
