/* test_dataset.c - core/data loaders: the shared MNIST against statistics
 * numpy computed (tests/fixtures/gen_mnist_stats.py), .npy files numpy wrote
 * (gen_npy.py), and bad files written here, each of which must fail with a
 * message that names the file and says what is wrong and where. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/data/dataset.h"
#include "core/error.h"
#include "tests/support/fixture.h"
#include "tests/support/tmp_dir.h"

static char dir[64];

static void setup(void) { tmp_dir_make(dir, sizeof dir, "data"); }

static void teardown(void) { tmp_dir_remove(dir); }

TestSuite(dataset, .init = setup, .fini = teardown);

static const char *in_dir(const char *name, char *buf, size_t n) {
    return tmp_dir_path(dir, name, buf, n);
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile g = gzopen(path, "wb");
    cr_assert(g != NULL);
    if (n) cr_assert_eq(gzwrite(g, data, (unsigned)n), (int)n);
    gzclose(g);
}

static void write_text(const char *path, const char *text) {
    tmp_dir_write_file(path, text, strlen(text));
}

/* An IDX header: magic then big-endian dims; returns its length. */
static size_t idx_header(unsigned char *h, uint32_t magic, int ndim, const uint32_t *dims) {
    uint32_t words[4] = {magic, 0, 0, 0};
    for (int i = 0; i < ndim; i++) words[1 + i] = dims[i];
    for (int w = 0; w < 1 + ndim; w++)
        for (int b = 0; b < 4; b++) h[4 * w + b] = (unsigned char)(words[w] >> (24 - 8 * b));
    return (size_t)(4 + 4 * ndim);
}

/* A small IDX pair: n images of rows x cols (pixel = 7*i + j mod 256) and
 * n_labels labels (i % 10); data_bytes_delta cuts (<0) or pads (>0) the
 * image data. */
static void write_idx_pair(const char *images, const char *labels, uint32_t n, uint32_t rows,
                           uint32_t cols, uint32_t n_labels, long data_bytes_delta, bool gz) {
    size_t data = (size_t)n * rows * cols;
    size_t total = 16 + data + (data_bytes_delta > 0 ? (size_t)data_bytes_delta : 0);
    unsigned char *buf = calloc(1, total + 16);
    cr_assert(buf != NULL);
    idx_header(buf, 0x803, 3, (uint32_t[]){n, rows, cols});
    for (size_t i = 0; i < data; i++) buf[16 + i] = (unsigned char)((7 * i + i / 5) % 256);
    size_t len = (size_t)((long)(16 + data) + data_bytes_delta);
    if (gz)
        write_gz(images, buf, len);
    else
        tmp_dir_write_file(images, buf, len);
    unsigned char lab[8 + 256];
    idx_header(lab, 0x801, 1, (uint32_t[]){n_labels});
    for (uint32_t i = 0; i < n_labels && i < 256; i++) lab[8 + i] = (unsigned char)(i % 10);
    if (gz)
        write_gz(labels, lab, 8 + n_labels);
    else
        tmp_dir_write_file(labels, lab, 8 + n_labels);
    free(buf);
}

static void assert_error_contains(const char *needle) {
    cr_assert(strstr(error_get(), needle) != NULL, "error '%s' should contain '%s'", error_get(),
              needle);
}

/* ------------------------------------------------------------------------ */
/* MNIST                                                                     */

