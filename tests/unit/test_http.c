/* test_http.c - server/http.c on its own: a server on a free loopback port
 * with a few test routes, driven with libcurl and raw sockets. Route
 * matching and {params} (no trailing slash; %2F inside a segment), 404/405, bearer auth (401,
 * 403), the JSON body limit told by Content-Length and counted for chunked
 * bodies (413), JSON parse errors and nesting depth, streamed bodies and
 * their finish callback, suspended streams that resume, the per-route
 * counters (a request counted before its client has the reply), the edge
 * (414, 431, a NUL in the path, Content-Length or Authorization twice), the
 * header deadline and idle timeout, the per-address cap, and a port in use.
 * The server's own HTTP/1.1: pipelining, 100-continue, HTTP/1.0, heads no
 * route sees (a negative Content-Length, HTTP/2.0, 200 KB heads) refused as
 * JSON, and a reply given before the body is read still reaching its client. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"

#include "server/http.h"
#include "server/log.h"

/* ---- test routes ---- */

static int echo_params(HttpRequest *req) {
    return http_reply_json(req, 200, json_pack("{s:s, s:s, s:s}", "a", http_param(req, 0), "b",
                                               http_param(req, 1), "user", http_auth(req)->name));
}

static int echo_json(HttpRequest *req) {
    json_t *body = http_json_body(req);
    if (!body) return 0;
    return http_reply_json(req, 200, body);
}

static int admin_only(HttpRequest *req) { return http_reply_text(req, 200, "text/plain", "ok", 2); }

typedef struct {
    int calls;
} Producer;

static atomic_int producers_freed;

/* "abc" after three empty answers (each one a suspend), then "def", then
 * the end */
static ssize_t produce(void *ctx, char *buf, size_t max) {
    Producer *p = ctx;
    int c = p->calls++;
    if (c < 3) return 0;
    if (c == 3) return (ssize_t)(memcpy(buf, "abc", 3), 3);
    if (c == 4) return 0;
    if (c == 5) return (ssize_t)(memcpy(buf, "def", 3), 3);
    (void)max;
    return HTTP_STREAM_END;
}

static void producer_free(void *ctx) {
    free(ctx);
    atomic_fetch_add(&producers_freed, 1);
}

static int stream(HttpRequest *req) {
    Producer *p = calloc(1, sizeof *p);
    cr_assert(p);
    return http_reply_stream(req, 200, "text/event-stream", produce, p, producer_free);
}

/* a streamed body: counts bytes, remembers how the request ended */
static atomic_long upload_bytes_seen;
static atomic_int upload_finished, upload_completed;

static int upload_begin(HttpRequest *req) {
    (void)req;
    return HTTP_BODY_STREAM;
}
static int upload_data(HttpRequest *req, const char *data, size_t size) {
    (void)req, (void)data;
    atomic_fetch_add(&upload_bytes_seen, (long)size);
    return 0;
}
static void upload_finish(HttpRequest *req, bool completed) {
    (void)req;
    atomic_fetch_add(&upload_finished, 1);
    if (completed) atomic_fetch_add(&upload_completed, 1);
}
static const HttpBodyStream upload_body = {upload_begin, upload_data, upload_finish};
static int upload_done(HttpRequest *req) {
    return http_reply_json(req, 201, json_pack("{s:I}", "bytes", (json_int_t)atomic_load(&upload_bytes_seen)));
}

static int gzip_ok(HttpRequest *req) {
    return http_reply_text(req, 200, "text/plain", http_accepts_gzip(req) ? "yes" : "no", 3);
}

/* A reply made later (http_reply_later): made once the test says so. */
static atomic_bool later_release;
static atomic_int later_polls;

static int later_poll(HttpRequest *req) {
    atomic_fetch_add(&later_polls, 1);
    if (!atomic_load(&later_release)) return 0;
    http_reply_text(req, 200, "text/plain", "made later", 10);
    return 1;
}

static int later(HttpRequest *req) { return http_reply_later(req, later_poll); }

static int no_content(HttpRequest *req) { return http_reply_text(req, 204, "text/plain", "", 0); }

static const HttpRoute routes[] = {
    {"GET", "/gzip", gzip_ok, HTTP_ROUTE_PUBLIC, NULL},
    {"GET", "/none", no_content, HTTP_ROUTE_PUBLIC, NULL},
    {"GET", "/later", later, HTTP_ROUTE_PUBLIC, NULL},
    {"GET", "/t/{a}/x/{b}", echo_params, HTTP_ROUTE_PUBLIC, NULL},
    {"GET", "/private/{a}", echo_params, 0, NULL},
    {"POST", "/json", echo_json, 0, NULL},
    {"GET", "/admin", admin_only, HTTP_ROUTE_ADMIN, NULL},
    {"GET", "/stream", stream, HTTP_ROUTE_PUBLIC, NULL},
    {"POST", "/upload", upload_done, HTTP_ROUTE_PUBLIC, &upload_body},
};

