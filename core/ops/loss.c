/* loss.c - the losses of torch.nn.functional, with reductions mean/sum/none.
 *
 * Each loss first computes one loss per element (per sample for the class
 * losses), then reduces it with tensor_mean / tensor_sum, so the reduction's
 * gradient comes from reduce.c. MSE and L1 are plain compositions of
 * elementwise ops. NLL and cross-entropy share one node over the
 * log-probabilities: the backend's class_loss_rows gives each row's loss
 * (torch's ignore_index and label_smoothing included) and whether it counts,
 * and "mean" divides by the rows that count, as torch does; cross-entropy
 * is that over log_softmax(logits, 1). The two binary cross-entropies have
 * nodes of their own: torch's gradients there are not what composing the
 * clamped logs would give at the edges (x = 0 or 1, logits = 0).
 *
 * Checks are stricter than torch's in one place: input and target shapes
 * must match exactly (torch broadcasts them with only a warning, which is
 * almost always a bug such as [64, 1] against [64]).
 */
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

int reduction_parse(const char *name, Reduction *out) {
    if (!name) return error_set("reduction: missing (expected \"mean\", \"sum\" or \"none\")");
    if (strcmp(name, "mean") == 0)
        *out = REDUCTION_MEAN;
    else if (strcmp(name, "sum") == 0)
        *out = REDUCTION_SUM;
    else if (strcmp(name, "none") == 0)
        *out = REDUCTION_NONE;
    else
        return error_set("reduction: unknown \"%s\" (expected \"mean\", \"sum\" or \"none\")",
                         name);
    return 0;
}

/* ---- checks ---- */

static int check_reduction(const char *op, Reduction r) {
    if (r != REDUCTION_MEAN && r != REDUCTION_SUM && r != REDUCTION_NONE)
        return error_set("%s: unknown reduction %d", op, (int)r);
    return 0;
}

static int check_device(const char *op, const Tensor *a, const Tensor *b) {
    if (device_equal(a->device, b->device)) return 0;
    char da[16], db[16];
    return error_set("%s: input on %s but target on %s", op, device_name(a->device, da, sizeof da),
                     device_name(b->device, db, sizeof db));
}

/* Elementwise losses: float input and target of one dtype, device and shape. */
static int check_elementwise(const char *op, const Tensor *input, const Tensor *target,
                             Reduction r) {
    if (!input || !target) return -1;
    if (check_reduction(op, r)) return -1;
    if (!dtype_is_float(input->dtype))
        return error_set("%s: expected a float input, got %s", op, dtype_name(input->dtype));
    if (!dtype_is_float(target->dtype))
        return error_set("%s: expected a float target, got %s", op, dtype_name(target->dtype));
    if (input->dtype != target->dtype)
        return error_set("%s: input is %s but target is %s", op, dtype_name(input->dtype),
                         dtype_name(target->dtype));
    if (check_device(op, input, target)) return -1;
    if (!tensor_same_shape(input, target)) {
        char a[128], b[128];
        return error_set("%s: input %s and target %s differ in shape", op,
                         tensor_shape_str(input, a, sizeof a),
                         tensor_shape_str(target, b, sizeof b));
    }
    return 0;
}

/* Class losses: input [N, C] float, target int64 [N]. */
static int check_classes(const char *op, const Tensor *input, const Tensor *target, Reduction r) {
    if (!input || !target) return -1;
    if (check_reduction(op, r)) return -1;
    char a[128], b[128];
    if (!dtype_is_float(input->dtype))
        return error_set("%s: expected a float input, got %s", op, dtype_name(input->dtype));
    if (input->ndim != 2)
        return error_set("%s: expected input of shape [N, C], got %s", op,
                         tensor_shape_str(input, a, sizeof a));
    if (target->dtype != DTYPE_INT64)
        return error_set("%s: expected an int64 target of class indices, got %s", op,
                         dtype_name(target->dtype));
    if (target->ndim != 1 || target->shape[0] != input->shape[0])
        return error_set("%s: input %s and target %s differ in batch size (expected target [%lld])",
                         op, tensor_shape_str(input, a, sizeof a),
                         tensor_shape_str(target, b, sizeof b), (long long)input->shape[0]);
    return check_device(op, input, target);
}

/* Class indices must lie in [0, C) unless ignored. Checked on the host for
 * CPU tensors (a device tensor would cost a synchronising copy every step). */
