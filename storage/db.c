/* db.c - opening the database, its schema migrations and the connection
 * pool every other storage/ files file borrows from.
 *
 * Concurrency model: one SQLite connection per concurrent caller, from a
 * pool. The HTTP threads read (job status, metric history) while workers and
 * the metric writer write; with a single connection behind a mutex every
 * read would queue behind a batch commit. With WAL and one connection per
 * thread at a time, reads run beside the one writer, and writers wait for
 * each other inside SQLite (BEGIN IMMEDIATE + busy_timeout 5000 ms). The
 * pool grows on demand to DB_MAX_CONNECTIONS, then callers wait for a free
 * one. Connections are opened SQLITE_OPEN_NOMUTEX: the pool, not SQLite,
 * guarantees one thread per connection.
 *
 * Migrations are an ordered list of SQL scripts; PRAGMA user_version says
 * how many have run. Each runs in its own IMMEDIATE transaction that also
 * bumps user_version, so two daemons racing on one new file, or a crash in
 * the middle, leave either the old or the new schema.
 */
#include "storage/db_internal.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

struct Db {
    char *dir;
    char *path;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    DbConn *free_list;
    DbConn *all[DB_MAX_CONNECTIONS];
    int nall;
};

/* ---- schema ---- */

/* metric_blocks (metric_blocks.c): its columns, and its rows made from
 * the metrics there are (migration 4 makes it, 9 makes it where 4's first
 * form did not). The text is 4's as it shipped: a migration's SQL never
 * changes once released. */
#define METRIC_BLOCKS_COLUMNS \
    "  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE," \
    "  name TEXT NOT NULL," \
    "  block INTEGER NOT NULL," \
    "  count INTEGER NOT NULL," \
    "  first_step INTEGER NOT NULL," \
    "  last_step INTEGER NOT NULL," \
    "  min REAL, max REAL, last REAL," \
    "  epoch INTEGER NOT NULL," \
    "  wall_time REAL," \
    "  PRIMARY KEY (job_id, name, block)) WITHOUT ROWID;"

#define METRIC_BLOCKS_FILL \
    "INSERT INTO metric_blocks (job_id, name, block, count, first_step, last_step, min, max," \
    "  last, epoch, wall_time)" \
    "  SELECT g.job_id, g.name, g.block, g.n, g.lo, g.hi, g.mn, g.mx, m.value, m.epoch," \
    "  m.wall_time FROM (SELECT job_id, name, step >> 8 AS block, count(*) AS n," \
    "  min(step) AS lo, max(step) AS hi, min(value) AS mn, max(value) AS mx FROM metrics" \
    "  GROUP BY job_id, name, step >> 8) AS g" \
    "  JOIN metrics AS m ON m.job_id = g.job_id AND m.name = g.name AND m.step = g.hi"

