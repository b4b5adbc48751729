/* run_local.c - `traind run JOB.json [--jsonl] [--device D] [--out DIR]
 * [--resume CHECKPOINT]`: one job in the foreground, no server.
 *
 * Launched as N ranks (`mpirun -np N traind run ...`, `srun --mpi=pmix
 * traind run ...`) the processes train the job together, data parallel
 * (core/train_dist.h): rank 0 prints and checkpoints, and one rank's
 * failure ends them all (a rank alone cannot leave the others waiting in a
 * collective).
 *
 * The glue between a job file and the trainer: parse and validate the spec,
 * then build it (job/build.c, shared with the daemon's workers:
 * inline data sources, shape checks, model or `init`, optimizer, scheduler
 * and loaders), then train,
 * reporting a progress bar on a terminal or design.md's JSON lines with
 * --jsonl (its metrics; its log lines as {"event":"log","line":...}), and writing checkpoints under DIR (default ./runs/<name>):
 * DIR/epoch-<N>/{model,trainer}.safetensors, the last `keep_last` kept.
 *
 * With --report URL --job ID --attempt N --token-file PATH the run is an
 * attempt of a daemon's job whose ranks run outside it (server/executor.h):
 * rank 0 also reports its metrics, log lines, progress, checkpoints and end
 * to the daemon (job/report.h), and stops when the daemon says the job was
 * cancelled or the attempt is over. --resume auto asks the daemon where to
 * start: rank 0 downloads the job's newest checkpoint under --out, and
 * every rank resumes from it. --datasets-cache DIR fetches the job's
 * datasets from the daemon into the node's DIR first (job/dataset_fetch.h:
 * the manifest datasets.json beside JOB.json says which).
 */
#include "job/run_local.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/backend.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/io/durable.h"
#include "core/json_text.h"
#include "core/spec.h"
#include "core/repr.h"
#include "core/train.h"
#include "dist/mpi.h"
#include "job/build.h"
#include "job/dataset_fetch.h"
#include "job/rank.h"
#include "job/report.h"
#include "storage/db.h"

typedef struct {
    const JobSpec *spec;
    const char *out_dir;
    bool jsonl, tty;
    int64_t total_steps;
    double start;           /* when training started, at start_step: the ETA's */
    int64_t start_step;     /* 0, or the checkpoint's it resumed from */
    Reporter *rep;          /* --report: rank 0's reports to the daemon, NULL otherwise */
    const Trainer *trainer; /* for the reported progress's samples/s */
    int64_t saved_step;     /* of the newest checkpoint written or resumed from (0: none) */
} RunContext;

/* s as a JSON string, quotes and escapes included (malloc'ed; NULL when
 * out of memory); bytes that are not UTF-8 become '?' (json_text). */
static char *json_quoted(const char *s) {
    json_t *text = json_text(s);
    char *out = text ? json_dumps(text, JSON_ENCODE_ANY) : NULL;
    json_decref(text);
    return out;
}

static void on_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    RunContext *rc = user;
    if (rc->rep) {
        report_metric(rc->rep, name, step, epoch, value);
        if (strcmp(name, "loss") == 0)
            report_progress(rc->rep, epoch, step, train_samples_per_s(&rc->trainer->state));
    }
    if (rc->jsonl) {
        char number[REPR_DOUBLE_MAX]; /* as the API writes it: 0.1, null for NaN */
        repr_double(number, value);
        char *quoted = json_quoted(name);
        if (quoted)
            printf("{\"event\":\"metric\",\"name\":%s,\"step\":%lld,\"epoch\":%d,\"value\":%s}\n",
                   quoted, (long long)step, epoch, number);
        free(quoted);
        return;
    }
    if (!rc->tty || strcmp(name, "loss") != 0) return;
    /* progress bar: epoch, step/total, loss, samples/s, ETA */
    double elapsed = clock_now_s() - rc->start;
    int64_t done = step - rc->start_step; /* in this process, at `elapsed` */
    double eta = done > 0 ? elapsed * (double)(rc->total_steps - step) / (double)done : 0;
    int width = 30, filled = rc->total_steps ? (int)(width * step / rc->total_steps) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\repoch %d [%s] %lld/%lld loss %.4f eta %.0fs   ", epoch, bar,
            (long long)step, (long long)rc->total_steps, value, eta);
}

