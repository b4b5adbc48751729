/* tensor.c - tensor creation, refcounting and inspection, and the headers
 * that views and adopted memory share storage through.
 *
 * Storage is allocated through the device's backend, so the same code makes
 * CPU and CUDA tensors. The view ops are in tensor_view.c, the copies
 * between dtypes, devices and layouts in tensor_copy.c.
 */
#include "core/tensor.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

/* ------------------------------------------------------------------------ */
/* dtype and device                                                         */

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [DTYPE_FLOAT32] = {"float32", 4},
    [DTYPE_FLOAT64] = {"float64", 8},
    [DTYPE_INT64] = {"int64", 8},
    [DTYPE_UINT8] = {"uint8", 1},
};

size_t dtype_size(DType dtype) { return dtype_info[dtype].size; }
const char *dtype_name(DType dtype) { return dtype_info[dtype].name; }
bool dtype_is_float(DType dtype) { return dtype == DTYPE_FLOAT32 || dtype == DTYPE_FLOAT64; }

int dtype_parse(const char *name, DType *out) {
    if (!name) return error_set("dtype: missing");
    for (int i = 0; i < (int)(sizeof dtype_info / sizeof dtype_info[0]); i++)
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (DType)i;
            return 0;
        }
    if (strcmp(name, "float") == 0) return *out = DTYPE_FLOAT32, 0;
    if (strcmp(name, "double") == 0) return *out = DTYPE_FLOAT64, 0;
    if (strcmp(name, "long") == 0) return *out = DTYPE_INT64, 0;
    return error_set("unknown dtype '%s' (expected float32, float64, int64 or uint8)", name);
}

const char *device_name(Device device, char *buf, size_t n) {
    if (device.type == DEVICE_CPU)
        snprintf(buf, n, "cpu");
    else
        snprintf(buf, n, "cuda:%d", device.index);
    return buf;
}

int device_parse(const char *name, Device *out) {
    if (!name) return error_set("device: missing");
    if (strcmp(name, "cpu") == 0) return *out = DEVICE_CPU_INIT, 0;
    if (strcmp(name, "cuda") == 0) return *out = (Device){DEVICE_CUDA, 0}, 0;
    if (strncmp(name, "cuda:", 5) == 0 && isdigit((unsigned char)name[5])) {
        char *end;
        long idx = strtol(name + 5, &end, 10);
        /* any index that is a number: whether this machine has that GPU is
         * backend_for's to say ("only 1 CUDA device(s) present") */
        if (*end == '\0' && idx >= 0 && idx <= INT_MAX)
            return *out = (Device){DEVICE_CUDA, (int)idx}, 0;
    }
    return error_set("unknown device '%s' (expected cpu, cuda or cuda:N)", name);
}

bool device_equal(Device a, Device b) { return a.type == b.type && a.index == b.index; }

int device_list_count(const char *list) {
    int n = 1;
    for (const char *c = list; *c; c++) n += *c == ',';
    return n;
}

int device_list_get(const char *list, int i, Device *out) {
    const char *p = list;
    for (int k = 0; k < i && p; k++) p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
    if (!p || i < 0) return error_set("devices %s: no entry %d", list, i);
    char name[32];
    size_t n = strcspn(p, ",");
    snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
    return device_parse(name, out) == 0 ? 0 : error_prefix("devices %s", list);
}

/* ------------------------------------------------------------------------ */
/* storage and creation                                                     */

static Storage *storage_new(size_t nbytes, Device device) {
    const Backend *be = backend_for(device);
    if (!be) return NULL;
    Storage *s = calloc(1, sizeof *s);
    if (!s) return error_set("tensor: out of memory"), NULL;
    s->data = be->alloc(device, nbytes);
    if (!s->data) {
        char dn[32];
        free(s);
        error_set("tensor: out of memory allocating %zu bytes on %s", nbytes,
                  device_name(device, dn, sizeof dn));
        return NULL;
    }
    s->nbytes = nbytes;
    s->device = device;
    atomic_init(&s->refcount, 1);
    return s;
}

/* Page-locked host memory from for_device's backend; NULL (no error) when
 * it has none to give. */
static Storage *storage_new_pinned(size_t nbytes, Device for_device) {
    const Backend *be = for_device.type != DEVICE_CPU ? backend_for(for_device) : NULL;
    if (!be || !be->host_alloc) return NULL;
    Storage *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->data = be->host_alloc(for_device, nbytes ? nbytes : 1);
    if (!s->data) {
        free(s);
        return NULL;
    }
    s->nbytes = nbytes;
    s->device = DEVICE_CPU_INIT;
    s->pinned = true;
    s->pinned_for = for_device;
    atomic_init(&s->refcount, 1);
    return s;
}

