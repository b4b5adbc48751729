/* kernels.h - the CUDA backend's launchers, in plain C types.
 *
 * core/tensor.h uses <stdatomic.h>, which C++ (and so nvcc) cannot include,
 * so the split is: gpu/backend.c (C) unpacks Tensors into raw device
 * pointers, shapes and strides, and calls these extern "C" launchers, which
 * live in the .cu files of gpu/ and gpu/kernels/ and never see a Tensor.
 *
 * Every launcher runs on the calling thread's current device (gpu_use_device)
 * and stream (gpu/stream.h: the legacy default stream unless the thread
 * captures a CUDA graph), returns without synchronising, and records a
 * failed launch in the sticky error of gpu/runtime.cu (gpu_last_error).
 * dtype is core's DType as an int: GPU_F32, GPU_F64, GPU_I64, GPU_U8.
 */
#ifndef TRAIND_GPU_KERNELS_H
#define TRAIND_GPU_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { GPU_F32 = 0, GPU_F64 = 1, GPU_I64 = 2, GPU_U8 = 3 };

/* cuda:0 .. cuda:63, as device_parse accepts */
#define GPU_MAX_DEVICES 64
/* bytes of workspace each device's cuBLAS handle gets (kernels/gemm.cu):
 * what cuBLAS's guide recommends for Hopper (4 MiB for older GPUs) */
#define GPU_CUBLAS_WORKSPACE ((size_t)32 << 20)
#define GPU_MAX_DIMS 8

/* BinaryOp and UnaryOp of core/backend.h, value for value (checked by
 * static asserts in gpu/backend.c). */
enum {
    GPU_BIN_ADD, GPU_BIN_SUB, GPU_BIN_MUL, GPU_BIN_DIV, GPU_BIN_POW, GPU_BIN_MAX, GPU_BIN_GT,
    GPU_BIN_EQ
};
enum {
    GPU_UN_NEG, GPU_UN_EXP, GPU_UN_LOG, GPU_UN_SQRT, GPU_UN_ABS, GPU_UN_SIGN, GPU_UN_RELU,
    GPU_UN_SIGMOID, GPU_UN_TANH, GPU_UN_POW, GPU_UN_MUL_SCALAR, GPU_UN_ADD_SCALAR,
    GPU_UN_RSUB_SCALAR, GPU_UN_RDIV_SCALAR, GPU_UN_GT_SCALAR, GPU_UN_CLAMP_MIN, GPU_UN_CLAMP_MAX,
    GPU_UN_GELU, GPU_UN_GELU_TANH, GPU_UN_SILU, GPU_UN_LEAKY_RELU
};

/* A strided view from a tensor's first element (tensor_data): shape and
 * strides in elements. */
typedef struct {
    int ndim;
    int64_t shape[GPU_MAX_DIMS];
    int64_t stride[GPU_MAX_DIMS];
} GpuView;

/* Window2d of core/backend.h, field for field. */
typedef struct {
    int64_t batch, channels, height, width;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
    int64_t out_h, out_w;
} GpuWindow;

/* ---- runtime.cu ---- */
int gpu_runtime_device_count(void);
/* Makes `index` the thread's current device (cached: cheap when unchanged). */
void gpu_use_device(int index);
int gpu_current_device(void);
/* Lets `kernel` (a __global__ function) launch with `bytes` of dynamic
 * shared memory on the current device, past the default 48 KiB: 0, or -1
 * recorded (naming `what`). Once per kernel, device and larger size. */
int gpu_allow_shared_memory(const void *kernel, size_t bytes, const char *what);
/* Records the first failure on this thread: "cuda: <what> at <where>". */
void gpu_record(int cuda_status, const char *where);
void gpu_record_msg(const char *msg, const char *where);
/* The same with the whole message as given, no "cuda: ... at ..." around
 * it (a kernel's finding, not a CUDA failure). */
void gpu_record_text(const char *text);
/* cudaGetLastError() recorded at `where`; after every launch (and
 * gpu_profile_mark(where) when it succeeded). */
void gpu_check_launch(const char *where);

