/* spec_data.c - the job spec's "data": where the samples come from and the
 * transforms applied to each batch.
 *
 * A source is a dataset name (the daemon resolves it; {"name": ..., "split":
 * ..., "block_size": ...} for token data) or, for `traind run`, an inline
 * description of files: {"format": "idx" | "csv" | "npy" | "tokens" |
 * "text" | "imagefolder" | "cifar10", ...}.
 * Paths in it are resolved against the job file's directory at parse time,
 * so the rest of the program never thinks about where the job came from.
 * job_spec_load_source turns an inline source into a Dataset, loading a
 * CSV's label columns as class labels or float targets as the loss needs.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "core/spec_json.h"

/* A list of non-empty strings (or one string when allow_one) into an owned array. */
static int get_strings(const json_t *v, const char *p, bool allow_one, char ***out, int *n) {
    if (allow_one && json_is_string(v)) {
        if (json_string_length(v) == 0) return error_at(p, "must not be empty");
        if (!(*out = calloc(1, sizeof **out))) return error_at(p, "out of memory");
        *n = 1;
        return (**out = spec_strdup(json_string_value(v))) ? 0 : -1;
    }
    if (!json_is_array(v))
        return error_at(p, "expected a list of strings%s, got %s", allow_one ? " or a string" : "",
                        spec_json_kind(v));
    size_t k = json_array_size(v);
    if (k == 0) return error_at(p, "must not be empty");
    if (k > 100000) return error_at(p, "too many entries (%zu)", k);
    if (!(*out = calloc(k, sizeof **out))) return error_at(p, "out of memory");
    *n = (int)k;
    for (size_t i = 0; i < k; i++) {
        json_t *e = json_array_get(v, i);
        char pi[SPEC_PATH_MAX];
        spec_path_index(pi, p, i);
        if (!json_is_string(e)) return error_at(pi, "expected a string, got %s", spec_json_kind(e));
        if (json_string_length(e) == 0) return error_at(pi, "must not be empty");
        if (!((*out)[i] = spec_strdup(json_string_value(e)))) return -1;
    }
    return 0;
}

/* ---- sources ---- */

static const char *const idx_fields[] = {"format", "images", "labels", NULL};
static const char *const csv_fields[] = {"format", "path", "feature_columns", "label_column",
                                         NULL};
static const char *const npy_fields[] = {"format", "inputs", "targets", NULL};
static const char *const token_fields[] = {"format",     "path",         "block_size", "split",
                                           "val_fraction", "vocab_size", NULL};
static const char *const name_fields[] = {"name", "block_size", "split", "val_fraction", NULL};

/* block_size, split, val_fraction and vocab_size of a token source (or a
 * name), when present. */
static int parse_token_options(const json_t *v, const char *p, SpecSource *src) {
    const char *split = NULL;
    char pk[SPEC_PATH_MAX];
    const char *const keys[] = {"block_size", "split", "val_fraction", "vocab_size"};
    for (int i = 0; i < 4; i++) src->token_options |= json_object_get(v, keys[i]) != NULL;
    if (spec_get_int(v, p, "block_size", false, 0, 1, 1 << 24, &src->block_size) ||
        spec_get_string(v, p, "split", false, &split) ||
        spec_get_number(v, p, "val_fraction", false, 0.1, &src->val_fraction) ||
        spec_get_int(v, p, "vocab_size", false, 0, 1, 1 << 24, &src->vocab_size))
        return -1;
    if (split && (dataset_split_parse(split, &src->split) != 0 || src->split == DATASET_SPLIT_ALL))
        return error_at(spec_path_key(pk, p, "split"), "expected 'train' or 'val', got '%s'",
                        split);
    if (!(src->val_fraction > 0 && src->val_fraction < 1))
        return error_at(spec_path_key(pk, p, "val_fraction"), "must be in (0, 1), got %g",
                        src->val_fraction);
    return 0;
}

static const char *const imagefolder_fields[] = {"format", "root", "grayscale", NULL};
static const char *const cifar10_fields[] = {"format", "files", NULL};

/* An image folder (torchvision's ImageFolder), its root resolved against
 * base_dir. */
