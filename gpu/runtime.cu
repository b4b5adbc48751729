/* runtime.cu - devices, the sticky error, and host <-> device copies.
 *
 * The sticky error (see gpu/gpu.h): the first CUDA failure of a thread is
 * kept, formatted "cuda: <cudaGetErrorString> at <where>", until
 * gpu_clear_error(). Launchers call gpu_check_launch() after each kernel;
 * gpu_memcpy_to_host, the synchronising copy, returns -1 when any failure
 * is pending, so the op that reads a result back reports it.
 */
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <mutex>

#include "gpu/gpu.h"
#include "gpu/kernels.h"
#include "gpu/stream.h"

extern "C" {
#include "core/error.h"
}

static thread_local char last_error[512];
static thread_local bool has_error;
static thread_local int current_device = -1;
static thread_local cudaStream_t current_stream = cudaStreamLegacy;

extern "C" cudaStream_t gpu_stream(void) { return current_stream; }

extern "C" void gpu_stream_set(cudaStream_t stream) { current_stream = stream; }

extern "C" cudaStreamCaptureMode gpu_capture_relax(void) {
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    (void)cudaThreadExchangeStreamCaptureMode(&mode);
    return mode;
}

extern "C" void gpu_capture_restore(cudaStreamCaptureMode mode) {
    (void)cudaThreadExchangeStreamCaptureMode(&mode);
}

extern "C" void gpu_record_text(const char *text) {
    if (has_error) return; /* the first failure is the cause; keep it */
    snprintf(last_error, sizeof last_error, "%s", text);
    has_error = true;
}

extern "C" void gpu_record_msg(const char *msg, const char *where) {
    if (has_error) return; /* formatted only when kept */
    char text[sizeof last_error];
    snprintf(text, sizeof text, "cuda: %s at %s", msg, where);
    gpu_record_text(text);
}

extern "C" void gpu_record(int status, const char *where) {
    if (status == (int)cudaSuccess) return;
    gpu_record_msg(cudaGetErrorString((cudaError_t)status), where);
}

extern "C" void gpu_check_launch(const char *where) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        gpu_record((int)e, where);
    else
        gpu_profile_mark(where);
}

extern "C" const char *gpu_last_error(void) { return has_error ? last_error : NULL; }

extern "C" void gpu_clear_error(void) {
    has_error = false;
    last_error[0] = '\0';
}

extern "C" int gpu_runtime_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no device: not an error here */
        return 0;
    }
    return n;
}

extern "C" void gpu_use_device(int index) {
    if (index == current_device) return;
    cudaError_t e = cudaSetDevice(index);
    if (e != cudaSuccess) {
        gpu_record((int)e, "cudaSetDevice");
        return;
    }
    current_device = index;
}

extern "C" int gpu_current_device(void) { return current_device < 0 ? 0 : current_device; }

/* Kernels' dynamic shared memory allowed past the default 48 KiB, kept per
 * (kernel, device): cudaFuncSetAttribute waits for the runtime's copies in
 * flight (the DataLoader's uploads on the copy stream), so it runs once per
 * kernel, device and larger size, not at each launch. */
#define SMEM_LIMITS 256
static struct {
    const void *kernel;
    int device;
    size_t bytes;
} smem_limits[SMEM_LIMITS];
static int smem_limits_used;
static std::mutex smem_limits_lock;

extern "C" int gpu_allow_shared_memory(const void *kernel, size_t bytes, const char *what) {
    int device = gpu_current_device(), slot = -1;
    std::lock_guard<std::mutex> g(smem_limits_lock);
    for (int i = 0; i < smem_limits_used && slot < 0; i++)
        if (smem_limits[i].kernel == kernel && smem_limits[i].device == device) slot = i;
    if (slot >= 0 && smem_limits[slot].bytes >= bytes) return 0;
    cudaError_t rc =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (rc != cudaSuccess) {
        gpu_record((int)rc, what);
        return -1;
    }
    if (slot < 0 && smem_limits_used < SMEM_LIMITS) slot = smem_limits_used++;
    if (slot >= 0) smem_limits[slot] = {kernel, device, bytes};
    return 0;
}

/* A host copy while this thread captures a graph would run now, not at
 * each replay: the bytes read back were never computed, those sent would
 * be sent once. It fails the capture instead (gpu/graph.cu). */
static thread_local char refusal[256]; /* the first refused call of the capture */

