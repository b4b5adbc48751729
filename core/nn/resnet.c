/* resnet.c - torchvision.models.resnet18 / resnet34 / resnet50.
 *
 *   conv1 bn1 relu maxpool  layer1 layer2 layer3 layer4  avgpool flatten fc
 *
 * The stem is 7x7 stride 2 with a 3x3 stride-2 max-pool, or with
 * small_input the CIFAR stem, 3x3 stride 1 and maxpool = Identity (no
 * parameters either way, so the state_dict keys stay torchvision's). Stage
 * i is nn.Sequential of blocks[i] blocks of 64 << i planes, the first one
 * strided (1 for layer1, else 2) and given a downsample when it changes
 * the shape. avgpool is AdaptiveAvgPool2d(1), so any image size of at
 * least one pixel works. The layout is nn_resnet_plan, which the job
 * spec's sizes (core/spec_resnet.c) read too.
 */
#include <stdio.h>

#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

int nn_resnet_plan(int depth, int64_t in_channels, bool small_input, NnResNetPlan *plan) {
    static const struct {
        int depth;
        bool bottleneck;
        int blocks[4];
    } depths[] = {
        {18, false, {2, 2, 2, 2}},
        {34, false, {3, 4, 6, 3}},
        {50, true, {3, 4, 6, 3}},
    };
    if (in_channels < 1)
        return error_set("ResNet: in_channels must be positive, got %lld",
                         (long long)in_channels);
    for (size_t d = 0; d < sizeof depths / sizeof *depths; d++) {
        if (depths[d].depth != depth) continue;
        *plan = (NnResNetPlan){.bottleneck = depths[d].bottleneck, .maxpool = !small_input};
        for (int i = 0; i < 4; i++) {
            plan->blocks[i] = depths[d].blocks[i];
            plan->planes[i] = (int64_t)64 << i;
            plan->stride[i] = i == 0 ? 1 : 2;
        }
        plan->stem = small_input ? (NnResNetConv){in_channels, 64, 3, 1}
                                 : (NnResNetConv){in_channels, 64, 7, 2};
        plan->features = plan->planes[3] * (plan->bottleneck ? 4 : 1);
        return 0;
    }
    return error_set("ResNet: depth %d is not one of 18, 34, 50", depth);
}

typedef struct {
    Module base;
    bool maxpool; /* the stem's, else Identity */
} ResNet;

/* ---- forward and shapes: every child in order, flatten before fc ---- */

/* The children's places (add_children): conv1 bn1 relu maxpool, layer1
 * .. layer4, avgpool, fc. */
enum { STEM_CONV, FIRST_STAGE = 4, AVGPOOL = 8, FC };

/* The stem and the stages in the blocked layout (core/ops.h's
 * TENSOR_BLOCK), which the stem's convolution starts; after a max-pool
 * (which reads NCHW) the stages' input is converted instead. The
 * average pool's input goes back to NCHW. */
static Tensor *features_blocked(ResNet *r, Tensor *h) {
    Module *m = &r->base;
    int first = r->maxpool ? FIRST_STAGE : STEM_CONV;
    for (int i = 0; i < first && h; i++) h = module_forward_consume(m->children[i], h);
    if (first > 0) {
        Tensor *b = tensor_to_blocked(h);
        tensor_release(h);
        h = b;
    }
    for (int i = first; i < AVGPOOL && h; i++) h = module_forward_blocked(m->children[i], h);
    Tensor *nchw = tensor_from_blocked(h);
    tensor_release(h);
    return nchw;
}

/* On a backend that runs the blocked layout for x, the convolutions hand
 * it on with no reorder between them; elsewhere NCHW throughout. */
static Tensor *resnet_forward(Module *m, Tensor *x) {
    bool blocked = tensor_blocked_layout_native(x);
    Tensor *h = blocked ? features_blocked((ResNet *)m, tensor_retain(x)) : tensor_retain(x);
    for (int i = blocked ? AVGPOOL : STEM_CONV; i < FC && h; i++)
        h = module_forward_consume(m->children[i], h);
    Tensor *flat = h ? tensor_flatten(h, 1, -1) : NULL;
    tensor_release(h);
    Tensor *y = flat ? module_forward(m->children[FC], flat) : NULL;
    tensor_release(flat);
    return y;
}

