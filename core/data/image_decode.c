/* image_decode.c - PNG (libpng) and JPEG (libjpeg-turbo) files into the
 * pixels PIL's convert("RGB") / convert("L") gives; see image_decode.h.
 *
 * PIL's rules, which torchvision's loader inherits, and how they are kept:
 *   grey, grey+alpha    -> RGB repeats the grey value; alpha is dropped
 *   RGBA                -> RGB drops alpha (no compositing on a background)
 *   palette             -> the palette's colours; transparency ignored
 *   1/2/4-bit grey      -> scaled to 0..255 (x255, x85, x17)
 *   16-bit RGB(A), LA   -> the high byte of each sample (PIL's "RGB;16B")
 *   16-bit grey         -> PIL opens it as 32-bit "I" and convert clips to
 *                          0..255 (min(v, 255)), not the high byte
 *   RGB -> L            -> (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
 *   JPEG                -> libjpeg-turbo with PIL's settings (islow DCT,
 *                          fancy upsampling: the library's defaults);
 *                          grey JPEGs stay grey; CMYK ones are refused
 * A file that ends early is an error, as PIL's "image file is truncated".
 * Both libraries report errors by longjmp from a callback; the callbacks
 * keep the library's message for the error naming the file.
 */
#include "core/data/image_decode.h"

#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h> /* after stdio.h: jpeglib.h needs FILE and size_t */
#include <jpeglib.h>
#include <png.h>

#include "core/error.h"

/* ---- HWC 8-bit samples (1 G, 2 GA, 3 RGB, 4 RGBA) to planar ---- */

