/* db.h - the daemon's records: SQLite in <data-dir>/traind.db.
 *
 * One header for the storage layer; one .c per concept:
 *   storage/db.c           open, pragmas, migrations, the connection pool
 *   storage/users.c        users, their bearer tokens (sha256 only), quotas, usage
 *   storage/audit.c        who did what, when
 *   storage/datasets.c     uploaded datasets and their files on disk
 *   storage/jobs.c         jobs: spec, state machine, queue order, progress
 *   storage/metrics.c      metric history, its queries and downsampling
 *   storage/metric_blocks.c  per-block summaries of a series, for downsampling
 *   storage/metric_writer.c  the batched writer off the training thread
 *   storage/checkpoints.c  checkpoint rows and keep_last garbage collection
 *   storage/logs.c         job log lines
 *   storage/sha256.c       FIPS 180-4 SHA-256 (storage/sha256.h)
 *
 * Threads. A Db is shared by every thread of the daemon: the HTTP threads answer
 * requests while workers write progress and the metric writer commits
 * batches. Each call borrows one connection from a small pool inside the
 * Db (opening another when all are busy, up to DB_MAX_CONNECTIONS, then
 * waiting), so readers never queue behind a writer: in WAL mode a read
 * sees the last committed state while a write is in progress. Writers are
 * serialised by SQLite itself (transactions start IMMEDIATE, busy_timeout
 * 5000 ms). Every function here is safe to call from any thread.
 *
 * Files on disk live under the data dir and the database stores their
 * paths relative to it, so a data dir can move (a docker volume):
 *   <data-dir>/traind.db            (+ -wal, -shm)
 *   <data-dir>/admin.token          mode 0600, written on first start
 *   <data-dir>/datasets/<id>/...    a dataset's files
 *   <data-dir>/jobs/<id>/checkpoints/epoch-<N>/{model,trainer}.safetensors
 *
 * Return values. Functions returning int give DB_OK (0) or a negative
 * DbStatus, with a message in core/error.h's error_get() that says what and
 * where ("job 12: not found", "dataset name 'a/b': ..."). The status picks
 * the HTTP answer: DB_NOT_FOUND 404, DB_CONFLICT 409, DB_INVALID 400/422,
 * DB_ERROR 500/503.
 *
 * Times are int64 milliseconds since the Unix epoch (0: not yet); ids are
 * positive int64 from SQLite (a dataset's `name` is its other handle).
 * Records returned by value hold owned strings only where noted; free them
 * with the matching *_clear / *_free.
 */
#ifndef TRAIND_STORAGE_DB_H
#define TRAIND_STORAGE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct Db Db;

typedef enum {
    DB_OK = 0,
    DB_ERROR = -1,     /* SQLite or the file system failed */
    DB_NOT_FOUND = -2, /* no such row */
    DB_CONFLICT = -3,  /* a unique name taken, or a state that forbids it */
    DB_INVALID = -4,   /* bad argument: a name, a state, a limit */
} DbStatus;

#define DB_MAX_CONNECTIONS 16
#define DB_SCHEMA_VERSION 9

/* ---- open, close (storage/db.c) ---- */

/* Creates data_dir (and datasets/, jobs/) if needed, opens or creates
 * traind.db in WAL mode with foreign keys, and runs the migrations up to
 * DB_SCHEMA_VERSION (each in one transaction, PRAGMA user_version bumped in
 * it). A database newer than this build is refused. NULL with an error. */
Db *db_open(const char *data_dir);
void db_close(Db *db); /* NULL is fine; no call may be in flight */
/* mkdir -p: path and its missing parents (mode 0755), as db_open makes
 * the data dir; 0, or -1 with an error. */
int db_mkdir_p(const char *path);
/* Removes a directory tree under the data dir (files first, then the
 * directory). A missing path is success. 0, or -1 with an error. */
int db_remove_tree(const char *path);

const char *db_data_dir(const Db *db);
/* PRAGMA user_version of the open database. */
int db_schema_version(Db *db);
/* The schema version of data_dir's database, read without opening it for
 * writing (nothing migrated): 0, or -1 with an error. */
int db_file_schema_version(const char *data_dir, int *version);
/* Now, in ms since the epoch (CLOCK_REALTIME). */
int64_t db_now_ms(void);
/* "2024-05-01T12:00:00.123Z" (UTC) into buf (>= 32 bytes); "" for 0. */
const char *db_format_time(int64_t ms, char *buf, size_t size);
/* "<data-dir>/<rel>" into buf; -1 with an error when it does not fit. */
int db_path(const Db *db, const char *rel, char *buf, size_t size);

/* ---- users (storage/users.c) ---- */

#define DB_TOKEN_LEN 64 /* hex chars of a token: 32 random bytes */
#define DB_USER_NAME_MAX 64

