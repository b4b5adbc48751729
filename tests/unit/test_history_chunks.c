/* test_history_chunks.c - server/history_chunks: a page cut from the cached
 * chunks is byte for byte the page SQLite gives (db_metric_query, each
 * point through history_point_text), for `after` and `limit` on and
 * around the chunk boundaries, for a dense series (a point a step), a
 * sparse one (a point every 5,000 steps: chunks with nothing in them) and
 * one with a point at step 0, one with a few below 0; a running job's
 * newest chunk is read again until a point past it is committed, so new
 * points show at once; a page that wants only a little of a chunk it has
 * not kept reads SQLite (the small limits of the grid); a new attempt
 * (rows past its checkpoint rewritten) is a new series; and what the
 * chunks leave to SQLite (more points below the first boundary than a
 * chunk holds, steps or an `after` near INT64_MAX) is still the same page. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/history_chunks.h"
#include "storage/db.h"
#include "tests/support/tmp_db.h"

#define W HISTORY_CHUNK_STEPS

static int attempt = 1; /* the attempt page_chunks reads */

typedef struct {
    TmpDb store;
    ReplyCache *cache;
    int64_t job;
} Env;

static Env setup(void) {
    Env e;
    tmp_db_open(&e.store, "chunks");
    e.cache = reply_cache_new(64u << 20, 4096);
    cr_assert(e.cache);
    cr_assert_eq(
        db_job_insert(e.store.db, &(DbJobNew){.name = "chunks", .spec_json = "{}"}, &e.job), DB_OK);
    return e;
}

static void teardown(Env *e) {
    reply_cache_free(e->cache);
    tmp_db_close(&e->store);
}

/* A value whose text changes from step to step, with a NaN now and then
 * (written as null). */
static double value_at(int64_t step) { return step % 977 == 0 ? NAN : 1.0 / (double)(step + 3); }

static void put(Env *e, const char *name, int64_t from, int64_t to, int64_t every) {
    for (int64_t s = from; s <= to; s += every)
        metric_writer_push(e->store.mw, e->job, name, s, (int)(s / 1000), value_at(s));
    cr_assert_eq(metric_writer_flush(e->store.mw), 0);
}

/* The page as SQLite gives it: the points' text, comma separated. */
static char *page_sqlite(Env *e, const char *name, const char *quoted, int64_t after,
                         int64_t limit, int64_t *count) {
    DbMetricQuery q = {.name = name, .after = after, .limit = (int)limit};
    DbMetric *m;
    int n;
    cr_assert_eq(db_metric_query(e->store.db, e->job, &q, &m, &n), DB_OK);
    Text t = {0};
    text_put(&t, "", 0);
    for (int i = 0; i < n; i++) history_point_text(&t, quoted, &m[i], i > 0);
    free(m);
    cr_assert(!t.oom);
    *count = n;
    return t.buf;
}

static char *page_chunks(Env *e, bool final, const char *name, const char *quoted,
                         int64_t after, int64_t limit, int64_t *count, int64_t *last) {
    HistorySeries s = {.cache = e->cache, .db = e->store.db, .job = e->job, .attempt = attempt,
                       .final = final, .name = name, .quoted = quoted};
    Text t = {0};
    text_put(&t, "", 0);
    cr_assert_eq(history_chunks_page(&s, after, limit, &t, count, last), DB_OK, "%s",
                 error_get());
    cr_assert(!t.oom);
    return t.buf;
}

static void assert_same_page(Env *e, bool final, const char *name, int64_t after, int64_t limit) {
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", name);
    int64_t n_sql, n, last;
    char *want = page_sqlite(e, name, quoted, after, limit, &n_sql);
    /* twice: the first reads (and keeps) the chunks, the second uses them */
    for (int pass = 0; pass < 2; pass++) {
        char *got = page_chunks(e, final, name, quoted, after, limit, &n, &last);
        cr_assert_eq(n, n_sql, "%s after %lld limit %lld pass %d: %lld points, want %lld", name,
                     (long long)after, (long long)limit, pass, (long long)n, (long long)n_sql);
        cr_assert(strcmp(got, want) == 0, "%s after %lld limit %lld pass %d: the text differs",
                  name, (long long)after, (long long)limit, pass);
        if (n > 0) {
            const char *tail = strrchr(want, '{');
            char step[40];
            snprintf(step, sizeof step, "\"step\":%lld,", (long long)last);
            cr_assert(strstr(tail, step), "last step %lld, last point %s", (long long)last, tail);
        }
        free(got);
    }
    free(want);
}

