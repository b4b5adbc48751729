/* http.c - libmicrohttpd behind a route table; see http.h.
 *
 * MHD calls on_request several times per request: once when the headers
 * are in (we match the route, check the token and the declared body size
 * there, so a 401 or 413 goes out before the body is read), once per piece
 * of the body (buffered, or handed to the route's stream callbacks), and
 * once more at the end, where the handler runs and its reply is queued.
 * Before all of these, on_target sees the request target as the client
 * sent it (MHD decodes it after), for the checks of server/http_head.h.
 * on_completed runs when the response is gone (or the client is): it calls
 * the route's finish, logs and frees the request (counted when its reply
 * was queued, or here as status 0 when it got none). on_connection keeps
 * each connection's header deadline (server/http_conn.h), which the ticker
 * enforces.
 *
 * Streams (SSE) use MHD's suspend/resume: a producer with nothing to say
 * returns 0, the reader suspends the connection and parks it on a list that
 * a ticker thread resumes, so a waiting client costs
 * no thread and no busy loop.
 */
#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "server/http_conn.h"
#include "server/http_head.h"
#include "server/json_limits.h"
#include "server/log.h"
#include "server/text_json.h"

#define HTTP_STATUS_SLOTS 24
#define HTTP_TICK_MS 200
/* Past this many bytes beyond the limit a refused body is no longer read
 * to its end: the connection is closed instead. */
#define HTTP_DISCARD_SLACK ((uint64_t)64 << 20)

typedef struct {
    int status;
    bool used; /* the slot holds status (its count may have gone back to 0) */
    uint64_t count;
} StatusCount;

typedef struct HttpStream HttpStream;

struct HttpServer {
    struct MHD_Daemon *daemon;
    HttpConfig cfg;
    int port;

    HttpConns *conns; /* the header deadlines */

    pthread_mutex_t count_lock;
    StatusCount (*counts)[HTTP_STATUS_SLOTS]; /* [num_routes + 1]: last is "unmatched" */
    atomic_uint_fast64_t upload_bytes;

    pthread_mutex_t stream_lock;
    pthread_cond_t tick_cond;
    HttpStream *waiting; /* suspended streams */
    bool stopping;
    bool ticker_started;
    pthread_t ticker;
};

struct HttpStream {
    HttpServer *server;
    struct MHD_Connection *conn;
    HttpStreamFn fn;
    void *ctx;
    void (*free_ctx)(void *ctx);
    bool waiting;
    HttpStream *next;
};

struct HttpRequest {
    HttpServer *server;
    struct MHD_Connection *conn;
    int route; /* index into cfg.routes, -1: none */
    char method[16];
    char *target; /* as the client sent it, before MHD decoded it; NULL: unknown */
    char *path;   /* decoded by MHD (cut short when the target is over HTTP_TARGET_MAX) */
    bool begun;   /* its head is in: on_request has seen it */
    char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX];
    int num_params;
    HttpAuth auth;

    bool has_body, body_begun, discard;
    int body_mode;
    uint64_t limit, received;
    char *body;
    size_t body_len, body_cap;

    struct MHD_Response *response; /* made, not yet queued */
    int status;
    bool queued, counted;
    void *state;
    struct timespec start;
};

/* ---- small helpers ---- */

