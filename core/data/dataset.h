/* dataset.h - in-memory datasets and the loaders for each file format.
 *
 * A Dataset is two CPU tensors with one row per sample, as a
 * torch.utils.data.TensorDataset:
 *   inputs   uint8 [N, H, W] for images (MNIST IDX, uint8 .npy), which the
 *            ToTensor transform turns into float32 [B, 1, H, W] per batch,
 *            or uint8 [N, C, H, W] (image folders, CIFAR-10) -> [B, C, H, W];
 *            or float32 [N, F] (or [N, ...]) for tabular / numeric data;
 *   targets  int64 [N] class labels for classification losses, or float32
 *            [N, k] regression targets (k = 1 for a single target column).
 * Both are contiguous, so the DataLoader gathers a batch with one memcpy per
 * row. The whole set lives in memory: MNIST's 60000 training images are 47 MB.
 *
 * Every loader streams its file (it never holds the file's bytes or text
 * as well as the tensors), checks what a header claims against what the
 * file holds, and fails with an error naming the file and the line, column
 * or byte offset:
 *   core/data/idx.c   MNIST IDX, gzipped or raw
 *   core/data/csv.c   CSV with a header row
 *   core/data/npy.c   NumPy .npy v1/v2/v3
 *   core/data/imagefolder.c  torchvision's ImageFolder of PNG/JPEG files
 *   core/data/cifar10.c      CIFAR-10's binary batches
 */
#ifndef TRAIND_CORE_DATA_DATASET_H
#define TRAIND_CORE_DATA_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

#define DATASET_DESCRIPTION_MAX 512

typedef struct {
    Tensor *inputs;  /* uint8 [N, H, W] or float32 [N, F]; contiguous, CPU */
    Tensor *targets; /* int64 [N] labels or float32 [N, k]; contiguous, CPU */
    int64_t n;       /* samples */
    int num_classes; /* 1 + the largest label when targets are labels; 0 for regression */
    /* "idx: t10k-images-idx3-ubyte.gz + t10k-labels-idx1-ubyte.gz: 10000 samples of
     * uint8 [28, 28], 10 classes" */
    char description[DATASET_DESCRIPTION_MAX];
} Dataset;

/* Takes one reference to each tensor (on failure releases them) and checks
 * that they are CPU, contiguous, have the same first dimension and the dtypes
 * above. num_classes is computed from int64 targets (which must be >= 0).
 * For loaders and tests that build a dataset from tensors. */
Dataset *dataset_from_tensors(Tensor *inputs, Tensor *targets, const char *description);

void dataset_free(Dataset *ds); /* NULL is fine */

/* Shape of one sample: inputs->shape[1..]; returns its ndim. */
int dataset_sample_shape(const Dataset *ds, int64_t *shape);

/* ---- MNIST IDX (core/data/idx.c) ----
 * images: magic 0x00000803, dims [N, H, W]; labels: magic 0x00000801, dims [N].
 * Either file may be gzipped (detected by its magic bytes, not its name). */
Dataset *dataset_load_idx(const char *images_path, const char *labels_path);

/* ---- CSV (core/data/csv.c) ---- */
typedef struct {
    /* Target columns, in order. NULL/0: the last column of the header. */
    const char *const *label_columns;
    int num_label_columns;
    /* Input columns, in order. NULL/0: every column that is not a target. */
    const char *const *feature_columns;
    int num_feature_columns;
    /* false: one integer label column -> int64 [N] (classification losses);
     * true: float32 [N, k] targets (regression losses). */
    bool regression;
} CsvOptions;

/* Numbers only (as strtod reads them; "nan"/"inf" are refused), comma
 * separated, RFC 4180 quotes optional, CRLF tolerated, blank lines at the
 * end ignored. Inputs become float32 [N, F]. */
Dataset *dataset_load_csv(const char *path, const CsvOptions *opts);

/* ---- NumPy .npy (core/data/npy.c) ----
 * Arrays are C order with dtype '<f4', '<f8', '|u1' or '<i8'. inputs: uint8
 * stays uint8 (images), the others become float32. targets: an integer
 * array of 1 dim (uint8 or int64) -> int64 labels; a float array [N] or
 * [N, k] -> float32 [N, 1] / [N, k] regression targets. */
Dataset *dataset_load_npy(const char *inputs_path, const char *targets_path);

/* One .npy file as stored (its own dtype and shape); npy_load_as converts
 * to `dtype` while the data streams in, so a float64 file becoming float32
 * never holds both copies. */
Tensor *npy_load(const char *path);
Tensor *npy_load_as(const char *path, DType dtype);

/* ---- image folders (core/data/imagefolder.c) ----
 * torchvision's ImageFolder: root/<class>/.../<file>.png|.jpg|.jpeg (see
 * imagefolder.c for the order and the rules). Inputs uint8 [N, 3, H, W]
 * (PIL's convert("RGB")) or, grayscale, [N, 1, H, W] (convert("L")), all
 * images of one size; int64 targets, the class's index in sorted order. */
Dataset *dataset_load_imagefolder(const char *root, bool grayscale);
/* The class names of root (its sub-directories, sorted), as the targets
 * number them: *names (free with dataset_imagefolder_classes_free). */
int dataset_imagefolder_classes(const char *root, char ***names, int *n);
void dataset_imagefolder_classes_free(char **names, int n);

/* ---- CIFAR-10 binary (core/data/cifar10.c) ----
 * Records of 1 label byte + 3072 bytes (R, G, B planes of 32x32), the
 * files concatenated in order: uint8 [N, 3, 32, 32], 10 classes. */
Dataset *dataset_load_cifar10(const char *const *paths, int num_paths);

#endif
