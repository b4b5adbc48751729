/* transforms.c - ToTensor, Normalize and Flatten over whole batches; see
 * transforms.h.
 *
 * The arithmetic follows torchvision exactly so that a model fed by traind
 * sees bit-identical inputs: ToTensor divides in float32 by 255 (not a
 * multiply by 1/255, which differs in the last bit for some bytes), and
 * Normalize subtracts then divides by float32 mean and std. Outputs a
 * transform allocated itself are updated in place by the next one, so
 * ToTensor + Normalize costs one allocation per batch.
 */
#include "core/data/transforms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char *const type_names[] = {
    [TRANSFORM_TO_TENSOR] = "ToTensor",
    [TRANSFORM_NORMALIZE] = "Normalize",
    [TRANSFORM_FLATTEN] = "Flatten",
};

void transform_list_free(TransformList *tl) {
    for (int i = 0; i < tl->count; i++) {
        free(tl->items[i].mean);
        free(tl->items[i].std);
    }
    free(tl->items);
    tl->items = NULL;
    tl->count = 0;
}

static int set_values(Transform *t, const double *mean, const double *std, int n) {
    t->num_channels = n;
    t->mean = malloc((size_t)n * sizeof *t->mean);
    t->std = malloc((size_t)n * sizeof *t->std);
    if (!t->mean || !t->std) return error_set("out of memory");
    for (int c = 0; c < n; c++) {
        t->mean[c] = (float)mean[c];
        t->std[c] = (float)std[c];
    }
    return 0;
}

/* The error of transform i names it as its path: "transforms[1]". */
static int item_path(int i) {
    char p[32];
    snprintf(p, sizeof p, "transforms[%d]", i);
    return error_set_path(p);
}

int transform_list_init(TransformList *tl, const TransformConfig *configs, int count) {
    return transform_list_init_at(tl, configs, count, 0);
}

int transform_list_init_at(TransformList *tl, const TransformConfig *configs, int count,
                           int first) {
    tl->count = 0;
    tl->items = NULL;
    tl->first = first;
    if (count <= 0) return 0;
    tl->items = calloc((size_t)count, sizeof *tl->items);
    if (!tl->items) return error_set("transforms: out of memory");
    for (int i = 0; i < count; i++) {
        const TransformConfig *c = &configs[i];
        Transform *t = &tl->items[i];
        tl->count = i + 1; /* so free() sees what was allocated */
        int type = -1;
        for (int k = 0; c->type && k < (int)(sizeof type_names / sizeof *type_names); k++)
            if (strcmp(c->type, type_names[k]) == 0) type = k;
        if (type < 0) {
            error_set("transforms[%d]: unknown transform '%s' (expected ToTensor, Normalize or "
                      "Flatten)", first + i, c->type ? c->type : "(none)");
            goto fail;
        }
        t->type = (TransformType)type;
        if (t->type != TRANSFORM_NORMALIZE) {
            if (c->mean || c->std || c->num_mean || c->num_std) {
                error_set("transforms[%d] %s: takes no mean or std", first + i, type_names[type]);
                goto fail;
            }
            continue;
        }
        if (!c->mean || !c->std || c->num_mean < 1 || c->num_std < 1) {
            error_set("transforms[%d] Normalize: mean and std are required (lists of one value "
                      "per channel)", first + i);
            goto fail;
        }
        if (c->num_mean != c->num_std) {
            error_set("transforms[%d] Normalize: mean has %d values but std has %d", first + i,
                      c->num_mean, c->num_std);
            goto fail;
        }
        if (set_values(t, c->mean, c->std, c->num_mean) != 0) {
            error_prefix("transforms[%d] Normalize", first + i);
            goto fail;
        }
        for (int k = 0; k < t->num_channels; k++)
            if (t->std[k] == 0.0f || t->std[k] != t->std[k]) {
                /* torchvision: "std evaluated to zero after conversion to float32" */
                error_set("transforms[%d] Normalize: std[%d] is %g (zero as float32 makes a "
                          "division by zero)", first + i, k, c->std[k]);
                goto fail;
            }
    }
    return 0;
fail:
    item_path(first + tl->count - 1);
    transform_list_free(tl);
    return -1;
}

int transform_list_copy(TransformList *dst, const TransformList *src) {
    dst->count = 0;
    dst->items = NULL;
    dst->first = src->first;
    if (src->count == 0) return 0;
    dst->items = calloc((size_t)src->count, sizeof *dst->items);
    if (!dst->items) return error_set("transforms: out of memory");
    for (int i = 0; i < src->count; i++) {
        const Transform *s = &src->items[i];
        dst->count = i + 1;
        dst->items[i].type = s->type;
        if (s->type != TRANSFORM_NORMALIZE) continue;
        Transform *t = &dst->items[i];
        t->num_channels = s->num_channels;
        t->mean = malloc((size_t)s->num_channels * sizeof *t->mean);
        t->std = malloc((size_t)s->num_channels * sizeof *t->std);
        if (!t->mean || !t->std) {
            transform_list_free(dst);
            return error_set("transforms: out of memory");
        }
        memcpy(t->mean, s->mean, (size_t)s->num_channels * sizeof *t->mean);
        memcpy(t->std, s->std, (size_t)s->num_channels * sizeof *t->std);
    }
    return 0;
}

/* Checks that transform i can take a batch of dtype/shape and writes what it
 * gives (oshape must not alias shape); the one place the rules live, for
 * both output() and apply(). */
