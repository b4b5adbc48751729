/* spec_model.c - the job spec's "model": a list of torch.nn layers.
 *
 * Each entry is {"type": "<torch class>", <torch's constructor arguments>}.
 * The table below says, per type, which arguments exist and how to read
 * them; arguments PyTorch has but traind does not implement (a pool's
 * dilation, ceil_mode, ...) are accepted only with torch's default value, so
 * a spec copied from a script either means the same thing or is refused.
 *
 * Also here: building the nn.Sequential. The shape check, which needs no
 * built model, is spec_shapes.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "core/spec.h"
#include "core/spec_json.h"

#define MAX_FEATURES ((int64_t)1 << 31)
#define MAX_WINDOW 65535

/* ---- argument readers ---- */

/* kernel_size / stride / padding: an int or [h, w]. */
static int size2d_value(const json_t *v, const char *p, int64_t lo, Size2d *out) {
    int64_t h, w;
    if (json_is_array(v)) {
        if (json_array_size(v) != 2)
            return error_at(p, "expected an integer or a list of 2 integers, got a list of %zu",
                            json_array_size(v));
        char ph[SPEC_PATH_MAX], pw[SPEC_PATH_MAX];
        if (spec_int_value(json_array_get(v, 0), spec_path_index(ph, p, 0), lo, MAX_WINDOW, &h) ||
            spec_int_value(json_array_get(v, 1), spec_path_index(pw, p, 1), lo, MAX_WINDOW, &w))
            return -1;
    } else if (json_is_integer(v)) {
        if (spec_int_value(v, p, lo, MAX_WINDOW, &h)) return -1;
        w = h;
    } else {
        return error_at(p, "expected an integer or a list of 2 integers, got %s",
                        spec_json_kind(v));
    }
    *out = (Size2d){(int)h, (int)w};
    return 0;
}

static int get_size2d(const json_t *obj, const char *path, const char *key, bool required,
                      Size2d def, int64_t lo, Size2d *out) {
    char p[SPEC_PATH_MAX];
    spec_path_key(p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required) return error_at(p, "required");
        *out = def;
        return 0;
    }
    return size2d_value(v, p, lo, out);
}


/* dilation: 1 or [1, 1] only. */
static int only_unit_dilation(const json_t *obj, const char *path) {
    Size2d d;
    if (get_size2d(obj, path, "dilation", false, SIZE2D(1), 1, &d)) return -1;
    if (d.h == 1 && d.w == 1) return 0;
    char p[SPEC_PATH_MAX];
    return error_at(spec_path_key(p, path, "dilation"),
                    "only torch's default 1 is supported, got (%d, %d)", d.h, d.w);
}

static int get_features(const json_t *obj, const char *path, const char *key, int64_t *out) {
    return spec_get_int(obj, path, key, true, 0, 1, MAX_FEATURES, out);
}

/* ---- one parser per layer type ---- */

static int parse_linear(const json_t *o, const char *path, SpecLayer *l) {
    return get_features(o, path, "in_features", &l->in_features) ||
                   get_features(o, path, "out_features", &l->out_features) ||
                   spec_get_bool(o, path, "bias", true, &l->bias)
               ? -1
               : 0;
}

