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
 * Out of memory: the device's cache is released (cudaFree; not while a
 * graph is captured on any thread, gpu_captures_underway) and the
 * cudaMalloc tried once more; if that fails too the allocation returns
 * NULL, the CUDA error is cleared (an OOM does not poison the context),
 * and tensor creation reports "out of memory allocating N bytes on cuda:K".
 *
 * A CUDA graph's pool (graph.cu). A captured graph keeps the addresses its
 * kernels used and replays them, so every block the capturing thread
 * allocates or frees on the device while it captures belongs to the
 * graph's pool from then on: it is reused only by that thread's capture
 * and, once freed again, goes back to the pool, not to the cache, until
 * the graph is freed and the pool's blocks rejoin the cache. A block the
 * capture frees that was allocated before it is not reused even there:
 * its bytes came from outside the graph, which may read them at each
 * replay. Blocks come
 * from the pool's own free ones, then the cache (stream order makes that
 * safe, as for any reuse), then cudaMalloc, called in the relaxed capture
 * mode (it is not a stream operation, and the capture forbids it
 * otherwise). No cache is released to CUDA during a capture.
 */
#include <cuda_runtime.h>

#include <mutex>
#include <new>
#include <unordered_map>

#include "gpu/block_cache.cuh"
#include "gpu/gpu.h"
#include "gpu/kernels.h"
#include "gpu/stream.h"

