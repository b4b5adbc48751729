/* test_spec_shapes.c - core/spec_shapes.c and the spec's builders: shape
 * checks catch a model that does not fit its data (naming the layer and
 * both shapes), and the spec builds the model under torch's state_dict
 * names, its optimizer and its scheduler. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "tests/support/spec_examples.h"

/* ---- shapes ---- */

Test(spec, linear_mismatch_names_layer_and_shapes) {
    char *t = spec_example_variant(spec_example_design, "model",
                      "[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 32, "
                                   "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"ReLU\"},"
                      " {\"type\": \"MaxPool2d\", \"kernel_size\": 2}, {\"type\": \"Flatten\"},"
                      " {\"type\": \"Linear\", \"in_features\": 1000, \"out_features\": 10}]");
    JobSpec *s = spec_example_parse(t); /* the spec alone is fine; the data decides */
    free(t);
    SpecDataShape d = spec_example_mnist();
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_get(),
                     "model[4] Linear: in_features=1000 but its input has 6272 features");

    /* the same through a loaded dataset */
    int64_t n = 3;
    Tensor *x = tensor_zeros(SHAPE(3, 28, 28), DTYPE_UINT8, DEVICE_CPU_INIT);
    Tensor *y = tensor_zeros(1, &n, DTYPE_INT64, DEVICE_CPU_INIT);
    Dataset *ds = dataset_from_tensors(x, y, "test");
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(job_spec_check_data(s, ds, NULL), -1);
    cr_assert_str_eq(error_get(),
                     "model[4] Linear: in_features=1000 but its input has 6272 features");
    dataset_free(ds);
    job_spec_free(s);
}

/* A BatchNorm1d trains on a batch of 64, not on a last batch of 1 (59969
 * samples; PyTorch fails that step); a BatchNorm2d on one image of 28x28
 * has 784 values a channel. drop_last leaves the short batch out. */
Test(spec, batch_norm_on_the_short_last_batch) {
    static const char *const bn1d =
        "[{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"in_features\": 784, "
        "\"out_features\": 16}, {\"type\": \"BatchNorm1d\", \"num_features\": 16}, "
        "{\"type\": \"Linear\", \"in_features\": 16, \"out_features\": 10}]";
    char *t = spec_example_variant(spec_example_design, "model", bn1d);
    JobSpec *s = spec_example_parse(t);
    free(t);
    SpecDataShape d = spec_example_mnist();
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), 0, "%s", error_get());
    cr_assert_eq(job_spec_check_last_batch(s, &d, 60000 + 65), 0, "%s", error_get());
    cr_assert_eq(job_spec_check_last_batch(s, &d, 59969), -1);
    cr_assert_str_eq(error_get(), "the last batch of data.train holds 1 of its 59969 samples "
                                  "(batches of 64; \"drop_last\": true leaves it out): model[2] "
                                  "BatchNorm1d: "
                                  "its input [1, 16] holds 1 value per channel, but training a "
                                  "BatchNorm needs more than 1 (a batch of one sample of a "
                                  "single position)");
    cr_assert_str_eq(error_last()->path, "model[2]");
    s->drop_last = true;
    cr_assert_eq(job_spec_check_last_batch(s, &d, 59969), 0, "%s", error_get());
    s->batch_size = 1; /* every batch */
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    job_spec_free(s);

    t = spec_example_variant(spec_example_design, "model",
                             "[{\"type\": \"BatchNorm2d\", \"num_features\": 1}, "
                             "{\"type\": \"Flatten\"}, {\"type\": \"Linear\", "
                             "\"in_features\": 784, \"out_features\": 10}]");
    s = spec_example_parse(t);
    free(t);
    cr_assert_eq(job_spec_check_last_batch(s, &d, 59969), 0, "%s", error_get());
    job_spec_free(s);
}

