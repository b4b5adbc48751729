/* gradcheck.h - finite-difference gradient checks in float64.
 *
 * gradcheck(f, ctx, n, inputs) compares, for every input that requires grad
 * and every element, the autograd gradient of L = sum(f(inputs) * W) (W a
 * fixed pseudo-random weight of f's output shape, so every output element
 * matters) with the central difference (L(x + eps) - L(x - eps)) / 2 eps.
 * Inputs must be float64 CPU tensors. Fails the current Criterion test with
 * the op's name, the input, the element and both values.
 */
#ifndef TRAIND_TESTS_GRADCHECK_H
#define TRAIND_TESTS_GRADCHECK_H

#include "core/tensor.h"

/* Must return a new reference (or NULL), recording autograd as usual. */
typedef Tensor *(*GradcheckFn)(Tensor **inputs, void *ctx);

void gradcheck(const char *name, GradcheckFn f, void *ctx, int n_inputs, Tensor **inputs);
/* Tolerances (defaults: eps 1e-6, atol 1e-5, rtol 1e-4). */
void gradcheck_tol(const char *name, GradcheckFn f, void *ctx, int n_inputs, Tensor **inputs,
                   double eps, double atol, double rtol);
/* A float64 CPU tensor of `shape` with values uniform in [lo, hi) from
 * `seed`, requiring grad. */
Tensor *gradcheck_input(int ndim, const int64_t *shape, double lo, double hi, uint64_t seed);
/* The same values in [-1, 1) as a float32 leaf that does not require
 * grad (a test's float32 input). */
Tensor *gradcheck_uniform32(int ndim, const int64_t *shape, uint64_t seed);

#endif
