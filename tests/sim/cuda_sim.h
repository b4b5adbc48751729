/* cuda_sim.h - enough of CUDA's execution model to run a kernel file of
 * gpu/ on the CPU, for tests on machines without a GPU (CI). Force-included
 * (-include) before the kernel file, which the Makefile first passes
 * through sed: a launch `k<<<grid, block, smem, stream>>>(args)` becomes
 * `k * sim_config(grid, block, smem, stream)(args)` (operator* below runs
 * it) and `extern __shared__ T name[];` a pointer to the launch's dynamic
 * shared memory; nothing else of the file changes. tests/sim/include
 * stands in for CUDA's runtime headers and tests/sim/runtime.cpp for
 * gpu/runtime.cu's host calls.
 *
 * A block's threads are std::threads running the kernel together (one
 * team for the whole grid, meeting at each block's start);
 * __syncthreads() is a barrier of the block, a warp's shuffles exchange
 * through a barrier of its lanes (so every lane must take part, as the
 * kernels' full masks promise), atomics take a lock. Blocks run one after
 * another, so a kernel's static __shared__ arrays are plain statics
 * (registered by rewrite.sed's line after each); those and the dynamic
 * shared memory, allocated
 * at its exact size for each launch, are filled with NaNs before each
 * block, so a read of what no thread staged shows, and (under ASan, as
 * the tests build) a read past the dynamic memory is reported. A launch a
 * GPU would refuse (an empty grid, y or z past 65535, more than 1024
 * threads, shared memory past 48 KiB not allowed by
 * gpu_allow_shared_memory) aborts. The Makefile lowers gpu_blocks' caps
 * (GPU_BLOCKS_MAX) so that grid-stride loops go round more than once.
 * A barrier that some threads never reach (a kernel bug that would hang a
 * GPU) aborts after 60 s instead of hanging the test.
 */
#ifndef TRAIND_TESTS_SIM_CUDA_SIM_H
#define TRAIND_TESTS_SIM_CUDA_SIM_H

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
/* rewrite.sed rewrites every __shared__ it knows; one left over fails */
#define __shared__ SIM_SHARED_NOT_REWRITTEN
#define __align__(n) __attribute__((aligned(n)))

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }

/* A reusable barrier of n threads that gives up after 60 s. */
class SimBarrier {
  public:
    explicit SimBarrier(int n) : n_(n) {}
    void wait(const char *what) {
        std::unique_lock<std::mutex> lock(mu_);
        unsigned long gen = generation_;
        if (++arrived_ == n_) {
            arrived_ = 0;
            generation_++;
            cv_.notify_all();
            return;
        }
        if (!cv_.wait_for(lock, std::chrono::seconds(60), [&] { return generation_ != gen; })) {
            fprintf(stderr, "cuda_sim: %s: %d of %d threads never came (block %u,%u)\n", what,
                    n_ - arrived_, n_, blockIdx.x, blockIdx.y);
            abort();
        }
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    int n_, arrived_ = 0;
    unsigned long generation_ = 0;
};

/* The block running now: its barrier, its warps' barriers and exchange
 * slots (8 bytes a lane), and the launch's dynamic shared memory. */
struct SimBlock {
    std::unique_ptr<SimBarrier> block;
    std::vector<std::unique_ptr<SimBarrier>> warps;
    std::vector<uint64_t> slots;
    unsigned char *shared = nullptr;
    size_t shared_bytes = 0;
};
inline SimBlock sim_block;
inline std::mutex sim_atomics;

inline void *sim_dynamic_shared() { return sim_block.shared; }

/* The kernels' static shared arrays (statics here: blocks run one after
 * another), each registered by the thread that reaches its declaration
 * first, which fills it with NaNs before any thread of the block uses it
 * (the others wait on the lock); filled again at each block's start. */
inline std::mutex sim_statics_lock;
inline std::vector<std::pair<void *, size_t>> sim_statics;

inline void sim_shared_static(void *p, size_t bytes) {
    std::lock_guard<std::mutex> g(sim_statics_lock);
    for (auto &s : sim_statics)
        if (s.first == p) return;
    memset(p, 0xff, bytes);
    sim_statics.push_back({p, bytes});
}

inline void sim_poison_static_shared() {
    std::lock_guard<std::mutex> g(sim_statics_lock);
    for (auto &s : sim_statics) memset(s.first, 0xff, s.second);
}

/* Dynamic shared memory past 48 KiB a kernel may use: what the kernel
 * file asked gpu_allow_shared_memory for (runtime.cpp records it). */
inline std::mutex sim_allowed_lock;
inline std::vector<std::pair<const void *, size_t>> sim_allowed;

inline void sim_allow_shared(const void *kernel, size_t bytes) {
    std::lock_guard<std::mutex> g(sim_allowed_lock);
    sim_allowed.push_back({kernel, bytes});
}

inline size_t sim_shared_limit(const void *kernel) {
    std::lock_guard<std::mutex> g(sim_allowed_lock);
    size_t limit = 48 * 1024;
    for (auto &a : sim_allowed)
        if (a.first == kernel && a.second > limit) limit = a.second;
    return limit;
}

inline unsigned sim_thread() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

inline void __syncthreads() { sim_block.block->wait("__syncthreads"); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }

/* Lane `src` of the calling warp's values of v (v where src is past the
 * warp); every lane of the warp takes part. */
template <typename T> inline T sim_exchange(unsigned mask, T v, int src, const char *what) {
    static_assert(sizeof(T) <= 8, "a shuffle moves 8 bytes at most");
    if (mask != 0xffffffffu) {
        fprintf(stderr, "cuda_sim: %s with a partial mask %#x\n", what, mask);
        abort();
    }
    unsigned t = sim_thread(), warp = t / 32, lane = t % 32;
    if (sim_block.slots.size() % 32 != 0) {
        fprintf(stderr, "cuda_sim: %s in a block of %zu threads, not whole warps\n", what,
                sim_block.slots.size());
        abort();
    }
    SimBarrier &b = *sim_block.warps[warp];
    memcpy(&sim_block.slots[t], &v, sizeof v);
    b.wait(what);
    T got = v;
    unsigned from = warp * 32 + (unsigned)src;
    if (src >= 0 && src < 32 && from < sim_block.slots.size())
        memcpy(&got, &sim_block.slots[from], sizeof got);
    b.wait(what);
    (void)lane;
    return got;
}

template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    return sim_exchange(mask, v, (int)(sim_thread() % 32) ^ lane_mask, "__shfl_xor_sync");
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
    return sim_exchange(mask, v, (int)(sim_thread() % 32 + delta), "__shfl_down_sync");
}
template <typename T> inline T __shfl_sync(unsigned mask, T v, int src) {
    return sim_exchange(mask, v, src & 31, "__shfl_sync");
}

