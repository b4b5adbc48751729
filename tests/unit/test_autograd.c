/* test_autograd.c - core/autograd.c: the backward walk (fan-out, diamonds,
 * accumulation), grad mode, detach, the errors of backward, freeing the graph,
 * deep graphs without recursion, gradients through every view op, and relu
 * and add taking their inputs' memory only when nothing else holds it. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

static Tensor *leaf(const char *text) {
    Tensor *t = tensor_from_string(text, DTYPE_FLOAT64);
    cr_assert(t != NULL, "%s", error_get());
    cr_assert_eq(tensor_set_requires_grad(t, true), 0);
    return t;
}

static void assert_grad(const Tensor *x, const double *want, int64_t n, const char *what) {
    cr_assert(x->grad != NULL, "%s: no gradient", what);
    cr_assert_eq(tensor_numel(x->grad), n, "%s: gradient numel", what);
    cr_assert(tensor_same_shape(x->grad, x), "%s: gradient shape", what);
    cr_assert_eq(x->grad->dtype, x->dtype, "%s: gradient dtype", what);
    assert_tensor_values(x->grad, want, n, 1e-12, what);
}

static void assert_error_has(const char *needle) {
    cr_assert(strstr(error_get(), needle) != NULL, "error '%s' lacks '%s'", error_get(), needle);
}

static void backward_ok(Tensor *loss) {
    cr_assert(loss != NULL, "%s", error_get());
    cr_assert_eq(tensor_backward(loss), 0, "backward: %s", error_get());
}

/* ---- the walk ---- */

Test(autograd, fan_out_sums_gradients) {
    /* x + x*x: x feeds the add directly and through the mul; the add's
     * inputs are listed leaf first, so a walk that emits x before the mul
     * would drop the mul's share. d/dx = 1 + 2x. */
    Tensor *x = leaf("[1, 2, 3]");
    Tensor *xx = tensor_mul(x, x);
    Tensor *y = tensor_add(x, xx);
    Tensor *l = tensor_sum(y);
    backward_ok(l);
    assert_grad(x, (double[]){3, 5, 7}, 3, "x + x*x");
    tensor_release(xx);
    tensor_release(y);
    tensor_release(l);

    /* the other order, x*x + x */
    tensor_zero_grad(x);
    xx = tensor_mul(x, x);
    y = tensor_add(xx, x);
    l = tensor_sum(y);
    backward_ok(l);
    assert_grad(x, (double[]){3, 5, 7}, 3, "x*x + x");
    tensor_release(xx);
    tensor_release(y);
    tensor_release(l);
    tensor_release(x);
}

Test(autograd, diamond_through_intermediate) {
    /* a = 2x; c = a + a*a: a non-leaf reached by two paths of different
     * length. dc/dx = 2 (1 + 2a) = 2 + 8x. */
    Tensor *x = leaf("[0.5, -1]");
    Tensor *a = tensor_mul_scalar(x, 2);
    Tensor *aa = tensor_mul(a, a);
    Tensor *c = tensor_add(a, aa);
    Tensor *l = tensor_sum(c);
    backward_ok(l);
    assert_grad(x, (double[]){6, -6}, 2, "diamond");
    cr_assert_null(a->grad, "non-leaves keep no .grad");
    tensor_release(a);
    tensor_release(aa);
    tensor_release(c);
    tensor_release(l);
    tensor_release(x);
}

Test(autograd, two_leaves_many_uses) {
    /* l = sum(x*y + x*x*y + y), dl/dx = y + 2xy, dl/dy = x + x^2 + 1 */
    Tensor *x = leaf("[2, 3]"), *y = leaf("[5, 7]");
    Tensor *xy = tensor_mul(x, y);
    Tensor *xxy = tensor_mul(x, xy);
    Tensor *s1 = tensor_add(xy, xxy);
    Tensor *s2 = tensor_add(y, s1);
    Tensor *l = tensor_sum(s2);
    backward_ok(l);
    assert_grad(x, (double[]){5 + 2 * 2 * 5, 7 + 2 * 3 * 7}, 2, "dx");
    assert_grad(y, (double[]){2 + 4 + 1, 3 + 9 + 1}, 2, "dy");
    Tensor *ts[] = {x, y, xy, xxy, s1, s2, l};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_release(ts[i]);
}

