/* scheduler.h - the daemon's job scheduler: a pool of workers, one per
 * device.
 *
 * Jobs live in the database (storage/db.h); the queue is the set of
 * `queued` rows, with what it needs of each (the owner, the device asked
 * for, the model's size, the priorities) in columns filled at submission.
 * The fair queue (server/queue_plan.h) orders them and says which starts
 * on which free worker, why each other waits, and which running job a job
 * of an admin's priority preempts. Each worker owns one device ("cpu",
 * "cuda:N") and loops: claim the job the plan gives it (queued -> running,
 * attempt + 1) and make an attempt at it (server/attempt.c: build it from
 * its spec with job/build.h, the same code `traind run` uses, train it,
 * record the end: succeeded, failed with the error, cancelled, or back in
 * the queue when preempted).
 *
 * Restarts. scheduler_start puts jobs left `running` (by a daemon that
 * crashed or was stopped) back in the queue. When such a job runs again it
 * resumes from its newest checkpoint (attempt.c), so every step's metric is
 * stored once and the trajectory is the one an uninterrupted run follows.
 *
 * Stopping (scheduler_stop, the SIGTERM path): running jobs are NOT
 * cancelled. Each stops at its next step, is checkpointed where it stands
 * (a mid-epoch checkpoint: train_save_checkpoint saves the data position
 * and the epoch's running sums), its metrics are flushed, and it goes back
 * to `queued`, to resume on the next start. A job whose spec has
 * "checkpoint": null is requeued without one and starts over.
 *
 * Threads. submit, cancel, queue_info, progress and workers are safe
 * to call concurrently from any thread (the HTTP threads) while workers run.
 */
#ifndef TRAIND_SERVER_SCHEDULER_H
#define TRAIND_SERVER_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/spec.h"
#include "server/queue_plan.h"
#include "storage/db.h"

typedef struct Scheduler Scheduler;
struct ExecutorOps; /* server/executor.h */

#define SCHEDULER_MAX_WORKERS 64

typedef struct {
    Db *db;                  /* borrowed; outlives the scheduler */
    MetricWriter *metrics;   /* borrowed; started on db, stopped after the scheduler */
    /* Worker devices, comma separated: "cpu,cpu,cuda:0" (one worker each).
     * NULL or "": `workers` CPU workers and one worker per GPU found. A
     * job with "device": "auto" takes a free GPU before a CPU. */
    const char *devices;
    int workers;             /* CPU workers when devices is NULL; 0 means 1 */
    /* OpenMP threads each job's kernels may use; 0: leave as is. */
    int threads_per_job;
    /* A user's limits unless set for them (serve --quota-*; < 0: none);
     * NULL: none. Copied. */
    const DbQuota *quota_defaults;
    /* How fast recent device use is forgotten, for the fair queue (serve
     * --fairshare-half-life; 0: never). */
    double fairshare_half_life_s;
    /* Tests and instrumentation; may be NULL. Called on the worker's
     * thread after each training step's "loss" metric. */
    void (*step_hook)(void *user, int64_t job_id, int64_t step);
    void *hook_user;
    /* Tests: scheduler_stop requeues running jobs WITHOUT a partial
     * checkpoint, as a kill -9 would leave them (they resume from their
     * last epoch checkpoint). */
    bool stop_without_checkpoint;
    /* Tests: the traind a job of several ranks starts under mpirun (NULL:
     * this process's own binary, the daemon). Borrowed. */
    const char *ranks_program;
    /* Jobs whose ranks run outside the daemon (serve --executor,
     * server/executor.h); NULL: the workers train in process. With one the
     * workers are executor_slots slots (0: 4) with no device of their own,
     * each following one attempt: polled every executor_poll_ms (0: 1000),
     * its ranks reporting to report_url (the daemon's base URL as they
     * reach it; copied). */
    const struct ExecutorOps *executor;
    int executor_slots;
    int executor_poll_ms;
    /* Tests: the grace of ranks told to stop (0: EXECUTOR_CANCEL_GRACE_S). */
    int executor_grace_ms;
    const char *report_url;
} SchedulerConfig;

/* Requeues jobs left running, starts the workers, and lets them take the
 * queued jobs. NULL with an error (a bad device list, no thread). */
Scheduler *scheduler_start(const SchedulerConfig *cfg);

/* The SIGTERM path (see above): stops taking jobs, stops running ones at
 * their next step, checkpoints and requeues them, joins the workers, frees.
 * Queued jobs stay queued. Flushes the metric writer. NULL is fine. */
void scheduler_stop(Scheduler *s);

/* POST /v1/jobs, once the body is a JobSpec: checks it against this
 * daemon for its owner (job_build_check: datasets the owner may use, ready,
 * the model's shapes against theirs; a device this daemon has; a model
 * whose training fits that device's memory), inserts the job as `queued`
 * with spec_json (the spec as submitted) and what the queue needs of it
 * (the datasets resolved, the device, the sizes, the total steps), and
 * wakes the workers. owner NULL: a job of no user.
 * DB_INVALID with an error whose path names the field ("data.train",
 * "model[4]", "device", "model"). */
