/* http.h - the daemon's HTTP layer: an HTTP/1.1 server, a route table, JSON.
 *
 * The server owns everything that is the same for every route, so that a
 * route file (server/routes/) is only the logic of its resource:
 *   - a route table: method + path pattern ("/v1/jobs/{id}/cancel"), each
 *     {name} segment matching one path segment, handed to the handler as
 *     http_param(req, i);
 *   - bearer-token auth on every route but those marked HTTP_ROUTE_PUBLIC
 *     (401 with WWW-Authenticate), HTTP_ROUTE_ADMIN routes 403 for others;
 *   - request bodies: buffered up to a limit for JSON (413 beyond it, told
 *     by Content-Length before a byte is read, or counted for chunked
 *     bodies), or streamed to the route piece by piece (uploads) up to the
 *     upload limit;
 *   - replies: JSON, the error body of design.md
 *     {"error": {"code", "message", "path"}}, text, a file descriptor
 *     (sendfile), or a stream (Server-Sent Events) whose producer may say
 *     "nothing yet": the connection is then suspended and retried on the
 *     next tick, never busy-waiting a thread;
 *   - per route and status request counters for GET /metrics (a request
 *     is counted before its reply is queued, so a client that has its
 *     reply sees it counted), and one JSON log line per request on stderr
 *     (method, path, status, ms);
 *   - the edge: every error is the API's JSON, whatever is wrong with the
 *     request (a head that does not parse, an HTTP version other than 1.0
 *     and 1.1, a Content-Length that is not a number, a path with a NUL:
 *     server/http_parse.h; 404, 405, 413, 414, 431, a trailing slash),
 *     limits on what a request may ask for (below), connections per client
 *     address, a deadline for request heads that more bytes do not move
 *     (server/http_conn.h), an idle timeout, and HTTPS (GnuTLS).
 *
 * The server is our own (server/http_loop.c, http_conn.c): a pool of
 * threads, each with epoll, HTTP/1.1 keep-alive, on a listening socket of
 * our own (bound without SO_REUSEPORT, so a second daemon on the same port
 * fails to start instead of sharing it). Handlers run on those threads:
 * they must not block for long (a training step, a lock held by the
 * trainer), since every connection of that thread waits meanwhile; a route
 * whose work is long hands it to a thread of its own and replies later
 * (http_reply_later: an upload's check of its files).
 */
#ifndef TRAIND_SERVER_HTTP_H
#define TRAIND_SERVER_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/http_response.h"

#define HTTP_JSON_MAX_DEFAULT (1 << 20)               /* JSON bodies: 1 MiB */
#define HTTP_UPLOAD_MAX_DEFAULT ((int64_t)4 << 30)    /* streamed bodies: 4 GiB */
#define HTTP_MAX_PARAMS 4
/* bytes of one {name} segment, decoded (the longest: a dataset's
 * "user/name", 64 + 1 + 128); longer ones do not match */
#define HTTP_PARAM_MAX 256

/* Connections. A client's connections past max_per_ip are closed as soon
 * as accepted; max_connections bounds them all (the daemon raises its
 * file limit to fit). */
#define HTTP_MAX_CONNECTIONS_DEFAULT 2048
#define HTTP_MAX_PER_IP_DEFAULT 64
#define HTTP_HEADER_TIMEOUT_DEFAULT 10 /* seconds; see server/http_conn.h */
#define HTTP_IDLE_TIMEOUT_DEFAULT 60   /* seconds */

/* What one request may ask for, refused with a JSON error: the request
 * target (path and query) over HTTP_TARGET_MAX bytes (414), its header
 * lines over HTTP_HEADERS_MAX bytes in all (431), a JSON body nesting
 * deeper than HTTP_JSON_DEPTH_MAX or holding a string over
 * HTTP_JSON_STRING_MAX bytes (400). A head is read up to
 * HTTP_HEAD_READ_MAX bytes (server/http_conn.h), far over these limits, so
 * that a 100,000-byte path still gets its 414 with the path named. */
#define HTTP_TARGET_MAX 8192
#define HTTP_HEADERS_MAX (32 * 1024)
#define HTTP_JSON_DEPTH_MAX 64
#define HTTP_JSON_STRING_MAX (64 * 1024)

typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;

/* Who is calling, filled in by the authenticate callback. */
typedef struct {
    int64_t user_id;
    bool admin;
    char name[80];
    /* sha256 (hex) of the token the request came with: a stream re-checks
     * it (db_user_token_valid) and ends once it is revoked or replaced */
    char token_sha256[65];
    /* the metrics scrape token (serve --metrics-token-file): no user;
     * it opens HTTP_ROUTE_SCRAPE routes only (401 on the others) */
    bool scrape;
} HttpAuth;