static int authenticate(void *app, const char *token, HttpAuth *out) {
    (void)app;
    if (!strcmp(token, "user-token")) {
        out->user_id = 2;
        snprintf(out->name, sizeof out->name, "alice");
        return 1;
    }
    if (!strcmp(token, "admin-token")) {
        out->user_id = 1;
        out->admin = true;
        snprintf(out->name, sizeof out->name, "admin");
        return 1;
    }
    return 0;
}

static HttpServer *server;
static char base[64];

static void start(void) {
    log_set_requests(0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    HttpConfig c = {.bind = "127.0.0.1", .port = 0, .threads = 2, .json_max = 1000,
                    .upload_max = 5000, .routes = routes,
                    .num_routes = (int)(sizeof routes / sizeof routes[0]),
                    .authenticate = authenticate};
    server = http_server_start(&c);
    cr_assert(server, "http_server_start failed");
    snprintf(base, sizeof base, "http://127.0.0.1:%d", http_server_port(server));
}

static void stop(void) {
    http_server_stop(server);
    curl_global_cleanup();
}

/* ---- a small curl client ---- */

typedef struct {
    char *data;
    size_t len;
} Buf;

static size_t on_data(char *p, size_t size, size_t n, void *user) {
    Buf *b = user;
    char *grown = realloc(b->data, b->len + size * n + 1);
    cr_assert(grown);
    b->data = grown;
    memcpy(b->data + b->len, p, size * n);
    b->len += size * n;
    b->data[b->len] = '\0';
    return size * n;
}

typedef struct {
    const char *data;
    size_t len, pos;
} Source;

static size_t on_read(char *out, size_t size, size_t n, void *user) {
    Source *s = user;
    size_t k = size * n < s->len - s->pos ? size * n : s->len - s->pos;
    memcpy(out, s->data + s->pos, k);
    s->pos += k;
    return k;
}

/* Returns the status; *body (may be NULL) gets the response body, freed by
 * the caller. chunked sends the body with Transfer-Encoding: chunked. */
static long request(const char *method, const char *path, const char *token, const char *body,
                    size_t body_len, bool chunked, char **out) {
    CURL *c = curl_easy_init();
    cr_assert(c);
    char url[16384];
    snprintf(url, sizeof url, "%s%s", base, path);
    Buf b = {0};
    struct curl_slist *h = NULL;
    char auth[128];
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    Source src = {body, body_len, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &src);
        if (chunked)
            h = curl_slist_append(h, "Transfer-Encoding: chunked");
        else
            curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_len);
        h = curl_slist_append(h, "Expect:");
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    cr_assert(rc == CURLE_OK || status != 0, "%s %s: %s", method, path, curl_easy_strerror(rc));
    if (out)
        *out = b.data ? b.data : strdup("");
    else
        free(b.data);
    return status;
}

/* error.code of an error body */
static void assert_error(const char *body, const char *code) {
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    cr_assert(j, "not JSON: %s", body);
    json_t *err = json_object_get(j, "error");
    cr_assert(json_is_string(json_object_get(err, "message")), "%s", body);
    cr_assert(json_is_string(json_object_get(err, "path")), "%s", body);
    cr_assert_str_eq(json_string_value(json_object_get(err, "code")), code, "%s", body);
    json_decref(j);
}

TestSuite(http, .init = start, .fini = stop);

Test(http, routes_and_params) {
    char *body;
    cr_assert_eq(request("GET", "/t/one/x/two", NULL, NULL, 0, false, &body), 200);
    cr_assert_str_eq(body, "{\"a\":\"one\",\"b\":\"two\",\"user\":\"\"}");
    free(body);
    /* /t/one/x/two/ is not /t/one/x/two */
    cr_assert_eq(request("GET", "/t/one/x/two/", NULL, NULL, 0, false, &body), 404);
    assert_error(body, "not_found");
    free(body);
    cr_assert_eq(request("GET", "/t/one/x", NULL, NULL, 0, false, &body), 404);
    assert_error(body, "not_found");
    free(body);
    cr_assert_eq(request("DELETE", "/t/one/x/two", NULL, NULL, 0, false, &body), 405);
    assert_error(body, "method_not_allowed");
    free(body);
}

/* Each segment is decoded on its own: %2F is a '/' inside a {param}, never
 * a separator that makes another route match; other escapes decode as usual. */
