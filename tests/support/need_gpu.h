/* need_gpu.h - skips a Criterion test when cuda:0 is not there: no device
 * found, or a build without the CUDA backend (make GPU=0, no nvcc). */
#ifndef TRAIND_TESTS_NEED_GPU_H
#define TRAIND_TESTS_NEED_GPU_H

#include <stdbool.h>

/* Returns when cuda:0 is there; otherwise skips the calling test with
 * "no CUDA device: ..." saying why. */
void test_need_gpu(void);

/* Whether cuda:0 is tests/sim's simulated device (make test-simdev),
 * which runs a kernel on the CPU thousands of times slower than a GPU:
 * tests sized to keep a GPU busy take smaller sizes there. */
bool test_gpu_simulated(void);

/* Turns cuDNN's convolutions on the GPU on or off for this process
 * (gpu_cudnn_set_enabled); nothing in a build without CUDA. */
void test_gpu_cudnn(bool on);

#endif
