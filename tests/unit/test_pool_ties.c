/* test_pool_ties.c - max_pool2d on tied windows, on the CPU: torch keeps the
 * first maximum in scan order and sends the gradient there. The cases of
 * tests/fixtures/gen_pool_ties.py against PyTorch (tests/support/pool_ties.c,
 * which test_gpu_ops.c runs on CUDA too): every tie pattern of the 2x2 stride-2
 * fast path, and the general path with overlapping, padded and non-square
 * windows; then both paths against the rule itself on larger random
 * integer planes, big enough for the kernels' OpenMP loops. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "core/cpu/cpu.h"
#include "core/error.h"
#include "core/rng.h"
#include "tests/support/fixture.h"
#include "tests/support/pool_ties.h"

/* Case `name` of pool_ties.json on the CPU in both float dtypes. */
static void check_on_cpu(const char *name) {
    json_t *fx = fixture_load("pool_ties");
    pool_ties_check(fx, name, DEVICE_CPU_INIT, DTYPE_FLOAT32);
    pool_ties_check(fx, name, DEVICE_CPU_INIT, DTYPE_FLOAT64);
    json_decref(fx);
}

Test(pool_ties, fast_path_2x2_every_tie_pattern) { check_on_cpu("k2s2"); }
Test(pool_ties, k3_s2_p1_overlapping_windows) { check_on_cpu("k3s2p1"); }
Test(pool_ties, k3x2_s2x1_p1x0_non_square) { check_on_cpu("k3x2_s2x1_p1x0"); }
Test(pool_ties, k2x3_s1x2_p1x1_non_square) { check_on_cpu("k2x3_s1x2_p1x1"); }
Test(pool_ties, k2_s2_p1_padded_general_path) { check_on_cpu("k2s2p1"); }
Test(pool_ties, k2_s1_overlapping_windows) { check_on_cpu("k2s1"); }

/* ---- the rule itself, on larger planes ---- */

/* The flat h*W+w of the first maximum of output (oh, ow) of one plane, in
 * scan order; *count: how many pixels of the window hold that maximum. */
static int64_t first_maximum(const Window2d *g, const double *plane, int64_t oh, int64_t ow,
                             int *count) {
    int64_t best_i = -1;
    double best = -INFINITY;
    for (int64_t ki = 0; ki < g->kernel_h; ki++)
        for (int64_t kj = 0; kj < g->kernel_w; kj++) {
            int64_t ih = oh * g->stride_h - g->pad_h + ki * g->dilation_h;
            int64_t iw = ow * g->stride_w - g->pad_w + kj * g->dilation_w;
            if (ih < 0 || ih >= g->height || iw < 0 || iw >= g->width) continue;
            int64_t i = ih * g->width + iw;
            if (best_i < 0 || plane[i] > best)
                best = plane[i], best_i = i, *count = 1;
            else if (plane[i] == best)
                ++*count;
        }
    return best_i;
}

/* Integers in [-2, 2] (dense ties) pooled by cpu_max_pool2d in dtype:
 * every output is the first maximum of its window and holds its value. */
static void check_rule(Window2d g, DType dtype, uint64_t seed) {
    g.out_h = (g.height + 2 * g.pad_h - g.dilation_h * (g.kernel_h - 1) - 1) / g.stride_h + 1;
    g.out_w = (g.width + 2 * g.pad_w - g.dilation_w * (g.kernel_w - 1) - 1) / g.stride_w + 1;
    int64_t planes = g.batch * g.channels, hw = g.height * g.width, ohw = g.out_h * g.out_w;
    double *v = malloc((size_t)(planes * hw) * sizeof *v);
    cr_assert(v != NULL);
    Rng rng;
    rng_init(&rng, seed);
    for (int64_t i = 0; i < planes * hw; i++) v[i] = (double)rng_below(&rng, 5) - 2;
    const int64_t in_shape[4] = {g.batch, g.channels, g.height, g.width};
    const int64_t out_shape[4] = {g.batch, g.channels, g.out_h, g.out_w};
    Tensor *x = tensor_from_doubles(v, 4, in_shape, dtype);
    Tensor *out = tensor_empty(4, out_shape, dtype, DEVICE_CPU_INIT);
    Tensor *idx = tensor_empty(4, out_shape, DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert(x && out && idx, "%s", error_get());
    cpu_max_pool2d(&g, x, out, idx);
    int64_t tied = 0;
    for (int64_t p = 0; p < planes; p++)
        for (int64_t o = 0; o < ohw; o++) {
            int count = 0;
            int64_t want = first_maximum(&g, v + p * hw, o / g.out_w, o % g.out_w, &count);
            int64_t got = (int64_t)tensor_get(idx, p * ohw + o);
            cr_assert_eq(got, want,
                         "k%ldx%ld s%ldx%ld p%ldx%ld %s: plane %ld output (%ld, %ld): index %ld "
                         "(%ld, %ld), the first maximum is at %ld (%ld, %ld)",
                         (long)g.kernel_h, (long)g.kernel_w, (long)g.stride_h, (long)g.stride_w,
                         (long)g.pad_h, (long)g.pad_w, dtype_name(dtype), (long)p,
                         (long)(o / g.out_w), (long)(o % g.out_w), (long)got,
                         (long)(got / g.width), (long)(got % g.width), (long)want,
                         (long)(want / g.width), (long)(want % g.width));
            cr_assert_eq(tensor_get(out, p * ohw + o), v[p * hw + want]);
            tied += count > 1;
        }
    cr_assert(tied >= planes * ohw / 5, "only %ld of %ld windows tie", (long)tied,
              (long)(planes * ohw));
    free(v);
    tensor_release(x), tensor_release(out), tensor_release(idx);
}

Test(pool_ties, both_paths_keep_the_first_maximum_on_large_planes) {
    /* 8x4 planes of 64x64 (and 65x63: floor mode) pass CPU_PARALLEL_MIN. */
    static const Window2d geometries[] = {
        /*  n  c   h   w kh kw sh sw ph pw dh dw */
        {8, 4, 64, 64, 2, 2, 2, 2, 0, 0, 1, 1, 0, 0}, /* the fast path */
        {8, 4, 65, 63, 2, 2, 2, 2, 0, 0, 1, 1, 0, 0}, /* the fast path, odd edges */
        {8, 4, 64, 64, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0},
        {8, 4, 64, 63, 3, 2, 2, 1, 1, 0, 1, 1, 0, 0},
        {8, 4, 63, 64, 2, 3, 1, 2, 1, 1, 1, 1, 0, 0},
        {8, 4, 64, 64, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0},
        {8, 4, 64, 64, 2, 2, 1, 1, 0, 0, 1, 1, 0, 0},
        {2, 3, 17, 19, 3, 3, 1, 2, 1, 1, 2, 2, 0, 0}, /* dilated (conv-style windows) */
    };
    for (size_t i = 0; i < sizeof geometries / sizeof *geometries; i++) {
        check_rule(geometries[i], DTYPE_FLOAT32, 100 + i);
        check_rule(geometries[i], DTYPE_FLOAT64, 200 + i);
    }
}
