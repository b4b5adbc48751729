/* test_resnet.c - torchvision's ResNets (core/nn/resnet_block.c, resnet.c,
 * core/spec_resnet.c) against PyTorch (tests/fixtures/gen_resnet.py):
 * state_dict names and shapes, parameter, buffer and activation counts from
 * the job spec's sizes; ResNet-18 (CIFAR stem) logits, loss, every
 * parameter's gradient, the running statistics and 5 SGD steps from the
 * same weights; ResNet-50 (Bottleneck, torchvision's stem) forward and
 * gradients; the blocks' gradients by finite differences in float64;
 * torchvision's initialisation; blocks in a layer list.
 *
 * The weights are not in the fixture: both sides compute them from the
 * integer formula of gen_resnet.py (resnet_fill here), bit for bit.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "core/optim/optimizer.h"
#include "core/spec.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

/* ---- the formula of gen_resnet.py ---- */

#define INPUT_K 100000
#define SUMMARY 5 /* sum, sum of squares, t[0], t[n / 3], t[n - 1] */

/* u in [-1, 1) for element i of tensor k: an integer hash, exact. */
static double fill_value(int64_t k, int64_t i) {
    uint32_t h = (uint32_t)i * 0x9E3779B1u + (uint32_t)(k + 1) * 0x85EBCA77u;
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    h ^= h >> 16;
    return 2.0 * (double)h / 4294967296.0 - 1.0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* t[i] = offset + u(k, i) / divisor, rounded to float32 as numpy's astype. */
static void fill_tensor(Tensor *t, int64_t k, double offset, double divisor) {
    int64_t n = tensor_numel(t);
    double *v = malloc((size_t)n * sizeof *v);
    cr_assert(v != NULL);
    for (int64_t i = 0; i < n; i++) v[i] = offset + fill_value(k, i) / divisor;
    Tensor *host = tensor_from_doubles(v, t->ndim, t->shape, DTYPE_FLOAT32);
    cr_assert(host && tensor_copy_(t, host) == 0, "%s", error_get());
    tensor_release(host);
    free(v);
}

static Tensor *make_input(int ndim, const int64_t *shape) {
    Tensor *x = tensor_empty(ndim, shape, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert(x != NULL, "%s", error_get());
    fill_tensor(x, INPUT_K, 0, 1);
    return x;
}

/* ---- summaries of lists of tensors ---- */

/* The model's parameters, their gradients, or its float buffers, in
 * state_dict order; weight[i] (when not NULL) says whether the name of
 * out[i] ends with "weight". */
typedef enum { PARAMS, GRADS, STATS } Which;

static int collect(Module *m, Which which, Tensor **out, bool *weight, int cap) {
    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert(module_state_dict(m, &sd) == 0, "%s", error_get());
    int n = 0;
    for (int e = 0; e < sd.count; e++) {
        Tensor *t = module_find(m, sd.names[e]);
        bool param = t->requires_grad;
        if ((which == STATS) == param || !dtype_is_float(t->dtype)) continue;
        cr_assert(n < cap);
        if (weight) weight[n] = ends_with(sd.names[e], "weight");
        out[n++] = which == GRADS ? t->grad : t;
        cr_assert(out[n - 1] != NULL, "'%s' has no gradient", sd.names[e]);
    }
    tensor_dict_free(&sd);
    return n;
}

/* Every parameter k (state_dict order) from the formula: weights of 2+ dims
 * u / sqrt(fan_in), 1-d weights 1 + u / 4, biases u / 10. */
static void resnet_fill(Module *m) {
    Tensor *ps[512];
    bool weight[512];
    int n = collect(m, PARAMS, ps, weight, 512);
    for (int k = 0; k < n; k++) {
        Tensor *p = ps[k];
        if (p->ndim >= 2)
            fill_tensor(p, k, 0, sqrt((double)(tensor_numel(p) / p->shape[0])));
        else
            fill_tensor(p, k, weight[k] ? 1 : 0, weight[k] ? 4 : 10);
    }
}

static void summarize(const Tensor *t, double row[SUMMARY]) {
    int64_t n = tensor_numel(t);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = tensor_get(t, i);
        s += v;
        s2 += v * v;
    }
    double r[SUMMARY] = {s, s2, tensor_get(t, 0), tensor_get(t, n / 3), tensor_get(t, n - 1)};
    memcpy(row, r, sizeof r);
}

/* Each tensor's summary against torch's row: within rtol, relative to the
 * value or to the tensor's own scale (its 2-norm for the sum, its rms for
 * an entry), so that a sum that cancels to ~0 is not held to 1e-4 of 0. */
static void assert_summaries(json_t *kase, const char *key, Module *m, Which which,
                             double rtol) {
    Tensor *want = fixture_tensor(kase, key);
    Tensor *ts[512];
    int n = collect(m, which, ts, NULL, 512);
    cr_assert_eq(want->shape[0], n, "%s: %d tensors, torch has %lld", key, n,
                 (long long)want->shape[0]);
    static const char *what[SUMMARY] = {"sum", "sum of squares", "[0]", "[n/3]", "[n-1]"};
    for (int i = 0; i < n; i++) {
        double got[SUMMARY], w[SUMMARY];
        summarize(ts[i], got);
        for (int j = 0; j < SUMMARY; j++) w[j] = tensor_get(want, (int64_t)i * SUMMARY + j);
        double norm = sqrt(w[1]), rms = sqrt(w[1] / (double)tensor_numel(ts[i]));
        for (int j = 0; j < SUMMARY; j++) {
            double scale = j == 0 ? norm : j == 1 ? 0 : rms;
            cr_assert(fabs(got[j] - w[j]) <= rtol * (fabs(w[j]) + scale),
                      "%s: tensor %d %s: %.9g, torch %.9g", key, i, what[j], got[j], w[j]);
        }
    }
    tensor_release(want);
}

/* ---- models ---- */

/* A job spec around `model` (an arch or a layer list) for a batch of
 * batch_size. */
static JobSpec *spec_with(const char *model, int64_t batch_size) {
    char text[2048];
    snprintf(text, sizeof text,
             "{\"data\": {\"train\": \"t\"}, \"model\": %s, \"loss\": {\"type\": "
             "\"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1}, "
             "\"epochs\": 1, \"batch_size\": %lld}",
             model, (long long)batch_size);
    JobSpec *s = job_spec_parse(text, strlen(text));
    cr_assert(s != NULL, "%s", error_get());
    return s;
}

/* The job spec's sizes of a model for float images of batch shape x. */
static SpecModelSize arch_size(const char *model, const int64_t *x) {
    JobSpec *s = spec_with(model, x[0]);
    SpecDataShape d = {.input_dtype = DTYPE_FLOAT32,
                       .input_ndim = 3,
                       .input_shape = {x[1], x[2], x[3]},
                       .target_dtype = DTYPE_INT64,
                       .num_classes = 2};
    SpecModelSize size;
    cr_assert(job_spec_check_shapes(s, &d, &size) == 0, "%s", error_get());
    job_spec_free(s);
    return size;
}

static Module *build_model(const char *model, Rng *rng) {
    JobSpec *s = spec_with(model, 1);
    Module *m = job_spec_build_model(s, rng);
    cr_assert(m != NULL, "%s", error_get());
    job_spec_free(s);
    return m;
}

static const struct {
    const char *fixture, *arch;
    int64_t classes;
} models[] = {
    {"names_resnet18", "{\"arch\": \"resnet18\", \"num_classes\": 10, \"small_input\": true}", 10},
    {"names_resnet34",
     "{\"arch\": \"resnet34\", \"num_classes\": 100, \"in_channels\": 1, \"small_input\": true}",
     100},
    {"names_resnet50", "{\"arch\": \"resnet50\", \"num_classes\": 7}", 7},
};

/* The spec's sizes, from the config alone, against torch's counts. */
Test(resnet_torch, spec_sizes) {
    json_t *fx = fixture_load("resnet");
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        json_t *kase = fixture_case(fx, models[i].fixture);
        json_t *bs = json_object_get(kase, "batch_shape");
        int64_t x[4];
        for (int d = 0; d < 4; d++) x[d] = json_integer_value(json_array_get(bs, (size_t)d));
        SpecModelSize size = arch_size(models[i].arch, x);
        const char *name = models[i].fixture;
        cr_assert_eq(size.parameters, (int64_t)fixture_number(kase, "parameters"), "%s", name);
        cr_assert_eq(size.buffers, (int64_t)fixture_number(kase, "buffers"), "%s", name);
        cr_assert_eq(size.activations, (int64_t)fixture_number(kase, "activations"), "%s", name);
        cr_assert(size.out_ndim == 2 && size.out_shape[0] == x[0] &&
                  size.out_shape[1] == models[i].classes);
    }
    json_decref(fx);
}