int scheduler_create_job(Scheduler *s, const JobSpec *spec, const char *spec_json,
                         const DbViewer *owner, int priority, int64_t *id_out);

/* Tells the workers a queued job is there (a job inserted directly with
 * db_job_insert). DB_OK too when a worker has already taken it; DB_NOT_FOUND,
 * or DB_CONFLICT when it has ended. */
int scheduler_submit(Scheduler *s, int64_t job_id);

/* A job's priority among its owner's jobs (admin false), or an admin's over
 * other users' work (admin true), which may preempt a running job of a
 * lower one. DB_NOT_FOUND, or DB_CONFLICT when the job has ended. */
int scheduler_set_priority(Scheduler *s, int64_t job_id, bool admin, int priority);

/* A queued job becomes `cancelled` at once; a running one stops at its
 * next step and is recorded `cancelled` (returns before that happens;
 * *was_running says which, so the reply does not race the worker).
 * DB_NOT_FOUND for no such job, DB_CONFLICT when it has already ended. */
int scheduler_cancel(Scheduler *s, int64_t job_id, bool *was_running);

/* The queue in the order it will run (server/queue_plan.h): each queued
 * job's position, and why it waits or that it starts now. *out (free())
 * holds *n entries. */
int scheduler_queue(Scheduler *s, QueueEntry **out, int *n);
/* One queued job's entry of scheduler_queue. DB_CONFLICT when the job is
 * not queued. */
int scheduler_queue_info(Scheduler *s, int64_t job_id, QueueEntry *out);

/* The live progress of a running job (updated every step): DB_OK, or
 * DB_NOT_FOUND when it is not running here (then the stored
 * DbJob.progress is the latest). */
int scheduler_progress(Scheduler *s, int64_t job_id, DbJobProgress *out);

/* A log line for the job (its stored log, GET /v1/jobs/{id}/logs), also on
 * stderr as a structured line; followers are woken. 0, or -1 with the
 * error when it could not be stored (logged). */
int scheduler_job_log(Scheduler *s, int64_t job, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- attempts run outside the daemon (server/executor.h) ---- */

/* A new token for the job's attempt (server/remote_attempt.c): 32 random
 * bytes as 64 hex characters into token (NUL-terminated), their sha256
 * stored with the attempt (db_job_remote_token_set). Valid while that
 * attempt is the job's current one and the job is running. 0, or -1 with
 * an error (no randomness, a job not running that attempt, storage). */
int scheduler_remote_token(Scheduler *s, int64_t job, int attempt, char token[65]);

/* A checkpoint upload of job's ranks begins: counted on the claim of the
 * job that runs it, which it returns (0: none runs it, nothing counted),
 * for scheduler_upload_end. A preempted attempt's grace waits for those
 * under way (server/executor.h); one that ends after its job moved on
 * (requeued, claimed again) is taken from no count. */
uint64_t scheduler_upload_begin(Scheduler *s, int64_t job);
void scheduler_upload_end(Scheduler *s, uint64_t claim);
/* A report's progress of a job running outside the daemon, as the live
 * progress GET /v1/jobs/{id} shows (the ETA from the steps made since the
 * attempt's first report); *cancel whether the job was asked to stop (a
 * user's cancel, the daemon stopping, a preemption), *preempt whether by a
 * preemption (its ranks checkpoint where they stop, then end). DB_NOT_FOUND
 * when no slot follows the job. p NULL: only *cancel and *preempt. */
int scheduler_remote_progress(Scheduler *s, int64_t job, const DbJobProgress *p, bool *cancel,
                              bool *preempt);

/* How a job's attempt outside the daemon stands, for the job's JSON. */
typedef struct {
    char name[32];     /* "external", "slurm" */
    char handle[128];  /* the launcher's (a Slurm job id); "" before the launch */
    char phase[16];    /* "pending", "running", "ended" */
    char reason[128];  /* pending: why it waits; "" otherwise */
    int restarts;      /* times the launcher requeued it */
} SchedulerExecutorInfo;
/* DB_OK, or DB_NOT_FOUND when no slot follows the job. */
int scheduler_executor_info(Scheduler *s, int64_t job, SchedulerExecutorInfo *out);

/* One worker, for GET /v1/devices and GET /metrics. */
typedef struct {
    char device[32];      /* "cpu", "cuda:0" */
    int64_t job_id;       /* running here, 0 when idle */
    double samples_per_s; /* of that job, 0 when idle */
} SchedulerWorkerInfo;

/* Copies at most max workers' info; returns the number of workers. */
int scheduler_workers(Scheduler *s, SchedulerWorkerInfo *out, int max);

/* A counter bumped whenever a job changes state or logs a line; HTTP
 * followers (SSE on logs, "until the job ends") compare it with the one
 * they last saw. */
uint64_t scheduler_generation(Scheduler *s);
/* Bumps it (a state changed, a line was logged: a rank's report). */
void scheduler_bump(Scheduler *s);
/* Wakes the workers and plans the queue again: a job was queued or left
 * it, a user's limits changed. */
void scheduler_wake(Scheduler *s);

#endif
