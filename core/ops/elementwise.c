/* elementwise.c - arithmetic with broadcasting, and pointwise functions.
 *
 * The pattern every op file follows: check inputs, run the kernel of
 * backend_for(device), then, if an input requires grad, record a node whose
 * backward is written with the same public ops (grad mode is off while
 * backward runs, so those ops record nothing).
 *
 * Broadcasting follows NumPy/PyTorch: shapes align at the right, a size-1
 * dimension stretches. The kernel gets stride-0 views, so nothing is
 * materialised; the gradient of a broadcast input is summed back to its
 * shape by autograd_reduce_to_shape.
 */
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"

/* ---- checks shared by the ops of this file ---- */

static int check_float(const char *op, const Tensor *t) {
    if (!dtype_is_float(t->dtype))
        return error_set("%s: expected a float tensor, got %s", op, dtype_name(t->dtype));
    return 0;
}

static int check_pair(const char *op, const Tensor *a, const Tensor *b) {
    if (!a || !b) return -1;
    if (check_float(op, a) || check_float(op, b)) return -1;
    if (a->dtype != b->dtype)
        return error_set("%s: dtypes differ (%s and %s)", op, dtype_name(a->dtype),
                         dtype_name(b->dtype));
    if (!device_equal(a->device, b->device)) {
        char da[16], db[16];
        return error_set("%s: tensors on different devices (%s and %s)", op,
                         device_name(a->device, da, sizeof da),
                         device_name(b->device, db, sizeof db));
    }
    return 0;
}

int broadcast_shapes(const char *op, int andim, const int64_t *ashape, int bndim,
                     const int64_t *bshape, int *out_ndim, int64_t *out_shape) {
    int nd = andim > bndim ? andim : bndim;
    for (int i = 0; i < nd; i++) {
        int ai = i - (nd - andim), bi = i - (nd - bndim);
        int64_t as = ai >= 0 ? ashape[ai] : 1, bs = bi >= 0 ? bshape[bi] : 1;
        if (as != bs && as != 1 && bs != 1) {
            char sa[128], sb[128];
            return error_set("%s: shapes %s and %s cannot be broadcast (dimension %d: %lld vs "
                             "%lld)",
                             op, shape_str(andim, ashape, sa, sizeof sa),
                             shape_str(bndim, bshape, sb, sizeof sb), i, (long long)as,
                             (long long)bs);
        }
        out_shape[i] = as == 1 ? bs : as;
    }
    *out_ndim = nd;
    return 0;
}

/* A stride-0 view of t at `shape` for the kernel; no autograd. */
static Tensor *broadcast_view(Tensor *t, int ndim, const int64_t *shape) {
    int64_t strides[TENSOR_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++)
        strides[i] = (i < lead || t->shape[i - lead] == 1) ? 0 : t->strides[i - lead];
    return tensor_make_view(t, ndim, shape, strides, t->offset);
}

/* out = a OP b with broadcasting; no autograd. */
static Tensor *binary_kernel(const char *name, BinaryOp op, Tensor *a, Tensor *b) {
    if (check_pair(name, a, b) != 0) return NULL;
    int nd;
    int64_t shape[TENSOR_MAX_DIMS];
    if (broadcast_shapes(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape) != 0) return NULL;
    Tensor *out = tensor_empty(nd, shape, a->dtype, a->device);
    Tensor *av = out ? broadcast_view(a, nd, shape) : NULL;
    Tensor *bv = av ? broadcast_view(b, nd, shape) : NULL;
    if (bv && tensor_numel(out) > 0) backend_for(a->device)->binary(op, av, bv, out);
    tensor_release(av);
    if (!bv) {
        tensor_release(out);
        return NULL;
    }
    tensor_release(bv);
    return out;
}

