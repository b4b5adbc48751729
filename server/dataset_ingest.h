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

#include "storage/db.h"

/* The file roles a format needs, in order: idx {images, labels}, csv
 * {file}, npy {inputs, targets}. NULL for an unknown format. */
const char *const *dataset_ingest_roles(const char *format, int *n);
bool dataset_ingest_role_ok(const char *format, const char *role);

/* A safe name for a file in the dataset's directory: the client's base
 * name when it is [A-Za-z0-9._-]{1,100} and does not start with '.',
 * else the role. */
void dataset_ingest_file_name(const char *role, const char *client_name, char *out, size_t size);

/* CSV options as stored: {"label_column": ..., "feature_columns": [...]}
 * from the form/JSON values (either may be NULL or ""; feature_columns is
 * comma separated). A new string (free()), NULL when out of memory. */
char *dataset_ingest_options(const char *label_column, const char *feature_columns);

/* Loads the files of info (files[] and num_files filled, each with bytes
 * and sha256) as `format`, fills samples and shape, and marks dataset id
 * ready. 0; or -1 with an error: *bad_data says whether the files were at
 * fault (422) rather than the server (503). */
int dataset_ingest_finish(Db *db, int64_t id, const char *format, const char *options_json,
                          DbDataset *info, bool *bad_data);

#endif
