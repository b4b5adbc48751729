/* layout.c - CPU strided copy with dtype conversion, fill, and the
 * conversions between NCHW and the blocked layout.
 *
 * copy is the one kernel behind contiguous(), to(dtype), clone and
 * tensor_copy_: it walks the logical index with an odometer so any strides
 * work. Two fast paths: one memcpy when both sides are contiguous and
 * alike, and one memcpy per row when only the last dimension is (a
 * permutation of outer dimensions, as conv2d's layout changes are).
 */
#include <string.h>

#include "core/cpu/cpu.h"

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
    /* Rows: with both last strides 1, copy whole rows and walk the rest. */
    int64_t row = 1;
    if (same && nd > 0 && src->strides[nd - 1] == 1 && dst->strides[nd - 1] == 1 &&
        dst->shape[nd - 1] > 1) {
        row = dst->shape[nd - 1];
        nd--;
    }
    for (int64_t i = 0; i < n; i += row) {
        if (same)
            memcpy(d + doff * (int64_t)es, s + so * (int64_t)es, (size_t)row * es);
        else
            dtype_store(d, dst->dtype, doff, dtype_load(s, src->dtype, so));
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
        for (int64_t i = 0; i < n; i++) dtype_store(base, dst->dtype, i, value);
    }
}

/* Per image and block of 16 channels, the [16, H*W] plane of NCHW is the
 * transpose of the blocked [H*W, 16]: tiles of 16 positions are read as
 * 16 rows of 16 and written as 16 columns, so both sides move whole cache
 * lines. */
void cpu_convert_blocked(const Tensor *from, Tensor *to) {
    bool into = to->ndim == 5;
    const Tensor *b = into ? to : from;
    int64_t planes = b->shape[0] * b->shape[1], hw = b->shape[2] * b->shape[3];
    const float *src = tensor_data(from);
    float *dst = tensor_data(to);
    bool par = planes * hw * TENSOR_BLOCK >= CPU_PARALLEL_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t p = 0; p < planes; p++) {
        const float *s = src + p * hw * TENSOR_BLOCK;
        float *d = dst + p * hw * TENSOR_BLOCK;
        for (int64_t j0 = 0; j0 < hw; j0 += TENSOR_BLOCK) {
            int64_t j1 = j0 + TENSOR_BLOCK < hw ? j0 + TENSOR_BLOCK : hw;
            for (int64_t c = 0; c < TENSOR_BLOCK; c++)
                for (int64_t j = j0; j < j1; j++) {
                    if (into)
                        d[j * TENSOR_BLOCK + c] = s[c * hw + j];
                    else
                        d[c * hw + j] = s[j * TENSOR_BLOCK + c];
                }
        }
    }
}
