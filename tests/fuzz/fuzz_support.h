/* fuzz_support.h - what the fuzz targets share: the input as files that the
 * path-taking readers open, one input split into two files, and the checks
 * every target makes after a call (a failure left a message, no descriptor
 * leaked).
 *
 * The readers take paths because they stream their files (dataset.h); a
 * memfd named by /proc/self/fd/N is a regular file to fopen, fstat and
 * gzopen alike, so they run unchanged and nothing touches the disk.
 */
#ifndef TRAIND_TESTS_FUZZ_SUPPORT_H
#define TRAIND_TESTS_FUZZ_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/data/dataset.h"

#define FUZZ_FILES 2 /* files a target may hold at once */

typedef struct {
    const uint8_t *data;
    size_t size;
} FuzzBytes;

/* Fills file `slot` (0 .. FUZZ_FILES-1) with the bytes and returns its path,
 * "/proc/self/fd/N", valid until the next call for that slot. Aborts when
 * the memfd cannot be written (a broken harness, not a finding). */
const char *fuzz_file(int slot, FuzzBytes bytes);

/* Two inputs from one: the first two bytes (little-endian) give the length
 * of the first, clamped to what is there; the rest is the second. Any input
 * splits, so every mutation stays meaningful. */
void fuzz_split(FuzzBytes in, FuzzBytes *first, FuzzBytes *second);

/* Call before the code under test, after filling its files: clears core's
 * error and notes the lowest free descriptor. */
void fuzz_begin(void);
/* Call after it. Aborts (a finding) when the call failed (`failed`) without
 * an error message, or when a descriptor opened during the call is still
 * open. `what` names the call in the report. With FUZZ_VERBOSE set in the
 * environment it prints "fuzz: WHAT: ok" or the call's error message. */
void fuzz_end(const char *what, bool failed);

/* Aborts unless a loaded dataset is what dataset.h promises: N >= 1 rows
 * in both contiguous CPU tensors, uint8 or float32 inputs, int64 labels in
 * [0, num_classes) or float32 targets, and a description. */
void fuzz_check_dataset(const Dataset *ds);

/* The two-file loaders (dataset_load_idx, dataset_load_npy) on one input:
 * splits it (fuzz_split) into two files, loads them between fuzz_begin and
 * fuzz_end (`what` names the call), checks what loaded (fuzz_check_dataset)
 * and returns it. The first file's path goes to *first_path if not NULL. */
Dataset *fuzz_load_pair(FuzzBytes in, Dataset *(*load)(const char *, const char *),
                        const char *what, const char **first_path);

/* Aborts with a message: an invariant of the code under test broke. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
