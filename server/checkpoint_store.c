/* checkpoint_store.c - a job's checkpoint written, recorded, collected;
 * see checkpoint_store.h. */
#include "server/checkpoint_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "server/disk_space.h"
#include "server/scheduler_internal.h"

/* A directory made here is fsynced into its parent: a power cut must not
 * lose a job's first checkpoint, whose own files were fsynced. */
static int ensure_dir(const char *path) {
    if (mkdir(path, 0755) == 0) return durable_sync_parent(path);
    if (errno != EEXIST) return error_sys(errno, "cannot create %s", path);
    return 0;
}

/* The error of a checkpoint that could not be written. A full disk is one
 * sentence for the job's user, with the space left (the whole chain, with
 * its temporary paths, goes to the daemon's log); anything else stays as it
 * is. Returns -1. */
static int checkpoint_unwritten(const CheckpointStore *cs, const char *rel) {
    int err = error_last()->sys_errno;
    if (!disk_space_full(err)) return -1;
    scheduler_log(cs->job, "error", "checkpoint %s: %s", rel, error_get());
    char left[96];
    error_set("not written, the disk is full (%s): %s; its partial files were removed, the "
              "checkpoints before it are kept", strerror(err),
              disk_space_left(db_data_dir(cs->s->db), left, sizeof left));
    return error_set_errno(err);
}

/* A checkpoint written but not recorded goes: kept, it would hold disk
 * space that no row accounts for. The error stays the caller's. */
static int checkpoint_unrecorded(const CheckpointStore *cs, const char *rel) {
    Error e = *error_last();
    if (db_checkpoint_discard(cs->s->db, cs->job, rel) != DB_OK)
        scheduler_log(cs->job, "error", "removing checkpoint %s: %s", rel, error_get());
    return error_restore(&e);
}

int checkpoint_store(const CheckpointStore *cs, int epoch, int64_t step, bool partial,
                     DbCheckpoint *out) {
    Db *db = cs->s->db;
    char rel[256], abs[4400], jobdir[4200], ckptdir[4300];
    snprintf(jobdir, sizeof jobdir, "%s/jobs/%" PRId64, db_data_dir(db), cs->job);
    snprintf(ckptdir, sizeof ckptdir, "%s/checkpoints", jobdir);
    if (ensure_dir(jobdir) != 0 || ensure_dir(ckptdir) != 0) return -1;
    if (db_checkpoint_rel_dir(cs->job, epoch, step, partial, rel, sizeof rel) != 0 ||
        db_path(db, rel, abs, sizeof abs) != 0)
        return -1;
    if (cs->write(cs->ctx, abs) != 0) return checkpoint_unwritten(cs, rel);
    if (cs->history_stored(cs->ctx) != 0) return checkpoint_unrecorded(cs, rel);
    DbCheckpoint c;
    if (db_checkpoint_insert(db, cs->job, epoch, step, partial, rel, &c) != DB_OK) {
        error_prefix("recording it");
        return checkpoint_unrecorded(cs, rel);
    }
    int removed = 0;
    if (db_checkpoint_gc(db, cs->job, cs->keep_last, &removed) != DB_OK)
        scheduler_log(cs->job, "error", "checkpoint gc: %s", error_get());
    scheduler_job_log(cs->s, cs->job,
                      "checkpoint %s%s: step %" PRId64 ", %" PRId64 " bytes, sha256 %s", rel,
                      partial ? " (partial, for resuming)" : "", step, c.bytes, c.sha256);
    if (out) *out = c;
    return 0;
}
