/* http_loop.h - the HTTP server's threads: accepting connections, the
 * caps on them, and each thread's event loop.
 *
 * Each of `threads` workers has its own epoll set, holding the listening
 * socket (EPOLLEXCLUSIVE: one worker wakes per new connection) and the
 * connections it accepted, which it alone drives from then on
 * (server/http_conn.h): a connection's requests are handled on its
 * worker's thread. Every HTTP_TICK_MS a worker ticks its connections
 * (deadlines, streams waiting for their producer). A connection past
 * max_connections in all, or past max_per_ip from its client's address, is
 * closed as soon as it is accepted.
 */
#ifndef TRAIND_SERVER_HTTP_LOOP_H
#define TRAIND_SERVER_HTTP_LOOP_H

#include "server/http_conn.h"
#include "server/http_tls.h"

#define HTTP_TICK_MS 200

typedef struct {
    int listen_fd; /* taken: closed by http_loop_stop, or at once when the start fails */
    int threads;
    int max_connections, max_per_ip;
    HttpConnTimes times;
    HttpTlsCreds *tls; /* NULL: plain HTTP; kept by the caller until the loop stops */
    HttpEvents events;
} HttpLoopConfig;

typedef struct HttpLoop HttpLoop;

/* Starts the workers (named "http-N"); NULL with an error. */
HttpLoop *http_loop_start(const HttpLoopConfig *config);
/* Stops accepting, ends the streams (their clients see the end of the
 * stream), gives the responses in flight a moment, closes every
 * connection, joins the workers and frees. NULL is fine. */
void http_loop_stop(HttpLoop *l);

#endif
