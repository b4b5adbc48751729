/* module.h - torch.nn in C: layers with named parameters and buffers.
 *
 * A Module is a layer (Linear, Conv2d, BatchNorm2d, ...) or a container
 * (Sequential) of child modules. Each one has a vtable (type name, forward,
 * shape inference, free), a `training` flag, and its tensors under the names
 * PyTorch gives them ("weight", "bias", "running_mean", ...), in PyTorch's
 * registration order, so that module_state_dict() produces exactly the keys
 * of torch's model.state_dict(): "0.weight", "2.running_var",
 * "2.num_batches_tracked", "1.0.weight" for a nested Sequential.
 *
 * Constructors take torch's arguments (C has no defaults: pass torch's
 * default values, listed beside each one) and the Rng that PyTorch's default
 * initialisation draws from (core/nn/init.c), so the same seed gives the same
 * weights. They return NULL with an error for bad arguments.
 *
 * Ownership: a module owns its tensors and its children; module_free frees
 * the whole tree. Parameters are leaves with requires_grad; the optimizer
 * updates them in place, load_state_dict copies into them in place, and
 * module_to / module_to_dtype replace them (pointers taken earlier with
 * module_parameters are stale after a move).
 *
 * Children are named as torch names submodules: a Sequential's by their
 * index ("0", "1"), a block's by attribute ("conv1", "downsample"), so a
 * ResNet's keys read "layer1.0.conv1.weight" as torchvision's do.
 *
 * Errors from a layer inside a container carry its path and type,
 * "model[3] Linear: ...", "model.layer1[0].conv1 Conv2d: ...", both from
 * module_forward and module_infer_shape; callers should not add the path
 * again.
 *
 * Tied weights (GPT's embedding and output layer) are one tensor registered
 * in two modules: state_dict lists it under both names, as torch's does,
 * while module_parameters and module_num_parameters count it once and
 * module_to keeps it one tensor.
 */
#ifndef TRAIND_CORE_NN_MODULE_H
#define TRAIND_CORE_NN_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ops.h"
#include "core/dist/group.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/tensor_dict.h"

#define MODULE_MAX_TENSORS 4 /* parameters (or buffers) of one module */
#define MODULE_NAME_MAX 32   /* a child's attribute name, with its NUL */

typedef struct Module Module;

typedef struct {
    const char *type; /* torch's class name: "Linear" */
    /* One new reference, or NULL with a bare error (module_forward adds the
     * path and type). Called by module_forward only. */
    Tensor *(*forward)(Module *m, Tensor *x);
    /* The output shape for an input shape, without running; -1 with a bare
     * error otherwise. out_shape has room for TENSOR_MAX_DIMS. */
    int (*infer_shape)(Module *m, int ndim, const int64_t *in_shape, int *out_ndim,
                       int64_t *out_shape);
    /* Frees what the module type allocated beyond struct Module's own
     * fields; NULL when nothing. module_free does the rest. */
    void (*free)(Module *m);
    /* forward, consuming the caller's reference to x, so that the module
     * may reuse x's memory (ReLU); NULL: forward, then x released. */
    Tensor *(*forward_consume)(Module *m, Tensor *x);
    /* forward_consume with the output in the blocked layout (core/ops.h's
     * TENSOR_BLOCK): x in it too, or in NCHW for a Conv2d, whose output
     * starts the layout. NULL where the module does not take it. Called by
     * module_forward_blocked only. */
    Tensor *(*forward_blocked)(Module *m, Tensor *x);
} ModuleVTable;

typedef struct {
    const char *name; /* static: "weight", "running_mean", ... */
    Tensor *tensor;
} NamedTensor;

struct Module {
    const ModuleVTable *vtable;
    bool training; /* true after construction, as in torch */

    int n_params;
    NamedTensor params[MODULE_MAX_TENSORS];
    int n_buffers;
    NamedTensor buffers[MODULE_MAX_TENSORS];

    int n_children;
    Module **children; /* in registration order (torch's state_dict order) */
    Module *parent;    /* for error paths; NULL at the root */
    int index;         /* position in the parent */
    char name[MODULE_NAME_MAX]; /* attribute name in the parent; "" for the index */

    Rng *rng; /* borrowed; used by Dropout (module_set_rng) */
    /* A data-parallel job's group and this rank's rows of the batch in
     * flight (module_set_dist); both borrowed, NULL in one process. */
    DistGroup *dist;
    const DistRows *rows;
    /* A layer's own configuration follows: each layer type allocates a
     * larger struct whose first member is this Module. */
};

