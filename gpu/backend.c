/* backend.c - the CUDA backend table: unpacks Tensors into device pointers,
 * shapes and strides and calls the launchers of gpu/kernels.h.
 *
 * This file is C (and the kernels C++) because core/tensor.h uses
 * <stdatomic.h>, which nvcc's C++ cannot include; so the .cu files never
 * see a Tensor, only the plain types of gpu/kernels.h.
 *
 * Every kernel first makes the tensor's device current for the thread.
 * gemm, im2col and col2im get raw pointers and no device: they run on the
 * thread's current device, which is the one of the op's tensors, since the
 * op layer has just allocated its output there (alloc selects the device).
 * Failures of the asynchronous kernels stay in gpu/'s sticky error until
 * to_host, the synchronising copy, reports them (see gpu/gpu.h).
 */
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "gpu/conv_cudnn.h"
#include "gpu/gpu.h"
#include "gpu/kernels.h"

_Static_assert((int)DTYPE_FLOAT32 == (int)GPU_F32 && (int)DTYPE_FLOAT64 == (int)GPU_F64 && (int)DTYPE_INT64 == (int)GPU_I64 &&
                   (int)DTYPE_UINT8 == (int)GPU_U8,
               "gpu/kernels.h dtype codes follow core's DType");
_Static_assert((int)BINARY_ADD == (int)GPU_BIN_ADD && (int)BINARY_SUB == (int)GPU_BIN_SUB &&
                   (int)BINARY_MUL == (int)GPU_BIN_MUL && (int)BINARY_DIV == (int)GPU_BIN_DIV &&
                   (int)BINARY_POW == (int)GPU_BIN_POW && (int)BINARY_MAX == (int)GPU_BIN_MAX &&
                   (int)BINARY_GT == (int)GPU_BIN_GT && (int)BINARY_EQ == (int)GPU_BIN_EQ,
               "gpu/kernels.h binary op codes follow BinaryOp");
_Static_assert((int)UNARY_NEG == (int)GPU_UN_NEG && (int)UNARY_EXP == (int)GPU_UN_EXP && (int)UNARY_LOG == (int)GPU_UN_LOG &&
                   (int)UNARY_SQRT == (int)GPU_UN_SQRT && (int)UNARY_ABS == (int)GPU_UN_ABS &&
                   (int)UNARY_SIGN == (int)GPU_UN_SIGN && (int)UNARY_RELU == (int)GPU_UN_RELU &&
                   (int)UNARY_SIGMOID == (int)GPU_UN_SIGMOID && (int)UNARY_TANH == (int)GPU_UN_TANH &&
                   (int)UNARY_POW == (int)GPU_UN_POW && (int)UNARY_MUL_SCALAR == (int)GPU_UN_MUL_SCALAR &&
                   (int)UNARY_ADD_SCALAR == (int)GPU_UN_ADD_SCALAR &&
                   (int)UNARY_RSUB_SCALAR == (int)GPU_UN_RSUB_SCALAR &&
                   (int)UNARY_RDIV_SCALAR == (int)GPU_UN_RDIV_SCALAR &&
                   (int)UNARY_GT_SCALAR == (int)GPU_UN_GT_SCALAR && (int)UNARY_CLAMP_MIN == (int)GPU_UN_CLAMP_MIN &&
                   (int)UNARY_CLAMP_MAX == (int)GPU_UN_CLAMP_MAX &&
                   (int)UNARY_GELU == (int)GPU_UN_GELU &&
                   (int)UNARY_GELU_TANH == (int)GPU_UN_GELU_TANH &&
                   (int)UNARY_SILU == (int)GPU_UN_SILU &&
                   (int)UNARY_LEAKY_RELU == (int)GPU_UN_LEAKY_RELU,
               "gpu/kernels.h unary op codes follow UnaryOp");
_Static_assert(sizeof(GpuWindow) == sizeof(Window2d) && GPU_MAX_DIMS == TENSOR_MAX_DIMS,
               "GpuWindow mirrors Window2d");

static GpuView view_of(const Tensor *t) {
    GpuView v;
    memset(&v, 0, sizeof v);
    v.ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        v.shape[d] = t->shape[d];
        v.stride[d] = t->strides[d];
    }
    return v;
}

static GpuWindow window_of(const Window2d *w) {
    GpuWindow g;
    memcpy(&g, w, sizeof g);
    return g;
}

