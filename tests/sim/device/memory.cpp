/* memory.cpp - the simulated device's memory, copies, device queries and
 * errors: devices of DEVICE_BYTES, whose memory is the host's (malloc,
 * so that ASan sees a kernel's reads past a block), each block filled
 * with NaN bytes as a GPU's is filled with whatever was there before.
 *
 * The device keeps a map of its blocks and of page-locked host blocks,
 * and checks every copy and kernel argument against it: a copy's device
 * side must lie in a block, its host side must not be device memory. A
 * copy from pageable host memory is taken at the call and one to it is
 * waited for (CUDA stages both); one from or to page-locked memory
 * runs when its stream gets to it, as a GPU's DMA does.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <map>
#include <memory>
#include <vector>

#include "tests/sim/cuda_sim.h"
#include "tests/sim/device/device.h"

namespace {

const size_t DEVICE_BYTES = (size_t)8 << 30;
const size_t SHARED_MAX = 227 * 1024;

struct Block {
    size_t bytes;
    bool page_locked;
};

/* by start address; never destroyed, so that LeakSanitizer, which looks at
 * exit, sees the blocks a cache still holds */
std::map<uintptr_t, Block> &blocks = *new std::map<uintptr_t, Block>;
size_t device_in_use;
thread_local cudaError_t last_error = cudaSuccess;

/* the block holding [p, p + bytes) (its end included, for empty ranges) */
const Block *block_of(const void *p, size_t bytes) {
    uintptr_t a = (uintptr_t)p;
    auto it = blocks.upper_bound(a);
    if (it == blocks.begin()) return nullptr;
    --it;
    return a + bytes <= it->first + it->second.bytes ? &it->second : nullptr;
}

cudaError_t add_block(void **ptr, size_t bytes, bool page_locked) {
    *ptr = nullptr;
    if (!bytes) return cudaSuccess;
    size_t rounded = (bytes + 255) / 256 * 256;
    void *p = aligned_alloc(256, rounded);
    if (!p) return simdev_fail(cudaErrorMemoryAllocation);
    memset(p, 0xff, rounded); /* NaN in float32 and float64 */
    blocks[(uintptr_t)p] = Block{bytes, page_locked};
    *ptr = p;
    return cudaSuccess;
}

cudaError_t drop_block(void *ptr, bool page_locked) {
    if (!ptr) return cudaSuccess;
    auto it = blocks.find((uintptr_t)ptr);
    if (it == blocks.end() || it->second.page_locked != page_locked)
        return simdev_fail(cudaErrorInvalidValue);
    simdev_drain_all(); /* cudaFree and cudaFreeHost wait for the device */
    if (!page_locked) device_in_use -= it->second.bytes;
    blocks.erase(it);
    free(ptr);
    return cudaSuccess;
}

/* whether the copy's two sides lie where its kind says */
bool copy_allowed(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    const Block *d = block_of(dst, bytes), *s = block_of(src, bytes);
    bool dst_dev = d != nullptr, src_dev = s != nullptr; /* page-locked blocks: both */
    bool dst_host = !d || d->page_locked, src_host = !s || s->page_locked;
    switch (kind) {
    case cudaMemcpyHostToDevice: return src_host && dst_dev;
    case cudaMemcpyDeviceToHost: return src_dev && dst_host;
    case cudaMemcpyDeviceToDevice: return src_dev && dst_dev;
    default: return true;
    }
}

void report(const char *what, const void *dst, const void *src, size_t bytes) {
    fprintf(stderr, "simulated device: %s of %zu bytes from %p to %p: a side is not where its "
                    "kind says\n", what, bytes, src, dst);
}

} // namespace

cudaError_t simdev_fail(cudaError_t e) {
    if (e != cudaSuccess) last_error = e;
    return e;
}

bool simdev_on_device(const void *p, size_t bytes) {
    std::lock_guard<SimLock> g(simdev_lock());
    return block_of(p, bytes) != nullptr;
}

bool simdev_page_locked(const void *p, size_t bytes) {
    std::lock_guard<SimLock> g(simdev_lock());
    const Block *b = block_of(p, bytes);
    return b && b->page_locked;
}

bool sim_device_pointer(const void *p) { return !p || simdev_on_device(p, 0); }

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorStreamCaptureUnsupported:
        return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
        return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnmatched:
        return "the capture was not initiated in this stream";
    case cudaErrorStreamCaptureUnjoined:
        return "the capture sequence contains a fork that was not joined to the primary stream";
    case cudaErrorStreamCaptureIsolation:
        return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureWrongThread:
        return "attempt to terminate a thread-local capture sequence from another thread";
    default: return "unknown error";
    }
}

/* ---- the device ---- */

/* TRAIND_SIMDEV_GPUS devices (1 to 8, 1 by default), so that a machine's
 * ranks each take one of their own, as data parallel's NCCL asks (it
 * refuses two ranks on one device, tests/sim/device/nccl.cpp). They share
 * one memory: a kernel on one that reads another's block is not caught. */
