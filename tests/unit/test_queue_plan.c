/* test_queue_plan.c - server/queue_plan: the fair queue's order (least
 * recent use first, turns between users of equal use, a user's priority
 * among their own jobs only, an admin's priority over everyone's), the
 * reasons a job waits in Slurm's words, auto jobs on a GPU first, which
 * running job a job of an admin's priority preempts, and jobs of several
 * GPUs: taken at once, held for while they wait, counted against quotas. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "server/queue_plan.h"

#define NOW 1000000000LL

static DbQueuedJob job(int64_t id, int64_t owner, const char *device, int priority,
                       int admin_priority) {
    DbQueuedJob j = {.id = id, .owner = owner, .priority = priority,
                     .admin_priority = admin_priority, .created_at = id, .ranks = 1};
    snprintf(j.device_request, sizeof j.device_request, "%s", device);
    return j;
}

static QueueWorker worker(const char *device, int64_t job, int64_t owner, int64_t started_s_ago) {
    QueueWorker w = {.job_id = job, .job_owner = owner,
                     .job_started_ms = NOW - started_s_ago * 1000,
                     .use_since_ms = job ? NOW - started_s_ago * 1000 : 0};
    snprintf(w.device_name, sizeof w.device_name, "%s", device);
    w.device = (Device){.type = strcmp(device, "cpu") == 0 ? DEVICE_CPU : DEVICE_CUDA,
                        .index = strcmp(device, "cpu") == 0 ? 0 : device[5] - '0'};
    return w;
}

/* Workers made an executor's slots, named slurm-0, slurm-1, ... */
static void name_slots(QueueWorker *w, int n) {
    for (int i = 0; i < n; i++) {
        snprintf(w[i].device_name, sizeof w[i].device_name, "slurm-%d", i);
        w[i].slot = true;
    }
}

static QueueUser user(int64_t id, const char *name, double usage_s) {
    QueueUser u = {.id = id, .usage_s = usage_s, .quota = {-1, -1, -1, -1, -1}};
    snprintf(u.name, sizeof u.name, "%s", name);
    return u;
}

static const QueueEntry *entry_of(const QueueEntry *e, int n, int64_t id) {
    for (int i = 0; i < n; i++)
        if (e[i].job_id == id) return &e[i];
    cr_assert_fail("job %lld not in the plan", (long long)id);
    return NULL;
}

/* One CPU worker runs alice's first job; she has ten more queued when bob
 * queues one: bob's runs next, hers after, in her order. */
