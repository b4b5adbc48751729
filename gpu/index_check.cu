/* index_check.cu - indices checked by the kernels that read them (the
 * embedding's, the class losses' targets), and a bad one reported at the
 * thread's next wait for the device.
 *
 * A kernel cannot fail the op that queued it: by the time it runs the host
 * has moved on, and inside a CUDA graph's replay there is no op at all. So
 * a kernel that meets an index outside its range reads nothing there and
 * records the index: in a record of page-locked host memory mapped into
 * the device, written by the one device thread that wins the record's claim
 * word (device memory) and published by its flag after a system fence. The
 * host looks at its thread's record after each wait for the device
 * (runtime.cu: to_host, a read's end, a synchronise), so the op that reads
 * a result fails with the message; the record and its claims are then
 * ready for the next.
 *
 * A record per host thread (a job runs on its own thread, so one job never
 * sees another's), in slots of one mapped array. A slot is cleaned when a
 * thread takes it and when a job starts (Backend.clear_error), each time
 * after waiting for the device, so that a kernel still queued by whoever
 * used it before cannot write there afterwards. Slots and claim words are
 * made outside any capture (a job's first step runs op by op).
 */
#include <cuda_runtime.h>

#include <cstdio>
#include <mutex>

#include "gpu/gpu.h"
#include "gpu/kernels.h"
#include "gpu/stream.h"

static const int kSlots = 256;

static std::mutex lock;
static GpuIndexRecord *records;           /* kSlots of them, mapped */
static unsigned *claims[GPU_MAX_DEVICES]; /* kSlots words on each device */
static bool taken[kSlots];

/* This thread's slot and its record's device address, given back when the
 * thread ends. */
struct Slot {
    int index = -1;
    GpuIndexRecord *mapped = nullptr;
    ~Slot() {
        if (index < 0) return;
        std::lock_guard<std::mutex> g(lock);
        taken[index] = false;
        index = -1;
    }
};
static thread_local Slot slot;

/* Caller holds the lock. Waits for every device with claims, then clears
 * slot i's record and claim words: nothing queued before can write them
 * later. The kernels that write them run on the legacy stream (a graph's
 * replay too), so the wait is for that stream: CUDA refuses a wait for
 * the whole device while any of its streams captures a graph, as another
 * job's thread may be doing. The thread's current device is kept. */
static void clean(int i) {
    int current = -1;
    gpu_record((int)cudaGetDevice(&current), "cudaGetDevice (index check)");
    for (int d = 0; d < GPU_MAX_DEVICES; d++) {
        if (!claims[d]) continue;
        gpu_record((int)cudaSetDevice(d), "cudaSetDevice (index check)");
        gpu_record((int)cudaStreamSynchronize(cudaStreamLegacy),
                   "cudaStreamSynchronize (index check)");
        gpu_record((int)cudaMemset(claims[d] + i, 0, sizeof(unsigned)), "cudaMemset (index claim)");
    }
    if (current >= 0) gpu_record((int)cudaSetDevice(current), "cudaSetDevice (index check)");
    records[i] = GpuIndexRecord{};
}

/* Caller holds the lock. The records, the device's claim words and this
 * thread's slot, made when missing; false with the sticky error. */
static bool make(int device) {
    if (!records) {
        void *p = nullptr;
        cudaError_t e = cudaHostAlloc(&p, kSlots * sizeof *records,
                                      cudaHostAllocMapped | cudaHostAllocPortable);
        gpu_record((int)e, "cudaHostAlloc (index check records)");
        if (e != cudaSuccess) return false;
        records = (GpuIndexRecord *)p;
        for (int i = 0; i < kSlots; i++) records[i] = GpuIndexRecord{};
    }
    if (!claims[device]) {
        void *p = nullptr;
        cudaError_t e = cudaMalloc(&p, kSlots * sizeof(unsigned));
        if (e == cudaSuccess) e = cudaMemset(p, 0, kSlots * sizeof(unsigned));
        gpu_record((int)e, "cudaMalloc (index claims)");
        if (e != cudaSuccess) {
            if (p) (void)cudaFree(p);
            return false;
        }
        claims[device] = (unsigned *)p;
    }
    if (slot.index >= 0) return true;
    int i = 0;
    while (i < kSlots && taken[i]) i++;
    if (i == kSlots) {
        gpu_record_msg("more threads check indices than there are slots", "index check");
        return false;
    }
    void *mapped = nullptr;
    cudaError_t e = cudaHostGetDevicePointer(&mapped, records + i, 0);
    gpu_record((int)e, "cudaHostGetDevicePointer (index check)");
    if (e != cudaSuccess) return false;
    clean(i);
    taken[i] = true;
    slot.index = i;
    slot.mapped = (GpuIndexRecord *)mapped;
    return true;
}

extern "C" int gpu_index_check_args(int device, GpuIndexOp op, GpuIndexCheck *out) {
    std::lock_guard<std::mutex> g(lock);
    if (!(records && claims[device] && slot.index >= 0)) {
        if (gpu_stream() != cudaStreamLegacy) { /* capturing: no allocation, no wait */
            gpu_record_msg("an index check set up inside a capture", "index check");
            return -1;
        }
        if (!make(device)) return -1;
    }
    *out = GpuIndexCheck{slot.mapped, claims[device] + slot.index, device, (int)op};
    return 0;
}

extern "C" void gpu_index_check_report(void) {
    if (slot.index < 0) return;
    volatile GpuIndexRecord *r = records + slot.index;
    if (!r->bad) return;
    char msg[256];
    if (r->op == GPU_INDEX_CLASS_TARGET)
        snprintf(msg, sizeof msg,
                 "class loss: target %lld at index %lld is out of range for %lld classes",
                 (long long)r->index, (long long)r->position, (long long)r->limit);
    else
        snprintf(msg, sizeof msg,
                 "embedding: index %lld at position %lld is out of range for num_embeddings %lld",
                 (long long)r->index, (long long)r->position, (long long)r->limit);
    {
        std::lock_guard<std::mutex> g(lock);
        clean(slot.index);
    }
    gpu_record_text(msg);
}

extern "C" void gpu_index_check_discard(void) {
    if (slot.index < 0) return;
    std::lock_guard<std::mutex> g(lock);
    clean(slot.index);
}