static int parse_imagefolder_source(const json_t *v, const char *p, const char *base_dir,
                                    SpecSource *src) {
    return spec_check_fields(v, p, imagefolder_fields, "an imagefolder source") ||
                   spec_get_path(v, p, "root", base_dir, &src->root) ||
                   spec_get_bool(v, p, "grayscale", false, &src->grayscale)
               ? -1
               : 0;
}

/* CIFAR-10's binary batches, their paths resolved against base_dir. */
static int parse_cifar10_source(const json_t *v, const char *p, const char *base_dir,
                                SpecSource *src) {
    char pk[SPEC_PATH_MAX];
    json_t *files = json_object_get(v, "files");
    spec_path_key(pk, p, "files");
    if (spec_check_fields(v, p, cifar10_fields, "a cifar10 source")) return -1;
    if (!files) return error_at(pk, "required");
    if (get_strings(files, pk, true, &src->files, &src->num_files)) return -1;
    for (int i = 0; i < src->num_files; i++) {
        char *full = spec_resolve_path(base_dir, src->files[i]);
        if (!full) return -1;
        free(src->files[i]);
        src->files[i] = full;
    }
    return 0;
}

static int parse_idx_source(const json_t *v, const char *p, const char *base_dir,
                            SpecSource *src) {
    return spec_check_fields(v, p, idx_fields, "an idx source") ||
                   spec_get_path(v, p, "images", base_dir, &src->images) ||
                   spec_get_path(v, p, "labels", base_dir, &src->labels)
               ? -1
               : 0;
}

static int parse_csv_source(const json_t *v, const char *p, const char *base_dir,
                            SpecSource *src) {
    if (spec_check_fields(v, p, csv_fields, "a csv source") ||
        spec_get_path(v, p, "path", base_dir, &src->path))
        return -1;
    char pk[SPEC_PATH_MAX];
    json_t *fc = json_object_get(v, "feature_columns");
    if (fc && get_strings(fc, spec_path_key(pk, p, "feature_columns"), false,
                          &src->feature_columns, &src->num_feature_columns))
        return -1;
    json_t *lc = json_object_get(v, "label_column");
    if (lc && get_strings(lc, spec_path_key(pk, p, "label_column"), true, &src->label_columns,
                          &src->num_label_columns))
        return -1;
    return 0;
}

static int parse_npy_source(const json_t *v, const char *p, const char *base_dir,
                            SpecSource *src) {
    return spec_check_fields(v, p, npy_fields, "an npy source") ||
                   spec_get_path(v, p, "inputs", base_dir, &src->inputs) ||
                   spec_get_path(v, p, "targets", base_dir, &src->targets)
               ? -1
               : 0;
}

/* "tokens" (a .bin of uint16) or "text" (UTF-8), by src->kind. */
static int parse_token_source(const json_t *v, const char *p, const char *base_dir,
                              SpecSource *src) {
    const char *what = src->kind == SPEC_SOURCE_TOKENS ? "a tokens source" : "a text source";
    return spec_check_fields(v, p, token_fields, what) ||
                   spec_get_path(v, p, "path", base_dir, &src->path) ||
                   parse_token_options(v, p, src)
               ? -1
               : 0;
}

/* The source objects by their "format": each its kind and its parser. */
static const struct {
    const char *format;
    SpecSourceKind kind;
    int (*parse)(const json_t *v, const char *p, const char *base_dir, SpecSource *src);
} source_formats[] = {
    {"idx", SPEC_SOURCE_IDX, parse_idx_source},
    {"csv", SPEC_SOURCE_CSV, parse_csv_source},
    {"npy", SPEC_SOURCE_NPY, parse_npy_source},
    {"tokens", SPEC_SOURCE_TOKENS, parse_token_source},
    {"text", SPEC_SOURCE_TEXT, parse_token_source},
    {"imagefolder", SPEC_SOURCE_IMAGEFOLDER, parse_imagefolder_source},
    {"cifar10", SPEC_SOURCE_CIFAR10, parse_cifar10_source},
};

