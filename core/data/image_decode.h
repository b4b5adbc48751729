/* image_decode.h - one PNG or JPEG file into 8-bit planar pixels.
 *
 * The pixels are what torchvision's default loader gives: PIL's
 * Image.open(f).convert("RGB") (3 channels) or, for "grayscale", that
 * RGB image's convert("L") (1 channel), laid out CHW as ToTensor wants.
 * The file's contents decide its kind (PNG or JPEG signature), not its
 * name, as PIL does.
 */
#ifndef TRAIND_CORE_DATA_IMAGE_DECODE_H
#define TRAIND_CORE_DATA_IMAGE_DECODE_H

#include <stdint.h>

/* A decompression bomb guard: images over this many pixels are refused
 * before their pixels are allocated (PIL refuses twice its 89 Mpixel
 * warning; 64 Mpixel is far above any training image). */
#define IMAGE_MAX_PIXELS (INT64_C(64) << 20)
/* A progressive JPEG's decoding costs a pass over its pixels per scan,
 * and a scan with no data is a few bytes: scans times pixels is capped at
 * 32 scans of the largest image (a progressive JPEG has about 10; a
 * 224x224 one may have 42,000). */
#define IMAGE_MAX_SCAN_PIXELS (32 * IMAGE_MAX_PIXELS)

typedef struct {
    int width, height, channels; /* channels 1 or 3 */
    uint8_t *pixels;             /* [channels, height, width]; malloc'ed, free() */
} Image;

/* Decodes the file at `path` into out (channels 3: RGB, 1: L). `name` is
 * how errors call the file ("cat/001.png": a path relative to the folder
 * the user gave). 0, or -1 with an error "NAME: what is wrong". With
 * `like` (not NULL), an image of another width or height is not decoded
 * (a folder's images are of one size, and a small file may claim 64
 * Mpixel, in every thread at once): 1, its size in out, no pixels. */
int image_decode(const char *path, const char *name, int channels, const Image *like,
                 Image *out);

#endif
