/* repr.h - a double as JSON text that reads back as exactly that double,
 * written as Python's repr(float) writes it: the fewest significant digits
 * that strtod reads back to the same bits (the nearest such when there are
 * several: 0.1, not 0.10000000000000001), positional from 1e-4 up to 1e16
 * with ".0" when integral ("100.0", "-0.0", "0.0001"), else "1e+16",
 * "1e-05", "5e-324"; null for NaN or infinity (JSON has no spelling for
 * them). Every number the API, its streams, logs and `traind run --jsonl`
 * print goes through here, so a value has one spelling everywhere.
 */
#ifndef TRAIND_CORE_REPR_H
#define TRAIND_CORE_REPR_H

#include <stddef.h>

/* The longest repr_double writes, its NUL included
 * ("-1.2345678901234567e-308" is 24 bytes). */
#define REPR_DOUBLE_MAX 32

/* v into out, NUL terminated; returns the length. */
size_t repr_double(char out[REPR_DOUBLE_MAX], double v);

#endif
