/* test_embedding.cpp - gpu/kernels/embedding.cu on the CPU by tests/sim:
 * the lookup (rows gathered, repeated indices), the index check no GPU
 * has run (an index outside [0, V) reads zeros and is recorded once in
 * the thread's record: index, position, limit, device), the d = 0 check,
 * and the backward's sums into gw (zeroed first by layout.cu's fill) in
 * position order, bit for bit, with the threads run in either order
 * (tests/sim/cuda_sim.h's `reversed`), with more rows than buckets too,
 * out-of-range indices adding nothing; float32 and float64.
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
    return r.bad == 1 && claim == 1 && known && r.limit == v && r.device == 3 &&
           r.op == GPU_INDEX_EMBEDDING;
}

template <typename T> static void lookup_case(std::vector<int64_t> idx, int64_t d) {
    int64_t v = 7, n = (int64_t)idx.size();
    std::vector<T> w = sim_as<T>(sim_values(v * d, 1)), out((size_t)(n * d), (T)NAN);
    GpuIndexRecord record = {};
    unsigned claim = 0;
    GpuIndexCheck check = {&record, &claim, 3, GPU_INDEX_EMBEDDING};
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

/* The backward of n indices into v rows of d columns: each of gw's
 * elements the sum of its rows' gy in position order, from zero, bit for
 * bit (the CPU's order); an index outside [0, v) adds nothing. */
template <typename T> static void backward_case(const std::vector<int64_t> &idx, int64_t v,
                                                int64_t d) {
    int64_t n = (int64_t)idx.size();
    std::vector<T> gy = sim_as<T>(sim_values(n * d, 2)), want((size_t)(v * d), (T)0);
    for (int64_t p = 0; p < n; p++)
        if (idx[p] >= 0 && idx[p] < v)
            for (int64_t c = 0; c < d; c++) want[idx[p] * d + c] += gy[p * d + c];
    bool same = true;
    for (int reversed = 0; reversed < 2; reversed++) { /* the threads' order does not count */
        std::vector<T> gw((size_t)(v * d), (T)NAN);
        sim_team.reversed = reversed;
        gpu_launch_embedding_backward(sim_dtype<T>(), gy.data(), idx.data(), gw.data(), n, v, d);
        sim_team.reversed = false;
        same = same && memcmp(gw.data(), want.data(), gw.size() * sizeof(T)) == 0;
    }
    char name[96];
    snprintf(name, sizeof name, "embedding_backward n %lld v %lld d %lld, position order %s",
             (long long)n, (long long)v, (long long)d, sizeof(T) == 4 ? "f32" : "f64");
    sim_verdict(same, name, 0);
}

/* n indices below v, every fifth repeating the one before, two bad */
static std::vector<int64_t> repeats(int64_t n, int64_t v) {
    std::vector<int64_t> idx((size_t)n);
    for (int64_t p = 0; p < n; p++) idx[p] = p % 5 == 4 ? idx[p - 1] : (p * 7919 + 13) % v;
    idx[1] = -2, idx[n - 1] = v;
    return idx;
}

int main(void) {
    lookup_case<float>({0, 3, 3, 6, 1}, 5);
    lookup_case<double>({2, 2, 0}, 300);
    lookup_case<float>({1, -1, 5, 7, 2}, 4);
    lookup_case<double>({9, 1}, 3);
    lookup_case<float>({0, 7, 2}, 1); /* one column: its first is its only */
    lookup_case<float>({1, 8, 2}, 0); /* d = 0: the check alone */
    lookup_case<float>({1, 2}, 0);
    backward_case<float>({1, 4, 1, 1, -2, 0, 6, 4}, 6, 5);
    backward_case<double>({1, 4, 1, 1, -2, 0, 6, 4}, 6, 5);
    /* more rows than buckets (64 of them for 1024 columns): a thread owns
     * every 64th row of its column */
    backward_case<float>(repeats(50, 200), 200, 1024);
    /* about 8 positions a row: float32 sums whose bits hang on their order */
    backward_case<float>(repeats(300, 37), 37, 3);
    backward_case<double>(repeats(300, 37), 37, 3);
    return sim_summary("embedding");
}