/* out = OP(x, alpha); no autograd. */
static Tensor *unary_kernel(const char *name, UnaryOp op, Tensor *x, double alpha) {
    if (!x || check_float(name, x) != 0) return NULL;
    Tensor *xc = tensor_contiguous(x);
    Tensor *out = xc ? tensor_empty_like(xc) : NULL;
    if (out && tensor_numel(out) > 0) backend_for(x->device)->unary(op, xc, alpha, out);
    tensor_release(xc);
    return out;
}

/* Records node `name` over (a, b) on out, failing the op cleanly. */
static Tensor *record2(Tensor *out, const char *name, BackwardFn bw, Tensor *a, Tensor *b) {
    Tensor *inputs[2] = {a, b};
    if (out && autograd_needs_grad(b ? 2 : 1, inputs) &&
        !autograd_record(out, name, bw, b ? 2 : 1, inputs)) {
        tensor_release(out);
        return NULL;
    }
    return out;
}

/* Gradient of an input from g of the broadcast shape. */
static Tensor *reduce_for(Tensor *g, const Tensor *input) {
    return autograd_reduce_to_shape(g, input->ndim, input->shape);
}

/* Reduces `g` for input k and stores it, consuming g. */
static void set_grad(Tensor **gx, int k, Tensor *g, AutogradNode *node) {
    if (node->inputs[k]->requires_grad) gx[k] = reduce_for(g, node->inputs[k]);
    tensor_release(g);
}

static int grads_ok(AutogradNode *node, Tensor **gx) {
    for (int k = 0; k < node->n_inputs; k++)
        if (node->inputs[k]->requires_grad && !gx[k]) return -1;
    return 0;
}

/* ---- binary ops ---- */

static int add_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    set_grad(gx, 0, tensor_retain(gy), node);
    set_grad(gx, 1, tensor_retain(gy), node);
    return grads_ok(node, gx);
}

static int sub_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    set_grad(gx, 0, tensor_retain(gy), node);
    if (node->inputs[1]->requires_grad) set_grad(gx, 1, tensor_neg(gy), node);
    return grads_ok(node, gx);
}

static int mul_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *a = node->inputs[0], *b = node->inputs[1];
    if (a->requires_grad) set_grad(gx, 0, tensor_mul(gy, b), node);
    if (b->requires_grad) set_grad(gx, 1, tensor_mul(gy, a), node);
    return grads_ok(node, gx);
}

static int div_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *a = node->inputs[0], *b = node->inputs[1];
    if (a->requires_grad) set_grad(gx, 0, tensor_div(gy, b), node);
    if (b->requires_grad) { /* d(a/b)/db = -a / b^2 */
        Tensor *b2 = tensor_mul(b, b);
        Tensor *q = tensor_div(a, b2);
        Tensor *t = tensor_mul(gy, q);
        set_grad(gx, 1, tensor_neg(t), node);
        tensor_release(b2);
        tensor_release(q);
        tensor_release(t);
    }
    return grads_ok(node, gx);
}

/* 1 where t `op` value (BINARY_EQ, BINARY_GT), else 0. */
static Tensor *compare_scalar(Tensor *t, BinaryOp op, double value) {
    Tensor *v = tensor_scalar(value, t->dtype, t->device);
    Tensor *out = v ? binary_kernel("compare", op, t, v) : NULL;
    tensor_release(v);
    return out;
}

/* 1 where x is within the bound (x >= bound, or x <= bound: `upper`),
 * as (x > bound) + (x == bound): 0 for a NaN x. */
static Tensor *within(Tensor *x, double bound, bool upper) {
    Tensor *b = tensor_scalar(bound, x->dtype, x->device);
    Tensor *gt = b ? binary_kernel("compare", BINARY_GT, upper ? b : x, upper ? x : b) : NULL;
    Tensor *eq = b ? binary_kernel("compare", BINARY_EQ, x, b) : NULL;
    Tensor *out = gt && eq ? binary_kernel("compare", BINARY_ADD, gt, eq) : NULL;
    tensor_release(b), tensor_release(gt), tensor_release(eq);
    return out;
}

