/* fuzz_http_conn.c - one client connection's state machine
 * (server/http_conn.c) driven by a client's bytes over a socketpair.
 *
 * Input: byte 0 sets the size of the pieces the client writes (1..128
 * bytes, or multiples of 64 up to 8192); byte 1 holds the FLAG_ bits below
 * (half-close at the end, the server stopping at the end, how often the
 * fake clock ticks and by how much, how much the client reads each round);
 * the rest is what the client sends. One HttpConn (plain, no TLS) reads it
 * over a non-blocking socketpair with small buffers, so sends are partial
 * and the server waits for the client to read. After the input, the clock
 * runs past every deadline, then the connection is freed and the client
 * reads what is left.
 *
 * The events are stubs: the request target picks the response ("/bytes"
 * copied bytes, "/big" a large body lent in place, "/file" and "/short" a
 * memfd by sendfile, the latter shorter than it says, "/stream" a producer
 * that says "nothing yet" between pieces, "/streamerr" one that fails,
 * "/early" a reply from the head event, "/refuse" a body refused after
 * REFUSE_AFTER bytes, "/gone" and "/noreply" NULL from the head and end
 * events, else 404; "?close" adds Connection: close). Checked
 * (abort, so libFuzzer reports it):
 *   - every request the head event made gets one done(), nothing is called
 *     for it after done() (its state is freed there: ASan sees a late use),
 *     no body() or end() after a reply or after end(), none left after
 *     http_conn_free; a request completed only when it had a reply;
 *   - a Content-Length body reaches body() up to its length, all of it
 *     when end() says the body is over; a framing error only for chunks;
 *   - the bytes the client read are the replies in order, each a whole
 *     HTTP/1.1 response (status line, header lines, a body by
 *     Content-Length, chunks, or the connection's end for an HTTP/1.0
 *     stream) with the status and body given, none for HEAD, "100
 *     Continue" only before the reply of a request that asked, no chunks
 *     for HTTP/1.0, nothing after "Connection: close"; only the last
 *     request, not completed, may have a cut response;
 *   - the connection closes once every deadline has passed.
 * ASan and UBSan see the memory errors, fuzz_end a leaked descriptor.
 */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/http_conn.h"
#include "tests/fuzz/fuzz_support.h"

enum {
    FLAG_HALF_CLOSE = 1 << 0, /* the client shuts its writing side at the end */
    FLAG_STOP = 1 << 1,       /* the server stops at the end */
    FLAG_TICK_SHIFT = 2,      /* 2 bits: tick every 1, 2, 4 rounds, or only when stuck */
    FLAG_STEP_SHIFT = 4,      /* 2 bits: the clock's step, STEPS[] */
    FLAG_READ_SHIFT = 6,      /* 2 bits: what the client reads a round, READS[] */
};
static const double STEPS[] = {0.01, 0.4, 3, 9};
static const size_t READS[] = {SIZE_MAX, 256, 4096, 0};
static const HttpConnTimes TIMES = {.header_timeout = 5, .idle_timeout = 8};
#define END_STEP 1.0   /* seconds a round after the input */
#define MAX_STALLS 8   /* rounds in a row where no byte moved: the client gives up */
#define MAX_REQUESTS 256
#define REFUSE_AFTER 8

/* ---- the responses ---- */

typedef enum {
    R_BYTES, R_BIG, R_FILE, R_SHORT, R_STREAM, R_STREAMERR, R_EARLY, R_REFUSE, R_NOREPLY, R_OTHER
} Route;
static const char *const PATHS[] = {"/bytes", "/big", "/file", "/short", "/stream", "/streamerr",
                                    "/early", "/refuse", "/noreply"};
#define BIG_LEN (40 * 1024)
#define FILE_LEN (24 * 1024)
#define STREAM_LEN (20 * 1024)
static char big_body[BIG_LEN], file_body[FILE_LEN], stream_body[STREAM_LEN];
static int file_fd = -1; /* a memfd holding file_body */

static void fill(char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (char)('a' + (i * 7 + seed) % 26);
}