Test(queue_plan, a_second_users_job_runs_before_the_first_users_queue) {
    DbQueuedJob jobs[11];
    for (int i = 0; i < 10; i++) jobs[i] = job(2 + i, 1, "auto", 0, 0);
    jobs[10] = job(20, 2, "auto", 0, 0);
    QueueWorker w[1] = {worker("cpu", 1, 1, 5)};
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[11];
    cr_assert_eq(queue_plan(jobs, 11, w, 1, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 20);
    cr_assert_eq(e[0].position, 1);
    cr_assert_eq(e[0].reason, QUEUE_RESOURCES);
    cr_assert_str_eq(e[0].detail, "its worker, cpu, is busy");
    for (int i = 1; i < 11; i++) {
        cr_assert_eq(e[i].job_id, 2 + i - 1, "position %d", i + 1);
        cr_assert_eq(e[i].reason, QUEUE_PRIORITY);
    }
    cr_assert_str_eq(queue_reason_name(e[1].reason), "Priority");
}

/* Equal use: two free workers go one to each user, not both to the user
 * who queued first. */
Test(queue_plan, users_of_equal_use_take_turns) {
    DbQueuedJob jobs[4] = {job(1, 1, "cpu", 0, 0), job(2, 1, "cpu", 0, 0),
                           job(3, 1, "cpu", 0, 0), job(4, 2, "cpu", 0, 0)};
    QueueWorker w[2] = {worker("cpu", 0, 0, 0), worker("cpu", 0, 0, 0)};
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[4];
    cr_assert_eq(queue_plan(jobs, 4, w, 2, u, 2, NOW, 0, e), 0);
    int64_t order[4] = {1, 4, 2, 3};
    for (int i = 0; i < 4; i++) cr_assert_eq(e[i].job_id, order[i], "position %d", i + 1);
    cr_assert_eq(e[0].reason, QUEUE_STARTS);
    cr_assert_eq(e[1].reason, QUEUE_STARTS);
    cr_assert_neq(e[0].worker, e[1].worker);
    cr_assert_eq(e[2].reason, QUEUE_PRIORITY);
}

/* Less recent use goes first, decayed use included; a user's priority
 * orders only their own jobs; an admin's priority goes before everyone. */
Test(queue_plan, use_then_own_priority_then_admin_priority) {
    DbQueuedJob jobs[4] = {job(1, 1, "cpu", 0, 0), job(2, 1, "cpu", 1000, 0),
                           job(3, 2, "cpu", 0, 0), job(4, 2, "cpu", -5, 0)};
    QueueWorker w[1] = {worker("cpu", 9, 3, 1)};
    QueueUser u[3] = {user(1, "alice", 3600), user(2, "bob", 60), user(3, "carol", 0)};
    QueueEntry e[4];
    cr_assert_eq(queue_plan(jobs, 4, w, 1, u, 3, NOW, 0, e), 0);
    /* bob's use stays below alice's: both of his first (his -5 after his
     * 0), then hers, her priority 1000 first: it orders only her jobs */
    int64_t order[4] = {3, 4, 2, 1};
    for (int i = 0; i < 4; i++) cr_assert_eq(e[i].job_id, order[i], "position %d", i + 1);
    jobs[0].admin_priority = 1; /* an admin put alice's job 1 first */
    cr_assert_eq(queue_plan(jobs, 4, w, 1, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 1);
}

/* Users of equal use and turns: the older job first, whatever priority
 * the younger one's owner gave it (it orders only their own jobs). */
Test(queue_plan, own_priority_does_not_pass_another_users_older_job) {
    DbQueuedJob jobs[2] = {job(1, 1, "cpu", 0, 0), job(2, 2, "cpu", 1000, 0)};
    QueueWorker w[1] = {worker("cpu", 9, 3, 1)};
    QueueUser u[3] = {user(1, "alice", 0), user(2, "bob", 0), user(3, "carol", 0)};
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, w, 1, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 1, "alice's older job first, not bob's of priority 1000");
    cr_assert_eq(e[1].job_id, 2);
}

/* A running job's time so far counts as its owner's use, decayed as it
 * goes: 100 s running, never forgotten (a half-life of 0), is more than
 * bob's 50; 200 s at a half-life of 100 s weighs 100/ln2 × 3/4 = 108.2 s,
 * less than bob's 110, though 200 s never forgotten is more. */
Test(queue_plan, running_time_counts_as_use_decayed_as_it_goes) {
    DbQueuedJob jobs[2] = {job(1, 1, "cpu", 0, 0), job(2, 2, "cpu", 0, 0)};
    QueueWorker w[2] = {worker("cpu", 7, 1, 100), worker("cpu", 0, 0, 0)};
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 50)};
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 2); /* bob's 50 s < alice's 100 s running */
    cr_assert_eq(e[0].reason, QUEUE_STARTS);
    cr_assert_eq(e[0].worker, 1);
    w[0] = worker("cpu", 7, 1, 200);
    u[1].usage_s = 110;
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 2, NOW, 100, e), 0);
    cr_assert_eq(e[0].job_id, 1, "alice's 108.2 s < bob's 110 s");
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 2, "200 s never forgotten > bob's 110 s");
}

Test(queue_plan, each_reason_in_slurms_words) {
    DbQueuedJob jobs[4] = {job(1, 1, "cpu", 0, 0), job(2, 2, "cuda:0", 0, 0),
                           job(3, 3, "cuda:1", 0, 0), job(4, 4, "cuda:0", 0, 0)};
    QueueWorker w[2] = {worker("cpu", 5, 1, 1), worker("cuda:0", 0, 0, 0)};
    QueueUser u[4] = {user(1, "alice", 0), user(2, "bob", 10), user(3, "carol", 20),
                      user(4, "dan", 30)};
    u[0].quota.running_jobs = 1;
    u[1].quota.gpus = 0;
    QueueEntry e[4];
    cr_assert_eq(queue_plan(jobs, 4, w, 2, u, 4, NOW, 0, e), 0);
    const QueueEntry *a = entry_of(e, 4, 1), *b = entry_of(e, 4, 2), *c = entry_of(e, 4, 3),
                     *d = entry_of(e, 4, 4);
    cr_assert_eq(a->reason, QUEUE_QUOTA_RUNNING_JOBS);
    cr_assert_str_eq(a->detail, "alice has 1 of 1 running jobs");
    cr_assert_str_eq(queue_reason_name(a->reason), "QuotaRunningJobs");
    cr_assert_eq(b->reason, QUEUE_QUOTA_GPUS);
    cr_assert_str_eq(b->detail, "bob uses 0 of 0 GPUs");
    cr_assert_str_eq(queue_reason_name(b->reason), "QuotaGPUs");
    cr_assert_eq(c->reason, QUEUE_DEVICE);
    cr_assert_str_eq(c->detail, "no worker of this daemon runs cuda:1");
    cr_assert_eq(d->reason, QUEUE_STARTS); /* the GPU bob may not use */
    cr_assert_eq(d->worker, 1);
}

