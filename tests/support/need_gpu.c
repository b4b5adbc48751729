/* need_gpu.c - the skip that every GPU test starts with. */
#include "tests/support/need_gpu.h"

#include <criterion/criterion.h>

#ifdef TRAIND_CUDA
#include "gpu/conv_cudnn.h"
#include "gpu/gpu.h"
#endif

void test_need_gpu(void) {
#ifdef TRAIND_CUDA
    if (gpu_init() > 0) return;
    cr_skip_test("no CUDA device: gpu_init() found none, CUDA tests skipped");
#else
    cr_skip_test("no CUDA device: this build has no CUDA backend (make GPU=0 or no nvcc)");
#endif
}

void test_gpu_cudnn(bool on) {
#ifdef TRAIND_CUDA
    gpu_cudnn_set_enabled(on);
#else
    (void)on;
#endif
}
