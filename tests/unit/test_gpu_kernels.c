/* test_gpu_kernels.c - the CUDA backend's kernels where the op tests
 * (test_gpu_ops.c) do not reach every form: Philox's stream at any offset,
 * the thread's TF32 and bf16 products, batch norm's channel passes, GEMM
 * with every transpose and leading dimension, and copies and fills of all
 * four dtypes; each against the CPU backend.
 *
 * Every test skips with "no CUDA device: ..." where there is none.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "tests/support/need_gpu.h"
#include "tests/support/parity.h"

/* ---- raw kernels ---- */

Test(gpu, philox_stream_matches_cpu) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    cr_assert(be, "%s", error_get());
    uint64_t offsets[] = {0, 3, 1ull << 33};
    int64_t sizes[] = {1001, 1, 2, 3, 5};
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int o = 0; o < 3; o++)
        for (int k = 0; k < 4 * 5; k++) { /* k % 4: dtype and base; k / 4: size */
            int64_t n = sizes[k / 4];
            /* k % 4 >= 2: the offset split between the argument and a base
             * in device memory, another remainder mod 4 each (a replay's) */
            uint64_t split = k % 4 >= 2 && offsets[o] ? offsets[o] / 2 + 1 : 0;
            Tensor *base = tensor_from_doubles((const double[]){(double)split}, SHAPE(1),
                                               DTYPE_INT64);
            Tensor *gbase = base ? tensor_to_device(base, CUDA0) : NULL;
            Tensor *g = tensor_empty(SHAPE(n), dts[k % 2], CUDA0);
            Tensor *c = tensor_empty(SHAPE(n), dts[k % 2], DEVICE_CPU_INIT);
            cr_assert(g && c && gbase, "%s", error_get());
            be->uniform(g, 0x123456789abcdefull, offsets[o] - split,
                        k % 4 >= 2 ? tensor_data(gbase) : NULL);
            cpu_backend.uniform(c, 0x123456789abcdefull, offsets[o], NULL);
            Tensor *h = tensor_to_device(g, DEVICE_CPU_INIT);
            cr_assert(h, "%s", error_get());
            for (int64_t i = 0; i < n; i++) {
                cr_assert_eq(tensor_get(h, i), tensor_get(c, i),
                             "offset %llu element %lld of %lld", (unsigned long long)offsets[o],
                             (long long)i, (long long)n);
                cr_assert_eq(tensor_get(h, i), (double)philox_uniform(0x123456789abcdefull,
                                                                      offsets[o] + (uint64_t)i));
            }
            tensor_release(g), tensor_release(c), tensor_release(h);
            tensor_release(base), tensor_release(gbase);
        }
}


/* A job's "allow_tf32": the thread's float32 products on TF32 tensor cores
 * (10-bit mantissas: normwise error near 1e-4..1e-3), and full float32
 * again when it is turned off (near 1e-7). */
Test(gpu, allow_tf32_per_thread) {
    test_need_gpu();
    Rng r;
    rng_init(&r, 5);
    Tensor *a = parity_rand(&r, SHAPE(256, 1024), DTYPE_FLOAT32, -1, 1);
    Tensor *b = parity_rand(&r, SHAPE(1024, 256), DTYPE_FLOAT32, -1, 1);
    Tensor *ga = parity_to_gpu(a), *gb = parity_to_gpu(b);
    Tensor *want = tensor_matmul(a, b);
    const Backend *be = backend_for(CUDA0);
    cr_assert(be && be->allow_tf32);
    be->allow_tf32(CUDA0, true);
    Tensor *tf = tensor_matmul(ga, gb);
    be->allow_tf32(CUDA0, false);
    Tensor *full = tensor_matmul(ga, gb);
    cr_assert(want && tf && full, "%s", error_get());
    double e_tf = parity_rel_err(tf, want), e_full = parity_rel_err(full, want);
    fprintf(stderr, "gpu matmul allow_tf32            float32 rel err %.3g (off: %.3g)\n", e_tf,
            e_full);
    cr_assert(e_tf > 1e-5 && e_tf < 5e-3, "TF32 error %g", e_tf);
    cr_assert(e_full < 1e-5, "float32 error %g", e_full);
    Tensor *all[] = {a, b, ga, gb, want, tf, full};
    for (int i = 0; i < 7; i++) tensor_release(all[i]);
}

