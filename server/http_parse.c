/* http_parse.c - an HTTP/1.x request head read from its bytes; see
 * http_parse.h.
 *
 * The head is copied once into HttpHead.mem (behind the fields and args
 * arrays) and its strings end in place there: a field name at its colon, a
 * value at its first trailing space or line end, the target at the space
 * before the version. The decoded path and the decoded query arguments
 * get their own room after the copy, so the target stays as sent.
 *
 * What is refused, in this order (the first one found wins, so the answer
 * to a head is always the same):
 *   1. the request line: 414 when the target (the bytes after the first
 *      space, up to the next) is over HTTP_TARGET_MAX, whatever else is
 *      wrong; then 400 for the method (a token; over 15 bytes: 501), the
 *      target (origin-form, visible ASCII), the version's syntax; then 505;
 *   2. the header lines, one by one in order: each line's size (name +
 *      value + 4; a line without a colon counts its whole length as the
 *      name) is added to the total first, so the line that takes the total
 *      over HTTP_HEADERS_MAX gets 431 however it is written (the message
 *      gives the total of all lines); then the line's syntax (400), then
 *      its meaning (Content-Length not a number: 400; Transfer-Encoding
 *      in HTTP/1.0: 400, not "chunked": 501);
 *   3. the framing over all lines: Content-Length twice, Transfer-Encoding
 *      twice, both given (400).
 * Everything up to here closes the connection (the body's end is not
 * known). With the framing known, the connection may stay open:
 *   4. a NUL (%00) in the path (bad_path) or the query (bad_query);
 *   5. no Host in HTTP/1.1, Host twice, Authorization twice (400).
 * An Expect other than 100-continue is ignored (RFC 9110 10.1.1 allows
 * 417 but does not require it); so is Expect in HTTP/1.0.
 */
#include "server/http_parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/http.h"

#define QUOTE_CUT 64 /* bytes of a client's text quoted in a message */

/* ---- bytes ---- */

/* A token byte (RFC 9110 5.6.2): digits, letters and !#$%&'*+-.^_`|~,
 * as one bit each of 0-63 and of 64-127. */
