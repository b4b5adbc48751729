/* test_transforms.c - core/data/transforms: ToTensor and Normalize against
 * torchvision's arithmetic (tests/fixtures/gen_transforms.py), bit for bit;
 * Flatten; shape inference; and the errors a bad "transforms" list gives. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/data/transforms.h"
#include "core/error.h"
#include "tests/support/fixture.h"

static void init_list(TransformList *tl, const TransformConfig *c, int n) {
    cr_assert_eq(transform_list_init(tl, c, n), 0, "%s", error_get());
}

Test(transforms, to_tensor_matches_torchvision) {
    json_t *fx = fixture_load("transforms");
    json_t *k = fixture_case(fx, "to_tensor");
    Tensor *in = fixture_tensor(k, "input"), *want = fixture_tensor(k, "expected");
    TransformList tl;
    init_list(&tl, (TransformConfig[]){{.type = "ToTensor"}}, 1);
    Tensor *out = transform_list_apply(&tl, in);
    cr_assert_eq(out->dtype, DTYPE_FLOAT32);
    cr_assert_eq(out->ndim, 4);
    assert_tensor_close(out, want, 0, 0, "ToTensor"); /* exact: every byte 0..255 */
    tensor_release(out);
    tensor_release(in);
    tensor_release(want);
    transform_list_free(&tl);
    json_decref(fx);
}

static void check_normalize_case(const char *name, bool with_to_tensor) {
    json_t *fx = fixture_load("transforms");
    json_t *k = fixture_case(fx, name);
    Tensor *in = fixture_tensor(k, "input"), *want = fixture_tensor(k, "expected");
    double mean[8], std[8];
    int nc;
    json_t *m = json_object_get(k, "mean");
    if (json_is_number(m)) {
        nc = 1;
        mean[0] = fixture_number(k, "mean");
        std[0] = fixture_number(k, "std");
    } else {
        Tensor *mt = fixture_tensor(k, "mean"), *st = fixture_tensor(k, "std");
        nc = (int)tensor_numel(mt);
        tensor_to_doubles(mt, mean, nc);
        tensor_to_doubles(st, std, nc);
        tensor_release(mt);
        tensor_release(st);
    }
    TransformConfig cfg[2] = {
        {.type = "ToTensor"},
        {.type = "Normalize", .mean = mean, .std = std, .num_mean = nc, .num_std = nc},
    };
    TransformList tl;
    init_list(&tl, with_to_tensor ? cfg : cfg + 1, with_to_tensor ? 2 : 1);
    Tensor *before = tensor_clone(in);
    Tensor *out = transform_list_apply(&tl, in);
    assert_tensor_close(out, want, 0, 0, name);
    assert_tensor_close(in, before, 0, 0, "input left untouched");
    tensor_release(before);
    tensor_release(out);
    tensor_release(in);
    tensor_release(want);
    transform_list_free(&tl);
    json_decref(fx);
}

Test(transforms, to_tensor_normalize_mnist) {
    check_normalize_case("to_tensor_normalize_mnist", true);
}
Test(transforms, to_tensor_normalize_half) {
    check_normalize_case("to_tensor_normalize_half", true);
}
Test(transforms, to_tensor_normalize_rgb) { check_normalize_case("to_tensor_normalize_rgb", true); }
Test(transforms, normalize_three_channels) { check_normalize_case("normalize_3ch", false); }
Test(transforms, normalize_tabular) { check_normalize_case("normalize_tabular", false); }

