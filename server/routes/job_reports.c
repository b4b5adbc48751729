/* job_reports.c - the routes the ranks of an attempt run outside the daemon
 * (server/executor.h) report through, with the attempt's token
 * (Authorization: Bearer <token>, server/remote_attempt.h: 401 for a
 * wrong one, 409 stale_attempt once the attempt is over):
 *
 *   POST /v1/jobs/{id}/attempts/{n}/report           metrics, log lines, progress
 *   PUT  /v1/jobs/{id}/attempts/{n}/checkpoints/{e}  a checkpoint (multipart;
 *                                                    ?partial=true: mid-epoch)
 *   GET  /v1/jobs/{id}/attempts/{n}/resume           where the attempt starts
 *   GET  /v1/jobs/{id}/attempts/{n}/resume/{file}    model | trainer of it
 *   GET  /v1/jobs/{id}/attempts/{n}/datasets/{d}/{file}  a file of the job's
 *                                                    train or val dataset
 *   POST /v1/jobs/{id}/attempts/{n}/end              how the ranks ended
 *
 * What they store is what an attempt in process stores: metrics through
 * the MetricWriter (keyed (job, name, step): a batch sent again replaces,
 * never doubles), log lines numbered per attempt from 0 (a line is stored
 * once: db_job_remote_logs), the live progress on the slot following the
 * attempt, checkpoints through server/checkpoint_store.h. A report's reply
 * says whether the job was asked to stop ("cancel": true), and whether by a
 * preemption ("preempt": true: rank 0 uploads a partial checkpoint where
 * the ranks stopped, then reports their end).
 *
 * The datasets route serves the nodes that fetch the job's datasets
 * (serve --slurm-datasets fetch, job/dataset_fetch.h): the token opens the
 * files of the datasets the job trains and validates on, no other (403),
 * with the file's recorded sha256 in X-Checksum-SHA256.
 *
 * GET .../resume also restarts the attempt's log numbering: a rank that
 * asks it is a run of the attempt starting over (a rank killed and
 * started again, a launcher's requeue), numbering its lines from 0 again.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "server/api.h"
#include "server/checkpoint_store.h"
#include "server/disk_space.h"
#include "server/multipart.h"
#include "server/remote_attempt.h"

/* Lines and metrics one report may carry. */
#define REPORT_MAX_ITEMS 100000

/* ---- the attempt's token ---- */

static int64_t int_param(HttpRequest *req, int i, int64_t max) {
    const char *s = http_param(req, i);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 0 || v > max || s[0] == '+' || s[0] == ' ') return -1;
    return v;
}

/* The job and attempt of the route, checked against the request's token:
 * 0, or -1 after replying 401, 404 or 409. */
/* Whether `attempt` is job id's current one and token its token: 0, or -1
 * with the reply in *err (401 a wrong token, 409 stale_attempt, 5xx the
 * database failing). A job without a token is answered as a wrong token:
 * ids are not told. */
static int attempt_current(Api *api, int64_t id, int attempt, const char *token,
                           ApiPendingError *err) {
    DbJobRemote r;
    error_clear();
    int st = db_job_remote_get(api->db, id, &r);
    if (st == DB_NOT_FOUND) {
        r = (DbJobRemote){0};
    } else if (st != DB_OK) {
        int status = api_storage_status(0);
        return api_pending_error(err, status, api_storage_code(status), "", "%s",
                                 *error_get() ? error_get() : "storage failed");
    }
    char why[256];
    switch (remote_attempt_check(&r, id, attempt, token, why, sizeof why)) {
    case REMOTE_AUTH_OK: return 0;
    case REMOTE_AUTH_BAD_TOKEN: return api_pending_error(err, 401, "unauthorized", "", "%s", why);
    case REMOTE_AUTH_STALE: return api_pending_error(err, 409, "stale_attempt", "", "%s", why);
    }
    return -1;
}

static int remote_auth(HttpRequest *req, int64_t *job, int *attempt) {
    int64_t id = int_param(req, 0, INT64_MAX), n = int_param(req, 1, 1 << 30);
    if (id <= 0 || n <= 0)
        return http_reply_error(req, 404, "not_found", NULL,
                                "expected /v1/jobs/<job id>/attempts/<attempt number>/..."),
               -1;
    const char *token = http_bearer(req);
    if (!token || !*token)
        return http_reply_error(req, 401, "unauthorized", NULL,
                                "send the attempt's token: 'Authorization: Bearer <token>'"),
               -1;
    ApiPendingError err = {0};
    if (attempt_current(http_app(req), id, (int)n, token, &err) != 0)
        return http_reply_error(req, err.status, err.code, NULL, "%s", err.msg), -1;
    *job = id;
    *attempt = (int)n;
    return 0;
}

