/* http_conn.c - one client connection's requests and responses; see
 * http_conn.h.
 *
 * A connection is a small state machine, driven by http_conn_io when its
 * socket is ready and by http_conn_tick a few times a second:
 *   HANDSHAKE  TLS only: the handshake, under the first head's deadline
 *   HEAD       reading a request head (idle: kept alive, none of it yet)
 *   BODY       reading the body into the events (after "100 Continue"
 *              when the client waits for it)
 *   SEND       sending the response: its head and small bodies from one
 *              buffer, a large body in place, a file by sendfile (read
 *              and encrypted for TLS), a stream as its producer gives it
 *   LINGER     the response sent, the socket shut for writing: what the
 *              client still sends is dropped until it closes or LINGER_S
 *   CLOSED     over: the worker frees it
 */
#include "server/http_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/http.h"
#include "server/http_chunked.h"

#define IN_CHUNK (64 * 1024)          /* bytes read at a time */
#define READS_PER_TURN 16             /* then the worker's other connections have a turn */
#define SENDS_PER_TURN 16             /* pieces sent in one turn, for the same reason */
#define INLINE_BODY_MAX (16 * 1024)   /* bodies copied beside the head: one send */
#define STREAM_PIECE (16 * 1024)      /* what a stream's producer may give at once */
#define CHUNK_LINE_ROOM 18            /* a chunk's size line: 16 hex digits and CRLF */
#define FILE_PIECE ((size_t)1 << 20)  /* sendfile's bytes at a time */
#define LINGER_S 2.0

typedef enum { ST_HANDSHAKE, ST_HEAD, ST_BODY, ST_SEND, ST_LINGER, ST_CLOSED } ConnState;

/* What sending did: all of it, the socket is full, its turn is over (a
 * client that reads as fast as a stream's backlog goes must not keep the
 * worker's other connections waiting), a stream waits for its producer,
 * the connection failed, or the response itself did (its producer's
 * error, a file shorter than it said). */
typedef enum { SENT, SEND_AGAIN, SEND_YIELD, SEND_PARKED, SEND_FAILED, SEND_BROKEN } SendResult;

struct HttpConn {
    int fd;
    HttpTls *tls;
    bool tls_started; /* its first byte seen to start a TLS record */
    const HttpEvents *ev;
    HttpConnTimes times;
    const atomic_bool *stopping;
    ConnState state;
    HttpEnd end;      /* why, once CLOSED */
    unsigned interest; /* what it last said it waits for */
    bool idle;        /* HEAD: kept alive, no byte of the next request yet */
    double head_since, last_io, linger_until;
    double body_since; /* BODY: when its first byte was due */
    uint64_t body_got; /* BODY: its bytes so far, framing included */

    char *in; /* bytes read and not yet used */
    size_t in_len, in_cap;
    size_t head_scanned; /* in[0, head_scanned) holds no head's end */

    void *req; /* the events' request, while one is in flight */
    int minor;
    bool keep_alive, head_method, close_after;
    bool chunked;
    uint64_t body_left;
    HttpChunked chunk;

    char *out; /* bytes to send first: a response head, a small body, a chunk */
    size_t out_len, out_off, out_cap;
    HttpResponse *resp;
    const char *body; /* a large body, sent in place */
    size_t body_len, body_off;
    uint64_t file_left;
    off_t file_off;
    bool streaming, stream_over, parked, send_blocked;
    double send_window;       /* SEND, blocked: when the window of the read rate began */
    uint64_t send_window_got; /* the bytes the client took in it */
};

/* ---- bytes in and out ---- */

static bool io_again(void) { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; }

/* > 0 bytes, 0 the end of the stream, -1 failure, HTTP_TLS_AGAIN */
static ssize_t conn_recv(HttpConn *c, char *buf, size_t max) {
    if (c->tls) return http_tls_recv(c->tls, buf, max);
    ssize_t n = recv(c->fd, buf, max, 0);
    return n < 0 && io_again() ? HTTP_TLS_AGAIN : n;
}

static ssize_t conn_send(HttpConn *c, const char *buf, size_t len) {
    if (c->tls) return http_tls_send(c->tls, buf, len);
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    return n < 0 && io_again() ? HTTP_TLS_AGAIN : n;
}

/* Room for want more bytes in *buf (of *cap, *len used); false when out
 * of memory. */
