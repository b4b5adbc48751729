/* test_train.c - core/train: the loop's metrics as design.md defines them
 * (recomputed by hand; samples_per_s over training time alone, with a
 * validation made slower than training by sleeps the clock must show),
 * PyTorch parity step for step (tests/fixtures/
 * gen_train.py), NaN/Inf detection, the cancel flag, checkpoints, and
 * resuming to the very same losses (shuffle and Dropout on) after a
 * checkpoint at an epoch's end or in the middle of one; a checkpoint on a
 * full disk (a small tmpfs): the run fails naming it, ENOSPC, nothing of it
 * left, the one before intact. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/dist/group.h"
#include "core/io/safetensors.h"
#include "core/train.h"
#include "tests/support/fixture.h"
#include "tests/support/full_disk.h"
#include "tests/support/tmp_dir.h"

/* ---- recording callbacks ---- */

#define REC_MAX 2048

typedef struct {
    char name[24];
    int64_t step;
    int epoch;
    double value;
} Metric;

typedef struct {
    int n;
    Metric m[REC_MAX];
    int logs;
    char log[4096]; /* the lines, as far as they fit */
    atomic_int *cancel;
    int64_t cancel_at_step; /* sets *cancel when the "loss" of this step arrives; 0: never */
    const char *ckpt_dir;   /* checkpoint callback saves here */
    int ckpts;
    bool cancel_after_ckpt;
    const Trainer *trainer; /* when set: train_samples_per_s at each "loss" into live[] */
    int nlive;
    double live[64];
} Rec;

static void rec_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    Rec *r = user;
    cr_assert(r->n < REC_MAX);
    Metric *m = &r->m[r->n++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->step = step;
    m->epoch = epoch;
    m->value = value;
    if (r->cancel && r->cancel_at_step && strcmp(name, "loss") == 0 && step == r->cancel_at_step)
        atomic_store(r->cancel, 1);
    if (r->trainer && strcmp(name, "loss") == 0) {
        cr_assert(r->nlive < 64);
        r->live[r->nlive++] = train_samples_per_s(&r->trainer->state);
    }
}

static void rec_log(void *user, const char *line) {
    Rec *r = user;
    cr_assert(line && *line);
    r->logs++;
    size_t used = strlen(r->log);
    snprintf(r->log + used, sizeof r->log - used, "%s\n", line);
}

static int rec_checkpoint(void *user, const Trainer *t, int epoch, int64_t step) {
    Rec *r = user;
    r->ckpts++;
    cr_assert_eq(t->state.epoch, epoch + 1);
    cr_assert_eq(t->state.step, step);
    if (!r->ckpt_dir) return 0;
    int rc = train_save_checkpoint(t, r->ckpt_dir);
    if (rc == 0 && r->cancel_after_ckpt) atomic_store(r->cancel, 1);
    return rc;
}

/* Values of metric `name`, in order; returns the count. */
static int rec_values(const Rec *r, const char *name, double *out, int64_t *steps, int *epochs) {
    int k = 0;
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->m[i].name, name) == 0) {
            if (out) out[k] = r->m[i].value;
            if (steps) steps[k] = r->m[i].step;
            if (epochs) epochs[k] = r->m[i].epoch;
            k++;
        }
    return k;
}

/* ---- a tiny setup: Linear 4->8, ReLU, [Dropout], Linear 8->k ---- */

typedef struct {
    int out_features;
    bool dropout;
    bool shuffle;
    int prefetch;
    uint64_t seed;      /* weights and the data order */
    bool adam;
    double lr, momentum;
    const LrSchedulerConfig *sched; /* NULL: none */
    TrainLossFn loss;
    int epochs;
    bool accuracy;
    int64_t batch_size;
} RigOptions;

typedef struct {
    Rng init_rng, drop_rng;
    Module *model;
    Optimizer *opt;
    LrScheduler *sched;
    Dataset *train_ds, *val_ds;
    DataLoader *train, *val;
    Trainer t;
    Rec rec;
    atomic_int cancel;
} Rig;

static Module *tiny_mlp(int out, bool dropout, Rng *rng) {
    if (dropout) {
        Module *c[] = {nn_linear(4, 8, true, rng), nn_relu(), nn_dropout(0.3),
                       nn_linear(8, out, true, rng)};
        return nn_sequential(4, c);
    }
    Module *c[] = {nn_linear(4, 8, true, rng), nn_relu(), nn_linear(8, out, true, rng)};
    return nn_sequential(3, c);
}

/* Takes the references to x, y, vx, vy (vx may be NULL: no validation). */
static Rig *rig_new(const RigOptions *o, Tensor *x, Tensor *y, Tensor *vx, Tensor *vy) {
    Rig *r = calloc(1, sizeof *r);
    cr_assert(r);
    rng_init(&r->init_rng, o->seed);
    rng_init(&r->drop_rng, o->seed + 1000);
    r->model = tiny_mlp(o->out_features, o->dropout, &r->init_rng);
    cr_assert(r->model, "%s", error_get());
    int n;
    Tensor **params = module_parameters(r->model, &n);
    cr_assert(params);
    if (o->adam) {
        AdamOptions a = adam_options_default();
        a.lr = o->lr;
        r->opt = adam_new(params, n, a);
    } else {
        r->opt = sgd_new(params, n, (SgdOptions){.lr = o->lr, .momentum = o->momentum});
    }
    free(params);
    cr_assert(r->opt, "%s", error_get());
    if (o->sched) {
        r->sched = lr_scheduler_new(o->sched, o->lr);
        cr_assert(r->sched, "%s", error_get());
    }
    r->train_ds = dataset_from_tensors(x, y, "train");
    cr_assert(r->train_ds, "%s", error_get());
    DataLoaderOptions lo = {.batch_size = o->batch_size ? o->batch_size : 16,
                            .shuffle = o->shuffle, .seed = o->seed + 7, .prefetch = o->prefetch};
    r->train = dataloader_new(r->train_ds, &lo, NULL);
    cr_assert(r->train, "%s", error_get());
    if (vx) {
        r->val_ds = dataset_from_tensors(vx, vy, "val");
        cr_assert(r->val_ds, "%s", error_get());
        lo.shuffle = false;
        r->val = dataloader_new(r->val_ds, &lo, NULL);
        cr_assert(r->val, "%s", error_get());
    }
    train_init(&r->t);
    r->t.model = r->model;
    r->t.opt = r->opt;
    r->t.lr_scheduler = r->sched;
    r->t.train = r->train;
    r->t.val = r->val;
    r->t.rng = o->dropout ? &r->drop_rng : NULL;
    r->t.loss = o->loss ? o->loss : tensor_cross_entropy;
    r->t.epochs = o->epochs;
    r->t.accuracy = o->accuracy;
    r->t.cancel = &r->cancel;
    r->t.cb = (TrainCallbacks){.user = &r->rec, .metric = rec_metric, .log = rec_log,
                               .checkpoint = rec_checkpoint};
    r->rec.cancel = &r->cancel;
    return r;
}

