/* test_storage.c - the SQLite storage layer (storage/db.h) and SHA-256:
 * migrations from an empty file and on reopen, every record's CRUD, name
 * validation, queue order, checkpoint garbage collection, log lines from
 * many threads and the NIST vectors. The metrics table and its writer are
 * test_metrics.c's. Each test works in its own temporary data dir. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "storage/db.h"
#include "storage/db_internal.h"
#include "storage/sha256.h"
#include "tests/support/full_disk.h"
#include "tests/support/tmp_db.h"
#include "tests/support/tmp_dir.h"

static char tmpdir[256];

static void make_tmp(void) { tmp_dir_make(tmpdir, sizeof tmpdir, "storage"); }

static void remove_tmp(void) { tmp_dir_remove(tmpdir); }

static Db *open_tmp(void) { return tmp_db_open_alone(tmpdir, sizeof tmpdir, "storage"); }

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- sha256 ---- */

/* The data dir is its owner's alone: one made 0755 (an older daemon's, an
 * admin's mkdir) is made 0700 when opened, a new one too. */
Test(storage, the_data_dir_is_made_private) {
    make_tmp();
    char dir[300], sub[300];
    tmp_dir_path(tmpdir, "old", dir, sizeof dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    cr_assert_eq(chmod(dir, 0755), 0); /* whatever the umask */
    Db *db = db_open(dir);
    cr_assert(db, "%s", error_get());
    struct stat st;
    cr_assert_eq(stat(dir, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700, "mode %o", (unsigned)(st.st_mode & 0777));
    db_close(db);
    tmp_dir_path(tmpdir, "new/var", sub, sizeof sub);
    cr_assert((db = db_open(sub)), "%s", error_get());
    cr_assert_eq(stat(sub, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700, "mode %o", (unsigned)(st.st_mode & 0777));
    db_close(db);
    remove_tmp();
}

Test(storage, sha256_nist_vectors) {
    static const struct {
        const char *msg, *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopq"
         "rlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[SHA256_HEX_LEN + 1];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sha256_buffer_hex(v[i].msg, strlen(v[i].msg), hex);
        cr_assert_str_eq(hex, v[i].hex, "vector %zu", i);
    }
    /* one million 'a', fed in uneven chunks */
    char chunk[997];
    memset(chunk, 'a', sizeof chunk);
    Sha256 s;
    sha256_init(&s);
    size_t left = 1000000;
    for (size_t k = 1; left; k = k % 997 + 1) {
        size_t take = k < left ? k : left;
        sha256_update(&s, chunk, take);
        left -= take;
    }
    sha256_final_hex(&s, hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

Test(storage, sha256_incremental_equals_one_shot_and_file) {
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)(i * 7 + 3);
    char one[65], inc[65], file[65];
    for (size_t len = 0; len <= 200; len++) {
        sha256_buffer_hex(buf, len, one);
        Sha256 s;
        sha256_init(&s);
        for (size_t off = 0; off < len; off += 13)
            sha256_update(&s, buf + off, len - off < 13 ? len - off : 13);
        sha256_final_hex(&s, inc);
        cr_assert_str_eq(one, inc, "length %zu", len);
    }
    make_tmp();
    char path[300];
    snprintf(path, sizeof path, "%s/f.bin", tmpdir);
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, sizeof buf, f);
    fclose(f);
    int64_t bytes = 0;
    cr_assert_eq(sha256_file_hex(path, file, &bytes), 0);
    sha256_buffer_hex(buf, sizeof buf, one);
    cr_assert_str_eq(file, one);
    cr_assert_eq(bytes, 1000);
    snprintf(path, sizeof path, "%s/missing", tmpdir);
    cr_assert_eq(sha256_file_hex(path, file, NULL), -1);
    cr_assert(strstr(error_get(), "missing") != NULL);
    remove_tmp();
}

/* ---- open, migrations ---- */

Test(storage, migrations_from_empty_and_reopen) {
    Db *db = open_tmp();
    cr_assert_eq(db_schema_version(db), DB_SCHEMA_VERSION);
    char path[300];
    snprintf(path, sizeof path, "%s/datasets", tmpdir);
    cr_assert(exists(path));
    snprintf(path, sizeof path, "%s/jobs", tmpdir);
    cr_assert(exists(path));
    int64_t id;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.name = "a", .spec_json = "{}"}, &id), DB_OK);
    db_close(db);

    db = db_open(tmpdir);
    cr_assert(db != NULL, "%s", error_get());
    cr_assert_eq(db_schema_version(db), DB_SCHEMA_VERSION);
    DbJob j;
    cr_assert_eq(db_job_get(db, id, &j), DB_OK);
    cr_assert_str_eq(j.name, "a");
    db_job_clear(&j);
    /* WAL mode, foreign keys on */
    DbConn *c = db_acquire(db);
    sqlite3_stmt *st = db_stmt(c, "PRAGMA journal_mode");
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_reset(st);
    st = db_stmt(c, "PRAGMA foreign_keys");
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 1);
    sqlite3_reset(st);
    /* a newer schema is refused */
    cr_assert_eq(db_exec(c, "PRAGMA user_version=99"), DB_OK);
    db_release(db, c);
    db_close(db);
    cr_assert_null(db_open(tmpdir));
    cr_assert(strstr(error_get(), "newer") != NULL, "%s", error_get());
    remove_tmp();
}

/* Version 2 puts what the queue needs of a job in columns; the jobs of a
 * version-1 database take their device from their specs. */
/* A database at version `version`, made by its own migrations, with the
 * rows of `sql` in it, in a new temporary data dir: opened, so migrated to
 * this version. */
static Db *open_old_db(int version, const char *sql) {
    make_tmp();
    char path[300];
    snprintf(path, sizeof path, "%s/traind.db", tmpdir);
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    for (int v = 1; v <= version; v++)
        cr_assert_eq(sqlite3_exec(h, db_migration(v), NULL, NULL, NULL), SQLITE_OK, "%s",
                     sqlite3_errmsg(h));
    char bump[64];
    snprintf(bump, sizeof bump, "PRAGMA user_version=%d", version);
    cr_assert_eq(sqlite3_exec(h, bump, NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
    sqlite3_close(h);
    Db *db = db_open(tmpdir);
    cr_assert(db != NULL, "%s", error_get());
    return db;
}

Test(storage, migration_2_fills_device_request_from_the_spec) {
    Db *db = open_old_db(1,
        "INSERT INTO jobs (spec, state, created_at) VALUES"
        " ('{\"device\": \"cuda\"}', 'queued', 1),"
        " ('{\"device\": \"cpu\"}', 'queued', 2),"
        " ('{\"epochs\": 1}', 'queued', 3),"
        " ('{\"device\": \"cuda:1\"}', 'succeeded', 4)");
    cr_assert_eq(db_schema_version(db), DB_SCHEMA_VERSION);
    DbQueuedJob *q;
    int n;
    cr_assert_eq(db_job_queue(db, &q, &n), DB_OK);
    cr_assert_eq(n, 3);
    const char *want[3] = {"cuda:0", "cpu", "auto"};
    for (int i = 0; i < 3; i++) cr_assert_str_eq(q[i].device_request, want[i]);
    free(q);
    DbJob j;
    cr_assert_eq(db_job_get(db, 4, &j), DB_OK);
    cr_assert_str_eq(j.device_request, "cuda:1");
    db_job_clear(&j);
    db_close(db);
    remove_tmp();
}

/* Version 4 first shipped without metric_blocks: version 9 makes it and
 * fills it from the rows there are, and metrics are written again. And
 * version 3 restarted the dataset ids at the highest left: a deleted
 * dataset's id that a job names is not handed out again. */
static int count_rows(Db *db, const char *sql) {
    DbConn *c = db_acquire(db);
    cr_assert(c);
    sqlite3_stmt *st = db_stmt(c, sql);
    cr_assert(st && sqlite3_step(st) == SQLITE_ROW, "%s", error_get());
    int n = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    db_release(db, c);
    return n;
}

Test(storage, migration_9_repairs_a_version_4_without_metric_blocks) {
    Db *db = open_old_db(8,
        "DROP TABLE metric_blocks;"
        "INSERT INTO jobs (spec, state, created_at, train_dataset) VALUES ('{}', 'succeeded', 1, 7);"
        "INSERT INTO metrics (job_id, name, step, epoch, value) VALUES"
        " (1, 'loss', 1, 0, 2.0), (1, 'loss', 2, 0, 1.0), (1, 'loss', 300, 1, 0.5);"
        "INSERT INTO datasets (id, name, format, state, created_at) VALUES (2, 'a', 'csv', 'ready', 1);"
        "UPDATE sqlite_sequence SET seq = 2 WHERE name = 'datasets'");
    cr_assert_eq(db_schema_version(db), DB_SCHEMA_VERSION);
    cr_assert_eq(count_rows(db, "SELECT count(*) FROM metric_blocks WHERE job_id = 1"), 2,
                 "blocks 0 and 1 of loss");
    cr_assert_eq(count_rows(db, "SELECT last FROM metric_blocks WHERE block = 0") , 1);
    cr_assert_eq(db_metric_put(db, 1, "loss", 3, 0, 0.75), DB_OK, "%s", error_get());
    int64_t id;
    cr_assert_eq(db_dataset_insert(db, "b", "csv", NULL, 0, &id), DB_OK, "%s", error_get());
    cr_assert_eq(id, 8, "a job names dataset 7");
    db_close(db);
    remove_tmp();
}

/* Version 6 records a job's ranks, read from the specs of the jobs before
 * (1 where a spec has none, or none that parses). */
Test(storage, migration_6_reads_the_ranks_of_old_jobs) {
    Db *db = open_old_db(5,
        "INSERT INTO jobs (spec, state, created_at) VALUES"
        " ('{\"ranks\": 4}', 'queued', 1), ('{\"epochs\": 1}', 'queued', 2),"
        " ('not json', 'queued', 3), ('{\"ranks\": \"4\"}', 'queued', 4)");
    DbQueuedJob *q;
    int n;
    cr_assert_eq(db_job_queue(db, &q, &n), DB_OK);
    cr_assert_eq(n, 4);
    const int want[4] = {4, 1, 1, 1};
    for (int i = 0; i < 4; i++) cr_assert_eq(q[i].ranks, want[i], "job %d", i + 1);
    free(q);
    int64_t id;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}", .device_request = "cuda",
                                               .ranks = 2}, &id), DB_OK);
    DbJob j;
    cr_assert_eq(db_job_get(db, id, &j), DB_OK);
    cr_assert_eq(j.ranks, 2);
    cr_assert_str_eq(j.device_request, "cuda");
    db_job_clear(&j);
    db_close(db);
    remove_tmp();
}

