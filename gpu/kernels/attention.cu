/* attention.cu - causal scaled-dot-product attention over q, k, v
 * [BH, T, D] (D <= GPU_ATTENTION_MAX_HEAD_DIM) and its backward, flash-
 * attention style: the twins of core/cpu/attention.c (same formulas).
 *
 * No T x T matrix exists anywhere. Each kernel gives a block ATT_BR "own"
 * rows of one head (4 warps of 4 rows; a warp keeps its rows' accumulators
 * in registers, 4 elements a lane) and walks the "other" rows in tiles of
 * 32 staged in shared memory, one per lane: a lane computes its row's score
 * against the warp's own row (a dot product over D from shared memory, the
 * tile's rows padded to D + 1 so the 32 lanes hit 32 banks), and the warp
 * then folds the 32 results into its accumulators through shuffles.
 *   forward     own rows: queries; tiles: keys 0 .. the block's last query.
 *               Online softmax (running max m and sum l, the accumulator
 *               rescaled by exp(m_old - m_new)); writes out = acc / l and
 *               the row's logsumexp m + log(l). One kernel.
 *   backward    FlashAttention-2, recomputing p = exp(s - lse): a warp-per-
 *               row kernel for delta = rowsum(gout * out); the query kernel
 *               (gq = scale * sum_j ds_ij k_j over key tiles) and the key
 *               kernel (gk = scale * sum_i ds_ij q_i, gv = sum_i p_ij gout_i
 *               over query tiles from the block's first key on), ds_ij =
 *               p_ij (gout_i . v_j - delta_i). Splitting gq from gk/gv costs
 *               a second recomputation of p but needs no atomics: results do
 *               not depend on scheduling.
 * Accumulation is in T (float for float32, as FlashAttention's); rows past
 * T (T not a multiple of the tile) are loaded as zeros and never written.
 * Dropout on the probabilities (GpuAttentionArgs) draws each (head, i, j)'s
 * Philox number where the probability is used, in all three kernels, as
 * the CPU does: the mask is never stored. Float32 heads of 32 or 64 go to
 * attention_tiled.cu's register tiles instead (the same formulas).
 */
#include <math.h>

#include "gpu/kernels/common.cuh"
#include "gpu/kernels/attention_dropout.cuh"
#include "gpu/kernels/attention_launch.cuh"
#include "gpu/kernels/attention_tiled.h"

#define ATT_WARPS 4
#define ATT_RPW 4                     /* own rows per warp */
#define ATT_BR (ATT_WARPS * ATT_RPW)  /* own rows per block */
#define ATT_BC 32                     /* other rows per tile: one per lane */
#define ATT_EPL (GPU_ATTENTION_MAX_HEAD_DIM / 32) /* row elements per lane */
#define FULL_MASK 0xffffffffu

__device__ inline float a_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ inline double a_fma(double a, double b, double c) { return fma(a, b, c); }
__device__ inline float a_max(float a, float b) { return fmaxf(a, b); }
__device__ inline double a_max(double a, double b) { return fmax(a, b); }

template <typename T> __device__ inline T a_warp_sum(T v) {
    for (int s = 16; s > 0; s >>= 1) v += __shfl_xor_sync(FULL_MASK, v, s);
    return v;
}

template <typename T> __device__ inline T a_warp_max(T v) {
    for (int s = 16; s > 0; s >>= 1) v = a_max(v, __shfl_xor_sync(FULL_MASK, v, s));
    return v;
}

template <typename T> __device__ inline T a_dot(const T *a, const T *b, int d) {
    T s = 0;
    for (int c = 0; c < d; c++) s = a_fma(a[c], b[c], s);
    return s;
}

/* Rows r0 .. r0+n-1 of a head's [t, d] matrix into dst (row stride ld),
 * zeros past row t; by the whole block. */
template <typename T>
__device__ void load_rows(T *dst, int ld, const T *src, int64_t r0, int n, int64_t t, int d) {
    for (int e = threadIdx.x; e < n * d; e += blockDim.x) {
        int r = e / d, c = e % d;
        dst[r * ld + c] = r0 + r < t ? src[(r0 + r) * d + c] : T(0);
    }
}

/* Same for one value per row (lse, delta). */
template <typename T>
__device__ void load_scalars(T *dst, const T *src, int64_t r0, int n, int64_t t) {
    for (int r = threadIdx.x; r < n; r += blockDim.x) dst[r] = r0 + r < t ? src[r0 + r] : T(0);
}

/* acc * factor into a row of d elements: a lane's elements lane + 32 e. */
template <typename T>
__device__ inline void store_row(T *dst, const T (&acc)[ATT_EPL], T factor, int lane, int d) {
#pragma unroll
    for (int e = 0; e < ATT_EPL; e++) {
        int c = lane + 32 * e;
        if (c < d) dst[c] = acc[e] * factor;
    }
}

