/* attention_tiled.cu - causal attention over float32 q, k, v [BH, T, D]
 * for heads of D = 32 or 64 (GPT-2's 64), in register tiles: the formulas
 * of attention.cu's warp-per-row kernels (core/cpu/attention.c's), with
 * each shared-memory read feeding 8 to 16 multiply-adds instead of one.
 *
 * A block of 128 threads owns 64 rows of one head and walks the other rows
 * in tiles of 64 staged in shared memory, rows padded to D + 4 floats (a
 * quarter warp's float4 reads of 8 rows then hit 32 distinct banks). Each
 * thread computes an 8 x 4 patch of the tile's 64 x 64 dot products: own
 * rows 8 ty .. 8 ty + 7, tile rows tx, tx + 16, tx + 32, tx + 48 (ty =
 * thread / 16, tx = thread % 16); the 16 threads sharing own rows are a
 * half warp, which reduces a row's max and sum by shuffles. The tile's
 * weights (probabilities, or ds) go to shared memory, and each thread adds
 * their products with the tile's rows into its 8 rows x D / 16 columns of
 * the result.
 *   forward  own: queries; tiles: keys up to the block's last query;
 *            online softmax (running max and sum, the result rescaled).
 *   gq       own: queries; the same tiles; ds = p (dp - delta), gq += ds k.
 *   gk, gv   own: keys; tiles: queries from the block's first key on;
 *            gv += p gout, gk += ds q.
 * The blocks with the most tiles run first (the last rows' for the forward
 * and gq, the first keys' for gk, gv), so the last wave is the lightest.
 * delta = rowsum(gout * out) is attention.cu's kernel. Every dot product
 * sums over d in ascending order with fmaf, as attention.cu's do, so the
 * backward's recomputed scores are the forward's bit for bit. Rows past T
 * are staged as zeros and never written.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>

#include "gpu/kernels/common.cuh"
#include "gpu/kernels/attention_dropout.cuh"
#include "gpu/kernels/attention_launch.cuh"
#include "gpu/kernels/attention_tiled.h"

#define TILE 64           /* own rows per block, tile rows */
#define TILE_THREADS 128  /* 8 row groups x 16 column groups */
#define TM 8              /* own rows per thread */
#define TN 4              /* tile rows per thread */
#define WLD (TILE + 4)    /* the weights' row stride in shared memory */
#define FULL_MASK 0xffffffffu

/* A staged row's stride (floats) and the result columns per thread. */
template <int D> struct Geometry {
    static constexpr int ld = D + 4;
    static constexpr int cols = D / 16;
};

/* The max and the sum over the 16 lanes of a half warp (offsets below 16
 * stay in the half), in each of them. */
__device__ inline float half_warp_max(float v) {
    for (int s = 8; s > 0; s >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, s));
    return v;
}

__device__ inline float half_warp_sum(float v) {
    for (int s = 8; s > 0; s >>= 1) v += __shfl_xor_sync(FULL_MASK, v, s);
    return v;
}

__device__ inline float component(const float4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* Rows r0 .. r0 + TILE - 1 of a head's [t, D] matrix into dst (stride
 * D + 4), zeros past row t; by the whole block, a float4 per thread. */
template <int D> __device__ inline void stage_rows(float *dst, const float *src, int64_t r0,
                                                   int64_t t) {
    constexpr int vecs = D / 4;
    for (int e = threadIdx.x; e < TILE * vecs; e += TILE_THREADS) {
        int r = e / vecs, c = (e % vecs) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r0 + r < t) x = *(const float4 *)(src + (r0 + r) * D + c);
        *(float4 *)(dst + r * Geometry<D>::ld + c) = x;
    }
}

/* One value per row (lse, delta) of rows r0 .. r0 + TILE - 1, zeros past t. */
__device__ inline void stage_values(float *dst, const float *src, int64_t r0, int64_t t) {
    for (int r = threadIdx.x; r < TILE; r += TILE_THREADS)
        dst[r] = r0 + r < t ? src[r0 + r] : 0.f;
}

/* s[m][n] = own row 8 ty + m of a . tile row tx + 16 n of b (both staged),
 * over d ascending. */
