/* api.c - the v1 route table and the helpers the route files share; see
 * api.h. The table is design.md "HTTP API (v1)", in its order. */
#include "server/api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/disk_space.h"
#include "server/log.h"
#include "server/metrics_token.h"

const HttpRoute api_routes[] = {
    {"GET", "/v1/health", health_get, HTTP_ROUTE_PUBLIC, NULL},
    {"GET", "/", web_index, HTTP_ROUTE_PUBLIC, NULL},
    {"GET", "/assets/{name}", web_asset, HTTP_ROUTE_PUBLIC, NULL},
    {"GET", "/v1/devices", devices_get, 0, NULL},
    {"POST", "/v1/datasets", datasets_post, 0, &datasets_upload_body},
    {"GET", "/v1/datasets", datasets_list, 0, NULL},
    {"GET", "/v1/datasets/{id}", datasets_get, 0, NULL},
    {"DELETE", "/v1/datasets/{id}", datasets_delete, 0, NULL},
    {"PATCH", "/v1/datasets/{id}", datasets_patch, 0, NULL},
    {"GET", "/v1/datasets/{id}/events", dataset_events_get, 0, NULL},
    {"POST", "/v1/jobs", jobs_post, 0, NULL},
    {"GET", "/v1/jobs", jobs_list, 0, NULL},
    {"GET", "/v1/jobs/{id}", jobs_get, 0, NULL},
    {"PATCH", "/v1/jobs/{id}", jobs_patch, 0, NULL},
    {"POST", "/v1/jobs/{id}/cancel", jobs_cancel, 0, NULL},
    {"GET", "/v1/queue", queue_get, 0, NULL},
    {"GET", "/v1/jobs/{id}/metrics", metrics_get, 0, NULL},
    {"GET", "/v1/jobs/{id}/logs", logs_get, 0, NULL},
    {"GET", "/v1/jobs/{id}/checkpoints", checkpoints_list, 0, NULL},
    {"GET", "/v1/jobs/{id}/checkpoints/{n}", checkpoints_get, 0, NULL},
    /* the ranks of an attempt run outside the daemon, with its token */
    {"POST", "/v1/jobs/{id}/attempts/{n}/report", job_report_post, HTTP_ROUTE_OWN_AUTH, NULL},
    {"PUT", "/v1/jobs/{id}/attempts/{n}/checkpoints/{epoch}", job_checkpoint_put,
     HTTP_ROUTE_OWN_AUTH, &job_checkpoint_body},
    {"GET", "/v1/jobs/{id}/attempts/{n}/resume", job_resume_get, HTTP_ROUTE_OWN_AUTH, NULL},
    {"GET", "/v1/jobs/{id}/attempts/{n}/resume/{file}", job_resume_file_get, HTTP_ROUTE_OWN_AUTH,
     NULL},
    {"GET", "/v1/jobs/{id}/attempts/{n}/datasets/{dataset}/{file}", job_dataset_file_get,
     HTTP_ROUTE_OWN_AUTH, NULL},
    {"POST", "/v1/jobs/{id}/attempts/{n}/end", job_end_post, HTTP_ROUTE_OWN_AUTH, NULL},
    {"GET", "/v1/me", me_get, 0, NULL},
    {"GET", "/v1/users", users_list, HTTP_ROUTE_ADMIN, NULL},
    {"POST", "/v1/users", users_post, HTTP_ROUTE_ADMIN, NULL},
    {"PATCH", "/v1/users/{name}", users_patch, HTTP_ROUTE_ADMIN, NULL},
    {"POST", "/v1/users/{name}/revoke", users_revoke, HTTP_ROUTE_ADMIN, NULL},
    {"POST", "/v1/users/{name}/rotate", users_rotate, HTTP_ROUTE_ADMIN, NULL},
    {"GET", "/v1/audit", audit_get, HTTP_ROUTE_ADMIN, NULL},
    {"GET", "/metrics", prometheus_get, HTTP_ROUTE_ADMIN | HTTP_ROUTE_SCRAPE, NULL},
};
const int api_num_routes = (int)(sizeof api_routes / sizeof api_routes[0]);

void api_set_metrics_token(Api *api, const char *sha256_hex) {
    pthread_mutex_lock(&api->metrics_token_lock);
    snprintf(api->metrics_token_sha256, sizeof api->metrics_token_sha256, "%s", sha256_hex);
    pthread_mutex_unlock(&api->metrics_token_lock);
}

