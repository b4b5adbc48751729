/* dataset_ingest.h - from files that arrived to a listed dataset.
 *
 * Both ways a dataset comes in (a multipart upload, a URL import) end the
 * same: the files lie in <data-dir>/datasets/<id>/ of a row in state
 * `uploading`; dataset_ingest_finish loads them with core/data (which
 * checks magic numbers, counts and shapes), records samples, shapes and
 * classes, and marks the row `ready`. Until then the dataset is not listed
 * and no job can use it; on any failure the caller deletes the row and its
 * files.
 */
#ifndef TRAIND_SERVER_DATASET_INGEST_H
#define TRAIND_SERVER_DATASET_INGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "server/quota.h"
#include "storage/db.h"

/* The formats an upload or import may name, for error messages. */
#define DATASET_INGEST_FORMATS "idx, csv, npy, tokens, text, imagefolder, cifar10"

/* The file roles a format needs, in order: idx {images, labels}, csv
 * {file}, npy {inputs, targets}, tokens {file}, text {file}, imagefolder
 * {archive} (.tar, .tar.gz or .zip, extracted at the end:
 * server/dataset_archive.h), cifar10 {file}. NULL for an unknown format. */
const char *const *dataset_ingest_roles(const char *format, int *n);
bool dataset_ingest_role_ok(const char *format, const char *role);
/* Whether a role may come several times: cifar10's batches, loaded in
 * the order they came. */
bool dataset_ingest_role_repeats(const char *format, const char *role);

/* A safe name for a file in the dataset's directory, unlike the names of
 * the n files before it: the client's base name when it is
 * [A-Za-z0-9._-]{1,100} and does not start with '.', else (or when that is
 * taken) the role, else role-<n+1>, role-<n+2>, ... (cifar10's batches). */
void dataset_ingest_file_name(const DbDatasetFile *before, int n, const char *role,
                              const char *client_name, char *out, size_t size);

/* Options as stored: {"label_column": ..., "feature_columns": [...]}
 * (csv) from the form/JSON values (either may be NULL or ""; feature_columns
 * is comma separated), "grayscale": true (imagefolder) when grayscale. An
 * image folder's "classes" are added once it is loaded. A new string
 * (free()), NULL when out of memory. */
char *dataset_ingest_options(const char *label_column, const char *feature_columns,
                             bool grayscale);

/* The dataset an upload or import has stored the files of. */
typedef struct {
    Db *db;
    const DbQuota *quota_defaults; /* the daemon's (serve --quota-*) */
    int64_t id, owner;
    const char *format, *options_json;
} DatasetIngest;

typedef enum {
    DATASET_INGEST_OK,
    DATASET_INGEST_BAD_DATA,   /* the files are at fault: 422 */
    DATASET_INGEST_OVER_QUOTA, /* the owner's dataset bytes: 429, path quota.dataset_bytes */
    DATASET_INGEST_STORAGE,    /* the server: 503, or 507 for a full disk */
} DatasetIngestResult;

/* Loads the files of info (files[] and num_files filled, each with bytes
 * and sha256) as `format`, fills samples and shape (token data: samples
 * counts the tokens, a sample's shape [] until a job's block_size makes
 * windows; a text's vocabulary joins its options), and marks the dataset
 * ready when its bytes fit the owner's dataset-byte quota beside the owner's
 * ready datasets. The quota is looked at and the row made ready under one
 * lock that every upload and import takes, so two that each fit but not
 * together cannot both be kept. DATASET_INGEST_OK, or the failure with an
 * error. */
DatasetIngestResult dataset_ingest_finish(const DatasetIngest *in, DbDataset *info);

#endif
