/* jobs.c - /v1/jobs: submit, list, describe, cancel.
 *
 * Submission reads the body once: the JSON tree becomes a JobSpec, which is
 * checked against this daemon and queued. The status says whose fault an
 * error is: a body that is not JSON is 400 "bad_json"; a spec that
 * job_spec_from_json refuses (wrong types, unknown fields, bad values) is
 * 400 "invalid_spec"; a spec that does not fit this daemon (an unknown
 * dataset, a model whose shapes do not match the data's, a device it lacks,
 * a model too big for the device's memory) is 422 "invalid_spec". Either
 * way "path" is the error's path ("optimizer.lr", "data.train", "model[4]")
 * and "message" the whole sentence. ?priority=N (-1000..1000, default 0)
 * orders the queue.
 *
 * GET /v1/jobs/{id} gives the state, the device, the progress (live from
 * the scheduler while running: epoch, step, samples/s, ETA), the newest
 * value of each metric, the error, and for a queued job why it waits and
 * how many jobs are ahead. GET /v1/jobs lists them with the same newest
 * metric values, read for the whole page in one query.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json_text.h"
#include "core/spec.h"
#include "server/api.h"
#include "server/sse.h"

static json_t *progress_json(const DbJobProgress *p) {
    return json_pack("{s:i, s:I, s:I, s:f, s:o}", "epoch", p->epoch, "step", (json_int_t)p->step,
                     "total_steps", (json_int_t)p->total_steps, "samples_per_s", p->samples_per_s,
                     "eta_s", p->eta_s >= 0 ? json_real(p->eta_s) : json_null());
}

static json_t *job_json(const DbJob *j, const DbJobProgress *progress) {
    json_t *o = json_pack("{s:I, s:s, s:s, s:o, s:i, s:i, s:I, s:o, s:o, s:o, s:o, s:o*}", "id",
                          (json_int_t)j->id, "name", j->name, "state",
                          db_job_state_name(j->state), "device",
                          j->device[0] ? json_string(j->device) : json_null(), "priority",
                          j->priority, "attempt", j->attempt, "owner", (json_int_t)j->owner,
                          "created_at", api_time(j->created_at), "started_at",
                          api_time(j->started_at), "finished_at", api_time(j->finished_at),
                          "error", j->error ? json_text(j->error) : json_null(), "progress",
                          progress_json(progress ? progress : &j->progress));
    if (!o) return NULL;
    json_object_set_new(o, "user", j->owner_name[0] ? json_string(j->owner_name) : json_null());
    json_object_set_new(o, "admin_priority", json_integer(j->admin_priority));
    json_object_set_new(o, "preemptions", json_integer(j->preemptions));
    json_object_set_new(o, "device_request", json_string(j->device_request));
    json_object_set_new(o, "ranks", json_integer(j->ranks));
    return o;
}

json_t *queue_entry_json(const QueueEntry *e, bool named) {
    json_t *o = json_pack("{s:i, s:i, s:s}", "position", e->position, "ahead", e->position - 1,
                          "reason", queue_reason_name(e->reason));
    if (!o) return NULL;
    /* the detail may name another user: told to their job's owner and
     * admins only */
    json_object_set_new(o, "detail", json_text(named ? e->detail : ""));
    return o;
}

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;

int jobs_post(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t priority;
    if (http_query_int(req, "priority", 0, -1000, 1000, &priority) != 0) return 0;
    json_t *body = http_json_body(req);
    if (!body) return 0;
    error_clear();
    JobSpec *spec = job_spec_from_json(body);
    json_decref(body);
    if (!spec)
        return http_reply_error(req, 400, "invalid_spec", error_last()->path, "%s", error_get());
    int64_t id = 0;
    /* a user with a full queue, or checkpoints at their quota, is told now;
     * the queue is counted and the job inserted under one lock, so that two
     * submissions at once cannot both take a user's last place */
    pthread_mutex_lock(&submit_lock);
    bool refused = api_quota_check(req, QUOTA_QUEUED_JOBS, 1) != 0 ||
                   api_quota_check(req, QUOTA_CHECKPOINT_BYTES, 0) != 0;
    int st = DB_OK;
    if (!refused) {
        error_clear();
        DbViewer owner = api_viewer(req);
        st = scheduler_create_job(api->sched, spec, http_body(req, NULL), &owner, (int)priority,
                                  &id);
    }
    pthread_mutex_unlock(&submit_lock);
    job_spec_free(spec);
    if (refused) return 0;
    if (st == DB_INVALID)
        return http_reply_error(req, 422, "invalid_spec", error_last()->path, "%s", error_get());
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    api_audit(req, "job.create", "job %lld", (long long)id);
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/jobs/%lld", (long long)id);
    http_reply_json(req, 201, json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "state", "queued",
                                        "url", loc));
    http_reply_header(req, "Location", loc);
    return 0;
}

