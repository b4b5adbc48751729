/* scheduler.c - the queue and its workers; see scheduler.h for the
 * contract. One attempt at a job (build, resume, train, record the end) is
 * server/attempt.c; the checks a job passes before it is queued,
 * scheduler_admission.c.
 *
 * State lives in the database; the scheduler adds only what is per
 * process: which worker runs which job, each job's cancel flag and live
 * progress. A job of several GPUs takes as many workers at once: the first
 * runs it (its ranks, through mpirun) and the others hold their GPUs for
 * it (member_of) until it ends. What the queue needs of a job (the devices
 * it asks for, its ranks, its size) is in columns of the jobs table, filled
 * at submission: the queue never reads a spec.
 *
 * Locking. `mu` guards the workers' assignments and is held while a
 * worker picks and claims a job, and while a cancel looks for the job's
 * worker or cancels it in the queue, so a job is never both claimed and
 * cancelled-as-queued. The training thread never takes `mu`: its per-step
 * callbacks touch only its worker's `pmu` (progress) and the metric
 * writer's queue.
 */
#include "server/scheduler.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/json_text.h"
#include "server/checkpoint_store.h"
#include "server/executor.h"
#include "server/log.h"
#include "server/scheduler_internal.h"

/* How often an idle worker plans the queue again unwoken. */
#define SCHEDULER_IDLE_REPLAN_MS 5000

/* the log line of a job cancelled in the queue, stored with the change */
#define CANCELLED_QUEUED_LINE "cancelled while queued"

void scheduler_bump(Scheduler *s) { atomic_fetch_add(&s->generation, 1); }

uint64_t scheduler_generation(Scheduler *s) { return atomic_load(&s->generation); }

/* The scheduler's own lines on stderr, through server/log.h like the HTTP
 * layer's: {"event":"job","job":N,"level":"info","message":...}, or
 * "event":"scheduler" without a job (job 0). */
void scheduler_log(int64_t job, const char *level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = job ? json_pack("{s:I}", "job", (json_int_t)job) : json_object();
    if (!o) return;
    json_object_set_new(o, "level", json_string(level));
    json_object_set_new(o, "message", json_text(msg));
    log_json(job ? "job" : "scheduler", o);
}

int scheduler_job_log(Scheduler *s, int64_t job, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    scheduler_log(job, "info", "%s", line);
    int rc = 0;
    if (db_log_append(s->db, job, line, NULL) != DB_OK) {
        rc = -1;
        scheduler_log(job, "error", "cannot store a log line: %s", error_get());
    }
    scheduler_bump(s);
    return rc;
}

WorkerStop worker_stop(Worker *w, int64_t *by) {
    pthread_mutex_lock(&w->s->mu);
    WorkerStop stop = atomic_load(&w->cancel) ? w->stop : WORKER_STOP_NONE;
    if (by) *by = w->preempted_by;
    pthread_mutex_unlock(&w->s->mu);
    return stop;
}

/* ---- the queue ---- */

/* Under s->mu: the worker running the job (of a job of several GPUs, the
 * one that started it), or NULL. */
static Worker *worker_of(Scheduler *s, int64_t job) {
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].job_id == job && s->workers[i].member_of < 0) return &s->workers[i];
    return NULL;
}

/* Under mu: the workers as the plan sees them. */
static void plan_workers(const Scheduler *s, QueueWorker *out) {
    for (int i = 0; i < s->nworkers; i++) {
        const Worker *w = &s->workers[i];
        out[i] = (QueueWorker){.device = w->device, .job_id = w->job_id,
                               .slot = s->cfg.executor != NULL, .slot_gpus = w->slot_gpus,
                               .member = w->member_of >= 0, .lead = w->member_of,
                               .job_owner = w->job_owner,
                               .job_admin_priority = w->job_admin_priority,
                               .job_started_ms = w->job_started_ms,
                               .job_preemptions = w->job_preemptions,
                               .use_since_ms = w->use_since_ms,
                               /* set when a job preempts this worker's, kept
                                * until the worker claims again */
                               .freed_for = w->preempted_by};
        snprintf(out[i].device_name, sizeof out[i].device_name, "%s", w->device_name);
    }
}

