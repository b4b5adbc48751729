/* spec_shapes.c - what a job spec's model does to a batch, worked out from
 * the layer list alone: each layer's output shape (core/nn's shape rules,
 * the ones the built layers check at forward time), the loss against the
 * targets, and the model's size: parameters, activations and the bytes
 * training them takes. No weight is allocated, so a model of 10^12
 * parameters is measured (and refused) in microseconds, on any thread.
 */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "core/spec_json.h"

void spec_data_shape_of(const Dataset *ds, SpecDataShape *out) {
    memset(out, 0, sizeof *out);
    out->input_dtype = ds->input.dtype;
    out->input_ndim = dataset_sample_shape(ds, out->input_shape);
    out->target_dtype = ds->target.dtype;
    out->target_ndim = ds->target.ndim;
    memcpy(out->target_shape, ds->target.shape, sizeof out->target_shape);
    out->num_classes = ds->num_classes;
}

/* Output [N, ...] of the model against the loss and the targets. */
static int check_loss(const JobSpec *spec, const SpecDataShape *d, int nd, const int64_t *out) {
    const char *loss = spec_loss_name(spec->loss);
    char s1[128], s2[128];
    if (job_spec_uses_labels(spec)) {
        /* a label per sample and [N, C] scores, or a label per token of a
         * sequence [T] and [N, T, C] scores (flattened, as nanoGPT's loss) */
        bool seq = d->target_ndim == 1;
        if (d->target_dtype != DTYPE_INT64 || d->target_ndim > 1)
            return error_at("loss",
                            "%s needs integer class labels (one per sample, or one per token "
                            "of a sequence), but the targets are %s %s per sample (use MSELoss "
                            "or L1Loss for regression)",
                            loss, dtype_name(d->target_dtype),
                            shape_str(d->target_ndim, d->target_shape, s1, sizeof s1));
        if (nd != (seq ? 3 : 2))
            return error_at("loss", "%s needs the model's output to be %s, got %s", loss,
                            seq ? "[N, T, C] (class scores at each position) for targets [T]"
                                : "[N, C] (class scores)",
                            shape_str(nd, out, s1, sizeof s1));
        if (seq && out[1] != d->target_shape[0])
            return error_at("loss",
                            "%s: the model's output %s has %lld positions, but the targets "
                            "have %lld per sample",
                            loss, shape_str(nd, out, s1, sizeof s1), (long long)out[1],
                            (long long)d->target_shape[0]);
        /* labels up to ignore_index, the highest, may need fewer classes:
         * which the loss checks per batch (the data says its highest only) */
        bool top_ignored = d->num_classes - 1 == spec->class_loss.ignore_index;
        if (d->num_classes > out[nd - 1] && !top_ignored)
            return error_at("loss",
                            "%s: the model's output %s has %lld classes, but the "
                            "labels go up to %d",
                            loss, shape_str(nd, out, s1, sizeof s1), (long long)out[nd - 1],
                            d->num_classes - 1);
        return 0;
    }
    if (!dtype_is_float(d->target_dtype))
        return error_at("loss",
                        "%s needs float targets, but the data has %s class labels (use "
                        "CrossEntropyLoss for classification)",
                        loss, dtype_name(d->target_dtype));
    int64_t want[TENSOR_MAX_DIMS];
    int wn = d->target_ndim + 1;
    if (wn > TENSOR_MAX_DIMS) return error_at("loss", "targets have too many dimensions");
    want[0] = out[0];
    for (int i = 0; i < d->target_ndim; i++) want[i + 1] = d->target_shape[i];
    bool same = wn == nd;
    for (int i = 0; same && i < nd; i++) same = want[i] == out[i];
    if (!same)
        return error_at("loss", "%s: the model's output %s does not match the targets %s", loss,
                        shape_str(nd, out, s1, sizeof s1), shape_str(wn, want, s2, sizeof s2));
    return 0;
}

/* ---- sizes, saturating at INT64_MAX: a spec may describe any size ---- */

static int64_t numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n = spec_sat_mul(n, shape[i]);
    return n;
}

