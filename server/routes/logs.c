/* logs.c - GET /v1/jobs/{id}/logs: a job's log lines ("epoch 0:
 * train_loss ...", "resumed from epoch-2", the error that ended it).
 *
 * ?after=SEQ&limit=N (1..10000, default 1000) pages through them:
 *     {"job_id": 3, "lines": [{"seq", "ts", "line"}], "next_after": 1000 | null}
 * ?tail=N (1..10000; not with after) gives the last N lines instead, as a
 * page of limit N (a dashboard opening a long run shows its end first).
 * ?follow=1 streams them as Server-Sent Events (id: <seq>, event: log),
 * honouring Last-Event-ID (or starting with the last `tail` lines), and ends with `event: end` once the job has
 * ended and its last line is out, or `event: error` once the caller's
 * token is revoked or rotated, as metrics.c does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/json_text.h"
#include "server/api.h"
#include "server/sse.h"
#include "server/stream_auth.h"

#define FOLLOW_BATCH 1000

static json_t *line_json(const DbLogLine *l) {
    return json_pack("{s:I, s:o, s:o}", "seq", (json_int_t)l->seq, "ts", api_time(l->ts), "line",
                     json_text(l->line));
}

typedef struct {
    Api *api;
    int64_t job, after;
    bool ended;
    SsePacer pace;
    SseBuf out;
    StreamAuth auth; /* ends the stream once the caller's token stops working */
} Follow;

static int follow_poll(void *ctx) {
    Follow *f = ctx;
    DbJob j;
    if (db_job_get(f->api->db, f->job, &j) != DB_OK) return -1;
    DbJobState state = j.state;
    db_job_clear(&j);
    DbLogLine *lines = NULL;
    int n = 0;
    if (db_log_list(f->api->db, f->job, f->after, FOLLOW_BATCH, &lines, &n) != DB_OK) return -1;
    for (int i = 0; i < n; i++) {
        if (sse_event(&f->out, lines[i].seq, "log", line_json(&lines[i])) != 0) {
            db_log_list_free(lines, n);
            return -1;
        }
        f->after = lines[i].seq;
    }
    db_log_list_free(lines, n);
    f->pace.poll_now = n > 0; /* more may wait, or the end: look again at once */
    if (n == 0 && db_job_state_final(state)) {
        sse_event(&f->out, -1, "end", json_pack("{s:I, s:s}", "job_id", (json_int_t)f->job,
                                                "state", db_job_state_name(state)));
        f->ended = true;
    }
    return 0;
}

static ssize_t follow_read(void *ctx, char *buf, size_t max) {
    Follow *f = ctx;
    if (!f->ended && stream_auth_lost(&f->auth, &f->out)) f->ended = true;
    uint64_t gens[1] = {scheduler_generation(f->api->sched)};
    return sse_follow_read(&f->pace, &f->out, f->ended, gens, 1, follow_poll, f, buf, max);
}

static void follow_free(void *ctx) {
    Follow *f = ctx;
    sse_free(&f->out);
    free(f);
}

/* A page of lines as the history's reply; next_after is set when the
 * page is full (limit lines: more may follow). Frees the lines. */
static int reply_lines(HttpRequest *req, int64_t job, DbLogLine *lines, int n, int64_t limit) {
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) json_array_append_new(arr, line_json(&lines[i]));
    json_t *next = n == limit ? json_integer(lines[n - 1].seq) : json_null();
    db_log_list_free(lines, n);
    return http_reply_json(req, 200, json_pack("{s:I, s:o*, s:o}", "job_id", (json_int_t)job,
                                               "lines", arr, "next_after", next));
}

/* ?tail=N: replies the last N lines as a page and returns true, or, for
 * a stream, sets *after so that they come first and returns false (as it
 * does after a reply failed). A reconnect (Last-Event-ID) goes on from its
 * own point instead. */
static bool tail_replied(HttpRequest *req, int64_t job, int64_t tail, bool follow,
                         bool reconnect, int64_t *after) {
    if (follow && reconnect) return false;
    Api *api = http_app(req);
    DbLogLine *lines = NULL;
    int n = 0;
    int st = db_log_tail(api->db, job, (int)tail, &lines, &n);
    if (st != DB_OK) {
        api_reply_db(req, st, NULL);
        return true;
    }
    if (!follow) {
        reply_lines(req, job, lines, n, tail);
        return true;
    }
    *after = n > 0 ? lines[0].seq - 1 : 0;
    db_log_list_free(lines, n);
    return false;
}

int logs_get(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t job = api_job_param(req, NULL);
    if (job < 0) return 0;
    bool follow, reconnect;
    int64_t after, limit, tail;
    if (http_query_bool(req, "follow", &follow) || sse_resume_point(req, follow, 0, &after, &reconnect) ||
        http_query_int(req, "limit", 1000, 1, 10000, &limit) ||
        http_query_int(req, "tail", 0, 1, 10000, &tail))
        return 0;
    if (tail > 0 && http_query(req, "after"))
        return http_reply_error(req, 400, "bad_query", "?tail",
                                "tail: not with after (the last lines start where they start)");
    if (tail > 0 && tail_replied(req, job, tail, follow, reconnect, &after)) return 0;
    if (follow) {
        Follow *f = calloc(1, sizeof *f);
        if (!f) return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
        f->api = api;
        f->job = job;
        f->after = after;
        sse_pacer_init(&f->pace);
        stream_auth_init(&f->auth, api->db, http_auth(req), http_path(req));
        sse_retry(&f->out, 2000);
        return http_reply_stream(req, 200, "text/event-stream", follow_read, f, follow_free);
    }
    DbLogLine *lines = NULL;
    int n = 0;
    int st = db_log_list(api->db, job, after, (int)limit, &lines, &n);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    return reply_lines(req, job, lines, n, limit);
}