Test(autograd, grad_accumulates_across_backward_calls) {
    Tensor *x = leaf("[1, 2]");
    for (int round = 1; round <= 3; round++) {
        Tensor *y = tensor_mul_scalar(x, 3);
        Tensor *l = tensor_sum(y);
        backward_ok(l);
        assert_grad(x, (double[]){3.0 * round, 3.0 * round}, 2, "accumulated");
        tensor_release(y);
        tensor_release(l);
    }
    tensor_zero_grad(x);
    cr_assert_null(x->grad);
    Tensor *l = tensor_sum(x);
    backward_ok(l);
    assert_grad(x, (double[]){1, 1}, 2, "after zero_grad");
    tensor_release(l);
    tensor_zero_grad(NULL);
    tensor_release(x);
}

Test(autograd, leaf_grads_do_not_alias) {
    /* add's backward hands the same upstream gradient to both inputs; the
     * leaves' .grad must still be separate tensors, since optimizers and
     * gradient clipping write into .grad in place. */
    Tensor *a = leaf("[1, 2]"), *b = leaf("[3, 4]");
    Tensor *s = tensor_add(a, b);
    Tensor *l = tensor_sum(s);
    backward_ok(l);
    cr_assert(a->grad != b->grad);
    cr_assert(a->grad->storage != b->grad->storage, "a.grad and b.grad share memory");
    tensor_fill_(a->grad, 0);
    assert_grad(b, (double[]){1, 1}, 2, "b.grad after writing a.grad");
    /* the same with an explicit upstream gradient, which add passes on
     * unchanged to both inputs */
    tensor_zero_grad(a);
    tensor_zero_grad(b);
    Tensor *s2 = tensor_add(a, b);
    Tensor *g2 = tensor_from_string("[5, 6]", DTYPE_FLOAT64);
    cr_assert_eq(tensor_backward_with(s2, g2), 0, "%s", error_get());
    cr_assert(a->grad->storage != b->grad->storage, "a.grad and b.grad share memory");
    tensor_fill_(a->grad, 0);
    assert_grad(b, (double[]){5, 6}, 2, "b.grad after writing a.grad");
    tensor_release(s2);
    tensor_release(g2);

    /* a leaf that is the loss itself, and an explicit upstream gradient */
    Tensor *g = tensor_from_string("[10, 20]", DTYPE_FLOAT64);
    Tensor *v = tensor_view(a, SHAPE(2));
    tensor_zero_grad(a);
    cr_assert_eq(tensor_backward_with(v, g), 0, "%s", error_get());
    assert_grad(a, (double[]){10, 20}, 2, "explicit gradient");
    cr_assert(a->grad->storage != g->storage, "a.grad shares the caller's grad_output");
    tensor_fill_(g, 0);
    assert_grad(a, (double[]){10, 20}, 2, "a.grad after writing grad_output");
    Tensor *ts[] = {a, b, s, l, g, v};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_release(ts[i]);
}

/* ---- grad mode, detach, requires_grad ---- */

Test(autograd, no_grad_records_nothing) {
    Tensor *x = leaf("[1, 2]");
    cr_assert(autograd_is_enabled());
    bool prev = autograd_set_enabled(false);
    cr_assert(prev);
    cr_assert(!autograd_is_enabled());
    Tensor *y = tensor_mul(x, x);
    Tensor *u = tensor_unsqueeze(x, 0);
    Tensor *v = tensor_transpose(u, 0, 1);
    cr_assert(!u->requires_grad && u->grad_fn == NULL);
    cr_assert(!v->requires_grad && v->grad_fn == NULL);
    Tensor *s = tensor_sum(y);
    cr_assert_null(y->grad_fn);
    cr_assert(!y->requires_grad);
    cr_assert_null(s->grad_fn);
    cr_assert(!s->requires_grad);
    cr_assert(!autograd_needs_grad(1, &x));
    cr_assert(autograd_set_enabled(prev) == false);
    cr_assert(autograd_is_enabled());
    /* backward of something made under no_grad */
    cr_assert_eq(tensor_backward(s), -1);
    assert_error_has("does not require grad");
    tensor_release(u);
    tensor_release(v);
    tensor_release(y);
    tensor_release(s);
    tensor_release(x);
}

