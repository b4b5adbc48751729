/* error.c - thread-local last-error buffer; see error.h. */
#include "core/error.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char error_buf[ERROR_MAX];

int error_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_buf, sizeof error_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int error_prefix(const char *fmt, ...) {
    char joined[2 * ERROR_MAX + 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(joined, ERROR_MAX, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if (n >= ERROR_MAX) n = ERROR_MAX - 1;
    /* long messages are cut at ERROR_MAX - 1 bytes */
    snprintf(joined + n, sizeof joined - (size_t)n, ": %s", error_buf);
    memcpy(error_buf, joined, ERROR_MAX - 1);
    error_buf[ERROR_MAX - 1] = '\0';
    return -1;
}

const char *error_get(void) { return error_buf; }

void error_clear(void) { error_buf[0] = '\0'; }
