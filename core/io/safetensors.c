/* safetensors.c - .safetensors load and save; see safetensors.h.
 *
 * Load: read the 8-byte length and the header, parse it with jansson, turn
 * every entry into a checked Entry (dtype, shape, offsets, sizes agree and
 * stay inside the buffer), sort the entries by offset to find overlaps and
 * holes, and only then allocate each tensor and fread its bytes into it. The
 * result is built in a private dict and handed over at the end, so a bad file
 * leaves the caller's dict as it was.
 *
 * Save: the header depends only on shapes and dtypes, so it is written first;
 * then each tensor is brought to the CPU and made contiguous one at a time,
 * written, and dropped, so a model on the GPU never needs a second full copy
 * in host memory.
 */
#include "core/io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/io/durable.h"

/* Tensor bytes go between the file and storage untouched. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* ---- dtypes ---- */

static const struct {
    const char *name;
    DType dtype;
} st_dtypes[] = {
    {"F32", DTYPE_FLOAT32},
    {"F64", DTYPE_FLOAT64},
    {"I64", DTYPE_INT64},
    {"U8", DTYPE_UINT8},
};
#define N_ST_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

/* Valid in the format but not in traind: named as "not supported" rather than
 * "unknown", so a user knows the file is fine and traind is the limit. */
static const char *const st_foreign[] = {"F16",     "BF16",    "I8",      "I16",     "I32",
                                         "U16",     "U32",     "U64",     "BOOL",    "F8_E4M3",
                                         "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
                                         "C64"};

static const char *st_dtype_name(DType dtype) {
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (st_dtypes[i].dtype == dtype) return st_dtypes[i].name;
    return NULL;
}

/* ---- metadata ---- */

void safetensors_meta_init(SafetensorsMeta *m) { memset(m, 0, sizeof *m); }

void safetensors_meta_free(SafetensorsMeta *m) {
    for (int i = 0; i < m->count; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    safetensors_meta_init(m);
}

static int meta_index(const SafetensorsMeta *m, const char *key) {
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->keys[i], key) == 0) return i;
    return -1;
}

const char *safetensors_meta_get(const SafetensorsMeta *m, const char *key) {
    int i = meta_index(m, key);
    return i < 0 ? NULL : m->values[i];
}

/* Adds a pair whose key is not in m yet (no search: a file's keys are
 * unique already, and a linear search per key would make a header of many
 * keys quadratic). */
static int meta_append(SafetensorsMeta *m, const char *key, const char *value) {
    char *v = strdup(value);
    if (!v) return error_set("safetensors metadata: out of memory");
    if (m->count == m->capacity) {
        int cap = m->capacity ? m->capacity * 2 : 8;
        char **keys = realloc(m->keys, (size_t)cap * sizeof *keys);
        if (keys) m->keys = keys;
        char **values = keys ? realloc(m->values, (size_t)cap * sizeof *values) : NULL;
        if (values) m->values = values;
        if (!keys || !values) {
            free(v);
            return error_set("safetensors metadata: out of memory");
        }
        m->capacity = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return error_set("safetensors metadata: out of memory");
    }
    m->keys[m->count] = k;
    m->values[m->count] = v;
    m->count++;
    return 0;
}

int safetensors_meta_set(SafetensorsMeta *m, const char *key, const char *value) {
    int i = meta_index(m, key);
    if (i < 0) return meta_append(m, key, value);
    char *v = strdup(value);
    if (!v) return error_set("safetensors metadata: out of memory");
    free(m->values[i]);
    m->values[i] = v;
    return 0;
}

/* ---- load ---- */

typedef struct {
    const char *name; /* borrowed from the parsed header */
    DType dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    uint64_t begin, end; /* relative to the data buffer */
} Entry;

/* Everything one load needs to report errors and read data. */
typedef struct {
    const char *path;
    FILE *f;
    uint64_t file_size;
    uint64_t data_start; /* 8 + header length */
    uint64_t buffer_size;
} Loader;

#define ULL(x) ((unsigned long long)(x))

static int parse_dtype(const Loader *L, const char *name, json_t *v, DType *out) {
    const char *s = json_string_value(v);
    if (!s) return error_set("safetensors '%s': tensor '%s': \"dtype\" is not a string", L->path, name);
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = st_dtypes[i].dtype;
            return 0;
        }
    for (size_t i = 0; i < sizeof st_foreign / sizeof st_foreign[0]; i++)
        if (strcmp(s, st_foreign[i]) == 0)
            return error_set("safetensors '%s': tensor '%s': dtype %s is not supported "
                             "(traind reads F32, F64, I64 and U8)",
                             L->path, name, s);
    return error_set("safetensors '%s': tensor '%s': unknown dtype '%s'", L->path, name, s);
}

