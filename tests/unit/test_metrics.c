/* test_metrics.c - the metrics table (storage/metrics.c), its downsampling
 * from block summaries (metric_blocks.c) and the batched writer
 * (metric_writer.c): overwrite on the same (job, name, step), queries,
 * the latest points of many jobs, the writer's batches, flushes and
 * wake-ups, downsampling against buckets computed here (correctness on
 * small series; timing on a million rows, printed, not asserted), and a
 * full disk (a small tmpfs): ENOSPC in the error, the writer's rows kept
 * and committed once space returns, the database intact. Each test works
 * in its own temporary data dir. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "storage/db.h"
#include "storage/db_internal.h"
#include "tests/support/full_disk.h"
#include "tests/support/tmp_db.h"
#include "tests/support/tmp_dir.h"

static char tmpdir[256];

static void remove_tmp(void) { tmp_dir_remove(tmpdir); }

static Db *open_tmp(void) { return tmp_db_open_alone(tmpdir, sizeof tmpdir, "metrics"); }

/* ---- metrics ---- */

Test(metrics, metrics_overwrite_query_latest) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    for (int s = 1; s <= 10; s++) {
        cr_assert_eq(db_metric_put(db, job, "loss", s, (s - 1) / 5, 1.0 / s), DB_OK);
        cr_assert_eq(db_metric_put(db, job, "lr", s, (s - 1) / 5, 0.1), DB_OK);
    }
    cr_assert_eq(db_metric_put(db, job, "val_loss", 5, 0, 0.5), DB_OK);
    cr_assert_eq(db_metric_put(db, job, "val_loss", 10, 1, NAN), DB_OK);
    /* a resumed attempt overwrites the same (job, name, step) */
    cr_assert_eq(db_metric_put(db, job, "loss", 3, 0, 42.0), DB_OK);
    int64_t count;
    cr_assert_eq(db_metric_count(db, job, &count), DB_OK);
    cr_assert_eq(count, 22);
    cr_assert_eq(db_metric_put(db, job + 1, "loss", 1, 0, 1.0), DB_NOT_FOUND); /* foreign key */

    DbMetric *m;
    int n;
    DbMetricQuery q = {.name = "loss", .after = 2, .limit = 3};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(m[0].step, 3);
    cr_assert_float_eq(m[0].value, 42.0, 0);
    cr_assert_eq(m[2].step, 5);
    free(m);
    /* every name, step order */
    q = (DbMetricQuery){.after = 9};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(m[0].name, "loss");
    cr_assert_str_eq(m[1].name, "lr");
    cr_assert_str_eq(m[2].name, "val_loss");
    cr_assert(isnan(m[2].value));
    cr_assert_eq(m[2].epoch, 1);
    free(m);

    cr_assert_eq(db_metric_latest(db, job, &m, &n), DB_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(m[0].name, "loss");
    cr_assert_eq(m[0].step, 10);
    cr_assert_float_eq(m[0].value, 0.1, 1e-15);
    cr_assert_str_eq(m[2].name, "val_loss");
    cr_assert_eq(m[2].step, 10);
    /* stamped when put: the latest point's time, of this test's seconds */
    cr_assert(m[2].wall_time <= clock_wall_s() && m[2].wall_time > clock_wall_s() - 60);
    free(m);

    int64_t deleted;
    cr_assert_eq(db_metric_delete_after(db, job, 5, &deleted), DB_OK);
    cr_assert_eq(deleted, 11);
    cr_assert_eq(db_metric_count(db, job, &count), DB_OK);
    cr_assert_eq(count, 11);
    db_close(db);
    remove_tmp();
}

/* A follow stream's reads of one step of more names than a page: each
 * read goes on past the last name it sent (past_name), then to the steps
 * after, every row once. Timed (printed): 50,000 names paged by 1,000,
 * each read seeking to where the last stopped. */
