/* cmd_run.c - `traind run JOB.json [--jsonl] [--device D] [--out DIR]`:
 * one job in the foreground, no server.
 *
 * The glue between a job file and the trainer: parse and validate the spec,
 * load its inline data sources, check shapes against the data, build the
 * model (or load `init`), optimizer, scheduler and loaders, then train,
 * reporting a progress bar on a terminal or design.md's JSON lines with
 * --jsonl, and writing checkpoints under DIR (default ./runs/<name>):
 * DIR/epoch-<N>/{model,trainer}.safetensors, the last `keep_last` kept.
 */
#include "server/cmd_run.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/spec.h"
#include "core/train.h"

typedef struct {
    const JobSpec *spec;
    const char *out_dir;
    bool jsonl, tty;
    int64_t total_steps;
    double start;
} RunContext;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    RunContext *rc = user;
    if (rc->jsonl) {
        printf("{\"event\":\"metric\",\"name\":\"%s\",\"step\":%lld,\"epoch\":%d,\"value\":%.17g}\n",
               name, (long long)step, epoch, value);
        return;
    }
    if (!rc->tty || strcmp(name, "loss") != 0) return;
    /* progress bar: epoch, step/total, loss, samples/s, ETA */
    double elapsed = now_s() - rc->start;
    double eta = step > 0 ? elapsed * (double)(rc->total_steps - step) / (double)step : 0;
    int width = 30, filled = rc->total_steps ? (int)(width * step / rc->total_steps) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\repoch %d [%s] %lld/%lld loss %.4f eta %.0fs   ", epoch, bar,
            (long long)step, (long long)rc->total_steps, value, eta);
}

static void on_log(void *user, const char *line) {
    RunContext *rc = user;
    if (rc->jsonl) return;
    fprintf(stderr, "%s%s\n", rc->tty ? "\r" : "", line);
}

/* Removes DIR/epoch-* beyond the newest keep_last. */
static void prune_checkpoints(const char *dir, int keep_last) {
    DIR *d = opendir(dir);
    if (!d) return;
    int epochs[4096], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        int ep;
        char tail;
        if (sscanf(e->d_name, "epoch-%d%c", &ep, &tail) == 1) epochs[n++] = ep;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j = 0; j < n; j++) newer += epochs[j] > epochs[i];
        if (newer < keep_last) continue;
        char path[4096], file[4200];
        snprintf(path, sizeof path, "%s/epoch-%d", dir, epochs[i]);
        /* files first, then the directory */
        snprintf(file, sizeof file, "%s/model.safetensors", path);
        unlink(file);
        snprintf(file, sizeof file, "%s/trainer.safetensors", path);
        unlink(file);
        rmdir(path);
    }
}

static int on_checkpoint(void *user, const Trainer *t, int epoch, int64_t step) {
    RunContext *rc = user;
    if (mkdir(rc->out_dir, 0755) != 0 && errno != EEXIST)
        return error_set("checkpoint: cannot create %s: %s", rc->out_dir, strerror(errno));
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/epoch-%d", rc->out_dir, epoch);
    if (train_save_checkpoint(t, dir) != 0) return -1;
    prune_checkpoints(rc->out_dir, rc->spec->checkpoint_keep_last);
    if (rc->jsonl)
        printf("{\"event\":\"checkpoint\",\"epoch\":%d,\"step\":%lld,\"path\":\"%s\"}\n", epoch,
               (long long)step, dir);
    else
        fprintf(stderr, "%scheckpoint: %s\n", rc->tty ? "\r" : "", dir);
    return 0;
}

static TrainLossFn loss_fn_of(const JobSpec *spec) {
    switch (spec->loss) {
    case SPEC_LOSS_MSE: return tensor_mse_loss;
    case SPEC_LOSS_L1: return tensor_l1_loss;
    case SPEC_LOSS_CROSS_ENTROPY: return tensor_cross_entropy;
    case SPEC_LOSS_NLL: return tensor_nll_loss;
    case SPEC_LOSS_BCE: return tensor_bce_loss;
    case SPEC_LOSS_BCE_WITH_LOGITS: return tensor_bce_with_logits;
    }
    return NULL;
}

/* Everything a run owns, freed in one place. */
typedef struct {
    JobSpec *spec;
    Dataset *train_ds, *val_ds;
    Module *model;
    Optimizer *opt;
    LrScheduler *sched;
    DataLoader *train, *val;
    Rng init_rng, dropout_rng;
} Run;

