/* queue_plan.c - the fair queue's order, starts, reasons and preemptions;
 * see queue_plan.h.
 *
 * The order is built a job at a time: each user's queued jobs are sorted
 * among themselves (admin's priority, own priority, age), and the next job
 * is the head of the user who comes first (the head's admin priority, then
 * least recent use, then fewest jobs running or placed ahead). A user whose
 * job was just placed so falls behind users with the same use, and a user
 * with 50 jobs takes turns with one who has one.
 */
#include "server/queue_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

const char *queue_reason_name(QueueReason r) {
    static const char *const names[] = {"None",     "Priority",         "Resources",
                                        "QuotaGPUs", "QuotaRunningJobs", "Device"};
    return (unsigned)r < sizeof names / sizeof *names ? names[r] : "?";
}

/* A user as the plan goes: their jobs in their own order, and what they
 * hold so far (running, plus started or placed in this plan). */
typedef struct {
    int64_t id;
    const QueueUser *user; /* NULL: not in the users list */
    double usage_s;        /* decayed use plus the running jobs' time so far */
    int placed;            /* running now, or placed earlier in the order */
    int running, gpus;     /* running now, or starting in this plan */
    const DbQueuedJob **jobs;
    int njobs, head;
} Owner;

typedef struct {
    const QueueWorker *workers;
    int nw;
    const DbQueuedJob *jobs; /* the queued jobs, to tell a worker's freed_for still waits */
    int njobs;
    Owner *owners;
    int nowners;
    bool *taken;  /* a job of this plan starts on it */
    bool *wanted; /* a job earlier in the order can use it */
    bool *marked; /* chosen to be preempted in this plan */
} Plan;

