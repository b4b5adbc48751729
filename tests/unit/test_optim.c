/* test_optim.c - SGD, Adam and AdamW against torch.optim
 * (tests/fixtures/gen_optim.py): each fixture case is rebuilt from the
 * arguments stored with it and its 5-step trajectory compared; a run resumed
 * from optimizer_state_dict after every step must equal the uninterrupted
 * one bit for bit. Then the edges: zero_grad, parameters without grad,
 * invalid hyperparameters, parameters and grads, and bad state dicts. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/optim/optimizer.h"
#include "tests/support/fixture.h"
#include "tests/support/optim_one.h"

#define MAX_STEPS 8

/* ---- fixture cases ---- */

typedef struct {
    const char *name;
    const char *type; /* "SGD", "Adam", "AdamW" */
    SgdOptions sgd;
    AdamOptions adam;
    bool skip_b[MAX_STEPS + 1]; /* bias has no grad at step k */
    int steps;
    double rtol, atol;
} OptCase;

static double number_or(json_t *kase, const char *key, double dflt) {
    json_t *v = json_object_get(kase, key);
    return v ? json_number_value(v) : dflt;
}

static bool bool_or(json_t *kase, const char *key, bool dflt) {
    json_t *v = json_object_get(kase, key);
    return v ? json_is_true(v) : dflt;
}

/* Keys absent from the case keep the C defaults, which are thereby checked
 * against torch's. */
static void load_case(const char *name, json_t *kase, OptCase *c) {
    memset(c, 0, sizeof *c);
    c->name = name;
    c->type = json_string_value(json_object_get(kase, "type"));
    cr_assert(c->type != NULL, "%s: no type", name);
    c->steps = (int)fixture_number(kase, "steps");
    cr_assert(c->steps >= 1 && c->steps <= MAX_STEPS);
    json_t *skip = json_object_get(kase, "skip_b");
    for (size_t i = 0; i < json_array_size(skip); i++) {
        json_int_t k = json_integer_value(json_array_get(skip, i));
        cr_assert(k >= 1 && k <= MAX_STEPS);
        c->skip_b[k] = true;
    }
    if (strcmp(c->type, "SGD") == 0) {
        c->sgd = (SgdOptions){.lr = fixture_number(kase, "lr"),
                              .momentum = number_or(kase, "momentum", 0),
                              .dampening = number_or(kase, "dampening", 0),
                              .weight_decay = number_or(kase, "weight_decay", 0),
                              .nesterov = bool_or(kase, "nesterov", false)};
    } else {
        AdamOptions o = strcmp(c->type, "AdamW") == 0 ? adamw_options_default()
                                                      : adam_options_default();
        o.lr = number_or(kase, "lr", o.lr);
        o.betas[0] = number_or(kase, "beta1", o.betas[0]);
        o.betas[1] = number_or(kase, "beta2", o.betas[1]);
        o.eps = number_or(kase, "eps", o.eps);
        o.weight_decay = number_or(kase, "weight_decay", o.weight_decay);
        o.amsgrad = bool_or(kase, "amsgrad", o.amsgrad);
        c->adam = o;
    }
    bool f64 = strcmp(json_string_value(json_object_get(kase, "dtype")), "float64") == 0;
    c->rtol = f64 ? 1e-12 : 1e-6;
    c->atol = f64 ? 1e-14 : 1e-7;
}

static Optimizer *new_opt(const OptCase *c, Tensor *const *params) {
    Optimizer *opt = strcmp(c->type, "SGD") == 0    ? sgd_new(params, 2, c->sgd)
                     : strcmp(c->type, "Adam") == 0 ? adam_new(params, 2, c->adam)
                                                    : adamw_new(params, 2, c->adam);
    cr_assert(opt != NULL, "%s: %s", c->name, error_get());
    cr_assert_str_eq(optimizer_name(opt), c->type);
    return opt;
}

/* Sets the grads of step k (1-based) as torch's loop did. */
static void set_grads(const OptCase *c, json_t *kase, Tensor *w, Tensor *b, int k) {
    char key[32];
    snprintf(key, sizeof key, "grad_w.%d", k);
    w->grad = fixture_tensor(kase, key);
    if (!c->skip_b[k]) {
        snprintf(key, sizeof key, "grad_b.%d", k);
        b->grad = fixture_tensor(kase, key);
    }
}

static void expect_params(const OptCase *c, json_t *kase, Tensor *w, Tensor *b, int k,
                          const char *how) {
    char key[32], what[128];
    const char *names[2] = {"w", "b"};
    Tensor *params[2] = {w, b};
    for (int j = 0; j < 2; j++) {
        snprintf(key, sizeof key, "%s.%d", names[j], k);
        snprintf(what, sizeof what, "%s %s: %s after step %d", c->name, how, names[j], k);
        Tensor *want = fixture_tensor(kase, key);
        assert_tensor_close(params[j], want, c->rtol, c->atol, what);
        tensor_release(want);
    }
}

static void expect_same_bits(const Tensor *a, const Tensor *e, const char *what) {
    cr_assert(tensor_same_shape(a, e) && a->dtype == e->dtype, "%s: shape or dtype", what);
    size_t nbytes = (size_t)tensor_numel(a) * dtype_size(a->dtype);
    cr_assert(memcmp(tensor_data(a), tensor_data(e), nbytes) == 0, "%s: not bit-identical", what);
}

static void check_trajectory(const char *name) {
    json_t *fx = fixture_load("optim");
    json_t *kase = fixture_case(fx, name);
    OptCase c;
    load_case(name, kase, &c);
    Tensor *w = fixture_tensor(kase, "w.0"), *b = fixture_tensor(kase, "b.0");
    cr_assert_eq(tensor_set_requires_grad(w, true), 0);
    cr_assert_eq(tensor_set_requires_grad(b, true), 0);
    Tensor *params[2] = {w, b};
    Optimizer *opt = new_opt(&c, params);
    for (int k = 1; k <= c.steps; k++) {
        optimizer_zero_grad(opt);
        set_grads(&c, kase, w, b, k);
        cr_assert_eq(optimizer_step(opt), 0, "%s step %d: %s", name, k, error_get());
        expect_params(&c, kase, w, b, k, "run");
    }
    optimizer_zero_grad(opt);
    optimizer_free(opt);
    tensor_release(w);
    tensor_release(b);
    json_decref(fx);
}

/* The uninterrupted run, then for each k a run whose optimizer is saved
 * after step k and replaced by a fresh one (over fresh parameters holding
 * the same values) loaded from the dict: identical from there on. */
