/* users.c - users and their bearer tokens.
 *
 * A token is 32 bytes from the kernel's CSPRNG, shown once as 64 hex
 * characters; the database keeps only its sha256, so a leaked database
 * file does not leak credentials. Looking a token up hashes it and finds
 * the hash through its unique index.
 *
 * On first start the daemon creates "admin" and writes its token to
 * <data-dir>/admin.token, mode 0600, through a temporary file that is
 * fsynced and renamed, so the file is either absent or whole.
 */
#include "storage/db_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "storage/sha256.h"

int db_token_new(char *token) {
    uint8_t raw[DB_TOKEN_LEN / 2];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t r = getrandom(raw + got, sizeof raw - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return error_set("token: getrandom: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        token[2 * i] = digits[raw[i] >> 4];
        token[2 * i + 1] = digits[raw[i] & 15];
    }
    token[DB_TOKEN_LEN] = '\0';
    return 0;
}

static int check_name(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > DB_USER_NAME_MAX)
        return error_set("user name: must be 1 to %d characters", DB_USER_NAME_MAX), DB_INVALID;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return error_set("user name '%s': character %zu is not one of [A-Za-z0-9._-]", name,
                             i + 1),
                   DB_INVALID;
    }
    /* the audit trail's actor for `traind user`: no user may act under it */
    if (strcmp(name, DB_AUDIT_CLI_ACTOR) == 0)
        return error_set("user name '%s' is reserved: the audit trail's actor for the command "
                         "line (traind user)",
                         name),
               DB_INVALID;
    return DB_OK;
}

static int create_with_token(Db *db, const char *name, bool admin, const char *token,
                             int64_t *id_out) {
    int rc = check_name(name);
    if (rc != DB_OK) return rc;
    char hash[SHA256_HEX_LEN + 1];
    sha256_buffer_hex(token, DB_TOKEN_LEN, hash);
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "INSERT INTO users (name, token_sha256, admin, created_at) "
                                  "VALUES (?1, ?2, ?3, ?4)");
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    db_bind_text(st, 1, name);
    db_bind_text(st, 2, hash);
    sqlite3_bind_int(st, 3, admin);
    sqlite3_bind_int64(st, 4, db_now_ms());
    rc = db_step_done(c, st, "user");
    if (rc == DB_CONFLICT) error_set("user '%s' already exists", name);
    if (rc == DB_OK && id_out) *id_out = sqlite3_last_insert_rowid(c->h);
done:
    db_release(db, c);
    return rc;
}

int db_user_create(Db *db, const char *name, bool admin, int64_t *id_out, char *token_out) {
    char token[DB_TOKEN_LEN + 1];
    if (db_token_new(token) != 0) return DB_ERROR;
    int rc = create_with_token(db, name, admin, token, id_out);
    if (rc == DB_OK) memcpy(token_out, token, DB_TOKEN_LEN + 1);
    return rc;
}

#define USER_COLS                                                                          \
    "SELECT id, name, admin, created_at, revoked_at, quota_running, quota_queued, "        \
    "quota_gpus, quota_dataset_bytes, quota_checkpoint_bytes, usage_s, usage_at, "         \
    "token_sha256 FROM users "

/* A quota column: NULL is the daemon's default, -2 no limit (as stored). */
static int64_t quota_column(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? DB_QUOTA_DEFAULT
                                                     : sqlite3_column_int64(st, i);
}

static int read_user(sqlite3_stmt *st, void *out) {
    DbUser *u = out;
    memset(u, 0, sizeof *u);
    u->id = sqlite3_column_int64(st, 0);
    db_column_copy(st, 1, u->name, sizeof u->name);
    u->admin = sqlite3_column_int(st, 2) != 0;
    u->created_at = sqlite3_column_int64(st, 3);
    u->revoked_at = sqlite3_column_int64(st, 4);
    u->quota = (DbQuota){quota_column(st, 5), quota_column(st, 6), quota_column(st, 7),
                         quota_column(st, 8), quota_column(st, 9)};
    u->usage_s = sqlite3_column_double(st, 10);
    u->usage_at = sqlite3_column_int64(st, 11);
    return 0;
}

