/* test_images.c - core/data/image_decode.c, imagefolder.c and cifar10.c.
 *
 * Decoding against the pixels PIL gives (tests/fixtures/gen_images.py
 * writes PNGs of every colour type and bit depth, two JPEGs, and PIL's
 * convert("RGB") / convert("L") of each); an image folder's order against
 * torchvision's ImageFolder on the committed tree; and each bad input with
 * its exact message. Folders and CIFAR-10 files for the errors are written
 * here, in a temporary directory. */
#include <criterion/criterion.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <jpeglib.h> /* after stdio.h */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/data/dataloader.h"
#include "core/data/dataset.h"
#include "core/data/image_decode.h"
#include "core/error.h"
#include "core/spec.h"
#include "tests/support/fixture.h"
#include "tests/support/tmp_dir.h"

#define IMAGES "tests/fixtures/images"

static char dir[64];

static void setup(void) { tmp_dir_make(dir, sizeof dir, "images"); }

static void teardown(void) { tmp_dir_remove(dir); }

TestSuite(images, .init = setup, .fini = teardown);

/* ---- writing test folders ---- */

static void write_bytes(const char *rel, const void *data, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *s = strchr(path + strlen(dir) + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(path, 0755);
        *s = '/';
    }
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "%s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A fixture image copied to dir/rel. */
static void copy_image(const char *fixture, const char *rel) {
    char path[512];
    snprintf(path, sizeof path, IMAGES "/%s", fixture);
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_bytes(rel, buf, n);
}

/* ---- decoding ---- */

static void check_decode(json_t *kase, const char *file, const char *key, int channels) {
    char path[256];
    snprintf(path, sizeof path, IMAGES "/%s", file);
    Image img;
    cr_assert_eq(image_decode(path, file, channels, NULL, &img), 0, "%s", error_get());
    Tensor *want = fixture_tensor(kase, key);
    cr_assert_eq(img.channels, channels);
    cr_assert_eq(img.height, want->shape[1], "%s height", file);
    cr_assert_eq(img.width, want->shape[2], "%s width", file);
    Tensor *got = tensor_from_buffer(img.pixels, 3, want->shape, DTYPE_UINT8);
    char what[160];
    snprintf(what, sizeof what, "%s as %s", file, key);
    assert_tensor_close(got, want, 0, 0, what); /* exact */
    tensor_release(got);
    tensor_release(want);
    free(img.pixels);
}

Test(images, decode_matches_pil) {
    json_t *fx = fixture_load("images");
    json_t *cases = json_object_get(fx, "cases");
    const char *file;
    json_t *kase;
    int count = 0;
    json_object_foreach(cases, file, kase) {
        check_decode(kase, file, "rgb", 3);
        check_decode(kase, file, "l", 1);
        count++;
    }
    cr_assert_eq(count, 17, "every colour type, 16-bit, palette, Adam7, two JPEGs");
    json_decref(fx);
}

static void expect_decode_error(const char *file, const char *want) {
    char path[256];
    snprintf(path, sizeof path, IMAGES "/%s", file);
    Image img;
    cr_assert_eq(image_decode(path, file, 3, NULL, &img), -1, "%s decoded", file);
    cr_assert_null(img.pixels);
    cr_assert_str_eq(error_get(), want);
}

Test(images, bad_files_named) {
    expect_decode_error("bad_text.png",
                        "bad_text.png: not a PNG or JPEG image (it starts with 63 6c 61 73)");
    expect_decode_error("bad_truncated.png",
                        "bad_truncated.png: not a valid PNG image (the file ends early "
                        "(truncated))");
    expect_decode_error("bad_ihdr_lies.png",
                        "bad_ihdr_lies.png: not a valid PNG image (Not enough image data)");
    expect_decode_error("bad_truncated.jpg",
                        "bad_truncated.jpg: the JPEG data ends early (a truncated file)");
    expect_decode_error("bad_bomb.png",
                        "bad_bomb.png: a PNG image of 20000x20000 pixels is over the limit of "
                        "67108864 pixels (a decompression bomb?)");
    expect_decode_error("missing.png", "missing.png: No such file or directory");
}

/* A progressive grey JPEG of side x side (libjpeg's simple progression:
 * 6 scans), with `empty` scans of no data added before its end, written
 * to dir/rel: each is 10 bytes, and libjpeg passes over the whole image
 * for it, warning of a bogus progression. */
static void write_scanned_jpeg(const char *rel, int side, int empty) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *mem = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &mem, &size);
    c.image_width = c.image_height = (JDIMENSION)side;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = calloc((size_t)side, 1);
    cr_assert_not_null(row);
    for (int y = 0; y < side; y++) {
        memset(row, y & 0xff, (size_t)side);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    cr_assert(size > 2 && mem[size - 2] == 0xFF && mem[size - 1] == 0xD9, "ends with EOI");
    static const unsigned char scan[] = {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01,
                                         0x00, 0x01, 0x3F, 0x00}; /* AC 1..63, first */
    size_t total = size - 2 + (size_t)empty * sizeof scan + 2;
    unsigned char *out = malloc(total), *p = out;
    cr_assert_not_null(out);
    memcpy(p, mem, size - 2), p += size - 2;
    for (int i = 0; i < empty; i++) memcpy(p, scan, sizeof scan), p += sizeof scan;
    p[0] = 0xFF, p[1] = 0xD9;
    write_bytes(rel, out, total);
    free(out);
    free(mem);
}

