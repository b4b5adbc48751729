/* test_dataset_ingest.c - an upload's or an import's files made a ready
 * dataset (server/dataset_ingest.h): samples and shapes recorded, a CSV's
 * float labels taken as regression targets, bad files refused naming the
 * file and not the data dir, and the owner's dataset-byte quota looked at
 * as the row is made ready, so that two datasets that each fit but not
 * together are not both kept (two uploads that raced past the check at
 * their start).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "server/dataset_ingest.h"
#include "storage/sha256.h"
#include "tests/support/tmp_db.h"

static const DbQuota no_defaults = {-1, -1, -1, -1, -1};

/* A csv dataset of owner's named `name`, its one file written as an
 * upload leaves it (state `uploading`, info's files filled). */
static int64_t uploaded(Db *db, const char *name, int64_t owner, const char *text,
                        DbDataset *info) {
    int64_t id;
    cr_assert_eq(db_dataset_insert(db, name, "csv", "{}", owner, &id), DB_OK, "%s", error_get());
    char dir[300], file[400];
    cr_assert_eq(db_dataset_dir(db, id, dir, sizeof dir), 0);
    snprintf(file, sizeof file, "%s/data.csv", dir);
    FILE *f = fopen(file, "w");
    cr_assert(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    memset(info, 0, sizeof *info);
    info->num_files = 1;
    snprintf(info->files[0].role, sizeof info->files[0].role, "file");
    snprintf(info->files[0].name, sizeof info->files[0].name, "data.csv");
    cr_assert_eq(sha256_file_hex(file, info->files[0].sha256, &info->files[0].bytes), 0);
    return id;
}

static DatasetIngestResult finish(Db *db, const DbQuota *defaults, int64_t id, int64_t owner,
                                  DbDataset *info) {
    DatasetIngest in = {.db = db, .quota_defaults = defaults, .id = id, .owner = owner,
                        .format = "csv", .options_json = "{}"};
    error_clear();
    return dataset_ingest_finish(&in, info);
}

static DbDatasetState state_of(Db *db, int64_t id) {
    DbDataset ds;
    cr_assert_eq(db_dataset_get(db, id, &ds), DB_OK);
    DbDatasetState s = ds.state;
    db_dataset_clear(&ds);
    return s;
}

static int64_t user(Db *db, const char *name, int64_t dataset_bytes) {
    int64_t id;
    char token[DB_TOKEN_LEN + 1];
    cr_assert_eq(db_user_create(db, name, false, &id, token), DB_OK, "%s", error_get());
    DbQuota q = {DB_QUOTA_UNCHANGED, DB_QUOTA_UNCHANGED, DB_QUOTA_UNCHANGED, dataset_bytes,
                 DB_QUOTA_UNCHANGED};
    cr_assert_eq(db_user_set_quota(db, name, &q), DB_OK, "%s", error_get());
    return id;
}

static const char CLASSES[] = "a,b,label\n1,2,0\n3,4,1\n5,6,2\n"; /* 28 bytes */

Test(dataset_ingest, a_csv_becomes_ready_with_its_shape) {
    TmpDb t;
    tmp_db_open(&t, "ingest");
    DbDataset info;
    int64_t id = uploaded(t.db, "toy", 0, CLASSES, &info);
    cr_assert_eq(finish(t.db, &no_defaults, id, 0, &info), DATASET_INGEST_OK, "%s", error_get());
    DbDataset ds;
    cr_assert_eq(db_dataset_get(t.db, id, &ds), DB_OK);
    cr_assert_eq(ds.state, DB_DATASET_READY);
    cr_assert_eq(ds.samples, 3);
    cr_assert_eq(ds.bytes, 28);
    cr_assert_str_eq(ds.sha256, info.files[0].sha256);
    cr_assert_eq(ds.shape.input_ndim, 1);
    cr_assert_eq(ds.shape.input_shape[0], 2);
    cr_assert_str_eq(ds.shape.input_dtype, "float32");
    cr_assert_str_eq(ds.shape.target_dtype, "int64");
    cr_assert_eq(ds.shape.num_classes, 3);
    db_dataset_clear(&ds);
    tmp_db_close(&t);
}

Test(dataset_ingest, float_labels_are_regression_targets) {
    TmpDb t;
    tmp_db_open(&t, "ingest");
    DbDataset info;
    int64_t id = uploaded(t.db, "reg", 0, "a,label\n1,0.5\n2,1.5\n", &info);
    cr_assert_eq(finish(t.db, &no_defaults, id, 0, &info), DATASET_INGEST_OK, "%s", error_get());
    cr_assert_str_eq(info.shape.target_dtype, "float32");
    cr_assert_eq(info.shape.num_classes, 0);
    tmp_db_close(&t);
}

/* A float label on line 2 and a bad feature on line 4: neither reading
 * loads, and the message says both faults (the second is what keeps the
 * file from loading as regression targets), naming the file only. */
Test(dataset_ingest, a_csv_failing_both_readings_says_both) {
    TmpDb t;
    tmp_db_open(&t, "ingest");
    DbDataset info;
    int64_t id = uploaded(t.db, "both", 0, "a,label\n1,0.5\n2,1\nabc,0\n", &info);
    cr_assert_eq(finish(t.db, &no_defaults, id, 0, &info), DATASET_INGEST_BAD_DATA);
    cr_assert(strstr(error_get(), "line 2, column 'label': '0.5' is not a class label"), "%s",
              error_get());
    cr_assert(strstr(error_get(), "; read as regression targets: csv: data.csv: line 4, column "
                                  "'a': 'abc' is not a number"),
              "%s", error_get());
    cr_assert(!strstr(error_get(), t.dir), "%s", error_get());
    /* one fault both readings meet is said once */
    id = uploaded(t.db, "once", 0, "a,label\nabc,1\n", &info);
    cr_assert_eq(finish(t.db, &no_defaults, id, 0, &info), DATASET_INGEST_BAD_DATA);
    cr_assert(!strstr(error_get(), "read as regression"), "%s", error_get());
    tmp_db_close(&t);
}

/* The message names the file, never the data dir; the row is left for the
 * caller to delete. */
Test(dataset_ingest, a_bad_file_is_refused_by_its_name) {
    TmpDb t;
    tmp_db_open(&t, "ingest");
    DbDataset info;
    int64_t id = uploaded(t.db, "bad", 0, "a,label\n1,2,3\n", &info);
    cr_assert_eq(finish(t.db, &no_defaults, id, 0, &info), DATASET_INGEST_BAD_DATA);
    cr_assert(strstr(error_get(), "data.csv"), "%s", error_get());
    cr_assert(!strstr(error_get(), t.dir), "%s", error_get());
    cr_assert_eq(state_of(t.db, id), DB_DATASET_UPLOADING);
    tmp_db_close(&t);
}

/* alice's quota holds one of two 28-byte datasets: both passed the look
 * at their start, the second is refused as it would be made ready. */
Test(dataset_ingest, two_that_fit_alone_are_not_both_kept) {
    TmpDb t;
    tmp_db_open(&t, "ingest");
    int64_t alice = user(t.db, "alice", 42);
    DbDataset a, b;
    int64_t ida = uploaded(t.db, "one", alice, CLASSES, &a);
    int64_t idb = uploaded(t.db, "two", alice, CLASSES, &b);
    cr_assert_eq(finish(t.db, &no_defaults, ida, alice, &a), DATASET_INGEST_OK, "%s",
                 error_get());
    cr_assert_eq(finish(t.db, &no_defaults, idb, alice, &b), DATASET_INGEST_OVER_QUOTA);
    cr_assert_str_eq(error_last()->path, "quota.dataset_bytes");
    cr_assert_str_eq(error_get(),
                     "alice has 28 B of datasets; 28 B more would pass the quota of 42 B");
    cr_assert_eq(state_of(t.db, ida), DB_DATASET_READY);
    cr_assert_eq(state_of(t.db, idb), DB_DATASET_UPLOADING);
    tmp_db_close(&t);
}

/* A user without a limit of their own has the daemon's; another user's
 * datasets are not counted against them. */
Test(dataset_ingest, the_default_quota_counts_the_owners_datasets_only) {
    TmpDb t;
    tmp_db_open(&t, "ingest");
    int64_t bob = user(t.db, "bob", DB_QUOTA_DEFAULT);
    int64_t carol = user(t.db, "carol", DB_QUOTA_DEFAULT);
    DbQuota defaults = {-1, -1, -1, 60, -1};
    DbDataset info;
    for (int i = 0; i < 2; i++) {
        char name[16];
        snprintf(name, sizeof name, "bob%d", i);
        int64_t id = uploaded(t.db, name, bob, CLASSES, &info);
        cr_assert_eq(finish(t.db, &defaults, id, bob, &info), DATASET_INGEST_OK, "%s",
                     error_get());
    }
    int64_t id = uploaded(t.db, "bob2", bob, CLASSES, &info);
    cr_assert_eq(finish(t.db, &defaults, id, bob, &info), DATASET_INGEST_OVER_QUOTA);
    cr_assert(strstr(error_get(), "bob has 56 B of datasets"), "%s", error_get());
    id = uploaded(t.db, "carol0", carol, CLASSES, &info);
    cr_assert_eq(finish(t.db, &defaults, id, carol, &info), DATASET_INGEST_OK, "%s",
                 error_get());
    tmp_db_close(&t);
}

/* Files of one name, as three imported URLs .../dl?id=N or three uploads of
 * one batch give: each stored under a name of its own, none over another
 * (the role, then role-<n+1>, ... past names the client chose too). */
Test(dataset_ingest, files_of_one_name_get_names_of_their_own) {
    DbDatasetFile f[5];
    memset(f, 0, sizeof f);
    const char *sent[] = {"dl", "dl", "file-3", "dl", ".hidden"};
    const char *want[] = {"dl", "file", "file-3", "file-4", "file-5"};
    for (int i = 0; i < 5; i++) {
        dataset_ingest_file_name(f, i, "file", sent[i], f[i].name, sizeof f[i].name);
        cr_assert_str_eq(f[i].name, want[i], "file %d", i);
    }
    char name[64];
    dataset_ingest_file_name(f, 5, "file", "C:\\batches\\data_batch_1.bin", name, sizeof name);
    cr_assert_str_eq(name, "data_batch_1.bin");
}