static void rig_free(Rig *r) {
    dataloader_free(r->train);
    dataloader_free(r->val);
    dataset_free(r->train_ds);
    dataset_free(r->val_ds);
    lr_scheduler_free(r->sched);
    optimizer_free(r->opt);
    module_free(r->model);
    free(r);
}

/* Classification data: x [n, 4] normal, labels from a fixed rule, in 3 classes. */
static void toy_data(int64_t n, uint64_t seed, Tensor **x, Tensor **y) {
    Rng g;
    rng_init(&g, seed);
    *x = tensor_empty(SHAPE(n, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    *y = tensor_empty(SHAPE(n), DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert(*x && *y);
    float *px = tensor_data(*x);
    int64_t *py = tensor_data(*y);
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < 4; j++) px[4 * i + j] = (float)rng_normal(&g);
        py[i] = px[4 * i] + px[4 * i + 1] > 0.5f ? 2 : px[4 * i + 2] > 0 ? 1 : 0;
    }
}

/* ---- metrics as design.md defines them ---- */

Test(train, metrics_definitions) {
    Tensor *x, *y, *vx, *vy;
    toy_data(50, 1, &x, &y);
    toy_data(20, 2, &vx, &vy);
    LrSchedulerConfig sc;
    lr_scheduler_config_init(&sc, LR_SCHEDULER_STEP);
    sc.step_size = 2;
    sc.gamma = 0.5;
    RigOptions o = {.out_features = 3, .seed = 3, .lr = 0.1, .momentum = 0.9, .sched = &sc,
                    .epochs = 5, .accuracy = true};
    Rig *r = rig_new(&o, x, y, vx, vy);
    cr_assert_eq(train_total_steps(&r->t), 20);
    cr_assert_eq(train_run(&r->t), 0, "%s", error_get());

    /* 4 batches (16, 16, 16, 2) per epoch, steps 1..20 across epochs */
    double loss[32], lr[32];
    int64_t steps[32];
    int epochs[32];
    cr_assert_eq(rec_values(&r->rec, "loss", loss, steps, epochs), 20);
    cr_assert_eq(rec_values(&r->rec, "lr", lr, NULL, NULL), 20);
    for (int k = 0; k < 20; k++) {
        cr_assert_eq(steps[k], k + 1);
        cr_assert_eq(epochs[k], k / 4);
        /* StepLR(step_size=2, gamma=0.5): 0.1 for epochs 0-1, 0.05, 0.025 */
        double want = 0.1 * pow(0.5, (k / 4) / 2);
        cr_assert_float_eq(lr[k], want, 1e-15, "lr at step %d: %g, want %g", k + 1, lr[k], want);
        cr_assert(isfinite(loss[k]) && loss[k] > 0);
    }
    /* epoch metrics: one each per epoch, at the epoch's last step */
    double tl[8], ta[8], vl[8], va[8], sps[8], tt[8], et[8];
    int64_t esteps[8];
    int eep[8];
    cr_assert_eq(rec_values(&r->rec, "train_loss", tl, esteps, eep), 5);
    cr_assert_eq(rec_values(&r->rec, "train_accuracy", ta, NULL, NULL), 5);
    cr_assert_eq(rec_values(&r->rec, "val_loss", vl, NULL, NULL), 5);
    cr_assert_eq(rec_values(&r->rec, "val_accuracy", va, NULL, NULL), 5);
    cr_assert_eq(rec_values(&r->rec, "samples_per_s", sps, NULL, NULL), 5);
    cr_assert_eq(rec_values(&r->rec, "train_time_s", tt, NULL, NULL), 5);
    cr_assert_eq(rec_values(&r->rec, "epoch_time_s", et, NULL, NULL), 5);
    for (int e = 0; e < 5; e++) {
        cr_assert_eq(esteps[e], 4 * (e + 1));
        cr_assert_eq(eep[e], e);
        const double *l = &loss[4 * e];
        double weighted = (l[0] * 16 + l[1] * 16 + l[2] * 16 + l[3] * 2) / 50;
        double plain = (l[0] + l[1] + l[2] + l[3]) / 4;
        cr_assert_float_eq(tl[e], weighted, 1e-12, "train_loss %d: %.17g vs %.17g", e, tl[e],
                           weighted);
        cr_assert(fabs(weighted - plain) > 1e-9, "the test must tell the two means apart");
        cr_assert(ta[e] >= 0 && ta[e] <= 1 && fabs(ta[e] * 50 - round(ta[e] * 50)) < 1e-9);
        cr_assert(va[e] >= 0 && va[e] <= 1 && fabs(va[e] * 20 - round(va[e] * 20)) < 1e-9);
        cr_assert(tt[e] > 0 && et[e] > tt[e], "train %g s, epoch %g s", tt[e], et[e]);
        cr_assert_float_eq(sps[e] * tt[e], 50, 1e-9, "%.17g samples/s over %.17g s", sps[e],
                           tt[e]);
    }
    /* the scheduler stepped once per epoch, the optimizer holds its lr */
    cr_assert_eq(lr_scheduler_last_epoch(r->sched), 5);
    cr_assert_float_eq(r->opt->lr, 0.1 * 0.5 * 0.5, 1e-15); /* epoch 5 */
    cr_assert_eq(r->rec.logs, 5);
    cr_assert(autograd_is_enabled());

    /* val_loss / val_accuracy of the last epoch by hand: the model has not
     * changed since that validation (eval mode, no grad, whole set). */
    module_train(r->model, false);
    bool prev = autograd_set_enabled(false);
    Tensor *out = module_forward(r->model, r->val_ds->inputs);
    cr_assert(out, "%s", error_get());
    Tensor *l20 = tensor_cross_entropy(out, r->val_ds->targets, REDUCTION_NONE);
    Tensor *pred = tensor_argmax_last(out);
    autograd_set_enabled(prev);
    double sum = 0;
    int correct = 0;
    for (int i = 0; i < 20; i++) {
        sum += tensor_get(l20, i);
        correct += tensor_get(pred, i) == tensor_get(r->val_ds->targets, i);
    }
    cr_assert_float_eq(vl[4], sum / 20, 1e-6, "val_loss %.9g by hand %.9g", vl[4], sum / 20);
    cr_assert_float_eq(va[4], correct / 20.0, 1e-12);
    tensor_release(out);
    tensor_release(l20);
    tensor_release(pred);
    rig_free(r);
}

/* Without a val loader or accuracy: only train_loss, samples_per_s, train_time_s,
 * epoch_time_s. */
Test(train, no_val_no_accuracy) {
    Tensor *x, *y;
    toy_data(50, 4, &x, &y);
    RigOptions o = {.out_features = 3, .seed = 5, .lr = 0.05, .epochs = 2};
    Rig *r = rig_new(&o, x, y, NULL, NULL);
    cr_assert_eq(train_run(&r->t), 0, "%s", error_get());
    cr_assert_eq(rec_values(&r->rec, "loss", NULL, NULL, NULL), 8);
    cr_assert_eq(rec_values(&r->rec, "train_loss", NULL, NULL, NULL), 2);
    cr_assert_eq(rec_values(&r->rec, "train_accuracy", NULL, NULL, NULL), 0);
    cr_assert_eq(rec_values(&r->rec, "val_loss", NULL, NULL, NULL), 0);
    double sps[2], tt[2], et[2];
    cr_assert_eq(rec_values(&r->rec, "samples_per_s", sps, NULL, NULL), 2);
    cr_assert_eq(rec_values(&r->rec, "train_time_s", tt, NULL, NULL), 2);
    cr_assert_eq(rec_values(&r->rec, "epoch_time_s", et, NULL, NULL), 2);
    for (int e = 0; e < 2; e++) {
        cr_assert(tt[e] > 0 && et[e] >= tt[e], "train %g s, epoch %g s", tt[e], et[e]);
        cr_assert_float_eq(sps[e] * tt[e], 50, 1e-9);
    }
    double lr[8];
    rec_values(&r->rec, "lr", lr, NULL, NULL);
    for (int k = 0; k < 8; k++) cr_assert_eq(lr[k], 0.05);
    /* a finished run run again does nothing */
    int n = r->rec.n;
    cr_assert_eq(train_run(&r->t), 0);
    cr_assert_eq(r->rec.n, n);
    rig_free(r);
}

/* "cuda_graphs" on the CPU: nothing to capture; the run says so and trains
 * as without (tests/unit/test_gpu_graph.c runs it on a GPU). */
Test(train, cuda_graphs_on_the_cpu_train_as_without) {
    Rig *runs[2];
    for (int i = 0; i < 2; i++) {
        Tensor *x, *y, *vx, *vy;
        toy_data(50, 4, &x, &y);
        toy_data(20, 6, &vx, &vy);
        RigOptions o = {.out_features = 3, .seed = 5, .lr = 0.05, .momentum = 0.9,
                        .epochs = 2, .accuracy = true};
        runs[i] = rig_new(&o, x, y, vx, vy);
        runs[i]->t.cuda_graphs = i == 1;
        cr_assert_eq(train_run(&runs[i]->t), 0, "%s", error_get());
    }
    Rec *a = &runs[0]->rec, *b = &runs[1]->rec;
    cr_assert(strstr(b->log, "cuda graphs: not used: the device has no CUDA graphs"), "%s",
              b->log);
    cr_assert_null(strstr(a->log, "cuda graphs"), "%s", a->log);
    cr_assert_eq(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        if (strstr(a->m[i].name, "_time_s") || strcmp(a->m[i].name, "samples_per_s") == 0)
            continue;
        cr_assert(strcmp(a->m[i].name, b->m[i].name) == 0 && a->m[i].value == b->m[i].value,
                  "%s %g against %s %g", a->m[i].name, a->m[i].value, b->m[i].name,
                  b->m[i].value);
    }
    rig_free(runs[0]), rig_free(runs[1]);
}

/* Sleeps that the monotonic clock (the trainer's) sees in full. */
#define SLOW_TRAIN_NS 20000000L /* 20 ms a training batch */
#define SLOW_VAL_NS 50000000L   /* 50 ms a validation batch */

static void sleep_ns(long ns) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += ns;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        continue;
}

