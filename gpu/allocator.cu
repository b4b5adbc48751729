/* allocator.cu - a caching device allocator, as PyTorch's on the GPU.
 *
 * cudaMalloc and cudaFree synchronise the device and cost tens of
 * microseconds, and a training step frees and allocates the same buffers
 * every time. So a freed block goes to a per-device cache keyed by its
 * (rounded) size and the next request of that size takes it back: after
 * the first step, no cudaMalloc happens in the loop. Sizes round up to
 * 512 bytes below 1 MiB and to 2 MiB above, so nearby sizes share blocks;
 * a cached block at most 25% larger than the request is also taken.
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

#include <map>
#include <mutex>
#include <unordered_map>

#include "gpu/gpu.h"
#include "gpu/kernels.h"

namespace {

struct DeviceCache {
    std::multimap<size_t, void *> free_blocks; /* size -> block */
    std::unordered_map<void *, size_t> live;   /* block -> size */
    size_t in_use = 0, cached = 0, peak = 0;
    uint64_t mallocs = 0;
};

std::mutex cache_lock;
DeviceCache caches[GPU_MAX_DEVICES];

size_t round_size(size_t n) {
    const size_t small = 512, large = (size_t)2 << 20;
    if (n == 0) n = 1;
    if (n < ((size_t)1 << 20)) return (n + small - 1) / small * small;
    return (n + large - 1) / large * large;
}

/* Releases every cached block of d; caller holds the lock. */
void trim_locked(int device) {
    DeviceCache &c = caches[device];
    if (c.free_blocks.empty()) return;
    gpu_use_device(device);
    for (auto &kv : c.free_blocks) gpu_record((int)cudaFree(kv.second), "cudaFree (trim)");
    c.free_blocks.clear();
    c.cached = 0;
}

} // namespace

extern "C" void *gpu_alloc_bytes(int device, size_t nbytes) {
    if (device < 0 || device >= GPU_MAX_DEVICES) return NULL;
    size_t size = round_size(nbytes);
    /* The op that allocates runs next on this device: make it current here,
     * since gemm, im2col and col2im only see raw pointers (gpu/backend.c). */
    gpu_use_device(device);
    std::lock_guard<std::mutex> guard(cache_lock);
    DeviceCache &c = caches[device];
    auto it = c.free_blocks.lower_bound(size);
    if (it != c.free_blocks.end() && it->first <= size + size / 4) {
        void *p = it->second;
        size_t got = it->first;
        c.free_blocks.erase(it);
        c.cached -= got;
        c.live[p] = got;
        c.in_use += got;
        if (c.in_use > c.peak) c.peak = c.in_use;
        return p;
    }
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
    c.mallocs++;
    try {
        c.live[p] = size;
    } catch (...) {
        gpu_record((int)cudaFree(p), "cudaFree (allocator bookkeeping failed)");
        return NULL;
    }
    c.in_use += size;
    if (c.in_use > c.peak) c.peak = c.in_use;
    return p;
}

extern "C" void gpu_free_bytes(int device, void *ptr) {
    if (!ptr || device < 0 || device >= GPU_MAX_DEVICES) return;
    std::lock_guard<std::mutex> guard(cache_lock);
    DeviceCache &c = caches[device];
    auto it = c.live.find(ptr);
    if (it == c.live.end()) { /* not ours: should not happen, but do not leak it */
        gpu_use_device(device);
        gpu_record((int)cudaFree(ptr), "cudaFree (foreign block)");
        return;
    }
    size_t size = it->second;
    c.live.erase(it);
    c.in_use -= size;
    try {
        c.free_blocks.emplace(size, ptr);
        c.cached += size;
    } catch (...) {
        gpu_use_device(device);
        gpu_record((int)cudaFree(ptr), "cudaFree");
    }
}

extern "C" void gpu_allocator_stats(int device, size_t *in_use, size_t *cached, size_t *peak,
                                    uint64_t *cuda_mallocs) {
    if (device < 0 || device >= GPU_MAX_DEVICES) device = 0;
    std::lock_guard<std::mutex> guard(cache_lock);
    DeviceCache &c = caches[device];
    if (in_use) *in_use = c.in_use;
    if (cached) *cached = c.cached;
    if (peak) *peak = c.peak;
    if (cuda_mallocs) *cuda_mallocs = c.mallocs;
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
