/* reduce.cu - sum over any dims, max/argmax over the last dim:
 * the twins of core/cpu/reduce.c.
 *
 * sum: one block per output element (grid-stride over outputs); its threads
 * stride over the reduced positions and accumulate in double, as the CPU
 * does for both dtypes, then a shared-memory tree adds the partial sums.
 * The order of additions differs from the CPU's sequential one, so results
 * agree to rounding of a double sum (exactly, once rounded to float32, in
 * all but rare ties). sum_kernel finds each position by divisions over
 * every dim, and gives each output one block; so where the kept dims are
 * adjacent, x is read as [outer, kept, inner] instead: the column sums of a
 * bias's gradient (inner 1) and BatchNorm1d's channel sums over [n, c] by
 * column_sum_kernel, whose warps read neighbouring columns, and the rest
 * (BatchNorm2d's per-channel sums, full sums) by split_sum_kernel, several blocks an output, whose partial sums
 * a second kernel adds in a fixed order (deterministic, as the others).
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

/* What the column and split sums add at position (o, k, i): (u - mu[k]) *
 * (v - mv[k]), v NULL reading as 1 and mu, mv NULL as 0 (a plain sum: u
 * alone); cu, cv: mu[k], mv[k] or 0. */
template <typename T> struct Terms {
    const T *u, *mu, *v, *mv;
};

template <typename T>
__device__ inline double term(const Terms<T> &t, int64_t at, double cu, double cv) {
    double a = (double)t.u[at] - cu;
    return t.v ? a * ((double)t.v[at] - cv) : a;
}

#define COL_LANES 32

/* out[c] = the sum over rows of the terms at r * cols + c: 32 neighbouring
 * columns a block, so each warp reads one contiguous run of a row, and
 * COL_LANES threads a column splitting its rows; in double, as sum_kernel.
 * A bias's gradient, and BatchNorm1d's channel sums over [n, c]. */
template <typename T>
__global__ void column_sum_kernel(Terms<T> t, int64_t rows, int64_t cols, T *out) {
    __shared__ double partial[COL_LANES][33]; /* 33: no bank conflicts */
    int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    double acc = 0;
    if (c < cols) {
        double cu = t.mu ? (double)t.mu[c] : 0, cv = t.mv ? (double)t.mv[c] : 0;
        for (int64_t r = threadIdx.y; r < rows; r += COL_LANES)
            acc += term(t, r * cols + c, cu, cv);
    }
    partial[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        double s = 0;
        for (int k = 0; k < COL_LANES; k++) s += partial[k][threadIdx.x];
        out[c] = (T)s;
    }
}

/* x read as [outer, kept, inner] (reduced, kept, reduced): position k of
 * the kept dims and j of the reduced lie at
 * ((j / inner) * kept + k) * inner + j % inner. It fits when the kept dims
 * are adjacent (no reduced dim between them): a full sum (kept 1), column
 * sums (inner 1), BatchNorm's per-channel sums over (N, H, W). */
typedef struct {
    int64_t outer, kept, inner;
} Blocked;

static bool blocked_layout(int nkept, const int64_t *kept_size, const int64_t *kept_stride,
                           int64_t nred_total, Blocked *b) {
    b->kept = 1;
    for (int i = 0; i < nkept; i++) {
        if (i + 1 < nkept && kept_stride[i] != kept_stride[i + 1] * kept_size[i + 1]) return false;
        b->kept *= kept_size[i];
    }
    /* the reduced dims after the kept ones trail: their product is the
     * last kept dim's stride */
    b->inner = nkept ? kept_stride[nkept - 1] : nred_total;
    b->outer = nred_total / b->inner;
    return true;
}


/* Pass 1 of a split sum: block (k, s) adds chunk s (`per` positions) of
 * kept position k's outer * inner, in double; threads take consecutive
 * positions, so a warp reads a contiguous run of an inner row. Its (o, i)
 * advance by additions, one division per thread. */