static const char *const migrations[] = {
    /* 1: the first schema */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  token_sha256 TEXT NOT NULL UNIQUE,"
    "  admin INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE datasets ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL UNIQUE,"
    "  format TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('uploading', 'ready')),"
    "  owner INTEGER REFERENCES users(id) ON DELETE SET NULL,"
    "  files TEXT NOT NULL DEFAULT '[]',"
    "  bytes INTEGER NOT NULL DEFAULT 0,"
    "  sha256 TEXT NOT NULL DEFAULT '',"
    "  samples INTEGER NOT NULL DEFAULT 0,"
    "  shape TEXT NOT NULL DEFAULT '{}',"
    "  options TEXT NOT NULL DEFAULT '{}',"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL DEFAULT '',"
    "  owner INTEGER REFERENCES users(id) ON DELETE SET NULL,"
    "  spec TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN "
    "    ('queued', 'running', 'succeeded', 'failed', 'cancelled')),"
    "  device TEXT NOT NULL DEFAULT '',"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  attempt INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  started_at INTEGER NOT NULL DEFAULT 0,"
    "  finished_at INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  epoch INTEGER NOT NULL DEFAULT 0,"
    "  step INTEGER NOT NULL DEFAULT 0,"
    "  total_steps INTEGER NOT NULL DEFAULT 0,"
    "  samples_per_s REAL NOT NULL DEFAULT 0,"
    "  eta_s REAL NOT NULL DEFAULT -1);"
    "CREATE INDEX jobs_queue ON jobs (state, priority DESC, created_at, id);"
    "CREATE INDEX jobs_state_id ON jobs (state, id);"
    /* WITHOUT ROWID: the table is its primary key's b-tree, so a series
     * (job, name) is one contiguous range in step order. */
    "CREATE TABLE metrics ("
    "  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  epoch INTEGER NOT NULL,"
    "  value REAL," /* NULL holds a NaN: SQLite stores NaN as NULL */
    "  PRIMARY KEY (job_id, name, step)) WITHOUT ROWID;"
    "CREATE INDEX metrics_step ON metrics (job_id, step);"
    "CREATE TABLE checkpoints ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  epoch INTEGER NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  partial INTEGER NOT NULL DEFAULT 0,"
    "  path TEXT NOT NULL,"
    "  bytes INTEGER NOT NULL,"
    "  sha256 TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  UNIQUE (job_id, step));"
    "CREATE TABLE logs ("
    "  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  ts INTEGER NOT NULL,"
    "  line TEXT NOT NULL,"
    "  PRIMARY KEY (job_id, seq)) WITHOUT ROWID;",
    /* 2: what the queue needs of a job, measured at submission, in columns
     * of its own so that the queue never reads a spec: the device it asks
     * for ("auto", "cpu", "cuda:N") and the model's size. Jobs of version
     * 1 take their device from their spec. */
    "ALTER TABLE jobs ADD COLUMN device_request TEXT NOT NULL DEFAULT 'auto';"
    "ALTER TABLE jobs ADD COLUMN parameters INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN train_bytes INTEGER NOT NULL DEFAULT 0;"
    "UPDATE jobs SET device_request = CASE"
    "  WHEN NOT json_valid(spec) THEN 'auto'"
    "  WHEN json_extract(spec, '$.device') = 'cuda' THEN 'cuda:0'"
    "  WHEN json_type(spec, '$.device') = 'text' THEN json_extract(spec, '$.device')"
    "  ELSE 'auto' END;",
    /* 3: a server a lab shares. Users: revoked tokens, quotas (NULL: the
     * daemon's default), recent device use for the fair queue. Datasets:
     * names unique per owner (each user's namespace; SQLite cannot drop a
     * UNIQUE, so the table is rebuilt), `shared` (read-only to the others),
     * `importing` with its progress (URL imports run in the background).
     * Jobs: an admin's priority over other users' work, and how often the
     * job was preempted. The audit trail. */
    "ALTER TABLE users ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN quota_running INTEGER;"
    "ALTER TABLE users ADD COLUMN quota_queued INTEGER;"
    "ALTER TABLE users ADD COLUMN quota_gpus INTEGER;"
    "ALTER TABLE users ADD COLUMN quota_dataset_bytes INTEGER;"
    "ALTER TABLE users ADD COLUMN quota_checkpoint_bytes INTEGER;"
    "ALTER TABLE users ADD COLUMN usage_s REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN usage_at INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE datasets_v3 ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  format TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('uploading', 'importing', 'ready')),"
    "  owner INTEGER REFERENCES users(id) ON DELETE SET NULL,"
    "  files TEXT NOT NULL DEFAULT '[]',"
    "  bytes INTEGER NOT NULL DEFAULT 0,"
    "  sha256 TEXT NOT NULL DEFAULT '',"
    "  samples INTEGER NOT NULL DEFAULT 0,"
    "  shape TEXT NOT NULL DEFAULT '{}',"
    "  options TEXT NOT NULL DEFAULT '{}',"
    "  created_at INTEGER NOT NULL,"
    "  shared INTEGER NOT NULL DEFAULT 0,"
    "  progress_bytes INTEGER NOT NULL DEFAULT 0,"
    "  total_bytes INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT);"
    "INSERT INTO datasets_v3 (id, name, format, state, owner, files, bytes, sha256, samples,"
    "  shape, options, created_at)"
    "  SELECT id, name, format, state, owner, files, bytes, sha256, samples, shape, options,"
    "  created_at FROM datasets;"
    "DROP TABLE datasets;"
    "ALTER TABLE datasets_v3 RENAME TO datasets;"
    /* an ownerless dataset (owner NULL) is owner 0 here, so that its names
     * are unique too */
    "CREATE UNIQUE INDEX datasets_owner_name ON datasets (coalesce(owner, 0), name);"
    "ALTER TABLE jobs ADD COLUMN admin_priority INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN train_dataset INTEGER;"
    "ALTER TABLE jobs ADD COLUMN val_dataset INTEGER;"
    /* the datasets a job's spec named, while names were still global */
    "UPDATE jobs SET"
    "  train_dataset = (SELECT d.id FROM datasets d WHERE d.name = json_extract(jobs.spec,"
    "    '$.data.train') OR CAST(d.id AS TEXT) = json_extract(jobs.spec, '$.data.train')),"
    "  val_dataset = (SELECT d.id FROM datasets d WHERE d.name = json_extract(jobs.spec,"
    "    '$.data.val') OR CAST(d.id AS TEXT) = json_extract(jobs.spec, '$.data.val'))"
    "  WHERE json_valid(spec);"
    "ALTER TABLE jobs ADD COLUMN preemptions INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX jobs_owner_state ON jobs (owner, state);"
    "CREATE TABLE audit ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  ts INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  target TEXT NOT NULL,"
    "  detail TEXT);",
    /* 4: when each metric point was logged (seconds since the Unix epoch,
     * to the ms), for charts by wall time; NULL for the points before.
     * Each series summarised per block of 256 steps (metric_blocks.c),
     * made here from the rows there are. */
    "ALTER TABLE metrics ADD COLUMN wall_time REAL;"
    "CREATE TABLE metric_blocks (" METRIC_BLOCKS_COLUMNS METRIC_BLOCKS_FILL ";",
    /* 5: attempts run outside the daemon (server/executor.h): the sha256
     * of the token their ranks report with and the attempt it belongs to,
     * the next log line number that attempt's ranks may store, and the end
     * they reported (state NULL until they do) */
    "ALTER TABLE jobs ADD COLUMN remote_token TEXT;"
    "ALTER TABLE jobs ADD COLUMN remote_attempt INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN remote_log_seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN remote_end_state TEXT;"
    "ALTER TABLE jobs ADD COLUMN remote_end_error TEXT;",
    /* 6: a job's ranks, for the queue: a job of N ranks on GPUs takes N of
     * them at once (server/queue_plan.h) */
    "ALTER TABLE jobs ADD COLUMN ranks INTEGER NOT NULL DEFAULT 1;"
    "UPDATE jobs SET ranks = json_extract(spec, '$.ranks')"
    "  WHERE json_valid(spec) AND json_type(spec, '$.ranks') = 'integer'"
    "  AND json_extract(spec, '$.ranks') BETWEEN 1 AND 1024;",
    /* 7: a checkpoint's bytes on disk, its trainer's state (Adam's two
     * moments: twice the model) too, for the checkpoint quota; the rows of
     * version 6 count their model's until they are replaced */
    ("ALTER TABLE checkpoints ADD COLUMN disk_bytes INTEGER NOT NULL DEFAULT 0;"
     "UPDATE checkpoints SET disk_bytes = bytes;"),
    /* 8: a cancel asked of a running job, so that a daemon killed before
     * its run stopped ends the job cancelled at its next start rather than
     * running it again (db_job_recover_running) */
    "ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;",
    /* 9: repairs. Version 4 first shipped without metric_blocks (added to
     * its migration later): a data dir made then has none, and every
     * metric write failed on it; made and filled here where it is missing
     * or empty. Version 3 rebuilt datasets, and so restarted its id
     * sequence at the highest id left: ids of deleted datasets that jobs
     * still name are never handed out again from here. */
    "CREATE TABLE IF NOT EXISTS metric_blocks (" METRIC_BLOCKS_COLUMNS METRIC_BLOCKS_FILL
    "  WHERE NOT EXISTS (SELECT 1 FROM metric_blocks);"
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'datasets', 0"
    "  WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'datasets');"
    "UPDATE sqlite_sequence SET seq = max(seq,"
    "  coalesce((SELECT max(train_dataset) FROM jobs), 0),"
    "  coalesce((SELECT max(val_dataset) FROM jobs), 0)) WHERE name = 'datasets';",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == DB_SCHEMA_VERSION,
               "DB_SCHEMA_VERSION must count the migrations");