Test(metrics, pages_within_a_step_past_a_name) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    MetricWriter *w = metric_writer_start(db);
    cr_assert(w != NULL);
    char name[32];
    for (int i = 0; i < 50000; i++) {
        snprintf(name, sizeof name, "m%05d", i);
        metric_writer_push(w, job, name, 1, 0, i);
    }
    metric_writer_push(w, job, "a", 2, 0, -1);
    metric_writer_push(w, job, "a", 0, 0, -2); /* before the reads' start */
    cr_assert_eq(metric_writer_flush(w), 0);
    metric_writer_stop(w);
    char past[64] = "";
    int seen = 0, steps2 = 0;
    double t0 = clock_now_s();
    for (;;) {
        DbMetricQuery q = {.after = 0, .limit = 1000, .past_name = past[0] ? past : NULL};
        DbMetric *m;
        int n;
        cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
        for (int i = 0; i < n && m[i].step == 1; i++, seen++) {
            snprintf(name, sizeof name, "m%05d", seen);
            cr_assert_str_eq(m[i].name, name);
            cr_assert_float_eq(m[i].value, seen, 0);
        }
        steps2 += n > 0 && m[n - 1].step == 2;
        if (n > 0 && m[n - 1].step == 1) snprintf(past, sizeof past, "%s", m[n - 1].name);
        free(m);
        if (n < 1000) break;
    }
    printf("metrics: 50000 names of one step read in pages of 1000 in %.3f s\n", clock_now_s() - t0);
    cr_assert_eq(seen, 50000);
    cr_assert_eq(steps2, 1);
    db_close(db);
    remove_tmp();
}

Test(metrics, metric_writer_batches_100k) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    MetricWriter *w = metric_writer_start(db);
    cr_assert(w != NULL);
    uint64_t g0 = metric_writer_generation(w);
    double wall0 = clock_wall_s() - 0.001; /* to the ms: the first push may round down */
    double t0 = clock_now_s();
    for (int i = 1; i <= 100000; i++) metric_writer_push(w, job, "loss", i, i / 1000, i * 0.5);
    double t_push = clock_now_s() - t0;
    cr_assert_eq(metric_writer_flush(w), 0);
    double t_all = clock_now_s() - t0;
    int64_t count;
    cr_assert_eq(db_metric_count(db, job, &count), DB_OK);
    cr_assert_eq(count, 100000);
    cr_assert_gt(metric_writer_generation(w), g0);
    /* each row has the time of its push, to the ms: in push order, within
     * the pushing loop's time */
    DbMetricBucket *b;
    int nb;
    cr_assert_eq(db_metric_downsample(db, job, "loss", -1, 0, 2, &b, &nb), DB_OK);
    cr_assert_eq(nb, 2);
    cr_assert(b[0].wall_time <= b[1].wall_time);
    cr_assert(b[1].wall_time >= wall0 && b[1].wall_time <= wall0 + t_push + 0.002,
              "%f not in [%f, %f]", b[1].wall_time, wall0, wall0 + t_push);
    cr_assert_float_eq(b[1].wall_time * 1000, round(b[1].wall_time * 1000), 1e-3);
    free(b);
    /* pushed twice: the later value wins */
    metric_writer_push(w, job, "loss", 7, 0, 1.0);
    metric_writer_push(w, job, "loss", 7, 0, 2.0);
    metric_writer_flush(w);
    DbMetric *m;
    int n;
    DbMetricQuery q = {.name = "loss", .after = 6, .limit = 1};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    cr_assert_float_eq(m[0].value, 2.0, 0);
    free(m);
    metric_writer_stop(w);
    printf("metrics: writer: 100000 pushes in %.1f ms (%.0f ns each), committed after "
           "%.1f ms\n",
           t_push * 1e3, t_push * 1e9 / 100000, t_all * 1e3);
    db_close(db);
    remove_tmp();
}

/* ---- downsampling from block summaries ---- */

/* The series the block tests write: a wave, a NaN now and then, and the
 * steps 5000..5099 written twice (a resumed attempt), the second time 100x. */
