/* fixture.h - reading the PyTorch fixtures and comparing tensors in tests.
 *
 * Fixtures are JSON files under tests/fixtures/, written by the gen_*.py
 * scripts beside them with Debian's python3-torch (make fixtures). Each file
 * is {"cases": {"name": {key: tensor-or-number, ...}}}, a tensor being
 * {"dtype": "float32", "shape": [2, 3], "data": [...]} (data flat, row-major).
 * Tests run from the repository root.
 */
#ifndef TRAIND_TESTS_FIXTURE_H
#define TRAIND_TESTS_FIXTURE_H

#include <jansson.h>

#include "core/tensor.h"
#include "core/tensor_dict.h"

/* Loads tests/fixtures/<name>.json; fails the current test if absent. */
json_t *fixture_load(const char *name);
/* The case object `name` of a loaded fixture; fails the test if absent. */
json_t *fixture_case(json_t *fixture, const char *name);
/* A new CPU tensor from case[key] (its own dtype). Fails the test if absent. */
Tensor *fixture_tensor(json_t *kase, const char *key);
double fixture_number(json_t *kase, const char *key);
/* Asserts |a - e| <= atol + rtol * |e| elementwise and equal shapes;
 * the failure message names `what`, the first bad index and both values. */
void assert_tensor_close(const Tensor *actual, const Tensor *expected, double rtol, double atol,
                         const char *what);
/* Asserts t holds exactly these values (shape checked by numel only). */
void assert_tensor_values(const Tensor *t, const double *values, int64_t n, double atol,
                          const char *what);
/* Asserts `got` (not NULL) is close to case[key]; failures name
 * "<case_name> <key>". */
void fixture_assert_close(json_t *kase, const char *key, const Tensor *got, double rtol,
                          double atol, const char *case_name);
/* Asserts that a state_dict has the keys of case["names"] in that order,
 * each of the shape in case["shapes"] and, when the case has "dtypes", of
 * that dtype: the names torch's model.state_dict() gives. */
void fixture_assert_state_dict(const TensorDict *sd, json_t *kase);
/* Asserts that t is NULL (an op that failed) and error_get() contains
 * `want`; releases t otherwise. */
void fixture_expect_error(Tensor *t, const char *want);
/* Path of `rel` under ../shared, or NULL when it does not exist. */
const char *shared_path(const char *rel, char *buf, size_t n);

#endif
