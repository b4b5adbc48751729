/* channel.c - CPU per-channel sums and affine maps over [N, C, S], the
 * passes of batch norm (core/ops/batch_norm.c): its statistics and the
 * backward's two sums in one read of their inputs each, its output and
 * input gradient in one pass, where composed ops made a tensor of x's size
 * per step.
 *
 * channel_sum_product: a channel per thread, its N rows of S in order, in
 * double: the same sum whatever the thread count. channel_affine: the
 * (n, c) rows split over the threads, each row's coefficients read once,
 * computed in the tensor's dtype as torch's batch norm does.
 *
 * The blocked layout [N, C/L, S, L] (L = TENSOR_BLOCK, core/tensor.h)
 * has kernels of its own: a block of L channels summed in L accumulators
 * over each of 8 fixed ranges of images, (block, range) pairs over the
 * threads (a ResNet's first stage has only 4 blocks), the ranges then
 * added in order; the affine map's rows (n, block) read L coefficients
 * each. The inner loops run over the lanes, which
 * sit next to each other in memory: float32's also built for AVX-512
 * (isa.c), where the lanes' sums are two vectors of doubles.
 */
#include "core/cpu/cpu.h"

#define DEFINE_CHANNEL(T, SFX)                                                                     \
    static void sum_product_##SFX(const T *u, const T *mu, const T *v, const T *mv, T *out,        \
                                  int64_t n, int64_t c, int64_t s) {                               \
        _Pragma("omp parallel for schedule(static) if (n * c * s >= CPU_PARALLEL_MIN)")            \
        for (int64_t ch = 0; ch < c; ch++) {                                                       \
            double cu = mu ? (double)mu[ch] : 0, cv = mv ? (double)mv[ch] : 0, acc = 0;            \
            for (int64_t i = 0; i < n; i++) {                                                      \
                const T *pu = u + (i * c + ch) * s;                                                \
                if (v) {                                                                           \
                    const T *pv = v + (i * c + ch) * s;                                            \
                    _Pragma("omp simd reduction(+ : acc)")                                         \
                    for (int64_t j = 0; j < s; j++) acc += (pu[j] - cu) * (pv[j] - cv);            \
                } else {                                                                           \
                    _Pragma("omp simd reduction(+ : acc)")                                         \
                    for (int64_t j = 0; j < s; j++) acc += pu[j] - cu;                             \
                }                                                                                  \
            }                                                                                      \
            out[ch] = (T)acc;                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void affine_##SFX(const T *u, const T *a, const T *v, const T *m, const T *b,           \
                             const T *d, T *out, int64_t n, int64_t c, int64_t s) {                \
        _Pragma("omp parallel for schedule(static) if (n * c * s >= CPU_PARALLEL_MIN)")            \
        for (int64_t row = 0; row < n * c; row++) {                                                \
            int64_t ch = row % c;                                                                  \
            const T *pu = u + row * s;                                                             \
            T *po = out + row * s;                                                                 \
            T ka = a[ch], kd = d ? d[ch] : (T)0;                                                   \
            if (v) {                                                                               \
                const T *pv = v + row * s;                                                         \
                T kb = b[ch], km = m[ch];                                                          \
                _Pragma("omp simd")                                                                \
                for (int64_t j = 0; j < s; j++) po[j] = ka * pu[j] + kb * (pv[j] - km) + kd;       \
            } else {                                                                               \
                _Pragma("omp simd")                                                                \
                for (int64_t j = 0; j < s; j++) po[j] = ka * pu[j] + kd;                           \
            }                                                                                      \
        }                                                                                          \
    }

#define LANES TENSOR_BLOCK /* the lanes kernels' lanes, known to the compiler */
#define LANE_CHUNKS 8      /* fixed ranges of images: sums in an order threads do not change */
#define LANE_GROUP 8       /* blocks a parallel pass, their ranges' sums on the stack */
#define DEFINE_CHANNEL_LANES(T, SFX, ATTR)                                                         \
    /* Block blk's sums over images i0 .. i1-1 into part[LANES]. */                                \
    ATTR static void sum_lanes_range_##SFX(const T *u, const T *mu, const T *v, const T *mv,       \
                                           int64_t blocks, int64_t blk, int64_t i0, int64_t i1,    \
                                           int64_t s, double *part) {                              \
        double cu[LANES] = {0}, cv[LANES] = {0}, acc[LANES] = {0};                                 \
        for (int k = 0; k < LANES; k++) {                                                          \
            if (mu) cu[k] = (double)mu[blk * LANES + k];                                           \
            if (mv) cv[k] = (double)mv[blk * LANES + k];                                           \
        }                                                                                          \
        for (int64_t i = i0; i < i1; i++) {                                                        \
            const T *pu = u + (i * blocks + blk) * s * LANES;                                      \
            const T *pv = v ? v + (i * blocks + blk) * s * LANES : NULL;                           \
            for (int64_t j = 0; j < s * LANES; j += LANES) {                                       \
                if (pv) {                                                                          \
                    _Pragma("omp simd")                                                            \
                    for (int k = 0; k < LANES; k++)                                                \
                        acc[k] += (pu[j + k] - cu[k]) * (pv[j + k] - cv[k]);                       \
                } else {                                                                           \
                    _Pragma("omp simd")                                                            \
                    for (int k = 0; k < LANES; k++) acc[k] += pu[j + k] - cu[k];                   \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (int k = 0; k < LANES; k++) part[k] = acc[k];                                          \
    }                                                                                              \
    /* LANE_GROUP blocks at a time, each over LANE_CHUNKS fixed ranges of                          \
     * images in parallel, the ranges' sums then added in order. */                                \
    ATTR static void sum_product_lanes_##SFX(const T *u, const T *mu, const T *v,                  \
                                             const T *mv, T *out, int64_t n, int64_t c,            \
                                             int64_t s) {                                          \
        int64_t blocks = c / LANES, chunks = n < LANE_CHUNKS ? (n > 0 ? n : 1) : LANE_CHUNKS;      \
        double part[LANE_GROUP][LANE_CHUNKS][LANES];                                               \
        bool par = n * c * s >= CPU_PARALLEL_MIN;                                                  \
        for (int64_t g0 = 0; g0 < blocks; g0 += LANE_GROUP) {                                      \
            int64_t g = blocks - g0 < LANE_GROUP ? blocks - g0 : LANE_GROUP;                       \
            _Pragma("omp parallel for collapse(2) schedule(static) if (par)")                      \
            for (int64_t b = 0; b < g; b++)                                                        \
                for (int64_t k = 0; k < chunks; k++)                                               \
                    sum_lanes_range_##SFX(u, mu, v, mv, blocks, g0 + b, k * n / chunks,            \
                                          (k + 1) * n / chunks, s, part[b][k]);                    \
            for (int64_t b = 0; b < g; b++)                                                        \
                for (int l = 0; l < LANES; l++) {                                                  \
                    double t = 0;                                                                  \
                    for (int64_t k = 0; k < chunks; k++) t += part[b][k][l];                       \
                    out[(g0 + b) * LANES + l] = (T)t;                                              \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
    ATTR static void affine_lanes_##SFX(const T *u, const T *a, const T *v, const T *m,            \
                                        const T *b, const T *d, T *out, int64_t n, int64_t c,      \
                                        int64_t s) {                                               \
        int64_t blocks = c / LANES;                                                                \
        _Pragma("omp parallel for schedule(static) if (n * c * s >= CPU_PARALLEL_MIN)")            \
        for (int64_t row = 0; row < n * blocks; row++) {                                           \
            int64_t ch = row % blocks * LANES;                                                     \
            T ka[LANES], kb[LANES] = {0}, km[LANES] = {0}, kd[LANES] = {0};                        \
            for (int k = 0; k < LANES; k++) {                                                      \
                ka[k] = a[ch + k];                                                                 \
                if (v) kb[k] = b[ch + k], km[k] = m[ch + k];                                       \
                if (d) kd[k] = d[ch + k];                                                          \
            }                                                                                      \
            const T *pu = u + row * s * LANES, *pv = v ? v + row * s * LANES : NULL;               \
            T *po = out + row * s * LANES;                                                         \
            for (int64_t j = 0; j < s * LANES; j += LANES) {                                       \
                if (pv) {                                                                          \
                    _Pragma("omp simd")                                                            \
                    for (int k = 0; k < LANES; k++)                                                \
                        po[j + k] = ka[k] * pu[j + k] + kb[k] * (pv[j + k] - km[k]) + kd[k];       \
                } else {                                                                           \
                    _Pragma("omp simd")                                                            \
                    for (int k = 0; k < LANES; k++) po[j + k] = ka[k] * pu[j + k] + kd[k];         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_CHANNEL(float, f32)
DEFINE_CHANNEL(double, f64)
DEFINE_CHANNEL_LANES(float, f32, )
DEFINE_CHANNEL_LANES(float, f32_avx512, __attribute__((target("avx512f"))))
/* float64 for the kernels' test beside float32's; the ops send float32
 * only (the layout is oneDNN's, core/cpu/backend.c's blocked_layout) */
DEFINE_CHANNEL_LANES(double, f64, )

/* tensor_data of t, or NULL for NULL */
static const void *data_or_null(const Tensor *t) { return t ? tensor_data(t) : NULL; }

void cpu_channel_sum_product(const Tensor *u, const Tensor *mu, const Tensor *v,
                             const Tensor *mv, int64_t lanes, Tensor *out) {
    int64_t n, c, s;
    backend_channel_dims(u, lanes, &n, &c, &s);
    const void *pu = tensor_data(u), *pmu = data_or_null(mu), *pv = data_or_null(v),
               *pmv = data_or_null(mv);
    bool f32 = u->dtype == DTYPE_FLOAT32;
    if (lanes > 1 && f32 && cpu_avx512())
        sum_product_lanes_f32_avx512(pu, pmu, pv, pmv, tensor_data(out), n, c, s);
    else if (lanes > 1 && f32)
        sum_product_lanes_f32(pu, pmu, pv, pmv, tensor_data(out), n, c, s);
    else if (lanes > 1)
        sum_product_lanes_f64(pu, pmu, pv, pmv, tensor_data(out), n, c, s);
    else if (f32)
        sum_product_f32(pu, pmu, pv, pmv, tensor_data(out), n, c, s);
    else
        sum_product_f64(pu, pmu, pv, pmv, tensor_data(out), n, c, s);
}

void cpu_channel_affine(const Tensor *u, const Tensor *a, const Tensor *v, const Tensor *m,
                        const Tensor *b, const Tensor *d, int64_t lanes, Tensor *out) {
    int64_t n, c, s;
    backend_channel_dims(u, lanes, &n, &c, &s);
    const void *pu = tensor_data(u), *pa = tensor_data(a), *pv = data_or_null(v),
               *pm = data_or_null(m), *pb = data_or_null(b), *pd = data_or_null(d);
    void *po = tensor_data(out);
    bool f32 = u->dtype == DTYPE_FLOAT32;
    if (lanes > 1 && f32 && cpu_avx512())
        affine_lanes_f32_avx512(pu, pa, pv, pm, pb, pd, po, n, c, s);
    else if (lanes > 1 && f32)
        affine_lanes_f32(pu, pa, pv, pm, pb, pd, po, n, c, s);
    else if (lanes > 1)
        affine_lanes_f64(pu, pa, pv, pm, pb, pd, po, n, c, s);
    else if (f32)
        affine_f32(pu, pa, pv, pm, pb, pd, po, n, c, s);
    else
        affine_f64(pu, pa, pv, pm, pb, pd, po, n, c, s);
}