/* Size2d: a (height, width) pair for kernel_size, stride, padding. */
typedef struct {
    int h, w;
} Size2d;
#define SIZE2D(n) ((Size2d){(n), (n)})

/* ---- generic (core/nn/module.c) ---- */
Tensor *module_forward(Module *m, Tensor *x);
/* module_forward, consuming the caller's reference to x (a container's
 * layer by layer: the layers' memory may be reused, as ReLU's). */
Tensor *module_forward_consume(Module *m, Tensor *x);
/* module_forward_consume in the blocked layout (core/ops.h's
 * TENSOR_BLOCK), for the modules that take it (ModuleVTable's
 * forward_blocked: Conv2d, BatchNorm2d, ReLU, Identity, MaxPool2d,
 * Sequential, ResNet blocks); shapes are checked as NCHW. A ResNet, and a
 * Sequential's runs of convolutions, run so on a backend with the layout. */
Tensor *module_forward_blocked(Module *m, Tensor *x);
/* Prefixes the error set by an op run for layer m with m's path, as
 * module_forward does ("model[3] Linear: ..."); for a container that runs
 * its children's ops itself. */
void module_prefix_error(const Module *m);
/* model.train(training) / model.eval(), recursively. */
void module_train(Module *m, bool training);
void module_free(Module *m); /* NULL is fine */
const char *module_type(const Module *m);
/* Borrowed pointers to every parameter that requires grad, in state_dict
 * order; *n set to their count. Free the array with free(). NULL with an
 * error when out of memory. */
Tensor **module_parameters(Module *m, int *n);
/* Total elements over module_parameters. */
int64_t module_num_parameters(Module *m);
/* The tensor named `name` of this module (not its children): a parameter or
 * a buffer; NULL when absent (e.g. "bias" of Linear(bias=false)). */
Tensor *module_get(Module *m, const char *name);
/* The tensor under a state_dict name ("12.0.weight", "1.running_mean"),
 * itself rather than a detached view, as torch's get_parameter/get_buffer;
 * NULL when there is none. */
Tensor *module_find(Module *m, const char *qualified_name);
/* Appends "<prefix>name" -> tensor for every parameter and buffer of the
 * tree, as torch's state_dict() (detached views sharing the module's
 * storage: writing into them writes into the model). */
int module_state_dict(Module *m, TensorDict *out);
/* Copies every tensor of `sd` into the model in place, converting dtypes.
 * Fails before copying anything if a shape differs ("load_state_dict:
 * '0.weight' has shape [10, 784] in the file but [256, 784] in the model")
 * or, when strict, if keys are missing or unexpected (all of them listed). */
int module_load_state_dict(Module *m, const TensorDict *sd, bool strict);
/* model.to(device) / model.to(dtype): replaces every parameter and buffer
 * (and gradient) by one on `device` / of `dtype`. module_to_dtype converts
 * float tensors only (num_batches_tracked stays int64), as model.double(). */
int module_to(Module *m, Device device);
int module_to_dtype(Module *m, DType dtype);
/* Gives every Dropout in the tree the shared stream it draws masks from.
 * The Rng is borrowed and owned by whoever built the model (the trainer);
 * each training forward of a Dropout consumes numel(x) numbers of it. */
void module_set_rng(Module *m, Rng *rng);
/* Makes the tree one replica of a data-parallel job: BatchNorm takes its
 * statistics over every rank's batch (SyncBatchNorm), and Dropout draws
 * each row's mask at the row's place in the global batch, which *rows
 * (owned by the trainer, updated per batch) says. */
void module_set_dist(Module *m, DistGroup *g, const DistRows *rows);
/* Where a training forward's random numbers come from, for x of `rows`
 * rows (dim 0) of per_row numbers each: local row i reads per_row numbers
 * from offset + i * row_stride of stream seed. The module's Rng then
 * moves past the whole global batch, so every rank's stream stays the
 * same. -1 with an error when the tree has no Rng. */
typedef struct {
    uint64_t seed, offset, row_stride;
    const uint64_t *base; /* NULL, or device memory whose value is added to
                             offset when the kernels run (Rng.device_base) */
} ModuleStream;
int module_draw_stream(Module *m, int64_t rows, int64_t per_row, ModuleStream *out);
/* Output shape of the module for an input of shape (ndim, in_shape), as
 * forward would give; for a Sequential, layer by layer. Errors name the
 * layer: "model[4] Linear: in_features=1000 but its input has 6272
 * features" (the path only when the layer sits in a Sequential). */
int module_infer_shape(Module *m, int ndim, const int64_t *in_shape, int *out_ndim,
                       int64_t *out_shape);

