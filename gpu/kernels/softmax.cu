/* softmax.cu - softmax / log_softmax over the last dim and their
 * backwards: the twins of core/cpu/softmax.c, one warp per row.
 *
 * Same formulas: the row max (NaN if any NaN) is subtracted before exp;
 * exp is taken in T and summed in double, then rounded once to T;
 *   softmax y = exp(x - max) / sum,  log_softmax y = (x - max) - log(sum);
 *   backward: softmax gx = y * (gy - sum(gy * y)) (products in double),
 *             log_softmax gx = gy - exp(y) * sum(gy).
 * Only the order of the double additions differs from the CPU.
 */
#include "gpu/kernels/common.cuh"

/* max with the CPU's rule: a NaN anywhere makes the max NaN. */
template <typename T> __device__ inline T max_nan(T a, T b) {
    return (b > a || b != b) && a == a ? b : a;
}

template <typename T> __device__ inline T warp_max(T v) {
    for (int s = 16; s > 0; s >>= 1) v = max_nan(v, __shfl_xor_sync(0xffffffffu, v, s));
    return v;
}

template <typename T>
__global__ void softmax_kernel(const T *px, T *py, int64_t rows, int64_t cols, bool log_) {
    int lane = threadIdx.x & 31;
    WARP_ROWS(r, rows) {
        const T *x = px + r * cols;
        T *y = py + r * cols;
        T mx = x[0];
        for (int64_t c = lane; c < cols; c += 32) mx = max_nan(mx, x[c]);
        mx = warp_max(mx);
        double sum = 0;
        if (log_) {
            for (int64_t c = lane; c < cols; c += 32) sum += (double)g_exp((T)(x[c] - mx));
            sum = warp_sum(sum);
            T log_sum = (T)log(sum);
            for (int64_t c = lane; c < cols; c += 32) y[c] = (T)(x[c] - mx) - log_sum;
        } else {
            for (int64_t c = lane; c < cols; c += 32) {
                T e = g_exp((T)(x[c] - mx));
                y[c] = e;
                sum += (double)e;
            }
            sum = warp_sum(sum);
            T total = (T)sum;
            for (int64_t c = lane; c < cols; c += 32) y[c] = y[c] / total;
        }
    }
}

template <typename T>
__global__ void softmax_backward_kernel(const T *py, const T *pgy, T *pgx, int64_t rows,
                                        int64_t cols, bool log_) {
    int lane = threadIdx.x & 31;
    WARP_ROWS(r, rows) {
        const T *y = py + r * cols, *gy = pgy + r * cols;
        T *gx = pgx + r * cols;
        double sum = 0;
        if (log_) {
            for (int64_t c = lane; c < cols; c += 32) sum += (double)gy[c];
            T s = (T)warp_sum(sum);
            for (int64_t c = lane; c < cols; c += 32) gx[c] = gy[c] - g_exp(y[c]) * s;
        } else {
            for (int64_t c = lane; c < cols; c += 32) sum += (double)gy[c] * (double)y[c];
            T s = (T)warp_sum(sum);
            for (int64_t c = lane; c < cols; c += 32) gx[c] = y[c] * (gy[c] - s);
        }
    }
}

extern "C" void gpu_launch_softmax(int dtype, const void *x, void *out, int64_t rows,
                                   int64_t cols, bool log_) {
    if (rows <= 0 || cols <= 0) return;
    if (dtype == GPU_F32)
        softmax_kernel<float><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
            (const float *)x, (float *)out, rows, cols, log_);
    else
        softmax_kernel<double><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
            (const double *)x, (double *)out, rows, cols, log_);
    gpu_check_launch("softmax kernel");
}

extern "C" void gpu_launch_softmax_backward(int dtype, const void *y, const void *gy, void *gx,
                                            int64_t rows, int64_t cols, bool log_) {
    if (rows <= 0 || cols <= 0) return;
    if (dtype == GPU_F32)
        softmax_backward_kernel<float><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
            (const float *)y, (const float *)gy, (float *)gx, rows, cols, log_);
    else
        softmax_backward_kernel<double><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
            (const double *)y, (const double *)gy, (double *)gx, rows, cols, log_);
    gpu_check_launch("softmax_backward kernel");
}
