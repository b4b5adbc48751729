/* metrics.c - GET /v1/jobs/{id}/metrics: a job's metric history, or a live
 * stream of it.
 *
 * History: ?name=loss (default every metric), ?after=STEP (steps above
 * it), ?before=STEP (steps below it; not with follow), ?limit=N (1..100000, default 10000) give the points in step order,
 *     {"job_id": 3, "metrics": [{"name", "step", "epoch", "value", "wall_time"}, ...],
 *      "next_after": 1200 | null}
 * next_after is the `after` of the next page when the limit cut the list
 * (the page ends at a step boundary, so no point is skipped or repeated).
 * ?max_points=N downsamples each series into at most N buckets of equal
 * step width: each item then also has min, max, count and first_step, and
 * step/value are the bucket's last point, as a chart of a million-point
 * run needs; with `before` the buckets span (after, before) only, so a
 * chart zoomed into a range gets its full detail.
 *
 * Where the answer cannot change (a finished job; a full page of a running
 * attempt) the whole reply is kept (reply_cache.h); a page of one named
 * series is cut from that series' cached chunks (history_chunks.h), so a
 * page at any `after` costs a copy, not a query.
 *
 * ?follow=1 streams Server-Sent Events instead: one event per point,
 *     id: <step>\nevent: metric\ndata: {"name","step","epoch","value","wall_time"}
 * from after ?after=, or from the step of Last-Event-ID (a reconnect: that
 * step again, whose points may have been cut off part way; a point is its
 * name and step, so a client keeps one of each), and when the job has
 * ended and every point is out, `event: end` with its final state. The
 * stream waits for new rows without a thread (http.h streams), querying
 * only when the metric writer committed or a job changed state. It ends
 * with `event: error` once the caller's token is revoked or rotated
 * (server/stream_auth.h).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/json_text.h"
#include "server/api.h"
#include "server/history_chunks.h"
#include "server/sse.h"
#include "server/stream_auth.h"
#include "server/text.h"
#include "server/text_json.h"

#define FOLLOW_BATCH 2000
/* The buckets of one ?max_points reply, all its series together. */
#define METRICS_BUCKETS_MAX 100000

static json_t *point_json(const DbMetric *m) {
    return json_pack("{s:s, s:I, s:i, s:o, s:o}", "name", m->name, "step", (json_int_t)m->step,
                     "epoch", m->epoch, "value", sse_number(m->value), "wall_time",
                     sse_number(m->wall_time));
}

/* ---- history ---- */

/* A metric name as a JSON string (malloc'd), as the history writes it. */
static char *quoted_name(const char *name) {
    json_t *s = json_text(name);
    char *q = text_json_dumps(s, NULL);
    json_decref(s);
    return q;
}

static void page_open(Text *t, int64_t job) {
    text_puts(t, "{\"job_id\":");
    text_int(t, job);
    text_puts(t, ",\"metrics\":[");
}

static void page_close(Text *t, int64_t next) {
    text_puts(t, "],\"next_after\":");
    if (next >= 0) text_int(t, next);
    else text_puts(t, "null");
    text_puts(t, "}");
}

/* The page's points as text into t; next is the next page's `after` or
 * -1 when the list is whole. Written as text (server/text.h), not through
 * jansson's tree: a 10,000-point page is ~50,000 small allocations and a
 * printf per field that way, most of a GET's time (bench/api.sh). The
 * bytes are those text_json (every other reply's writer) would write. */
static void history_text(Text *t, int64_t job, const DbMetric *m, int n, int64_t next) {
    char name[DB_METRIC_NAME_MAX + 1] = "";
    char *quoted = NULL; /* the name of the points before, as a JSON string */
    page_open(t, job);
    for (int i = 0; i < n && !t->oom; i++) {
        if (!quoted || strcmp(name, m[i].name) != 0) {
            free(quoted);
            quoted = quoted_name(m[i].name);
            if (!quoted) {
                t->oom = true;
                break;
            }
            snprintf(name, sizeof name, "%s", m[i].name);
        }
        history_point_text(t, quoted, &m[i], i > 0);
    }
    free(quoted);
    page_close(t, next);
}

