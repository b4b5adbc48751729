/* attempt.c - one attempt at a job on a worker: build it from its spec
 * (job/build.h, the code `traind run` uses), resume it from its newest
 * checkpoint, train it with the callbacks that store its metrics, log lines
 * and checkpoints, and record how it ended.
 *
 * Metrics go to the MetricWriter (batched, off the training thread), log
 * lines to the job's log, checkpoints to
 * <data-dir>/jobs/<id>/checkpoints/epoch-<N> (server/checkpoint_store.h: a
 * row with bytes and sha256, then keep_last garbage collection), and the
 * live progress (epoch, step, samples/s, ETA) to the worker, for GET
 * /v1/jobs/{id}. A daemon with an executor (serve --executor) trains
 * nothing here: the attempt is its ranks' outside the daemon
 * (server/executor.h).
 *
 * Resuming: an attempt after the first (a daemon restarted, a job put back
 * in the queue) starts from the job's newest checkpoint with train_resume,
 * after deleting the metrics the lost attempt logged past it, so every
 * step's metric is stored once and the trajectory is the one an
 * uninterrupted run follows. A job without a checkpoint starts over.
 *
 * A full disk (server/disk_space.h): a checkpoint that cannot be written
 * fails the job, with the space left (its partial directory removed, the
 * earlier checkpoints untouched); metrics or log lines SQLite cannot store
 * fail it at its next checkpoint or its end (the metric rows stay queued
 * and are committed once space returns). No retry: training on without a
 * checkpoint or a history is work a user cannot use, and a disk does not
 * empty itself. The record of how the job ended is the exception: it is
 * retried every second until it is stored.
 *
 * Stopping early: a cancel ends the job `cancelled`; a daemon stopping, or
 * a job of an admin's higher priority preempting it, checkpoints it where
 * it stands (train_run leaves the Trainer at a
 * consistent point after a cancel: data position, running sums of the
 * epoch, so a partial checkpoint there loses no work) and puts it back in
 * the queue.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/backend.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/train.h"
#include "job/build.h"
#include "server/checkpoint_store.h"
#include "server/executor.h"
#include "server/scheduler_internal.h"

typedef struct {
    Scheduler *s;
    Worker *w;
    int64_t job;
    const JobSpec *spec;
    int64_t total_steps;
    int64_t step0; /* step the attempt started from */
    double t0;
    const Trainer *trainer; /* the one training, while train_run runs */
    Error history_lost;  /* the first metric row or log line not stored ("" for none) */
} JobRun;

/* The first row of the job's history that could not be stored: the next
 * checkpoint is refused (it would point past a history with a hole). */
static void note_history_lost(JobRun *r, const char *what) {
    if (r->history_lost.message[0]) return;
    error_prefix("storing its %s", what);
    r->history_lost = *error_last();
}

static void on_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    JobRun *r = user;
    if (metric_writer_push(r->s->mw, r->job, name, step, epoch, value) != 0)
        note_history_lost(r, "metrics");
    if (strcmp(name, "loss") == 0) {
        /* the ETA from wall time, validations and checkpoints included; the
         * rate as the epoch's samples_per_s counts it, training time alone
         * (an epoch's first step keeps the last epoch's) */
        double dt = clock_now_s() - r->t0;
        double steps_per_s = dt > 0 ? (double)(step - r->step0) / dt : 0;
        double sps = train_samples_per_s(&r->trainer->state);
        pthread_mutex_lock(&r->w->pmu);
        DbJobProgress *p = &r->w->progress;
        p->epoch = epoch;
        p->step = step;
        p->total_steps = r->total_steps;
        if (sps > 0) p->samples_per_s = sps;
        if (steps_per_s > 0) p->eta_s = (double)(r->total_steps - step) / steps_per_s;
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
    if (scheduler_job_log(r->s, r->job, "%s", line) != 0) note_history_lost(r, "log");
}

/* Whether the job's history is stored up to now: its metrics (committed
 * now) and its log lines. 0, or -1 with the error of what is not. */
static int history_stored(JobRun *r) {
    if (metric_writer_flush(r->s->mw) != 0) return error_prefix("storing its metrics");
    return r->history_lost.message[0] ? error_restore(&r->history_lost) : 0;
}