/* ---- POST .../report ---- */

typedef struct {
    char path[64];
    char msg[256];
} FieldError;

static int field_error(FieldError *e, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int field_error(FieldError *e, const char *path, const char *fmt, ...) {
    snprintf(e->path, sizeof e->path, "%s", path);
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(e->msg, sizeof e->msg, "%s: ", path);
    vsnprintf(e->msg + n, sizeof e->msg - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* An integer member in [0, max] of o (path "<at>.<key>"); absent: def, or
 * an error when required (def < 0). */
static int get_count(json_t *o, const char *at, const char *key, int64_t def, int64_t max,
                     int64_t *out, FieldError *e) {
    char path[64];
    snprintf(path, sizeof path, "%s%s%s", at, *at ? "." : "", key);
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = def;
        return def < 0 ? field_error(e, path, "required") : 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return field_error(e, path, "expected an integer from 0 to %" PRId64, max);
    *out = json_integer_value(v);
    return 0;
}

/* Only these members in o. */
static int known_members(json_t *o, const char *at, const char *const *keys, FieldError *e) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool known = false;
        for (int i = 0; keys[i]; i++) known |= !strcmp(key, keys[i]);
        if (known) continue;
        char path[64];
        snprintf(path, sizeof path, "%s%s%.32s", at, *at ? "." : "", key);
        return field_error(e, path, "unknown member");
    }
    return 0;
}

/* An array member of the body, up to REPORT_MAX_ITEMS (absent: empty). */
static int get_array(json_t *body, const char *key, json_t **out, FieldError *e) {
    *out = json_object_get(body, key);
    if (!*out) return 0;
    if (!json_is_array(*out)) return field_error(e, key, "expected an array");
    if (json_array_size(*out) > REPORT_MAX_ITEMS)
        return field_error(e, key, "more than %d entries", REPORT_MAX_ITEMS);
    return 0;
}

static int check_metric(json_t *m, size_t i, FieldError *e) {
    static const char *const keys[] = {"name", "step", "epoch", "value", NULL};
    char at[40], path[64];
    snprintf(at, sizeof at, "metrics[%zu]", i);
    if (!json_is_object(m)) return field_error(e, at, "expected an object");
    int64_t x;
    const char *name = json_string_value(json_object_get(m, "name"));
    snprintf(path, sizeof path, "%s.name", at);
    if (!name || !*name || strlen(name) > DB_METRIC_NAME_MAX)
        return field_error(e, path, "expected a string of 1 to %d bytes", DB_METRIC_NAME_MAX);
    json_t *v = json_object_get(m, "value");
    snprintf(path, sizeof path, "%s.value", at);
    if (!v || !(json_is_number(v) || json_is_null(v)))
        return field_error(e, path, "expected a number (null for NaN)");
    return known_members(m, at, keys, e) || get_count(m, at, "step", -1, INT64_MAX / 2, &x, e) ||
                   get_count(m, at, "epoch", -1, INT32_MAX, &x, e)
               ? -1
               : 0;
}

static int check_log(json_t *l, size_t i, FieldError *e) {
    static const char *const keys[] = {"seq", "line", NULL};
    char at[40], path[64];
    snprintf(at, sizeof at, "logs[%zu]", i);
    if (!json_is_object(l)) return field_error(e, at, "expected an object");
    int64_t x;
    snprintf(path, sizeof path, "%s.line", at);
    if (!json_is_string(json_object_get(l, "line"))) return field_error(e, path, "expected a string");
    return known_members(l, at, keys, e) || get_count(l, at, "seq", -1, INT64_MAX / 2, &x, e);
}

static int check_progress(json_t *p, DbJobProgress *out, FieldError *e) {
    static const char *const keys[] = {"epoch", "step", "samples_per_s", NULL};
    if (!json_is_object(p)) return field_error(e, "progress", "expected an object");
    int64_t epoch, step;
    if (known_members(p, "progress", keys, e) ||
        get_count(p, "progress", "epoch", -1, INT32_MAX, &epoch, e) ||
        get_count(p, "progress", "step", -1, INT64_MAX / 2, &step, e))
        return -1;
    json_t *sps = json_object_get(p, "samples_per_s");
    if (sps && !(json_is_number(sps) && json_number_value(sps) >= 0))
        return field_error(e, "progress.samples_per_s", "expected a number >= 0");
    *out = (DbJobProgress){.epoch = (int)epoch, .step = step,
                           .samples_per_s = sps ? json_number_value(sps) : 0};
    return 0;
}

/* The whole body checked before anything of it is stored. */
static int check_report(json_t *body, json_t **metrics, json_t **logs, json_t **progress,
                        DbJobProgress *p, FieldError *e) {
    static const char *const keys[] = {"metrics", "logs", "progress", NULL};
    if (known_members(body, "", keys, e) || get_array(body, "metrics", metrics, e) ||
        get_array(body, "logs", logs, e))
        return -1;
    for (size_t i = 0; *metrics && i < json_array_size(*metrics); i++)
        if (check_metric(json_array_get(*metrics, i), i, e)) return -1;
    for (size_t i = 0; *logs && i < json_array_size(*logs); i++)
        if (check_log(json_array_get(*logs, i), i, e)) return -1;
    *progress = json_object_get(body, "progress");
    return *progress ? check_progress(*progress, p, e) : 0;
}

/* Pushes the metrics to the writer; *epoch_end when an epoch ended among
 * them (its "samples_per_s"). 0, or -1 with the writer's error (out of
 * memory: the rank sends the report again, its rows deduped). */
static int push_metrics(Api *api, int64_t job, json_t *metrics, bool *epoch_end) {
    *epoch_end = false;
    for (size_t i = 0; metrics && i < json_array_size(metrics); i++) {
        json_t *m = json_array_get(metrics, i);
        json_t *v = json_object_get(m, "value");
        *epoch_end |= !strcmp(json_string_value(json_object_get(m, "name")), "samples_per_s");
        if (metric_writer_push(api->metrics, job, json_string_value(json_object_get(m, "name")),
                               json_integer_value(json_object_get(m, "step")),
                               (int)json_integer_value(json_object_get(m, "epoch")),
                               json_is_null(v) ? NAN : json_number_value(v)) != 0)
            return -1;
    }
    return 0;
}

/* The log lines through db_job_remote_logs: *stored new ones. With none,
 * the attempt is still checked there (DB_CONFLICT once it is over). */
static int store_logs(Api *api, int64_t job, int attempt, json_t *logs, int *stored) {
    *stored = 0;
    size_t n = logs ? json_array_size(logs) : 0;
    int64_t *seqs = calloc(n + 1, sizeof *seqs);
    const char **lines = calloc(n + 1, sizeof *lines);
    int rc = DB_ERROR;
    if (!seqs || !lines)
        error_set("out of memory");
    else {
        for (size_t i = 0; i < n; i++) {
            json_t *l = json_array_get(logs, i);
            seqs[i] = json_integer_value(json_object_get(l, "seq"));
            lines[i] = json_string_value(json_object_get(l, "line"));
        }
        rc = db_job_remote_logs(api->db, job, attempt, seqs, lines, (int)n, stored);
    }
    free(seqs);
    free(lines);
    return rc;
}

/* The JSON body of a request with the attempt's token: NULL after
 * replying (remote_auth's answers, bad JSON). */
static json_t *remote_body(HttpRequest *req, int64_t *job, int *attempt) {
    return remote_auth(req, job, attempt) == 0 ? http_json_body(req) : NULL;
}

int job_report_post(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t job;
    int attempt;
    json_t *body = remote_body(req, &job, &attempt);
    if (!body) return 0;
    json_t *metrics = NULL, *logs = NULL, *progress = NULL;
    DbJobProgress p;
    FieldError e;
    if (check_report(body, &metrics, &logs, &progress, &p, &e) != 0) {
        json_decref(body);
        return http_reply_error(req, 400, "invalid", e.path, "%s", e.msg);
    }
    /* the logs first: their transaction checks the attempt is still the
     * job's, and a stale report's metrics must not follow them in */
    int stored_logs = 0;
    error_clear();
    int st = store_logs(api, job, attempt, logs, &stored_logs);
    if (st != DB_OK) {
        json_decref(body);
        return st == DB_CONFLICT ? http_reply_error(req, 409, "stale_attempt", NULL, "%s", error_get())
                                 : api_reply_db(req, st, NULL);
    }
    if (stored_logs) scheduler_bump(api->sched); /* the streams of its lines, whatever follows */
    /* an HTTP thread must not wait on a queue the database cannot empty:
     * the rank retries (its rows and lines deduplicated) */
    size_t n_queued = metrics ? json_array_size(metrics) : 0;
    if (!metric_writer_has_room(api->metrics, n_queued)) {
        json_decref(body);
        return http_reply_error(req, 503, "unavailable", "metrics",
                                "the daemon's metric queue is full (its database is not keeping "
                                "up): report again later");
    }
    bool epoch_end = false;
    if (push_metrics(api, job, metrics, &epoch_end) != 0) {
        json_decref(body);
        return http_reply_error(req, 503, "unavailable", "metrics", "%s", error_get());
    }
    bool cancel = false, preempt = false;
    DbJobProgress live;
    /* as an attempt in process does: the progress stored at each epoch's
     * end, so that a daemon restarted shows where the job stood */
    if (scheduler_remote_progress(api->sched, job, progress ? &p : NULL, &cancel, &preempt) ==
            DB_OK &&
        epoch_end && scheduler_progress(api->sched, job, &live) == DB_OK)
        db_job_set_progress(api->db, job, &live);
    json_decref(body);
    return http_reply_json(req, 200, json_pack("{s:i, s:i, s:b, s:b}", "stored_metrics", (int)n_queued,
                                               "stored_logs", stored_logs, "cancel", cancel,
                                               "preempt", preempt));
}

/* ---- POST .../end ---- */

int job_end_post(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t job;
    int attempt;
    json_t *body = remote_body(req, &job, &attempt);
    if (!body) return 0;
    static const char *const keys[] = {"state", "error", NULL};
    FieldError e;
    const char *state_s = json_string_value(json_object_get(body, "state"));
    json_t *err = json_object_get(body, "error");
    DbJobState state = DB_JOB_QUEUED;
    int bad = known_members(body, "", keys, &e);
    if (!bad && (!state_s || db_job_state_parse(state_s, &state) != DB_OK ||
                 !db_job_state_final(state)))
        bad = field_error(&e, "state", "expected \"succeeded\", \"failed\" or \"cancelled\"");
    if (!bad && err && !json_is_string(err) && !json_is_null(err))
        bad = field_error(&e, "error", "expected a string");
    if (bad) {
        json_decref(body);
        return http_reply_error(req, 400, "invalid", e.path, "%s", e.msg);
    }
    /* the metrics its reports were answered for are committed first: a
     * daemon killed after the end was stored would end the job as the
     * ranks said (db_job_recover_running), without them */
    error_clear();
    int st = metric_writer_flush(api->metrics) == 0 ? DB_OK : DB_ERROR;
    if (st == DB_OK)
        st = db_job_remote_end_set(api->db, job, attempt, state, json_string_value(err));
    json_decref(body);
    if (st == DB_CONFLICT) return http_reply_error(req, 409, "stale_attempt", NULL, "%s", error_get());
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    return http_reply_json(req, 200, json_pack("{s:I, s:i, s:s}", "job_id", (json_int_t)job,
                                               "attempt", attempt, "state",
                                               db_job_state_name(state)));
}

/* ---- GET .../resume[/{file}] ---- */

int job_resume_get(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t job;
    int attempt;
    if (remote_auth(req, &job, &attempt) != 0) return 0;
    /* what an earlier run of the attempt reported is committed before the
     * metrics past the checkpoint go, so none of it lands after */
    error_clear();
    if (metric_writer_flush(api->metrics) != 0) return api_reply_db(req, DB_ERROR, NULL);
    DbCheckpoint c;
    int st = db_checkpoint_latest(api->db, job, &c);
    if (st != DB_OK && st != DB_NOT_FOUND) return api_reply_db(req, st, NULL);
    /* the attempt checked again (it may have ended since remote_auth: over,
     * as there) as its log numbering starts again, before any of the job's
     * metrics go: a stale resume must not delete its successor's */
    int rc = db_job_remote_log_restart(api->db, job, attempt);
    if (rc == DB_CONFLICT) return http_reply_error(req, 409, "stale_attempt", NULL, "%s", error_get());
    int64_t from = st == DB_OK ? c.step : -1, deleted = 0;
    if (rc == DB_OK) rc = db_metric_delete_after(api->db, job, from, &deleted);
    if (rc == DB_OK) metrics_history_forget(api, job);
    if (rc != DB_OK) return api_reply_db(req, rc, NULL);
    if (st == DB_NOT_FOUND) {
        scheduler_job_log(api->sched, job,
                          "attempt %d: no checkpoint, starting over (%" PRId64
                          " metric rows superseded)", attempt, deleted);
        return http_reply_text(req, 204, "application/json", "", 0);
    }
    scheduler_job_log(api->sched, job,
                      "attempt %d: resumes from %s at epoch %d, step %" PRId64 " (%" PRId64
                      " metric rows past it superseded)", attempt, c.path, c.epoch, c.step, deleted);
    return http_reply_json(req, 200, json_pack("{s:i, s:I, s:I, s:s}", "epoch", c.epoch, "step",
                                               (json_int_t)c.step, "checkpoint",
                                               (json_int_t)c.id, "sha256", c.sha256));
}

int job_resume_file_get(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t job;
    int attempt;
    if (remote_auth(req, &job, &attempt) != 0) return 0;
    const char *which = http_param(req, 2);
    if (strcmp(which, "model") != 0 && strcmp(which, "trainer") != 0)
        return http_reply_error(req, 404, "not_found", NULL,
                                "no file '%.32s' (the files: model, trainer)", which);
    /* ?checkpoint= names the one .../resume answered, so that model and
     * trainer come from it even when a newer one lands in between */
    int64_t id;
    if (http_query_int(req, "checkpoint", 0, 1, INT64_MAX, &id) != 0) return 0;
    DbCheckpoint c;
    error_clear();
    int st = id ? db_checkpoint_get(api->db, id, &c) : db_checkpoint_latest(api->db, job, &c);
    if (st == DB_OK && c.job_id != job) st = DB_NOT_FOUND;
    if (st == DB_NOT_FOUND && id)
        return http_reply_error(req, 404, "not_found", "checkpoint",
                                "job %" PRId64 " has no checkpoint %" PRId64 " (pruned since?)",
                                job, id);
    if (st == DB_NOT_FOUND)
        return http_reply_error(req, 404, "not_found", NULL, "job %" PRId64 " has no checkpoint",
                                job);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    char file[32], name[96];
    snprintf(file, sizeof file, "%s.safetensors", which);
    snprintf(name, sizeof name, "job-%" PRId64 "-step-%" PRId64 "-%s", job, c.step, file);
    return checkpoint_reply_file(req, &c, file, name);
}

/* ---- GET .../datasets/{dataset}/{file} ---- */

/* The file of the record named `name`: its index, or -1 after a 404
 * listing the files. */
static int dataset_file_index(HttpRequest *req, const DbDataset *rec, const char *name) {
    char names[512] = "";
    for (int i = 0; i < rec->num_files; i++) {
        if (!strcmp(rec->files[i].name, name)) return i;
        size_t n = strlen(names);
        snprintf(names + n, sizeof names - n, "%s%.100s", i ? ", " : "", rec->files[i].name);
    }
    http_reply_error(req, 404, "not_found", NULL, "dataset '%s' has no file '%.64s' (its files: %s)",
                     rec->name, name, names);
    return -1;
}

/* Streams file i of the record, its sha256 in a header. */
static int reply_dataset_file(HttpRequest *req, const DbDataset *rec, int i) {
    Api *api = http_app(req);
    char dir[4096], path[4300];
    if (db_dataset_dir(api->db, rec->id, dir, sizeof dir) != 0)
        return api_reply_db(req, DB_ERROR, NULL);
    snprintf(path, sizeof path, "%s/%s", dir, rec->files[i].name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int err = errno; /* deleted between the row and the open */
        if (fd >= 0) close(fd);
        return http_reply_error(req, err == ENOENT ? 404 : 503,
                                err == ENOENT ? "not_found" : "unavailable", NULL,
                                "dataset '%s', file '%s': %s", rec->name, rec->files[i].name,
                                strerror(err));
    }
    http_reply_fd(req, 200, "application/octet-stream", fd, (uint64_t)sb.st_size);
    http_reply_header(req, "X-Checksum-SHA256", rec->files[i].sha256);
    return 0;
}

int job_dataset_file_get(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t job;
    int attempt;
    if (remote_auth(req, &job, &attempt) != 0) return 0;
    int64_t id = int_param(req, 2, INT64_MAX);
    DbJob j;
    error_clear();
    int st = db_job_get(api->db, job, &j);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    int64_t train = j.train_dataset, val = j.val_dataset;
    db_job_clear(&j);
    if (id <= 0 || (id != train && id != val)) {
        char ids[64];
        int n = snprintf(ids, sizeof ids, "%" PRId64, train);
        if (val > 0) snprintf(ids + n, sizeof ids - (size_t)n, ", %" PRId64, val);
        return http_reply_error(req, 403, "forbidden", NULL,
                                "the attempt's token opens only job %" PRId64 "'s datasets (%s), "
                                "not '%.32s'", job, ids, http_param(req, 2));
    }
    DbDataset rec;
    st = db_dataset_get(api->db, id, &rec);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    int i = dataset_file_index(req, &rec, http_param(req, 3));
    int rc = i < 0 ? 0 : reply_dataset_file(req, &rec, i);
    db_dataset_clear(&rec);
    return rc;
}

/* ---- PUT .../checkpoints/{epoch} ---- */

/* One upload: the fields, the two files streamed into a temporary
 * directory beside the checkpoint's, renamed into place at the end. */
typedef struct {
    Api *api;
    int64_t job;
    int attempt, epoch;
    bool partial;   /* ?partial=true: where a preempted attempt stopped, mid-epoch */
    Multipart *mp;
    char tmp[4400]; /* "" once renamed into place or removed */
    int fd;         /* the file in progress, -1 for none */
    bool have_model, have_trainer, in_step;
    char step[32];
    size_t step_len;
    int64_t step_number;  /* the step field, parsed at the end */
    char *token;          /* the request's, copied for the store's admit */
    int keep_last;        /* the job's spec's */
    ApiPendingError err; /* the first error, replied by data() or the handler */
    /* the store, on a thread of Api's stores: its row, once done */
    DbCheckpoint stored;
    atomic_bool done;
    atomic_int refs; /* the request's, and the store's while it runs */
    uint64_t counted; /* scheduler_upload_begin's claim (0: none), till released */
} CkptUpload;

/* A file that could not be written: a full disk is 507 with the space
 * left (the temporary files removed first, so that it is free again). */
static int upload_file_failed(CkptUpload *u, const char *what, int err) {
    if (u->fd >= 0) close(u->fd);
    u->fd = -1;
    int status = api_storage_status(err);
    if (status == 507 && u->tmp[0]) {
        durable_remove_flat_dir(u->tmp);
        u->tmp[0] = '\0';
    }
    char left[96];
    return api_pending_error(&u->err, status, api_storage_code(status), "", "checkpoint of epoch %d: cannot %s: %s%s%s",
                       u->epoch, what, strerror(err), status == 507 ? "; " : "",
                       status == 507 ? disk_space_left(db_data_dir(u->api->db), left, sizeof left) : "");
}

static int close_part(CkptUpload *u) {
    if (u->fd < 0) return 0;
    int fd = u->fd;
    u->fd = -1;
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return upload_file_failed(u, "sync a file", err);
    }
    return close(fd) == 0 ? 0 : upload_file_failed(u, "close a file", errno);
}

