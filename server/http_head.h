/* http_head.h - what a request head must be before it is routed.
 *
 * libmicrohttpd hands the route table a decoded path, in which a NUL (%00)
 * cuts the path short ("/v1/jobs/1%00x" would read as /v1/jobs/1), and of
 * two Content-Length or Authorization headers it reads the first. These
 * checks look at the request target as the client sent it and at the
 * header lines, and refuse what would otherwise be read as something it is
 * not:
 *   414 uri_too_long       the target (path and query) over HTTP_TARGET_MAX bytes
 *   400 bad_path           a NUL (%00) in a segment of the path (named)
 *   400 bad_query          a NUL (%00) in a query argument (named)
 *   400 bad_request        Content-Length twice, or beside Transfer-Encoding:
 *                          where the body ends is ambiguous, so the
 *                          connection is closed after the reply; Authorization
 *                          twice (which token is meant is ambiguous)
 *   431 headers_too_large  the header lines over HTTP_HEADERS_MAX bytes
 */
#ifndef TRAIND_SERVER_HTTP_HEAD_H
#define TRAIND_SERVER_HTTP_HEAD_H

#include <stdbool.h>

struct MHD_Connection;

typedef struct {
    int status;       /* 0: the head is fine */
    const char *code; /* the error body's "code" */
    bool close;       /* close the connection after the reply */
    char path[160];   /* the error body's "path"; "": the request's path */
    char message[400];
} HttpHeadError;

/* Checks the head of the request on conn, whose target as sent is target
 * (NULL when unknown: then only the header lines are checked). */
void http_head_check(struct MHD_Connection *conn, const char *target, HttpHeadError *e);

#endif
