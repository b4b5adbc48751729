/* remote_spec.c - a stored spec with its datasets and init resolved to
 * files; see remote_spec.h. */
#include "server/remote_spec.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "job/build.h"

/* What resolving one spec needs: where its files are named. */
typedef struct {
    Db *db;
    const DbJob *job;
    RemoteSpecFetch *fetch; /* NULL: the data dir's paths */
    json_t *manifest;       /* with fetch: the manifest's files */
} Resolver;

/* Sets key to v (taking it); -1 when v is NULL (its error set). */
static int put(json_t *o, const char *key, json_t *v) {
    if (!v) return *error_get() ? -1 : error_set("out of memory");
    return json_object_set_new(o, key, v) == 0 ? 0 : error_set("out of memory");
}

/* The manifest's entry for file f of the record, once: train and val
 * may be one dataset. */
static int manifest_add(Resolver *r, const DbDataset *rec, const DbDatasetFile *f,
                        const char *rel) {
    size_t i;
    json_t *e;
    json_array_foreach(r->manifest, i, e) {
        if (!strcmp(json_string_value(json_object_get(e, "path")), rel)) return 0;
    }
    char url[2400];
    snprintf(url, sizeof url, "%s/v1/jobs/%lld/attempts/%d/datasets/%lld/%s", r->fetch->base_url,
             (long long)r->job->id, r->fetch->attempt, (long long)rec->id, f->name);
    e = json_pack("{s:I, s:s, s:s, s:s, s:I, s:s}", "dataset", (json_int_t)rec->id, "file",
                  f->name, "path", rel, "url", url, "bytes", (json_int_t)f->bytes, "sha256",
                  f->sha256);
    return e && json_array_append_new(r->manifest, e) == 0 ? 0 : error_set("out of memory");
}

/* json_string of file f of the record: its path in the data dir, or in
 * the cache (its manifest entry added). NULL with an error. */
static json_t *file_at(Resolver *r, const DbDataset *rec, const DbDatasetFile *f) {
    char path[4400], rel[256];
    if (!r->fetch) {
        char dir[4096];
        if (db_dataset_dir(r->db, rec->id, dir, sizeof dir) != 0) return NULL;
        snprintf(path, sizeof path, "%s/%s", dir, f->name);
        return json_string(path);
    }
    if (strlen(f->sha256) != 64)
        return error_set("dataset '%s': file '%s' has no recorded sha256 to fetch it by",
                         rec->name, f->name),
               NULL;
    snprintf(rel, sizeof rel, "%s/%s", f->sha256, f->name);
    if (manifest_add(r, rec, f, rel) != 0) return NULL;
    snprintf(path, sizeof path, "%s/%s", r->fetch->cache, rel);
    return json_string(path);
}

/* json_string of the file of `role` of the record, or NULL with an error. */
static json_t *file_of(Resolver *r, const DbDataset *rec, const char *role) {
    for (int i = 0; i < rec->num_files; i++)
        if (!strcmp(rec->files[i].role, role)) return file_at(r, rec, &rec->files[i]);
    error_set("dataset '%s': no '%s' file", rec->name, role);
    return NULL;
}

/* The files of a record, by format, into the inline source o. */
static int put_files(Resolver *r, const DbDataset *rec, json_t *o) {
    const char *f = rec->format;
    if (!strcmp(f, "idx"))
        return put(o, "images", file_of(r, rec, "images")) ||
               put(o, "labels", file_of(r, rec, "labels"));
    if (!strcmp(f, "npy"))
        return put(o, "inputs", file_of(r, rec, "inputs")) ||
               put(o, "targets", file_of(r, rec, "targets"));
    if (!strcmp(f, "csv") || job_build_is_tokens(f)) return put(o, "path", file_of(r, rec, "file"));
    if (!strcmp(f, "imagefolder")) {
        if (r->fetch)
            return error_set("dataset '%s' is an image folder (a directory of many files): "
                             "datasets = fetch does not fetch image folders; give the nodes "
                             "the data dir (datasets = shared)",
                             rec->name);
        char root[4400];
        if (job_build_imagefolder_root(r->db, rec->id, root, sizeof root) != 0) return -1;
        return put(o, "root", json_string(root));
    }
    if (!strcmp(f, "cifar10")) {
        json_t *files = json_array();
        if (put(o, "files", files)) return -1;
        for (int i = 0; i < rec->num_files; i++) {
            if (strcmp(rec->files[i].role, "file") != 0) continue;
            json_t *path = file_at(r, rec, &rec->files[i]);
            if (!path) return -1;
            if (json_array_append_new(files, path)) return error_set("out of memory");
        }
        return 0;
    }
    return error_set("unknown format '%s'", f);
}

