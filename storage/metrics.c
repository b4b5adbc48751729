/* metrics.c - metric history: one row per (job, name, step), queries,
 * downsampling, and the batched writer that keeps SQLite off the training
 * thread.
 *
 * The table is WITHOUT ROWID with primary key (job_id, name, step), so one
 * series is one contiguous, step-ordered range of the b-tree: a history
 * query or a downsampling pass is a single sequential scan. INSERT OR
 * REPLACE on that key means a resumed attempt re-logging a step overwrites
 * the old value; the scheduler also deletes the steps past the checkpoint
 * it resumes from, so nothing is left from the lost attempt.
 *
 * Every write also recomputes the summaries of the blocks it touched
 * (storage/metric_blocks.c), in its transaction, for downsampling.
 *
 * The writer: training threads append rows to an in-memory queue under a
 * mutex (a memcpy, no I/O), and one thread swaps the queue out and commits
 * it in one IMMEDIATE transaction when 1000 rows are waiting or 100 ms
 * have passed. A step of training costs a lock and a copy; a commit of a
 * thousand rows costs a few ms on the writer thread. A commit that fails
 * (the database busy for longer than busy_timeout) is retried; rows are
 * kept until they are in.
 */
#include "storage/db_internal.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"

static const char *const put_sql =
    "INSERT OR REPLACE INTO metrics (job_id, name, step, epoch, value, wall_time) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

int db_metric_put(Db *db, int64_t job, const char *name, int64_t step, int epoch, double value) {
    if (!name || !*name || strlen(name) > DB_METRIC_NAME_MAX) {
        error_set("metric name: must be 1 to %d characters", DB_METRIC_NAME_MAX);
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = db_begin(c);
    sqlite3_stmt *st = rc == DB_OK ? db_stmt(c, put_sql) : NULL;
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        db_bind_text(st, 2, name);
        sqlite3_bind_int64(st, 3, step);
        sqlite3_bind_int(st, 4, epoch);
        db_bind_real(st, 5, value);
        db_bind_real(st, 6, clock_wall_s());
        rc = db_step_done(c, st, "metric");
        if (rc == DB_CONFLICT) {
            error_set("metric: job %lld: not found", (long long)job);
            rc = DB_NOT_FOUND;
        }
    } else if (rc == DB_OK)
        rc = DB_ERROR;
    if (rc == DB_OK) rc = db_metric_block_refresh(c, job, name, db_metric_block_of(step));
    if (rc == DB_OK) rc = db_commit(c);
    db_release(db, c); /* rolls back a transaction left open */
    return rc;
}

/* ---- queries ---- */

/* A `before` as the SQL bound: no bound (0 or negative) is past every step. */
static int64_t step_bound(int64_t before) { return before > 0 ? before : INT64_MAX; }

/* A row (name, step, epoch, value, wall_time). */
static int read_metric(sqlite3_stmt *st, void *out) {
    DbMetric *m = out;
    db_column_copy(st, 0, m->name, sizeof m->name);
    m->step = sqlite3_column_int64(st, 1);
    m->epoch = sqlite3_column_int(st, 2);
    m->value = db_column_real(st, 3);
    m->wall_time = db_column_real(st, 4);
    return 0;
}

