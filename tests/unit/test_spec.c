/* test_spec.c - core/spec: the job spec of design.md parses with the right
 * values and PyTorch's defaults; malformed specs fail with the JSON path and
 * the reason; inline idx/csv/npy sources load, with paths relative to the job
 * file; every field refuses every wrong type. Shape checks and building are
 * test_spec_shapes.c's; the specs both start from, tests/support's
 * spec_examples. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/spec.h"
#include "tests/support/spec_examples.h"
#include "tests/support/tmp_dir.h"

/* The example with one change must fail with exactly `want` (or starting with
 * it when !exact). */
static void expect_variant_error(const char *dotted, const char *value, const char *want,
                                 bool exact) {
    char *text = spec_example_variant(spec_example_design, dotted, value);
    spec_example_expect_error(text, want, exact);
    free(text);
}

/* ---- the design example ---- */

Test(spec, design_example_values) {
    JobSpec *s = spec_example_parse(spec_example_design);
    cr_assert_str_eq(s->name, "mnist-cnn");
    cr_assert_eq(s->train.kind, SPEC_SOURCE_NAME);
    cr_assert_str_eq(s->train.name, "mnist-train");
    cr_assert_eq(s->val.kind, SPEC_SOURCE_NAME);
    cr_assert_str_eq(s->val.name, "mnist-test");

    cr_assert_eq(s->num_transforms, 2);
    cr_assert_str_eq(s->transform_configs[0].type, "ToTensor");
    cr_assert_str_eq(s->transform_configs[1].type, "Normalize");
    cr_assert_eq(s->transform_configs[1].num_mean, 1);
    cr_assert_eq(s->transform_configs[1].mean[0], 0.5);
    cr_assert_eq(s->transform_configs[1].std[0], 1.0);
    cr_assert_eq(s->transforms.count, 2);
    cr_assert_eq(s->transforms.items[1].type, TRANSFORM_NORMALIZE);

    cr_assert_eq(s->num_layers, 5);
    const SpecLayer *c = &s->layers[0];
    cr_assert_eq(c->type, SPEC_LAYER_CONV2D);
    cr_assert_eq(c->in_channels, 1);
    cr_assert_eq(c->out_channels, 32);
    cr_assert(c->kernel_size.h == 3 && c->kernel_size.w == 3);
    cr_assert(c->stride.h == 1 && c->stride.w == 1);
    cr_assert(c->padding.h == 1 && c->padding.w == 1);
    cr_assert(c->bias);
    cr_assert_eq(s->layers[1].type, SPEC_LAYER_RELU);
    const SpecLayer *mp = &s->layers[2];
    cr_assert_eq(mp->type, SPEC_LAYER_MAX_POOL2D);
    cr_assert(mp->kernel_size.h == 2 && mp->kernel_size.w == 2);
    cr_assert(mp->stride.h == 0 && mp->stride.w == 0); /* torch's None */
    cr_assert(mp->padding.h == 0 && mp->padding.w == 0);
    cr_assert_eq(s->layers[3].type, SPEC_LAYER_FLATTEN);
    cr_assert_eq(s->layers[3].start_dim, 1);
    cr_assert_eq(s->layers[3].end_dim, -1);
    const SpecLayer *l = &s->layers[4];
    cr_assert_eq(l->type, SPEC_LAYER_LINEAR);
    cr_assert_eq(l->in_features, 6272);
    cr_assert_eq(l->out_features, 10);
    cr_assert(l->bias);
    cr_assert_str_eq(spec_layer_type_name(l->type), "Linear");

    cr_assert_eq(s->loss, SPEC_LOSS_CROSS_ENTROPY);
    cr_assert_eq(s->reduction, REDUCTION_MEAN);
    cr_assert(job_spec_uses_labels(s));
    cr_assert_eq(s->optimizer, SPEC_OPTIM_SGD);
    cr_assert_eq(s->sgd.lr, 0.01);
    cr_assert_eq(s->sgd.momentum, 0.9);
    cr_assert_eq(s->sgd.dampening, 0.0);
    cr_assert_eq(s->sgd.weight_decay, 0.0);
    cr_assert(!s->sgd.nesterov);
    cr_assert_eq(job_spec_lr(s), 0.01);
    cr_assert(s->has_lr_scheduler);
    cr_assert_eq(s->lr_scheduler.type, LR_SCHEDULER_LAMBDA);
    cr_assert_str_eq(s->lr_scheduler.lr_lambda, "0.95 ** epoch");

    cr_assert_eq(s->epochs, 2);
    cr_assert_eq(s->batch_size, 64);
    cr_assert(s->shuffle);
    cr_assert(!s->drop_last);
    cr_assert(!s->allow_tf32); /* torch.backends.cuda.matmul.allow_tf32 = False */
    cr_assert(!s->cuda_graphs);
    cr_assert_eq(s->seed, 0);
    cr_assert(s->device_auto);
    cr_assert(s->accuracy);
    cr_assert(s->checkpoint);
    cr_assert_eq(s->checkpoint_every_epochs, 1);
    cr_assert_eq(s->checkpoint_keep_last, 3);
    cr_assert_null(s->init);

    /* and it fits MNIST: [64, 1, 28, 28] -> ... -> [64, 10] */
    SpecDataShape d = spec_example_mnist();
    SpecModelSize size;
    cr_assert_eq(job_spec_check_shapes(s, &d, &size), 0, "%s", error_get());
    cr_assert_eq(size.out_ndim, 2);
    cr_assert_eq(size.out_shape[0], 64);
    cr_assert_eq(size.out_shape[1], 10);
    job_spec_free(s);
}

Test(spec, defaults_as_pytorch) {
    JobSpec *s = spec_example_parse(spec_example_mlp);
    cr_assert_str_eq(s->name, "");
    cr_assert_eq(s->val.kind, SPEC_SOURCE_NONE);
    cr_assert_eq(s->num_transforms, 0);
    cr_assert_eq(s->batch_size, 1); /* DataLoader(batch_size=1) */
    cr_assert(!s->shuffle);
    cr_assert(!s->drop_last);
    cr_assert_eq(s->seed, 0);
    cr_assert(s->device_auto);
    cr_assert_eq(s->precision, PRECISION_FLOAT32);
    cr_assert(!s->accuracy);
    cr_assert(!s->has_lr_scheduler);
    cr_assert(s->checkpoint);
    cr_assert_eq(s->checkpoint_every_epochs, 1);
    cr_assert_eq(s->checkpoint_keep_last, 3);
    cr_assert_null(s->init);
    cr_assert(s->layers[0].bias);
    job_spec_free(s);

    /* Adam and AdamW defaults; layer defaults */
    char *t = spec_example_variant(spec_example_mlp, "optimizer", "{\"type\": \"Adam\"}");
    s = spec_example_parse(t);
    free(t);
    cr_assert_eq(s->optimizer, SPEC_OPTIM_ADAM);
    cr_assert_eq(s->adam.lr, 1e-3);
    cr_assert_eq(s->adam.betas[0], 0.9);
    cr_assert_eq(s->adam.betas[1], 0.999);
    cr_assert_eq(s->adam.eps, 1e-8);
    cr_assert_eq(s->adam.weight_decay, 0.0);
    cr_assert(!s->adam.amsgrad);
    job_spec_free(s);

    t = spec_example_variant(spec_example_mlp, "optimizer",
                             "{\"type\": \"AdamW\", \"lr\": 0.5, \"betas\": [0.8, 0.9]}");
    s = spec_example_parse(t);
    free(t);
    cr_assert_eq(s->optimizer, SPEC_OPTIM_ADAMW);
    cr_assert_eq(s->adam.lr, 0.5);
    cr_assert_eq(s->adam.betas[0], 0.8);
    cr_assert_eq(s->adam.weight_decay, 1e-2);
    job_spec_free(s);

    t = spec_example_variant(spec_example_mlp, "model",
                "[{\"type\": \"BatchNorm1d\", \"num_features\": 4}, {\"type\": \"Dropout\"},"
                " {\"type\": \"AvgPool2d\", \"kernel_size\": [2, 3], \"stride\": null},"
                " {\"type\": \"BatchNorm2d\", \"num_features\": 2, \"momentum\": null},"
                             " {\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 1,"
                             "  \"kernel_size\": [3, 5], \"padding\": \"same\", \"bias\": false},"
                             " {\"type\": \"Softmax\", \"dim\": 1}]");
    s = spec_example_parse(t);
    free(t);
    const SpecLayer *bn = &s->layers[0];
    cr_assert_eq(bn->eps, 1e-5);
    cr_assert_eq(bn->momentum, 0.1);
    cr_assert(bn->affine && bn->track_running_stats);
    cr_assert_eq(s->layers[1].p, 0.5);
    cr_assert(s->layers[2].kernel_size.h == 2 && s->layers[2].kernel_size.w == 3);
    cr_assert(s->layers[2].stride.h == 0);
    cr_assert(isnan(s->layers[3].momentum));
    cr_assert(s->layers[4].padding.h == 1 && s->layers[4].padding.w == 2);
    cr_assert(!s->layers[4].bias);
    cr_assert_eq(s->layers[5].dim, 1);
    job_spec_free(s);

    /* checkpoint: null turns checkpoints off; seed, device, drop_last */
    t = spec_example_variant(spec_example_mlp, "checkpoint", "null");
    char *t2 = spec_example_variant(t, "device", "\"cuda:1\"");
    char *t3 = spec_example_variant(t2, "seed", "1234567890123");
    char *t4 = spec_example_variant(t3, "allow_tf32", "true");
    char *t5 = spec_example_variant(t4, "cuda_graphs", "true");
    s = spec_example_parse(t5);
    free(t);
    free(t2);
    free(t3);
    free(t4);
    free(t5);
    cr_assert(s->allow_tf32);
    cr_assert(s->cuda_graphs);
    cr_assert(!s->checkpoint);
    cr_assert(!s->device_auto);
    cr_assert_eq(s->device.type, DEVICE_CUDA);
    cr_assert_eq(s->device.index, 1);
    cr_assert_eq(s->seed, 1234567890123ULL);
    job_spec_free(s);
}