/* Cross-entropy that sleeps in each batch, longer in validation (grad mode
 * off) than in training. */
static Tensor *slow_val_loss(Tensor *out, Tensor *target, Reduction reduction) {
    sleep_ns(autograd_is_enabled() ? SLOW_TRAIN_NS : SLOW_VAL_NS);
    return tensor_cross_entropy(out, target, reduction);
}

/* samples_per_s counts training samples over training time, as a PyTorch
 * user times a loop: a validation (4 batches, 200 ms of sleep) far slower
 * than training (2 steps, 40 ms) is in epoch_time_s and not in
 * train_time_s. The bounds are what the sleeps add (a slow machine only
 * widens them), so the test checks what is counted, not a speed. */
Test(train, samples_per_s_over_training_time) {
    Tensor *x, *y, *vx, *vy;
    toy_data(32, 21, &x, &y);
    toy_data(64, 22, &vx, &vy);
    RigOptions o = {.out_features = 3, .seed = 23, .lr = 0.05, .epochs = 2,
                    .loss = slow_val_loss};
    Rig *r = rig_new(&o, x, y, vx, vy);
    r->rec.trainer = &r->t;
    cr_assert_eq(train_run(&r->t), 0, "%s", error_get());
    double sps[2], tt[2], et[2];
    cr_assert_eq(rec_values(&r->rec, "samples_per_s", sps, NULL, NULL), 2);
    cr_assert_eq(rec_values(&r->rec, "train_time_s", tt, NULL, NULL), 2);
    cr_assert_eq(rec_values(&r->rec, "epoch_time_s", et, NULL, NULL), 2);
    for (int e = 0; e < 2; e++) {
        cr_assert_geq(tt[e], 2 * SLOW_TRAIN_NS * 1e-9, "epoch %d: both steps are training", e);
        cr_assert_geq(et[e] - tt[e], 4 * SLOW_VAL_NS * 1e-9,
                      "epoch %d: training %.3f s of %.3f s, the validation's 0.2 s in it", e,
                      tt[e], et[e]);
        cr_assert_float_eq(sps[e] * tt[e], 32, 1e-9, "epoch %d: %.17g samples/s over %.17g s",
                           e, sps[e], tt[e]);
        cr_assert_gt(sps[e], 32 / et[e]);
    }
    /* live (progress): at each step's loss, the epoch's finished steps over
     * their time; nothing yet at an epoch's first step */
    cr_assert_eq(r->rec.nlive, 4);
    for (int k = 0; k < 4; k++) {
        if (k % 2 == 0) {
            cr_assert_eq(r->rec.live[k], 0, "step %d: %g", k + 1, r->rec.live[k]);
            continue;
        }
        double took = 16 / r->rec.live[k]; /* step k's 16 samples */
        cr_assert(took >= SLOW_TRAIN_NS * 1e-9 && took <= tt[k / 2],
                  "step %d: %.3f s for the epoch's first step, %.3f s its training", k + 1, took,
                  tt[k / 2]);
    }
    rig_free(r);
}

