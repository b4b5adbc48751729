/* backend.h - the per-device kernel table.
 *
 * Every op in core/ops is written once: it checks shapes, allocates outputs,
 * records autograd, and calls the kernels of backend_for(tensor->device). A
 * backend (core/cpu for the CPU with OpenBLAS, gpu/ for CUDA with cuBLAS) is
 * a table of function pointers, as ggml's backends are.
 *
 * Kernel contract, unless a kernel says otherwise:
 *  - all tensors live on the backend's device and have a float dtype
 *    (float32 or float64) that is the same for every argument;
 *  - outputs are freshly allocated, contiguous, and of the right shape;
 *  - inputs are contiguous.
 * Kernels do not fail on valid arguments; the op layer validates first.
 * Only memory allocation may fail (returns NULL).
 */
#ifndef TRAIND_CORE_BACKEND_H
#define TRAIND_CORE_BACKEND_H

#include "core/optim/update_consts.h"
#include "core/tensor.h"

typedef enum {
    BINARY_ADD,
    BINARY_SUB,
    BINARY_MUL,
    BINARY_DIV,
    BINARY_POW,   /* a ** b */
    BINARY_MAX,   /* elementwise max */
    BINARY_GT,    /* a > b ? 1 : 0 */
    BINARY_EQ,    /* a == b ? 1 : 0 */
} BinaryOp;

typedef enum {
    UNARY_NEG,
    UNARY_EXP,
    UNARY_LOG,
    UNARY_SQRT,
    UNARY_ABS,
    UNARY_SIGN,
    UNARY_RELU,
    UNARY_SIGMOID,
    UNARY_TANH,
    UNARY_POW,        /* x ** alpha */
    UNARY_MUL_SCALAR, /* x * alpha */
    UNARY_ADD_SCALAR, /* x + alpha */
    UNARY_RSUB_SCALAR,/* alpha - x */
    UNARY_RDIV_SCALAR,/* alpha / x */
    UNARY_GT_SCALAR,  /* x > alpha ? 1 : 0 */
    UNARY_CLAMP_MIN,  /* max(x, alpha) */
    UNARY_CLAMP_MAX,  /* min(x, alpha) */
    UNARY_GELU,       /* x * Phi(x), the exact (erf) form */
    UNARY_GELU_TANH,  /* GELU's tanh approximation */
    UNARY_SILU,       /* x * sigmoid(x) */
    UNARY_LEAKY_RELU, /* x > 0 ? x : alpha * x */
} UnaryOp;

/* One parameter's part in a fused optimizer update (see the Backend's
 * sgd_update / adam_update). */
typedef struct {
    Tensor *param;
    const Tensor *grad;    /* contiguous; the param's shape, dtype and device */
    Tensor *state[3];      /* SGD: momentum_buffer (NULL while momentum == 0);
                              Adam: exp_avg, exp_avg_sq, max_exp_avg_sq (NULL
                              unless amsgrad) */
    const double *consts;  /* SGD_CONSTS or ADAM_CONSTS numbers in the
                              param's device memory */
} OptimUpdate;

/* A causal attention's scale (1 / sqrt(D)) and its dropout on the
 * probabilities: with dropout p > 0, probability (h, i, j) of head h (of
 * BH), query i and key j is kept, scaled by 1 / (1 - p), when number
 * offset + (h * T + i) * T + j of the counter-based stream `seed` is >= p
 * (the stream tensor_dropout draws from), so CPU and GPU drop the same.
 * A rank of a data-parallel job holds only some samples of the global
 * batch: with heads > 0, head h's numbers start at offset + (h / heads) *
 * sample_stride + (h % heads) T T instead (attention_dropout_base), so
 * each sample keeps the mask of its global position. With offset_base
 * (device memory), offset is moved on by its value when the kernels run,
 * as the uniform entry's. */
typedef struct {
    double scale, dropout;
    uint64_t seed, offset;
    int64_t heads;          /* per sample; 0: samples contiguous in the stream */
    uint64_t sample_stride; /* numbers between one local sample and the next */
    const uint64_t *offset_base; /* or NULL */
} AttentionArgs;