static void setup_once(void) {
    if (file_fd >= 0) return;
    fill(big_body, BIG_LEN, 1);
    fill(file_body, FILE_LEN, 2);
    fill(stream_body, STREAM_LEN, 3);
    file_fd = memfd_create("fuzz-http-file", MFD_CLOEXEC);
    if (file_fd < 0 || write(file_fd, file_body, FILE_LEN) != FILE_LEN)
        fuzz_fail("memfd: %s", strerror(errno));
}

typedef struct {
    int calls;
    size_t at;
    bool fail, over;
} Stream;

/* "nothing yet" on calls 0, 1 and 3; 7 bytes on call 2; then all it may;
 * the failing one fails on call 4. */
static ssize_t stream_fn(void *ctx, char *buf, size_t max) {
    Stream *s = ctx;
    if (s->over || max == 0) fuzz_fail("the producer asked after its end, or for %zu bytes", max);
    int call = s->calls++;
    if (call < 2 || call == 3) return 0;
    s->over = (s->fail && call >= 4) || s->at == STREAM_LEN;
    if (s->over) return s->fail ? HTTP_STREAM_ERROR : HTTP_STREAM_END;
    size_t n = call == 2 ? 7 : STREAM_LEN - s->at < max ? STREAM_LEN - s->at : max;
    memcpy(buf, stream_body + s->at, n);
    s->at += n;
    return (ssize_t)n;
}

/* ---- the events ---- */

/* What the harness knows of a request, kept after done() for the wire check. */
typedef struct {
    Route route;
    bool head_method, expect_continue, has_length, chunked, want_close;
    int minor;
    uint64_t declared, got;
    unsigned sum; /* of the body's bytes: reading them lets ASan check them */
    bool early, refused, ended, replied, done;
    HttpEnd how;
    int status; /* the reply given: its status and body */
    const char *body;
    size_t body_len;
} Record;

static Record records[MAX_REQUESTS];
static int num_records;

typedef struct {
    int id;
    HttpHead head; /* taken from the head event for odd ids */
} Req;

/* The request's record, failing when it is over. */
static Record *live(void *req, const char *event) {
    int id = ((Req *)req)->id; /* a freed req: ASan reports the read */
    if (id < 0 || id >= num_records || records[id].done)
        fuzz_fail("%s for request %d after its done()", event, id);
    return &records[id];
}

static HttpResponse *respond(Record *r, HttpResponse *resp, int status, const char *body,
                             size_t len) {
    if (!resp) return NULL; /* out of memory: the connection closes */
    if (http_response_add(resp, "Content-Type", "text/plain") ||
        (r->want_close && http_response_add(resp, "Connection", "close")))
        fuzz_fail("http_response_add failed");
    r->replied = true;
    r->status = status;
    r->body = body;
    r->body_len = len;
    return resp;
}

static HttpResponse *respond_text(Record *r, int status, const char *text) {
    return respond(r, http_response_copy(status, text, strlen(text)), status, text, strlen(text));
}

static HttpResponse *respond_stream(Record *r, bool fail) {
    Stream *s = calloc(1, sizeof *s);
    if (!s) fuzz_fail("out of memory");
    s->fail = fail;
    return respond(r, http_response_stream(200, stream_fn, s, free), 200, stream_body, STREAM_LEN);
}

static HttpResponse *route_reply(Record *r) {
    int fd;
    switch (r->route) {
    case R_BYTES: return respond_text(r, 200, "hello, bytes\n");
    case R_BIG:
        return respond(r, http_response_bytes(200, big_body, BIG_LEN, NULL, NULL), 200, big_body,
                       BIG_LEN);
    case R_FILE:
    case R_SHORT:
        if ((fd = dup(file_fd)) < 0) fuzz_fail("dup: %s", strerror(errno));
        return respond(r, http_response_fd(200, fd, FILE_LEN + (r->route == R_SHORT) * 100), 200,
                       file_body, FILE_LEN + (r->route == R_SHORT) * 100);
    case R_STREAM: return respond_stream(r, false);
    case R_STREAMERR: return respond_stream(r, true);
    case R_REFUSE: return respond_text(r, 200, "taken\n");
    case R_NOREPLY: return NULL; /* as out of memory: the connection closes */
    default: return respond_text(r, 404, "not found\n");
    }
}