/* An auto job takes a free GPU before a free CPU; its owner at the GPU
 * limit gets the CPU instead. */
Test(queue_plan, auto_jobs_take_a_gpu_first) {
    DbQueuedJob jobs[1] = {job(1, 1, "auto", 0, 0)};
    QueueWorker w[2] = {worker("cpu", 0, 0, 0), worker("cuda:0", 0, 0, 0)};
    QueueUser u[1] = {user(1, "alice", 0)};
    QueueEntry e[1];
    cr_assert_eq(queue_plan(jobs, 1, w, 2, u, 1, NOW, 0, e), 0);
    cr_assert_eq(e[0].worker, 1);
    u[0].quota.gpus = 0;
    cr_assert_eq(queue_plan(jobs, 1, w, 2, u, 1, NOW, 0, e), 0);
    cr_assert_eq(e[0].worker, 0);
}

/* A queued job of an admin's priority preempts the running job of the
 * lowest priority below its own, the latest started of those; one job per
 * waiting job, and none where no running job's is below its own. */
Test(queue_plan, an_admins_priority_preempts_the_lowest_running_job) {
    DbQueuedJob jobs[3] = {job(10, 2, "cpu", 0, 5), job(11, 2, "cpu", 0, 5),
                           job(12, 2, "cpu", 0, 0)};
    QueueWorker w[3] = {worker("cpu", 1, 1, 30), worker("cpu", 2, 1, 10),
                        worker("cpu", 3, 1, 20)};
    w[2].job_admin_priority = 7; /* above the queued jobs' */
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[3];
    cr_assert_eq(queue_plan(jobs, 3, w, 3, u, 2, NOW, 0, e), 0);
    cr_assert_eq(entry_of(e, 3, 10)->preempts, 1); /* started 10 s ago: the latest */
    cr_assert_eq(entry_of(e, 3, 11)->preempts, 0);
    cr_assert_eq(entry_of(e, 3, 12)->preempts, -1);
    /* asked already: the next plans name the same workers, nothing more */
    w[1].freed_for = 10;
    w[0].freed_for = 11;
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(queue_plan(jobs, 3, w, 3, u, 2, NOW, 0, e), 0);
        cr_assert_eq(entry_of(e, 3, 10)->preempts, 1);
        cr_assert_eq(entry_of(e, 3, 11)->preempts, 0);
        cr_assert_eq(entry_of(e, 3, 12)->preempts, -1, "round %d", round);
    }
    /* once stopped, the freed worker is kept for its job, not the next one */
    w[1].job_id = 0;
    cr_assert_eq(queue_plan(jobs, 3, w, 3, u, 2, NOW, 0, e), 0);
    cr_assert_eq(entry_of(e, 3, 10)->worker, 1);
    cr_assert_eq(entry_of(e, 3, 12)->worker, -1);
    /* but a job ahead of its job in the order takes it */
    jobs[2].admin_priority = 9; /* job 12 now first in line */
    cr_assert_eq(queue_plan(jobs, 3, w, 3, u, 2, NOW, 0, e), 0);
    cr_assert_eq(entry_of(e, 3, 12)->worker, 1);
    cr_assert_eq(entry_of(e, 3, 10)->worker, -1);
}

/* Of the running jobs of the lowest priority, the one preempted the fewest
 * times is stopped, then the latest started: a job that just resumed
 * (started latest) is not the one stopped each time. */