const char *db_migration(int version) {
    return version >= 1 && version <= DB_SCHEMA_VERSION ? migrations[version - 1] : NULL;
}

/* ---- helpers shared by storage/ files ---- */

/* The errno behind SQLite's last failure on h, for the error's sys_errno:
 * ENOSPC for SQLITE_FULL (the disk, or the WAL, could not grow), the OS's
 * for an I/O error, 0 for the rest (a constraint, a busy database). */
static int sqlite_errno(sqlite3 *h) {
    int code = sqlite3_extended_errcode(h) & 0xff;
    if (code == SQLITE_FULL) return ENOSPC;
    return code == SQLITE_IOERR || code == SQLITE_CANTOPEN ? sqlite3_system_errno(h) : 0;
}

int db_fail(DbConn *c, const char *what) {
    error_set("%s: %s", what, c && c->h ? sqlite3_errmsg(c->h) : "no connection");
    if (c && c->h) error_set_errno(sqlite_errno(c->h));
    return DB_ERROR;
}

/* db_get_row and db_get_row_ints: ?1 is key_text when not NULL, else the
 * n keys are ?1..?n. */
static int get_row(Db *db, const char *sql, const char *key_text, const int64_t *keys, int n,
                   DbRowReader read, void *out, const char *what) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int rc;
    sqlite3_stmt *st = db_stmt(c, sql);
    if (!st) {
        rc = DB_ERROR;
        goto done;
    }
    if (key_text)
        db_bind_text(st, 1, key_text);
    else
        for (int i = 0; i < n; i++) sqlite3_bind_int64(st, i + 1, keys[i]);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        rc = read(st, out) == 0 ? DB_OK : DB_ERROR;
    else if (s == SQLITE_DONE)
        rc = DB_NOT_FOUND;
    else
        rc = db_fail(c, what);
