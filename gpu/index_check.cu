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
 * after waiting for the devices it was used on (those alone, and without
 * holding the lock: another job's thread on another device waits for
 * nothing of it), so that a kernel still queued by whoever used it before
 * cannot write there afterwards. Slots and claim words are made outside
 * any capture (a job's first step runs op by op).
 */
#include <cuda_runtime.h>

#include <cstdint>
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
/* the devices whose claim word of slot i was handed out since it was
 * last cleaned: the ones its cleaning waits for */
static uint64_t used[kSlots];
static_assert(GPU_MAX_DEVICES <= 64, "a device is a bit of used[]");

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

/* Waits for each device slot i's claim words were handed out on, then
 * clears its record and those words: nothing queued before can write them
 * later. The kernels that write them run on the legacy stream (a graph's
 * replay too), so the wait is for that stream: CUDA refuses a wait for
 * the whole device while any of its streams captures a graph, as another
 * job's thread may be doing. The caller owns slot i (taken for it), and
 * does not hold the lock: the waits would stall every thread's checks on
 * every device. The thread's current device is kept. */
static void clean(int i) {
    uint64_t devices;
    {
        std::lock_guard<std::mutex> g(lock);
        devices = used[i];
        used[i] = 0;
    }
    int current = -1;
    gpu_record((int)cudaGetDevice(&current), "cudaGetDevice (index check)");
    for (int d = 0; d < GPU_MAX_DEVICES; d++) {
        if (!(devices >> d & 1) || !claims[d]) continue;
        gpu_record((int)cudaSetDevice(d), "cudaSetDevice (index check)");
        gpu_record((int)cudaStreamSynchronize(cudaStreamLegacy),
                   "cudaStreamSynchronize (index check)");
        gpu_record((int)cudaMemset(claims[d] + i, 0, sizeof(unsigned)), "cudaMemset (index claim)");
    }
    if (current >= 0) gpu_record((int)cudaSetDevice(current), "cudaSetDevice (index check)");
    records[i] = GpuIndexRecord{};
}

/* Caller holds the lock. The records, the device's claim words and this
 * thread's slot, made when missing (*fresh: the slot taken, for the
 * caller to clean once the lock is let go); false with the sticky error. */
static bool make(int device, int *fresh) {
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
    taken[i] = true;
    slot.index = i;
    slot.mapped = (GpuIndexRecord *)mapped;
    *fresh = i;
    return true;
}

extern "C" int gpu_index_check_args(int device, GpuIndexOp op, GpuIndexCheck *out) {
    int fresh = -1;
    {
        std::lock_guard<std::mutex> g(lock);
        if (!(records && claims[device] && slot.index >= 0)) {
            if (gpu_stream() != cudaStreamLegacy) { /* capturing: no allocation, no wait */
                gpu_record_msg("an index check set up inside a capture", "index check");
                return -1;
            }
            if (!make(device, &fresh)) return -1;
        }
    }
    if (fresh >= 0) clean(fresh); /* what its last thread queued can no longer write it */
    {
        std::lock_guard<std::mutex> g(lock);
        used[slot.index] |= (uint64_t)1 << device;
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
    clean(slot.index);
    gpu_record_text(msg);
}

extern "C" void gpu_index_check_discard(void) {
    if (slot.index < 0) return;
    clean(slot.index);
}