/* A new token: 32 bytes of getrandom as DB_TOKEN_LEN hex characters into
 * token (DB_TOKEN_LEN + 1 bytes). 0, or -1 with an error. */
int db_token_new(char *token);

/* What a user may take at once; -1 in a field: the daemon's default (serve
 * options), which the scheduler and the routes fill in; -2: no limit for
 * this user whatever the default (stored as the column's value -2, where
 * the default is NULL: no migration). Any value below 0 is no limit once
 * the default is filled in (server/quota.h). */
typedef struct {
    int64_t running_jobs, queued_jobs, gpus, dataset_bytes, checkpoint_bytes;
} DbQuota;
#define DB_QUOTA_DEFAULT (-1)
#define DB_QUOTA_UNLIMITED (-2)
/* In db_user_set_quota: leave the field as it is. */
#define DB_QUOTA_UNCHANGED INT64_MIN

typedef struct {
    int64_t id;
    char name[DB_USER_NAME_MAX + 1];
    bool admin;
    int64_t created_at;
    int64_t revoked_at; /* 0: active */
    DbQuota quota;
    /* Recent use of the devices, for the fair queue: device-seconds,
     * decayed with a half-life, as of usage_at (ms). */
    double usage_s;
    int64_t usage_at;
} DbUser;

/* Creates a user (name: [A-Za-z0-9._-]{1,64}) with a new
 * random token, stored only as its sha256. The token goes to token_out
 * (DB_TOKEN_LEN + 1 bytes) and is never retrievable again. DB_CONFLICT when
 * the name is taken. id_out may be NULL. */
int db_user_create(Db *db, const char *name, bool admin, int64_t *id_out, char *token_out);
/* The active user whose token this is: the token's sha256 found through its
 * index, then compared again in constant time. DB_NOT_FOUND for an unknown
 * or revoked token. token_sha256_out (SHA256_HEX_LEN + 1 bytes, may be
 * NULL) gets the hash, for db_user_token_valid. */
int db_user_by_token(Db *db, const char *token, DbUser *out, char *token_sha256_out);
/* Whether the user still holds this token hash and is not revoked: for a
 * stream opened with it, which ends when its token stops working. DB_OK,
 * DB_NOT_FOUND when it no longer does. */
int db_user_token_valid(Db *db, int64_t id, const char *token_sha256);
int db_user_get(Db *db, int64_t id, DbUser *out);
int db_user_get_by_name(Db *db, const char *name, DbUser *out);
/* Every user, by id. Free *out with free(). */
int db_user_list(Db *db, DbUser **out, int *n);
/* The token stops working at once; the user's work stays. DB_CONFLICT when
 * already revoked. */
int db_user_revoke(Db *db, const char *name);
/* A new token for the user (also a revoked one, which becomes active
 * again); the old one stops working at once. */
int db_user_rotate(Db *db, const char *name, char *token_out);
/* Sets the fields of q that are not DB_QUOTA_UNCHANGED (DB_QUOTA_DEFAULT:
 * back to the daemon's default; DB_QUOTA_UNLIMITED: none). DB_INVALID for
 * a value below -2. */
int db_user_set_quota(Db *db, const char *name, const DbQuota *q);
/* Adds device-seconds of use, after decaying what there was by
 * 2^(-elapsed / half_life_s). */
int db_user_add_usage(Db *db, int64_t id, double device_s, double half_life_s);
/* usage_s decayed from usage_at to now_ms. */
double db_user_usage_now(const DbUser *u, int64_t now_ms, double half_life_s);
/* The use of `devices` over the `seconds` up to now, decayed to now: each
 * moment's by its own age (devices × ∫ 2^(-t/H) dt over the seconds), as a
 * run of that long has decayed by its end; half_life_s <= 0: devices ×
 * seconds, never forgotten. */
double db_user_use_until_now(double devices, double seconds, double half_life_s);

/* What a user holds now, against the quota. */
typedef struct {
    int64_t running_jobs, queued_jobs, gpus; /* gpus: running jobs on a cuda device */
    int64_t dataset_bytes; /* datasets they own: ready ones', and what uploads and imports in
                            * progress have stored so far */
    int64_t checkpoint_bytes;                /* checkpoints of their jobs: every file (disk_bytes) */
} DbUsage;
int db_user_holdings(Db *db, int64_t id, DbUsage *out);

/* First start: when no admin user exists, creates "admin" and writes its
 * token to <data-dir>/admin.token (mode 0600; written to a temporary name,
 * fsynced, renamed). *created (may be NULL) says whether it did. */
int db_user_bootstrap_admin(Db *db, bool *created);

/* ---- the audit trail (storage/audit.c) ---- */

/* Who did what, when: "job.create", "job.cancel", "job.priority",
 * "dataset.create", "dataset.delete", "user.add", "user.revoke",
 * "user.rotate", "user.quota". actor: a user name ("cli" for the command
 * line); target: "job 12", "dataset mnist", "user alice"; detail may be
 * NULL. */
