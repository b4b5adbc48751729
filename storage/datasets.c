/* datasets.c - dataset records and their directories.
 *
 * A dataset is born `uploading` with an empty directory
 * <data-dir>/datasets/<id>/ that the HTTP layer streams files into; once
 * they are validated it becomes `ready` with its files, sizes, hashes and
 * sample shape, and only then do listings and jobs see it. A daemon that
 * dies mid-upload leaves an `uploading` row: db_dataset_delete_stale
 * removes those at start.
 *
 * Names are the user's handle (`data.train: "mnist-train"`), ids the
 * daemon's; a name can never look like an id (all digits), so "42" always
 * means id 42. The per-file list and the sample shape are small JSON
 * documents in their row: they are read and written whole.
 */
#include "storage/db_internal.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "storage/sha256.h"

void db_dataset_clear(DbDataset *ds) {
    if (!ds) return;
    free(ds->options_json);
    ds->options_json = NULL;
}

int db_dataset_name_check(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > DB_DATASET_NAME_MAX) {
        error_set("dataset name '%.80s': must be 1 to %d characters", name ? name : "",
                  DB_DATASET_NAME_MAX);
        return DB_INVALID;
    }
    bool digits = true;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch >= '0' && ch <= '9') continue;
        digits = false;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '.' || ch == '_' ||
              ch == '-')) {
            error_set("dataset name '%s': character %zu ('%c') is not one of [A-Za-z0-9._-]",
                      name, i + 1, ch);
            return DB_INVALID;
        }
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strstr(name, "..")) {
        error_set("dataset name '%s': must not contain '..'", name);
        return DB_INVALID;
    }
    if (digits) {
        error_set("dataset name '%s': must not be all digits (it would read as an id)", name);
        return DB_INVALID;
    }
    return DB_OK;
}

static bool format_known(const char *f) {
    return f && (strcmp(f, "idx") == 0 || strcmp(f, "csv") == 0 || strcmp(f, "npy") == 0 ||
                 strcmp(f, "tokens") == 0 || strcmp(f, "text") == 0 ||
                 strcmp(f, "imagefolder") == 0 || strcmp(f, "cifar10") == 0);
}

static bool file_name_ok(const char *s) {
    return s && *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int db_dataset_dir(const Db *db, int64_t id, char *buf, size_t size) {
    if (snprintf(buf, size, "%s/datasets/%lld", db_data_dir(db), (long long)id) >= (int)size)
        return error_set("dataset %lld: path too long", (long long)id);
    return 0;
}

int db_dataset_file_path(const Db *db, const DbDataset *ds, const char *role, char *buf,
                         size_t size) {
    for (int i = 0; i < ds->num_files; i++) {
        if (strcmp(ds->files[i].role, role) != 0) continue;
        if (snprintf(buf, size, "%s/datasets/%lld/%s", db_data_dir(db), (long long)ds->id,
                     ds->files[i].name) >= (int)size)
            return error_set("dataset %lld: path too long", (long long)ds->id);
        return 0;
    }
    error_set("dataset '%s': no '%s' file", ds->name, role);
    return DB_NOT_FOUND;
}

int db_dataset_insert(Db *db, const char *name, const char *format, const char *options_json,
                      int64_t owner, int64_t *id_out) {
    int rc = db_dataset_name_check(name);
    if (rc != DB_OK) return rc;
    if (!format_known(format)) {
        error_set("format: unknown format '%s' (known: idx, csv, npy, tokens, text, "
                  "imagefolder, cifar10)",
                  format ? format : "");
        return DB_INVALID;
    }
    if (!options_json) options_json = "{}";
    json_t *opts = json_loads(options_json, 0, NULL);
    bool ok = json_is_object(opts);
    json_decref(opts);
    if (!ok) {
        error_set("dataset options: not a JSON object");
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "INSERT INTO datasets (name, format, state, owner, options, "
                                  "created_at) VALUES (?1, ?2, 'uploading', ?3, ?4, ?5)");
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    db_bind_text(st, 1, name);
    db_bind_text(st, 2, format);
    if (owner > 0)
        sqlite3_bind_int64(st, 3, owner);
    else
        sqlite3_bind_null(st, 3);
    db_bind_text(st, 4, options_json);
    sqlite3_bind_int64(st, 5, db_now_ms());
    rc = db_step_done(c, st, "dataset");
    if (rc == DB_CONFLICT) error_set("dataset name '%s': you have a dataset of that name", name);
    if (rc != DB_OK) goto done;
    int64_t id = sqlite3_last_insert_rowid(c->h);
    char dir[4200];
    db_dataset_dir(db, id, dir, sizeof dir);
    /* a directory left by a crash between mkdir and a failed insert is
     * reused: ids are never handed out twice (AUTOINCREMENT) */
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        error_set("dataset '%s': cannot create %s: %s", name, dir, strerror(errno));
        sqlite3_stmt *del = db_stmt(c, "DELETE FROM datasets WHERE id = ?1");
        if (del) {
            sqlite3_bind_int64(del, 1, id);
            sqlite3_step(del);
        }
        rc = DB_ERROR;
        goto done;
    }
    if (id_out) *id_out = id;
done:
    db_release(db, c);
    return rc;
}

