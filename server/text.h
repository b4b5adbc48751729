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
/* A JSON number that reads back as exactly v: core/repr.h's repr_double
 * (0.1, not 0.10000000000000001; null for NaN), appended to t. */
void text_real(Text *t, double v);
void text_free(Text *t);

#endif
