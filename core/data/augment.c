/* augment.c - RandomCrop, RandomHorizontalFlip, Resize and CenterCrop on
 * one sample; see augment.h.
 *
 * A sample is `planes` images of H x W (its leading dims flattened). Each
 * step reads one buffer and writes the next at its output size; crops and
 * flips are index arithmetic, Resize is PIL's two-pass resampling
 * (ImagingResample with the bilinear filter: precompute_coeffs, then
 * 22-bit fixed-point coefficients and a rounded uint8 result per pass), so
 * a folder of images resized here matches torchvision's PIL pipeline.
 */
#include "core/data/augment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

/* Random numbers a sample may draw from its stream (a crop takes 2, a flip
 * 1, rejection sampling rarely more): samples' ranges do not overlap. */
#define AUGMENT_DRAWS_PER_SAMPLE 64

static const char *const type_names[] = {
    [AUGMENT_RANDOM_CROP] = "RandomCrop",
    [AUGMENT_RANDOM_HORIZONTAL_FLIP] = "RandomHorizontalFlip",
    [AUGMENT_RESIZE] = "Resize",
    [AUGMENT_CENTER_CROP] = "CenterCrop",
};

const char *augment_type_name(AugmentType type) { return type_names[type]; }

bool augment_is_type(const char *type) {
    for (size_t i = 0; i < sizeof type_names / sizeof *type_names; i++)
        if (strcmp(type, type_names[i]) == 0) return true;
    return false;
}

/* ---- geometry ---- */

/* A sample as `planes` images of h x w (its leading dims flattened). */
typedef struct {
    int64_t planes, h, w;
} Frame;

/* torchvision's _compute_resized_output_size for Resize(int): the shorter
 * side becomes size, the longer int(size * long / short). */
static void resize_target(const Augment *a, int64_t h, int64_t w, int64_t *oh, int64_t *ow) {
    if (a->size_w > 0) {
        *oh = a->size_h, *ow = a->size_w;
        return;
    }
    int64_t s = a->size_h;
    if (w <= h)
        *ow = s, *oh = (int64_t)((double)s * (double)h / (double)w);
    else
        *oh = s, *ow = (int64_t)((double)s * (double)w / (double)h);
}

/* The output of one step, or -1 with a bare error. */
static int step_output(const Augment *a, Frame in, Frame *out) {
    *out = in;
    switch (a->type) {
    case AUGMENT_RANDOM_CROP: {
        int64_t ph = in.h + a->pad[1] + a->pad[3], pw = in.w + a->pad[0] + a->pad[2];
        if (a->size_h > ph || a->size_w > pw)
            return error_set("size (%lld, %lld) is larger than the padded image (%lld, %lld)",
                             (long long)a->size_h, (long long)a->size_w, (long long)ph,
                             (long long)pw);
        out->h = a->size_h, out->w = a->size_w;
        return 0;
    }
    case AUGMENT_RANDOM_HORIZONTAL_FLIP: return 0;
    case AUGMENT_RESIZE: resize_target(a, in.h, in.w, &out->h, &out->w); break;
    case AUGMENT_CENTER_CROP: out->h = a->size_h, out->w = a->size_w; break;
    }
    if (out->h < 1 || out->w < 1)
        return error_set("gives an empty image (%lld, %lld) from (%lld, %lld)",
                         (long long)out->h, (long long)out->w, (long long)in.h,
                         (long long)in.w);
    return 0;
}

static int frame_of(int ndim, const int64_t *shape, Frame *im) {
    if (ndim < 2) return error_set("needs images [..., H, W], got a sample of %d dims", ndim);
    im->planes = 1;
    for (int i = 0; i < ndim - 2; i++) im->planes *= shape[i];
    im->h = shape[ndim - 2], im->w = shape[ndim - 1];
    return 0;
}

int augment_list_output(const AugmentList *al, int first, int ndim, const int64_t *shape,
                        int64_t *out_shape) {
    Frame im;
    memcpy(out_shape, shape, (size_t)ndim * sizeof *shape);
    if (al->count == 0) return 0;
    for (int i = 0; i < al->count; i++)
        if ((i == 0 && frame_of(ndim, shape, &im) != 0) ||
            step_output(&al->items[i], im, &im) != 0) {
            char path[32];
            snprintf(path, sizeof path, "transforms[%d]", first + i);
            error_prefix("%s %s", path, type_names[al->items[i].type]);
            return error_set_path(path);
        }
    out_shape[ndim - 2] = im.h, out_shape[ndim - 1] = im.w;
    return 0;
}

/* ---- crops and flips: out(y, x) = in(top + y, left + x), zero outside ---- */