static void check_mnist_split(const char *split) {
    char ip[512], lp[512], rel[128];
    snprintf(rel, sizeof rel, "datasets/mnist/%s-images-idx3-ubyte.gz", split);
    if (!shared_path(rel, ip, sizeof ip)) cr_skip_test("mnist: %s not found", ip);
    snprintf(rel, sizeof rel, "datasets/mnist/%s-labels-idx1-ubyte.gz", split);
    cr_assert(shared_path(rel, lp, sizeof lp) != NULL);

    json_t *fx = fixture_load("mnist_stats");
    json_t *kase = fixture_case(fx, split);
    Dataset *ds = dataset_load_idx(ip, lp);
    cr_assert(ds != NULL, "%s", error_get());
    int64_t n = (int64_t)fixture_number(kase, "n");
    cr_assert_eq(ds->n, n);
    cr_assert_eq(ds->inputs->dtype, DTYPE_UINT8);
    cr_assert_eq(ds->inputs->ndim, 3);
    cr_assert_eq(ds->inputs->shape[0], n);
    cr_assert_eq(ds->inputs->shape[1], (int64_t)fixture_number(kase, "rows"));
    cr_assert_eq(ds->inputs->shape[2], (int64_t)fixture_number(kase, "cols"));
    cr_assert_eq(ds->targets->dtype, DTYPE_INT64);
    cr_assert_eq(ds->targets->ndim, 1);
    cr_assert_eq(ds->targets->shape[0], n);
    cr_assert_eq(ds->num_classes, 10);
    cr_assert(strstr(ds->description, "samples of uint8 [28, 28], 10 classes"), "%s",
              ds->description);

    Tensor *first = fixture_tensor(kase, "first_labels");
    const int64_t *labels = tensor_data(ds->targets);
    for (int64_t i = 0; i < tensor_numel(first); i++)
        cr_assert_eq(labels[i], (int64_t)tensor_get(first, i), "label %lld", (long long)i);
    tensor_release(first);

    const uint8_t *px = tensor_data(ds->inputs);
    int64_t per = 28 * 28, sum0 = 0, sum_last = 0, sum_all = 0, weighted = 0, lweighted = 0;
    for (int64_t i = 0; i < per; i++) sum0 += px[i], sum_last += px[(n - 1) * per + i];
    for (int64_t i = 0; i < n * per; i++) sum_all += px[i], weighted += px[i] * (i % 251);
    for (int64_t i = 0; i < n; i++) lweighted += labels[i] * (i % 251);
    cr_assert_eq(sum0, (int64_t)fixture_number(kase, "pixel_sum_0"));
    cr_assert_eq(sum_last, (int64_t)fixture_number(kase, "pixel_sum_last"));
    cr_assert_eq(sum_all, (int64_t)fixture_number(kase, "pixel_sum_all"));
    cr_assert_eq(weighted, (int64_t)fixture_number(kase, "pixel_weighted_sum"));
    cr_assert_eq(lweighted, (int64_t)fixture_number(kase, "label_weighted_sum"));

    Tensor *row = fixture_tensor(kase, "image0_row14");
    for (int j = 0; j < 28; j++) cr_assert_eq(px[14 * 28 + j], (uint8_t)tensor_get(row, j));
    tensor_release(row);

    Tensor *counts = fixture_tensor(kase, "class_counts");
    int64_t have[10] = {0};
    for (int64_t i = 0; i < n; i++) have[labels[i]]++;
    for (int c = 0; c < 10; c++)
        cr_assert_eq(have[c], (int64_t)tensor_get(counts, c), "class %d", c);
    tensor_release(counts);
    dataset_free(ds);
    json_decref(fx);
}

Test(dataset, mnist_t10k) { check_mnist_split("t10k"); }
Test(dataset, mnist_train) { check_mnist_split("train"); }

/* The real test images with 1000 bytes cut from the end: the header now
 * claims more than the file holds. */
Test(dataset, mnist_truncated_gz) {
    char ip[512], lp[512], cut[512];
    if (!shared_path("datasets/mnist/t10k-images-idx3-ubyte.gz", ip, sizeof ip))
        cr_skip_test("mnist: %s not found", ip);
    cr_assert(shared_path("datasets/mnist/t10k-labels-idx1-ubyte.gz", lp, sizeof lp) != NULL);
    gzFile g = gzopen(ip, "rb");
    cr_assert(g != NULL);
    size_t cap = 7840016;
    unsigned char *buf = malloc(cap);
    cr_assert(buf != NULL);
    cr_assert_eq(gzread(g, buf, (unsigned)cap), (int)cap);
    gzclose(g);
    in_dir("t10k-images-idx3-ubyte.gz", cut, sizeof cut);
    write_gz(cut, buf, cap - 1000);
    free(buf);
    cr_assert_null(dataset_load_idx(cut, lp));
    char want[768];
    snprintf(want, sizeof want,
             "idx: %s: header says 10000 images of 28x28 (7840000 bytes) but the file holds "
             "7839000 bytes after the 16-byte header",
             cut);
    cr_assert_str_eq(error_get(), want);
}

/* ------------------------------------------------------------------------ */
/* IDX written here                                                          */

Test(dataset, idx_raw_and_gz_agree) {
    char ir[512], lr[512], ig[512], lg[512];
    write_idx_pair(in_dir("i.idx", ir, sizeof ir), in_dir("l.idx", lr, sizeof lr), 12, 3, 5, 12,
                   0, false);
    write_idx_pair(in_dir("i.gz", ig, sizeof ig), in_dir("l.gz", lg, sizeof lg), 12, 3, 5, 12, 0,
                   true);
    Dataset *a = dataset_load_idx(ir, lr), *b = dataset_load_idx(ig, lg);
    cr_assert(a != NULL, "%s", error_get());
    cr_assert(b != NULL, "%s", error_get());
    cr_assert_eq(a->n, 12);
    cr_assert_eq(a->inputs->shape[1], 3);
    cr_assert_eq(a->inputs->shape[2], 5);
    const uint8_t *pa = tensor_data(a->inputs), *pb = tensor_data(b->inputs);
    for (size_t i = 0; i < 12 * 15; i++) {
        cr_assert_eq(pa[i], (uint8_t)((7 * i + i / 5) % 256));
        cr_assert_eq(pb[i], pa[i]);
    }
    const int64_t *la = tensor_data(a->targets), *lb = tensor_data(b->targets);
    for (int i = 0; i < 12; i++) cr_assert(la[i] == i % 10 && lb[i] == la[i]);
    cr_assert_eq(a->num_classes, 10);
    dataset_free(a);
    dataset_free(b);
}

