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

#include "core/json_text.h"
#include "server/text_json.h"

static atomic_int log_requests = 1;

void log_set_requests(int on) { atomic_store(&log_requests, on); }
int log_requests_enabled(void) { return atomic_load(&log_requests); }

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
    json_object_set_new(o, "message", json_text(msg));
    log_json(event, o);
}