/* "precision": "bf16" on the GPU: float32 products (a matmul, a
 * convolution through im2col + GEMM) within bf16's rounding of the CPU's
 * float32, per thread; float64 untouched; float32 again when switched off. */
Test(gpu, bf16_precision_per_thread) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    cr_assert(be && be->check_precision && be->set_precision);
    cr_assert_eq(be->check_precision(CUDA0, PRECISION_BF16), 0, "%s", error_get());
    Rng r;
    rng_init(&r, 9);
    Tensor *a = parity_rand(&r, SHAPE(256, 1024), DTYPE_FLOAT32, -1, 1);
    Tensor *b = parity_rand(&r, SHAPE(1024, 256), DTYPE_FLOAT32, -1, 1);
    Tensor *x = parity_rand(&r, SHAPE(4, 8, 12, 12), DTYPE_FLOAT32, -1, 1);
    Tensor *w = parity_rand(&r, SHAPE(16, 8, 3, 3), DTYPE_FLOAT32, -1, 1);
    Tensor *a64 = parity_rand(&r, SHAPE(64, 128), DTYPE_FLOAT64, -1, 1);
    Tensor *b64 = parity_rand(&r, SHAPE(128, 32), DTYPE_FLOAT64, -1, 1);
    Tensor *ga = parity_to_gpu(a), *gb = parity_to_gpu(b), *gx = parity_to_gpu(x),
           *gw = parity_to_gpu(w);
    Tensor *ga64 = parity_to_gpu(a64), *gb64 = parity_to_gpu(b64);
    Tensor *want = tensor_matmul(a, b), *want_c = tensor_conv2d(x, w, NULL, 1, 1, 1, 1);
    Tensor *want64 = tensor_matmul(a64, b64);
    be->set_precision(CUDA0, PRECISION_BF16);
    Tensor *mm = tensor_matmul(ga, gb), *cv = tensor_conv2d(gx, gw, NULL, 1, 1, 1, 1);
    Tensor *mm64 = tensor_matmul(ga64, gb64);
    be->set_precision(CUDA0, PRECISION_FLOAT32);
    Tensor *full = tensor_matmul(ga, gb);
    cr_assert(want && want_c && want64 && mm && cv && mm64 && full, "%s", error_get());
    double e_mm = parity_rel_err(mm, want), e_cv = parity_rel_err(cv, want_c),
           e64 = parity_rel_err(mm64, want64);
    double e_full = parity_rel_err(full, want);
    fprintf(stderr, "gpu bf16 matmul %.3g conv2d %.3g (float64 %.3g, float32 after %.3g)\n", e_mm,
            e_cv, e64, e_full);
    /* bf16 keeps 8 bits: each product rounds by up to 2^-8 relative */
    cr_assert(e_mm > 1e-4 && e_mm < 2e-2, "bf16 matmul error %g", e_mm);
    cr_assert(e_cv > 1e-4 && e_cv < 2e-2, "bf16 conv2d error %g", e_cv);
    cr_assert(e64 < 1e-12, "float64 under bf16: error %g", e64);
    cr_assert(e_full < 1e-5, "float32 after bf16: error %g", e_full);
    Tensor *all[] = {a, b, x, w, a64, b64, ga, gb, gx, gw, ga64, gb64, want, want_c, want64,
                     mm, cv, mm64, full};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_release(all[i]);
}

/* Batch norm's channel passes (core/backend.h) on the GPU against the CPU:
 * [N, C, S] with S of 1 (BatchNorm1d), 16 (a 4x4 map, fewer than a warp)
 * and 33x33 (several chunks a channel); every variant of both ops. */