/* ---- JSON columns ---- */

static const char *jstr(const json_t *obj, const char *key) {
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static json_t *shape_to_json(const DbSampleShape *s) {
    json_t *in = json_array(), *tg = json_array();
    for (int i = 0; i < s->input_ndim && i < DB_MAX_DIMS; i++)
        json_array_append_new(in, json_integer(s->input_shape[i]));
    for (int i = 0; i < s->target_ndim && i < DB_MAX_DIMS; i++)
        json_array_append_new(tg, json_integer(s->target_shape[i]));
    return json_pack("{s:s, s:o, s:s, s:o, s:i}", "input_dtype", s->input_dtype, "input_shape",
                     in, "target_dtype", s->target_dtype, "target_shape", tg, "num_classes",
                     s->num_classes);
}

static void shape_from_json(const char *text, DbSampleShape *s) {
    memset(s, 0, sizeof *s);
    json_t *j = json_loads(text ? text : "{}", 0, NULL);
    if (!j) return;
    snprintf(s->input_dtype, sizeof s->input_dtype, "%s",
             jstr(j, "input_dtype"));
    snprintf(s->target_dtype, sizeof s->target_dtype, "%s",
             jstr(j, "target_dtype"));
    json_t *in = json_object_get(j, "input_shape"), *tg = json_object_get(j, "target_shape");
    for (size_t i = 0; i < json_array_size(in) && i < DB_MAX_DIMS; i++)
        s->input_shape[s->input_ndim++] = json_integer_value(json_array_get(in, i));
    for (size_t i = 0; i < json_array_size(tg) && i < DB_MAX_DIMS; i++)
        s->target_shape[s->target_ndim++] = json_integer_value(json_array_get(tg, i));
    s->num_classes = (int)json_integer_value(json_object_get(j, "num_classes"));
    json_decref(j);
}

json_t *db_dataset_files_json(const DbDataset *ds) {
    json_t *a = json_array();
    for (int i = 0; a && i < ds->num_files; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:s}", "role", ds->files[i].role,
                                           "name", ds->files[i].name, "bytes",
                                           (json_int_t)ds->files[i].bytes, "sha256",
                                           ds->files[i].sha256));
    return a;
}

static void files_from_json(const char *text, DbDataset *ds) {
    ds->num_files = 0;
    json_t *a = json_loads(text ? text : "[]", 0, NULL);
    for (size_t i = 0; i < json_array_size(a) && ds->num_files < DB_DATASET_MAX_FILES; i++) {
        json_t *f = json_array_get(a, i);
        DbDatasetFile *o = &ds->files[ds->num_files++];
        snprintf(o->role, sizeof o->role, "%s",
                 jstr(f, "role"));
        snprintf(o->name, sizeof o->name, "%s",
                 jstr(f, "name"));
        o->bytes = json_integer_value(json_object_get(f, "bytes"));
        snprintf(o->sha256, sizeof o->sha256, "%s",
                 jstr(f, "sha256"));
    }
    json_decref(a);
}