static int parse_conv2d(const json_t *o, const char *path, SpecLayer *l) {
    char p[SPEC_PATH_MAX];
    if (get_features(o, path, "in_channels", &l->in_channels) ||
        get_features(o, path, "out_channels", &l->out_channels) ||
        get_size2d(o, path, "kernel_size", true, SIZE2D(0), 1, &l->kernel_size) ||
        get_size2d(o, path, "stride", false, SIZE2D(1), 1, &l->stride) ||
        get_size2d(o, path, "dilation", false, SIZE2D(1), 1, &l->dilation) ||
        spec_get_int(o, path, "groups", false, 1, 1, INT32_MAX, &l->groups))
        return -1;
    /* a dilated kernel spans d * (k - 1) + 1 pixels, counted in int by the
     * shapes and the padding below: no more than a window may be */
    int64_t span_h = (int64_t)l->dilation.h * (l->kernel_size.h - 1) + 1,
            span_w = (int64_t)l->dilation.w * (l->kernel_size.w - 1) + 1;
    if (span_h > MAX_WINDOW || span_w > MAX_WINDOW)
        return error_at(spec_path_key(p, path, "dilation"),
                        "(%d, %d) spreads the kernel (%d, %d) over (%lld, %lld) pixels; at most %d",
                        l->dilation.h, l->dilation.w, l->kernel_size.h, l->kernel_size.w,
                        (long long)span_h, (long long)span_w, MAX_WINDOW);
    if (l->in_channels % l->groups || l->out_channels % l->groups)
        return error_at(spec_path_key(p, path, "groups"),
                        "must divide in_channels (%lld) and out_channels (%lld), got %lld",
                        (long long)l->in_channels, (long long)l->out_channels,
                        (long long)l->groups);
    /* padding: an int, [h, w], or torch's "valid" / "same" */
    spec_path_key(p, path, "padding");
    json_t *pad = json_object_get(o, "padding");
    if (json_is_string(pad)) {
        const char *s = json_string_value(pad);
        if (strcmp(s, "valid") == 0) {
            l->padding = SIZE2D(0);
        } else if (strcmp(s, "same") == 0) {
            if (l->stride.h != 1 || l->stride.w != 1)
                return error_at(p, "'same' needs stride 1 (as in torch), got (%d, %d)", l->stride.h,
                                l->stride.w);
            if (l->kernel_size.h % 2 == 0 || l->kernel_size.w % 2 == 0)
                return error_at(p,
                                "'same' with the even kernel_size (%d, %d) pads unevenly, "
                                "which is not supported; give the padding as numbers",
                                l->kernel_size.h, l->kernel_size.w);
            /* a dilated kernel spans d * (k - 1) + 1: half of d * (k - 1) each side */
            l->padding = (Size2d){l->dilation.h * (l->kernel_size.h - 1) / 2,
                                  l->dilation.w * (l->kernel_size.w - 1) / 2};
        } else {
            return error_at(p,
                            "expected an integer, a list of 2 integers, 'valid' or 'same', "
                            "got '%s'",
                            s);
        }
    } else if (get_size2d(o, path, "padding", false, SIZE2D(0), 0, &l->padding)) {
        return -1;
    }
    return spec_get_bool(o, path, "bias", true, &l->bias) ||
                   spec_only_default(o, path, "padding_mode", json_string("zeros"), "'zeros'")
               ? -1
               : 0;
}

/* ReLU, SiLU: only `inplace`, which gives the same result; traind never needs it. */
static int parse_inplace(const json_t *o, const char *path, SpecLayer *l) {
    bool inplace;
    return spec_get_bool(o, path, "inplace", false, &inplace);
}

static int parse_no_args(const json_t *o, const char *path, SpecLayer *l) { return 0; }

static int parse_gelu(const json_t *o, const char *path, SpecLayer *l) {
    char p[SPEC_PATH_MAX];
    json_t *v = json_object_get(o, "approximate");
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (!v || (s && strcmp(s, "none") == 0)) return 0;
    if (s && strcmp(s, "tanh") == 0) {
        l->gelu_tanh = true;
        return 0;
    }
    char *got = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    error_at(spec_path_key(p, path, "approximate"), "expected \"none\" or \"tanh\", got %s",
             got ? got : spec_json_kind(v));
    free(got);
    return -1;
}

static int parse_leaky_relu(const json_t *o, const char *path, SpecLayer *l) {
    bool inplace; /* as ReLU's */
    return spec_get_number(o, path, "negative_slope", false, 0.01, &l->negative_slope) ||
                   spec_get_bool(o, path, "inplace", false, &inplace)
               ? -1
               : 0;
}

static int parse_softmax(const json_t *o, const char *path, SpecLayer *l) {
    int64_t dim;
    char p[SPEC_PATH_MAX];
    if (!json_object_get(o, "dim") || json_is_null(json_object_get(o, "dim")))
        return error_at(spec_path_key(p, path, "dim"),
                        "required (torch's implicit dim=None is deprecated; the class "
                        "dimension of [N, C] is 1)");
    if (spec_get_int(o, path, "dim", true, 0, -TENSOR_MAX_DIMS, TENSOR_MAX_DIMS - 1, &dim))
        return -1;
    l->dim = (int)dim;
    return 0;
}

