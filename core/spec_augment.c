/* spec_augment.c - the per-sample entries of "data.transforms":
 * RandomCrop, RandomHorizontalFlip, Resize, CenterCrop with torchvision's
 * arguments (core/data/augment.h does them). Arguments torchvision has but
 * traind does not implement are accepted at their default only.
 */
#include <string.h>

#include "core/error.h"
#include "core/spec_json.h"

/* torchvision's size: an int, or a list of 1 (an int) or 2 ([h, w]);
 * *w = 0 for the int form. */
static int get_size(const json_t *o, const char *path, int64_t *h, int64_t *w) {
    char p[SPEC_PATH_MAX];
    spec_path_key(p, path, "size");
    json_t *v = json_object_get(o, "size");
    if (!v) return error_at(p, "required");
    *w = 0;
    if (json_is_array(v) && (json_array_size(v) == 1 || json_array_size(v) == 2)) {
        char pi[SPEC_PATH_MAX];
        if (spec_int_value(json_array_get(v, 0), spec_path_index(pi, p, 0), 1, 1 << 20, h))
            return -1;
        return json_array_size(v) == 2
                   ? spec_int_value(json_array_get(v, 1), spec_path_index(pi, p, 1), 1, 1 << 20, w)
                   : 0;
    }
    if (json_is_array(v)) return error_at(p, "expected an integer or a list of 1 or 2 integers");
    return spec_int_value(v, p, 1, 1 << 20, h);
}

/* RandomCrop's padding: an int (all sides), [lr, tb] or [l, t, r, b]. */
static int get_padding(const json_t *o, const char *path, int64_t pad[4]) {
    char p[SPEC_PATH_MAX], pi[SPEC_PATH_MAX];
    spec_path_key(p, path, "padding");
    json_t *v = json_object_get(o, "padding");
    memset(pad, 0, 4 * sizeof *pad);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v)) {
        if (spec_int_value(v, p, 0, 1 << 16, &pad[0])) return -1;
        pad[1] = pad[2] = pad[3] = pad[0];
        return 0;
    }
    size_t n = json_array_size(v);
    if (n != 2 && n != 4) return error_at(p, "expected an integer or a list of 2 or 4 integers");
    for (size_t i = 0; i < n; i++)
        if (spec_int_value(json_array_get(v, i), spec_path_index(pi, p, i), 0, 1 << 16, &pad[i]))
            return -1;
    if (n == 2) pad[2] = pad[0], pad[3] = pad[1];
    return 0;
}

static const char *const crop_fields[] = {"type", "size", "padding", "pad_if_needed", "fill",
                                          "padding_mode", NULL};
static const char *const flip_fields[] = {"type", "p", NULL};
static const char *const resize_fields[] = {"type", "size", "interpolation", "max_size",
                                            "antialias", NULL};
static const char *const center_fields[] = {"type", "size", NULL};

static int parse_random_crop(const json_t *o, const char *path, Augment *a) {
    a->type = AUGMENT_RANDOM_CROP;
    if (spec_check_fields(o, path, crop_fields, "RandomCrop") ||
        get_size(o, path, &a->size_h, &a->size_w) || get_padding(o, path, a->pad) ||
        spec_only_default(o, path, "pad_if_needed", json_false(), "false") ||
        spec_only_default(o, path, "fill", json_integer(0), "0") ||
        spec_only_default(o, path, "padding_mode", json_string("constant"), "'constant'"))
        return -1;
    if (a->size_w == 0) a->size_w = a->size_h; /* a crop's int is square */
    return 0;
}

static int parse_flip(const json_t *o, const char *path, Augment *a) {
    a->type = AUGMENT_RANDOM_HORIZONTAL_FLIP;
    if (spec_check_fields(o, path, flip_fields, "RandomHorizontalFlip") ||
        spec_get_number(o, path, "p", false, 0.5, &a->p))
        return -1;
    char p[SPEC_PATH_MAX];
    if (!(a->p >= 0 && a->p <= 1))
        return error_at(spec_path_key(p, path, "p"), "must be in [0, 1], got %g", a->p);
    return 0;
}

static int parse_resize(const json_t *o, const char *path, Augment *a) {
    a->type = AUGMENT_RESIZE;
    char p[SPEC_PATH_MAX];
    json_t *aa = json_object_get(o, "antialias");
    if (aa && !json_is_true(aa) && !json_is_null(aa))
        return error_at(spec_path_key(p, path, "antialias"),
                        "only true (PIL's resampling, torchvision's for images) is supported");
    return spec_check_fields(o, path, resize_fields, "Resize") ||
                   get_size(o, path, &a->size_h, &a->size_w) ||
                   spec_only_default(o, path, "interpolation", json_string("bilinear"),
                                     "'bilinear'") ||
                   spec_only_default(o, path, "max_size", json_null(), "null")
               ? -1
               : 0;
}

static int parse_center_crop(const json_t *o, const char *path, Augment *a) {
    a->type = AUGMENT_CENTER_CROP;
    if (spec_check_fields(o, path, center_fields, "CenterCrop") ||
        get_size(o, path, &a->size_h, &a->size_w))
        return -1;
    if (a->size_w == 0) a->size_w = a->size_h;
    return 0;
}

int spec_parse_augment(const json_t *o, const char *path, const char *type, Augment *out) {
    memset(out, 0, sizeof *out);
    if (strcmp(type, "RandomCrop") == 0) return parse_random_crop(o, path, out);
    if (strcmp(type, "RandomHorizontalFlip") == 0) return parse_flip(o, path, out);
    if (strcmp(type, "Resize") == 0) return parse_resize(o, path, out);
    if (strcmp(type, "CenterCrop") == 0) return parse_center_crop(o, path, out);
    return error_at(path, "unknown image transform '%s'", type);
}
