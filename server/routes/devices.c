/* devices.c - GET /v1/devices: the CPU and each GPU this daemon trains on,
 * with the job each worker runs now.
 *
 * One entry per device; a device with several workers ("cpu,cpu") lists
 * each worker's job. Name and memory come from the device's backend
 * (core/backend.h's device_info: /proc/cpuinfo and sysconf for the CPU,
 * the CUDA runtime for a GPU), read at each request: free memory is what
 * a user choosing a GPU needs to see.
 *
 * Privacy: a worker running another user's job shows {"busy": true} and
 * nothing of the job (its id and rate are that user's); the caller's own
 * jobs, and for an admin every job, show {"busy": true, "id",
 * "samples_per_s"}. An idle worker's job is null.
 */
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/error.h"
#include "server/api.h"
#include "server/log.h"

static json_t *device_entry(const char *device) {
    bool cpu = strncmp(device, "cpu", 3) == 0;
    json_t *d = json_pack("{s:s, s:s, s:n, s:n, s:n, s:o}", "device", device, "type",
                          cpu ? "cpu" : "cuda", "name", "memory_bytes", "memory_free_bytes",
                          "workers", json_array());
    if (!d) return NULL;
    if (cpu) json_object_set_new(d, "cores", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    Device dev;
    const Backend *b = device_parse(device, &dev) == 0 ? backend_for(dev) : NULL;
    char name[256];
    uint64_t total = 0, free_ = 0;
    if (b && b->device_info(dev, name, sizeof name, &total, &free_) == 0) {
        json_object_set_new(d, "name", json_string(name));
        json_object_set_new(d, "memory_bytes", json_integer((json_int_t)total));
        json_object_set_new(d, "memory_free_bytes", json_integer((json_int_t)free_));
    } else
        log_message("devices", "%s: %s", device, error_get());
    return d;
}

/* The worker's job: null when idle; {"busy": true} alone when it is
 * another user's (its id and rate are theirs); else with its id and rate. */
static json_t *worker_job(HttpRequest *req, const SchedulerWorkerInfo *w) {
    if (!w->job_id) return json_null();
    if (!api_sees_job(req, w->job_id)) return json_pack("{s:b}", "busy", 1);
    return json_pack("{s:b, s:I, s:f}", "busy", 1, "id", (json_int_t)w->job_id, "samples_per_s",
                     w->samples_per_s);
}

int devices_get(HttpRequest *req) {
    Api *api = http_app(req);
    SchedulerWorkerInfo w[SCHEDULER_MAX_WORKERS];
    int n = scheduler_workers(api->sched, w, SCHEDULER_MAX_WORKERS);
    if (n > SCHEDULER_MAX_WORKERS) n = SCHEDULER_MAX_WORKERS;
    json_t *list = json_array();
    if (!list) return http_reply_json(req, 200, NULL);
    for (int i = 0; i < n; i++) {
        json_t *entry = NULL;
        size_t k;
        json_t *e;
        json_array_foreach(list, k, e) {
            if (strcmp(json_string_value(json_object_get(e, "device")), w[i].device) == 0)
                entry = e;
        }
        if (!entry) {
            entry = device_entry(w[i].device);
            if (!entry) continue;
            json_array_append_new(list, entry);
        }
        json_array_append_new(json_object_get(entry, "workers"),
                              json_pack("{s:i, s:o*}", "worker", i, "job", worker_job(req, &w[i])));
    }
    return http_reply_json(req, 200, json_pack("{s:o}", "devices", list));
}
