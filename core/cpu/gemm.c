/* gemm.c - CPU matrix products through OpenBLAS's cblas_sgemm / dgemm, or
 * oneDNN's matmul (gemm_dnnl.c) for the float32 ones of the sizes where it
 * is faster, and for all those of a thread in bf16 precision.
 *
 * Row-major throughout, so ld* are row strides exactly as the Backend
 * contract states and no transposition trick is needed. k == 0 is done here
 * (C = beta * C) because BLAS rejects the lda < 1 a caller may pass then;
 * beta == 0 overwrites C without reading it, as BLAS does, so NaN garbage
 * in a fresh output never leaks through.
 */
#include <cblas.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
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

/* Which library computes a float32 product: a rule on its size alone, so
 * that a job's arithmetic, and so its bits, never depend on the machine's
 * load (kill -9 resume is checked bit for bit). `make bench-gemm` timed
 * both on 2 AVX-512 cores (bench/results/gemm_2cpu_2026-12-05-xeon.jsonl:
 * the models' Linear layers and a grid around them, 1 to 1024 rows, each
 * layer's three passes, 330 products): with m*n*k from 2^20 to 2^29 (the
 * MNIST MLP's and CNN's hidden layers, ResNet's head) oneDNN's matmul (its
 * JIT sgemm) was faster in 182 of 186 products, up to 6.2x (0.80-1.0x in
 * the other four); below 2^20 its fixed cost per call made it slower in
 * 105 of 117, up to 45x for a single row (the MNIST models' 10-class
 * heads: 1.5-6.4x); above 2^29 both run near the cores' peak and oneDNN
 * lost up to 2.5x (GPT-2's MLP projection's gradients). The rule picked
 * the faster library for 305 of the 330. Measured on that one machine:
 * other processors and thread counts may cross elsewhere, and `make
 * bench-gemm` shows where.
 * TRAIND_ONEDNN_MATMUL=0 keeps every float32 product on OpenBLAS
 * (bench/run.sh's traind-openblas). Under bf16 precision every float32
 * product goes to oneDNN (gemm_dnnl.c). The one exception to size alone:
 * should oneDNN fail (out of memory for its plan or scratch), OpenBLAS
 * computes that product rather than nobody. */
#define DNNL_F32_MIN_LOG2 20
#define DNNL_F32_MAX_LOG2 29
#define DNNL_F32_MIN_MNK ((double)(INT64_C(1) << DNNL_F32_MIN_LOG2))
#define DNNL_F32_MAX_MNK ((double)(INT64_C(1) << DNNL_F32_MAX_LOG2))

static pthread_once_t dnnl_f32_once = PTHREAD_ONCE_INIT;
static bool dnnl_f32_on;

static void read_dnnl_f32(void) {
    const char *v = getenv("TRAIND_ONEDNN_MATMUL");
    dnnl_f32_on = !(v && strcmp(v, "0") == 0);
}

CpuGemmLibrary cpu_gemm_library(DType dtype, int64_t m, int64_t n, int64_t k, double alpha,
                                double beta) {
    if (dtype != DTYPE_FLOAT32 || alpha != 1 || (beta != 0 && beta != 1)) return CPU_GEMM_OPENBLAS;
    if (cpu_dnnl_input_type() == dnnl_bf16) return CPU_GEMM_DNNL;
    pthread_once(&dnnl_f32_once, read_dnnl_f32);
    double mnk = (double)m * (double)n * (double)k;
    bool in_range = mnk >= DNNL_F32_MIN_MNK && mnk <= DNNL_F32_MAX_MNK;
    return dnnl_f32_on && in_range ? CPU_GEMM_DNNL : CPU_GEMM_OPENBLAS;
}

bool cpu_gemm_dnnl_range(int *min_log2, int *max_log2) {
    pthread_once(&dnnl_f32_once, read_dnnl_f32);
    *min_log2 = DNNL_F32_MIN_LOG2, *max_log2 = DNNL_F32_MAX_LOG2;
    return dnnl_f32_on;
}

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
    /* should oneDNN fail, OpenBLAS rather than not at all */
    if (cpu_gemm_library(dtype, m, n, k, alpha, beta) == CPU_GEMM_DNNL) {
        if (cpu_gemm_dnnl(cpu_dnnl_input_type(), trans_a, trans_b, m, n, k, alpha, a, lda, b,
                          ldb, beta, c, ldc) == 0)
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