template <int D>
__device__ inline void tile_dots(const float *a, const float *b, int ty, int tx,
                                 float (&s)[TM][TN]) {
    constexpr int ld = Geometry<D>::ld;
#pragma unroll
    for (int m = 0; m < TM; m++)
#pragma unroll
        for (int n = 0; n < TN; n++) s[m][n] = 0.f;
#pragma unroll 2
    for (int c = 0; c < D; c += 4) {
        float4 x[TM], y[TN];
#pragma unroll
        for (int m = 0; m < TM; m++) x[m] = *(const float4 *)(a + (ty * TM + m) * ld + c);
#pragma unroll
        for (int n = 0; n < TN; n++) y[n] = *(const float4 *)(b + (tx + 16 * n) * ld + c);
#pragma unroll
        for (int m = 0; m < TM; m++)
#pragma unroll
            for (int n = 0; n < TN; n++) {
                float v = fmaf(x[m].x, y[n].x, s[m][n]);
                v = fmaf(x[m].y, y[n].y, v);
                v = fmaf(x[m].z, y[n].z, v);
                s[m][n] = fmaf(x[m].w, y[n].w, v);
            }
    }
}

/* The thread's `cols` consecutive floats of a staged row. */
template <int C> __device__ inline void load_cols(float (&dst)[C], const float *src);
template <> __device__ inline void load_cols<4>(float (&dst)[4], const float *src) {
    float4 v = *(const float4 *)src;
    dst[0] = v.x, dst[1] = v.y, dst[2] = v.z, dst[3] = v.w;
}
template <> __device__ inline void load_cols<2>(float (&dst)[2], const float *src) {
    float2 v = *(const float2 *)src;
    dst[0] = v.x, dst[1] = v.y;
}

/* acc[m][e] += sum over the tile's rows k of w[own row 8 ty + m][k] *
 * x[k][tx * cols + e]: the weights w (stride WLD) and the tile x (staged)
 * from shared memory, k ascending. */
template <int D>
__device__ inline void tile_apply(const float *w, const float *x, int ty, int tx,
                                  float (&acc)[TM][Geometry<D>::cols]) {
    constexpr int ld = Geometry<D>::ld, cols = Geometry<D>::cols;
#pragma unroll 2
    for (int k = 0; k < TILE; k += 4) {
        float4 p[TM];
#pragma unroll
        for (int m = 0; m < TM; m++) p[m] = *(const float4 *)(w + (ty * TM + m) * WLD + k);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            float xv[cols];
            load_cols<cols>(xv, x + (k + kk) * ld + tx * cols);
#pragma unroll
            for (int m = 0; m < TM; m++) {
                float pm = component(p[m], kk);
#pragma unroll
                for (int e = 0; e < cols; e++) acc[m][e] = fmaf(pm, xv[e], acc[m][e]);
            }
        }
    }
}

template <int C> __device__ inline void zero(float (&acc)[TM][C]) {
#pragma unroll
    for (int m = 0; m < TM; m++)
#pragma unroll
        for (int e = 0; e < C; e++) acc[m][e] = 0.f;
}

/* Own row i's result columns (acc * factor) into dst's row i (stride D),
 * one vector store (dst is on 16 bytes: attention_tiled_fits). */
template <int C> __device__ inline void store_vec(float *dst, const float (&v)[C]);
template <> __device__ inline void store_vec<4>(float *dst, const float (&v)[4]) {
    *(float4 *)dst = make_float4(v[0], v[1], v[2], v[3]);
}
template <> __device__ inline void store_vec<2>(float *dst, const float (&v)[2]) {
    *(float2 *)dst = make_float2(v[0], v[1]);
}

template <int D>
__device__ inline void store_cols(float *dst, int64_t i, int tx,
                                  const float (&acc)[Geometry<D>::cols], float factor) {
    constexpr int cols = Geometry<D>::cols;
    float v[cols];
#pragma unroll
    for (int e = 0; e < cols; e++) v[e] = acc[e] * factor;
    store_vec<cols>(dst + i * D + tx * cols, v);
}

/* The first own row of the block: the forward's and gq's blocks of the
 * last rows, which see the most keys, first (blockIdx.y 0), so the grid's
 * last wave holds the lightest. */
__device__ inline int64_t heaviest_first_row(void) {
    return (int64_t)(gridDim.y - 1 - blockIdx.y) * TILE;
}