/* Version 7 counts a checkpoint's files on disk; the rows before count
 * their model's bytes, as they did, and a user's holdings sum them. */
Test(storage, migration_7_counts_old_checkpoints_by_their_model) {
    Db *db = open_old_db(6,
        "INSERT INTO users (name, token_sha256, created_at) VALUES ('u', 'h', 1);"
        "INSERT INTO jobs (spec, state, created_at, owner) VALUES ('{}', 'failed', 1, 1);"
        "INSERT INTO checkpoints (job_id, epoch, step, partial, path, bytes, sha256,"
        " created_at) VALUES (1, 0, 10, 0, 'jobs/1/checkpoints/epoch-0', 1000, 'x', 1)");
    DbCheckpoint c;
    cr_assert_eq(db_checkpoint_latest(db, 1, &c), DB_OK);
    cr_assert_eq(c.disk_bytes, 1000);
    DbUsage held;
    cr_assert_eq(db_user_holdings(db, 1, &held), DB_OK);
    cr_assert_eq(held.checkpoint_bytes, 1000);
    db_close(db);
    remove_tmp();
}

/* Version 3 makes dataset names each user's own, and records the datasets
 * a job of version 2 named (names were global then, or an id). */
Test(storage, migration_3_keeps_datasets_and_resolves_jobs_datasets) {
    Db *db = open_old_db(2,
        "INSERT INTO users (name, token_sha256, created_at) VALUES ('u', 'h', 1);"
        "INSERT INTO datasets (name, format, state, owner, created_at) VALUES"
        " ('train', 'csv', 'ready', 1, 1), ('test', 'csv', 'ready', 1, 1);"
        "INSERT INTO jobs (spec, state, created_at, owner) VALUES"
        " ('{\"data\": {\"train\": \"train\", \"val\": \"2\"}}', 'queued', 1, 1),"
        " ('{\"data\": {\"train\": \"gone\"}}', 'queued', 2, 1)");
    DbJob j;
    cr_assert_eq(db_job_get(db, 1, &j), DB_OK);
    cr_assert_eq(j.train_dataset, 1);
    cr_assert_eq(j.val_dataset, 2);
    cr_assert_str_eq(j.owner_name, "u");
    db_job_clear(&j);
    cr_assert_eq(db_job_get(db, 2, &j), DB_OK);
    cr_assert_eq(j.train_dataset, 0);
    db_job_clear(&j);
    DbDataset ds;
    DbViewer other = {.user_id = 2};
    cr_assert_eq(db_dataset_resolve(db, NULL, "train", &ds), DB_OK);
    cr_assert_eq(ds.id, 1);
    cr_assert_str_eq(ds.owner_name, "u");
    cr_assert(!ds.shared);
    db_dataset_clear(&ds);
    cr_assert_eq(db_dataset_resolve(db, &other, "train", &ds), DB_NOT_FOUND);
    int64_t id;
    /* the name is still u's: another owner may take it */
    cr_assert_eq(db_dataset_insert(db, "train", "csv", NULL, 1, &id), DB_CONFLICT);
    db_close(db);
    remove_tmp();
}

/* Version 4 stamps metric points with their wall time; the points of
 * version 3 have none (NaN), in every query, and new ones have theirs. */
Test(storage, migration_4_leaves_old_points_without_a_wall_time) {
    Db *db = open_old_db(3,
        "INSERT INTO jobs (spec, state, created_at) VALUES ('{}', 'running', 1);"
        "INSERT INTO metrics (job_id, name, step, epoch, value) VALUES"
        " (1, 'loss', 1, 0, 2.5), (1, 'loss', 2, 0, 2.25);"
        "WITH RECURSIVE s(x) AS (SELECT 10 UNION ALL SELECT x + 1 FROM s"
        " WHERE x < 10009) INSERT INTO metrics (job_id, name, step, epoch, value)"
        " SELECT 1, 'acc', x, x / 1000, x * 0.5 FROM s");
    double t0 = clock_wall_s();
    cr_assert_eq(db_metric_put(db, 1, "loss", 3, 0, 2.0), DB_OK);
    double t1 = clock_wall_s();
    DbMetric *m;
    int n;
    cr_assert_eq(db_metric_query(db, 1, &(DbMetricQuery){.name = "loss", .after = -1}, &m, &n),
                 DB_OK);
    cr_assert_eq(n, 3);
    cr_assert(isnan(m[0].wall_time) && isnan(m[1].wall_time));
    cr_assert(m[2].wall_time >= t0 && m[2].wall_time <= t1, "%f not in [%f, %f]", m[2].wall_time,
              t0, t1);
    free(m);
    DbMetricBucket *b;
    cr_assert_eq(db_metric_downsample(db, 1, "loss", -1, 3, 1, &b, &n), DB_OK);
    cr_assert_eq(n, 1);
    cr_assert(isnan(b[0].wall_time)); /* the bucket's last point is step 2, of version 3 */
    free(b);
    /* the blocks the migration made of the rows there were: 10,000 steps
     * in 2 buckets of 20 blocks, from their summaries */
    cr_assert_eq(db_metric_downsample(db, 1, "acc", -1, 0, 2, &b, &n), DB_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(b[0].first_step, 10);
    cr_assert_eq(b[0].last_step, 20 * DB_METRIC_BLOCK_STEPS - 1);
    cr_assert_eq(b[0].count + b[1].count, 10000);
    cr_assert_float_eq(b[0].min, 5.0, 0);
    cr_assert_float_eq(b[1].max, 10009 * 0.5, 0);
    cr_assert_float_eq(b[1].last, 10009 * 0.5, 0);
    cr_assert_eq(b[1].epoch, 10);
    free(b);
    db_close(db);
    remove_tmp();
}

/* ---- users ---- */

/* A user's holdings count GPUs, not jobs: a job on two GPUs holds two, a
 * job on the CPU none, a queued job none. */
Test(storage, holdings_count_each_gpu_of_a_running_job) {
    Db *db = open_tmp();
    char token[DB_TOKEN_LEN + 1];
    int64_t alice, job;
    cr_assert_eq(db_user_create(db, "alice", false, &alice, token), DB_OK);
    const char *devices[] = {"cuda:0,cuda:1", "cuda:2", "cpu", NULL};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}", .owner = alice}, &job),
                     DB_OK);
        DbJob j;
        if (devices[i]) {
            cr_assert_eq(db_job_claim(db, job, devices[i], &j), DB_OK, "%s", error_get());
            db_job_clear(&j);
        }
    }
    DbUsage held;
    cr_assert_eq(db_user_holdings(db, alice, &held), DB_OK, "%s", error_get());
    cr_assert_eq(held.running_jobs, 3);
    cr_assert_eq(held.queued_jobs, 1);
    cr_assert_eq(held.gpus, 3, "gpus %lld", (long long)held.gpus);
    /* on an executor's slots: what the jobs asked for (2 ranks on "cuda",
     * a list of 2), none for "auto" (it may run on CPUs) */
    const char *asked[] = {"cuda", "cuda:0,cuda:1", "auto"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}", .owner = alice, .ranks = 2,
                                                   .device_request = asked[i]}, &job), DB_OK);
        cr_assert_eq(db_job_claim(db, job, "slurm-0", NULL), DB_OK, "%s", error_get());
    }
    cr_assert_eq(db_user_holdings(db, alice, &held), DB_OK, "%s", error_get());
    cr_assert_eq(held.gpus, 7, "gpus %lld", (long long)held.gpus);
    db_close(db);
    remove_tmp();
}

