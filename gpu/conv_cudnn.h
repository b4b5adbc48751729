/* conv_cudnn.h - Conv2d whole on cuDNN (conv_cudnn.c): the CUDA table's
 * conv2d, conv2d_backward_data and conv2d_backward_weights entries (their
 * contract is core/backend.h's: 0 done, -1 with an error set, 1 declined,
 * so ops/conv2d.c runs im2col + GEMM), and the switch and counters tests
 * and benchmarks use. C only: it sees Tensors, never cudnn.h.
 */
#ifndef TRAIND_GPU_CONV_CUDNN_H
#define TRAIND_GPU_CONV_CUDNN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"

int gpu_cudnn_conv2d(const Window2d *w, int groups, const Tensor *x, const Tensor *weight,
                     const Tensor *bias, Tensor *out);
int gpu_cudnn_conv2d_backward_data(const Window2d *w, int groups, const Tensor *weight,
                                   const Tensor *gy, Tensor *gx);
int gpu_cudnn_conv2d_backward_weights(const Window2d *w, int groups, const Tensor *x,
                                      const Tensor *gy, Tensor *gw, Tensor *gb);

/* Whether the three entries take their cases: on unless the environment
 * has TRAIND_CUDNN=0 (read once, at the first convolution), or a test set
 * it with gpu_cudnn_set_enabled. Off, every call returns 1. */
bool gpu_cudnn_enabled(void);
void gpu_cudnn_set_enabled(bool on);

/* Counters since start-up, over all devices and passes: algorithm
 * searches (cudnnFind*AlgorithmEx, one per pass and shape), and passes run
 * on cuDNN. Either pointer may be NULL. */
void gpu_cudnn_stats(uint64_t *finds, uint64_t *runs);

#endif
