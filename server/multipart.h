/* multipart.h - multipart/form-data bodies (RFC 7578), parsed as they
 * stream in.
 *
 * Each part's bytes reach a callback piece by piece, as they arrive from
 * the socket, so an upload of any size goes straight to a file
 * (server/routes/dataset_upload.c) and never sits whole in memory: the
 * parser holds back at most the bytes that may begin a delimiter (under
 * 75) and one part-header line. The callback is told when a new part
 * starts, so it can close the previous file and open the next.
 *
 * What is accepted (server/multipart.c says why):
 * - the boundary: Content-Type's boundary= parameter, a token or a quoted
 *   string, 1..MULTIPART_BOUNDARY_MAX printable ASCII characters, a space
 *   not last (RFC 2046 allows fewer characters; libmicrohttpd took any);
 * - an optional preamble, then "--boundary"; each delimiter after a part
 *   is CRLF "--boundary" (the CRLF is required: a bare LF is content),
 *   then "--" to end the body (the epilogue after it is ignored) or
 *   spaces and tabs and a line end (CRLF or a bare LF) before the part's
 *   headers;
 * - part headers: lines ending in CRLF or a bare LF, MULTIPART_HEADERS_MAX
 *   bytes in all with the blank line; no control bytes, no folded lines;
 *   one Content-Disposition: form-data with name= (at most
 *   MULTIPART_NAME_MAX bytes) and optionally filename=, each a token or a
 *   quoted string (a backslash escapes '"' or '\', other backslashes are
 *   kept, as browsers send Windows paths); other parameters (filename*=)
 *   and other headers (Content-Type) are ignored.
 * Anything else is malformed.
 */
#ifndef TRAIND_SERVER_MULTIPART_H
#define TRAIND_SERVER_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#define MULTIPART_BOUNDARY_MAX 70  /* RFC 2046 */
#define MULTIPART_NAME_MAX 127     /* bytes of a part's name= */
#define MULTIPART_HEADERS_MAX 8192 /* bytes of a part's header block */

typedef struct Multipart Multipart;

/* One piece of a part. field is the part's name; filename is NULL for a
 * plain field; first is true on the first piece of a part (size may be 0).
 * Returns 0 to go on, -1 to abort the parse. */
typedef int (*MultipartFn)(void *ctx, const char *field, const char *filename, bool first,
                           const char *data, size_t size);

/* For a body whose Content-Type (the header's value) the caller found
 * multipart/form-data: NULL when it gives no valid boundary (missing,
 * empty, too long, a control byte) or out of memory; the caller replies. */
Multipart *multipart_new(const char *content_type, MultipartFn fn, void *ctx);
/* Feeds body bytes. 0, or -1 when the body is malformed or fn aborted
 * (then and after: every later feed is -1 too). */
int multipart_feed(Multipart *mp, const char *data, size_t size);
/* Frees; returns 0 when the body ended with its closing boundary, -1 when
 * it was cut short or malformed. NULL is fine (returns -1). */
int multipart_end(Multipart *mp);

#endif
