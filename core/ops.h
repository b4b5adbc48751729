/* ops.h - differentiable tensor operations, named as torch names them.
 *
 * Each op validates its arguments (shape and dtype errors name the op and both
 * shapes), allocates its output on the input's device, runs the kernel of
 * backend_for(device), and records an autograd node when an input requires
 * grad. Float ops accept float32 and float64 (float64 for gradient checks);
 * both operands of a binary op must share dtype and device.
 *
 * Every op returns a new reference, or NULL with error_get() set. Passing a
 * NULL input returns NULL and keeps the earlier error.
 *
 * Implementations: core/ops/<concept>.c (elementwise.c, reduce.c, matmul.c,
 * softmax.c, conv2d.c, blocked_layout.c, pool.c, adaptive_pool.c, dropout.c,
 * batch_norm.c, layer_norm.c, embedding.c, attention.c, loss.c).
 */
#ifndef TRAIND_CORE_OPS_H
#define TRAIND_CORE_OPS_H

#include "core/tensor.h"
#include "core/dist/group.h"

/* ---- elementwise with broadcasting (core/ops/elementwise.c) ---- */
Tensor *tensor_add(Tensor *a, Tensor *b);
Tensor *tensor_sub(Tensor *a, Tensor *b);
Tensor *tensor_mul(Tensor *a, Tensor *b);
Tensor *tensor_div(Tensor *a, Tensor *b);
Tensor *tensor_pow(Tensor *a, Tensor *b);          /* a ** b, both differentiable */
Tensor *tensor_pow_scalar(Tensor *a, double exponent);
Tensor *tensor_add_scalar(Tensor *a, double value);
Tensor *tensor_mul_scalar(Tensor *a, double value);
Tensor *tensor_neg(Tensor *a);
Tensor *tensor_exp(Tensor *a);
Tensor *tensor_log(Tensor *a);
Tensor *tensor_sqrt(Tensor *a);
Tensor *tensor_abs(Tensor *a);
Tensor *tensor_relu(Tensor *a);
/* relu(a), consuming the caller's reference to a, as torch's
 * ReLU(inplace=True) without its hazards: when that reference is a's
 * only one and a's memory is its own, a (still the graph's input of the
 * relu) takes the result's memory and gives its own back at once. Nothing
 * reads a's old values any more: a node that did would hold a, and relu's
 * backward reads only their sign, which the result shares. */
Tensor *tensor_relu_consume(Tensor *a);
/* a + b, consuming the caller's references to both; each input its caller
 * alone held, of the sum's shape, takes the sum's memory likewise (add's
 * backward reads no input's values): a residual connection's branch. */
Tensor *tensor_add_consume(Tensor *a, Tensor *b);
Tensor *tensor_sigmoid(Tensor *a);
Tensor *tensor_tanh(Tensor *a);
/* F.gelu(a, approximate='tanh' if approximate_tanh else 'none'), F.silu(a),
 * F.leaky_relu(a, negative_slope) */
Tensor *tensor_gelu(Tensor *a, bool approximate_tanh);
Tensor *tensor_silu(Tensor *a);
Tensor *tensor_leaky_relu(Tensor *a, double negative_slope);
Tensor *tensor_clamp(Tensor *a, double min, double max); /* NAN = no bound */
/* The broadcast shape of a and b, or -1 with "add: shapes [2, 3] and [4]
 * cannot be broadcast". */
int broadcast_shapes(const char *op, int andim, const int64_t *ashape, int bndim,
                     const int64_t *bshape, int *out_ndim, int64_t *out_shape);

/* ---- reductions (core/ops/reduce.c) ---- */
Tensor *tensor_sum(Tensor *a);  /* all elements -> 0-dim */
Tensor *tensor_mean(Tensor *a); /* all elements -> 0-dim */
/* Over `n_dims` dims (negative allowed); keepdim as torch. */
Tensor *tensor_sum_dims(Tensor *a, int n_dims, const int *dims, bool keepdim);
Tensor *tensor_mean_dims(Tensor *a, int n_dims, const int *dims, bool keepdim);
/* Argmax over the last dim of a [rows, cols] tensor: int64 [rows]. No grad. */
Tensor *tensor_argmax_last(Tensor *a);

