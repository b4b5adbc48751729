/* pool_blocked.c - 2x2, stride 2 max pooling over oneDNN's nChw16c layout
 * ([N][C/16][H][W][16]: sixteen channels side by side), for the
 * Conv2d -> ReLU -> MaxPool2d block (conv_block_dnnl.c). oneDNN 2.6's own
 * pooling took as long here as the unblocked loop it replaces; over
 * sixteen contiguous lanes a window's max is three vector compares.
 *
 * The forward keeps each output's argmax (0..3: the window's first
 * maximum in scan order, a NaN winning as torch's does) in one byte. The
 * block's backward folds in the ReLU's: dy = gy at the argmax where y > 0,
 * else 0; y at the argmax is the pooled value, so it reads that, not y (a
 * quarter of the bytes; a NaN is not above 0 in either). A MaxPool2d over
 * the blocked layout (core/ops/pool.c) takes the same kernels, its
 * backward without the ReLU's.
 * An AVX-512 version (one 16-lane vector a step), chosen at run time a
 * row at a time (isa.c), and a portable one with the same results.
 */
#include <immintrin.h>
#include <string.h>

#include "core/cpu/cpu.h"

#define LANES 16

/* The window whose top-left is at r0 (its lower row at r1): max and
 * argmax of each lane, portable. */
static void window_generic(const float *r0, const float *r1, float *o, uint8_t *a) {
    for (int l = 0; l < LANES; l++) {
        float m = r0[l], v[3] = {r0[l + LANES], r1[l], r1[l + LANES]};
        uint8_t k = 0;
        for (int j = 0; j < 3; j++) {
            bool t = (v[j] > m) | (v[j] != v[j]);
            m = t ? v[j] : m;
            k = t ? (uint8_t)(j + 1) : k;
        }
        o[l] = m;
        a[l] = k;
    }
}

/* dy of one window: g at the argmax, else 0; with pooled (the ReLU's
 * backward folded in) only where the pooled value (y there) is above 0;
 * portable. */
static void window_back_generic(const float *pooled, const float *g, const uint8_t *a, float *d0,
                                float *d1) {
    for (int l = 0; l < LANES; l++) {
        float *ds[4] = {d0 + l, d0 + l + LANES, d1 + l, d1 + l + LANES};
        bool live = !pooled || pooled[l] > 0;
        for (int j = 0; j < 4; j++) *ds[j] = ((a[l] == j) & live) ? g[l] : 0.0f;
    }
}

__attribute__((target("avx512f"))) static void window_avx512(const float *r0, const float *r1,
                                                             float *o, uint8_t *a) {
    __m512 m = _mm512_loadu_ps(r0);
    __m512i k = _mm512_setzero_si512();
    const float *v[3] = {r0 + LANES, r1, r1 + LANES};
    for (int j = 0; j < 3; j++) {
        __m512 x = _mm512_loadu_ps(v[j]);
        __mmask16 t = _mm512_cmp_ps_mask(x, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        m = _mm512_mask_mov_ps(m, t, x);
        k = _mm512_mask_mov_epi32(k, t, _mm512_set1_epi32(j + 1));
    }
    _mm512_storeu_ps(o, m);
    _mm_storeu_si128((__m128i *)a, _mm512_cvtepi32_epi8(k));
}

__attribute__((target("avx512f"))) static void window_back_avx512(const float *pooled,
                                                                  const float *g, const uint8_t *a,
                                                                  float *d0, float *d1) {
    __m512 gv = _mm512_loadu_ps(g);
    __m512i k = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)a));
    __mmask16 live = pooled ? _mm512_cmp_ps_mask(_mm512_loadu_ps(pooled), _mm512_setzero_ps(),
                                                 _CMP_GT_OQ)
                            : (__mmask16)0xffff;
    float *ds[4] = {d0, d0 + LANES, d1, d1 + LANES};
    for (int j = 0; j < 4; j++) {
        __mmask16 at = _mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(j)) & live;
        _mm512_storeu_ps(ds[j], _mm512_maskz_mov_ps(at, gv));
    }
}

/* A row of windows (OW of them, lanes side by side) at once, so the
 * window inlines into a loop of its own ISA: one call a row, not a window. */
#define DEFINE_ROWS(SFX, TARGET)                                                                   \
    TARGET static void row_##SFX(const float *r0, const float *r1, int64_t ow_count, float *o,     \
                                 uint8_t *a) {                                                     \
        for (int64_t ow = 0; ow < ow_count; ow++)                                                  \
            window_##SFX(r0 + 2 * ow * LANES, r1 + 2 * ow * LANES, o + ow * LANES,                 \
                         a + ow * LANES);                                                          \
    }                                                                                              \
    TARGET static void row_back_##SFX(const float *pooled, const float *g, const uint8_t *a,       \
                                      int64_t ow_count, float *d0, float *d1) {                    \
        for (int64_t ow = 0; ow < ow_count; ow++)                                                  \
            window_back_##SFX(pooled ? pooled + ow * LANES : NULL, g + ow * LANES, a + ow * LANES, \
                              d0 + 2 * ow * LANES, d1 + 2 * ow * LANES);                           \
    }

DEFINE_ROWS(generic, )
DEFINE_ROWS(avx512, __attribute__((target("avx512f"))))

typedef void RowFn(const float *, const float *, int64_t, float *, uint8_t *);
typedef void RowBackFn(const float *, const float *, const uint8_t *, int64_t, float *, float *);

void cpu_max_pool_2x2_blocked(const float *y, int64_t blocks, int64_t H, int64_t W, float *pooled,
                              uint8_t *argmax) {
    RowFn *row = cpu_avx512() ? row_avx512 : row_generic;
    const int64_t OH = H / 2, OW = W / 2;
#pragma omp parallel for schedule(static) if (blocks * H * W * LANES >= CPU_PARALLEL_MIN)
    for (int64_t r = 0; r < blocks * OH; r++) {
        const float *r0 = y + (r / OH * H + r % OH * 2) * W * LANES;
        row(r0, r0 + W * LANES, OW, pooled + r * OW * LANES, argmax + r * OW * LANES);
    }
}

void cpu_max_pool_2x2_blocked_backward(const float *pooled, const uint8_t *argmax,
                                       const float *gy, int64_t blocks, int64_t H, int64_t W,
                                       float *dy) {
    RowBackFn *row = cpu_avx512() ? row_back_avx512 : row_back_generic;
    const int64_t OH = H / 2, OW = W / 2;
    if ((H | W) & 1) /* an odd last row or column that no window reads */
        memset(dy, 0, (size_t)(blocks * H * W * LANES) * sizeof *dy);
#pragma omp parallel for schedule(static) if (blocks * H * W * LANES >= CPU_PARALLEL_MIN)
    for (int64_t r = 0; r < blocks * OH; r++) {
        const int64_t i = (r / OH * H + r % OH * 2) * W * LANES, o = r * OW * LANES;
        row(pooled ? pooled + o : NULL, gy + o, argmax + o, OW, dy + i, dy + i + W * LANES);
    }
}

void cpu_max_pool2d_2x2_blocked(const Tensor *x, Tensor *out, Tensor *argmax) {
    cpu_max_pool_2x2_blocked(tensor_data(x), x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
                             tensor_data(out), tensor_data(argmax));
}

void cpu_max_pool2d_2x2_blocked_backward(const Tensor *argmax, const Tensor *gy, Tensor *gx) {
    cpu_max_pool_2x2_blocked_backward(NULL, tensor_data(argmax), tensor_data(gy),
                                      gx->shape[0] * gx->shape[1], gx->shape[2], gx->shape[3],
                                      tensor_data(gx));
}