static bool is_metrics_token(Api *api, const char *token) {
    char sha256_hex[SHA256_HEX_LEN + 1];
    pthread_mutex_lock(&api->metrics_token_lock);
    memcpy(sha256_hex, api->metrics_token_sha256, sizeof sha256_hex);
    pthread_mutex_unlock(&api->metrics_token_lock);
    return metrics_token_matches(sha256_hex, token);
}

int api_authenticate(void *app, const char *token, HttpAuth *out) {
    Api *api = app;
    if (is_metrics_token(api, token)) {
        /* no user: "(...)" is no user's name, for the request log */
        *out = (HttpAuth){.scrape = true};
        snprintf(out->name, sizeof out->name, "(metrics token)");
        return 1;
    }
    DbUser u;
    int st = db_user_by_token(api->db, token, &u, out->token_sha256);
    if (st == DB_NOT_FOUND || st == DB_INVALID) return 0;
    if (st != DB_OK) return -1;
    out->user_id = u.id;
    out->admin = u.admin;
    snprintf(out->name, sizeof out->name, "%s", u.name);
    return 1;
}

int api_reply_db(HttpRequest *req, int st, const char *path) {
    const char *msg = *error_get() ? error_get() : "storage failed";
    switch (st) {
    case DB_NOT_FOUND: return http_reply_error(req, 404, "not_found", path, "%s", msg);
    case DB_CONFLICT: return http_reply_error(req, 409, "conflict", path, "%s", msg);
    case DB_INVALID: return http_reply_error(req, 422, "invalid", path, "%s", msg);
    default: {
        int status = api_storage_status(0);
        return http_reply_error(req, status, api_storage_code(status), path, "%s", msg);
    }
    }
}

int api_storage_status(int err) {
    return disk_space_full(err) || disk_space_full(error_last()->sys_errno) ? 507 : 503;
}

const char *api_storage_code(int status) {
    return status == 507 ? "insufficient_storage" : "unavailable";
}

static int64_t param_id(HttpRequest *req, int i, const char *what) {
    const char *s = http_param(req, i);
    char *end;
    errno = 0; /* past INT64_MAX strtoll says ERANGE, and an id it would alias */
    long long id = strtoll(s, &end, 10);
    if (!*s || *end || errno || id <= 0 || s[0] == '+' || s[0] == ' ') {
        http_reply_error(req, 404, "not_found", NULL, "%s '%.64s' does not exist (ids are "
                                                      "positive integers)", what, s);
        return -1;
    }
    return id;
}

int64_t api_job_param(HttpRequest *req, DbJob *out) {
    Api *api = http_app(req);
    int64_t id = param_id(req, 0, "job");
    if (id < 0) return -1;
    DbJob j;
    error_clear();
    int st = db_job_get(api->db, id, &j);
    if (st == DB_OK && !api_owns(req, j.owner)) {
        /* another user's job answers as one that does not exist */
        db_job_clear(&j);
        error_set("job %lld: not found", (long long)id);
        st = DB_NOT_FOUND;
    }
    if (st != DB_OK) {
        api_reply_db(req, st, NULL);
        return -1;
    }
    if (out)
        *out = j;
    else
        db_job_clear(&j);
    return id;
}

DbViewer api_viewer(HttpRequest *req) {
    const HttpAuth *a = http_auth(req);
    return (DbViewer){.user_id = a->user_id, .admin = a->admin};
}

bool api_owns(HttpRequest *req, int64_t owner) {
    const HttpAuth *a = http_auth(req);
    return a->admin || (owner != 0 && owner == a->user_id);
}

int api_user_filter(HttpRequest *req, const char *admin_only, int64_t *owner) {
    Api *api = http_app(req);
    const HttpAuth *a = http_auth(req);
    const char *name = http_query(req, "user");
    *owner = 0;
    if (!name) return 0;
    if (strcmp(name, a->name) == 0) {
        *owner = a->user_id;
        return 0;
    }
    if (admin_only && !a->admin)
        return http_reply_error(req, 403, "forbidden", "?user",
                                "user: only an admin may list another user's %s", admin_only),
               -1;
    DbUser u;
    error_clear();
    int st = db_user_get_by_name(api->db, name, &u);
    if (st == DB_NOT_FOUND && !a->admin) {
        *owner = -1; /* no one's */
        return 0;
    }
    if (st == DB_NOT_FOUND)
        return http_reply_error(req, 400, "bad_query", "?user", "user: no user '%.64s'", name),
               -1;
    if (st != DB_OK) return api_reply_db(req, st, "?user"), -1;
    *owner = u.id;
    return 0;
}

