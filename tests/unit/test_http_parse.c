/* test_http_parse.c - server/http_parse.c: where a head ends, the request
 * line, the header lines and their limits, the body's framing, keep-alive
 * and Expect, the path and query decoded, and every refusal with its
 * status, code, message, path and whether the connection closes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"
#include "server/http_parse.h"

static HttpHead h;
static HttpHeadError e;

static void teardown(void) { http_head_free(&h); }

TestSuite(http_parse, .fini = teardown);

static int parse_n(const char *s, size_t n) {
    http_head_free(&h);
    return http_head_parse(s, n, &h, &e);
}

static int parse(const char *s) { return parse_n(s, strlen(s)); }

/* A head that must parse. */
static void accepted(const char *s) {
    int rc = parse(s);
    cr_assert_eq(rc, 0, "refused (%d %s: %s): %s", e.status, e.code, e.message, s);
    cr_assert_eq(e.status, 0);
}

/* A head refused with status and code, the message holding `says`. */
static void refused(const char *s, int status, const char *code, bool close, const char *says) {
    cr_assert_eq(parse(s), -1, "accepted: %s", s);
    cr_assert_eq(e.status, status, "%d (%s) for %s", e.status, e.message, s);
    cr_assert_str_eq(e.code, code, "for %s", s);
    cr_assert_eq(e.close, close, "close %d for %s", e.close, s);
    cr_assert(strstr(e.message, says), "message '%s' lacks '%s'", e.message, says);
}

#define REQ(line) line " HTTP/1.1\r\nHost: h\r\n"
#define GET(fields) "GET / HTTP/1.1\r\nHost: h\r\n" fields "\r\n"

/* ---- where a head ends ---- */

/* A head read in pieces, each piece's scan starting where the last left
 * off: the same end as one scan of the whole, at every way of cutting it
 * in two and byte by byte; and a head of nothing but empty lines ends
 * (to be refused) after eight of them rather than waiting on. */
Test(http_parse, head_end_from_where_the_last_scan_stopped) {
    const char *heads[] = {"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY", "GET / HTTP/1.1\nHost: a\n\nB",
                           "GET / HTTP/1.1\nHost: a\n\r\nX", "\r\n\n\r\nGET / HTTP/1.1\r\n\r\n",
                           "GET / HTTP/1.1\r\r\r\r\n\r\n"};
    for (size_t k = 0; k < sizeof heads / sizeof *heads; k++) {
        const char *s = heads[k];
        size_t len = strlen(s), want = http_head_end(s, len);
        cr_assert_neq(want, 0, "%zu", k);
        for (size_t cut = 0; cut <= len; cut++) {
            size_t first = http_head_end(s, cut);
            size_t got = first ? first : http_head_end_from(s, len, cut);
            cr_assert_eq(got, want, "head %zu cut at %zu", k, cut);
        }
        size_t scanned = 0, got = 0;
        for (size_t n = 1; n <= len && !got; n++) {
            got = http_head_end_from(s, n, scanned);
            scanned = n;
        }
        cr_assert_eq(got, want, "head %zu byte by byte", k);
    }
    char empty[64] = "";
    for (int i = 0; i < 20; i++) strcat(empty, "\r\n");
    cr_assert_eq(http_head_end(empty, strlen(empty)), 20, "eight skipped, the ninth ends it");
}

Test(http_parse, head_end) {
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
    cr_assert_eq(http_head_end(s, strlen(s)), strlen(s) - 4);
    s = "GET / HTTP/1.1\nHost: a\n\nBODY";
    cr_assert_eq(http_head_end(s, strlen(s)), strlen(s) - 4);
    s = "GET / HTTP/1.1\nHost: a\n\r\nX"; /* a bare LF, then CRLF */
    cr_assert_eq(http_head_end(s, strlen(s)), strlen(s) - 1);
    /* not whole yet, at every cut */
    s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for (size_t n = 0; n < strlen(s); n++) cr_assert_eq(http_head_end(s, n), 0, "cut at %zu", n);
    /* empty lines before the request line do not end it */
    s = "\r\n\n\r\nGET / HTTP/1.1\r\n\r\n";
    cr_assert_eq(http_head_end(s, strlen(s)), strlen(s));
    cr_assert_eq(http_head_end("\r\n\r\n\r\n", 6), 0);
    /* a CR alone is no line end */
    cr_assert_eq(http_head_end("GET / HTTP/1.1\r\r\r\r", 18), 0);
}

