/* build.h - from a job spec to a ready Trainer: the glue that
 * `traind run` (job/run_local.c) and the daemon's workers
 * (server/scheduler.c) share.
 *
 * Building loads the data sources, checks the model's shapes against the
 * data, builds the model (or loads `init`), optimizer, scheduler and data
 * loaders, seeding the init and dropout Rngs from the spec's seed as the
 * foreground runner always has. With a Db (the daemon), `data.train` /
 * `data.val` name uploaded datasets (id or name) and `init` is a
 * checkpoint id; without one (local mode) sources are inline and `init`
 * is a .safetensors path.
 */
#ifndef TRAIND_JOB_BUILD_H
#define TRAIND_JOB_BUILD_H

#include <stdbool.h>
#include <stddef.h>

#include "core/spec.h"
#include "core/train.h"
#include "storage/db.h"

/* Everything a run owns, freed in one place (job_build_free). */
typedef struct {
    JobSpec *spec;
    Dataset *train_ds, *val_ds;
    Module *model;
    Optimizer *opt;
    LrScheduler *lr_scheduler;
    DataLoader *train, *val;
    Rng init_rng, dropout_rng;
} JobBuild;

/* A daemon's job: its database, whose namespace the spec's dataset names
 * resolve in (owner; NULL: every dataset), and the datasets its row
 * recorded at submission (0: resolve the name). */
typedef struct {
    Db *db;
    const DbViewer *owner;
    int64_t train_dataset, val_dataset;
} JobDaemon;

/* Builds *b (zeroed first) from spec, which it takes over (freed by
 * job_build_free, also on failure). d NULL: `traind run` (inline sources,
 * `init` a file). 0, or -1 with an error naming the spec's path
 * ("data.train: ...", "init: ..."). */
int job_build(JobBuild *b, JobSpec *spec, const JobDaemon *d);
void job_build_free(JobBuild *b); /* the struct itself is not freed */

/* Moves the built model to `device` (module_to) and rebuilds the optimizer
 * over the moved parameters; a no-op when it is there already. Call after
 * job_build and before job_build_trainer (and any resume). -1 with an error
 * ("device cuda:0: this build has no CUDA backend or no GPU was found",
 * an out-of-memory on the device). */
int job_build_to_device(JobBuild *b, Device device);

/* Fills a train_init'ed Trainer with the build's objects and the spec's
 * loop settings (epochs, accuracy, checkpoint_every), on `device`. The
 * caller sets callbacks and the cancel flag. */
void job_build_trainer(JobBuild *b, Trainer *t, Device device);

/* Loads a dataset record's files (its format, its CSV options; CSV
 * targets as labels unless `regression`; token data whole, in windows of
 * one token): for server/dataset_ingest.c to check an upload or import
 * before db_dataset_mark_ready. NULL with an error, prefixed "dataset '<name>'" when the record
 * has a name. */
Dataset *job_build_load_dataset(Db *db, const DbDataset *rec, bool regression);
/* Whether a dataset format is token data ("tokens", "text"): its record
 * counts tokens, and a job chooses the windows (block_size, split). */
bool job_build_is_tokens(const char *format);

/* Where an imagefolder dataset's archive is extracted and read from:
 * "<dataset dir>/.imagefolder" (a name no uploaded file can have). */
int job_build_imagefolder_root(const Db *db, int64_t id, char *buf, size_t size);
/* The record's form of a loaded dataset's sample shape (spec_data_shape_of
 * with dtype names), for db_dataset_mark_ready. */
void job_build_sample_shape(const Dataset *ds, DbSampleShape *out);

/* The most steps a job may take (epochs x batches). */
#define JOB_MAX_STEPS ((int64_t)1000000000)

#define JOB_CHECK_STORAGE (-2)

/* What a daemon job's spec came to at submission. */
typedef struct {
    SpecModelSize size;                 /* the model against data.train */
    int64_t train_dataset, val_dataset; /* ids, 0 for none */
    int64_t total_steps;                /* the optimizer steps of epochs x batches of data.train */
} JobCheck;

/* Submission-time checks in the daemon, without loading any data: the
 * sources are datasets the owner may train on (their own or shared; ready
 * ones), the model's shapes fit their recorded sample shapes, the steps
 * stay within JOB_MAX_STEPS, `init` is a checkpoint of the owner's (the
 * device is the scheduler's to check: it knows its workers). The spec at
 * fault is -1; JOB_CHECK_STORAGE when the database failed (not the user's
 * fault: a 503, not a 422). 0 with *out filled, or -1 with an error whose
 * path names the field (error_last()->path: "data.train", "model[4]",
 * "init"). */
int job_build_check(const JobDaemon *d, const JobSpec *spec, JobCheck *out);

#endif