static int parse_source(const json_t *v, const char *p, const char *base_dir, SpecSource *src) {
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return error_at(p, "must not be empty");
        src->kind = SPEC_SOURCE_NAME;
        src->val_fraction = 0.1;
        return (src->name = spec_strdup(json_string_value(v))) ? 0 : -1;
    }
    if (!json_is_object(v))
        return error_at(p,
                        "expected a dataset name or a source object {\"format\": ...}, "
                        "got %s",
                        spec_json_kind(v));
    if (json_object_get(v, "name") && !json_object_get(v, "format")) {
        src->kind = SPEC_SOURCE_NAME;
        const char *name;
        return spec_check_fields(v, p, name_fields, "a named source") ||
                       spec_get_string(v, p, "name", true, &name) ||
                       !(src->name = spec_strdup(name)) || parse_token_options(v, p, src)
                   ? -1
                   : 0;
    }
    const char *format;
    if (spec_get_string(v, p, "format", true, &format)) return -1;
    for (size_t i = 0; i < sizeof source_formats / sizeof *source_formats; i++) {
        if (strcmp(format, source_formats[i].format) != 0) continue;
        src->kind = source_formats[i].kind;
        return source_formats[i].parse(v, p, base_dir, src);
    }
    char pf[SPEC_PATH_MAX];
    return error_at(spec_path_key(pf, p, "format"),
                    "unknown format '%s' (known: idx, csv, npy, tokens, text, imagefolder, "
                    "cifar10)", format);
}

void spec_source_free(SpecSource *s) {
    free(s->name);
    free(s->images);
    free(s->labels);
    free(s->path);
    for (int i = 0; i < s->num_feature_columns; i++) free(s->feature_columns[i]);
    free(s->feature_columns);
    for (int i = 0; i < s->num_label_columns; i++) free(s->label_columns[i]);
    free(s->label_columns);
    free(s->inputs);
    free(s->targets);
    free(s->root);
    for (int i = 0; i < s->num_files; i++) free(s->files[i]);
    free(s->files);
    memset(s, 0, sizeof *s);
}

/* A number the transform computes with in float32: within its range (a
 * mean of 1e39 would make every input inf, a std of 1e39 every input 0). */
static int float32_value(const json_t *v, const char *p, double *out) {
    if (spec_number_value(v, p, out)) return -1;
    if (fabs(*out) > FLT_MAX)
        return error_at(p, "%g is beyond float32's range (the transform computes in float32)",
                        *out);
    return 0;
}

/* mean / std: a list of numbers, or one number. */
static int get_doubles(const json_t *v, const char *p, double **out, int *n) {
    if (json_is_number(v)) {
        if (!(*out = malloc(sizeof **out))) return error_at(p, "out of memory");
        *n = 1;
        return float32_value(v, p, *out);
    }
    if (!json_is_array(v))
        return error_at(p, "expected a list of numbers, got %s", spec_json_kind(v));
    size_t k = json_array_size(v);
    if (k == 0 || k > 4096) return error_at(p, "expected 1 to 4096 numbers, got %zu", k);
    if (!(*out = malloc(k * sizeof **out))) return error_at(p, "out of memory");
    *n = (int)k;
    for (size_t i = 0; i < k; i++) {
        char pi[SPEC_PATH_MAX];
        if (float32_value(json_array_get(v, i), spec_path_index(pi, p, i), &(*out)[i]))
            return -1;
    }
    return 0;
}

static const char *const transform_fields[] = {"type", NULL};
static const char *const normalize_fields[] = {"type", "mean", "std", "inplace", NULL};

