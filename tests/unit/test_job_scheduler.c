/* test_job_scheduler.c - the daemon's job scheduler (server/scheduler.h)
 * on a tiny CSV dataset in a temporary data dir: a job runs to
 * `succeeded` with its metrics, checkpoints and logs stored; specs are
 * refused at submission or fail at build with their error; cancel works
 * on queued and running jobs; two workers train two jobs at once; and a
 * daemon stopped mid-job (the SIGTERM path, and a kill -9 like stop
 * without the partial checkpoint) resumes the job on restart with every
 * step's metric stored once and the losses of an uninterrupted run, bit
 * for bit; a job runs as many CPU threads as its worker has CPUs.
 *
 * (test_lr_scheduler.c is the LR schedulers'.) A step hook slows training
 * down where a test needs a job to be caught running.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/error.h"
#include "job/build.h"
#include "server/scheduler.h"
#include "storage/db.h"
#include "tests/support/tmp_db.h"
#include "tests/support/toy_dataset.h"

typedef TmpDb Env; /* a temporary data dir's db and metric writer */

/* Hook state: sleep per step, and note when `at_job` reaches `at_step`. */
static atomic_int hook_sleep_us;
static atomic_llong hook_at_job, hook_at_step;
static atomic_int hook_reached;

static atomic_int hook_release;

/* At `at_step` of `at_job` the hook holds the worker until released, so a
 * test can stop the daemon there however loaded the machine is. */
static void step_hook(void *user, int64_t job, int64_t step) {
    (void)user;
    if (job == atomic_load(&hook_at_job) && step >= atomic_load(&hook_at_step)) {
        atomic_store(&hook_reached, 1);
        for (int i = 0; i < 20000 && !atomic_load(&hook_release); i++) usleep(1000);
    }
    int us = atomic_load(&hook_sleep_us);
    if (us > 0) usleep((useconds_t)us);
}

static Env setup(void) {
    Env e;
    tmp_db_open(&e, "sched");
    toy_dataset_make(e.db);
    atomic_store(&hook_sleep_us, 0);
    atomic_store(&hook_at_job, -1);
    atomic_store(&hook_at_step, 0);
    atomic_store(&hook_reached, 0);
    atomic_store(&hook_release, 0);
    return e;
}

static void teardown(Env *e) { tmp_db_close(e); }

static Scheduler *start(Env *e, int workers, bool crash_like) {
    SchedulerConfig cfg = {.db = e->db, .metrics = e->mw, .workers = workers,
                           .step_hook = step_hook, .stop_without_checkpoint = crash_like};
    Scheduler *s = scheduler_start(&cfg);
    cr_assert(s, "%s", error_get());
    return s;
}

/* 12 steps per epoch (96 / 8), shuffled, with dropout and a scheduler, so
 * a resume must restore the data order, the RNG and the lr. */
static const char *spec_fmt =
    "{\"name\": \"toy-%s\", \"data\": {\"train\": \"toy\", \"val\": \"toy\"},"
    " \"model\": [{\"type\": \"Linear\", \"in_features\": %d, \"out_features\": 16},"
    "  {\"type\": \"ReLU\"}, {\"type\": \"Dropout\", \"p\": 0.2},"
    "  {\"type\": \"Linear\", \"in_features\": 16, \"out_features\": 3}],"
    " \"loss\": {\"type\": \"CrossEntropyLoss\"},"
    " \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1, \"momentum\": 0.9},"
    " \"scheduler\": {\"type\": \"StepLR\", \"step_size\": 1, \"gamma\": 0.8},"
    " \"epochs\": %d, \"batch_size\": 8, \"shuffle\": true, \"seed\": 7,"
    " \"metrics\": [\"accuracy\"], \"checkpoint\": {\"every_epochs\": 1, \"keep_last\": 2}}";

/* POST /v1/jobs's path: the text parsed into a JobSpec, then queued. DB_OK
 * with *id, or the status with the error; a spec that does not parse is
 * DB_INVALID too. */
static int try_create(Scheduler *s, const char *text, int64_t *id) {
    JobSpec *spec = job_spec_parse(text, strlen(text));
    if (!spec) return DB_INVALID;
    int rc = scheduler_create_job(s, spec, text, 0, 0, id);
    job_spec_free(spec);
    return rc;
}

static int64_t create(Scheduler *s, const char *text) {
    int64_t id = 0;
    cr_assert_eq(try_create(s, text, &id), DB_OK, "%s", error_get());
    return id;
}

static int64_t submit(Scheduler *s, const char *tag, int epochs) {
    char spec[2048];
    snprintf(spec, sizeof spec, spec_fmt, tag, 4, epochs);
    return create(s, spec);
}

/* Polls until the job is in `want` (or any final state when want < 0). */
static DbJobState wait_state(Env *e, int64_t id, int want, double timeout_s) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        DbJob j;
        cr_assert_eq(db_job_get(e->db, id, &j), DB_OK);
        DbJobState st = j.state;
        db_job_clear(&j);
        if ((want < 0 && db_job_state_final(st)) || (int)st == want) return st;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9 > timeout_s)
            return st;
        usleep(5000);
    }
}

static void wait_step(Scheduler *s, int64_t id, int64_t step) {
    for (int i = 0; i < 20000; i++) {
        DbJobProgress p;
        if (scheduler_progress(s, id, &p) == DB_OK && p.step >= step) return;
        usleep(1000);
    }
    cr_assert_fail("job %lld never reached step %lld", (long long)id, (long long)step);
}

/* The job's metric `name`, one value per step (NAN where absent); checks
 * that no step appears twice and returns how many there are. */
static int series(Env *e, int64_t job, const char *name, double *out, int max) {
    for (int i = 0; i < max; i++) out[i] = NAN;
    DbMetric *m;
    int n;
    DbMetricQuery q = {.name = name, .after = -1, .limit = 100000};
    cr_assert_eq(db_metric_query(e->db, job, &q, &m, &n), DB_OK);
    for (int i = 0; i < n; i++) {
        cr_assert_lt(m[i].step, max);
        cr_assert(isnan(out[m[i].step]), "%s at step %lld twice", name, (long long)m[i].step);
        out[m[i].step] = m[i].value;
    }
    free(m);
    return n;
}

