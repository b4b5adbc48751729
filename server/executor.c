/* executor.c - one attempt at a job whose ranks run outside the daemon,
 * and the "external" launcher; see executor.h. */
#include "server/executor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/io/durable.h"
#include "server/remote_spec.h"
#include "server/scheduler_internal.h"

/* ---- the launchers ---- */

static const struct {
    const char *name;
    int (*open)(Db *db, const ExecutorConfig *config, ExecutorOps *out);
} executor_kinds[] = {
    {"external", executor_external},
    {"slurm", executor_slurm},
};

int executor_open(const char *name, Db *db, const ExecutorConfig *config, ExecutorOps *out) {
    char known[256] = "";
    for (size_t i = 0; i < sizeof executor_kinds / sizeof *executor_kinds; i++) {
        if (!strcmp(name, executor_kinds[i].name)) {
            if (slurm_config_check(&config->slurm) != 0 ||
                executor_kinds[i].open(db, config, out) != 0)
                return -1;
            out->config = config;
            return 0;
        }
        size_t n = strlen(known);
        snprintf(known + n, sizeof known - n, "%s%s", n ? ", " : "", executor_kinds[i].name);
    }
    return error_set("unknown executor '%s' (known: %s)", name, known);
}

const char *executor_name(const ExecutorOps *ops) { return ops->name; }

static int external_launch(void *ctx, const RemoteAttempt *a, char *handle, size_t size) {
    (void)ctx;
    /* nothing starts here: the handle says where the ranks' files are */
    snprintf(handle, size, "jobs/%" PRId64 "/attempt-%d", a->job, a->attempt);
    return 0;
}

static int external_poll(void *ctx, const RemoteAttempt *a, const char *handle,
                         RemoteStatus *out) {
    (void)handle;
    DbJobState state;
    char *error = NULL;
    int rc = db_job_remote_end(ctx, a->job, a->attempt, &state, &error);
    free(error);
    if (rc == DB_NOT_FOUND) {
        out->phase = REMOTE_RUNNING;
        return 0;
    }
    if (rc != DB_OK) return -1;
    out->phase = REMOTE_ENDED;
    snprintf(out->detail, sizeof out->detail, "reported %s", db_job_state_name(state));
    return 0;
}

/* The ranks learn of a cancel from the reply to their next report. */
static void external_cancel(void *ctx, const char *handle) {
    (void)ctx;
    (void)handle;
}

int executor_external(Db *db, const ExecutorConfig *config, ExecutorOps *out) {
    (void)config;
    *out = (ExecutorOps){.name = "external", .launch = external_launch, .poll = external_poll,
                         .cancel = external_cancel, .ctx = db};
    return 0;
}

/* ---- the attempt's files ---- */

static int path_in(char *buf, size_t size, const char *dir, const char *name) {
    if (snprintf(buf, size, "%s/%s", dir, name) >= (int)size)
        return error_set("%s/%s: path too long", dir, name);
    return 0;
}

/* spec.json, and with datasets fetched datasets.json beside it; *spec the
 * parsed spec. 0, or -1 with an error. */
static int write_spec(Scheduler *s, const DbJob *job, const SlurmConfig *c, RemoteAttempt *a,
                      JobSpec **spec) {
    bool fetch = c && c->datasets_fetch;
    RemoteSpecFetch f = {.cache = fetch ? c->datasets_cache : NULL, .base_url = s->report_url,
                         .attempt = job->attempt};
    char *text = remote_spec_json(s->db, job, fetch ? &f : NULL);
    if (!text) return error_prefix("spec.json");
    *spec = job_spec_parse(text, strlen(text));
    int rc = *spec ? durable_write_text(a->spec_path, 0644, text) : error_prefix("spec.json");
    free(text);
    if (fetch && rc == 0) {
        rc = path_in(a->manifest_path, sizeof a->manifest_path, a->dir, "datasets.json");
        if (rc == 0) rc = durable_write_text(a->manifest_path, 0644, f.manifest);
        a->datasets_cache = c->datasets_cache;
    }
    free(f.manifest);
    return rc;
}

/* Where the attempts' folders go: the Slurm shared dir, else the data dir
 * (ops NULL: a daemon that trains in process, its mpirun ranks' files). */
static const char *attempts_root(Db *db, const ExecutorOps *ops) {
    const SlurmConfig *c = ops && ops->config ? &ops->config->slurm : NULL;
    return c && c->shared_dir[0] ? c->shared_dir : db_data_dir(db);
}

/* An attempt's out/: the ranks' copies of whole checkpoints, counted in
 * no quota, which a daemon killed (-9) while they ran never removed. */
