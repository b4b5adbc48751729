/* api.c - the v1 route table and the helpers the route files share; see
 * api.h. The table is design.md "HTTP API (v1)", in its order. */
#include "server/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

const HttpRoute api_routes[] = {
    {"GET", "/v1/health", health_get, HTTP_ROUTE_PUBLIC, NULL},
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
    {"POST", "/v1/jobs/{id}/cancel", jobs_cancel, 0, NULL},
    {"GET", "/v1/jobs/{id}/metrics", metrics_get, 0, NULL},
    {"GET", "/v1/jobs/{id}/logs", logs_get, 0, NULL},
    {"GET", "/v1/jobs/{id}/checkpoints", checkpoints_list, 0, NULL},
    {"GET", "/v1/jobs/{id}/checkpoints/{n}", checkpoints_get, 0, NULL},
    {"GET", "/metrics", prometheus_get, 0, NULL},
};
const int api_num_routes = (int)(sizeof api_routes / sizeof api_routes[0]);

int api_authenticate(void *app, const char *token, HttpAuth *out) {
    Api *api = app;
    DbUser u;
    int st = db_user_by_token(api->db, token, &u, NULL);
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
    default: return http_reply_error(req, 503, "unavailable", path, "%s", msg);
    }
}

int64_t api_param_id(HttpRequest *req, int i, const char *what) {
    const char *s = http_param(req, i);
    char *end;
    long long id = strtoll(s, &end, 10);
    if (!*s || *end || id <= 0 || s[0] == '+' || s[0] == ' ') {
        http_reply_error(req, 404, "not_found", NULL, "%s '%.64s' does not exist (ids are "
                                                      "positive integers)", what, s);
        return -1;
    }
    return id;
}

int64_t api_job_param(HttpRequest *req, DbJob *out) {
    Api *api = http_app(req);
    int64_t id = api_param_id(req, 0, "job");
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

int api_user_filter(HttpRequest *req, int64_t *owner) {
    Api *api = http_app(req);
    const HttpAuth *a = http_auth(req);
    const char *name = http_query(req, "user");
    *owner = 0;
    if (!name) return 0;
    if (strcmp(name, a->name) == 0) {
        *owner = a->user_id;
        return 0;
    }
    DbUser u;
    error_clear();
    int st = db_user_get_by_name(api->db, name, &u);
    if (st == DB_NOT_FOUND)
        return http_reply_error(req, 400, "bad_query", "?user", "user: no user '%.64s'", name),
               -1;
    if (st != DB_OK) return api_reply_db(req, st, "?user"), -1;
    *owner = u.id;
    return 0;
}

int api_quota_check(HttpRequest *req, QuotaLimit k, int64_t adding) {
    Api *api = http_app(req);
    DbQuota q;
    DbUsage held;
    char name[DB_USER_NAME_MAX + 1], msg[256], path[64];
    error_clear();
    int st = quota_lookup(api->db, http_auth(req)->user_id, &api->quota_defaults, &q, &held, name,
                          sizeof name);
    if (st != DB_OK) return api_reply_db(req, st, NULL), -1;
    if (quota_allows(name, &q, k, quota_holding(&held, k), adding, msg, sizeof msg)) return 0;
    snprintf(path, sizeof path, "quota.%s", quota_limit_name(k));
    http_reply_error(req, 429, "quota_exceeded", path, "%s", msg);
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