static int parse_transforms(JobSpec *spec, const json_t *v) {
    const char *p = "data.transforms";
    if (!v) return transform_list_init(&spec->transforms, NULL, 0);
    if (!json_is_array(v)) return error_at(p, "expected a list, got %s", spec_json_kind(v));
    size_t n = json_array_size(v);
    if (n > 64) return error_at(p, "at most 64 transforms, got %zu", n);
    if (n && !(spec->transform_configs = calloc(n, sizeof *spec->transform_configs)))
        return error_at(p, "out of memory");
    int first = 0; /* the per-sample image transforms come first */
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(v, i);
        char pi[SPEC_PATH_MAX], pk[SPEC_PATH_MAX];
        spec_path_index(pi, p, i);
        const char *type;
        if (spec_expect_object(t, pi) || spec_get_string(t, pi, "type", true, &type)) return -1;
        if (augment_is_type(type)) {
            if ((size_t)first != i)
                return error_at(pi, "%s is done to each image as it is loaded: list it before "
                                "ToTensor, Normalize and Flatten", type);
            if (first == AUGMENT_MAX)
                return error_at(pi, "at most %d image transforms", AUGMENT_MAX);
            if (spec_parse_augment(t, pi, type, &spec->augment.items[first])) return -1;
            spec->augment.count = ++first;
            continue;
        }
        TransformConfig *c = &spec->transform_configs[spec->num_transforms++];
        bool normalize = strcmp(type, "Normalize") == 0;
        if (!normalize && strcmp(type, "ToTensor") != 0 && strcmp(type, "Flatten") != 0)
            return error_at(pi, "unknown transform '%s' (known: RandomCrop, "
                            "RandomHorizontalFlip, Resize, CenterCrop, ToTensor, Normalize, "
                            "Flatten)", type);
        bool inplace;
        if (spec_check_fields(t, pi, normalize ? normalize_fields : transform_fields, type) ||
            spec_get_bool(t, pi, "inplace", false, &inplace) || !(c->type = spec_strdup(type)))
            return -1;
        json_t *mean = json_object_get(t, "mean"), *std = json_object_get(t, "std");
        if (mean && get_doubles(mean, spec_path_key(pk, pi, "mean"), (double **)&c->mean,
                                &c->num_mean))
            return -1;
        if (std && get_doubles(std, spec_path_key(pk, pi, "std"), (double **)&c->std,
                               &c->num_std))
            return -1;
    }
    if (transform_list_init_at(&spec->transforms, spec->transform_configs,
                               spec->num_transforms, first))
        return error_nest("data"); /* "data.transforms[1] Normalize: ..." */
    return 0;
}

/* Splits of one file (or dataset) must be its train and val parts, cut at
 * one place, or the val windows would overlap the train ones or leave
 * tokens out. (The whole of it on both sides is a choice: no split.) */
static int check_splits(const SpecSource *train, const SpecSource *val) {
    const char *a = train->path ? train->path : train->name, *b = val->path ? val->path : val->name;
    if (!a || !b || strcmp(a, b) != 0 ||
        (train->split == DATASET_SPLIT_ALL && val->split == DATASET_SPLIT_ALL))
        return 0;
    if (train->split != DATASET_SPLIT_TRAIN || val->split != DATASET_SPLIT_VAL)
        return error_at("data.val.split",
                        "%s of '%s', and data.train takes %s of it: the val tokens would "
                        "overlap the train ones (give data.train \"split\": \"train\" and "
                        "data.val \"split\": \"val\")",
                        dataset_split_name(val->split), b, dataset_split_name(train->split));
    if (train->val_fraction == val->val_fraction) return 0;
    return error_at("data.val.val_fraction",
                    "%g, but data.train's is %g: the splits of one file must cut it at one "
                    "place (give both the same val_fraction)",
                    val->val_fraction, train->val_fraction);
}

static const char *const data_fields[] = {"train", "val", "transforms", "num_workers", NULL};

int spec_parse_data(JobSpec *spec, const json_t *v, const char *base_dir) {
    if (!v) return error_at("data", "required");
    if (spec_expect_object(v, "data") || spec_check_fields(v, "data", data_fields, NULL))
        return -1;
    json_t *train = json_object_get(v, "train"), *val = json_object_get(v, "val");
    if (!train) return error_at("data.train", "required");
    if (parse_source(train, "data.train", base_dir, &spec->train)) return -1;
    if (val && !json_is_null(val) && parse_source(val, "data.val", base_dir, &spec->val))
        return -1;
    if (check_splits(&spec->train, &spec->val)) return -1;
    int64_t workers;
    if (spec_get_int(v, "data", "num_workers", false, 0, 0, 256, &workers)) return -1;
    spec->num_workers = (int)workers;
    return parse_transforms(spec, json_object_get(v, "transforms"));
}