static int write_checkpoint(void *ctx, const char *dir) {
    JobRun *r = ctx;
    return train_save_checkpoint(r->trainer, dir);
}

static int history_ready(void *ctx) { return history_stored(ctx); }

/* Saves t into its checkpoint directory and records it
 * (server/checkpoint_store.h). */
static int save_checkpoint(JobRun *r, const Trainer *t, int epoch, int64_t step, bool partial) {
    r->trainer = t;
    CheckpointStore cs = {.s = r->s, .job = r->job, .keep_last = r->spec->checkpoint_keep_last,
                          .write = write_checkpoint, .history_stored = history_ready, .ctx = r};
    return checkpoint_store(&cs, epoch, step, partial, NULL);
}

static int on_checkpoint(void *user, const Trainer *t, int epoch, int64_t step) {
    return save_checkpoint(user, t, epoch, step, false);
}

/* Puts a freshly built Trainer where the job's newest checkpoint left it,
 * then deletes the metrics logged past it by the lost attempt (after the
 * load: a checkpoint that does not load fails the job with its history
 * whole); without a checkpoint the job starts over and all its metrics go. */
static int resume(JobRun *r, Trainer *t, int attempt) {
    DbCheckpoint c;
    int rc = db_checkpoint_latest(r->s->db, r->job, &c);
    if (rc != DB_OK && rc != DB_NOT_FOUND) return -1;
    char dir[4400];
    if (rc == DB_OK && (db_checkpoint_file_path(r->s->db, &c, NULL, dir, sizeof dir) != 0 ||
                        train_resume(t, dir) != 0))
        return error_prefix("resume from %s", c.path);
    int64_t deleted = 0;
    if (db_metric_delete_after(r->s->db, r->job, rc == DB_OK ? c.step : -1, &deleted) != DB_OK)
        return -1;
    if (rc == DB_NOT_FOUND) {
        if (attempt > 1)
            scheduler_job_log(r->s, r->job,
                    "attempt %d: no checkpoint, starting over (%" PRId64 " metric rows superseded)",
                    attempt, deleted);
        return 0;
    }
    scheduler_job_log(r->s, r->job,
            "attempt %d: resumed from %s at epoch %d, step %" PRId64 " (%" PRId64
            " metric rows past it superseded)",
            attempt, c.path, t->state.epoch, t->state.step, deleted);
    return 0;
}

/* Waits a second before a store is tried again; false when the daemon
 * stops meanwhile. */
static bool wait_to_retry(Scheduler *s) {
    pthread_mutex_lock(&s->mu);
    struct timespec deadline;
    clock_deadline_in(&deadline, 1000);
    while (!s->stopping && pthread_cond_timedwait(&s->work, &s->mu, &deadline) != ETIMEDOUT) {
    }
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return !stopping;
}

/* See scheduler_internal.h. */
int attempt_store(Scheduler *s, int64_t job, const char *what, AttemptStore store, void *ctx,
                  int *tries) {
    for (int t = 1;; t++) {
        if (tries) *tries = t;
        int rc = store(s, job, ctx);
        if (rc != DB_ERROR) return rc;
        if (t == 1)
            scheduler_log(job, "error", "%s: %s; trying again every second", what, error_get());
        if (!wait_to_retry(s)) return DB_ERROR;
    }
}

typedef struct {
    DbJobState state;
    const char *error;
} JobEnd;

static int finish_job(Scheduler *s, int64_t job, void *ctx) {
    const JobEnd *e = ctx;
    return db_job_finish(s->db, job, e->state, e->error);
}

/* See scheduler_internal.h. */
void attempt_record_end(Scheduler *s, int64_t job, DbJobState state, const char *error) {
    char what[64];
    snprintf(what, sizeof what, "cannot record the job as %s", db_job_state_name(state));
    int tries;
    int rc = attempt_store(s, job, what, finish_job, &(JobEnd){state, error}, &tries);
    if (rc == DB_OK && tries > 1)
        scheduler_log(job, "info", "recorded as %s at try %d", db_job_state_name(state), tries);
    else if (rc == DB_ERROR)
        scheduler_log(job, "error", "not recorded as %s: the daemon stops",
                      db_job_state_name(state));
    else if (rc != DB_OK)
        scheduler_log(job, "error", "%s", error_get());
}

