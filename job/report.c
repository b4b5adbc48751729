/* report.c - a rank's reports to the daemon over HTTP (libcurl); see
 * report.h.
 *
 * The trainer's thread only queues (under mu); the sending thread takes
 * the whole queue as one batch and sends it until it is stored, so a batch
 * sent twice (its reply lost) is the one the daemon dedupes: metrics by
 * (name, step), log lines by their numbers. A batch holds at most
 * REPORT_BATCH_METRICS metrics and REPORT_BATCH_LINE_BYTES of lines, well
 * under the daemon's 1 MiB JSON bodies; a longer queue goes in several,
 * one after the other. `pushed` counts the metrics and lines queued,
 * `sent` those stored (FIFO): a flush waits for sent to reach pushed.
 * Progress is not counted: the newest rides with the next batch.
 */
#include "job/report.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/io/durable.h"
#include "core/json_text.h"
#include "job/attempt_http.h"
#include "storage/db.h"
#include "storage/sha256.h"

/* How long the end of an attempt whose reports failed is tried: not the
 * whole --report-timeout again when the daemon was the silent one. */
#define REPORT_END_AFTER_FAILURE_S 20.0

#define REPORT_BATCH_METRICS 4000       /* ~70 bytes each as JSON */
#define REPORT_BATCH_LINE_BYTES (256 << 10)
#define REPORT_LINE_MAX 4096            /* the daemon keeps no more of a line */

typedef struct {
    char name[64];
    int64_t step;
    int epoch;
    double value;
} QueuedMetric;

typedef struct {
    int64_t seq;
    char *line;
} QueuedLine;

/* What is queued, or a batch taken from the queue. */
typedef struct {
    QueuedMetric *metrics;
    int nmetrics, cap_metrics;
    QueuedLine *lines;
    int nlines, cap_lines;
    bool has_progress;
    int epoch;
    int64_t step;
    double samples_per_s;
} Batch;

struct Reporter {
    AttemptHttp http; /* the daemon's URL, the attempt, its token */
    atomic_int *cancel;
    atomic_bool preempted; /* a reply said "preempt": true */
    CURL *main_curl; /* the trainer thread's: flush, checkpoints, resume, end */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Batch queue;       /* under mu */
    int64_t next_seq;  /* under mu */
    uint64_t pushed, sent;
    bool flush_asked, stopping;
    double last_sent;        /* under mu: clock_now_s() of the last batch sent, 0 for none */
    char failure[ERROR_MAX]; /* under mu; "" while none */
    bool attempt_over;       /* under mu: the failure said so (AttemptReply's) */
};

/* ---- the queue ---- */

static void batch_free(Batch *b) {
    for (int i = 0; i < b->nlines; i++) free(b->lines[i].line);
    free(b->metrics);
    free(b->lines);
    memset(b, 0, sizeof *b);
}

/* Room for one more of an array of size elements; false when out of memory. */
static bool grow(void **items, int n, int *cap, size_t size) {
    if (n < *cap) return true;
    int c = *cap ? *cap * 2 : 256;
    void *p = realloc(*items, (size_t)c * size);
    if (!p) return false;
    *items = p;
    *cap = c;
    return true;
}

/* Under mu: a failure stops the reports and the run (the cancel flag);
 * attempt_over: the daemon said the attempt is over. */
static void fail_locked(Reporter *r, const char *msg, bool attempt_over) {
    if (!r->failure[0]) {
        snprintf(r->failure, sizeof r->failure, "%s", msg);
        r->attempt_over = attempt_over;
    }
    atomic_store(r->cancel, 1);
    pthread_cond_broadcast(&r->cv);
}

static void queued(Reporter *r) {
    r->pushed++;
    pthread_mutex_unlock(&r->mu);
}

/* Under mu: the first metrics and lines of the queue (at most a batch's)
 * moved into *out, with the progress; how many metrics and lines, or -1
 * when out of memory. */
