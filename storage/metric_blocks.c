/* metric_blocks.c - a summary of each metric series per block of
 * DB_METRIC_BLOCK_STEPS steps (count, first and last step, min, max, and
 * the last point's value, epoch and wall_time), kept beside the rows, so
 * that a long series downsamples from its blocks rather than its rows.
 *
 * Why: a chart of a 1,000,000-step run asks for ~400 buckets; read from
 * the rows that is a scan of a million b-tree entries (~270 ms a series
 * here), from the blocks one of ~4,000 (a few milliseconds).
 *
 * A block is recomputed from its rows (one range of at most 256 rows of
 * the primary key) whenever rows of it are written or deleted, in the
 * same transaction: rows are replaced (a resumed attempt) as well as
 * added, and a min or max cannot be taken back, only recomputed.
 *
 * Buckets from blocks are whole runs of blocks, so their width is a
 * multiple of the block and they are aligned to blocks; the two blocks at
 * the ends of a bounded range (after, before) are summed from their rows
 * within the range, so every bucket is exact for the steps it says.
 */
#include "storage/db_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define BLOCK_SHIFT 8
_Static_assert((1 << BLOCK_SHIFT) == DB_METRIC_BLOCK_STEPS, "DB_METRIC_BLOCK_STEPS is 1 << 8");

int64_t db_metric_block_of(int64_t step) { return step >> BLOCK_SHIFT; /* floor, also below 0 */ }

/* The first and last step of a block. */
static int64_t block_first(int64_t block) { return (int64_t)((uint64_t)block << BLOCK_SHIFT); }
static int64_t block_last(int64_t block) { return block_first(block) + (DB_METRIC_BLOCK_STEPS - 1); }

/* The summary of the rows of (job, name) with lo <= step <= hi, aggregates
 * first, then the last row's value, epoch and wall_time. */
static const char *const summary_sql =
    "SELECT g.n, g.lo, g.hi, g.mn, g.mx, m.value, m.epoch, m.wall_time FROM"
    " (SELECT count(*) AS n, min(step) AS lo, max(step) AS hi, min(value) AS mn,"
    "  max(value) AS mx FROM metrics WHERE job_id = ?1 AND name = ?2 AND step >= ?3"
    "  AND step <= ?4) AS g"
    " JOIN metrics AS m ON m.job_id = ?1 AND m.name = ?2 AND m.step = g.hi";

/* A summary's columns from column i on: count, first_step, last_step,
 * min, max, last, epoch, wall_time. */
static DbMetricBucket read_summary(sqlite3_stmt *st, int i) {
    return (DbMetricBucket){.count = sqlite3_column_int64(st, i),
                            .first_step = sqlite3_column_int64(st, i + 1),
                            .last_step = sqlite3_column_int64(st, i + 2),
                            .min = db_column_real(st, i + 3),
                            .max = db_column_real(st, i + 4),
                            .last = db_column_real(st, i + 5),
                            .epoch = sqlite3_column_int(st, i + 6),
                            .wall_time = db_column_real(st, i + 7)};
}

/* The rows' summary as a bucket; *found false when there are none. */
static int summarize(DbConn *c, int64_t job, const char *name, int64_t lo, int64_t hi,
                     DbMetricBucket *b, bool *found) {
    sqlite3_stmt *st = db_stmt(c, summary_sql);
    if (!st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, job);
    db_bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, lo);
    sqlite3_bind_int64(st, 4, hi);
    int s = sqlite3_step(st);
    *found = s == SQLITE_ROW;
    if (*found) *b = read_summary(st, 0);
    sqlite3_reset(st);
    return s == SQLITE_ROW || s == SQLITE_DONE ? DB_OK : db_fail(c, "metric blocks");
}

int db_metric_block_refresh(DbConn *c, int64_t job, const char *name, int64_t block) {
    DbMetricBucket b;
    bool found;
    int rc = summarize(c, job, name, block_first(block), block_last(block), &b, &found);
    if (rc != DB_OK) return rc;
    sqlite3_stmt *st;
    if (!found) {
        st = db_stmt(c, "DELETE FROM metric_blocks WHERE job_id = ?1 AND name = ?2 AND block = ?3");
        if (!st) return DB_ERROR;
    } else {
        st = db_stmt(c, "INSERT OR REPLACE INTO metric_blocks (job_id, name, block, count,"
                        " first_step, last_step, min, max, last, epoch, wall_time)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
        if (!st) return DB_ERROR;
        sqlite3_bind_int64(st, 4, b.count);
        sqlite3_bind_int64(st, 5, b.first_step);
        sqlite3_bind_int64(st, 6, b.last_step);
        db_bind_real(st, 7, b.min);
        db_bind_real(st, 8, b.max);
        db_bind_real(st, 9, b.last);
        sqlite3_bind_int(st, 10, b.epoch);
        db_bind_real(st, 11, b.wall_time);
    }
    sqlite3_bind_int64(st, 1, job);
    db_bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, block);
    return db_step_done(c, st, "metric blocks");
}

static int key_cmp(const void *pa, const void *pb) {
    const DbMetricBlockKey *a = pa, *b = pb;
    if (a->job != b->job) return a->job < b->job ? -1 : 1;
    int n = strcmp(a->name, b->name);
    if (n) return n;
    return a->block < b->block ? -1 : a->block > b->block;
}

