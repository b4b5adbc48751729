/* http_tls.h - HTTPS for the server's connections, through GnuTLS.
 *
 * The certificate and key are loaded once (HttpTlsCreds, shared by every
 * connection) and may be replaced while the server runs (a renewed
 * certificate): new sessions take the new one, sessions under way keep
 * theirs. Each connection has its session over its non-blocking
 * socket. The calls never block: they say HTTP_TLS_AGAIN, and
 * http_tls_wants_write tells whether the session waits to write (a
 * handshake's reply, a record half sent) or to read.
 */
#ifndef TRAIND_SERVER_HTTP_TLS_H
#define TRAIND_SERVER_HTTP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HTTP_TLS_AGAIN (-2)

typedef struct HttpTlsCreds HttpTlsCreds;
typedef struct HttpTls HttpTls;

/* The certificate (chain) and its private key, PEM text: NULL with the
 * reason in error_get() ("the certificate and the key do not match"). */
HttpTlsCreds *http_tls_creds_new(const char *cert_pem, const char *key_pem);
/* The certificate and key of the sessions begun from now on: 0, or -1
 * with the reason in error_get(), the ones in use kept. Any thread. */
int http_tls_creds_replace(HttpTlsCreds *creds, const char *cert_pem, const char *key_pem);
void http_tls_creds_free(HttpTlsCreds *creds);

/* A server session on socket fd; NULL when out of memory. */
HttpTls *http_tls_new(HttpTlsCreds *creds, int fd);
/* Frees the session (the socket stays open). NULL is fine. */
void http_tls_free(HttpTls *t);

/* 1 once the handshake is done, HTTP_TLS_AGAIN, or -1 when it failed. */
int http_tls_handshake(HttpTls *t);
/* After a failed handshake: why, for the log ("the client ended the
 * handshake: Unknown CA", "No supported cipher suites have been found."),
 * or NULL when the client just left (a port check). Valid until the
 * session is freed. */
const char *http_tls_handshake_error(HttpTls *t);
/* Bytes read (> 0), 0 at the end of the stream, HTTP_TLS_AGAIN, or -1. */
ssize_t http_tls_recv(HttpTls *t, void *buf, size_t max);
/* Bytes sent (> 0), HTTP_TLS_AGAIN (call again with the same bytes), or -1. */
ssize_t http_tls_send(HttpTls *t, const void *buf, size_t len);
/* Whether decrypted bytes wait in the session (the socket may be empty). */
bool http_tls_pending(HttpTls *t);
bool http_tls_wants_write(HttpTls *t);
/* Sends close_notify, as far as the socket takes it now. */
void http_tls_bye(HttpTls *t);

#endif