static int64_t take_batch(Reporter *r, Batch *out) {
    Batch *q = &r->queue;
    *out = (Batch){.has_progress = q->has_progress, .epoch = q->epoch, .step = q->step,
                   .samples_per_s = q->samples_per_s};
    q->has_progress = false;
    int k = q->nmetrics < REPORT_BATCH_METRICS ? q->nmetrics : REPORT_BATCH_METRICS, l = 0;
    for (size_t bytes = 0; l < q->nlines && bytes < REPORT_BATCH_LINE_BYTES; l++)
        bytes += strlen(q->lines[l].line) + 32;
    if ((k && !(out->metrics = malloc((size_t)k * sizeof *out->metrics))) ||
        (l && !(out->lines = malloc((size_t)l * sizeof *out->lines)))) {
        free(out->metrics);
        return -1;
    }
    if (k) { /* (memcpy takes no NULL, even for 0 bytes) */
        memcpy(out->metrics, q->metrics, (size_t)k * sizeof *q->metrics);
        memmove(q->metrics, q->metrics + k, (size_t)(q->nmetrics - k) * sizeof *q->metrics);
    }
    if (l) {
        memcpy(out->lines, q->lines, (size_t)l * sizeof *q->lines);
        memmove(q->lines, q->lines + l, (size_t)(q->nlines - l) * sizeof *q->lines);
    }
    out->nmetrics = out->cap_metrics = k;
    out->nlines = out->cap_lines = l;
    q->nmetrics -= k;
    q->nlines -= l;
    return k + l;
}