static void gpu_channel_case(int ndim, const int64_t *shape, DType dt) {
    Rng r;
    rng_init(&r, (uint64_t)(shape[0] * 31 + ndim));
    int64_t c = shape[1];
    Tensor *u = parity_rand(&r, ndim, shape, dt, 99, 101),
           *v = parity_rand(&r, ndim, shape, dt, -1, 1);
    Tensor *p[4];
    for (int k = 0; k < 4; k++)
        p[k] = parity_rand(&r, SHAPE(c), dt, k == 0 ? 99 : -1, k == 0 ? 101 : 1);
    Tensor *gu = parity_to_gpu(u), *gv = parity_to_gpu(v), *gp[4];
    for (int k = 0; k < 4; k++) gp[k] = parity_to_gpu(p[k]);
    const Backend *be = backend_for(CUDA0);
    char what[96];
    for (int variant = 0; variant < 4; variant++) {
        bool centred = variant & 1, with_v = variant & 2;
        Tensor *want = tensor_empty(SHAPE(c), dt, DEVICE_CPU_INIT);
        Tensor *got = tensor_empty(SHAPE(c), dt, CUDA0);
        cpu_backend.channel_sum_product(u, centred ? p[0] : NULL, with_v ? v : NULL,
                                        with_v ? p[1] : NULL, 1, want);
        be->channel_sum_product(gu, centred ? gp[0] : NULL, with_v ? gv : NULL,
                                with_v ? gp[1] : NULL, 1, got);
        snprintf(what, sizeof what, "channel sums %s variant %d S=%lld", ndim > 2 ? "map" : "rows",
                 variant, (long long)(tensor_numel(u) / shape[0] / c));
        parity_check_close(what, dt, got, want, dt == DTYPE_FLOAT32 ? 1e-6 : 1e-12);
        tensor_release(want), tensor_release(got);
    }
    for (int with_v = 0; with_v < 2; with_v++) {
        Tensor *want = tensor_empty(ndim, shape, dt, DEVICE_CPU_INIT);
        Tensor *got = tensor_empty(ndim, shape, dt, CUDA0);
        cpu_backend.channel_affine(u, p[2], with_v ? v : NULL, with_v ? p[0] : NULL,
                                   with_v ? p[3] : NULL, with_v ? p[1] : NULL, 1, want);
        be->channel_affine(gu, gp[2], with_v ? gv : NULL, with_v ? gp[0] : NULL,
                           with_v ? gp[3] : NULL, with_v ? gp[1] : NULL, 1, got);
        snprintf(what, sizeof what, "channel affine%s", with_v ? " (v - m)" : "");
        parity_check_close(what, dt, got, want, dt == DTYPE_FLOAT32 ? 1e-6 : 1e-13);
        tensor_release(want), tensor_release(got);
    }
    Tensor *all[] = {u, v, gu, gv};
    parity_release_all(4, all);
    parity_release_all(4, p);
    parity_release_all(4, gp);
}

Test(gpu, batch_norm_channel_passes) {
    test_need_gpu();
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int k = 0; k < 2; k++) {
        gpu_channel_case(SHAPE(300, 7), dts[k]);
        gpu_channel_case(SHAPE(64, 48, 4, 4), dts[k]);
        gpu_channel_case(SHAPE(16, 8, 33, 33), dts[k]);
    }
}

/* C = alpha op(A) op(B) + beta C on sub-matrices (ld > width), every
 * transpose combination, and k = 0. */