static bool refused_in_capture(const char *what) {
    if (current_stream == cudaStreamLegacy) return false;
    const char *msg = "the step waits for the device or copies between it and the host, "
                      "which a CUDA graph cannot hold";
    if (!refusal[0]) snprintf(refusal, sizeof refusal, "%s (%s)", msg, what);
    gpu_record_msg(msg, what);
    return true;
}

/* kept apart from the sticky error, which the op that failed reports and
 * clears: the capture must fail even where its caller goes on */
extern "C" const char *gpu_capture_refusal(void) { return refusal[0] ? refusal : NULL; }

extern "C" void gpu_capture_refusal_clear(void) { refusal[0] = '\0'; }

extern "C" int gpu_memcpy_to_host(int device, void *host_dst, const void *src, size_t nbytes) {
    if (refused_in_capture("cudaMemcpy (device to host)")) return -1;
    gpu_use_device(device);
    if (nbytes) gpu_record((int)cudaMemcpy(host_dst, src, nbytes, cudaMemcpyDeviceToHost),
                           "cudaMemcpy (device to host)");
    /* the copy waited for every kernel before it: their failures show now */
    gpu_check_launch("a kernel before cudaMemcpy (device to host)");
    gpu_index_check_report();
    return has_error ? -1 : 0;
}

extern "C" int gpu_memcpy_from_host(int device, void *dst, const void *host_src, size_t nbytes) {
    if (refused_in_capture("cudaMemcpy (host to device)")) return -1;
    gpu_use_device(device);
    if (nbytes) gpu_record((int)cudaMemcpy(dst, host_src, nbytes, cudaMemcpyHostToDevice),
                           "cudaMemcpy (host to device)");
    return has_error ? -1 : 0;
}

/* The handle is the event recorded behind the copies. */
extern "C" void *gpu_read_begin(int device, int n, void *const *dst, const void *const *src,
                                const size_t *nbytes) {
    if (refused_in_capture("cudaMemcpyAsync (device to host)")) return NULL;
    gpu_use_device(device);
    for (int i = 0; i < n && !has_error; i++)
        gpu_record((int)cudaMemcpyAsync(dst[i], src[i], nbytes[i], cudaMemcpyDeviceToHost,
                                        cudaStreamLegacy),
                   "cudaMemcpyAsync (device to host)");
    cudaEvent_t done = NULL;
    if (!has_error)
        gpu_record((int)cudaEventCreateWithFlags(&done, cudaEventDisableTiming),
                   "cudaEventCreateWithFlags (read)");
    if (!has_error) gpu_record((int)cudaEventRecord(done, cudaStreamLegacy), "cudaEventRecord");
    if (has_error && done) (void)cudaEventDestroy(done);
    return has_error ? NULL : (void *)done;
}

extern "C" int gpu_read_end(void *handle) {
    cudaEvent_t done = (cudaEvent_t)handle;
    gpu_record((int)cudaEventSynchronize(done), "cudaEventSynchronize (read)");
    (void)cudaEventDestroy(done);
    /* the copies waited for every kernel before them: their failures show now */
    gpu_check_launch("a kernel before a read");
    gpu_index_check_report();
    return has_error ? -1 : 0;
}

/* The copy stream: one per device, non-blocking (it does not wait for the
 * legacy default stream, where every kernel runs), for the DataLoader's
 * prefetch thread, so the next batch crosses PCIe while this step computes.
 * Created on first use and kept, as the cuBLAS handles are. */
static std::mutex copy_streams_lock;
static cudaStream_t copy_streams[GPU_MAX_DEVICES];

static cudaStream_t copy_stream(int device) {
    std::lock_guard<std::mutex> g(copy_streams_lock);
    if (!copy_streams[device])
        gpu_record((int)cudaStreamCreateWithFlags(&copy_streams[device], cudaStreamNonBlocking),
                   "cudaStreamCreateWithFlags (copy stream)");
    return copy_streams[device];
}

/* dst came from the caching allocator, which hands a freed block on at once
 * because every kernel runs in one stream: kernels queued on the default
 * stream may still read it. So the copy first waits for everything queued
 * there now (an event), and is synchronised before returning, so that the
 * default stream's later kernels see the bytes. */