/* torch's: b a^(b-1), 0 where b = 0 (not 0 * 0^-1); a^b log(a), 0 where
 * a = 0 and b >= 0 (not 0 * -inf). The masked places are moved to where
 * the formula is finite (exponent b-1 -> 0, log(a) -> log(1)), as a NaN
 * times 0 stays NaN. */
static int pow_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *a = node->inputs[0], *b = node->inputs[1];
    if (a->requires_grad) {
        Tensor *b0 = compare_scalar(b, BINARY_EQ, 0);
        Tensor *bm1 = tensor_add_scalar(b, -1.0);
        Tensor *e = b0 && bm1 ? tensor_add(bm1, b0) : NULL;
        Tensor *p = e ? tensor_pow(a, e) : NULL;
        Tensor *bp = p ? tensor_mul(b, p) : NULL;
        set_grad(gx, 0, bp ? tensor_mul(gy, bp) : NULL, node);
        Tensor *all[] = {b0, bm1, e, p, bp};
        for (int i = 0; i < 5; i++) tensor_release(all[i]);
    }
    if (b->requires_grad) {
        Tensor *a0 = compare_scalar(a, BINARY_EQ, 0), *bge = within(b, 0, false);
        Tensor *masked = a0 && bge ? tensor_mul(a0, bge) : NULL;
        Tensor *safe = masked ? tensor_add(a, masked) : NULL;
        Tensor *y = tensor_pow(a, b), *la = safe ? tensor_log(safe) : NULL;
        Tensor *t = y && la ? tensor_mul(y, la) : NULL;
        set_grad(gx, 1, t ? tensor_mul(gy, t) : NULL, node);
        Tensor *all[] = {a0, bge, masked, safe, y, la, t};
        for (int i = 0; i < 7; i++) tensor_release(all[i]);
    }
    return grads_ok(node, gx);
}

Tensor *tensor_add(Tensor *a, Tensor *b) {
    return record2(binary_kernel("add", BINARY_ADD, a, b), "AddBackward", add_backward, a, b);
}

Tensor *tensor_sub(Tensor *a, Tensor *b) {
    return record2(binary_kernel("sub", BINARY_SUB, a, b), "SubBackward", sub_backward, a, b);
}

Tensor *tensor_mul(Tensor *a, Tensor *b) {
    return record2(binary_kernel("mul", BINARY_MUL, a, b), "MulBackward", mul_backward, a, b);
}

Tensor *tensor_div(Tensor *a, Tensor *b) {
    return record2(binary_kernel("div", BINARY_DIV, a, b), "DivBackward", div_backward, a, b);
}

Tensor *tensor_pow(Tensor *a, Tensor *b) {
    return record2(binary_kernel("pow", BINARY_POW, a, b), "PowBackward", pow_backward, a, b);
}

/* ---- unary ops ---- */