int simdev_device_count() {
    static int count = [] {
        const char *v = getenv("TRAIND_SIMDEV_GPUS");
        int n = v ? atoi(v) : 1;
        return n >= 1 && n <= 8 ? n : 1;
    }();
    return count;
}

static thread_local int current_device = 0;

int simdev_current_device() { return current_device; }

cudaError_t cudaGetDeviceCount(int *count) {
    *count = simdev_device_count();
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= simdev_device_count()) return simdev_fail(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    *device = current_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (device < 0 || device >= simdev_device_count()) return simdev_fail(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "traind simulated device (tests/sim)");
    prop->totalGlobalMem = DEVICE_BYTES;
    prop->multiProcessorCount = 4;
    prop->major = 9;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    if (device < 0 || device >= simdev_device_count()) return simdev_fail(cudaErrorInvalidDevice);
    *value = attr == cudaDevAttrMultiProcessorCount     ? 4
             : attr == cudaDevAttrComputeCapabilityMajor ? 9
                                                         : 0;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    std::lock_guard<SimLock> g(simdev_lock());
    *free_bytes = DEVICE_BYTES - device_in_use;
    *total_bytes = DEVICE_BYTES;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *kernel, enum cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        (size_t)value > SHARED_MAX)
        return simdev_fail(cudaErrorInvalidValue);
    simdev_drain_all(); /* as CUDA's, it waits for the copies in flight */
    sim_allow_shared(kernel, (size_t)value);
    return cudaSuccess;
}

/* ---- memory ---- */

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (simdev_capture_refuses()) return simdev_fail(cudaErrorStreamCaptureUnsupported);
    if (bytes > DEVICE_BYTES - device_in_use) {
        *ptr = nullptr;
        return simdev_fail(cudaErrorMemoryAllocation);
    }
    cudaError_t e = add_block(ptr, bytes, false);
    if (e == cudaSuccess) device_in_use += bytes;
    return e;
}

cudaError_t cudaFree(void *ptr) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (simdev_device_wait_refused()) return simdev_fail(cudaErrorStreamCaptureUnsupported);
    return drop_block(ptr, false);
}

cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned flags) {
    std::lock_guard<SimLock> g(simdev_lock());
    (void)flags; /* with unified addressing every page-locked block is mapped */
    return add_block(ptr, bytes, true);
}

cudaError_t cudaFreeHost(void *ptr) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (simdev_device_wait_refused()) return simdev_fail(cudaErrorStreamCaptureUnsupported);
    return drop_block(ptr, true);
}

cudaError_t cudaHostGetDevicePointer(void **device_ptr, void *host_ptr, unsigned flags) {
    (void)flags;
    if (!simdev_page_locked(host_ptr, 1)) return simdev_fail(cudaErrorInvalidValue);
    *device_ptr = host_ptr;
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t stream) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (!bytes) return cudaSuccess;
    if (!copy_allowed(dst, src, bytes, kind)) {
        report("cudaMemcpyAsync", dst, src, bytes);
        return simdev_fail(cudaErrorInvalidValue);
    }
    bool staged_in = kind == cudaMemcpyHostToDevice && !simdev_page_locked(src, bytes);
    bool staged_out = kind == cudaMemcpyDeviceToHost && !simdev_page_locked(dst, bytes);
    if ((staged_in || staged_out) && simdev_capturing(stream)) { /* a graph holds no staging */
        simdev_drain(stream); /* refused: fails the capture */
        return simdev_fail(cudaErrorStreamCaptureUnsupported);
    }
    if (staged_in) { /* pageable: taken now */
        auto bytes_in = std::make_shared<std::vector<unsigned char>>(
            (const unsigned char *)src, (const unsigned char *)src + bytes);
        return simdev_enqueue(stream, [dst, bytes_in] {
            memcpy(dst, bytes_in->data(), bytes_in->size());
        });
    }
    cudaError_t e = simdev_enqueue(stream, [dst, src, bytes] { memmove(dst, src, bytes); });
    if (e == cudaSuccess && staged_out) e = simdev_drain(stream); /* pageable: waited for */
    return e;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (simdev_capture_refuses()) return simdev_fail(cudaErrorStreamCaptureUnsupported);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, cudaStreamLegacy);
    return e == cudaSuccess ? simdev_drain(cudaStreamLegacy) : e;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream) {
    std::lock_guard<SimLock> g(simdev_lock());
    if (!bytes) return cudaSuccess;
    if (!simdev_on_device(dst, bytes)) {
        report("cudaMemsetAsync", dst, nullptr, bytes);
        return simdev_fail(cudaErrorInvalidValue);
    }
    return simdev_enqueue(stream, [dst, value, bytes] { memset(dst, value, bytes); });
}

cudaError_t cudaMemset(void *dst, int value, size_t bytes) {
    return cudaMemsetAsync(dst, value, bytes, cudaStreamLegacy);
}