/* Trainable elements and buffer elements of one layer, as torch counts
 * model.parameters() and model.buffers() (num_batches_tracked included). */
static void layer_counts(const SpecLayer *l, int64_t *params, int64_t *buffers) {
    *params = *buffers = 0;
    switch (l->type) {
    case SPEC_LAYER_LINEAR:
        *params = spec_sat_add(spec_sat_mul(l->in_features, l->out_features),
                               l->bias ? l->out_features : 0);
        break;
    case SPEC_LAYER_CONV2D:
        *params = spec_sat_add(spec_sat_mul(spec_sat_mul(l->out_channels,
                                                         l->in_channels / l->groups),
                                            (int64_t)l->kernel_size.h * l->kernel_size.w),
                               l->bias ? l->out_channels : 0);
        break;
    case SPEC_LAYER_BATCH_NORM1D:
    case SPEC_LAYER_BATCH_NORM2D:
        *params = l->affine ? spec_sat_mul(2, l->num_features) : 0;
        *buffers = l->track_running_stats ? spec_sat_add(spec_sat_mul(2, l->num_features), 1) : 0;
        break;
    case SPEC_LAYER_EMBEDDING: *params = spec_sat_mul(l->num_embeddings, l->embedding_dim); break;
    case SPEC_LAYER_LAYER_NORM:
        if (l->elementwise_affine)
            *params = spec_sat_mul(l->bias ? 2 : 1, numel(l->norm_ndim, l->normalized_shape));
        break;
    default: break;
    }
}

/* A BatchNorm training on this batch: more than one value per channel
 * (its variance), or PyTorch's "Expected more than 1 value per channel
 * when training" at the step. */
static int batch_norm_values(int n, const int64_t *x) {
    char s[128];
    if (x[1] == 0 || numel(n, x) / x[1] > 1) return 0;
    return error_set("its input %s holds 1 value per channel, but training a BatchNorm needs "
                     "more than 1 (a batch of one sample of a single position)",
                     shape_str(n, x, s, sizeof s));
}

/* One layer's output shape for its input (x, n). -1 with a bare error. */
static int layer_shape(const SpecLayer *l, int n, const int64_t *x, int *on, int64_t *out) {
    Size2d stride = l->stride;
    switch (l->type) {
    case SPEC_LAYER_LINEAR: return nn_linear_shape(l->in_features, l->out_features, n, x, on, out);
    case SPEC_LAYER_CONV2D:
        return nn_conv2d_shape_dilated(l->in_channels, l->out_channels, l->kernel_size,
                                       l->stride, l->padding, l->dilation, n, x, on, out);
    case SPEC_LAYER_MAX_POOL2D:
    case SPEC_LAYER_AVG_POOL2D:
        if (stride.h == 0 && stride.w == 0) stride = l->kernel_size; /* torch's None */
        return nn_window2d_shape(l->kernel_size, stride, l->padding, n, x, on, out);
    case SPEC_LAYER_SOFTMAX: return nn_softmax_shape(l->dim, n, x, on, out);
    case SPEC_LAYER_FLATTEN: return nn_flatten_shape(l->start_dim, l->end_dim, n, x, on, out);
    case SPEC_LAYER_BATCH_NORM1D:
    case SPEC_LAYER_BATCH_NORM2D:
        if (nn_batch_norm_shape(l->num_features, l->type == SPEC_LAYER_BATCH_NORM2D, n, x, on,
                                out) != 0)
            return -1;
        return batch_norm_values(n, x);
    case SPEC_LAYER_LAYER_NORM:
        return nn_layer_norm_shape(l->norm_ndim, l->normalized_shape, n, x, on, out);
    case SPEC_LAYER_EMBEDDING: return nn_embedding_shape(l->embedding_dim, n, x, on, out);
    case SPEC_LAYER_ADAPTIVE_AVG_POOL2D:
        return nn_adaptive_avg_pool2d_shape(l->output_size, n, x, on, out);
    case SPEC_LAYER_BASIC_BLOCK:
    case SPEC_LAYER_BOTTLENECK: break; /* layer_size: spec_resnet_block_size */
    case SPEC_LAYER_RELU:
    case SPEC_LAYER_SIGMOID:
    case SPEC_LAYER_TANH:
    case SPEC_LAYER_DROPOUT:
    case SPEC_LAYER_GELU:
    case SPEC_LAYER_SILU:
    case SPEC_LAYER_LEAKY_RELU:
    case SPEC_LAYER_IDENTITY:
        *on = n;
        memcpy(out, x, (size_t)n * sizeof *x);
        return 0;
    }
    return error_set("unknown layer type %d", (int)l->type);
}

