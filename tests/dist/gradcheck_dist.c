/* gradcheck_dist.c - float64 finite-difference checks of the ops that
 * communicate, across real ranks: `mpirun -np N build/tests/gradcheck_dist`
 * (tests/e2e/test_data_parallel.sh runs it on 3 ranks).
 *
 * The job's loss is L = sum over ranks r of sum(f(x_r) * w_r), w_r a fixed
 * pseudo-random weight per rank. Each rank's autograd gradient of its own
 * sum(f(x_r) * w_r) (through the collective's backward) must equal dL/dx_r
 * by central differences, where perturbing one element of one rank's input
 * changes every rank's term. Inputs shared by all ranks (BatchNorm's weight
 * and bias) are perturbed on every rank at once and their gradients summed
 * over the ranks, as the reducer sums them. Ranks hold different numbers of
 * rows, so uneven shares are checked too. SyncBatchNorm in the blocked
 * layout, float32 on the CPU's own kernels, is checked against NCHW's.
 * Prints a line per check and exits 1 when one fails.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "dist/mpi.h"

#define EPS 1e-6
#define ATOL 1e-6
#define RTOL 1e-5

typedef Tensor *(*DistFn)(Tensor **in, DistGroup *g);

/* A float64 leaf of `shape` uniform in [-1, 1) from seed. */
static Tensor *uniform(int ndim, const int64_t *shape, uint64_t seed, bool grad) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc((size_t)n * sizeof *v);
    Rng rng;
    rng_init(&rng, seed);
    for (int64_t i = 0; i < n; i++) v[i] = rng_uniform_range(&rng, -1, 1);
    Tensor *t = tensor_from_doubles(v, ndim, shape, DTYPE_FLOAT64);
    free(v);
    if (t && grad) tensor_set_requires_grad(t, true);
    return t;
}

/* This rank's term sum(f(in) * w), as a tensor (for backward). */
static Tensor *term(DistFn f, Tensor **in, Tensor *w, DistGroup *g) {
    Tensor *y = f(in, g);
    Tensor *yw = y ? tensor_mul(y, w) : NULL;
    Tensor *s = yw ? tensor_sum(yw) : NULL;
    tensor_release(y), tensor_release(yw);
    return s;
}

/* L over all ranks, without grad. */
static double global_loss(DistFn f, Tensor **in, Tensor *w, DistGroup *g) {
    bool prev = autograd_set_enabled(false);
    Tensor *s = term(f, in, w, g);
    double v = s ? tensor_item(s) : NAN;
    tensor_release(s);
    autograd_set_enabled(prev);
    dist_all_reduce(g, &v, 1, DTYPE_FLOAT64);
    return v;
}

/* Central difference of L in element i of input k, perturbed on rank
 * `who` (-1: on every rank, a shared input). */
static double numeric(DistFn f, Tensor **in, Tensor *w, DistGroup *g, int k, int64_t i, int who) {
    double *x = tensor_data(in[k]);
    bool mine = who < 0 || who == g->rank;
    double keep = mine ? x[i] : 0;
    if (mine) x[i] = keep + EPS;
    double up = global_loss(f, in, w, g);
    if (mine) x[i] = keep - EPS;
    double down = global_loss(f, in, w, g);
    if (mine) x[i] = keep;
    return (up - down) / (2 * EPS);
}

static bool close_enough(double a, double n) {
    return fabs(a - n) <= ATOL + RTOL * fabs(n);
}

/* Checks every element of input 0 (this rank's own) and of the shared
 * inputs 1..n_in-1. Returns the number of mismatches on this rank. */
