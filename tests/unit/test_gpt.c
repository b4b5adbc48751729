/* test_gpt.c - the GPT arch and the Embedding it is built from.
 *
 * Embedding: lookups, the scatter-added gradient (float64 finite
 * differences, repeated indices), range and dtype errors, the layer in a
 * job spec's list. GPT: parity with nanoGPT's model.py as
 * tests/fixtures/gen_gpt.py writes it (state_dict names, logits, loss,
 * every gradient, 5 AdamW steps and the final weights, with and without
 * biases), the tied weight, nanoGPT's init, the "gpt" arch in a job spec
 * (config errors, sizes, the loss over [B, T, V] logits and [B, T]
 * targets), and forward errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "core/optim/optimizer.h"
#include "core/spec.h"
#include "core/train.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tmp_dir.h"

static Tensor *ids(int ndim, const int64_t *shape, const double *values) {
    Tensor *t = tensor_from_doubles(values, ndim, shape, DTYPE_INT64);
    cr_assert(t, "%s", error_get());
    return t;
}

/* ---- Embedding ---- */

/* mean and standard deviation of t's values */
static void moments(const Tensor *t, double *mean, double *sd) {
    double s = 0, q = 0;
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) s += tensor_get(t, i), q += tensor_get(t, i) * tensor_get(t, i);
    *mean = s / n;
    *sd = sqrt(q / n - *mean * *mean);
}


Test(embedding, picks_rows) {
    Tensor *w = gradcheck_input(SHAPE(5, 3), -1, 1, 1);
    Tensor *idx = ids(SHAPE(2, 2), (const double[]){4, 0, 4, 2});
    Tensor *out = tensor_embedding(w, idx);
    cr_assert(out, "%s", error_get());
    cr_assert_eq(out->ndim, 3);
    cr_assert(out->shape[0] == 2 && out->shape[1] == 2 && out->shape[2] == 3);
    const int rows[4] = {4, 0, 4, 2};
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 3; c++)
            cr_assert_eq(tensor_get(out, i * 3 + c), tensor_get(w, rows[i] * 3 + c));
    tensor_release(w), tensor_release(idx), tensor_release(out);
}

static Tensor *embedding_fn(Tensor **in, void *ctx) { return tensor_embedding(in[0], ctx); }

Test(embedding, gradcheck_float64_repeated_indices) {
    Tensor *w = gradcheck_input(SHAPE(6, 4), -1, 1, 2);
    Tensor *i1 = ids(SHAPE(7), (const double[]){1, 3, 1, 5, 0, 1, 3});
    gradcheck("embedding [6, 4] by [7]", embedding_fn, i1, 1, &w);
    Tensor *i2 = ids(SHAPE(2, 3), (const double[]){5, 5, 5, 2, 0, 2});
    gradcheck("embedding [6, 4] by [2, 3]", embedding_fn, i2, 1, &w);
    /* the gradient of sum(out): each row counts its uses, unused rows 0 */
    tensor_zero_grad(w);
    Tensor *out = tensor_embedding(w, i1), *s = tensor_sum(out);
    cr_assert_eq(tensor_backward(s), 0, "%s", error_get());
    const double uses[6] = {1, 3, 0, 2, 0, 1};
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 4; c++) cr_assert_eq(tensor_get(w->grad, r * 4 + c), uses[r]);
    tensor_release(w), tensor_release(i1), tensor_release(i2), tensor_release(out),
        tensor_release(s);
}