/* The user and their token's hash (hash may be NULL). */
typedef struct {
    DbUser *user;
    char *hash;
} UserRow;

static int read_user_row(sqlite3_stmt *st, void *out) {
    UserRow *r = out;
    read_user(st, r->user);
    if (r->hash) db_column_copy(st, 12, r->hash, SHA256_HEX_LEN + 1);
    return 0;
}

/* not_found: the error for no such user. */
static int get_one(Db *db, const char *sql, const char *key_text, int64_t key_int, DbUser *out,
                   char *hash, const char *not_found) {
    UserRow r = {out, hash};
    int rc = db_get_row(db, sql, key_text, key_int, read_user_row, &r, "user");
    if (rc == DB_NOT_FOUND) error_set("%s", not_found);
    return rc;
}

int db_user_by_token(Db *db, const char *token, DbUser *out, char *token_sha256_out) {
    char hash[SHA256_HEX_LEN + 1], stored[SHA256_HEX_LEN + 1] = "";
    if (!token || strlen(token) != DB_TOKEN_LEN) {
        error_set("unknown token");
        return DB_NOT_FOUND;
    }
    sha256_buffer_hex(token, DB_TOKEN_LEN, hash);
    int rc = get_one(db, USER_COLS "WHERE token_sha256 = ?1 AND revoked_at = 0", hash, 0, out,
                     stored, "unknown or revoked token");
    if (rc == DB_OK && (strlen(stored) != SHA256_HEX_LEN || !sha256_hex_equal(stored, hash))) {
        error_set("unknown or revoked token");
        rc = DB_NOT_FOUND;
    }
    if (rc == DB_OK && token_sha256_out) memcpy(token_sha256_out, hash, sizeof hash);
    return rc;
}

int db_user_token_valid(Db *db, int64_t id, const char *token_sha256) {
    DbUser u;
    char stored[SHA256_HEX_LEN + 1] = "";
    int rc = get_one(db, USER_COLS "WHERE id = ?1", NULL, id, &u, stored, "no such user");
    if (rc != DB_OK) return rc;
    if (u.revoked_at || strlen(stored) != SHA256_HEX_LEN ||
        strlen(token_sha256) != SHA256_HEX_LEN || !sha256_hex_equal(stored, token_sha256)) {
        error_set("user '%s': the token was revoked or replaced", u.name);
        return DB_NOT_FOUND;
    }
    return DB_OK;
}

int db_user_get(Db *db, int64_t id, DbUser *out) {
    char what[64];
    snprintf(what, sizeof what, "user %lld: not found", (long long)id);
    return get_one(db, USER_COLS "WHERE id = ?1", NULL, id, out, NULL, what);
}

int db_user_get_by_name(Db *db, const char *name, DbUser *out) {
    char what[128];
    snprintf(what, sizeof what, "no user '%.64s'", name ? name : "");
    return get_one(db, USER_COLS "WHERE name = ?1", name ? name : "", 0, out, NULL, what);
}

int db_user_list(Db *db, DbUser **out, int *n) {
    *out = NULL;
    *n = 0;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, USER_COLS "ORDER BY id");
    if (st) rc = db_collect(c, st, sizeof **out, read_user, (void **)out, n, "users");
    db_release(db, c);
    if (rc != DB_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

/* One UPDATE of the user `name`; DB_NOT_FOUND when there is none. */
static int update_user(Db *db, const char *sql, const char *name, const char *text) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, sql);
    if (st) {
        db_bind_text(st, 1, name);
        db_bind_text(st, 2, text);
        sqlite3_bind_int64(st, 3, db_now_ms());
        rc = db_step_update(c, st, "user", "no user '%.64s'", name);
    }
    db_release(db, c);
    return rc;
}

int db_user_revoke(Db *db, const char *name) {
    DbUser u;
    int rc = db_user_get_by_name(db, name, &u);
    if (rc != DB_OK) return rc;
    if (u.revoked_at) {
        error_set("user '%s' is already revoked", u.name);
        return DB_CONFLICT;
    }
    return update_user(db, "UPDATE users SET revoked_at = ?3 WHERE name = ?1", name, NULL);
}

