/* attention.c - CPU causal scaled-dot-product attention over q, k, v
 * [BH, T, D] and its backward, as F.scaled_dot_product_attention(q, k, v,
 * is_causal=True), computed the way FlashAttention does rather than through
 * a T x T matrix:
 *
 *   forward, per query row i: an online softmax over blocks of keys
 *     j <= i (a running max m and sum l, the output accumulator rescaled by
 *     exp(m_old - m_new) when the max grows), out_i = acc / l, and the row's
 *     logsumexp lse_i = m + log(l) saved for the backward;
 *   backward (FlashAttention-2): delta_i = rowsum(gout_i * out_i), and with
 *     p_ij = exp(s_ij - lse_i) recomputed from s_ij = scale * q_i . k_j,
 *     ds_ij = p_ij (gout_i . v_j - delta_i):
 *       gq_i = scale * sum_{j <= i} ds_ij k_j      (one pass per query row)
 *       gk_j = scale * sum_{i >= j} ds_ij q_i,
 *       gv_j = sum_{i >= j} p_ij gout_i            (one pass per key row).
 *   dropout (AttentionArgs): out_i = sum_j p_ij z_ij v_j / l with z_ij the
 *     mask's factor (0 or 1 / (1 - p)); the backward takes gout_i . v_j z_ij
 *     for the probability's gradient and p_ij z_ij for gv, while delta_i =
 *     rowsum(gout_i * out_i) stays what it is (it equals sum_j p_ij dp_ij).
 * Every row is independent, so rows go over the OpenMP threads without
 * atomics and the results do not depend on the thread count. Dot products
 * and the row accumulators are in T (float32 sums vectorise: 4-7x faster
 * than double ones here, [4, 12, 256, 64] forward 26 ms, backward 73 ms on
 * 2 cores), the softmax's max, sum and exponentials in double; a row's
 * accumulators live on the stack (D <= ATTENTION_MAX_HEAD_DIM).
 */
#include <math.h>

#include "core/cpu/cpu.h"
#include "core/rng.h"

#define KEY_BLOCK 64 /* scores of one block of keys, on the stack */

/* The dropout factor of probability (i, j) of the head whose numbers start
 * at `base` (args->offset + h T T): 0 or 1 / (1 - p); 1 without dropout. */
static double keep(const AttentionArgs *a, uint64_t base, int64_t t, int64_t i, int64_t j) {
    if (a->dropout <= 0) return 1;
    return (double)philox_uniform(a->seed, base + (uint64_t)(i * t + j)) >= a->dropout
               ? 1 / (1 - a->dropout)
               : 0;
}

