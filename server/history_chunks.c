/* history_chunks.c - a metric series' history as cached chunks of JSON;
 * see history_chunks.h.
 *
 * A chunk is one allocation, kept in the ReplyCache as it is:
 *
 *   ChunkHead | int64 steps[count] | uint32 offsets[count + 1] | text
 *
 * where point i's JSON, with the comma before it, is
 * text[offsets[i] .. offsets[i + 1]). Chunk 0 holds steps below
 * HISTORY_CHUNK_STEPS (negative ones too, which the trainer never writes
 * but db_metric_put allows), chunk k >= 1 steps [k, k + 1) times
 * HISTORY_CHUNK_STEPS. A series has one point per step, so a chunk holds at
 * most that many points, and reading one more row tells whether the series
 * goes on past it.
 */
#include "server/history_chunks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    int32_t count; /* points in the chunk */
    int32_t more;  /* the series had a point past the chunk when it was read */
    int64_t next;  /* that point's step */
} ChunkHead;

typedef struct {
    const ChunkHead *head;
    const int64_t *steps;
    const uint32_t *offsets;
    const char *text;
    CachedReply *kept; /* the cache's entry, which holds the blob */
} Chunk;

void history_point_text(Text *t, const char *quoted, const DbMetric *m, bool comma) {
    text_put(t, comma ? ",{\"name\":" : "{\"name\":", comma ? 9 : 8);
    text_puts(t, quoted);
    text_put(t, ",\"step\":", 8);
    text_int(t, m->step);
    text_put(t, ",\"epoch\":", 9);
    text_int(t, m->epoch);
    text_put(t, ",\"value\":", 9);
    text_real(t, m->value);
    text_put(t, ",\"wall_time\":", 13);
    text_real(t, m->wall_time);
    text_put(t, "}", 1);
}

static void chunk_view(Chunk *c, const char *blob) {
    c->head = (const ChunkHead *)blob;
    c->steps = (const int64_t *)(c->head + 1);
    c->offsets = (const uint32_t *)(c->steps + c->head->count);
    c->text = (const char *)(c->offsets + c->head->count + 1);
}

static void chunk_release(Chunk *c) {
    cached_reply_release(c->kept);
    c->kept = NULL;
}

/* Chunk k of the series from SQLite into a new blob. *fits false: chunk 0
 * has more points than a chunk holds (negative steps). */
static int chunk_read(const HistorySeries *s, int64_t k, char **blob, size_t *len, bool *fits) {
    *blob = NULL;
    *fits = true;
    int64_t end = (k + 1) * HISTORY_CHUNK_STEPS; /* steps below it */
    DbMetricQuery q = {.name = s->name, .after = k == 0 ? -1 : k * HISTORY_CHUNK_STEPS - 1,
                       .limit = HISTORY_CHUNK_STEPS + 1};
    DbMetric *m = NULL;
    int n = 0;
    int st = db_metric_query(s->db, s->job, &q, &m, &n);
    if (st != DB_OK) return st;
    int count = 0;
    while (count < n && m[count].step < end) count++;
    if (count > HISTORY_CHUNK_STEPS) {
        free(m);
        *fits = false;
        return DB_OK;
    }
    ChunkHead head = {.count = count, .more = count < n, .next = count < n ? m[count].step : 0};
    size_t index =
        sizeof head + (size_t)count * sizeof(int64_t) + (size_t)(count + 1) * sizeof(uint32_t);
    Text t = {0};
    uint32_t *offsets = malloc((size_t)(count + 1) * sizeof *offsets);
    for (int i = 0; i < count && offsets && !t.oom; i++) {
        offsets[i] = (uint32_t)t.len;
        history_point_text(&t, s->quoted, &m[i], true);
    }
    char *b = offsets && !t.oom ? malloc(index + t.len) : NULL;
    if (b) {
        offsets[count] = (uint32_t)t.len;
        memcpy(b, &head, sizeof head);
        int64_t *steps = (int64_t *)(b + sizeof head);
        for (int i = 0; i < count; i++) steps[i] = m[i].step;
        memcpy(steps + count, offsets, (size_t)(count + 1) * sizeof *offsets);
        if (t.len) memcpy(b + index, t.buf, t.len);
    }
    *len = index + t.len;
    free(offsets);
    text_free(&t);
    free(m);
    if (!b) return error_set("metric history: out of memory");
    *blob = b;
    return DB_OK;
}

/* Whether chunk k is whole: the job has ended, or the series has a
 * committed point at or past the chunk's end (one indexed lookup). */
static int chunk_whole(const HistorySeries *s, int64_t k, bool *whole) {
    *whole = s->final;
    if (*whole) return DB_OK;
    DbMetricQuery q = {.name = s->name, .after = (k + 1) * HISTORY_CHUNK_STEPS - 1, .limit = 1};
    DbMetric *m = NULL;
    int n = 0;
    int st = db_metric_query(s->db, s->job, &q, &m, &n);
    free(m);
    *whole = n > 0;
    return st;
}

