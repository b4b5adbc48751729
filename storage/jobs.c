/* jobs.c - job records and their state machine.
 *
 *     queued -> running -> succeeded | failed | cancelled
 *     queued -> cancelled                (cancelled before it ran)
 *     running -> queued                  (daemon stopped or crashed, or the job
 *                                         preempted; it resumes)
 *
 * Every transition is one UPDATE guarded by the state it leaves ("... WHERE
 * id = ? AND state = 'queued'"), so two threads racing (a cancel and a
 * worker's claim) cannot both win: the loser sees no row changed and gets
 * DB_CONFLICT. The queue is the queued rows (the jobs_queue index serves
 * them); the order they run in is the fair queue's (server/queue_plan.h).
 */
#include "storage/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char *const state_names[DB_JOB_NUM_STATES] = {"queued", "running", "succeeded",
                                                           "failed", "cancelled"};

const char *db_job_state_name(DbJobState s) {
    return (unsigned)s < DB_JOB_NUM_STATES ? state_names[s] : "unknown";
}

int db_job_state_parse(const char *name, DbJobState *out) {
    for (int i = 0; i < DB_JOB_NUM_STATES; i++)
        if (name && strcmp(name, state_names[i]) == 0) {
            *out = (DbJobState)i;
            return DB_OK;
        }
    error_set("state: unknown job state '%s' (known: queued, running, succeeded, failed, "
              "cancelled)",
              name ? name : "");
    return DB_INVALID;
}

void db_job_clear(DbJob *job) {
    if (!job) return;
    free(job->spec_json);
    free(job->error);
    job->spec_json = job->error = NULL;
}

/* The dataset `id` ready and seen by the job's owner (?2; ?13: one who
 * sees every dataset). */
#define JOB_DATASET(id)                                                                     \
    "SELECT 1 FROM datasets WHERE id = " id " AND state = 'ready' AND (?13 OR owner = ?2 "  \
    "OR shared = 1)"