int api_quota_read(Api *api, int64_t user_id, QuotaLimit k, ApiQuota *out) {
    DbUsage held;
    memset(out, 0, sizeof *out);
    out->k = k;
    error_clear();
    int st = quota_lookup(api->db, user_id, &api->quota_defaults, &out->q, &held, out->user,
                          sizeof out->user);
    if (st != DB_OK) return st;
    out->held = quota_holding(&held, k);
    snprintf(out->path, sizeof out->path, "quota.%s", quota_limit_name(k));
    return DB_OK;
}

int api_quota_load(HttpRequest *req, QuotaLimit k, ApiQuota *out) {
    int st = api_quota_read(http_app(req), http_auth(req)->user_id, k, out);
    return st == DB_OK ? 0 : (api_reply_db(req, st, NULL), -1);
}

bool api_quota_fits(const ApiQuota *a, int64_t adding, char *msg, size_t size) {
    return quota_allows(a->user, &a->q, a->k, a->held, adding, msg, size);
}

int api_quota_check(HttpRequest *req, QuotaLimit k, int64_t adding) {
    ApiQuota a;
    char msg[256];
    if (api_quota_load(req, k, &a) != 0) return -1;
    if (api_quota_fits(&a, adding, msg, sizeof msg)) return 0;
    http_reply_error(req, 429, "quota_exceeded", a.path, "%s", msg);
    return -1;
}

bool api_sees_job(HttpRequest *req, int64_t id) {
    if (http_auth(req)->admin) return true;
    DbJob j;
    if (db_job_get(((Api *)http_app(req))->db, id, &j) != DB_OK) return false;
    bool mine = api_owns(req, j.owner);
    db_job_clear(&j);
    return mine;
}

int api_json_bool(HttpRequest *req, json_t *body, const char *key, bool *out) {
    json_t *v = json_object_get(body, key);
    *out = json_is_true(v);
    if (!v) return 0;
    if (json_is_boolean(v)) return 1;
    http_reply_error(req, 400, "invalid", key, "%s: expected true or false", key);
    return -1;
}

int api_check_owner(HttpRequest *req, int64_t owner, const char *what, int64_t id) {
    if (api_owns(req, owner)) return 0;
    http_reply_error(req, 403, "forbidden", NULL,
                     "%s %lld belongs to another user; only its owner or an admin may change it",
                     what, (long long)id);
    return -1;
}

json_t *api_time(int64_t ms) {
    if (ms <= 0) return json_null();
    char buf[40];
    return json_string(db_format_time(ms, buf, sizeof buf));
}

static void audit_v(HttpRequest *req, const char *action, const char *detail, const char *fmt,
                    va_list ap) {
    Api *api = http_app(req);
    char target[160];
    vsnprintf(target, sizeof target, fmt, ap);
    if (db_audit_add(api->db, http_auth(req)->name, action, target, detail) != DB_OK)
        log_message("audit", "%s %s by %s: not written to the audit trail: %s", action, target,
                    http_auth(req)->name, error_get());
}

void api_audit(HttpRequest *req, const char *action, const char *target_fmt, ...) {
    va_list ap;
    va_start(ap, target_fmt);
    audit_v(req, action, NULL, target_fmt, ap);
    va_end(ap);
}

void api_audit_detail(HttpRequest *req, const char *action, const char *detail,
                      const char *target_fmt, ...) {
    va_list ap;
    va_start(ap, target_fmt);
    audit_v(req, action, detail, target_fmt, ap);
    va_end(ap);
}

int api_pending_error(ApiPendingError *e, int status, const char *code, const char *path,
                      const char *fmt, ...) {
    if (e->status) return -1;
    e->status = status;
    snprintf(e->code, sizeof e->code, "%s", code);
    snprintf(e->path, sizeof e->path, "%s", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int api_reply_pending(HttpRequest *req, const ApiPendingError *e) {
    return http_reply_error(req, e->status, e->code, e->path, "%s", e->msg);
}
