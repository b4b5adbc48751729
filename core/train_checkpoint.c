/* train_checkpoint.c - a Trainer's checkpoints: writing one, resuming
 * from one, and a job's "init" weights; see train.h.
 *
 * Checkpoint layout (trainer.safetensors): the tensors are exactly
 * optimizer_state_dict()'s (torch's names: "state.0.momentum_buffer",
 * "param_groups.0.lr", ...); everything scalar lives in "__metadata__" as
 * decimal strings, which keep uint64 seeds and doubles (%.17g) exact and
 * are readable with any safetensors tool.
 */
#include "core/train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "core/io/safetensors.h"
#include "core/train_loop.h"

#define TRAIN_CHECKPOINT_FORMAT "traind.trainer.v1"

/* ---- checkpoints: files ---- */

static int meta_i64(SafetensorsMeta *m, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return safetensors_meta_set(m, key, buf);
}

static int meta_u64(SafetensorsMeta *m, const char *key, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return safetensors_meta_set(m, key, buf);
}

static int meta_f64(SafetensorsMeta *m, const char *key, double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return safetensors_meta_set(m, key, buf);
}

/* prefix.rng_seed, prefix.rng_offset, prefix.epoch, prefix.batch */
static int meta_loader(SafetensorsMeta *m, const char *prefix, const DataLoader *dl) {
    DataLoaderState st;
    dataloader_state(dl, &st);
    char k[64];
    int rc = 0;
    snprintf(k, sizeof k, "%s.rng_seed", prefix);
    rc |= meta_u64(m, k, st.rng.seed);
    snprintf(k, sizeof k, "%s.rng_offset", prefix);
    rc |= meta_u64(m, k, st.rng.offset);
    snprintf(k, sizeof k, "%s.epoch", prefix);
    rc |= meta_i64(m, k, st.epoch);
    snprintf(k, sizeof k, "%s.batch", prefix);
    rc |= meta_i64(m, k, st.batch);
    return rc ? -1 : 0;
}

static int trainer_meta(const Trainer *t, SafetensorsMeta *m) {
    const TrainState *s = &t->state;
    int rc = 0;
    rc |= safetensors_meta_set(m, "format", TRAIN_CHECKPOINT_FORMAT);
    rc |= safetensors_meta_set(m, "optimizer", optimizer_name(t->opt));
    rc |= meta_i64(m, "step", s->step);
    rc |= meta_i64(m, "epoch", s->epoch);
    rc |= meta_i64(m, "batch", s->batch);
    rc |= meta_f64(m, "epoch_loss_sum", s->loss_sum);
    rc |= meta_i64(m, "epoch_samples", s->samples);
    rc |= meta_i64(m, "epoch_correct", s->correct);
    rc |= meta_i64(m, "epoch_labelled", s->labelled);
    rc |= meta_f64(m, "epoch_elapsed_s", s->elapsed_s);
    if (t->lr_scheduler)
        rc |= meta_i64(m, "scheduler.last_epoch", lr_scheduler_last_epoch(t->lr_scheduler));
    if (t->rng) {
        rc |= meta_u64(m, "dropout.rng_seed", t->rng->seed);
        rc |= meta_u64(m, "dropout.rng_offset", t->rng->offset);
    }
    rc |= meta_loader(m, "train_data", t->train);
    if (t->val) rc |= meta_loader(m, "val_data", t->val);
    return rc ? -1 : 0;
}

/* The two files of checkpoint directory dir (new strings, freed by the
 * caller; both NULL on failure). */
static int checkpoint_paths(const char *dir, char **model_path, char **trainer_path) {
    *model_path = *trainer_path = NULL;
    if (asprintf(model_path, "%s/model.safetensors", dir) < 0) {
        *model_path = NULL;
        return error_set("out of memory");
    }
    if (asprintf(trainer_path, "%s/trainer.safetensors", dir) < 0) {
        free(*model_path);
        *model_path = *trainer_path = NULL;
        return error_set("out of memory");
    }
    return 0;
}

int train_save_checkpoint(const Trainer *t, const char *dir) {
    if (!t || !t->model || !t->opt || !t->train || !dir || !*dir)
        return error_set("train_save_checkpoint: no trainer or no directory");
    char *tmp = NULL, *model_path = NULL, *trainer_path = NULL;
    TensorDict model_sd, opt_sd;
    SafetensorsMeta meta;
    tensor_dict_init(&model_sd);
    tensor_dict_init(&opt_sd);
    safetensors_meta_init(&meta);
    int rc = -1;
    bool made = false;

    if (!(tmp = durable_temp_name(dir))) goto done;
    if (checkpoint_paths(tmp, &model_path, &trainer_path) != 0) goto done;
    if (module_state_dict(t->model, &model_sd) != 0) goto done;
    if (optimizer_state_dict(t->opt, &opt_sd) != 0) goto done;
    if (trainer_meta(t, &meta) != 0) goto done;
    if (mkdir(tmp, 0755) != 0) {
        error_sys(errno, "cannot create '%s'", tmp);
        goto done;
    }
    made = true;
    if (safetensors_save(model_path, &model_sd, NULL) != 0) goto done;
    if (safetensors_save(trainer_path, &opt_sd, &meta) != 0) goto done;
    if (durable_replace_dir(tmp, dir) != 0) goto done;
    made = false;
    if (durable_sync_parent(dir) != 0) goto done;
    rc = 0;
done:
    if (made) durable_remove_flat_dir(tmp);
    if (rc != 0) error_prefix("train_save_checkpoint '%s'", dir);
    free(tmp);
    free(model_path);
    free(trainer_path);
    tensor_dict_free(&model_sd);
    tensor_dict_free(&opt_sd);
    safetensors_meta_free(&meta);
    return rc;
}