/* The newest point of one metric, as `metrics` holds it by name. */
static json_t *latest_json(const DbMetric *m) {
    return json_pack("{s:I, s:i, s:o, s:o}", "step", (json_int_t)m->step, "epoch", m->epoch,
                     "value", sse_number(m->value), "wall_time", sse_number(m->wall_time));
}

/* The first of the rows (by ascending job id) that are the job's, or
 * where they would be. */
static int first_row(const DbJobMetric *m, int nm, int64_t job) {
    int lo = 0, hi = nm;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (m[mid].job < job) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Sets each listed job's `metrics` (items[i] is jobs[i]'s object) from one
 * query for all of them, not one per job. */
static int list_metrics(Api *api, const DbJob *jobs, int n, json_t *items) {
    int64_t *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
    if (!ids) return error_set("out of memory");
    for (int i = 0; i < n; i++) ids[i] = jobs[i].id;
    DbJobMetric *m = NULL;
    int nm = 0;
    int st = db_metric_latest_jobs(api->db, ids, n, &m, &nm);
    free(ids);
    if (st != DB_OK) return st;
    for (int i = 0; i < n; i++) {
        json_t *latest = json_object();
        /* rows come by job id: a job's are one run of them */
        for (int k = first_row(m, nm, jobs[i].id); latest && k < nm && m[k].job == jobs[i].id; k++)
            json_object_set_new(latest, m[k].metric.name, latest_json(&m[k].metric));
        json_object_set_new(json_array_get(items, (size_t)i), "metrics",
                            latest ? latest : json_null());
    }
    free(m);
    return DB_OK;
}

int jobs_list(HttpRequest *req) {
    Api *api = http_app(req);
    DbJobQuery q = {.state = -1};
    const char *state = http_query(req, "state");
    if (state) {
        DbJobState s;
        if (db_job_state_parse(state, &s) != DB_OK)
            return http_reply_error(req, 400, "bad_query", "?state",
                                    "state: unknown state '%.32s' (queued, running, succeeded, "
                                    "failed, cancelled)", state);
        q.state = (int)s;
    }
    int64_t limit, cursor, offset;
    if (http_query_int(req, "limit", 100, 1, 1000, &limit) ||
        http_query_int(req, "cursor", 0, 0, INT64_MAX, &cursor) ||
        http_query_int(req, "offset", 0, 0, INT64_MAX, &offset))
        return 0;
    q.limit = (int)limit;
    q.before_id = cursor;
    q.offset = offset;
    if (api_user_filter(req, "jobs", &q.owner) != 0) return 0;
    /* a user lists their own jobs; an admin everyone's, or one user's */
    if (!http_auth(req)->admin) q.owner = http_auth(req)->user_id;
    DbJob *jobs = NULL;
    int n = 0;
    int64_t next = 0;
    int st = db_job_list(api->db, &q, &jobs, &n, &next);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
        DbJobProgress live;
        bool running = jobs[i].state == DB_JOB_RUNNING &&
                       scheduler_progress(api->sched, jobs[i].id, &live) == DB_OK;
        json_array_append_new(arr, job_json(&jobs[i], running ? &live : NULL));
    }
    if (arr && (st = list_metrics(api, jobs, n, arr)) != DB_OK) {
        json_decref(arr);
        db_job_list_free(jobs, n);
        return api_reply_db(req, st, NULL);
    }
    db_job_list_free(jobs, n);
    return http_reply_json(req, 200, json_pack("{s:o*, s:o}", "jobs", arr, "next_cursor",
                                               next ? json_integer(next) : json_null()));
}