/* For layer implementations: allocates `size` bytes (a struct starting with
 * Module), zeroed, training on. */
Module *module_alloc(size_t size, const ModuleVTable *vtable);
/* Appends a child under `name` (NULL: its index, as in a Sequential);
 * takes ownership of the child, also on failure. A NULL child (a failed
 * constructor) fails with its error kept. */
int module_add_child(Module *m, const char *name, Module *child);
/* Registers a parameter (sets requires_grad) or a buffer; takes over the
 * caller's reference to t, also on failure. */
int module_add_param(Module *m, const char *name, Tensor *t);
int module_add_buffer(Module *m, const char *name, Tensor *t);
/* infer_shape of layers whose output has their input's shape. */
int module_infer_same_shape(Module *m, int ndim, const int64_t *in_shape, int *out_ndim,
                            int64_t *out_shape);
/* Error path of a module: "model[1][0]", "model.layer1[0].conv1", or ""
 * at the root. */
const char *module_path(const Module *m, char *buf, size_t n);

/* ---- shape rules ----
 * Each layer's output shape for an input shape, from its arguments alone:
 * the layers' infer_shape, and a job spec's check before anything is built
 * (core/spec_model.c). -1 with a bare error ("in_features=1000 but its input
 * has 6272 features"). out has room for TENSOR_MAX_DIMS. */
int nn_linear_shape(int64_t in_features, int64_t out_features, int ndim, const int64_t *in,
                    int *out_ndim, int64_t *out);
int nn_conv2d_shape(int64_t in_channels, int64_t out_channels, Size2d kernel, Size2d stride,
                    Size2d padding, int ndim, const int64_t *in, int *out_ndim, int64_t *out);
int nn_conv2d_shape_dilated(int64_t in_channels, int64_t out_channels, Size2d kernel,
                            Size2d stride, Size2d padding, Size2d dilation, int ndim,
                            const int64_t *in, int *out_ndim, int64_t *out);
/* The sliding window of Conv2d and the pools over [N, C, H, W] (pool.c):
 * channels kept; stride already defaulted. */
int nn_window2d_shape(Size2d kernel, Size2d stride, Size2d padding, int ndim, const int64_t *in,
                      int *out_ndim, int64_t *out);
int nn_softmax_shape(int dim, int ndim, const int64_t *in, int *out_ndim, int64_t *out);
int nn_flatten_shape(int start_dim, int end_dim, int ndim, const int64_t *in, int *out_ndim,
                     int64_t *out);
int nn_batch_norm_shape(int64_t num_features, bool is_2d, int ndim, const int64_t *in,
                        int *out_ndim, int64_t *out);
/* embedding.c: any input shape, embedding_dim appended. */
int nn_embedding_shape(int64_t embedding_dim, int ndim, const int64_t *in, int *out_ndim,
                       int64_t *out);
/* gpt.c: token ids [B, T <= block_size] -> [B, T, vocab_size]. */
int nn_gpt_shape(int64_t vocab_size, int64_t block_size, int ndim, const int64_t *in,
                 int *out_ndim, int64_t *out);
/* adaptive_pool.c: [N, C, H, W] -> [N, C, output_size.h, output_size.w]. */
int nn_adaptive_avg_pool2d_shape(Size2d output_size, int ndim, const int64_t *in, int *out_ndim,
                                 int64_t *out);
/* layer_norm.c: the input must end with normalized_shape (norm_ndim dims). */
int nn_layer_norm_shape(int norm_ndim, const int64_t *norm_shape, int ndim, const int64_t *in,
                        int *out_ndim, int64_t *out);

/* ---- layers; torch's defaults in comments ---- */
/* linear.c: nn.Linear(in_features, out_features, bias=True) */
Module *nn_linear(int64_t in_features, int64_t out_features, bool bias, Rng *rng);
/* conv2d.c: nn.Conv2d(in_channels, out_channels, kernel_size, stride=1,
 * padding=0, bias=True) with groups=1, dilation=1. */
Module *nn_conv2d(int64_t in_channels, int64_t out_channels, Size2d kernel_size, Size2d stride,
                  Size2d padding, bool bias, Rng *rng);
/* The same with torch's dilation (1) and groups (1, dividing both channel
 * counts): weight [out_channels, in_channels / groups, kh, kw]. */
Module *nn_conv2d_grouped(int64_t in_channels, int64_t out_channels, Size2d kernel_size,
                          Size2d stride, Size2d padding, Size2d dilation, int64_t groups,
                          bool bias, Rng *rng);
/* A Conv2d's arguments as tensor_conv2d_with takes them (bias NULL when it
 * has none); false for another module. */