/* acc += sum over lanes jj in [first, end) of lane jj's x times row jj of
 * a shared-memory tile (row stride ld): the warp folds its 32 lanes'
 * results into its own row's accumulator. */
template <typename T>
__device__ inline void fold_tile(T (&acc)[ATT_EPL], T x, const T *tile, int ld, int first,
                                 int end, int lane, int d) {
    for (int jj = first; jj < end; jj++) {
        T xj = __shfl_sync(FULL_MASK, x, jj);
#pragma unroll
        for (int e = 0; e < ATT_EPL; e++) {
            int c = lane + 32 * e;
            if (c < d) acc[e] = a_fma(xj, tile[jj * ld + c], acc[e]);
        }
    }
}

template <typename T> __device__ inline void zero_rows(T (&acc)[ATT_RPW][ATT_EPL]) {
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; rr++)
#pragma unroll
        for (int e = 0; e < ATT_EPL; e++) acc[rr][e] = 0;
}

template <typename T>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_forward_kernel(const T *q, const T *k, const T *v, T *o, T *lse, int64_t t, int d,
                             GpuAttentionArgs a) {
    extern __shared__ __align__(16) unsigned char att_smem[];
    T *qs = (T *)att_smem;           /* [ATT_BR][d] */
    T *ks = qs + ATT_BR * d;         /* [ATT_BC][d + 1] */
    T *vs = ks + ATT_BC * (d + 1);   /* [ATT_BC][d] */
    int64_t head = blockIdx.x, off = head * t * d, row0 = (int64_t)blockIdx.y * ATT_BR;
    uint64_t base = dropout_base(a, head, t);
    T scale = (T)a.scale;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    load_rows(qs, d, q + off, row0, ATT_BR, t, d);
    T acc[ATT_RPW][ATT_EPL], m[ATT_RPW], l[ATT_RPW];
    zero_rows(acc);
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; rr++) m[rr] = -INFINITY, l[rr] = 0;
    int64_t last = (row0 + ATT_BR < t ? row0 + ATT_BR : t) - 1;
    for (int64_t k0 = 0; k0 <= last; k0 += ATT_BC) {
        __syncthreads(); /* the last tile is consumed (and qs loaded) */
        load_rows(ks, d + 1, k + off, k0, ATT_BC, t, d);
        load_rows(vs, d, v + off, k0, ATT_BC, t, d);
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < ATT_RPW; rr++) {
            int lr = warp * ATT_RPW + rr;
            int64_t i = row0 + lr, j = k0 + lane;
            if (i >= t || k0 > i) continue; /* the same for the whole warp */
            T s = j <= i ? a_dot(qs + lr * d, ks + lane * (d + 1), d) * scale : (T)-INFINITY;
            T mn = a_max(m[rr], a_warp_max(s)); /* finite: key k0 <= i counts */
            T alpha = g_exp(m[rr] - mn), p = j <= i ? g_exp(s - mn) : T(0);
            l[rr] = l[rr] * alpha + a_warp_sum(p);
            T w = j <= i ? p * keep<T>(a, base, t, i, j) : T(0); /* dropped out */
            m[rr] = mn;
#pragma unroll
            for (int e = 0; e < ATT_EPL; e++) acc[rr][e] *= alpha;
            int n = i - k0 + 1 < ATT_BC ? (int)(i - k0 + 1) : ATT_BC;
            fold_tile(acc[rr], w, vs, d, 0, n, lane, d);
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; rr++) {
        int64_t i = row0 + warp * ATT_RPW + rr;
        if (i >= t) continue;
        store_row(o + off + i * d, acc[rr], T(1) / l[rr], lane, d);
        if (lane == 0) lse[head * t + i] = m[rr] + g_log(l[rr]);
    }
}

/* delta[r] = sum_c gout[r, c] * out[r, c], one warp per row of bh * t. */
template <typename T>
__global__ void attention_delta_kernel(const T *go, const T *o, T *delta, int64_t rows, int d) {
    int lane = threadIdx.x & 31;
    WARP_ROWS(r, rows) {
        double s = 0;
        for (int c = lane; c < d; c += 32) s += (double)go[r * d + c] * (double)o[r * d + c];
        s = warp_sum(s);
        if (lane == 0) delta[r] = (T)s;
    }
}

