/* augment.h - torchvision's per-image transforms, applied to each sample as
 * the DataLoader gathers it: RandomCrop, RandomHorizontalFlip, Resize,
 * CenterCrop.
 *
 * A job's "transforms" list starts with these and goes on with the batch
 * transforms (transforms.h: ToTensor, Normalize, Flatten), as a torchvision
 * pipeline puts them before ToTensor. A sample is [..., H, W] (uint8 or
 * float32; the leading dims are channels); the output may have another H
 * and W, the same for every sample.
 *
 *   RandomCrop(size, padding=0)  pad with zeros (padding: one value, [lr, tb]
 *        or [l, t, r, b]), then crop size at a random place: i in
 *        [0, H - h], j in [0, W - w], as transforms.RandomCrop.get_params
 *   RandomHorizontalFlip(p=0.5)  mirror W with probability p
 *   Resize(size)  an integer: the shorter side becomes size, the aspect ratio
 *        kept (the longer side truncated as torchvision computes it);
 *        [h, w]: exactly. Bilinear with PIL's antialiasing (the filter
 *        widens by the downscale factor), in two passes, horizontal first,
 *        each rounded to uint8 as PIL's 8-bit resampling does
 *   CenterCrop(size)  the centre, at torchvision's rounding
 *
 * Random draws come from the stream of (seed, epoch) at the sample's index,
 * a fixed count per sample: whatever thread augments a sample and in
 * whatever batch it falls, it gets the same crop and flip, so a run
 * repeats exactly and a resumed one continues as it would have. Evaluation
 * (the validation loader) is deterministic: a RandomCrop takes the centre
 * of the padded image and a flip is skipped, so shapes match training's.
 */
#ifndef TRAIND_CORE_DATA_AUGMENT_H
#define TRAIND_CORE_DATA_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

typedef enum {
    AUGMENT_RANDOM_CROP,
    AUGMENT_RANDOM_HORIZONTAL_FLIP,
    AUGMENT_RESIZE,
    AUGMENT_CENTER_CROP,
} AugmentType;

typedef struct {
    AugmentType type;
    int64_t size_h, size_w;   /* crops, Resize; Resize with an int: size_w = 0 */
    int64_t pad[4];           /* RandomCrop: left, top, right, bottom */
    double p;                 /* RandomHorizontalFlip */
} Augment;

#define AUGMENT_MAX 16

typedef struct {
    int count;
    Augment items[AUGMENT_MAX];
} AugmentList;

/* Whether `type` ("RandomCrop", ...) names a per-sample transform. */
bool augment_is_type(const char *type);
/* "RandomCrop" ... for a type. */
const char *augment_type_name(AugmentType type);

/* The sample shape after the list, for a sample of (ndim, shape); -1 with
 * an error naming the entry ("RandomCrop: size (40, 40) is larger than the
 * padded image (36, 36)") otherwise. Entry i is reported as
 * "transforms[first + i]". */
int augment_list_output(const AugmentList *al, int first, int ndim, const int64_t *shape,
                        int64_t *out_shape);

/* Augments one contiguous sample `in` (dtype, ndim, in_shape) into `out`
 * (its output shape, from augment_list_output). `index` is the sample's
 * index in the dataset; `train` false gives the evaluation behaviour.
 * Uses scratch memory of its own; 0, or -1 with an error (out of memory). */
int augment_sample(const AugmentList *al, uint64_t seed, int epoch, int64_t index, bool train,
                   DType dtype, int ndim, const int64_t *in_shape, const void *in, void *out);

#endif