static void check_resume(const char *name) {
    json_t *fx = fixture_load("optim");
    json_t *kase = fixture_case(fx, name);
    OptCase c;
    load_case(name, kase, &c);

    Tensor *ref[MAX_STEPS + 1][2];
    {
        Tensor *w = fixture_tensor(kase, "w.0"), *b = fixture_tensor(kase, "b.0");
        Tensor *params[2] = {w, b};
        Optimizer *opt = new_opt(&c, params);
        for (int k = 1; k <= c.steps; k++) {
            optimizer_zero_grad(opt);
            set_grads(&c, kase, w, b, k);
            cr_assert_eq(optimizer_step(opt), 0, "%s: %s", name, error_get());
            ref[k][0] = tensor_clone(w);
            ref[k][1] = tensor_clone(b);
        }
        optimizer_zero_grad(opt);
        optimizer_free(opt);
        tensor_release(w);
        tensor_release(b);
    }

    for (int save = 0; save < c.steps; save++) {
        Tensor *w = fixture_tensor(kase, "w.0"), *b = fixture_tensor(kase, "b.0");
        Tensor *params[2] = {w, b};
        Optimizer *opt = new_opt(&c, params);
        for (int k = 1; k <= save; k++) {
            optimizer_zero_grad(opt);
            set_grads(&c, kase, w, b, k);
            cr_assert_eq(optimizer_step(opt), 0);
        }
        optimizer_zero_grad(opt);
        TensorDict d;
        tensor_dict_init(&d);
        cr_assert_eq(optimizer_state_dict(opt, &d), 0, "%s: %s", name, error_get());
        optimizer_free(opt);

        Tensor *w2 = tensor_clone(w), *b2 = tensor_clone(b);
        tensor_release(w);
        tensor_release(b);
        Tensor *params2[2] = {w2, b2};
        Optimizer *opt2 = new_opt(&c, params2);
        cr_assert_eq(optimizer_load_state_dict(opt2, &d), 0, "%s saved after %d: %s", name, save,
                     error_get());
        tensor_dict_free(&d);
        for (int k = save + 1; k <= c.steps; k++) {
            optimizer_zero_grad(opt2);
            set_grads(&c, kase, w2, b2, k);
            cr_assert_eq(optimizer_step(opt2), 0, "%s: %s", name, error_get());
            char what[128];
            snprintf(what, sizeof what, "%s resumed after %d: w at step %d", name, save, k);
            expect_same_bits(w2, ref[k][0], what);
            snprintf(what, sizeof what, "%s resumed after %d: b at step %d", name, save, k);
            expect_same_bits(b2, ref[k][1], what);
        }
        optimizer_zero_grad(opt2);
        optimizer_free(opt2);
        tensor_release(w2);
        tensor_release(b2);
    }
    for (int k = 1; k <= c.steps; k++) {
        tensor_release(ref[k][0]);
        tensor_release(ref[k][1]);
    }
    json_decref(fx);
}

#define CASE_TESTS(NAME)                                             \
    Test(optim, NAME##_matches_pytorch) { check_trajectory(#NAME); } \
    Test(optim, NAME##_resume) { check_resume(#NAME); }

CASE_TESTS(sgd_plain)
CASE_TESTS(sgd_momentum)
CASE_TESTS(sgd_momentum_dampening_wd)
CASE_TESTS(sgd_nesterov)
CASE_TESTS(sgd_momentum_skip)
CASE_TESTS(adam_default)
CASE_TESTS(adam_wd_amsgrad)
CASE_TESTS(adam_skip)
CASE_TESTS(adamw_default)
CASE_TESTS(adamw_amsgrad)
CASE_TESTS(adamw_float64)

Test(optim, fixture_has_every_case) {
    json_t *fx = fixture_load("optim");
    cr_expect_eq(json_object_size(json_object_get(fx, "cases")), 11);
    json_decref(fx);
}

/* ---- small helpers for the edge tests ---- */

static Tensor *vec(int n, double start) {
    double v[16];
    for (int i = 0; i < n; i++) v[i] = start + 0.25 * i;
    Tensor *t = tensor_from_doubles(v, 1, (int64_t[]){n}, DTYPE_FLOAT32);
    cr_assert(t != NULL);
    return t;
}

static Tensor *mat(double start) {
    double v[12];
    for (int i = 0; i < 12; i++) v[i] = start - 0.125 * i;
    Tensor *t = tensor_from_doubles(v, 2, (int64_t[]){3, 4}, DTYPE_FLOAT32);
    cr_assert(t != NULL);
    return t;
}

/* ---- zero_grad, skipped parameters, lr ---- */

Test(optim, zero_grad_sets_grads_to_none) {
    Tensor *w = mat(1), *b = vec(4, 0);
    Tensor *params[2] = {w, b};
    Optimizer *opt = sgd_new(params, 2, (SgdOptions){.lr = 0.1});
    cr_assert(opt != NULL, "%s", error_get());
    w->grad = mat(0.5);
    b->grad = vec(4, 1);
    optimizer_zero_grad(opt);
    cr_expect_null(w->grad);
    cr_expect_null(b->grad);
    optimizer_zero_grad(opt); /* already none: fine */
    /* A step with no grads changes nothing and creates no state. */
    Tensor *w0 = tensor_clone(w);
    cr_assert_eq(optimizer_step(opt), 0);
    expect_same_bits(w, w0, "w after a step without grads");
    optimizer_free(opt);
    tensor_release(w0);
    tensor_release(w);
    tensor_release(b);
}

/* clip_grad_norm_: the total norm in float64 from per-gradient sums of
 * squares, each gradient times min(max_norm / (norm + 1e-6), 1) in float32
 * (torch 1.13's arithmetic, checked against PyTorch by the fixture job
 * mlp_clip_grad_norm); above max_norm scaled, below it untouched bit for
 * bit, a NaN norm NaN everywhere (torch's clamp keeps NaN), no gradients 0. */
Test(optim, clip_grad_norm_scales_on_the_device_without_a_branch) {
    Tensor *w = mat(1), *b = vec(4, 0);
    Tensor *params[2] = {w, b};
    Optimizer *opt = sgd_new(params, 2, (SgdOptions){.lr = 0.1});
    cr_assert(opt, "%s", error_get());
    double gw[12], gb[4] = {0.5, -1, 2, 0}, want = 0;
    for (int i = 0; i < 12; i++) gw[i] = 0.25 * (i - 5);
    for (int i = 0; i < 12; i++) want += gw[i] * gw[i];
    for (int i = 0; i < 4; i++) want += gb[i] * gb[i];
    want = sqrt(want);
    for (int round = 0; round < 3; round++) { /* max_norm below, above, NaN */
        double max_norm = round == 1 ? 100 : 1;
        w->grad = tensor_from_doubles(gw, 2, (int64_t[]){3, 4}, DTYPE_FLOAT32);
        b->grad = tensor_from_doubles(gb, 1, (int64_t[]){4}, DTYPE_FLOAT32);
        if (round == 2) ((float *)tensor_data(b->grad))[3] = NAN;
        Tensor *norm = optimizer_clip_grad_norm(opt, max_norm);
        cr_assert(norm && norm->dtype == DTYPE_FLOAT64, "%s", error_get());
        float coef = (float)(max_norm / (want + 1e-6));
        for (int i = 0; i < 12; i++) {
            float got = ((const float *)tensor_data(w->grad))[i];
            if (round == 0) cr_assert_eq(got, (float)gw[i] * coef, "w.grad[%d]", i);
            if (round == 1) cr_assert_eq(got, (float)gw[i], "w.grad[%d] untouched", i);
            if (round == 2) cr_assert(isnan(got), "w.grad[%d] NaN", i);
        }
        if (round < 2) cr_assert_float_eq(tensor_item(norm), want, 1e-12);
        else cr_assert(isnan(tensor_item(norm)));
        tensor_release(norm);
        optimizer_zero_grad(opt);
    }
    Tensor *none = optimizer_clip_grad_norm(opt, 1);
    cr_assert(none && tensor_item(none) == 0, "no gradients: norm 0");
    tensor_release(none);
    optimizer_free(opt);
    tensor_release(w), tensor_release(b);
}

Test(optim, params_without_grad_are_untouched) {
    Tensor *w = mat(1), *b = vec(4, 0);
    Tensor *params[2] = {w, b};
    Optimizer *opt = adam_new(params, 2, adam_options_default());
    cr_assert(opt != NULL, "%s", error_get());
    Tensor *w0 = tensor_clone(w), *b0 = tensor_clone(b);
    w->grad = mat(0.5);
    cr_assert_eq(optimizer_step(opt), 0, "%s", error_get());
    cr_assert_eq(optimizer_step(opt), 0, "%s", error_get());
    expect_same_bits(b, b0, "b without grad");
    cr_expect(tensor_get(w, 0) != tensor_get(w0, 0), "w should have moved");

    TensorDict d;
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(opt, &d), 0);
    cr_expect_not_null(tensor_dict_get(&d, "state.0.exp_avg"));
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "state.0.step")), 2);
    cr_expect_null(tensor_dict_get(&d, "state.1.exp_avg"), "bias has no state yet");
    cr_expect_null(tensor_dict_get(&d, "state.1.step"));
    cr_expect_null(tensor_dict_get(&d, "state.0.max_exp_avg_sq"), "no amsgrad");
    tensor_dict_free(&d);

    /* Its first grad starts its own counter at 1: the same update as a fresh
     * Adam's first step. */
    optimizer_zero_grad(opt);
    b->grad = vec(4, -1);
    Tensor *b_ref = tensor_clone(b0);
    Tensor *params_ref[1] = {b_ref};
    Optimizer *fresh = adam_new(params_ref, 1, adam_options_default());
    b_ref->grad = vec(4, -1);
    w->grad = mat(0.5);
    cr_assert_eq(optimizer_step(opt), 0);
    cr_assert_eq(optimizer_step(fresh), 0);
    expect_same_bits(b, b_ref, "bias's first step");
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(opt, &d), 0);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "state.0.step")), 3);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "state.1.step")), 1);
    tensor_dict_free(&d);

    optimizer_zero_grad(fresh);
    optimizer_free(fresh);
    optimizer_zero_grad(opt);
    optimizer_free(opt);
    tensor_release(b_ref);
    tensor_release(w0);
    tensor_release(b0);
    tensor_release(w);
    tensor_release(b);
}

