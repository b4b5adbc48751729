/* http.c - the route table behind the server's connections; see http.h.
 *
 * server/http_loop.c accepts connections and server/http_conn.c reads
 * their requests; they call the events here: ev_head when a request's head
 * is in (we match the route, check the token and the declared body size
 * there, so a 401 or 413 goes out before the body is read), ev_body per
 * piece of the body (buffered, or handed to the route's stream
 * callbacks), ev_end at its end, where the handler runs and its reply is
 * made, and ev_done when the response is gone (or the client is): it calls
 * the route's finish, logs and frees the request (counted when its reply
 * was made, or here as status 0 when it got none).
 */
#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
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
#include "core/json_text.h"
#include "server/addr_policy.h"
#include "server/http_conn.h"
#include "server/http_loop.h"
#include "server/http_parse.h"
#include "server/http_response.h"
#include "server/http_tls.h"
#include "server/json_limits.h"
#include "server/log.h"
#include "server/text_json.h"

#define HTTP_STATUS_SLOTS 24

typedef struct {
    int status;
    uint64_t count;
} StatusCount;

struct HttpServer {
    HttpLoop *loop;
    HttpTlsCreds *tls;
    HttpConfig cfg;
    int port;

    pthread_mutex_t count_lock;
    StatusCount (*counts)[HTTP_STATUS_SLOTS]; /* [num_routes + 1]: last is "unmatched" */
    atomic_uint_fast64_t upload_bytes;
};

struct HttpRequest {
    HttpServer *server;
    HttpHead head; /* as parsed (empty when it was refused unparsed) */
    int route;     /* index into cfg.routes, -1: none */
    char method[16];
    char *path; /* decoded (cut short when the target is over HTTP_TARGET_MAX) */
    char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX];
    int num_params;
    HttpAuth auth;

    bool body_begun;
    int body_mode;
    uint64_t limit, received;
    char *body;
    size_t body_len, body_cap;

    HttpResponse *response; /* made, not yet handed to the connection */
    bool replied;           /* a reply was made, or tried (response NULL: out of memory) */
    HttpLaterFn later;      /* http_reply_later's, NULL for none */
    int status;
    bool counted; /* its reply was handed to the connection, and counted */
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
        size_t ulen = http_unescape(seg);
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

/* Counts one request of (route, status). */
static void count_request(HttpServer *s, int route, int status) {
    int row = route >= 0 ? route : s->cfg.num_routes;
    pthread_mutex_lock(&s->count_lock);
    StatusCount *slots = s->counts[row];
    /* status's slot, else the first unused one; more distinct statuses
     * than slots: the last slot takes the rest */
    int i = 0;
    while (i < HTTP_STATUS_SLOTS - 1 && slots[i].count && slots[i].status != status) i++;
    if (!slots[i].count) slots[i].status = status;
    slots[i].count++;
    pthread_mutex_unlock(&s->count_lock);
}

/* ---- the request accessors ---- */

void *http_app(const HttpRequest *req) { return req->server->cfg.app; }
HttpServer *http_server_of(const HttpRequest *req) { return req->server; }
const char *http_path(const HttpRequest *req) { return req->path; }
const HttpAuth *http_auth(const HttpRequest *req) { return &req->auth; }
void *http_state(const HttpRequest *req) { return req->state; }
void http_set_state(HttpRequest *req, void *state) { req->state = state; }

const char *http_param(const HttpRequest *req, int i) {
    return i >= 0 && i < req->num_params ? req->params[i] : "";
}

const char *http_query(const HttpRequest *req, const char *key) {
    return http_head_arg(&req->head, key);
}

const char *http_header(const HttpRequest *req, const char *name) {
    return http_head_field(&req->head, name);
}