static bool is_tchar(unsigned char c) {
    static const uint64_t low = 0x03ff6cfa00000000u, high = 0x57ffffffc7fffffeu;
    if (c >= 128) return false;
    return ((c < 64 ? low : high) >> (c & 63)) & 1;
}

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* A byte allowed in a field value: HTAB, SP, visible ASCII, obs-text. */
static bool is_value_byte(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t http_unescape(char *s) {
    char *w = s;
    const char *r = s;
    while (*r) {
        int hi, lo;
        if (r[0] == '%' && (hi = hex_value(r[1])) >= 0 && (lo = hex_value(r[2])) >= 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* s[0, n) fit for a message (JSON wants UTF-8, a client sends anything):
 * its first QUOTE_CUT bytes, printable ASCII as is and other bytes as
 * \xNN, "..." when cut. */
static const char *quote(char *out, size_t max, const char *s, size_t n) {
    size_t w = 0, show = n > QUOTE_CUT ? QUOTE_CUT : n;
    out[0] = '\0';
    for (size_t i = 0; i < show && w + 5 < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F) {
            out[w++] = (char)c;
            out[w] = '\0';
        } else {
            w += (size_t)snprintf(out + w, max - w, "\\x%02x", c);
        }
    }
    if (show < n && w + 4 <= max) memcpy(out + w, "...", 4);
    return out;
}

/* ---- errors ---- */

static int refuse(HttpHeadError *e, int status, const char *code, bool close, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));

static int refuse(HttpHeadError *e, int status, const char *code, bool close, const char *fmt,
                  ...) {
    e->status = status;
    e->code = code;
    e->close = close;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* The piece of s[start, end) around s[at] between the separators sep,
 * copied to out (its first 64 bytes). */
static void piece_around(const char *s, size_t start, size_t at, size_t end, char sep, char *out,
                         size_t max) {
    size_t a = at, b = at;
    while (a > start && s[a - 1] != sep) a--;
    while (b < end && s[b] != sep) b++;
    snprintf(out, max, "%.*s%s", (int)(b - a > 64 ? 64 : b - a), s + a, b - a > 64 ? "..." : "");
}

/* A NUL written as %00 in the path (which segment) or the query (which
 * argument). The target is visible ASCII by now. */
static int check_nul(const char *target, HttpHeadError *e) {
    const char *nul = strstr(target, "%00");
    if (!nul) return 0;
    size_t at = (size_t)(nul - target), qmark = strcspn(target, "?");
    char piece[80];
    if (at < qmark) {
        int segment = 0;
        for (size_t i = 0; i < at; i++) segment += target[i] == '/';
        piece_around(target, 0, at, qmark, '/', piece, sizeof piece);
        snprintf(e->path, sizeof e->path, "%.*s%s", (int)(qmark > 120 ? 120 : qmark), target,
                 qmark > 120 ? "..." : "");
        return refuse(e, 400, "bad_path", false, "path segment %d ('%s') holds a NUL byte (%%00)",
                      segment, piece);
    }
    piece_around(target, qmark + 1, at, strlen(target), '&', piece, sizeof piece);
    size_t key = strcspn(piece, "=");
    snprintf(e->path, sizeof e->path, "?%.*s", (int)key, piece);
    return refuse(e, 400, "bad_query", false, "query argument '%s' holds a NUL byte (%%00)", piece);
}

/* ---- lines ---- */

/* Empty lines skipped before the request line (RFC 9112 2.2: a client may
 * send one after a body); more end the head there, an empty request line,
 * refused: a head of nothing but empty lines is not scanned again and
 * again as its bytes come. */
#define HTTP_LEADING_EMPTY_LINES_MAX 8

/* Past the empty lines a client may send before the request line. */
static size_t skip_empty_lines(const char *buf, size_t len) {
    size_t i = 0;
    for (int k = 0; k < HTTP_LEADING_EMPTY_LINES_MAX; k++) {
        if (i < len && buf[i] == '\n') i++;
        else if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n') i += 2;
        else break;
    }
    return i;
}

size_t http_head_end(const char *buf, size_t len) { return http_head_end_from(buf, len, 0); }

size_t http_head_end_from(const char *buf, size_t len, size_t from) {
    /* an end not whole in buf[0, from) has its first LF at from - 2 or after */
    size_t start = skip_empty_lines(buf, len);
    if (from > 2 && from - 2 > start) start = from - 2;
    const char *p = buf + start, *end = buf + len;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
        p++;
        if (p < end && p[0] == '\n') return (size_t)(p + 1 - buf);
        if (p + 1 < end && p[0] == '\r' && p[1] == '\n') return (size_t)(p + 2 - buf);
    }
    return 0;
}

typedef struct {
    char *s;     /* the line's first byte */
    size_t n;    /* its length without CR LF */
    char *next;  /* past its LF; NULL when the head ended without one */
} Line;

static Line line_at(char *s, const char *end) {
    Line l = {s, 0, NULL};
    char *lf = memchr(s, '\n', (size_t)(end - s));
    if (!lf) {
        l.n = (size_t)(end - s);
        return l;
    }
    l.n = (size_t)(lf - s);
    if (l.n && s[l.n - 1] == '\r') l.n--;
    l.next = lf + 1;
    return l;
}

/* ---- the request line ---- */

static int parse_method(const char *s, size_t n, HttpHead *h, HttpHeadError *e) {
    char q[QUOTE_CUT * 4 + 8];
    if (!n)
        return refuse(e, 400, "bad_request", true, "the request line starts with a space; send "
                      "METHOD /path HTTP/1.1");
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return refuse(e, 400, "bad_request", true, "the method ('%s'): byte 0x%02x at column "
                          "%zu is not a token character", quote(q, sizeof q, s, n),
                          (unsigned char)s[i], i + 1);
    if (n >= sizeof h->method)
        return refuse(e, 501, "not_implemented", true, "the method '%s' is longer than %zu bytes: "
                      "no such method is implemented", quote(q, sizeof q, s, n),
                      sizeof h->method - 1);
    memcpy(h->method, s, n);
    h->method[n] = '\0';
    return 0;
}

/* The target, s[0, n) at column col of the request line. */
static int parse_target(char *s, size_t n, size_t col, HttpHead *h, HttpHeadError *e) {
    char q[QUOTE_CUT * 4 + 8];
    if (!n || s[0] != '/')
        return refuse(e, 400, "bad_request", true, "the request target ('%s') does not start with "
                      "'/'; send a path (origin-form), with exactly one space around it",
                      quote(q, sizeof q, s, n));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7E)
            return refuse(e, 400, "bad_request", true, "the request target: byte 0x%02x at column "
                          "%zu of the request line is not allowed (visible ASCII only; "
                          "percent-encode the rest)", c, col + i);
    }
    h->target = s;
    return 0;
}