static double wave(int64_t s, bool again) {
    if (s % 7919 == 0) return NAN;
    double v = sin((double)s * 0.001) * (double)(s % 977);
    return again ? 100 * v : v;
}

/* db_metric_downsample's answer for steps lo..hi checked against the
 * buckets of whole blocks computed here from the values themselves. */
static void check_block_buckets(Db *db, int64_t job, int64_t after, int64_t before, int64_t lo,
                                int64_t hi, int max_points) {
    DbMetricBucket *b;
    int n;
    cr_assert_eq(db_metric_downsample(db, job, "loss", after, before, max_points, &b, &n), DB_OK,
                 "%s", error_get());
    const int64_t B = DB_METRIC_BLOCK_STEPS; /* steps are positive here: s / B is the block */
    int64_t b0 = lo / B, blocks = hi / B - b0 + 1;
    int64_t per = (blocks + max_points - 1) / max_points; /* blocks per bucket */
    cr_assert_leq(n, max_points);
    int k = -1;
    int64_t key = -1, total = 0;
    for (int64_t s = lo; s <= hi; s++) {
        double v = wave(s, s >= 5000 && s < 5100);
        if ((s / B - b0) / per != key) {
            key = (s / B - b0) / per;
            k++;
            cr_assert_lt(k, n);
            cr_assert_eq(b[k].first_step, s, "bucket %d", k);
        }
        total++;
        bool last = s == hi || (s + 1) / B - b0 >= (key + 1) * per;
        if (last) {
            cr_assert_eq(b[k].last_step, s, "bucket %d", k);
            cr_assert_eq(b[k].epoch, (int)(s / 1000));
            if (isnan(v)) cr_assert(isnan(b[k].last));
            else cr_assert_float_eq(b[k].last, v, 0);
        }
    }
    cr_assert_eq(k + 1, n);
    int64_t counted = 0;
    for (int i = 0; i < n; i++) {
        double mn = INFINITY, mx = -INFINITY;
        for (int64_t s = b[i].first_step; s <= b[i].last_step; s++) {
            double v = wave(s, s >= 5000 && s < 5100);
            if (isnan(v)) continue;
            mn = fmin(mn, v);
            mx = fmax(mx, v);
        }
        cr_assert_float_eq(b[i].min, mn, 0, "bucket %d", i);
        cr_assert_float_eq(b[i].max, mx, 0, "bucket %d", i);
        cr_assert_eq(b[i].count, b[i].last_step - b[i].first_step + 1);
        counted += b[i].count;
    }
    cr_assert_eq(counted, total);
    free(b);
}

Test(metrics, downsampling_from_blocks_is_exact_for_its_buckets) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    MetricWriter *w = metric_writer_start(db);
    cr_assert(w != NULL);
    for (int64_t s = 1; s <= 200000; s++) {
        metric_writer_push(w, job, "loss", s, (int)(s / 1000), wave(s, false));
        metric_writer_push(w, job, "lr", s, (int)(s / 1000), 0.1);
    }
    cr_assert_eq(metric_writer_flush(w), 0);
    for (int64_t s = 5000; s < 5100; s++)
        metric_writer_push(w, job, "loss", s, (int)(s / 1000), wave(s, true));
    cr_assert_eq(metric_writer_flush(w), 0);
    /* 20,000 steps a bucket: from the blocks, 79 of them a bucket */
    check_block_buckets(db, job, -1, 0, 1, 200000, 10);
    /* 2,000 steps a bucket: 8 blocks each, 98 buckets for the 100 asked */
    check_block_buckets(db, job, -1, 0, 1, 200000, 100);
    /* a range whose ends cut blocks: those from their rows */
    check_block_buckets(db, job, 12345, 150001, 12346, 150000, 7);
    /* one point replaced by db_metric_put: its block's max follows */
    cr_assert_eq(db_metric_put(db, job, "loss", 777, 0, 1e9), DB_OK);
    DbMetricBucket *b;
    int n;
    cr_assert_eq(db_metric_downsample(db, job, "loss", -1, 0, 10, &b, &n), DB_OK);
    cr_assert_float_eq(b[0].max, 1e9, 0);
    free(b);
    cr_assert_eq(db_metric_put(db, job, "loss", 777, 0, wave(777, false)), DB_OK);
    /* a resumed attempt's cut: the blocks past it go, its own is redone */
    cr_assert_eq(db_metric_delete_after(db, job, 100500, NULL), DB_OK);
    check_block_buckets(db, job, -1, 0, 1, 100500, 5);
    DbConn *c = db_acquire(db);
    sqlite3_stmt *st = db_stmt(c, "SELECT max(last_step), count(*) FROM metric_blocks WHERE job_id = ?1");
    sqlite3_bind_int64(st, 1, job);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int64(st, 0), 100500);
    cr_assert_eq(sqlite3_column_int64(st, 1), 2 * (100500 / DB_METRIC_BLOCK_STEPS + 1)); /* loss, lr */
    sqlite3_reset(st);
    db_release(db, c);
    metric_writer_stop(w);
    db_close(db);
    remove_tmp();
}

