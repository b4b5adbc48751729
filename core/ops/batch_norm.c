/* batch_norm.c - batch normalisation over [N, C] and [N, C, *], as
 * torch.nn.functional.batch_norm.
 *
 * Statistics are per channel (dim 1), over the batch and every spatial
 * position. Training normalises with the batch mean and the biased batch
 * variance and, when running buffers are given, moves them towards the batch
 * statistics with the unbiased variance: running = (1 - momentum) * running
 * + momentum * batch. Eval normalises with the running buffers.
 *
 * The passes over x run on the backend's channel kernels (core/backend.h:
 * channel_sum_product, channel_affine): the statistics are two sums (of x,
 * then of (x - mean)^2, in double), the output one affine pass x * alpha +
 * beta with alpha = weight / std and beta = bias - mean * alpha, as torch's
 * CPU kernel computes it; the small per-channel arithmetic is ops on [C]
 * tensors with grad mode off. One node records the op with a hand-written
 * backward, as torch's native_batch_norm: it keeps the input, the
 * per-channel mean and 1/std, nothing of the input's size. With
 * x_hat = (x - mean) / std,
 *   d bias = sum(dy), d weight = sum(dy * x_hat) = sum(dy * (x - mean)) / std,
 *   dx = weight / std * (dy - sum(dy) / N - x_hat * sum(dy * x_hat) / N)
 * in training (the sums per channel over N values): one affine pass
 * a * dy + b * (x - mean) + d; dx = weight / std * dy in eval (the running
 * statistics are constants). The running-stat update writes the buffers in
 * place with tensor_copy_.
 *
 * tensor_batch_norm_blocked takes x in the blocked layout (core/ops.h's
 * TENSOR_BLOCK), whose channels the backend's passes read as lanes; a
 * backend that does not run the layout gets x in NCHW.
 *
 * tensor_batch_norm_sync is SyncBatchNorm: in a data-parallel job the batch
 * statistics are those of the global batch, every rank's rows (the sums
 * per channel of x, then of (x - mean)^2, all-reduced). The backward
 * all-reduces the two sums of dx's formula likewise, N the global count,
 * so each rank's dx is its rows' of the one-process batch norm of the
 * whole batch; d weight and d bias stay the rank's own, which the gradient
 * all-reduce sums as any parameter's.
 */
#include "core/autograd.h"
#include "core/backend.h"
#include "core/dist/group.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/like_input.h"

static const char *OP = "batch_norm";

/* x's channels: dim 1, times its lanes in the blocked layout (lanes 1
 * elsewhere; core/backend.h's channel passes). */
static int64_t channels_of(const Tensor *x, int64_t lanes) { return x->shape[1] * lanes; }

/* A per-channel tensor must be float [C] of x's dtype and device. */
static int check_channel_param(const char *what, const Tensor *t, const Tensor *x,
                               int64_t lanes) {
    if (!t) return 0;
    char s[128], xs[128];
    if (ops_check_like_input(OP, what, t, x)) return -1;
    if (t->ndim != 1 || t->shape[0] != channels_of(x, lanes))
        return error_set("%s: %s of shape %s does not match the %lld channels of input %s", OP,
                         what, tensor_shape_str(t, s, sizeof s),
                         (long long)channels_of(x, lanes), tensor_shape_str(x, xs, sizeof xs));
    return 0;
}

static int check_args(const Tensor *x, const Tensor *rm, const Tensor *rv, const Tensor *w,
                      const Tensor *b, bool training, bool local_stats, int64_t lanes) {
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
    if (check_channel_param("running_mean", rm, x, lanes) ||
        check_channel_param("running_var", rv, x, lanes) ||
        check_channel_param("weight", w, x, lanes) || check_channel_param("bias", b, x, lanes))
        return -1;
    int64_t c = channels_of(x, lanes);
    if (training && local_stats && tensor_numel(x) / (c ? c : 1) == 1)
        return error_set("%s: expected more than 1 value per channel when training, got input of "
                         "shape %s",
                         OP, tensor_shape_str(x, s, sizeof s));
    return 0;
}

/* running = (1 - momentum) * running + momentum * batch, written in place;
 * with momentum_t (float64, 0-dim, on the device), that momentum: 1 -
 * momentum computed in float64 and each factor cast to running's dtype, as
 * a scalar momentum's are, so the bits are the same. */
