/* safetensors.h - reading and writing .safetensors files (huggingface format).
 *
 * A file is: u64 little-endian N, then N bytes of JSON header
 *   {"name": {"dtype": "F32", "shape": [3, 4], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * padded with spaces to a multiple of 8, then the data buffer. Offsets are
 * relative to the buffer; tensors are little-endian, C order. This is what
 * safetensors.torch.save_file writes, so model checkpoints written here load
 * in PyTorch with load_state_dict(strict=True) and the other way round.
 *
 * The file maps to a TensorDict (core/tensor_dict.h) and an optional list of
 * string key/value pairs (the "__metadata__" object; trainer checkpoints keep
 * step and epoch there). Supported dtypes: F32, F64, I64, U8, i.e. traind's
 * four; any other dtype in a file is an error naming the tensor.
 *
 * Loading validates everything the header claims against the file before a
 * byte of data is trusted (a lying header is an error saying what and where,
 * never a crash) and reads each tensor straight into its own storage, so peak
 * memory is the tensors plus the header. Saving is atomic: a temporary file
 * beside the target, fsynced, renamed over it, then the directory fsynced.
 */
#ifndef TRAIND_CORE_IO_SAFETENSORS_H
#define TRAIND_CORE_IO_SAFETENSORS_H

#include "core/tensor_dict.h"

/* Headers above this are refused on load (the reference implementation's limit). */
#define SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u)

/* An ordered list of string pairs: the file's "__metadata__". Keys are unique
 * (set replaces); keys and values are copied. */
typedef struct {
    int count, capacity;
    char **keys;
    char **values;
} SafetensorsMeta;

void safetensors_meta_init(SafetensorsMeta *m);
void safetensors_meta_free(SafetensorsMeta *m); /* m reusable after init */
int safetensors_meta_set(SafetensorsMeta *m, const char *key, const char *value);
const char *safetensors_meta_get(const SafetensorsMeta *m, const char *key); /* or NULL */

/* Reads every tensor of `path` into `out` (an initialised TensorDict) as new
 * contiguous CPU tensors, in the order of their data in the file; entries
 * whose names are already in `out` are replaced. If `meta` is not NULL the
 * file's metadata pairs are added to it. Returns 0, or -1 with an error that
 * names the file and, where it applies, the tensor and the byte offset; on
 * failure `out` and `meta` are unchanged. */
int safetensors_load(const char *path, TensorDict *out, SafetensorsMeta *meta);

/* Writes `dict` (in dict order, offsets increasing) and `meta` (may be NULL
 * or empty) to `path`, replacing it atomically: the data goes to
 * "<path>.tmp.<pid>.<n>" in the same directory, is fsynced and renamed over
 * `path`, then the directory is fsynced. Tensors may be on any device and
 * have any strides. Returns 0, or -1 with an error; on failure no temporary
 * file is left behind and `path` is untouched, unless only the final fsync of
 * the directory failed (the new file is then in place but maybe not durable). */
int safetensors_save(const char *path, const TensorDict *dict, const SafetensorsMeta *meta);

#endif