void report_metric(Reporter *r, const char *name, int64_t step, int epoch, double value) {
    pthread_mutex_lock(&r->mu);
    Batch *b = &r->queue;
    if (!grow((void **)&b->metrics, b->nmetrics, &b->cap_metrics, sizeof *b->metrics)) {
        fail_locked(r, "reports: out of memory", 0);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    QueuedMetric *m = &b->metrics[b->nmetrics++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->step = step;
    m->epoch = epoch;
    m->value = value;
    queued(r);
}

void report_log(Reporter *r, const char *line) {
    pthread_mutex_lock(&r->mu);
    Batch *b = &r->queue;
    char *copy = strndup(line, REPORT_LINE_MAX);
    if (!copy || !grow((void **)&b->lines, b->nlines, &b->cap_lines, sizeof *b->lines)) {
        free(copy);
        fail_locked(r, "reports: out of memory", 0);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    b->lines[b->nlines++] = (QueuedLine){.seq = r->next_seq++, .line = copy};
    queued(r);
}

void report_progress(Reporter *r, int epoch, int64_t step, double samples_per_s) {
    pthread_mutex_lock(&r->mu);
    Batch *b = &r->queue;
    b->has_progress = true;
    b->epoch = epoch;
    b->step = step;
    if (samples_per_s > 0) b->samples_per_s = samples_per_s;
    pthread_mutex_unlock(&r->mu);
}

static json_t *batch_json(const Batch *b) {
    json_t *o = json_object(), *metrics = json_array(), *logs = json_array();
    for (int i = 0; metrics && i < b->nmetrics; i++) {
        const QueuedMetric *m = &b->metrics[i];
        json_array_append_new(metrics, json_pack("{s:s, s:I, s:i, s:o}", "name", m->name, "step",
                                                 (json_int_t)m->step, "epoch", m->epoch, "value",
                                                 isfinite(m->value) ? json_real(m->value)
                                                                    : json_null()));
    }
    /* a line not UTF-8 (a file's name, a line cut at a byte count) keeps
     * its place with '?' for its stray bytes: "s" would drop it */
    for (int i = 0; logs && i < b->nlines; i++)
        json_array_append_new(logs, json_pack("{s:I, s:o}", "seq", (json_int_t)b->lines[i].seq,
                                              "line", json_text(b->lines[i].line)));
    json_object_set_new(o, "metrics", metrics);
    json_object_set_new(o, "logs", logs);
    if (b->has_progress)
        json_object_set_new(o, "progress",
                            json_pack("{s:i, s:I, s:f}", "epoch", b->epoch, "step",
                                      (json_int_t)b->step, "samples_per_s", b->samples_per_s));
    return o;
}

/* ---- the sending thread ---- */

/* Sends one batch; 0, or -1 with an error, *attempt_over whether the
 * daemon said the attempt is over. */
static int send_batch(Reporter *r, CURL *h, const Batch *b, bool *attempt_over) {
    json_t *body = batch_json(b);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return error_set("reports: out of memory");
    AttemptRequest q = {.method = "POST", .path = "/report", .json = text};
    AttemptReply reply;
    long status = attempt_http_request(&r->http, h, &q, &reply);
    free(text);
    *attempt_over = reply.attempt_over;
    if (status < 0) return -1;
    json_t *o = reply.data ? json_loads(reply.data, 0, NULL) : NULL;
    if (json_is_true(json_object_get(o, "preempt"))) atomic_store(&r->preempted, true);
    if (json_is_true(json_object_get(o, "cancel"))) atomic_store(r->cancel, 1);
    json_decref(o);
    free(reply.data);
    return 0;
}

static void *sender_main(void *arg) {
    Reporter *r = arg;
    CURL *h = curl_easy_init();
    pthread_mutex_lock(&r->mu);
    if (!h) fail_locked(r, "reports: cannot start libcurl", 0);
    bool more = false; /* the last batch left some of the queue */
    while (!r->stopping && !r->failure[0]) {
        if (!r->flush_asked && !more) { /* a batch a second, or sooner when a flush asks */
            struct timespec deadline;
            clock_deadline_in(&deadline, 1000);
            while (!r->stopping && !r->flush_asked &&
                   pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == 0) {
            }
        }
        /* nothing new: an empty batch after a second all the same, whose
         * reply may say to stop (a cancel or a preemption during a
         * validation, a resume's download, a slow step) */
        bool idle = r->pushed == r->sent && !r->queue.has_progress;
        if (r->stopping || (idle && clock_now_s() - r->last_sent < 1.0)) {
            r->flush_asked = more = false;
            continue;
        }
        Batch b;
        int64_t taken = take_batch(r, &b);
        if (taken < 0) {
            fail_locked(r, "reports: out of memory", false);
            break;
        }
        more = r->sent + (uint64_t)taken < r->pushed;
        r->flush_asked = r->flush_asked && more;
        pthread_mutex_unlock(&r->mu);
        bool over = false;
        int rc = send_batch(r, h, &b, &over);
        batch_free(&b);
        pthread_mutex_lock(&r->mu);
        r->last_sent = clock_now_s();
        if (rc != 0)
            fail_locked(r, error_get(), over);
        else
            r->sent += (uint64_t)taken;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    curl_easy_cleanup(h);
    return NULL;
}

int report_flush(Reporter *r) {
    pthread_mutex_lock(&r->mu);
    uint64_t target = r->pushed;
    while (r->sent < target && !r->failure[0] && !r->stopping) {
        r->flush_asked = true;
        pthread_cond_broadcast(&r->cv);
        pthread_cond_wait(&r->cv, &r->mu);
    }
    int rc = r->failure[0] ? error_set("%s", r->failure) : 0;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

const char *report_failure(Reporter *r) {
    pthread_mutex_lock(&r->mu);
    const char *f = r->failure[0] ? r->failure : NULL;
    pthread_mutex_unlock(&r->mu);
    return f;
}

bool report_attempt_over(Reporter *r) {
    pthread_mutex_lock(&r->mu);
    bool over = r->attempt_over;
    pthread_mutex_unlock(&r->mu);
    return over;
}

/* A failure on the trainer's thread (reply: its request's) stops the
 * reports as one on the sending thread does. Returns -1. */
static int fail_main(Reporter *r, const AttemptReply *reply) {
    pthread_mutex_lock(&r->mu);
    fail_locked(r, error_get(), reply->attempt_over);
    pthread_mutex_unlock(&r->mu);
    return -1;
}

/* ---- checkpoints, resume, end ---- */

bool report_preempted(Reporter *r) { return atomic_load(&r->preempted); }

int report_checkpoint(Reporter *r, const char *dir, int epoch, int64_t step, bool partial) {
    if (report_flush(r) != 0) return -1;
    char model[4200], trainer[4200], step_s[32];
    snprintf(model, sizeof model, "%s/model.safetensors", dir);
    snprintf(trainer, sizeof trainer, "%s/trainer.safetensors", dir);
    snprintf(step_s, sizeof step_s, "%" PRId64, step);
    curl_mime *mime = curl_mime_init(r->main_curl);
    curl_mimepart *p = mime ? curl_mime_addpart(mime) : NULL;
    int rc = -1;
    if (p && curl_mime_name(p, "step") == CURLE_OK && curl_mime_data(p, step_s, CURL_ZERO_TERMINATED) == CURLE_OK &&
        (p = curl_mime_addpart(mime)) && curl_mime_name(p, "model") == CURLE_OK &&
        curl_mime_filedata(p, model) == CURLE_OK && (p = curl_mime_addpart(mime)) &&
        curl_mime_name(p, "trainer") == CURLE_OK && curl_mime_filedata(p, trainer) == CURLE_OK) {
        AttemptRequest q = {.method = "PUT", .mime = mime};
        snprintf(q.path, sizeof q.path, "/checkpoints/%d%s", epoch, partial ? "?partial=true" : "");
        AttemptReply reply;
        if (attempt_http_request(&r->http, r->main_curl, &q, &reply) >= 0) {
            free(reply.data);
            rc = 0;
        } else if (!partial || reply.attempt_over) {
            rc = fail_main(r, &reply);
        } /* a partial one not taken (a quota, a full disk): the run ends as it would */
    } else
        error_set("checkpoint upload: out of memory");
    curl_mime_free(mime);
    return rc == 0 ? 0 : error_prefix("uploading checkpoint %s", dir);
}

/* A download into a file, emptied before each try. */
static int file_restart(void *ctx) {
    FILE *f = ctx;
    rewind(f);
    return ftruncate(fileno(f), 0) == 0 ? 0 : error_sys(errno, "download");
}

static size_t file_write(const char *data, size_t len, void *ctx) {
    size_t n = fwrite(data, 1, len, ctx);
    if (n != len) error_sys(errno, "download");
    return n;
}

/* GET .../resume/<which> of checkpoint `id` into dir/<which>.safetensors;
 * with sha256 (not NULL), the file's hash must be it. */
static int download(Reporter *r, const char *dir, int64_t id, const char *which,
                    const char *sha256) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, which);
    FILE *f = fopen(path, "w+b");
    if (!f) return error_sys(errno, "cannot create %s", path);
    AttemptSink sink = {.restart = file_restart, .write = file_write, .ctx = f};
    AttemptRequest q = {.method = "GET", .sink = &sink};
    snprintf(q.path, sizeof q.path, "/resume/%s?checkpoint=%" PRId64, which, id);
    AttemptReply reply;
    int rc = attempt_http_request(&r->http, r->main_curl, &q, &reply) < 0 ? -1 : 0;
    if (rc == 0) free(reply.data);
    if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0)) rc = error_sys(errno, "%s", path);
    if (fclose(f) != 0 && rc == 0) rc = error_sys(errno, "%s", path);
    char got[SHA256_HEX_LEN + 1];
    int64_t bytes;
    if (rc == 0 && sha256 && sha256_file_hex(path, got, &bytes) != 0) rc = -1;
    if (rc == 0 && sha256 && strcmp(got, sha256) != 0)
        rc = error_set("%s: sha256 %s of its %lld bytes, but the daemon recorded %s for it", path,
                       got, (long long)bytes, sha256);
    return rc;
}

int report_resume(Reporter *r, const char *out_dir, char *dir_out, size_t size) {
    AttemptRequest q = {.method = "GET", .path = "/resume"};
    AttemptReply reply;
    long status = attempt_http_request(&r->http, r->main_curl, &q, &reply);
    if (status < 0) return fail_main(r, &reply);
    json_t *point = status == 200 && reply.data ? json_loads(reply.data, 0, NULL) : NULL;
    free(reply.data);
    if (status == 204) return 0;
    char sha256[SHA256_HEX_LEN + 1];
    const char *said = json_string_value(json_object_get(point, "sha256"));
    snprintf(sha256, sizeof sha256, "%s", said ? said : "");
    json_int_t id = json_integer_value(json_object_get(point, "checkpoint"));
    json_decref(point);
    if (strlen(sha256) != SHA256_HEX_LEN || id <= 0)
        return error_set("resume: the daemon's answer lacks the checkpoint's id or sha256");
    if (snprintf(dir_out, size, "%s/resume-attempt-%d", out_dir, r->http.attempt) >= (int)size)
        return error_set("resume: path too long");
    char *tmp = durable_temp_name(dir_out);
    int rc = tmp && db_mkdir_p(out_dir) == 0 ? 0 : -1;
    if (rc == 0 && mkdir(tmp, 0755) != 0) rc = error_sys(errno, "cannot create %s", tmp);
    if (rc == 0 && (download(r, tmp, id, "model", sha256) != 0 ||
                    download(r, tmp, id, "trainer", NULL) != 0 ||
                    durable_replace_dir(tmp, dir_out) != 0))
        rc = -1;
    if (rc != 0 && tmp) durable_remove_flat_dir(tmp);
    free(tmp);
    return rc == 0 ? 1 : error_prefix("resume");
}

int report_end(Reporter *r, const char *state, const char *error) {
    /* after a failure of the reports the queue is lost, but the end (and
     * why) is still the daemon's to know, tried for a short while: the
     * failure may have been the daemon's silence */
    if (report_flush(r) != 0) {
        if (report_attempt_over(r)) return -1;
        if (r->http.timeout_s > REPORT_END_AFTER_FAILURE_S)
            r->http.timeout_s = REPORT_END_AFTER_FAILURE_S;
    }
    json_t *body = json_pack("{s:s}", "state", state);
    if (body && error) json_object_set_new(body, "error", json_text(error));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return error_set("reports: out of memory");
    AttemptRequest q = {.method = "POST", .path = "/end", .json = text};
    AttemptReply reply;
    long status = attempt_http_request(&r->http, r->main_curl, &q, &reply);
    free(text);
    if (status < 0) return fail_main(r, &reply);
    free(reply.data);
    return 0;
}

/* ---- open, close ---- */

Reporter *report_open(const ReportConfig *c, atomic_int *cancel) {
    Reporter *r = calloc(1, sizeof *r);
    if (!r) {
        error_set("reports: out of memory");
        return NULL;
    }
    r->cancel = cancel;
    atomic_init(&r->preempted, false);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (attempt_http_init(&r->http, c->url, c->job, c->attempt, c->token_file, c->timeout_s) != 0)
        goto fail;
    if (!(r->main_curl = curl_easy_init())) {
        error_set("reports: cannot start libcurl");
        goto fail;
    }
    int e = pthread_create(&r->thread, NULL, sender_main, r);
    if (e != 0) {
        error_set("reports: cannot start a thread: %s", strerror(e));
        goto fail;
    }
    r->started = true;
    return r;
fail:
    report_close(r);
    return NULL;
}

void report_close(Reporter *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->started) pthread_join(r->thread, NULL);
    if (r->main_curl) curl_easy_cleanup(r->main_curl);
    batch_free(&r->queue);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    attempt_http_clear(&r->http);
    free(r);
}