int db_job_insert(Db *db, const DbJobNew *job, int64_t *id_out) {
    if (!job || !job->spec_json) {
        error_set("job: no spec");
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    /* only with its datasets ready and still the owner's to see, in the
     * one statement: a dataset's delete takes it out of 'ready' unless a
     * queued job names it (db_dataset_delete), so neither a delete nor
     * an unshare can cross a submission */
    sqlite3_stmt *st = db_stmt(c, "INSERT INTO jobs (name, owner, spec, state, priority, "
                                  "created_at, device_request, parameters, train_bytes, "
                                  "train_dataset, val_dataset, total_steps, ranks) "
                                  "SELECT ?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
                                  "?12 WHERE (?9 IS NULL OR EXISTS (" JOB_DATASET("?9") ")) AND "
                                  "(?10 IS NULL OR EXISTS (" JOB_DATASET("?10") "))");
    if (!st) goto done;
    db_bind_text(st, 1, job->name ? job->name : "");
    if (job->owner > 0)
        sqlite3_bind_int64(st, 2, job->owner);
    else
        sqlite3_bind_null(st, 2);
    db_bind_text(st, 3, job->spec_json);
    sqlite3_bind_int(st, 4, job->priority);
    sqlite3_bind_int64(st, 5, db_now_ms());
    db_bind_text(st, 6, job->device_request ? job->device_request : "auto");
    sqlite3_bind_int64(st, 7, job->parameters);
    sqlite3_bind_int64(st, 8, job->train_bytes);
    for (int i = 0; i < 2; i++) {
        int64_t ds = i ? job->val_dataset : job->train_dataset;
        if (ds > 0)
            sqlite3_bind_int64(st, 9 + i, ds);
        else
            sqlite3_bind_null(st, 9 + i);
    }
    sqlite3_bind_int64(st, 11, job->total_steps);
    sqlite3_bind_int(st, 12, job->ranks > 0 ? job->ranks : 1);
    sqlite3_bind_int(st, 13, job->owner <= 0 || job->owner_admin);
    rc = db_step_done(c, st, "job");
    if (rc == DB_OK && sqlite3_changes(c->h) == 0) {
        error_at("data", "a dataset of the job was deleted, or no longer shared, as it was "
                         "submitted");
        rc = DB_INVALID;
    }
    if (rc == DB_OK && id_out) *id_out = sqlite3_last_insert_rowid(c->h);
done:
    db_release(db, c);
    return rc;
}

/* ?9 says whether to read the spec: listings leave the (large) text out. */
#define JOB_COLS                                                                           \
    "SELECT id, name, coalesce(owner, 0), CASE WHEN ?9 THEN spec END, state, device, "    \
    "priority, attempt, created_at, started_at, finished_at, error, epoch, step, "         \
    "total_steps, samples_per_s, eta_s, device_request, parameters, train_bytes, "          \
    "(SELECT u.name FROM users u WHERE u.id = jobs.owner), coalesce(train_dataset, 0), "   \
    "coalesce(val_dataset, 0), admin_priority, preemptions, ranks FROM jobs "

static int read_job(sqlite3_stmt *st, DbJob *j) {
    memset(j, 0, sizeof *j);
    int oom = 0;
    j->id = sqlite3_column_int64(st, 0);
    db_column_copy(st, 1, j->name, sizeof j->name);
    j->owner = sqlite3_column_int64(st, 2);
    j->spec_json = db_column_dup(st, 3, &oom);
    const char *state = (const char *)sqlite3_column_text(st, 4);
    DbJobState s = DB_JOB_QUEUED;
    for (int i = 0; state && i < DB_JOB_NUM_STATES; i++)
        if (strcmp(state, state_names[i]) == 0) s = (DbJobState)i;
    j->state = s;
    db_column_copy(st, 5, j->device, sizeof j->device);
    j->priority = sqlite3_column_int(st, 6);
    j->attempt = sqlite3_column_int(st, 7);
    j->created_at = sqlite3_column_int64(st, 8);
    j->started_at = sqlite3_column_int64(st, 9);
    j->finished_at = sqlite3_column_int64(st, 10);
    j->error = db_column_dup(st, 11, &oom);
    j->progress.epoch = sqlite3_column_int(st, 12);
    j->progress.step = sqlite3_column_int64(st, 13);
    j->progress.total_steps = sqlite3_column_int64(st, 14);
    j->progress.samples_per_s = sqlite3_column_double(st, 15);
    j->progress.eta_s = sqlite3_column_double(st, 16);
    db_column_copy(st, 17, j->device_request, sizeof j->device_request);
    j->parameters = sqlite3_column_int64(st, 18);
    j->train_bytes = sqlite3_column_int64(st, 19);
    db_column_copy(st, 20, j->owner_name, sizeof j->owner_name);
    j->train_dataset = sqlite3_column_int64(st, 21);
    j->val_dataset = sqlite3_column_int64(st, 22);
    j->admin_priority = sqlite3_column_int(st, 23);
    j->preemptions = sqlite3_column_int(st, 24);
    j->ranks = sqlite3_column_int(st, 25);
    if (oom) {
        db_job_clear(j);
        return error_set("job: out of memory");
    }
    return 0;
}

/* Steps st (bound) for job id's row, read into out: DB_OK, DB_NOT_FOUND
 * ("job N: not found"), DB_ERROR. */
static int job_row(DbConn *c, sqlite3_stmt *st, int64_t id, DbRowReader read, void *out) {
    int s = sqlite3_step(st), rc;
    if (s == SQLITE_ROW)
        rc = read(st, out) == 0 ? DB_OK : DB_ERROR;
    else if (s == SQLITE_DONE) {
        error_set("job %lld: not found", (long long)id);
        rc = DB_NOT_FOUND;
    } else
        rc = db_fail(c, "job");
    sqlite3_reset(st);
    return rc;
}

static int read_job_row(sqlite3_stmt *st, void *out) { return read_job(st, out); }

static int get_with(DbConn *c, int64_t id, DbJob *out) {
    sqlite3_stmt *st = db_stmt(c, JOB_COLS "WHERE id = ?1");
    if (!st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 9, 1);
    return job_row(c, st, id, read_job_row, out);
}

int db_job_get(Db *db, int64_t id, DbJob *out) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = get_with(c, id, out);
    db_release(db, c);
    return rc;
}