Test(job_scheduler, submit_runs_to_succeeded) {
    Env e = setup();
    Scheduler *s = start(&e, 1, false);
    int64_t id = submit(s, "ok", 3);
    cr_assert_eq(wait_state(&e, id, -1, 100), DB_JOB_SUCCEEDED);
    DbJob j;
    cr_assert_eq(db_job_get(e.db, id, &j), DB_OK);
    cr_assert_str_eq(j.name, "toy-ok");
    cr_assert_str_eq(j.device, "cpu");
    cr_assert_eq(j.attempt, 1);
    cr_assert_null(j.error);
    cr_assert_eq(j.progress.step, 36);
    cr_assert_eq(j.progress.total_steps, 36);
    cr_assert_gt(j.finished_at, 0);
    db_job_clear(&j);
    double v[64];
    cr_assert_eq(series(&e, id, "loss", v, 64), 36);
    for (int st = 1; st <= 36; st++) cr_assert(isfinite(v[st]), "loss at step %d", st);
    cr_assert_eq(series(&e, id, "train_loss", v, 64), 3);
    cr_assert_eq(series(&e, id, "val_accuracy", v, 64), 3);
    cr_assert(!isnan(v[36]));
    /* keep_last 2 of 3 epoch checkpoints, each hashed */
    DbCheckpoint *c;
    int n;
    cr_assert_eq(db_checkpoint_list(e.db, id, &c, &n), DB_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(c[0].epoch, 1);
    cr_assert_eq(c[1].epoch, 2);
    cr_assert_eq(c[1].step, 36);
    cr_assert_eq(strlen(c[1].sha256), 64);
    cr_assert_gt(c[1].bytes, 0);
    char path[600];
    db_checkpoint_file_path(e.db, &c[1], "model.safetensors", path, sizeof path);
    cr_assert_eq(access(path, R_OK), 0);
    free(c);
    DbLogLine *lines;
    cr_assert_eq(db_log_list(e.db, id, 0, 0, &lines, &n), DB_OK);
    bool epoch_line = false, done_line = false;
    for (int i = 0; i < n; i++) {
        epoch_line |= strncmp(lines[i].line, "epoch 2:", 8) == 0;
        done_line |= strstr(lines[i].line, "succeeded") != NULL;
    }
    db_log_list_free(lines, n);
    cr_assert(epoch_line && done_line);
    /* the worker lets go of the job right after recording its end */
    int rc = DB_OK;
    for (int i = 0; i < 5000 && rc == DB_OK; i++) {
        rc = scheduler_progress(s, id, &j.progress);
        if (rc == DB_OK) usleep(1000);
    }
    cr_assert_eq(rc, DB_NOT_FOUND);
    scheduler_stop(s);
    teardown(&e);
}

static void assert_no_jobs(Env *e) {
    DbJob *list;
    int n;
    int64_t next;
    cr_assert_eq(db_job_list(e->db, NULL, &list, &n, &next), DB_OK);
    cr_assert_eq(n, 0, "%d job(s) stored", n);
    db_job_list_free(list, n);
}

Test(job_scheduler, bad_specs_refused_at_submission) {
    Env e = setup();
    Scheduler *s = start(&e, 1, false);
    struct {
        const char *spec, *want;
    } cases[] = {
        {"{\"data\": {\"train\": \"nope\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1}",
         "data.train: unknown dataset 'nope'"},
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 5,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1}",
         "model[0]"},
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"devcie\": \"cpu\"}",
         "devcie"},
        {"{\"data\": {\"train\": {\"format\": \"csv\", \"path\": \"/etc/passwd\"}}, \"model\":"
         " [{\"type\": \"ReLU\"}], \"loss\": {\"type\": \"MSELoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1}",
         "data.train"},
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"device\": \"cuda:0\"}",
         "device"},
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"device\": \"cuda:99\"}",
         "device: no such device cuda:99; this daemon has cpu"},
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"init\": \"77\"}",
         "init: unknown checkpoint 77"},
        {"{\"data\": ", "line"},
        /* known only with the data (96 rows): nothing to train on, a
         * cycle shorter than the job, a phase empty in a job of 2 steps */
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"batch_size\": 200, \"drop_last\": true}",
         "batch_size: 200, more than data.train's 96 samples, with drop_last"},
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"batch_size\": 10, \"scheduler\":"
         " {\"type\": \"OneCycleLR\", \"max_lr\": 0.5, \"total_steps\": 3, \"interval\": \"step\"}}",
         "scheduler.total_steps: a cycle of 3 steps, but this job steps it 10 times"},
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"batch_size\": 48, \"scheduler\":"
         " {\"type\": \"OneCycleLR\", \"max_lr\": 0.5, \"pct_start\": 0.5, \"interval\": \"step\"}}",
         "scheduler: OneCycleLR: momentum is not finite at step 0 (a phase of no steps"},
        /* a BatchNorm1d given the last batch of 1 (96 = 5 x 19 + 1) */
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"BatchNorm1d\", "
         "\"num_features\": 4}, {\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 3}], "
         "\"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": "
         "0.1}, \"epochs\": 1, \"batch_size\": 19}",
         "the last batch of data.train holds 1 of its 96 samples (batches of 19; \"drop_last\": "
         "true leaves it out): model[0] BatchNorm1d: its input [1, 4] holds 1 value per channel"},
        /* an lr_lambda that raises, or turns negative, at an epoch of the job */
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 3, \"scheduler\":"
         " {\"type\": \"LambdaLR\", \"lr_lambda\": \"1 / (2 - epoch)\"}}",
         "scheduler.lr_lambda: at epoch 2: "},
        {"{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
         " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
         " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 3, \"scheduler\":"
         " {\"type\": \"LambdaLR\", \"lr_lambda\": \"1 - epoch\"}}",
         "scheduler.lr_lambda: is -1 at epoch 2: the lr it scales must stay a finite number >= 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t id = 0;
        int rc = try_create(s, cases[i].spec, &id);
        cr_assert_eq(rc, DB_INVALID, "case %zu", i);
        cr_assert(strstr(error_get(), cases[i].want) != NULL, "case %zu: %s", i, error_get());
    }
    assert_no_jobs(&e); /* nothing was stored */
    scheduler_stop(s);
    teardown(&e);
}

/* With accumulate_steps 4, 12 batches of the 96 rows are 3 optimizer steps
 * an epoch, 6 in 2 epochs: a OneCycleLR of 6 steps fits (it was checked
 * against the 24 batches), one of 5 does not. */
