/* executor.h - jobs whose ranks run outside the daemon: `traind serve
 * --executor external|slurm`.
 *
 * One lifecycle for every launcher (server/executor.c); what differs is
 * behind ExecutorOps: how the ranks are started, how they are watched, how
 * they are stopped. With an executor the scheduler's workers are slots
 * (serve --executor-slots) with no device of their own, and an attempt at
 * a job (attempt_run) is executor_attempt_run:
 *   - the attempt's directory <shared-dir>/jobs/<id>/attempt-<n>/ (the
 *     shared dir: --slurm-shared-dir, default the data dir) gets spec.json
 *     (the spec with its datasets and init resolved to files,
 *     server/remote_spec.h: under the data dir, which the nodes then see
 *     through a shared directory, or with --slurm-datasets fetch in the
 *     nodes' cache, and datasets.json, the manifest of what to fetch),
 *     token (mode 0600, the attempt's token: scheduler_remote_token) and
 *     out/ (the ranks' --out). These settings are SlurmConfig's, and the
 *     external launcher's attempts follow them too;
 *   - ops->launch starts the ranks, which run `traind run DIR/spec.json
 *     --report URL --job ID --attempt N --token-file DIR/token --resume
 *     auto --out DIR/out [--datasets-cache CACHE]` and report their metrics, log lines, progress,
 *     checkpoints and end over HTTP (server/routes/job_reports.c);
 *   - ops->poll every --executor-poll-ms (1000): PENDING with a reason is
 *     shown on the job ("executor" in its JSON), ENDED gives the job its
 *     final state: the end the ranks reported (db_job_remote_end), else
 *     failed, "the ranks ended without reporting: <detail>". A launcher's
 *     requeue (restarts grows) needs nothing here: the rerun asks
 *     .../resume where to start;
 *   - a user's cancel: ops->cancel, and the ranks' next report is answered
 *     "cancel": true; the job ends as they report it, or `cancelled` when
 *     they have not reported within EXECUTOR_CANCEL_GRACE_S;
 *   - a preemption: the ranks' next report is answered "preempt": true
 *     (and "cancel": true); they stop at the same step, rank 0 uploads a
 *     partial checkpoint there (PUT .../checkpoints/{epoch}?partial=true)
 *     and reports their end; then, or once EXECUTOR_CANCEL_GRACE_S have
 *     passed with no checkpoint upload of theirs under way (at once while
 *     they are pending; EXECUTOR_UPLOAD_GRACE_S at most), ops->cancel, and the job
 *     goes back to the queue, to resume from that checkpoint;
 *   - the daemon stopping: ops->cancel, and the job goes back to the
 *     queue, to resume from its newest checkpoint.
 */
#ifndef TRAIND_SERVER_EXECUTOR_H
#define TRAIND_SERVER_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/spec.h"
#include "server/slurm.h"
#include "storage/db.h"

#define EXECUTOR_CANCEL_GRACE_S 30
/* A preempted attempt whose rank 0 is uploading its checkpoint when the
 * grace ends is waited for while the upload lasts, up to this: a
 * checkpoint of GBs takes longer than the grace to send and hash, and
 * cut off it would cost the job all it did since its last one. */
#define EXECUTOR_UPLOAD_GRACE_S 600

typedef struct {
    int64_t job;
    int attempt;
    char dir[4096];        /* <shared-dir>/jobs/<id>/attempt-<n> */
    char spec_path[4096];  /* dir/spec.json: the spec, data sources resolved to files */
    char token_path[4096]; /* dir/token, mode 0600 */
    char out_dir[4096];    /* dir/out: the ranks' --out */
    char report_url[1024]; /* the daemon's base URL as ranks reach it (serve --advertise-url,
                              default http://127.0.0.1:<port>) */
    int ranks;             /* processes to start (1 unless the spec asks for more) */
    const JobSpec *spec;
    /* datasets = fetch: the ranks' --datasets-cache, and dir/datasets.json
     * (the manifest, beside spec.json); NULL and "" otherwise */
    const char *datasets_cache;
    char manifest_path[4096];
} RemoteAttempt;