static void storage_release(Storage *s) {
    if (s && atomic_fetch_sub(&s->refcount, 1) == 1) {
        if (s->pinned) {
            const Backend *be = backend_for(s->pinned_for);
            if (be) be->host_free(s->pinned_for, s->data);
        } else {
            const Backend *be = backend_for(s->device);
            if (be) be->free(s->device, s->data);
        }
        free(s);
    }
}

static void set_contiguous_strides(Tensor *t) {
    int64_t stride = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->strides[i] = stride;
        stride *= t->shape[i];
    }
}

static Tensor *tensor_alloc_header(int ndim, const int64_t *shape, DType dtype, Device device) {
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        return error_set("tensor: %d dimensions (at most %d)", ndim, TENSOR_MAX_DIMS), NULL;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return error_set("tensor: negative size %lld in dimension %d", (long long)shape[i], i),
                   NULL;
    /* every later numel or stride product relies on this one fitting */
    if (!shape_fits(ndim, shape, INT64_MAX)) {
        char s[160];
        return error_set("tensor: shape %s has too many elements",
                         shape_str(ndim, shape, s, sizeof s)),
               NULL;
    }
    Tensor *t = calloc(1, sizeof *t);
    if (!t) return error_set("tensor: out of memory"), NULL;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->dtype = dtype;
    t->device = device;
    t->refcount = 1;
    set_contiguous_strides(t);
    return t;
}

/* tensor_empty on `device`, or pinned host memory for pinned_for when it
 * is a device (falling back to plain host memory). */
static Tensor *empty_tensor(int ndim, const int64_t *shape, DType dtype, Device device,
                            const Device *pinned_for) {
    Tensor *t = tensor_alloc_header(ndim, shape, dtype, device);
    if (!t) return NULL;
    int64_t numel = tensor_numel(t);
    if (numel > (int64_t)(SIZE_MAX / 16)) {
        free(t);
        return error_set("tensor: %lld elements is too many", (long long)numel), NULL;
    }
    size_t nbytes = (size_t)numel * dtype_size(dtype);
    t->storage = pinned_for ? storage_new_pinned(nbytes, *pinned_for) : NULL;
    if (!t->storage) t->storage = storage_new(nbytes, device);
    if (!t->storage) {
        free(t);
        return NULL;
    }
    return t;
}

Tensor *tensor_empty(int ndim, const int64_t *shape, DType dtype, Device device) {
    return empty_tensor(ndim, shape, dtype, device, NULL);
}

Tensor *tensor_empty_pinned(int ndim, const int64_t *shape, DType dtype, Device for_device) {
    return empty_tensor(ndim, shape, dtype, DEVICE_CPU_INIT, &for_device);
}

bool tensor_is_pinned(const Tensor *t) { return t && t->storage && t->storage->pinned; }

Tensor *tensor_full(int ndim, const int64_t *shape, double value, DType dtype, Device device) {
    Tensor *t = tensor_empty(ndim, shape, dtype, device);
    if (t && tensor_fill_(t, value) != 0) {
        tensor_release(t);
        return NULL;
    }
    return t;
}

Tensor *tensor_zeros(int ndim, const int64_t *shape, DType dtype, Device device) {
    return tensor_full(ndim, shape, 0.0, dtype, device);
}

Tensor *tensor_scalar(double value, DType dtype, Device device) {
    return tensor_full(0, NULL, value, dtype, device);
}

Tensor *tensor_empty_like(const Tensor *t) {
    return t ? tensor_empty(t->ndim, t->shape, t->dtype, t->device) : NULL;
}

Tensor *tensor_zeros_like(const Tensor *t) {
    return t ? tensor_zeros(t->ndim, t->shape, t->dtype, t->device) : NULL;
}

Tensor *tensor_from_buffer(const void *data, int ndim, const int64_t *shape, DType dtype) {
    Tensor *t = tensor_empty(ndim, shape, dtype, DEVICE_CPU_INIT);
    if (t && t->storage->nbytes) memcpy(t->storage->data, data, t->storage->nbytes);
    return t;
}

