/* scheduler.c - the worker pool that trains the daemon's jobs; see
 * scheduler.h for the contract.
 *
 * State lives in the database; the scheduler adds only what is per
 * process: which worker runs which job, each job's cancel flag and live
 * progress, and a small cache of the device each queued job asks for.
 *
 * Locking. `mu` guards the workers' assignments and is held while a
 * worker picks and claims a job, and while a cancel looks for the job's
 * worker or cancels it in the queue, so a job is never both claimed and
 * cancelled-as-queued. The training thread never takes `mu`: its per-step
 * callbacks touch only its worker's `pmu` (progress) and the metric
 * writer's queue. `gmu` guards the generation counter that followers wait
 * on.
 *
 * Why a stopped job is checkpointed mid-epoch: train_run leaves the
 * Trainer at a consistent point after a cancel (data position, running
 * sums of the epoch), so a partial checkpoint there loses no work and the
 * resumed attempt continues the very same trajectory.
 */
#include "server/scheduler.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/backend.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/train.h"
#include "job/build.h"
#include "server/log.h"

typedef enum { STOP_NONE, STOP_CANCEL, STOP_SHUTDOWN } StopKind;

typedef struct Worker {
    struct Scheduler *s;
    int index;
    Device device;
    char device_name[32];
    pthread_t thread;
    bool started;
    /* under s->mu */
    int64_t job_id;
    StopKind stop;
    /* set by cancel/stop, read by the trainer at each step */
    atomic_int cancel;
    /* under pmu: live progress of job_id */
    pthread_mutex_t pmu;
    DbJobProgress progress;
} Worker;

/* The device a queued job asks for, parsed once from its spec. */
typedef struct {
    int64_t id;
    bool any;
    Device device;
} QueuedDevice;

struct Scheduler {
    Db *db;
    MetricWriter *mw;
    SchedulerConfig cfg;
    pthread_mutex_t mu;
    pthread_cond_t work;
    bool stopping;
    QueuedDevice *qdev;
    int nqdev, qdev_cap;
    pthread_mutex_t gmu;
    pthread_cond_t gcv;
    uint64_t generation;
    int nworkers;
    Worker workers[];
};

static void bump(Scheduler *s) {
    pthread_mutex_lock(&s->gmu);
    s->generation++;
    pthread_cond_broadcast(&s->gcv);
    pthread_mutex_unlock(&s->gmu);
}

uint64_t scheduler_generation(Scheduler *s) {
    pthread_mutex_lock(&s->gmu);
    uint64_t g = s->generation;
    pthread_mutex_unlock(&s->gmu);
    return g;
}

uint64_t scheduler_wait(Scheduler *s, uint64_t seen, int timeout_ms) {
    struct timespec ts;
    clock_deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&s->gmu);
    while (s->generation == seen)
        if (pthread_cond_timedwait(&s->gcv, &s->gmu, &ts) == ETIMEDOUT) break;
    uint64_t g = s->generation;
    pthread_mutex_unlock(&s->gmu);
    return g;
}

/* The scheduler's own lines on stderr, through server/log.h like the HTTP
 * layer's: {"event":"job","job":N,"level":"info","message":...}, or
 * "event":"scheduler" without a job (job 0). */