Test(spec, schedulers) {
    char *t = spec_example_variant(spec_example_design, "scheduler",
                                   "{\"type\": \"MultiStepLR\", \"milestones\": [5, 2, 5]}");
    JobSpec *s = spec_example_parse(t);
    free(t);
    cr_assert_eq(s->lr_scheduler.type, LR_SCHEDULER_MULTI_STEP);
    cr_assert_eq(s->lr_scheduler.n_milestones, 3);
    cr_assert_eq(s->lr_scheduler.milestones[0], 2); /* sorted: torch counts them */
    cr_assert_eq(s->lr_scheduler.milestones[1], 5);
    cr_assert_eq(s->lr_scheduler.gamma, 0.1);
    job_spec_free(s);

    t = spec_example_variant(spec_example_design, "scheduler",
                             "{\"type\": \"CosineAnnealingLR\", \"T_max\": 10}");
    s = spec_example_parse(t);
    free(t);
    cr_assert_eq(s->lr_scheduler.T_max, 10);
    cr_assert_eq(s->lr_scheduler.eta_min, 0.0);
    job_spec_free(s);

    t = spec_example_variant(spec_example_design, "scheduler", "null");
    s = spec_example_parse(t);
    free(t);
    cr_assert(!s->has_lr_scheduler);
    LrScheduler *sched = (LrScheduler *)1;
    cr_assert_eq(job_spec_build_lr_scheduler(s, 0.1, 1, &sched), 0);
    cr_assert_null(sched);
    job_spec_free(s);
}

/* ---- errors: path and reason ---- */

Test(spec, precision) {
    char *text = spec_example_variant(spec_example_design, "precision", "\"bf16\"");
    JobSpec *s = spec_example_parse(text);
    cr_assert_eq(s->precision, PRECISION_BF16);
    job_spec_free(s);
    free(text);
    expect_variant_error("precision", "\"fp16\"",
                         "precision: expected \"float32\" or \"bf16\", got \"fp16\"", true);
    expect_variant_error("precision", "16", "precision: expected a string, got number", true);
}

Test(spec, errors_name_path_and_reason) {
    expect_variant_error("optimizer.lr", "\"0.01\"", "optimizer.lr: expected a number, got string",
                         true);
    expect_variant_error("epochs", "0", "epochs: must be >= 1, got 0", true);
    expect_variant_error("model",
                         "[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 4, "
                         "\"kernel_size\": 3}, {\"type\": \"ReLU\"}, {\"type\": \"Conv3d\"}]",
                         "model[2]: unknown layer type 'Conv3d' (known: Linear, Conv2d, ReLU, "
                         "Sigmoid, Tanh, Softmax, MaxPool2d, AvgPool2d, Flatten, Dropout, "
                         "BatchNorm1d, BatchNorm2d, GELU, SiLU, LeakyReLU, Identity, "
                         "LayerNorm, Embedding, AdaptiveAvgPool2d, BasicBlock, Bottleneck)",
                         true);
    expect_variant_error("loss.type", "\"Foo\"",
                         "loss.type: unknown loss 'Foo' (known: MSELoss, L1Loss, "
                         "CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss)",
                         true);
    expect_variant_error("scheduler.lr_lambda", "\"epoch $ 2\"",
                         "scheduler.lr_lambda: unexpected character '$' at position 6", true);
    expect_variant_error("optimizer.momentun", "0.9",
                         "optimizer.momentun: unknown field (did you mean 'momentum'?)", true);
    expect_variant_error("optimizer.betas", "[0.9, 0.999]",
                         "optimizer.betas: unknown field (SGD takes type, lr, momentum, "
                         "dampening, weight_decay, nesterov, no_decay_1d)",
                         true);
    expect_variant_error("optimizer.lr", NULL,
                         "optimizer.lr: required (torch.optim.SGD has no default)", true);
    expect_variant_error("epoch", "3", "epoch: unknown field (did you mean 'epochs'?)", true);
    expect_variant_error("batch_size", "2.5", "batch_size: expected an integer, got 2.5", true);
    expect_variant_error("shuffle", "\"yes\"", "shuffle: expected true or false, got string",
                         true);
    expect_variant_error("allow_tf32", "1", "allow_tf32: expected true or false, got number",
                         true);
    expect_variant_error("cuda_graphs", "\"on\"",
                         "cuda_graphs: expected true or false, got string", true);
    expect_variant_error("loss.reduction", "\"none\"",
                         "loss.reduction: 'none' gives one loss per sample, which cannot be "
                         "trained on (use 'mean' or 'sum')",
                         true);
    expect_variant_error("device", "\"tpu\"",
                         "device: expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got \"tpu\"",
                         true);
    expect_variant_error("metrics", "[\"accuracy\", \"f1\"]",
                         "metrics[1]: unknown metric 'f1' (known: accuracy, perplexity)", true);
    expect_variant_error("data.train", NULL, "data.train: required", true);
    expect_variant_error("data.val", "{\"format\": \"parquet\"}",
                         "data.val.format: unknown format 'parquet' (known: idx, csv, npy, "
                         "tokens, text, imagefolder, cifar10)", true);
    expect_variant_error("data.train",
                         "{\"format\": \"csv\", \"path\": \"a.csv\", \"label_column\": "
                         "[\"y\", \"z\"]}",
                         "data.train.label_column: CrossEntropyLoss takes one column of class "
                         "labels, got 2",
                         true);
    cr_assert_str_eq(error_last()->path, "data.train.label_column", "the field, for the reply");
    expect_variant_error("data.train", "{\"format\": \"idx\", \"images\": \"a\"}",
                         "data.train.labels: required", true);
    expect_variant_error("data.transforms",
                         "[{\"type\": \"ToTensor\"}, {\"type\": \"Normalize\", \"mean\": [0.5], "
                         "\"std\": [0]}]",
                         "data.transforms[1] Normalize: std[0] is 0", false);
    expect_variant_error("data.transforms", "[{\"type\": \"Normalize\", \"mean\": [\"a\"]}]",
                         "data.transforms[0].mean[0]: expected a number, got string", true);
    expect_variant_error("data.transforms",
                         "[{\"type\": \"Normalize\", \"mean\": [0.5], \"std\": 1e39}]",
                         "data.transforms[0].std: 1e+39 is beyond float32's range (the transform "
                         "computes in float32)", true);
    expect_variant_error("scheduler", "{\"type\": \"StepLR\"}", "scheduler.step_size: required",
                         true);
    expect_variant_error("scheduler", "{\"type\": \"StepLr\", \"step_size\": 2}",
                         "scheduler.type: unknown scheduler 'StepLr' (did you mean 'StepLR'?)",
                         true);
    expect_variant_error("scheduler", "{\"type\": \"LambdaLR\", \"lr_lambda\": \"1 / epoch\"}",
                         "scheduler.lr_lambda: at epoch 0: division by zero", false);
    expect_variant_error("checkpoint", "{\"every_epochs\": 0}",
                         "checkpoint.every_epochs: must be >= 1, got 0", true);
    expect_variant_error("init", "3.5", "init: expected null, a string or a checkpoint id, got "
                         "number", true);
    expect_variant_error("init", "0", "init: a checkpoint id is >= 1, got 0", true);
    /* the listing's integer id, as its string */
    char *text = spec_example_variant(spec_example_design, "init", "7");
    JobSpec *s = spec_example_parse(text);
    free(text);
    cr_assert_str_eq(s->init, "7");
    job_spec_free(s);
    expect_variant_error("name", "\"\"", "name: must have 1 to 128 characters, got 0", true);
    expect_variant_error("model", "[]", "model: must have at least one layer", true);
}

