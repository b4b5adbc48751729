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
    double half_life_s;        /* the fair share's: the running jobs' time decays by it */
    const DbQueuedJob **order; /* the queued jobs in run order */
    const QueueEntry *entries; /* their places: entries[k] is order[k]'s, once placed */
    int placing;               /* order[placing] is being placed: those before it are placed */
    Owner *owners;
    int nowners;
    int64_t *taken; /* the job of this plan that starts on it, or holds it; 0: none */
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
    /* then age: a user's own priority orders their own jobs only, never
     * one of theirs before another user's */
    if (x->created_at != y->created_at) return x->created_at < y->created_at;
    return x->id < y->id;
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

/* A GPU of this daemon's (an executor's slot is not one). */
static bool is_gpu(const QueueWorker *w) { return !w->slot && w->device.type == DEVICE_CUDA; }

/* An owner of queued jobs: their use and what they run now. */
static void start_owner(Plan *p, Owner *o, const QueueUser *users, int nu, int64_t now_ms) {
    for (int k = 0; k < nu; k++)
        if (users[k].id == o->id) o->user = &users[k];
    o->usage_s = o->user ? o->user->usage_s : 0;
    for (int w = 0; w < p->nw; w++) {
        const QueueWorker *qw = &p->workers[w];
        if (!qw->job_id || qw->job_owner != o->id) continue;
        o->running += !qw->member; /* a job of several GPUs runs once */
        o->gpus += qw->slot ? qw->slot_gpus : is_gpu(qw);
        /* each of a job's devices is use (a slot's: the GPUs it asked for),
         * from when they run it, not while it is pending in an executor */
        int devices = qw->slot && qw->slot_gpus > 1 ? qw->slot_gpus : 1;
        if (qw->use_since_ms > 0 && now_ms > qw->use_since_ms)
            o->usage_s += db_user_use_until_now(
                devices, (double)(now_ms - qw->use_since_ms) / 1000.0, p->half_life_s);
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

/* What a queued job can run on: `gpus` GPU workers at once (one per rank;
 * 0: none), or one other worker (`other`: auto and cpu jobs on a CPU
 * worker; any job on an executor's slot). */
typedef struct {
    int gpus;
    bool other;
    const char *named; /* the GPUs it names ("cuda:1", "cuda:0,cuda:2"); NULL: any */
} Need;

static Need need_of(const DbQueuedJob *j) {
    const char *r = j->device_request;
    int ranks = j->ranks > 0 ? j->ranks : 1;
    if (strcmp(r, "cpu") == 0) return (Need){.other = true};
    if (strcmp(r, "auto") == 0) return (Need){.gpus = ranks, .other = true};
    if (strcmp(r, "cuda") == 0) return (Need){.gpus = ranks};
    return (Need){.gpus = device_list_count(r), .named = r};
}

/* Whether the comma-separated list names `name`. */
static bool lists(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *c = list; c; c = strchr(c, ',') ? strchr(c, ',') + 1 : NULL)
        if (strncmp(c, name, n) == 0 && (c[n] == ',' || c[n] == '\0')) return true;
    return false;
}

/* Whether w can hold one of the job's GPUs. */
static bool gpu_for(const QueueWorker *w, const Need *nd) {
    return nd->gpus > 0 && is_gpu(w) && (!nd->named || lists(nd->named, w->device_name));
}

/* Whether w can run the job alone. */
static bool other_for(const QueueWorker *w, const Need *nd) {
    return w->slot || (nd->other && !is_gpu(w));
}

static bool can_use(const QueueWorker *w, const Need *nd) {
    return gpu_for(w, nd) || other_for(w, nd);
}

/* The GPUs a job asks an executor's slot for: its ranks' when it names
 * GPUs; an auto job's are the executor's to decide. */
static int slot_gpus(const Need *nd) { return nd->other ? 0 : nd->gpus; }

/* The owner's limits (below 0: none; none for an unknown user). */
static int64_t quota_running(const Owner *o) { return o->user ? o->user->quota.running_jobs : -1; }
static int64_t quota_gpus(const Owner *o) { return o->user ? o->user->quota.gpus : -1; }

/* Whether the owner may take n more GPUs. */
static bool gpus_left(const Owner *o, int n) {
    return quota_gpus(o) < 0 || o->gpus + n <= quota_gpus(o);
}

static const char *owner_name(const Owner *o) { return o->user ? o->user->name : "this user"; }

/* Whether worker w is kept for another queued job than j: freed for one
 * ahead of j in the order that waits for workers. Not for one after it: a
 * job ahead takes what it needs first (else two jobs of several GPUs,
 * each holding a worker freed for it, would wait for each other's for
 * ever); not for one that waits for its owner's limits (another of their
 * jobs started meanwhile), which could not use it, so that it idles no
 * longer than they last; and one that left the queue holds nothing. */
static bool kept_for_another(const Plan *p, int w, const DbQueuedJob *j) {
    int64_t f = p->workers[w].freed_for;
    if (!f || f == j->id) return false;
    for (int k = 0; k < p->placing; k++)
        if (p->order[k]->id == f)
            return p->entries[k].reason == QUEUE_RESOURCES ||
                   p->entries[k].reason == QUEUE_PRIORITY;
    return false;
}

/* Whether worker w is free for job j in this plan. */
static bool free_for(const Plan *p, int w, const DbQueuedJob *j) {
    return !p->workers[w].job_id && !p->taken[w] && !kept_for_another(p, w, j);
}

/* The free GPU workers job j can use into picks, those freed for it first,
 * at most nd->gpus of them; how many. */
static int free_gpus(const Plan *p, const DbQueuedJob *j, const Need *nd, int *picks) {
    int n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int w = 0; w < p->nw && n < nd->gpus; w++)
            if (gpu_for(&p->workers[w], nd) && free_for(p, w, j) &&
                (p->workers[w].freed_for == j->id) == (pass == 0))
                picks[n++] = w;
    return n;
}