typedef struct {
    int64_t id, ts;
    char actor[DB_USER_NAME_MAX + 1];
    char action[32];
    char target[160];
    char detail[256];
} DbAuditEntry;

/* The actor of the changes `traind user` makes; no user may be named so. */
#define DB_AUDIT_CLI_ACTOR "cli"

int db_audit_add(Db *db, const char *actor, const char *action, const char *target,
                 const char *detail);
/* Entries with id > after_id, oldest first, at most limit (1..1000). Free
 * *out with free(). */
int db_audit_list(Db *db, int64_t after_id, int limit, DbAuditEntry **out, int *n);

/* ---- datasets (storage/datasets.c) ---- */

#define DB_DATASET_NAME_MAX 128
#define DB_DATASET_MAX_FILES 8 /* CIFAR-10: five training batches */
#define DB_MAX_DIMS 8

/* uploading: its files are streaming in; importing: fetched from URLs in
 * the background (progress_bytes of total_bytes); ready: listed, usable. */
typedef enum { DB_DATASET_UPLOADING, DB_DATASET_IMPORTING, DB_DATASET_READY } DbDatasetState;

/* Who is asking. A user sees what they own and the datasets others share;
 * an admin sees everything. Storage functions take NULL for the daemon
 * itself (a worker), which sees everything. */
typedef struct {
    int64_t user_id;
    bool admin;
} DbViewer;

/* One file of a dataset: its role ("images", "labels" for idx; "file" for
 * csv; "inputs", "targets" for npy) and its name inside the dataset's
 * directory <data-dir>/datasets/<id>/ (no '/'). */
typedef struct {
    char role[16];
    char name[128];
    int64_t bytes;
    char sha256[65]; /* hex */
} DbDatasetFile;

/* What one sample looks like, as core/spec.h's SpecDataShape (dtypes by
 * their torch names), so a job spec is shape-checked at submission
 * without loading the data. */
typedef struct {
    char input_dtype[16]; /* "uint8", "float32" */
    int input_ndim;
    int64_t input_shape[DB_MAX_DIMS];
    char target_dtype[16]; /* "int64" labels or "float32" targets */
    int target_ndim;       /* 0 for labels */
    int64_t target_shape[DB_MAX_DIMS];
    int num_classes;       /* labels: 1 + the largest; 0 otherwise */
} DbSampleShape;

typedef struct {
    int64_t id;
    char name[DB_DATASET_NAME_MAX + 1];
    char format[16]; /* "idx", "csv", "npy", "tokens", "text", "imagefolder", "cifar10" */
    DbDatasetState state;
    int64_t owner; /* user id, 0 for none */
    char owner_name[DB_USER_NAME_MAX + 1]; /* "" for none */
    bool shared;   /* readable (and trainable on) by every user */
    int num_files;
    DbDatasetFile files[DB_DATASET_MAX_FILES];
    int64_t bytes;     /* all files */
    char sha256[65];   /* hex; of the file's sha256 lines, see db_dataset_mark_ready */
    int64_t samples;
    DbSampleShape shape;
    /* Format options as JSON text, owned: for csv {"label_column": "y" or
     * [...], "feature_columns": [...]} (both optional); for text {"vocab":
     * its characters in id order}; "{}" otherwise. */
    char *options_json;
    int64_t created_at;
    int64_t progress_bytes, total_bytes; /* importing: fetched so far, expected (0: unknown) */
    char error[256];                     /* why an import failed, "" otherwise */
} DbDataset;

void db_dataset_clear(DbDataset *ds); /* frees options_json; the struct may be reused */

/* The dataset's files as a JSON array of {role, name, bytes, sha256} (a new
 * reference; NULL when out of memory): what its row stores, and what the
 * API shows. */
json_t *db_dataset_files_json(const DbDataset *ds);

/* [A-Za-z0-9._-]{1,128}, not "." or "..", not only digits (it would read
 * as an id). 0, or DB_INVALID with "dataset name '...': ..." */
int db_dataset_name_check(const char *name);

/* Inserts a dataset in state `uploading` and creates its empty directory
 * (<data-dir>/datasets/<id>, mode 0755) for the upload to stream into.
 * options_json may be NULL ("{}"). Names are unique per owner: DB_CONFLICT
 * when the owner has one of that name already; DB_INVALID for a bad name or
 * format. */
int db_dataset_insert(Db *db, const char *name, const char *format, const char *options_json,
                      int64_t owner, int64_t *id_out);
/* "<data-dir>/datasets/<id>" into buf. */
int db_dataset_dir(const Db *db, int64_t id, char *buf, size_t size);
/* Records what the upload produced and makes the dataset `ready` (listed
 * and usable by jobs): info's files (num_files, files[]), bytes, sha256,
 * samples, shape, and options_json when it is not NULL (what loading
 * found: an image folder's class names, a text's vocabulary); its other
 * fields are ignored. When info->sha256 is ""
 * it is computed as the sha256 of the text "<role> <file sha256>\n" for each
 * file in order. DB_CONFLICT when it is not `uploading` or `importing`. */
