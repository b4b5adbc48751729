/* cuda_sim.h - enough of CUDA's execution model to run a kernel file of
 * gpu/ on the CPU, for tests on machines without a GPU (CI). Force-included
 * (-include) before the kernel file, which the Makefile first passes
 * through sed: a launch `k<<<grid, block, smem, stream>>>(args)` becomes
 * `k * sim_config(grid, block, smem, stream)(args)` (operator* below runs
 * it) and `extern __shared__ T name[];` a pointer to the launch's dynamic
 * shared memory; nothing else of the file changes. tests/sim/include
 * stands in for CUDA's headers; tests/sim/runtime.cpp for gpu/runtime.cu's
 * host calls in the kernel tests, which run a launch at once, and
 * tests/sim/device for the CUDA runtime and libraries under all of gpu/,
 * which queue it on its stream (sim_launch).
 *
 * A block's threads are fibers (stacks of their own) that one host
 * thread runs in turn: each runs until it waits at a barrier or ends. __syncthreads()
 * is a barrier of the block, a warp's shuffles exchange through a
 * barrier of its lanes (so every lane must take part, as the kernels'
 * full masks promise); atomics need no lock. Blocks run one after
 * another, so a kernel's static __shared__ arrays are plain statics
 * (registered by rewrite.sed's line after each); those and the dynamic
 * shared memory, allocated at its exact size for each launch, are filled
 * with NaNs before each block, so a read of what no thread staged shows,
 * and (under ASan, as the tests build, told of each switch of stacks) a
 * read past the dynamic memory is reported. A launch a GPU would refuse
 * (an empty grid, y or z past 65535, more than 1024 threads, shared
 * memory past 48 KiB not allowed by gpu_allow_shared_memory) aborts. The
 * Makefile lowers gpu_blocks' caps (GPU_BLOCKS_MAX) so that grid-stride
 * loops go round more than once. A barrier that some threads never reach
 * (a kernel bug that would hang a GPU) aborts, naming it.
 */
#ifndef TRAIND_TESTS_SIM_CUDA_SIM_H
#define TRAIND_TESTS_SIM_CUDA_SIM_H

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
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

/* the running fiber's: set at each switch */
inline dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define SIM_FIBER_START(fake, bottom, size) __sanitizer_start_switch_fiber(fake, bottom, size)
#define SIM_FIBER_FINISH(fake, bottom, size) __sanitizer_finish_switch_fiber(fake, bottom, size)
#else
#define SIM_FIBER_START(fake, bottom, size) ((void)(fake), (void)(bottom), (void)(size))
#define SIM_FIBER_FINISH(fake, bottom, size) ((void)(fake), (void)(bottom), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

/* Switches stacks (tests/sim/fiber_switch.cpp): the running one's
 * pointer stored in *from, `to` run from where it last switched away. */
extern "C" void sim_switch_stacks(void **from, void *to);

/* A block's threads as fibers, and the host's stack that runs them. */
struct SimFiber {
    void *sp = nullptr; /* where it switched away */
    char *stack = nullptr;
    void *fake_stack = nullptr; /* ASan's, kept while the fiber waits */
    dim3 index;
    const char *waits_at = nullptr; /* the barrier it waits at, or NULL */
    bool done = false;
};

struct SimTeam {
    static constexpr size_t STACK = 256 * 1024;
    std::vector<SimFiber> fibers;
    void *host_sp = nullptr;
    void *host_fake_stack = nullptr;
    const void *host_bottom = nullptr;
    size_t host_size = 0;
    unsigned current = 0;
    std::function<void()> body; /* the block's kernel call */
    /* blocks, and each block's first sweep of threads, in reverse order: a
     * test runs a kernel both ways to find results that hang on the order
     * of its threads (float atomics' sums), which a GPU does not keep */
    bool reversed = false;
};
inline SimTeam sim_team;

/* Back to the host from the running fiber, which waits (and goes on here
 * when run again) or has ended (and its fake stack goes). */
inline void sim_fiber_leave(bool ended) {
    SimFiber &f = sim_team.fibers[sim_team.current];
    SIM_FIBER_START(ended ? nullptr : &f.fake_stack, sim_team.host_bottom, sim_team.host_size);
    sim_switch_stacks(&f.sp, sim_team.host_sp);
    SIM_FIBER_FINISH(sim_team.fibers[sim_team.current].fake_stack, nullptr, nullptr);
}