/* One optimizer over float32 and float64 parameters, interleaved: each
 * step runs one fused update per run of one dtype, and every parameter
 * ends as it would under an optimizer of its own. */
Test(optim, mixed_dtypes_update_as_separate_optimizers) {
    const DType dts[4] = {DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_FLOAT64, DTYPE_FLOAT32};
    Tensor *p[4], *q[4];
    Optimizer *alone[4];
    AdamOptions o = adam_options_default();
    o.amsgrad = true;
    for (int i = 0; i < 4; i++) {
        Tensor *v = vec(3 + i, 0.25 * (i + 1));
        p[i] = tensor_to_dtype(v, dts[i]);
        q[i] = tensor_clone(p[i]);
        tensor_release(v);
        alone[i] = adam_new(&q[i], 1, o);
        cr_assert(alone[i], "%s", error_get());
    }
    Optimizer *all = adam_new(p, 4, o);
    cr_assert(all, "%s", error_get());
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 4; i++) {
            Tensor *g = vec(3 + i, 0.1 * (step + 1) - 0.05 * i);
            tensor_zero_grad(p[i]);
            tensor_zero_grad(q[i]);
            p[i]->grad = tensor_to_dtype(g, dts[i]);
            q[i]->grad = tensor_to_dtype(g, dts[i]);
            tensor_release(g);
            cr_assert_eq(optimizer_step(alone[i]), 0, "%s", error_get());
        }
        cr_assert_eq(optimizer_step(all), 0, "%s", error_get());
    }
    for (int i = 0; i < 4; i++) {
        expect_same_bits(p[i], q[i], "mixed-dtype parameter");
        optimizer_free(alone[i]);
        tensor_release(q[i]);
    }
    optimizer_free(all);
    for (int i = 0; i < 4; i++) tensor_release(p[i]);
}

/* SGD whose momentum buffers cannot all be made in a step (out of memory
 * at the third, on a stand-in device: the CPU's kernels as cuda:0 with an
 * allocator that can be told to fail): the step fails, no buffer is kept,
 * so the next step is every buffer's first use, as a fresh SGD's. */
static int allocs_left = -1; /* < 0: no limit */
static void *limited_alloc(Device d, size_t n) {
    if (allocs_left == 0) return NULL;
    if (allocs_left > 0) allocs_left--;
    return cpu_backend.alloc(d, n);
}

/* n parameters p on a stand-in "cuda:0" (the CPU's kernels, allocations
 * counted by limited_alloc) and their copies q on the CPU, each with a
 * grad of its own values. */
static void limited_params(int n, Tensor **p, Tensor **q) {
    static Backend standin;
    standin = cpu_backend;
    standin.alloc = limited_alloc;
    backend_register_cuda(&standin, 1);
    const Device cuda0 = {DEVICE_CUDA, 0};
    for (int i = 0; i < n; i++) {
        Tensor *v = vec(4, i);
        p[i] = tensor_to_device(v, cuda0);
        q[i] = tensor_clone(v);
        tensor_release(v);
        cr_assert(p[i] && q[i], "%s", error_get());
        p[i]->grad = tensor_to_device(q[i], cuda0);
        q[i]->grad = tensor_clone(q[i]);
    }
}

/* After opt's step failed for want of memory: `absent` is not in its
 * state, and its next step is a first step, fresh's, bit for bit. Both
 * optimizers and the n parameters of each are freed. */