int db_metric_query(Db *db, int64_t job, const DbMetricQuery *q, DbMetric **out, int *n) {
    *out = NULL;
    *n = 0;
    DbMetricQuery dq = {.after = -1};
    if (!q) q = &dq;
    int limit = q->limit == 0 ? 10000 : q->limit;
    if (limit < 1 || limit > 100000) {
        error_set("limit: must be 1 to 100000, got %d", q->limit);
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st;
    if (q->name) {
        st = db_stmt(c, "SELECT name, step, epoch, value, wall_time FROM metrics "
                        "WHERE job_id = ?1 AND name = ?2 AND step > ?3 AND step < ?5 "
                        "ORDER BY step LIMIT ?4");
        if (st) db_bind_text(st, 2, q->name);
    } else
        st = db_stmt(c, "SELECT name, step, epoch, value, wall_time FROM metrics "
                        "INDEXED BY metrics_step "
                        "WHERE job_id = ?1 AND step > ?3 AND step < ?5 ORDER BY step, name LIMIT ?4");
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int64(st, 3, q->after < 0 ? INT64_MIN : q->after);
        sqlite3_bind_int64(st, 5, step_bound(q->before));
        sqlite3_bind_int(st, 4, limit);
        rc = db_collect(c, st, sizeof **out, read_metric, (void **)out, n, "metrics");
    }
    db_release(db, c);
    if (rc != DB_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

/* The lowest (desc = 0) or highest step of a series in (after, before);
 * 0 and *found = false when there is none. */
static int series_end(DbConn *c, int64_t job, const char *name, int64_t after, int64_t before,
                      int desc, int64_t *step, bool *found) {
    sqlite3_stmt *st = db_stmt(
        c, desc ? "SELECT step FROM metrics WHERE job_id = ?1 AND name = ?2 AND step > ?3 "
                  "AND step < ?4 ORDER BY step DESC LIMIT 1"
                : "SELECT step FROM metrics WHERE job_id = ?1 AND name = ?2 AND step > ?3 "
                  "AND step < ?4 ORDER BY step LIMIT 1");
    if (!st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, job);
    db_bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, after);
    sqlite3_bind_int64(st, 4, before);
    int s = sqlite3_step(st);
    *found = s == SQLITE_ROW;
    *step = *found ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return s == SQLITE_ROW || s == SQLITE_DONE ? DB_OK : db_fail(c, "metrics");
}

int db_metric_downsample(Db *db, int64_t job, const char *name, int64_t after, int64_t before,
                         int max_points, DbMetricBucket **out, int *n) {
    *out = NULL;
    *n = 0;
    if (!name || !*name) {
        error_set("name: downsampling (max_points) needs a metric name");
        return DB_INVALID;
    }
    if (max_points < 1 || max_points > 100000) {
        error_set("max_points: must be 1 to 100000, got %d", max_points);
        return DB_INVALID;
    }
    if (after < 0) after = INT64_MIN;
    before = step_bound(before);
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc;
    int64_t lo, hi;
    bool found;
    DbMetricBucket *b = NULL;
    int count = 0;
    if ((rc = series_end(c, job, name, after, before, 0, &lo, &found)) != DB_OK || !found)
        goto done;
    if ((rc = series_end(c, job, name, after, before, 1, &hi, &found)) != DB_OK || !found)
        goto done;
    /* equal step widths: bucket k holds steps [lo + k*w, lo + (k+1)*w) */
    uint64_t span = (uint64_t)(hi - lo) + 1;
    uint64_t w = (span + (uint64_t)max_points - 1) / (uint64_t)max_points;
    uint64_t nb = (span + w - 1) / w;
    if (w >= 4 * DB_METRIC_BLOCK_STEPS) {
        rc = db_metric_blocks_downsample(c, job, name, lo, hi, max_points, &b, &count);
        goto done;
    }
    b = malloc((size_t)nb * sizeof *b);
    if (!b) {
        rc = error_set("metrics: out of memory");
        goto done;
    }
    sqlite3_stmt *st = db_stmt(c, "SELECT step, epoch, value, wall_time FROM metrics "
                                  "WHERE job_id = ?1 "
                                  "AND name = ?2 AND step > ?3 AND step < ?4 ORDER BY step");
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    sqlite3_bind_int64(st, 1, job);
    db_bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, after);
    sqlite3_bind_int64(st, 4, before);
    uint64_t cur = UINT64_MAX;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t step = sqlite3_column_int64(st, 0);
        double v = db_column_real(st, 2);
        uint64_t k = (uint64_t)(step - lo) / w;
        if (k >= nb) break; /* a row committed after hi was read */
        if (k != cur) {
            cur = k;
            DbMetricBucket *nbk = &b[count++];
            nbk->first_step = step;
            nbk->min = nbk->max = v;
            nbk->count = 0;
        }
        DbMetricBucket *bk = &b[count - 1];
        bk->last_step = step;
        bk->epoch = sqlite3_column_int(st, 1);
        bk->last = v;
        bk->wall_time = db_column_real(st, 3);
        bk->count++;
        /* fmin/fmax skip a NaN unless both are */
        bk->min = fmin(bk->min, v);
        bk->max = fmax(bk->max, v);
    }
    rc = s == SQLITE_DONE || s == SQLITE_ROW ? DB_OK : db_fail(c, "metrics");