Test(job_scheduler, scheduler_checked_in_optimizer_steps) {
    Env e = setup();
    Scheduler *s = start(&e, 1, false);
    char spec[1024];
    for (int cycle = 6; cycle >= 5; cycle--) {
        snprintf(spec, sizeof spec,
                 "{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", "
                 "\"in_features\": 4, \"out_features\": 3}], \"loss\": {\"type\": "
                 "\"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1}, "
                 "\"epochs\": 2, \"batch_size\": 8, \"accumulate_steps\": 4, \"scheduler\": "
                 "{\"type\": \"OneCycleLR\", \"max_lr\": 0.5, \"total_steps\": %d, "
                 "\"interval\": \"step\"}}", cycle);
        int64_t id = 0;
        int rc = try_create(s, spec, &id);
        if (cycle == 6) {
            cr_assert_eq(rc, DB_OK, "%s", error_get());
            DbJob j;
            cr_assert_eq(db_job_get(e.db, id, &j), DB_OK);
            cr_assert_eq(j.progress.total_steps, 6, "its progress counts optimizer steps, not %lld "
                         "batches", (long long)j.progress.total_steps);
            db_job_clear(&j);
        } else {
            cr_assert_eq(rc, DB_INVALID);
            cr_assert(strstr(error_get(), "a cycle of 5 steps, but this job steps it "
                                          "6 times"), "%s", error_get());
        }
    }
    scheduler_stop(s);
    teardown(&e);
}

/* A toy job's spec (96 rows) with its epochs, batch size and scheduler. */
static void toy_spec(char *out, size_t size, int epochs, int batch, const char *scheduler) {
    snprintf(out, size,
             "{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", "
             "\"in_features\": 4, \"out_features\": 3}], \"loss\": {\"type\": "
             "\"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1}, "
             "\"epochs\": %d, \"batch_size\": %d, \"scheduler\": %s}", epochs, batch, scheduler);
}

/* A SequentialLR's schedulers are checked for the steps each is given: a
 * LambdaLR that turns negative after its milestone is refused, one that
 * would only past it is not; a OneCycleLR of its own epochs, shorter than
 * the job, is refused naming them. */
Test(job_scheduler, scheduler_children_checked_for_their_steps) {
    Env e = setup();
    Scheduler *s = start(&e, 1, false);
    static const struct {
        int epochs;
        const char *scheduler, *want; /* want NULL: accepted */
    } cases[] = {
        {6, "{\"type\": \"SequentialLR\", \"milestones\": [1], \"schedulers\": "
            "[{\"type\": \"StepLR\", \"step_size\": 100}, {\"type\": \"LambdaLR\", "
            "\"lr_lambda\": \"1 - epoch / 2\"}]}",
         "scheduler.schedulers[1].lr_lambda: is -0.5 at epoch 3: the lr it scales must stay a "
         "finite number >= 0"},
        /* epochs 0..4 of 100 are the lambda's: 1 - epoch/10 stays >= 0 */
        {100, "{\"type\": \"SequentialLR\", \"milestones\": [5], \"schedulers\": "
              "[{\"type\": \"LambdaLR\", \"lr_lambda\": \"1 - epoch / 10\"}, "
              "{\"type\": \"StepLR\", \"step_size\": 10}]}", NULL},
        {6, "{\"type\": \"SequentialLR\", \"milestones\": [2], \"schedulers\": "
            "[{\"type\": \"StepLR\", \"step_size\": 100}, {\"type\": \"OneCycleLR\", "
            "\"max_lr\": 0.5, \"total_steps\": 3}]}",
         "scheduler.schedulers[1].total_steps: a cycle of 3 steps, but this job steps it 4 "
         "times"},
        {10, "{\"type\": \"OneCycleLR\", \"max_lr\": 0.5, \"epochs\": 5}",
         "scheduler.epochs: a cycle of 60 steps, but this job steps it 120 times"},
        {10, "{\"type\": \"OneCycleLR\", \"max_lr\": 0.5, \"epochs\": 10}", NULL},
        /* its epochs the job's, its steps per epoch its own: that is named */
        {10, "{\"type\": \"OneCycleLR\", \"max_lr\": 0.5, \"steps_per_epoch\": 5}",
         "scheduler.steps_per_epoch: a cycle of 50 steps, but this job steps it 120 times"},
    };
    char spec[2048];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        toy_spec(spec, sizeof spec, cases[i].epochs, 8, cases[i].scheduler);
        int64_t id = 0;
        int rc = try_create(s, spec, &id);
        if (!cases[i].want) {
            cr_assert_eq(rc, DB_OK, "case %zu: %s", i, error_get());
            continue;
        }
        cr_assert_eq(rc, DB_INVALID, "case %zu accepted", i);
        cr_assert(strstr(error_get(), cases[i].want) == error_get(), "case %zu: %s", i,
                  error_get());
    }
    scheduler_stop(s);
    teardown(&e);
}

/* An lr_lambda of ~400 operations stepped 96,000 times is past what the
 * check evaluates at every step: it is checked at points spread evenly,
 * the last included, which is where this one turns negative. */
Test(job_scheduler, long_lambda_checked_at_spread_steps_and_the_last) {
    Env e = setup();
    Scheduler *s = start(&e, 1, false);
    char lambda[1100] = "95999.5 - epoch";
    while (strlen(lambda) + 10 < 1000) strcat(lambda, " + 0*epoch");
    char scheduler[1200], spec[2048];
    snprintf(scheduler, sizeof scheduler,
             "{\"type\": \"LambdaLR\", \"interval\": \"step\", \"lr_lambda\": \"%s\"}", lambda);
    toy_spec(spec, sizeof spec, 1000, 1, scheduler);
    int64_t id = 0;
    cr_assert_eq(try_create(s, spec, &id), DB_INVALID);
    cr_assert_str_eq(error_get(), "scheduler.lr_lambda: is -0.5 at epoch 96000: the lr it "
                                  "scales must stay a finite number >= 0");
    scheduler_stop(s);
    teardown(&e);
}

/* A model of 10^12 parameters is refused at submission from its layer list
 * (nothing is built), naming its size and the memory of the device. */
Test(job_scheduler, a_model_too_big_for_the_device_is_refused) {
    Env e = setup();
    Scheduler *s = start(&e, 1, false);
    const char *spec =
        "{\"data\": {\"train\": \"toy\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
        " \"out_features\": 1000000}, {\"type\": \"Linear\", \"in_features\": 1000000,"
        " \"out_features\": 1000000}, {\"type\": \"Linear\", \"in_features\": 1000000,"
        " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
        " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"batch_size\": 8}";
    int64_t id = 0;
    error_clear();
    cr_assert_eq(try_create(s, spec, &id), DB_INVALID);
    cr_assert_str_eq(error_last()->path, "model");
    int64_t params = 4 * 1000000 + 1000000 + 1000000LL * 1000000 + 1000000 + 3000000 + 3;
    int64_t bytes = 4 * (2 * params + 2 * (8 * 4 + 8 * (1000000 + 1000000 + 3)));
    char want[160];
    snprintf(want, sizeof want, "model: %lld parameters need at least %lld bytes to train",
             (long long)params, (long long)bytes);
    cr_assert(strncmp(error_get(), want, strlen(want)) == 0, "%s", error_get());
    cr_assert(strstr(error_get(), "bytes of cpu"), "%s", error_get());
    assert_no_jobs(&e);
    scheduler_stop(s);
    teardown(&e);
}

