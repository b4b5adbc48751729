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
 * A lazy Dataset instead makes its samples on demand: it has no tensors
 * but a DatasetProducer whose gather() fills a batch's rows for a list of
 * sample indices (token windows cut from a mapped file; decoded images
 * later), so a corpus never becomes a dense [N, T] table. The DataLoader's
 * prefetch thread calls it, off the training thread. Both kinds describe
 * one sample in `input` and `target` (dtype and shape), which is all that
 * shape checks and the daemon's records read.
 *
 * Every loader streams its file (it never holds the file's bytes or text
 * as well as the tensors), checks what a header claims against what the
 * file holds, and fails with an error naming the file and the line, column
 * or byte offset:
 *   core/data/idx.c          MNIST IDX, gzipped or raw
 *   core/data/csv.c          CSV with a header row
 *   core/data/npy.c          NumPy .npy v1/v2/v3
 *   core/data/tokens.c       uint16 token .bin files and UTF-8 text (lazy)
 *   core/data/imagefolder.c  torchvision's ImageFolder of PNG/JPEG files
 *   core/data/cifar10.c      CIFAR-10's binary batches
 */
#ifndef TRAIND_CORE_DATA_DATASET_H
#define TRAIND_CORE_DATA_DATASET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"

#define DATASET_DESCRIPTION_MAX 512

/* One sample's input or target: its dtype and shape (no sample dimension). */
typedef struct {
    DType dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
} DatasetField;

/* What makes a lazy dataset's samples. Reference counted: the Dataset and
 * each DataLoader made from it hold one, so neither outlives the other. */
typedef struct DatasetProducer DatasetProducer;
typedef struct {
    /* Row i of `inputs` and `targets` (contiguous rows of the dataset's
     * input and target fields) gets sample idx[i], for i < n; every index
     * is in [0, N). Called from several threads at once: it only reads.
     * 0, or -1 with an error. */
    int (*gather)(const DatasetProducer *p, const int64_t *idx, int64_t n, void *inputs,
                  void *targets);
    void (*destroy)(DatasetProducer *p); /* frees p and what it holds */
} DatasetProducerOps;
struct DatasetProducer {
    const DatasetProducerOps *ops;
    atomic_int refs; /* dataset_lazy takes over the creator's 1 */
};
DatasetProducer *dataset_producer_retain(DatasetProducer *p);
void dataset_producer_release(DatasetProducer *p); /* NULL is fine */

typedef struct {
    Tensor *inputs;  /* uint8 [N, H, W] or float32 [N, F]; contiguous, CPU; NULL when lazy */
    Tensor *targets; /* int64 [N] labels or float32 [N, k]; contiguous, CPU; NULL when lazy */
    DatasetProducer *producer; /* a lazy dataset's; NULL for a dense one */
    DatasetField input, target; /* one sample's, for both kinds */
    int64_t n;       /* samples */
    int num_classes; /* 1 + the largest label when targets are labels; 0 for regression;
                        token data: the vocabulary's size */
    int64_t tokens;  /* token data: tokens in the whole file (every split); 0 otherwise */
    char *vocab;     /* text: the characters of ids 0, 1, ... in order, UTF-8; else NULL */
    /* "idx: t10k-images-idx3-ubyte.gz + t10k-labels-idx1-ubyte.gz: 10000 samples of
     * uint8 [28, 28], 10 classes" */
    char description[DATASET_DESCRIPTION_MAX];
} Dataset;

/* Takes one reference to each tensor (on failure releases them) and checks
 * that they are CPU, contiguous, have the same first dimension and the dtypes
 * above. num_classes is computed from int64 targets (which must be >= 0).
 * For loaders and tests that build a dataset from tensors. */
Dataset *dataset_from_tensors(Tensor *inputs, Tensor *targets, const char *description);

/* A lazy dataset of n samples made by p (its reference is taken over,
 * released on failure). */
Dataset *dataset_lazy(DatasetProducer *p, int64_t n, const DatasetField *input,
                      const DatasetField *target, int num_classes, const char *description);

void dataset_free(Dataset *ds); /* NULL is fine */

/* Shape of one sample's input; returns its ndim. */
int dataset_sample_shape(const Dataset *ds, int64_t *shape);

/* ---- the memory one loaded dataset may take ----
 * A daemon shares its memory with every user's uploads and jobs, and a
 * file may claim far more than its bytes (a gzipped IDX inflates up to
 * 1032:1): a loader checks such a claim against this limit before it
 * allocates. 0 (the default, traind run's): no limit. Set once, at start. */
void dataset_set_memory_limit(uint64_t bytes);
/* 0, or -1 with an error naming `what` when `bytes` are over the limit. */
int dataset_memory_check(const char *what, uint64_t bytes);
/* The limit (0: none). */
uint64_t dataset_memory_limit(void);

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

