/* test_attention_tiled.cpp - gpu/kernels/attention_tiled.cu's register-
 * tiled causal attention, its own source run on the CPU by cuda_sim.h
 * (this machine may have no GPU; tests/unit/test_gpu.c checks the same
 * kernels on one against the CPU backend), against attention computed in
 * double from the definitions: forward (out, lse) and backward (gq, gk, gv)
 * with and without dropout, T of 1, below, at and past the 64-row tiles,
 * heads of 32 and 64, the per-sample dropout layout (heads > 0). Rows past
 * T must stay unwritten. Also the kernels' choice (attention_tiled_fits).
 *
 * Built with tests/sim (cuda_sim.h force-included, the kernel file
 * rewritten by rewrite.sed and linked in). Prints "sim_attention_tiled: N
 * passed, M failed"; exits 1 on a failure.
 */
#include "gpu/kernels/attention_dropout.cuh"
#include "gpu/kernels/attention_tiled.h"
#include "tests/sim/test_common.h"

typedef struct {
    std::vector<double> out, lse, gq, gk, gv;
} Reference;

/* Attention of head h in double from the definitions, the same dropout
 * mask (keep); the backward from `delta` as the kernels get it (float:
 * rowsum(gout * out) rounded), so the comparison measures the kernels'
 * own arithmetic, not delta's rounding, which ds = p (dp - delta) would
 * magnify where dp and delta nearly cancel. */
static void reference_head(const std::vector<float> &q, const std::vector<float> &k,
                           const std::vector<float> &v, const std::vector<float> &go,
                           const std::vector<float> &delta, int64_t h, int64_t t, int d,
                           const GpuAttentionArgs &a, Reference &r) {
    uint64_t base = dropout_base(a, h, t);
    int64_t off = h * t * d;
    std::vector<double> p(t * t, 0.0), kf(t * t, 0.0);
    auto dot = [&](const std::vector<float> &x, int64_t i, const std::vector<float> &y,
                   int64_t j) {
        double s = 0;
        for (int c = 0; c < d; c++) s += (double)x[off + i * d + c] * y[off + j * d + c];
        return s;
    };
    for (int64_t i = 0; i < t; i++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= i; j++) mx = fmax(mx, dot(q, i, k, j) * a.scale);
        for (int64_t j = 0; j <= i; j++) sum += exp(dot(q, i, k, j) * a.scale - mx);
        r.lse[h * t + i] = mx + log(sum);
        for (int64_t j = 0; j <= i; j++) {
            p[i * t + j] = exp(dot(q, i, k, j) * a.scale - mx) / sum;
            kf[i * t + j] = keep<double>(a, base, t, i, j);
        }
        for (int c = 0; c < d; c++) {
            double o = 0;
            for (int64_t j = 0; j <= i; j++) o += p[i * t + j] * kf[i * t + j] * v[off + j * d + c];
            r.out[off + i * d + c] = o;
        }
    }
    for (int64_t i = 0; i < t; i++)
        for (int64_t j = 0; j <= i; j++) {
            double pij = p[i * t + j], w = pij * kf[i * t + j];
            double ds = pij * (kf[i * t + j] * dot(go, i, v, j) - delta[h * t + i]);
            for (int c = 0; c < d; c++) {
                r.gv[off + j * d + c] += w * go[off + i * d + c];
                r.gq[off + i * d + c] += a.scale * ds * k[off + j * d + c];
                r.gk[off + j * d + c] += a.scale * ds * q[off + i * d + c];
            }
        }
}

/* max |got - want| over max(max |want|, 1): relative, except where the
 * values are small (T = 1 makes gq and gk zero; float32's dp against the
 * given delta leaves rounding noise, as on the GPU), where absolute. A
 * misplaced row, column, mask or factor errs by the values themselves. */
static double rel_err(const std::vector<float> &got, const std::vector<double> &want) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < want.size(); i++) {
        err = fmax(err, fabs((double)got[i] - want[i]));
        if (std::isnan(got[i])) err = INFINITY;
        scale = fmax(scale, fabs(want[i]));
    }
    return err / (scale > 1 ? scale : 1);
}

/* Whether every value past the first n (the tensor's end) kept its sentinel. */
static bool guard_kept(const std::vector<float> &x, size_t n) {
    for (size_t i = n; i < x.size(); i++)
        if (x[i] != 12345.0f) return false;
    return true;
}

