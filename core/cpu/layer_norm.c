/* layer_norm.c - CPU layer normalisation over the last dim of [rows, cols]
 * and its backward, as torch.nn.functional.layer_norm.
 *
 * Per row, in double for both dtypes (rounded once on the way out):
 *   mean = sum(x) / n, var = sum((x - mean)^2) / n (two passes: no
 *   cancellation when |mean| >> std), rstd = 1 / sqrt(var + eps),
 *   y = (x - mean) * rstd * w + b.
 * Backward, with xhat = (x - mean) * rstd and g = gy * w (gy without w):
 *   gx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
 *   gw = sum over rows of gy * xhat, gb = sum over rows of gy.
 * Rows are independent and split over the OpenMP threads. Backward goes
 * by chunks of rows (layer_norm_chunks): gx and each chunk's column sums in
 * one pass over its rows, then the chunks' sums added in order, so gw and
 * gb do not depend on the thread count.
 */
#include <math.h>

#include "core/cpu/cpu.h"

#define DEFINE_LAYER_NORM(T, SFX)                                                                  \
    static void layer_norm_##SFX(const T *px, const T *w, const T *b, double eps, T *py, T *pm,    \
                                 T *pr, int64_t rows, int64_t cols) {                              \
        _Pragma("omp parallel for schedule(static) if (rows * cols >= CPU_PARALLEL_MIN)")          \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const T *x = px + r * cols;                                                            \
            T *y = py + r * cols;                                                                  \
            double sum = 0, sq = 0;                                                                \
            _Pragma("omp simd reduction(+ : sum)")                                                 \
            for (int64_t c = 0; c < cols; c++) sum += x[c];                                        \
            double mean = sum / (double)cols;                                                      \
            _Pragma("omp simd reduction(+ : sq)")                                                  \
            for (int64_t c = 0; c < cols; c++) sq += (x[c] - mean) * (x[c] - mean);                \
            double rstd = 1.0 / sqrt(sq / (double)cols + eps);                                     \
            _Pragma("omp simd")                                                                    \
            for (int64_t c = 0; c < cols; c++) {                                                   \
                double v = (x[c] - mean) * rstd;                                                   \
                if (w) v *= w[c];                                                                  \
                if (b) v += b[c];                                                                  \
                y[c] = (T)v;                                                                       \
            }                                                                                      \
            pm[r] = (T)mean;                                                                       \
            pr[r] = (T)rstd;                                                                       \
        }                                                                                          \
    }                                                                                              \
    /* gx of row r (when pgx) and the row's terms of the column sums (when                         \
     * pw): gy * xhat into pw, gy into pb. */                                                      \
    static void layer_norm_row_backward_##SFX(const T *x, const T *w, double mean, double rstd,    \
                                              const T *gy, T *gx, double *pw, double *pb,          \
                                              int64_t cols) {                                      \
        if (gx) {                                                                                  \
            double sg = 0, sgx = 0;                                                                \
            _Pragma("omp simd reduction(+ : sg, sgx)")                                             \
            for (int64_t c = 0; c < cols; c++) {                                                   \
                double g = w ? (double)gy[c] * w[c] : gy[c];                                       \
                sg += g;                                                                           \
                sgx += g * ((x[c] - mean) * rstd);                                                 \
            }                                                                                      \
            double a = sg / (double)cols, bb = sgx / (double)cols;                                 \
            _Pragma("omp simd")                                                                    \
            for (int64_t c = 0; c < cols; c++) {                                                   \
                double g = w ? (double)gy[c] * w[c] : gy[c];                                       \
                gx[c] = (T)(rstd * (g - a - (x[c] - mean) * rstd * bb));                           \
            }                                                                                      \
        }                                                                                          \
        if (!pw) return;                                                                           \
        _Pragma("omp simd")                                                                        \
        for (int64_t c = 0; c < cols; c++) {                                                       \
            pw[c] += (double)gy[c] * ((x[c] - mean) * rstd);                                       \
            pb[c] += gy[c];                                                                        \
        }                                                                                          \
    }                                                                                              \
    /* Chunks of rows in parallel, each one pass over its rows (the second                         \
     * reading of a row comes from L1); then the chunks' sums column by                            \
     * column, in chunk order. */                                                                  \
    static void layer_norm_backward_##SFX(const T *px, const T *w, const T *pm, const T *pr,       \
                                          const T *pgy, T *pgx, T *gw, T *gb, double *part,        \
                                          int64_t rows, int64_t cols) {                            \
        int64_t chunks = layer_norm_chunks(rows), per = (rows + chunks - 1) / chunks;              \
        _Pragma("omp parallel for schedule(static) if (rows * cols >= CPU_PARALLEL_MIN)")          \
        for (int64_t k = 0; k < chunks; k++) {                                                     \
            double *pw = part ? part + k * cols : NULL;                                            \
            double *pb = part ? part + (chunks + k) * cols : NULL;                                 \
            for (int64_t c = 0; pw && c < cols; c++) pw[c] = pb[c] = 0;                            \
            int64_t r1 = (k + 1) * per < rows ? (k + 1) * per : rows;                              \
            for (int64_t r = k * per; r < r1; r++)                                                 \
                layer_norm_row_backward_##SFX(px + r * cols, w, pm[r], pr[r], pgy + r * cols,      \
                                              pgx ? pgx + r * cols : NULL, pw, pb, cols);          \
        }                                                                                          \
        if (!part) return;                                                                         \
        _Pragma("omp parallel for schedule(static) if (chunks * cols >= CPU_PARALLEL_MIN)")        \
        for (int64_t c = 0; c < cols; c++) {                                                       \
            double sw = 0, sb = 0;                                                                 \
            for (int64_t k = 0; k < chunks; k++) {                                                 \
                sw += part[k * cols + c];                                                          \
                sb += part[(chunks + k) * cols + c];                                               \
            }                                                                                      \
            if (gw) gw[c] = (T)sw;                                                                 \
            if (gb) gb[c] = (T)sb;                                                                 \
        }                                                                                          \
    }