Test(train, bad_trainer) {
    Trainer t;
    train_init(&t);
    cr_assert_eq(train_run(&t), -1);
    cr_assert(strstr(error_get(), "needs a model"), "%s", error_get());
}

/* ---- NaN / Inf ---- */

Test(train, nan_input_names_the_step) {
    Tensor *x, *y;
    toy_data(50, 6, &x, &y);
    ((float *)tensor_data(x))[4 * 37 + 2] = NAN; /* sample 37: batch 2 of epoch 1 */
    RigOptions o = {.out_features = 3, .seed = 6, .lr = 0.1, .epochs = 3};
    Rig *r = rig_new(&o, x, y, NULL, NULL);
    cr_assert_eq(train_run(&r->t), -1);
    /* epoch 0: steps 1-4; its batch 2 (step 3) holds sample 37 */
    cr_assert_str_eq(error_get(), "step 3: loss is nan");
    cr_assert(!r->t.cancelled, "a failure is not a cancel");
    cr_assert_eq(r->t.state.step, 2);
    cr_assert_eq(rec_values(&r->rec, "loss", NULL, NULL, NULL), 2);
    cr_assert(autograd_is_enabled());
    rig_free(r);
}

Test(train, huge_lr_diverges) {
    Tensor *x, *y, *t;
    toy_data(50, 7, &x, &t);
    tensor_release(t);
    /* regression targets far away and an absurd lr: the loss overflows */
    y = tensor_full(SHAPE(50, 1), 1e4, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    RigOptions o = {.out_features = 1, .seed = 7, .lr = 1e6, .loss = tensor_mse_loss,
                    .epochs = 50};
    Rig *r = rig_new(&o, x, y, NULL, NULL);
    cr_assert_eq(train_run(&r->t), -1);
    int64_t k = rec_values(&r->rec, "loss", NULL, NULL, NULL);
    char want[64];
    snprintf(want, sizeof want, "step %lld: loss is ", (long long)(k + 1));
    cr_assert(strncmp(error_get(), want, strlen(want)) == 0, "%s (want %s...)", error_get(),
              want);
    const char *what = error_get() + strlen(want);
    cr_assert(!strcmp(what, "nan") || !strcmp(what, "inf"), "%s", error_get());
    cr_assert_eq(r->t.state.step, k);
    rig_free(r);
}

Test(train, accuracy_needs_labels) {
    Tensor *x, *t;
    toy_data(50, 8, &x, &t);
    tensor_release(t);
    Tensor *y = tensor_zeros(SHAPE(50, 1), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    RigOptions o = {.out_features = 1, .seed = 8, .lr = 0.01, .loss = tensor_mse_loss,
                    .epochs = 1, .accuracy = true};
    Rig *r = rig_new(&o, x, y, NULL, NULL);
    cr_assert_eq(train_run(&r->t), -1);
    cr_assert(strstr(error_get(), "step 1: accuracy needs"), "%s", error_get());
    rig_free(r);
}

/* ---- cancel ---- */

/* A group of one rank that runs its collectives (as TRAIND_DIST_ONE_RANK
 * does), whose question "does any rank stop?" (one int64) fails the
 * `fail_at`-th time it is asked: a peer gone, as MPI or NCCL says. */
static int asked, fail_at;
static int one_all_reduce(DistGroup *g, void *buf, int64_t count, DType dtype) {
    (void)g, (void)buf;
    if (count == 1 && dtype == DTYPE_INT64 && ++asked == fail_at)
        return error_set("MPI_Allreduce: a peer process is gone");
    return 0;
}
static int one_start(DistGroup *g, void *buf, int64_t count, DType dtype, DistRequest **req) {
    (void)g, (void)buf, (void)count, (void)dtype;
    *req = (DistRequest *)&asked; /* a request that is done at once */
    return 0;
}
static void one_progress(DistGroup *g, DistRequest *req) { (void)g, (void)req; }
static int one_wait(DistGroup *g, DistRequest *req) { (void)g, (void)req; return 0; }
static int one_broadcast(DistGroup *g, void *buf, int64_t bytes, int root) {
    (void)g, (void)buf, (void)bytes, (void)root;
    return 0;
}
static void one_abort(DistGroup *g, int code) { (void)g, (void)code; }

/* A collective that fails is the run's failure with its error, not a
 * cancel: the ranks that could not ask must not report "cancelled". */
Test(train, a_failed_collective_is_a_failure_not_a_cancel) {
    Tensor *x, *y;
    toy_data(50, 9, &x, &y);
    RigOptions o = {.out_features = 3, .seed = 9, .lr = 0.1, .epochs = 2};
    Rig *r = rig_new(&o, x, y, NULL, NULL);
    DistGroup g = {.backend = "mpi", .rank = 0, .world = 1, .always = true,
                   .all_reduce = one_all_reduce, .all_reduce_start = one_start,
                   .progress = one_progress, .wait = one_wait, .broadcast = one_broadcast,
                   .abort = one_abort};
    r->t.dist = &g;
    asked = 0, fail_at = 3;
    cr_assert_eq(train_run(&r->t), -1);
    cr_assert(strstr(error_get(), "step 2: asking the ranks whether to stop: MPI_Allreduce: a peer "
                                  "process is gone"),
              "%s", error_get());
    cr_assert(!r->t.cancelled, "a failed collective taken for a cancel");
    cr_assert_eq(r->t.state.step, 2);
    rig_free(r);
}

Test(train, cancel_flag) {
    Tensor *x, *y, *vx, *vy;
    toy_data(50, 9, &x, &y);
    toy_data(20, 10, &vx, &vy);
    RigOptions o = {.out_features = 3, .seed = 9, .lr = 0.1, .epochs = 3, .prefetch = 2};
    Rig *r = rig_new(&o, x, y, vx, vy);
    r->rec.cancel_at_step = 6;
    cr_assert_eq(train_run(&r->t), -1);
    cr_assert_str_eq(error_get(), "cancelled at step 6");
    cr_assert(r->t.cancelled, "the run says it stopped at the cancel");
    cr_assert_eq(rec_values(&r->rec, "loss", NULL, NULL, NULL), 6);
    cr_assert_eq(rec_values(&r->rec, "train_loss", NULL, NULL, NULL), 1);
    cr_assert_eq(r->t.state.step, 6);
    cr_assert_eq(r->t.state.epoch, 1);
    cr_assert_eq(r->t.state.batch, 2);
    cr_assert_eq(r->t.state.samples, 32);
    rig_free(r);

    /* set before the start: nothing runs */
    toy_data(50, 9, &x, &y);
    r = rig_new(&o, x, y, NULL, NULL);
    atomic_store(&r->cancel, 1);
    cr_assert_eq(train_run(&r->t), -1);
    cr_assert_str_eq(error_get(), "cancelled at step 0");
    cr_assert(r->t.cancelled);
    cr_assert_eq(r->rec.n, 0);
    rig_free(r);
}

/* ---- PyTorch parity (tests/fixtures/gen_train.py) ---- */

static void parity(const char *name) {
    json_t *fx = fixture_load("train");
    json_t *c = fixture_case(fx, name);
    int out = (int)fixture_number(c, "out_features");
    int epochs = (int)fixture_number(c, "epochs");
    bool cls = out > 1;
    LrSchedulerConfig sc;
    RigOptions o = {.out_features = out, .seed = 11, .epochs = epochs, .accuracy = cls,
                    .batch_size = (int64_t)fixture_number(c, "batch_size"), .sched = &sc,
                    .loss = cls ? tensor_cross_entropy : tensor_mse_loss};
    if (!strcmp(name, "sgd_momentum_lambda")) {
        lr_scheduler_config_init(&sc, LR_SCHEDULER_LAMBDA);
        sc.lr_lambda = "0.95 ** epoch";
        o.lr = 0.1;
        o.momentum = 0.9;
    } else if (!strcmp(name, "adam_steplr")) {
        lr_scheduler_config_init(&sc, LR_SCHEDULER_STEP);
        sc.step_size = 1;
        sc.gamma = 0.5;
        o.adam = true;
        o.lr = 0.01;
    } else {
        lr_scheduler_config_init(&sc, LR_SCHEDULER_EXPONENTIAL);
        sc.gamma = 0.9;
        o.lr = 0.05;
    }
    Rig *r = rig_new(&o, fixture_tensor(c, "x"), fixture_tensor(c, "y"),
                     fixture_tensor(c, "val_x"), fixture_tensor(c, "val_y"));
    /* torch's initial weights, by state_dict name */
    TensorDict sd;
    tensor_dict_init(&sd);
    const char *keys[] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    for (int i = 0; i < 4; i++) {
        char k[32];
        snprintf(k, sizeof k, "init.%s", keys[i]);
        Tensor *w = fixture_tensor(c, k);
        cr_assert_eq(tensor_dict_set(&sd, keys[i], w), 0);
        tensor_release(w);
    }
    cr_assert_eq(module_load_state_dict(r->model, &sd, true), 0, "%s", error_get());
    tensor_dict_free(&sd);

    cr_assert_eq(train_run(&r->t), 0, "%s", error_get());

    const char *names[] = {"loss", "lr", "train_loss", "train_accuracy", "val_loss",
                           "val_accuracy"};
    for (int i = 0; i < 6; i++) {
        if (!cls && strstr(names[i], "accuracy")) {
            cr_assert_eq(rec_values(&r->rec, names[i], NULL, NULL, NULL), 0);
            continue;
        }
        Tensor *want = fixture_tensor(c, names[i]);
        double got[64];
        int n = rec_values(&r->rec, names[i], got, NULL, NULL);
        cr_assert_eq(n, tensor_numel(want), "%s: %d values, torch has %lld", names[i], n,
                     (long long)tensor_numel(want));
        Tensor *g = tensor_from_doubles(got, SHAPE(n), DTYPE_FLOAT64);
        char what[64];
        snprintf(what, sizeof what, "%s %s", name, names[i]);
        /* accuracies are counts over 50 or 20: exact up to one rounding */
        assert_tensor_close(g, want, strstr(names[i], "accuracy") ? 0 : 1e-4, 1e-12, what);
        tensor_release(g);
        tensor_release(want);
    }
    rig_free(r);
    json_decref(fx);
}

Test(train, parity_sgd_momentum_lambdalr) { parity("sgd_momentum_lambda"); }
Test(train, parity_adam_steplr) { parity("adam_steplr"); }
Test(train, parity_mse_regression) { parity("mse_regression_sgd_exponential"); }

/* ---- checkpoints and resuming ---- */

static RigOptions resume_options(uint64_t seed, int prefetch) {
    static LrSchedulerConfig sc;
    lr_scheduler_config_init(&sc, LR_SCHEDULER_LAMBDA);
    sc.lr_lambda = "0.9 ** epoch";
    return (RigOptions){.out_features = 3, .dropout = true, .shuffle = true,
                        .prefetch = prefetch, .seed = seed, .lr = 0.1, .momentum = 0.9,
                        .sched = &sc, .epochs = 4, .accuracy = true};
}

static Rig *resume_rig(uint64_t seed, int prefetch) {
    Tensor *x, *y, *vx, *vy;
    toy_data(50, 31, &x, &y);
    toy_data(20, 32, &vx, &vy);
    RigOptions o = resume_options(seed, prefetch);
    return rig_new(&o, x, y, vx, vy);
}

/* Metric `name` of b equals a's bit for bit at the same steps, for every
 * step b has; returns how many were compared. */
static int assert_same_tail(const Rec *a, const Rec *b, const char *name) {
    double va[64], vb[64];
    int64_t sa[64], sb[64];
    int na = rec_values(a, name, va, sa, NULL), nb = rec_values(b, name, vb, sb, NULL);
    cr_assert(nb > 0 && nb <= na, "%s: %d values after the resume, %d in the whole run", name,
              nb, na);
    for (int i = 0; i < nb; i++) {
        int j = na - nb + i;
        cr_assert_eq(sb[i], sa[j], "%s: step %lld after the resume, %lld in the whole run", name,
                     (long long)sb[i], (long long)sa[j]);
        cr_assert(vb[i] == va[j], "%s at step %lld: %.17g after the resume, %.17g uninterrupted",
                  name, (long long)sb[i], vb[i], va[j]);
    }
    return nb;
}

Test(train, resume_at_epoch_end_is_bit_identical) {
    char tmp[64];
    tmp_dir_make(tmp, sizeof tmp, "train");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);

    Rig *a = resume_rig(21, 2); /* uninterrupted */
    cr_assert_eq(train_run(&a->t), 0, "%s", error_get());
    cr_assert_eq(rec_values(&a->rec, "loss", NULL, NULL, NULL), 16);
    cr_assert(a->drop_rng.offset > 0, "Dropout drew masks");

    Rig *b = resume_rig(21, 0); /* checkpoint after epoch 1, then stop */
    b->t.checkpoint_every = 2;
    b->rec.ckpt_dir = dir;
    b->rec.cancel_after_ckpt = true;
    cr_assert_eq(train_run(&b->t), -1);
    cr_assert_str_eq(error_get(), "cancelled at step 8");
    cr_assert_eq(b->rec.ckpts, 1);

    /* a trainer built with other weights, seeds and data order */
    Rig *c = resume_rig(99, 0);
    cr_assert_eq(train_resume(&c->t, dir), 0, "%s", error_get());
    cr_assert_eq(c->t.state.step, 8);
    cr_assert_eq(c->t.state.epoch, 2);
    cr_assert_eq(c->drop_rng.seed, b->drop_rng.seed);
    cr_assert_eq(train_run(&c->t), 0, "%s", error_get());
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "loss"), 8);
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "lr"), 8);
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "train_loss"), 2);
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "train_accuracy"), 2);
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "val_loss"), 2);
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "val_accuracy"), 2);
    cr_assert_eq(c->drop_rng.offset, a->drop_rng.offset);
    /* and b's first half was a's */
    double la[16], lb[16];
    rec_values(&a->rec, "loss", la, NULL, NULL);
    cr_assert_eq(rec_values(&b->rec, "loss", lb, NULL, NULL), 8);
    cr_assert(memcmp(la, lb, sizeof(double) * 8) == 0);

    rig_free(a);
    rig_free(b);
    rig_free(c);
    tmp_dir_remove(tmp);
}