/* gq for ATT_BR query rows, over the key tiles they see. */
template <typename T>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_gq_kernel(const T *q, const T *k, const T *v, const T *lse, const T *go,
                        const T *delta, T *gq, int64_t t, int d, GpuAttentionArgs a) {
    extern __shared__ __align__(16) unsigned char att_smem[];
    T *qs = (T *)att_smem;          /* [ATT_BR][d] */
    T *gos = qs + ATT_BR * d;       /* [ATT_BR][d] */
    T *ks = gos + ATT_BR * d;       /* [ATT_BC][d + 1] */
    T *vs = ks + ATT_BC * (d + 1);  /* [ATT_BC][d + 1] */
    int64_t head = blockIdx.x, off = head * t * d, row0 = (int64_t)blockIdx.y * ATT_BR;
    uint64_t base = dropout_base(a, head, t);
    T scale = (T)a.scale;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    load_rows(qs, d, q + off, row0, ATT_BR, t, d);
    load_rows(gos, d, go + off, row0, ATT_BR, t, d);
    T acc[ATT_RPW][ATT_EPL];
    zero_rows(acc);
    int64_t last = (row0 + ATT_BR < t ? row0 + ATT_BR : t) - 1;
    for (int64_t k0 = 0; k0 <= last; k0 += ATT_BC) {
        __syncthreads();
        load_rows(ks, d + 1, k + off, k0, ATT_BC, t, d);
        load_rows(vs, d + 1, v + off, k0, ATT_BC, t, d);
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < ATT_RPW; rr++) {
            int lr = warp * ATT_RPW + rr;
            int64_t i = row0 + lr, j = k0 + lane;
            if (i >= t || k0 > i) continue;
            T ds = 0;
            if (j <= i) {
                T p = g_exp(a_dot(qs + lr * d, ks + lane * (d + 1), d) * scale -
                            lse[head * t + i]);
                T kf = keep<T>(a, base, t, i, j);
                T dp = kf != T(0) ? kf * a_dot(gos + lr * d, vs + lane * (d + 1), d) : T(0);
                ds = p * (dp - delta[head * t + i]);
            }
            int n = i - k0 + 1 < ATT_BC ? (int)(i - k0 + 1) : ATT_BC;
            fold_tile(acc[rr], ds, ks, d + 1, 0, n, lane, d);
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; rr++) {
        int64_t i = row0 + warp * ATT_RPW + rr;
        if (i < t) store_row(gq + off + i * d, acc[rr], scale, lane, d);
    }
}

/* gk and gv for ATT_BR key rows, over the query tiles that see them. */
template <typename T>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_gkv_kernel(const T *q, const T *k, const T *v, const T *lse, const T *go,
                         const T *delta, T *gk, T *gv, int64_t t, int d, GpuAttentionArgs a) {
    extern __shared__ __align__(16) unsigned char att_smem[];
    T *ks = (T *)att_smem;          /* [ATT_BR][d] */
    T *vs = ks + ATT_BR * d;        /* [ATT_BR][d] */
    T *qs = vs + ATT_BR * d;        /* [ATT_BC][d + 1] */
    T *gos = qs + ATT_BC * (d + 1); /* [ATT_BC][d + 1] */
    T *ls = gos + ATT_BC * (d + 1); /* [ATT_BC] */
    T *dls = ls + ATT_BC;           /* [ATT_BC] */
    int64_t head = blockIdx.x, off = head * t * d, row0 = (int64_t)blockIdx.y * ATT_BR;
    uint64_t base = dropout_base(a, head, t);
    T scale = (T)a.scale;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    load_rows(ks, d, k + off, row0, ATT_BR, t, d);
    load_rows(vs, d, v + off, row0, ATT_BR, t, d);
    T ak[ATT_RPW][ATT_EPL], av[ATT_RPW][ATT_EPL];
    zero_rows(ak);
    zero_rows(av);
    for (int64_t q0 = row0; q0 < t; q0 += ATT_BC) {
        __syncthreads();
        load_rows(qs, d + 1, q + off, q0, ATT_BC, t, d);
        load_rows(gos, d + 1, go + off, q0, ATT_BC, t, d);
        load_scalars(ls, lse + head * t, q0, ATT_BC, t);
        load_scalars(dls, delta + head * t, q0, ATT_BC, t);
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < ATT_RPW; rr++) {
            int lr = warp * ATT_RPW + rr;
            int64_t j = row0 + lr, i = q0 + lane;
            if (j >= t || j >= q0 + ATT_BC) continue; /* no query of this tile sees key j */
            T pk = 0, ds = 0; /* p_ij times its dropout factor, and ds_ij */
            if (i >= j && i < t) {
                T p = g_exp(a_dot(qs + lane * (d + 1), ks + lr * d, d) * scale - ls[lane]);
                T kf = keep<T>(a, base, t, i, j);
                T dp = kf != T(0) ? kf * a_dot(gos + lane * (d + 1), vs + lr * d, d) : T(0);
                pk = p * kf;
                ds = p * (dp - dls[lane]);
            }
            int first = j > q0 ? (int)(j - q0) : 0;
            int end = t - q0 < ATT_BC ? (int)(t - q0) : ATT_BC;
            fold_tile(av[rr], pk, gos, d + 1, first, end, lane, d);
            fold_tile(ak[rr], ds, qs, d + 1, first, end, lane, d);
        }
    }
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; rr++) {
        int64_t j = row0 + warp * ATT_RPW + rr;
        if (j >= t) continue;
        store_row(gk + off + j * d, ak[rr], scale, lane, d);
        store_row(gv + off + j * d, av[rr], T(1), lane, d);
    }
}

