/* checkpoint_store.c - a job's checkpoint written, recorded, collected;
 * see checkpoint_store.h. */
#include "server/checkpoint_store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "server/disk_space.h"
#include "server/quota.h"
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

/* Whether the job's owner may keep the checkpoint `add` (described, its
 * step set): their checkpoints, grown by it (less the one it replaces and
 * what keep_last then collects), within their quota. Weighed before its
 * row is made, so that a refused one costs none of the checkpoints before
 * it. 0; CHECKPOINT_OVER_QUOTA with the error that says by how much not;
 * or -1. */
static int within_quota(const CheckpointStore *cs, const DbCheckpoint *add) {
    Db *db = cs->s->db;
    DbJob j;
    if (db_job_get(db, cs->job, &j) != DB_OK) return -1;
    int64_t owner = j.owner, growth;
    db_job_clear(&j);
    if (owner <= 0) return 0;
    if (db_checkpoint_growth(db, cs->job, add, cs->keep_last, &growth) != DB_OK)
        return -1;
    if (growth <= 0) return 0;
    DbQuota q;
    DbUsage held;
    char user[DB_USER_NAME_MAX + 1], msg[256];
    if (quota_lookup(db, owner, &cs->s->quota_defaults, &q, &held, user, sizeof user) != DB_OK)
        return -1;
    if (quota_allows(user, &q, QUOTA_CHECKPOINT_BYTES, held.checkpoint_bytes, growth, msg,
                     sizeof msg))
        return 0;
    error_set("not kept: %s; the checkpoints before it are kept", msg);
    return CHECKPOINT_OVER_QUOTA;
}

/* Weighing a checkpoint against its owner's quota, recording it and
 * collecting what it outlives are one step for the whole daemon, so that
 * two checkpoints of one owner at once (two jobs, a job and a rank's PUT)
 * cannot both pass the quota on the same holdings: milliseconds of SQLite
 * each (the files are hashed before it), against the epoch between a
 * job's checkpoints. */
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;

/* Under record_lock: the checkpoint written at rel (described: its hash
 * and sizes, read before the lock) weighed, recorded into *c and
 * collected; 0, CHECKPOINT_OVER_QUOTA or -1, it removed again. */
static int record(const CheckpointStore *cs, int epoch, int64_t step, bool partial,
                  const char *rel, const DbCheckpoint *described, DbCheckpoint *c) {
    DbCheckpoint add = *described;
    add.step = step, add.partial = partial;
    int quota = within_quota(cs, &add);
    if (quota != 0) {
        checkpoint_unrecorded(cs, rel);
        return quota;
    }
    if (db_checkpoint_record(cs->s->db, cs->job, epoch, step, partial, described, c) != DB_OK) {
        error_prefix("recording it");
        return checkpoint_unrecorded(cs, rel);
    }
    int removed = 0;
    if (db_checkpoint_gc(cs->s->db, cs->job, cs->keep_last, &removed) != DB_OK)
        scheduler_log(cs->job, "error", "checkpoint gc: %s", error_get());
    return 0;
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
    DbCheckpoint described, c;
    if (db_checkpoint_describe(db, rel, &described) != DB_OK) {
        error_prefix("recording it");
        return checkpoint_unrecorded(cs, rel);
    }
    pthread_mutex_lock(&record_lock);
    int rc = record(cs, epoch, step, partial, rel, &described, &c);
    pthread_mutex_unlock(&record_lock);
    if (rc != 0) return rc;
    scheduler_job_log(cs->s, cs->job,
                      "checkpoint %s%s: step %" PRId64 ", %" PRId64 " bytes, sha256 %s", rel,
                      partial ? " (partial, for resuming)" : "", step, c.bytes, c.sha256);
    if (out) *out = c;
    return 0;
}
