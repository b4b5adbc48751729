/* test_url_fetch.c - server/url_fetch against a real HTTP server on
 * loopback (a thread of this test): what url_fetch_check refuses before
 * anything is fetched, a file fetched whole with its size and sha256, the
 * address policy applied to the connection itself (a name, a redirect),
 * the size limit, a cancel from the progress callback, and no file or
 * temporary left behind by a failure. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "server/url_fetch.h"
#include "storage/sha256.h"
#include "tests/support/tmp_dir.h"

#define BODY "x0,x1,label\n0.5,1.5,1\n2.5,0.5,0\n"

/* ---- a server of fixed answers: /file, /big (Content-Length 1 MB),
 * /stall (headers, then nothing), /redirect (to /file on 127.0.0.1) ---- */

static int listen_fd = -1, port;

static void answer(int c) {
    char req[1024] = "", head[256];
    ssize_t n = recv(c, req, sizeof req - 1, 0);
    if (n <= 0) return;
    req[n] = '\0';
    if (!strncmp(req, "GET /file ", 10)) {
        int len = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                           "Connection: close\r\n\r\n%s", strlen(BODY), BODY);
        send(c, head, (size_t)len, MSG_NOSIGNAL);
    } else if (!strncmp(req, "GET /big ", 9)) {
        const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n";
        send(c, h, strlen(h), MSG_NOSIGNAL);
    } else if (!strncmp(req, "GET /stall ", 11)) {
        const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nx";
        send(c, h, strlen(h), MSG_NOSIGNAL);
        char sink[64];
        while (recv(c, sink, sizeof sink, 0) > 0) {
        } /* until the client goes */
    } else if (!strncmp(req, "GET /redirect ", 14)) {
        int len = snprintf(head, sizeof head, "HTTP/1.1 302 Found\r\nLocation: "
                           "http://127.0.0.1:%d/file\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n", port);
        send(c, head, (size_t)len, MSG_NOSIGNAL);
    } else {
        const char *h = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        send(c, h, strlen(h), MSG_NOSIGNAL);
    }
}

static void *serve(void *arg) {
    for (;;) {
        int c = accept(listen_fd, NULL, NULL);
        if (c < 0) return NULL;
        answer(c);
        close(c);
    }
}

static char dir[64];

static void start_server(void) {
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(listen_fd, 16), 0);
    socklen_t len = sizeof a;
    getsockname(listen_fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, serve, NULL), 0);
    pthread_detach(t);
    tmp_dir_make(dir, sizeof dir, "url-fetch");
}

static void stop_server(void) {
    shutdown(listen_fd, SHUT_RDWR);
    close(listen_fd);
    tmp_dir_remove(dir);
}

TestSuite(url_fetch, .init = start_server, .fini = stop_server);

/* How many entries dir holds (temporaries included). */
static int entries(void) { return tmp_dir_count(dir); }

