/* random.c - CPU uniform [0, 1) fill from the Philox stream of core/rng.
 *
 * Element i is philox_uniform(seed, offset + i), the same number the CUDA
 * kernel draws, so a dropout mask or an init does not depend on the device.
 * The loop computes each Philox block once and uses all four of its words
 * (philox_uniform alone would recompute the block per element). float64
 * outputs get the same 24-bit values, widened: the stream is defined by
 * float32 and both dtypes stay identical to it.
 */
#include "core/cpu/cpu.h"
#include "core/rng.h"

/* (x >> 8) * 2^-24, as philox_uniform; exact in float. */
static inline float u32_to_uniform(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

#define DEFINE_UNIFORM(T, SFX)                                                                     \
    static void uniform_##SFX(T *po, int64_t n, uint64_t seed, uint64_t offset) {                  \
        uint32_t block[4];                                                                         \
        uint64_t pos = offset;                                                                     \
        int64_t i = 0;                                                                             \
        while (i < n) {                                                                            \
            philox4x32(seed, pos / 4, block);                                                      \
            for (unsigned lane = (unsigned)(pos % 4); lane < 4 && i < n; lane++) {                 \
                po[i++] = (T)u32_to_uniform(block[lane]);                                          \
                pos++;                                                                             \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_UNIFORM(float, f32)
DEFINE_UNIFORM(double, f64)

void cpu_uniform(Tensor *out, uint64_t seed, uint64_t offset, const uint64_t *base) {
    int64_t n = tensor_numel(out);
    if (base) offset += *base;
    if (out->dtype == DTYPE_FLOAT32)
        uniform_f32(tensor_data(out), n, seed, offset);
    else
        uniform_f64(tensor_data(out), n, seed, offset);
}
