/* layer_norm.cu - layer normalisation over the last dim of [rows, cols]
 * and its backward: the twins of core/cpu/layer_norm.c.
 *
 * Same formulas, sums in double (rounded once to T):
 *   mean = sum(x) / n, var = sum((x - mean)^2) / n, rstd = 1 / sqrt(var + eps),
 *   y = (x - mean) * rstd * w + b;
 *   gx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = gy * w;
 *   gw = sum over rows of gy * xhat, gb = sum over rows of gy.
 * Forward and gx: one warp per row (a row of a transformer's activations,
 * 768 to 4096 floats, is read from L1/L2 on its second pass). gw and gb:
 * column sums over all rows, in two deterministic stages: blocks of 32
 * columns by the op's row chunks (core/backend.h's layer_norm_chunks: up
 * to 256, enough blocks to fill an H200's 132 SMs for a few dozen column
 * blocks) write partial sums to the op's scratch, then one thread per
 * column adds a column's partials in order, as the CPU does. Only the order
 * of the double additions within a chunk differs from the CPU.
 */
#include "gpu/kernels/common.cuh"

template <typename T>
__global__ void layer_norm_kernel(const T *px, const T *w, const T *b, double eps, T *py, T *pm,
                                  T *pr, int64_t rows, int64_t cols) {
    int lane = threadIdx.x & 31;
    WARP_ROWS(r, rows) {
        const T *x = px + r * cols;
        T *y = py + r * cols;
        double sum = 0, sq = 0;
        for (int64_t c = lane; c < cols; c += 32) sum += (double)x[c];
        double mean = warp_sum(sum) / (double)cols;
        for (int64_t c = lane; c < cols; c += 32) {
            double d = (double)x[c] - mean;
            sq += d * d;
        }
        double rstd = 1.0 / sqrt(warp_sum(sq) / (double)cols + eps);
        for (int64_t c = lane; c < cols; c += 32) {
            double v = ((double)x[c] - mean) * rstd;
            if (w) v *= (double)w[c];
            if (b) v += (double)b[c];
            y[c] = (T)v;
        }
        if (lane == 0) {
            pm[r] = (T)mean;
            pr[r] = (T)rstd;
        }
    }
}

template <typename T>
__global__ void layer_norm_gx_kernel(const T *px, const T *w, const T *pm, const T *pr,
                                     const T *pgy, T *pgx, int64_t rows, int64_t cols) {
    int lane = threadIdx.x & 31;
    WARP_ROWS(r, rows) {
        const T *x = px + r * cols, *gy = pgy + r * cols;
        T *gx = pgx + r * cols;
        double mean = (double)pm[r], rstd = (double)pr[r], sg = 0, sgx = 0;
        for (int64_t c = lane; c < cols; c += 32) {
            double g = w ? (double)gy[c] * (double)w[c] : (double)gy[c];
            sg += g;
            sgx += g * (((double)x[c] - mean) * rstd);
        }
        double a = warp_sum(sg) / (double)cols, bb = warp_sum(sgx) / (double)cols;
        for (int64_t c = lane; c < cols; c += 32) {
            double g = w ? (double)gy[c] * (double)w[c] : (double)gy[c];
            gx[c] = (T)(rstd * (g - a - ((double)x[c] - mean) * rstd * bb));
        }
    }
}

/* Block (32, 8) of chunk blockIdx.y: partial[chunk][c] for its 32 columns,
 * over rows chunk*per .. chunk*per+per-1, partial_b right after partial_w. */
template <typename T>
__global__ void layer_norm_gwb_partial(const T *px, const T *pm, const T *pr, const T *pgy,
                                       double *partial, int64_t rows, int64_t cols,
                                       int64_t per, int chunks) {
    __shared__ double sw[8][33];
    __shared__ double sb[8][33];
    int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * per, r1 = r0 + per < rows ? r0 + per : rows;
    double aw = 0, ab = 0;
    if (c < cols)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
            double g = (double)pgy[r * cols + c];
            aw += g * (((double)px[r * cols + c] - (double)pm[r]) * (double)pr[r]);
            ab += g;
        }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        for (int k = 1; k < 8; k++) {
            aw += sw[k][threadIdx.x];
            ab += sb[k][threadIdx.x];
        }
        partial[(int64_t)blockIdx.y * cols + c] = aw;
        partial[((int64_t)chunks + blockIdx.y) * cols + c] = ab;
    }
}

template <typename T>
__global__ void layer_norm_gwb_final(const double *partial, T *gw, T *gb, int64_t cols,
                                     int chunks) {
    GRID_STRIDE(c, cols) {
        double aw = 0, ab = 0;
        for (int k = 0; k < chunks; k++) {
            aw += partial[(int64_t)k * cols + c];
            ab += partial[((int64_t)chunks + k) * cols + c];
        }
        if (gw) gw[c] = (T)aw;
        if (gb) gb[c] = (T)ab;
    }
}

template <typename T>
static void layer_norm_run(const void *x, const void *w, const void *b, double eps, void *y,
                           void *mean, void *rstd, int64_t rows, int64_t cols) {
    layer_norm_kernel<T><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
        (const T *)x, (const T *)w, (const T *)b, eps, (T *)y, (T *)mean, (T *)rstd, rows, cols);
}

template <typename T>
static void layer_norm_backward_run(const void *x, const void *w, const void *mean,
                                    const void *rstd, const void *gy, void *gx, void *gw,
                                    void *gb, double *partial, int64_t chunks, int64_t rows,
                                    int64_t cols) {
    if (gx && rows > 0)
        layer_norm_gx_kernel<T><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
            (const T *)x, (const T *)w, (const T *)mean, (const T *)rstd, (const T *)gy, (T *)gx,
            rows, cols);
    if (!partial) return;
    int64_t per = (rows + chunks - 1) / chunks;
    dim3 grid((unsigned)((cols + 31) / 32), (unsigned)chunks), block(32, 8);
    layer_norm_gwb_partial<T>
        <<<grid, block, 0, gpu_stream()>>>((const T *)x, (const T *)mean, (const T *)rstd,
                                           (const T *)gy, partial, rows, cols, per, (int)chunks);
    layer_norm_gwb_final<T><<<gpu_blocks(cols), GPU_THREADS, 0, gpu_stream()>>>(
        partial, (T *)gw, (T *)gb, cols, (int)chunks);
}

extern "C" void gpu_launch_layer_norm(int dtype, const void *x, const void *w, const void *b,
                                      double eps, void *y, void *mean, void *rstd, int64_t rows,
                                      int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    if (dtype == GPU_F32)
        layer_norm_run<float>(x, w, b, eps, y, mean, rstd, rows, cols);
    else
        layer_norm_run<double>(x, w, b, eps, y, mean, rstd, rows, cols);
    gpu_check_launch("layer_norm kernel");
}

extern "C" void gpu_launch_layer_norm_backward(int dtype, const void *x, const void *w,
                                               const void *mean, const void *rstd, const void *gy,
                                               void *gx, void *gw, void *gb, double *partial,
                                               int64_t chunks, int64_t rows, int64_t cols) {
    if (cols <= 0) return;
    if (dtype == GPU_F32)
        layer_norm_backward_run<float>(x, w, mean, rstd, gy, gx, gw, gb, partial, chunks, rows,
                                       cols);
    else
        layer_norm_backward_run<double>(x, w, mean, rstd, gy, gx, gw, gb, partial, chunks, rows,
                                        cols);
    gpu_check_launch("layer_norm_backward kernels");
}
