/* test_http_conn.c - server/http_conn.c on a socket pair, the
 * connection's clock driven by the test: a client that takes its response
 * slower than HTTP_MIN_RATE is cut off though a byte moves now and then
 * (which keeps the idle clock fresh); one that reads faster gets the whole
 * response; a stream whose backlog a client takes as fast as it comes
 * yields the worker after a turn's pieces, and is cut off at the idle
 * timeout if its client then reads nothing more. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/http_conn.h"

#define BODY_BYTES (1 << 20)
#define IDLE_S 20.0
#define STEP_S 0.25

static char *body;
static int request; /* the request's state: any address will do */
static HttpEnd ended;
static bool done;

static void *on_head(void *app, HttpHead *head, const HttpHeadError *error, HttpResponse **reply) {
    *reply = NULL;
    return &request;
}

static int on_body(void *req, const char *data, size_t n) { return 0; }

static bool endless; /* the reply: a stream without end, else BODY_BYTES of body */

static ssize_t endless_piece(void *ctx, char *buf, size_t max) {
    memset(buf, 'y', max);
    return (ssize_t)max;
}

static HttpResponse *on_end(void *req, const char *framing_error) {
    return endless ? http_response_stream(200, endless_piece, NULL, NULL)
                   : http_response_bytes(200, body, BODY_BYTES, NULL, NULL);
}

static void on_done(void *req, HttpEnd how) {
    ended = how;
    done = true;
}

static void nonblocking(int fd, int buffers) {
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffers, sizeof buffers), 0);
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffers, sizeof buffers), 0);
    cr_assert_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
}

static const atomic_bool stopping = false;
static const HttpEvents events = {.head = on_head, .body = on_body, .end = on_end,
                                  .done = on_done};
static const HttpConnTimes times = {.header_timeout = IDLE_S, .idle_timeout = IDLE_S};

/* A connection on sv[0] with socket buffers of `buffers` bytes each side,
 * the client's GET sent on sv[1]. */
static HttpConn *connect_get(int sv[2], int buffers) {
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    nonblocking(sv[0], buffers);
    nonblocking(sv[1], buffers);
    done = false;
    HttpConn *c = http_conn_new(sv[0], NULL, &events, &times, &stopping, 0);
    cr_assert(c);
    static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(write(sv[1], get, sizeof get - 1), (ssize_t)(sizeof get - 1));
    return c;
}

/* One GET of BODY_BYTES to a client that takes per_step bytes each
 * STEP_S of the test's clock, for at most until seconds; the bytes it took
 * in *taken. */
static void serve(size_t per_step, double until, size_t *taken) {
    int sv[2];
    endless = false;
    HttpConn *c = connect_get(sv, 4096);
    char *buf = malloc(per_step);
    cr_assert(buf);
    *taken = 0;
    unsigned want = http_conn_io(c, false, 0);
    for (double t = STEP_S; t <= until && !done && !(want & HTTP_CONN_CLOSE); t += STEP_S) {
        ssize_t n = read(sv[1], buf, per_step);
        if (n > 0) *taken += (size_t)n;
        want = http_conn_io(c, false, t);
        if (!(want & HTTP_CONN_CLOSE)) want = http_conn_tick(c, t);
    }
    free(buf);
    http_conn_free(c, HTTP_END_SHUTDOWN);
    close(sv[1]);
}

static void make_body(void) {
    body = malloc(BODY_BYTES);
    cr_assert(body);
    memset(body, 'x', BODY_BYTES);
}

static void free_body(void) { free(body); }

TestSuite(http_conn, .init = make_body, .fini = free_body);

/* 800 bytes a second, under HTTP_MIN_RATE: cut off once a window of
 * IDLE_S has passed with too few bytes taken, long before the response
 * (or the test's 120 s) would end. */
Test(http_conn, a_response_read_too_slowly_is_cut_off) {
    size_t taken;
    serve(200, 120, &taken);
    cr_assert(done, "the connection still open after 120 s, %zu bytes taken", taken);
    cr_assert_eq(ended, HTTP_END_TIMEOUT);
    cr_assert_lt(taken, (size_t)(120 * 800), "cut off early: %zu bytes taken", taken);
}

/* 64 kB a second: the whole response, sent (its last bytes may wait in
 * the socket pair's buffers). */
Test(http_conn, a_response_read_fast_enough_is_sent_whole) {
    size_t taken;
    serve(16384, 120, &taken);
    cr_assert(done);
    cr_assert_eq(ended, HTTP_END_COMPLETED);
    cr_assert_gt(taken, (size_t)BODY_BYTES - 65536);
}

/* An endless stream on sv, sockets of 1 MiB: its first turn is sent, and
 * it asks to write again. */
static HttpConn *endless_after_a_turn(int sv[2]) {
    endless = true;
    HttpConn *c = connect_get(sv, 1 << 20);
    cr_assert_eq(http_conn_io(c, false, 0), HTTP_CONN_WRITE);
    return c;
}

/* An endless stream, the socket with room for more than a turn's 16
 * pieces (the head, then 16 kB pieces, each made then sent): one turn sends
 * those and asks to write again. */
Test(http_conn, a_stream_yields_the_worker_after_a_turn) {
    int sv[2];
    HttpConn *c = endless_after_a_turn(sv);
    size_t got = 0;
    char buf[65536];
    for (ssize_t n; (n = read(sv[1], buf, sizeof buf)) > 0;) got += (size_t)n;
    cr_assert_gt(got, (size_t)4 * 16384, "%zu bytes", got);
    cr_assert_lt(got, (size_t)17 * 16384, "%zu bytes: more than a turn's", got);
    cr_assert_eq(http_conn_io(c, false, 0), HTTP_CONN_WRITE, "the next turn, the same");
    http_conn_free(c, HTTP_END_SHUTDOWN);
    close(sv[1]);
}

/* A turn's pieces sent, the worker yielded, and the client reads nothing
 * more: with the socket nearly full, epoll never says it may write again,
 * so only the ticks see it; they end it at the idle timeout. */
Test(http_conn, a_stream_that_yielded_to_a_client_that_reads_no_more_is_cut_off) {
    int sv[2];
    HttpConn *c = endless_after_a_turn(sv);
    unsigned want = 0;
    double t = STEP_S;
    for (; t <= 3 * IDLE_S && !(want & HTTP_CONN_CLOSE); t += STEP_S) want = http_conn_tick(c, t);
    cr_assert(want & HTTP_CONN_CLOSE, "still open after %.0f s", 3 * IDLE_S);
    cr_assert_eq(http_conn_end(c), HTTP_END_TIMEOUT);
    cr_assert_gt(t, IDLE_S, "cut off at %.2f s, before the idle timeout", t);
    http_conn_free(c, HTTP_END_SHUTDOWN);
    close(sv[1]);
}