typedef struct {
    bool preempted;
    DbJobState state; /* the one it took: queued, or cancelled */
} Requeue;

#define REQUEUE_CANCELLED_LINE "cancelled: a cancel was asked as its run stopped"

static int requeue_job(Scheduler *s, int64_t job, void *ctx) {
    Requeue *r = ctx;
    return r->preempted ? db_job_preempted(s->db, job, REQUEUE_CANCELLED_LINE, &r->state)
                        : db_job_requeue(s->db, job, REQUEUE_CANCELLED_LINE, &r->state);
}

/* See scheduler_internal.h. */
bool attempt_requeue(Scheduler *s, int64_t job, bool preempted) {
    Requeue r = {.preempted = preempted, .state = DB_JOB_QUEUED};
    int rc = attempt_store(s, job, "requeue", requeue_job, &r, NULL);
    if (rc != DB_OK && rc != DB_ERROR) scheduler_log(job, "error", "requeue: %s", error_get());
    bool cancelled = rc == DB_OK && r.state == DB_JOB_CANCELLED; /* a cancel was asked of it */
    if (cancelled) { /* its line is stored: the job's followers are told, as for any line */
        scheduler_log(job, "info", "%s", REQUEUE_CANCELLED_LINE);
        scheduler_bump(s);
    }
    return cancelled;
}

/* The end of a run stopped for a daemon stopping or for the job that
 * preempts it (preempted_by, 0 for none): back in the queue, with a
 * partial checkpoint when the job has any progress past its last one. A
 * history that cannot be stored fails it instead: rows still queued would
 * be committed after the next attempt deleted those past its checkpoint. */
static void requeue_stopped(JobRun *r, const Trainer *t, bool built, int64_t preempted_by) {
    Scheduler *s = r->s;
    if (built && r->spec->checkpoint && !s->cfg.stop_without_checkpoint) {
        DbCheckpoint last;
        int rc = db_checkpoint_latest(s->db, r->job, &last);
        bool newer =
            rc == DB_NOT_FOUND ? t->state.step > 0 : rc == DB_OK && t->state.step > last.step;
        if (newer && save_checkpoint(r, t, t->state.epoch, t->state.step, true) != 0)
            scheduler_log(r->job, "error", "partial checkpoint at stop: %s", error_get());
    }
    int64_t step = built ? t->state.step : 0;
    if (metric_writer_flush(s->mw) != 0) {
        char err[ERROR_MAX];
        snprintf(err, sizeof err, "stopped at step %" PRId64 ", its metrics not stored: %s", step,
                 error_get());
        scheduler_job_log(s, r->job, "failed: %s", err);
        attempt_record_end(s, r->job, DB_JOB_FAILED, err);
        return;
    }
    /* the preemption's line first: whoever sees the job queued finds it */
    if (preempted_by)
        scheduler_job_log(s, r->job, "preempted at step %" PRId64 " by job %" PRId64
                           ", of a higher priority; queued to resume", step, preempted_by);
    if (!attempt_requeue(s, r->job, preempted_by != 0) && !preempted_by)
        scheduler_log(r->job, "info", "stopped at step %" PRId64 ", queued to resume", step);
}

/* OpenMP threads for this job, and how many that is. OpenMP's default is
 * every CPU the process had when it started; a worker kept to fewer (serve
 * --http-cpus, or a taskset on the thread) would run more threads than
 * cores and have them wait on each other. An OMP_NUM_THREADS the operator
 * set is theirs to keep. */