static double elapsed_ms(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 + (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

static const HttpRoute *route_of(const HttpRequest *req) {
    return req->route >= 0 ? &req->server->cfg.routes[req->route] : NULL;
}

/* Matches a path as sent (raw: up to its '?', if any) against pattern,
 * copying {name} segments into params. Each segment is percent-decoded on
 * its own, so that an encoded '/' is data, not a separator: "alice%2Ftab"
 * is one {id}, and "/v1/jobs/1%2Fcancel" is no job's cancel. */
static bool pattern_match(const char *pattern, const char *raw, char (*params)[HTTP_PARAM_MAX],
                          int *num_params) {
    int np = 0;
    const char *p = pattern, *u = raw, *end = raw + strcspn(raw, "?");
    char seg[3 * HTTP_PARAM_MAX]; /* a longer raw segment decodes to too long a one */
    while (*p && u < end) {
        if (*p != '/' || *u != '/') return false;
        p++, u++;
        const char *pe = strchr(p, '/');
        size_t plen = pe ? (size_t)(pe - p) : strlen(p), rlen = strcspn(u, "/?");
        if (rlen >= sizeof seg) return false;
        memcpy(seg, u, rlen);
        seg[rlen] = '\0';
        size_t ulen = MHD_http_unescape(seg);
        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (ulen == 0 || ulen >= HTTP_PARAM_MAX || np >= HTTP_MAX_PARAMS) return false;
            memcpy(params[np], seg, ulen + 1);
            np++;
        } else if (plen != ulen || memcmp(p, seg, plen) != 0) {
            return false;
        }
        p += plen, u += rlen;
    }
    /* /v1/jobs/ is not /v1/jobs: a trailing slash is one more, empty, segment */
    if (*p || u < end) return false;
    *num_params = np;
    return true;
}

/* Adds delta (1, or -1 to take back a count) to (route, status). */
static void count_request(HttpServer *s, int route, int status, int delta) {
    int row = route >= 0 ? route : s->cfg.num_routes;
    pthread_mutex_lock(&s->count_lock);
    StatusCount *slots = s->counts[row];
    /* status's slot, else the first unused one; more distinct statuses
     * than slots: the last slot takes the rest */
    int i = 0;
    while (i < HTTP_STATUS_SLOTS - 1 && slots[i].used && slots[i].status != status) i++;
    if (!slots[i].used) slots[i] = (StatusCount){.status = status, .used = true};
    slots[i].count += (uint64_t)(int64_t)delta;
    pthread_mutex_unlock(&s->count_lock);
}

/* ---- the request accessors ---- */

void *http_app(const HttpRequest *req) { return req->server->cfg.app; }
HttpServer *http_server_of(const HttpRequest *req) { return req->server; }
const char *http_path(const HttpRequest *req) { return req->path; }
const HttpAuth *http_auth(const HttpRequest *req) { return &req->auth; }
void *http_state(const HttpRequest *req) { return req->state; }
void http_set_state(HttpRequest *req, void *state) { req->state = state; }
struct MHD_Connection *http_connection(const HttpRequest *req) { return req->conn; }

const char *http_param(const HttpRequest *req, int i) {
    return i >= 0 && i < req->num_params ? req->params[i] : "";
}

const char *http_query(const HttpRequest *req, const char *key) {
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_header(const HttpRequest *req, const char *name) {
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

bool http_content_type_is(const HttpRequest *req, const char *type) {
    const char *ct = http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t n = strlen(type);
    if (!ct || strncasecmp(ct, type, n) != 0) return false;
    ct += n;
    while (*ct == ' ' || *ct == '\t') ct++;
    return *ct == '\0' || *ct == ';';
}

bool http_accepts_gzip(const HttpRequest *req) {
    /* "gzip, deflate;q=0.5, *;q=0": gzip's own weight, else *'s (RFC 9110) */
    double gzip = -1, star = -1;
    const char *ae = http_header(req, "Accept-Encoding");
    for (const char *p = ae; p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t;,");
        const char *end = p + strcspn(p, ",");
        double weight = 1;
        for (const char *q = p + n; (q = memchr(q, ';', (size_t)(end - q))) != NULL;) {
            q++;
            q += strspn(q, " \t");
            if ((*q == 'q' || *q == 'Q') && q[1] == '=') weight = strtod(q + 2, NULL);
        }
        if (n == 4 && !strncasecmp(p, "gzip", 4)) gzip = weight;
        else if (n == 1 && *p == '*') star = weight;
        p = end;
    }
    return (gzip >= 0 ? gzip : star) > 0;
}

const char *http_body(const HttpRequest *req, size_t *len) {
    if (len) *len = req->body_len;
    return req->body ? req->body : "";
}

/* ---- replies ---- */

static int set_response(HttpRequest *req, int status, struct MHD_Response *r) {
    if (req->response) MHD_destroy_response(req->response);
    req->response = r;
    req->status = status;
    return 0;
}

/* The reply r with its Content-Type, or none (status 0: the connection is
 * dropped) when libmicrohttpd could not make it; the caller has freed what
 * r would have held. */
static int reply_with(HttpRequest *req, int status, const char *content_type,
                      struct MHD_Response *r) {
    if (!r) return set_response(req, 0, NULL);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return set_response(req, status, r);
}

static int reply_static(HttpRequest *req, int status, const char *content_type, const char *text,
                        size_t len) {
    return reply_with(req, status, content_type,
                      MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY));
}

int http_reply_text(HttpRequest *req, int status, const char *content_type, const char *text,
                    size_t len) {
    return reply_static(req, status, content_type, text, len);
}

int http_reply_owned(HttpRequest *req, int status, const char *content_type, char *text,
                     size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) free(text);
    return reply_with(req, status, content_type, r);
}

int http_reply_shared(HttpRequest *req, int status, const char *content_type, const char *body,
                      size_t len, void (*release)(void *cls), void *cls) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)body, release, cls);
    if (!r) release(cls);
    return reply_with(req, status, content_type, r);
}

