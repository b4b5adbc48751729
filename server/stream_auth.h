/* stream_auth.h - a stream's caller, checked again while it streams.
 *
 * A ?follow=1 stream (metrics.c, logs.c) may stay open for hours; its
 * token was checked once, when it opened. Revoking the user, or rotating
 * their token (traind user revoke|rotate, POST /v1/users/{name}/revoke|
 * rotate), must cut it off too: the stream's producer, which the server calls on
 * its ticks (~200 ms) while the stream waits, asks stream_auth_lost at
 * most every STREAM_AUTH_CHECK_MS whether the token still works
 * (db_user_token_valid: one indexed read). Once it does not, the stream
 * gets a last `event: error` with the API's JSON error body (401
 * unauthorized) and ends: within about STREAM_AUTH_CHECK_MS plus a tick of
 * the change. An upload's body (server/routes/dataset_upload.c) is such a
 * stream the other way: it asks stream_auth_revoked as its chunks come,
 * and once more before its dataset is made.
 */
#ifndef TRAIND_SERVER_STREAM_AUTH_H
#define TRAIND_SERVER_STREAM_AUTH_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "server/http.h"
#include "server/sse.h"
#include "storage/db.h"

#define STREAM_AUTH_CHECK_MS 500

typedef struct {
    Db *db;
    int64_t user_id;
    char token_sha256[65];
    char path[160];          /* the request's path, for the error body */
    struct timespec checked; /* CLOCK_MONOTONIC of the last check */
    bool lost;
} StreamAuth;

/* The caller `who` (http_auth) of the request at path, checked from now on. */
void stream_auth_init(StreamAuth *a, Db *db, const HttpAuth *who, const char *path);

/* Whether the caller's token has stopped working: asks the database when
 * STREAM_AUTH_CHECK_MS have passed since the last check, or at once with
 * `now`; the reason in error_get(). A failing database is not an answer.
 * True from then on. */
bool stream_auth_revoked(StreamAuth *a, bool now);

/* stream_auth_revoked for a stream of events: when STREAM_AUTH_CHECK_MS
 * have passed since the last check, asks the database; the first time it
 * answers no, appends `event: error` (data: {"error": {"code":
 * "unauthorized", "message", "path"}}) to out. A failing database is not
 * an answer: the stream goes on and asks again. True from then on. */
bool stream_auth_lost(StreamAuth *a, SseBuf *out);

#endif