/* The free worker that runs job j alone (one freed for it first), or -1. */
static int free_other(const Plan *p, const DbQueuedJob *j, const Need *nd) {
    int first = -1;
    for (int w = 0; w < p->nw; w++) {
        if (!other_for(&p->workers[w], nd) || !free_for(p, w, j)) continue;
        if (p->workers[w].freed_for == j->id) return w;
        if (first < 0) first = w;
    }
    return first;
}

/* The reason job j (owner o) waits, with its detail, once no free workers
 * took it; nfree: the free GPUs it could use, when it needs several. */
static QueueReason waits(Plan *p, const Need *nd, const Owner *o, bool gpu_blocked, int nfree,
                         char *detail, size_t size) {
    int capable = 0, one = -1;
    bool wanted = false;
    for (int w = 0; w < p->nw; w++) {
        if (!can_use(&p->workers[w], nd)) continue;
        capable++;
        wanted |= p->wanted[w];
        one = w;
    }
    if (gpu_blocked) {
        int n = snprintf(detail, size, "%s uses %lld of %lld GPUs", owner_name(o),
                         (long long)o->gpus, (long long)quota_gpus(o));
        if (nd->gpus > 1 && n > 0 && (size_t)n < size)
            snprintf(detail + n, size - (size_t)n, "; the job asks for %d", nd->gpus);
        return QUEUE_QUOTA_GPUS;
    }
    if (wanted) {
        snprintf(detail, size, "jobs ahead of it in the queue get the workers it can use first");
        return QUEUE_PRIORITY;
    }
    if (nd->gpus > 1 && nfree > 0)
        snprintf(detail, size, "it needs %d GPUs at once; the %d free are held for it", nd->gpus,
                 nfree);
    else if (capable == 1)
        snprintf(detail, size, "its worker, %s, is busy", p->workers[one].device_name);
    else
        snprintf(detail, size, "all %d workers that can run it are busy", capable);
    return QUEUE_RESOURCES;
}

/* Job j starts on the n workers in e->workers (the first starts it). */
static void start(Plan *p, Owner *o, QueueEntry *e, int n, int slot_gpu_count) {
    e->reason = QUEUE_STARTS;
    e->nworkers = n;
    e->worker = e->workers[0];
    e->gpus = slot_gpu_count;
    for (int i = 0; i < n; i++) {
        p->taken[e->workers[i]] = e->job_id;
        e->gpus += is_gpu(&p->workers[e->workers[i]]);
    }
    o->running++;
    o->gpus += e->gpus;
}

