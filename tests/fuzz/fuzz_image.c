/* fuzz_image.c - the PNG/JPEG decoder of image folders (core/data/image_decode.c).
 *
 * The input is the file, decoded as RGB (3 channels) and as L (1): both
 * fail alike with a message or give the same width and height, within
 * IMAGE_MAX_PIXELS, and the L pixels are the RGB pixels' luma (PIL's
 * convert("L") of convert("RGB"), as image_decode.h promises; up to
 * LUMA_MAX_PIXELS, larger images are decoded as RGB only). A header
 * claiming a decompression bomb must be refused before its pixels are
 * allocated: run.sh's -rss_limit_mb (which also bounds one malloc) turns
 * an allocation for one into a finding.
 */
#include <stdlib.h>

#include "core/data/image_decode.h"
#include "tests/fuzz/fuzz_support.h"

/* A 625-byte baseline JPEG whose scan is an immediate EOI decodes, as in
 * PIL, to its full size in grey (libjpeg pads the missing data): 64
 * Mpixel take ~4.5 s a decode under the sanitizers. The L decode and its
 * check run only below this size, so that one input stays well within
 * run.sh's 10 s timeout. */
#define LUMA_MAX_PIXELS (INT64_C(1) << 20)

static int decode(const char *path, int channels, Image *img) {
    fuzz_begin();
    int rc = image_decode(path, "fuzz.img", channels, NULL, img);
    fuzz_end(channels == 3 ? "image_decode RGB" : "image_decode L", rc != 0);
    if (rc != 0 && img->pixels) fuzz_fail("image_decode failed but left pixels");
    if (rc == 0 && (!img->pixels || img->channels != channels || img->width <= 0 ||
                    img->height <= 0 ||
                    (int64_t)img->width * img->height > IMAGE_MAX_PIXELS))
        fuzz_fail("image_decode: %dx%d, %d channels (asked %d)", img->width, img->height,
                  img->channels, channels);
    return rc;
}

/* L must be (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 of the RGB planes. */
static void check_luma(const Image *rgb, const Image *l) {
    if (rgb->width != l->width || rgb->height != l->height)
        fuzz_fail("image_decode: RGB %dx%d but L %dx%d", rgb->width, rgb->height, l->width,
                  l->height);
    int64_t n = (int64_t)rgb->width * rgb->height;
    const uint8_t *r = rgb->pixels, *g = r + n, *b = g + n;
    for (int64_t i = 0; i < n; i++) {
        unsigned want = (r[i] * 19595u + g[i] * 38470u + b[i] * 7471u + 0x8000u) >> 16;
        if (l->pixels[i] != want)
            fuzz_fail("image_decode: pixel %lld: L %u, but RGB (%u, %u, %u) gives %u",
                      (long long)i, l->pixels[i], r[i], g[i], b[i], want);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(0, (FuzzBytes){data, size});
    Image rgb, l = {0};
    int rc_rgb = decode(path, 3, &rgb);
    if (rc_rgb != 0 || (int64_t)rgb.width * rgb.height <= LUMA_MAX_PIXELS) {
        int rc_l = decode(path, 1, &l);
        if (rc_rgb != rc_l) fuzz_fail("image_decode: RGB gave %d, L gave %d", rc_rgb, rc_l);
        if (rc_rgb == 0) check_luma(&rgb, &l);
    }
    free(rgb.pixels);
    free(l.pixels);
    return 0;
}
