/* rng.c - Philox-4x32-10 and the sequential Rng front end; see rng.h.
 *
 * Philox (Salmon et al., SC'11, as in Random123 and curand) turns a 128-bit
 * counter and a 64-bit key into four 32-bit outputs with ten rounds of two
 * 32x32->64 multiplies. Here the key is the seed (low word, high word) and
 * the counter is (n low, n high, 0, 0), so the stream `seed` is the sequence
 * of blocks n = 0, 1, 2, ... and 32-bit number `offset` is word offset % 4
 * of block offset / 4. The GPU backend computes the same function, which is
 * why CPU and CUDA runs draw identical numbers.
 *
 * Rng keeps no cache: every draw recomputes its block from (seed, offset)
 * (a draw computes each block its words fall in once). That
 * costs up to 4x the Philox work of a cached generator, but the state a
 * checkpoint saves stays exactly (seed, offset); weight init, the one big
 * consumer, draws its values on all threads (core/nn/init.c).
 */
#include "core/rng.h"

#include <math.h>
#include <stddef.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

static inline void philox_round(uint32_t ctr[4], const uint32_t key[2]) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * ctr[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * ctr[2];
    uint32_t c0 = (uint32_t)(p1 >> 32) ^ ctr[1] ^ key[0];
    uint32_t c1 = (uint32_t)p1;
    uint32_t c2 = (uint32_t)(p0 >> 32) ^ ctr[3] ^ key[1];
    uint32_t c3 = (uint32_t)p0;
    ctr[0] = c0;
    ctr[1] = c1;
    ctr[2] = c2;
    ctr[3] = c3;
}

/* The full 128-bit-counter form, as Random123's philox4x32_10. Not static so
 * the known-answer tests (whose counters use all four words) can reach it;
 * declared only there. */
void philox4x32_full(const uint32_t counter[4], const uint32_t key_in[2], uint32_t out[4]);

void philox4x32_full(const uint32_t counter[4], const uint32_t key_in[2], uint32_t out[4]) {
    uint32_t ctr[4] = {counter[0], counter[1], counter[2], counter[3]};
    uint32_t key[2] = {key_in[0], key_in[1]};
    for (int round = 0; round < 10; round++) {
        if (round > 0) { /* the key is bumped between rounds, 9 times in all */
            key[0] += PHILOX_W0;
            key[1] += PHILOX_W1;
        }
        philox_round(ctr, key);
    }
    for (int i = 0; i < 4; i++) out[i] = ctr[i];
}

void philox4x32(uint64_t seed, uint64_t counter, uint32_t out[4]) {
    const uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_full(ctr, key, out);
}

static uint32_t philox_u32(uint64_t seed, uint64_t offset) {
    uint32_t block[4];
    philox4x32(seed, offset / 4, block);
    return block[offset % 4];
}

float philox_uniform(uint64_t seed, uint64_t offset) {
    /* The top 24 bits: every value is exactly representable in float, so
     * the result is < 1 (never rounds up to 1.0f). */
    return (float)(philox_u32(seed, offset) >> 8) * (1.0f / 16777216.0f);
}

void rng_init(Rng *rng, uint64_t seed) {
    rng->seed = seed;
    rng->offset = 0;
    rng->device_base = NULL;
    rng->capture_base = 0;
}

uint32_t rng_next_u32(Rng *rng) { return philox_u32(rng->seed, rng->offset++); }


/* The next n words (n <= 4), each Philox block they fall in computed
 * once: the same numbers as n rng_next_u32. */
static void next_words(Rng *rng, uint32_t *w, int n) {
    uint32_t block[4];
    uint64_t o = rng->offset;
    for (int i = 0; i < n; i++, o++) {
        if (i == 0 || o % 4 == 0) philox4x32(rng->seed, o / 4, block);
        w[i] = block[o % 4];
    }
    rng->offset = o;
}

static uint64_t rng_next_u64(Rng *rng) {
    uint32_t w[2];
    next_words(rng, w, 2);
    return ((uint64_t)w[0] << 32) | w[1];
}

/* 27 bits from the first word, 26 from the second: 53 bits in all. */
static double uniform_of(uint32_t a, uint32_t b) {
    return ((double)(a >> 5) * 67108864.0 + (double)(b >> 6)) * (1.0 / 9007199254740992.0);
}

double rng_uniform(Rng *rng) {
    uint32_t w[2];
    next_words(rng, w, 2);
    return uniform_of(w[0], w[1]);
}

double rng_uniform_range(Rng *rng, double lo, double hi) {
    return lo + (hi - lo) * rng_uniform(rng);
}

uint64_t rng_below(Rng *rng, uint64_t bound) {
    if (bound <= 1) return 0; /* bound 0 is a caller error; 0 keeps it harmless */
    /* Rejection: accept x only above the `threshold` values that would make
     * x % bound favour small results, i.e. 2^w mod bound of them. */
    if (bound <= UINT32_MAX) {
        uint32_t b = (uint32_t)bound;
        uint32_t threshold = (uint32_t)(-b) % b;
        for (;;) {
            uint32_t x = rng_next_u32(rng);
            if (x >= threshold) return x % b;
        }
    }
    uint64_t threshold = (-bound) % bound;
    for (;;) {
        uint64_t x = rng_next_u64(rng);
        if (x >= threshold) return x % bound;
    }
}

double rng_normal(Rng *rng) {
    /* Box-Muller, cosine half only: the sine variate is not cached, so the
     * state stays (seed, offset) and each normal costs four u32 draws (the
     * words of two rng_uniform), one or two Philox blocks. */
    uint32_t w[4];
    next_words(rng, w, 4);
    double u1 = 1.0 - uniform_of(w[0], w[1]); /* (0, 1]: log never sees 0 */
    double u2 = uniform_of(w[2], w[3]);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
