/* build.c - a job spec made into a Trainer's objects, for `traind run`
 * and for the daemon's workers alike, so both train a spec the same way
 * (the same seeds, the same loaders, the same checks).
 *
 * The daemon differs in two places only: its data sources are uploaded
 * datasets, looked up in the database and loaded from
 * <data-dir>/datasets/<id>/, and `init` names a checkpoint by id. Inline
 * sources (paths on the server's disk) are refused there: a job must not
 * read whatever file the daemon can.
 */
#include "job/build.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/optim/lr_expr.h"

void job_build_free(JobBuild *b) {
    if (!b) return;
    dataloader_free(b->train);
    dataloader_free(b->val);
    lr_scheduler_free(b->lr_scheduler);
    optimizer_free(b->opt);
    if (b->model) module_free(b->model);
    dataset_free(b->train_ds);
    dataset_free(b->val_ds);
    job_spec_free(b->spec);
    memset(b, 0, sizeof *b);
}

static TrainLossFn loss_fn(const JobSpec *spec) {
    switch (spec->loss) {
    case SPEC_LOSS_MSE: return tensor_mse_loss;
    case SPEC_LOSS_L1: return tensor_l1_loss;
    case SPEC_LOSS_CROSS_ENTROPY:
    case SPEC_LOSS_NLL: return NULL; /* class_loss_fn */
    case SPEC_LOSS_BCE: return tensor_bce_loss;
    case SPEC_LOSS_BCE_WITH_LOGITS: return tensor_bce_with_logits;
    }
    return NULL;
}

/* The class losses, which take the spec's options (Trainer.class_options). */
static TrainClassLossFn class_loss_fn(const JobSpec *spec) {
    switch (spec->loss) {
    case SPEC_LOSS_CROSS_ENTROPY: return tensor_cross_entropy_with;
    case SPEC_LOSS_NLL: return tensor_nll_loss_with;
    default: return NULL; /* loss_fn */
    }
}

/* ---- datasets of the daemon ---- */

/* A string or a list of strings of a JSON object, as pointers into it
 * (valid while obj lives). -1 with an error for other types. */
static int string_list(json_t *obj, const char *key, const char **out, int max, int *n) {
    *n = 0;
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) {
        out[(*n)++] = json_string_value(v);
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) > (size_t)max)
        return error_set("options.%s: expected a string or a list of at most %d strings", key,
                         max);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *s = json_string_value(json_array_get(v, i));
        if (!s) return error_set("options.%s[%zu]: expected a string", key, i);
        out[(*n)++] = s;
    }
    return 0;
}

#define MAX_CSV_COLUMNS 4096

bool job_build_is_tokens(const char *format) {
    return strcmp(format, "tokens") == 0 || strcmp(format, "text") == 0;
}

/* CIFAR-10's batches: the files of role "file", in the order they came. */
static Dataset *load_cifar10(Db *db, const DbDataset *rec) {
    char dir[4096], paths[DB_DATASET_MAX_FILES][4400];
    const char *p[DB_DATASET_MAX_FILES];
    int n = 0;
    if (db_dataset_dir(db, rec->id, dir, sizeof dir) != 0) return NULL;
    for (int i = 0; i < rec->num_files; i++)
        if (!strcmp(rec->files[i].role, "file")) {
            snprintf(paths[n], sizeof paths[n], "%s/%s", dir, rec->files[i].name);
            p[n] = paths[n];
            n++;
        }
    return dataset_load_cifar10(p, n);
}

/* A record's files as its format says; a token dataset's windows as `tok`
 * says; an image folder decoded per batch, each image checked first when
 * `check` (an upload's). */
