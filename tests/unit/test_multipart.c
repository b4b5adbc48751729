/* test_multipart.c - server/multipart.c: multipart/form-data bodies parsed
 * as they stream, the parts' names, filenames and contents as the callback
 * receives them, fed whole, byte by byte and cut at every point; what is
 * malformed, a body cut short, the callback aborting. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "server/multipart.h"

#define PARTS_MAX 8
#define DATA_MAX 16384

typedef struct {
    char field[256];
    char filename[256];
    bool has_filename;
    char data[DATA_MAX];
    size_t len;
} Part;

typedef struct {
    Part parts[PARTS_MAX];
    int n;
    int calls_after_abort;
    bool aborted;
    int feed; /* the first feed that failed's -1, or 0 */
    int end;
} Rec;

/* Keeps every part; checks the callback contract on the way: an empty
 * first piece as each part starts, then only non-empty pieces of it. A
 * part named "abort" aborts the parse. */
static int on_piece(void *ctx, const char *field, const char *filename, bool first,
                    const char *data, size_t size) {
    Rec *r = ctx;
    if (r->aborted) r->calls_after_abort++;
    if (first) {
        cr_assert_eq(size, 0, "a part's first piece is empty, not %zu bytes", size);
        cr_assert_lt(r->n, PARTS_MAX);
        Part *p = &r->parts[r->n++];
        snprintf(p->field, sizeof p->field, "%s", field);
        p->has_filename = filename != NULL;
        snprintf(p->filename, sizeof p->filename, "%s", filename ? filename : "");
    } else {
        cr_assert_gt(r->n, 0, "a piece before any part started");
        cr_assert_gt(size, 0, "an empty piece not first");
        Part *p = &r->parts[r->n - 1];
        cr_assert_str_eq(field, p->field);
        cr_assert_eq(filename != NULL, p->has_filename);
        cr_assert_leq(p->len + size, DATA_MAX);
        memcpy(p->data + p->len, data, size);
        p->len += size;
    }
    if (strcmp(field, "abort") == 0) {
        r->aborted = true;
        return -1;
    }
    return 0;
}

/* Parses body fed in pieces cut at the offsets in cuts (ascending). */
static void parse_cut(Rec *r, const char *ct, const char *body, size_t len, const size_t *cuts,
                      int ncuts) {
    memset(r, 0, sizeof *r);
    Multipart *mp = multipart_new(ct, on_piece, r);
    cr_assert_not_null(mp, "multipart_new(\"%s\")", ct);
    size_t at = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        int rc = multipart_feed(mp, body + at, to - at);
        if (r->feed) cr_assert_eq(rc, -1, "a feed after a failed one must fail");
        r->feed = rc;
        at = to;
    }
    r->end = multipart_end(mp);
}

static void parse_step(Rec *r, const char *ct, const char *body, size_t len, size_t step) {
    size_t cuts[DATA_MAX];
    int n = 0;
    for (size_t at = step; at < len && n < DATA_MAX; at += step) cuts[n++] = at;
    parse_cut(r, ct, body, len, cuts, n);
}

static void parse(Rec *r, const char *ct, const char *body) {
    parse_cut(r, ct, body, strlen(body), NULL, 0);
}

static void assert_part(const Rec *r, int i, const char *field, const char *filename,
                        const char *data, size_t len) {
    cr_assert_lt(i, r->n, "part %d of %d", i, r->n);
    const Part *p = &r->parts[i];
    cr_assert_str_eq(p->field, field);
    cr_assert_eq(p->has_filename, filename != NULL, "part %s: filename %s", field,
                 p->has_filename ? p->filename : "(none)");
    if (filename) cr_assert_str_eq(p->filename, filename);
    cr_assert_eq(p->len, len, "part %s: %zu bytes, want %zu", field, p->len, len);
    cr_assert_eq(memcmp(p->data, data, len), 0, "part %s: content differs", field);
}

static bool same(const Rec *a, const Rec *b) {
    if (a->n != b->n || a->feed != b->feed || a->end != b->end) return false;
    for (int i = 0; i < a->n; i++) {
        const Part *p = &a->parts[i], *q = &b->parts[i];
        if (strcmp(p->field, q->field) || p->has_filename != q->has_filename ||
            strcmp(p->filename, q->filename) || p->len != q->len || memcmp(p->data, q->data, p->len))
            return false;
    }
    return true;
}