int db_metric_blocks_refresh(DbConn *c, DbMetricBlockKey *keys, size_t n) {
    if (n == 0) return DB_OK;
    qsort(keys, n, sizeof *keys, key_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && key_cmp(&keys[i - 1], &keys[i]) == 0) continue;
        int rc = db_metric_block_refresh(c, keys[i].job, keys[i].name, keys[i].block);
        if (rc != DB_OK) return rc;
    }
    return DB_OK;
}

int db_metric_blocks_delete_after(DbConn *c, int64_t job, int64_t after_step) {
    int64_t block = db_metric_block_of(after_step);
    sqlite3_stmt *st =
        db_stmt(c, "DELETE FROM metric_blocks WHERE job_id = ?1 AND block > ?2");
    if (!st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, block);
    int rc = db_step_done(c, st, "metric blocks");
    /* the block the cut falls in, for every series that has it */
    st = db_stmt(c, "SELECT name FROM metric_blocks WHERE job_id = ?1 AND block = ?2");
    if (rc != DB_OK || !st) return DB_ERROR;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, block);
    DbMetricBlockKey *keys = NULL;
    size_t n = 0, cap = 0;
    int s;
    while (rc == DB_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            DbMetricBlockKey *grown = realloc(keys, cap * sizeof *keys);
            if (!grown) rc = error_set("metric blocks: out of memory");
            else keys = grown;
        }
        if (rc == DB_OK) {
            keys[n] = (DbMetricBlockKey){.job = job, .block = block};
            db_column_copy(st, 0, keys[n].name, sizeof keys[n].name);
            n++;
        }
    }
    if (rc == DB_OK && s != SQLITE_DONE) rc = db_fail(c, "metric blocks");
    sqlite3_reset(st);
    if (rc == DB_OK) rc = db_metric_blocks_refresh(c, keys, n);
    free(keys);
    return rc;
}

/* ---- buckets from blocks ---- */

/* b merged into the bucket `into` that comes before it. */
static void merge_after(DbMetricBucket *into, const DbMetricBucket *b) {
    into->last_step = b->last_step;
    into->epoch = b->epoch;
    into->wall_time = b->wall_time;
    into->last = b->last;
    into->count += b->count;
    into->min = fmin(into->min, b->min); /* skips a NaN unless both are */
    into->max = fmax(into->max, b->max);
}

typedef struct {
    DbMetricBucket *out;
    int n;
    int64_t first_block, blocks_per_bucket, current; /* current: the last bucket's index */
} Bucketing;

/* A block (or the part of one in range) into its bucket. */
static void add_block(Bucketing *g, int64_t block, const DbMetricBucket *b) {
    int64_t k = (block - g->first_block) / g->blocks_per_bucket;
    if (g->n > 0 && k == g->current) {
        merge_after(&g->out[g->n - 1], b);
        return;
    }
    g->current = k;
    g->out[g->n++] = *b;
}

int db_metric_blocks_downsample(DbConn *c, int64_t job, const char *name, int64_t lo, int64_t hi,
                                int max_points, DbMetricBucket **out, int *n) {
    *out = NULL;
    *n = 0;
    int64_t b0 = db_metric_block_of(lo), b1 = db_metric_block_of(hi);
    uint64_t blocks = (uint64_t)(b1 - b0) + 1;
    Bucketing g = {.first_block = b0,
                   .blocks_per_bucket = (int64_t)((blocks + (uint64_t)max_points - 1) /
                                                  (uint64_t)max_points)};
    g.out = malloc((size_t)max_points * sizeof *g.out);
    if (!g.out) return error_set("metrics: out of memory");
    /* the end blocks from their rows in [lo, hi]; those between from their summaries */
    DbMetricBucket b;
    bool found;
    int rc = summarize(c, job, name, lo, b0 == b1 ? hi : block_last(b0), &b, &found);
    if (rc == DB_OK && found) add_block(&g, b0, &b);
    sqlite3_stmt *st = NULL;
    if (rc == DB_OK && b1 > b0 + 1) {
        st = db_stmt(c, "SELECT block, count, first_step, last_step, min, max, last, epoch,"
                        " wall_time FROM metric_blocks WHERE job_id = ?1 AND name = ?2"
                        " AND block > ?3 AND block < ?4 ORDER BY block");
        if (!st) rc = DB_ERROR;
    }
    if (st) {
        sqlite3_bind_int64(st, 1, job);
        db_bind_text(st, 2, name);
        sqlite3_bind_int64(st, 3, b0);
        sqlite3_bind_int64(st, 4, b1);
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            b = read_summary(st, 1);
            add_block(&g, sqlite3_column_int64(st, 0), &b);
        }
        if (s != SQLITE_DONE) rc = db_fail(c, "metric blocks");
        sqlite3_reset(st);
    }
    if (rc == DB_OK && b1 > b0) {
        rc = summarize(c, job, name, block_first(b1), hi, &b, &found);
        if (rc == DB_OK && found) add_block(&g, b1, &b);
    }
    if (rc != DB_OK || g.n == 0) {
        free(g.out);
        return rc;
    }
    *out = g.out;
    *n = g.n;
    return DB_OK;
}