/* A job is stored only on datasets its owner still sees: one unshared
 * between the submission's check and its insert is refused there. */
Test(storage, a_job_on_a_dataset_unshared_as_it_is_submitted_is_refused) {
    Db *db = open_tmp();
    char token[DB_TOKEN_LEN + 1];
    int64_t alice, bob, carol, ds, job;
    cr_assert_eq(db_user_create(db, "alice", false, &alice, token), DB_OK);
    cr_assert_eq(db_user_create(db, "bob", false, &bob, token), DB_OK);
    cr_assert_eq(db_user_create(db, "carol", true, &carol, token), DB_OK);
    cr_assert_eq(db_dataset_insert(db, "open", "csv", NULL, alice, &ds), DB_OK);
    DbDataset info = {.num_files = 1, .bytes = 10, .samples = 1};
    snprintf(info.files[0].role, sizeof info.files[0].role, "file");
    snprintf(info.files[0].name, sizeof info.files[0].name, "d.csv");
    cr_assert_eq(db_dataset_mark_ready(db, ds, &info), DB_OK, "%s", error_get());
    cr_assert_eq(db_dataset_set_shared(db, ds, true), DB_OK);
    DbJobNew bobs = {.owner = bob, .spec_json = "{}", .val_dataset = ds};
    cr_assert_eq(db_job_insert(db, &bobs, &job), DB_OK, "%s", error_get());
    cr_assert_eq(db_dataset_set_shared(db, ds, false), DB_OK);
    cr_assert_eq(db_job_insert(db, &bobs, &job), DB_INVALID);
    cr_assert_str_eq(error_last()->path, "data");
    /* its owner, an admin, the daemon itself still may */
    DbJobNew others[] = {{.owner = alice, .spec_json = "{}", .train_dataset = ds},
                         {.owner = carol, .owner_admin = true, .spec_json = "{}", .train_dataset = ds},
                         {.spec_json = "{}", .train_dataset = ds}};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(db_job_insert(db, &others[i], &job), DB_OK, "%d: %s", i, error_get());
    db_close(db);
    remove_tmp();
}

/* A user's dataset bytes: a ready dataset's, and what an upload or an
 * import in progress has stored so far, so that two at once count each
 * other; not a failed import's (its files are gone), nor a ready one's
 * progress besides its bytes. */
Test(storage, holdings_count_datasets_in_progress) {
    Db *db = open_tmp();
    char token[DB_TOKEN_LEN + 1];
    int64_t alice, up, im;
    DbUsage held;
    cr_assert_eq(db_user_create(db, "alice", false, &alice, token), DB_OK);
    cr_assert_eq(db_dataset_insert(db, "up", "csv", NULL, alice, &up), DB_OK);
    cr_assert_eq(db_dataset_insert(db, "im", "csv", NULL, alice, &im), DB_OK);
    cr_assert_eq(db_dataset_upload_progress(db, up, 1000), DB_OK, "%s", error_get());
    cr_assert_eq(db_dataset_import_progress(db, im, 500, 900), DB_OK, "%s", error_get());
    cr_assert_eq(db_user_holdings(db, alice, &held), DB_OK, "%s", error_get());
    cr_assert_eq(held.dataset_bytes, 1500);
    cr_assert_eq(db_dataset_import_failed(db, im, "no such host"), DB_OK);
    cr_assert_eq(db_dataset_upload_progress(db, im, 700), DB_NOT_FOUND); /* not an upload */
    cr_assert_eq(db_user_holdings(db, alice, &held), DB_OK);
    cr_assert_eq(held.dataset_bytes, 1000);
    DbDataset info = {.num_files = 1, .bytes = 4000, .samples = 1};
    snprintf(info.files[0].role, sizeof info.files[0].role, "file");
    snprintf(info.files[0].name, sizeof info.files[0].name, "d.csv");
    info.files[0].bytes = 4000;
    cr_assert_eq(db_dataset_mark_ready(db, up, &info), DB_OK, "%s", error_get());
    cr_assert_eq(db_dataset_upload_progress(db, up, 9999), DB_NOT_FOUND); /* no longer one */
    cr_assert_eq(db_user_holdings(db, alice, &held), DB_OK);
    cr_assert_eq(held.dataset_bytes, 4000);
    db_close(db);
    remove_tmp();
}

Test(storage, users_tokens_and_admin_bootstrap) {
    Db *db = open_tmp();
    char token[DB_TOKEN_LEN + 1];
    int64_t id;
    cr_assert_eq(db_user_create(db, "alice", false, &id, token), DB_OK);
    cr_assert_eq(strlen(token), DB_TOKEN_LEN);
    DbUser u;
    cr_assert_eq(db_user_by_token(db, token, &u, NULL), DB_OK);
    cr_assert_eq(u.id, id);
    cr_assert_str_eq(u.name, "alice");
    cr_assert(!u.admin);
    char wrong[DB_TOKEN_LEN + 1];
    memcpy(wrong, token, sizeof wrong);
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    cr_assert_eq(db_user_by_token(db, wrong, &u, NULL), DB_NOT_FOUND);
    cr_assert_eq(db_user_by_token(db, "short", &u, NULL), DB_NOT_FOUND);
    cr_assert_eq(db_user_create(db, "alice", false, NULL, token), DB_CONFLICT);
    cr_assert_eq(db_user_create(db, "a/b", false, NULL, token), DB_INVALID);
    /* the token itself is not stored, only its hash */
    DbConn *c = db_acquire(db);
    sqlite3_stmt *st = db_stmt(c, "SELECT count(*) FROM users WHERE token_sha256 = ?1");
    db_bind_text(st, 1, token);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 0);
    db_release(db, c);

    bool created;
    cr_assert_eq(db_user_bootstrap_admin(db, &created), DB_OK);
    cr_assert(created);
    char path[300];
    snprintf(path, sizeof path, "%s/admin.token", tmpdir);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    char line[128] = "";
    cr_assert(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    cr_assert_eq(db_user_by_token(db, line, &u, NULL), DB_OK);
    cr_assert(u.admin);
    cr_assert_str_eq(u.name, "admin");
    cr_assert_eq(db_user_bootstrap_admin(db, &created), DB_OK);
    cr_assert(!created);
    db_close(db);
    remove_tmp();
}

/* ---- datasets ---- */

