/* checkpoints.c - checkpoint rows and their garbage collection.
 *
 * The trainer writes a checkpoint directory atomically
 * (train_save_checkpoint: temporary name, fsync, rename); this file records
 * it afterwards with the size and sha256 of its model.safetensors, the
 * file users download. A crash between the rename and the row leaves a
 * directory without a row, as does a crashed save its temporary one: the
 * next attempt removes what no row names first (collect_strays).
 *
 * keep_last: older checkpoints lose their files first and their row second,
 * so a row may briefly point at nothing, never a file at no row. Running
 * the collection again finishes whatever a crash interrupted.
 */
#include "storage/db_internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    "SELECT id, job_id, epoch, step, partial, path, bytes, sha256, created_at, disk_bytes " \
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
    c->disk_bytes = sqlite3_column_int64(st, 9);
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

/* The directory of the row already at (job, step), when it is not rel_dir,
 * in prev ("" for none): a partial checkpoint taken at this very step (a
 * stop right before an epoch's end), which the new one replaces. */
static int replaced_dir(DbConn *c, int64_t job, int64_t step, const char *rel_dir, char *prev,
                        size_t size) {
    prev[0] = '\0';
    sqlite3_stmt *st = db_stmt(c, "SELECT path FROM checkpoints WHERE job_id = ?1 AND step = ?2");
    if (!st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, step);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) db_column_copy(st, 0, prev, size);
    sqlite3_reset(st);
    if (s != SQLITE_ROW && s != SQLITE_DONE) return db_fail(c, "checkpoint");
    if (!strcmp(prev, rel_dir)) prev[0] = '\0';
    return DB_OK;
}

/* Another step's row naming the directory now saved again (an epoch's
 * checkpoint uploaded twice, at two steps): its files are gone, and a gc
 * of it would remove the new ones. */
static int forget_same_dir(DbConn *c, int64_t job, int64_t step, const char *rel_dir) {
    sqlite3_stmt *st = db_stmt(
        c, "DELETE FROM checkpoints WHERE job_id = ?1 AND path = ?2 AND step != ?3");
    if (!st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, job);
    db_bind_text(st, 2, rel_dir);
    sqlite3_bind_int64(st, 3, step);
    return db_step_done(c, st, "checkpoint");
}

/* The row (job, step) made or replaced; an upsert keeps the id of a row
 * re-saved by a resumed attempt. */
static int upsert(DbConn *c, const DbCheckpoint *k, int64_t *id) {
    sqlite3_stmt *st = db_stmt(
        c, "INSERT INTO checkpoints (job_id, epoch, step, partial, path, bytes, sha256, "
           "created_at, disk_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
           "ON CONFLICT (job_id, step) DO UPDATE SET epoch = excluded.epoch, "
           "partial = excluded.partial, path = excluded.path, bytes = excluded.bytes, "
           "sha256 = excluded.sha256, created_at = excluded.created_at, "
           "disk_bytes = excluded.disk_bytes RETURNING id");
    if (!st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, k->job_id);
    sqlite3_bind_int(st, 2, k->epoch);
    sqlite3_bind_int64(st, 3, k->step);
    sqlite3_bind_int(st, 4, k->partial);
    db_bind_text(st, 5, k->path);
    sqlite3_bind_int64(st, 6, k->bytes);
    db_bind_text(st, 7, k->sha256);
    sqlite3_bind_int64(st, 8, k->created_at);
    sqlite3_bind_int64(st, 9, k->disk_bytes);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (s == SQLITE_ROW) return DB_OK;
    error_set("checkpoint: job %lld: %s", (long long)k->job_id, sqlite3_errmsg(c->h));
    return (s & 0xff) == SQLITE_CONSTRAINT ? DB_NOT_FOUND : DB_ERROR;
}

