/* checkpoints.c - checkpoint rows and their garbage collection.
 *
 * The trainer writes a checkpoint directory atomically
 * (train_save_checkpoint: temporary name, fsync, rename); this file records
 * it afterwards with the size and sha256 of its model.safetensors, the
 * file users download. A crash between the rename and the row leaves a
 * directory without a row: the resumed attempt re-saves the same directory
 * and records it then.
 *
 * keep_last: older checkpoints lose their files first and their row second,
 * so a row may briefly point at nothing, never a file at no row. Running
 * the collection again finishes whatever a crash interrupted.
 */
#include "storage/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "storage/sha256.h"

int db_checkpoint_rel_dir(int64_t job, int epoch, int64_t step, bool partial, char *buf,
                          size_t size) {
    int n = partial ? snprintf(buf, size, "jobs/%lld/checkpoints/step-%lld", (long long)job,
                               (long long)step)
                    : snprintf(buf, size, "jobs/%lld/checkpoints/epoch-%d", (long long)job, epoch);
    if (n < 0 || (size_t)n >= size) return error_set("checkpoint: path too long");
    return 0;
}

int db_checkpoint_file_path(const Db *db, const DbCheckpoint *c, const char *file, char *buf,
                            size_t size) {
    int n = file ? snprintf(buf, size, "%s/%s/%s", db_data_dir(db), c->path, file)
                 : snprintf(buf, size, "%s/%s", db_data_dir(db), c->path);
    if (n < 0 || (size_t)n >= size) return error_set("checkpoint %lld: path too long",
                                                      (long long)c->id);
    return 0;
}

#define CKPT_COLS                                                                          \
    "SELECT id, job_id, epoch, step, partial, path, bytes, sha256, created_at "           \
    "FROM checkpoints "

static void read_ckpt(sqlite3_stmt *st, DbCheckpoint *c) {
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    c->job_id = sqlite3_column_int64(st, 1);
    c->epoch = sqlite3_column_int(st, 2);
    c->step = sqlite3_column_int64(st, 3);
    c->partial = sqlite3_column_int(st, 4) != 0;
    db_column_copy(st, 5, c->path, sizeof c->path);
    c->bytes = sqlite3_column_int64(st, 6);
    db_column_copy(st, 7, c->sha256, sizeof c->sha256);
    c->created_at = sqlite3_column_int64(st, 8);
}

static int read_ckpt_row(sqlite3_stmt *st, void *out) {
    read_ckpt(st, out);
    return 0;
}

int db_checkpoint_get(Db *db, int64_t id, DbCheckpoint *out) {
    int rc = db_get_row(db, CKPT_COLS "WHERE id = ?1", NULL, id, read_ckpt_row, out, "checkpoint");
    if (rc == DB_NOT_FOUND) error_set("checkpoint %lld: not found", (long long)id);
    return rc;
}

int db_checkpoint_get_epoch(Db *db, int64_t job, int epoch, DbCheckpoint *out) {
    const int64_t keys[2] = {job, epoch};
    int rc = db_get_row_ints(db, CKPT_COLS "WHERE job_id = ?1 AND epoch = ?2 AND partial = 0",
                             keys, 2, read_ckpt_row, out, "checkpoint");
    if (rc == DB_NOT_FOUND)
        error_set("job %lld: no checkpoint of epoch %d", (long long)job, epoch);
    return rc;
}

int db_checkpoint_latest(Db *db, int64_t job, DbCheckpoint *out) {
    int rc = db_get_row(db, CKPT_COLS "WHERE job_id = ?1 ORDER BY step DESC LIMIT 1", NULL, job,
                        read_ckpt_row, out, "checkpoint");
    if (rc == DB_NOT_FOUND) error_set("job %lld: no checkpoint", (long long)job);
    return rc;
}