/* ---- checkpoints: reading back ---- */

/* The metadata value of key in *v; -1 with an error naming it if missing. */
static int get_text(const SafetensorsMeta *m, const char *key, const char **v) {
    *v = safetensors_meta_get(m, key);
    return *v ? 0 : error_set("metadata '%s' is missing", key);
}

static int get_i64(const SafetensorsMeta *m, const char *key, int64_t lo, int64_t hi,
                   int64_t *out) {
    const char *v;
    if (get_text(m, key, &v) != 0) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return error_set("metadata '%s' is not an integer in [%" PRId64 ", %" PRId64 "]: '%s'",
                         key, lo, hi, v);
    *out = x;
    return 0;
}

static int get_u64(const SafetensorsMeta *m, const char *key, uint64_t *out) {
    const char *v;
    if (get_text(m, key, &v) != 0) return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || *v == '-')
        return error_set("metadata '%s' is not an unsigned integer: '%s'", key, v);
    *out = x;
    return 0;
}

static int get_f64(const SafetensorsMeta *m, const char *key, double *out) {
    const char *v;
    if (get_text(m, key, &v) != 0) return -1;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        return error_set("metadata '%s' is not a finite number: '%s'", key, v);
    *out = x;
    return 0;
}

static int get_loader(const SafetensorsMeta *m, const char *prefix, const DataLoader *dl,
                      DataLoaderState *st) {
    char k[64];
    int64_t epoch;
    snprintf(k, sizeof k, "%s.rng_seed", prefix);
    if (get_u64(m, k, &st->rng.seed) != 0) return -1;
    snprintf(k, sizeof k, "%s.rng_offset", prefix);
    if (get_u64(m, k, &st->rng.offset) != 0) return -1;
    snprintf(k, sizeof k, "%s.epoch", prefix);
    if (get_i64(m, k, 0, INT32_MAX, &epoch) != 0) return -1;
    st->epoch = (int)epoch;
    snprintf(k, sizeof k, "%s.batch", prefix);
    if (get_i64(m, k, 0, dataloader_num_batches(dl), &st->batch) != 0)
        return error_prefix("the loader has %" PRId64 " batches",
                            dataloader_num_batches(dl));
    return 0;
}

/* Everything of trainer.safetensors's metadata, checked against t. */
typedef struct {
    TrainState state;
    int64_t sched_epoch;
    Rng rng;
    DataLoaderState train, val;
} Saved;

