/* test_executor.c - the lifecycle of attempts whose ranks run outside the
 * daemon (server/executor.h), driven through a scripted launcher: the
 * attempt's files (spec.json with its dataset resolved to a file, the token
 * with mode 0600 and its hash stored, out/), launch once with the report
 * URL, a pending reason shown, the job's final state from the reported end
 * or, without one, failed with the launcher's detail; a user's cancel
 * reaches the launcher and the ranks' next report; a preemption is said to
 * the ranks, which are left to checkpoint and end before the launcher's
 * cancel and the requeue; the daemon stopping stops the ranks and requeues
 * the job. No rank runs here: the routes and
 * a real rank are tests/e2e/test_remote_report.sh's. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "server/executor.h"
#include "server/remote_attempt.h"
#include "server/scheduler.h"
#include "storage/sha256.h"
#include "tests/support/tmp_db.h"
#include "tests/support/toy_dataset.h"

/* What the scripted launcher says, and what it was asked. */
typedef struct {
    atomic_int phase; /* RemotePhase */
    atomic_int launches, cancels;
    char reason[64], detail[64];
    RemoteAttempt launched; /* the last launch's */
} Script;

static int fake_launch(void *ctx, const RemoteAttempt *a, char *handle, size_t size) {
    Script *sc = ctx;
    sc->launched = *a;
    snprintf(handle, size, "fake-%d", atomic_fetch_add(&sc->launches, 1) + 1);
    return 0;
}

static int fake_poll(void *ctx, const RemoteAttempt *a, const char *handle, RemoteStatus *out) {
    Script *sc = ctx;
    out->phase = (RemotePhase)atomic_load(&sc->phase);
    snprintf(out->reason, sizeof out->reason, "%s", sc->reason);
    snprintf(out->detail, sizeof out->detail, "%s", sc->detail);
    return 0;
}

static void fake_cancel(void *ctx, const char *handle) {
    Script *sc = ctx;
    atomic_fetch_add(&sc->cancels, 1);
}

static TmpDb env;
static int grace_ms; /* the ranks' grace to stop; 0: the default */
static Script script;
static ExecutorOps ops;
static int64_t toy_id;

static void setup(void) {
    tmp_db_open(&env, "executor");
    toy_id = toy_dataset_make(env.db);
    memset(&script, 0, sizeof script);
    grace_ms = 0;
    atomic_store(&script.phase, REMOTE_RUNNING);
    ops = (ExecutorOps){.name = "fake", .launch = fake_launch, .poll = fake_poll,
                        .cancel = fake_cancel, .ctx = &script};
}

static void teardown(void) { tmp_db_close(&env); }

TestSuite(executor, .init = setup, .fini = teardown);

static Scheduler *start_slots(int slots) {
    SchedulerConfig cfg = {.db = env.db, .metrics = env.mw, .executor = &ops,
                           .executor_slots = slots, .executor_poll_ms = 20,
                           .executor_grace_ms = grace_ms, .report_url = "http://10.0.0.1:8080"};
    Scheduler *s = scheduler_start(&cfg);
    cr_assert(s, "%s", error_get());
    return s;
}

static Scheduler *start(void) { return start_slots(2); }

static const char spec_text[] =
    "{\"name\": \"toy\", \"data\": {\"train\": \"toy\"},"
    " \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 3}],"
    " \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1},"
    " \"epochs\": 1, \"batch_size\": 8}";

static int64_t submit(Scheduler *s) {
    JobSpec *spec = job_spec_parse(spec_text, strlen(spec_text));
    cr_assert(spec, "%s", error_get());
    int64_t id = 0;
    cr_assert_eq(scheduler_create_job(s, spec, spec_text, NULL, 0, &id), DB_OK, "%s", error_get());
    job_spec_free(spec);
    return id;
}