done:
    db_release(db, c);
    return rc;
}

int db_get_row(Db *db, const char *sql, const char *key_text, int64_t key_int, DbRowReader read,
               void *out, const char *what) {
    return get_row(db, sql, key_text, &key_int, 1, read, out, what);
}

int db_get_row_ints(Db *db, const char *sql, const int64_t *keys, int n, DbRowReader read,
                    void *out, const char *what) {
    return get_row(db, sql, NULL, keys, n, read, out, what);
}

int db_collect(DbConn *c, sqlite3_stmt *st, size_t elem_size, DbRowReader read, void **out, int *n,
               const char *what) {
    size_t cap = (size_t)*n;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((size_t)*n == cap) {
            cap = cap ? 2 * cap : 16;
            void *grown = realloc(*out, cap * elem_size);
            if (!grown) return error_set("%s: out of memory", what), DB_ERROR;
            *out = grown;
        }
        if (read(st, (char *)*out + (size_t)*n * elem_size) != 0) return DB_ERROR;
        (*n)++;
    }
    return s == SQLITE_DONE ? DB_OK : db_fail(c, what);
}

sqlite3_stmt *db_stmt(DbConn *c, const char *sql) {
    for (int i = 0; i < c->ncache; i++)
        if (c->cache[i].sql == sql) {
            sqlite3_reset(c->cache[i].st);
            sqlite3_clear_bindings(c->cache[i].st);
            return c->cache[i].st;
        }
    sqlite3_stmt *st = NULL;
    unsigned flags = c->ncache < DB_STMT_CACHE ? SQLITE_PREPARE_PERSISTENT : 0;
    if (sqlite3_prepare_v3(c->h, sql, -1, flags, &st, NULL) != SQLITE_OK) {
        error_set("sql: %s (in \"%.60s...\")", sqlite3_errmsg(c->h), sql);
        return NULL;
    }
    if (c->ncache == DB_STMT_CACHE) {
        /* full: evict the oldest; the cache holds far fewer statements
         * than this in practice */
        sqlite3_finalize(c->cache[0].st);
        memmove(c->cache, c->cache + 1, sizeof c->cache[0] * (DB_STMT_CACHE - 1));
        c->ncache--;
    }
    c->cache[c->ncache].sql = sql;
    c->cache[c->ncache].st = st;
    c->ncache++;
    return st;
}

