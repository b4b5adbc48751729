/* sse.c - text/event-stream framing; see sse.h. */
#include "server/sse.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "server/text_json.h"

static int append(SseBuf *b, const char *text, size_t n) {
    if (b->pos == b->len) b->pos = b->len = 0; /* drained: start over */
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *grown = realloc(b->buf, cap);
        if (!grown) return -1;
        b->buf = grown;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, text, n);
    b->len += n;
    return 0;
}

int sse_event(SseBuf *b, int64_t id, const char *event, json_t *data) {
    size_t len = 0;
    char *text = text_json_dumps(data, &len);
    json_decref(data);
    if (!text) return -1;
    char head[128];
    int n = id >= 0 ? snprintf(head, sizeof head, "id: %lld\nevent: %s\ndata: ", (long long)id, event)
                    : snprintf(head, sizeof head, "event: %s\ndata: ", event);
    int rc = append(b, head, (size_t)n) || append(b, text, len) || append(b, "\n\n", 2);
    free(text);
    return rc ? -1 : 0;
}

/* A comment line (": text"), the keep-alive that proxies need. */
static int sse_comment(SseBuf *b, const char *text) {
    char line[256];
    int n = snprintf(line, sizeof line, ": %s\n\n", text);
    return append(b, line, (size_t)n);
}

int sse_retry(SseBuf *b, int ms) {
    char line[64];
    int n = snprintf(line, sizeof line, "retry: %d\n\n", ms);
    return append(b, line, (size_t)n);
}

bool sse_pending(const SseBuf *b) { return b->pos < b->len; }

ssize_t sse_take(SseBuf *b, char *out, size_t max) {
    size_t n = b->len - b->pos;
    if (n > max) n = max;
    memcpy(out, b->buf + b->pos, n);
    b->pos += n;
    return (ssize_t)n;
}

void sse_free(SseBuf *b) {
    free(b->buf);
    memset(b, 0, sizeof *b);
}

int sse_resume_point(HttpRequest *req, bool follow, int64_t def, int64_t *out, bool *reconnect) {
    const char *last = follow ? http_header(req, "Last-Event-ID") : NULL;
    *reconnect = last && *last;
    if (*reconnect) {
        char *end;
        errno = 0;
        long long v = strtoll(last, &end, 10);
        if (*end || errno) {
            http_reply_error(req, 400, "bad_request", "Last-Event-ID",
                             "Last-Event-ID: expected an integer, got '%.32s'", last);
            return -1;
        }
        *out = v;
        return 0;
    }
    return http_query_int(req, "after", def, -1, INT64_MAX, out);
}

json_t *sse_number(double v) { return isfinite(v) ? json_real(v) : json_null(); }

void sse_pacer_init(SsePacer *p) {
    memset(p, 0, sizeof *p);
    p->poll_now = true;
    p->last_out = clock_now_s();
}

bool sse_pacer_due(SsePacer *p, const uint64_t *gens, int n) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t since_ms = (now.tv_sec - p->last_poll.tv_sec) * 1000 +
                       (now.tv_nsec - p->last_poll.tv_nsec) / 1000000;
    bool due = p->poll_now || since_ms >= SSE_FALLBACK_POLL_MS;
    for (int i = 0; i < n && i < SSE_MAX_GENERATIONS; i++) {
        if (gens[i] != p->gens[i]) due = true;
        p->gens[i] = gens[i];
    }
    if (due) p->last_poll = now;
    p->poll_now = false; /* until a poll finds rows again */
    return due;
}

ssize_t sse_pacer_take(SsePacer *p, SseBuf *out, char *buf, size_t max) {
    if (!sse_pending(out) && clock_now_s() - p->last_out >= SSE_KEEPALIVE_S)
        sse_comment(out, "keep-alive");
    if (!sse_pending(out)) return 0;
    p->last_out = clock_now_s();
    return sse_take(out, buf, max);
}

ssize_t sse_follow_read(SsePacer *p, SseBuf *out, bool ended, const uint64_t *gens, int n,
                        int (*poll)(void *ctx), void *ctx, char *buf, size_t max) {
    if (sse_pending(out)) return sse_pacer_take(p, out, buf, max);
    if (ended) return HTTP_STREAM_END;
    if (sse_pacer_due(p, gens, n) && poll(ctx) != 0) return HTTP_STREAM_ERROR;
    return sse_pacer_take(p, out, buf, max);
}