static void on_log(void *user, const char *line) {
    RunContext *rc = user;
    if (rc->rep) report_log(rc->rep, line);
    if (!rc->jsonl) {
        fprintf(stderr, "%s%s\n", rc->tty ? "\r" : "", line);
        return;
    }
    char *quoted = json_quoted(line); /* a file's name in it may not be UTF-8 */
    if (quoted) printf("{\"event\":\"log\",\"line\":%s}\n", quoted);
    free(quoted);
}

/* Whether name is one of the checkpoints a run writes under --out:
 * epoch-<N>, step-<S> (durable_remove_strays touches those alone). */
static bool checkpoint_name(const char *name, void *ctx) {
    (void)ctx;
    const char *digits = !strncmp(name, "epoch-", 6) ? name + 6
                         : !strncmp(name, "step-", 5)  ? name + 5
                                                       : NULL;
    if (!digits || !*digits) return false;
    while (*digits >= '0' && *digits <= '9') digits++;
    return *digits == '\0';
}

/* Removes the checkpoint DIR/name: renamed aside first, so that a run
 * killed while removing leaves a temporary (durable_remove_strays takes
 * it), never a checkpoint of that name missing a file. */
static void remove_checkpoint(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *aside = durable_temp_name(path);
    if (aside && rename(path, aside) == 0) durable_remove_flat_dir(aside);
    free(aside);
}

/* Removes DIR/epoch-* beyond the newest keep_last up to `current` (just
 * written), and any past it: those are an earlier run's in a directory used
 * again (runs/<name>), and counted as newer they would remove this run's.
 * And every DIR/step-*: a stop's partial checkpoint, this run's own (it
 * resumed from it) or an earlier run's, is behind the one just written. */
static void prune_checkpoints(const char *dir, int keep_last, int current) {
    DIR *d = opendir(dir);
    if (!d) return;
    int epochs[4096], n = 0;
    char steps[64][32];
    int nsteps = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int ep;
        char tail;
        if (n < 4096 && sscanf(e->d_name, "epoch-%d%c", &ep, &tail) == 1) epochs[n++] = ep;
        size_t len = strlen(e->d_name);
        if (nsteps < 64 && len < sizeof steps[0] && !strncmp(e->d_name, "step-", 5) &&
            checkpoint_name(e->d_name, NULL))
            memcpy(steps[nsteps++], e->d_name, len + 1);
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j = 0; j < n; j++) newer += epochs[j] > epochs[i] && epochs[j] <= current;
        if (epochs[i] <= current && newer < keep_last) continue;
        char name[32];
        snprintf(name, sizeof name, "epoch-%d", epochs[i]);
        remove_checkpoint(dir, name);
    }
    for (int i = 0; i < nsteps; i++) remove_checkpoint(dir, steps[i]);
}

/* Saves t into the checkpoint directory <--out>/<name> (its path into
 * dir, of size bytes). */
static int save_in_out(const RunContext *rc, const Trainer *t, const char *name, char *dir,
                       size_t size) {
    snprintf(dir, size, "%s/%s", rc->out_dir, name);
    return train_save_checkpoint(t, dir);
}

static int on_checkpoint(void *user, const Trainer *t, int epoch, int64_t step) {
    RunContext *rc = user;
    char name[32], dir[4096];
    snprintf(name, sizeof name, "epoch-%d", epoch);
    if (save_in_out(rc, t, name, dir, sizeof dir) != 0) return -1;
    prune_checkpoints(rc->out_dir, rc->spec->checkpoint_keep_last, epoch);
    /* the daemon's copy is the job's: a run that cannot upload it fails */
    if (rc->rep && report_checkpoint(rc->rep, dir, epoch, step, false) != 0) return -1;
    rc->saved_step = step;
    char *path = rc->jsonl ? json_quoted(dir) : NULL;
    if (path)
        printf("{\"event\":\"checkpoint\",\"epoch\":%d,\"step\":%lld,\"path\":%s}\n", epoch,
               (long long)step, path);
    free(path);
    if (!rc->jsonl)
        fprintf(stderr, "%scheckpoint: %s\n", rc->tty ? "\r" : "", dir);
    return 0;
}

/* A preempted run's state where its ranks stopped (rank 0's, the daemon's
 * "preempt": true), for its job to resume from: written beside the epochs'
 * (step-<S>) and uploaded as a partial checkpoint, unless the job takes no
 * checkpoints, the stop is not a clean one, or the newest is at that step
 * already (as an attempt in the daemon does: server/attempt.c). */