static bool reserve(char **buf, size_t *cap, size_t len, size_t want) {
    if (*cap - len >= want) return true;
    size_t grown_cap = *cap ? *cap : 4096;
    while (grown_cap - len < want) grown_cap *= 2;
    char *grown = realloc(*buf, grown_cap);
    if (!grown) return false;
    *buf = grown;
    *cap = grown_cap;
    return true;
}

static bool out_append(HttpConn *c, const char *data, size_t n) {
    if (!reserve(&c->out, &c->out_cap, c->out_len, n)) return false;
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
    return true;
}

/* Drops the first n bytes read. */
static void consume(HttpConn *c, size_t n) {
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
    c->head_scanned = 0;
}

static void close_now(HttpConn *c, HttpEnd why) {
    c->state = ST_CLOSED;
    c->end = why;
}

/* Reads once: 1 when bytes came, 0 when none wait, -1 when the
 * connection is over (c->end says why). */
static int read_some(HttpConn *c, double now) {
    size_t room = c->state == ST_HEAD ? HTTP_HEAD_READ_MAX - c->in_len : IN_CHUNK;
    if (room > IN_CHUNK) room = IN_CHUNK;
    if (!reserve(&c->in, &c->in_cap, c->in_len, room)) {
        close_now(c, HTTP_END_ERROR);
        return -1;
    }
    ssize_t n = conn_recv(c, c->in + c->in_len, room);
    if (n == HTTP_TLS_AGAIN) return 0;
    if (n <= 0) {
        close_now(c, n == 0 ? HTTP_END_CLIENT_ABORT : HTTP_END_READ_ERROR);
        return -1;
    }
    c->in_len += (size_t)n;
    c->last_io = now;
    return 1;
}

/* Sends buf[*off, len): SENT, SEND_AGAIN or SEND_FAILED. */
static SendResult send_buf(HttpConn *c, const char *buf, size_t *off, size_t len, double now) {
    while (*off < len) {
        ssize_t n = conn_send(c, buf + *off, len - *off);
        if (n == HTTP_TLS_AGAIN) return SEND_AGAIN;
        if (n <= 0) return SEND_FAILED;
        *off += (size_t)n;
        c->send_window_got += (uint64_t)n;
        c->last_io = now;
    }
    return SENT;
}

/* ---- a request ---- */

static void send_start(HttpConn *c, HttpResponse *r);

/* The body is over, or cannot be read on (framing_error): the reply. */
static void body_over(HttpConn *c, const char *framing_error) {
    HttpResponse *r = c->ev->end(c->req, framing_error);
    if (!r) {
        close_now(c, HTTP_END_ERROR);
        return;
    }
    send_start(c, r);
}

/* Hands a head to the events: the reply at once, or the body next. */
static void dispatch(HttpConn *c, HttpHead *h, const HttpHeadError *e, bool has_body,
                     bool expect_continue) {
    HttpResponse *reply = NULL;
    c->req = c->ev->head(c->ev->app, h, e, &reply);
    if (!c->req) {
        http_response_free(reply);
        close_now(c, HTTP_END_ERROR);
        return;
    }
    if (reply) {
        /* a body left unread, or a head not understood: where the next
         * request would start is unknown */
        c->close_after = e != NULL || has_body;
        send_start(c, reply);
        return;
    }
    if (!has_body) {
        body_over(c, NULL);
        return;
    }
    static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (expect_continue && c->minor == 1 && !out_append(c, go_on, sizeof go_on - 1)) {
        close_now(c, HTTP_END_ERROR);
        return;
    }
    c->state = ST_BODY;
    c->body_since = c->last_io; /* the head's last bytes came just now */
    c->body_got = 0;
}

/* A whole head of head_len bytes is at the front of c->in. */
static void request_start(HttpConn *c, size_t head_len) {
    HttpHead h;
    HttpHeadError e;
    bool ok = http_head_parse(c->in, head_len, &h, &e) == 0;
    consume(c, head_len);
    c->minor = ok ? h.minor : 1;
    c->head_method = !strcmp(h.method, "HEAD");
    c->keep_alive = ok && h.keep_alive;
    c->chunked = ok && h.chunked;
    c->body_left = ok && h.has_length ? h.content_length : 0;
    c->chunk = (HttpChunked){0};
    c->close_after = false;
    dispatch(c, &h, ok ? NULL : &e, c->chunked || c->body_left > 0, ok && h.expect_continue);
    http_head_free(&h);
}

/* How many of s[0, n), at most max, come before a space, CR, LF or NUL. */
static size_t word_length(const char *s, size_t n, size_t max) {
    size_t i = 0;
    while (i < n && i < max && s[i] != ' ' && s[i] != '\r' && s[i] != '\n' && s[i]) i++;
    return i;
}