/* A page of one series from its cached chunks (server/history_chunks.h),
 * the same bytes as history_body's. */
static int chunked_body(Api *api, const DbJob *j, const char *name, int64_t after, int64_t limit,
                        char **out, size_t *len, bool *full) {
    char *quoted = quoted_name(name);
    if (!quoted) return error_set("out of memory");
    HistorySeries s = {.cache = api->chunks, .db = api->db, .job = j->id, .attempt = j->attempt,
                       .generation = atomic_load(&api->history_generation),
                       .final = db_job_state_final(j->state), .name = name, .quoted = quoted};
    Text t = {0};
    int64_t count, last;
    page_open(&t, j->id);
    int st = history_chunks_page(&s, after, limit, &t, &count, &last);
    free(quoted);
    if (st != DB_OK) {
        text_free(&t);
        return st;
    }
    *full = count == limit; /* as history_body: a page the limit cut */
    page_close(&t, *full ? last : -1);
    if (t.oom) {
        text_free(&t);
        return error_set("out of memory");
    }
    *out = t.buf;
    *len = t.len;
    return DB_OK;
}

/* ?max_points: each series apart, the named one or every one the job has,
 * in buckets; as JSON text into *out. Every series of a job shares one
 * budget of METRICS_BUCKETS_MAX buckets (a job's ranks may report
 * thousands of names: a reply of max_points for each is gigabytes). */
static int downsampled_body(Api *api, int64_t job, const char *name, int64_t after,
                            int64_t before, int64_t max_points, char **out) {
    DbMetric *names = NULL;
    int nn = 0;
    if (!name) {
        int st = db_metric_latest(api->db, job, &names, &nn);
        if (st != DB_OK) return st;
        if (nn > METRICS_BUCKETS_MAX) {
            free(names);
            error_set("max_points: the job has %d series, more than the %d buckets a reply "
                      "holds; ask for one series (?name=)", nn, METRICS_BUCKETS_MAX);
            return DB_INVALID;
        }
        if (nn > 0 && max_points > METRICS_BUCKETS_MAX / nn) max_points = METRICS_BUCKETS_MAX / nn;
    }
    json_t *items = json_array();
    for (int k = 0; k < (name ? 1 : nn); k++) {
        const char *series = name ? name : names[k].name;
        DbMetricBucket *b = NULL;
        int nb = 0;
        int st = db_metric_downsample(api->db, job, series, after, before, (int)max_points,
                                      &b, &nb);
        if (st != DB_OK) {
            free(names);
            json_decref(items);
            return st;
        }
        for (int i = 0; i < nb; i++)
            json_array_append_new(
                items, json_pack("{s:s, s:I, s:i, s:o, s:o, s:o, s:o, s:I, s:I}", "name", series,
                                 "step", (json_int_t)b[i].last_step, "epoch", b[i].epoch,
                                 "value", sse_number(b[i].last), "wall_time",
                                 sse_number(b[i].wall_time), "min", sse_number(b[i].min), "max",
                                 sse_number(b[i].max), "count", (json_int_t)b[i].count,
                                 "first_step", (json_int_t)b[i].first_step));
        free(b);
    }
    free(names);
    json_t *o = json_pack("{s:I, s:o*, s:n}", "job_id", (json_int_t)job, "metrics", items,
                          "next_after");
    *out = text_json_dumps(o, NULL);
    json_decref(o);
    return *out ? DB_OK : error_set("out of memory");
}

/* The whole reply's bytes into *out (malloc'd), or a DbStatus. *full: a
 * plain page that the limit cut (more points follow it). */