int db_job_list(Db *db, const DbJobQuery *q, DbJob **out, int *n, int64_t *next_cursor) {
    *out = NULL;
    *n = 0;
    if (next_cursor) *next_cursor = 0;
    DbJobQuery dq = {.state = -1};
    if (!q) q = &dq;
    int limit = q->limit == 0 ? 100 : q->limit;
    if (limit < 1 || limit > 1000) {
        error_set("limit: must be 1 to 1000, got %d", q->limit);
        return DB_INVALID;
    }
    if (q->state >= DB_JOB_NUM_STATES || q->state < -1 || q->offset < 0 || q->before_id < 0) {
        error_set("jobs: bad query (state %d, offset %lld)", q->state, (long long)q->offset);
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_OK;
    DbJob *list = NULL;
    int count = 0;
    sqlite3_stmt *st = db_stmt(c, JOB_COLS "WHERE (?1 IS NULL OR state = ?1) "
                                          "AND (?2 = 0 OR owner = ?2) AND (?3 = 0 OR id < ?3) "
                                          "ORDER BY id DESC LIMIT ?4 OFFSET ?5");
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    db_bind_text(st, 1, q->state >= 0 ? state_names[q->state] : NULL);
    sqlite3_bind_int64(st, 2, q->owner);
    sqlite3_bind_int64(st, 3, q->before_id);
    sqlite3_bind_int(st, 4, limit + 1); /* one more: is there a next page? */
    sqlite3_bind_int64(st, 5, q->offset);
    sqlite3_bind_int(st, 9, q->with_spec);
    list = calloc((size_t)limit, sizeof *list);
    if (!list) {
        rc = error_set("jobs: out of memory");
        goto done;
    }
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == limit) {
            if (next_cursor) *next_cursor = list[count - 1].id;
            break;
        }
        if (read_job(st, &list[count]) != 0) {
            rc = DB_ERROR;
            goto done;
        }
        count++;
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE) rc = db_fail(c, "jobs");
done:
    db_release(db, c);
    if (rc != DB_OK) {
        db_job_list_free(list, count);
        return rc;
    }
    *out = list;
    *n = count;
    return DB_OK;
}

void db_job_list_free(DbJob *list, int n) {
    for (int i = 0; list && i < n; i++) db_job_clear(&list[i]);
    free(list);
}

/* Runs one guarded UPDATE (bound by `bind`) and turns "no row changed"
 * into DB_NOT_FOUND or DB_CONFLICT with a message naming the state. The
 * row read back into *out is read in the UPDATE's transaction: a failed
 * read undoes the change (a job claimed `running` with no worker told
 * would stay so). cancel_line (NULL for none) goes into the job's log in
 * that transaction when the row is left cancelled: a log stream ends once
 * it sees the job ended with no line after its last, so the line telling
 * why must be there by then. */
static int transition(Db *db, int64_t id, const char *sql, const char *text, int ival,
                      const char *want, const char *cancel_line, DbJob *out) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    DbJob row, *got = out ? out : &row;
    bool read_back = out || cancel_line;
    int rc = read_back ? db_begin(c) : DB_OK;
    sqlite3_stmt *st = rc == DB_OK ? db_stmt(c, sql) : NULL;
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, db_now_ms());
    db_bind_text(st, 3, text);
    sqlite3_bind_int(st, 4, ival);
    rc = db_step_done(c, st, "job");
    if (rc != DB_OK) goto done;
    if (sqlite3_changes(c->h) == 0) {
        DbJob j;
        rc = get_with(c, id, &j);
        if (rc == DB_OK) {
            error_set("job %lld is %s, not %s", (long long)id, db_job_state_name(j.state), want);
            db_job_clear(&j);
            rc = DB_CONFLICT;
        }
        goto done;
    }
    if (!read_back || (rc = get_with(c, id, got)) != DB_OK) goto done;
    if (cancel_line && got->state == DB_JOB_CANCELLED) rc = db_log_insert(c, id, cancel_line, NULL);
    if (rc == DB_OK) rc = db_commit(c);
    if (rc != DB_OK || !out) db_job_clear(got);