Test(storage, dataset_name_validation) {
    const char *good[] = {"mnist", "mnist-train", "a.b_c-D9", "x", "1a", "v1.0"};
    const char *bad[] = {"", "a/b", "..", ".", "a..b", "../etc", "a b", "123", "é"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert_eq(db_dataset_name_check(good[i]), DB_OK, "'%s': %s", good[i], error_get());
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(db_dataset_name_check(bad[i]), DB_INVALID, "'%s'", bad[i]);
    /* 1 to 128 characters, as api-docs says */
    char longest[130];
    memset(longest, 'a', 128);
    longest[128] = '\0';
    cr_assert_eq(db_dataset_name_check(longest), DB_OK, "%s", error_get());
    longest[128] = 'a';
    longest[129] = '\0';
    cr_assert_eq(db_dataset_name_check(longest), DB_INVALID);
    cr_assert(strstr(error_get(), "must be 1 to 128 characters"), "%s", error_get());
    db_dataset_name_check("a/b");
    cr_assert(strstr(error_get(), "a/b") != NULL);
}

/* A relative data dir (serve's default, ./var) is held absolute: the
 * paths built on it reach ranks that do not share the daemon's working
 * directory, such as a spec.json read relative to its attempt's. */
Test(storage, data_dir_held_absolute) {
    char base[] = "/tmp/traind-relative-XXXXXX", cwd[4096], want[4200];
    cr_assert_not_null(mkdtemp(base));
    cr_assert_eq(chdir(base), 0);
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    Db *db = db_open("./var/");
    cr_assert_not_null(db, "%s", error_get());
    snprintf(want, sizeof want, "%s/var", cwd);
    cr_assert_str_eq(db_data_dir(db), want);
    db_close(db);
    /* an absolute one stays as given, a link in it not followed */
    char link[300];
    snprintf(link, sizeof link, "%s/link", base);
    cr_assert_eq(symlink(want, link), 0);
    db = db_open(link);
    cr_assert_not_null(db, "%s", error_get());
    cr_assert_str_eq(db_data_dir(db), link);
    db_close(db);
    tmp_dir_remove(base);
}

/* A file of `text` at dir/name. */
static void put_file(const char *dir, const char *name, const char *text) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* A tree of files, folders and links (what a job's ranks leave in out/)
 * goes whole; what its links point to stays, and so does a folder the
 * tree's parent holds beside it. A file, a link, nothing: removed or fine. */
Test(storage, remove_tree_removes_links_not_what_they_point_to) {
    char base[] = "/tmp/traind-tree-XXXXXX", tree[300], outside[300], path[600];
    cr_assert_not_null(mkdtemp(base));
    snprintf(tree, sizeof tree, "%s/tree", base);
    snprintf(outside, sizeof outside, "%s/outside", base);
    cr_assert_eq(mkdir(outside, 0755), 0);
    put_file(outside, "keep", "kept");
    snprintf(path, sizeof path, "%s/a/b/c", tree);
    cr_assert_eq(db_mkdir_p(path), 0, "%s", error_get());
    put_file(path, "deep", "x");
    snprintf(path, sizeof path, "%s/a", tree);
    put_file(path, "f", "x");
    put_file(tree, "top", "x");
    char link[600];
    snprintf(link, sizeof link, "%s/a/to-dir", tree);
    cr_assert_eq(symlink(outside, link), 0);
    snprintf(link, sizeof link, "%s/a/b/to-file", tree);
    snprintf(path, sizeof path, "%s/keep", outside);
    cr_assert_eq(symlink(path, link), 0);
    snprintf(link, sizeof link, "%s/dangling", tree);
    cr_assert_eq(symlink("/nonexistent/x", link), 0);
    cr_assert_eq(db_remove_tree(tree), 0, "%s", error_get());
    cr_assert(!exists(tree), "the tree is gone");
    snprintf(path, sizeof path, "%s/keep", outside);
    cr_assert(exists(path), "what a link pointed to stays");
    /* a link given as the tree itself: the link goes, its target stays */
    snprintf(link, sizeof link, "%s/link", base);
    cr_assert_eq(symlink(outside, link), 0);
    cr_assert_eq(db_remove_tree(link), 0, "%s", error_get());
    struct stat st;
    cr_assert_eq(lstat(link, &st), -1, "the link is gone");
    cr_assert(exists(path), "its target's files stay");
    cr_assert_eq(db_remove_tree(link), 0, "nothing there: fine");
    cr_assert_eq(db_remove_tree(path), 0, "a file");
    cr_assert(!exists(path));
    tmp_dir_remove(base);
}

typedef struct {
    int inotify;
    char tree[300], outside[300];
} Swap;

/* At the first file removed from tree/a: a renamed to b and a link to
 * `outside` put in its place (what a rank racing the removal does). */
static void *swap_in_a_link(void *arg) {
    Swap *w = arg;
    char buf[4096], a[600], b[600];
    if (read(w->inotify, buf, sizeof buf) <= 0) return NULL;
    snprintf(a, sizeof a, "%s/a", w->tree);
    snprintf(b, sizeof b, "%s/b", w->tree);
    if (rename(a, b) == 0 && symlink(w->outside, a) != 0) perror("symlink");
    return NULL;
}

/* The same, with a link swapped in for a folder while its files are being
 * removed: the files of the folder it points to stay (a walk by path
 * would remove those of the same names). */
Test(storage, remove_tree_is_not_led_out_by_a_link_swapped_in) {
    char base[] = "/tmp/traind-tree-XXXXXX", a[600], path[700];
    cr_assert_not_null(mkdtemp(base));
    Swap w;
    snprintf(w.tree, sizeof w.tree, "%s/tree", base);
    snprintf(w.outside, sizeof w.outside, "%s/outside", base);
    snprintf(a, sizeof a, "%s/a", w.tree);
    cr_assert_eq(db_mkdir_p(a), 0, "%s", error_get());
    cr_assert_eq(mkdir(w.outside, 0755), 0);
    enum { FILES = 3000 };
    for (int i = 0; i < FILES; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%04d", i);
        put_file(a, name, "x");
        put_file(w.outside, name, "kept");
    }
    w.inotify = inotify_init1(IN_CLOEXEC);
    cr_assert_geq(w.inotify, 0);
    cr_assert_geq(inotify_add_watch(w.inotify, a, IN_DELETE), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, swap_in_a_link, &w), 0);
    db_remove_tree(w.tree); /* b, made mid-walk, may stay behind: an error then */
    pthread_join(t, NULL);
    close(w.inotify);
    int kept = 0;
    for (int i = 0; i < FILES; i++) {
        snprintf(path, sizeof path, "%s/f%04d", w.outside, i);
        kept += exists(path);
    }
    cr_assert_eq(kept, FILES, "%d of the %d files the link points to removed", FILES - kept, FILES);
    tmp_dir_remove(base);
}

/* db_dataset_trash_each's fn: the path into ctx. */
static void note_path(const char *path, void *ctx) { snprintf(ctx, 4400, "%s", path); }

Test(storage, dataset_crud) {
    Db *db = open_tmp();
    int64_t id;
    cr_assert_eq(db_dataset_insert(db, "toy", "csv", "{\"label_column\": \"y\"}", 0, &id), DB_OK);
    cr_assert_eq(db_dataset_insert(db, "toy", "csv", NULL, 0, NULL), DB_CONFLICT);
    cr_assert_eq(db_dataset_insert(db, "bad/name", "csv", NULL, 0, NULL), DB_INVALID);
    cr_assert_eq(db_dataset_insert(db, "other", "parquet", NULL, 0, NULL), DB_INVALID);
    cr_assert_eq(db_dataset_insert(db, "other", "csv", "[1]", 0, NULL), DB_INVALID);
    char dir[300], file[400];
    cr_assert_eq(db_dataset_dir(db, id, dir, sizeof dir), 0);
    cr_assert(exists(dir));
    /* uploading: not listed by default */
    DbDataset *list;
    int n;
    cr_assert_eq(db_dataset_list(db, NULL, 0, false, &list, &n), DB_OK);
    cr_assert_eq(n, 0);
    db_dataset_list_free(list, n);
    snprintf(file, sizeof file, "%s/data.csv", dir);
    FILE *f = fopen(file, "w");
    fputs("a,y\n1,0\n2,1\n", f);
    fclose(f);

    DbDataset info = {0};
    info.num_files = 1;
    snprintf(info.files[0].role, sizeof info.files[0].role, "file");
    snprintf(info.files[0].name, sizeof info.files[0].name, "data.csv");
    cr_assert_eq(sha256_file_hex(file, info.files[0].sha256, &info.files[0].bytes), 0);
    info.bytes = info.files[0].bytes;
    info.samples = 2;
    info.shape = (DbSampleShape){.input_dtype = "float32", .input_ndim = 1, .input_shape = {1},
                                 .target_dtype = "int64", .num_classes = 2};
    cr_assert_eq(db_dataset_mark_ready(db, id, &info), DB_OK);
    cr_assert_eq(db_dataset_mark_ready(db, id, &info), DB_CONFLICT);

    DbDataset ds;
    cr_assert_eq(db_dataset_resolve(db, NULL, "toy", &ds), DB_OK);
    cr_assert_eq(ds.id, id);
    cr_assert_eq(ds.state, DB_DATASET_READY);
    cr_assert_str_eq(ds.format, "csv");
    cr_assert_eq(ds.samples, 2);
    cr_assert_eq(ds.num_files, 1);
    cr_assert_str_eq(ds.files[0].name, "data.csv");
    cr_assert_str_eq(ds.files[0].sha256, info.files[0].sha256);
    cr_assert_eq(ds.shape.input_ndim, 1);
    cr_assert_eq(ds.shape.input_shape[0], 1);
    cr_assert_str_eq(ds.shape.target_dtype, "int64");
    cr_assert_eq(ds.shape.num_classes, 2);
    cr_assert_eq(strlen(ds.sha256), 64);
    cr_assert(strstr(ds.options_json, "label_column") != NULL);
    char path[400];
    cr_assert_eq(db_dataset_file_path(db, &ds, "file", path, sizeof path), 0);
    cr_assert_str_eq(path, file);
    cr_assert_eq(db_dataset_file_path(db, &ds, "images", path, sizeof path), DB_NOT_FOUND);
    db_dataset_clear(&ds);
    char idtext[32];
    snprintf(idtext, sizeof idtext, "%lld", (long long)id);
    cr_assert_eq(db_dataset_resolve(db, NULL, idtext, &ds), DB_OK);
    cr_assert_str_eq(ds.name, "toy");
    db_dataset_clear(&ds);
    cr_assert_eq(db_dataset_resolve(db, NULL, "toy", &ds), DB_OK);
    db_dataset_clear(&ds);
    cr_assert_eq(db_dataset_resolve(db, NULL, "nope", &ds), DB_NOT_FOUND);
    cr_assert_eq(db_dataset_resolve(db, NULL, "999", &ds), DB_NOT_FOUND);

    cr_assert_eq(db_dataset_list(db, NULL, 0, false, &list, &n), DB_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(list[0].name, "toy");
    db_dataset_list_free(list, n);

    /* a queued job naming it: the delete refused (in the statement that
     * takes it out of ready), the files kept; once the job has ended, the
     * delete goes, and a job naming it is refused */
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}", .train_dataset = id}, &job),
                 DB_OK, "%s", error_get());
    cr_assert_eq(db_dataset_claim_delete(db, id), DB_CONFLICT);
    char used[96];
    snprintf(used, sizeof used, "dataset %lld is used by a queued or running job", (long long)id);
    cr_assert_str_eq(error_get(), used);
    cr_assert_eq(db_dataset_delete(db, id, NULL, 0), DB_CONFLICT);
    cr_assert(exists(dir));
    cr_assert_eq(db_dataset_get(db, id, &ds), DB_OK);
    cr_assert_eq(ds.state, DB_DATASET_READY);
    db_dataset_clear(&ds);
    cr_assert_eq(db_job_cancel_queued(db, job, NULL), DB_OK, "%s", error_get());
    /* a DELETE's claim: out of sight; a second DELETE's claim finds none */
    cr_assert_eq(db_dataset_claim_delete(db, id), DB_OK, "%s", error_get());
    cr_assert_eq(db_dataset_resolve(db, NULL, "toy", &ds), DB_OK);
    cr_assert_eq(ds.state, DB_DATASET_UPLOADING);
    db_dataset_clear(&ds);
    cr_assert_eq(db_dataset_claim_delete(db, id), DB_NOT_FOUND);
    /* delete: the files moved aside for the caller, then the row; again:
     * not found */
    char trash[4400], want[4400];
    cr_assert_eq(db_dataset_delete(db, id, trash, sizeof trash), DB_OK, "%s", error_get());
    snprintf(want, sizeof want, "%s/datasets/.trash-%lld", db_data_dir(db), (long long)id);
    cr_assert_str_eq(trash, want);
    cr_assert(exists(trash) && !exists(dir));
    /* what a crash left aside, the next start finds (and removes) */
    char found[4400] = "";
    cr_assert_eq(db_dataset_trash_each(db, note_path, found), DB_OK);
    cr_assert_str_eq(found, want);
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}", .val_dataset = id}, &job),
                 DB_INVALID);
    cr_assert_str_eq(error_get(), "data: a dataset of the job was deleted, or no longer shared, as "
                                  "it was submitted");
    cr_assert(!exists(dir));
    cr_assert_eq(db_dataset_get(db, id, &ds), DB_NOT_FOUND);
    cr_assert_eq(db_dataset_delete(db, id, NULL, 0), DB_NOT_FOUND);
    /* the name is free again; ids are not reused */
    int64_t id2;
    cr_assert_eq(db_dataset_insert(db, "toy", "csv", NULL, 0, &id2), DB_OK);
    cr_assert_gt(id2, id);
    /* a stale upload is removed at start */
    int stale;
    cr_assert_eq(db_dataset_delete_stale(db, &stale), DB_OK);
    cr_assert_eq(stale, 1);
    cr_assert_eq(db_dataset_get(db, id2, &ds), DB_NOT_FOUND);
    db_close(db);
    remove_tmp();
}