/* Whether job j has no worker at all in this daemon; says so in e. */
static bool no_device(const Plan *p, const DbQueuedJob *j, const Need *nd, bool *gpu_path,
                      QueueEntry *e) {
    int gpus = 0, others = 0;
    for (int w = 0; w < p->nw; w++) {
        gpus += gpu_for(&p->workers[w], nd);
        others += other_for(&p->workers[w], nd);
    }
    *gpu_path = nd->gpus > 0 && gpus >= nd->gpus;
    if (*gpu_path || others) return false;
    e->reason = QUEUE_DEVICE;
    if (nd->gpus > 1)
        snprintf(e->detail, sizeof e->detail, "it asks for %d GPUs at once%s%s%s; this daemon has "
                 "%d of them", nd->gpus, nd->named ? " (" : "", nd->named ? nd->named : "",
                 nd->named ? ")" : "", gpus);
    else
        snprintf(e->detail, sizeof e->detail, "no worker of this daemon runs %s",
                 j->device_request);
    return true;
}

/* The GPUs job (need nd) would hold on worker qw, counted as its owner's:
 * a GPU worker's own, or what it asks of an executor's slot. */
static int gpus_on(const QueueWorker *qw, const Need *nd) {
    return is_gpu(qw) ? (nd->gpus > 0 ? nd->gpus : 1) : qw->slot ? slot_gpus(nd) : 0;
}

/* Whether the owner's GPU limit closes every worker job (need nd) can
 * use, free or busy: it then waits for its owner's GPUs, not for a worker,
 * and the jobs behind it are not kept from the workers it cannot take. */
static bool gpu_limit_closes_all(const Plan *p, const Owner *o, const Need *nd) {
    bool any = false;
    for (int w = 0; w < p->nw; w++) {
        if (!can_use(&p->workers[w], nd)) continue;
        int g = gpus_on(&p->workers[w], nd);
        if (g == 0 || gpus_left(o, g)) return false;
        any = true;
    }
    return any;
}

/* Places job j: it starts on free workers, or waits for a reason (holding
 * the free GPUs it can use when it needs several at once). */
static void place(Plan *p, const DbQueuedJob *j, QueueEntry *e) {
    Owner *o = owner_of(p, j->owner);
    Need nd = need_of(j);
    *e = (QueueEntry){.job_id = j->id, .owner = j->owner, .ranks = j->ranks, .worker = -1,
                      .preempts = -1};
    snprintf(e->name, sizeof e->name, "%s", j->name);
    snprintf(e->device_request, sizeof e->device_request, "%s", j->device_request);
    bool gpu_path;
    if (no_device(p, j, &nd, &gpu_path, e)) return;
    int64_t max_running = quota_running(o);
    if (max_running >= 0 && o->running >= max_running) {
        e->reason = QUEUE_QUOTA_RUNNING_JOBS;
        snprintf(e->detail, sizeof e->detail, "%s has %d of %lld running jobs", owner_name(o),
                 o->running, (long long)max_running);
        return;
    }
    int nfree = gpu_path ? free_gpus(p, j, &nd, e->workers) : 0;
    bool blocked = gpu_path && !gpus_left(o, nd.gpus) && (!nd.other || nfree == nd.gpus);
    int w = -1, g = 0;
    if (gpu_path && !blocked && nfree == nd.gpus)
        start(p, o, e, nfree, 0);
    else if ((w = free_other(p, j, &nd)) >= 0 &&
             ((g = p->workers[w].slot ? slot_gpus(&nd) : 0) == 0 || gpus_left(o, g))) {
        e->workers[0] = w;
        start(p, o, e, 1, g);
    } else {
        /* a slot free, past the owner's GPU limit; or every worker closed by it */
        blocked |= w >= 0 || gpu_limit_closes_all(p, o, &nd);
        e->reason = waits(p, &nd, o, blocked, nfree, e->detail, sizeof e->detail);
        for (int i = 0; i < nfree && !blocked && nd.gpus > 1; i++) p->taken[e->workers[i]] = j->id;
    }
    if (e->reason != QUEUE_QUOTA_GPUS)
        for (int k = 0; k < p->nw; k++)
            if (can_use(&p->workers[k], &nd)) p->wanted[k] = true;
}