/* What the queue needs of a job is in its row: the device asked for and
 * the model's size, as measured at submission. */
Test(job_scheduler, submission_fills_the_queue_columns) {
    Env e = setup();
    Scheduler *s = start(&e, 1, false);
    char spec[2048], on_cpu[2100];
    snprintf(spec, sizeof spec, spec_fmt, "cols", 4, 1);
    const char *seed = strstr(spec, "\"seed\": 7,");
    cr_assert(seed);
    snprintf(on_cpu, sizeof on_cpu, "%.*s\"device\": \"cpu\", %s", (int)(seed - spec), spec, seed);
    int64_t ids[2] = {create(s, spec), create(s, on_cpu)};
    const char *want[2] = {"auto", "cpu"};
    for (int i = 0; i < 2; i++) {
        DbJob j;
        cr_assert_eq(db_job_get(e.db, ids[i], &j), DB_OK);
        cr_assert_str_eq(j.device_request, want[i]);
        cr_assert_eq(j.parameters, 4 * 16 + 16 + 16 * 3 + 3);
        /* SGD with momentum; a batch of 8 through 4 layers */
        cr_assert_eq(j.train_bytes, 4 * (3 * j.parameters + 2 * 8 * (4 + 16 + 16 + 16 + 3)));
        db_job_clear(&j);
    }
    scheduler_stop(s);
    teardown(&e);
}

Test(job_scheduler, build_failure_records_failed) {
    Env e = setup();
    Scheduler *s = start(&e, 1, false);
    /* stored directly, as if its dataset was deleted after submission */
    const char *spec =
        "{\"data\": {\"train\": \"gone\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4,"
        " \"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\":"
        " {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1}";
    int64_t id;
    cr_assert_eq(db_job_insert(e.db, &(DbJobNew){.name = "x", .spec_json = spec}, &id), DB_OK);
    /* the worker may look at the queue on its own before this call, and
     * the job have failed already (then the call is a conflict) */
    int rc = scheduler_submit(s, id);
    cr_assert(rc == DB_OK || rc == DB_CONFLICT, "%d: %s", rc, error_get());
    cr_assert_eq(wait_state(&e, id, -1, 50), DB_JOB_FAILED);
    DbJob j;
    cr_assert_eq(db_job_get(e.db, id, &j), DB_OK);
    cr_assert(j.error && strstr(j.error, "data.train: unknown dataset 'gone'"), "%s",
              j.error ? j.error : "(null)");
    db_job_clear(&j);
    cr_assert_eq(scheduler_submit(s, id), DB_CONFLICT);
    cr_assert_eq(scheduler_submit(s, id + 50), DB_NOT_FOUND);
    scheduler_stop(s);
    teardown(&e);
}

Test(job_scheduler, cancel_queued_and_running) {
    Env e = setup();
    atomic_store(&hook_sleep_us, 20000);
    Scheduler *s = start(&e, 1, false);
    int64_t a = submit(s, "a", 5);
    int64_t b = submit(s, "b", 1);
    cr_assert_eq(wait_state(&e, a, DB_JOB_RUNNING, 30), DB_JOB_RUNNING);
    QueueEntry q;
    cr_assert_eq(scheduler_queue_info(s, b, &q), DB_OK);
    cr_assert_eq(q.position, 1);
    cr_assert_eq(q.reason, QUEUE_RESOURCES);
    cr_assert_str_eq(q.detail, "its worker, cpu, is busy");
    cr_assert_eq(scheduler_queue_info(s, a, &q), DB_CONFLICT);

    /* queued: cancelled at once */
    bool was_running = true;
    cr_assert_eq(scheduler_cancel(s, b, &was_running), DB_OK);
    cr_assert_not(was_running);
    DbJob j;
    cr_assert_eq(db_job_get(e.db, b, &j), DB_OK);
    cr_assert_eq(j.state, DB_JOB_CANCELLED);
    db_job_clear(&j);
    cr_assert_eq(scheduler_cancel(s, b, &was_running), DB_CONFLICT);
    cr_assert_eq(scheduler_cancel(s, 999, &was_running), DB_NOT_FOUND);

    /* running: stops at its next step */
    wait_step(s, a, 2);
    DbJobProgress p;
    cr_assert_eq(scheduler_progress(s, a, &p), DB_OK);
    cr_assert_eq(p.total_steps, 60);
    cr_assert_gt(p.samples_per_s, 0);
    cr_assert_eq(scheduler_cancel(s, a, &was_running), DB_OK);
    cr_assert(was_running);
    cr_assert_eq(wait_state(&e, a, -1, 30), DB_JOB_CANCELLED);
    cr_assert_eq(db_job_get(e.db, a, &j), DB_OK);
    cr_assert(j.error && strncmp(j.error, "cancelled at step", 17) == 0);
    cr_assert_lt(j.progress.step, 60);
    db_job_clear(&j);
    scheduler_stop(s);
    teardown(&e);
}

Test(job_scheduler, two_workers_run_two_jobs_at_once) {
    Env e = setup();
    atomic_store(&hook_sleep_us, 5000);
    Scheduler *s = start(&e, 2, false);
    int64_t a = submit(s, "a", 2), b = submit(s, "b", 2);
    bool both = false;
    for (int i = 0; i < 4000 && !both; i++) {
        SchedulerWorkerInfo w[4];
        int n = scheduler_workers(s, w, 4);
        cr_assert_eq(n, 2);
        both = w[0].job_id && w[1].job_id;
        if (!both) usleep(1000);
    }
    cr_assert(both, "the two jobs never ran at the same time");
    cr_assert_eq(wait_state(&e, a, -1, 100), DB_JOB_SUCCEEDED);
    cr_assert_eq(wait_state(&e, b, -1, 100), DB_JOB_SUCCEEDED);
    DbJob ja, jb;
    db_job_get(e.db, a, &ja);
    db_job_get(e.db, b, &jb);
    cr_assert(ja.started_at < jb.finished_at && jb.started_at < ja.finished_at);
    db_job_clear(&ja);
    db_job_clear(&jb);
    /* same spec and seed: the same losses */
    double va[32], vb[32];
    cr_assert_eq(series(&e, a, "loss", va, 32), 24);
    cr_assert_eq(series(&e, b, "loss", vb, 32), 24);
    for (int st = 1; st <= 24; st++) cr_assert_eq(va[st], vb[st], "step %d", st);
    scheduler_stop(s);
    teardown(&e);
}