int db_dataset_mark_ready(Db *db, int64_t id, const DbDataset *info) {
    if (info->num_files < 1 || info->num_files > DB_DATASET_MAX_FILES) {
        error_set("dataset %lld: %d files (1 to %d)", (long long)id, info->num_files,
                  DB_DATASET_MAX_FILES);
        return DB_INVALID;
    }
    for (int i = 0; i < info->num_files; i++)
        if (!file_name_ok(info->files[i].name) || !info->files[i].role[0]) {
            error_set("dataset %lld: bad file name '%s'", (long long)id, info->files[i].name);
            return DB_INVALID;
        }
    char sha[SHA256_HEX_LEN + 1];
    if (info->sha256[0])
        snprintf(sha, sizeof sha, "%s", info->sha256);
    else {
        Sha256 s;
        sha256_init(&s);
        for (int i = 0; i < info->num_files; i++) {
            char line[128];
            int n = snprintf(line, sizeof line, "%s %s\n", info->files[i].role,
                             info->files[i].sha256);
            sha256_update(&s, line, (size_t)n);
        }
        sha256_final_hex(&s, sha);
    }
    json_t *files = db_dataset_files_json(info), *shape = shape_to_json(&info->shape);
    char *files_text = files ? json_dumps(files, JSON_COMPACT) : NULL;
    char *shape_text = shape ? json_dumps(shape, JSON_COMPACT) : NULL;
    json_decref(files);
    json_decref(shape);
    int rc = DB_ERROR;
    DbConn *c = NULL;
    if (!files_text || !shape_text) {
        error_set("dataset %lld: out of memory", (long long)id);
        goto done;
    }
    c = db_acquire(db);
    /* durable: the 201 that follows promises the dataset kept */
    if (!c || db_set_durable(c, true) != DB_OK) goto done;
    sqlite3_stmt *st = db_stmt(c, "UPDATE datasets SET state = 'ready', files = ?2, bytes = ?3, "
                                  "sha256 = ?4, samples = ?5, shape = ?6, "
                                  "options = coalesce(?7, options) "
                                  "WHERE id = ?1 AND state IN ('uploading', 'importing')");
    if (!st) goto done;
    sqlite3_bind_int64(st, 1, id);
    db_bind_text(st, 2, files_text);
    sqlite3_bind_int64(st, 3, info->bytes);
    db_bind_text(st, 4, sha);
    sqlite3_bind_int64(st, 5, info->samples);
    db_bind_text(st, 6, shape_text);
    db_bind_text(st, 7, info->options_json); /* NULL: as inserted */
    rc = db_step_done(c, st, "dataset");
    if (rc == DB_OK && sqlite3_changes(c->h) == 0) {
        error_set("dataset %lld: not found or already ready", (long long)id);
        rc = DB_CONFLICT;
    }
done:
    if (c) rc = db_durable_done(c, rc);
    if (c) db_release(db, c);
    free(files_text);
    free(shape_text);
    return rc;
}

#define DATASET_COLS                                                                        \
    "SELECT id, name, format, state, coalesce(owner, 0), files, bytes, sha256, samples, "  \
    "shape, options, created_at, shared, progress_bytes, total_bytes, error, "            \
    "(SELECT u.name FROM users u WHERE u.id = datasets.owner) FROM datasets "

/* Whether the viewer (?v: user id, ?a: admin) may see the row: a shared
 * dataset is the others' once it is ready (not its upload, nor an import's
 * error, which may quote a signed URL). */
#define VISIBLE(v, a) "(" a " OR owner = " v " OR (shared = 1 AND state = 'ready'))"

static int read_dataset(sqlite3_stmt *st, DbDataset *out) {
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(st, 0);
    db_column_copy(st, 1, out->name, sizeof out->name);
    db_column_copy(st, 2, out->format, sizeof out->format);
    const char *state = (const char *)sqlite3_column_text(st, 3);
    out->state = !state                         ? DB_DATASET_UPLOADING
                 : strcmp(state, "ready") == 0     ? DB_DATASET_READY
                 : strcmp(state, "importing") == 0 ? DB_DATASET_IMPORTING
                                                   : DB_DATASET_UPLOADING;
    out->owner = sqlite3_column_int64(st, 4);
    files_from_json((const char *)sqlite3_column_text(st, 5), out);
    out->bytes = sqlite3_column_int64(st, 6);
    db_column_copy(st, 7, out->sha256, sizeof out->sha256);
    out->samples = sqlite3_column_int64(st, 8);
    shape_from_json((const char *)sqlite3_column_text(st, 9), &out->shape);
    int oom = 0;
    out->options_json = db_column_dup(st, 10, &oom);
    out->created_at = sqlite3_column_int64(st, 11);
    out->shared = sqlite3_column_int(st, 12) != 0;
    out->progress_bytes = sqlite3_column_int64(st, 13);
    out->total_bytes = sqlite3_column_int64(st, 14);
    db_column_copy(st, 15, out->error, sizeof out->error);
    db_column_copy(st, 16, out->owner_name, sizeof out->owner_name);
    if (oom) return error_set("dataset: out of memory");
    return 0;
}

