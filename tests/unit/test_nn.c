/* test_nn.c - the nn layer: state_dict names against PyTorch, forward and
 * parameter gradients against PyTorch (tests/fixtures/gen_nn.py, and
 * gen_activations.py for GELU, SiLU, LeakyReLU, Identity) in train
 * and eval mode, train()/eval() switching, default initialisation, load
 * errors, shape inference, moves to float64 with a gradient check. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

/* ---- models, built as gen_nn.py builds them ---- */

#define NONE SIZE2D(0)

/* Children are built one statement at a time: the order of evaluation of
 * an initializer list is unspecified, and the Rng draws must be in order. */
static Module *build_all_layers(Rng *rng) {
    Module *c[15];
    c[0] = nn_conv2d(3, 4, SIZE2D(3), SIZE2D(1), SIZE2D(1), true, rng);
    c[1] = nn_batch_norm2d(4, 1e-5, 0.1, true, true);
    c[2] = nn_relu();
    c[3] = nn_max_pool2d(SIZE2D(2), NONE, SIZE2D(0));
    c[4] = nn_conv2d(4, 6, (Size2d){3, 2}, (Size2d){2, 1}, (Size2d){1, 0}, false, rng);
    c[5] = nn_avg_pool2d((Size2d){2, 3}, NONE, SIZE2D(0));
    c[6] = nn_sigmoid();
    c[7] = nn_flatten(1, -1);
    c[8] = nn_linear(6, 8, true, rng);
    c[9] = nn_batch_norm1d(8, 1e-5, 0.1, true, true);
    c[10] = nn_tanh();
    c[11] = nn_dropout(0.3);
    Module *inner[3];
    inner[0] = nn_linear(8, 5, true, rng);
    inner[1] = nn_relu();
    inner[2] = nn_linear(5, 4, false, rng);
    c[12] = nn_sequential(3, inner);
    c[13] = nn_batch_norm1d(4, 1e-5, 0.1, false, true);
    c[14] = nn_softmax(1);
    Module *m = nn_sequential(15, c);
    cr_assert(m != NULL, "build_all_layers: %s", error_get());
    return m;
}

static Module *build_mlp(Rng *rng) {
    Module *c[7];
    c[0] = nn_linear(6, 5, true, rng);
    c[1] = nn_batch_norm1d(5, 1e-5, 0.1, true, true);
    c[2] = nn_relu();
    c[3] = nn_linear(5, 4, true, rng);
    c[4] = nn_tanh();
    c[5] = nn_linear(4, 3, true, rng);
    c[6] = nn_sigmoid();
    Module *m = nn_sequential(7, c);
    cr_assert(m != NULL, "build_mlp: %s", error_get());
    return m;
}

static Module *build_cnn(Rng *rng) {
    Module *c[6];
    c[0] = nn_conv2d(2, 3, SIZE2D(3), SIZE2D(1), SIZE2D(1), true, rng);
    c[1] = nn_batch_norm2d(3, 1e-5, 0.1, true, true);
    c[2] = nn_relu();
    c[3] = nn_max_pool2d(SIZE2D(2), NONE, SIZE2D(0));
    c[4] = nn_flatten(1, -1);
    c[5] = nn_linear(27, 4, true, rng);
    Module *m = nn_sequential(6, c);
    cr_assert(m != NULL, "build_cnn: %s", error_get());
    return m;
}

/* gen_activations.py's MLP with every activation that takes arguments. */
static Module *build_activations_mlp(Rng *rng) {
    Module *c[11];
    c[0] = nn_linear(6, 8, true, rng);
    c[1] = nn_gelu(false);
    c[2] = nn_linear(8, 8, true, rng);
    c[3] = nn_gelu(true);
    c[4] = nn_linear(8, 8, true, rng);
    c[5] = nn_silu();
    c[6] = nn_linear(8, 8, true, rng);
    c[7] = nn_leaky_relu(0.2);
    c[8] = nn_identity();
    c[9] = nn_linear(8, 3, true, rng);
    c[10] = nn_leaky_relu(0.01);
    Module *m = nn_sequential(11, c);
    cr_assert(m != NULL, "build_activations_mlp: %s", error_get());
    return m;
}

/* The seed job's CNN (design.md), with Linear(linear_in, 10). */
static Module *build_seed_cnn(Rng *rng, int64_t linear_in) {
    Module *c[5];
    c[0] = nn_conv2d(1, 32, SIZE2D(3), SIZE2D(1), SIZE2D(1), true, rng);
    c[1] = nn_relu();
    c[2] = nn_max_pool2d(SIZE2D(2), NONE, SIZE2D(0));
    c[3] = nn_flatten(1, -1);
    c[4] = nn_linear(linear_in, 10, true, rng);
    Module *m = nn_sequential(5, c);
    cr_assert(m != NULL, "build_seed_cnn: %s", error_get());
    return m;
}

/* Every "<prefix>name" tensor of a fixture case, under "name". */
static void load_prefixed(json_t *kase, const char *prefix, TensorDict *out) {
    tensor_dict_init(out);
    const char *key;
    json_t *value;
    size_t plen = strlen(prefix);
    json_object_foreach(kase, key, value) {
        if (strncmp(key, prefix, plen) != 0) continue;
        Tensor *t = fixture_tensor(kase, key);
        cr_assert(tensor_dict_set(out, key + plen, t) == 0);
        tensor_release(t);
    }
}

static void load_fixture_weights(Module *m, json_t *kase) {
    TensorDict sd;
    load_prefixed(kase, "sd.", &sd);
    cr_assert(sd.count > 0);
    cr_assert(module_load_state_dict(m, &sd, true) == 0, "load_state_dict: %s", error_get());
    tensor_dict_free(&sd);
}

#define RTOL 1e-5
#define ATOL 1e-6