/* Empty scans cost a pass over the pixels each: a file whose scans times
 * pixels pass IMAGE_MAX_SCAN_PIXELS is refused at the first scan past it;
 * one within decodes, as PIL decodes it. */
Test(images, jpeg_scans_within_a_budget) {
    char path[512];
    Image img;
    /* 1024x1024: 2048 scans allowed; 6 of libjpeg's own and 2042 empty */
    write_scanned_jpeg("within.jpg", 1024, 2042);
    snprintf(path, sizeof path, "%s/within.jpg", dir);
    cr_assert_eq(image_decode(path, "within.jpg", 1, NULL, &img), 0, "%s", error_get());
    cr_assert_eq(img.width, 1024);
    cr_assert_eq(img.pixels[5 * 1024 + 7], 5, "row 5's grey");
    free(img.pixels);
    write_scanned_jpeg("over.jpg", 1024, 2043);
    snprintf(path, sizeof path, "%s/over.jpg", dir);
    cr_assert_eq(image_decode(path, "over.jpg", 1, NULL, &img), -1);
    cr_assert_null(img.pixels);
    cr_assert_str_eq(error_get(), "over.jpg: a JPEG of over 2048 scans at 1024x1024, more "
                                  "decoding than one image may take (a progressive JPEG has "
                                  "about 10)");
}

/* An image not of the size asked for is not decoded: its size, no pixels
 * and no decoding error (the truncated PNG and JPEG are never read past
 * their headers); of that size, decoded as without. */
Test(images, decode_of_another_size_stops_at_the_header) {
    static const char *const files[] = {"bad_truncated.png", "bad_truncated.jpg",
                                        "rgb8_adam7.png"};
    Image like = {.width = 1000, .height = 1000}, img;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, IMAGES "/%s", files[i]);
        cr_assert_eq(image_decode(path, files[i], 3, &like, &img), 1, "%s", files[i]);
        cr_assert_null(img.pixels);
        cr_assert(img.width > 0 && img.width != 1000 && img.height > 0, "%s", files[i]);
    }
    Image any;
    cr_assert_eq(image_decode(IMAGES "/rgb8_adam7.png", "a.png", 3, NULL, &any), 0);
    cr_assert_eq(image_decode(IMAGES "/rgb8_adam7.png", "a.png", 3, &any, &img), 0);
    cr_assert_eq(memcmp(any.pixels, img.pixels, (size_t)3 * any.width * any.height), 0);
    free(any.pixels);
    free(img.pixels);
}

/* ---- image folders ---- */