static int parse_pool(const json_t *o, const char *path, SpecLayer *l) {
    if (get_size2d(o, path, "kernel_size", true, SIZE2D(0), 1, &l->kernel_size)) return -1;
    /* stride=None (absent or null) is the kernel size, kept as {0, 0} as nn_*_pool2d want */
    json_t *st = json_object_get(o, "stride");
    if (st && !json_is_null(st)) {
        if (get_size2d(o, path, "stride", false, SIZE2D(0), 1, &l->stride)) return -1;
    } else {
        l->stride = SIZE2D(0);
    }
    if (get_size2d(o, path, "padding", false, SIZE2D(0), 0, &l->padding)) return -1;
    if (l->padding.h > l->kernel_size.h / 2 || l->padding.w > l->kernel_size.w / 2) {
        char p[SPEC_PATH_MAX];
        return error_at(spec_path_key(p, path, "padding"),
                        "must be at most half of kernel_size (%d, %d), got (%d, %d)",
                        l->kernel_size.h, l->kernel_size.w, l->padding.h, l->padding.w);
    }
    if (spec_only_default(o, path, "ceil_mode", json_false(), "false")) return -1;
    if (l->type == SPEC_LAYER_MAX_POOL2D)
        return only_unit_dilation(o, path) ||
                       spec_only_default(o, path, "return_indices", json_false(), "false")
                   ? -1
                   : 0;
    return spec_only_default(o, path, "count_include_pad", json_true(), "true") ||
                   spec_only_default(o, path, "divisor_override", json_null(), "null")
               ? -1
               : 0;
}

static int parse_flatten(const json_t *o, const char *path, SpecLayer *l) {
    int64_t s, e;
    if (spec_get_int(o, path, "start_dim", false, 1, -TENSOR_MAX_DIMS, TENSOR_MAX_DIMS - 1, &s) ||
        spec_get_int(o, path, "end_dim", false, -1, -TENSOR_MAX_DIMS, TENSOR_MAX_DIMS - 1, &e))
        return -1;
    l->start_dim = (int)s;
    l->end_dim = (int)e;
    return 0;
}

static int parse_dropout(const json_t *o, const char *path, SpecLayer *l) {
    bool inplace;
    if (spec_get_number(o, path, "p", false, 0.5, &l->p) ||
        spec_get_bool(o, path, "inplace", false, &inplace))
        return -1;
    if (l->p < 0 || l->p > 1) {
        char p[SPEC_PATH_MAX];
        return error_at(spec_path_key(p, path, "p"), "must be in [0, 1], got %g", l->p);
    }
    return 0;
}

static int parse_batch_norm(const json_t *o, const char *path, SpecLayer *l) {
    char p[SPEC_PATH_MAX];
    if (get_features(o, path, "num_features", &l->num_features) ||
        spec_get_number(o, path, "eps", false, 1e-5, &l->eps))
        return -1;
    if (!(l->eps > 0))
        return error_at(spec_path_key(p, path, "eps"), "must be > 0, got %g", l->eps);
    json_t *mom = json_object_get(o, "momentum");
    if (json_is_null(mom)) {
        l->momentum = NAN; /* torch's None: a cumulative moving average */
    } else {
        if (spec_get_number(o, path, "momentum", false, 0.1, &l->momentum)) return -1;
        if (l->momentum < 0 || l->momentum > 1)
            return error_at(spec_path_key(p, path, "momentum"),
                            "must be in [0, 1] (or null), got %g", l->momentum);
    }
    return spec_get_bool(o, path, "affine", true, &l->affine) ||
                   spec_get_bool(o, path, "track_running_stats", true, &l->track_running_stats)
               ? -1
               : 0;
}