static void expect_a_first_step(Optimizer *opt, Optimizer *fresh, const char *absent, int n,
                                Tensor **p, Tensor **q) {
    TensorDict d;
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(opt, &d), 0);
    cr_assert_null(tensor_dict_get(&d, absent), "%s: no state left from the failed step", absent);
    tensor_dict_free(&d);
    cr_assert_eq(optimizer_step(opt), 0, "%s", error_get());
    cr_assert_eq(optimizer_step(fresh), 0, "%s", error_get());
    for (int i = 0; i < n; i++) {
        Tensor *back = tensor_to_device(p[i], DEVICE_CPU_INIT);
        expect_same_bits(back, q[i], "after the failed step, a first step");
        tensor_release(back);
    }
    optimizer_zero_grad(opt), optimizer_zero_grad(fresh);
    optimizer_free(opt), optimizer_free(fresh);
    for (int i = 0; i < n; i++) tensor_release(p[i]), tensor_release(q[i]);
}

Test(optim, sgd_out_of_memory_keeps_no_half_state) {
    Tensor *p[3], *q[3];
    limited_params(3, p, q);
    SgdOptions o = {.lr = 0.1, .momentum = 0.9, .dampening = 0.5};
    Optimizer *opt = sgd_new(p, 3, o), *fresh = sgd_new(q, 3, o);
    cr_assert(opt && fresh, "%s", error_get());
    allocs_left = 2; /* the third buffer fails */
    cr_assert_eq(optimizer_step(opt), -1);
    cr_assert(strstr(error_get(), "momentum buffer of parameter 2"), "%s", error_get());
    allocs_left = -1;
    expect_a_first_step(opt, fresh, "state.0.momentum_buffer", 3, p, q);
}

Test(optim, lr_is_read_at_each_step) {
    Tensor *p = vec(4, 1);
    Optimizer *opt = sgd_new(&p, 1, (SgdOptions){.lr = 0.1});
    cr_assert(opt != NULL);
    opt->lr = 0.5; /* as a scheduler sets it */
    p->grad = vec(4, 2);
    cr_assert_eq(optimizer_step(opt), 0);
    for (int i = 0; i < 4; i++)
        cr_expect_float_eq(tensor_get(p, i), (1 + 0.25 * i) - 0.5 * (2 + 0.25 * i), 1e-6);
    optimizer_zero_grad(opt);
    optimizer_free(opt);
    tensor_release(p);
}

/* Two optimizers of `make` over copies of the same parameters, parameter 2
 * in the no-decay group: one by optimizer_step, the other by its halves,
 * with the lr moved between steps as a scheduler moves it. Bit for bit the
 * same; prepare says when it made state. */
static void check_halves(Optimizer *(*make)(Tensor *const *, int, const void *),
                         const void *opts, const char *what) {
    Tensor *a[3] = {mat(1), vec(4, -1), vec(4, 2)}, *b[3];
    for (int i = 0; i < 3; i++) cr_assert(b[i] = tensor_clone(a[i]));
    Optimizer *whole = make(a, 3, opts), *halves = make(b, 3, opts);
    cr_assert(whole && halves, "%s: %s", what, error_get());
    cr_assert_eq(optimizer_set_no_decay_from(whole, 2), 0);
    cr_assert_eq(optimizer_set_no_decay_from(halves, 2), 0);
    for (int step = 1; step <= 3; step++) {
        whole->lr = halves->lr = 0.1 / step;
        for (int i = 0; i < 3; i++) {
            a[i]->grad = i == 0 ? mat(0.5 * step) : vec(4, 0.3 * step - i);
            cr_assert(b[i]->grad = tensor_clone(a[i]->grad));
        }
        cr_assert_eq(optimizer_step(whole), 0, "%s: %s", what, error_get());
        uint64_t made = halves->states_made;
        cr_assert_eq(optimizer_step_prepare(halves), 0, "%s: %s", what, error_get());
        bool want = step == 1 && halves->state[0] != NULL; /* SGD without momentum: none */
        cr_assert_eq(halves->states_made - made, want, "%s: step %d: states made", what, step);
        cr_assert_eq(optimizer_step_apply(halves), 0, "%s: %s", what, error_get());
        for (int i = 0; i < 3; i++) expect_same_bits(b[i], a[i], what);
        optimizer_zero_grad(whole);
        optimizer_zero_grad(halves);
    }
    optimizer_free(whole);
    optimizer_free(halves);
    for (int i = 0; i < 3; i++) tensor_release(a[i]), tensor_release(b[i]);
}

Test(optim, step_halves_equal_a_step) {
    SgdOptions plain = {.lr = 0.1, .weight_decay = 0.01};
    SgdOptions nesterov = {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true};
    SgdOptions damped = {.lr = 0.1, .momentum = 0.8, .dampening = 0.3};
    AdamOptions adam = adam_options_default(), adamw = adamw_options_default();
    adam.weight_decay = 0.05;
    adam.amsgrad = true;
    check_halves(make_sgd, &plain, "SGD");
    check_halves(make_sgd, &nesterov, "SGD nesterov");
    check_halves(make_sgd, &damped, "SGD dampening");
    check_halves(make_adam, &adam, "Adam amsgrad");
    check_halves(make_adamw, &adamw, "AdamW");
}

/* The update half reads numbers the host half left; without them, or
 * without the state the host half makes, it refuses and changes nothing,
 * in any run (parameter 1 is in the no-decay group). */
Test(optim, step_apply_needs_its_prepare) {
    Tensor *p[2] = {vec(4, 1), vec(4, 2)};
    Optimizer *opt = adam_new(p, 2, adam_options_default());
    cr_assert(opt != NULL);
    cr_assert_eq(optimizer_set_no_decay_from(opt, 1), 0);
    p[0]->grad = vec(4, 0.5);
    cr_assert_eq(optimizer_step_apply(opt), -1);
    cr_assert(strstr(error_get(), "Adam: no update numbers on cpu yet"), "%s", error_get());
    cr_assert_float_eq(tensor_get(p[0], 0), 1, 0, "nothing updated");
    cr_assert_eq(optimizer_step_prepare(opt), 0, "%s", error_get());
    cr_assert_eq(optimizer_step_apply(opt), 0, "%s", error_get());
    double after = tensor_get(p[0], 0);
    cr_assert(after < 1, "updated");
    p[1]->grad = vec(4, 0.5); /* parameter 1's first grad: its state is not made yet */
    cr_assert_eq(optimizer_step_apply(opt), -1);
    cr_assert(strstr(error_get(), "Adam: parameter 1 has no state yet"), "%s", error_get());
    cr_assert_float_eq(tensor_get(p[0], 0), after, 0, "parameter 0 not updated again");
    cr_assert_float_eq(tensor_get(p[1], 0), 2, 0, "nothing updated");
    optimizer_zero_grad(opt);
    optimizer_free(opt);
    tensor_release(p[0]), tensor_release(p[1]);
}

/* A step that fails making state in its second run (the no-decay group)
 * leaves the first run's state unmade and its counter where it was: the
 * next step is a first step, as a fresh optimizer's. */