static void sched_log(int64_t job, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sched_log(int64_t job, const char *level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = job ? json_pack("{s:I}", "job", (json_int_t)job) : json_object();
    if (!o) return;
    json_object_set_new(o, "level", json_string(level));
    json_object_set_new(o, "message", log_string(msg));
    log_json(job ? "job" : "scheduler", o);
}

/* A log line for the job (its stored log, GET /v1/jobs/{id}/logs), also on
 * stderr as a structured line. */
static void job_log(Scheduler *s, int64_t job, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_log(Scheduler *s, int64_t job, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sched_log(job, "info", "%s", line);
    if (db_log_append(s->db, job, line, NULL) != DB_OK)
        sched_log(job, "error", "cannot store a log line: %s", error_get());
    bump(s);
}

/* ---- which device a job wants ---- */

/* "device" of a spec: "auto" (or absent, or unparsable: let the build
 * report it) is any device. */
static void spec_device(const char *spec_json, QueuedDevice *q) {
    q->any = true;
    json_t *j = json_loads(spec_json ? spec_json : "", 0, NULL);
    const char *d = json_string_value(json_object_get(j, "device"));
    if (d && strcmp(d, "auto") != 0 && device_parse(d, &q->device) == 0) q->any = false;
    json_decref(j);
    error_clear();
}

/* Under mu. Adds q to the cache (a failed allocation only means the
 * spec is read again next time). */
static QueuedDevice *remember_device(Scheduler *s, const QueuedDevice *q) {
    for (int i = 0; i < s->nqdev; i++)
        if (s->qdev[i].id == q->id) return &s->qdev[i];
    if (s->nqdev == s->qdev_cap) {
        int cap = s->qdev_cap ? 2 * s->qdev_cap : 32;
        QueuedDevice *grown = realloc(s->qdev, (size_t)cap * sizeof *grown);
        if (!grown) return NULL;
        s->qdev = grown;
        s->qdev_cap = cap;
    }
    s->qdev[s->nqdev] = *q;
    return &s->qdev[s->nqdev++];
}

/* Under mu. The request of a queued job, from the cache or its spec.
 * false when the job cannot be read. */
static bool queued_device(Scheduler *s, int64_t id, QueuedDevice *out) {
    for (int i = 0; i < s->nqdev; i++)
        if (s->qdev[i].id == id) {
            *out = s->qdev[i];
            return true;
        }
    DbJob job;
    if (db_job_get(s->db, id, &job) != DB_OK) return false;
    out->id = id;
    spec_device(job.spec_json, out);
    db_job_clear(&job);
    remember_device(s, out);
    return true;
}

static void forget_device(Scheduler *s, int64_t id) {
    for (int i = 0; i < s->nqdev; i++)
        if (s->qdev[i].id == id) {
            s->qdev[i] = s->qdev[--s->nqdev];
            return;
        }
}

static bool can_run(const Worker *w, const QueuedDevice *q) {
    return q->any || device_equal(q->device, w->device);
}

/* Under mu. "auto" runs on any free worker, but on a GPU when one is
 * free: a CPU worker leaves an auto job to an idle GPU worker, which is
 * woken with every other and claims it. */
static bool leave_to_gpu(const Worker *w, const QueuedDevice *q) {
    if (!q->any || w->device.type == DEVICE_CUDA) return false;
    const Scheduler *s = w->s;
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].device.type == DEVICE_CUDA && s->workers[i].job_id == 0) return true;
    return false;
}

/* ---- running one job ---- */

typedef struct {
    Scheduler *s;
    Worker *w;
    int64_t job;
    const JobSpec *spec;
    int64_t total_steps;
    int64_t step0;  /* step the attempt started from */
    double t0;
    char ckpt_dir[4200]; /* <data-dir>/jobs/<id>/checkpoints */
} JobRun;

static void on_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    JobRun *r = user;
    metric_writer_push(r->s->mw, r->job, name, step, epoch, value);
    if (strcmp(name, "loss") == 0) {
        double dt = clock_now_s() - r->t0;
        double steps_per_s = dt > 0 ? (double)(step - r->step0) / dt : 0;
        pthread_mutex_lock(&r->w->pmu);
        DbJobProgress *p = &r->w->progress;
        p->epoch = epoch;
        p->step = step;
        p->total_steps = r->total_steps;
        if (steps_per_s > 0) {
            p->samples_per_s = steps_per_s * (double)r->spec->batch_size;
            p->eta_s = (double)(r->total_steps - step) / steps_per_s;
        }
        pthread_mutex_unlock(&r->w->pmu);
        if (r->s->cfg.step_hook) r->s->cfg.step_hook(r->s->cfg.hook_user, r->job, step);
    } else if (strcmp(name, "samples_per_s") == 0) {
        /* the end of an epoch: its exact rate, and a progress row */
        pthread_mutex_lock(&r->w->pmu);
        r->w->progress.samples_per_s = value;
        DbJobProgress p = r->w->progress;
        pthread_mutex_unlock(&r->w->pmu);
        db_job_set_progress(r->s->db, r->job, &p);
    }
}

static void on_log(void *user, const char *line) {
    JobRun *r = user;
    job_log(r->s, r->job, "%s", line);
}

static int ensure_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return error_set("cannot create %s: %s", path, strerror(errno));
    return 0;
}

