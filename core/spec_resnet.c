/* spec_resnet.c - "model": {"arch": "resnet18" | "resnet34" | "resnet50",
 * "num_classes": 1000, "in_channels": 3, "small_input": false}, and the
 * sizes of torchvision's residual blocks.
 *
 * The config is torchvision.models.resnetXX(num_classes=N) with conv1
 * taking in_channels images, small_input the CIFAR stem (core/nn/resnet.c).
 * Sizes come from the config alone, nothing allocated: the model written
 * out as the layer list it runs (the stem's Conv2d, BatchNorm2d, ReLU,
 * MaxPool2d or Identity, the blocks, AdaptiveAvgPool2d(1), Flatten,
 * Linear) and measured by spec_shapes.c, a block as its convs and norms,
 * its shortcut, the residual sum and its ReLU, laid out by core/nn's
 * plans so that the counts are those of the model built.
 */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/spec_json.h"

#define MAX_WIDTH ((int64_t)1 << 31) /* num_classes, in_channels */
#define MAX_LAYERS 32                /* a stem, 16 blocks and a head at most */

const char *const spec_resnet_fields[] = {"arch", "num_classes", "in_channels", "small_input",
                                          NULL};

int spec_resnet_parse(const json_t *model, const char *name, SpecArch *out) {
    SpecResNet *r = &out->resnet;
    if (sscanf(name, "resnet%d", &r->depth) != 1)
        return error_at("model.arch", "'%s' is not a resnet", name);
    return spec_get_int(model, "model", "num_classes", false, 1000, 1, MAX_WIDTH,
                        &r->num_classes) ||
                   spec_get_int(model, "model", "in_channels", false, 3, 1, MAX_WIDTH,
                                &r->in_channels) ||
                   spec_get_bool(model, "model", "small_input", false, &r->small_input)
               ? -1
               : 0;
}

Module *spec_resnet_build(const SpecArch *arch, Rng *rng) {
    const SpecResNet *r = &arch->resnet;
    return nn_resnet(r->depth, r->num_classes, r->in_channels, r->small_input, rng);
}

/* ---- sizes ---- */

/* The input of a stem or a block: [N, channels, H, W], H and W >= 1, where
 * `what` names the argument giving the channels ("inplanes=64"). */
static int check_image(int ndim, const int64_t *x, int64_t channels, const char *what) {
    char s[128];
    if (ndim != 4 || x[2] < 1 || x[3] < 1)
        return error_set("expected a 4-d input [N, C, H, W] with H, W >= 1, got %s",
                         shape_str(ndim, x, s, sizeof s));
    if (x[1] != channels)
        return error_set("%s=%lld but its input has %lld channels (input %s)", what,
                         (long long)channels, (long long)x[1], shape_str(ndim, x, s, sizeof s));
    return 0;
}

static SpecLayer conv_layer(const NnResNetConv *c) {
    return (SpecLayer){.type = SPEC_LAYER_CONV2D,
                       .in_channels = c->in_channels,
                       .out_channels = c->out_channels,
                       .kernel_size = SIZE2D(c->kernel),
                       .stride = SIZE2D(c->stride),
                       .padding = SIZE2D(c->kernel / 2),
                       .dilation = SIZE2D(1),
                       .groups = 1};
}

static SpecLayer bn_layer(int64_t channels) {
    return (SpecLayer){.type = SPEC_LAYER_BATCH_NORM2D,
                       .num_features = channels,
                       .eps = 1e-5,
                       .momentum = 0.1,
                       .affine = true,
                       .track_running_stats = true};
}

static SpecLayer plain_layer(SpecLayerType type) { return (SpecLayer){.type = type}; }

/* Layers that cannot fail on an input check_image passed; a failure would
 * be a bug of the plans, reported as such. */
static int run(const SpecLayer *layers, int n, int *ndim, int64_t *shape, SpecModelSize *size) {
    int failed;
    if (spec_layers_size(layers, n, ndim, shape, size, &failed) == 0) return 0;
    return error_prefix("internal: layer %d (%s)", failed, spec_layer_type_name(layers[failed].type));
}

