/* dataset_import.c - POST /v1/datasets with a JSON body: an import from
 * URLs, the daemon's `download=True`.
 *
 *   {"name": "mnist-test", "format": "idx",
 *    "urls": {"images": "https://.../t10k-images-idx3-ubyte.gz",
 *             "labels": "https://.../t10k-labels-idx1-ubyte.gz"}}
 *
 * (csv: "urls": {"file": ...} and optional "label_column",
 * "feature_columns"; npy: "inputs" and "targets"). The HTTP thread only
 * checks the body, each URL (http or https, and a numeric host the address
 * policy allows: 422 at once otherwise, path urls.<role>), inserts the
 * dataset in state `importing` and hands it to the importer
 * (server/importer.h): 202 with the dataset, its progress then readable at
 * GET /v1/datasets/{id} and followable at GET /v1/datasets/{id}/events.
 * 429 when the caller already has --imports-per-user imports in progress,
 * or has no byte left of their dataset-byte quota (what is left caps the
 * fetch: server/importer.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json_text.h"
#include "server/api.h"
#include "server/dataset_ingest.h"
#include "server/importer.h"
#include "server/log.h"
#include "server/url_fetch.h"

/* A string field, or NULL when absent; -1 after replying 400 for a wrong
 * type. */
static int string_field(HttpRequest *req, json_t *body, const char *key, const char **out) {
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        http_reply_error(req, 400, "invalid", key, "%s: expected a string", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* Checks the body and fills job (its format, roles and URLs, pointing into
 * body) and the named strings: 1, or 0 after replying (http_reply_error's
 * 0). */
static int check_body(HttpRequest *req, json_t *body, ImportJob *job, const char **name,
                      const char **label_column, const char **feature_columns) {
    Api *api = http_app(req);
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        if (strcmp(key, "name") && strcmp(key, "format") && strcmp(key, "urls") &&
            strcmp(key, "label_column") && strcmp(key, "feature_columns") &&
            strcmp(key, "shared"))
            return http_reply_error(req, 400, "invalid", key,
                                    "%.64s: unknown field (fields: name, format, urls, "
                                    "label_column, feature_columns, shared)", key);
    }
    const char *format;
    if (string_field(req, body, "name", name) || string_field(req, body, "format", &format) ||
        string_field(req, body, "label_column", label_column) ||
        string_field(req, body, "feature_columns", feature_columns))
        return 0;
    if (!*name) return http_reply_error(req, 400, "invalid", "name", "name: required");
    if (!format) return http_reply_error(req, 400, "invalid", "format", "format: required");
    json_t *urls = json_object_get(body, "urls");
    if (!urls)
        return http_reply_error(req, 400, "invalid", "urls",
                                "urls: required (or upload the files as multipart/form-data)");
    if (!json_is_object(urls))
        return http_reply_error(req, 400, "invalid", "urls", "urls: expected an object of role: URL");
    if (db_dataset_name_check(*name) != DB_OK)
        return http_reply_error(req, 422, "invalid", "name", "%s", error_get());
    int nroles = 0;
    const char *const *roles = dataset_ingest_roles(format, &nroles);
    if (!roles)
        return http_reply_error(req, 422, "invalid", "format",
                                "format: unknown format '%.32s' (known: %s)", format,
                                DATASET_INGEST_FORMATS);
    char path[64];
    json_object_foreach(urls, key, v) {
        snprintf(path, sizeof path, "urls.%.32s", key);
        if (!dataset_ingest_role_ok(format, key))
            return http_reply_error(req, 422, "invalid", path,
                                    "%s: format %s takes %s%s%s", path, format, roles[0],
                                    nroles > 1 ? " and " : "", nroles > 1 ? roles[1] : "");
        if (!json_is_string(v))
            return http_reply_error(req, 400, "invalid", path, "%s: expected a URL string", path);
        if (url_fetch_check(json_string_value(v), importer_policy(api->importer)) != 0)
            return http_reply_error(req, 422, "invalid", path, "%s: %s", path, error_get());
    }
    for (int i = 0; i < nroles; i++)
        if (!json_object_get(urls, roles[i])) {
            snprintf(path, sizeof path, "urls.%s", roles[i]);
            return http_reply_error(req, 422, "invalid", path, "%s: required for format %s",
                                    path, format);
        }

    job->format = format;
    for (int i = 0; i < nroles; i++) {
        job->roles[i] = roles[i];
        job->urls[i] = json_string_value(json_object_get(urls, roles[i]));
    }
    job->num_files = nroles;
    return 1;
}

/* The dataset as inserted, in state `importing`: described before the
 * importer has it, so that the 202 says so however fast the import goes.
 * NULL with an error. */
static json_t *describe_new(Db *db, int64_t id, int *st) {
    DbDataset ds;
    if ((*st = db_dataset_import_progress(db, id, 0, 0)) != DB_OK) return NULL;
    if ((*st = db_dataset_get(db, id, &ds)) != DB_OK) return NULL;
    json_t *out = dataset_json(&ds);
    db_dataset_clear(&ds);
    if (!out) error_set("out of memory");
    *st = out ? DB_OK : DB_ERROR;
    return out;
}

int dataset_import(HttpRequest *req, json_t *body) {
    Api *api = http_app(req);
    ImportJob job = {.owner = http_auth(req)->user_id};
    const char *name, *label_column, *feature_columns;
    bool shared;
    if (!check_body(req, body, &job, &name, &label_column, &feature_columns) ||
        api_json_bool(req, body, "shared", &shared) < 0)
        return 0;
    /* a user at their dataset-byte quota has no byte left to fetch */
    if (api_quota_check(req, QUOTA_DATASET_BYTES, 1) != 0) return 0;
    char *options = dataset_ingest_options(label_column, feature_columns, false);
    if (!options) return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    error_clear();
    int st = db_dataset_insert(api->db, name, job.format, options, job.owner, &job.dataset_id);
    if (st != DB_OK) {
        free(options);
        return api_reply_db(req, st, st == DB_CONFLICT || st == DB_INVALID ? "name" : NULL);
    }
    job.options_json = options;
    int held = 0, rc = -1;
    if (shared) st = db_dataset_set_shared(api->db, job.dataset_id, true);
    json_t *out = st == DB_OK ? describe_new(api->db, job.dataset_id, &st) : NULL;
    if (out) rc = importer_submit(api->importer, &job, &held);
    free(options);
    if (rc == 0) {
        char where[64];
        snprintf(where, sizeof where, "/v1/datasets/%lld", (long long)job.dataset_id);
        http_reply_json(req, 202, out);
        http_reply_header(req, "Location", where);
        api_audit(req, "dataset.create", "dataset %lld (%s/%s)", (long long)job.dataset_id,
                  http_auth(req)->name, name);
        return 0;
    }
    json_decref(out);
    char msg[ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", error_get());
    if (db_dataset_delete(api->db, job.dataset_id, NULL, 0) != DB_OK) /* the next start will */
        log_message("import", "dataset %lld: removing it: %s", (long long)job.dataset_id,
                    error_get());
    if (rc == 1)
        return http_reply_error(req, 429, "quota_exceeded", "quota.imports",
                                "%s has %d of %d imports in progress (serve --imports-per-user); "
                                "wait for one to end, or delete one", http_auth(req)->name, held,
                                importer_per_user(api->importer));
    error_set("%s", msg);
    return api_reply_db(req, st != DB_OK ? st : DB_ERROR, NULL);
}

/* An import's state and progress, over what dataset_json says: a failed
 * import is a row still `importing` that has an error. */
void dataset_import_describe(const DbDataset *ds, json_t *out) {
    if (!out || ds->state != DB_DATASET_IMPORTING) return;
    json_object_set_new(out, "state", json_string(ds->error[0] ? "failed" : "importing"));
    json_object_set_new(out, "progress_bytes", json_integer(ds->progress_bytes));
    json_object_set_new(out, "total_bytes", json_integer(ds->total_bytes));
    json_object_set_new(out, "error", ds->error[0] ? json_text(ds->error) : json_null());
}