Test(http, encoded_slash_is_data) {
    char *body;
    cr_assert_eq(request("GET", "/t/alice%2Ftab/x/%74wo%3Fq?z=1", NULL, NULL, 0, false, &body),
                 200);
    cr_assert_str_eq(body, "{\"a\":\"alice/tab\",\"b\":\"two?q\",\"user\":\"\"}");
    free(body);
    cr_assert_eq(request("GET", "/t/one/%78/two", NULL, NULL, 0, false, NULL), 200);
    cr_assert_eq(request("GET", "/t/one%2Fx%2Ftwo", NULL, NULL, 0, false, &body), 404);
    assert_error(body, "not_found");
    free(body);
    cr_assert_eq(request("GET", "/t/one/x%2Ftwo", NULL, NULL, 0, false, NULL), 404);
}

Test(http, bearer_auth) {
    char *body;
    cr_assert_eq(request("GET", "/private/7", NULL, NULL, 0, false, &body), 401);
    assert_error(body, "unauthorized");
    free(body);
    cr_assert_eq(request("GET", "/private/7", "wrong", NULL, 0, false, NULL), 401);
    cr_assert_eq(request("GET", "/private/7", "user-token", NULL, 0, false, &body), 200);
    cr_assert(strstr(body, "\"user\":\"alice\""), "%s", body);
    free(body);
    cr_assert_eq(request("GET", "/admin", "user-token", NULL, 0, false, &body), 403);
    assert_error(body, "forbidden");
    free(body);
    cr_assert_eq(request("GET", "/admin", "admin-token", NULL, 0, false, NULL), 200);
}

Test(http, json_bodies_and_limits) {
    char *body;
    const char *ok = "{\"x\": [1, 2]}";
    cr_assert_eq(request("POST", "/json", "user-token", ok, strlen(ok), false, &body), 200);
    cr_assert_str_eq(body, "{\"x\":[1,2]}");
    free(body);
    cr_assert_eq(request("POST", "/json", "user-token", "{\"x\":", 5, false, &body), 400);
    assert_error(body, "bad_json");
    free(body);
    cr_assert_eq(request("POST", "/json", "user-token", "[1]", 3, false, &body), 400);
    assert_error(body, "bad_json");
    free(body);
    /* over json_max (1000): told by Content-Length, and counted when chunked */
    char big[3000];
    memset(big, ' ', sizeof big);
    cr_assert_eq(request("POST", "/json", "user-token", big, sizeof big, false, &body), 413);
    assert_error(body, "too_large");
    free(body);
    cr_assert_eq(request("POST", "/json", "user-token", big, sizeof big, true, &body), 413);
    assert_error(body, "too_large");
    free(body);
    /* the server is still fine */
    cr_assert_eq(request("POST", "/json", "user-token", ok, strlen(ok), true, NULL), 200);
}

Test(http, streamed_body) {
    char *body;
    char data[4000];
    memset(data, 'u', sizeof data);
    cr_assert_eq(request("POST", "/upload", NULL, data, sizeof data, false, &body), 201);
    cr_assert_str_eq(body, "{\"bytes\":4000}");
    free(body);
    /* over upload_max (5000) while it streams: 413, and finish still runs */
    char more[9000];
    memset(more, 'v', sizeof more);
    cr_assert_eq(request("POST", "/upload", NULL, more, sizeof more, true, &body), 413);
    assert_error(body, "too_large");
    free(body);
    for (int i = 0; i < 100 && atomic_load(&upload_finished) < 2; i++) usleep(10000);
    cr_assert_eq(atomic_load(&upload_finished), 2);
    cr_assert_eq(atomic_load(&upload_completed), 2);
    /* the server counts exactly what reached the route */
    cr_assert_eq(http_server_upload_bytes(server), (uint64_t)atomic_load(&upload_bytes_seen));
    cr_assert(atomic_load(&upload_bytes_seen) <= 4000 + 5000);
}

Test(http, suspended_stream_resumes) {
    char *body;
    cr_assert_eq(request("GET", "/stream", NULL, NULL, 0, false, &body), 200);
    cr_assert_str_eq(body, "abcdef");
    free(body);
    for (int i = 0; i < 100 && atomic_load(&producers_freed) < 1; i++) usleep(10000);
    cr_assert_eq(atomic_load(&producers_freed), 1);
}

typedef struct {
    int ok200, e404;
} Counts;

static void count(void *ctx, const char *method, const char *route, int status, uint64_t n) {
    Counts *c = ctx;
    if (!strcmp(method, "GET") && !strcmp(route, "/t/{a}/x/{b}") && status == 200) c->ok200 += (int)n;
    if (!strcmp(route, "unmatched") && status == 404) c->e404 += (int)n;
}