/* Saves t into its checkpoint directory and records it: the metrics up to
 * `step` are committed first, so a recorded checkpoint never points past
 * the stored history; then keep_last collects the old ones. */
static int save_checkpoint(JobRun *r, const Trainer *t, int epoch, int64_t step, bool partial) {
    char rel[256], abs[4400], jobdir[4200];
    snprintf(jobdir, sizeof jobdir, "%s/jobs/%" PRId64, db_data_dir(r->s->db), r->job);
    if (ensure_dir(jobdir) != 0 || ensure_dir(r->ckpt_dir) != 0) return -1;
    if (db_checkpoint_rel_dir(r->job, epoch, step, partial, rel, sizeof rel) != 0 ||
        db_path(r->s->db, rel, abs, sizeof abs) != 0)
        return -1;
    if (train_save_checkpoint(t, abs) != 0) return -1;
    if (metric_writer_flush(r->s->mw) != 0) return -1;
    DbCheckpoint c;
    if (db_checkpoint_insert(r->s->db, r->job, epoch, step, partial, rel, &c) != DB_OK) return -1;
    int removed = 0;
    if (db_checkpoint_gc(r->s->db, r->job, r->spec->checkpoint_keep_last, &removed) != DB_OK)
        sched_log(r->job, "error", "checkpoint gc: %s", error_get());
    job_log(r->s, r->job, "checkpoint %s%s: step %" PRId64 ", %" PRId64 " bytes, sha256 %s",
            rel, partial ? " (partial, for resuming)" : "", step, c.bytes, c.sha256);
    return 0;
}

static int on_checkpoint(void *user, const Trainer *t, int epoch, int64_t step) {
    return save_checkpoint(user, t, epoch, step, false);
}

/* Puts a freshly built Trainer where the job's newest checkpoint left it,
 * after deleting the metrics logged past it by the lost attempt; without a
 * checkpoint the job starts over and all its metrics go. */
static int resume(JobRun *r, Trainer *t, int attempt) {
    DbCheckpoint c;
    int rc = db_checkpoint_latest(r->s->db, r->job, &c);
    if (rc != DB_OK && rc != DB_NOT_FOUND) return -1;
    int64_t from = rc == DB_OK ? c.step : -1;
    int64_t deleted = 0;
    if (db_metric_delete_after(r->s->db, r->job, from, &deleted) != DB_OK) return -1;
    if (rc == DB_NOT_FOUND) {
        if (attempt > 1)
            job_log(r->s, r->job, "attempt %d: no checkpoint, starting over (%" PRId64
                    " metric rows superseded)", attempt, deleted);
        return 0;
    }
    char dir[4400];
    if (db_checkpoint_file_path(r->s->db, &c, NULL, dir, sizeof dir) != 0) return -1;
    if (train_resume(t, dir) != 0) return error_prefix("resume from %s", c.path);
    job_log(r->s, r->job, "attempt %d: resumed from %s at epoch %d, step %" PRId64
            " (%" PRId64 " metric rows past it superseded)", attempt, c.path, t->state.epoch,
            t->state.step, deleted);
    return 0;
}

/* The end of a run that stopped early: cancelled for a user, requeued (with
 * a partial checkpoint when the job has any progress past its last one)
 * for a daemon stopping. */
static void requeue_stopped(JobRun *r, const Trainer *t, bool built) {
    Scheduler *s = r->s;
    if (built && r->spec->checkpoint && !s->cfg.stop_without_checkpoint) {
        DbCheckpoint last;
        int rc = db_checkpoint_latest(s->db, r->job, &last);
        bool newer = rc == DB_NOT_FOUND ? t->state.step > 0
                                        : rc == DB_OK && t->state.step > last.step;
        if (newer && save_checkpoint(r, t, t->state.epoch, t->state.step, true) != 0)
            sched_log(r->job, "error", "partial checkpoint at stop: %s", error_get());
    }
    metric_writer_flush(s->mw);
    if (db_job_requeue(s->db, r->job) != DB_OK)
        sched_log(r->job, "error", "requeue: %s", error_get());
    else
        sched_log(r->job, "info", "stopped at step %" PRId64 ", queued to resume",
                  built ? t->state.step : 0);
}