#define CROP(T)                                                                                 \
    static void crop_##T(const T *in, Frame a, T *out, Frame b, int64_t top, int64_t left,      \
                         bool flip) {                                                           \
        for (int64_t p = 0; p < a.planes; p++)                                                  \
            for (int64_t y = 0; y < b.h; y++) {                                                 \
                int64_t sy = top + y;                                                           \
                T *row = out + (p * b.h + y) * b.w;                                             \
                for (int64_t x = 0; x < b.w; x++) {                                             \
                    int64_t sx = left + (flip ? b.w - 1 - x : x);                               \
                    bool inside = sy >= 0 && sy < a.h && sx >= 0 && sx < a.w;                   \
                    row[x] = inside ? in[(p * a.h + sy) * a.w + sx] : (T)0;                     \
                }                                                                               \
            }                                                                                   \
    }
CROP(uint8_t)
CROP(float)

/* torchvision's center_crop offset: int(round((size - crop) / 2.0)), half to
 * even; a crop larger than the image pads (crop - size) // 2 before it. */
static int64_t center_offset(int64_t size, int64_t crop) {
    if (crop > size) return -((crop - size) / 2);
    return (int64_t)rint((double)(size - crop) / 2.0);
}

/* ---- Resize: PIL's bilinear resampling ---- */

#define PRECISION_BITS (32 - 8 - 2)

typedef struct {
    int64_t *first, *count; /* per output pixel: input range */
    double *w;              /* ksize weights per output pixel */
    int *fixed;             /* the same in PIL's fixed point */
    int64_t ksize;
} Coeffs;

