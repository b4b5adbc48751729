/* blas_lib.h - cuBLAS and cuBLASLt, bound at the first matrix product.
 *
 * Linking them makes every traind process pay cuBLASLt's start-up, about
 * 0.1 s and 200 MB before main (0.3 s under ASan), the CLI and a machine
 * without a GPU included. So they are dlopen'ed by gpu_blas_load, which
 * gpu/kernels/gemm.cu and gemm_lt.cu call before their first handle, and
 * called through gpu_blas: gpu_blas.cublasSgemm(...) is cublasSgemm. The
 * simulated device (tests/sim) binds the table to its own functions.
 */
#ifndef TRAIND_GPU_BLAS_LIB_H
#define TRAIND_GPU_BLAS_LIB_H

#include <stdbool.h>

#include <cublasLt.h>
#include <cublas_v2.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The functions of cuBLAS and of cuBLASLt, each list from its library
 * (gpu/blas_lib.c loads cuBLASLt's first: cuBLAS's needs it). */
#define GPU_CUBLAS_FUNCTIONS(X) GPU_CUBLAS_TYPEOF_FUNCTIONS(X) X(cublasGemmEx)
#define GPU_CUBLAS_TYPEOF_FUNCTIONS(X) \
    X(cublasCreate) X(cublasDestroy) X(cublasSetStream) X(cublasSetMathMode) \
    X(cublasSetWorkspace) X(cublasSgemm) X(cublasDgemm)
#define GPU_CUBLASLT_FUNCTIONS(X) \
    X(cublasLtCreate) X(cublasLtMatmulDescCreate) X(cublasLtMatmulDescDestroy) \
    X(cublasLtMatmulDescSetAttribute) X(cublasLtMatrixLayoutCreate) \
    X(cublasLtMatrixLayoutDestroy) X(cublasLtMatmulPreferenceCreate) \
    X(cublasLtMatmulPreferenceDestroy) X(cublasLtMatmulPreferenceSetAttribute) \
    X(cublasLtMatmulAlgoGetHeuristic) X(cublasLtMatmul)

/* The pointer types are named outside the struct (f unexpanded by ##),
 * the members inside it as the functions are: cuBLAS's header makes
 * cublasSgemm a macro for cublasSgemm_v2, and member and call both follow.
 * cublasGemmEx's type is written out: C++ sees an overload of it too (one
 * taking the old cudaDataType compute type), and __typeof__ no one type. */
#define GPU_BLAS_TYPE(f) typedef __typeof__(&f) gpu_blas_##f##_fn;
GPU_CUBLAS_TYPEOF_FUNCTIONS(GPU_BLAS_TYPE)
GPU_CUBLASLT_FUNCTIONS(GPU_BLAS_TYPE)
#undef GPU_BLAS_TYPE
typedef cublasStatus_t (*gpu_blas_cublasGemmEx_fn)(
    cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const void *alpha, const void *a, cudaDataType atype, int lda, const void *b,
    cudaDataType btype, int ldb, const void *beta, void *c, cudaDataType ctype, int ldc,
    cublasComputeType_t compute, cublasGemmAlgo_t algo);

#define GPU_BLAS_MEMBER(f) gpu_blas_##f##_fn f;
typedef struct GpuBlasLib {
    GPU_CUBLAS_FUNCTIONS(GPU_BLAS_MEMBER)
    GPU_CUBLASLT_FUNCTIONS(GPU_BLAS_MEMBER)
} GpuBlasLib;
#undef GPU_BLAS_MEMBER

/* Valid once gpu_blas_load has returned true. */
extern GpuBlasLib gpu_blas;

/* Loads both libraries and binds every function, once for the process
 * (later calls give the first answer). False, with the loader's reason
 * recorded (gpu_last_error) at `where`, when one is missing. */
bool gpu_blas_load(const char *where);

#ifdef __cplusplus
}
#endif

#endif
