/* reduce.cu - sum over any dims, max/argmax over the last dim:
 * the twins of core/cpu/reduce.c.
 *
 * sum: one block per output element (grid-stride over outputs); its threads
 * stride over the reduced positions and accumulate in double, as the CPU
 * does for both dtypes, then a shared-memory tree adds the partial sums.
 * The order of additions differs from the CPU's sequential one, so results
 * agree to rounding of a double sum (exactly, once rounded to float32, in
 * all but rare ties). Where the reduced dims all lead and the kept ones
 * trail (a bias's gradient: the column sums of [rows, cols]), a block's
 * warps read neighbouring columns instead (column_sum_kernel): sum_kernel's
 * threads would each read one column's rows, a whole row apart.
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

#define COL_LANES 32

/* out[c] = the sum over rows of x[r * cols + c]: 32 neighbouring columns a
 * block, so each warp reads one contiguous run of a row, and COL_LANES
 * threads a column splitting its rows; in double, as sum_kernel. */
template <typename T>
__global__ void column_sum_kernel(const T *x, int64_t rows, int64_t cols, T *out) {
    __shared__ double partial[COL_LANES][33]; /* 33: no bank conflicts */
    int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    double acc = 0;
    if (c < cols)
        for (int64_t r = threadIdx.y; r < rows; r += COL_LANES) acc += (double)x[r * cols + c];
    partial[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        double s = 0;
        for (int k = 0; k < COL_LANES; k++) s += partial[k][threadIdx.x];
        out[c] = (T)s;
    }
}

/* The column sums' case: kept dims trailing the reduced ones, so position
 * r of the reduced and k of the kept lie at r * cols + k. 0 when it is not. */
static int64_t leading_reduced_cols(int nkept, const int64_t *kept_size, int nred,
                                    const int64_t *red_stride) {
    if (nkept == 0 || nred == 0) return 0;
    int64_t cols = 1;
    for (int i = 0; i < nkept; i++) cols *= kept_size[i];
    return red_stride[nred - 1] == cols ? cols : 0;
}

extern "C" void gpu_launch_sum(int dtype, const void *x, int nkept, const int64_t *kept_size,
                               const int64_t *kept_stride, int nred, const int64_t *red_size,
                               const int64_t *red_stride, void *out, int64_t nout,
                               int64_t nred_total) {
    if (nout <= 0) return;
    int64_t cols = leading_reduced_cols(nkept, kept_size, nred, red_stride);
    if (cols > 0) {
        dim3 threads(32, COL_LANES);
        unsigned blocks = (unsigned)((cols + 31) / 32);
        if (dtype == GPU_F32)
            column_sum_kernel<float><<<blocks, threads>>>((const float *)x, nred_total, cols,
                                                          (float *)out);
        else
            column_sum_kernel<double><<<blocks, threads>>>((const double *)x, nred_total, cols,
                                                           (double *)out);
        gpu_check_launch("sum kernel (columns)");
        return;
    }
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