/* The built model's names, shapes and counts against torch's. */
static void assert_like_torch(Module *m, json_t *fx, const char *names_case) {
    json_t *kase = fixture_case(fx, names_case);
    TensorDict sd;
    tensor_dict_init(&sd);
    cr_assert(module_state_dict(m, &sd) == 0, "%s", error_get());
    fixture_assert_state_dict(&sd, kase);
    int64_t params = (int64_t)fixture_number(kase, "parameters"), all = 0;
    for (int e = 0; e < sd.count; e++) all += tensor_numel(sd.tensors[e]);
    cr_assert_eq(module_num_parameters(m), params, "%s", names_case);
    cr_assert_eq(all - params, (int64_t)fixture_number(kase, "buffers"), "%s", names_case);
    tensor_dict_free(&sd);
}

/* One training run from the fixture's weights, after the model's names and
 * counts: step 0's logits, loss, gradients and running statistics, then the
 * losses of `steps` SGD steps and the final parameters and statistics;
 * against torch's run in float64 on the same float32 weights. */
static void train_parity(const char *name, int depth, int64_t classes, bool small_input,
                         bool train, int ndim, const int64_t *xshape, int steps) {
    Rng rng;
    rng_init(&rng, 1);
    Module *m = nn_resnet(depth, classes, 3, small_input, &rng);
    cr_assert(m != NULL, "%s", error_get());
    json_t *fx = fixture_load("resnet");
    json_t *kase = fixture_case(fx, name);
    char names_case[32];
    snprintf(names_case, sizeof names_case, "names_%s", name);
    assert_like_torch(m, fx, names_case);
    resnet_fill(m);
    module_train(m, train);
    Tensor *x = make_input(ndim, xshape), *labels = fixture_tensor(kase, "labels");
    int n;
    Tensor **params = module_parameters(m, &n);
    Optimizer *opt = sgd_new(params, n, (SgdOptions){.lr = 0.001, .momentum = 0.9,
                                                     .weight_decay = 5e-4});
    cr_assert(opt != NULL, "%s", error_get());
    double losses[8];
    for (int step = 0; step < steps; step++) {
        optimizer_zero_grad(opt);
        Tensor *logits = module_forward(m, x);
        Tensor *loss = tensor_cross_entropy(logits, labels, REDUCTION_MEAN);
        cr_assert(loss && tensor_backward(loss) == 0, "%s", error_get());
        losses[step] = tensor_item(loss);
        if (step == 0) {
            fixture_assert_close(kase, "logits", logits, 1e-4, 1e-5, name);
            cr_assert_float_eq(losses[0], fixture_number(kase, "loss"), 1e-4 * losses[0]);
            assert_summaries(kase, "grads", m, GRADS, 1e-4);
            assert_summaries(kase, "stats", m, STATS, 1e-4);
        }
        tensor_release(logits);
        tensor_release(loss);
        cr_assert(optimizer_step(opt) == 0, "%s", error_get());
    }
    if (steps > 1) {
        Tensor *got = tensor_from_doubles(losses, 1, (int64_t[]){steps}, DTYPE_FLOAT64);
        fixture_assert_close(kase, "losses", got, 1e-4, 0, name);
        tensor_release(got);
        assert_summaries(kase, "params_after", m, PARAMS, 1e-4);
        assert_summaries(kase, "stats_after", m, STATS, 1e-4);
        cr_assert_eq(tensor_item(module_find(m, "layer4.1.bn2.num_batches_tracked")), steps);
    }
    optimizer_free(opt);
    free(params);
    module_free(m);
    tensor_release(x), tensor_release(labels);
    json_decref(fx);
}

