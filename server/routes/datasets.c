/* datasets.c - /v1/datasets: create (an upload, dataset_upload.c, or an
 * import from URLs, dataset_import.c), list, describe, delete.
 *
 * A dataset is described by its record: name, format, state, samples, the
 * shape of one sample (dtype and dims of inputs and targets), classes, its
 * files with their sizes and sha256, and a sha256 of the whole (the file's
 * own for a one-file dataset). {id} is the id, the name (the caller's own
 * first, else a shared one) or "user/name".
 *
 * Privacy: a user lists and reads their own datasets and those others have
 * shared ({"shared": true}, set by PATCH or at creation); another user's
 * private dataset answers 404, as one that does not exist. A shared
 * dataset is read-only to the others (403 on PATCH and DELETE). A dataset a
 * queued or running job trains on cannot be deleted (409 in_use).
 */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "server/api.h"
#include "server/dataset_trash.h"

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
    json_t *out = json_pack(
        "{s:I, s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:I, s:o, s:o*, s:o, s:o*, s:s, s:b}", "id",
        (json_int_t)ds->id, "name", ds->name, "format", ds->format, "state",
        ready ? "ready" : ds->state == DB_DATASET_IMPORTING ? "importing" : "uploading", "samples",
        (json_int_t)ds->samples, "inputs",
        sample(ready, s->input_dtype, s->input_ndim, s->input_shape), "targets",
        sample(ready, s->target_dtype, s->target_ndim, s->target_shape), "classes",
        s->num_classes > 0 ? json_integer(s->num_classes) : json_null(), "bytes",
        (json_int_t)ds->bytes, "sha256", ready ? json_string(ds->sha256) : json_null(), "files",
        files, "created_at", api_time(ds->created_at), "options", options, "owner",
        ds->owner_name, "shared", ds->shared);
    dataset_import_describe(ds, out); /* dataset_import.c: failed, progress */
    return out;
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
    int64_t owner;
    if (http_query_bool(req, "all", &all) != 0 || api_user_filter(req, NULL, &owner) != 0) return 0;
    DbDataset *list = NULL;
    int n = 0;
    DbViewer v = api_viewer(req);
    int st = db_dataset_list(api->db, &v, owner, all, &list, &n);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) json_array_append_new(arr, dataset_json(&list[i]));
    db_dataset_list_free(list, n);
    return http_reply_json(req, 200, json_pack("{s:o*}", "datasets", arr));
}

/* {id}: a dataset the caller sees, by id or name; an upload in progress
 * is not one yet (an import is: its progress is what it shows). */
static int resolve(HttpRequest *req, DbDataset *out) {
    Api *api = http_app(req);
    error_clear();
    DbViewer v = api_viewer(req);
    int st = db_dataset_resolve(api->db, &v, http_param(req, 0), out);
    if (st == DB_OK && out->state == DB_DATASET_UPLOADING) {
        db_dataset_clear(out);
        st = DB_NOT_FOUND;
    }
    if (st == DB_CONFLICT) {
        http_reply_error(req, 409, "conflict", NULL, "%s", error_get());
        return -1;
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

/* The DELETE, checked again at each step: 1 once replied, 0 while an
 * import of the dataset lets go of it (asked to stop; its check of the
 * files, if it has begun, is not cut short). */
static int delete_step(HttpRequest *req) {
    Api *api = http_app(req);
    DbDataset ds;
    if (resolve(req, &ds) != 0) return 1;
    int64_t id = ds.id, owner = ds.owner;
    db_dataset_clear(&ds);
    if (api_check_owner(req, owner, "dataset", id) != 0) return 1;
    int jobs = 0;
    int64_t job = 0;
    int st = db_dataset_jobs(api->db, id, &jobs, &job);
    if (st != DB_OK) {
        api_reply_db(req, st, NULL);
        return 1;
    }
    if (jobs > 0) {
        /* another user's job on a shared dataset is not named to the owner */
        DbJob j;
        char which[64] = "another user's";
        if (db_job_get(api->db, job, &j) == DB_OK) {
            if (api_owns(req, j.owner)) snprintf(which, sizeof which, "job %lld", (long long)job);
            db_job_clear(&j);
        }
        http_reply_error(req, 409, "in_use", NULL,
                         "dataset %lld is used by %d queued or running job%s (%s); %s first",
                         (long long)id, jobs, jobs == 1 ? "" : "s", which,
                         jobs == 1 ? "it must end or be cancelled"
                                   : "they must end or be cancelled");
        return 1;
    }
    if (importer_cancel_ask(api->importer, id)) return 0; /* an import stops first */
    char trash[4400];
    st = db_dataset_claim_delete(api->db, id);
    if (st == DB_OK) st = db_dataset_delete(api->db, id, trash, sizeof trash);
    if (st == DB_CONFLICT) /* a job submitted since the check above */
        http_reply_error(req, 409, "in_use", NULL, "%s", error_get());
    else if (st == DB_NOT_FOUND) /* another DELETE took it since resolve */
        http_reply_error(req, 404, "not_found", NULL, "no dataset '%.64s'", http_param(req, 0));
    else if (st != DB_OK)
        api_reply_db(req, st, NULL);
    else {
        if (trash[0]) dataset_trash_remove(trash);
        api_audit(req, "dataset.delete", "dataset %lld (%s/%s)", (long long)id, ds.owner_name,
                  ds.name);
        http_reply_json(req, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id, "deleted", 1));
    }
    return 1;
}

/* Replied at once, or later once an import of it has stopped: the HTTP
 * thread does not wait for it. */
int datasets_delete(HttpRequest *req) {
    return delete_step(req) ? 0 : http_reply_later(req, delete_step);
}

/* PATCH {"shared": true|false}: the owner (or an admin) shares a dataset
 * with every user, read-only, or takes it back. */
int datasets_patch(HttpRequest *req) {
    Api *api = http_app(req);
    json_t *body = http_json_body(req);
    if (!body) return 0;
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        if (strcmp(key, "shared") != 0) {
            http_reply_error(req, 400, "invalid", key, "%s: unknown field (known: shared)", key);
            json_decref(body);
            return 0;
        }
    }
    bool value;
    int have = api_json_bool(req, body, "shared", &value);
    json_decref(body);
    if (have < 0) return 0;
    if (have == 0) return http_reply_error(req, 400, "invalid", "shared", "shared: required");
    DbDataset ds;
    if (resolve(req, &ds) != 0) return 0;
    int64_t id = ds.id, owner = ds.owner;
    db_dataset_clear(&ds);
    if (api_check_owner(req, owner, "dataset", id) != 0) return 0;
    int st = db_dataset_set_shared(api->db, id, value);
    if (st != DB_OK || (st = db_dataset_get(api->db, id, &ds)) != DB_OK)
        return api_reply_db(req, st, NULL);
    api_audit(req, value ? "dataset.share" : "dataset.unshare",
              "dataset %lld (%s/%s)", (long long)id, ds.owner_name, ds.name);
    json_t *out = dataset_json(&ds);
    db_dataset_clear(&ds);
    return http_reply_json(req, 200, out);
}

int datasets_resolve(HttpRequest *req, DbDataset *out) { return resolve(req, out); }
