/* pinned.cu - page-locked host buffers, for the DataLoader's batches.
 *
 * A copy from pageable memory goes through the driver's own staging buffer
 * at a fraction of PCIe's speed; from page-locked memory the copy engine
 * reads it directly. The DataLoader gathers each batch into such a buffer
 * (tensor_empty_pinned) and its prefetch thread uploads it from there.
 *
 * cudaHostAlloc pins every page and costs far more than malloc, so freed
 * buffers are cached by size (block_cache.cuh, as the device allocator's,
 * rounded to whole pages) and taken back by the next request of that size,
 * up to kCacheMax bytes kept; when pinning fails, the kept buffers are
 * unpinned and it is tried again.
 * A buffer is reusable as soon as it is freed: every copy out of one
 * (gpu_memcpy_from_host_beside, cudaMemcpy) has completed when it returns.
 * While a graph is captured, on any thread, nothing is unpinned
 * (cudaFreeHost waits for the device): the cache keeps buffers past
 * kCacheMax then, and the next free after the capture trims it.
 * Portable: the buffers serve every device.
 */
#include <cuda_runtime.h>

#include <mutex>

#include "gpu/block_cache.cuh"
#include "gpu/gpu.h"
#include "gpu/kernels.h"

namespace {

const size_t kCacheMax = (size_t)256 << 20;

std::mutex lock;
BlockCache cache;

} // namespace

/* NULL when the memory cannot be pinned (the caller falls back to plain
 * memory); that failure is not recorded as an error. */
extern "C" void *gpu_pinned_alloc(size_t nbytes) {
    size_t size = BlockCache::round(nbytes, 4096);
    std::lock_guard<std::mutex> g(lock);
    if (void *p = cache.take(size)) return p;
    void *p = nullptr;
    if (cudaHostAlloc(&p, size, cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError();
        if (gpu_captures_underway() > 0) return nullptr; /* nothing unpinned meanwhile */
        cache.drain([](void *b) { (void)cudaFreeHost(b); }); /* unpin what is kept, once more */
        if (cudaHostAlloc(&p, size, cudaHostAllocPortable) != cudaSuccess) {
            (void)cudaGetLastError();
            return nullptr;
        }
    }
    if (!cache.add(p, size)) {
        (void)cudaFreeHost(p);
        return nullptr;
    }
    return p;
}

extern "C" void gpu_pinned_free(void *ptr) {
    if (!ptr) return;
    std::lock_guard<std::mutex> g(lock);
    size_t size = cache.release(ptr);
    if (size == 0) return; /* not ours: nothing sane to do */
    bool capturing = gpu_captures_underway() > 0;
    if (!capturing && cache.cached > kCacheMax) /* kept past it during a capture */
        cache.drain([](void *b) { gpu_record((int)cudaFreeHost(b), "cudaFreeHost"); });
    if ((capturing || cache.cached + size <= kCacheMax) && cache.keep(ptr, size)) return;
    if (!capturing) gpu_record((int)cudaFreeHost(ptr), "cudaFreeHost");
    /* else: out of host memory to keep it, in a capture: the buffer is lost
     * (pinned until the process ends), not the capture */
}

extern "C" void gpu_pinned_wait_frees(void) { std::lock_guard<std::mutex> g(lock); }

extern "C" void gpu_pinned_stats(size_t *in_use_bytes, size_t *cached_bytes) {
    std::lock_guard<std::mutex> g(lock);
    if (in_use_bytes) *in_use_bytes = cache.in_use;
    if (cached_bytes) *cached_bytes = cache.cached;
}