Test(dataset, idx_header_lies_raw) {
    char ip[512], lp[512], want[768];
    write_idx_pair(in_dir("i.idx", ip, sizeof ip), in_dir("l.idx", lp, sizeof lp), 10, 4, 4, 10,
                   -10, false);
    cr_assert_null(dataset_load_idx(ip, lp));
    snprintf(want, sizeof want,
             "idx: %s: header says 10 images of 4x4 (160 bytes) but the file holds 150 bytes "
             "after the 16-byte header", ip);
    cr_assert_str_eq(error_get(), want);
}

Test(dataset, idx_header_understates_gz) {
    char ip[512], lp[512];
    write_idx_pair(in_dir("i.gz", ip, sizeof ip), in_dir("l.gz", lp, sizeof lp), 10, 4, 4, 10, 7,
                   true);
    cr_assert_null(dataset_load_idx(ip, lp));
    assert_error_contains("header says 10 images of 4x4 (160 bytes) but the file holds 167 bytes");
}

/* A small claim, then a gzip stream that inflates on and on: read to a
 * megabyte past the claim, not to its end. */
Test(dataset, idx_gz_past_a_small_claim_is_not_inflated_whole) {
    char ip[512], lp[512];
    write_idx_pair(in_dir("x.gz", ip, sizeof ip), in_dir("l.gz", lp, sizeof lp), 1, 1, 1, 1, 0,
                   true);
    size_t n = 16 + 1 + (64u << 20); /* 1 image of 1x1, then 64 MiB of zeros */
    unsigned char *bytes = calloc(1, n);
    cr_assert(bytes);
    idx_header(bytes, 0x803, 3, (uint32_t[]){1, 1, 1});
    write_gz(ip, bytes, n);
    free(bytes);
    cr_assert_null(dataset_load_idx(ip, lp));
    assert_error_contains("header says 1 images of 1x1 (1 bytes) but the file holds more than "
                          "1048577 bytes after the 16-byte header");
}

Test(dataset, idx_huge_claim_refused_before_allocating) {
    char ip[512], lp[512], xp[512];
    unsigned char h[16];
    write_idx_pair(in_dir("x.gz", xp, sizeof xp), in_dir("l.gz", lp, sizeof lp), 1, 1, 1, 1, 0,
                   true);
    idx_header(h, 0x803, 3, (uint32_t[]){4000000, 1000, 1000}); /* 4 TB */
    write_gz(in_dir("i.gz", ip, sizeof ip), h, 16);
    cr_assert_null(dataset_load_idx(ip, lp));
    assert_error_contains("claim more than 2^40 bytes");
    idx_header(h, 0x803, 3, (uint32_t[]){60000, 280, 280}); /* 4.7 GB from a 40-byte gzip */
    write_gz(ip, h, 16);
    cr_assert_null(dataset_load_idx(ip, lp));
    assert_error_contains("header says 60000 images of 280x280 (4704000000 bytes), more than a "
                          "gzip file of");
}

/* a true claim (a megabyte in a few KB of gzip) over a daemon's
 * limit on a dataset's memory: refused before allocating, loaded without */
Test(dataset, idx_claim_over_the_memory_limit) {
    char ip[512], lp[512];
    write_idx_pair(in_dir("i.gz", ip, sizeof ip), in_dir("l.gz", lp, sizeof lp), 16, 256, 256, 16,
                   0, true);
    dataset_set_memory_limit(1 << 20);
    Dataset *ds = dataset_load_idx(ip, lp);
    dataset_set_memory_limit(0);
    cr_assert_null(ds);
    char want[700];
    snprintf(want, sizeof want, "idx: %s with its labels: would take %d bytes of memory, over the "
             "1048576 bytes one dataset may take on this server", ip, (1 << 20) + 16 * 9);
    cr_assert_str_eq(error_get(), want);
    dataset_set_memory_limit((1 << 20) + 16 * 9);
    ds = dataset_load_idx(ip, lp);
    dataset_set_memory_limit(0);
    cr_assert_not_null(ds, "%s", error_get());
    cr_assert_eq(ds->n, 16);
    dataset_free(ds);
}

Test(dataset, idx_wrong_magic) {
    char ip[512], lp[512];
    write_idx_pair(in_dir("i.gz", ip, sizeof ip), in_dir("l.gz", lp, sizeof lp), 3, 2, 2, 3, 0,
                   true);
    /* labels passed as images */
    cr_assert_null(dataset_load_idx(lp, lp));
    char want[768];
    snprintf(want, sizeof want,
             "idx: %s: magic 0x00000801 means 1 dimension(s), but images files have magic "
             "0x00000803 (3 dimension(s)); is this the labels file?", lp);
    cr_assert_str_eq(error_get(), want);
    /* not IDX at all */
    write_text(ip, "P5\n28 28\n255\n........................");
    cr_assert_null(dataset_load_idx(ip, lp));
    assert_error_contains("not an IDX file (magic 0x50350a32; images files start with 0x00000803)");
    /* a float IDX */
    unsigned char h[16];
    idx_header(h, 0xD03, 3, (uint32_t[]){1, 1, 1});
    tmp_dir_write_file(ip, h, 16);
    cr_assert_null(dataset_load_idx(ip, lp));
    assert_error_contains("data type 0x0d; only uint8 (0x08) is supported");
    /* cut inside the magic */
    tmp_dir_write_file(ip, h, 3);
    cr_assert_null(dataset_load_idx(ip, lp));
    assert_error_contains("inside the 4-byte magic");
}