int db_exec(DbConn *c, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(c->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        error_set("sql: %s", msg ? msg : sqlite3_errmsg(c->h));
        error_set_errno(sqlite_errno(c->h));
        sqlite3_free(msg);
        return DB_ERROR;
    }
    return DB_OK;
}

int db_set_durable(DbConn *c, bool on) {
    return db_exec(c, on ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
}

int db_durable_done(DbConn *c, int rc) {
    Error kept = *error_last();
    if (db_set_durable(c, false) == DB_OK) return rc;
    if (rc == DB_OK) return DB_ERROR;
    error_restore(&kept); /* the call's own error, not the reset's */
    return rc;
}

int db_begin(DbConn *c) {
    sqlite3_stmt *st = db_stmt(c, "BEGIN IMMEDIATE");
    if (!st) return DB_ERROR;
    if (sqlite3_step(st) != SQLITE_DONE) return db_fail(c, "begin");
    sqlite3_reset(st);
    return DB_OK;
}

int db_commit(DbConn *c) {
    sqlite3_stmt *st = db_stmt(c, "COMMIT");
    if (!st) return DB_ERROR;
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_fail(c, "commit");
        db_rollback(c);
        return DB_ERROR;
    }
    sqlite3_reset(st);
    return DB_OK;
}

void db_rollback(DbConn *c) {
    if (!sqlite3_get_autocommit(c->h)) sqlite3_exec(c->h, "ROLLBACK", NULL, NULL, NULL);
}

int db_step_done(DbConn *c, sqlite3_stmt *st, const char *what) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
        sqlite3_reset(st);
        return DB_OK;
    }
    int status = (rc & 0xff) == SQLITE_CONSTRAINT ? DB_CONFLICT : DB_ERROR;
    db_fail(c, what);
    sqlite3_reset(st);
    return status;
}

int db_step_update(DbConn *c, sqlite3_stmt *st, const char *what, const char *missing_fmt, ...) {
    int rc = db_step_done(c, st, what);
    if (rc != DB_OK || sqlite3_changes(c->h) > 0) return rc;
    char missing[256];
    va_list ap;
    va_start(ap, missing_fmt);
    vsnprintf(missing, sizeof missing, missing_fmt, ap);
    va_end(ap);
    error_set("%s", missing);
    return DB_NOT_FOUND;
}

void db_bind_real(sqlite3_stmt *st, int i, double v) {
    if (isnan(v))
        sqlite3_bind_null(st, i); /* SQLite would store a NaN as NULL anyway */
    else
        sqlite3_bind_double(st, i, v);
}