/* One layer over the batch shape (*n, cur), replaced by its output's;
 * its counts added to *size. -1 with a bare error. */
static int layer_size(const SpecLayer *l, int *n, int64_t *cur, SpecModelSize *size) {
    if (l->type == SPEC_LAYER_BASIC_BLOCK || l->type == SPEC_LAYER_BOTTLENECK)
        return spec_resnet_block_size(l, n, cur, size);
    int64_t next[TENSOR_MAX_DIMS], params, buffers;
    if (layer_shape(l, *n, cur, n, next) != 0) return -1;
    memcpy(cur, next, (size_t)*n * sizeof *next);
    layer_counts(l, &params, &buffers);
    size->parameters = spec_sat_add(size->parameters, params);
    size->buffers = spec_sat_add(size->buffers, buffers);
    size->activations = spec_sat_add(size->activations, numel(*n, cur));
    return 0;
}

int spec_layers_size(const SpecLayer *layers, int n_layers, int *ndim, int64_t *shape,
                     SpecModelSize *size, int *failed) {
    for (int i = 0; i < n_layers; i++) {
        if (layer_size(&layers[i], ndim, shape, size) != 0) {
            *failed = i;
            return -1;
        }
    }
    return 0;
}

/* An Embedding takes int64 indices: it must be the first layer (the
 * layers before it would give floats) and the data must hold indices. The
 * other layers' float input is checked in job_spec_check_shapes. */
static int layer_dtype(const SpecLayer *l, int i, DType dtype) {
    if (l->type == SPEC_LAYER_EMBEDDING && dtype != DTYPE_INT64)
        return error_set("takes int64 indices, but its input is %s%s", dtype_name(dtype),
                         i ? " (an Embedding can only be the first layer)" : "");
    return 0;
}

/* The model's layers over one batch of dtype and shape (x, n): the output
 * shape and the counts in *size. Errors name the layer: "model[4] Linear:
 * ...". */
static int run_layers(const JobSpec *spec, DType dtype, int n, const int64_t *x,
                      SpecModelSize *size) {
    int64_t cur[TENSOR_MAX_DIMS];
    memcpy(cur, x, (size_t)n * sizeof *x);
    for (int i = 0; i < spec->num_layers; i++) {
        const SpecLayer *l = &spec->layers[i];
        if (layer_dtype(l, i, i ? DTYPE_FLOAT32 : dtype) != 0 ||
            layer_size(l, &n, cur, size) != 0) {
            char path[32];
            snprintf(path, sizeof path, "model[%d]", i);
            error_prefix("%s %s", path, spec_layer_type_name(l->type));
            return error_set_path(path);
        }
    }
    size->out_ndim = n;
    memcpy(size->out_shape, cur, (size_t)n * sizeof *cur);
    return 0;
}

/* Copies of the parameters an optimizer keeps: SGD's momentum buffer,
 * Adam's two moments (three with amsgrad). */
static int optimizer_copies(const JobSpec *spec) {
    if (spec->optimizer == SPEC_OPTIM_SGD) return spec->sgd.momentum != 0;
    return spec->adam.amsgrad ? 3 : 2;
}

/* Float32 throughout: weights, their gradients and the optimizer's state;
 * the buffers; the batch and every layer's output, kept for the backward
 * pass, and as many gradients of them. An estimate from below: kernels'
 * workspaces and the allocator's rounding come on top. */
