/* http_chunked.c - the chunked body decoder; see http_chunked.h.
 *
 * A state machine over the bytes (RFC 9112 7.1): the size line (hex
 * digits, then BWS and ';' extensions), the chunk's data (moved to the
 * front of the buffer a run at a time), the CRLF after it, and after the
 * last chunk (size 0) the trailer lines up to an empty one. Every line may
 * end in a bare LF, as the head's lines may (http_parse.c); a CR must be
 * followed by LF. The state lives in HttpChunked, so a feed may stop at
 * any byte and the next one goes on from there.
 */
#include "server/http_chunked.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "server/http.h"

#define CHUNK_DIGITS_MAX 16

enum {
    CH_SIZE,          /* the size's hex digits (the initial state: 0) */
    CH_SIZE_BWS,      /* spaces after the size, before a ';' */
    CH_EXT,           /* an extension, up to the line's end */
    CH_SIZE_LF,       /* the LF after the size line's CR */
    CH_DATA,          /* the chunk's data, c->left bytes to go */
    CH_DATA_END,      /* the CR or LF after the data */
    CH_DATA_LF,       /* the LF after the data's CR */
    CH_TRAILER_START, /* the start of a trailer line or of the final empty line */
    CH_TRAILER,       /* inside a trailer line */
    CH_TRAILER_LF,    /* the LF after a trailer line's CR */
    CH_END_LF,        /* the LF of the final empty line */
    CH_DONE,
    CH_FAILED,
};

typedef struct {
    HttpChunked *c;
    char *err;
    size_t err_max;
} Feed;

static int fail(Feed *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(Feed *f, const char *fmt, ...) {
    int n = snprintf(f->err, f->err_max, "chunked body: byte %llu: ",
                     (unsigned long long)f->c->offset);
    if (n >= 0 && (size_t)n < f->err_max) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->err + n, f->err_max - (size_t)n, fmt, ap);
        va_end(ap);
    }
    f->c->state = CH_FAILED;
    return -1;
}

/* b for a message: 'x' when printable, 0xNN when not. */
static const char *show(char out[8], unsigned char b) {
    if (b >= 0x20 && b < 0x7F) snprintf(out, 8, "'%c'", b);
    else snprintf(out, 8, "0x%02x", b);
    return out;
}

static int hex_value(unsigned char b) {
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    if (b >= 'A' && b <= 'F') return b - 'A' + 10;
    return -1;
}

/* The size line ended: the chunk's data next, or the trailers after the
 * last chunk. */
static void size_line_done(HttpChunked *c) {
    c->line = 0;
    c->digits = 0;
    c->state = c->left ? CH_DATA : CH_TRAILER_START;
}

/* The line's end at b (CR or LF) in a size line; 1 if it was one. */
static int size_line_end(HttpChunked *c, unsigned char b) {
    if (b == '\r') c->state = CH_SIZE_LF;
    else if (b == '\n') size_line_done(c);
    else return 0;
    return 1;
}

static int size_byte(Feed *f, unsigned char b) {
    HttpChunked *c = f->c;
    char s[8];
    if (b != '\r' && b != '\n' && ++c->line > HTTP_CHUNK_LINE_MAX)
        return fail(f, "a chunk-size line is over %d bytes", HTTP_CHUNK_LINE_MAX);
    int d = hex_value(b);
    switch (c->state) {
    case CH_SIZE:
        if (d >= 0) {
            if (++c->digits > CHUNK_DIGITS_MAX)
                return fail(f, "a chunk size has more than %d hex digits", CHUNK_DIGITS_MAX);
            if (c->left > ((uint64_t)INT64_MAX - (uint64_t)d) / 16)
                return fail(f, "a chunk size is over 2^63-1 bytes");
            c->left = c->left * 16 + (uint64_t)d;
            return 0;
        }
        if (!c->digits) return fail(f, "%s is not a hex digit of a chunk size", show(s, b));
        if (b == ' ' || b == '\t') c->state = CH_SIZE_BWS;
        else if (b == ';') c->state = CH_EXT;
        else if (!size_line_end(c, b))
            return fail(f, "%s is not a hex digit of a chunk size", show(s, b));
        return 0;
    case CH_SIZE_BWS:
        if (b == ';') c->state = CH_EXT;
        else if (b != ' ' && b != '\t')
            return fail(f, "%s after a chunk size is not ';' (an extension)", show(s, b));
        return 0;
    case CH_EXT:
        if (!size_line_end(c, b) && b != '\t' && (b < 0x20 || b == 0x7F))
            return fail(f, "%s is not allowed in a chunk extension", show(s, b));
        return 0;
    default: /* CH_SIZE_LF */
        if (b != '\n') return fail(f, "%s follows a CR in a chunk-size line, not LF", show(s, b));
        size_line_done(c);
        return 0;
    }
}

