/* api.h - the v1 HTTP API: its route table, the state its handlers share,
 * and the helpers every route file uses.
 *
 * server/http.c knows nothing of jobs or datasets; server/api.c lists the
 * routes of design.md "HTTP API (v1)" and maps storage's DbStatus to
 * statuses; one file per resource under server/routes/ holds the handlers.
 *
 * Access: every route but GET /v1/health needs a token. A user's work is
 * private: another user's job (and its metrics, logs, checkpoints, streams)
 * answers 404, as one that does not exist would; a dataset is seen by its
 * owner, and by everyone once its owner shares it (read-only: changing it
 * is 403 for the others). Admins see and may change everything, and alone
 * reach the users (/v1/users), the audit trail (/v1/audit) and /metrics
 * (which the scrape token of serve --metrics-token-file opens too).
 *
 * Errors: "path" in the error body is the JSON path of a bad field of a
 * body ("optimizer.lr", "urls.images"), "?name" for a query argument, or
 * the request's path when the request as a whole is at fault.
 */
#ifndef TRAIND_SERVER_API_H
#define TRAIND_SERVER_API_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "core/error.h"
#include "server/http.h"
#include "server/importer.h"
#include "server/ingest_pool.h"
#include "server/quota.h"
#include "server/reply_cache.h"
#include "server/scheduler.h"
#include "storage/db.h"
#include "storage/sha256.h"

typedef struct {
    Db *db;
    MetricWriter *metrics;
    Scheduler *sched;
    HttpServer *http;      /* set once listening */
    Importer *importer;    /* URL imports (server/importer.h) */
    IngestPool *ingest;    /* uploads' checks (server/ingest_pool.h); NULL: on the HTTP thread */
    IngestPool *stores;    /* ranks' checkpoints stored; NULL: on the HTTP thread */
    time_t started;
    ReplyCache *replies;   /* finished jobs' metric histories */
    ReplyCache *chunks;    /* series cut in chunks (history_chunks.h); NULL: off */
    /* in every key of both: bumped when a job's history is rewritten (a
     * rerun of its attempt), so that a reply read before and kept after
     * is never found again */
    atomic_uint_fast64_t history_generation;
    DbQuota quota_defaults; /* serve --quota-*: a user's limits unless set for them */
    /* sha256 (hex) of serve --metrics-token-file's token; "" for none.
     * Under its lock: a reload (SIGHUP) replaces it while requests read it. */
    pthread_mutex_t metrics_token_lock;
    char metrics_token_sha256[SHA256_HEX_LEN + 1];
} Api;

#define API_REPLY_CACHE_BYTES (64u << 20)
#define API_REPLY_CACHE_ENTRIES 256
/* --history-cache-mb's default; entries: 64 MiB of 8192-point chunks of a
 * dense series is ~120, of sparse (epoch) series many more, small */
#define API_CHUNK_CACHE_MB 64
#define API_CHUNK_CACHE_ENTRIES 4096

extern const HttpRoute api_routes[];
extern const int api_num_routes;

/* HttpConfig.authenticate: the token's user from the database (with the
 * token's sha256, for streams), or the metrics scrape token. */
int api_authenticate(void *app, const char *token, HttpAuth *out);
/* The metrics scrape token's sha256 from now on ("" : none). */
void api_set_metrics_token(Api *api, const char *sha256_hex);

/* Replies for a failed storage or scheduler call (st < 0), with
 * error_get() as the message: DB_NOT_FOUND 404, DB_CONFLICT 409,
 * DB_INVALID 422, DB_ERROR 507 when the disk is full (api_storage_status),
 * else 503. path may be NULL. Returns 0. */
int api_reply_db(HttpRequest *req, int st, const char *path);
/* The status of a failure of the daemon's own storage (the database, a
 * file): 507 when the disk is full (err, or error_last()'s sys_errno: a
 * file's ENOSPC, SQLite's SQLITE_FULL), else 503; and its error code
 * ("insufficient_storage", "unavailable"). */
int api_storage_status(int err);
const char *api_storage_code(int status);
/* The job named by the route's {id}: its id, with its record in *out when
 * out is not NULL (db_job_clear it); -1 after replying 404 (or the storage
 * error's status) when there is no such job, or it is another user's. */
int64_t api_job_param(HttpRequest *req, DbJob *out);
/* The caller, as storage's visibility rules take it. */
DbViewer api_viewer(HttpRequest *req);
/* Whether the caller is the owner or an admin. */
bool api_owns(HttpRequest *req, int64_t owner);
/* ?user=NAME of a listing: that user's id in *owner (0 without it). A
 * user other than the caller: for a listing of `admin_only` things (jobs,
 * the queue) a non-admin gets 403, whether the user exists or not; for
 * others (datasets, some shared) an unknown user lists nothing, as a known
 * one with nothing shared does: a non-admin cannot probe for user names.
 * An admin naming no user gets 400. -1 after replying. */
int api_user_filter(HttpRequest *req, const char *admin_only, int64_t *owner);
/* Whether the caller may add `adding` of limit k (server/quota.h) to what
 * they hold: 0, or -1 after replying 429 "quota_exceeded" with the numbers
 * ("alice has 40 of 40 queued jobs"; path "quota.queued_jobs"). */
int api_quota_check(HttpRequest *req, QuotaLimit k, int64_t adding);
/* One limit of the caller as of one moment, for a check made again and
 * again (an upload's bytes as they arrive) without a query each time. */
typedef struct {
    QuotaLimit k;
    DbQuota q;
    int64_t held;
    char user[DB_USER_NAME_MAX + 1];
    char path[48]; /* "quota.dataset_bytes", the 429's path */
} ApiQuota;
/* The caller's: 0, or -1 after replying (a storage error). */
int api_quota_load(HttpRequest *req, QuotaLimit k, ApiQuota *out);
/* User user_id's, for a check away from the request's start (an upload's
 * body as it comes): DB_OK, or a storage status with the error. */
