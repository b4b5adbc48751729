/* runtime.cpp - tests/sim's stand-in for gpu/runtime.cu's host calls and
 * the few CUDA runtime calls the kernel files make: one device, host
 * memory for device memory, launches that run at once (cuda_sim.h), the
 * first recorded failure kept for the test to read (sim_error).
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>

#include "gpu/kernels.h"
#include "gpu/stream.h"
#include "tests/sim/sim_runtime.h"

static char first_error[512];

const char *sim_error(void) { return first_error; }

void sim_clear_error(void) { first_error[0] = '\0'; }

extern "C" {

void gpu_record_msg(const char *msg, const char *where) {
    if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s at %s", msg, where);
}

void gpu_record(int cuda_status, const char *where) {
    if (cuda_status == cudaSuccess) return; /* as runtime.cu: callers pass every status */
    char msg[64];
    snprintf(msg, sizeof msg, "cuda error %d", cuda_status);
    gpu_record_msg(msg, where);
}

void gpu_record_text(const char *text) { gpu_record_msg(text, "a kernel"); }

void gpu_check_launch(const char *where) { (void)where; }

void gpu_profile_mark(const char *label) { (void)label; }

int gpu_runtime_device_count(void) { return 1; }

void gpu_use_device(int index) { (void)index; }

int gpu_current_device(void) { return 0; }

int gpu_allow_shared_memory(const void *kernel, size_t bytes, const char *what) {
    if (bytes > 227 * 1024) return gpu_record_msg("too much shared memory", what), -1;
    sim_allow_shared(kernel, bytes);
    return 0;
}

void *gpu_alloc_bytes(int device, size_t nbytes) {
    (void)device;
    return malloc(nbytes ? nbytes : 1);
}

void gpu_free_bytes(int device, void *ptr) {
    (void)device;
    free(ptr);
}

cudaStream_t gpu_stream(void) { return cudaStreamLegacy; }

void gpu_stream_set(cudaStream_t stream) { (void)stream; }
}

void sim_launch(cudaStream_t stream, std::function<void()> work) {
    (void)stream;
    work();
}

bool sim_device_pointer(const void *p) {
    (void)p; /* device memory is malloc's here */
    return true;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    (void)device;
    *value = attr == cudaDevAttrMultiProcessorCount ? 4 : 0;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) { return cudaSuccess; }

const char *cudaGetErrorString(cudaError_t error) { return error ? "error" : "no error"; }

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t stream) {
    (void)kind, (void)stream;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream) {
    (void)stream;
    memset(dst, value, bytes);
    return cudaSuccess;
}
