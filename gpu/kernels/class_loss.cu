/* class_loss.cu - rows of the class losses (nll_loss, cross_entropy) with
 * ignore_index and label_smoothing: the twins of core/cpu/class_loss.c.
 *
 * Forward: one warp per row, the smoothing sum in double over the lanes
 * (skipped when eps = 0, as on the CPU). Backward: one thread per element
 * of gx, so a wide vocabulary is written coalesced.
 */
#include "gpu/kernels/common.cuh"

/* A target outside [0, cols), not ignored, reads nothing: its row counts
 * as ignored and the target is recorded for the host (as torch's device
 * assert, reported at the next wait for the device). */
template <typename T>
__global__ void class_loss_rows_kernel(const T *lp, const int64_t *index, int64_t ignore,
                                       double eps, T *loss, T *weight, int64_t rows,
                                       int64_t cols, GpuIndexCheck check) {
    int lane = threadIdx.x & 31;
    WARP_ROWS(r, rows) {
        const T *x = lp + r * cols;
        int64_t t = index[r];
        bool inside = t >= 0 && t < cols;
        if (t == ignore || !inside) {
            if (lane == 0) loss[r] = weight[r] = 0;
            if (lane == 0 && t != ignore) note_bad_index(check, t, r, cols);
            continue;
        }
        double sum = 0;
        if (eps != 0) {
            for (int64_t c = lane; c < cols; c += 32) sum += (double)x[c];
            sum = warp_sum(sum);
        }
        if (lane == 0) {
            double v = -(1.0 - eps) * (double)x[t];
            if (eps != 0) v -= eps / (double)cols * sum;
            loss[r] = (T)v;
            weight[r] = 1;
        }
    }
}

template <typename T>
__global__ void class_loss_backward_kernel(const T *g, const int64_t *index, int64_t ignore,
                                           double eps, T *gx, int64_t rows, int64_t cols) {
    GRID_STRIDE(i, rows * cols) {
        int64_t r = i / cols, c = i - r * cols, t = index[r];
        T v = 0;
        if (t != ignore) { /* a t out of range matches no c */
            if (c == t)
                v = (T)(-(double)g[r] * (1.0 - eps + eps / (double)cols));
            else if (eps != 0)
                v = (T)(-(double)g[r] * eps / (double)cols);
        }
        gx[i] = v;
    }
}

extern "C" void gpu_launch_class_loss_rows(int dtype, const void *lp, const int64_t *index,
                                           int64_t ignore, double eps, void *loss, void *weight,
                                           int64_t rows, int64_t cols, GpuIndexCheck check) {
    if (rows <= 0) return;
    if (dtype == GPU_F32)
        class_loss_rows_kernel<float><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
            (const float *)lp, index, ignore, eps, (float *)loss, (float *)weight, rows, cols,
            check);
    else
        class_loss_rows_kernel<double><<<gpu_warp_blocks(rows), GPU_THREADS, 0, gpu_stream()>>>(
            (const double *)lp, index, ignore, eps, (double *)loss, (double *)weight, rows, cols,
            check);
    gpu_check_launch("class_loss_rows kernel");
}

extern "C" void gpu_launch_class_loss_rows_backward(int dtype, const void *g,
                                                    const int64_t *index, int64_t ignore,
                                                    double eps, void *gx, int64_t rows,
                                                    int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    if (dtype == GPU_F32)
        class_loss_backward_kernel<float>
            <<<gpu_blocks(rows * cols), GPU_THREADS, 0, gpu_stream()>>>(
                (const float *)g, index, ignore, eps, (float *)gx, rows, cols);
    else
        class_loss_backward_kernel<double>
            <<<gpu_blocks(rows * cols), GPU_THREADS, 0, gpu_stream()>>>(
                (const double *)g, index, ignore, eps, (double *)gx, rows, cols);
    gpu_check_launch("class_loss_rows_backward kernel");
}
