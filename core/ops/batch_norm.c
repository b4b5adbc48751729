/* batch_norm.c - batch normalisation over [N, C] and [N, C, *], as
 * torch.nn.functional.batch_norm.
 *
 * Statistics are per channel (dim 1), over the batch and every spatial
 * position. Training normalises with the batch mean and the biased batch
 * variance and, when running buffers are given, moves them towards the batch
 * statistics with the unbiased variance: running = (1 - momentum) * running
 * + momentum * batch. Eval normalises with the running buffers.
 *
 * The op is composed of existing ops (mean, sub, mul, pow), so autograd
 * follows without a hand-written backward; only the running-stat update runs
 * with grad mode off and writes the buffers in place with tensor_copy_.
 *
 * tensor_batch_norm_sync is SyncBatchNorm: in a data-parallel job the batch
 * statistics are those of the global batch, every rank's rows. The sums
 * (per channel of x, then of (x - mean)^2) go through the differentiable
 * all-reduce, so their backward sums the ranks' gradients as well, and the
 * result is the one-process batch norm of the whole batch.
 */
#include "core/autograd.h"
#include "core/dist/group.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/like_input.h"

static const char *OP = "batch_norm";

/* A per-channel tensor must be float [C] of x's dtype and device. */
static int check_channel_param(const char *what, const Tensor *t, const Tensor *x) {
    if (!t) return 0;
    char s[128], xs[128];
    if (ops_check_like_input(OP, what, t, x)) return -1;
    if (t->ndim != 1 || t->shape[0] != x->shape[1])
        return error_set("%s: %s of shape %s does not match the %lld channels of input %s", OP,
                         what, tensor_shape_str(t, s, sizeof s), (long long)x->shape[1],
                         tensor_shape_str(x, xs, sizeof xs));
    return 0;
}

static int check_args(const Tensor *x, const Tensor *rm, const Tensor *rv, const Tensor *w,
                      const Tensor *b, bool training, bool local_stats) {
    char s[128];
    if (!dtype_is_float(x->dtype))
        return error_set("%s: expected a float input, got %s", OP, dtype_name(x->dtype));
    if (x->ndim < 2)
        return error_set("%s: expected input of shape [N, C] or [N, C, *], got %s", OP,
                         tensor_shape_str(x, s, sizeof s));
    if (!rm != !rv)
        return error_set("%s: running_mean and running_var must be given together", OP);
    if (!training && !rm)
        return error_set("%s: running_mean and running_var are required in eval mode", OP);
    if (check_channel_param("running_mean", rm, x) || check_channel_param("running_var", rv, x) ||
        check_channel_param("weight", w, x) || check_channel_param("bias", b, x))
        return -1;
    if (training && local_stats && tensor_numel(x) / (x->shape[1] ? x->shape[1] : 1) == 1)
        return error_set("%s: expected more than 1 value per channel when training, got input of "
                         "shape %s",
                         OP, tensor_shape_str(x, s, sizeof s));
    return 0;
}

/* running = (1 - momentum) * running + momentum * batch, written in place. */
static int update_running(Tensor *running, Tensor *batch, double momentum) {
    Tensor *flat = tensor_reshape(batch, SHAPE(running->shape[0]));
    Tensor *a = tensor_mul_scalar(running, 1.0 - momentum);
    Tensor *b = tensor_mul_scalar(flat, momentum);
    Tensor *s = tensor_add(a, b);
    int rc = s ? tensor_copy_(running, s) : -1;
    tensor_release(flat), tensor_release(a), tensor_release(b), tensor_release(s);
    return rc;
}

/* The biased batch variance and mean over every rank's rows, and x - mean;
 * *count becomes the global values per channel. */