template <typename T>
__global__ void split_sum_kernel(Terms<T> t, Blocked b, int64_t per, double *partial) {
    __shared__ double tree[SUM_THREADS];
    int64_t k = blockIdx.x, n = b.outer * b.inner;
    int64_t j = (int64_t)blockIdx.y * per + threadIdx.x, end = (int64_t)(blockIdx.y + 1) * per;
    if (end > n) end = n;
    double acc = 0, cu = t.mu ? (double)t.mu[k] : 0, cv = t.mv ? (double)t.mv[k] : 0;
    if (j < end) {
        int64_t o = j / b.inner, i = j - o * b.inner;
        const int64_t step = blockDim.x, dq = step / b.inner, dr = step % b.inner;
        for (; j < end; j += step) {
            acc += term(t, (o * b.kept + k) * b.inner + i, cu, cv);
            o += dq;
            i += dr;
            if (i >= b.inner) i -= b.inner, o++;
        }
    }
    tree[threadIdx.x] = acc;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h >>= 1) {
        if ((int)threadIdx.x < h) tree[threadIdx.x] += tree[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[k * gridDim.y + blockIdx.y] = tree[0];
}

/* Pass 2: each kept position's chunks added in chunk order, so the result
 * does not depend on which block finished first. */
template <typename T>
__global__ void split_sum_finish(const double *partial, int chunks, int64_t kept, T *out) {
    GRID_STRIDE(k, kept) {
        double acc = 0;
        for (int c = 0; c < chunks; c++) acc += partial[k * chunks + c];
        out[k] = (T)acc;
    }
}

/* Enough blocks to keep every multiprocessor's loads in flight: about
 * four a multiprocessor of an H100 or H200 (132), each chunk at least four
 * loads a thread. A number, not the device's count: a sum splits, and so
 * rounds, the same on any GPU. */
#define SPLIT_BLOCKS (4 * 132)

static int split_chunks(const Blocked &b) {
    int64_t want = (SPLIT_BLOCKS + b.kept - 1) / b.kept;
    int64_t most = (b.outer * b.inner + 4 * SUM_THREADS - 1) / (4 * SUM_THREADS);
    if (want > most) want = most;
    if (want > 65535) want = 65535;
    return want < 1 ? 1 : (int)want;
}

template <typename T> static void split_sum(Terms<T> t, const Blocked &b, T *out) {
    int chunks = split_chunks(b);
    int64_t per = (b.outer * b.inner + chunks - 1) / chunks;
    int dev = gpu_current_device();
    double *partial = (double *)gpu_alloc_bytes(dev, (size_t)(b.kept * chunks) * sizeof(double));
    if (!partial) {
        gpu_record_msg("out of memory for a sum's partial sums", "sum kernel (split)");
        return;
    }
    /* few positions a chunk: a warp wastes less, as sum_kernel's */
    int threads = per >= SUM_THREADS ? SUM_THREADS : 32;
    split_sum_kernel<T><<<dim3((unsigned)b.kept, (unsigned)chunks), threads, 0, gpu_stream()>>>(
        t, b, per, partial);
    gpu_check_launch("sum kernel (split)");
    split_sum_finish<T>
        <<<gpu_blocks(b.kept), GPU_THREADS, 0, gpu_stream()>>>(partial, chunks, b.kept, out);
    gpu_check_launch("sum kernel (split, finish)");
    gpu_free_bytes(dev, partial); /* queued: its next user runs after */
}

template <typename T> static void column_sum(Terms<T> t, const Blocked &b, T *out) {
    dim3 threads(32, COL_LANES);
    column_sum_kernel<T>
        <<<(unsigned)((b.kept + 31) / 32), threads, 0, gpu_stream()>>>(t, b.outer, b.kept, out);
    gpu_check_launch("sum kernel (columns)");
}

extern "C" void gpu_launch_sum(int dtype, const void *x, int nkept, const int64_t *kept_size,
                               const int64_t *kept_stride, int nred, const int64_t *red_size,
                               const int64_t *red_stride, void *out, int64_t nout,
                               int64_t nred_total) {
    if (nout <= 0) return;
    Blocked b;
    if (blocked_layout(nkept, kept_size, kept_stride, nred_total, &b) && b.kept <= INT32_MAX) {
        bool f32 = dtype == GPU_F32;
        if (b.inner == 1 && b.kept > 1)
            f32 ? column_sum(Terms<float>{(const float *)x, NULL, NULL, NULL}, b, (float *)out)
                : column_sum(Terms<double>{(const double *)x, NULL, NULL, NULL}, b,
                             (double *)out);
        else
            f32 ? split_sum(Terms<float>{(const float *)x, NULL, NULL, NULL}, b, (float *)out)
                : split_sum(Terms<double>{(const double *)x, NULL, NULL, NULL}, b, (double *)out);
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
        sum_kernel<float><<<(unsigned)blocks, threads, 0, gpu_stream()>>>(
            (const float *)x, kept, red, (float *)out, nout, nred_total);
    else
        sum_kernel<double><<<(unsigned)blocks, threads, 0, gpu_stream()>>>(
            (const double *)x, kept, red, (double *)out, nout, nred_total);
    gpu_check_launch("sum kernel");
}

/* Batch norm's channel sums over [n, c, s] (core/backend.h's
 * channel_sum_product): the split sum with kept = the channel, or for
 * BatchNorm1d's [n, c] (s = 1) the column sums, whose warps read a row's
 * neighbouring channels where the split sum's would read one channel's
 * values a row apart. */
template <typename T>
static void channel_sums(const void *u, const void *mu, const void *v, const void *mv, void *out,
                         int64_t n, int64_t c, int64_t s) {
    Terms<T> t = {(const T *)u, (const T *)mu, (const T *)v, (const T *)mv};
    Blocked b = {n, c, s};
    if (s == 1 && c > 1)
        column_sum(t, b, (T *)out);
    else
        split_sum(t, b, (T *)out);
}

extern "C" void gpu_launch_channel_sum_product(int dtype, const void *u, const void *mu,
                                               const void *v, const void *mv, void *out,
                                               int64_t n, int64_t c, int64_t s) {
    if (c <= 0) return;
    if (dtype == GPU_F32)
        channel_sums<float>(u, mu, v, mv, out, n, c, s);
    else
        channel_sums<double>(u, mu, v, mv, out, n, c, s);
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
        max_last_kernel<float><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
            (const float *)x, rows, cols, (float *)out, indices);
    else
        max_last_kernel<double><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
            (const double *)x, rows, cols, (double *)out, indices);
    gpu_check_launch("max_last_dim kernel");
}
