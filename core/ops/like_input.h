/* like_input.h - the check that an op's weight, bias or statistics tensor
 * matches its input's dtype and device, shared by the ops that take such
 * tensors (core/ops/conv2d.c, batch_norm.c, layer_norm.c).
 */
#ifndef TRAIND_CORE_OPS_LIKE_INPUT_H
#define TRAIND_CORE_OPS_LIKE_INPUT_H

#include "core/tensor.h"

/* 0 when t has x's dtype and device; otherwise -1 with "conv2d: weight is
 * float64 but input is float32" or "... weight is on cuda:0 but input is on
 * cpu" (`op` and `what` name them). */
int ops_check_like_input(const char *op, const char *what, const Tensor *t, const Tensor *x);

#endif
