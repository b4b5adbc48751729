/* embedding.cu - embedding lookup and its adjoint: the twins of
 * core/cpu/embedding.c.
 *
 * Forward: one thread per output element, out[n, c] = weight[index[n], c].
 * Backward: gweight zeroed, then one thread per element of gy adds it into
 * row index[n] with atomicAdd (rows sharing an index collide). The order of
 * those additions is the hardware's, so, unlike the CPU's, the gradient's
 * last bits may differ from run to run where a token repeats in a batch,
 * as in torch's non-deterministic CUDA kernels.
 */
#include "gpu/kernels/common.cuh"

template <typename T>
__global__ void embedding_kernel(const T *w, const int64_t *idx, T *out, int64_t n, int64_t d) {
    GRID_STRIDE(i, n * d) out[i] = w[idx[i / d] * d + i % d];
}

template <typename T>
__global__ void embedding_backward_kernel(const T *gy, const int64_t *idx, T *gw, int64_t n,
                                          int64_t d) {
    GRID_STRIDE(i, n * d) atomicAdd(gw + idx[i / d] * d + i % d, gy[i]);
}

extern "C" void gpu_launch_embedding(int dtype, const void *w, const int64_t *idx, void *out,
                                     int64_t n, int64_t d) {
    if (n <= 0 || d <= 0) return;
    if (dtype == GPU_F32)
        embedding_kernel<float><<<gpu_blocks(n * d), GPU_THREADS, 0, gpu_stream()>>>(
            (const float *)w, idx, (float *)out, n, d);
    else
        embedding_kernel<double><<<gpu_blocks(n * d), GPU_THREADS, 0, gpu_stream()>>>(
            (const double *)w, idx, (double *)out, n, d);
    gpu_check_launch("embedding kernel");
}

extern "C" void gpu_launch_embedding_backward(int dtype, const void *gy, const int64_t *idx,
                                              void *gw, int64_t n, int64_t v, int64_t d) {
    gpu_launch_fill(gw, dtype, v * d, 0.0);
    if (n <= 0 || d <= 0) return;
    if (dtype == GPU_F32)
        embedding_backward_kernel<float><<<gpu_blocks(n * d), GPU_THREADS, 0, gpu_stream()>>>(
            (const float *)gy, idx, (float *)gw, n, d);
    else
        embedding_backward_kernel<double><<<gpu_blocks(n * d), GPU_THREADS, 0, gpu_stream()>>>(
            (const double *)gy, idx, (double *)gw, n, d);
    gpu_check_launch("embedding_backward kernel");
}
