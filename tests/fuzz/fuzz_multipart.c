/* fuzz_multipart.c - multipart/form-data parsing (server/multipart.c),
 * driven from bytes.
 *
 * Input: byte 0 sets the size of the pieces the body is fed in (1..16, or
 * multiples of 64 up to 15360), so that delimiters and header lines fall
 * at every place in a piece; then the Content-Type header up to the first
 * '\n'; then the body.
 *
 * Each body is parsed twice, fed whole and then in those pieces, and the
 * two parses must agree: the same parts (names, filenames, contents byte
 * for byte, a digest of them), the same failure, the same end. That is
 * what the daemon relies on: an upload's files do not depend on how TCP
 * cut the body. The callback checks the contract of multipart.h on the
 * way: a name always (at most MULTIPART_NAME_MAX bytes), an empty first
 * piece as each part starts and only non-empty pieces after it, no call
 * after the parse failed; a part named "abort" aborts the parse, as
 * routes/dataset_upload.c does on a bad field. Once a feed failed, every
 * later one must fail too.
 */
#include <stdint.h>
#include <string.h>

#include "server/multipart.h"
#include "tests/fuzz/fuzz_support.h"

#define CONTENT_TYPE_MAX 512

typedef struct {
    uint64_t digest; /* FNV-1a over the parts: names, filenames, contents */
    size_t parts, bytes;
    bool in_part, failed;
    int end;
} Parse;

static void mix(Parse *p, const void *data, size_t size) {
    const unsigned char *b = data;
    for (size_t i = 0; i < size; i++) p->digest = (p->digest ^ b[i]) * 0x100000001b3ULL;
}

static int on_piece(void *ctx, const char *field, const char *filename, bool first,
                    const char *data, size_t size) {
    Parse *p = ctx;
    if (p->failed) fuzz_fail("multipart: a call after the parse failed");
    if (!field) fuzz_fail("multipart: a piece without a field name");
    if (strlen(field) > MULTIPART_NAME_MAX) fuzz_fail("multipart: a name over the limit");
    if (!data) fuzz_fail("multipart: a piece of %zu bytes without data", size);
    if (first) {
        if (size) fuzz_fail("multipart: a first piece of %zu bytes, not empty", size);
        p->in_part = true;
        p->parts++;
        mix(p, "P", 1);
        mix(p, field, strlen(field) + 1);
        mix(p, filename ? "F" : "-", 1);
        if (filename) mix(p, filename, strlen(filename) + 1);
    } else {
        if (!p->in_part) fuzz_fail("multipart: content before a part started");
        if (!size) fuzz_fail("multipart: an empty piece of '%s' not first", field);
        mix(p, data, size);
        p->bytes += size;
    }
    return strcmp(field, "abort") == 0 ? -1 : 0;
}

/* Parses body fed in pieces of `step` bytes. */
static void parse(Parse *p, const char *ct, const char *body, size_t size, size_t step) {
    *p = (Parse){.digest = 0xcbf29ce484222325ULL};
    Multipart *mp = multipart_new(ct, on_piece, p);
    if (!mp) fuzz_fail("multipart: multipart_new refused '%s' the second time", ct);
    for (size_t at = 0; at < size; at += step) {
        size_t n = size - at < step ? size - at : step;
        int rc = multipart_feed(mp, body + at, n);
        if (p->failed && rc != -1) fuzz_fail("multipart: a feed after a failed one went on");
        p->failed |= rc != 0;
    }
    if (!size && multipart_feed(mp, body, 0) != 0) fuzz_fail("multipart: an empty feed failed");
    p->end = multipart_end(mp);
    if (p->failed && p->end == 0) fuzz_fail("multipart: a failed parse ended whole");
}

static size_t step_of(uint8_t b) { return b < 16 ? (size_t)b + 1 : (size_t)(b - 15) * 64; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = step_of(data[0]);
    const char *text = (const char *)data + 1, *end = text + size - 1;
    const char *nl = memchr(text, '\n', (size_t)(end - text));
    const char *body = nl ? nl + 1 : end;
    size_t ct_len = (size_t)((nl ? nl : end) - text);
    if (ct_len > CONTENT_TYPE_MAX) return 0;
    char ct[CONTENT_TYPE_MAX + 1];
    memcpy(ct, text, ct_len);
    ct[ct_len] = '\0';
    Multipart *probe = multipart_new(ct, on_piece, NULL);
    if (!probe) return 0; /* no boundary: the caller replies 400 */
    if (multipart_end(probe) != -1) fuzz_fail("multipart: an empty body ended whole");

    Parse whole, pieces;
    size_t body_len = (size_t)(end - body);
    parse(&whole, ct, body, body_len, body_len ? body_len : 1);
    parse(&pieces, ct, body, body_len, step);
    if (whole.parts != pieces.parts || whole.bytes != pieces.bytes ||
        whole.digest != pieces.digest || whole.failed != pieces.failed || whole.end != pieces.end)
        fuzz_fail("multipart: fed whole: %zu parts, %zu bytes, digest %016llx, %s, end %d; "
                  "in pieces of %zu: %zu parts, %zu bytes, digest %016llx, %s, end %d",
                  whole.parts, whole.bytes, (unsigned long long)whole.digest,
                  whole.failed ? "failed" : "ok", whole.end, step, pieces.parts, pieces.bytes,
                  (unsigned long long)pieces.digest, pieces.failed ? "failed" : "ok", pieces.end);
    return 0;
}