/* normalized_shape: an int or a list of 1 to TENSOR_MAX_DIMS ints. */
static int parse_layer_norm(const json_t *o, const char *path, SpecLayer *l) {
    char p[SPEC_PATH_MAX];
    spec_path_key(p, path, "normalized_shape");
    json_t *v = json_object_get(o, "normalized_shape");
    if (!v) return error_at(p, "required");
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if (n < 1 || n > TENSOR_MAX_DIMS)
            return error_at(p, "expected a list of 1 to %d integers, got a list of %zu",
                            TENSOR_MAX_DIMS, n);
        for (size_t i = 0; i < n; i++) {
            char pi[SPEC_PATH_MAX];
            if (spec_int_value(json_array_get(v, i), spec_path_index(pi, p, i), 1, MAX_FEATURES,
                               &l->normalized_shape[i]))
                return -1;
        }
        l->norm_ndim = (int)n;
    } else if (json_is_integer(v)) {
        if (spec_int_value(v, p, 1, MAX_FEATURES, &l->normalized_shape[0])) return -1;
        l->norm_ndim = 1;
    } else {
        return error_at(p, "expected an integer or a list of integers, got %s",
                        spec_json_kind(v));
    }
    if (spec_get_number(o, path, "eps", false, 1e-5, &l->eps)) return -1;
    if (!(l->eps > 0))
        return error_at(spec_path_key(p, path, "eps"), "must be > 0, got %g", l->eps);
    return spec_get_bool(o, path, "elementwise_affine", true, &l->elementwise_affine) ||
                   spec_get_bool(o, path, "bias", true, &l->bias)
               ? -1
               : 0;
}

static int parse_embedding(const json_t *o, const char *path, SpecLayer *l) {
    return get_features(o, path, "num_embeddings", &l->num_embeddings) ||
                   get_features(o, path, "embedding_dim", &l->embedding_dim) ||
                   spec_only_default(o, path, "padding_idx", json_null(), "null") ||
                   spec_only_default(o, path, "max_norm", json_null(), "null") ||
                   spec_only_default(o, path, "scale_grad_by_freq", json_false(), "false") ||
                   spec_only_default(o, path, "sparse", json_false(), "false")
               ? -1
               : 0;
}

static int parse_adaptive_pool(const json_t *o, const char *path, SpecLayer *l) {
    return get_size2d(o, path, "output_size", true, SIZE2D(0), 1, &l->output_size);
}

/* torchvision's BasicBlock / Bottleneck(inplanes, planes, stride=1); the
 * downsample is made as ResNet._make_layer makes it, so it is no argument;
 * groups, base_width and dilation only at their defaults. */
static int parse_block(const json_t *o, const char *path, SpecLayer *l) {
    int64_t stride;
    if (get_features(o, path, "inplanes", &l->inplanes) ||
        get_features(o, path, "planes", &l->planes) ||
        spec_get_int(o, path, "stride", false, 1, 1, MAX_WINDOW, &stride))
        return -1;
    l->stride = SIZE2D((int)stride);
    return spec_only_default(o, path, "groups", json_integer(1), "1") ||
                   spec_only_default(o, path, "base_width", json_integer(64), "64") ||
                   spec_only_default(o, path, "dilation", json_integer(1), "1")
               ? -1
               : 0;
}

/* ---- the table ---- */

typedef struct {
    const char *name;
    SpecLayerType type;
    int (*parse)(const json_t *o, const char *path, SpecLayer *l);
    const char *fields[12]; /* "type" first, NULL-terminated */
} LayerKind;