bool nn_conv2d_args(Module *m, Tensor **weight, Tensor **bias, Conv2dParams *p);
/* activation.c: nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.Softmax(dim) */
Module *nn_relu(void);
Module *nn_sigmoid(void);
Module *nn_tanh(void);
/* nn.GELU(approximate='none'; 'tanh' when approximate_tanh), nn.SiLU(),
 * nn.LeakyReLU(negative_slope=0.01), nn.Identity() */
Module *nn_gelu(bool approximate_tanh);
Module *nn_silu(void);
Module *nn_leaky_relu(double negative_slope);
Module *nn_identity(void);
Module *nn_softmax(int dim);
/* pool.c: nn.MaxPool2d(kernel_size, stride=None, padding=0); a stride of
 * {0, 0} means torch's None, i.e. the kernel size. Same for AvgPool2d
 * (ceil_mode=False, count_include_pad=True). */
Module *nn_max_pool2d(Size2d kernel_size, Size2d stride, Size2d padding);
/* A MaxPool2d's arguments as the ops take them; false for another module. */
bool nn_max_pool2d_args(const Module *m, Pool2dParams *p);
Module *nn_avg_pool2d(Size2d kernel_size, Size2d stride, Size2d padding);
/* adaptive_pool.c: nn.AdaptiveAvgPool2d(output_size), both sizes >= 1. */
Module *nn_adaptive_avg_pool2d(Size2d output_size);
/* flatten.c: nn.Flatten(start_dim=1, end_dim=-1) */
Module *nn_flatten(int start_dim, int end_dim);
/* dropout.c: nn.Dropout(p=0.5) */
Module *nn_dropout(double p);
/* batch_norm.c: nn.BatchNorm1d / nn.BatchNorm2d(num_features, eps=1e-5,
 * momentum=0.1, affine=True, track_running_stats=True); momentum NAN means
 * torch's None (cumulative average). */
Module *nn_batch_norm1d(int64_t num_features, double eps, double momentum, bool affine,
                        bool track_running_stats);
Module *nn_batch_norm2d(int64_t num_features, double eps, double momentum, bool affine,
                        bool track_running_stats);
/* Whether the BatchNorm m normalises with its batch's statistics in that
 * mode (training, or eval without running stats): then a data-parallel
 * forward of it joins its ranks' collective. */
bool nn_batch_norm_batch_stats(const Module *m, bool training);
/* layer_norm.c: nn.LayerNorm(normalized_shape, eps=1e-5,
 * elementwise_affine=True, bias=True); normalized_shape has ndim dims. */
Module *nn_layer_norm(int ndim, const int64_t *normalized_shape, double eps,
                      bool elementwise_affine, bool bias);
/* embedding.c: nn.Embedding(num_embeddings, embedding_dim); weight
 * normal(0, 1) as torch's. Its input: int64 indices of any shape. */
Module *nn_embedding(int64_t num_embeddings, int64_t embedding_dim, Rng *rng);
/* gpt.c: nanoGPT's GPT(GPTConfig(...)) with its init (normal(0, 0.02),
 * c_proj weights std 0.02 / sqrt(2 n_layer), zero biases) and lm_head tied
 * to transformer.wte; int64 tokens [B, T <= block_size] -> logits [B, T,
 * vocab_size]. dropout applies where nanoGPT's does: the embeddings' sum,
 * the attention probabilities and the residual branches. */
Module *nn_gpt(int64_t vocab_size, int64_t block_size, int64_t n_layer, int64_t n_head,
               int64_t n_embd, double dropout, bool bias, Rng *rng);
/* sequential.c: nn.Sequential(*children). Takes ownership of the n
 * children, also on failure; a NULL child (a constructor that failed) makes
 * it fail with that constructor's error, so calls can be nested. */
Module *nn_sequential(int n, Module **children);

/* ---- torchvision's ResNets (resnet_block.c, resnet.c) ----
 * Blocks and models as torchvision.models.resnet writes them (v1.5: a
 * Bottleneck strides in its 3x3 conv), under its attribute names, with its
 * initialisation: every Conv2d (bias=False) kaiming_normal_(mode='fan_out',
 * nonlinearity='relu'), BatchNorm2d weight 1 and bias 0, fc Linear's
 * default; zero_init_residual=False, groups=1, width_per_group=64. */

/* Conv2d(in_channels, out_channels, kernel, stride, padding=kernel/2,
 * bias=False), then a BatchNorm2d(out_channels). */
typedef struct {
    int64_t in_channels, out_channels;
    int kernel, stride;
} NnResNetConv;