static int update_running(Tensor *running, Tensor *batch, double momentum,
                          const Tensor *momentum_t) {
    Tensor *a, *b;
    if (momentum_t) {
        Tensor *neg = tensor_neg((Tensor *)momentum_t);
        Tensor *keep64 = neg ? tensor_add_scalar(neg, 1.0) : NULL;
        Tensor *keep = keep64 ? tensor_to_dtype(keep64, running->dtype) : NULL;
        Tensor *take = tensor_to_dtype((Tensor *)momentum_t, running->dtype);
        a = keep ? tensor_mul(running, keep) : NULL;
        b = take ? tensor_mul(batch, take) : NULL;
        tensor_release(neg), tensor_release(keep64), tensor_release(keep), tensor_release(take);
    } else {
        a = tensor_mul_scalar(running, 1.0 - momentum);
        b = tensor_mul_scalar(batch, momentum);
    }
    Tensor *s = a && b ? tensor_add(a, b) : NULL;
    int rc = s ? tensor_copy_(running, s) : -1;
    tensor_release(a), tensor_release(b), tensor_release(s);
    return rc;
}

/* The backend's channel passes over [N, C, S] or the blocked layout's
 * lanes (core/backend.h), on contiguous inputs: [C] sums of
 * (u - mu) * (v - mv) ... */
static Tensor *channel_sums(Tensor *u, Tensor *mu, Tensor *v, Tensor *mv, int64_t lanes) {
    Tensor *uc = tensor_contiguous(u), *vc = v ? tensor_contiguous(v) : NULL;
    Tensor *out = uc && (!v || vc)
                      ? tensor_empty(SHAPE(channels_of(u, lanes)), u->dtype, u->device)
                      : NULL;
    if (out) backend_for(u->device)->channel_sum_product(uc, mu, vc, mv, lanes, out);
    tensor_release(uc), tensor_release(vc);
    return out;
}

/* ... and a * u + b * (v - m) + d per channel, of u's shape. */
static Tensor *channel_map(Tensor *u, Tensor *a, Tensor *v, Tensor *m, Tensor *b, Tensor *d,
                           int64_t lanes) {
    Tensor *uc = tensor_contiguous(u), *vc = v ? tensor_contiguous(v) : NULL;
    Tensor *out = uc && (!v || vc) ? tensor_empty(u->ndim, u->shape, u->dtype, u->device) : NULL;
    if (out) backend_for(u->device)->channel_affine(uc, a, vc, m, b, d, lanes, out);
    tensor_release(uc), tensor_release(vc);
    return out;
}

/* The biased batch variance and mean [C] over every rank's rows; *count
 * becomes the global values per channel. */
static int global_stats(Tensor *x, int64_t lanes, DistGroup *g, Tensor **mean, Tensor **var,
                        int64_t *count) {
    char s[128];
    *mean = *var = NULL;
    if (dist_all_reduce(g, count, 1, DTYPE_INT64) != 0) return -1;
    if (*count <= 1)
        return error_set("%s: expected more than 1 value per channel when training, got %lld "
                         "over all ranks (input %s on this one)",
                         OP, (long long)*count, tensor_shape_str(x, s, sizeof s));
    Tensor *sum = channel_sums(x, NULL, NULL, NULL, lanes);
    Tensor *total = tensor_all_reduce_sum(sum, g);
    *mean = total ? tensor_mul_scalar(total, 1.0 / (double)*count) : NULL;
    tensor_release(sum), tensor_release(total);
    Tensor *sqsum = *mean ? channel_sums(x, *mean, x, *mean, lanes) : NULL;
    Tensor *sqtotal = tensor_all_reduce_sum(sqsum, g);
    *var = sqtotal ? tensor_mul_scalar(sqtotal, 1.0 / (double)*count) : NULL;
    tensor_release(sqsum), tensor_release(sqtotal);
    return *var ? 0 : -1;
}

Tensor *tensor_batch_norm(Tensor *x, Tensor *running_mean, Tensor *running_var, Tensor *weight,
                          Tensor *bias, bool training, double momentum, double eps) {
    return tensor_batch_norm_sync(x, running_mean, running_var, weight, bias, training, momentum,
                                  NULL, eps, NULL);
}

/* ---- the backward ---- */

/* node: inputs x, then weight and bias when given (ints[0], ints[1]);
 * saved mean and 1/std [C]; ints[2] training (batch statistics), ints[3]
 * x's lanes; scalars[0] their global count; ctx the group (SyncBatchNorm)
 * or NULL. */
enum { HAS_WEIGHT, HAS_BIAS, TRAINING, LANES };

/* weight / std, or 1 / std ([C]). */
static Tensor *channel_scale(AutogradNode *node, Tensor *invstd) {
    return node->ints[HAS_WEIGHT] ? tensor_mul(invstd, node->inputs[1]) : tensor_retain(invstd);
}

