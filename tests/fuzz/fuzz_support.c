/* fuzz_support.c - memfd files, input splitting and the after-call checks
 * of the fuzz targets; see fuzz_support.h. */
#include "tests/fuzz/fuzz_support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"

static int file_fd[FUZZ_FILES];
static char file_path[FUZZ_FILES][32];
static int lowest_free_fd = -1;

void fuzz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort(); /* libFuzzer reports the deadly signal and saves the input */
}

const char *fuzz_file(int slot, FuzzBytes bytes) {
    if (slot < 0 || slot >= FUZZ_FILES) fuzz_fail("fuzz_file: slot %d", slot);
    if (!file_path[slot][0]) {
        /* created once: descriptors opened here are not the reader's leaks */
        int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
        if (fd < 0) fuzz_fail("memfd_create: %s", strerror(errno));
        file_fd[slot] = fd;
        snprintf(file_path[slot], sizeof file_path[slot], "/proc/self/fd/%d", fd);
    }
    int fd = file_fd[slot];
    if (ftruncate(fd, 0) != 0) fuzz_fail("ftruncate: %s", strerror(errno));
    size_t done = 0;
    while (done < bytes.size) {
        ssize_t n = pwrite(fd, bytes.data + done, bytes.size - done, (off_t)done);
        if (n <= 0) fuzz_fail("pwrite: %s", n < 0 ? strerror(errno) : "wrote nothing");
        done += (size_t)n;
    }
    return file_path[slot];
}

void fuzz_split(FuzzBytes in, FuzzBytes *first, FuzzBytes *second) {
    size_t n = 0, skip = in.size < 2 ? in.size : 2;
    if (in.size >= 2) n = (size_t)in.data[0] | (size_t)in.data[1] << 8;
    if (n > in.size - skip) n = in.size - skip;
    *first = (FuzzBytes){in.data + skip, n};
    *second = (FuzzBytes){in.data + skip + n, in.size - skip - n};
}

/* The descriptor the next open() would get. */
static int next_fd(void) {
    int fd = dup(STDERR_FILENO);
    if (fd < 0) fuzz_fail("dup: %s", strerror(errno));
    close(fd);
    return fd;
}

void fuzz_begin(void) {
    error_clear();
    lowest_free_fd = next_fd();
}

void fuzz_end(const char *what, bool failed) {
    if (failed && !error_get()[0]) fuzz_fail("%s failed without an error message", what);
    if (getenv("FUZZ_VERBOSE")) /* what each call said, to read a seed's or a find's fate */
        fprintf(stderr, "fuzz: %s: %s\n", what, failed ? error_get() : "ok");
    int fd = next_fd();
    if (fd != lowest_free_fd)
        fuzz_fail("%s leaked a file descriptor (the lowest free one was %d, now %d)", what,
                  lowest_free_fd, fd);
}

void fuzz_check_dataset(const Dataset *ds) {
    const Tensor *x = ds->inputs, *y = ds->targets;
    if (ds->n < 1 || x->ndim < 1 || y->ndim < 1 || x->shape[0] != ds->n || y->shape[0] != ds->n)
        fuzz_fail("dataset of %lld samples with inputs of %lld rows, targets of %lld",
                  (long long)ds->n, (long long)(x->ndim ? x->shape[0] : -1),
                  (long long)(y->ndim ? y->shape[0] : -1));
    if (!tensor_is_contiguous(x) || !tensor_is_contiguous(y) || x->device.type != DEVICE_CPU ||
        y->device.type != DEVICE_CPU)
        fuzz_fail("dataset tensors not contiguous on the CPU");
    if (x->dtype != DTYPE_UINT8 && x->dtype != DTYPE_FLOAT32)
        fuzz_fail("dataset inputs of dtype %s", dtype_name(x->dtype));
    if (y->dtype == DTYPE_INT64) {
        const int64_t *label = tensor_data(y);
        for (int64_t i = 0; i < ds->n; i++)
            if (label[i] < 0 || label[i] >= ds->num_classes)
                fuzz_fail("label %lld of row %lld outside [0, %d)", (long long)label[i],
                          (long long)i, ds->num_classes);
    } else if (y->dtype != DTYPE_FLOAT32 || ds->num_classes != 0) {
        fuzz_fail("dataset targets of dtype %s, %d classes", dtype_name(y->dtype),
                  ds->num_classes);
    }
    if (!ds->description[0]) fuzz_fail("dataset without a description");
}

Dataset *fuzz_load_pair(FuzzBytes in, Dataset *(*load)(const char *, const char *),
                        const char *what, const char **first_path) {
    FuzzBytes a, b;
    fuzz_split(in, &a, &b);
    const char *path_a = fuzz_file(0, a), *path_b = fuzz_file(1, b);
    if (first_path) *first_path = path_a;
    fuzz_begin();
    Dataset *ds = load(path_a, path_b);
    fuzz_end(what, !ds);
    if (ds) fuzz_check_dataset(ds);
    return ds;
}