Test(metrics, metric_writer_wait_wakes_on_commit) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    MetricWriter *w = metric_writer_start(db);
    uint64_t g = metric_writer_generation(w);
    cr_assert_eq(metric_writer_wait(w, g, 10), g); /* nothing: times out */
    metric_writer_push(w, job, "loss", 1, 0, 1.0);
    uint64_t g2 = metric_writer_wait(w, g, 2000);
    cr_assert_neq(g2, g);
    metric_writer_stop(w);
    db_close(db);
    remove_tmp();
}

/* PRAGMA integrity_check's first row ("ok" when intact) into out. */
static void integrity(Db *db, char *out, size_t size) {
    DbConn *c = db_acquire(db);
    cr_assert(c);
    sqlite3_stmt *st = db_stmt(c, "PRAGMA integrity_check");
    cr_assert(st && sqlite3_step(st) == SQLITE_ROW, "%s", error_get());
    db_column_copy(st, 0, out, size);
    sqlite3_reset(st);
    db_release(db, c);
}

Test(metrics, a_full_disk_is_enospc_and_the_writer_catches_up, .fini = full_disk_unmount) {
    const char *disk = full_disk_mount("storage-full", 8192);
    Db *db = db_open(disk);
    cr_assert(db, "%s", error_get());
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    MetricWriter *w = metric_writer_start(db);
    cr_assert(w);
    full_disk_fill();
    /* some 2 MB of rows on a disk without a byte left */
    for (int i = 1; i <= 50000; i++) metric_writer_push(w, job, "loss", i, 0, i * 0.25);
    cr_assert_eq(metric_writer_flush(w), -1);
    cr_assert(strstr(error_get(), "database or disk is full"), "%s", error_get());
    cr_assert(strstr(error_get(), "metric rows not stored yet"), "%s", error_get());
    cr_assert_eq(error_last()->sys_errno, ENOSPC, "%s", error_get());
    char ok[64];
    integrity(db, ok, sizeof ok);
    cr_assert_str_eq(ok, "ok");
    /* rows pushed while a failed batch waits are stored after it: the
     * later row of a step wins */
    cr_assert_eq(metric_writer_push(w, job, "loss", 50000, 0, -1.0), 0);
    cr_assert_eq(metric_writer_push(w, job, "loss", 50001, 0, -2.0), 0);
    /* the queue takes 4M rows before a push waits: those queued (the 2,
     * and those of the 50,000 not in the batch kept in hand) count */
    cr_assert(metric_writer_has_room(w, (4u << 20) - 50002));
    cr_assert(!metric_writer_has_room(w, (4u << 20) - 1), "the rows queued not counted");

    char filler[128];
    snprintf(filler, sizeof filler, "%s/filler", disk);
    cr_assert_eq(unlink(filler), 0);
    cr_assert_eq(metric_writer_flush(w), 0, "%s", error_get());
    int64_t count;
    cr_assert_eq(db_metric_count(db, job, &count), DB_OK);
    cr_assert_eq(count, 50001);
    DbMetric *m;
    int n;
    DbMetricQuery q = {.name = "loss", .after = 49998, .limit = 3};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    cr_assert_eq(n, 3);
    cr_assert_float_eq(m[0].value, 49999 * 0.25, 0);
    cr_assert_float_eq(m[1].value, -1.0, 0, "the later row of step 50000");
    cr_assert_float_eq(m[2].value, -2.0, 0);
    free(m);
    integrity(db, ok, sizeof ok);
    cr_assert_str_eq(ok, "ok");
    metric_writer_stop(w);
    db_close(db);
}