/* Loads the weights of case `case_name` of fixture file `fixture`, runs
 * forward + backward of sum(out * gw) in the case's mode, and compares the
 * output, every parameter's gradient, and (train) every buffer afterwards
 * with PyTorch's. */
static void check_parity(const char *fixture, const char *case_name, Module *m) {
    json_t *fx = fixture_load(fixture);
    json_t *kase = fixture_case(fx, case_name);
    load_fixture_weights(m, kase);
    bool training = fixture_number(kase, "training") != 0;
    module_train(m, training);

    Tensor *x = fixture_tensor(kase, "x"), *gw = fixture_tensor(kase, "gw");
    Tensor *want = fixture_tensor(kase, "out");
    Tensor *out = module_forward(m, x);
    cr_assert(out != NULL, "%s forward: %s", case_name, error_get());
    assert_tensor_close(out, want, RTOL, ATOL, "out");
    Tensor *weighted = tensor_mul(out, gw);
    Tensor *loss = tensor_sum(weighted);
    cr_assert(loss != NULL, "%s", error_get());
    cr_assert(tensor_backward(loss) == 0, "backward: %s", error_get());

    int n_grads = 0, n_after = 0;
    const char *key;
    json_t *value;
    json_object_foreach(kase, key, value) {
        bool is_grad = strncmp(key, "grad.", 5) == 0, is_after = strncmp(key, "after.", 6) == 0;
        if (!is_grad && !is_after) continue;
        const char *name = key + (is_grad ? 5 : 6);
        Tensor *t = module_find(m, name);
        cr_assert(t != NULL, "%s: the model has no '%s'", case_name, name);
        Tensor *expected = fixture_tensor(kase, key);
        if (is_grad) {
            cr_assert(t->grad != NULL, "%s: '%s' got no gradient", case_name, name);
            assert_tensor_close(t->grad, expected, RTOL, ATOL, key);
            n_grads++;
        } else {
            assert_tensor_close(t, expected, RTOL, ATOL, key);
            n_after++;
        }
        tensor_release(expected);
    }
    int n_params;
    Tensor **params = module_parameters(m, &n_params);
    cr_assert(params != NULL);
    cr_assert_eq(n_grads, n_params, "%s: %d gradients in the fixture, %d parameters", case_name,
                 n_grads, n_params);
    cr_assert(!training || n_after > 0);
    free(params);

    tensor_release(x);
    tensor_release(gw);
    tensor_release(want);
    tensor_release(out);
    tensor_release(weighted);
    tensor_release(loss);
    json_decref(fx);
}

/* ---- state_dict names ---- */

Test(nn_state_dict, every_layer_matches_pytorch_names_shapes_dtypes) {
    Rng rng;
    rng_init(&rng, 0);
    Module *m = build_all_layers(&rng);
    json_t *fx = fixture_load("nn");
    json_t *kase = fixture_case(fx, "all_layers");

    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert(module_state_dict(m, &sd) == 0, "%s", error_get());
    fixture_assert_state_dict(&sd, kase);
    for (int i = 0; i < sd.count; i++)
        cr_assert(!sd.tensors[i]->requires_grad, "state_dict entries are detached");
    /* Spot checks of the shapes the brief names. */
    cr_assert_eq(tensor_dict_get(&sd, "1.num_batches_tracked")->ndim, 0);
    cr_assert_eq(tensor_dict_get(&sd, "1.num_batches_tracked")->dtype, DTYPE_INT64);
    cr_assert(tensor_dict_get(&sd, "12.0.weight") != NULL);
    cr_assert(tensor_dict_get(&sd, "12.2.bias") == NULL);
    cr_assert(tensor_dict_get(&sd, "13.weight") == NULL); /* affine=False */

    /* Parameters: trainable tensors only, in state_dict order. */
    int n;
    Tensor **params = module_parameters(m, &n);
    cr_assert(params != NULL);
    cr_assert_eq(n, 12); /* 0.w 0.b 1.w 1.b 4.w 8.w 8.b 9.w 9.b 12.0.w 12.0.b 12.2.w */
    cr_assert(params[11] == module_find(m, "12.2.weight"));
    free(params);
    tensor_dict_free(&sd);
    json_decref(fx);
    module_free(m);
}

Test(nn_state_dict, state_dict_shares_storage_with_the_model) {
    Rng rng;
    rng_init(&rng, 1);
    Module *lin = nn_linear(3, 2, true, &rng);
    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert(module_state_dict(lin, &sd) == 0);
    cr_assert_eq(sd.count, 2);
    cr_assert_str_eq(sd.names[0], "weight");
    cr_assert_str_eq(sd.names[1], "bias");
    tensor_fill_(sd.tensors[1], 7.0);
    cr_assert_float_eq(tensor_get(module_get(lin, "bias"), 1), 7.0, 0);
    cr_assert(module_find(lin, "weight") == module_get(lin, "weight"));
    cr_assert(module_find(lin, "nope") == NULL);
    tensor_dict_free(&sd);
    module_free(lin);
}

/* ---- forward and gradients against PyTorch ---- */

Test(nn_parity, all_layers_eval_output) {
    Rng rng;
    rng_init(&rng, 0);
    Module *m = build_all_layers(&rng);
    json_t *fx = fixture_load("nn");
    json_t *kase = fixture_case(fx, "all_layers");
    load_fixture_weights(m, kase);
    module_train(m, false);
    Tensor *x = fixture_tensor(kase, "x"), *want = fixture_tensor(kase, "out");
    bool prev = autograd_set_enabled(false);
    Tensor *out = module_forward(m, x);
    autograd_set_enabled(prev);
    cr_assert(out != NULL, "%s", error_get());
    assert_tensor_close(out, want, RTOL, ATOL, "out");
    /* Eval touches no buffer. */
    cr_assert_float_eq(tensor_item(module_find(m, "1.num_batches_tracked")), 3.0, 0);
    tensor_release(x);
    tensor_release(want);
    tensor_release(out);
    json_decref(fx);
    module_free(m);
}

