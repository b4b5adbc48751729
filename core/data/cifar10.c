/* cifar10.c - CIFAR-10's "binary version" (cifar-10-binary.tar.gz):
 * data_batch_1.bin ... data_batch_5.bin, test_batch.bin.
 *
 * Each file is records of 3073 bytes: the label (0..9), then the 32x32
 * image as its R, G and B planes, rows top to bottom: already the CHW
 * layout of a uint8 [3, 32, 32] sample, so a record's pixels are read
 * straight into the dataset's row. Several files are concatenated in the
 * order given. The sizes are checked (stat) before anything is allocated.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/data/dataset.h"
#include "core/error.h"

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_CLASSES 10

/* The records the file holds, from its size. */
static int64_t count_records(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return error_sys(errno, "%s", path);
    if (!S_ISREG(st.st_mode)) return error_set("%s: not a regular file", path);
    if (st.st_size == 0) return error_set("%s: an empty file", path);
    if (st.st_size % CIFAR_RECORD != 0)
        return error_set("%s: %lld bytes, not a whole number of %d-byte records (1 label byte + "
                         "%d pixel bytes)", path, (long long)st.st_size, CIFAR_RECORD,
                         CIFAR_PIXELS);
    return st.st_size / CIFAR_RECORD;
}

/* n records of the file into pixels/labels. */
static int read_records(const char *path, int64_t n, uint8_t *pixels, int64_t *labels) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return error_sys(errno, "%s", path);
    int rc = 0;
    for (int64_t r = 0; rc == 0 && r < n; r++) {
        unsigned char label;
        if (fread(&label, 1, 1, fp) != 1 ||
            fread(pixels + r * CIFAR_PIXELS, 1, CIFAR_PIXELS, fp) != CIFAR_PIXELS)
            rc = error_set("%s: cannot read record %lld (%s)", path, (long long)r,
                           ferror(fp) ? strerror(errno) : "the file got shorter");
        else if (label >= CIFAR_CLASSES)
            rc = error_set("%s: record %lld (byte %lld) has label %d; CIFAR-10's labels are "
                           "0..9", path, (long long)r, (long long)(r * CIFAR_RECORD), label);
        else
            labels[r] = label;
    }
    fclose(fp);
    return rc;
}

static void describe(Dataset *ds, const char *const *paths, int num_paths) {
    const char *base = strrchr(paths[0], '/');
    snprintf(ds->description, sizeof ds->description,
             "cifar10: %s%s: %lld images of uint8 [3, 32, 32], 10 classes",
             base ? base + 1 : paths[0], num_paths > 1 ? " + ..." : "", (long long)ds->n);
}

Dataset *dataset_load_cifar10(const char *const *paths, int num_paths) {
    if (num_paths <= 0) return error_set("cifar10: no files"), NULL;
    int64_t *counts = malloc((size_t)num_paths * sizeof *counts), total = 0;
    if (!counts) return error_set("cifar10: out of memory"), NULL;
    for (int i = 0; i < num_paths; i++) {
        if ((counts[i] = count_records(paths[i])) < 0) {
            free(counts);
            return error_prefix("cifar10"), NULL;
        }
        total += counts[i];
    }
    /* about the files' size, but within what one dataset may take all the same */
    char what[4200];
    snprintf(what, sizeof what, "cifar10: %s%s", paths[0], num_paths > 1 ? " and the rest" : "");
    if (dataset_memory_check(what, (uint64_t)total * (CIFAR_PIXELS + sizeof(int64_t))) != 0) {
        free(counts);
        return NULL;
    }
    Tensor *inputs = tensor_empty(4, (int64_t[]){total, 3, CIFAR_SIDE, CIFAR_SIDE}, DTYPE_UINT8,
                                  DEVICE_CPU_INIT);
    Tensor *targets = tensor_empty(1, (int64_t[]){total}, DTYPE_INT64, DEVICE_CPU_INIT);
    int64_t at = 0;
    for (int i = 0; inputs && targets && i < num_paths; at += counts[i++]) {
        if (read_records(paths[i], counts[i], (uint8_t *)tensor_data(inputs) + at * CIFAR_PIXELS,
                         (int64_t *)tensor_data(targets) + at) != 0) {
            tensor_release(inputs);
            inputs = NULL;
        }
    }
    free(counts);
    Dataset *ds = dataset_from_tensors(inputs, targets, NULL);
    if (!ds) return error_prefix("cifar10"), NULL;
    ds->num_classes = CIFAR_CLASSES; /* a test batch may lack a class: still 10 outputs */
    describe(ds, paths, num_paths);
    return ds;
}
