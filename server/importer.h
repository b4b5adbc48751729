/* importer.h - URL imports, run by a small pool of threads of their own.
 *
 * POST /v1/datasets with "urls" (routes/dataset_import.c) checks the body,
 * inserts the dataset in state `importing` and hands it here: the HTTP
 * thread is free again at once, however slow the servers the files come
 * from. An importer thread fetches each file (server/url_fetch.h, the
 * address policy applied to every connection), records the progress in the
 * dataset's row (progress_bytes, total_bytes; a few writes a second at
 * most), then validates the files as an upload's (server/dataset_ingest.h)
 * and the dataset becomes `ready`. A failure keeps the row, still
 * `importing`, with its error (the API shows it as `failed`) and removes the
 * files; the row stays until it is deleted (or the daemon restarts: a start
 * removes every dataset that is not ready).
 *
 * Limits: --import-threads transfers at once in all, more wait in the order
 * they came; at most --imports-per-user in progress (running or waiting)
 * per user, more are refused (429) rather than queued without bound. The
 * owner's dataset-byte quota caps what is fetched: a file that would pass
 * what is left of it is cut off there, and the import fails saying so.
 * What is left is read again as the progress is written, so that the
 * owner's imports and uploads that each fit, not together, stop as their
 * bytes meet (dataset_ingest_finish looks once more as it makes the
 * dataset ready).
 *
 * Cancelling (DELETE of an importing dataset) drops a waiting import at
 * once, and stops a running one within a second (libcurl's progress
 * callback runs at least once a second, also while nothing arrives); the
 * DELETE's reply comes once its thread has let go of the dataset's files,
 * made later rather than waited for on an HTTP thread. A
 * daemon stopping cancels every import; the rows they leave `importing`
 * are removed at the next start (db_dataset_delete_stale).
 */
#ifndef TRAIND_SERVER_IMPORTER_H
#define TRAIND_SERVER_IMPORTER_H

#include <stdbool.h>
#include <stdint.h>

#include "server/addr_policy.h"
#include "server/quota.h"
#include "storage/db.h"

#define IMPORTER_THREADS_DEFAULT 4
#define IMPORTER_PER_USER_DEFAULT 2
#define IMPORTER_MAX_THREADS 64

typedef struct Importer Importer;

typedef struct {
    Db *db;
    int threads;       /* transfers at once, all users */
    int per_user;      /* imports in progress per user */
    int64_t max_bytes; /* per file */
    int timeout_s;     /* per file, the whole transfer */
    AddrPolicy policy;
    const DbQuota *quota_defaults; /* serve --quota-*: the owner's dataset bytes */
} ImporterConfig;

/* One import: the dataset (inserted, `importing`) and a URL per role. */
typedef struct {
    int64_t dataset_id, owner;
    const char *format, *options_json;
    int num_files;
    const char *roles[DB_DATASET_MAX_FILES];
    const char *urls[DB_DATASET_MAX_FILES];
} ImportJob;

/* Starts the threads; NULL with an error. */
Importer *importer_start(const ImporterConfig *config);
/* Cancels every import, waits for the threads, frees. NULL is fine. */
void importer_stop(Importer *im);

/* The policy URLs are checked against (url_fetch_check before a job is
 * accepted). */
const AddrPolicy *importer_policy(const Importer *im);
int importer_per_user(const Importer *im);

/* Queues the job (its strings are copied): 0; 1 when its owner already has
 * per_user imports in progress (*held gets how many); -1 with an error
 * (out of memory, the daemon stopping). */
int importer_submit(Importer *im, const ImportJob *job, int *held);

/* Asks the import of this dataset to stop: a waiting one is dropped at
 * once, a running one stops within a second (or once the check of its
 * files, which is not cut short, is over). Returns whether one still runs:
 * asking again until it does not is how a caller waits without blocking a
 * thread (an HTTP handler's reply made later). The row and the files are
 * the caller's to delete once none runs. */
bool importer_cancel_ask(Importer *im, int64_t dataset_id);

/* A counter that moves whenever an import records progress or ends: the
 * events stream (routes/dataset_events.c) looks at the row when it has. */
uint64_t importer_generation(Importer *im);

#endif