template <int D>
__global__ void __launch_bounds__(TILE_THREADS)
    tiled_forward_kernel(const float *q, const float *k, const float *v, float *o, float *lse,
                         int64_t t, GpuAttentionArgs a) {
    constexpr int ld = Geometry<D>::ld, cols = Geometry<D>::cols;
    extern __shared__ __align__(16) float tiled_smem[];
    float *qs = tiled_smem, *ks = qs + TILE * ld, *vs = ks + TILE * ld, *ws = vs + TILE * ld;
    int64_t head = blockIdx.x, off = head * t * D, row0 = heaviest_first_row();
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    uint64_t base = dropout_base(a, head, t);
    float scale = (float)a.scale, acc[TM][cols], m[TM], l[TM];
    stage_rows<D>(qs, q + off, row0, t);
    zero(acc);
#pragma unroll
    for (int mi = 0; mi < TM; mi++) m[mi] = -INFINITY, l[mi] = 0.f;
    int64_t last = (row0 + TILE < t ? row0 + TILE : t) - 1;
    for (int64_t k0 = 0; k0 <= last; k0 += TILE) {
        __syncthreads(); /* the last tile consumed (and qs staged) */
        stage_rows<D>(ks, k + off, k0, t);
        stage_rows<D>(vs, v + off, k0, t);
        __syncthreads();
        float s[TM][TN];
        tile_dots<D>(qs, ks, ty, tx, s);
#pragma unroll
        for (int mi = 0; mi < TM; mi++) {
            int64_t i = row0 + ty * TM + mi;
            float mx = -INFINITY, sum = 0.f;
#pragma unroll
            for (int n = 0; n < TN; n++) {
                s[mi][n] = k0 + tx + 16 * n <= i ? s[mi][n] * scale : -INFINITY;
                mx = fmaxf(mx, s[mi][n]);
            }
            /* finite: key 0 of the first tile counts for every row */
            float mn = fmaxf(m[mi], half_warp_max(mx)), alpha = g_exp(m[mi] - mn);
#pragma unroll
            for (int n = 0; n < TN; n++) {
                int64_t j = k0 + tx + 16 * n;
                float p = j <= i ? g_exp(s[mi][n] - mn) : 0.f;
                sum += p;
                ws[(ty * TM + mi) * WLD + tx + 16 * n] =
                    j <= i && i < t ? p * keep<float>(a, base, t, i, j) : 0.f; /* dropped out */
            }
            l[mi] = l[mi] * alpha + half_warp_sum(sum);
            m[mi] = mn;
#pragma unroll
            for (int e = 0; e < cols; e++) acc[mi][e] *= alpha;
        }
        __syncthreads(); /* the tile's weights are in ws */
        tile_apply<D>(ws, vs, ty, tx, acc);
    }
#pragma unroll
    for (int mi = 0; mi < TM; mi++) {
        int64_t i = row0 + ty * TM + mi;
        if (i >= t) continue;
        store_cols<D>(o + off, i, tx, acc[mi], 1.f / l[mi]);
        if (tx == 0) lse[head * t + i] = m[mi] + g_log(l[mi]);
    }
}

/* ds for score (i, j) whose dot products are s (q . k) and dp (gout . v):
 * p (dp' - delta_i), p = exp(s scale - lse_i), dp' = dp times the dropout
 * factor; *pk = p times the factor (gv's weight). 0 where j > i or i >= t. */
__device__ inline float score_grad(const GpuAttentionArgs &a, uint64_t base, int64_t t,
                                   int64_t i, int64_t j, float s, float dp, float lse_i,
                                   float delta_i, float *pk) {
    *pk = 0.f;
    if (j > i || i >= t) return 0.f;
    float p = g_exp(s * (float)a.scale - lse_i), kf = keep<float>(a, base, t, i, j);
    float dpk = kf != 0.f ? kf * dp : 0.f;
    *pk = p * kf;
    return p * (dpk - delta_i);
}