/* Stops after step `stop` (cancel), saves, resumes in a trainer built with
 * other seeds, and compares the rest with an uninterrupted run. */
static void resume_after_cancel(int64_t stop, int epoch, int64_t batch) {
    char tmp[64];
    tmp_dir_make(tmp, sizeof tmp, "train");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);

    Rig *a = resume_rig(22, 0);
    cr_assert_eq(train_run(&a->t), 0, "%s", error_get());

    Rig *b = resume_rig(22, 2);
    b->rec.cancel_at_step = stop;
    cr_assert_eq(train_run(&b->t), -1);
    char want[64];
    snprintf(want, sizeof want, "cancelled at step %lld", (long long)stop);
    cr_assert_str_eq(error_get(), want);
    cr_assert(b->t.cancelled);
    cr_assert_eq(train_save_checkpoint(&b->t, dir), 0, "%s", error_get());

    Rig *c = resume_rig(77, 2);
    cr_assert_eq(train_resume(&c->t, dir), 0, "%s", error_get());
    cr_assert_eq(c->t.state.epoch, epoch);
    cr_assert_eq(c->t.state.batch, batch);
    cr_assert(c->t.state.epoch_begun);
    cr_assert_eq(train_run(&c->t), 0, "%s", error_get());
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "loss"), 16 - stop);
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "lr"), 16 - stop);
    /* the stopped epoch's train_loss and accuracy include the batches
     * before the stop */
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "train_loss"), 4 - epoch);
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "train_accuracy"), 4 - epoch);
    cr_assert_eq(assert_same_tail(&a->rec, &c->rec, "val_loss"), 4 - epoch);
    cr_assert_eq(c->drop_rng.offset, a->drop_rng.offset);

    rig_free(a);
    rig_free(b);
    rig_free(c);
    tmp_dir_remove(tmp);
}

