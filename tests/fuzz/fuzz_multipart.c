/* fuzz_multipart.c - multipart/form-data parsing (server/multipart.c over
 * libmicrohttpd's post processor), driven from bytes.
 *
 * MHD's post processor cannot be made without a connection: it reads the
 * boundary from the request's Content-Type through the connection, and MHD
 * has no public way to make a connection without a socket. So each input
 * is a real HTTP request to a real, in-process MHD daemon: one end of a
 * socketpair is handed to MHD_add_connection, the request is written to
 * the other, and MHD_run turns the loop in this thread (no listening
 * socket, no threads, a few microseconds a request). The body reaches
 * multipart_feed in the pieces MHD reads, as in the daemon; http.c's part
 * of the daemon is two accessors of the MHD connection (http_header and
 * http_connection, server/http.c), given here over this connection, since
 * http.c's request is private to it and its server only listens on TCP.
 *
 * Input: byte 0 sets how many bytes are written at a time (1..16, or
 * multiples of 64 up to 15360), so the parts' boundaries fall at every
 * place in MHD's reads; then the Content-Type header up to the first '\n';
 * then the body. The handler does what routes/dataset_upload.c does: parts
 * fed until one fails, then multipart_end; a part named "abort" makes the
 * callback abort the parse. The callback checks what dataset_upload.c
 * relies on: a field name always, `first` on every empty piece (MHD's call
 * as a part starts) and on no piece of another part's name, data for every
 * non-empty piece.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/multipart.h"
#include "tests/fuzz/fuzz_support.h"

#define CONTENT_TYPE_MAX 512
#define FINISH_ROUNDS 10000 /* MHD_run calls to answer a request that is all sent */

/* http.c's request, reduced to what multipart.c reads from it. */
struct HttpRequest {
    struct MHD_Connection *conn;
};

const char *http_header(const HttpRequest *req, const char *name) {
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct MHD_Connection *http_connection(const HttpRequest *req) { return req->conn; }

typedef struct {
    HttpRequest req;
    Multipart *mp;
    bool failed;        /* multipart_new or _feed refused: the rest is dropped */
    bool in_part;       /* the callback's view of the part in progress */
    char field[160];
    bool has_filename;
} Upload;

static struct MHD_Daemon *daemon_;
static Upload upload;

static int on_piece(void *ctx, const char *field, const char *filename, bool first,
                    const char *data, size_t size) {
    Upload *u = ctx;
    if (!field) fuzz_fail("multipart: a piece without a field name");
    if (size && !data) fuzz_fail("multipart: %zu bytes without data", size);
    /* MHD calls with no data only as a part starts (postprocessor.c's must_ikvi) */
    if (!size && !first) fuzz_fail("multipart: an empty piece of '%s' not first", field);
    if (!first && (!u->in_part || strcmp(field, u->field) != 0 ||
                   u->has_filename != (filename != NULL)))
        fuzz_fail("multipart: piece of '%s' not first, but the part in progress is '%s'",
                  field, u->in_part ? u->field : "(none)");
    if (first) {
        u->in_part = true;
        snprintf(u->field, sizeof u->field, "%s", field);
        u->has_filename = filename != NULL;
    }
    return strcmp(field, "abort") == 0 ? -1 : 0;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!r) fuzz_fail("multipart: MHD_create_response_from_buffer failed");
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)url, (void)method, (void)version;
    Upload *u = cls;
    if (!*con_cls) { /* the headers are in */
        *con_cls = u;
        u->req.conn = conn;
        u->mp = multipart_new(&u->req, on_piece, u);
        u->failed = !u->mp;
        return u->mp ? MHD_YES : reply(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE);
    }
    if (*upload_data_size) {
        if (!u->failed && multipart_feed(u->mp, upload_data, *upload_data_size) != 0)
            u->failed = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    int rc = multipart_end(u->mp);
    u->mp = NULL;
    return reply(conn, rc == 0 && !u->failed ? MHD_HTTP_OK : MHD_HTTP_BAD_REQUEST);
}

/* As upload_finish: a body cut short still ends its parse. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn, (void)con_cls, (void)toe;
    Upload *u = cls;
    if (u->mp) multipart_end(u->mp);
    u->mp = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    daemon_ = MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL,
                               on_request, &upload, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                               &upload, MHD_OPTION_END);
    if (!daemon_) fuzz_fail("multipart: MHD_start_daemon failed");
    return 0;
}

/* Reads what MHD answered; false once it closed the connection. */
static bool drain(int fd) {
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n == 0) return false;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == ECONNRESET) return false;
        fuzz_fail("multipart: recv: %s", strerror(errno));
    }
}

/* Writes all of it, `step` bytes at a time, MHD running after each; false
 * when MHD closed the connection first (it answered early). */
static bool send_all(int fd, const char *p, size_t n, size_t step) {
    while (n > 0) {
        ssize_t w = send(fd, p, n < step ? n : step, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            if (errno == EPIPE || errno == ECONNRESET) return false;
            fuzz_fail("multipart: send: %s", strerror(errno));
        }
        if (w > 0) p += w, n -= (size_t)w;
        MHD_run(daemon_);
        if (!drain(fd)) return false;
    }
    return true;
}

static size_t step_of(uint8_t b) { return b < 16 ? (size_t)b + 1 : (size_t)(b - 15) * 64; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = step_of(data[0]);
    const char *text = (const char *)data + 1, *end = text + size - 1;
    const char *nl = memchr(text, '\n', (size_t)(end - text));
    const char *body = nl ? nl + 1 : end;
    size_t ct_len = (size_t)((nl ? nl : end) - text);
    if (ct_len > CONTENT_TYPE_MAX) return 0;
    char ct[CONTENT_TYPE_MAX + 1];
    for (size_t i = 0; i < ct_len; i++) /* one header line: no control bytes */
        ct[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? ' ' : text[i];
    ct[ct_len] = '\0';
    char head[CONTENT_TYPE_MAX + 256];
    int head_len = snprintf(head, sizeof head,
                            "POST /v1/datasets HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
                            "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                            ct, (size_t)(end - body));

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        fuzz_fail("multipart: socketpair: %s", strerror(errno));
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    upload = (Upload){0};
    if (MHD_add_connection(daemon_, sv[1], (struct sockaddr *)&peer, sizeof peer) != MHD_YES)
        fuzz_fail("multipart: MHD_add_connection: %s", strerror(errno));
    if (send_all(sv[0], head, (size_t)head_len, (size_t)head_len) &&
        send_all(sv[0], body, (size_t)(end - body), step))
        shutdown(sv[0], SHUT_WR);
    int rounds = 0;
    while (drain(sv[0])) {
        if (++rounds > FINISH_ROUNDS) fuzz_fail("multipart: MHD never finished the request");
        MHD_run(daemon_);
    }
    close(sv[0]);
    if (upload.mp) fuzz_fail("multipart: the request ended, its parse did not");
    return 0;
}