Test(autograd, nested_no_grad_restores) {
    bool a = autograd_set_enabled(false);
    bool b = autograd_set_enabled(false);
    cr_assert(a && !b);
    autograd_set_enabled(b);
    cr_assert(!autograd_is_enabled());
    autograd_set_enabled(a);
    cr_assert(autograd_is_enabled());
}

Test(autograd, detach) {
    Tensor *x = leaf("[1, 2, 3]");
    Tensor *y = tensor_mul_scalar(x, 2);
    Tensor *d = tensor_detach(y);
    cr_assert(d != NULL);
    cr_assert(!d->requires_grad);
    cr_assert_null(d->grad_fn);
    cr_assert(d->storage == y->storage, "detach shares storage");
    Tensor *z = tensor_mul(d, d);
    cr_assert(!z->requires_grad && z->grad_fn == NULL);
    /* gradient stops at the detach: l = sum(y * detach(y)) -> dl/dx = 2 y */
    Tensor *p = tensor_mul(y, d);
    Tensor *l = tensor_sum(p);
    backward_ok(l);
    assert_grad(x, (double[]){4, 8, 12}, 3, "through detach");
    Tensor *ts[] = {x, y, d, z, p, l};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_release(ts[i]);
}

Test(autograd, requires_grad_rules) {
    Tensor *i = tensor_zeros(SHAPE(2), DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_set_requires_grad(i, true), -1);
    assert_error_has("only float tensors can require grad, not int64");
    Tensor *x = leaf("[1]");
    Tensor *y = tensor_mul_scalar(x, 2);
    cr_assert_eq(tensor_set_requires_grad(y, false), -1);
    assert_error_has("non-leaf");
    cr_assert_eq(tensor_set_requires_grad(x, false), 0);
    cr_assert(!x->requires_grad);
    /* an op over inputs that need no grad records nothing */
    Tensor *z = tensor_mul_scalar(x, 2);
    cr_assert_null(z->grad_fn);
    tensor_release(i);
    tensor_release(x);
    tensor_release(y);
    tensor_release(z);
}

/* ---- errors of backward ---- */

Test(autograd, backward_errors) {
    Tensor *x = leaf("[1, 2]");
    Tensor *y = tensor_mul_scalar(x, 2);
    error_clear();
    cr_assert_eq(tensor_backward(y), -1);
    assert_error_has("only for a one-element tensor, not shape [2]");
    cr_assert_null(x->grad);

    Tensor *c = tensor_from_string("[1, 2]", DTYPE_FLOAT64);
    Tensor *s = tensor_sum(c);
    cr_assert_eq(tensor_backward(s), -1);
    assert_error_has("does not require grad");

    Tensor *bad = tensor_zeros(SHAPE(3), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_backward_with(y, bad), -1);
    assert_error_has("gradient of shape [3] for an output of shape [2]");
    Tensor *f32 = tensor_zeros(SHAPE(2), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_backward_with(y, f32), -1); /* its buffer read as float64 otherwise */
    assert_error_has("backward: a gradient of float32 on cpu for an output of float64 on cpu");
    tensor_release(f32);
    cr_assert_eq(tensor_backward(NULL), -1);

    /* with an explicit gradient, a non-scalar works */
    Tensor *g = tensor_from_string("[1, 10]", DTYPE_FLOAT64);
    cr_assert_eq(tensor_backward_with(y, g), 0, "%s", error_get());
    assert_grad(x, (double[]){2, 20}, 2, "backward_with");
    Tensor *ts[] = {x, y, c, s, bad, g};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_release(ts[i]);
}

Test(autograd, one_element_non_scalar_loss) {
    Tensor *x = leaf("[[3]]");
    Tensor *y = tensor_mul(x, x); /* shape [1, 1] */
    backward_ok(y);
    assert_grad(x, (double[]){6}, 1, "[1,1] loss");
    tensor_release(x);
    tensor_release(y);
}

/* ---- the graph is freed ---- */

