/* text.h - a growable text buffer for replies built as bytes rather than
 * as a jansson tree: the metric history (10,000 points) and the Prometheus
 * page. A failed allocation sets oom and makes every later call a no-op,
 * so a builder checks once at the end. The finished buffer is handed to
 * http_reply_owned, which sends it without a copy and frees it.
 */
#ifndef TRAIND_SERVER_TEXT_H
#define TRAIND_SERVER_TEXT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *buf; /* NUL-terminated while not oom */
    size_t len, cap;
    bool oom;
} Text;

void text_put(Text *t, const char *s, size_t n);
void text_puts(Text *t, const char *s);
void text_printf(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A decimal integer, without printf's format parsing. */
void text_int(Text *t, long long v);
/* The longest text_real_chars writes, its NUL included
 * ("-1.2345678901234567e-308" is 24 bytes). */
#define TEXT_REAL_MAX 32
/* A JSON number that reads back as exactly v, as Python's repr(float)
 * writes it: the fewest significant digits that strtod reads back to the
 * same bits (the nearest such when there are several: 0.1, not
 * 0.10000000000000001), positional from 1e-4 up to 1e16 with ".0" when
 * integral ("100.0", "-0.0", "0.0001"), else "1e+16", "1e-05", "5e-324";
 * null for NaN or infinity (JSON has no spelling for them). Into out, NUL
 * terminated; returns the length. */
size_t text_real_chars(char out[TEXT_REAL_MAX], double v);
/* The same appended to t. */
void text_real(Text *t, double v);
void text_free(Text *t);

#endif
