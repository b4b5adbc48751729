/* attention_launch.cuh - the launch of a causal attention kernel over its
 * row blocks, for attention.cu's and attention_tiled.cu's kernels (host
 * code; tests/sim stands in its own to run the kernels on the CPU).
 */
#ifndef TRAIND_GPU_KERNELS_ATTENTION_LAUNCH_CUH
#define TRAIND_GPU_KERNELS_ATTENTION_LAUNCH_CUH

#include "gpu/kernels/common.cuh"

/* Launches `kernel` with `threads` threads over (bh heads, ceil(t / rows)
 * row blocks) with `smem` bytes of dynamic shared memory, raising the
 * kernel's limit past the default 48 KiB when it needs more. */
template <typename K, typename... Args>
static void attention_launch(K kernel, const char *what, int rows, int threads, size_t smem,
                             int64_t bh, int64_t t, Args... args) {
    int64_t blocks = (t + rows - 1) / rows;
    if (blocks > 65535 || bh > 2147483647) {
        gpu_record_msg("sequence too long for the attention kernels' grid", what);
        return;
    }
    if (smem > 48 * 1024 && gpu_allow_shared_memory((const void *)kernel, smem, what) != 0)
        return;
    kernel<<<dim3((unsigned)bh, (unsigned)blocks), threads, smem, gpu_stream()>>>(args...);
    gpu_check_launch(what);
}

#endif
