/* conv_block_wgrad.c - the weight and bias gradients of a first
 * Conv2d -> ReLU -> MaxPool2d block (its input needs no gradient), 3x3,
 * stride 1, straight from the 2x2 pool's argmax (pool_blocked.c).
 *
 * The convolution's dy is gy at each window's argmax where the pooled
 * value is above 0, and 0 at the other three places, so
 *   gw[o][c][kh][kw] = sum over windows of g * x[c][oh + kh - pad][ow + kw - pad]
 * with (oh, ow) the window's argmax and g its live gradient, and gb[o] the
 * sum of g: a quarter of the direct sum's products, and no dy (three
 * quarters zeros, the size of the convolution's output) written or read.
 * The 4x4 patch of x under a window holds every tap of its four argmax
 * choices: lane l (output channel 16 cb + l) reads the patch at
 * (dh + kh) * 4 + dw + kw, one permute a tap on AVX-512.
 *
 * The batch is summed in CHUNKS fixed chunks and the chunks in order, so
 * the result does not depend on how many threads ran them.
 */
#include <immintrin.h>
#include <stdlib.h>

#include "core/cpu/cpu.h"
#include "core/error.h"

#define LANES 16
#define TAPS 9
#define SUMS (TAPS + 1) /* the taps, then the bias */
#define CHUNKS 8

typedef struct {
    const float *x, *pooled, *gy; /* x [N][C][H][W]; pooled, gy [N][OB][OH][OW][16] */
    const uint8_t *argmax;
    int64_t C, H, W, pad_h, pad_w, OB, OH, OW;
} Wgrad;

/* The 4x4 patch of a plane of x under window (ph, pw), 0 outside it. */
static void patch_of(const Wgrad *a, const float *plane, int64_t ph, int64_t pw, float *p) {
    const int64_t r0 = 2 * ph - a->pad_h, c0 = 2 * pw - a->pad_w;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) {
            int64_t i = r0 + r, j = c0 + c;
            p[4 * r + c] = i >= 0 && i < a->H && j >= 0 && j < a->W ? plane[i * a->W + j] : 0.0f;
        }
}

/* The patch index of lane l's argmax k at tap 0: (dh * 4 + dw). */
static int base_of(uint8_t k) {
    return (k >> 1) * 4 + (k & 1);
}

static int tap_offset(int t) {
    return t / 3 * 4 + t % 3;
}

/* sums[SUMS][16] += image n's windows of block cb over channel c */
static void image_generic(const Wgrad *a, int64_t n, int64_t cb, int64_t c, float *sums) {
    const float *plane = a->x + (n * a->C + c) * a->H * a->W;
    for (int64_t ph = 0; ph < a->OH; ph++)
        for (int64_t pw = 0; pw < a->OW; pw++) {
            const int64_t o = (((n * a->OB + cb) * a->OH + ph) * a->OW + pw) * LANES;
            float p[16];
            patch_of(a, plane, ph, pw, p);
            for (int l = 0; l < LANES; l++) {
                float g = a->pooled[o + l] > 0 ? a->gy[o + l] : 0.0f;
                int base = base_of(a->argmax[o + l]);
                for (int t = 0; t < TAPS; t++) sums[t * LANES + l] += g * p[base + tap_offset(t)];
                sums[TAPS * LANES + l] += g;
            }
        }
}

/* The patch in one vector, row r in lanes 4r..4r+3: four loads where it
 * lies inside the plane; at a border, each row's columns inside it
 * expand-loaded into their lanes (the rest 0), so no address outside the
 * plane is formed or read. */
__attribute__((target("avx512f"))) static __m512 patch_avx512(const Wgrad *a, const float *plane,
                                                              int64_t ph, int64_t pw) {
    const int64_t r0 = 2 * ph - a->pad_h, c0 = 2 * pw - a->pad_w;
    if (r0 >= 0 && c0 >= 0 && r0 + 4 <= a->H && c0 + 4 <= a->W) {
        const float *at = plane + r0 * a->W + c0;
        __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(at));
        v = _mm512_insertf32x4(v, _mm_loadu_ps(at + a->W), 1);
        v = _mm512_insertf32x4(v, _mm_loadu_ps(at + 2 * a->W), 2);
        return _mm512_insertf32x4(v, _mm_loadu_ps(at + 3 * a->W), 3);
    }
    const int64_t first = c0 < 0 ? -c0 : 0; /* the first column inside */
    unsigned columns = 0;
    for (int64_t c = first; c < 4 && c0 + c < a->W; c++) columns |= 1u << c;
    __m512 v = _mm512_setzero_ps();
    for (int r = 0; r < 4; r++)
        if (r0 + r >= 0 && r0 + r < a->H)
            v = _mm512_mask_expandloadu_ps(v, (__mmask16)(columns << 4 * r),
                                           plane + (r0 + r) * a->W + c0 + first);
    return v;
}

