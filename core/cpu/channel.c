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
 */
#include "core/cpu/cpu.h"

#define DEFINE_CHANNEL(T, SFX)                                                                     \
    static void sum_product_##SFX(const T *u, const T *mu, const T *v, const T *mv, T *out,       \
                                  int64_t n, int64_t c, int64_t s) {                              \
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
                             const T *d, T *out, int64_t n, int64_t c, int64_t s) {               \
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

DEFINE_CHANNEL(float, f32)
DEFINE_CHANNEL(double, f64)

/* tensor_data of t, or NULL for NULL */
static const void *data_or_null(const Tensor *t) { return t ? tensor_data(t) : NULL; }

void cpu_channel_sum_product(const Tensor *u, const Tensor *mu, const Tensor *v,
                             const Tensor *mv, Tensor *out) {
    int64_t n, c, s;
    backend_channel_dims(u, &n, &c, &s);
    if (u->dtype == DTYPE_FLOAT32)
        sum_product_f32(tensor_data(u), data_or_null(mu), data_or_null(v), data_or_null(mv),
                        tensor_data(out), n, c, s);
    else
        sum_product_f64(tensor_data(u), data_or_null(mu), data_or_null(v), data_or_null(mv),
                        tensor_data(out), n, c, s);
}

void cpu_channel_affine(const Tensor *u, const Tensor *a, const Tensor *v, const Tensor *m,
                        const Tensor *b, const Tensor *d, Tensor *out) {
    int64_t n, c, s;
    backend_channel_dims(u, &n, &c, &s);
    if (u->dtype == DTYPE_FLOAT32)
        affine_f32(tensor_data(u), tensor_data(a), data_or_null(v), data_or_null(m),
                   data_or_null(b), data_or_null(d), tensor_data(out), n, c, s);
    else
        affine_f64(tensor_data(u), tensor_data(a), data_or_null(v), data_or_null(m),
                   data_or_null(b), data_or_null(d), tensor_data(out), n, c, s);
}