Test(metrics, downsample_small_series) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    double v[10] = {5, 3, 8, 1, 9, 2, 7, 4, 6, 0};
    for (int s = 1; s <= 10; s++) db_metric_put(db, job, "loss", s, s > 5, v[s - 1]);
    db_metric_put(db, job, "lr", 1, 0, 0.1); /* another series, not mixed in */
    DbMetricBucket *b;
    int n;
    /* span 10 in 3 buckets: width 4 -> [1,4] [5,8] [9,10] */
    cr_assert_eq(db_metric_downsample(db, job, "loss", -1, 0, 3, &b, &n), DB_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(b[0].first_step, 1);
    cr_assert_eq(b[0].last_step, 4);
    cr_assert_float_eq(b[0].min, 1, 0);
    cr_assert_float_eq(b[0].max, 8, 0);
    cr_assert_float_eq(b[0].last, 1, 0);
    cr_assert_eq(b[0].count, 4);
    cr_assert_eq(b[1].first_step, 5);
    cr_assert_eq(b[1].last_step, 8);
    cr_assert_float_eq(b[1].min, 2, 0);
    cr_assert_float_eq(b[1].max, 9, 0);
    cr_assert_float_eq(b[1].last, 4, 0);
    cr_assert_eq(b[1].epoch, 1);
    cr_assert_eq(b[2].first_step, 9);
    cr_assert_eq(b[2].last_step, 10);
    cr_assert_float_eq(b[2].min, 0, 0);
    cr_assert_float_eq(b[2].max, 6, 0);
    cr_assert_float_eq(b[2].last, 0, 0);
    free(b);
    /* after a step; enough points: every bucket is one point */
    cr_assert_eq(db_metric_downsample(db, job, "loss", 6, 0, 100, &b, &n), DB_OK);
    cr_assert_eq(n, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(b[i].first_step, 7 + i);
        cr_assert_eq(b[i].last_step, 7 + i);
        cr_assert_float_eq(b[i].min, v[6 + i], 0);
        cr_assert_float_eq(b[i].max, v[6 + i], 0);
        cr_assert_float_eq(b[i].last, v[6 + i], 0);
    }
    free(b);
    /* sparse steps leave empty buckets out */
    for (int s = 100; s <= 1000; s += 100) db_metric_put(db, job, "val", s, 0, s);
    cr_assert_eq(db_metric_downsample(db, job, "val", -1, 0, 1000, &b, &n), DB_OK);
    cr_assert_eq(n, 10);
    free(b);
    cr_assert_eq(db_metric_downsample(db, job, "nothing", -1, 0, 10, &b, &n), DB_OK);
    cr_assert_eq(n, 0);
    cr_assert_null(b);
    cr_assert_eq(db_metric_downsample(db, job, NULL, -1, 0, 10, &b, &n), DB_INVALID);
    cr_assert_eq(db_metric_downsample(db, job, "loss", -1, 0, 0, &b, &n), DB_INVALID);
    db_close(db);
    remove_tmp();
}

/* ?before=: steps below the bound only, in a query and in buckets that
 * span (after, before) alone. */