int http_reply_json(HttpRequest *req, int status, json_t *body) {
    char *text = text_json_dumps(body, NULL);
    json_decref(body);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\",\"path\":\"\"}}";
        return reply_static(req, 500, "application/json", oom, sizeof oom - 1);
    }
    return http_reply_owned(req, status, "application/json", text, strlen(text));
}

int http_reply_error(HttpRequest *req, int status, const char *code, const char *path,
                     const char *fmt, ...) {
    char msg[ERROR_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *err = json_pack("{s:s, s:o, s:o}", "code", code, "message", log_string(msg), "path",
                            log_string(path ? path : req->path));
    json_t *body = err ? json_pack("{s:o}", "error", err) : NULL;
    http_reply_json(req, status, body);
    if (status == 401 && req->response)
        MHD_add_response_header(req->response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"traind\"");
    return 0;
}

int http_reply_fd(HttpRequest *req, int status, const char *content_type, int fd, uint64_t size) {
    struct MHD_Response *r = MHD_create_response_from_fd64(size, fd);
    if (!r) {
        close(fd);
        return http_reply_error(req, 500, "internal", NULL, "cannot create a file response");
    }
    return reply_with(req, status, content_type, r);
}

void http_reply_header(HttpRequest *req, const char *name, const char *value) {
    if (req->response) MHD_add_response_header(req->response, name, value);
}

json_t *http_json_body(HttpRequest *req) {
    if (req->body_len == 0) {
        http_reply_error(req, 400, "bad_json", "", "the request body is empty; expected a JSON "
                                                   "object");
        return NULL;
    }
    if (json_limits_check(req->body, req->body_len, HTTP_JSON_DEPTH_MAX, HTTP_JSON_STRING_MAX)) {
        http_reply_error(req, 400, "bad_json", "", "%s", error_get());
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        http_reply_error(req, 400, "bad_json", "", "malformed JSON: line %d, column %d: %s",
                         jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        static const char *const names[] = {"object", "array", "string", "integer",
                                            "real", "true", "false", "null"};
        http_reply_error(req, 400, "bad_json", "", "expected a JSON object, got %s",
                         names[json_typeof(j)]);
        json_decref(j);
        return NULL;
    }
    return j;
}

int http_query_int(HttpRequest *req, const char *key, int64_t def, int64_t min, int64_t max,
                   int64_t *out) {
    const char *v = http_query(req, key);
    char where[80];
    snprintf(where, sizeof where, "?%s", key);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno) {
        http_reply_error(req, 400, "bad_query", where, "%s: expected an integer, got '%.64s'", key,
                         v);
        return -1;
    }
    if (x < min || x > max) {
        http_reply_error(req, 400, "bad_query", where,
                         "%s: must be in [%" PRId64 ", %" PRId64 "], got %lld", key, min, max, x);
        return -1;
    }
    *out = x;
    return 0;
}

int http_query_bool(HttpRequest *req, const char *key, bool *out) {
    const char *v = http_query(req, key);
    *out = false;
    if (!v) return 0;
    if (!strcmp(v, "1") || !strcmp(v, "true") || !*v) {
        *out = true;
        return 0;
    }
    if (!strcmp(v, "0") || !strcmp(v, "false")) return 0;
    char where[80];
    snprintf(where, sizeof where, "?%s", key);
    http_reply_error(req, 400, "bad_query", where, "%s: expected 1, 0, true or false, got '%.64s'",
                     key, v);
    return -1;
}

/* ---- streams ---- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    HttpStream *st = cls;
    HttpServer *s = st->server;
    pthread_mutex_lock(&s->stream_lock);
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->stream_lock);
    if (stopping) return MHD_CONTENT_READER_END_OF_STREAM;
    ssize_t n = st->fn(st->ctx, buf, max);
    if (n > 0) return n;
    if (n == HTTP_STREAM_END) return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    /* nothing yet: park the connection until the next tick */
    pthread_mutex_lock(&s->stream_lock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->stream_lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    MHD_suspend_connection(st->conn);
    st->waiting = true;
    st->next = s->waiting;
    s->waiting = st;
    pthread_mutex_unlock(&s->stream_lock);
    return 0;
}

static void stream_free(void *cls) {
    HttpStream *st = cls;
    HttpServer *s = st->server;
    pthread_mutex_lock(&s->stream_lock);
    for (HttpStream **pp = &s->waiting; *pp; pp = &(*pp)->next)
        if (*pp == st) {
            *pp = st->next;
            break;
        }
    pthread_mutex_unlock(&s->stream_lock);
    if (st->free_ctx) st->free_ctx(st->ctx);
    free(st);
}

/* Resumes every parked stream; the caller holds stream_lock. */
static void resume_waiting(HttpServer *s) {
    while (s->waiting) {
        HttpStream *st = s->waiting;
        s->waiting = st->next;
        st->next = NULL;
        st->waiting = false;
        MHD_resume_connection(st->conn);
    }
}

/* Each tick: the waiting streams retried, the late request heads cut. */
static void *ticker_main(void *arg) {
    HttpServer *s = arg;
    pthread_mutex_lock(&s->stream_lock);
    while (!s->stopping) {
        struct timespec until;
        clock_deadline_in(&until, HTTP_TICK_MS);
        pthread_cond_timedwait(&s->tick_cond, &s->stream_lock, &until);
        resume_waiting(s);
        pthread_mutex_unlock(&s->stream_lock);
        int cut = http_conns_sweep(s->conns);
        if (cut)
            log_message("http", "closed %d connection(s) whose request line and headers took "
                        "over %d s", cut, s->cfg.header_timeout_s);
        pthread_mutex_lock(&s->stream_lock);
    }
    pthread_mutex_unlock(&s->stream_lock);
    return NULL;
}

int http_reply_stream(HttpRequest *req, int status, const char *content_type, HttpStreamFn fn,
                      void *ctx, void (*free_ctx)(void *ctx)) {
    HttpStream *st = calloc(1, sizeof *st);
    if (!st) {
        if (free_ctx) free_ctx(ctx);
        return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    }
    *st = (HttpStream){.server = req->server, .conn = req->conn, .fn = fn, .ctx = ctx,
                       .free_ctx = free_ctx};
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st,
                                          stream_free);
    if (!r) {
        stream_free(st);
        return http_reply_error(req, 503, "unavailable", NULL, "cannot create a stream");
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    return set_response(req, status, r);
}

/* ---- MHD callbacks ---- */

/* The deadline record of conn (server/http_conn.h), NULL when none. */
static HttpConn *conn_deadline(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

/* A request, from MHD's URI callback (target: as sent) or, failing that,
 * from the first on_request (target NULL). */
static HttpRequest *request_new(HttpServer *s, struct MHD_Connection *conn, const char *target) {
    HttpRequest *req = calloc(1, sizeof *req);
    if (!req) return NULL;
    req->server = s;
    req->conn = conn;
    req->route = -1;
    if (target && !(req->target = strdup(target))) {
        free(req);
        return NULL;
    }
    return req;
}

static void request_free(HttpRequest *req) {
    if (req->response) MHD_destroy_response(req->response);
    free(req->body);
    free(req->path);
    free(req->target);
    free(req);
}

/* MHD_OPTION_URI_LOG_CALLBACK: the request line is in; MHD is about to
 * decode the target, so this is where it is seen as sent. */
static void *on_target(void *cls, const char *target, struct MHD_Connection *conn) {
    return request_new(cls, conn, target);
}

/* The head is in: method and path (a target over the limit keeps only a
 * prefix of its path, for the log and the 414). -1 when out of memory. */
static int request_head(HttpRequest *req, const char *url, const char *method) {
    snprintf(req->method, sizeof req->method, "%s", method);
    size_t len = req->target ? strlen(req->target) : strlen(url);
    req->path = len > HTTP_TARGET_MAX ? strndup(url, 64) : strdup(url);
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    req->begun = true;
    http_conn_busy(req->server->conns, conn_deadline(req->conn));
    return req->path ? 0 : -1;
}

/* The route matching the path and method: its index; -1 when none, with
 * *path_known telling whether another method has the path. */
static int route_find(HttpRequest *req, bool *path_known) {
    const HttpConfig *c = &req->server->cfg;
    *path_known = false;
    for (int i = 0; i < c->num_routes; i++) {
        int np = 0;
        char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX];
        if (!pattern_match(c->routes[i].pattern, req->target ? req->target : req->path, params,
                           &np))
            continue;
        *path_known = true;
        if (strcmp(c->routes[i].method, req->method) != 0) continue;
        req->num_params = np;
        memcpy(req->params, params, sizeof params);
        return i;
    }
    return -1;
}

/* Bearer-token auth for a route not marked public: 0 when it may go on,
 * -1 after replying 401, 403 or 503. */
static int authorize(HttpRequest *req, const HttpRoute *route) {
    const HttpConfig *c = &req->server->cfg;
    if (route->flags & HTTP_ROUTE_PUBLIC) return 0;
    const char *h = http_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || !*h) {
        http_reply_error(req, 401, "unauthorized", NULL,
                         "missing token: send 'Authorization: Bearer <token>'");
        return -1;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        http_reply_error(req, 401, "unauthorized", NULL,
                         "the Authorization header must be 'Bearer <token>'");
        return -1;
    }
    const char *token = h + 7;
    while (*token == ' ') token++;
    int ok = c->authenticate ? c->authenticate(c->app, token, &req->auth) : 0;
    if (ok < 0) {
        http_reply_error(req, 503, "unavailable", NULL, "cannot check the token: %s", error_get());
        return -1;
    }
    if (ok == 0) {
        http_reply_error(req, 401, "unauthorized", NULL, "invalid token");
        return -1;
    }
    if (req->auth.scrape) {
        if (route->flags & HTTP_ROUTE_SCRAPE) return 0;
        http_reply_error(req, 401, "unauthorized", NULL,
                         "this is the metrics scrape token: it opens GET /metrics only");
        return -1;
    }
    if ((route->flags & HTTP_ROUTE_ADMIN) && !req->auth.admin) {
        http_reply_error(req, 403, "forbidden", NULL, "%s %s needs an admin token", req->method,
                         route->pattern);
        return -1;
    }
    return 0;
}