Tensor *tensor_from_doubles(const double *values, int ndim, const int64_t *shape, DType dtype) {
    Tensor *t = tensor_empty(ndim, shape, dtype, DEVICE_CPU_INIT);
    if (!t) return NULL;
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) dtype_store(t->storage->data, dtype, i, values[i]);
    return t;
}

/* Nested-list parser for tensor_from_string: a recursive descent bounded by
 * TENSOR_MAX_DIMS, which also infers and checks the shape. */
typedef struct {
    const char *text, *p;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    bool shape_known[TENSOR_MAX_DIMS];
    int leaf_depth; /* depth at which numbers sit, -1 until the first */
    double *values;
    int64_t count, cap;
} NestedParser;

static void nested_skip_space(NestedParser *np) {
    while (isspace((unsigned char)*np->p)) np->p++;
}

static int nested_parse(NestedParser *np, int depth) {
    nested_skip_space(np);
    long pos = (long)(np->p - np->text);
    if (*np->p == '[') {
        if (depth >= TENSOR_MAX_DIMS)
            return error_set("tensor: more than %d nested lists at byte %ld", TENSOR_MAX_DIMS, pos);
        if (np->leaf_depth != -1 && depth >= np->leaf_depth)
            return error_set("tensor: ragged nested list at byte %ld (a list where numbers were)",
                             pos);
        np->p++;
        int64_t n = 0;
        nested_skip_space(np);
        if (*np->p == ']') {
            np->p++;
        } else {
            for (;;) {
                if (nested_parse(np, depth + 1) != 0) return -1;
                n++;
                nested_skip_space(np);
                if (*np->p == ',') {
                    np->p++;
                    continue;
                }
                if (*np->p == ']') {
                    np->p++;
                    break;
                }
                return error_set("tensor: expected ',' or ']' at byte %ld",
                                 (long)(np->p - np->text));
            }
        }
        if (np->ndim <= depth) np->ndim = depth + 1;
        if (!np->shape_known[depth]) {
            np->shape_known[depth] = true;
            np->shape[depth] = n;
        } else if (np->shape[depth] != n) {
            return error_set("tensor: ragged nested list at byte %ld (%lld elements, expected %lld)",
                             pos, (long long)n, (long long)np->shape[depth]);
        }
        return 0;
    }
    char *end;
    double v = strtod(np->p, &end);
    if (end == np->p) return error_set("tensor: expected a number or '[' at byte %ld", pos);
    if (np->leaf_depth == -1) np->leaf_depth = depth;
    if (np->leaf_depth != depth)
        return error_set("tensor: ragged nested list at byte %ld (a number at depth %d, "
                         "expected depth %d)", pos, depth, np->leaf_depth);
    if (np->count == np->cap) {
        int64_t cap = np->cap ? np->cap * 2 : 64;
        double *nv = realloc(np->values, (size_t)cap * sizeof *nv);
        if (!nv) return error_set("tensor: out of memory");
        np->values = nv;
        np->cap = cap;
    }
    np->values[np->count++] = v;
    np->p = end;
    return 0;
}

Tensor *tensor_from_string(const char *text, DType dtype) {
    if (!text) return error_set("tensor: no text"), NULL;
    NestedParser np = {.text = text, .p = text, .leaf_depth = -1};
    Tensor *t = NULL;
    if (nested_parse(&np, 0) == 0) {
        nested_skip_space(&np);
        if (*np.p != '\0') {
            error_set("tensor: unexpected '%c' at byte %ld", *np.p, (long)(np.p - text));
        } else {
            int64_t expect = 1;
            for (int i = 0; i < np.ndim; i++) expect *= np.shape[i];
            if (expect != np.count)
                error_set("tensor: ragged nested list (%lld numbers for shape of %lld)",
                          (long long)np.count, (long long)expect);
            else
                t = tensor_from_doubles(np.values, np.ndim, np.shape, dtype);
        }
    }
    free(np.values);
    return t;
}

/* ------------------------------------------------------------------------ */
/* references and inspection                                                */

Tensor *tensor_retain(Tensor *t) {
    if (t) t->refcount++;
    return t;
}

/* Freeing a tensor frees its grad_fn, which releases the node's inputs,
 * whose grad_fns release theirs, and so on: done recursively, dropping a
 * graph 100k ops deep without backward() would overflow the C stack. So
 * tensors whose count reaches zero are pushed on a per-thread list, linked
 * through the dead tensor itself (no allocation, so nothing can fail), and
 * the outermost tensor_release drains it; releases made while draining only
 * push. The caller still sees the whole graph freed when release returns. */