static Dataset *load_record(Db *db, const DbDataset *rec, bool regression,
                            const TokenOptions *tok, bool check) {
    char a[4400], b[4400];
    Dataset *ds = NULL;
    if (job_build_is_tokens(rec->format)) {
        if (db_dataset_file_path(db, rec, "file", a, sizeof a) != 0) return NULL;
        ds = rec->format[1] == 'o' ? dataset_load_tokens(a, tok) : dataset_load_text(a, tok);
    } else if (strcmp(rec->format, "idx") == 0) {
        if (db_dataset_file_path(db, rec, "images", a, sizeof a) != 0 ||
            db_dataset_file_path(db, rec, "labels", b, sizeof b) != 0)
            return NULL;
        ds = dataset_load_idx(a, b);
    } else if (strcmp(rec->format, "npy") == 0) {
        if (db_dataset_file_path(db, rec, "inputs", a, sizeof a) != 0 ||
            db_dataset_file_path(db, rec, "targets", b, sizeof b) != 0)
            return NULL;
        ds = dataset_load_npy(a, b);
    } else if (strcmp(rec->format, "csv") == 0) {
        if (db_dataset_file_path(db, rec, "file", a, sizeof a) != 0) return NULL;
        json_t *opts = json_loads(rec->options_json ? rec->options_json : "{}", 0, NULL);
        const char **labels = calloc(MAX_CSV_COLUMNS, sizeof *labels);
        const char **features = calloc(MAX_CSV_COLUMNS, sizeof *features);
        int nl = 0, nf = 0;
        if (!labels || !features)
            error_set("out of memory");
        else if (string_list(opts, "label_column", labels, MAX_CSV_COLUMNS, &nl) == 0 &&
                 string_list(opts, "feature_columns", features, MAX_CSV_COLUMNS, &nf) == 0) {
            CsvOptions o = {.label_columns = labels, .num_label_columns = nl,
                            .feature_columns = features, .num_feature_columns = nf,
                            .regression = regression};
            ds = dataset_load_csv(a, &o);
        }
        free(labels);
        free(features);
        json_decref(opts);
    } else if (strcmp(rec->format, "imagefolder") == 0) {
        json_t *opts = json_loads(rec->options_json ? rec->options_json : "{}", 0, NULL);
        if (job_build_imagefolder_root(db, rec->id, a, sizeof a) == 0)
            ds = dataset_load_imagefolder(a, json_is_true(json_object_get(opts, "grayscale")),
                                          check ? IMAGEFOLDER_CHECK_NOW_DECODE_PER_BATCH
                                                : IMAGEFOLDER_DECODE_PER_BATCH);
        json_decref(opts);
    } else if (strcmp(rec->format, "cifar10") == 0) {
        ds = load_cifar10(db, rec);
    } else
        error_set("unknown format '%s'", rec->format);
    if (!ds && rec->name[0]) error_prefix("dataset '%s'", rec->name);
    return ds;
}

Dataset *job_build_load_dataset(Db *db, const DbDataset *rec, bool regression) {
    /* token data checked whole, in windows of 1 */
    TokenOptions whole = {.block_size = 1, .split = DATASET_SPLIT_ALL};
    return load_record(db, rec, regression, &whole, true);
}

/* The token options of a named source against its dataset: only token
 * datasets take them, and they need a block_size. */
static int named_token_options(const JobSpec *spec, const SpecSource *src, const DbDataset *rec,
                               const char *field, TokenOptions *tok) {
    if (job_build_is_tokens(rec->format)) return job_spec_token_options(spec, src, field, tok);
    if (!src->token_options) return 0;
    return error_at(field, "dataset '%s' is %s: block_size, split and val_fraction are for "
                           "token data (tokens, text)", rec->name, rec->format);
}

int job_build_imagefolder_root(const Db *db, int64_t id, char *buf, size_t size) {
    char dir[4096];
    if (db_dataset_dir(db, id, dir, sizeof dir) != 0) return -1;
    if (snprintf(buf, size, "%s/.imagefolder", dir) >= (int)size)
        return error_set("dataset %lld: path too long", (long long)id);
    return 0;
}

void job_build_sample_shape(const Dataset *ds, DbSampleShape *out) {
    memset(out, 0, sizeof *out);
    SpecDataShape d;
    spec_data_shape_of(ds, &d);
    snprintf(out->input_dtype, sizeof out->input_dtype, "%s", dtype_name(d.input_dtype));
    snprintf(out->target_dtype, sizeof out->target_dtype, "%s", dtype_name(d.target_dtype));
    out->input_ndim = d.input_ndim < DB_MAX_DIMS ? d.input_ndim : DB_MAX_DIMS;
    for (int i = 0; i < out->input_ndim; i++) out->input_shape[i] = d.input_shape[i];
    out->target_ndim = d.target_ndim < DB_MAX_DIMS ? d.target_ndim : DB_MAX_DIMS;
    for (int i = 0; i < out->target_ndim; i++) out->target_shape[i] = d.target_shape[i];
    out->num_classes = d.num_classes;
}

/* The ready dataset a SPEC_SOURCE_NAME source names, as the owner sees
 * it (d->owner NULL: any), or the one with id `id` when it is known. */