Test(spec, layer_errors) {
    static const struct {
        const char *model, *want;
    } cases[] = {
        {"[{\"type\": \"Linear\", \"in_features\": 0, \"out_features\": 2}]",
         "model[0].in_features: must be >= 1, got 0"},
        {"[{\"type\": \"Linear\", \"in_features\": 4}]", "model[0].out_features: required"},
        {"[{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 2, \"bais\": false}]",
         "model[0].bais: unknown field (did you mean 'bias'?)"},
        {"[{\"type\": \"Relu\"}]", "model[0]: unknown layer type 'Relu' (did you mean 'ReLU'?)"},
        {"[{\"in_features\": 4}]", "model[0].type: required"},
        {"[3]", "model[0]: expected an object, got number"},
        {"[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 2, \"kernel_size\": [3]}]",
         "model[0].kernel_size: expected an integer or a list of 2 integers, got a list of 1"},
        {"[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 2, \"kernel_size\": 3, "
         "\"groups\": 2}]",
         "model[0].groups: must divide in_channels (1) and out_channels (2), got 2"},
        {"[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 2, \"kernel_size\": 3, "
         "\"stride\": [1, 0]}]",
         "model[0].stride[1]: must be >= 1, got 0"},
        /* a span past int: its shape and "same" padding would wrap */
        {"[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 2, \"kernel_size\": "
         "[1, 32770], \"dilation\": [1, 65535], \"padding\": \"valid\"}]",
         "model[0].dilation: (1, 65535) spreads the kernel (1, 32770) over (1, 2147516416) pixels; "
         "at most 65535"},
        {"[{\"type\": \"MaxPool2d\", \"kernel_size\": 2, \"padding\": 2}]",
         "model[0].padding: must be at most half of kernel_size (2, 2), got (2, 2)"},
        {"[{\"type\": \"Dropout\", \"p\": 1.5}]", "model[0].p: must be in [0, 1], got 1.5"},
        {"[{\"type\": \"BatchNorm2d\", \"num_features\": 3, \"eps\": 0}]",
         "model[0].eps: must be > 0, got 0"},
        {"[{\"type\": \"Softmax\"}]", "model[0].dim: required"},
        {"{\"type\": \"ReLU\"}",
         "model: expected a list of layers or {\"arch\": ...}, got object"},
        {"{\"arch\": \"vgg11\"}", "model.arch: unknown arch 'vgg11' (known: "},
        {"[{\"type\": \"BasicBlock\", \"inplanes\": 8}]", "model[0].planes: required"},
        {"[{\"type\": \"BasicBlock\", \"inplanes\": 8, \"planes\": 8, \"groups\": 2}]",
         "model[0].groups: only torch's default 1 is supported, got 2"},
        {"[{\"type\": \"Bottleneck\", \"inplanes\": 8, \"planes\": 2, \"downsample\": true}]",
         "model[0].downsample: unknown field"},
        {"[{\"type\": \"Bottleneck\", \"inplanes\": 8, \"planes\": 2, \"stride\": 0}]",
         "model[0].stride: must be >= 1, got 0"},
        {"[{\"type\": \"AdaptiveAvgPool2d\", \"output_size\": [1]}]",
         "model[0].output_size: expected an integer or a list of 2 integers, got a list of 1"},
        {"[{\"type\": \"AdaptiveAvgPool2d\", \"output_size\": 0}]",
         "model[0].output_size: must be >= 1, got 0"},
        {"[{\"type\": \"AdaptiveAvgPool2d\"}]", "model[0].output_size: required"},
        {"{\"arch\": \"resnet18\", \"num_clases\": 10}",
         "model.num_clases: unknown field (did you mean 'num_classes'?)"},
        {"{\"arch\": \"resnet50\", \"num_classes\": 0}", "model.num_classes: must be >= 1, got 0"},
        {"{\"arch\": \"resnet34\", \"in_channels\": \"rgb\"}",
         "model.in_channels: expected an integer, got string"},
        {"{\"arch\": \"resnet18\", \"small_input\": 1}",
         "model.small_input: expected true or false, got number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = spec_example_variant(spec_example_mlp, "model", cases[i].model);
        spec_example_expect_error(t, cases[i].want, false);
        free(t);
    }
}

/* "model": {"arch": "resnet18", ...} against MNIST: the input must be float
 * [N, in_channels, H, W]; errors name the model and say what is wrong. A
 * block in a layer list checks its inplanes. */
Test(spec, resnet_arch_and_blocks_fit_the_data) {
    SpecDataShape d = spec_example_mnist();
    static const struct {
        const char *dotted, *value, *want;
    } cases[] = {
        {"model", "{\"arch\": \"resnet18\", \"num_classes\": 10}",
         "model (resnet18): in_channels=3 but its input has 1 channels (input [64, 1, 28, 28])"},
        {"data.transforms", "[]",
         "model (resnet18): expects float images, but its input would be uint8 [64, 28, 28]; "
         "images need {\"type\": \"ToTensor\"} in data.transforms"},
        {"model", "[{\"type\": \"BasicBlock\", \"inplanes\": 8, \"planes\": 8}]",
         "model[0] BasicBlock: inplanes=8 but its input has 1 channels (input [64, 1, 28, 28])"},
        {"model", "[{\"type\": \"Bottleneck\", \"inplanes\": 1, \"planes\": 2}, "
                  "{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"in_features\": 8, "
                  "\"out_features\": 10}]",
         "model[2] Linear: in_features=8 but its input has 6272 features"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *t = spec_example_variant(spec_example_design, "model",
                                       "{\"arch\": \"resnet18\", \"num_classes\": 10}");
        char *t2 = spec_example_variant(t, cases[i].dotted, cases[i].value);
        JobSpec *s = spec_example_parse(t2);
        free(t), free(t2);
        cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1, "case %zu", i);
        cr_assert_str_eq(error_get(), cases[i].want);
        cr_assert_str_eq(error_last()->path, i < 2 ? "model" : i == 2 ? "model[0]" : "model[2]");
        job_spec_free(s);
    }

    /* one channel: [64, 10] out; parameters as torch's resnet18() (11689512)
     * with conv1 = Conv2d(1, 64, 7, 2, 3, bias=False) for its 3-channel one
     * and fc = Linear(512, 10) for Linear(512, 1000) */
    char *t = spec_example_variant(spec_example_design, "model",
                      "{\"arch\": \"resnet18\", \"num_classes\": 10, \"in_channels\": 1}");
    JobSpec *s = spec_example_parse(t);
    free(t);
    cr_assert_eq(s->arch.kind, SPEC_ARCH_RESNET);
    cr_assert(s->arch.resnet.depth == 18 && !s->arch.resnet.small_input);
    SpecModelSize size;
    cr_assert_eq(job_spec_check_shapes(s, &d, &size), 0, "%s", error_get());
    cr_assert(size.out_ndim == 2 && size.out_shape[0] == 64 && size.out_shape[1] == 10);
    cr_assert_eq(size.parameters, 11689512 - 9408 + 3136 - 513000 + 5130);
    job_spec_free(s);
}

/* Labels up to 255 where 255 is the loss's ignore_index (a segmentation
 * "void" label, as torch allows) are not counted as 256 classes; without
 * it they are, and a 10-class output is refused. */
Test(spec, ignore_index_label_not_a_class) {
    SpecDataShape d = spec_example_mnist();
    d.num_classes = 256;
    char *t = spec_example_variant(spec_example_design, "loss",
                                   "{\"type\": \"CrossEntropyLoss\", \"ignore_index\": 255}");
    JobSpec *s = spec_example_parse(t);
    free(t);
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), 0, "%s", error_get());
    job_spec_free(s);
    s = spec_example_parse(spec_example_design);
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert(strstr(error_get(), "has 10 classes, but the labels go up to 255"), "%s",
              error_get());
    job_spec_free(s);
}

/* A model whose Flatten would merge more than 2^63 values is refused at
 * that layer (the product once wrapped to a small, plausible size). */