static int read_dataset_row(sqlite3_stmt *st, void *out) { return read_dataset(st, out); }

static int get_one(Db *db, const char *sql, const char *key_text, int64_t key_int, DbDataset *out) {
    int rc = db_get_row(db, sql, key_text, key_int, read_dataset_row, out, "dataset");
    if (rc == DB_NOT_FOUND) {
        if (key_text)
            error_set("dataset '%s': not found", key_text);
        else
            error_set("dataset %lld: not found", (long long)key_int);
    }
    return rc;
}

int db_dataset_get(Db *db, int64_t id, DbDataset *out) {
    return get_one(db, DATASET_COLS "WHERE id = ?1", NULL, id, out);
}

/* Whether v may see ds (NULL: the daemon, which sees everything). */
static bool visible(const DbViewer *v, const DbDataset *ds) {
    return !v || v->admin || (ds->owner && ds->owner == v->user_id) ||
           (ds->shared && ds->state == DB_DATASET_READY);
}

/* The dataset `name` of owner (0: any owner) among those v sees: v's own
 * first, else the others'; DB_CONFLICT when several others' carry it. */
static int by_name(Db *db, const DbViewer *v, int64_t owner, const char *name, DbDataset *out) {
    DbDataset *list = NULL;
    int n = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, DATASET_COLS "WHERE name = ?1 AND (?4 = 0 OR owner = ?4) AND "
                                  VISIBLE("?2", "?3") " ORDER BY owner = ?2 DESC, id LIMIT 8");
    if (st) {
        db_bind_text(st, 1, name);
        sqlite3_bind_int64(st, 2, v ? v->user_id : 0);
        sqlite3_bind_int(st, 3, !v || v->admin);
        sqlite3_bind_int64(st, 4, owner);
        rc = db_collect(c, st, sizeof *list, read_dataset_row, (void **)&list, &n, "datasets");
    }
    db_release(db, c);
    if (rc == DB_OK && n == 0) {
        error_set("dataset '%s': not found", name);
        rc = DB_NOT_FOUND;
    } else if (rc == DB_OK && n > 1 && !(v && list[0].owner == v->user_id)) {
        char owners[256] = "";
        for (int i = 0; i < n && i < 4; i++) {
            size_t used = strlen(owners);
            snprintf(owners + used, sizeof owners - used, "%s%s/%s", i ? ", " : "",
                     list[i].owner_name[0] ? list[i].owner_name : "?", name);
        }
        error_set("dataset '%s': several users have one of that name (%s); give it as "
                  "user/name or by id", name, owners);
        rc = DB_CONFLICT;
    }
    if (rc == DB_OK) {
        *out = list[0];
        list[0].options_json = NULL;
    }
    db_dataset_list_free(list, n);
    return rc;
}

int db_dataset_resolve(Db *db, const DbViewer *viewer, const char *ref, DbDataset *out) {
    if (!ref || !*ref) {
        error_set("dataset: empty id or name");
        return DB_NOT_FOUND;
    }
    bool digits = strlen(ref) <= 18;
    for (const char *p = ref; *p && digits; p++) digits = *p >= '0' && *p <= '9';
    const char *slash = strchr(ref, '/');
    int rc;
    if (digits) {
        rc = db_dataset_get(db, strtoll(ref, NULL, 10), out);
        if (rc == DB_OK && !visible(viewer, out)) {
            db_dataset_clear(out);
            rc = DB_NOT_FOUND;
        }
    } else if (slash) { /* user/name: that user's */
        char user[DB_USER_NAME_MAX + 1];
        DbUser u;
        /* a longer name is no user's, not the one it starts with */
        rc = slash - ref <= DB_USER_NAME_MAX ? DB_OK : DB_NOT_FOUND;
        snprintf(user, sizeof user, "%.*s", (int)(slash - ref), ref);
        if (rc == DB_OK) rc = db_user_get_by_name(db, user, &u);
        if (rc == DB_OK) rc = by_name(db, viewer, u.id, slash + 1, out);
    } else
        rc = by_name(db, viewer, 0, ref, out);
    if (rc == DB_NOT_FOUND) error_set("dataset '%.80s': not found", ref);
    return rc;
}

