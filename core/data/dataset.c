/* dataset.c - the Dataset container: building one from two tensors or from
 * a producer of samples (lazy), and freeing it. The file formats live
 * beside it (idx.c, csv.c, npy.c, tokens.c); the dense ones end in
 * dataset_from_tensors, so the invariants the DataLoader relies on (CPU,
 * contiguous, same N, known dtypes) are checked in one place. */
#include "core/data/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int check_tensors(const Tensor *inputs, const Tensor *targets) {
    char s1[128], s2[128];
    if (!inputs || !targets) return -1; /* the loader's error is kept */
    if (inputs->device.type != DEVICE_CPU || targets->device.type != DEVICE_CPU)
        return error_set("dataset: tensors must be on the CPU");
    if (!tensor_is_contiguous(inputs) || !tensor_is_contiguous(targets))
        return error_set("dataset: tensors must be contiguous");
    if (inputs->ndim < 1 || targets->ndim < 1)
        return error_set("dataset: inputs %s and targets %s need a sample dimension",
                         tensor_shape_str(inputs, s1, sizeof s1),
                         tensor_shape_str(targets, s2, sizeof s2));
    if (inputs->shape[0] != targets->shape[0])
        return error_set("dataset: %lld inputs but %lld targets", (long long)inputs->shape[0],
                         (long long)targets->shape[0]);
    if (inputs->dtype != DTYPE_UINT8 && inputs->dtype != DTYPE_FLOAT32)
        return error_set("dataset: inputs must be uint8 or float32, not %s",
                         dtype_name(inputs->dtype));
    if (targets->dtype == DTYPE_INT64) {
        if (targets->ndim != 1)
            return error_set("dataset: int64 labels must be 1-d [N], not %s",
                             tensor_shape_str(targets, s1, sizeof s1));
    } else if (targets->dtype == DTYPE_FLOAT32) {
        if (targets->ndim != 2)
            return error_set("dataset: float32 targets must be 2-d [N, k], not %s",
                             tensor_shape_str(targets, s1, sizeof s1));
    } else {
        return error_set("dataset: targets must be int64 labels or float32 values, not %s",
                         dtype_name(targets->dtype));
    }
    return 0;
}

/* A dense tensor's sample: its dtype and shape[1..]. */
static void field_of(const Tensor *t, DatasetField *f) {
    f->dtype = t->dtype;
    f->ndim = t->ndim - 1;
    for (int i = 1; i < t->ndim; i++) f->shape[i - 1] = t->shape[i];
}

Dataset *dataset_from_tensors(Tensor *inputs, Tensor *targets, const char *description) {
    Dataset *ds = NULL;
    if (check_tensors(inputs, targets) != 0) goto fail;
    int64_t n = inputs->shape[0], max_label = -1;
    if (targets->dtype == DTYPE_INT64) {
        const int64_t *labels = tensor_data(targets);
        for (int64_t i = 0; i < n; i++) {
            if (labels[i] < 0) {
                error_set("dataset: label of sample %lld is %lld (class labels must be >= 0)",
                          (long long)i, (long long)labels[i]);
                goto fail;
            }
            if (labels[i] > max_label) max_label = labels[i];
        }
        if (max_label >= 1 << 24) { /* a float column passed as labels, most likely */
            error_set("dataset: label %lld is too large for a class index",
                      (long long)max_label);
            goto fail;
        }
    }
    ds = calloc(1, sizeof *ds);
    if (!ds) {
        error_set("dataset: out of memory");
        goto fail;
    }
    ds->inputs = inputs;
    ds->targets = targets;
    field_of(inputs, &ds->input);
    field_of(targets, &ds->target);
    ds->n = n;
    ds->num_classes = (int)(max_label + 1);
    snprintf(ds->description, sizeof ds->description, "%s", description ? description : "");
    return ds;
fail:
    tensor_release(inputs);
    tensor_release(targets);
    return NULL;
}

DatasetProducer *dataset_producer_retain(DatasetProducer *p) {
    if (p) atomic_fetch_add(&p->refs, 1);
    return p;
}

void dataset_producer_release(DatasetProducer *p) {
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) p->ops->destroy(p);
}

Dataset *dataset_lazy(DatasetProducer *p, int64_t n, const DatasetField *input,
                      const DatasetField *target, int num_classes, const char *description) {
    Dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        dataset_producer_release(p);
        return error_set("dataset: out of memory"), NULL;
    }
    ds->producer = p;
    ds->input = *input;
    ds->target = *target;
    ds->n = n;
    ds->num_classes = num_classes;
    snprintf(ds->description, sizeof ds->description, "%s", description ? description : "");
    return ds;
}

void dataset_free(Dataset *ds) {
    if (!ds) return;
    tensor_release(ds->inputs);
    tensor_release(ds->targets);
    dataset_producer_release(ds->producer);
    free(ds->vocab);
    free(ds);
}

static uint64_t memory_limit;

void dataset_set_memory_limit(uint64_t bytes) { memory_limit = bytes; }

uint64_t dataset_memory_limit(void) { return memory_limit; }

int dataset_memory_check(const char *what, uint64_t bytes) {
    if (!memory_limit || bytes <= memory_limit) return 0;
    return error_set("%s: would take %llu bytes of memory, over the %llu bytes one dataset may "
                     "take on this server", what, (unsigned long long)bytes,
                     (unsigned long long)memory_limit);
}

int dataset_sample_shape(const Dataset *ds, int64_t *shape) {
    for (int i = 0; i < ds->input.ndim; i++) shape[i] = ds->input.shape[i];
    return ds->input.ndim;
}