/* HTTP_HEAD_READ_MAX bytes and no end of the head: refused unparsed, 414
 * while the request line itself has not ended, else 431. */
static void request_oversized(HttpConn *c) {
    HttpHead h = {0};
    HttpHeadError e = {.close = true};
    char target[68];
    size_t m = word_length(c->in, c->in_len, 15);
    memcpy(h.method, c->in, m);
    h.method[m] = '\0';
    const char *t = c->in + m + (c->in[m] == ' ');
    size_t n = word_length(t, c->in_len - (size_t)(t - c->in), 64);
    memcpy(target, t, n);
    target[n] = '\0';
    h.target = h.path = target;
    if (!memchr(c->in, '\n', c->in_len)) {
        e.status = 414, e.code = "uri_too_long";
        snprintf(e.path, sizeof e.path, "%s...", target);
        snprintf(e.message, sizeof e.message, "the request line is over %d bytes long; a request "
                 "target may have %d", HTTP_HEAD_READ_MAX, HTTP_TARGET_MAX);
    } else {
        e.status = 431, e.code = "headers_too_large";
        snprintf(e.message, sizeof e.message, "the request head is over %d bytes long; the header "
                 "lines may have %d", HTTP_HEAD_READ_MAX, HTTP_HEADERS_MAX);
    }
    c->in_len = c->head_scanned = 0;
    c->minor = 1;
    c->keep_alive = false;
    c->head_method = !strcmp(h.method, "HEAD"); /* its refusal has no body either */
    dispatch(c, &h, &e, false, false);
}

/* HEAD: starts the request whose head is whole in c->in. false when more
 * bytes are needed. */
static bool head_try(HttpConn *c, double now) {
    if (c->in_len == 0) return false;
    if (c->idle) { /* the next request's first byte: its head is due from now */
        c->idle = false;
        c->head_since = now;
    }
    size_t end = http_head_end_from(c->in, c->in_len, c->head_scanned);
    if (end) {
        c->head_scanned = 0;
        request_start(c, end);
        return true;
    }
    c->head_scanned = c->in_len;
    if (c->in_len < HTTP_HEAD_READ_MAX) return false;
    request_oversized(c);
    return true;
}

/* The request stopped reading its body (it has its reply): the reply
 * goes out now and the connection closes after it, the rest of the body
 * unread. */
static void body_given_up(HttpConn *c) {
    c->close_after = true;
    body_over(c, "the request body was not read to its end");
}

/* BODY: hands the body bytes read to the request. false when more bytes
 * are needed. */
static bool body_feed(HttpConn *c) {
    if (c->in_len == 0) return false;
    if (c->chunked) {
        size_t used, out;
        char err[256];
        int rc = http_chunked_decode(&c->chunk, c->in, c->in_len, &used, &out, err, sizeof err);
        if (out && c->ev->body(c->req, c->in, out) != 0) {
            body_given_up(c);
            return true;
        }
        consume(c, used);
        c->body_got += used;
        if (rc < 0) c->close_after = true; /* where the body ends is lost */
        if (rc != 0) body_over(c, rc < 0 ? err : NULL);
        return true;
    }
    size_t n = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
    if (c->ev->body(c->req, c->in, n) != 0) {
        body_given_up(c);
        return true;
    }
    consume(c, n);
    c->body_got += n;
    c->body_left -= n;
    if (c->body_left == 0) body_over(c, NULL);
    return true;
}

/* ---- a response ---- */

static void send_start(HttpConn *c, HttpResponse *r) {
    c->resp = r;
    c->state = ST_SEND;
    c->streaming = c->stream_over = c->parked = false;
    if (r->kind == HTTP_RESPONSE_LATER) return; /* send_more asks for the reply */
    if (r->kind == HTTP_RESPONSE_STREAM && c->minor == 0) c->close_after = true;
    c->keep_alive = c->keep_alive && !r->close && !c->close_after && !atomic_load(c->stopping);
    size_t len;
    char *head = http_response_head(r, c->minor, c->keep_alive, &len);
    bool ok = head && out_append(c, head, len);
    free(head);
    c->body = NULL;
    c->body_len = c->body_off = 0;
    c->file_left = 0;
    c->file_off = 0;
    if (ok && !c->head_method) {
        if (r->kind == HTTP_RESPONSE_BYTES && r->len <= INLINE_BODY_MAX)
            ok = out_append(c, r->data, r->len);
        else if (r->kind == HTTP_RESPONSE_BYTES)
            c->body = r->data, c->body_len = r->len;
        else if (r->kind == HTTP_RESPONSE_FD)
            c->file_left = r->size;
        else
            c->streaming = true;
    }
    if (!ok) close_now(c, HTTP_END_ERROR);
}

