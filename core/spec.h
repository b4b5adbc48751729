/* spec.h - the job spec: JSON in, a validated JobSpec out.
 *
 * A job spec is the JSON a user submits (../shared/design.md, "The job
 * spec"): the data, an nn.Sequential written as a list of layers with
 * torch.nn's names and argument names, a loss, an optimizer, a scheduler and
 * the loop's settings. job_spec_parse reads it all, fills in PyTorch's
 * defaults, and refuses anything it does not understand, with an error that
 * names the JSON path and the reason:
 *
 *     optimizer.lr: expected a number, got string
 *     epochs: must be >= 1, got 0
 *     model[2]: unknown layer type 'Conv3d' (known: Linear, Conv2d, ...)
 *     optimizer.momentun: unknown field (did you mean 'momentum'?)
 *     scheduler.lr_lambda: unexpected character '$' at position 6
 *
 * Errors are structures (core/error.h): error_last()->path is the JSON path
 * the message starts with ("optimizer.momentun"), "" when the spec as a
 * whole is at fault (not JSON, not an object).
 *
 * Parsing checks the spec on its own. Whether the model fits the data
 * (shapes layer by layer, the loss against the targets) needs the data's
 * sample shape: job_spec_check_data / job_spec_check_shapes do that before
 * training, from the layer list alone, and measure the model (parameters,
 * the bytes training takes), e.g. "model[4] Linear: in_features=1000 but its
 * input has 6272 features".
 *
 * The spec then builds what a PyTorch script would construct:
 * job_spec_build_model (nn.Sequential, PyTorch state_dict names "0.weight"),
 * job_spec_build_optimizer, job_spec_build_lr_scheduler, job_spec_loss.
 *
 * Files: spec.c (top level, loss, optimizer, the loop's settings),
 * spec_scheduler.c (the LR scheduler), spec_data.c (sources, transforms,
 * loading), spec_model.c
 * (layers, model building), spec_arch.c (architectures by name),
 * spec_shapes.c (shapes and sizes from the layer list), spec_json.c (typed
 * field readers that produce the path errors).
 */
#ifndef TRAIND_CORE_SPEC_H
#define TRAIND_CORE_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/data/augment.h"
#include "core/data/dataset.h"
#include "core/data/transforms.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "core/optim/optimizer.h"
#include "core/optim/lr_scheduler.h"
#include "core/rng.h"
#include "core/tensor.h"

#define JOB_SPEC_MAX_BYTES (16 << 20) /* job files larger than this are refused */
#define JOB_SPEC_MAX_LAYERS 1024
#define JOB_SPEC_MAX_EPOCHS 1000000
#define JOB_SPEC_MAX_DEVICES 16 /* "devices": the GPUs of one machine */

/* ---- model layers ---- */

typedef enum {
    SPEC_LAYER_LINEAR,
    SPEC_LAYER_CONV2D,
    SPEC_LAYER_RELU,
    SPEC_LAYER_SIGMOID,
    SPEC_LAYER_TANH,
    SPEC_LAYER_SOFTMAX,
    SPEC_LAYER_MAX_POOL2D,
    SPEC_LAYER_AVG_POOL2D,
    SPEC_LAYER_FLATTEN,
    SPEC_LAYER_DROPOUT,
    SPEC_LAYER_BATCH_NORM1D,
    SPEC_LAYER_BATCH_NORM2D,
    SPEC_LAYER_GELU, SPEC_LAYER_SILU, SPEC_LAYER_LEAKY_RELU, SPEC_LAYER_IDENTITY,
    SPEC_LAYER_LAYER_NORM,
    SPEC_LAYER_EMBEDDING,
    SPEC_LAYER_ADAPTIVE_AVG_POOL2D, SPEC_LAYER_BASIC_BLOCK, SPEC_LAYER_BOTTLENECK,
} SpecLayerType;

/* One entry of "model", with torch's defaults filled in. Only the fields of
 * its type are meaningful. */
