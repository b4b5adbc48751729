/* scheduler_admission.c - scheduler_create_job: what a job is checked
 * for before it is queued, so that the queue holds only jobs this daemon
 * can run: a device of the kind it asks for (or an executor's launcher
 * that takes it), the memory its model and batch need on that device,
 * and a precision the device can compute in. A refusal names what the
 * daemon has instead. See scheduler.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "job/build.h"
#include "server/executor.h"
#include "server/scheduler.h"
#include "server/scheduler_internal.h"

/* "cpu, cuda:0": each of the daemon's devices once. */
static void device_list(const Scheduler *s, char *list, size_t size) {
    list[0] = '\0';
    for (int i = 0; i < s->nworkers; i++) {
        const Worker *w = &s->workers[i];
        bool listed = false;
        for (int k = 0; k < i; k++) listed |= device_equal(s->workers[k].device, w->device);
        size_t used = strlen(list);
        if (!listed)
            snprintf(list + used, size - used, "%s%s", used ? ", " : "", w->device_name);
    }
}

/* Of the workers on `device` (NULL: any; GPUs only when gpus_only), the
 * one with the most memory, and how many there are. */
static const Worker *largest(Scheduler *s, const Device *device, bool gpus_only, int *count) {
    const Worker *best = NULL;
    *count = 0;
    for (int i = 0; i < s->nworkers; i++) {
        const Worker *w = &s->workers[i];
        if ((device && !device_equal(w->device, *device)) ||
            (gpus_only && w->device.type != DEVICE_CUDA))
            continue;
        ++*count;
        if (!best || w->memory_bytes > best->memory_bytes) best = w;
    }
    return best;
}

/* The worker a job is checked against: one of those that can run it, the
 * one with the most memory; NULL with an error naming the devices this
 * daemon has. A job of N GPUs needs N; an executor's slots run any job
 * but one naming this machine's GPUs. */
static const Worker *device_check(Scheduler *s, const JobSpec *spec) {
    char list[256], name[32];
    device_list(s, list, sizeof list);
    int n;
    if (s->cfg.executor && spec->num_devices) {
        error_at("devices", "names GPUs of one machine, but this daemon's jobs run through its "
                 "executor (%s): ask for \"gpus\": %d", executor_name(s->cfg.executor),
                 spec->num_devices);
        return NULL;
    }
    if (s->cfg.executor && spec->gpus) return &s->workers[0];
    for (int i = 0; i < spec->num_devices; i++) {
        if (largest(s, &spec->devices[i], false, &n)) continue;
        char path[32];
        snprintf(path, sizeof path, "devices[%d]", i);
        error_at(path, "no such device %s; this daemon has %s",
                 device_name(spec->devices[i], name, sizeof name), list);
        return NULL;
    }
    if (spec->gpus) {
        const Worker *w = largest(s, NULL, true, &n);
        if (n < spec->gpus) {
            error_at("gpus", "%d GPUs asked; this daemon has %d (%s)", spec->gpus, n, list);
            return NULL;
        }
        return w;
    }
    const Worker *w = largest(s, spec->device_auto ? NULL : &spec->device, false, &n);
    if (!w)
        error_at("device", "no such device %s; this daemon has %s",
                 device_name(spec->device, name, sizeof name), list);
    /* "auto" ranks: a GPU each, all at once, or one CPU worker they share */
    if (w && spec->device_auto && spec->ranks > 1 && !s->cfg.executor) {
        int gpus, all;
        largest(s, NULL, true, &gpus);
        largest(s, NULL, false, &all);
        if (gpus == all && gpus < spec->ranks) {
            error_at("ranks", "%d ranks on \"device\": \"auto\" take a GPU each or one CPU "
                     "worker; this daemon has %d GPUs and no CPU worker (%s)", spec->ranks, gpus,
                     list);
            return NULL;
        }
    }
    return w;
}

/* Whether the daemon's launcher can place the job's ranks: an executor's
 * admit (*gpus: the GPUs it would take), or, training here, one machine. */