static int history_body(Api *api, int64_t job, const char *name, int64_t after, int64_t before,
                        int64_t limit, int64_t max_points, char **out, size_t *len, bool *full) {
    *out = NULL;
    *full = false;
    if (max_points > 0) {
        int st = downsampled_body(api, job, name, after, before, max_points, out);
        if (st == DB_OK) *len = strlen(*out);
        return st;
    }
    DbMetricQuery q = {.name = name, .after = after, .before = before, .limit = (int)limit};
    DbMetric *m = NULL;
    int n = 0;
    int st = db_metric_query(api->db, job, &q, &m, &n);
    if (st == DB_OK && n == limit && n > 0 && !name && m[0].step == m[n - 1].step) {
        /* one step holds a page or more: the page is the whole step, for a
         * page ends at a step boundary (the next starts after it) */
        q = (DbMetricQuery){.after = m[0].step - 1, .before = m[0].step + 1, .limit = 100000};
        free(m);
        m = NULL;
        st = db_metric_query(api->db, job, &q, &m, &n);
        limit = n;
    }
    if (st != DB_OK) return st;
    int keep = n;
    int64_t next = -1;
    if (n == limit && n > 0) {
        /* cut at a step boundary: the rest of the last step comes with the
         * next page (one series has one point per step) */
        while (!name && keep > 0 && m[keep - 1].step == m[n - 1].step) keep--;
        if (keep == 0) keep = n; /* the whole of one step, above */
        next = keep < n ? m[keep - 1].step : m[n - 1].step;
        /* a page that is part of one step is not a finished prefix: the
         * step's epoch metrics may still come */
        *full = keep < n || name;
    }
    Text t = {0};
    history_text(&t, job, m, keep, next);
    free(m);
    if (t.oom) {
        text_free(&t);
        return error_set("out of memory");
    }
    *out = t.buf;
    *len = t.len;
    return DB_OK;
}

static void release_cached(void *r) { cached_reply_release(r); }

/* A kept reply; gzip'd when the client takes it and this is not the
 * request that made it (a miss pays for the query, not also for zlib). */
static int reply_cached(HttpRequest *req, CachedReply *r, bool hit) {
    size_t len;
    const char *gz = hit && http_accepts_gzip(req) ? cached_reply_gzip(r, &len) : NULL;
    const char *body = gz ? gz : cached_reply_body(r, &len);
    int rc = http_reply_shared(req, 200, "application/json", body, len, release_cached, r);
    if (gz) http_reply_header(req, "Content-Encoding", "gzip");
    http_reply_header(req, "Vary", "Accept-Encoding");
    return rc;
}

/* A rerun of the job's attempt deleted its points past a checkpoint: what
 * is kept of them goes (the memory), and the generation in every key moves
 * on, so that a reply read before the deletion and kept after it is not
 * found either. */
void metrics_history_forget(Api *api, int64_t job) {
    atomic_fetch_add(&api->history_generation, 1);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "history %lld ", (long long)job); /* history()'s keys */
    reply_cache_drop_prefix(api->replies, prefix);
    if (api->chunks) history_chunks_forget(api->chunks, job);
}

/* Which replies never change, so are kept (the key is every input of the
 * answer) and sent again as they are:
 *  - any reply about a finished job;
 *  - a full page (the limit cut it) of a running job's attempt, once the
 *    attempt has resumed: its rows past the checkpoint are deleted at the
 *    attempt's start, and after that rows are only added, in step order
 *    (the metric writer commits in push order), so a full page is a
 *    committed prefix that stays as it is. A rerun of the attempt (a rank
 *    started again, Slurm's requeue) rewrites it: metrics_history_forget. */
static int history(HttpRequest *req, const DbJob *j, const char *name, int64_t after,
                   int64_t before, int64_t limit, int64_t max_points) {
    Api *api = http_app(req);
    bool final = db_job_state_final(j->state);
    DbJobProgress live;
    bool resumed = j->state == DB_JOB_RUNNING && max_points == 0 &&
                   scheduler_progress(api->sched, j->id, &live) == DB_OK && live.total_steps > 0;
    char key[DB_METRIC_NAME_MAX + 192];
    uint64_t generation = atomic_load(&api->history_generation); /* before any row is read */
    snprintf(key, sizeof key,
             "history %lld %d %llu %lld after=%lld before=%lld limit=%lld max_points=%lld %s%s",
             (long long)j->id, j->attempt, (unsigned long long)generation,
             final ? (long long)j->finished_at : -1LL,
             (long long)after, (long long)before, (long long)limit, (long long)max_points,
             name ? "name=" : "every metric", name ? name : ""); /* "*" is a name too */
    if (final || resumed) {
        CachedReply *r = reply_cache_get(api->replies, key);
        if (r) return reply_cached(req, r, true);
    }
    char *body = NULL;
    size_t len = 0;
    bool full = false;
    int st;
    /* one series of a job whose points stay put: from the chunks (which
     * page forward from `after` only; a `before` page is one query) */
    if (api->chunks && name && max_points == 0 && before == 0 && (final || resumed))
        st = chunked_body(api, j, name, after, limit, &body, &len, &full);
    else
        st = history_body(api, j->id, name, after, before, limit, max_points, &body, &len, &full);
    if (st == DB_INVALID && max_points > 0 && !name) /* more series than a reply holds */
        return http_reply_error(req, 400, "bad_query", "?max_points", "%s", error_get());
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    if (!final && !(resumed && full)) return http_reply_owned(req, 200, "application/json", body, len);
    char *fit = realloc(body, len + 1); /* the cache counts len bytes: hold no more */
    if (fit) body = fit;
    CachedReply *r = reply_cache_put(api->replies, key, body, len);
    if (!r) return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    return reply_cached(req, r, false);
}