static const LayerKind layer_kinds[] = {
    {"Linear", SPEC_LAYER_LINEAR, parse_linear,
     {"type", "in_features", "out_features", "bias", NULL}},
    {"Conv2d", SPEC_LAYER_CONV2D, parse_conv2d,
     {"type", "in_channels", "out_channels", "kernel_size", "stride", "padding", "bias",
      "dilation", "groups", "padding_mode", NULL}},
    {"ReLU", SPEC_LAYER_RELU, parse_inplace, {"type", "inplace", NULL}},
    {"Sigmoid", SPEC_LAYER_SIGMOID, parse_no_args, {"type", NULL}},
    {"Tanh", SPEC_LAYER_TANH, parse_no_args, {"type", NULL}},
    {"Softmax", SPEC_LAYER_SOFTMAX, parse_softmax, {"type", "dim", NULL}},
    {"MaxPool2d", SPEC_LAYER_MAX_POOL2D, parse_pool,
     {"type", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices",
      NULL}},
    {"AvgPool2d", SPEC_LAYER_AVG_POOL2D, parse_pool,
     {"type", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
      "divisor_override", NULL}},
    {"Flatten", SPEC_LAYER_FLATTEN, parse_flatten, {"type", "start_dim", "end_dim", NULL}},
    {"Dropout", SPEC_LAYER_DROPOUT, parse_dropout, {"type", "p", "inplace", NULL}},
    {"BatchNorm1d", SPEC_LAYER_BATCH_NORM1D, parse_batch_norm,
     {"type", "num_features", "eps", "momentum", "affine", "track_running_stats", NULL}},
    {"BatchNorm2d", SPEC_LAYER_BATCH_NORM2D, parse_batch_norm,
     {"type", "num_features", "eps", "momentum", "affine", "track_running_stats", NULL}},
    {"GELU", SPEC_LAYER_GELU, parse_gelu, {"type", "approximate", NULL}},
    {"SiLU", SPEC_LAYER_SILU, parse_inplace, {"type", "inplace", NULL}},
    {"LeakyReLU", SPEC_LAYER_LEAKY_RELU, parse_leaky_relu,
     {"type", "negative_slope", "inplace", NULL}},
    {"Identity", SPEC_LAYER_IDENTITY, parse_no_args, {"type", NULL}},
    {"LayerNorm", SPEC_LAYER_LAYER_NORM, parse_layer_norm,
     {"type", "normalized_shape", "eps", "elementwise_affine", "bias", NULL}},
    {"Embedding", SPEC_LAYER_EMBEDDING, parse_embedding,
     {"type", "num_embeddings", "embedding_dim", "padding_idx", "max_norm", "scale_grad_by_freq",
      "sparse", NULL}},
    {"AdaptiveAvgPool2d", SPEC_LAYER_ADAPTIVE_AVG_POOL2D, parse_adaptive_pool,
     {"type", "output_size", NULL}},
    {"BasicBlock", SPEC_LAYER_BASIC_BLOCK, parse_block,
     {"type", "inplanes", "planes", "stride", "groups", "base_width", "dilation", NULL}},
    {"Bottleneck", SPEC_LAYER_BOTTLENECK, parse_block,
     {"type", "inplanes", "planes", "stride", "groups", "base_width", "dilation", NULL}},
};
#define NUM_LAYER_KINDS ((int)(sizeof layer_kinds / sizeof layer_kinds[0]))

const char *spec_layer_type_name(SpecLayerType type) {
    for (int i = 0; i < NUM_LAYER_KINDS; i++)
        if (layer_kinds[i].type == type) return layer_kinds[i].name;
    return "?";
}

static int unknown_type(const char *path, const char *type) {
    const char *names[NUM_LAYER_KINDS + 1];
    char list[512];
    size_t n = 0;
    for (int i = 0; i < NUM_LAYER_KINDS; i++) {
        names[i] = layer_kinds[i].name;
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", names[i]);
    }
    names[NUM_LAYER_KINDS] = NULL;
    /* Only a difference of case gets a suggestion: "Conv3d" is not a typo of
     * "Conv2d", and the list says what there is. */
    for (int i = 0; i < NUM_LAYER_KINDS; i++)
        if (strcasecmp(type, names[i]) == 0)
            return error_at(path, "unknown layer type '%s' (did you mean '%s'?)", type, names[i]);
    return error_at(path, "unknown layer type '%s' (known: %s)", type, list);
}

static int parse_layer(const json_t *o, const char *path, SpecLayer *l) {
    if (spec_expect_object(o, path)) return -1;
    const char *type;
    if (spec_get_string(o, path, "type", true, &type)) return -1;
    const LayerKind *k = NULL;
    for (int i = 0; i < NUM_LAYER_KINDS && !k; i++)
        if (strcmp(layer_kinds[i].name, type) == 0) k = &layer_kinds[i];
    if (!k) return unknown_type(path, type);
    char owner[64];
    snprintf(owner, sizeof owner, "%s", k->name);
    if (spec_check_fields(o, path, k->fields, owner)) return -1;
    memset(l, 0, sizeof *l);
    l->type = k->type;
    return k->parse(o, path, l);
}