static void clean_out(const char *root, int64_t job, int attempt) {
    char out[4400];
    snprintf(out, sizeof out, "%s/jobs/%" PRId64 "/attempt-%d/out", root, job, attempt);
    if (db_remove_tree(out) != 0)
        scheduler_log(job, "error", "removing attempt %d's files: %s", attempt, error_get());
}

void executor_clean_left_attempts(Db *db, const ExecutorOps *ops, const DbJobAttempt *left,
                                  int n) {
    for (int i = 0; i < n; i++) clean_out(attempts_root(db, ops), left[i].job, left[i].attempt);
}

/* The out/ of the job's attempts before this one, should a daemon have
 * been killed between a start's db_job_recover_running and its cleaning. */
static void clean_earlier_attempts(const char *root, const DbJob *job) {
    for (int k = 1; k < job->attempt; k++) clean_out(root, job->id, k);
}

/* The attempt's directory, spec.json, token and out/; *spec the parsed
 * spec (job_spec_free it). 0, or -1 with an error. */
static int prepare(Scheduler *s, const DbJob *job, const ExecutorOps *ops, RemoteAttempt *a,
                   JobSpec **spec) {
    const SlurmConfig *c = ops->config ? &ops->config->slurm : NULL;
    const char *root = attempts_root(s->db, ops);
    *a = (RemoteAttempt){.job = job->id, .attempt = job->attempt, .ranks = 1};
    snprintf(a->report_url, sizeof a->report_url, "%s", s->report_url);
    if (snprintf(a->dir, sizeof a->dir, "%s/jobs/%" PRId64 "/attempt-%d", root, job->id,
                 job->attempt) >= (int)sizeof a->dir)
        return error_set("attempt directory: path too long");
    if (path_in(a->spec_path, sizeof a->spec_path, a->dir, "spec.json") ||
        path_in(a->token_path, sizeof a->token_path, a->dir, "token") ||
        path_in(a->out_dir, sizeof a->out_dir, a->dir, "out") || db_mkdir_p(a->out_dir) ||
        write_spec(s, job, c, a, spec) != 0)
        return -1;
    clean_earlier_attempts(root, job);
    a->spec = *spec;
    a->ranks = (*spec)->ranks;
    char token[DB_TOKEN_LEN + 1];
    int rc = scheduler_remote_token(s, job->id, job->attempt, token);
    if (rc == 0) rc = durable_write_text(a->token_path, 0600, token);
    memset(token, 0, sizeof token);
    return rc;
}

/* ---- following it ---- */

static const char *phase_name(RemotePhase p) {
    return p == REMOTE_PENDING ? "pending" : p == REMOTE_RUNNING ? "running" : "ended";
}

/* The status as the job's JSON shows it. */
static void show(Worker *w, const ExecutorOps *ops, const char *handle, const RemoteStatus *st) {
    pthread_mutex_lock(&w->pmu);
    SchedulerExecutorInfo *e = &w->exec;
    snprintf(e->name, sizeof e->name, "%s", ops->name);
    snprintf(e->handle, sizeof e->handle, "%s", handle);
    snprintf(e->phase, sizeof e->phase, "%s", phase_name(st->phase));
    snprintf(e->reason, sizeof e->reason, "%s", st->phase == REMOTE_PENDING ? st->reason : "");
    e->restarts = st->restarts;
    pthread_mutex_unlock(&w->pmu);
}

/* Waits ms, or less when the daemon stops or the job is asked to stop;
 * once a stop is `handled` (a cancel sent to the ranks), the whole ms
 * whatever else happens: the ranks are then polled until they end, not
 * spun on while the daemon stops. */
static void wait_poll(Worker *w, int ms, bool handled) {
    Scheduler *s = w->s;
    struct timespec deadline;
    clock_deadline_in(&deadline, ms);
    pthread_mutex_lock(&s->mu);
    while ((handled || (!s->stopping && !atomic_load(&w->cancel))) &&
           pthread_cond_timedwait(&s->work, &s->mu, &deadline) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&s->mu);
}

/* An ended attempt's out/ goes: the ranks' own copies of the checkpoints
 * the daemon now holds, and the one they resumed from; a link the ranks
 * left there is removed, never followed. The spec, the script, the
 * launcher's output and the token (no longer good for anything) stay for
 * whoever wants to see how it ran. */
static void clean_attempt(const RemoteAttempt *a) {
    if (db_remove_tree(a->out_dir) != 0)
        scheduler_log(a->job, "error", "removing the ranks' files: %s", error_get());
}