/* Counted before the reply is queued: as soon as a client has its reply,
 * the counters hold it (no waiting), every time. */
Test(http, counters) {
    for (int i = 1; i <= 100; i++) {
        cr_assert_eq(request("GET", "/t/a/x/b", NULL, NULL, 0, false, NULL), 200);
        cr_assert_eq(request("GET", "/nope", NULL, NULL, 0, false, NULL), 404);
        Counts c = {0};
        http_server_foreach_count(server, count, &c);
        cr_assert_eq(c.ok200, i, "request %d: ok200 %d", i, c.ok200);
        cr_assert_eq(c.e404, i, "request %d: e404 %d", i, c.e404);
    }
}

/* "yes" or "no": whether the server reads Accept-Encoding as taking gzip */
static char *accepts_gzip(const char *accept_encoding) {
    CURL *c = curl_easy_init();
    cr_assert(c);
    char url[256], header[256];
    snprintf(url, sizeof url, "%s/gzip", base);
    Buf b = {0};
    struct curl_slist *h = NULL;
    if (accept_encoding) {
        snprintf(header, sizeof header, "Accept-Encoding: %s", accept_encoding);
        h = curl_slist_append(h, header);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    cr_assert(b.data);
    return b.data;
}

Test(http, accept_encoding_gzip) {
    struct {
        const char *header, *want;
    } cases[] = {
        {NULL, "no"},
        {"gzip", "yes"},
        {"gzip, deflate, br", "yes"},
        {"deflate, GZIP;q=0.5", "yes"},
        {"br;q=1.0, gzip;q=0", "no"},
        {"gzip;q=0, *", "no"},
        {"*", "yes"},
        {"*;q=0", "no"},
        {"identity", "no"},
        {"x-gzip, gzipx", "no"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = accepts_gzip(cases[i].header);
        cr_expect_str_eq(got, cases[i].want, "Accept-Encoding: %s",
                         cases[i].header ? cases[i].header : "(none)");
        free(got);
    }
}

/* ---- the edge ---- */

Test(http, edge_errors_are_json) {
    char *body, path[10100] = "/t/";
    memset(path + 3, 'a', sizeof path - 4);
    path[sizeof path - 1] = '\0';
    cr_assert_eq(request("GET", path, NULL, NULL, 0, false, &body), 414);
    assert_error(body, "uri_too_long");
    free(body);
    cr_assert_eq(request("GET", "/t/1%00x/x/2", NULL, NULL, 0, false, &body), 400);
    assert_error(body, "bad_path");
    cr_assert(strstr(body, "path segment 2 ('1%00x') holds a NUL byte"), "%s", body);
    free(body);
    cr_assert_eq(request("GET", "/t/1/x/2?q=%00", NULL, NULL, 0, false, &body), 400);
    assert_error(body, "bad_query");
    cr_assert(strstr(body, "\"path\":\"?q\""), "%s", body);
    free(body);
    cr_assert_eq(request("GET", "/", NULL, NULL, 0, false, &body), 404);
    assert_error(body, "not_found");
    free(body);
}

/* A connection to the test server from source address from (NULL: any). */
static int raw_connect(int port, const char *from) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (from) {
        inet_pton(AF_INET, from, &a.sin_addr);
        cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind %s", from);
    }
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Reads what fd says within ms into buf (NUL-terminated); returns whether
 * the server closed the connection. */
static bool raw_read(int fd, char *buf, size_t max, int ms) {
    size_t n = 0;
    buf[0] = '\0';
    double end = clock_now_s() + ms / 1000.0;
    for (;;) {
        int left = (int)((end - clock_now_s()) * 1000);
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, left) <= 0) return false;
        ssize_t k = recv(fd, buf + n, max - 1 - n, 0);
        if (k <= 0) return true;
        n += (size_t)k;
        buf[n] = '\0';
        if (n == max - 1) return false;
    }
}

/* Sends head on a new connection and reads what comes back within ms
 * into buf; returns whether the server closed the connection. */
static bool raw_exchange(const char *head, char *buf, size_t max, int ms) {
    int fd = raw_connect(http_server_port(server), NULL);
    cr_assert_eq(send(fd, head, strlen(head), 0), (ssize_t)strlen(head));
    bool closed = raw_read(fd, buf, max, ms);
    close(fd);
    return closed;
}

/* A 204 has no Content-Length (RFC 9110), and the connection goes on:
 * the request after it, on the same connection, is answered. */