Test(images, imagefolder_order_is_torchvisions) {
    json_t *fx = fixture_load("images");
    json_t *want = json_object_get(fx, "imagefolder");
    json_t *classes = json_object_get(want, "classes"), *targets = json_object_get(want, "targets");
    json_t *values = json_object_get(want, "values");
    Dataset *ds = dataset_load_imagefolder(IMAGES "/tree", false, IMAGEFOLDER_DECODE_NOW);
    cr_assert_not_null(ds, "%s", error_get());
    cr_assert_eq(ds->n, (int64_t)json_array_size(targets));
    cr_assert_eq(ds->n, 10);
    cr_assert_eq(ds->num_classes, (int)json_array_size(classes));
    cr_assert_eq(ds->inputs->ndim, 4);
    int64_t shape[4] = {10, 3, 2, 3};
    for (int d = 0; d < 4; d++) cr_assert_eq(ds->inputs->shape[d], shape[d]);
    const int64_t *labels = tensor_data(ds->targets);
    const uint8_t *px = tensor_data(ds->inputs);
    for (int64_t i = 0; i < ds->n; i++) {
        cr_assert_eq(labels[i], json_integer_value(json_array_get(targets, (size_t)i)),
                     "sample %lld: %s", (long long)i,
                     json_string_value(json_array_get(json_object_get(want, "files"), (size_t)i)));
        for (int k = 0; k < 18; k++) /* every pixel of R, G, B is the file's value */
            cr_assert_eq(px[i * 18 + k], json_integer_value(json_array_get(values, (size_t)i)));
    }
    cr_assert_str_eq(ds->description, "imagefolder: 5 classes (.hidden, B, _c, a, a b), 10 "
                                      "images of uint8 [3, 2, 3]");
    char **names;
    int n;
    cr_assert_eq(dataset_imagefolder_classes(IMAGES "/tree", &names, &n), 0);
    cr_assert_eq(n, 5);
    for (int i = 0; i < n; i++)
        cr_assert_str_eq(names[i], json_string_value(json_array_get(classes, (size_t)i)));
    dataset_imagefolder_classes_free(names, n);
    dataset_free(ds);
    json_decref(fx);
}

Test(images, imagefolder_grayscale_and_jpeg) {
    copy_image("colour.jpg", "cat/a.jpg");
    copy_image("colour.jpg", "dog/b.JPEG");
    copy_image("colour.jpg", "dog/c.jpg");
    Dataset *ds = dataset_load_imagefolder(dir, true, IMAGEFOLDER_DECODE_NOW);
    cr_assert_not_null(ds, "%s", error_get());
    cr_assert_eq(ds->inputs->shape[0], 3);
    cr_assert_eq(ds->inputs->shape[1], 1);
    cr_assert_eq(ds->inputs->shape[2], 16);
    cr_assert_eq(ds->inputs->shape[3], 24);
    json_t *fx = fixture_load("images");
    Tensor *want = fixture_tensor(json_object_get(json_object_get(fx, "cases"), "colour.jpg"), "l");
    cr_assert_eq(memcmp(tensor_data(want), (uint8_t *)tensor_data(ds->inputs) + 2 * 16 * 24,
                        16 * 24), 0, "dog/c.jpg as L");
    const int64_t *labels = tensor_data(ds->targets);
    cr_assert(labels[0] == 0 && labels[1] == 1 && labels[2] == 1);
    tensor_release(want);
    json_decref(fx);
    dataset_free(ds);
}

/* Lazily, the folder's files are decoded as the loader gathers them: the
 * same rows and labels as decoding them all at once, in any order; a file
 * that breaks after the load fails its batch, naming it. */
