/* test_storage.c - the SQLite storage layer (storage/db.h) and SHA-256:
 * migrations from an empty file and on reopen, every record's CRUD, name
 * validation, queue order, metric overwrite and the batched writer,
 * downsampling (correctness on a small series; timing on a million rows,
 * printed, not asserted), checkpoint garbage collection and the NIST
 * vectors; a full disk (a small tmpfs): ENOSPC in the error, the writer's
 * rows kept and committed once space returns, the database intact. Each
 * test works in its own temporary data dir. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "storage/db.h"
#include "storage/db_internal.h"
#include "storage/sha256.h"
#include "tests/support/full_disk.h"
#include "tests/support/tmp_dir.h"

static char tmpdir[256];

static void make_tmp(void) {
    tmp_dir_make(tmpdir, sizeof tmpdir, "storage");
}

static void remove_tmp(void) { tmp_dir_remove(tmpdir); }

static Db *open_tmp(void) {
    make_tmp();
    Db *db = db_open(tmpdir);
    if (!db) cr_assert_fail("db_open: %s", error_get());
    return db;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- sha256 ---- */

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
 * rows of `sql` in it, in a new temporary data dir. */
static void make_old_db(int version, const char *sql) {
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
}

Test(storage, migration_2_fills_device_request_from_the_spec) {
    make_old_db(1, "INSERT INTO jobs (spec, state, created_at) VALUES"
                   " ('{\"device\": \"cuda\"}', 'queued', 1),"
                   " ('{\"device\": \"cpu\"}', 'queued', 2),"
                   " ('{\"epochs\": 1}', 'queued', 3),"
                   " ('{\"device\": \"cuda:1\"}', 'succeeded', 4)");
    Db *db = db_open(tmpdir);
    cr_assert(db != NULL, "%s", error_get());
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

/* Version 6 records a job's ranks, read from the specs of the jobs before
 * (1 where a spec has none, or none that parses). */
Test(storage, migration_6_reads_the_ranks_of_old_jobs) {
    make_old_db(5, "INSERT INTO jobs (spec, state, created_at) VALUES"
                   " ('{\"ranks\": 4}', 'queued', 1), ('{\"epochs\": 1}', 'queued', 2),"
                   " ('not json', 'queued', 3), ('{\"ranks\": \"4\"}', 'queued', 4)");
    Db *db = db_open(tmpdir);
    cr_assert(db != NULL, "%s", error_get());
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

/* Version 3 makes dataset names each user's own, and records the datasets
 * a job of version 2 named (names were global then, or an id). */
Test(storage, migration_3_keeps_datasets_and_resolves_jobs_datasets) {
    make_old_db(2, "INSERT INTO users (name, token_sha256, created_at) VALUES ('u', 'h', 1);"
                   "INSERT INTO datasets (name, format, state, owner, created_at) VALUES"
                   " ('train', 'csv', 'ready', 1, 1), ('test', 'csv', 'ready', 1, 1);"
                   "INSERT INTO jobs (spec, state, created_at, owner) VALUES"
                   " ('{\"data\": {\"train\": \"train\", \"val\": \"2\"}}', 'queued', 1, 1),"
                   " ('{\"data\": {\"train\": \"gone\"}}', 'queued', 2, 1)");
    Db *db = db_open(tmpdir);
    cr_assert(db != NULL, "%s", error_get());
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
    make_old_db(3, "INSERT INTO jobs (spec, state, created_at) VALUES ('{}', 'running', 1);"
                   "INSERT INTO metrics (job_id, name, step, epoch, value) VALUES"
                   " (1, 'loss', 1, 0, 2.5), (1, 'loss', 2, 0, 2.25);"
                   "WITH RECURSIVE s(x) AS (SELECT 10 UNION ALL SELECT x + 1 FROM s"
                   " WHERE x < 10009) INSERT INTO metrics (job_id, name, step, epoch, value)"
                   " SELECT 1, 'acc', x, x / 1000, x * 0.5 FROM s");
    Db *db = db_open(tmpdir);
    cr_assert(db != NULL, "%s", error_get());
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

    /* delete: files, then the row; again: not found */
    cr_assert_eq(db_dataset_delete(db, id), DB_OK);
    cr_assert(!exists(dir));
    cr_assert_eq(db_dataset_get(db, id, &ds), DB_NOT_FOUND);
    cr_assert_eq(db_dataset_delete(db, id), DB_NOT_FOUND);
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

/* ---- jobs ---- */

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
    cr_assert_eq(db_job_cancel_queued(db, id), DB_CONFLICT);

    DbJobProgress p = {.epoch = 2, .step = 30, .total_steps = 100, .samples_per_s = 1234.5,
                       .eta_s = 7};
    cr_assert_eq(db_job_set_progress(db, id, &p), DB_OK);
    /* daemon restart: running -> queued, attempt kept; the next claim counts */
    int n;
    cr_assert_eq(db_job_requeue_running(db, &n), DB_OK);
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
    cr_assert_eq(db_job_cancel_queued(db, q), DB_OK);
    cr_assert_eq(db_job_claim(db, q, "cpu", NULL), DB_CONFLICT);
    cr_assert_eq(db_job_requeue(db, q), DB_CONFLICT);

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

Test(storage, job_list_filter_and_pagination) {
    Db *db = open_tmp();
    int64_t ids[25];
    for (int i = 0; i < 25; i++) {
        char name[16];
        snprintf(name, sizeof name, "j%d", i);
        cr_assert_eq(db_job_insert(db, &(DbJobNew){.name = name, .spec_json = "{}"}, &ids[i]),
                     DB_OK);
    }
    for (int i = 0; i < 25; i += 3) cr_assert_eq(db_job_cancel_queued(db, ids[i]), DB_OK);
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

/* ---- metrics ---- */

Test(storage, metrics_overwrite_query_latest) {
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

Test(storage, metric_writer_batches_100k) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    MetricWriter *w = metric_writer_start(db);
    cr_assert(w != NULL);
    uint64_t g0 = metric_writer_generation(w);
    double wall0 = clock_wall_s() - 0.001; /* to the ms: the first push may round down */
    double t0 = now_s();
    for (int i = 1; i <= 100000; i++) metric_writer_push(w, job, "loss", i, i / 1000, i * 0.5);
    double t_push = now_s() - t0;
    cr_assert_eq(metric_writer_flush(w), 0);
    double t_all = now_s() - t0;
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
    printf("storage: metric writer: 100000 pushes in %.1f ms (%.0f ns each), committed after "
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

Test(storage, downsampling_from_blocks_is_exact_for_its_buckets) {
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

Test(storage, metric_writer_wait_wakes_on_commit) {
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

Test(storage, a_full_disk_is_enospc_and_the_writer_catches_up, .fini = full_disk_unmount) {
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

    char filler[128];
    snprintf(filler, sizeof filler, "%s/filler", disk);
    cr_assert_eq(unlink(filler), 0);
    cr_assert_eq(metric_writer_flush(w), 0, "%s", error_get());
    int64_t count;
    cr_assert_eq(db_metric_count(db, job, &count), DB_OK);
    cr_assert_eq(count, 50000);
    DbMetric *m;
    int n;
    DbMetricQuery q = {.name = "loss", .after = 49999, .limit = 1};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    cr_assert_eq(n, 1);
    cr_assert_float_eq(m[0].value, 12500.0, 0);
    free(m);
    integrity(db, ok, sizeof ok);
    cr_assert_str_eq(ok, "ok");
    metric_writer_stop(w);
    db_close(db);
}

Test(storage, downsample_small_series) {
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
Test(storage, metrics_before_bounds_steps) {
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
Test(storage, metrics_latest_of_many_jobs) {
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
Test(storage, metrics_latest_of_200_jobs_timed) {
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
    double t0 = now_s();
    cr_assert_eq(db_job_list(db, &(DbJobQuery){.state = -1, .limit = J}, &jobs, &n, &next), DB_OK);
    double t_list = now_s() - t0;
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
        t0 = now_s();
        cr_assert_eq(db_metric_latest_jobs(db, page, J, &all, &nall), DB_OK);
        t_one = fmin(t_one, now_s() - t0);
        cr_assert_eq(nall, 3 * J);
    }

    t0 = now_s();
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
    double t_each = now_s() - t0;
    free(all);
    fprintf(stderr,
            "storage: list of %d jobs (%d points each): the list %.2f ms; newest metrics in one "
            "query %.2f ms; one query per job %.2f ms\n",
            J, 3 * STEPS, t_list * 1e3, t_one * 1e3, t_each * 1e3);
    db_close(db);
    remove_tmp();
}

Test(storage, downsample_a_million_points) {
    Db *db = open_tmp();
    int64_t job;
    cr_assert_eq(db_job_insert(db, &(DbJobNew){.spec_json = "{}"}, &job), DB_OK);
    const int N = 1000000;
    double t0 = now_s();
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
    double t_fill = now_s() - t0;

    DbMetricBucket *b;
    int n;
    t0 = now_s();
    cr_assert_eq(db_metric_downsample(db, job, "loss", -1, 0, 1000, &b, &n), DB_OK);
    double t_ds = now_s() - t0;
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
    t0 = now_s();
    cr_assert_eq(db_metric_downsample(db, job, "loss", N - 10000, 0, 1000, &b, &n), DB_OK);
    double t_tail = now_s() - t0;
    cr_assert_eq(n, 1000);
    free(b);
    /* the block summaries the metric writer keeps (the rows came by SQL),
     * then a chart's 400 buckets: 2,500 steps wide, so from the blocks */
    t0 = now_s();
    c = db_acquire(db);
    cr_assert_eq(db_begin(c), DB_OK);
    for (int64_t k = 0; k <= N / DB_METRIC_BLOCK_STEPS; k++)
        cr_assert_eq(db_metric_block_refresh(c, job, "loss", k), DB_OK, "%s", error_get());
    cr_assert_eq(db_commit(c), DB_OK);
    db_release(db, c);
    double t_blocks = now_s() - t0;
    t0 = now_s();
    cr_assert_eq(db_metric_downsample(db, job, "loss", -1, 0, 400, &b, &n), DB_OK);
    double t_from_blocks = now_s() - t0;
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
    t0 = now_s();
    cr_assert_eq(db_metric_latest(db, job, &m, &n), DB_OK);
    double t_latest = now_s() - t0;
    cr_assert_eq(n, 2);
    cr_assert_eq(m[0].step, N);
    free(m);
    t0 = now_s();
    DbMetricQuery q = {.name = "loss", .after = 500000, .limit = 10000};
    cr_assert_eq(db_metric_query(db, job, &q, &m, &n), DB_OK);
    double t_hist = now_s() - t0;
    cr_assert_eq(n, 10000);
    free(m);
    printf("storage: 1e6 points: filled in %.0f ms; downsample to 1000 buckets %.1f ms; "
           "last 10000 steps to 1000 buckets %.2f ms; block summaries made in %.0f ms, "
           "400 buckets from them %.2f ms; latest per name %.3f ms; 10000-point history "
           "%.1f ms\n",
           t_fill * 1e3, t_ds * 1e3, t_tail * 1e3, t_blocks * 1e3, t_from_blocks * 1e3,
           t_latest * 1e3, t_hist * 1e3);
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
    cr_assert_str_eq(c.path, rel[4]);
    cr_assert(strstr(c.path, "epoch-4") != NULL);
    DbCheckpoint got;
    cr_assert_eq(db_checkpoint_get(db, c.id, &got), DB_OK);
    cr_assert_eq(got.step, 50);
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