static int trailer_byte(Feed *f, unsigned char b) {
    HttpChunked *c = f->c;
    char s[8];
    if (++c->trailers > HTTP_HEADERS_MAX)
        return fail(f, "the trailer fields are over %d bytes", HTTP_HEADERS_MAX);
    switch (c->state) {
    case CH_TRAILER_START:
        if (b == '\r') c->state = CH_END_LF;
        else if (b == '\n') c->state = CH_DONE;
        else if (b == ' ' || b == '\t')
            return fail(f, "a trailer line starts with a space or tab (an obsolete folded line)");
        else c->state = CH_TRAILER;
        return 0;
    case CH_TRAILER:
        if (b == '\r') c->state = CH_TRAILER_LF;
        else if (b == '\n') c->state = CH_TRAILER_START;
        else if (b != '\t' && (b < 0x20 || b == 0x7F))
            return fail(f, "%s is not allowed in a trailer field", show(s, b));
        return 0;
    case CH_TRAILER_LF:
        if (b != '\n') return fail(f, "%s follows a CR in a trailer line, not LF", show(s, b));
        c->state = CH_TRAILER_START;
        return 0;
    default: /* CH_END_LF */
        if (b != '\n') return fail(f, "%s follows the final CR, not LF", show(s, b));
        c->state = CH_DONE;
        return 0;
    }
}

/* The CRLF (or LF) that must follow a chunk's data. */
static int data_end_byte(Feed *f, unsigned char b) {
    char s[8];
    if (f->c->state == CH_DATA_END && b == '\r') f->c->state = CH_DATA_LF;
    else if (b == '\n') f->c->state = CH_SIZE;
    else return fail(f, "%s where a chunk's data should end with CRLF", show(s, b));
    return 0;
}

static int one_byte(Feed *f, unsigned char b) {
    switch (f->c->state) {
    case CH_SIZE: case CH_SIZE_BWS: case CH_EXT: case CH_SIZE_LF:
        return size_byte(f, b);
    case CH_DATA_END: case CH_DATA_LF:
        return data_end_byte(f, b);
    default:
        return trailer_byte(f, b);
    }
}

int http_chunked_decode(HttpChunked *c, char *buf, size_t n, size_t *used, size_t *out, char *err,
                        size_t err_max) {
    Feed f = {c, err, err_max};
    size_t i = 0, o = 0;
    *used = *out = 0;
    if (c->state == CH_FAILED) {
        snprintf(err, err_max, "chunked body: fed again after an error");
        return -1;
    }
    while (i < n && c->state != CH_DONE) {
        if (c->state == CH_DATA) {
            size_t k = n - i < c->left ? n - i : (size_t)c->left;
            memmove(buf + o, buf + i, k);
            i += k;
            o += k;
            c->left -= k;
            c->offset += k;
            if (!c->left) c->state = CH_DATA_END;
            continue;
        }
        if (one_byte(&f, (unsigned char)buf[i])) break;
        i++;
        c->offset++;
    }
    *used = i;
    *out = o;
    if (c->state == CH_FAILED) return -1;
    return c->state == CH_DONE;
}
