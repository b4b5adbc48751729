/* gemm.cu - matrix products: float32 through cuBLASLt (gemm_lt.cu) where
 * it has an algorithm, else cuBLAS sgemm, or, for a thread whose job asked
 * for "precision": "bf16" (gpu_set_bf16), cublasGemmEx on bf16 tensor cores
 * (CUBLAS_COMPUTE_32F_FAST_16BF); float64 through dgemm.
 *
 * cuBLAS is column-major; the backend contract is row-major. A row-major
 * matrix with row stride ld is, read column-major, its transpose with the
 * same ld, so C = op(A) op(B) (row-major) is computed as
 * C^T = op(B)^T op(A)^T: swap the operands and m with n, keep the
 * transposition flags. One handle per device, created on first use; it
 * runs on the thread's stream (gpu/stream.h), as every other kernel. TF32 tensor cores are
 * off unless the calling thread asked for them with gpu_set_tf32(true) (a
 * job's "allow_tf32"; cuBLAS's default math is full float32). Jobs on one
 * GPU share its handle, so the math mode is set and the product queued
 * under that device's lock (queueing takes microseconds).
 * k == 0 scales C by beta here (beta == 0 writes zeros without reading C),
 * as core/cpu/gemm.c does.
 */
#include <mutex>

#include "gpu/blas_lib.h"
#include "gpu/gpu.h"
#include "gpu/kernels/common.cuh"


static cublasHandle_t handles[GPU_MAX_DEVICES];
static bool handle_tf32[GPU_MAX_DEVICES];
static void *handle_workspace[GPU_MAX_DEVICES];
static cudaStream_t handle_stream[GPU_MAX_DEVICES]; /* NULL: the library's default, legacy */
static std::mutex handle_locks[GPU_MAX_DEVICES];
static thread_local bool want_tf32;
static thread_local bool want_bf16;

static const char *cublas_message(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "cuBLAS invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "cuBLAS architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "cuBLAS execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "cuBLAS internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "cuBLAS operation not supported";
    default: return "cuBLAS error";
    }
}

static bool cublas_ok(cublasStatus_t s, const char *where) {
    if (s == CUBLAS_STATUS_SUCCESS) {
        gpu_profile_mark(where);
        return true;
    }
    gpu_record_msg(cublas_message(s), where);
    return false;
}

extern "C" void gpu_set_tf32(bool enabled) { want_tf32 = enabled; }
extern "C" void gpu_set_bf16(bool enabled) { want_bf16 = enabled; }
extern "C" bool gpu_bf16(void) { return want_bf16; }

extern "C" bool gpu_tf32_enabled(void) { return want_tf32; }

/* Device dev's handle, made with its workspace: a workspace of the size
 * cuBLAS's guide gives for Hopper (cublasSetWorkspace), kept with the
 * handle for the process's life, instead of the library's smaller default
 * pool. In the relaxed capture mode (gpu/stream.h), for a first product
 * inside a CUDA graph's capture. */