Test(resnet_torch, resnet18_small_input_five_sgd_steps) {
    train_parity("resnet18", 18, 10, true, true, SHAPE(2, 3, 16, 16), 5);
}

/* Eval mode: train-mode BatchNorm over 2 images at layer4's 1x1 planes is
 * too ill-conditioned for float32 parity (torch's own float32 run misses
 * its float64 logits by tens of percent). */
Test(resnet_torch, resnet50_bottlenecks_forward_and_gradients) {
    train_parity("resnet50", 50, 7, false, false, SHAPE(2, 3, 32, 32), 1);
}


/* ---- the blocks: gradients by finite differences in float64 ---- */

static Tensor *block_fn(Tensor **in, void *ctx) { return module_forward(ctx, in[0]); }

/* d/d input and d/d every parameter of a train-mode block (batch
 * statistics in its norms), from its own initialisation; the parameters
 * are perturbed in place. */
static void block_gradcheck(const char *name, Module *block, int ndim, const int64_t *xshape) {
    cr_assert(block != NULL, "%s", error_get());
    cr_assert(module_to_dtype(block, DTYPE_FLOAT64) == 0, "%s", error_get());
    int n;
    Tensor **params = module_parameters(block, &n);
    Tensor *in[16] = {gradcheck_input(ndim, xshape, -1, 1, 21)};
    cr_assert(n < 16);
    for (int i = 0; i < n; i++) in[i + 1] = params[i];
    gradcheck(name, block_fn, block, n + 1, in);
    tensor_release(in[0]);
    free(params);
    module_free(block);
}