Test(train, checkpoint_files) {
    char tmp[64];
    tmp_dir_make(tmp, sizeof tmp, "train");
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    Rig *r = resume_rig(23, 0);
    r->t.epochs = 3;
    r->t.checkpoint_every = 2; /* after epoch 1, and after the last */
    r->rec.ckpt_dir = dir;
    cr_assert_eq(train_run(&r->t), 0, "%s", error_get());
    cr_assert_eq(r->rec.ckpts, 2);
    /* the second save replaced the first; no temporary left beside it */
    cr_assert_eq(tmp_dir_count(tmp), 1);
    cr_assert_eq(tmp_dir_count(dir), 2);

    /* model.safetensors: exactly the state_dict, PyTorch names, the weights */
    TensorDict sd, own;
    tensor_dict_init(&sd);
    tensor_dict_init(&own);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(safetensors_load(path, &sd, NULL), 0, "%s", error_get());
    cr_assert_eq(module_state_dict(r->model, &own), 0);
    cr_assert_eq(sd.count, 4);
    const char *names[] = {"0.weight", "0.bias", "3.weight", "3.bias"};
    for (int i = 0; i < 4; i++) {
        cr_assert_str_eq(sd.names[i], names[i]);
        assert_tensor_close(sd.tensors[i], tensor_dict_get(&own, names[i]), 0, 0, names[i]);
    }
    tensor_dict_free(&sd);
    tensor_dict_free(&own);

    /* trainer.safetensors: the optimizer's state under torch's names and
     * the positions in the metadata */
    SafetensorsMeta meta;
    safetensors_meta_init(&meta);
    tensor_dict_init(&sd);
    snprintf(path, sizeof path, "%s/trainer.safetensors", dir);
    cr_assert_eq(safetensors_load(path, &sd, &meta), 0, "%s", error_get());
    cr_assert(tensor_dict_get(&sd, "state.0.momentum_buffer"));
    cr_assert(tensor_dict_get(&sd, "param_groups.0.lr"));
    cr_assert_str_eq(safetensors_meta_get(&meta, "optimizer"), "SGD");
    cr_assert_str_eq(safetensors_meta_get(&meta, "step"), "12");
    cr_assert_str_eq(safetensors_meta_get(&meta, "epoch"), "3");
    cr_assert_str_eq(safetensors_meta_get(&meta, "scheduler.last_epoch"), "3");
    cr_assert_str_eq(safetensors_meta_get(&meta, "train_data.batch"), "4");
    cr_assert(safetensors_meta_get(&meta, "dropout.rng_offset"));
    tensor_dict_free(&sd);
    safetensors_meta_free(&meta);

    /* a finished run resumed has nothing left to do */
    Rig *c = resume_rig(5, 0);
    c->t.epochs = 3;
    cr_assert_eq(train_resume(&c->t, dir), 0, "%s", error_get());
    cr_assert_eq(train_run(&c->t), 0, "%s", error_get());
    cr_assert_eq(rec_values(&c->rec, "loss", NULL, NULL, NULL), 0);
    rig_free(c);

    rig_free(r);
    tmp_dir_remove(tmp);
}