Test(spec, loss_and_transform_checks) {
    JobSpec *s = spec_example_parse(spec_example_design);
    SpecDataShape d = spec_example_mnist();

    d.num_classes = 12; /* labels up to 11, 10 outputs */
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_get(), "loss: CrossEntropyLoss: the model's output [64, 10] has 10 "
                                  "classes, but the labels go up to 11");

    d = spec_example_mnist(); /* regression targets for a classification loss */
    d.target_dtype = DTYPE_FLOAT32;
    d.target_ndim = 1;
    d.target_shape[0] = 1;
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_get(), "loss: CrossEntropyLoss needs integer class labels (one per "
                                  "sample, or one per token of a sequence), but the targets are "
                                  "float32 [1] per sample (use MSELoss or L1Loss for regression)");
    job_spec_free(s);

    /* no Flatten/Linear: the output is not [N, C] */
    char *t = spec_example_variant(spec_example_design, "model",
                      "[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 2, "
                                   "\"kernel_size\": 3}]");
    s = spec_example_parse(t);
    free(t);
    d = spec_example_mnist();
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_get(), "loss: CrossEntropyLoss needs the model's output to be [N, C] "
                                  "(class scores), got [64, 2, 26, 26]");
    job_spec_free(s);

    /* images without ToTensor */
    t = spec_example_variant(spec_example_design, "data.transforms", "[]");
    s = spec_example_parse(t);
    free(t);
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_get(), "data.transforms: the model's input would be uint8 [64, 28, 28]; "
                                  "images need {\"type\": \"ToTensor\"} to become float32");
    job_spec_free(s);

    /* Normalize with 3 channels on 1-channel images: the transform's error, under data. */
    t = spec_example_variant(spec_example_design, "data.transforms",
                "[{\"type\": \"ToTensor\"}, {\"type\": \"Normalize\", \"mean\": [0.5, 0.5, 0.5], "
                             "\"std\": [1, 1, 1]}]");
    s = spec_example_parse(t);
    free(t);
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert(strncmp(error_get(), "data.transforms[1] Normalize: ", 30) == 0, "%s", error_get());
    job_spec_free(s);

    /* regression: MSELoss needs the output shaped as the targets */
    t = spec_example_variant(spec_example_mlp, "loss", "{\"type\": \"MSELoss\"}");
    s = spec_example_parse(t);
    free(t);
    SpecDataShape r = {.input_dtype = DTYPE_FLOAT32, .input_ndim = 1, .input_shape = {4},
                       .target_dtype = DTYPE_FLOAT32, .target_ndim = 1, .target_shape = {1}};
    cr_assert_eq(job_spec_check_shapes(s, &r, NULL), -1);
    cr_assert_str_eq(error_get(), "loss: MSELoss: the model's output [1, 3] does not match the "
                                  "targets [1, 1]");
    r.target_shape[0] = 3;
    cr_assert_eq(job_spec_check_shapes(s, &r, NULL), 0, "%s", error_get());
    r.target_dtype = DTYPE_INT64;
    r.target_ndim = 0;
    cr_assert_eq(job_spec_check_shapes(s, &r, NULL), -1);
    cr_assert_str_eq(error_get(), "loss: MSELoss needs float targets, but the data has int64 "
                                  "class labels (use CrossEntropyLoss for classification)");
    job_spec_free(s);
}

/* Errors are structures: the path is the field's, not cut out of the text. */
static void expect_path(const char *text, const char *want_path, const char *want_start) {
    error_clear();
    JobSpec *s = job_spec_parse(text, strlen(text));
    cr_assert_null(s, "parsed: %s", text);
    cr_assert_str_eq(error_last()->path, want_path, "%s", error_get());
    cr_assert(strncmp(error_get(), want_start, strlen(want_start)) == 0, "%s", error_get());
}