static void run_job(Worker *w, const DbJob *job) {
    Scheduler *s = w->s;
    JobRun r = {.s = s, .w = w, .job = job->id, .t0 = clock_now_s()};
    snprintf(r.ckpt_dir, sizeof r.ckpt_dir, "%s/jobs/%" PRId64 "/checkpoints", db_data_dir(s->db),
             job->id);
    int threads = 1;
#ifdef _OPENMP
    /* OpenMP's default is every CPU the process had when it started; a
     * worker kept to fewer (serve --http-cpus, or a taskset on the thread)
     * would run more threads than cores and have them wait on each other.
     * An OMP_NUM_THREADS the operator set is theirs to keep. */
    cpu_set_t mine;
    if (s->cfg.threads_per_job > 0)
        omp_set_num_threads(s->cfg.threads_per_job);
    else if (!getenv("OMP_NUM_THREADS") && sched_getaffinity(0, sizeof mine, &mine) == 0 &&
             CPU_COUNT(&mine) > 0)
        omp_set_num_threads(CPU_COUNT(&mine));
    threads = omp_get_max_threads();
#endif
    job_log(s, job->id, "attempt %d on %s, %d CPU thread%s", job->attempt, w->device_name,
            threads, threads == 1 ? "" : "s");
    const Backend *be = backend_for(w->device);
    if (be && be->clear_error) be->clear_error(w->device); /* not the last job's failure */
    error_clear();
    JobBuild b;
    Trainer t;
    train_init(&t);
    bool built = false;
    int rc = job_build(&b, job_spec_parse(job->spec_json, strlen(job->spec_json)), s->db);
    /* the model on the worker's device now, so that a GPU out of memory
     * fails the job here with its message */
    if (rc == 0) rc = job_build_to_device(&b, w->device);
    if (rc == 0) {
        r.spec = b.spec;
        job_build_trainer(&b, &t, w->device);
        t.cancel = &w->cancel;
        t.cb = (TrainCallbacks){.user = &r, .metric = on_metric, .log = on_log,
                                .checkpoint = on_checkpoint};
        r.total_steps = train_total_steps(&t);
        rc = resume(&r, &t, job->attempt);
        built = rc == 0;
    }
    if (rc == 0) {
        r.step0 = t.state.step;
        r.t0 = clock_now_s();
        pthread_mutex_lock(&w->pmu);
        w->progress = (DbJobProgress){.epoch = t.state.epoch, .step = t.state.step,
                                      .total_steps = r.total_steps, .eta_s = -1};
        pthread_mutex_unlock(&w->pmu);
        rc = train_run(&t);
    }
    /* a run whose metrics are not all stored has not succeeded: its
     * history would be missing points, and a finished job's history is
     * kept as final by the HTTP side (server/reply_cache.h) */
    if (rc == 0 && metric_writer_flush(s->mw) != 0) {
        error_prefix("storing its metrics");
        rc = -1;
    }
    char err[ERROR_MAX];
    snprintf(err, sizeof err, "%s", rc != 0 ? error_get() : "");

    pthread_mutex_lock(&s->mu);
    StopKind stop = atomic_load(&w->cancel) ? w->stop : STOP_NONE;
    pthread_mutex_unlock(&s->mu);

    if (rc == 0) {
        pthread_mutex_lock(&w->pmu);
        w->progress.eta_s = 0;
        DbJobProgress p = w->progress;
        pthread_mutex_unlock(&w->pmu);
        db_job_set_progress(s->db, job->id, &p);
        job_log(s, job->id, "succeeded after %" PRId64 " steps", t.state.step);
        if (db_job_finish(s->db, job->id, DB_JOB_SUCCEEDED, NULL) != DB_OK)
            sched_log(job->id, "error", "%s", error_get());
    } else if (stop == STOP_SHUTDOWN) {
        requeue_stopped(&r, &t, built);
    } else {
        metric_writer_flush(s->mw);
        DbJobState final = stop == STOP_CANCEL ? DB_JOB_CANCELLED : DB_JOB_FAILED;
        if (built) {
            pthread_mutex_lock(&w->pmu);
            DbJobProgress p = w->progress;
            pthread_mutex_unlock(&w->pmu);
            db_job_set_progress(s->db, job->id, &p);
        }
        if (final == DB_JOB_CANCELLED) snprintf(err, sizeof err, "cancelled at step %" PRId64,
                                                built ? t.state.step : 0);
        job_log(s, job->id, "%s: %s", final == DB_JOB_CANCELLED ? "cancelled" : "failed", err);
        if (db_job_finish(s->db, job->id, final, err) != DB_OK)
            sched_log(job->id, "error", "%s", error_get());
    }
    job_build_free(&b);
    error_clear();
}