Test(history_chunks, pages_equal_sqlite_on_and_around_chunk_boundaries) {
    Env e = setup();
    put(&e, "loss", 1, 2 * W + 3000, 1);       /* dense, three chunks */
    put(&e, "val_loss", 5000, 60000, 5000);    /* sparse: empty chunks between */
    put(&e, "lr", 0, 10, 1);                   /* a point at step 0 */
    put(&e, "neg", -3, 5, 1);                  /* a few below 0: db_metric_put allows them */
    const int64_t afters[] = {INT64_MIN, -5, -2, -1, 0, 1, W - 2, W - 1, W, W + 1, 2 * W - 1, 2 * W,
                              2 * W + 2999, 2 * W + 3000, 3 * W, 5000, 4999, 59999, 60000, 123456};
    const int64_t limits[] = {1, 2, 7, W - 1, W, W + 1, 10000, 100000};
    const char *names[] = {"loss", "val_loss", "lr", "neg", "absent"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        for (size_t a = 0; a < sizeof afters / sizeof afters[0]; a++)
            for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++)
                assert_same_page(&e, true, names[k], afters[a], limits[l]);
    teardown(&e);
}

Test(history_chunks, a_running_jobs_newest_chunk_is_read_again) {
    Env e = setup();
    put(&e, "loss", 1, W - 10, 1); /* the first chunk, not yet whole */
    assert_same_page(&e, false, "loss", 0, 100000);
    put(&e, "loss", W - 9, W - 1, 1); /* fills it: still no point past it */
    assert_same_page(&e, false, "loss", W - 20, 100);
    put(&e, "loss", W, W + 5, 1); /* a point past it: now it is whole and kept */
    assert_same_page(&e, false, "loss", 0, 100000);
    assert_same_page(&e, false, "loss", W - 3, 5);
    put(&e, "loss", W + 6, W + 9, 1);
    assert_same_page(&e, false, "loss", W, 100); /* the new points show */
    int64_t n, last;
    char *got = page_chunks(&e, false, "loss", "\"loss\"", -1, 100000, &n, &last);
    cr_assert_eq(n, W + 9);
    cr_assert_eq(last, W + 9);
    free(got);
    teardown(&e);
}

Test(history_chunks, what_a_chunk_cannot_hold_comes_from_sqlite) {
    Env e = setup();
    put(&e, "odd", -W, 5, 1); /* W + 6 points below the first boundary */
    put(&e, "odd", W, W + 4, 1);
    put(&e, "far", 1, 3, 1);  /* then one whose chunk's bounds would overflow */
    put(&e, "far", INT64_MAX - 5, INT64_MAX - 5, 1);
    for (int final = 0; final < 2; final++) {
        assert_same_page(&e, final, "odd", -1, 100000);
        assert_same_page(&e, final, "odd", -1, 10);
        assert_same_page(&e, final, "odd", W - 1, 100000);
        assert_same_page(&e, final, "far", -1, 100000);
        assert_same_page(&e, final, "far", -1, 10);
        assert_same_page(&e, final, "far", 2, 100000);
        assert_same_page(&e, final, "far", INT64_MAX - 6, 10);
        assert_same_page(&e, final, "far", INT64_MAX - 1, 10);
    }
    teardown(&e);
}

Test(history_chunks, a_new_attempt_is_a_new_series) {
    Env e = setup();
    put(&e, "loss", 1, W + 100, 1);
    assert_same_page(&e, false, "loss", 0, 100000); /* attempt 1 keeps chunk 0 */
    /* attempt 2 resumes from step 50: the rows past it go, new ones come */
    int64_t deleted;
    cr_assert_eq(db_metric_delete_after(e.store.db, e.job, 50, &deleted), DB_OK);
    cr_assert_eq(deleted, W + 50);
    for (int64_t s = 51; s <= W + 10; s++)
        metric_writer_push(e.store.mw, e.job, "loss", s, 99, 2.0 * (double)s);
    cr_assert_eq(metric_writer_flush(e.store.mw), 0);
    attempt = 2;
    assert_same_page(&e, false, "loss", 0, 100000);
    assert_same_page(&e, true, "loss", 40, 20);
    attempt = 1;
    teardown(&e);
}
