/* ingest_pool.h - the checks of uploaded datasets, off the HTTP threads.
 *
 * An upload's body is stored as it arrives; then its files are checked
 * (server/dataset_ingest.h: an archive extracted, every image decoded, a
 * CSV parsed), which for gigabytes takes minutes. An HTTP handler must not
 * block its thread that long (every connection of the thread would wait:
 * server/http.h), so the upload route hands the check to this pool and
 * replies once it is done (http_reply_later). A few threads take the
 * tasks in the order they came.
 *
 * ingest_pool_stop (the daemon stopping, after the HTTP server) waits for
 * the tasks running and calls the queued ones with `cancelled` set, so
 * that each lets go of what it holds; their datasets, never made ready,
 * are removed at the next start (db_dataset_delete_stale).
 */
#ifndef TRAIND_SERVER_INGEST_POOL_H
#define TRAIND_SERVER_INGEST_POOL_H

#include <stdbool.h>

#define INGEST_POOL_THREADS_DEFAULT 2

typedef struct IngestPool IngestPool;

/* task(ctx, false) on a pool thread; task(ctx, true) instead when the pool
 * stops before the task has begun. */
typedef void (*IngestTask)(void *ctx, bool cancelled);

/* NULL with an error when out of memory or no thread could start. */
IngestPool *ingest_pool_start(int threads);
/* Queues task(ctx): 0, or -1 (out of memory, or the pool is stopping)
 * without calling it. */
int ingest_pool_run(IngestPool *p, IngestTask task, void *ctx);
/* Waits for the running tasks, cancels the queued ones, ends the threads
 * and frees p. NULL is fine. */
void ingest_pool_stop(IngestPool *p);

#endif
