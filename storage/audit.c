/* audit.c - the audit trail: who created, cancelled, deleted or
 * re-prioritised what, who added, revoked or changed users, and when. One
 * row per action, appended and never changed; read by GET /v1/audit. */
#include "storage/db_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int db_audit_add(Db *db, const char *actor, const char *action, const char *target,
                 const char *detail) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "INSERT INTO audit (ts, actor, action, target, detail) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5)");
    if (st) {
        sqlite3_bind_int64(st, 1, db_now_ms());
        db_bind_text(st, 2, actor ? actor : "");
        db_bind_text(st, 3, action);
        db_bind_text(st, 4, target);
        db_bind_text(st, 5, detail);
        rc = db_step_done(c, st, "audit");
    }
    db_release(db, c);
    return rc;
}

static int read_entry(sqlite3_stmt *st, void *out) {
    DbAuditEntry *e = out;
    memset(e, 0, sizeof *e);
    e->id = sqlite3_column_int64(st, 0);
    e->ts = sqlite3_column_int64(st, 1);
    db_column_copy(st, 2, e->actor, sizeof e->actor);
    db_column_copy(st, 3, e->action, sizeof e->action);
    db_column_copy(st, 4, e->target, sizeof e->target);
    db_column_copy(st, 5, e->detail, sizeof e->detail);
    return 0;
}

int db_audit_list(Db *db, int64_t after_id, int limit, DbAuditEntry **out, int *n) {
    *out = NULL;
    *n = 0;
    if (limit < 1 || limit > 1000) {
        error_set("limit: must be 1 to 1000, got %d", limit);
        return DB_INVALID;
    }
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc = DB_ERROR;
    sqlite3_stmt *st = db_stmt(c, "SELECT id, ts, actor, action, target, detail FROM audit "
                                  "WHERE id > ?1 ORDER BY id LIMIT ?2");
    if (st) {
        sqlite3_bind_int64(st, 1, after_id);
        sqlite3_bind_int(st, 2, limit);
        rc = db_collect(c, st, sizeof **out, read_entry, (void **)out, n, "audit");
    }
    db_release(db, c);
    if (rc != DB_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}