Test(resnet_blocks, basic_block_gradcheck_with_downsample) {
    Rng rng;
    rng_init(&rng, 2);
    block_gradcheck("BasicBlock(2, 3, stride=2)", nn_basic_block(2, 3, 2, &rng),
                    SHAPE(2, 2, 5, 5));
}

Test(resnet_blocks, basic_block_gradcheck_identity_shortcut) {
    Rng rng;
    rng_init(&rng, 3);
    block_gradcheck("BasicBlock(3, 3)", nn_basic_block(3, 3, 1, &rng), SHAPE(2, 3, 4, 3));
}

Test(resnet_blocks, bottleneck_gradcheck) {
    Rng rng;
    rng_init(&rng, 4);
    block_gradcheck("Bottleneck(4, 2)", nn_bottleneck(4, 2, 1, &rng), SHAPE(2, 4, 3, 3));
}

/* ---- blocks in a layer list ---- */

static const char *block_list =
    "[{\"type\": \"Conv2d\", \"in_channels\": 3, \"out_channels\": 8, \"kernel_size\": 3, "
    "\"padding\": 1, \"bias\": false}, {\"type\": \"BatchNorm2d\", \"num_features\": 8}, "
    "{\"type\": \"ReLU\"}, {\"type\": \"BasicBlock\", \"inplanes\": 8, \"planes\": 8}, "
    "{\"type\": \"BasicBlock\", \"inplanes\": 8, \"planes\": 16, \"stride\": 2}, "
    "{\"type\": \"Bottleneck\", \"inplanes\": 16, \"planes\": 4}, "
    "{\"type\": \"AdaptiveAvgPool2d\", \"output_size\": 1}, {\"type\": \"Flatten\"}, "
    "{\"type\": \"Linear\", \"in_features\": 16, \"out_features\": 10}]";

/* A downsample only where _make_layer makes one (the strided block, not
 * the Bottleneck whose 16 inplanes are its 4 * 4 outputs); names, counts
 * and the spec's sizes as torch's; the built list runs. */
