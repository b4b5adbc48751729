/* gemm_lt.cu - float32 matrix products through cuBLASLt, for gemm.cu.
 *
 * PyTorch's float32 products reach 56 TFLOP/s on the H200 where
 * cublasSgemm's best is 51 (bench/results/gpu-20261204-*): cuBLASLt's
 * heuristic picks other kernels. A product's shape, transpositions, leading
 * dimensions, compute type (full float32, TF32, or bf16 tensor cores for
 * float32 operands) and the operands' alignment key a plan: the matmul and
 * layout descriptors and the heuristic's first algorithm, asked once and
 * kept for the process's life (a training step repeats a few dozen
 * shapes), up to 256 plans a device: past them a new shape's plan serves
 * its one call (and is asked for again at the next). A shape cuBLASLt has
 * no algorithm for, or refuses to run, is remembered as declined and left
 * to cublasSgemm / cublasGemmEx, as is every product under
 * TRAIND_CUBLASLT=0 (for comparing the two in one build); a run that fails
 * otherwise goes to cuBLAS that once.
 *
 * The layout is gemm.cu's: C^T = op(B)^T op(A)^T in column-major, so
 * cuBLASLt's A is our b and its B our a. The caller holds the device's
 * gemm lock: plans and handles are per device and used under it.
 */
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>

#include "gpu/blas_lib.h"
#include "gpu/kernels/common.cuh"

namespace {

typedef std::tuple<int64_t, int64_t, int64_t, int, int, int64_t, int64_t, int64_t, int, unsigned>
    PlanKey;

struct Plan {
    bool ok;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    size_t workspace;
};

struct DeviceLt {
    cublasLtHandle_t handle;
    /* cublasLtCreate failed: every product to cuBLAS for the process. Not
     * retried per product: a creation that fails for want of memory or a
     * driver would be tried (capture mode relaxed) at every product. */
    bool unavailable;
    void *workspace;
    std::map<PlanKey, Plan> plans;
};

DeviceLt devices[GPU_MAX_DEVICES];
std::atomic<int> enabled{-1}; /* -1: TRAIND_CUBLASLT not read yet */
std::atomic<uint64_t> runs{0}; /* products queued, on every device */
/* Plans kept per device: past it, a new shape's plan serves its one call
 * (a daemon meeting shape after shape stays bounded, as oneDNN's cache). */
std::atomic<size_t> plan_limit{256};

bool lt_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }

/* The largest power of two up to 256 that divides every address. */
unsigned alignment(const void *a, const void *b, const void *c) {
    uintptr_t bits = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | 256u;
    return (unsigned)(bits & (~bits + 1));
}

void plan_free(Plan *p) {
    if (p->op) gpu_blas.cublasLtMatmulDescDestroy(p->op);
    if (p->a) gpu_blas.cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) gpu_blas.cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) gpu_blas.cublasLtMatrixLayoutDestroy(p->c);
    *p = Plan{};
}

/* A stored column-major matrix of rows x cols, `ld` apart. */
bool layout(cublasLtMatrixLayout_t *out, int64_t rows, int64_t cols, int64_t ld) {
    return lt_ok(
        gpu_blas.cublasLtMatrixLayoutCreate(out, CUDA_R_32F, (uint64_t)rows, (uint64_t)cols, ld));
}

/* The plan of a product: descriptors and the heuristic's algorithm, or
 * ok = false when cuBLASLt offers none. */