/* ---- the workers ---- */

/* Under mu: claims the first queued job this worker can run. 1 with *out
 * filled, 0 when there is none. */
static int claim_next(Worker *w, DbJob *out) {
    Scheduler *s = w->s;
    int64_t *ids;
    int n;
    if (db_job_queue(s->db, &ids, &n) != DB_OK) {
        sched_log(0, "error", "%s", error_get());
        return 0;
    }
    /* the cache keeps only queued jobs */
    for (int k = 0; k < s->nqdev;) {
        bool queued = false;
        for (int i = 0; i < n && !queued; i++) queued = ids[i] == s->qdev[k].id;
        if (queued)
            k++;
        else
            s->qdev[k] = s->qdev[--s->nqdev];
    }
    int got = 0;
    for (int i = 0; i < n && !got; i++) {
        QueuedDevice q;
        if (queued_device(s, ids[i], &q) && (!can_run(w, &q) || leave_to_gpu(w, &q))) continue;
        int rc = db_job_claim(s->db, ids[i], w->device_name, out);
        forget_device(s, ids[i]);
        if (rc == DB_OK) got = 1;
    }
    free(ids);
    return got;
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    Scheduler *s = w->s;
    char name[16]; /* as ps -L and perf show it */
    snprintf(name, sizeof name, "train-%.9s", w->device_name);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        DbJob job;
        if (!claim_next(w, &job)) {
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        w->job_id = job.id;
        w->stop = STOP_NONE;
        atomic_store(&w->cancel, 0);
        /* a CPU worker that left auto jobs to this idle GPU worker
         * (leave_to_gpu) looks again now that it is busy */
        if (w->device.type == DEVICE_CUDA) pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mu);
        bump(s);
        run_job(w, &job);
        db_job_clear(&job);
        pthread_mutex_lock(&s->mu);
        w->job_id = 0;
        pthread_mutex_lock(&w->pmu);
        memset(&w->progress, 0, sizeof w->progress);
        pthread_mutex_unlock(&w->pmu);
        pthread_mutex_unlock(&s->mu);
        bump(s);
        pthread_mutex_lock(&s->mu);
        /* a worker freed: another may find work it could not take */
        pthread_cond_broadcast(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int parse_devices(const SchedulerConfig *cfg, Device *out, int *n) {
    *n = 0;
    if (!cfg->devices || !*cfg->devices) {
        /* the CPU workers asked for, and one worker (one job) per GPU */
        int k = cfg->workers > 0 ? cfg->workers : 1;
        int gpus = backend_cuda_device_count();
        if (k + gpus > SCHEDULER_MAX_WORKERS)
            return error_set("workers: at most %d, got %d (and %d GPU(s))",
                             SCHEDULER_MAX_WORKERS, k, gpus);
        for (int i = 0; i < k; i++) out[(*n)++] = DEVICE_CPU_INIT;
        for (int i = 0; i < gpus; i++) out[(*n)++] = (Device){.type = DEVICE_CUDA, .index = i};
        return 0;
    }
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", cfg->devices) >= (int)sizeof buf)
        return error_set("devices: list too long");
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (*n == SCHEDULER_MAX_WORKERS)
            return error_set("devices: at most %d workers", SCHEDULER_MAX_WORKERS);
        Device d;
        if (device_parse(tok, &d) != 0) return error_prefix("devices");
        if (d.type == DEVICE_CUDA && d.index >= backend_cuda_device_count())
            return error_set("devices: %s: this machine has %d CUDA device(s)", tok,
                             backend_cuda_device_count());
        out[(*n)++] = d;
    }
    if (*n == 0) return error_set("devices: empty list");
    return 0;
}

Scheduler *scheduler_start(const SchedulerConfig *cfg) {
    if (!cfg || !cfg->db || !cfg->metrics) {
        error_set("scheduler: needs a database and a metric writer");
        return NULL;
    }
    Device devs[SCHEDULER_MAX_WORKERS];
    int n;
    if (parse_devices(cfg, devs, &n) != 0) return NULL;
    /* jobs a previous daemon left running go back in the queue first */
    int requeued = 0;
    if (db_job_requeue_running(cfg->db, &requeued) != DB_OK) return NULL;
    if (requeued)
        sched_log(0, "info", "%d job(s) left running put back in the queue", requeued);
    Scheduler *s = calloc(1, sizeof *s + (size_t)n * sizeof(Worker));
    if (!s) {
        error_set("scheduler: out of memory");
        return NULL;
    }
    s->db = cfg->db;
    s->mw = cfg->metrics;
    s->cfg = *cfg;
    s->cfg.devices = NULL; /* not kept: the caller's string */
    s->nworkers = n;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_mutex_init(&s->gmu, NULL);
    pthread_cond_init(&s->gcv, NULL);
    for (int i = 0; i < n; i++) {
        Worker *w = &s->workers[i];
        w->s = s;
        w->index = i;
        w->device = devs[i];
        device_name(devs[i], w->device_name, sizeof w->device_name);
        atomic_init(&w->cancel, 0);
        pthread_mutex_init(&w->pmu, NULL);
    }
    for (int i = 0; i < n; i++) {
        Worker *w = &s->workers[i];
        int e = pthread_create(&w->thread, NULL, worker_main, w);
        if (e != 0) {
            error_set("scheduler: cannot start worker %d: %s", i, strerror(e));
            scheduler_stop(s);
            return NULL;
        }
        w->started = true;
    }
    return s;
}

void scheduler_stop(Scheduler *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    for (int i = 0; i < s->nworkers; i++) {
        Worker *w = &s->workers[i];
        if (w->job_id && w->stop != STOP_CANCEL) {
            w->stop = STOP_SHUTDOWN;
            atomic_store(&w->cancel, 1);
        }
    }
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].started) pthread_join(s->workers[i].thread, NULL);
    metric_writer_flush(s->mw);
    for (int i = 0; i < s->nworkers; i++) pthread_mutex_destroy(&s->workers[i].pmu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->gmu);
    pthread_cond_destroy(&s->gcv);
    free(s->qdev);
    free(s);
}