static int checkpoint_at_stop(RunContext *rc, const Trainer *t) {
    int64_t step = t->state.step;
    if (!rc->spec->checkpoint || !t->cancelled || t->graph_failed || step <= rc->saved_step)
        return 0;
    char name[32], dir[4096];
    snprintf(name, sizeof name, "step-%" PRId64, step);
    if (save_in_out(rc, t, name, dir, sizeof dir) != 0 ||
        report_checkpoint(rc->rep, dir, t->state.epoch, step, true) != 0) {
        error_prefix("preempted at step %" PRId64 ", no partial checkpoint", step);
        on_log(rc, error_get()); /* the job resumes from the one before */
        return -1;
    }
    on_log(rc, "preempted: partial checkpoint where it stopped uploaded");
    return 0;
}

typedef struct {
    const char *job, *device, *out, *resume;
    bool jsonl;
    /* --report URL --job ID --attempt N --token-file PATH [--report-timeout S] */
    const char *report_url, *token_file;
    const char *datasets_cache; /* --datasets-cache DIR */
    int64_t job_id;
    int attempt;
    double report_timeout_s;
} RunArgs;

static const char run_usage[] =
    "usage: traind run JOB.json [--jsonl] [--device cpu|cuda:N|cuda:N,cuda:M,...] [--out DIR] "
    "[--resume CHECKPOINT_DIR|auto]\n"
    "       [--report URL --job ID --attempt N --token-file PATH [--report-timeout S]\n"
    "        [--datasets-cache DIR]]\n";

/* A number argument of `traind run` in [min, max], a whole one where
 * `whole`; -1 after a message. */
