/* test_embedding.cpp - gpu/kernels/embedding.cu on the CPU by tests/sim:
 * the lookup (rows gathered, repeated indices), the index check no GPU
 * has run (an index outside [0, V) reads zeros and is recorded once in
 * the thread's record: index, position, limit, device), the d = 0 check,
 * and the backward's atomic sums into gw (zeroed first by layout.cu's
 * fill), out-of-range indices adding nothing; float32 and float64.
 *
 * Prints "sim_embedding: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/test_common.h"

/* A bad index recorded in r: one of the (index, position) pairs given. */
static bool recorded(const GpuIndexRecord &r, unsigned claim, int64_t v,
                     const std::vector<std::pair<int64_t, int64_t>> &bad) {
    if (bad.empty()) return r.bad == 0 && claim == 0;
    bool known = false;
    for (auto &b : bad) known = known || (r.index == b.first && r.position == b.second);
    return r.bad == 1 && claim == 1 && known && r.limit == v && r.device == 3;
}

template <typename T> static void lookup_case(std::vector<int64_t> idx, int64_t d) {
    int64_t v = 7, n = (int64_t)idx.size();
    std::vector<T> w = sim_as<T>(sim_values(v * d, 1)), out((size_t)(n * d), (T)NAN);
    GpuIndexRecord record = {};
    unsigned claim = 0;
    GpuIndexCheck check = {&record, &claim, 3};
    gpu_launch_embedding(sim_dtype<T>(), w.data(), idx.data(), out.data(), n, v, d, check);
    std::vector<std::pair<int64_t, int64_t>> bad;
    bool ok = true;
    for (int64_t p = 0; p < n; p++) {
        bool inside = idx[p] >= 0 && idx[p] < v;
        if (!inside) bad.push_back({idx[p], p});
        for (int64_t c = 0; c < d; c++)
            ok = ok && out[p * d + c] == (inside ? w[idx[p] * d + c] : (T)0);
    }
    ok = ok && recorded(record, claim, v, bad);
    char name[96];
    snprintf(name, sizeof name, "embedding n %lld d %lld, %zu bad %s", (long long)n,
             (long long)d, bad.size(), sizeof(T) == 4 ? "f32" : "f64");
    sim_verdict(ok, name, 0);
}

template <typename T> static void backward_case(void) {
    int64_t v = 6, d = 5;
    std::vector<int64_t> idx = {1, 4, 1, 1, -2, 0, 6, 4};
    int64_t n = (int64_t)idx.size();
    std::vector<T> gy = sim_as<T>(sim_values(n * d, 2)), gw((size_t)(v * d), (T)NAN);
    std::vector<double> want((size_t)(v * d), 0);
    for (int64_t p = 0; p < n; p++)
        if (idx[p] >= 0 && idx[p] < v)
            for (int64_t c = 0; c < d; c++) want[idx[p] * d + c] += (double)gy[p * d + c];
    gpu_launch_embedding_backward(sim_dtype<T>(), gy.data(), idx.data(), gw.data(), n, v, d);
    double err = 0;
    for (int64_t i = 0; i < v * d; i++) err = fmax(err, fabs((double)gw[i] - want[i]));
    if (err != err) err = INFINITY;
    char name[96];
    snprintf(name, sizeof name, "embedding_backward, repeats, 2 bad %s",
             sizeof(T) == 4 ? "f32" : "f64");
    sim_verdict(err <= (sizeof(T) == 4 ? 1e-5 : 1e-13), name, err);
}

int main(void) {
    lookup_case<float>({0, 3, 3, 6, 1}, 5);
    lookup_case<double>({2, 2, 0}, 300);
    lookup_case<float>({1, -1, 5, 7, 2}, 4);
    lookup_case<double>({9, 1}, 3);
    lookup_case<float>({0, 7, 2}, 1); /* one column: its first is its only */
    lookup_case<float>({1, 8, 2}, 0); /* d = 0: the check alone */
    lookup_case<float>({1, 2}, 0);
    backward_case<float>();
    backward_case<double>();
    return sim_summary("embedding");
}
