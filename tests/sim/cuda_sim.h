/* cuda_sim.h - enough of CUDA's execution model to run a kernel file's
 * device code on the CPU, for tests on machines without a GPU (CI): a
 * block's threads are std::threads running the kernel together,
 * __syncthreads() a barrier of the block, a warp's __shfl_xor_sync an
 * exchange through a barrier of its 32 lanes. Blocks run one after
 * another; the kernel's dynamic shared memory is the test's array, filled
 * with NaNs before each block so that a read of what no thread staged
 * shows. A barrier that some threads never reach (a kernel bug that would
 * hang a GPU) aborts after 60 s instead of hanging the test.
 *
 * Compiled as C++17 with the sanitizers: an index past a host array (the
 * kernel's global or shared memory) is an ASan report.
 */
#ifndef TRAIND_TESTS_SIM_CUDA_SIM_H
#define TRAIND_TESTS_SIM_CUDA_SIM_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

struct sim_dim3 {
    unsigned x = 0, y = 0, z = 0;
};
inline thread_local sim_dim3 threadIdx, blockIdx;
inline sim_dim3 blockDim, gridDim;

struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

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

/* The block running now: its barrier, its warps' barriers and exchange slots. */
struct SimBlock {
    std::unique_ptr<SimBarrier> block;
    std::vector<std::unique_ptr<SimBarrier>> warps;
    std::vector<double> slots; /* 32 a warp */
};
inline SimBlock sim_block;

inline void __syncthreads() { sim_block.block->wait("__syncthreads"); }

/* The value of lane (lane ^ lane_mask) of the calling warp; every lane of
 * the warp takes part (the kernels here pass the full mask). */
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    if (mask != 0xffffffffu) {
        fprintf(stderr, "cuda_sim: __shfl_xor_sync with a partial mask %#x\n", mask);
        abort();
    }
    unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    SimBarrier &b = *sim_block.warps[warp];
    sim_block.slots[warp * 32 + lane] = (double)v;
    b.wait("__shfl_xor_sync (write)");
    T got = (T)sim_block.slots[warp * 32 + (lane ^ (unsigned)lane_mask)];
    b.wait("__shfl_xor_sync (read)");
    return got;
}

/* Runs body (the kernel call) over grid (gx, gy) with `threads` threads a
 * block; `shared` (bytes, of a `capacity`-byte array) is NaN-filled first. */
inline void sim_launch(unsigned gx, unsigned gy, unsigned threads, void *shared, size_t bytes,
                       size_t capacity, const std::function<void()> &body) {
    if (bytes > capacity || threads % 32 != 0) {
        fprintf(stderr, "cuda_sim: %zu bytes of shared memory (have %zu), %u threads\n", bytes,
                capacity, threads);
        abort();
    }
    gridDim = sim_dim3{gx, gy, 1};
    blockDim = sim_dim3{threads, 1, 1};
    for (unsigned by = 0; by < gy; by++)
        for (unsigned bx = 0; bx < gx; bx++) {
            memset(shared, 0xff, capacity); /* NaNs */
            sim_block.block = std::make_unique<SimBarrier>((int)threads);
            sim_block.warps.clear();
            for (unsigned w = 0; w < threads / 32; w++)
                sim_block.warps.push_back(std::make_unique<SimBarrier>(32));
            sim_block.slots.assign(threads, 0.0);
            std::vector<std::thread> team;
            for (unsigned tid = 0; tid < threads; tid++)
                team.emplace_back([&, tid] {
                    threadIdx = sim_dim3{tid, 0, 0};
                    blockIdx = sim_dim3{bx, by, 0};
                    body();
                });
            for (std::thread &th : team) th.join();
        }
}

#endif