Test(spec, errors_are_structures) {
    char *t = spec_example_variant(spec_example_design, "optimizer.momentun", "0.9");
    expect_path(t, "optimizer.momentun", "optimizer.momentun: unknown field");
    free(t);
    t = spec_example_variant(spec_example_design, "epochs", "\"one\"");
    expect_path(t, "epochs", "epochs: expected an integer, got string");
    free(t);
    t = spec_example_variant(spec_example_design, "scheduler.lr_lambda", "\"0.95 $ epoch\"");
    expect_path(t, "scheduler.lr_lambda", "scheduler.lr_lambda: ");
    free(t);
    t = spec_example_variant(spec_example_design, "model",
                             "[{\"type\": \"ReLU\"}, {\"type\": \"Conv3d\"}]");
    expect_path(t, "model[1]", "model[1]: unknown layer type 'Conv3d'");
    free(t);
    t = spec_example_variant(spec_example_design, "data.transforms", "[{\"type\": \"Normalize\"}]");
    expect_path(t, "data.transforms[0]", "data.transforms[0] Normalize: mean and std");
    free(t);
    /* the spec as a whole: no field to name */
    expect_path("[1, 2]", "", "job spec: expected an object, got array");
    expect_path("{\"epochs\": ", "", "invalid JSON: line 1");

    /* shape errors name the layer, whose type the message adds */
    t = spec_example_variant(spec_example_design, "model",
                "[{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"in_features\": 1000, "
                             "\"out_features\": 10}]");
    JobSpec *s = spec_example_parse(t);
    free(t);
    SpecDataShape d = spec_example_mnist();
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_last()->path, "model[1]");
    cr_assert_str_eq(error_get(), "model[1] Linear: in_features=1000 but its input has 784 "
                                  "features");
    d.num_classes = 11;
    job_spec_free(s);
    s = spec_example_parse(spec_example_design);
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_last()->path, "loss");
    job_spec_free(s);
}

/* The elements of a built model's state_dict (parameters and buffers), as
 * torch's sum(t.numel() for t in model.state_dict().values()). */
static int64_t state_dict_elements(const JobSpec *s) {
    Rng rng;
    rng_init(&rng, 0);
    Module *m = job_spec_build_model(s, &rng);
    cr_assert(m != NULL, "%s", error_get());
    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert_eq(module_state_dict(m, &sd), 0, "%s", error_get());
    int64_t n = 0;
    for (int i = 0; i < sd.count; i++) n += tensor_numel(sd.tensors[i]);
    tensor_dict_free(&sd);
    module_free(m);
    return n;
}

Test(spec, model_size_from_the_layer_list) {
    /* the CNN: conv 32*1*3*3 + 32, linear 10*6272 + 10, as torch counts them */
    JobSpec *s = spec_example_parse(spec_example_design);
    SpecDataShape d = spec_example_mnist();
    SpecModelSize z;
    cr_assert_eq(job_spec_check_shapes(s, &d, &z), 0, "%s", error_get());
    cr_assert_eq(z.parameters, 32 * 9 + 32 + 10 * 6272 + 10);
    cr_assert_eq(z.buffers, 0);
    cr_assert_eq(z.parameters, state_dict_elements(s));
    /* outputs of conv, relu, pool, flatten and linear for a batch of 64 */
    int64_t acts = 64 * (32 * 28 * 28 * 2 + 32 * 14 * 14 + 6272 + 10);
    cr_assert_eq(z.activations, acts);
    /* SGD with momentum: weights, gradients and one buffer; the batch and the
     * outputs with their gradients; float32 */
    cr_assert_eq(z.train_bytes, 4 * (3 * z.parameters + 2 * (64 * 784 + acts)));
    job_spec_free(s);

    /* BatchNorm's running statistics and num_batches_tracked, and Adam's two moments */
    char *t = spec_example_variant(spec_example_design, "model",
                      "[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 8, "
                      "\"kernel_size\": 3, \"bias\": false}, {\"type\": \"BatchNorm2d\", "
                      "\"num_features\": 8}, {\"type\": \"Flatten\"}, {\"type\": \"Linear\", "
                                   "\"in_features\": 5408, \"out_features\": 10}]");
    char *t2 = spec_example_variant(t, "optimizer", "{\"type\": \"Adam\"}");
    s = spec_example_parse(t2);
    free(t);
    free(t2);
    cr_assert_eq(job_spec_check_shapes(s, &d, &z), 0, "%s", error_get());
    cr_assert_eq(z.parameters, 8 * 9 + 2 * 8 + 5408 * 10 + 10);
    cr_assert_eq(z.buffers, 2 * 8 + 1);
    cr_assert_eq(z.parameters + z.buffers, state_dict_elements(s));
    cr_assert_eq(z.train_bytes,
                 4 * (4 * z.parameters + z.buffers + 2 * (64 * 784 + z.activations)));
    job_spec_free(s);
}