Test(optim, failed_step_undoes_every_run) {
    Tensor *p[2], *q[2];
    limited_params(2, p, q);
    Optimizer *opt = adam_new(p, 2, adam_options_default());
    Optimizer *fresh = adam_new(q, 2, adam_options_default());
    cr_assert(opt && fresh, "%s", error_get());
    cr_assert_eq(optimizer_set_no_decay_from(opt, 1), 0);
    cr_assert_eq(optimizer_set_no_decay_from(fresh, 1), 0);
    allocs_left = 2; /* parameter 0's exp_avg and exp_avg_sq, then none */
    cr_assert_eq(optimizer_step(opt), -1);
    cr_assert(strstr(error_get(), "Adam: state of parameter 1"), "%s", error_get());
    allocs_left = -1;
    cr_assert_eq(opt->states_made, 0);
    TensorDict d;
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(opt, &d), 0);
    cr_assert_null(tensor_dict_get(&d, "state.0.step"), "no counter moved");
    tensor_dict_free(&d);
    expect_a_first_step(opt, fresh, "state.0.exp_avg", 2, p, q);
}

Test(optim, non_contiguous_grad_is_used_in_logical_order) {
    Tensor *p = mat(1), *q = mat(1);
    Optimizer *a = sgd_new(&p, 1, (SgdOptions){.lr = 0.1, .momentum = 0.9});
    Optimizer *b = sgd_new(&q, 1, (SgdOptions){.lr = 0.1, .momentum = 0.9});
    cr_assert(a && b);
    /* [4, 3] transposed to [3, 4]: strided. */
    double v[12];
    for (int i = 0; i < 12; i++) v[i] = sin(i + 1.0);
    Tensor *g43 = tensor_from_doubles(v, 2, (int64_t[]){4, 3}, DTYPE_FLOAT32);
    p->grad = tensor_transpose(g43, 0, 1);
    cr_assert(!tensor_is_contiguous(p->grad));
    q->grad = tensor_contiguous(p->grad);
    cr_assert_eq(optimizer_step(a), 0, "%s", error_get());
    cr_assert_eq(optimizer_step(b), 0);
    expect_same_bits(p, q, "strided grad");
    optimizer_zero_grad(a);
    optimizer_zero_grad(b);
    optimizer_free(a);
    optimizer_free(b);
    tensor_release(g43);
    tensor_release(p);
    tensor_release(q);
}

/* ---- invalid construction ---- */

static void expect_error(Optimizer *opt, const char *msg) {
    cr_expect_null(opt, "expected failure: %s", msg);
    cr_expect_str_eq(error_get(), msg);
    optimizer_free(opt);
}

Test(optim, invalid_hyperparameters) {
    Tensor *p = vec(4, 0);
    expect_error(sgd_new(&p, 1, (SgdOptions){.lr = -1}), "SGD: invalid learning rate -1");
    expect_error(sgd_new(&p, 1, (SgdOptions){.lr = NAN}), "SGD: invalid learning rate nan");
    expect_error(sgd_new(&p, 1, (SgdOptions){.lr = 0.1, .momentum = -0.5}),
                 "SGD: invalid momentum value -0.5");
    expect_error(sgd_new(&p, 1, (SgdOptions){.lr = 0.1, .weight_decay = -0.01}),
                 "SGD: invalid weight_decay value -0.01");
    expect_error(sgd_new(&p, 1, (SgdOptions){.lr = 0.1, .nesterov = true}),
                 "SGD: nesterov momentum requires a momentum and zero dampening");
    expect_error(sgd_new(&p, 1, (SgdOptions){.lr = 0.1, .momentum = 0.9, .dampening = 0.1,
                                             .nesterov = true}),
                 "SGD: nesterov momentum requires a momentum and zero dampening");
    /* once made, a schedule may take its momentum to 0 (OneCycleLR's
     * base_momentum 0), as torch lets it; not below */
    Optimizer *sgd = sgd_new(&p, 1, (SgdOptions){.lr = 0.1, .momentum = 0.9, .nesterov = true});
    cr_assert(sgd, "%s", error_get());
    double hp[OPTIMIZER_MAX_HPARAMS];
    sgd->type->get_hparams(sgd, hp);
    hp[0] = 0; /* momentum */
    cr_expect_eq(sgd->type->set_hparams(sgd, 0.1, hp, true), 0, "%s", error_get());
    hp[0] = -0.1;
    cr_expect_eq(sgd->type->set_hparams(sgd, 0.1, hp, true), -1);
    optimizer_free(sgd);

    AdamOptions o = adam_options_default();
    o.lr = -0.001;
    expect_error(adam_new(&p, 1, o), "Adam: invalid learning rate -0.001");
    o = adam_options_default();
    o.eps = -1e-8;
    expect_error(adam_new(&p, 1, o), "Adam: invalid epsilon value -1e-08");
    o = adam_options_default();
    o.betas[0] = 1.0;
    expect_error(adam_new(&p, 1, o), "Adam: invalid beta parameter at index 0: 1");
    o = adam_options_default();
    o.betas[1] = -0.1;
    expect_error(adam_new(&p, 1, o), "Adam: invalid beta parameter at index 1: -0.1");
    o = adamw_options_default();
    o.weight_decay = -0.01;
    expect_error(adamw_new(&p, 1, o), "AdamW: invalid weight_decay value -0.01");

    /* torch's edge values are allowed. */
    Optimizer *ok = sgd_new(&p, 1, (SgdOptions){.lr = 0, .momentum = 0.9, .nesterov = true});
    cr_expect_not_null(ok, "%s", error_get());
    optimizer_free(ok);
    o = adam_options_default();
    o.betas[0] = 0;
    o.eps = 0;
    ok = adam_new(&p, 1, o);
    cr_expect_not_null(ok, "%s", error_get());
    optimizer_free(ok);
    tensor_release(p);
}

Test(optim, adam_defaults_are_torchs) {
    AdamOptions a = adam_options_default(), w = adamw_options_default();
    cr_expect_eq(a.lr, 1e-3);
    cr_expect_eq(a.betas[0], 0.9);
    cr_expect_eq(a.betas[1], 0.999);
    cr_expect_eq(a.eps, 1e-8);
    cr_expect_eq(a.weight_decay, 0);
    cr_expect_eq(a.amsgrad, false);
    cr_expect_eq(w.weight_decay, 1e-2);
    cr_expect_eq(w.lr, 1e-3);
}