typedef struct {
    int attempt;
    DbJobState *state;
    char **reported;
} RemoteEnd;

static int read_remote_end(Scheduler *s, int64_t job, void *ctx) {
    RemoteEnd *e = ctx;
    return db_job_remote_end(s->db, job, e->attempt, e->state, e->reported);
}

/* The job's final state: the end its ranks reported, else `fallback`
 * with `why`. Its metrics are committed first: the ranks sent them all
 * before their end. */
static void record(Worker *w, const RemoteAttempt *a, DbJobState fallback, const char *why) {
    Scheduler *s = w->s;
    if (metric_writer_flush(s->mw) != 0)
        scheduler_log(a->job, "error", "metrics: %s", error_get());
    DbJobState state = fallback;
    char *reported = NULL;
    /* the end the ranks reported, read again while the database fails: a
     * success must not become the fallback's failure */
    int rc = attempt_store(s, a->job, "reading the ranks' end", read_remote_end,
                           &(RemoteEnd){a->attempt, &state, &reported}, NULL);
    if (rc == DB_ERROR) return; /* the daemon stops: its next start ends or requeues the job */
    if (rc != DB_OK) {
        state = fallback;
        reported = why ? strdup(why) : NULL;
    }
    pthread_mutex_lock(&w->pmu);
    DbJobProgress p = w->progress;
    pthread_mutex_unlock(&w->pmu);
    if (state == DB_JOB_SUCCEEDED) p.eta_s = 0;
    db_job_set_progress(s->db, a->job, &p);
    if (state == DB_JOB_SUCCEEDED)
        scheduler_job_log(s, a->job, "succeeded after %" PRId64 " steps", p.step);
    else
        scheduler_job_log(s, a->job, "%s: %s", db_job_state_name(state),
                          reported ? reported : "(no error given)");
    attempt_record_end(s, a->job, state, state == DB_JOB_SUCCEEDED ? NULL : reported);
    free(reported);
    clean_attempt(a);
}

/* The daemon stops, or a job of higher priority takes the slot: the
 * ranks are stopped and the job goes back to the queue. */
static void requeue(Worker *w, const RemoteAttempt *a, int64_t preempted_by) {
    Scheduler *s = w->s;
    metric_writer_flush(s->mw);
    if (preempted_by)
        scheduler_job_log(s, a->job, "preempted by job %" PRId64 ", of a higher priority; queued "
                                     "to resume", preempted_by);
    if (!attempt_requeue(s, a->job, preempted_by != 0) && !preempted_by)
        scheduler_log(a->job, "info", "ranks stopped, queued to resume");
    clean_attempt(a);
}

/* The ranks run: the slot's devices are its owner's use from now (not
 * while the job was pending in the executor's queue). */
static void mark_running(Worker *w) {
    pthread_mutex_lock(&w->s->mu);
    if (!w->use_since_ms) w->use_since_ms = db_now_ms();
    pthread_mutex_unlock(&w->s->mu);
}

/* The ranks stopped, by force when they have not ended: the job goes back
 * to the queue (preempted_by: the job that takes its place, 0 for the
 * daemon stopping). Ranks the last poll saw end are not signalled: their
 * handle (mpirun's pid, reaped) may be another process's by now. */
static void stop_and_requeue(Worker *w, const RemoteAttempt *a, const ExecutorOps *ops,
                             const char *handle, const RemoteStatus *st, int64_t preempted_by) {
    if (st->phase != REMOTE_ENDED) {
        ops->cancel(ops->ctx, handle);
        if (ops->reap) ops->reap(ops->ctx, handle, EXECUTOR_CANCEL_GRACE_S);
    }
    requeue(w, a, preempted_by);
}

/* How long ranks told to stop get to end. */
static double grace_s(const Scheduler *s) {
    return s->cfg.executor_grace_ms > 0 ? s->cfg.executor_grace_ms / 1000.0
                                        : EXECUTOR_CANCEL_GRACE_S;
}

/* Whether a preempted attempt goes back to the queue now: its ranks
 * pending (nothing to checkpoint yet), ended at the stop (their reported
 * end "cancelled", or none), or still running past the grace (and past
 * their checkpoint's upload, if one is under way). Ranks that
 * ended otherwise meanwhile (the run finished, or failed) are recorded as
 * they ended, as an attempt in process is. */
