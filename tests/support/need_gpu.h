/* need_gpu.h - skips a Criterion test when cuda:0 is not there: no device
 * found, or a build without the CUDA backend (make GPU=0, no nvcc). */
#ifndef TRAIND_TESTS_NEED_GPU_H
#define TRAIND_TESTS_NEED_GPU_H

#include <stdbool.h>

/* Returns when cuda:0 is there; otherwise skips the calling test with
 * "no CUDA device: ..." saying why. */
void test_need_gpu(void);

/* Turns cuDNN's convolutions on the GPU on or off for this process
 * (gpu_cudnn_set_enabled); nothing in a build without CUDA. */
void test_gpu_cudnn(bool on);

#endif