static _Thread_local Tensor *release_pending;
static _Thread_local bool release_draining;

static void tensor_free(Tensor *t) {
    if (t->grad_fn) autograd_node_free(t->grad_fn); /* pushes dead inputs */
    tensor_release(t->grad);
    tensor_release(t->backward_grad);
    storage_release(t->storage);
    free(t);
}

void tensor_release(Tensor *t) {
    if (!t || --t->refcount > 0) return;
    t->release_next = release_pending;
    release_pending = t;
    if (release_draining) return; /* an outer call frees it */
    release_draining = true;
    while (release_pending) {
        Tensor *dead = release_pending;
        release_pending = dead->release_next;
        tensor_free(dead);
    }
    release_draining = false;
}

int64_t tensor_numel(const Tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

bool tensor_is_contiguous(const Tensor *t) {
    if (tensor_numel(t) == 0) return true; /* no element to be out of place (torch's rule) */
    int64_t stride = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != stride) return false;
        stride *= t->shape[i];
    }
    return true;
}

void *tensor_data(const Tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)dtype_size(t->dtype);
}

/* Storage index of the element at row-major position `flat`. */
static int64_t tensor_flat_to_storage(const Tensor *t, int64_t flat) {
    int64_t idx = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx += (flat % t->shape[d]) * t->strides[d];
        flat /= t->shape[d];
    }
    return idx;
}

double tensor_get(const Tensor *t, int64_t flat) {
    if (t->device.type != DEVICE_CPU) return NAN;
    return dtype_load(t->storage->data, t->dtype, tensor_flat_to_storage(t, flat));
}

int tensor_to_doubles(const Tensor *t, double *out, int64_t n) {
    if (!t) return -1;
    if (n != tensor_numel(t))
        return error_set("tensor_to_doubles: buffer of %lld for %lld elements", (long long)n,
                         (long long)tensor_numel(t));
    Tensor *host = tensor_to_device((Tensor *)t, DEVICE_CPU_INIT);
    if (!host) return -1;
    for (int64_t i = 0; i < n; i++) out[i] = tensor_get(host, i);
    tensor_release(host);
    return 0;
}

double tensor_item(const Tensor *t) {
    if (!t) return NAN;
    if (tensor_numel(t) != 1) {
        char s[128];
        error_set("item: tensor of shape %s has %lld elements, not 1",
                  tensor_shape_str(t, s, sizeof s), (long long)tensor_numel(t));
        return NAN;
    }
    double v;
    return tensor_to_doubles(t, &v, 1) == 0 ? v : NAN;
}

const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

bool shape_fits(int ndim, const int64_t *shape, uint64_t limit) {
    uint64_t span = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] > 0 && (__builtin_mul_overflow(span, (uint64_t)shape[i], &span) || span > limit))
            return false;
    return true;
}

const char *tensor_shape_str(const Tensor *t, char *buf, size_t n) {
    return shape_str(t->ndim, t->shape, buf, n);
}

bool tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

int tensor_wrap_dim(int dim, int ndim, const char *what) {
    int n = ndim > 0 ? ndim : 1;
    if (dim < -n || dim >= n)
        return error_set("%s: dimension %d out of range for a %d-d tensor (expected %d..%d)", what,
                         dim, ndim, -n, n - 1);
    return dim < 0 ? dim + n : dim;
}

/* ------------------------------------------------------------------------ */
/* views                                                                    */

Tensor *tensor_make_view(Tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                         int64_t offset) {
    Tensor *v = tensor_alloc_header(ndim, shape, t->dtype, t->device);
    if (!v) return NULL;
    if (ndim) memcpy(v->strides, strides, (size_t)ndim * sizeof *strides);
    v->offset = offset;
    v->storage = t->storage;
    atomic_fetch_add(&t->storage->refcount, 1);
    return v;
}

/* dst's memory becomes src's (tensor.h). */
int tensor_adopt_storage(Tensor *dst, Tensor *src) {
    if (dst->dtype != src->dtype || !device_equal(dst->device, src->device) ||
        !tensor_same_shape(dst, src) || !tensor_is_contiguous(dst) || !tensor_is_contiguous(src))
        return error_set("adopt_storage: needs two contiguous tensors of one dtype, device "
                         "and shape");
    atomic_fetch_add(&src->storage->refcount, 1);
    storage_release(dst->storage);
    dst->storage = src->storage;
    dst->offset = src->offset;
    return 0;
}
