/* remote_spec.h - a daemon job's spec as ranks outside the daemon run it:
 * `traind run spec.json` on a node, with no database to resolve names in.
 *
 * data.train and data.val, dataset names in the stored spec, become inline
 * sources ({"format": "idx", "images": ABS, "labels": ABS}, ...) naming the
 * datasets' files by absolute path, with their options (a CSV's columns,
 * an image folder's grayscale, a token source's block_size, split and
 * val_fraction); `init`, a checkpoint id, becomes that checkpoint's
 * model.safetensors. Everything else stays as submitted. The datasets are
 * the ones the job's row recorded at submission.
 *
 * The paths are the files' in the data dir (the nodes see it through a
 * shared directory), or, with datasets fetched (RemoteSpecFetch), paths in
 * the nodes' own cache: CACHE/<sha256>/<file name>, content-addressed so
 * that a file fetched once serves every later attempt and job. The
 * manifest then says what to fetch into the cache (job/dataset_fetch.h
 * reads it):
 *
 *   {"cache": CACHE, "files": [{"dataset": 3, "file": "train.csv",
 *     "path": "<sha256>/train.csv", "url": BASE/v1/jobs/7/attempts/1/datasets/3/train.csv,
 *     "bytes": 81234, "sha256": "<sha256>"}, ...]}
 *
 * An image folder (a directory of many files, unpacked from its archive)
 * and `init` are not fetched: a job with either is refused with datasets
 * fetched, saying so.
 */
#ifndef TRAIND_SERVER_REMOTE_SPEC_H
#define TRAIND_SERVER_REMOTE_SPEC_H

#include "storage/db.h"

typedef struct {
    const char *cache;    /* the nodes' cache directory (absolute) */
    const char *base_url; /* the daemon's, as the ranks reach it */
    int attempt;          /* the attempt whose token opens the URLs */
    char *manifest;       /* out: the manifest as JSON text (malloc'ed; the caller frees) */
} RemoteSpecFetch;

/* The resolved spec as JSON text (malloc'ed), or NULL with an error naming
 * the field ("data.train: dataset 3: not found"). fetch: NULL for the data
 * dir's paths, else the cache's, and fetch->manifest filled. */
char *remote_spec_json(Db *db, const DbJob *job, RemoteSpecFetch *fetch);

#endif