double db_column_real(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

int db_bind_text(sqlite3_stmt *st, int i, const char *s) {
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}

void db_column_copy(sqlite3_stmt *st, int i, char *buf, size_t size) {
    /* memcpy, not snprintf: this runs for each row of a metric history */
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
    if (n >= size) n = size - 1;
    if (n) memcpy(buf, t, n);
    buf[n] = '\0';
}

char *db_column_dup(sqlite3_stmt *st, int i, int *oom) {
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t) return NULL;
    char *s = strdup((const char *)t);
    if (!s && oom) *oom = 1;
    return s;
}

/* Deeper than this, a tree is left (with an error): each level holds a
 * directory open. */
#define REMOVE_TREE_DEPTH 128

/* Empties the directory open at fd (taken, closed here): each entry is
 * removed by its name relative to fd, and a directory is entered only
 * through openat with O_NOFOLLOW. A link, or one swapped in for a
 * directory mid-walk (by whoever may write the tree: a job's ranks), is
 * then removed, never followed out of the tree. */
static int empty_dir(int fd, const char *shown, int depth) {
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return error_set("cannot read %s: %s", shown, strerror(errno));
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        if (unlinkat(dirfd(d), name, 0) == 0 || errno == ENOENT) continue;
        int err = errno; /* EISDIR (EPERM elsewhere): a folder */
        if (err != EISDIR && err != EPERM) {
            rc = error_sys(err, "cannot remove %s/%s", shown, name);
            break;
        }
        int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 && errno == ENOENT) continue;
        if (sub < 0 || depth >= REMOVE_TREE_DEPTH) {
            /* not a folder after all (ENOTDIR, ELOOP): unlinkat's reason */
            const char *why = sub >= 0 ? "nested too deep"
                              : errno == ENOTDIR || errno == ELOOP ? strerror(err)
                                                                   : strerror(errno);
            rc = error_set("cannot remove %s/%s: %s", shown, name, why);
            if (sub >= 0) close(sub);
            break;
        }
        if ((rc = empty_dir(sub, shown, depth + 1)) != 0) break;
        if (unlinkat(dirfd(d), name, AT_REMOVEDIR) == 0 || errno == ENOENT) continue;
        err = errno;
        /* a link swapped in after the walk: removed as the link it is */
        if (err != ENOTDIR || (unlinkat(dirfd(d), name, 0) != 0 && errno != ENOENT))
            rc = error_sys(err == ENOTDIR ? errno : err, "cannot remove %s/%s", shown, name);
    }
    closedir(d);
    return rc;
}

int db_remove_tree(const char *path) {
    if (unlink(path) == 0 || errno == ENOENT) return 0; /* a file, a link, or nothing */
    if (errno != EISDIR && errno != EPERM) return error_sys(errno, "cannot remove %s", path);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return error_sys(errno, "cannot open %s", path);
    if (empty_dir(fd, path, 0) != 0) return -1;
    if (rmdir(path) != 0 && errno != ENOENT) return error_sys(errno, "cannot remove %s", path);
    return 0;
}

/* ---- the pool ---- */

static void conn_close(DbConn *c) {
    if (!c) return;
    for (int i = 0; i < c->ncache; i++) sqlite3_finalize(c->cache[i].st);
    sqlite3_close(c->h);
    free(c);
}

