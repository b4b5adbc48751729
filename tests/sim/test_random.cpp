/* test_random.cpp - gpu/kernels/random.cu's uniform fill on the CPU by
 * tests/sim against core/rng.c's philox_uniform (the CPU's stream, linked
 * in): element i is number offset + i of stream `seed`, bit for bit, for
 * offsets not on a Philox block's start, lengths that end inside a block,
 * and the offset moved on by a value in device memory (`base`, a CUDA
 * graph's replay), where the launch is sized without knowing it.
 *
 * Prints "sim_random: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/test_common.h"

extern "C" {
#include "core/rng.h"
}

template <typename T> static void uniform_case(int64_t n, uint64_t seed, uint64_t offset,
                                               const uint64_t *base) {
    std::vector<T> out((size_t)n + 8, (T)-1);
    gpu_launch_uniform(sim_dtype<T>(), out.data(), n, seed, offset, base);
    uint64_t start = offset + (base ? *base : 0);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) differ += out[i] != (T)philox_uniform(seed, start + i);
    for (int64_t i = n; i < n + 8; i++) differ += out[i] != (T)-1; /* past the end */
    char name[96];
    snprintf(name, sizeof name, "uniform n %lld seed %llu offset %llu%s %s", (long long)n,
             (unsigned long long)seed, (unsigned long long)offset, base ? " + base" : "",
             sizeof(T) == 4 ? "f32" : "f64");
    sim_verdict(differ == 0, name, (double)differ);
}

int main(void) {
    static const uint64_t base_value = 4099; /* not a multiple of 4 */
    uniform_case<float>(1, 0, 0, nullptr);
    uniform_case<float>(1000, 7, 3, nullptr);
    uniform_case<float>(4097, 12345, 1ull << 33, nullptr);
    uniform_case<double>(999, 7, 2, nullptr);
    uniform_case<float>(1000, 7, 3, &base_value);
    uniform_case<float>(5, 9, 0, &base_value);
    uniform_case<double>(1001, 7, 1, &base_value);
    return sim_summary("random");
}