Test(queue_plan, the_job_preempted_least_is_stopped_first) {
    DbQueuedJob jobs[1] = {job(10, 2, "cpu", 0, 5)};
    QueueWorker w[2] = {worker("cpu", 1, 1, 30), worker("cpu", 2, 1, 10)};
    w[1].job_preemptions = 2;
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[1];
    cr_assert_eq(queue_plan(jobs, 1, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, 0, "the job never preempted, though started earlier");
    w[1].job_preemptions = 0;
    cr_assert_eq(queue_plan(jobs, 1, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, 1, "equal counts: the latest started");
}

/* One job of an admin's priority preempts one running job, not one more at
 * each plan; and none its owner could not use: a GPU past their GPU limit
 * (the job that would come back to it again and again), or any worker
 * past their running-job limit. */
Test(queue_plan, a_preemption_frees_one_worker_its_job_may_use) {
    DbQueuedJob jobs[2] = {job(10, 1, "auto", 0, 5), job(11, 1, "auto", 0, 5)};
    QueueWorker w[3] = {worker("cpu", 1, 2, 30), worker("cuda:0", 2, 2, 10),
                        worker("cpu", 3, 2, 20)};
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    u[0].quota.gpus = 0;
    u[0].quota.running_jobs = 1;
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, w, 3, u, 2, NOW, 0, e), 0);
    /* the latest started is bob's GPU job, but alice may use no GPU: the
     * latest started CPU job; her second job would pass her running limit */
    cr_assert_eq(entry_of(e, 2, 10)->preempts, 2);
    cr_assert_eq(entry_of(e, 2, 11)->preempts, -1);
    w[2].freed_for = 10;
    cr_assert_eq(queue_plan(jobs, 2, w, 3, u, 2, NOW, 0, e), 0);
    cr_assert_eq(entry_of(e, 2, 10)->preempts, 2);
    cr_assert_eq(entry_of(e, 2, 11)->preempts, -1);
}

/* A job an admin put below the others (-10) is preempted by a job of
 * none (0): "a higher admin priority", whatever its sign. */
Test(queue_plan, a_job_demoted_below_zero_is_preempted_by_one_of_zero) {
    DbQueuedJob jobs[1] = {job(10, 2, "cpu", 0, 0)};
    QueueWorker w[1] = {worker("cpu", 1, 1, 30)};
    w[0].job_admin_priority = -10;
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[1];
    cr_assert_eq(queue_plan(jobs, 1, w, 1, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, 0);
    w[0].job_admin_priority = 0;
    cr_assert_eq(queue_plan(jobs, 1, w, 1, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, -1);
}

static DbQueuedJob ranks_job(int64_t id, int64_t owner, const char *device, int ranks) {
    DbQueuedJob j = job(id, owner, device, 0, 0);
    j.ranks = ranks;
    return j;
}

/* e starts now on workers a (which starts it) and b. */
static void assert_starts_on_two(const QueueEntry *e, int a, int b) {
    cr_assert_eq(e->reason, QUEUE_STARTS, "%s", e->detail);
    cr_assert_eq(e->nworkers, 2);
    cr_assert_eq(e->worker, a);
    cr_assert_eq(e->workers[0], a);
    cr_assert_eq(e->workers[1], b);
}

/* A job of 2 ranks on "cuda" takes two free GPUs at once, and counts both
 * against its owner's limit; one free GPU is not enough. */
Test(queue_plan, a_job_of_several_gpus_takes_them_at_once) {
    DbQueuedJob jobs[1] = {ranks_job(1, 1, "cuda", 2)};
    QueueWorker w[4] = {worker("cpu", 0, 0, 0), worker("cuda:0", 9, 2, 5),
                        worker("cuda:1", 0, 0, 0), worker("cuda:2", 0, 0, 0)};
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[1];
    cr_assert_eq(queue_plan(jobs, 1, w, 4, u, 2, NOW, 0, e), 0);
    assert_starts_on_two(&e[0], 2, 3);
    cr_assert_eq(e[0].gpus, 2);
    cr_assert_eq(e[0].ranks, 2);
    w[3].job_id = 8; /* one GPU left free: not enough */
    cr_assert_eq(queue_plan(jobs, 1, w, 4, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_RESOURCES);
    cr_assert_str_eq(e[0].detail, "it needs 2 GPUs at once; the 1 free are held for it");
    u[0].quota.gpus = 1;
    w[3].job_id = 0;
    cr_assert_eq(queue_plan(jobs, 1, w, 4, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_QUOTA_GPUS);
    cr_assert_str_eq(e[0].detail, "alice uses 0 of 1 GPUs; the job asks for 2");
}

/* While a job of 2 GPUs waits for its second, the free one is held for it:
 * one-GPU jobs after it in the order do not take it. */
Test(queue_plan, a_free_gpu_is_held_for_the_job_of_several_ahead) {
    DbQueuedJob jobs[2] = {ranks_job(1, 1, "cuda", 2), job(2, 2, "cuda", 0, 0)};
    QueueWorker w[2] = {worker("cuda:0", 9, 3, 5), worker("cuda:1", 0, 0, 0)};
    QueueUser u[3] = {user(1, "alice", 0), user(2, "bob", 10), user(3, "carol", 0)};
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 1);
    cr_assert_eq(e[0].reason, QUEUE_RESOURCES);
    cr_assert_eq(e[1].reason, QUEUE_PRIORITY);
    cr_assert_eq(e[1].worker, -1);
    /* bob's use falls below alice's: his one-GPU job goes first, and runs */
    u[1].usage_s = 0;
    u[0].usage_s = 10;
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 2);
    cr_assert_eq(e[0].worker, 1);
}

/* "devices" names GPUs: only those; one the daemon lacks leaves the job
 * waiting for "Device", with the numbers. */
Test(queue_plan, named_gpus_are_those_gpus) {
    DbQueuedJob jobs[2] = {ranks_job(1, 1, "cuda:0,cuda:2", 2),
                           ranks_job(2, 2, "cuda:0,cuda:5", 2)};
    QueueWorker w[4] = {worker("cuda:0", 0, 0, 0), worker("cuda:1", 0, 0, 0),
                        worker("cuda:2", 0, 0, 0), worker("cuda:3", 0, 0, 0)};
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 10)};
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, w, 4, u, 2, NOW, 0, e), 0);
    assert_starts_on_two(&e[0], 0, 2);
    cr_assert_eq(e[1].reason, QUEUE_DEVICE);
    cr_assert_str_eq(e[1].detail,
                     "it asks for 2 GPUs at once (cuda:0,cuda:5); this daemon has 1 of them");
}