static int resolve(const JobDaemon *d, const SpecSource *src, int64_t id, const char *field,
                   DbDataset *rec) {
    int rc = id > 0 ? db_dataset_get(d->db, id, rec)
                    : db_dataset_resolve(d->db, d->owner, src->name, rec);
    if (rc == DB_NOT_FOUND) return error_at(field, "unknown dataset '%s'", src->name);
    if (rc != DB_OK) return error_prefix_at(field), rc == DB_ERROR ? JOB_CHECK_STORAGE : -1;
    if (rec->state != DB_DATASET_READY) {
        if (rec->error[0])
            error_at(field, "dataset '%s' failed to import: %s", src->name, rec->error);
        else
            error_at(field, "dataset '%s' is still %s", src->name,
                     rec->state == DB_DATASET_IMPORTING ? "importing" : "uploading");
        db_dataset_clear(rec);
        return -1;
    }
    return 0;
}

static int daemon_source_check(const SpecSource *src, const char *field) {
    if (src->kind == SPEC_SOURCE_NAME || src->kind == SPEC_SOURCE_NONE) return 0;
    return error_at(field, "the daemon takes a dataset id or name (upload the files with POST "
                           "/v1/datasets); inline sources are for `traind run`");
}

/* data.train (val false) or data.val of a build: inline, or the daemon's. */
static Dataset *load_source(const JobSpec *spec, const JobDaemon *d, bool val) {
    const SpecSource *src = val ? &spec->val : &spec->train;
    const char *field = val ? "data.val" : "data.train";
    if (src->kind != SPEC_SOURCE_NAME || !d) return job_spec_load_source(spec, src);
    DbDataset rec;
    TokenOptions tok;
    if (resolve(d, src, val ? d->val_dataset : d->train_dataset, field, &rec) != 0) return NULL;
    if (named_token_options(spec, src, &rec, field, &tok) != 0) { /* its error names the field */
        db_dataset_clear(&rec);
        return NULL;
    }
    Dataset *ds = load_record(d->db, &rec, !job_spec_uses_labels(spec), &tok, false);
    db_dataset_clear(&rec);
    if (!ds) error_prefix_at(field);
    return ds;
}

/* `init` of a daemon job: a checkpoint id of one of the owner's jobs (any
 * job's for an admin, or for d->owner NULL) -> its model.safetensors. */
static int init_path(const JobDaemon *d, const char *init, char *buf, size_t size) {
    char *end;
    long long id = strtoll(init, &end, 10);
    if (!*init || *end || id <= 0)
        return error_at("init", "expected a checkpoint id, got '%s'", init);
    DbCheckpoint c;
    DbJob job;
    int rc = db_checkpoint_get(d->db, id, &c);
    if (rc == DB_OK && d->owner && !d->owner->admin) {
        if ((rc = db_job_get(d->db, c.job_id, &job)) == DB_OK && job.owner != d->owner->user_id)
            rc = DB_NOT_FOUND; /* another user's: not told it exists */
        if (rc != DB_ERROR) db_job_clear(&job);
    }
    if (rc == DB_NOT_FOUND) return error_at("init", "unknown checkpoint %lld", id);
    if (rc != DB_OK) return error_prefix_at("init"), JOB_CHECK_STORAGE;
    return db_checkpoint_file_path(d->db, &c, "model.safetensors", buf, size);
}

/* ---- building ---- */

/* Two texts' ids mean the same characters only under one vocabulary. */
static int check_vocab(const Dataset *train, const Dataset *val) {
    if (!train->vocab || !val->vocab || strcmp(train->vocab, val->vocab) == 0) return 0;
    return error_at("data.val",
                    "its text has another character vocabulary than data.train's (%d and %d "
                    "characters), so the same id would be another character; use one text "
                    "with \"split\": \"train\" and \"val\"",
                    val->num_classes, train->num_classes);
}

static int check_reduction(const JobSpec *spec) {
    if (spec->reduction == REDUCTION_MEAN) return 0;
    return error_at("loss.reduction",
                    "the trainer logs batch-mean losses; only 'mean' is supported");
}

/* Token ids index the first Embedding's rows: the data's vocabulary (the
 * classes of its next-token targets) must fit in them, or the first batch
 * holding a larger id fails the job. */
