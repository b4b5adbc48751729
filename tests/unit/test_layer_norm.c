/* test_layer_norm.c - layer normalisation: gradients by finite differences
 * in float64 (with and without weight and bias, over one and two dims), a
 * hand-worked row, parity with PyTorch's F.layer_norm and with
 * nn.Sequential models holding an nn.LayerNorm (tests/fixtures/
 * gen_layer_norm.py): the state_dict names, the loaded weights' output and
 * gradients, built from a job spec, and a checkpoint's tensor names; the
 * module's parameters, and errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "core/spec.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tmp_dir.h"

#define RTOL 1e-5
#define ATOL 1e-6

/* ---- gradients by finite differences ---- */

typedef struct {
    int nd;
    int64_t shape[2];
    bool weight, bias;
} LnArgs;

static Tensor *ln_fn(Tensor **in, void *ctx) {
    const LnArgs *a = ctx;
    Tensor *w = a->weight ? in[1] : NULL;
    Tensor *b = a->bias ? in[a->weight ? 2 : 1] : NULL;
    return tensor_layer_norm(in[0], a->nd, a->shape, w, b, 1e-5);
}

static void ln_gradcheck(const char *name, int ndim, const int64_t *xshape, int nd, bool weight,
                         bool bias, uint64_t seed) {
    LnArgs a = {.nd = nd, .weight = weight, .bias = bias};
    for (int i = 0; i < nd; i++) a.shape[i] = xshape[ndim - nd + i];
    Tensor *in[3];
    int n = 0;
    in[n++] = gradcheck_input(ndim, xshape, -2, 2, seed);
    if (weight) in[n++] = gradcheck_input(nd, a.shape, 0.5, 1.5, seed + 1);
    if (bias) in[n++] = gradcheck_input(nd, a.shape, -1, 1, seed + 2);
    gradcheck(name, ln_fn, &a, n, in);
    for (int i = 0; i < n; i++) tensor_release(in[i]);
}

Test(layer_norm, gradcheck_float64) {
    ln_gradcheck("layer_norm [6, 5] over [5]", SHAPE(6, 5), 1, true, true, 1);
    ln_gradcheck("layer_norm [2, 3, 7] over [7]", SHAPE(2, 3, 7), 1, true, true, 10);
    ln_gradcheck("layer_norm [3, 4, 5] over [4, 5]", SHAPE(3, 4, 5), 2, true, true, 20);
    ln_gradcheck("layer_norm no affine [4, 6]", SHAPE(4, 6), 1, false, false, 30);
    ln_gradcheck("layer_norm no affine [2, 3, 4] over [3, 4]", SHAPE(2, 3, 4), 2, false, false,
                 40);
    ln_gradcheck("layer_norm weight only [5, 3, 2] over [3, 2]", SHAPE(5, 3, 2), 2, true, false,
                 50);
}

/* Only the weight and bias need a gradient: gx is not computed and the
 * parameters' gradients are still right. */
Test(layer_norm, gradcheck_parameters_only) {
    LnArgs a = {.nd = 1, .shape = {6}, .weight = true, .bias = true};
    Tensor *in[3] = {gradcheck_input(SHAPE(4, 6), -2, 2, 60),
                     gradcheck_input(SHAPE(6), 0.5, 1.5, 61),
                     gradcheck_input(SHAPE(6), -1, 1, 62)};
    cr_assert_eq(tensor_set_requires_grad(in[0], false), 0);
    gradcheck("layer_norm params only", ln_fn, &a, 3, in);
    cr_assert_null(in[0]->grad);
    for (int i = 0; i < 3; i++) tensor_release(in[i]);
}

/* ---- values ---- */

Test(layer_norm, hand_worked_row) {
    /* [1, 2, 3, 4]: mean 2.5, biased var 1.25; [10, 10, 10, 10]: var 0 */
    double xv[] = {1, 2, 3, 4, 10, 10, 10, 10};
    Tensor *x = tensor_from_doubles(xv, SHAPE(2, 4), DTYPE_FLOAT64);
    Tensor *w = tensor_from_doubles((double[]){1, 2, 1, 0.5}, SHAPE(4), DTYPE_FLOAT64);
    Tensor *b = tensor_from_doubles((double[]){0, 0, 1, 0}, SHAPE(4), DTYPE_FLOAT64);
    Tensor *y = tensor_layer_norm(x, 1, (int64_t[]){4}, w, b, 1e-5);
    cr_assert(y != NULL, "%s", error_get());
    double r = 1 / sqrt(1.25 + 1e-5);
    double want[] = {-1.5 * r, -0.5 * r * 2, 0.5 * r + 1, 1.5 * r * 0.5, 0, 0, 1, 0};
    assert_tensor_values(y, want, 8, 1e-12, "layer_norm hand-worked");
    tensor_release(x), tensor_release(w), tensor_release(b), tensor_release(y);
}

