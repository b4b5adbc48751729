/* test_augment.c - the per-sample image transforms: Resize and CenterCrop
 * byte for byte against torchvision 0.14 on PIL images
 * (tests/fixtures/gen_augment.py), RandomCrop and RandomHorizontalFlip by
 * their contract (a crop of the padded image at every place, the centre in
 * evaluation; a flip at rate p; the same draw for a sample whatever thread
 * or batch), and the DataLoader's augmented batches: identical with and
 * without prefetch, for 1 or 2 workers, and on a resume. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/data/augment.h"
#include "core/data/dataloader.h"
#include "core/error.h"
#include "tests/support/fixture.h"

static void check_case(json_t *fx, const char *name, Augment a) {
    json_t *kase = fixture_case(fx, name);
    Tensor *x = fixture_tensor(kase, "x"), *want = fixture_tensor(kase, "out");
    AugmentList al = {.count = 1, .items = {a}};
    int64_t out_shape[3];
    cr_assert(augment_list_output(&al, 0, 3, x->shape, out_shape) == 0, "%s", error_get());
    for (int i = 0; i < 3; i++)
        cr_assert_eq(out_shape[i], want->shape[i], "%s: dim %d: %lld, torchvision %lld", name,
                     i, (long long)out_shape[i], (long long)want->shape[i]);
    Tensor *got = tensor_empty(3, out_shape, DTYPE_UINT8, DEVICE_CPU_INIT);
    cr_assert(augment_sample(&al, 0, 0, 0, true, DTYPE_UINT8, 3, x->shape, tensor_data(x),
                             tensor_data(got)) == 0, "%s", error_get());
    const uint8_t *g = tensor_data(got), *w = tensor_data(want);
    for (int64_t i = 0; i < tensor_numel(want); i++)
        cr_assert_eq(g[i], w[i], "%s: byte %lld is %d, torchvision's %d", name, (long long)i,
                     g[i], w[i]);
    tensor_release(x), tensor_release(want), tensor_release(got);
}

static Augment resize_short(int64_t s) { return (Augment){.type = AUGMENT_RESIZE, .size_h = s}; }
static Augment sized(AugmentType t, int64_t h, int64_t w) {
    return (Augment){.type = t, .size_h = h, .size_w = w};
}

Test(augment, resize_and_center_crop_match_torchvision_on_pil) {
    json_t *fx = fixture_load("augment");
    check_case(fx, "resize_short_rgb", resize_short(8));
    check_case(fx, "resize_short_tall_gray", resize_short(6));
    check_case(fx, "resize_hw_up_down_rgb", sized(AUGMENT_RESIZE, 23, 7));
    check_case(fx, "resize_upsample_gray", sized(AUGMENT_RESIZE, 12, 14));
    check_case(fx, "resize_big_down_rgb", resize_short(9));
    check_case(fx, "center_crop_odd_rgb", sized(AUGMENT_CENTER_CROP, 8, 9));
    check_case(fx, "center_crop_even_gray", sized(AUGMENT_CENTER_CROP, 5, 5));
    check_case(fx, "center_crop_larger_rgb", sized(AUGMENT_CENTER_CROP, 10, 9));
    json_decref(fx);
}

/* A 1 x 5 x 6 image whose pixel (y, x) is 10 y + x + 1 (0 is padding). */
static void ramp(uint8_t *img) {
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 6; x++) img[y * 6 + x] = (uint8_t)(10 * y + x + 1);
}

/* RandomCrop(4, padding=2): every output is padded[i:i+4, j:j+4] for some
 * i in [0, 5], j in [0, 6], every one of those 42 places turns up, and
 * evaluation takes the centre (i = 2 of 5: round(2.5) = 2, j = 3). */
