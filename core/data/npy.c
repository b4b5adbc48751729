/* npy.c - NumPy .npy files (numpy.lib.format, versions 1.0, 2.0 and 3.0).
 *
 * Layout: "\x93NUMPY", major, minor, the header length (uint16 LE for 1.x,
 * uint32 LE for 2.x/3.x), then the header, an ASCII Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }
 * padded with spaces to a 64-byte boundary and ended by '\n', then the data.
 * The dict is read by a tiny strict parser that knows exactly those three
 * keys; anything else is an error giving the byte offset in the file.
 *
 * Only what traind's tensors can hold is accepted: '<f4' '<f8' '|u1' '<i8'
 * in C order (a Fortran-order array would need a transpose nobody asked
 * for). The data size the header implies must equal what follows it in the
 * file. Data is read straight into the tensor, or, when converting (float64
 * to float32), through a small buffer, so the file is never held twice.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/data/dataset.h"
#include "core/error.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c reads little-endian data straight into tensors"
#endif

#define NPY_MAX_HEADER (1 << 20)
#define NPY_CONVERT_ITEMS 65536

typedef struct {
    const char *path;
    FILE *fp;
    DType dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t numel;
    uint64_t data_offset; /* where the data starts in the file */
} NpyFile;

/* ---- the header dict ---- */

typedef struct {
    const char *text; /* the header, NUL-terminated */
    size_t pos;
    uint64_t base; /* file offset of text[0] */
    const char *path;
} Parser;

static int parse_error(Parser *p, const char *what) {
    return error_set("npy: %s: header byte %llu: %s", p->path,
                     (unsigned long long)(p->base + p->pos), what);
}

static void skip_space(Parser *p) {
    while (p->text[p->pos] == ' ') p->pos++;
}

static int expect(Parser *p, char c) {
    skip_space(p);
    if (p->text[p->pos] != c) {
        char msg[64];
        if (p->text[p->pos] >= 0x20 && p->text[p->pos] < 0x7f)
            snprintf(msg, sizeof msg, "expected '%c', found '%c'", c, p->text[p->pos]);
        else
            snprintf(msg, sizeof msg, "expected '%c', found byte 0x%02x", c,
                     (unsigned char)p->text[p->pos]);
        return parse_error(p, msg);
    }
    p->pos++;
    return 0;
}

/* A quoted Python string without escapes; copied into out. */
static int parse_string(Parser *p, char *out, size_t n) {
    skip_space(p);
    char q = p->text[p->pos];
    if (q != '\'' && q != '"') return parse_error(p, "expected a quoted string");
    size_t start = ++p->pos;
    while (p->text[p->pos] && p->text[p->pos] != q) {
        if (p->text[p->pos] == '\\') return parse_error(p, "escapes are not supported");
        p->pos++;
    }
    if (!p->text[p->pos]) return parse_error(p, "unterminated string");
    size_t len = p->pos - start;
    if (len >= n) return parse_error(p, "string too long");
    memcpy(out, p->text + start, len);
    out[len] = '\0';
    p->pos++;
    return 0;
}

static int parse_bool(Parser *p, bool *out) {
    skip_space(p);
    if (strncmp(p->text + p->pos, "True", 4) == 0) return p->pos += 4, *out = true, 0;
    if (strncmp(p->text + p->pos, "False", 5) == 0) return p->pos += 5, *out = false, 0;
    return parse_error(p, "expected True or False");
}

