/* parity.h - an op on the GPU against the same op on the CPU, for the
 * GPU's unit tests (tests/unit/test_gpu_*.c): random inputs, copies to
 * cuda:0 and back, the normwise relative error, and one op's forward and
 * backward compared on both devices in float32 and float64. Every check
 * fails the current Criterion test, naming what it compared.
 */
#ifndef TRAIND_TESTS_PARITY_H
#define TRAIND_TESTS_PARITY_H

#include "core/rng.h"
#include "core/tensor.h"

#define CUDA0 ((Device){DEVICE_CUDA, 0})

/* An op under test: its output from in[], with ctx its fixed arguments. */
typedef Tensor *(*ParityOp)(Tensor **in, const void *ctx);
/* Builds an op's CPU inputs of dtype dt in in[] from r; returns how many. */
typedef int (*ParityInputs)(Rng *r, DType dt, Tensor **in);

/* A CPU tensor of `shape` drawn uniformly from [lo, hi). */
Tensor *parity_rand(Rng *r, int ndim, const int64_t *shape, DType dt, double lo, double hi);
/* Copies of t on cuda:0 and on the host. */
Tensor *parity_to_gpu(Tensor *t);
Tensor *parity_to_host(Tensor *t);
void parity_release_all(int n, Tensor **t);

/* max |got - want| / max |want| over all elements (normwise); NaN in the
 * same places counts as equal. got may live on the GPU. */
double parity_rel_err(const Tensor *got, const Tensor *want);
/* Prints the error of `what` and fails the test above tol. */
void parity_check_close(const char *what, DType dt, const Tensor *got, const Tensor *want,
                        double tol);

/* f on the CPU inputs and on their GPU copies, float inputs requiring
 * grad: the outputs, and every input's gradient of sum(f(in) * w) for a
 * random w, within tol. */
void parity_op(const char *name, int nin, Tensor **cpu_in, ParityOp f, const void *ctx, DType dt,
               double tol);
/* parity_op in float32 (within tol32) and float64 (within 1e-11), on
 * fresh inputs from make. */
void parity_both_dtypes(const char *name, ParityInputs make, ParityOp f, const void *ctx,
                        double tol32);

#endif