static int parse_shape(const Loader *L, const char *name, json_t *v, Entry *e) {
    if (!json_is_array(v))
        return error_set("safetensors '%s': tensor '%s': \"shape\" is not an array", L->path, name);
    size_t n = json_array_size(v);
    if (n > TENSOR_MAX_DIMS)
        return error_set("safetensors '%s': tensor '%s': shape has %zu dimensions, at most %d "
                         "are supported",
                         L->path, name, n, TENSOR_MAX_DIMS);
    e->ndim = (int)n;
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(v, i);
        if (!json_is_integer(d))
            return error_set("safetensors '%s': tensor '%s': shape[%zu] is not an integer", L->path,
                             name, i);
        json_int_t x = json_integer_value(d);
        if (x < 0)
            return error_set("safetensors '%s': tensor '%s': shape[%zu] is negative (%lld)",
                             L->path, name, i, (long long)x);
        e->shape[i] = (int64_t)x;
    }
    return 0;
}

static int parse_offsets(const Loader *L, const char *name, json_t *v, Entry *e) {
    if (!json_is_array(v) || json_array_size(v) != 2 ||
        !json_is_integer(json_array_get(v, 0)) || !json_is_integer(json_array_get(v, 1)))
        return error_set("safetensors '%s': tensor '%s': \"data_offsets\" is not [begin, end] "
                         "with two integers",
                         L->path, name);
    json_int_t b = json_integer_value(json_array_get(v, 0));
    json_int_t en = json_integer_value(json_array_get(v, 1));
    if (b < 0 || en < 0 || b > en)
        return error_set("safetensors '%s': tensor '%s': data_offsets [%lld, %lld] need "
                         "0 <= begin <= end",
                         L->path, name, (long long)b, (long long)en);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->end > L->buffer_size)
        return error_set("safetensors '%s': tensor '%s': data_offsets [%llu, %llu] end past the "
                         "data buffer of %llu bytes (file bytes %llu..%llu, file is %llu bytes)",
                         L->path, name, ULL(e->begin), ULL(e->end), ULL(L->buffer_size),
                         ULL(L->data_start + e->begin), ULL(L->data_start + e->end),
                         ULL(L->file_size));
    return 0;
}

/* One header entry, checked on its own. */
static int parse_entry(const Loader *L, const char *name, json_t *obj, Entry *e) {
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!json_is_object(obj))
        return error_set("safetensors '%s': tensor '%s': entry is not a JSON object", L->path, name);
    static const char *const fields[] = {"dtype", "shape", "data_offsets"};
    for (int i = 0; i < 3; i++)
        if (!json_object_get(obj, fields[i]))
            return error_set("safetensors '%s': tensor '%s': missing \"%s\"", L->path, name,
                             fields[i]);
    if (parse_dtype(L, name, json_object_get(obj, "dtype"), &e->dtype) != 0) return -1;
    if (parse_shape(L, name, json_object_get(obj, "shape"), e) != 0) return -1;
    if (parse_offsets(L, name, json_object_get(obj, "data_offsets"), e) != 0) return -1;

    /* numel * dtype_size, refusing overflow (a zero size included: the
     * strides of the others must fit too): the header is untrusted. */
    uint64_t size = dtype_size(e->dtype), nbytes = size;
    for (int i = 0; i < e->ndim; i++) nbytes *= (uint64_t)e->shape[i];
    char sbuf[160];
    if (!shape_fits(e->ndim, e->shape, (uint64_t)INT64_MAX / size))
        return error_set("safetensors '%s': tensor '%s': shape %s is too large", L->path, name,
                         shape_str(e->ndim, e->shape, sbuf, sizeof sbuf));
    if (nbytes != e->end - e->begin)
        return error_set("safetensors '%s': tensor '%s': shape %s %s needs %llu bytes but "
                         "data_offsets [%llu, %llu] span %llu",
                         L->path, name, shape_str(e->ndim, e->shape, sbuf, sizeof sbuf),
                         dtype_name(e->dtype), ULL(nbytes), ULL(e->begin), ULL(e->end),
                         ULL(e->end - e->begin));
    return 0;
}

