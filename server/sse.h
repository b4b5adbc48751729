/* sse.h - Server-Sent Events framing for the streamed routes.
 *
 * An SseBuf collects events as text/event-stream frames
 *     id: 12\nevent: metric\ndata: {...}\n\n
 * and hands them out in pieces of whatever size MHD asks for, so a
 * stream's producer (server/http.h HttpStreamFn) can query a batch of rows,
 * frame them all, and return them over several calls. The follow routes
 * (metrics.c, logs.c) share it, and the Last-Event-ID parsing a
 * reconnecting EventSource sends.
 */
#ifndef TRAIND_SERVER_SSE_H
#define TRAIND_SERVER_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "server/http.h"

typedef struct {
    char *buf;
    size_t len, cap, pos; /* pending bytes are buf[pos..len) */
} SseBuf;

/* Appends an event; data is compact JSON (takes its reference). id < 0:
 * no id line. 0, or -1 when out of memory. */
int sse_event(SseBuf *b, int64_t id, const char *event, json_t *data);
/* A comment line (": text"), the keep-alive that proxies need. */
int sse_comment(SseBuf *b, const char *text);
/* "retry: ms", how long a browser waits before reconnecting. */
int sse_retry(SseBuf *b, int ms);
bool sse_pending(const SseBuf *b);
/* Copies up to max pending bytes to out; returns how many (0: none). */
ssize_t sse_take(SseBuf *b, char *out, size_t max);
void sse_free(SseBuf *b);

/* Where a follower resumes: Last-Event-ID (a reconnect) if present, else
 * the query argument `after`, else def. -1 after replying 400 for a value
 * that is not an integer; 0 otherwise, the value in *out. */
int sse_resume_point(HttpRequest *req, int64_t def, int64_t *out);

/* A JSON number, or null for NaN and infinities (JSON has neither). */
json_t *sse_number(double v);

#endif
