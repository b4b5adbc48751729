/* http_parse.h - an HTTP/1.x request head, parsed from the bytes as sent.
 *
 * The server's own reading of a request (server/http_conn.c reads the
 * bytes, server/http.c routes the request): the request line, the header
 * fields, the query arguments, and what the connection needs to know of
 * the body's framing. Everything a client can get wrong here is refused
 * with the API's error (status, code, message, path), never read as
 * something it is not:
 *   400 bad_request        a request line or header line that does not
 *                          parse (which line, which byte), a header with
 *                          a control byte, an obsolete folded line, no
 *                          Host in HTTP/1.1; Content-Length not a plain
 *                          decimal number, or over 2^63-1, or given twice,
 *                          or beside Transfer-Encoding; Authorization twice
 *   400 bad_path/bad_query a NUL (%00) in a path segment / query argument
 *   414 uri_too_long       the target over HTTP_TARGET_MAX bytes
 *   431 headers_too_large  the header lines over HTTP_HEADERS_MAX bytes
 *   501 not_implemented    a Transfer-Encoding other than chunked
 *   505 http_version_not_supported  a version other than HTTP/1.0, 1.1
 * A refused head whose body cannot be found (framing) closes the
 * connection after the reply (HttpHeadError.close).
 */
#ifndef TRAIND_SERVER_HTTP_PARSE_H
#define TRAIND_SERVER_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int status;       /* 0: the head is fine */
    const char *code; /* the error body's "code" (a static string) */
    bool close;       /* close the connection after the reply */
    char path[160];   /* the error body's "path"; "": the request's path */
    char message[400];
} HttpHeadError;

typedef struct {
    const char *name, *value; /* NUL-terminated, inside HttpHead's memory */
} HttpField;

typedef struct {
    char method[16];
    const char *target; /* as sent: path and query, not decoded */
    const char *path;   /* the target's path, percent-decoded whole */
    int minor;          /* HTTP/1.minor: 0 or 1 */
    HttpField *fields;  /* the header fields in order, values trimmed */
    int num_fields;
    HttpField *args;    /* the query's arguments, decoded ("a&b=" gives a="" and b="") */
    int num_args;
    /* the body's framing */
    bool has_length;         /* Content-Length given */
    uint64_t content_length; /* its value */
    bool chunked;            /* Transfer-Encoding: chunked */
    /* the connection */
    bool keep_alive;      /* HTTP/1.1 without "Connection: close", or 1.0 with "keep-alive" */
    bool expect_continue; /* "Expect: 100-continue" */
    char *mem;            /* one allocation behind all the pointers above */
} HttpHead;

/* Where a head ends in buf[0, len): the offset just past its blank line
 * (CRLF CRLF, or LF LF), or 0 when it has not come whole yet. */
size_t http_head_end(const char *buf, size_t len);
/* The same, knowing that buf[0, from) held no end (a head read in pieces:
 * each byte is looked at once, not once a read). */
size_t http_head_end_from(const char *buf, size_t len, size_t from);

/* Parses buf[0, len), one whole head with its blank line (http_head_end's
 * length). 0 with *h filled (http_head_free it), or -1 with *e filled
 * and *h holding what could be read (at least method and target when the
 * request line parsed, else empty; http_head_free it too). Out of memory:
 * -1 with status 503, code "unavailable". */
int http_head_parse(const char *buf, size_t len, HttpHead *h, HttpHeadError *e);
void http_head_free(HttpHead *h);

/* The first field called name (case-insensitive), or NULL. */
const char *http_head_field(const HttpHead *h, const char *name);
/* The first query argument called key (case-sensitive), or NULL. */
const char *http_head_arg(const HttpHead *h, const char *key);

/* Percent-decodes s in place ("%2F" is '/'; '+' stays '+'; a '%' not
 * followed by two hex digits stays as it is); returns the new length. */
size_t http_unescape(char *s);

#endif
