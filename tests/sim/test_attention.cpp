/* test_attention.cpp - gpu/kernels/attention.cu's launchers on the CPU by
 * tests/sim, against attention in double (attention_case.h): the warp-
 * per-row kernels for every head size and dtype they take (heads of 1,
 * 16, 100 and 128, float64's 128 past 48 KiB of shared memory, and with
 * the tiles off every head), and the dispatch to attention_tiled.cu for
 * float32 heads of 32 and 64, and a forward by one family with the
 * backward by the other; forward, delta and backward, with and without
 * dropout.
 *
 * Prints "sim_attention: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/attention_case.h"

template <typename T> static void run_launchers(AttentionRun<T> &r) {
    int dt = sim_dtype<T>();
    gpu_launch_causal_attention(dt, r.q.data(), r.k.data(), r.v.data(), r.out.data(),
                                r.lse.data(), r.bh, r.t, r.d, r.a);
    gpu_launch_causal_attention_backward(dt, r.q.data(), r.k.data(), r.v.data(), r.out.data(),
                                         r.lse.data(), r.go.data(), r.delta.data(), r.gq.data(),
                                         r.gk.data(), r.gv.data(), r.bh, r.t, r.d, r.a);
}

/* Forward with the tiles on, backward with them off, or the other way
 * round: where an output's alignment sends one pass to each family. */
static void run_mixed(AttentionRun<float> &r, bool tiled_forward) {
    gpu_attention_tiles_set_enabled(tiled_forward);
    gpu_launch_causal_attention(GPU_F32, r.q.data(), r.k.data(), r.v.data(), r.out.data(),
                                r.lse.data(), r.bh, r.t, r.d, r.a);
    gpu_attention_tiles_set_enabled(!tiled_forward);
    gpu_launch_causal_attention_backward(GPU_F32, r.q.data(), r.k.data(), r.v.data(),
                                         r.out.data(), r.lse.data(), r.go.data(), r.delta.data(),
                                         r.gq.data(), r.gk.data(), r.gv.data(), r.bh, r.t, r.d,
                                         r.a);
    gpu_attention_tiles_set_enabled(true);
}

/* (The warp-per-row kernels' shuffles cost the simulator dear: small T.) */
template <typename T> static void cases(const char *label, double tol) {
    static const struct {
        int64_t bh, t;
        int d;
        double p;
    } shapes[] = {{1, 1, 8, 0},    {2, 17, 16, 0.25}, {1, 33, 64, 0},  {1, 20, 100, 0.25},
                  {1, 18, 128, 0}, {3, 5, 1, 0},      {1, 40, 32, 0.3}};
    for (const auto &s : shapes)
        attention_case<T>(label, s.bh, s.t, s.d, s.p, 0, tol, run_launchers<T>);
}

/* How many passes the tiles ran during `what`: `want` of them. */
static void expect_tiles(const char *what, uint64_t before, uint64_t want) {
    char name[96];
    snprintf(name, sizeof name, "%s: %llu passes by the tiles", what, (unsigned long long)want);
    sim_verdict(gpu_attention_tiles_runs() - before == want, name,
                (double)(gpu_attention_tiles_runs() - before));
}

int main(void) {
    uint64_t runs = gpu_attention_tiles_runs();
    cases<float>("launchers", 2e-5); /* heads of 32 and 64: forward and backward each */
    expect_tiles("float32 launchers", runs, 4);
    runs = gpu_attention_tiles_runs();
    cases<double>("launchers", 1e-11);
    gpu_attention_tiles_set_enabled(false); /* every head to the warp-per-row kernels */
    attention_case<float>("warp rows", 1, 40, 64, 0.25, 0, 2e-5, run_launchers<float>);
    attention_case<float>("warp rows", 2, 33, 32, 0, 0, 2e-5, run_launchers<float>);
    gpu_attention_tiles_set_enabled(true);
    expect_tiles("float64, and float32 with the tiles off", runs, 0);
    runs = gpu_attention_tiles_runs();
    attention_case<float>("tiled forward, warp-row backward", 1, 70, 64, 0.2, 0, 2e-5,
                          [](AttentionRun<float> &r) { run_mixed(r, true); });
    expect_tiles("tiled forward", runs, 1);
    runs = gpu_attention_tiles_runs();
    attention_case<float>("warp-row forward, tiled backward", 1, 70, 64, 0.2, 0, 2e-5,
                          [](AttentionRun<float> &r) { run_mixed(r, false); });
    expect_tiles("tiled backward", runs, 1);
    return sim_summary("attention");
}