__attribute__((target("avx512f"))) static void image_avx512(const Wgrad *a, int64_t n, int64_t cb,
                                                            int64_t c, float *sums) {
    const float *plane = a->x + (n * a->C + c) * a->H * a->W;
    __m512 s[SUMS];
#pragma GCC unroll 10
    for (int t = 0; t < SUMS; t++) s[t] = _mm512_loadu_ps(sums + t * LANES);
    for (int64_t ph = 0; ph < a->OH; ph++)
        for (int64_t pw = 0; pw < a->OW; pw++) {
            const int64_t o = (((n * a->OB + cb) * a->OH + ph) * a->OW + pw) * LANES;
            __m512 patch = patch_avx512(a, plane, ph, pw);
            __mmask16 live =
                _mm512_cmp_ps_mask(_mm512_loadu_ps(a->pooled + o), _mm512_setzero_ps(), _CMP_GT_OQ);
            __m512 g = _mm512_maskz_mov_ps(live, _mm512_loadu_ps(a->gy + o));
            __m512i k = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(a->argmax + o)));
            __m512i base = _mm512_add_epi32(
                _mm512_slli_epi32(_mm512_srli_epi32(k, 1), 2),
                _mm512_and_si512(k, _mm512_set1_epi32(1)));
#pragma GCC unroll 9
            for (int t = 0; t < TAPS; t++) {
                __m512i at = _mm512_add_epi32(base, _mm512_set1_epi32(tap_offset(t)));
                s[t] = _mm512_fmadd_ps(g, _mm512_permutexvar_ps(at, patch), s[t]);
            }
            s[TAPS] = _mm512_add_ps(s[TAPS], g);
        }
#pragma GCC unroll 10
    for (int t = 0; t < SUMS; t++) _mm512_storeu_ps(sums + t * LANES, s[t]);
}

typedef void ImageFn(const Wgrad *, int64_t, int64_t, int64_t, float *);

/* gw [O][C][3][3] and gb [O] (either NULL when not wanted) overwritten. */
static void reduce(const Wgrad *a, const float *part, int64_t O, float *gw, float *gb) {
    for (int64_t cb = 0; cb < a->OB; cb++)
        for (int64_t c = 0; c < a->C; c++) {
            float sums[SUMS * LANES] = {0};
            for (int ch = 0; ch < CHUNKS; ch++) {
                const float *q = part + ((cb * a->C + c) * CHUNKS + ch) * SUMS * LANES;
                for (int i = 0; i < SUMS * LANES; i++) sums[i] += q[i];
            }
            for (int l = 0; l < LANES && cb * LANES + l < O; l++) {
                int64_t o = cb * LANES + l;
                for (int t = 0; gw && t < TAPS; t++)
                    gw[(o * a->C + c) * TAPS + t] = sums[t * LANES + l];
                if (gb && c == 0) gb[o] = sums[TAPS * LANES + l];
            }
        }
}

int cpu_conv_block_weight_grad(const Window2d *conv, int64_t out_channels, const float *x,
                               const float *pooled, const uint8_t *argmax, const float *gy,
                               float *gw, float *gb) {
    const Wgrad a = {x,
                     pooled,
                     gy,
                     argmax,
                     conv->channels,
                     conv->height,
                     conv->width,
                     conv->pad_h,
                     conv->pad_w,
                     (out_channels + LANES - 1) / LANES,
                     conv->out_h / 2,
                     conv->out_w / 2};
    const int64_t items = a.OB * a.C * CHUNKS, N = conv->batch;
    float *part = calloc((size_t)items * SUMS * LANES, sizeof *part);
    if (!part) return error_set("conv2d: out of memory for a weight gradient's partial sums");
    ImageFn *image = cpu_avx512() ? image_avx512 : image_generic;
#pragma omp parallel for schedule(dynamic)
    for (int64_t it = 0; it < items; it++) {
        const int64_t ch = it % CHUNKS, c = it / CHUNKS % a.C, cb = it / CHUNKS / a.C;
        for (int64_t n = ch * N / CHUNKS; n < (ch + 1) * N / CHUNKS; n++)
            image(&a, n, cb, c, part + it * SUMS * LANES);
    }
    reduce(&a, part, out_channels, gw, gb);
    free(part);
    return 0;
}