Test(http, no_content_has_no_length) {
    char buf[4096];
    raw_exchange("GET /none HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 buf, sizeof buf, 3000);
    const char *second = strstr(buf, "\r\n\r\nHTTP/1.1 204 No Content\r\n");
    cr_assert(strncmp(buf, "HTTP/1.1 204 No Content\r\n", 25) == 0 && second, "%s", buf);
    cr_assert(!strcasestr(buf, "Content-Length"), "%s", buf);
}

/* A reply made later is asked for at each tick; meanwhile its connection
 * holds no thread: a server of one thread answers another request. Its
 * client gone, it is not asked again. */
Test(http, reply_made_later_holds_no_thread) {
    HttpConfig c = {.bind = "127.0.0.1", .port = 0, .threads = 1, .routes = routes,
                    .num_routes = (int)(sizeof routes / sizeof routes[0]),
                    .authenticate = authenticate};
    HttpServer *s = http_server_start(&c);
    cr_assert(s, "%s", error_get());
    int port = http_server_port(s);
    atomic_store(&later_release, false);
    atomic_store(&later_polls, 0);
    static const char later_head[] = "GET /later HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    static const char other_head[] = "GET /gzip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char buf[2048];
    int a = raw_connect(port, NULL);
    cr_assert_eq(send(a, later_head, strlen(later_head), 0), (ssize_t)strlen(later_head));
    raw_read(a, buf, sizeof buf, 500);
    cr_assert_str_eq(buf, "", "nothing before the reply is made");
    cr_assert_geq(atomic_load(&later_polls), 2, "asked at the ticks");
    int b = raw_connect(port, NULL);
    cr_assert_eq(send(b, other_head, strlen(other_head), 0), (ssize_t)strlen(other_head));
    cr_assert(raw_read(b, buf, sizeof buf, 2000), "the one thread answers another request");
    cr_assert(strstr(buf, "HTTP/1.1 200 OK") && strstr(buf, "no"), "%s", buf);
    atomic_store(&later_release, true);
    cr_assert(raw_read(a, buf, sizeof buf, 2000), "the reply, once made");
    cr_assert(strstr(buf, "HTTP/1.1 200 OK") && strstr(buf, "\r\n\r\nmade later"), "%s", buf);
    close(a);
    close(b);

    atomic_store(&later_release, false);
    int d = raw_connect(port, NULL);
    cr_assert_eq(send(d, later_head, strlen(later_head), 0), (ssize_t)strlen(later_head));
    usleep(300 * 1000);
    close(d);
    usleep(500 * 1000);
    int polls = atomic_load(&later_polls);
    usleep(600 * 1000);
    cr_assert_eq(atomic_load(&later_polls), polls, "asked again after its client went away");
    http_server_stop(s);
}

Test(http, ambiguous_body_length_closes) {
    static const char *const heads[] = {
        "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}",
        "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n"
        "\r\n2\r\n{}\r\n0\r\n\r\n",
    };
    for (int i = 0; i < 2; i++) {
        char buf[2048];
        bool closed = raw_exchange(heads[i], buf, sizeof buf, 3000);
        cr_assert(!strncmp(buf, "HTTP/1.1 400", 12), "%s", buf);
        cr_assert(strstr(buf, "\"code\":\"bad_request\""), "%s", buf);
        cr_assert(closed, "the connection stays open after: %s", heads[i]);
    }
}

/* Two tokens: which one is meant is not guessed (a server could read the first) */
Test(http, authorization_twice) {
    const char *head = "GET /private/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       "Authorization: Bearer user-token\r\nAuthorization: Bearer wrong\r\n\r\n";
    char buf[2048];
    raw_exchange(head, buf, sizeof buf, 3000);
    cr_assert(!strncmp(buf, "HTTP/1.1 400", 12), "%s", buf);
    cr_assert(strstr(buf, "\"message\":\"Authorization is given 2 times; send one token\""), "%s",
              buf);
}

Test(http, oversized_headers) {
    char head[40100];
    int n = snprintf(head, sizeof head, "GET /t/a/x/b HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(head + n, 'b', 40000);
    memcpy(head + n + 40000, "\r\n\r\n", 5);
    char buf[2048];
    raw_exchange(head, buf, sizeof buf, 1000);
    cr_assert(!strncmp(buf, "HTTP/1.1 431", 12), "%s", buf);
    cr_assert(strstr(buf, "\"code\":\"headers_too_large\""), "%s", buf);
}

/* {"a":[[...]]} nesting `levels` deep (the object counts), in buf. */
static size_t nested(char *buf, int levels) {
    size_t n = (size_t)sprintf(buf, "{\"a\":");
    for (int i = 1; i < levels; i++) buf[n++] = '[';
    for (int i = 1; i < levels; i++) buf[n++] = ']';
    buf[n++] = '}';
    return n;
}

Test(http, json_nesting_limit) {
    char deep[200], *body;
    size_t n = nested(deep, HTTP_JSON_DEPTH_MAX + 1);
    cr_assert_eq(request("POST", "/json", "user-token", deep, n, false, &body), 400);
    assert_error(body, "bad_json");
    cr_assert(strstr(body, "deeper than 64 levels at line 1, column 69"), "%s", body);
    free(body);
    n = nested(deep, HTTP_JSON_DEPTH_MAX);
    cr_assert_eq(request("POST", "/json", "user-token", deep, n, false, &body), 200, "%s", body);
    free(body);
}

/* A second server with short deadlines and a cap of 3 connections per
 * address. */
static HttpServer *tight_server(void) {
    HttpConfig c = {.bind = "127.0.0.1", .port = 0, .threads = 2, .header_timeout_s = 1,
                    .idle_timeout_s = 2, .max_per_ip = 3, .routes = routes,
                    .num_routes = (int)(sizeof routes / sizeof routes[0]),
                    .authenticate = authenticate};
    HttpServer *s = http_server_start(&c);
    cr_assert(s, "%s", error_get());
    return s;
}

/* A request head that never ends, for a client to send a byte at a time. */
#define SLOW_HEAD "GET /t/a/x/b HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

/* How long until the server closes fd, sending one byte of head every
 * 200 ms (none when head is NULL). */
static double seconds_until_closed(int fd, const char *head) {
    double t0 = clock_now_s();
    for (size_t i = 0; clock_now_s() - t0 < 10; i++) {
        if (head && head[i]) send(fd, head + i, 1, MSG_NOSIGNAL);
        char buf[512];
        if (raw_read(fd, buf, sizeof buf, 200)) break;
    }
    return clock_now_s() - t0;
}

Test(http, header_deadline_is_not_extended_by_bytes) {
    HttpServer *s = tight_server();
    int fd = raw_connect(http_server_port(s), NULL);
    double t = seconds_until_closed(fd, SLOW_HEAD);
    close(fd);
    /* due 1 s after the connection, seen by a sweep within 200 ms */
    cr_assert(t >= 0.9 && t < 1.8, "a head sent a byte per 200 ms was cut after %.2f s", t);
    http_server_stop(s);
}

Test(http, idle_timeout_and_next_head_deadline) {
    HttpServer *s = tight_server();
    static const char req[] = "GET /t/a/x/b HTTP/1.1\r\nHost: x\r\n\r\n";
    char buf[2048];
    int fd = raw_connect(http_server_port(s), NULL);
    send(fd, req, sizeof req - 1, 0);
    cr_assert(!raw_read(fd, buf, sizeof buf, 300) && !strncmp(buf, "HTTP/1.1 200", 12), "%s", buf);
    double t = seconds_until_closed(fd, NULL);
    close(fd);
    /* idle: the idle timeout, checked each tick */
    cr_assert(t >= 1.0 && t < 3.2, "an idle kept-alive connection was closed after %.2f s", t);
    /* kept alive, then a slow head: its deadline runs from its first byte */
    fd = raw_connect(http_server_port(s), NULL);
    send(fd, req, sizeof req - 1, 0);
    raw_read(fd, buf, sizeof buf, 300);
    usleep(500 * 1000);
    t = seconds_until_closed(fd, SLOW_HEAD);
    close(fd);
    cr_assert(t >= 0.9 && t < 1.8, "a second head sent slowly was cut after %.2f s", t);
    http_server_stop(s);
}

Test(http, connections_per_address) {
    HttpServer *s = tight_server();
    int fds[5], closed = 0;
    for (int i = 0; i < 5; i++) fds[i] = raw_connect(http_server_port(s), "127.0.0.7");
    for (int i = 0; i < 5; i++) {
        char buf[64];
        closed += raw_read(fds[i], buf, sizeof buf, 300);
    }
    cr_assert_eq(closed, 2, "5 connections from one address, cap 3: %d closed", closed);
    /* another address is not capped by them */
    int other = raw_connect(http_server_port(s), "127.0.0.8");
    static const char req[] = "GET /t/a/x/b HTTP/1.1\r\nHost: x\r\n\r\n";
    send(other, req, sizeof req - 1, 0);
    char buf[2048];
    raw_read(other, buf, sizeof buf, 1000);
    cr_assert(!strncmp(buf, "HTTP/1.1 200", 12), "%s", buf);
    close(other);
    for (int i = 0; i < 5; i++) close(fds[i]);
    http_server_stop(s);
}

Test(http, port_in_use) {
    HttpListener l;
    cr_assert_eq(http_listen("127.0.0.1", http_server_port(server), &l), -1);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d is already in use", http_server_port(server));
    cr_assert_str_eq(error_get(), want);
    cr_assert_eq(l.fd, -1);
    cr_assert_eq(http_listen("127.0.0.1", 0, &l), 0);
    cr_assert(l.fd >= 0 && l.port > 0);
    http_listener_close(&l);
    cr_assert_eq(http_listen("localhost", 0, &l), -1);
    cr_assert(strstr(error_get(), "'localhost' is not a numeric"), "%s", error_get());
}

Test(http, tls_check_gives_the_reason) {
    cr_assert_eq(http_tls_check("not a certificate", "not a key"), -1);
    cr_assert(strstr(error_get(), "GnuTLS cannot use the certificate and key: "), "%s",
              error_get());
}

/* ---- the server's own HTTP/1.1 ---- */

/* Two requests in one send: two replies, in order, on one connection. */
Test(http, pipelined_requests) {
    const char *two = "GET /t/1/x/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /t/3/x/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char buf[4096];
    bool closed = raw_exchange(two, buf, sizeof buf, 3000);
    char *first = strstr(buf, "\"a\":\"1\""), *second = strstr(buf, "\"a\":\"3\"");
    cr_assert(first && second && first < second, "%s", buf);
    cr_assert(closed, "Connection: close on the second request was not honoured");
}

/* "Expect: 100-continue": the interim reply, then the body is read; a
 * request refused by its head gets its final status instead. */
Test(http, expect_continue) {
    static const char head[] = "POST /json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                               "user-token\r\nContent-Length: 7\r\nExpect: 100-continue\r\n"
                               "Connection: close\r\n\r\n";
    char buf[4096];
    int fd = raw_connect(http_server_port(server), NULL);
    cr_assert_eq(send(fd, head, sizeof head - 1, 0), (ssize_t)sizeof head - 1);
    cr_assert(!raw_read(fd, buf, sizeof buf, 300));
    cr_assert_str_eq(buf, "HTTP/1.1 100 Continue\r\n\r\n");
    cr_assert_eq(send(fd, "{\"a\":1}", 7, 0), 7);
    cr_assert(raw_read(fd, buf, sizeof buf, 3000));
    cr_assert(!strncmp(buf, "HTTP/1.1 200", 12) && strstr(buf, "{\"a\":1}"), "%s", buf);
    close(fd);
    static const char no_token[] = "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n"
                                   "Expect: 100-continue\r\n\r\n";
    cr_assert(raw_exchange(no_token, buf, sizeof buf, 3000));
    cr_assert(!strncmp(buf, "HTTP/1.1 401", 12) && !strstr(buf, "100 Continue"), "%s", buf);
}

/* HTTP/1.0: closed after the reply unless it asks for keep-alive; a
 * stream has no chunks, its end is the connection's. */
Test(http, http_1_0) {
    char buf[4096];
    cr_assert(raw_exchange("GET /t/1/x/2 HTTP/1.0\r\n\r\n", buf, sizeof buf, 3000));
    cr_assert(!strncmp(buf, "HTTP/1.1 200", 12) && strstr(buf, "Connection: close"), "%s", buf);
    cr_assert(!raw_exchange("GET /t/1/x/2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", buf,
                            sizeof buf, 500));
    cr_assert(strstr(buf, "Connection: keep-alive\r\n"), "%s", buf);
    cr_assert(raw_exchange("GET /stream HTTP/1.0\r\n\r\n", buf, sizeof buf, 5000));
    char *body = strstr(buf, "\r\n\r\n");
    cr_assert(body && !strcmp(body + 4, "abcdef"), "%s", buf);
    cr_assert(!strstr(buf, "Transfer-Encoding"), "%s", buf);
}

/* Heads no route sees are refused as JSON too, and the connection closed:
 * the server reads HTTP itself. */
Test(http, unparsed_heads_are_json) {
    static const struct {
        const char *head, *status, *code;
    } cases[] = {
        {"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", "400", "bad_request"},
        {"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n", "400",
         "bad_request"},
        {"GET /t/1/x/2 HTTP/2.0\r\nHost: x\r\n\r\n", "505", "http_version_not_supported"},
        {"GET /t/1/x/2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "501",
         "not_implemented"},
        {"GET /t/1/x/2 HTTP/1.1\r\n\r\n", "400", "bad_request"}, /* no Host */
        {"POST /json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer user-token\r\n"
         "Transfer-Encoding: chunked\r\n\r\nzz\r\n", "400", "bad_request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[4096], want[64];
        bool closed = raw_exchange(cases[i].head, buf, sizeof buf, 3000);
        snprintf(want, sizeof want, "HTTP/1.1 %s ", cases[i].status);
        cr_assert(!strncmp(buf, want, strlen(want)), "%s: %s", cases[i].head, buf);
        char *body = strstr(buf, "\r\n\r\n");
        cr_assert(body, "%s", buf);
        assert_error(body + 4, cases[i].code);
        cr_assert(closed, "%s: the connection stays open", cases[i].head);
    }
}

/* A head past what is read of one (128 KiB): 414 while the request line
 * has not ended, 431 after; JSON both. */
Test(http, heads_past_the_read_limit) {
    size_t big = 200 * 1000;
    char *head = malloc(big + 100), buf[4096];
    cr_assert(head);
    int n = sprintf(head, "GET /t/");
    memset(head + n, 'a', big);
    strcpy(head + n + big, " HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(raw_exchange(head, buf, sizeof buf, 3000));
    cr_assert(!strncmp(buf, "HTTP/1.1 414", 12) && strstr(buf, "\"uri_too_long\""), "%s", buf);
    n = sprintf(head, "GET /t/a/x/b HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(head + n, 'b', big);
    strcpy(head + n + big, "\r\n\r\n");
    cr_assert(raw_exchange(head, buf, sizeof buf, 3000));
    cr_assert(!strncmp(buf, "HTTP/1.1 431", 12) && strstr(buf, "\"headers_too_large\""), "%s",
              buf);
    free(head);
}

/* Refused from its head while the client goes on sending the body: the
 * reply still reaches the client (a lingering close, not a reset). */
Test(http, refused_while_the_body_comes) {
    static const char head[] = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
    int fd = raw_connect(http_server_port(server), NULL);
    cr_assert_eq(send(fd, head, sizeof head - 1, 0), (ssize_t)sizeof head - 1);
    static char body[64 * 1024];
    memset(body, 'x', sizeof body);
    cr_assert_eq(send(fd, body, sizeof body, MSG_NOSIGNAL), (ssize_t)sizeof body);
    char buf[4096];
    cr_assert(raw_read(fd, buf, sizeof buf, 3000));
    close(fd);
    cr_assert(!strncmp(buf, "HTTP/1.1 413", 12) && strstr(buf, "\"too_large\""), "%s", buf);
    cr_assert(strstr(buf, "Connection: close\r\n"), "%s", buf);
}

/* A chunked body past the limit: its 413 at once, and the connection
 * closed after it, without waiting for (or reading) the rest. */
Test(http, chunked_body_over_the_limit_answered_at_once) {
    static const char head[] = "POST /json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                               "user-token\r\nTransfer-Encoding: chunked\r\n\r\n";
    static char chunk[7 + 65536 + 2];
    memcpy(chunk, "10000\r\n", 7);
    memset(chunk + 7, ' ', 65536);
    memcpy(chunk + 7 + 65536, "\r\n", 2);
    int fd = raw_connect(http_server_port(server), NULL);
    cr_assert_eq(send(fd, head, sizeof head - 1, 0), (ssize_t)sizeof head - 1);
    cr_assert_eq(send(fd, chunk, sizeof chunk, MSG_NOSIGNAL), (ssize_t)sizeof chunk);
    char buf[4096];
    cr_assert(raw_read(fd, buf, sizeof buf, 3000), "no reply, or the connection stays open");
    close(fd);
    cr_assert(!strncmp(buf, "HTTP/1.1 413", 12) && strstr(buf, "over the limit of 1000 bytes"),
              "%s", buf);
}

/* HEAD is GET's reply without its body; a 405 names the methods the path
 * takes, in Allow and in its message. */
Test(http, head_and_allow) {
    char buf[4096];
    cr_assert(raw_exchange("HEAD /t/1/x/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf,
                           sizeof buf, 3000));
    cr_assert(!strncmp(buf, "HTTP/1.1 200", 12), "%s", buf);
    char *length = strstr(buf, "Content-Length: "), *end = strstr(buf, "\r\n\r\n");
    cr_assert(length && atoi(length + 16) > 0 && end && end[4] == '\0', "%s", buf);
    cr_assert(raw_exchange("DELETE /t/1/x/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                           buf, sizeof buf, 3000));
    cr_assert(!strncmp(buf, "HTTP/1.1 405", 12) && strstr(buf, "\r\nAllow: GET, HEAD\r\n"), "%s",
              buf);
    cr_assert(strstr(buf, "DELETE is not allowed on /t/1/x/2 (GET, HEAD are)"), "%s", buf);
}