extern "C" int gpu_memcpy_from_host_beside(int device, void *dst, const void *host_src,
                                           size_t nbytes) {
    if (refused_in_capture("cudaMemcpyAsync (host to device, copy stream)")) return -1;
    gpu_use_device(device);
    if (!nbytes || has_error) return has_error ? -1 : 0;
    if (device < 0 || device >= GPU_MAX_DEVICES) {
        gpu_record_msg("device index out of range", "gpu_memcpy_from_host_beside");
        return -1;
    }
    cudaStream_t s = copy_stream(device);
    cudaEvent_t queued;
    if (has_error ||
        (gpu_record((int)cudaEventCreateWithFlags(&queued, cudaEventDisableTiming),
                    "cudaEventCreateWithFlags"), has_error))
        return -1;
    gpu_record((int)cudaEventRecord(queued, cudaStreamLegacy), "cudaEventRecord (default stream)");
    gpu_record((int)cudaStreamWaitEvent(s, queued, 0), "cudaStreamWaitEvent (copy stream)");
    if (!has_error) { /* never unordered: without the wait, no copy */
        gpu_record((int)cudaMemcpyAsync(dst, host_src, nbytes, cudaMemcpyHostToDevice, s),
                   "cudaMemcpyAsync (host to device, copy stream)");
        gpu_record((int)cudaStreamSynchronize(s), "cudaStreamSynchronize (copy stream)");
    }
    gpu_record((int)cudaEventDestroy(queued), "cudaEventDestroy");
    return has_error ? -1 : 0;
}

/* The bytes of a queued copy travel as a kernel's argument: the launch
 * takes them at once, so the host may reuse its buffer on return, and the
 * kernel runs in stream order behind the work queued before it. (A
 * cudaMemcpyAsync from pageable memory may first wait for the stream; from
 * page-locked memory, the host would have to keep the buffer until the
 * copy ran.) */
static const size_t kQueuedChunk = 2048;
struct QueuedBytes {
    unsigned char b[kQueuedChunk];
};

static __global__ void write_queued_bytes(unsigned char *dst, QueuedBytes src, unsigned n) {
    for (unsigned i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src.b[i];
}

extern "C" int gpu_memcpy_from_host_queued(int device, void *dst, const void *host_src,
                                           size_t nbytes) {
    if (refused_in_capture("a queued copy (host to device)")) return -1;
    gpu_use_device(device);
    for (size_t at = 0; at < nbytes && !has_error; at += kQueuedChunk) {
        size_t n = nbytes - at < kQueuedChunk ? nbytes - at : kQueuedChunk;
        QueuedBytes q;
        memcpy(q.b, (const unsigned char *)host_src + at, n);
        write_queued_bytes<<<1, 256, 0, gpu_stream()>>>((unsigned char *)dst + at, q,
                                                         (unsigned)n);
        gpu_check_launch("a queued copy (host to device)");
    }
    return has_error ? -1 : 0;
}

extern "C" int gpu_compute_capability(int index) {
    int major = 0, minor = 0;
    cudaError_t e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, index);
    if (e != cudaSuccess)
        return error_set("cuda: %s at cudaDeviceGetAttribute(cuda:%d)", cudaGetErrorString(e),
                         index);
    return major * 10 + minor;
}

extern "C" int gpu_device_info(int index, char *name, size_t n, size_t *mem_total,
                               size_t *mem_free) {
    int count = gpu_runtime_device_count();
    if (index < 0 || index >= count)
        return error_set("gpu_device_info: device cuda:%d not present (%d device(s))", index,
                         count);
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, index);
    if (e != cudaSuccess)
        return error_set("cuda: %s at cudaGetDeviceProperties", cudaGetErrorString(e));
    if (name && n) snprintf(name, n, "%s", prop.name);
    size_t fr = 0, tot = 0;
    int prev = current_device;
    /* directly, not through gpu_use_device: a failure here is this
     * call's to report, not a sticky error left on an HTTP thread */
    e = cudaSetDevice(index);
    if (e != cudaSuccess)
        return error_set("cuda: %s at cudaSetDevice(%d)", cudaGetErrorString(e), index);
    current_device = index;
    e = cudaMemGetInfo(&fr, &tot);
    if (prev >= 0 && prev != index && cudaSetDevice(prev) == cudaSuccess) current_device = prev;
    if (e != cudaSuccess)
        return error_set("cuda: %s at cudaMemGetInfo", cudaGetErrorString(e));
    if (mem_total) *mem_total = tot;
    if (mem_free) *mem_free = fr;
    return 0;
}
