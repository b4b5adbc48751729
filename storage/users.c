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
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "storage/sha256.h"

static int new_token(char *token) {
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
    if (new_token(token) != 0) return DB_ERROR;
    int rc = create_with_token(db, name, admin, token, id_out);
    if (rc == DB_OK) memcpy(token_out, token, DB_TOKEN_LEN + 1);
    return rc;
}

static void read_user(sqlite3_stmt *st, DbUser *out) {
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(st, 0);
    db_column_copy(st, 1, out->name, sizeof out->name);
    out->admin = sqlite3_column_int(st, 2) != 0;
    out->created_at = sqlite3_column_int64(st, 3);
}

static int read_user_row(sqlite3_stmt *st, void *out) {
    read_user(st, out);
    return 0;
}

/* not_found: the error for no such user. */
static int get_one(Db *db, const char *sql, const char *key_text, int64_t key_int, DbUser *out,
                   const char *not_found) {
    int rc = db_get_row(db, sql, key_text, key_int, read_user_row, out, "user");
    if (rc == DB_NOT_FOUND) error_set("%s", not_found);
    return rc;
}

int db_user_by_token(Db *db, const char *token, DbUser *out) {
    if (!token || strlen(token) != DB_TOKEN_LEN) {
        error_set("unknown token");
        return DB_NOT_FOUND;
    }
    char hash[SHA256_HEX_LEN + 1];
    sha256_buffer_hex(token, DB_TOKEN_LEN, hash);
    return get_one(db,
                   "SELECT id, name, admin, created_at FROM users WHERE token_sha256 = ?1",
                   hash, 0, out, "unknown token");
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
    if (new_token(token) != 0 || write_token_file(db_data_dir(db), token) != 0) return DB_ERROR;
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