/* ---- batch norm's channel passes over [n, c, s] (core/backend.h's
 * channel_sum_product in reduce.cu, channel_affine in elementwise.cu) ---- */
void gpu_launch_channel_sum_product(int dtype, const void *u, const void *mu, const void *v,
                                    const void *mv, void *out, int64_t n, int64_t c, int64_t s);
void gpu_launch_channel_affine(int dtype, const void *u, const void *a, const void *v,
                               const void *m, const void *b, const void *d, void *out, int64_t n,
                               int64_t c, int64_t s);

/* ---- kernels/gemm_lt.cu ---- */
/* How a float32 product computes: full float32, TF32 or bf16 tensor cores. */
enum { GPU_LT_F32, GPU_LT_TF32, GPU_LT_BF16 };
/* gemm.cu's float32 product (its arguments, on device dev, whose gemm lock
 * the caller holds) through cuBLASLt: 0 queued, 1 declined (no algorithm,
 * its matmul refused, which declines the shape from then on, or
 * TRAIND_CUBLASLT=0: the caller runs cuBLAS's). */
int gpu_lt_sgemm(int dev, int math, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                 float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                 float beta, float *c, int64_t ldc);
/* TRAIND_CUBLASLT (default on), the tests' switch, how many products
 * cuBLASLt has run and how many plans (shapes) it keeps. */
bool gpu_cublaslt_enabled(void);
void gpu_cublaslt_set_enabled(bool on);
uint64_t gpu_cublaslt_runs(void);
uint64_t gpu_cublaslt_plans(void);
/* At most n plans kept per device (256); returns the limit before. */
size_t gpu_cublaslt_plan_limit(size_t n);

/* ---- profile.cu ---- */
/* Under TRAIND_GPU_PROFILE, an event on the default stream labelled
 * `label` (a string that outlives the process's work: a literal); a no-op
 * otherwise. */
void gpu_profile_mark(const char *label);
int gpu_memcpy_to_host(int device, void *host_dst, const void *src, size_t nbytes);
int gpu_memcpy_from_host(int device, void *dst, const void *host_src, size_t nbytes);
/* The same on the device's copy stream, beside the kernels queued on the
 * default stream; complete on return (see runtime.cu). */
int gpu_memcpy_from_host_beside(int device, void *dst, const void *host_src, size_t nbytes);
/* The same queued on this thread's stream behind its kernels, without
 * waiting; host_src may be reused on return (see runtime.cu). */
int gpu_memcpy_from_host_queued(int device, void *dst, const void *host_src, size_t nbytes);

/* ---- allocator.cu ---- */
void *gpu_alloc_bytes(int device, size_t nbytes);
void gpu_free_bytes(int device, void *ptr);
/* graph.cu's use of the allocator: from capture_begin to capture_end, the
 * thread's allocations and frees on `device` go to a new pool, which the
 * graph holds until pool_release gives its blocks back to the cache. NULL
 * when out of host memory or already capturing. */
void *gpu_allocator_capture_begin(int device);
/* runtime.cu: the first host copy or wait the capturing thread was refused
 * ("... (<call>)"), NULL when none; and forgetting it. */
const char *gpu_capture_refusal(void);
void gpu_capture_refusal_clear(void);
void gpu_allocator_capture_end(void);
void gpu_allocator_pool_release(void *pool);
/* graph.cu: captures under way now, on every thread. While one is, nothing
 * frees memory in a way that waits for the device (cudaFree, cudaFreeHost):
 * another thread's wait for a device with a stream capturing may end its
 * capture (PyTorch's allocator defers its frees the same way). */
int gpu_captures_underway(void);
/* pinned.cu: returns once no cudaFreeHost of the pinned cache is running
 * (a capture counted first, none starts after). */
void gpu_pinned_wait_frees(void);

/* ---- kernels/layout.cu ---- */
void gpu_launch_copy(const void *src, int src_dtype, GpuView sv, void *dst, int dst_dtype,
                     GpuView dv, int64_t n);
void gpu_launch_fill(void *dst, int dtype, int64_t n, double value);

