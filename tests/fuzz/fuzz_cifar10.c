/* fuzz_cifar10.c - the CIFAR-10 binary reader (core/data/cifar10.c).
 *
 * The input splits (fuzz_split) into two batch files, loaded together (in
 * that order) and the first alone. A load either fails with a message or
 * gives one uint8 [3, 32, 32] image and one label per 3073-byte record of
 * the files, each exactly the record's bytes, and 10 classes.
 */
#include <string.h>

#include "core/data/dataset.h"
#include "tests/fuzz/fuzz_support.h"

#define RECORD 3073

/* The dataset holds the records of `files` in order, byte for byte. */
static void check_records(const Dataset *ds, const FuzzBytes *files, int n) {
    fuzz_check_dataset(ds);
    const Tensor *x = ds->inputs;
    if (x->dtype != DTYPE_UINT8 || x->ndim != 4 || x->shape[1] != 3 || x->shape[2] != 32 ||
        x->shape[3] != 32 || ds->num_classes != 10)
        fuzz_fail("cifar10: inputs of dtype %s, %d dims, %d classes", dtype_name(x->dtype),
                  x->ndim, ds->num_classes);
    const uint8_t *pixels = tensor_data(x);
    const int64_t *labels = tensor_data(ds->targets);
    int64_t row = 0;
    for (int f = 0; f < n; f++)
        for (size_t at = 0; at + RECORD <= files[f].size; at += RECORD, row++) {
            if (row >= ds->n)
                fuzz_fail("cifar10: %lld rows, the files hold more", (long long)ds->n);
            if (labels[row] != files[f].data[at] ||
                memcmp(pixels + row * (RECORD - 1), files[f].data + at + 1, RECORD - 1) != 0)
                fuzz_fail("cifar10: row %lld is not record %zu of file %d", (long long)row,
                          at / RECORD, f);
        }
    if (row != ds->n) fuzz_fail("cifar10: %lld rows for %lld records", (long long)ds->n,
                                (long long)row);
}

static void load(const char *const *paths, const FuzzBytes *files, int n) {
    fuzz_begin();
    Dataset *ds = dataset_load_cifar10(paths, n);
    fuzz_end("dataset_load_cifar10", !ds);
    if (ds) check_records(ds, files, n);
    dataset_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FuzzBytes files[2];
    fuzz_split((FuzzBytes){data, size}, &files[0], &files[1]);
    const char *paths[2] = {fuzz_file(0, files[0]), fuzz_file(1, files[1])};
    load(paths, files, 2);
    load(paths, files, 1);
    return 0;
}