static inline uint64_t attention_dropout_base(const AttentionArgs *a, int64_t h, int64_t t) {
    uint64_t tt = (uint64_t)(t * t);
    uint64_t offset = a->offset + (a->offset_base ? *a->offset_base : 0);
    if (a->heads <= 0) return offset + (uint64_t)h * tt;
    return offset + (uint64_t)(h / a->heads) * a->sample_stride + (uint64_t)(h % a->heads) * tt;
}

/* The precision a job's convolutions and matrix products compute in
 * (the job spec's "precision"): float32, or bf16 inputs with float32
 * accumulation and float32 results. */
typedef enum { PRECISION_FLOAT32, PRECISION_BF16 } Precision;
const char *precision_name(Precision p); /* "float32", "bf16" */

/* Geometry of a 2-d convolution or pooling window over [N, C, H, W]. */
typedef struct {
    int64_t batch, channels, height, width;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
    int64_t out_h, out_w;
} Window2d;

/* Conv2d -> ReLU -> MaxPool2d, run as one (tensor_conv2d_relu_max_pool2d):
 * the convolution's window over x, its output channels and groups, and
 * the pooling window over the convolution's output. x_blocked / out_blocked:
 * x and its gradient / out and its gradient hold the backend's blocked
 * layout of [N, C, H, W] (the CPU's nChw16c, as many bytes as NCHW), which
 * only these blocks read: between two blocks in a row
 * (tensor_conv2d_relu_max_pool2d_chain). */
typedef struct {
    Window2d conv;
    int64_t out_channels;
    int groups;
    bool bias;
    Window2d pool;
    bool x_blocked, out_blocked;
} ConvReluPool;