static bool preemption_over(Worker *w, const RemoteAttempt *a, const RemoteStatus *st,
                            double preempted_at) {
    if (st->phase == REMOTE_PENDING) return true;
    if (st->phase == REMOTE_RUNNING) {
        double waited = clock_now_s() - preempted_at;
        bool uploading = atomic_load(&w->uploads) > 0 && waited < EXECUTOR_UPLOAD_GRACE_S;
        return waited > grace_s(w->s) && !uploading;
    }
    DbJobState state;
    char *error = NULL;
    int rc = db_job_remote_end(w->s->db, a->job, a->attempt, &state, &error);
    free(error);
    return rc != DB_OK || state == DB_JOB_CANCELLED;
}

static void follow(Worker *w, const RemoteAttempt *a, const ExecutorOps *ops, const char *handle) {
    Scheduler *s = w->s;
    int poll_ms = s->cfg.executor_poll_ms > 0 ? s->cfg.executor_poll_ms : 1000;
    double cancelled_at = 0, preempted_at = 0;
    RemoteStatus st = {.phase = REMOTE_PENDING};
    for (bool first = true;; first = false) {
        if (!first) wait_poll(w, poll_ms, cancelled_at > 0 || preempted_at > 0);
        int64_t by = 0;
        WorkerStop stop = worker_stop(w, &by);
        if (stop == WORKER_STOP_SHUTDOWN) {
            stop_and_requeue(w, a, ops, handle, &st, 0);
            return;
        }
        /* a preemption: the ranks' reports are answered "preempt": true,
         * rank 0 uploads a partial checkpoint where they stop and reports
         * their end; then (or after the grace) the job goes back */
        if (stop == WORKER_STOP_PREEMPT && preempted_at == 0) {
            preempted_at = clock_now_s();
            scheduler_job_log(s, a->job, "preemption asked of the ranks: they checkpoint and end");
        }
        if (stop == WORKER_STOP_CANCEL && cancelled_at == 0) {
            ops->cancel(ops->ctx, handle);
            cancelled_at = clock_now_s();
            scheduler_job_log(s, a->job, "cancel asked of the ranks");
        }
        RemoteStatus now = {.phase = REMOTE_RUNNING, .restarts = st.restarts};
        if (ops->poll(ops->ctx, a, handle, &now) != 0) {
            scheduler_log(a->job, "error", "%s executor: poll: %s", ops->name, error_get());
            now = st; /* as it last stood: a cancel's or a preemption's grace still ends */
        }
        if (now.restarts > st.restarts)
            scheduler_job_log(s, a->job, "requeued by the %s launcher (restart %d)", ops->name,
                              now.restarts);
        st = now;
        show(w, ops, handle, &st);
        if (st.phase == REMOTE_RUNNING) mark_running(w);
        if (preempted_at > 0 && preemption_over(w, a, &st, preempted_at)) {
            stop_and_requeue(w, a, ops, handle, &st, by);
            return;
        }
        char why[512];
        if (st.phase == REMOTE_ENDED) {
            snprintf(why, sizeof why, "%s: %s",
                     cancelled_at > 0 ? "cancelled" : "the ranks ended without reporting",
                     st.detail[0] ? st.detail : "no detail");
            record(w, a, cancelled_at > 0 ? DB_JOB_CANCELLED : DB_JOB_FAILED, why);
            return;
        }
        if (cancelled_at > 0 && clock_now_s() - cancelled_at > grace_s(s)) {
            if (ops->reap) ops->reap(ops->ctx, handle, 0);
            snprintf(why, sizeof why, "cancelled; the ranks did not report their end within %.0f s",
                     grace_s(s));
            record(w, a, DB_JOB_CANCELLED, why);
            return;
        }
    }
}

void executor_attempt_run(Worker *w, const DbJob *job, const ExecutorOps *ops) {
    Scheduler *s = w->s;
    scheduler_job_log(s, job->id, "attempt %d through the %s executor on %s", job->attempt,
                      ops->name, w->device_name);
    error_clear();
    RemoteAttempt a;
    JobSpec *spec = NULL;
    char handle[128] = "";
    RemoteStatus pending = {.phase = REMOTE_PENDING};
    snprintf(pending.reason, sizeof pending.reason, "Launching");
    show(w, ops, handle, &pending);
    if (prepare(s, job, ops, &a, &spec) != 0 || ops->launch(ops->ctx, &a, handle, sizeof handle) != 0) {
        char err[ERROR_MAX + 32];
        snprintf(err, sizeof err, "launch: %s", error_get());
        scheduler_job_log(s, job->id, "failed: %s", err);
        attempt_record_end(s, job->id, DB_JOB_FAILED, err);
    } else {
        scheduler_job_log(s, job->id, "launched: %s", handle);
        follow(w, &a, ops, handle);
    }
    job_spec_free(spec);
}
