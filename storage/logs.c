/* logs.c - a job's log lines ("epoch 0: train_loss 0.4312 ...", "resumed
 * from checkpoint step 120"), numbered 1, 2, ... per job across attempts so
 * a follower asks for "after seq N" (SSE's Last-Event-ID).
 *
 * The number is taken inside the INSERT (max + 1 of the job's lines), which
 * runs under SQLite's write lock, so concurrent appends never share one.
 */
#include "storage/db_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define LOG_LINE_MAX 4096

int db_log_insert(DbConn *c, int64_t job, const char *line, int64_t *seq) {
    if (!line) line = "";
    size_t len = strnlen(line, LOG_LINE_MAX);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    sqlite3_stmt *st = db_stmt(c, "INSERT INTO logs (job_id, seq, ts, line) "
                                  "SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3 FROM logs "
                                  "WHERE job_id = ?1 RETURNING seq");
    if (!st) return DB_ERROR;
    int rc;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, db_now_ms());
    sqlite3_bind_text(st, 3, line, (int)len, SQLITE_TRANSIENT);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        if (seq) *seq = sqlite3_column_int64(st, 0);
        rc = DB_OK;
    } else if ((s & 0xff) == SQLITE_CONSTRAINT) {
        error_set("log: job %lld: not found", (long long)job);
        rc = DB_NOT_FOUND;
    } else
        rc = db_fail(c, "log");
    sqlite3_reset(st);
    return rc;
}

int db_log_append(Db *db, int64_t job, const char *line, int64_t *seq) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = db_log_insert(c, job, line, seq);
    db_release(db, c);
    return rc;
}

bool db_log_seq_accept(int64_t *next, int64_t seq) {
    if (seq < *next) return false;
    *next = seq + 1;
    return true;
}

static int read_line(sqlite3_stmt *st, void *out) {
    DbLogLine *l = out;
    l->seq = sqlite3_column_int64(st, 0);
    l->ts = sqlite3_column_int64(st, 1);
    l->line = db_column_dup(st, 2, NULL);
    return l->line ? 0 : error_set("logs: out of memory");
}

int db_log_list(Db *db, int64_t job, int64_t after_seq, int limit, DbLogLine **out, int *n) {
    *out = NULL;
    *n = 0;
    if (limit == 0) limit = 1000;
    if (limit < 1 || limit > 100000) {
        error_set("limit: must be 1 to 100000, got %d", limit);
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_OK;
    sqlite3_stmt *st = db_stmt(c, "SELECT seq, ts, line FROM logs WHERE job_id = ?1 AND seq > ?2 "
                                  "ORDER BY seq LIMIT ?3");
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, after_seq);
    sqlite3_bind_int(st, 3, limit);
    rc = db_collect(c, st, sizeof **out, read_line, (void **)out, n, "logs");
done:
    db_release(db, c);
    if (rc != DB_OK) {
        db_log_list_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int db_log_tail(Db *db, int64_t job, int n, DbLogLine **out, int *count) {
    *out = NULL;
    *count = 0;
    if (n < 1 || n > 100000) {
        error_set("tail: must be 1 to 100000, got %d", n);
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    /* the newest n backwards through the (job_id, seq) key, turned around */
    sqlite3_stmt *st = db_stmt(c, "SELECT seq, ts, line FROM (SELECT seq, ts, line FROM logs "
                                  "WHERE job_id = ?1 ORDER BY seq DESC LIMIT ?2) ORDER BY seq");
    int rc = DB_ERROR;
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_int(st, 2, n);
        rc = db_collect(c, st, sizeof **out, read_line, (void **)out, count, "logs");
    }
    db_release(db, c);
    if (rc != DB_OK) {
        db_log_list_free(*out, *count);
        *out = NULL;
        *count = 0;
    }
    return rc;
}

void db_log_list_free(DbLogLine *lines, int n) {
    for (int i = 0; lines && i < n; i++) free(lines[i].line);
    free(lines);
}
