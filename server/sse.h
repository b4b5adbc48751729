/* sse.h - Server-Sent Events framing for the streamed routes.
 *
 * An SseBuf collects events as text/event-stream frames
 *     id: 12\nevent: metric\ndata: {...}\n\n
 * and hands them out in pieces of whatever size the connection asks for, so a
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
#include <time.h>

#include <jansson.h>

#include "server/http.h"

typedef struct {
    char *buf;
    size_t len, cap, pos; /* pending bytes are buf[pos..len) */
} SseBuf;

/* Appends an event; data is compact JSON (takes its reference). id < 0:
 * no id line. 0, or -1 when out of memory. */
int sse_event(SseBuf *b, int64_t id, const char *event, json_t *data);
/* "retry: ms", how long a browser waits before reconnecting. */
int sse_retry(SseBuf *b, int ms);
bool sse_pending(const SseBuf *b);
/* Copies up to max pending bytes to out; returns how many (0: none). */
ssize_t sse_take(SseBuf *b, char *out, size_t max);
void sse_free(SseBuf *b);

/* When a follower (a ?follow=1 stream) looks at the database and when it
 * says it is alive. It polls at once after a poll that found rows (more
 * may wait, or the end), when a watched generation counter moved, or every
 * SSE_FALLBACK_POLL_MS (a counter bumped just before a state change commits
 * is otherwise missed); after SSE_KEEPALIVE_S of silence it sends a
 * keep-alive comment, which proxies need. */
#define SSE_KEEPALIVE_S 15
#define SSE_FALLBACK_POLL_MS 1000
#define SSE_MAX_GENERATIONS 2

typedef struct {
    uint64_t gens[SSE_MAX_GENERATIONS];
    bool poll_now; /* set by the follower's poll when it found rows; cleared by sse_pacer_due */
    /* on the monotonic clock (clock_now_s): one set back must not hold
     * the keep-alives back, and a proxy drop the quiet stream */
    double last_out;
    struct timespec last_poll;
} SsePacer;

/* A pacer that polls on its first call. */
void sse_pacer_init(SsePacer *p);
/* True when the follower should poll now, given the current values of the
 * generation counters it watches (n <= SSE_MAX_GENERATIONS); records them. */
bool sse_pacer_due(SsePacer *p, const uint64_t *gens, int n);
/* The bytes to hand the connection from `out` (a keep-alive when silent too long), or
 * 0 when there is nothing yet. */
ssize_t sse_pacer_take(SsePacer *p, SseBuf *out, char *buf, size_t max);

/* One read of a follower's stream (an HttpStreamFn's body): its pending
 * bytes first; HTTP_STREAM_END once it has ended and they are out; else
 * poll(ctx) when the pacer says so (given the current values of the
 * generations it watches), which frames new events into out and may end
 * it; HTTP_STREAM_ERROR when poll fails. */
ssize_t sse_follow_read(SsePacer *p, SseBuf *out, bool ended, const uint64_t *gens, int n,
                        int (*poll)(void *ctx), void *ctx, char *buf, size_t max);

/* Where a follower resumes: Last-Event-ID (a reconnect: *reconnect true)
 * if present and the request follows (a page, not a stream, is where its
 * `after` says, whatever a client's headers hold), else the query argument
 * `after`, else def. -1 after replying 400 for a value that is not an
 * integer; 0 otherwise, the value in *out. */
int sse_resume_point(HttpRequest *req, bool follow, int64_t def, int64_t *out, bool *reconnect);

/* A JSON number, or null for NaN and infinities (JSON has neither). */
json_t *sse_number(double v);

#endif
