/* http_head.c - the checks of a request head before routing; see
 * http_head.h. */
#include "server/http_head.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server/http.h"

static void refuse(HttpHeadError *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void refuse(HttpHeadError *e, int status, const char *code, const char *fmt, ...) {
    e->status = status;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
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
 * argument). */
static void check_nul(const char *target, HttpHeadError *e) {
    const char *nul = strstr(target, "%00");
    if (!nul) return;
    size_t at = (size_t)(nul - target), qmark = strcspn(target, "?");
    char piece[80];
    if (at < qmark) {
        int segment = 0;
        for (size_t i = 0; i < at; i++) segment += target[i] == '/';
        piece_around(target, 0, at, qmark, '/', piece, sizeof piece);
        snprintf(e->path, sizeof e->path, "%.*s%s", (int)(qmark > 120 ? 120 : qmark), target,
                 qmark > 120 ? "..." : "");
        refuse(e, 400, "bad_path", "path segment %d ('%s') holds a NUL byte (%%00)", segment,
               piece);
        return;
    }
    piece_around(target, qmark + 1, at, strlen(target), '&', piece, sizeof piece);
    size_t key = strcspn(piece, "=");
    snprintf(e->path, sizeof e->path, "?%.*s", (int)key, piece);
    refuse(e, 400, "bad_query", "query argument '%s' holds a NUL byte (%%00)", piece);
}

typedef struct {
    int content_length, transfer_encoding, authorization;
    size_t bytes;
} HeadLines;

static enum MHD_Result add_line(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value) {
    (void)kind;
    HeadLines *h = cls;
    h->content_length += !strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH);
    h->transfer_encoding += !strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    h->authorization += !strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION);
    h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

static void check_lines(struct MHD_Connection *conn, HttpHeadError *e) {
    HeadLines h = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_line, &h);
    if (h.bytes > HTTP_HEADERS_MAX) {
        refuse(e, 431, "headers_too_large", "the header lines hold %zu bytes, over the limit of "
               "%d", h.bytes, HTTP_HEADERS_MAX);
    } else if (h.content_length > 1 || (h.content_length && h.transfer_encoding)) {
        e->close = true;
        if (h.content_length > 1)
            refuse(e, 400, "bad_request", "Content-Length is given %d times; send it once",
                   h.content_length);
        else
            refuse(e, 400, "bad_request", "Content-Length and Transfer-Encoding are both given; "
                   "send one");
    } else if (h.authorization > 1) {
        refuse(e, 400, "bad_request", "Authorization is given %d times; send one token",
               h.authorization);
    }
}

void http_head_check(struct MHD_Connection *conn, const char *target, HttpHeadError *e) {
    *e = (HttpHeadError){0};
    size_t len = target ? strlen(target) : 0;
    if (len > HTTP_TARGET_MAX) {
        snprintf(e->path, sizeof e->path, "%.64s...", target);
        refuse(e, 414, "uri_too_long", "the request target is %zu bytes long, over the limit of "
               "%d", len, HTTP_TARGET_MAX);
        return;
    }
    if (target) check_nul(target, e);
    if (!e->status) check_lines(conn, e);
}