/* A handler replies with one of the http_reply_* functions and returns 0.
 * Returning without a reply answers 500. */
typedef int (*HttpHandler)(HttpRequest *req);

/* What a route's body callbacks want done with the body. */
enum { HTTP_BODY_BUFFER = 0, HTTP_BODY_STREAM = 1 };

/* Routes that take uploads. begin runs once the headers are in (auth
 * passed) and returns HTTP_BODY_BUFFER (the body is collected up to the
 * JSON limit, as for other routes), HTTP_BODY_STREAM (data gets the body
 * piece by piece, up to the upload limit), or -1 after replying (an error,
 * answered at once: the body is not read). data returns 0, or -1 after
 * replying an error (answered at once: the rest of the body is not read,
 * and the connection closes after the reply). Once the body is in, the
 * handler runs as for any route. finish runs once at the
 * very end, whatever happened, with completed = the response was sent in
 * full: the place to remove temporary files of an upload that did not
 * finish. */
typedef struct {
    int (*begin)(HttpRequest *req);
    int (*data)(HttpRequest *req, const char *data, size_t size);
    void (*finish)(HttpRequest *req, bool completed);
} HttpBodyStream;

enum {
    HTTP_ROUTE_PUBLIC = 1 << 0, /* no token needed */
    HTTP_ROUTE_ADMIN = 1 << 1,  /* admins only (403 for others) */
    HTTP_ROUTE_SCRAPE = 1 << 2, /* the scrape token opens it too (GET /metrics) */
    /* a token of another kind (an attempt's: server/remote_attempt.h),
     * which the route checks itself (http_bearer); no user's token needed */
    HTTP_ROUTE_OWN_AUTH = 1 << 3,
};

typedef struct {
    const char *method;  /* "GET", "POST", "DELETE" */
    const char *pattern; /* "/v1/jobs/{id}" */
    HttpHandler handler;
    unsigned flags;
    const HttpBodyStream *body; /* NULL: the body is buffered as JSON */
} HttpRoute;

/* A listening socket made before the server starts (so that a daemon
 * finds its port taken before it touches anything else). */
typedef struct {
    int fd; /* -1: none */
    int port;
} HttpListener;

/* Binds bind:port (bind NULL: 127.0.0.1; port 0: any free one, then in
 * out->port) and listens: 0, or -1 with an error ("127.0.0.1:8080 is
 * already in use", a bad address). */
int http_listen(const char *bind, int port, HttpListener *out);
/* Closes a listener no server took (fd -1 is fine). */
void http_listener_close(HttpListener *l);

typedef struct {
    /* From http_listen, taken by http_server_start (its fd set to -1, also
     * when the start fails); NULL: the server binds bind:port itself. */
    HttpListener *listener;
    const char *bind;    /* numeric address, "127.0.0.1" (default) or "::1" */
    int port;            /* 0: any free port (see http_server_port) */
    int threads;         /* HTTP threads (default 4) */
    size_t json_max;     /* default HTTP_JSON_MAX_DEFAULT */
    int64_t upload_max;  /* default HTTP_UPLOAD_MAX_DEFAULT */
    /* 0 for each of these: its HTTP_*_DEFAULT */
    int max_connections;  /* at once, all clients */
    int max_per_ip;       /* at once, from one address */
    int header_timeout_s; /* a request's line and headers, from their first byte */
    int idle_timeout_s;   /* a connection on which no byte moves either way */
    /* PEM text of the certificate (chain) and its private key: HTTPS.
     * NULL: plain HTTP. */
    const char *tls_cert, *tls_key;
    const HttpRoute *routes;
    int num_routes;
    /* 1 when token names a user (filling *out), 0 when it does not, -1 on
     * an internal error (answered 503). Called from the HTTP threads. */
    int (*authenticate)(void *app, const char *token, HttpAuth *out);
    void *app; /* handed to handlers as http_app(req) */
} HttpConfig;

/* Starts listening; NULL with an error ("127.0.0.1:8080 is already in
 * use", a bad bind address, a certificate GnuTLS refuses). */
HttpServer *http_server_start(const HttpConfig *config);
/* Whether GnuTLS takes this certificate and key (PEM text): 0, or -1 with
 * its reason ("The certificate and the given key do not match."). */
int http_tls_check(const char *cert, const char *key);
int http_server_port(const HttpServer *s);
/* The certificate and key (PEM text) of the connections accepted from
 * now on, the open ones keeping theirs: 0, or -1 with the reason (GnuTLS
 * refuses them, the server speaks plain HTTP), the old ones still served. */
int http_server_replace_tls(HttpServer *s, const char *cert, const char *key);
/* Ends the streams (their clients see the end of the stream), stops
 * accepting, closes connections, frees. NULL is fine. */
void http_server_stop(HttpServer *s);