done:
    db_release(db, c);
    if (rc != DB_OK || count == 0) {
        free(b);
        b = NULL;
        count = 0;
    }
    *out = b;
    *n = count;
    return rc;
}

int db_metric_latest(Db *db, int64_t job, DbMetric **out, int *n) {
    *out = NULL;
    *n = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_OK, cap = 0;
    char name[DB_METRIC_NAME_MAX + 1] = "";
    /* skip from one name to the next through the primary key, then take
     * each series' last row: O(names * log rows), whatever the history */
    for (;;) {
        sqlite3_stmt *st = db_stmt(c, "SELECT name FROM metrics WHERE job_id = ?1 AND name > ?2 "
                                      "ORDER BY name LIMIT 1");
        if (!st) {
            rc = DB_ERROR;
            break;
        }
        sqlite3_bind_int64(st, 1, job);
        db_bind_text(st, 2, name);
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) break;
        if (s != SQLITE_ROW) {
            rc = db_fail(c, "metrics");
            break;
        }
        db_column_copy(st, 0, name, sizeof name);
        sqlite3_reset(st);
        st = db_stmt(c, "SELECT name, step, epoch, value, wall_time FROM metrics "
                        "WHERE job_id = ?1 AND name = ?2 ORDER BY step DESC LIMIT 1");
        if (!st) {
            rc = DB_ERROR;
            break;
        }
        sqlite3_bind_int64(st, 1, job);
        db_bind_text(st, 2, name);
        if (sqlite3_step(st) != SQLITE_ROW) {
            rc = db_fail(c, "metrics");
            break;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            DbMetric *grown = realloc(*out, (size_t)cap * sizeof **out);
            if (!grown) {
                rc = error_set("metrics: out of memory");
                break;
            }
            *out = grown;
        }
        read_metric(st, &(*out)[(*n)++]);
        sqlite3_reset(st);
    }
    db_release(db, c);
    if (rc != DB_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

/* A row (name, step, epoch, value, wall_time, job_id). */
static int read_job_metric(sqlite3_stmt *st, void *out) {
    DbJobMetric *m = out;
    read_metric(st, &m->metric);
    m->job = sqlite3_column_int64(st, 5);
    return 0;
}

/* The ids as a JSON array, "[1,2,3]" (malloc'd), for json_each: one
 * statement whatever the count, where "IN (?,?,...)" is a new one each. */
static char *ids_json(const int64_t *ids, int n) {
    size_t cap = (size_t)n * 21 + 3, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[len++] = '[';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%lld", i ? "," : "", (long long)ids[i]);
    snprintf(s + len, cap - len, "]");
    return s;
}

int db_metric_latest_jobs(Db *db, const int64_t *ids, int n, DbJobMetric **out, int *count) {
    *out = NULL;
    *count = 0;
    if (n <= 0) return DB_OK;
    char *json = ids_json(ids, n);
    if (!json) return error_set("metrics: out of memory");
    DbConn *c = db_acquire(db);
    if (!c) {
        free(json);
        return DB_ERROR;
    }
    /* db_metric_latest's skip scan for every job in one statement: the
     * recursive part steps from one name to the next through the primary
     * key, and each series' last row is one more descent of it, so the
     * cost is O(series * log rows), not the rows of the jobs' histories */
    sqlite3_stmt *st = db_stmt(
        c, "WITH RECURSIVE series(job_id, name) AS ("
           " SELECT ids.value, (SELECT name FROM metrics WHERE job_id = ids.value"
           "  ORDER BY name LIMIT 1) FROM json_each(?1) AS ids"
           " UNION ALL"
           " SELECT s.job_id, (SELECT name FROM metrics WHERE job_id = s.job_id AND name > s.name"
           "  ORDER BY name LIMIT 1) FROM series AS s WHERE s.name IS NOT NULL)"
           "SELECT m.name, m.step, m.epoch, m.value, m.wall_time, m.job_id FROM series AS s"
           " JOIN metrics AS m ON m.job_id = s.job_id AND m.name = s.name AND m.step ="
           "  (SELECT MAX(step) FROM metrics WHERE job_id = s.job_id AND name = s.name)"
           " ORDER BY m.job_id, m.name");
    int rc = DB_ERROR;
    if (st) {
        sqlite3_bind_text(st, 1, json, -1, SQLITE_TRANSIENT);
        rc = db_collect(c, st, sizeof **out, read_job_metric, (void **)out, count, "metrics");
    }
    db_release(db, c);
    free(json);
    if (rc != DB_OK) {
        free(*out);
        *out = NULL;
        *count = 0;
    }
    return rc;
}

int db_metric_delete_after(Db *db, int64_t job, int64_t after_step, int64_t *deleted) {
    if (deleted) *deleted = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = db_begin(c);
    sqlite3_stmt *st =
        rc == DB_OK ? db_stmt(c, "DELETE FROM metrics WHERE job_id = ?1 AND step > ?2") : NULL;
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int64(st, 2, after_step);
        rc = db_step_done(c, st, "metrics");
        if (rc == DB_OK && deleted) *deleted = sqlite3_changes64(c->h);
    } else if (rc == DB_OK)
        rc = DB_ERROR;
    if (rc == DB_OK) rc = db_metric_blocks_delete_after(c, job, after_step);
    if (rc == DB_OK) rc = db_commit(c);
    db_release(db, c);
    return rc;
}

