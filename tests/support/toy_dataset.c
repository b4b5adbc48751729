/* toy_dataset.c - the tiny CSV dataset of the scheduler's tests; see
 * toy_dataset.h. */
#include "tests/support/toy_dataset.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "job/build.h"
#include "storage/sha256.h"

/* 96 rows, 4 features, 3 classes (the argmax of three fixed linear
 * scores): a dataset "toy" registered as an upload would be, its file's
 * size and sha256 recorded. */
int64_t toy_dataset_make(Db *db) {
    int64_t id;
    cr_assert_eq(db_dataset_insert(db, "toy", "csv", "{\"label_column\": \"y\"}", 0, &id),
                 DB_OK);
    char dir[300], path[400];
    db_dataset_dir(db, id, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/toy.csv", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("x1,x2,x3,x4,y\n", f);
    uint32_t r = 12345;
    for (int i = 0; i < 96; i++) {
        double x[4];
        for (int k = 0; k < 4; k++) {
            r = r * 1664525u + 1013904223u;
            x[k] = (double)(r >> 8) / (double)(1u << 24) * 2 - 1;
        }
        double s0 = x[0] + x[1], s1 = x[2] - x[3], s2 = 0.5 * x[1] - x[0] + x[3];
        int y = s0 > s1 ? (s0 > s2 ? 0 : 2) : (s1 > s2 ? 1 : 2);
        fprintf(f, "%.6f,%.6f,%.6f,%.6f,%d\n", x[0], x[1], x[2], x[3], y);
    }
    fclose(f);
    DbDataset rec = {0};
    cr_assert_eq(db_dataset_get(db, id, &rec), DB_OK);
    rec.num_files = 1;
    snprintf(rec.files[0].role, sizeof rec.files[0].role, "file");
    snprintf(rec.files[0].name, sizeof rec.files[0].name, "toy.csv");
    cr_assert_eq(sha256_file_hex(path, rec.files[0].sha256, &rec.files[0].bytes), 0);
    Dataset *ds = job_build_load_dataset(db, &rec, false);
    cr_assert(ds, "%s", error_get());
    job_build_sample_shape(ds, &rec.shape);
    rec.samples = ds->n;
    dataset_free(ds);
    cr_assert_eq(db_dataset_mark_ready(db, id, &rec), DB_OK, "%s", error_get());
    db_dataset_clear(&rec);
    return id;
}