Test(dataset, idx_count_mismatch) {
    char ip[512], lp[512], want[1200];
    write_idx_pair(in_dir("i.gz", ip, sizeof ip), in_dir("l.gz", lp, sizeof lp), 3, 2, 2, 2, 0,
                   true);
    cr_assert_null(dataset_load_idx(ip, lp));
    snprintf(want, sizeof want, "idx: %s holds 3 images but %s holds 2 labels", ip, lp);
    cr_assert_str_eq(error_get(), want);
}

Test(dataset, idx_missing_file) {
    char ip[512], lp[512], want[1100];
    write_idx_pair(in_dir("i.gz", ip, sizeof ip), in_dir("l.gz", lp, sizeof lp), 3, 2, 2, 3, 0,
                   true);
    in_dir("no-such-labels.gz", lp, sizeof lp);
    cr_assert_null(dataset_load_idx(ip, lp));
    snprintf(want, sizeof want, "idx: %s: No such file or directory", lp);
    cr_assert_str_eq(error_get(), want);
}

Test(dataset, idx_corrupt_gzip) {
    char ip[512], lp[512];
    write_idx_pair(in_dir("i.gz", ip, sizeof ip), in_dir("l.gz", lp, sizeof lp), 50, 8, 8, 50, 0,
                   true);
    FILE *f = fopen(ip, "r+b");
    cr_assert(f != NULL);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size / 2, SEEK_SET);
    unsigned char junk[8] = {0xff, 0x00, 0xff, 0x00, 0xde, 0xad, 0xbe, 0xef};
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    cr_assert_null(dataset_load_idx(ip, lp));
    cr_assert(strstr(error_get(), ip) != NULL, "%s", error_get());
}

/* ------------------------------------------------------------------------ */
/* CSV                                                                       */

Test(dataset, csv_classification) {
    char p[512];
    write_text(in_dir("d.csv", p, sizeof p),
               "\xEF\xBB\xBF" "a,\"b\",label\r\n"
               "1.5,-2,0\r\n"
               "\"3\", 4e-1 ,2\r\n"
               "0,0,1\r\n"
               "\r\n\r\n");
    Dataset *ds = dataset_load_csv(p, &(CsvOptions){.label_columns = (const char *[]){"label"},
                                                    .num_label_columns = 1});
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->n, 3);
    cr_assert_eq(ds->num_classes, 3);
    assert_tensor_values(ds->inputs, (double[]){1.5, -2, 3, 0.4f, 0, 0}, 6, 0, "features");
    cr_assert_eq(ds->inputs->shape[1], 2);
    cr_assert_eq(ds->targets->dtype, DTYPE_INT64);
    assert_tensor_values(ds->targets, (double[]){0, 2, 1}, 3, 0, "labels");
    cr_assert(strstr(ds->description, "3 samples of 2 features, label 'label', 3 classes"), "%s",
              ds->description);
    dataset_free(ds);
    /* the label defaults to the last column */
    ds = dataset_load_csv(p, NULL);
    cr_assert(ds != NULL, "%s", error_get());
    assert_tensor_values(ds->targets, (double[]){0, 2, 1}, 3, 0, "labels");
    dataset_free(ds);
}

Test(dataset, csv_regression_columns) {
    char p[512];
    write_text(in_dir("r.csv", p, sizeof p),
               "x1,y1,x2,y2,unused\n"
               "1,10,2,20,99\n"
               "3,30,4,40,99\n");
    Dataset *ds = dataset_load_csv(p, &(CsvOptions){
        .label_columns = (const char *[]){"y2", "y1"}, .num_label_columns = 2,
        .feature_columns = (const char *[]){"x2", "x1"}, .num_feature_columns = 2,
        .regression = true});
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->targets->dtype, DTYPE_FLOAT32);
    cr_assert_eq(ds->targets->ndim, 2);
    cr_assert_eq(ds->targets->shape[1], 2);
    assert_tensor_values(ds->inputs, (double[]){2, 1, 4, 3}, 4, 0, "features");
    assert_tensor_values(ds->targets, (double[]){20, 10, 40, 30}, 4, 0, "targets");
    cr_assert_eq(ds->num_classes, 0);
    dataset_free(ds);
    /* one regression target: [N, 1] */
    ds = dataset_load_csv(p, &(CsvOptions){.label_columns = (const char *[]){"y1"},
                                           .num_label_columns = 1, .regression = true});
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->targets->ndim, 2);
    cr_assert_eq(ds->targets->shape[1], 1);
    cr_assert_eq(ds->inputs->shape[1], 4);
    assert_tensor_values(ds->inputs, (double[]){1, 2, 20, 99, 3, 4, 40, 99}, 8, 0, "features");
    dataset_free(ds);
}