static void *stop_thread(void *s) {
    scheduler_stop(s);
    return NULL;
}

/* Stops the daemon (scheduler_stop) while `job` trains epoch 2, after the
 * checkpoint of epoch 0 (and possibly 1), starts another on the same data
 * dir, and checks the job finishes as the uninterrupted `ref` did. */
static void restart_case(bool crash_like) {
    Env e = setup();
    enum { EPOCHS = 4, STEPS = 48 };
    /* the uninterrupted run */
    Scheduler *s = start(&e, 1, crash_like);
    int64_t ref = submit(s, "ref", EPOCHS);
    cr_assert_eq(wait_state(&e, ref, -1, 100), DB_JOB_SUCCEEDED);
    scheduler_stop(s);

    /* the interrupted one: stop it mid-epoch 2 (step 30 of 48) */
    s = start(&e, 1, crash_like);
    int64_t id = submit(s, "int", EPOCHS);
    atomic_store(&hook_at_step, 30);
    atomic_store(&hook_at_job, id);
    for (int i = 0; i < 60000 && !atomic_load(&hook_reached); i++) usleep(1000);
    cr_assert(atomic_load(&hook_reached));
    /* SIGTERM: stop at the next step, requeue. The stop flags the job at
     * once, then waits for it; the hook lets the job go on meanwhile. */
    pthread_t stopper;
    pthread_create(&stopper, NULL, stop_thread, s);
    usleep(100000);
    atomic_store(&hook_release, 1);
    pthread_join(stopper, NULL);
    DbJob j;
    cr_assert_eq(db_job_get(e.db, id, &j), DB_OK);
    cr_assert_eq(j.state, DB_JOB_QUEUED);
    cr_assert_eq(j.attempt, 1);
    db_job_clear(&j);
    DbCheckpoint last;
    cr_assert_eq(db_checkpoint_latest(e.db, id, &last), DB_OK);
    if (crash_like) {
        cr_assert(!last.partial);
        cr_assert_eq(last.step, 24); /* after epoch 1 */
    } else {
        cr_assert(last.partial, "a stop mid-epoch leaves a partial checkpoint");
        cr_assert_eq(last.step, 30); /* the step the hook held finishes, then it stops */
    }
    int64_t stored;
    db_metric_count(e.db, id, &stored);
    cr_assert_gt(stored, 0);

    /* restart: the job resumes and finishes */
    atomic_store(&hook_at_job, -1);
    s = start(&e, 1, crash_like);
    cr_assert_eq(wait_state(&e, id, -1, 100), DB_JOB_SUCCEEDED);
    cr_assert_eq(db_job_get(e.db, id, &j), DB_OK);
    cr_assert_eq(j.attempt, 2);
    db_job_clear(&j);
    scheduler_stop(s);

    /* every step once, the same trajectory */
    const char *names[] = {"loss", "lr", "train_loss", "train_accuracy", "val_loss",
                           "val_accuracy"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        double want[STEPS + 1], got[STEPS + 1];
        int nw = series(&e, ref, names[k], want, STEPS + 1);
        int ng = series(&e, id, names[k], got, STEPS + 1);
        cr_assert_eq(ng, nw, "%s: %d rows, uninterrupted %d", names[k], ng, nw);
        for (int st = 1; st <= STEPS; st++) {
            if (isnan(want[st])) {
                cr_assert(isnan(got[st]), "%s at step %d", names[k], st);
                continue;
            }
            cr_assert_eq(got[st], want[st], "%s at step %d: %.17g vs %.17g", names[k], st,
                         got[st], want[st]);
        }
    }
    int64_t nref, nint;
    db_metric_count(e.db, ref, &nref);
    db_metric_count(e.db, id, &nint);
    cr_assert_eq(nint, nref);
    /* the partial checkpoint is gone once epoch checkpoints follow it */
    DbCheckpoint *c;
    int n;
    cr_assert_eq(db_checkpoint_list(e.db, id, &c, &n), DB_OK);
    cr_assert_eq(n, 2);
    for (int i = 0; i < n; i++) cr_assert(!c[i].partial);
    free(c);
    DbLogLine *lines;
    cr_assert_eq(db_log_list(e.db, id, 0, 0, &lines, &n), DB_OK);
    bool resumed = false;
    for (int i = 0; i < n; i++) {
        if (!strstr(lines[i].line, "resumed from")) continue;
        resumed = true;
        /* kill -9 like: the steps 25..30 logged past the checkpoint went */
        if (crash_like) cr_assert(!strstr(lines[i].line, "(0 metric rows"), "%s", lines[i].line);
    }
    db_log_list_free(lines, n);
    cr_assert(resumed);
    teardown(&e);
}

/* A job a previous daemon left running with a cancel asked ends cancelled
 * at the next start, and never runs again: what its run left half made in
 * its checkpoints directory goes at that start. */
Test(job_scheduler, a_start_collects_the_strays_of_jobs_left_running) {
    Env e = setup();
    int64_t id;
    DbJob j;
    cr_assert_eq(db_job_insert(e.db, &(DbJobNew){.spec_json = "{}"}, &id), DB_OK);
    cr_assert_eq(db_job_claim(e.db, id, "cpu", &j), DB_OK, "%s", error_get());
    db_job_clear(&j);
    cr_assert_eq(db_job_cancel_requested(e.db, id), DB_OK);
    char stray[600];
    snprintf(stray, sizeof stray, "%s/jobs/%lld/checkpoints/epoch-2.tmp.999999.1",
             db_data_dir(e.db), (long long)id);
    cr_assert_eq(db_mkdir_p(stray), 0, "%s", error_get());
    Scheduler *s = start(&e, 1, false);
    cr_assert_eq(wait_state(&e, id, -1, 10), DB_JOB_CANCELLED);
    cr_assert_eq(access(stray, F_OK), -1, "%s is still there", stray);
    DbLogLine *lines;
    int n;
    cr_assert_eq(db_log_list(e.db, id, 0, 0, &lines, &n), DB_OK);
    bool said = false;
    for (int i = 0; i < n; i++)
        said |= !strcmp(lines[i].line, "daemon start: 1 unrecorded checkpoint directory removed");
    db_log_list_free(lines, n);
    cr_assert(said, "not said in the job's log");
    scheduler_stop(s);
    teardown(&e);
}

Test(job_scheduler, restart_resumes_same_trajectory) { restart_case(false); }

Test(job_scheduler, crash_resumes_from_epoch_checkpoint) { restart_case(true); }

/* A stand-in GPU: the CPU's kernel table registered as cuda:0 (its memory
 * is host memory, so everything runs), to watch the scheduler's choice of
 * device on a machine without one. Without --devices the daemon has its
 * CPU worker and one worker per GPU; an "auto" job takes the free GPU
 * first, and the CPU only while the GPU is busy. */
