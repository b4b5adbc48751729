/* resnet_block.c - torchvision's residual blocks, BasicBlock and Bottleneck.
 *
 *   BasicBlock:  conv3x3(stride) bn relu conv3x3 bn           (expansion 1)
 *   Bottleneck:  conv1x1 bn relu conv3x3(stride) bn relu conv1x1 bn (4)
 *   out = relu(main(x) + shortcut(x)), shortcut = downsample(x) or x
 *
 * The downsample, Sequential(conv1x1(stride), BatchNorm2d), is made when
 * torchvision's ResNet._make_layer makes it: stride != 1 or the channels
 * change. Children carry torchvision's attribute names, registered in its
 * order, so a block's state_dict keys are its "conv1.weight",
 * "bn1.running_mean", "downsample.0.weight", "downsample.1.bias". The
 * layers are laid out once, by nn_resnet_block_plan, which the job spec's
 * sizes (core/spec_shapes.c) read too.
 */
#include <stdio.h>

#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

typedef struct {
    Module base;
    int n_convs;
    Module *conv[3], *bn[3], *relu, *downsample; /* children, borrowed */
} ResBlock;

static const char *block_type(bool bottleneck) {
    return bottleneck ? "Bottleneck" : "BasicBlock";
}

int nn_resnet_block_plan(bool bottleneck, int64_t inplanes, int64_t planes, int stride,
                         NnResNetBlockPlan *plan) {
    const char *type = block_type(bottleneck);
    if (inplanes <= 0)
        return error_set("%s: inplanes must be positive, got %lld", type, (long long)inplanes);
    if (planes <= 0)
        return error_set("%s: planes must be positive, got %lld", type, (long long)planes);
    if (stride <= 0) return error_set("%s: stride must be positive, got %d", type, stride);
    int64_t out = bottleneck ? 4 * planes : planes;
    *plan = (NnResNetBlockPlan){.bottleneck = bottleneck, .out_channels = out};
    if (bottleneck) {
        /* width = planes * (base_width / 64) * groups = planes */
        plan->n_convs = 3;
        plan->convs[0] = (NnResNetConv){inplanes, planes, 1, 1};
        plan->convs[1] = (NnResNetConv){planes, planes, 3, stride};
        plan->convs[2] = (NnResNetConv){planes, out, 1, 1};
    } else {
        plan->n_convs = 2;
        plan->convs[0] = (NnResNetConv){inplanes, planes, 3, stride};
        plan->convs[1] = (NnResNetConv){planes, planes, 3, 1};
    }
    plan->has_downsample = stride != 1 || inplanes != out;
    plan->downsample = (NnResNetConv){inplanes, out, 1, stride};
    return 0;
}

Module *nn_resnet_conv(const NnResNetConv *c, Rng *rng) {
    Module *m = nn_conv2d(c->in_channels, c->out_channels, SIZE2D(c->kernel), SIZE2D(c->stride),
                          SIZE2D(c->kernel / 2), false, rng);
    if (m && nn_init_kaiming_normal_fan_out_(module_get(m, "weight"), rng) != 0) {
        error_prefix("Conv2d");
        module_free(m);
        return NULL;
    }
    return m;
}

static Module *bn_of(const NnResNetConv *c) {
    return nn_batch_norm2d(c->out_channels, 1e-5, 0.1, true, true);
}

/* ---- forward and shapes ---- */

/* h through m, consuming the caller's reference to h: in NCHW, or where
 * `blocked` in the blocked layout (core/ops.h's TENSOR_BLOCK). */
static Tensor *step(Module *m, Tensor *h, bool blocked) {
    return blocked ? module_forward_blocked(m, h) : module_forward_consume(m, h);
}

static Tensor *main_branch(ResBlock *b, Tensor *x, bool blocked) {
    Tensor *h = tensor_retain(x);
    for (int i = 0; i < b->n_convs && h; i++) {
        h = step(b->bn[i], step(b->conv[i], h, blocked), blocked);
        if (i < b->n_convs - 1) h = step(b->relu, h, blocked);
    }
    return h;
}

/* The block in either layout, x's reference the caller's. */
static Tensor *block_run(Module *m, Tensor *x, bool blocked) {
    ResBlock *b = (ResBlock *)m;
    Tensor *h = main_branch(b, x, blocked);
    Tensor *shortcut = !h ? NULL : b->downsample ? step(b->downsample, tensor_retain(x), blocked)
                                                 : tensor_retain(x);
    if (!shortcut) tensor_release(h);
    Tensor *sum = shortcut ? tensor_add_consume(h, shortcut) : NULL;
    return sum ? step(b->relu, sum, blocked) : NULL;
}

static Tensor *block_forward(Module *m, Tensor *x) { return block_run(m, x, false); }