static void use(const Tensor *t) { gpu_use_device(t->device.index); }

static void rows_cols(const Tensor *x, int64_t *rows, int64_t *cols) {
    *cols = x->ndim > 0 ? x->shape[x->ndim - 1] : 1;
    *rows = *cols > 0 ? tensor_numel(x) / *cols : 0;
}

/* ---- memory ---- */

static void *cuda_alloc(Device device, size_t nbytes) {
    return gpu_alloc_bytes(device.index, nbytes);
}

static void cuda_free(Device device, void *ptr) { gpu_free_bytes(device.index, ptr); }

/* Moves the sticky CUDA error into core's error message. */
static int report(void) {
    const char *e = gpu_last_error();
    error_set("%s", e ? e : "cuda: unknown failure");
    gpu_clear_error();
    return -1;
}

static int cuda_to_host(Device device, void *host_dst, const void *src, size_t nbytes) {
    return gpu_memcpy_to_host(device.index, host_dst, src, nbytes) == 0 ? 0 : report();
}

static int cuda_from_host(Device device, void *dst, const void *host_src, size_t nbytes) {
    return gpu_memcpy_from_host(device.index, dst, host_src, nbytes) == 0 ? 0 : report();
}

static void *cuda_host_alloc(Device device, size_t nbytes) {
    /* portable buffers serve every device; the device is made current so
     * that a fresh thread does not start cuda:0's context for them */
    gpu_use_device(device.index);
    return gpu_pinned_alloc(nbytes);
}

static void cuda_host_free(Device device, void *ptr) {
    (void)device;
    gpu_pinned_free(ptr);
}

static int cuda_from_host_beside(Device device, void *dst, const void *host_src, size_t nbytes) {
    return gpu_memcpy_from_host_beside(device.index, dst, host_src, nbytes) == 0 ? 0 : report();
}

static int cuda_from_host_queued(Device device, void *dst, const void *host_src, size_t nbytes) {
    return gpu_memcpy_from_host_queued(device.index, dst, host_src, nbytes) == 0 ? 0 : report();
}

/* ---- layout ---- */

static void cuda_copy(const Tensor *src, Tensor *dst) {
    use(dst);
    gpu_launch_copy(tensor_data(src), (int)src->dtype, view_of(src), tensor_data(dst),
                    (int)dst->dtype, view_of(dst), tensor_numel(dst));
}

static void cuda_fill(Tensor *dst, double value) {
    use(dst);
    gpu_launch_fill(tensor_data(dst), (int)dst->dtype, tensor_numel(dst), value);
}

/* ---- elementwise ---- */

static void cuda_binary(BinaryOp op, const Tensor *a, const Tensor *b, Tensor *out) {
    use(out);
    gpu_launch_binary((int)op, (int)out->dtype, tensor_data(a), view_of(a), tensor_data(b),
                      view_of(b), tensor_data(out), tensor_numel(out));
}

static void cuda_unary(UnaryOp op, const Tensor *x, double alpha, Tensor *out) {
    use(out);
    gpu_launch_unary((int)op, (int)out->dtype, tensor_data(x), alpha, tensor_data(out),
                     tensor_numel(out));
}

static void cuda_unary_backward(UnaryOp op, const Tensor *x, const Tensor *y, double alpha,
                                const Tensor *gy, Tensor *gx) {
    use(gx);
    gpu_launch_unary_backward((int)op, (int)gx->dtype, x ? tensor_data(x) : NULL,
                              y ? tensor_data(y) : NULL, alpha, tensor_data(gy), tensor_data(gx),
                              tensor_numel(gx));
}

/* ---- reductions ---- */

static void cuda_sum(const Tensor *x, Tensor *out) {
    use(out);
    if (tensor_numel(x) == 0) { /* an empty sum is 0 */
        gpu_launch_fill(tensor_data(out), (int)out->dtype, tensor_numel(out), 0.0);
        return;
    }
    /* x is contiguous: split its dims (outermost first, size-1 dims
     * dropped) into kept and reduced ones with their strides. */
    int nk = 0, nr = 0;
    int64_t ks[TENSOR_MAX_DIMS], kst[TENSOR_MAX_DIMS], rs[TENSOR_MAX_DIMS], rst[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS], s = 1, nred = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= x->shape[d];
    }
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) continue;
        if (out->shape[d] == 1) {
            rs[nr] = x->shape[d];
            rst[nr++] = stride[d];
            nred *= x->shape[d];
        } else {
            ks[nk] = x->shape[d];
            kst[nk++] = stride[d];
        }
    }
    gpu_launch_sum((int)x->dtype, tensor_data(x), nk, ks, kst, nr, rs, rst, tensor_data(out),
                   tensor_numel(out), nred);
}

