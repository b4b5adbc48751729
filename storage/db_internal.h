/* db_internal.h - what the storage/ files files share and nobody else uses:
 * borrowing a pooled connection, cached prepared statements, transactions
 * and error reporting in core/error.h's style.
 *
 * A borrowed connection belongs to one thread until db_release, which also
 * resets every statement it handed out, so a forgotten reset cannot keep a
 * read transaction (and the WAL) pinned.
 */
#ifndef TRAIND_STORAGE_DB_INTERNAL_H
#define TRAIND_STORAGE_DB_INTERNAL_H

#include <sqlite3.h>

#include "storage/db.h"

#define DB_STMT_CACHE 64

typedef struct DbConn {
    sqlite3 *h;
    struct {
        const char *sql; /* a string literal: cached by its address */
        sqlite3_stmt *st;
    } cache[DB_STMT_CACHE];
    int ncache;
    struct DbConn *next_free;
} DbConn;

/* A connection of the pool (waits when all DB_MAX_CONNECTIONS are busy).
 * NULL with an error. */
DbConn *db_acquire(Db *db);
void db_release(Db *db, DbConn *c);

/* The statement for sql (a literal), prepared once per connection and
 * handed out reset with its bindings cleared. NULL with an error. */
sqlite3_stmt *db_stmt(DbConn *c, const char *sql);
/* Runs statements without results. DB_OK or DB_ERROR. */
int db_exec(DbConn *c, const char *sql);
/* The connection's commits from now on durable when they return (on:
 * synchronous=FULL, the WAL synced at each commit), or as every other's
 * (off: NORMAL, which a power cut may undo). On, for a commit after which
 * files go that only its rows still name, or that a reply promises kept.
 * Outside a transaction only (SQLite refuses it within). */
int db_set_durable(DbConn *c, bool on);
/* db_set_durable(c, false) after a call that returned rc: rc, or DB_ERROR
 * when rc was DB_OK and the reset failed; a failed rc's error is kept. */
int db_durable_done(DbConn *c, int rc);
/* BEGIN IMMEDIATE (the write lock up front, so busy_timeout applies),
 * COMMIT, ROLLBACK (never fails the caller). */
int db_begin(DbConn *c);
int db_commit(DbConn *c);
void db_rollback(DbConn *c);

/* Sets "what: <sqlite's message>" (its sys_errno ENOSPC when the disk is
 * full) and returns DB_ERROR. */
int db_fail(DbConn *c, const char *what);
/* Steps a statement that returns no rows. DB_OK, DB_CONFLICT for a
 * constraint failure (error "what: ..."), DB_ERROR otherwise. */
int db_step_done(DbConn *c, sqlite3_stmt *st, const char *what);
/* db_step_done for an UPDATE of one row: when no row matched, sets the
 * error to the formatted message and returns DB_NOT_FOUND. */
int db_step_update(DbConn *c, sqlite3_stmt *st, const char *what, const char *missing_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Reads the current row of st into out: 0, or -1 with an error. */
typedef int (*DbRowReader)(sqlite3_stmt *st, void *out);
/* Runs sql with one parameter ?1 (key_text when not NULL, else key_int)
 * and reads its first row with read. DB_OK; DB_NOT_FOUND when there is no
 * row (the caller says what was not found); DB_ERROR with "what: ...". */
int db_get_row(Db *db, const char *sql, const char *key_text, int64_t key_int, DbRowReader read,
               void *out, const char *what);
/* The same with the n integer parameters ?1..?n bound to keys. */
int db_get_row_ints(Db *db, const char *sql, const int64_t *keys, int n, DbRowReader read,
                    void *out, const char *what);

/* Steps st to its end, reading each row with read into a growing array of
 * elem_size elements at *out (which may already hold *n of them). *n counts
 * the rows read in full, also on failure, so that the caller frees what
 * there is. DB_OK; DB_ERROR with "what: ..." (out of memory, SQLite). */
int db_collect(DbConn *c, sqlite3_stmt *st, size_t elem_size, DbRowReader read, void **out, int *n,
               const char *what);

/* A REAL column that may hold a NaN: bound as NULL (SQLite stores a NaN
 * so anyway), and NULL read back as NaN. */
void db_bind_real(sqlite3_stmt *st, int i, double v);
double db_column_real(sqlite3_stmt *st, int i);
/* Binds text or NULL. */
int db_bind_text(sqlite3_stmt *st, int i, const char *s);
/* Copies column i's text into buf (truncating; "" for NULL). */
void db_column_copy(sqlite3_stmt *st, int i, char *buf, size_t size);
/* A malloc'ed copy of column i's text, NULL for NULL (and *oom set on a
 * failed allocation when oom is not NULL). */
char *db_column_dup(sqlite3_stmt *st, int i, int *oom);

/* db_log_append on a connection the caller holds (inside its
 * transaction). */
int db_log_insert(DbConn *c, int64_t job, const char *line, int64_t *seq);

/* ---- metric blocks (storage/metric_blocks.c) ---- */

/* A block of a series whose summary is to be recomputed. */
typedef struct {
    int64_t job, block;
    char name[DB_METRIC_NAME_MAX + 1];
} DbMetricBlockKey;

/* The block a step is in: floor(step / DB_METRIC_BLOCK_STEPS). */
int64_t db_metric_block_of(int64_t step);
/* The INSERT OR REPLACE of one metric row (metrics.c), for the writer's
 * batches too (metric_writer.c). */
extern const char *const db_metric_put_sql;
/* Recomputes a block's summary from its rows (none left: no summary). */
int db_metric_block_refresh(DbConn *c, int64_t job, const char *name, int64_t block);
/* The same for every block of keys[0..n), each once (keys are sorted). */
int db_metric_blocks_refresh(DbConn *c, DbMetricBlockKey *keys, size_t n);
/* After the rows of a job past after_step are deleted: the blocks past it
 * go, the one it falls in is recomputed. */
int db_metric_blocks_delete_after(DbConn *c, int64_t job, int64_t after_step);
/* The series' steps in [lo, hi] (its first and last there) in at most
 * max_points buckets of whole blocks, aligned to blocks: the blocks
 * between the ends from their summaries, the two at the ends from their
 * rows in range. *out NULL and *n 0 for none. */
int db_metric_blocks_downsample(DbConn *c, int64_t job, const char *name, int64_t lo, int64_t hi,
                                int max_points, DbMetricBucket **out, int *n);

/* The SQL of migration `version` (1..DB_SCHEMA_VERSION), for tests that
 * build an old database; NULL past the last. */
const char *db_migration(int version);

#endif