/* A running job of two GPUs is one running job and two GPUs for its
 * owner; its second worker is not preempted on its own. */
Test(queue_plan, a_running_job_of_two_gpus_counts_once_as_a_job_and_twice_as_gpus) {
    DbQueuedJob jobs[2] = {job(1, 1, "cpu", 0, 0), job(2, 1, "cpu", 0, 0)};
    QueueWorker w[5] = {worker("cpu", 0, 0, 0), worker("cuda:0", 7, 1, 100),
                        worker("cuda:1", 7, 1, 90), worker("cpu", 0, 0, 0),
                        worker("cuda:2", 0, 0, 0)};
    w[2].member = true;
    w[2].lead = 1;
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    u[0].quota.running_jobs = 2;
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, w, 5, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_STARTS);
    cr_assert_eq(e[1].reason, QUEUE_QUOTA_RUNNING_JOBS);
    cr_assert_str_eq(e[1].detail, "alice has 2 of 2 running jobs");
    DbQueuedJob gpus = ranks_job(3, 1, "cuda", 2);
    u[0].quota.running_jobs = -1;
    u[0].quota.gpus = 3;
    cr_assert_eq(queue_plan(&gpus, 1, w, 5, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_QUOTA_GPUS);
    cr_assert_str_eq(e[0].detail, "alice uses 2 of 3 GPUs; the job asks for 2");
    /* bob's job of an admin's priority stops her job of two GPUs at the
     * worker that started it, not at its later-started second GPU */
    w[4].job_id = 8;
    w[4].job_owner = 1;
    w[4].job_admin_priority = 9;
    DbQueuedJob urgent = job(4, 2, "cuda", 0, 5);
    cr_assert_eq(queue_plan(&urgent, 1, w, 5, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_RESOURCES);
    cr_assert_eq(e[0].preempts, 1);
}

/* A job of two GPUs at an admin's priority preempts only where it could
 * then have both: with one GPU running a job of its own priority, it
 * stops nothing (the stopped job's GPU would idle); with both below it,
 * it frees one, then the other. */
Test(queue_plan, a_job_of_two_gpus_preempts_only_where_it_could_have_both) {
    DbQueuedJob a = ranks_job(10, 2, "cuda", 2);
    a.admin_priority = 5;
    QueueWorker w[2] = {worker("cuda:0", 1, 1, 30), worker("cuda:1", 2, 1, 20)};
    w[1].job_admin_priority = 5;
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[1];
    cr_assert_eq(queue_plan(&a, 1, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, -1, "cuda:0 stopped for a job that cannot start");
    w[1].job_admin_priority = 0;
    cr_assert_eq(queue_plan(&a, 1, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, 1, "the latest started first");
    w[1].freed_for = 10;
    w[1].job_id = 0; /* stopped, held for it */
    cr_assert_eq(queue_plan(&a, 1, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, 0, "then the other");
}

/* A worker freed for alice's job of an admin's priority while she now runs
 * all the jobs she may (one started meanwhile): bob's job takes it rather
 * than it idling till hers ends; without her limit, hers starts there. */
Test(queue_plan, a_worker_freed_for_a_job_its_owners_limit_holds_goes_to_another) {
    DbQueuedJob jobs[2] = {job(10, 1, "cpu", 0, 5), job(11, 2, "cpu", 0, 0)};
    QueueWorker w[2] = {worker("cpu", 0, 0, 0), worker("cpu", 5, 1, 60)};
    w[0].freed_for = 10;
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    u[0].quota.running_jobs = 1;
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 10);
    cr_assert_eq(e[0].reason, QUEUE_QUOTA_RUNNING_JOBS);
    cr_assert_eq(e[1].job_id, 11);
    cr_assert_eq(e[1].reason, QUEUE_STARTS, "bob's job waits: %s", e[1].detail);
    cr_assert_eq(e[1].worker, 0);
    u[0].quota.running_jobs = -1;
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_STARTS);
    cr_assert_eq(e[0].worker, 0);
    cr_assert_neq(e[1].reason, QUEUE_STARTS);
}

/* A job asking for cuda:1 by name, which holds it for a job of two GPUs
 * started on cuda:0: that job is stopped where it started (cuda:0). Of an
 * admin priority not below the job's, nothing is stopped. */
Test(queue_plan, a_job_naming_a_gpu_another_job_holds_preempts_that_job_where_it_started) {
    DbQueuedJob urgent = job(10, 2, "cuda:1", 0, 5);
    QueueWorker w[3] = {worker("cuda:0", 7, 1, 100), worker("cuda:1", 7, 1, 100),
                        worker("cuda:2", 8, 1, 10)};
    w[1].member = true;
    w[1].lead = 0;
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[1];
    cr_assert_eq(queue_plan(&urgent, 1, w, 3, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_RESOURCES);
    cr_assert_eq(e[0].preempts, 0, "cuda:2's job stopped, or none: %d", e[0].preempts);
    w[0].job_admin_priority = w[1].job_admin_priority = 5;
    cr_assert_eq(queue_plan(&urgent, 1, w, 3, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, -1);
    /* stopped, cuda:0 freed for it and cuda:1 free: it starts on cuda:1 */
    w[0].job_admin_priority = w[1].job_admin_priority = 0;
    w[0].job_id = w[1].job_id = 0;
    w[1].member = false;
    w[0].freed_for = 10;
    cr_assert_eq(queue_plan(&urgent, 1, w, 3, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_STARTS);
    cr_assert_eq(e[0].worker, 1);
}

/* "auto" ranks whose GPUs are out of reach (one of two below them) stop
 * no GPU, but may stop the CPU worker, which runs them all; with none
 * below them there, nothing. */
Test(queue_plan, auto_ranks_out_of_their_gpus_reach_preempt_a_cpu_only) {
    DbQueuedJob a = ranks_job(10, 2, "auto", 2);
    QueueWorker w[3] = {worker("cuda:0", 1, 1, 10), worker("cuda:1", 2, 1, 20),
                        worker("cpu", 3, 1, 30)};
    w[0].job_admin_priority = w[2].job_admin_priority = -10;
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[1];
    cr_assert_eq(queue_plan(&a, 1, w, 3, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, 2, "the CPU worker, not cuda:0 (the latest started)");
    w[2].job_admin_priority = 0;
    cr_assert_eq(queue_plan(&a, 1, w, 3, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, -1);
}

/* A job the daemon cannot run (Device: 2 GPUs of a daemon of one) holds
 * no worker (no_device() places it before any is wanted): the jobs after
 * it wait for Resources, not behind it (Priority). */
Test(queue_plan, a_job_no_worker_runs_makes_none_wait_behind_it) {
    DbQueuedJob jobs[2] = {ranks_job(10, 1, "cuda", 2), job(11, 2, "cuda", 0, 0)};
    QueueWorker w[1] = {worker("cuda:0", 1, 3, 30)};
    QueueUser u[3] = {user(1, "alice", 0), user(2, "bob", 0), user(3, "carol", 0)};
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, w, 1, u, 3, NOW, 0, e), 0);
    cr_assert_eq(entry_of(e, 2, 10)->reason, QUEUE_DEVICE);
    cr_assert_eq(entry_of(e, 2, 11)->reason, QUEUE_RESOURCES, "%s", entry_of(e, 2, 11)->detail);
}

/* "auto" with 2 ranks: two free GPUs, else one CPU worker (its ranks share
 * it); an executor's slot runs any job, a GPU job's GPUs counted. */
Test(queue_plan, auto_ranks_take_gpus_or_one_cpu_and_slots_run_anything) {
    DbQueuedJob jobs[1] = {ranks_job(1, 1, "auto", 2)};
    QueueWorker w[3] = {worker("cpu", 0, 0, 0), worker("cuda:0", 0, 0, 0),
                        worker("cuda:1", 0, 0, 0)};
    QueueUser u[1] = {user(1, "alice", 0)};
    QueueEntry e[1];
    cr_assert_eq(queue_plan(jobs, 1, w, 3, u, 1, NOW, 0, e), 0);
    cr_assert_eq(e[0].nworkers, 2);
    cr_assert_eq(e[0].worker, 1);
    w[2].job_id = 5;
    cr_assert_eq(queue_plan(jobs, 1, w, 3, u, 1, NOW, 0, e), 0);
    cr_assert_eq(e[0].nworkers, 1);
    cr_assert_eq(e[0].worker, 0);
    cr_assert_eq(e[0].gpus, 0);

    QueueWorker slots[2] = {worker("cpu", 4, 1, 1), worker("cpu", 0, 0, 0)};
    snprintf(slots[0].device_name, sizeof slots[0].device_name, "slurm-0");
    snprintf(slots[1].device_name, sizeof slots[1].device_name, "slurm-1");
    slots[0].slot = slots[1].slot = true;
    slots[0].slot_gpus = 4;
    DbQueuedJob two[2] = {job(1, 1, "cpu", 0, 0), ranks_job(2, 1, "cuda", 4)};
    QueueEntry e2[2];
    u[0].quota.gpus = 6;
    cr_assert_eq(queue_plan(two, 2, slots, 2, u, 1, NOW, 0, e2), 0);
    cr_assert_eq(entry_of(e2, 2, 1)->reason, QUEUE_STARTS);
    cr_assert_eq(entry_of(e2, 2, 1)->worker, 1);
    /* the GPU job alone: its 4 GPUs and the running job's 4 pass 6 */
    cr_assert_eq(queue_plan(&two[1], 1, slots, 2, u, 1, NOW, 0, e2), 0);
    cr_assert_eq(e2[0].reason, QUEUE_QUOTA_GPUS);
    cr_assert_str_eq(e2[0].detail, "alice uses 4 of 6 GPUs; the job asks for 4");
}

/* An admin's priority on a job past its owner's GPU limit preempts no
 * slot: it could not start on the slot freed, which would sit empty (kept
 * for it). Within the limit it preempts, the slot's GPUs charged. */
Test(queue_plan, a_slot_is_not_preempted_for_a_job_past_its_gpu_limit) {
    QueueWorker slots[2] = {worker("cpu", 4, 1, 2), worker("cpu", 7, 2, 1)};
    name_slots(slots, 2);
    slots[0].slot_gpus = 4;
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    u[0].quota.gpus = 6;
    DbQueuedJob urgent = ranks_job(9, 1, "cuda", 4);
    urgent.admin_priority = 5;
    QueueEntry e[1];
    cr_assert_eq(queue_plan(&urgent, 1, slots, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, -1, "bob's slot preempted for a job that cannot start");
    u[0].quota.gpus = 8;
    cr_assert_eq(queue_plan(&urgent, 1, slots, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].preempts, 1, "within the limit: bob's slot");
}

/* Two jobs of 2 GPUs at an admin's priorities, each with one GPU freed for
 * it (X preempted a job, then Y, set higher, preempted the other): the one
 * first in line takes both, rather than each waiting for the other's for
 * ever with every GPU idle. */
Test(queue_plan, two_jobs_each_freed_a_gpu_do_not_wait_for_each_other) {
    DbQueuedJob jobs[2] = {job(10, 1, "cuda", 0, 5), job(11, 2, "cuda", 0, 10)};
    jobs[0].ranks = jobs[1].ranks = 2;
    QueueWorker w[2] = {worker("cuda:0", 0, 0, 0), worker("cuda:1", 0, 0, 0)};
    w[0].freed_for = 11;
    w[1].freed_for = 10;
    QueueUser u[2] = {user(1, "alice", 0), user(2, "bob", 0)};
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 11);
    assert_starts_on_two(&e[0], 0, 1);
    cr_assert_eq(e[1].reason, QUEUE_PRIORITY, "%s", e[1].detail);
    /* its own GPU still stopping: it holds the other, free, for itself */
    w[0].job_id = 7;
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 2, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_RESOURCES, "%s", e[0].detail);
    cr_assert_str_eq(e[0].detail, "it needs 2 GPUs at once; the 1 free are held for it");
    cr_assert_eq(e[0].preempts, 0, "the worker already stopping for it");
    cr_assert_eq(e[1].preempts, -1);
}

/* An executor's slot counts the GPUs its job asked for, each as use, and
 * only once its ranks run: hours pending in Slurm's queue are no one's. */
Test(queue_plan, a_slots_use_is_its_gpus_once_they_run) {
    DbQueuedJob jobs[2] = {job(10, 1, "auto", 0, 0), job(11, 2, "auto", 0, 0)};
    QueueWorker w[2] = {worker("cpu", 5, 1, 10), worker("cpu", 6, 3, 1)};
    w[0].slot = w[1].slot = true;
    w[0].slot_gpus = 4;
    QueueUser u[3] = {user(1, "alice", 0), user(2, "bob", 30), user(3, "carol", 0)};
    QueueEntry e[2];
    /* alice's 4 GPUs for 10 s: 40 s, past bob's 30 */
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 11);
    /* pending (not running yet): none of alice's use */
    w[0].use_since_ms = 0;
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 10);
    /* one GPU's 10 s would not pass bob's 30 either */
    w[0].use_since_ms = NOW - 10000;
    w[0].slot_gpus = 1;
    cr_assert_eq(queue_plan(jobs, 2, w, 2, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 10);
}

/* A job whose owner is at their GPU limit, every worker it can use busy:
 * it waits for its owner's GPUs (QuotaGPUs), not for a worker, and keeps
 * no worker from the jobs behind it (Resources, not Priority): when a
 * worker frees, it could not take it. On executor slots and on GPUs. */
Test(queue_plan, a_job_past_its_gpu_limit_waits_for_gpus_not_workers) {
    QueueWorker slots[2] = {worker("cpu", 4, 1, 2), worker("cpu", 7, 4, 1)};
    name_slots(slots, 2);
    slots[0].slot_gpus = 1;
    QueueUser u[3] = {user(1, "alice", 0), user(2, "bob", 1e6), user(4, "dave", 0)};
    u[0].quota.gpus = 1;
    DbQueuedJob jobs[2] = {job(10, 1, "cuda", 0, 0), job(11, 2, "cpu", 0, 0)};
    QueueEntry e[2];
    cr_assert_eq(queue_plan(jobs, 2, slots, 2, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 10, "alice's first: bob's use is the greater");
    cr_assert_eq(e[0].reason, QUEUE_QUOTA_GPUS, "%s", e[0].detail);
    cr_assert_str_eq(e[0].detail, "alice uses 1 of 1 GPUs");
    cr_assert_eq(e[1].reason, QUEUE_RESOURCES, "%s", e[1].detail);
    /* the same on GPU workers, for an auto job with no CPU worker to go to */
    QueueWorker gpus[2] = {worker("cuda:0", 4, 1, 2), worker("cuda:1", 7, 4, 1)};
    jobs[0] = job(10, 1, "auto", 0, 0);
    jobs[1] = job(11, 2, "cuda", 0, 0);
    cr_assert_eq(queue_plan(jobs, 2, gpus, 2, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].job_id, 10);
    cr_assert_eq(e[0].reason, QUEUE_QUOTA_GPUS, "%s", e[0].detail);
    cr_assert_eq(e[1].reason, QUEUE_RESOURCES, "%s", e[1].detail);
    /* a CPU worker it could use instead: it waits for workers after all */
    QueueWorker mixed[2] = {worker("cuda:0", 4, 1, 2), worker("cpu", 7, 4, 1)};
    cr_assert_eq(queue_plan(jobs, 1, mixed, 2, u, 3, NOW, 0, e), 0);
    cr_assert_eq(e[0].reason, QUEUE_RESOURCES, "%s", e[0].detail);
}
