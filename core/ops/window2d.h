/* window2d.h - the geometry shared by conv2d and the pooling ops.
 *
 * Validates a 4-d input against a kernel, stride and padding and fills the
 * Window2d (core/backend.h) that the im2col and pooling kernels take. Used by
 * core/ops/conv2d.c, pool.c and conv_relu_pool.c only.
 */
#ifndef TRAIND_CORE_OPS_WINDOW2D_H
#define TRAIND_CORE_OPS_WINDOW2D_H

#include "core/backend.h"
#include "core/ops.h"

/* Fills *w for x [N, C, H, W] (dilation 1), or returns -1 with an error
 * naming `op` and x's shape: x not 4-d, kernel or stride < 1, padding < 0,
 * or a kernel larger than the padded input. */
int window2d_init(const char *op, const Tensor *x, int kernel_h, int kernel_w, int stride_h,
                  int stride_w, int pad_h, int pad_w, Window2d *w);
/* The same over an input of `shape`, with a dilation (>= 1): the kernel
 * spans d * (k - 1) + 1. */
int window2d_init_dilated(const char *op, int ndim, const int64_t *shape, int kernel_h,
                          int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w,
                          int dilation_h, int dilation_w, Window2d *w);

/* A pooling window over an input of `shape` with torch's defaults and
 * limits: stride 0 means the kernel size; padding at most half the
 * kernel (core/ops/pool.c, conv_relu_pool.c). */
int window2d_init_pool(const char *op, int ndim, const int64_t *shape, int kh, int kw, int sh,
                       int sw, int ph, int pw, Window2d *w);
/* conv2d's checks of x, weight [O, C/groups, kh, kw] and bias against p,
 * and its window (core/ops/conv2d.c); a 5-d x is read as the blocked
 * layout of its NCHW shape (core/ops.h's TENSOR_BLOCK). */
int conv2d_window(const Tensor *x, const Tensor *weight, const Tensor *bias,
                  const Conv2dParams *p, Window2d *g);

#endif