static int number_arg(const char *opt, const char *v, double min, double max, bool whole,
                      double *out) {
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= min && x <= max) || (whole && x != floor(x))) {
        fprintf(stderr, "traind run: %s: expected a %s from %g to %g, got '%s'\n", opt,
                whole ? "whole number" : "number", min, max, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_report_arg(const char *opt, const char *v, RunArgs *a) {
    double x = 0;
    if (strcmp(opt, "--report") == 0)
        a->report_url = v;
    else if (strcmp(opt, "--token-file") == 0)
        a->token_file = v;
    else if (strcmp(opt, "--datasets-cache") == 0)
        a->datasets_cache = v;
    else if (strcmp(opt, "--job") == 0) {
        if (number_arg(opt, v, 1, 9e15, true, &x)) return -1;
        a->job_id = (int64_t)x;
    } else if (strcmp(opt, "--attempt") == 0) {
        if (number_arg(opt, v, 1, 1e9, true, &x)) return -1;
        a->attempt = (int)x;
    } else if (strcmp(opt, "--report-timeout") == 0) {
        if (number_arg(opt, v, 1, 1e7, false, &x)) return -1;
        a->report_timeout_s = x;
    } else
        return 1;
    return 0;
}

/* 0; 2 after a usage error's message; -1 after --help's usage (exit 0). */
static int parse_args(int argc, char **argv, RunArgs *a) {
    for (int i = 0; i < argc; i++) {
        int rep = argv[i][0] == '-' && i + 1 < argc ? parse_report_arg(argv[i], argv[i + 1], a) : 1;
        if (rep < 0) return 2;
        if (rep == 0)
            i++;
        else if (strcmp(argv[i], "--jsonl") == 0)
            a->jsonl = true;
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            a->device = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            a->out = argv[++i];
        else if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc)
            a->resume = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(run_usage, stdout);
            return -1; /* exit 0 */
        } else if (argv[i][0] != '-' && !a->job)
            a->job = argv[i];
        else {
            fprintf(stderr, "traind run: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!a->job) {
        fputs(run_usage, stderr);
        return 2;
    }
    bool some = a->report_url || a->token_file || a->job_id || a->attempt || a->report_timeout_s;
    if (some && !(a->report_url && a->token_file && a->job_id && a->attempt)) {
        fprintf(stderr, "traind run: --report needs --job, --attempt and --token-file (and they, "
                        "and --report-timeout, need --report)\n");
        return 2;
    }
    if (a->datasets_cache && !a->report_url) {
        fprintf(stderr, "traind run: --datasets-cache fetches from the daemon of --report\n");
        return 2;
    }
    if (a->resume && strcmp(a->resume, "auto") == 0 && !a->report_url) {
        fprintf(stderr, "traind run: --resume auto asks the daemon of --report\n");
        return 2;
    }
    return 0;
}

/* --resume auto: rank 0 asks the daemon and downloads the checkpoint into
 * a directory under --out, which every rank then resumes from (--out is
 * on the shared directory under Slurm). 0, or -1 with an error. */
static int resume_auto(Trainer *t, Reporter *rep, const char *out_dir, int attempt) {
    char dir[4200];
    int32_t got = rep ? (int32_t)report_resume(rep, out_dir, dir, sizeof dir) : 0;
    if (dist_broadcast(t->dist, &got, sizeof got, 0) != 0) return -1;
    if (got < 0)
        return rep ? -1 : error_set("rank 0 could not learn from the daemon where to resume");
    if (got == 0) return 0;
    snprintf(dir, sizeof dir, "%s/resume-attempt-%d", out_dir, attempt);
    return train_resume(t, dir);
}

/* How the run ended, for the daemon: "cancelled" for a run stopped at a
 * cancel (the daemon asked for it), "failed" otherwise, the reports' own
 * failure (a checkpoint refused, no answer) the error when they failed;
 * nothing when the daemon said the attempt is over (its end is no longer
 * taken). rc, or -1 with an error when the run or its end failed. */
static int report_outcome(Reporter *rep, int rc, bool cancelled) {
    if (!rep) return rc;
    const char *failure = report_failure(rep);
    if (failure && report_attempt_over(rep)) return error_set("%s", failure);
    char err[ERROR_MAX];
    snprintf(err, sizeof err, "%s", failure ? failure : error_get());
    const char *state = failure || (rc != 0 && !cancelled) ? "failed"
                        : rc != 0                          ? "cancelled"
                                                           : "succeeded";
    bool ok = !failure && rc == 0;
    if (report_end(rep, state, ok ? NULL : err) != 0) return -1;
    return ok ? 0 : error_set("%s", err);
}

/* How a training run ended: at the cancel; and whether every rank stopped
 * at the same point (a cancel, or a failure on the ranks' summed numbers),
 * so that none waits for another and rank 0 may report it. */
typedef struct {
    bool cancelled, together;
} RunEnd;

/* Trains the built job; 0 or -1 with an error, *end saying how it stopped. */
static int train_on(JobBuild *r, const RunArgs *a, DistGroup *group, Reporter *rep,
                    atomic_int *cancel, Device device, RunEnd *end);

/* Moves the built job to its device and trains it there, with the GPUs'
 * own group when its ranks train on GPUs. */
static int train_built(JobBuild *r, const RunArgs *a, DistGroup *group, Reporter *rep,
                       atomic_int *cancel, RunEnd *end) {
    Device device;
    if (job_rank_device(group, r->spec, a->device, &device) != 0) return -1;
    /* cuda:N needs a registered CUDA backend (gpu_init in main) with that
     * device: "device cuda:0: this build has no CUDA backend or no GPU was
     * found" otherwise. */
    if (!backend_for(device) || job_build_to_device(r, device) != 0) return -1;
    bool made = false;
    DistGroup *train_group = NULL;
    if (job_rank_train_group(group, device, &train_group, &made) != 0) return -1;
    int rc = train_on(r, a, train_group, rep, cancel, device, end);
    /* a cancel stops every rank at the same step: none waits for another */
    if (made) job_rank_close(NULL, train_group, true, rc != 0 && !end->together);
    return rc;
}

/* runs/<name>: the job's name as one folder under runs/, its '/' as '_'
 * and a leading '.' too ("..", ".": not runs/ itself or above it). */
static void default_out_dir(const char *name, char *out, size_t size) {
    snprintf(out, size, "runs/%s", name[0] ? name : "job");
    for (char *c = out + 5; *c; c++)
        if (*c == '/' || (c == out + 5 && *c == '.')) *c = '_';
}

/* Trains the built job on `device` with `group` (NULL: one process). */
static int train_on(JobBuild *r, const RunArgs *a, DistGroup *group, Reporter *rep,
                    atomic_int *cancel, Device device, RunEnd *end) {
    char out_dir[4096];
    if (a->out)
        snprintf(out_dir, sizeof out_dir, "%s", a->out);
    else
        default_out_dir(r->spec->name, out_dir, sizeof out_dir);
    /* made before the first step: not found missing an epoch later */
    bool resume_from_daemon = a->resume && strcmp(a->resume, "auto") == 0;
    if ((r->spec->checkpoint || resume_from_daemon) && db_mkdir_p(out_dir) != 0)
        return error_prefix("--out");
    /* a run killed (-9) in its checkpoint left its temporary copy: a
     * daemon's attempt has its out/ removed for it instead */
    int strays = !a->report_url && dist_rank(group) == 0
                     ? durable_remove_strays(out_dir, checkpoint_name, NULL, 0)
                     : 0;
    if (strays > 0)
        fprintf(stderr, "traind run: %d unfinished checkpoint%s of a killed run cleaned up in %s\n",
                strays, strays == 1 ? "" : "s", out_dir);
    RunContext ctx = {.spec = r->spec, .out_dir = out_dir, .jsonl = a->jsonl,
                      .tty = isatty(STDERR_FILENO), .rep = rep};
    Trainer t;
    train_init(&t);
    job_build_trainer(r, &t, device);
    t.dist = group;
    t.cancel = cancel;
    t.cb = (TrainCallbacks){.user = &ctx, .metric = on_metric, .log = on_log,
                            .checkpoint = on_checkpoint};
    ctx.trainer = &t;
    ctx.total_steps = train_total_steps(&t);
    if (resume_from_daemon) {
        if (resume_auto(&t, rep, out_dir, a->attempt) != 0) return -1;
    } else if (a->resume && train_resume(&t, a->resume) != 0)
        return -1;
    ctx.saved_step = ctx.start_step = t.state.step; /* where it starts: 0, or a checkpoint's */
    ctx.start = clock_now_s();
    int rc = train_run(&t);
    *end = (RunEnd){.cancelled = t.cancelled, .together = t.cancelled || t.failed_together};
    /* the end says where the run stopped, the checkpoint's failure logged */
    if (rc != 0 && rep && report_preempted(rep)) {
        Error stop = *error_last();
        checkpoint_at_stop(&ctx, &t);
        error_restore(&stop);
    }
    if (ctx.tty && !a->jsonl && dist_rank(group) == 0) fputc('\n', stderr);
    return rc;
}

/* Rank 0's reports with --report; NULL without (0), -1 with an error. */
static int open_reports(const RunArgs *a, DistGroup *group, atomic_int *cancel, Reporter **rep) {
    *rep = NULL;
    if (!a->report_url || dist_rank(group) != 0) return 0;
    ReportConfig c = {.url = a->report_url, .job = a->job_id, .attempt = a->attempt,
                      .token_file = a->token_file, .timeout_s = a->report_timeout_s};
    return (*rep = report_open(&c, cancel)) ? 0 : -1;
}

/* --datasets-cache: every rank takes part (dataset_fetch_all is a
 * collective); the manifest is beside the spec. 0, or -1 with an error
 * every rank has. */
static int fetch_datasets(const RunArgs *a, DistGroup *group) {
    if (!a->datasets_cache) return 0;
    char manifest[4200];
    const char *slash = strrchr(a->job, '/');
    snprintf(manifest, sizeof manifest, "%.*s%s", slash ? (int)(slash - a->job + 1) : 0, a->job,
             DATASET_FETCH_MANIFEST);
    AttemptHttp http;
    int rc = attempt_http_init(&http, a->report_url, a->job_id, a->attempt, a->token_file,
                               a->report_timeout_s);
    int64_t failed = rc != 0; /* a token none can read fails every rank together */
    if (dist_all_reduce(group, &failed, 1, DTYPE_INT64) != 0) return -1;
    if (rc == 0 && failed)
        rc = error_set("datasets: a rank could not read the token (its stderr says why)");
    if (rc == 0) rc = dataset_fetch_all(manifest, a->datasets_cache, &http, group);
    attempt_http_clear(&http);
    return rc;
}

/* Builds the job here, then every rank says whether it did: a failure
 * they share (a bad spec, data that does not load) or one rank's ends them
 * all together, rank 0 telling the daemon, rather than each rank's
 * MPI_Abort killing the others (rank 0 too, before its end is told). 0;
 * 1 when it failed here or on another rank, every rank knowing it; -1 when
 * the ranks could not agree (they abort). */
static int build_on_every_rank(JobBuild *r, const char *job, DistGroup *group) {
    int rc = job_build(r, job_spec_parse_file(job), NULL);
    if (!dist_active(group)) return rc == 0 ? 0 : 1;
    Error mine = *error_last();
    int64_t failed = rc != 0;
    if (dist_all_reduce(group, &failed, 1, DTYPE_INT64) != 0) return -1;
    if (!failed) return 0;
    if (rc != 0)
        error_restore(&mine);
    else
        error_set("%lld of the %d ranks could not build the job (their stderr says why)",
                  (long long)failed, group->world);
    return 1;
}

/* A run in a shell: SIGINT (^C) or SIGTERM stops it at the next step as
 * a cancel does (every rank at the same one), the checkpoints written so
 * far kept whole; the same signal again ends it at once (another, as
 * mpirun's SIGTERM after a ^C the ranks got too, does not). Not under
 * --report: there the daemon stops its ranks, and Slurm's signals are its
 * own. The cancel flag is static: a late signal finds it still there.
 * The signal said is the first, except that a ^C wins over a SIGTERM that
 * comes with it: the two, sent together, are taken by two of the
 * process's threads (OpenMP's, OpenBLAS's) at once, in either order. */
static atomic_int signal_cancel;
static atomic_int stop_signal; /* lock-free: read and set in a handler */
static struct sigaction was_int, was_term;

static void on_stop_signal(int sig) {
    if (atomic_load(&stop_signal) == sig) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    int none = 0;
    if (sig == SIGINT)
        atomic_store(&stop_signal, SIGINT);
    else
        atomic_compare_exchange_strong(&stop_signal, &none, sig);
    atomic_store(&signal_cancel, 1);
}

/* The run's cancel flag, caught signals setting it (restore_stop_signals
 * undoes it). */
static atomic_int *catch_stop_signals(void) {
    /* SA_RESTART: a --jsonl line blocked on a full pipe is written whole */
    struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask); /* one handler at a time: the first signal is the one said */
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    /* a shell's background job ignores ^C: kept so */
    if (sigaction(SIGINT, NULL, &was_int) == 0 && was_int.sa_handler != SIG_IGN)
        sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, &was_term);
    return &signal_cancel;
}