static void cuda_max_last_dim(const Tensor *x, Tensor *out, Tensor *indices) {
    use(x);
    int64_t rows, cols;
    rows_cols(x, &rows, &cols);
    gpu_launch_max_last_dim((int)x->dtype, tensor_data(x), rows, cols,
                            out ? tensor_data(out) : NULL,
                            indices ? (int64_t *)tensor_data(indices) : NULL);
}

static int cuda_class_loss_rows(const Tensor *lp, const Tensor *index, int64_t ignore,
                                double eps, Tensor *loss, Tensor *weight) {
    use(lp);
    GpuIndexCheck check;
    if (gpu_index_check_args(lp->device.index, GPU_INDEX_CLASS_TARGET, &check) != 0)
        return report();
    gpu_launch_class_loss_rows((int)lp->dtype, tensor_data(lp), tensor_data(index), ignore, eps,
                               tensor_data(loss), tensor_data(weight), lp->shape[0], lp->shape[1],
                               check);
    return 0;
}

static void cuda_class_loss_rows_backward(const Tensor *g, const Tensor *index, int64_t ignore,
                                          double eps, Tensor *gx) {
    use(gx);
    gpu_launch_class_loss_rows_backward((int)gx->dtype, tensor_data(g), tensor_data(index),
                                        ignore, eps, tensor_data(gx), gx->shape[0],
                                        gx->shape[1]);
}

/* ---- matrix products and convolution (current device) ---- */