done:
    db_release(db, c); /* rolls back what was not committed */
    return rc;
}

int db_job_claim(Db *db, int64_t id, const char *device, DbJob *out) {
    return transition(db, id,
                      "UPDATE jobs SET state = 'running', attempt = attempt + 1, "
                      "started_at = ?2, finished_at = 0, device = ?3, error = NULL, "
                      "cancel_requested = 0 WHERE id = ?1 AND state = 'queued'",
                      device ? device : "", 0, "queued", NULL, out);
}

int db_job_finish(Db *db, int64_t id, DbJobState final, const char *error) {
    if (!db_job_state_final(final)) {
        error_set("job %lld: %s is not a final state", (long long)id, db_job_state_name(final));
        return DB_INVALID;
    }
    const char *sql = NULL;
    switch (final) {
    case DB_JOB_SUCCEEDED:
        sql = "UPDATE jobs SET state = 'succeeded', finished_at = ?2, error = ?3, eta_s = 0 "
              "WHERE id = ?1 AND state = 'running'";
        break;
    case DB_JOB_FAILED:
        sql = "UPDATE jobs SET state = 'failed', finished_at = ?2, error = ?3, eta_s = -1 "
              "WHERE id = ?1 AND state = 'running'";
        break;
    default:
        sql = "UPDATE jobs SET state = 'cancelled', finished_at = ?2, error = ?3, eta_s = -1 "
              "WHERE id = ?1 AND state = 'running'";
        break;
    }
    return transition(db, id, sql, error, 0, "running", NULL, NULL);
}

int db_job_cancel_queued(Db *db, int64_t id, const char *line) {
    return transition(db, id,
                      "UPDATE jobs SET state = 'cancelled', finished_at = ?2 "
                      "WHERE id = ?1 AND state = 'queued'",
                      NULL, 0, "queued", line, NULL);
}

/* Back to the queue, or, when a cancel was asked of the run (as the
 * daemon began to stop, or while it was preempted), cancelled: a job the
 * user cancelled must not run again. */
#define REQUEUE_OR_CANCEL                                                                    \
    "UPDATE jobs SET samples_per_s = 0, eta_s = -1, "                                        \
    "state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, "                \
    "finished_at = CASE WHEN cancel_requested THEN ?2 ELSE finished_at END, "                \
    "error = CASE WHEN cancel_requested THEN 'cancelled as its run was stopped' ELSE error END"

/* A running job's REQUEUE_OR_CANCEL (sql), the state it took into *state
 * (may be NULL), read in the same transaction, as cancel_line is stored. */
static int requeue_as(Db *db, int64_t id, const char *sql, const char *cancel_line,
                      DbJobState *state) {
    DbJob j;
    int rc = transition(db, id, sql, NULL, 0, "running", cancel_line, state ? &j : NULL);
    if (rc == DB_OK && state) {
        *state = j.state;
        db_job_clear(&j);
    }
    return rc;
}

int db_job_requeue(Db *db, int64_t id, const char *cancel_line, DbJobState *state) {
    return requeue_as(db, id, REQUEUE_OR_CANCEL " WHERE id = ?1 AND state = 'running'",
                      cancel_line, state);
}

int db_job_preempted(Db *db, int64_t id, const char *cancel_line, DbJobState *state) {
    return requeue_as(db, id,
                      REQUEUE_OR_CANCEL ", preemptions = preemptions + "
                      "(1 - cancel_requested) WHERE id = ?1 AND state = 'running'",
                      cancel_line, state);
}