Test(train, a_checkpoint_on_a_full_disk_fails_and_leaves_nothing, .fini = full_disk_unmount) {
    const char *disk = full_disk_mount("train-full", 256);
    char before[128], dir[128];
    snprintf(before, sizeof before, "%s/epoch-0", disk);
    snprintf(dir, sizeof dir, "%s/epoch-1", disk);
    Rig *r = resume_rig(25, 0);
    r->t.epochs = 1;
    cr_assert_eq(train_run(&r->t), 0, "%s", error_get());
    cr_assert_eq(train_save_checkpoint(&r->t, before), 0, "%s", error_get());
    full_disk_fill();

    r->t.epochs = 2;
    r->t.checkpoint_every = 1;
    r->rec.ckpt_dir = dir;
    cr_assert_eq(train_run(&r->t), -1);
    cr_assert(strncmp(error_get(), "checkpoint epoch-1: ", 20) == 0, "%s", error_get());
    cr_assert(strstr(error_get(), "No space left on device"), "%s", error_get());
    cr_assert_eq(error_last()->sys_errno, ENOSPC, "%s", error_get());
    /* epoch-0 and the filler: no epoch-1, no temporary directory */
    cr_assert_eq(tmp_dir_count(disk), 2);
    cr_assert_eq(tmp_dir_count(before), 2);

    Rig *c = resume_rig(6, 0);
    cr_assert_eq(train_resume(&c->t, before), 0, "%s", error_get());
    cr_assert_eq(c->t.state.epoch, 1);
    rig_free(c);
    rig_free(r);
}

Test(train, resume_errors) {
    char tmp[64];
    tmp_dir_make(tmp, sizeof tmp, "train");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    Rig *r = resume_rig(24, 0);
    r->t.epochs = 1;
    cr_assert_eq(train_run(&r->t), 0, "%s", error_get());
    cr_assert_eq(train_save_checkpoint(&r->t, dir), 0, "%s", error_get());

    /* no such checkpoint */
    cr_assert_eq(train_resume(&r->t, "/nonexistent/ckpt"), -1);
    cr_assert(strstr(error_get(), "/nonexistent/ckpt/model.safetensors"), "%s", error_get());

    /* another optimizer */
    Tensor *x, *y;
    toy_data(50, 31, &x, &y);
    RigOptions o = resume_options(24, 0);
    o.adam = true;
    Rig *a = rig_new(&o, x, y, NULL, NULL);
    cr_assert_eq(train_resume(&a->t, dir), -1);
    cr_assert(strstr(error_get(), "optimizer is SGD but the trainer's is Adam"), "%s",
              error_get());
    rig_free(a);

    /* another model: refused before anything changes */
    toy_data(50, 31, &x, &y);
    o = resume_options(24, 0);
    o.dropout = false;
    o.out_features = 2;
    a = rig_new(&o, x, y, NULL, NULL);
    a->t.rng = &a->drop_rng;
    cr_assert_eq(train_resume(&a->t, dir), -1);
    cr_assert(strstr(error_get(), "load_state_dict"), "%s", error_get());
    rig_free(a);

    /* a trainer without a scheduler */
    toy_data(50, 31, &x, &y);
    o = resume_options(24, 0);
    o.sched = NULL;
    a = rig_new(&o, x, y, NULL, NULL);
    cr_assert_eq(train_resume(&a->t, dir), -1);
    cr_assert(strstr(error_get(), "has a scheduler but the trainer has none"), "%s",
              error_get());
    rig_free(a);

    /* a scheduler that cannot be put at the saved epoch: the file named */
    toy_data(50, 31, &x, &y);
    o = resume_options(24, 0);
    LrSchedulerConfig fails_at_1;
    lr_scheduler_config_init(&fails_at_1, LR_SCHEDULER_LAMBDA);
    fails_at_1.lr_lambda = "1 / (1 - epoch)";
    o.sched = &fails_at_1;
    a = rig_new(&o, x, y, NULL, NULL);
    cr_assert_eq(train_resume(&a->t, dir), -1);
    char named[4300];
    snprintf(named, sizeof named, "'%s/trainer.safetensors': ", dir);
    cr_assert(strstr(error_get(), named), "%s", error_get());
    cr_assert(strstr(error_get(), "division by zero"), "%s", error_get());
    rig_free(a);

    /* a step or an epoch past the trainer's end (a hostile or mismatched
     * file): refused, naming the key, before step + 1 overflows */
    char tpath[4300];
    snprintf(tpath, sizeof tpath, "%s/trainer.safetensors", dir);
    static const char *const keys[] = {"step", "epoch"};
    static const char *const want[] = {"metadata 'step' is not an integer in [0, 4]",
                                       "metadata 'epoch' is not an integer in [0, 1]"};
    for (int k = 0; k < 2; k++) {
        TensorDict sd;
        SafetensorsMeta meta;
        tensor_dict_init(&sd);
        safetensors_meta_init(&meta);
        cr_assert_eq(safetensors_load(tpath, &sd, &meta), 0, "%s", error_get());
        char saved[32];
        snprintf(saved, sizeof saved, "%s", safetensors_meta_get(&meta, keys[k]));
        cr_assert_eq(safetensors_meta_set(&meta, keys[k], "9223372036854775807"), 0);
        cr_assert_eq(safetensors_save(tpath, &sd, &meta), 0, "%s", error_get());
        cr_assert_eq(train_resume(&r->t, dir), -1);
        cr_assert(strstr(error_get(), want[k]), "%s", error_get());
        cr_assert_eq(safetensors_meta_set(&meta, keys[k], saved), 0);
        cr_assert_eq(safetensors_save(tpath, &sd, &meta), 0, "%s", error_get());
        tensor_dict_free(&sd);
        safetensors_meta_free(&meta);
    }
    cr_assert_eq(train_resume(&r->t, dir), 0, "restored: %s", error_get());

    /* a directory that is a file */
    char file[4300];
    snprintf(file, sizeof file, "%s/plain", tmp);
    FILE *f = fopen(file, "w");
    cr_assert(f);
    fclose(f);
    cr_assert_eq(train_save_checkpoint(&r->t, file), -1);
    cr_assert(strstr(error_get(), "not a directory"), "%s", error_get());

    rig_free(r);
    tmp_dir_remove(tmp);
}

