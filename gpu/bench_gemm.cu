/* bench_gemm.cu - the cuBLAS float32 GEMM throughput of this GPU, for
 * `make bench-gpu` (bench/gpu.sh) to set the GEMM-heavy job's TFLOP/s
 * against. Square sgemms of 4096 and 8192 (the peak is the best of them)
 * and the shape of the GEMM-heavy job's layers (batch 1024 x 4096 x 4096),
 * full float32 (no TF32: traind's default), on random operands (zeros run
 * faster than real data), each product timed with CUDA events after a
 * warm-up; the median is kept. Then the square ones again with TF32 tensor
 * cores (peak_tflops_tf32), for jobs that allow them; then in bf16: the
 * peak of bf16 operands with float32 accumulation (peak_tflops_bf16, what
 * PyTorch's autocast runs), and the job's shape as traind's "precision":
 * "bf16" runs it, float32 operands rounded by cuBLAS
 * (CUBLAS_COMPUTE_32F_FAST_16BF, tflops_fast_bf16_1024x4096x4096). One
 * JSON line on stdout; "skipped: no GPU" without a device.
 *
 *   build/bench_gemm [iterations]
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#include "gpu/kernels.h"

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

/* x[i] uniform in [-1, 1) from a hash of (i, seed). */
__global__ void fill_random(float *x, size_t n, unsigned seed) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned h = (unsigned)i * 2654435761u ^ seed * 2246822519u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    x[i] = (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

__global__ void to_bf16(const float *x, __nv_bfloat16 *y, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = __float2bfloat16(x[i]);
}

/* n random floats, or (bf16) their bf16 roundings, on the device */
static void *random_matrix(size_t n, unsigned seed, bool bf16) {
    float *x;
    CHECK(cudaMalloc(&x, n * sizeof(float)));
    fill_random<<<(unsigned)((n + 255) / 256), 256>>>(x, n, seed);
    CHECK(cudaGetLastError());
    if (!bf16) return x;
    __nv_bfloat16 *y;
    CHECK(cudaMalloc(&y, n * sizeof *y));
    to_bf16<<<(unsigned)((n + 255) / 256), 256>>>(x, y, n);
    CHECK(cudaGetLastError());
    CHECK(cudaFree(x));
    return y;
}

/* How a product is run: sgemm under the handle's math mode, float32
 * operands on bf16 tensor cores, or bf16 operands (float32 C). */
enum Kind { SGEMM, FAST_BF16, BF16 };

static void gemm(cublasHandle_t h, Kind kind, int m, int n, int k, const void *a, const void *b,
                 float *c) {
    const float one = 1.0f, zero = 0.0f;
    if (kind == SGEMM) {
        CHECK_BLAS(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, (const float *)b, n,
                               (const float *)a, k, &zero, c, n));
        return;
    }
    cudaDataType_t in = kind == BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t compute =
        kind == BF16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_16BF;
    CHECK_BLAS(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b, in, n, a, in, k, &zero,
                            c, CUDA_R_32F, n, compute, CUBLAS_GEMM_DEFAULT));
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* TFLOP/s of C[m,n] = A[m,k] B[k,n]: the median of `iters` products, each
 * timed with events, after 3 warm-ups. */
