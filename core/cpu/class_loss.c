/* class_loss.c - CPU rows of the class losses (nll_loss, cross_entropy) on
 * log-probabilities [rows, cols], with torch's ignore_index and
 * label_smoothing; see Backend.class_loss_rows for the formulas.
 *
 * Per row, in double for both dtypes (rounded once on the way out). The
 * smoothing sum is skipped when eps = 0, so a -inf log-probability off the
 * target gives nll_loss's finite value instead of 0 * -inf = NaN. Rows are
 * independent and split over the OpenMP threads.
 */
#include "core/cpu/cpu.h"

#define DEFINE_CLASS_LOSS(T, SFX)                                                                  \
    static void rows_##SFX(const T *lp, const int64_t *idx, int64_t ignore, double eps, T *loss,   \
                           T *weight, int64_t rows, int64_t cols) {                                \
        _Pragma("omp parallel for schedule(static) if (rows * cols >= CPU_PARALLEL_MIN)")          \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const T *x = lp + r * cols;                                                            \
            if (idx[r] == ignore) {                                                                \
                loss[r] = weight[r] = 0;                                                           \
                continue;                                                                          \
            }                                                                                      \
            double v = -(1.0 - eps) * (double)x[idx[r]];                                           \
            if (eps != 0) {                                                                        \
                double sum = 0;                                                                    \
                _Pragma("omp simd reduction(+ : sum)")                                             \
                for (int64_t c = 0; c < cols; c++) sum += x[c];                                    \
                v -= eps / (double)cols * sum;                                                     \
            }                                                                                      \
            loss[r] = (T)v;                                                                        \
            weight[r] = 1;                                                                         \
        }                                                                                          \
    }                                                                                              \
    static void backward_##SFX(const T *g, const int64_t *idx, int64_t ignore, double eps, T *gx,  \
                               int64_t rows, int64_t cols) {                                       \
        _Pragma("omp parallel for schedule(static) if (rows * cols >= CPU_PARALLEL_MIN)")          \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            T *y = gx + r * cols;                                                                  \
            bool skip = idx[r] == ignore;                                                          \
            T off = skip || eps == 0 ? (T)0 : (T)(-(double)g[r] * eps / (double)cols);             \
            for (int64_t c = 0; c < cols; c++) y[c] = off;                                         \
            if (!skip) y[idx[r]] = (T)(-(double)g[r] * (1.0 - eps + eps / (double)cols));          \
        }                                                                                          \
    }

DEFINE_CLASS_LOSS(float, f32)
DEFINE_CLASS_LOSS(double, f64)

int cpu_class_loss_rows(const Tensor *lp, const Tensor *index, int64_t ignore, double eps,
                        Tensor *loss, Tensor *weight) {
    int64_t rows = lp->shape[0], cols = lp->shape[1];
    if (lp->dtype == DTYPE_FLOAT32)
        rows_f32(tensor_data(lp), tensor_data(index), ignore, eps, tensor_data(loss),
                 tensor_data(weight), rows, cols);
    else
        rows_f64(tensor_data(lp), tensor_data(index), ignore, eps, tensor_data(loss),
                 tensor_data(weight), rows, cols);
    return 0;
}

void cpu_class_loss_rows_backward(const Tensor *g, const Tensor *index, int64_t ignore,
                                  double eps, Tensor *gx) {
    int64_t rows = gx->shape[0], cols = gx->shape[1];
    if (gx->dtype == DTYPE_FLOAT32)
        backward_f32(tensor_data(g), tensor_data(index), ignore, eps, tensor_data(gx), rows, cols);
    else
        backward_f64(tensor_data(g), tensor_data(index), ignore, eps, tensor_data(gx), rows, cols);
}
