/* http_conn.h - the HTTP connections' header deadline.
 *
 * libmicrohttpd's own connection timeout is an idle timeout: any byte
 * received starts it over, so a client that sends its headers a byte a
 * second (slow loris) holds its connection for ever, and a thousand such
 * clients hold every connection the server has. Here each connection has
 * a deadline for a request's line and headers that further bytes do not
 * move:
 *   - a new connection must have sent a whole request head (TLS handshake
 *     included) within header_timeout of being accepted;
 *   - after a response, a kept-alive connection is idle: libmicrohttpd's
 *     timeout (the idle timeout) closes it if nothing comes; once a byte of
 *     the next request has come (TCP_INFO's count of bytes received moved),
 *     the head must be complete within header_timeout of then;
 *   - while a request is served (its body read, its response sent, a
 *     stream waiting for events) no deadline applies here.
 * A connection past its deadline is shut down (shutdown(2): libmicrohttpd
 * then reads the end of the stream and closes it on its own thread); the
 * client gets no response, as it never finished asking.
 *
 * The functions are called from libmicrohttpd's threads (open, busy, idle,
 * close) and the server's ticker (sweep); a lock orders them.
 */
#ifndef TRAIND_SERVER_HTTP_CONN_H
#define TRAIND_SERVER_HTTP_CONN_H

typedef struct HttpConns HttpConns;
typedef struct HttpConn HttpConn;

/* NULL when out of memory. */
HttpConns *http_conns_new(int header_timeout_s);
/* Frees the table; every connection must have been closed. NULL is fine. */
void http_conns_free(HttpConns *cs);

/* A connection accepted on socket fd: its head is due in header_timeout.
 * NULL when out of memory (the connection then has no deadline). */
HttpConn *http_conn_open(HttpConns *cs, int fd);
/* The connection is gone (before libmicrohttpd closes fd). NULL is fine. */
void http_conn_close(HttpConns *cs, HttpConn *c);
/* A request's head is in: no deadline while it is served. */
void http_conn_busy(HttpConns *cs, HttpConn *c);
/* Its response is done: idle until a byte of the next request comes. */
void http_conn_idle(HttpConns *cs, HttpConn *c);

/* Shuts down the connections past their deadline and notes the idle ones
 * whose next request has begun. Returns how many it shut down. */
int http_conns_sweep(HttpConns *cs);

#endif
