/* attempt_http.c - a rank's retried requests to the daemon; see
 * attempt_http.h. */
#include "job/attempt_http.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"
#include "job/transfer_watch.h"

#define ATTEMPT_HTTP_BACKOFF_FIRST_S 0.2
#define ATTEMPT_HTTP_BACKOFF_MAX_S 5.0
#define ATTEMPT_HTTP_REPLY_MAX (1 << 20) /* no reply of ours in memory is longer */

/* The token: the file's first line, trimmed. The file must be a regular
 * one that only its owner reads (the daemon writes it 0600; on a shared
 * filesystem a readable token is anyone's attempt), the line whole. */
static int read_token(const char *path, char *out, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) return error_sys(errno, "--token-file %s", path);
    struct stat st;
    int rc = 0;
    if (fstat(fileno(f), &st) != 0)
        rc = error_sys(errno, "--token-file %s", path);
    else if (!S_ISREG(st.st_mode))
        rc = error_set("--token-file %s: not a regular file", path);
    else if (st.st_mode & 077)
        rc = error_set("--token-file %s: mode %03o lets others read it; it must be 600 (chmod 600 "
                       "it)", path, (unsigned)(st.st_mode & 0777));
    bool got = rc == 0 && fgets(out, (int)size, f) != NULL;
    bool whole = got && (strchr(out, '\n') || feof(f));
    fclose(f);
    if (rc != 0) return rc;
    if (got && !whole)
        return error_set("--token-file %s: its line is over %zu bytes, longer than a token", path,
                         size - 2);
    const char *t = got ? out + strspn(out, " \t") : "";
    size_t n = strcspn(t, "\r\n \t");
    memmove(out, t, n);
    out[n] = '\0';
    if (!n) return error_set("--token-file %s: no token in it", path);
    return 0;
}

static void curl_start(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int attempt_http_init(AttemptHttp *h, const char *url, int64_t job, int attempt,
                      const char *token_file, double timeout_s) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_start);
    memset(h, 0, sizeof *h);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/') n--;
    snprintf(h->url, sizeof h->url, "%.*s", (int)n, url);
    h->job = job;
    h->attempt = attempt;
    h->timeout_s = timeout_s > 0 ? timeout_s : 300;
    char token[ATTEMPT_HTTP_TOKEN_MAX];
    if (read_token(token_file, token, sizeof token) != 0) return -1;
    snprintf(h->auth, sizeof h->auth, "Authorization: Bearer %s", token);
    memset(token, 0, sizeof token);
    return 0;
}

void attempt_http_clear(AttemptHttp *h) { memset(h->auth, 0, sizeof h->auth); }

/* ---- the reply ---- */

static size_t into_reply(const char *p, size_t add, AttemptReply *t) {
    if (t->len + add > ATTEMPT_HTTP_REPLY_MAX) return 0;
    char *q = realloc(t->data, t->len + add + 1);
    if (!q) return 0;
    memcpy(q + t->len, p, add);
    t->len += add;
    q[t->len] = '\0';
    t->data = q;
    return add;
}

/* A try's receiving end: a 2xx body into the sink, any other into reply
 * (the daemon's error, for the message). */
typedef struct {
    CURL *curl;
    const AttemptSink *sink;
    AttemptReply *reply;
    bool sink_failed;
} Receive;

static size_t on_receive(char *p, size_t size, size_t n, void *ctx) {
    Receive *r = ctx;
    long status = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    if (!r->sink || status < 200 || status >= 300) return into_reply(p, size * n, r->reply);
    size_t took = r->sink->write(p, size * n, r->sink->ctx);
    if (took != size * n) r->sink_failed = true;
    return took;
}

/* The daemon's error message of a refusal, as one line; *over whether it
 * says the attempt is over (AttemptReply's attempt_over). */