static void reply_too_large(HttpRequest *req, uint64_t declared, uint64_t limit) {
    http_reply_error(req, 413, "too_large", NULL,
                     "the body of %" PRIu64 " bytes is over the limit of %" PRIu64 " bytes",
                     declared, limit);
}

/* The head's checks, route, auth, declared size and the route's body
 * mode. Leaves an error reply in req->response when the request is
 * refused. */
static void request_begin(HttpRequest *req) {
    const HttpConfig *c = &req->server->cfg;
    const char *cl = http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = http_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    uint64_t declared = cl ? strtoull(cl, NULL, 10) : 0;
    req->has_body = declared > 0 || te != NULL;
    HttpHeadError e;
    http_head_check(req->conn, req->target, &e);
    if (e.status) {
        /* a path the check names (the path as sent, or a prefix of a long
         * one) is the request's path from here on, in the log too */
        char *named = e.path[0] == '/' ? strdup(e.path) : NULL;
        if (named) {
            free(req->path);
            req->path = named;
        }
        http_reply_error(req, e.status, e.code, e.path[0] ? e.path : NULL, "%s", e.message);
        if (e.close) http_reply_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        return;
    }
    bool path_known;
    req->route = route_find(req, &path_known);
    if (req->route < 0) {
        /* the path as routed: as sent, %2F and all */
        const char *sent = req->target ? req->target : req->path;
        int n = (int)strcspn(sent, "?");
        if (path_known)
            http_reply_error(req, 405, "method_not_allowed", NULL, "%s is not allowed on %.*s",
                             req->method, n, sent);
        else
            http_reply_error(req, 404, "not_found", NULL, "no route %s %.*s", req->method, n,
                             sent);
        return;
    }
    const HttpRoute *route = route_of(req);
    if (authorize(req, route) != 0) return;
    uint64_t json_max = c->json_max, upload_max = (uint64_t)c->upload_max;
    uint64_t most = route->body ? (upload_max > json_max ? upload_max : json_max) : json_max;
    if (declared > most) {
        reply_too_large(req, declared, most);
        return;
    }
    req->body_mode = HTTP_BODY_BUFFER;
    if (route->body && route->body->begin) {
        req->body_begun = true;
        int mode = route->body->begin(req);
        if (mode < 0) {
            if (!req->response)
                http_reply_error(req, 500, "internal", NULL, "the route refused the request");
            return;
        }
        req->body_mode = mode;
    }
    req->limit = req->body_mode == HTTP_BODY_STREAM ? upload_max : json_max;
    if (declared > req->limit) reply_too_large(req, declared, req->limit);
}