Test(optim, invalid_parameters) {
    Tensor *p = vec(4, 0), *q = vec(3, 0);
    SgdOptions o = {.lr = 0.1};
    expect_error(sgd_new(&p, 0, o), "SGD: optimizer got an empty parameter list");
    expect_error(sgd_new(NULL, 1, o), "SGD: optimizer got an empty parameter list");
    Tensor *with_null[2] = {p, NULL};
    expect_error(sgd_new(with_null, 2, o), "SGD: parameter 1 is NULL");
    Tensor *dup[3] = {p, q, p};
    expect_error(adam_new(dup, 3, adam_options_default()),
                 "Adam: parameter 2 appears more than once (also parameter 0)");
    Tensor *view = tensor_view(p, SHAPE(2, 2));
    Tensor *shared[2] = {p, view};
    expect_error(sgd_new(shared, 2, o), "SGD: parameters 0 and 1 share storage");
    Tensor *ints = tensor_zeros(SHAPE(3), DTYPE_INT64, DEVICE_CPU_INIT);
    expect_error(sgd_new(&ints, 1, o),
                 "SGD: parameter 0 has dtype int64; only float32 and float64 can be optimized");
    Tensor *m = mat(0);
    Tensor *strided = tensor_transpose(m, 0, 1);
    expect_error(adamw_new(&strided, 1, adamw_options_default()),
                 "AdamW: parameter 0 is not contiguous");
    cr_assert_eq(tensor_set_requires_grad(p, true), 0);
    Tensor *nonleaf = tensor_view(p, SHAPE(4));
    cr_assert_not_null(nonleaf->grad_fn);
    expect_error(sgd_new(&nonleaf, 1, o), "SGD: can't optimize a non-leaf tensor (parameter 0)");
    tensor_release(nonleaf);
    tensor_release(strided);
    tensor_release(m);
    tensor_release(ints);
    tensor_release(view);
    tensor_release(p);
    tensor_release(q);
}

Test(optim, bad_grads_fail_before_any_update) {
    Tensor *w = mat(1), *b = vec(4, 0);
    Tensor *params[2] = {w, b};
    Optimizer *opt = sgd_new(params, 2, (SgdOptions){.lr = 0.1, .momentum = 0.9});
    cr_assert(opt != NULL);
    Tensor *w0 = tensor_clone(w);
    w->grad = mat(0.5);
    b->grad = vec(3, 0);
    cr_expect_eq(optimizer_step(opt), -1);
    cr_expect_str_eq(error_get(), "SGD: parameter 1 has shape [4] but its grad [3]");
    expect_same_bits(w, w0, "w after a failed step");
    tensor_release(b->grad);
    b->grad = tensor_zeros(SHAPE(4), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cr_expect_eq(optimizer_step(opt), -1);
    cr_expect_str_eq(error_get(), "SGD: parameter 1 has dtype float32 but its grad float64");
    expect_same_bits(w, w0, "w after a failed step");
    /* No momentum buffer was created by the failed steps. */
    TensorDict d;
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(opt, &d), 0);
    cr_expect_null(tensor_dict_get(&d, "state.0.momentum_buffer"));
    tensor_dict_free(&d);
    optimizer_zero_grad(opt);
    optimizer_free(opt);
    tensor_release(w0);
    tensor_release(w);
    tensor_release(b);
}

/* ---- state_dict contents and load errors ---- */

Test(optim, state_dict_contents) {
    Tensor *w = mat(1), *b = vec(4, 0);
    Tensor *params[2] = {w, b};
    AdamOptions o = adamw_options_default();
    o.amsgrad = true;
    o.betas[0] = 0.8;
    Optimizer *opt = adamw_new(params, 2, o);
    cr_assert(opt != NULL);
    opt->lr = 0.004;
    w->grad = mat(0.5);
    b->grad = vec(4, 1);
    cr_assert_eq(optimizer_step(opt), 0);
    TensorDict d;
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(opt, &d), 0);
    static const char *keys[] = {
        "state.0.exp_avg", "state.0.exp_avg_sq", "state.0.max_exp_avg_sq", "state.0.step",
        "state.1.exp_avg", "state.1.exp_avg_sq", "state.1.max_exp_avg_sq", "state.1.step",
        "param_groups.0.lr", "param_groups.0.betas.0", "param_groups.0.betas.1",
        "param_groups.0.eps", "param_groups.0.weight_decay", "param_groups.0.amsgrad",
        "param_groups.0.params"};
    int n = (int)(sizeof keys / sizeof *keys);
    cr_expect_eq(d.count, n);
    for (int i = 0; i < n && i < d.count; i++) cr_expect_str_eq(d.names[i], keys[i]);
    Tensor *lr = tensor_dict_get(&d, "param_groups.0.lr");
    cr_expect_eq(lr->ndim, 0);
    cr_expect_eq(lr->dtype, DTYPE_FLOAT64);
    cr_expect_eq(tensor_item(lr), 0.004);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.betas.0")), 0.8);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.betas.1")), 0.999);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.eps")), 1e-8);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.weight_decay")), 1e-2);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.amsgrad")), 1);
    Tensor *step = tensor_dict_get(&d, "state.1.step");
    cr_expect_eq(step->ndim, 0);
    cr_expect_eq(tensor_item(step), 1);
    Tensor *pidx = tensor_dict_get(&d, "param_groups.0.params");
    cr_expect_eq(pidx->dtype, DTYPE_INT64);
    cr_expect_eq(tensor_numel(pidx), 2);
    cr_expect_eq(tensor_get(pidx, 1), 1);
    Tensor *m = tensor_dict_get(&d, "state.0.exp_avg");
    cr_expect(tensor_same_shape(m, w));
    /* exp_avg after one step: (1 - beta1) * g. */
    cr_expect_float_eq(tensor_get(m, 0), (float)(0.2f * 0.5f), 1e-7);
    /* A snapshot: another step does not change the saved tensors. */
    Tensor *m0 = tensor_clone(m);
    cr_assert_eq(optimizer_step(opt), 0);
    expect_same_bits(m, m0, "saved exp_avg after another step");
    tensor_release(m0);
    tensor_dict_free(&d);

    /* SGD: momentum buffer only once it exists; no step counter. */
    Optimizer *sgd = sgd_new(params, 2, (SgdOptions){.lr = 0.1, .momentum = 0.9,
                                                     .weight_decay = 0.5});
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(sgd, &d), 0);
    cr_expect_null(tensor_dict_get(&d, "state.0.momentum_buffer"));
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.momentum")), 0.9);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.weight_decay")), 0.5);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.nesterov")), 0);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.dampening")), 0);
    tensor_dict_free(&d);
    cr_assert_eq(optimizer_step(sgd), 0);
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(sgd, &d), 0);
    cr_expect_not_null(tensor_dict_get(&d, "state.0.momentum_buffer"));
    cr_expect_not_null(tensor_dict_get(&d, "state.1.momentum_buffer"));
    cr_expect_null(tensor_dict_get(&d, "state.0.step"));
    cr_expect_eq(d.count, 2 + 5 + 1);
    tensor_dict_free(&d);
    optimizer_free(sgd);

    optimizer_zero_grad(opt);
    optimizer_free(opt);
    tensor_release(w);
    tensor_release(b);
}

