/* gemm_cpu.c - the CPU's float32 matrix products of the models traind
 * trains, through OpenBLAS and through oneDNN's matmul, side by side, for
 * `make bench-gemm` (part of `make bench`): the figures behind gemm.c's
 * choice of library per product, and a check of that choice.
 *
 * Each product is a Linear layer's pass as matmul.c hands it to the
 * backend: forward x Wᵀ (+ bias: beta 1), weight gradient gyᵀ x, input
 * gradient gy W; the MNIST MLP's and CNN's at batch 64, ResNet-18's head
 * at 256, GPT-2 small's at 1024 tokens; then a grid of layers around them
 * ("grid ROWS IN OUT": rows 1 to 1024, inputs 32 to 2048, outputs 10 to
 * 2048), 330 products in all, to see where the libraries cross. Random
 * operands; each library warmed up, then timed in rounds of at least
 * 0.1 s, the best round kept. A JSON line per product: both GFLOP/s, the
 * ratio, the library cpu_gemm_library picks and whether it is the faster
 * one, and the largest difference between the two results relative to
 * the largest value.
 *
 * OpenBLAS's kernels and OpenMP's waiting as traind sets them
 * (server/main.c; the make target sets OMP_WAIT_POLICY and GOMP_SPINCOUNT).
 *
 *   build/bench_gemm_cpu [filter]   (products whose name contains filter)
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "core/cpu/dnnl.h"
#include "core/error.h"

#define COUNT(a) (sizeof a / sizeof *a)

typedef struct {
    char name[64];
    bool trans_a, trans_b;
    int64_t m, n, k;
    double beta;
} Product;

/* A Linear layer [out, in] over `rows` inputs: its three products. */
#define LINEAR(NAME, ROWS, IN, OUT)                                                                \
    {NAME " forward", false, true, ROWS, OUT, IN, 1},                                              \
        {NAME " weight_grad", true, false, OUT, IN, ROWS, 0},                                      \
        {NAME " input_grad", false, false, ROWS, IN, OUT, 0}

static const Product products[] = {
    LINEAR("mlp fc1", 64, 784, 256),       LINEAR("mlp fc2", 64, 256, 10),
    LINEAR("cnn fc1", 64, 3136, 128),      LINEAR("cnn fc2", 64, 128, 10),
    LINEAR("resnet18 fc", 256, 512, 10),   LINEAR("gpt2 qkv", 1024, 768, 2304),
    LINEAR("gpt2 attn_proj", 1024, 768, 768), LINEAR("gpt2 mlp_fc", 1024, 768, 3072),
    LINEAR("gpt2 mlp_proj", 1024, 3072, 768), LINEAR("gpt2 head", 1024, 768, 50304),
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *floats(int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) {
        fprintf(stderr, "bench_gemm_cpu: out of memory for %lld floats\n", (long long)n);
        exit(1);
    }
    return x;
}

static float *random_floats(int64_t n, unsigned *seed) {
    float *x = floats(n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)rand_r(seed) / (float)RAND_MAX - 0.5f;
    return x;
}

static float *copy_floats(const float *from, int64_t n) {
    return memcpy(floats(n), from, (size_t)n * sizeof *from);
}

typedef struct {
    const Product *p;
    const float *a, *b;
    float *c;
} Operands;

static int run_once(const Operands *o, bool dnnl) {
    const Product *p = o->p;
    int64_t lda = p->trans_a ? p->m : p->k, ldb = p->trans_b ? p->k : p->n;
    if (!dnnl) {
        cblas_sgemm(CblasRowMajor, p->trans_a ? CblasTrans : CblasNoTrans,
                    p->trans_b ? CblasTrans : CblasNoTrans, (blasint)p->m, (blasint)p->n,
                    (blasint)p->k, 1.0f, o->a, (blasint)lda, o->b, (blasint)ldb,
                    (float)p->beta, o->c, (blasint)p->n);
        return 0;
    }
    return cpu_gemm_dnnl(dnnl_f32, p->trans_a, p->trans_b, p->m, p->n, p->k, 1.0, o->a, lda,
                         o->b, ldb, p->beta, o->c, p->n);
}