/* "user/name" of a user name longer than any: no one's, not the user
 * whose name it starts with */
Test(storage, dataset_ref_of_a_too_long_user_name) {
    Db *db = open_tmp();
    char name[DB_USER_NAME_MAX + 2], token[128], ref[160];
    memset(name, 'a', DB_USER_NAME_MAX);
    name[DB_USER_NAME_MAX] = '\0';
    int64_t owner, id;
    cr_assert_eq(db_user_create(db, name, false, &owner, token), DB_OK, "%s", error_get());
    cr_assert_eq(db_dataset_insert(db, "train", "csv", NULL, owner, &id), DB_OK);
    cr_assert_eq(db_dataset_set_shared(db, id, true), DB_OK);
    DbDataset ds;
    snprintf(ref, sizeof ref, "%s/train", name);
    cr_assert_eq(db_dataset_resolve(db, NULL, ref, &ds), DB_OK);
    db_dataset_clear(&ds);
    snprintf(ref, sizeof ref, "%sa/train", name);
    cr_assert_eq(db_dataset_resolve(db, NULL, ref, &ds), DB_NOT_FOUND);
    db_close(db);
    remove_tmp();
}

/* ---- jobs ---- */

/* The job's last log line ("" for none), in a buffer the next call reuses. */
static const char *last_log_line(Db *db, int64_t id) {
    static char line[256];
    DbLogLine *lines = NULL;
    int n = 0;
    cr_assert_eq(db_log_tail(db, id, 1, &lines, &n), DB_OK, "%s", error_get());
    snprintf(line, sizeof line, "%s", n ? lines[0].line : "");
    db_log_list_free(lines, n);
    return line;
}

Test(storage, job_crud_and_state_machine) {
    Db *db = open_tmp();
    int64_t id;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.name = "j", .spec_json = "{\"epochs\": 1}"}, &id),
                 DB_OK);
    DbJob j;
    cr_assert_eq(db_job_get(db, id, &j), DB_OK);
    cr_assert_eq(j.state, DB_JOB_QUEUED);
    cr_assert_str_eq(j.spec_json, "{\"epochs\": 1}");
    cr_assert_eq(j.attempt, 0);
    cr_assert_gt(j.created_at, 0);
    cr_assert_null(j.error);
    db_job_clear(&j);
    cr_assert_eq(db_job_get(db, id + 100, &j), DB_NOT_FOUND);

    cr_assert_eq(db_job_finish(db, id, DB_JOB_SUCCEEDED, NULL), DB_CONFLICT); /* not running */
    cr_assert_eq(db_job_claim(db, id, "cpu", &j), DB_OK);
    cr_assert_eq(j.state, DB_JOB_RUNNING);
    cr_assert_eq(j.attempt, 1);
    cr_assert_str_eq(j.device, "cpu");
    cr_assert_gt(j.started_at, 0);
    db_job_clear(&j);
    cr_assert_eq(db_job_claim(db, id, "cpu", NULL), DB_CONFLICT);
    cr_assert(strstr(error_get(), "running") != NULL, "%s", error_get());
    cr_assert_eq(db_job_cancel_queued(db, id, "never stored"), DB_CONFLICT);
    cr_assert_str_eq(last_log_line(db, id), "");

    DbJobProgress p = {.epoch = 2, .step = 30, .total_steps = 100, .samples_per_s = 1234.5,
                       .eta_s = 7};
    cr_assert_eq(db_job_set_progress(db, id, &p), DB_OK);
    /* daemon restart: running -> queued, attempt kept; the next claim counts */
    int n;
    cr_assert_eq(db_job_recover_running(db, &n, NULL), DB_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(db_job_claim(db, id, "cpu", &j), DB_OK);
    cr_assert_eq(j.attempt, 2);
    cr_assert_eq(j.progress.step, 30);
    cr_assert_float_eq(j.progress.samples_per_s, 0.0, 1e-12); /* reset by the requeue */
    db_job_clear(&j);
    cr_assert_eq(db_job_finish(db, id, DB_JOB_FAILED, "step 3: loss is nan"), DB_OK);
    cr_assert_eq(db_job_get(db, id, &j), DB_OK);
    cr_assert_eq(j.state, DB_JOB_FAILED);
    cr_assert_str_eq(j.error, "step 3: loss is nan");
    cr_assert_gt(j.finished_at, 0);
    db_job_clear(&j);
    cr_assert_eq(db_job_finish(db, id, DB_JOB_CANCELLED, NULL), DB_CONFLICT);
    cr_assert_eq(db_job_finish(db, id, DB_JOB_RUNNING, NULL), DB_INVALID);

    int64_t q;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &q), DB_OK);
    cr_assert_eq(db_job_cancel_queued(db, q, "cancelled in the queue"), DB_OK);
    cr_assert_str_eq(last_log_line(db, q), "cancelled in the queue", "stored with the change");
    cr_assert_eq(db_job_claim(db, q, "cpu", NULL), DB_CONFLICT);
    cr_assert_eq(db_job_requeue(db, q, NULL, NULL), DB_CONFLICT);

    int64_t counts[DB_JOB_NUM_STATES];
    cr_assert_eq(db_job_count_by_state(db, counts), DB_OK);
    cr_assert_eq(counts[DB_JOB_FAILED], 1);
    cr_assert_eq(counts[DB_JOB_CANCELLED], 1);
    cr_assert_eq(counts[DB_JOB_QUEUED], 0);

    DbJobState s;
    cr_assert_eq(db_job_state_parse("succeeded", &s), DB_OK);
    cr_assert_eq(s, DB_JOB_SUCCEEDED);
    cr_assert_eq(db_job_state_parse("done", &s), DB_INVALID);
    cr_assert_str_eq(db_job_state_name(DB_JOB_CANCELLED), "cancelled");
    db_close(db);
    remove_tmp();
}