/* ---- matrix products (core/ops/matmul.c) ---- */
/* torch.matmul for 1-d and 2-d operands and batched [..., n, k] @ [..., k, m]
 * with broadcast batch dims. */
Tensor *tensor_matmul(Tensor *a, Tensor *b);
/* x @ weight^T + bias, as torch.nn.functional.linear; bias may be NULL. */
Tensor *tensor_linear(Tensor *x, Tensor *weight, Tensor *bias);

/* ---- softmax (core/ops/softmax.c) ---- */
Tensor *tensor_softmax(Tensor *a, int dim);
Tensor *tensor_log_softmax(Tensor *a, int dim);

/* ---- convolution and pooling (core/ops/conv2d.c, core/ops/pool.c) ---- */
/* x [N, C, H, W], weight [O, C, kh, kw], bias [O] or NULL; groups = 1. */
Tensor *tensor_conv2d(Tensor *x, Tensor *weight, Tensor *bias, int stride_h, int stride_w,
                      int pad_h, int pad_w);
/* F.conv2d's other arguments: weight [O, C / groups, kh, kw], groups
 * dividing C and O, dilation >= 1. */
typedef struct {
    int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
} Conv2dParams;
/* x may also be in the blocked layout (a 5-d tensor, below); out is
 * [N, O, out_h, out_w], in the blocked layout where out_blocked (O then a
 * multiple of TENSOR_BLOCK). tensor_conv2d_with is out_blocked false. */
Tensor *tensor_conv2d_with(Tensor *x, Tensor *weight, Tensor *bias, const Conv2dParams *p);
Tensor *tensor_conv2d_layout(Tensor *x, Tensor *weight, Tensor *bias, const Conv2dParams *p,
                             bool out_blocked);
/* ---- the blocked layout (core/ops/blocked_layout.c) ----
 * oneDNN's nChw16c as a tensor of its own shape [N, C/16, H, W, 16]:
 * channel c of pixel (h, w) at [n][c / 16][h][w][c % 16]. Elementwise ops
 * take it as any tensor; convolutions and batch norm where told; a ResNet
 * on the CPU runs in it, so no reorder runs between its convolutions. */
/* Whether x's backend runs the layout itself (core/backend.h's
 * blocked_layout); elsewhere the ops put it through NCHW. */
bool tensor_blocked_layout_native(const Tensor *x);
/* The NCHW shape of a blocked shape; -1 with an error naming op when
 * shape is not [N, C/16, H, W, 16]. */
int tensor_blocked_nchw(const char *op, int ndim, const int64_t *shape, int64_t nchw[4]);
/* x's shape as the NCHW ops read it: its own, or where x is 5-d that of
 * the blocked layout it holds (-1 as above where it is not one). */
int tensor_nchw_shape(const char *op, const Tensor *x, int *ndim, int64_t *shape);
/* [N, C, H, W] (C a multiple of 16) -> [N, C/16, H, W, 16], and back;
 * differentiable. */
Tensor *tensor_to_blocked(Tensor *x);
Tensor *tensor_from_blocked(Tensor *x);

/* MaxPool2d's arguments; stride 0 means the kernel size, as torch's None. */
typedef struct {
    int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
} Pool2dParams;
/* max_pool2d(relu(conv2d(x, weight, bias))): a Sequential's Conv2d, ReLU,
 * MaxPool2d in a row as one op. The backend runs the three at once where
 * it can (the CPU's oneDNN keeps its own layout from the convolution to
 * the pooling) and otherwise they run one by one; values and gradients are
 * the three ops' either way. */
Tensor *tensor_conv2d_relu_max_pool2d(Tensor *x, Tensor *weight, Tensor *bias,
                                      const Conv2dParams *cp, const Pool2dParams *pp);
/* Such blocks in a row (a Sequential's), each as tensor_conv2d_relu_max_pool2d
 * runs it, the tensor between two left in the backend's own layout where it
 * runs both at once (the CPU's oneDNN: nChw16c from one convolution to the
 * next, and back in the backward). The last block's output, or NULL with
 * *failed (when not NULL) the index of the block whose error is set. */
