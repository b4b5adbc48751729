/* fuzz_npy.c - the NumPy .npy reader (core/data/npy.c).
 *
 * The input splits (fuzz_split) into an inputs file and a targets file,
 * loaded as a dataset; the inputs file is also read on its own as stored
 * (npy_load) and converted to uint8 (npy_load_as), the path that range-
 * checks each element. Each call fails with a message or gives what
 * dataset.h says.
 */
#include "core/data/dataset.h"
#include "tests/fuzz/fuzz_support.h"

static void load_single(const char *path) {
    fuzz_begin();
    Tensor *t = npy_load(path);
    fuzz_end("npy_load", !t);
    if (t && !tensor_is_contiguous(t)) fuzz_fail("npy_load: not contiguous");
    tensor_release(t);

    fuzz_begin();
    t = npy_load_as(path, DTYPE_UINT8);
    fuzz_end("npy_load_as uint8", !t);
    if (t && t->dtype != DTYPE_UINT8) fuzz_fail("npy_load_as: dtype %s", dtype_name(t->dtype));
    tensor_release(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *inputs_path;
    Dataset *ds = fuzz_load_pair((FuzzBytes){data, size}, dataset_load_npy, "dataset_load_npy",
                                 &inputs_path);
    dataset_free(ds);
    load_single(inputs_path);
    return 0;
}