/* A classification loss takes one label column; say so before any loading. */
static int check_source(const JobSpec *spec, const SpecSource *src, const char *path) {
    char p[SPEC_PATH_MAX];
    if (src->kind == SPEC_SOURCE_CSV && job_spec_uses_labels(spec) && src->num_label_columns > 1)
        return error_at(spec_path_key(p, path, "label_column"),
                        "%s takes one column of class labels, got %d", spec_loss_name(spec->loss),
                        src->num_label_columns);
    return 0;
}

int spec_data_check_loss(const JobSpec *spec) {
    return check_source(spec, &spec->train, "data.train") ||
                   check_source(spec, &spec->val, "data.val")
               ? -1
               : 0;
}

void spec_data_free(JobSpec *spec) {
    spec_source_free(&spec->train);
    spec_source_free(&spec->val);
    for (int i = 0; i < spec->num_transforms; i++) {
        free((char *)spec->transform_configs[i].type);
        free((double *)spec->transform_configs[i].mean);
        free((double *)spec->transform_configs[i].std);
    }
    free(spec->transform_configs);
    spec->transform_configs = NULL;
    spec->num_transforms = 0;
    transform_list_free(&spec->transforms);
}

/* ---- loading inline sources ---- */

int job_spec_token_options(const JobSpec *spec, const SpecSource *src, const char *what,
                           TokenOptions *out) {
    *out = (TokenOptions){.block_size = src->block_size, .split = src->split,
                          .val_fraction = src->val_fraction, .vocab_size = src->vocab_size};
    if (out->block_size == 0 && spec->arch.kind == SPEC_ARCH_GPT)
        out->block_size = spec->arch.gpt.block_size;
    if (out->block_size > 0) return 0;
    char p[SPEC_PATH_MAX];
    return error_at(spec_path_key(p, what, "block_size"),
                    "required for token data (the windows' length), unless the model is "
                    "{\"arch\": \"gpt\"} with its block_size");
}

Dataset *job_spec_load_source(const JobSpec *spec, const SpecSource *src) {
    const char *what = src == &spec->val ? "data.val" : "data.train";
    Dataset *ds = NULL;
    switch (src->kind) {
    case SPEC_SOURCE_NONE: error_at(what, "no dataset given"); return NULL;
    case SPEC_SOURCE_NAME:
        error_at(what,
                 "'%s' names a dataset of the daemon; here give a source such as "
                 "{\"format\": \"idx\", \"images\": ..., \"labels\": ...}",
                 src->name);
        return NULL;
    case SPEC_SOURCE_IDX: ds = dataset_load_idx(src->images, src->labels); break;
    case SPEC_SOURCE_NPY: ds = dataset_load_npy(src->inputs, src->targets); break;
    case SPEC_SOURCE_TOKENS:
    case SPEC_SOURCE_TEXT: {
        TokenOptions o;
        if (job_spec_token_options(spec, src, what, &o) != 0) return NULL;
        ds = src->kind == SPEC_SOURCE_TOKENS ? dataset_load_tokens(src->path, &o)
                                             : dataset_load_text(src->path, &o);
        break;
    }
    case SPEC_SOURCE_IMAGEFOLDER: ds = dataset_load_imagefolder(src->root, src->grayscale,
                                                           IMAGEFOLDER_DECODE_PER_BATCH); break;
    case SPEC_SOURCE_CIFAR10:
        ds = dataset_load_cifar10((const char *const *)src->files, src->num_files);
        break;
    case SPEC_SOURCE_CSV: {
        CsvOptions o = {
            .label_columns = (const char *const *)src->label_columns,
            .num_label_columns = src->num_label_columns,
            .feature_columns = (const char *const *)src->feature_columns,
            .num_feature_columns = src->num_feature_columns,
            .regression = !job_spec_uses_labels(spec),
        };
        ds = dataset_load_csv(src->path, &o);
        break;
    }
    }
    if (!ds) error_prefix_at(what);
    return ds;
}