typedef struct {
    Tensor *weight, *bias;
    Conv2dParams conv;
    Pool2dParams pool;
} ConvReluPoolArgs;
Tensor *tensor_conv2d_relu_max_pool2d_chain(Tensor *x, int n, const ConvReluPoolArgs *blocks,
                                            int *failed);
/* The im2col path's column scratch per chunk of images (32 MiB unless
 * set; at least one image a chunk); returns the previous value. Tests set
 * it small to run that path's chunks on small tensors. */
int64_t tensor_conv2d_set_scratch_bytes(int64_t bytes);
/* x [N, C, H, W]; stride 0 means stride = kernel, as torch's default. */
Tensor *tensor_max_pool2d(Tensor *x, int kernel_h, int kernel_w, int stride_h, int stride_w,
                          int pad_h, int pad_w);
Tensor *tensor_avg_pool2d(Tensor *x, int kernel_h, int kernel_w, int stride_h, int stride_w,
                          int pad_h, int pad_w);
/* tensor_max_pool2d over x in the blocked layout (5-d, above), out too;
 * on the backend's own kernels where tensor_max_pool2d_2x2 (2x2 windows
 * at stride 2, unpadded; stride 0 the kernel's), else through NCHW. */
Tensor *tensor_max_pool2d_blocked(Tensor *x, int kernel_h, int kernel_w, int stride_h,
                                  int stride_w, int pad_h, int pad_w);
bool tensor_max_pool2d_2x2(const Pool2dParams *p);
/* core/ops/adaptive_pool.c: x [N, C, H, W] -> [N, C, out_h, out_w], each
 * output the mean of its bin, as F.adaptive_avg_pool2d. */
Tensor *tensor_adaptive_avg_pool2d(Tensor *x, int out_h, int out_w);

/* ---- regularisation and normalisation ---- */
/* core/ops/dropout.c: in training, zero with probability p and scale by
 * 1/(1-p); the mask comes from the counter-based stream (seed, offset). */
Tensor *tensor_dropout(Tensor *x, double p, bool training, uint64_t seed, uint64_t offset);
/* The same with row i (dim 0) of the mask drawn from offset + i *
 * row_stride: a data-parallel rank's rows at their global places; with
 * `base` (device memory, or NULL), offset moved on by its value when the
 * kernels run (core/rng.h's Rng.device_base). */
Tensor *tensor_dropout_rows(Tensor *x, double p, bool training, uint64_t seed, uint64_t offset,
                            uint64_t row_stride, const uint64_t *base);
/* core/ops/batch_norm.c: x [N, C] or [N, C, *]; weight/bias [C] or NULL.
 * In training, normalises with the batch statistics and, when running_mean /
 * running_var are given, updates them in place (unbiased variance, as torch);
 * in eval, uses the running statistics. */
Tensor *tensor_batch_norm(Tensor *x, Tensor *running_mean, Tensor *running_var, Tensor *weight,
                          Tensor *bias, bool training, double momentum, double eps);
/* The same as SyncBatchNorm: in training, the statistics of every rank's
 * rows of the batch (a data-parallel group; NULL or one rank: x's own).
 * momentum_t: NULL, or a float64 0-dim tensor on x's device used instead of
 * momentum (BatchNorm's cumulative average, momentum None, whose factor
 * 1 / num_batches_tracked is computed where the count lives). */
Tensor *tensor_batch_norm_sync(Tensor *x, Tensor *running_mean, Tensor *running_var,
                               Tensor *weight, Tensor *bias, bool training, double momentum,
                               const Tensor *momentum_t, double eps, DistGroup *group);
/* tensor_batch_norm_sync over x in the blocked layout (5-d, above). */
Tensor *tensor_batch_norm_blocked(Tensor *x, Tensor *running_mean, Tensor *running_var,
                                  Tensor *weight, Tensor *bias, bool training, double momentum,
                                  const Tensor *momentum_t, double eps, DistGroup *group);
/* core/ops/all_reduce.c: x summed over the group's ranks, differentiable
 * (the backward sums the gradients over the ranks too); x itself, not a
 * copy, without an active group: not to be written in place. */