/* Counters for GET /metrics: calls fn once per (route, status) seen.
 * route is the pattern ("/v1/jobs/{id}"), or "unmatched". */
void http_server_foreach_count(HttpServer *s,
                               void (*fn)(void *ctx, const char *method, const char *route,
                                          int status, uint64_t count),
                               void *ctx);
/* Bytes received by streamed (upload) bodies so far. */
uint64_t http_server_upload_bytes(const HttpServer *s);

/* ---- the request ---- */

void *http_app(const HttpRequest *req);
HttpServer *http_server_of(const HttpRequest *req);
const char *http_path(const HttpRequest *req);
/* The i-th {name} segment of the route's pattern, "" past the last. */
const char *http_param(const HttpRequest *req, int i);
/* A query argument (decoded), or NULL. */
const char *http_query(const HttpRequest *req, const char *key);
/* A request header (case-insensitive), or NULL. */
const char *http_header(const HttpRequest *req, const char *name);
/* The token of "Authorization: Bearer <token>", or NULL without one. */
const char *http_bearer(const HttpRequest *req);
/* Whether the request's Content-Type is the media type `type` (case
 * aside; its parameters after ';' ignored): "multipart/form-data;
 * boundary=x" is "multipart/form-data", "multipart/form-dataxyz" is not. */
bool http_content_type_is(const HttpRequest *req, const char *type);
/* Whether Accept-Encoding lists gzip (or *) without q=0. */
bool http_accepts_gzip(const HttpRequest *req);
/* The buffered body, NUL-terminated ("" for none); len may be NULL. */
const char *http_body(const HttpRequest *req, size_t *len);
const HttpAuth *http_auth(const HttpRequest *req);
/* Per-request slot for a route's own state (uploads). */
void *http_state(const HttpRequest *req);
void http_set_state(HttpRequest *req, void *state);

/* Parses the buffered body as a JSON object: the object (a new reference),
 * or NULL after replying 400 "bad_json" (empty body, bad JSON with
 * jansson's line and column, not an object, nesting or a string past the
 * limits above, with their line and column). */
json_t *http_json_body(HttpRequest *req);

/* Query argument helpers: 0 and the value in *out (def when absent), or
 * -1 after replying 400 "bad_query" naming the argument. */
int http_query_int(HttpRequest *req, const char *key, int64_t def, int64_t min, int64_t max,
                   int64_t *out);
int http_query_bool(HttpRequest *req, const char *key, bool *out);

/* ---- replies (each returns 0 so handlers can `return http_reply...`) ---- */

/* Takes body's reference. */
int http_reply_json(HttpRequest *req, int status, json_t *body);
/* {"error": {"code", "message", "path"}}; path may be NULL (then the
 * request's path is used, so every error says where). */
int http_reply_error(HttpRequest *req, int status, const char *code, const char *path,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int http_reply_text(HttpRequest *req, int status, const char *content_type, const char *text,
                    size_t len);
/* Like http_reply_text for a malloc'd text it takes and frees (also on
 * failure): a large reply is sent without being copied. */
int http_reply_owned(HttpRequest *req, int status, const char *content_type, char *text,
                     size_t len);
/* Sends len bytes of a body someone else owns, without a copy:
 * release(cls) once the reply is sent or dropped (also on failure); NULL
 * when there is nothing to release (static bytes). */
int http_reply_shared(HttpRequest *req, int status, const char *content_type, const char *body,
                      size_t len, void (*release)(void *cls), void *cls);
/* Sends size bytes of fd from offset 0 and closes fd (also on failure). */
int http_reply_fd(HttpRequest *req, int status, const char *content_type, int fd,
                  uint64_t size);
/* Adds a header to the reply made by the last http_reply_* call. */
void http_reply_header(HttpRequest *req, const char *name, const char *value);

/* A stream's producer (HttpStreamFn, server/http_response.h) gives its
 * bytes piece by piece; 0 means "nothing yet": the connection waits
 * without a thread until the next tick (~200 ms). */
/* A chunked response of unknown length. free_ctx(ctx) runs when it is over
 * (also when the client went away); on failure too. */
int http_reply_stream(HttpRequest *req, int status, const char *content_type, HttpStreamFn fn,
                      void *ctx, void (*free_ctx)(void *ctx));

/* A reply made later, for a route whose work runs on another thread (a
 * handler must not block its thread): poll(req) runs on the connection's
 * thread at each tick (~200 ms), the connection waiting without a thread
 * meanwhile, and returns 0 (not yet) or 1 once it has replied with any
 * http_reply_*. A client that goes away first ends the request as usual
 * (the route's body finish sees it not completed), and poll is not
 * called again. */
typedef int (*HttpLaterFn)(HttpRequest *req);
int http_reply_later(HttpRequest *req, HttpLaterFn poll);

#endif
