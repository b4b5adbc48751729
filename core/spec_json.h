/* spec_json.h - typed readers of JSON fields for the job spec parser
 * (core/spec.c, spec_data.c, spec_model.c, spec_scheduler.c, ...); private
 * to them.
 *
 * Each reader takes the JSON path of the object it reads from ("optimizer",
 * "model[3]", "" at the top level) and, on failure, sets an error that starts
 * with the field's full path: "optimizer.lr: expected a number, got string".
 * Readers return 0 or -1; absent optional fields get the default given.
 */
#ifndef TRAIND_CORE_SPEC_JSON_H
#define TRAIND_CORE_SPEC_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/spec.h"

#define SPEC_PATH_MAX 256

/* "object", "array", "string", "number", "boolean", "null" */
const char *spec_json_kind(const json_t *v);
/* "parent.key" ("key" at the top level) into buf. */
const char *spec_path_key(char *buf, const char *parent, const char *key);
/* "parent[i]" into buf. */
const char *spec_path_index(char *buf, const char *parent, size_t i);

/* -1 with "path: expected an object, got array" unless v is an object. */
int spec_expect_object(const json_t *v, const char *path);
/* Every key of obj must be in the NULL-terminated `known`; otherwise
 * "path.key: unknown field (did you mean 'x'?)", or listing the known
 * fields of `owner` ("SGD") when nothing is close. */
int spec_check_fields(const json_t *obj, const char *path, const char *const *known,
                      const char *owner);
/* Index of the entry of `known` (NULL-terminated) that `word` is probably a
 * misspelling of (case or one or two letters), or -1. */
int spec_suggest(const char *word, const char *const *known);

/* obj[key] read as a type. `required`: absent is "path.key: required";
 * otherwise absent gives `def`. null counts as present (and is a type error). */
int spec_get_int(const json_t *obj, const char *path, const char *key, bool required,
                 int64_t def, int64_t lo, int64_t hi, int64_t *out);
int spec_get_number(const json_t *obj, const char *path, const char *key, bool required,
                    double def, double *out);
int spec_get_bool(const json_t *obj, const char *path, const char *key, bool def, bool *out);
/* *out borrowed from obj; NULL when absent and not required. Empty strings
 * are refused. */
int spec_get_string(const json_t *obj, const char *path, const char *key, bool required,
                    const char **out);
/* A JSON integer value as int64 in [lo, hi]; path is the value's own path. */
int spec_int_value(const json_t *v, const char *path, int64_t lo, int64_t hi, int64_t *out);
/* A JSON number (integer or real) value. */
int spec_number_value(const json_t *v, const char *path, double *out);
/* -1 with "path.key: must be >= 0, got x" when x < 0. */
int spec_non_negative(const char *path, const char *key, double x);

/* An argument traind accepts only at torch's default `def` (a new
 * reference, consumed): absent or equal, else "path.key: only torch's
 * default <def_text> is supported, got <value>". */
int spec_only_default(const json_t *obj, const char *path, const char *key, json_t *def,
                      const char *def_text);
/* strdup that sets an error when out of memory. */
char *spec_strdup(const char *s);
/* path as written when absolute or without a base, else base_dir/path: a
 * new string, NULL (with an error) when out of memory. */
char *spec_resolve_path(const char *base_dir, const char *path);
/* obj[key], a required non-empty string, as a path: kept as written when
 * absolute or when base_dir is NULL, else base_dir/path. *out is owned. */
int spec_get_path(const json_t *obj, const char *path, const char *key, const char *base_dir,
                  char **out);

/* ---- the sections, for spec.c ---- */

/* "ranks", "nodes", "device", "gpus", "devices" (spec_placement.c); after
 * batch_size, which must divide by the ranks. */
int spec_parse_placement(JobSpec *spec, const json_t *root);

/* The "model" list into spec->layers (spec_model.c). */
int spec_parse_model(JobSpec *spec, const json_t *model);
/* "model": {"arch": ...} into *arch (spec_arch.c); the arch's model and its
 * output shape and sizes for a batch of dtype/shape x (errors at "model"). */
int spec_arch_parse(SpecArch *arch, const json_t *model);
Module *spec_arch_build(const SpecArch *arch, Rng *rng);
int spec_arch_size(const SpecArch *arch, DType dtype, int ndim, const int64_t *x,
                   SpecModelSize *size);
/* One per-sample image transform of "data.transforms" (spec_augment.c). */
int spec_parse_augment(const json_t *o, const char *path, const char *type, Augment *out);
/* a + b and a * b, saturating at INT64_MAX: a spec may describe any size
 * (spec_shapes.c, the archs' sizes). */
static inline int64_t spec_sat_add(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static inline int64_t spec_sat_mul(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

/* The rows of spec_arch.c's table: "gpt" (spec_gpt.c). */
int spec_gpt_parse(const json_t *model, const char *name, SpecArch *out);
int spec_gpt_size(const SpecArch *arch, DType dtype, int ndim, const int64_t *x,
                  SpecModelSize *size);
Module *spec_gpt_build(const SpecArch *arch, Rng *rng);
/* The sizes of n_layers layers in sequence over the batch shape (*ndim,
 * shape), which becomes their output's; counts added into *size
 * (spec_shapes.c). -1 with a bare error and the failing layer's index. */
int spec_layers_size(const SpecLayer *layers, int n_layers, int *ndim, int64_t *shape,
                     SpecModelSize *size, int *failed);
/* core/spec_resnet.c: a BasicBlock/Bottleneck layer's sizes (as
 * spec_layers_size does one layer), and the resnet rows of spec_arch.c. */
int spec_resnet_block_size(const SpecLayer *block, int *ndim, int64_t *shape,
                           SpecModelSize *size);
extern const char *const spec_resnet_fields[];
int spec_resnet_parse(const json_t *model, const char *name, SpecArch *out);
int spec_resnet_size(const SpecArch *arch, DType dtype, int ndim, const int64_t *x,
                     SpecModelSize *size);
Module *spec_resnet_build(const SpecArch *arch, Rng *rng);
/* The "data" object into spec->train, val and transforms (spec_data.c);
 * spec_data_free releases what it filled. */
int spec_parse_data(JobSpec *spec, const json_t *data, const char *base_dir);
void spec_data_free(JobSpec *spec);
/* What the sources ask of the loss, once it is known (spec_data.c). */
int spec_data_check_loss(const JobSpec *spec);
/* The "scheduler" object (absent or null: none) into spec->lr_scheduler,
 * checked by making one (spec_scheduler.c); spec_scheduler_free releases
 * what it filled. */
int spec_parse_scheduler(JobSpec *spec, const json_t *v);
void spec_scheduler_free(JobSpec *spec);

#endif