/* The parallel path (rows * cols past CPU_PARALLEL_MIN) and the column
 * blocks of gweight: float32 against the same data in float64. */
Test(layer_norm, float32_large_matches_float64) {
    Tensor *t64[4] = {gradcheck_input(SHAPE(96, 1000), -3, 5, 70),
                      gradcheck_input(SHAPE(1000), 0.5, 1.5, 71),
                      gradcheck_input(SHAPE(1000), -1, 1, 72),
                      gradcheck_input(SHAPE(96, 1000), -1, 1, 73)}; /* upstream gradient */
    Tensor *t32[4], *outs[2];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(tensor_set_requires_grad(t64[i], false), 0);
        t32[i] = tensor_to_dtype(t64[i], DTYPE_FLOAT32);
        cr_assert_eq(tensor_set_requires_grad(t32[i], i < 3), 0);
        cr_assert_eq(tensor_set_requires_grad(t64[i], i < 3), 0);
    }
    for (int k = 0; k < 2; k++) {
        Tensor **t = k ? t64 : t32;
        outs[k] = tensor_layer_norm(t[0], 1, (int64_t[]){1000}, t[1], t[2], 1e-5);
        cr_assert(outs[k] != NULL, "%s", error_get());
        Tensor *p = tensor_mul(outs[k], t[3]), *l = tensor_sum(p);
        cr_assert_eq(tensor_backward(l), 0, "%s", error_get());
        tensor_release(p), tensor_release(l);
    }
    assert_tensor_close(outs[0], outs[1], 1e-5, 1e-5, "out f32 vs f64");
    assert_tensor_close(t32[0]->grad, t64[0]->grad, 1e-4, 1e-5, "gx f32 vs f64");
    assert_tensor_close(t32[1]->grad, t64[1]->grad, 1e-4, 1e-4, "gweight f32 vs f64");
    assert_tensor_close(t32[2]->grad, t64[2]->grad, 1e-4, 1e-4, "gbias f32 vs f64");
    for (int i = 0; i < 4; i++) tensor_release(t32[i]), tensor_release(t64[i]);
    tensor_release(outs[0]), tensor_release(outs[1]);
}

/* ---- parity with F.layer_norm ---- */

static void check_functional(json_t *fx, const char *name) {
    json_t *kase = fixture_case(fx, name);
    bool has_w = json_object_get(kase, "weight"), has_b = json_object_get(kase, "bias");
    Tensor *x = fixture_tensor(kase, "x"), *gw = fixture_tensor(kase, "gw");
    Tensor *w = has_w ? fixture_tensor(kase, "weight") : NULL;
    Tensor *b = has_b ? fixture_tensor(kase, "bias") : NULL;
    int nd = (int)fixture_number(kase, "norm_ndim");
    cr_assert_eq(tensor_set_requires_grad(x, true), 0);
    if (w) cr_assert_eq(tensor_set_requires_grad(w, true), 0);
    if (b) cr_assert_eq(tensor_set_requires_grad(b, true), 0);

    Tensor *out = tensor_layer_norm(x, nd, x->shape + x->ndim - nd, w, b,
                                    fixture_number(kase, "eps"));
    cr_assert(out != NULL, "%s: %s", name, error_get());
    Tensor *l = tensor_mul(out, gw), *s = tensor_sum(l);
    cr_assert_eq(tensor_backward(s), 0, "%s: %s", name, error_get());

    const char *keys[] = {"out", "gx", "gweight", "gbias"};
    Tensor *got[] = {out, x->grad, w ? w->grad : NULL, b ? b->grad : NULL};
    for (int k = 0; k < 4; k++) {
        if (json_object_get(kase, keys[k]))
            fixture_assert_close(kase, keys[k], got[k], RTOL, ATOL, name);
        else
            cr_assert_null(got[k], "%s: %s computed without its input", name, keys[k]);
    }
    tensor_release(x), tensor_release(gw), tensor_release(w), tensor_release(b);
    tensor_release(out), tensor_release(l), tensor_release(s);
}