#define CT "multipart/form-data; boundary=XYZ"
#define CD "Content-Disposition: form-data; "

/* curl -F name=reg -F format=csv -F file=@r.csv, as curl 7.88 sends it */
static const char curl_body[] =
    "--------------------------d74496d66958873e\r\n"
    "Content-Disposition: form-data; name=\"name\"\r\n\r\n"
    "reg\r\n"
    "--------------------------d74496d66958873e\r\n"
    "Content-Disposition: form-data; name=\"format\"\r\n\r\n"
    "csv\r\n"
    "--------------------------d74496d66958873e\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"r.csv\"\r\n"
    "Content-Type: text/csv\r\n\r\n"
    "x1,y\r\n1,2\r\n3,4\r\n\r\n"
    "--------------------------d74496d66958873e--\r\n";
#define CURL_CT "multipart/form-data; boundary=------------------------d74496d66958873e"

Test(multipart, one_part) {
    Rec r;
    parse(&r, CT, "--XYZ\r\n" CD "name=\"a\"\r\n\r\nhello\r\n--XYZ--\r\n");
    cr_assert_eq(r.feed, 0);
    cr_assert_eq(r.end, 0);
    cr_assert_eq(r.n, 1);
    assert_part(&r, 0, "a", NULL, "hello", 5);
}

Test(multipart, several_parts_file_and_fields) {
    Rec r;
    parse(&r, CURL_CT, curl_body);
    cr_assert_eq(r.feed, 0);
    cr_assert_eq(r.end, 0);
    cr_assert_eq(r.n, 3);
    assert_part(&r, 0, "name", NULL, "reg", 3);
    assert_part(&r, 1, "format", NULL, "csv", 3);
    assert_part(&r, 2, "file", "r.csv", "x1,y\r\n1,2\r\n3,4\r\n", 16);
}

Test(multipart, empty_parts) {
    Rec r; /* an empty part, then one of the same name: two parts */
    parse(&r, CT, "--XYZ\r\n" CD "name=\"a\"\r\n\r\n\r\n--XYZ\r\n" CD "name=\"a\"\r\n\r\nxyz\r\n"
                  "--XYZ\r\n" CD "name=\"f\"; filename=\"\"\r\n\r\n\r\n--XYZ--");
    cr_assert_eq(r.end, 0);
    cr_assert_eq(r.n, 3);
    assert_part(&r, 0, "a", NULL, "", 0);
    assert_part(&r, 1, "a", NULL, "xyz", 3);
    assert_part(&r, 2, "f", "", "", 0); /* a browser's empty file input: filename "" */
    parse(&r, CT, "--XYZ--");
    cr_assert_eq(r.end, 0, "a body of no parts");
    cr_assert_eq(r.n, 0);
}

Test(multipart, boundary_in_content_is_content) {
    /* "--XYZ" not after CRLF, after a bare LF, and CRLF "--XY" cut short,
     * also right before the real delimiter */
    static const char content[] = "a--XYZ b\n--XYZ\r\n--XY\r\n\r\n-\r\n--X";
    char body[512];
    snprintf(body, sizeof body, "--XYZ\r\n" CD "name=\"c\"\r\n\r\n%s\r\n--XYZ--\r\n", content);
    Rec r;
    parse(&r, CT, body);
    cr_assert_eq(r.end, 0);
    cr_assert_eq(r.n, 1);
    assert_part(&r, 0, "c", NULL, content, strlen(content));
}