/* `base` with `model` as its layer list, parsed. */
static JobSpec *parse_model(const char *base, const char *model) {
    char *t = spec_example_variant(base, "model", model);
    JobSpec *s = spec_example_parse(t);
    free(t);
    return s;
}

/* The shape check passes and counts `parameters`, as the built model has. */
static void expect_parameters(const JobSpec *s, int64_t parameters) {
    SpecDataShape d = spec_example_mnist();
    SpecModelSize z;
    cr_assert_eq(job_spec_check_shapes(s, &d, &z), 0, "%s", error_get());
    cr_assert_eq(z.parameters, parameters);
    cr_assert_eq(z.parameters, state_dict_elements(s));
}

/* LayerNorm: normalized_shape as an int or a list, torch's defaults, bad
 * arguments named by path, the input's trailing dims checked against it,
 * and its parameters counted as torch counts them. */
Test(spec, layer_norm) {
    /* MNIST's images through ToTensor: [N, 1, 28, 28] float32 */
    char *base = spec_example_variant(spec_example_mlp, "data",
                                      "{\"train\": \"t\", \"transforms\": "
                                      "[{\"type\": \"ToTensor\"}]}");
    JobSpec *s = parse_model(
        base, "[{\"type\": \"Flatten\"}, {\"type\": \"LayerNorm\", \"normalized_shape\": 784}, "
              "{\"type\": \"LayerNorm\", \"normalized_shape\": [784], \"eps\": 1e-6, "
              "\"bias\": false}, {\"type\": \"LayerNorm\", \"normalized_shape\": [784], "
              "\"elementwise_affine\": false}, {\"type\": \"Linear\", \"in_features\": 784, "
              "\"out_features\": 10}]");
    const SpecLayer *l = &s->layers[1];
    cr_assert_eq(l->type, SPEC_LAYER_LAYER_NORM);
    cr_assert_str_eq(spec_layer_type_name(l->type), "LayerNorm");
    cr_assert(l->norm_ndim == 1 && l->normalized_shape[0] == 784);
    cr_assert(l->eps == 1e-5 && l->elementwise_affine && l->bias);
    cr_assert(s->layers[2].eps == 1e-6 && s->layers[2].elementwise_affine &&
              !s->layers[2].bias);
    cr_assert(!s->layers[3].elementwise_affine);
    expect_parameters(s, 2 * 784 + 784 + 784 * 10 + 10);
    job_spec_free(s);

    /* over the last two dims of the [N, 1, 28, 28] images */
    s = parse_model(base, "[{\"type\": \"LayerNorm\", \"normalized_shape\": [28, 28]}, "
                          "{\"type\": \"Flatten\"}, {\"type\": \"Linear\", "
                          "\"in_features\": 784, \"out_features\": 10}]");
    cr_assert(s->layers[0].norm_ndim == 2 && s->layers[0].normalized_shape[1] == 28);
    expect_parameters(s, 2 * 784 + 7850);
    job_spec_free(s);

    /* trailing dims that differ: the layer and both shapes named */
    s = parse_model(base, "[{\"type\": \"Flatten\"}, {\"type\": \"LayerNorm\", "
                          "\"normalized_shape\": [28, 28]}, {\"type\": \"Linear\", "
                          "\"in_features\": 784, \"out_features\": 10}]");
    SpecDataShape d = spec_example_mnist();
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_get(), "model[1] LayerNorm: normalized_shape=[28, 28] but its input "
                                  "[1, 784] does not end with [28, 28]");
    cr_assert_str_eq(error_last()->path, "model[1]");
    job_spec_free(s);
    free(base);

    static const struct {
        const char *layer, *want;
    } bad[] = {
        {"{\"type\": \"LayerNorm\"}", "model[0].normalized_shape: required"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": 0}",
         "model[0].normalized_shape: must be >= 1, got 0"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": [4, -2]}",
         "model[0].normalized_shape[1]: must be >= 1, got -2"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": []}",
         "model[0].normalized_shape: expected a list of 1 to 8 integers, got a list of 0"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": [1, 1, 1, 1, 1, 1, 1, 1, 1]}",
         "model[0].normalized_shape: expected a list of 1 to 8 integers, got a list of 9"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": \"64\"}",
         "model[0].normalized_shape: expected an integer or a list of integers, got string"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": [4.5]}",
         "model[0].normalized_shape[0]: expected an integer"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": 4, \"eps\": 0}",
         "model[0].eps: must be > 0, got 0"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": 4, \"eps\": -1e-5}",
         "model[0].eps: must be > 0, got -1e-05"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": 4, \"eps\": \"small\"}",
         "model[0].eps: expected a number, got string"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": 4, \"elementwise_affine\": 1}",
         "model[0].elementwise_affine: expected true or false, got number"},
        {"{\"type\": \"LayerNorm\", \"normalized_shape\": 4, \"affine\": true}",
         "model[0].affine: unknown field"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char model[256];
        snprintf(model, sizeof model, "[%s]", bad[i].layer);
        char *t = spec_example_variant(spec_example_mlp, "model", model);
        spec_example_expect_error(t, bad[i].want, false);
        free(t);
    }
}