int db_job_set_priority(Db *db, int64_t id, bool admin, int priority) {
    return transition(db, id,
                      admin ? "UPDATE jobs SET admin_priority = ?4 WHERE id = ?1 AND "
                              "state IN ('queued', 'running')"
                            : "UPDATE jobs SET priority = ?4 WHERE id = ?1 AND "
                              "state IN ('queued', 'running')",
                      NULL, priority, "queued or running", NULL, NULL);
}

int db_job_cancel_requested(Db *db, int64_t id) {
    return transition(db, id,
                      "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND state = 'running'",
                      NULL, 0, "running", NULL, NULL);
}

/* db_job_recover_running's statements, in order: ?1 the time. */
static const char *const recover_sql[] = {
    /* the end the ranks reported for the current attempt */
    "UPDATE jobs SET state = remote_end_state, finished_at = ?1, eta_s = "
    "  CASE remote_end_state WHEN 'succeeded' THEN 0 ELSE -1 END, error = "
    "  CASE remote_end_state WHEN 'succeeded' THEN NULL ELSE remote_end_error END "
    "WHERE state = 'running' AND remote_attempt = attempt AND (remote_end_state IN "
    "  ('succeeded', 'failed') OR (remote_end_state = 'cancelled' AND cancel_requested))",
    /* a cancel asked, the run not yet stopped */
    "UPDATE jobs SET state = 'cancelled', finished_at = ?1, eta_s = -1, error = 'cancelled; "
    "the daemon restarted before its run had stopped' "
    "WHERE state = 'running' AND cancel_requested",
    "UPDATE jobs SET state = 'queued', samples_per_s = 0, eta_s = -1 WHERE state = 'running'",
};

int db_job_recover_running(Db *db, int *requeued, int *ended) {
    int counts[3] = {0};
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = db_begin(c);
    for (int i = 0; rc == DB_OK && i < 3; i++) {
        sqlite3_stmt *st = db_stmt(c, recover_sql[i]);
        if (!st) {
            rc = DB_ERROR;
            break;
        }
        sqlite3_bind_int64(st, 1, db_now_ms());
        if ((rc = db_step_done(c, st, "jobs")) == DB_OK) counts[i] = sqlite3_changes(c->h);
    }
    if (rc == DB_OK) rc = db_commit(c);
    if (rc != DB_OK) db_rollback(c);
    db_release(db, c);
    if (requeued) *requeued = rc == DB_OK ? counts[2] : 0;
    if (ended) *ended = rc == DB_OK ? counts[0] + counts[1] : 0;
    return rc;
}

static int read_attempt(sqlite3_stmt *st, void *out) {
    DbJobAttempt *a = out;
    a->job = sqlite3_column_int64(st, 0);
    a->attempt = sqlite3_column_int(st, 1);
    return 0;
}

int db_job_running_attempts(Db *db, DbJobAttempt **out, int *n) {
    *out = NULL;
    *n = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "SELECT id, attempt FROM jobs WHERE state = 'running' ORDER BY id");
    if (st) rc = db_collect(c, st, sizeof **out, read_attempt, (void **)out, n, "jobs");
    db_release(db, c);
    if (rc != DB_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int db_job_set_progress(Db *db, int64_t id, const DbJobProgress *p) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "UPDATE jobs SET epoch = ?2, step = ?3, total_steps = ?4, "
                                  "samples_per_s = ?5, eta_s = ?6 WHERE id = ?1");
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int(st, 2, p->epoch);
        sqlite3_bind_int64(st, 3, p->step);
        sqlite3_bind_int64(st, 4, p->total_steps);
        sqlite3_bind_double(st, 5, p->samples_per_s);
        sqlite3_bind_double(st, 6, p->eta_s);
        rc = db_step_update(c, st, "job progress", "job %lld: not found", (long long)id);
    }
    db_release(db, c);
    return rc;
}