template <int D>
__global__ void __launch_bounds__(TILE_THREADS)
    tiled_gq_kernel(const float *q, const float *k, const float *v, const float *lse,
                    const float *go, const float *delta, float *gq, int64_t t,
                    GpuAttentionArgs a) {
    constexpr int ld = Geometry<D>::ld, cols = Geometry<D>::cols;
    extern __shared__ __align__(16) float tiled_smem[];
    float *qs = tiled_smem, *gos = qs + TILE * ld, *ks = gos + TILE * ld, *vs = ks + TILE * ld;
    float *ws = vs + TILE * ld;
    int64_t head = blockIdx.x, off = head * t * D, row0 = heaviest_first_row();
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    uint64_t base = dropout_base(a, head, t);
    float acc[TM][cols], li[TM], di[TM];
    stage_rows<D>(qs, q + off, row0, t);
    stage_rows<D>(gos, go + off, row0, t);
    zero(acc);
#pragma unroll
    for (int mi = 0; mi < TM; mi++) {
        int64_t i = row0 + ty * TM + mi;
        li[mi] = i < t ? lse[head * t + i] : 0.f;
        di[mi] = i < t ? delta[head * t + i] : 0.f;
    }
    int64_t last = (row0 + TILE < t ? row0 + TILE : t) - 1;
    for (int64_t k0 = 0; k0 <= last; k0 += TILE) {
        __syncthreads();
        stage_rows<D>(ks, k + off, k0, t);
        stage_rows<D>(vs, v + off, k0, t);
        __syncthreads();
        float s[TM][TN], dp[TM][TN];
        tile_dots<D>(qs, ks, ty, tx, s);
        tile_dots<D>(gos, vs, ty, tx, dp);
#pragma unroll
        for (int mi = 0; mi < TM; mi++)
#pragma unroll
            for (int n = 0; n < TN; n++) {
                float pk;
                ws[(ty * TM + mi) * WLD + tx + 16 * n] =
                    score_grad(a, base, t, row0 + ty * TM + mi, k0 + tx + 16 * n, s[mi][n],
                               dp[mi][n], li[mi], di[mi], &pk);
            }
        __syncthreads();
        tile_apply<D>(ws, ks, ty, tx, acc);
    }
#pragma unroll
    for (int mi = 0; mi < TM; mi++) {
        int64_t i = row0 + ty * TM + mi;
        if (i < t) store_cols<D>(gq + off, i, tx, acc[mi], (float)a.scale);
    }
}

template <int D>
__global__ void __launch_bounds__(TILE_THREADS)
    tiled_gkv_kernel(const float *q, const float *k, const float *v, const float *lse,
                     const float *go, const float *delta, float *gk, float *gv, int64_t t,
                     GpuAttentionArgs a) {
    constexpr int ld = Geometry<D>::ld, cols = Geometry<D>::cols;
    extern __shared__ __align__(16) float tiled_smem[];
    float *ks = tiled_smem, *vs = ks + TILE * ld, *qs = vs + TILE * ld, *gos = qs + TILE * ld;
    float *ws = gos + TILE * ld, *ls = ws + TILE * WLD, *dls = ls + TILE;
    int64_t head = blockIdx.x, off = head * t * D, row0 = (int64_t)blockIdx.y * TILE;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    uint64_t base = dropout_base(a, head, t);
    float ak[TM][cols], av[TM][cols];
    stage_rows<D>(ks, k + off, row0, t);
    stage_rows<D>(vs, v + off, row0, t);
    zero(ak);
    zero(av);
    for (int64_t q0 = row0; q0 < t; q0 += TILE) {
        __syncthreads(); /* the last tile's weights consumed (and ks, vs staged) */
        stage_rows<D>(qs, q + off, q0, t);
        stage_rows<D>(gos, go + off, q0, t);
        stage_values(ls, lse + head * t, q0, t);
        stage_values(dls, delta + head * t, q0, t);
        __syncthreads();
        float s[TM][TN], dp[TM][TN]; /* own key j's row of k (v) against query i's of q (gout) */
        tile_dots<D>(ks, qs, ty, tx, s);
        tile_dots<D>(vs, gos, ty, tx, dp);
#pragma unroll
        for (int mi = 0; mi < TM; mi++)
#pragma unroll
            for (int n = 0; n < TN; n++) {
                int c = tx + 16 * n;
                float pk;
                dp[mi][n] = score_grad(a, base, t, q0 + c, row0 + ty * TM + mi, s[mi][n],
                                       dp[mi][n], ls[c], dls[c], &pk);
                ws[(ty * TM + mi) * WLD + c] = pk;
            }
        __syncthreads(); /* gv's weights are in ws */
        tile_apply<D>(ws, gos, ty, tx, av);
        __syncthreads(); /* read: ws takes gk's weights */
#pragma unroll
        for (int mi = 0; mi < TM; mi++)
#pragma unroll
            for (int n = 0; n < TN; n++) ws[(ty * TM + mi) * WLD + tx + 16 * n] = dp[mi][n];
        __syncthreads();
        tile_apply<D>(ws, qs, ty, tx, ak);
    }
#pragma unroll
    for (int mi = 0; mi < TM; mi++) {
        int64_t j = row0 + ty * TM + mi;
        if (j >= t) continue;
        store_cols<D>(gk + off, j, tx, ak[mi], (float)a.scale);
        store_cols<D>(gv + off, j, tx, av[mi], 1.f);
    }
}