static int resnet_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim,
                              int64_t *out) {
    int64_t cur[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) cur[i] = in[i];
    for (int i = 0; i < m->n_children; i++) {
        if (i == m->n_children - 1) { /* torch.flatten(x, 1) before fc */
            if (nn_flatten_shape(1, -1, ndim, cur, &ndim, out) != 0) return -1;
            for (int k = 0; k < ndim; k++) cur[k] = out[k];
        }
        if (module_infer_shape(m->children[i], ndim, cur, &ndim, out) != 0) return -1;
        for (int k = 0; k < ndim; k++) cur[k] = out[k];
    }
    *out_ndim = ndim;
    return 0;
}

static const ModuleVTable resnet_vtable = {
    .type = "ResNet",
    .forward = resnet_forward,
    .infer_shape = resnet_infer_shape,
};

/* ---- construction ---- */

/* layer<i+1>: Sequential of its blocks; *inplanes follows the channels. */
static Module *stage(const NnResNetPlan *p, int i, int64_t *inplanes, Rng *rng) {
    Module *blocks[8] = {NULL}; /* 6 at most, resnet34/50's layer3 */
    int n = p->blocks[i];
    for (int k = 0; k < n; k++) {
        int stride = k == 0 ? p->stride[i] : 1;
        blocks[k] = p->bottleneck ? nn_bottleneck(*inplanes, p->planes[i], stride, rng)
                                  : nn_basic_block(*inplanes, p->planes[i], stride, rng);
        *inplanes = p->planes[i] * (p->bottleneck ? 4 : 1);
    }
    return nn_sequential(n, blocks); /* owns them, also a NULL one's error */
}

static int add_children(Module *m, const NnResNetPlan *p, int64_t num_classes, Rng *rng) {
    int64_t inplanes = p->stem.out_channels;
    if (module_add_child(m, "conv1", nn_resnet_conv(&p->stem, rng)) != 0 ||
        module_add_child(m, "bn1", nn_batch_norm2d(inplanes, 1e-5, 0.1, true, true)) != 0 ||
        module_add_child(m, "relu", nn_relu()) != 0 ||
        module_add_child(m, "maxpool", p->maxpool
                                           ? nn_max_pool2d(SIZE2D(3), SIZE2D(2), SIZE2D(1))
                                           : nn_identity()) != 0)
        return -1;
    for (int i = 0; i < 4; i++) {
        char name[24];
        snprintf(name, sizeof name, "layer%d", i + 1);
        if (module_add_child(m, name, stage(p, i, &inplanes, rng)) != 0) return -1;
    }
    return module_add_child(m, "avgpool", nn_adaptive_avg_pool2d(SIZE2D(1))) ||
                   module_add_child(m, "fc", nn_linear(p->features, num_classes, true, rng))
               ? -1
               : 0;
}

Module *nn_resnet(int depth, int64_t num_classes, int64_t in_channels, bool small_input,
                  Rng *rng) {
    NnResNetPlan plan;
    if (nn_resnet_plan(depth, in_channels, small_input, &plan) != 0) return NULL;
    if (num_classes < 1)
        return error_set("ResNet: num_classes must be positive, got %lld",
                         (long long)num_classes), NULL;
    if (!rng) return error_set("ResNet: no Rng to initialise the weights from"), NULL;
    ResNet *r = (ResNet *)module_alloc(sizeof *r, &resnet_vtable);
    if (!r) return NULL;
    r->maxpool = plan.maxpool;
    Module *m = &r->base;
    if (add_children(m, &plan, num_classes, rng) != 0) {
        error_prefix("resnet%d", depth);
        module_free(m);
        return NULL;
    }
    return m;
}