static double bilinear(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* PIL's precompute_coeffs for in_size -> out_size. */
static int coeffs_init(Coeffs *c, int64_t in_size, int64_t out_size) {
    double scale = (double)in_size / (double)out_size, filterscale = scale < 1 ? 1 : scale;
    double support = filterscale; /* the bilinear filter's support is 1 */
    c->ksize = (int64_t)ceil(support) * 2 + 1;
    c->first = malloc((size_t)out_size * sizeof *c->first);
    c->count = malloc((size_t)out_size * sizeof *c->count);
    c->w = calloc((size_t)(out_size * c->ksize), sizeof *c->w);
    c->fixed = calloc((size_t)(out_size * c->ksize), sizeof *c->fixed);
    if (!c->first || !c->count || !c->w || !c->fixed) return error_set("Resize: out of memory");
    for (int64_t o = 0; o < out_size; o++) {
        double center = ((double)o + 0.5) * scale, ww = 0, ss = 1.0 / filterscale;
        int64_t lo = (int64_t)(center - support + 0.5), hi = (int64_t)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        double *k = c->w + o * c->ksize;
        for (int64_t x = 0; x < hi - lo; x++)
            ww += k[x] = bilinear(((double)(x + lo) - center + 0.5) * ss);
        for (int64_t x = 0; x < hi - lo; x++) {
            if (ww != 0.0) k[x] /= ww;
            double f = k[x] * (double)(1 << PRECISION_BITS);
            c->fixed[o * c->ksize + x] = (int)(k[x] < 0 ? f - 0.5 : f + 0.5);
        }
        c->first[o] = lo, c->count[o] = hi - lo;
    }
    return 0;
}

static void coeffs_free(Coeffs *c) {
    free(c->first), free(c->count), free(c->w), free(c->fixed);
}

static uint8_t clip8(int64_t v) {
    if (v >= ((int64_t)1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* One pass over `n` lines of `len` inputs spaced `in_step` apart (a row: 1;
 * a column: the width), each output spaced `out_step` apart. */
static void resample_u8(const uint8_t *in, int64_t in_step, uint8_t *out, int64_t out_step,
                        int64_t out_len, const Coeffs *c) {
    for (int64_t o = 0; o < out_len; o++) {
        int64_t acc = (int64_t)1 << (PRECISION_BITS - 1);
        const int *k = c->fixed + o * c->ksize;
        for (int64_t x = 0; x < c->count[o]; x++)
            acc += (int64_t)in[(c->first[o] + x) * in_step] * k[x];
        out[o * out_step] = clip8(acc);
    }
}

static void resample_f32(const float *in, int64_t in_step, float *out, int64_t out_step,
                         int64_t out_len, const Coeffs *c) {
    for (int64_t o = 0; o < out_len; o++) {
        double acc = 0;
        const double *k = c->w + o * c->ksize;
        for (int64_t x = 0; x < c->count[o]; x++) acc += in[(c->first[o] + x) * in_step] * k[x];
        out[o * out_step] = (float)acc;
    }
}

/* Horizontal pass into tmp [planes, a.h, b.w], then vertical into out. */
static int resize(DType dt, const void *in, Frame a, void *tmp, void *out, Frame b) {
    Coeffs cx = {0}, cy = {0};
    int rc = coeffs_init(&cx, a.w, b.w) || coeffs_init(&cy, a.h, b.h) ? -1 : 0;
    size_t es = dtype_size(dt);
    for (int64_t p = 0; rc == 0 && p < a.planes; p++) {
        const char *src = (const char *)in + (size_t)(p * a.h * a.w) * es;
        char *mid = (char *)tmp + (size_t)(p * a.h * b.w) * es;
        char *dst = (char *)out + (size_t)(p * b.h * b.w) * es;
        for (int64_t y = 0; y < a.h; y++) {
            const void *s = src + (size_t)(y * a.w) * es;
            void *d = mid + (size_t)(y * b.w) * es;
            if (dt == DTYPE_UINT8) resample_u8(s, 1, d, 1, b.w, &cx);
            else resample_f32(s, 1, d, 1, b.w, &cx);
        }
        for (int64_t x = 0; x < b.w; x++) {
            const void *s = mid + (size_t)x * es;
            void *d = dst + (size_t)x * es;
            if (dt == DTYPE_UINT8) resample_u8(s, b.w, d, b.w, b.h, &cy);
            else resample_f32(s, b.w, d, b.w, b.h, &cy);
        }
    }
    coeffs_free(&cx);
    coeffs_free(&cy);
    return rc;
}

/* ---- one sample ---- */

/* The crop's top-left corner and whether to mirror, for one step. */
static void place(const Augment *a, Frame in, Frame out, Rng *rng, bool train, int64_t *top,
                  int64_t *left, bool *flip) {
    *top = *left = 0;
    *flip = false;
    if (a->type == AUGMENT_RANDOM_HORIZONTAL_FLIP) {
        *flip = train && rng_uniform(rng) < a->p;
    } else if (a->type == AUGMENT_CENTER_CROP) {
        *top = center_offset(in.h, out.h), *left = center_offset(in.w, out.w);
    } else { /* RandomCrop, in padded coordinates, then shifted by the padding */
        int64_t ph = in.h + a->pad[1] + a->pad[3], pw = in.w + a->pad[0] + a->pad[2];
        if (train) {
            *top = (int64_t)rng_below(rng, (uint64_t)(ph - out.h + 1));
            *left = (int64_t)rng_below(rng, (uint64_t)(pw - out.w + 1));
        } else {
            *top = center_offset(ph, out.h), *left = center_offset(pw, out.w);
        }
        *top -= a->pad[1], *left -= a->pad[0];
    }
}

static uint64_t mix64(uint64_t x) { /* splitmix64's finaliser */
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

int augment_sample(const AugmentList *al, uint64_t seed, int epoch, int64_t index, bool train,
                   DType dtype, int ndim, const int64_t *in_shape, const void *in, void *out) {
    if (dtype != DTYPE_UINT8 && dtype != DTYPE_FLOAT32)
        return error_set("image transforms take uint8 or float32 samples, not %s",
                         dtype_name(dtype));
    Frame im, steps[AUGMENT_MAX + 1];
    if (frame_of(ndim, in_shape, &im) != 0) return -1;
    size_t most = (size_t)(im.planes * im.h * im.w);
    steps[0] = im;
    for (int i = 0; i < al->count; i++) {
        if (step_output(&al->items[i], steps[i], &steps[i + 1]) != 0) return -1;
        size_t n = (size_t)(im.planes * steps[i + 1].h * steps[i + 1].w);
        size_t mid = (size_t)(im.planes * steps[i].h * steps[i + 1].w); /* Resize's pass */
        most = n > most ? n : most;
        most = mid > most ? mid : most;
    }
    size_t es = dtype_size(dtype);
    char *buf = malloc(3 * most * es);
    if (!buf) return error_set("image transforms: out of memory");
    char *bufs[2] = {buf, buf + most * es}, *tmp = buf + 2 * most * es;
    Rng rng = {.seed = mix64(seed ^ mix64((uint64_t)epoch + 0x9E3779B97F4A7C15ULL)),
               .offset = (uint64_t)index * AUGMENT_DRAWS_PER_SAMPLE};
    const void *src = in;
    int rc = 0;
    for (int i = 0; i < al->count && rc == 0; i++) {
        const Augment *a = &al->items[i];
        Frame a_in = steps[i], a_out = steps[i + 1];
        void *dst = i == al->count - 1 ? out : bufs[i % 2];
        if (a->type == AUGMENT_RESIZE) {
            rc = resize(dtype, src, a_in, tmp, dst, a_out);
        } else {
            int64_t top, left;
            bool flip;
            place(a, a_in, a_out, &rng, train, &top, &left, &flip);
            if (dtype == DTYPE_UINT8) crop_uint8_t(src, a_in, dst, a_out, top, left, flip);
            else crop_float(src, a_in, dst, a_out, top, left, flip);
        }
        src = dst;
    }
    free(buf);
    return rc;
}
