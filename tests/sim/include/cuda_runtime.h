/* cuda_runtime.h - a stand-in for CUDA's runtime header in tests/sim,
 * which compiles a kernel file of gpu/ for the CPU: the types and the few
 * runtime calls the kernel files' host code makes (tests/sim/runtime.cpp
 * answers them). The device side is tests/sim/cuda_sim.h.
 */
#ifndef TRAIND_TESTS_SIM_CUDA_RUNTIME_H
#define TRAIND_TESTS_SIM_CUDA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorUnknown = 999 };
typedef enum cudaError cudaError_t;
typedef struct SimStream *cudaStream_t;
#define cudaStreamLegacy ((cudaStream_t)0x1)

enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaMemcpyKind { cudaMemcpyDeviceToDevice = 3 };

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t error);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream);

#endif