static int parse_version(const char *v, size_t n, HttpHead *h, HttpHeadError *e) {
    char q[QUOTE_CUT * 4 + 8];
    bool shaped = n == 8 && !memcmp(v, "HTTP/", 5) && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
                  v[7] >= '0' && v[7] <= '9';
    if (!shaped)
        return refuse(e, 400, "bad_request", true, "the request line ends in '%s', not an HTTP "
                      "version; send METHOD /path HTTP/1.1", quote(q, sizeof q, v, n));
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return refuse(e, 505, "http_version_not_supported", true, "HTTP version '%.8s' is not "
                      "supported; send HTTP/1.1 or HTTP/1.0", v);
    h->minor = v[7] - '0';
    return 0;
}

static int parse_request_line(Line l, HttpHead *h, HttpHeadError *e) {
    char q[QUOTE_CUT * 4 + 8];
    char *sp1 = memchr(l.s, ' ', l.n);
    if (!sp1)
        return refuse(e, 400, "bad_request", true, "the request line ('%s') is not METHOD /path "
                      "HTTP/1.1", quote(q, sizeof q, l.s, l.n));
    char *t = sp1 + 1, *end = l.s + l.n;
    char *sp2 = memchr(t, ' ', (size_t)(end - t));
    size_t tlen = (size_t)((sp2 ? sp2 : end) - t);
    t[tlen] = '\0'; /* a space, the line's CR or LF, or the copy's NUL */
    if (tlen > HTTP_TARGET_MAX) {
        snprintf(e->path, sizeof e->path, "%s", quote(q, sizeof q, t, tlen));
        return refuse(e, 414, "uri_too_long", true, "the request target is %zu bytes long, over "
                      "the limit of %d", tlen, HTTP_TARGET_MAX);
    }
    if (parse_method(l.s, (size_t)(sp1 - l.s), h, e)) return -1;
    if (parse_target(t, tlen, (size_t)(t - l.s) + 1, h, e)) return -1;
    if (!sp2)
        return refuse(e, 400, "bad_request", true, "the request line has no HTTP version; end it "
                      "with ' HTTP/1.1'");
    return parse_version(sp2 + 1, (size_t)(end - sp2 - 1), h, e);
}

/* ---- header lines ---- */

typedef struct {
    int content_length, transfer_encoding, host, authorization;
    bool conn_close, conn_keep_alive;
    size_t bytes; /* name + value + 4 of each line so far */
} Seen;

/* A field line split: name [0, colon), value [v0, v1) of l.s; colon == n
 * when there is none. */
typedef struct {
    size_t colon, v0, v1;
} Split;

static Split split_line(Line l) {
    Split p;
    const char *c = memchr(l.s, ':', l.n);
    p.colon = c ? (size_t)(c - l.s) : l.n;
    p.v0 = c ? p.colon + 1 : l.n;
    p.v1 = l.n;
    while (p.v0 < p.v1 && is_ows(l.s[p.v0])) p.v0++;
    while (p.v1 > p.v0 && is_ows(l.s[p.v1 - 1])) p.v1--;
    return p;
}

static size_t line_bytes(Split p) { return p.colon + (p.v1 - p.v0) + 4; }

/* The total of the header lines from l on, added to `bytes`. */
static size_t total_bytes(Line l, const char *end, size_t bytes) {
    for (;;) {
        bytes += line_bytes(split_line(l));
        if (!l.next) return bytes;
        l = line_at(l.next, end);
        if (!l.n) return bytes;
    }
}

static int check_line_syntax(Line l, Split p, int no, HttpHeadError *e) {
    char q[QUOTE_CUT * 4 + 8];
    if (is_ows(l.s[0]))
        return refuse(e, 400, "bad_request", true, "header line %d starts with a space or tab (an "
                      "obsolete folded line); send each field on one line", no);
    if (p.colon == l.n)
        return refuse(e, 400, "bad_request", true, "header line %d ('%s') has no colon", no,
                      quote(q, sizeof q, l.s, l.n));
    if (!p.colon)
        return refuse(e, 400, "bad_request", true, "header line %d has no field name before its "
                      "colon", no);
    if (is_ows(l.s[p.colon - 1]))
        return refuse(e, 400, "bad_request", true, "header line %d ('%s'): whitespace between the "
                      "field name and the colon", no, quote(q, sizeof q, l.s, p.colon));
    for (size_t i = 0; i < p.colon; i++)
        if (!is_tchar((unsigned char)l.s[i]))
            return refuse(e, 400, "bad_request", true, "header line %d ('%s'): byte 0x%02x at "
                          "column %zu is not allowed in a field name", no,
                          quote(q, sizeof q, l.s, p.colon), (unsigned char)l.s[i], i + 1);
    for (size_t i = p.v0; i < p.v1; i++)
        if (!is_value_byte((unsigned char)l.s[i]))
            return refuse(e, 400, "bad_request", true, "header line %d ('%s'): byte 0x%02x at "
                          "column %zu is not allowed", no, quote(q, sizeof q, l.s, p.colon),
                          (unsigned char)l.s[i], i + 1);
    return 0;
}