static void run_case(int64_t bh, int64_t t, int d, double dropout, int64_t heads) {
    size_t n = (size_t)(bh * t * d), guard = 64;
    std::vector<float> q = sim_as<float>(sim_values((int64_t)n, 1 + t));
    std::vector<float> k = sim_as<float>(sim_values((int64_t)n, 2 + d));
    std::vector<float> v = sim_as<float>(sim_values((int64_t)n, 3 + bh));
    std::vector<float> go = sim_as<float>(sim_values((int64_t)n, 4));
    GpuAttentionArgs a = {1.0 / sqrt((double)d), dropout, 7, 1000, heads,
                          (uint64_t)(heads > 0 ? heads * t * t + 3 : 0), NULL};
    std::vector<float> out(n + guard, 12345.0f), lse(bh * t + guard, 12345.0f);
    std::vector<float> gq(n + guard, 12345.0f), gk(n + guard, 12345.0f), gv(n + guard, 12345.0f);
    const void *ptrs[] = {q.data(), k.data(), v.data(), out.data(), lse.data()};
    char name[96];
    snprintf(name, sizeof name, "attention_tiled bh %lld t %lld d %d p %g heads %lld",
             (long long)bh, (long long)t, d, dropout, (long long)heads);
    if (!attention_tiled_fits(GPU_F32, d, 5, ptrs)) {
        sim_verdict(false, name, 0); /* not taken by the tiles */
        return;
    }
    attention_tiled_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), bh, t, d, a);
    std::vector<float> delta(bh * t); /* attention.cu's delta kernel: in double, then float */
    for (int64_t r = 0; r < bh * t; r++) {
        double s = 0;
        for (int c = 0; c < d; c++) s += (double)go[r * d + c] * (double)out[r * d + c];
        delta[r] = (float)s;
    }
    attention_tiled_backward(q.data(), k.data(), v.data(), lse.data(), go.data(), delta.data(),
                             gq.data(), gk.data(), gv.data(), bh, t, d, a);
    Reference r = {std::vector<double>(n), std::vector<double>(bh * t), std::vector<double>(n),
                   std::vector<double>(n), std::vector<double>(n)};
    for (int64_t h = 0; h < bh; h++) reference_head(q, k, v, go, delta, h, t, d, a, r);
    double e[5] = {rel_err(out, r.out), rel_err(lse, r.lse), rel_err(gq, r.gq),
                   rel_err(gk, r.gk), rel_err(gv, r.gv)};
    const char *what[6] = {"out", "lse", "gq", "gk", "gv", "nothing past the ends"};
    bool kept = guard_kept(out, n) && guard_kept(lse, bh * t) && guard_kept(gq, n) &&
                guard_kept(gk, n) && guard_kept(gv, n);
    for (int i = 0; i < 6; i++) {
        char full[160];
        snprintf(full, sizeof full, "%s: %s", name, what[i]);
        sim_verdict(i < 5 ? e[i] <= 2e-5 : kept, full, i < 5 ? e[i] : 0);
    }
}

/* The tiles take float32 heads of 32 and 64 on 16-byte pointers while on. */
static void check_choice(void) {
    alignas(16) static float buf[8];
    const void *aligned[] = {buf, buf + 4}, *odd[] = {buf, buf + 1};
    sim_verdict(attention_tiled_fits(GPU_F32, 64, 2, aligned), "tiles take d 64", 0);
    sim_verdict(attention_tiled_fits(GPU_F32, 32, 2, aligned), "tiles take d 32", 0);
    sim_verdict(!attention_tiled_fits(GPU_F32, 48, 2, aligned), "tiles refuse d 48", 0);
    sim_verdict(!attention_tiled_fits(GPU_F64, 64, 2, aligned), "tiles refuse float64", 0);
    sim_verdict(!attention_tiled_fits(GPU_F32, 64, 2, odd), "tiles refuse a pointer off 16 B",
                0);
    gpu_attention_tiles_set_enabled(false);
    sim_verdict(!attention_tiled_fits(GPU_F32, 64, 2, aligned), "tiles refuse while off", 0);
    gpu_attention_tiles_set_enabled(true);
}

int main(void) {
    check_choice();
    static const struct {
        int64_t bh, t;
        int d;
        double p;
        int64_t heads;
    } cases[] = {
        {2, 1, 64, 0, 0},    {3, 17, 32, 0, 0},    {2, 64, 64, 0, 0},  {1, 65, 64, 0, 0},
        {2, 130, 64, 0.25, 0}, {1, 200, 32, 0.1, 0}, {4, 70, 64, 0.3, 2}, {2, 128, 32, 0, 0},
    };
    for (const auto &c : cases) run_case(c.bh, c.t, c.d, c.p, c.heads);
    return sim_summary("attention_tiled");
}