int spec_resnet_block_size(const SpecLayer *block, int *ndim, int64_t *shape,
                           SpecModelSize *size) {
    NnResNetBlockPlan p;
    if (nn_resnet_block_plan(block->type == SPEC_LAYER_BOTTLENECK, block->inplanes,
                             block->planes, block->stride.h, &p) != 0 ||
        check_image(*ndim, shape, block->inplanes, "inplanes") != 0)
        return -1;
    SpecLayer main[8], shortcut[2];
    int n = 0;
    for (int i = 0; i < p.n_convs; i++) {
        main[n++] = conv_layer(&p.convs[i]);
        main[n++] = bn_layer(p.convs[i].out_channels);
        if (i < p.n_convs - 1) main[n++] = plain_layer(SPEC_LAYER_RELU);
    }
    shortcut[0] = conv_layer(&p.downsample);
    shortcut[1] = bn_layer(p.downsample.out_channels);
    /* the residual sum, one tensor of the output's shape as an Identity's,
     * then its ReLU */
    SpecLayer tail[2] = {plain_layer(SPEC_LAYER_IDENTITY), plain_layer(SPEC_LAYER_RELU)};
    int sn = *ndim;
    int64_t s[TENSOR_MAX_DIMS];
    memcpy(s, shape, (size_t)sn * sizeof *s);
    return run(main, n, ndim, shape, size) ||
                   (p.has_downsample && run(shortcut, 2, &sn, s, size)) ||
                   run(tail, 2, ndim, shape, size)
               ? -1
               : 0;
}

/* The whole model as the layer list it runs. */
static int resnet_layers(const SpecResNet *r, const NnResNetPlan *p, SpecLayer *l) {
    int n = 0;
    l[n++] = conv_layer(&p->stem);
    l[n++] = bn_layer(p->stem.out_channels);
    l[n++] = plain_layer(SPEC_LAYER_RELU);
    if (p->maxpool)
        l[n++] = (SpecLayer){.type = SPEC_LAYER_MAX_POOL2D,
                             .kernel_size = SIZE2D(3),
                             .stride = SIZE2D(2),
                             .padding = SIZE2D(1)};
    else
        l[n++] = plain_layer(SPEC_LAYER_IDENTITY);
    int64_t inplanes = p->stem.out_channels;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < p->blocks[i]; k++) {
            l[n++] = (SpecLayer){.type = p->bottleneck ? SPEC_LAYER_BOTTLENECK
                                                       : SPEC_LAYER_BASIC_BLOCK,
                                 .inplanes = inplanes,
                                 .planes = p->planes[i],
                                 .stride = SIZE2D(k == 0 ? p->stride[i] : 1)};
            inplanes = p->planes[i] * (p->bottleneck ? 4 : 1);
        }
    l[n++] = (SpecLayer){.type = SPEC_LAYER_ADAPTIVE_AVG_POOL2D, .output_size = SIZE2D(1)};
    l[n++] = (SpecLayer){.type = SPEC_LAYER_FLATTEN, .start_dim = 1, .end_dim = -1};
    l[n++] = (SpecLayer){.type = SPEC_LAYER_LINEAR,
                         .in_features = p->features,
                         .out_features = r->num_classes,
                         .bias = true};
    return n;
}

int spec_resnet_size(const SpecArch *arch, DType dtype, int ndim, const int64_t *x,
                     SpecModelSize *size) {
    const SpecResNet *r = &arch->resnet;
    char s[128];
    if (!dtype_is_float(dtype))
        return error_set("expects float images, but its input would be %s %s; images need "
                         "{\"type\": \"ToTensor\"} in data.transforms",
                         dtype_name(dtype), shape_str(ndim, x, s, sizeof s));
    NnResNetPlan plan;
    if (nn_resnet_plan(r->depth, r->in_channels, r->small_input, &plan) != 0 ||
        check_image(ndim, x, r->in_channels, "in_channels") != 0)
        return -1;
    SpecLayer layers[MAX_LAYERS];
    int n = resnet_layers(r, &plan, layers);
    size->out_ndim = ndim;
    memcpy(size->out_shape, x, (size_t)ndim * sizeof *x);
    return run(layers, n, &size->out_ndim, size->out_shape, size);
}
