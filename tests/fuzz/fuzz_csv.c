/* fuzz_csv.c - the CSV dataset reader (core/data/csv.c).
 *
 * Byte 0 picks the options the spec could pass (bit 0: regression; bit 1:
 * label_column "y", or with bit 0 also ["y", "z"]; bit 2: feature_columns
 * ["a", "b"]); the rest is the file. A load either fails with a message or
 * gives a dataset as dataset.h describes, every value finite (the reader
 * refuses "nan", "inf" and what overflows float32).
 */
#include <math.h>

#include "core/data/dataset.h"
#include "tests/fuzz/fuzz_support.h"

static const char *const one_label[] = {"y"}, *const two_labels[] = {"y", "z"};
static const char *const features[] = {"a", "b"};

static void check_finite(const Tensor *t) {
    if (t->dtype != DTYPE_FLOAT32) return;
    const float *v = tensor_data(t);
    for (int64_t i = 0; i < tensor_numel(t); i++)
        if (!isfinite(v[i])) fuzz_fail("csv: element %lld is %g", (long long)i, v[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned mode = data[0];
    CsvOptions opts = {.regression = mode & 1};
    if (mode & 2) {
        opts.label_columns = mode & 1 ? two_labels : one_label;
        opts.num_label_columns = mode & 1 ? 2 : 1;
    }
    if (mode & 4) {
        opts.feature_columns = features;
        opts.num_feature_columns = 2;
    }
    const char *path = fuzz_file(0, (FuzzBytes){data + 1, size - 1});
    fuzz_begin();
    Dataset *ds = dataset_load_csv(path, &opts);
    fuzz_end("dataset_load_csv", !ds);
    if (ds) {
        fuzz_check_dataset(ds);
        check_finite(ds->inputs);
        check_finite(ds->targets);
    }
    dataset_free(ds);
    return 0;
}
