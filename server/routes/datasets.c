/* datasets.c - /v1/datasets: create (an upload, dataset_upload.c, or an
 * import from URLs, dataset_import.c), list, describe, delete.
 *
 * A dataset is described by its record: name, format, state, samples, the
 * shape of one sample (dtype and dims of inputs and targets), classes, its
 * files with their sizes and sha256, and a sha256 of the whole (the file's
 * own for a one-file dataset). {id} is the id or the name.
 */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "server/api.h"

static json_t *dims(int ndim, const int64_t *shape) {
    json_t *a = json_array();
    for (int i = 0; a && i < ndim; i++) json_array_append_new(a, json_integer(shape[i]));
    return a;
}

/* One sample's dtype and dims; null until the files are checked (an upload
 * in progress has neither). */
static json_t *sample(bool ready, const char *dtype, int ndim, const int64_t *shape) {
    if (!ready) return json_null();
    return json_pack("{s:s, s:o}", "dtype", dtype, "shape", dims(ndim, shape));
}

json_t *dataset_json(const DbDataset *ds) {
    json_t *files = db_dataset_files_json(ds);
    json_error_t jerr;
    json_t *options = json_loads(ds->options_json ? ds->options_json : "{}", 0, &jerr);
    const DbSampleShape *s = &ds->shape;
    bool ready = ds->state == DB_DATASET_READY;
    return json_pack(
        "{s:I, s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:I, s:o, s:o*, s:o, s:o*}", "id",
        (json_int_t)ds->id, "name", ds->name, "format", ds->format, "state",
        ready ? "ready" : "uploading", "samples", (json_int_t)ds->samples, "inputs",
        sample(ready, s->input_dtype, s->input_ndim, s->input_shape), "targets",
        sample(ready, s->target_dtype, s->target_ndim, s->target_shape), "classes",
        s->num_classes > 0 ? json_integer(s->num_classes) : json_null(), "bytes",
        (json_int_t)ds->bytes, "sha256", ready ? json_string(ds->sha256) : json_null(), "files",
        files, "created_at", api_time(ds->created_at), "options", options);
}

int datasets_post(HttpRequest *req) {
    if (http_state(req)) return dataset_upload_finish(req);
    json_t *body = http_json_body(req);
    if (!body) return 0;
    int rc = dataset_import(req, body);
    json_decref(body);
    return rc;
}

int datasets_list(HttpRequest *req) {
    Api *api = http_app(req);
    bool all = false;
    if (http_query_bool(req, "all", &all) != 0) return 0;
    DbDataset *list = NULL;
    int n = 0;
    int st = db_dataset_list(api->db, all, &list, &n);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) json_array_append_new(arr, dataset_json(&list[i]));
    db_dataset_list_free(list, n);
    return http_reply_json(req, 200, json_pack("{s:o*}", "datasets", arr));
}

/* {id}: a dataset id or name; only ready ones are visible. */
static int resolve(HttpRequest *req, DbDataset *out) {
    Api *api = http_app(req);
    error_clear();
    int st = db_dataset_resolve(api->db, http_param(req, 0), out);
    if (st == DB_OK && out->state != DB_DATASET_READY) {
        db_dataset_clear(out);
        st = DB_NOT_FOUND;
        error_set("dataset '%.64s' is still uploading", http_param(req, 0));
    }
    if (st == DB_NOT_FOUND || st == DB_INVALID) {
        http_reply_error(req, 404, "not_found", NULL, "no dataset '%.64s'", http_param(req, 0));
        return -1;
    }
    if (st != DB_OK) {
        api_reply_db(req, st, NULL);
        return -1;
    }
    return 0;
}

int datasets_get(HttpRequest *req) {
    DbDataset ds;
    if (resolve(req, &ds) != 0) return 0;
    json_t *body = dataset_json(&ds);
    db_dataset_clear(&ds);
    return http_reply_json(req, 200, body);
}

int datasets_delete(HttpRequest *req) {
    Api *api = http_app(req);
    DbDataset ds;
    if (resolve(req, &ds) != 0) return 0;
    int64_t id = ds.id, owner = ds.owner;
    db_dataset_clear(&ds);
    if (api_check_owner(req, owner, "dataset", id) != 0) return 0;
    int st = db_dataset_delete(api->db, id);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    return http_reply_json(req, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id, "deleted", 1));
}
