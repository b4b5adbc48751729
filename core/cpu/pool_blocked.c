/* pool_blocked.c - 2x2, stride 2 max pooling over oneDNN's nChw16c layout
 * ([N][C/16][H][W][16]: sixteen channels side by side), for the
 * Conv2d -> ReLU -> MaxPool2d block (conv_block_dnnl.c). oneDNN's own
 * pooling takes as long here as the unblocked loop it replaces; over
 * sixteen contiguous lanes the window's max is four vector compares.
 *
 * The forward keeps each output's argmax (0..3: the window's first
 * maximum in scan order, a NaN winning as torch's does) in one byte. The
 * backward folds in the ReLU's: dy = gy at the argmax where y > 0, else 0.
 * Both are compiled for AVX-512 too and pick it at run time.
 */
#include <string.h>

#include "core/cpu/cpu.h"

#define LANES 16

#define POOL_BLOCKED_KERNELS(SUFFIX, ATTR)                                                         \
    ATTR static void forward_##SUFFIX(const float *y, int64_t blocks, int64_t H, int64_t W,        \
                                      float *pooled, uint8_t *argmax) {                            \
        const int64_t OH = H / 2, OW = W / 2;                                                      \
        _Pragma("omp parallel for schedule(static) if (blocks * H * W * LANES >= CPU_PARALLEL_MIN)") \
        for (int64_t r = 0; r < blocks * OH; r++) {                                                \
            const float *r0 = y + (r / OH * H + r % OH * 2) * W * LANES, *r1 = r0 + W * LANES;    \
            float *o = pooled + r * OW * LANES;                                                    \
            uint8_t *a = argmax + r * OW * LANES;                                                  \
            for (int64_t ow = 0; ow < OW; ow++)                                                    \
                for (int l = 0; l < LANES; l++) {                                                  \
                    const int64_t i = 2 * ow * LANES + l;                                          \
                    float m = r0[i], v1 = r0[i + LANES], v2 = r1[i], v3 = r1[i + LANES];          \
                    uint8_t k = 0;                                                                 \
                    bool t1 = (v1 > m) | (v1 != v1);                                               \
                    m = t1 ? v1 : m, k = t1 ? 1 : k;                                               \
                    bool t2 = (v2 > m) | (v2 != v2);                                               \
                    m = t2 ? v2 : m, k = t2 ? 2 : k;                                               \
                    bool t3 = (v3 > m) | (v3 != v3);                                               \
                    m = t3 ? v3 : m, k = t3 ? 3 : k;                                               \
                    o[ow * LANES + l] = m;                                                         \
                    a[ow * LANES + l] = k;                                                         \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    ATTR static void backward_##SUFFIX(const float *y, const uint8_t *argmax, const float *gy,     \
                                       int64_t blocks, int64_t H, int64_t W, float *dy) {          \
        const int64_t OH = H / 2, OW = W / 2;                                                      \
        if ((H | W) & 1) /* an odd last row or column no window reads */                           \
            memset(dy, 0, (size_t)(blocks * H * W * LANES) * sizeof *dy);                          \
        _Pragma("omp parallel for schedule(static) if (blocks * H * W * LANES >= CPU_PARALLEL_MIN)") \
        for (int64_t r = 0; r < blocks * OH; r++) {                                                \
            const int64_t row = (r / OH * H + r % OH * 2) * W * LANES;                             \
            const float *y0 = y + row, *y1 = y0 + W * LANES;                                       \
            float *d0 = dy + row, *d1 = d0 + W * LANES;                                            \
            const float *g = gy + r * OW * LANES;                                                  \
            const uint8_t *a = argmax + r * OW * LANES;                                            \
            for (int64_t ow = 0; ow < OW; ow++)                                                    \
                for (int l = 0; l < LANES; l++) {                                                  \
                    const int64_t i = 2 * ow * LANES + l;                                          \
                    const float gv = g[ow * LANES + l];                                            \
                    const uint8_t k = a[ow * LANES + l];                                           \
                    d0[i] = k == 0 && y0[i] > 0 ? gv : 0.0f;                                       \
                    d0[i + LANES] = k == 1 && y0[i + LANES] > 0 ? gv : 0.0f;                       \
                    d1[i] = k == 2 && y1[i] > 0 ? gv : 0.0f;                                       \
                    d1[i + LANES] = k == 3 && y1[i + LANES] > 0 ? gv : 0.0f;                       \
                }                                                                                  \
        }                                                                                          \
    }

POOL_BLOCKED_KERNELS(generic, )
POOL_BLOCKED_KERNELS(avx512, __attribute__((target("avx512f"))))

static bool has_avx512(void) {
    return __builtin_cpu_supports("avx512f");
}

void cpu_max_pool_2x2_blocked(const float *y, int64_t blocks, int64_t H, int64_t W, float *pooled,
                              uint8_t *argmax) {
    (has_avx512() ? forward_avx512 : forward_generic)(y, blocks, H, W, pooled, argmax);
}

void cpu_max_pool_2x2_blocked_relu_backward(const float *y, const uint8_t *argmax,
                                            const float *gy, int64_t blocks, int64_t H, int64_t W,
                                            float *dy) {
    (has_avx512() ? backward_avx512 : backward_generic)(y, argmax, gy, blocks, H, W, dy);
}