static int entry_cmp(const void *pa, const void *pb) {
    const Entry *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* The spec asks that tensors tile the buffer exactly: no overlap (two names
 * aliasing the same bytes), no holes, nothing after the last tensor. */
static int check_layout(const Loader *L, const Entry *es, size_t n) {
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const Entry *e = &es[i];
        if (i > 0 && e->begin < es[i - 1].end)
            return error_set("safetensors '%s': tensors '%s' (data_offsets [%llu, %llu]) and "
                             "'%s' (data_offsets [%llu, %llu]) overlap",
                             L->path, es[i - 1].name, ULL(es[i - 1].begin), ULL(es[i - 1].end),
                             e->name, ULL(e->begin), ULL(e->end));
        if (e->begin > pos)
            return error_set("safetensors '%s': data bytes [%llu, %llu) (file bytes %llu..%llu) "
                             "belong to no tensor (hole before '%s')",
                             L->path, ULL(pos), ULL(e->begin), ULL(L->data_start + pos),
                             ULL(L->data_start + e->begin), e->name);
        pos = e->end;
    }
    if (pos != L->buffer_size)
        return error_set("safetensors '%s': %llu bytes after the last tensor (file bytes "
                         "%llu..%llu) belong to no tensor",
                         L->path, ULL(L->buffer_size - pos), ULL(L->data_start + pos),
                         ULL(L->file_size));
    return 0;
}

/* Reads exactly n bytes at file offset `at`; `what` names them in errors. */
static int read_at(const Loader *L, void *dst, size_t n, uint64_t at, const char *what) {
    if (n == 0) return 0;
    if (fseeko(L->f, (off_t)at, SEEK_SET) != 0)
        return error_set("safetensors '%s': cannot seek to byte %llu for %s: %s", L->path, ULL(at),
                         what, strerror(errno));
    size_t got = fread(dst, 1, n, L->f);
    if (got != n) {
        if (ferror(L->f))
            return error_set("safetensors '%s': reading %s at byte %llu: %s", L->path, what,
                             ULL(at), strerror(errno));
        return error_set("safetensors '%s': file ends at byte %llu, inside %s (bytes %llu..%llu)",
                         L->path, ULL(at + got), what, ULL(at), ULL(at + n));
    }
    return 0;
}

/* Into an empty `meta`: the header was parsed with JSON_REJECT_DUPLICATES,
 * so its keys are unique. */
static int load_metadata(const Loader *L, json_t *obj, SafetensorsMeta *meta) {
    if (!json_is_object(obj))
        return error_set("safetensors '%s': \"__metadata__\" is not a JSON object", L->path);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!json_is_string(v))
            return error_set("safetensors '%s': \"__metadata__\" value of '%s' is not a string",
                             L->path, key);
        if (meta && meta_append(meta, key, json_string_value(v)) != 0) return -1;
    }
    return 0;
}

/* Moves src's entries into dst (replacing equal names) and empties src. */
static int dict_merge(TensorDict *dst, TensorDict *src) {
    if (dst->count == 0) {
        tensor_dict_free(dst);
        *dst = *src;
        tensor_dict_init(src);
        return 0;
    }
    for (int i = 0; i < src->count; i++)
        if (tensor_dict_set(dst, src->names[i], src->tensors[i]) != 0) return -1;
    tensor_dict_free(src);
    return 0;
}

static int meta_merge(SafetensorsMeta *dst, SafetensorsMeta *src) {
    if (dst->count == 0) {
        safetensors_meta_free(dst);
        *dst = *src;
        safetensors_meta_init(src);
        return 0;
    }
    for (int i = 0; i < src->count; i++)
        if (safetensors_meta_set(dst, src->keys[i], src->values[i]) != 0) return -1;
    safetensors_meta_free(src);
    return 0;
}