int db_dataset_mark_ready(Db *db, int64_t id, const DbDataset *info);
/* uploading -> importing, or an import's progress. */
int db_dataset_import_progress(Db *db, int64_t id, int64_t bytes, int64_t total);
/* An upload's bytes stored so far (progress_bytes; its state stays
 * `uploading`): the owner's holdings count them, as an import's. */
int db_dataset_upload_progress(Db *db, int64_t id, int64_t bytes);
/* An import that failed: its error kept for the user to read (the row stays
 * `importing` with the error until deleted). */
int db_dataset_import_failed(Db *db, int64_t id, const char *error);
int db_dataset_set_shared(Db *db, int64_t id, bool shared);
int db_dataset_get(Db *db, int64_t id, DbDataset *out);
/* A dataset as `data.train` and the URL's {id} name it, among those the
 * viewer sees: an id (all digits); "user/name"; or a name, the viewer's
 * own first, else a shared one (any one, for an admin). DB_NOT_FOUND for
 * none (also for one the viewer may not see: its existence is not told),
 * DB_CONFLICT when a name is several others' (then "user/name" or the id
 * says which). */
int db_dataset_resolve(Db *db, const DbViewer *viewer, const char *ref, DbDataset *out);
/* The datasets the viewer sees, ordered by id: of owner (0: every owner);
 * include_uploading false lists only `ready` ones. *out is an array of *n
 * (free with db_dataset_list_free). */
int db_dataset_list(Db *db, const DbViewer *viewer, int64_t owner, bool include_uploading,
                    DbDataset **out, int *n);
/* Queued or running jobs that train on the dataset: *count of them, and
 * the first's id in *job (may be NULL). */
int db_dataset_jobs(Db *db, int64_t id, int *count, int64_t *job);
void db_dataset_list_free(DbDataset *list, int n);
/* A DELETE's claim on a dataset: out of 'ready' (or 'importing') and out
 * of sight, unless a queued or running job names it (DB_CONFLICT: in one
 * statement, so no job's insert crosses it) or another DELETE took it
 * first (DB_NOT_FOUND). */
int db_dataset_claim_delete(Db *db, int64_t id);
/* Deletes the dataset: out of 'ready' unless a job names it (DB_CONFLICT,
 * as above), its directory moved aside in one rename, then its row. The
 * directory moved aside (<data-dir>/datasets/.trash-<id>) is removed here
 * when trash is NULL; else its path goes to trash ("" when there was none)
 * for the caller to remove (db_remove_tree) where a folder of many files
 * may take its time. After a crash the next start's
 * db_dataset_delete_stale and db_dataset_trash_each finish it. */
int db_dataset_delete(Db *db, int64_t id, char *trash, size_t size);
/* fn(path, ctx) for each directory a delete moved aside and did not remove
 * (the daemon stopped first): for the next start to remove. */
int db_dataset_trash_each(Db *db, void (*fn)(const char *path, void *ctx), void *ctx);
/* Deletes datasets left `uploading` or `importing` (by a daemon that died
 * mid-upload); call at start, before serving. *n (may be NULL) gets how
 * many. */
int db_dataset_delete_stale(Db *db, int *n);
/* "<data-dir>/datasets/<id>/<file name>" of the file with this role. */
int db_dataset_file_path(const Db *db, const DbDataset *ds, const char *role, char *buf,
                         size_t size);

/* ---- jobs (storage/jobs.c) ---- */

typedef enum {
    DB_JOB_QUEUED,
    DB_JOB_RUNNING,
    DB_JOB_SUCCEEDED,
    DB_JOB_FAILED,
    DB_JOB_CANCELLED,
} DbJobState;
#define DB_JOB_NUM_STATES 5
#define DB_JOB_NAME_MAX 128 /* as a spec's name may be */

const char *db_job_state_name(DbJobState s); /* "queued", ... */
/* DB_INVALID with an error for an unknown name. */
int db_job_state_parse(const char *name, DbJobState *out);
static inline bool db_job_state_final(DbJobState s) { return s >= DB_JOB_SUCCEEDED; }

/* Progress of a job, as stored at the end of each epoch and at the end of
 * the job (the scheduler keeps the live one: scheduler_progress). */
typedef struct {
    int epoch;            /* the epoch in progress (0-based) */
    int64_t step;         /* optimizer steps done */
    int64_t total_steps;  /* of the whole run */
    double samples_per_s; /* training samples over training time (no
                             validation): the last epoch's, or live the
                             epoch in progress so far */
    double eta_s;         /* seconds left; -1 when unknown */
} DbJobProgress;

