/* queue.c - GET /v1/queue: the queued jobs in the order they will run, and
 * why each waits (server/queue_plan.h: Slurm's reasons). A user sees their
 * own jobs whole; another user's only as a place in the line (position,
 * reason, device asked for), without its id, name, owner or detail. An
 * admin sees everything (?user=NAME: that user's jobs only; a user may
 * name only themself). */
#include <stdlib.h>

#include "server/api.h"

int queue_get(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t filter;
    if (api_user_filter(req, "queued jobs", &filter) != 0) return 0;
    QueueEntry *e;
    int n;
    int st = scheduler_queue(api->sched, &e, &n);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    json_t *list = json_array();
    for (int i = 0; list && i < n; i++) {
        if (filter && e[i].owner != filter) continue;
        bool mine = api_owns(req, e[i].owner);
        json_t *o = queue_entry_json(&e[i], mine);
        if (!o) continue;
        json_object_set_new(o, "device_request", json_string(e[i].device_request));
        json_object_set_new(o, "ranks", json_integer(e[i].ranks));
        if (mine) {
            json_object_set_new(o, "id", json_integer(e[i].job_id));
            json_object_set_new(o, "name", json_string(e[i].name));
        }
        json_object_set_new(o, "mine", json_boolean(e[i].owner == http_auth(req)->user_id));
        json_array_append_new(list, o);
    }
    free(e);
    return http_reply_json(req, 200, json_pack("{s:o*}", "queue", list));
}
