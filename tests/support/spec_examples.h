/* spec_examples.h - the job specs the spec tests start from, and what
 * they do with them: parse one, change one field, expect an error. Each
 * fails the current Criterion test where it cannot do its part.
 */
#ifndef TRAIND_TESTS_SPEC_EXAMPLES_H
#define TRAIND_TESTS_SPEC_EXAMPLES_H

#include <stdbool.h>

#include "core/spec.h"

/* design.md's example, verbatim, except that JSON has no comments. */
extern const char *const spec_example_design;
/* A small valid spec: an MLP on 4 features, 3 classes. */
extern const char *const spec_example_mlp;

/* The parsed spec; fails the test with the parser's error otherwise. */
JobSpec *spec_example_parse(const char *text);
/* `base` with the value at a dotted path ("optimizer.lr") replaced by
 * value_json, or removed when value_json is NULL. Returns malloc'd text. */
char *spec_example_variant(const char *base, const char *dotted, const char *value_json);
/* Parsing text fails with exactly `want` (exact) or an error starting with it. */
void spec_example_expect_error(const char *text, const char *want, bool exact);
/* MNIST as the daemon describes it: uint8 [28, 28] images, labels 0..9. */
SpecDataShape spec_example_mnist(void);

#endif