Test(transforms, flatten_and_output_shapes) {
    double mean = 0.5, std = 0.25;
    TransformList tl;
    init_list(&tl, (TransformConfig[]){{.type = "ToTensor"},
                                       {.type = "Normalize", .mean = &mean, .std = &std,
                                        .num_mean = 1, .num_std = 1},
                                       {.type = "Flatten"}}, 3);
    DType dt;
    int nd;
    int64_t shape[TENSOR_MAX_DIMS];
    cr_assert_eq(transform_list_output(&tl, DTYPE_UINT8, SHAPE(64, 28, 28), &dt, &nd, shape), 0,
                 "%s", error_get());
    cr_assert(dt == DTYPE_FLOAT32 && nd == 2 && shape[0] == 64 && shape[1] == 784);

    Tensor *in = tensor_empty(SHAPE(2, 3, 4), DTYPE_UINT8, DEVICE_CPU_INIT);
    uint8_t *p = tensor_data(in);
    for (int i = 0; i < 24; i++) p[i] = (uint8_t)(i * 10);
    Tensor *out = transform_list_apply(&tl, in);
    cr_assert(out != NULL, "%s", error_get());
    cr_assert(out->ndim == 2 && out->shape[0] == 2 && out->shape[1] == 12);
    for (int i = 0; i < 24; i++)
        cr_assert_eq(tensor_get(out, i), (double)(((float)(i * 10) / 255.0f - 0.5f) / 0.25f));
    tensor_release(out);
    tensor_release(in);
    transform_list_free(&tl);

    /* an empty list is the identity */
    init_list(&tl, NULL, 0);
    in = tensor_zeros(SHAPE(3, 2), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    out = transform_list_apply(&tl, in);
    cr_assert_eq(out, in);
    tensor_release(out);
    tensor_release(in);
    transform_list_free(&tl);
}

Test(transforms, config_errors) {
    TransformList tl;
    double m2[2] = {0.1, 0.2}, s1[1] = {0.3}, zero[1] = {0.0};
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "ToTensor"},
                                                               {.type = "Resize"}}, 2), -1);
    cr_assert_str_eq(error_get(), "transforms[1]: unknown transform 'Resize' (expected ToTensor, "
                                  "Normalize or Flatten)");
    cr_assert_eq(tl.count, 0);
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "Normalize", .mean = m2,
                                     .std = s1, .num_mean = 2, .num_std = 1}}, 1), -1);
    cr_assert_str_eq(error_get(), "transforms[0] Normalize: mean has 2 values but std has 1");
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "Normalize", .mean = s1,
                                     .std = zero, .num_mean = 1, .num_std = 1}}, 1), -1);
    cr_assert(strstr(error_get(), "transforms[0] Normalize: std[0] is 0"), "%s", error_get());
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "Normalize"}}, 1), -1);
    cr_assert(strstr(error_get(), "mean and std are required"), "%s", error_get());
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "Flatten", .mean = s1,
                                     .num_mean = 1}}, 1), -1);
    cr_assert_str_eq(error_get(), "transforms[0] Flatten: takes no mean or std");
}

Test(transforms, batch_errors) {
    TransformList tl;
    double m2[2] = {0.1, 0.2}, s2[2] = {0.3, 0.4};
    DType dt;
    int nd;
    int64_t shape[TENSOR_MAX_DIMS];
    /* Normalize on raw bytes: ToTensor is missing */
    init_list(&tl, (TransformConfig[]){{.type = "Normalize", .mean = m2, .std = s2, .num_mean = 2,
                                        .num_std = 2}}, 1);
    cr_assert_eq(transform_list_output(&tl, DTYPE_UINT8, SHAPE(8, 28, 28), &dt, &nd, shape), -1);
    cr_assert_str_eq(error_get(), "transforms[0] Normalize: expects float32 [B, C, ...] (use "
                                  "ToTensor first for images), got uint8 [8, 28, 28]");
    /* two means for one channel */
    Tensor *x = tensor_zeros(SHAPE(4, 1, 2, 2), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(transform_list_apply(&tl, x));
    cr_assert_str_eq(error_get(), "transforms[0] Normalize: 2 mean/std values but the batch "
                                  "[4, 1, 2, 2] has 1 channels");
    tensor_release(x);
    transform_list_free(&tl);
    /* ToTensor on tabular data */
    init_list(&tl, (TransformConfig[]){{.type = "ToTensor"}}, 1);
    x = tensor_zeros(SHAPE(4, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(transform_list_apply(&tl, x));
    cr_assert_str_eq(error_get(), "transforms[0] ToTensor: expects a batch of uint8 images "
                                  "[B, H, W] or [B, C, H, W], got float32 [4, 3]");
    tensor_release(x);
    transform_list_free(&tl);
}