Test(multipart, every_split_gives_the_same_parts) {
    static const char body[] =
        "preamble\r\n--XY\r\n--XYZ  \t\r\n" CD "name=\"c\"\r\n\r\n\r\n--XY\r\r\n--X\r\n"
        "--XYZ\r\n" CD "name=f; filename=\"a\\\"b.csv\"\r\nX-Other: 1\r\n\r\n"
        "1,2\n--XYZ\r\n\r\n--XYZ--\r\nepilogue\r\n--XYZ\r\n";
    size_t len = strlen(body);
    Rec whole, r;
    parse(&whole, CT, body);
    cr_assert_eq(whole.feed, 0);
    cr_assert_eq(whole.end, 0);
    cr_assert_eq(whole.n, 2);
    assert_part(&whole, 0, "c", NULL, "\r\n--XY\r\r\n--X", 12);
    assert_part(&whole, 1, "f", "a\"b.csv", "1,2\n--XYZ\r\n", 11);
    parse_step(&r, CT, body, len, 1);
    cr_assert(same(&whole, &r), "byte by byte");
    for (size_t i = 0; i <= len; i++)
        for (size_t j = i; j <= len; j++) {
            size_t cuts[2] = {i, j};
            parse_cut(&r, CT, body, len, cuts, 2);
            cr_assert(same(&whole, &r), "cut at %zu and %zu", i, j);
        }
}

Test(multipart, curl_body_in_every_piece_size) {
    Rec whole, r;
    parse(&whole, CURL_CT, curl_body);
    for (size_t step = 1; step <= sizeof curl_body; step++) {
        parse_step(&r, CURL_CT, curl_body, strlen(curl_body), step);
        cr_assert(same(&whole, &r), "pieces of %zu bytes", step);
    }
}

Test(multipart, cut_short) {
    static const char body[] = "--XYZ\r\n" CD "name=\"a\"\r\n\r\nhello\r\n--XYZ--";
    Rec r;
    for (size_t len = 0; len < strlen(body); len++) {
        parse_cut(&r, CT, body, len, NULL, 0);
        cr_assert_eq(r.feed, 0, "cut at %zu: not malformed, only short", len);
        cr_assert_eq(r.end, -1, "cut at %zu", len);
    }
    parse(&r, CT, "--XYZ\r\n" CD "name=\"a\"\r\n\r\nhello\r\n--XYZ\r\n");
    cr_assert_eq(r.end, -1, "a delimiter, not the closing one");
    assert_part(&r, 0, "a", NULL, "hello", 5);
    parse(&r, CT, "no delimiter at all");
    cr_assert_eq(r.end, -1);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(multipart_end(NULL), -1);
}

/* Feeds a part whose headers are `head`: whether it is malformed. */
static bool malformed_head(const char *head) {
    char body[MULTIPART_HEADERS_MAX * 2];
    snprintf(body, sizeof body, "--XYZ\r\n%s\r\n\r\nv\r\n--XYZ--", head);
    Rec r;
    parse(&r, CT, body);
    cr_assert_eq(r.feed == -1, r.end == -1, "%s", head);
    if (r.feed) cr_assert_eq(r.n, 0, "%s: no part starts", head);
    return r.feed == -1;
}

Test(multipart, part_headers) {
    cr_assert(malformed_head("Content-Type: text/plain"), "no Content-Disposition");
    cr_assert(malformed_head(CD "filename=\"a\""), "no name");
    cr_assert(malformed_head("Content-Disposition: attachment; name=\"a\""));
    cr_assert(malformed_head(CD "name=\"a\"; name=\"b\""));
    cr_assert(malformed_head(CD "name=\"a\"\r\n" CD "name=\"b\""));
    cr_assert(malformed_head(CD "name=\"a"), "no closing quote");
    cr_assert(malformed_head(CD "name="));
    cr_assert(malformed_head(CD "name=\"a\" x"));
    cr_assert(malformed_head(CD "name=\"a\"\r\n folded"));
    cr_assert(malformed_head(CD "name=\"a\"\r\nno colon"));
    cr_assert(malformed_head(CD "name=\"a\"\r\nX-Space : 1"));
    cr_assert(malformed_head(CD "name=\"a\x01\""), "a control byte");
    cr_assert(malformed_head(CD "name=\"a\"\rX-Cr: 1"), "a CR inside a line");
    cr_assert(!malformed_head(CD "name=\"a\"\r\nX-Other: whatever"));
    cr_assert(!malformed_head("content-disposition:FORM-DATA;NAME=a;;"));
    cr_assert(!malformed_head(CD "name=\"a\"; filename*=UTF-8''%e2%82%ac.csv"));

    char name[MULTIPART_NAME_MAX + 2], head[256];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(head, sizeof head, CD "name=\"%s\"", name);
    cr_assert(malformed_head(head), "a name of %d bytes", MULTIPART_NAME_MAX + 1);
    name[MULTIPART_NAME_MAX] = '\0';
    snprintf(head, sizeof head, CD "name=\"%s\"", name);
    cr_assert(!malformed_head(head), "a name of %d bytes", MULTIPART_NAME_MAX);

    /* the header block: MULTIPART_HEADERS_MAX bytes with its line ends */
    static char big[MULTIPART_HEADERS_MAX + 64];
    size_t fixed = strlen(CD "name=a\r\nX: \r\n\r\n");
    snprintf(big, sizeof big, CD "name=a\r\nX: %0*d", (int)(MULTIPART_HEADERS_MAX - fixed), 0);
    cr_assert(!malformed_head(big), "a header block of %d bytes", MULTIPART_HEADERS_MAX);
    snprintf(big, sizeof big, CD "name=a\r\nX: %0*d", (int)(MULTIPART_HEADERS_MAX - fixed + 1), 0);
    cr_assert(malformed_head(big), "a header block of %d bytes", MULTIPART_HEADERS_MAX + 1);
}