static Tensor *block_forward_blocked(Module *m, Tensor *x) {
    Tensor *y = block_run(m, x, true);
    tensor_release(x);
    return y;
}

/* The main branch's shape. The shortcut's always agrees: a downsample
 * strides and widens as the main branch does ((H - 1) / stride + 1 both
 * for the 1x1 conv and the padded 3x3), and without one the branch keeps
 * the input's shape. Errors already carry the child's path. */
static int block_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim,
                             int64_t *out) {
    ResBlock *b = (ResBlock *)m;
    int64_t cur[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) cur[i] = in[i];
    for (int i = 0; i < 2 * b->n_convs; i++) {
        Module *layer = i % 2 ? b->bn[i / 2] : b->conv[i / 2];
        if (module_infer_shape(layer, ndim, cur, &ndim, out) != 0) return -1;
        for (int k = 0; k < ndim; k++) cur[k] = out[k];
    }
    *out_ndim = ndim;
    return 0;
}

static const ModuleVTable basic_block_vtable;
static const ModuleVTable bottleneck_vtable;

bool nn_resnet_block_takes_blocked(Module *m) {
    if (m->vtable != &basic_block_vtable && m->vtable != &bottleneck_vtable) return false;
    ResBlock *b = (ResBlock *)m;
    Module *convs[4] = {b->conv[0], b->conv[1], b->conv[2], NULL};
    int n = b->n_convs;
    if (b->downsample) convs[n++] = b->downsample->children[0];
    for (int i = 0; i < n; i++)
        if (module_get(convs[i], "weight")->shape[0] % TENSOR_BLOCK != 0) return false;
    return true;
}

static const ModuleVTable basic_block_vtable = {
    .type = "BasicBlock",
    .forward = block_forward,
    .infer_shape = block_infer_shape,
    .forward_blocked = block_forward_blocked,
};
static const ModuleVTable bottleneck_vtable = {
    .type = "Bottleneck",
    .forward = block_forward,
    .infer_shape = block_infer_shape,
    .forward_blocked = block_forward_blocked,
};

/* ---- construction ---- */

/* Adds child under name and keeps a borrowed pointer to it in *slot. */
static int add_kept(Module *m, const char *name, Module *child, Module **slot) {
    *slot = child;
    return module_add_child(m, name, child);
}

static Module *downsample_of(const NnResNetBlockPlan *p, Rng *rng) {
    Module *layers[2] = {nn_resnet_conv(&p->downsample, rng), bn_of(&p->downsample)};
    return nn_sequential(2, layers);
}

/* conv1, bn1, conv2, bn2 ... with relu where torchvision registers it:
 * after bn1 in a BasicBlock, after bn3 in a Bottleneck. */
static int add_children(ResBlock *b, const NnResNetBlockPlan *p, Rng *rng) {
    Module *m = &b->base;
    int relu_after = p->bottleneck ? 2 : 0;
    for (int i = 0; i < p->n_convs; i++) {
        char conv[16], bn[16];
        snprintf(conv, sizeof conv, "conv%d", i + 1);
        snprintf(bn, sizeof bn, "bn%d", i + 1);
        if (add_kept(m, conv, nn_resnet_conv(&p->convs[i], rng), &b->conv[i]) != 0 ||
            add_kept(m, bn, bn_of(&p->convs[i]), &b->bn[i]) != 0 ||
            (i == relu_after && add_kept(m, "relu", nn_relu(), &b->relu) != 0))
            return -1;
    }
    return p->has_downsample
               ? add_kept(m, "downsample", downsample_of(p, rng), &b->downsample)
               : 0;
}

static Module *block_new(bool bottleneck, int64_t inplanes, int64_t planes, int stride,
                         Rng *rng) {
    NnResNetBlockPlan plan;
    if (nn_resnet_block_plan(bottleneck, inplanes, planes, stride, &plan) != 0) return NULL;
    if (!rng) return error_set("%s: no Rng to initialise the weights from",
                               block_type(bottleneck)), NULL;
    ResBlock *b = (ResBlock *)module_alloc(
        sizeof *b, bottleneck ? &bottleneck_vtable : &basic_block_vtable);
    if (!b) return NULL;
    b->n_convs = plan.n_convs;
    if (add_children(b, &plan, rng) != 0) {
        error_prefix("%s", block_type(bottleneck));
        module_free(&b->base);
        return NULL;
    }
    return &b->base;
}

Module *nn_basic_block(int64_t inplanes, int64_t planes, int stride, Rng *rng) {
    return block_new(false, inplanes, planes, stride, rng);
}

Module *nn_bottleneck(int64_t inplanes, int64_t planes, int stride, Rng *rng) {
    return block_new(true, inplanes, planes, stride, rng);
}