Test(nn_parity, mlp_train) {
    Rng rng;
    rng_init(&rng, 0);
    Module *m = build_mlp(&rng);
    check_parity("nn", "mlp_train", m);
    cr_assert_float_eq(tensor_item(module_find(m, "1.num_batches_tracked")), 4.0, 0);
    module_free(m);
}

Test(nn_parity, mlp_eval) {
    Rng rng;
    rng_init(&rng, 0);
    Module *m = build_mlp(&rng);
    check_parity("nn", "mlp_eval", m);
    cr_assert_float_eq(tensor_item(module_find(m, "1.num_batches_tracked")), 3.0, 0);
    module_free(m);
}

Test(nn_parity, cnn_train) {
    Rng rng;
    rng_init(&rng, 0);
    Module *m = build_cnn(&rng);
    check_parity("nn", "cnn_train", m);
    module_free(m);
}

Test(nn_parity, cnn_eval) {
    Rng rng;
    rng_init(&rng, 0);
    Module *m = build_cnn(&rng);
    check_parity("nn", "cnn_eval", m);
    module_free(m);
}

Test(nn_parity, activations_mlp) {
    Rng rng;
    rng_init(&rng, 0);
    Module *m = build_activations_mlp(&rng);
    check_parity("activations", "mlp", m);
    static const char *types[] = {"GELU", "GELU", "SiLU", "LeakyReLU", "Identity"};
    static const int at[] = {1, 3, 5, 7, 8};
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(module_type(m->children[at[i]]), types[i], "layer %d", at[i]);
    module_free(m);
}

Test(nn_parity, identity_returns_its_input) {
    Module *id = nn_identity();
    Tensor *x = tensor_from_string("[[1, -2], [3, 4]]", DTYPE_FLOAT32);
    Tensor *y = module_forward(id, x);
    cr_assert(y == x, "Identity returns the input itself, as torch's");
    tensor_release(y);
    tensor_release(x);
    module_free(id);
}

/* ---- train() / eval() ---- */

Test(nn_modes, dropout_follows_train_eval_and_the_shared_rng) {
    Module *c[2];
    c[0] = nn_relu();
    c[1] = nn_dropout(0.5);
    Module *m = nn_sequential(2, c);
    cr_assert(m != NULL);
    Rng rng;
    rng_init(&rng, 42);
    module_set_rng(m, &rng);
    Tensor *x = tensor_full(SHAPE(1000), 1.0, DTYPE_FLOAT32, DEVICE_CPU_INIT);

    /* eval: the identity, no numbers drawn */
    module_train(m, false);
    cr_assert(!m->children[1]->training);
    Tensor *y = module_forward(m, x);
    cr_assert(y != NULL, "%s", error_get());
    for (int i = 0; i < 1000; i++) cr_assert_float_eq(tensor_get(y, i), 1.0, 0);
    cr_assert_eq(rng.offset, 0);
    tensor_release(y);

    /* train: about half zeroed, the rest scaled by 2, numel numbers drawn */
    module_train(m, true);
    cr_assert(m->children[1]->training);
    Rng saved = rng;
    Tensor *y1 = module_forward(m, x);
    cr_assert(y1 != NULL, "%s", error_get());
    cr_assert_eq(rng.offset, 1000);
    int zeros = 0;
    for (int i = 0; i < 1000; i++) {
        double v = tensor_get(y1, i);
        cr_assert(v == 0.0 || v == 2.0, "y[%d] = %g", i, v);
        zeros += v == 0.0;
    }
    cr_assert(zeros > 430 && zeros < 570, "%d of 1000 dropped at p=0.5", zeros);

    /* the next forward draws a different mask */
    Tensor *y2 = module_forward(m, x);
    cr_assert_eq(rng.offset, 2000);
    int same = 0;
    for (int i = 0; i < 1000; i++) same += tensor_get(y1, i) == tensor_get(y2, i);
    cr_assert(same < 700, "%d of 1000 equal between two masks", same);

    /* restoring (seed, offset), as a checkpoint does, replays the mask */
    rng = saved;
    Tensor *y3 = module_forward(m, x);
    for (int i = 0; i < 1000; i++) cr_assert_eq(tensor_get(y3, i), tensor_get(y1, i));

    /* training without an Rng is an error that names the layer */
    module_set_rng(m, NULL);
    cr_assert(module_forward(m, x) == NULL);
    cr_assert(strstr(error_get(), "model[1] Dropout: ") == error_get(), "%s", error_get());

    tensor_release(x);
    tensor_release(y1);
    tensor_release(y2);
    tensor_release(y3);
    module_free(m);
}

Test(nn_modes, batch_norm_train_updates_stats_eval_uses_them) {
    Module *bn = nn_batch_norm1d(2, 1e-5, 0.1, true, true);
    cr_assert(bn != NULL, "%s", error_get());
    Tensor *x = tensor_from_string("[[1, 10], [3, 20], [5, 60]]", DTYPE_FLOAT32);
    Tensor *rm = module_get(bn, "running_mean"), *rv = module_get(bn, "running_var");
    Tensor *nbt = module_get(bn, "num_batches_tracked");

    /* train: batch statistics; running = 0.9 running + 0.1 batch (unbiased var) */
    Tensor *y = module_forward(bn, x);
    cr_assert(y != NULL, "%s", error_get());
    cr_assert_float_eq(tensor_item(nbt), 1.0, 0);
    cr_assert_float_eq(tensor_get(rm, 0), 0.3, 1e-6);
    cr_assert_float_eq(tensor_get(rm, 1), 3.0, 1e-5);
    cr_assert_float_eq(tensor_get(rv, 0), 0.9 + 0.1 * 4.0, 1e-6);
    cr_assert_float_eq(tensor_get(rv, 1), 0.9 + 0.1 * 700.0, 1e-4);
    /* column 0: mean 3, biased var 8/3 */
    cr_assert_float_eq(tensor_get(y, 0), -2.0 / sqrt(8.0 / 3 + 1e-5), 1e-5);
    tensor_release(y);

    /* eval: the running statistics, and nothing updated */
    module_train(bn, false);
    y = module_forward(bn, x);
    cr_assert(y != NULL, "%s", error_get());
    cr_assert_float_eq(tensor_item(nbt), 1.0, 0);
    cr_assert_float_eq(tensor_get(rm, 0), 0.3, 1e-6);
    cr_assert_float_eq(tensor_get(y, 0), (1 - 0.3) / sqrt(1.3 + 1e-5), 1e-5);
    cr_assert_float_eq(tensor_get(y, 5), (60 - 3.0) / sqrt(70.9 + 1e-5), 1e-4);
    tensor_release(y);
    tensor_release(x);
    module_free(bn);
}