/* A running job as a previous daemon left it: claimed (attempt 1), its
 * ranks' end `reported` for attempt `end_attempt` (none for 0), a cancel
 * asked or not. */
static int64_t left_running(Db *db, DbJobState reported, int end_attempt, bool cancel) {
    int64_t id;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &id), DB_OK);
    cr_assert_eq(db_job_claim(db, id, "cpu", NULL), DB_OK);
    if (end_attempt) {
        cr_assert_eq(db_job_remote_token_set(db, id, end_attempt, "x"), DB_OK);
        cr_assert_eq(db_job_remote_end_set(db, id, end_attempt, reported, "the ranks' words"),
                     DB_OK);
    }
    if (cancel) cr_assert_eq(db_job_cancel_requested(db, id), DB_OK);
    return id;
}

static DbJobState state_of(Db *db, int64_t id, char *error, size_t size) {
    DbJob j;
    cr_assert_eq(db_job_get(db, id, &j), DB_OK);
    DbJobState st = j.state;
    snprintf(error, size, "%s", j.error ? j.error : "");
    db_job_clear(&j);
    return st;
}

/* A daemon's start: the jobs left running whose end was known end so (a
 * kill -9 after the ranks reported, or after a cancel was asked, must not
 * run them again); a preemption's or a stop's "cancelled" end, or an end
 * of an attempt before, is requeued. */
Test(storage, jobs_left_running_end_as_known) {
    Db *db = open_tmp();
    cr_assert_not_null(db, "%s", error_get());
    int64_t done = left_running(db, DB_JOB_SUCCEEDED, 1, false);
    int64_t failed = left_running(db, DB_JOB_FAILED, 1, false);
    int64_t stopped = left_running(db, DB_JOB_CANCELLED, 1, false);
    int64_t cancelled = left_running(db, DB_JOB_CANCELLED, 1, true);
    int64_t asked = left_running(db, DB_JOB_SUCCEEDED, 0, true);
    int64_t plain = left_running(db, DB_JOB_SUCCEEDED, 0, false);
    int64_t old = left_running(db, DB_JOB_FAILED, 1, false);
    DbJobState took;
    cr_assert_eq(db_job_requeue(db, old, "not cancelled: not stored", &took), DB_OK);
    cr_assert_eq(took, DB_JOB_QUEUED);
    cr_assert_str_eq(last_log_line(db, old), "");
    cr_assert_eq(db_job_claim(db, old, "cpu", NULL), DB_OK); /* attempt 2: 1's end is not its */
    int requeued, ended;
    cr_assert_eq(db_job_recover_running(db, &requeued, &ended), DB_OK, "%s", error_get());
    cr_assert_eq(requeued, 3);
    cr_assert_eq(ended, 4);
    char error[256];
    cr_assert_eq(state_of(db, done, error, sizeof error), DB_JOB_SUCCEEDED);
    cr_assert_str_eq(error, "");
    cr_assert_eq(state_of(db, failed, error, sizeof error), DB_JOB_FAILED);
    cr_assert_str_eq(error, "the ranks' words");
    cr_assert_eq(state_of(db, stopped, error, sizeof error), DB_JOB_QUEUED);
    cr_assert_eq(state_of(db, cancelled, error, sizeof error), DB_JOB_CANCELLED);
    cr_assert_str_eq(error, "the ranks' words");
    cr_assert_eq(state_of(db, asked, error, sizeof error), DB_JOB_CANCELLED);
    cr_assert_str_eq(error, "cancelled; the daemon restarted before its run had stopped");
    cr_assert_eq(state_of(db, plain, error, sizeof error), DB_JOB_QUEUED);
    cr_assert_eq(state_of(db, old, error, sizeof error), DB_JOB_QUEUED);
    /* a run stopped (a daemon stopping, a preemption) after its cancel was
     * asked: cancelled, not requeued */
    int64_t stopping = left_running(db, DB_JOB_SUCCEEDED, 0, true);
    cr_assert_eq(db_job_requeue(db, stopping, "cancelled as it stopped", &took), DB_OK);
    cr_assert_eq(took, DB_JOB_CANCELLED, "the state it took, as it took it");
    cr_assert_str_eq(last_log_line(db, stopping), "cancelled as it stopped");
    cr_assert_eq(state_of(db, stopping, error, sizeof error), DB_JOB_CANCELLED);
    cr_assert_str_eq(error, "cancelled as its run was stopped");
    int64_t preempted = left_running(db, DB_JOB_SUCCEEDED, 0, true);
    cr_assert_eq(db_job_preempted(db, preempted, "cancelled as preempted", &took), DB_OK);
    cr_assert_eq(took, DB_JOB_CANCELLED);
    cr_assert_str_eq(last_log_line(db, preempted), "cancelled as preempted");
    cr_assert_eq(state_of(db, preempted, error, sizeof error), DB_JOB_CANCELLED);
    cr_assert_eq(db_job_cancel_requested(db, done), DB_CONFLICT, "an ended job");
    db_close(db);
}

Test(storage, job_list_filter_and_pagination) {
    Db *db = open_tmp();
    int64_t ids[25];
    for (int i = 0; i < 25; i++) {
        char name[16];
        snprintf(name, sizeof name, "j%d", i);
        cr_assert_eq(db_job_insert(db, &(DbJobNew){.name = name, .spec_json = "{}"}, &ids[i]),
                     DB_OK);
    }
    for (int i = 0; i < 25; i += 3) cr_assert_eq(db_job_cancel_queued(db, ids[i], NULL), DB_OK);
    /* every job, pages of 10 by cursor, newest first */
    DbJobQuery q = {.state = -1, .limit = 10};
    int seen = 0;
    int64_t last = INT64_MAX;
    for (int page = 0;; page++) {
        DbJob *list;
        int n;
        int64_t next;
        cr_assert_eq(db_job_list(db, &q, &list, &n, &next), DB_OK);
        for (int i = 0; i < n; i++) {
            cr_assert_lt(list[i].id, last);
            last = list[i].id;
            cr_assert_null(list[i].spec_json);
        }
        seen += n;
        db_job_list_free(list, n);
        if (!next) break;
        cr_assert_eq(n, 10);
        q.before_id = next;
        cr_assert_lt(page, 5);
    }
    cr_assert_eq(seen, 25);
    /* by state, with offset */
    q = (DbJobQuery){.state = DB_JOB_CANCELLED, .limit = 100, .with_spec = true};
    DbJob *list;
    int n;
    int64_t next;
    cr_assert_eq(db_job_list(db, &q, &list, &n, &next), DB_OK);
    cr_assert_eq(n, 9);
    cr_assert_eq(next, 0);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(list[i].state, DB_JOB_CANCELLED);
        cr_assert_str_eq(list[i].spec_json, "{}");
    }
    db_job_list_free(list, n);
    q.offset = 5;
    cr_assert_eq(db_job_list(db, &q, &list, &n, &next), DB_OK);
    cr_assert_eq(n, 4);
    db_job_list_free(list, n);
    q.limit = 5000;
    cr_assert_eq(db_job_list(db, &q, &list, &n, &next), DB_INVALID);
    db_close(db);
    remove_tmp();
}

Test(storage, queued_jobs_in_submission_order) {
    Db *db = open_tmp();
    /* priorities in submission order; the queue is priority desc, then FIFO */
    int prio[6] = {0, 5, 0, 5, 1, 0};
    int64_t ids[6];
    for (int i = 0; i < 6; i++)
        cr_assert_eq(
            db_job_insert(db, &(DbJobNew){.spec_json = "{}", .priority = prio[i]}, &ids[i]), DB_OK);
    DbQueuedJob *queue;
    int n;
    cr_assert_eq(db_job_queue(db, &queue, &n), DB_OK);
    int64_t want[6] = {ids[1], ids[3], ids[4], ids[0], ids[2], ids[5]};
    cr_assert_eq(n, 6);
    for (int i = 0; i < 6; i++) cr_assert_eq(queue[i].id, want[i], "position %d", i);
    free(queue);
    /* a claimed job leaves the queue */
    cr_assert_eq(db_job_claim(db, ids[1], "cpu", NULL), DB_OK);
    cr_assert_eq(db_job_queue(db, &queue, &n), DB_OK);
    cr_assert_eq(n, 5);
    for (int i = 0; i < 5; i++) cr_assert_eq(queue[i].id, want[i + 1], "position %d", i);
    free(queue);
    db_close(db);
    remove_tmp();
}