/* A job's devices as text: one ("cpu", "cuda:0") or a list of GPUs
 * ("cuda:0,cuda:2"), at most this long. */
#define DB_DEVICES_MAX 159

typedef struct {
    int64_t id;
    char name[DB_JOB_NAME_MAX + 1]; /* the spec's name, may be "" */
    int64_t owner;  /* user id, 0 for none */
    char *spec_json; /* owned: the spec as submitted */
    DbJobState state;
    char device[DB_DEVICES_MAX + 1]; /* "cpu", "cuda:0", "cuda:0,cuda:1": where it runs / ran;
                                        "" before */
    int priority;    /* orders its owner's own jobs: higher runs first */
    int attempt;     /* 1 on the first run, +1 for each resume */
    int64_t created_at, started_at, finished_at; /* started_at: of the latest attempt */
    char *error;     /* owned; NULL unless failed */
    DbJobProgress progress;
    char device_request[DB_DEVICES_MAX + 1]; /* what the spec asks (DbJobNew's) */
    int ranks;               /* its data-parallel processes */
    int64_t parameters;      /* of the model (core/spec.h SpecModelSize) */
    int64_t train_bytes;     /* memory training it takes, at least */
    char owner_name[DB_USER_NAME_MAX + 1];
    /* the datasets its spec names, resolved at submission; 0 for none */
    int64_t train_dataset, val_dataset;
    int admin_priority; /* set by an admin: ahead of other users' work */
    int preemptions;    /* times it was stopped for a job of higher priority */
} DbJob;

void db_job_clear(DbJob *job); /* frees spec_json and error */

/* A job as submitted: its spec, checked, and what the queue needs of it. */
typedef struct {
    const char *name;      /* may be NULL */
    int64_t owner;         /* user id, 0 for none */
    bool owner_admin;      /* sees every dataset (as owner 0 does) */
    const char *spec_json; /* the spec as submitted */
    int priority;
    /* "auto", "cpu", "cuda:N" (one device), "cuda" (any `ranks` GPUs, one
     * per rank) or "cuda:0,cuda:2" (those GPUs); NULL: "auto" */
    const char *device_request;
    int ranks; /* data-parallel processes; 0: 1 */
    int64_t parameters, train_bytes;
    int64_t train_dataset, val_dataset; /* 0 for none */
    int64_t total_steps;                /* of the whole run, 0 when unknown */
} DbJobNew;

/* A new job in state `queued`. */
int db_job_insert(Db *db, const DbJobNew *job, int64_t *id_out);
int db_job_get(Db *db, int64_t id, DbJob *out);

typedef struct {
    int state;          /* a DbJobState, or -1 for every state */
    int64_t owner;      /* 0: every owner */
    int limit;          /* 1..1000; 0 means 100 */
    int64_t offset;     /* rows to skip (with before_id or alone) */
    int64_t before_id;  /* cursor: only ids below it; 0 for none */
    bool with_spec;     /* fill spec_json (NULL otherwise) */
} DbJobQuery;

/* Jobs newest first (id descending). *next_cursor gets the before_id of
 * the next page, 0 when this is the last. Free with db_job_list_free. */
int db_job_list(Db *db, const DbJobQuery *q, DbJob **out, int *n, int64_t *next_cursor);
void db_job_list_free(DbJob *list, int n);

/* queued -> running: attempt + 1, started_at now, device set, error and
 * finished_at cleared. DB_CONFLICT when it is no longer queued (cancelled
 * meanwhile). *out (may be NULL) gets the updated job. */
int db_job_claim(Db *db, int64_t id, const char *device, DbJob *out);
/* running -> succeeded | failed | cancelled, finished_at now, error stored
 * (NULL for none). DB_CONFLICT when it is not running. */
int db_job_finish(Db *db, int64_t id, DbJobState final, const char *error);
/* queued -> cancelled (finished_at now), line (NULL for none) stored in
 * its log in the same transaction. DB_CONFLICT when not queued. */
int db_job_cancel_queued(Db *db, int64_t id, const char *line);
/* running -> queued for one job (a daemon stopping, SIGTERM); the attempt
 * count stays, the next claim adds one. -> cancelled instead when a cancel
 * was asked of it (db_job_cancel_requested), with cancel_line (NULL for
 * none) stored in its log in the same transaction; *state (may be NULL)
 * says which. DB_CONFLICT when not running. */
int db_job_requeue(Db *db, int64_t id, const char *cancel_line, DbJobState *state);
/* The same for a job of higher priority, counted in preemptions. */
int db_job_preempted(Db *db, int64_t id, const char *cancel_line, DbJobState *state);
/* The priority among its owner's jobs (admin false), or an admin's over
 * other users' work (admin true). DB_CONFLICT when it has ended. */
int db_job_set_priority(Db *db, int64_t id, bool admin, int priority);
/* A cancel asked of a running job, kept for db_job_recover_running.
 * DB_CONFLICT when it is not running. */