Test(images, imagefolder_lazy_matches_eager) {
    copy_image("colour.jpg", "cat/a.jpg");
    copy_image("grey.jpg", "dog/b.jpg");
    copy_image("colour.jpg", "dog/c.jpg");
    copy_image("grey.jpg", "eel/d.jpg");
    Dataset *eager = dataset_load_imagefolder(dir, false, IMAGEFOLDER_DECODE_NOW);
    Dataset *lazy = dataset_load_imagefolder(dir, false, IMAGEFOLDER_DECODE_PER_BATCH);
    cr_assert(eager && lazy, "%s", error_get());
    cr_assert(lazy->producer && !lazy->inputs);
    cr_assert_eq(lazy->n, 4);
    cr_assert_eq(lazy->num_classes, 3);
    cr_assert_str_eq(lazy->description, "imagefolder: 3 classes (cat, dog, eel), 4 images of "
                                        "uint8 [3, 16, 24], decoded as loaded");
    DataLoaderOptions o = {.batch_size = 3, .shuffle = true, .seed = 2, .prefetch = 1};
    DataLoader *dl = dataloader_new(lazy, &o, NULL);
    cr_assert(dl, "%s", error_get());
    cr_assert_eq(dataloader_begin_epoch(dl, 0), 0);
    const int64_t *order = dataloader_order(dl);
    size_t row = 3 * 16 * 24;
    Batch b;
    for (int64_t at = 0; dataloader_next(dl, &b) == 1;) {
        for (int64_t i = 0; i < b.size; i++) {
            int64_t k = order[at + i];
            cr_assert_eq(memcmp((uint8_t *)tensor_data(b.inputs) + i * row,
                                (uint8_t *)tensor_data(eager->inputs) + k * row, row), 0,
                         "sample %lld", (long long)k);
            cr_assert_eq(((int64_t *)tensor_data(b.targets))[i],
                         ((int64_t *)tensor_data(eager->targets))[k], "label %lld: %lld vs %lld",
                         (long long)k, (long long)((int64_t *)tensor_data(b.targets))[i],
                         (long long)((int64_t *)tensor_data(eager->targets))[k]);
        }
        at += b.size;
        batch_release(&b);
    }
    write_bytes("dog/c.jpg", "broken", 6);
    cr_assert_eq(dataloader_begin_epoch(dl, 1), 0);
    int got;
    while ((got = dataloader_next(dl, &b)) == 1) batch_release(&b);
    cr_assert_eq(got, -1);
    cr_assert(strstr(error_get(), "dog/c.jpg: not a PNG or JPEG image") != NULL, "%s",
              error_get());
    dataloader_free(dl);
    dataset_free(eager);
    dataset_free(lazy);
}

/* Decoding every image now and checking every image (an upload's) fail
 * alike. */
static void expect_folder_error(const char *want_suffix) {
    const ImageFolderDecode modes[] = {IMAGEFOLDER_DECODE_NOW,
                                       IMAGEFOLDER_CHECK_NOW_DECODE_PER_BATCH};
    for (int m = 0; m < 2; m++) {
        Dataset *ds = dataset_load_imagefolder(dir, false, modes[m]);
        cr_assert_null(ds, "mode %d", m);
        char want[1024];
        snprintf(want, sizeof want, "imagefolder %s: %s", dir, want_suffix);
        cr_assert_str_eq(error_get(), want, "mode %d: %s", m, error_get());
    }
}

