/* fuzz_idx.c - the MNIST IDX reader (core/data/idx.c), raw and gzipped.
 *
 * The input splits (fuzz_split) into the images file and the labels file.
 * A load either fails with a message or gives uint8 [N, H, W] images and
 * N labels (dataset.h).
 */
#include "core/data/dataset.h"
#include "tests/fuzz/fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Dataset *ds = fuzz_load_pair((FuzzBytes){data, size}, dataset_load_idx, "dataset_load_idx",
                                 NULL);
    if (ds && (ds->inputs->dtype != DTYPE_UINT8 || ds->inputs->ndim != 3))
        fuzz_fail("idx: images of dtype %s, %d dims", dtype_name(ds->inputs->dtype),
                  ds->inputs->ndim);
    dataset_free(ds);
    return 0;
}
