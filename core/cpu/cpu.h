/* cpu.h - the CPU backend's kernels, one file per concept under core/cpu/,
 * gathered into the cpu_backend table by core/cpu/backend.c. Contracts are
 * those of the matching Backend fields in core/backend.h. Kernels handle
 * float32 and float64 (the layout kernels every dtype).
 */
#ifndef TRAIND_CORE_CPU_H
#define TRAIND_CORE_CPU_H

#include "core/backend.h"

/* Loops over at least this many elements are split over the OpenMP
 * threads (the same pool OpenBLAS's OpenMP build uses for GEMM). Below it
 * the fork/join costs more than it saves. */
#define CPU_PARALLEL_MIN 32768

/* allocator.c: host memory with a cache of large blocks */
/* The OpenBLAS kernels to ask for (OPENBLAS_CORETYPE, read when the
 * library loads) when it fell back to its generic ones on a CPU that has
 * AVX-512 or AVX2 ("SkylakeX", "Haswell"); NULL when its choice stands. */
const char *cpu_blas_better_core(void);
/* The kernels OpenBLAS runs on ("SkylakeX", "Haswell", "Prescott", ...). */
const char *cpu_blas_core(void);

void *cpu_alloc(Device device, size_t nbytes);
void cpu_free(Device device, void *ptr);
/* Frees every cached block (a daemon between jobs, tests). */
void cpu_allocator_trim(void);
/* On by default (off under AddressSanitizer); off also trims. */
void cpu_allocator_set_caching(bool enabled);
size_t cpu_allocator_cached_bytes(void);
/* What the cache may hold now: twice the most ever handed out in large
 * blocks at once, within bounds from the machine's memory. */
size_t cpu_allocator_cache_limit(void);

/* layout.c */
void cpu_copy(const Tensor *src, Tensor *dst);
void cpu_fill(Tensor *dst, double value);
/* float32, contiguous; NCHW into the blocked layout when to is 5-d, else
 * back */
void cpu_convert_blocked(const Tensor *from, Tensor *to);

/* elementwise.c */
void cpu_binary(BinaryOp op, const Tensor *a, const Tensor *b, Tensor *out);
void cpu_unary(UnaryOp op, const Tensor *x, double alpha, Tensor *out);
void cpu_unary_backward(UnaryOp op, const Tensor *x, const Tensor *y, double alpha,
                        const Tensor *gy, Tensor *gx);

/* reduce.c */
void cpu_sum(const Tensor *x, Tensor *out);
void cpu_max_last_dim(const Tensor *x, Tensor *out, Tensor *indices);

/* isa.c: on, the portable kernels even where AVX-512 is (tests of them);
 * cpu_avx512 says whether the AVX-512 kernels run. */
void cpu_kernels_portable(bool on);
bool cpu_avx512(void);

/* channel.c; lanes 1, or the blocked layout's TENSOR_BLOCK */
void cpu_channel_sum_product(const Tensor *u, const Tensor *mu, const Tensor *v,
                             const Tensor *mv, int64_t lanes, Tensor *out);
void cpu_channel_affine(const Tensor *u, const Tensor *a, const Tensor *v, const Tensor *m,
                        const Tensor *b, const Tensor *d, int64_t lanes, Tensor *out);

/* class_loss.c */
int cpu_class_loss_rows(const Tensor *lp, const Tensor *index, int64_t ignore, double eps,
                        Tensor *loss, Tensor *weight);
void cpu_class_loss_rows_backward(const Tensor *g, const Tensor *index, int64_t ignore,
                                  double eps, Tensor *gx);

/* gemm.c (OpenBLAS, or oneDNN's matmul: gemm_dnnl.c): the library that
 * computes a product of these sizes, and the product. */
typedef enum { CPU_GEMM_OPENBLAS, CPU_GEMM_DNNL } CpuGemmLibrary;
CpuGemmLibrary cpu_gemm_library(DType dtype, int64_t m, int64_t n, int64_t k, double alpha,
                                double beta);
/* Whether float32 products go to oneDNN by size (not TRAIND_ONEDNN_MATMUL=0),
 * and the range of m*n*k they take there: 2^min_log2 to 2^max_log2. */
bool cpu_gemm_dnnl_range(int *min_log2, int *max_log2);
void cpu_gemm(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              double alpha, const void *a, int64_t lda, const void *b, int64_t ldb, double beta,
              void *c, int64_t ldc);

/* conv.c */
void cpu_im2col(DType dtype, const Window2d *w, const void *images, int64_t n, void *columns,
                int64_t ld);
void cpu_col2im(DType dtype, const Window2d *w, const void *columns, int64_t ld, int64_t n,
                void *images);

/* conv_dnnl.c (oneDNN): float32 only, 1 for the rest */
int cpu_conv2d(const Window2d *w, int groups, const Tensor *x, const Tensor *weight,
               const Tensor *bias, Tensor *out);
int cpu_conv2d_backward_data(const Window2d *w, int groups, const Tensor *weight,
                             const Tensor *gy, Tensor *gx);
int cpu_conv2d_backward_weights(const Window2d *w, int groups, const Tensor *x,
                                const Tensor *gy, Tensor *gw, Tensor *gb);
/* Precision (core/backend.h): bf16 where oneDNN's JIT has AVX512-BF16 or
 * AMX; under it the convolutions read bf16 inputs, accumulate and write
 * float32 (dnnl.c). Set per thread. */
int cpu_check_precision(Device device, Precision p);
void cpu_set_precision(Device device, Precision p);
/* The oneDNN plans kept per kind (convolution passes, blocks, matmuls:
 * 256 each unless set; see core/cpu/dnnl.h); returns the previous limit. */