Test(multipart, names_and_filenames) {
    Rec r;
    parse(&r, CT, "--XYZ\n" CD "name=plain; filename=\"C:\\dir\\a.csv\"\n\nv\r\n"
                  "--XYZ\r\n" CD "filename=\"q\\\\\\\"x\"; name=\"a;b=c\"\r\n\r\nw\r\n--XYZ--");
    cr_assert_eq(r.end, 0);
    cr_assert_eq(r.n, 2);
    /* bare LF line ends after a delimiter and in headers; a backslash kept
     * unless it escapes '"' or '\' */
    assert_part(&r, 0, "plain", "C:\\dir\\a.csv", "v", 1);
    assert_part(&r, 1, "a;b=c", "q\\\"x", "w", 1);
}

Test(multipart, after_a_delimiter) {
    Rec r;
    parse(&r, CT, "--XYZ\r\n" CD "name=a\r\n\r\nv\r\n--XYZ \t \r\n" CD "name=b\r\n\r\nw\r\n--XYZ--");
    cr_assert_eq(r.end, 0, "transport padding");
    cr_assert_eq(r.n, 2);
    static const char *bad[] = {
        "--XYZ\r\n" CD "name=a\r\n\r\nv\r\n--XYZQ\r\n",   /* the boundary and more */
        "--XYZ\r\n" CD "name=a\r\n\r\nv\r\n--XYZ-\r\n",   /* one dash */
        "--XYZ\r\n" CD "name=a\r\n\r\nv\r\n--XYZ \r-\n",  /* CR not before LF */
        "--XYZ\r\n" CD "name=a\r\n\r\nv\r\n--XYZ --\r\n", /* padding before -- */
        "--XYZX\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        parse(&r, CT, bad[i]);
        cr_assert_eq(r.feed, -1, "%s", bad[i]);
        cr_assert_eq(r.end, -1, "%s", bad[i]);
    }
}

Test(multipart, preamble_and_epilogue) {
    Rec r;
    parse(&r, CT, "This is the preamble.\r\n--XY not yet\r\n--XYZ\r\n" CD "name=a\r\n\r\n"
                  "v\r\n--XYZ--   then an epilogue\r\n--XYZ\r\nnot a part\r\n");
    cr_assert_eq(r.feed, 0);
    cr_assert_eq(r.end, 0);
    cr_assert_eq(r.n, 1);
    assert_part(&r, 0, "a", NULL, "v", 1);
    parse(&r, CT, "preamble\n--XYZ\r\n" CD "name=a\r\n\r\nv");
    cr_assert_eq(r.n, 0, "after a bare LF, --XYZ is preamble");
    cr_assert_eq(r.end, -1);
}