Test(job_scheduler, auto_takes_a_free_gpu_first) {
    backend_register_cuda(&cpu_backend, 1);
    Env e = setup();
    Scheduler *s = start(&e, 1, false);
    SchedulerWorkerInfo w[4];
    cr_assert_eq(scheduler_workers(s, w, 4), 2);
    cr_assert_str_eq(w[0].device, "cpu");
    cr_assert_str_eq(w[1].device, "cuda:0");
    atomic_store(&hook_sleep_us, 2000);
    int64_t first = submit(s, "first", 1);
    atomic_store(&hook_at_job, first); /* held at its first steps */
    atomic_store(&hook_at_step, 1);
    for (int i = 0; i < 20000 && !atomic_load(&hook_reached); i++) usleep(1000);
    cr_assert(atomic_load(&hook_reached));
    int64_t second = submit(s, "second", 1);
    cr_assert_eq(wait_state(&e, second, -1, 100), DB_JOB_SUCCEEDED);
    atomic_store(&hook_release, 1);
    cr_assert_eq(wait_state(&e, first, -1, 100), DB_JOB_SUCCEEDED);
    DbJob j;
    cr_assert_eq(db_job_get(e.db, first, &j), DB_OK);
    cr_assert_str_eq(j.device, "cuda:0");
    db_job_clear(&j);
    cr_assert_eq(db_job_get(e.db, second, &j), DB_OK);
    cr_assert_str_eq(j.device, "cpu", "the GPU was busy: the CPU worker takes it");
    db_job_clear(&j);
    scheduler_stop(s);
    teardown(&e);
}

/* Auto jobs already queued when the daemon starts (a restart): the GPU
 * worker takes the first; the CPU worker, which may have looked first
 * and left both to the idle GPU, must look again once the GPU is busy and
 * run the second meanwhile instead of waiting for the first to end. */
Test(job_scheduler, queued_auto_jobs_fill_the_gpu_then_the_cpu) {
    backend_register_cuda(&cpu_backend, 1);
    Env e = setup();
    int64_t ids[2];
    for (int i = 0; i < 2; i++) {
        char spec[2048];
        snprintf(spec, sizeof spec, spec_fmt, i ? "second" : "first", 4, 1);
        cr_assert_eq(db_job_insert(e.db, &(DbJobNew){.name = "queued", .spec_json = spec}, &ids[i]),
                     DB_OK, "%s", error_get());
    }
    atomic_store(&hook_sleep_us, 2000);
    atomic_store(&hook_at_job, ids[0]); /* the first is held at its first step */
    atomic_store(&hook_at_step, 1);
    Scheduler *s = start(&e, 1, false);
    cr_assert_eq(wait_state(&e, ids[1], -1, 15), DB_JOB_SUCCEEDED,
                 "the second job did not run while the first held the GPU");
    cr_assert(atomic_load(&hook_reached));
    DbJob j;
    cr_assert_eq(db_job_get(e.db, ids[0], &j), DB_OK);
    cr_assert_eq(j.state, DB_JOB_RUNNING);
    cr_assert_str_eq(j.device, "cuda:0");
    db_job_clear(&j);
    atomic_store(&hook_release, 1);
    cr_assert_eq(wait_state(&e, ids[0], -1, 100), DB_JOB_SUCCEEDED);
    scheduler_stop(s);
    teardown(&e);
}

/* One job on a one-worker scheduler started while this thread stands on
 * CPUS (its workers inherit them; this thread's own come back after):
 * the job's first log line, which names its device and thread count. */
static char *first_log_line_on(Env *e, const cpu_set_t *cpus, int threads_per_job,
                               const char *tag) {
    cpu_set_t was;
    cr_assert_eq(sched_getaffinity(0, sizeof was, &was), 0);
    cr_assert_eq(pthread_setaffinity_np(pthread_self(), sizeof *cpus, cpus), 0);
    SchedulerConfig cfg = {.db = e->db, .metrics = e->mw, .workers = 1,
                           .threads_per_job = threads_per_job};
    Scheduler *s = scheduler_start(&cfg);
    cr_assert_eq(pthread_setaffinity_np(pthread_self(), sizeof was, &was), 0);
    cr_assert(s, "%s", error_get());
    int64_t id = submit(s, tag, 1);
    cr_assert_eq(wait_state(e, id, -1, 100), DB_JOB_SUCCEEDED);
    scheduler_stop(s);
    DbLogLine *lines;
    int n;
    cr_assert_eq(db_log_list(e->db, id, 0, 1, &lines, &n), DB_OK);
    cr_assert_eq(n, 1);
    char *line = strdup(lines[0].line);
    db_log_list_free(lines, n);
    cr_assert(line);
    return line;
}

/* A worker started on one CPU (serve --http-cpus keeps the workers to the
 * CPUs the HTTP threads leave) runs its jobs on one OpenMP thread, not on
 * the process's count from start-up; with no limit, on as many as its
 * CPUs; --threads-per-job wins over both. */
Test(job_scheduler, jobs_run_as_many_threads_as_their_worker_has_cpus) {
    unsetenv("OMP_NUM_THREADS"); /* which the scheduler would leave in charge */
    cpu_set_t all, one;
    cr_assert_eq(sched_getaffinity(0, sizeof all, &all), 0);
    int first = 0;
    while (!CPU_ISSET(first, &all)) first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    char want[64];
    int n = CPU_COUNT(&all);
    snprintf(want, sizeof want, "attempt 1 on cpu, %d CPU thread%s", n, n == 1 ? "" : "s");

    Env e = setup();
    char *line = first_log_line_on(&e, &all, 0, "all-cpus");
    cr_assert_str_eq(line, want);
    free(line);
    line = first_log_line_on(&e, &one, 0, "one-cpu");
    cr_assert_str_eq(line, "attempt 1 on cpu, 1 CPU thread");
    free(line);
    line = first_log_line_on(&e, &one, 3, "three");
    cr_assert_str_eq(line, "attempt 1 on cpu, 3 CPU threads");
    free(line);
    teardown(&e);
}

/* ---- a server a lab shares: the fair queue and preemption ---- */

/* A user of the data dir, and the toy dataset shared so that their jobs
 * may train on it. */
static DbViewer lab_user(Env *e, const char *name) {
    int64_t id;
    char token[DB_TOKEN_LEN + 1];
    cr_assert_eq(db_user_create(e->db, name, false, &id, token), DB_OK, "%s", error_get());
    DbDataset ds;
    cr_assert_eq(db_dataset_resolve(e->db, NULL, "toy", &ds), DB_OK);
    cr_assert_eq(db_dataset_set_shared(e->db, ds.id, true), DB_OK);
    db_dataset_clear(&ds);
    return (DbViewer){.user_id = id};
}