static void refusal(const AttemptHttp *h, const AttemptRequest *q, long status,
                    const AttemptReply *body, char *out, size_t size, bool *over) {
    json_t *o = body->data ? json_loads(body->data, 0, NULL) : NULL;
    json_t *e = json_object_get(o, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    *over = status == 401 || (status == 409 && code && strcmp(code, "stale_attempt") == 0);
    /* a long message is cut: the line stays a line */
    snprintf(out, size,
             "the daemon refused %s %.200s/v1/jobs/%" PRId64 "/attempts/%d%.64s: %ld %.32s: %.400s",
             q->method, h->url, h->job, h->attempt, q->path, status, code ? code : "",
             msg ? msg : "(no message)");
    json_decref(o);
}

static void sleep_s(double s) {
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- one request, retried ---- */

/* libcurl's progress during a file's transfer: stopped when stalled
 * (job/transfer_watch.h). */
typedef struct {
    TransferWatch watch;
    bool stalled;
} Watched;

static int on_progress(void *ctx, curl_off_t down_total, curl_off_t down_now, curl_off_t up_total,
                       curl_off_t up_now) {
    Watched *w = ctx;
    w->stalled = transfer_watch_stalled(&w->watch, clock_now_s(), down_total, down_now, up_total,
                                        up_now);
    return w->stalled;
}

/* One try of q: curl's code, the status into *status. */
static CURLcode try_once(CURL *curl, const AttemptRequest *q, const char *url,
                         struct curl_slist *headers, Receive *rx, Watched *watched,
                         char *curl_err, long *status) {
    curl_easy_reset(curl);
    curl_err[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, q->method);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    if (q->sink || q->mime) {
        /* a file's transfer (a dataset, a checkpoint) takes as long as its
         * size asks: only one stalled is cut (a total limit would cut every
         * transfer past it, try after try), not the daemon's work on an
         * upload it has whole */
        transfer_watch_start(&watched->watch, clock_now_s());
        watched->stalled = false;
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, watched);
        /* the reply's wait may be long: a daemon gone without a word (its
         * host down) is found by TCP's keepalive within two minutes */
        curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(curl, CURLOPT_TCP_KEEPIDLE, 60L);
        curl_easy_setopt(curl, CURLOPT_TCP_KEEPINTVL, 15L);
    } else {
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L); /* a JSON answer: a stall, tried again */
    }
    if (q->json) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, q->json);
    if (q->mime) curl_easy_setopt(curl, CURLOPT_MIMEPOST, q->mime);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_receive);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, rx);
    CURLcode rc = curl_easy_perform(curl);
    *status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    return rc;
}

long attempt_http_request(const AttemptHttp *h, CURL *curl, const AttemptRequest *q,
                          AttemptReply *reply) {
    char url[1400];
    snprintf(url, sizeof url, "%s/v1/jobs/%" PRId64 "/attempts/%d%s", h->url, h->job, h->attempt,
             q->path);
    struct curl_slist *headers = curl_slist_append(NULL, h->auth);
    if (q->json) headers = curl_slist_append(headers, "Content-Type: application/json");
    double start = clock_now_s(), backoff = ATTEMPT_HTTP_BACKOFF_FIRST_S;
    long status = -1, refused = 0;
    bool over = false;
    char why[1024] = "";
    for (;;) {
        *reply = (AttemptReply){0};
        if (q->sink && q->sink->restart(q->sink->ctx) != 0) {
            status = -1;
            break;
        }
        Receive rx = {.curl = curl, .sink = q->sink, .reply = reply};
        Watched watched = {0};
        char curl_err[CURL_ERROR_SIZE];
        CURLcode rc = try_once(curl, q, url, headers, &rx, &watched, curl_err, &status);
        if (rc == CURLE_ABORTED_BY_CALLBACK && watched.stalled && watched.watch.waiting)
            snprintf(curl_err, sizeof curl_err, "no reply %.0f s after the body was sent",
                     TRANSFER_WATCH_REPLY_WAIT_S);
        else if (rc == CURLE_ABORTED_BY_CALLBACK && watched.stalled)
            snprintf(curl_err, sizeof curl_err, "the transfer stalled (under %d bytes/s for %.0f s)",
                     TRANSFER_WATCH_MIN_RATE, TRANSFER_WATCH_WINDOW_S);
        if (rx.sink_failed) { /* the sink's own error (a full disk, too many bytes) */
            status = -1;
            break;
        }
        if (rc == CURLE_OK && status >= 200 && status < 300) break;
        if (rc == CURLE_OK && status >= 400 && status < 500) {
            refusal(h, q, status, reply, why, sizeof why, &over);
            error_set("%s", why);
            refused = status;
            status = -1;
            break;
        }
        if (rc != CURLE_OK)
            snprintf(why, sizeof why, "%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
        else
            refusal(h, q, status, reply, why, sizeof why, &over);
        free(reply->data);
        *reply = (AttemptReply){0};
        if (clock_now_s() - start + backoff > h->timeout_s) {
            error_set("no answer from %s for %.0f s (%s %s): %s", h->url, h->timeout_s, q->method,
                      q->path, why);
            status = -1;
            break;
        }
        sleep_s(backoff);
        backoff = backoff * 2 > ATTEMPT_HTTP_BACKOFF_MAX_S ? ATTEMPT_HTTP_BACKOFF_MAX_S : backoff * 2;
    }
    curl_slist_free_all(headers);
    if (status < 0) {
        free(reply->data);
        *reply = (AttemptReply){.refused = refused, .attempt_over = refused && over};
    }
    return status;
}
