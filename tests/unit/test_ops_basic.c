/* test_ops_basic.c - the basic ops of core/ops: elementwise with
 * broadcasting, pointwise functions, reductions, matmul and linear.
 *
 * Three kinds of check: hand-computed forward values, float64 gradients
 * against finite differences (tests/support/gradcheck.h), and float32 parity
 * with PyTorch (tests/fixtures/gen_ops_basic.py -> ops_basic.json, and
 * gen_activations.py -> activations.json for GELU, SiLU and LeakyReLU).
 * Then the errors: shapes, dtypes, and argmax. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

static void assert_error_has(const char *needle) {
    cr_assert(strstr(error_get(), needle) != NULL, "error '%s' lacks '%s'", error_get(), needle);
}

static void release_all(Tensor **ts, int n) {
    for (int i = 0; i < n; i++) tensor_release(ts[i]);
}

/* ---- op adapters for gradcheck: ctx names the op ---- */

typedef Tensor *(*BinaryFn)(Tensor *, Tensor *);
typedef Tensor *(*UnaryFn)(Tensor *);
typedef struct {
    BinaryFn f;
} BinaryCtx;
typedef struct {
    UnaryFn f;
} UnaryCtx;

static Tensor *call_binary(Tensor **in, void *ctx) { return ((BinaryCtx *)ctx)->f(in[0], in[1]); }
static Tensor *call_unary(Tensor **in, void *ctx) { return ((UnaryCtx *)ctx)->f(in[0]); }

/* gradcheck of a binary op over inputs of shapes sa and sb in [lo, hi). */
static void check_binary(const char *name, BinaryFn f, int na, const int64_t *sa, int nb,
                         const int64_t *sb, double lo, double hi) {
    Tensor *in[2] = {gradcheck_input(na, sa, lo, hi, 11), gradcheck_input(nb, sb, lo, hi, 12)};
    BinaryCtx ctx = {f};
    gradcheck(name, call_binary, &ctx, 2, in);
    /* and with only one side requiring grad */
    tensor_set_requires_grad(in[0], false);
    gradcheck(name, call_binary, &ctx, 2, in);
    tensor_set_requires_grad(in[0], true);
    tensor_set_requires_grad(in[1], false);
    gradcheck(name, call_binary, &ctx, 2, in);
    release_all(in, 2);
}

static void check_unary(const char *name, UnaryFn f, double lo, double hi) {
    Tensor *x = gradcheck_input(SHAPE(3, 4), lo, hi, 21);
    UnaryCtx ctx = {f};
    gradcheck(name, call_unary, &ctx, 1, &x);
    tensor_release(x);
}

/* The same op applied to a transposed (non-contiguous) view of the input. */
static UnaryFn transposed_target;
static Tensor *call_unary_transposed(Tensor **in, void *ctx) {
    (void)ctx;
    Tensor *t = tensor_transpose(in[0], 0, 1);
    Tensor *y = transposed_target(t);
    tensor_release(t);
    return y;
}

static void check_unary_transposed(const char *name, UnaryFn f, double lo, double hi) {
    Tensor *x = gradcheck_input(SHAPE(3, 4), lo, hi, 22);
    transposed_target = f;
    gradcheck(name, call_unary_transposed, NULL, 1, &x);
    tensor_release(x);
}

/* ---- forward values by hand ---- */

