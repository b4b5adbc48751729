/* embedding.cu - embedding lookup and its adjoint: the twins of
 * core/cpu/embedding.c.
 *
 * Forward: one thread per output element, out[n, c] = weight[index[n], c].
 * An index outside [0, V) reads zeros and is recorded for the host (the
 * first the device meets, which with several need not be the lowest
 * position, as the CPU's is), which reports it at its next wait for the
 * device (gpu/index_check.cu): the op
 * cannot fail where the kernel runs, and the check costs no read back, so
 * a CUDA graph can hold it.
 * Backward: gweight zeroed, then each of its elements summed by one thread
 * in position order, as the CPU sums it: the same bits as the CPU's, on
 * every run, replayed in a CUDA graph or not (atomics would add a repeated
 * token's rows in the hardware's order, which a graph's replay and the
 * same step run op by op need not share). A thread owns a column and the
 * rows of one bucket (row % buckets), walks every position and adds the
 * ones whose row it owns; an index out of range adds nothing.
 */
#include "gpu/kernels/common.cuh"

/* A row outside [0, v) reads as zeros and is recorded (by the thread of
 * its first column). */
template <typename T>
__global__ void embedding_kernel(const T *w, const int64_t *idx, T *out, int64_t n, int64_t v,
                                 int64_t d, GpuIndexCheck check) {
    GRID_STRIDE(i, n * d) {
        int64_t row = idx[i / d];
        bool inside = row >= 0 && row < v;
        out[i] = inside ? w[row * d + i % d] : T(0);
        if (!inside && i % d == 0) note_bad_index(check, row, i / d, v);
    }
}

/* d = 0: no row to read, the indices checked all the same, as the CPU's. */
__global__ void embedding_check_kernel(const int64_t *idx, int64_t n, int64_t v,
                                       GpuIndexCheck check) {
    GRID_STRIDE(i, n) {
        if (idx[i] < 0 || idx[i] >= v) note_bad_index(check, idx[i], i, v);
    }
}

template <typename T>
__global__ void embedding_backward_kernel(const T *gy, const int64_t *idx, T *gw, int64_t n,
                                          int64_t v, int64_t d, int64_t buckets) {
    GRID_STRIDE(t, d * buckets) {
        int64_t c = t % d, bucket = t / d;
        for (int64_t i = 0; i < n; i++) {
            int64_t row = idx[i];
            if (row >= 0 && row < v && (row & (buckets - 1)) == bucket)
                gw[row * d + c] += gy[i * d + c];
        }
    }
}

/* Buckets of rows, a power of two: enough that d * buckets threads fill
 * the device (each walks all n positions), and no more than the power of
 * two at or above the rows, where each bucket holds one row at most. */
static int64_t backward_buckets(int64_t v, int64_t d) {
    int64_t buckets = 1;
    while (d * buckets < (int64_t)GPU_THREADS * 256 && buckets < v) buckets *= 2;
    return buckets;
}

extern "C" void gpu_launch_embedding(int dtype, const void *w, const int64_t *idx, void *out,
                                     int64_t n, int64_t v, int64_t d, GpuIndexCheck check) {
    if (n <= 0) return;
    if (d <= 0) {
        embedding_check_kernel<<<gpu_blocks(n), GPU_THREADS, 0, gpu_stream()>>>(idx, n, v, check);
        gpu_check_launch("embedding check kernel");
        return;
    }
    if (dtype == GPU_F32)
        embedding_kernel<float><<<gpu_blocks(n * d), GPU_THREADS, 0, gpu_stream()>>>(
            (const float *)w, idx, (float *)out, n, v, d, check);
    else
        embedding_kernel<double><<<gpu_blocks(n * d), GPU_THREADS, 0, gpu_stream()>>>(
            (const double *)w, idx, (double *)out, n, v, d, check);
    gpu_check_launch("embedding kernel");
}

extern "C" void gpu_launch_embedding_backward(int dtype, const void *gy, const int64_t *idx,
                                              void *gw, int64_t n, int64_t v, int64_t d) {
    gpu_launch_fill(gw, dtype, v * d, 0.0);
    if (n <= 0 || d <= 0) return;
    int64_t buckets = backward_buckets(v, d);
    unsigned blocks = gpu_blocks(d * buckets);
    if (dtype == GPU_F32)
        embedding_backward_kernel<float><<<blocks, GPU_THREADS, 0, gpu_stream()>>>(
            (const float *)gy, idx, (float *)gw, n, v, d, buckets);
    else
        embedding_backward_kernel<double><<<blocks, GPU_THREADS, 0, gpu_stream()>>>(
            (const double *)gy, idx, (double *)gw, n, v, d, buckets);
    gpu_check_launch("embedding_backward kernel");
}