bool http_content_type_is(const HttpRequest *req, const char *type) {
    const char *ct = http_header(req, "Content-Type");
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

/* A reply that could not be made (r NULL) still counts as one: the request
 * is answered (reply_take's static 503), never handed on as if unrefused. */
static int set_response(HttpRequest *req, int status, HttpResponse *r) {
    http_response_free(req->response);
    req->response = r;
    req->replied = true;
    req->status = status;
    return 0;
}

/* The reply r with its Content-Type, or none (status 0) when it could not
 * be made, which reply_take answers with its static 503; r's maker released
 * what it held. Every reply is a user's private data or the dashboard (a
 * few kB, embedded): kept by no cache, read as its type says and no other. */
static int reply_with(HttpRequest *req, int status, const char *content_type, HttpResponse *r) {
    if (!r || http_response_add(r, "Content-Type", content_type) != 0 ||
        http_response_add(r, "Cache-Control", "no-store") != 0 ||
        http_response_add(r, "X-Content-Type-Options", "nosniff") != 0) {
        http_response_free(r);
        return set_response(req, 0, NULL);
    }
    return set_response(req, status, r);
}

int http_reply_text(HttpRequest *req, int status, const char *content_type, const char *text,
                    size_t len) {
    return reply_with(req, status, content_type, http_response_copy(status, text, len));
}

int http_reply_owned(HttpRequest *req, int status, const char *content_type, char *text,
                     size_t len) {
    return reply_with(req, status, content_type,
                      http_response_bytes(status, text, len, free, text));
}

int http_reply_shared(HttpRequest *req, int status, const char *content_type, const char *body,
                      size_t len, void (*release)(void *cls), void *cls) {
    return reply_with(req, status, content_type,
                      http_response_bytes(status, body, len, release, cls));
}

int http_reply_json(HttpRequest *req, int status, json_t *body) {
    char *text = text_json_dumps(body, NULL);
    json_decref(body);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\",\"path\":\"\"}}";
        return reply_with(req, 500, "application/json",
                          http_response_bytes(500, oom, sizeof oom - 1, NULL, NULL));
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
    json_t *err = json_pack("{s:s, s:o, s:o}", "code", code, "message", json_text(msg), "path",
                            json_text(path ? path : req->path));
    json_t *body = err ? json_pack("{s:o}", "error", err) : NULL;
    http_reply_json(req, status, body);
    if (status == 401 && req->response)
        http_response_add(req->response, "WWW-Authenticate", "Bearer realm=\"traind\"");
    return 0;
}

int http_reply_fd(HttpRequest *req, int status, const char *content_type, int fd, uint64_t size) {
    HttpResponse *r = http_response_fd(status, fd, size);
    if (!r) return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    return reply_with(req, status, content_type, r);
}

void http_reply_header(HttpRequest *req, const char *name, const char *value) {
    if (req->response) http_response_add(req->response, name, value);
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

int http_reply_stream(HttpRequest *req, int status, const char *content_type, HttpStreamFn fn,
                      void *ctx, void (*free_ctx)(void *ctx)) {
    HttpResponse *r = http_response_stream(status, fn, ctx, free_ctx);
    if (!r) return http_reply_error(req, 503, "unavailable", NULL, "cannot create a stream");
    /* no-cache, as event streams have it: marked no-store, the log stream
     * of an ended job was seen aborted (net::ERR_ABORTED) by Chromium as
     * the dashboard changed view (3 runs of 4 of test_dashboard) */
    if (http_response_add(r, "Content-Type", content_type) != 0 ||
        http_response_add(r, "Cache-Control", "no-cache") != 0 ||
        http_response_add(r, "X-Content-Type-Options", "nosniff") != 0 ||
        http_response_add(r, "X-Accel-Buffering", "no") != 0) {
        http_response_free(r);
        return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    }
    return set_response(req, status, r);
}

/* ---- replies made later ---- */

static HttpResponse *reply_take(HttpRequest *req);

/* The connection's question, each tick: the route's reply, once made. */
static HttpResponse *later_made(void *ctx) {
    HttpRequest *req = ctx;
    error_clear();
    if (!req->later(req)) return NULL;
    if (!req->replied)
        http_reply_error(req, 500, "internal", NULL, "%s",
                         *error_get() ? error_get() : "the handler gave no reply");
    return reply_take(req);
}

int http_reply_later(HttpRequest *req, HttpLaterFn poll) {
    HttpResponse *r = http_response_later(later_made, req);
    if (!r) return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    req->later = poll;
    return set_response(req, 0, r);
}

/* ---- the events ---- */

static void request_free(HttpRequest *req) {
    http_response_free(req->response);
    http_head_free(&req->head);
    free(req->body);
    free(req->path);
    free(req);
}

/* The route matching the path and method (HEAD as GET: the connection
 * sends its reply without the body): its index; -1 when none, with the
 * methods the path does take in allow ("" when no route has the path). */
static int route_find(HttpRequest *req, char *allow, size_t allow_size) {
    const HttpConfig *c = &req->server->cfg;
    bool head = !strcmp(req->method, "HEAD");
    allow[0] = '\0';
    for (int i = 0; i < c->num_routes; i++) {
        int np = 0;
        char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX];
        if (!pattern_match(c->routes[i].pattern, req->head.target, params, &np))
            continue;
        const char *method = c->routes[i].method;
        bool get = !strcmp(method, "GET");
        if (!strcmp(method, req->method) || (head && get)) {
            req->num_params = np;
            memcpy(req->params, params, sizeof params);
            return i;
        }
        size_t len = strlen(allow);
        snprintf(allow + len, allow_size - len, "%s%s%s", len ? ", " : "", method,
                 get ? ", HEAD" : "");
    }
    return -1;
}

/* Bearer-token auth for a route not marked public: 0 when it may go on,
 * -1 after replying 401, 403 or 503. */
const char *http_bearer(const HttpRequest *req) {
    const char *h = http_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
    h += 7;
    while (*h == ' ') h++;
    return h;
}

static int authorize(HttpRequest *req, const HttpRoute *route) {
    const HttpConfig *c = &req->server->cfg;
    if (route->flags & (HTTP_ROUTE_PUBLIC | HTTP_ROUTE_OWN_AUTH)) return 0;
    const char *h = http_header(req, "Authorization");
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
    const char *token = http_bearer(req);
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

/* 413 for a body over limit: from its Content-Length (declared), or, 0,
 * as its bytes came past the limit. */
static void reply_too_large(HttpRequest *req, uint64_t declared, uint64_t limit) {
    if (limit == 0 && declared)
        http_reply_error(req, 413, "too_large", NULL,
                         "%s takes no body (Content-Length: %" PRIu64 ")", req->method, declared);
    else if (limit == 0)
        http_reply_error(req, 413, "too_large", NULL, "%s takes no body", req->method);
    else if (declared)
        http_reply_error(req, 413, "too_large", NULL,
                         "the body of %" PRIu64 " bytes is over the limit of %" PRIu64 " bytes",
                         declared, limit);
    else
        http_reply_error(req, 413, "too_large", NULL,
                         "the body is over the limit of %" PRIu64 " bytes", limit);
}

/* The route, auth, declared size and the route's body mode of a head
 * that parsed. Leaves an error reply in req->response when the request is
 * refused. */
static void request_begin(HttpRequest *req) {
    const HttpConfig *c = &req->server->cfg;
    uint64_t declared = req->head.has_length ? req->head.content_length : 0;
    char allow[96];
    req->route = route_find(req, allow, sizeof allow);
    if (req->route < 0) {
        /* the path as routed: as sent, %2F and all */
        const char *sent = req->head.target;
        int n = (int)strcspn(sent, "?");
        if (allow[0]) {
            http_reply_error(req, 405, "method_not_allowed", NULL, "%s is not allowed on %.*s "
                             "(%s are)", req->method, n, sent, allow);
            http_reply_header(req, "Allow", allow);
        } else
            http_reply_error(req, 404, "not_found", NULL, "no route %s %.*s", req->method, n,
                             sent);
        return;
    }
    const HttpRoute *route = route_of(req);
    if (authorize(req, route) != 0) return;
    uint64_t json_max = c->json_max, upload_max = (uint64_t)c->upload_max;
    uint64_t most = route->body ? (upload_max > json_max ? upload_max : json_max) : json_max;
    /* GET and HEAD take no body: none is held for them (a public route's,
     * from anyone, for as long as its bytes take to come) */
    if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD")) json_max = most = 0;
    if (declared > most) {
        reply_too_large(req, declared, most);
        return;
    }
    req->body_mode = HTTP_BODY_BUFFER;
    if (route->body && route->body->begin) {
        req->body_begun = true;
        int mode = route->body->begin(req);
        if (mode < 0) {
            if (!req->replied)
                http_reply_error(req, 500, "internal", NULL, "the route refused the request");
            return;
        }
        req->body_mode = mode;
    }
    req->limit = req->body_mode == HTTP_BODY_STREAM ? upload_max : json_max;
    if (declared > req->limit) reply_too_large(req, declared, req->limit);
}

/* A head the parser refused: its error, as the API's JSON. A path the
 * error names (the path as sent, or a prefix of a long one) is the
 * request's path from here on, in the log too. */
static void request_refused(HttpRequest *req, const HttpHeadError *e) {
    char *named = e->path[0] == '/' ? strdup(e->path) : NULL;
    if (named) {
        free(req->path);
        req->path = named;
    }
    http_reply_error(req, e->status, e->code, e->path[0] ? e->path : NULL, "%s", e->message);
}

/* The reply, handed to the connection, counted first: a client that has
 * its reply finds it in the counters. NULL (the connection is closed)
 * when not even the static reply could be made. */
static HttpResponse *reply_take(HttpRequest *req) {
    if (!req->response) {
        /* out of memory making the reply: answer with a static one */
        static const char oom[] =
            "{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\",\"path\":\"\"}}";
        req->response = http_response_bytes(503, oom, sizeof oom - 1, NULL, NULL);
        if (!req->response || http_response_add(req->response, "Content-Type",
                                                 "application/json") != 0)
            return NULL;
        req->status = 503;
    }
    if (req->response->kind != HTTP_RESPONSE_LATER) { /* counted once it is made */
        count_request(req->server, req->route, req->status);
        req->counted = true;
    }
    HttpResponse *r = req->response;
    req->response = NULL;
    req->replied = false; /* a reply made later: what later_made makes is asked for anew */
    return r;
}

/* A piece of the body: buffered, or streamed to the route. -1 once the
 * request is refused (over its limit, the route's error, out of memory):
 * its reply then goes out at once and the rest of the body is not read. */
static int ev_body(void *cls, const char *data, size_t n) {
    HttpRequest *req = cls;
    req->received += n;
    if (req->replied) return -1;
    if (req->received > req->limit) {
        reply_too_large(req, 0, req->limit);
        return -1;
    }
    if (req->body_mode == HTTP_BODY_STREAM) {
        atomic_fetch_add(&req->server->upload_bytes, n);
        if (route_of(req)->body->data(req, data, n) != 0 && !req->replied)
            http_reply_error(req, 500, "internal", NULL, "the upload failed");
        return req->replied ? -1 : 0;
    }
    if (req->body_len + n + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 4096;
        while (cap < req->body_len + n + 1) cap *= 2;
        char *grown = realloc(req->body, cap);
        if (!grown) {
            http_reply_error(req, 503, "unavailable", NULL, "out of memory reading the body");
            return -1;
        }
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
    return 0;
}

/* A request's head is in (refused by the parser when e is set). */
static void *ev_head(void *cls, HttpHead *head, const HttpHeadError *e, HttpResponse **reply) {
    HttpServer *s = cls;
    HttpRequest *req = calloc(1, sizeof *req);
    if (!req) return NULL;
    req->server = s;
    req->route = -1;
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    snprintf(req->method, sizeof req->method, "%s", head->method);
    const char *path = head->path ? head->path : "";
    bool long_target = head->target && strlen(head->target) > HTTP_TARGET_MAX;
    req->path = long_target ? strndup(path, 64) : strdup(path);
    if (!req->path) {
        free(req);
        return NULL;
    }
    if (e) {
        request_refused(req, e);
    } else {
        req->head = *head; /* taken: the head's memory is the request's now */
        *head = (HttpHead){0};
        request_begin(req);
    }
    /* refused: answered now (with a body on its way, the connection then
     * closes without reading it) */
    *reply = req->replied ? reply_take(req) : NULL;
    return req;
}

/* The whole request is in (or its chunks went wrong): the handler runs. */
static HttpResponse *ev_end(void *cls, const char *framing_error) {
    HttpRequest *req = cls;
    if (framing_error && !req->replied)
        http_reply_error(req, 400, "bad_request", NULL, "%s", framing_error);
    if (!req->replied) {
        const HttpRoute *route = route_of(req);
        error_clear();
        route->handler(req);
        if (!req->replied)
            http_reply_error(req, 500, "internal", NULL, "%s",
                             *error_get() ? error_get() : "the handler gave no reply");
    }
    return reply_take(req);
}

static void log_request(const HttpRequest *req, int status, bool completed, HttpEnd how) {
    json_t *o = json_object();
    if (!o) return;
    json_object_set_new(o, "method", json_text(req->method));
    json_object_set_new(o, "path", json_text(req->path));
    json_object_set_new(o, "status", json_integer(status));
    json_object_set_new(o, "ms", json_real(round(elapsed_ms(&req->start) * 1000) / 1000));
    if (req->received) json_object_set_new(o, "bytes_in", json_integer((json_int_t)req->received));
    if (req->auth.name[0]) json_object_set_new(o, "user", json_text(req->auth.name));
    if (!completed) {
        static const char *const why[] = {"completed", "error", "timeout",
                                          "shutdown", "read_error", "client_abort"};
        json_object_set_new(o, "terminated", json_string((unsigned)how < 6 ? why[how] : "other"));
    }
    log_json("request", o);
}

/* A connection refused before any request (a TLS handshake failed, plain
 * HTTP to the TLS port): logged with its peer, as requests are, for the
 * admin whose clients cannot connect (an expired certificate, an unknown
 * CA). */
static void ev_refused(void *app, int fd, const char *why) {
    (void)app;
    if (!log_requests_enabled()) return;
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char addr[INET6_ADDRSTRLEN + 32] = "?";
    if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0)
        addr_format((struct sockaddr *)&peer, addr, sizeof addr);
    log_json("tls", json_pack("{s:s, s:s}", "peer", addr, "error", why));
}

/* The request is over: its reply sent, or not (how says). */
static void ev_done(void *cls, HttpEnd how) {
    HttpRequest *req = cls;
    HttpServer *s = req->server;
    bool completed = how == HTTP_END_COMPLETED && req->counted;
    const HttpRoute *route = route_of(req);
    if (req->body_begun && route->body->finish) route->body->finish(req, completed);
    int status = req->counted ? req->status : 0;
    /* a request that ended without a reply sent (the client left, it
     * could not be made) is counted here, as status 0 */
    if (!req->counted) count_request(s, req->route, 0);
    if (log_requests_enabled()) log_request(req, status, completed, how);
    request_free(req);
}

/* ---- start and stop ---- */

int http_tls_check(const char *cert, const char *key) {
    HttpTlsCreds *creds = http_tls_creds_new(cert, key);
    if (!creds) return -1;
    http_tls_creds_free(creds);
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
 * SO_REUSEPORT would let them, the kernel
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

static void server_free(HttpServer *s) {
    pthread_mutex_destroy(&s->count_lock);
    http_tls_creds_free(s->tls);
    free(s->counts);
    free(s);
}

/* The workers on the listening socket fd (theirs from here on, also when
 * they fail to start). */
static HttpLoop *start_loop(HttpServer *s, int fd) {
    const HttpConfig *c = &s->cfg;
    HttpLoopConfig lc = {
        .listen_fd = fd, .threads = c->threads, .max_connections = c->max_connections,
        .max_per_ip = c->max_per_ip,
        .times = {.header_timeout = c->header_timeout_s, .idle_timeout = c->idle_timeout_s},
        .tls = s->tls,
        .events = {.app = s, .head = ev_head, .body = ev_body, .end = ev_end, .done = ev_done,
                   .refused = ev_refused},
    };
    return http_loop_start(&lc);
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
    s->counts = calloc((size_t)s->cfg.num_routes + 1, sizeof *s->counts);
    if (!s->counts) {
        server_free(s);
        error_set("http: out of memory");
        return NULL;
    }
    if (config->tls_cert && !(s->tls = http_tls_creds_new(config->tls_cert, config->tls_key))) {
        server_free(s);
        return NULL;
    }
    s->cfg.tls_cert = s->cfg.tls_key = NULL; /* GnuTLS's copy is the one kept: the caller's goes */
    HttpListener own;
    if (config->listener) {
        own = *config->listener;
        *config->listener = (HttpListener){.fd = -1}; /* the server's now */
    } else if (http_listen(config->bind, config->port, &own) != 0) {
        server_free(s);
        return NULL;
    }
    s->port = own.port;
    s->loop = start_loop(s, own.fd);
    if (!s->loop) {
        server_free(s);
        return NULL;
    }
    return s;
}

int http_server_port(const HttpServer *s) { return s->port; }

int http_server_replace_tls(HttpServer *s, const char *cert, const char *key) {
    if (!s->tls) return error_set("the server speaks plain HTTP: no certificate to replace");
    return http_tls_creds_replace(s->tls, cert, key);
}

void http_server_stop(HttpServer *s) {
    if (!s) return;
    http_loop_stop(s->loop);
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