Test(optim, load_restores_hyperparameters) {
    /* Built with other options, as torch's load_state_dict the saved ones win. */
    Tensor *p = vec(4, 1), *q = vec(4, 1);
    Optimizer *a = sgd_new(&p, 1, (SgdOptions){.lr = 0.1, .momentum = 0.9, .nesterov = true});
    Optimizer *b = sgd_new(&q, 1, (SgdOptions){.lr = 0.7});
    cr_assert(a && b);
    p->grad = vec(4, 2);
    cr_assert_eq(optimizer_step(a), 0);
    TensorDict d;
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(a, &d), 0);
    cr_assert_eq(optimizer_load_state_dict(b, &d), 0, "%s", error_get());
    tensor_dict_free(&d);
    cr_expect_eq(b->lr, 0.1);
    cr_assert_eq(tensor_copy_(q, p), 0);
    tensor_release(p->grad);
    p->grad = vec(4, -3);
    q->grad = vec(4, -3);
    cr_assert_eq(optimizer_step(a), 0);
    cr_assert_eq(optimizer_step(b), 0);
    expect_same_bits(q, p, "loaded SGD's second step");
    optimizer_zero_grad(a);
    optimizer_zero_grad(b);
    optimizer_free(a);
    optimizer_free(b);
    tensor_release(p);
    tensor_release(q);
}

/* A saved AdamW state (amsgrad) over [3, 4] and [4] after one step. */
static void saved_adamw(TensorDict *d) {
    Tensor *w = mat(1), *b = vec(4, 0);
    Tensor *params[2] = {w, b};
    AdamOptions o = adamw_options_default();
    o.amsgrad = true;
    Optimizer *opt = adamw_new(params, 2, o);
    w->grad = mat(0.5);
    b->grad = vec(4, 1);
    cr_assert_eq(optimizer_step(opt), 0);
    tensor_dict_init(d);
    cr_assert_eq(optimizer_state_dict(opt, d), 0);
    optimizer_zero_grad(opt);
    optimizer_free(opt);
    tensor_release(w);
    tensor_release(b);
}

/* Loads d into a fresh AdamW and expects `msg`; the optimizer must stay as
 * it was (no state, its own lr). */
static void expect_load_error(TensorDict *d, const char *msg) {
    Tensor *w = mat(1), *b = vec(4, 0);
    Tensor *params[2] = {w, b};
    AdamOptions o = adamw_options_default();
    o.lr = 0.25;
    Optimizer *opt = adamw_new(params, 2, o);
    cr_assert(opt != NULL);
    cr_expect_eq(optimizer_load_state_dict(opt, d), -1, "expected failure: %s", msg);
    cr_expect_str_eq(error_get(), msg);
    cr_expect_eq(opt->lr, 0.25);
    TensorDict after;
    tensor_dict_init(&after);
    cr_assert_eq(optimizer_state_dict(opt, &after), 0);
    cr_expect_null(tensor_dict_get(&after, "state.0.exp_avg"), "%s: state changed", msg);
    cr_expect_eq(tensor_item(tensor_dict_get(&after, "param_groups.0.amsgrad")), 0);
    tensor_dict_free(&after);
    optimizer_free(opt);
    tensor_release(w);
    tensor_release(b);
}

static void set_release(TensorDict *d, const char *key, Tensor *t) {
    cr_assert_eq(tensor_dict_set(d, key, t), 0);
    tensor_release(t);
}

/* Removes a key by rebuilding the dict without it. */
static void drop(TensorDict *d, const char *key) {
    TensorDict out;
    tensor_dict_init(&out);
    for (int i = 0; i < d->count; i++)
        if (strcmp(d->names[i], key) != 0) tensor_dict_set(&out, d->names[i], d->tensors[i]);
    tensor_dict_free(d);
    *d = out;
}

/* Ways a saved AdamW state can be wrong: `key` set to `value` (a tensor as
 * tensor_from_string reads it, in `dtype`; NULL: the key removed), and the
 * error that says so, after "optimizer_load_state_dict: AdamW: ". */
static const struct {
    const char *key, *value;
    DType dtype;
    const char *says;
} bad_adamw_states[] = {
    {"state.0.exp_avg", "[0, 0.25, 0.5, 0.75]", DTYPE_FLOAT32,
     "'state.0.exp_avg' has shape [4], parameter 0 has [3, 4]"},
    {"state.1.exp_avg_sq", NULL, DTYPE_FLOAT32,
     "state of parameter 1 is incomplete: 'state.1.exp_avg_sq' is missing"},
    {"state.0.max_exp_avg_sq", NULL, DTYPE_FLOAT32,
     "state of parameter 0 is incomplete: 'state.0.max_exp_avg_sq' is missing"},
    {"state.0.step", NULL, DTYPE_FLOAT32,
     "state of parameter 0 is incomplete: 'state.0.step' is missing"},
    {"state.0.step", "1.5", DTYPE_FLOAT64,
     "'state.0.step' is 1.5, not a step count"},
    {"state.2.exp_avg", "[0, 0.25, 0.5, 0.75]", DTYPE_FLOAT32,
     "'state.2.exp_avg': the optimizer has 2 parameters"},
    {"state.0.momentum_buffer", "[[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]", DTYPE_FLOAT32,
     "unexpected key 'state.0.momentum_buffer'"},
    {"state.x.exp_avg", "[[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]", DTYPE_FLOAT32,
     "'state.x.exp_avg': expected a parameter index"},
    /* a second spelling of state.0.exp_avg: one slot, two tensors */
    {"state.00.exp_avg", "[[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]", DTYPE_FLOAT32,
     "'state.00.exp_avg': expected a parameter index"},
    {"param_groups.1.lr", "0.1", DTYPE_FLOAT64,
     "'param_groups.1.lr': the optimizer has 1 parameter group(s)"},
    {"param_groups.0.eps", NULL, DTYPE_FLOAT32,
     "missing 'param_groups.0.eps'"},
    {"param_groups.0.betas.1", "1", DTYPE_FLOAT64,
     "invalid beta parameter at index 1: 1"},
    {"param_groups.0.lr", "[0, 0.25]", DTYPE_FLOAT32,
     "'param_groups.0.lr' must hold one value, got shape [2]"},
    {"param_groups.0.params", "[0, 0, 0]", DTYPE_INT64,
     "'param_groups.0.params' lists 3 parameters, the optimizer's group has 2"},
    {"state.1.exp_avg", "[0, 0, 0, 0]", DTYPE_INT64,
     "'state.1.exp_avg' has dtype int64, expected a float tensor"},
};

