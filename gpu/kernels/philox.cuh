/* philox.cuh - Philox-4x32-10 on the device, identical to core/rng.c:
 * key = (seed low, seed high), counter = (block low, block high, 0, 0), ten
 * rounds with the key bumped between rounds. Number n of stream `seed` is
 * word n % 4 of block n / 4; philox_uniform_at gives it as core/rng.c's
 * philox_uniform does (the top 24 bits scaled by 2^-24). Shared by
 * random.cu (torch.rand-like fills) and attention.cu (its dropout mask).
 */
#ifndef TRAIND_GPU_KERNELS_PHILOX_CUH
#define TRAIND_GPU_KERNELS_PHILOX_CUH

#include <stdint.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

__device__ inline void philox_block(uint64_t seed, uint64_t counter, uint32_t out[4]) {
    uint32_t c[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0u, 0u};
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
        uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c[0] = n0;
        c[1] = n1;
        c[2] = n2;
        c[3] = n3;
    }
    for (int i = 0; i < 4; i++) out[i] = c[i];
}

/* Number n of stream `seed` as a uniform float in [0, 1). */
__device__ inline float philox_uniform_at(uint64_t seed, uint64_t n) {
    uint32_t words[4];
    philox_block(seed, n / 4, words);
    return (float)(words[n % 4] >> 8) * (1.0f / 16777216.0f);
}

#endif