static DbConn *conn_open(Db *db) {
    DbConn *c = calloc(1, sizeof *c);
    if (!c) {
        error_set("database: out of memory");
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(db->path, &c->h, flags, NULL) != SQLITE_OK) {
        error_set("database %s: %s", db->path, c->h ? sqlite3_errmsg(c->h) : "cannot open");
        conn_close(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->h, 5000);
    sqlite3_extended_result_codes(c->h, 1);
    /* WAL is a property of the file (set once, kept); the rest is per
     * connection. synchronous=NORMAL in WAL: a commit survives a crash of
     * the process (kill -9), not necessarily a power cut. */
    if (db_exec(c, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
                   "PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY; "
                   "PRAGMA cache_size=-16384; PRAGMA mmap_size=268435456;") != DB_OK) {
        error_prefix("database %s", db->path);
        conn_close(c);
        return NULL;
    }
    return c;
}

DbConn *db_acquire(Db *db) {
    pthread_mutex_lock(&db->mu);
    for (;;) {
        if (db->free_list) {
            DbConn *c = db->free_list;
            db->free_list = c->next_free;
            pthread_mutex_unlock(&db->mu);
            return c;
        }
        if (db->nall < DB_MAX_CONNECTIONS) {
            /* opened under the lock: it happens at most DB_MAX_CONNECTIONS
             * times in a daemon's life */
            DbConn *c = conn_open(db);
            if (c) db->all[db->nall++] = c;
            pthread_mutex_unlock(&db->mu);
            return c;
        }
        pthread_cond_wait(&db->cv, &db->mu);
    }
}

void db_release(Db *db, DbConn *c) {
    if (!c) return;
    for (int i = 0; i < c->ncache; i++) sqlite3_reset(c->cache[i].st);
    db_rollback(c); /* a transaction left open by an error path */
    pthread_mutex_lock(&db->mu);
    c->next_free = db->free_list;
    db->free_list = c;
    pthread_cond_signal(&db->cv);
    pthread_mutex_unlock(&db->mu);
}

/* ---- open, migrate, close ---- */

int db_mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return error_set("%.64s...: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return error_sys(errno, "cannot create %s", buf);
        *p = '/';
    }
    /* the errno kept (ENOSPC: the disk is full), for the callers' 507 */
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return error_sys(errno, "cannot create %s", buf);
    return 0;
}

static int user_version(DbConn *c, int *v) {
    sqlite3_stmt *st = db_stmt(c, "PRAGMA user_version");
    if (!st) return DB_ERROR;
    if (sqlite3_step(st) != SQLITE_ROW) return db_fail(c, "user_version");
    *v = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return DB_OK;
}

static int migrate(DbConn *c, const char *path) {
    for (;;) {
        if (db_begin(c) != DB_OK) return error_prefix("database %s: migration", path);
        int v;
        if (user_version(c, &v) != DB_OK) goto fail;
        if (v > DB_SCHEMA_VERSION) {
            db_rollback(c);
            return error_set("database %s: schema version %d is newer than this traind's %d",
                             path, v, DB_SCHEMA_VERSION);
        }
        if (v == DB_SCHEMA_VERSION) {
            db_rollback(c);
            return 0;
        }
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version=%d", v + 1);
        if (db_exec(c, migrations[v]) != DB_OK || db_exec(c, bump) != DB_OK) goto fail;
        if (db_commit(c) != DB_OK) goto fail;
        continue;
    fail:
        db_rollback(c);
        return error_prefix("database %s: migration to version %d", path, v + 1);
    }
}

/* data_dir as an absolute path without trailing slashes: the working
 * directory in front of a relative one, its leading "./" dropped. A new
 * string, or NULL with an error. */
static char *absolute_dir(const char *data_dir) {
    char cwd[PATH_MAX] = "";
    if (data_dir[0] != '/' && !getcwd(cwd, sizeof cwd))
        return error_sys(errno, "data dir %s: the working directory", data_dir), NULL;
    while (data_dir[0] == '.' && data_dir[1] == '/') data_dir += 2;
    size_t n = strlen(data_dir);
    while (n > 1 && data_dir[n - 1] == '/') n--;
    bool here = n == 0 || (n == 1 && data_dir[0] == '.'); /* "./", "." */
    char *dir = NULL;
    if (!cwd[0]) dir = strndup(data_dir, n);
    else if (here) dir = strdup(cwd);
    else if (asprintf(&dir, "%s/%.*s", cwd, (int)n, data_dir) < 0) dir = NULL;
    if (!dir) error_set("database: out of memory");
    return dir;
}

/* The data dir is its owner's alone (0700): users' work is private, from
 * the server's other accounts too, whatever the modes of the files in it
 * (uploads 0644, the database as the umask makes it). */