/* Within one user: admin's priority, own priority (higher first), age. */
static int job_cmp(const void *pa, const void *pb) {
    const DbQueuedJob *a = *(const DbQueuedJob *const *)pa, *b = *(const DbQueuedJob *const *)pb;
    if (a->admin_priority != b->admin_priority) return a->admin_priority > b->admin_priority ? -1 : 1;
    if (a->priority != b->priority) return a->priority > b->priority ? -1 : 1;
    if (a->created_at != b->created_at) return a->created_at < b->created_at ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Whether owner a's next job comes before owner b's. */
static bool owner_first(const Owner *a, const Owner *b) {
    const DbQueuedJob *x = a->jobs[a->head], *y = b->jobs[b->head];
    if (x->admin_priority != y->admin_priority) return x->admin_priority > y->admin_priority;
    if (a->usage_s != b->usage_s) return a->usage_s < b->usage_s;
    if (a->placed != b->placed) return a->placed < b->placed;
    return job_cmp(&x, &y) < 0;
}

static Owner *owner_of(Plan *p, int64_t id) {
    for (int i = 0; i < p->nowners; i++)
        if (p->owners[i].id == id) return &p->owners[i];
    return NULL;
}

/* Jobs grouped by owner, each owner's in their own order. */
static int by_owner(const void *pa, const void *pb) {
    const DbQueuedJob *a = *(const DbQueuedJob *const *)pa, *b = *(const DbQueuedJob *const *)pb;
    if (a->owner != b->owner) return a->owner < b->owner ? -1 : 1;
    return job_cmp(pa, pb);
}

/* An owner of queued jobs: their use and what they run now. */
static void start_owner(Plan *p, Owner *o, const QueueUser *users, int nu, int64_t now_ms) {
    for (int k = 0; k < nu; k++)
        if (users[k].id == o->id) o->user = &users[k];
    o->usage_s = o->user ? o->user->usage_s : 0;
    for (int w = 0; w < p->nw; w++) {
        const QueueWorker *qw = &p->workers[w];
        if (!qw->job_id || qw->job_owner != o->id) continue;
        o->running++;
        o->gpus += qw->device.type == DEVICE_CUDA;
        if (now_ms > qw->job_started_ms)
            o->usage_s += (double)(now_ms - qw->job_started_ms) / 1000.0;
    }
    o->placed = o->running;
}

/* The owners of the n queued jobs, from `sorted` (the jobs by_owner). */
static void gather_owners(Plan *p, const DbQueuedJob **sorted, int n, const QueueUser *users,
                          int nu, int64_t now_ms) {
    for (int i = 0; i < n;) {
        Owner *o = &p->owners[p->nowners++];
        *o = (Owner){.id = sorted[i]->owner, .jobs = &sorted[i]};
        while (i < n && sorted[i]->owner == o->id) o->njobs++, i++;
        start_owner(p, o, users, nu, now_ms);
    }
}

/* The fair order of the n jobs into order[]. */
static void fair_order(Plan *p, int n, const DbQueuedJob **order) {
    for (int k = 0; k < n; k++) {
        Owner *best = NULL;
        for (int i = 0; i < p->nowners; i++) {
            Owner *o = &p->owners[i];
            if (o->head < o->njobs && (!best || owner_first(o, best))) best = o;
        }
        order[k] = best->jobs[best->head++];
        best->placed++;
    }
}

/* Whether worker w runs what `request` asks for ("auto", "cpu", "cuda:N"). */
static bool can_run(const QueueWorker *w, const char *request) {
    if (strcmp(request, "auto") == 0) return true;
    return strcmp(request, w->device_name) == 0 ||
           (strcmp(request, "cuda") == 0 && strcmp(w->device_name, "cuda:0") == 0);
}

/* The owner's limits (below 0: none; none for an unknown user). */
static int64_t quota_running(const Owner *o) { return o->user ? o->user->quota.running_jobs : -1; }
static int64_t quota_gpus(const Owner *o) { return o->user ? o->user->quota.gpus : -1; }

static const char *owner_name(const Owner *o) { return o->user ? o->user->name : "this user"; }

/* Whether worker w is kept for another queued job than j: freed for it. */
static bool kept_for_another(const Plan *p, int w, const DbQueuedJob *j) {
    int64_t f = p->workers[w].freed_for;
    if (!f || f == j->id) return false;
    for (int k = 0; k < p->njobs; k++)
        if (p->jobs[k].id == f) return true;
    return false; /* that job left the queue: the worker is anyone's */
}

/* The free worker job j takes, or -1: one freed for j first; then auto jobs
 * take a GPU first (when the owner may use one more), then a CPU.
 * *gpu_blocked says a free GPU was left for the GPU quota. */
static int free_worker(Plan *p, const DbQueuedJob *j, bool gpus_left, bool *gpu_blocked) {
    int cpu = -1, gpu = -1;
    *gpu_blocked = false;
    for (int w = 0; w < p->nw; w++) {
        const QueueWorker *qw = &p->workers[w];
        if (qw->job_id || p->taken[w] || !can_run(qw, j->device_request) ||
            kept_for_another(p, w, j))
            continue;
        if (qw->freed_for == j->id) return w;
        if (qw->device.type != DEVICE_CUDA) {
            if (cpu < 0) cpu = w;
        } else if (!gpus_left)
            *gpu_blocked = true;
        else if (gpu < 0)
            gpu = w;
    }
    return gpu >= 0 ? gpu : cpu;
}

/* The reason job j (owner o) waits, with its detail, once no free worker
 * took it. */
static QueueReason waits(Plan *p, const DbQueuedJob *j, const Owner *o, bool gpu_blocked,
                         char *detail, size_t size) {
    int capable = 0, one = -1;
    bool wanted = false;
    for (int w = 0; w < p->nw; w++) {
        if (!can_run(&p->workers[w], j->device_request)) continue;
        capable++;
        wanted |= p->wanted[w];
        one = w;
    }
    if (gpu_blocked) {
        snprintf(detail, size, "%s uses %lld of %lld GPUs", owner_name(o), (long long)o->gpus,
                 (long long)quota_gpus(o));
        return QUEUE_QUOTA_GPUS;
    }
    if (wanted) {
        snprintf(detail, size, "jobs ahead of it in the queue get the workers it can use first");
        return QUEUE_PRIORITY;
    }
    if (capable == 1)
        snprintf(detail, size, "its worker, %s, is busy", p->workers[one].device_name);
    else
        snprintf(detail, size, "all %d workers that can run it are busy", capable);
    return QUEUE_RESOURCES;
}

/* Places job j: it starts on a free worker, or waits for a reason. */
static void place(Plan *p, const DbQueuedJob *j, QueueEntry *e) {
    Owner *o = owner_of(p, j->owner);
    *e = (QueueEntry){.job_id = j->id, .owner = j->owner, .worker = -1, .preempts = -1};
    snprintf(e->name, sizeof e->name, "%s", j->name);
    snprintf(e->device_request, sizeof e->device_request, "%s", j->device_request);
    bool any = false;
    for (int w = 0; w < p->nw; w++) any |= can_run(&p->workers[w], j->device_request);
    if (!any) {
        e->reason = QUEUE_DEVICE;
        snprintf(e->detail, sizeof e->detail, "no worker of this daemon runs %s",
                 j->device_request);
        return;
    }
    int64_t max_running = quota_running(o), max_gpus = quota_gpus(o);
    if (max_running >= 0 && o->running >= max_running) {
        e->reason = QUEUE_QUOTA_RUNNING_JOBS;
        snprintf(e->detail, sizeof e->detail, "%s has %d of %lld running jobs", owner_name(o),
                 o->running, (long long)max_running);
        return;
    }
    bool gpus_left = max_gpus < 0 || o->gpus < max_gpus, blocked;
    bool wants_gpu = strncmp(j->device_request, "cuda", 4) == 0;
    int w = wants_gpu && !gpus_left ? -1 : free_worker(p, j, gpus_left, &blocked);
    if (wants_gpu && !gpus_left) blocked = true;
    if (w >= 0) {
        e->reason = QUEUE_STARTS;
        e->worker = w;
        p->taken[w] = true;
        o->running++;
        o->gpus += p->workers[w].device.type == DEVICE_CUDA;
    } else
        e->reason = waits(p, j, o, blocked, e->detail, sizeof e->detail);
    if (e->reason != QUEUE_QUOTA_GPUS)
        for (int k = 0; k < p->nw; k++)
            if (can_run(&p->workers[k], j->device_request)) p->wanted[k] = true;
}

/* The worker a waiting job of an admin's priority frees for itself: one
 * already stopping for it, else the one running the job of the lowest
 * admin priority below its own (the latest started of those), on a device
 * its owner may use (no GPU past their GPU limit); -1 for none. */
static int victim(Plan *p, const DbQueuedJob *j, const Owner *o) {
    for (int w = 0; w < p->nw; w++)
        if (p->workers[w].job_id && p->workers[w].freed_for == j->id) return w;
    bool gpus_left = quota_gpus(o) < 0 || o->gpus < quota_gpus(o);
    int best = -1;
    for (int w = 0; w < p->nw; w++) {
        const QueueWorker *qw = &p->workers[w];
        if (!qw->job_id || qw->freed_for || p->marked[w] || !can_run(qw, j->device_request) ||
            qw->job_admin_priority >= j->admin_priority ||
            (qw->device.type == DEVICE_CUDA && !gpus_left))
            continue;
        const QueueWorker *b = best >= 0 ? &p->workers[best] : NULL;
        if (!b || qw->job_admin_priority < b->job_admin_priority ||
            (qw->job_admin_priority == b->job_admin_priority &&
             qw->job_started_ms > b->job_started_ms))
            best = w;
    }
    return best;
}

/* A waiting job of an admin's priority preempts the running job victim()
 * picks: that job checkpoints and goes back to the queue. The worker counts
 * as the waiting job's from now, for its owner's limits and for the jobs
 * after it: one such job frees one worker, once. */
static void preempt(Plan *p, const DbQueuedJob *j, QueueEntry *e) {
    if (j->admin_priority <= 0 || (e->reason != QUEUE_RESOURCES && e->reason != QUEUE_PRIORITY))
        return;
    Owner *o = owner_of(p, j->owner);
    int w = victim(p, j, o);
    if (w < 0) return;
    p->marked[w] = true;
    e->preempts = w;
    o->running++;
    o->gpus += p->workers[w].device.type == DEVICE_CUDA;
}

int queue_plan(const DbQueuedJob *jobs, int n, const QueueWorker *workers, int nw,
               const QueueUser *users, int nu, int64_t now_ms, QueueEntry *out) {
    Plan p = {.workers = workers, .nw = nw, .jobs = jobs, .njobs = n};
    const DbQueuedJob **order = calloc((size_t)n + 1, sizeof *order);
    const DbQueuedJob **slots = calloc((size_t)n + 1, sizeof *slots);
    p.owners = calloc((size_t)n + 1, sizeof *p.owners);
    p.taken = calloc((size_t)nw + 1, sizeof *p.taken);
    p.wanted = calloc((size_t)nw + 1, sizeof *p.wanted);
    p.marked = calloc((size_t)nw + 1, sizeof *p.marked);
    int rc = 0;
    if (!order || !slots || !p.owners || !p.taken || !p.wanted || !p.marked) {
        rc = error_set("queue: out of memory planning %d jobs", n);
        goto done;
    }
    for (int i = 0; i < n; i++) slots[i] = &jobs[i];
    qsort(slots, (size_t)n, sizeof *slots, by_owner);
    gather_owners(&p, slots, n, users, nu, now_ms);
    fair_order(&p, n, order);
    for (int k = 0; k < n; k++) {
        place(&p, order[k], &out[k]);
        out[k].position = k + 1;
        preempt(&p, order[k], &out[k]);
    }
done:
    free(order);
    free(slots);
    free(p.owners);
    free(p.taken);
    free(p.wanted);
    free(p.marked);
    return rc;
}