Test(metrics, metrics_before_bounds_steps) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    for (int s = 1; s <= 20; s++) {
        cr_assert_eq(db_metric_put(db, job, "loss", s, 0, 100 - s), DB_OK);
        cr_assert_eq(db_metric_put(db, job, "acc", s, 0, s / 100.0), DB_OK);
    }
    DbMetric *m;
    int n;
    /* one series, steps 5 < s < 9 */
    DbMetricQuery q = {.name = "loss", .after = 5, .before = 9};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(m[i].step, 6 + i);
        cr_assert_float_eq(m[i].value, 100 - (6 + i), 0);
    }
    free(m);
    /* every series, no lower bound: steps 1 and 2, two names each */
    q = (DbMetricQuery){.after = -1, .before = 3};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(m[0].name, "acc");
    cr_assert_eq(m[0].step, 1);
    cr_assert_str_eq(m[3].name, "loss");
    cr_assert_eq(m[3].step, 2);
    free(m);
    /* the bound with a limit: the limit still cuts */
    q = (DbMetricQuery){.name = "acc", .after = 0, .before = 15, .limit = 4};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(m[3].step, 4);
    free(m);
    /* buckets span (10, 16) only: steps 11..15 in 2 buckets of width 3 */
    DbMetricBucket *b;
    cr_assert_eq(db_metric_downsample(db, job, "loss", 10, 16, 2, &b, &n), DB_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(b[0].first_step, 11);
    cr_assert_eq(b[0].last_step, 13);
    cr_assert_eq(b[0].count, 3);
    cr_assert_float_eq(b[0].min, 87, 0);
    cr_assert_float_eq(b[0].max, 89, 0);
    cr_assert_eq(b[1].first_step, 14);
    cr_assert_eq(b[1].last_step, 15);
    cr_assert_eq(b[1].count, 2);
    cr_assert_float_eq(b[1].last, 85, 0);
    free(b);
    /* nothing between the bounds */
    cr_assert_eq(db_metric_downsample(db, job, "loss", 20, 30, 5, &b, &n), DB_OK);
    cr_assert_eq(n, 0);
    db_close(db);
    remove_tmp();
}

/* The newest point of each series of many jobs at once: the same as
 * db_metric_latest job by job, whatever the history's length. */
Test(metrics, metrics_latest_of_many_jobs) {
    Db *db = open_tmp();
    int64_t job[4];
    for (int k = 0; k < 4; k++)
        cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job[k]), DB_OK);
    /* job k has k+1 series' worth of names, 10*(k+1) steps; job 3 none */
    const char *names[] = {"acc", "loss", "lr"};
    for (int k = 0; k < 3; k++)
        for (int s = 1; s <= 10 * (k + 1); s++)
            for (int i = 0; i <= k; i++)
                cr_assert_eq(db_metric_put(db, job[k], names[i], s, s / 10, k * 1000 + s), DB_OK);
    DbJobMetric *m;
    int n;
    cr_assert_eq(db_metric_latest_jobs(db, job, 4, &m, &n), DB_OK);
    cr_assert_eq(n, 1 + 2 + 3);
    int at = 0;
    for (int k = 0; k < 3; k++) {
        DbMetric *one;
        int n1;
        cr_assert_eq(db_metric_latest(db, job[k], &one, &n1), DB_OK);
        cr_assert_eq(n1, k + 1);
        for (int i = 0; i < n1; i++, at++) {
            cr_assert_eq(m[at].job, job[k]);
            cr_assert_str_eq(m[at].metric.name, names[i]);
            cr_assert_eq(m[at].metric.step, 10 * (k + 1));
            cr_assert_eq(m[at].metric.epoch, k + 1);
            cr_assert_float_eq(m[at].metric.value, k * 1000 + 10 * (k + 1), 0);
            cr_assert_str_eq(m[at].metric.name, one[i].name);
            cr_assert_eq(m[at].metric.step, one[i].step);
        }
        free(one);
    }
    free(m);
    /* a subset, in any order of ids: only those jobs */
    int64_t some[2] = {job[2], job[0]};
    cr_assert_eq(db_metric_latest_jobs(db, some, 2, &m, &n), DB_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(m[0].job, job[0]);
    cr_assert_eq(m[1].job, job[2]);
    free(m);
    cr_assert_eq(db_metric_latest_jobs(db, job, 0, &m, &n), DB_OK);
    cr_assert_eq(n, 0);
    db_close(db);
    remove_tmp();
}

