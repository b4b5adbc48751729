/* transforms.h - torchvision-style transforms, applied to a whole batch.
 *
 * torchvision applies transforms per sample in the Dataset's __getitem__;
 * here the DataLoader applies them once to each gathered batch, which is the
 * same arithmetic element for element (each transform is elementwise or a
 * reshape) at a fraction of the per-call overhead:
 *   ToTensor    uint8 [B, H, W] -> float32 [B, 1, H, W], or uint8 [B, C, H, W] ->
 *               float32 [B, C, H, W]; x / 255 in float32
 *               (torchvision: img.to(torch.float32).div(255))
 *   Normalize   float [B, C, ...]: (x - mean[c]) / std[c] in float32, with
 *               mean/std of length C or 1 (torchvision's F.normalize:
 *               tensor.sub_(mean).div_(std) with float32 mean and std).
 *               Unlike torchvision it also accepts [B, F] (per feature).
 *   Flatten     [B, ...] -> [B, prod(...)], as nn.Flatten().
 * Transforms never record autograd: they make the model's input, not part
 * of it. A TransformList is immutable after init, so the DataLoader's
 * prefetch thread can apply it while the trainer thread reads it.
 */
#ifndef TRAIND_CORE_DATA_TRANSFORMS_H
#define TRAIND_CORE_DATA_TRANSFORMS_H

#include "core/tensor.h"

typedef enum { TRANSFORM_TO_TENSOR, TRANSFORM_NORMALIZE, TRANSFORM_FLATTEN } TransformType;

/* One entry of the job spec's "transforms" list, e.g.
 * {"type": "Normalize", "mean": [0.1307], "std": [0.3081]}. Borrowed. */
typedef struct {
    const char *type;         /* "ToTensor", "Normalize", "Flatten" */
    const double *mean, *std; /* Normalize only */
    int num_mean, num_std;    /* their lengths: equal, >= 1 */
} TransformConfig;

typedef struct {
    TransformType type;
    int num_channels; /* Normalize: length of mean/std */
    float *mean, *std;
} Transform;

typedef struct {
    int count;
    Transform *items;
    int first; /* items[0]'s index in the job's "transforms" (after its image transforms) */
} TransformList;

/* Builds the list from configs (count may be 0: the identity). Errors name
 * the entry: "transforms[1] Normalize: std[0] is 0". On failure `tl` is left
 * empty (safe to free). */
int transform_list_init(TransformList *tl, const TransformConfig *configs, int count);
/* The same for a list whose entries start at index `first` of the job's
 * "transforms" (after its per-sample image transforms, augment.h): errors
 * name "transforms[first + i]". */
int transform_list_init_at(TransformList *tl, const TransformConfig *configs, int count,
                           int first);
void transform_list_free(TransformList *tl); /* tl reusable after init */
/* A deep copy (the DataLoader keeps its own). */
int transform_list_copy(TransformList *dst, const TransformList *src);

/* The dtype and shape a batch of `dtype`/`shape` (batch dimension first)
 * has after the list, checking every step as apply would; for validating a
 * job spec before training. Errors name the entry and the shape. */
int transform_list_output(const TransformList *tl, DType dtype, int ndim, const int64_t *shape,
                          DType *out_dtype, int *out_ndim, int64_t *out_shape);

/* Applies the list to a batch. Returns a new reference (to `batch` itself,
 * retained, when the list is empty); `batch` is not modified. */
Tensor *transform_list_apply(const TransformList *tl, Tensor *batch);

#endif
