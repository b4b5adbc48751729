/* metric_writer.c - the batched writer of metric rows (storage/db.h's
 * MetricWriter), which keeps SQLite off the training thread.
 *
 * Training threads append rows to an in-memory queue under a mutex (a
 * memcpy, no I/O), and one thread swaps the queue out and commits it in
 * one IMMEDIATE transaction when 1000 rows are waiting or 100 ms have
 * passed. A step of training costs a lock and a copy; a commit of a
 * thousand rows costs a few ms on the writer thread. A commit that fails
 * (the database busy for longer than busy_timeout) is retried; rows are
 * kept until they are in.
 */
#include "storage/db_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/error.h"

#define WRITER_BATCH 1000
#define WRITER_INTERVAL_MS 100
#define WRITER_MAX_PENDING (4 << 20)

typedef struct {
    int64_t job, step;
    int epoch;
    double value, wall_time;
    char name[DB_METRIC_NAME_MAX + 1];
} PendingMetric;

struct MetricWriter {
    Db *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;    /* the writer: rows, a flush, or stop */
    pthread_cond_t done;    /* flushers, blocked pushers and waiters: a commit */
    PendingMetric *rows;    /* pushed, not yet taken by the writer */
    size_t n, cap;
    uint64_t pushed;        /* rows ever pushed */
    uint64_t committed;     /* rows ever committed (or dropped as orphans) */
    uint64_t flush_target;  /* commit at once up to here */
    uint64_t generation;    /* commits */
    int failures;           /* consecutive failed commits */
    Error failure;          /* the last failed commit's error (a full disk: ENOSPC) */
    bool stop;
};

/* The blocks rows[0..n) touch (metric_blocks.c), into a growing *keys:
 * rows come in step order per series, several series interleaved, so a
 * key already among the last few is not added again (the refresh
 * dedupes the rest). 0, or -1 out of memory. */
static int touched_blocks(const PendingMetric *rows, size_t n, DbMetricBlockKey **keys,
                          size_t *nkeys) {
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t block = db_metric_block_of(rows[i].step);
        bool seen = false;
        for (size_t k = *nkeys; k > 0 && k + 16 > *nkeys && !seen; k--) {
            const DbMetricBlockKey *p = &(*keys)[k - 1];
            seen = p->job == rows[i].job && p->block == block && !strcmp(p->name, rows[i].name);
        }
        if (seen) continue;
        if (*nkeys == cap) {
            cap = cap ? 2 * cap : 64;
            DbMetricBlockKey *grown = realloc(*keys, cap * sizeof **keys);
            if (!grown) return -1;
            *keys = grown;
        }
        DbMetricBlockKey *key = &(*keys)[(*nkeys)++];
        key->job = rows[i].job;
        key->block = block;
        memcpy(key->name, rows[i].name, sizeof key->name);
    }
    return 0;
}

/* Commits rows[0..n) in one transaction, with the summaries of the blocks
 * they touch. A row whose job is gone (foreign key) is skipped with a
 * warning rather than failing the batch forever. */
static int commit_batch(MetricWriter *w, PendingMetric *rows, size_t n) {
    DbMetricBlockKey *keys = NULL;
    size_t nkeys = 0;
    if (touched_blocks(rows, n, &keys, &nkeys) != 0) {
        free(keys);
        return error_set("metric writer: out of memory");
    }
    DbConn *c = db_acquire(w->db);
    if (!c) {
        free(keys);
        return DB_ERROR;
    }
    int rc = db_begin(c);
    if (rc != DB_OK) goto done;
    sqlite3_stmt *st = db_stmt(c, db_metric_put_sql);
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    size_t orphans = 0;
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, rows[i].job);
        sqlite3_bind_text(st, 2, rows[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, rows[i].step);
        sqlite3_bind_int(st, 4, rows[i].epoch);
        db_bind_real(st, 5, rows[i].value);
        db_bind_real(st, 6, rows[i].wall_time);
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE) continue;
        if ((s & 0xff) == SQLITE_CONSTRAINT) {
            orphans++;
            continue;
        }
        rc = db_fail(c, "insert");
        goto done;
    }
    sqlite3_reset(st);
    rc = db_metric_blocks_refresh(c, keys, nkeys);
    if (rc == DB_OK) rc = db_commit(c);
    if (rc == DB_OK && orphans)
        fprintf(stderr, "traind: metric writer: skipped %zu rows of jobs that do not exist\n",
                orphans);
done:
    db_release(w->db, c); /* rolls back a transaction left open */
    free(keys);
    return rc;
}

/* Rows are waiting: gives them WRITER_INTERVAL_MS to accumulate, unless
 * there are enough already or someone waits for them; after a failure,
 * 200 ms before trying again. With w->mu held. */
static void let_rows_gather(MetricWriter *w) {
    bool wait = w->failures || (w->n < WRITER_BATCH && w->flush_target <= w->committed);
    if (!wait || w->stop) return;
    struct timespec ts;
    clock_deadline_in(&ts, w->failures ? 200 : WRITER_INTERVAL_MS);
    uint64_t target = w->flush_target;
    while ((w->failures || w->n < WRITER_BATCH) && w->flush_target == target && !w->stop)
        if (pthread_cond_timedwait(&w->wake, &w->mu, &ts) == ETIMEDOUT) break;
}

/* A buffer of rows: the writer's batch in hand, or its spare, swapped with
 * the queue's for each batch. */