/* A model of 10^12 parameters is measured without a weight allocated; sizes
 * past int64 saturate instead of wrapping round to small numbers. */
Test(spec, huge_models_are_measured_not_built) {
    char *t = spec_example_variant(spec_example_mlp, "model",
                                   "[{\"type\": \"Linear\", \"in_features\": 1000000, "
                                   "\"out_features\": 1000000}, {\"type\": \"Linear\", "
                                   "\"in_features\": 1000000, \"out_features\": 3}]");
    JobSpec *s = spec_example_parse(t);
    free(t);
    SpecDataShape d = {.input_dtype = DTYPE_FLOAT32,
                       .input_ndim = 1,
                       .input_shape = {1000000},
                       .target_dtype = DTYPE_INT64,
                       .num_classes = 3};
    SpecModelSize z;
    cr_assert_eq(job_spec_check_shapes(s, &d, &z), 0, "%s", error_get());
    int64_t p = 1000000LL * 1000000 + 1000000 + 1000000LL * 3 + 3;
    cr_assert_eq(z.parameters, p);
    cr_assert_eq(z.train_bytes, 4 * (2 * p + 2 * (1000000 + 1000000 + 3)));
    job_spec_free(s);

    t = spec_example_variant(spec_example_mlp, "model",
                "[{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 2147483648},"
                             " {\"type\": \"Linear\", \"in_features\": 2147483648, "
                "\"out_features\": 2147483648}, {\"type\": \"Linear\", \"in_features\": "
                             "2147483648, \"out_features\": 2147483648}, {\"type\": \"Linear\", "
                             "\"in_features\": "
                             "2147483648, \"out_features\": 3}]");
    char *t2 = spec_example_variant(t, "batch_size", "2147483648");
    s = spec_example_parse(t2);
    free(t);
    free(t2);
    d = (SpecDataShape){.input_dtype = DTYPE_FLOAT32,
                        .input_ndim = 1,
                        .input_shape = {4},
                        .target_dtype = DTYPE_INT64,
                        .num_classes = 3};
    cr_assert_eq(job_spec_check_shapes(s, &d, &z), 0, "%s", error_get());
    cr_assert_eq(z.parameters, INT64_MAX);
    cr_assert_eq(z.train_bytes, INT64_MAX);
    job_spec_free(s);
}

/* ---- building ---- */