int db_metric_count(Db *db, int64_t job, int64_t *count) {
    *count = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "SELECT count(*) FROM metrics WHERE job_id = ?1");
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *count = sqlite3_column_int64(st, 0);
            rc = DB_OK;
        } else
            rc = db_fail(c, "metrics");
    }
    db_release(db, c);
    return rc;
}

/* ---- the batched writer ---- */

#define WRITER_BATCH 1000
#define WRITER_INTERVAL_MS 100
#define WRITER_MAX_PENDING (4 << 20)

typedef struct {
    int64_t job, step;
    int epoch;
    double value, wall_time;
    char name[DB_METRIC_NAME_MAX + 1];
} PendingMetric;

struct MetricWriter {
    Db *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;    /* the writer: rows, a flush, or stop */
    pthread_cond_t done;    /* flushers, blocked pushers and waiters: a commit */
    PendingMetric *rows;    /* pushed, not yet taken by the writer */
    size_t n, cap;
    uint64_t pushed;        /* rows ever pushed */
    uint64_t committed;     /* rows ever committed (or dropped as orphans) */
    uint64_t flush_target;  /* commit at once up to here */
    uint64_t generation;    /* commits */
    int failures;           /* consecutive failed commits */
    Error failure;          /* the last failed commit's error (a full disk: ENOSPC) */
    bool stop;
};

/* The blocks rows[0..n) touch (metric_blocks.c), into a growing *keys:
 * rows come in step order per series, several series interleaved, so a
 * key already among the last few is not added again (the refresh
 * dedupes the rest). 0, or -1 out of memory. */
static int touched_blocks(const PendingMetric *rows, size_t n, DbMetricBlockKey **keys,
                          size_t *nkeys) {
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t block = db_metric_block_of(rows[i].step);
        bool seen = false;
        for (size_t k = *nkeys; k > 0 && k + 16 > *nkeys && !seen; k--) {
            const DbMetricBlockKey *p = &(*keys)[k - 1];
            seen = p->job == rows[i].job && p->block == block && !strcmp(p->name, rows[i].name);
        }
        if (seen) continue;
        if (*nkeys == cap) {
            cap = cap ? 2 * cap : 64;
            DbMetricBlockKey *grown = realloc(*keys, cap * sizeof **keys);
            if (!grown) return -1;
            *keys = grown;
        }
        DbMetricBlockKey *key = &(*keys)[(*nkeys)++];
        key->job = rows[i].job;
        key->block = block;
        memcpy(key->name, rows[i].name, sizeof key->name);
    }
    return 0;
}