/* Backward of the unary ops: ints[0] holds the UnaryOp, scalars[0] alpha. */
static int unary_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0], *y = node->saved[0];
    double alpha = node->scalars[0];
    switch ((UnaryOp)node->ints[0]) {
    case UNARY_NEG: gx[0] = tensor_neg(gy); break;
    case UNARY_ADD_SCALAR: gx[0] = tensor_retain(gy); break;
    case UNARY_MUL_SCALAR: gx[0] = tensor_mul_scalar(gy, alpha); break;
    case UNARY_EXP: gx[0] = tensor_mul(gy, y); break;
    case UNARY_LOG: gx[0] = tensor_div(gy, x); break;
    case UNARY_SQRT: { /* 1 / (2 sqrt(x)) */
        Tensor *d = tensor_mul_scalar(y, 2.0);
        gx[0] = tensor_div(gy, d);
        tensor_release(d);
        break;
    }
    case UNARY_ABS: {
        Tensor *s = unary_kernel("abs", UNARY_SIGN, x, 0);
        gx[0] = tensor_mul(gy, s);
        tensor_release(s);
        break;
    }
    case UNARY_POW: { /* alpha * x^(alpha-1); 0 for alpha = 0, as torch (not 0 * inf) */
        if (alpha == 0.0) {
            gx[0] = tensor_zeros_like(x);
            break;
        }
        Tensor *p = tensor_pow_scalar(x, alpha - 1.0);
        Tensor *d = tensor_mul_scalar(p, alpha);
        gx[0] = tensor_mul(gy, d);
        tensor_release(p);
        tensor_release(d);
        break;
    }
    case UNARY_RELU:
    case UNARY_SIGMOID:
    case UNARY_TANH:
    case UNARY_GELU:
    case UNARY_GELU_TANH:
    case UNARY_SILU:
    case UNARY_LEAKY_RELU: {
        Tensor *gyc = tensor_contiguous(gy);
        Tensor *g = gyc ? tensor_empty_like(x) : NULL;
        if (g && tensor_numel(g) > 0)
            backend_for(x->device)->unary_backward((UnaryOp)node->ints[0], x, y, alpha, gyc, g);
        tensor_release(gyc);
        gx[0] = g;
        break;
    }
    default: return error_set("unary backward: op %d has no gradient", (int)node->ints[0]);
    }
    return gx[0] ? 0 : -1;
}

/* Runs unary op `op` and records it; `save_output` keeps y for backward. */
static Tensor *unary_op(const char *name, const char *node_name, UnaryOp op, Tensor *x,
                        double alpha, bool save_output) {
    Tensor *xc = x ? tensor_contiguous(x) : NULL;
    Tensor *out = unary_kernel(name, op, xc, alpha);
    if (out && autograd_needs_grad(1, &x)) {
        AutogradNode *node = autograd_record(out, node_name, unary_backward, 1, &xc);
        if (!node) {
            tensor_release(out);
            out = NULL;
        } else {
            node->ints[0] = op;
            node->scalars[0] = alpha;
            /* Saving the output would make it own itself; keep a detached
             * alias that shares the storage instead. */
            if (save_output) {
                Tensor *alias = tensor_detach(out);
                if (!alias) {
                    tensor_release(out);
                    out = NULL;
                } else {
                    node->saved[0] = alias;
                }
            }
        }
    }
    tensor_release(xc);
    return out;
}

Tensor *tensor_neg(Tensor *a) { return unary_op("neg", "NegBackward", UNARY_NEG, a, 0, false); }
Tensor *tensor_exp(Tensor *a) { return unary_op("exp", "ExpBackward", UNARY_EXP, a, 0, true); }
Tensor *tensor_log(Tensor *a) { return unary_op("log", "LogBackward", UNARY_LOG, a, 0, false); }
Tensor *tensor_sqrt(Tensor *a) {
    return unary_op("sqrt", "SqrtBackward", UNARY_SQRT, a, 0, true);
}
Tensor *tensor_abs(Tensor *a) { return unary_op("abs", "AbsBackward", UNARY_ABS, a, 0, false); }
Tensor *tensor_relu(Tensor *a) {
    return unary_op("relu", "ReluBackward", UNARY_RELU, a, 0, false);
}
/* ---- ops that take their inputs' memory ---- */

/* Whether the caller's reference to x is x's only one, x's memory its own
 * and x no leaf that wants a gradient: then nothing but the op it is given
 * to may read x's values (a node that did would hold x or its storage). */
static bool memory_given(const Tensor *x) {
    return x && x->refcount == 1 && atomic_load(&x->storage->refcount) == 1 &&
           (x->grad_fn || !x->requires_grad) && tensor_is_contiguous(x);
}

/* x, given (memory_given before the op), takes out's memory, of its
 * shape, and gives its own back; its values are out's from then on. */
static Tensor *take_memory(bool given, Tensor *x, Tensor *out) {
    if (out && given && x->dtype == out->dtype && tensor_same_shape(x, out) &&
        tensor_adopt_storage(x, out) != 0) {
        tensor_release(out);
        out = NULL;
    }
    return out;
}