static int check_vocabulary(const JobSpec *spec, const SpecDataShape *d) {
    if (spec->num_layers == 0 || spec->layers[0].type != SPEC_LAYER_EMBEDDING) return 0;
    int64_t rows = spec->layers[0].num_embeddings;
    if (d->num_classes <= rows) return 0;
    return error_at("model[0].num_embeddings", "%lld rows, but the data's tokens take %d values "
                                               "(its vocabulary)", (long long)rows, d->num_classes);
}

int job_build(JobBuild *b, JobSpec *spec, const JobDaemon *d) {
    memset(b, 0, sizeof *b);
    b->spec = spec;
    if (!spec) return -1;
    if (check_reduction(spec)) return -1;
    if (d && (daemon_source_check(&spec->train, "data.train") ||
              daemon_source_check(&spec->val, "data.val")))
        return -1;
    b->train_ds = load_source(spec, d, false);
    if (!b->train_ds) return -1;
    SpecDataShape train_shape;
    spec_data_shape_of(b->train_ds, &train_shape);
    if ((b->train_ds->tokens > 0 && check_vocabulary(spec, &train_shape) != 0) ||
        job_spec_check_shapes(spec, &train_shape, NULL) != 0 ||
        job_spec_check_last_batch(spec, &train_shape, b->train_ds->n) != 0)
        return -1;
    if (spec->val.kind != SPEC_SOURCE_NONE) {
        b->val_ds = load_source(spec, d, true);
        if (!b->val_ds || job_spec_check_data(spec, b->val_ds, NULL) != 0 ||
            check_vocab(b->train_ds, b->val_ds) != 0)
            return -1;
    }
    rng_init(&b->init_rng, spec->seed);
    rng_init(&b->dropout_rng, spec->seed + 1);
    b->model = job_spec_build_model(spec, &b->init_rng);
    if (!b->model) return -1;
    if (spec->init) {
        char path[4400];
        const char *p = spec->init;
        if (d) {
            if (init_path(d, spec->init, path, sizeof path) != 0) return -1;
            p = path;
        }
        if (train_load_init(b->model, p) != 0) return error_prefix_at("init");
    }
    b->opt = job_spec_build_optimizer(spec, b->model);
    if (!b->opt) return -1;
    DataLoaderOptions lo = {.batch_size = spec->batch_size, .shuffle = spec->shuffle,
                            .seed = spec->seed, .drop_last = spec->drop_last, .prefetch = 2,
                            .augment = &spec->augment, .num_workers = spec->num_workers};
    b->train = dataloader_new(b->train_ds, &lo, &spec->transforms);
    if (!b->train) return error_prefix_at("data.train");
    /* after the loader: a OneCycleLR may take its steps from its batches,
     * one optimizer step per accumulate_steps of them */
    int64_t steps = train_steps_for(dataloader_num_batches(b->train), spec->accumulate_steps);
    if (job_spec_build_lr_scheduler(spec, job_spec_lr(spec), steps, &b->lr_scheduler) != 0)
        return -1;
    if (b->val_ds) {
        DataLoaderOptions vo = {.batch_size = spec->batch_size, .prefetch = 2,
                                .augment = &spec->augment, .eval = true,
                                .num_workers = spec->num_workers};
        b->val = dataloader_new(b->val_ds, &vo, &spec->transforms);
        if (!b->val) return error_prefix_at("data.val");
    }
    return 0;
}

/* The device of the model's first parameter (CPU for a model without any). */
static Device model_device(Module *m) {
    int n = 0;
    Tensor **params = module_parameters(m, &n);
    Device d = params && n > 0 ? params[0]->device : DEVICE_CPU_INIT;
    free(params);
    return d;
}

int job_build_to_device(JobBuild *b, Device device) {
    if (!b->model) return error_set("job_build_to_device: nothing built");
    if (!backend_for(device)) return -1;
    /* batches come out of the loaders on the device, uploaded by their
     * prefetch threads while the previous step computes */
    if (dataloader_set_device(b->train, device) != 0) return error_prefix_at("data.train");
    if (b->val && dataloader_set_device(b->val, device) != 0) return error_prefix_at("data.val");
    if (device_equal(model_device(b->model), device)) return 0;
    if (module_to(b->model, device) != 0) return error_prefix("model.to(device)");
    /* module_to replaced the parameters: an optimizer holds the old ones.
     * Nothing has stepped yet, so a new one over the moved parameters is
     * the same optimizer. */
    optimizer_free(b->opt);
    b->opt = job_spec_build_optimizer(b->spec, b->model);
    return b->opt ? 0 : -1;
}

