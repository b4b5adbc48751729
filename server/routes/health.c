/* health.c - GET /v1/health: liveness without a token, for load balancers
 * and `docker compose` health checks: status, version, uptime and the
 * devices the workers own. */
#include <time.h>

#include "server/api.h"
#include "server/version.h"

int health_get(HttpRequest *req) {
    Api *api = http_app(req);
    SchedulerWorkerInfo w[SCHEDULER_MAX_WORKERS];
    int n = scheduler_workers(api->sched, w, SCHEDULER_MAX_WORKERS);
    if (n > SCHEDULER_MAX_WORKERS) n = SCHEDULER_MAX_WORKERS;
    json_t *devices = json_array();
    for (int i = 0; devices && i < n; i++) json_array_append_new(devices, json_string(w[i].device));
    return http_reply_json(req, 200,
                           json_pack("{s:s, s:s, s:I, s:o*}", "status", "ok", "version",
                                     TRAIND_VERSION, "uptime_s",
                                     (json_int_t)(time(NULL) - api->started), "devices", devices));
}