/* Job id's state and how many times it was preempted. */
static void job_of(int64_t id, DbJobState *state, int *preemptions) {
    DbJob j;
    cr_assert_eq(db_job_get(env.db, id, &j), DB_OK);
    *state = j.state;
    *preemptions = j.preemptions;
    db_job_clear(&j);
}

static DbJobState state_of(int64_t id) {
    DbJobState st;
    int preemptions;
    job_of(id, &st, &preemptions);
    return st;
}

static int preemptions_of(int64_t id) {
    DbJobState st;
    int preemptions;
    job_of(id, &st, &preemptions);
    return preemptions;
}

/* Polls (up to 10 s) until cond holds. */
#define WAIT_FOR(cond)                                                  \
    do {                                                                \
        int waited_ = 0;                                                \
        while (!(cond) && waited_++ < 2000) usleep(5000);               \
        cr_assert((cond), "timed out waiting for %s", #cond);           \
    } while (0)

static bool phase_is(Scheduler *s, int64_t id, const char *phase, const char *reason) {
    SchedulerExecutorInfo ex;
    return scheduler_executor_info(s, id, &ex) == DB_OK && !strcmp(ex.phase, phase) &&
           !strcmp(ex.reason, reason);
}

Test(executor, the_attempts_files_then_failed_without_a_report) {
    atomic_store(&script.phase, REMOTE_PENDING);
    snprintf(script.reason, sizeof script.reason, "Resources");
    Scheduler *s = start();
    int64_t id = submit(s);
    WAIT_FOR(phase_is(s, id, "pending", "Resources"));
    cr_assert_eq(atomic_load(&script.launches), 1);
    RemoteAttempt *a = &script.launched;
    cr_assert_eq(a->job, id);
    cr_assert_eq(a->attempt, 1);
    cr_assert_eq(a->ranks, 1);
    cr_assert_str_eq(a->report_url, "http://10.0.0.1:8080");
    char want[4400];
    snprintf(want, sizeof want, "%s/jobs/%lld/attempt-1", env.dir, (long long)id);
    cr_assert_str_eq(a->dir, want);
    /* spec.json: the dataset as an inline source naming its file */
    json_t *spec = json_load_file(a->spec_path, 0, NULL);
    cr_assert(spec);
    json_t *train = json_object_get(json_object_get(spec, "data"), "train");
    cr_assert_str_eq(json_string_value(json_object_get(train, "format")), "csv");
    cr_assert_str_eq(json_string_value(json_object_get(train, "label_column")), "y");
    const char *path = json_string_value(json_object_get(train, "path"));
    cr_assert(path && path[0] == '/' && access(path, R_OK) == 0, "%s", path ? path : "(none)");
    json_decref(spec);
    /* the token: mode 0600, its hash the job's */
    struct stat st;
    cr_assert_eq(stat(a->token_path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    char token[128] = "";
    FILE *f = fopen(a->token_path, "r");
    cr_assert(f && fgets(token, sizeof token, f));
    fclose(f);
    cr_assert_eq(strlen(token), 64);
    DbJobRemote r;
    char why[256];
    cr_assert_eq(db_job_remote_get(env.db, id, &r), DB_OK);
    cr_assert_eq(remote_attempt_check(&r, id, 1, token, why, sizeof why), REMOTE_AUTH_OK, "%s", why);
    cr_assert_eq(stat(a->out_dir, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    /* the ranks end without a word: failed, with the launcher's detail */
    snprintf(script.detail, sizeof script.detail, "NODE_FAIL");
    atomic_store(&script.phase, REMOTE_ENDED);
    WAIT_FOR(state_of(id) == DB_JOB_FAILED);
    DbJob j;
    cr_assert_eq(db_job_get(env.db, id, &j), DB_OK);
    cr_assert_str_eq(j.error, "the ranks ended without reporting: NODE_FAIL");
    db_job_clear(&j);
    scheduler_stop(s);
}

Test(executor, the_reported_end_is_the_jobs) {
    Scheduler *s = start();
    int64_t id = submit(s);
    WAIT_FOR(phase_is(s, id, "running", ""));
    DbJobProgress p = {.epoch = 0, .step = 7, .samples_per_s = 50};
    bool cancel = true, preempt = true;
    cr_assert_eq(scheduler_remote_progress(s, id, &p, &cancel, &preempt), DB_OK);
    cr_assert(!cancel && !preempt);
    cr_assert_eq(db_job_remote_end_set(env.db, id, 1, DB_JOB_SUCCEEDED, NULL), DB_OK);
    atomic_store(&script.phase, REMOTE_ENDED);
    WAIT_FOR(state_of(id) == DB_JOB_SUCCEEDED);
    DbJob j;
    cr_assert_eq(db_job_get(env.db, id, &j), DB_OK);
    cr_assert_eq(j.progress.step, 7, "the ranks' progress is the job's");
    cr_assert_null(j.error);
    db_job_clear(&j);
    scheduler_stop(s);
}

Test(executor, a_cancel_reaches_the_launcher_and_the_ranks) {
    Scheduler *s = start();
    int64_t id = submit(s);
    WAIT_FOR(phase_is(s, id, "running", ""));
    bool was_running = false, cancel = false, preempt = true;
    cr_assert_eq(scheduler_cancel(s, id, &was_running), DB_OK);
    cr_assert(was_running);
    WAIT_FOR(atomic_load(&script.cancels) == 1);
    cr_assert_eq(scheduler_remote_progress(s, id, NULL, &cancel, &preempt), DB_OK);
    cr_assert(cancel, "the ranks' next report is answered cancel: true");
    cr_assert(!preempt);
    cr_assert_eq(db_job_remote_end_set(env.db, id, 1, DB_JOB_CANCELLED, "cancelled at step 3"),
                 DB_OK);
    atomic_store(&script.phase, REMOTE_ENDED);
    WAIT_FOR(state_of(id) == DB_JOB_CANCELLED);
    cr_assert_eq(atomic_load(&script.cancels), 1);
    scheduler_stop(s);
}

Test(executor, the_daemon_stopping_requeues_the_job) {
    Scheduler *s = start();
    int64_t id = submit(s);
    WAIT_FOR(phase_is(s, id, "running", ""));
    scheduler_stop(s);
    cr_assert_eq(atomic_load(&script.cancels), 1);
    cr_assert_eq(state_of(id), DB_JOB_QUEUED);
    /* the next daemon: attempt 2, a new token; the old one opens nothing */
    DbJobRemote r;
    cr_assert_eq(db_job_remote_get(env.db, id, &r), DB_OK);
    char old[65];
    snprintf(old, sizeof old, "%s", r.token_sha256);
    s = start();
    WAIT_FOR(phase_is(s, id, "running", "") && script.launched.attempt == 2);
    cr_assert_eq(db_job_remote_get(env.db, id, &r), DB_OK);
    cr_assert_eq(r.token_attempt, 2);
    cr_assert_str_neq(r.token_sha256, old);
    scheduler_stop(s);
}

/* A preemption: the ranks' next report says so ("preempt": true, and
 * "cancel": true for ranks that know only that), and they are left to
 * upload a checkpoint where they stop and report their end; then the job
 * goes back in the queue, with no cancel sent to ranks the launcher says
 * have ended (mpirun's pid, reaped, may be another process's by then). */
/* A job running on s's one slot, preempted by one at an admin's priority:
 * its ranks' next report is answered "preempt": true. */
static int64_t preempted_job(Scheduler *s) {
    int64_t victim = submit(s);
    WAIT_FOR(phase_is(s, victim, "running", ""));
    int64_t urgent = submit(s);
    cr_assert_eq(scheduler_set_priority(s, urgent, true, 5), DB_OK);
    bool cancel = false, preempt = false;
    WAIT_FOR(scheduler_remote_progress(s, victim, NULL, &cancel, &preempt) == DB_OK && preempt);
    cr_assert(cancel, "a stop too, for ranks that know only that");
    return victim;
}

/* The ranks of job id's attempt 1 report their end, and the launcher says
 * they ended. */
static void ranks_end(int64_t id, DbJobState state, const char *error) {
    cr_assert_eq(db_job_remote_end_set(env.db, id, 1, state, error), DB_OK);
    atomic_store(&script.phase, REMOTE_ENDED);
}

Test(executor, a_preemption_lets_the_ranks_checkpoint_and_end_first) {
    Scheduler *s = start_slots(1);
    int64_t victim = preempted_job(s);
    usleep(200 * 1000); /* ten polls */
    cr_assert_eq(atomic_load(&script.cancels), 0, "the ranks are left to checkpoint");
    cr_assert_eq(state_of(victim), DB_JOB_RUNNING);
    ranks_end(victim, DB_JOB_CANCELLED, "cancelled at step 3");
    WAIT_FOR(state_of(victim) == DB_JOB_QUEUED || atomic_load(&script.launches) == 2);
    cr_assert_eq(preemptions_of(victim), 1);
    int cancels = atomic_load(&script.cancels);
    scheduler_stop(s);
    cr_assert_eq(cancels, 0, "ranks that ended are not signalled");
}

/* Past the grace, ranks still running are stopped and the job requeued;
 * while rank 0's checkpoint is being uploaded (two at once here), not till
 * it has come. */
Test(executor, a_preemption_waits_past_its_grace_for_a_checkpoint_upload) {
    grace_ms = 300;
    Scheduler *s = start_slots(1);
    int64_t victim = submit(s);
    WAIT_FOR(phase_is(s, victim, "running", ""));
    uint64_t upload = scheduler_upload_begin(s, victim); /* before the preemption: counted */
    cr_assert_neq(upload, 0);
    int64_t urgent = submit(s);
    cr_assert_eq(scheduler_set_priority(s, urgent, true, 5), DB_OK);
    bool cancel = false, preempt = false;
    WAIT_FOR(scheduler_remote_progress(s, victim, NULL, &cancel, &preempt) == DB_OK && preempt);
    usleep(1000 * 1000);
    cr_assert_eq(atomic_load(&script.cancels), 0, "stopped while its checkpoint was uploading");
    cr_assert_eq(state_of(victim), DB_JOB_RUNNING);
    uint64_t second = scheduler_upload_begin(s, victim);
    scheduler_upload_end(s, upload);
    usleep(200 * 1000); /* ten polls */
    cr_assert_eq(atomic_load(&script.cancels), 0, "stopped while a second upload was under way");
    scheduler_upload_end(s, second);
    WAIT_FOR(atomic_load(&script.cancels) == 1);
    WAIT_FOR(state_of(victim) == DB_JOB_QUEUED || atomic_load(&script.launches) == 2);
    cr_assert_eq(preemptions_of(victim), 1);
    scheduler_stop(s);
}

/* Ranks told of a preemption that end otherwise meanwhile (the run's last
 * step was taken) end the job as they report it: not back in the queue. */
Test(executor, ranks_that_finish_while_preempted_end_the_job) {
    Scheduler *s = start_slots(1);
    int64_t victim = preempted_job(s);
    ranks_end(victim, DB_JOB_SUCCEEDED, NULL);
    WAIT_FOR(state_of(victim) == DB_JOB_SUCCEEDED);
    cr_assert_eq(preemptions_of(victim), 0);
    scheduler_stop(s);
}

Test(executor, unknown_executor_named) {
    ExecutorOps o;
    ExecutorConfig config;
    slurm_config_defaults(&config.slurm);
    cr_assert_eq(executor_open("external", env.db, &config, &o), 0);
    cr_assert_str_eq(o.name, "external");
    cr_assert_eq(executor_open("pbs", env.db, &config, &o), -1);
    cr_assert_str_eq(error_get(), "unknown executor 'pbs' (known: external, slurm)");
}

/* --slurm-shared-dir and --slurm-datasets fetch: the attempt's files in
 * the shared dir, spec.json naming the dataset's file in the nodes' cache
 * by its sha256, datasets.json saying where to fetch it from. */
Test(executor, fetched_datasets_named_in_the_cache_with_a_manifest) {
    ExecutorConfig config;
    slurm_config_defaults(&config.slurm);
    char shared[300], want[4400], file[400], sha[SHA256_HEX_LEN + 1];
    snprintf(shared, sizeof shared, "%s/shared", env.dir);
    cr_assert_eq(mkdir(shared, 0755), 0);
    cr_assert_eq(slurm_option(&config.slurm, "--slurm-shared-dir", shared), 0, "%s", error_get());
    cr_assert_eq(slurm_option(&config.slurm, "--slurm-datasets", "fetch"), 0);
    cr_assert_eq(slurm_option(&config.slurm, "--slurm-datasets-cache", "/scratch/c"), 0);
    cr_assert_eq(executor_open("external", env.db, &config, &ops), 0, "%s", error_get());
    ops.launch = fake_launch, ops.poll = fake_poll, ops.cancel = fake_cancel, ops.ctx = &script;
    Scheduler *s = start();
    int64_t id = submit(s);
    WAIT_FOR(atomic_load(&script.launches) == 1);
    RemoteAttempt *a = &script.launched;
    snprintf(want, sizeof want, "%s/jobs/%lld/attempt-1", shared, (long long)id);
    cr_assert_str_eq(a->dir, want);
    cr_assert_str_eq(a->datasets_cache, "/scratch/c");
    snprintf(want, sizeof want, "%s/datasets.json", a->dir);
    cr_assert_str_eq(a->manifest_path, want);
    snprintf(file, sizeof file, "%s/datasets/%lld/toy.csv", env.dir, (long long)toy_id);
    int64_t bytes = 0;
    cr_assert_eq(sha256_file_hex(file, sha, &bytes), 0);
    json_t *spec = json_load_file(a->spec_path, 0, NULL);
    snprintf(want, sizeof want, "/scratch/c/%s/toy.csv", sha);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(spec, "data"), "train"), "path")),
                     want);
    json_decref(spec);
    json_t *m = json_load_file(a->manifest_path, 0, NULL);
    cr_assert(m);
    cr_assert_str_eq(json_string_value(json_object_get(m, "cache")), "/scratch/c");
    json_t *files = json_object_get(m, "files");
    cr_assert_eq(json_array_size(files), 1);
    json_t *f = json_array_get(files, 0);
    snprintf(want, sizeof want, "http://10.0.0.1:8080/v1/jobs/%lld/attempts/1/datasets/%lld/toy.csv",
             (long long)id, (long long)toy_id);
    cr_assert_str_eq(json_string_value(json_object_get(f, "url")), want);
    snprintf(want, sizeof want, "%s/toy.csv", sha);
    cr_assert_str_eq(json_string_value(json_object_get(f, "path")), want);
    cr_assert_str_eq(json_string_value(json_object_get(f, "sha256")), sha);
    cr_assert_eq(json_integer_value(json_object_get(f, "bytes")), bytes);
    cr_assert_eq(json_integer_value(json_object_get(f, "dataset")), toy_id);
    json_decref(m);
    scheduler_stop(s);
}

Test(executor, a_shared_dir_that_is_not_one_refused_at_start) {
    ExecutorConfig config;
    slurm_config_defaults(&config.slurm);
    char path[300];
    snprintf(path, sizeof path, "%s/nonexistent", env.dir);
    cr_assert_eq(slurm_option(&config.slurm, "--slurm-shared-dir", path), 0);
    cr_assert_eq(executor_open("external", env.db, &config, &ops), -1);
    char want[400];
    snprintf(want, sizeof want, "slurm shared_dir '%s': No such file or directory", path);
    cr_assert_str_eq(error_get(), want);
}