int db_user_rotate(Db *db, const char *name, char *token_out) {
    char token[DB_TOKEN_LEN + 1], hash[SHA256_HEX_LEN + 1];
    if (db_token_new(token) != 0) return DB_ERROR;
    sha256_buffer_hex(token, DB_TOKEN_LEN, hash);
    int rc = update_user(db, "UPDATE users SET token_sha256 = ?2, revoked_at = 0 WHERE name = ?1",
                         name, hash);
    if (rc == DB_OK) memcpy(token_out, token, sizeof token);
    return rc;
}

int db_user_set_quota(Db *db, const char *name, const DbQuota *q) {
    const int64_t v[5] = {q->running_jobs, q->queued_jobs, q->gpus, q->dataset_bytes,
                          q->checkpoint_bytes};
    for (int i = 0; i < 5; i++)
        if (v[i] != DB_QUOTA_UNCHANGED && v[i] < DB_QUOTA_UNLIMITED) {
            error_set("quota: a limit is >= 0 (or -1 for the daemon's default, -2 for none), "
                      "got %lld", (long long)v[i]);
            return DB_INVALID;
        }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    /* ?k + 1 is 1 to change column k: NULL for the default, else the value
     * (-2 for no limit) */
    sqlite3_stmt *st = db_stmt(
        c, "UPDATE users SET "
           "quota_running = CASE WHEN ?2 THEN ?3 ELSE quota_running END, "
           "quota_queued = CASE WHEN ?4 THEN ?5 ELSE quota_queued END, "
           "quota_gpus = CASE WHEN ?6 THEN ?7 ELSE quota_gpus END, "
           "quota_dataset_bytes = CASE WHEN ?8 THEN ?9 ELSE quota_dataset_bytes END, "
           "quota_checkpoint_bytes = CASE WHEN ?10 THEN ?11 ELSE quota_checkpoint_bytes END "
           "WHERE name = ?1");
    if (st) {
        db_bind_text(st, 1, name);
        for (int i = 0; i < 5; i++) {
            sqlite3_bind_int(st, 2 + 2 * i, v[i] != DB_QUOTA_UNCHANGED);
            if (v[i] != DB_QUOTA_DEFAULT)
                sqlite3_bind_int64(st, 3 + 2 * i, v[i]);
            else
                sqlite3_bind_null(st, 3 + 2 * i);
        }
        rc = db_step_update(c, st, "user", "no user '%.64s'", name);
    }
    db_release(db, c);
    return rc;
}

double db_user_usage_now(const DbUser *u, int64_t now_ms, double half_life_s) {
    double age_s = (double)(now_ms - u->usage_at) / 1000.0;
    if (age_s <= 0 || half_life_s <= 0) return u->usage_s;
    return u->usage_s * exp2(-age_s / half_life_s);
}

double db_user_use_until_now(double devices, double seconds, double half_life_s) {
    if (!(seconds > 0)) return 0;
    if (half_life_s <= 0) return devices * seconds;
    return devices * half_life_s / M_LN2 * -expm1(-seconds / half_life_s * M_LN2);
}

int db_user_add_usage(Db *db, int64_t id, double device_s, double half_life_s) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = db_begin(c);
    DbUser u;
    if (rc == DB_OK) {
        UserRow r = {&u, NULL};
        sqlite3_stmt *st = db_stmt(c, USER_COLS "WHERE id = ?1");
        rc = !st ? DB_ERROR : DB_OK;
        if (st) sqlite3_bind_int64(st, 1, id);
        int s = st ? sqlite3_step(st) : SQLITE_ERROR;
        if (s == SQLITE_ROW)
            read_user_row(st, &r);
        else if (s == SQLITE_DONE) {
            error_set("user %lld: not found", (long long)id);
            rc = DB_NOT_FOUND;
        } else if (st)
            rc = db_fail(c, "user"); /* SQLite's error, not a missing user */
    }
    if (rc == DB_OK) {
        int64_t now = db_now_ms();
        sqlite3_stmt *st = db_stmt(c, "UPDATE users SET usage_s = ?2, usage_at = ?3 WHERE id = ?1");
        rc = !st ? DB_ERROR : DB_OK;
        if (st) {
            sqlite3_bind_int64(st, 1, id);
            sqlite3_bind_double(st, 2, db_user_usage_now(&u, now, half_life_s) + device_s);
            sqlite3_bind_int64(st, 3, now);
            rc = db_step_done(c, st, "user usage");
        }
    }
    if (rc == DB_OK)
        rc = db_commit(c);
    else
        db_rollback(c);
    db_release(db, c);
    return rc;
}