static void restore_stop_signals(void) {
    sigaction(SIGINT, &was_int, NULL);
    sigaction(SIGTERM, &was_term, NULL);
}

int job_run_local(int argc, char **argv) {
    RunArgs a = {0};
    int status = parse_args(argc, argv, &a);
    if (status != 0) return status < 0 ? 0 : status;
    if (a.jsonl) setvbuf(stdout, NULL, _IOLBF, 0); /* a line as it happens, to a pipe too */
    DistGroup *group = NULL;
    if (job_rank_open(&group) != 0) {
        fprintf(stderr, "traind run: %s\n", error_get());
        return 1;
    }
    atomic_int own_cancel;
    atomic_init(&own_cancel, 0);
    atomic_int *cancel = a.report_url ? &own_cancel : catch_stop_signals();
    Reporter *rep = NULL;
    JobBuild r = {0};
    int fetched = 1; /* 1: not reached; -1: failed on every rank (they agreed on it) */
    int built = 2;   /* 2: not reached; 1: failed, every rank knowing it */
    RunEnd end = {0};
    status = open_reports(&a, group, cancel, &rep) == 0 &&
                     (fetched = fetch_datasets(&a, group)) == 0 &&
                     (built = build_on_every_rank(&r, a.job, group)) == 0 &&
                     train_built(&r, &a, group, rep, cancel, &end) == 0
                 ? 0
                 : 1;
    bool cancelled = end.cancelled;
    /* a cancel stops every rank at the same step, a failed fetch or build
     * fails them all, and so does a loss summed over them that is not
     * finite: none waits for another, and rank 0 reports it (another's
     * MPI_Abort would kill it before its end reached the daemon) */
    bool together = status != 0 && (end.together || fetched < 0 || built == 1);
    if (report_outcome(rep, status == 0 ? 0 : -1, cancelled) != 0) status = 1;
    if (status != 0 && dist_active(group) && !together) {
        fprintf(stderr, "traind run: rank %d of %d: %s\n", group->rank, group->world,
                error_get());
        fflush(stdout);
        group->abort(group, 1);
    }
    if (!a.report_url) restore_stop_signals();
    int stopped_by = atomic_load(&stop_signal);
    if (status != 0 && cancelled && stopped_by) {
        fprintf(stderr, "traind run: stopped by %s: %s\n",
                stopped_by == SIGINT ? "SIGINT" : "SIGTERM", error_get());
        status = 128 + stopped_by; /* as the shell's own ^C */
    } else if (status != 0)
        fprintf(stderr, "traind run: %s\n", error_get());
    fflush(stdout);
    report_close(rep);
    job_build_free(&r);
    job_rank_close(group, NULL, false, false);
    return status;
}
