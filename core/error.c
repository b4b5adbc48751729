/* error.c - the thread-local last error; see error.h. */
#include "core/error.h"

#include <stdio.h>
#include <string.h>

static _Thread_local Error last;

/* a + sep + b into dst (size bytes), cut at size - 1 bytes: messages and
 * paths longer than their buffers lose their ends. */
static void join(char *dst, size_t size, const char *a, const char *sep, const char *b) {
    char out[ERROR_MAX];
    size_t n = 0;
    const char *parts[3] = {a, sep, b};
    if (size > sizeof out) size = sizeof out;
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(parts[i]);
        if (len > size - 1 - n) len = size - 1 - n;
        memcpy(out + n, parts[i], len);
        n += len;
    }
    out[n] = '\0';
    memcpy(dst, out, n + 1);
}

int error_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last.message, sizeof last.message, fmt, ap);
    va_end(ap);
    last.path[0] = '\0';
    last.sys_errno = 0;
    return -1;
}

int error_sys(int err, const char *fmt, ...) {
    char msg[ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    join(last.message, sizeof last.message, msg, ": ", strerror(err));
    last.path[0] = '\0';
    last.sys_errno = err;
    return -1;
}

int error_set_errno(int err) {
    last.sys_errno = err;
    return -1;
}

int error_at(const char *path, const char *fmt, ...) {
    char msg[ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    join(last.message, sizeof last.message, path, ": ", msg);
    join(last.path, sizeof last.path, path, "", "");
    last.sys_errno = 0;
    return -1;
}

int error_prefix(const char *fmt, ...) {
    char prefix[ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    join(last.message, sizeof last.message, prefix, ": ", last.message);
    return -1;
}

int error_prefix_at(const char *path) {
    join(last.message, sizeof last.message, path, ": ", last.message);
    join(last.path, sizeof last.path, path, "", "");
    return -1;
}

int error_nest(const char *parent) {
    join(last.message, sizeof last.message, parent, ".", last.message);
    join(last.path, sizeof last.path, parent, last.path[0] ? "." : "", last.path);
    return -1;
}

int error_set_path(const char *path) {
    join(last.path, sizeof last.path, path ? path : "", "", "");
    return -1;
}

const char *error_get(void) { return last.message; }

const Error *error_last(void) { return &last; }

int error_restore(const Error *e) {
    last = *e;
    return -1;
}

void error_clear(void) {
    last.message[0] = '\0';
    last.path[0] = '\0';
    last.sys_errno = 0;
}
