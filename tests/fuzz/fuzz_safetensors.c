/* fuzz_safetensors.c - the .safetensors reader (core/io/safetensors.c).
 *
 * The input is the file, loaded as train_checkpoint.c loads checkpoints
 * and init weights: into an empty dict and metadata. A load either succeeds, every
 * tensor contiguous on the CPU, or fails with a message and leaves both
 * empty (safetensors.h: on failure they are unchanged).
 */
#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(0, (FuzzBytes){data, size});
    TensorDict dict;
    SafetensorsMeta meta;
    tensor_dict_init(&dict);
    safetensors_meta_init(&meta);

    fuzz_begin();
    int rc = safetensors_load(path, &dict, &meta);
    fuzz_end("safetensors_load", rc != 0);
    if (rc != 0 && (dict.count != 0 || meta.count != 0))
        fuzz_fail("safetensors_load failed but left %d tensors and %d metadata pairs",
                  dict.count, meta.count);
    for (int i = 0; i < dict.count; i++)
        if (!tensor_is_contiguous(dict.tensors[i]) ||
            dict.tensors[i]->device.type != DEVICE_CPU)
            fuzz_fail("safetensors: tensor '%s' not contiguous on the CPU", dict.names[i]);

    tensor_dict_free(&dict);
    safetensors_meta_free(&meta);
    return 0;
}