/* More rows than one chunk, so chunk boundaries are crossed. */
Test(dataset, csv_many_rows) {
    char p[512];
    FILE *f = fopen(in_dir("big.csv", p, sizeof p), "w");
    cr_assert(f != NULL);
    fprintf(f, "x,y,label\n");
    for (int i = 0; i < 20000; i++) fprintf(f, "%d,-%d.25,%d\n", i, i, i % 5);
    fclose(f);
    Dataset *ds = dataset_load_csv(p, NULL);
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->n, 20000);
    const float *x = tensor_data(ds->inputs);
    const int64_t *y = tensor_data(ds->targets);
    for (int i = 0; i < 20000; i++) {
        cr_assert_eq(x[2 * i], (float)i);
        cr_assert_eq(x[2 * i + 1], (float)(-i - 0.25), "row %d", i);
        cr_assert_eq(y[i], i % 5);
    }
    dataset_free(ds);
}

/* 100,000 columns (a 5 MB file): the header's duplicate check and the
 * lookup of 99,999 named feature columns are sorts and binary searches, not
 * 5e9 comparisons each (minutes under ASan, hence the timeout), and a chunk
 * holds 10 of these rows, not 8192 (3 GB), so 25 rows cross two boundaries. */
Test(dataset, csv_wide_rows, .timeout = 60) {
    enum { COLS = 100000, ROWS = 25 };
    char p[512];
    FILE *f = fopen(in_dir("wide.csv", p, sizeof p), "w");
    cr_assert(f != NULL);
    for (int c = 0; c < COLS; c++) fprintf(f, "%sc%d", c ? "," : "", c);
    for (int r = 0; r < ROWS; r++) {
        fputc('\n', f);
        for (int c = 0; c < COLS; c++) fprintf(f, "%s%d", c ? "," : "", (r + c) % 10);
    }
    fputc('\n', f);
    fclose(f);
    Dataset *ds = dataset_load_csv(p, NULL);
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->n, ROWS);
    cr_assert_eq(ds->inputs->shape[1], COLS - 1);
    const float *x = tensor_data(ds->inputs);
    const int64_t *y = tensor_data(ds->targets);
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < COLS - 1; c++)
            if (x[(int64_t)r * (COLS - 1) + c] != (float)((r + c) % 10))
                cr_assert_fail("row %d, column %d: %g", r, c, x[(int64_t)r * (COLS - 1) + c]);
        cr_assert_eq(y[r], (r + COLS - 1) % 10);
    }
    dataset_free(ds);

    /* the features named, last first */
    char(*names)[8] = malloc(COLS * sizeof *names);
    const char **features = malloc((COLS - 1) * sizeof *features);
    cr_assert(names && features);
    for (int i = 0; i < COLS - 1; i++) {
        snprintf(names[i], sizeof names[i], "c%d", COLS - 2 - i);
        features[i] = names[i];
    }
    ds = dataset_load_csv(p, &(CsvOptions){.label_columns = (const char *[]){"c0"},
                                           .num_label_columns = 1, .feature_columns = features,
                                           .num_feature_columns = COLS - 2});
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->inputs->shape[1], COLS - 2);
    x = tensor_data(ds->inputs);
    for (int r = 0; r < ROWS; r++) {
        cr_assert_eq(x[(int64_t)r * (COLS - 2)], (float)((r + COLS - 2) % 10));
        cr_assert_eq(x[(int64_t)r * (COLS - 2) + COLS - 3], (float)((r + 1) % 10));
        cr_assert_eq(((const int64_t *)tensor_data(ds->targets))[r], r % 10);
    }
    dataset_free(ds);
    cr_assert_null(dataset_load_csv(p, &(CsvOptions){.label_columns = (const char *[]){"c0"},
                                                     .num_label_columns = 1,
                                                     .feature_columns = features,
                                                     .num_feature_columns = COLS - 1}));
    assert_error_contains("column 'c0' is both a feature and a label");
    free(features);
    free(names);
}

Test(dataset, csv_not_a_number_at_line_1203) {
    char p[512], want[768];
    FILE *f = fopen(in_dir("data.csv", p, sizeof p), "w");
    cr_assert(f != NULL);
    fprintf(f, "w,x,y\n");
    for (int line = 2; line <= 1300; line++)
        if (line == 1203)
            fprintf(f, "1,abc,0\n");
        else
            fprintf(f, "%d,%d.5,%d\n", line, line, line % 3);
    fclose(f);
    cr_assert_null(dataset_load_csv(p, &(CsvOptions){.label_columns = (const char *[]){"y"},
                                                     .num_label_columns = 1}));
    snprintf(want, sizeof want, "csv: %s: line 1203, column 'x': 'abc' is not a number", p);
    cr_assert_str_eq(error_get(), want);
}

Test(dataset, csv_missing_label_column) {
    char p[512], want[768];
    write_text(in_dir("d.csv", p, sizeof p), "a,b,c\n1,2,3\n");
    cr_assert_null(dataset_load_csv(p, &(CsvOptions){.label_columns = (const char *[]){"y"},
                                                     .num_label_columns = 1}));
    snprintf(want, sizeof want,
             "csv: %s: label column 'y' is not in the header (columns: 'a', 'b', 'c')", p);
    cr_assert_str_eq(error_get(), want);
    cr_assert_null(dataset_load_csv(p, &(CsvOptions){.feature_columns = (const char *[]){"z"},
                                                     .num_feature_columns = 1}));
    assert_error_contains("feature column 'z' is not in the header");
}

