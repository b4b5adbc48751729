/* text.c - the growable reply buffer of text.h. */
#include "server/text.h"

#include "core/repr.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL; false (and oom) when there is none. */
static bool reserve(Text *t, size_t n) {
    if (t->oom) return false;
    if (t->len + n + 1 <= t->cap) return true;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + n + 1) cap *= 2;
    char *grown = realloc(t->buf, cap);
    if (!grown) {
        t->oom = true;
        return false;
    }
    t->buf = grown;
    t->cap = cap;
    return true;
}

void text_put(Text *t, const char *s, size_t n) {
    if (!reserve(t, n)) return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

void text_puts(Text *t, const char *s) { text_put(t, s, strlen(s)); }

void text_printf(Text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->oom = true;
        return;
    }
    if (!reserve(t, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void text_int(Text *t, long long v) {
    char b[24], *p = b + sizeof b;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do *--p = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (v < 0) *--p = '-';
    text_put(t, p, (size_t)(b + sizeof b - p));
}

void text_real(Text *t, double v) {
    char b[REPR_DOUBLE_MAX];
    text_put(t, b, repr_double(b, v));
}

void text_free(Text *t) {
    free(t->buf);
    *t = (Text){0};
}