typedef struct {
    SpecLayerType type;
    int64_t in_features, out_features; /* Linear */
    int64_t in_channels, out_channels; /* Conv2d */
    Size2d kernel_size, stride, padding; /* Conv2d, MaxPool2d, AvgPool2d; a pool's
                                            stride {0, 0} is torch's None (= kernel) */
    Size2d dilation;                   /* Conv2d (1) */
    int64_t groups;                    /* Conv2d (1) */
    bool bias;                         /* Linear, Conv2d, LayerNorm (true) */
    int dim;                           /* Softmax (required) */
    int start_dim, end_dim;            /* Flatten (1, -1) */
    double p;                          /* Dropout (0.5) */
    int64_t num_features;              /* BatchNorm1d/2d */
    double eps, momentum;              /*   1e-5, 0.1 (NAN: torch's None) */
    bool affine, track_running_stats;  /*   true, true */
    bool gelu_tanh;                    /* GELU: approximate "tanh" (false: "none") */
    double negative_slope;             /* LeakyReLU (0.01) */
    int norm_ndim;                     /* LayerNorm: normalized_shape (required), */
    int64_t normalized_shape[TENSOR_MAX_DIMS]; /* eps (1e-5), bias (true) and */
    bool elementwise_affine;           /*   elementwise_affine (true) */
    int64_t num_embeddings, embedding_dim; /* Embedding; its input: int64 indices */
    Size2d output_size;                /* AdaptiveAvgPool2d (required) */
    int64_t inplanes, planes;          /* BasicBlock, Bottleneck (required); stride.h */
} SpecLayer;

/* torch's class name: "Linear", "BatchNorm2d", ... */
const char *spec_layer_type_name(SpecLayerType type);

/* ---- architectures by name ----
 * "model": {"arch": "resnet18", ...} instead of a layer list: a reference
 * model built whole, under its reference implementation's state_dict names
 * (core/spec_arch.c has the table of names). Only the config of its kind is
 * meaningful. */

typedef enum { SPEC_ARCH_NONE, SPEC_ARCH_RESNET, SPEC_ARCH_GPT } SpecArchKind;

typedef struct {
    int depth;           /* 18, 34, 50: "resnet18" ... */
    int64_t num_classes; /* 1000 */
    int64_t in_channels; /* 3 */
    bool small_input;    /* false; true: 3x3 stride-1 stem, no max-pool (32x32 images) */
} SpecResNet;

typedef struct {
    int64_t vocab_size, block_size, n_layer, n_head, n_embd; /* required */
    double dropout; /* 0 */
    bool bias;      /* true */
} SpecGpt;

typedef struct {
    SpecArchKind kind;
    char name[16]; /* as written: "resnet18", "gpt" */
    SpecResNet resnet;
    SpecGpt gpt;
} SpecArch;

/* ---- data ---- */

typedef enum {
    SPEC_SOURCE_NONE, /* data.val absent or null */
    SPEC_SOURCE_NAME, /* a dataset name or id, resolved by the daemon */
    SPEC_SOURCE_IDX,  /* {"format": "idx", "images": ..., "labels": ...} */
    SPEC_SOURCE_CSV,  /* {"format": "csv", "path": ..., "feature_columns": [...],
                         "label_column": "y" or [...]} */
    SPEC_SOURCE_NPY,  /* {"format": "npy", "inputs": ..., "targets": ...} */
    SPEC_SOURCE_TOKENS, /* {"format": "tokens", "path": ..., + the token options} */
    SPEC_SOURCE_TEXT,   /* {"format": "text", "path": ..., + the token options} */
    SPEC_SOURCE_IMAGEFOLDER, /* {"format": "imagefolder", "root": DIR, "grayscale": false} */
    SPEC_SOURCE_CIFAR10,     /* {"format": "cifar10", "files": [...] or one} */
} SpecSourceKind;

/* Paths of inline sources are resolved against the job file's directory
 * when the spec came from a file (job_spec_parse_file) or a base directory.
 * A NAME is a string, or {"name": ..., + the token options} for a token
 * dataset of the daemon. The token options: "block_size" (default: the
 * gpt arch's), "split" ("train" | "val", default the whole file),
 * "val_fraction" (0.1) and, for inline sources, "vocab_size". */
typedef struct {
    SpecSourceKind kind;
    char *name;            /* NAME */
    char *images, *labels; /* IDX */
    char *path;            /* CSV, TOKENS, TEXT */
    char **feature_columns; /* CSV; 0 of them: every column that is not a label */
    int num_feature_columns;
    char **label_columns; /* CSV; "label_column": a name or a list; 0: the last column */
    int num_label_columns;
    char *inputs, *targets; /* NPY */
    bool token_options;     /* any token option was written (a NAME's must name token data) */
    int64_t block_size;     /* 0: not given */
    DatasetSplit split;     /* DATASET_SPLIT_ALL when not given */
    double val_fraction;    /* 0.1 when not given */
    int64_t vocab_size;     /* 0: not given */
    char *root;             /* IMAGEFOLDER */
    bool grayscale;         /* IMAGEFOLDER: one channel, PIL's convert("L") */
    char **files;           /* CIFAR10 */
    int num_files;
} SpecSource;