Plan make_plan(DeviceLt *d, cublasComputeType_t compute, bool ta, bool tb, int64_t m, int64_t n,
               int64_t k, int64_t lda, int64_t ldb, int64_t ldc, unsigned align) {
    Plan p{};
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtMatmulPreference_t pref = NULL;
    size_t ws = d->workspace ? GPU_CUBLAS_WORKSPACE : 0;
    bool ok = lt_ok(gpu_blas.cublasLtMatmulDescCreate(&p.op, compute, CUDA_R_32F)) &&
              lt_ok(gpu_blas.cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa,
                                                            sizeof opa)) &&
              lt_ok(gpu_blas.cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb,
                                                            sizeof opb)) &&
              layout(&p.a, tb ? k : n, tb ? n : k, ldb) &&
              layout(&p.b, ta ? m : k, ta ? k : m, lda) && layout(&p.c, n, m, ldc) &&
              lt_ok(gpu_blas.cublasLtMatmulPreferenceCreate(&pref)) &&
              lt_ok(gpu_blas.cublasLtMatmulPreferenceSetAttribute(
                  pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    const cublasLtMatmulPreferenceAttributes_t aligns[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    uint32_t al = align;
    for (int i = 0; ok && i < 4; i++)
        ok = lt_ok(gpu_blas.cublasLtMatmulPreferenceSetAttribute(pref, aligns[i], &al, sizeof al));
    cublasLtMatmulHeuristicResult_t found;
    int count = 0;
    ok = ok &&
         lt_ok(gpu_blas.cublasLtMatmulAlgoGetHeuristic(d->handle, p.op, p.a, p.b, p.c, p.c, pref, 1,
                                                       &found, &count)) &&
         count > 0 && found.state == CUBLAS_STATUS_SUCCESS;
    if (pref) gpu_blas.cublasLtMatmulPreferenceDestroy(pref);
    if (!ok) {
        plan_free(&p);
        return p; /* ok false: declined for good */
    }
    p.ok = true;
    p.algo = found.algo;
    p.workspace = found.workspaceSize;
    return p;
}

/* The device's handle and workspace, made at its first product: in the
 * relaxed capture mode, as the allocator's cudaMalloc, so a first product
 * inside a CUDA graph's capture neither is refused its workspace nor
 * spoils the capture. */
bool device_ready(int dev) {
    DeviceLt *d = &devices[dev];
    if (d->handle || d->unavailable) return d->handle != NULL; /* tried once, not per product */
    cudaStreamCaptureMode mode = gpu_capture_relax(); /* the libraries' loading too */
    bool made = gpu_blas_load("cublasLtCreate") && lt_ok(gpu_blas.cublasLtCreate(&d->handle));
    if (!made) d->handle = NULL, d->unavailable = true;
    if (made && cudaMalloc(&d->workspace, GPU_CUBLAS_WORKSPACE) != cudaSuccess) {
        (void)cudaGetLastError(); /* short of memory: algorithms without one */
        d->workspace = NULL;
    }
    gpu_capture_restore(mode);
    return made;
}

} // namespace

extern "C" void gpu_cublaslt_set_enabled(bool on) { enabled.store(on ? 1 : 0); }

extern "C" size_t gpu_cublaslt_plan_limit(size_t n) { return plan_limit.exchange(n); }

extern "C" uint64_t gpu_cublaslt_runs(void) { return runs.load(); }

/* For tests, while no product runs: the maps are read without the
 * devices' gemm locks. */
extern "C" uint64_t gpu_cublaslt_plans(void) {
    uint64_t n = 0;
    for (const DeviceLt &d : devices) n += d.plans.size();
    return n;
}

extern "C" bool gpu_cublaslt_enabled(void) {
    if (enabled.load() < 0) {
        const char *v = getenv("TRAIND_CUBLASLT");
        enabled.store(v && strcmp(v, "0") == 0 ? 0 : 1);
    }
    return enabled.load() == 1;
}

extern "C" int gpu_lt_sgemm(int dev, int math, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                            float alpha, const float *a, int64_t lda, const float *b,
                            int64_t ldb, float beta, float *c, int64_t ldc) {
    if (!gpu_cublaslt_enabled() || dev < 0 || dev >= GPU_MAX_DEVICES || !device_ready(dev))
        return 1;
    cublasComputeType_t compute = math == GPU_LT_BF16   ? CUBLAS_COMPUTE_32F_FAST_16BF
                                  : math == GPU_LT_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                        : CUBLAS_COMPUTE_32F;
    DeviceLt *d = &devices[dev];
    unsigned align = alignment(a, b, c);
    PlanKey key{m, n, k, ta, tb, lda, ldb, ldc, math, align};
    auto it = d->plans.find(key);
    Plan once{};
    if (it == d->plans.end() && d->plans.size() >= plan_limit.load())
        once = make_plan(d, compute, ta, tb, m, n, k, lda, ldb, ldc, align);
    else if (it == d->plans.end())
        it = d->plans.emplace(key, make_plan(d, compute, ta, tb, m, n, k, lda, ldb, ldc, align))
                 .first;
    Plan &p = it == d->plans.end() ? once : it->second;
    if (!p.ok) return 1;
    cublasStatus_t s = gpu_blas.cublasLtMatmul(
        d->handle, p.op, &alpha, b, p.a, a, p.b, &beta, c, p.c, c, p.c, &p.algo,
        p.workspace ? d->workspace : NULL, p.workspace, gpu_stream());
    if (&p == &once) plan_free(&once); /* queued: the descriptors were read at the call */
    if (s != CUBLAS_STATUS_SUCCESS) {
        /* Nothing queued: this product runs on cuBLAS. A shape cuBLASLt
         * cannot run is declined for good; a failure of the moment (a
         * capture the driver invalidated, memory) keeps its plan, so one
         * bad step does not move the shape, and a graph's products, to
         * another library for the rest of the run. */
        if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE ||
            s == CUBLAS_STATUS_ARCH_MISMATCH)
            plan_free(&p);
        return 1;
    }
    gpu_profile_mark("cublasLtMatmul");
    runs.fetch_add(1);
    return 0;
}