/* Queues the reply, counted first: a client that has its reply finds it
 * in the counters. */
static enum MHD_Result queue_reply(HttpRequest *req) {
    if (!req->response) {
        /* out of memory making the reply: answer with a static one */
        static const char oom[] =
            "{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\",\"path\":\"\"}}";
        struct MHD_Response *r = MHD_create_response_from_buffer(
            sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        req->response = r;
        req->status = 503;
    }
    count_request(req->server, req->route, req->status, 1);
    enum MHD_Result ok = MHD_queue_response(req->conn, (unsigned)req->status, req->response);
    if (ok == MHD_YES)
        req->counted = true;
    else /* never sent: on_completed counts it as no reply */
        count_request(req->server, req->route, req->status, -1);
    MHD_destroy_response(req->response);
    req->response = NULL;
    req->queued = true;
    return ok;
}

/* A piece of the body: buffered, streamed to the route, or dropped after
 * an error. MHD_NO closes the connection. */
static enum MHD_Result request_data(HttpRequest *req, const char *data, size_t n) {
    req->received += n;
    if (req->response || req->discard) {
        /* a refused body: read to its end unless it goes on and on */
        return req->received > req->limit + HTTP_DISCARD_SLACK ? MHD_NO : MHD_YES;
    }
    if (req->received > req->limit) {
        http_reply_error(req, 413, "too_large", NULL,
                         "the body is over the limit of %" PRIu64 " bytes", req->limit);
        return MHD_YES;
    }
    if (req->body_mode == HTTP_BODY_STREAM) {
        atomic_fetch_add(&req->server->upload_bytes, n);
        if (route_of(req)->body->data(req, data, n) != 0 && !req->response)
            http_reply_error(req, 500, "internal", NULL, "the upload failed");
        return MHD_YES;
    }
    if (req->body_len + n + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 4096;
        while (cap < req->body_len + n + 1) cap *= 2;
        char *grown = realloc(req->body, cap);
        if (!grown) {
            req->discard = true;
            http_reply_error(req, 503, "unavailable", NULL, "out of memory reading the body");
            return MHD_YES;
        }
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    HttpRequest *req = *con_cls;
    if (!req) { /* on_target ran out of memory */
        req = *con_cls = request_new(cls, conn, NULL);
        if (!req) return MHD_NO;
    }
    if (!req->begun) {
        if (request_head(req, url, method) != 0) return MHD_NO;
        request_begin(req);
        /* refused with a body on its way: answer now, the body is dropped */
        if (req->response && req->has_body) return queue_reply(req);
        return MHD_YES;
    }
    if (req->queued) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return request_data(req, upload_data, n);
    }
    /* the whole request is in */
    if (!req->response) {
        const HttpRoute *route = route_of(req);
        error_clear();
        route->handler(req);
        if (!req->response)
            http_reply_error(req, 500, "internal", NULL, "%s",
                             *error_get() ? error_get() : "the handler gave no reply");
    }
    return queue_reply(req);
}

static void log_request(const HttpRequest *req, int status, bool completed,
                        enum MHD_RequestTerminationCode toe) {
    json_t *o = json_object();
    if (!o) return;
    json_object_set_new(o, "method", log_string(req->method));
    json_object_set_new(o, "path", log_string(req->path));
    json_object_set_new(o, "status", json_integer(status));
    json_object_set_new(o, "ms", json_real(round(elapsed_ms(&req->start) * 1000) / 1000));
    if (req->received) json_object_set_new(o, "bytes_in", json_integer((json_int_t)req->received));
    if (req->auth.name[0]) json_object_set_new(o, "user", log_string(req->auth.name));
    if (!completed) {
        static const char *const why[] = {"completed", "error", "timeout",
                                          "shutdown", "read_error", "client_abort"};
        json_object_set_new(o, "terminated", json_string((unsigned)toe < 6 ? why[toe] : "other"));
    }
    log_json("request", o);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    HttpServer *s = cls;
    HttpRequest *req = *con_cls;
    /* the connection waits for its next request */
    http_conn_idle(s->conns, conn_deadline(conn));
    if (!req) return;
    *con_cls = NULL;
    bool completed = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && req->queued;
    const HttpRoute *route = route_of(req);
    if (req->body_begun && route->body->finish) route->body->finish(req, completed);
    int status = req->counted ? req->status : 0;
    /* a request that ended without a reply sent (its head never came
     * whole, the client left, MHD refused it) is counted here, as status 0 */
    if (!req->counted) count_request(s, req->route, 0, 1);
    if (log_requests_enabled() && req->begun) log_request(req, status, completed, toe);
    request_free(req);
}

/* MHD_OPTION_NOTIFY_CONNECTION: a connection's deadline record, made when
 * it is accepted and dropped when it closes. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    HttpServer *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = fd ? http_conn_open(s->conns, fd->connect_fd) : NULL;
    } else {
        http_conn_close(s->conns, *socket_context);
        *socket_context = NULL;
    }
}

static char last_mhd_error[512];

/* MHD says something for each connection a client drops or we cut: a
 * flood of clients must not become a flood of log lines. At most
 * HTTP_MHD_LOG_PER_S of its lines a second; the rest are counted and the
 * count logged in the next second that logs. */
#define HTTP_MHD_LOG_PER_S 10

static bool mhd_log_allowed(int *dropped) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static time_t second;
    static int logged, skipped;
    time_t now = time(NULL);
    pthread_mutex_lock(&lock);
    if (now != second) {
        second = now;
        logged = 0;
    }
    bool ok = logged < HTTP_MHD_LOG_PER_S;
    *dropped = 0;
    if (ok) {
        logged++;
        *dropped = skipped;
        skipped = 0;
    } else {
        skipped++;
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

/* MHD's messages: the first since last_mhd_error was cleared kept for an
 * error that follows (the cause; later ones say what failed with it), and
 * logged when cls is the server (not for http_tls_check's trial). */
static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
    if (!last_mhd_error[0]) snprintf(last_mhd_error, sizeof last_mhd_error, "%s", msg);
    int dropped;
    if (!cls || !mhd_log_allowed(&dropped)) return;
    if (dropped) log_message("http", "(%d more libmicrohttpd messages not logged)", dropped);
    log_message("http", "%s", msg);
}

/* ---- start and stop ---- */

int http_tls_check(const char *cert, const char *key) {
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return error_set("this libmicrohttpd was built without TLS (GnuTLS)");
    last_mhd_error[0] = '\0';
    /* a daemon without a socket or a thread: MHD loads the pair and stops */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_NO_LISTEN_SOCKET | MHD_USE_TLS | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request,
        NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL, MHD_OPTION_HTTPS_MEM_CERT, cert,
        MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_END);
    if (!d) return error_set("%s", last_mhd_error[0] ? last_mhd_error : "TLS setup failed");
    MHD_stop_daemon(d);
    return 0;
}