/* ---- the HTTP side ---- */

/* Wakes the workers for a queued job whose device request is q. */
static void wake(Scheduler *s, const QueuedDevice *q) {
    pthread_mutex_lock(&s->mu);
    remember_device(s, q);
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    bump(s);
}

int scheduler_submit(Scheduler *s, int64_t job_id) {
    DbJob job;
    int rc = db_job_get(s->db, job_id, &job);
    if (rc != DB_OK) return rc;
    DbJobState state = job.state;
    QueuedDevice q = {.id = job_id};
    spec_device(job.spec_json, &q);
    db_job_clear(&job);
    /* running: a worker took it already (workers also look at the queue
     * on their own) */
    if (state == DB_JOB_RUNNING) return DB_OK;
    if (state != DB_JOB_QUEUED) {
        error_set("job %" PRId64 " is %s, not queued", job_id, db_job_state_name(state));
        return DB_CONFLICT;
    }
    wake(s, &q);
    return DB_OK;
}

int scheduler_create_job(Scheduler *s, const char *spec_json, size_t len, int64_t owner,
                         int priority, int64_t *id_out) {
    JobSpec *spec;
    if (job_build_validate(s->db, spec_json, len, &spec) != 0) return DB_INVALID;
    if (!spec->device_auto) {
        bool have = false;
        char list[256] = "", name[32];
        for (int i = 0; i < s->nworkers; i++) {
            have |= device_equal(s->workers[i].device, spec->device);
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                     s->workers[i].device_name);
        }
        if (!have) {
            error_set("device: this daemon has no %s worker (workers: %s)",
                      device_name(spec->device, name, sizeof name), list);
            job_spec_free(spec);
            return DB_INVALID;
        }
    }
    /* the spec is stored as submitted: the workers parse it again */
    char *text = strndup(spec_json, len);
    if (!text) {
        job_spec_free(spec);
        error_set("job: out of memory");
        return DB_ERROR;
    }
    int64_t id;
    int rc = db_job_insert(s->db, spec->name, owner, text, priority, &id);
    free(text);
    QueuedDevice q = {.id = id, .any = spec->device_auto, .device = spec->device};
    job_spec_free(spec);
    if (rc != DB_OK) return rc;
    if (id_out) *id_out = id;
    /* a worker may claim it before this line: the insert is what counts */
    wake(s, &q);
    return DB_OK;
}