/* A reply made later: once made, it replaces the one standing in for it
 * (the idle clock starting again there, not at the request). */
static SendResult send_later(HttpConn *c, double now) {
    HttpResponse *made = c->resp->later(c->resp->ctx);
    if (!made) return SEND_PARKED;
    c->last_io = now;
    http_response_free(c->resp);
    send_start(c, made);
    return c->state == ST_SEND ? SENT : SEND_BROKEN;
}

/* A piece of the file: sendfile, or read into c->out for TLS. */
static SendResult send_file(HttpConn *c, double now) {
    size_t n = c->file_left < FILE_PIECE ? (size_t)c->file_left : FILE_PIECE;
    if (c->tls) {
        if (n > IN_CHUNK) n = IN_CHUNK;
        if (!reserve(&c->out, &c->out_cap, 0, n)) return SEND_FAILED;
        ssize_t got = pread(c->resp->fd, c->out, n, c->file_off);
        if (got <= 0) return SEND_BROKEN; /* shorter than said */
        c->out_off = 0;
        c->out_len = (size_t)got;
        c->file_off += got;
        c->file_left -= (uint64_t)got;
        return SENT;
    }
    ssize_t sent = sendfile(c->fd, c->resp->fd, &c->file_off, n);
    if (sent < 0 && io_again()) return SEND_AGAIN;
    if (sent == 0) return SEND_BROKEN; /* the file is shorter than said */
    if (sent < 0) return SEND_FAILED;
    c->file_left -= (uint64_t)sent;
    c->send_window_got += (uint64_t)sent;
    c->last_io = now;
    return SENT;
}

/* The stream's next piece into c->out (empty), as a chunk for HTTP/1.1. */
static SendResult stream_next(HttpConn *c) {
    bool chunks = c->minor == 1;
    size_t room = chunks ? CHUNK_LINE_ROOM : 0;
    if (!reserve(&c->out, &c->out_cap, 0, room + STREAM_PIECE + 2)) return SEND_FAILED;
    ssize_t n = atomic_load(c->stopping) ? HTTP_STREAM_END
                                         : c->resp->fn(c->resp->ctx, c->out + room, STREAM_PIECE);
    if (n == 0) return SEND_PARKED;
    if (n == HTTP_STREAM_END) {
        c->stream_over = true;
        c->out_off = c->out_len = 0;
        return !chunks || out_append(c, "0\r\n\r\n", 5) ? SENT : SEND_FAILED;
    }
    if (n < 0 || (size_t)n > STREAM_PIECE) return SEND_BROKEN;
    c->out_off = 0;
    c->out_len = room + (size_t)n;
    if (chunks) {
        char line[CHUNK_LINE_ROOM + 1];
        int k = snprintf(line, sizeof line, "%zx\r\n", (size_t)n);
        c->out_off = room - (size_t)k;
        memcpy(c->out + c->out_off, line, (size_t)k);
        memcpy(c->out + c->out_len, "\r\n", 2);
        c->out_len += 2;
    }
    return SENT;
}

/* Sends what it can of the response in one turn. */
static SendResult send_more(HttpConn *c, double now) {
    for (int pieces = 0;; pieces++) {
        if (pieces == SENDS_PER_TURN) return SEND_YIELD;
        SendResult r;
        if (c->resp->kind == HTTP_RESPONSE_LATER) {
            if ((r = send_later(c, now)) != SENT) return r;
        } else if (c->out_off < c->out_len) {
            if ((r = send_buf(c, c->out, &c->out_off, c->out_len, now)) != SENT) return r;
            c->out_off = c->out_len = 0;
        } else if (c->body_off < c->body_len) {
            if ((r = send_buf(c, c->body, &c->body_off, c->body_len, now)) != SENT) return r;
        } else if (c->file_left) {
            if ((r = send_file(c, now)) != SENT) return r;
        } else if (c->streaming && !c->stream_over) {
            if ((r = stream_next(c)) != SENT) return r;
        } else {
            return SENT;
        }
    }
}

/* Shuts the socket for writing and drops what still comes, for a moment:
 * closing with unread bytes would reset the connection, and the client
 * could lose the reply it has not read yet. */