/* Seconds a product takes: the best of three rounds of >= 0.1 s each. */
static double seconds(const Operands *o, bool dnnl) {
    if (run_once(o, dnnl) != 0) {
        fprintf(stderr, "bench_gemm_cpu: %s: %s\n", o->p->name, error_get());
        exit(1);
    }
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        int reps = 0;
        double t0 = now(), t;
        do {
            run_once(o, dnnl);
            reps++;
        } while ((t = now() - t0) < 0.1);
        if (t / reps < best) best = t / reps;
    }
    return best;
}

/* max |x - y| over max |x|: how far the two libraries' results part. */
static double relative_difference(const float *x, const float *y, int64_t n) {
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] > y[i] ? x[i] - y[i] : y[i] - x[i], v = x[i] < 0 ? -x[i] : x[i];
        if (d > diff) diff = d;
        if (v > scale) scale = v;
    }
    return scale > 0 ? diff / scale : diff;
}

static void bench(const Product *p) {
    unsigned seed = 1;
    int64_t cn = p->m * p->n;
    float *a = random_floats(p->m * p->k, &seed), *b = random_floats(p->k * p->n, &seed);
    float *c0 = random_floats(cn, &seed), *c1 = copy_floats(c0, cn), *c = copy_floats(c0, cn);
    Operands o = {p, a, b, c0};
    run_once(&o, false); /* once each from the same C, to compare */
    o.c = c1;
    run_once(&o, true);
    double diff = relative_difference(c0, c1, cn);
    o.c = c; /* the timed runs: beta 1 adds to the same random C each time */
    double t_blas = seconds(&o, false), t_dnnl = seconds(&o, true);
    double flops = 2.0 * (double)p->m * (double)p->n * (double)p->k;
    bool picks_dnnl =
        cpu_gemm_library(DTYPE_FLOAT32, p->m, p->n, p->k, 1, p->beta) == CPU_GEMM_DNNL;
    bool dnnl_faster = t_dnnl < t_blas;
    printf("{\"bench\": \"gemm_cpu\", \"product\": \"%s\", \"trans_a\": %s, \"trans_b\": %s, "
           "\"m\": %lld, \"n\": %lld, \"k\": %lld, \"beta\": %g, \"openblas_gflops\": %.1f, "
           "\"onednn_gflops\": %.1f, \"onednn_over_openblas\": %.3f, \"picks\": \"%s\", "
           "\"picks_faster\": %s, \"relative_difference\": %.2e}\n",
           p->name, p->trans_a ? "true" : "false", p->trans_b ? "true" : "false",
           (long long)p->m, (long long)p->n, (long long)p->k, p->beta, flops / t_blas * 1e-9,
           flops / t_dnnl * 1e-9, t_blas / t_dnnl, picks_dnnl ? "onednn" : "openblas",
           picks_dnnl == dnnl_faster ? "true" : "false", diff);
    fflush(stdout);
    free(a), free(b), free(c0), free(c1), free(c);
}

static void bench_grid(const char *filter) {
    static const int rows[] = {1, 16, 64, 256, 1024}, outs[] = {10, 32, 128, 512, 2048};
    static const int ins[] = {32, 128, 512, 2048};
    static const char *passes[] = {"forward", "weight_grad", "input_grad"};
    for (size_t r = 0; r < COUNT(rows); r++)
        for (size_t o = 0; o < COUNT(outs); o++)
            for (size_t i = 0; i < COUNT(ins); i++) {
                Product layer[] = {LINEAR("", rows[r], ins[i], outs[o])};
                for (int pass = 0; pass < 3; pass++) {
                    snprintf(layer[pass].name, sizeof layer[pass].name, "grid %d %d %d %s",
                             rows[r], ins[i], outs[o], passes[pass]);
                    if (strstr(layer[pass].name, filter)) bench(&layer[pass]);
                }
            }
}

int main(int argc, char **argv) {
    /* OpenBLAS's kernels as traind picks them (server/main.c) */
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : cpu_blas_better_core();
    if (core && setenv("OPENBLAS_CORETYPE", core, 1) == 0) execv("/proc/self/exe", argv);
    const char *filter = argc > 1 ? argv[1] : "";
    printf("{\"bench\": \"gemm_cpu_machine\", \"threads\": %d, \"openblas_core\": \"%s\"}\n",
           omp_get_max_threads(), cpu_blas_core());
    for (size_t i = 0; i < COUNT(products); i++)
        if (strstr(products[i].name, filter)) bench(&products[i]);
    bench_grid(filter);
    return 0;
}
