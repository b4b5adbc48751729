/* dataset_fetch.h - `traind run ... --datasets-cache DIR`: the ranks of an
 * attempt whose daemon has them fetch the datasets (serve --slurm-datasets
 * fetch, server/remote_spec.h) put the job's dataset files into the
 * node's own cache before the job is built.
 *
 * The manifest, datasets.json beside the spec, lists each file: its path
 * in the cache (<sha256>/<name>: content-addressed, so a file fetched once
 * serves every later attempt and job on the node), its URL on the daemon
 * (GET .../attempts/{n}/datasets/{dataset}/{file}, with the attempt's
 * token), its bytes and sha256. Each node's local rank 0 (SLURM_LOCALID,
 * Open MPI's local rank, else the rank) checks what the cache holds and
 * downloads what it lacks, or holds wrong, to a temporary name, hashing as
 * it writes; a file whose bytes or sha256 are not the manifest's is
 * removed and the run fails naming the file, the expected and the got
 * digest; a good one is fsynced and renamed into place. The node's other
 * ranks wait for it: every rank learns, through one all-reduce over the
 * job's group, whether every node has its files.
 */
#ifndef TRAIND_JOB_DATASET_FETCH_H
#define TRAIND_JOB_DATASET_FETCH_H

#include <stdint.h>

#include "core/dist/group.h"
#include "job/attempt_http.h"

/* The manifest's name beside the spec. */
#define DATASET_FETCH_MANIFEST "datasets.json"

/* Every rank calls it (a collective over group, NULL for one process):
 * the files of manifest_path into cache. 0 when every node has them, -1
 * with an error: this rank's own, or which ranks could not fetch them. */
int dataset_fetch_all(const char *manifest_path, const char *cache, const AttemptHttp *http,
                      DistGroup *group);

/* The cache's root made (mode 0700) when missing; else it must be a
 * directory, not a link, of this user's that no one else may write: a
 * node's other users could plant /tmp/traind-datasets, or files and links
 * in it, and feed the jobs that trust it their own bytes. 0, or -1 with an
 * error naming the directory and what is wrong. */
int dataset_fetch_cache_ready(const char *cache);

/* Whether the file at path has `bytes` bytes and sha256 `sha256` (hex):
 * 0 when it has, 1 when there is no such file, -1 with an error naming the
 * path, the expected and the got size or digest. */
int dataset_fetch_verify(const char *path, int64_t bytes, const char *sha256);

#endif
