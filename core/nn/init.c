/* init.c - PyTorch's default parameter initialisation, from a seeded Rng.
 *
 * Linear and Conv2d reset_parameters() call
 *   kaiming_uniform_(weight, a=sqrt(5))          bound = gain * sqrt(3 / fan_in)
 *                                                gain  = sqrt(2 / (1 + a^2))
 * which with a = sqrt(5) is exactly bound = 1 / sqrt(fan_in), and draw the
 * bias from uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)). The distributions are
 * torch's; the numbers are not (torch uses mt19937, we use Philox), so the
 * promise is "same seed, same weights" within traind. Values are drawn in
 * row-major order, weight before bias, each from rng_uniform (rng_normal
 * for the normal draws torchvision's ResNet initialises its convolutions
 * with).
 */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/nn/module.h"

#define INIT_PARALLEL_MIN 65536 /* values; fewer are drawn on one thread */

int64_t nn_init_fan_in(const Tensor *weight) {
    if (weight->ndim < 2) return weight->ndim == 1 ? weight->shape[0] : 1;
    int64_t fan_in = weight->shape[1];
    for (int i = 2; i < weight->ndim; i++) fan_in *= weight->shape[i];
    return fan_in;
}

/* numel(t) numbers drawn(rng, a, b) in row-major order, copied into t
 * through a host tensor so that this works on any device and dtype. Each
 * draw takes `words` of the stream, so value i is drawn from offset
 * start + words i on whichever thread: the numbers of one thread drawing
 * in turn, on all of them (GPT-2 small's 124M normals took 10 s on one). */
static int init_draw(Tensor *t, Rng *rng, const char *what, double (*draw)(Rng *, double, double),
                     int words, double a, double b) {
    if (!t) return -1;
    if (!rng) return error_set("init.%s: no Rng to draw from", what);
    int64_t n = tensor_numel(t);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return error_set("init.%s: out of memory for %lld values", what, (long long)n);
    const Rng start = *rng;
#pragma omp parallel for schedule(static) if (n >= INIT_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        Rng at = {.seed = start.seed, .offset = start.offset + (uint64_t)words * (uint64_t)i};
        v[i] = draw(&at, a, b);
    }
    rng->offset = start.offset + (uint64_t)words * (uint64_t)n;
    Tensor *host = tensor_from_doubles(v, t->ndim, t->shape, DTYPE_FLOAT64);
    free(v);
    int rc = host ? tensor_copy_(t, host) : -1;
    tensor_release(host);
    return rc;
}

static double normal_draw(Rng *rng, double mean, double std) {
    return mean + std * rng_normal(rng);
}

int nn_init_uniform_(Tensor *t, double lo, double hi, Rng *rng) {
    return init_draw(t, rng, "uniform_", rng_uniform_range, RNG_UNIFORM_WORDS, lo, hi);
}

int nn_init_normal_(Tensor *t, double mean, double std, Rng *rng) {
    return init_draw(t, rng, "normal_", normal_draw, RNG_NORMAL_WORDS, mean, std);
}

int nn_init_kaiming_uniform_(Tensor *t, double a, Rng *rng) {
    if (!t) return -1;
    int64_t fan_in = nn_init_fan_in(t);
    if (fan_in <= 0) return error_set("init.kaiming_uniform_: fan_in is 0 for an empty tensor");
    double gain = sqrt(2.0 / (1.0 + a * a));
    double bound = gain * sqrt(3.0 / (double)fan_in);
    return nn_init_uniform_(t, -bound, bound, rng);
}

int nn_init_linear_like(Tensor *weight, Tensor *bias, Rng *rng) {
    if (nn_init_kaiming_uniform_(weight, sqrt(5.0), rng) != 0) return -1;
    if (!bias) return 0;
    double bound = 1.0 / sqrt((double)nn_init_fan_in(weight));
    return nn_init_uniform_(bias, -bound, bound, rng);
}

int nn_init_kaiming_normal_fan_out_(Tensor *t, Rng *rng) {
    if (!t) return -1;
    int64_t fan_out = t->ndim >= 1 ? t->shape[0] : 1;
    for (int i = 2; i < t->ndim; i++) fan_out *= t->shape[i];
    if (fan_out <= 0) return error_set("init.kaiming_normal_: fan_out is 0 for an empty tensor");
    return nn_init_normal_(t, 0.0, sqrt(2.0 / (double)fan_out), rng);
}
