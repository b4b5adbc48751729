/* http_conn.h - one client connection of the HTTP server: reading its
 * requests, sending their responses, and its deadlines.
 *
 * A connection reads a request head (server/http_parse.h), hands it to the
 * server's events (server/http.c routes it), reads the body by its framing
 * (Content-Length, or chunks: server/http_chunked.h) into the events, and
 * sends the response it is given (server/http_response.h); then, kept
 * alive, the next request. A head that is refused, or a reply given before
 * the body was read, ends the connection after the reply, with a lingering
 * close: the socket is shut for writing and what the client still sends is
 * read and dropped for a moment, so that the client reads the reply rather
 * than a reset.
 *
 * Deadlines, checked by http_conn_tick a few times a second:
 *   - a request head (the TLS handshake too, on a new connection) must be
 *     whole within header_timeout of its first byte (of the connection's
 *     start, for the first): bytes that trickle in do not move it, so slow
 *     clients (slow loris) cannot hold connections;
 *   - a kept-alive connection waiting for its next request, a body that
 *     stops coming, a client that stops reading its response: closed after
 *     idle_timeout without a byte moving;
 *   - a body that comes, but slower than HTTP_MIN_RATE on the whole:
 *     closed once idle_timeout plus a second for each HTTP_MIN_RATE
 *     bytes of it have passed since it began (mod_reqtimeout's MinRate);
 *   - a response read slower than HTTP_MIN_RATE, measured over windows of
 *     idle_timeout while the socket stays full: closed (a byte read now and
 *     then keeps a connection from idling, not from this);
 *   - a stream waiting for its producer has no deadline (an SSE stream
 *     waits for events as long as its client stays).
 * A connection is driven by one thread at a time (its worker's, see
 * server/http_loop.h); nothing here locks.
 */
#ifndef TRAIND_SERVER_HTTP_CONN_H
#define TRAIND_SERVER_HTTP_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/http_parse.h"
#include "server/http_response.h"
#include "server/http_tls.h"

/* A request head may take this many bytes in all (the request line and
 * header lines): enough that a head far over the limits of http_parse.h (a
 * 100,000-byte path) still parses and gets its own error; past it, the
 * head gets 414 or 431 without being parsed. */
#define HTTP_HEAD_READ_MAX (128 * 1024)

/* The slowest a request body may come on the whole, and a response be read
 * while it waits to be, in bytes a second: a thousandth of a slow home
 * link, far above a byte a minute. */
#define HTTP_MIN_RATE 1024.0

/* How a request ended, for the server's log. */
typedef enum {
    HTTP_END_COMPLETED,    /* its response was sent whole */
    HTTP_END_ERROR,        /* the server gave up on it (an event said so, out of memory) */
    HTTP_END_TIMEOUT,      /* a deadline passed */
    HTTP_END_SHUTDOWN,     /* the server stopped */
    HTTP_END_READ_ERROR,   /* the socket or TLS failed */
    HTTP_END_CLIENT_ABORT, /* the client closed the connection */
} HttpEnd;

/* What the server does with requests (server/http.c). Each runs on the
 * connection's worker thread. */
typedef struct {
    void *app;
    /* A head came in. error is NULL when it parsed, else why it was refused
     * (head then holds what could be read: method and target, or nothing).
     * The event may take head's memory (then it leaves *head zeroed).
     * Returns the request's state (NULL: out of memory, the connection is
     * closed), with *reply set when the request is answered at once, before
     * any body. */
    void *(*head)(void *app, HttpHead *head, const HttpHeadError *error, HttpResponse **reply);
    /* A piece of the body: 0 to go on, -1 to read no more of it (end then
     * gives the reply the request has, and the connection closes after). */
    int (*body)(void *req, const char *data, size_t n);
    /* The body is over (framing_error NULL) or cannot be read further
     * (framing_error says why: a malformed chunk): the reply; NULL closes
     * the connection. */
    HttpResponse *(*end)(void *req, const char *framing_error);
    /* The request is over, its response sent (or not: how says). */
    void (*done)(void *req, HttpEnd how);
    /* A connection refused before any request (may be NULL): its TLS
     * handshake failed, or it spoke plain HTTP to the TLS port; why. */
    void (*refused)(void *app, int fd, const char *why);
} HttpEvents;

typedef struct {
    double header_timeout, idle_timeout; /* seconds */
} HttpConnTimes;

/* What a connection waits for next, as a mask; HTTP_CONN_CLOSE: it is
 * over, http_conn_free it. 0: nothing (a stream waiting for its producer:
 * the next tick asks again). */
enum { HTTP_CONN_READ = 1, HTTP_CONN_WRITE = 2, HTTP_CONN_CLOSE = 4 };

typedef struct HttpConn HttpConn;

/* A connection on socket fd (non-blocking; tls NULL for plain HTTP), its
 * first head due header_timeout from now. Takes fd and tls, also when it
 * returns NULL (out of memory). stopping is the server's flag. */
HttpConn *http_conn_new(int fd, HttpTls *tls, const HttpEvents *events, const HttpConnTimes *times,
                        const atomic_bool *stopping, double now);
/* The socket is ready (hangup: the peer closed or failed): does what it
 * can without blocking. Returns what it waits for next. */
unsigned http_conn_io(HttpConn *c, bool hangup, double now);
/* A tick: the deadlines, a waiting stream asked again, and once the
 * server stops, its streams ended and idle connections closed. */
unsigned http_conn_tick(HttpConn *c, double now);
/* Closes the connection (a request in flight is done as how) and frees. */
void http_conn_free(HttpConn *c, HttpEnd how);
/* Why a connection that said HTTP_CONN_CLOSE is over. */
HttpEnd http_conn_end(const HttpConn *c);
int http_conn_fd(const HttpConn *c);

#endif