static int step_output(const Transform *t, int i, DType dtype, int ndim, const int64_t *shape,
                       DType *odtype, int *ondim, int64_t *oshape) {
    char s[160];
    const char *name = type_names[t->type];
    switch (t->type) {
    case TRANSFORM_TO_TENSOR:
        if (dtype != DTYPE_UINT8 || (ndim != 3 && ndim != 4))
            return error_set("transforms[%d] ToTensor: expects a batch of uint8 images [B, H, W] "
                             "or [B, C, H, W], got %s %s", i, dtype_name(dtype),
                             shape_str(ndim, shape, s, sizeof s));
        /* [B, H, W] (MNIST) gains its one channel; [B, C, H, W] (image
         * folders, CIFAR-10: already CHW) keeps its shape */
        *odtype = DTYPE_FLOAT32;
        *ondim = 4;
        oshape[0] = shape[0];
        oshape[1] = ndim == 4 ? shape[1] : 1;
        oshape[2] = shape[ndim - 2];
        oshape[3] = shape[ndim - 1];
        return 0;
    case TRANSFORM_NORMALIZE:
        if (dtype != DTYPE_FLOAT32 || ndim < 2)
            return error_set("transforms[%d] Normalize: expects float32 [B, C, ...] (use "
                             "ToTensor first for images), got %s %s", i, dtype_name(dtype),
                             shape_str(ndim, shape, s, sizeof s));
        if (t->num_channels != 1 && t->num_channels != shape[1])
            return error_set("transforms[%d] Normalize: %d mean/std values but the batch %s has "
                             "%lld channels", i, t->num_channels,
                             shape_str(ndim, shape, s, sizeof s), (long long)shape[1]);
        break;
    case TRANSFORM_FLATTEN:
        if (ndim < 1)
            return error_set("transforms[%d] %s: needs a batch dimension", i, name);
        *odtype = dtype;
        *ondim = 2;
        oshape[0] = shape[0];
        oshape[1] = 1;
        for (int d = 1; d < ndim; d++) oshape[1] *= shape[d];
        return 0;
    }
    *odtype = dtype;
    *ondim = ndim;
    memcpy(oshape, shape, (size_t)ndim * sizeof *shape);
    return 0;
}

int transform_list_output(const TransformList *tl, DType dtype, int ndim, const int64_t *shape,
                          DType *out_dtype, int *out_ndim, int64_t *out_shape) {
    int64_t cur[TENSOR_MAX_DIMS], next[TENSOR_MAX_DIMS];
    memcpy(cur, shape, (size_t)ndim * sizeof *shape);
    for (int i = 0; i < tl->count; i++) {
        int at = tl->first + i;
        if (step_output(&tl->items[i], at, dtype, ndim, cur, &dtype, &ndim, next) != 0)
            return item_path(at);
        memcpy(cur, next, (size_t)ndim * sizeof *next);
    }
    *out_dtype = dtype;
    *out_ndim = ndim;
    memcpy(out_shape, cur, (size_t)ndim * sizeof *cur);
    return 0;
}

static Tensor *to_tensor(Tensor *in, int ndim, const int64_t *shape) {
    Tensor *src = tensor_contiguous(in);
    Tensor *out = src ? tensor_empty(ndim, shape, DTYPE_FLOAT32, in->device) : NULL;
    if (out) {
        const uint8_t *x = tensor_data(src);
        float *y = tensor_data(out);
        int64_t n = tensor_numel(out);
        for (int64_t i = 0; i < n; i++) y[i] = (float)x[i] / 255.0f;
    }
    tensor_release(src);
    return out;
}

/* In place on `x` (contiguous float32 owned by the caller). */
static void normalize_(const Transform *t, Tensor *x) {
    float *p = tensor_data(x);
    int64_t batch = x->shape[0], channels = x->shape[1];
    if (batch == 0 || channels == 0) return;
    int64_t inner = tensor_numel(x) / (batch * channels);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t c = 0; c < channels; c++) {
            int k = t->num_channels == 1 ? 0 : (int)c;
            const float m = t->mean[k], s = t->std[k];
            float *row = p + (b * channels + c) * inner;
            for (int64_t i = 0; i < inner; i++) row[i] = (row[i] - m) / s;
        }
}

Tensor *transform_list_apply(const TransformList *tl, Tensor *batch) {
    if (!batch) return NULL;
    if (batch->device.type != DEVICE_CPU)
        return error_set("transforms: batches are transformed on the CPU"), NULL;
    Tensor *cur = tensor_retain(batch);
    bool owned = false; /* cur was made here, so it may be changed in place */
    for (int i = 0; i < tl->count; i++) {
        const Transform *t = &tl->items[i];
        DType odtype;
        int ondim;
        int64_t oshape[TENSOR_MAX_DIMS];
        if (step_output(t, tl->first + i, cur->dtype, cur->ndim, cur->shape, &odtype, &ondim,
                        oshape) != 0) {
            tensor_release(cur);
            return NULL;
        }
        Tensor *next = NULL;
        switch (t->type) {
        case TRANSFORM_TO_TENSOR:
            next = to_tensor(cur, ondim, oshape);
            owned = true;
            break;
        case TRANSFORM_NORMALIZE:
            if (owned && tensor_is_contiguous(cur)) {
                next = tensor_retain(cur);
            } else {
                next = tensor_clone(cur);
                owned = true;
            }
            if (next) normalize_(t, next);
            break;
        case TRANSFORM_FLATTEN:
            next = tensor_reshape(cur, ondim, oshape); /* a view when it can be */
            break;
        }
        tensor_release(cur);
        if (!next) return NULL;
        cur = next;
    }
    return cur;
}