static int read_queued(sqlite3_stmt *st, void *out) {
    DbQueuedJob *q = out;
    q->id = sqlite3_column_int64(st, 0);
    q->owner = sqlite3_column_int64(st, 1);
    q->priority = sqlite3_column_int(st, 2);
    db_column_copy(st, 3, q->device_request, sizeof q->device_request);
    q->train_bytes = sqlite3_column_int64(st, 4);
    q->created_at = sqlite3_column_int64(st, 5);
    q->admin_priority = sqlite3_column_int(st, 6);
    db_column_copy(st, 7, q->name, sizeof q->name);
    q->ranks = sqlite3_column_int(st, 8);
    return 0;
}

int db_job_queue(Db *db, DbQueuedJob **out, int *n) {
    *out = NULL;
    *n = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "SELECT id, coalesce(owner, 0), priority, device_request, "
                                  "train_bytes, created_at, admin_priority, name, ranks FROM jobs "
                                  "WHERE state = 'queued' ORDER BY priority DESC, created_at, id");
    if (st) rc = db_collect(c, st, sizeof **out, read_queued, (void **)out, n, "queue");
    db_release(db, c);
    if (rc != DB_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int db_job_count_by_state(Db *db, int64_t counts[DB_JOB_NUM_STATES]) {
    memset(counts, 0, sizeof(int64_t) * DB_JOB_NUM_STATES);
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_OK;
    sqlite3_stmt *st = db_stmt(c, "SELECT state, count(*) FROM jobs GROUP BY state");
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 0);
        for (int i = 0; state && i < DB_JOB_NUM_STATES; i++)
            if (strcmp(state, state_names[i]) == 0) counts[i] = sqlite3_column_int64(st, 1);
    }
    if (s != SQLITE_DONE) rc = db_fail(c, "jobs");
done:
    db_release(db, c);
    return rc;
}

/* ---- attempts run outside the daemon ---- */

int db_job_remote_token_set(Db *db, int64_t job, int attempt, const char *token_sha256) {
    char want[64];
    snprintf(want, sizeof want, "running its attempt %d", attempt);
    return transition(db, job,
                      "UPDATE jobs SET remote_token = ?3, remote_attempt = ?4, "
                      "remote_log_seq = 0, remote_end_state = NULL, remote_end_error = NULL "
                      "WHERE id = ?1 AND state = 'running' AND attempt = ?4",
                      token_sha256, attempt, want, NULL, NULL);
}

static int read_remote(sqlite3_stmt *st, void *out) {
    DbJobRemote *r = out;
    memset(r, 0, sizeof *r);
    const char *state = (const char *)sqlite3_column_text(st, 0);
    if (db_job_state_parse(state, &r->state) != DB_OK) return -1;
    r->attempt = sqlite3_column_int(st, 1);
    db_column_copy(st, 2, r->token_sha256, sizeof r->token_sha256);
    r->token_attempt = sqlite3_column_int(st, 3);
    r->log_seq = sqlite3_column_int64(st, 4);
    return 0;
}

#define REMOTE_COLS                                                                           \
    "SELECT state, attempt, coalesce(remote_token, ''), remote_attempt, remote_log_seq FROM " \
    "jobs WHERE id = ?1"

int db_job_remote_get(Db *db, int64_t job, DbJobRemote *out) {
    int rc = db_get_row(db, REMOTE_COLS, NULL, job, read_remote, out, "job");
    if (rc == DB_NOT_FOUND) error_set("job %lld: not found", (long long)job);
    return rc;
}

/* Under the caller's transaction: the job's remote state, which must
 * belong to `attempt` (DB_CONFLICT otherwise). */
static int remote_of(DbConn *c, int64_t job, int attempt, DbJobRemote *r) {
    sqlite3_stmt *st = db_stmt(c, REMOTE_COLS);
    if (!st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, job);
    int rc = job_row(c, st, job, read_remote, r);
    if (rc == DB_OK && r->token_attempt != attempt) {
        error_set("job %lld: attempt %d is not its current remote attempt (%d)", (long long)job,
                  attempt, r->token_attempt);
        rc = DB_CONFLICT;
    }
    return rc;
}