/* Opens L->path, a regular file of at least the header length's 8 bytes. */
static int open_file(Loader *L) {
    L->f = fopen(L->path, "rb");
    if (!L->f) return error_set("safetensors '%s': cannot open: %s", L->path, strerror(errno));
    struct stat st;
    if (fstat(fileno(L->f), &st) != 0)
        return error_set("safetensors '%s': cannot stat: %s", L->path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return error_set("safetensors '%s': not a regular file", L->path);
    L->file_size = (uint64_t)st.st_size;
    if (L->file_size < 8)
        return error_set("safetensors '%s': file is %llu bytes, shorter than the 8-byte header "
                         "length",
                         L->path, ULL(L->file_size));
    return 0;
}

/* The header's JSON object (*root, a new reference); where the data
 * starts, into L. */
static int read_header(Loader *L, json_t **root) {
    unsigned char len8[8];
    if (read_at(L, len8, 8, 0, "the header length") != 0) return -1;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > SAFETENSORS_MAX_HEADER)
        return error_set("safetensors '%s': header length %llu (bytes 0..8) exceeds the limit of "
                         "%u bytes",
                         L->path, ULL(hlen), SAFETENSORS_MAX_HEADER);
    if (hlen > L->file_size - 8)
        return error_set("safetensors '%s': header length %llu (bytes 0..8) runs past the end "
                         "of the file (%llu bytes)",
                         L->path, ULL(hlen), ULL(L->file_size));
    L->data_start = 8 + hlen;
    L->buffer_size = L->file_size - L->data_start;
    char *header = malloc(hlen ? hlen : 1);
    if (!header)
        return error_set("safetensors '%s': out of memory for a %llu-byte header", L->path,
                         ULL(hlen));
    if (read_at(L, header, hlen, 8, "the header") != 0) {
        free(header);
        return -1;
    }
    json_error_t jerr;
    *root = json_loadb(header, hlen, JSON_REJECT_DUPLICATES, &jerr);
    free(header);
    if (!*root)
        return error_set("safetensors '%s': header is not valid JSON: %s at header byte %d (file "
                         "byte %llu, line %d column %d)",
                         L->path, jerr.text, jerr.position, ULL(8 + (uint64_t)jerr.position),
                         jerr.line, jerr.column);
    if (json_is_object(*root)) return 0;
    json_decref(*root);
    *root = NULL;
    return error_set("safetensors '%s': header is not a JSON object", L->path);
}

/* The header's entries, checked and sorted by offset (*entries, *n; the
 * caller frees them), and its "__metadata__" into md (NULL: checked only). */
static int parse_header(const Loader *L, json_t *root, SafetensorsMeta *md, Entry **entries,
                        size_t *n) {
    size_t cap = json_object_size(root);
    *n = 0;
    *entries = calloc(cap ? cap : 1, sizeof **entries);
    if (!*entries)
        return error_set("safetensors '%s': out of memory for %zu header entries", L->path, cap);
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (strcmp(name, "__metadata__") == 0) {
            if (load_metadata(L, v, md) != 0) return -1;
            continue;
        }
        if (parse_entry(L, name, v, &(*entries)[*n]) != 0) return -1;
        (*n)++;
    }
    qsort(*entries, *n, sizeof **entries, entry_cmp);
    return check_layout(L, *entries, *n);
}

/* Every claim checked: now allocate and read, straight into storage. */
static int read_tensors(const Loader *L, const Entry *entries, size_t n, TensorDict *dict) {
    for (size_t i = 0; i < n; i++) {
        const Entry *e = &entries[i];
        Tensor *t = tensor_empty(e->ndim, e->shape, e->dtype, DEVICE_CPU_INIT);
        if (!t) return error_prefix("safetensors '%s': tensor '%s'", L->path, e->name);
        char what[64 + 256];
        snprintf(what, sizeof what, "tensor '%s'", e->name);
        /* names are unique: JSON_REJECT_DUPLICATES */
        int rc = read_at(L, tensor_numel(t) ? tensor_data(t) : NULL, (size_t)(e->end - e->begin),
                         L->data_start + e->begin, what);
        if (rc == 0) rc = tensor_dict_append(dict, e->name, t);
        tensor_release(t);
        if (rc != 0) return -1;
    }
    return 0;
}

int safetensors_load(const char *path, TensorDict *out, SafetensorsMeta *meta) {
    Loader L = {.path = path};
    json_t *root = NULL;
    Entry *entries = NULL;
    size_t n = 0;
    TensorDict dict;
    SafetensorsMeta md;
    tensor_dict_init(&dict);
    safetensors_meta_init(&md);
    int rc = open_file(&L);
    if (rc == 0) rc = read_header(&L, &root);
    if (rc == 0) rc = parse_header(&L, root, meta ? &md : NULL, &entries, &n);
    if (rc == 0) rc = read_tensors(&L, entries, n, &dict);
    if (rc == 0) rc = dict_merge(out, &dict);
    if (rc == 0 && meta) rc = meta_merge(meta, &md);
    free(entries);
    json_decref(root);
    tensor_dict_free(&dict);
    safetensors_meta_free(&md);
    if (L.f) fclose(L.f);
    return rc;
}

/* ---- save ---- */

