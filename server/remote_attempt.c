/* remote_attempt.c - the token of an attempt run outside the daemon: issued
 * (scheduler_remote_token, server/scheduler.h) and checked
 * (remote_attempt.h). */
#include "server/remote_attempt.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "server/scheduler_internal.h"
#include "storage/sha256.h"

int scheduler_remote_token(Scheduler *s, int64_t job, int attempt, char token[65]) {
    char hash[SHA256_HEX_LEN + 1];
    if (db_token_new(token) != 0) return -1;
    sha256_buffer_hex(token, DB_TOKEN_LEN, hash);
    if (db_job_remote_token_set(s->db, job, attempt, hash) != DB_OK) {
        memset(token, 0, DB_TOKEN_LEN + 1);
        return error_prefix("job %" PRId64 " attempt %d: token", job, attempt);
    }
    return 0;
}

RemoteAuth remote_attempt_check(const DbJobRemote *r, int64_t job, int attempt, const char *token,
                                char *why, size_t size) {
    char hash[SHA256_HEX_LEN + 1];
    sha256_buffer_hex(token, strlen(token), hash);
    if (strlen(r->token_sha256) != SHA256_HEX_LEN || !sha256_hex_equal(hash, r->token_sha256)) {
        snprintf(why, size, "invalid attempt token for job %" PRId64, job);
        return REMOTE_AUTH_BAD_TOKEN;
    }
    if (r->state != DB_JOB_RUNNING) {
        snprintf(why, size, "job %" PRId64 " is %s: attempt %d is over", job,
                 db_job_state_name(r->state), attempt);
        return REMOTE_AUTH_STALE;
    }
    if (attempt != r->attempt || attempt != r->token_attempt) {
        snprintf(why, size, "job %" PRId64 " runs attempt %d, not %d", job, r->attempt, attempt);
        return REMOTE_AUTH_STALE;
    }
    return REMOTE_AUTH_OK;
}