/* ---- follow ---- */

typedef char MetricName[DB_METRIC_NAME_MAX + 1];

typedef struct {
    Api *api;
    int64_t job;
    MetricName name; /* "" for every metric */
    /* every point with step <= done is out; at step `partial` the names in
     * sent[] are (more may come: epoch metrics share the last step), as
     * many as that step has */
    int64_t done, partial;
    MetricName *sent;
    int num_sent, cap_sent;
    bool ended;
    SsePacer pace;
    SseBuf out;
    StreamAuth auth; /* ends the stream once the caller's token stops working */
} Follow;

/* Where name is, or goes, in the sorted names sent at the partial step. */
static int sent_slot(const Follow *f, const char *name, bool *found) {
    int lo = 0, hi = f->num_sent;
    *found = false;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->sent[mid], name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static bool already_sent(const Follow *f, const DbMetric *m) {
    if (m->step <= f->done) return true;
    if (m->step != f->partial) return false;
    bool found;
    sent_slot(f, m->name, &found);
    return found;
}

/* -1 when out of memory */
static int mark_sent(Follow *f, const DbMetric *m) {
    if (m->step != f->partial) {
        if (f->partial > f->done) f->done = f->partial;
        f->partial = m->step;
        f->num_sent = 0;
    }
    if (f->num_sent == f->cap_sent) {
        int cap = f->cap_sent ? 2 * f->cap_sent : 32;
        MetricName *grown = realloc(f->sent, (size_t)cap * sizeof *grown);
        if (!grown) return -1;
        f->sent = grown;
        f->cap_sent = cap;
    }
    /* kept sorted: names come in order (but for a few committed late), so
     * this is nearly always the end */
    bool found;
    int at = sent_slot(f, m->name, &found);
    memmove(&f->sent[at + 1], &f->sent[at], (size_t)(f->num_sent - at) * sizeof f->sent[0]);
    snprintf(f->sent[at], sizeof f->sent[0], "%s", m->name);
    f->num_sent++;
    return 0;
}

/* The points of q not sent yet, sent: how many, or -1 on failure. A batch
 * all sent already, all of one step, is a step of more points than a
 * batch: read on past its last name (the step is read from its start
 * again at each look, for names committed late; past a batch of it, by
 * name order). */
static int follow_batch(Follow *f, DbMetricQuery *q) {
    char past[DB_METRIC_NAME_MAX + 1];
    for (;;) {
        DbMetric *m = NULL;
        int n = 0, fresh = 0;
        if (db_metric_query(f->api->db, f->job, q, &m, &n) != DB_OK) return -1;
        for (int i = 0; i < n; i++) {
            if (already_sent(f, &m[i])) continue;
            if (sse_event(&f->out, m[i].step, "metric", point_json(&m[i])) != 0 ||
                mark_sent(f, &m[i]) != 0) {
                free(m);
                return -1;
            }
            fresh++;
        }
        bool stuck = fresh == 0 && n == q->limit && !q->name && m[0].step == m[n - 1].step;
        if (stuck) {
            q->after = m[0].step - 1;
            snprintf(past, sizeof past, "%s", m[n - 1].name);
            q->past_name = past;
        }
        free(m);
        if (!stuck) return fresh;
    }
}

/* One look at the database: new points, or the end. -1 on failure. */
static int follow_poll(void *ctx) {
    Follow *f = ctx;
    DbJob j;
    if (db_job_get(f->api->db, f->job, &j) != DB_OK) return -1;
    DbJobState state = j.state;
    char *error = j.error ? strdup(j.error) : NULL;
    db_job_clear(&j);
    /* the state is read before the points: once final, the points of the
     * whole run are committed, and an empty answer below means the end */
    int64_t after = f->partial > f->done ? f->partial - 1 : f->done;
    DbMetricQuery q = {.name = f->name[0] ? f->name : NULL, .after = after, .limit = FOLLOW_BATCH};
    int fresh = follow_batch(f, &q);
    if (fresh < 0) {
        free(error);
        return -1;
    }
    /* more rows may wait (a full batch), or the end may already be due
     * (rows came): look again at once rather than on the next change */
    f->pace.poll_now = fresh > 0;
    if (fresh == 0 && db_job_state_final(state)) {
        sse_event(&f->out, -1, "end",
                  json_pack("{s:I, s:s, s:o}", "job_id", (json_int_t)f->job, "state",
                            db_job_state_name(state), "error",
                            error ? json_text(error) : json_null()));
        f->ended = true;
    }
    free(error);
    return 0;
}

static ssize_t follow_read(void *ctx, char *buf, size_t max) {
    Follow *f = ctx;
    if (!f->ended && stream_auth_lost(&f->auth, &f->out)) f->ended = true;
    uint64_t gens[2] = {metric_writer_generation(f->api->metrics),
                        scheduler_generation(f->api->sched)};
    return sse_follow_read(&f->pace, &f->out, f->ended, gens, 2, follow_poll, f, buf, max);
}

static void follow_free(void *ctx) {
    Follow *f = ctx;
    sse_free(&f->out);
    free(f->sent);
    free(f);
}

/* ?before= bounds a history: above `after`, and not for a stream (whose
 * points come as they are written, past any bound). -1 after the 400. */
static int before_check(HttpRequest *req, bool follow, int64_t after, int64_t before) {
    if (before == 0) return 0;
    if (follow) {
        http_reply_error(req, 400, "bad_query", "?before",
                         "before: not with follow=1 (a stream has no upper step)");
        return -1;
    }
    if (before <= after) {
        http_reply_error(req, 400, "bad_query", "?before",
                         "before: must be above after (%lld), got %lld", (long long)after,
                         (long long)before);
        return -1;
    }
    return 0;
}

int metrics_get(HttpRequest *req) {
    Api *api = http_app(req);
    DbJob j;
    int64_t job = api_job_param(req, &j);
    if (job < 0) return 0;
    const char *name = http_query(req, "name");
    bool follow, reconnect;
    int64_t after, before, limit, max_points;
    if (name && (!*name || strlen(name) > DB_METRIC_NAME_MAX)) {
        db_job_clear(&j);
        return http_reply_error(req, 400, "bad_query", "?name", "name: expected a metric name");
    }
    if (http_query_bool(req, "follow", &follow) || sse_resume_point(req, follow, -1, &after, &reconnect) ||
        http_query_int(req, "limit", 10000, 1, 100000, &limit) ||
        http_query_int(req, "max_points", 0, 1, 100000, &max_points) ||
        http_query_int(req, "before", 0, 1, INT64_MAX, &before) ||
        before_check(req, follow, after, before)) {
        db_job_clear(&j);
        return 0;
    }
    if (!follow) {
        int rc = history(req, &j, name, after, before, limit, max_points);
        db_job_clear(&j);
        return rc;
    }
    db_job_clear(&j);
    if (reconnect && after >= 0) after--; /* that step again */

    Follow *f = calloc(1, sizeof *f);
    if (!f) return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    f->api = api;
    f->job = job;
    snprintf(f->name, sizeof f->name, "%s", name ? name : "");
    f->done = after;
    f->partial = after;
    sse_pacer_init(&f->pace);
    stream_auth_init(&f->auth, api->db, http_auth(req), http_path(req));
    sse_retry(&f->out, 2000);
    return http_reply_stream(req, 200, "text/event-stream", follow_read, f, follow_free);
}