/* ---- launches ---- */

static std::atomic<int> enabled{-1}; /* -1: TRAIND_ATTENTION_TILES not read yet */
static std::atomic<uint64_t> runs{0};

extern "C" bool gpu_attention_tiles_enabled(void) {
    if (enabled.load() < 0) {
        const char *v = getenv("TRAIND_ATTENTION_TILES");
        int want = v && strcmp(v, "0") == 0 ? 0 : 1, unread = -1;
        enabled.compare_exchange_strong(unread, want);
    }
    return enabled.load() == 1;
}

extern "C" void gpu_attention_tiles_set_enabled(bool on) { enabled.store(on ? 1 : 0); }

extern "C" uint64_t gpu_attention_tiles_runs(void) { return runs.load(); }

bool attention_tiled_fits(int dtype, int64_t d, int n, const void *const *ptrs) {
    if (dtype != GPU_F32 || (d != 32 && d != 64) || !gpu_attention_tiles_enabled()) return false;
    for (int i = 0; i < n; i++)
        if ((uintptr_t)ptrs[i] % 16 != 0) return false;
    return true;
}

template <int D>
static void forward_run(const float *q, const float *k, const float *v, float *out, float *lse,
                        int64_t bh, int64_t t, GpuAttentionArgs a) {
    size_t smem = (size_t)(3 * TILE * Geometry<D>::ld + TILE * WLD) * sizeof(float);
    attention_launch(tiled_forward_kernel<D>, "causal_attention tiled kernel", TILE,
                     TILE_THREADS, smem, bh, t, q, k, v, out, lse, t, a);
}

void attention_tiled_forward(const float *q, const float *k, const float *v, float *out,
                             float *lse, int64_t bh, int64_t t, int d, GpuAttentionArgs a) {
    runs++;
    if (d == 64)
        forward_run<64>(q, k, v, out, lse, bh, t, a);
    else
        forward_run<32>(q, k, v, out, lse, bh, t, a);
}

template <int D>
static void backward_run(const float *q, const float *k, const float *v, const float *lse,
                         const float *go, const float *delta, float *gq, float *gk, float *gv,
                         int64_t bh, int64_t t, GpuAttentionArgs a) {
    size_t smem = (size_t)(4 * TILE * Geometry<D>::ld + TILE * WLD) * sizeof(float);
    attention_launch(tiled_gq_kernel<D>, "causal_attention tiled gq kernel", TILE, TILE_THREADS,
                     smem, bh, t, q, k, v, lse, go, delta, gq, t, a);
    attention_launch(tiled_gkv_kernel<D>, "causal_attention tiled gk/gv kernel", TILE,
                     TILE_THREADS, smem + 2 * TILE * sizeof(float), bh, t, q, k, v, lse, go,
                     delta, gk, gv, t, a);
}

void attention_tiled_backward(const float *q, const float *k, const float *v, const float *lse,
                              const float *gout, const float *delta, float *gq, float *gk,
                              float *gv, int64_t bh, int64_t t, int d, GpuAttentionArgs a) {
    runs++;
    if (d == 64)
        backward_run<64>(q, k, v, lse, gout, delta, gq, gk, gv, bh, t, a);
    else
        backward_run<32>(q, k, v, lse, gout, delta, gq, gk, gv, bh, t, a);
}
