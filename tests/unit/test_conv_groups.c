/* test_conv_groups.c - Conv2d's groups and dilation: forward and gradients
 * against PyTorch (tests/fixtures/gen_conv_groups.py), float64 gradient
 * checks, the layer's weight shape, init bound and shape rule, and the
 * errors for channels groups do not divide. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

static Conv2dParams params_of(json_t *kase) {
    int s = (int)fixture_number(kase, "stride"), p = (int)fixture_number(kase, "padding");
    int d = (int)fixture_number(kase, "dilation"), g = (int)fixture_number(kase, "groups");
    return (Conv2dParams){s, s, p, p, d, d, g};
}

static void check_case(json_t *fx, const char *name) {
    json_t *kase = fixture_case(fx, name);
    Tensor *x = fixture_tensor(kase, "x"), *w = fixture_tensor(kase, "weight");
    Tensor *b = fixture_tensor(kase, "bias"), *gw = fixture_tensor(kase, "gw");
    tensor_set_requires_grad(x, true);
    tensor_set_requires_grad(w, true);
    tensor_set_requires_grad(b, true);
    Conv2dParams p = params_of(kase);
    Tensor *out = tensor_conv2d_with(x, w, b, &p);
    cr_assert(out != NULL, "%s: %s", name, error_get());
    Tensor *want = fixture_tensor(kase, "out");
    assert_tensor_close(out, want, 1e-5, 1e-5, name);
    cr_assert(tensor_backward_with(out, gw) == 0, "%s: %s", name, error_get());
    const char *keys[3] = {"gx", "gweight", "gbias"};
    Tensor *got[3] = {x->grad, w->grad, b->grad};
    for (int i = 0; i < 3; i++) {
        Tensor *e = fixture_tensor(kase, keys[i]);
        char what[64];
        snprintf(what, sizeof what, "%s %s", name, keys[i]);
        assert_tensor_close(got[i], e, 1e-5, 1e-5, what);
        tensor_release(e);
    }
    tensor_release(want), tensor_release(out), tensor_release(gw);
    tensor_release(x), tensor_release(w), tensor_release(b);
}

Test(conv_groups, torch_groups_depthwise_dilation) {
    json_t *fx = fixture_load("conv_groups");
    const char *names[] = {"groups2", "depthwise", "dilation2", "groups3_dilation3_stride2"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) check_case(fx, names[i]);
    json_decref(fx);
}

static Tensor *conv_fn(Tensor **in, void *ctx) {
    return tensor_conv2d_with(in[0], in[1], in[2], ctx);
}

Test(conv_groups, gradcheck_groups_and_dilation) {
    Conv2dParams p = {2, 1, 2, 1, 2, 1, 2}; /* stride 2x1, padding 2x1, dilation 2x1, groups 2 */
    Tensor *in[3] = {gradcheck_input(SHAPE(2, 4, 7, 6), -1, 1, 11),
                     gradcheck_input(SHAPE(6, 2, 3, 2), -1, 1, 12),
                     gradcheck_input(SHAPE(6), -1, 1, 13)};
    gradcheck("conv2d groups 2 dilation 2x1", conv_fn, &p, 3, in);
    for (int i = 0; i < 3; i++) tensor_release(in[i]);
}

Test(conv_groups, layer_weight_shape_init_and_shape_rule) {
    Rng rng;
    rng_init(&rng, 4);
    Module *m = nn_conv2d_grouped(6, 9, SIZE2D(3), SIZE2D(1), SIZE2D(2), SIZE2D(2), 3, true, &rng);
    cr_assert(m != NULL, "%s", error_get());
    Tensor *w = module_get(m, "weight");
    int64_t want[4] = {9, 2, 3, 3};
    for (int i = 0; i < 4; i++) cr_assert_eq(w->shape[i], want[i]);
    /* torch's bound 1/sqrt(fan_in), fan_in = in_channels / groups * 9 = 18 */
    double bound = 1 / sqrt(18.0), most = 0;
    for (int64_t i = 0; i < tensor_numel(w); i++) most = fmax(most, fabs(tensor_get(w, i)));
    cr_assert(most <= bound && most > 0.8 * bound, "max |w| %g, bound %g", most, bound);
    int on;
    int64_t out[TENSOR_MAX_DIMS];
    /* dilation 2 spans 5: (10 + 4 - 5) / 1 + 1 = 10 */
    cr_assert(module_infer_shape(m, SHAPE(2, 6, 10, 12), &on, out) == 0, "%s", error_get());
    cr_assert(on == 4 && out[1] == 9 && out[2] == 10 && out[3] == 12);
    Tensor *x = tensor_zeros(SHAPE(2, 6, 10, 12), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *y = module_forward(m, x);
    cr_assert(y && y->shape[2] == 10 && y->shape[3] == 12, "%s", error_get());
    tensor_release(x), tensor_release(y);
    module_free(m);
}

Test(conv_groups, channels_groups_do_not_divide_are_refused) {
    Rng rng;
    rng_init(&rng, 1);
    cr_assert_null(nn_conv2d_grouped(4, 6, SIZE2D(3), SIZE2D(1), SIZE2D(0), SIZE2D(1), 4, true,
                                     &rng));
    cr_assert_str_eq(error_get(),
                     "Conv2d: groups=4 must divide in_channels=4 and out_channels=6");
    Tensor *x = tensor_zeros(SHAPE(1, 4, 5, 5), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *w = tensor_zeros(SHAPE(6, 2, 3, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Conv2dParams p = {1, 1, 0, 0, 1, 1, 3};
    cr_assert_null(tensor_conv2d_with(x, w, NULL, &p));
    cr_assert_str_eq(error_get(), "conv2d: input has 4 channels but weight expects 6 "
                                  "([6, 2, 3, 3], groups=3)");
    p.dilation_h = 3; /* spans 7 > 5 */
    p.groups = 2;
    cr_assert_null(tensor_conv2d_with(x, w, NULL, &p));
    cr_assert_str_eq(error_get(), "conv2d: kernel 7x3 is larger than the padded input 5x5 "
                                  "(input [1, 4, 5, 5], padding 0x0)");
    tensor_release(x), tensor_release(w);
}