void job_build_trainer(JobBuild *b, Trainer *t, Device device) {
    /* Callers should have moved the build (to report a failure); if not,
     * move it here, and a failure shows when train_run meets the model on
     * the wrong device. */
    if (!device_equal(model_device(b->model), device)) (void)job_build_to_device(b, device);
    t->model = b->model;
    t->opt = b->opt;
    t->lr_scheduler = b->lr_scheduler;
    t->train = b->train;
    t->val = b->val;
    t->rng = &b->dropout_rng;
    t->loss = loss_fn(b->spec);
    t->class_loss = class_loss_fn(b->spec);
    t->class_options = b->spec->class_loss;
    t->epochs = b->spec->epochs;
    t->accuracy = b->spec->accuracy;
    t->perplexity = b->spec->perplexity;
    t->allow_tf32 = b->spec->allow_tf32;
    t->cuda_graphs = b->spec->cuda_graphs;
    t->precision = b->spec->precision;
    t->clip_grad_norm = b->spec->clip_grad_norm;
    t->accumulate_steps = b->spec->accumulate_steps;
    t->bucket_bytes = (int64_t)(b->spec->bucket_cap_mb * 1048576.0);
    t->device = device;
    t->checkpoint_every = b->spec->checkpoint ? b->spec->checkpoint_every_epochs : 0;
}

/* ---- validation at submission ---- */

/* The SpecDataShape a dataset will load as for this spec: its record's,
 * except that a CSV's targets follow the loss (labels or float columns). */
static int record_shape(const JobSpec *spec, const DbDataset *rec, const char *field,
                        SpecDataShape *d) {
    memset(d, 0, sizeof *d);
    const DbSampleShape *s = &rec->shape;
    if (dtype_parse(s->input_dtype, &d->input_dtype) != 0 ||
        dtype_parse(s->target_dtype, &d->target_dtype) != 0)
        return error_at(field, "dataset '%s' has no recorded sample shape", rec->name);
    d->input_ndim = s->input_ndim < TENSOR_MAX_DIMS ? s->input_ndim : TENSOR_MAX_DIMS;
    for (int i = 0; i < d->input_ndim; i++) d->input_shape[i] = s->input_shape[i];
    d->target_ndim = s->target_ndim < TENSOR_MAX_DIMS ? s->target_ndim : TENSOR_MAX_DIMS;
    for (int i = 0; i < d->target_ndim; i++) d->target_shape[i] = s->target_shape[i];
    d->num_classes = s->num_classes;
    /* a CSV recorded with label targets loads as float targets for a
     * regression loss */
    if (strcmp(rec->format, "csv") == 0 && !job_spec_uses_labels(spec) &&
        d->target_dtype == DTYPE_INT64) {
        d->target_dtype = DTYPE_FLOAT32;
        d->target_ndim = 1;
        d->target_shape[0] = 1;
        d->num_classes = 0;
    }
    return 0;
}

/* A token dataset's record counts tokens: its samples are the windows of
 * the split, each int64 [block_size] (the loader's arithmetic, without
 * loading). */
static int token_record_shape(const DbDataset *rec, const TokenOptions *tok, const char *field,
                              SpecDataShape *d, int64_t *samples) {
    int64_t lo, hi;
    char what[DB_DATASET_NAME_MAX + 64];
    dataset_split_range(rec->samples, tok->split, tok->val_fraction, &lo, &hi);
    snprintf(what, sizeof what, "%s: dataset '%s'", field, rec->name);
    if (dataset_token_windows(what, tok->split, hi - lo, tok->block_size, samples) != 0)
        return error_set_path(field);
    d->input_ndim = d->target_ndim = 1;
    d->input_shape[0] = d->target_shape[0] = tok->block_size;
    return 0;
}

/* A named source resolved in the owner's namespace, its recorded shape
 * checked against the model; its id to *id, its samples to *samples and
 * the sizes to size (may be NULL). */