static int check_class_range(const char *op, const Tensor *target_c, int64_t classes,
                             int64_t ignore) {
    if (target_c->device.type != DEVICE_CPU) return 0;
    const int64_t *t = tensor_data(target_c);
    for (int64_t i = 0; i < tensor_numel(target_c); i++)
        if ((t[i] < 0 || t[i] >= classes) && t[i] != ignore)
            return error_set("%s: target %lld at index %lld is out of range for %lld classes "
                             "(ignore_index is %lld)",
                             op, (long long)t[i], (long long)i, (long long)classes,
                             (long long)ignore);
    return 0;
}

/* Applies the reduction, consuming `loss`. */
static Tensor *reduce_loss(Tensor *loss, Reduction r) {
    if (!loss || r == REDUCTION_NONE) return loss;
    Tensor *out = r == REDUCTION_SUM ? tensor_sum(loss) : tensor_mean(loss);
    tensor_release(loss);
    return out;
}

/* Records a loss node over (input, target) on out, failing cleanly. */
static Tensor *record_pair(Tensor *out, const char *name, BackwardFn bw, Tensor *input,
                           Tensor *target) {
    Tensor *inputs[2] = {input, target};
    if (out && autograd_needs_grad(2, inputs) && !autograd_record(out, name, bw, 2, inputs)) {
        tensor_release(out);
        return NULL;
    }
    return out;
}

/* ---- MSE and L1: compositions ---- */

Tensor *tensor_mse_loss(Tensor *input, Tensor *target, Reduction reduction) {
    if (check_elementwise("mse_loss", input, target, reduction)) return NULL;
    Tensor *d = tensor_sub(input, target);
    Tensor *sq = tensor_mul(d, d);
    tensor_release(d);
    return reduce_loss(sq, reduction);
}

/* abs's gradient is sign(x - y), 0 at 0, as torch's. */
Tensor *tensor_l1_loss(Tensor *input, Tensor *target, Reduction reduction) {
    if (check_elementwise("l1_loss", input, target, reduction)) return NULL;
    Tensor *d = tensor_sub(input, target);
    Tensor *a = tensor_abs(d);
    tensor_release(d);
    return reduce_loss(a, reduction);
}

/* ---- NLL and cross-entropy ---- */

/* saved[0]: the int64 target; ints[0]: ignore_index; scalars[0]: eps. */
static int class_rows_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0];
    const Backend *be = backend_for(x->device);
    Tensor *gyc = be ? tensor_contiguous(gy) : NULL;
    Tensor *g = gyc ? tensor_empty_like(x) : NULL;
    if (g && tensor_numel(g) > 0)
        be->class_loss_rows_backward(gyc, node->saved[0], node->ints[0], node->scalars[0], g);
    tensor_release(gyc);
    gx[0] = g;
    return g ? 0 : -1;
}

/* The mean over the rows that count: sum(loss) / sum(weight), consuming
 * both. No row counts: 0 / 0 = NaN, as torch; the gradient is still 0
 * because the backward kernel writes 0 on ignored rows. */
static Tensor *weighted_mean(Tensor *loss, Tensor *weight) {
    Tensor *num = tensor_sum(loss), *den = tensor_sum(weight);
    Tensor *out = num && den ? tensor_div(num, den) : NULL;
    tensor_release(loss), tensor_release(weight), tensor_release(num), tensor_release(den);
    return out;
}

/* Per-row losses of log_probs [N, C] (ignored rows 0), recorded for
 * autograd, and their weights (1, or 0 where ignored) in *weight. */
static Tensor *class_rows(const char *op, Tensor *log_probs, Tensor *target,
                          const ClassLossOptions *o, Tensor **weight) {
    const Backend *be = backend_for(log_probs->device);
    if (!be) return NULL;
    int64_t n = log_probs->shape[0];
    Tensor *tc = tensor_contiguous(target);
    if (!tc || check_class_range(op, tc, log_probs->shape[1], o->ignore_index) != 0) {
        tensor_release(tc);
        return NULL;
    }
    Tensor *lp = tensor_contiguous(log_probs);
    Tensor *rows = lp ? tensor_empty(SHAPE(n), lp->dtype, lp->device) : NULL;
    *weight = rows ? tensor_empty(SHAPE(n), lp->dtype, lp->device) : NULL;
    if (*weight && n > 0 &&
        be->class_loss_rows(lp, tc, o->ignore_index, o->label_smoothing, rows, *weight) != 0)
        tensor_release(*weight), *weight = NULL;
    if (*weight && autograd_needs_grad(1, &lp)) {
        AutogradNode *node = autograd_record(rows, "NllLossBackward", class_rows_backward, 1, &lp);
        if (node) {
            autograd_save(node, 0, tc);
            node->ints[0] = o->ignore_index;
            node->scalars[0] = o->label_smoothing;
        } else {
            tensor_release(*weight);
            *weight = NULL;
        }
    }
    if (!*weight) tensor_release(rows), rows = NULL;
    tensor_release(lp);
    tensor_release(tc);
    return rows;
}