static int parse_content_length(const char *v, HttpHead *h, HttpHeadError *e) {
    char q[QUOTE_CUT * 4 + 8];
    uint64_t n = 0;
    bool ok = *v != '\0';
    for (const char *c = v; *c && ok; c++) {
        ok = *c >= '0' && *c <= '9' && n <= ((uint64_t)INT64_MAX - (uint64_t)(*c - '0')) / 10;
        n = n * 10 + (uint64_t)(*c - '0');
    }
    if (!ok)
        return refuse(e, 400, "bad_request", true, "Content-Length: '%s' is not a number of bytes "
                      "(decimal digits, at most %lld)", quote(q, sizeof q, v, strlen(v)),
                      (long long)INT64_MAX);
    h->has_length = true;
    h->content_length = n;
    return 0;
}

static int parse_transfer_encoding(const char *v, HttpHead *h, HttpHeadError *e) {
    char q[QUOTE_CUT * 4 + 8];
    if (h->minor == 0)
        return refuse(e, 400, "bad_request", true, "Transfer-Encoding is not allowed in HTTP/1.0");
    if (strcasecmp(v, "chunked"))
        return refuse(e, 501, "not_implemented", true, "Transfer-Encoding '%s' is not "
                      "implemented; send chunked or a Content-Length",
                      quote(q, sizeof q, v, strlen(v)));
    h->chunked = true;
    return 0;
}

/* Whether the comma-separated list v holds token (case-insensitive). */
static bool list_has(const char *v, const char *token) {
    size_t n = strlen(token);
    while (*v) {
        while (is_ows(*v) || *v == ',') v++;
        const char *end = v + strcspn(v, ",");
        const char *last = end;
        while (last > v && is_ows(last[-1])) last--;
        if ((size_t)(last - v) == n && !strncasecmp(v, token, n)) return true;
        v = end;
    }
    return false;
}

/* Whether the field name of length n is `want` (case-insensitive); the
 * length first, since most names are none of those read here. */
static bool name_is(const char *name, size_t n, const char *want) {
    return n == strlen(want) && !strcasecmp(name, want);
}

/* What the field (its name n bytes long) means for the framing and the
 * connection. */
static int read_field(const HttpField *f, size_t n, HttpHead *h, Seen *s, HttpHeadError *e) {
    if (name_is(f->name, n, "Content-Length")) {
        if (s->content_length++) return 0; /* refused after the lines, counted */
        return parse_content_length(f->value, h, e);
    }
    if (name_is(f->name, n, "Transfer-Encoding")) {
        if (s->transfer_encoding++) return 0;
        return parse_transfer_encoding(f->value, h, e);
    }
    if (name_is(f->name, n, "Host")) s->host++;
    else if (name_is(f->name, n, "Authorization")) s->authorization++;
    else if (name_is(f->name, n, "Connection")) {
        s->conn_close |= list_has(f->value, "close");
        s->conn_keep_alive |= list_has(f->value, "keep-alive");
    } else if (name_is(f->name, n, "Expect") && h->minor == 1) {
        h->expect_continue |= !strcasecmp(f->value, "100-continue");
    }
    return 0;
}

/* The header lines from l up to the empty line. */
static int parse_fields(Line l, const char *end, HttpHead *h, Seen *s, HttpHeadError *e) {
    for (int no = 1;; no++) {
        l = l.next ? line_at(l.next, end) : (Line){NULL, 0, NULL};
        if (!l.next) /* the last line has no LF, or there is none */
            return refuse(e, 400, "bad_request", true, "the head does not end with an empty line");
        if (!l.n) return 0;
        Split p = split_line(l);
        s->bytes += line_bytes(p);
        if (s->bytes > HTTP_HEADERS_MAX)
            return refuse(e, 431, "headers_too_large", true, "the header lines hold %zu bytes, "
                          "over the limit of %d", total_bytes(l, end, s->bytes - line_bytes(p)),
                          HTTP_HEADERS_MAX);
        if (check_line_syntax(l, p, no, e)) return -1;
        l.s[p.colon] = '\0';
        l.s[p.v1] = '\0';
        HttpField *f = &h->fields[h->num_fields++];
        *f = (HttpField){l.s, l.s + p.v0};
        if (read_field(f, p.colon, h, s, e)) return -1;
    }
}

