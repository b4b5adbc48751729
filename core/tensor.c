/* tensor.c - tensor creation, refcounting, inspection and views.
 *
 * Storage is allocated through the device's backend, so the same code makes
 * CPU and CUDA tensors. Views share storage and are recorded by autograd as
 * ViewBackward nodes, whose backward reshapes (or re-permutes) the gradient.
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
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return error_set("tensor: negative size %lld in dimension %d", (long long)shape[i], i),
                   NULL;
        /* every later numel product relies on this one fitting */
        if (__builtin_mul_overflow(numel, shape[i], &numel)) {
            char s[160];
            return error_set("tensor: shape %s has too many elements",
                             shape_str(ndim, shape, s, sizeof s)),
                   NULL;
        }
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

/* Backward of every view: ints[0] says which kind, the rest its arguments. */
enum { VIEW_RESHAPE, VIEW_PERMUTE, VIEW_EXPAND, VIEW_NARROW };

static int view_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *in = node->inputs[0];
    switch (node->ints[0]) {
    case VIEW_RESHAPE: {
        Tensor *c = tensor_contiguous(gy);
        gx[0] = tensor_view(c, in->ndim, in->shape);
        tensor_release(c);
        break;
    }
    case VIEW_PERMUTE: { /* invert the permutation */
        int inverse[TENSOR_MAX_DIMS];
        for (int i = 0; i < in->ndim; i++) inverse[node->ints[1 + i]] = i;
        gx[0] = tensor_permute(gy, inverse);
        break;
    }
    case VIEW_EXPAND:
        gx[0] = autograd_reduce_to_shape(gy, in->ndim, in->shape);
        break;
    case VIEW_NARROW: { /* zeros with gy placed in the narrowed window */
        int dim = (int)node->ints[1];
        Tensor *z = tensor_zeros_like(in);
        Tensor *window = tensor_narrow(z, dim, node->ints[2], gy->shape[dim]);
        if (tensor_copy_(window, gy) != 0) {
            tensor_release(z);
            z = NULL;
        }
        tensor_release(window);
        gx[0] = z;
        break;
    }
    }
    return gx[0] ? 0 : -1;
}

/* Wraps a fresh view of t with its autograd node. */
static Tensor *finish_view(Tensor *t, Tensor *v, int kind, const int64_t *args, int nargs) {
    if (!v || !autograd_needs_grad(1, &t)) return v;
    AutogradNode *node = autograd_record(v, "ViewBackward", view_backward, 1, &t);
    if (!node) {
        tensor_release(v);
        return NULL;
    }
    node->ints[0] = kind;
    for (int i = 0; i < nargs; i++) node->ints[1 + i] = args[i];
    return v;
}

/* Resolves a single -1 in `shape` against numel. */
static int infer_shape(const char *what, const Tensor *t, int ndim, const int64_t *shape,
                       int64_t *out) {
    char buf[160];
    int64_t known = 1;
    int infer = -1;
    if (ndim > TENSOR_MAX_DIMS)
        return error_set("%s: %d dimensions (at most %d)", what, ndim, TENSOR_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return error_set("%s: only one dimension can be -1", what);
            infer = i;
        } else if (shape[i] < 0) {
            return error_set("%s: invalid size %lld in dimension %d", what, (long long)shape[i], i);
        } else {
            known *= shape[i];
        }
    }
    int64_t numel = tensor_numel(t);
    if (infer >= 0 && known != 0 && numel % known == 0) out[infer] = numel / known;
    int64_t total = 1;
    for (int i = 0; i < ndim; i++) total *= out[i];
    if (total != numel || (infer >= 0 && known == 0)) {
        /* e.g. "view(3, -1) of a tensor of 10 elements" */
        size_t used = (size_t)snprintf(buf, sizeof buf, "%s(", what);
        for (int i = 0; i < ndim && used < sizeof buf; i++)
            used += (size_t)snprintf(buf + used, sizeof buf - used, i ? ", %lld" : "%lld",
                                     (long long)shape[i]);
        return error_set("%s) of a tensor of %lld elements", buf, (long long)numel);
    }
    return 0;
}

/* Strides for viewing t as `shape` without copying, or false if the memory
 * layout does not allow it (PyTorch's computeStride). */
