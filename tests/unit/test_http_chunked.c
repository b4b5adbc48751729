/* test_http_chunked.c - server/http_chunked.c: chunked bodies decoded at
 * once and a byte at a time to the same bytes, extensions and trailers
 * skipped, the bytes of the next request left alone, and every malformed
 * framing refused with the byte it was found at. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"
#include "server/http_chunked.h"

typedef struct {
    int rc;
    char body[8192];
    size_t body_len, used;
    char err[256];
} Decoded;

/* enc[0, n) fed in pieces of `piece` bytes (n: whole) until an answer
 * other than 0, or the input runs out. */
static Decoded decode_in(const char *enc, size_t n, size_t piece) {
    Decoded d = {0};
    HttpChunked c = {0};
    char *buf = malloc(n + 1);
    cr_assert_not_null(buf);
    for (size_t at = 0; at < n || !at;) {
        size_t k = n - at < piece ? n - at : piece, used, out;
        memcpy(buf, enc + at, k);
        d.rc = http_chunked_decode(&c, buf, k, &used, &out, d.err, sizeof d.err);
        cr_assert_leq(used, k);
        cr_assert_leq(out, used);
        cr_assert_lt(d.body_len + out, sizeof d.body);
        memcpy(d.body + d.body_len, buf, out);
        d.body_len += out;
        d.used += used;
        if (d.rc) break;
        cr_assert_eq(used, k, "0 with bytes left over");
        at += k;
        if (!n) break;
    }
    free(buf);
    return d;
}

/* enc decoded whole and a byte at a time (and in 3s), the same answer. */
static Decoded decode(const char *enc) {
    size_t n = strlen(enc);
    Decoded whole = decode_in(enc, n, n ? n : 1);
    for (size_t piece = 1; piece <= 3; piece += 2) {
        Decoded bytes = decode_in(enc, n, piece);
        cr_assert_eq(bytes.rc, whole.rc, "pieces of %zu: %d, whole: %d", piece, bytes.rc,
                     whole.rc);
        cr_assert_eq(bytes.body_len, whole.body_len);
        cr_assert(!memcmp(bytes.body, whole.body, whole.body_len));
        cr_assert_eq(bytes.used, whole.used);
        cr_assert_str_eq(bytes.err, whole.err);
    }
    return whole;
}

static void decodes_to(const char *enc, const char *body, size_t used) {
    Decoded d = decode(enc);
    cr_assert_eq(d.rc, 1, "%s: rc %d (%s)", enc, d.rc, d.err);
    cr_assert_eq(d.body_len, strlen(body));
    cr_assert(!memcmp(d.body, body, d.body_len), "%.*s", (int)d.body_len, d.body);
    cr_assert_eq(d.used, used);
}

static void refused(const char *enc, const char *err) {
    Decoded d = decode(enc);
    cr_assert_eq(d.rc, -1, "%s: rc %d", enc, d.rc);
    cr_assert_str_eq(d.err, err);
}

Test(http_chunked, bodies) {
    const char *enc = "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
    decodes_to(enc, "hello, world", strlen(enc));
    decodes_to("0\r\n\r\n", "", 5);
    /* hex of either case, leading zeros, bare LFs */
    enc = "A\r\n0123456789\r\n00b\nabcdefghijk\n0000\n\n";
    decodes_to(enc, "0123456789abcdefghijk", strlen(enc));
    enc = "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    decodes_to(enc, "abcdefghijklmnopqrstuvwxyz", strlen(enc));
    /* data bytes are data: CR, LF, NUL-free binary, hex */
    decodes_to("4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", 14);
}

Test(http_chunked, extensions_and_trailers) {
    const char *enc = "3;name=value\r\nabc\r\n2 ; a=\"q;\" ;b\t\r\nde\r\n0;last\r\n"
                      "X-Sum: 5\r\nX-Other: a\tb\r\n\r\n";
    decodes_to(enc, "abcde", strlen(enc));
    enc = "1\nx\n0\nTrailer: 1\n\n";
    decodes_to(enc, "x", strlen(enc));
}