Test(autograd, graph_freed_after_backward) {
    Tensor *x = leaf("[1, 2, 3]");
    Tensor *a = tensor_exp(x);
    Tensor *b = tensor_mul(a, x);
    Tensor *c = tensor_view(b, SHAPE(3, 1));
    Tensor *l = tensor_sum(c);
    cr_assert(a->grad_fn && b->grad_fn && c->grad_fn && l->grad_fn);
    cr_assert_str_eq(b->grad_fn->name, "MulBackward");
    cr_assert_eq(x->refcount, 3, "the graph holds x (exp and mul)");
    backward_ok(l);
    cr_assert_null(a->grad_fn);
    cr_assert_null(b->grad_fn);
    cr_assert_null(c->grad_fn);
    cr_assert_null(l->grad_fn);
    cr_assert_eq(x->refcount, 1, "the freed graph no longer holds x");
    cr_assert_eq(a->refcount, 1);
    cr_assert_null(x->backward_grad);
    cr_assert_null(a->backward_grad);
    /* d/dx (x e^x) = e^x (1 + x) */
    double want[3];
    for (int i = 0; i < 3; i++) want[i] = exp(i + 1.0) * (i + 2.0);
    assert_tensor_values(x->grad, want, 3, 1e-12, "x e^x");
    Tensor *ts[] = {x, a, b, c, l};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_release(ts[i]);
}

Test(autograd, release_graph_without_backward) {
    /* The intermediates released first: the loss alone keeps the graph. */
    Tensor *x = leaf("[1, 2]");
    Tensor *a = tensor_sigmoid(x);
    Tensor *b = tensor_mul(a, a);
    Tensor *l = tensor_sum(b);
    tensor_release(a);
    tensor_release(b);
    cr_assert_eq(x->refcount, 2);
    tensor_release(l);
    cr_assert_eq(x->refcount, 1);
    tensor_release(x);
}

#define DEEP 10000

Test(autograd, deep_chain_backward) {
    Tensor *x = leaf("[1, 2]");
    Tensor *cur = tensor_retain(x);
    for (int i = 0; i < DEEP; i++) {
        Tensor *next = (i % 2) ? tensor_add_scalar(cur, 0.001) : tensor_mul_scalar(cur, 1.0);
        cr_assert(next != NULL);
        tensor_release(cur); /* only the chain's end is held */
        cur = next;
    }
    Tensor *l = tensor_sum(cur);
    backward_ok(l);
    assert_grad(x, (double[]){1, 1}, 2, "deep chain");
    cr_assert_null(cur->grad_fn);
    cr_assert_eq(x->refcount, 1);
    tensor_release(l);
    tensor_release(cur);
    tensor_release(x);
}

Test(autograd, deep_chain_released_without_backward) {
    /* tensor_release of the chain's end frees node after node. */
    Tensor *x = leaf("[1, 2]");
    Tensor *cur = tensor_retain(x);
    for (int i = 0; i < DEEP; i++) {
        Tensor *next = tensor_add_scalar(cur, 1);
        tensor_release(cur);
        cur = next;
    }
    cr_assert_eq(tensor_get(cur, 0), 1.0 + DEEP);
    tensor_release(cur);
    cr_assert_eq(x->refcount, 1);
    tensor_release(x);
}

/* ---- gradients through views ---- */

/* A [2, 3] float64 input with distinct values, requiring grad. */
static Tensor *input23(void) { return leaf("[[1, 2, 3], [4, 5, 6]]"); }

/* l = sum(v * w) for w = 1..numel in v's shape; returns dl/dv = w's values. */
static void backward_weighted(Tensor *v) {
    cr_assert(v != NULL, "%s", error_get());
    int64_t n = tensor_numel(v);
    double w[64];
    for (int64_t i = 0; i < n; i++) w[i] = (double)(i + 1);
    Tensor *wt = tensor_from_doubles(w, v->ndim, v->shape, v->dtype);
    Tensor *p = tensor_mul(v, wt);
    Tensor *l = tensor_sum(p);
    backward_ok(l);
    tensor_release(wt);
    tensor_release(p);
    tensor_release(l);
}