static bool make_handle_locked(int dev) {
    cudaStreamCaptureMode mode = gpu_capture_relax(); /* the libraries' loading too */
    cublasHandle_t h = NULL;
    bool made =
        gpu_blas_load("cublasCreate") && cublas_ok(gpu_blas.cublasCreate(&h), "cublasCreate");
    if (made &&
        !cublas_ok(gpu_blas.cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode")) {
        gpu_blas.cublasDestroy(h);
        made = false;
    }
    void *ws = NULL;
    if (made && cudaMalloc(&ws, GPU_CUBLAS_WORKSPACE) == cudaSuccess) {
        if (gpu_blas.cublasSetWorkspace(h, ws, GPU_CUBLAS_WORKSPACE) != CUBLAS_STATUS_SUCCESS) {
            cudaFree(ws);
            ws = NULL;
        }
    } else if (made) {
        (void)cudaGetLastError(); /* short of memory: run without */
    }
    gpu_capture_restore(mode);
    if (!made) return false;
    handles[dev] = h;
    handle_tf32[dev] = false;
    handle_workspace[dev] = ws;
    handle_stream[dev] = NULL;
    return true;
}

/* The handle of device dev, with this thread's math mode and stream; the caller holds
 * handle_locks[dev] until its product is queued. */
static cublasHandle_t device_handle_locked(int dev) {
    if (!handles[dev] && !make_handle_locked(dev)) return NULL;
    /* the thread's stream (a graph's capture): cublasSetStream also drops
     * the handle's workspace, so it is given back each time */
    cudaStream_t want = gpu_stream() == cudaStreamLegacy ? NULL : gpu_stream();
    if (handle_stream[dev] != want) {
        if (!cublas_ok(gpu_blas.cublasSetStream(handles[dev], want), "cublasSetStream"))
            return NULL;
        if (handle_workspace[dev] &&
            !cublas_ok(gpu_blas.cublasSetWorkspace(handles[dev], handle_workspace[dev],
                                                   GPU_CUBLAS_WORKSPACE),
                       "cublasSetWorkspace"))
            return NULL; /* tried again at the next product */
        handle_stream[dev] = want;
    }
    if (handle_tf32[dev] != want_tf32) {
        cublasMath_t mode = want_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
        if (!cublas_ok(gpu_blas.cublasSetMathMode(handles[dev], mode), "cublasSetMathMode"))
            return NULL;
        handle_tf32[dev] = want_tf32;
    }
    return handles[dev];
}

template <typename T> __global__ void scale_kernel(T *c, int64_t m, int64_t n, int64_t ldc, T beta) {
    GRID_STRIDE(i, m * n) {
        T *p = c + (i / n) * ldc + i % n;
        *p = beta == (T)0 ? (T)0 : beta * *p;
    }
}

extern "C" void gpu_launch_gemm(int dtype, bool trans_a, bool trans_b, int64_t m, int64_t n,
                                int64_t k, double alpha, const void *a, int64_t lda,
                                const void *b, int64_t ldb, double beta, void *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (dtype == GPU_F32)
            scale_kernel<float><<<gpu_blocks(m * n), GPU_THREADS, 0, gpu_stream()>>>(
                (float *)c, m, n, ldc, (float)beta);
        else
            scale_kernel<double>
                <<<gpu_blocks(m * n), GPU_THREADS, 0, gpu_stream()>>>((double *)c, m, n, ldc, beta);
        gpu_check_launch("gemm (k = 0) scale kernel");
        return;
    }
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX ||
        ldc > INT32_MAX) {
        gpu_record_msg("matrix dimension above 2^31 - 1", "gemm");
        return;
    }
    int dev = gpu_current_device();
    if (dev < 0 || dev >= GPU_MAX_DEVICES) {
        gpu_record_msg("device index out of range", "gemm");
        return;
    }
    std::lock_guard<std::mutex> guard(handle_locks[dev]);
    cublasHandle_t h = device_handle_locked(dev);
    if (!h) return;
    cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (dtype == GPU_F32) { /* cuBLASLt first; cuBLAS where it declines */
        int math = want_bf16 ? GPU_LT_BF16 : want_tf32 ? GPU_LT_TF32 : GPU_LT_F32;
        if (gpu_lt_sgemm(dev, math, trans_a, trans_b, m, n, k, (float)alpha, (const float *)a, lda,
                         (const float *)b, ldb, (float)beta, (float *)c, ldc) == 0)
            return;
    }
    if (dtype == GPU_F32 && want_bf16) {
        float al = (float)alpha, be = (float)beta;
        cublas_ok(gpu_blas.cublasGemmEx(h, tb, ta, (int)n, (int)m, (int)k, &al, b, CUDA_R_32F,
                                        (int)ldb, a, CUDA_R_32F, (int)lda, &be, c, CUDA_R_32F,
                                        (int)ldc, CUBLAS_COMPUTE_32F_FAST_16BF,
                                        CUBLAS_GEMM_DEFAULT),
                  "cublasGemmEx (bf16)");
    } else if (dtype == GPU_F32) {
        float al = (float)alpha, be = (float)beta;
        cublas_ok(gpu_blas.cublasSgemm(h, tb, ta, (int)n, (int)m, (int)k, &al, (const float *)b,
                                       (int)ldb, (const float *)a, (int)lda, &be, (float *)c,
                                       (int)ldc),
                  "cublasSgemm");
    } else {
        cublas_ok(gpu_blas.cublasDgemm(h, tb, ta, (int)n, (int)m, (int)k, &alpha, (const double *)b,
                                       (int)ldb, (const double *)a, (int)lda, &beta, (double *)c,
                                       (int)ldc),
                  "cublasDgemm");
    }
}
