/* batch_norm.c - nn.BatchNorm1d and nn.BatchNorm2d.
 *
 * Parameters weight (ones) and bias (zeros) when affine; buffers
 * running_mean (zeros), running_var (ones) and num_batches_tracked (int64
 * 0-dim) when track_running_stats, registered in torch's order so the
 * state_dict keys match. forward follows torch's _BatchNorm.forward:
 *  - training with running stats: num_batches_tracked += 1, normalise with
 *    the batch statistics and update the running ones with `momentum` (or
 *    1/num_batches_tracked when momentum is None, here NAN);
 *  - eval with running stats: normalise with the running ones;
 *  - no running stats: batch statistics in both modes.
 * The math is tensor_batch_norm. 1d takes [N, C] or [N, C, L]; 2d takes
 * [N, C, H, W].
 */
#include <math.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

typedef struct {
    Module base;
    int64_t num_features;
    double eps, momentum;
    bool affine, track_running_stats;
    bool is_2d;
} BatchNorm;

int nn_batch_norm_shape(int64_t num_features, bool is_2d, int ndim, const int64_t *in,
                        int *out_ndim, int64_t *out) {
    char s[128];
    if (is_2d && ndim != 4)
        return error_set("expected a 4-d input [N, C, H, W], got %s",
                         shape_str(ndim, in, s, sizeof s));
    if (!is_2d && ndim != 2 && ndim != 3)
        return error_set("expected a 2-d or 3-d input [N, C] or [N, C, L], got %s",
                         shape_str(ndim, in, s, sizeof s));
    if (in[1] != num_features)
        return error_set("num_features=%lld but its input has %lld %s (input %s)",
                         (long long)num_features, (long long)in[1],
                         ndim == 2 ? "features" : "channels", shape_str(ndim, in, s, sizeof s));
    return module_infer_same_shape(NULL, ndim, in, out_ndim, out);
}

static int batch_norm_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim,
                                  int64_t *out) {
    const BatchNorm *b = (const BatchNorm *)m;
    return nn_batch_norm_shape(b->num_features, b->is_2d, ndim, in, out_ndim, out);
}

/* num_batches_tracked += 1 where it lives, on the device: reading it back
 * would make the host wait for the device at every BatchNorm (and a CUDA
 * graph could not hold the step). Through float64, exact below 2^53. */
static int count_batch(Tensor *tracked) {
    bool prev = autograd_set_enabled(false);
    Tensor *n = tensor_to_dtype(tracked, DTYPE_FLOAT64);
    Tensor *n1 = n ? tensor_add_scalar(n, 1) : NULL;
    int rc = n1 ? tensor_copy_(tracked, n1) : -1;
    tensor_release(n), tensor_release(n1);
    autograd_set_enabled(prev);
    return rc;
}

/* torch's exponential_average_factor for momentum None, 1.0 /
 * (num_batches_tracked + 1) in float64, as a 0-dim tensor where the count
 * lives: no read back. */
static Tensor *cumulative_factor(Tensor *tracked) {
    bool prev = autograd_set_enabled(false);
    Tensor *n = tensor_to_dtype(tracked, DTYPE_FLOAT64);
    Tensor *n1 = n ? tensor_add_scalar(n, 1) : NULL;
    Tensor *one = n1 ? tensor_scalar(1.0, DTYPE_FLOAT64, tracked->device) : NULL;
    Tensor *f = one ? tensor_div(one, n1) : NULL;
    tensor_release(n), tensor_release(n1), tensor_release(one);
    autograd_set_enabled(prev);
    return f;
}

bool nn_batch_norm_batch_stats(const Module *m, bool training) {
    return training || !((const BatchNorm *)m)->track_running_stats;
}