/* Chunk k from the cache, or read and kept when the page wants enough of
 * it (`worth`). *elsewhere: not in the cache and not read - the running
 * job's newest chunk, or one the page wants only a little of - so the
 * caller asks SQLite for the rest of the page: a poll for the last few
 * points must not format 8,192. */
static int chunk_get(const HistorySeries *s, int64_t k, bool worth, Chunk *c, bool *fits,
                     bool *elsewhere) {
    char key[DB_METRIC_NAME_MAX + 128];
    snprintf(key, sizeof key, "chunk %lld %d %llu %lld %s", (long long)s->job, s->attempt,
             (unsigned long long)s->generation, (long long)k, s->name);
    *c = (Chunk){0};
    *fits = true;
    *elsewhere = false;
    c->kept = reply_cache_get(s->cache, key);
    if (!c->kept) {
        bool whole = false;
        int st = worth ? chunk_whole(s, k, &whole) : DB_OK;
        if (st != DB_OK) return st;
        if (!whole) {
            *elsewhere = true;
            return DB_OK;
        }
        char *blob;
        size_t len;
        st = chunk_read(s, k, &blob, &len, fits);
        if (st != DB_OK || !*fits) return st;
        c->kept = reply_cache_put(s->cache, key, blob, len); /* whole: rows never go */
        if (!c->kept) return error_set("metric history: out of memory");
    }
    size_t len;
    chunk_view(c, cached_reply_body(c->kept, &len));
    return DB_OK;
}

/* The rest of a page from SQLite: up to `limit` points past `after`. */
static int tail_text(const HistorySeries *s, int64_t after, int64_t limit, Text *t,
                     int64_t *count, int64_t *last_step) {
    DbMetricQuery q = {.name = s->name, .after = after, .limit = (int)limit};
    DbMetric *m = NULL;
    int n = 0;
    int st = db_metric_query(s->db, s->job, &q, &m, &n);
    if (st != DB_OK) return st;
    for (int i = 0; i < n; i++) history_point_text(t, s->quoted, &m[i], *count + i > 0);
    if (n > 0) *last_step = m[n - 1].step;
    *count += n;
    free(m);
    return DB_OK;
}

int history_chunks_page(const HistorySeries *s, int64_t after, int64_t limit, Text *t,
                        int64_t *count, int64_t *last_step) {
    *count = 0;
    if (after < 0) after = INT64_MIN; /* as SQLite reads it: every point */
    *last_step = after;
    /* past INT64_MAX / 4, chunk bounds would overflow: SQLite's turn */
    if (after > INT64_MAX / 4) return tail_text(s, after, limit, t, count, last_step);
    int64_t k = after < 0 ? 0 : (after + 1) / HISTORY_CHUNK_STEPS;
    while (*count < limit) {
        /* at most this many of the page's points are in chunk k: reading
         * all 8,192 to keep them pays off from an eighth of that on */
        int64_t from = k * HISTORY_CHUNK_STEPS - 1;
        if (*last_step > from) from = *last_step;
        int64_t wanted = (k + 1) * HISTORY_CHUNK_STEPS - 1 - from;
        if (wanted > limit - *count) wanted = limit - *count;
        Chunk c;
        bool fits, elsewhere;
        int st = chunk_get(s, k, wanted >= HISTORY_CHUNK_STEPS / 8, &c, &fits, &elsewhere);
        if (st != DB_OK) return st;
        /* not from the chunks (see chunk_get; or chunk 0, the first, holds
         * too many points): the rest of the page, wherever it ends */
        if (!fits || elsewhere)
            return tail_text(s, *last_step < 0 ? -1 : *last_step, limit - *count, t, count,
                             last_step);
        /* the first point past `after`: binary search */
        int lo = 0, hi = c.head->count;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (c.steps[mid] > after) hi = mid;
            else lo = mid + 1;
        }
        int64_t take = c.head->count - lo;
        if (take > limit - *count) take = limit - *count;
        if (take > 0) {
            const char *first = c.text + c.offsets[lo];
            size_t size = c.offsets[lo + take] - c.offsets[lo];
            if (*count == 0) { /* the page's first point has no comma */
                first++;
                size--;
            }
            text_put(t, first, size);
            *count += take;
            *last_step = c.steps[lo + take - 1];
        }
        bool more = c.head->more;
        int64_t next = c.head->next;
        chunk_release(&c);
        if (!more || *count == limit) break;
        if (next > INT64_MAX / 4) /* its chunk's bounds would overflow */
            return tail_text(s, *last_step, limit - *count, t, count, last_step);
        /* the chunk of the next point (past this one's end, so k grows),
         * over the empty ones a sparse series (a point an epoch) leaves */
        k = next / HISTORY_CHUNK_STEPS;
    }
    return t->oom ? error_set("metric history: out of memory") : DB_OK;
}

void history_chunks_forget(ReplyCache *cache, int64_t job) {
    char prefix[48];
    snprintf(prefix, sizeof prefix, "chunk %lld ", (long long)job); /* chunk_get's keys */
    reply_cache_drop_prefix(cache, prefix);
}