/* address:port as a socket address; -1 with an error. */
static int bind_address(const char *address, int port, struct sockaddr_storage *addr,
                        socklen_t *len) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
    memset(addr, 0, sizeof *addr);
    if (port < 0 || port > 65535) return error_set("--port: %d is not a port (0..65535)", port);
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
        return 0;
    }
    return error_set("--bind: '%s' is not a numeric IPv4 or IPv6 address", address);
}

/* SO_REUSEADDR only lets a restarted daemon bind while its old connections
 * linger in TIME_WAIT; two listeners never share the port (as
 * MHD_OPTION_LISTENING_ADDRESS_REUSE's SO_REUSEPORT let them, the kernel
 * then spreading the connections over both daemons). */
int http_listen(const char *address, int port, HttpListener *out) {
    *out = (HttpListener){.fd = -1};
    struct sockaddr_storage addr;
    socklen_t len;
    if (!address) address = "127.0.0.1";
    if (bind_address(address, port, &addr, &len) != 0) return -1;
    char where[96];
    snprintf(where, sizeof where, addr.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", address,
             port);
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return error_set("http: cannot make a socket for %s: %s", where, strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, len) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE) return error_set("%s is already in use", where);
        return error_set("http: cannot listen on %s: %s", where, strerror(e));
    }
    if (listen(fd, SOMAXCONN) != 0 || getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        int e = errno;
        close(fd);
        return error_set("http: cannot listen on %s: %s", where, strerror(e));
    }
    out->fd = fd;
    out->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                 : ((struct sockaddr_in *)&addr)->sin_port);
    return 0;
}

