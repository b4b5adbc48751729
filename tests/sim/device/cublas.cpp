/* cublas.cpp - cuBLAS and cuBLASLt on the simulated device: one
 * column-major product, C = alpha op(A) op(B) + beta C, queued on the
 * handle's stream, summed in double from inputs rounded as the math asks
 * (TF32: 10 mantissa bits; bf16: 7), never reading C when beta is 0.
 * Arguments are checked as the libraries check them (leading dimensions,
 * operands in device memory); cuBLASLt's heuristic offers one algorithm,
 * with a small workspace, that runs only on operands aligned as its
 * preference said, or none (CUBLAS_STATUS_NOT_SUPPORTED, as for a shape
 * it has no kernel for) where TRAIND_SIMDEV_LT_MIN_ALIGN=N asks for N
 * bytes and the preference allows fewer: the caller's fallback's test.
 */
#include <cblas.h>
#include <cublasLt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "tests/sim/device/device.h"

namespace {

enum Rounding { EXACT, TF32, BF16 };

template <typename T> double input(T v, Rounding r) {
    if (r == EXACT) return (double)v;
    return (double)simdev_round_mantissa((float)v, r == TF32 ? 10 : 7);
}

struct Product {
    bool ta, tb;
    int m, n, k;
    int64_t lda, ldb, ldc;
    Rounding rounding;
};

/* the span of a stored rows x cols matrix, `ld` apart, in elements */
size_t span(int64_t rows, int64_t cols, int64_t ld) {
    return rows && cols ? (size_t)(ld * (cols - 1) + rows) : 0;
}

template <typename T> bool operands_ok(const Product &p, const T *a, const T *b, const T *c) {
    int64_t ar = p.ta ? p.k : p.m, ac = p.ta ? p.m : p.k;
    int64_t br = p.tb ? p.n : p.k, bc = p.tb ? p.k : p.n;
    return p.m >= 0 && p.n >= 0 && p.k >= 0 && p.lda >= std::max<int64_t>(1, ar) &&
           p.ldb >= std::max<int64_t>(1, br) && p.ldc >= std::max<int64_t>(1, p.m) &&
           simdev_on_device(a, span(ar, ac, p.lda) * sizeof(T)) &&
           simdev_on_device(b, span(br, bc, p.ldb) * sizeof(T)) &&
           simdev_on_device(c, span(p.m, p.n, p.ldc) * sizeof(T));
}

/* op(A) as rows and op(B) as columns of doubles, rounded once, their
 * product by OpenBLAS's dgemm (the CPU backend's library; exact to double
 * rounding, far below a float's), then alpha and beta applied. The
 * operands' spans were checked against the device's blocks when the
 * product was queued. */
template <typename T>
void multiply(const Product &p, double alpha, const T *a, const T *b, double beta, const T *c,
              T *d) {
    size_t m = (size_t)p.m, n = (size_t)p.n, k = (size_t)p.k;
    std::vector<double> rows(m * k), cols(n * k), prod(m * n);
    for (size_t i = 0; i < m; i++)
        for (size_t l = 0; l < k; l++)
            rows[i * k + l] = input(p.ta ? a[l + i * p.lda] : a[i + l * p.lda], p.rounding);
    for (size_t j = 0; j < n; j++)
        for (size_t l = 0; l < k; l++)
            cols[j * k + l] = input(p.tb ? b[j + l * p.ldb] : b[l + j * p.ldb], p.rounding);
    if (m && n && k)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0,
                    rows.data(), (int)k, cols.data(), (int)k, 0.0, prod.data(), (int)n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) {
            double prior = beta == 0 ? 0 : beta * (double)c[i + j * p.ldc];
            d[i + j * p.ldc] = (T)(alpha * prod[i * n + j] + prior);
        }
}

template <typename T>
cublasStatus_t queue(cudaStream_t stream, const Product &p, double alpha, const T *a, const T *b,
                     double beta, const T *c, T *d) {
    if (!operands_ok(p, a, b, d) || (c != d && !operands_ok(p, a, b, c)))
        return CUBLAS_STATUS_INVALID_VALUE;
    cudaError_t e = simdev_enqueue(stream, [=] { multiply(p, alpha, a, b, beta, c, d); });
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

} // namespace

float simdev_round_mantissa(float x, int bits) {
    if (!isfinite(x)) return x;
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t drop = 23 - bits, half = 1u << (drop - 1), low = u & ((1u << drop) - 1);
    u >>= drop;
    if (low > half || (low == half && (u & 1))) u++;
    u <<= drop;
    memcpy(&x, &u, sizeof x);
    return x;
}

