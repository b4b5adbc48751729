/* profile.cu - where a GPU job's time goes, without a profiler on the
 * machine: with TRAIND_GPU_PROFILE set, every launch that reports itself
 * (gpu_check_launch, the cuBLAS calls) also records a CUDA event on the
 * default stream under its label. Every kernel runs on that one stream, so
 * the time between two consecutive events is the time the second launch's
 * work took to finish after the first's: its kernel time while the GPU is
 * kept busy, plus any idle gap while the host was late (the table's total
 * against the wall clock tells which). Events are read back in batches;
 * the table (label, calls, total ms, share, mean us) goes to stderr at exit,
 * or to the file TRAIND_GPU_PROFILE names when it is not "1". Launches
 * captured into a CUDA graph are not marked (they do not run then).
 */
#include <cuda_runtime.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "gpu/kernels.h"
#include "gpu/stream.h"

namespace {

constexpr int BATCH = 512;  /* events read back at once */
constexpr int LABELS = 256; /* distinct labels kept; more are summed as "other" */

struct Pending {
    cudaEvent_t event;
    const char *label;
    int device;
};

struct Row {
    const char *label;
    long calls;
    double ms;
};

std::mutex lock;
std::atomic<int> state{-1}; /* -1 not read yet, 0 off, 1 on */
Pending pending[BATCH];
int n_pending;
cudaEvent_t last_event; /* the batch before's last, the first one's start */
int last_device = -1;
Row rows[LABELS + 1];
int n_rows;

Row *row_for(const char *label) {
    for (int i = 0; i < n_rows; i++)
        if (rows[i].label == label || strcmp(rows[i].label, label) == 0) return &rows[i];
    if (n_rows < LABELS) {
        rows[n_rows] = Row{label, 0, 0};
        return &rows[n_rows++];
    }
    rows[LABELS].label = "other";
    return &rows[LABELS];
}

/* Reads the pending events back (waiting for the last) and adds each
 * one's time since the event before it to its label. */
void drain_locked() {
    if (n_pending == 0) return;
    cudaEventSynchronize(pending[n_pending - 1].event);
    for (int i = 0; i < n_pending; i++) {
        Pending *p = &pending[i];
        float ms = 0;
        if (last_event && last_device == p->device &&
            cudaEventElapsedTime(&ms, last_event, p->event) == cudaSuccess) {
            Row *r = row_for(p->label);
            r->calls++;
            r->ms += ms;
        }
        if (last_event) cudaEventDestroy(last_event);
        last_event = p->event;
        last_device = p->device;
    }
    n_pending = 0;
    (void)cudaGetLastError(); /* a failed read here is no job's error */
}

void report() {
    std::lock_guard<std::mutex> guard(lock);
    drain_locked();
    const char *to = getenv("TRAIND_GPU_PROFILE");
    FILE *f = to && strcmp(to, "1") != 0 ? fopen(to, "w") : stderr;
    if (!f) f = stderr;
    qsort(rows, (size_t)n_rows + (rows[LABELS].calls ? 1 : 0), sizeof *rows,
          [](const void *a, const void *b) {
              double x = ((const Row *)a)->ms, y = ((const Row *)b)->ms;
              return (x < y) - (x > y);
          });
    double total = 0;
    for (int i = 0; i <= LABELS; i++) total += rows[i].ms;
    fprintf(f, "gpu profile: %.1f ms of GPU time between launches\n", total);
    fprintf(f, "%-44s %9s %11s %6s %10s\n", "label", "calls", "total_ms", "share", "mean_us");
    for (int i = 0; i <= LABELS; i++) {
        const Row *r = &rows[i];
        if (!r->calls) continue;
        fprintf(f, "%-44s %9ld %11.2f %5.1f%% %10.1f\n", r->label, r->calls, r->ms,
                total > 0 ? 100 * r->ms / total : 0, 1000 * r->ms / (double)r->calls);
    }
    if (f != stderr) fclose(f);
}

/* under the lock */
bool enabled() {
    if (state.load() < 0) {
        state.store(getenv("TRAIND_GPU_PROFILE") ? 1 : 0);
        if (state.load()) atexit(report);
    }
    return state.load() == 1;
}

} // namespace

extern "C" void gpu_profile_mark(const char *label) {
    if (state.load(std::memory_order_relaxed) == 0) return; /* the common case, no lock */
    if (gpu_stream() != cudaStreamLegacy) return; /* capturing a graph: nothing runs now */
    std::lock_guard<std::mutex> guard(lock);
    if (!enabled()) return;
    int dev = 0;
    cudaEvent_t e;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaEventCreate(&e) != cudaSuccess ||
        cudaEventRecord(e, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    pending[n_pending++] = Pending{e, label, dev};
    if (n_pending == BATCH) drain_locked();
}
