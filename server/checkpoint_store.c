/* checkpoint_store.c - a job's checkpoint written, recorded, collected;
 * see checkpoint_store.h. */
#include "server/checkpoint_store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "server/disk_space.h"
#include "server/quota.h"
#include "server/scheduler_internal.h"

/* The directory, fsynced into its parent: a power cut must not lose a
 * job's first checkpoint, whose own files were fsynced. Also when it
 * exists: a rank's upload made it (db_mkdir_p), unsynced. */
static int ensure_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return error_sys(errno, "cannot create %s", path);
    return durable_sync_parent(path);
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
 * cannot both pass the quota on the same holdings: milliseconds of SQLite,
 * renames and folder fsyncs each (the files are hashed before it, the one
 * replaced removed after), against the epoch between a job's checkpoints.
 * A job's attempt collects its strays under it too, once, as it starts. */
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;

/* The staged copy goes again (refused, or not recorded), keeping the
 * error: what is at rel, and its row, stay as they were. */
static int unstage(const char *staged) {
    Error e = *error_last();
    db_remove_tree(staged);
    return error_restore(&e);
}

/* Not recorded after all: the checkpoint it replaced put back at abs (its
 * row still names it), the new one removed, the error kept. Returns -1. */
static int swap_back(const char *staged, const char *abs) {
    Error e = *error_last();
    bool had;
    if (durable_swap_dir(staged, abs, &had) == 0) {
        db_remove_tree(staged);
        durable_sync_parent(abs);
    }
    return error_restore(&e);
}

/* Under record_lock: the checkpoint staged (described: its hash and sizes,
 * read before the lock) admitted, weighed, put in rel's place, recorded
 * into *c and collected; 0 (*replaced: the one it replaced is at staged
 * now), CHECKPOINT_REFUSED, CHECKPOINT_OVER_QUOTA or -1, the staged copy
 * removed. */
static int record(const CheckpointStore *cs, int epoch, int64_t step, bool partial,
                  const char *rel, const char *staged, const DbCheckpoint *described,
                  DbCheckpoint *c, bool *replaced) {
    Db *db = cs->s->db;
    if (cs->admit && cs->admit(cs->ctx) != 0) {
        unstage(staged);
        return CHECKPOINT_REFUSED;
    }
    DbCheckpoint add = *described;
    add.step = step, add.partial = partial;
    int quota = within_quota(cs, &add);
    if (quota != 0) {
        unstage(staged);
        return quota;
    }
    char abs[4400];
    bool had = false;
    if (db_path(db, rel, abs, sizeof abs) != 0 || durable_swap_dir(staged, abs, &had) != 0)
        return unstage(staged);
    /* the one it replaces (at staged now) kept until the row names the new one */
    int rc = durable_sync_parent(abs);
    if (rc == 0 && db_checkpoint_record(db, cs->job, epoch, step, partial, described, c) != DB_OK)
        rc = error_prefix("recording it");
    if (rc != 0) return had ? swap_back(staged, abs) : checkpoint_unrecorded(cs, rel);
    *replaced = had;
    int removed = 0;
    if (db_checkpoint_gc(db, cs->job, cs->keep_last, &removed) != DB_OK)
        scheduler_log(cs->job, "error", "checkpoint gc: %s", error_get());
    return 0;
}

/* Written, its history stored, described: the checkpoint staged beside
 * rel under a name of its own, to take rel's place only once its quota
 * lets it (a refused one must not replace one recorded at the same step:
 * a rank's retry, a resumed attempt). 0 with *described, or -1 with an
 * error, nothing left staged. */
static int stage(const CheckpointStore *cs, const char *rel, const char *staged_rel,
                 const char *staged, DbCheckpoint *described) {
    if (cs->write(cs->ctx, staged) != 0) {
        checkpoint_unwritten(cs, rel);
        return unstage(staged);
    }
    if (cs->history_stored(cs->ctx) != 0) return unstage(staged);
    if (db_checkpoint_describe(cs->s->db, staged_rel, described) != DB_OK) {
        error_prefix("recording it");
        return unstage(staged);
    }
    snprintf(described->path, sizeof described->path, "%s", rel);
    return 0;
}

int checkpoint_store(const CheckpointStore *cs, int epoch, int64_t step, bool partial,
                     DbCheckpoint *out) {
    Db *db = cs->s->db;
    char rel[256], jobdir[4200], ckptdir[4300], staged[4400];
    snprintf(jobdir, sizeof jobdir, "%s/jobs/%" PRId64, db_data_dir(db), cs->job);
    snprintf(ckptdir, sizeof ckptdir, "%s/checkpoints", jobdir);
    if (ensure_dir(jobdir) != 0 || ensure_dir(ckptdir) != 0) return -1;
    if (db_checkpoint_rel_dir(cs->job, epoch, step, partial, rel, sizeof rel) != 0) return -1;
    char *staged_rel = durable_temp_name(rel);
    if (!staged_rel) return -1;
    int rc = db_path(db, staged_rel, staged, sizeof staged);
    DbCheckpoint described, c;
    if (rc == 0) rc = stage(cs, rel, staged_rel, staged, &described);
    free(staged_rel);
    if (rc != 0) return rc;
    bool replaced = false;
    pthread_mutex_lock(&record_lock);
    rc = record(cs, epoch, step, partial, rel, staged, &described, &c, &replaced);
    pthread_mutex_unlock(&record_lock);
    if (rc != 0) return rc;
    if (replaced) db_remove_tree(staged); /* the one it replaced, left there by the swap */
    scheduler_job_log(cs->s, cs->job,
                      "checkpoint %s%s: step %" PRId64 ", %" PRId64 " bytes, sha256 %s", rel,
                      partial ? " (partial, for resuming)" : "", step, c.bytes, c.sha256);
    if (out) *out = c;
    return 0;
}

int checkpoint_collect_strays(Db *db, int64_t job, int *removed) {
    pthread_mutex_lock(&record_lock);
    int rc = db_checkpoint_collect_strays(db, job, removed);
    pthread_mutex_unlock(&record_lock);
    return rc;
}
