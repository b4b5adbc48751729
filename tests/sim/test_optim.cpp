/* test_optim.cpp - gpu/kernels/optim.cu's fused SGD and Adam/AdamW on the
 * CPU by tests/sim, reading each parameter's numbers from its own array
 * (device memory on a GPU: the update a CUDA graph replays, which no GPU
 * has run), against core/cpu/optim.c's arithmetic written out, bit for
 * bit: 31 parameters (more than one launch's list of 24), one of them over
 * two chunks of 65536 and a short third, an empty one skipped; SGD's first
 * and later steps, Nesterov with weight decay, no momentum; Adam, AdamW
 * and amsgrad with a NaN; float32 and float64.
 *
 * Prints "sim_optim: N passed, M failed"; exits 1 on a failure.
 */
#include <string.h>

#include "core/optim/update_consts.h"
#include "tests/sim/test_common.h"

static const int64_t sizes[] = {131077, 0, 1, 3, 64, 255, 256, 257, 1000, 5, 7, 9, 11, 13, 15, 17,
                                19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43, 45, 47};
static const int count = (int)(sizeof sizes / sizeof *sizes);

template <typename T> struct Params {
    std::vector<std::vector<T>> p, g, s[3];
    std::vector<std::vector<double>> consts;
};

template <typename T> static Params<T> make(int states, bool nan) {
    Params<T> x;
    for (int k = 0; k < count; k++) {
        x.p.push_back(sim_as<T>(sim_values(sizes[k], 10 + k)));
        x.g.push_back(sim_as<T>(sim_values(sizes[k], 50 + k)));
        for (int s = 0; s < 3; s++)
            x.s[s].push_back(s < states ? sim_as<T>(sim_values(sizes[k], 90 + k + 40 * s, 0.1))
                                        : std::vector<T>());
    }
    if (nan) x.g[3][1] = (T)NAN;
    return x;
}

template <typename T> static std::vector<GpuOptimTensor> list(Params<T> &x) {
    std::vector<GpuOptimTensor> l((size_t)count);
    for (int k = 0; k < count; k++) {
        l[k] = GpuOptimTensor{x.p[k].data(), x.g[k].data(), {nullptr, nullptr, nullptr},
                              sizes[k], x.consts[k].data()};
        for (int s = 0; s < 3; s++) l[k].state[s] = x.s[s][k].empty() ? nullptr : x.s[s][k].data();
    }
    return l;
}

/* Whether every parameter and state of a equals b's, bit for bit. */
template <typename T> static int64_t differ(const Params<T> &a, const Params<T> &b) {
    int64_t n = 0;
    for (int k = 0; k < count; k++)
        for (int64_t i = 0; i < sizes[k]; i++) {
            n += memcmp(&a.p[k][i], &b.p[k][i], sizeof(T)) != 0;
            for (int s = 0; s < 3; s++)
                if (!a.s[s][k].empty()) n += memcmp(&a.s[s][k][i], &b.s[s][k][i], sizeof(T)) != 0;
        }
    return n;
}

/* core/cpu/optim.c's SGD on x[k]. */
template <typename T> static void sgd_reference(Params<T> &x, int k) {
    const double *c = x.consts[k].data();
    const T wd = (T)c[SGD_WEIGHT_DECAY], mom = (T)c[SGD_MOMENTUM];
    const T damp = (T)c[SGD_ONE_MINUS_DAMPENING], neg_lr = (T)c[SGD_NEG_LR];
    T *p = x.p[k].data(), *buf = x.s[0][k].empty() ? nullptr : x.s[0][k].data();
    const T *g = x.g[k].data();
    bool use_wd = c[SGD_WEIGHT_DECAY] != 0, use_mom = c[SGD_MOMENTUM] != 0 && buf;
    for (int64_t i = 0; i < sizes[k]; i++) {
        T d = g[i];
        if (use_wd) d = d + wd * p[i];
        if (use_mom) {
            T b = c[SGD_FIRST] != 0 ? d : buf[i] * mom + damp * d;
            buf[i] = b;
            d = c[SGD_NESTEROV] != 0 ? d + mom * b : b;
        }
        p[i] = p[i] + neg_lr * d;
    }
}