Test(gpu, gemm_transposes_and_strides) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    cr_assert(be);
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int d = 0; d < 2; d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int kk = 0; kk < 2; kk++) {
                    DType dt = dts[d];
                    int64_t m = 13, n = 17, k = kk ? 0 : 19, pad = 3;
                    int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
                    int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
                    Rng r;
                    rng_init(&r, (uint64_t)(d * 8 + ta * 4 + tb * 2 + kk));
                    Tensor *a = parity_rand(&r, SHAPE(ar ? ar : 1, lda), dt, -1, 1);
                    Tensor *b = parity_rand(&r, SHAPE(br ? br : 1, ldb), dt, -1, 1);
                    Tensor *c = parity_rand(&r, SHAPE(m, ldc), dt, -1, 1);
                    Tensor *ag = parity_to_gpu(a), *bg = parity_to_gpu(b), *cg = parity_to_gpu(c);
                    cpu_backend.gemm(dt, ta, tb, m, n, k, 0.75, tensor_data(a), lda,
                                     tensor_data(b), ldb, -0.5, tensor_data(c), ldc);
                    be->gemm(dt, ta, tb, m, n, k, 0.75, tensor_data(ag), lda, tensor_data(bg), ldb,
                             -0.5, tensor_data(cg), ldc);
                    char what[64];
                    snprintf(what, sizeof what, "gemm ta=%d tb=%d k=%lld", ta, tb, (long long)k);
                    parity_check_close(what, dt, cg, c, dt == DTYPE_FLOAT32 ? 2e-6 : 1e-13);
                    Tensor *all[] = {a, b, c, ag, bg, cg};
                    parity_release_all(6, all);
                }
}

Test(gpu, copy_and_fill_all_dtypes) {
    test_need_gpu();
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_INT64, DTYPE_UINT8};
    double vals[24];
    for (int i = 0; i < 24; i++) vals[i] = (double)((i * 37) % 200);
    for (int s = 0; s < 4; s++) {
        Tensor *c = tensor_from_doubles(vals, SHAPE(2, 3, 4), dts[s]);
        Tensor *g = parity_to_gpu(c);
        /* a strided copy on the device: permute then contiguous */
        int perm[] = {2, 0, 1};
        Tensor *pc = tensor_permute(c, perm), *pg = tensor_permute(g, perm);
        Tensor *cc = tensor_contiguous(pc), *cg = tensor_contiguous(pg);
        cr_assert(cc && cg, "%s", error_get());
        parity_check_close("permute+contiguous", dts[s], cg, cc, 0);
        for (int t = 0; t < 4; t++) { /* dtype conversion on the device */
            Tensor *xc = tensor_to_dtype(pc, dts[t]), *xg = tensor_to_dtype(pg, dts[t]);
            cr_assert(xc && xg, "%s", error_get());
            parity_check_close("strided to_dtype", dts[t], xg, xc, 0);
            tensor_release(xc);
            tensor_release(xg);
        }
        Tensor *fc = tensor_full(SHAPE(5, 7), 42.0, dts[s], DEVICE_CPU_INIT);
        Tensor *fg = tensor_full(SHAPE(5, 7), 42.0, dts[s], CUDA0);
        Tensor *zg = tensor_zeros(SHAPE(5, 7), dts[s], CUDA0);
        Tensor *zc = tensor_zeros(SHAPE(5, 7), dts[s], DEVICE_CPU_INIT);
        cr_assert(fc && fg && zg && zc, "%s", error_get());
        parity_check_close("fill 42", dts[s], fg, fc, 0);
        parity_check_close("zeros", dts[s], zg, zc, 0);
        Tensor *all[] = {c, g, pc, pg, cc, cg, fc, fg, zg, zc};
        parity_release_all(10, all);
    }
    /* int64 beyond 2^53 keeps every bit through the device */
    int64_t big[2] = {(1ll << 62) + 1, -((1ll << 60) + 3)};
    Tensor *bc = tensor_from_buffer(big, SHAPE(2), DTYPE_INT64);
    Tensor *bg = parity_to_gpu(bc);
    Tensor *bt = tensor_transpose(bg, 0, 0);
    Tensor *back = tensor_to_device(bg, DEVICE_CPU_INIT);
    cr_assert(back);
    cr_assert_eq(((int64_t *)tensor_data(back))[0], big[0]);
    cr_assert_eq(((int64_t *)tensor_data(back))[1], big[1]);
    Tensor *all[] = {bc, bg, bt, back};
    parity_release_all(4, all);
}