/* The worker a waiting job of an admin's priority frees for itself: one
 * already stopping for it, else the one running the job of the lowest
 * admin priority below its own (of those, the one preempted the fewest
 * times, then the latest started: a job that just resumed is not the
 * latest started again and again, stopped each time), on a device
 * its owner may use (no GPU past their GPU limit, a slot's included; no
 * GPU at all unless `gpus`: its GPUs are out of reach); -1 for none. A
 * GPU held for a job of several GPUs is freed by stopping that job where
 * it started: the worker returned is then that one (a job asking for
 * that GPU by name takes it once the whole job has stopped). */
static int victim(Plan *p, const DbQueuedJob *j, const Owner *o, bool gpus) {
    for (int w = 0; w < p->nw; w++)
        if (p->workers[w].job_id && p->workers[w].freed_for == j->id) return w;
    Need nd = need_of(j);
    int best = -1;
    for (int w = 0; w < p->nw; w++) {
        const QueueWorker *qw = &p->workers[w];
        int v = qw->member ? qw->lead : w, held = gpus_on(qw, &nd);
        if (!qw->job_id || v < 0 || v >= p->nw || !can_use(qw, &nd) || (!gpus && is_gpu(qw)) ||
            (held > 0 && !gpus_left(o, held)))
            continue;
        const QueueWorker *qv = &p->workers[v];
        if (!qv->job_id || qv->freed_for || p->marked[v] ||
            qv->job_admin_priority >= j->admin_priority)
            continue;
        const QueueWorker *b = best >= 0 ? &p->workers[best] : NULL;
        if (!b || qv->job_admin_priority < b->job_admin_priority ||
            (qv->job_admin_priority == b->job_admin_priority &&
             (qv->job_preemptions < b->job_preemptions ||
              (qv->job_preemptions == b->job_preemptions &&
               qv->job_started_ms > b->job_started_ms))))
            best = v;
    }
    return best;
}

/* Whether a job of several GPUs could have them all: those free or held
 * for it, and those running jobs of a lower admin priority (or stopping
 * for it), as many as it needs. Else a preemption of a GPU would stop a
 * job for a GPU that then idles while the rest stay busy. */
static bool gpus_in_reach(const Plan *p, const DbQueuedJob *j, const Need *nd) {
    if (nd->gpus <= 1) return true;
    int n = 0;
    for (int w = 0; w < p->nw; w++) {
        const QueueWorker *qw = &p->workers[w];
        if (qw->slot) return true; /* an executor's slot runs it whole */
        if (!gpu_for(qw, nd)) continue;
        bool lower = qw->job_id && !p->marked[w] && !qw->freed_for &&
                     qw->job_admin_priority < j->admin_priority;
        n += free_for(p, w, j) || p->taken[w] == j->id || lower ||
             (qw->job_id && qw->freed_for == j->id);
    }
    return n >= nd->gpus;
}

/* A waiting job preempts the running job victim() picks, of an admin
 * priority below its own: that job checkpoints and goes back to the
 * queue. The worker counts as the waiting job's from now, for its owner's
 * limits and for the jobs after it: one such job frees one worker, once. */
static void preempt(Plan *p, const DbQueuedJob *j, QueueEntry *e) {
    Need nd = need_of(j);
    if (e->reason != QUEUE_RESOURCES && e->reason != QUEUE_PRIORITY) return;
    /* out of reach, the GPUs are not stopped for it ("auto" ranks may
     * still stop a CPU worker, which runs them all) */
    bool gpus = gpus_in_reach(p, j, &nd);
    if (!gpus && !nd.other) return;
    Owner *o = owner_of(p, j->owner);
    int w = victim(p, j, o, gpus);
    if (w < 0) return;
    p->marked[w] = true;
    e->preempts = w;
    o->running++;
    o->gpus += is_gpu(&p->workers[w]) ? 1 : gpus_on(&p->workers[w], &nd);
}

int queue_plan(const DbQueuedJob *jobs, int n, const QueueWorker *workers, int nw,
               const QueueUser *users, int nu, int64_t now_ms, double half_life_s,
               QueueEntry *out) {
    Plan p = {.workers = workers, .nw = nw, .half_life_s = half_life_s};
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
    p.order = order;
    p.entries = out;
    for (int k = 0; k < n; k++) {
        p.placing = k;
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