/* GET /v1/jobs's page of 200 jobs with their newest metrics: the one
 * query for the page against one per job, and the list alone as it was
 * before it carried them. The times are printed, not asserted. */
Test(metrics, metrics_latest_of_200_jobs_timed) {
    Db *db = open_tmp();
    enum { J = 200, STEPS = 1000 };
    int64_t ids[J];
    for (int k = 0; k < J; k++)
        cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &ids[k]), DB_OK);
    /* 3 series of STEPS points per job, filled inside SQLite to keep it quick */
    DbConn *c = db_acquire(db);
    cr_assert_eq(db_begin(c), DB_OK);
    sqlite3_stmt *st = db_stmt(
        c, "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?1) "
           "INSERT INTO metrics (job_id, name, step, epoch, value) "
           "SELECT jobs.id, names.column1, n, n / 100, jobs.id * 10000 + n "
           "FROM jobs, s, (VALUES ('acc'), ('loss'), ('lr')) AS names");
    sqlite3_bind_int(st, 1, STEPS);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE, "%s", sqlite3_errmsg(c->h));
    sqlite3_reset(st);
    cr_assert_eq(db_commit(c), DB_OK);
    db_release(db, c);

    DbJob *jobs;
    int n;
    int64_t next;
    double t0 = clock_now_s();
    cr_assert_eq(db_job_list(db, &(DbJobQuery){.state = -1, .limit = J}, &jobs, &n, &next), DB_OK);
    double t_list = clock_now_s() - t0;
    cr_assert_eq(n, J);
    int64_t page[J];
    for (int i = 0; i < n; i++) page[i] = jobs[i].id;
    db_job_list_free(jobs, n);

    /* best of 3: the first call also prepares the statement */
    DbJobMetric *all = NULL;
    int nall;
    double t_one = 1e9;
    for (int r = 0; r < 3; r++) {
        free(all);
        t0 = clock_now_s();
        cr_assert_eq(db_metric_latest_jobs(db, page, J, &all, &nall), DB_OK);
        t_one = fmin(t_one, clock_now_s() - t0);
        cr_assert_eq(nall, 3 * J);
    }

    t0 = clock_now_s();
    for (int i = 0; i < J; i++) {
        DbMetric *m;
        int nm;
        cr_assert_eq(db_metric_latest(db, page[i], &m, &nm), DB_OK);
        cr_assert_eq(nm, 3);
        /* the page is newest first, the rows by ascending job id */
        const DbJobMetric *row = &all[3 * (J - 1 - i)];
        for (int k = 0; k < 3; k++) {
            cr_assert_eq(row[k].job, page[i]);
            cr_assert_str_eq(row[k].metric.name, m[k].name);
            cr_assert_eq(row[k].metric.step, STEPS);
            cr_assert_eq(row[k].metric.epoch, STEPS / 100);
            cr_assert_float_eq(row[k].metric.value, page[i] * 10000.0 + STEPS, 0);
            cr_assert_float_eq(row[k].metric.value, m[k].value, 0);
        }
        free(m);
    }
    double t_each = clock_now_s() - t0;
    free(all);
    fprintf(stderr,
            "metrics: list of %d jobs (%d points each): the list %.2f ms; newest metrics in one "
            "query %.2f ms; one query per job %.2f ms\n",
            J, 3 * STEPS, t_list * 1e3, t_one * 1e3, t_each * 1e3);
    db_close(db);
    remove_tmp();
}