Test(layer_norm_torch, functional_forward_and_gradients) {
    json_t *fx = fixture_load("layer_norm");
    const char *names[] = {"last_dim", "two_dims", "no_affine", "weight_only", "offset_wide"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) check_functional(fx, names[i]);
    json_decref(fx);
}

/* ---- nn.LayerNorm in a model built from a job spec ---- */

static Module *model_from_spec(const char *model_json) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"data\": {\"train\": \"t\"}, \"model\": %s, \"loss\": {\"type\": \"MSELoss\"}, "
             "\"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1}",
             model_json);
    JobSpec *spec = job_spec_parse(text, strlen(text));
    cr_assert(spec != NULL, "%s", error_get());
    Rng rng;
    rng_init(&rng, 0);
    Module *m = job_spec_build_model(spec, &rng);
    cr_assert(m != NULL, "%s", error_get());
    job_spec_free(spec);
    return m;
}

/* state_dict keys and shapes as torch's; the fresh LayerNorm at torch's
 * initialisation (weight ones, bias zeros). */
static void check_names(Module *m, json_t *kase, const char *ln_prefix) {
    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert_eq(module_state_dict(m, &sd), 0, "%s", error_get());
    fixture_assert_state_dict(&sd, kase);
    char key[32];
    snprintf(key, sizeof key, "%sweight", ln_prefix);
    Tensor *w = tensor_dict_get(&sd, key);
    snprintf(key, sizeof key, "%sbias", ln_prefix);
    Tensor *b = tensor_dict_get(&sd, key);
    cr_assert(w && b);
    for (int64_t i = 0; i < tensor_numel(w); i++) {
        cr_assert_eq(tensor_get(w, i), 1.0);
        cr_assert_eq(tensor_get(b, i), 0.0);
    }
    tensor_dict_free(&sd);
}

static void check_model_case(const char *name, const char *model_json, const char *ln_prefix) {
    json_t *fx = fixture_load("layer_norm");
    json_t *kase = fixture_case(fx, name);
    Module *m = model_from_spec(model_json);
    check_names(m, kase, ln_prefix);

    TensorDict sd;
    tensor_dict_init(&sd);
    const char *key;
    json_t *value;
    json_object_foreach(kase, key, value) {
        if (strncmp(key, "sd.", 3) != 0) continue;
        Tensor *t = fixture_tensor(kase, key);
        cr_assert_eq(tensor_dict_set(&sd, key + 3, t), 0);
        tensor_release(t);
    }
    cr_assert_eq(module_load_state_dict(m, &sd, true), 0, "%s", error_get());
    tensor_dict_free(&sd);

    Tensor *x = fixture_tensor(kase, "x"), *gw = fixture_tensor(kase, "gw");
    Tensor *want = fixture_tensor(kase, "out");
    Tensor *out = module_forward(m, x);
    cr_assert(out != NULL, "%s: %s", name, error_get());
    assert_tensor_close(out, want, RTOL, ATOL, "out");
    Tensor *l = tensor_mul(out, gw), *s = tensor_sum(l);
    cr_assert_eq(tensor_backward(s), 0, "%s", error_get());
    json_object_foreach(kase, key, value) {
        if (strncmp(key, "grad.", 5) != 0) continue;
        Tensor *p = module_find(m, key + 5);
        cr_assert(p, "%s: no parameter %s", name, key + 5);
        fixture_assert_close(kase, key, p->grad, RTOL, ATOL, name);
    }
    tensor_release(x), tensor_release(gw), tensor_release(want), tensor_release(out);
    tensor_release(l), tensor_release(s);
    module_free(m);
    json_decref(fx);
}

Test(layer_norm_torch, sequential_mlp_names_output_gradients) {
    check_model_case("seq_mlp",
                     "[{\"type\": \"Linear\", \"in_features\": 8, \"out_features\": 16},"
                     " {\"type\": \"LayerNorm\", \"normalized_shape\": 16},"
                     " {\"type\": \"Linear\", \"in_features\": 16, \"out_features\": 4}]",
                     "1.");
}

Test(layer_norm_torch, sequential_conv_two_dims_names_output_gradients) {
    check_model_case("seq_conv",
                     "[{\"type\": \"Conv2d\", \"in_channels\": 2, \"out_channels\": 3,"
                     " \"kernel_size\": 3, \"padding\": 1},"
                     " {\"type\": \"LayerNorm\", \"normalized_shape\": [5, 5], \"eps\": 1e-4},"
                     " {\"type\": \"Flatten\"},"
                     " {\"type\": \"Linear\", \"in_features\": 75, \"out_features\": 4}]",
                     "1.");
}

