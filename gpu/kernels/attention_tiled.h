/* attention_tiled.h - attention_tiled.cu's register-tiled causal attention
 * (float32 heads of 32 or 64), for attention.cu, which launches it where it
 * fits and its own warp-per-row kernels elsewhere. Arguments as
 * gpu_launch_causal_attention's (gpu/kernels.h).
 */
#ifndef TRAIND_GPU_KERNELS_ATTENTION_TILED_H
#define TRAIND_GPU_KERNELS_ATTENTION_TILED_H

#include <stdbool.h>
#include <stdint.h>

#include "gpu/kernels.h"

/* Whether the tiled kernels take a problem of this dtype and head size
 * whose n tensors start at ptrs: float32, d 32 or 64, every pointer on 16
 * bytes (float4 loads), and not turned off (gpu_attention_tiles_enabled). */
bool attention_tiled_fits(int dtype, int64_t d, int n, const void *const *ptrs);

void attention_tiled_forward(const float *q, const float *k, const float *v, float *out,
                             float *lse, int64_t bh, int64_t t, int d, GpuAttentionArgs a);

/* gq, gk and gv from delta = rowsum(gout * out), which the caller has
 * queued. */
void attention_tiled_backward(const float *q, const float *k, const float *v, const float *lse,
                              const float *gout, const float *delta, float *gq, float *gk,
                              float *gv, int64_t bh, int64_t t, int d, GpuAttentionArgs a);

#endif
