/* tensor.h - n-dimensional tensors with a dtype, a device, and views.
 *
 * A Tensor is a view (shape, strides, offset) over a refcounted Storage, as in
 * PyTorch: view/reshape/transpose/unsqueeze share storage, only contiguous()
 * and to() copy. Tensors are refcounted too: every function returning a
 * Tensor* hands the caller one reference, released with tensor_release().
 * On failure they return NULL and leave a message in error_get(); passing
 * NULL in is allowed and simply propagates (the error message is kept).
 *
 * The autograd fields (requires_grad, grad, grad_fn) are documented in
 * autograd.h. Math on tensors lives in ops.h; the per-device kernels behind
 * it in backend.h.
 */
#ifndef TRAIND_CORE_TENSOR_H
#define TRAIND_CORE_TENSOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TENSOR_MAX_DIMS 8
/* Channels per block of the blocked layout [N, C/16, H, W, 16]
 * (core/ops.h's blocked layout section). */
#define TENSOR_BLOCK 16

typedef enum { DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_INT64, DTYPE_UINT8 } DType;

typedef enum { DEVICE_CPU, DEVICE_CUDA } DeviceType;
typedef struct {
    DeviceType type;
    int index; /* cuda:N; 0 for the CPU */
} Device;

#define DEVICE_CPU_INIT ((Device){DEVICE_CPU, 0})

typedef struct Storage {
    void *data; /* host or device pointer, per `device` */
    size_t nbytes;
    Device device;
    /* host memory page-locked by pinned_for's backend (tensor_empty_pinned),
     * and given back through it */
    bool pinned;
    Device pinned_for;
    atomic_int refcount;
} Storage;

typedef struct AutogradNode AutogradNode;

typedef struct Tensor Tensor;
struct Tensor {
    Storage *storage;
    int64_t offset; /* in elements, into storage */
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t strides[TENSOR_MAX_DIMS]; /* in elements; 0 for broadcast dims */
    DType dtype;
    Device device;
    int refcount;

    /* autograd (autograd.h) */
    bool requires_grad;
    Tensor *grad;          /* accumulated gradient of a leaf, or NULL */
    AutogradNode *grad_fn; /* the op that produced this tensor, or NULL for leaves */
    Tensor *backward_grad; /* scratch used while backward() runs */
    bool graph_freed;      /* a backward() freed grad_fn: not a leaf, not reusable */

    Tensor *release_next; /* link in tensor_release's pending-free list, once dead */
};

/* Shapes are passed as (ndim, int64_t *shape). SHAPE(2, 3) expands to both. */
#define SHAPE(...)                                                   \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),       \
        (const int64_t[]) { __VA_ARGS__ }

/* ---- dtype and device ---- */
size_t dtype_size(DType dtype);
const char *dtype_name(DType dtype); /* "float32", ... as torch spells them */
int dtype_parse(const char *name, DType *out);
bool dtype_is_float(DType dtype);
const char *device_name(Device device, char *buf, size_t n); /* "cpu", "cuda:0" */
int device_parse(const char *name, Device *out);                /* "cpu", "cuda", "cuda:1" */
bool device_equal(Device a, Device b);
/* A list of devices as text, "cuda:0,cuda:2" (a job's GPUs): how many it
 * names, and entry i parsed (-1 with an error naming the list). */
int device_list_count(const char *list);
int device_list_get(const char *list, int i, Device *out);

/* Element i of a host buffer of `dtype`, as a double, and back (values
 * are converted as a C cast does). For loaders, copies and tests. */
static inline double dtype_load(const void *base, DType dtype, int64_t i) {
    switch (dtype) {
    case DTYPE_FLOAT32: return ((const float *)base)[i];
    case DTYPE_FLOAT64: return ((const double *)base)[i];
    case DTYPE_INT64: return (double)((const int64_t *)base)[i];
    case DTYPE_UINT8: return ((const uint8_t *)base)[i];
    }
    return 0;
}

static inline void dtype_store(void *base, DType dtype, int64_t i, double v) {
    switch (dtype) {
    case DTYPE_FLOAT32: ((float *)base)[i] = (float)v; break;
    case DTYPE_FLOAT64: ((double *)base)[i] = v; break;
    case DTYPE_INT64: ((int64_t *)base)[i] = (int64_t)v; break;
    case DTYPE_UINT8: ((uint8_t *)base)[i] = (uint8_t)v; break;
    }
}

/* ---- creation ---- */
Tensor *tensor_empty(int ndim, const int64_t *shape, DType dtype, Device device);
/* A CPU tensor in page-locked memory that `for_device` copies from at full
 * speed (as torch's pin_memory); plain memory where that device has none
 * to give (the CPU itself, or pinning failed). tensor_is_pinned tells. */