struct SimBlas {
    cudaStream_t stream = nullptr;
    cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

/* A handle's creation allocates on the device, as the libraries' do: a
 * capture that forbids it fails. */
cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    if (simdev_capture_refuses()) return CUBLAS_STATUS_ALLOC_FAILED;
    *handle = simdev_keep(new SimBlas);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    simdev_drop(handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void *workspace, size_t bytes) {
    (void)handle;
    return !workspace || simdev_on_device(workspace, bytes) ? CUBLAS_STATUS_SUCCESS
                                                            : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb,
                           int m, int n, int k, const float *alpha, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc) {
    Rounding r = handle->math == CUBLAS_TF32_TENSOR_OP_MATH ? TF32 : EXACT;
    Product p{ta == CUBLAS_OP_T, tb == CUBLAS_OP_T, m, n, k, lda, ldb, ldc, r};
    return queue(handle->stream, p, *alpha, a, b, *beta, (const float *)c, c);
}

cublasStatus_t cublasDgemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb,
                           int m, int n, int k, const double *alpha, const double *a, int lda,
                           const double *b, int ldb, const double *beta, double *c, int ldc) {
    Product p{ta == CUBLAS_OP_T, tb == CUBLAS_OP_T, m, n, k, lda, ldb, ldc, EXACT};
    return queue(handle->stream, p, *alpha, a, b, *beta, (const double *)c, c);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb,
                            int m, int n, int k, const void *alpha, const void *a,
                            cudaDataType_t atype, int lda, const void *b, cudaDataType_t btype,
                            int ldb, const void *beta, void *c, cudaDataType_t ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    (void)algo;
    if (atype != CUDA_R_32F || btype != CUDA_R_32F || ctype != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED; /* gemm.cu passes float32 alone */
    Rounding r = compute == CUBLAS_COMPUTE_32F_FAST_16BF   ? BF16
                 : compute == CUBLAS_COMPUTE_32F_FAST_TF32 ? TF32
                                                           : EXACT;
    Product p{ta == CUBLAS_OP_T, tb == CUBLAS_OP_T, m, n, k, lda, ldb, ldc, r};
    return queue(handle->stream, p, *(const float *)alpha, (const float *)a, (const float *)b,
                 *(const float *)beta, (const float *)c, (float *)c);
}

/* ---- cuBLASLt ---- */

struct SimLt {};
struct SimLtDesc {
    cublasComputeType_t compute;
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
};
struct SimLtLayout {
    uint64_t rows, cols;
    int64_t ld;
};
struct SimLtPreference {
    size_t workspace = 0;
    uint32_t align = 256;
};

namespace {
const size_t LT_WORKSPACE = 4096;
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    if (simdev_capture_refuses()) return CUBLAS_STATUS_ALLOC_FAILED;
    *handle = simdev_keep(new SimLt);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *desc = simdev_keep(new SimLtDesc{compute});
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *value, size_t bytes) {
    if (bytes != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(attr == CUBLASLT_MATMUL_DESC_TRANSA ? &desc->ta : &desc->tb, value, bytes);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    simdev_drop(desc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (ld < (int64_t)std::max<uint64_t>(1, rows)) return CUBLAS_STATUS_INVALID_VALUE;
    *layout = simdev_keep(new SimLtLayout{rows, cols, ld});
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    simdev_drop(layout);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    *pref = simdev_keep(new SimLtPreference);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *value, size_t bytes) {
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && bytes == sizeof(uint64_t)) {
        memcpy(&pref->workspace, value, bytes);
    } else if (attr != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && bytes == sizeof(uint32_t)) {
        uint32_t align;
        memcpy(&align, value, bytes);
        pref->align = std::min(pref->align, align);
    } else {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    simdev_drop(pref);
    return CUBLAS_STATUS_SUCCESS;
}

namespace {

/* the product the layouts describe: op(A) m x k, op(B) k x n, D m x n */
bool product_of(const SimLtDesc *desc, const SimLtLayout *a, const SimLtLayout *b,
                const SimLtLayout *d, Product *p) {
    bool ta = desc->ta == CUBLAS_OP_T, tb = desc->tb == CUBLAS_OP_T;
    uint64_t m = d->rows, n = d->cols, k = ta ? a->rows : a->cols;
    if ((ta ? a->cols : a->rows) != m || (tb ? b->rows : b->cols) != n ||
        (tb ? b->cols : b->rows) != k)
        return false;
    Rounding r = desc->compute == CUBLAS_COMPUTE_32F_FAST_16BF   ? BF16
                 : desc->compute == CUBLAS_COMPUTE_32F_FAST_TF32 ? TF32
                                                                 : EXACT;
    *p = Product{ta, tb, (int)m, (int)n, (int)k, a->ld, b->ld, d->ld, r};
    return true;
}

} // namespace

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t *results,
                                              int *returned) {
    (void)handle, (void)c;
    Product p;
    if (requested < 1 || !product_of(desc, a, b, d, &p)) return CUBLAS_STATUS_INVALID_VALUE;
    memset(results, 0, sizeof *results);
    const char *min_align = getenv("TRAIND_SIMDEV_LT_MIN_ALIGN");
    if (min_align && pref->align < (uint32_t)atoi(min_align)) {
        *returned = 0;
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    results->algo.data[0] = pref->align;
    results->workspaceSize = pref->workspace >= LT_WORKSPACE ? LT_WORKSPACE : 0;
    results->state = CUBLAS_STATUS_SUCCESS;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                              const void *alpha, const void *a, cublasLtMatrixLayout_t adesc,
                              const void *b, cublasLtMatrixLayout_t bdesc, const void *beta,
                              const void *c, cublasLtMatrixLayout_t cdesc, void *d,
                              cublasLtMatrixLayout_t ddesc, const cublasLtMatmulAlgo_t *algo,
                              void *workspace, size_t workspace_bytes, cudaStream_t stream) {
    (void)handle, (void)cdesc;
    /* TRAIND_SIMDEV_LT_FAIL=N: the next call fails with status N, once */
    const char *fail = getenv("TRAIND_SIMDEV_LT_FAIL");
    int status = fail ? atoi(fail) : 0;
    if (status != 0) {
        unsetenv("TRAIND_SIMDEV_LT_FAIL");
        return (cublasStatus_t)status;
    }
    Product p;
    if (!product_of(desc, adesc, bdesc, ddesc, &p)) return CUBLAS_STATUS_INVALID_VALUE;
    uintptr_t align = (uintptr_t)algo->data[0];
    if (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d) % align)
        return CUBLAS_STATUS_NOT_SUPPORTED; /* the algorithm was chosen for other addresses */
    if (workspace_bytes && !simdev_on_device(workspace, workspace_bytes))
        return CUBLAS_STATUS_INVALID_VALUE;
    return queue(stream, p, *(const float *)alpha, (const float *)a, (const float *)b,
                 *(const float *)beta, (const float *)c, (float *)d);
}
