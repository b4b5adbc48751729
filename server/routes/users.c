/* users.c - /v1/users, an admin's view of the users (what `traind user`
 * does on the command line), and /v1/me, anyone's view of themselves.
 *
 *   GET   /v1/users                    every user
 *   POST  /v1/users {"name", "admin"}  201, the user with its "token" (shown once)
 *   PATCH /v1/users/{name} {"quota": {"running_jobs": 2, "gpus": "unlimited",
 *                                     "queued_jobs": null}}   null: the daemon's default
 *   POST  /v1/users/{name}/revoke      the token stops working at once
 *   POST  /v1/users/{name}/rotate      a new token (also for a revoked user)
 *   GET   /v1/me                       the caller
 *
 * A user is shown as {"id", "name", "admin", "created_at", "revoked_at",
 * "quota" (their own limits: a number, "unlimited", or null for the
 * daemon's default), "effective_quota" (with the defaults filled in),
 * "holdings" (what they hold now against it)}. Errors name the field
 * ("quota.gpus"); an unknown user is 404, a name taken 409. Each change is
 * written to the audit trail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/api.h"
#include "server/quota_text.h"

/* The user as shown (with their holdings: a query), or NULL after
 * replying. */
static json_t *user_json(HttpRequest *req, const DbUser *u) {
    Api *api = http_app(req);
    DbUsage h;
    error_clear();
    int st = db_user_holdings(api->db, u->id, &h);
    if (st != DB_OK) return api_reply_db(req, st, NULL), NULL;
    DbQuota effective = quota_effective(&u->quota, &api->quota_defaults);
    json_t *o = json_pack(
        "{s:I, s:s, s:b, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I}}", "id",
        (json_int_t)u->id, "name", u->name, "admin", u->admin, "created_at",
        api_time(u->created_at), "revoked_at", api_time(u->revoked_at), "quota",
        quota_text_json(&u->quota, false), "effective_quota", quota_text_json(&effective, true),
        "holdings", "running_jobs", (json_int_t)h.running_jobs, "queued_jobs",
        (json_int_t)h.queued_jobs, "gpus", (json_int_t)h.gpus, "dataset_bytes",
        (json_int_t)h.dataset_bytes, "checkpoint_bytes", (json_int_t)h.checkpoint_bytes);
    if (!o) http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    return o;
}

/* Replies `status` with the user `name` as they are now, with their new
 * token when there is one. */
static int reply_user(HttpRequest *req, int status, const char *name, const char *token) {
    Api *api = http_app(req);
    DbUser u;
    error_clear();
    int st = db_user_get_by_name(api->db, name, &u);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    json_t *o = user_json(req, &u);
    if (!o) return 0;
    if (token && json_object_set_new(o, "token", json_string(token)) != 0) {
        json_decref(o);
        return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    }
    return http_reply_json(req, status, o);
}

int users_list(HttpRequest *req) {
    Api *api = http_app(req);
    DbUser *users = NULL;
    int n = 0;
    error_clear();
    int st = db_user_list(api->db, &users, &n);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    json_t *arr = json_array();
    if (!arr) {
        free(users);
        return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        json_t *u = user_json(req, &users[i]);
        if (!u) { /* replied */
            json_decref(arr);
            free(users);
            return 0;
        }
        json_array_append_new(arr, u);
    }
    free(users);
    return http_reply_json(req, 200, json_pack("{s:o}", "users", arr));
}

/* Whether every member of body is one of the known (NULL-terminated);
 * false after replying 400 naming the first that is not. */
static bool known_fields(HttpRequest *req, json_t *body, const char *const *known,
                         const char *list) {
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        bool ok = false;
        for (int i = 0; known[i]; i++) ok |= !strcmp(key, known[i]);
        if (!ok) {
            http_reply_error(req, 400, "invalid", key, "%.64s: unknown field (fields: %s)", key,
                             list);
            return false;
        }
    }
    return true;
}

/* users_post's body: the name (into name) and the role. 0, or -1 after
 * replying 400 naming the field. */
