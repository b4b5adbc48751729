/* need_gpu.c - the skip that every GPU test starts with. */
#include "tests/support/need_gpu.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#ifdef TRAIND_CUDA
#include "gpu/conv_cudnn.h"
#include "gpu/gpu.h"
#endif

void test_need_gpu(void) {
#ifdef TRAIND_CUDA
    if (gpu_init() > 0) return;
    /* where a device is certain (the simulated one: make test-simdev), a
     * missing one is a failure, not 53 quiet skips */
    const char *required = getenv("TRAIND_REQUIRE_GPU");
    if (required && strcmp(required, "1") == 0)
        cr_assert_fail("TRAIND_REQUIRE_GPU=1, but gpu_init() found no CUDA device");
    cr_skip_test("no CUDA device: gpu_init() found none, CUDA tests skipped");
#else
    cr_skip_test("no CUDA device: this build has no CUDA backend (make GPU=0 or no nvcc)");
#endif
}

bool test_gpu_simulated(void) {
#ifdef TRAIND_CUDA
    static int simulated = -1; /* asked once: a test may ask in a loop */
    char name[256];
    if (simulated < 0)
        simulated = gpu_device_info(0, name, sizeof name, NULL, NULL) == 0 &&
                    strstr(name, "simulated") != NULL;
    return simulated == 1;
#else
    return false;
#endif
}

void test_gpu_cudnn(bool on) {
#ifdef TRAIND_CUDA
    gpu_cudnn_set_enabled(on);
#else
    (void)on;
#endif
}
