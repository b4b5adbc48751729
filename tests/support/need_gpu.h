/* need_gpu.h - skips a Criterion test when cuda:0 is not there: no device
 * found, or a build without the CUDA backend (make GPU=0, no nvcc). */
#ifndef TRAIND_TESTS_NEED_GPU_H
#define TRAIND_TESTS_NEED_GPU_H

/* Returns when cuda:0 is there; otherwise skips the calling test with
 * "no CUDA device: ..." saying why. */
void test_need_gpu(void);

#endif