Test(spec, flatten_past_int64_refused) {
    SpecDataShape d = spec_example_mnist();
    char *t = spec_example_variant(spec_example_design, "model",
        "[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 3570773, "
        "\"kernel_size\": 1}, {\"type\": \"AdaptiveAvgPool2d\", \"output_size\": [15122, 1]}, "
        "{\"type\": \"Linear\", \"in_features\": 1, \"out_features\": 2049743401}, "
        "{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"in_features\": 10, "
        "\"out_features\": 10}]");
    JobSpec *s = spec_example_parse(t);
    free(t);
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_last()->path, "model[3]");
    cr_assert_str_eq(error_get(), "model[3] Flatten: dims 1 to 3 of its input hold more than "
                                  "2^63 values");
    job_spec_free(s);
}

/* GELU, SiLU, LeakyReLU, Identity: torch's arguments and defaults, passed
 * on to the built layers; bad arguments and unknown keys name their path. */
Test(spec, activation_layers) {
    char *t = spec_example_variant(spec_example_mlp, "model",
                      "[{\"type\": \"GELU\"}, {\"type\": \"GELU\", \"approximate\": \"none\"},"
                                   " {\"type\": \"GELU\", \"approximate\": \"tanh\"},"
                      " {\"type\": \"SiLU\", \"inplace\": true}, {\"type\": \"LeakyReLU\"},"
                      " {\"type\": \"LeakyReLU\", \"negative_slope\": 0.2, \"inplace\": true},"
                                   " {\"type\": \"Identity\"},"
                      " {\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 3}]");
    JobSpec *s = spec_example_parse(t);
    free(t);
    static const SpecLayerType types[] = {SPEC_LAYER_GELU,       SPEC_LAYER_GELU,
                                          SPEC_LAYER_GELU,       SPEC_LAYER_SILU,
                                          SPEC_LAYER_LEAKY_RELU, SPEC_LAYER_LEAKY_RELU,
                                          SPEC_LAYER_IDENTITY,   SPEC_LAYER_LINEAR};
    static const char *names[] = {"GELU", "GELU", "GELU", "SiLU", "LeakyReLU", "LeakyReLU",
                                  "Identity", "Linear"};
    cr_assert_eq(s->num_layers, 8);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(s->layers[i].type, types[i], "layer %d", i);
        cr_assert_str_eq(spec_layer_type_name(types[i]), names[i]);
    }
    cr_assert(!s->layers[0].gelu_tanh && !s->layers[1].gelu_tanh && s->layers[2].gelu_tanh);
    cr_assert_eq(s->layers[4].negative_slope, 0.01);
    cr_assert_eq(s->layers[5].negative_slope, 0.2);
    SpecModelSize size;
    SpecDataShape d = {.input_dtype = DTYPE_FLOAT32, .input_ndim = 1, .input_shape = {4},
                       .target_dtype = DTYPE_INT64, .num_classes = 3};
    cr_assert_eq(job_spec_check_shapes(s, &d, &size), 0, "%s", error_get());
    cr_assert_eq(size.parameters, 4 * 3 + 3);
    cr_assert(size.out_ndim == 2 && size.out_shape[1] == 3);

    /* the built layers carry the arguments: GELU tanh(1) is not GELU(1),
     * LeakyReLU(0.2)(-1) = -0.2 */
    Rng rng;
    rng_init(&rng, 0);
    Module *m = job_spec_build_model(s, &rng);
    cr_assert(m != NULL, "%s", error_get());
    for (int i = 0; i < 8; i++) cr_assert_str_eq(module_type(m->children[i]), names[i]);
    Tensor *x = tensor_from_string("[1, -1]", DTYPE_FLOAT64);
    Tensor *g = module_forward(m->children[0], x), *gt = module_forward(m->children[2], x);
    Tensor *lr = module_forward(m->children[5], x), *lr0 = module_forward(m->children[4], x);
    Tensor *id = module_forward(m->children[6], x);
    cr_assert_float_eq(tensor_get(g, 0), 0.8413447460685429, 1e-15);
    cr_assert_float_eq(tensor_get(gt, 0), 0.8411919906082768, 1e-15);
    cr_assert_float_eq(tensor_get(lr, 1), -0.2, 1e-15);
    cr_assert_float_eq(tensor_get(lr0, 1), -0.01, 1e-15);
    cr_assert(id == x);
    Tensor *ts[] = {x, g, gt, lr, lr0, id};
    for (int i = 0; i < 6; i++) tensor_release(ts[i]);
    module_free(m);
    job_spec_free(s);

    static const struct {
        const char *model, *want;
    } cases[] = {
        {"[{\"type\": \"GELU\", \"approximate\": \"exact\"}]",
         "model[0].approximate: expected \"none\" or \"tanh\", got \"exact\""},
        {"[{\"type\": \"Identity\"}, {\"type\": \"ReLU\"},"
         " {\"type\": \"GELU\", \"approximate\": true}]",
         "model[2].approximate: expected \"none\" or \"tanh\", got true"},
        {"[{\"type\": \"GELU\", \"approximate\": null}]",
         "model[0].approximate: expected \"none\" or \"tanh\", got null"},
        {"[{\"type\": \"GELU\", \"inplace\": true}]", "model[0].inplace: unknown field"},
        {"[{\"type\": \"LeakyReLU\", \"negative_slope\": \"0.1\"}]",
         "model[0].negative_slope: expected a number, got string"},
        {"[{\"type\": \"LeakyReLU\", \"negativ_slope\": 0.1}]",
         "model[0].negativ_slope: unknown field (did you mean 'negative_slope'?)"},
        {"[{\"type\": \"LeakyReLU\", \"inplace\": 1}]",
         "model[0].inplace: expected true or false, got number"},
        {"[{\"type\": \"SiLU\", \"beta\": 1}]", "model[0].beta: unknown field"},
        {"[{\"type\": \"Identity\", \"in_features\": 4}]",
         "model[0].in_features: unknown field"},
        {"[{\"type\": \"Gelu\"}]", "model[0]: unknown layer type 'Gelu' (did you mean 'GELU'?)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t = spec_example_variant(spec_example_mlp, "model", cases[i].model);
        spec_example_expect_error(t, cases[i].want, false);
        free(t);
    }
}

Test(spec, optimizer_errors) {
    static const struct {
        const char *opt, *want;
    } cases[] = {
        {"{\"type\": \"SGD\", \"lr\": -1}", "optimizer.lr: must be >= 0, got -1"},
        {"{\"type\": \"SGD\", \"lr\": 0.1, \"nesterov\": true}",
         "optimizer.nesterov: needs a momentum > 0 and zero dampening"},
        {"{\"type\": \"Adam\", \"betas\": [0.9, 1.0]}",
         "optimizer.betas[1]: must be in [0, 1), got 1"},
        {"{\"type\": \"Adam\", \"betas\": [0.9]}",
         "optimizer.betas: expected a list of 2 numbers"},
        {"{\"type\": \"Adagrad\"}",
         "optimizer.type: unknown optimizer 'Adagrad' (known: SGD, Adam, AdamW)"},
        {"{\"lr\": 1}", "optimizer.type: required"},
        {"\"SGD\"", "optimizer: expected an object, got string"},
        {"{\"type\": \"AdamW\", \"no_decay_1d\": 1}",
         "optimizer.no_decay_1d: expected true or false, got number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = spec_example_variant(spec_example_mlp, "optimizer", cases[i].opt);
        spec_example_expect_error(t, cases[i].want, false);
        free(t);
    }
    /* accuracy needs a classification loss */
    char *t = spec_example_variant(spec_example_mlp, "loss", "{\"type\": \"MSELoss\"}");
    char *t2 = spec_example_variant(t, "metrics", "[\"accuracy\"]");
    spec_example_expect_error(t2,
        "metrics[0]: accuracy needs a classification loss (CrossEntropyLoss or "
                              "NLLLoss), not MSELoss", true);
    free(t);
    free(t2);
}

Test(spec, invalid_json) {
    spec_example_expect_error("{\"epochs\": 1,\n  \"model\": [}", "invalid JSON: line 2, column",
                              false);
    spec_example_expect_error("{\"epochs\": 1, \"epochs\": 2}", "invalid JSON: line 1", false);
    spec_example_expect_error("[1, 2]", "job spec: expected an object, got array", true);
    spec_example_expect_error("", "invalid JSON: line 1", false);
    cr_assert_null(job_spec_parse_file("tests/fixtures/spec/no-such-job.json"));
    cr_assert_str_eq(error_get(),
                     "tests/fixtures/spec/no-such-job.json: No such file or directory");
}

/* ---- inline sources and relative paths ---- */

static char dir[64];

static void setup(void) { tmp_dir_make(dir, sizeof dir, "spec"); }

static void teardown(void) { tmp_dir_remove(dir); }

static void write_bytes(const char *name, const void *data, size_t n) {
    char p[256];
    tmp_dir_write_file(tmp_dir_path(dir, name, p, sizeof p), data, n);
}

Test(spec, inline_idx_relative_to_job_file, .init = setup, .fini = teardown) {
    /* 3 images of 4x4 and their labels, raw IDX */
    unsigned char img[16 + 3 * 16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 4};
    for (int i = 0; i < 3 * 16; i++) img[16 + i] = (unsigned char)(i * 5);
    unsigned char lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 1};
    write_bytes("images.idx", img, sizeof img);
    write_bytes("labels.idx", lab, sizeof lab);
    const char *job =
        "{\"data\": {\"train\": {\"format\": \"idx\", \"images\": \"images.idx\", "
        "\"labels\": \"labels.idx\"}, \"transforms\": [{\"type\": \"ToTensor\"}]},"
        " \"model\": [{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"in_features\": 16, "
        "\"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"},"
        " \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"batch_size\": 2,"
        " \"init\": \"w.safetensors\"}";
    write_bytes("job.json", job, strlen(job));
    char path[256], want[512];
    snprintf(path, sizeof path, "%s/job.json", dir);
    JobSpec *s = job_spec_parse_file(path);
    cr_assert(s != NULL, "%s", error_get());
    cr_assert_str_eq(s->name, "job"); /* from the file name */
    cr_assert_eq(s->train.kind, SPEC_SOURCE_IDX);
    snprintf(want, sizeof want, "%s/images.idx", dir);
    cr_assert_str_eq(s->train.images, want);
    snprintf(want, sizeof want, "%s/labels.idx", dir);
    cr_assert_str_eq(s->train.labels, want);
    snprintf(want, sizeof want, "%s/w.safetensors", dir);
    cr_assert_str_eq(s->init, want);

    Dataset *ds = job_spec_load_source(s, &s->train);
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->n, 3);
    cr_assert_eq(ds->num_classes, 3);
    cr_assert_eq(job_spec_check_data(s, ds, NULL), 0, "%s", error_get());
    dataset_free(ds);
    cr_assert_null(job_spec_load_source(s, &s->val));
    cr_assert_str_eq(error_get(), "data.val: no dataset given");
    job_spec_free(s);

    /* the same text without a base directory keeps the paths as written */
    s = job_spec_parse(job, strlen(job));
    cr_assert(s != NULL, "%s", error_get());
    cr_assert_str_eq(s->train.images, "images.idx");
    cr_assert_str_eq(s->init, "w.safetensors");
    job_spec_free(s);

    /* errors from a file start with its path */
    const char *bad = "{\"epochs\": 0}";
    write_bytes("job.json", bad, strlen(bad));
    cr_assert_null(job_spec_parse_file(path));
    snprintf(want, sizeof want, "%s: data: required", path);
    cr_assert_str_eq(error_get(), want);
}