int scheduler_cancel(Scheduler *s, int64_t job_id) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nworkers; i++) {
        Worker *w = &s->workers[i];
        if (w->job_id != job_id) continue;
        if (w->stop != STOP_SHUTDOWN) {
            w->stop = STOP_CANCEL;
            atomic_store(&w->cancel, 1);
        }
        pthread_mutex_unlock(&s->mu);
        return DB_OK;
    }
    /* not on a worker: cancel it in the queue, under mu so no worker claims
     * it meanwhile */
    int rc = db_job_cancel_queued(s->db, job_id);
    if (rc == DB_OK) forget_device(s, job_id);
    pthread_mutex_unlock(&s->mu);
    if (rc == DB_OK) {
        db_log_append(s->db, job_id, "cancelled while queued", NULL);
        bump(s);
    } else if (rc == DB_CONFLICT) {
        error_set("job %" PRId64 " has already ended", job_id);
        DbJob job;
        if (db_job_get(s->db, job_id, &job) == DB_OK) {
            error_set("job %" PRId64 " has already ended (%s)", job_id,
                      db_job_state_name(job.state));
            db_job_clear(&job);
        }
    }
    return rc;
}

int scheduler_queue_info(Scheduler *s, int64_t job_id, int *ahead, char *reason, size_t size) {
    int pos = 0;
    int rc = db_job_queue_position(s->db, job_id, &pos);
    if (rc != DB_OK) return rc;
    if (ahead) *ahead = pos;
    if (!reason || size == 0) return DB_OK;
    pthread_mutex_lock(&s->mu);
    QueuedDevice want;
    if (!queued_device(s, job_id, &want)) want = (QueuedDevice){.id = job_id, .any = true};
    int able = 0, busy = 0;
    for (int i = 0; i < s->nworkers; i++) {
        if (!can_run(&s->workers[i], &want)) continue;
        able++;
        busy += s->workers[i].job_id != 0;
    }
    /* "a free cpu worker" when all workers are CPUs or the job wants
     * one device; "a free worker" when any of several kinds will do */
    char kind[40] = "";
    bool same = true;
    for (int i = 1; i < s->nworkers; i++)
        same &= device_equal(s->workers[i].device, s->workers[0].device);
    if (!want.any) {
        char d[32];
        snprintf(kind, sizeof kind, "%s ", device_name(want.device, d, sizeof d));
    } else if (same && s->nworkers)
        snprintf(kind, sizeof kind, "%s ", s->workers[0].device_name);
    pthread_mutex_unlock(&s->mu);
    error_clear();
    char jobs[64];
    snprintf(jobs, sizeof jobs, "%d job%s ahead", pos, pos == 1 ? "" : "s");
    if (able == 0)
        snprintf(reason, size, "waiting for a %sworker, which this daemon does not have; %s",
                 kind, jobs);
    else if (busy == able)
        snprintf(reason, size, "waiting for a free %sworker (%d of %d busy); %s", kind, busy,
                 able, jobs);
    else
        snprintf(reason, size, "about to start on a free %sworker; %s", kind, jobs);
    return DB_OK;
}

int scheduler_progress(Scheduler *s, int64_t job_id, DbJobProgress *out) {
    int rc = DB_NOT_FOUND;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nworkers; i++) {
        Worker *w = &s->workers[i];
        if (w->job_id != job_id) continue;
        pthread_mutex_lock(&w->pmu);
        *out = w->progress;
        pthread_mutex_unlock(&w->pmu);
        rc = DB_OK;
        break;
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != DB_OK) error_set("job %" PRId64 ": not running", job_id);
    return rc;
}

int scheduler_workers(Scheduler *s, SchedulerWorkerInfo *out, int max) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nworkers && i < max; i++) {
        Worker *w = &s->workers[i];
        snprintf(out[i].device, sizeof out[i].device, "%s", w->device_name);
        out[i].job_id = w->job_id;
        pthread_mutex_lock(&w->pmu);
        out[i].samples_per_s = w->job_id ? w->progress.samples_per_s : 0;
        pthread_mutex_unlock(&w->pmu);
    }
    int n = s->nworkers;
    pthread_mutex_unlock(&s->mu);
    return n;
}