/* The bytes of the files in directory `dir` (a checkpoint's: flat). */
static int dir_bytes(const char *dir, int64_t *out) {
    *out = 0;
    DIR *d = opendir(dir);
    if (!d) return error_sys(errno, "checkpoint: %s", dir);
    struct dirent *e;
    struct stat st;
    while ((e = readdir(d)))
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            *out += st.st_size;
    closedir(d);
    return 0;
}

int db_checkpoint_describe(const Db *db, const char *rel_dir, DbCheckpoint *k) {
    memset(k, 0, sizeof *k);
    if (!rel_dir || strlen(rel_dir) >= sizeof k->path || strstr(rel_dir, "..")) {
        error_set("checkpoint: bad directory '%s'", rel_dir ? rel_dir : "");
        return DB_INVALID;
    }
    snprintf(k->path, sizeof k->path, "%s", rel_dir);
    char file[4400];
    if (snprintf(file, sizeof file, "%s/%s/model.safetensors", db_data_dir(db), rel_dir) >=
        (int)sizeof file)
        return error_set("checkpoint: path too long");
    if (sha256_file_hex(file, k->sha256, &k->bytes) != 0) return error_prefix("checkpoint");
    *strrchr(file, '/') = '\0';
    return dir_bytes(file, &k->disk_bytes) == 0 ? DB_OK : DB_ERROR;
}

/* The row first, then the replaced directory's removal: a failure or a
 * crash in between leaves the old files without a row (collected at the
 * job's next attempt: db_checkpoint_collect_strays), never the row without
 * the files it names. */
int db_checkpoint_record(Db *db, int64_t job, int epoch, int64_t step, bool partial,
                         const DbCheckpoint *described, DbCheckpoint *out) {
    DbCheckpoint k = *described;
    k.job_id = job, k.epoch = epoch, k.step = step, k.partial = partial;
    k.created_at = db_now_ms();
    char prev[sizeof k.path], file[4400];
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    /* durable: the replaced directory, and those the gc after it removes,
     * go once their rows are gone for good, not only as far as a kill -9 */
    int rc = db_set_durable(c, true);
    if (rc == DB_OK) rc = db_begin(c);
    if (rc == DB_OK) rc = replaced_dir(c, job, step, k.path, prev, sizeof prev);
    if (rc == DB_OK) rc = forget_same_dir(c, job, step, k.path);
    if (rc == DB_OK) rc = upsert(c, &k, &k.id);
    if (rc == DB_OK)
        rc = db_commit(c);
    else
        db_rollback(c);
    rc = db_durable_done(c, rc);
    db_release(db, c);
    if (rc != DB_OK) return rc;
    if (prev[0] && !strstr(prev, "..") &&
        snprintf(file, sizeof file, "%s/%s", db_data_dir(db), prev) < (int)sizeof file)
        db_remove_tree(file); /* on failure a stray, collected as above */
    if (out) *out = k;
    return DB_OK;
}

