/* pool_ties.h - the max-pool tie cases of tests/fixtures/pool_ties.json
 * (gen_pool_ties.py) run on a device against PyTorch: the backend's kernel
 * (output and argmax indices) and the op's forward and backward, all exact
 * (integer inputs, a permutation of integers as the upstream gradient).
 * Fails the current Criterion test at the first difference, naming the
 * case, the dtype, the device and the tensor. */
#ifndef TRAIND_TESTS_POOL_TIES_H
#define TRAIND_TESTS_POOL_TIES_H

#include <jansson.h>

#include "core/tensor.h"

/* Runs case `name` of the loaded fixture on `device` in `dtype` (float32 or
 * float64: the fixture's integers convert exactly). */
void pool_ties_check(json_t *fixture, const char *name, Device device, DType dtype);
/* Every case of pool_ties.json in both float dtypes. */
void pool_ties_check_all(Device device);

#endif