/* Commits rows[0..n) in one transaction, with the summaries of the blocks
 * they touch. A row whose job is gone (foreign key) is skipped with a
 * warning rather than failing the batch forever. */
static int commit_batch(MetricWriter *w, PendingMetric *rows, size_t n) {
    DbMetricBlockKey *keys = NULL;
    size_t nkeys = 0;
    if (touched_blocks(rows, n, &keys, &nkeys) != 0) {
        free(keys);
        return error_set("metric writer: out of memory");
    }
    DbConn *c = db_acquire(w->db);
    if (!c) {
        free(keys);
        return DB_ERROR;
    }
    int rc = db_begin(c);
    if (rc != DB_OK) goto done;
    sqlite3_stmt *st = db_stmt(c, put_sql);
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    size_t orphans = 0;
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, rows[i].job);
        sqlite3_bind_text(st, 2, rows[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, rows[i].step);
        sqlite3_bind_int(st, 4, rows[i].epoch);
        db_bind_real(st, 5, rows[i].value);
        db_bind_real(st, 6, rows[i].wall_time);
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) continue;
        if ((s & 0xff) == SQLITE_CONSTRAINT) {
            orphans++;
            continue;
        }
        rc = db_fail(c, "insert");
        goto done;
    }
    sqlite3_reset(st);
    rc = db_metric_blocks_refresh(c, keys, nkeys);
    if (rc == DB_OK) rc = db_commit(c);
    if (rc == DB_OK && orphans)
        fprintf(stderr, "traind: metric writer: skipped %zu rows of jobs that do not exist\n",
                orphans);
done:
    db_release(w->db, c); /* rolls back a transaction left open */
    free(keys);
    return rc;
}

/* Rows are waiting: gives them WRITER_INTERVAL_MS to accumulate, unless
 * there are enough already or someone waits for them; after a failure,
 * 200 ms before trying again. With w->mu held. */
static void let_rows_gather(MetricWriter *w) {
    bool wait = w->failures || (w->n < WRITER_BATCH && w->flush_target <= w->committed);
    if (!wait || w->stop) return;
    struct timespec ts;
    clock_deadline_in(&ts, w->failures ? 200 : WRITER_INTERVAL_MS);
    uint64_t target = w->flush_target;
    while ((w->failures || w->n < WRITER_BATCH) && w->flush_target == target && !w->stop)
        if (pthread_cond_timedwait(&w->wake, &w->mu, &ts) == ETIMEDOUT) break;
}

/* The writer's spare buffer, swapped with the queue's for each batch. */
typedef struct {
    PendingMetric *rows;
    size_t cap;
} RowBuffer;

/* A failed batch (rows[0..n), a buffer of cap) back in front of what came
 * meanwhile; said once per run of failures, not every 200 ms while a disk
 * stays full. With w->mu held; *spare: the buffer left over. */
static void requeue_failed(MetricWriter *w, PendingMetric *rows, size_t n, size_t cap,
                           RowBuffer *spare) {
    if (!w->failures)
        fprintf(stderr, "traind: metric writer: %s (retrying every 200 ms)\n", error_get());
    w->failure = *error_last();
    w->failures++;
    size_t need = n + w->n;
    if (need > cap) {
        PendingMetric *grown = realloc(rows, need * sizeof *rows);
        if (grown) {
            rows = grown;
            cap = need;
        }
    }
    if (need <= cap) {
        memcpy(rows + n, w->rows, w->n * sizeof *rows);
        *spare = (RowBuffer){w->rows, w->cap};
        w->rows = rows;
        w->cap = cap;
        w->n = need;
    } else {
        /* out of memory merging: drop the failed batch rather than reorder
         * (a later row of a step must win) */
        fprintf(stderr, "traind: metric writer: out of memory, %zu rows lost\n", n);
        w->committed += n;
        *spare = (RowBuffer){rows, cap};
    }
    if (w->stop && w->failures >= 3) {
        fprintf(stderr, "traind: metric writer: giving up on %zu rows at stop\n", w->n);
        w->committed += w->n;
        w->n = 0;
    }
}

