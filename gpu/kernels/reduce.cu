/* reduce.cu - sum over any dims, max/argmax over the last dim:
 * the twins of core/cpu/reduce.c.
 *
 * sum: one block per output element (grid-stride over outputs); its threads
 * stride over the reduced positions and accumulate in double, as the CPU
 * does for both dtypes, then a shared-memory tree adds the partial sums.
 * The order of additions differs from the CPU's sequential one, so results
 * agree to rounding of a double sum (exactly, once rounded to float32, in
 * all but rare ties).
 *
 * max_last_dim: one warp per row; the combine keeps the CPU's rule (a NaN
 * is the maximum, the first NaN; otherwise the first maximum).
 */
#include "gpu/kernels/common.cuh"

#define SUM_THREADS 256

typedef struct {
    int n;
    int64_t size[GPU_MAX_DIMS];
    int64_t stride[GPU_MAX_DIMS];
} Dims;

/* Offset of position `i` (row-major over d's sizes). */
__device__ inline int64_t dims_offset(const Dims &d, int64_t i) {
    int64_t off = 0;
    for (int k = d.n - 1; k >= 0; k--) {
        off += (i % d.size[k]) * d.stride[k];
        i /= d.size[k];
    }
    return off;
}

template <typename T>
__global__ void sum_kernel(const T *x, Dims kept, Dims red, T *out, int64_t nout, int64_t nred) {
    __shared__ double partial[SUM_THREADS];
    for (int64_t o = blockIdx.x; o < nout; o += gridDim.x) {
        int64_t base = dims_offset(kept, o);
        double acc = 0;
        for (int64_t r = threadIdx.x; r < nred; r += blockDim.x) acc += (double)x[base + dims_offset(red, r)];
        partial[threadIdx.x] = acc;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) out[o] = (T)partial[0];
        __syncthreads(); /* partial[0] read before the next output reuses it */
    }
}

extern "C" void gpu_launch_sum(int dtype, const void *x, int nkept, const int64_t *kept_size,
                               const int64_t *kept_stride, int nred, const int64_t *red_size,
                               const int64_t *red_stride, void *out, int64_t nout,
                               int64_t nred_total) {
    if (nout <= 0) return;
    Dims kept, red;
    kept.n = nkept;
    red.n = nred;
    for (int i = 0; i < nkept; i++) kept.size[i] = kept_size[i], kept.stride[i] = kept_stride[i];
    for (int i = 0; i < nred; i++) red.size[i] = red_size[i], red.stride[i] = red_stride[i];
    /* few reduced elements: a warp per output wastes less */
    int threads = nred_total >= SUM_THREADS ? SUM_THREADS : 32;
    int64_t blocks = nout < 65536 ? nout : 65536;
    if (dtype == GPU_F32)
        sum_kernel<float><<<(unsigned)blocks, threads>>>((const float *)x, kept, red,
                                                         (float *)out, nout, nred_total);
    else
        sum_kernel<double><<<(unsigned)blocks, threads>>>((const double *)x, kept, red,
                                                          (double *)out, nout, nred_total);
    gpu_check_launch("sum kernel");
}

/* (value, index) pairs: does b beat a? NaN beats numbers, the earlier index
 * wins among NaNs and among equal values. */
template <typename T> __device__ inline bool max_beats(T av, int64_t ai, T bv, int64_t bi) {
    bool an = av != av, bn = bv != bv;
    if (an || bn) return bn && (!an || bi < ai);
    return bv > av || (bv == av && bi < ai);
}

template <typename T>
__global__ void max_last_kernel(const T *x, int64_t rows, int64_t cols, T *out, int64_t *idx) {
    int lane = threadIdx.x & 31;
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t r = warp; r < rows; r += nwarps) {
        const T *row = x + r * cols;
        T best = row[0];
        int64_t arg = 0;
        for (int64_t c = lane; c < cols; c += 32)
            if (max_beats(best, arg, row[c], c)) best = row[c], arg = c;
        for (int s = 16; s > 0; s >>= 1) {
            T ov = __shfl_down_sync(0xffffffffu, best, s);
            int64_t oi = __shfl_down_sync(0xffffffffu, arg, s);
            if (max_beats(best, arg, ov, oi)) best = ov, arg = oi;
        }
        if (lane == 0) {
            if (out) out[r] = best;
            if (idx) idx[r] = arg;
        }
    }
}

extern "C" void gpu_launch_max_last_dim(int dtype, const void *x, int64_t rows, int64_t cols,
                                        void *out, int64_t *indices) {
    if (rows <= 0 || cols <= 0) return;
    if (dtype == GPU_F32)
        max_last_kernel<float><<<gpu_warp_blocks(rows), GPU_THREADS>>>((const float *)x, rows, cols,
                                                                   (float *)out, indices);
    else
        max_last_kernel<double><<<gpu_warp_blocks(rows), GPU_THREADS>>>((const double *)x, rows,
                                                                    cols, (double *)out, indices);
    gpu_check_launch("max_last_dim kernel");
}