static uint8_t rgb_to_l(unsigned r, unsigned g, unsigned b) {
    return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

static void to_planar(const uint8_t *src, int src_ch, int64_t pixels, int channels,
                      uint8_t *out) {
    for (int64_t i = 0; i < pixels; i++) {
        const uint8_t *p = src + i * src_ch;
        unsigned r = p[0], g = src_ch >= 3 ? p[1] : p[0], b = src_ch >= 3 ? p[2] : p[0];
        if (channels == 1) {
            out[i] = rgb_to_l(r, g, b);
        } else {
            out[i] = (uint8_t)r;
            out[pixels + i] = (uint8_t)g;
            out[2 * pixels + i] = (uint8_t)b;
        }
    }
}

/* The header's size, before any pixel is allocated: 0, -1 with an error,
 * or 1 (its size in out) when it is not like's. */
static int check_size(const char *name, const char *kind, long long w, long long h,
                      const Image *like, Image *out) {
    if (w <= 0 || h <= 0) return error_set("%s: %s of %lldx%lld pixels", name, kind, w, h);
    if (w * h > IMAGE_MAX_PIXELS)
        return error_set("%s: %s of %lldx%lld pixels is over the limit of %lld pixels (a "
                         "decompression bomb?)", name, kind, w, h, (long long)IMAGE_MAX_PIXELS);
    if (!like || (w == like->width && h == like->height)) return 0;
    out->width = (int)w;
    out->height = (int)h;
    return 1;
}

/* The samples of a decoded file (HWC) into out's planes. Takes `hwc`. */
static int finish(const char *name, uint8_t *hwc, int src_ch, int w, int h, int channels,
                  Image *out) {
    int64_t pixels = (int64_t)w * h;
    out->pixels = malloc((size_t)(pixels * channels));
    if (!out->pixels) {
        free(hwc);
        return error_set("%s: out of memory for %dx%d pixels", name, w, h);
    }
    to_planar(hwc, src_ch, pixels, channels, out->pixels);
    free(hwc);
    out->width = w;
    out->height = h;
    out->channels = channels;
    return 0;
}

/* ---- PNG ---- */

typedef struct {
    char msg[200];
} PngErr;

static void png_on_error(png_structp png, png_const_charp msg) {
    PngErr *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* fread, with an end of file before libpng has what it needs as PIL's
 * "truncated" rather than libpng's bare "Read Error". */
static void png_on_read(png_structp png, png_bytep data, size_t size) {
    FILE *fp = png_get_io_ptr(png);
    if (fread(data, 1, size, fp) != size)
        png_error(png, ferror(fp) ? "a read error" : "the file ends early (truncated)");
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* ancillary-chunk trouble: PIL reads such files too */
}

/* 16-bit grey (big-endian) to 8 bits as PIL's I -> L/RGB: clipped. */
static void grey16_clip(uint8_t *buf, int64_t pixels) {
    for (int64_t i = 0; i < pixels; i++) {
        unsigned v = (unsigned)buf[2 * i] << 8 | buf[2 * i + 1];
        buf[i] = (uint8_t)(v > 255 ? 255 : v);
    }
}

/* Sets libpng's transforms: 8-bit samples, palettes expanded (no tRNS
 * alpha is added that matters: alpha is dropped anyway). Returns whether
 * the rows stay 16-bit grey for grey16_clip. */
static bool png_setup(png_structp png, png_infop info) {
    int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    bool grey16 = depth == 16 && type == PNG_COLOR_TYPE_GRAY;
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !grey16) png_set_strip_16(png); /* the high byte, as PIL */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    return grey16;
}

static int decode_png(FILE *fp, const char *name, int channels, const Image *like, Image *out) {
    PngErr err = {""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return error_set("%s: out of memory", name);
    }
    uint8_t *volatile hwc = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(hwc);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return error_set("%s: not a valid PNG image (%s)", name, err.msg);
    }
    png_set_read_fn(png, fp, png_on_read);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int sized = check_size(name, "a PNG image", w, h, like, out);
    if (sized != 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return sized;
    }
    bool grey16 = png_setup(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    int src_ch = png_get_channels(png, info);
    hwc = malloc(rowbytes * h);
    rows = malloc(h * sizeof *rows);
    if (!hwc || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = hwc + y * rowbytes;
    png_read_image(png, rows);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    if (grey16) grey16_clip(hwc, (int64_t)w * h);
    return finish(name, hwc, src_ch, (int)w, (int)h, channels, out);
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    bool truncated;
    struct jpeg_progress_mgr progress;
    char refusal[ERROR_MAX]; /* our own reason to stop, not libjpeg's */
} JpegErr;

static void jpeg_on_error(j_common_ptr c) {
    JpegErr *e = (JpegErr *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jump, 1);
}

/* Called as libjpeg reads: a file whose scans would cost more than
 * IMAGE_MAX_SCAN_PIXELS (thousands of empty scans) is stopped at the
 * first scan past it. */
static void jpeg_on_progress(j_common_ptr c) {
    j_decompress_ptr d = (j_decompress_ptr)c;
    JpegErr *e = (JpegErr *)c->err;
    int64_t pixels = (int64_t)d->image_width * d->image_height;
    if (pixels > 0 && (int64_t)d->input_scan_number * pixels > IMAGE_MAX_SCAN_PIXELS) {
        snprintf(e->refusal, sizeof e->refusal,
                 "a JPEG of over %lld scans at %ux%u, more decoding than one image may take "
                 "(a progressive JPEG has about 10)",
                 (long long)(IMAGE_MAX_SCAN_PIXELS / pixels), d->image_width, d->image_height);
        longjmp(e->jump, 1);
    }
}

/* Warnings are ignored as PIL ignores them, except the data ending early,
 * which libjpeg pads with grey and PIL refuses. */
static void jpeg_on_message(j_common_ptr c, int level) {
    JpegErr *e = (JpegErr *)c->err;
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) e->truncated = true;
}

static int decode_jpeg(FILE *fp, const char *name, int channels, const Image *like,
                       Image *out) {
    struct jpeg_decompress_struct cinfo;
    JpegErr err;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_on_error;
    err.mgr.emit_message = jpeg_on_message;
    err.progress.progress_monitor = jpeg_on_progress;
    uint8_t *volatile hwc = NULL;
    if (setjmp(err.jump)) {
        free(hwc);
        jpeg_destroy_decompress(&cinfo);
        if (err.refusal[0]) return error_set("%s: %s", name, err.refusal);
        return error_set("%s: not a valid JPEG image (%s)", name, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &err.progress;
    jpeg_stdio_src(&cinfo, fp);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        return error_set("%s: a CMYK JPEG; only grey and colour (YCbCr/RGB) JPEGs are read",
                         name);
    }
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    int sized = check_size(name, "a JPEG image", cinfo.image_width, cinfo.image_height, like, out);
    if (sized != 0) {
        jpeg_destroy_decompress(&cinfo);
        return sized;
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    int src_ch = cinfo.output_components;
    size_t stride = (size_t)w * src_ch;
    hwc = malloc(stride * h);
    if (!hwc) ERREXIT1(&cinfo, JERR_OUT_OF_MEMORY, 0);
    while (cinfo.output_scanline < cinfo.output_height && !err.truncated) {
        JSAMPROW row = hwc + cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_destroy_decompress(&cinfo);
    if (err.truncated) {
        free(hwc);
        return error_set("%s: the JPEG data ends early (a truncated file)", name);
    }
    return finish(name, hwc, src_ch, w, h, channels, out);
}

/* ---- by signature ---- */

int image_decode(const char *path, const char *name, int channels, const Image *like,
                 Image *out) {
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return error_sys(errno, "%s", name);
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, fp);
    rewind(fp);
    int rc;
    if (got == 8 && png_sig_cmp(sig, 0, 8) == 0)
        rc = decode_png(fp, name, channels, like, out);
    else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF)
        rc = decode_jpeg(fp, name, channels, like, out);
    else if (got == 0)
        rc = error_set("%s: an empty file, not a PNG or JPEG image", name);
    else
        rc = error_set("%s: not a PNG or JPEG image (it starts with %02x %02x %02x %02x)", name,
                       sig[0], sig[1], sig[2], sig[3]);
    fclose(fp);
    return rc;
}