static void run_free(Run *r) {
    dataloader_free(r->train);
    dataloader_free(r->val);
    lr_scheduler_free(r->sched);
    optimizer_free(r->opt);
    if (r->model) module_free(r->model);
    dataset_free(r->train_ds);
    dataset_free(r->val_ds);
    job_spec_free(r->spec);
}

static int run_build(Run *r, const char *job_path) {
    r->spec = job_spec_parse_file(job_path);
    if (!r->spec) return -1;
    const JobSpec *spec = r->spec;
    if (spec->reduction != REDUCTION_MEAN)
        return error_set("loss.reduction: the trainer logs batch-mean losses; only 'mean' is "
                         "supported");
    r->train_ds = job_spec_load_source(spec, &spec->train);
    if (!r->train_ds || job_spec_check_data(spec, r->train_ds) != 0) return -1;
    if (spec->val.kind != SPEC_SOURCE_NONE) {
        r->val_ds = job_spec_load_source(spec, &spec->val);
        if (!r->val_ds || job_spec_check_data(spec, r->val_ds) != 0) return -1;
    }
    rng_init(&r->init_rng, spec->seed);
    rng_init(&r->dropout_rng, spec->seed + 1);
    r->model = job_spec_build_model(spec, &r->init_rng);
    if (!r->model) return -1;
    if (spec->init && train_load_init(r->model, spec->init) != 0) return error_prefix("init");
    r->opt = job_spec_build_optimizer(spec, r->model);
    if (!r->opt || job_spec_build_scheduler(spec, job_spec_lr(spec), &r->sched) != 0) return -1;
    DataLoaderOptions lo = {.batch_size = spec->batch_size, .shuffle = spec->shuffle,
                            .seed = spec->seed, .drop_last = spec->drop_last, .prefetch = 2};
    r->train = dataloader_new(r->train_ds, &lo, &spec->transforms);
    if (!r->train) return error_prefix("data.train");
    if (r->val_ds) {
        DataLoaderOptions vo = {.batch_size = spec->batch_size, .prefetch = 2};
        r->val = dataloader_new(r->val_ds, &vo, &spec->transforms);
        if (!r->val) return error_prefix("data.val");
    }
    return 0;
}

int cmd_run(int argc, char **argv) {
    const char *job = NULL, *device_arg = NULL, *out_arg = NULL;
    bool jsonl = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--jsonl") == 0)
            jsonl = true;
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device_arg = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out_arg = argv[++i];
        else if (argv[i][0] != '-' && !job)
            job = argv[i];
        else {
            fprintf(stderr, "traind run: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!job) {
        fprintf(stderr, "usage: traind run JOB.json [--jsonl] [--device cpu] [--out DIR]\n");
        return 2;
    }
    Run r = {0};
    int status = 1;
    if (run_build(&r, job) != 0) goto done;
    Device device = DEVICE_CPU_INIT;
    if (device_arg && device_parse(device_arg, &device) != 0) goto done;
    if (!device_arg && !r.spec->device_auto) device = r.spec->device;
    if (device.type != DEVICE_CPU) {
        error_set("device: %s is not supported by this build's trainer yet", device_arg
                      ? device_arg : "cuda");
        goto done;
    }
    char out_dir[4096];
    if (out_arg)
        snprintf(out_dir, sizeof out_dir, "%s", out_arg);
    else {
        mkdir("runs", 0755);
        snprintf(out_dir, sizeof out_dir, "runs/%s", r.spec->name[0] ? r.spec->name : "job");
    }
    RunContext ctx = {.spec = r.spec, .out_dir = out_dir, .jsonl = jsonl,
                      .tty = isatty(STDERR_FILENO), .start = now_s()};
    Trainer t;
    train_init(&t);
    t.model = r.model;
    t.opt = r.opt;
    t.sched = r.sched;
    t.train = r.train;
    t.val = r.val;
    t.rng = &r.dropout_rng;
    t.loss = loss_fn_of(r.spec);
    t.epochs = r.spec->epochs;
    t.accuracy = r.spec->accuracy;
    t.device = device;
    t.checkpoint_every = r.spec->checkpoint ? r.spec->checkpoint_every_epochs : 0;
    t.cb = (TrainCallbacks){.user = &ctx, .metric = on_metric, .log = on_log,
                            .checkpoint = on_checkpoint};
    ctx.total_steps = train_total_steps(&t);
    if (train_run(&t) == 0) status = 0;
    if (ctx.tty && !jsonl) fputc('\n', stderr);
done:
    if (status != 0) fprintf(stderr, "traind run: %s\n", error_get());
    fflush(stdout);
    run_free(&r);
    return status;
}