/* ---- what parses ---- */

Test(http_parse, a_whole_head) {
    accepted("POST /v1/jobs?limit=5&x HTTP/1.1\r\nHost: example:8080\r\nX-Foo: \t bar baz \t\r\n"
             "Content-Length: 12\r\nX-Empty:\r\n\r\n");
    cr_assert_str_eq(h.method, "POST");
    cr_assert_str_eq(h.target, "/v1/jobs?limit=5&x");
    cr_assert_str_eq(h.path, "/v1/jobs");
    cr_assert_eq(h.minor, 1);
    cr_assert_eq(h.num_fields, 4);
    cr_assert_str_eq(h.fields[0].name, "Host");
    cr_assert_str_eq(h.fields[0].value, "example:8080");
    cr_assert_str_eq(h.fields[1].name, "X-Foo");
    cr_assert_str_eq(h.fields[1].value, "bar baz");
    cr_assert_str_eq(h.fields[3].value, "");
    cr_assert_str_eq(http_head_field(&h, "x-foo"), "bar baz");
    cr_assert_str_eq(http_head_field(&h, "HOST"), "example:8080");
    cr_assert_null(http_head_field(&h, "X-Fo"));
    cr_assert(h.has_length);
    cr_assert_eq(h.content_length, 12);
    cr_assert(!h.chunked);
    cr_assert(h.keep_alive);
    cr_assert(!h.expect_continue);
    cr_assert_eq(h.num_args, 2);
    cr_assert_str_eq(http_head_arg(&h, "limit"), "5");
    cr_assert_str_eq(http_head_arg(&h, "x"), "");
    cr_assert_null(http_head_arg(&h, "LIMIT"));
}

Test(http_parse, bare_lf_and_leading_empty_lines) {
    accepted("\r\n\nGET /a HTTP/1.1\nHost: h\nX-A: 1\r\nX-B: 2\n\n");
    cr_assert_str_eq(h.target, "/a");
    cr_assert_eq(h.num_fields, 3);
    cr_assert_str_eq(h.fields[1].value, "1");
    cr_assert_str_eq(h.fields[2].value, "2");
}

Test(http_parse, http_1_0) {
    accepted("GET /x HTTP/1.0\r\n\r\n"); /* no Host needed */
    cr_assert_eq(h.minor, 0);
    cr_assert_eq(h.num_fields, 0);
    cr_assert(!h.keep_alive);
    cr_assert(!h.has_length);
}