Test(images, imagefolder_errors_name_the_file) {
    Dataset *ds = dataset_load_imagefolder(dir, false, IMAGEFOLDER_DECODE_NOW);
    cr_assert_null(ds);
    char want[512];
    snprintf(want, sizeof want, "imagefolder %s: Couldn't find any class folder in it.", dir);
    cr_assert_str_eq(error_get(), want);

    copy_image("rgb8.png", "b/1.png");
    write_bytes("b/notes.txt", "skipped", 7);
    write_bytes("c/readme", "skipped", 7);
    write_bytes("a/.keep", "", 0);
    expect_folder_error("Found no valid file for the classes a, c. Supported extensions are: "
                        ".jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp");
    copy_image("rgb8.png", "a/1.png");
    copy_image("rgb8.png", "c/1.png");
    write_bytes("c/2.png", "a,b\n1,2\n", 8);
    copy_image("bad_truncated.png", "c/3.png");
    expect_folder_error("c/2.png: not a PNG or JPEG image (it starts with 61 2c 62 0a)");
    write_bytes("c/2.png", "", 0);
    expect_folder_error("c/2.png: an empty file, not a PNG or JPEG image");
    copy_image("rgb8.png", "c/2.png");
    expect_folder_error("c/3.png: not a valid PNG image (the file ends early (truncated))");
    copy_image("rgb8_adam7.png", "c/3.png");
    expect_folder_error("c/3.png: 11x11 pixels, but a/1.png (the first image) is 7x5; the images "
                        "of a folder must be of one size (resize them first)");
    copy_image("rgb8.png", "c/3.png");
    copy_image("bad_ihdr_lies.png", "b/sub/x.png");
    /* its header claims 7x20: refused before its data is read */
    expect_folder_error("b/sub/x.png: 7x20 pixels, but a/1.png (the first image) is 7x5; the "
                        "images of a folder must be of one size (resize them first)");
    unlink(strcat(strcpy(want, dir), "/b/sub/x.png"));
    /* a daemon's limit on a dataset's memory, a byte short of the decoded
     * folder's (a lazy one holds no rows) */
    dataset_set_memory_limit(5 * (3 * 7 * 5 + 8) - 1);
    ds = dataset_load_imagefolder(dir, false, IMAGEFOLDER_DECODE_NOW);
    Dataset *lazy = dataset_load_imagefolder(dir, false, IMAGEFOLDER_CHECK_NOW_DECODE_PER_BATCH);
    dataset_set_memory_limit(0);
    cr_assert_null(ds);
    snprintf(want, sizeof want, "imagefolder %s: 5 images of 7x5: would take 565 bytes of "
             "memory, over the 564 bytes one dataset may take on this server", dir);
    cr_assert_str_eq(error_get(), want);
    cr_assert_not_null(lazy);
    dataset_free(lazy);
    ds = dataset_load_imagefolder(dir, false, IMAGEFOLDER_DECODE_NOW);
    cr_assert_not_null(ds, "%s", error_get());
    cr_assert_eq(ds->n, 5);
    cr_assert_eq(ds->num_classes, 3);
    dataset_free(ds);
}

/* ---- CIFAR-10 ---- */

/* n records, record r: label (r * 3) % 10 (or `bad_label` for the last),
 * pixel k = (r + k) % 251. */
static void write_cifar(const char *rel, int n, int bad_label, int extra) {
    size_t size = (size_t)n * 3073 + (size_t)extra;
    uint8_t *buf = calloc(size ? size : 1, 1);
    cr_assert_not_null(buf);
    for (int r = 0; r < n; r++) {
        buf[r * 3073] = (uint8_t)(r == n - 1 && bad_label ? bad_label : r * 3 % 10);
        for (int k = 0; k < 3072; k++) buf[r * 3073 + 1 + k] = (uint8_t)((r + k) % 251);
    }
    write_bytes(rel, buf, size);
    free(buf);
}

Test(images, cifar10_reads_records) {
    write_cifar("data_batch_1.bin", 4, 0, 0);
    write_cifar("data_batch_2.bin", 2, 0, 0);
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/data_batch_1.bin", dir);
    snprintf(b, sizeof b, "%s/data_batch_2.bin", dir);
    Dataset *ds = dataset_load_cifar10((const char *const[]){a, b}, 2);
    cr_assert_not_null(ds, "%s", error_get());
    cr_assert_eq(ds->n, 6);
    cr_assert_eq(ds->num_classes, 10);
    int64_t shape[4] = {6, 3, 32, 32};
    for (int d = 0; d < 4; d++) cr_assert_eq(ds->inputs->shape[d], shape[d]);
    const int64_t *labels = tensor_data(ds->targets);
    const uint8_t *px = tensor_data(ds->inputs);
    int64_t want_labels[6] = {0, 3, 6, 9, 0, 3};
    for (int i = 0; i < 6; i++) {
        int r = i < 4 ? i : i - 4;
        cr_assert_eq(labels[i], want_labels[i]);
        for (int k = 0; k < 3072; k += 97) cr_assert_eq(px[i * 3072 + k], (r + k) % 251);
        /* the G plane starts at 1024: (r + 1024) % 251 */
        cr_assert_eq(px[i * 3072 + 1024], (r + 1024) % 251);
    }
    cr_assert_str_eq(ds->description,
                     "cifar10: data_batch_1.bin + ...: 6 images of uint8 [3, 32, 32], 10 classes");
    dataset_free(ds);
}