Test(spec, builds_model_optimizer_scheduler) {
    JobSpec *s = spec_example_parse(spec_example_design);
    Rng rng;
    rng_init(&rng, s->seed);
    Module *m = job_spec_build_model(s, &rng);
    cr_assert(m != NULL, "%s", error_get());
    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert_eq(module_state_dict(m, &sd), 0, "%s", error_get());
    static const char *names[] = {"0.weight", "0.bias", "4.weight", "4.bias"};
    static const int64_t shapes[][4] = {{32, 1, 3, 3}, {32}, {10, 6272}, {10}};
    cr_assert_eq(sd.count, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_str_eq(sd.names[i], names[i]);
        Tensor *t = sd.tensors[i];
        for (int j = 0; j < t->ndim; j++) cr_assert_eq(t->shape[j], shapes[i][j]);
    }
    tensor_dict_free(&sd);

    /* the model the check measured without building it is the built one, and it runs */
    SpecDataShape d = spec_example_mnist();
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), 0, "%s", error_get());
    Tensor *x = tensor_zeros(SHAPE(2, 1, 28, 28), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *y = module_forward(m, x);
    cr_assert(y != NULL, "%s", error_get());
    cr_assert(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 10);
    int64_t two = 2;
    Tensor *labels = tensor_zeros(1, &two, DTYPE_INT64, DEVICE_CPU_INIT);
    Tensor *loss = job_spec_loss(s, y, labels);
    cr_assert(loss != NULL, "%s", error_get());
    cr_assert_eq(loss->ndim, 0);
    cr_assert(isfinite(tensor_item(loss)));
    tensor_release(loss);
    tensor_release(labels);
    tensor_release(y);
    tensor_release(x);

    Optimizer *opt = job_spec_build_optimizer(s, m);
    cr_assert(opt != NULL, "%s", error_get());
    cr_assert_str_eq(optimizer_name(opt), "SGD");
    cr_assert_eq(opt->lr, 0.01);
    cr_assert_eq(opt->n_params, 4);
    LrScheduler *sched = NULL;
    cr_assert_eq(job_spec_build_lr_scheduler(s, opt->lr, 1, &sched), 0, "%s", error_get());
    cr_assert(sched != NULL);
    cr_assert_float_eq(lr_scheduler_get_lr(sched), 0.01, 1e-15);
    cr_assert_eq(lr_scheduler_step(sched), 0);
    cr_assert_float_eq(lr_scheduler_get_lr(sched), 0.01 * 0.95, 1e-15);
    lr_scheduler_free(sched);
    optimizer_free(opt);
    module_free(m);
    job_spec_free(s);

    /* BatchNorm's buffers, and an Adam optimizer */
    char *t = spec_example_variant(spec_example_mlp, "model",
                      "[{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 8, "
                      "\"bias\": false}, {\"type\": \"BatchNorm1d\", \"num_features\": 8},"
                                   " {\"type\": \"Tanh\"}, {\"type\": \"Dropout\", \"p\": 0.1},"
                      " {\"type\": \"Linear\", \"in_features\": 8, \"out_features\": 3}]");
    char *t2 = spec_example_variant(t, "optimizer", "{\"type\": \"Adam\", \"lr\": 0.002}");
    s = spec_example_parse(t2);
    free(t);
    free(t2);
    rng_init(&rng, 0);
    m = job_spec_build_model(s, &rng);
    cr_assert(m != NULL, "%s", error_get());
    tensor_dict_init(&sd);
    cr_assert_eq(module_state_dict(m, &sd), 0);
    static const char *bn_names[] = {"0.weight",         "1.weight",     "1.bias",
                                     "1.running_mean",   "1.running_var", "1.num_batches_tracked",
                                     "4.weight",         "4.bias"};
    cr_assert_eq(sd.count, 8);
    for (int i = 0; i < 8; i++) cr_assert_str_eq(sd.names[i], bn_names[i]);
    tensor_dict_free(&sd);
    opt = job_spec_build_optimizer(s, m);
    cr_assert(opt != NULL, "%s", error_get());
    cr_assert_str_eq(optimizer_name(opt), "Adam");
    cr_assert_eq(opt->lr, 0.002);
    optimizer_free(opt);
    module_free(m);
    job_spec_free(s);

    /* no parameters to optimise */
    t = spec_example_variant(spec_example_mlp, "model", "[{\"type\": \"ReLU\"}]");
    s = spec_example_parse(t);
    free(t);
    m = job_spec_build_model(s, &rng);
    cr_assert(m != NULL);
    cr_assert_null(job_spec_build_optimizer(s, m));
    cr_assert_str_eq(error_get(), "optimizer: the model has no parameters to optimize");
    module_free(m);
    job_spec_free(s);
}