static bool view_strides(const Tensor *t, int ndim, const int64_t *shape, int64_t *strides) {
    if (tensor_numel(t) == 0 || tensor_is_contiguous(t)) {
        int64_t stride = 1;
        for (int i = ndim - 1; i >= 0; i--) {
            strides[i] = stride;
            stride *= shape[i] ? shape[i] : 1;
        }
        return true;
    }
    /* Walk chunks of old dims that are mutually contiguous. */
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->ndim ? t->strides[t->ndim - 1] : 1;
    int64_t tensor_numel_chunk = 1, view_numel = 1;
    for (int td = t->ndim - 1; td >= 0; td--) {
        tensor_numel_chunk *= t->shape[td];
        if (td == 0 || (t->shape[td - 1] != 1 &&
                        t->strides[td - 1] != tensor_numel_chunk * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel_chunk || shape[view_d] == 1)) {
                strides[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel_chunk) return false;
            if (td > 0) {
                chunk_base_stride = t->strides[td - 1];
                tensor_numel_chunk = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

Tensor *tensor_view(Tensor *t, int ndim, const int64_t *shape) {
    if (!t) return NULL;
    int64_t resolved[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    if (infer_shape("view", t, ndim, shape, resolved) != 0) return NULL;
    if (!view_strides(t, ndim, resolved, strides)) {
        char a[128], b[128];
        error_set("view: cannot view a non-contiguous tensor of shape %s as %s; use reshape",
                  tensor_shape_str(t, a, sizeof a), shape_str(ndim, resolved, b, sizeof b));
        return NULL;
    }
    Tensor *v = tensor_make_view(t, ndim, resolved, strides, t->offset);
    return finish_view(t, v, VIEW_RESHAPE, NULL, 0);
}

Tensor *tensor_reshape(Tensor *t, int ndim, const int64_t *shape) {
    if (!t) return NULL;
    int64_t resolved[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    if (infer_shape("reshape", t, ndim, shape, resolved) != 0) return NULL;
    if (view_strides(t, ndim, resolved, strides)) return tensor_view(t, ndim, resolved);
    Tensor *c = tensor_contiguous(t);
    Tensor *v = tensor_view(c, ndim, resolved);
    tensor_release(c);
    return v;
}

Tensor *tensor_unsqueeze(Tensor *t, int dim) {
    if (!t) return NULL;
    if (t->ndim >= TENSOR_MAX_DIMS)
        return error_set("unsqueeze: tensor already has %d dimensions", t->ndim), NULL;
    int d = tensor_wrap_dim(dim, t->ndim + 1, "unsqueeze");
    if (d < 0) return NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    for (int i = 0, j = 0; i <= t->ndim; i++) shape[i] = (i == d) ? 1 : t->shape[j++];
    return tensor_view(t, t->ndim + 1, shape);
}

Tensor *tensor_squeeze(Tensor *t, int dim) {
    if (!t) return NULL;
    if (t->ndim == 0) return tensor_view(t, 0, NULL);
    int d = tensor_wrap_dim(dim, t->ndim, "squeeze");
    if (d < 0) return NULL;
    if (t->shape[d] != 1) return tensor_view(t, t->ndim, t->shape);
    int64_t shape[TENSOR_MAX_DIMS];
    for (int i = 0, j = 0; i < t->ndim; i++)
        if (i != d) shape[j++] = t->shape[i];
    return tensor_view(t, t->ndim - 1, shape);
}

Tensor *tensor_squeeze_all(Tensor *t) {
    if (!t) return NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) shape[n++] = t->shape[i];
    return tensor_view(t, n, shape);
}

Tensor *tensor_flatten(Tensor *t, int start_dim, int end_dim) {
    if (!t) return NULL;
    if (t->ndim == 0) return tensor_reshape(t, SHAPE(1));
    int s = tensor_wrap_dim(start_dim, t->ndim, "flatten");
    int e = tensor_wrap_dim(end_dim, t->ndim, "flatten");
    if (s < 0 || e < 0) return NULL;
    if (s > e) return error_set("flatten: start_dim %d is after end_dim %d", start_dim, end_dim), NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < s; i++) shape[n++] = t->shape[i];
    int64_t merged = 1;
    for (int i = s; i <= e; i++) merged *= t->shape[i];
    shape[n++] = merged;
    for (int i = e + 1; i < t->ndim; i++) shape[n++] = t->shape[i];
    return tensor_reshape(t, n, shape);
}

Tensor *tensor_permute(Tensor *t, const int *dims) {
    if (!t) return NULL;
    int64_t shape[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS], perm[TENSOR_MAX_DIMS];
    bool seen[TENSOR_MAX_DIMS] = {false};
    for (int i = 0; i < t->ndim; i++) {
        int d = tensor_wrap_dim(dims[i], t->ndim, "permute");
        if (d < 0) return NULL;
        if (seen[d]) return error_set("permute: dimension %d repeated", d), NULL;
        seen[d] = true;
        perm[i] = d;
        shape[i] = t->shape[d];
        strides[i] = t->strides[d];
    }
    Tensor *v = tensor_make_view(t, t->ndim, shape, strides, t->offset);
    return finish_view(t, v, VIEW_PERMUTE, perm, t->ndim);
}

Tensor *tensor_transpose(Tensor *t, int dim0, int dim1) {
    if (!t) return NULL;
    int a = tensor_wrap_dim(dim0, t->ndim, "transpose");
    int b = tensor_wrap_dim(dim1, t->ndim, "transpose");
    if (a < 0 || b < 0) return NULL;
    int dims[TENSOR_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) dims[i] = i;
    dims[a] = b;
    dims[b] = a;
    return tensor_permute(t, dims);
}

Tensor *tensor_expand(Tensor *t, int ndim, const int64_t *shape) {
    if (!t) return NULL;
    char a[128], b[128];
    if (ndim < t->ndim || ndim > TENSOR_MAX_DIMS)
        return error_set("expand: cannot expand %s to %s", tensor_shape_str(t, a, sizeof a),
                         shape_str(ndim, shape, b, sizeof b)),
               NULL;
    int64_t out_shape[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int64_t size = i < lead ? 1 : t->shape[i - lead];
        int64_t stride = i < lead ? 0 : t->strides[i - lead];
        if (shape[i] == -1 && i >= lead) {
            out_shape[i] = size;
            strides[i] = stride;
        } else if (size == shape[i]) {
            out_shape[i] = size;
            strides[i] = stride;
        } else if (size == 1 && shape[i] >= 0) {
            out_shape[i] = shape[i];
            strides[i] = 0;
        } else {
            return error_set("expand: cannot expand %s to %s (dimension %d)",
                             tensor_shape_str(t, a, sizeof a), shape_str(ndim, shape, b, sizeof b),
                             i),
                   NULL;
        }
    }
    Tensor *v = tensor_make_view(t, ndim, out_shape, strides, t->offset);
    return finish_view(t, v, VIEW_EXPAND, NULL, 0);
}

Tensor *tensor_narrow(Tensor *t, int dim, int64_t start, int64_t length) {
    if (!t) return NULL;
    int d = tensor_wrap_dim(dim, t->ndim, "narrow");
    if (d < 0) return NULL;
    if (start < 0 || length < 0 || start + length > t->shape[d])
        return error_set("narrow: [%lld, %lld) is outside dimension %d of size %lld",
                         (long long)start, (long long)(start + length), d,
                         (long long)t->shape[d]),
               NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[d] = length;
    Tensor *v = tensor_make_view(t, t->ndim, shape, t->strides, t->offset + start * t->strides[d]);
    int64_t args[2] = {d, start};
    return finish_view(t, v, VIEW_NARROW, args, 2);
}

/* ------------------------------------------------------------------------ */
/* copies                                                                   */

static int copy_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *in = node->inputs[0];
    Tensor *g = tensor_to_device(gy, in->device);
    gx[0] = tensor_to_dtype(g, in->dtype);
    tensor_release(g);
    return gx[0] ? 0 : -1;
}

/* A fresh contiguous copy of t with `dtype` on `device`, recorded. */
static Tensor *copy_as(Tensor *t, DType dtype, Device device) {
    Tensor *out = tensor_empty(t->ndim, t->shape, dtype, device);
    if (!out) return NULL;
    if (tensor_copy_(out, t) != 0) {
        tensor_release(out);
        return NULL;
    }
    if (dtype_is_float(dtype) && autograd_needs_grad(1, &t) &&
        !autograd_record(out, "CopyBackward", copy_backward, 1, &t)) {
        tensor_release(out);
        return NULL;
    }
    return out;
}

Tensor *tensor_contiguous(Tensor *t) {
    if (!t) return NULL;
    if (tensor_is_contiguous(t)) return tensor_retain(t);
    return copy_as(t, t->dtype, t->device);
}

Tensor *tensor_clone(Tensor *t) { return t ? copy_as(t, t->dtype, t->device) : NULL; }

Tensor *tensor_host_contiguous(Tensor *t) {
    if (!t) return NULL;
    bool prev = autograd_set_enabled(false);
    Tensor *c = t->device.type == DEVICE_CPU ? tensor_contiguous(t)
                                             : copy_as(t, t->dtype, DEVICE_CPU_INIT);
    autograd_set_enabled(prev);
    return c;
}

Tensor *tensor_to_dtype(Tensor *t, DType dtype) {
    if (!t) return NULL;
    if (t->dtype == dtype) return tensor_retain(t);
    return copy_as(t, dtype, t->device);
}

Tensor *tensor_to_device(Tensor *t, Device device) {
    if (!t) return NULL;
    if (device_equal(t->device, device)) return tensor_retain(t);
    return copy_as(t, t->dtype, device);
}

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

int tensor_copy_(Tensor *dst, const Tensor *src) {
    if (!dst || !src) return -1;
    char a[128], b[128];
    if (tensor_numel(dst) != tensor_numel(src))
        return error_set("copy: source of shape %s into destination of shape %s",
                         tensor_shape_str(src, a, sizeof a), tensor_shape_str(dst, b, sizeof b));
    if (tensor_numel(dst) == 0) return 0;
    /* Same device: the backend copies any strides and converts dtypes. */
    if (device_equal(dst->device, src->device)) {
        Tensor *s = (Tensor *)src, *shaped = NULL;
        if (!tensor_same_shape(dst, src)) {
            /* Different shapes of equal numel: copy in row-major order. */
            bool prev = autograd_set_enabled(false);
            Tensor *c = tensor_contiguous(s);
            shaped = tensor_view(c, dst->ndim, dst->shape);
            tensor_release(c);
            autograd_set_enabled(prev);
            if (!shaped) return -1;
            s = shaped;
        }
        backend_for(dst->device)->copy(s, dst);
        tensor_release(shaped);
        return 0;
    }
    /* Across devices: stage through a contiguous host buffer of src's dtype. */
    bool prev = autograd_set_enabled(false);
    int rc = -1;
    Tensor *src_c = tensor_contiguous((Tensor *)src);
    Tensor *staged = NULL;
    if (src_c && src->device.type != DEVICE_CPU) {
        staged = tensor_empty(src->ndim, src->shape, src->dtype, DEVICE_CPU_INIT);
        if (staged &&
            backend_for(src->device)->to_host(src->device, tensor_data(staged), tensor_data(src_c),
                                              (size_t)tensor_numel(src) * dtype_size(src->dtype)) == 0) {
            rc = tensor_copy_(dst, staged);
        }
    } else if (src_c) { /* host -> device */
        Tensor *dst_c = dst;
        bool direct = tensor_is_contiguous(dst) && dst->dtype == src->dtype;
        if (!direct) dst_c = tensor_empty(dst->ndim, dst->shape, src->dtype, dst->device);
        if (dst_c &&
            backend_for(dst->device)->from_host(dst->device, tensor_data(dst_c), tensor_data(src_c),
                                                (size_t)tensor_numel(src) * dtype_size(src->dtype)) == 0)
            rc = direct ? 0 : tensor_copy_(dst, dst_c);
        if (!direct) tensor_release(dst_c);
    }
    tensor_release(staged);
    tensor_release(src_c);
    autograd_set_enabled(prev);
    return rc;
}

Tensor *tensor_upload(Tensor *t, Device device) {
    if (!t) return NULL;
    if (t->device.type != DEVICE_CPU) {
        char d[32];
        return error_set("upload: the tensor is on %s, not the CPU",
                         device_name(t->device, d, sizeof d)), NULL;
    }
    const Backend *be = backend_for(device);
    if (!be) return NULL;
    if (device.type == DEVICE_CPU) return tensor_retain(t);
    int (*copy)(Device, void *, const void *, size_t) =
        be->from_host_beside ? be->from_host_beside : be->from_host;
    bool prev = autograd_set_enabled(false);
    Tensor *src = tensor_contiguous(t);
    Tensor *out = src ? tensor_empty(t->ndim, t->shape, t->dtype, device) : NULL;
    if (out && copy(device, tensor_data(out), tensor_data(src),
                    (size_t)tensor_numel(t) * dtype_size(t->dtype)) != 0) {
        tensor_release(out);
        out = NULL;
    }
    tensor_release(src);
    autograd_set_enabled(prev);
    return out;
}

int tensor_fill_(Tensor *t, double value) {
    if (!t) return -1;
    if (tensor_is_contiguous(t)) {
        backend_for(t->device)->fill(t, value);
        return 0;
    }
    Tensor *tmp = tensor_full(t->ndim, t->shape, value, t->dtype, t->device);
    int rc = tensor_copy_(t, tmp);
    tensor_release(tmp);
    return rc;
}