static double time_gemm(cublasHandle_t h, int m, int n, int k, int iters, Kind kind) {
    void *a = random_matrix((size_t)m * k, 1, kind == BF16);
    void *b = random_matrix((size_t)k * n, 2, kind == BF16);
    float *c;
    CHECK(cudaMalloc(&c, (size_t)m * n * sizeof(float)));
    for (int i = 0; i < 3; i++) gemm(h, kind, m, n, k, a, b, c);
    cudaEvent_t *ev = (cudaEvent_t *)malloc((size_t)(iters + 1) * sizeof *ev);
    float *ms = (float *)malloc((size_t)iters * sizeof *ms);
    if (!ev || !ms) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    for (int i = 0; i <= iters; i++) CHECK(cudaEventCreate(&ev[i]));
    CHECK(cudaEventRecord(ev[0]));
    for (int i = 0; i < iters; i++) {
        gemm(h, kind, m, n, k, a, b, c);
        CHECK(cudaEventRecord(ev[i + 1]));
    }
    CHECK(cudaEventSynchronize(ev[iters]));
    for (int i = 0; i < iters; i++) CHECK(cudaEventElapsedTime(&ms[i], ev[i], ev[i + 1]));
    qsort(ms, (size_t)iters, sizeof *ms, cmp_float);
    double median = ms[iters / 2];
    for (int i = 0; i <= iters; i++) CHECK(cudaEventDestroy(ev[i]));
    free(ev);
    free(ms);
    CHECK(cudaFree(a));
    CHECK(cudaFree(b));
    CHECK(cudaFree(c));
    return 2.0 * m * n * (double)k / (median / 1000.0) / 1e12;
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
    double sq4096 = time_gemm(h, 4096, 4096, 4096, iters, SGEMM);
    double sq8192 = time_gemm(h, 8192, 8192, 8192, iters, SGEMM);
    double job = time_gemm(h, 1024, 4096, 4096, iters, SGEMM);
    /* again with the 32 MiB workspace that traind's handles get (gemm.cu);
     * the peak is the best seen */
    void *ws;
    CHECK(cudaMalloc(&ws, GPU_CUBLAS_WORKSPACE));
    CHECK_BLAS(cublasSetWorkspace(h, ws, GPU_CUBLAS_WORKSPACE));
    double ws4096 = time_gemm(h, 4096, 4096, 4096, iters, SGEMM);
    double ws8192 = time_gemm(h, 8192, 8192, 8192, iters, SGEMM);
    double ws_job = time_gemm(h, 1024, 4096, 4096, iters, SGEMM);
    double peak = sq4096;
    for (double v : {sq8192, ws4096, ws8192}) peak = v > peak ? v : peak;
    /* the same products on TF32 tensor cores, for jobs with allow_tf32 */
    CHECK_BLAS(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH));
    double tf4096 = time_gemm(h, 4096, 4096, 4096, iters, SGEMM);
    double tf8192 = time_gemm(h, 8192, 8192, 8192, iters, SGEMM);
    double tf_peak = tf4096 > tf8192 ? tf4096 : tf8192;
    CHECK_BLAS(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    double bf4096 = time_gemm(h, 4096, 4096, 4096, iters, BF16);
    double bf8192 = time_gemm(h, 8192, 8192, 8192, iters, BF16);
    double bf_job = time_gemm(h, 1024, 4096, 4096, iters, BF16);
    double fast_job = time_gemm(h, 1024, 4096, 4096, iters, FAST_BF16);
    double bf_peak = bf4096 > bf8192 ? bf4096 : bf8192;
    printf("{\"bench\": \"cublas_sgemm_peak\", \"device\": \"%s\", \"tf32\": false, "
           "\"tflops_4096\": %.2f, \"tflops_8192\": %.2f, \"tflops_1024x4096x4096\": %.2f, "
           "\"workspace_32m\": {\"tflops_4096\": %.2f, \"tflops_8192\": %.2f, "
           "\"tflops_1024x4096x4096\": %.2f}, "
           "\"peak_tflops\": %.2f, \"peak_tflops_tf32\": %.2f, "
           "\"bf16\": {\"tflops_4096\": %.2f, \"tflops_8192\": %.2f, "
           "\"tflops_1024x4096x4096\": %.2f}, \"tflops_fast_bf16_1024x4096x4096\": %.2f, "
           "\"peak_tflops_bf16\": %.2f}\n",
           prop.name, sq4096, sq8192, job, ws4096, ws8192, ws_job, peak, tf_peak, bf4096, bf8192,
           bf_job, fast_job, bf_peak);
    CHECK_BLAS(cublasDestroy(h));
    CHECK(cudaFree(ws));
    return 0;
}
