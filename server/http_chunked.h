/* http_chunked.h - a chunked request body (Transfer-Encoding: chunked),
 * decoded as it streams in.
 *
 * The decoder is fed whatever bytes the socket gave, in any pieces, and
 * keeps its place between them: a chunk-size line cut in the middle, a
 * CRLF split over two reads. Chunk extensions are skipped, trailer fields
 * read and dropped. Malformed framing (a size that is not hex, over 2^63,
 * a chunk not followed by CRLF, a size line or the trailers over their
 * limits) is an error with the byte it was found at.
 */
#ifndef TRAIND_SERVER_HTTP_CHUNKED_H
#define TRAIND_SERVER_HTTP_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_CHUNK_LINE_MAX 4096 /* a chunk-size line with its extensions */

typedef struct {
    int state;       /* zero-initialise before the first call */
    uint64_t left;   /* bytes left in the current chunk */
    size_t line;     /* bytes of the current size line or trailer so far */
    size_t trailers; /* bytes of trailers so far */
    uint64_t offset; /* bytes of the encoded body consumed so far (for messages) */
    int digits;      /* hex digits of the current size */
} HttpChunked;

/* Decodes buf[0, n) in place: the body's bytes among them are moved to
 * the front of buf, their count in *out; the input bytes consumed in
 * *used. Returns 1 once the last chunk and its trailers are read (bytes
 * past *used belong to the next request), 0 when more input is needed
 * (then *used == n), -1 on malformed framing with err (what, at which byte
 * of the body) written to err[0, err_max). */
int http_chunked_decode(HttpChunked *c, char *buf, size_t n, size_t *used, size_t *out, char *err,
                        size_t err_max);

#endif
