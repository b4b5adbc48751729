/* pinned.cu - page-locked host buffers, for the DataLoader's batches.
 *
 * A copy from pageable memory goes through the driver's own staging buffer
 * at a fraction of PCIe's speed; from page-locked memory the copy engine
 * reads it directly. The DataLoader gathers each batch into such a buffer
 * (tensor_empty_pinned) and its prefetch thread uploads it from there.
 *
 * cudaHostAlloc pins every page and costs far more than malloc, so freed
 * buffers are cached by size (rounded as the device allocator rounds) and
 * taken back by the next request of that size, up to kCacheMax bytes kept;
 * when pinning fails, the kept buffers are unpinned and it is tried again.
 * A buffer is reusable as soon as it is freed: every copy out of one
 * (gpu_memcpy_from_host_beside, cudaMemcpy) has completed when it returns.
 * Portable: the buffers serve every device.
 */
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <unordered_map>

#include "gpu/gpu.h"
#include "gpu/kernels.h"

namespace {

const size_t kCacheMax = (size_t)256 << 20;

std::mutex lock;
std::multimap<size_t, void *> free_buffers; /* size -> buffer */
std::unordered_map<void *, size_t> live;    /* buffer -> size */
size_t in_use, cached;

size_t round_size(size_t n) {
    const size_t small = 4096, large = (size_t)2 << 20;
    if (n == 0) n = 1;
    if (n < ((size_t)1 << 20)) return (n + small - 1) / small * small;
    return (n + large - 1) / large * large;
}

/* Unpins every kept buffer; the caller holds the lock. */
void trim_locked() {
    for (auto &kv : free_buffers) (void)cudaFreeHost(kv.second);
    free_buffers.clear();
    cached = 0;
}

} // namespace

/* NULL when the memory cannot be pinned (the caller falls back to plain
 * memory); that failure is not recorded as an error. */
extern "C" void *gpu_pinned_alloc(size_t nbytes) {
    size_t size = round_size(nbytes);
    std::lock_guard<std::mutex> g(lock);
    auto it = free_buffers.lower_bound(size);
    if (it != free_buffers.end() && it->first <= size + size / 4) {
        void *p = it->second;
        size_t got = it->first;
        free_buffers.erase(it);
        cached -= got;
        live[p] = got;
        in_use += got;
        return p;
    }
    void *p = nullptr;
    if (cudaHostAlloc(&p, size, cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError();
        trim_locked();
        if (cudaHostAlloc(&p, size, cudaHostAllocPortable) != cudaSuccess) {
            (void)cudaGetLastError();
            return nullptr;
        }
    }
    live[p] = size;
    in_use += size;
    return p;
}

extern "C" void gpu_pinned_free(void *ptr) {
    if (!ptr) return;
    std::lock_guard<std::mutex> g(lock);
    auto it = live.find(ptr);
    if (it == live.end()) return; /* not ours: nothing sane to do */
    size_t size = it->second;
    live.erase(it);
    in_use -= size;
    if (cached + size <= kCacheMax) {
        free_buffers.emplace(size, ptr);
        cached += size;
    } else {
        gpu_record((int)cudaFreeHost(ptr), "cudaFreeHost");
    }
}

extern "C" void gpu_pinned_stats(size_t *in_use_bytes, size_t *cached_bytes) {
    std::lock_guard<std::mutex> g(lock);
    if (in_use_bytes) *in_use_bytes = in_use;
    if (cached_bytes) *cached_bytes = cached;
}
