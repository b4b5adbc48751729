/* test_gpu_cublaslt.c - float32 products through cuBLASLt (gpu/gemm_lt)
 * against cuBLAS's sgemm and the CPU: which products run there, the plans
 * kept per shape up to their limit, and the products it declines or fails,
 * which run on cuBLAS with the same numbers.
 *
 * Every test skips with "no CUDA device: ..." where there is none.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "tests/support/need_gpu.h"
#include "tests/support/parity.h"
#ifdef TRAIND_CUDA
#include "gpu/kernels.h"
#endif

/* float32 products through cuBLASLt against cuBLAS's sgemm and the CPU:
 * transposes, padded leading dimensions, operands 4 bytes off a 16-byte
 * boundary (another plan: cuBLASLt's kernels assume alignment), beta 0
 * and not, a shape of the GEMM job's size; each plan made once. */
/* cuBLASLt's counter and switch (0 and nothing without CUDA) */
static uint64_t lt_runs(void) {
#ifdef TRAIND_CUDA
    return gpu_cublaslt_runs();
#else
    return 0;
#endif
}
static uint64_t lt_plans(void) {
#ifdef TRAIND_CUDA
    return gpu_cublaslt_plans();
#else
    return 0;
#endif
}
static void lt_enable(bool on) {
#ifdef TRAIND_CUDA
    gpu_cublaslt_set_enabled(on);
#else
    (void)on;
#endif
}
static size_t lt_plan_limit(size_t n) {
#ifdef TRAIND_CUDA
    return gpu_cublaslt_plan_limit(n);
#else
    return n;
#endif
}

/* C = 0.75 op(A) op(B) + beta C with leading dimensions `pad` past the
 * rows and the operands `shift` floats past an allocation. Rows of 16
 * bytes at 16-byte addresses must run on cuBLASLt; others (4-byte
 * alignment) may be declined by its heuristic, and then run on cuBLAS:
 * their numbers are checked either way, and which ran is printed. */
static void lt_case(int ta, int tb, int64_t m, int64_t n, int64_t k, int64_t pad, int64_t shift,
                    double beta) {
    int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
    Rng r;
    rng_init(&r, (uint64_t)(m * 7 + n * 3 + k + ta * 2 + tb));
    Tensor *a = parity_rand(&r, SHAPE(ar * lda + shift), DTYPE_FLOAT32, -1, 1);
    Tensor *b = parity_rand(&r, SHAPE(br * ldb + shift), DTYPE_FLOAT32, -1, 1);
    Tensor *c = parity_rand(&r, SHAPE(m * ldc + shift), DTYPE_FLOAT32, -1, 1);
    Tensor *ag = parity_to_gpu(a), *bg = parity_to_gpu(b), *lt = parity_to_gpu(c),
           *sg = parity_to_gpu(c);
    const float *ah = (const float *)tensor_data(a) + shift;
    const float *bh = (const float *)tensor_data(b) + shift;
    cpu_backend.gemm(DTYPE_FLOAT32, ta, tb, m, n, k, 0.75, ah, lda, bh, ldb, beta,
                     (float *)tensor_data(c) + shift, ldc);
    const float *ad = (const float *)tensor_data(ag) + shift;
    const float *bd = (const float *)tensor_data(bg) + shift;
    uint64_t runs = lt_runs();
    backend_for(CUDA0)->gemm(DTYPE_FLOAT32, ta, tb, m, n, k, 0.75, ad, lda, bd, ldb, beta,
                             (float *)tensor_data(lt) + shift, ldc);
    bool aligned = shift % 4 == 0 && lda % 4 == 0 && ldb % 4 == 0 && ldc % 4 == 0;
    uint64_t ran = lt_runs() - runs;
    cr_assert(ran == 1 || (!aligned && ran == 0), "an aligned product did not run on cuBLASLt");
    lt_enable(false);
    backend_for(CUDA0)->gemm(DTYPE_FLOAT32, ta, tb, m, n, k, 0.75, ad, lda, bd, ldb, beta,
                             (float *)tensor_data(sg) + shift, ldc);
    lt_enable(true);
    cr_assert_eq(lt_runs(), runs + ran, "TRAIND_CUBLASLT off still ran cuBLASLt");
    char what[96];
    snprintf(what, sizeof what, "%s %lldx%lldx%lld ta=%d tb=%d ld+%lld +%lld beta %g",
             ran ? "cublasLt" : "declined", (long long)m, (long long)n, (long long)k, ta, tb,
             (long long)pad, (long long)shift, beta);
    parity_check_close(what, DTYPE_FLOAT32, lt, c, 2e-6);
    parity_check_close("  ... cublasSgemm", DTYPE_FLOAT32, sg, c, 2e-6);
    Tensor *all[] = {a, b, c, ag, bg, lt, sg};
    parity_release_all(7, all);
}