/* ---- token data (core/data/tokens.c) ----
 * "tokens": a .bin of little-endian uint16 token ids, raw (nanoGPT's
 * prepare.py: np.uint16 arrays written with tofile) or llm.c's (a header
 * of 256 int32: magic 20240520, version 1, the token count; then the
 * tokens), told apart by the magic. The file is mapped, never copied.
 * "text": a UTF-8 text file, one token per character, the vocabulary
 * being its characters sorted by code point (nanoGPT's
 * shakespeare_char/prepare.py: chars = sorted(set(text))); line endings
 * \r\n and \r read as \n, as Python's text mode reads them.
 *
 * A sample is a window of block_size + 1 tokens at offset o: inputs int64
 * [T] = tokens[o : o+T], targets int64 [T] = tokens[o+1 : o+T+1] (T =
 * block_size). Windows start every T tokens of the split (o = lo + i*T,
 * i < (tokens - 1) / T), so an epoch sees each token once as an input;
 * the DataLoader's shuffle permutes the windows. */
typedef enum { DATASET_SPLIT_ALL, DATASET_SPLIT_TRAIN, DATASET_SPLIT_VAL } DatasetSplit;

typedef struct {
    int64_t block_size; /* T, >= 1 */
    DatasetSplit split; /* train: the first 1 - val_fraction of the tokens; val: the rest */
    double val_fraction; /* in (0, 1); nanoGPT's 0.1 (a 90/10 split) */
    int64_t vocab_size;  /* num_classes when > 0: at least max token + 1 (the vocabulary's
                            size for text); 0: max token + 1, or the vocabulary's size */
} TokenOptions;

Dataset *dataset_load_tokens(const char *path, const TokenOptions *opts);
Dataset *dataset_load_text(const char *path, const TokenOptions *opts);

/* The tokens [*lo, *hi) of a split of n tokens: train ends where val begins,
 * at floor(n * (1 - val_fraction)), as nanoGPT's int(n*0.9). */
void dataset_split_range(int64_t n, DatasetSplit split, double val_fraction, int64_t *lo,
                         int64_t *hi);
/* The windows of block_size + 1 tokens that `tokens` tokens hold, into
 * *windows: 0, or -1 with "<what>: block_size B needs at least B+1 tokens,
 * but <split> has N" when it holds none (what: the file or dataset). */
int dataset_token_windows(const char *what, DatasetSplit split, int64_t tokens,
                          int64_t block_size, int64_t *windows);
/* "all", "train", "val"; and back (-1 for another name). */
const char *dataset_split_name(DatasetSplit split);
int dataset_split_parse(const char *name, DatasetSplit *out);

/* ---- image folders (core/data/imagefolder.c) ----
 * torchvision's ImageFolder: root/<class>/.../<file>.png|.jpg|.jpeg (see
 * imagefolder.c for the order and the rules). Inputs uint8 [N, 3, H, W]
 * (PIL's convert("RGB")) or, grayscale, [N, 1, H, W] (convert("L")), all
 * images of one size; int64 targets, the class's index in sorted order.
 * Lazily, only the first image is decoded now (or each once, to check
 * it), the others by the DataLoader's threads as they gather each batch. */
typedef enum {
    IMAGEFOLDER_DECODE_NOW,                /* every image into inputs now (dense) */
    IMAGEFOLDER_DECODE_PER_BATCH,          /* lazy: a job's data */
    IMAGEFOLDER_CHECK_NOW_DECODE_PER_BATCH /* lazy, every image decoded once to check it: an
                                              upload's */
} ImageFolderDecode;
Dataset *dataset_load_imagefolder(const char *root, bool grayscale, ImageFolderDecode when);
/* The class names of root (its sub-directories, sorted), as the targets
 * number them: *names (free with dataset_imagefolder_classes_free). */
int dataset_imagefolder_classes(const char *root, char ***names, int *n);
/* The threads that decode `images` images of width x height, reserved
 * from the memory limit, which every folder decoding at once shares:
 * OpenMP's (no more than the images), but no more than what is left
 * holds decodings of such an image; waits until it holds one (or until
 * none is held: an image over the limit decodes alone). No limit: those
 * threads, nothing reserved. Give them back with
 * dataset_imagefolder_decode_release. */
int dataset_imagefolder_decode_reserve(int width, int height, int channels, int64_t images);
void dataset_imagefolder_decode_release(int threads, int width, int height, int channels);
void dataset_imagefolder_classes_free(char **names, int n);

/* ---- CIFAR-10 binary (core/data/cifar10.c) ----
 * Records of 1 label byte + 3072 bytes (R, G, B planes of 32x32), the
 * files concatenated in order: uint8 [N, 3, 32, 32], 10 classes. */
Dataset *dataset_load_cifar10(const char *const *paths, int num_paths);

#endif