Test(multipart, boundary_parameter) {
    Rec r;
    parse(&r, "multipart/form-data; charset=utf-8; BOUNDARY=\"a b:\\\"c\"",
          "--a b:\"c\r\n" CD "name=x\r\n\r\nv\r\n--a b:\"c--");
    cr_assert_eq(r.end, 0, "a quoted boundary, a quoted-pair in it");
    assert_part(&r, 0, "x", NULL, "v", 1);
    parse(&r, "multipart/form-data; x=\"; boundary=no\";boundary=yes ;",
          "--yes\r\n" CD "name=x\r\n\r\nv\r\n--yes--");
    cr_assert_eq(r.end, 0, "boundary= inside another parameter's value is not it");

    char ct[256], b[MULTIPART_BOUNDARY_MAX + 2];
    memset(b, 'b', sizeof b - 1);
    b[sizeof b - 1] = '\0';
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", b);
    cr_assert_null(multipart_new(ct, on_piece, &r), "%d characters", MULTIPART_BOUNDARY_MAX + 1);
    b[MULTIPART_BOUNDARY_MAX] = '\0';
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", b);
    Multipart *mp = multipart_new(ct, on_piece, &r);
    cr_assert_not_null(mp, "%d characters", MULTIPART_BOUNDARY_MAX);
    multipart_end(mp);

    static const char *bad[] = {
        NULL,
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"\"",
        "multipart/form-data; boundary=\"ab \"", /* a space last */
        "multipart/form-data; boundary=\"a\rb\"",
        "multipart/form-data; boundary=\"a\xc3\xa9\"",
        "multipart/form-data; boundary=\"ab",
        "multipart/form-data; boundary=a; boundary=b",
        "multipart/form-data; xboundary=a",
        "multipart/form-data; boundary",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_null(multipart_new(bad[i], on_piece, &r), "%s", bad[i] ? bad[i] : "NULL");
}

Test(multipart, callback_abort) {
    static const char body[] = "--XYZ\r\n" CD "name=a\r\n\r\nv\r\n--XYZ\r\n" CD "name=abort\r\n\r\n"
                               "stop here\r\n--XYZ\r\n" CD "name=b\r\n\r\nw\r\n--XYZ--";
    Rec r;
    parse_step(&r, CT, body, strlen(body), 3);
    cr_assert_eq(r.feed, -1);
    cr_assert_eq(r.end, -1);
    cr_assert_eq(r.n, 2, "no part after the abort");
    cr_assert_eq(r.calls_after_abort, 0);
    assert_part(&r, 0, "a", NULL, "v", 1);
    assert_part(&r, 1, "abort", NULL, "", 0);
}

/* The bulk part's content so far, against what it must be. */
typedef struct {
    const char *want;
    size_t len, got;
    int parts;
} Bulk;

static int on_bulk(void *ctx, const char *field, const char *filename, bool first,
                   const char *data, size_t size) {
    Bulk *b = ctx;
    b->parts += first;
    cr_assert_leq(b->got + size, b->len);
    cr_assert_eq(memcmp(data, b->want + b->got, size), 0, "content differs at byte %zu", b->got);
    b->got += size;
    return 0;
}

/* A part of 1 MiB of bytes that are nearly delimiters, fed in pieces of
 * 4093 bytes: every byte once, in order. */
Test(multipart, near_delimiters_in_bulk) {
    static char body[(1 << 20) + 256], content[1 << 20];
    static const char unit[] = "\r\n--XY\r\r\n--X\r\n-\r\n--XYz";
    size_t n = 0;
    while (n + sizeof unit - 1 <= sizeof content) {
        memcpy(content + n, unit, sizeof unit - 1);
        n += sizeof unit - 1;
    }
    size_t len = (size_t)snprintf(body, sizeof body, "--XYZ\r\n" CD "name=bulk\r\n\r\n");
    memcpy(body + len, content, n);
    len += n;
    len += (size_t)snprintf(body + len, sizeof body - len, "\r\n--XYZ--");
    Bulk b = {content, n, 0, 0};
    Multipart *mp = multipart_new(CT, on_bulk, &b);
    cr_assert_not_null(mp);
    for (size_t at = 0; at < len; at += 4093)
        cr_assert_eq(multipart_feed(mp, body + at, len - at < 4093 ? len - at : 4093), 0);
    cr_assert_eq(multipart_end(mp), 0);
    cr_assert_eq(b.parts, 1);
    cr_assert_eq(b.got, n, "%zu bytes of %zu", b.got, n);
}
