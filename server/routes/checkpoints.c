/* checkpoints.c - GET /v1/jobs/{id}/checkpoints[/{n}]: a job's checkpoints,
 * and the download of one's model.safetensors.
 *
 * {n} is the checkpoint's epoch (as in its directory, epoch-<n>); the list
 * gives each one's epoch, step, bytes, sha256 and download URL. The file
 * goes out as application/octet-stream with its Content-Length, straight
 * from the file descriptor (sendfile), never read into memory;
 * X-Checksum-SHA256 repeats the recorded hash so a client can verify.
 * model.safetensors holds the state_dict under PyTorch names:
 * `model.load_state_dict(safetensors.torch.load_file(p))` takes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "server/api.h"

/* A partial checkpoint (where a stopped attempt left off, mid-epoch) has no
 * download: GET .../checkpoints/{epoch} is the epoch's complete one. */
json_t *checkpoint_json(const DbCheckpoint *c) {
    char url[96];
    snprintf(url, sizeof url, "/v1/jobs/%lld/checkpoints/%d", (long long)c->job_id, c->epoch);
    return json_pack("{s:I, s:i, s:I, s:b, s:I, s:s, s:o, s:o}", "id", (json_int_t)c->id, "epoch",
                     c->epoch, "step", (json_int_t)c->step, "partial", c->partial, "bytes",
                     (json_int_t)c->bytes, "sha256", c->sha256, "created_at",
                     api_time(c->created_at), "url", c->partial ? json_null() : json_string(url));
}

int checkpoints_list(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t job = api_job_param(req, NULL);
    if (job < 0) return 0;
    DbCheckpoint *list = NULL;
    int n = 0;
    int st = db_checkpoint_list(api->db, job, &list, &n);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) json_array_append_new(arr, checkpoint_json(&list[i]));
    free(list);
    return http_reply_json(req, 200, json_pack("{s:I, s:o*}", "job_id", (json_int_t)job,
                                               "checkpoints", arr));
}

int checkpoints_get(HttpRequest *req) {
    Api *api = http_app(req);
    int64_t job = api_job_param(req, NULL);
    if (job < 0) return 0;
    const char *ns = http_param(req, 1);
    char *end;
    long epoch = strtol(ns, &end, 10);
    if (!*ns || *end || epoch < 0 || epoch > 1000000000L)
        return http_reply_error(req, 404, "not_found", NULL,
                                "checkpoint '%.32s': expected an epoch number", ns);
    DbCheckpoint c;
    error_clear();
    int st = db_checkpoint_get_epoch(api->db, job, (int)epoch, &c);
    if (st == DB_NOT_FOUND)
        return http_reply_error(req, 404, "not_found", NULL, "job %lld has no checkpoint of epoch %ld",
                                (long long)job, epoch);
    if (st != DB_OK) return api_reply_db(req, st, NULL);
    char name[128];
    snprintf(name, sizeof name, "job-%lld-epoch-%ld.safetensors", (long long)job, epoch);
    return checkpoint_reply_file(req, &c, "model.safetensors", name);
}

int checkpoint_reply_file(HttpRequest *req, const DbCheckpoint *c, const char *file,
                          const char *download_name) {
    Api *api = http_app(req);
    char path[4096];
    if (db_checkpoint_file_path(api->db, c, file, path, sizeof path) != DB_OK)
        return api_reply_db(req, DB_ERROR, NULL);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        /* garbage-collected between the row and the open */
        int err = errno;
        if (fd >= 0) close(fd);
        return http_reply_error(req, err == ENOENT ? 404 : 503, err == ENOENT ? "not_found" : "unavailable",
                                NULL, "checkpoint of epoch %d: %s", c->epoch, strerror(err));
    }
    http_reply_fd(req, 200, "application/octet-stream", fd, (uint64_t)sb.st_size);
    char disp[192];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", download_name);
    http_reply_header(req, "Content-Disposition", disp);
    if (!strcmp(file, "model.safetensors")) http_reply_header(req, "X-Checksum-SHA256", c->sha256);
    return 0;
}