template <typename T> inline T atomicAdd(T *at, T v) {
    std::lock_guard<std::mutex> g(sim_atomics);
    T old = *at;
    *at = old + v;
    return old;
}
inline unsigned atomicCAS(unsigned *at, unsigned compare, unsigned v) {
    std::lock_guard<std::mutex> g(sim_atomics);
    unsigned old = *at;
    if (old == compare) *at = v;
    return old;
}

/* A launch's configuration, then its arguments: what the rewritten
 * `k * sim_config(grid, block, smem, stream)(args)` builds for operator*. */
template <typename... A> struct SimCall {
    dim3 grid, block;
    size_t smem;
    std::tuple<A...> args;
};

struct sim_config {
    dim3 grid, block;
    size_t smem;
    sim_config(dim3 g, dim3 b, size_t s = 0, cudaStream_t stream = cudaStreamLegacy)
        : grid(g), block(b), smem(s) {
        (void)stream;
    }
    template <typename... A> SimCall<A...> operator()(A... args) const {
        return SimCall<A...>{grid, block, smem, std::tuple<A...>(args...)};
    }
};

/* Runs kernel k over the call's grid, block after block, by one team of
 * threads (a thread a block's thread) that meets at each block's start:
 * there thread 0 refills the shared memory with NaNs. */
template <typename... P, typename... A> inline void operator*(void (*k)(P...), SimCall<A...> c) {
    unsigned threads = c.block.x * c.block.y * c.block.z;
    size_t limit = sim_shared_limit((const void *)k);
    /* what a GPU refuses to launch */
    if (threads == 0 || threads > 1024 || c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 ||
        c.grid.y > 65535 || c.grid.z > 65535 || c.smem > limit) {
        fprintf(stderr, "cuda_sim: a launch a GPU refuses: grid %u x %u x %u, %u threads, "
                "%zu bytes of shared memory (at most %zu)\n",
                c.grid.x, c.grid.y, c.grid.z, threads, c.smem, limit);
        abort();
    }
    gridDim = c.grid;
    blockDim = c.block;
    void *shared = nullptr;
    if (c.smem && posix_memalign(&shared, 16, c.smem) != 0) abort();
    sim_block.shared = (unsigned char *)shared;
    sim_block.shared_bytes = c.smem;
    sim_block.block = std::make_unique<SimBarrier>((int)threads);
    sim_block.warps.clear();
    for (unsigned w = 0; w < (threads + 31) / 32; w++)
        sim_block.warps.push_back(
            std::make_unique<SimBarrier>((int)(threads - 32 * w < 32 ? threads - 32 * w : 32)));
    sim_block.slots.assign(threads, 0);
    SimBarrier edge((int)threads); /* apart from the kernel's own barriers */
    std::vector<std::thread> team;
    for (unsigned t = 0; t < threads; t++)
        team.emplace_back([&, t] {
            threadIdx = dim3(t % c.block.x, t / c.block.x % c.block.y,
                             t / (c.block.x * c.block.y));
            for (unsigned bz = 0; bz < c.grid.z; bz++)
                for (unsigned by = 0; by < c.grid.y; by++)
                    for (unsigned bx = 0; bx < c.grid.x; bx++) {
                        edge.wait("a block's start");
                        if (t == 0 && shared) memset(shared, 0xff, c.smem); /* NaNs */
                        if (t == 0) sim_poison_static_shared();
                        edge.wait("a block's start");
                        blockIdx = dim3(bx, by, bz);
                        std::apply([&](auto... a) { k(a...); }, c.args);
                    }
        });
    for (std::thread &th : team) th.join();
    free(shared);
    sim_block.shared = nullptr;
}

#endif