Test(http_chunked, stops_at_the_next_request) {
    const char *enc = "2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    decodes_to(enc, "hi", strlen("2\r\nhi\r\n0\r\n\r\n"));
    /* once done, more input is not read */
    HttpChunked c = {0};
    char buf[64], err[64];
    size_t used, out;
    strcpy(buf, "0\r\n\r\nXYZ");
    cr_assert_eq(http_chunked_decode(&c, buf, 8, &used, &out, err, sizeof err), 1);
    cr_assert_eq(used, 5);
    cr_assert_eq(http_chunked_decode(&c, buf + 5, 3, &used, &out, err, sizeof err), 1);
    cr_assert_eq(used, 0);
    cr_assert_eq(out, 0);
}

Test(http_chunked, incomplete_wants_more) {
    const char *cuts[] = {"", "5", "5\r", "5\r\nhel", "5\r\nhello", "5\r\nhello\r", "5;x=",
                          "5\r\nhello\r\n0\r\n", "5\r\nhello\r\n0\r\nX: 1\r\n",
                          "5\r\nhello\r\n0\r\n\r"};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        Decoded d = decode(cuts[i]);
        cr_assert_eq(d.rc, 0, "'%s': %d (%s)", cuts[i], d.rc, d.err);
        cr_assert_eq(d.used, strlen(cuts[i]));
    }
}

Test(http_chunked, bad_sizes) {
    refused("x\r\n", "chunked body: byte 0: 'x' is not a hex digit of a chunk size");
    refused("5\r\nhello\r\n0x5\r\n", "chunked body: byte 11: 'x' is not a hex digit of a chunk "
            "size");
    refused("\r\n", "chunked body: byte 0: 0x0d is not a hex digit of a chunk size");
    refused(";x\r\n", "chunked body: byte 0: ';' is not a hex digit of a chunk size");
    refused("-1\r\n", "chunked body: byte 0: '-' is not a hex digit of a chunk size");
    refused(" 1\r\n", "chunked body: byte 0: ' ' is not a hex digit of a chunk size");
    refused("1 2\r\n", "chunked body: byte 2: '2' after a chunk size is not ';' (an extension)");
    refused("1 \r\n", "chunked body: byte 2: 0x0d after a chunk size is not ';' (an extension)");
    refused("5\rx", "chunked body: byte 2: 'x' follows a CR in a chunk-size line, not LF");
    refused("1;a\x01\r\n", "chunked body: byte 3: 0x01 is not allowed in a chunk extension");
    /* 16 digits at most, 2^63-1 at most */
    Decoded d = decode("7fffffffffffffff\r\nab");
    cr_assert_eq(d.rc, 0, "%s", d.err);
    cr_assert_eq(d.body_len, 2);
    refused("8000000000000000\r\n", "chunked body: byte 15: a chunk size is over 2^63-1 bytes");
    refused("ffffffffffffffffff\r\n", "chunked body: byte 15: a chunk size is over 2^63-1 bytes");
    refused("00000000000000001\r\n",
            "chunked body: byte 16: a chunk size has more than 16 hex digits");
}

Test(http_chunked, size_line_limit) {
    char *enc = malloc(HTTP_CHUNK_LINE_MAX + 16);
    size_t n = (size_t)sprintf(enc, "1;");
    memset(enc + n, 'e', HTTP_CHUNK_LINE_MAX - n);
    strcpy(enc + HTTP_CHUNK_LINE_MAX, "\r\nx\r\n0\r\n\r\n");
    decodes_to(enc, "x", strlen(enc));
    enc[HTTP_CHUNK_LINE_MAX] = 'e';
    strcpy(enc + HTTP_CHUNK_LINE_MAX + 1, "\r\nx\r\n0\r\n\r\n");
    refused(enc, "chunked body: byte 4096: a chunk-size line is over 4096 bytes");
    free(enc);
}

