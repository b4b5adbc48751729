/* remote_spec.c - a stored spec with its datasets and init resolved to
 * files; see remote_spec.h. */
#include "server/remote_spec.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "job/build.h"

/* json_string of the file of `role` of the record, or NULL with an error. */
static json_t *file_of(Db *db, const DbDataset *rec, const char *role) {
    char path[4400];
    if (db_dataset_file_path(db, rec, role, path, sizeof path) != 0) return NULL;
    return json_string(path);
}

/* Sets key to v (taking it); -1 when v is NULL (its error set). */
static int put(json_t *o, const char *key, json_t *v) {
    if (!v) return *error_get() ? -1 : error_set("out of memory");
    return json_object_set_new(o, key, v) == 0 ? 0 : error_set("out of memory");
}

/* The files of a record, by format, into the inline source o. */
static int put_files(Db *db, const DbDataset *rec, json_t *o) {
    const char *f = rec->format;
    if (!strcmp(f, "idx"))
        return put(o, "images", file_of(db, rec, "images")) ||
               put(o, "labels", file_of(db, rec, "labels"));
    if (!strcmp(f, "npy"))
        return put(o, "inputs", file_of(db, rec, "inputs")) ||
               put(o, "targets", file_of(db, rec, "targets"));
    if (!strcmp(f, "csv") || job_build_is_tokens(f)) return put(o, "path", file_of(db, rec, "file"));
    if (!strcmp(f, "imagefolder")) {
        char root[4400];
        if (job_build_imagefolder_root(db, rec->id, root, sizeof root) != 0) return -1;
        return put(o, "root", json_string(root));
    }
    if (!strcmp(f, "cifar10")) {
        char dir[4096], path[4400];
        json_t *files = json_array();
        if (db_dataset_dir(db, rec->id, dir, sizeof dir) != 0 || put(o, "files", files)) return -1;
        for (int i = 0; i < rec->num_files; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, rec->files[i].name);
            if (!strcmp(rec->files[i].role, "file") && json_array_append_new(files, json_string(path)))
                return error_set("out of memory");
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
static int resolve_source(Db *db, json_t *data, const char *field, int64_t id) {
    json_t *src = json_object_get(data, field);
    if (!src || json_is_null(src)) return 0;
    DbDataset rec;
    if (id <= 0 || db_dataset_get(db, id, &rec) != DB_OK)
        return error_set("data.%s: dataset %lld: %s", field, (long long)id,
                         id <= 0 ? "not recorded at submission" : error_get());
    json_t *o = json_pack("{s:s}", "format", rec.format);
    int rc = o ? 0 : error_set("out of memory");
    if (rc == 0) rc = put_files(db, &rec, o);
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

/* `init`: a checkpoint id -> its model.safetensors. */
static int resolve_init(Db *db, json_t *spec) {
    const char *init = json_string_value(json_object_get(spec, "init"));
    if (!init) return 0;
    DbCheckpoint c;
    char path[4400];
    if (db_checkpoint_get(db, strtoll(init, NULL, 10), &c) != DB_OK ||
        db_checkpoint_file_path(db, &c, "model.safetensors", path, sizeof path) != DB_OK)
        return error_prefix("init");
    return put(spec, "init", json_string(path));
}

char *remote_spec_json(Db *db, const DbJob *job) {
    json_error_t jerr;
    json_t *spec = json_loads(job->spec_json ? job->spec_json : "", 0, &jerr);
    if (!json_is_object(spec)) {
        json_decref(spec);
        error_set("job %lld: its stored spec does not parse: %s", (long long)job->id, jerr.text);
        return NULL;
    }
    json_t *data = json_object_get(spec, "data");
    char *text = NULL;
    if ((!data || (resolve_source(db, data, "train", job->train_dataset) == 0 &&
                   resolve_source(db, data, "val", job->val_dataset) == 0)) &&
        resolve_init(db, spec) == 0) {
        text = json_dumps(spec, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!text) error_set("out of memory");
    }
    json_decref(spec);
    return text;
}
