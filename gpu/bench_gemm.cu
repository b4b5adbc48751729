/* bench_gemm.cu - the cuBLAS float32 GEMM throughput of this GPU, for
 * `make bench-gpu` (bench/gpu.sh) to set the GEMM-heavy job's TFLOP/s
 * against. Square sgemms of 4096 and 8192 (the peak is the best of them)
 * and the shape of the GEMM-heavy job's layers (batch 1024 x 4096 x 4096),
 * full float32 (no TF32: traind's default), timed with CUDA events after a
 * warm-up. One JSON line on stdout; "skipped: no GPU" without a device.
 *
 *   build/bench_gemm [iterations]
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "bench_gemm: cuda: %s at %s\n", cudaGetErrorString(e_), #call);       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_BLAS(call)                                                                           \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            fprintf(stderr, "bench_gemm: cublas status %d at %s\n", (int)s_, #call);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* TFLOP/s of C[m,n] = A[m,k] B[k,n], best of `iters` timed after 3 warm-ups. */
static double time_sgemm(cublasHandle_t h, int m, int n, int k, int iters) {
    float *a, *b, *c;
    CHECK(cudaMalloc(&a, (size_t)m * k * sizeof(float)));
    CHECK(cudaMalloc(&b, (size_t)k * n * sizeof(float)));
    CHECK(cudaMalloc(&c, (size_t)m * n * sizeof(float)));
    CHECK(cudaMemset(a, 0, (size_t)m * k * sizeof(float)));
    CHECK(cudaMemset(b, 0, (size_t)k * n * sizeof(float)));
    const float one = 1.0f, zero = 0.0f;
    cudaEvent_t t0, t1;
    CHECK(cudaEventCreate(&t0));
    CHECK(cudaEventCreate(&t1));
    for (int i = 0; i < 3; i++)
        CHECK_BLAS(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b, n, a, k, &zero, c, n));
    CHECK(cudaEventRecord(t0));
    for (int i = 0; i < iters; i++)
        CHECK_BLAS(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b, n, a, k, &zero, c, n));
    CHECK(cudaEventRecord(t1));
    CHECK(cudaEventSynchronize(t1));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, t0, t1));
    CHECK(cudaEventDestroy(t0));
    CHECK(cudaEventDestroy(t1));
    CHECK(cudaFree(a));
    CHECK(cudaFree(b));
    CHECK(cudaFree(c));
    double flops = 2.0 * m * n * (double)k * iters;
    return flops / (ms / 1000.0) / 1e12;
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 20;
    if (iters < 1) iters = 20;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        printf("skipped: no GPU\n");
        return 0;
    }
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    cublasHandle_t h;
    CHECK_BLAS(cublasCreate(&h));
    CHECK_BLAS(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    double sq4096 = time_sgemm(h, 4096, 4096, 4096, iters);
    double sq8192 = time_sgemm(h, 8192, 8192, 8192, iters);
    double job = time_sgemm(h, 1024, 4096, 4096, iters);
    double peak = sq4096 > sq8192 ? sq4096 : sq8192;
    printf("{\"bench\": \"cublas_sgemm_peak\", \"device\": \"%s\", \"tf32\": false, "
           "\"tflops_4096\": %.2f, \"tflops_8192\": %.2f, \"tflops_1024x4096x4096\": %.2f, "
           "\"peak_tflops\": %.2f}\n",
           prop.name, sq4096, sq8192, job, peak);
    CHECK_BLAS(cublasDestroy(h));
    return 0;
}
