/* clip_grad.c - torch.nn.utils.clip_grad_norm_ over an optimizer's
 * parameters, on their device, with torch 1.13's formula:
 *
 *     total_norm = ||(||g_1||, ..., ||g_n||)||;  coef = max_norm / (total_norm + 1e-6)
 *     g_i *= clamp(coef, max=1)
 *
 * with no host branch on the norm, so nothing waits for the device and a
 * CUDA graph can hold it (core/train_graph.c). The arithmetic is traind's
 * earlier host version's, bit for bit on a finite norm: the squares summed
 * per gradient by the backend's sum (double accumulation), those sums
 * added in float64 in parameter order, the square root, coef and clamp in
 * float64, each gradient multiplied by the coef rounded to its dtype (torch
 * takes the norms and the coef in float32: an ulp apart at most). A NaN
 * norm makes every gradient NaN, as torch's clamp does.
 */
#include <math.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/optim/optimizer.h"

/* sum over the gradients of sum(g * g), float64 0-dim; NULL when none */
static Tensor *sum_of_squares(Optimizer *opt, int *rc) {
    Tensor *acc = NULL;
    for (int i = 0; i < opt->n_params && *rc == 0; i++) {
        Tensor *g = opt->params[i]->grad;
        if (!g) continue;
        Tensor *sq = tensor_mul(g, g), *s = sq ? tensor_sum(sq) : NULL;
        Tensor *s64 = s ? tensor_to_dtype(s, DTYPE_FLOAT64) : NULL;
        Tensor *next = s64 && acc ? tensor_add(acc, s64) : tensor_retain(s64);
        if (!next) *rc = -1;
        tensor_release(sq), tensor_release(s), tensor_release(s64), tensor_release(acc);
        acc = next;
    }
    return acc;
}

/* min(max_norm / (norm + 1e-6), 1), float64 0-dim on norm's device */
static Tensor *clip_coef(Tensor *norm, double max_norm) {
    Tensor *den = tensor_add_scalar(norm, 1e-6);
    Tensor *num = den ? tensor_scalar(max_norm, DTYPE_FLOAT64, norm->device) : NULL;
    Tensor *coef = num ? tensor_div(num, den) : NULL;
    Tensor *clamped = coef ? tensor_clamp(coef, NAN, 1.0) : NULL;
    tensor_release(den), tensor_release(num), tensor_release(coef);
    return clamped;
}

/* Each gradient times coef in its dtype (a new tensor: .grad may be shared
 * with nothing, but its old values are no one else's to change). */
static int scale_grads(Optimizer *opt, Tensor *coef) {
    for (int i = 0; i < opt->n_params; i++) {
        Tensor *p = opt->params[i];
        if (!p->grad) continue;
        Tensor *c = tensor_to_dtype(coef, p->grad->dtype);
        Tensor *scaled = c ? tensor_mul(p->grad, c) : NULL;
        tensor_release(c);
        if (!scaled) return -1;
        tensor_release(p->grad);
        p->grad = scaled;
    }
    return 0;
}

Tensor *optimizer_clip_grad_norm(Optimizer *opt, double max_norm) {
    bool prev = autograd_set_enabled(false);
    int rc = 0;
    Tensor *sumsq = sum_of_squares(opt, &rc);
    Tensor *norm = sumsq ? tensor_sqrt(sumsq) : NULL;
    Tensor *coef = norm ? clip_coef(norm, max_norm) : NULL;
    if (coef) rc = scale_grads(opt, coef);
    else if (sumsq || rc != 0) rc = -1;
    else /* no gradient at all: 0, where the gradients would be */
        norm = tensor_scalar(0, DTYPE_FLOAT64,
                             opt->n_params ? opt->params[0]->device : DEVICE_CPU_INIT);
    tensor_release(sumsq), tensor_release(coef);
    autograd_set_enabled(prev);
    if (rc == 0 && norm) return norm;
    tensor_release(norm);
    error_prefix("clip_grad_norm");
    return NULL;
}