/* The header JSON, padded with spaces to a multiple of 8 and preceded by its
 * length: the first 8 + N bytes of the file. */
static char *build_header(const char *path, const TensorDict *dict, const SafetensorsMeta *meta,
                          size_t *len_out) {
    json_t *root = json_object();
    char *text = NULL, *buf = NULL;
    if (!root) goto oom;
    if (meta && meta->count > 0) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m) != 0) goto oom;
        for (int i = 0; i < meta->count; i++) {
            json_t *s = json_string(meta->values[i]);
            if (!s || json_object_set_new(m, meta->keys[i], s) != 0) {
                error_set("safetensors_save '%s': metadata '%s' is not valid UTF-8 text", path,
                          meta->keys[i]);
                goto fail;
            }
        }
    }
    uint64_t offset = 0;
    for (int i = 0; i < dict->count; i++) {
        const char *name = dict->names[i];
        const Tensor *t = dict->tensors[i];
        if (strcmp(name, "__metadata__") == 0) {
            error_set("safetensors_save '%s': a tensor cannot be named \"__metadata__\"", path);
            goto fail;
        }
        const char *dt = st_dtype_name(t->dtype);
        if (!dt) {
            error_set("safetensors_save '%s': tensor '%s': unsupported dtype %d", path, name,
                      (int)t->dtype);
            goto fail;
        }
        uint64_t nbytes = (uint64_t)tensor_numel(t) * dtype_size(t->dtype);
        json_t *shape = json_array();
        for (int d = 0; shape && d < t->ndim; d++)
            if (json_array_append_new(shape, json_integer(t->shape[d])) != 0) {
                json_decref(shape);
                shape = NULL;
            }
        /* "o" steals shape, also when json_pack fails. */
        json_t *e = shape ? json_pack("{s:s, s:o, s:[I, I]}", "dtype", dt, "shape", shape,
                                      "data_offsets", (json_int_t)offset,
                                      (json_int_t)(offset + nbytes))
                          : NULL;
        if (!e) goto oom;
        if (json_object_set_new(root, name, e) != 0) {
            error_set("safetensors_save '%s': tensor name '%s' is not valid UTF-8 text", path,
                      name);
            goto fail;
        }
        offset += nbytes;
    }
    text = json_dumps(root, JSON_COMPACT);
    if (!text) goto oom;
    size_t hlen = strlen(text), padded = (hlen + 7) & ~(size_t)7;
    if (padded > SAFETENSORS_MAX_HEADER) {
        error_set("safetensors_save '%s': header of %zu bytes exceeds the limit of %u", path,
                  padded, SAFETENSORS_MAX_HEADER);
        goto fail;
    }
    buf = malloc(8 + padded);
    if (!buf) goto oom;
    for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)padded >> (8 * i) & 0xff);
    memcpy(buf + 8, text, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    *len_out = 8 + padded;
    free(text);
    json_decref(root);
    return buf;
oom:
    error_set("safetensors_save '%s': out of memory building the header", path);
fail:
    free(text);
    json_decref(root);
    return NULL;
}

/* What safetensors_save writes through durable_write. */
typedef struct {
    const char *header;
    size_t hlen;
    const TensorDict *dict;
} SaveContent;

static int write_content(FILE *f, const char *tmp, void *ctx) {
    const SaveContent *c = ctx;
    if (fwrite(c->header, 1, c->hlen, f) != c->hlen)
        return error_sys(errno, "writing the header to '%s'", tmp);
    for (int i = 0; i < c->dict->count; i++) {
        Tensor *t = tensor_host_contiguous(c->dict->tensors[i]);
        if (!t) return error_prefix("tensor '%s'", c->dict->names[i]);
        size_t nbytes = (size_t)tensor_numel(t) * dtype_size(t->dtype);
        size_t put = nbytes ? fwrite(tensor_data(t), 1, nbytes, f) : 0;
        int err = errno; /* before tensor_release's free may change it */
        tensor_release(t);
        if (put != nbytes)
            return error_sys(err, "writing tensor '%s' to '%s'", c->dict->names[i], tmp);
    }
    return 0;
}

int safetensors_save(const char *path, const TensorDict *dict, const SafetensorsMeta *meta) {
    SaveContent c = {.dict = dict};
    char *header = build_header(path, dict, meta, &c.hlen);
    if (!header) return -1;
    c.header = header;
    int rc = durable_write(path, 0644, write_content, &c);
    free(header);
    return rc == 0 ? 0 : error_prefix("safetensors_save");
}