static void linger_start(HttpConn *c, double now) {
    if (c->tls) http_tls_bye(c->tls);
    shutdown(c->fd, SHUT_WR);
    c->state = ST_LINGER;
    c->linger_until = now + LINGER_S;
    c->in_len = c->head_scanned = 0;
}

static void response_done(HttpConn *c, double now) {
    http_response_free(c->resp);
    c->resp = NULL;
    void *req = c->req;
    c->req = NULL;
    c->ev->done(req, HTTP_END_COMPLETED);
    if (!c->keep_alive) {
        linger_start(c, now);
        return;
    }
    c->state = ST_HEAD;
    c->idle = true;
    c->last_io = now;
}

/* LINGER: 0 while the client may still send, -1 once it is gone. A
 * client that sends without end yields the thread to the others after
 * READS_PER_TURN reads, as a body does. */
static int linger_read(HttpConn *c) {
    char drop[IN_CHUNK / 4];
    for (int i = 0; i < READS_PER_TURN; i++) {
        ssize_t n = recv(c->fd, drop, sizeof drop, 0);
        if (n < 0 && io_again()) return 0;
        if (n <= 0) return -1;
    }
    return 0;
}

/* Tells the server of a connection refused before any request. */
static void refused(HttpConn *c, const char *why) {
    if (why && c->ev->refused) c->ev->refused(c->ev->app, c->fd, why);
}

/* HANDSHAKE, before GnuTLS reads: a client that speaks plain HTTP to the
 * TLS port (http:// for https://) gets a 400 that says so, in plain HTTP,
 * rather than a closed connection and nothing to go on. 1: it did (the
 * connection lingers); 0: a TLS record starts; -1: nothing came yet. */
static int plain_http_to_tls(HttpConn *c, double now) {
    unsigned char first;
    ssize_t n = recv(c->fd, &first, 1, MSG_PEEK);
    if (n < 0 && io_again()) return -1;
    if (n != 1 || first == 0x16) return 0; /* a handshake record, or GnuTLS sees the end */
    static const char body[] = "{\"error\":{\"code\":\"bad_request\",\"message\":\"this port "
                               "speaks HTTPS: use https://\",\"path\":\"\"}}\n";
    char reply[256];
    int len = snprintf(reply, sizeof reply,
                       "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                       "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                       sizeof body - 1, body);
    /* one small write into an empty socket: taken whole, or the client is gone */
    (void)send(c->fd, reply, (size_t)len, MSG_NOSIGNAL);
    refused(c, "plain HTTP to the HTTPS port (answered 400: use https://)");
    http_tls_free(c->tls);
    c->tls = NULL;
    linger_start(c, now);
    return 1;
}

/* ---- driving it ---- */

/* Does what the connection can now; returns what it waits for. */
static unsigned drive(HttpConn *c, double now) {
    int reads = 0;
    for (;;) {
        switch (c->state) {
        case ST_HANDSHAKE: {
            int plain = c->tls_started ? 0 : plain_http_to_tls(c, now);
            if (plain < 0) return HTTP_CONN_READ;
            if (plain > 0) continue;
            c->tls_started = true;
            int r = http_tls_handshake(c->tls);
            if (r == HTTP_TLS_AGAIN)
                return http_tls_wants_write(c->tls) ? HTTP_CONN_WRITE : HTTP_CONN_READ;
            if (r < 0) {
                refused(c, http_tls_handshake_error(c->tls));
                close_now(c, HTTP_END_READ_ERROR);
            } else {
                c->state = ST_HEAD;
            }
            continue;
        }
        case ST_HEAD:
            if (head_try(c, now)) continue;
            break;
        case ST_BODY:
            if (c->out_off < c->out_len) { /* "100 Continue" first */
                SendResult r = send_buf(c, c->out, &c->out_off, c->out_len, now);
                if (r == SEND_AGAIN) return HTTP_CONN_WRITE;
                if (r == SEND_FAILED) close_now(c, HTTP_END_CLIENT_ABORT);
                else c->out_off = c->out_len = 0;
                continue;
            }
            if (body_feed(c)) continue;
            break;
        case ST_SEND: {
            SendResult r = send_more(c, now);
            if (r == SEND_AGAIN && !c->send_blocked) { /* the socket full: the clock starts */
                c->send_window = now;
                c->send_window_got = 0;
            }
            c->send_blocked = r == SEND_AGAIN;
            c->parked = r == SEND_PARKED;
            if (r == SENT) response_done(c, now);
            else if (r == SEND_FAILED) close_now(c, HTTP_END_CLIENT_ABORT);
            else if (r == SEND_BROKEN) close_now(c, HTTP_END_ERROR);
            else return r == SEND_AGAIN || r == SEND_YIELD ? HTTP_CONN_WRITE : 0;
            continue;
        }
        case ST_LINGER:
            if (linger_read(c) == 0) return HTTP_CONN_READ;
            close_now(c, HTTP_END_COMPLETED);
            continue;
        case ST_CLOSED:
            return HTTP_CONN_CLOSE;
        }
        /* HEAD or BODY: more bytes wanted (TLS may hold some already) */
        if (reads >= READS_PER_TURN && !(c->tls && http_tls_pending(c->tls))) return HTTP_CONN_READ;
        reads++;
        if (read_some(c, now) == 0) return HTTP_CONN_READ;
    }
}