Test(resnet_blocks, in_a_layer_list) {
    json_t *fx = fixture_load("resnet");
    SpecModelSize size = arch_size(block_list, (const int64_t[]){4, 3, 12, 12});
    json_t *kase = fixture_case(fx, "names_layer_list");
    cr_assert_eq(size.parameters, (int64_t)fixture_number(kase, "parameters"));
    cr_assert_eq(size.buffers, (int64_t)fixture_number(kase, "buffers"));
    cr_assert_eq(size.activations, (int64_t)fixture_number(kase, "activations"));

    Rng rng;
    rng_init(&rng, 1);
    Module *m = build_model(block_list, &rng);
    assert_like_torch(m, fx, "names_layer_list");
    Tensor *x = make_input(SHAPE(4, 3, 12, 12));
    Tensor *y = module_forward(m, x);
    cr_assert(y != NULL, "%s", error_get());
    char s[64];
    cr_assert_str_eq(tensor_shape_str(y, s, sizeof s), "[4, 10]");

    /* a wrong input names the block's layer */
    Tensor *bad = tensor_zeros(SHAPE(4, 5, 12, 12), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(module_forward(m->children[4], bad));
    cr_assert_str_eq(error_get(), "model[4].conv1 Conv2d: in_channels=8 but its input has 5 "
                                  "channels (input [4, 5, 12, 12])");
    tensor_release(bad), tensor_release(x), tensor_release(y);
    module_free(m);
    json_decref(fx);
}

/* ---- torchvision's initialisation and bad arguments ---- */

static void mean_std(const Tensor *t, double *mean, double *std) {
    double row[SUMMARY], n = (double)tensor_numel(t);
    summarize(t, row);
    *mean = row[0] / n;
    *std = sqrt(row[1] / n - *mean * *mean);
}

/* Convs kaiming_normal_(mode='fan_out', nonlinearity='relu'): std
 * sqrt(2 / (out_channels * kh * kw)); norms weight 1, bias 0. */
Test(resnet_blocks, torchvision_initialisation) {
    Rng rng;
    rng_init(&rng, 6);
    Module *b = nn_basic_block(64, 128, 2, &rng);
    cr_assert(b != NULL, "%s", error_get());
    static const struct {
        const char *name;
        double std, rel; /* 4 standard errors of the sample std */
    } convs[] = {
        {"conv1.weight", 0.041666667, 0.011},       /* sqrt(2 / (128 * 9)), 73728 draws */
        {"conv2.weight", 0.041666667, 0.008},       /* 147456 draws */
        {"downsample.0.weight", 0.125, 0.032},      /* sqrt(2 / 128), 8192 draws */
    };
    for (int i = 0; i < 3; i++) {
        double mean, std;
        mean_std(module_find(b, convs[i].name), &mean, &std);
        cr_expect(fabs(std / convs[i].std - 1) < convs[i].rel, "%s std %g, want %g",
                  convs[i].name, std, convs[i].std);
        cr_expect(fabs(mean) < 4 * convs[i].std / sqrt(8192.0), "%s mean %g", convs[i].name,
                  mean);
    }
    const char *ones[] = {"bn1.weight", "bn2.weight", "downsample.1.weight"};
    const char *zeros[] = {"bn1.bias", "bn2.bias", "downsample.1.bias"};
    for (int i = 0; i < 3; i++) {
        double mean, std;
        mean_std(module_find(b, ones[i]), &mean, &std);
        cr_expect(mean == 1 && std == 0, "%s", ones[i]);
        mean_std(module_find(b, zeros[i]), &mean, &std);
        cr_expect(mean == 0 && std == 0, "%s", zeros[i]);
    }
    cr_assert_null(module_find(b, "conv1.bias"), "ResNet's convs have no bias");
    module_free(b);
}

Test(resnet_blocks, bad_arguments_are_refused) {
    Rng rng;
    rng_init(&rng, 7);
    cr_assert_null(nn_basic_block(0, 4, 1, &rng));
    cr_assert_str_eq(error_get(), "BasicBlock: inplanes must be positive, got 0");
    cr_assert_null(nn_bottleneck(4, -1, 1, &rng));
    cr_assert_str_eq(error_get(), "Bottleneck: planes must be positive, got -1");
    cr_assert_null(nn_bottleneck(4, 4, 0, &rng));
    cr_assert_str_eq(error_get(), "Bottleneck: stride must be positive, got 0");
    cr_assert_null(nn_basic_block(4, 4, 1, NULL));
    cr_assert_str_eq(error_get(), "BasicBlock: no Rng to initialise the weights from");
    cr_assert_null(nn_resnet(20, 10, 3, false, &rng));
    cr_assert_str_eq(error_get(), "ResNet: depth 20 is not one of 18, 34, 50");
    cr_assert_null(nn_resnet(18, 0, 3, false, &rng));
    cr_assert_str_eq(error_get(), "ResNet: num_classes must be positive, got 0");
    cr_assert_null(nn_resnet(18, 10, 0, false, &rng));
    cr_assert_str_eq(error_get(), "ResNet: in_channels must be positive, got 0");
    cr_assert_null(nn_adaptive_avg_pool2d((Size2d){1, 0}));
    cr_assert_str_eq(error_get(), "AdaptiveAvgPool2d: output_size must be positive, got (1, 0)");
}