static void *ev_head(void *app, HttpHead *h, const HttpHeadError *e, HttpResponse **reply) {
    if (*reply) fuzz_fail("the head event's reply is not NULL on entry");
    if (num_records == MAX_REQUESTS) return NULL; /* as out of memory: the connection closes */
    if (!e && !strcmp(h->path, "/gone")) { /* the same, a reply made already (freed by the conn) */
        *reply = http_response_copy(200, "gone\n", 5);
        return NULL;
    }
    Req *q = malloc(sizeof *q);
    if (!q) fuzz_fail("out of memory");
    *q = (Req){.id = num_records++};
    Record *r = &records[q->id];
    *r = (Record){.route = R_OTHER, .minor = 1, .head_method = !strcmp(h->method, "HEAD")};
    if (e) {
        *reply = respond_text(r, e->status, e->code);
        return q;
    }
    for (Route i = 0; i < R_OTHER; i++)
        if (!strcmp(h->path, PATHS[i])) r->route = i;
    r->minor = h->minor;
    r->expect_continue = h->expect_continue;
    r->has_length = h->has_length;
    r->declared = h->content_length;
    r->chunked = h->chunked;
    r->want_close = http_head_arg(h, "close") != NULL;
    if (r->route == R_EARLY) *reply = respond_text(r, 201, "early\n");
    r->early = *reply != NULL;
    if (q->id % 2) { /* the event may take the head's memory */
        q->head = *h;
        *h = (HttpHead){0};
    }
    return q;
}

static int ev_body(void *req, const char *data, size_t n) {
    Record *r = live(req, "body()");
    if (r->early || r->ended || r->refused)
        fuzz_fail("body() for request %d after its reply, end() or a refusal", (int)(r - records));
    for (size_t i = 0; i < n; i++) r->sum += (unsigned char)data[i]; /* ASan checks each byte */
    r->got += n;
    if (r->has_length && r->got > r->declared)
        fuzz_fail("body() gave %llu bytes of a %llu-byte body", (unsigned long long)r->got,
                  (unsigned long long)r->declared);
    if (r->route == R_REFUSE && r->got > REFUSE_AFTER) return r->refused = true, -1;
    return 0;
}

static HttpResponse *ev_end(void *req, const char *framing_error) {
    Record *r = live(req, "end()");
    if (r->early || r->ended) fuzz_fail("end() after the reply or twice");
    r->ended = true;
    if (framing_error) {
        if (!r->refused && !r->chunked)
            fuzz_fail("a framing error without chunks: %s", framing_error);
        return respond_text(r, r->refused ? 413 : 400, r->refused ? "refused\n" : "framing\n");
    }
    if (r->refused) fuzz_fail("end() says the body is over after body() refused it");
    if (r->has_length ? r->got != r->declared : !r->chunked && r->got)
        fuzz_fail("end() after %llu body bytes of %llu", (unsigned long long)r->got,
                  (unsigned long long)r->declared);
    return route_reply(r);
}

static void ev_done(void *req, HttpEnd how) {
    Record *r = live(req, "done()");
    if (how == HTTP_END_COMPLETED && !r->replied) fuzz_fail("completed without a reply");
    r->done = true;
    r->how = how;
    http_head_free(&((Req *)req)->head);
    free(req);
}

static const HttpEvents EVENTS = {.head = ev_head, .body = ev_body, .end = ev_end, .done = ev_done};

/* ---- the client's side ---- */

typedef struct {
    int fd;
    char *got; /* everything read */
    size_t len, cap;
} Client;

/* Reads up to max bytes (fewer when none wait); how many. cl->got stays
 * NUL-terminated for the string functions of the wire check. */
static size_t client_read(Client *cl, size_t max) {
    size_t total = 0;
    for (;;) {
        if (cl->cap - cl->len < 4096) {
            cl->cap = cl->cap ? cl->cap * 2 : 65536;
            if (!(cl->got = realloc(cl->got, cl->cap))) fuzz_fail("out of memory");
        }
        cl->got[cl->len] = '\0';
        if (total == max) return total;
        size_t room = cl->cap - cl->len - 1, want = room < max - total ? room : max - total;
        ssize_t n = recv(cl->fd, cl->got + cl->len, want, 0);
        if (n <= 0) return total; /* none waiting, the end, or a reset */
        cl->len += (size_t)n;
        total += (size_t)n;
    }
}