int db_dataset_list(Db *db, const DbViewer *viewer, int64_t owner, bool include_uploading,
                    DbDataset **out, int *n) {
    *out = NULL;
    *n = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_OK;
    sqlite3_stmt *st = db_stmt(c, DATASET_COLS "WHERE (?1 OR state = 'ready') AND "
                                  "(?2 = 0 OR owner = ?2) AND " VISIBLE("?3", "?4")
                                  " ORDER BY id");
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    sqlite3_bind_int(st, 1, include_uploading);
    sqlite3_bind_int64(st, 2, owner);
    sqlite3_bind_int64(st, 3, viewer ? viewer->user_id : 0);
    sqlite3_bind_int(st, 4, !viewer || viewer->admin);
    rc = db_collect(c, st, sizeof **out, read_dataset_row, (void **)out, n, "datasets");
done:
    db_release(db, c);
    if (rc != DB_OK) {
        db_dataset_list_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

void db_dataset_list_free(DbDataset *list, int n) {
    for (int i = 0; list && i < n; i++) db_dataset_clear(&list[i]);
    free(list);
}

/* One UPDATE of dataset id binding ?2, ?3 (int64) and ?4 (text). */
static int update(Db *db, int64_t id, const char *sql, int64_t a, int64_t b, const char *text) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, sql);
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, a);
        sqlite3_bind_int64(st, 3, b);
        db_bind_text(st, 4, text);
        rc = db_step_update(c, st, "dataset", "dataset %lld: not found", (long long)id);
    }
    db_release(db, c);
    return rc;
}

/* The statement that takes dataset id out of 'ready' (and out of sight),
 * unless a queued or running job names it: a job is inserted only while
 * its datasets are ready (db_job_insert), so none crosses it. Its bytes
 * stay its owner's holdings (as an upload's progress) until its row goes:
 * a delete that fails after it leaves the files on disk. */
#define OUT_OF_READY                                                                           \
    "UPDATE datasets SET state = 'uploading', progress_bytes = max(bytes, progress_bytes) "    \
    "WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM jobs WHERE state IN ('queued', 'running') "   \
    "AND (train_dataset = ?1 OR val_dataset = ?1))"

/* Why OUT_OF_READY (and more) changed no row: a job names the dataset
 * (DB_CONFLICT) or it is not there to take (DB_NOT_FOUND). */
static int not_taken(Db *db, int64_t id) {
    int jobs = 0;
    int rc = db_dataset_jobs(db, id, &jobs, NULL);
    if (rc != DB_OK) return rc;
    if (jobs > 0)
        return error_set("dataset %lld is used by a queued or running job", (long long)id),
               DB_CONFLICT;
    return error_set("dataset %lld: not found", (long long)id), DB_NOT_FOUND;
}

int db_dataset_claim_delete(Db *db, int64_t id) {
    int rc = update(db, id, OUT_OF_READY " AND state != 'uploading'", 0, 0, NULL);
    return rc == DB_NOT_FOUND ? not_taken(db, id) : rc;
}

/* <data-dir>/datasets/.trash-<id>: no dataset's directory (a name of
 * digits) is ever so named. */
#define TRASH_PREFIX ".trash-"
static int trash_dir(const Db *db, int64_t id, char *buf, size_t size) {
    if (snprintf(buf, size, "%s/datasets/" TRASH_PREFIX "%lld", db_data_dir(db), (long long)id) >=
        (int)size)
        return error_set("dataset %lld: path too long", (long long)id);
    return 0;
}

static int delete_row(Db *db, int64_t id) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "DELETE FROM datasets WHERE id = ?1");
    int rc = st ? (sqlite3_bind_int64(st, 1, id), db_step_done(c, st, "dataset")) : DB_ERROR;
    db_release(db, c);
    return rc;
}