int db_checkpoint_insert(Db *db, int64_t job, int epoch, int64_t step, bool partial,
                         const char *rel_dir, DbCheckpoint *out) {
    if (!rel_dir || strlen(rel_dir) >= sizeof((DbCheckpoint *)0)->path || strstr(rel_dir, "..")) {
        error_set("checkpoint: bad directory '%s'", rel_dir ? rel_dir : "");
        return DB_INVALID;
    }
    char file[4400], sha[SHA256_HEX_LEN + 1];
    int64_t bytes;
    if (snprintf(file, sizeof file, "%s/%s/model.safetensors", db_data_dir(db), rel_dir) >=
        (int)sizeof file)
        return error_set("checkpoint: path too long");
    if (sha256_file_hex(file, sha, &bytes) != 0) return error_prefix("checkpoint");
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    /* a partial checkpoint taken at this very step (a stop right before an
     * epoch's end) is replaced by this one: its directory goes first */
    sqlite3_stmt *old = db_stmt(c, "SELECT path FROM checkpoints WHERE job_id = ?1 AND step = ?2");
    if (!old) goto done;
    sqlite3_bind_int64(old, 1, job);
    sqlite3_bind_int64(old, 2, step);
    if (sqlite3_step(old) == SQLITE_ROW) {
        char prev[256], abs[4400];
        db_column_copy(old, 0, prev, sizeof prev);
        if (strcmp(prev, rel_dir) != 0 && !strstr(prev, "..") &&
            snprintf(abs, sizeof abs, "%s/%s", db_data_dir(db), prev) < (int)sizeof abs &&
            db_remove_tree(abs) != 0)
            goto done;
    }
    sqlite3_reset(old);
    /* an upsert keeps the id of a row re-saved by a resumed attempt */
    sqlite3_stmt *st = db_stmt(
        c, "INSERT INTO checkpoints (job_id, epoch, step, partial, path, bytes, sha256, "
           "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
           "ON CONFLICT (job_id, step) DO UPDATE SET epoch = excluded.epoch, "
           "partial = excluded.partial, path = excluded.path, bytes = excluded.bytes, "
           "sha256 = excluded.sha256, created_at = excluded.created_at RETURNING id");
    if (!st) goto done;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int(st, 2, epoch);
    sqlite3_bind_int64(st, 3, step);
    sqlite3_bind_int(st, 4, partial);
    db_bind_text(st, 5, rel_dir);
    sqlite3_bind_int64(st, 6, bytes);
    db_bind_text(st, 7, sha);
    sqlite3_bind_int64(st, 8, db_now_ms());
    int s = sqlite3_step(st);
    if (s != SQLITE_ROW) {
        rc = (s & 0xff) == SQLITE_CONSTRAINT ? DB_NOT_FOUND : DB_ERROR;
        error_set("checkpoint: job %lld: %s", (long long)job, sqlite3_errmsg(c->h));
        goto done;
    }
    int64_t id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    rc = DB_OK;
    if (out) {
        memset(out, 0, sizeof *out);
        out->id = id;
        out->job_id = job;
        out->epoch = epoch;
        out->step = step;
        out->partial = partial;
        snprintf(out->path, sizeof out->path, "%s", rel_dir);
        out->bytes = bytes;
        memcpy(out->sha256, sha, sizeof sha);
        out->created_at = db_now_ms();
    }
done:
    db_release(db, c);
    return rc;
}

int db_checkpoint_discard(Db *db, int64_t job, const char *rel_dir) {
    char abs[4400];
    if (!rel_dir || strstr(rel_dir, "..") ||
        snprintf(abs, sizeof abs, "%s/%s", db_data_dir(db), rel_dir) >= (int)sizeof abs) {
        error_set("checkpoint: bad directory '%.200s'", rel_dir ? rel_dir : "");
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    bool recorded = false;
    sqlite3_stmt *st =
        db_stmt(c, "SELECT count(*) FROM checkpoints WHERE job_id = ?1 AND path = ?2");
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        db_bind_text(st, 2, rel_dir);
        if (sqlite3_step(st) == SQLITE_ROW) {
            recorded = sqlite3_column_int64(st, 0) > 0;
            rc = DB_OK;
        } else {
            db_fail(c, "checkpoint");
        }
        sqlite3_reset(st);
    }
    db_release(db, c);
    /* a row names it (a resumed attempt re-saved a recorded one): kept */
    if (rc == DB_OK && !recorded && db_remove_tree(abs) != 0) rc = DB_ERROR;
    return rc;
}

int db_checkpoint_list(Db *db, int64_t job, DbCheckpoint **out, int *n) {
    *out = NULL;
    *n = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_OK;
    sqlite3_stmt *st = db_stmt(c, CKPT_COLS "WHERE job_id = ?1 ORDER BY step");
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    sqlite3_bind_int64(st, 1, job);
    rc = db_collect(c, st, sizeof **out, read_ckpt_row, (void **)out, n, "checkpoints");
done:
    db_release(db, c);
    if (rc != DB_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int db_checkpoint_gc(Db *db, int64_t job, int keep_last, int *removed) {
    if (removed) *removed = 0;
    if (keep_last < 1) {
        error_set("checkpoint.keep_last: must be >= 1, got %d", keep_last);
        return DB_INVALID;
    }
    DbCheckpoint *list;
    int n;
    int rc = db_checkpoint_list(db, job, &list, &n);
    if (rc != DB_OK) return rc;
    int complete_newer = 0; /* complete checkpoints newer than list[i] */
    for (int i = n - 1; i >= 0 && rc == DB_OK; i--) {
        bool newest = i == n - 1;
        bool drop = list[i].partial ? !newest : complete_newer >= keep_last;
        if (!list[i].partial) complete_newer++;
        if (!drop) continue;
        char dir[4400];
        if (db_checkpoint_file_path(db, &list[i], NULL, dir, sizeof dir) != 0 ||
            db_remove_tree(dir) != 0) {
            rc = DB_ERROR;
            break;
        }
        DbConn *c = db_acquire(db);
        if (!c) {
            rc = DB_ERROR;
            break;
        }
        sqlite3_stmt *st = db_stmt(c, "DELETE FROM checkpoints WHERE id = ?1");
        rc = st ? (sqlite3_bind_int64(st, 1, list[i].id), db_step_done(c, st, "checkpoint"))
                : DB_ERROR;
        db_release(db, c);
        if (rc == DB_OK && removed) (*removed)++;
    }
    free(list);
    return rc;
}
