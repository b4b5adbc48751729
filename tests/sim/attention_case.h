/* attention_case.h - one causal attention problem for tests/sim's
 * attention tests: inputs, the kernels' outputs (each with a guard of
 * sentinels past its end), and the reference in double from the
 * definitions with the same dropout mask (keep), checked per output. */
#ifndef TRAIND_TESTS_SIM_ATTENTION_CASE_H
#define TRAIND_TESTS_SIM_ATTENTION_CASE_H

#include <functional>

#include "gpu/kernels/attention_dropout.cuh"
#include "tests/sim/test_common.h"

#define ATTENTION_GUARD 64
#define ATTENTION_SENTINEL 12345

template <typename T> struct AttentionRun {
    int64_t bh, t;
    int d;
    GpuAttentionArgs a;
    std::vector<T> q, k, v, go;                 /* inputs */
    std::vector<T> out, lse, delta, gq, gk, gv; /* the kernels' */
};

/* delta = rowsum(gout * out) in double, rounded: attention.cu's kernel. */
template <typename T> static void attention_delta(AttentionRun<T> &r) {
    for (int64_t row = 0; row < r.bh * r.t; row++) {
        double s = 0;
        for (int c = 0; c < r.d; c++)
            s += (double)r.go[row * r.d + c] * (double)r.out[row * r.d + c];
        r.delta[row] = (T)s;
    }
}

/* out, lse, gq, gk, gv of head h from the definitions, the backward from
 * the kernels' delta (as they get it: rounded), so the comparison measures
 * their own arithmetic, not delta's rounding, which ds = p (dp - delta)
 * magnifies where dp and delta nearly cancel. */
template <typename T>
static void attention_reference(const AttentionRun<T> &r, int64_t h,
                                std::vector<double> (&want)[5]) {
    const GpuAttentionArgs &a = r.a;
    int64_t t = r.t, off = h * t * r.d;
    int d = r.d;
    uint64_t base = dropout_base(a, h, t);
    std::vector<double> p((size_t)(t * t), 0.0), kf((size_t)(t * t), 0.0);
    auto dot = [&](const std::vector<T> &x, int64_t i, const std::vector<T> &y, int64_t j) {
        double s = 0;
        for (int c = 0; c < d; c++) s += (double)x[off + i * d + c] * (double)y[off + j * d + c];
        return s;
    };
    std::vector<double> &out = want[0], &gq = want[2], &gk = want[3], &gv = want[4];
    for (int64_t i = 0; i < t; i++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= i; j++) mx = fmax(mx, dot(r.q, i, r.k, j) * a.scale);
        for (int64_t j = 0; j <= i; j++) sum += exp(dot(r.q, i, r.k, j) * a.scale - mx);
        want[1][h * t + i] = mx + log(sum);
        for (int64_t j = 0; j <= i; j++) {
            p[i * t + j] = exp(dot(r.q, i, r.k, j) * a.scale - mx) / sum;
            kf[i * t + j] = keep<double>(a, base, t, i, j);
        }
        for (int c = 0; c < d; c++) {
            double o = 0;
            for (int64_t j = 0; j <= i; j++)
                o += p[i * t + j] * kf[i * t + j] * (double)r.v[off + j * d + c];
            out[off + i * d + c] = o;
        }
    }
    for (int64_t i = 0; i < t; i++)
        for (int64_t j = 0; j <= i; j++) {
            double pij = p[i * t + j], w = pij * kf[i * t + j];
            double ds = pij * (kf[i * t + j] * dot(r.go, i, r.v, j) - (double)r.delta[h * t + i]);
            for (int c = 0; c < d; c++) {
                gv[off + j * d + c] += w * (double)r.go[off + i * d + c];
                gq[off + i * d + c] += a.scale * ds * (double)r.k[off + j * d + c];
                gk[off + j * d + c] += a.scale * ds * (double)r.q[off + i * d + c];
            }
        }
}

/* max |got - want| over max(max |want|, 1): relative, except where the
 * values are small (T = 1 makes gq and gk zero; float32's dp against the
 * given delta leaves rounding noise, as on the GPU), where absolute. A
 * misplaced row, column, mask or factor errs by the values themselves.
 * Infinite when a value is NaN or the guard past n lost a sentinel. */
template <typename T>
static double attention_err(const std::vector<T> &got, const std::vector<double> &want) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < want.size(); i++) {
        err = fmax(err, fabs((double)got[i] - want[i]));
        if (got[i] != got[i]) err = INFINITY;
        scale = fmax(scale, fabs(want[i]));
    }
    for (size_t i = want.size(); i < got.size(); i++)
        if (got[i] != (T)ATTENTION_SENTINEL) err = INFINITY; /* written past the end */
    return err / (scale > 1 ? scale : 1);
}

/* The problem (bh heads of t rows of d), run by `run` (forward, then
 * delta, then backward), checked output by output within tol. */
template <typename T>
static void attention_case(const char *label, int64_t bh, int64_t t, int d, double dropout,
                           int64_t heads, double tol,
                           const std::function<void(AttentionRun<T> &)> &run) {
    int64_t n = bh * t * d;
    AttentionRun<T> r{bh, t, d,
                      GpuAttentionArgs{1.0 / sqrt((double)d), dropout, 7, 1000, heads,
                                       (uint64_t)(heads > 0 ? heads * t * t + 3 : 0), nullptr},
                      sim_as<T>(sim_values(n, 1 + t)), sim_as<T>(sim_values(n, 2 + d)),
                      sim_as<T>(sim_values(n, 3 + bh)), sim_as<T>(sim_values(n, 4)), {}, {}, {},
                      {}, {}, {}};
    for (auto *x : {&r.out, &r.gq, &r.gk, &r.gv})
        x->assign((size_t)(n + ATTENTION_GUARD), (T)ATTENTION_SENTINEL);
    for (auto *x : {&r.lse, &r.delta})
        x->assign((size_t)(bh * t + ATTENTION_GUARD), (T)ATTENTION_SENTINEL);
    run(r);
    std::vector<double> want[5] = {std::vector<double>((size_t)n),
                                   std::vector<double>((size_t)(bh * t)),
                                   std::vector<double>((size_t)n), std::vector<double>((size_t)n),
                                   std::vector<double>((size_t)n)};
    for (int64_t h = 0; h < bh; h++) attention_reference(r, h, want);
    const std::vector<T> *got[5] = {&r.out, &r.lse, &r.gq, &r.gk, &r.gv};
    const char *what[5] = {"out", "lse", "gq", "gk", "gv"};
    for (int i = 0; i < 5; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s bh %lld t %lld d %d p %g%s %s: %s", label, (long long)bh,
                 (long long)t, d, dropout, heads ? " per sample" : "",
                 sizeof(T) == 4 ? "f32" : "f64", what[i]);
        double e = attention_err(*got[i], want[i]);
        sim_verdict(e <= tol, name, e);
    }
}

#endif