typedef enum { REMOTE_PENDING, REMOTE_RUNNING, REMOTE_ENDED } RemotePhase;

typedef struct {
    RemotePhase phase;
    char reason[128]; /* PENDING: why it waits ("Resources", "Priority", ...) */
    char detail[256]; /* ENDED: how ("COMPLETED exit 0", "NODE_FAIL", ...) */
    int restarts;     /* times the launcher requeued it */
} RemoteStatus;

/* What serve's options configure the launchers with. */
typedef struct {
    SlurmConfig slurm; /* --slurm-config, --slurm-* */
} ExecutorConfig;

typedef struct ExecutorOps {
    const char *name; /* "external", "slurm" */
    /* starts the attempt's ranks; fills handle (e.g. the Slurm job id). 0, or -1 with error */
    int (*launch)(void *ctx, const RemoteAttempt *a, char *handle, size_t size);
    /* how they stand. 0, or -1 with an error (logged; polled again) */
    int (*poll)(void *ctx, const RemoteAttempt *a, const char *handle, RemoteStatus *out);
    /* asks them to stop; returns at once */
    void (*cancel)(void *ctx, const char *handle);
    /* after a cancel: returns once what runs them here is gone, killed
     * after grace_s (the devices they held are free then); NULL when
     * nothing of theirs runs on this machine (Slurm's, external ones) */
    void (*reap)(void *ctx, const char *handle, int grace_s);
    /* at submission: whether the launcher can run the job (0, *gpus the
     * GPUs it would take in all), or -1 with an error at the spec's path;
     * NULL: any job, no GPUs */
    int (*admit)(void *ctx, const JobSpec *spec, int *gpus);
    void *ctx;
    /* where the attempts' files go (shared_dir, datasets): executor_open
     * sets it; NULL: today's defaults, the data dir and datasets shared */
    const ExecutorConfig *config;
} ExecutorOps;

/* The ops of `serve --executor NAME` into *out ("external", "slurm"; a
 * launcher adds its row to executor.c's table); config is borrowed and
 * outlives them, and checked (slurm_config_check). 0, or -1 with an error
 * naming the known ones. */
int executor_open(const char *name, Db *db, const ExecutorConfig *config, ExecutorOps *out);
const char *executor_name(const ExecutorOps *ops);

/* "external": launch does nothing (the ranks are started by someone else,
 * a test or an admin, with the files in the attempt's directory); poll
 * says RUNNING until the ranks' reported end arrives, then ENDED. ctx: the
 * Db. */
int executor_external(Db *db, const ExecutorConfig *config, ExecutorOps *out);
/* "slurm" (server/executor_slurm.c): sbatch, scontrol, scancel with
 * config->slurm. */
int executor_slurm(Db *db, const ExecutorConfig *config, ExecutorOps *out);

/* "mpirun" (server/executor_ranks.c): a job of several ranks on a
 * daemon that trains in process, its ranks started by its worker with
 * mpirun on the worker's machine, sharing `threads` OpenMP threads, on
 * `devices` ("cpu", or one GPU per rank: "cuda:0,cuda:1").
 * executor_ranks_close frees what it made. */
int executor_ranks(const char *traind, int threads, const char *devices, ExecutorOps *out);
void executor_ranks_close(ExecutorOps *ops);

/* Daemon start: the out/ of the attempts a previous daemon left running
 * (db_job_running_attempts) goes, whether their jobs ended or were
 * queued again; their ranks, if any still run, are refused from now as
 * those of an attempt that is not running. ops NULL: in process. */
void executor_clean_left_attempts(Db *db, const ExecutorOps *ops, const DbJobAttempt *left,
                                  int n);

struct Worker;
/* One attempt at a claimed job through ops, on slot w (see above). */
void executor_attempt_run(struct Worker *w, const DbJob *job, const ExecutorOps *ops);

#endif
