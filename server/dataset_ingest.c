/* dataset_ingest.c - validate arrived files by loading them; see
 * dataset_ingest.h. */
#include "server/dataset_ingest.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/data/dataset.h"
#include "core/error.h"
#include "core/json_text.h"
#include "core/spec.h"
#include "job/build.h"
#include "server/dataset_archive.h"
#include "server/disk_space.h"

static const char *const IDX_ROLES[] = {"images", "labels"};
static const char *const CSV_ROLES[] = {"file"};
static const char *const NPY_ROLES[] = {"inputs", "targets"};
static const char *const IMAGEFOLDER_ROLES[] = {"archive"};
static const char *const CIFAR10_ROLES[] = {"file"}; /* one or several batches */

const char *const *dataset_ingest_roles(const char *format, int *n) {
    if (!format) return NULL;
    if (!strcmp(format, "idx")) return *n = 2, IDX_ROLES;
    if (!strcmp(format, "csv")) return *n = 1, CSV_ROLES;
    if (!strcmp(format, "npy")) return *n = 2, NPY_ROLES;
    if (!strcmp(format, "tokens") || !strcmp(format, "text")) return *n = 1, CSV_ROLES;
    if (!strcmp(format, "imagefolder")) return *n = 1, IMAGEFOLDER_ROLES;
    if (!strcmp(format, "cifar10")) return *n = 1, CIFAR10_ROLES;
    return NULL;
}

bool dataset_ingest_role_repeats(const char *format, const char *role) {
    return format && !strcmp(format, "cifar10") && !strcmp(role, "file");
}

bool dataset_ingest_role_ok(const char *format, const char *role) {
    int n = 0;
    const char *const *roles = dataset_ingest_roles(format, &n);
    for (int i = 0; roles && i < n; i++)
        if (!strcmp(roles[i], role)) return true;
    return false;
}

static bool name_taken(const DbDatasetFile *files, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(files[i].name, name)) return true;
    return false;
}