static int64_t train_bytes(const JobSpec *spec, const SpecModelSize *z, int64_t input) {
    int64_t per_param = spec_sat_mul(2 + optimizer_copies(spec), z->parameters);
    int64_t elems =
        spec_sat_add(spec_sat_add(per_param, z->buffers),
                     spec_sat_mul(2, spec_sat_add(input, z->activations)));
    return spec_sat_mul(elems, 4);
}

/* job_spec_check_shapes for a batch of `batch` samples. */
static int check_batch(const JobSpec *spec, const SpecDataShape *d, int64_t batch,
                       SpecModelSize *out) {
    if (d->input_ndim + 1 > TENSOR_MAX_DIMS)
        return error_at("data", "samples have %d dimensions (at most %d)", d->input_ndim,
                        TENSOR_MAX_DIMS - 1);
    /* one batch, as the DataLoader hands it to the model: each sample
     * through the image transforms, then the batch through the others */
    int64_t in[TENSOR_MAX_DIMS], x[TENSOR_MAX_DIMS];
    in[0] = batch;
    if (spec->augment.count > 0 && d->input_dtype != DTYPE_UINT8 &&
        d->input_dtype != DTYPE_FLOAT32)
        return error_at("data.transforms[0]",
                        "%s takes uint8 or float32 images, but the data are %s",
                        augment_type_name(spec->augment.items[0].type),
                        dtype_name(d->input_dtype));
    if (augment_list_output(&spec->augment, 0, d->input_ndim, d->input_shape, in + 1))
        return error_nest("data");
    DType xt;
    int xn;
    if (transform_list_output(&spec->transforms, d->input_dtype, d->input_ndim + 1, in, &xt, &xn,
                              x))
        return error_nest("data");
    char s[128];
    bool indices = spec->num_layers > 0 && spec->layers[0].type == SPEC_LAYER_EMBEDDING;
    if (spec->arch.kind == SPEC_ARCH_NONE && xt == DTYPE_INT64 && !indices)
        return error_at("model",
                        "the data are token ids, int64 %s; a list of layers takes float32 "
                        "input unless it starts with an Embedding (or use a model that embeds "
                        "tokens, such as {\"arch\": \"gpt\", ...})",
                        shape_str(xn, x, s, sizeof s));
    if (spec->arch.kind == SPEC_ARCH_NONE && !dtype_is_float(xt) && !indices)
        return error_at("data.transforms",
                        "the model's input would be %s %s; images need "
                        "{\"type\": \"ToTensor\"} to become float32",
                        dtype_name(xt), shape_str(xn, x, s, sizeof s));
    SpecModelSize size = {0};
    if (spec->arch.kind != SPEC_ARCH_NONE ? spec_arch_size(&spec->arch, xt, xn, x, &size)
                                          : run_layers(spec, xt, xn, x, &size))
        return -1;
    if (check_loss(spec, d, size.out_ndim, size.out_shape)) return -1;
    size.train_bytes = train_bytes(spec, &size, numel(xn, x));
    if (out) *out = size;
    return 0;
}

int job_spec_check_shapes(const JobSpec *spec, const SpecDataShape *d, SpecModelSize *out) {
    if (!spec || !d) return error_set("job_spec_check_shapes: no spec or no data shape");
    return check_batch(spec, d, spec->batch_size, out);
}

int job_spec_check_last_batch(const JobSpec *spec, const SpecDataShape *d, int64_t samples) {
    int64_t last = samples % spec->batch_size;
    if (spec->drop_last || last == 0 || check_batch(spec, d, last, NULL) == 0) return 0;
    return error_prefix("the last batch of data.train holds %lld of its %lld samples (batches "
                        "of %lld; \"drop_last\": true leaves it out)", (long long)last,
                        (long long)samples, (long long)spec->batch_size);
}

int job_spec_check_data(const JobSpec *spec, const Dataset *ds, SpecModelSize *out) {
    if (!ds) return error_set("job_spec_check_data: no dataset");
    SpecDataShape d;
    spec_data_shape_of(ds, &d);
    return job_spec_check_shapes(spec, &d, out);
}
