/* test_attention_tiled.cpp - gpu/kernels/attention_tiled.cu's register-
 * tiled causal attention, its own source run on the CPU by tests/sim
 * (tests/unit/test_gpu_ops.c checks the same kernels on a GPU against the CPU
 * backend), against attention in double (attention_case.h): forward (out,
 * lse) and backward (gq, gk, gv) with and without dropout, T of 1, below,
 * at and past the 64-row tiles, heads of 32 and 64, the per-sample
 * dropout layout; nothing written past a tensor. Also which problems the
 * tiles take (attention_tiled_fits).
 *
 * Prints "sim_attention_tiled: N passed, M failed"; exits 1 on a failure.
 */
#include "gpu/kernels/attention_tiled.h"
#include "tests/sim/attention_case.h"

/* Forward, delta as attention.cu's kernel makes it, backward. */
static void run_tiles(AttentionRun<float> &r) {
    attention_tiled_forward(r.q.data(), r.k.data(), r.v.data(), r.out.data(), r.lse.data(), r.bh,
                            r.t, r.d, r.a);
    attention_delta(r);
    attention_tiled_backward(r.q.data(), r.k.data(), r.v.data(), r.lse.data(), r.go.data(),
                             r.delta.data(), r.gq.data(), r.gk.data(), r.gv.data(), r.bh, r.t,
                             r.d, r.a);
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
        {2, 1, 64, 0, 0},      {3, 17, 32, 0, 0},    {2, 64, 64, 0, 0},   {1, 65, 64, 0, 0},
        {2, 130, 64, 0.25, 0}, {1, 200, 32, 0.1, 0}, {4, 70, 64, 0.3, 2}, {2, 128, 32, 0, 0},
    };
    for (const auto &c : cases)
        attention_case<float>("tiles", c.bh, c.t, c.d, c.p, c.heads, 2e-5, run_tiles);
    return sim_summary("attention_tiled");
}