int db_job_cancel_requested(Db *db, int64_t id);
/* Daemon start: the jobs a previous daemon left running. Those whose end
 * is known end so: the end their ranks reported for their current attempt
 * (succeeded, failed; cancelled when a cancel was asked, else it was a
 * preemption's or a stop's), or cancelled when a cancel was asked. The
 * rest go back to the queue, their attempt count kept. *requeued and
 * *ended (may be NULL): how many. One transaction. */
int db_job_recover_running(Db *db, int *requeued, int *ended);
/* A job's attempt, by number. */
typedef struct {
    int64_t job;
    int attempt;
} DbJobAttempt;
/* The running jobs' current attempts (*out malloc'ed, free it): read at
 * daemon start, before db_job_recover_running, for the files of the runs a
 * previous daemon left. */
int db_job_running_attempts(Db *db, DbJobAttempt **out, int *n);
int db_job_set_progress(Db *db, int64_t id, const DbJobProgress *p);

/* ---- attempts run outside the daemon (storage/jobs.c) ----
 *
 * Their ranks report over HTTP with a token of the attempt
 * (server/remote_attempt.c issues it; only its sha256 is stored). */

typedef struct {
    DbJobState state;        /* the job's */
    int attempt;             /* the job's current attempt */
    char token_sha256[65];   /* of the remote token; "" for none */
    int token_attempt;       /* the attempt the token belongs to */
    int64_t log_seq;         /* the next log line number to store */
} DbJobRemote;

/* Stores the token's sha256 (hex) for `attempt`, which must be the job's
 * current attempt of a running job (DB_CONFLICT otherwise); the attempt's
 * log numbering and reported end start afresh. */
int db_job_remote_token_set(Db *db, int64_t job, int attempt, const char *token_sha256);
int db_job_remote_get(Db *db, int64_t job, DbJobRemote *out);

/* Whether a log line numbered seq is new, given the next number expected
 * (*next): true and *next moved past it when seq >= *next. Pure. */
bool db_log_seq_accept(int64_t *next, int64_t seq);

/* The lines a rank of `attempt` sent, numbered seqs[i], appended to the
 * job's log in one transaction: only those db_log_seq_accept takes against
 * the stored next number, which moves past them, so a batch sent again
 * stores nothing twice. *stored (may be NULL): how many were new.
 * DB_CONFLICT when the attempt is no longer the job's remote one. */
int db_job_remote_logs(Db *db, int64_t job, int attempt, const int64_t *seqs,
                       const char *const *lines, int n, int *stored);
/* The attempt's log numbering starts again at 0 (a rank of it started
 * over: GET .../resume). */
int db_job_remote_log_restart(Db *db, int64_t job, int attempt);

/* The end the ranks of `attempt` reported (final: succeeded, failed or
 * cancelled; error NULL for none). Reported again, it replaces. */
int db_job_remote_end_set(Db *db, int64_t job, int attempt, DbJobState state, const char *error);
/* That end read back: DB_OK with *state and *error (malloc'ed, NULL for
 * none; free it), DB_NOT_FOUND when the attempt has reported none. */
int db_job_remote_end(Db *db, int64_t job, int attempt, DbJobState *state, char **error);

/* A queued job as the queue sees it. */
typedef struct {
    int64_t id, owner;
    char name[DB_JOB_NAME_MAX + 1];
    int priority, admin_priority;
    char device_request[DB_DEVICES_MAX + 1];
    int ranks;
    int64_t train_bytes;
    int64_t created_at;
} DbQueuedJob;

/* The queued jobs, priority descending, then created_at and id ascending
 * (the order they run in is server/queue_plan.h's, the fair queue's).
 * Free *out with free(). */
int db_job_queue(Db *db, DbQueuedJob **out, int *n);
/* Jobs per state, indexed by DbJobState (for GET /metrics). */
int db_job_count_by_state(Db *db, int64_t counts[DB_JOB_NUM_STATES]);

/* ---- metrics (storage/metrics.c) ---- */

#define DB_METRIC_NAME_MAX 63
/* Series are summarised per block of this many steps (metric_blocks.c). */
#define DB_METRIC_BLOCK_STEPS 256

typedef struct {
    char name[DB_METRIC_NAME_MAX + 1];
    int64_t step;
    int epoch;
    double value;
    double wall_time; /* when it was logged: clock_wall_s(); NAN for rows of schema 3 */
} DbMetric;

/* One metric, written now and stamped with the time (INSERT OR REPLACE on
 * (job, name, step): a resumed attempt overwrites). Training uses the
 * MetricWriter instead. */
int db_metric_put(Db *db, int64_t job, const char *name, int64_t step, int epoch, double value);

