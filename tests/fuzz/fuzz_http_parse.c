/* fuzz_http_parse.c - the request head parser (server/http_parse.c) and
 * the chunked body decoder (server/http_chunked.c), driven from bytes.
 *
 * Input: byte 0 sets the size of the pieces the chunked decoder is fed
 * (1..128 bytes, or multiples of 64 up to 8192); the rest is what a client
 * sent. http_head_end finds the head; http_head_parse reads it (or, when
 * there is no head end, all of the bytes: it must refuse them cleanly);
 * the bytes after the head are the body, decoded at once and in pieces.
 * Each call gets its bytes in a buffer of exactly their size, so ASan
 * sees a read past the end. Checked:
 *   - the head's end is 0 or just past an LF;
 *   - a parsed head is what http_parse.h says: a token method, an
 *     origin-form visible-ASCII target, HTTP/1.0 or 1.1, named fields,
 *     never both a length and chunked, a length within 2^63-1;
 *   - a refusal has a status in 400-599, a code, a message, and message
 *     and path are printable ASCII (they go into a JSON body);
 *   - the body decoded in pieces gives the same bytes, verdict, count of
 *     bytes used and message as decoded at once.
 */
#include <stdlib.h>
#include <string.h>

#include "server/http_chunked.h"
#include "server/http_parse.h"
#include "tests/fuzz/fuzz_support.h"

static char *copy_of(const uint8_t *data, size_t n) {
    char *p = malloc(n ? n : 1);
    if (!p) fuzz_fail("out of memory copying %zu bytes", n);
    if (n) memcpy(p, data, n);
    return p;
}

static void check_printable(const char *what, const char *s) {
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7E)
            fuzz_fail("%s holds byte 0x%02x: %s", what, (unsigned char)*c, s);
}

static void check_refusal(const HttpHeadError *e) {
    if (e->status < 400 || e->status > 599) fuzz_fail("refused with status %d", e->status);
    if (!e->code || !*e->code) fuzz_fail("status %d without a code", e->status);
    if (!e->message[0]) fuzz_fail("status %d (%s) without a message", e->status, e->code);
    check_printable("the message", e->message);
    check_printable("the path", e->path);
}

static void check_head(const HttpHead *h) {
    if (!h->method[0]) fuzz_fail("a head without a method");
    if (!h->target || h->target[0] != '/') fuzz_fail("a target not starting with '/'");
    check_printable("the target", h->target);
    if (strchr(h->target, ' ')) fuzz_fail("a space in the target: %s", h->target);
    if (!h->path || h->minor < 0 || h->minor > 1) fuzz_fail("no path, or HTTP/1.%d", h->minor);
    if (h->has_length && h->chunked) fuzz_fail("both a Content-Length and chunked");
    if (h->content_length > (uint64_t)INT64_MAX) fuzz_fail("a Content-Length over 2^63-1");
    for (int i = 0; i < h->num_fields; i++) {
        if (!h->fields[i].name[0] || !h->fields[i].value)
            fuzz_fail("field %d: an empty name or no value", i);
        if (!http_head_field(h, h->fields[i].name))
            fuzz_fail("field '%s' not found by its name", h->fields[i].name);
    }
    for (int i = 0; i < h->num_args; i++)
        if (!h->args[i].name || !h->args[i].value) fuzz_fail("argument %d without a string", i);
}

typedef struct {
    int rc;
    char *body;
    size_t body_len, used;
    char err[256];
} Decoded;

/* data[0, n) decoded in pieces of `piece` bytes, each in a buffer of its
 * own exact size. */
static Decoded decode(const uint8_t *data, size_t n, size_t piece) {
    Decoded d = {.body = copy_of(data, n)};
    HttpChunked c = {0};
    for (size_t at = 0; at < n && !d.rc; at += piece) {
        size_t k = n - at < piece ? n - at : piece, used, out;
        char *buf = copy_of(data + at, k);
        d.rc = http_chunked_decode(&c, buf, k, &used, &out, d.err, sizeof d.err);
        if (used > k || out > used) fuzz_fail("used %zu, out %zu of %zu", used, out, k);
        if (!d.rc && used != k) fuzz_fail("0 with %zu of %zu bytes used", used, k);
        memcpy(d.body + d.body_len, buf, out);
        d.body_len += out;
        d.used += used;
        free(buf);
    }
    if (d.rc == -1 && strncmp(d.err, "chunked body: ", 14))
        fuzz_fail("a chunked error without its prefix: %s", d.err);
    return d;
}

static void check_chunked(const uint8_t *data, size_t n, size_t piece) {
    Decoded whole = decode(data, n, n ? n : 1), parts = decode(data, n, piece);
    if (whole.rc != parts.rc || whole.used != parts.used || whole.body_len != parts.body_len ||
        memcmp(whole.body, parts.body, whole.body_len) || strcmp(whole.err, parts.err))
        fuzz_fail("pieces of %zu: rc %d, %zu used, %zu out (%s); whole: rc %d, %zu, %zu (%s)",
                  piece, parts.rc, parts.used, parts.body_len, parts.err, whole.rc, whole.used,
                  whole.body_len, whole.err);
    free(whole.body);
    free(parts.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t piece = data[0] < 128 ? (size_t)data[0] + 1 : (size_t)(data[0] - 127) * 64;
    data++;
    size--;
    char *all = copy_of(data, size);
    size_t end = http_head_end(all, size);
    free(all);
    if (end > size || (end && data[end - 1] != '\n')) fuzz_fail("a head end at %zu", end);
    size_t head_len = end ? end : size;
    char *head = copy_of(data, head_len);
    HttpHead h;
    HttpHeadError e;
    int rc = http_head_parse(head, head_len, &h, &e);
    if (rc == 0 && e.status) fuzz_fail("parsed, with status %d", e.status);
    if (rc == 0) check_head(&h);
    else if (rc == -1) check_refusal(&e);
    else fuzz_fail("http_head_parse returned %d", rc);
    http_head_free(&h);
    free(head);
    check_chunked(data + end, size - end, piece);
    return 0;
}
