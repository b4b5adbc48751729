/* dataset_events.c - GET /v1/datasets/{id}/events: a dataset's import
 * followed as Server-Sent Events.
 *
 *   event: progress  data: {"id", "state": "importing", "progress_bytes", "total_bytes"}
 *   event: end       data: {"id", "state": "ready" | "failed" | "deleted", "error"}
 *
 * One `progress` event each time the row's numbers change (the importer
 * writes them a few times a second at most), then `end` once the import is
 * over, and the stream closes; a dataset that is ready already (an upload,
 * an import done) gets `end` at once. The row is looked at when the
 * importer's generation moves, else once a second (sse.h's pacer).
 */
#include <stdlib.h>

#include "core/json_text.h"
#include "server/api.h"
#include "server/sse.h"
#include "server/stream_auth.h"

typedef struct {
    Api *api;
    int64_t id;
    bool sent;                  /* a progress event is out */
    int64_t sent_got, sent_total; /* its numbers */
    bool ended;
    SsePacer pace;
    SseBuf out;
    StreamAuth auth; /* a revoked token ends the stream */
} Follow;

static int end(Follow *f, const char *state, const char *error) {
    f->ended = true;
    return sse_event(&f->out, -1, "end",
                     json_pack("{s:I, s:s, s:o}", "id", (json_int_t)f->id, "state", state, "error",
                               error ? json_text(error) : json_null()));
}

static int progress(Follow *f, const DbDataset *ds) {
    if (f->sent && ds->progress_bytes == f->sent_got && ds->total_bytes == f->sent_total) return 0;
    f->sent = true;
    f->sent_got = ds->progress_bytes;
    f->sent_total = ds->total_bytes;
    return sse_event(&f->out, -1, "progress",
                     json_pack("{s:I, s:s, s:I, s:I}", "id", (json_int_t)f->id, "state",
                               "importing", "progress_bytes", (json_int_t)ds->progress_bytes,
                               "total_bytes", (json_int_t)ds->total_bytes));
}

static int follow_poll(void *ctx) {
    Follow *f = ctx;
    DbDataset ds;
    int st = db_dataset_get(f->api->db, f->id, &ds);
    if (st == DB_NOT_FOUND) return end(f, "deleted", NULL);
    if (st != DB_OK) return -1;
    /* an upload's bytes are on its row too (its owner's quota counts
     * them), but its progress is its client's to show: nothing till ready */
    int rc = ds.state == DB_DATASET_READY       ? end(f, "ready", NULL)
             : ds.error[0]                      ? end(f, "failed", ds.error)
             : ds.state == DB_DATASET_IMPORTING ? progress(f, &ds)
                                                : 0;
    db_dataset_clear(&ds);
    return rc;
}

static ssize_t follow_read(void *ctx, char *buf, size_t max) {
    Follow *f = ctx;
    if (!f->ended && stream_auth_lost(&f->auth, &f->out)) f->ended = true;
    uint64_t gens[1] = {importer_generation(f->api->importer)};
    return sse_follow_read(&f->pace, &f->out, f->ended, gens, 1, follow_poll, f, buf, max);
}

static void follow_free(void *ctx) {
    Follow *f = ctx;
    sse_free(&f->out);
    free(f);
}

int dataset_events_get(HttpRequest *req) {
    DbDataset ds;
    if (datasets_resolve(req, &ds) != 0) return 0;
    int64_t id = ds.id;
    db_dataset_clear(&ds);
    Follow *f = calloc(1, sizeof *f);
    if (!f) return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    f->api = http_app(req);
    f->id = id;
    sse_pacer_init(&f->pace);
    stream_auth_init(&f->auth, f->api->db, http_auth(req), http_path(req));
    sse_retry(&f->out, 2000);
    return http_reply_stream(req, 200, "text/event-stream", follow_read, f, follow_free);
}
