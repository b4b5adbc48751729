/* http_response.h - a reply as the server sends it: a status, header
 * lines, and a body that is bytes (copied, owned or lent), a file, or a
 * stream of unknown length; or a reply made later (its route's work runs
 * on another thread), which stands in until it is made.
 *
 * server/http.c makes them (http_reply_*); server/http_conn.c sends them:
 * it adds the framing (Content-Length, or chunked for a stream), Date and
 * Connection itself, so a response holds only what the route says.
 */
#ifndef TRAIND_SERVER_HTTP_RESPONSE_H
#define TRAIND_SERVER_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A stream's producer: copies up to max bytes to buf and returns how many;
 * 0 means "nothing yet, ask again later" (the connection waits without a
 * thread until the next tick, ~200 ms);
 * HTTP_STREAM_END ends the response normally, HTTP_STREAM_ERROR aborts it. */
#define HTTP_STREAM_END (-1)
#define HTTP_STREAM_ERROR (-2)
typedef ssize_t (*HttpStreamFn)(void *ctx, char *buf, size_t max);

typedef enum {
    HTTP_RESPONSE_BYTES,
    HTTP_RESPONSE_FD,
    HTTP_RESPONSE_STREAM,
    HTTP_RESPONSE_LATER,
} HttpResponseKind;

typedef struct HttpResponse {
    int status;
    HttpResponseKind kind;
    char *fields; /* "Name: value\r\n" lines the route added */
    size_t fields_len, fields_cap;
    bool close; /* the route asked for "Connection: close" */
    /* HTTP_RESPONSE_BYTES: data[0, len), released by release(cls) (NULL: nothing to do) */
    const char *data;
    size_t len;
    void (*release)(void *cls);
    void *cls;
    /* HTTP_RESPONSE_FD: size bytes of fd from offset 0; fd closed with the response */
    int fd;
    uint64_t size;
    /* HTTP_RESPONSE_STREAM: free_ctx(ctx) when the response is freed */
    HttpStreamFn fn;
    void *ctx;
    void (*free_ctx)(void *ctx);
    /* HTTP_RESPONSE_LATER: nothing is sent until later(ctx) gives the
     * response (NULL: not yet; asked again at the next tick, the
     * connection waiting without a thread); ctx is not freed with it */
    struct HttpResponse *(*later)(void *ctx);
} HttpResponse;

/* Each returns NULL when out of memory, having released what it was given
 * (release(cls), close(fd), free_ctx(ctx)). */
HttpResponse *http_response_bytes(int status, const char *data, size_t len,
                                  void (*release)(void *cls), void *cls);
HttpResponse *http_response_copy(int status, const char *data, size_t len);
HttpResponse *http_response_fd(int status, int fd, uint64_t size);
HttpResponse *http_response_stream(int status, HttpStreamFn fn, void *ctx,
                                   void (*free_ctx)(void *ctx));
HttpResponse *http_response_later(HttpResponse *(*later)(void *ctx), void *ctx);

/* Adds a header line: 0, or -1 when out of memory or when name or value
 * holds a CR, LF or NUL (a header line must stay one line). "Connection:
 * close" sets r->close instead: the server writes Connection itself. */
int http_response_add(HttpResponse *r, const char *name, const char *value);
/* Frees r and releases its body. NULL is fine. */
void http_response_free(HttpResponse *r);

/* The status line and header lines of r, through its blank line, as sent
 * for HTTP/1.minor: with Date, Content-Length (bytes and files) or
 * Transfer-Encoding: chunked (streams, HTTP/1.1), and Connection (close, or
 * keep-alive for an HTTP/1.0 client that asked). A malloc'd string and its
 * length in *len; NULL when out of memory. */
char *http_response_head(const HttpResponse *r, int minor, bool keep_alive, size_t *len);
/* The reason phrase of a status ("Not Found"); "Unknown" for others. */
const char *http_reason(int status);

#endif