/* ---- kernels/elementwise.cu ---- (op: BinaryOp / UnaryOp as int) */
/* a and b are views over out's shape (strides 0 where broadcast). */
void gpu_launch_binary(int op, int dtype, const void *a, GpuView av, const void *b, GpuView bv,
                       void *out, int64_t n);
void gpu_launch_unary(int op, int dtype, const void *x, double alpha, void *out, int64_t n);
void gpu_launch_unary_backward(int op, int dtype, const void *x, const void *y, double alpha,
                               const void *gy, void *gx, int64_t n);

/* ---- kernels/reduce.cu ---- */
/* out[o] = sum over the reduced dims; kept/red list (size, stride) pairs of
 * x, outermost first; out is in row-major order of the kept dims. */
void gpu_launch_sum(int dtype, const void *x, int nkept, const int64_t *kept_size,
                    const int64_t *kept_stride, int nred, const int64_t *red_size,
                    const int64_t *red_stride, void *out, int64_t nout, int64_t nred_total);
void gpu_launch_max_last_dim(int dtype, const void *x, int64_t rows, int64_t cols, void *out,
                             int64_t *indices);

/* ---- kernels/softmax.cu ---- */
void gpu_launch_softmax(int dtype, const void *x, void *out, int64_t rows, int64_t cols,
                        bool log_);
void gpu_launch_softmax_backward(int dtype, const void *y, const void *gy, void *gx,
                                 int64_t rows, int64_t cols, bool log_);

/* ---- kernels/layer_norm.cu ---- (w, b, gx, gw, gb may be NULL; partial:
 * double [2, chunks, cols] scratch when gw or gb is wanted) */
void gpu_launch_layer_norm(int dtype, const void *x, const void *w, const void *b, double eps,
                           void *y, void *mean, void *rstd, int64_t rows, int64_t cols);
void gpu_launch_layer_norm_backward(int dtype, const void *x, const void *w, const void *mean,
                                    const void *rstd, const void *gy, void *gx, void *gw,
                                    void *gb, double *partial, int64_t chunks, int64_t rows,
                                    int64_t cols);

/* ---- index_check.cu ---- */
/* What a kernel records of the first index it found out of range: in
 * page-locked host memory mapped into the device, one per host thread. */
typedef enum { GPU_INDEX_EMBEDDING, GPU_INDEX_CLASS_TARGET } GpuIndexOp;
typedef struct {
    int32_t bad; /* 1 once recorded: the fields below are written */
    int32_t device;
    int32_t op; /* GpuIndexOp: what the index was, for the message */
    int64_t index, position, limit;
} GpuIndexRecord;
/* A kernel's way to this thread's record: the record (its device
 * address), the claim word that lets one device thread write it, and the
 * device, for the report. */
typedef struct {
    GpuIndexRecord *record;
    unsigned *claim;
    int device, op;
} GpuIndexCheck;
/* This thread's record on `device` for indices of `op`, made on first use
 * (refused while capturing); -1 with the sticky error. */
int gpu_index_check_args(int device, GpuIndexOp op, GpuIndexCheck *out);
/* After a wait for the device: a recorded bad index becomes the thread's
 * sticky error (gpu_record_text), and the record is ready for the next. */
void gpu_index_check_report(void);
/* A recorded bad index forgotten, after waiting for the device (a job's
 * start: not the last job's failure). */
void gpu_index_check_discard(void);

/* ---- kernels/class_loss.cu: Backend.class_loss_rows(_backward) ---- */
void gpu_launch_class_loss_rows(int dtype, const void *lp, const int64_t *index, int64_t ignore,
                                double eps, void *loss, void *weight, int64_t rows, int64_t cols,
                                GpuIndexCheck check);
void gpu_launch_class_loss_rows_backward(int dtype, const void *g, const int64_t *index,
                                         int64_t ignore, double eps, void *gx, int64_t rows,
                                         int64_t cols);

/* ---- kernels/embedding.cu ---- (idx: n int64, those outside [0, v) read
 * as zeros and the first the device meets recorded in `check`, even with
 * d = 0; gw [v, d] zeroed by the launcher, the indices outside [0, v)
 * adding nothing) */
