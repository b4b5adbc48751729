/* attempt_http.h - a rank's requests about its attempt to the daemon
 * (/v1/jobs/<id>/attempts/<n>/...), with the attempt's token, over
 * libcurl: what job/report.h (metrics, checkpoints, resume, end) and
 * job/dataset_fetch.h (the datasets) send.
 *
 * A request that gets no answer, or a 5xx, is sent again after 0.2 s,
 * doubling to 5 s, for up to the timeout; a 4xx is never retried and
 * becomes an error quoting the daemon's message. A download's body goes
 * to a sink, started over on each try.
 */
#ifndef TRAIND_JOB_ATTEMPT_HTTP_H
#define TRAIND_JOB_ATTEMPT_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATTEMPT_HTTP_TOKEN_MAX 256

typedef struct {
    char url[1024]; /* the daemon's base URL, no trailing '/' */
    int64_t job;
    int attempt;
    double timeout_s;                          /* how long a request is retried */
    char auth[ATTEMPT_HTTP_TOKEN_MAX + 32];    /* "Authorization: Bearer <token>" */
} AttemptHttp;

/* Reads the token (token_file's one line; never printed) and starts
 * libcurl once per process. timeout_s <= 0: 300. 0, or -1 with an error. */
int attempt_http_init(AttemptHttp *h, const char *url, int64_t job, int attempt,
                      const char *token_file, double timeout_s);
/* Wipes the token. */
void attempt_http_clear(AttemptHttp *h);

/* Where a 2xx reply's body goes instead of memory: restart before each
 * try (0, or -1 with an error), write each chunk (the bytes taken; fewer
 * is an error the sink has set, and the request is not sent again). */
typedef struct {
    int (*restart)(void *ctx);
    size_t (*write)(const char *data, size_t len, void *ctx);
    void *ctx;
} AttemptSink;

typedef struct {
    const char *method;
    char path[256];          /* after /v1/jobs/<id>/attempts/<n> */
    const char *json;        /* a JSON body, or NULL */
    curl_mime *mime;         /* a multipart body, or NULL */
    const AttemptSink *sink; /* the body into the sink (2xx), or NULL: into reply */
} AttemptRequest;

typedef struct {
    char *data; /* NUL-terminated; NULL when empty */
    size_t len;
    long refused; /* the 4xx status of a refusal (the request failed), else 0 */
    /* refused because the attempt is over: its token opens nothing (401) or
     * the daemon runs another attempt, or none (409 stale_attempt); not a
     * refusal of the request itself (a 409 conflict of a checkpoint) */
    bool attempt_over;
} AttemptReply;

/* Sends q on curl until it is answered below 500 or the timeout passes.
 * The status (2xx) with the reply in *reply (free its data), or -1 with an
 * error: the refusal of a 4xx, a sink's error, or the last failure. */
long attempt_http_request(const AttemptHttp *h, CURL *curl, const AttemptRequest *q,
                          AttemptReply *reply);

#endif