static Tensor *class_loss(const char *op, Tensor *log_probs, Tensor *target, Reduction reduction,
                          const ClassLossOptions *o) {
    Tensor *weight = NULL;
    Tensor *rows = class_rows(op, log_probs, target, o, &weight);
    if (!rows || reduction != REDUCTION_MEAN) {
        tensor_release(weight);
        return reduce_loss(rows, reduction);
    }
    return weighted_mean(rows, weight);
}

static int check_smoothing(const char *op, double eps) {
    if (eps >= 0 && eps <= 1) return 0;
    return error_set("%s: label_smoothing must be in [0, 1], got %g", op, eps);
}

Tensor *tensor_nll_loss_with(Tensor *log_probs, Tensor *target, Reduction reduction,
                             const ClassLossOptions *options) {
    if (check_classes("nll_loss", log_probs, target, reduction)) return NULL;
    if (options->label_smoothing != 0)
        return error_set("nll_loss: has no label_smoothing (got %g; use cross_entropy)",
                         options->label_smoothing),
               NULL;
    return class_loss("nll_loss", log_probs, target, reduction, options);
}

Tensor *tensor_nll_loss(Tensor *log_probs, Tensor *target, Reduction reduction) {
    return tensor_nll_loss_with(log_probs, target, reduction, &CLASS_LOSS_DEFAULTS);
}

Tensor *tensor_cross_entropy_with(Tensor *logits, Tensor *target, Reduction reduction,
                                  const ClassLossOptions *options) {
    /* Check first, so errors name cross_entropy and nothing is computed. */
    if (check_classes("cross_entropy", logits, target, reduction) ||
        check_smoothing("cross_entropy", options->label_smoothing))
        return NULL;
    Tensor *lsm = tensor_log_softmax(logits, 1);
    Tensor *out = lsm ? class_loss("cross_entropy", lsm, target, reduction, options) : NULL;
    tensor_release(lsm);
    return out;
}

int tensor_tokens_as_rows(Tensor *scores, Tensor *target, Tensor **rows, Tensor **labels) {
    bool tokens = scores && target && scores->ndim == 3 && target->ndim == 2;
    *rows = tokens ? tensor_reshape(scores, SHAPE(-1, scores->shape[2])) : tensor_retain(scores);
    *labels = tokens ? tensor_reshape(target, SHAPE(-1)) : tensor_retain(target);
    if (*rows && *labels) return 0;
    tensor_release(*rows), tensor_release(*labels);
    *rows = *labels = NULL;
    return -1;
}

Tensor *tensor_cross_entropy(Tensor *logits, Tensor *target, Reduction reduction) {
    return tensor_cross_entropy_with(logits, target, reduction, &CLASS_LOSS_DEFAULTS);
}

/* ---- binary cross-entropy on probabilities ---- */

/* Probabilities must lie in [0, 1] (NaN does not), checked on the host for
 * CPU tensors as torch does. */
static int check_probabilities(const char *op, Tensor *input) {
    if (input->device.type != DEVICE_CPU) return 0;
    Tensor *c = tensor_contiguous(input);
    if (!c) return -1;
    int rc = 0;
    for (int64_t i = 0; i < tensor_numel(c); i++) {
        double v = input->dtype == DTYPE_FLOAT32 ? (double)((const float *)tensor_data(c))[i]
                                                 : ((const double *)tensor_data(c))[i];
        if (!(v >= 0.0 && v <= 1.0)) {
            rc = error_set("%s: input value %g at index %lld is outside [0, 1]", op, v,
                           (long long)i);
            break;
        }
    }
    tensor_release(c);
    return rc;
}

/* max(log(v), -100), as torch clamps so that 0 * log(0) stays finite. */
static Tensor *clamped_log(Tensor *v) {
    Tensor *l = tensor_log(v);
    Tensor *c = tensor_clamp(l, -100.0, NAN);
    tensor_release(l);
    return c;
}

