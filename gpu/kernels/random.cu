/* random.cu - uniform [0, 1) from Philox-4x32-10, identical to core/rng.c.
 *
 * Element i of the output is 32-bit number offset + i of stream `seed`:
 * word (offset + i) % 4 of block (offset + i) / 4, key = (seed low, seed
 * high), counter = (block low, block high, 0, 0), ten rounds with the key
 * bumped between rounds; the top 24 bits scaled by 2^-24. One thread per
 * Philox block, writing the (up to four) elements that fall in the output.
 * float64 outputs get the same 24-bit values, widened, as the CPU's.
 */
#include "gpu/kernels/common.cuh"
#include "gpu/kernels/philox.cuh"

/* With `base`, the offset is known only when the kernel runs (a CUDA
 * graph's replay): the launch covers n / 4 + 2 blocks, as many as any
 * offset can touch, and each thread finds its blocks from the offset. */
template <typename T>
__global__ void uniform_kernel(T *out, int64_t n, uint64_t seed, uint64_t offset,
                               const uint64_t *base) {
    if (base) offset += *base;
    /* blocks touched: from offset / 4 to (offset + n - 1) / 4 */
    uint64_t first = offset / 4;
    int64_t nblocks = (int64_t)((offset + (uint64_t)n - 1) / 4 - first + 1);
    GRID_STRIDE(b, nblocks) {
        uint64_t block = first + (uint64_t)b;
        uint32_t words[4];
        philox_block(seed, block, words);
        for (int lane = 0; lane < 4; lane++) {
            uint64_t pos = block * 4 + (uint64_t)lane;
            if (pos < offset || pos - offset >= (uint64_t)n) continue;
            out[pos - offset] = (T)((float)(words[lane] >> 8) * (1.0f / 16777216.0f));
        }
    }
}

extern "C" void gpu_launch_uniform(int dtype, void *out, int64_t n, uint64_t seed, uint64_t offset,
                                   const uint64_t *base) {
    if (n <= 0) return;
    int64_t nblocks = base ? n / 4 + 2 : (int64_t)((offset + (uint64_t)n - 1) / 4 - offset / 4 + 1);
    if (dtype == GPU_F32)
        uniform_kernel<float><<<gpu_blocks(nblocks), GPU_THREADS, 0, gpu_stream()>>>(
            (float *)out, n, seed, offset, base);
    else
        uniform_kernel<double><<<gpu_blocks(nblocks), GPU_THREADS, 0, gpu_stream()>>>(
            (double *)out, n, seed, offset, base);
    gpu_check_launch("uniform kernel");
}