typedef struct {
    PendingMetric *rows;
    size_t n, cap;
} RowBuffer;

/* A batch that failed is kept in hand and tried again before any newer row
 * (a later row of a step must win), while pushers go on filling the queue:
 * nothing is merged, so nothing needs memory to be kept. Said once per run
 * of failures, not every 200 ms while a disk stays full. With w->mu held. */
static void note_failure(MetricWriter *w, RowBuffer *batch, RowBuffer *spare) {
    if (!w->failures)
        fprintf(stderr, "traind: metric writer: %s (retrying every 200 ms)\n", error_get());
    w->failure = *error_last();
    w->failures++;
    if (w->stop && w->failures >= 3) {
        fprintf(stderr, "traind: metric writer: giving up on %zu rows at stop\n",
                batch->n + w->n);
        w->committed += batch->n + w->n;
        w->n = 0;
        batch->n = 0;
        *spare = *batch;
    }
}

static void *writer_main(void *arg) {
    MetricWriter *w = arg;
    RowBuffer spare = {NULL, 0, 0}, batch = {NULL, 0, 0};
    pthread_mutex_lock(&w->mu);
    for (;;) {
        if (batch.n == 0 && w->n == 0) {
            if (w->stop) break;
            pthread_cond_wait(&w->wake, &w->mu);
            continue;
        }
        let_rows_gather(w);
        if (batch.n == 0) {
            /* swap the queue out: pushers go on filling the other buffer */
            batch = (RowBuffer){w->rows, w->n, w->cap};
            w->rows = spare.rows;
            w->cap = spare.cap;
            w->n = 0;
            spare = (RowBuffer){NULL, 0, 0};
        }
        pthread_mutex_unlock(&w->mu);
        int rc = commit_batch(w, batch.rows, batch.n);
        pthread_mutex_lock(&w->mu);
        if (rc == DB_OK) {
            if (w->failures)
                fprintf(stderr, "traind: metric writer: committed again after %d failed tries\n",
                        w->failures);
            w->committed += batch.n;
            w->generation++;
            w->failures = 0;
            batch.n = 0;
            spare = batch;
        } else {
            note_failure(w, &batch, &spare);
        }
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    free(spare.rows);
    return NULL;
}

MetricWriter *metric_writer_start(Db *db) {
    MetricWriter *w = calloc(1, sizeof *w);
    if (!w) {
        error_set("metric writer: out of memory");
        return NULL;
    }
    w->db = db;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    int e = pthread_create(&w->thread, NULL, writer_main, w);
    if (e != 0) {
        error_set("metric writer: cannot start a thread: %s", strerror(e));
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->done);
        free(w);
        return NULL;
    }
    return w;
}

bool metric_writer_has_room(MetricWriter *w, size_t n) {
    pthread_mutex_lock(&w->mu);
    bool room = n <= WRITER_MAX_PENDING && w->n <= WRITER_MAX_PENDING - n;
    pthread_mutex_unlock(&w->mu);
    return room;
}

int metric_writer_push(MetricWriter *w, int64_t job, const char *name, int64_t step, int epoch,
                       double value) {
    pthread_mutex_lock(&w->mu);
    while (w->n >= WRITER_MAX_PENDING && !w->stop) pthread_cond_wait(&w->done, &w->mu);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 4096;
        PendingMetric *grown = realloc(w->rows, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&w->mu);
            return error_set("metric writer: out of memory queueing %s at step %lld (%zu rows "
                             "queued)", name ? name : "", (long long)step, w->n);
        }
        w->rows = grown;
        w->cap = cap;
    }
    PendingMetric *r = &w->rows[w->n++];
    r->wall_time = clock_wall_s();
    r->job = job;
    r->step = step;
    r->epoch = epoch;
    r->value = value;
    snprintf(r->name, sizeof r->name, "%s", name ? name : "");
    w->pushed++;
    if (w->n == 1 || w->n == WRITER_BATCH) pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int metric_writer_flush(MetricWriter *w) {
    pthread_mutex_lock(&w->mu);
    uint64_t target = w->pushed;
    if (w->flush_target < target) w->flush_target = target;
    pthread_cond_signal(&w->wake);
    int rc = 0;
    /* failures that came before the call do not count alone: the disk may
     * have room again, and the next try says so */
    int seen = w->failures;
    while (w->committed < target) {
        if (w->failures >= 3 && w->failures > seen) {
            rc = error_set("metric writer: %s (%llu metric rows not stored yet: kept, and "
                           "retried until the database takes them)", w->failure.message,
                           (unsigned long long)(w->pushed - w->committed));
            error_set_errno(w->failure.sys_errno);
            break;
        }
        pthread_cond_wait(&w->done, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

uint64_t metric_writer_generation(MetricWriter *w) {
    pthread_mutex_lock(&w->mu);
    uint64_t g = w->generation;
    pthread_mutex_unlock(&w->mu);
    return g;
}

uint64_t metric_writer_wait(MetricWriter *w, uint64_t seen, int timeout_ms) {
    struct timespec ts;
    clock_deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&w->mu);
    while (w->generation == seen && !w->stop)
        if (pthread_cond_timedwait(&w->done, &w->mu, &ts) == ETIMEDOUT) break;
    uint64_t g = w->generation;
    pthread_mutex_unlock(&w->mu);
    return g;
}

void metric_writer_stop(MetricWriter *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->wake);
    pthread_cond_broadcast(&w->done);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    free(w->rows);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    free(w);
}