Test(optim, load_errors) {
    TensorDict d;
    const char *P = "optimizer_load_state_dict: AdamW: ";
    char msg[256];

    for (size_t i = 0; i < sizeof bad_adamw_states / sizeof *bad_adamw_states; i++) {
        saved_adamw(&d); /* amsgrad on: its max is required too */
        const char *key = bad_adamw_states[i].key, *value = bad_adamw_states[i].value;
        if (value)
            set_release(&d, key, tensor_from_string(value, bad_adamw_states[i].dtype));
        else
            drop(&d, key);
        snprintf(msg, sizeof msg, "%s%s", P, bad_adamw_states[i].says);
        expect_load_error(&d, msg);
        tensor_dict_free(&d);
    }

    /* An SGD state into AdamW. */
    Tensor *p = vec(4, 0);
    Optimizer *sgd = sgd_new(&p, 1, (SgdOptions){.lr = 0.1});
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(sgd, &d), 0);
    snprintf(msg, sizeof msg, "%sunexpected key 'param_groups.0.momentum'", P);
    expect_load_error(&d, msg);
    tensor_dict_free(&d);
    optimizer_free(sgd);
    tensor_release(p);

    /* Keys of other owners are ignored. */
    saved_adamw(&d);
    set_release(&d, "0.weight", mat(0));
    set_release(&d, "scheduler.last_epoch", tensor_scalar(3, DTYPE_INT64, DEVICE_CPU_INIT));
    Tensor *w = mat(1), *b = vec(4, 0);
    Tensor *params[2] = {w, b};
    Optimizer *opt = adamw_new(params, 2, adamw_options_default());
    cr_expect_eq(optimizer_load_state_dict(opt, &d), 0, "%s", error_get());
    optimizer_free(opt);
    tensor_dict_free(&d);
    tensor_release(w);
    tensor_release(b);
}

Test(optim, load_converts_state_dtype) {
    /* A float32 state loaded into float64 parameters (and back) is cast, as
     * torch casts state to the parameter's dtype. */
    TensorDict d;
    saved_adamw(&d);
    Tensor *w = tensor_zeros(SHAPE(3, 4), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *b = tensor_zeros(SHAPE(4), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *params[2] = {w, b};
    Optimizer *opt = adamw_new(params, 2, adamw_options_default());
    cr_assert_eq(optimizer_load_state_dict(opt, &d), 0, "%s", error_get());
    TensorDict e;
    tensor_dict_init(&e);
    cr_assert_eq(optimizer_state_dict(opt, &e), 0);
    Tensor *m = tensor_dict_get(&e, "state.0.exp_avg");
    cr_expect_eq(m->dtype, DTYPE_FLOAT64);
    cr_expect_eq(tensor_get(m, 3), tensor_get(tensor_dict_get(&d, "state.0.exp_avg"), 3));
    cr_expect_eq(tensor_item(tensor_dict_get(&e, "param_groups.0.amsgrad")), 1);
    w->grad = tensor_full(SHAPE(3, 4), 1, DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cr_expect_eq(optimizer_step(opt), 0, "%s", error_get());
    tensor_dict_free(&e);
    tensor_dict_free(&d);
    optimizer_zero_grad(opt);
    optimizer_free(opt);
    tensor_release(w);
    tensor_release(b);
}

/* ---- a no-decay group (nanoGPT's configure_optimizers) ---- */

/* AdamW over [w, b] with b in the no-decay group: w decays, b moves as
 * with weight_decay 0, and the state_dict has torch's two groups. */
Test(optim, no_decay_group_skips_weight_decay_and_saves_two_groups) {
    Tensor *w = mat(1), *b = vec(4, 0), *b_ref = vec(4, 0);
    Tensor *params[2] = {w, b};
    AdamOptions o = adamw_options_default();
    o.weight_decay = 0.5;
    o.lr = 0.1;
    Optimizer *opt = adamw_new(params, 2, o);
    cr_assert(opt != NULL);
    cr_assert_eq(optimizer_set_no_decay_from(opt, 3), -1);
    cr_assert_str_eq(error_get(), "AdamW: no-decay group from parameter 3 of 2");
    cr_assert_eq(optimizer_set_no_decay_from(opt, 1), 0);
    AdamOptions o0 = o;
    o0.weight_decay = 0;
    Optimizer *ref = adamw_new((Tensor *[]){b_ref}, 1, o0);
    w->grad = mat(0.5);
    b->grad = vec(4, 1);
    b_ref->grad = vec(4, 1);
    cr_assert_eq(optimizer_step(opt), 0);
    cr_assert_eq(optimizer_step(ref), 0);
    for (int i = 0; i < 4; i++) cr_expect_eq(tensor_get(b, i), tensor_get(b_ref, i), "b[%d]", i);
    /* w decayed: p * (1 - lr * wd) - lr * m / (sqrt(v) + eps), first step
     * m / sqrt(v) = sign(g) = 1 */
    cr_expect_float_eq(tensor_get(w, 0), 1.0f * (1 - 0.05) - 0.1, 1e-6);

    TensorDict d;
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(opt, &d), 0);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.weight_decay")), 0.5);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.1.weight_decay")), 0);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.1.lr")), 0.1);
    Tensor *g0 = tensor_dict_get(&d, "param_groups.0.params");
    Tensor *g1 = tensor_dict_get(&d, "param_groups.1.params");
    cr_assert(g0 && g1 && tensor_numel(g0) == 1 && tensor_numel(g1) == 1);
    cr_expect_eq(((int64_t *)tensor_data(g0))[0], 0);
    cr_expect_eq(((int64_t *)tensor_data(g1))[0], 1);

    /* Back into an optimizer with the same groups; not into one without. */
    Optimizer *again = adamw_new(params, 2, o);
    cr_assert_eq(optimizer_set_no_decay_from(again, 1), 0);
    cr_expect_eq(optimizer_load_state_dict(again, &d), 0, "%s", error_get());
    Optimizer *single = adamw_new(params, 2, o);
    cr_expect_eq(optimizer_load_state_dict(single, &d), -1);
    cr_expect(strstr(error_get(), "the optimizer's group has 2") != NULL, "%s", error_get());
    tensor_dict_free(&d);
    /* every parameter in the no-decay group: group 0 still says the
     * optimizer's weight_decay, which a load takes back */
    cr_assert_eq(optimizer_set_no_decay_from(single, 0), 0);
    tensor_dict_init(&d);
    cr_assert_eq(optimizer_state_dict(single, &d), 0);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.0.weight_decay")), 0.5);
    cr_expect_eq(tensor_item(tensor_dict_get(&d, "param_groups.1.weight_decay")), 0);
    cr_expect_eq(tensor_numel(tensor_dict_get(&d, "param_groups.0.params")), 0);
    tensor_dict_free(&d);
    optimizer_zero_grad(opt);
    optimizer_zero_grad(ref);
    optimizer_free(opt);
    optimizer_free(ref);
    optimizer_free(again);
    optimizer_free(single);
    tensor_release(w);
    tensor_release(b);
    tensor_release(b_ref);
}