Test(nn_modes, batch_norm_momentum_none_is_a_cumulative_average) {
    Module *bn = nn_batch_norm1d(1, 1e-5, NAN, false, true);
    cr_assert(bn != NULL, "%s", error_get());
    cr_assert_eq(bn->n_params, 0);
    Tensor *a = tensor_from_string("[[1], [3]]", DTYPE_FLOAT32);
    Tensor *b = tensor_from_string("[[6], [10]]", DTYPE_FLOAT32);
    Tensor *ya = module_forward(bn, a), *yb = module_forward(bn, b);
    cr_assert(ya && yb, "%s", error_get());
    /* the mean of the batch means, 2 and 8 */
    cr_assert_float_eq(tensor_get(module_get(bn, "running_mean"), 0), 5.0, 1e-6);
    cr_assert_float_eq(tensor_item(module_get(bn, "num_batches_tracked")), 2.0, 0);
    tensor_release(a);
    tensor_release(b);
    tensor_release(ya);
    tensor_release(yb);
    module_free(bn);
}

/* The cumulative average's factor as a float64 tensor (momentum None,
 * computed where the count lives) updates the running statistics to the
 * same bits as the same factor given as a number. */
Test(nn_modes, batch_norm_momentum_tensor_matches_the_number) {
    Tensor *x = tensor_from_string("[[1, 0.3], [3, -2], [7.5, 1.1]]", DTYPE_FLOAT32);
    Tensor *rm[2], *rv[2];
    for (int k = 0; k < 2; k++) {
        rm[k] = tensor_from_string("[0.2, -0.7]", DTYPE_FLOAT32);
        rv[k] = tensor_from_string("[1.3, 0.9]", DTYPE_FLOAT32);
    }
    for (int n = 1; n <= 3; n++) { /* 1 / n: the factor at the n-th batch */
        Tensor *f = tensor_scalar(1.0 / n, DTYPE_FLOAT64, DEVICE_CPU_INIT);
        Tensor *a = tensor_batch_norm_sync(x, rm[0], rv[0], NULL, NULL, true, 1.0 / n, NULL, 1e-5,
                                           NULL);
        Tensor *b = tensor_batch_norm_sync(x, rm[1], rv[1], NULL, NULL, true, NAN, f, 1e-5, NULL);
        cr_assert(a && b, "%s", error_get());
        for (int c = 0; c < 2; c++) {
            cr_assert_eq(tensor_get(rm[1], c), tensor_get(rm[0], c), "batch %d mean %d", n, c);
            cr_assert_eq(tensor_get(rv[1], c), tensor_get(rv[0], c), "batch %d var %d", n, c);
        }
        tensor_release(f), tensor_release(a), tensor_release(b);
    }
    cr_assert(tensor_get(rm[0], 0) != 0.2f, "the statistics moved");
    tensor_release(x);
    for (int k = 0; k < 2; k++) tensor_release(rm[k]), tensor_release(rv[k]);
}

Test(nn_modes, batch_norm_without_running_stats_uses_batch_stats_in_eval) {
    Module *bn = nn_batch_norm1d(1, 1e-5, 0.1, true, false);
    cr_assert(bn != NULL, "%s", error_get());
    cr_assert_eq(bn->n_buffers, 0);
    module_train(bn, false);
    Tensor *x = tensor_from_string("[[1], [3]]", DTYPE_FLOAT32);
    Tensor *y = module_forward(bn, x);
    cr_assert(y != NULL, "%s", error_get());
    cr_assert_float_eq(tensor_get(y, 0), -1.0 / sqrt(1.0 + 1e-5), 1e-5);
    tensor_release(x);
    tensor_release(y);
    module_free(bn);
}

/* ---- default initialisation ---- */

static void check_kaiming(Module *m, int64_t fan_in) {
    double bound = 1.0 / sqrt((double)fan_in);
    Tensor *w = module_get(m, "weight"), *b = module_get(m, "bias");
    int64_t n = tensor_numel(w);
    double sum = 0, sq = 0, lo = 1, hi = -1;
    for (int64_t i = 0; i < n; i++) {
        double v = tensor_get(w, i);
        cr_assert(v >= -bound && v <= bound, "weight[%lld] = %g outside +-%g", (long long)i, v,
                  bound);
        sum += v;
        sq += v * v;
        lo = fmin(lo, v);
        hi = fmax(hi, v);
    }
    double mean = sum / n, std = sqrt(sq / n - mean * mean);
    /* uniform(-b, b): mean 0, std b/sqrt(3); tolerances ~5 standard errors */
    cr_assert(fabs(mean) < 5 * bound / sqrt(3.0 * n), "mean %g (bound %g, n %lld)", mean, bound,
              (long long)n);
    cr_assert(fabs(std / (bound / sqrt(3.0)) - 1) < 0.05, "std %g, expected %g", std,
              bound / sqrt(3.0));
    cr_assert(lo < -0.9 * bound && hi > 0.9 * bound, "range [%g, %g] of +-%g", lo, hi, bound);
    for (int64_t i = 0; i < tensor_numel(b); i++) {
        double v = tensor_get(b, i);
        cr_assert(v >= -bound && v <= bound, "bias[%lld] = %g outside +-%g", (long long)i, v,
                  bound);
    }
}

