/* stream_auth.c - streams end when their token stops working; see
 * stream_auth.h. */
#include "server/stream_auth.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/json_text.h"

void stream_auth_init(StreamAuth *a, Db *db, const HttpAuth *who, const char *path) {
    memset(a, 0, sizeof *a);
    a->db = db;
    a->user_id = who->user_id;
    snprintf(a->token_sha256, sizeof a->token_sha256, "%s", who->token_sha256);
    snprintf(a->path, sizeof a->path, "%s", path);
    clock_gettime(CLOCK_MONOTONIC, &a->checked);
}

static bool check_due(StreamAuth *a) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (now.tv_sec - a->checked.tv_sec) * 1000 +
                 (now.tv_nsec - a->checked.tv_nsec) / 1000000;
    if (ms < STREAM_AUTH_CHECK_MS) return false;
    a->checked = now;
    return true;
}

bool stream_auth_revoked(StreamAuth *a, bool now) {
    if (a->lost) return true;
    if (!check_due(a) && !now) return false;
    error_clear();
    if (db_user_token_valid(a->db, a->user_id, a->token_sha256) != DB_NOT_FOUND) return false;
    a->lost = true;
    return true;
}

bool stream_auth_lost(StreamAuth *a, SseBuf *out) {
    if (a->lost) return true;
    if (!stream_auth_revoked(a, false)) return false;
    json_t *body = json_pack("{s:{s:s, s:o, s:o}}", "error", "code", "unauthorized", "message",
                             json_text(error_get()), "path", json_text(a->path));
    if (body) sse_event(out, -1, "error", body);
    return true;
}
