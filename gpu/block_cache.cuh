/* block_cache.cuh - the bookkeeping of a caching allocator, shared by the
 * device allocator (allocator.cu, cudaMalloc) and the pinned host buffers
 * (pinned.cu, cudaHostAlloc). Sizes are rounded so that nearby requests
 * share blocks; a freed block is kept and handed to the next request of its
 * size, or of a size it exceeds by at most 25%. The caller holds its own
 * lock around every call and makes the CUDA calls itself; this only counts.
 * The standard containers may throw std::bad_alloc: that is caught here and
 * reported as false, so it never crosses the allocators' C interface.
 */
#ifndef TRAIND_GPU_BLOCK_CACHE_CUH
#define TRAIND_GPU_BLOCK_CACHE_CUH

#include <cstddef>
#include <cstdint>
#include <map>
#include <unordered_map>

struct BlockCache {
    std::multimap<size_t, void *> kept;      /* size -> block, free for reuse */
    std::unordered_map<void *, size_t> live; /* block -> size, handed out */
    size_t in_use = 0, cached = 0, peak = 0; /* bytes */
    uint64_t fresh = 0;                      /* blocks obtained from CUDA */

    /* n rounded up to `small` bytes below 1 MiB, to 2 MiB above. */
    static size_t round(size_t n, size_t small) {
        const size_t large = (size_t)2 << 20;
        if (n == 0) n = 1;
        if (n < ((size_t)1 << 20)) return (n + small - 1) / small * small;
        return (n + large - 1) / large * large;
    }

    /* A kept block for `size` (rounded) bytes, now in use; NULL if none fits. */
    void *take(size_t size) {
        auto it = kept.lower_bound(size);
        if (it == kept.end() || it->first > size + size / 4) return nullptr;
        void *p = it->second;
        size_t got = it->first;
        try {
            live[p] = got;
        } catch (...) {
            return nullptr; /* the block stays kept */
        }
        kept.erase(it);
        cached -= got;
        count_in(got);
        return p;
    }

    /* Records p, `size` bytes just obtained from CUDA, as in use; false
     * when the bookkeeping has no memory (the caller gives p back). */
    bool add(void *p, size_t size) {
        try {
            live[p] = size;
        } catch (...) {
            return false;
        }
        fresh++;
        count_in(size);
        return true;
    }

    /* p no longer in use: its size, or 0 when p is not one of ours. */
    size_t release(void *p) {
        auto it = live.find(p);
        if (it == live.end()) return 0;
        size_t size = it->second;
        live.erase(it);
        in_use -= size;
        return size;
    }

    /* Keeps p (of `size` bytes, released) for reuse; false when it cannot
     * be kept (the caller gives it back to CUDA). */
    bool keep(void *p, size_t size) {
        try {
            kept.emplace(size, p);
        } catch (...) {
            return false;
        }
        cached += size;
        return true;
    }

    /* Records p, `size` bytes in use elsewhere until now, as in use here
     * (a graph's pool handing its blocks back); false as add's. */
    bool adopt(void *p, size_t size) {
        try {
            live[p] = size;
        } catch (...) {
            return false;
        }
        count_in(size);
        return true;
    }

    /* Hands every kept block to give_back(block) and forgets them. */
    template <typename F> void drain(F give_back) {
        for (auto &kv : kept) give_back(kv.second);
        kept.clear();
        cached = 0;
    }

  private:
    void count_in(size_t size) {
        in_use += size;
        if (in_use > peak) peak = in_use;
    }
};

#endif