/* The users, with their use decayed to now and their effective limits. */
static int plan_users(Scheduler *s, int64_t now_ms, QueueUser **out, int *n) {
    DbUser *users;
    if (db_user_list(s->db, &users, n) != DB_OK) return -1;
    *out = calloc((size_t)*n + 1, sizeof **out);
    if (!*out) {
        free(users);
        return error_set("queue: out of memory");
    }
    for (int i = 0; i < *n; i++) {
        QueueUser *u = &(*out)[i];
        u->id = users[i].id;
        snprintf(u->name, sizeof u->name, "%s", users[i].name);
        u->usage_s = db_user_usage_now(&users[i], now_ms, s->cfg.fairshare_half_life_s);
        u->quota = quota_effective(&users[i].quota, &s->quota_defaults);
    }
    free(users);
    return 0;
}

/* Under mu: the queue planned now, its jobs in run order in *entries and
 * their rows in *queue (both freed by the caller), *n of them. */
static int plan_now(Scheduler *s, DbQueuedJob **queue, QueueEntry **entries, int *n) {
    *queue = NULL;
    *entries = NULL;
    QueueUser *users = NULL;
    int nu = 0;
    QueueWorker workers[SCHEDULER_MAX_WORKERS];
    int64_t now = db_now_ms();
    if (db_job_queue(s->db, queue, n) != DB_OK || plan_users(s, now, &users, &nu) != 0)
        goto fail;
    *entries = calloc((size_t)*n + 1, sizeof **entries);
    if (!*entries) {
        error_set("queue: out of memory");
        goto fail;
    }
    plan_workers(s, workers);
    if (queue_plan(*queue, *n, workers, s->nworkers, users, nu, now,
                   s->cfg.fairshare_half_life_s, *entries) != 0)
        goto fail;
    free(users);
    return 0;
fail:
    free(users);
    free(*queue);
    free(*entries);
    *queue = NULL;
    *entries = NULL;
    *n = 0;
    return -1;
}

/* Under mu: the running jobs the plan preempts are asked to stop at their
 * next step (checkpointed, back in the queue: server/attempt.c). */
static void apply_preemptions(Scheduler *s, const QueueEntry *e, int n) {
    for (int i = 0; i < n; i++) {
        if (e[i].preempts < 0) continue;
        Worker *w = &s->workers[e[i].preempts];
        if (!w->job_id || w->stop != WORKER_STOP_NONE) continue;
        w->stop = WORKER_STOP_PREEMPT;
        w->preempted_by = e[i].job_id;
        atomic_store(&w->cancel, 1);
        scheduler_log(w->job_id, "info", "preempted by job %lld, of a higher priority",
                      (long long)e[i].job_id);
    }
}

/* Under mu: worker w runs job (claimed), or holds its GPU for the job
 * `lead` runs (lead: w itself, or another). */
static void assign(Worker *w, const DbJob *job, const Worker *lead, int slot_gpus) {
    w->job_id = job->id;
    w->job_owner = job->owner;
    w->job_admin_priority = job->admin_priority;
    w->job_started_ms = job->started_at;
    w->job_preemptions = job->preemptions;
    w->use_since_ms = w->s->cfg.executor ? 0 : job->started_at;
    w->member_of = lead == w ? -1 : lead->index;
    w->slot_gpus = slot_gpus;
    w->stop = WORKER_STOP_NONE;
    w->preempted_by = 0;
    atomic_store(&w->cancel, 0);
    atomic_store(&w->uploads, 0);
    w->claim = ++w->s->claims;
}

/* Under mu: claims the job of plan entry e for worker w, its first; the
 * others of e's workers hold their GPUs for it. 1, 0 (cancelled
 * meanwhile), -1 (logged). */