static int parse_saved(const Trainer *t, const SafetensorsMeta *m, Saved *sv) {
    const char *fmt = safetensors_meta_get(m, "format");
    if (!fmt || strcmp(fmt, TRAIN_CHECKPOINT_FORMAT) != 0)
        return error_set("not a traind trainer checkpoint (metadata format is %s%s%s, expected "
                         "'" TRAIN_CHECKPOINT_FORMAT "')",
                         fmt ? "'" : "", fmt ? fmt : "missing", fmt ? "'" : "");
    const char *opt = safetensors_meta_get(m, "optimizer");
    if (!opt || strcmp(opt, optimizer_name(t->opt)) != 0)
        return error_set("the checkpoint's optimizer is %s but the trainer's is %s",
                         opt ? opt : "missing", optimizer_name(t->opt));
    int64_t epoch;
    TrainState *s = &sv->state;
    memset(s, 0, sizeof *s);
    /* no further than the trainer goes: a step past its end would count on
     * past INT64_MAX (a hostile or mismatched file) */
    if (get_i64(m, "step", 0, train_total_steps(t), &s->step) != 0) return -1;
    if (get_i64(m, "epoch", 0, t->epochs, &epoch) != 0) return -1;
    s->epoch = (int)epoch;
    if (get_i64(m, "batch", 0, dataloader_num_batches(t->train), &s->batch) != 0) return -1;
    if (get_f64(m, "epoch_loss_sum", &s->loss_sum) != 0) return -1;
    if (get_i64(m, "epoch_samples", 0, INT64_MAX, &s->samples) != 0) return -1;
    /* Checkpoints from before ignore_index have no epoch_labelled: every
     * sample was labelled then. */
    s->labelled = s->samples;
    if (safetensors_meta_get(m, "epoch_labelled") &&
        get_i64(m, "epoch_labelled", 0, s->samples, &s->labelled) != 0)
        return -1;
    if (get_i64(m, "epoch_correct", 0, s->labelled, &s->correct) != 0) return -1;
    if (get_f64(m, "epoch_elapsed_s", &s->elapsed_s) != 0) return -1;

    bool has_sched = safetensors_meta_get(m, "scheduler.last_epoch") != NULL;
    if (has_sched != (t->lr_scheduler != NULL))
        return error_set("the checkpoint %s a scheduler but the trainer %s",
                         has_sched ? "has" : "has no", t->lr_scheduler ? "has one" : "has none");
    if (t->lr_scheduler &&
        get_i64(m, "scheduler.last_epoch", 0, LR_SCHEDULER_MAX_EPOCH, &sv->sched_epoch) != 0)
        return -1;
    /* A model without Dropout has no Rng to restore; a saved one is then
     * simply not needed. A trainer with an Rng needs it saved. */
    if (t->rng && (get_u64(m, "dropout.rng_seed", &sv->rng.seed) != 0 ||
                   get_u64(m, "dropout.rng_offset", &sv->rng.offset) != 0))
        return -1;
    if (get_loader(m, "train_data", t->train, &sv->train) != 0) return -1;
    if (t->val && get_loader(m, "val_data", t->val, &sv->val) != 0) return -1;

    /* The train loader stands in the epoch in progress, or at the end of
     * the one before the next to start. */
    bool in_epoch = sv->train.epoch == s->epoch && sv->train.batch == s->batch;
    bool between = s->batch == 0 && sv->train.epoch + 1 == s->epoch &&
                   sv->train.batch == dataloader_num_batches(t->train);
    if (!in_epoch && !between)
        return error_set("inconsistent positions: epoch %d batch %" PRId64
                         " but the train loader stands at epoch %d batch %" PRId64,
                         s->epoch, s->batch, sv->train.epoch, sv->train.batch);
    s->epoch_begun = in_epoch;
    return 0;
}

int train_resume(Trainer *t, const char *dir) {
    if (!t || !t->model || !t->opt || !t->train || !dir)
        return error_set("train_resume: no trainer or no directory");
    char *model_path = NULL, *trainer_path = NULL;
    TensorDict model_sd, opt_sd;
    SafetensorsMeta meta;
    tensor_dict_init(&model_sd);
    tensor_dict_init(&opt_sd);
    safetensors_meta_init(&meta);
    Saved sv;
    memset(&sv, 0, sizeof sv);
    int rc = -1;

    if (checkpoint_paths(dir, &model_path, &trainer_path) != 0) goto done;
    /* Read and check everything first. */
    if (safetensors_load(model_path, &model_sd, NULL) != 0) goto done;
    if (safetensors_load(trainer_path, &opt_sd, &meta) != 0) goto done;
    if (parse_saved(t, &meta, &sv) != 0) {
        error_prefix("'%s'", trainer_path);
        goto done;
    }
    /* Then apply: each of these checks before it changes anything. */
    if (module_load_state_dict(t->model, &model_sd, true) != 0) {
        error_prefix("'%s'", model_path);
        goto done;
    }
    if (optimizer_load_state_dict(t->opt, &opt_sd) != 0) {
        error_prefix("'%s'", trainer_path);
        goto done;
    }
    if ((t->lr_scheduler && lr_scheduler_set_last_epoch(t->lr_scheduler, sv.sched_epoch) != 0) ||
        dataloader_restore(t->train, &sv.train) != 0 ||
        (t->val && dataloader_restore(t->val, &sv.val) != 0)) {
        error_prefix("'%s'", trainer_path); /* the scheduler's or the loaders' state in it */
        goto done;
    }
    /* the val loader's restore regenerated that epoch's order, so its Rng
     * runs on as it did */
    if (t->val) dataloader_end_epoch(t->val);
    if (t->rng) *t->rng = sv.rng;
    if (train_apply_schedule(t) != 0) goto done;
    t->state = sv.state;
    train_logf(t, "resumed from '%s' at epoch %d, step %" PRId64, dir, t->state.epoch,
               t->state.step);
    rc = 0;
done:
    if (rc != 0) error_prefix("train_resume");
    free(model_path);
    free(trainer_path);
    tensor_dict_free(&model_sd);
    tensor_dict_free(&opt_sd);
    safetensors_meta_free(&meta);
    return rc;
}

int train_load_init(Module *model, const char *path) {
    TensorDict sd;
    tensor_dict_init(&sd);
    int rc = -1;
    /* safetensors_load's errors name the file already; callers add "init" */
    if (!model || !path) {
        error_set("train_load_init: no model or no path");
    } else if (safetensors_load(path, &sd, NULL) == 0) {
        if (module_load_state_dict(model, &sd, true) == 0) rc = 0;
        else error_prefix("'%s'", path);
    }
    tensor_dict_free(&sd);
    return rc;
}