Test(spec, inline_csv_regression, .init = setup, .fini = teardown) {
    const char *csv = "a,b,y,z\n1,2,3,4\n5,6,7,8\n9,10,11,12\n";
    write_bytes("data.csv", csv, strlen(csv));
    const char *job =
        "{\"data\": {\"train\": {\"format\": \"csv\", \"path\": \"data.csv\", "
        "\"feature_columns\": [\"a\", \"b\"], \"label_column\": \"y\"}},"
        " \"model\": [{\"type\": \"Linear\", \"in_features\": 2, \"out_features\": 1}],"
        " \"loss\": {\"type\": \"MSELoss\"}, \"optimizer\": {\"type\": \"Adam\"}, \"epochs\": 3}";
    JobSpec *s = job_spec_parse_in(job, strlen(job), dir);
    cr_assert(s != NULL, "%s", error_get());
    cr_assert_eq(s->train.kind, SPEC_SOURCE_CSV);
    cr_assert_eq(s->train.num_feature_columns, 2);
    cr_assert_str_eq(s->train.feature_columns[1], "b");
    cr_assert_eq(s->train.num_label_columns, 1);
    cr_assert_str_eq(s->train.label_columns[0], "y");
    cr_assert(!job_spec_uses_labels(s));
    Dataset *ds = job_spec_load_source(s, &s->train);
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(ds->n, 3);
    cr_assert_eq(ds->targets->dtype, DTYPE_FLOAT32);
    cr_assert_eq(ds->targets->ndim, 2);
    cr_assert_float_eq(tensor_get(ds->targets, 2), 11.0, 0);
    cr_assert_float_eq(tensor_get(ds->inputs, 3), 6.0, 0);
    cr_assert_eq(job_spec_check_data(s, ds, NULL), 0, "%s", error_get());
    dataset_free(ds);
    job_spec_free(s);

    /* two target columns as a list; the model gives one: mismatch */
    char *t = spec_example_variant(job, "data.train",
                      "{\"format\": \"csv\", \"path\": \"data.csv\", \"label_column\": [\"y\", "
                                   "\"z\"]}");
    s = job_spec_parse_in(t, strlen(t), dir);
    free(t);
    cr_assert(s != NULL, "%s", error_get());
    ds = job_spec_load_source(s, &s->train);
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(job_spec_check_data(s, ds, NULL), -1);
    cr_assert_str_eq(error_get(), "loss: MSELoss: the model's output [1, 1] does not match the "
                                  "targets [1, 2]");
    dataset_free(ds);
    job_spec_free(s);

    /* a missing file: the error names data.train and the file */
    t = spec_example_variant(job, "data.train.path", "\"missing.csv\"");
    s = job_spec_parse_in(t, strlen(t), dir);
    free(t);
    cr_assert(s != NULL, "%s", error_get());
    cr_assert_null(job_spec_load_source(s, &s->train));
    cr_assert(strncmp(error_get(), "data.train: ", 12) == 0 && strstr(error_get(), "missing.csv"),
              "%s", error_get());
    job_spec_free(s);

    /* a name is for the daemon */
    s = spec_example_parse(spec_example_mlp);
    cr_assert_null(job_spec_load_source(s, &s->train));
    cr_assert(strncmp(error_get(), "data.train: 't' names a dataset of the daemon", 45) == 0,
              "%s", error_get());
    job_spec_free(s);
}

Test(spec, inline_npy) {
    const char *job =
        "{\"data\": {\"train\": {\"format\": \"npy\", \"inputs\": \"x_f4.npy\", "
        "\"targets\": \"y_f4_2.npy\"}, \"val\": {\"format\": \"npy\", \"inputs\": "
        "\"/abs/x.npy\", \"targets\": \"/abs/y.npy\"}},"
        " \"model\": [{\"type\": \"Linear\", \"in_features\": 3, \"out_features\": 2}],"
        " \"loss\": {\"type\": \"L1Loss\", \"reduction\": \"sum\"},"
        " \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1}";
    JobSpec *s = job_spec_parse_in(job, strlen(job), "tests/fixtures/npy/");
    cr_assert(s != NULL, "%s", error_get());
    cr_assert_str_eq(s->train.inputs, "tests/fixtures/npy/x_f4.npy");
    cr_assert_str_eq(s->val.inputs, "/abs/x.npy"); /* absolute paths stay */
    cr_assert_eq(s->reduction, REDUCTION_SUM);
    Dataset *ds = job_spec_load_source(s, &s->train);
    cr_assert(ds != NULL, "%s", error_get());
    cr_assert_eq(job_spec_check_data(s, ds, NULL), 0, "%s", error_get());
    dataset_free(ds);
    job_spec_free(s);
}

/* ---- every field, every wrong type ---- */

/* Replaces each value of the example in turn by values of every JSON type;
 * a spec that fails must name the replaced value, or a part of the spec
 * around it (its path is a prefix of the other), and nothing crashes. */
static int bad_paths;

static void try_substitutes(json_t *root, json_t *parent, const char *key, size_t index,
                            const char *path) {
    static const char *subs[] = {"null", "\"x\"", "1.5", "-1", "0", "[]", "{}", "true",
                                 "[{}]", "[\"accuracy\", 1]"};
    json_t *orig = key ? json_object_get(parent, key) : json_array_get(parent, index);
    json_incref(orig);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        json_t *sub = json_loads(subs[i], JSON_DECODE_ANY, NULL);
        cr_assert(sub != NULL);
        if (key)
            json_object_set_new(parent, key, sub);
        else
            json_array_set_new(parent, index, sub);
        char *text = json_dumps(root, 0);
        JobSpec *s = job_spec_parse(text, strlen(text));
        free(text);
        if (s) {
            job_spec_free(s);
            continue;
        }
        const char *err = error_get();
        size_t n = strcspn(err, ": ");
        bool related = (strlen(path) <= n && strncmp(err, path, strlen(path)) == 0) ||
                       (n <= strlen(path) && strncmp(err, path, n) == 0);
        if (!related) {
            bad_paths++;
            cr_log_error("%s = %s: error names another place: %s", path, subs[i], err);
        }
    }
    if (key)
        json_object_set(parent, key, orig);
    else
        json_array_set(parent, index, orig);
    json_decref(orig);
}