typedef struct Backend {
    const char *name;
    /* Whether conv2d's entries and the channel passes take tensors like x
     * (its dtype) in the blocked layout (core/ops.h's TENSOR_BLOCK: the
     * convolution library's own, so no reorder runs between the ops);
     * NULL or false: the ops put them through NCHW. */
    bool (*blocked_layout)(const Tensor *x);

    /* ---- memory ---- */
    void *(*alloc)(Device device, size_t nbytes); /* NULL on out-of-memory */
    void (*free)(Device device, void *ptr);
    /* Host <-> device byte copies (memcpy on the CPU). */
    int (*to_host)(Device device, void *host_dst, const void *src, size_t nbytes);
    int (*from_host)(Device device, void *dst, const void *host_src, size_t nbytes);
    /* Page-locked host memory that this device copies from at full speed
     * (tensor_empty_pinned); host_alloc returns NULL when none can be had.
     * NULL entries where there is no such thing (the CPU). */
    void *(*host_alloc)(Device device, size_t nbytes);
    void (*host_free)(Device device, void *ptr);
    /* from_host for a background thread (the DataLoader's prefetch): the copy
     * runs beside the kernels other threads have queued, not after them, and
     * is complete on return. NULL where from_host already is that (the CPU). */
    int (*from_host_beside)(Device device, void *dst, const void *host_src, size_t nbytes);
    /* from_host queued behind the work this thread has queued so far,
     * without waiting for it; host_src may be reused on return. Refused
     * while capturing a graph, which would keep the bytes of the capture.
     * NULL where from_host already is that (the CPU). */
    int (*from_host_queued)(Device device, void *dst, const void *host_src, size_t nbytes);

    /* ---- the device itself ---- */
    /* Its model name (NUL-terminated in n bytes) and memory: bytes in all
     * and bytes free now. -1 with an error when it cannot be read. */
    int (*device_info)(Device device, char *name, size_t n, uint64_t *mem_total,
                       uint64_t *mem_free);
    /* Bytes its tensors hold now and the most they held since the last
     * reset: the caching allocator's own count, for a job's
     * peak_memory_bytes metric. NULL where not tracked (the CPU). */
    void (*memory_stats)(Device device, uint64_t *in_use, uint64_t *peak);
    void (*memory_reset_peak)(Device device);
    /* CUDA graphs (core/train_graph.c): from graph_capture_begin to
     * graph_capture_end, this thread's kernels on the device are recorded,
     * not run, into memory the graph keeps; a call that would wait for the
     * device or read a result back fails the capture. capture_end returns
     * the graph (NULL with an error saying why the capture failed; the
     * thread is back to running kernels either way); graph_launch queues a
     * replay after the work queued so far, graph_free waits for the device
     * and frees it. NULL entries where there are no graphs (the CPU). */
    int (*graph_capture_begin)(Device device);
    void *(*graph_capture_end)(Device device);
    int (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);
    /* Copies n blocks of device memory (src[i], nbytes[i]) to host memory
     * (dst[i], page-locked: tensor_empty_pinned) after the work queued so
     * far, without waiting: a handle for read_end, which waits for them
     * and, like to_host, reports a failure of anything queued before (-1
     * with an error). NULL with an error. NULL entries on the CPU. */
    void *(*read_begin)(Device device, int n, void *const *dst, const void *const *src,
                        const size_t *nbytes);
    int (*read_end)(void *handle);
    /* Forgets a failure recorded on this thread and not yet reported
     * (gpu/gpu.h's sticky error), so that a job does not inherit the last
     * one's. NULL where failures are reported where they happen (CPU). */
    void (*clear_error)(Device device);
    /* TF32 tensor cores for this thread's float32 matrix products on the
     * device, as torch.backends.cuda.matmul.allow_tf32 (off by default).
     * NULL where there are none (the CPU). */
    void (*allow_tf32)(Device device, bool allow);
    /* Whether the device computes in precision p (-1 with an error naming
     * what it lacks), and the precision this thread's ops compute in from
     * now on (p checked). NULL: float32 only. */
    int (*check_precision)(Device device, Precision p);
    void (*set_precision)(Device device, Precision p);

    /* ---- layout ---- */
    /* dst[i] = (dst dtype) src[i] over the logical shape; both any strides and
     * any dtype (all four); same shape. */
    void (*copy)(const Tensor *src, Tensor *dst);
    void (*fill)(Tensor *dst, double value); /* contiguous, any dtype */
    /* Where blocked_layout(from): NCHW [N, C, H, W] into the blocked
     * layout (core/ops.h's TENSOR_BLOCK) when `to` is 5-d, else back; both
     * contiguous (NULL: the ops permute and copy). */
    void (*convert_blocked)(const Tensor *from, Tensor *to);

    /* ---- elementwise ---- */
    /* out = a OP b. a and b have out's shape but any strides (0 where
     * broadcast). */
    void (*binary)(BinaryOp op, const Tensor *a, const Tensor *b, Tensor *out);
    /* out = OP(x, alpha); x and out contiguous, same numel. */
    void (*unary)(UnaryOp op, const Tensor *x, double alpha, Tensor *out);
    /* Elementwise backward of activations, gx = gy * dOP/dx given y = OP(x)
     * and the forward's alpha: RELU, GELU, GELU_TANH, SILU and LEAKY_RELU
     * use x, SIGMOID and TANH use y. */
    void (*unary_backward)(UnaryOp op, const Tensor *x, const Tensor *y, double alpha,
                           const Tensor *gy, Tensor *gx);

    /* ---- reductions ---- */
    /* out keeps x's ndim with size 1 in every reduced dim (keepdim=True);
     * x contiguous. */
    void (*sum)(const Tensor *x, Tensor *out);
    /* Over the last dimension of x [rows, cols]: out float [rows] = max,
     * indices int64 [rows] = argmax (first maximum); either may be NULL. */
    void (*max_last_dim)(const Tensor *x, Tensor *out, Tensor *indices);

    /* ---- matrix products ---- */
    /* C = alpha * op(A) @ op(B) + beta * C, row-major, on raw device
     * pointers; op(X) = X^T when trans_x. lda/ldb/ldc are row strides. */
    void (*gemm)(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                 double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                 double beta, void *c, int64_t ldc);

    /* ---- convolution helpers ---- */
    /* n images [n, C, H, W] -> columns [C*kh*kw, n*L] (L = out_h*out_w):
     * image i fills columns i*L .. i*L+L-1 of every row, and rows lie `ld`
     * elements apart (ld >= n*L), so a batch shares one column matrix and
     * one GEMM. */
    void (*im2col)(DType dtype, const Window2d *w, const void *images, int64_t n, void *columns,
                   int64_t ld);
    /* The adjoint: scatter-adds columns back into n images, which the
     * kernel zeroes first. */
    void (*col2im)(DType dtype, const Window2d *w, const void *columns, int64_t ld, int64_t n,
                   void *images);

    /* ---- convolution whole, where a library does it better ---- */
    /* Each returns 0 when done, -1 with an error set, or 1 when it leaves
     * this case (a dtype, a switch) to ops/conv2d.c's im2col + GEMM, as a
     * NULL entry does. All tensors contiguous; weight [O, C/groups, kh, kw].
     *   conv2d:                  out = conv(x, weight) + bias (bias may be NULL)
     *   conv2d_backward_data:    gx = the input gradient from gy
     *   conv2d_backward_weights: gw = the weight gradient, and gb the bias's
     *                            when not NULL (both overwritten) */
    int (*conv2d)(const Window2d *w, int groups, const Tensor *x, const Tensor *weight,
                  const Tensor *bias, Tensor *out);
    /* Where blocked_layout(x), x, out and their gradients in these three
     * may be in the blocked layout: 5-d tensors (core/ops.h's TENSOR_BLOCK). */
    int (*conv2d_backward_data)(const Window2d *w, int groups, const Tensor *weight,
                                const Tensor *gy, Tensor *gx);
    int (*conv2d_backward_weights)(const Window2d *w, int groups, const Tensor *x,
                                   const Tensor *gy, Tensor *gw, Tensor *gb);

    /* ---- max_pool2d(relu(conv2d(x))) at once, where a library keeps its
     * own layout from the convolution through the pooling (the CPU's
     * oneDNN); 1 returned, or NULL: the three ops one by one ---- */
    /* out = the pooled output (contiguous); saved[0..1] become what the
     * backward reads (the ReLU's output and the pooling's argmax, in the
     * library's layouts, as byte tensors). */
    int (*conv2d_relu_max_pool2d)(const ConvReluPool *b, const Tensor *x, const Tensor *weight,
                                  const Tensor *bias, Tensor *out, Tensor **saved);
    /* gx, gw, gb overwritten, each NULL when not wanted; x, weight and
     * saved as the forward had them. */
    int (*conv2d_relu_max_pool2d_backward)(const ConvReluPool *b, const Tensor *x,
                                           const Tensor *weight, Tensor *const *saved,
                                           const Tensor *gy, Tensor *gx, Tensor *gw, Tensor *gb);
    /* Whether the backend runs both blocks at once on x's dtype with
     * `from`'s output handed to `to` in its blocked layout (NULL: never). */
    bool (*conv2d_relu_max_pool2d_chains)(const ConvReluPool *from, const ConvReluPool *to,
                                          const Tensor *x);

    /* ---- pooling over [N, C, H, W] -> [N, C, out_h, out_w] ---- */
    /* indices (int64, same shape as out) record the flat h*W+w argmax. */
    void (*max_pool2d)(const Window2d *w, const Tensor *x, Tensor *out, Tensor *indices);
    void (*max_pool2d_backward)(const Window2d *w, const Tensor *gy, const Tensor *indices,
                                Tensor *gx); /* gx zeroed by the kernel */
    /* Where blocked_layout(x): 2x2 stride-2 max pooling without padding
     * over x in the blocked layout (core/ops.h's TENSOR_BLOCK; an odd last
     * row or column unread), argmax (uint8, out's shape) each window's
     * first maximum in scan order, 0..3, a NaN winning; the backward
     * writes gx whole. NULL: the op pools in NCHW. */
    void (*max_pool2d_2x2_blocked)(const Tensor *x, Tensor *out, Tensor *argmax);
    void (*max_pool2d_2x2_blocked_backward)(const Tensor *argmax, const Tensor *gy, Tensor *gx);
    /* count_include_pad as in torch's default. */
    void (*avg_pool2d)(const Window2d *w, const Tensor *x, Tensor *out);
    void (*avg_pool2d_backward)(const Window2d *w, const Tensor *gy, Tensor *gx);
    /* AdaptiveAvgPool2d: out[oh, ow] is the mean of x over the bins
     * adaptive_span(oh) x adaptive_span(ow) (core/window_span.h); only w's
     * batch, channels, height, width, out_h and out_w are read. The
     * backward spreads each output gradient evenly over its bin, gx zeroed
     * by the kernel. */
    void (*adaptive_avg_pool2d)(const Window2d *w, const Tensor *x, Tensor *out);
    void (*adaptive_avg_pool2d_backward)(const Window2d *w, const Tensor *gy, Tensor *gx);

    /* ---- the class losses' rows: lp [rows, cols] of log-probabilities ---- */
    /* For row i with t = index[i] (int64 [rows]):
     *   loss[i] = -(1 - eps) lp[i, t] - eps / cols * sum_c lp[i, c], weight[i] = 1,
     * the sum skipped when eps = 0; loss[i] = weight[i] = 0 where t == ignore.
     * A t outside [0, cols), not ignored: the CPU's caller has checked them
     * all; a device reads nothing for it and reports it at the next wait
     * (as the embedding's indices). 0, or -1 with an error. */
    int (*class_loss_rows)(const Tensor *lp, const Tensor *index, int64_t ignore, double eps,
                           Tensor *loss, Tensor *weight);
    /* The adjoint: gx[i, c] = -g[i] ((1 - eps) [c == t] + eps / cols), and 0
     * on ignored rows whatever g[i] is (an infinite g from a mean over no
     * rows must not give NaN: torch's gradient there is 0). */
    void (*class_loss_rows_backward)(const Tensor *g, const Tensor *index, int64_t ignore,
                                     double eps, Tensor *gx);

    /* ---- softmax over the last dim of [rows, cols] ---- */
    void (*softmax)(const Tensor *x, Tensor *out, bool log);
    /* gx from y = softmax (or log_softmax) output and gy. */
    void (*softmax_backward)(const Tensor *y, const Tensor *gy, Tensor *gx, bool log);

    /* ---- per channel of [N, C, S] (the channel dim 1, S the product of
     * the dims after it; all contiguous), for batch norm; [C] tensors of
     * u's dtype. lanes 1, or where blocked_layout(u) the blocked layout's
     * (core/ops.h's TENSOR_BLOCK): u [N, C/lanes, S..., lanes], channel
     * c = its block * lanes + its lane (backend_channel_dims) ---- */
    /* out[c] = the sum over n, s of (u - mu[c]) * (v - mv[c]); v NULL reads
     * as 1, mu and mv NULL as 0. In double, in an order that does not
     * depend on thread counts or scheduling. */
    void (*channel_sum_product)(const Tensor *u, const Tensor *mu, const Tensor *v,
                                const Tensor *mv, int64_t lanes, Tensor *out);
    /* out = a[c] * u + b[c] * (v - m[c]) + d[c]: v, m and b all given or
     * all NULL (no middle term); d NULL reads as 0. out may be u. */
    void (*channel_affine)(const Tensor *u, const Tensor *a, const Tensor *v, const Tensor *m,
                           const Tensor *b, const Tensor *d, int64_t lanes, Tensor *out);

    /* ---- layer normalisation over the last dim of x [rows, cols] ---- */
    /* y = (x - mean) * rstd * weight + bias per row, with the biased
     * variance and rstd = 1 / sqrt(var + eps); weight and bias [cols], each
     * may be NULL. Saves mean and rstd [rows] (x's dtype) for backward. */
    void (*layer_norm)(const Tensor *x, const Tensor *weight, const Tensor *bias, double eps,
                       Tensor *y, Tensor *mean, Tensor *rstd);
    /* From x, the saved mean and rstd, weight (or NULL) and gy [rows,
     * cols]: gx [rows, cols], gweight = sum over rows of gy * xhat and
     * gbias = sum over rows of gy ([cols]); each output may be NULL when
     * not wanted. `partial` is float64 scratch [2, chunks, cols] (chunks =
     * layer_norm_chunks(rows)) when gweight or gbias is wanted, else NULL:
     * the column sums go chunk by chunk of rows, then the chunks' partial
     * sums are added in order, so results do not depend on thread counts. */
    void (*layer_norm_backward)(const Tensor *x, const Tensor *weight, const Tensor *mean,
                                const Tensor *rstd, const Tensor *gy, Tensor *gx,
                                Tensor *gweight, Tensor *gbias, Tensor *partial);

    /* ---- embedding: rows of weight [V, D] picked by int64 index [N] ---- */
    /* out [N, D]: out[n] = weight[index[n]]; index is contiguous int64. An
     * index outside [0, V): -1 with an error naming the first (the CPU,
     * before it copies a row), or, where the kernel checks as it reads (a
     * GPU), zeros in its row and the error at the thread's next read of a
     * result (to_host, read_end): a queued kernel cannot fail its op. */
    int (*embedding)(const Tensor *weight, const Tensor *index, Tensor *out);
    /* The adjoint: gweight [V, D] zeroed by the kernel, then
     * gweight[index[n]] += gy[n] for every n. */
    void (*embedding_backward)(const Tensor *gy, const Tensor *index, Tensor *gweight);

    /* ---- causal attention over q, k, v [BH, T, D], D <= ATTENTION_MAX_HEAD_DIM ---- */
    /* out = dropout(softmax(q k^T * scale + causal mask)) v, and lse [BH, T]
     * the logsumexp of each row's scaled, masked scores, for the backward. */
    void (*causal_attention)(const Tensor *q, const Tensor *k, const Tensor *v,
                             const AttentionArgs *args, Tensor *out, Tensor *lse);
    /* gq, gk, gv [BH, T, D] from the forward's q, k, v, out, lse and gout,
     * recomputing the probabilities (FlashAttention-2's backward); delta
     * [BH, T] is scratch for rowsum(gout * out). */
    void (*causal_attention_backward)(const Tensor *q, const Tensor *k, const Tensor *v,
                                      const Tensor *out, const Tensor *lse, const Tensor *gout,
                                      const AttentionArgs *args, Tensor *delta, Tensor *gq,
                                      Tensor *gk, Tensor *gv);

    /* ---- random ---- */
    /* out[i] = uniform [0, 1) from a counter-based stream (seed, offset), so
     * CPU and GPU draw the same numbers for the same (seed, offset). With
     * `base` (device memory, or NULL), offset is moved on by the uint64 it
     * holds when the kernel runs: a CUDA graph's replays draw new numbers
     * that way (core/rng.h's Rng.device_base). */
    void (*uniform)(Tensor *out, uint64_t seed, uint64_t offset, const uint64_t *base);

    /* ---- optimizer updates, fused ---- */
    /* n parameters of one dtype updated at once, each over its flat
     * contiguous buffers: on a GPU one kernel launch for all of them (as
     * torch's fused optimizers apply one kernel to a list of tensors).
     * core/optim/sgd.c and adam.c give the exact PyTorch semantics. */
    void (*sgd_update)(int n, const OptimUpdate *u);
    /* Adam / AdamW (ADAM_DECAY != 1), each parameter at its own step. */
    void (*adam_update)(int n, const OptimUpdate *u);
} Backend;

