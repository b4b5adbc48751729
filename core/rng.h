/* rng.h - seeded, counter-based random numbers.
 *
 * Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as
 * 1, 2, 3"): the n-th number of stream `seed` is a pure function of
 * (seed, n), so CPU and CUDA kernels draw identical numbers, and a resumed
 * run only has to remember how far each stream has been read.
 *
 * Rng is the sequential front end used for weight init and shuffling:
 * its whole state is (seed, offset), which checkpoints save.
 */
#ifndef TRAIND_CORE_RNG_H
#define TRAIND_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t seed;
    uint64_t offset; /* how many 32-bit numbers have been drawn */
    /* Not state (checkpoints leave it out): while a CUDA graph captures a
     * step (core/train_graph.c), device memory that holds, at each replay,
     * the stream's offset at the replay's start; the ops' numbers
     * (module_draw_stream) then start at their offset past `capture_base`,
     * the offset at the capture's start, plus that memory's value, read
     * when their kernels run. NULL otherwise (capture_base is read only
     * while device_base is set). */
    const uint64_t *device_base;
    uint64_t capture_base;
} Rng;

/* Four 32-bit outputs for counter `counter` of stream `seed`. */
void philox4x32(uint64_t seed, uint64_t counter, uint32_t out[4]);
/* The offset-th 32-bit number of stream `seed`, as a float in [0, 1)
 * with 24 random bits (what torch.rand does for float32). */
float philox_uniform(uint64_t seed, uint64_t offset);

void rng_init(Rng *rng, uint64_t seed);
uint32_t rng_next_u32(Rng *rng);
double rng_uniform(Rng *rng);                  /* [0, 1), 53 random bits */
double rng_uniform_range(Rng *rng, double lo, double hi);
uint64_t rng_below(Rng *rng, uint64_t bound);  /* unbiased, bound > 0 */
double rng_normal(Rng *rng);                   /* Box-Muller */
/* The stream's words a uniform (and uniform_range) and a normal take,
 * always: a draw at offset o leaves the Rng at o + these. */
#define RNG_UNIFORM_WORDS 2
#define RNG_NORMAL_WORDS 4

#endif