/* x in NCHW, or where `blocked` the blocked layout (core/ops.h). */
static Tensor *batch_norm_run(Module *m, Tensor *x, bool blocked) {
    const BatchNorm *b = (const BatchNorm *)m;
    Tensor *running_mean = module_get(m, "running_mean");
    Tensor *running_var = module_get(m, "running_var");
    Tensor *tracked = module_get(m, "num_batches_tracked");
    bool update = m->training && b->track_running_stats;
    Tensor *factor = NULL; /* momentum None: the cumulative average's */
    if (update && isnan(b->momentum) && !(factor = cumulative_factor(tracked))) return NULL;
    bool use_batch_stats = m->training || !b->track_running_stats;
    /* m->dist: SyncBatchNorm in a data-parallel job */
    Tensor *y = (blocked ? tensor_batch_norm_blocked : tensor_batch_norm_sync)(
        x, running_mean, running_var, module_get(m, "weight"), module_get(m, "bias"),
        use_batch_stats, b->momentum, factor, b->eps, m->dist);
    tensor_release(factor);
    if (y && update && count_batch(tracked) != 0) {
        tensor_release(y);
        return NULL;
    }
    return y;
}

static Tensor *batch_norm_forward(Module *m, Tensor *x) { return batch_norm_run(m, x, false); }

static Tensor *batch_norm_forward_blocked(Module *m, Tensor *x) {
    Tensor *y = batch_norm_run(m, x, true);
    tensor_release(x);
    return y;
}

static const ModuleVTable batch_norm1d_vtable = {
    .type = "BatchNorm1d",
    .forward = batch_norm_forward,
    .infer_shape = batch_norm_infer_shape,
};
static const ModuleVTable batch_norm2d_vtable = {
    .type = "BatchNorm2d",
    .forward = batch_norm_forward,
    .infer_shape = batch_norm_infer_shape,
    .forward_blocked = batch_norm_forward_blocked,
};

static Module *batch_norm_new(const ModuleVTable *vt, bool is_2d, int64_t num_features,
                              double eps, double momentum, bool affine,
                              bool track_running_stats) {
    const char *type = vt->type;
    if (num_features <= 0)
        return error_set("%s: num_features must be positive, got %lld", type,
                         (long long)num_features), NULL;
    if (!(eps > 0)) return error_set("%s: eps must be positive, got %g", type, eps), NULL;
    if (!isnan(momentum) && !(momentum >= 0 && momentum <= 1))
        return error_set("%s: momentum must be in [0, 1] (or None), got %g", type, momentum),
               NULL;
    BatchNorm *b = (BatchNorm *)module_alloc(sizeof *b, vt);
    if (!b) return NULL;
    b->num_features = num_features;
    b->eps = eps;
    b->momentum = momentum;
    b->affine = affine;
    b->track_running_stats = track_running_stats;
    b->is_2d = is_2d;
    Module *m = &b->base;
    const Device cpu = DEVICE_CPU_INIT;
    int64_t c = num_features;
    int rc = 0;
    if (affine) {
        rc = module_add_param(m, "weight", tensor_full(1, &c, 1.0, DTYPE_FLOAT32, cpu));
        if (rc == 0) rc = module_add_param(m, "bias", tensor_zeros(1, &c, DTYPE_FLOAT32, cpu));
    }
    if (rc == 0 && track_running_stats) {
        rc = module_add_buffer(m, "running_mean", tensor_zeros(1, &c, DTYPE_FLOAT32, cpu));
        if (rc == 0)
            rc = module_add_buffer(m, "running_var", tensor_full(1, &c, 1.0, DTYPE_FLOAT32, cpu));
        if (rc == 0)
            rc = module_add_buffer(m, "num_batches_tracked", tensor_scalar(0, DTYPE_INT64, cpu));
    }
    if (rc != 0) {
        error_prefix("%s", type);
        module_free(m);
        return NULL;
    }
    return m;
}

Module *nn_batch_norm1d(int64_t num_features, double eps, double momentum, bool affine,
                        bool track_running_stats) {
    return batch_norm_new(&batch_norm1d_vtable, false, num_features, eps, momentum, affine,
                          track_running_stats);
}

Module *nn_batch_norm2d(int64_t num_features, double eps, double momentum, bool affine,
                        bool track_running_stats) {
    return batch_norm_new(&batch_norm2d_vtable, true, num_features, eps, momentum, affine,
                          track_running_stats);
}
