/* prometheus.c - GET /metrics: the daemon's state in Prometheus' text
 * format (version 0.0.4), every name prefixed traind_:
 *   traind_jobs{state}                    jobs per state (gauge)
 *   traind_queue_length                   queued jobs (gauge)
 *   traind_workers{device}                workers per device (gauge)
 *   traind_job_samples_per_second{job,device}  each running job (gauge)
 *   traind_http_requests_total{method,route,status}  (counter)
 *   traind_upload_bytes_total             bytes received by uploads (counter)
 *   traind_uptime_seconds
 * Routes are the table's patterns ("/v1/jobs/{id}"), so the label set
 * stays small however many jobs there are.
 *
 * Who may read it (server/api.c's route table): admins (403 for other
 * users), and the scrape token of serve --metrics-token-file, which opens
 * this route alone (HTTP_ROUTE_SCRAPE; server/metrics_token.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/api.h"
#include "server/text.h"

static void put_request_count(void *ctx, const char *method, const char *route, int status,
                              uint64_t count) {
    text_printf(ctx, "traind_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n", method,
        route, status, (unsigned long long)count);
}

int prometheus_get(HttpRequest *req) {
    Api *api = http_app(req);
    Text t = {0};

    int64_t counts[DB_JOB_NUM_STATES] = {0};
    int st = db_job_count_by_state(api->db, counts);
    if (st != DB_OK) {
        text_free(&t);
        return api_reply_db(req, st, NULL);
    }
    text_printf(&t, "# HELP traind_jobs Jobs by state.\n# TYPE traind_jobs gauge\n");
    for (int s = 0; s < DB_JOB_NUM_STATES; s++)
        text_printf(&t, "traind_jobs{state=\"%s\"} %lld\n", db_job_state_name((DbJobState)s),
            (long long)counts[s]);
    text_printf(&t, "# HELP traind_queue_length Jobs waiting for a worker.\n"
            "# TYPE traind_queue_length gauge\ntraind_queue_length %lld\n",
        (long long)counts[DB_JOB_QUEUED]);

    SchedulerWorkerInfo w[SCHEDULER_MAX_WORKERS];
    int n = scheduler_workers(api->sched, w, SCHEDULER_MAX_WORKERS);
    if (n > SCHEDULER_MAX_WORKERS) n = SCHEDULER_MAX_WORKERS;
    text_printf(&t, "# HELP traind_workers Training workers per device.\n# TYPE traind_workers gauge\n");
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int k = 0; k < i; k++) seen |= !strcmp(w[k].device, w[i].device);
        if (seen) continue;
        int count = 0;
        for (int k = i; k < n; k++) count += !strcmp(w[k].device, w[i].device);
        text_printf(&t, "traind_workers{device=\"%s\"} %d\n", w[i].device, count);
    }
    text_printf(&t, "# HELP traind_job_samples_per_second Training throughput of each running job.\n"
            "# TYPE traind_job_samples_per_second gauge\n");
    for (int i = 0; i < n; i++)
        if (w[i].job_id) /* an admin's or the scrape token's page: every job */
            text_printf(&t, "traind_job_samples_per_second{job=\"%lld\",device=\"%s\"} %.6g\n",
                (long long)w[i].job_id, w[i].device, w[i].samples_per_s);

    text_printf(&t, "# HELP traind_http_requests_total HTTP requests by route and status.\n"
            "# TYPE traind_http_requests_total counter\n");
    http_server_foreach_count(http_server_of(req), put_request_count, &t);
    text_printf(&t, "# HELP traind_upload_bytes_total Bytes received by dataset uploads.\n"
            "# TYPE traind_upload_bytes_total counter\ntraind_upload_bytes_total %llu\n",
        (unsigned long long)http_server_upload_bytes(http_server_of(req)));
    text_printf(&t, "# HELP traind_uptime_seconds Seconds since the daemon started.\n"
            "# TYPE traind_uptime_seconds gauge\ntraind_uptime_seconds %lld\n",
        (long long)(time(NULL) - api->started));
    if (t.oom) {
        text_free(&t);
        return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    }
    return http_reply_owned(req, 200, "text/plain; version=0.0.4; charset=utf-8", t.buf, t.len);
}