/* A block's layers: the main branch's convs, each with its BatchNorm2d and
 * a ReLU after all but the last; the shortcut's 1x1 conv and BatchNorm2d
 * when there is a downsample; then out = relu(main + shortcut). */
typedef struct {
    bool bottleneck;      /* expansion 4 rather than 1 */
    int n_convs;          /* 2 (BasicBlock: 3x3, 3x3) or 3 (Bottleneck: 1x1, 3x3, 1x1) */
    NnResNetConv convs[3];
    bool has_downsample;  /* torchvision's _make_layer rule: stride != 1 or
                             inplanes != planes * expansion */
    NnResNetConv downsample;
    int64_t out_channels; /* planes * expansion */
} NnResNetBlockPlan;

/* The layers of BasicBlock / Bottleneck(inplanes, planes, stride). -1 with
 * an error naming the block for a non-positive argument. */
int nn_resnet_block_plan(bool bottleneck, int64_t inplanes, int64_t planes, int stride,
                         NnResNetBlockPlan *plan);
/* The conv of a plan, initialised as torchvision's ResNet does. */
Module *nn_resnet_conv(const NnResNetConv *conv, Rng *rng);
/* torchvision.models.resnet.BasicBlock / Bottleneck(inplanes, planes,
 * stride=1, downsample=<made when _make_layer would make it>); children
 * conv1, bn1, [conv3, bn3,] relu, downsample (Sequential(conv, bn)) in
 * torchvision's order. */
Module *nn_basic_block(int64_t inplanes, int64_t planes, int stride, Rng *rng);
Module *nn_bottleneck(int64_t inplanes, int64_t planes, int stride, Rng *rng);
/* Whether m is a BasicBlock or Bottleneck whose convolutions all give
 * whole blocks of the blocked layout (core/ops.h's TENSOR_BLOCK channels). */
bool nn_resnet_block_takes_blocked(Module *m);

/* A whole ResNet: stem conv1, bn1, relu, maxpool; layer1..layer4 of blocks
 * (stage i: planes 64 << i, the first block strided stride[i]);
 * avgpool = AdaptiveAvgPool2d(1); flatten; fc. */
typedef struct {
    bool bottleneck;
    int blocks[4];
    int64_t planes[4];
    int stride[4];
    NnResNetConv stem; /* 7x7 stride 2, or 3x3 stride 1 with small_input */
    bool maxpool;      /* MaxPool2d(3, 2, 1); Identity with small_input */
    int64_t features;  /* fc's in_features: 512 * expansion */
} NnResNetPlan;

/* The plan of resnet18, resnet34 or resnet50 (depth 18, 34, 50); -1 with an
 * error for another depth or in_channels < 1. */
int nn_resnet_plan(int depth, int64_t in_channels, bool small_input, NnResNetPlan *plan);
/* torchvision.models.resnet<depth>(num_classes) with conv1 taking
 * in_channels; small_input: conv1 = 3x3 stride 1 padding 1 and maxpool =
 * Identity (the CIFAR stem), same state_dict keys. */
Module *nn_resnet(int depth, int64_t num_classes, int64_t in_channels, bool small_input,
                  Rng *rng);

/* ---- PyTorch's default initialisation (core/nn/init.c) ---- */
/* fan_in of a weight: size(1) * receptive field (in_features, or
 * in_channels * kh * kw). */
int64_t nn_init_fan_in(const Tensor *weight);
/* nn.init.uniform_(t, lo, hi) from rng. */
int nn_init_uniform_(Tensor *t, double lo, double hi, Rng *rng);
/* nn.init.normal_(t, mean, std) from rng. */
int nn_init_normal_(Tensor *t, double mean, double std, Rng *rng);
/* nn.init.kaiming_normal_(t, mode='fan_out', nonlinearity='relu'), as
 * torchvision's ResNet initialises its convolutions: std = sqrt(2 / fan_out),
 * fan_out = size(0) * receptive field. */
int nn_init_kaiming_normal_fan_out_(Tensor *t, Rng *rng);
/* nn.init.kaiming_uniform_(t, a, mode='fan_in', nonlinearity='leaky_relu'):
 * bound = sqrt(6 / ((1 + a^2) * fan_in)). */
int nn_init_kaiming_uniform_(Tensor *t, double a, Rng *rng);
/* reset_parameters() of Linear and Conv2d: weight kaiming_uniform_(a=sqrt(5)),
 * i.e. bound 1/sqrt(fan_in); bias (may be NULL) uniform(+-1/sqrt(fan_in)). */
int nn_init_linear_like(Tensor *weight, Tensor *bias, Rng *rng);

#endif