/* A checkpoint of [Linear, LayerNorm, Linear] holds torch's names in
 * torch's order ("1.weight", "1.bias" for the LayerNorm), with the values
 * that went in, and loads strictly into a fresh model built from the spec. */
Test(layer_norm_torch, checkpoint_tensor_names) {
    const char *spec_model =
        "[{\"type\": \"Linear\", \"in_features\": 8, \"out_features\": 16},"
        " {\"type\": \"LayerNorm\", \"normalized_shape\": 16},"
        " {\"type\": \"Linear\", \"in_features\": 16, \"out_features\": 4}]";
    json_t *fx = fixture_load("layer_norm");
    json_t *kase = fixture_case(fx, "seq_mlp");
    Module *m = model_from_spec(spec_model);
    TensorDict sd;
    tensor_dict_init(&sd);
    Tensor *w = fixture_tensor(kase, "sd.1.weight");
    cr_assert_eq(tensor_copy_(module_find(m, "1.weight"), w), 0);
    cr_assert_eq(module_state_dict(m, &sd), 0, "%s", error_get());

    char dir[64], path[96];
    tmp_dir_make(dir, sizeof dir, "ln");
    tmp_dir_path(dir, "model.safetensors", path, sizeof path);
    cr_assert_eq(safetensors_save(path, &sd, NULL), 0, "%s", error_get());
    TensorDict back;
    tensor_dict_init(&back);
    cr_assert_eq(safetensors_load(path, &back, NULL), 0, "%s", error_get());
    fixture_assert_state_dict(&back, kase);
    assert_tensor_close(tensor_dict_get(&back, "1.weight"), w, 0, 0, "1.weight in the file");
    assert_tensor_values(tensor_dict_get(&back, "1.bias"), (double[16]){0}, 16, 0,
                         "1.bias in the file");

    Module *fresh = model_from_spec(spec_model);
    cr_assert_eq(module_load_state_dict(fresh, &back, true), 0, "%s", error_get());
    assert_tensor_close(module_find(fresh, "1.weight"), w, 0, 0, "1.weight loaded");
    tmp_dir_remove(dir);
    tensor_release(w);
    tensor_dict_free(&sd), tensor_dict_free(&back);
    module_free(m), module_free(fresh);
    json_decref(fx);
}

/* ---- the module ---- */