/* ---- the responses as the client read them ---- */

typedef struct {
    const char *p;
    size_t n, at;
} Wire;

typedef struct {
    int status;
    bool close, chunked, to_eof, has_length;
    uint64_t length;
    const char *body; /* into the wire, or `decoded` for chunks */
    size_t body_len;
    char decoded[BIG_LEN + STREAM_LEN];
} Response;

/* The header lines of a response in s[0, len), through its blank line. */
static void parse_fields(const char *s, const char *end, Response *r) {
    static const char token[] = "!#$%&'*+-.^_`|~";
    while (s + 2 <= end && memcmp(s, "\r\n", 2)) {
        const char *eol = memmem(s, (size_t)(end - s), "\r\n", 2);
        const char *colon = memchr(s, ':', (size_t)(eol - s));
        if (!colon || colon == s || colon[1] != ' ') fuzz_fail("a header line without 'Name: '");
        for (const char *c = s; c < colon; c++)
            if (!isalnum((unsigned char)*c) && !strchr(token, *c))
                fuzz_fail("a header name holding byte 0x%02x", (unsigned char)*c);
        for (const char *c = colon + 2; c < eol; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                fuzz_fail("a header value with a control byte");
        size_t name = (size_t)(colon - s), vlen = (size_t)(eol - colon - 2);
        const char *v = colon + 2;
        if (name == 14 && !strncasecmp(s, "Content-Length", 14)) {
            if (r->has_length || !vlen || vlen > 19 || strspn(v, "0123456789") < vlen)
                fuzz_fail("a bad or second Content-Length");
            r->has_length = true;
            r->length = strtoull(v, NULL, 10);
        } else if (name == 17 && !strncasecmp(s, "Transfer-Encoding", 17)) {
            if (vlen != 7 || strncmp(v, "chunked", 7)) fuzz_fail("a Transfer-Encoding not chunked");
            r->chunked = true;
        } else if (name == 10 && !strncasecmp(s, "Connection", 10)) {
            r->close = vlen == 5 && !strncmp(v, "close", 5);
        }
        s = eol + 2;
    }
    if (r->has_length && r->chunked) fuzz_fail("both Content-Length and chunked");
}

/* A chunked body from w->at into r->decoded; false when it is cut short. */
static bool parse_chunks(Wire *w, Response *r) {
    size_t at = w->at;
    r->body = r->decoded;
    r->body_len = 0;
    for (;;) {
        const char *eol = memmem(w->p + at, w->n - at, "\r\n", 2);
        if (!eol) return false;
        size_t digits = (size_t)(eol - (w->p + at));
        if (!digits || digits > 8 || strspn(w->p + at, "0123456789abcdef") < digits)
            fuzz_fail("a chunk size line that is not lower-case hex");
        size_t size = strtoull(w->p + at, NULL, 16);
        at += digits + 2;
        if (w->n - at < size + 2) return false;
        if (memcmp(w->p + at + size, "\r\n", 2)) fuzz_fail("a chunk not followed by CRLF");
        if (r->body_len + size > sizeof r->decoded) fuzz_fail("a chunked body over its length");
        memcpy(r->decoded + r->body_len, w->p + at, size);
        r->body_len += size;
        at += size + 2;
        if (!size) break;
    }
    w->at = at;
    return true;
}

/* The next response on the wire into *r: true, or false when the wire
 * ends before it does (w->at stays). */
static bool wire_next(Wire *w, bool head_method, Response *r) {
    memset(r, 0, offsetof(Response, decoded));
    const char *s = w->p + w->at, *end = w->p + w->n;
    const char *blank = memmem(s, (size_t)(end - s), "\r\n\r\n", 4);
    if (!blank) {
        if (memcmp(s, "HTTP/1.1 ", (size_t)(end - s) < 9 ? (size_t)(end - s) : 9))
            fuzz_fail("a response not starting with 'HTTP/1.1 '");
        return false;
    }
    const char *eol = memmem(s, (size_t)(end - s), "\r\n", 2), *reason = s + 13;
    r->status = atoi(s + 9);
    size_t reason_len = strlen(http_reason(r->status));
    if (strncmp(s, "HTTP/1.1 ", 9) || strspn(s + 9, "0123456789") != 3 || s[12] != ' ' ||
        r->status < 100 || (size_t)(eol - reason) != reason_len ||
        strncmp(reason, http_reason(r->status), reason_len))
        fuzz_fail("a bad status line: %.40s", s);
    parse_fields(eol + 2, blank + 2, r);
    size_t body_at = (size_t)(blank + 4 - w->p);
    if (r->status == 100) {
        if (blank != eol) fuzz_fail("100 Continue with header lines");
        w->at = body_at;
        return true;
    }
    Wire b = {w->p, w->n, body_at};
    if (head_method) {
        r->body = w->p + body_at;
    } else if (r->chunked) {
        if (!parse_chunks(&b, r)) return false;
        body_at = b.at;
    } else if (r->has_length) {
        if (w->n - body_at < r->length) return false;
        r->body = w->p + body_at;
        r->body_len = r->length;
        body_at += r->length;
    } else { /* to the connection's end */
        if (!r->close) fuzz_fail("a body without length or chunks, without Connection: close");
        r->to_eof = true;
        r->body = w->p + body_at;
        r->body_len = w->n - body_at;
        body_at = w->n;
    }
    w->at = body_at;
    return true;
}

/* Whether request r's response has no body: HEAD's (also a 414/431 for
 * a HEAD refused unparsed: regressions/http_conn/head_oversized_gets_body). */
static bool bodiless(const Record *r) { return r->head_method; }

/* The final response matches the reply of request k. */
static void check_reply(int k, const Response *resp, bool stopped) {
    const Record *r = &records[k];
    if (resp->status != r->status)
        fuzz_fail("request %d: status %d, %d given", k, resp->status, r->status);
    if (r->minor == 0 && resp->chunked) fuzz_fail("request %d: chunks for HTTP/1.0", k);
    if (resp->close && k != num_records - 1)
        fuzz_fail("request %d: Connection: close, then more", k);
    if (resp->to_eof && (r->minor != 0 || r->route < R_STREAM || r->route > R_STREAMERR))
        fuzz_fail("request %d: a body to the connection's end", k);
    if (resp->has_length && resp->length != r->body_len)
        fuzz_fail("request %d: Content-Length %llu of a %zu-byte body", k,
                  (unsigned long long)resp->length, r->body_len);
    if (r->how != HTTP_END_COMPLETED) return; /* cut short: the body may be too */
    /* a stream ends early once the server stops */
    bool prefix = stopped && (r->route == R_STREAM || r->route == R_STREAMERR);
    size_t want = bodiless(r) ? 0 : r->body_len;
    if (resp->body_len != want && !(prefix && resp->body_len < want))
        fuzz_fail("request %d: a %zu-byte body of %zu", k, resp->body_len, want);
    if (resp->body_len && memcmp(resp->body, r->body, resp->body_len))
        fuzz_fail("request %d: the body is not the one given", k);
}

/* What the client read is the requests' replies, in order. */
static void check_wire(const char *p, size_t n, bool stopped) {
    static Response resp;
    Wire w = {p, n, 0};
    bool cut = false;
    for (int k = 0; k < num_records && !cut; k++) {
        const Record *r = &records[k];
        if (!r->done) fuzz_fail("request %d has no done() after http_conn_free", k);
        bool last = k == num_records - 1, whole;
        if (!last && r->how != HTTP_END_COMPLETED)
            fuzz_fail("request %d ended %d, yet more came", k, r->how);
        int interim = 0;
        while ((whole = wire_next(&w, bodiless(r), &resp)) && resp.status == 100)
            if (!r->expect_continue || r->minor != 1 || interim++)
                fuzz_fail("request %d: 100 Continue unasked, or twice", k);
        if (whole && !r->replied) fuzz_fail("request %d: a response, no reply given", k);
        if (whole && r->replied) check_reply(k, &resp, stopped);
        if (r->how == HTTP_END_COMPLETED && !whole)
            fuzz_fail("request %d completed, its response cut", k);
        cut = !whole || r->how != HTTP_END_COMPLETED;
    }
    if (!cut && w.at < n) fuzz_fail("%zu bytes after the last response: %.40s", n - w.at, p + w.at);
}

/* ---- driving it ---- */

static size_t piece_size(uint8_t b) { return b < 128 ? (size_t)b + 1 : (size_t)(b - 127) * 64; }

/* Calls http_conn_io as the worker's loop would: when the connection
 * waits for the socket, or its client has gone. */
static unsigned io(HttpConn *c, unsigned interest, bool hangup, double now) {
    if (!(interest & (HTTP_CONN_READ | HTTP_CONN_WRITE)) && !hangup) return interest;
    return http_conn_io(c, hangup, now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    setup_once();
    size_t piece = piece_size(data[0]), reads = READS[data[1] >> FLAG_READ_SHIFT & 3];
    unsigned flags = data[1], tick_every = 1u << (flags >> FLAG_TICK_SHIFT & 3);
    double step = STEPS[flags >> FLAG_STEP_SHIFT & 3], now = 1000;
    data += 2, size -= 2;

    fuzz_begin();
    int sv[2], small = 4096;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
        fuzz_fail("socketpair: %s", strerror(errno));
    for (int i = 0; i < 2; i++)
        if (setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof small) ||
            setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small))
            fuzz_fail("setsockopt: %s", strerror(errno));
    static atomic_bool stopping;
    atomic_store(&stopping, false);
    num_records = 0;
    HttpConn *c = http_conn_new(sv[0], NULL, &EVENTS, &TIMES, &stopping, now);
    if (!c) fuzz_fail("http_conn_new: out of memory");
    Client cl = {.fd = sv[1]};
    client_read(&cl, 0); /* its buffer, empty */

    /* the input, piece by piece; ticks on the rounds the flags say and when stuck */
    unsigned interest = HTTP_CONN_READ;
    size_t at = 0;
    for (int round = 0, stalls = 0;
         at < size && !(interest & HTTP_CONN_CLOSE) && stalls < MAX_STALLS; round++) {
        size_t k = size - at < piece ? size - at : piece;
        ssize_t sent = send(cl.fd, data + at, k, MSG_NOSIGNAL);
        if (sent < 0 && errno != EAGAIN) break; /* the server has closed */
        at += sent > 0 ? (size_t)sent : 0;
        interest = io(c, interest, false, now);
        bool moved = client_read(&cl, reads) > 0 || sent > 0;
        stalls = moved ? 0 : stalls + 1;
        bool tick_due = !moved || (tick_every < 8 && round % tick_every == 0);
        if (!(interest & HTTP_CONN_CLOSE) && tick_due) {
            now += step;
            interest = http_conn_tick(c, now);
        }
    }

    /* then past every deadline: the client reads all, the clock runs */
    bool hangup = flags & FLAG_HALF_CLOSE;
    if (hangup) shutdown(cl.fd, SHUT_WR);
    if (flags & FLAG_STOP) atomic_store(&stopping, true);
    double input_end = now;
    for (size_t round = 0; round < 64 + size && !(interest & HTTP_CONN_CLOSE); round++) {
        client_read(&cl, SIZE_MAX);
        interest = io(c, interest, hangup, now);
        if (interest & HTTP_CONN_CLOSE) break;
        now += END_STEP;
        interest = http_conn_tick(c, now);
    }
    if (!(interest & HTTP_CONN_CLOSE))
        fuzz_fail("the connection is still open %.0f s after the input", now - input_end);
    http_conn_free(c, HTTP_END_SHUTDOWN);
    client_read(&cl, SIZE_MAX);
    close(cl.fd);
    check_wire(cl.got, cl.len, flags & FLAG_STOP);
    free(cl.got);
    fuzz_end("http_conn", false);
    return 0;
}
