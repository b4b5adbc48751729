/* audit.c - GET /v1/audit (admins): the audit trail, oldest first.
 *
 * ?after=ID (entries with a higher id; 0 for all) and ?limit=N (1..1000,
 * default 100) page through it:
 *     {"entries": [{"id", "ts", "actor", "action", "target", "detail"}],
 *      "next_after": 57 | null}
 * next_after is the `after` of the next page when this one is full. The
 * actor is the user who made the change ("cli" for `traind user`); the
 * actions are listed at storage/db.h db_audit_add.
 */
#include <stdlib.h>

#include "core/error.h"
#include "core/json_text.h"
#include "server/api.h"

static json_t *entry_json(const DbAuditEntry *e) {
    return json_pack("{s:I, s:o, s:s, s:s, s:s, s:o}", "id", (json_int_t)e->id, "ts",
                     api_time(e->ts), "actor", e->actor, "action", e->action, "target", e->target,
                     "detail", e->detail[0] ? json_text(e->detail) : json_null());
}

int audit_get(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t after, limit;
    if (http_query_int(req, "after", 0, 0, INT64_MAX, &after) ||
        http_query_int(req, "limit", 100, 1, 1000, &limit))
        return 0;
    DbAuditEntry *e = NULL;
    int n = 0;
    error_clear();
    int st = db_audit_list(api->db, after, (int)limit, &e, &n);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) json_array_append_new(arr, entry_json(&e[i]));
    json_t *next = n == limit ? json_integer(e[n - 1].id) : json_null();
    free(e);
    return http_reply_json(req, 200, json_pack("{s:o*, s:o}", "entries", arr, "next_after", next));
}
