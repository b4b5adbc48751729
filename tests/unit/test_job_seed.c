/* test_job_seed.c - a job's `seed` reaches its shuffling: built the way
 * the daemon's workers and `traind run` build a job (job/build.h),
 * trained with train_run, two seeds with `shuffle: true` give two loss
 * curves (from the first step: the first batch differs) and one seed gives
 * the same curve twice, bit for bit. The job starts from the fixture's
 * fixed weights (`init`) and has no dropout, so the data order is the only
 * thing the seed can change: with `shuffle: false` two seeds give one
 * curve, which shows the difference above is the shuffle's.
 *
 * The job is tests/fixtures/jobs/csv_regression_adamw_cosine.json (200
 * CSV rows, batches of 32, 2 epochs here).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "core/error.h"
#include "core/train.h"
#include "job/build.h"

#define JOBS_DIR "tests/fixtures/jobs"
#define MAX_STEPS 64

typedef struct {
    double loss[MAX_STEPS + 1]; /* by step */
    int64_t steps;
} Curve;

static void on_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    Curve *c = user;
    (void)epoch;
    if (strcmp(name, "loss") != 0) return;
    cr_assert(step >= 1 && step <= MAX_STEPS, "loss at step %lld", (long long)step);
    c->loss[step] = value;
    if (step > c->steps) c->steps = step;
}

/* The fixture job with `shuffle` and `seed` set, built by job_build and
 * trained on the CPU; its loss at every step. */
static Curve run_job(bool shuffle, int seed) {
    json_error_t err;
    json_t *spec = json_load_file(JOBS_DIR "/csv_regression_adamw_cosine.json", 0, &err);
    cr_assert_not_null(spec, "%s: %s", JOBS_DIR, err.text);
    json_object_set_new(spec, "shuffle", json_boolean(shuffle));
    json_object_set_new(spec, "seed", json_integer(seed));
    json_object_set_new(spec, "epochs", json_integer(2));
    char *text = json_dumps(spec, 0);
    json_decref(spec);
    cr_assert_not_null(text);
    JobBuild b;
    int rc = job_build(&b, job_spec_parse_in(text, strlen(text), JOBS_DIR), NULL);
    free(text);
    cr_assert_eq(rc, 0, "job_build: %s", error_get());
    cr_assert_eq(job_build_to_device(&b, DEVICE_CPU_INIT), 0, "%s", error_get());
    Curve c = {.steps = 0};
    Trainer t;
    train_init(&t);
    job_build_trainer(&b, &t, DEVICE_CPU_INIT);
    t.cb = (TrainCallbacks){.user = &c, .metric = on_metric};
    cr_assert_eq(train_run(&t), 0, "train_run: %s", error_get());
    cr_assert_eq(c.steps, train_total_steps(&t));
    job_build_free(&b);
    return c;
}

/* how many steps' losses differ */
static int64_t steps_differ(const Curve *a, const Curve *b) {
    cr_assert_eq(a->steps, b->steps);
    int64_t n = 0;
    for (int64_t s = 1; s <= a->steps; s++)
        n += memcmp(&a->loss[s], &b->loss[s], sizeof(double)) != 0;
    return n;
}

Test(job_seed, shuffle_follows_the_seed) {
    Curve a = run_job(true, 1), again = run_job(true, 1), b = run_job(true, 2);
    cr_assert_eq(a.steps, 14, "200 rows in batches of 32, 2 epochs: %lld steps",
                 (long long)a.steps);
    cr_assert_eq(steps_differ(&a, &again), 0, "seed 1 twice: the curves differ");
    cr_assert_neq(a.loss[1], b.loss[1], "seeds 1 and 2: the same loss at step 1 (%.17g): the "
                  "first batch did not change with the seed", a.loss[1]);
    int64_t differ = steps_differ(&a, &b);
    cr_assert_eq(differ, a.steps, "seeds 1 and 2: only %lld of %lld steps differ",
                 (long long)differ, (long long)a.steps);
}

Test(job_seed, without_shuffle_the_seed_changes_nothing) {
    Curve a = run_job(false, 1), b = run_job(false, 2);
    cr_assert_eq(steps_differ(&a, &b), 0, "shuffle false: seeds 1 and 2 give different curves");
}