void dataset_ingest_file_name(const DbDatasetFile *before, int n, const char *role,
                              const char *client_name, char *out, size_t size) {
    const char *base = client_name ? strrchr(client_name, '/') : NULL;
    base = base ? base + 1 : client_name;
    if (base) {
        const char *slash = strrchr(base, '\\'); /* browsers on Windows send C:\x\y */
        if (slash) base = slash + 1;
    }
    bool ok = base && *base && base[0] != '.' && strlen(base) <= 100;
    for (const char *p = base; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
             *p == '.' || *p == '_' || *p == '-';
    snprintf(out, size, "%s", ok ? base : role);
    if (name_taken(before, n, out)) snprintf(out, size, "%s", role);
    for (int k = n + 1; name_taken(before, n, out); k++) snprintf(out, size, "%s-%d", role, k);
}

/* A column name of the form as a JSON string. A form field may hold any
 * bytes: invalid UTF-8 becomes '?' (json_text), so that the name is kept
 * and the loader refuses it, naming it, instead of jansson dropping it and
 * the default columns being used. */
static json_t *column_name(const char *s, size_t len) {
    char *copy = strndup(s, len);
    if (!copy) return NULL;
    json_t *j = json_text(copy);
    free(copy);
    return j;
}

char *dataset_ingest_options(const char *label_column, const char *feature_columns,
                             bool grayscale) {
    json_t *o = json_object();
    bool ok = o != NULL;
    if (ok && grayscale) ok = json_object_set_new(o, "grayscale", json_true()) == 0;
    if (ok && label_column && *label_column)
        ok = json_object_set_new(o, "label_column",
                                 column_name(label_column, strlen(label_column))) == 0;
    if (ok && feature_columns && *feature_columns) {
        json_t *cols = json_array();
        ok = json_object_set_new(o, "feature_columns", cols) == 0;
        for (const char *p = feature_columns; ok && *p;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            const char *next = p + len + (comma ? 1 : 0);
            while (len && *p == ' ') p++, len--;
            while (len && p[len - 1] == ' ') len--;
            if (len) ok = json_array_append_new(cols, column_name(p, len)) == 0;
            p = next;
        }
    }
    char *text = ok ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return text;
}

/* The files as their format says (core/data checks magic numbers, counts
 * and shapes). A CSV's label column holds integer labels
 * (classification) or, failing that, float targets (regression). When
 * both readings fail on the same fault it is said once; else both are
 * (a float label on line 2 and a bad feature on line 1000: the second is
 * what keeps the file from loading either way). */
static Dataset *load(Db *db, const DbDataset *info) {
    Dataset *ds = job_build_load_dataset(db, info, false);
    if (ds || strcmp(info->format, "csv") != 0) return ds;
    Error labels = *error_last();
    ds = job_build_load_dataset(db, info, true);
    if (!ds && strcmp(labels.message, error_get()) != 0)
        error_prefix("%s; read as regression targets", labels.message);
    return ds;
}

/* The owner's quota, and the dataset bytes they hold besides this
 * dataset: their holdings count what uploads and imports in progress have
 * stored (their rows' progress), this one's too, which its own checks
 * must not count twice. */
static int owner_quota(const DatasetIngest *in, DbQuota *q, int64_t *others, char *user,
                       size_t size) {
    DbUsage held;
    DbDataset self;
    int st = quota_lookup(in->db, in->owner, in->quota_defaults, q, &held, user, size);
    if (st == DB_OK) st = db_dataset_get(in->db, in->id, &self);
    if (st != DB_OK) return st;
    *others = quota_holding(&held, QUOTA_DATASET_BYTES) -
              (self.state == DB_DATASET_READY ? self.bytes
               : self.error[0]                ? 0
                                              : self.progress_bytes);
    db_dataset_clear(&self);
    return DB_OK;
}

/* Under ready_lock: the owner's quota against the ready datasets, then the
 * row made ready. */
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;

static DatasetIngestResult mark_ready(const DatasetIngest *in, const DbDataset *info) {
    DbQuota q;
    int64_t others = 0;
    char user[DB_USER_NAME_MAX + 1], msg[256];
    pthread_mutex_lock(&ready_lock);
    DatasetIngestResult r = DATASET_INGEST_STORAGE;
    int st = in->owner > 0 ? owner_quota(in, &q, &others, user, sizeof user)
                           : DB_OK; /* no owner, no quota */
    if (st == DB_OK && in->owner > 0 &&
        !quota_allows(user, &q, QUOTA_DATASET_BYTES, others, info->bytes, msg, sizeof msg)) {
        error_set("%s", msg);
        error_set_path("quota.dataset_bytes");
        r = DATASET_INGEST_OVER_QUOTA;
    } else if (st == DB_OK && db_dataset_mark_ready(in->db, in->id, info) == DB_OK)
        r = DATASET_INGEST_OK;
    pthread_mutex_unlock(&ready_lock);
    return r;
}

/* core/data's messages start with the file's full path: keep only its
 * name, the data dir is none of the client's business. */
static void strip_data_dir(Db *db, int64_t id) {
    char dir[4096], msg[ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", error_get());
    if (db_dataset_dir(db, id, dir, sizeof dir) == DB_OK) {
        size_t n = strlen(dir);
        char *p;
        while ((p = strstr(msg, dir)) != NULL) {
            size_t skip = n + (p[n] == '/');
            memmove(p, p + skip, strlen(p + skip) + 1);
        }
    }
    error_set("%s", msg);
}

/* A token dataset's record: its tokens as samples, no sample shape yet
 * (a job's block_size gives it), and a text's vocabulary in its options
 * (a new string into *options, NULL when it has none). -1 when out of
 * memory. */
static int token_record(const Dataset *ds, const char *options_json, DbDataset *info,
                        char **options) {
    info->samples = ds->tokens;
    info->shape.input_ndim = info->shape.target_ndim = 0;
    *options = NULL;
    if (!ds->vocab) return 0;
    json_t *o = json_loads(options_json ? options_json : "{}", 0, NULL);
    if (!o || json_object_set_new(o, "vocab", json_string(ds->vocab)) != 0 ||
        !(*options = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS))) {
        json_decref(o);
        return error_set("out of memory");
    }
    json_decref(o);
    return 0;
}

/* ---- image folders: the archive extracted, the class names kept ---- */

/* What the owner's dataset-byte quota leaves (-1: no limit). */
static int64_t quota_left(const DatasetIngest *in, int64_t *left) {
    DbQuota q;
    int64_t others;
    char user[DB_USER_NAME_MAX + 1];
    *left = -1;
    if (in->owner <= 0) return 0;
    if (owner_quota(in, &q, &others, user, sizeof user) != DB_OK) return -1;
    int64_t limit = quota_get(&q, QUOTA_DATASET_BYTES);
    if (limit >= 0) *left = limit - others;
    if (*left < 0 && limit >= 0) *left = 0;
    return 0;
}

/* One archive is extracted at a time (uploads and imports alike): each
 * measures the disk's free space once the one before has written all it
 * will, so two bombs at once cannot each take nine tenths of it. */
static pthread_mutex_t extract_lock = PTHREAD_MUTEX_INITIALIZER;

/* The archive extracted to the folder job_build_load_dataset reads, and
 * then removed: the dataset's bytes are the extracted files'. Within the
 * owner's quota, and within nine tenths of the disk's free space: an
 * archive of a few KB may unpack to a terabyte (a sparse entry, a gzip
 * bomb), and the tenth kept is everyone else's room (their checkpoints,
 * the database) while it is refused. A disk whose free space cannot be
 * read extracts nothing. */
static DatasetIngestResult extract_archive(const DatasetIngest *in, DbDataset *info,
                                           int64_t *bytes) {
    char archive[4400], folder[4200];
    int64_t left;
    if (quota_left(in, &left) != 0 ||
        db_dataset_file_path(in->db, info, "archive", archive, sizeof archive) != 0 ||
        job_build_imagefolder_root(in->db, info->id, folder, sizeof folder) != 0)
        return DATASET_INGEST_STORAGE;
    pthread_mutex_lock(&extract_lock);
    int64_t disk = disk_space_free(db_data_dir(in->db)), room = disk - disk / 10;
    if (disk < 0) {
        int e = errno;
        pthread_mutex_unlock(&extract_lock);
        error_sys(e, "the data dir's free space (statvfs)");
        return DATASET_INGEST_STORAGE;
    }
    bool by_disk = left < 0 || room < left;
    const char *what = by_disk ? "the room the disk has (nine tenths of its free space)"
                               : "what the dataset-byte quota leaves";
    bool over;
    *bytes = dataset_archive_extract(archive, info->files[0].name, folder, by_disk ? room : left,
                                     what, &over);
    pthread_mutex_unlock(&extract_lock);
    if (*bytes < 0) {
        if (over && by_disk) return error_set_errno(ENOSPC), DATASET_INGEST_STORAGE; /* 507 */
        if (over) error_set_path("quota.dataset_bytes");
        int e = error_last()->sys_errno; /* the server's disk, or the archive at fault */
        return over ? DATASET_INGEST_OVER_QUOTA
               : e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == ENOMEM
                   ? DATASET_INGEST_STORAGE
                   : DATASET_INGEST_BAD_DATA;
    }
    unlink(archive);
    return DATASET_INGEST_OK;
}

/* "imagefolder <folder>: a/1.png: ..." -> "archive 'NAME': a/1.png: ...":
 * the file named as it is inside the archive the client sent. */
static void name_archive(Db *db, const DbDataset *info) {
    char folder[4200], prefix[4300], msg[ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", error_get());
    if (job_build_imagefolder_root(db, info->id, folder, sizeof folder) != 0) return;
    snprintf(prefix, sizeof prefix, "imagefolder %s: ", folder);
    char *at = strstr(msg, prefix);
    if (at)
        error_set("%.*sarchive '%s': %s", (int)(at - msg), msg, info->files[0].name,
                  at + strlen(prefix));
}

/* An archive of one class folder is, most likely, `tar -czf x.tar.gz
 * folder/` of a folder whose classes are one level down: a classifier of
 * one class learns nothing, so say how to make the archive instead. */
static DatasetIngestResult one_class(Db *db, const DbDataset *info) {
    char folder[4200], **names = NULL;
    int n = 0;
    if (job_build_imagefolder_root(db, info->id, folder, sizeof folder) == 0)
        dataset_imagefolder_classes(folder, &names, &n);
    error_set("archive '%s': one class folder, '%s', at its top; an image folder's archive holds "
              "the class folders at its top (tar -C FOLDER -czf %s .)", info->files[0].name,
              n ? names[0] : "?", info->files[0].name);
    dataset_imagefolder_classes_free(names, n);
    return DATASET_INGEST_BAD_DATA;
}

/* A class folder's name json_string refused: one that is not UTF-8 (the
 * classes are listed by name, in JSON and as PyTorch's str) is refused,
 * named with '?' for its stray bytes; else it ran out of memory. */
static DatasetIngestResult class_name_refused(const DbDataset *info, const char *name) {
    json_t *shown = json_text(name);
    /* shown as it is: it was UTF-8, and json_string ran out of memory */
    bool utf8 = !shown || strcmp(json_string_value(shown), name) == 0;
    if (!utf8)
        error_set("archive '%s': class folder '%s': its name is not UTF-8", info->files[0].name,
                  json_string_value(shown));
    json_decref(shown);
    return utf8 ? DATASET_INGEST_STORAGE : DATASET_INGEST_BAD_DATA;
}

/* The options as stored, with the image folder's class names added, into
 * *out (free it). */
static DatasetIngestResult with_classes(Db *db, const DbDataset *info, const char *options_json,
                                        char **out) {
    char folder[4200], **names = NULL;
    int n = 0;
    DatasetIngestResult r = DATASET_INGEST_STORAGE;
    json_t *o = json_loads(options_json ? options_json : "{}", 0, NULL), *list = json_array();
    bool ok = o && list && job_build_imagefolder_root(db, info->id, folder, sizeof folder) == 0 &&
              dataset_imagefolder_classes(folder, &names, &n) == 0;
    for (int i = 0; ok && i < n; i++) {
        json_t *name = json_string(names[i]);
        if (!name) {
            r = class_name_refused(info, names[i]);
            ok = false;
        } else
            ok = json_array_append_new(list, name) == 0;
    }
    dataset_imagefolder_classes_free(names, n);
    ok = ok && json_object_set(o, "classes", list) == 0;
    *out = ok ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(list);
    json_decref(o);
    if (*out) return DATASET_INGEST_OK;
    if (r == DATASET_INGEST_STORAGE) error_set("out of memory");
    return r;
}

/* The files loaded, checked and recorded, the dataset made ready; an image
 * folder's archive already extracted (`extracted` bytes). */
static DatasetIngestResult finish_loaded(const DatasetIngest *in, DbDataset *info, bool folder,
                                         int64_t extracted) {
    DatasetIngestResult r;
    char *owned = info->options_json;
    info->options_json = (char *)in->options_json;
    Dataset *ds = load(in->db, info);
    info->options_json = owned;
    if (ds && folder && ds->num_classes == 1) {
        dataset_free(ds);
        return one_class(in->db, info);
    }
    if (!ds) {
        if (folder) name_archive(in->db, info);
        strip_data_dir(in->db, in->id);
        return DATASET_INGEST_BAD_DATA;
    }
    info->samples = ds->n;
    job_build_sample_shape(ds, &info->shape);
    char *options = NULL;
    int rc = ds->tokens > 0 ? token_record(ds, in->options_json, info, &options) : 0;
    dataset_free(ds);
    if (rc != 0) return DATASET_INGEST_STORAGE;
    info->bytes = extracted;
    for (int i = 0; !folder && i < info->num_files; i++) info->bytes += info->files[i].bytes;
    if (info->num_files == 1)
        memcpy(info->sha256, info->files[0].sha256, sizeof info->sha256);
    else
        info->sha256[0] = '\0';
    if (folder && (r = with_classes(in->db, info, in->options_json, &options)) != DATASET_INGEST_OK)
        return r;
    info->options_json = options; /* stored by mark_ready; NULL: as inserted */
    r = mark_ready(in, info);
    info->options_json = owned;
    free(options);
    return r;
}

DatasetIngestResult dataset_ingest_finish(const DatasetIngest *in, DbDataset *info) {
    int roles = 0;
    if (!dataset_ingest_roles(in->format, &roles)) {
        error_set("format: unknown format '%s' (known: %s)", in->format, DATASET_INGEST_FORMATS);
        return DATASET_INGEST_BAD_DATA;
    }
    info->id = in->id;
    snprintf(info->format, sizeof info->format, "%s", in->format);
    bool folder = !strcmp(in->format, "imagefolder");
    int64_t extracted = 0;
    DatasetIngestResult r = folder ? extract_archive(in, info, &extracted) : DATASET_INGEST_OK;
    if (r != DATASET_INGEST_OK) return r;
    r = finish_loaded(in, info, folder, extracted);
    /* The archive is gone once extracted: a failure after it must take the
     * folder too, whoever cleans up after it (an import removes the files
     * it fetched, by name). */
    char root[4200];
    if (r != DATASET_INGEST_OK && folder &&
        job_build_imagefolder_root(in->db, info->id, root, sizeof root) == 0)
        dataset_archive_remove(root);
    return r;
}