int db_checkpoint_insert(Db *db, int64_t job, int epoch, int64_t step, bool partial,
                         const char *rel_dir, DbCheckpoint *out) {
    DbCheckpoint k;
    int rc = db_checkpoint_describe(db, rel_dir, &k);
    return rc == DB_OK ? db_checkpoint_record(db, job, epoch, step, partial, &k, out) : rc;
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

/* Whether gc drops c, the newest of a job's checkpoints or not, going from
 * the newest down: a partial one unless it is the newest, a complete one
 * with keep_last complete ones newer (*complete_newer, counted here). */
static bool gc_drops(const DbCheckpoint *c, bool newest, int keep_last, int *complete_newer) {
    bool drop = c->partial ? !newest : *complete_newer >= keep_last;
    if (!c->partial) (*complete_newer)++;
    return drop;
}

static int gc_keep_last_valid(int keep_last) {
    if (keep_last >= 1) return DB_OK;
    error_set("checkpoint.keep_last: must be >= 1, got %d", keep_last);
    return DB_INVALID;
}

int db_checkpoint_growth(Db *db, int64_t job, const DbCheckpoint *add, int keep_last,
                         int64_t *growth) {
    *growth = 0;
    int rc = gc_keep_last_valid(keep_last);
    DbCheckpoint *list;
    int n;
    if (rc != DB_OK || (rc = db_checkpoint_list(db, job, &list, &n)) != DB_OK) return rc;
    /* the rows from the newest down, `add` in its place by step, the row
     * it replaces (the same step) out, then what gc drops */
    *growth = add->disk_bytes;
    int complete_newer = 0;
    bool placed = false, newest = true;
    for (int i = n - 1; i >= -1; i--) {
        if (!placed && (i < 0 || list[i].step < add->step)) {
            placed = true;
            if (gc_drops(add, newest, keep_last, &complete_newer)) *growth -= add->disk_bytes;
            newest = false;
        }
        if (i < 0) break;
        if (list[i].step == add->step || gc_drops(&list[i], newest, keep_last, &complete_newer))
            *growth -= list[i].disk_bytes;
        newest = newest && list[i].step == add->step;
    }
    free(list);
    return DB_OK;
}

int db_checkpoint_gc(Db *db, int64_t job, int keep_last, int *removed) {
    if (removed) *removed = 0;
    int rc = gc_keep_last_valid(keep_last);
    DbCheckpoint *list;
    int n;
    if (rc != DB_OK || (rc = db_checkpoint_list(db, job, &list, &n)) != DB_OK) return rc;
    int complete_newer = 0; /* complete checkpoints newer than list[i] */
    for (int i = n - 1; i >= 0 && rc == DB_OK; i--) {
        if (!gc_drops(&list[i], i == n - 1, keep_last, &complete_newer)) continue;
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

/* The row among rows[n] whose directory's last part is `name`, or NULL. */
static const DbCheckpoint *row_named(const DbCheckpoint *rows, int n, const char *name) {
    for (int i = 0; i < n; i++) {
        const char *slash = strrchr(rows[i].path, '/');
        if (!strcmp(slash ? slash + 1 : rows[i].path, name)) return &rows[i];
    }
    return NULL;
}

/* A set-aside copy "<dir>.tmp.<pid>.<n>.old" of a recorded checkpoint whose
 * <dir> is missing is renamed back: whether it was. */
static bool restore_set_aside(const char *parent, const char *name, const DbCheckpoint *rows,
                              int n) {
    size_t len = strlen(name);
    const char *tmp = strstr(name, ".tmp.");
    if (!tmp || len < 4 || strcmp(name + len - 4, ".old")) return false;
    char base[256], from[4400 + 260], to[4400 + 260];
    struct stat st;
    if (snprintf(base, sizeof base, "%.*s", (int)(tmp - name), name) >= (int)sizeof base ||
        snprintf(from, sizeof from, "%s/%s", parent, name) >= (int)sizeof from ||
        snprintf(to, sizeof to, "%s/%s", parent, base) >= (int)sizeof to)
        return false;
    return row_named(rows, n, base) && stat(to, &st) != 0 && errno == ENOENT &&
           rename(from, to) == 0;
}

int db_checkpoint_collect_strays(Db *db, int64_t job, int *removed) {
    if (removed) *removed = 0;
    DbCheckpoint *rows;
    int n;
    int rc = db_checkpoint_list(db, job, &rows, &n);
    if (rc != DB_OK) return rc;
    char parent[4400], path[4400 + 256];
    snprintf(parent, sizeof parent, "%s/jobs/%lld/checkpoints", db_data_dir(db), (long long)job);
    DIR *d = opendir(parent);
    if (!d) {
        free(rows);
        if (errno == ENOENT) return DB_OK;
        error_sys(errno, "checkpoints of job %lld: cannot read '%s'", (long long)job, parent);
        return DB_ERROR;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (row_named(rows, n, e->d_name) || restore_set_aside(parent, e->d_name, rows, n))
            continue;
        snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
        if (db_remove_tree(path) != 0) {
            rc = DB_ERROR;
            break;
        }
        if (removed) (*removed)++;
    }
    closedir(d);
    free(rows);
    return rc;
}