typedef struct {
    int threads;
    atomic_bool done;
} Reserve;

static void *reserve_big(void *arg) {
    Reserve *r = arg;
    omp_set_num_threads(8); /* OpenMP's count is the thread's own */
    r->threads = dataset_imagefolder_decode_reserve(8192, 8192, 3, 100);
    atomic_store(&r->done, true);
    return NULL;
}

/* Decoding threads come from one memory limit that every folder decoding
 * at once shares (832 MB a decoding of 64 Mpixel RGB): fewer threads where
 * it holds fewer decodings, no more than the images; a second folder of
 * large images waits while the first holds what would fit, and gets it
 * when it is given back. */
Test(images, imagefolder_decode_threads_within_the_memory_limit) {
    omp_set_num_threads(8);
    const uint64_t each = (uint64_t)8192 * 8192 * (4 + 6 + 3);
    cr_assert_eq(dataset_imagefolder_decode_reserve(8192, 8192, 3, 100), 8, "no limit: OpenMP's");
    dataset_imagefolder_decode_release(8, 8192, 8192, 3);
    cr_assert_eq(dataset_imagefolder_decode_reserve(8192, 8192, 3, 2), 2, "no more than the images");
    dataset_imagefolder_decode_release(2, 8192, 8192, 3);
    dataset_set_memory_limit(3 * each + each / 2);
    int first = dataset_imagefolder_decode_reserve(8192, 8192, 3, 100);
    cr_assert_eq(first, 3);
    cr_assert_eq(dataset_imagefolder_decode_reserve(28, 28, 1, 100), 8,
                 "small images: OpenMP's, in what is left");
    dataset_imagefolder_decode_release(8, 28, 28, 1);
    Reserve second = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, reserve_big, &second), 0);
    usleep(200 * 1000);
    cr_assert(!atomic_load(&second.done), "waits while the first holds the room");
    dataset_imagefolder_decode_release(first, 8192, 8192, 3);
    pthread_join(t, NULL);
    cr_assert_eq(second.threads, 3, "then gets it");
    dataset_imagefolder_decode_release(second.threads, 8192, 8192, 3);
    dataset_set_memory_limit(each - 1);
    int alone = dataset_imagefolder_decode_reserve(8192, 8192, 3, 100);
    cr_assert_eq(alone, 1, "one at least, when nothing else is held");
    dataset_imagefolder_decode_release(alone, 8192, 8192, 3);
    dataset_set_memory_limit(0);
}

/* A file written by write_cifar fails to load with "cifar10: PATH: WANT". */
static void expect_cifar_error(const char *rel, int n, int bad_label, int extra, const char *want) {
    char p[128], msg[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    write_cifar(rel, n, bad_label, extra);
    cr_assert_null(dataset_load_cifar10((const char *const[]){p}, 1));
    snprintf(msg, sizeof msg, "cifar10: %s: %s", p, want);
    cr_assert_str_eq(error_get(), msg);
}

Test(images, cifar10_errors_name_the_file) {
    expect_cifar_error("short.bin", 2, 0, 5, "6151 bytes, not a whole number of 3073-byte records "
                                             "(1 label byte + 3072 pixel bytes)");
    expect_cifar_error("label.bin", 3, 12, 0, "record 2 (byte 6146) has label 12; CIFAR-10's "
                                              "labels are 0..9");
    expect_cifar_error("empty.bin", 0, 0, 0, "an empty file");
    /* 3 images and their labels held: 3 * (3072 + 8) bytes */
    char p[128];
    snprintf(p, sizeof p, "%s/label.bin", dir);
    write_cifar("label.bin", 3, 0, 0);
    dataset_set_memory_limit(3 * 3080 - 1);
    Dataset *ds = dataset_load_cifar10((const char *const[]){p}, 1);
    dataset_set_memory_limit(0);
    cr_assert_null(ds);
    char want[512];
    snprintf(want, sizeof want, "cifar10: %s: would take 9240 bytes of memory, over the 9239 "
             "bytes one dataset may take on this server", p);
    cr_assert_str_eq(error_get(), want);
}

/* ---- job spec sources ---- */

static JobSpec *parse_in(const char *data, const char *base) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"data\": %s, \"model\": [{\"type\": \"Flatten\"}, {\"type\": \"Linear\", "
             "\"in_features\": 18, \"out_features\": 5}], \"loss\": {\"type\": "
             "\"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1}, "
             "\"epochs\": 1, \"batch_size\": 4}", data);
    return job_spec_parse_in(text, strlen(text), base);
}