static int claim(Scheduler *s, Worker *w, const QueueEntry *e, DbJob *out) {
    char devices[DB_DEVICES_MAX + 1] = "";
    for (int k = 0; k < e->nworkers; k++) {
        size_t used = strlen(devices);
        snprintf(devices + used, sizeof devices - used, "%s%s", k ? "," : "",
                 s->workers[e->workers[k]].device_name);
    }
    int rc = db_job_claim(s->db, e->job_id, devices, out);
    if (rc != DB_OK) {
        if (rc != DB_CONFLICT) scheduler_log(e->job_id, "error", "claim: %s", error_get());
        return rc == DB_CONFLICT ? 0 : -1;
    }
    for (int k = 0; k < e->nworkers; k++) assign(&s->workers[e->workers[k]], out, w, e->gpus);
    /* workers freed for it are anyone's now */
    for (int i = 0; i < s->nworkers; i++)
        if (!s->workers[i].job_id && s->workers[i].preempted_by == e->job_id)
            s->workers[i].preempted_by = 0;
    return 1;
}

/* Under mu: plans the queue and acts on it for worker w (NULL: for none):
 * the preemptions, and the job the plan starts on w, claimed into *out. 1
 * when w got a job, 0 when it has none to take, -1 when the queue could
 * not be read (logged; the worker tries again soon). */
static int replan(Scheduler *s, Worker *w, DbJob *out) {
    DbQueuedJob *queue;
    QueueEntry *e;
    int n, got = 0;
    if (plan_now(s, &queue, &e, &n) != 0) {
        scheduler_log(0, "error", "queue: %s", error_get());
        return -1;
    }
    apply_preemptions(s, e, n);
    /* a job put back in the queue (preempted, stopped) is claimed once the
     * worker of its last attempt has let it go: till then a cancel is that
     * worker's to act on, and two workers holding one job would split it */
    for (int i = 0; w && i < n && !got; i++)
        if (e[i].reason == QUEUE_STARTS && e[i].worker == w->index && !worker_of(s, e[i].job_id))
            got = claim(s, w, &e[i], out);
    free(queue);
    free(e);
    return got;
}

/* ---- the workers ---- */