int jobs_get(HttpRequest *req) {
    Api *api = http_app(req);
    DbJob j;
    int64_t id = api_job_param(req, &j);
    if (id < 0) return 0;
    DbJobProgress live;
    bool running = j.state == DB_JOB_RUNNING && scheduler_progress(api->sched, id, &live) == DB_OK;
    json_t *out = job_json(&j, running ? &live : NULL);
    json_error_t jerr;
    json_t *spec = j.spec_json ? json_loads(j.spec_json, 0, &jerr) : NULL;
    json_object_set_new(out, "spec", spec ? spec : json_null());
    SchedulerExecutorInfo ex; /* an attempt whose ranks run outside the daemon */
    if (running && scheduler_executor_info(api->sched, id, &ex) == DB_OK)
        json_object_set_new(out, "executor",
                            json_pack("{s:s, s:s, s:s, s:s, s:i}", "name", ex.name, "handle",
                                      ex.handle, "phase", ex.phase, "reason", ex.reason,
                                      "restarts", ex.restarts));
    QueueEntry qe;
    if (j.state == DB_JOB_QUEUED && scheduler_queue_info(api->sched, id, &qe) == DB_OK)
        json_object_set_new(out, "queue", queue_entry_json(&qe, true));
    DbMetric *m = NULL;
    int n = 0;
    json_t *latest = json_object();
    if (db_metric_latest(api->db, id, &m, &n) == DB_OK) {
        for (int i = 0; latest && i < n; i++)
            json_object_set_new(latest, m[i].name, latest_json(&m[i]));
        free(m);
    }
    json_object_set_new(out, "metrics", latest ? latest : json_null());
    db_job_clear(&j);
    return http_reply_json(req, 200, out);
}

int jobs_cancel(HttpRequest *req) {
    Api *api = http_app(req);
    DbJob j;
    int64_t id = api_job_param(req, &j); /* the caller's own job, or 404 */
    if (id < 0) return 0;
    db_job_clear(&j);
    error_clear();
    bool was_running;
    int st = scheduler_cancel(api->sched, id, &was_running);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    api_audit(req, "job.cancel", "job %lld", (long long)id);
    if ((st = db_job_get(api->db, id, &j)) != DB_OK) return api_reply_db(req, st, NULL);
    /* a running job stops at its next step: 202, whether or not its worker
     * has already stopped by now (the body is the job as it stands) */
    json_t *out = job_json(&j, NULL);
    json_object_set_new(out, "cancel_requested", json_true());
    db_job_clear(&j);
    return http_reply_json(req, was_running ? 202 : 200, out);
}

/* PATCH {"priority": N}: an admin's priority puts the job ahead of other
 * users' work (and may preempt a running job of a lower one); the owner's
 * orders their own jobs only. */
int jobs_patch(HttpRequest *req) {
    Api *api = http_app(req);
    DbJob j;
    int64_t id = api_job_param(req, &j);
    if (id < 0) return 0;
    db_job_clear(&j);
    json_t *body = http_json_body(req);
    if (!body) return 0;
    const char *key;
    json_t *v, *priority = NULL;
    json_object_foreach(body, key, v) {
        if (strcmp(key, "priority") != 0) {
            http_reply_error(req, 400, "invalid", key, "%s: unknown field (known: priority)", key);
            json_decref(body);
            return 0;
        }
        priority = v;
    }
    json_int_t p = json_integer_value(priority);
    bool ok = json_is_integer(priority) && p >= -1000 && p <= 1000;
    json_decref(body);
    if (!ok)
        return http_reply_error(req, 400, "invalid", "priority",
                                "priority: expected an integer from -1000 to 1000");
    bool admin = http_auth(req)->admin;
    error_clear();
    int st = scheduler_set_priority(api->sched, id, admin, (int)p);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    char detail[64];
    snprintf(detail, sizeof detail, "%s=%lld", admin ? "admin_priority" : "priority",
             (long long)p);
    api_audit_detail(req, "job.priority", detail, "job %lld", (long long)id);
    if ((st = db_job_get(api->db, id, &j)) != DB_OK) return api_reply_db(req, st, NULL);
    json_t *out = job_json(&j, NULL);
    db_job_clear(&j);
    return http_reply_json(req, 200, out);
}