int api_quota_read(Api *api, int64_t user_id, QuotaLimit k, ApiQuota *out);
/* Whether `adding` more fits; false with quota_allows' sentence in msg. */
bool api_quota_fits(const ApiQuota *a, int64_t adding, char *msg, size_t size);
/* Whether the caller may see job id (their own, or they are an admin):
 * for the listings of the whole daemon (devices, GET /metrics), which
 * show another user's job as busy and no more. */
bool api_sees_job(HttpRequest *req, int64_t id);
/* A boolean field of a JSON body: 1 with it in *out, 0 when absent (*out
 * false), or -1 after replying 400 "invalid" (path key) for another type. */
int api_json_bool(HttpRequest *req, json_t *body, const char *key, bool *out);
/* Owner or admin, or -1 after replying 403. */
int api_check_owner(HttpRequest *req, int64_t owner, const char *what, int64_t id);
/* ms since the epoch as an RFC 3339 string, or JSON null for 0. */
json_t *api_time(int64_t ms);
/* The audit trail's entry for a change the caller has just made (after it
 * succeeded): actor the caller's name, action "job.create", target
 * "job 12" from target_fmt. A failure to write it is logged; the change
 * stands and the request is answered as it would be. */
void api_audit(HttpRequest *req, const char *action, const char *target_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with a detail ("running_jobs=2 gpus=unlimited"; NULL for none). */
void api_audit_detail(HttpRequest *req, const char *action, const char *detail,
                      const char *target_fmt, ...) __attribute__((format(printf, 4, 5)));

/* The first error of a request whose body streams in (an upload), kept
 * while its parts arrive and replied once. */
typedef struct {
    int status; /* 0: none yet */
    char code[32], path[64], msg[ERROR_MAX];
} ApiPendingError;
/* Keeps this error unless one is kept already. Returns -1. */
int api_pending_error(ApiPendingError *e, int status, const char *code, const char *path,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Replies the kept error. Returns 0. */
int api_reply_pending(HttpRequest *req, const ApiPendingError *e);

/* the handlers, one file each under server/routes/ */
int health_get(HttpRequest *req);               /* health.c */
int web_index(HttpRequest *req);                /* web.c */
int web_asset(HttpRequest *req);
int devices_get(HttpRequest *req);              /* devices.c */
int datasets_post(HttpRequest *req);            /* datasets.c */
int datasets_list(HttpRequest *req);
int datasets_get(HttpRequest *req);
int datasets_delete(HttpRequest *req);
int datasets_patch(HttpRequest *req);
/* The dataset the route's {id} names, as the caller sees it (an upload in
 * progress is none yet): 0, or -1 after replying 404 (409 for a name
 * several others share). db_dataset_clear *out. */
int datasets_resolve(HttpRequest *req, DbDataset *out);
extern const HttpBodyStream datasets_upload_body; /* dataset_upload.c */
int dataset_upload_finish(HttpRequest *req);
int dataset_import(HttpRequest *req, json_t *body); /* dataset_import.c */
/* An import's fields over dataset_json's object: state `failed` for an
 * import that failed, progress_bytes, total_bytes and error. */
void dataset_import_describe(const DbDataset *ds, json_t *out);
int dataset_events_get(HttpRequest *req);         /* dataset_events.c */
json_t *dataset_json(const DbDataset *ds);
int jobs_post(HttpRequest *req);                /* jobs.c */
int jobs_list(HttpRequest *req);
int jobs_get(HttpRequest *req);
int jobs_cancel(HttpRequest *req);
int jobs_patch(HttpRequest *req);
/* A queue entry as the API shows it; named: with its detail, for the job's
 * owner or an admin (jobs.c). */
json_t *queue_entry_json(const QueueEntry *e, bool named);
int queue_get(HttpRequest *req);                /* queue.c */
int metrics_get(HttpRequest *req);              /* metrics.c */
/* The job's cached history pages and chunks dropped: its points past a
 * checkpoint were deleted, to come again (metrics.c). */
void metrics_history_forget(Api *api, int64_t job);
int logs_get(HttpRequest *req);                 /* logs.c */
int checkpoints_list(HttpRequest *req);         /* checkpoints.c */
int checkpoints_get(HttpRequest *req);
/* A checkpoint as the API shows it (its id, epoch, step, bytes, sha256,
 * created_at, url). */
json_t *checkpoint_json(const DbCheckpoint *c);
/* Replies 200 with the checkpoint's file ("model.safetensors",
 * "trainer.safetensors") from its descriptor, as an attachment named
 * download_name (404 when it was collected meanwhile). */
int checkpoint_reply_file(HttpRequest *req, const DbCheckpoint *c, const char *file,
                          const char *download_name);
int job_report_post(HttpRequest *req);          /* job_reports.c */
int job_end_post(HttpRequest *req);
int job_resume_get(HttpRequest *req);
int job_resume_file_get(HttpRequest *req);
int job_dataset_file_get(HttpRequest *req);
extern const HttpBodyStream job_checkpoint_body;
int job_checkpoint_put(HttpRequest *req);
int prometheus_get(HttpRequest *req);           /* prometheus.c */
int users_list(HttpRequest *req);               /* users.c */
int users_post(HttpRequest *req);
int users_patch(HttpRequest *req);
int users_revoke(HttpRequest *req);
int users_rotate(HttpRequest *req);
int me_get(HttpRequest *req);
int audit_get(HttpRequest *req);                /* audit.c */

#endif