Test(ops_basic, broadcast_forward_values) {
    Tensor *a = tensor_from_string("[[1,2,3],[4,5,6]]", DTYPE_FLOAT32);
    Tensor *r = tensor_from_string("[10,20,30]", DTYPE_FLOAT32);
    Tensor *c = tensor_from_string("[[100],[200]]", DTYPE_FLOAT32);
    Tensor *s = tensor_scalar(2, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *o1 = tensor_add(a, r);
    assert_tensor_values(o1, (double[]){11, 22, 33, 14, 25, 36}, 6, 0, "[2,3] + [3]");
    Tensor *o2 = tensor_sub(c, a);
    assert_tensor_values(o2, (double[]){99, 98, 97, 196, 195, 194}, 6, 0, "[2,1] - [2,3]");
    Tensor *o3 = tensor_mul(s, a);
    assert_tensor_values(o3, (double[]){2, 4, 6, 8, 10, 12}, 6, 0, "scalar * [2,3]");
    Tensor *o4 = tensor_div(a, s);
    assert_tensor_values(o4, (double[]){.5, 1, 1.5, 2, 2.5, 3}, 6, 0, "[2,3] / scalar");
    Tensor *col = tensor_from_string("[[1],[2]]", DTYPE_FLOAT32);
    Tensor *row = tensor_from_string("[[1,2,3]]", DTYPE_FLOAT32);
    Tensor *o5 = tensor_mul(col, row); /* outer product by broadcasting */
    cr_assert(o5->ndim == 2 && o5->shape[0] == 2 && o5->shape[1] == 3);
    assert_tensor_values(o5, (double[]){1, 2, 3, 2, 4, 6}, 6, 0, "[2,1] * [1,3]");
    Tensor *o6 = tensor_pow(row, s);
    assert_tensor_values(o6, (double[]){1, 4, 9}, 3, 0, "pow");
    /* non-contiguous operands */
    Tensor *at = tensor_transpose(a, 0, 1); /* [3,2] */
    cr_assert_null(tensor_add(at, r)); /* [3,2] + [3] */
    Tensor *rc = tensor_view(r, SHAPE(3, 1));
    Tensor *o8 = tensor_add(at, rc);
    assert_tensor_values(o8, (double[]){11, 14, 22, 25, 33, 36}, 6, 0, "transpose + [3,1]");
    Tensor *ts[] = {a, r, c, s, o1, o2, o3, o4, col, row, o5, o6, at, rc, o8};
    release_all(ts, sizeof ts / sizeof ts[0]);
}

Test(ops_basic, pointwise_forward_values) {
    Tensor *x = tensor_from_string("[-2, -0.5, 0, 0.5, 2]", DTYPE_FLOAT64);
    Tensor *r = tensor_relu(x), *ab = tensor_abs(x), *n = tensor_neg(x);
    Tensor *cl = tensor_clamp(x, -1, 1), *clmin = tensor_clamp(x, 0, NAN);
    Tensor *clnone = tensor_clamp(x, NAN, NAN);
    Tensor *as = tensor_add_scalar(x, 1), *ms = tensor_mul_scalar(x, -2);
    assert_tensor_values(r, (double[]){0, 0, 0, .5, 2}, 5, 0, "relu");
    assert_tensor_values(ab, (double[]){2, .5, 0, .5, 2}, 5, 0, "abs");
    assert_tensor_values(n, (double[]){2, .5, 0, -.5, -2}, 5, 0, "neg");
    assert_tensor_values(cl, (double[]){-1, -.5, 0, .5, 1}, 5, 0, "clamp");
    assert_tensor_values(clmin, (double[]){0, 0, 0, .5, 2}, 5, 0, "clamp min");
    assert_tensor_values(clnone, (double[]){-2, -.5, 0, .5, 2}, 5, 0, "clamp none");
    cr_assert(clnone != x && clnone->storage != x->storage, "clamp returns a new tensor");
    assert_tensor_values(as, (double[]){-1, .5, 1, 1.5, 3}, 5, 0, "add_scalar");
    assert_tensor_values(ms, (double[]){4, 1, 0, -1, -4}, 5, 0, "mul_scalar");
    Tensor *e = tensor_exp(x), *sg = tensor_sigmoid(x), *th = tensor_tanh(x);
    for (int i = 0; i < 5; i++) {
        double v = tensor_get(x, i);
        cr_assert_float_eq(tensor_get(e, i), exp(v), 1e-15);
        cr_assert_float_eq(tensor_get(sg, i), 1 / (1 + exp(-v)), 1e-15);
        cr_assert_float_eq(tensor_get(th, i), tanh(v), 1e-15);
    }
    Tensor *p = tensor_from_string("[0.25, 1, 4]", DTYPE_FLOAT64);
    Tensor *lg = tensor_log(p), *sq = tensor_sqrt(p), *pw = tensor_pow_scalar(p, 1.5);
    assert_tensor_values(lg, (double[]){log(.25), 0, log(4)}, 3, 1e-15, "log");
    assert_tensor_values(sq, (double[]){.5, 1, 2}, 3, 1e-15, "sqrt");
    assert_tensor_values(pw, (double[]){.125, 1, 8}, 3, 1e-15, "pow 1.5");
    Tensor *ts[] = {x, r, ab, n, cl, clmin, clnone, as, ms, e, sg, th, p, lg, sq, pw};
    release_all(ts, sizeof ts / sizeof ts[0]);
}

Test(ops_basic, reduce_forward_values) {
    Tensor *a = tensor_from_string("[[[1,2],[3,4],[5,6]],[[7,8],[9,10],[11,12]]]", DTYPE_FLOAT64);
    Tensor *s = tensor_sum(a), *m = tensor_mean(a);
    cr_assert(s->ndim == 0 && m->ndim == 0);
    cr_assert_eq(tensor_item(s), 78.0);
    cr_assert_eq(tensor_item(m), 6.5);
    Tensor *s0 = tensor_sum_dims(a, 1, (int[]){0}, false);
    cr_assert(s0->ndim == 2 && s0->shape[0] == 3 && s0->shape[1] == 2);
    assert_tensor_values(s0, (double[]){8, 10, 12, 14, 16, 18}, 6, 0, "sum dim 0");
    Tensor *s1 = tensor_sum_dims(a, 1, (int[]){-2}, true);
    cr_assert(s1->ndim == 3 && s1->shape[0] == 2 && s1->shape[1] == 1 && s1->shape[2] == 2);
    assert_tensor_values(s1, (double[]){9, 12, 27, 30}, 4, 0, "sum dim -2 keepdim");
    Tensor *m02 = tensor_mean_dims(a, 2, (int[]){0, -1}, false);
    cr_assert(m02->ndim == 1 && m02->shape[0] == 3);
    assert_tensor_values(m02, (double[]){4.5, 6.5, 8.5}, 3, 0, "mean dims 0,-1");
    Tensor *all = tensor_sum_dims(a, 3, (int[]){0, 1, 2}, true);
    cr_assert(all->ndim == 3 && tensor_numel(all) == 1);
    cr_assert_eq(tensor_item(all), 78.0);
    /* a transposed input */
    Tensor *t = tensor_transpose(a, 0, 2); /* [2, 3, 2] */
    Tensor *st = tensor_sum_dims(t, 1, (int[]){-1}, false);
    assert_tensor_values(st, (double[]){8, 12, 16, 10, 14, 18}, 6, 0, "sum of transpose");
    /* empty */
    Tensor *e = tensor_zeros(SHAPE(0, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *se = tensor_sum_dims(e, 1, (int[]){0}, false);
    assert_tensor_values(se, (double[]){0, 0, 0}, 3, 0, "sum over empty");
    Tensor *ts[] = {a, s, m, s0, s1, m02, all, t, st, e, se};
    release_all(ts, sizeof ts / sizeof ts[0]);
}

Test(ops_basic, matmul_forward_values) {
    Tensor *a = tensor_from_string("[[1,2],[3,4],[5,6]]", DTYPE_FLOAT32); /* [3,2] */
    Tensor *b = tensor_from_string("[[1,0,2],[0,1,3]]", DTYPE_FLOAT32);   /* [2,3] */
    Tensor *v = tensor_from_string("[1, -1]", DTYPE_FLOAT32);
    Tensor *ab = tensor_matmul(a, b);
    cr_assert(ab->ndim == 2 && ab->shape[0] == 3 && ab->shape[1] == 3);
    assert_tensor_values(ab, (double[]){1, 2, 8, 3, 4, 18, 5, 6, 28}, 9, 0, "a @ b");
    Tensor *av = tensor_matmul(a, v);
    cr_assert(av->ndim == 1 && av->shape[0] == 3);
    assert_tensor_values(av, (double[]){-1, -1, -1}, 3, 0, "a @ v");
    Tensor *vb = tensor_matmul(v, b);
    cr_assert(vb->ndim == 1 && vb->shape[0] == 3);
    assert_tensor_values(vb, (double[]){1, -1, -1}, 3, 0, "v @ b");
    Tensor *vv = tensor_matmul(v, v);
    cr_assert(vv->ndim == 0);
    cr_assert_eq(tensor_item(vv), 2.0);
    /* a^T @ a through a transposed view */
    Tensor *at = tensor_transpose(a, 0, 1);
    Tensor *ata = tensor_matmul(at, a);
    assert_tensor_values(ata, (double[]){35, 44, 44, 56}, 4, 0, "a^T a");
    /* batched with a broadcast batch: [2,3,2] @ [2,3] */
    Tensor *a2 = tensor_expand(a, SHAPE(2, 3, 2));
    Tensor *bb = tensor_matmul(a2, b);
    cr_assert(bb->ndim == 3 && bb->shape[0] == 2 && bb->shape[1] == 3 && bb->shape[2] == 3);
    for (int i = 0; i < 9; i++) cr_assert_eq(tensor_get(bb, 9 + i), tensor_get(ab, i));
    /* empty inner dimension: zeros */
    Tensor *e1 = tensor_zeros(SHAPE(2, 0), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *e2 = tensor_zeros(SHAPE(0, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *ee = tensor_matmul(e1, e2);
    assert_tensor_values(ee, (double[]){0, 0, 0, 0, 0, 0}, 6, 0, "[2,0] @ [0,3]");
    Tensor *ts[] = {a, b, v, ab, av, vb, vv, at, ata, a2, bb, e1, e2, ee};
    release_all(ts, sizeof ts / sizeof ts[0]);
}

Test(ops_basic, linear_forward_values) {
    Tensor *x = tensor_from_string("[[1,2],[3,4]]", DTYPE_FLOAT32);
    Tensor *w = tensor_from_string("[[1,0],[0,1],[1,1]]", DTYPE_FLOAT32);
    Tensor *b = tensor_from_string("[10,20,30]", DTYPE_FLOAT32);
    Tensor *y = tensor_linear(x, w, b);
    cr_assert(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 3);
    assert_tensor_values(y, (double[]){11, 22, 33, 13, 24, 37}, 6, 0, "linear");
    Tensor *y0 = tensor_linear(x, w, NULL);
    assert_tensor_values(y0, (double[]){1, 2, 3, 3, 4, 7}, 6, 0, "linear without bias");
    Tensor *x1 = tensor_from_string("[1, 2]", DTYPE_FLOAT32);
    Tensor *y1 = tensor_linear(x1, w, b);
    cr_assert(y1->ndim == 1 && y1->shape[0] == 3);
    assert_tensor_values(y1, (double[]){11, 22, 33}, 3, 0, "1-d input");
    Tensor *ts[] = {x, w, b, y, y0, x1, y1};
    release_all(ts, sizeof ts / sizeof ts[0]);
}

/* ---- gradients by finite differences (float64) ---- */

Test(ops_basic, gradcheck_add_sub_mul_div_broadcast) {
    struct {
        const char *name;
        BinaryFn f;
        double lo, hi;
    } ops[] = {
        {"add", tensor_add, -1, 1},
        {"sub", tensor_sub, -1, 1},
        {"mul", tensor_mul, -1, 1},
        {"div", tensor_div, 0.5, 2},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        double lo = ops[i].lo, hi = ops[i].hi;
        check_binary(ops[i].name, ops[i].f, SHAPE(2, 3), SHAPE(2, 3), lo, hi);
        check_binary(ops[i].name, ops[i].f, SHAPE(2, 3), SHAPE(3), lo, hi);
        check_binary(ops[i].name, ops[i].f, SHAPE(3), SHAPE(2, 3), lo, hi);
        check_binary(ops[i].name, ops[i].f, SHAPE(2, 1), SHAPE(1, 3), lo, hi);
        check_binary(ops[i].name, ops[i].f, 0, NULL, SHAPE(2, 3), lo, hi);
        check_binary(ops[i].name, ops[i].f, SHAPE(2, 3), 0, NULL, lo, hi);
        check_binary(ops[i].name, ops[i].f, SHAPE(2, 1, 3), SHAPE(4, 1), lo, hi);
    }
}

Test(ops_basic, gradcheck_pow) {
    /* positive bases; exponents of both signs */
    check_binary("pow", tensor_pow, SHAPE(2, 3), SHAPE(2, 3), 0.5, 2);
    check_binary("pow", tensor_pow, SHAPE(2, 3), SHAPE(3), 0.5, 2);
    check_binary("pow", tensor_pow, SHAPE(2, 3), 0, NULL, 0.5, 2);
    Tensor *in[2] = {gradcheck_input(SHAPE(2, 3), 0.5, 2, 1),
                     gradcheck_input(SHAPE(2, 3), -1.5, 1.5, 2)};
    BinaryCtx ctx = {tensor_pow};
    gradcheck("pow negative exponents", call_binary, &ctx, 2, in);
    release_all(in, 2);
}

static double pow_exponent;
static Tensor *call_pow_scalar(Tensor **in, void *ctx) {
    (void)ctx;
    return tensor_pow_scalar(in[0], pow_exponent);
}

Test(ops_basic, gradcheck_pow_scalar) {
    const double exps[] = {2, 3, 0.5, -0.5, -1, -2, 1.5, 1};
    Tensor *x = gradcheck_input(SHAPE(3, 4), 0.5, 2, 3);
    for (size_t i = 0; i < sizeof exps / sizeof exps[0]; i++) {
        pow_exponent = exps[i];
        gradcheck("pow_scalar", call_pow_scalar, NULL, 1, &x);
    }
    tensor_release(x);
}

static Tensor *exp_(Tensor *a) { return tensor_exp(a); }
static Tensor *add_scalar_(Tensor *a) { return tensor_add_scalar(a, 0.75); }
static Tensor *mul_scalar_(Tensor *a) { return tensor_mul_scalar(a, -2.5); }
static Tensor *clamp_both(Tensor *a) { return tensor_clamp(a, -0.5, 0.4); }
static Tensor *gelu_(Tensor *a) { return tensor_gelu(a, false); }
static Tensor *gelu_tanh_(Tensor *a) { return tensor_gelu(a, true); }
static Tensor *leaky_relu_(Tensor *a) { return tensor_leaky_relu(a, 0.01); }
static Tensor *leaky_relu_03(Tensor *a) { return tensor_leaky_relu(a, 0.3); }
static Tensor *leaky_relu_neg(Tensor *a) { return tensor_leaky_relu(a, -1.5); }
static Tensor *clamp_min(Tensor *a) { return tensor_clamp(a, -0.2, NAN); }
static Tensor *clamp_max(Tensor *a) { return tensor_clamp(a, NAN, 0.3); }
static Tensor *clamp_none(Tensor *a) { return tensor_clamp(a, NAN, NAN); }

Test(ops_basic, gradcheck_pointwise) {
    check_unary("exp", exp_, -1, 1);
    check_unary("log", tensor_log, 0.2, 3);
    check_unary("sqrt", tensor_sqrt, 0.2, 3);
    check_unary("abs", tensor_abs, -1, 1);
    check_unary("relu", tensor_relu, -1, 1);
    check_unary("sigmoid", tensor_sigmoid, -3, 3);
    check_unary("tanh", tensor_tanh, -2, 2);
    check_unary("neg", tensor_neg, -1, 1);
    check_unary("add_scalar", add_scalar_, -1, 1);
    check_unary("mul_scalar", mul_scalar_, -1, 1);
    check_unary("clamp", clamp_both, -1, 1);
    check_unary("clamp min", clamp_min, -1, 1);
    check_unary("clamp max", clamp_max, -1, 1);
    check_unary("clamp none", clamp_none, -1, 1);
    check_unary("gelu", gelu_, -3, 3);
    check_unary("gelu tanh", gelu_tanh_, -3, 3);
    check_unary("silu", tensor_silu, -4, 4);
    check_unary("leaky_relu", leaky_relu_, -1, 1);
    check_unary("leaky_relu 0.3", leaky_relu_03, -1, 1);
    check_unary("leaky_relu -1.5", leaky_relu_neg, -1, 1);
}

Test(ops_basic, gradcheck_pointwise_non_contiguous) {
    check_unary_transposed("exp", exp_, -1, 1);
    check_unary_transposed("log", tensor_log, 0.2, 3);
    check_unary_transposed("sqrt", tensor_sqrt, 0.2, 3);
    check_unary_transposed("relu", tensor_relu, -1, 1);
    check_unary_transposed("sigmoid", tensor_sigmoid, -3, 3);
    check_unary_transposed("tanh", tensor_tanh, -2, 2);
    check_unary_transposed("clamp", clamp_both, -1, 1);
    check_unary_transposed("abs", tensor_abs, -1, 1);
    check_unary_transposed("gelu", gelu_, -3, 3);
    check_unary_transposed("gelu tanh", gelu_tanh_, -3, 3);
    check_unary_transposed("silu", tensor_silu, -4, 4);
    check_unary_transposed("leaky_relu 0.3", leaky_relu_03, -1, 1);
}

/* Values and gradients in float64 from torch 1.13 (F.gelu, F.silu,
 * F.leaky_relu(x, 0.1) at these points); at 0: gelu' = silu' = 0.5 and
 * leaky_relu' = the slope, as torch (x > 0 ? 1 : slope). */
Test(ops_basic, activation_values_and_gradients) {
    static const struct {
        const char *name;
        UnaryFn f;
        double y[5], g[5];
    } cases[] = {
        {"gelu", gelu_,
         {-0.04550026389635842, -0.15426876936299344, 0, 0.34573123063700656, 1.9544997361036416},
         {-0.08523180107819692, 0.13250487534383712, 0.5, 0.8674951246561629, 1.085231801078197}},
        {"gelu tanh", gelu_tanh_,
         {-0.04540230591222494, -0.15428599017485606, 0, 0.34571400982514394, 1.954597694087775},
         {-0.0860992566236183, 0.13263009646535764, 0.5, 0.8673699035346424, 1.0860992566236183}},
        {"silu", tensor_silu,
         {-0.2384058440442351, -0.1887703343990727, 0, 0.3112296656009273, 1.7615941559557646},
         {-0.09078424878489547, 0.2600388126973482, 0.5, 0.7399611873026519, 1.0907842487848955}},
        {"leaky_relu 0.1", NULL, {-0.2, -0.05, 0, 0.5, 2}, {0.1, 0.1, 0.1, 1, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Tensor *x = tensor_from_string("[-2, -0.5, 0, 0.5, 2]", DTYPE_FLOAT64);
        tensor_set_requires_grad(x, true);
        Tensor *y = cases[c].f ? cases[c].f(x) : tensor_leaky_relu(x, 0.1);
        Tensor *l = tensor_sum(y);
        cr_assert_eq(tensor_backward(l), 0, "%s: %s", cases[c].name, error_get());
        assert_tensor_values(y, cases[c].y, 5, 1e-15, cases[c].name);
        assert_tensor_values(x->grad, cases[c].g, 5, 1e-15, cases[c].name);
        Tensor *ts[] = {x, y, l};
        release_all(ts, 3);
    }
}

Test(ops_basic, pointwise_gradient_at_the_kinks) {
    /* torch: relu'(0) = 0, abs'(0) = 0, clamp passes the gradient at the
     * bounds themselves */
    Tensor *x = tensor_from_string("[-1, 0, 1]", DTYPE_FLOAT64);
    tensor_set_requires_grad(x, true);
    Tensor *r = tensor_relu(x), *l = tensor_sum(r);
    tensor_backward(l);
    assert_tensor_values(x->grad, (double[]){0, 0, 1}, 3, 0, "relu'");
    tensor_release(r), tensor_release(l);
    tensor_zero_grad(x);
    Tensor *a = tensor_abs(x);
    l = tensor_sum(a);
    tensor_backward(l);
    assert_tensor_values(x->grad, (double[]){-1, 0, 1}, 3, 0, "abs'");
    tensor_release(a), tensor_release(l);
    tensor_zero_grad(x);
    Tensor *c = tensor_clamp(x, -1, 0);
    l = tensor_sum(c);
    tensor_backward(l);
    assert_tensor_values(x->grad, (double[]){1, 1, 0}, 3, 0, "clamp' at the bounds");
    tensor_release(c), tensor_release(l);
    /* x ** 0 has gradient 0 everywhere, including x = 0 (not 0 * inf) */
    tensor_zero_grad(x);
    Tensor *p0 = tensor_pow_scalar(x, 0);
    l = tensor_sum(p0);
    tensor_backward(l);
    assert_tensor_values(x->grad, (double[]){0, 0, 0}, 3, 0, "d/dx x**0");
    tensor_release(p0), tensor_release(l);
    tensor_release(x);
}

/* torch's masks where the formulas are 0 * inf: a ** b's gradient in a is
 * 0 where b = 0, in b 0 where a = 0 and b >= 0; clamp passes none where x
 * is NaN or min > max. */
Test(ops_basic, gradient_where_torch_masks_it) {
    Tensor *a = tensor_from_string("[0, 0, 2]", DTYPE_FLOAT64);
    Tensor *b = tensor_from_string("[2, 0, 3]", DTYPE_FLOAT64);
    tensor_set_requires_grad(a, true);
    tensor_set_requires_grad(b, true);
    Tensor *p = tensor_pow(a, b), *l = tensor_sum(p);
    cr_assert_eq(tensor_backward(l), 0, "%s", error_get());
    assert_tensor_values(a->grad, (double[]){0, 0, 12}, 3, 1e-15, "d/da a**b");
    assert_tensor_values(b->grad, (double[]){0, 0, 8 * log(2)}, 3, 1e-15, "d/db a**b");
    tensor_release(p), tensor_release(l), tensor_release(a), tensor_release(b);

    Tensor *x = tensor_from_string("[1.5, 0.5, 3, 1]", DTYPE_FLOAT64);
    double nan_at_1[4] = {1.5, NAN, 3, 1};
    Tensor *xn = tensor_from_doubles(nan_at_1, SHAPE(4), DTYPE_FLOAT64);
    tensor_set_requires_grad(x, true);
    tensor_set_requires_grad(xn, true);
    Tensor *c = tensor_clamp(x, 2, 1);
    l = tensor_sum(c);
    cr_assert_eq(tensor_backward(l), 0, "%s", error_get());
    assert_tensor_values(x->grad, (double[]){0, 0, 0, 0}, 4, 0, "clamp' with min > max");
    tensor_release(c), tensor_release(l);
    c = tensor_clamp(xn, 1, 2);
    l = tensor_sum(c);
    cr_assert_eq(tensor_backward(l), 0, "%s", error_get());
    assert_tensor_values(xn->grad, (double[]){1, 0, 0, 1}, 4, 0, "clamp' of a NaN");
    tensor_release(c), tensor_release(l), tensor_release(x), tensor_release(xn);
}

typedef struct {
    int n;
    int dims[TENSOR_MAX_DIMS];
    bool keepdim, mean;
} ReduceCtx;

static Tensor *call_reduce(Tensor **in, void *ctx) {
    ReduceCtx *c = ctx;
    if (c->n < 0) return c->mean ? tensor_mean(in[0]) : tensor_sum(in[0]);
    return c->mean ? tensor_mean_dims(in[0], c->n, c->dims, c->keepdim)
                   : tensor_sum_dims(in[0], c->n, c->dims, c->keepdim);
}

Test(ops_basic, gradcheck_reductions) {
    ReduceCtx cases[] = {
        {-1, {0}, false, false}, {-1, {0}, false, true},
        {1, {0}, false, false},  {1, {0}, true, true},
        {1, {-1}, false, true},  {1, {-1}, true, false},
        {2, {0, 2}, false, false}, {2, {-1, -3}, true, true},
        {2, {1, -1}, false, true}, {3, {0, 1, 2}, false, false},
    };
    Tensor *x = gradcheck_input(SHAPE(2, 3, 4), -1, 1, 5);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        gradcheck(cases[i].mean ? "mean" : "sum", call_reduce, &cases[i], 1, &x);
    tensor_release(x);
    /* a 0-d input and a 1-d one */
    Tensor *s = gradcheck_input(0, NULL, -1, 1, 6);
    gradcheck("sum 0-d", call_reduce, &cases[0], 1, &s);
    tensor_release(s);
    Tensor *v = gradcheck_input(SHAPE(5), -1, 1, 7);
    gradcheck("mean 1-d", call_reduce, &cases[4], 1, &v);
    tensor_release(v);
}

/* matmul variants: ctx picks which operand is transposed before the product */
typedef struct {
    bool trans_a, trans_b;
} MatmulCtx;

static Tensor *call_matmul(Tensor **in, void *ctx) {
    MatmulCtx *c = ctx;
    Tensor *a = c->trans_a ? tensor_transpose(in[0], -1, -2) : tensor_retain(in[0]);
    Tensor *b = c->trans_b ? tensor_transpose(in[1], -1, -2) : tensor_retain(in[1]);
    Tensor *y = tensor_matmul(a, b);
    tensor_release(a);
    tensor_release(b);
    return y;
}

static void check_matmul(const char *name, int na, const int64_t *sa, int nb, const int64_t *sb,
                         bool ta, bool tb) {
    Tensor *in[2] = {gradcheck_input(na, sa, -1, 1, 31), gradcheck_input(nb, sb, -1, 1, 32)};
    MatmulCtx ctx = {ta, tb};
    gradcheck(name, call_matmul, &ctx, 2, in);
    tensor_set_requires_grad(in[0], false);
    gradcheck(name, call_matmul, &ctx, 2, in);
    release_all(in, 2);
}

Test(ops_basic, gradcheck_matmul) {
    check_matmul("1-d @ 1-d", SHAPE(4), SHAPE(4), false, false);
    check_matmul("1-d @ 2-d", SHAPE(3), SHAPE(3, 4), false, false);
    check_matmul("2-d @ 1-d", SHAPE(2, 3), SHAPE(3), false, false);
    check_matmul("2-d @ 2-d", SHAPE(2, 3), SHAPE(3, 4), false, false);
    check_matmul("3-d @ 3-d", SHAPE(2, 2, 3), SHAPE(2, 3, 4), false, false);
    check_matmul("3-d @ 2-d", SHAPE(2, 2, 3), SHAPE(3, 4), false, false);
    check_matmul("2-d @ 3-d", SHAPE(2, 3), SHAPE(2, 3, 4), false, false);
    check_matmul("1-d @ 3-d", SHAPE(3), SHAPE(2, 3, 4), false, false);
    check_matmul("3-d @ 1-d", SHAPE(2, 2, 3), SHAPE(3), false, false);
    check_matmul("[2,1,2,3] @ [3,3,4]", SHAPE(2, 1, 2, 3), SHAPE(3, 3, 4), false, false);
    check_matmul("a^T @ b", SHAPE(3, 2), SHAPE(3, 4), true, false);
    check_matmul("a @ b^T", SHAPE(2, 3), SHAPE(4, 3), false, true);
    check_matmul("a^T @ b^T", SHAPE(3, 2), SHAPE(4, 3), true, true);
    check_matmul("batched a^T @ b^T", SHAPE(2, 3, 2), SHAPE(2, 4, 3), true, true);
    check_matmul("broadcast a @ b^T", SHAPE(2, 2, 3), SHAPE(4, 3), false, true);
}

static Tensor *call_linear(Tensor **in, void *ctx) {
    return tensor_linear(in[0], in[1], ctx ? in[2] : NULL);
}

/* linear of a transposed input and a transposed weight */
static Tensor *call_linear_transposed(Tensor **in, void *ctx) {
    (void)ctx;
    Tensor *x = tensor_transpose(in[0], 0, 1), *w = tensor_transpose(in[1], 0, 1);
    Tensor *y = tensor_linear(x, w, in[2]);
    tensor_release(x);
    tensor_release(w);
    return y;
}

Test(ops_basic, gradcheck_linear) {
    int dummy;
    Tensor *in[3] = {gradcheck_input(SHAPE(2, 3), -1, 1, 41), gradcheck_input(SHAPE(4, 3), -1, 1, 42),
                     gradcheck_input(SHAPE(4), -1, 1, 43)};
    gradcheck("linear", call_linear, &dummy, 3, in);
    gradcheck("linear no bias", call_linear, NULL, 2, in);
    Tensor *x3 = gradcheck_input(SHAPE(2, 2, 3), -1, 1, 44);
    Tensor *in3[3] = {x3, in[1], in[2]};
    gradcheck("linear 3-d", call_linear, &dummy, 3, in3);
    Tensor *x1 = gradcheck_input(SHAPE(3), -1, 1, 45);
    Tensor *in1[3] = {x1, in[1], in[2]};
    gradcheck("linear 1-d", call_linear, &dummy, 3, in1);
    /* only the weight requires grad (a frozen input, as in a first layer) */
    tensor_set_requires_grad(x3, false);
    gradcheck("linear weight only", call_linear, &dummy, 3, in3);
    /* transposed (non-contiguous) input and weight */
    Tensor *xt = gradcheck_input(SHAPE(3, 2), -1, 1, 46);
    Tensor *wt = gradcheck_input(SHAPE(3, 4), -1, 1, 47);
    Tensor *int_[3] = {xt, wt, in[2]};
    gradcheck("linear transposed", call_linear_transposed, NULL, 3, int_);
    release_all(in, 3);
    tensor_release(x1);
    tensor_release(x3);
    tensor_release(xt);
    tensor_release(wt);
}

/* ---- parity with PyTorch (float32) ---- */

typedef Tensor *(*FixtureFn)(Tensor **in);

static Tensor *fx_add(Tensor **in) { return tensor_add(in[0], in[1]); }
static Tensor *fx_sub(Tensor **in) { return tensor_sub(in[0], in[1]); }
static Tensor *fx_mul(Tensor **in) { return tensor_mul(in[0], in[1]); }
static Tensor *fx_div(Tensor **in) { return tensor_div(in[0], in[1]); }
static Tensor *fx_pow(Tensor **in) { return tensor_pow(in[0], in[1]); }
static Tensor *fx_pow_scalar(Tensor **in) { return tensor_pow_scalar(in[0], 1.5); }
static Tensor *fx_add_scalar(Tensor **in) { return tensor_add_scalar(in[0], 0.25); }
static Tensor *fx_mul_scalar(Tensor **in) { return tensor_mul_scalar(in[0], -3.0); }
static Tensor *fx_neg(Tensor **in) { return tensor_neg(in[0]); }
static Tensor *fx_exp(Tensor **in) { return tensor_exp(in[0]); }
static Tensor *fx_log(Tensor **in) { return tensor_log(in[0]); }
static Tensor *fx_sqrt(Tensor **in) { return tensor_sqrt(in[0]); }
static Tensor *fx_abs(Tensor **in) { return tensor_abs(in[0]); }
static Tensor *fx_relu(Tensor **in) { return tensor_relu(in[0]); }
static Tensor *fx_sigmoid(Tensor **in) { return tensor_sigmoid(in[0]); }
static Tensor *fx_tanh(Tensor **in) { return tensor_tanh(in[0]); }
static Tensor *fx_clamp(Tensor **in) { return tensor_clamp(in[0], -0.5, 0.5); }
static Tensor *fx_clamp_min(Tensor **in) { return tensor_clamp(in[0], 0.1, NAN); }
static Tensor *fx_sum(Tensor **in) { return tensor_sum(in[0]); }
static Tensor *fx_mean(Tensor **in) { return tensor_mean(in[0]); }
static Tensor *fx_sum_dims_keepdim(Tensor **in) {
    return tensor_sum_dims(in[0], 2, (int[]){0, 2}, true);
}
static Tensor *fx_mean_dims_neg(Tensor **in) {
    return tensor_mean_dims(in[0], 1, (int[]){-1}, false);
}
static Tensor *fx_matmul(Tensor **in) { return tensor_matmul(in[0], in[1]); }
static Tensor *fx_matmul_transposed(Tensor **in) {
    Tensor *a = tensor_transpose(in[0], 0, 1), *b = tensor_transpose(in[1], 0, 1);
    Tensor *y = tensor_matmul(a, b);
    tensor_release(a);
    tensor_release(b);
    return y;
}
static Tensor *fx_linear(Tensor **in) { return tensor_linear(in[0], in[1], in[2]); }
static Tensor *fx_linear_nobias(Tensor **in) { return tensor_linear(in[0], in[1], NULL); }

typedef struct {
    const char *name;
    FixtureFn f;
    int n_inputs;
} FixtureCase;

static const FixtureCase fixture_cases[] = {
    {"add_row", fx_add, 2},
    {"sub_outer", fx_sub, 2},
    {"mul_scalar_tensor", fx_mul, 2},
    {"div_row", fx_div, 2},
    {"pow_tensor", fx_pow, 2},
    {"pow_scalar", fx_pow_scalar, 1},
    {"add_scalar", fx_add_scalar, 1},
    {"mul_scalar", fx_mul_scalar, 1},
    {"neg", fx_neg, 1},
    {"exp", fx_exp, 1},
    {"log", fx_log, 1},
    {"sqrt", fx_sqrt, 1},
    {"abs", fx_abs, 1},
    {"relu", fx_relu, 1},
    {"sigmoid", fx_sigmoid, 1},
    {"tanh", fx_tanh, 1},
    {"clamp", fx_clamp, 1},
    {"clamp_min", fx_clamp_min, 1},
    {"sum", fx_sum, 1},
    {"mean", fx_mean, 1},
    {"sum_dims_keepdim", fx_sum_dims_keepdim, 1},
    {"mean_dims_neg", fx_mean_dims_neg, 1},
    {"matmul_2d", fx_matmul, 2},
    {"matmul_1d_2d", fx_matmul, 2},
    {"matmul_2d_1d", fx_matmul, 2},
    {"matmul_1d_1d", fx_matmul, 2},
    {"matmul_batched", fx_matmul, 2},
    {"matmul_broadcast", fx_matmul, 2},
    {"matmul_transposed", fx_matmul_transposed, 2},
    {"linear_bias", fx_linear, 3},
    {"linear_nobias", fx_linear_nobias, 2},
};

/* Every case of `cases` against fixture file `fixture`: the output and the
 * gradient of sum(out * gw) for every input, in float32. */
static void check_fixture_cases(const char *fixture, const FixtureCase *cases, size_t n_cases) {
    json_t *fx = fixture_load(fixture);
    const double rtol = 1e-5, atol = 1e-6;
    for (size_t c = 0; c < n_cases; c++) {
        const char *name = cases[c].name;
        json_t *kase = fixture_case(fx, name);
        int n = cases[c].n_inputs;
        Tensor *in[3] = {NULL};
        char key[8], what[96];
        for (int i = 0; i < n; i++) {
            snprintf(key, sizeof key, "%c", 'a' + i);
            in[i] = fixture_tensor(kase, key);
            cr_assert_eq(in[i]->dtype, DTYPE_FLOAT32);
            tensor_set_requires_grad(in[i], true);
        }
        Tensor *out = cases[c].f(in);
        Tensor *want = fixture_tensor(kase, "out");
        snprintf(what, sizeof what, "%s forward", name);
        assert_tensor_close(out, want, rtol, atol, what);
        cr_assert_eq(out->dtype, DTYPE_FLOAT32, "%s: dtype", name);
        Tensor *gw = fixture_tensor(kase, "gw");
        Tensor *p = tensor_mul(out, gw);
        Tensor *l = tensor_sum(p);
        cr_assert_eq(tensor_backward(l), 0, "%s: backward: %s", name, error_get());
        for (int i = 0; i < n; i++) {
            snprintf(key, sizeof key, "g%c", 'a' + i);
            Tensor *g = fixture_tensor(kase, key);
            snprintf(what, sizeof what, "%s d/d%c", name, 'a' + i);
            cr_assert(in[i]->grad != NULL, "%s: no gradient", what);
            cr_assert_eq(in[i]->grad->dtype, DTYPE_FLOAT32, "%s: dtype", what);
            assert_tensor_close(in[i]->grad, g, rtol, atol, what);
            tensor_release(g);
        }
        Tensor *ts[] = {out, want, gw, p, l, in[0], in[1], in[2]};
        release_all(ts, sizeof ts / sizeof ts[0]);
    }
    json_decref(fx);
}

Test(ops_basic, pytorch_parity) {
    check_fixture_cases("ops_basic", fixture_cases, sizeof fixture_cases / sizeof fixture_cases[0]);
}

/* GELU, SiLU, LeakyReLU (tests/fixtures/gen_activations.py). */
static Tensor *fx_gelu(Tensor **in) { return tensor_gelu(in[0], false); }
static Tensor *fx_gelu_tanh(Tensor **in) { return tensor_gelu(in[0], true); }
static Tensor *fx_silu(Tensor **in) { return tensor_silu(in[0]); }
static Tensor *fx_leaky_relu(Tensor **in) { return tensor_leaky_relu(in[0], 0.01); }
static Tensor *fx_leaky_relu_slope(Tensor **in) { return tensor_leaky_relu(in[0], 0.2); }

static const FixtureCase activation_cases[] = {
    {"gelu", fx_gelu, 1},
    {"gelu_tanh", fx_gelu_tanh, 1},
    {"silu", fx_silu, 1},
    {"leaky_relu", fx_leaky_relu, 1},
    {"leaky_relu_slope", fx_leaky_relu_slope, 1},
    {"gelu_tails", fx_gelu, 1},
    {"gelu_tanh_tails", fx_gelu_tanh, 1},
    {"silu_tails", fx_silu, 1},
};

Test(ops_basic, activations_pytorch_parity) {
    check_fixture_cases("activations", activation_cases,
                        sizeof activation_cases / sizeof activation_cases[0]);
}

/* ---- errors ---- */

Test(ops_basic, broadcast_mismatch_names_both_shapes) {
    Tensor *a = tensor_zeros(SHAPE(2, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *b = tensor_zeros(SHAPE(4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    error_clear();
    cr_assert_null(tensor_add(a, b));
    assert_error_has("add: shapes [2, 3] and [4] cannot be broadcast");
    cr_assert_null(tensor_mul(b, a));
    assert_error_has("mul: shapes [4] and [2, 3] cannot be broadcast");
    cr_assert_null(tensor_sub(a, b));
    assert_error_has("sub:");
    cr_assert_null(tensor_div(a, b));
    assert_error_has("div:");
    cr_assert_null(tensor_pow(a, b));
    assert_error_has("pow:");
    int nd;
    int64_t out[TENSOR_MAX_DIMS];
    cr_assert_eq(broadcast_shapes("x", SHAPE(5, 1, 3), SHAPE(4, 1), &nd, out), 0);
    cr_assert(nd == 3 && out[0] == 5 && out[1] == 4 && out[2] == 3);
    cr_assert_eq(broadcast_shapes("x", SHAPE(2, 3), SHAPE(3, 3), &nd, out), -1);
    assert_error_has("x: shapes [2, 3] and [3, 3] cannot be broadcast (dimension 0: 2 vs 3)");
    tensor_release(a);
    tensor_release(b);
}

Test(ops_basic, dtype_mismatch) {
    Tensor *f = tensor_zeros(SHAPE(2), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *d = tensor_zeros(SHAPE(2), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *i = tensor_zeros(SHAPE(2), DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert_null(tensor_add(f, d));
    assert_error_has("add: dtypes differ (float32 and float64)");
    cr_assert_null(tensor_mul(i, i));
    assert_error_has("mul: expected a float tensor, got int64");
    cr_assert_null(tensor_exp(i));
    assert_error_has("exp: expected a float tensor, got int64");
    cr_assert_null(tensor_clamp(i, 0, 1));
    assert_error_has("int64");
    cr_assert_null(tensor_sum(i));
    assert_error_has("sum: expected a float tensor, got int64");
    cr_assert_null(tensor_matmul(f, d));
    assert_error_has("matmul: expected float tensors of one dtype, got float32 and float64");
    Tensor *w = tensor_zeros(SHAPE(3, 2), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cr_assert_null(tensor_linear(f, w, NULL));
    assert_error_has("linear");
    tensor_release(f);
    tensor_release(d);
    tensor_release(i);
    tensor_release(w);
}

Test(ops_basic, matmul_and_linear_shape_errors) {
    Tensor *a = tensor_zeros(SHAPE(2, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *b = tensor_zeros(SHAPE(4, 5), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    error_clear();
    cr_assert_null(tensor_matmul(a, b));
    assert_error_has("matmul: shapes [2, 3] and [4, 5] cannot be multiplied (3 != 4)");
    Tensor *v3 = tensor_zeros(SHAPE(3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *v4 = tensor_zeros(SHAPE(4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(tensor_matmul(v3, v4));
    assert_error_has("cannot be multiplied (3 != 4)");
    Tensor *s = tensor_scalar(1, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(tensor_matmul(s, a));
    assert_error_has("at least 1 dimension");
    Tensor *x3 = tensor_zeros(SHAPE(2, 2, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *y3 = tensor_zeros(SHAPE(3, 3, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(tensor_matmul(x3, y3));
    assert_error_has("matmul: shapes [2] and [3] cannot be broadcast");

    Tensor *w = tensor_zeros(SHAPE(5, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(tensor_linear(a, w, NULL));
    assert_error_has("linear: input of shape [2, 3] does not match weight of shape [5, 4] "
                     "(expected 4 input features)");
    Tensor *w3 = tensor_zeros(SHAPE(5, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *bias = tensor_zeros(SHAPE(4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(tensor_linear(a, w3, bias));
    assert_error_has("linear: bias of shape [4] for 5 output features");
    Tensor *ts[] = {a, b, v3, v4, s, x3, y3, w, w3, bias};
    release_all(ts, sizeof ts / sizeof ts[0]);
}

Test(ops_basic, reduce_dim_errors) {
    Tensor *a = tensor_zeros(SHAPE(2, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(tensor_sum_dims(a, 1, (int[]){2}, false));
    assert_error_has("sum: dimension 2 out of range for a 2-d tensor");
    cr_assert_null(tensor_mean_dims(a, 2, (int[]){1, -1}, false));
    assert_error_has("mean: dimension 1 repeated");
    tensor_release(a);
}

Test(ops_basic, argmax) {
    Tensor *a = tensor_from_string("[[1,5,2],[7,0,7],[-3,-1,-2]]", DTYPE_FLOAT32);
    Tensor *i = tensor_argmax_last(a);
    cr_assert(i != NULL, "%s", error_get());
    cr_assert_eq(i->dtype, DTYPE_INT64);
    cr_assert(i->ndim == 1 && i->shape[0] == 3);
    assert_tensor_values(i, (double[]){1, 0, 1}, 3, 0, "argmax, first of ties");
    cr_assert(!i->requires_grad);
    /* a transposed input: columns of a */
    Tensor *t = tensor_transpose(a, 0, 1);
    Tensor *it = tensor_argmax_last(t);
    assert_tensor_values(it, (double[]){1, 0, 1}, 3, 0, "argmax of transpose");
    Tensor *d = tensor_from_string("[[0.5, 0.25]]", DTYPE_FLOAT64);
    Tensor *id = tensor_argmax_last(d);
    assert_tensor_values(id, (double[]){0}, 1, 0, "float64");
    Tensor *v = tensor_from_string("[1, 2]", DTYPE_FLOAT32);
    cr_assert_null(tensor_argmax_last(v));
    assert_error_has("argmax: expected a 2-d float tensor, got float32 [2]");
    Tensor *n = tensor_from_string("[[1, 2]]", DTYPE_INT64);
    cr_assert_null(tensor_argmax_last(n));
    assert_error_has("int64");
    Tensor *e = tensor_zeros(SHAPE(2, 0), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(tensor_argmax_last(e));
    assert_error_has("argmax: rows of [2, 0] have no elements");
    Tensor *e0 = tensor_zeros(SHAPE(0, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *ie0 = tensor_argmax_last(e0);
    cr_assert(ie0 && ie0->ndim == 1 && ie0->shape[0] == 0);
    Tensor *ts[] = {a, i, t, it, d, id, v, n, e, e0, ie0};
    release_all(ts, sizeof ts / sizeof ts[0]);
}