int spec_parse_model(JobSpec *spec, const json_t *model) {
    if (!model) return error_at("model", "required");
    if (json_is_object(model) && json_object_get(model, "arch"))
        return spec_arch_parse(&spec->arch, model);
    if (!json_is_array(model))
        return error_at("model", "expected a list of layers or {\"arch\": ...}, got %s",
                        spec_json_kind(model));
    size_t n = json_array_size(model);
    if (n == 0) return error_at("model", "must have at least one layer");
    if (n > JOB_SPEC_MAX_LAYERS)
        return error_at("model", "at most %d layers, got %zu", JOB_SPEC_MAX_LAYERS, n);
    spec->layers = calloc(n, sizeof *spec->layers);
    if (!spec->layers) return error_at("model", "out of memory");
    spec->num_layers = (int)n;
    for (size_t i = 0; i < n; i++) {
        char p[SPEC_PATH_MAX];
        if (parse_layer(json_array_get(model, i), spec_path_index(p, "model", i),
                        &spec->layers[i]))
            return -1;
    }
    return 0;
}

/* ---- building ---- */

static Module *build_layer(const SpecLayer *l, Rng *rng) {
    switch (l->type) {
    case SPEC_LAYER_LINEAR: return nn_linear(l->in_features, l->out_features, l->bias, rng);
    case SPEC_LAYER_CONV2D:
        return nn_conv2d_grouped(l->in_channels, l->out_channels, l->kernel_size, l->stride,
                                 l->padding, l->dilation, l->groups, l->bias, rng);
    case SPEC_LAYER_RELU: return nn_relu();
    case SPEC_LAYER_SIGMOID: return nn_sigmoid();
    case SPEC_LAYER_TANH: return nn_tanh();
    case SPEC_LAYER_SOFTMAX: return nn_softmax(l->dim);
    case SPEC_LAYER_MAX_POOL2D: return nn_max_pool2d(l->kernel_size, l->stride, l->padding);
    case SPEC_LAYER_AVG_POOL2D: return nn_avg_pool2d(l->kernel_size, l->stride, l->padding);
    case SPEC_LAYER_FLATTEN: return nn_flatten(l->start_dim, l->end_dim);
    case SPEC_LAYER_DROPOUT: return nn_dropout(l->p);
    case SPEC_LAYER_BATCH_NORM1D:
        return nn_batch_norm1d(l->num_features, l->eps, l->momentum, l->affine,
                               l->track_running_stats);
    case SPEC_LAYER_BATCH_NORM2D:
        return nn_batch_norm2d(l->num_features, l->eps, l->momentum, l->affine,
                               l->track_running_stats);
    case SPEC_LAYER_GELU: return nn_gelu(l->gelu_tanh);
    case SPEC_LAYER_SILU: return nn_silu();
    case SPEC_LAYER_LEAKY_RELU: return nn_leaky_relu(l->negative_slope);
    case SPEC_LAYER_IDENTITY: return nn_identity();
    case SPEC_LAYER_LAYER_NORM:
        return nn_layer_norm(l->norm_ndim, l->normalized_shape, l->eps, l->elementwise_affine,
                             l->bias);
    case SPEC_LAYER_EMBEDDING: return nn_embedding(l->num_embeddings, l->embedding_dim, rng);
    case SPEC_LAYER_ADAPTIVE_AVG_POOL2D: return nn_adaptive_avg_pool2d(l->output_size);
    case SPEC_LAYER_BASIC_BLOCK: return nn_basic_block(l->inplanes, l->planes, l->stride.h, rng);
    case SPEC_LAYER_BOTTLENECK: return nn_bottleneck(l->inplanes, l->planes, l->stride.h, rng);
    }
    error_set("unknown layer type %d", (int)l->type);
    return NULL;
}

Module *job_spec_build_model(const JobSpec *spec, Rng *rng) {
    if (!spec || !rng) {
        error_set("job_spec_build_model: no spec or no Rng");
        return NULL;
    }
    if (spec->arch.kind != SPEC_ARCH_NONE) return spec_arch_build(&spec->arch, rng);
    Module **children = calloc((size_t)spec->num_layers, sizeof *children);
    if (!children) {
        error_at("model", "out of memory");
        return NULL;
    }
    for (int i = 0; i < spec->num_layers; i++) {
        children[i] = build_layer(&spec->layers[i], rng);
        if (!children[i]) {
            error_prefix("model[%d]", i);
            for (int j = 0; j < i; j++) module_free(children[j]);
            free(children);
            return NULL;
        }
    }
    Module *m = nn_sequential(spec->num_layers, children); /* owns them, also on failure */
    free(children);
    return m;
}