static int read_holdings(sqlite3_stmt *st, void *out) {
    DbUsage *u = out;
    u->running_jobs = sqlite3_column_int64(st, 0);
    u->queued_jobs = sqlite3_column_int64(st, 1);
    u->gpus = sqlite3_column_int64(st, 2);
    u->dataset_bytes = sqlite3_column_int64(st, 3);
    u->checkpoint_bytes = sqlite3_column_int64(st, 4);
    return 0;
}

/* SQL: how many "cuda" a device list column holds ("cuda:0,cuda:1": 2). */
#define CUDAS_IN(col) "(length(" col ") - length(replace(" col ", 'cuda', ''))) / 4"

int db_user_holdings(Db *db, int64_t id, DbUsage *out) {
    memset(out, 0, sizeof *out);
    return db_get_row(
        db,
        "SELECT (SELECT count(*) FROM jobs WHERE owner = ?1 AND state = 'running'),"
        " (SELECT count(*) FROM jobs WHERE owner = ?1 AND state = 'queued'),"
        /* the GPUs of its running jobs: each "cuda" of the device a worker
         * gave ("cuda:0,cuda:1"); on an executor's slot ("slurm-0"), what
         * the job asked for, as the queue counts it: its ranks for
         * "cuda", each "cuda" of a list */
        " (SELECT coalesce(sum(CASE WHEN device LIKE '%cuda%' THEN " CUDAS_IN("device")
        "   WHEN device_request = 'cuda' THEN max(ranks, 1)"
        "   WHEN device_request LIKE 'cuda:%' THEN " CUDAS_IN("device_request")
        "   ELSE 0 END), 0) FROM jobs WHERE owner = ?1 AND state = 'running'),"
        /* a ready dataset's bytes; what an upload or import in progress
         * has stored so far (a failed import's files are gone) */
        " (SELECT coalesce(sum(CASE WHEN state = 'ready' THEN bytes WHEN error IS NULL OR "
        "   error = '' THEN progress_bytes ELSE 0 END), 0) FROM datasets WHERE owner = ?1),"
        " (SELECT coalesce(sum(c.disk_bytes), 0) FROM checkpoints c JOIN jobs j ON c.job_id = j.id"
        "   WHERE j.owner = ?1)",
        NULL, id, read_holdings, out, "user holdings");
}

static int write_token(FILE *f, const char *tmp, void *token) {
    return fprintf(f, "%s\n", (const char *)token) < 0
               ? error_set("writing '%s': %s", tmp, strerror(errno))
               : 0;
}

/* <dir>/admin.token, mode 0600, written whole or not at all. */
static int write_token_file(const char *dir, const char *token) {
    char path[4200];
    snprintf(path, sizeof path, "%s/admin.token", dir);
    if (durable_write(path, 0600, write_token, (void *)token) != 0)
        return error_prefix("admin token");
    return 0;
}

int db_user_bootstrap_admin(Db *db, bool *created) {
    if (created) *created = false;
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_OK, admins = 0;
    sqlite3_stmt *st = db_stmt(c, "SELECT count(*) FROM users WHERE admin = 1");
    if (!st)
        rc = DB_ERROR;
    else if (sqlite3_step(st) != SQLITE_ROW)
        rc = db_fail(c, "users");
    else
        admins = sqlite3_column_int(st, 0);
    db_release(db, c);
    if (rc != DB_OK || admins > 0) return rc;
    /* the file first: a row whose token was never written would lock
     * everyone out for good */
    char token[DB_TOKEN_LEN + 1];
    if (db_token_new(token) != 0 || write_token_file(db_data_dir(db), token) != 0) return DB_ERROR;
    rc = create_with_token(db, "admin", true, token, NULL);
    if (rc != DB_OK) {
        char path[4200];
        snprintf(path, sizeof path, "%s/admin.token", db_data_dir(db));
        unlink(path);
        return rc;
    }
    if (created) *created = true;
    return DB_OK;
}