Test(metrics, downsample_a_million_points) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    const int N = 1000000;
    double t0 = clock_now_s();
    /* filled inside SQLite (one statement) to keep the test quick; the
     * values zigzag so min and max differ in every bucket */
    DbConn *c = db_acquire(db);
    cr_assert_eq(db_begin(c), DB_OK);
    sqlite3_stmt *st = db_stmt(
        c, "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?2) "
           "INSERT INTO metrics (job_id, name, step, epoch, value) "
           "SELECT ?1, 'loss', n, n / 10000, ((n * 7919) % 1000) / 1000.0 FROM s");
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int(st, 2, N);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE, "%s", sqlite3_errmsg(c->h));
    sqlite3_reset(st);
    /* another metric around it, as in a real job */
    st = db_stmt(c, "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000) "
                    "INSERT INTO metrics (job_id, name, step, epoch, value) "
                    "SELECT ?1, 'lr', n, 0, 0.1 FROM s");
    sqlite3_bind_int64(st, 1, job);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
    cr_assert_eq(db_commit(c), DB_OK);
    db_release(db, c);
    double t_fill = clock_now_s() - t0;

    DbMetricBucket *b;
    int n;
    t0 = clock_now_s();
    cr_assert_eq(db_metric_downsample(db, job, "loss", -1, 0, 1000, &b, &n), DB_OK);
    double t_ds = clock_now_s() - t0;
    cr_assert_eq(n, 1000);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        total += b[i].count;
        cr_assert_eq(b[i].count, 1000);
        cr_assert_float_eq(b[i].min, 0.0, 1e-12);
        cr_assert_float_eq(b[i].max, 0.999, 1e-12);
    }
    cr_assert_eq(total, N);
    cr_assert_eq(b[999].last_step, N);
    free(b);
    t0 = clock_now_s();
    cr_assert_eq(db_metric_downsample(db, job, "loss", N - 10000, 0, 1000, &b, &n), DB_OK);
    double t_tail = clock_now_s() - t0;
    cr_assert_eq(n, 1000);
    free(b);
    /* the block summaries the metric writer keeps (the rows came by SQL),
     * then a chart's 400 buckets: 2,500 steps wide, so from the blocks */
    t0 = clock_now_s();
    c = db_acquire(db);
    cr_assert_eq(db_begin(c), DB_OK);
    for (int64_t k = 0; k <= N / DB_METRIC_BLOCK_STEPS; k++)
        cr_assert_eq(db_metric_block_refresh(c, job, "loss", k), DB_OK, "%s", error_get());
    cr_assert_eq(db_commit(c), DB_OK);
    db_release(db, c);
    double t_blocks = clock_now_s() - t0;
    t0 = clock_now_s();
    cr_assert_eq(db_metric_downsample(db, job, "loss", -1, 0, 400, &b, &n), DB_OK);
    double t_from_blocks = clock_now_s() - t0;
    cr_assert_eq(n, 391); /* 3,907 blocks, 10 a bucket */
    total = 0;
    for (int i = 0; i < n; i++) {
        total += b[i].count;
        cr_assert_float_eq(b[i].min, 0.0, 1e-12);
        cr_assert_float_eq(b[i].max, 0.999, 1e-12);
    }
    cr_assert_eq(total, N);
    cr_assert_eq(b[390].last_step, N);
    free(b);
    DbMetric *m;
    t0 = clock_now_s();
    cr_assert_eq(db_metric_latest(db, job, &m, &n), DB_OK);
    double t_latest = clock_now_s() - t0;
    cr_assert_eq(n, 2);
    cr_assert_eq(m[0].step, N);
    free(m);
    t0 = clock_now_s();
    DbMetricQuery q = {.name = "loss", .after = 500000, .limit = 10000};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    double t_hist = clock_now_s() - t0;
    cr_assert_eq(n, 10000);
    free(m);
    printf("metrics: 1e6 points: filled in %.0f ms; downsample to 1000 buckets %.1f ms; "
           "last 10000 steps to 1000 buckets %.2f ms; block summaries made in %.0f ms, "
           "400 buckets from them %.2f ms; latest per name %.3f ms; 10000-point history "
           "%.1f ms\n",
           t_fill * 1e3, t_ds * 1e3, t_tail * 1e3, t_blocks * 1e3, t_from_blocks * 1e3,
           t_latest * 1e3, t_hist * 1e3);
    db_close(db);
    remove_tmp();
}