/* "()", "(3,)", "(3, 4)", "(3, 4,)" */
static int parse_shape(Parser *p, NpyFile *f) {
    if (expect(p, '(') != 0) return -1;
    f->ndim = 0;
    for (;;) {
        skip_space(p);
        if (p->text[p->pos] == ')') break;
        if (p->text[p->pos] < '0' || p->text[p->pos] > '9')
            return parse_error(p, "expected a dimension (a non-negative integer)");
        if (f->ndim == TENSOR_MAX_DIMS) return parse_error(p, "more than 8 dimensions");
        int64_t v = 0;
        while (p->text[p->pos] >= '0' && p->text[p->pos] <= '9') {
            if (v > (INT64_MAX - 9) / 10) return parse_error(p, "dimension too large");
            v = v * 10 + (p->text[p->pos++] - '0');
        }
        if (p->text[p->pos] == 'L') p->pos++; /* Python 2 longs */
        f->shape[f->ndim++] = v;
        skip_space(p);
        if (p->text[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->text[p->pos] != ')') return parse_error(p, "expected ',' or ')' in the shape");
        if (f->ndim == 1) return parse_error(p, "a 1-tuple needs a trailing comma: (n,)");
    }
    p->pos++;
    return 0;
}

static int parse_header(Parser *p, NpyFile *f) {
    bool seen_descr = false, seen_order = false, seen_shape = false, fortran = false;
    char descr[16] = "";
    if (expect(p, '{') != 0) return -1;
    for (;;) {
        skip_space(p);
        if (p->text[p->pos] == '}') break;
        size_t key_pos = p->pos;
        char key[32];
        if (parse_string(p, key, sizeof key) != 0 || expect(p, ':') != 0) return -1;
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            skip_space(p);
            size_t at = p->pos;
            if (parse_string(p, descr, sizeof descr) != 0) return -1;
            seen_descr = true;
            if (strcmp(descr, "<f4") == 0) f->dtype = DTYPE_FLOAT32;
            else if (strcmp(descr, "<f8") == 0) f->dtype = DTYPE_FLOAT64;
            else if (strcmp(descr, "|u1") == 0 || strcmp(descr, "<u1") == 0) f->dtype = DTYPE_UINT8;
            else if (strcmp(descr, "<i8") == 0) f->dtype = DTYPE_INT64;
            else {
                char msg[96];
                snprintf(msg, sizeof msg, "dtype '%s' is not supported (use '<f4', '<f8', '|u1' "
                         "or '<i8')", descr);
                p->pos = at;
                return parse_error(p, msg);
            }
        } else if (strcmp(key, "fortran_order") == 0 && !seen_order) {
            if (parse_bool(p, &fortran) != 0) return -1;
            seen_order = true;
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            if (parse_shape(p, f) != 0) return -1;
            seen_shape = true;
        } else {
            char msg[80];
            p->pos = key_pos;
            snprintf(msg, sizeof msg, "%s key '%.32s'",
                     strcmp(key, "descr") && strcmp(key, "fortran_order") && strcmp(key, "shape")
                         ? "unknown" : "repeated", key);
            return parse_error(p, msg);
        }
        skip_space(p);
        if (p->text[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->text[p->pos] != '}') return parse_error(p, "expected ',' or '}'");
    }
    p->pos++;
    skip_space(p);
    if (p->text[p->pos] != '\n' || p->text[p->pos + 1] != '\0')
        return parse_error(p, "the header must end with spaces and a newline");
    if (!seen_descr || !seen_order || !seen_shape)
        return error_set("npy: %s: header lacks '%s'", p->path,
                         !seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape");
    if (fortran)
        return error_set("npy: %s: fortran_order is True; only C-order arrays are supported "
                         "(save np.ascontiguousarray(a))", p->path);
    return 0;
}

/* ---- the file ---- */

/* The preamble: magic, version, and where the header is and how long. */
static int read_preamble(NpyFile *f, uint64_t *header_at, uint64_t *header_len) {
    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, f->fp);
    if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return error_set("npy: %s: not a .npy file (it does not start with \\x93NUMPY)", f->path);
    int major = pre[6];
    if (major == 1) {
        *header_len = pre[8] | (uint64_t)pre[9] << 8;
        *header_at = 10;
        return 0;
    }
    if (major != 2 && major != 3)
        return error_set("npy: %s: byte 6: format version %d.%d is not supported (1.0, 2.0, "
                         "3.0 are)", f->path, major, pre[7]);
    got += fread(pre + 10, 1, 2, f->fp);
    if (got != 12)
        return error_set("npy: %s: file ends at byte %zu, inside the preamble", f->path, got);
    *header_len = pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
                  (uint64_t)pre[11] << 24;
    *header_at = 12;
    return 0;
}

/* The header's text (header_len bytes at header_at, the file's position),
 * parsed into f. */
static int read_header(NpyFile *f, uint64_t header_at, uint64_t header_len,
                       uint64_t file_size) {
    if (header_len > NPY_MAX_HEADER)
        return error_set("npy: %s: header of %llu bytes is implausibly large", f->path,
                         (unsigned long long)header_len);
    if (header_at + header_len > file_size)
        return error_set("npy: %s: header of %llu bytes from byte %llu runs past the end of "
                         "the file (%llu bytes)", f->path, (unsigned long long)header_len,
                         (unsigned long long)header_at, (unsigned long long)file_size);
    char *text = malloc(header_len + 1);
    if (!text) return error_set("npy: %s: out of memory", f->path);
    if (fread(text, 1, header_len, f->fp) != header_len) {
        free(text);
        return error_set("npy: %s: read error in the header: %s", f->path, strerror(errno));
    }
    text[header_len] = '\0';
    /* a NUL byte is reported where it stands; the parser starts at 0 */
    size_t nul = strlen(text);
    Parser p = {text, nul == header_len ? 0 : nul, header_at, f->path};
    int rc = nul == header_len ? parse_header(&p, f) : parse_error(&p, "NUL byte in the header");
    free(text);
    return rc;
}

/* The data the header's shape and dtype need fills the file to its end. */
static int check_data_size(NpyFile *f, uint64_t file_size) {
    if (!shape_fits(f->ndim, f->shape, (uint64_t)1 << 56))
        return error_set("npy: %s: shape is impossibly large", f->path);
    uint64_t numel = 1;
    for (int i = 0; i < f->ndim; i++) numel *= (uint64_t)f->shape[i];
    f->numel = (int64_t)numel;
    uint64_t need = numel * dtype_size(f->dtype), have = file_size - f->data_offset;
    if (need == have) return 0;
    char shape[160];
    shape_str(f->ndim, f->shape, shape, sizeof shape);
    return error_set("npy: %s: shape %s of %s needs %llu bytes from byte %llu, but the file "
                     "holds %llu (it ends at byte %llu)", f->path, shape, dtype_name(f->dtype),
                     (unsigned long long)need, (unsigned long long)f->data_offset,
                     (unsigned long long)have, (unsigned long long)file_size);
}

static int npy_open(NpyFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = path;
    if (!path) return error_set("npy: no path given");
    if (!(f->fp = fopen(path, "rb"))) return error_set("npy: %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f->fp), &st) != 0 || !S_ISREG(st.st_mode))
        return error_set("npy: %s: not a regular file", path);
    uint64_t file_size = (uint64_t)st.st_size, header_at = 0, header_len = 0;
    if (read_preamble(f, &header_at, &header_len) != 0) return -1;
    if (read_header(f, header_at, header_len, file_size) != 0) return -1;
    f->data_offset = header_at + header_len;
    return check_data_size(f, file_size);
}

static void npy_close(NpyFile *f) {
    if (f->fp) fclose(f->fp);
    f->fp = NULL;
}

/* Reads the data as `dtype` into a new tensor of `ndim`/`shape` (the file's
 * shape unless given; same numel). Closes f. */
static Tensor *npy_read(NpyFile *f, DType dtype, int ndim, const int64_t *shape) {
    Tensor *t = NULL;
    void *buf = NULL;
    if (!shape) {
        ndim = f->ndim;
        shape = f->shape;
    }
    if (f->dtype != dtype && !dtype_is_float(dtype) && dtype_is_float(f->dtype)) {
        error_set("npy: %s: %s data cannot be read as %s", f->path, dtype_name(f->dtype),
                  dtype_name(dtype));
        goto done;
    }
    if (!(t = tensor_empty(ndim, shape, dtype, DEVICE_CPU_INIT))) {
        error_prefix("npy: %s", f->path);
        goto done;
    }
    size_t isz = dtype_size(f->dtype);
    if (fseeko(f->fp, (off_t)f->data_offset, SEEK_SET) != 0) goto read_error;
    if (f->dtype == dtype) {
        if (fread(tensor_data(t), isz, (size_t)f->numel, f->fp) != (size_t)f->numel)
            goto read_error;
        goto done;
    }
    if (!(buf = malloc(NPY_CONVERT_ITEMS * isz))) {
        error_set("npy: %s: out of memory", f->path);
        goto fail;
    }
    for (int64_t at = 0; at < f->numel; at += NPY_CONVERT_ITEMS) {
        size_t n = (size_t)(f->numel - at < NPY_CONVERT_ITEMS ? f->numel - at : NPY_CONVERT_ITEMS);
        if (fread(buf, isz, n, f->fp) != n) goto read_error;
        void *dst = tensor_data(t);
        for (size_t i = 0; i < n; i++) {
            double v = dtype_load(buf, f->dtype, i);
            switch (dtype) {
            case DTYPE_FLOAT32: ((float *)dst)[at + (int64_t)i] = (float)v; break;
            case DTYPE_FLOAT64: ((double *)dst)[at + (int64_t)i] = v; break;
            case DTYPE_INT64: /* from an integer dtype: exact */
                ((int64_t *)dst)[at + (int64_t)i] = f->dtype == DTYPE_INT64
                    ? ((const int64_t *)buf)[i] : (int64_t)v;
                break;
            case DTYPE_UINT8:
                if (v < 0 || v > 255) {
                    error_set("npy: %s: element %lld is %.17g, outside uint8's range", f->path,
                              (long long)(at + (int64_t)i), v);
                    goto fail;
                }
                ((uint8_t *)dst)[at + (int64_t)i] = (uint8_t)v;
                break;
            }
        }
    }
    goto done;
read_error:
    error_set("npy: %s: read error in the data (from byte %llu): %s", f->path,
              (unsigned long long)f->data_offset, errno ? strerror(errno) : "short read");
fail:
    tensor_release(t);
    t = NULL;
done:
    free(buf);
    npy_close(f);
    return t;
}

Tensor *npy_load(const char *path) {
    NpyFile f;
    if (npy_open(&f, path) != 0) return npy_close(&f), NULL;
    return npy_read(&f, f.dtype, 0, NULL);
}

Tensor *npy_load_as(const char *path, DType dtype) {
    NpyFile f;
    if (npy_open(&f, path) != 0) return npy_close(&f), NULL;
    return npy_read(&f, dtype, 0, NULL);
}

/* Every sample has elements: a size of 0 past the first would make
 * samples of nothing (and a Resize of them divide by zero). */
static int check_sample_sizes(const NpyFile *f) {
    char s[160];
    for (int i = 1; i < f->ndim; i++)
        if (f->shape[i] == 0)
            return error_set("npy: %s: shape %s: a sample of size 0 in dimension %d", f->path,
                             shape_str(f->ndim, f->shape, s, sizeof s), i);
    return 0;
}

/* Float data as training takes it: every element finite (a NaN or an
 * infinity, or a float64 beyond float32's range, would fail a step later
 * without saying where it came from). */
static int check_finite(const char *path, const Tensor *t) {
    if (t->dtype != DTYPE_FLOAT32) return 0;
    const float *v = tensor_data(t);
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return error_set("npy: %s: element %lld is %s as float32, not a finite number", path,
                             (long long)i, isnan(v[i]) ? "nan" : v[i] > 0 ? "inf" : "-inf");
    return 0;
}

Dataset *dataset_load_npy(const char *inputs_path, const char *targets_path) {
    NpyFile fi, ft;
    char s1[160], s2[160];
    if (npy_open(&fi, inputs_path) != 0) return npy_close(&fi), NULL;
    if (npy_open(&ft, targets_path) != 0) {
        npy_close(&fi);
        npy_close(&ft);
        return NULL;
    }
    bool labels = ft.dtype == DTYPE_UINT8 || ft.dtype == DTYPE_INT64;
    if (fi.ndim < 1 || ft.ndim < 1 || fi.shape[0] != ft.shape[0] || fi.shape[0] == 0) {
        error_set("npy: inputs %s %s and targets %s %s need the same first dimension N > 0",
                  inputs_path, shape_str(fi.ndim, fi.shape, s1, sizeof s1), targets_path,
                  shape_str(ft.ndim, ft.shape, s2, sizeof s2));
        goto fail;
    }
    if (check_sample_sizes(&fi) != 0 || check_sample_sizes(&ft) != 0) goto fail;
    if ((labels && ft.ndim != 1) || ft.ndim > 2) {
        error_set("npy: %s: targets of shape %s (%s): expected class labels [N] (uint8 or "
                  "int64) or float targets [N] / [N, k]", targets_path,
                  shape_str(ft.ndim, ft.shape, s1, sizeof s1), dtype_name(ft.dtype));
        goto fail;
    }
    DType in_dtype = fi.dtype == DTYPE_UINT8 ? DTYPE_UINT8 : DTYPE_FLOAT32;
    /* as they are held: uint8 labels take 8 bytes each, 8 times their file */
    uint64_t bytes = (uint64_t)fi.numel * dtype_size(in_dtype) +
                     (uint64_t)ft.numel * dtype_size(labels ? DTYPE_INT64 : DTYPE_FLOAT32);
    char what[4200];
    snprintf(what, sizeof what, "npy: %s with its targets", inputs_path);
    if (dataset_memory_check(what, bytes) != 0) goto fail;
    Tensor *x = npy_read(&fi, in_dtype, 0, NULL);
    if (!x) goto fail;
    int64_t n = ft.shape[0], k = ft.ndim == 2 ? ft.shape[1] : 1;
    Tensor *y = labels ? npy_read(&ft, DTYPE_INT64, 0, NULL)
                       : npy_read(&ft, DTYPE_FLOAT32, SHAPE(n, k));
    if (!y || check_finite(inputs_path, x) != 0 || check_finite(targets_path, y) != 0) {
        tensor_release(x);
        tensor_release(y);
        return NULL;
    }
    /* its refusals (a negative label) are of the targets' file */
    Dataset *ds = dataset_from_tensors(x, y, NULL);
    if (!ds) return error_prefix("npy: %s", targets_path), NULL;
    const char *a = strrchr(inputs_path, '/'), *b = strrchr(targets_path, '/');
    int64_t sample[TENSOR_MAX_DIMS];
    int sdim = dataset_sample_shape(ds, sample);
    if (labels)
        snprintf(ds->description, sizeof ds->description,
                 "npy: %s + %s: %lld samples of %s %s, %d classes", a ? a + 1 : inputs_path,
                 b ? b + 1 : targets_path, (long long)n, dtype_name(in_dtype),
                 shape_str(sdim, sample, s1, sizeof s1), ds->num_classes);
    else
        snprintf(ds->description, sizeof ds->description,
                 "npy: %s + %s: %lld samples of %s %s, %lld regression target%s",
                 a ? a + 1 : inputs_path, b ? b + 1 : targets_path, (long long)n,
                 dtype_name(in_dtype), shape_str(sdim, sample, s1, sizeof s1), (long long)k,
                 k == 1 ? "" : "s");
    return ds;
fail:
    npy_close(&fi);
    npy_close(&ft);
    return NULL;
}
