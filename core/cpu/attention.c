/* attention.c - CPU causal scaled-dot-product attention over q, k, v
 * [BH, T, D] and its backward, as F.scaled_dot_product_attention(q, k, v,
 * is_causal=True), computed the way FlashAttention does rather than through
 * a T x T matrix, in tiles of BLOCK queries by BLOCK keys whose products
 * are small matrix products (OpenBLAS, one thread each inside our parallel
 * loop):
 *
 *   forward, per block of query rows: an online softmax over blocks of
 *     keys up to the block's last query (S = Q K^T; per row a running max
 *     m and sum l, the output accumulator rescaled by exp(m_old - m_new)
 *     when the max grows; acc += P V), out_i = acc_i / l_i, and each row's
 *     logsumexp lse_i = m + log(l) saved for the backward;
 *   backward (FlashAttention-2): delta_i = rowsum(gout_i * out_i), and with
 *     P = exp(scale S - lse) recomputed, dP = gout V^T, dS = P (dP - delta):
 *       gq = scale dS K      (per block of queries, over key blocks <= it)
 *       gk = scale dS^T Q,
 *       gv = P^T gout        (per block of keys, over query blocks >= it).
 *   dropout (AttentionArgs): out_i = sum_j p_ij z_ij v_j / l with z_ij the
 *     mask's factor (0 or 1 / (1 - p)); the backward takes z_ij dp_ij for
 *     the probability's gradient and p_ij z_ij for gv, while delta_i =
 *     rowsum(gout_i * out_i) stays what it is (it equals sum_j p_ij dp_ij).
 * Every block of rows is independent, so blocks go over the OpenMP threads
 * without atomics and the results do not depend on the thread count.
 * Products and accumulators are in T; the softmax's max and sum in
 * double, each probability's exponential in T (expf for float: the double
 * exp was a tenth of a GPT-2 small step, and P is stored in T anyway).
 * Tiles live on the stack. Row by row with dot products instead, a GPT-2
 * small step spent a quarter of its time here, at a third of the matrix
 * products' speed.
 */
#include <cblas.h>
#include <tgmath.h>

#include "core/cpu/cpu.h"
#include "core/rng.h"

#define BLOCK 64 /* queries and keys of a tile */

/* The dropout factor of probability (i, j) of the head whose numbers start
 * at `base` (args->offset + h T T): 0 or 1 / (1 - p); 1 without dropout. */
static double keep(const AttentionArgs *a, uint64_t base, int64_t t, int64_t i, int64_t j) {
    if (a->dropout <= 0) return 1;
    return (double)philox_uniform(a->seed, base + (uint64_t)(i * t + j)) >= a->dropout
               ? 1 / (1 - a->dropout)
               : 0;
}

/* c[m, n] (ld ldc) = x * c + op(a) op(b), row-major, single-threaded by
 * the caller's parallel loop. */
static void gemm_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a,
                     int64_t lda, const float *b, int64_t ldb, double x, float *c, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, 1.0f, a, (blasint)lda, b, (blasint)ldb,
                (float)x, c, (blasint)ldc);
}

static void gemm_f64(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double *a,
                     int64_t lda, const double *b, int64_t ldb, double x, double *c, int64_t ldc) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, 1.0, a, (blasint)lda, b, (blasint)ldb, x, c,
                (blasint)ldc);
}

/* A tile: queries i0 .. i0 + nq of a head of t rows against keys j0 ..
 * j0 + nk; key j of query i counts when j <= i. */
typedef struct {
    int64_t i0, nq, j0, nk, t, d;
    uint64_t base; /* the head's dropout numbers */
} Tile;

static inline bool tile_sees(const Tile *x, int64_t r, int64_t c) {
    return x->j0 + c <= x->i0 + r;
}

/* Rows of the tile starting at row `at` of t: BLOCK, or what is left. */
static inline int64_t tile_rows(int64_t t, int64_t at) {
    return t - at < BLOCK ? t - at : BLOCK;
}

