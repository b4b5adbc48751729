/* queue_plan.h - the fair queue: in which order the queued jobs run, which
 * of them start now on which free worker, why each of the others waits,
 * and which running job a job of an admin's higher priority preempts.
 *
 * The order, as Slurm's multifactor priority with fair share:
 *   1. the admin's priority (PATCH /v1/jobs/{id} by an admin), higher first:
 *      only an admin puts a job ahead of other users' work;
 *   2. the owner's recent use of the devices (device-seconds decayed with a
 *      half-life, the running jobs' time so far included), least first,
 *      then how many of the owner's jobs run or start before it, fewest
 *      first, so users with equal use take turns;
 *   3. the job's own priority (?priority= at submission), which orders its
 *      owner's jobs only, higher first;
 *   4. submission time, then id.
 * One user's 50 queued jobs so delay another user's single job by at most
 * the job already running.
 *
 * A job of N ranks on GPUs ("gpus": N, "devices": [...], or "auto" with N
 * ranks when N GPUs are free) takes N GPU workers at once, one per rank,
 * and counts N against its owner's GPU limit. While it waits for them, the
 * free GPUs it can use are held for it: jobs after it in the order do not
 * take them, so a stream of one-GPU jobs cannot starve it (Slurm without
 * backfill). "auto" with N ranks runs on one CPU worker when the GPUs are
 * not free; an executor's slot (serve --executor) runs any job.
 *
 * A queued job waits for one of Slurm's reasons: "Device" (no worker of
 * this daemon runs what it asks for), "QuotaRunningJobs" or "QuotaGPUs"
 * (its owner is at their limit), "Resources" (its workers are busy and it
 * is the next for them), "Priority" (jobs ahead of it will take them).
 *
 * Pure: no locks, no I/O; the scheduler calls it under its lock with what
 * it read (server/scheduler.c), and tests call it directly.
 */
#ifndef TRAIND_SERVER_QUEUE_PLAN_H
#define TRAIND_SERVER_QUEUE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "storage/db.h"

typedef enum {
    QUEUE_STARTS,             /* a free worker takes it now */
    QUEUE_PRIORITY,           /* jobs ahead of it take its workers first */
    QUEUE_RESOURCES,          /* its workers are busy; it is next */
    QUEUE_QUOTA_GPUS,         /* its owner uses all the GPUs they may */
    QUEUE_QUOTA_RUNNING_JOBS, /* its owner runs all the jobs they may */
    QUEUE_DEVICE,             /* no worker runs the device it asks for */
} QueueReason;

/* "Priority", "Resources", ... (Slurm's words); "None" for QUEUE_STARTS. */
const char *queue_reason_name(QueueReason r);

/* The most workers one job takes at once (a daemon's workers). */
#define QUEUE_MAX_WORKERS 64

/* A worker as the plan sees it. */
typedef struct {
    Device device;
    char device_name[32];
    bool slot;     /* an executor's slot (serve --executor): runs a job of any device */
    int slot_gpus; /* a slot's: the GPUs its job asked the executor for */
    bool member;   /* holds its GPU for a job of several ranks another worker started */
    int lead;      /* a member's: the index of the worker that started that job */
    int64_t job_id;       /* running now, 0 when idle */
    int64_t job_owner;    /* of that job */
    int job_admin_priority;
    int64_t job_started_ms;
    int job_preemptions; /* times its job was preempted before */
    int64_t use_since_ms; /* its devices in use since; 0 for not yet (pending in an executor) */
    /* The queued job this worker is being freed for (its running job asked
     * to stop for it, or stopped and the worker not claimed since); 0 for
     * none. The plan keeps the worker for that job from the jobs after it
     * in the order (one ahead of it may take it). */
    int64_t freed_for;
} QueueWorker;

/* A user with queued or running jobs. */
typedef struct {
    int64_t id;
    char name[DB_USER_NAME_MAX + 1];
    double usage_s; /* decayed recent use, the running jobs' time so far not included */
    DbQuota quota;  /* effective limits (server/quota.h: < 0 is none) */
} QueueUser;

/* A queued job's place. */
typedef struct {
    int64_t job_id, owner;
    char name[DB_JOB_NAME_MAX + 1]; /* the job's */
    char device_request[DB_DEVICES_MAX + 1];
    int ranks;
    int position;       /* 1 = runs next */
    QueueReason reason;
    char detail[320];   /* "alice uses 2 of 2 GPUs", "its worker, cpu, is busy" */
    int worker;         /* QUEUE_STARTS: the worker that starts it (workers[0]); else -1 */
    int nworkers;       /* QUEUE_STARTS: the workers it takes (its ranks' GPUs), in order */
    int workers[QUEUE_MAX_WORKERS];
    int gpus;           /* QUEUE_STARTS: the GPUs it takes */
    int preempts;       /* the worker whose job it preempts, or -1 */
} QueueEntry;

/* Plans the n queued jobs (in any order) on the workers, now_ms being now
 * and half_life_s the fair share's (the running jobs' time decays by it;
 * 0: never). users must hold every owner of a queued or running job (a
 * missing one counts as no use and no limits). out (n entries) gets the
 * jobs in run order. 0, or -1 with an error (out of memory). */
int queue_plan(const DbQueuedJob *jobs, int n, const QueueWorker *workers, int nw,
               const QueueUser *users, int nu, int64_t now_ms, double half_life_s,
               QueueEntry *out);

#endif