Test(images, spec_sources_resolve_and_load) {
    JobSpec *s = parse_in("{\"train\": {\"format\": \"imagefolder\", \"root\": \"tree\", "
                          "\"grayscale\": true}, \"transforms\": [{\"type\": \"ToTensor\"}]}",
                          IMAGES);
    cr_assert_not_null(s, "%s", error_get());
    cr_assert_eq(s->train.kind, SPEC_SOURCE_IMAGEFOLDER);
    cr_assert_str_eq(s->train.root, IMAGES "/tree");
    cr_assert(s->train.grayscale);
    Dataset *ds = job_spec_load_source(s, &s->train);
    cr_assert_not_null(ds, "%s", error_get());
    cr_assert(ds->producer, "a job's folder is decoded as it is loaded");
    cr_assert_eq(ds->input.shape[0], 1);
    cr_assert_eq(ds->n, 10);
    dataset_free(ds);
    job_spec_free(s);

    write_cifar("b1.bin", 2, 0, 0);
    write_cifar("b2.bin", 1, 0, 0);
    char data[256];
    snprintf(data, sizeof data, "{\"train\": {\"format\": \"cifar10\", \"files\": [\"b1.bin\", "
             "\"%s/b2.bin\"]}}", dir);
    s = parse_in(data, dir);
    cr_assert_not_null(s, "%s", error_get());
    cr_assert_eq(s->train.kind, SPEC_SOURCE_CIFAR10);
    cr_assert_eq(s->train.num_files, 2);
    char want[128];
    snprintf(want, sizeof want, "%s/b1.bin", dir);
    cr_assert_str_eq(s->train.files[0], want);
    ds = job_spec_load_source(s, &s->train);
    cr_assert_not_null(ds, "%s", error_get());
    cr_assert_eq(ds->n, 3);
    dataset_free(ds);
    job_spec_free(s);

    cr_assert_null(parse_in("{\"train\": {\"format\": \"cifar10\"}}", dir));
    cr_assert_str_eq(error_get(), "data.train.files: required");
    cr_assert_null(parse_in("{\"train\": {\"format\": \"cifar10\", \"files\": []}}", dir));
    cr_assert_str_eq(error_get(), "data.train.files: must not be empty");
    cr_assert_null(parse_in("{\"train\": {\"format\": \"cifar10\", \"files\": [1]}}", dir));
    cr_assert_str_eq(error_get(), "data.train.files[0]: expected a string, got number");
    cr_assert_null(parse_in("{\"train\": {\"format\": \"imagefolder\", \"root\": \"x\", "
                            "\"resize\": 3}}", dir));
    cr_assert_str_eq(error_get(), "data.train.resize: unknown field (an imagefolder source takes "
                                  "format, root, grayscale)");
    s = parse_in("{\"train\": {\"format\": \"imagefolder\", \"root\": \"nowhere\"}}", dir);
    cr_assert_not_null(s, "%s", error_get());
    cr_assert_null(job_spec_load_source(s, &s->train));
    snprintf(data, sizeof data, "data.train: imagefolder: %s/nowhere: No such file or directory",
             dir);
    cr_assert_str_eq(error_get(), data);
    job_spec_free(s);
}