static int check_framing(const Seen *s, HttpHeadError *e) {
    if (s->content_length > 1)
        return refuse(e, 400, "bad_request", true, "Content-Length is given %d times; send it once",
                      s->content_length);
    if (s->transfer_encoding > 1)
        return refuse(e, 400, "bad_request", true, "Transfer-Encoding is given %d times; send it "
                      "once", s->transfer_encoding);
    if (s->content_length && s->transfer_encoding)
        return refuse(e, 400, "bad_request", true, "Content-Length and Transfer-Encoding are both "
                      "given; send one");
    return 0;
}

static int check_fields(const Seen *s, const HttpHead *h, HttpHeadError *e) {
    if (h->minor == 1 && !s->host)
        return refuse(e, 400, "bad_request", false, "HTTP/1.1 needs a Host header");
    if (s->host > 1)
        return refuse(e, 400, "bad_request", false, "Host is given %d times; send it once",
                      s->host);
    if (s->authorization > 1)
        return refuse(e, 400, "bad_request", false, "Authorization is given %d times; send one "
                      "token", s->authorization);
    return 0;
}

/* ---- path and query ---- */

/* The decoded path into room, the decoded arguments after it. */
static void decode_target(HttpHead *h, char *room) {
    size_t qmark = strcspn(h->target, "?");
    memcpy(room, h->target, qmark);
    room[qmark] = '\0';
    h->path = room;
    room += http_unescape(room) + 1;
    if (!h->target[qmark]) return;
    const char *q = h->target + qmark + 1;
    while (*q) {
        size_t n = strcspn(q, "&");
        if (n) {
            memcpy(room, q, n);
            room[n] = '\0';
            char *eq = strchr(room, '=');
            HttpField *a = &h->args[h->num_args++];
            if (eq) *eq = '\0';
            a->name = room;
            http_unescape(room);
            a->value = eq ? eq + 1 : room + strlen(room);
            if (eq) http_unescape(eq + 1);
            room += n + 1;
        }
        q += n + (q[n] == '&');
    }
}

/* ---- the head ---- */

static size_t count_byte(const char *s, size_t n, char c) {
    size_t count = 0;
    for (const char *p = s, *end = s + n; p < end && (p = memchr(p, c, (size_t)(end - p))); p++)
        count++;
    return count;
}

/* h->mem: the fields, the args, the head's copy, room for the decoded path
 * and arguments (each no longer than the target). The args are counted in
 * the request line alone: '&'s in header values take no slots. */
static char *allocate(const char *buf, size_t len, HttpHead *h) {
    const char *eol = memchr(buf, '\n', len);
    size_t line = eol ? (size_t)(eol - buf) : len;
    size_t fields = count_byte(buf, len, '\n') + 1, args = count_byte(buf, line, '&') + 2;
    size_t arrays = (fields + args) * sizeof(HttpField);
    char *mem = malloc(arrays + 2 * (len + 2));
    if (!mem) return NULL;
    h->mem = mem;
    h->fields = (HttpField *)mem;
    h->args = h->fields + fields;
    char *copy = mem + arrays;
    memcpy(copy, buf, len);
    copy[len] = '\0';
    return copy;
}

int http_head_parse(const char *buf, size_t len, HttpHead *h, HttpHeadError *e) {
    *h = (HttpHead){0};
    *e = (HttpHeadError){0};
    size_t start = skip_empty_lines(buf, len);
    buf += start;
    len -= start;
    char *copy = allocate(buf, len, h);
    if (!copy) return refuse(e, 503, "unavailable", true, "out of memory reading a request head");
    const char *end = copy + len;
    Line l = line_at(copy, end);
    if (parse_request_line(l, h, e)) return -1;
    Seen s = {0};
    if (parse_fields(l, end, h, &s, e) || check_framing(&s, e)) return -1;
    h->keep_alive = h->minor == 1 ? !s.conn_close : s.conn_keep_alive && !s.conn_close;
    if (check_nul(h->target, e) || check_fields(&s, h, e)) return -1;
    decode_target(h, copy + len + 1);
    return 0;
}

void http_head_free(HttpHead *h) {
    free(h->mem);
    *h = (HttpHead){0};
}

const char *http_head_field(const HttpHead *h, const char *name) {
    for (int i = 0; i < h->num_fields; i++)
        if (!strcasecmp(h->fields[i].name, name)) return h->fields[i].value;
    return NULL;
}

const char *http_head_arg(const HttpHead *h, const char *key) {
    for (int i = 0; i < h->num_args; i++)
        if (!strcmp(h->args[i].name, key)) return h->args[i].value;
    return NULL;
}
