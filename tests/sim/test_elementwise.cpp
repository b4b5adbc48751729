/* test_elementwise.cpp - gpu/kernels/elementwise.cu's BatchNorm affine
 * pass (channel_affine, which no GPU has run) on the CPU by tests/sim,
 * against core/cpu/channel.c's arithmetic written out: out = a[ch] * u +
 * b[ch] * (v - m[ch]) + d[ch], d absent adding 0 (so -0 becomes +0 as on
 * the CPU), bit for bit, float32 and float64, with and without v and d.
 *
 * Prints "sim_elementwise: N passed, M failed"; exits 1 on a failure.
 */
#include <string.h>

#include "tests/sim/test_common.h"

template <typename T> static void affine_case(bool with_v, bool with_d) {
    int64_t n = 3, c = 5, s = 333, total = n * c * s;
    std::vector<T> u = sim_as<T>(sim_values(total, 1)), v = sim_as<T>(sim_values(total, 2));
    std::vector<T> a = sim_as<T>(sim_values(c, 3)), m = sim_as<T>(sim_values(c, 4));
    std::vector<T> b = sim_as<T>(sim_values(c, 5)), d = sim_as<T>(sim_values(c, 6));
    u[7] = 0, a[0] = -1; /* a * u = -0 at position 7 (channel 0) */
    std::vector<T> out((size_t)total, (T)NAN), want((size_t)total);
    for (int64_t i = 0; i < total; i++) {
        int64_t ch = i / s % c;
        T kd = with_d ? d[ch] : (T)0;
        want[i] = with_v ? a[ch] * u[i] + b[ch] * (v[i] - m[ch]) + kd : a[ch] * u[i] + kd;
    }
    gpu_launch_channel_affine(sim_dtype<T>(), u.data(), a.data(), with_v ? v.data() : nullptr,
                              with_v ? m.data() : nullptr, with_v ? b.data() : nullptr,
                              with_d ? d.data() : nullptr, out.data(), n, c, s);
    int64_t differ = 0;
    for (int64_t i = 0; i < total; i++) differ += memcmp(&out[i], &want[i], sizeof(T)) != 0;
    char name[96];
    snprintf(name, sizeof name, "channel_affine%s%s %s (values differing)",
             with_v ? " + b (v - m)" : "", with_d ? " + d" : "", sizeof(T) == 4 ? "f32" : "f64");
    sim_verdict(differ == 0, name, (double)differ);
}

int main(void) {
    for (int k = 0; k < 4; k++) {
        affine_case<float>(k & 1, k & 2);
        affine_case<double>(k & 1, k & 2);
    }
    return sim_summary("elementwise");
}