static int keep_private(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0) return error_set("%s: %s", dir, strerror(errno));
    /* an admin of a group that shares a data dir (0770) runs `traind
     * user` in it as before: its owner decides its mode */
    if (st.st_uid != geteuid()) return 0;
    if ((st.st_mode & 077) && chmod(dir, st.st_mode & 07700) != 0)
        return error_set("%s: mode %03o lets other accounts read users' work, and it cannot be "
                         "made 0700: %s", dir, (unsigned)(st.st_mode & 0777), strerror(errno));
    return 0;
}

Db *db_open(const char *data_dir) {
    if (!data_dir || !*data_dir) {
        error_set("data dir: empty path");
        return NULL;
    }
    if (db_mkdir_p(data_dir) != 0 || keep_private(data_dir) != 0) {
        error_prefix("data dir");
        return NULL;
    }
    Db *db = calloc(1, sizeof *db);
    if (!db) {
        error_set("database: out of memory");
        return NULL;
    }
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->cv, NULL);
    /* absolute: the paths built on it reach ranks and files that do not
     * share the daemon's working directory (a spec.json read relative to
     * its attempt's); a path given absolute stays as given, links and all
     * (the nodes may mount it at that path, not at where it leads) */
    if (!(db->dir = absolute_dir(data_dir))) {
        db_close(db);
        return NULL;
    }
    size_t n = strlen(db->dir);
    db->path = malloc(n + 16);
    if (!db->path) {
        error_set("database: out of memory");
        db_close(db);
        return NULL;
    }
    snprintf(db->path, n + 16, "%s/traind.db", db->dir);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/datasets", db->dir);
    if (db_mkdir_p(sub) != 0) goto fail;
    snprintf(sub, sizeof sub, "%s/jobs", db->dir);
    if (db_mkdir_p(sub) != 0) goto fail;
    DbConn *c = db_acquire(db);
    if (!c) goto fail;
    int rc = migrate(c, db->path);
    db_release(db, c);
    if (rc != 0) goto fail;
    return db;
fail:
    db_close(db);
    return NULL;
}

void db_close(Db *db) {
    if (!db) return;
    for (int i = 0; i < db->nall; i++) conn_close(db->all[i]);
    pthread_mutex_destroy(&db->mu);
    pthread_cond_destroy(&db->cv);
    free(db->dir);
    free(db->path);
    free(db);
}

const char *db_data_dir(const Db *db) { return db->dir; }

int db_file_schema_version(const char *data_dir, int *version) {
    *version = 0;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/traind.db", data_dir) >= (int)sizeof path)
        return error_set("data dir %.64s...: path too long", data_dir);
    sqlite3 *h = NULL;
    int rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL);
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st) == SQLITE_ROW ? SQLITE_OK : sqlite3_errcode(h);
    if (rc == SQLITE_OK)
        *version = sqlite3_column_int(st, 0);
    else
        error_set("database %s: %s", path, h ? sqlite3_errmsg(h) : "cannot open");
    sqlite3_finalize(st);
    sqlite3_close(h);
    return rc == SQLITE_OK ? 0 : -1;
}

int db_schema_version(Db *db) {
    DbConn *c = db_acquire(db);
    if (!c) return DB_ERROR;
    int v = 0;
    int rc = user_version(c, &v);
    db_release(db, c);
    return rc == DB_OK ? v : rc;
}

int64_t db_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *db_format_time(int64_t ms, char *buf, size_t size) {
    if (size == 0) return buf;
    buf[0] = '\0';
    if (ms <= 0) return buf;
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) return buf;
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", date, (int)(ms % 1000));
    return buf;
}

int db_path(const Db *db, const char *rel, char *buf, size_t size) {
    if (snprintf(buf, size, "%s/%s", db->dir, rel) >= (int)size)
        return error_set("path too long: %s/%s", db->dir, rel);
    return 0;
}