/* epoch 1, two of its four batches done */
Test(train, resume_mid_epoch_is_bit_identical) { resume_after_cancel(6, 1, 2); }
/* epoch 0's batches all done, its validation and scheduler step not */
Test(train, resume_before_validation_is_bit_identical) { resume_after_cancel(4, 0, 4); }

/* ---- init weights ---- */

Test(train, load_init) {
    char tmp[64];
    tmp_dir_make(tmp, sizeof tmp, "train");
    char path[4300];
    snprintf(path, sizeof path, "%s/init.safetensors", tmp);
    Rng g;
    rng_init(&g, 1);
    Module *src = tiny_mlp(3, false, &g), *dst = tiny_mlp(3, false, &g);
    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert_eq(module_state_dict(src, &sd), 0);
    cr_assert_eq(safetensors_save(path, &sd, NULL), 0, "%s", error_get());
    cr_assert(tensor_get(module_find(src, "0.weight"), 0) !=
              tensor_get(module_find(dst, "0.weight"), 0));
    cr_assert_eq(train_load_init(dst, path), 0, "%s", error_get());
    for (int i = 0; i < sd.count; i++)
        assert_tensor_close(module_find(dst, sd.names[i]), sd.tensors[i], 0, 0, sd.names[i]);

    /* strict: a missing key is an error naming the file and the key */
    TensorDict part;
    tensor_dict_init(&part);
    for (int i = 0; i < 3; i++) tensor_dict_set(&part, sd.names[i], sd.tensors[i]);
    cr_assert_eq(safetensors_save(path, &part, NULL), 0, "%s", error_get());
    cr_assert_eq(train_load_init(dst, path), -1);
    cr_assert(strstr(error_get(), path) && strstr(error_get(), "missing key(s) '2.bias'"), "%s",
              error_get());
    cr_assert_eq(train_load_init(dst, "/nonexistent.safetensors"), -1);
    cr_assert(strstr(error_get(), "/nonexistent.safetensors"), "%s", error_get());

    tensor_dict_free(&part);
    tensor_dict_free(&sd);
    module_free(src);
    module_free(dst);
    tmp_dir_remove(tmp);
}

/* interval "step" (OneCycleLR's default): the scheduler steps after every
 * optimizer step, so the logged lr of step k is the schedule's lr at k - 1,
 * across epoch boundaries, and SGD's momentum follows cycle_momentum. */
Test(train, one_cycle_steps_per_batch) {
    Tensor *x, *y;
    toy_data(50, 5, &x, &y);
    LrSchedulerConfig sc;
    lr_scheduler_config_init(&sc, LR_SCHEDULER_ONE_CYCLE);
    sc.max_lr = 0.5;
    sc.total_steps = 12; /* 3 epochs of 4 batches */
    RigOptions o = {.out_features = 3, .seed = 4, .lr = 0.1, .momentum = 0.9, .sched = &sc,
                    .epochs = 3};
    Rig *r = rig_new(&o, x, y, NULL, NULL);
    cr_assert(lr_scheduler_per_step(r->sched));
    cr_assert_eq(train_run(&r->t), 0, "%s", error_get());
    LrScheduler *ref = lr_scheduler_new(&sc, 0.1);
    cr_assert(ref, "%s", error_get());
    double lr[32];
    int64_t steps[32];
    cr_assert_eq(rec_values(&r->rec, "lr", lr, steps, NULL), 12);
    for (int k = 0; k < 12; k++) {
        cr_assert_eq(steps[k], k + 1);
        cr_expect_eq(lr[k], lr_scheduler_get_lr(ref), "step %d: lr %.17g, schedule %.17g", k + 1,
                     lr[k], lr_scheduler_get_lr(ref));
        cr_assert_eq(lr_scheduler_step(ref), 0, "%s", error_get());
    }
    /* after the run: the schedule's 12th step, lr and momentum */
    double m, hp[OPTIMIZER_MAX_HPARAMS];
    cr_assert(lr_scheduler_momentum(ref, &m));
    r->opt->type->get_hparams(r->opt, hp);
    cr_expect_eq(r->opt->lr, lr_scheduler_get_lr(ref));
    cr_expect_eq(hp[0], m, "momentum %.17g, schedule %.17g", hp[0], m); /* hparam 0: momentum */
    cr_expect_eq(lr_scheduler_last_epoch(r->sched), 12);
    lr_scheduler_free(ref);
    rig_free(r);
}
