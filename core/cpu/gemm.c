/* gemm.c - CPU matrix products through OpenBLAS's cblas_sgemm / dgemm;
 * a thread in bf16 precision computes its float32 ones in gemm_bf16.c.
 *
 * Row-major throughout, so ld* are row strides exactly as the Backend
 * contract states and no transposition trick is needed. k == 0 is done here
 * (C = beta * C) because BLAS rejects the lda < 1 a caller may pass then;
 * beta == 0 overwrites C without reading it, as BLAS does, so NaN garbage
 * in a fresh output never leaks through.
 */
#include <cblas.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/cpu/dnnl.h"
#include "core/error.h"

#define DEFINE_SCALE(T, SFX)                                                                       \
    static void scale_##SFX(T *c, int64_t m, int64_t n, int64_t ldc, T beta) {                     \
        for (int64_t i = 0; i < m; i++) {                                                          \
            T *row = c + i * ldc;                                                                  \
            for (int64_t j = 0; j < n; j++) row[j] = beta == 0 ? 0 : beta * row[j];                \
        }                                                                                          \
    }

DEFINE_SCALE(float, f32)
DEFINE_SCALE(double, f64)

void cpu_gemm(DType dtype, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
              double alpha, const void *a, int64_t lda, const void *b, int64_t ldb, double beta,
              void *c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (dtype == DTYPE_FLOAT32)
            scale_f32(c, m, n, ldc, (float)beta);
        else
            scale_f64(c, m, n, ldc, beta);
        return;
    }
    /* a thread in bf16 (a job's "precision"): its products in bf16; should
     * oneDNN fail (out of memory), in float32 rather than not at all */
    if (dtype == DTYPE_FLOAT32 && cpu_dnnl_input_type() == dnnl_bf16) {
        if (cpu_gemm_bf16(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0)
            return;
        error_clear();
    }
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    if (dtype == DTYPE_FLOAT32)
        cblas_sgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, (float)alpha, a,
                    (blasint)lda, b, (blasint)ldb, (float)beta, c, (blasint)ldc);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, alpha, a,
                    (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

/* OpenBLAS picks its kernels from the CPU's family and model at load; a
 * model it does not know (a VM's "Intel Xeon Processor", model 207 here)
 * falls back to Prescott's SSE3 kernels, 3x slower on a ResNet than the
 * AVX-512 ones the CPU has. */
char *openblas_get_corename(void);

const char *cpu_blas_core(void) { return openblas_get_corename(); }

const char *cpu_blas_better_core(void) {
    if (strcmp(openblas_get_corename(), "Prescott") != 0) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "SkylakeX";
    if (__builtin_cpu_supports("avx2")) return "Haswell";
    return NULL;
}