static void walk(json_t *root, json_t *node, const char *path) {
    char p[256];
    if (json_is_object(node)) {
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(node, tmp, k, v) {
            if (path[0])
                snprintf(p, sizeof p, "%s.%s", path, k);
            else
                snprintf(p, sizeof p, "%s", k);
            walk(root, v, p);
            try_substitutes(root, node, k, 0, p);
        }
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            snprintf(p, sizeof p, "%s[%zu]", path, i);
            walk(root, json_array_get(node, i), p);
            try_substitutes(root, node, NULL, i, p);
        }
    }
}

Test(spec, every_field_wrong_type_names_its_path) {
    json_t *root = json_loads(spec_example_design, 0, NULL);
    cr_assert(root != NULL);
    bad_paths = 0;
    walk(root, root, "");
    json_decref(root);
    cr_assert_eq(bad_paths, 0, "%d substitutions gave an error about another place", bad_paths);
}

/* CrossEntropyLoss's label_smoothing and ignore_index, NLLLoss's
 * ignore_index: torch's defaults, the values reaching job_spec_loss, and
 * errors naming the field. */
Test(spec, class_loss_options) {
    JobSpec *s = spec_example_parse(spec_example_mlp);
    cr_assert_eq(s->class_loss.ignore_index, -100);
    cr_assert_eq(s->class_loss.label_smoothing, 0.0);
    job_spec_free(s);

    char *t = spec_example_variant(spec_example_mlp, "loss",
                                   "{\"type\": \"CrossEntropyLoss\", \"label_smoothing\": 0.25, "
                                   "\"ignore_index\": 2}");
    s = spec_example_parse(t);
    free(t);
    cr_assert_eq(s->class_loss.ignore_index, 2);
    cr_assert_eq(s->class_loss.label_smoothing, 0.25);
    /* row 1's target is ignored; row 0 (uniform logits) costs log 3 whatever eps */
    Tensor *y = tensor_from_string("[[0, 0, 0], [9, -4, 1]]", DTYPE_FLOAT64);
    Tensor *lab = tensor_from_string("[1, 2]", DTYPE_INT64);
    cr_assert(y && lab, "%s", error_get());
    Tensor *loss = job_spec_loss(s, y, lab);
    cr_assert(loss != NULL, "%s", error_get());
    cr_expect(fabs(tensor_item(loss) - log(3.0)) < 1e-15, "loss %.17g", tensor_item(loss));
    tensor_release(loss), tensor_release(y), tensor_release(lab);
    job_spec_free(s);

    t = spec_example_variant(spec_example_mlp, "loss",
                             "{\"type\": \"NLLLoss\", \"ignore_index\": 0}");
    s = spec_example_parse(t);
    free(t);
    cr_assert_eq(s->class_loss.ignore_index, 0);
    job_spec_free(s);

    static const struct {
        const char *loss, *path, *want;
    } bad[] = {
        {"{\"type\": \"CrossEntropyLoss\", \"label_smoothing\": 1.5}", "loss.label_smoothing",
         "loss.label_smoothing: must be in [0, 1], got 1.5"},
        {"{\"type\": \"CrossEntropyLoss\", \"label_smoothing\": -0.1}", "loss.label_smoothing",
         "loss.label_smoothing: must be in [0, 1], got -0.1"},
        {"{\"type\": \"CrossEntropyLoss\", \"label_smoothing\": \"0.1\"}", "loss.label_smoothing",
         "loss.label_smoothing: expected a number, got string"},
        {"{\"type\": \"CrossEntropyLoss\", \"ignore_index\": 2.5}", "loss.ignore_index",
         "loss.ignore_index: expected an integer, got 2.5"},
        {"{\"type\": \"CrossEntropyLoss\", \"ignore_index\": \"-100\"}", "loss.ignore_index",
         "loss.ignore_index: expected an integer, got string"},
        {"{\"type\": \"NLLLoss\", \"label_smoothing\": 0.1}", "loss.label_smoothing",
         "loss.label_smoothing: unknown field (NLLLoss takes type, reduction, ignore_index)"},
        {"{\"type\": \"MSELoss\", \"ignore_index\": 0}", "loss.ignore_index",
         "loss.ignore_index: unknown field (MSELoss takes type, reduction)"},
        {"{\"type\": \"CrossEntropyLoss\", \"label_smothing\": 0.1}", "loss.label_smothing",
         "loss.label_smothing: unknown field (did you mean 'label_smoothing'?)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t = spec_example_variant(spec_example_mlp, "loss", bad[i].loss);
        spec_example_expect_error(t, bad[i].want, true);
        cr_assert_str_eq(error_last()->path, bad[i].path, "%s", bad[i].loss);
        free(t);
    }
}

/* issue 13's schedulers: the parsed config, and each error naming its path. */
Test(spec, per_step_schedulers) {
    char *t = spec_example_variant(spec_example_mlp, "scheduler",
                      "{\"type\": \"SequentialLR\", \"interval\": \"step\", \"milestones\": [5], "
                      "\"schedulers\": [{\"type\": \"LinearLR\", \"start_factor\": 0.1}, "
                      "{\"type\": \"OneCycleLR\", \"max_lr\": 0.5, \"anneal_strategy\": "
                                   "\"linear\"}]}");
    JobSpec *s = spec_example_parse(t);
    free(t);
    const LrSchedulerConfig *c = &s->lr_scheduler;
    cr_assert_eq(c->type, LR_SCHEDULER_SEQUENTIAL);
    cr_assert_eq(c->interval, LR_INTERVAL_STEP);
    cr_assert_eq(c->n_schedulers, 2);
    cr_assert_eq(c->n_milestones, 1);
    cr_assert_eq(c->milestones[0], 5);
    cr_assert_eq(c->schedulers[0].start_factor, 0.1);
    cr_assert_eq(c->schedulers[0].total_iters, 5);
    cr_assert_eq(c->schedulers[1].max_lr, 0.5);
    cr_assert(c->schedulers[1].anneal_linear);
    cr_assert(c->schedulers[1].cycle_momentum);
    /* the OneCycleLR's 30 steps: 3 epochs of 10 batches; 5 + 30 steps run */
    s->epochs = 3;
    LrScheduler *sched;
    cr_assert_eq(job_spec_build_lr_scheduler(s, 0.1, 10, &sched), 0, "%s", error_get());
    cr_assert(lr_scheduler_per_step(sched));
    for (int i = 0; i < 35; i++) cr_assert_eq(lr_scheduler_step(sched), 0, "%d: %s", i, error_get());
    cr_assert_eq(lr_scheduler_step(sched), -1);
    cr_assert_str_eq(error_get(), "SequentialLR at epoch 36: OneCycleLR: tried to step 32 times, "
                                  "but total_steps is 30");
    lr_scheduler_free(sched);
    job_spec_free(s);

    static const struct {
        const char *sched, *want;
    } bad[] = {
        {"{\"type\": \"OneCycle\", \"max_lr\": 1}",
         "scheduler.type: unknown scheduler 'OneCycle' (did you mean 'OneCycleLR'?)"},
        {"{\"type\": \"Warmup\"}",
         "scheduler.type: unknown scheduler 'Warmup' (known: LambdaLR, StepLR, MultiStepLR, "
         "ExponentialLR, CosineAnnealingLR, LinearLR, OneCycleLR, SequentialLR)"},
        {"{\"type\": \"LinearLR\", \"start_factor\": 0}",
         "scheduler.start_factor: must be above 0 and at most 1, got 0"},
        {"{\"type\": \"LinearLR\", \"interval\": \"batch\"}",
         "scheduler.interval: unknown interval 'batch' (known: epoch, step)"},
        {"{\"type\": \"OneCycleLR\"}", "scheduler.max_lr: required"},
        {"{\"type\": \"OneCycleLR\", \"max_lr\": 1, \"pct_start\": 1.5}",
         "scheduler.pct_start: must be in [0, 1], got 1.5"},
        {"{\"type\": \"OneCycleLR\", \"max_lr\": 1, \"anneal_strategy\": \"exp\"}",
         "scheduler.anneal_strategy: unknown anneal_strategy 'exp' (known: cos, linear)"},
        {"{\"type\": \"OneCycleLR\", \"max_lr\": 1, \"total_steps\": 9, \"epochs\": 3}",
         "scheduler.total_steps: give total_steps or epochs and steps_per_epoch, not both"},
        {"{\"type\": \"SequentialLR\", \"milestones\": [], \"schedulers\": "
         "[{\"type\": \"StepLR\", \"step_size\": 0}]}",
         "scheduler.schedulers[0].step_size: must be >= 1, got 0"},
        {"{\"type\": \"SequentialLR\", \"milestones\": [3], \"schedulers\": "
         "[{\"type\": \"LinearLR\", \"interval\": \"step\"}, {\"type\": \"LinearLR\"}]}",
         "scheduler.schedulers[0].interval: only the top-level scheduler has an interval; "
         "SequentialLR's schedulers step when it does"},
        {"{\"type\": \"SequentialLR\", \"milestones\": [], \"schedulers\": "
         "[{\"type\": \"LinearLR\"}, {\"type\": \"LinearLR\"}]}",
         "scheduler.milestones: 2 schedulers need 1 milestones (the epochs or steps where the "
         "next takes over), got 0"},
        {"{\"type\": \"SequentialLR\", \"milestones\": [4, 4], \"schedulers\": "
         "[{\"type\": \"LinearLR\"}, {\"type\": \"LinearLR\"}, {\"type\": \"LinearLR\"}]}",
         "scheduler.milestones[1]: must be above 4 (milestones increase, from 1), got 4"},
        {"{\"type\": \"SequentialLR\", \"milestones\": [0], \"schedulers\": "
         "[{\"type\": \"LinearLR\"}, {\"type\": \"LinearLR\"}]}",
         "scheduler.milestones[0]: must be above 0 (milestones increase, from 1), got 0"},
        {"{\"type\": \"LambdaLR\", \"lr_lambda\": \"1 / epoch\"}",
         "scheduler.lr_lambda: at epoch 0: division by zero at position 2"},
        {"{\"type\": \"SequentialLR\", \"milestones\": [2], \"schedulers\": "
         "[{\"type\": \"LinearLR\"}, {\"type\": \"LambdaLR\", \"lr_lambda\": \"epoch - 1\"}]}",
         "scheduler.schedulers[1].lr_lambda: is -1 at epoch 0: the lr it scales must stay a "
         "finite number >= 0"},
        {"{\"type\": \"SequentialLR\", \"milestones\": [2], \"schedulers\": "
         "[{\"type\": \"SequentialLR\", \"milestones\": [], \"schedulers\": [{\"type\": "
         "\"LinearLR\"}]}, {\"type\": \"LinearLR\"}]}",
         "scheduler.schedulers[0]: a SequentialLR cannot hold another (torch's "
         "SequentialLR.step takes no epoch to restart it at a milestone)"},
        /* a scheduler that fails after what it had allocated (its
         * milestones): freed with the rest (LeakSanitizer watches) */
        {"{\"type\": \"SequentialLR\", \"milestones\": [2], \"schedulers\": "
         "[{\"type\": \"MultiStepLR\", \"milestones\": [1, 2, 3], \"gamma\": -1}, "
         "{\"type\": \"StepLR\", \"step_size\": 1}]}",
         "scheduler.schedulers[0].gamma: must be >= 0, got -1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = spec_example_variant(spec_example_mlp, "scheduler", bad[i].sched);
        spec_example_expect_error(text, bad[i].want, true);
        free(text);
    }
    /* a OneCycleLR of its own epochs, its steps per epoch the job's: not
     * known while parsing, and no reason to refuse (10 epochs of the 2^20
     * steps the parse check once took were past the limit) */
    char *cycle = spec_example_variant(spec_example_mlp, "scheduler",
                                       "{\"type\": \"OneCycleLR\", \"max_lr\": 0.1, "
                                       "\"epochs\": 10}");
    JobSpec *cs = spec_example_parse(cycle);
    cr_assert_eq(cs->lr_scheduler.epochs, 10);
    job_spec_free(cs);
    free(cycle);
}

/* accumulate_steps and no_decay_1d reach the trainer and the optimizer:
 * the optimizer lists matrices first, then biases (torch's two groups). */
Test(spec, accumulation_and_no_decay_groups) {
    expect_variant_error("accumulate_steps", "0", "accumulate_steps: must be >= 1, got 0", true);
    char *t = spec_example_variant(spec_example_mlp, "accumulate_steps", "4");
    char *t2 = spec_example_variant(t, "optimizer", "{\"type\": \"AdamW\", \"no_decay_1d\": true}");
    JobSpec *s = spec_example_parse(t2);
    free(t);
    free(t2);
    cr_assert_eq(s->accumulate_steps, 4);
    cr_assert(s->no_decay_1d);
    Rng rng;
    rng_init(&rng, 1);
    Module *m = job_spec_build_model(s, &rng);
    cr_assert(m != NULL, "%s", error_get());
    Optimizer *opt = job_spec_build_optimizer(s, m);
    cr_assert(opt != NULL, "%s", error_get());
    int matrices = 0;
    for (int i = 0; i < opt->n_params; i++) matrices += opt->params[i]->ndim >= 2;
    cr_assert_eq(opt->n_decay, matrices);
    for (int i = 0; i < opt->n_params; i++)
        cr_assert_eq(opt->params[i]->ndim >= 2, i < matrices, "parameter %d", i);
    cr_assert(matrices > 0 && matrices < opt->n_params);
    optimizer_free(opt);
    module_free(m);
    job_spec_free(s);
}

/* Conv2d's groups and dilation: parsed, measured (weight [O, C/G, kh, kw])
 * and built; "same" padding spans the dilated kernel. */
Test(spec, conv2d_groups_and_dilation) {
    char *t = spec_example_variant(spec_example_mlp, "model",
                      "[{\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 4, "
                                   "\"kernel_size\": 3, \"padding\": \"same\", \"dilation\": 2},"
                      " {\"type\": \"Conv2d\", \"in_channels\": 4, \"out_channels\": 8, "
                                   "\"kernel_size\": 3, \"groups\": 4, \"dilation\": [1, 2]},"
                                   " {\"type\": \"Flatten\"},"
                      " {\"type\": \"Linear\", \"in_features\": 4992, \"out_features\": 10}]");
    JobSpec *s = spec_example_parse(t);
    free(t);
    cr_assert_eq(s->layers[0].padding.h, 2);
    cr_assert_eq(s->layers[1].groups, 4);
    cr_assert_eq(s->layers[1].dilation.w, 2);
    SpecDataShape d = spec_example_mnist();
    d.input_dtype = DTYPE_FLOAT32; /* as if after ToTensor: [1, 28, 28] */
    d.input_ndim = 3;
    d.input_shape[0] = 1, d.input_shape[1] = d.input_shape[2] = 28;
    SpecModelSize z;
    /* 28x28 "same" -> 28x28; 3x3 dilated (1, 2) spans 3x5: 26x24; 8 * 26 * 24 = 4992 */
    cr_assert_eq(job_spec_check_shapes(s, &d, &z), 0, "%s", error_get());
    cr_assert_eq(z.parameters, (4 * 9 + 4) + (8 * 1 * 9 + 8) + (4992 * 10 + 10));
    Rng rng;
    rng_init(&rng, 1);
    Module *m = job_spec_build_model(s, &rng);
    cr_assert(m != NULL, "%s", error_get());
    cr_assert_eq(module_num_parameters(m), z.parameters);
    module_free(m);
    job_spec_free(s);
}

/* Image transforms: parsed into the per-sample list, before the batch
 * transforms, with torchvision's arguments; the shapes follow them. */
Test(spec, image_transforms) {
    char *t = spec_example_variant(spec_example_design, "data.transforms",
                                   "[{\"type\": \"RandomCrop\", \"size\": 24, \"padding\": [1, 2]},"
                                   " {\"type\": \"RandomHorizontalFlip\"},"
                      " {\"type\": \"Resize\", \"size\": [28, 28], \"antialias\": true},"
                                   " {\"type\": \"ToTensor\"},"
                      " {\"type\": \"Normalize\", \"mean\": [0.1307], \"std\": [0.3081]}]");
    char *t2 = spec_example_variant(t, "data.num_workers", "3");
    JobSpec *s = spec_example_parse(t2);
    free(t), free(t2);
    cr_assert_eq(s->augment.count, 3);
    cr_assert_eq(s->num_workers, 3);
    const Augment *a = s->augment.items;
    cr_assert(a[0].type == AUGMENT_RANDOM_CROP && a[0].size_h == 24 && a[0].size_w == 24);
    cr_assert(a[0].pad[0] == 1 && a[0].pad[1] == 2 && a[0].pad[2] == 1 && a[0].pad[3] == 2);
    cr_assert(a[1].type == AUGMENT_RANDOM_HORIZONTAL_FLIP && a[1].p == 0.5);
    cr_assert(a[2].size_h == 28 && a[2].size_w == 28);
    cr_assert_eq(s->transforms.count, 2);
    SpecDataShape d = spec_example_mnist();
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), 0, "%s", error_get());
    job_spec_free(s);

    static const struct {
        const char *transforms, *want;
    } cases[] = {
        {"[{\"type\": \"ToTensor\"}, {\"type\": \"RandomHorizontalFlip\"}]",
         "data.transforms[1]: RandomHorizontalFlip is done to each image as it is loaded: list "
         "it before ToTensor, Normalize and Flatten"},
        {"[{\"type\": \"RandomCrop\", \"size\": 24, \"padding\": [1, 2, 3]}]",
         "data.transforms[0].padding: expected an integer or a list of 2 or 4 integers"},
        {"[{\"type\": \"RandomHorizontalFlip\", \"p\": 2}]",
         "data.transforms[0].p: must be in [0, 1], got 2"},
        {"[{\"type\": \"Resize\", \"size\": 8, \"interpolation\": \"nearest\"}]",
         "data.transforms[0].interpolation: only torch's default 'bilinear' is supported, got "
         "\"nearest\""},
        {"[{\"type\": \"RandomCrop\", \"size\": 24, \"fill\": 3}]",
         "data.transforms[0].fill: only torch's default 0 is supported, got 3"},
        {"[{\"type\": \"CenterCrop\"}]", "data.transforms[0].size: required"},
        {"[{\"type\": \"RandomErasing\"}]", "data.transforms[0]: unknown transform "
                                            "'RandomErasing' (known: RandomCrop, "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_variant_error("data.transforms", cases[i].transforms, cases[i].want, false);
    /* a crop larger than the padded image, at the shape check */
    t = spec_example_variant(spec_example_design, "data.transforms",
                "[{\"type\": \"RandomCrop\", \"size\": 32, \"padding\": 1}, {\"type\": "
                "\"ToTensor\"}, {\"type\": \"Normalize\", \"mean\": [0.5], \"std\": [0.5]}]");
    s = spec_example_parse(t);
    free(t);
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_get(), "data.transforms[0] RandomCrop: size (32, 32) is larger than "
                                  "the padded image (30, 30)");
    cr_assert_str_eq(error_last()->path, "data.transforms[0]");
    /* token ids are no images */
    d.input_dtype = DTYPE_INT64;
    cr_assert_eq(job_spec_check_shapes(s, &d, NULL), -1);
    cr_assert_str_eq(error_get(), "data.transforms[0]: RandomCrop takes uint8 or float32 "
                                  "images, but the data are int64");
    job_spec_free(s);
}

/* "ranks" and "nodes": the global batch divides by the ranks, the ranks
 * by the nodes; errors give the numbers. */
Test(spec, ranks_and_nodes) {
    expect_variant_error("ranks", "3",
                         "batch_size: 64 (the global batch) does not divide by the 3 ranks (64 = "
                         "3 x 21 + 1); choose a multiple of 3",
                         true);
    expect_variant_error("ranks", "0", "ranks: must be >= 1, got 0", true);
    char *t = spec_example_variant(spec_example_design, "ranks", "4");
    char *t2 = spec_example_variant(t, "nodes", "3");
    spec_example_expect_error(t2,
        "nodes: 3 nodes for 4 ranks: each node runs the same number of ranks, "
                              "at least one",
                      true);
    free(t2);
    t2 = spec_example_variant(t, "nodes", "2");
    JobSpec *s = spec_example_parse(t2);
    cr_assert_eq(s->ranks, 4);
    cr_assert_eq(s->nodes, 2);
    job_spec_free(s);
    free(t), free(t2);
    s = spec_example_parse(spec_example_design);
    cr_assert_eq(s->ranks, 1, "one process unless asked");
    cr_assert_eq(s->nodes, 1);
    job_spec_free(s);
}

/* "bucket_cap_mb": DDP's argument, 25 MiB unless given, fractions kept. */
Test(spec, bucket_cap_mb) {
    JobSpec *s = spec_example_parse(spec_example_design);
    cr_assert_float_eq(s->bucket_cap_mb, 25.0, 0);
    job_spec_free(s);
    char *t = spec_example_variant(spec_example_design, "bucket_cap_mb", "0.5");
    s = spec_example_parse(t);
    cr_assert_float_eq(s->bucket_cap_mb, 0.5, 0);
    job_spec_free(s);
    free(t);
    expect_variant_error("bucket_cap_mb", "0",
                         "bucket_cap_mb: expected MiB, at least 4 bytes' worth and at most 65536, "
                         "got 0",
                         true);
    expect_variant_error("bucket_cap_mb", "1e6",
                         "bucket_cap_mb: expected MiB, at least 4 bytes' worth and at most 65536, "
                         "got 1e+06",
                         true);
    expect_variant_error("bucket_cap_mb", "\"25\"", "bucket_cap_mb: expected a number, got string",
                         true);
}

/* The example with two changes: a new string (free it). */
static char *variant2(const char *k1, const char *v1, const char *k2, const char *v2) {
    char *t = spec_example_variant(spec_example_design, k1, v1);
    char *t2 = spec_example_variant(t, k2, v2);
    free(t);
    return t2;
}

static void expect_variant2_error(const char *k1, const char *v1, const char *k2,
                                  const char *v2, const char *want) {
    char *t = variant2(k1, v1, k2, v2);
    spec_example_expect_error(t, want, true);
    free(t);
}

/* "gpus": N and "devices": one rank per GPU; "device": "cuda" with N ranks
 * is "gpus": N; a named GPU for several ranks, a GPU listed twice, a CPU
 * in "devices", two ways at once and a "ranks" that disagrees are refused. */
Test(spec, gpus_and_devices_give_one_rank_per_gpu) {
    char *t = spec_example_variant(spec_example_design, "gpus", "4");
    JobSpec *s = spec_example_parse(t);
    cr_assert_eq(s->ranks, 4);
    cr_assert_eq(s->gpus, 4);
    cr_assert(!s->device_auto);
    cr_assert_eq(s->device.type, DEVICE_CUDA);
    job_spec_free(s);
    free(t);
    t = spec_example_variant(spec_example_design, "devices", "[\"cuda:2\", \"cuda:0\"]");
    s = spec_example_parse(t);
    cr_assert_eq(s->ranks, 2);
    cr_assert_eq(s->gpus, 0);
    cr_assert_eq(s->num_devices, 2);
    cr_assert_eq(s->devices[0].index, 2);
    cr_assert_eq(s->devices[1].index, 0);
    cr_assert_eq(s->device.index, 2);
    job_spec_free(s);
    free(t);
    t = variant2("device", "\"cuda\"", "ranks", "2");
    s = spec_example_parse(t);
    cr_assert_eq(s->gpus, 2);
    job_spec_free(s);
    free(t);
    t = spec_example_variant(spec_example_design, "device", "\"cuda\"");
    s = spec_example_parse(t);
    cr_assert_eq(s->gpus, 0, "one rank on \"cuda\" is cuda:0, as torch's");
    job_spec_free(s);
    free(t);
    expect_variant2_error("device", "\"cuda:1\"", "ranks", "2",
                          "device: \"cuda:1\" is one GPU for 2 ranks: one rank per GPU; ask for "
                          "\"gpus\": 2, or name them in \"devices\"");
    expect_variant_error("devices", "[\"cuda:0\", \"cuda\"]",
                         "devices[1]: cuda is listed twice: one rank per GPU", true);
    expect_variant_error("devices", "[\"cpu\"]",
                         "devices[0]: expected a GPU, \"cuda:N\" (ranks on the CPU: \"ranks\": N)",
                         true);
    expect_variant_error("devices", "[]", "devices: expected 1 to 16 GPUs, got 0", true);
    expect_variant_error("gpus", "3",
                         "batch_size: 64 (the global batch) does not divide by the 3 ranks (64 = "
                         "3 x 21 + 1); choose a multiple of 3",
                         true);
    expect_variant2_error("gpus", "2", "device", "\"cpu\"",
                          "gpus: asks for GPUs, but \"device\" says \"cpu\": leave \"device\" "
                          "out");
    expect_variant2_error("gpus", "2", "devices", "[\"cuda:0\"]",
                          "devices: give \"gpus\" (any GPUs) or \"devices\" (those), not "
                          "both");
    expect_variant2_error("gpus", "2", "ranks", "4",
                          "ranks: 4 ranks, but \"gpus\" gives 2 GPUs: one rank per GPU");
    expect_variant2_error("devices", "[\"cuda:0\", \"cuda:1\"]", "nodes", "2",
                          "nodes: \"devices\" names the GPUs of one machine; across 2 nodes ask "
                          "for \"gpus\": 2");
}