static Tensor *one_minus(Tensor *v) {
    Tensor *n = tensor_neg(v);
    Tensor *r = tensor_add_scalar(n, 1.0);
    tensor_release(n);
    return r;
}

/* torch's gradients: d/dx = (x - y) / max(x (1 - x), 1e-12),
 * d/dy = max(log(1 - x), -100) - max(log(x), -100). */
static int bce_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0], *y = node->inputs[1];
    if (x->requires_grad) {
        Tensor *d = tensor_sub(x, y);
        Tensor *num = tensor_mul(gy, d);
        Tensor *omx = one_minus(x);
        Tensor *var = tensor_mul(x, omx);
        Tensor *den = tensor_clamp(var, 1e-12, NAN);
        gx[0] = tensor_div(num, den);
        tensor_release(d), tensor_release(num), tensor_release(omx), tensor_release(var),
            tensor_release(den);
        if (!gx[0]) return -1;
    }
    if (y->requires_grad) {
        Tensor *omx = one_minus(x);
        Tensor *l1 = clamped_log(omx);
        Tensor *l0 = clamped_log(x);
        Tensor *d = tensor_sub(l1, l0);
        gx[1] = tensor_mul(gy, d);
        tensor_release(omx), tensor_release(l1), tensor_release(l0), tensor_release(d);
        if (!gx[1]) return -1;
    }
    return 0;
}

Tensor *tensor_bce_loss(Tensor *input, Tensor *target, Reduction reduction) {
    if (check_elementwise("bce_loss", input, target, reduction)) return NULL;
    if (check_probabilities("bce_loss", input)) return NULL;
    /* loss = (y - 1) * max(log(1 - x), -100) - y * max(log(x), -100) */
    bool prev = autograd_set_enabled(false);
    Tensor *omx = one_minus(input);
    Tensor *l1 = clamped_log(omx);
    Tensor *l0 = clamped_log(input);
    Tensor *ym1 = tensor_add_scalar(target, -1.0);
    Tensor *a = tensor_mul(ym1, l1);
    Tensor *b = tensor_mul(target, l0);
    Tensor *loss = tensor_sub(a, b);
    autograd_set_enabled(prev);
    tensor_release(omx), tensor_release(l1), tensor_release(l0), tensor_release(ym1),
        tensor_release(a), tensor_release(b);
    loss = record_pair(loss, "BinaryCrossEntropyBackward", bce_backward, input, target);
    return reduce_loss(loss, reduction);
}

/* ---- binary cross-entropy on logits ---- */

/* d/dx = sigmoid(x) - y, d/dy = -x. */
static int bce_logits_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0], *y = node->inputs[1];
    if (x->requires_grad) {
        Tensor *s = tensor_sigmoid(x);
        Tensor *d = tensor_sub(s, y);
        gx[0] = tensor_mul(gy, d);
        tensor_release(s), tensor_release(d);
        if (!gx[0]) return -1;
    }
    if (y->requires_grad) {
        Tensor *n = tensor_neg(x);
        gx[1] = tensor_mul(gy, n);
        tensor_release(n);
        if (!gx[1]) return -1;
    }
    return 0;
}

Tensor *tensor_bce_with_logits(Tensor *logits, Tensor *target, Reduction reduction) {
    if (check_elementwise("bce_with_logits", logits, target, reduction)) return NULL;
    /* Stable form: max(x, 0) - x y + log(1 + exp(-|x|)); exp never overflows. */
    bool prev = autograd_set_enabled(false);
    Tensor *pos = tensor_relu(logits);
    Tensor *xy = tensor_mul(logits, target);
    Tensor *lin = tensor_sub(pos, xy);
    Tensor *ax = tensor_abs(logits);
    Tensor *nax = tensor_neg(ax);
    Tensor *e = tensor_exp(nax);
    Tensor *e1 = tensor_add_scalar(e, 1.0);
    Tensor *sp = tensor_log(e1);
    Tensor *loss = tensor_add(lin, sp);
    autograd_set_enabled(prev);
    tensor_release(pos), tensor_release(xy), tensor_release(lin), tensor_release(ax),
        tensor_release(nax), tensor_release(e), tensor_release(e1), tensor_release(sp);
    loss = record_pair(loss, "BinaryCrossEntropyWithLogitsBackward", bce_logits_backward, logits,
                       target);
    return reduce_loss(loss, reduction);
}
