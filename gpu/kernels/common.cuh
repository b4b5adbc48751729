/* common.cuh - what every kernel file of gpu/kernels shares: launch
 * geometry, grid-stride loops, strided-view offsets, and math overloaded on
 * float and double (so one template serves both dtypes with expf / exp).
 *
 * Kernels are compiled with --fmad=false (Makefile): a * b + c is not
 * contracted, so elementwise and optimizer arithmetic rounds step by step
 * as the CPU backend's does, and the two agree bit for bit where the math
 * library agrees.
 */
#ifndef TRAIND_GPU_KERNELS_COMMON_CUH
#define TRAIND_GPU_KERNELS_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "gpu/kernels.h"
#include "gpu/stream.h"

#define GPU_THREADS 256

/* The caps of gpu_blocks and gpu_warp_blocks; tests/sim lowers them so
 * that every grid-stride loop goes round more than once. */
#ifndef GPU_BLOCKS_MAX
#define GPU_BLOCKS_MAX 1048576
#endif
#ifndef GPU_WARP_BLOCKS_MAX
#define GPU_WARP_BLOCKS_MAX 65536
#endif

/* Blocks for n elements at GPU_THREADS each; capped, grid-stride loops
 * cover the rest. */
static inline unsigned gpu_blocks(int64_t n) {
    int64_t b = (n + GPU_THREADS - 1) / GPU_THREADS;
    if (b > GPU_BLOCKS_MAX) b = GPU_BLOCKS_MAX;
    if (b < 1) b = 1;
    return (unsigned)b;
}

/* Blocks for kernels that give each of `rows` rows one warp (softmax,
 * layer_norm); grid-stride loops over the warps cover the rest. */
static inline unsigned gpu_warp_blocks(int64_t rows) {
    int64_t b = (rows * 32 + GPU_THREADS - 1) / GPU_THREADS;
    if (b > GPU_WARP_BLOCKS_MAX) b = GPU_WARP_BLOCKS_MAX;
    return (unsigned)(b < 1 ? 1 : b);
}

/* One warp per row r of `rows`, grid-stride over the warps; the lane is
 * threadIdx.x & 31. */
#define WARP_ROWS(r, rows)                                                                         \
    for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < (rows);          \
         r += ((int64_t)gridDim.x * blockDim.x) >> 5)

/* Records the first index found outside [0, limit) in this host thread's
 * record (gpu/index_check.cu): the device thread that wins the claim
 * writes the fields, then, after a system fence, the flag. */
__device__ inline void note_bad_index(const GpuIndexCheck &c, int64_t index, int64_t position,
                                      int64_t limit) {
    if (atomicCAS(c.claim, 0u, 1u) != 0u) return;
    volatile GpuIndexRecord *r = c.record;
    r->index = index;
    r->position = position;
    r->limit = limit;
    r->device = c.device;
    r->op = c.op;
    __threadfence_system();
    r->bad = 1;
}

/* The sum over a warp's 32 lanes, in every lane. */
__device__ inline double warp_sum(double v) {
    for (int s = 16; s > 0; s >>= 1) v += __shfl_xor_sync(0xffffffffu, v, s);
    return v;
}

#define GRID_STRIDE(i, n)                                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)blockDim.x * gridDim.x)

/* Offset of logical row-major element `flat` in a strided view. */
__device__ inline int64_t view_offset(const GpuView &v, int64_t flat) {
    int64_t off = 0;
    for (int d = v.ndim - 1; d >= 0; d--) {
        int64_t s = v.shape[d];
        off += (flat % s) * v.stride[d];
        flat /= s;
    }
    return off;
}

static inline bool view_is_contiguous(const GpuView &v) {
    int64_t expect = 1;
    for (int d = v.ndim - 1; d >= 0; d--) {
        if (v.shape[d] != 1 && v.stride[d] != expect) return false;
        expect *= v.shape[d];
    }
    return true;
}

__device__ inline float g_exp(float x) { return expf(x); }
__device__ inline double g_exp(double x) { return exp(x); }
__device__ inline float g_log(float x) { return logf(x); }
__device__ inline double g_log(double x) { return log(x); }
__device__ inline float g_sqrt(float x) { return sqrtf(x); }
__device__ inline double g_sqrt(double x) { return sqrt(x); }
__device__ inline float g_fabs(float x) { return fabsf(x); }
__device__ inline double g_fabs(double x) { return fabs(x); }
__device__ inline float g_tanh(float x) { return tanhf(x); }
__device__ inline double g_tanh(double x) { return tanh(x); }
__device__ inline float g_pow(float x, float y) { return powf(x, y); }
__device__ inline double g_pow(double x, double y) { return pow(x, y); }

/* NaN in either operand gives NaN, as torch.maximum (and core/cpu). */
template <typename T> __device__ inline T nan_max(T x, T y) {
    return x != x ? x : y != y ? y : x < y ? y : x;
}

#endif