static int set_log_seq(DbConn *c, int64_t job, int64_t next) {
    sqlite3_stmt *st = db_stmt(c, "UPDATE jobs SET remote_log_seq = ?2 WHERE id = ?1");
    if (!st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, next);
    return db_step_done(c, st, "job log seq");
}

int db_job_remote_logs(Db *db, int64_t job, int attempt, const int64_t *seqs,
                       const char *const *lines, int n, int *stored) {
    if (stored) *stored = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = db_begin(c), count = 0;
    DbJobRemote r;
    if (rc == DB_OK) rc = remote_of(c, job, attempt, &r);
    for (int i = 0; rc == DB_OK && i < n; i++)
        if (db_log_seq_accept(&r.log_seq, seqs[i])) {
            rc = db_log_insert(c, job, lines[i], NULL);
            count++;
        }
    if (rc == DB_OK && count) rc = set_log_seq(c, job, r.log_seq);
    if (rc == DB_OK) rc = db_commit(c);
    if (rc != DB_OK) db_rollback(c);
    db_release(db, c);
    if (rc == DB_OK && stored) *stored = count;
    return rc;
}

int db_job_remote_log_restart(Db *db, int64_t job, int attempt) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "UPDATE jobs SET remote_log_seq = 0 WHERE id = ?1 AND "
                                  "remote_attempt = ?2");
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int(st, 2, attempt);
        rc = db_step_update(c, st, "job log seq", "job %lld: attempt %d is not its remote one",
                            (long long)job, attempt);
    }
    db_release(db, c);
    return rc == DB_NOT_FOUND ? DB_CONFLICT : rc;
}

int db_job_remote_end_set(Db *db, int64_t job, int attempt, DbJobState state, const char *error) {
    if (!db_job_state_final(state)) {
        error_set("state: %s is not how an attempt ends (succeeded, failed, cancelled)",
                  db_job_state_name(state));
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "UPDATE jobs SET remote_end_state = ?3, remote_end_error = ?4 "
                                  "WHERE id = ?1 AND remote_attempt = ?2");
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int(st, 2, attempt);
        db_bind_text(st, 3, db_job_state_name(state));
        db_bind_text(st, 4, error);
        rc = db_step_update(c, st, "job end", "job %lld: attempt %d is not its remote one",
                            (long long)job, attempt);
    }
    db_release(db, c);
    return rc == DB_NOT_FOUND ? DB_CONFLICT : rc;
}

typedef struct {
    DbJobState state;
    char *error;
    bool reported;
} RemoteEnd;

static int read_end(sqlite3_stmt *st, void *out) {
    RemoteEnd *e = out;
    int oom = 0;
    const char *state = (const char *)sqlite3_column_text(st, 0);
    e->reported = state != NULL;
    if (!state) return 0;
    if (db_job_state_parse(state, &e->state) != DB_OK) return -1;
    e->error = db_column_dup(st, 1, &oom);
    return oom ? error_set("job end: out of memory") : 0;
}

int db_job_remote_end(Db *db, int64_t job, int attempt, DbJobState *state, char **error) {
    *error = NULL;
    RemoteEnd e = {0};
    int64_t keys[2] = {job, attempt};
    int rc = db_get_row_ints(db, "SELECT remote_end_state, remote_end_error FROM jobs "
                                 "WHERE id = ?1 AND remote_attempt = ?2",
                             keys, 2, read_end, &e, "job end");
    if (rc == DB_OK && !e.reported) rc = DB_NOT_FOUND;
    if (rc == DB_NOT_FOUND) {
        error_set("job %lld: attempt %d has reported no end", (long long)job, attempt);
        return rc;
    }
    if (rc != DB_OK) return rc;
    *state = e.state;
    *error = e.error;
    return DB_OK;
}