/* attention_launch for this file's kernels: ATT_BR rows a block. */
template <typename K, typename... Args>
static void launch_rows(K kernel, const char *what, size_t smem, int64_t bh, int64_t t,
                        Args... args) {
    attention_launch(kernel, what, ATT_BR, ATT_WARPS * 32, smem, bh, t, args...);
}

template <typename T>
static void attention_run(const void *q, const void *k, const void *v, void *out, void *lse,
                          int64_t bh, int64_t t, int d, GpuAttentionArgs a) {
    size_t smem = (size_t)(ATT_BR * d + ATT_BC * (d + 1) + ATT_BC * d) * sizeof(T);
    launch_rows(attention_forward_kernel<T>, "causal_attention kernel", smem, bh, t,
                (const T *)q, (const T *)k, (const T *)v, (T *)out, (T *)lse, t, d, a);
}

template <typename T>
static void attention_backward_run(const void *q, const void *k, const void *v, const void *out,
                                   const void *lse, const void *go, void *delta, void *gq,
                                   void *gk, void *gv, int64_t bh, int64_t t, int d,
                                   GpuAttentionArgs a) {
    attention_delta_kernel<T><<<gpu_warp_blocks(bh * t), GPU_THREADS, 0, gpu_stream()>>>(
        (const T *)go, (const T *)out, (T *)delta, bh * t, d);
    gpu_check_launch("causal_attention delta kernel");
    const void *tensors[] = {q, k, v, lse, go, delta, gq, gk, gv};
    if (attention_tiled_fits(sizeof(T) == 4 ? GPU_F32 : GPU_F64, d, 9, tensors)) {
        attention_tiled_backward((const float *)q, (const float *)k, (const float *)v,
                                 (const float *)lse, (const float *)go, (const float *)delta,
                                 (float *)gq, (float *)gk, (float *)gv, bh, t, d, a);
        return;
    }
    size_t smem_q = (size_t)(2 * ATT_BR * d + 2 * ATT_BC * (d + 1)) * sizeof(T);
    launch_rows(attention_gq_kernel<T>, "causal_attention gq kernel", smem_q, bh, t,
                (const T *)q, (const T *)k, (const T *)v, (const T *)lse, (const T *)go,
                (const T *)delta, (T *)gq, t, d, a);
    size_t smem_kv = smem_q + 2 * ATT_BC * sizeof(T);
    launch_rows(attention_gkv_kernel<T>, "causal_attention gk/gv kernel", smem_kv, bh, t,
                (const T *)q, (const T *)k, (const T *)v, (const T *)lse, (const T *)go,
                (const T *)delta, (T *)gk, (T *)gv, t, d, a);
}

extern "C" void gpu_launch_causal_attention(int dtype, const void *q, const void *k,
                                            const void *v, void *out, void *lse, int64_t bh,
                                            int64_t t, int64_t d, GpuAttentionArgs args) {
    if (bh <= 0 || t <= 0 || d <= 0) return;
    const void *tensors[] = {q, k, v, out, lse};
    if (attention_tiled_fits(dtype, d, 5, tensors))
        attention_tiled_forward((const float *)q, (const float *)k, (const float *)v,
                                (float *)out, (float *)lse, bh, t, (int)d, args);
    else if (dtype == GPU_F32)
        attention_run<float>(q, k, v, out, lse, bh, t, (int)d, args);
    else
        attention_run<double>(q, k, v, out, lse, bh, t, (int)d, args);
}

extern "C" void gpu_launch_causal_attention_backward(int dtype, const void *q, const void *k,
                                                     const void *v, const void *out,
                                                     const void *lse, const void *gout,
                                                     void *delta, void *gq, void *gk, void *gv,
                                                     int64_t bh, int64_t t, int64_t d,
                                                     GpuAttentionArgs args) {
    if (bh <= 0 || t <= 0 || d <= 0) return;
    if (dtype == GPU_F32)
        attention_backward_run<float>(q, k, v, out, lse, gout, delta, gq, gk, gv, bh, t, (int)d,
                                      args);
    else
        attention_backward_run<double>(q, k, v, out, lse, gout, delta, gq, gk, gv, bh, t, (int)d,
                                       args);
}