static int job_threads(const Scheduler *s) {
#ifdef _OPENMP
    cpu_set_t mine;
    if (s->cfg.threads_per_job > 0)
        omp_set_num_threads(s->cfg.threads_per_job);
    else if (!getenv("OMP_NUM_THREADS") && sched_getaffinity(0, sizeof mine, &mine) == 0 &&
             CPU_COUNT(&mine) > 0)
        omp_set_num_threads(CPU_COUNT(&mine));
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* The job built from its stored spec (the record a worker reads back; it
 * was checked when submitted) on the worker's device, with a Trainer where
 * its newest checkpoint left it. *built says whether t is usable. */
static int prepare(JobRun *r, const DbJob *job, JobBuild *b, Trainer *t, bool *built) {
    Worker *w = r->w;
    JobDaemon daemon = {.db = r->s->db, .train_dataset = job->train_dataset,
                        .val_dataset = job->val_dataset};
    int rc = job_build(b, job_spec_parse(job->spec_json, strlen(job->spec_json)), &daemon);
    /* the model on the worker's device now, so that a GPU out of memory
     * fails the job here with its message */
    if (rc == 0) rc = job_build_to_device(b, w->device);
    if (rc != 0) return -1;
    r->spec = b->spec;
    job_build_trainer(b, t, w->device);
    t->cancel = &w->cancel;
    t->cb = (TrainCallbacks){
        .user = r, .metric = on_metric, .log = on_log, .checkpoint = on_checkpoint};
    r->total_steps = train_total_steps(t);
    if (resume(r, t, job->attempt) != 0) return -1;
    *built = true;
    return 0;
}

/* Trains from where t stands; all its metrics stored is part of success. */
static int train(JobRun *r, Trainer *t) {
    r->step0 = t->state.step;
    r->t0 = clock_now_s();
    r->trainer = t;
    pthread_mutex_lock(&r->w->pmu);
    r->w->progress = (DbJobProgress){
        .epoch = t->state.epoch, .step = t->state.step, .total_steps = r->total_steps, .eta_s = -1};
    pthread_mutex_unlock(&r->w->pmu);
    if (train_run(t) != 0) return -1;
    /* a run whose metrics (or log) are not all stored has not succeeded:
     * its history would be missing points, and a finished job's history is
     * kept as final by the HTTP side (server/reply_cache.h) */
    return history_stored(r);
}

/* The worker's live progress stored as the job's; `done` zeroes its ETA. */
static void store_progress(JobRun *r, bool done) {
    pthread_mutex_lock(&r->w->pmu);
    if (done) r->w->progress.eta_s = 0;
    DbJobProgress p = r->w->progress;
    pthread_mutex_unlock(&r->w->pmu);
    db_job_set_progress(r->s->db, r->job, &p);
}

/* Records how the attempt ended: error is the failure's message. */
static void finish(JobRun *r, const Trainer *t, bool ok, bool built, const char *error) {
    Scheduler *s = r->s;
    int64_t by = 0;
    WorkerStop stop = worker_stop(r->w, &by);
    if (ok) {
        store_progress(r, true);
        scheduler_job_log(s, r->job, "succeeded after %" PRId64 " steps", t->state.step);
        attempt_record_end(s, r->job, DB_JOB_SUCCEEDED, NULL);
        return;
    }
    /* a stop requeues a run that ended at the cancel it made, not one that
     * failed meanwhile (its error is the job's) nor a graph step's failure
     * (the state past it: no checkpoint of it) */
    bool at_stop = !built || (t->cancelled && !t->graph_failed);
    if ((stop == WORKER_STOP_SHUTDOWN || stop == WORKER_STOP_PREEMPT) && at_stop) {
        requeue_stopped(r, t, built, stop == WORKER_STOP_PREEMPT ? by : 0);
        return;
    }
    metric_writer_flush(s->mw);
    bool cancelled = stop == WORKER_STOP_CANCEL;
    if (built) store_progress(r, false);
    char err[ERROR_MAX];
    if (cancelled)
        snprintf(err, sizeof err, "cancelled at step %" PRId64, built ? t->state.step : 0);
    else
        snprintf(err, sizeof err, "%s", error);
    scheduler_job_log(s, r->job, "%s: %s", cancelled ? "cancelled" : "failed", err);
    attempt_record_end(s, r->job, cancelled ? DB_JOB_CANCELLED : DB_JOB_FAILED, err);
}

/* The attempt trained here, on w's device. */
static void run_here(Worker *w, const DbJob *job) {
    Scheduler *s = w->s;
    JobRun r = {.s = s, .w = w, .job = job->id, .t0 = clock_now_s()};
    int threads = job_threads(s);
    scheduler_job_log(s, job->id, "attempt %d on %s, %d CPU thread%s", job->attempt,
                      w->device_name, threads, threads == 1 ? "" : "s");
    const Backend *be = backend_for(w->device);
    if (be && be->clear_error) be->clear_error(w->device); /* not the last job's failure */
    error_clear();
    JobBuild b;
    Trainer t;
    train_init(&t);
    bool built = false;
    bool ok = prepare(&r, job, &b, &t, &built) == 0 && train(&r, &t) == 0;
    char err[ERROR_MAX];
    snprintf(err, sizeof err, "%s", ok ? "" : error_get());
    finish(&r, &t, ok, built, err);
    job_build_free(&b);
}

/* The data-parallel processes the job's spec asks for (1 when it cannot
 * say: the build reports the spec's fault then). */
static int spec_ranks(const DbJob *job) {
    JobSpec *spec = job->spec_json ? job_spec_parse(job->spec_json, strlen(job->spec_json)) : NULL;
    int ranks = spec ? spec->ranks : 1;
    job_spec_free(spec);
    error_clear();
    return ranks;
}

/* A job of several ranks: mpirun starts them on this machine, on the
 * job's devices (a CPU worker's, the ranks sharing the job's threads; or
 * one GPU each), and they report as a Slurm job's ranks do
 * (server/executor_ranks.c). */
static void run_ranks(Worker *w, const DbJob *job) {
    char traind[1024];
    if (w->s->cfg.ranks_program) {
        snprintf(traind, sizeof traind, "%s", w->s->cfg.ranks_program);
    } else {
        ssize_t n = readlink("/proc/self/exe", traind, sizeof traind - 1);
        traind[n > 0 ? n : 0] = '\0';
    }
    ExecutorOps ops;
    if (executor_ranks(traind, job_threads(w->s), job->device, &ops) != 0) {
        char err[ERROR_MAX];
        snprintf(err, sizeof err, "%s", error_get());
        scheduler_job_log(w->s, job->id, "failed: %s", err);
        attempt_record_end(w->s, job->id, DB_JOB_FAILED, err);
        return;
    }
    executor_attempt_run(w, job, &ops);
    executor_ranks_close(&ops);
}

/* The device-seconds an attempt of job on worker w used: each of its
 * devices (a slot's: the GPUs it asked the executor for) from when they
 * ran it (server/scheduler_internal.h's use_since_ms) to now, decayed as
 * it went (a week's run is not a week of use as of its end). Taken from
 * the worker once: a plan made before it reaches the user's row counts it
 * in neither place for that moment, rather than in both. */
static double attempt_use_s(Worker *w, const DbJob *job) {
    Scheduler *s = w->s;
    pthread_mutex_lock(&s->mu);
    int64_t since = w->use_since_ms;
    for (int i = 0; i < s->nworkers; i++) /* the plan counts it as running no more */
        if (&s->workers[i] == w || s->workers[i].member_of == w->index)
            s->workers[i].use_since_ms = 0;
    pthread_mutex_unlock(&s->mu);
    int64_t now = db_now_ms();
    int devices = s->cfg.executor ? (w->slot_gpus > 0 ? w->slot_gpus : 1)
                                  : device_list_count(job->device);
    return since > 0 && now > since ? db_user_use_until_now(devices, (double)(now - since) / 1000.0,
                                                           s->cfg.fairshare_half_life_s)
                                    : 0;
}

void attempt_run(Worker *w, const DbJob *job) {
    Scheduler *s = w->s;
    /* what a crash left in its checkpoints directory, before the attempt
     * writes there */
    int strays = 0;
    if (checkpoint_collect_strays(s->db, job->id, &strays) != DB_OK)
        scheduler_log(job->id, "error", "checkpoints: %s", error_get());
    else if (strays > 0)
        scheduler_job_log(s, job->id, "attempt %d: %d unrecorded checkpoint director%s removed",
                          job->attempt, strays, strays == 1 ? "y" : "ies");
    if (s->cfg.executor)
        executor_attempt_run(w, job, s->cfg.executor);
    else if (spec_ranks(job) > 1)
        run_ranks(w, job);
    else
        run_here(w, job);
    /* the devices' time goes to its owner's recent use, for the fair queue */
    if (job->owner > 0 &&
        db_user_add_usage(s->db, job->owner, attempt_use_s(w, job),
                          s->cfg.fairshare_half_life_s) != DB_OK)
        scheduler_log(job->id, "error", "usage: %s", error_get());
    error_clear();
}