/* The record's options an inline source takes: a CSV's columns, an image
 * folder's grayscale. */
static int put_options(const DbDataset *rec, json_t *o) {
    json_t *opts = json_loads(rec->options_json ? rec->options_json : "{}", 0, NULL);
    static const char *const keys[] = {"label_column", "feature_columns", "grayscale"};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        json_t *v = json_object_get(opts, keys[i]);
        bool wanted = !strcmp(rec->format, i < 2 ? "csv" : "imagefolder");
        if (v && !json_is_null(v) && wanted) rc = put(o, keys[i], json_incref(v));
    }
    json_decref(opts);
    return rc;
}

/* data.<field>: a name (or {"name": ..., token options}) -> the inline
 * source of dataset `id`. */
static int resolve_source(Resolver *r, json_t *data, const char *field, int64_t id) {
    json_t *src = json_object_get(data, field);
    if (!src || json_is_null(src)) return 0;
    DbDataset rec;
    if (id <= 0 || db_dataset_get(r->db, id, &rec) != DB_OK)
        return error_set("data.%s: dataset %lld: %s", field, (long long)id,
                         id <= 0 ? "not recorded at submission" : error_get());
    json_t *o = json_pack("{s:s}", "format", rec.format);
    int rc = o ? 0 : error_set("out of memory");
    if (rc == 0) rc = put_files(r, &rec, o);
    if (rc == 0) rc = put_options(&rec, o);
    if (rc == 0 && json_is_object(src)) { /* token options */
        const char *key;
        json_t *v;
        json_object_foreach(src, key, v) {
            if (strcmp(key, "name") != 0 && rc == 0) rc = put(o, key, json_incref(v));
        }
    }
    db_dataset_clear(&rec);
    if (rc != 0) {
        json_decref(o);
        return error_prefix("data.%s", field);
    }
    return put(data, field, o);
}

/* `init`: a checkpoint id, as a number or a string of digits (the spec
 * takes both) -> its model.safetensors. */
static int resolve_init(Resolver *r, json_t *spec) {
    json_t *v = json_object_get(spec, "init");
    char digits[32];
    if (json_is_integer(v))
        snprintf(digits, sizeof digits, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    const char *init = json_is_integer(v) ? digits : json_string_value(v);
    if (!init) return 0;
    if (r->fetch)
        return error_set("init: datasets = fetch does not fetch the checkpoint a job starts "
                         "from; give the nodes the data dir (datasets = shared)");
    DbCheckpoint c;
    char path[4400];
    if (db_checkpoint_get(r->db, strtoll(init, NULL, 10), &c) != DB_OK ||
        db_checkpoint_file_path(r->db, &c, "model.safetensors", path, sizeof path) != DB_OK)
        return error_prefix("init");
    return put(spec, "init", json_string(path));
}

/* The manifest as JSON text into fetch->manifest. */
static int manifest_text(Resolver *r) {
    json_t *m = json_pack("{s:s, s:O}", "cache", r->fetch->cache, "files", r->manifest);
    r->fetch->manifest = m ? json_dumps(m, JSON_INDENT(2)) : NULL;
    json_decref(m);
    return r->fetch->manifest ? 0 : error_set("out of memory");
}

char *remote_spec_json(Db *db, const DbJob *job, RemoteSpecFetch *fetch) {
    Resolver r = {.db = db, .job = job, .fetch = fetch};
    if (fetch) {
        fetch->manifest = NULL;
        if (!(r.manifest = json_array())) return error_set("out of memory"), NULL;
    }
    json_error_t jerr;
    json_t *spec = json_loads(job->spec_json ? job->spec_json : "", 0, &jerr);
    char *text = NULL;
    if (!json_is_object(spec)) {
        error_set("job %lld: its stored spec does not parse: %s", (long long)job->id, jerr.text);
        goto done;
    }
    json_t *data = json_object_get(spec, "data");
    if ((!data || (resolve_source(&r, data, "train", job->train_dataset) == 0 &&
                   resolve_source(&r, data, "val", job->val_dataset) == 0)) &&
        resolve_init(&r, spec) == 0 && (!fetch || manifest_text(&r) == 0)) {
        text = json_dumps(spec, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!text) error_set("out of memory");
    }
done:
    json_decref(spec);
    json_decref(r.manifest);
    if (!text && fetch) {
        free(fetch->manifest);
        fetch->manifest = NULL;
    }
    return text;
}