void gpu_launch_embedding(int dtype, const void *w, const int64_t *idx, void *out, int64_t n,
                          int64_t v, int64_t d, GpuIndexCheck check);
void gpu_launch_embedding_backward(int dtype, const void *gy, const int64_t *idx, void *gw,
                                   int64_t n, int64_t v, int64_t d);

/* ---- kernels/attention.cu ---- (q, k, v, out and gradients [bh, t, d],
 * lse and delta [bh, t]; d <= GPU_ATTENTION_MAX_HEAD_DIM) */
#define GPU_ATTENTION_MAX_HEAD_DIM 128
/* AttentionArgs of core/backend.h, field for field. */
typedef struct {
    double scale, dropout;
    uint64_t seed, offset;
    int64_t heads;
    uint64_t sample_stride;
    const uint64_t *offset_base; /* device memory added to offset, or NULL */
} GpuAttentionArgs;
void gpu_launch_causal_attention(int dtype, const void *q, const void *k, const void *v,
                                 void *out, void *lse, int64_t bh, int64_t t, int64_t d,
                                 GpuAttentionArgs args);
void gpu_launch_causal_attention_backward(int dtype, const void *q, const void *k, const void *v,
                                          const void *out, const void *lse, const void *gout,
                                          void *delta, void *gq, void *gk, void *gv, int64_t bh,
                                          int64_t t, int64_t d, GpuAttentionArgs args);
/* kernels/attention_tiled.cu's register tiles (float32 heads of 32 or 64):
 * TRAIND_ATTENTION_TILES (default on; 0 leaves every head to the
 * warp-per-row kernels), the tests' switch, and how many forward and
 * backward passes the tiles have run. */
bool gpu_attention_tiles_enabled(void);
void gpu_attention_tiles_set_enabled(bool on);
uint64_t gpu_attention_tiles_runs(void);

/* ---- kernels/gemm.cu ---- */
void gpu_launch_gemm(int dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                     double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                     double beta, void *c, int64_t ldc);

/* ---- kernels/conv.cu ---- */
void gpu_launch_im2col(int dtype, const GpuWindow *w, const void *images, int64_t n,
                       void *columns, int64_t ld);
void gpu_launch_col2im(int dtype, const GpuWindow *w, const void *columns, int64_t ld, int64_t n,
                       void *images);

/* ---- kernels/pool.cu ---- */
void gpu_launch_max_pool2d(int dtype, const GpuWindow *w, const void *x, void *out,
                           int64_t *indices);
void gpu_launch_max_pool2d_backward(int dtype, const GpuWindow *w, const void *gy,
                                    const int64_t *indices, void *gx);
void gpu_launch_avg_pool2d(int dtype, const GpuWindow *w, const void *x, void *out);
void gpu_launch_avg_pool2d_backward(int dtype, const GpuWindow *w, const void *gy, void *gx);
void gpu_launch_adaptive_avg_pool2d(int dtype, const GpuWindow *w, const void *x, void *out);
void gpu_launch_adaptive_avg_pool2d_backward(int dtype, const GpuWindow *w, const void *gy,
                                             void *gx);

/* ---- kernels/random.cu ---- */
/* offset moved on by *base (device memory) when base is not NULL */
void gpu_launch_uniform(int dtype, void *out, int64_t n, uint64_t seed, uint64_t offset,
                        const uint64_t *base);

/* ---- kernels/optim.cu ---- */
/* One parameter of a fused update (core's OptimUpdate as raw pointers). */
typedef struct {
    void *param;
    const void *grad;
    void *state[3];       /* SGD: momentum buffer or NULL; Adam: m, v, vmax or NULL */
    int64_t n;
    const double *consts; /* device memory: SGD_CONSTS or ADAM_CONSTS numbers */
} GpuOptimTensor;

/* All `count` tensors (of one dtype) in as few launches as fit. */
void gpu_launch_sgd(int dtype, int count, const GpuOptimTensor *t);
void gpu_launch_adam(int dtype, int count, const GpuOptimTensor *t);

#ifdef __cplusplus
}
#endif

#endif