static int check(const char *name, DistFn f, int n_in, Tensor **in, Tensor *w, DistGroup *g) {
    Tensor *s = term(f, in, w, g);
    int bad = 0;
    if (!s || tensor_backward(s) != 0) {
        printf("FAIL %s: rank %d: %s\n", name, g->rank, error_get());
        tensor_release(s);
        return 1;
    }
    tensor_release(s);
    double worst = 0;
    for (int k = 0; k < n_in; k++) {
        int64_t n = tensor_numel(in[k]);
        double *grad = calloc((size_t)n, sizeof *grad);
        if (in[k]->grad) tensor_to_doubles(in[k]->grad, grad, n);
        if (k > 0) dist_all_reduce(g, grad, n, DTYPE_FLOAT64); /* shared: summed */
        for (int who = k == 0 ? 0 : -1; who < (k == 0 ? g->world : 0); who++) {
            int64_t count = n; /* rank who's own element count */
            if (k == 0) dist_broadcast(g, &count, sizeof count, who);
            for (int64_t i = 0; i < count; i++) {
                double num = numeric(f, in, w, g, k, i, who);
                if (k == 0 && who != g->rank) continue;
                worst = fmax(worst, fabs(grad[i] - num));
                if (!close_enough(grad[i], num) && bad++ < 5)
                    printf("FAIL %s: rank %d input %d element %lld: autograd %.10g, "
                           "finite difference %.10g\n",
                           name, g->rank, k, (long long)i, grad[i], num);
            }
        }
        free(grad);
    }
    int64_t total = bad;
    dist_all_reduce(g, &total, 1, DTYPE_INT64);
    dist_all_reduce(g, &worst, 1, DTYPE_FLOAT64); /* a sum of maxima bounds the max */
    if (g->rank == 0 && total == 0)
        printf("PASS %s on %d ranks (largest difference under %.2g)\n", name, g->world, worst);
    return bad;
}

static Tensor *all_reduce_fn(Tensor **in, DistGroup *g) {
    Tensor *sq = tensor_mul(in[0], in[0]); /* a non-linear use of the sum's input */
    Tensor *y = tensor_all_reduce_sum(sq, g);
    tensor_release(sq);
    return y;
}

static Tensor *sync_bn_fn(Tensor **in, DistGroup *g) {
    return tensor_batch_norm_sync(in[0], NULL, NULL, in[1], in[2], true, 0.1, NULL, 1e-5, g);
}

/* y, then the gradients of x, weight and bias of sum(y * w): float32
 * SyncBatchNorm over x [rows, 32, 3, 2] in NCHW or in the blocked layout
 * (the CPU's channel passes over 16 lanes). */
static void sync_bn_f32(Tensor *x64, Tensor *w64, bool blocked, DistGroup *g, Tensor **got) {
    Tensor *x = tensor_to_dtype(x64, DTYPE_FLOAT32), *w = tensor_to_dtype(w64, DTYPE_FLOAT32);
    Tensor *xl = tensor_detach(x);
    int64_t c = 32;
    Tensor *gamma = tensor_full(1, &c, 1.5, DTYPE_FLOAT32, xl->device);
    Tensor *beta = tensor_full(1, &c, -0.25, DTYPE_FLOAT32, xl->device);
    tensor_set_requires_grad(xl, true), tensor_set_requires_grad(gamma, true);
    tensor_set_requires_grad(beta, true);
    Tensor *in = blocked ? tensor_to_blocked(xl) : tensor_retain(xl);
    Tensor *y = (blocked ? tensor_batch_norm_blocked : tensor_batch_norm_sync)(
        in, NULL, NULL, gamma, beta, true, 0.1, NULL, 1e-5, g);
    Tensor *out = blocked ? tensor_from_blocked(y) : tensor_retain(y);
    Tensor *yw = tensor_mul(out, w), *s = tensor_sum(yw);
    if (!s || tensor_backward(s) != 0) printf("FAIL batch_norm_blocked: %s\n", error_get());
    got[0] = out, got[1] = tensor_retain(xl->grad), got[2] = tensor_retain(gamma->grad);
    got[3] = tensor_retain(beta->grad);
    Tensor *drop[9] = {x, w, xl, gamma, beta, in, y, yw, s};
    for (int i = 0; i < 9; i++) tensor_release(drop[i]);
}