namespace {

std::mutex cache_lock;
BlockCache caches[GPU_MAX_DEVICES];

struct GraphPool {
    int device;
    BlockCache blocks; /* those it allocated: reused within the capture */
    /* blocks allocated before the capture and freed in it: their bytes
     * came from outside the graph, which may read them at every replay,
     * so nothing of the capture may write them */
    std::unordered_map<void *, size_t> retired;
};
std::unordered_map<void *, GraphPool *> pool_of; /* the blocks graphs' pools hold */
size_t pooled[GPU_MAX_DEVICES];                  /* their bytes, per device */
size_t high_water[GPU_MAX_DEVICES];              /* the most of in_use + pooled */
thread_local GraphPool *capturing;               /* this thread's capture's pool */

/* Caller holds the lock: the device's bytes in use, a graph's pool
 * counting whole, and their high-water mark. */
size_t held(int device) { return caches[device].in_use + pooled[device]; }

void note_peak(int device) {
    if (held(device) > high_water[device]) high_water[device] = held(device);
}

/* The pool that takes the blocks of `device` now: the capturing one. */
GraphPool *capture_pool(int device) {
    return capturing && capturing->device == device ? capturing : nullptr;
}

/* Caller holds the lock: p (size bytes) is the pool's from now on, in use
 * or retired; false when the bookkeeping has no memory. */
bool pool_take_over(GraphPool *g, void *p, size_t size, bool in_use) {
    try {
        pool_of[p] = g;
        if (!in_use) g->retired[p] = size;
    } catch (...) {
        pool_of.erase(p);
        return false;
    }
    if (!in_use || g->blocks.adopt(p, size)) {
        pooled[g->device] += size;
        return true;
    }
    pool_of.erase(p);
    return false;
}

cudaError_t malloc_relaxed(void **p, size_t size) {
    cudaStreamCaptureMode mode = gpu_capture_relax();
    cudaError_t e = cudaMalloc(p, size);
    gpu_capture_restore(mode);
    return e;
}

/* Caller holds the lock: a block for a request of `size` bytes while
 * capturing into g: a free one of g's, one from the cache, or a new one. */
void *pool_alloc(GraphPool *g, size_t size) {
    if (void *p = g->blocks.take(size)) return p;
    BlockCache &c = caches[g->device];
    void *p = c.take(size);
    bool fresh = !p;
    size_t got = p ? c.release(p) : size;
    if (fresh && malloc_relaxed(&p, size) != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory: not sticky */
        return NULL;
    }
    if (fresh) c.fresh++;
    if (!pool_take_over(g, p, got, true)) {
        /* never used: the cache may have it (no cudaFree in a capture) */
        if (!c.keep(p, got)) gpu_record_msg("out of host memory", "graph pool (a block lost)");
        return NULL;
    }
    note_peak(g->device);
    return p;
}

/* Releases every cached block of `device`; caller holds the lock. Not
 * while a graph is captured on any thread (gpu_captures_underway). */
void trim_locked(int device) {
    if (caches[device].kept.empty() || gpu_captures_underway() > 0) return;
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
    if (GraphPool *g = capture_pool(device)) return pool_alloc(g, size);
    BlockCache &c = caches[device];
    if (void *p = c.take(size)) {
        note_peak(device);
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
    if (!c.add(p, size)) {
        gpu_record((int)cudaFree(p), "cudaFree (allocator bookkeeping failed)");
        return NULL;
    }
    note_peak(device);
    return p;
}

extern "C" void gpu_free_bytes(int device, void *ptr) {
    if (!ptr || device < 0 || device >= GPU_MAX_DEVICES) return;
    std::lock_guard<std::mutex> guard(cache_lock);
    auto owner = pool_of.empty() ? pool_of.end() : pool_of.find(ptr);
    if (owner != pool_of.end()) { /* a graph's: back to its pool */
        BlockCache &b = owner->second->blocks;
        size_t size = b.release(ptr); /* 0: freed twice, or retired */
        if (size == 0) gpu_record_msg("a block freed twice", "graph pool");
        else if (!b.keep(ptr, size)) gpu_record_msg("out of host memory", "graph pool");
        return;
    }
    BlockCache &c = caches[device];
    size_t size = c.release(ptr);
    if (GraphPool *g = size ? capture_pool(device) : nullptr) { /* the graph may read it */
        /* out of host memory, the block is lost rather than handed on, and
         * the sticky error fails the capture */
        if (!pool_take_over(g, ptr, size, false))
            gpu_record_msg("out of host memory", "graph pool (a block lost)");
        return;
    }
    if (size == 0 || !c.keep(ptr, size)) { /* not ours (should not happen), or no room */
        if (gpu_captures_underway() > 0) { /* lost rather than a capture ended */
            gpu_record_msg(size ? "out of host memory" : "a block not the allocator's",
                           "allocator (a block lost during a capture)");
            return;
        }
        gpu_use_device(device);
        gpu_record((int)cudaFree(ptr), size ? "cudaFree" : "cudaFree (foreign block)");
    }
}

extern "C" void gpu_allocator_stats(int device, size_t *in_use, size_t *cached, size_t *peak,
                                    uint64_t *cuda_mallocs) {
    if (device < 0 || device >= GPU_MAX_DEVICES) device = 0;
    std::lock_guard<std::mutex> guard(cache_lock);
    const BlockCache &c = caches[device];
    if (in_use) *in_use = held(device); /* graphs' blocks: theirs, in use */
    if (cached) *cached = c.cached;
    if (peak) *peak = high_water[device];
    if (cuda_mallocs) *cuda_mallocs = c.fresh;
}

extern "C" void gpu_allocator_reset_peak(int device) {
    if (device < 0 || device >= GPU_MAX_DEVICES) return;
    std::lock_guard<std::mutex> guard(cache_lock);
    high_water[device] = held(device);
}

extern "C" void *gpu_allocator_capture_begin(int device) {
    if (device < 0 || device >= GPU_MAX_DEVICES || capturing) return NULL;
    GraphPool *g = new (std::nothrow) GraphPool;
    if (g) g->device = device;
    std::lock_guard<std::mutex> guard(cache_lock);
    capturing = g;
    return g;
}

extern "C" void gpu_allocator_capture_end(void) {
    std::lock_guard<std::mutex> guard(cache_lock);
    capturing = nullptr;
}

extern "C" void gpu_allocator_pool_release(void *pool) {
    GraphPool *g = (GraphPool *)pool;
    if (!g) return;
    std::lock_guard<std::mutex> guard(cache_lock);
    BlockCache &c = caches[g->device];
    for (auto &kv : g->blocks.live) { /* still held by tensors: freed later, to the cache */
        pool_of.erase(kv.first);
        pooled[g->device] -= kv.second;
        if (!c.adopt(kv.first, kv.second)) gpu_record_msg("out of host memory", "graph pool");
    }
    auto to_cache = [&](void *p, size_t size) {
        pool_of.erase(p);
        pooled[g->device] -= size;
        if (!c.keep(p, size)) gpu_record((int)cudaFree(p), "cudaFree");
    };
    for (auto &kv : g->blocks.kept) to_cache(kv.second, kv.first);
    for (auto &kv : g->retired) to_cache(kv.first, kv.second);
    delete g;
}

extern "C" void gpu_allocator_trim(int device) {
    if (device < 0 || device >= GPU_MAX_DEVICES) return;
    std::lock_guard<std::mutex> guard(cache_lock);
    trim_locked(device);
}