static void *writer_main(void *arg) {
    MetricWriter *w = arg;
    RowBuffer spare = {NULL, 0};
    pthread_mutex_lock(&w->mu);
    for (;;) {
        if (w->n == 0) {
            if (w->stop) break;
            pthread_cond_wait(&w->wake, &w->mu);
            continue;
        }
        let_rows_gather(w);
        /* swap the queue out: pushers go on filling the other buffer */
        PendingMetric *rows = w->rows;
        size_t n = w->n, cap = w->cap;
        w->rows = spare.rows;
        w->cap = spare.cap;
        w->n = 0;
        pthread_mutex_unlock(&w->mu);
        int rc = commit_batch(w, rows, n);
        pthread_mutex_lock(&w->mu);
        if (rc == DB_OK) {
            if (w->failures)
                fprintf(stderr, "traind: metric writer: committed again after %d failed tries\n",
                        w->failures);
            w->committed += n;
            w->generation++;
            w->failures = 0;
            spare = (RowBuffer){rows, cap};
        } else {
            requeue_failed(w, rows, n, cap, &spare);
        }
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    free(spare.rows);
    return NULL;
}

MetricWriter *metric_writer_start(Db *db) {
    MetricWriter *w = calloc(1, sizeof *w);
    if (!w) {
        error_set("metric writer: out of memory");
        return NULL;
    }
    w->db = db;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    int e = pthread_create(&w->thread, NULL, writer_main, w);
    if (e != 0) {
        error_set("metric writer: cannot start a thread: %s", strerror(e));
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->done);
        free(w);
        return NULL;
    }
    return w;
}

void metric_writer_push(MetricWriter *w, int64_t job, const char *name, int64_t step, int epoch,
                        double value) {
    pthread_mutex_lock(&w->mu);
    while (w->n >= WRITER_MAX_PENDING && !w->stop) pthread_cond_wait(&w->done, &w->mu);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 4096;
        PendingMetric *grown = realloc(w->rows, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&w->mu);
            fprintf(stderr, "traind: metric writer: out of memory, %s@%lld lost\n", name,
                    (long long)step);
            return;
        }
        w->rows = grown;
        w->cap = cap;
    }
    PendingMetric *r = &w->rows[w->n++];
    r->wall_time = clock_wall_s();
    r->job = job;
    r->step = step;
    r->epoch = epoch;
    r->value = value;
    snprintf(r->name, sizeof r->name, "%s", name ? name : "");
    w->pushed++;
    if (w->n == 1 || w->n == WRITER_BATCH) pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
}

int metric_writer_flush(MetricWriter *w) {
    pthread_mutex_lock(&w->mu);
    uint64_t target = w->pushed;
    if (w->flush_target < target) w->flush_target = target;
    pthread_cond_signal(&w->wake);
    int rc = 0;
    /* failures that came before the call do not count alone: the disk may
     * have room again, and the next try says so */
    int seen = w->failures;
    while (w->committed < target) {
        if (w->failures >= 3 && w->failures > seen) {
            rc = error_set("metric writer: %s (%llu metric rows not stored yet: kept, and "
                           "retried until the database takes them)", w->failure.message,
                           (unsigned long long)(w->pushed - w->committed));
            error_set_errno(w->failure.sys_errno);
            break;
        }
        pthread_cond_wait(&w->done, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

uint64_t metric_writer_generation(MetricWriter *w) {
    pthread_mutex_lock(&w->mu);
    uint64_t g = w->generation;
    pthread_mutex_unlock(&w->mu);
    return g;
}

uint64_t metric_writer_wait(MetricWriter *w, uint64_t seen, int timeout_ms) {
    struct timespec ts;
    clock_deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&w->mu);
    while (w->generation == seen && !w->stop)
        if (pthread_cond_timedwait(&w->done, &w->mu, &ts) == ETIMEDOUT) break;
    uint64_t g = w->generation;
    pthread_mutex_unlock(&w->mu);
    return g;
}

void metric_writer_stop(MetricWriter *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->wake);
    pthread_cond_broadcast(&w->done);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    free(w->rows);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    free(w);
}