int cpu_dnnl_plan_limit(int n);
/* Off: every convolution takes im2col + GEMM (tests of that path). */
void cpu_conv_library(bool on);
/* "oneDNN 2.6.3, avx512_core_bf16 kernels, Winograd for 3x3, float32
 * matmul for m*n*k 2^20..2^29": the library of the convolutions and of
 * the mid-sized products, its version, the widest ISA its JIT uses on this
 * CPU, and what of it traind uses. */
const char *cpu_dnnl_library_name(char *buf, size_t n);
/* oneDNN's name for the first kernel it chose ("brg:avx512_core", ...),
 * NULL before the first convolution. */
const char *cpu_conv_library_impl(void);
/* Whether oneDNN takes this tensor's op: float32, and not switched off by
 * cpu_conv_library(false); also whether the backend runs such tensors in
 * the blocked layout (oneDNN's nChw16c, core/ops.h's TENSOR_BLOCK). */
bool cpu_dnnl_takes(const Tensor *t);

/* conv_block_dnnl.c (oneDNN): float32 only, 1 for the rest */
int cpu_conv2d_relu_max_pool2d(const ConvReluPool *b, const Tensor *x, const Tensor *weight,
                               const Tensor *bias, Tensor *out, Tensor **saved);
int cpu_conv2d_relu_max_pool2d_backward(const ConvReluPool *b, const Tensor *x,
                                        const Tensor *weight, Tensor *const *saved,
                                        const Tensor *gy, Tensor *gx, Tensor *gw, Tensor *gb);
bool cpu_conv2d_relu_max_pool2d_chains(const ConvReluPool *from, const ConvReluPool *to,
                                       const Tensor *x);

/* pool_blocked.c: 2x2 stride-2 max pooling over nChw16c (blocks =
 * N * ceil(C / 16)), argmax one byte an output; the backward writes dy =
 * gy at the argmax, else 0, and with pooled (the pooled output) folds in
 * the ReLU's before it: only where the pooled value (y there) is above 0.
 * The backend's entries over tensors in the blocked layout follow. */
void cpu_max_pool_2x2_blocked(const float *y, int64_t blocks, int64_t H, int64_t W, float *pooled,
                              uint8_t *argmax);
void cpu_max_pool_2x2_blocked_backward(const float *pooled, const uint8_t *argmax,
                                       const float *gy, int64_t blocks, int64_t H, int64_t W,
                                       float *dy);
void cpu_max_pool2d_2x2_blocked(const Tensor *x, Tensor *out, Tensor *argmax);
void cpu_max_pool2d_2x2_blocked_backward(const Tensor *argmax, const Tensor *gy, Tensor *gx);

/* conv_block_wgrad.c: a first block's (no input gradient) 3x3 stride-1
 * convolution's gw [O][C][3][3] and gb [O] (either NULL) from x (NCHW),
 * the pooled output, its argmax and gy (nChw16c) of its 2x2 pool; -1 out
 * of memory. */
int cpu_conv_block_weight_grad(const Window2d *conv, int64_t out_channels, const float *x,
                               const float *pooled, const uint8_t *argmax, const float *gy,
                               float *gw, float *gb);

/* pool.c */
void cpu_max_pool2d(const Window2d *w, const Tensor *x, Tensor *out, Tensor *indices);
void cpu_max_pool2d_backward(const Window2d *w, const Tensor *gy, const Tensor *indices,
                             Tensor *gx);
void cpu_avg_pool2d(const Window2d *w, const Tensor *x, Tensor *out);
void cpu_avg_pool2d_backward(const Window2d *w, const Tensor *gy, Tensor *gx);
void cpu_adaptive_avg_pool2d(const Window2d *w, const Tensor *x, Tensor *out);
void cpu_adaptive_avg_pool2d_backward(const Window2d *w, const Tensor *gy, Tensor *gx);

/* softmax.c */
void cpu_softmax(const Tensor *x, Tensor *out, bool log);
void cpu_softmax_backward(const Tensor *y, const Tensor *gy, Tensor *gx, bool log);

/* layer_norm.c */
void cpu_layer_norm(const Tensor *x, const Tensor *weight, const Tensor *bias, double eps,
                    Tensor *y, Tensor *mean, Tensor *rstd);
void cpu_layer_norm_backward(const Tensor *x, const Tensor *weight, const Tensor *mean,
                             const Tensor *rstd, const Tensor *gy, Tensor *gx, Tensor *gweight,
                             Tensor *gbias, Tensor *partial);

/* embedding.c */
int cpu_embedding(const Tensor *weight, const Tensor *index, Tensor *out);
void cpu_embedding_backward(const Tensor *gy, const Tensor *index, Tensor *gweight);

/* attention.c */
void cpu_causal_attention(const Tensor *q, const Tensor *k, const Tensor *v,
                          const AttentionArgs *args, Tensor *out, Tensor *lse);
void cpu_causal_attention_backward(const Tensor *q, const Tensor *k, const Tensor *v,
                                   const Tensor *out, const Tensor *lse, const Tensor *gout,
                                   const AttentionArgs *args, Tensor *delta, Tensor *gq,
                                   Tensor *gk, Tensor *gv);

/* random.c */
void cpu_uniform(Tensor *out, uint64_t seed, uint64_t offset, const uint64_t *base);

/* optim.c */
void cpu_sgd_update(int n, const OptimUpdate *u);
void cpu_adam_update(int n, const OptimUpdate *u);

#endif