static int global_stats(Tensor *x, int n_dims, const int *dims, DistGroup *g, Tensor **mean,
                        Tensor **centred, Tensor **var, int64_t *count) {
    char s[128];
    *mean = *centred = *var = NULL;
    if (dist_all_reduce(g, count, 1, DTYPE_INT64) != 0) return -1;
    if (*count <= 1)
        return error_set("%s: expected more than 1 value per channel when training, got %lld "
                         "over all ranks (input %s on this one)",
                         OP, (long long)*count, tensor_shape_str(x, s, sizeof s));
    Tensor *sum = tensor_sum_dims(x, n_dims, dims, true);
    Tensor *total = tensor_all_reduce_sum(sum, g);
    *mean = total ? tensor_mul_scalar(total, 1.0 / (double)*count) : NULL;
    tensor_release(sum), tensor_release(total);
    *centred = *mean ? tensor_sub(x, *mean) : NULL;
    Tensor *sq = *centred ? tensor_mul(*centred, *centred) : NULL;
    Tensor *sqsum = sq ? tensor_sum_dims(sq, n_dims, dims, true) : NULL;
    Tensor *sqtotal = tensor_all_reduce_sum(sqsum, g);
    *var = sqtotal ? tensor_mul_scalar(sqtotal, 1.0 / (double)*count) : NULL;
    tensor_release(sq), tensor_release(sqsum), tensor_release(sqtotal);
    return *var ? 0 : -1;
}

Tensor *tensor_batch_norm(Tensor *x, Tensor *running_mean, Tensor *running_var, Tensor *weight,
                          Tensor *bias, bool training, double momentum, double eps) {
    return tensor_batch_norm_sync(x, running_mean, running_var, weight, bias, training, momentum,
                                  eps, NULL);
}

Tensor *tensor_batch_norm_sync(Tensor *x, Tensor *running_mean, Tensor *running_var,
                               Tensor *weight, Tensor *bias, bool training, double momentum,
                               double eps, DistGroup *group) {
    if (!x) return NULL;
    bool sync = training && dist_active(group);
    if (check_args(x, running_mean, running_var, weight, bias, training, !sync)) return NULL;

    /* Per-channel tensors broadcast as [1, C, 1, ...]; statistics reduce
     * every dim but 1. */
    int nd = x->ndim, n_dims = 0, dims[TENSOR_MAX_DIMS];
    int64_t bshape[TENSOR_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        bshape[i] = i == 1 ? x->shape[1] : 1;
        if (i != 1) dims[n_dims++] = i;
    }
    int64_t count = x->shape[1] ? tensor_numel(x) / x->shape[1] : 0;

    Tensor *mean, *var, *centred;
    if (sync) {
        if (global_stats(x, n_dims, dims, group, &mean, &centred, &var, &count) != 0) {
            tensor_release(mean), tensor_release(centred), tensor_release(var);
            return NULL;
        }
    } else if (training) {
        mean = tensor_mean_dims(x, n_dims, dims, true);
        centred = tensor_sub(x, mean);
        Tensor *sq = tensor_mul(centred, centred);
        var = tensor_mean_dims(sq, n_dims, dims, true); /* biased, for normalising */
        tensor_release(sq);
    } else {
        mean = tensor_reshape(running_mean, nd, bshape);
        var = tensor_reshape(running_var, nd, bshape);
        centred = tensor_sub(x, mean);
    }
    Tensor *ve = tensor_add_scalar(var, eps);
    Tensor *invstd = tensor_pow_scalar(ve, -0.5);
    Tensor *out = tensor_mul(centred, invstd);
    tensor_release(ve), tensor_release(invstd), tensor_release(centred);
    if (out && weight) {
        Tensor *w = tensor_reshape(weight, nd, bshape);
        Tensor *scaled = tensor_mul(out, w);
        tensor_release(w), tensor_release(out);
        out = scaled;
    }
    if (out && bias) {
        Tensor *b = tensor_reshape(bias, nd, bshape);
        Tensor *shifted = tensor_add(out, b);
        tensor_release(b), tensor_release(out);
        out = shifted;
    }

    if (out && training && running_mean && count > 0) {
        bool prev = autograd_set_enabled(false);
        /* torch tracks the unbiased variance (count > 1 was checked). */
        Tensor *unbiased = tensor_mul_scalar(var, (double)count / (double)(count - 1));
        int rc = unbiased ? update_running(running_mean, mean, momentum) : -1;
        if (rc == 0) rc = update_running(running_var, unbiased, momentum);
        tensor_release(unbiased);
        autograd_set_enabled(prev);
        if (rc != 0) {
            tensor_release(out);
            out = NULL;
        }
    }
    tensor_release(mean), tensor_release(var);
    return out;
}