static int launcher_check(Scheduler *s, const JobSpec *spec, int *gpus) {
    const ExecutorOps *ex = s->cfg.executor;
    *gpus = 0;
    if (ex) return ex->admit ? ex->admit(ex->ctx, spec, gpus) : 0;
    if (spec->nodes > 1)
        return error_at("nodes", "%d machines, but this daemon trains on its own one (`traind "
                        "serve --executor slurm` spreads a job over nodes)",
                        spec->nodes);
    return 0;
}

/* What the queue reads of the job's devices (DbJobNew's device_request):
 * "cuda" also for a job an executor runs on GPUs (its auto ones too), so
 * that its owner's GPU quota counts them. */
static void device_request(const JobSpec *spec, int executor_gpus, char *out, size_t size) {
    bool any_gpus = spec->gpus || executor_gpus > 0;
    snprintf(out, size, "%s", any_gpus ? "cuda" : "auto");
    if (any_gpus || (spec->device_auto && !spec->num_devices)) return;
    if (!spec->num_devices) {
        device_name(spec->device, out, size);
        return;
    }
    out[0] = '\0';
    for (int i = 0; i < spec->num_devices; i++) {
        char name[32];
        size_t used = strlen(out);
        snprintf(out + used, size - used, "%s%s", i ? "," : "",
                 device_name(spec->devices[i], name, sizeof name));
    }
}

/* Refuses a model whose training cannot fit the memory of the device it
 * would run on (the largest for "auto"): a model of 10^12 parameters is
 * told so at submission instead of failing on a worker. */
static int memory_check(const SpecModelSize *size, const Worker *w) {
    if (w->memory_bytes == 0 || (uint64_t)size->train_bytes <= w->memory_bytes) return 0;
    return error_at("model",
                    "%" PRId64 " parameters need at least %" PRId64 " bytes to train "
                    "(float32 weights, gradients, optimizer state and one batch's activations), "
                    "more than the %" PRIu64 " bytes of %s",
                    size->parameters, size->train_bytes, w->memory_bytes, w->device_name);
}

/* Refuses a precision the job's device cannot compute in; with "auto",
 * any of the daemon's devices may run it, so each must. */
static int precision_check(Scheduler *s, const JobSpec *spec, const Worker *w) {
    int n = spec->device_auto ? s->nworkers : 1;
    for (int i = 0; i < n; i++) {
        const Worker *o = spec->device_auto ? &s->workers[i] : w;
        if (backend_check_precision(o->device, spec->precision) == 0) continue;
        char why[256];
        snprintf(why, sizeof why, "%s", error_get());
        if (spec->device_auto)
            error_set("%s (\"device\": \"auto\" may pick it; name a device that can)", why);
        return error_prefix_at("precision");
    }
    return 0;
}

int scheduler_create_job(Scheduler *s, const JobSpec *spec, const char *spec_json,
                         const DbViewer *owner, int priority, int64_t *id_out) {
    JobCheck check;
    JobDaemon daemon = {.db = s->db, .owner = owner};
    int rc = job_build_check(&daemon, spec, &check);
    if (rc != 0) return rc == JOB_CHECK_STORAGE ? DB_ERROR : DB_INVALID;
    const Worker *w = device_check(s, spec);
    int executor_gpus;
    if (!w || launcher_check(s, spec, &executor_gpus) != 0 ||
        memory_check(&check.size, w) != 0 || precision_check(s, spec, w) != 0)
        return DB_INVALID;
    char request[DB_DEVICES_MAX + 1];
    device_request(spec, executor_gpus, request, sizeof request);
    /* the spec is stored as submitted: it is the job's record, which the
     * worker that runs it reads back */
    DbJobNew job = {.name = spec->name,
                    .owner = owner ? owner->user_id : 0,
                    .owner_admin = owner && owner->admin,
                    .spec_json = spec_json,
                    .priority = priority,
                    .device_request = request,
                    .ranks = spec->ranks,
                    .parameters = check.size.parameters,
                    .train_bytes = check.size.train_bytes,
                    .train_dataset = check.train_dataset,
                    .val_dataset = check.val_dataset,
                    .total_steps = check.total_steps};
    int64_t id;
    rc = db_job_insert(s->db, &job, &id);
    if (rc != DB_OK) return rc;
    if (id_out) *id_out = id;
    /* a worker may claim it before this line: the insert is what counts */
    scheduler_wake(s);
    return DB_OK;
}
