/* checkpoint_store.h - one checkpoint of a daemon job put in its place and
 * recorded: what a worker training in process (server/attempt.c) and a
 * rank uploading one over HTTP (server/routes/job_reports.c) both do.
 *
 * The directory <data-dir>/jobs/<id>/checkpoints/epoch-<N> (or step-<S>
 * for a partial one) is written whole by the caller's writer, staged
 * beside it under a temporary name (fsynced); then the job's history up to
 * it must be stored (its metrics committed), so that a recorded checkpoint
 * never points past the stored history; then its owner's checkpoint quota
 * is weighed; then it takes its place (an atomic swap with one recorded at
 * the same step), then its row (bytes and sha256 of model.safetensors),
 * then keep_last garbage collection (those under one lock for the daemon,
 * so that one owner's checkpoints at once are weighed one after the
 * other), and a log line. A checkpoint refused leaves the one recorded at
 * its step, files and row, as it was.
 * A full disk fails it with one sentence for the job's user and the space
 * left; a checkpoint written but not recorded is removed again.
 */
#ifndef TRAIND_SERVER_CHECKPOINT_STORE_H
#define TRAIND_SERVER_CHECKPOINT_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "server/scheduler.h"
#include "storage/db.h"

typedef struct {
    Scheduler *s;
    int64_t job;
    int keep_last; /* the spec's checkpoint.keep_last (>= 1) */
    /* Writes the checkpoint directory dir whole (it does not exist yet).
     * 0, or -1 with an error whose
     * sys_errno is a failed call's (ENOSPC: the disk is full). */
    int (*write)(void *ctx, const char *dir);
    /* 0 when the job's history up to now is stored, or -1 with the error
     * of what is not. */
    int (*history_stored)(void *ctx);
    /* NULL, or called under the daemon's checkpoint lock just before the
     * quota is weighed: 0 to go on, or -1 to refuse the checkpoint (the
     * reason kept in ctx): checkpoint_store then removes it and returns
     * CHECKPOINT_REFUSED. */
    int (*admit)(void *ctx);
    void *ctx;
} CheckpointStore;

/* A checkpoint that would take its owner's checkpoints past their quota
 * (server/quota.h): removed again, the ones before it kept. */
#define CHECKPOINT_OVER_QUOTA (-2)
/* One its admit refused: removed again, the reason the caller's. */
#define CHECKPOINT_REFUSED (-3)

/* 0 with the row in *out (may be NULL), CHECKPOINT_OVER_QUOTA with the
 * error that says by how much, CHECKPOINT_REFUSED, or -1 with an error. */
int checkpoint_store(const CheckpointStore *cs, int epoch, int64_t step, bool partial,
                     DbCheckpoint *out);

/* db_checkpoint_collect_strays under the checkpoint lock: a checkpoint
 * being put in place and recorded is never taken for a stray. */
int checkpoint_collect_strays(Db *db, int64_t job, int *removed);

#endif
