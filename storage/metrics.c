/* metrics.c - metric history: one row per (job, name, step), its writes,
 * queries and downsampling. The batched writer that keeps SQLite off the training
 * thread is metric_writer.c.
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
 */
#include "storage/db_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/error.h"

const char *const db_metric_put_sql =
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
    sqlite3_stmt *st = rc == DB_OK ? db_stmt(c, db_metric_put_sql) : NULL;
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
    } else if (q->past_name) {
        /* a row value: metrics_step's entries end in the key's name, so the
         * read seeks to (after + 1, past_name) instead of reading the
         * step's names before it again on every page */
        st = db_stmt(c, "SELECT name, step, epoch, value, wall_time FROM metrics "
                        "INDEXED BY metrics_step WHERE job_id = ?1 AND (step, name) > (?3 + 1, ?2) "
                        "AND step < ?5 ORDER BY step, name LIMIT ?4");
        if (st) db_bind_text(st, 2, q->past_name);
    } else {
        st = db_stmt(c, "SELECT name, step, epoch, value, wall_time FROM metrics "
                        "INDEXED BY metrics_step "
                        "WHERE job_id = ?1 AND step > ?3 AND step < ?5 ORDER BY step, name LIMIT ?4");
    }
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
        /* a row committed after lo was read (a resumed attempt rewrites
         * the steps past its checkpoint): before the buckets, not in one */
        if (step < lo) continue;
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
        int last = sqlite3_step(st);
        if (last == SQLITE_DONE) continue; /* its rows deleted since (a resume): none to show */
        if (last != SQLITE_ROW) {
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
