/* blas_lib.cpp - gpu/blas_lib.h on the simulated device: the table bound
 * to cublas.cpp's functions, which are linked in. (gpu/blas_lib.c, which
 * dlopens the toolkit's libraries, is left out of the simulated build.)
 */
#include "gpu/blas_lib.h"

#include <mutex>

GpuBlasLib gpu_blas;

#define SIM_BLAS_BIND(f) gpu_blas.f = &f;

extern "C" bool gpu_blas_load(const char *) {
    static std::once_flag bound;
    std::call_once(bound, [] {
        GPU_CUBLAS_FUNCTIONS(SIM_BLAS_BIND)
        GPU_CUBLASLT_FUNCTIONS(SIM_BLAS_BIND)
    });
    return true;
}