Test(autograd, grad_through_view_and_reshape) {
    Tensor *x = input23();
    Tensor *v = tensor_view(x, SHAPE(3, 2));
    backward_weighted(v);
    assert_grad(x, (double[]){1, 2, 3, 4, 5, 6}, 6, "view");
    tensor_release(v);
    tensor_zero_grad(x);
    v = tensor_view(x, SHAPE(-1));
    backward_weighted(v);
    assert_grad(x, (double[]){1, 2, 3, 4, 5, 6}, 6, "view(-1)");
    tensor_release(v);
    tensor_release(x);
}

Test(autograd, grad_through_transpose_and_permute) {
    Tensor *x = input23();
    Tensor *t = tensor_transpose(x, 0, 1); /* [3, 2]: t[i][j] = x[j][i] */
    backward_weighted(t);
    /* w over t row-major: t[0][0]=1 t[0][1]=2 t[1][0]=3 ... -> x[j][i] */
    assert_grad(x, (double[]){1, 3, 5, 2, 4, 6}, 6, "transpose");
    tensor_release(t);

    tensor_zero_grad(x);
    Tensor *x3 = tensor_view(x, SHAPE(1, 2, 3));
    Tensor *p = tensor_permute(x3, (int[]){2, 0, 1}); /* [3, 1, 2] */
    backward_weighted(p);
    assert_grad(x, (double[]){1, 3, 5, 2, 4, 6}, 6, "permute");
    tensor_release(x3);
    tensor_release(p);

    /* transposed then reshaped (a copy in the middle) */
    tensor_zero_grad(x);
    t = tensor_transpose(x, 0, 1);
    Tensor *r = tensor_reshape(t, SHAPE(6));
    backward_weighted(r);
    assert_grad(x, (double[]){1, 3, 5, 2, 4, 6}, 6, "transpose+reshape");
    tensor_release(t);
    tensor_release(r);
    tensor_release(x);
}

Test(autograd, grad_through_expand) {
    Tensor *x = leaf("[[1], [2]]"); /* [2, 1] */
    Tensor *e = tensor_expand(x, SHAPE(3, 2, 4));
    backward_weighted(e);
    /* x[0] sums w at [k][0][j]: (1..4) + (9..12) + (17..20) */
    double s0 = 0, s1 = 0;
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 4; j++) {
            s0 += k * 8 + j + 1;
            s1 += k * 8 + 4 + j + 1;
        }
    assert_grad(x, (double[]){s0, s1}, 2, "expand");
    tensor_release(e);
    tensor_release(x);
}

Test(autograd, grad_through_narrow_unsqueeze_contiguous) {
    Tensor *x = input23();
    Tensor *n = tensor_narrow(x, 1, 1, 2); /* columns 1, 2 */
    backward_weighted(n);
    assert_grad(x, (double[]){0, 1, 2, 0, 3, 4}, 6, "narrow");
    tensor_release(n);

    tensor_zero_grad(x);
    Tensor *u = tensor_unsqueeze(x, 1); /* [2, 1, 3] */
    backward_weighted(u);
    assert_grad(x, (double[]){1, 2, 3, 4, 5, 6}, 6, "unsqueeze");
    tensor_release(u);
    tensor_zero_grad(x);
    u = tensor_unsqueeze(x, 0); /* a fresh graph: backward freed the last */
    Tensor *sq = tensor_squeeze(u, 0);
    backward_weighted(sq);
    assert_grad(x, (double[]){1, 2, 3, 4, 5, 6}, 6, "squeeze");
    tensor_release(u);
    tensor_release(sq);

    tensor_zero_grad(x);
    Tensor *t = tensor_transpose(x, 0, 1);
    Tensor *c = tensor_contiguous(t);
    cr_assert(c != t && c->grad_fn != NULL);
    backward_weighted(c);
    assert_grad(x, (double[]){1, 3, 5, 2, 4, 6}, 6, "contiguous");
    tensor_release(t);
    tensor_release(c);

    tensor_zero_grad(x);
    Tensor *cl = tensor_clone(x);
    backward_weighted(cl);
    assert_grad(x, (double[]){1, 2, 3, 4, 5, 6}, 6, "clone");
    tensor_release(cl);
    tensor_release(x);
}