/* Row chunks of layer_norm_backward: 64 rows or more each, at most 256 of
 * them (enough to spread over the cores of a CPU or the SMs of a GPU). */
static inline int64_t layer_norm_chunks(int64_t rows) {
    int64_t chunks = (rows + 63) / 64;
    return chunks < 1 ? 1 : chunks > 256 ? 256 : chunks;
}

/* The widest attention head the kernels take: a GPU warp keeps a row of
 * q, out and their gradients in registers, 4 elements a lane. */
#define ATTENTION_MAX_HEAD_DIM 128

/* The backend for a device; NULL with an error when none is compiled in or
 * the device does not exist. */
const Backend *backend_for(Device device);
/* 0 when `device` computes in precision p, else -1 with the reason ("bf16
 * is not available on cuda:0, ..."): the daemon's check at submission and
 * the trainer's at its start. */
int backend_check_precision(Device device, Precision p);

/* Whether w is a 2x2 window at stride 2, unpadded and undilated: each
 * output from its own 2x2 block, the case pooling's fast kernels take. */
bool backend_window2d_2x2(const Window2d *w);

/* [N, C, S] of a tensor whose dim 1 is the channel (S the product of the
 * dims after it), or with lanes > 1 of the blocked [N, C/lanes, S...,
 * lanes] (C counts every lane): the channel passes' view of x. */
void backend_channel_dims(const Tensor *t, int64_t lanes, int64_t *n, int64_t *c, int64_t *s);

/* Registered by gpu/ at start-up when built with CUDA. */
void backend_register_cuda(const Backend *cuda, int device_count);
int backend_cuda_device_count(void);

/* The CPU backend (core/cpu/backend.c). */
extern const Backend cpu_backend;

#endif
