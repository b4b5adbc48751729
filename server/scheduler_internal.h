/* scheduler_internal.h - what the queue's workers (server/scheduler.c) and
 * one attempt at a job (server/attempt.c) share, and nobody else uses.
 *
 * A Worker owns one device and runs one attempt at a time; the attempt
 * reads its cancel flag at every step and writes its live progress, and the
 * scheduler says, once the attempt has stopped early, why (worker_stop).
 */
#ifndef TRAIND_SERVER_SCHEDULER_INTERNAL_H
#define TRAIND_SERVER_SCHEDULER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"
#include "server/queue_plan.h"
#include "server/quota.h"
#include "server/scheduler.h"

/* Why a running job was asked to stop. */
typedef enum {
    WORKER_STOP_NONE,
    WORKER_STOP_CANCEL,   /* a user cancelled it: it ends `cancelled` */
    WORKER_STOP_SHUTDOWN, /* the daemon is stopping: checkpointed, back to the queue */
    WORKER_STOP_PREEMPT,  /* a job of higher priority takes the worker: the same */
} WorkerStop;

typedef struct Worker {
    struct Scheduler *s;
    int index;
    Device device;
    char device_name[32];
    uint64_t memory_bytes; /* the device's memory in all, 0 when unknown */
    pthread_t thread;
    bool started;
    /* under s->mu */
    int64_t job_id;
    int64_t job_owner;      /* of job_id */
    int job_admin_priority; /* of job_id, for preemption */
    int64_t job_started_ms;
    int job_preemptions; /* its job's, as claimed */
    /* wall ms since which job_id uses this worker's devices: its start, or
     * with an executor the first poll that finds its ranks running (0 till
     * then: a job pending in Slurm's queue is no one's use) */
    int64_t use_since_ms;
    /* the worker that started job_id when this one only holds its GPU for
     * one of the job's ranks (server/queue_plan.h); -1 otherwise */
    int member_of;
    int slot_gpus; /* an executor's slot: the GPUs job_id asked for */
    WorkerStop stop;
    int64_t preempted_by;   /* WORKER_STOP_PREEMPT: the job that takes its place */
    /* set by cancel/stop, read by the trainer at each step */
    atomic_int cancel;
    /* checkpoint uploads of job_id's ranks under way (an executor's),
     * counted for this claim of the job (claim: under mu, a number new at
     * each claim, so that an upload ending after the job moved on is not
     * taken from the next claim's count) */
    atomic_int uploads;
    uint64_t claim;
    /* under pmu: live progress of job_id */
    pthread_mutex_t pmu;
    DbJobProgress progress;
    /* under pmu, with an executor: how the attempt stands (exec.name ""
     * before its launch), and where its ranks' first report stood (for
     * the ETA; remote_t0 0 before it) */
    SchedulerExecutorInfo exec;
    double remote_t0;
    int64_t remote_step0;
} Worker;

struct Scheduler {
    Db *db;
    MetricWriter *mw;
    SchedulerConfig cfg;
    DbQuota quota_defaults; /* cfg's, or none */
    pthread_mutex_t mu;
    pthread_cond_t work;
    bool stopping;
    atomic_uint_least64_t generation; /* scheduler_generation */
    char report_url[1024];            /* cfg.report_url's copy */
    uint64_t claims; /* under mu: the last Worker.claim given */
    int nworkers;
    Worker workers[];
};

/* The scheduler's own line on stderr through server/log.h:
 * {"event":"job","job":N,"level":...,"message":...}, or "event":"scheduler"
 * for job 0. */
void scheduler_log(int64_t job, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Why the worker's job was asked to stop, once it has (WORKER_STOP_NONE
 * when it was not); *by (may be NULL) the preempting job. */
WorkerStop worker_stop(Worker *w, int64_t *by);

/* One attempt at a claimed job on w's device (server/attempt.c): builds it
 * from its spec, resumes it from its newest checkpoint, trains it, and
 * records how it ended: succeeded, failed, cancelled, or back in the queue
 * when the daemon stops. */
void attempt_run(Worker *w, const DbJob *job);

/* Stores how the job ended (error: NULL, or the failure's message). This
 * write a user cannot do without: while the database fails (a full disk)
 * it is tried again every second, the worker taking no other job, until it
 * is stored or the daemon stops (whose next start puts the job back in the
 * queue, as any job left running). */
void attempt_record_end(Scheduler *s, int64_t job, DbJobState state, const char *error);
/* Puts a stopped job back in the queue (preempted: counted as a
 * preemption), tried again every second while the database fails, as
 * above: a job left `running` with no worker would wait for the next start.
 * A job a cancel was asked of is cancelled instead, and logged so: true. */
bool attempt_requeue(Scheduler *s, int64_t job, bool preempted);
/* A database operation on the job's records: a DB_* code. */
typedef int (*AttemptStore)(Scheduler *s, int64_t job, void *ctx);
/* store(s, job, ctx) until its answer is not DB_ERROR, tried again every
 * second (the first failure logged as "<what>: <error>; trying again every
 * second"). Its answer, with *tries (may be NULL) the tries it took; or
 * DB_ERROR once the daemon stops (its next start finishes the job's
 * records: a job left running is put back in the queue). */
int attempt_store(Scheduler *s, int64_t job, const char *what, AttemptStore store, void *ctx,
                  int *tries);

#endif