Test(http_parse, keep_alive) {
    accepted(GET(""));
    cr_assert(h.keep_alive);
    accepted(GET("Connection: close\r\n"));
    cr_assert(!h.keep_alive);
    accepted(GET("Connection: Upgrade , CLOSE\r\n"));
    cr_assert(!h.keep_alive);
    accepted(GET("Connection: keep-alive\r\nConnection: x, Close\r\n"));
    cr_assert(!h.keep_alive);
    accepted(GET("Connection: closed, xclose\r\n")); /* tokens, not substrings */
    cr_assert(h.keep_alive);
    accepted("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    cr_assert(h.keep_alive);
    accepted("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    cr_assert(!h.keep_alive);
    accepted("GET / HTTP/1.0\r\nConnection: keep-alived\r\n\r\n");
    cr_assert(!h.keep_alive);
}

Test(http_parse, expect) {
    accepted(GET("Expect: 100-Continue\r\n"));
    cr_assert(h.expect_continue);
    accepted(GET("Expect:  100-continue \r\n"));
    cr_assert(h.expect_continue);
    accepted(GET("Expect: 200-ok\r\n")); /* ignored, not 417 */
    cr_assert(!h.expect_continue);
    accepted("GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"); /* ignored in HTTP/1.0 */
    cr_assert(!h.expect_continue);
}

Test(http_parse, path_and_args_decoded) {
    accepted(REQ("GET /p/a%2Fb/%7e%zz%4?k%3D1=v%26w&&plus=a+b&empty=&=x&k2=a=b&") "\r\n");
    cr_assert_str_eq(h.target, "/p/a%2Fb/%7e%zz%4?k%3D1=v%26w&&plus=a+b&empty=&=x&k2=a=b&");
    cr_assert_str_eq(h.path, "/p/a/b/~%zz%4");
    cr_assert_eq(h.num_args, 5);
    cr_assert_str_eq(h.args[0].name, "k=1");
    cr_assert_str_eq(h.args[0].value, "v&w");
    cr_assert_str_eq(h.args[1].name, "plus");
    cr_assert_str_eq(h.args[1].value, "a+b");
    cr_assert_str_eq(http_head_arg(&h, "empty"), "");
    cr_assert_str_eq(http_head_arg(&h, ""), "x");
    cr_assert_str_eq(http_head_arg(&h, "k2"), "a=b");
    accepted(REQ("GET /?") "\r\n");
    cr_assert_str_eq(h.path, "/");
    cr_assert_eq(h.num_args, 0);
}

Test(http_parse, unescape) {
    char s[] = "%41%4a%4A+%2%zz%%41%";
    cr_assert_eq(http_unescape(s), 12);
    cr_assert_str_eq(s, "AJJ+%2%zz%A%");
    char t[] = "";
    cr_assert_eq(http_unescape(t), 0);
}

Test(http_parse, obs_text_and_tabs_in_values) {
    accepted(GET("X-A: caf\xc3\xa9\tx\x80\xff\r\n"));
    cr_assert_str_eq(http_head_field(&h, "X-A"), "caf\xc3\xa9\tx\x80\xff");
}

/* ---- the request line ---- */

static char *long_target(size_t n) {
    char *t = malloc(n + 64);
    cr_assert_not_null(t);
    t[0] = '/';
    memset(t + 1, 'a', n - 1);
    t[n] = '\0';
    return t;
}

Test(http_parse, target_limit) {
    char *t = long_target(HTTP_TARGET_MAX), *s = malloc(HTTP_TARGET_MAX + 200);
    snprintf(s, HTTP_TARGET_MAX + 200, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", t);
    accepted(s);
    cr_assert_eq(strlen(h.target), HTTP_TARGET_MAX);
    free(t);
    t = long_target(HTTP_TARGET_MAX + 1);
    snprintf(s, HTTP_TARGET_MAX + 200, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", t);
    refused(s, 414, "uri_too_long", true,
            "the request target is 8193 bytes long, over the limit of 8192");
    cr_assert_str_eq(e.message, "the request target is 8193 bytes long, over the limit of 8192");
    char want[80];
    snprintf(want, sizeof want, "%.64s...", t);
    cr_assert_str_eq(e.path, want);
    /* before anything else: a bad method, a bad byte, a bad version */
    t[100] = '\x01';
    snprintf(s, HTTP_TARGET_MAX + 200, "G(T %s HTTP/9.9\r\n\r\n", t);
    refused(s, 414, "uri_too_long", true, "8193 bytes long");
    /* the path quotes a client's bytes safely */
    t[1] = '\x7f';
    snprintf(s, HTTP_TARGET_MAX + 200, "GET %s HTTP/1.1\r\n\r\n", t);
    refused(s, 414, "uri_too_long", true, "8193 bytes long");
    cr_assert(!strncmp(e.path, "/\\x7faaa", 8), "%s", e.path);
    free(t);
    free(s);
}

Test(http_parse, method) {
    accepted(REQ("M-SEARCH_15.!#$ /") "\r\n");
    cr_assert_str_eq(h.method, "M-SEARCH_15.!#$");
    refused(REQ("ABCDEFGHIJKLMNOP /") "\r\n", 501, "not_implemented", true,
            "the method 'ABCDEFGHIJKLMNOP' is longer than 15 bytes");
    refused(REQ("G(T /") "\r\n", 400, "bad_request", true,
            "the method ('G(T'): byte 0x28 at column 2 is not a token character");
    refused(REQ("G\x80T /") "\r\n", 400, "bad_request", true, "('G\\x80T'): byte 0x80 at column 2");
    refused(REQ(" GET /") "\r\n", 400, "bad_request", true, "starts with a space");
    refused("GET\r\nHost: h\r\n\r\n", 400, "bad_request", true,
            "the request line ('GET') is not METHOD /path HTTP/1.1");
    refused("\r\n", 400, "bad_request", true, "the request line ('') is not");
    refused("", 400, "bad_request", true, "the request line ('') is not");
}

Test(http_parse, spaces_in_the_request_line) {
    refused(REQ("GET  /") "\r\n", 400, "bad_request", true,
            "the request target ('') does not start with '/'");
    refused("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bad_request", true,
            "the request line ends in ' HTTP/1.1', not an HTTP version");
    refused("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, "bad_request", true,
            "ends in 'HTTP/1.1 '");
    refused("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bad_request", true,
            "byte 0x09 at column 4 is not a token character");
    refused("GET /\r\nHost: h\r\n\r\n", 400, "bad_request", true,
            "the request line has no HTTP version");
}

Test(http_parse, target_form_and_bytes) {
    refused(REQ("GET http://x/") "\r\n", 400, "bad_request", true,
            "the request target ('http://x/') does not start with '/'");
    refused(REQ("OPTIONS *") "\r\n", 400, "bad_request", true, "('*') does not start with '/'");
    refused(REQ("GET /a\x7f") "\r\n", 400, "bad_request", true,
            "byte 0x7f at column 7 of the request line is not allowed");
    refused(REQ("GET /\xc3\xa9") "\r\n", 400, "bad_request", true, "byte 0xc3 at column 6");
    refused(REQ("GET /a\rb") "\r\n", 400, "bad_request", true, "byte 0x0d at column 7");
    char s[] = "GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n";
    cr_assert_eq(parse_n(s, sizeof s - 1), -1);
    cr_assert_eq(e.status, 400);
    cr_assert(strstr(e.message, "byte 0x00 at column 7"), "%s", e.message);
}

Test(http_parse, versions) {
    refused("GET / HTTP/2.0\r\n\r\n", 505, "http_version_not_supported", true,
            "HTTP version 'HTTP/2.0' is not supported; send HTTP/1.1 or HTTP/1.0");
    refused("GET / HTTP/1.2\r\n\r\n", 505, "http_version_not_supported", true, "'HTTP/1.2'");
    refused("GET / HTTP/0.9\r\n\r\n", 505, "http_version_not_supported", true, "'HTTP/0.9'");
    refused("GET / http/1.1\r\n\r\n", 400, "bad_request", true, "ends in 'http/1.1'");
    refused("GET / HTTP/1.10\r\n\r\n", 400, "bad_request", true, "ends in 'HTTP/1.10'");
    refused("GET / HTTP/1\r\n\r\n", 400, "bad_request", true, "ends in 'HTTP/1'");
    refused("GET / HTTP/1.x\r\n\r\n", 400, "bad_request", true, "ends in 'HTTP/1.x'");
    /* request-line errors come before 505 */
    refused("G(T / HTTP/2.0\r\n\r\n", 400, "bad_request", true, "the method ('G(T')");
    /* on an error after the request line, h holds method and target */
    refused("PUT /x?a=1 HTTP/1.1\r\n\r\n", 400, "bad_request", false,
            "HTTP/1.1 needs a Host header");
    cr_assert_str_eq(h.method, "PUT");
    cr_assert_str_eq(h.target, "/x?a=1");
}

/* ---- header lines ---- */

Test(http_parse, malformed_lines) {
    refused(GET("X-A: 1\r\n folded\r\n"), 400, "bad_request", true,
            "header line 3 starts with a space or tab (an obsolete folded line)");
    refused(GET("\tX-A: 1\r\n"), 400, "bad_request", true, "header line 2 starts with a space");
    refused(GET("X-A 1\r\n"), 400, "bad_request", true, "header line 2 ('X-A 1') has no colon");
    refused(GET(": 1\r\n"), 400, "bad_request", true, "header line 2 has no field name");
    refused(GET("Content-Length : 5\r\n"), 400, "bad_request", true,
            "header line 2 ('Content-Length '): whitespace between the field name and the colon");
    refused(GET("Content-Length\t: 5\r\n"), 400, "bad_request", true, "whitespace between");
    refused(GET("X(A): 1\r\n"), 400, "bad_request", true,
            "header line 2 ('X(A)'): byte 0x28 at column 2 is not allowed in a field name");
    refused(GET("X-Foo: a\x01" "b\r\n"), 400, "bad_request", true,
            "header line 2 ('X-Foo'): byte 0x01 at column 9 is not allowed");
    refused(GET("X-Foo: a\rb\r\n"), 400, "bad_request", true, "byte 0x0d at column 9");
    refused(GET("X-Foo: a\x7f\r\n"), 400, "bad_request", true, "byte 0x7f at column 9");
    char s[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Foo: a\0b\r\n\r\n";
    cr_assert_eq(parse_n(s, sizeof s - 1), -1);
    cr_assert(strstr(e.message, "header line 2 ('X-Foo'): byte 0x00 at column 9"), "%s",
              e.message);
    /* the first bad line wins */
    refused(GET("X-A: \x02\r\nX B: 1\r\n"), 400, "bad_request", true, "header line 2 ('X-A')");
    /* a head cut before its empty line */
    refused("GET / HTTP/1.1\r\nHost: h\r\n", 400, "bad_request", true,
            "the head does not end with an empty line");
    refused("GET / HTTP/1.1\r\nHost: h", 400, "bad_request", true, "does not end");
    refused("GET / HTTP/1.1", 400, "bad_request", true, "does not end");
}

/* A head whose lines total `bytes` (name + value + 4 each): Host, then
 * X-Big holding the rest, then `after` (a line or ""). */
static char *head_of(size_t bytes, const char *after) {
    size_t value = bytes - strlen("Host") - 1 - 4 - strlen("X-Big") - 4;
    char *s = malloc(value + 200);
    cr_assert_not_null(s);
    int n = snprintf(s, 200, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(s + n, 'b', value);
    snprintf(s + n + value, 200, "\r\n%s\r\n", after);
    return s;
}

Test(http_parse, headers_limit) {
    char *s = head_of(HTTP_HEADERS_MAX, "");
    accepted(s);
    cr_assert_eq(strlen(http_head_field(&h, "x-big")), HTTP_HEADERS_MAX - 18);
    free(s);
    s = head_of(HTTP_HEADERS_MAX + 1, "");
    refused(s, 431, "headers_too_large", true, "");
    cr_assert_str_eq(e.message, "the header lines hold 32769 bytes, over the limit of 32768");
    free(s);
    /* the message gives the total of all lines, later ones too */
    s = head_of(HTTP_HEADERS_MAX + 1, "X-C: 12\r\n");
    refused(s, 431, "headers_too_large", true, "hold 32778 bytes");
    free(s);
    /* the line that crosses the limit gets 431 however it is written, and
     * so does a malformed line after it; one before it gets 400 */
    s = head_of(40000, "Bad Line\r\n");
    s[strlen("GET / HTTP/1.1\r\nHost: h\r\nX-Big: ") + 10] = '\x01';
    refused(s, 431, "headers_too_large", true, "hold 40012 bytes");
    free(s);
    s = head_of(40000, "");
    memcpy(s + strlen("GET / HTTP/1.1\r\n"), "H(st", 4);
    refused(s, 400, "bad_request", true, "header line 1 ('H(st')");
    free(s);
}

Test(http_parse, headers_limit_many_lines) {
    /* 5,000 lines of "X-N: v" (8 bytes each) after Host (9) */
    size_t n = 5000;
    char *s = malloc(n * 8 + 64);
    size_t w = (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (size_t i = 0; i < n; i++) w += (size_t)sprintf(s + w, "X-N: v\r\n");
    sprintf(s + w, "\r\n");
    refused(s, 431, "headers_too_large", true, "hold 40009 bytes");
    free(s);
}

/* ---- framing ---- */

Test(http_parse, content_length_values) {
    accepted(GET("Content-Length: 0\r\n"));
    cr_assert(h.has_length);
    cr_assert_eq(h.content_length, 0);
    accepted(GET("Content-Length: 9223372036854775807\r\n"));
    cr_assert_eq(h.content_length, (uint64_t)INT64_MAX);
    accepted(GET("Content-Length:  5 \t\r\n"));
    cr_assert_eq(h.content_length, 5);
    accepted(GET("content-length: 007\r\n"));
    cr_assert_eq(h.content_length, 7);
    refused(GET("Content-Length: 9223372036854775808\r\n"), 400, "bad_request", true,
            "Content-Length: '9223372036854775808' is not a number of bytes");
    refused(GET("Content-Length: 99999999999999999999999\r\n"), 400, "bad_request", true,
            "'99999999999999999999999' is not a number");
    refused(GET("Content-Length: -5\r\n"), 400, "bad_request", true,
            "Content-Length: '-5' is not a number of bytes");
    refused(GET("Content-Length: +5\r\n"), 400, "bad_request", true, "'+5' is not");
    refused(GET("Content-Length: 5 5\r\n"), 400, "bad_request", true, "'5 5' is not");
    refused(GET("Content-Length: 5,5\r\n"), 400, "bad_request", true, "'5,5' is not");
    refused(GET("Content-Length: 0x10\r\n"), 400, "bad_request", true, "'0x10' is not");
    refused(GET("Content-Length:\r\n"), 400, "bad_request", true, "Content-Length: '' is not");
    refused(GET("Content-Length:   \r\n"), 400, "bad_request", true, "'' is not");
    char s[300];
    snprintf(s, sizeof s, GET("Content-Length: 1%080d\r\n"), 0);
    refused(s, 400, "bad_request", true, "");
    char want[100];
    snprintf(want, sizeof want, "Content-Length: '1%063d...' is not", 0);
    cr_assert(strstr(e.message, want), "%s", e.message);
}

Test(http_parse, framing_conflicts) {
    refused(GET("Content-Length: 2\r\nContent-Length: 2\r\n"), 400, "bad_request", true, "");
    cr_assert_str_eq(e.message, "Content-Length is given 2 times; send it once");
    refused(GET("Content-Length: 2\r\nX: 1\r\nContent-length: 9\r\ncontent-length: 9\r\n"), 400,
            "bad_request", true, "Content-Length is given 3 times");
    refused(GET("Content-Length: 7\r\nTransfer-Encoding: chunked\r\n"), 400, "bad_request", true,
            "");
    cr_assert_str_eq(e.message, "Content-Length and Transfer-Encoding are both given; send one");
    refused(GET("Transfer-Encoding: chunked\r\nContent-Length: 7\r\n"), 400, "bad_request", true,
            "are both given");
    refused(GET("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400,
            "bad_request", true, "Transfer-Encoding is given 2 times; send it once");
    refused(GET("Transfer-Encoding: gzip, chunked\r\n"), 501, "not_implemented", true,
            "Transfer-Encoding 'gzip, chunked' is not implemented");
    refused(GET("Transfer-Encoding: identity\r\n"), 501, "not_implemented", true, "'identity'");
    refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad_request", true,
            "Transfer-Encoding is not allowed in HTTP/1.0");
    accepted(GET("Transfer-Encoding:  ChunKed \r\n"));
    cr_assert(h.chunked);
    cr_assert(!h.has_length);
    /* a line error before a conflict wins: lines are read first */
    refused(GET("Content-Length: 2\r\nContent-Length: 2\r\nX\r\n"), 400, "bad_request", true,
            "header line 4 ('X') has no colon");
}

Test(http_parse, fields_given_twice_or_missing) {
    refused(GET("Authorization: Bearer a\r\nauthorization: Bearer b\r\n"), 400, "bad_request",
            false, "");
    cr_assert_str_eq(e.message, "Authorization is given 2 times; send one token");
    cr_assert(h.keep_alive); /* the connection can go on: the framing is known */
    refused("GET / HTTP/1.1\r\nX: 1\r\n\r\n", 400, "bad_request", false,
            "HTTP/1.1 needs a Host header");
    refused(GET("host: h2\r\n"), 400, "bad_request", false, "Host is given 2 times; send it once");
    accepted(GET("Authorization: Bearer a\r\n"));
    accepted("GET / HTTP/1.1\r\nHost:\r\n\r\n"); /* empty Host: allowed (RFC 9110 7.2) */
}

/* ---- NUL in the path or query ---- */

Test(http_parse, nul_in_path_or_query) {
    refused(REQ("GET /v1/jobs/7%00x") "\r\n", 400, "bad_path", false, "");
    cr_assert_str_eq(e.message, "path segment 3 ('7%00x') holds a NUL byte (%00)");
    cr_assert_str_eq(e.path, "/v1/jobs/7%00x");
    refused(REQ("GET /v1/jobs/7/logs?after=1%00&b=2") "\r\n", 400, "bad_query", false, "");
    cr_assert_str_eq(e.message, "query argument 'after=1%00' holds a NUL byte (%00)");
    cr_assert_str_eq(e.path, "?after");
    /* a long path is cut in e.path, a long segment in the message */
    char *t = long_target(300), *s = malloc(400);
    memcpy(t + 200, "%00", 3);
    snprintf(s, 400, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", t);
    refused(s, 400, "bad_path", false, "path segment 1 ('");
    char want[140];
    snprintf(want, sizeof want, "%.120s...", t);
    cr_assert_str_eq(e.path, want);
    cr_assert(strstr(e.message, "aaaa...') holds a NUL byte"), "%s", e.message);
    free(t);
    free(s);
    /* %2500 is "%00" once decoded, not a NUL */
    accepted(REQ("GET /a%2500?b=%2500") "\r\n");
    cr_assert_str_eq(h.path, "/a%00");
    cr_assert_str_eq(http_head_arg(&h, "b"), "%00");
}

/* ---- a large head ---- */

/* (How fast it parses is for a benchmark, not a test: a quadratic parse
 * is what the fuzzer's timeouts catch.) */
Test(http_parse, a_32_kib_head_of_2000_fields) {
    /* 2,000 short lines (29,789 bytes counted) and a target of 800 arguments */
    char *s = malloc(64 * 1024);
    cr_assert(s);
    size_t w = (size_t)sprintf(s, "GET /");
    for (int i = 0; i < 800; i++) w += (size_t)sprintf(s + w, "%ca%d=%d", i ? '&' : '?', i, i);
    w += (size_t)sprintf(s + w, " HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 2000; i++) w += (size_t)sprintf(s + w, "X-F%d: v%d\r\n", i, i);
    w += (size_t)sprintf(s + w, "\r\n");
    cr_assert_eq(parse_n(s, w), 0, "%s", e.message);
    cr_assert_eq(h.num_fields, 2001);
    cr_assert_eq(h.num_args, 800);
    cr_assert_str_eq(http_head_arg(&h, "a799"), "799");
    cr_assert_str_eq(http_head_field(&h, "x-f1999"), "v1999");
    free(s);
}