Test(gpu, cublaslt_against_cublas_and_cpu) {
    test_need_gpu();
    lt_enable(true);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            lt_case(ta, tb, 13, 17, 19, 3, 0, -0.5);
            lt_case(ta, tb, 13, 17, 19, 3, 1, 0.0);
            lt_case(ta, tb, 256, 96, 320, 3, 0, 0.0);
            lt_case(ta, tb, 256, 96, 320, 0, 0, -0.5);
            lt_case(ta, tb, 64, 32, 48, 4, 4, 0.0);
        }
    lt_case(0, 1, 512, 2048, 256, 3, 0, 0.0);
    lt_case(0, 1, 512, 2048, 256, 0, 0, 0.0); /* y = x W^T of a wide Linear */
    uint64_t plans = lt_plans();
    lt_case(0, 1, 512, 2048, 256, 0, 0, 0.0); /* the same plan again */
    cr_assert_eq(lt_plans(), plans, "the same product made another plan");
}

/* A product cuBLASLt's heuristic declines runs on cuBLAS, its numbers
 * right (the simulated device declines alignments under 16 bytes when
 * told to; a GPU's heuristic may decline 4-byte ones itself). */
Test(gpu, cublaslt_declined_runs_on_cublas) {
    test_need_gpu();
    if (!test_gpu_simulated()) cr_skip_test("the simulated device's: a GPU declines on its own");
    lt_enable(true);
    cr_assert_eq(setenv("TRAIND_SIMDEV_LT_MIN_ALIGN", "16", 1), 0);
    uint64_t runs = lt_runs();
    for (int t = 0; t < 2; t++) lt_case(t, !t, 13, 17, 19, 3, 1, 0.0);
    lt_case(0, 0, 31, 9, 7, 1, 2, 0.5);
    cr_assert_eq(lt_runs(), runs, "a declined product ran on cuBLASLt");
    lt_case(0, 1, 64, 32, 48, 0, 4, 0.0); /* 16-byte aligned: still cuBLASLt's */
    cr_assert_eq(lt_runs(), runs + 1);
    unsetenv("TRAIND_SIMDEV_LT_MIN_ALIGN");
}

/* Past the plan limit a new shape's plan serves its one call: the product
 * runs on cuBLASLt, its numbers right, and no plan is kept; a shape kept
 * before still runs there. */
Test(gpu, cublaslt_plans_past_the_limit_serve_one_call) {
    test_need_gpu();
    lt_enable(true);
    lt_case(0, 1, 40, 24, 32, 0, 0, 0.0);
    uint64_t plans = lt_plans(), runs = lt_runs();
    size_t limit = lt_plan_limit(0);
    lt_case(0, 1, 72, 24, 32, 0, 0, 0.0);  /* a new shape */
    lt_case(1, 1, 72, 24, 32, 0, 0, -0.5); /* another */
    cr_assert_eq(lt_plans(), plans, "a plan was kept past the limit");
    lt_case(0, 1, 40, 24, 32, 0, 0, 0.0); /* the kept one */
    cr_assert_eq(lt_runs(), runs + 3);
    lt_plan_limit(limit);
}

/* C = A^T B of 24x56 by 56x40 on the GPU, its numbers against the CPU's,
 * the simulated cuBLASLt told to fail its next call with status `fail`
 * (NULL: not); asserts how many products ran on cuBLASLt. */
static void lt_product(const char *fail, uint64_t want_runs) {
    Rng r;
    rng_init(&r, 5);
    Tensor *a = parity_rand(&r, SHAPE(56, 24), DTYPE_FLOAT32, -1, 1);
    Tensor *b = parity_rand(&r, SHAPE(56, 40), DTYPE_FLOAT32, -1, 1);
    Tensor *c = tensor_zeros(SHAPE(24, 40), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *ag = parity_to_gpu(a), *bg = parity_to_gpu(b), *cg = parity_to_gpu(c);
    cpu_backend.gemm(DTYPE_FLOAT32, true, false, 24, 40, 56, 1.0, tensor_data(a), 24,
                     tensor_data(b), 40, 0.0, tensor_data(c), 40);
    if (fail) cr_assert_eq(setenv("TRAIND_SIMDEV_LT_FAIL", fail, 1), 0);
    uint64_t runs = lt_runs();
    backend_for(CUDA0)->gemm(DTYPE_FLOAT32, true, false, 24, 40, 56, 1.0, tensor_data(ag), 24,
                             tensor_data(bg), 40, 0.0, tensor_data(cg), 40);
    cr_assert_eq(lt_runs() - runs, want_runs, "told to fail with %s", fail ? fail : "nothing");
    parity_check_close(fail ? fail : "cublasLt", DTYPE_FLOAT32, cg, c, 2e-6);
    Tensor *all[] = {a, b, c, ag, bg, cg};
    parity_release_all(6, all);
}

/* A cuBLASLt run that fails for the moment (EXECUTION_FAILED, as after a
 * capture the driver invalidated) runs that product on cuBLAS and keeps
 * the shape's plan; one it refuses (NOT_SUPPORTED) declines the shape for
 * good. Either way the numbers are right. */
Test(gpu, cublaslt_failure_of_the_moment_keeps_the_plan) {
    test_need_gpu();
    if (!test_gpu_simulated()) cr_skip_test("the simulated device's: a GPU fails on its own");
    lt_enable(true);
    lt_product(NULL, 1); /* the plan made, run on cuBLASLt */
    lt_product("13", 0);
    lt_product(NULL, 1); /* the plan kept */
    lt_product("15", 0);
    lt_product(NULL, 0); /* declined for good */
}