Tensor *tensor_empty_pinned(int ndim, const int64_t *shape, DType dtype, Device for_device);
bool tensor_is_pinned(const Tensor *t);
Tensor *tensor_zeros(int ndim, const int64_t *shape, DType dtype, Device device);
Tensor *tensor_full(int ndim, const int64_t *shape, double value, DType dtype, Device device);
Tensor *tensor_scalar(double value, DType dtype, Device device); /* 0-dim */
/* Copies a host buffer holding numel elements of `dtype` into a new CPU tensor. */
Tensor *tensor_from_buffer(const void *data, int ndim, const int64_t *shape, DType dtype);
/* Converts numel doubles into a new CPU tensor of `dtype`. */
Tensor *tensor_from_doubles(const double *values, int ndim, const int64_t *shape, DType dtype);
/* Parses nested values as torch.tensor does: "[[1, 2], [3, 4]]", "3.5".
 * Ragged lists and non-numbers are errors naming the byte offset. */
Tensor *tensor_from_string(const char *text, DType dtype);
/* Like torch.empty_like: same shape, dtype and device; contiguous. */
Tensor *tensor_empty_like(const Tensor *t);
Tensor *tensor_zeros_like(const Tensor *t);

/* ---- references ---- */
Tensor *tensor_retain(Tensor *t); /* returns t */
void tensor_release(Tensor *t);   /* NULL is fine */

/* ---- inspection ---- */
int64_t tensor_numel(const Tensor *t);
bool tensor_is_contiguous(const Tensor *t);
/* Pointer to the first element (host or device memory, per t->device). */
void *tensor_data(const Tensor *t);
/* Reads element `flat` (row-major index over the logical shape) as a double.
 * CPU tensors only; for tests and small reads. */
double tensor_get(const Tensor *t, int64_t flat);
/* The value of a one-element tensor (copied from the device if needed).
 * Returns NAN and sets an error if t does not hold exactly one element. */
double tensor_item(const Tensor *t);
/* Copies all elements, in logical row-major order, to host doubles. */
int tensor_to_doubles(const Tensor *t, double *out, int64_t n);
/* "[2, 3]" */
const char *tensor_shape_str(const Tensor *t, char *buf, size_t n);
const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
/* Whether the non-negative sizes of a shape, its zeros left out, multiply
 * to at most `limit`: a tensor of that shape, its strides included, can be
 * counted in int64 (a zero alone would let [0, 2^62, 2^62] through). */
bool shape_fits(int ndim, const int64_t *shape, uint64_t limit);
bool tensor_same_shape(const Tensor *a, const Tensor *b);

/* ---- views (share storage; recorded by autograd) ---- */
/* view(shape) with at most one -1; fails unless the strides allow it. */
Tensor *tensor_view(Tensor *t, int ndim, const int64_t *shape);
/* reshape: a view when possible, otherwise a contiguous copy. */
Tensor *tensor_reshape(Tensor *t, int ndim, const int64_t *shape);
Tensor *tensor_unsqueeze(Tensor *t, int dim);
Tensor *tensor_squeeze(Tensor *t, int dim); /* dim < -ndim..ndim-1; no-op if size != 1 */
Tensor *tensor_squeeze_all(Tensor *t);
Tensor *tensor_flatten(Tensor *t, int start_dim, int end_dim);
Tensor *tensor_transpose(Tensor *t, int dim0, int dim1);
Tensor *tensor_permute(Tensor *t, const int *dims); /* t->ndim entries */
/* Broadcast view to `shape` (stride 0 in expanded dims), as torch.expand. */
Tensor *tensor_expand(Tensor *t, int ndim, const int64_t *shape);
/* Elements [start, start+length) of dimension `dim`, as torch.narrow. */
Tensor *tensor_narrow(Tensor *t, int dim, int64_t start, int64_t length);

/* ---- copies ---- */
Tensor *tensor_contiguous(Tensor *t); /* t retained if already contiguous */
Tensor *tensor_clone(Tensor *t);      /* always a fresh contiguous copy */
/* t in contiguous host memory, to read on the CPU: t itself when it is
 * (retained), else a copy. Not recorded by autograd. */
Tensor *tensor_host_contiguous(Tensor *t);
Tensor *tensor_to_dtype(Tensor *t, DType dtype);
Tensor *tensor_to_device(Tensor *t, Device device);
/* A contiguous copy of the host tensor t on `device`, not recorded by
 * autograd, for a background thread such as the DataLoader's prefetch: the
 * bytes go beside the device's queued kernels (the backend's
 * from_host_beside) instead of waiting behind them. */
Tensor *tensor_upload(Tensor *t, Device device);
/* Copy src's values into dst in place (same numel; dtype converted). Not
 * recorded by autograd: for optimizers, loading weights, buffers. */
int tensor_copy_(Tensor *dst, const Tensor *src);
int tensor_fill_(Tensor *t, double value);
/* dst's memory becomes src's, its own given back (or to its other
 * holders): dst then reads src's values. Both contiguous, of one dtype,
 * device and shape; -1 with an error otherwise. Not recorded by autograd:
 * for an op whose input's old values nothing reads any more. */
int tensor_adopt_storage(Tensor *dst, Tensor *src);

/* Normalises a possibly negative dim against ndim; -1 with an error if out of
 * range. `what` names the caller in the message ("unsqueeze"). */
int tensor_wrap_dim(int dim, int ndim, const char *what);

/* Make a view tensor sharing t's storage (no autograd). Used by view ops. */
Tensor *tensor_make_view(Tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                         int64_t offset);

#endif
