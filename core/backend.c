/* backend.c - maps a device to its kernel table. The CPU backend is always
 * there; gpu/ registers the CUDA one at start-up when it finds devices. */
#include "core/backend.h"

#include "core/error.h"

static const Backend *cuda_backend;
static int cuda_device_count;

void backend_register_cuda(const Backend *cuda, int device_count) {
    cuda_backend = cuda;
    cuda_device_count = device_count;
}

int backend_cuda_device_count(void) { return cuda_backend ? cuda_device_count : 0; }

const Backend *backend_for(Device device) {
    if (device.type == DEVICE_CPU) return &cpu_backend;
    if (!cuda_backend) {
        error_set("device cuda:%d: this build has no CUDA backend or no GPU was found",
                  device.index);
        return NULL;
    }
    if (device.index < 0 || device.index >= cuda_device_count) {
        error_set("device cuda:%d: only %d CUDA device(s) present", device.index,
                  cuda_device_count);
        return NULL;
    }
    return cuda_backend;
}

const char *precision_name(Precision p) {
    return p == PRECISION_BF16 ? "bf16" : "float32";
}

int backend_check_precision(Device device, Precision p) {
    const Backend *be = backend_for(device);
    if (!be) return -1;
    if (p == PRECISION_FLOAT32) return 0;
    if (be->check_precision) return be->check_precision(device, p);
    char name[32];
    return error_set("%s is not available on %s, which computes in float32 only",
                     precision_name(p), device_name(device, name, sizeof name));
}

bool backend_window2d_2x2(const Window2d *w) {
    return w->kernel_h == 2 && w->kernel_w == 2 && w->stride_h == 2 && w->stride_w == 2 &&
           w->pad_h == 0 && w->pad_w == 0 && w->dilation_h == 1 && w->dilation_w == 1;
}

void backend_channel_dims(const Tensor *t, int64_t lanes, int64_t *n, int64_t *c, int64_t *s) {
    int spatial_end = lanes > 1 ? t->ndim - 1 : t->ndim;
    *n = t->shape[0];
    *c = (t->ndim > 1 ? t->shape[1] : 1) * lanes;
    *s = 1;
    for (int d = 2; d < spatial_end; d++) *s *= t->shape[d];
}