static void cuda_gemm(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                      double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                      double beta, void *c, int64_t ldc) {
    gpu_launch_gemm((int)dtype, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void cuda_im2col(DType dtype, const Window2d *w, const void *images, int64_t n,
                        void *columns, int64_t ld) {
    GpuWindow g = window_of(w);
    gpu_launch_im2col((int)dtype, &g, images, n, columns, ld);
}

static void cuda_col2im(DType dtype, const Window2d *w, const void *columns, int64_t ld,
                        int64_t n, void *images) {
    GpuWindow g = window_of(w);
    gpu_launch_col2im((int)dtype, &g, columns, ld, n, images);
}

/* ---- pooling ---- */

static void cuda_max_pool2d(const Window2d *w, const Tensor *x, Tensor *out, Tensor *indices) {
    use(x);
    GpuWindow g = window_of(w);
    gpu_launch_max_pool2d((int)x->dtype, &g, tensor_data(x), tensor_data(out),
                          tensor_data(indices));
}

static void cuda_max_pool2d_backward(const Window2d *w, const Tensor *gy, const Tensor *indices,
                                     Tensor *gx) {
    use(gx);
    GpuWindow g = window_of(w);
    gpu_launch_max_pool2d_backward((int)gy->dtype, &g, tensor_data(gy), tensor_data(indices),
                                   tensor_data(gx));
}

static void cuda_avg_pool2d(const Window2d *w, const Tensor *x, Tensor *out) {
    use(x);
    GpuWindow g = window_of(w);
    gpu_launch_avg_pool2d((int)x->dtype, &g, tensor_data(x), tensor_data(out));
}

static void cuda_avg_pool2d_backward(const Window2d *w, const Tensor *gy, Tensor *gx) {
    use(gx);
    GpuWindow g = window_of(w);
    gpu_launch_avg_pool2d_backward((int)gy->dtype, &g, tensor_data(gy), tensor_data(gx));
}

static void cuda_adaptive_avg_pool2d(const Window2d *w, const Tensor *x, Tensor *out) {
    use(x);
    GpuWindow g = window_of(w);
    gpu_launch_adaptive_avg_pool2d((int)x->dtype, &g, tensor_data(x), tensor_data(out));
}

static void cuda_adaptive_avg_pool2d_backward(const Window2d *w, const Tensor *gy, Tensor *gx) {
    use(gx);
    GpuWindow g = window_of(w);
    gpu_launch_adaptive_avg_pool2d_backward((int)gy->dtype, &g, tensor_data(gy),
                                            tensor_data(gx));
}

/* ---- softmax ---- */

static void cuda_softmax(const Tensor *x, Tensor *out, bool log) {
    use(x);
    int64_t rows, cols;
    rows_cols(x, &rows, &cols);
    gpu_launch_softmax((int)x->dtype, tensor_data(x), tensor_data(out), rows, cols, log);
}

static void cuda_softmax_backward(const Tensor *y, const Tensor *gy, Tensor *gx, bool log) {
    use(gx);
    int64_t rows, cols;
    rows_cols(y, &rows, &cols);
    gpu_launch_softmax_backward((int)y->dtype, tensor_data(y), tensor_data(gy), tensor_data(gx),
                                rows, cols, log);
}

/* ---- layer norm ---- */

static void *data_or_null(const Tensor *t) { return t ? tensor_data(t) : NULL; }

/* The blocked layout is the CPU's (blocked_layout false): lanes is 1. */
static bool plain_lanes(int64_t lanes) {
    if (lanes == 1) return true;
    gpu_record_msg("the blocked layout is not run on the GPU", "channel pass");
    return false;
}

static void cuda_channel_sum_product(const Tensor *u, const Tensor *mu, const Tensor *v,
                                     const Tensor *mv, int64_t lanes, Tensor *out) {
    use(out);
    if (!plain_lanes(lanes)) return;
    int64_t n, c, s;
    backend_channel_dims(u, 1, &n, &c, &s);
    gpu_launch_channel_sum_product((int)u->dtype, tensor_data(u), data_or_null(mu),
                                   data_or_null(v), data_or_null(mv), tensor_data(out), n, c, s);
}

static void cuda_channel_affine(const Tensor *u, const Tensor *a, const Tensor *v,
                                const Tensor *m, const Tensor *b, const Tensor *d, int64_t lanes,
                                Tensor *out) {
    use(out);
    if (!plain_lanes(lanes)) return;
    int64_t n, c, s;
    backend_channel_dims(u, 1, &n, &c, &s);
    gpu_launch_channel_affine((int)u->dtype, tensor_data(u), tensor_data(a), data_or_null(v),
                              data_or_null(m), data_or_null(b), data_or_null(d),
                              tensor_data(out), n, c, s);
}

static void cuda_layer_norm(const Tensor *x, const Tensor *weight, const Tensor *bias, double eps,
                            Tensor *y, Tensor *mean, Tensor *rstd) {
    use(x);
    int64_t rows, cols;
    rows_cols(x, &rows, &cols);
    gpu_launch_layer_norm((int)x->dtype, tensor_data(x), data_or_null(weight), data_or_null(bias),
                          eps, tensor_data(y), tensor_data(mean), tensor_data(rstd), rows, cols);
}

static void cuda_layer_norm_backward(const Tensor *x, const Tensor *weight, const Tensor *mean,
                                     const Tensor *rstd, const Tensor *gy, Tensor *gx,
                                     Tensor *gweight, Tensor *gbias, Tensor *partial) {
    use(x);
    int64_t rows, cols;
    rows_cols(x, &rows, &cols);
    gpu_launch_layer_norm_backward((int)x->dtype, tensor_data(x), data_or_null(weight),
                                   tensor_data(mean), tensor_data(rstd), tensor_data(gy),
                                   data_or_null(gx), data_or_null(gweight), data_or_null(gbias),
                                   data_or_null(partial), layer_norm_chunks(rows), rows, cols);
}

/* ---- embedding and attention ---- */

_Static_assert(GPU_ATTENTION_MAX_HEAD_DIM == ATTENTION_MAX_HEAD_DIM &&
                   sizeof(GpuAttentionArgs) == sizeof(AttentionArgs),
               "gpu/kernels.h's attention limit and arguments are core/backend.h's");

static GpuAttentionArgs attention_args(const AttentionArgs *a) {
    return (GpuAttentionArgs){a->scale, a->dropout,       a->seed,       a->offset,
                              a->heads, a->sample_stride, a->offset_base};
}

static int cuda_embedding(const Tensor *weight, const Tensor *index, Tensor *out) {
    use(weight);
    GpuIndexCheck check;
    if (gpu_index_check_args(weight->device.index, GPU_INDEX_EMBEDDING, &check) != 0)
        return report();
    gpu_launch_embedding((int)weight->dtype, tensor_data(weight), tensor_data(index),
                         tensor_data(out), tensor_numel(index), weight->shape[0],
                         weight->shape[1], check);
    return 0;
}

static void cuda_embedding_backward(const Tensor *gy, const Tensor *index, Tensor *gweight) {
    use(gweight);
    gpu_launch_embedding_backward((int)gweight->dtype, tensor_data(gy), tensor_data(index),
                                  tensor_data(gweight), tensor_numel(index), gweight->shape[0],
                                  gweight->shape[1]);
}

static void cuda_causal_attention(const Tensor *q, const Tensor *k, const Tensor *v,
                                  const AttentionArgs *args, Tensor *out, Tensor *lse) {
    use(q);
    gpu_launch_causal_attention((int)q->dtype, tensor_data(q), tensor_data(k), tensor_data(v),
                                tensor_data(out), tensor_data(lse), q->shape[0], q->shape[1],
                                q->shape[2], attention_args(args));
}

static void cuda_causal_attention_backward(const Tensor *q, const Tensor *k, const Tensor *v,
                                           const Tensor *out, const Tensor *lse,
                                           const Tensor *gout, const AttentionArgs *args,
                                           Tensor *delta, Tensor *gq, Tensor *gk, Tensor *gv) {
    use(q);
    gpu_launch_causal_attention_backward(
        (int)q->dtype, tensor_data(q), tensor_data(k), tensor_data(v), tensor_data(out),
        tensor_data(lse), tensor_data(gout), tensor_data(delta), tensor_data(gq),
        tensor_data(gk), tensor_data(gv), q->shape[0], q->shape[1], q->shape[2],
        attention_args(args));
}

/* ---- random ---- */

static void cuda_uniform(Tensor *out, uint64_t seed, uint64_t offset, const uint64_t *base) {
    use(out);
    gpu_launch_uniform((int)out->dtype, tensor_data(out), tensor_numel(out), seed, offset, base);
}

/* ---- optimizers ---- */

/* The list as raw pointers for the launcher; NULL (the failure recorded
 * as the sticky error) when there is no memory for it. */
static GpuOptimTensor *optim_list(int n, const OptimUpdate *u) {
    GpuOptimTensor *t = calloc((size_t)(n > 0 ? n : 1), sizeof *t);
    if (!t) {
        gpu_record_msg("out of memory for the optimizer's list of tensors", "optimizer update");
        return NULL;
    }
    for (int k = 0; k < n; k++) {
        t[k].param = tensor_data(u[k].param);
        t[k].grad = tensor_data(u[k].grad);
        for (int s = 0; s < 3; s++) t[k].state[s] = u[k].state[s] ? tensor_data(u[k].state[s]) : NULL;
        t[k].n = tensor_numel(u[k].param);
        t[k].consts = u[k].consts;
    }
    return t;
}

static void cuda_sgd_update(int n, const OptimUpdate *u) {
    if (n <= 0) return;
    use(u[0].param);
    GpuOptimTensor *t = optim_list(n, u);
    if (!t) return;
    gpu_launch_sgd((int)u[0].param->dtype, n, t);
    free(t);
}

static void cuda_adam_update(int n, const OptimUpdate *u) {
    if (n <= 0) return;
    use(u[0].param);
    GpuOptimTensor *t = optim_list(n, u);
    if (!t) return;
    gpu_launch_adam((int)u[0].param->dtype, n, t);
    free(t);
}

static int cuda_device_info(Device device, char *name, size_t n, uint64_t *mem_total,
                            uint64_t *mem_free) {
    size_t total = 0, free_ = 0;
    if (gpu_device_info(device.index, name, n, &total, &free_) != 0) return -1; /* error set */
    *mem_total = total;
    *mem_free = free_;
    return 0;
}

static void cuda_memory_stats(Device device, uint64_t *in_use, uint64_t *peak) {
    size_t now = 0, high = 0;
    gpu_allocator_stats(device.index, &now, NULL, &high, NULL);
    *in_use = now;
    *peak = high;
}

static void cuda_memory_reset_peak(Device device) { gpu_allocator_reset_peak(device.index); }

static int cuda_graph_capture_begin(Device device) {
    return gpu_graph_capture_begin(device.index) == 0 ? 0 : report();
}

static void *cuda_graph_capture_end(Device device) {
    void *g = gpu_graph_capture_end(device.index);
    if (!g) report();
    return g;
}

static int cuda_graph_launch(void *graph) { return gpu_graph_launch(graph) == 0 ? 0 : report(); }

static void *cuda_read_begin(Device device, int n, void *const *dst, const void *const *src,
                             const size_t *nbytes) {
    void *h = gpu_read_begin(device.index, n, dst, src, nbytes);
    if (!h) report();
    return h;
}

static int cuda_read_end(void *handle) { return gpu_read_end(handle) == 0 ? 0 : report(); }

static void cuda_clear_error(Device device) {
    (void)device;
    gpu_clear_error();
    gpu_index_check_discard(); /* a bad index recorded and not reported */
}

static void cuda_allow_tf32(Device device, bool allow) {
    (void)device; /* per thread, for every device it uses */
    gpu_set_tf32(allow);
}

/* bf16 needs tensor cores that take it: compute capability 8.0 (Ampere)
 * and later. */
static int cuda_check_precision(Device device, Precision p) {
    if (p == PRECISION_FLOAT32) return 0;
    int cc = gpu_compute_capability(device.index);
    if (cc < 0) return -1; /* error set */
    if (cc < 80)
        return error_set("%s needs a GPU of compute capability 8.0 or later; cuda:%d is %d.%d",
                         precision_name(p), device.index, cc / 10, cc % 10);
    return 0;
}

static void cuda_set_precision(Device device, Precision p) {
    (void)device; /* per thread, as allow_tf32 */
    gpu_set_bf16(p == PRECISION_BF16);
}

static const Backend cuda_backend = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .free = cuda_free,
    .to_host = cuda_to_host,
    .from_host = cuda_from_host,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .from_host_beside = cuda_from_host_beside,
    .from_host_queued = cuda_from_host_queued,
    .device_info = cuda_device_info,
    .memory_stats = cuda_memory_stats,
    .memory_reset_peak = cuda_memory_reset_peak,
    .graph_capture_begin = cuda_graph_capture_begin,
    .graph_capture_end = cuda_graph_capture_end,
    .graph_launch = cuda_graph_launch,
    .graph_free = gpu_graph_free,
    .read_begin = cuda_read_begin,
    .read_end = cuda_read_end,
    .clear_error = cuda_clear_error,
    .allow_tf32 = cuda_allow_tf32,
    .check_precision = cuda_check_precision,
    .set_precision = cuda_set_precision,
    .copy = cuda_copy,
    .fill = cuda_fill,
    .binary = cuda_binary,
    .unary = cuda_unary,
    .unary_backward = cuda_unary_backward,
    .sum = cuda_sum,
    .max_last_dim = cuda_max_last_dim,
    .gemm = cuda_gemm,
    .im2col = cuda_im2col,
    .col2im = cuda_col2im,
    .conv2d = gpu_cudnn_conv2d,
    .conv2d_backward_data = gpu_cudnn_conv2d_backward_data,
    .conv2d_backward_weights = gpu_cudnn_conv2d_backward_weights,
    .max_pool2d = cuda_max_pool2d,
    .max_pool2d_backward = cuda_max_pool2d_backward,
    .avg_pool2d = cuda_avg_pool2d,
    .avg_pool2d_backward = cuda_avg_pool2d_backward,
    .adaptive_avg_pool2d = cuda_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = cuda_adaptive_avg_pool2d_backward,
    .class_loss_rows = cuda_class_loss_rows,
    .class_loss_rows_backward = cuda_class_loss_rows_backward,
    .softmax = cuda_softmax,
    .softmax_backward = cuda_softmax_backward,
    .channel_sum_product = cuda_channel_sum_product,
    .channel_affine = cuda_channel_affine,
    .layer_norm = cuda_layer_norm,
    .layer_norm_backward = cuda_layer_norm_backward,
    .embedding = cuda_embedding,
    .embedding_backward = cuda_embedding_backward,
    .causal_attention = cuda_causal_attention,
    .causal_attention_backward = cuda_causal_attention_backward,
    .uniform = cuda_uniform,
    .sgd_update = cuda_sgd_update,
    .adam_update = cuda_adam_update,
};

int gpu_init(void) {
    int n = gpu_runtime_device_count();
    if (n > GPU_MAX_DEVICES) n = GPU_MAX_DEVICES;
    if (n > 0) backend_register_cuda(&cuda_backend, n);
    return n;
}
