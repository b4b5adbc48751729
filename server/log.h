/* log.h - the daemon's structured log: one JSON object per line on stderr.
 *
 * Every line carries "ts" (UTC, RFC 3339 with milliseconds) and "event"
 * ("request", "listening", "job", ...), so `jq` or a log shipper can read
 * the stream without guessing. A line is written with one write(2), so lines
 * from the HTTP threads and the scheduler's workers never interleave.
 */
#ifndef TRAIND_SERVER_LOG_H
#define TRAIND_SERVER_LOG_H

#include <jansson.h>

/* Adds "ts" and "event" in front of obj's fields and writes it; takes obj's
 * reference (NULL is ignored). */
void log_json(const char *event, json_t *obj);

/* A one-off line {"event": event, "message": "..."}. */
void log_message(const char *event, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Turns request lines off (tests that want a quiet stderr); default on. */
void log_set_requests(int on);
int log_requests_enabled(void);

#endif