Test(autograd, grad_through_to_dtype) {
    Tensor *x = input23();
    Tensor *f = tensor_to_dtype(x, DTYPE_FLOAT32);
    cr_assert(f->requires_grad && f->grad_fn != NULL);
    backward_weighted(f);
    assert_grad(x, (double[]){1, 2, 3, 4, 5, 6}, 6, "float64 -> float32");
    tensor_release(f);
    /* to an integer dtype: no gradient flows, as torch */
    Tensor *i = tensor_to_dtype(x, DTYPE_INT64);
    cr_assert(!i->requires_grad && i->grad_fn == NULL);
    tensor_release(i);
    /* a float32 leaf seen through float64 math gets a float32 gradient */
    Tensor *y = tensor_from_string("[1, 2]", DTYPE_FLOAT32);
    tensor_set_requires_grad(y, true);
    Tensor *d = tensor_to_dtype(y, DTYPE_FLOAT64);
    Tensor *sq = tensor_mul(d, d);
    Tensor *l = tensor_sum(sq);
    backward_ok(l);
    cr_assert_eq(y->grad->dtype, DTYPE_FLOAT32);
    assert_tensor_values(y->grad, (double[]){2, 4}, 2, 0, "float32 leaf");
    Tensor *ts[] = {x, y, d, sq, l};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) tensor_release(ts[k]);
}

/* The same views, against finite differences of a nonlinear function. */
static Tensor *views_chain(Tensor **in, void *ctx) {
    (void)ctx;
    Tensor *x = in[0];                         /* [2, 3] */
    Tensor *t = tensor_transpose(x, 0, 1);      /* [3, 2] */
    Tensor *u = tensor_unsqueeze(t, 0);         /* [1, 3, 2] */
    Tensor *e = tensor_expand(u, SHAPE(2, 3, 2));
    Tensor *p = tensor_permute(e, (int[]){2, 1, 0}); /* [2, 3, 2] */
    Tensor *n = tensor_narrow(p, 1, 1, 2);      /* [2, 2, 2] */
    Tensor *r = tensor_reshape(n, SHAPE(4, 2));
    Tensor *out = tensor_mul(r, r);
    Tensor *ts[] = {t, u, e, p, n, r};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_release(ts[i]);
    return out;
}

Test(autograd, gradcheck_views_chain) {
    Tensor *x = gradcheck_input(SHAPE(2, 3), -1, 1, 7);
    gradcheck("views chain", views_chain, NULL, 1, &x);
    tensor_release(x);
}

Test(autograd, reduce_to_shape) {
    Tensor *g = tensor_from_string("[[[1,2,3],[4,5,6]]]", DTYPE_FLOAT64); /* [1, 2, 3] */
    Tensor *r = autograd_reduce_to_shape(g, SHAPE(3));
    cr_assert(r && r->ndim == 1 && r->shape[0] == 3);
    assert_tensor_values(r, (double[]){5, 7, 9}, 3, 0, "to [3]");
    Tensor *r2 = autograd_reduce_to_shape(g, SHAPE(2, 1));
    cr_assert(r2 && r2->ndim == 2 && r2->shape[0] == 2 && r2->shape[1] == 1);
    assert_tensor_values(r2, (double[]){6, 15}, 2, 0, "to [2, 1]");
    Tensor *r3 = autograd_reduce_to_shape(g, 0, NULL);
    cr_assert(r3 && r3->ndim == 0);
    cr_assert_eq(tensor_item(r3), 21.0);
    Tensor *same = autograd_reduce_to_shape(g, SHAPE(1, 2, 3));
    cr_assert(same == g);
    Tensor *ts[] = {g, r, r2, r3, same};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_release(ts[i]);
}

/* After backward frees the graph, going through it again is an error, not
 * silently lost gradients (torch raises the same). */