static int64_t submit_as(Scheduler *s, const DbViewer *who, const char *tag, int epochs) {
    char text[2048];
    snprintf(text, sizeof text, spec_fmt, tag, 4, epochs);
    JobSpec *spec = job_spec_parse(text, strlen(text));
    cr_assert(spec, "%s", error_get());
    int64_t id = 0;
    cr_assert_eq(scheduler_create_job(s, spec, text, who, 0, &id), DB_OK, "%s", error_get());
    job_spec_free(spec);
    return id;
}

static DbJob job_row(Env *e, int64_t id) {
    DbJob j;
    cr_assert_eq(db_job_get(e->db, id, &j), DB_OK);
    return j;
}

/* One CPU worker; alice queues ten jobs (the first held at its first step
 * until all are in), then bob queues one: bob's runs second. */
Test(job_scheduler, a_second_users_job_runs_second) {
    Env e = setup();
    DbViewer alice = lab_user(&e, "alice"), bob = lab_user(&e, "bob");
    Scheduler *s = start(&e, 1, false);
    atomic_store(&hook_at_step, 1);
    int64_t a[10];
    a[0] = submit_as(s, &alice, "a0", 1);
    atomic_store(&hook_at_job, a[0]);
    for (int i = 0; i < 60000 && !atomic_load(&hook_reached); i++) usleep(1000);
    cr_assert(atomic_load(&hook_reached));
    for (int i = 1; i < 10; i++) a[i] = submit_as(s, &alice, "a", 1);
    int64_t b = submit_as(s, &bob, "b", 1);
    QueueEntry q;
    cr_assert_eq(scheduler_queue_info(s, b, &q), DB_OK);
    cr_assert_eq(q.position, 1, "bob's job is next");
    cr_assert_eq(q.reason, QUEUE_RESOURCES);
    cr_assert_eq(scheduler_queue_info(s, a[1], &q), DB_OK);
    cr_assert_eq(q.position, 2);
    cr_assert_eq(q.reason, QUEUE_PRIORITY);
    atomic_store(&hook_release, 1);
    cr_assert_eq(wait_state(&e, a[9], -1, 200), DB_JOB_SUCCEEDED);
    /* started in that order: alice's first, bob's, then the rest of hers */
    DbJob jb = job_row(&e, b), j0 = job_row(&e, a[0]), j1 = job_row(&e, a[1]);
    cr_assert_gt(jb.started_at, j0.started_at);
    cr_assert_lt(jb.started_at, j1.started_at, "bob's job waited for alice's queue");
    db_job_clear(&jb);
    db_job_clear(&j0);
    db_job_clear(&j1);
    /* the device time went to each user's recent use */
    DbUser u;
    cr_assert_eq(db_user_get(e.db, alice.user_id, &u), DB_OK);
    cr_assert_gt(u.usage_s, 0);
    scheduler_stop(s);
    teardown(&e);
}

/* A job of an admin's priority preempts the running one: it checkpoints at
 * its next step, goes back to the queue, and resumes once the other is
 * done, on the same trajectory, every step's metric once. */
Test(job_scheduler, a_preempted_job_resumes_on_the_same_trajectory) {
    Env e = setup();
    enum { EPOCHS = 4, STEPS = 48 };
    DbViewer alice = lab_user(&e, "alice"), bob = lab_user(&e, "bob");
    Scheduler *s = start(&e, 1, false);
    int64_t ref = submit_as(s, &alice, "ref", EPOCHS);
    cr_assert_eq(wait_state(&e, ref, -1, 100), DB_JOB_SUCCEEDED);

    int64_t id = submit_as(s, &alice, "int", EPOCHS);
    atomic_store(&hook_at_step, 30);
    atomic_store(&hook_at_job, id);
    for (int i = 0; i < 60000 && !atomic_load(&hook_reached); i++) usleep(1000);
    cr_assert(atomic_load(&hook_reached));
    int64_t urgent = submit_as(s, &bob, "urgent", 1);
    QueueEntry q;
    cr_assert_eq(scheduler_queue_info(s, urgent, &q), DB_OK);
    cr_assert_eq(q.reason, QUEUE_RESOURCES);
    cr_assert_eq(scheduler_set_priority(s, urgent, true, 5), DB_OK);
    atomic_store(&hook_release, 1);
    cr_assert_eq(wait_state(&e, urgent, -1, 100), DB_JOB_SUCCEEDED);
    cr_assert_eq(wait_state(&e, id, -1, 100), DB_JOB_SUCCEEDED);
    DbJob j = job_row(&e, id), u = job_row(&e, urgent);
    cr_assert_eq(j.preemptions, 1);
    cr_assert_eq(j.attempt, 2);
    cr_assert_eq(u.admin_priority, 5);
    cr_assert_geq(j.started_at, u.finished_at, "resumed after the urgent job ended");
    db_job_clear(&j);
    db_job_clear(&u);
    scheduler_stop(s);

    const char *names[] = {"loss", "lr", "train_loss", "train_accuracy", "val_loss",
                           "val_accuracy"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        double want[STEPS + 1], got[STEPS + 1];
        int nw = series(&e, ref, names[k], want, STEPS + 1);
        cr_assert_eq(series(&e, id, names[k], got, STEPS + 1), nw, "%s", names[k]);
        for (int st = 1; st <= STEPS; st++)
            cr_assert(got[st] == want[st] || (isnan(got[st]) && isnan(want[st])),
                      "%s at step %d: %.17g vs %.17g", names[k], st, got[st], want[st]);
    }
    DbLogLine *lines;
    int n;
    cr_assert_eq(db_log_list(e.db, id, 0, 0, &lines, &n), DB_OK);
    char want_line[96];
    snprintf(want_line, sizeof want_line, "preempted at step 30 by job %lld", (long long)urgent);
    bool preempted = false, resumed = false;
    for (int i = 0; i < n; i++) {
        preempted |= strstr(lines[i].line, want_line) != NULL;
        resumed |= strstr(lines[i].line, "resumed from") != NULL;
    }
    db_log_list_free(lines, n);
    cr_assert(preempted && resumed);
    teardown(&e);
}

/* spec with `field` (", \"key\": value") added at its end: a new string. */
static char *spec_with(const char *tag, const char *field) {
    char spec[2048];
    snprintf(spec, sizeof spec, spec_fmt, tag, 4, 1);
    size_t n = strlen(spec);
    char *out = malloc(n + strlen(field) + 1);
    cr_assert_not_null(out);
    memcpy(out, spec, n - 1); /* all but the closing brace */
    strcpy(out + n - 1, field);
    strcat(out, "}");
    return out;
}