static UrlFetchResult fetch(const char *path, const AddrPolicy *p, int64_t max,
                            int (*progress)(void *, int64_t, int64_t), int64_t *bytes, char *sha) {
    char url[128], file[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    snprintf(file, sizeof file, "%s/out.csv", dir);
    UrlFetchOptions o = {.policy = p, .max_bytes = max, .timeout_s = 20, .progress = progress};
    return url_fetch(url, file, &o, bytes, sha);
}

Test(url_fetch, fetches_a_file_whole_with_its_size_and_sha256) {
    AddrPolicy open = {.allow_private = true};
    int64_t bytes = 0;
    char sha[65], want[65];
    cr_assert_eq(fetch("/file", &open, 1 << 20, NULL, &bytes, sha), URL_FETCH_OK, "%s",
                 error_get());
    sha256_buffer_hex(BODY, strlen(BODY), want);
    cr_expect_eq(bytes, (int64_t)strlen(BODY));
    cr_expect_str_eq(sha, want);
    char path[128], got[128] = "";
    snprintf(path, sizeof path, "%s/out.csv", dir);
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    got[n] = '\0';
    cr_expect_str_eq(got, BODY);
    cr_expect_eq(entries(), 1, "no temporary left beside it");
}

Test(url_fetch, refuses_a_loopback_connection_unless_allowed) {
    AddrPolicy closed = {0};
    int64_t bytes;
    char sha[65], want[160];
    cr_assert_eq(fetch("/file", &closed, 1 << 20, NULL, &bytes, sha), URL_FETCH_REMOTE);
    snprintf(want, sizeof want, "http://127.0.0.1:%d/file resolves to 127.0.0.1, a loopback "
             "address; the daemon refuses private addresses (serve --import-allow-private)", port);
    cr_expect_str_eq(error_get(), want);
    cr_expect_eq(entries(), 0, "nothing written");
    AddrPolicy net = {0};
    cr_assert_eq(addr_policy_add_nets(&net, "127.0.0.1/32"), 0);
    cr_expect_eq(fetch("/file", &net, 1 << 20, NULL, &bytes, sha), URL_FETCH_OK, "%s",
                 error_get());
}

Test(url_fetch, refuses_a_name_that_resolves_to_loopback) {
    AddrPolicy closed = {0};
    char url[128], file[128], sha[65];
    snprintf(url, sizeof url, "http://localhost:%d/file", port);
    snprintf(file, sizeof file, "%s/out.csv", dir);
    UrlFetchOptions o = {.policy = &closed, .max_bytes = 1 << 20, .timeout_s = 20};
    int64_t bytes;
    cr_assert_eq(url_fetch(url, file, &o, &bytes, sha), URL_FETCH_REMOTE);
    cr_expect(strstr(error_get(), "a loopback address; the daemon refuses private addresses"),
              "%s", error_get());
    cr_expect_eq(url_fetch_check(url, &closed), 0, "a name is judged when it is connected to");
}

Test(url_fetch, follows_redirects_through_the_policy) {
    AddrPolicy open = {.allow_private = true};
    int64_t bytes;
    char sha[65];
    cr_expect_eq(fetch("/redirect", &open, 1 << 20, NULL, &bytes, sha), URL_FETCH_OK, "%s",
                 error_get());
    cr_expect_eq(bytes, (int64_t)strlen(BODY));
}

Test(url_fetch, stops_at_the_size_limit) {
    AddrPolicy open = {.allow_private = true};
    int64_t bytes;
    char sha[65];
    cr_assert_eq(fetch("/big", &open, 1000, NULL, &bytes, sha), URL_FETCH_TOO_LARGE);
    cr_expect(strstr(error_get(), "over the import limit of 1000 bytes"), "%s", error_get());
    cr_expect_eq(fetch("/file", &open, 10, NULL, &bytes, sha), URL_FETCH_TOO_LARGE);
    cr_expect_eq(entries(), 0, "no temporary left");
}

static int cancel_after_a_byte(void *ctx, int64_t got, int64_t expected) { return got >= 1; }

Test(url_fetch, is_cancelled_by_its_progress_callback) {
    AddrPolicy open = {.allow_private = true};
    int64_t bytes;
    char sha[65];
    cr_assert_eq(fetch("/stall", &open, 1 << 20, cancel_after_a_byte, &bytes, sha),
                 URL_FETCH_CANCELLED, "%s", error_get());
    cr_expect(strstr(error_get(), "/stall: cancelled"), "%s", error_get());
    cr_expect_eq(entries(), 0, "no temporary left");
}

Test(url_fetch, says_what_the_server_answered) {
    AddrPolicy open = {.allow_private = true};
    int64_t bytes;
    char sha[65], want[128];
    cr_assert_eq(fetch("/missing", &open, 1 << 20, NULL, &bytes, sha), URL_FETCH_REMOTE);
    snprintf(want, sizeof want, "http://127.0.0.1:%d/missing: HTTP 404 from the server", port);
    cr_expect_str_eq(error_get(), want);
    /* credentials and a presigned query are not repeated: a shared
     * dataset's error is every user's to read */
    char url[160], file[128];
    snprintf(url, sizeof url, "http://bob:s3cret@127.0.0.1:%d/missing?X-Amz-Signature=abc", port);
    snprintf(file, sizeof file, "%s/out.csv", dir);
    UrlFetchOptions o = {.policy = &open, .max_bytes = 1 << 20, .timeout_s = 20};
    cr_assert_eq(url_fetch(url, file, &o, &bytes, sha), URL_FETCH_REMOTE);
    snprintf(want, sizeof want, "http://127.0.0.1:%d/missing?...: HTTP 404 from the server", port);
    cr_expect_str_eq(error_get(), want);
}

Test(url_fetch, shows_urls_without_credentials) {
    static const char *const cases[][2] = {
        {"https://u:p@host/a/b?X-Amz-Signature=abc#f", "https://host/a/b?..."},
        {"http://host:8080/x.csv", "http://host:8080/x.csv"},
        {"http://a@b@host/x", "http://host/x"},
        {"http://host/p@q", "http://host/p@q"},
        {"https://host?token=1", "https://host?..."},
        {"http://2130706433:8/x", "http://2130706433:8/x"}, /* as the user wrote it */
        {"http://host/x#frag", "http://host/x"},
        /* credentials in libcurl's reading, not the text's: one slash is
         * a URL with a user and a password to libcurl, shown as it
         * rebuilds it without them */
        {"http:/$user:secret@example.com/a?sig=1", "http://example.com/a?..."},
        {"HTTP://U:P@Host:80/x", "http://Host:80/x"},
        /* no URL to libcurl, or none with credentials: the text's reading */
        {"user:secret@host/x", "host/x"},
        {"ftp://u:p@exa mple.com/x?y", "ftp://exa mple.com/x?..."},
        {"http:/u:secret@ho st/x", "ho st/x"}, /* past a slash too, when no URL */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        url_fetch_shown(cases[i][0], out, sizeof out);
        cr_expect_str_eq(out, cases[i][1], "%s", cases[i][0]);
    }
}

Test(url_fetch, checks_urls_before_fetching) {
    AddrPolicy closed = {0};
    const struct {
        const char *url, *message;
    } bad[] = {
        {"file:///etc/passwd", "only http:// and https:// URLs are imported"},
        {"ftp://example.com/x", "only http:// and https:// URLs are imported"},
        {"gopher://example.com/", "only http:// and https:// URLs are imported"},
        {"example.com/x", "is not a URL"},
        {"ftp://u:secret@example.com/x", "not 'ftp://example.com/x'"},
        {"http://exa mple.com/", "is not a URL"},
        {"http://127.0.0.1:8080/x", "resolves to 127.0.0.1, a loopback address"},
        {"http://[::1]/x", "resolves to ::1, a loopback address"},
        {"http://169.254.169.254/latest/meta-data", "a link-local address"},
        {"HTTPS://10.0.0.1/x", "resolves to 10.0.0.1, a private address"},
        {"http://2130706433/", "resolves to 127.0.0.1, a loopback address"},
        {"http://0.0.0.0/", "the unspecified address"},
        {"http://[::ffff:192.168.1.1]/", "a private address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_eq(url_fetch_check(bad[i].url, &closed), -1, "%s accepted", bad[i].url);
        cr_expect(strstr(error_get(), bad[i].message), "%s: %s", bad[i].url, error_get());
    }
    const char *good[] = {"http://example.com/a.csv", "https://8.8.8.8/x?y=1",
                          "https://[2606:4700::1111]/x", "HTTP://example.com"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        cr_expect_eq(url_fetch_check(good[i], &closed), 0, "%s: %s", good[i], error_get());
    AddrPolicy open = {.allow_private = true};
    cr_expect_eq(url_fetch_check("http://127.0.0.1:8080/x", &open), 0);
}