Test(autograd, backward_twice_through_freed_graph_is_an_error) {
    Tensor *x = tensor_from_string("[1, 2, 3]", DTYPE_FLOAT64);
    tensor_set_requires_grad(x, true);
    Tensor *y = tensor_mul(x, x);
    Tensor *loss = tensor_sum(y);
    cr_assert_eq(tensor_backward(loss), 0, "%s", error_get());
    cr_assert_eq(tensor_backward(loss), -1);
    cr_assert(strstr(error_get(), "second time") != NULL, "%s", error_get());
    /* y's graph is gone too: a new graph through y cannot reach x */
    Tensor *loss2 = tensor_sum(y);
    cr_assert_eq(tensor_backward(loss2), -1);
    cr_assert(strstr(error_get(), "second time") != NULL, "%s", error_get());
    /* x's gradient is still the first backward's, 2x */
    double want[3] = {2, 4, 6};
    assert_tensor_values(x->grad, want, 3, 1e-12, "x.grad");
    tensor_release(loss2);
    tensor_release(loss);
    tensor_release(y);
    tensor_release(x);
}

/* flatten (the op behind nn.Flatten) and the other reshaping views, each
 * checked against finite differences on a non-trivial layout. */
static Tensor *flatten_chain(Tensor **in, void *ctx) {
    (void)ctx;
    Tensor *t = tensor_transpose(in[0], 1, 2);   /* [2, 4, 3, 5], non-contiguous */
    Tensor *f = tensor_flatten(t, 1, -1);        /* [2, 60]: a copying reshape */
    Tensor *s = tensor_unsqueeze(f, 0);          /* [1, 2, 60] */
    Tensor *q = tensor_squeeze(s, 0);            /* [2, 60] */
    Tensor *c = tensor_clone(q);
    Tensor *v = tensor_view(c, SHAPE(-1, 12));   /* [10, 12] */
    Tensor *out = tensor_mul(v, v);
    tensor_release(t), tensor_release(f), tensor_release(s), tensor_release(q);
    tensor_release(c), tensor_release(v);
    return out;
}

Test(autograd, gradcheck_flatten_squeeze_clone_view) {
    Tensor *x = gradcheck_input(SHAPE(2, 3, 4, 5), -1, 1, 77);
    gradcheck("flatten chain", flatten_chain, NULL, 1, &x);
    tensor_release(x);
}

/* ---- very deep graphs: releasing one must not recurse per node ---- */

#define VERY_DEEP 200000

/* y = x * c, repeated n times, holding only the chain's end. */
static Tensor *scalar_chain(Tensor *x, double c, int n) {
    Tensor *cur = tensor_retain(x);
    for (int i = 0; i < n; i++) {
        Tensor *next = tensor_mul_scalar(cur, c);
        cr_assert(next != NULL, "step %d: %s", i, error_get());
        tensor_release(cur);
        cur = next;
    }
    return cur;
}

Test(autograd, very_deep_chain_released_without_backward) {
    /* 200k nodes would overflow the C stack if releasing the end recursed
     * into each node's inputs. */
    Tensor *x = tensor_from_string("[1, 2]", DTYPE_FLOAT32);
    cr_assert(x != NULL, "%s", error_get());
    cr_assert_eq(tensor_set_requires_grad(x, true), 0);
    Tensor *y = scalar_chain(x, 1.0001, VERY_DEEP);
    cr_assert_not_null(y->grad_fn);
    cr_assert_eq(x->refcount, 2); /* held by the first node */
    tensor_release(y);
    cr_assert_eq(x->refcount, 1);
    cr_assert_null(x->grad);
    tensor_release(x);
}

Test(autograd, very_deep_chain_backward) {
    /* d/dx of x * c^N is c^N, through a 50k-node graph (deep enough to
     * matter, short enough to stay fast under ASan). float64 so the
     * comparison with pow() is tight. */
    const double c = 1.0001;
    const int n = VERY_DEEP / 4;
    Tensor *x = leaf("[1, -2]");
    Tensor *y = scalar_chain(x, c, n);
    double want = pow(c, n);
    cr_assert(fabs(tensor_get(y, 1) + 2 * want) <= 1e-9 * 2 * want, "forward %.17g, want %.17g",
              tensor_get(y, 1), -2 * want);
    Tensor *l = tensor_sum(y);
    backward_ok(l);
    cr_assert_not_null(x->grad);
    for (int64_t i = 0; i < 2; i++)
        cr_assert(fabs(tensor_get(x->grad, i) - want) <= 1e-9 * want, "grad[%lld] %.17g, want %.17g",
                  (long long)i, tensor_get(x->grad, i), want);
    cr_assert_null(y->grad_fn);
    cr_assert_eq(x->refcount, 1);
    tensor_release(l);
    tensor_release(y);
    tensor_release(x);
}