/* ---- checkpoints ---- */

static void fake_checkpoint(Db *db, int64_t job, int epoch, int64_t step, bool partial,
                            char *rel) {
    db_checkpoint_rel_dir(job, epoch, step, partial, rel, 256);
    char path[600];
    snprintf(path, sizeof path, "%s/jobs/%lld", db_data_dir(db), (long long)job);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/jobs/%lld/checkpoints", db_data_dir(db), (long long)job);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s", db_data_dir(db), rel);
    cr_assert_eq(mkdir(path, 0755), 0);
    char file[700];
    snprintf(file, sizeof file, "%s/model.safetensors", path);
    FILE *f = fopen(file, "w");
    fprintf(f, "model of epoch %d", epoch);
    fclose(f);
    snprintf(file, sizeof file, "%s/trainer.safetensors", path);
    f = fopen(file, "w");
    fputs("trainer", f);
    fclose(f);
}

Test(storage, checkpoints_crud_and_gc) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    char rel[5][256];
    DbCheckpoint c;
    for (int e = 0; e < 5; e++) {
        fake_checkpoint(db, job, e, 10 * (e + 1), false, rel[e]);
        cr_assert_eq(db_checkpoint_insert(db, job, e, 10 * (e + 1), false, rel[e], &c), DB_OK,
                     "%s", error_get());
    }
    char want[65], text[32];
    snprintf(text, sizeof text, "model of epoch %d", 4);
    sha256_buffer_hex(text, strlen(text), want);
    cr_assert_str_eq(c.sha256, want);
    cr_assert_eq(c.bytes, (int64_t)strlen(text));
    cr_assert_eq(c.disk_bytes, (int64_t)strlen(text) + 7, "the model and the trainer's 7 bytes");
    cr_assert_str_eq(c.path, rel[4]);
    cr_assert(strstr(c.path, "epoch-4") != NULL);
    DbCheckpoint got;
    cr_assert_eq(db_checkpoint_get(db, c.id, &got), DB_OK);
    cr_assert_eq(got.step, 50);
    cr_assert_eq(got.disk_bytes, c.disk_bytes);
    cr_assert_eq(db_checkpoint_get_epoch(db, job, 2, &got), DB_OK);
    cr_assert_eq(got.step, 30);
    cr_assert_eq(db_checkpoint_latest(db, job, &got), DB_OK);
    cr_assert_eq(got.epoch, 4);
    char path[600];
    cr_assert_eq(db_checkpoint_file_path(db, &got, "model.safetensors", path, sizeof path), 0);
    cr_assert(exists(path));
    cr_assert_eq(db_checkpoint_get(db, 9999, &got), DB_NOT_FOUND);
    /* no files: refused */
    cr_assert_neq(db_checkpoint_insert(db, job, 9, 99, false, "jobs/1/checkpoints/none", NULL),
                  DB_OK);

    /* keep_last 2: epochs 0..2 go, files first */
    int removed;
    cr_assert_eq(db_checkpoint_gc(db, job, 2, &removed), DB_OK);
    cr_assert_eq(removed, 3);
    for (int e = 0; e < 5; e++) {
        snprintf(path, sizeof path, "%s/%s", db_data_dir(db), rel[e]);
        cr_assert_eq(exists(path), e >= 3, "epoch %d", e);
    }
    DbCheckpoint *list;
    int n;
    cr_assert_eq(db_checkpoint_list(db, job, &list, &n), DB_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(list[0].epoch, 3);
    cr_assert_eq(list[1].epoch, 4);
    free(list);
    /* idempotent */
    cr_assert_eq(db_checkpoint_gc(db, job, 2, &removed), DB_OK);
    cr_assert_eq(removed, 0);
    /* a crash between files and row: the row's files are gone; gc finishes */
    snprintf(path, sizeof path, "%s/%s", db_data_dir(db), rel[3]);
    db_remove_tree(path);
    cr_assert_eq(db_checkpoint_gc(db, job, 1, &removed), DB_OK);
    cr_assert_eq(removed, 1);
    cr_assert_eq(db_checkpoint_list(db, job, &list, &n), DB_OK);
    cr_assert_eq(n, 1);
    free(list);

    /* a partial checkpoint (a stop mid-epoch) is newest until a newer one */
    char prel[256], erel[256];
    fake_checkpoint(db, job, 5, 55, true, prel);
    cr_assert_eq(db_checkpoint_insert(db, job, 5, 55, true, prel, &c), DB_OK);
    cr_assert(strstr(prel, "step-55") != NULL);
    cr_assert_eq(db_checkpoint_gc(db, job, 1, &removed), DB_OK);
    cr_assert_eq(removed, 0);
    cr_assert_eq(db_checkpoint_latest(db, job, &got), DB_OK);
    cr_assert(got.partial);
    cr_assert_eq(db_checkpoint_get_epoch(db, job, 5, &got), DB_NOT_FOUND);
    fake_checkpoint(db, job, 5, 60, false, erel);
    cr_assert_eq(db_checkpoint_insert(db, job, 5, 60, false, erel, NULL), DB_OK);
    cr_assert_eq(db_checkpoint_gc(db, job, 3, &removed), DB_OK);
    cr_assert_eq(removed, 1); /* the partial one */
    snprintf(path, sizeof path, "%s/%s", db_data_dir(db), prel);
    cr_assert(!exists(path));
    /* epoch 5's directory saved again at another step: one row names it,
     * and a gc keeping one removes nothing of it */
    cr_assert_eq(db_checkpoint_insert(db, job, 5, 70, false, erel, NULL), DB_OK);
    cr_assert_eq(db_checkpoint_list(db, job, &list, &n), DB_OK);
    int naming = 0;
    for (int i = 0; i < n; i++) naming += !strcmp(list[i].path, erel);
    cr_assert_eq(naming, 1, "%d rows name %s", naming, erel);
    free(list);
    cr_assert_eq(db_checkpoint_gc(db, job, 1, &removed), DB_OK);
    snprintf(path, sizeof path, "%s/%s/model.safetensors", db_data_dir(db), erel);
    cr_assert(exists(path), "the newest checkpoint's files removed");
    cr_assert_eq(db_checkpoint_latest(db, job, &got), DB_OK);
    cr_assert_eq(got.step, 70);
    db_close(db);
    remove_tmp();
}

/* The growth of the checkpoint written at rel (described as the store
 * describes it) at step, partial or not. */
static int growth_of(Db *db, int64_t job, const char *rel, int64_t step, bool partial,
                     int keep_last, int64_t *growth) {
    DbCheckpoint add;
    cr_assert_eq(db_checkpoint_describe(db, rel, &add), DB_OK, "%s", error_get());
    add.step = step, add.partial = partial;
    return db_checkpoint_growth(db, job, &add, keep_last, growth);
}

/* What a new checkpoint would add to a job's bytes on disk, weighed before
 * its row is made: itself, less the row of its step it replaces, less what
 * keep_last then collects. Every fake checkpoint here takes 23 bytes. */
Test(storage, checkpoint_growth_weighs_replacement_and_gc) {
    Db *db = open_tmp();
    int64_t job, g;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    char rel[256];
    for (int e = 0; e < 3; e++) {
        fake_checkpoint(db, job, e, 10 * (e + 1), false, rel);
        cr_assert_eq(db_checkpoint_insert(db, job, e, 10 * (e + 1), false, rel, NULL), DB_OK);
    }
    fake_checkpoint(db, job, 3, 40, false, rel); /* written, not recorded */
    struct { int keep_last; int64_t growth; } complete[] = {{5, 23}, {3, 0}, {2, -23}, {1, -46}};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(growth_of(db, job, rel, 40, false, complete[i].keep_last, &g), DB_OK, "%s",
                     error_get());
        cr_assert_eq(g, complete[i].growth, "keep_last %d: %lld", complete[i].keep_last,
                     (long long)g);
    }
    /* a partial one is newest yet counts no place of keep_last */
    fake_checkpoint(db, job, 3, 35, true, rel);
    cr_assert_eq(growth_of(db, job, rel, 35, true, 3, &g), DB_OK);
    cr_assert_eq(g, 23);
    cr_assert_eq(growth_of(db, job, rel, 35, true, 1, &g), DB_OK);
    cr_assert_eq(g, -23);
    /* at the step of epoch 2's: it replaces that row */
    fake_checkpoint(db, job, 2, 30, true, rel);
    cr_assert_eq(growth_of(db, job, rel, 30, true, 3, &g), DB_OK);
    cr_assert_eq(g, 0);
    cr_assert_eq(growth_of(db, job, rel, 30, true, 1, &g), DB_OK);
    cr_assert_eq(g, -23, "epoch 2's replaced, epoch 0's collected, epoch 1's kept");
    /* older than the newest (a resumed attempt re-saving): gc weighs it too */
    fake_checkpoint(db, job, 0, 5, true, rel);
    cr_assert_eq(growth_of(db, job, rel, 5, true, 3, &g), DB_OK);
    cr_assert_eq(g, 0, "a partial one older than the newest is collected at once");
    cr_assert_eq(growth_of(db, job, rel, 40, false, 0, &g), DB_INVALID);
    DbCheckpoint none;
    cr_assert_eq(db_checkpoint_describe(db, "jobs/1/checkpoints/none", &none), DB_ERROR);
    cr_assert(strstr(error_get(), "checkpoints/none") != NULL, "%s", error_get());
    db_close(db);
    remove_tmp();
}

