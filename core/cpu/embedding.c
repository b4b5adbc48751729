/* embedding.c - CPU embedding lookup and its adjoint, as torch's
 * F.embedding and embedding_dense_backward.
 *
 * Forward checks every index against V (the error names the first bad one,
 * its position and V), then copies row index[n] of weight [V, D] to row n
 * of out, rows split over the OpenMP threads. Backward adds row n of gy into row index[n] of
 * gweight; rows sharing an index collide, so the threads split the columns
 * instead, and every column is summed over n in order: the same bits
 * whatever the thread count.
 */
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/error.h"

int cpu_embedding(const Tensor *weight, const Tensor *index, Tensor *out) {
    const int64_t *idx = tensor_data(index);
    int64_t n = tensor_numel(index), d = weight->shape[1], v = weight->shape[0];
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= v)
            return error_set("embedding: index %lld at position %lld is out of range for "
                             "num_embeddings %lld",
                             (long long)idx[i], (long long)i, (long long)v);
    size_t row = (size_t)d * dtype_size(weight->dtype);
    const char *w = tensor_data(weight);
    char *o = tensor_data(out);
#pragma omp parallel for schedule(static) if (n * d >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) memcpy(o + (size_t)i * row, w + (size_t)idx[i] * row, row);
    return 0;
}

#define EMBEDDING_COLS 64 /* columns per task of the backward */

#define DEFINE_EMBEDDING_BACKWARD(T, SFX)                                                          \
    static void embedding_backward_##SFX(const T *gy, const int64_t *idx, T *gw, int64_t n,        \
                                         int64_t d) {                                              \
        int64_t blocks = (d + EMBEDDING_COLS - 1) / EMBEDDING_COLS;                                \
        _Pragma("omp parallel for schedule(static) if (n * d >= CPU_PARALLEL_MIN)")                \
        for (int64_t b = 0; b < blocks; b++) {                                                     \
            int64_t c0 = b * EMBEDDING_COLS;                                                       \
            int64_t c1 = c0 + EMBEDDING_COLS < d ? c0 + EMBEDDING_COLS : d;                        \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T *dst = gw + idx[i] * d;                                                          \
                const T *src = gy + i * d;                                                         \
                for (int64_t c = c0; c < c1; c++) dst[c] += src[c];                                \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_EMBEDDING_BACKWARD(float, f32)
DEFINE_EMBEDDING_BACKWARD(double, f64)

void cpu_embedding_backward(const Tensor *gy, const Tensor *index, Tensor *gweight) {
    cpu_fill(gweight, 0);
    int64_t n = tensor_numel(index), d = gweight->shape[1];
    if (gweight->dtype == DTYPE_FLOAT32)
        embedding_backward_f32(tensor_data(gy), tensor_data(index), tensor_data(gweight), n, d);
    else
        embedding_backward_f64(tensor_data(gy), tensor_data(index), tensor_data(gweight), n, d);
}
