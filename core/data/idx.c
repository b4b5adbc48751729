/* idx.c - MNIST's IDX files (http://yann.lecun.com/exdb/mnist/), gzipped or raw.
 *
 * An IDX file is a 4-byte magic {0, 0, type, ndim}, ndim big-endian uint32
 * dimensions, then the data in C order. MNIST uses type 0x08 (uint8): images
 * are 0x00000803 [N, 28, 28] and labels 0x00000801 [N]. torchvision reads
 * the same files (datasets.MNIST, read_sn3_pascalvincent_tensor).
 *
 * zlib's gzread passes raw files through unchanged, so one reader serves
 * both; the gzip magic (1f 8b) is sniffed only to decide how the claimed size
 * can be checked before allocating: exactly against the file length for a
 * raw file (too short or too long), and against deflate's best ratio
 * (1032:1) for a gzipped one, so a header that lies about a huge count
 * fails without a huge allocation; a daemon's limit on a dataset's memory
 * (dataset_memory_check) bounds the true ones, a gigabyte of zeros in a
 * megabyte of gzip. After reading, the byte count actually present is
 * compared with the claim in both directions. The data is inflated
 * straight into the tensor.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/data/dataset.h"
#include "core/error.h"

#define IDX_TYPE_UINT8 0x08
#define GZIP_MAX_RATIO 1032 /* deflate cannot compress better than this */
#define READ_CHUNK (1u << 24)
#define IDX_MAX_BYTES (UINT64_C(1) << 40) /* a sanity cap on what a header may claim */
#define EXTRA_COUNTED (UINT64_C(1) << 20) /* bytes past the claim read to say how many */

typedef struct {
    const char *path;
    gzFile gz;
    bool gzipped;
    uint64_t file_size;
    int ndim;
    int64_t dims[3];
    uint64_t data_bytes; /* product of dims: what the header claims */
    int header_bytes;
} IdxFile;