static int64_t create_with(Scheduler *s, const char *tag, const char *field) {
    char *spec = spec_with(tag, field);
    int64_t id = create(s, spec);
    free(spec);
    return id;
}

/* The file's text (at most 64 KiB), "" when it cannot be read. */
static void read_text(const char *path, char *out, size_t size) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    fclose(f);
}

/* "auto" ranks take a GPU each or one CPU worker: on a daemon of two GPUs
 * and no CPU worker, 2 ranks are taken and 4 refused at submission
 * (never queued to wait for a device forever). */
Test(job_scheduler, auto_ranks_past_the_gpus_of_a_daemon_without_a_cpu_are_refused) {
    backend_register_cuda(&cpu_backend, 2);
    Env e = setup();
    SchedulerConfig cfg = {.db = e.db, .metrics = e.mw, .devices = "cuda:0,cuda:1"};
    Scheduler *s = scheduler_start(&cfg);
    cr_assert(s, "%s", error_get());
    for (int ranks = 2; ranks <= 4; ranks += 2) {
        char field[32];
        snprintf(field, sizeof field, ", \"ranks\": %d", ranks);
        char *text = spec_with("ranks", field);
        JobSpec *spec = job_spec_parse(text, strlen(text));
        cr_assert(spec, "%s", error_get());
        int64_t id = 0;
        int rc = scheduler_create_job(s, spec, text, NULL, 0, &id);
        if (ranks == 2) {
            cr_assert_eq(rc, DB_OK, "%s", error_get());
        } else {
            cr_assert_eq(rc, DB_INVALID);
            cr_assert_str_eq(error_get(), "ranks: 4 ranks on \"device\": \"auto\" take a GPU "
                                          "each or one CPU worker; this daemon has 2 GPUs and no "
                                          "CPU worker (cuda:0, cuda:1)");
        }
        job_spec_free(spec);
        free(text);
    }
    scheduler_stop(s);
    teardown(&e);
}

/* A job of "gpus": 2 on two stand-in GPUs beside the CPU worker:
 *   - while another job holds cuda:1 it waits, saying it needs both at
 *     once, and the free cuda:0 is held for it: an auto job submitted
 *     after it runs on the CPU instead;
 *   - then it takes both at once (its device "cuda:0,cuda:1") and mpirun
 *     starts its two ranks with one GPU each: the real traind, which finds
 *     no such GPU in its own process and names the rank's own GPU as it
 *     says so, so the job fails with mpirun's exit;
 *   - after it both GPUs are free: the next auto job takes cuda:0. */
Test(job_scheduler, a_job_of_two_gpus_takes_both_at_once) {
    char traind[1024];
    if (!realpath("build/traind", traind)) cr_skip_test("build/traind is not built (make all)");
    if (system("command -v mpirun >/dev/null") != 0) cr_skip_test("mpirun is not installed");
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1); /* no ptrace here */
    backend_register_cuda(&cpu_backend, 2);
    Env e = setup();
    SchedulerConfig cfg = {.db = e.db, .metrics = e.mw, .workers = 1, .step_hook = step_hook,
                           .ranks_program = traind, .report_url = "http://127.0.0.1:9"};
    Scheduler *s = scheduler_start(&cfg);
    cr_assert(s, "%s", error_get());
    SchedulerWorkerInfo w[4];
    cr_assert_eq(scheduler_workers(s, w, 4), 3);

    int64_t one = create_with(s, "one", ", \"device\": \"cuda:1\"");
    atomic_store(&hook_at_job, one); /* held at its first step */
    atomic_store(&hook_at_step, 1);
    for (int i = 0; i < 20000 && !atomic_load(&hook_reached); i++) usleep(1000);
    cr_assert(atomic_load(&hook_reached));
    int64_t two = create_with(s, "two", ", \"gpus\": 2");
    int64_t later = submit(s, "later", 1);
    cr_assert_eq(wait_state(&e, later, -1, 100), DB_JOB_SUCCEEDED);
    DbJob j;
    cr_assert_eq(db_job_get(e.db, later, &j), DB_OK);
    cr_assert_str_eq(j.device, "cpu", "cuda:0 is held for the job of two GPUs");
    db_job_clear(&j);
    QueueEntry q;
    cr_assert_eq(scheduler_queue_info(s, two, &q), DB_OK);
    cr_assert_eq(q.reason, QUEUE_RESOURCES);
    cr_assert(strstr(q.detail, "2 GPUs at once"), "%s", q.detail);

    atomic_store(&hook_release, 1);
    cr_assert_eq(wait_state(&e, one, -1, 100), DB_JOB_SUCCEEDED);
    cr_assert_eq(wait_state(&e, two, -1, 100), DB_JOB_FAILED);
    cr_assert_eq(db_job_get(e.db, two, &j), DB_OK);
    cr_assert_str_eq(j.device, "cuda:0,cuda:1");
    cr_assert(j.error && strstr(j.error, "mpirun exit"), "%s", j.error ? j.error : "(none)");
    db_job_clear(&j);
    char path[512], log[65536];
    snprintf(path, sizeof path, "%s/jobs/%lld/attempt-1/ranks.log", e.dir, (long long)two);
    read_text(path, log, sizeof log);
    /* the first rank to fail aborts the other (MPI_Abort): one says so */
    cr_assert(strstr(log, "rank 0 of 2: device cuda:0:") ||
                  strstr(log, "rank 1 of 2: device cuda:1:"),
              "%s:\n%s", path, log);
    cr_assert(!strstr(log, "rank 0 of 2: device cuda:1") &&
                  !strstr(log, "rank 1 of 2: device cuda:0"),
              "%s:\n%s", path, log);

    /* its workers are freed just after its end is recorded */
    bool idle = false;
    for (int k = 0; k < 10000 && !idle; k++) {
        int n = scheduler_workers(s, w, 4);
        idle = true;
        for (int i = 0; i < n; i++) idle &= w[i].job_id == 0;
        if (!idle) usleep(1000);
    }
    cr_assert(idle, "the job of two GPUs never gave its workers back");
    int64_t next = submit(s, "next", 1);
    cr_assert_eq(wait_state(&e, next, -1, 100), DB_JOB_SUCCEEDED);
    cr_assert_eq(db_job_get(e.db, next, &j), DB_OK);
    cr_assert_str_eq(j.device, "cuda:0", "a free GPU first, as before");
    db_job_clear(&j);
    scheduler_stop(s);
    teardown(&e);
}