typedef struct {
    const char *name; /* NULL: every metric */
    int64_t after;    /* steps > after; -1 (or any negative) for all */
    int64_t before;   /* steps < before; 0 (or any negative) for no bound */
    int limit;        /* 1..100000; 0 means 10000 */
    /* every metric (name NULL) only: when set, the rows of step after + 1
     * named past it, then the steps after that: a step of more rows than
     * a limit read on from where the last read stopped */
    const char *past_name;
} DbMetricQuery;

/* History in step order (then name): the rows of design.md's
 * `?name=&after=&limit=`. Free *out with free(). */
int db_metric_query(Db *db, int64_t job, const DbMetricQuery *q, DbMetric **out, int *n);

/* One bucket of a downsampled series: the points with step in
 * [first_step, last_step], their min and max and the value at last_step. */
typedef struct {
    int64_t first_step, last_step;
    int epoch;        /* of last_step */
    double wall_time; /* of last_step */
    double min, max, last;
    int64_t count;
} DbMetricBucket;

/* The series `name` after step `after` and before step `before` (0 for no
 * bound), in at most max_points buckets of equal step width spanning only
 * those steps, in step order, empty buckets left out. When the steps
 * span no more than max_points every bucket is one point (min = max =
 * last). Buckets of 4 blocks or more are made of whole blocks of
 * DB_METRIC_BLOCK_STEPS steps, aligned to them (the first and the last
 * then cover less, and there may be fewer: at least 4/5 of what a width
 * of its own would give), from the blocks' summaries: a million steps in
 * ~4,000 reads; narrower ones in one pass over the rows. Free *out with
 * free(). */
int db_metric_downsample(Db *db, int64_t job, const char *name, int64_t after, int64_t before,
                         int max_points, DbMetricBucket **out, int *n);
/* The newest point (highest step) of each metric of a job, by name. */
int db_metric_latest(Db *db, int64_t job, DbMetric **out, int *n);
typedef struct {
    int64_t job;
    DbMetric metric;
} DbJobMetric;
/* db_metric_latest for the n jobs in ids at once, in one query (a list of
 * jobs shows each one's newest values): by job id, then name. Free *out
 * with free(). */
int db_metric_latest_jobs(Db *db, const int64_t *ids, int n, DbJobMetric **out, int *count);
/* Deletes the job's metrics with step > after_step (superseded on resume).
 * *deleted may be NULL. */
int db_metric_delete_after(Db *db, int64_t job, int64_t after_step, int64_t *deleted);
int db_metric_count(Db *db, int64_t job, int64_t *count);

/* The batched writer: training threads push, one background thread
 * commits what has accumulated in one transaction every ~100 ms or 1000
 * rows, so a training step never waits for SQLite. A failed commit is
 * retried (and reported on stderr); a queued row is never dropped. */
typedef struct MetricWriter MetricWriter;

MetricWriter *metric_writer_start(Db *db); /* NULL with an error */
/* Whether n more rows would be queued now without waiting (a caller that
 * must not wait, an HTTP thread, answers 503 instead). */
bool metric_writer_has_room(MetricWriter *w, size_t n);
/* Appends to the in-memory queue, stamped with the time of the call;
 * returns at once (it waits only when more than 4M rows are pending, i.e.
 * SQLite is stuck). Names longer than DB_METRIC_NAME_MAX are cut. 0, or -1
 * when the queue cannot grow (out of memory): that row is not stored,
 * which the caller must not let pass for a stored history. */
int metric_writer_push(MetricWriter *w, int64_t job, const char *name, int64_t step, int epoch,
                       double value);
/* Commits everything pushed before the call now and waits for it. 0, or
 * -1 when the commit keeps failing (3 tries in a row, one at least since
 * the call), with the last try's error ("metric writer: commit: database
 * or disk is full", sys_errno ENOSPC) and how many rows wait; they stay
 * queued and are committed once it works. */
int metric_writer_flush(MetricWriter *w);
/* Counts commits: it changes after each committed batch. */
uint64_t metric_writer_generation(MetricWriter *w);
/* Waits until the generation differs from `seen` or timeout_ms passes;
 * returns the generation. For SSE followers that wait for new rows. */
uint64_t metric_writer_wait(MetricWriter *w, uint64_t seen, int timeout_ms);
/* Flushes, stops the thread, frees. NULL is fine. */
void metric_writer_stop(MetricWriter *w);

/* ---- checkpoints (storage/checkpoints.c) ---- */

/* Checkpoints are taken after an epoch (every `checkpoint.every_epochs`,
 * and after the last) into "jobs/<job>/checkpoints/epoch-<N>"; a daemon
 * stopping mid-epoch saves a `partial` one into ".../step-<S>", only for
 * resuming (removed as soon as a newer checkpoint exists). */