static int read_new_user(HttpRequest *req, json_t *body, char *name, size_t size, bool *admin) {
    static const char *const known[] = {"name", "admin", NULL};
    json_t *n = json_object_get(body, "name"), *a = json_object_get(body, "admin");
    if (!known_fields(req, body, known, "name, admin")) return -1;
    if (!json_is_string(n))
        return http_reply_error(req, 400, "invalid", "name", "name: %s",
                                n ? "expected a string" : "required"), -1;
    if (a && !json_is_boolean(a))
        return http_reply_error(req, 400, "invalid", "admin", "admin: expected true or false"), -1;
    snprintf(name, size, "%s", json_string_value(n));
    *admin = json_is_true(a);
    return 0;
}

int users_post(HttpRequest *req) {
    Api *api = http_app(req);
    json_t *body = http_json_body(req);
    if (!body) return 0;
    char name[DB_USER_NAME_MAX + 2]; /* one more: a longer name is refused, not cut */
    bool admin = false;
    int rc = read_new_user(req, body, name, sizeof name, &admin);
    json_decref(body);
    if (rc != 0) return 0;
    char token[DB_TOKEN_LEN + 1];
    error_clear();
    int st = db_user_create(api->db, name, admin, NULL, token);
    if (st != DB_OK) return api_reply_db(req, st, "name");
    api_audit_detail(req, "user.add", admin ? "admin" : NULL, "user %s", name);
    return reply_user(req, 201, name, token);
}

/* users_patch's body: the quota change. 0, or -1 after replying 400
 * naming the field. */
static int read_quota_change(HttpRequest *req, json_t *body, DbQuota *change) {
    static const char *const known[] = {"quota", NULL};
    if (!known_fields(req, body, known, "quota")) return -1;
    json_t *quota = json_object_get(body, "quota");
    if (!quota) return http_reply_error(req, 400, "invalid", "quota", "quota: required"), -1;
    error_clear();
    if (quota_text_from_json(quota, change) != 0)
        return http_reply_error(req, 400, "invalid", error_last()->path, "%s", error_get()), -1;
    return 0;
}

int users_patch(HttpRequest *req) {
    Api *api = http_app(req);
    json_t *body = http_json_body(req);
    if (!body) return 0;
    DbQuota change;
    int rc = read_quota_change(req, body, &change);
    json_decref(body);
    if (rc != 0) return 0;
    const char *name = http_param(req, 0);
    error_clear();
    int st = db_user_set_quota(api->db, name, &change);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    char detail[256];
    api_audit_detail(req, "user.quota", quota_text_describe(&change, detail, sizeof detail),
                     "user %s", name);
    scheduler_wake(api->sched); /* a job waiting for its owner's limit may start */
    return reply_user(req, 200, name, NULL);
}

int users_revoke(HttpRequest *req) {
    Api *api = http_app(req);
    const char *name = http_param(req, 0);
    /* an admin locking themselves out would leave no one to undo it here */
    if (!strcmp(name, http_auth(req)->name))
        return http_reply_error(req, 409, "conflict", NULL,
                                "%s may not revoke their own token (another admin may, or "
                                "`traind user revoke`)", name);
    error_clear();
    int st = db_user_revoke(api->db, name);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    api_audit(req, "user.revoke", "user %s", name);
    return reply_user(req, 200, name, NULL);
}

int users_rotate(HttpRequest *req) {
    Api *api = http_app(req);
    const char *name = http_param(req, 0);
    char token[DB_TOKEN_LEN + 1];
    error_clear();
    int st = db_user_rotate(api->db, name, token);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    api_audit(req, "user.rotate", "user %s", name);
    return reply_user(req, 200, name, token);
}

int me_get(HttpRequest *req) {
    Api *api = http_app(req);
    DbUser u;
    error_clear();
    int st = db_user_get(api->db, http_auth(req)->user_id, &u);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    json_t *o = user_json(req, &u);
    return o ? http_reply_json(req, 200, o) : 0;
}
