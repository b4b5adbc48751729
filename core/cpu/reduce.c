/* reduce.c - CPU sum over any set of dims, max/argmax over the last dim,
 * (the class losses' per-row kernels are in class_loss.c).
 *
 * Sum first coalesces x's dims: size-1 dims are dropped and neighbours that
 * are both reduced or both kept merge, so [N, C, H, W] summed over (0, 2, 3)
 * becomes reduce/keep/reduce runs of (N, C, H*W). Two inner shapes remain:
 *  - last run reduced: each output is a sum of contiguous runs;
 *  - last run kept: a block of outputs is accumulated row by row, so memory
 *    is still read in order (the bias-gradient case, sum over dim 0).
 * Out's elements are the kept positions in row-major order, so out is
 * written sequentially. Accumulators are double for both dtypes: closer to
 * the exact sum than torch's float32 pairwise sum, so results agree with
 * PyTorch to float32 rounding, not bit for bit.
 */
#include <string.h>

#include "core/cpu/cpu.h"

/* Offsets of every position of an N-d box of (size, stride) dims, in
 * row-major order, without a multiplication per step. */
typedef struct {
    int ndim;
    int64_t size[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];
    int64_t idx[TENSOR_MAX_DIMS];
    int64_t offset;
} Odometer;

static void odometer_reset(Odometer *o) {
    memset(o->idx, 0, sizeof o->idx);
    o->offset = 0;
}

static void odometer_push(Odometer *o, int64_t size, int64_t stride) {
    o->size[o->ndim] = size;
    o->stride[o->ndim] = stride;
    o->ndim++;
}

/* Moves to the next position; false (and back at the start) after the last. */
static bool odometer_next(Odometer *o) {
    for (int d = o->ndim - 1; d >= 0; d--) {
        if (++o->idx[d] < o->size[d]) {
            o->offset += o->stride[d];
            return true;
        }
        o->offset -= o->stride[d] * (o->size[d] - 1);
        o->idx[d] = 0;
    }
    return false;
}

/* Columns accumulated at once when the last run is kept: a double block
 * that stays in L1. */
#define SUM_BLOCK 256

#define DEFINE_SUM(T, SFX)                                                                         \
    static void sum_##SFX(const T *px, T *po, Odometer *kept, Odometer *red, bool last_kept,       \
                          int64_t inner) {                                                         \
        if (!last_kept) {                                                                          \
            do {                                                                                   \
                double acc = 0;                                                                    \
                do {                                                                               \
                    const T *run = px + kept->offset + red->offset;                                \
                    for (int64_t j = 0; j < inner; j++) acc += run[j];                             \
                } while (odometer_next(red));                                                      \
                *po++ = (T)acc;                                                                    \
            } while (odometer_next(kept));                                                         \
            return;                                                                                \
        }                                                                                          \
        double acc[SUM_BLOCK];                                                                     \
        do {                                                                                       \
            for (int64_t j0 = 0; j0 < inner; j0 += SUM_BLOCK) {                                    \
                int64_t nb = inner - j0 < SUM_BLOCK ? inner - j0 : SUM_BLOCK;                      \
                for (int64_t j = 0; j < nb; j++) acc[j] = 0;                                       \
                do {                                                                               \
                    const T *row = px + kept->offset + red->offset + j0;                           \
                    for (int64_t j = 0; j < nb; j++) acc[j] += row[j];                             \
                } while (odometer_next(red));                                                      \
                for (int64_t j = 0; j < nb; j++) *po++ = (T)acc[j];                                \
            }                                                                                      \
        } while (odometer_next(kept));                                                             \
    }

DEFINE_SUM(float, f32)
DEFINE_SUM(double, f64)

void cpu_sum(const Tensor *x, Tensor *out) {
    int64_t n = tensor_numel(x);
    if (n == 0) { /* an empty sum is 0; out may itself be empty */
        cpu_fill(out, 0.0);
        return;
    }
    /* Coalesce into runs of (size, contiguous stride, reduced?). */
    int nrun = 0;
    int64_t size[TENSOR_MAX_DIMS], stride[TENSOR_MAX_DIMS];
    bool reduced[TENSOR_MAX_DIMS];
    int64_t s = 1;
    for (int d = x->ndim - 1; d >= 0; d--) { /* innermost first */
        int64_t len = x->shape[d];
        if (len == 1) continue;
        bool r = out->shape[d] == 1;
        if (nrun > 0 && reduced[nrun - 1] == r) {
            size[nrun - 1] *= len;
        } else {
            size[nrun] = len;
            stride[nrun] = s;
            reduced[nrun] = r;
            nrun++;
        }
        s *= len;
    }
    if (nrun == 0) { /* one element */
        size[0] = 1;
        stride[0] = 1;
        reduced[0] = false;
        nrun = 1;
    }
    /* Runs are innermost first; the odometers take them outermost first and
     * leave out run 0, which the inner loop handles. */
    Odometer kept = {0}, red = {0};
    for (int r = nrun - 1; r >= 1; r--)
        odometer_push(reduced[r] ? &red : &kept, size[r], stride[r]);
    odometer_reset(&kept);
    odometer_reset(&red);
    bool last_kept = !reduced[0];
    if (x->dtype == DTYPE_FLOAT32)
        sum_f32(tensor_data(x), tensor_data(out), &kept, &red, last_kept, size[0]);
    else
        sum_f64(tensor_data(x), tensor_data(out), &kept, &red, last_kept, size[0]);
}

/* ---- max over the last dim ---- */

/* First maximum wins; a NaN is the maximum (the first NaN), as torch.max. */
#define DEFINE_MAX_LAST(T, SFX)                                                                    \
    static void max_last_##SFX(const T *px, int64_t rows, int64_t cols, T *po, int64_t *pi) {      \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const T *row = px + r * cols;                                                          \
            T best = row[0];                                                                       \
            int64_t arg = 0;                                                                       \
            for (int64_t c = 1; c < cols && best == best; c++) {                                   \
                if (row[c] > best || row[c] != row[c]) {                                           \
                    best = row[c];                                                                 \
                    arg = c;                                                                       \
                }                                                                                  \
            }                                                                                      \
            if (po) po[r] = best;                                                                  \
            if (pi) pi[r] = arg;                                                                   \
        }                                                                                          \
    }

DEFINE_MAX_LAST(float, f32)
DEFINE_MAX_LAST(double, f64)

/* Rows and columns of x viewed as [rows, cols] over its last dim. */
static void rows_cols(const Tensor *x, int64_t *rows, int64_t *cols) {
    *cols = x->ndim > 0 ? x->shape[x->ndim - 1] : 1;
    *rows = *cols > 0 ? tensor_numel(x) / *cols : 0;
}

void cpu_max_last_dim(const Tensor *x, Tensor *out, Tensor *indices) {
    int64_t rows, cols;
    rows_cols(x, &rows, &cols);
    if (cols == 0) return; /* max of nothing: the op layer rejects it */
    int64_t *pi = indices ? tensor_data(indices) : NULL;
    if (x->dtype == DTYPE_FLOAT32)
        max_last_f32(tensor_data(x), rows, cols, out ? tensor_data(out) : NULL, pi);
    else
        max_last_f64(tensor_data(x), rows, cols, out ? tensor_data(out) : NULL, pi);
}