#define DEFINE_ATTENTION(T, SFX)                                                                   \
    /* Forward of one block of queries: out and lse of its rows. */                                \
    static void forward_block_##SFX(const T *q, const T *k, const T *v, const AttentionArgs *a,    \
                                    Tile x, T *out, T *lse) {                                      \
        T acc[BLOCK * ATTENTION_MAX_HEAD_DIM] = {0}, st[BLOCK * BLOCK];                            \
        double m[BLOCK], l[BLOCK];                                                                 \
        for (int64_t r = 0; r < x.nq; r++) m[r] = -INFINITY, l[r] = 0;                             \
        const int64_t d = x.d;                                                                     \
        for (x.j0 = 0; x.j0 < x.i0 + x.nq; x.j0 += BLOCK) {                                       \
            x.nk = tile_rows(x.t, x.j0);                                                           \
            gemm_##SFX(false, true, x.nq, x.nk, d, q + x.i0 * d, d, k + x.j0 * d, d, 0, st,        \
                       BLOCK);                                                                     \
            for (int64_t r = 0; r < x.nq; r++) {                                                   \
                T *row = st + r * BLOCK;                                                           \
                double bm = -INFINITY;                                                             \
                bool saw_nan = false;                                                              \
                for (int64_t c = 0; c < x.nk && tile_sees(&x, r, c); c++) {                        \
                    double s = a->scale * (double)row[c];                                          \
                    bm = fmax(bm, s);                                                              \
                    saw_nan |= isnan(s);                                                           \
                }                                                                                  \
                /* nothing of this block for this row: no key it sees, or                          \
                 * only scores of -inf (a NaN among them goes on: the                              \
                 * row's output is NaN, as torch's) */                                             \
                if (bm == -INFINITY && !saw_nan) {                                                 \
                    for (int64_t c = 0; c < x.nk; c++) row[c] = 0;                                 \
                    continue;                                                                      \
                }                                                                                  \
                double mn = fmax(bm, m[r]), alpha = exp(m[r] - mn);                                \
                l[r] *= alpha;                                                                     \
                for (int64_t c = 0; c < d; c++) acc[r * d + c] *= (T)alpha;                        \
                for (int64_t c = 0; c < x.nk; c++) {                                               \
                    if (!tile_sees(&x, r, c)) {                                                    \
                        row[c] = 0;                                                                \
                        continue;                                                                  \
                    }                                                                              \
                    double p = exp((T)(a->scale * (double)row[c] - mn));                           \
                    l[r] += p;                                                                     \
                    row[c] = (T)(p * keep(a, x.base, x.t, x.i0 + r, x.j0 + c));                    \
                }                                                                                  \
                m[r] = mn;                                                                         \
            }                                                                                      \
            gemm_##SFX(false, false, x.nq, d, x.nk, st, BLOCK, v + x.j0 * d, d, 1, acc, d);        \
        }                                                                                          \
        for (int64_t r = 0; r < x.nq; r++) {                                                       \
            for (int64_t c = 0; c < d; c++)                                                        \
                out[(x.i0 + r) * d + c] = (T)(acc[r * d + c] / l[r]);                              \
            lse[x.i0 + r] = (T)(m[r] + log(l[r]));                                                 \
        }                                                                                          \
    }                                                                                              \
    static void attention_##SFX(const T *q, const T *k, const T *v, const AttentionArgs *a,        \
                                T *out, T *lse, int64_t bh, int64_t t, int64_t d) {                \
        int64_t blocks = (t + BLOCK - 1) / BLOCK;                                                  \
        _Pragma("omp parallel for schedule(dynamic, 1) if (bh * t * t * d >= CPU_PARALLEL_MIN)")   \
        for (int64_t r = 0; r < bh * blocks; r++) {                                                \
            int64_t h = r / blocks, i0 = r % blocks * BLOCK, off = h * t * d;                      \
            Tile x = {i0, tile_rows(t, i0), 0, 0, t, d, attention_dropout_base(a, h, t)};          \
            forward_block_##SFX(q + off, k + off, v + off, a, x, out + off, lse + h * t);          \
        }                                                                                          \
    }                                                                                              \
    /* The tile's P (into p, times the dropout factors: pz) and dS (into   \
     * ds): S = Q K^T, P = exp(scale S - lse), dS = P (z dP - delta) with   \
     * dP = gout V^T; zero where the query does not see the key. */         \
    static void tile_p_ds_##SFX(const T *q, const T *k, const T *v, const T *go, const T *lse,     \
                                const T *delta, const AttentionArgs *a, const Tile *x, T *pz,      \
                                T *ds) {                                                           \
        const int64_t d = x->d;                                                                    \
        gemm_##SFX(false, true, x->nq, x->nk, d, q + x->i0 * d, d, k + x->j0 * d, d, 0, pz,        \
                   BLOCK);                                                                         \
        gemm_##SFX(false, true, x->nq, x->nk, d, go + x->i0 * d, d, v + x->j0 * d, d, 0, ds,       \
                   BLOCK);                                                                         \
        for (int64_t r = 0; r < x->nq; r++) {                                                      \
            int64_t i = x->i0 + r;                                                                 \
            for (int64_t c = 0; c < x->nk; c++) {                                                  \
                T *pc = pz + r * BLOCK + c, *dc = ds + r * BLOCK + c;                              \
                if (!tile_sees(x, r, c)) {                                                         \
                    *pc = 0, *dc = 0;                                                              \
                    continue;                                                                      \
                }                                                                                  \
                double p = exp((T)(a->scale * (double)*pc - (double)lse[i]));                      \
                double z = keep(a, x->base, x->t, i, x->j0 + c);                                   \
                *dc = (T)(p * (z * (double)*dc - (double)delta[i]));                               \
                *pc = (T)(p * z);                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    /* gq of one block of queries, over the key blocks it sees. */                                 \
    static void query_block_##SFX(const T *q, const T *k, const T *v, const T *go, const T *lse,   \
                                  const T *delta, const AttentionArgs *a, Tile x, T *gq) {         \
        T acc[BLOCK * ATTENTION_MAX_HEAD_DIM] = {0}, pz[BLOCK * BLOCK], ds[BLOCK * BLOCK];         \
        const int64_t d = x.d;                                                                     \
        for (x.j0 = 0; x.j0 < x.i0 + x.nq; x.j0 += BLOCK) {                                       \
            x.nk = tile_rows(x.t, x.j0);                                                           \
            tile_p_ds_##SFX(q, k, v, go, lse, delta, a, &x, pz, ds);                               \
            gemm_##SFX(false, false, x.nq, d, x.nk, ds, BLOCK, k + x.j0 * d, d, 1, acc, d);        \
        }                                                                                          \
        for (int64_t r = 0; r < x.nq; r++)                                                         \
            for (int64_t c = 0; c < d; c++)                                                        \
                gq[(x.i0 + r) * d + c] = (T)(a->scale * acc[r * d + c]);                           \
    }                                                                                              \
    /* gk and gv of one block of keys, over the query blocks that see it. */                       \
    static void key_block_##SFX(const T *q, const T *k, const T *v, const T *go, const T *lse,     \
                                const T *delta, const AttentionArgs *a, Tile x, T *gk, T *gv) {    \
        T ak[BLOCK * ATTENTION_MAX_HEAD_DIM] = {0}, av[BLOCK * ATTENTION_MAX_HEAD_DIM] = {0};      \
        T pz[BLOCK * BLOCK], ds[BLOCK * BLOCK];                                                    \
        const int64_t d = x.d;                                                                     \
        for (x.i0 = x.j0; x.i0 < x.t; x.i0 += BLOCK) {                                            \
            x.nq = tile_rows(x.t, x.i0);                                                           \
            tile_p_ds_##SFX(q, k, v, go, lse, delta, a, &x, pz, ds);                               \
            gemm_##SFX(true, false, x.nk, d, x.nq, pz, BLOCK, go + x.i0 * d, d, 1, av, d);         \
            gemm_##SFX(true, false, x.nk, d, x.nq, ds, BLOCK, q + x.i0 * d, d, 1, ak, d);          \
        }                                                                                          \
        for (int64_t r = 0; r < x.nk; r++)                                                         \
            for (int64_t c = 0; c < d; c++) {                                                      \
                gk[(x.j0 + r) * d + c] = (T)(a->scale * ak[r * d + c]);                            \
                gv[(x.j0 + r) * d + c] = av[r * d + c];                                            \
            }                                                                                      \
    }                                                                                              \
    static void attention_backward_##SFX(const T *q, const T *k, const T *v, const T *o,           \
                                         const T *lse, const T *go, const AttentionArgs *a,        \
                                         T *delta, T *gq, T *gk, T *gv, int64_t bh, int64_t t,     \
                                         int64_t d) {                                              \
        int64_t rows = bh * t, blocks = (t + BLOCK - 1) / BLOCK, items = bh * blocks;              \
        bool par = rows * t * d >= CPU_PARALLEL_MIN;                                               \
        _Pragma("omp parallel for schedule(static) if (par)")                                      \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            T s = 0;                                                                               \
            for (int64_t c = 0; c < d; c++) s += go[r * d + c] * o[r * d + c];                     \
            delta[r] = s;                                                                          \
        }                                                                                          \
        _Pragma("omp parallel for schedule(dynamic, 1) if (par)")                                  \
        for (int64_t r = 0; r < 2 * items; r++) {                                                  \
            bool query = r < items; /* first the gq blocks, then the gk, gv blocks */              \
            int64_t rr = query ? r : r - items, h = rr / blocks, x0 = rr % blocks * BLOCK;         \
            int64_t off = h * t * d, n = tile_rows(t, x0);                                         \
            uint64_t base = attention_dropout_base(a, h, t);                                       \
            const T *qh = q + off, *kh = k + off, *vh = v + off, *goh = go + off;                  \
            const T *lh = lse + h * t, *dh = delta + h * t;                                        \
            if (query) {                                                                           \
                Tile x = {x0, n, 0, 0, t, d, base};                                                \
                query_block_##SFX(qh, kh, vh, goh, lh, dh, a, x, gq + off);                        \
            } else {                                                                               \
                Tile x = {0, 0, x0, n, t, d, base};                                                \
                key_block_##SFX(qh, kh, vh, goh, lh, dh, a, x, gk + off, gv + off);                \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_ATTENTION(float, f32)
DEFINE_ATTENTION(double, f64)

static void dims(const Tensor *q, int64_t *bh, int64_t *t, int64_t *d) {
    *bh = q->shape[0], *t = q->shape[1], *d = q->shape[2];
}

void cpu_causal_attention(const Tensor *q, const Tensor *k, const Tensor *v,
                          const AttentionArgs *args, Tensor *out, Tensor *lse) {
    int64_t bh, t, d;
    dims(q, &bh, &t, &d);
    if (q->dtype == DTYPE_FLOAT32)
        attention_f32(tensor_data(q), tensor_data(k), tensor_data(v), args, tensor_data(out),
                      tensor_data(lse), bh, t, d);
    else
        attention_f64(tensor_data(q), tensor_data(k), tensor_data(v), args, tensor_data(out),
                      tensor_data(lse), bh, t, d);
}

void cpu_causal_attention_backward(const Tensor *q, const Tensor *k, const Tensor *v,
                                   const Tensor *out, const Tensor *lse, const Tensor *gout,
                                   const AttentionArgs *args, Tensor *delta, Tensor *gq,
                                   Tensor *gk, Tensor *gv) {
    int64_t bh, t, d;
    dims(q, &bh, &t, &d);
    if (q->dtype == DTYPE_FLOAT32)
        attention_backward_f32(tensor_data(q), tensor_data(k), tensor_data(v), tensor_data(out),
                               tensor_data(lse), tensor_data(gout), args, tensor_data(delta),
                               tensor_data(gq), tensor_data(gk), tensor_data(gv), bh, t, d);
    else
        attention_backward_f64(tensor_data(q), tensor_data(k), tensor_data(v), tensor_data(out),
                               tensor_data(lse), tensor_data(gout), args, tensor_data(delta),
                               tensor_data(gq), tensor_data(gk), tensor_data(gv), bh, t, d);
}