Test(embedding, errors) {
    Tensor *w = tensor_zeros(SHAPE(5, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *neg = ids(SHAPE(3), (const double[]){0, -1, 2});
    Tensor *big = ids(SHAPE(2, 2), (const double[]){0, 1, 2, 5});
    Tensor *fl = tensor_zeros(SHAPE(2), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_embedding(w, neg),
                         "embedding: index -1 at position 1 is out of range for "
                         "num_embeddings 5");
    fixture_expect_error(tensor_embedding(w, big),
                         "embedding: index 5 at position 3 is out of range for num_embeddings 5");
    fixture_expect_error(tensor_embedding(w, fl), "embedding: indices must be int64, got float32");
    fixture_expect_error(tensor_embedding(fl, neg),
                         "embedding: weight must be [num_embeddings, embedding_dim], got [2]");
    Rng rng;
    rng_init(&rng, 1);
    Module *m = nn_embedding(0, 3, &rng);
    cr_assert_null(m);
    cr_assert(strstr(error_get(), "Embedding: num_embeddings and embedding_dim must be positive"));
    /* through the module: the error names it */
    m = nn_embedding(5, 3, &rng);
    Tensor *out = module_forward(m, big);
    cr_assert_null(out);
    cr_assert(strstr(error_get(), "Embedding: embedding: index 5 at position 3"), "%s",
              error_get());
    module_free(m);
    tensor_release(w), tensor_release(neg), tensor_release(big), tensor_release(fl);
}

/* torch's reset_parameters(): normal(0, 1) */
Test(embedding, init_normal) {
    Rng rng;
    rng_init(&rng, 3);
    Module *m = nn_embedding(200, 50, &rng);
    cr_assert(m, "%s", error_get());
    Tensor *w = module_get(m, "weight");
    double mean, sd;
    moments(w, &mean, &sd);
    cr_assert(fabs(mean) < 0.03 && fabs(sd - 1) < 0.03, "mean %g std %g", mean, sd);
    cr_assert(w->requires_grad);
    module_free(m);
}

static const char *TOKEN_SPEC_TAIL =
    "\"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"AdamW\", \"lr\": "
    "0.001}, \"epochs\": 1, \"batch_size\": 4}";

static JobSpec *token_spec(const char *model_json) {
    char text[2048];
    snprintf(text, sizeof text, "{\"data\": {\"train\": \"t\"}, \"model\": %s, %s", model_json,
             TOKEN_SPEC_TAIL);
    return job_spec_parse(text, strlen(text));
}

/* token data: int64 inputs [T] and int64 targets [T] per sample */
static SpecDataShape token_data(int64_t t, DType input) {
    SpecDataShape d = {.input_dtype = input, .input_ndim = 1, .target_dtype = DTYPE_INT64,
                       .target_ndim = 1};
    d.input_shape[0] = t;
    d.target_shape[0] = t;
    return d;
}

Test(embedding, layer_in_a_job_spec) {
    JobSpec *spec = token_spec("[{\"type\": \"Embedding\", \"num_embeddings\": 30, "
                               "\"embedding_dim\": 8}, {\"type\": \"Linear\", \"in_features\": 8, "
                               "\"out_features\": 30}]");
    cr_assert(spec, "%s", error_get());
    SpecDataShape d = token_data(12, DTYPE_INT64);
    SpecModelSize size;
    cr_assert_eq(job_spec_check_shapes(spec, &d, &size), 0, "%s", error_get());
    cr_assert_eq(size.out_ndim, 3);
    cr_assert(size.out_shape[0] == 4 && size.out_shape[1] == 12 && size.out_shape[2] == 30);
    cr_assert_eq(size.parameters, 30 * 8 + 8 * 30 + 30);
    Rng rng;
    rng_init(&rng, 1);
    Module *m = job_spec_build_model(spec, &rng);
    cr_assert(m, "%s", error_get());
    cr_assert_str_eq(module_type(m->children[0]), "Embedding");
    module_free(m);
    /* float data cannot feed it */
    d = token_data(12, DTYPE_FLOAT32);
    cr_assert_neq(job_spec_check_shapes(spec, &d, NULL), 0);
    cr_assert(strstr(error_get(), "model[0] Embedding: takes int64 indices, but its input is "
                                  "float32"),
              "%s", error_get());
    job_spec_free(spec);
    /* nor a layer's output */
    spec = token_spec("[{\"type\": \"Embedding\", \"num_embeddings\": 30, \"embedding_dim\": 8},"
                      " {\"type\": \"Embedding\", \"num_embeddings\": 30, \"embedding_dim\": 8}]");
    d = token_data(12, DTYPE_INT64);
    cr_assert_neq(job_spec_check_shapes(spec, &d, NULL), 0);
    cr_assert(strstr(error_get(), "model[1] Embedding: takes int64 indices, but its input is "
                                  "float32 (an Embedding can only be the first layer)"),
              "%s", error_get());
    job_spec_free(spec);
    /* a label per token needs scores per position: [N, C] is refused
     * here, not at the first batch's loss */
    spec = token_spec("[{\"type\": \"Embedding\", \"num_embeddings\": 30, \"embedding_dim\": 4},"
                      " {\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"in_features\": 48, "
                      "\"out_features\": 30}]");
    cr_assert(spec, "%s", error_get());
    cr_assert_neq(job_spec_check_shapes(spec, &d, NULL), 0);
    cr_assert_str_eq(error_get(), "loss: CrossEntropyLoss needs the model's output to be "
                                  "[N, T, C] (class scores at each position) for targets [T], "
                                  "got [4, 30]");
    job_spec_free(spec);
    spec = token_spec("[{\"type\": \"Embedding\", \"num_embeddings\": 30, \"embedding_dim\": 8, "
                      "\"padding_idx\": 0}]");
    cr_assert_null(spec);
    cr_assert(strstr(error_get(), "model[0].padding_idx: only torch's default null is supported"),
              "%s", error_get());
}

/* ---- GPT: parity with nanoGPT ---- */

static const char *GPT_BIAS = "{\"arch\": \"gpt\", \"vocab_size\": 65, \"block_size\": 16, "
                              "\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 16}";
static const char *GPT_NOBIAS = "{\"arch\": \"gpt\", \"vocab_size\": 65, \"block_size\": 16, "
                                "\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 16, \"dropout\": 0, "
                                "\"bias\": false}";

static Module *gpt_from_spec(const char *model_json, JobSpec **spec_out) {
    JobSpec *spec = token_spec(model_json);
    cr_assert(spec, "%s", error_get());
    Rng rng;
    rng_init(&rng, 7);
    Module *m = job_spec_build_model(spec, &rng);
    cr_assert(m, "%s", error_get());
    *spec_out = spec;
    return m;
}

/* The fixture's weights (lm_head.weight is transformer.wte.weight there
 * too), loaded strictly. */
static void load_weights(Module *m, json_t *kase, const char *prefix) {
    TensorDict sd;
    tensor_dict_init(&sd);
    const char *key;
    json_t *value;
    size_t n = strlen(prefix);
    json_object_foreach(kase, key, value) {
        if (strncmp(key, prefix, n) != 0) continue;
        Tensor *t = fixture_tensor(kase, key);
        cr_assert_eq(tensor_dict_set(&sd, key + n, t), 0);
        if (strcmp(key + n, "transformer.wte.weight") == 0)
            cr_assert_eq(tensor_dict_set(&sd, "lm_head.weight", t), 0);
        tensor_release(t);
    }
    cr_assert_eq(module_load_state_dict(m, &sd, true), 0, "%s", error_get());
    tensor_dict_free(&sd);
}

static Tensor *batch_loss(Module *m, JobSpec *spec, Tensor *x, Tensor *y, Tensor **logits) {
    Tensor *out = module_forward(m, x);
    cr_assert(out, "%s", error_get());
    Tensor *loss = job_spec_loss(spec, out, y);
    cr_assert(loss, "%s", error_get());
    if (logits)
        *logits = out;
    else
        tensor_release(out);
    return loss;
}

#define RTOL 1e-4
#define ATOL 1e-6

static void check_parity(const char *name, const char *model_json) {
    json_t *fx = fixture_load("gpt");
    json_t *kase = fixture_case(fx, name);
    JobSpec *spec;
    Module *m = gpt_from_spec(model_json, &spec);
    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert_eq(module_state_dict(m, &sd), 0, "%s", error_get());
    fixture_assert_state_dict(&sd, kase);
    tensor_dict_free(&sd);
    load_weights(m, kase, "sd.");

    Tensor *x = fixture_tensor(kase, "x"), *y = fixture_tensor(kase, "y"), *logits;
    Tensor *loss = batch_loss(m, spec, x, y, &logits);
    fixture_assert_close(kase, "logits", logits, RTOL, ATOL, name);
    double want = fixture_number(kase, "loss");
    cr_assert(fabs(tensor_item(loss) - want) <= RTOL * want, "%s: loss %.9g, torch %.9g", name,
              tensor_item(loss), want);
    cr_assert_eq(tensor_backward(loss), 0, "%s", error_get());
    const char *key;
    json_t *value;
    int grads = 0;
    json_object_foreach(kase, key, value) {
        if (strncmp(key, "grad.", 5) != 0) continue;
        Tensor *p = module_find(m, key + 5);
        cr_assert(p && p->grad, "%s: no gradient for %s", name, key + 5);
        fixture_assert_close(kase, key, p->grad, RTOL, ATOL, name);
        grads++;
    }
    int n;
    Tensor **params = module_parameters(m, &n);
    cr_assert_eq(n, grads, "%s: %d parameters, torch has %d", name, n, grads);
    tensor_release(logits), tensor_release(loss);

    /* 5 AdamW steps on the batch, as the fixture's loop */
    AdamOptions o = adamw_options_default();
    o.lr = 1e-3, o.betas[0] = 0.9, o.betas[1] = 0.95, o.eps = 1e-8, o.weight_decay = 0.1;
    Optimizer *opt = adamw_new(params, n, o);
    free(params);
    cr_assert(opt, "%s", error_get());
    Tensor *losses = fixture_tensor(kase, "losses");
    for (int step = 0; step < 5; step++) {
        optimizer_zero_grad(opt);
        Tensor *l = batch_loss(m, spec, x, y, NULL);
        double got = tensor_item(l), exp = tensor_get(losses, step);
        cr_assert(fabs(got - exp) <= RTOL * exp, "%s step %d: loss %.9g, torch %.9g", name, step,
                  got, exp);
        cr_assert_eq(tensor_backward(l), 0, "%s", error_get());
        cr_assert_eq(optimizer_step(opt), 0, "%s", error_get());
        tensor_release(l);
    }
    /* The key third of c_attn's bias shifts a query's scores all alike, so
     * softmax cancels it: its gradient is 0 but for rounding (1e-11 here, in
     * torch as in traind), and Adam turns that noise into steps of about
     * lr * g / eps. Its final values (1e-6) are noise on both sides. */
    json_object_foreach(kase, key, value) {
        if (strncmp(key, "final.", 6) != 0) continue;
        double atol = strstr(key, "attn.c_attn.bias") ? 1e-5 : ATOL;
        fixture_assert_close(kase, key, module_find(m, key + 6), RTOL, atol, name);
    }
    optimizer_free(opt);
    tensor_release(losses), tensor_release(x), tensor_release(y);
    module_free(m);
    job_spec_free(spec);
    json_decref(fx);
}

Test(gpt_torch, bias_logits_loss_gradients_adamw_steps) { check_parity("bias", GPT_BIAS); }

Test(gpt_torch, nobias_shorter_sequence) { check_parity("nobias", GPT_NOBIAS); }

/* ---- GPT: the module ---- */

static Module *small_gpt(bool bias) {
    Rng rng;
    rng_init(&rng, 5);
    Module *m = nn_gpt(65, 16, 4, 2, 32, 0, bias, &rng);
    cr_assert(m, "%s", error_get());
    return m;
}

Test(gpt, tied_weight_counted_once) {
    Module *m = small_gpt(true);
    Tensor *wte = module_find(m, "transformer.wte.weight");
    cr_assert(wte && wte == module_find(m, "lm_head.weight"));
    cr_assert_null(module_find(m, "lm_head.bias"));
    /* nanoGPT's count, with the tied weight once */
    int64_t c = 32, layer = 2 * 2 * c + 12 * c * c + 9 * c;
    cr_assert_eq(module_num_parameters(m), 65 * c + 16 * c + 4 * layer + 2 * c);
    /* a move keeps the tie */
    cr_assert_eq(module_to_dtype(m, DTYPE_FLOAT64), 0, "%s", error_get());
    cr_assert(module_find(m, "transformer.wte.weight") == module_find(m, "lm_head.weight"));
    module_free(m);
}

/* normal(0, 0.02) for Linear and Embedding weights, c_proj 0.02 /
 * sqrt(2 n_layer) (n_layer 4: 0.0070711), biases 0, LayerNorm weight 1 */
Test(gpt, nanogpt_init) {
    Module *m = small_gpt(true);
    const struct {
        const char *name;
        double sd;
    } w[] = {{"transformer.wte.weight", 0.02},
             {"transformer.wpe.weight", 0.02},
             {"transformer.h.0.attn.c_attn.weight", 0.02},
             {"transformer.h.1.mlp.c_fc.weight", 0.02},
             {"transformer.h.2.attn.c_proj.weight", 0.02 / sqrt(8)},
             {"transformer.h.3.mlp.c_proj.weight", 0.02 / sqrt(8)}};
    for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
        double mean, sd;
        Tensor *t = module_find(m, w[i].name);
        cr_assert(t, "%s", w[i].name);
        moments(t, &mean, &sd);
        cr_assert(fabs(mean) < 0.15 * w[i].sd && fabs(sd / w[i].sd - 1) < 0.1,
                  "%s: mean %g std %g, want std %g", w[i].name, mean, sd, w[i].sd);
    }
    const char *zero[] = {"transformer.h.0.attn.c_attn.bias", "transformer.h.3.mlp.c_proj.bias",
                          "transformer.ln_f.bias"};
    for (size_t i = 0; i < 3; i++) {
        Tensor *t = module_find(m, zero[i]);
        for (int64_t k = 0; k < tensor_numel(t); k++) cr_assert_eq(tensor_get(t, k), 0.0);
    }
    Tensor *ln = module_find(m, "transformer.h.1.ln_2.weight");
    for (int64_t k = 0; k < tensor_numel(ln); k++) cr_assert_eq(tensor_get(ln, k), 1.0);
    module_free(m);
}

/* dropout 0.2 as nanoGPT's: in training the embeddings' sum, every
 * attention's probabilities and both residual branches draw masks from the
 * model's stream (B T C + n_layer (B H T T + 2 B T C) numbers a forward);
 * in eval nothing is dropped and the stream is not used. */
Test(gpt, dropout_in_training_only) {
    Rng rng, stream;
    rng_init(&rng, 5);
    rng_init(&stream, 8);
    Module *m = nn_gpt(65, 16, 3, 2, 32, 0.2, true, &rng);
    cr_assert(m, "%s", error_get());
    double xv[2 * 10];
    for (int i = 0; i < 20; i++) xv[i] = (i * 13) % 65;
    Tensor *x = ids(SHAPE(2, 10), xv);
    fixture_expect_error(module_forward(m, x), "no Rng to draw");
    module_set_rng(m, &stream);
    module_train(m, false);
    Tensor *e1 = module_forward(m, x), *e2 = module_forward(m, x);
    cr_assert(e1 && e2, "%s", error_get());
    assert_tensor_close(e1, e2, 0, 0, "eval forwards");
    cr_assert_eq(stream.offset, 0);
    module_train(m, true);
    Tensor *t1 = module_forward(m, x);
    cr_assert(t1, "%s", error_get());
    int64_t btc = 2 * 10 * 32, bhtt = 2 * 2 * 10 * 10;
    cr_assert_eq(stream.offset, (uint64_t)(btc + 3 * (bhtt + 2 * btc)));
    Tensor *t2 = module_forward(m, x);
    bool differs = false;
    for (int64_t i = 0; i < tensor_numel(t1); i++)
        differs |= tensor_get(t1, i) != tensor_get(t2, i) || tensor_get(t1, i) != tensor_get(e1, i);
    cr_assert(differs, "dropout changed nothing");
    Tensor *s = tensor_sum(t2);
    cr_assert_eq(tensor_backward(s), 0, "%s", error_get());
    tensor_release(x), tensor_release(e1), tensor_release(e2), tensor_release(t1),
        tensor_release(t2), tensor_release(s);
    module_free(m);
}

Test(gpt, forward_errors) {
    Module *m = small_gpt(false);
    double v[17] = {0};
    Tensor *longer = ids(SHAPE(1, 17), v);
    fixture_expect_error(module_forward(m, longer),
                         "GPT: sequence length T=17 exceeds block_size 16");
    Tensor *flat = ids(SHAPE(4), v);
    fixture_expect_error(module_forward(m, flat), "GPT: expected token ids [B, T], got [4]");
    Tensor *fl = tensor_zeros(SHAPE(1, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    fixture_expect_error(module_forward(m, fl), "GPT: expected int64 token ids, got float32");
    v[2] = 65;
    Tensor *oov = ids(SHAPE(1, 4), v);
    fixture_expect_error(module_forward(m, oov),
                         "model.transformer.wte Embedding: embedding: index 65 at position 2 is "
                         "out of range for num_embeddings 65");
    tensor_release(longer), tensor_release(flat), tensor_release(fl), tensor_release(oov);
    module_free(m);
}

/* ---- the "gpt" arch in a job spec ---- */

static void expect_spec_error(const char *model_json, const char *want) {
    JobSpec *spec = token_spec(model_json);
    cr_assert_null(spec, "accepted %s", model_json);
    cr_assert(strstr(error_get(), want), "got '%s', want '%s'", error_get(), want);
}

Test(gpt_spec, config_errors) {
    expect_spec_error("{\"arch\": \"gpt\", \"vocab_size\": 65, \"block_size\": 16, \"n_layer\": 2, "
                      "\"n_head\": 3, \"n_embd\": 16}",
                      "model.n_embd: n_embd 16 must be a multiple of n_head 3");
    expect_spec_error("{\"arch\": \"gpt\", \"vocab_size\": 65, \"block_size\": 16, \"n_layer\": 2, "
                      "\"n_head\": 1, \"n_embd\": 256}",
                      "model.n_head: the head size n_embd / n_head = 256 / 1 = 256 is above 128");
    expect_spec_error("{\"arch\": \"gpt\", \"vocab_size\": 65, \"block_size\": 16, \"n_layer\": 2, "
                      "\"n_head\": 2}",
                      "model.n_embd: required");
    expect_spec_error("{\"arch\": \"gpt\", \"vocab_size\": 65, \"block_size\": 16, \"n_layer\": 2, "
                      "\"n_head\": 2, \"n_embd\": 16, \"dropout\": 1}",
                      "model.dropout: must be in [0, 1), got 1");
    expect_spec_error("{\"arch\": \"gpt\", \"vocab_size\": 65, \"block_size\": 16, \"n_layer\": 2, "
                      "\"n_head\": 2, \"n_embd\": 16, \"n_heads\": 2}",
                      "n_heads");
}

Test(gpt_spec, sizes_and_sequence_loss_shapes) {
    JobSpec *spec = token_spec(GPT_BIAS);
    cr_assert(spec, "%s", error_get());
    SpecDataShape d = token_data(16, DTYPE_INT64);
    SpecModelSize size;
    cr_assert_eq(job_spec_check_shapes(spec, &d, &size), 0, "%s", error_get());
    cr_assert_eq(size.out_ndim, 3);
    cr_assert(size.out_shape[0] == 4 && size.out_shape[1] == 16 && size.out_shape[2] == 65);
    Rng rng;
    rng_init(&rng, 1);
    Module *m = job_spec_build_model(spec, &rng);
    cr_assert(m);
    cr_assert_eq(size.parameters, module_num_parameters(m));
    cr_assert_eq(size.buffers, 0);
    cr_assert(size.activations > 4 * 16 * 65 && size.train_bytes > 4 * size.parameters);
    module_free(m);
    /* a window longer than the model's context */
    d = token_data(20, DTYPE_INT64);
    cr_assert_neq(job_spec_check_shapes(spec, &d, NULL), 0);
    cr_assert(strstr(error_get(), "GPT: sequence length T=20 exceeds block_size 16"), "%s",
              error_get());
    /* targets not per token */
    d = token_data(16, DTYPE_INT64);
    d.target_shape[0] = 15;
    cr_assert_neq(job_spec_check_shapes(spec, &d, NULL), 0);
    cr_assert(strstr(error_get(), "has 16 positions, but the targets have 15 per sample"), "%s",
              error_get());
    d = token_data(16, DTYPE_FLOAT32);
    cr_assert_neq(job_spec_check_shapes(spec, &d, NULL), 0);
    cr_assert(strstr(error_get(), "GPT needs int64 token ids as its input, got float32"), "%s",
              error_get());
    job_spec_free(spec);
}

/* job_spec_loss over [B, T, V] and [B, T] is the mean over all B*T tokens */
Test(gpt_spec, loss_flattens_tokens) {
    JobSpec *spec = token_spec(GPT_BIAS);
    cr_assert(spec);
    Tensor *logits = gradcheck_input(SHAPE(2, 3, 5), -2, 2, 9);
    Tensor *y = ids(SHAPE(2, 3), (const double[]){0, 4, 2, 1, 1, 3});
    Tensor *l = job_spec_loss(spec, logits, y);
    cr_assert(l, "%s", error_get());
    Tensor *l2 = tensor_reshape(logits, SHAPE(6, 5)), *y2 = tensor_reshape(y, SHAPE(6));
    Tensor *want = tensor_cross_entropy(l2, y2, REDUCTION_MEAN);
    cr_assert_float_eq(tensor_item(l), tensor_item(want), 1e-15);
    tensor_release(logits), tensor_release(y), tensor_release(l), tensor_release(l2),
        tensor_release(y2), tensor_release(want);
    job_spec_free(spec);
}

/* ---- a checkpoint for PyTorch ---- */

/* t's values as a JSON list, "%.9g" each (malloc'd). */
static char *json_list(const Tensor *t) {
    int64_t n = tensor_numel(t);
    size_t cap = (size_t)n * 20 + 3, len = 0;
    char *s = malloc(cap);
    cr_assert(s);
    len += (size_t)snprintf(s, cap, "[");
    for (int64_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%.9g", i ? "," : "", tensor_get(t, i));
    snprintf(s + len, cap - len, "]");
    return s;
}

/* A GPT after 3 AdamW steps, saved with the safetensors writer as the
 * trainer saves checkpoints, its config, a batch x and the logits for it in
 * the metadata (flat lists; x_shape gives x's): the script
 * tests/fixtures/check_gpt_in_torch.py loads it into nanoGPT's module with
 * strict=True and compares the logits. The file goes
 * to $TRAIND_GPT_CHECKPOINT when set (to run the script on it by hand),
 * else to a temporary directory. Here: it loads back (strictly) into a
 * fresh model, the tied weight one tensor again, and gives the same logits. */
Test(gpt, checkpoint_for_torch) {
    static const char *config = "{\"vocab_size\": 65, \"block_size\": 16, \"n_layer\": 2, "
                                "\"n_head\": 4, \"n_embd\": 32, \"dropout\": 0.0, "
                                "\"bias\": true}";
    Rng rng;
    rng_init(&rng, 11);
    Module *m = nn_gpt(65, 16, 2, 4, 32, 0, true, &rng);
    cr_assert(m, "%s", error_get());
    double xv[2 * 13], yv[2 * 13];
    for (int i = 0; i < 26; i++) xv[i] = (double)rng_below(&rng, 65), yv[i] = (i * 7) % 65;
    Tensor *x = ids(SHAPE(2, 13), xv), *y = ids(SHAPE(2, 13), yv);
    int n;
    Tensor **params = module_parameters(m, &n);
    Optimizer *opt = adamw_new(params, n, adamw_options_default());
    free(params);
    for (int step = 0; step < 3; step++) {
        optimizer_zero_grad(opt);
        Tensor *out = module_forward(m, x), *o2 = tensor_reshape(out, SHAPE(26, 65));
        Tensor *y2 = tensor_reshape(y, SHAPE(26));
        Tensor *l = tensor_cross_entropy(o2, y2, REDUCTION_MEAN);
        cr_assert(l && tensor_backward(l) == 0 && optimizer_step(opt) == 0, "%s", error_get());
        tensor_release(out), tensor_release(o2), tensor_release(y2), tensor_release(l);
    }
    optimizer_free(opt);
    bool prev = autograd_set_enabled(false);
    Tensor *logits = module_forward(m, x);
    cr_assert(logits, "%s", error_get());

    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert_eq(module_state_dict(m, &sd), 0, "%s", error_get());
    SafetensorsMeta meta;
    safetensors_meta_init(&meta);
    char *xs = json_list(x), *ls = json_list(logits);
    cr_assert(safetensors_meta_set(&meta, "config", config) == 0 &&
              safetensors_meta_set(&meta, "x", xs) == 0 &&
              safetensors_meta_set(&meta, "x_shape", "[2, 13]") == 0 &&
              safetensors_meta_set(&meta, "logits", ls) == 0);
    free(xs), free(ls);
    char dir[64], tmp[96];
    const char *path = getenv("TRAIND_GPT_CHECKPOINT");
    if (!path || !*path) {
        tmp_dir_make(dir, sizeof dir, "gpt");
        path = tmp_dir_path(dir, "gpt.safetensors", tmp, sizeof tmp);
    }
    cr_assert_eq(safetensors_save(path, &sd, &meta), 0, "%s", error_get());

    TensorDict back;
    tensor_dict_init(&back);
    cr_assert_eq(safetensors_load(path, &back, NULL), 0, "%s", error_get());
    cr_assert(tensor_dict_get(&back, "lm_head.weight") &&
              tensor_dict_get(&back, "transformer.wte.weight"));
    Rng other;
    rng_init(&other, 12);
    Module *fresh = nn_gpt(65, 16, 2, 4, 32, 0, true, &other);
    cr_assert_eq(module_load_state_dict(fresh, &back, true), 0, "%s", error_get());
    cr_assert(module_find(fresh, "lm_head.weight") == module_find(fresh, "transformer.wte.weight"));
    Tensor *again = module_forward(fresh, x);
    assert_tensor_close(again, logits, 0, 0, "logits of the reloaded model");
    autograd_set_enabled(prev);
    if (path == tmp) tmp_dir_remove(dir);
    safetensors_meta_free(&meta);
    tensor_dict_free(&sd), tensor_dict_free(&back);
    tensor_release(x), tensor_release(y), tensor_release(logits), tensor_release(again);
    module_free(m), module_free(fresh);
}

/* ---- the trainer on token data ---- */

typedef struct {
    double first_loss, last_loss, accuracy;
} TokenRun;

static void token_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    TokenRun *r = user;
    (void)epoch;
    if (strcmp(name, "loss") == 0) {
        if (step == 1) r->first_loss = value;
        r->last_loss = value;
    } else if (strcmp(name, "train_accuracy") == 0) {
        r->accuracy = value;
    }
}

/* A GPT learns a sequence that repeats with period 5 (windows of 8 token
 * ids, targets shifted by one) through train_run: the class loss and the
 * accuracy go over every token. The Dataset is filled by hand: the data
 * loaders take token data with issue 13's token datasets. */
Test(gpt, trains_on_tokens) {
    enum { N = 40, T = 8 };
    double xv[N * T], yv[N * T];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < T; j++) xv[i * T + j] = (i + j) % 5, yv[i * T + j] = (i + j + 1) % 5;
    Dataset ds = {.inputs = ids(SHAPE(N, T), xv), .targets = ids(SHAPE(N, T), yv), .n = N,
                  .num_classes = 5, .input = {DTYPE_INT64, 1, {T}},
                  .target = {DTYPE_INT64, 1, {T}}};
    DataLoaderOptions lo = {.batch_size = 10, .shuffle = true, .seed = 1};
    DataLoader *dl = dataloader_new(&ds, &lo, NULL);
    cr_assert(dl, "%s", error_get());
    Rng rng;
    rng_init(&rng, 2);
    Module *m = nn_gpt(5, T, 1, 2, 16, 0, true, &rng);
    int n;
    Tensor **params = module_parameters(m, &n);
    AdamOptions o = adamw_options_default();
    o.lr = 1e-2;
    Optimizer *opt = adamw_new(params, n, o);
    free(params);
    TokenRun run = {0};
    Trainer t;
    train_init(&t);
    t.model = m, t.opt = opt, t.train = dl, t.epochs = 15, t.accuracy = true;
    t.class_loss = tensor_cross_entropy_with;
    t.class_options = CLASS_LOSS_DEFAULTS;
    t.cb = (TrainCallbacks){.user = &run, .metric = token_metric};
    cr_assert_eq(train_run(&t), 0, "%s", error_get());
    cr_assert(run.first_loss > 1.3 && run.last_loss < 0.1, "loss %g -> %g", run.first_loss,
              run.last_loss);
    cr_assert_eq(run.accuracy, 1.0, "train accuracy %g", run.accuracy);
    optimizer_free(opt);
    dataloader_free(dl);
    module_free(m);
    tensor_release(ds.inputs), tensor_release(ds.targets);
}