/* SyncBatchNorm in the blocked layout against NCHW on every rank. */
static int blocked_sync_bn_matches(DistGroup *g, uint64_t seed) {
    int64_t shape[4] = {2 + g->rank, 32, 3, 2};
    Tensor *x = uniform(4, shape, seed + 21, false), *w = uniform(4, shape, seed + 23, false);
    Tensor *blocked[4], *plain[4];
    sync_bn_f32(x, w, true, g, blocked);
    sync_bn_f32(x, w, false, g, plain);
    int bad = 0;
    const char *what[4] = {"y", "gx", "gweight", "gbias"};
    for (int i = 0; i < 4; i++) {
        int64_t n = blocked[i] && plain[i] ? tensor_numel(plain[i]) : 0;
        double *a = calloc((size_t)n + 1, sizeof *a), *b = calloc((size_t)n + 1, sizeof *b);
        if (n) tensor_to_doubles(blocked[i], a, n), tensor_to_doubles(plain[i], b, n);
        for (int64_t k = 0; k < n; k++)
            if (!(fabs(a[k] - b[k]) <= 1e-5 + 1e-5 * fabs(b[k])) && bad++ < 5)
                printf("FAIL batch_norm_blocked sync: rank %d %s[%lld]: %.8g, NCHW %.8g\n",
                       g->rank, what[i], (long long)k, a[k], b[k]);
        if (!n) bad++, printf("FAIL batch_norm_blocked sync: rank %d: no %s\n", g->rank, what[i]);
        free(a), free(b), tensor_release(blocked[i]), tensor_release(plain[i]);
    }
    tensor_release(x), tensor_release(w);
    int64_t total = bad;
    dist_all_reduce(g, &total, 1, DTYPE_INT64);
    if (g->rank == 0 && total == 0)
        printf("PASS batch_norm_blocked sync float32 equals NCHW on %d ranks\n", g->world);
    return bad;
}

int main(void) {
    if (dist_mpi_launched() != 1) {
        fprintf(stderr, "gradcheck_dist: run me with mpirun -np N\n");
        return 2;
    }
    DistGroup *g = dist_mpi_open();
    if (!g) {
        fprintf(stderr, "gradcheck_dist: %s\n", error_get());
        return 1;
    }
    int r = g->rank, bad = 0;
    uint64_t seed = 100 + (uint64_t)r;
    /* the sum's operands have one shape on every rank */
    Tensor *x4 = uniform(1, (int64_t[]){4}, seed, true);
    Tensor *w4 = uniform(1, (int64_t[]){4}, seed + 50, false);
    bad += check("all_reduce_sum", all_reduce_fn, 1, &x4, w4, g);

    /* BatchNorm2d over [2 + r, 3, 2, 2]: uneven rows per rank */
    Tensor *bn[3] = {uniform(4, (int64_t[]){2 + r, 3, 2, 2}, seed + 7, true),
                     uniform(1, (int64_t[]){3}, 11, true), uniform(1, (int64_t[]){3}, 12, true)};
    Tensor *bw = uniform(4, (int64_t[]){2 + r, 3, 2, 2}, seed + 9, false);
    bad += check("batch_norm_sync [N, C, H, W]", sync_bn_fn, 3, bn, bw, g);

    /* BatchNorm1d over [1 + r, 4]: rank 0 holds one row */
    Tensor *b1[3] = {uniform(2, (int64_t[]){1 + r, 4}, seed + 13, true),
                     uniform(1, (int64_t[]){4}, 14, true), uniform(1, (int64_t[]){4}, 15, true)};
    Tensor *b1w = uniform(2, (int64_t[]){1 + r, 4}, seed + 17, false);
    bad += check("batch_norm_sync [N, C]", sync_bn_fn, 3, b1, b1w, g);

    bad += blocked_sync_bn_matches(g, seed);

    tensor_release(x4), tensor_release(w4);
    tensor_release(bw), tensor_release(b1w);
    for (int i = 0; i < 3; i++) tensor_release(bn[i]), tensor_release(b1[i]);
    int64_t total = bad;
    dist_all_reduce(g, &total, 1, DTYPE_INT64);
    dist_mpi_close(g);
    return total == 0 ? 0 : 1;
}