/* Where a fiber's stack starts: the block's kernel, then back to the host
 * for good. */
inline void sim_fiber_main() {
    SIM_FIBER_FINISH(nullptr, &sim_team.host_bottom, &sim_team.host_size);
    sim_team.body();
    sim_team.fibers[sim_team.current].done = true;
    sim_fiber_leave(true);
    abort(); /* an ended fiber is never switched to */
}

/* A fresh stack for f whose first switch enters sim_fiber_main: six zero
 * registers, then its address for `ret`, then a null return address for
 * it (so that the entry sees the stack aligned as after a call). */
inline void sim_fiber_start(SimFiber &f) {
    /* an ended fiber's last frames (sim_fiber_main's and sim_fiber_leave's,
     * at the stack's top) never returned: their redzones are cleared; the
     * kernel's own frames below them returned, and cleared theirs */
    ASAN_UNPOISON_MEMORY_REGION(f.stack + SimTeam::STACK - 16384, 16384);
    void **top = (void **)(f.stack + SimTeam::STACK);
    void **sp = top - 8;
    for (int i = 0; i < 6; i++) sp[i] = nullptr;
    sp[6] = (void *)&sim_fiber_main;
    sp[7] = nullptr;
    f.sp = sp;
}

/* A reusable barrier of n fibers: the last to come releases the others. */
class SimBarrier {
  public:
    explicit SimBarrier(int n) : n_(n) {}
    void wait(const char *what) {
        if (++arrived_ == n_) {
            arrived_ = 0;
            for (unsigned w : waiters_) sim_team.fibers[w].waits_at = nullptr;
            waiters_.clear();
            return;
        }
        sim_team.fibers[sim_team.current].waits_at = what;
        waiters_.push_back(sim_team.current);
        sim_fiber_leave(false);
    }

  private:
    int n_, arrived_ = 0;
    std::vector<unsigned> waiters_;
};

/* Runs the block's n threads to their ends, each in turn until it waits
 * or ends; aborts where they all wait and some never came. */
inline void sim_run_block(unsigned n, dim3 block) {
    std::vector<SimFiber> &fs = sim_team.fibers;
    if (fs.size() < n) fs.resize(n);
    for (unsigned t = 0; t < n; t++) {
        SimFiber &f = fs[t];
        if (!f.stack) { /* with a page below it that faults: an overflow stops there */
            size_t guard = 4096;
            void *p = mmap(nullptr, guard + SimTeam::STACK, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED || mprotect(p, guard, PROT_NONE) != 0) abort();
            f.stack = (char *)p + guard;
        }
        sim_fiber_start(f);
        f.index = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
        f.waits_at = nullptr;
        f.done = false;
    }
    /* each sweep runs the threads in the other order: a read that misses
     * its barrier sees a later thread's write unmade, whichever is later */
    unsigned sweep = blockIdx.x + blockIdx.y + blockIdx.z + sim_team.reversed;
    for (unsigned left = n;; sweep++) {
        bool ran = false;
        const char *stuck = nullptr; /* a barrier some wait at */
        for (unsigned i = 0; i < n; i++) {
            unsigned t = sweep % 2 ? n - 1 - i : i;
            SimFiber &f = fs[t];
            if (f.done) continue;
            if (f.waits_at) {
                stuck = f.waits_at;
                continue;
            }
            sim_team.current = t;
            threadIdx = f.index;
            SIM_FIBER_START(&sim_team.host_fake_stack, f.stack, SimTeam::STACK);
            sim_switch_stacks(&sim_team.host_sp, f.sp);
            SIM_FIBER_FINISH(sim_team.host_fake_stack, nullptr, nullptr);
            ran = true;
            if (f.done) left--;
        }
        if (!left) return;
        if (!ran) {
            fprintf(stderr, "cuda_sim: threads wait at a %s that others never reach "
                    "(block %u,%u)\n", stuck, blockIdx.x, blockIdx.y);
            abort();
        }
    }
}

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

inline void *sim_dynamic_shared() { return sim_block.shared; }

/* The kernels' static shared arrays (statics here: blocks run one after
 * another): the first thread of a block to reach one's declaration fills
 * it with NaNs before any thread uses it. A block's start moves the
 * generation on, so only the arrays of the kernel that runs are filled,
 * once a block. */