Test(augment, random_crop_covers_every_place_and_centres_in_eval) {
    uint8_t img[30], out[16];
    ramp(img);
    AugmentList al = {.count = 1, .items = {{.type = AUGMENT_RANDOM_CROP, .size_h = 4,
                                             .size_w = 4, .pad = {2, 2, 2, 2}}}};
    int64_t shape[3] = {1, 5, 6};
    bool seen[6][7] = {{false}};
    for (int64_t idx = 0; idx < 2000; idx++) {
        cr_assert(augment_sample(&al, 9, 0, idx, true, DTYPE_UINT8, 3, shape, img, out) == 0);
        /* find the offset from a pixel of the image inside the crop */
        int found = 0;
        for (int i = 0; i <= 5 && !found; i++)
            for (int j = 0; j <= 5 + 1 && !found; j++) {
                bool match = true;
                for (int y = 0; y < 4 && match; y++)
                    for (int x = 0; x < 4 && match; x++) {
                        int sy = i + y - 2, sx = j + x - 2;
                        int v = sy >= 0 && sy < 5 && sx >= 0 && sx < 6 ? img[sy * 6 + sx] : 0;
                        match = out[y * 4 + x] == v;
                    }
                if (match) seen[i][j] = true, found = 1;
            }
        cr_assert(found, "sample %lld is no crop of the padded image", (long long)idx);
    }
    for (int i = 0; i <= 5; i++)
        for (int j = 0; j <= 6; j++) cr_assert(seen[i][j], "offset (%d, %d) never drawn", i, j);
    cr_assert(augment_sample(&al, 9, 0, 0, false, DTYPE_UINT8, 3, shape, img, out) == 0);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            int sy = y + 2 - 2, sx = x + 3 - 2;
            cr_assert_eq(out[y * 4 + x], img[sy * 6 + sx], "eval crop at (%d, %d)", y, x);
        }
}

Test(augment, flip_rate_and_draws_fixed_per_sample) {
    uint8_t img[30], out[30], again[30];
    ramp(img);
    int64_t shape[2] = {5, 6};
    AugmentList al = {.count = 1, .items = {{.type = AUGMENT_RANDOM_HORIZONTAL_FLIP, .p = 0.3}}};
    int flipped = 0, differs_by_epoch = 0;
    for (int64_t idx = 0; idx < 4000; idx++) {
        cr_assert(augment_sample(&al, 1, 2, idx, true, DTYPE_UINT8, 2, shape, img, out) == 0);
        bool f = out[0] == img[5];
        cr_assert(f ? out[5] == img[0] : memcmp(out, img, 30) == 0);
        flipped += f;
        /* the same sample of the same epoch draws the same; another epoch may not */
        augment_sample(&al, 1, 2, idx, true, DTYPE_UINT8, 2, shape, img, again);
        cr_assert(memcmp(out, again, 30) == 0, "sample %lld drew twice", (long long)idx);
        augment_sample(&al, 1, 3, idx, true, DTYPE_UINT8, 2, shape, img, again);
        differs_by_epoch += memcmp(out, again, 30) != 0;
    }
    cr_assert(flipped > 1080 && flipped < 1320, "%d of 4000 flipped at p = 0.3", flipped);
    cr_assert(differs_by_epoch > 1000, "epochs draw anew: %d differ", differs_by_epoch);
    cr_assert(augment_sample(&al, 1, 2, 7, false, DTYPE_UINT8, 2, shape, img, out) == 0);
    cr_assert(memcmp(out, img, 30) == 0, "no flip in evaluation");
}

Test(augment, float_samples_and_chains) {
    float img[2 * 4 * 4], out[2 * 2 * 2];
    for (int i = 0; i < 32; i++) img[i] = (float)i * 0.5f;
    int64_t shape[3] = {2, 4, 4}, o[3];
    AugmentList al = {.count = 2, .items = {{.type = AUGMENT_RESIZE, .size_h = 4, .size_w = 4},
                                            {.type = AUGMENT_CENTER_CROP, .size_h = 2,
                                             .size_w = 2}}};
    cr_assert(augment_list_output(&al, 3, 3, shape, o) == 0);
    cr_assert(o[0] == 2 && o[1] == 2 && o[2] == 2);
    cr_assert(augment_sample(&al, 0, 0, 0, true, DTYPE_FLOAT32, 3, shape, img, out) == 0);
    /* a same-size Resize is the identity; the centre of 4 is rows/cols 1..2 */
    float want[8] = {2.5f, 3.0f, 4.5f, 5.0f, 10.5f, 11.0f, 12.5f, 13.0f};
    for (int i = 0; i < 8; i++) cr_assert_float_eq(out[i], want[i], 1e-6, "out[%d]", i);
    AugmentList big = {.count = 1, .items = {{.type = AUGMENT_RANDOM_CROP, .size_h = 9,
                                              .size_w = 9, .pad = {1, 1, 1, 1}}}};
    cr_assert(augment_list_output(&big, 3, 3, shape, o) == -1);
    cr_assert_str_eq(error_get(), "transforms[3] RandomCrop: size (9, 9) is larger than the "
                                  "padded image (6, 6)");
    cr_assert_str_eq(error_last()->path, "transforms[3]");
}

/* ---- through the DataLoader ---- */