/* dx in training: scale * (dy - sum(dy) / N - x_hat * sum(dy * x_hat) / N),
 * the two sums over every rank, as one affine pass
 * scale * dy + b * (x - mean) + d, b = -scale / std * sum(dy * x_hat) / N,
 * d = -scale * sum(dy) / N. */
static Tensor *train_dx(AutogradNode *node, Tensor *gy, Tensor *scale, Tensor *sum_dy,
                        Tensor *sum_dyx) {
    DistGroup *g = node->ctx;
    Tensor *x = node->inputs[0], *mean = node->saved[0], *invstd = node->saved[1];
    Tensor *dy_all = tensor_all_reduce_sum(sum_dy, g), *dyx_all = tensor_all_reduce_sum(sum_dyx, g);
    double minus_inv_n = -1.0 / node->scalars[0];
    Tensor *d = dy_all ? tensor_mul(scale, dy_all) : NULL;
    Tensor *d_n = d ? tensor_mul_scalar(d, minus_inv_n) : NULL;
    Tensor *si = tensor_mul(scale, invstd);
    Tensor *b = si && dyx_all ? tensor_mul(si, dyx_all) : NULL;
    Tensor *b_n = b ? tensor_mul_scalar(b, minus_inv_n) : NULL;
    Tensor *dx =
        d_n && b_n ? channel_map(gy, scale, x, mean, b_n, d_n, node->ints[LANES]) : NULL;
    tensor_release(dy_all), tensor_release(dyx_all), tensor_release(d), tensor_release(d_n);
    tensor_release(si), tensor_release(b), tensor_release(b_n);
    return dx;
}

static int batch_norm_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0], *mean = node->saved[0], *invstd = node->saved[1];
    int wi = 1, bi = 1 + (int)node->ints[HAS_WEIGHT];
    int64_t lanes = node->ints[LANES];
    Tensor *sum_dy = channel_sums(gy, NULL, NULL, NULL, lanes);
    Tensor *dot = channel_sums(gy, NULL, x, mean, lanes); /* sum(dy * (x - mean)) */
    Tensor *sum_dyx = dot ? tensor_mul(dot, invstd) : NULL;
    tensor_release(dot);
    if (node->ints[HAS_WEIGHT] && node->inputs[wi]->requires_grad)
        gx[wi] = tensor_retain(sum_dyx);
    if (node->ints[HAS_BIAS] && node->inputs[bi]->requires_grad) gx[bi] = tensor_retain(sum_dy);
    if (x->requires_grad && sum_dy && sum_dyx) {
        Tensor *scale = channel_scale(node, invstd);
        if (!node->ints[TRAINING])
            gx[0] = scale ? channel_map(gy, scale, NULL, NULL, NULL, NULL, lanes) : NULL;
        else if (scale)
            gx[0] = train_dx(node, gy, scale, sum_dy, sum_dyx);
        tensor_release(scale);
    }
    tensor_release(sum_dy), tensor_release(sum_dyx);
    for (int k = 0; k < node->n_inputs; k++)
        if (node->inputs[k]->requires_grad && !gx[k]) return -1;
    return 0;
}

/* ---- the forward ---- */

/* The statistics to normalise with, [C] (new references): the batch's
 * (over every rank's rows with a group) or the running ones; *count the
 * values per channel they are over. */
static int statistics(Tensor *x, int64_t lanes, Tensor *running_mean, Tensor *running_var,
                      bool training, DistGroup *group, Tensor **mean, Tensor **var,
                      int64_t *count) {
    int64_t c = channels_of(x, lanes);
    *count = c ? tensor_numel(x) / c : 0;
    if (training) return global_stats(x, lanes, group, mean, var, count);
    *mean = tensor_clone(running_mean); /* the buffer may move before the backward */
    *var = tensor_retain(running_var);
    return *mean && *var ? 0 : -1;
}

/* x * alpha + beta per channel: alpha = invstd * weight, beta = bias -
 * mean * alpha (weight 1 and bias 0 when not given). */
static Tensor *normalise(Tensor *x, int64_t lanes, Tensor *mean, Tensor *invstd, Tensor *weight,
                         Tensor *bias) {
    Tensor *alpha = weight ? tensor_mul(invstd, weight) : tensor_retain(invstd);
    Tensor *shift = alpha ? tensor_mul(mean, alpha) : NULL;
    Tensor *beta = !shift ? NULL : bias ? tensor_sub(bias, shift) : tensor_neg(shift);
    Tensor *out = beta ? channel_map(x, alpha, NULL, NULL, NULL, beta, lanes) : NULL;
    tensor_release(alpha), tensor_release(shift), tensor_release(beta);
    return out;
}

