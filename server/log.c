/* log.c - JSON lines on stderr; see log.h. */
#include "server/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/text_json.h"

static atomic_int log_requests = 1;

void log_set_requests(int on) { atomic_store(&log_requests, on); }
int log_requests_enabled(void) { return atomic_load(&log_requests); }

json_t *log_string(const char *s) {
    if (!s) s = "";
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy) return NULL;
    /* keep ASCII and well-formed multi-byte sequences, replace the rest */
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int len = p[i] < 0x80 ? 1 : (p[i] >> 5) == 6 ? 2 : (p[i] >> 4) == 14 ? 3
                  : (p[i] >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++) ok = (p[i + k] >> 6) == 2;
        if (ok && len > 1) { /* overlong forms and surrogates: let jansson judge */
            json_t *probe = json_stringn((const char *)p + i, (size_t)len);
            ok = probe != NULL;
            json_decref(probe);
        }
        if (!ok) {
            copy[o++] = '?';
            i++;
            continue;
        }
        memcpy(copy + o, p + i, (size_t)len);
        o += (size_t)len;
        i += (size_t)len;
    }
    j = json_stringn(copy, o);
    free(copy);
    return j;
}

void log_json(const char *event, json_t *obj) {
    if (!obj) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[40];
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", ts.tv_nsec / 1000000);

    /* "ts" and "event" first: a fresh object, then obj's fields in order */
    json_t *line = json_object();
    if (!line) {
        json_decref(obj);
        return;
    }
    json_object_set_new(line, "ts", json_string(stamp));
    json_object_set_new(line, "event", json_string(event));
    json_object_update(line, obj);
    json_decref(obj);
    Text text = {0};
    text_json(&text, line);
    text_put(&text, "\n", 1);
    json_decref(line);
    if (!text.oom) {
        /* one write per line: stderr is shared by every thread */
        ssize_t w = write(STDERR_FILENO, text.buf, text.len);
        (void)w;
    }
    text_free(&text);
}

void log_message(const char *event, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    if (!o) return;
    json_object_set_new(o, "message", log_string(msg));
    log_json(event, o);
}