static int check_named(const JobDaemon *d, const JobSpec *spec, bool val, int64_t *id,
                       int64_t *samples, SpecModelSize *size) {
    const SpecSource *src = val ? &spec->val : &spec->train;
    const char *field = val ? "data.val" : "data.train";
    *id = 0;
    if (src->kind != SPEC_SOURCE_NAME) return 0;
    DbDataset rec;
    int found = resolve(d, src, 0, field, &rec);
    if (found != 0) return found;
    SpecDataShape shape;
    TokenOptions tok;
    *id = rec.id;
    *samples = rec.samples;
    int rc = named_token_options(spec, src, &rec, field, &tok);
    if (rc == 0) rc = record_shape(spec, &rec, field, &shape);
    if (rc == 0 && job_build_is_tokens(rec.format))
        rc = token_record_shape(&rec, &tok, field, &shape, samples);
    if (rc == 0 && job_build_is_tokens(rec.format)) rc = check_vocabulary(spec, &shape);
    db_dataset_clear(&rec);
    if (rc != 0 || job_spec_check_shapes(spec, &shape, size) != 0) return -1;
    return val ? 0 : job_spec_check_last_batch(spec, &shape, *samples);
}

/* epochs x batches of data.train, within JOB_MAX_STEPS; at least a step
 * an epoch (drop_last with a batch larger than the data trains nothing). */
static int count_steps(const JobSpec *spec, int64_t samples, int64_t *per_epoch_out,
                       int64_t *total) {
    int64_t per_epoch = spec->drop_last ? samples / spec->batch_size
                                        : (samples + spec->batch_size - 1) / spec->batch_size;
    *per_epoch_out = per_epoch;
    *total = per_epoch * spec->epochs;
    if (samples > 0 && per_epoch == 0)
        return error_at("batch_size", "%lld, more than data.train's %lld samples, with drop_last: "
                                      "no batch is left to train on",
                        (long long)spec->batch_size, (long long)samples);
    if (*total <= JOB_MAX_STEPS) return 0;
    return error_at("epochs", "%d epochs of %lld steps (%lld samples in batches of %lld) are "
                              "%lld steps; a job may take at most %lld",
                    spec->epochs, (long long)per_epoch, (long long)samples,
                    (long long)spec->batch_size, (long long)*total, (long long)JOB_MAX_STEPS);
}

/* The scheduler with the job's own numbers, which parsing could not know:
 * a OneCycleLR (also in a SequentialLR) whose phase is empty in a short
 * job, or whose cycle falls short of the steps the job takes, an
 * lr_lambda that turns negative or fails at a step the job reaches, a
 * scheduler stepped more times than one counts, are refused now rather
 * than at the step they fail. per_epoch and total count optimizer steps
 * (of accumulate_steps batches). */
static int check_scheduler(const JobSpec *spec, int64_t per_epoch, int64_t total) {
    if (!spec->has_lr_scheduler || per_epoch == 0) return 0;
    LrScheduler *s;
    if (job_spec_build_lr_scheduler(spec, job_spec_lr(spec), per_epoch, &s) != 0) return -1;
    bool per_step = lr_scheduler_per_step(s);
    int64_t stepped = per_step ? total : spec->epochs;
    int rc = 0;
    if (stepped > LR_SCHEDULER_MAX_EPOCH)
        rc = error_at("scheduler", "stepped once a %s, %lld times in this job; a scheduler "
                                   "counts at most %lld", per_step ? "step" : "epoch",
                      (long long)stepped, (long long)LR_SCHEDULER_MAX_EPOCH);
    else
        rc = lr_scheduler_check_run(s, stepped, "scheduler");
    lr_scheduler_free(s);
    return rc;
}

int job_build_check(const JobDaemon *d, const JobSpec *spec, JobCheck *out) {
    memset(out, 0, sizeof *out);
    int64_t samples = 0, val_samples;
    if (daemon_source_check(&spec->train, "data.train") ||
        daemon_source_check(&spec->val, "data.val"))
        return -1;
    int rc = check_named(d, spec, false, &out->train_dataset, &samples, &out->size);
    if (rc == 0) rc = check_named(d, spec, true, &out->val_dataset, &val_samples, NULL);
    if (rc != 0) return rc;
    int64_t per_epoch;
    if (check_reduction(spec) || count_steps(spec, samples, &per_epoch, &out->total_steps))
        return -1;
    /* the scheduler steps with the optimizer: once per accumulate_steps batches */
    int64_t opt_per_epoch = train_steps_for(per_epoch, spec->accumulate_steps);
    out->total_steps = opt_per_epoch * spec->epochs; /* the steps a job's progress counts */
    if (check_scheduler(spec, opt_per_epoch, out->total_steps)) return -1;
    char path[4400];
    return spec->init ? init_path(d, spec->init, path, sizeof path) : 0;
}