/* core/cpu/optim.c's Adam/AdamW on x[k]. */
template <typename T> static void adam_reference(Params<T> &x, int k) {
    const double *c = x.consts[k].data();
    const T neg_step = (T)c[ADAM_NEG_STEP_SIZE], bc2_sqrt = (T)c[ADAM_BC2_SQRT];
    const T b1 = (T)c[ADAM_BETA1], omb1 = (T)c[ADAM_ONE_MINUS_BETA1];
    const T b2 = (T)c[ADAM_BETA2], omb2 = (T)c[ADAM_ONE_MINUS_BETA2];
    const T wd = (T)c[ADAM_WEIGHT_DECAY], decay = (T)c[ADAM_DECAY], e = (T)c[ADAM_EPS];
    T *p = x.p[k].data(), *m = x.s[0][k].data(), *v = x.s[1][k].data();
    T *vmax = x.s[2][k].empty() ? nullptr : x.s[2][k].data();
    const T *g = x.g[k].data();
    for (int64_t i = 0; i < sizes[k]; i++) {
        T gi = g[i];
        if (c[ADAM_DECAY] != 1) p[i] = p[i] * decay;
        if (c[ADAM_WEIGHT_DECAY] != 0) gi = gi + wd * p[i];
        T mi = m[i] * b1 + omb1 * gi, vi = v[i] * b2 + omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (vmax) {
            T mx = vmax[i];
            mx = (mx != mx || vi != vi) ? (T)NAN : (mx < vi ? vi : mx);
            vmax[i] = mx;
            vi = mx;
        }
        T denom = (T)sqrt(vi) / bc2_sqrt + e;
        p[i] = p[i] + neg_step * mi / denom;
    }
}

/* SGD's numbers for parameter k: lr 0.1 (halved for odd k: groups). */
static std::vector<double> sgd_numbers(int k, double mom, double wd, bool nesterov, bool first) {
    double lr = k % 2 ? 0.05 : 0.1;
    std::vector<double> c(SGD_CONSTS);
    c[SGD_WEIGHT_DECAY] = wd, c[SGD_MOMENTUM] = mom, c[SGD_ONE_MINUS_DAMPENING] = 1 - 0.1;
    c[SGD_NEG_LR] = -lr, c[SGD_NESTEROV] = nesterov, c[SGD_FIRST] = first;
    return c;
}

/* The kernel's update of `got` (its numbers set) against the reference's
 * of a copy, parameter by parameter. */
template <typename T>
static void run(const char *optimizer, const char *what, Params<T> &got,
                void (*reference)(Params<T> &, int),
                void (*launch)(int, int, const GpuOptimTensor *)) {
    Params<T> want = got;
    for (int k = 0; k < count; k++) reference(want, k);
    std::vector<GpuOptimTensor> l = list(got);
    launch(sim_dtype<T>(), count, l.data());
    char name[96];
    snprintf(name, sizeof name, "%s %s %s (values differing)", optimizer, what,
             sizeof(T) == 4 ? "f32" : "f64");
    int64_t n = differ(got, want);
    sim_verdict(n == 0, name, (double)n);
}

template <typename T>
static void sgd_case(const char *what, double mom, double wd, bool nesterov, bool first) {
    Params<T> got = make<T>(mom != 0 ? 1 : 0, false);
    for (int k = 0; k < count; k++) got.consts.push_back(sgd_numbers(k, mom, wd, nesterov, first));
    run<T>("sgd", what, got, sgd_reference<T>, gpu_launch_sgd);
}

template <typename T> static void adam_case(const char *what, bool decoupled, bool amsgrad) {
    Params<T> got = make<T>(amsgrad ? 3 : 2, amsgrad);
    for (int k = 0; k < count; k++) {
        double lr = k % 2 ? 1e-3 : 3e-3, step = 5, wd = 0.01;
        std::vector<double> c(ADAM_CONSTS);
        c[ADAM_BETA1] = 0.9, c[ADAM_ONE_MINUS_BETA1] = 1 - 0.9;
        c[ADAM_BETA2] = 0.999, c[ADAM_ONE_MINUS_BETA2] = 1 - 0.999;
        c[ADAM_WEIGHT_DECAY] = decoupled ? 0 : wd, c[ADAM_DECAY] = decoupled ? 1 - lr * wd : 1;
        c[ADAM_EPS] = 1e-8, c[ADAM_NEG_STEP_SIZE] = -(lr / (1 - pow(0.9, step)));
        c[ADAM_BC2_SQRT] = sqrt(1 - pow(0.999, step));
        got.consts.push_back(c);
    }
    run<T>("adam", what, got, adam_reference<T>, gpu_launch_adam);
}

template <typename T> static void cases(void) {
    sgd_case<T>("momentum, first step", 0.9, 0, false, true);
    sgd_case<T>("momentum, later step", 0.9, 0, false, false);
    sgd_case<T>("nesterov, weight decay", 0.9, 1e-4, true, false);
    sgd_case<T>("no momentum, weight decay", 0, 1e-4, false, false);
    adam_case<T>("(coupled weight decay)", false, false);
    adam_case<T>("W (decoupled)", true, false);
    adam_case<T>("amsgrad, a NaN gradient", false, true);
}

int main(void) {
    cases<float>();
    cases<double>();
    return sim_summary("optim");
}