Test(http_chunked, bad_data_ends) {
    refused("5\r\nhelloX\r\n", "chunked body: byte 8: 'X' where a chunk's data should end with "
            "CRLF");
    refused("5\r\nhello\rX", "chunked body: byte 9: 'X' where a chunk's data should end with "
            "CRLF");
    refused("5\r\nhello\r\r\n", "chunked body: byte 9: 0x0d where a chunk's data should end with "
            "CRLF");
    /* a size smaller than the data sent: the rest is not a size */
    refused("3\r\nhello\r\n0\r\n\r\n", "chunked body: byte 6: 'l' where a chunk's data should "
            "end with CRLF");
}

Test(http_chunked, bad_trailers) {
    refused("0\r\n folded\r\n\r\n", "chunked body: byte 3: a trailer line starts with a space or "
            "tab (an obsolete folded line)");
    refused("0\r\nX: a\x01\r\n\r\n", "chunked body: byte 7: 0x01 is not allowed in a trailer "
            "field");
    refused("0\r\nX: a\rb\r\n\r\n", "chunked body: byte 8: 'b' follows a CR in a trailer line, "
            "not LF");
    refused("0\r\n\rX", "chunked body: byte 4: 'X' follows the final CR, not LF");
    /* the trailers' limit */
    size_t n = HTTP_HEADERS_MAX + 64;
    char *enc = malloc(n + 16);
    strcpy(enc, "0\r\nX: ");
    memset(enc + 6, 'v', HTTP_HEADERS_MAX - 3 - 4);
    strcpy(enc + 3 + HTTP_HEADERS_MAX - 4, "\r\n\r\n"); /* exactly the limit with its CRLFs */
    decodes_to(enc, "", strlen(enc));
    strcpy(enc + 3 + HTTP_HEADERS_MAX - 4, "v\r\n\r\n");
    refused(enc, "chunked body: byte 32771: the trailer fields are over 32768 bytes");
    free(enc);
}

Test(http_chunked, fed_again_after_an_error) {
    HttpChunked c = {0};
    char buf[16] = "zz", err[80];
    size_t used = 99, out = 99;
    cr_assert_eq(http_chunked_decode(&c, buf, 2, &used, &out, err, sizeof err), -1);
    cr_assert_eq(used, 0);
    cr_assert_eq(out, 0);
    strcpy(buf, "0\r\n\r\n");
    cr_assert_eq(http_chunked_decode(&c, buf, 5, &used, &out, err, sizeof err), -1);
    cr_assert_str_eq(err, "chunked body: fed again after an error");
    /* a short err buffer is cut, never overrun */
    HttpChunked d = {0};
    char small[12];
    cr_assert_eq(http_chunked_decode(&d, buf + 1, 2, &used, &out, small, sizeof small), -1);
    cr_assert_str_eq(small, "chunked bod");
}

Test(http_chunked, a_large_body_moves_runs) {
    /* 1 MiB in chunks of 4,000 bytes, fed in reads of 1,500 */
    size_t total = 1 << 20, chunk = 4000, n = 0;
    char *enc = malloc(total + total / chunk * 16 + 64), *want = malloc(total);
    for (size_t i = 0; i < total; i++) want[i] = (char)(i * 7 + 3);
    for (size_t at = 0; at < total; at += chunk) {
        size_t k = total - at < chunk ? total - at : chunk;
        n += (size_t)sprintf(enc + n, "%zx\r\n", k);
        memcpy(enc + n, want + at, k);
        n += k;
        n += (size_t)sprintf(enc + n, "\r\n");
    }
    n += (size_t)sprintf(enc + n, "0\r\n\r\n");
    HttpChunked c = {0};
    char err[128];
    size_t got = 0, used, out;
    int rc = 0;
    char *buf = malloc(1500);
    for (size_t at = 0; at < n && !rc; at += 1500) {
        size_t k = n - at < 1500 ? n - at : 1500;
        memcpy(buf, enc + at, k);
        rc = http_chunked_decode(&c, buf, k, &used, &out, err, sizeof err);
        cr_assert_neq(rc, -1, "%s", err);
        cr_assert(!memcmp(buf, want + got, out), "bytes differ after %zu", got);
        got += out;
    }
    cr_assert_eq(rc, 1);
    cr_assert_eq(got, total);
    cr_assert_eq(c.offset, n);
    free(buf);
    free(enc);
    free(want);
}