void http_listener_close(HttpListener *l) {
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}

/* The configuration's zeros replaced by the defaults. */
static void config_defaults(HttpConfig *c) {
    if (c->threads <= 0) c->threads = 4;
    if (c->json_max == 0) c->json_max = HTTP_JSON_MAX_DEFAULT;
    if (c->upload_max <= 0) c->upload_max = HTTP_UPLOAD_MAX_DEFAULT;
    if (c->max_connections <= 0) c->max_connections = HTTP_MAX_CONNECTIONS_DEFAULT;
    if (c->max_per_ip <= 0) c->max_per_ip = HTTP_MAX_PER_IP_DEFAULT;
    if (c->header_timeout_s <= 0) c->header_timeout_s = HTTP_HEADER_TIMEOUT_DEFAULT;
    if (c->idle_timeout_s <= 0) c->idle_timeout_s = HTTP_IDLE_TIMEOUT_DEFAULT;
}

/* MHD on the listening socket fd (which MHD owns from here on, also when
 * it fails). */
static struct MHD_Daemon *start_mhd(HttpServer *s, int fd) {
    const HttpConfig *c = &s->cfg;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (c->tls_cert ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls[] = {
        {c->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)c->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)c->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    last_mhd_error[0] = '\0';
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        /* the logger first, or MHD prints the other options' errors itself */
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->threads, MHD_OPTION_URI_LOG_CALLBACK, on_target,
        s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->idle_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->max_per_ip,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY, MHD_OPTION_ARRAY, tls,
        MHD_OPTION_END);
}