static Dataset *ramp_dataset(int64_t n) {
    Tensor *x = tensor_empty(SHAPE(n, 1, 8, 8), DTYPE_UINT8, DEVICE_CPU_INIT);
    Tensor *y = tensor_empty(SHAPE(n), DTYPE_INT64, DEVICE_CPU_INIT);
    uint8_t *p = tensor_data(x);
    for (int64_t i = 0; i < n * 64; i++) p[i] = (uint8_t)(i * 7 % 251);
    for (int64_t i = 0; i < n; i++) ((int64_t *)tensor_data(y))[i] = i % 3;
    Dataset *ds = dataset_from_tensors(x, y, "ramp");
    cr_assert(ds, "%s", error_get());
    return ds;
}

static const AugmentList cifar_like = {
    .count = 2,
    .items = {{.type = AUGMENT_RANDOM_CROP, .size_h = 8, .size_w = 8, .pad = {2, 2, 2, 2}},
              {.type = AUGMENT_RANDOM_HORIZONTAL_FLIP, .p = 0.5}}};

/* Every batch of two epochs, concatenated. */
static Tensor *two_epochs(const Dataset *ds, int prefetch, int workers) {
    DataLoaderOptions o = {.batch_size = 5, .shuffle = true, .seed = 4, .prefetch = prefetch,
                           .augment = &cifar_like, .num_workers = workers};
    DataLoader *dl = dataloader_new(ds, &o, NULL);
    cr_assert(dl, "%s", error_get());
    Tensor *all = tensor_empty(SHAPE(2 * ds->n, 1, 8, 8), DTYPE_UINT8, DEVICE_CPU_INIT);
    int64_t at = 0;
    for (int e = 0; e < 2; e++) {
        cr_assert(dataloader_begin_epoch(dl, e) == 0);
        Batch b;
        while (dataloader_next(dl, &b) == 1) {
            memcpy((uint8_t *)tensor_data(all) + at * 64, tensor_data(b.inputs),
                   (size_t)(b.size * 64));
            at += b.size;
            batch_release(&b);
        }
    }
    dataloader_free(dl);
    return all;
}

Test(augment, loader_batches_repeat_for_any_prefetch_and_workers) {
    Dataset *ds = ramp_dataset(23);
    Tensor *a = two_epochs(ds, 0, 1), *b = two_epochs(ds, 2, 2), *c = two_epochs(ds, 1, 3);
    cr_assert(memcmp(tensor_data(a), tensor_data(b), 2 * 23 * 64) == 0);
    cr_assert(memcmp(tensor_data(a), tensor_data(c), 2 * 23 * 64) == 0);
    /* and it augments: the two epochs of one sample differ somewhere */
    cr_assert(memcmp(tensor_data(a), (uint8_t *)tensor_data(a) + 23 * 64, 23 * 64) != 0);
    tensor_release(a), tensor_release(b), tensor_release(c);
    dataset_free(ds);
}

Test(augment, loader_shapes_follow_the_transforms) {
    Dataset *ds = ramp_dataset(4);
    AugmentList al = {.count = 1, .items = {{.type = AUGMENT_CENTER_CROP, .size_h = 3,
                                             .size_w = 5}}};
    DataLoaderOptions o = {.batch_size = 4, .augment = &al, .eval = true};
    DataLoader *dl = dataloader_new(ds, &o, NULL);
    cr_assert(dl, "%s", error_get());
    cr_assert(dataloader_begin_epoch(dl, 0) == 0);
    Batch b;
    cr_assert(dataloader_next(dl, &b) == 1);
    int64_t want[4] = {4, 1, 3, 5};
    for (int i = 0; i < 4; i++) cr_assert_eq(b.inputs->shape[i], want[i]);
    /* the centre of 8 x 8: top round(2.5) = 2, left round(1.5) = 2 */
    const uint8_t *src = tensor_data(ds->inputs), *got = tensor_data(b.inputs);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 5; x++) cr_assert_eq(got[y * 5 + x], src[(y + 2) * 8 + x + 2]);
    batch_release(&b);
    dataloader_free(dl);
    AugmentList too_big = {.count = 1, .items = {{.type = AUGMENT_CENTER_CROP, .size_h = 0}}};
    o.augment = &too_big;
    cr_assert_null(dataloader_new(ds, &o, NULL));
    cr_assert_str_eq(error_get(), "dataloader: transforms[0] CenterCrop: gives an empty image "
                                  "(0, 0) from (8, 8)");
    dataset_free(ds);
}