Test(nn_init, kaiming_uniform_bounds_and_statistics) {
    Rng rng;
    rng_init(&rng, 7);
    Module *lin = nn_linear(784, 256, true, &rng);
    Module *conv = nn_conv2d(3, 16, SIZE2D(5), SIZE2D(1), SIZE2D(0), true, &rng);
    cr_assert(lin && conv, "%s", error_get());
    check_kaiming(lin, 784);
    check_kaiming(conv, 3 * 5 * 5);
    cr_assert_eq(nn_init_fan_in(module_get(conv, "weight")), 75);
    cr_assert(module_get(lin, "weight")->requires_grad);
    cr_assert_eq(module_get(lin, "weight")->dtype, DTYPE_FLOAT32);
    module_free(lin);
    module_free(conv);
}

Test(nn_init, same_seed_same_weights) {
    Rng a, b, c;
    rng_init(&a, 3);
    rng_init(&b, 3);
    rng_init(&c, 4);
    Module *ma = build_seed_cnn(&a, 6272), *mb = build_seed_cnn(&b, 6272);
    Module *mc = build_seed_cnn(&c, 6272);
    cr_assert_eq(a.offset, b.offset);
    cr_assert(a.offset > 0);
    TensorDict da, db, dc;
    tensor_dict_init(&da);
    tensor_dict_init(&db);
    tensor_dict_init(&dc);
    module_state_dict(ma, &da);
    module_state_dict(mb, &db);
    module_state_dict(mc, &dc);
    int differ = 0;
    for (int i = 0; i < da.count; i++)
        for (int64_t j = 0; j < tensor_numel(da.tensors[i]); j++) {
            cr_assert_eq(tensor_get(da.tensors[i], j), tensor_get(db.tensors[i], j), "%s[%lld]",
                         da.names[i], (long long)j);
            differ += tensor_get(da.tensors[i], j) != tensor_get(dc.tensors[i], j);
        }
    cr_assert(differ > 60000, "only %d of 63050 values differ across seeds", differ);
    cr_assert_eq(module_num_parameters(ma), 32 * 9 + 32 + 6272 * 10 + 10);
    tensor_dict_free(&da);
    tensor_dict_free(&db);
    tensor_dict_free(&dc);
    module_free(ma);
    module_free(mb);
    module_free(mc);
}

/* Large tensors are drawn on all threads: still the numbers one Rng
 * gives in turn, in row-major order, and the Rng left where it would be. */
