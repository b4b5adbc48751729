/* placed_spec.h - a small valid job spec (a Linear layer on a CSV file
 * nobody opens, batch_size 8) with the placement fields a test gives:
 * "ranks", "gpus", "devices", "device", "nodes". */
#ifndef TRAIND_TESTS_PLACED_SPEC_H
#define TRAIND_TESTS_PLACED_SPEC_H

#include "core/spec.h"

/* fields: "" or JSON members after a comma (", \"gpus\": 2"). Fails the
 * current Criterion test when the spec does not parse. */
JobSpec *placed_spec(const char *fields);

#endif