Tensor *tensor_relu_consume(Tensor *a) {
    bool given = memory_given(a);
    Tensor *y = take_memory(given, a, tensor_relu(a));
    tensor_release(a);
    return y;
}

Tensor *tensor_add_consume(Tensor *a, Tensor *b) {
    bool ga = memory_given(a), gb = memory_given(b);
    Tensor *y = a && b ? tensor_add(a, b) : NULL;
    y = take_memory(gb, b, take_memory(ga, a, y));
    tensor_release(a), tensor_release(b);
    return y;
}

Tensor *tensor_sigmoid(Tensor *a) {
    return unary_op("sigmoid", "SigmoidBackward", UNARY_SIGMOID, a, 0, true);
}
Tensor *tensor_tanh(Tensor *a) {
    return unary_op("tanh", "TanhBackward", UNARY_TANH, a, 0, true);
}
Tensor *tensor_gelu(Tensor *a, bool approximate_tanh) {
    UnaryOp op = approximate_tanh ? UNARY_GELU_TANH : UNARY_GELU;
    return unary_op("gelu", "GeluBackward", op, a, 0, false);
}
Tensor *tensor_silu(Tensor *a) {
    return unary_op("silu", "SiluBackward", UNARY_SILU, a, 0, false);
}
Tensor *tensor_leaky_relu(Tensor *a, double negative_slope) {
    return unary_op("leaky_relu", "LeakyReluBackward", UNARY_LEAKY_RELU, a, negative_slope, false);
}
Tensor *tensor_pow_scalar(Tensor *a, double exponent) {
    return unary_op("pow", "PowBackward", UNARY_POW, a, exponent, false);
}
Tensor *tensor_add_scalar(Tensor *a, double value) {
    return unary_op("add", "AddBackward", UNARY_ADD_SCALAR, a, value, false);
}
Tensor *tensor_mul_scalar(Tensor *a, double value) {
    return unary_op("mul", "MulBackward", UNARY_MUL_SCALAR, a, value, false);
}


/* clamp: the gradient passes where min <= x <= max, as in torch: nowhere
 * for a NaN x, or for min > max. */
static int clamp_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0];
    double lo = node->scalars[0], hi = node->scalars[1];
    Tensor *mask = tensor_full(x->ndim, x->shape, 1.0, x->dtype, x->device);
    for (int side = 0; side < 2 && mask; side++) {
        double bound = side ? hi : lo;
        if (isnan(bound)) continue; /* no bound on that side */
        Tensor *in = within(x, bound, side == 1);
        Tensor *m = in ? binary_kernel("clamp", BINARY_MUL, mask, in) : NULL;
        tensor_release(in);
        tensor_release(mask);
        mask = m;
    }
    gx[0] = mask ? tensor_mul(gy, mask) : NULL;
    tensor_release(mask);
    return gx[0] ? 0 : -1;
}

Tensor *tensor_clamp(Tensor *a, double min, double max) {
    Tensor *out = a ? tensor_retain(a) : NULL;
    bool prev = autograd_set_enabled(false);
    if (out && !isnan(min)) {
        Tensor *t = unary_kernel("clamp", UNARY_CLAMP_MIN, out, min);
        tensor_release(out);
        out = t;
    }
    if (out && !isnan(max)) {
        Tensor *t = unary_kernel("clamp", UNARY_CLAMP_MAX, out, max);
        tensor_release(out);
        out = t;
    }
    autograd_set_enabled(prev);
    if (out == a && out) { /* no bounds: still a new tensor, as torch.clamp */
        tensor_release(out);
        out = unary_kernel("clamp", UNARY_ADD_SCALAR, a, 0.0);
    }
    out = record2(out, "ClampBackward", clamp_backward, a, NULL);
    if (out && out->grad_fn) {
        out->grad_fn->scalars[0] = min;
        out->grad_fn->scalars[1] = max;
    }
    return out;
}