Test(nn_init, drawn_on_all_threads_as_in_turn) {
    const int64_t n = 200003;
    Tensor *t = tensor_empty(SHAPE(n), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    for (int normal = 0; normal < 2; normal++) {
        Rng rng = {.seed = 5, .offset = 3}, ref = rng; /* an offset inside a Philox block */
        int rc = normal ? nn_init_normal_(t, 0.5, 2.0, &rng)
                        : nn_init_uniform_(t, -0.25, 0.75, &rng);
        cr_assert_eq(rc, 0, "%s", error_get());
        for (int64_t i = 0; i < n; i++) {
            double want =
                normal ? 0.5 + 2.0 * rng_normal(&ref) : rng_uniform_range(&ref, -0.25, 0.75);
            cr_assert_eq(tensor_get(t, i), want, "%s value %lld", normal ? "normal" : "uniform",
                         (long long)i);
        }
        cr_assert_eq(rng.offset, ref.offset);
    }
    tensor_release(t);
}

Test(nn_init, batch_norm_defaults) {
    Module *bn = nn_batch_norm2d(3, 1e-5, 0.1, true, true);
    cr_assert(bn != NULL);
    const char *names[] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    const double values[] = {1, 0, 0, 1, 0};
    for (int i = 0; i < 5; i++) {
        Tensor *t = module_get(bn, names[i]);
        cr_assert(t != NULL, "%s", names[i]);
        for (int64_t j = 0; j < tensor_numel(t); j++)
            cr_assert_float_eq(tensor_get(t, j), values[i], 0, "%s", names[i]);
    }
    cr_assert(module_get(bn, "weight")->requires_grad);
    cr_assert(!module_get(bn, "running_mean")->requires_grad);
    module_free(bn);
}

/* ---- constructor errors ---- */

#define EXPECT_FAIL(expr, msg)                                                        \
    do {                                                                              \
        error_clear();                                                                \
        Module *m_ = (expr);                                                          \
        cr_assert(m_ == NULL, "%s should fail", #expr);                               \
        cr_assert_str_eq(error_get(), msg);                                           \
    } while (0)

Test(nn_errors, constructors_reject_bad_arguments) {
    Rng rng;
    rng_init(&rng, 0);
    EXPECT_FAIL(nn_linear(0, 10, true, &rng), "Linear: in_features must be positive, got 0");
    EXPECT_FAIL(nn_linear(10, -1, true, &rng), "Linear: out_features must be positive, got -1");
    EXPECT_FAIL(nn_linear(10, 10, true, NULL), "Linear: no Rng to initialise the weights from");
    EXPECT_FAIL(nn_dropout(1.5), "Dropout: p must be in [0, 1], got 1.5");
    EXPECT_FAIL(nn_dropout(NAN), "Dropout: p must be in [0, 1], got nan");
    EXPECT_FAIL(nn_conv2d(1, 8, SIZE2D(0), SIZE2D(1), SIZE2D(0), true, &rng),
                "Conv2d: kernel_size must be positive, got (0, 0)");
    EXPECT_FAIL(nn_conv2d(1, 8, SIZE2D(3), (Size2d){1, 0}, SIZE2D(0), true, &rng),
                "Conv2d: stride must be positive, got (1, 0)");
    EXPECT_FAIL(nn_max_pool2d(SIZE2D(2), NONE, SIZE2D(2)),
                "MaxPool2d: padding (2, 2) must be at most half of kernel_size (2, 2)");
    EXPECT_FAIL(nn_avg_pool2d(SIZE2D(2), (Size2d){-1, 1}, SIZE2D(0)),
                "AvgPool2d: stride must be positive, got (-1, 1)");
    EXPECT_FAIL(nn_batch_norm2d(0, 1e-5, 0.1, true, true),
                "BatchNorm2d: num_features must be positive, got 0");
    EXPECT_FAIL(nn_batch_norm1d(4, 1e-5, 1.5, true, true),
                "BatchNorm1d: momentum must be in [0, 1] (or None), got 1.5");
    /* A failed child fails the Sequential with its own message, freeing
     * the others (LeakSanitizer checks). */
    Module *c[3];
    c[0] = nn_linear(4, 4, true, &rng);
    c[1] = nn_dropout(2);
    c[2] = nn_relu();
    cr_assert(nn_sequential(3, c) == NULL);
    cr_assert_str_eq(error_get(), "Dropout: p must be in [0, 1], got 2");
}

/* ---- load_state_dict ---- */

static TensorDict mlp_dict(Rng *rng, int64_t hidden) {
    Module *c[2];
    c[0] = nn_linear(784, hidden, true, rng);
    c[1] = nn_relu();
    Module *m = nn_sequential(2, c);
    cr_assert(m != NULL);
    TensorDict d;
    tensor_dict_init(&d);
    cr_assert(module_state_dict(m, &d) == 0);
    module_free(m); /* the dict keeps its tensors alive */
    return d;
}

Test(nn_load, errors_name_the_key_and_both_shapes) {
    Rng rng;
    rng_init(&rng, 0);
    Module *c[2];
    c[0] = nn_linear(784, 256, true, &rng);
    c[1] = nn_relu();
    Module *m = nn_sequential(2, c);
    double w0 = tensor_get(module_find(m, "0.weight"), 0);

    TensorDict wrong = mlp_dict(&rng, 10);
    cr_assert(module_load_state_dict(m, &wrong, true) == -1);
    cr_assert_str_eq(error_get(), "load_state_dict: '0.weight' has shape [10, 784] in the file "
                                  "but [256, 784] in the model");
    cr_assert(module_load_state_dict(m, &wrong, false) == -1, "a shape mismatch fails non-strict");
    cr_assert_eq(tensor_get(module_find(m, "0.weight"), 0), w0, "a failed load changes nothing");
    tensor_dict_free(&wrong);

    TensorDict good = mlp_dict(&rng, 256);
    Tensor *bias = tensor_retain(tensor_dict_get(&good, "0.bias"));
    /* missing key */
    TensorDict partial;
    tensor_dict_init(&partial);
    tensor_dict_set(&partial, "0.weight", tensor_dict_get(&good, "0.weight"));
    cr_assert(module_load_state_dict(m, &partial, true) == -1);
    cr_assert_str_eq(error_get(), "load_state_dict: missing key(s) '0.bias'");
    cr_assert_eq(tensor_get(module_find(m, "0.weight"), 0), w0);
    /* non-strict loads what is there */
    cr_assert(module_load_state_dict(m, &partial, false) == 0, "%s", error_get());
    cr_assert_eq(tensor_get(module_find(m, "0.weight"), 0),
                 tensor_get(tensor_dict_get(&good, "0.weight"), 0));
    /* unexpected keys, and both at once */
    tensor_dict_set(&good, "1.weight", bias);
    tensor_dict_set(&good, "classifier.bias", bias);
    cr_assert(module_load_state_dict(m, &good, true) == -1);
    cr_assert_str_eq(error_get(),
                     "load_state_dict: unexpected key(s) '1.weight', 'classifier.bias'");
    tensor_dict_set(&partial, "extra", bias);
    cr_assert(module_load_state_dict(m, &partial, true) == -1);
    cr_assert_str_eq(error_get(),
                     "load_state_dict: missing key(s) '0.bias'; unexpected key(s) 'extra'");
    cr_assert(module_load_state_dict(m, &good, false) == 0, "%s", error_get());

    tensor_release(bias);
    tensor_dict_free(&partial);
    tensor_dict_free(&good);
    module_free(m);
}

Test(nn_load, float64_file_into_float32_model) {
    Rng rng;
    rng_init(&rng, 0);
    Module *bn = nn_batch_norm1d(2, 1e-5, 0.1, true, true);
    TensorDict d;
    tensor_dict_init(&d);
    Tensor *w = tensor_from_string("[0.25, 0.5]", DTYPE_FLOAT64);
    Tensor *b = tensor_from_string("[1, 2]", DTYPE_FLOAT64);
    Tensor *rm = tensor_from_string("[3, 4]", DTYPE_FLOAT64);
    Tensor *rv = tensor_from_string("[5, 6]", DTYPE_FLOAT64);
    Tensor *n = tensor_scalar(9, DTYPE_INT64, DEVICE_CPU_INIT);
    tensor_dict_set(&d, "weight", w);
    tensor_dict_set(&d, "bias", b);
    tensor_dict_set(&d, "running_mean", rm);
    tensor_dict_set(&d, "running_var", rv);
    tensor_dict_set(&d, "num_batches_tracked", n);
    cr_assert(module_load_state_dict(bn, &d, true) == 0, "%s", error_get());
    cr_assert_eq(module_get(bn, "weight")->dtype, DTYPE_FLOAT32);
    cr_assert_float_eq(tensor_get(module_get(bn, "weight"), 1), 0.5, 0);
    cr_assert_float_eq(tensor_get(module_get(bn, "running_var"), 0), 5.0, 0);
    cr_assert_float_eq(tensor_item(module_get(bn, "num_batches_tracked")), 9.0, 0);
    /* a [1] tensor is not a 0-dim one */
    Tensor *n1 = tensor_from_string("[9]", DTYPE_INT64);
    tensor_dict_set(&d, "num_batches_tracked", n1);
    cr_assert(module_load_state_dict(bn, &d, true) == -1);
    cr_assert_str_eq(error_get(), "load_state_dict: 'num_batches_tracked' has shape [1] in the "
                                  "file but [] in the model");
    Tensor *all[] = {w, b, rm, rv, n, n1};
    for (int i = 0; i < 6; i++) tensor_release(all[i]);
    tensor_dict_free(&d);
    module_free(bn);
}

/* ---- shape inference and error paths ---- */

Test(nn_infer, seed_cnn_shapes_and_mismatch) {
    Rng rng;
    rng_init(&rng, 0);
    Module *m = build_seed_cnn(&rng, 6272);
    int ndim;
    int64_t out[TENSOR_MAX_DIMS];
    cr_assert(module_infer_shape(m, SHAPE(64, 1, 28, 28), &ndim, out) == 0, "%s", error_get());
    cr_assert_eq(ndim, 2);
    cr_assert_eq(out[0], 64);
    cr_assert_eq(out[1], 10);
    /* layer by layer */
    cr_assert(module_infer_shape(m->children[0], SHAPE(64, 1, 28, 28), &ndim, out) == 0);
    cr_assert(ndim == 4 && out[1] == 32 && out[2] == 28 && out[3] == 28);
    cr_assert(module_infer_shape(m->children[2], SHAPE(64, 32, 28, 28), &ndim, out) == 0);
    cr_assert(ndim == 4 && out[2] == 14 && out[3] == 14);
    cr_assert(module_infer_shape(m->children[3], SHAPE(64, 32, 14, 14), &ndim, out) == 0);
    cr_assert(ndim == 2 && out[1] == 6272);

    /* wrong input channels */
    cr_assert(module_infer_shape(m, SHAPE(64, 3, 28, 28), &ndim, out) == -1);
    cr_assert_str_eq(error_get(), "model[0] Conv2d: in_channels=1 but its input has 3 channels "
                                  "(input [64, 3, 28, 28])");
    module_free(m);

    m = build_seed_cnn(&rng, 1000);
    cr_assert(module_infer_shape(m, SHAPE(64, 1, 28, 28), &ndim, out) == -1);
    cr_assert_str_eq(error_get(),
                     "model[4] Linear: in_features=1000 but its input has 6272 features");
    /* forward reports the same, before running anything */
    Tensor *x = tensor_zeros(SHAPE(2, 1, 28, 28), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert(module_forward(m, x) == NULL);
    cr_assert_str_eq(error_get(),
                     "model[4] Linear: in_features=1000 but its input has 6272 features");
    tensor_release(x);
    module_free(m);

    /* a layer on its own has no path */
    Module *lin = nn_linear(1000, 10, true, &rng);
    cr_assert(module_infer_shape(lin, SHAPE(64, 6272), &ndim, out) == -1);
    cr_assert_str_eq(error_get(), "Linear: in_features=1000 but its input has 6272 features");
    module_free(lin);
}

Test(nn_infer, nested_paths_and_other_layers) {
    Rng rng;
    rng_init(&rng, 0);
    Module *inner[2];
    inner[0] = nn_linear(8, 4, true, &rng);
    inner[1] = nn_batch_norm1d(5, 1e-5, 0.1, true, true);
    Module *c[2];
    c[0] = nn_flatten(1, -1);
    c[1] = nn_sequential(2, inner);
    Module *m = nn_sequential(2, c);
    int ndim;
    int64_t out[TENSOR_MAX_DIMS];
    cr_assert(module_infer_shape(m, SHAPE(3, 2, 4), &ndim, out) == -1);
    cr_assert_str_eq(error_get(), "model[1][1] BatchNorm1d: num_features=5 but its input has 4 "
                                  "features (input [3, 4])");
    Tensor *x = tensor_zeros(SHAPE(3, 2, 5), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert(module_forward(m, x) == NULL);
    cr_assert_str_eq(error_get(),
                     "model[1][0] Linear: in_features=8 but its input has 10 features");
    tensor_release(x);
    module_free(m);

    Module *bn2 = nn_batch_norm2d(3, 1e-5, 0.1, true, true);
    cr_assert(module_infer_shape(bn2, SHAPE(3, 3), &ndim, out) == -1);
    cr_assert_str_eq(error_get(), "BatchNorm2d: expected a 4-d input [N, C, H, W], got [3, 3]");
    module_free(bn2);

    Module *pool = nn_avg_pool2d(SIZE2D(3), SIZE2D(2), SIZE2D(1));
    cr_assert(module_infer_shape(pool, SHAPE(1, 2, 7, 6), &ndim, out) == 0);
    cr_assert(out[2] == 4 && out[3] == 3, "got %lld x %lld", (long long)out[2], (long long)out[3]);
    cr_assert(module_infer_shape(pool, SHAPE(1, 2, 1, 0), &ndim, out) == -1);
    module_free(pool);

    Module *sm = nn_softmax(2);
    cr_assert(module_infer_shape(sm, SHAPE(4, 3), &ndim, out) == -1);
    cr_assert_str_eq(error_get(), "Softmax: dim=2 is out of range for a 2-d input");
    module_free(sm);

    Module *fl = nn_flatten(0, 1);
    cr_assert(module_infer_shape(fl, SHAPE(2, 3, 4), &ndim, out) == 0);
    cr_assert(ndim == 2 && out[0] == 6 && out[1] == 4);
    module_free(fl);
}

Test(nn_infer, forward_errors_from_ops_carry_the_path) {
    Rng rng;
    rng_init(&rng, 0);
    Module *c[1];
    c[0] = nn_linear(3, 2, true, &rng);
    Module *m = nn_sequential(1, c);
    Tensor *x = tensor_zeros(SHAPE(2, 3), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cr_assert(module_forward(m, x) == NULL);
    cr_assert(strncmp(error_get(), "model[0] Linear: ", 17) == 0, "%s", error_get());
    tensor_release(x);
    module_free(m);
}

/* ---- moves ---- */

static Tensor *model_fn(Tensor **inputs, void *ctx) { return module_forward(ctx, inputs[0]); }

Test(nn_to, float64_model_passes_gradcheck) {
    Rng rng;
    rng_init(&rng, 5);
    Module *m = build_cnn(&rng);
    Tensor *w_before = module_find(m, "0.weight");
    double v = tensor_get(w_before, 3);
    cr_assert(module_to(m, DEVICE_CPU_INIT) == 0, "%s", error_get());
    cr_assert(module_find(m, "0.weight") == w_before, "to(cpu) on the CPU is a no-op");
    cr_assert(module_to_dtype(m, DTYPE_INT64) == -1);
    cr_assert_str_eq(error_get(), "module_to_dtype: expected a float dtype, got int64");
    cr_assert(module_to_dtype(m, DTYPE_FLOAT64) == 0, "%s", error_get());
    Tensor *w = module_find(m, "0.weight");
    cr_assert_eq(w->dtype, DTYPE_FLOAT64);
    cr_assert(w->requires_grad && w->grad_fn == NULL);
    cr_assert_float_eq(tensor_get(w, 3), v, 0);
    cr_assert_eq(module_find(m, "1.running_var")->dtype, DTYPE_FLOAT64);
    cr_assert_eq(module_find(m, "1.num_batches_tracked")->dtype, DTYPE_INT64);

    int n;
    Tensor **params = module_parameters(m, &n);
    cr_assert_eq(n, 6);
    Tensor *inputs[7];
    inputs[0] = gradcheck_input(SHAPE(2, 2, 6, 6), -1, 1, 11);
    for (int i = 0; i < n; i++) inputs[i + 1] = params[i];
    gradcheck("cnn train", model_fn, m, n + 1, inputs);
    module_train(m, false);
    gradcheck("cnn eval", model_fn, m, n + 1, inputs);
    free(params);
    tensor_release(inputs[0]);
    module_free(m);
}

/* ---- named children and tied weights ---- */

/* Sequential(OrderedDict(wte=Linear(3, 4), body=Sequential(ReLU,
 * Linear(4, 4)), tied=Linear(4, 4))): children named as attributes, as a
 * ResNet block's or GPT's are, with tied.weight the same tensor as
 * body.1.weight, as GPT's lm_head.weight is transformer.wte.weight. */
static Module *build_chain(Rng *rng) {
    Module *m = nn_sequential(0, NULL);
    cr_assert(m);
    cr_assert(module_add_child(m, "wte", nn_linear(3, 4, false, rng)) == 0);
    Module *body[2];
    body[0] = nn_relu();
    body[1] = nn_linear(4, 4, true, rng);
    cr_assert(module_add_child(m, "body", nn_sequential(2, body)) == 0);
    Module *tied = nn_linear(4, 4, false, rng);
    cr_assert(tied);
    /* Replace its own weight with body[1]'s: one tensor in two modules. */
    tensor_release(tied->params[0].tensor);
    tied->params[0].tensor = tensor_retain(module_find(m, "body.1.weight"));
    cr_assert(module_add_child(m, "tied", tied) == 0);
    return m;
}

Test(nn_named, state_dict_paths_and_tied_weights) {
    Rng rng;
    rng_init(&rng, 3);
    Module *m = build_chain(&rng);
    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert(module_state_dict(m, &sd) == 0, "%s", error_get());
    const char *names[] = {"wte.weight", "body.1.weight", "body.1.bias", "tied.weight"};
    cr_assert_eq(sd.count, 4);
    for (int i = 0; i < 4; i++) cr_assert_str_eq(sd.names[i], names[i]);
    tensor_dict_free(&sd);

    /* Parameters count the tied tensor once, as torch's parameters(). */
    int n = 0;
    Tensor **p = module_parameters(m, &n);
    cr_assert_eq(n, 3);
    free(p);
    cr_assert_eq(module_num_parameters(m), 12 + 16 + 4);

    /* A move keeps the two slots one tensor. */
    cr_assert(module_to_dtype(m, DTYPE_FLOAT64) == 0, "%s", error_get());
    Tensor *a = module_find(m, "body.1.weight"), *b = module_find(m, "tied.weight");
    cr_assert_eq(a->dtype, DTYPE_FLOAT64);
    cr_assert(a == b, "the tie survives module_to_dtype");

    /* Errors carry the named path. */
    Tensor *x = tensor_zeros(SHAPE(2, 5), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cr_assert_null(module_forward(m, x));
    cr_assert_str_eq(error_get(),
                     "model.wte Linear: in_features=3 but its input has 5 features");
    char path[64];
    cr_assert_str_eq(module_path(m->children[1]->children[1], path, sizeof path),
                     "model.body[1]");
    tensor_release(x);
    module_free(m);
}

Test(nn_named, a_failed_child_is_freed_and_its_error_kept) {
    Module *m = nn_sequential(0, NULL);
    cr_assert(m);
    cr_assert(module_add_child(m, "bad", nn_linear(0, 4, true, NULL)) == -1);
    cr_assert(strstr(error_get(), "Linear") != NULL, "%s", error_get());
    cr_assert(module_add_child(m, "a_name_longer_than_thirty_one_chars", nn_relu()) == -1);
    cr_assert_str_eq(error_get(),
                     "Sequential: child name 'a_name_longer_than_thirty_one_chars' too long");
    cr_assert_eq(m->n_children, 0);
    module_free(m);
}