static unsigned settle(HttpConn *c, unsigned interest) { return c->interest = interest; }

HttpConn *http_conn_new(int fd, HttpTls *tls, const HttpEvents *events, const HttpConnTimes *times,
                        const atomic_bool *stopping, double now) {
    HttpConn *c = calloc(1, sizeof *c);
    if (!c) {
        http_tls_free(tls);
        close(fd);
        return NULL;
    }
    *c = (HttpConn){.fd = fd, .tls = tls, .ev = events, .times = *times, .stopping = stopping,
                    .state = tls ? ST_HANDSHAKE : ST_HEAD, .head_since = now, .last_io = now,
                    .interest = HTTP_CONN_READ, .minor = 1};
    return c;
}

unsigned http_conn_io(HttpConn *c, bool hangup, double now) {
    /* a stream waiting for events whose client has gone */
    if (hangup && c->state == ST_SEND && c->parked) close_now(c, HTTP_END_CLIENT_ABORT);
    return settle(c, drive(c, now));
}

/* SEND, the socket full: whether the client took less than HTTP_MIN_RATE
 * over the window that has lasted idle_timeout (else the next begins). */
static bool reads_too_slowly(HttpConn *c, double now) {
    double span = now - c->send_window;
    if (span < c->times.idle_timeout) return false;
    if ((double)c->send_window_got < HTTP_MIN_RATE * span) return true;
    c->send_window = now;
    c->send_window_got = 0;
    return false;
}

unsigned http_conn_tick(HttpConn *c, double now) {
    bool stopping = atomic_load(c->stopping);
    switch (c->state) {
    case ST_HANDSHAKE:
    case ST_HEAD:
        if (stopping) close_now(c, HTTP_END_SHUTDOWN);
        else if (c->idle ? now - c->last_io > c->times.idle_timeout
                         : now - c->head_since > c->times.header_timeout)
            close_now(c, HTTP_END_TIMEOUT);
        break;
    case ST_BODY:
        /* idle, or slower than HTTP_MIN_RATE on the whole: a byte a
         * minute would otherwise hold the connection (and an upload's
         * row and files) for as long as the client likes */
        if (stopping) close_now(c, HTTP_END_SHUTDOWN);
        else if (now - c->last_io > c->times.idle_timeout ||
                 now - c->body_since >
                     c->times.idle_timeout + (double)c->body_got / HTTP_MIN_RATE)
            close_now(c, HTTP_END_TIMEOUT);
        break;
    case ST_SEND:
        if (c->parked) return settle(c, drive(c, now)); /* ask the producer again */
        /* idle whether or not the last turn filled the socket: one that
         * yielded with the socket nearly full waits for room epoll may
         * never report, if the client reads no more */
        if (now - c->last_io > c->times.idle_timeout ||
            (c->send_blocked && reads_too_slowly(c, now)))
            close_now(c, HTTP_END_TIMEOUT);
        break;
    case ST_LINGER:
        if (now > c->linger_until) close_now(c, HTTP_END_COMPLETED);
        break;
    case ST_CLOSED:
        break;
    }
    return c->state == ST_CLOSED ? settle(c, HTTP_CONN_CLOSE) : c->interest;
}

void http_conn_free(HttpConn *c, HttpEnd how) {
    if (!c) return;
    http_response_free(c->resp);
    if (c->req) c->ev->done(c->req, c->state == ST_CLOSED ? c->end : how);
    http_tls_free(c->tls);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

int http_conn_fd(const HttpConn *c) { return c->fd; }

HttpEnd http_conn_end(const HttpConn *c) { return c->end; }
