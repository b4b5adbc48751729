/* attention_dropout.cuh - the causal attention's dropout mask, for both
 * kernel families (attention.cu's warp-per-row kernels, attention_tiled.cu's
 * register tiles): each probability's Philox number drawn where the
 * probability is used, as core/cpu/attention.c draws it. Device code only
 * (tests/sim runs it on the CPU).
 */
#ifndef TRAIND_GPU_KERNELS_ATTENTION_DROPOUT_CUH
#define TRAIND_GPU_KERNELS_ATTENTION_DROPOUT_CUH

#include <stdint.h>

#include "gpu/kernels.h"
#include "gpu/kernels/philox.cuh"

/* Where head `head`'s numbers start: core/backend.h's attention_dropout_base. */
__device__ inline uint64_t dropout_base(const GpuAttentionArgs &a, int64_t head, int64_t t) {
    uint64_t tt = (uint64_t)(t * t);
    uint64_t offset = a.offset + (a.offset_base ? *a.offset_base : 0);
    if (a.heads <= 0) return offset + (uint64_t)head * tt;
    return offset + (uint64_t)(head / a.heads) * a.sample_stride + (uint64_t)(head % a.heads) * tt;
}

/* The dropout factor of probability (i, j) whose head's numbers start at
 * `base`: 0 or 1 / (1 - p), the same test as core/cpu/attention.c's. */
template <typename T>
__device__ inline T keep(const GpuAttentionArgs &a, uint64_t base, int64_t t, int64_t i,
                         int64_t j) {
    if (a.dropout <= 0) return T(1);
    return (double)philox_uniform_at(a.seed, base + (uint64_t)(i * t + j)) >= a.dropout
               ? T(1 / (1 - a.dropout))
               : T(0);
}

#endif
