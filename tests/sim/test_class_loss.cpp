/* test_class_loss.cpp - gpu/kernels/class_loss.cu on the CPU by tests/sim
 * against nll's rows with label smoothing and ignore_index in long double:
 * loss = -(1 - eps) lp[t] - eps / C sum(lp), weight 1 (0 and 0 for an
 * ignored row); gx = -g (1 - eps + eps / C) at t, -g eps / C elsewhere, 0
 * on an ignored row; eps 0 and 0.1, float32 and float64. Targets outside
 * [0, C) (70, -1): their rows read nothing, count as ignored, and the first
 * the device meets is recorded for the host.
 *
 * Prints "sim_class_loss: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/test_common.h"

template <typename T> static void class_loss_case(double eps, bool out_of_range) {
    int64_t rows = 11, cols = 70, ignore = -100;
    std::vector<T> lp = sim_as<T>(sim_values(rows * cols, 7, -6));
    std::vector<T> g = sim_as<T>(sim_values(rows, 8));
    std::vector<int64_t> index((size_t)rows);
    for (int64_t r = 0; r < rows; r++) index[r] = r % 4 == 3 ? ignore : (r * 37) % cols;
    if (out_of_range) index[5] = cols, index[9] = -1;
    std::vector<T> loss((size_t)rows, (T)NAN), weight((size_t)rows, (T)NAN);
    std::vector<T> gx((size_t)(rows * cols), (T)NAN); /* every value must be written */
    GpuIndexRecord record = {};
    unsigned claim = 0;
    GpuIndexCheck check = {&record, &claim, 2, GPU_INDEX_CLASS_TARGET};
    gpu_launch_class_loss_rows(sim_dtype<T>(), lp.data(), index.data(), ignore, eps, loss.data(),
                               weight.data(), rows, cols, check);
    char name[96];
    snprintf(name, sizeof name, "class_loss_rows eps %g %s: %s", eps, sim_dtype_name(sizeof(T)),
             out_of_range ? "targets 70 and -1 recorded" : "nothing recorded");
    bool first = record.index == cols && record.position == 5,
         second = record.index == -1 && record.position == 9;
    sim_verdict(out_of_range ? record.bad == 1 && claim == 1 && (first || second) &&
                                   record.limit == cols && record.device == 2 &&
                                   record.op == GPU_INDEX_CLASS_TARGET
                             : record.bad == 0 && claim == 0,
                name, 0);
    gpu_launch_class_loss_rows_backward(sim_dtype<T>(), g.data(), index.data(), ignore, eps,
                                        gx.data(), rows, cols);
    std::vector<long double> want((size_t)(2 * rows)), want_gx((size_t)(rows * cols), 0);
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = index[r];
        if (t == ignore) continue; /* loss and weight 0 */
        if (t < 0 || t >= cols) { /* loss and weight 0; no gradient at t, smoothing's elsewhere */
            for (int64_t c = 0; c < cols; c++) want_gx[r * cols + c] = -(long double)g[r] * eps / cols;
            continue;
        }
        long double sum = 0;
        for (int64_t c = 0; c < cols; c++) sum += lp[r * cols + c];
        want[r] = -(1 - (long double)eps) * lp[r * cols + t] - eps / cols * sum;
        want[rows + r] = 1;
        for (int64_t c = 0; c < cols; c++)
            want_gx[r * cols + c] = -(long double)g[r] * ((c == t ? 1 - eps : 0) + eps / cols);
    }
    std::vector<T> lw(loss);
    lw.insert(lw.end(), weight.begin(), weight.end());
    snprintf(name, sizeof name, "class_loss_rows eps %g %s: loss, weight", eps,
             sim_dtype_name(sizeof(T)));
    sim_expect_near(name, lw, want, 2e-6);
    snprintf(name, sizeof name, "class_loss_rows eps %g %s: gx", eps, sim_dtype_name(sizeof(T)));
    sim_expect_near(name, gx, want_gx, 2e-6);
}

int main(void) {
    for (double eps : {0.0, 0.1})
        for (bool out_of_range : {false, true}) {
            class_loss_case<float>(eps, out_of_range);
            class_loss_case<double>(eps, out_of_range);
        }
    return sim_summary("class_loss");
}