static void idx_close(IdxFile *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* "10000 images of 28x28 (7840000 bytes)": what the header claims. */
static void describe_claim(const IdxFile *f, char *buf, size_t n) {
    if (f->ndim == 3)
        snprintf(buf, n, "%lld images of %lldx%lld (%llu bytes)", (long long)f->dims[0],
                 (long long)f->dims[1], (long long)f->dims[2],
                 (unsigned long long)f->data_bytes);
    else
        snprintf(buf, n, "%lld labels (%llu bytes)", (long long)f->dims[0],
                 (unsigned long long)f->data_bytes);
}

/* f->path's size, and whether it is gzipped (its first two bytes). */
static int stat_file(IdxFile *f) {
    FILE *fp = fopen(f->path, "rb");
    if (!fp) return error_set("idx: %s: %s", f->path, strerror(errno));
    unsigned char sniff[2] = {0, 0};
    size_t got = fread(sniff, 1, 2, fp);
    struct stat st;
    int stat_ok = fstat(fileno(fp), &st);
    fclose(fp);
    if (stat_ok != 0) return error_set("idx: %s: %s", f->path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return error_set("idx: %s: not a regular file", f->path);
    f->file_size = (uint64_t)st.st_size;
    f->gzipped = got == 2 && sniff[0] == 0x1f && sniff[1] == 0x8b;
    return 0;
}

/* n header bytes, the first at file byte `at` (of the raw stream);
 * `inside` names the part in errors. */
static int read_head(IdxFile *f, unsigned char *dst, int n, int at, const char *inside) {
    int got = gzread(f->gz, dst, (unsigned)n);
    if (got < 0) {
        int e;
        return error_set("idx: %s: corrupt gzip data (%s)", f->path, gzerror(f->gz, &e));
    }
    if (got < n)
        return error_set("idx: %s: file ends after %d bytes, inside the %s", f->path, at + got,
                         inside);
    return 0;
}

static uint32_t big_endian_u32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* The magic: uint8 data in want_ndim dimensions, or an error that says
 * what the file is instead. */
static int read_magic(IdxFile *f, int want_ndim, const char *what) {
    unsigned char head[4];
    if (read_head(f, head, 4, 0, "4-byte magic") != 0) return -1;
    uint32_t magic = big_endian_u32(head);
    uint32_t want = (uint32_t)(IDX_TYPE_UINT8 << 8 | want_ndim);
    if (magic == want) return 0;
    if (head[0] != 0 || head[1] != 0)
        return error_set("idx: %s: not an IDX file (magic 0x%08x; %s files start with 0x%08x)",
                         f->path, magic, what, want);
    if (head[2] != IDX_TYPE_UINT8)
        return error_set("idx: %s: magic 0x%08x has data type 0x%02x; only uint8 (0x08) is "
                         "supported", f->path, magic, head[2]);
    return error_set("idx: %s: magic 0x%08x means %d dimension(s), but %s files have magic "
                     "0x%08x (%d dimension(s))%s", f->path, magic, head[3], what, want, want_ndim,
                     want_ndim == 3 && head[3] == 1   ? "; is this the labels file?"
                     : want_ndim == 1 && head[3] == 3 ? "; is this the images file?"
                                                      : "");
}

/* The dimensions after the magic: none 0, their product (the data's
 * bytes) under IDX_MAX_BYTES. */
static int read_dims(IdxFile *f, int ndim) {
    f->ndim = ndim;
    f->header_bytes = 4 + 4 * ndim;
    unsigned char dims[4 * 3];
    char inside[32];
    snprintf(inside, sizeof inside, "%d-byte header", f->header_bytes);
    if (read_head(f, dims, 4 * ndim, 4, inside) != 0) return -1;
    uint64_t total = 1;
    for (int i = 0; i < ndim; i++) {
        uint32_t dim = big_endian_u32(dims + 4 * i);
        if (dim == 0) return error_set("idx: %s: dimension %d is 0 in the header", f->path, i);
        f->dims[i] = dim;
        if (__builtin_mul_overflow(total, (uint64_t)dim, &total) || total > IDX_MAX_BYTES)
            return error_set("idx: %s: header dimensions claim more than 2^40 bytes", f->path);
    }
    f->data_bytes = total;
    return 0;
}

/* Can the file hold what the header claims? */
static int check_claim(const IdxFile *f) {
    uint64_t header = (uint64_t)f->header_bytes;
    uint64_t present = f->file_size - (f->file_size < header ? f->file_size : header);
    bool impossible = f->gzipped ? f->data_bytes / GZIP_MAX_RATIO > f->file_size
                                 : f->data_bytes != present;
    if (!impossible) return 0;
    char claim[160];
    describe_claim(f, claim, sizeof claim);
    if (f->gzipped)
        return error_set("idx: %s: header says %s, more than a gzip file of %llu bytes can hold",
                         f->path, claim, (unsigned long long)f->file_size);
    return error_set("idx: %s: header says %s but the file holds %llu bytes after the %d-byte "
                     "header", f->path, claim, (unsigned long long)present, f->header_bytes);
}

/* Opens `path` and validates its header: magic (uint8 data with `want_ndim`
 * dims) and a data size the file can hold. `what` is "images" or "labels". */
static int idx_open(IdxFile *f, const char *path, int want_ndim, const char *what) {
    memset(f, 0, sizeof *f);
    f->path = path;
    if (stat_file(f) != 0) return -1;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return error_set("idx: %s: cannot open (%s)", path, strerror(errno ? errno : ENOMEM));
    gzbuffer(f->gz, 1u << 17);
    if (read_magic(f, want_ndim, what) == 0 && read_dims(f, want_ndim) == 0 &&
        check_claim(f) == 0)
        return 0;
    idx_close(f);
    return -1;
}

/* Reads the data into a new uint8 tensor of the header's shape and checks
 * that exactly that many bytes follow the header. Closes f. */
static Tensor *idx_read(IdxFile *f) {
    Tensor *t = tensor_empty(f->ndim, f->dims, DTYPE_UINT8, DEVICE_CPU_INIT);
    if (!t) {
        error_prefix("idx: %s", f->path);
        idx_close(f);
        return NULL;
    }
    unsigned char *p = tensor_data(t);
    uint64_t done = 0;
    int gz_err = Z_OK;
    while (done < f->data_bytes) {
        uint64_t left = f->data_bytes - done;
        unsigned chunk = left > READ_CHUNK ? READ_CHUNK : (unsigned)left;
        int n = gzread(f->gz, p + done, chunk);
        if (n <= 0) {
            gzerror(f->gz, &gz_err); /* Z_BUF_ERROR: a truncated gzip stream */
            break;
        }
        done += (uint64_t)n;
    }
    /* Anything left over means the header understates the count; counted
     * up to EXTRA_COUNTED only: a small gzip file may inflate to terabytes
     * past a small claim. */
    uint64_t extra = 0;
    if (done == f->data_bytes) {
        unsigned char scratch[1 << 12];
        int n = 0;
        while (extra < EXTRA_COUNTED && (n = gzread(f->gz, scratch, sizeof scratch)) > 0)
            extra += (uint64_t)n;
        if (extra < EXTRA_COUNTED && n < 0) gzerror(f->gz, &gz_err);
    }
    if (gz_err != Z_OK && gz_err != Z_BUF_ERROR) {
        int e;
        const char *msg = gzerror(f->gz, &e);
        error_set("idx: %s: corrupt gzip data after %llu bytes of data (%s)", f->path,
                  (unsigned long long)done, msg);
        goto fail;
    }
    if (done != f->data_bytes || extra != 0) {
        char claim[160];
        describe_claim(f, claim, sizeof claim);
        error_set("idx: %s: header says %s but the file holds %s%llu bytes after the %d-byte "
                  "header%s", f->path, claim, extra >= EXTRA_COUNTED ? "more than " : "",
                  (unsigned long long)(done + extra), f->header_bytes,
                  gz_err == Z_BUF_ERROR ? " (the gzip stream is cut short)" : "");
        goto fail;
    }
    idx_close(f);
    return t;
fail:
    idx_close(f);
    tensor_release(t);
    return NULL;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

Dataset *dataset_load_idx(const char *images_path, const char *labels_path) {
    if (!images_path || !labels_path) return error_set("idx: images and labels paths needed"), NULL;
    IdxFile fi, fl;
    if (idx_open(&fi, images_path, 3, "images") != 0) return NULL;
    if (idx_open(&fl, labels_path, 1, "labels") != 0) {
        idx_close(&fi);
        return NULL;
    }
    char what[4200];
    snprintf(what, sizeof what, "idx: %s with its labels", images_path);
    /* the labels are read as uint8, then held as int64 */
    uint64_t bytes = fi.data_bytes + fl.data_bytes * (1 + sizeof(int64_t));
    int rc = fi.dims[0] != fl.dims[0]
                 ? error_set("idx: %s holds %lld images but %s holds %lld labels", images_path,
                             (long long)fi.dims[0], labels_path, (long long)fl.dims[0])
                 : dataset_memory_check(what, bytes);
    if (rc != 0) {
        idx_close(&fi);
        idx_close(&fl);
        return NULL;
    }
    Tensor *images = idx_read(&fi);
    if (!images) {
        idx_close(&fl);
        return NULL;
    }
    Tensor *labels8 = idx_read(&fl);
    Tensor *labels = labels8 ? tensor_to_dtype(labels8, DTYPE_INT64) : NULL;
    tensor_release(labels8);
    if (!labels) {
        tensor_release(images);
        return NULL;
    }
    Dataset *ds = dataset_from_tensors(images, labels, NULL);
    if (!ds) return NULL;
    snprintf(ds->description, sizeof ds->description,
             "idx: %s + %s: %lld samples of uint8 [%lld, %lld], %d classes",
             base_name(images_path), base_name(labels_path), (long long)ds->n,
             (long long)fi.dims[1], (long long)fi.dims[2], ds->num_classes);
    return ds;
}