/* An epoch's checkpoint at the step of a partial one replaces it: the row
 * first, then the partial directory. Before an attempt, what no row names
 * goes (a crashed save's temporary, an unrecorded checkpoint), and a
 * recorded one set aside by a swap a crash cut short comes back. */
Test(storage, checkpoints_replaced_and_strays_collected) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    char prel[256], erel[256], stray[256], path[600], from[700];
    fake_checkpoint(db, job, 6, 70, true, prel);
    cr_assert_eq(db_checkpoint_insert(db, job, 6, 70, true, prel, NULL), DB_OK);
    fake_checkpoint(db, job, 6, 70, false, erel);
    DbCheckpoint c, got;
    cr_assert_eq(db_checkpoint_insert(db, job, 6, 70, false, erel, &c), DB_OK, "%s", error_get());
    cr_assert_eq(db_checkpoint_latest(db, job, &got), DB_OK);
    cr_assert(got.id == c.id && !got.partial && !strcmp(got.path, erel));
    snprintf(path, sizeof path, "%s/%s", db_data_dir(db), prel);
    cr_assert(!exists(path), "the replaced partial directory is gone");

    int removed = -1;
    cr_assert_eq(db_checkpoint_collect_strays(db, job, &removed), DB_OK, "%s", error_get());
    cr_assert_eq(removed, 0, "nothing to collect");
    fake_checkpoint(db, job, 9, 99, true, stray);      /* never recorded */
    fake_checkpoint(db, job, 8, 90, false, stray);
    snprintf(path, sizeof path, "%s/%s", db_data_dir(db), stray);
    snprintf(from, sizeof from, "%s.tmp.123.4", path); /* a save cut short */
    cr_assert_eq(rename(path, from), 0);
    snprintf(path, sizeof path, "%s/%s", db_data_dir(db), erel);
    snprintf(from, sizeof from, "%s.tmp.77.1.old", path); /* a swap cut short */
    cr_assert_eq(rename(path, from), 0);
    cr_assert_eq(db_checkpoint_collect_strays(db, job, &removed), DB_OK, "%s", error_get());
    cr_assert_eq(removed, 2);
    cr_assert(exists(path) && !exists(from), "the recorded checkpoint is back");
    char dir[400];
    snprintf(dir, sizeof dir, "%s/jobs/%lld/checkpoints", db_data_dir(db), (long long)job);
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d));) entries += e->d_name[0] != '.';
    if (d) closedir(d);
    cr_assert_eq(entries, 1, "only epoch-6 is left");
    cr_assert_eq(db_checkpoint_collect_strays(db, job + 1, &removed), DB_OK, "no directory yet");
    db_close(db);
    remove_tmp();
}

/* ---- logs, and many threads at once ---- */

Test(storage, logs_append_and_list) {
    Db *db = open_tmp();
    int64_t job, seq;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    cr_assert_eq(db_log_append(db, job, "first\n", &seq), DB_OK);
    cr_assert_eq(seq, 1);
    cr_assert_eq(db_log_append(db, job, "second", &seq), DB_OK);
    cr_assert_eq(db_log_append(db, job, "third", &seq), DB_OK);
    cr_assert_eq(seq, 3);
    cr_assert_eq(db_log_append(db, job + 1, "x", &seq), DB_NOT_FOUND);
    DbLogLine *lines;
    int n;
    cr_assert_eq(db_log_list(db, job, 1, 0, &lines, &n), DB_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(lines[0].seq, 2);
    cr_assert_str_eq(lines[0].line, "second");
    cr_assert_gt(lines[1].ts, 0);
    db_log_list_free(lines, n);
    cr_assert_eq(db_log_list(db, job, 0, 1, &lines, &n), DB_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(lines[0].line, "first");
    db_log_list_free(lines, n);
    db_close(db);
    remove_tmp();
}

/* ?tail=N: the newest lines, oldest first, of this job only. */
Test(storage, logs_tail) {
    Db *db = open_tmp();
    int64_t job, other;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &other), DB_OK);
    char line[32];
    for (int i = 1; i <= 10; i++) {
        snprintf(line, sizeof line, "line %d", i);
        cr_assert_eq(db_log_append(db, job, line, NULL), DB_OK);
        cr_assert_eq(db_log_append(db, other, "other", NULL), DB_OK);
    }
    DbLogLine *lines;
    int n;
    cr_assert_eq(db_log_tail(db, job, 3, &lines, &n), DB_OK);
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(lines[i].seq, 8 + i);
        snprintf(line, sizeof line, "line %d", 8 + i);
        cr_assert_str_eq(lines[i].line, line);
    }
    db_log_list_free(lines, n);
    /* more than there are: the whole log */
    cr_assert_eq(db_log_tail(db, job, 50, &lines, &n), DB_OK);
    cr_assert_eq(n, 10);
    cr_assert_eq(lines[0].seq, 1);
    cr_assert_str_eq(lines[9].line, "line 10");
    db_log_list_free(lines, n);
    cr_assert_eq(db_log_tail(db, job + 100, 5, &lines, &n), DB_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(db_log_tail(db, job, 0, &lines, &n), DB_INVALID);
    db_close(db);
    remove_tmp();
}

typedef struct {
    Db *db;
    int64_t job;
    int fails;
} ThreadArg;

static void *append_many(void *p) {
    ThreadArg *a = p;
    for (int i = 0; i < 50; i++) {
        if (db_log_append(a->db, a->job, "line", NULL) != DB_OK) a->fails++;
        DbJob j;
        if (db_job_get(a->db, a->job, &j) != DB_OK) a->fails++;
        db_job_clear(&j);
    }
    return NULL;
}

Test(storage, concurrent_threads_share_the_pool) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    enum { T = 24 }; /* more threads than pooled connections */
    pthread_t th[T];
    ThreadArg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (ThreadArg){.db = db, .job = job};
        pthread_create(&th[i], NULL, append_many, &args[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].fails, 0);
    }
    DbLogLine *lines;
    int n;
    cr_assert_eq(db_log_list(db, job, 0, 5000, &lines, &n), DB_OK);
    cr_assert_eq(n, T * 50);
    for (int i = 0; i < n; i++) cr_assert_eq(lines[i].seq, i + 1); /* unique, no gaps */
    db_log_list_free(lines, n);
    db_close(db);
    remove_tmp();
}

/* A job's name is its spec's, up to 128 characters, kept whole. */
Test(storage, job_names_of_128_characters) {
    Db *db = open_tmp();
    char name[129];
    memset(name, 'n', 128);
    name[128] = '\0';
    int64_t id;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.name = name, .spec_json = "{}"}, &id), DB_OK);
    DbJob j;
    cr_assert_eq(db_job_get(db, id, &j), DB_OK);
    cr_assert_str_eq(j.name, name);
    db_job_clear(&j);
    DbQueuedJob *q;
    int n;
    cr_assert_eq(db_job_queue(db, &q, &n), DB_OK);
    cr_assert_str_eq(q[0].name, name);
    free(q);
    db_close(db);
    remove_tmp();
}

/* A directory that cannot be made, or a tree that cannot be removed, keeps
 * its errno (ENOSPC would make a 507): here ENOTDIR, under a file. */
Test(storage, mkdir_p_and_remove_tree_keep_the_errno) {
    char dir[] = "/tmp/traind-errno-XXXXXX", path[128];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/file/sub", dir);
    cr_assert_eq(db_mkdir_p(path), -1);
    cr_assert_eq(error_last()->sys_errno, ENOTDIR, "%s", error_get());
    cr_assert_eq(db_remove_tree(path), -1);
    cr_assert_eq(error_last()->sys_errno, ENOTDIR, "%s", error_get());
    cr_assert_eq(db_remove_tree(dir), 0, "%s", error_get());
}