static void server_free(HttpServer *s) {
    pthread_mutex_destroy(&s->count_lock);
    pthread_mutex_destroy(&s->stream_lock);
    pthread_cond_destroy(&s->tick_cond);
    http_conns_free(s->conns);
    free(s->counts);
    free(s);
}

HttpServer *http_server_start(const HttpConfig *config) {
    HttpServer *s = calloc(1, sizeof *s);
    if (!s) {
        error_set("http: out of memory");
        return NULL;
    }
    s->cfg = *config;
    config_defaults(&s->cfg);
    pthread_mutex_init(&s->count_lock, NULL);
    pthread_mutex_init(&s->stream_lock, NULL);
    pthread_cond_init(&s->tick_cond, NULL);
    s->counts = calloc((size_t)s->cfg.num_routes + 1, sizeof *s->counts);
    s->conns = http_conns_new(s->cfg.header_timeout_s);
    if (!s->counts || !s->conns) {
        server_free(s);
        error_set("http: out of memory");
        return NULL;
    }
    HttpListener own;
    if (config->listener) {
        own = *config->listener;
        *config->listener = (HttpListener){.fd = -1}; /* MHD's now */
    } else if (http_listen(config->bind, config->port, &own) != 0) {
        server_free(s);
        return NULL;
    }
    s->port = own.port;
    s->daemon = start_mhd(s, own.fd);
    if (!s->daemon) {
        error_set("http: cannot serve on port %d%s%s", s->port, last_mhd_error[0] ? ": " : "",
                  last_mhd_error);
        server_free(s);
        return NULL;
    }
    if (pthread_create(&s->ticker, NULL, ticker_main, s) != 0) {
        error_set("http: cannot start the stream ticker");
        MHD_stop_daemon(s->daemon);
        server_free(s);
        return NULL;
    }
    s->ticker_started = true;
    return s;
}

int http_server_port(const HttpServer *s) { return s->port; }

void http_server_stop(HttpServer *s) {
    if (!s) return;
    /* streams end first (MHD must not be stopped with suspended
     * connections), then the daemon closes whatever is left */
    pthread_mutex_lock(&s->stream_lock);
    s->stopping = true;
    resume_waiting(s);
    pthread_cond_broadcast(&s->tick_cond);
    pthread_mutex_unlock(&s->stream_lock);
    if (s->ticker_started) pthread_join(s->ticker, NULL);
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    /* give resumed streams a moment to send their end */
    for (int i = 0; i < 20; i++) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!info || info->num_connections == 0) break;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->daemon);
    server_free(s);
}

void http_server_foreach_count(HttpServer *s,
                               void (*fn)(void *ctx, const char *method, const char *route,
                                          int status, uint64_t count),
                               void *ctx) {
    int rows = s->cfg.num_routes + 1;
    /* copy under the lock, call outside it */
    StatusCount(*copy)[HTTP_STATUS_SLOTS] = malloc((size_t)rows * sizeof *copy);
    if (!copy) return;
    pthread_mutex_lock(&s->count_lock);
    memcpy(copy, s->counts, (size_t)rows * sizeof *copy);
    pthread_mutex_unlock(&s->count_lock);
    for (int r = 0; r < rows; r++) {
        const char *method = r < s->cfg.num_routes ? s->cfg.routes[r].method : "";
        const char *route = r < s->cfg.num_routes ? s->cfg.routes[r].pattern : "unmatched";
        for (int i = 0; i < HTTP_STATUS_SLOTS; i++)
            if (copy[r][i].count) fn(ctx, method, route, copy[r][i].status, copy[r][i].count);
    }
    free(copy);
}

uint64_t http_server_upload_bytes(const HttpServer *s) {
    return atomic_load(&((HttpServer *)s)->upload_bytes);
}