/* ---- loss and optimizer ---- */

typedef enum {
    SPEC_LOSS_MSE,              /* "MSELoss" */
    SPEC_LOSS_L1,               /* "L1Loss" */
    SPEC_LOSS_CROSS_ENTROPY,    /* "CrossEntropyLoss" */
    SPEC_LOSS_NLL,              /* "NLLLoss" */
    SPEC_LOSS_BCE,              /* "BCELoss" */
    SPEC_LOSS_BCE_WITH_LOGITS,  /* "BCEWithLogitsLoss" */
} SpecLossType;

const char *spec_loss_name(SpecLossType type);

typedef enum { SPEC_OPTIM_SGD, SPEC_OPTIM_ADAM, SPEC_OPTIM_ADAMW } SpecOptimizerType;

/* ---- the spec ---- */

typedef struct {
    char *name; /* "" when absent (job_spec_parse_file: the file's name without .json) */

    SpecSource train, val; /* val.kind SPEC_SOURCE_NONE when there is none */
    AugmentList augment;                /* the per-sample image transforms first */
    int num_transforms;
    TransformConfig *transform_configs; /* then the batch transforms as written (owned) */
    TransformList transforms;           /* built from them, for the DataLoader */
    int num_workers;                    /* data.num_workers: 0, the job's threads */

    int num_layers; /* 0 when the model is an arch */
    SpecLayer *layers;
    SpecArch arch;  /* kind SPEC_ARCH_NONE for a layer list */

    SpecLossType loss;
    Reduction reduction; /* "mean" (default) or "sum"; "none" is refused */
    ClassLossOptions class_loss; /* CrossEntropyLoss (both) and NLLLoss (ignore_index only);
                                    torch's defaults for the other losses */

    SpecOptimizerType optimizer;
    SgdOptions sgd;   /* SGD */
    AdamOptions adam; /* Adam, AdamW */
    bool no_decay_1d; /* false; true: biases and norm weights (under 2 dims) in a
                         second group with weight_decay 0, as nanoGPT's */

    bool has_lr_scheduler;
    LrSchedulerConfig lr_scheduler; /* lr_lambda, milestones and schedulers owned
                                    by the spec; MultiStepLR's milestones sorted
                                    (torch counts them as a set) */

    int epochs;          /* required, >= 1 */
    int64_t batch_size;  /* 1, as torch's DataLoader */
    bool shuffle;        /* false */
    bool drop_last;      /* false */
    bool allow_tf32;     /* false: float32 matrix products in full float32 on a GPU */
    bool cuda_graphs;    /* false: each step's kernels launched one by one on a GPU */
    Precision precision; /* float32; bf16: convolutions from bf16 inputs (CPU) */
    double clip_grad_norm; /* 0: none; else the gradients' largest total 2-norm */
    int accumulate_steps; /* 1: batches per optimizer step (gradient accumulation) */
    int ranks, nodes;     /* 1, 1: data-parallel processes, and the machines they use */
    double bucket_cap_mb; /* 25: data parallel's gradient buckets (DDP's bucket_cap_mb) */
    uint64_t seed;       /* 0 */
    bool device_auto;    /* "auto" (default): the daemon picks */
    Device device;       /* when !device_auto (the first GPU of several) */
    int gpus;            /* "gpus": N, or "device": "cuda" with N ranks: any N GPUs, one per
                            rank (0: not asked) */
    int num_devices;     /* "devices": these GPUs, one per rank (0: not given) */
    Device devices[JOB_SPEC_MAX_DEVICES];
    bool accuracy;       /* "metrics": ["accuracy"] */
    bool perplexity;     /* "metrics": ["perplexity"]: exp of the epoch's mean losses */
    bool checkpoint;     /* false when "checkpoint": null */
    int checkpoint_every_epochs; /* 1 */
    int checkpoint_keep_last;    /* 3 */
    char *init;          /* NULL, or a .safetensors path (local) / checkpoint id (daemon) */
} JobSpec;

/* Validates a spec already parsed from JSON (the daemon's request body):
 * the one reading of a job spec that everything after it uses. Relative
 * paths stay as written. NULL with an error. */
JobSpec *job_spec_from_json(const json_t *root);
/* Parses and validates. Relative paths stay as written. NULL with an error
 * (path and reason; for bad JSON, jansson's "line L, column C: ..."). */
JobSpec *job_spec_parse(const char *json_text, size_t len);
/* The same, resolving relative paths of inline sources and of init against
 * base_dir (NULL: leave them). */