static int start_part(CkptUpload *u, const char *field, const char *filename) {
    u->in_step = false;
    if (close_part(u) != 0) return -1;
    if (!strcmp(field, "step") && !filename) {
        if (u->step_len) return api_pending_error(&u->err, 400, "invalid", "step", "field 'step' sent twice");
        u->in_step = true;
        return 0;
    }
    bool model = !strcmp(field, "model");
    if ((!model && strcmp(field, "trainer") != 0) || !filename)
        return api_pending_error(&u->err, 400, "invalid", field,
                           "unknown part '%.64s' (the parts: the field step, the files model and "
                           "trainer)", field);
    bool *have = model ? &u->have_model : &u->have_trainer;
    if (*have) return api_pending_error(&u->err, 400, "invalid", field, "file '%s' sent twice", field);
    *have = true;
    char path[4500];
    snprintf(path, sizeof path, "%s/%s.safetensors", u->tmp, field);
    u->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    return u->fd < 0 ? upload_file_failed(u, "create a file", errno) : 0;
}

static int on_ckpt_part(void *ctx, const char *field, const char *filename, bool first,
                        const char *data, size_t size) {
    CkptUpload *u = ctx;
    if (u->err.status) return -1;
    if (first && start_part(u, field, filename) != 0) return -1;
    if (u->in_step) {
        if (u->step_len + size >= sizeof u->step)
            return api_pending_error(&u->err, 400, "invalid", "step", "field 'step': expected an integer");
        memcpy(u->step + u->step_len, data, size);
        u->step_len += size;
        return 0;
    }
    while (size > 0) {
        ssize_t w = write(u->fd, data, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return upload_file_failed(u, "write a file", w < 0 ? errno : EIO);
        data += w;
        size -= (size_t)w;
    }
    return 0;
}

static int ckpt_begin(HttpRequest *req) {
    int64_t job;
    int attempt;
    if (remote_auth(req, &job, &attempt) != 0) return -1;
    int64_t epoch = int_param(req, 2, 1000000000);
    if (epoch < 0) {
        http_reply_error(req, 404, "not_found", NULL, "checkpoint '%.32s': expected an epoch number",
                         http_param(req, 2));
        return -1;
    }
    if (!http_content_type_is(req, "multipart/form-data")) {
        http_reply_error(req, 415, "unsupported_media_type", NULL,
                         "a checkpoint is multipart/form-data: step, model, trainer");
        return -1;
    }
    bool partial = false;
    if (http_query_bool(req, "partial", &partial) != 0) return -1;
    Api *api = http_app(req);
    CkptUpload *u = calloc(1, sizeof *u);
    char dir[4200];
    char *tmp = NULL;
    if (u) {
        *u = (CkptUpload){.api = api, .job = job, .attempt = attempt, .epoch = (int)epoch,
                          .partial = partial, .fd = -1};
        atomic_init(&u->refs, 1);
        atomic_init(&u->done, false);
        snprintf(dir, sizeof dir, "%s/jobs/%" PRId64 "/checkpoints/upload-epoch-%d",
                 db_data_dir(api->db), job, u->epoch);
        tmp = durable_temp_name(dir);
    }
    if (!u || !tmp) {
        free(u);
        http_reply_error(req, 503, "unavailable", NULL, "out of memory");
        return -1;
    }
    snprintf(u->tmp, sizeof u->tmp, "%s", tmp);
    free(tmp);
    http_set_state(req, u);
    u->counted = scheduler_upload_begin(api->sched, job); /* a preemption's grace waits for it */
    int err = db_mkdir_p(u->tmp) == 0 ? 0 : error_last()->sys_errno;
    if (err || !(u->mp = multipart_new(http_header(req, "Content-Type"), on_ckpt_part, u))) {
        if (err)
            upload_file_failed(u, "create its directory", err);
        else
            api_pending_error(&u->err, 400, "bad_request", "", "multipart/form-data without a valid boundary");
        api_reply_pending(req, &u->err);
        return -1;
    }
    return HTTP_BODY_STREAM;
}

static int ckpt_data(HttpRequest *req, const char *data, size_t size) {
    CkptUpload *u = http_state(req);
    if (multipart_feed(u->mp, data, size) == 0 && !u->err.status) return 0;
    api_pending_error(&u->err, 400, "bad_request", "", "malformed multipart/form-data body");
    api_reply_pending(req, &u->err);
    return -1;
}

/* Lets go of the upload: the last of the request and the store removes
 * what was not put in place, and frees it. */
static void ckpt_release(CkptUpload *u) {
    if (atomic_fetch_sub(&u->refs, 1) != 1) return;
    scheduler_upload_end(u->api->sched, u->counted);
    if (u->mp) multipart_end(u->mp);
    if (u->fd >= 0) close(u->fd);
    if (u->tmp[0]) durable_remove_flat_dir(u->tmp);
    free(u->token);
    free(u);
}

static void ckpt_finish(HttpRequest *req, bool completed) {
    (void)completed;
    CkptUpload *u = http_state(req);
    if (!u) return;
    http_set_state(req, NULL);
    ckpt_release(u);
}

const HttpBodyStream job_checkpoint_body = {ckpt_begin, ckpt_data, ckpt_finish};

static int ckpt_write(void *ctx, const char *dir) {
    CkptUpload *u = ctx;
    /* its files were fsynced as each ended; now the names in it */
    if (durable_sync_dir(u->tmp) != 0 || durable_replace_dir(u->tmp, dir) != 0) return -1;
    u->tmp[0] = '\0';
    return durable_sync_parent(dir);
}

static int ckpt_history(void *ctx) {
    CkptUpload *u = ctx;
    return metric_writer_flush(u->api->metrics) == 0 ? 0 : error_prefix("storing its metrics");
}

/* The job's checkpoint.keep_last, from its stored spec. */
static int keep_last_of(Db *db, int64_t job, int *out) {
    DbJob j;
    if (db_job_get(db, job, &j) != DB_OK) return -1;
    JobSpec *spec = job_spec_parse(j.spec_json, strlen(j.spec_json));
    db_job_clear(&j);
    if (!spec) return -1;
    *out = spec->checkpoint_keep_last;
    job_spec_free(spec);
    return 0;
}

/* A step is one epoch's end: a checkpoint at the step of another epoch's
 * would take that one's row and remove its directory. True with a 409 in
 * u->err, or a 503 when the checkpoints cannot be read. */
static bool step_taken(CkptUpload *u) {
    DbCheckpoint *list = NULL;
    int n = 0, other = -1;
    if (db_checkpoint_list(u->api->db, u->job, &list, &n) != DB_OK) {
        /* unchecked, it might take another epoch's row: the rank retries */
        api_pending_error(&u->err, 503, "unavailable", "", "checkpoints: %s", error_get());
        return true;
    }
    for (int i = 0; i < n; i++)
        if (list[i].step == u->step_number && list[i].epoch != u->epoch) other = list[i].epoch;
    free(list);
    if (other < 0) return false;
    api_pending_error(&u->err, 409, "conflict", "step",
                      "step %lld is the checkpoint of epoch %d; epoch %d's cannot take its place",
                      (long long)u->step_number, other, u->epoch);
    return true;
}

/* checkpoint_store's admit, under its lock (so that two PUTs at once are
 * looked at one after the other): the attempt still the job's (it may
 * have ended while the files were hashed: preempted, cancelled, its token
 * rotated, its successor collecting strays), the step no other epoch's. */
static int ckpt_admit(void *ctx) {
    CkptUpload *u = ctx;
    if (attempt_current(u->api, u->job, u->attempt, u->token, &u->err) != 0) return -1;
    return step_taken(u) ? -1 : 0;
}

/* The checkpoint stored (server/checkpoint_store.h), on a thread of a
 * pool of its own (Api's stores, as many as the HTTP threads): hashing one
 * of GBs takes seconds, which the other connections of an HTTP thread
 * would wait. Its reply's error, if any, kept in u->err. */
static void store_task(void *ctx, bool cancelled) {
    CkptUpload *u = ctx;
    if (cancelled) {
        api_pending_error(&u->err, 503, "unavailable", "",
                          "checkpoint of epoch %d: the daemon stopped before it was stored",
                          u->epoch);
    } else {
        CheckpointStore cs = {.s = u->api->sched, .job = u->job, .keep_last = u->keep_last,
                              .write = ckpt_write, .history_stored = ckpt_history,
                              .admit = ckpt_admit, .ctx = u};
        int st = checkpoint_store(&cs, u->epoch, u->step_number, u->partial, &u->stored);
        if (st == CHECKPOINT_OVER_QUOTA) {
            api_pending_error(&u->err, 429, "quota_exceeded", "quota.checkpoint_bytes",
                              "checkpoint of epoch %d: %s", u->epoch, error_get());
        } else if (st != 0 && st != CHECKPOINT_REFUSED) { /* refused: admit's u->err */
            int status = api_storage_status(0);
            api_pending_error(&u->err, status, api_storage_code(status), "",
                              "checkpoint of epoch %d: %s", u->epoch, error_get());
        }
    }
    atomic_store(&u->done, true);
    ckpt_release(u);
}

/* The store's reply: 201 with the checkpoint, or its error (one without a
 * path names the request's). */
static int ckpt_reply(HttpRequest *req, const CkptUpload *u) {
    if (u->err.status)
        return http_reply_error(req, u->err.status, u->err.code,
                                u->err.path[0] ? u->err.path : NULL, "%s", u->err.msg);
    return http_reply_json(req, 201, checkpoint_json(&u->stored));
}

/* http_reply_later's question: 1 once the store is done (replied). */
static int stored_yet(HttpRequest *req) {
    CkptUpload *u = http_state(req);
    if (!atomic_load(&u->done)) return 0;
    ckpt_reply(req, u);
    return 1;
}

int job_checkpoint_put(HttpRequest *req) {
    CkptUpload *u = http_state(req);
    int complete = multipart_end(u->mp);
    u->mp = NULL;
    if (!u->err.status) close_part(u);
    if (u->err.status)
        return api_reply_pending(req, &u->err);
    if (complete != 0)
        return http_reply_error(req, 400, "bad_request", "",
                                "the multipart body is cut short or malformed (no closing "
                                "boundary)");
    u->step[u->step_len] = '\0';
    char *end;
    errno = 0;
    long long step = strtoll(u->step, &end, 10);
    if (!u->step_len || *end || errno || step < 0)
        return http_reply_error(req, 400, "invalid", "step",
                                "field 'step': expected an integer >= 0, got '%.32s'", u->step);
    if (!u->have_model || !u->have_trainer)
        return http_reply_error(req, 400, "invalid", u->have_model ? "trainer" : "model",
                                "file '%s' is missing", u->have_model ? "trainer" : "model");
    /* the attempt may have ended while its files came (preempted,
     * cancelled, its token rotated): a checkpoint of an attempt that is no
     * longer the job's is not taken, as any report of it */
    int64_t job;
    int attempt;
    if (remote_auth(req, &job, &attempt) != 0) return 0;
    u->step_number = step;
    error_clear();
    if (keep_last_of(u->api->db, u->job, &u->keep_last) != 0)
        return api_reply_db(req, DB_ERROR, NULL);
    if (!(u->token = strdup(http_bearer(req))))
        return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    IngestPool *pool = u->api->stores;
    atomic_fetch_add(&u->refs, 1); /* the store's */
    if (pool && ingest_pool_run(pool, store_task, u) == 0)
        return http_reply_later(req, stored_yet) == 0 ? 0 : -1;
    error_clear();
    store_task(u, false); /* no pool (a test's Api): here */
    return ckpt_reply(req, u);
}