Tensor *tensor_all_reduce_sum(Tensor *x, DistGroup *group);
/* core/ops/layer_norm.c: over the last normalized_ndim dims of x, which must
 * equal normalized_shape; weight/bias of normalized_shape or NULL. */
Tensor *tensor_layer_norm(Tensor *x, int normalized_ndim, const int64_t *normalized_shape,
                          Tensor *weight, Tensor *bias, double eps);

/* ---- sequences ---- */
/* core/ops/embedding.c: F.embedding(index, weight): weight [V, D], int64
 * index of any shape with values in [0, V) -> [*index.shape, D]. */
Tensor *tensor_embedding(Tensor *weight, Tensor *index);
/* core/ops/attention.c: F.scaled_dot_product_attention(q, k, v,
 * is_causal=True) over q, k, v [B, H, T, D], D <= ATTENTION_MAX_HEAD_DIM
 * (core/backend.h): one fused kernel, no T x T matrix. */
Tensor *tensor_causal_attention(Tensor *q, Tensor *k, Tensor *v);
/* The same with dropout_p = dropout on the probabilities (training only:
 * pass 0 in eval), the mask drawn from the counter-based stream (seed,
 * offset) as tensor_dropout's, B * H * T * T numbers of it. sample_stride
 * 0: sample b's numbers follow sample b-1's; else they start at offset +
 * b * sample_stride (a data-parallel rank's samples, at their global
 * positions). `base` as tensor_dropout_rows's. */
Tensor *tensor_causal_attention_dropout(Tensor *q, Tensor *k, Tensor *v, double dropout,
                                        uint64_t seed, uint64_t offset, uint64_t sample_stride,
                                        const uint64_t *base);

/* ---- losses (core/ops/loss.c); target never requires grad ---- */
typedef enum { REDUCTION_MEAN, REDUCTION_SUM, REDUCTION_NONE } Reduction;
int reduction_parse(const char *name, Reduction *out);
Tensor *tensor_mse_loss(Tensor *input, Tensor *target, Reduction reduction);
Tensor *tensor_l1_loss(Tensor *input, Tensor *target, Reduction reduction);
/* The options of torch.nn.CrossEntropyLoss / NLLLoss. A target equal to
 * ignore_index counts for nothing: its row's loss is 0, its gradient 0, and
 * "mean" divides by the targets that are not ignored (NaN when none is).
 * label_smoothing eps in [0, 1] (cross-entropy only) mixes the one-hot
 * target with the uniform: (1 - eps) one-hot + eps / C. */
typedef struct {
    int64_t ignore_index;
    double label_smoothing;
} ClassLossOptions;
#define CLASS_LOSS_DEFAULTS ((const ClassLossOptions){.ignore_index = -100, .label_smoothing = 0})
/* logits [N, C], target int64 [N] of class indices in [0, C) or ignore_index;
 * the plain forms take CLASS_LOSS_DEFAULTS (torch's). */
Tensor *tensor_cross_entropy(Tensor *logits, Tensor *target, Reduction reduction);
Tensor *tensor_cross_entropy_with(Tensor *logits, Tensor *target, Reduction reduction,
                                  const ClassLossOptions *options);
/* log-probabilities [N, C], target int64 [N]; label_smoothing must be 0. */
Tensor *tensor_nll_loss(Tensor *log_probs, Tensor *target, Reduction reduction);
Tensor *tensor_nll_loss_with(Tensor *log_probs, Tensor *target, Reduction reduction,
                             const ClassLossOptions *options);
/* A sequence model's scores [N, T, C] and class targets [N, T] as rows
 * [N*T, C] and [N*T], as nanoGPT's logits.view(-1, C), targets.view(-1):
 * a class loss or an accuracy then runs over every token. Other shapes
 * come back as they are. Two new references (*rows, *labels), or -1 with
 * an error and both NULL. */
int tensor_tokens_as_rows(Tensor *scores, Tensor *target, Tensor **rows, Tensor **labels);
/* probabilities in [0, 1] and targets of the same shape; log clamped at -100
 * as torch does. */
Tensor *tensor_bce_loss(Tensor *input, Tensor *target, Reduction reduction);
Tensor *tensor_bce_with_logits(Tensor *logits, Tensor *target, Reduction reduction);

#endif