static void *worker_main(void *arg) {
    Worker *w = arg;
    Scheduler *s = w->s;
    char name[16]; /* as ps -L and perf show it */
    snprintf(name, sizeof name, "train-%.9s", w->device_name);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        DbJob job;
        int got = replan(s, w, &job);
        if (got <= 0) {
            /* the database failed: again in a second, not at the next
             * event; idle: woken by the daemon's own changes, and every
             * SCHEDULER_IDLE_REPLAN_MS to see those made beside it
             * (traind user set-quota on its data dir) */
            struct timespec ts;
            clock_deadline_in(&ts, got < 0 ? 1000 : SCHEDULER_IDLE_REPLAN_MS);
            pthread_cond_timedwait(&s->work, &s->mu, &ts);
            continue;
        }
        pthread_mutex_lock(&w->pmu);
        /* where it stood (the steps of the whole run are known since its
         * submission), its rate and ETA unknown until it has stepped */
        w->progress = job.progress;
        w->progress.samples_per_s = 0;
        w->progress.eta_s = -1;
        pthread_mutex_unlock(&w->pmu);
        /* the plan changed: a worker that was planned to wait may now
         * start another job (an auto job left to this GPU worker) */
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mu);
        scheduler_bump(s);
        attempt_run(w, &job);
        db_job_clear(&job);
        pthread_mutex_lock(&s->mu);
        /* a cancel that came while a preempted job was being put back in
         * the queue: it is cancelled there (a conflict: it had ended) */
        if (w->stop == WORKER_STOP_CANCEL)
            db_job_cancel_queued(s->db, w->job_id, CANCELLED_QUEUED_LINE);
        for (int i = 0; i < s->nworkers; i++) /* the GPUs it held for the job's ranks */
            if (s->workers[i].member_of == w->index) {
                s->workers[i].job_id = 0;
                s->workers[i].member_of = -1;
            }
        w->job_id = 0;
        pthread_mutex_lock(&w->pmu);
        memset(&w->progress, 0, sizeof w->progress);
        memset(&w->exec, 0, sizeof w->exec);
        w->remote_t0 = 0;
        pthread_mutex_unlock(&w->pmu);
        pthread_mutex_unlock(&s->mu);
        scheduler_bump(s);
        pthread_mutex_lock(&s->mu);
        /* a worker freed: another may find work it could not take */
        pthread_cond_broadcast(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int parse_devices(const SchedulerConfig *cfg, Device *out, int *n) {
    *n = 0;
    if (cfg->executor) {
        /* slots: the ranks run elsewhere, on devices the daemon does not own */
        int k = cfg->executor_slots > 0 ? cfg->executor_slots : 4;
        if (k > SCHEDULER_MAX_WORKERS)
            return error_set("executor slots: at most %d, got %d", SCHEDULER_MAX_WORKERS, k);
        for (int i = 0; i < k; i++) out[(*n)++] = DEVICE_CPU_INIT;
        return 0;
    }
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

/* The device's memory in all (RAM for the CPU), 0 when it cannot be read. */
static uint64_t device_memory(Device d) {
    const Backend *be = backend_for(d);
    char name[128];
    uint64_t total = 0, free_ = 0;
    if (!be || be->device_info(d, name, sizeof name, &total, &free_) != 0) total = 0;
    error_clear();
    return total;
}

/* What the runs a previous daemon left running may have left in their
 * checkpoints directories (a checkpoint half staged, one set aside by a
 * swap cut short): collected now, not at the job's next attempt, which
 * a job recovered as ended, or cancelled while queued, never has. */
static void collect_left_strays(Scheduler *s, const DbJobAttempt *left, int n) {
    for (int i = 0; i < n; i++) {
        int removed = 0;
        if (checkpoint_collect_strays(s->db, left[i].job, &removed) != DB_OK)
            scheduler_log(left[i].job, "error", "checkpoints: %s", error_get());
        else if (removed > 0)
            scheduler_job_log(s, left[i].job,
                              "daemon start: %d unrecorded checkpoint director%s removed",
                              removed, removed == 1 ? "y" : "ies");
    }
}

Scheduler *scheduler_start(const SchedulerConfig *cfg) {
    if (!cfg || !cfg->db || !cfg->metrics) {
        error_set("scheduler: needs a database and a metric writer");
        return NULL;
    }
    Device devs[SCHEDULER_MAX_WORKERS];
    int n;
    if (parse_devices(cfg, devs, &n) != 0) return NULL;
    /* jobs a previous daemon left running end as they were known to, or
     * go back in the queue, first */
    int requeued = 0, ended = 0, nleft = 0;
    DbJobAttempt *left = NULL;
    if (db_job_running_attempts(cfg->db, &left, &nleft) != DB_OK) return NULL;
    if (db_job_recover_running(cfg->db, &requeued, &ended) != DB_OK) {
        free(left);
        return NULL;
    }
    executor_clean_left_attempts(cfg->db, cfg->executor, left, nleft);
    if (ended)
        scheduler_log(0, "info", "%d job(s) left running ended as their runs had reported, or "
                      "as cancelled", ended);
    if (requeued)
        scheduler_log(0, "info", "%d job(s) left running put back in the queue", requeued);
    Scheduler *s = calloc(1, sizeof *s + (size_t)n * sizeof(Worker));
    if (!s) {
        free(left);
        error_set("scheduler: out of memory");
        return NULL;
    }
    s->db = cfg->db;
    s->mw = cfg->metrics;
    s->cfg = *cfg;
    s->cfg.devices = NULL; /* not kept: the caller's string */
    snprintf(s->report_url, sizeof s->report_url, "%s", cfg->report_url ? cfg->report_url : "");
    s->cfg.report_url = NULL;
    s->quota_defaults = cfg->quota_defaults ? *cfg->quota_defaults
                                            : (DbQuota){-1, -1, -1, -1, -1};
    s->cfg.quota_defaults = NULL;
    s->nworkers = n;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    for (int i = 0; i < n; i++) {
        Worker *w = &s->workers[i];
        w->s = s;
        w->index = i;
        w->device = devs[i];
        device_name(devs[i], w->device_name, sizeof w->device_name);
        w->memory_bytes = cfg->executor ? 0 : device_memory(devs[i]);
        w->member_of = -1;
        if (cfg->executor) /* "external-0": a slot, not a device */
            snprintf(w->device_name, sizeof w->device_name, "%.16s-%d", executor_name(cfg->executor), i);
        atomic_init(&w->cancel, 0);
        atomic_init(&w->uploads, 0);
        pthread_mutex_init(&w->pmu, NULL);
    }
    collect_left_strays(s, left, nleft); /* before any worker takes a job */
    free(left);
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
        if (w->job_id && w->member_of < 0 && w->stop != WORKER_STOP_CANCEL) {
            w->stop = WORKER_STOP_SHUTDOWN;
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
    free(s);
}

/* ---- the HTTP side ---- */

void scheduler_wake(Scheduler *s) {
    pthread_mutex_lock(&s->mu);
    replan(s, NULL, NULL); /* preemptions: every worker may be busy */
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    scheduler_bump(s);
}

int scheduler_submit(Scheduler *s, int64_t job_id) {
    DbJob job;
    int rc = db_job_get(s->db, job_id, &job);
    if (rc != DB_OK) return rc;
    DbJobState state = job.state;
    db_job_clear(&job);
    /* running: a worker took it already (workers also look at the queue
     * on their own) */
    if (state == DB_JOB_RUNNING) return DB_OK;
    if (state != DB_JOB_QUEUED) {
        error_set("job %" PRId64 " is %s, not queued", job_id, db_job_state_name(state));
        return DB_CONFLICT;
    }
    scheduler_wake(s);
    return DB_OK;
}

int scheduler_set_priority(Scheduler *s, int64_t job_id, bool admin, int priority) {
    int rc = db_job_set_priority(s->db, job_id, admin, priority);
    if (rc != DB_OK) return rc;
    /* a running job's own priority matters for preemption too */
    pthread_mutex_lock(&s->mu);
    for (int i = 0; admin && i < s->nworkers; i++)
        if (s->workers[i].job_id == job_id) s->workers[i].job_admin_priority = priority;
    pthread_mutex_unlock(&s->mu);
    scheduler_wake(s);
    return DB_OK;
}

/* A running job's cancel, called with mu held and letting go of it: its
 * worker told (a stop already under way for the daemon's shutdown is left
 * as it is), and the cancel kept on its row, so that a daemon killed
 * before the run stops still ends it cancelled at its next start
 * (db_job_recover_running), and a stop that requeues it ends it cancelled
 * instead. false when the run left the row meanwhile (its worker requeued
 * it first). */
static bool cancel_running(Scheduler *s, Worker *w, int64_t job_id) {
    if (w->stop != WORKER_STOP_SHUTDOWN) {
        w->stop = WORKER_STOP_CANCEL;
        atomic_store(&w->cancel, 1);
    }
    pthread_mutex_unlock(&s->mu);
    int rc = db_job_cancel_requested(s->db, job_id);
    if (rc != DB_OK && rc != DB_CONFLICT)
        scheduler_log(job_id, "error", "keeping the cancel: %s", error_get());
    return rc != DB_CONFLICT;
}

int scheduler_cancel(Scheduler *s, int64_t job_id, bool *was_running) {
    *was_running = false;
    /* a run that left its row as it was told looked for again, once: in
     * the queue now, or on a worker again */
    for (int look = 0;; look++) {
        pthread_mutex_lock(&s->mu);
        Worker *w = look < 2 ? worker_of(s, job_id) : NULL;
        if (!w) break;
        *was_running = true;
        if (cancel_running(s, w, job_id)) return DB_OK;
    }
    /* not on a worker: cancel it in the queue, under mu so no worker claims
     * it meanwhile */
    int rc = db_job_cancel_queued(s->db, job_id, CANCELLED_QUEUED_LINE);
    pthread_mutex_unlock(&s->mu);
    if (rc == DB_OK) {
        scheduler_wake(s); /* the workers it held or was freed for are anyone's */
    } else if (rc == DB_CONFLICT && *was_running) {
        rc = DB_OK; /* its run ended on its own as it was told */
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

int scheduler_queue(Scheduler *s, QueueEntry **out, int *n) {
    DbQueuedJob *queue;
    pthread_mutex_lock(&s->mu);
    int rc = plan_now(s, &queue, out, n);
    pthread_mutex_unlock(&s->mu);
    free(queue);
    return rc == 0 ? DB_OK : DB_ERROR;
}

int scheduler_queue_info(Scheduler *s, int64_t job_id, QueueEntry *out) {
    QueueEntry *e;
    int n;
    int rc = scheduler_queue(s, &e, &n);
    if (rc != DB_OK) return rc;
    rc = DB_CONFLICT;
    for (int i = 0; i < n && rc != DB_OK; i++)
        if (e[i].job_id == job_id) {
            *out = e[i];
            rc = DB_OK;
        }
    free(e);
    if (rc != DB_OK) error_set("job %" PRId64 " is not queued", job_id);
    return rc;
}

int scheduler_progress(Scheduler *s, int64_t job_id, DbJobProgress *out) {
    pthread_mutex_lock(&s->mu);
    Worker *w = worker_of(s, job_id);
    if (w) {
        pthread_mutex_lock(&w->pmu);
        *out = w->progress;
        pthread_mutex_unlock(&w->pmu);
    }
    pthread_mutex_unlock(&s->mu);
    if (!w) error_set("job %" PRId64 ": not running", job_id);
    return w ? DB_OK : DB_NOT_FOUND;
}

uint64_t scheduler_upload_begin(Scheduler *s, int64_t job) {
    if (!s) return 0;
    pthread_mutex_lock(&s->mu);
    Worker *w = worker_of(s, job);
    if (w) atomic_fetch_add(&w->uploads, 1);
    uint64_t claim = w ? w->claim : 0;
    pthread_mutex_unlock(&s->mu);
    return claim;
}

void scheduler_upload_end(Scheduler *s, uint64_t claim) {
    if (!s || !claim) return;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].job_id && s->workers[i].claim == claim)
            atomic_fetch_sub(&s->workers[i].uploads, 1);
    pthread_mutex_unlock(&s->mu);
}

int scheduler_remote_progress(Scheduler *s, int64_t job, const DbJobProgress *p, bool *cancel,
                              bool *preempt) {
    *cancel = *preempt = false;
    pthread_mutex_lock(&s->mu);
    Worker *w = worker_of(s, job);
    if (w) {
        *cancel = atomic_load(&w->cancel) != 0;
        *preempt = *cancel && w->stop == WORKER_STOP_PREEMPT;
        pthread_mutex_lock(&w->pmu);
        DbJobProgress *q = &w->progress;
        double now = clock_now_s();
        if (p && w->remote_t0 == 0) {
            w->remote_t0 = now;
            w->remote_step0 = p->step;
        } else if (p && p->step > w->remote_step0 && now > w->remote_t0) {
            double steps_per_s = (double)(p->step - w->remote_step0) / (now - w->remote_t0);
            q->eta_s = (double)(q->total_steps - p->step) / steps_per_s;
        }
        if (p) {
            q->epoch = p->epoch;
            q->step = p->step;
            if (p->samples_per_s > 0) q->samples_per_s = p->samples_per_s;
        }
        pthread_mutex_unlock(&w->pmu);
    }
    pthread_mutex_unlock(&s->mu);
    if (!w) error_set("job %" PRId64 ": not running", job);
    return w ? DB_OK : DB_NOT_FOUND;
}

int scheduler_executor_info(Scheduler *s, int64_t job, SchedulerExecutorInfo *out) {
    int rc = DB_NOT_FOUND;
    pthread_mutex_lock(&s->mu);
    Worker *w = worker_of(s, job);
    if (w) {
        pthread_mutex_lock(&w->pmu);
        *out = w->exec;
        pthread_mutex_unlock(&w->pmu);
        rc = out->name[0] ? DB_OK : DB_NOT_FOUND;
    }
    pthread_mutex_unlock(&s->mu);
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