inline std::unordered_map<void *, unsigned long> sim_statics; /* array -> generation */
inline unsigned long sim_statics_generation = 1;

inline void sim_shared_static(void *p, size_t bytes) {
    unsigned long &filled = sim_statics[p];
    if (filled == sim_statics_generation) return;
    memset(p, 0xff, bytes);
    filled = sim_statics_generation;
}

inline void sim_poison_static_shared() { sim_statics_generation++; }

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

/* one fiber runs at a time: an atomic is a plain read and write */
template <typename T> inline T atomicAdd(T *at, T v) {
    T old = *at;
    *at = old + v;
    return old;
}
inline unsigned atomicCAS(unsigned *at, unsigned compare, unsigned v) {
    unsigned old = *at;
    if (old == compare) *at = v;
    return old;
}

/* A launch's configuration, then its arguments: what the rewritten
 * `k * sim_config(grid, block, smem, stream)(args)` builds for operator*. */
template <typename... A> struct SimCall {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    std::tuple<A...> args;
};

struct sim_config {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    sim_config(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = cudaStreamLegacy)
        : grid(g), block(b), smem(s), stream(st) {}
    template <typename... A> SimCall<A...> operator()(A... args) const {
        return SimCall<A...>{grid, block, smem, stream, std::tuple<A...>(args...)};
    }
};

/* Where a launch goes: the kernel tests' runtime (runtime.cpp) runs it at
 * once; the simulated device (device/) queues it on its stream, or
 * records it in the graph the stream captures. sim_device_pointer says
 * whether a kernel may be handed p (device or page-locked memory, or
 * NULL); the kernel tests' runtime, whose device memory is malloc's,
 * answers yes. */
void sim_launch(cudaStream_t stream, std::function<void()> work);
bool sim_device_pointer(const void *p);

template <typename T> inline void sim_check_argument(const T &, unsigned) {}
template <typename T> inline void sim_check_argument(T *const &p, unsigned i) {
    if (sim_device_pointer((const void *)p)) return;
    fprintf(stderr, "cuda_sim: a kernel's argument %u is host memory (%p), not the device's\n", i,
            (const void *)p);
    abort();
}

/* Runs kernel k over the call's grid, block after block, each block's
 * threads as fibers; the shared memory is NaNs at each block's start. */
template <typename... P, typename... A>
inline void sim_run(void (*k)(P...), const SimCall<A...> &c) {
    if (sim_team.body) { /* one grid at a time: the team and the block are shared */
        fprintf(stderr, "cuda_sim: a kernel run while another runs\n");
        abort();
    }
    unsigned threads = c.block.x * c.block.y * c.block.z;
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
    sim_team.body = [&] { std::apply([&](auto... a) { k(a...); }, c.args); };
    for (unsigned bz = 0; bz < c.grid.z; bz++)
        for (unsigned by = 0; by < c.grid.y; by++)
            for (unsigned bx = 0; bx < c.grid.x; bx++) {
                if (shared) memset(shared, 0xff, c.smem); /* NaNs */
                sim_poison_static_shared();
                blockIdx = dim3(bx, by, bz);
                if (sim_team.reversed)
                    blockIdx = dim3(c.grid.x - 1 - bx, c.grid.y - 1 - by, c.grid.z - 1 - bz);
                sim_run_block(threads, c.block);
            }
    sim_team.body = nullptr;
    free(shared);
    sim_block.shared = nullptr;
}

/* A launch: refused where a GPU refuses it, its pointers checked, then
 * handed to sim_launch with its arguments by value, as CUDA takes them. */
template <typename... P, typename... A> inline void operator*(void (*k)(P...), SimCall<A...> c) {
    unsigned threads = c.block.x * c.block.y * c.block.z;
    size_t limit = sim_shared_limit((const void *)k);
    if (threads == 0 || threads > 1024 || c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 ||
        c.grid.y > 65535 || c.grid.z > 65535 || c.smem > limit) {
        fprintf(stderr, "cuda_sim: a launch a GPU refuses: grid %u x %u x %u, %u threads, "
                "%zu bytes of shared memory (at most %zu)\n",
                c.grid.x, c.grid.y, c.grid.z, threads, c.smem, limit);
        abort();
    }
    unsigned i = 0;
    std::apply([&](const auto &...a) { (sim_check_argument(a, i++), ...); }, c.args);
    sim_launch(c.stream, [k, c] { sim_run(k, c); });
}

#endif