#define DEFINE_ATTENTION(T, SFX)                                                                   \
    static double dot_##SFX(const T *a, const T *b, int64_t d) {                                   \
        T s = 0;                                                                                   \
        _Pragma("omp simd reduction(+ : s)")                                                       \
        for (int64_t c = 0; c < d; c++) s += a[c] * b[c];                                          \
        return s;                                                                                  \
    }                                                                                              \
    static void axpy_##SFX(T *acc, double a, const T *x, int64_t d) {                              \
        T at = (T)a;                                                                               \
        _Pragma("omp simd")                                                                        \
        for (int64_t c = 0; c < d; c++) acc[c] += at * x[c];                                       \
    }                                                                                              \
    /* Query row i of head (q, k, v) of t rows: out_i and lse_i. */                                \
    static void attention_row_##SFX(const T *q, const T *k, const T *v, int64_t i, int64_t t,      \
                                    int64_t d, const AttentionArgs *a, uint64_t base, T *out,      \
                                    T *lse) {                                                      \
        T acc[ATTENTION_MAX_HEAD_DIM] = {0};                                                       \
        double s[KEY_BLOCK], m = -INFINITY, l = 0;                                                 \
        for (int64_t j0 = 0; j0 <= i; j0 += KEY_BLOCK) {                                           \
            int64_t n = i + 1 - j0 < KEY_BLOCK ? i + 1 - j0 : KEY_BLOCK;                           \
            double bm = -INFINITY;                                                                 \
            for (int64_t j = 0; j < n; j++) {                                                      \
                s[j] = a->scale * dot_##SFX(q + i * d, k + (j0 + j) * d, d);                       \
                bm = s[j] > bm ? s[j] : bm;                                                        \
            }                                                                                      \
            double mn = bm > m ? bm : m, alpha = exp(m - mn);                                      \
            l *= alpha;                                                                            \
            for (int64_t c = 0; c < d; c++) acc[c] *= (T)alpha;                                    \
            for (int64_t j = 0; j < n; j++) {                                                      \
                double p = exp(s[j] - mn), w = p * keep(a, base, t, i, j0 + j);                    \
                l += p;                                                                            \
                if (w != 0) axpy_##SFX(acc, w, v + (j0 + j) * d, d);                               \
            }                                                                                      \
            m = mn;                                                                                \
        }                                                                                          \
        for (int64_t c = 0; c < d; c++) out[i * d + c] = (T)(acc[c] / l);                          \
        lse[i] = (T)(m + log(l));                                                                  \
    }                                                                                              \
    static void attention_##SFX(const T *q, const T *k, const T *v, const AttentionArgs *a,        \
                                T *out, T *lse, int64_t bh, int64_t t, int64_t d) {                \
        _Pragma("omp parallel for schedule(dynamic, 16) if (bh * t * t * d >= CPU_PARALLEL_MIN)")  \
        for (int64_t r = 0; r < bh * t; r++) {                                                     \
            int64_t h = r / t, off = h * t * d;                                                    \
            attention_row_##SFX(q + off, k + off, v + off, r % t, t, d, a,                         \
                                attention_dropout_base(a, h, t), out + off, lse + h * t);          \
        }                                                                                          \
    }                                                                                              \
    /* p_ij, its dropout factor kf and ds_ij of query i and key j of a head. */                    \
    static void attention_p_ds_##SFX(const T *q, const T *k, const T *v, const T *go,              \
                                     double lse, double delta, int64_t i, int64_t j, int64_t t,    \
                                     int64_t d, const AttentionArgs *a, uint64_t base, double *p,  \
                                     double *kf, double *ds) {                                     \
        *p = exp(a->scale * dot_##SFX(q + i * d, k + j * d, d) - lse);                             \
        *kf = keep(a, base, t, i, j);                                                              \
        double dp = *kf != 0 ? *kf * dot_##SFX(go + i * d, v + j * d, d) : 0;                      \
        *ds = *p * (dp - delta);                                                                   \
    }                                                                                              \
    static void attention_backward_##SFX(const T *q, const T *k, const T *v, const T *o,           \
                                         const T *lse, const T *go, const AttentionArgs *a,        \
                                         T *delta, T *gq, T *gk, T *gv, int64_t bh, int64_t t,     \
                                         int64_t d) {                                              \
        int64_t rows = bh * t;                                                                     \
        bool par = rows * t * d >= CPU_PARALLEL_MIN;                                               \
        _Pragma("omp parallel for schedule(static) if (par)")                                      \
        for (int64_t r = 0; r < rows; r++) delta[r] = (T)dot_##SFX(go + r * d, o + r * d, d);      \
        _Pragma("omp parallel for schedule(dynamic, 16) if (par)")                                 \
        for (int64_t r = 0; r < 2 * rows; r++) {                                                   \
            bool query = r < rows; /* first the gq rows, then the gk, gv rows */                   \
            int64_t rr = query ? r : r - rows, h = rr / t, x = rr % t, off = h * t * d;            \
            const T *qh = q + off, *kh = k + off, *vh = v + off, *goh = go + off;                  \
            const T *lh = lse + h * t, *dh = delta + h * t;                                        \
            uint64_t base = attention_dropout_base(a, h, t);                                       \
            T a1[ATTENTION_MAX_HEAD_DIM] = {0}, a2[ATTENTION_MAX_HEAD_DIM] = {0};                  \
            double p, kf, ds;                                                                      \
            if (query) {                                                                           \
                for (int64_t j = 0; j <= x; j++) {                                                 \
                    attention_p_ds_##SFX(qh, kh, vh, goh, lh[x], dh[x], x, j, t, d, a, base, &p,   \
                                         &kf, &ds);                                                \
                    axpy_##SFX(a1, ds, kh + j * d, d);                                             \
                }                                                                                  \
                for (int64_t c = 0; c < d; c++) gq[off + x * d + c] = (T)(a->scale * a1[c]);       \
                continue;                                                                          \
            }                                                                                      \
            for (int64_t i = x; i < t; i++) {                                                      \
                attention_p_ds_##SFX(qh, kh, vh, goh, lh[i], dh[i], i, x, t, d, a, base, &p, &kf,  \
                                     &ds);                                                         \
                axpy_##SFX(a1, ds, qh + i * d, d);                                                 \
                if (kf != 0) axpy_##SFX(a2, p * kf, goh + i * d, d);                               \
            }                                                                                      \
            for (int64_t c = 0; c < d; c++) {                                                      \
                gk[off + x * d + c] = (T)(a->scale * a1[c]);                                       \
                gv[off + x * d + c] = (T)a2[c];                                                    \
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