JobSpec *job_spec_parse_in(const char *json_text, size_t len, const char *base_dir);
/* Reads a job file; relative paths resolve against its directory. Errors
 * start with the file's path. */
JobSpec *job_spec_parse_file(const char *path);
void job_spec_free(JobSpec *spec); /* NULL is fine */

/* The optimizer's lr: the base lr of the scheduler. */
double job_spec_lr(const JobSpec *spec);
/* Whether the loss takes integer class labels (CrossEntropyLoss, NLLLoss)
 * rather than float targets; decides how a CSV's label columns load. */
bool job_spec_uses_labels(const JobSpec *spec);

/* ---- fitting the model to the data ---- */

/* What the data looks like, one sample (no batch dimension). */
typedef struct {
    DType input_dtype; /* uint8 images or float32 */
    int input_ndim;
    int64_t input_shape[TENSOR_MAX_DIMS];
    DType target_dtype; /* int64 labels or float32 targets */
    int target_ndim;    /* 0 for labels, 1 ([k]) for regression targets */
    int64_t target_shape[TENSOR_MAX_DIMS];
    int num_classes; /* labels: 1 + the largest label, 0 when unknown */
} SpecDataShape;

void spec_data_shape_of(const Dataset *ds, SpecDataShape *out);

/* What the model does to one batch, from its layer list alone (nothing is
 * allocated; core/spec_shapes.c). Counts saturate at INT64_MAX. */
typedef struct {
    int out_ndim; /* the model's output for a batch of batch_size samples */
    int64_t out_shape[TENSOR_MAX_DIMS];
    int64_t parameters;  /* trainable elements, as sum(p.numel() for p in model.parameters()) */
    int64_t buffers;     /* elements of the running statistics */
    int64_t activations; /* elements of every layer's output for one batch */
    /* Bytes training takes, at least: float32 weights, gradients and the
     * optimizer's state, the buffers, and the batch and each layer's output
     * with their gradients. */
    int64_t train_bytes;
} SpecModelSize;

/* Runs the shape of a batch of batch_size samples through the transforms
 * and the layers, and checks the output against the loss and the targets:
 * CrossEntropyLoss/NLLLoss need a [N, C] output, integer labels and C above
 * the largest label; the other losses an output shaped as the targets. The
 * sizes go to *out (may be NULL). 0, or -1 with an error naming its path,
 * such as "model[4] Linear: in_features=1000 but its input has 6272
 * features" (path "model[4]"). */
int job_spec_check_shapes(const JobSpec *spec, const SpecDataShape *data, SpecModelSize *out);
/* job_spec_check_shapes for the short last batch of `samples` training
 * samples, unless drop_last leaves it out: a model that takes a full batch
 * may fail on it (a BatchNorm given one sample). */
int job_spec_check_last_batch(const JobSpec *spec, const SpecDataShape *data, int64_t samples);
/* job_spec_check_shapes for a loaded dataset (train, or val: call it for each). */
int job_spec_check_data(const JobSpec *spec, const Dataset *ds, SpecModelSize *out);

/* The TokenOptions of a token source: its own, with block_size from the
 * gpt arch when the source has none. -1 with an error at
 * "<what>.block_size" when neither says it. */
int job_spec_token_options(const JobSpec *spec, const SpecSource *src, const char *what,
                           TokenOptions *out);

/* Loads an inline source (spec->train or spec->val): IDX, CSV (labels or
 * float targets as the loss needs), NPY, TOKENS or TEXT. A SPEC_SOURCE_NAME is an error
 * here: the daemon resolves names. Errors start with "data.train" or
 * "data.val". */
Dataset *job_spec_load_source(const JobSpec *spec, const SpecSource *src);

/* ---- building ---- */

/* nn.Sequential of the layers (or the arch's model), initialised from rng
 * as torch would from its generator. NULL with an error. */
Module *job_spec_build_model(const JobSpec *spec, Rng *rng);
/* The optimizer over the model's parameters. */
Optimizer *job_spec_build_optimizer(const JobSpec *spec, Module *model);
/* The scheduler into *out, or NULL there when the spec has none: 0; -1 with
 * an error. steps_per_epoch (the train loader's batches) and the spec's
 * epochs give a OneCycleLR without total_steps its steps. */
int job_spec_build_lr_scheduler(const JobSpec *spec, double base_lr, int64_t steps_per_epoch,
                                LrScheduler **out);
/* The loss of a batch, as the spec's loss module with its reduction would
 * compute it: a new reference, or NULL with an error. */
Tensor *job_spec_loss(const JobSpec *spec, Tensor *output, Tensor *target);

#endif