DEFINE_LAYER_NORM(float, f32)
DEFINE_LAYER_NORM(double, f64)

static void *data_or_null(const Tensor *t) { return t ? tensor_data(t) : NULL; }

static int64_t cols_of(const Tensor *x) { return x->shape[x->ndim - 1]; }

void cpu_layer_norm(const Tensor *x, const Tensor *weight, const Tensor *bias, double eps,
                    Tensor *y, Tensor *mean, Tensor *rstd) {
    int64_t cols = cols_of(x), rows = cols ? tensor_numel(x) / cols : 0;
    if (x->dtype == DTYPE_FLOAT32)
        layer_norm_f32(tensor_data(x), data_or_null(weight), data_or_null(bias), eps,
                       tensor_data(y), tensor_data(mean), tensor_data(rstd), rows, cols);
    else
        layer_norm_f64(tensor_data(x), data_or_null(weight), data_or_null(bias), eps,
                       tensor_data(y), tensor_data(mean), tensor_data(rstd), rows, cols);
}

void cpu_layer_norm_backward(const Tensor *x, const Tensor *weight, const Tensor *mean,
                             const Tensor *rstd, const Tensor *gy, Tensor *gx, Tensor *gweight,
                             Tensor *gbias, Tensor *partial) {
    int64_t cols = cols_of(x), rows = cols ? tensor_numel(x) / cols : 0;
    if (x->dtype == DTYPE_FLOAT32)
        layer_norm_backward_f32(tensor_data(x), data_or_null(weight), tensor_data(mean),
                                tensor_data(rstd), tensor_data(gy), data_or_null(gx),
                                data_or_null(gweight), data_or_null(gbias), data_or_null(partial),
                                rows, cols);
    else
        layer_norm_backward_f64(tensor_data(x), data_or_null(weight), tensor_data(mean),
                                tensor_data(rstd), tensor_data(gy), data_or_null(gx),
                                data_or_null(gweight), data_or_null(gbias), data_or_null(partial),
                                rows, cols);
}