Test(dataset, csv_ragged_row) {
    char p[512], want[768];
    write_text(in_dir("d.csv", p, sizeof p), "a,b,c\n1,2,3\n4,5,6\n7,8\n9,10,11\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    snprintf(want, sizeof want, "csv: %s: line 4 has 2 fields but the header has 3 columns", p);
    cr_assert_str_eq(error_get(), want);
}

/* A daemon's upload cannot make the loader hold many times its size: a
 * header of commas is refused past 2^20 columns, a row past the header's
 * fields, and the parsed numbers past the memory limit (twice them: the
 * chunks and the tensors they are copied into), at the chunk that would
 * cross it. */
Test(dataset, csv_bounded_for_a_daemon) {
    char p[512], want[768];
    in_dir("d.csv", p, sizeof p);
    FILE *f = fopen(p, "w");
    cr_assert(f != NULL);
    for (int i = 0; i < 1 << 20; i++) fputc(',', f); /* 2^20 + 1 empty names */
    fputs("\n1\n", f);
    fclose(f);
    cr_assert_null(dataset_load_csv(p, NULL));
    snprintf(want, sizeof want, "csv: %s: line 1: more than 1048576 columns", p);
    cr_assert_str_eq(error_get(), want);
    write_text(p, "a,b\n1,2\n1,2,3,4\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    snprintf(want, sizeof want, "csv: %s: line 3 has more fields than the header's 2 columns", p);
    cr_assert_str_eq(error_get(), want);
    /* a line past 64 MiB, refused as it grows (not held whole first) */
    f = fopen(p, "w");
    cr_assert(f != NULL);
    fputs("a,b\n1,", f);
    for (int i = 0; i < 64 << 20; i++) fputc('2', f);
    fputs("\n", f);
    fclose(f);
    cr_assert_null(dataset_load_csv(p, NULL));
    snprintf(want, sizeof want, "csv: %s: line 2 is 67108864 bytes or more", p);
    cr_assert_str_eq(error_get(), want);
    /* a NUL byte: not a row cut short there (a UTF-16 file has many) */
    f = fopen(p, "w");
    cr_assert(f != NULL);
    fwrite("a,b\n1,2\n3,4\0,junk\n", 1, 18, f);
    fclose(f);
    cr_assert_null(dataset_load_csv(p, NULL));
    snprintf(want, sizeof want, "csv: %s: line 3, byte 4: a NUL byte (a CSV file has none; is it "
             "UTF-16?)", p);
    cr_assert_str_eq(error_get(), want);
    /* 7 features and a label: chunks of 8192 rows of 36 bytes; 2 chunks,
     * twice, are over a MiB */
    for (int rows = 8193; rows >= 8192; rows--) {
        f = fopen(p, "w");
        cr_assert(f != NULL);
        fputs("a,b,c,d,e,f,g,label\n", f);
        for (int r = 0; r < rows; r++) fprintf(f, "%d,1,2,3,4,5,6,%d\n", r, r % 10);
        fclose(f);
        dataset_set_memory_limit(1 << 20);
        Dataset *ds = dataset_load_csv(p, NULL);
        dataset_set_memory_limit(0);
        if (rows == 8193) {
            cr_assert_null(ds);
            snprintf(want, sizeof want,
                     "csv: %s: row 8193: would take 1179648 bytes of memory, over the 1048576 "
                     "bytes one dataset may take on this server", p);
            cr_assert_str_eq(error_get(), want);
        } else {
            cr_assert_not_null(ds, "%s", error_get());
            cr_assert_eq(ds->n, 8192);
            dataset_free(ds);
        }
    }
}

Test(dataset, csv_other_errors) {
    char p[512];
    in_dir("d.csv", p, sizeof p);
    write_text(p, "a,label\n1,0\n2,1.5\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("line 3, column 'label': '1.5' is not a class label");
    write_text(p, "a,label\n1,-1\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("line 2, column 'label': '-1' is not a class label");
    write_text(p, "a,label\n1,0\n\n2,1\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("line 3 is empty");
    write_text(p, "a,label\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("no data rows");
    write_text(p, "");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("empty file");
    write_text(p, "a,label\n\"1,0\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("line 2, field 1: unterminated quote");
    write_text(p, "a,a\n1,0\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("column 'a' appears twice");
    write_text(p, "a,b,c,b,a,b\n1,2,3,4,5,0\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("line 1: column 'b' appears twice (columns 2 and 4)");
    write_text(p, "a,label\nnan,0\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("column 'a': 'nan' is not a number");
    write_text(p, "a,label\n,0\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("column 'a': '' is not a number");
    write_text(p, "a,label\n1,0\n-3.5e38,1\n");
    cr_assert_null(dataset_load_csv(p, NULL));
    assert_error_contains("line 3, column 'a': '-3.5e38' is outside float32's range (magnitudes "
                          "up to 3.403e+38)");
    write_text(p, "a,y\n1,1e39\n");
    cr_assert_null(dataset_load_csv(p, &(CsvOptions){.regression = true}));
    assert_error_contains("line 2, column 'y': '1e39' is outside float32's range");
    write_text(p, "a,y1,y2\n1,0,1\n");
    cr_assert_null(dataset_load_csv(p, &(CsvOptions){.label_columns = (const char *[]){"y1", "y2"},
                                                     .num_label_columns = 2}));
    assert_error_contains("classification takes one label column, not 2");
    in_dir("missing.csv", p, sizeof p);
    cr_assert_null(dataset_load_csv(p, NULL));
    char want[600];
    snprintf(want, sizeof want, "csv: %s: No such file or directory", p);
    cr_assert_str_eq(error_get(), want);
}

/* ------------------------------------------------------------------------ */
/* NumPy                                                                     */

static const char *npy_fixture(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "tests/fixtures/npy/%s", name);
    return buf;
}

Test(dataset, npy_files_from_numpy) {
    char a[256], b[256];
    const char *xs[] = {"x_f4.npy", "x_f8.npy", "x_f4_v2.npy"};
    for (int k = 0; k < 3; k++) {
        Dataset *ds = dataset_load_npy(npy_fixture(xs[k], a, sizeof a),
                                       npy_fixture("y_i8.npy", b, sizeof b));
        cr_assert(ds != NULL, "%s: %s", xs[k], error_get());
        cr_assert_eq(ds->inputs->dtype, DTYPE_FLOAT32);
        cr_assert_eq(ds->inputs->ndim, 2);
        cr_assert_eq(ds->inputs->shape[1], 3);
        for (int i = 0; i < 15; i++) cr_assert_eq(tensor_get(ds->inputs, i), i * 0.5 - 3);
        assert_tensor_values(ds->targets, (double[]){0, 1, 2, 3, 4}, 5, 0, "labels");
        cr_assert_eq(ds->num_classes, 5);
        dataset_free(ds);
    }
    /* uint8 images stay uint8; uint8 labels become int64; float targets [N] -> [N, 1] */
    Dataset *ds = dataset_load_npy(npy_fixture("x_u1.npy", a, sizeof a),
                                   npy_fixture("y_u1.npy", b, sizeof b));
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->inputs->dtype, DTYPE_UINT8);
    cr_assert_eq(ds->inputs->ndim, 3);
    for (int i = 0; i < 20; i++) cr_assert_eq(tensor_get(ds->inputs, i), i * 13 % 256);
    cr_assert_eq(ds->targets->dtype, DTYPE_INT64);
    dataset_free(ds);
    ds = dataset_load_npy(npy_fixture("x_f4.npy", a, sizeof a),
                          npy_fixture("y_f8.npy", b, sizeof b));
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->targets->dtype, DTYPE_FLOAT32);
    cr_assert_eq(ds->targets->ndim, 2);
    cr_assert_eq(ds->targets->shape[1], 1);
    assert_tensor_values(ds->targets, (double[]){-3, -2.5, -2, -1.5, -1}, 5, 0, "targets");
    dataset_free(ds);
    ds = dataset_load_npy(npy_fixture("x_f4.npy", a, sizeof a),
                          npy_fixture("y_f4_2.npy", b, sizeof b));
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->targets->shape[1], 2);
    dataset_free(ds);
    /* npy_load keeps the stored dtype */
    Tensor *t = npy_load(npy_fixture("x_f8.npy", a, sizeof a));
    cr_assert(t != NULL, "%s", error_get());
    cr_assert_eq(t->dtype, DTYPE_FLOAT64);
    tensor_release(t);
    t = npy_load_as(npy_fixture("x_f8.npy", a, sizeof a), DTYPE_FLOAT32);
    cr_assert(t != NULL, "%s", error_get());
    cr_assert_eq(t->dtype, DTYPE_FLOAT32);
    for (int i = 0; i < 15; i++) cr_assert_eq(tensor_get(t, i), i * 0.5 - 3);
    tensor_release(t);
    cr_assert_null(npy_load_as(npy_fixture("x_f8.npy", a, sizeof a), DTYPE_INT64));
    cr_assert(strstr(error_get(), "float64 data cannot be read as int64"), "%s", error_get());
}

Test(dataset, npy_fortran_order) {
    char a[256], b[256];
    cr_assert_null(dataset_load_npy(npy_fixture("x_fortran.npy", a, sizeof a),
                                    npy_fixture("y_i8.npy", b, sizeof b)));
    cr_assert_str_eq(error_get(), "npy: tests/fixtures/npy/x_fortran.npy: fortran_order is True; "
                                  "only C-order arrays are supported (save "
                                  "np.ascontiguousarray(a))");
}

/* A v1 .npy with the given header dict, padded as numpy pads it. */
static void write_npy(const char *path, const char *dict, const void *data, size_t n) {
    char header[256];
    int len = snprintf(header, sizeof header, "%s", dict);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    memset(header + len, ' ', (size_t)pad);
    header[len + pad] = '\n';
    int hlen = len + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL);
    fwrite(pre, 1, 10, f);
    fwrite(header, 1, (size_t)hlen, f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

/* Held as loaded, over a daemon's limit on a dataset's memory: float64
 * inputs as float32, uint8 labels as int64 (8 times their file's bytes). */
Test(dataset, npy_over_the_memory_limit) {
    char x[512], y[512], want[1200];
    double xs[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    write_npy(in_dir("x.npy", x, sizeof x),
              "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 2), }", xs, sizeof xs);
    write_npy(in_dir("y.npy", y, sizeof y),
              "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }",
              (uint8_t[]){0, 1, 2, 1}, 4);
    int held = 8 * 4 + 4 * 8;
    dataset_set_memory_limit(held - 1);
    Dataset *ds = dataset_load_npy(x, y);
    dataset_set_memory_limit(0);
    cr_assert_null(ds);
    snprintf(want, sizeof want, "npy: %s with its targets: would take %d bytes of memory, over "
             "the %d bytes one dataset may take on this server", x, held, held - 1);
    cr_assert_str_eq(error_get(), want);
    dataset_set_memory_limit(held);
    ds = dataset_load_npy(x, y);
    dataset_set_memory_limit(0);
    cr_assert_not_null(ds, "%s", error_get());
    cr_assert_eq(ds->n, 4);
    dataset_free(ds);
}

/* Values a step would fail on later, refused at loading, naming the file
 * and the element: a negative label, a NaN or a float64 beyond float32, a
 * sample of size 0. */
Test(dataset, npy_values_checked) {
    char x[512], y[512];
    float xs[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    write_npy(in_dir("x.npy", x, sizeof x),
              "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }", xs, sizeof xs);
    write_npy(in_dir("y.npy", y, sizeof y),
              "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }",
              (int64_t[]){0, 1, -1, 1}, 32);
    cr_assert_null(dataset_load_npy(x, y));
    assert_error_contains("y.npy: dataset: label of sample 2 is -1");
    write_npy(y, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }",
              (double[]){0.5, 1e300, 0, 1}, 32);
    cr_assert_null(dataset_load_npy(x, y));
    assert_error_contains("y.npy: element 1 is inf as float32, not a finite number");
    write_npy(y, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }",
              (float[]){0.5, 1, 0, 1}, 16);
    xs[5] = NAN;
    write_npy(x, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }", xs, sizeof xs);
    cr_assert_null(dataset_load_npy(x, y));
    assert_error_contains("x.npy: element 5 is nan as float32, not a finite number");
    write_npy(x, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2, 0), }", NULL, 0);
    cr_assert_null(dataset_load_npy(x, y));
    assert_error_contains("x.npy: shape [4, 2, 0]: a sample of size 0 in dimension 2");
    xs[5] = 5;
    write_npy(x, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }", xs, sizeof xs);
    Dataset *ds = dataset_load_npy(x, y);
    cr_assert(ds, "the same files made right load: %s", error_get());
    dataset_free(ds);
}

Test(dataset, npy_truncated) {
    char p[512], want[768];
    float data[12] = {0};
    write_npy(in_dir("x.npy", p, sizeof p),
              "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", data, 40);
    cr_assert_null(npy_load(p));
    snprintf(want, sizeof want,
             "npy: %s: shape [4, 3] of float32 needs 48 bytes from byte 128, but the file holds "
             "40 (it ends at byte 168)", p);
    cr_assert_str_eq(error_get(), want);
}

Test(dataset, npy_bad_headers) {
    char p[512];
    float data[4] = {0};
    in_dir("x.npy", p, sizeof p);
    write_npy(p, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", data, 16);
    cr_assert_null(npy_load(p));
    assert_error_contains("header byte 20: dtype '>f4' is not supported");
    write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", data, 16);
    cr_assert_null(npy_load(p));
    assert_error_contains("header byte 66: unknown key 'x'");
    write_npy(p, "{'descr': '<f4', 'shape': (4,), }", data, 16);
    cr_assert_null(npy_load(p));
    assert_error_contains("header lacks 'fortran_order'");
    write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (4), }", data, 16);
    cr_assert_null(npy_load(p));
    assert_error_contains("a 1-tuple needs a trailing comma");
    write_npy(p, "{'descr': '<f4', 'fortran_order': Nope, 'shape': (4,), }", data, 16);
    cr_assert_null(npy_load(p));
    assert_error_contains("header byte 44: expected True or False");
    write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }",
              data, 0);
    cr_assert_null(npy_load(p));
    assert_error_contains("shape is impossibly large");
    write_text(p, "not numpy at all");
    cr_assert_null(npy_load(p));
    assert_error_contains("not a .npy file");
    tmp_dir_write_file(p, "\x93NUMPY\x02\x00\x10\x00\x00", 11); /* v2, cut in its length */
    cr_assert_null(npy_load(p));
    assert_error_contains("file ends at byte 11, inside the preamble");
    /* inputs and targets of different lengths */
    char q[512], a[256];
    write_npy(in_dir("y.npy", q, sizeof q),
              "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
              (int64_t[]){0, 1}, 16);
    cr_assert_null(dataset_load_npy(npy_fixture("x_f4.npy", a, sizeof a), q));
    assert_error_contains("need the same first dimension");
}