typedef struct {
    int64_t id, job_id;
    int epoch;       /* the epoch completed (partial: the epoch in progress) */
    int64_t step;    /* optimizer steps done; unique per job */
    bool partial;
    char path[256];  /* the directory, relative to the data dir */
    int64_t bytes;   /* model.safetensors (the downloadable file) */
    int64_t disk_bytes; /* every file of the directory (the trainer's state too): the quota's */
    char sha256[65]; /* of model.safetensors, hex */
    int64_t created_at;
} DbCheckpoint;

/* The relative directory of a checkpoint: "jobs/<job>/checkpoints/epoch-<epoch>",
 * or ".../step-<step>" when partial, into buf. */
int db_checkpoint_rel_dir(int64_t job, int epoch, int64_t step, bool partial, char *buf,
                          size_t size);
/* Records a checkpoint directory already written (rel_dir as above):
 * hashes its model.safetensors for bytes and sha256. A row of the same
 * (job, step) is replaced (a resumed attempt re-saving it). *out may be
 * NULL. db_checkpoint_describe then db_checkpoint_record, in one call. */
int db_checkpoint_insert(Db *db, int64_t job, int epoch, int64_t step, bool partial,
                         const char *rel_dir, DbCheckpoint *out);
/* The files of the checkpoint written at rel_dir, into *k: its path, the
 * bytes and sha256 of model.safetensors, every file's bytes (disk_bytes).
 * Reads them whole, touching no row: what may take long, before a lock. */
int db_checkpoint_describe(const Db *db, const char *rel_dir, DbCheckpoint *k);
/* The row of a checkpoint described by db_checkpoint_describe, as
 * db_checkpoint_insert makes it. */
int db_checkpoint_record(Db *db, int64_t job, int epoch, int64_t step, bool partial,
                         const DbCheckpoint *described, DbCheckpoint *out);
/* Removes the directory rel_dir of a checkpoint written but not recorded
 * (its metrics or its row could not be stored: a full disk), unless a row
 * names it. DB_OK when it is gone or recorded. */
int db_checkpoint_discard(Db *db, int64_t job, const char *rel_dir);
/* A job's checkpoints, oldest (lowest step) first. Free *out with free(). */
int db_checkpoint_list(Db *db, int64_t job, DbCheckpoint **out, int *n);
int db_checkpoint_get(Db *db, int64_t id, DbCheckpoint *out);
/* The complete (not partial) checkpoint of a job after this epoch. */
int db_checkpoint_get_epoch(Db *db, int64_t job, int epoch, DbCheckpoint *out);
/* The newest (highest step) checkpoint of a job: the one to resume from. */
int db_checkpoint_latest(Db *db, int64_t job, DbCheckpoint *out);
/* Absolute path of the checkpoint's file ("model.safetensors",
 * "trainer.safetensors") or of its directory (file NULL). */
int db_checkpoint_file_path(const Db *db, const DbCheckpoint *c, const char *file, char *buf,
                            size_t size);
/* Keeps the newest keep_last complete checkpoints of a job (keep_last >= 1)
 * and removes partial ones older than the newest checkpoint: for each, its
 * files and directory are removed first, then its row, so a crash in
 * between leaves a row whose files are gone and the next call finishes it.
 * Idempotent. *removed may be NULL. */
int db_checkpoint_gc(Db *db, int64_t job, int keep_last, int *removed);
/* By how many bytes on disk a job's checkpoints would grow (< 0: shrink)
 * were `add` recorded (its step, partial or not, and disk_bytes, as
 * db_checkpoint_describe gives them; replacing the row of that step) and
 * db_checkpoint_gc(keep_last) run: what a quota weighs before the row is
 * made. */
int db_checkpoint_growth(Db *db, int64_t job, const DbCheckpoint *add, int keep_last,
                         int64_t *growth);
/* Tidies a job's checkpoints directory before an attempt: what no row names
 * goes (a save's temporary directory left by a crash, a checkpoint replaced
 * or not recorded), except that a recorded checkpoint whose directory is
 * missing (a crash inside a swap on a filesystem without RENAME_EXCHANGE)
 * gets its set-aside copy back. *removed (may be NULL) counts what went. */
int db_checkpoint_collect_strays(Db *db, int64_t job, int *removed);

/* ---- job logs (storage/logs.c) ---- */

typedef struct {
    int64_t seq; /* 1, 2, ... per job, across attempts */
    int64_t ts;  /* ms */
    char *line;  /* owned */
} DbLogLine;

/* Appends a line (no newline needed; one is stripped). *seq may be NULL. */
int db_log_append(Db *db, int64_t job, const char *line, int64_t *seq);
/* Lines with seq > after_seq, oldest first, at most limit (0: 1000). */
int db_log_list(Db *db, int64_t job, int64_t after_seq, int limit, DbLogLine **out, int *n);
/* The last n lines (1..100000), oldest first: fewer when the log is shorter. */
int db_log_tail(Db *db, int64_t job, int n, DbLogLine **out, int *count);
void db_log_list_free(DbLogLine *lines, int n);

#endif