/* Records the op's node on out; out, or NULL (released) on failure. */
static Tensor *record(Tensor *out, Tensor *x, int64_t lanes, Tensor *weight, Tensor *bias,
                      Tensor *mean, Tensor *invstd, bool training, int64_t count,
                      DistGroup *group) {
    Tensor *inputs[3] = {x};
    int n = 1;
    if (weight) inputs[n++] = weight;
    if (bias) inputs[n++] = bias;
    if (!out || !autograd_needs_grad(n, inputs)) return out;
    AutogradNode *node = autograd_record(out, "NativeBatchNormBackward", batch_norm_backward, n,
                                         inputs);
    if (!node) {
        tensor_release(out);
        return NULL;
    }
    autograd_save(node, 0, mean);
    autograd_save(node, 1, invstd);
    node->ints[HAS_WEIGHT] = weight != NULL;
    node->ints[HAS_BIAS] = bias != NULL;
    node->ints[TRAINING] = training;
    node->ints[LANES] = lanes;
    node->scalars[0] = (double)count;
    node->ctx = training && dist_active(group) ? group : NULL; /* borrowed */
    return out;
}

/* The op over x in NCHW (lanes 1) or the blocked layout's lanes. */
static Tensor *batch_norm(Tensor *x, int64_t lanes, Tensor *running_mean, Tensor *running_var,
                          Tensor *weight, Tensor *bias, bool training, double momentum,
                          const Tensor *momentum_t, double eps, DistGroup *group) {
    if (!x) return NULL;
    bool sync = training && dist_active(group);
    if (check_args(x, running_mean, running_var, weight, bias, training, !sync, lanes))
        return NULL;
    bool prev = autograd_set_enabled(false);
    Tensor *mean = NULL, *var = NULL, *out = NULL, *invstd = NULL;
    int64_t count = 0;
    if (statistics(x, lanes, running_mean, running_var, training, sync ? group : NULL, &mean,
                   &var, &count) == 0) {
        Tensor *ve = tensor_add_scalar(var, eps);
        invstd = ve ? tensor_pow_scalar(ve, -0.5) : NULL;
        tensor_release(ve);
        out = invstd ? normalise(x, lanes, mean, invstd, weight, bias) : NULL;
    }
    if (out && training && running_mean && count > 0) {
        /* torch tracks the unbiased variance (count > 1 was checked). */
        Tensor *unbiased = tensor_mul_scalar(var, (double)count / (double)(count - 1));
        int rc = unbiased ? update_running(running_mean, mean, momentum, momentum_t) : -1;
        if (rc == 0) rc = update_running(running_var, unbiased, momentum, momentum_t);
        tensor_release(unbiased);
        if (rc != 0) {
            tensor_release(out);
            out = NULL;
        }
    }
    autograd_set_enabled(prev);
    out = record(out, x, lanes, weight, bias, mean, invstd, training, count, group);
    tensor_release(mean), tensor_release(var), tensor_release(invstd);
    return out;
}

Tensor *tensor_batch_norm_sync(Tensor *x, Tensor *running_mean, Tensor *running_var,
                               Tensor *weight, Tensor *bias, bool training, double momentum,
                               const Tensor *momentum_t, double eps, DistGroup *group) {
    return batch_norm(x, 1, running_mean, running_var, weight, bias, training, momentum,
                      momentum_t, eps, group);
}

Tensor *tensor_batch_norm_blocked(Tensor *x, Tensor *running_mean, Tensor *running_var,
                                  Tensor *weight, Tensor *bias, bool training, double momentum,
                                  const Tensor *momentum_t, double eps, DistGroup *group) {
    int64_t nchw[4];
    if (!x || tensor_blocked_nchw(OP, x->ndim, x->shape, nchw) != 0) return NULL;
    if (tensor_blocked_layout_native(x))
        return batch_norm(x, TENSOR_BLOCK, running_mean, running_var, weight, bias, training,
                          momentum, momentum_t, eps, group);
    Tensor *xn = tensor_from_blocked(x);
    Tensor *y = tensor_batch_norm_sync(xn, running_mean, running_var, weight, bias, training,
                                       momentum, momentum_t, eps, group);
    Tensor *out = tensor_to_blocked(y);
    tensor_release(xn), tensor_release(y);
    return out;
}