/* ---- relu over memory it may take ---- */

/* relu's gradient of y = relu_consume(x * 3 - 1), loss sum(y * y): 2 y 3. */
static void relu_consume_case(bool keep, bool through_sigmoid) {
    Tensor *x = leaf("[-1, 0.25, 1, 2]");
    Tensor *t = tensor_mul_scalar(x, 3.0), *h = tensor_add_scalar(t, -1.0);
    tensor_release(t);
    if (through_sigmoid) { /* a node that keeps its output's memory */
        Tensor *s = tensor_sigmoid(h);
        tensor_release(h);
        h = s;
    }
    double before[4];
    for (int i = 0; i < 4; i++) before[i] = tensor_get(h, i);
    Tensor *kept = keep ? tensor_retain(h) : NULL;
    Tensor *y = tensor_relu_consume(h); /* h's reference is y's now */
    cr_assert(y != NULL, "%s", error_get());
    Tensor *input = y->grad_fn->inputs[0];
    bool shared = input->storage == y->storage;
    cr_assert_eq(shared, !keep && !through_sigmoid,
                 "memory taken only when h was the caller's alone");
    for (int i = 0; kept && i < 4; i++)
        cr_assert_eq(tensor_get(kept, i), before[i], "a kept input keeps its values");
    Tensor *sq = tensor_mul(y, y);
    Tensor *loss = tensor_sum(sq);
    backward_ok(loss);
    for (int i = 0; i < 4; i++) {
        double v = before[i], r = v > 0 ? v : 0;
        double ds = through_sigmoid ? v * (1 - v) : 1.0; /* v is sigmoid's output there */
        double want = 2 * r * (v > 0 ? 1 : 0) * ds * 3;
        cr_assert_float_eq(tensor_get(x->grad, i), want, 1e-12, "x[%d]", i);
    }
    tensor_release(kept), tensor_release(y), tensor_release(sq), tensor_release(loss);
    tensor_release(x);
}

Test(autograd, relu_consume_takes_memory_only_it_alone_holds) {
    relu_consume_case(false, false);
    relu_consume_case(true, false);
    relu_consume_case(false, true);
}

/* add_consume: an input its caller alone held, of the sum's shape, takes
 * the sum's memory; a kept one, or one broadcast, keeps its own; the
 * gradients are add's. */
Test(autograd, add_consume_takes_memory_of_inputs_given_whole) {
    Tensor *x = leaf("[[1, -2], [3, 4]]"), *r = leaf("[10, 20]");
    Tensor *a = tensor_mul_scalar(x, 2.0), *kept = tensor_mul_scalar(x, -1.0);
    Tensor *row = tensor_mul_scalar(r, 1.0);
    Tensor *s = tensor_add_consume(a, tensor_retain(kept));
    cr_assert(s != NULL, "%s", error_get());
    AutogradNode *node = s->grad_fn;
    cr_assert_eq(node->inputs[0]->storage, s->storage, "a, given whole, took the sum's memory");
    cr_assert_neq(kept->storage, s->storage, "a kept input keeps its memory");
    const double k[4] = {-1, 2, -3, -4};
    assert_tensor_values(kept, k, 4, 0, "kept's values");
    Tensor *t = tensor_add_consume(s, row); /* row broadcasts: its [2] stays */
    cr_assert(t != NULL, "%s", error_get());
    cr_assert_neq(t->grad_fn->inputs[1]->storage, t->storage);
    const double sum[4] = {11, 18, 13, 24};
    assert_tensor_values(t, sum, 4, 0, "x * 2 - x + r");
    Tensor *loss = tensor_sum(t);
    backward_ok(loss);
    const double gx[4] = {1, 1, 1, 1}, gr[2] = {2, 2};
    assert_grad(x, gx, 4, "x");
    assert_grad(r, gr, 2, "r");
    tensor_release(kept), tensor_release(t), tensor_release(loss);
    tensor_release(x), tensor_release(r);
}
