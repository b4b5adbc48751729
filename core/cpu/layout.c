/* layout.c - CPU strided copy with dtype conversion, and fill.
 *
 * copy is the one kernel behind contiguous(), to(dtype), clone and
 * tensor_copy_: it walks the logical index with an odometer so any strides
 * work, with a memcpy fast path when both sides are contiguous and alike.
 */
#include <string.h>

#include "core/cpu/cpu.h"

static inline double load_as_double(const void *base, DType dtype, int64_t i) {
    switch (dtype) {
    case DTYPE_FLOAT32: return ((const float *)base)[i];
    case DTYPE_FLOAT64: return ((const double *)base)[i];
    case DTYPE_INT64: return (double)((const int64_t *)base)[i];
    case DTYPE_UINT8: return ((const uint8_t *)base)[i];
    }
    return 0;
}

static inline void store_from_double(void *base, DType dtype, int64_t i, double v) {
    switch (dtype) {
    case DTYPE_FLOAT32: ((float *)base)[i] = (float)v; break;
    case DTYPE_FLOAT64: ((double *)base)[i] = v; break;
    case DTYPE_INT64: ((int64_t *)base)[i] = (int64_t)v; break;
    case DTYPE_UINT8: ((uint8_t *)base)[i] = (uint8_t)v; break;
    }
}

void cpu_copy(const Tensor *src, Tensor *dst) {
    int64_t n = tensor_numel(dst);
    const char *s = src->storage->data;
    char *d = dst->storage->data;
    if (src->dtype == dst->dtype && tensor_is_contiguous(src) && tensor_is_contiguous(dst)) {
        size_t es = dtype_size(src->dtype);
        memmove(d + dst->offset * (int64_t)es, s + src->offset * (int64_t)es, (size_t)n * es);
        return;
    }
    int nd = dst->ndim;
    int64_t idx[TENSOR_MAX_DIMS] = {0};
    int64_t so = src->offset, doff = dst->offset;
    /* int64 -> int64 and same-dtype copies must not go through double when
     * values exceed 2^53; handle same dtype with a byte copy per element. */
    size_t es = dtype_size(dst->dtype);
    bool same = src->dtype == dst->dtype;
    for (int64_t i = 0; i < n; i++) {
        if (same)
            memcpy(d + doff * (int64_t)es, s + so * (int64_t)es, es);
        else
            store_from_double(d, dst->dtype, doff, load_as_double(s, src->dtype, so));
        for (int k = nd - 1; k >= 0; k--) {
            if (++idx[k] < dst->shape[k]) {
                so += src->strides[k];
                doff += dst->strides[k];
                break;
            }
            so -= src->strides[k] * (dst->shape[k] - 1);
            doff -= dst->strides[k] * (dst->shape[k] - 1);
            idx[k] = 0;
        }
    }
}

void cpu_fill(Tensor *dst, double value) {
    int64_t n = tensor_numel(dst);
    void *base = tensor_data(dst);
    if (value == 0.0) {
        memset(base, 0, (size_t)n * dtype_size(dst->dtype));
        return;
    }
    switch (dst->dtype) {
    case DTYPE_FLOAT32:
        for (int64_t i = 0; i < n; i++) ((float *)base)[i] = (float)value;
        break;
    default:
        for (int64_t i = 0; i < n; i++) store_from_double(base, dst->dtype, i, value);
    }
}