int db_dataset_delete(Db *db, int64_t id, char *trash, size_t size) {
    char dir[4200], aside[4200];
    if (db_dataset_dir(db, id, dir, sizeof dir) != 0 ||
        trash_dir(db, id, aside, sizeof aside) != 0)
        return DB_ERROR;
    if (trash) trash[0] = '\0';
    /* out of 'ready' first; a crash after it leaves a row the next start
     * deletes (db_dataset_delete_stale) */
    int rc = update(db, id, OUT_OF_READY, 0, 0, NULL);
    if (rc == DB_NOT_FOUND) return not_taken(db, id);
    if (rc != DB_OK) return rc;
    /* the files aside next, in one rename: a row without files is finished
     * by the next start, files without a row under a dataset's name would
     * leak disk forever */
    bool moved = rename(dir, aside) == 0;
    if (!moved && errno != ENOENT)
        return error_set("dataset %lld: cannot move %s aside: %s", (long long)id, dir,
                         strerror(errno)),
               DB_ERROR;
    /* the rename on the disk before the row goes: a power cut must not
     * bring back a directory under the name of a dataset no row has */
    if (moved && durable_sync_parent(aside) != 0) return DB_ERROR;
    bool handed = moved && trash && snprintf(trash, size, "%s", aside) < (int)size;
    if (trash && !handed) trash[0] = '\0';
    if (moved && !handed && db_remove_tree(aside) != 0)
        return error_prefix("dataset %lld", (long long)id);
    rc = delete_row(db, id);
    if (rc != DB_OK && handed) {
        /* SQLite needs room to delete a row: on a full disk, the files'
         * room first, then again */
        trash[0] = '\0';
        if (db_remove_tree(aside) != 0) return error_prefix("dataset %lld", (long long)id);
        rc = delete_row(db, id);
    }
    return rc;
}

int db_dataset_trash_each(Db *db, void (*fn)(const char *path, void *ctx), void *ctx) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/datasets", db_data_dir(db));
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? DB_OK : (error_sys(errno, "cannot open %s", dir), DB_ERROR);
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[4200 + 256];
        if (strncmp(e->d_name, TRASH_PREFIX, strlen(TRASH_PREFIX)) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fn(path, ctx);
    }
    closedir(d);
    return DB_OK;
}

int db_dataset_delete_stale(Db *db, int *n) {
    if (n) *n = 0;
    DbDataset *list;
    int count;
    int rc = db_dataset_list(db, NULL, 0, true, &list, &count);
    if (rc != DB_OK) return rc;
    for (int i = 0; i < count && rc == DB_OK; i++) {
        if (list[i].state == DB_DATASET_READY) continue;
        rc = db_dataset_delete(db, list[i].id, NULL, 0);
        if (rc == DB_OK && n) (*n)++;
    }
    db_dataset_list_free(list, count);
    return rc;
}

int db_dataset_import_progress(Db *db, int64_t id, int64_t bytes, int64_t total) {
    return update(db, id, "UPDATE datasets SET state = 'importing', progress_bytes = ?2, "
                          "total_bytes = ?3 WHERE id = ?1 AND state != 'ready'",
                  bytes, total, NULL);
}

int db_dataset_upload_progress(Db *db, int64_t id, int64_t bytes) {
    return update(db, id, "UPDATE datasets SET progress_bytes = ?2 WHERE id = ?1 AND "
                          "state = 'uploading'",
                  bytes, 0, NULL);
}

int db_dataset_import_failed(Db *db, int64_t id, const char *error) {
    return update(db, id, "UPDATE datasets SET error = ?4 WHERE id = ?1", 0, 0, error);
}

int db_dataset_set_shared(Db *db, int64_t id, bool shared) {
    return update(db, id, "UPDATE datasets SET shared = ?2 WHERE id = ?1", shared, 0, NULL);
}

static int read_jobs(sqlite3_stmt *st, void *out) {
    int64_t *v = out;
    v[0] = sqlite3_column_int64(st, 0);
    v[1] = sqlite3_column_int64(st, 1);
    return 0;
}

int db_dataset_jobs(Db *db, int64_t id, int *count, int64_t *job) {
    int64_t v[2] = {0, 0}, keys[1] = {id};
    int rc = db_get_row_ints(db,
                             "SELECT count(*), coalesce(min(id), 0) FROM jobs WHERE "
                             "state IN ('queued', 'running') AND "
                             "(train_dataset = ?1 OR val_dataset = ?1)",
                             keys, 1, read_jobs, v, "dataset's jobs");
    *count = (int)v[0];
    if (job) *job = v[1];
    return rc;
}
