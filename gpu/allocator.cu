/* allocator.cu - a caching device allocator, as PyTorch's on the GPU.
 *
 * cudaMalloc and cudaFree synchronise the device and cost tens of
 * microseconds, and a training step frees and allocates the same buffers
 * every time. So a freed block goes to a per-device cache keyed by its
 * (rounded) size and the next request of that size takes it back: after
 * the first step, no cudaMalloc happens in the loop. Sizes round up to
 * 512 bytes below 1 MiB and to 2 MiB above, so nearby sizes share blocks;
 * a cached block at most 25% larger than the request is also taken (the
 * bookkeeping is block_cache.cuh's, which pinned.cu shares).
 *
 * Reuse is safe without events because every kernel runs on the one
 * default stream: work on the old owner of a block is queued before any
 * work of the new one. The one other stream, the copy stream of the
 * DataLoader's uploads (runtime.cu), first waits for the default stream.
 *
 * Out of memory: the device's cache is released (cudaFree) and the
 * cudaMalloc tried once more; if that fails too the allocation returns
 * NULL, the CUDA error is cleared (an OOM does not poison the context),
 * and tensor creation reports "out of memory allocating N bytes on cuda:K".
 */
#include <cuda_runtime.h>

#include <mutex>

#include "gpu/block_cache.cuh"
#include "gpu/gpu.h"
#include "gpu/kernels.h"

namespace {

std::mutex cache_lock;
BlockCache caches[GPU_MAX_DEVICES];

/* Releases every cached block of `device`; caller holds the lock. */
void trim_locked(int device) {
    if (caches[device].kept.empty()) return;
    gpu_use_device(device);
    caches[device].drain(
        [](void *p) { gpu_record((int)cudaFree(p), "cudaFree (trim)"); });
}

} // namespace

extern "C" void *gpu_alloc_bytes(int device, size_t nbytes) {
    if (device < 0 || device >= GPU_MAX_DEVICES) return NULL;
    size_t size = BlockCache::round(nbytes, 512);
    /* The op that allocates runs next on this device: make it current here,
     * since gemm, im2col and col2im only see raw pointers (gpu/backend.c). */
    gpu_use_device(device);
    std::lock_guard<std::mutex> guard(cache_lock);
    BlockCache &c = caches[device];
    if (void *p = c.take(size)) return p;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, size);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is not sticky: clear it */
        trim_locked(device);
        e = cudaMalloc(&p, size);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return NULL;
        }
    }
    if (!c.add(p, size)) {
        gpu_record((int)cudaFree(p), "cudaFree (allocator bookkeeping failed)");
        return NULL;
    }
    return p;
}

extern "C" void gpu_free_bytes(int device, void *ptr) {
    if (!ptr || device < 0 || device >= GPU_MAX_DEVICES) return;
    std::lock_guard<std::mutex> guard(cache_lock);
    BlockCache &c = caches[device];
    size_t size = c.release(ptr);
    if (size == 0 || !c.keep(ptr, size)) { /* not ours (should not happen), or no room */
        gpu_use_device(device);
        gpu_record((int)cudaFree(ptr), size ? "cudaFree" : "cudaFree (foreign block)");
    }
}

extern "C" void gpu_allocator_stats(int device, size_t *in_use, size_t *cached, size_t *peak,
                                    uint64_t *cuda_mallocs) {
    if (device < 0 || device >= GPU_MAX_DEVICES) device = 0;
    std::lock_guard<std::mutex> guard(cache_lock);
    const BlockCache &c = caches[device];
    if (in_use) *in_use = c.in_use;
    if (cached) *cached = c.cached;
    if (peak) *peak = c.peak;
    if (cuda_mallocs) *cuda_mallocs = c.fresh;
}

extern "C" void gpu_allocator_reset_peak(int device) {
    if (device < 0 || device >= GPU_MAX_DEVICES) return;
    std::lock_guard<std::mutex> guard(cache_lock);
    caches[device].peak = caches[device].in_use;
}

extern "C" void gpu_allocator_trim(int device) {
    if (device < 0 || device >= GPU_MAX_DEVICES) return;
    std::lock_guard<std::mutex> guard(cache_lock);
    trim_locked(device);
}
