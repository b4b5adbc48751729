/* tensor_copy.c - copies: contiguous, to a dtype, to a device, copy_,
 * fill_; see tensor.h.
 *
 * A copy to another dtype or device is recorded by autograd (CopyBackward
 * brings the gradient back to the input's dtype and device); copy_ and
 * fill_ write in place through the destination's backend.
 */

#include "core/tensor.h"

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

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
    size_t bytes = (size_t)tensor_numel(src) * dtype_size(src->dtype);
    if (src_c && src->device.type != DEVICE_CPU) {
        staged = tensor_empty(src->ndim, src->shape, src->dtype, DEVICE_CPU_INIT);
        if (staged && backend_for(src->device)->to_host(src->device, tensor_data(staged),
                                                        tensor_data(src_c), bytes) == 0) {
            rc = tensor_copy_(dst, staged);
        }
    } else if (src_c) { /* host -> device */
        Tensor *dst_c = dst;
        bool direct = tensor_is_contiguous(dst) && dst->dtype == src->dtype;
        if (!direct) dst_c = tensor_empty(dst->ndim, dst->shape, src->dtype, dst->device);
        if (dst_c && backend_for(dst->device)->from_host(dst->device, tensor_data(dst_c),
                                                         tensor_data(src_c), bytes) == 0)
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
