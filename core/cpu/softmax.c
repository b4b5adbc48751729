/* softmax.c - CPU softmax / log_softmax over the last dim and their
 * backwards, one row at a time, the rows split over the OpenMP threads
 * (each row's sums in its own order whatever the thread count).
 *
 * Stable as torch's: the row max is subtracted before exp, so exp never
 * overflows and the largest term is exactly 1. Row sums are accumulated in
 * double for both dtypes (torch sums in the dtype), then rounded once.
 *   softmax:      y = exp(x - max) / sum(exp(x - max))
 *   log_softmax:  y = (x - max) - log(sum(exp(x - max)))
 *   backward:     softmax gx = y * (gy - sum(gy * y)),
 *                 log_softmax gx = gy - exp(y) * sum(gy).
 * A row of all -inf gives NaN, as in torch.
 */
#include <tgmath.h>

#include "core/cpu/cpu.h"

#define DEFINE_SOFTMAX(T, SFX)                                                                     \
    static void softmax_##SFX(const T *px, T *po, int64_t rows, int64_t cols, bool log_) {         \
        _Pragma("omp parallel for schedule(static) if (rows * cols >= CPU_PARALLEL_MIN)")          \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const T *x = px + r * cols;                                                            \
            T *y = po + r * cols;                                                                  \
            T max = x[0];                                                                          \
            for (int64_t c = 1; c < cols; c++)                                                     \
                if (x[c] > max || x[c] != x[c]) max = x[c];                                        \
            double sum = 0;                                                                        \
            if (log_) {                                                                            \
                for (int64_t c = 0; c < cols; c++) sum += exp(x[c] - max);                         \
                /* (x - max) first: exact near the max, as torch orders it */                      \
                T log_sum = (T)log(sum);                                                           \
                for (int64_t c = 0; c < cols; c++) y[c] = (x[c] - max) - log_sum;                  \
            } else {                                                                               \
                for (int64_t c = 0; c < cols; c++) {                                               \
                    y[c] = exp(x[c] - max);                                                        \
                    sum += y[c];                                                                   \
                }                                                                                  \
                T total = (T)sum;                                                                  \
                for (int64_t c = 0; c < cols; c++) y[c] /= total;                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void softmax_backward_##SFX(const T *py, const T *pgy, T *pgx, int64_t rows,            \
                                       int64_t cols, bool log_) {                                  \
        _Pragma("omp parallel for schedule(static) if (rows * cols >= CPU_PARALLEL_MIN)")          \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const T *y = py + r * cols, *gy = pgy + r * cols;                                      \
            T *gx = pgx + r * cols;                                                                \
            double sum = 0;                                                                        \
            if (log_) {                                                                            \
                for (int64_t c = 0; c < cols; c++) sum += gy[c];                                   \
                T s = (T)sum;                                                                      \
                for (int64_t c = 0; c < cols; c++) gx[c] = gy[c] - exp(y[c]) * s;                  \
            } else {                                                                               \
                for (int64_t c = 0; c < cols; c++) sum += (double)gy[c] * y[c];                    \
                T s = (T)sum;                                                                      \
                for (int64_t c = 0; c < cols; c++) gx[c] = y[c] * (gy[c] - s);                     \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_SOFTMAX(float, f32)
DEFINE_SOFTMAX(double, f64)

static void rows_cols(const Tensor *t, int64_t *rows, int64_t *cols) {
    *cols = t->ndim > 0 ? t->shape[t->ndim - 1] : 1;
    *rows = *cols > 0 ? tensor_numel(t) / *cols : 0;
}

void cpu_softmax(const Tensor *x, Tensor *out, bool log) {
    int64_t rows, cols;
    rows_cols(x, &rows, &cols);
    if (x->dtype == DTYPE_FLOAT32)
        softmax_f32(tensor_data(x), tensor_data(out), rows, cols, log);
    else
        softmax_f64(tensor_data(x), tensor_data(out), rows, cols, log);
}

void cpu_softmax_backward(const Tensor *y, const Tensor *gy, Tensor *gx, bool log) {
    int64_t rows, cols;
    rows_cols(y, &rows, &cols);
    if (y->dtype == DTYPE_FLOAT32)
        softmax_backward_f32(tensor_data(y), tensor_data(gy), tensor_data(gx), rows, cols, log);
    else
        softmax_backward_f64(tensor_data(y), tensor_data(gy), tensor_data(gx), rows, cols, log);
}
