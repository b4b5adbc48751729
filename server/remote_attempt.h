/* remote_attempt.h - who may report for an attempt run outside the daemon:
 * the check of the token its ranks send (server/remote_attempt.c, which
 * also issues it: scheduler_remote_token in server/scheduler.h).
 *
 * A token is good for one attempt of one job: its sha256 must equal the
 * one stored for the job (compared in constant time), else the request is
 * unauthorized (401). A good token for an attempt that is no longer
 * running (the job ended, was requeued, or another attempt is current) is
 * stale (409 stale_attempt): the rank that gets it stops. A token of an
 * earlier attempt no longer matches the stored hash at all: 401, which
 * stops a rank as well.
 */
#ifndef TRAIND_SERVER_REMOTE_ATTEMPT_H
#define TRAIND_SERVER_REMOTE_ATTEMPT_H

#include <stddef.h>

#include "storage/db.h"

typedef enum {
    REMOTE_AUTH_OK,
    REMOTE_AUTH_BAD_TOKEN, /* 401 */
    REMOTE_AUTH_STALE,     /* 409 stale_attempt */
} RemoteAuth;

/* token (as sent; any length) against the job's remote state r for
 * `attempt`; why (size bytes) says what is wrong. Pure. */
RemoteAuth remote_attempt_check(const DbJobRemote *r, int64_t job, int attempt, const char *token,
                                char *why, size_t size);

#endif