Test(layer_norm_module, parameters_by_affine_and_bias) {
    const int64_t shape[] = {3, 4};
    struct {
        bool affine, bias;
        int n;
    } cases[] = {{true, true, 2}, {true, false, 1}, {false, true, 0}, {false, false, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        Module *m = nn_layer_norm(2, shape, 1e-5, cases[k].affine, cases[k].bias);
        cr_assert(m != NULL, "%s", error_get());
        cr_assert_str_eq(module_type(m), "LayerNorm");
        cr_assert_eq(m->n_params, cases[k].n, "affine %d bias %d", cases[k].affine,
                     cases[k].bias);
        if (cases[k].n > 0) {
            Tensor *w = module_get(m, "weight");
            cr_assert(w && w->requires_grad && w->ndim == 2 && w->shape[0] == 3 &&
                      w->shape[1] == 4);
        }
        cr_assert_eq(module_get(m, "bias") != NULL, cases[k].n == 2);
        cr_assert_eq(m->n_buffers, 0);

        /* Without affine the output is the plain normalisation; train and
         * eval agree (no running statistics). */
        Tensor *x = gradcheck_input(SHAPE(2, 3, 4), -1, 1, 80);
        cr_assert_eq(module_to_dtype(m, DTYPE_FLOAT64), 0);
        Tensor *a = module_forward(m, x);
        module_train(m, false);
        Tensor *b = module_forward(m, x);
        cr_assert(a && b, "%s", error_get());
        assert_tensor_close(a, b, 0, 0, "train vs eval");
        /* every 12-element group of a has mean 0 and biased variance ~1 */
        for (int g = 0; g < 2; g++) {
            double s = 0, sq = 0;
            for (int i = 0; i < 12; i++) s += tensor_get(a, g * 12 + i);
            for (int i = 0; i < 12; i++) sq += pow(tensor_get(a, g * 12 + i) - s / 12, 2);
            cr_assert(fabs(s / 12) < 1e-12, "group %d mean %g", g, s / 12);
            cr_assert(fabs(sq / 12 - 1) < 1e-3, "group %d var %g", g, sq / 12);
        }
        tensor_release(x), tensor_release(a), tensor_release(b);
        module_free(m);
    }
}

Test(layer_norm_module, infer_shape_and_errors) {
    Module *m = nn_layer_norm(1, (int64_t[]){64}, 1e-5, true, true);
    cr_assert(m);
    int on;
    int64_t out[TENSOR_MAX_DIMS];
    cr_assert_eq(module_infer_shape(m, SHAPE(8, 10, 64), &on, out), 0, "%s", error_get());
    cr_assert(on == 3 && out[0] == 8 && out[1] == 10 && out[2] == 64);
    cr_assert_eq(module_infer_shape(m, SHAPE(8, 32), &on, out), -1);
    cr_assert_str_eq(error_get(), "LayerNorm: normalized_shape=[64] but its input [8, 32] does "
                                  "not end with [64]");
    Tensor *x = tensor_zeros(SHAPE(8, 32), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(module_forward(m, x),
                 "LayerNorm: normalized_shape=[64] but its input [8, 32] does not end with [64]");
    tensor_release(x);
    module_free(m);

    cr_assert_null(nn_layer_norm(1, (int64_t[]){0}, 1e-5, true, true));
    cr_assert_str_eq(error_get(), "LayerNorm: normalized_shape[0] must be positive, got 0");
    cr_assert_null(nn_layer_norm(0, (int64_t[]){4}, 1e-5, true, true));
    cr_assert(strstr(error_get(), "normalized_shape must have 1 to 8 dims, got 0"));
    cr_assert_null(nn_layer_norm(1, (int64_t[]){4}, 0, true, true));
    cr_assert_str_eq(error_get(), "LayerNorm: eps must be positive, got 0");
}

Test(layer_norm, op_errors) {
    Tensor *x = tensor_zeros(SHAPE(3, 4, 5), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *w = tensor_zeros(SHAPE(5), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *w64 = tensor_zeros(SHAPE(4, 5), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *i = tensor_zeros(SHAPE(3, 5), DTYPE_INT64, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_layer_norm(x, 2, (int64_t[]){5, 4}, NULL, NULL, 1e-5),
                 "layer_norm: normalized_shape [5, 4] needs an input of shape [*, 5, 4], got "
                 "[3, 4, 5]");
    fixture_expect_error(tensor_layer_norm(x, 2, (int64_t[]){4, 5}, w, NULL, 1e-5),
                 "layer_norm: weight of shape [5] does not match normalized_shape [4, 5]");
    fixture_expect_error(tensor_layer_norm(x, 2, (int64_t[]){4, 5}, NULL, w64, 1e-5),
                 "layer_norm: bias is float64 but input is float32");
    fixture_expect_error(tensor_layer_norm(i, 1, (int64_t[]){5}, NULL, NULL, 1e-5),
                 "layer_norm: expected a float input, got int64");
    fixture_expect_error(tensor_layer_norm(x, 4, (int64_t[]){1, 3, 4, 5}, NULL, NULL, 1e-5),
                 "needs an input of shape [*, 1, 3, 4, 5], got [3, 4, 5]");
    fixture_expect_error(tensor_layer_norm(x, 1, (int64_t[]){5}, NULL, NULL, -1),
                 "layer_norm: eps must be >= 0, got -1");
    tensor_release(x), tensor_release(w), tensor_release(w64), tensor_release(i);
}

/* An empty batch normalises nothing; the parameters' gradients are zeros. */
Test(layer_norm, empty_batch) {
    Tensor *x = tensor_zeros(SHAPE(0, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *w = tensor_full(SHAPE(4), 2.0, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_set_requires_grad(w, true), 0);
    Tensor *y = tensor_layer_norm(x, 1, (int64_t[]){4}, w, NULL, 1e-5);
    cr_assert(y && y->ndim == 2 && y->shape[0] == 0 && y->shape[1] == 4, "%s", error_get());
    Tensor *s = tensor_sum(y);
    cr_assert_eq(tensor_backward(s), 0, "%s", error_get());
    cr_assert(w->grad);
    assert_tensor_values(w->grad, (double[]){0, 0, 0, 0}, 4, 0, "gweight of an empty batch");
    tensor_release(x), tensor_release(w), tensor_release(y), tensor_release(s);
}
