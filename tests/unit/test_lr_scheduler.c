/* test_lr_scheduler.c - LR schedulers against torch.optim.lr_scheduler
 * (tests/fixtures/gen_scheduler.py): every case of the fixture is rebuilt
 * from the arguments stored with it (SequentialLR's schedulers too), its lrs
 * (and OneCycleLR's momentums) compared within 1e-12 relative, and resumed
 * at every epoch with lr_scheduler_set_last_epoch. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/optim/lr_scheduler.h"
#include "tests/support/fixture.h"

#define MAX_EPOCHS 64
#define MAX_KIDS 4

/* One scheduler's config and the arrays it points into. */
typedef struct {
    LrSchedulerConfig cfg;
    int64_t milestones[16];
} CaseConfig;

typedef struct {
    const char *name;
    CaseConfig top;
    CaseConfig kids[MAX_KIDS]; /* SequentialLR's schedulers */
    LrSchedulerConfig kid_cfgs[MAX_KIDS];
    double base_lr;
    double lrs[MAX_EPOCHS];
    double momentums[MAX_EPOCHS]; /* NAN: the schedule leaves momentum alone */
    int n;
} SchedCase;

static double number_or(json_t *o, const char *key, double def) {
    json_t *v = json_object_get(o, key);
    return v ? json_number_value(v) : def;
}

/* One scheduler's arguments; keys absent keep lr_scheduler_config_init's
 * defaults, which are therefore tested against PyTorch's too. */
static void load_config(const char *name, json_t *o, CaseConfig *c) {
    LrSchedulerType type;
    const char *tname = json_string_value(json_object_get(o, "type"));
    cr_assert_eq(lr_scheduler_type_parse(tname, &type), 0, "%s: %s", name, error_get());
    LrSchedulerConfig *g = &c->cfg;
    lr_scheduler_config_init(g, type);
    json_t *v;
    if ((v = json_object_get(o, "lr_lambda"))) g->lr_lambda = json_string_value(v);
    g->step_size = (int64_t)number_or(o, "step_size", 0);
    g->gamma = number_or(o, "gamma", g->gamma);
    g->T_max = (int64_t)number_or(o, "T_max", 0);
    g->eta_min = number_or(o, "eta_min", g->eta_min);
    g->start_factor = number_or(o, "start_factor", g->start_factor);
    g->end_factor = number_or(o, "end_factor", g->end_factor);
    g->total_iters = (int64_t)number_or(o, "total_iters", (double)g->total_iters);
    g->max_lr = number_or(o, "max_lr", g->max_lr);
    g->total_steps = (int64_t)number_or(o, "total_steps", 0);
    g->epochs = (int64_t)number_or(o, "epochs", 0);
    g->steps_per_epoch = (int64_t)number_or(o, "steps_per_epoch", 0);
    g->pct_start = number_or(o, "pct_start", g->pct_start);
    g->div_factor = number_or(o, "div_factor", g->div_factor);
    g->final_div_factor = number_or(o, "final_div_factor", g->final_div_factor);
    g->base_momentum = number_or(o, "base_momentum", g->base_momentum);
    g->max_momentum = number_or(o, "max_momentum", g->max_momentum);
    if ((v = json_object_get(o, "anneal_strategy")))
        g->anneal_linear = strcmp(json_string_value(v), "linear") == 0;
    if ((v = json_object_get(o, "three_phase"))) g->three_phase = json_is_true(v);
    if ((v = json_object_get(o, "cycle_momentum"))) g->cycle_momentum = json_is_true(v);
    if ((v = json_object_get(o, "milestones"))) {
        size_t n = json_array_size(v);
        cr_assert(n <= 16);
        for (size_t i = 0; i < n; i++) c->milestones[i] = json_integer_value(json_array_get(v, i));
        g->milestones = c->milestones;
        g->n_milestones = n;
    }
}

/* A float64 tensor of the case; its values are read straight from the JSON. */
static int load_values(json_t *kase, const char *key, double *out) {
    json_t *data = json_object_get(json_object_get(kase, key), "data");
    int n = (int)json_array_size(data);
    cr_assert(n <= MAX_EPOCHS, "%d %s", n, key);
    for (int i = 0; i < n; i++) out[i] = json_number_value(json_array_get(data, (size_t)i));
    return n;
}

static void load_case(const char *name, json_t *kase, SchedCase *c) {
    memset(c, 0, sizeof *c);
    c->name = name;
    load_config(name, kase, &c->top);
    json_t *kids = json_object_get(kase, "schedulers");
    size_t nk = json_array_size(kids);
    cr_assert(nk <= MAX_KIDS);
    for (size_t i = 0; i < nk; i++) {
        load_config(name, json_array_get(kids, i), &c->kids[i]);
        c->kid_cfgs[i] = c->kids[i].cfg;
    }
    c->top.cfg.schedulers = nk ? c->kid_cfgs : NULL;
    c->top.cfg.n_schedulers = nk;
    c->base_lr = fixture_number(kase, "base_lr");
    c->n = load_values(kase, "lrs", c->lrs);
    cr_assert(c->n > 0, "%s: no lrs", name);
    for (int i = 0; i < MAX_EPOCHS; i++) c->momentums[i] = NAN;
    if (json_object_get(kase, "momentums"))
        cr_assert_eq(load_values(kase, "momentums", c->momentums), c->n);
}

static bool close_to(double got, double want) {
    return fabs(got - want) <= 1e-12 * fabs(want) + (want == 0 ? 1e-300 : 0);
}

static void expect_lr(const SchedCase *c, const LrScheduler *s, int epoch, const char *how) {
    double got = lr_scheduler_get_lr(s), want = c->lrs[epoch], m = NAN;
    cr_expect_eq(lr_scheduler_last_epoch(s), epoch, "%s %s: last_epoch", c->name, how);
    cr_expect(close_to(got, want), "%s %s: epoch %d lr %.17g, torch %.17g", c->name, how, epoch,
              got, want);
    bool has = lr_scheduler_momentum(s, &m);
    cr_expect_eq(has, !isnan(c->momentums[epoch]), "%s %s: momentum or not", c->name, how);
    if (has)
        cr_expect(close_to(m, c->momentums[epoch]), "%s %s: epoch %d momentum %.17g, torch %.17g",
                  c->name, how, epoch, m, c->momentums[epoch]);
}

/* Runs fn on every case of the fixture. */
static void for_each_case(void (*fn)(const SchedCase *)) {
    json_t *fx = fixture_load("scheduler");
    json_t *cases = json_object_get(fx, "cases");
    cr_assert(json_object_size(cases) >= 28);
    const char *name;
    json_t *kase;
    json_object_foreach(cases, name, kase) {
        SchedCase c;
        load_case(name, kase, &c);
        fn(&c);
    }
    json_decref(fx);
}

static void check_trajectory(const SchedCase *c) {
    LrScheduler *s = lr_scheduler_new(&c->top.cfg, c->base_lr);
    cr_assert(s != NULL, "%s: %s", c->name, error_get());
    if (c->top.cfg.type != LR_SCHEDULER_ONE_CYCLE) cr_expect_eq(lr_scheduler_base_lr(s), c->base_lr);
    for (int e = 0; e < c->n; e++) {
        expect_lr(c, s, e, "run");
        cr_assert_eq(lr_scheduler_step(s), 0, "%s: %s", c->name, error_get());
    }
    /* a OneCycleLR cannot step past total_steps, as in torch */
    if (c->top.cfg.type == LR_SCHEDULER_ONE_CYCLE) {
        cr_expect_eq(lr_scheduler_step(s), -1, "%s: stepped past total_steps", c->name);
        cr_expect(strstr(error_get(), "OneCycleLR: tried to step") != NULL, "%s", error_get());
    }
    lr_scheduler_free(s);
}

Test(lr_scheduler, matches_pytorch) { for_each_case(check_trajectory); }

static void check_resume(const SchedCase *c) {
    /* The uninterrupted run, and a fresh scheduler resumed at each epoch k:
     * identical from there on, bit for bit. */
    LrScheduler *ref = lr_scheduler_new(&c->top.cfg, c->base_lr);
    cr_assert(ref != NULL, "%s: %s", c->name, error_get());
    double run[MAX_EPOCHS + 1];
    /* a OneCycleLR ends at total_steps, which its cases reach */
    int last = c->n - 1;
    for (int e = 0; e <= last; e++) {
        run[e] = lr_scheduler_get_lr(ref);
        cr_assert_eq(lr_scheduler_step(ref), 0, "%s: %s", c->name, error_get());
    }
    for (int k = 0; k <= last; k++) {
        LrScheduler *s = lr_scheduler_new(&c->top.cfg, c->base_lr);
        cr_assert(s != NULL);
        cr_assert_eq(lr_scheduler_set_last_epoch(s, k), 0, "%s: %s", c->name, error_get());
        for (int e = k; e <= last; e++) {
            cr_expect_eq(lr_scheduler_last_epoch(s), e);
            cr_expect_eq(lr_scheduler_get_lr(s), run[e], "%s resumed at %d: epoch %d %.17g vs %.17g",
                         c->name, k, e, lr_scheduler_get_lr(s), run[e]);
            if (e < c->n) expect_lr(c, s, e, "resumed");
            cr_assert_eq(lr_scheduler_step(s), 0);
        }
        lr_scheduler_free(s);
    }
    /* Going back: a scheduler stepped past k and set to k again. */
    cr_assert_eq(lr_scheduler_set_last_epoch(ref, 3), 0);
    cr_expect_eq(lr_scheduler_get_lr(ref), run[3], "%s: set back to 3", c->name);
    cr_assert_eq(lr_scheduler_step(ref), 0);
    cr_expect_eq(lr_scheduler_get_lr(ref), run[4], "%s: set back to 3, stepped", c->name);
    lr_scheduler_free(ref);
}

Test(lr_scheduler, resume_with_set_last_epoch) { for_each_case(check_resume); }

Test(lr_scheduler, type_names) {
    static const char *names[] = {"LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR",
                                  "CosineAnnealingLR", "LinearLR", "OneCycleLR", "SequentialLR"};
    static const LrSchedulerType types[] = {
        LR_SCHEDULER_LAMBDA, LR_SCHEDULER_STEP,   LR_SCHEDULER_MULTI_STEP, LR_SCHEDULER_EXPONENTIAL,
        LR_SCHEDULER_COSINE, LR_SCHEDULER_LINEAR, LR_SCHEDULER_ONE_CYCLE,  LR_SCHEDULER_SEQUENTIAL};
    for (int i = 0; i < 8; i++) {
        LrSchedulerType t;
        cr_expect_eq(lr_scheduler_type_parse(names[i], &t), 0);
        cr_expect_eq(t, types[i]);
        cr_expect_str_eq(lr_scheduler_type_name(types[i]), names[i]);
    }
    LrSchedulerType t;
    cr_expect_eq(lr_scheduler_type_parse("steplr", &t), -1);
    cr_expect_str_eq(error_get(), "unknown scheduler type 'steplr' (known: LambdaLR, StepLR, "
                                  "MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR, "
                                  "OneCycleLR, SequentialLR)");
    cr_expect_eq(lr_scheduler_type_parse(NULL, &t), -1);
}

Test(lr_scheduler, config_defaults) {
    LrSchedulerConfig c;
    lr_scheduler_config_init(&c, LR_SCHEDULER_MULTI_STEP);
    cr_expect_eq(c.type, LR_SCHEDULER_MULTI_STEP);
    cr_expect_eq(c.gamma, 0.1);
    cr_expect_eq(c.eta_min, 0.0);
    lr_scheduler_config_init(&c, LR_SCHEDULER_EXPONENTIAL);
    cr_expect(isnan(c.gamma));
}

static void expect_bad(const LrSchedulerConfig *c, double base_lr, const char *msg) {
    error_clear();
    LrScheduler *s = lr_scheduler_new(c, base_lr);
    cr_expect(s == NULL, "accepted, expected \"%s\"", msg);
    lr_scheduler_free(s);
    cr_expect_str_eq(error_get(), msg);
}

Test(lr_scheduler, bad_configs) {
    LrSchedulerConfig c;
    lr_scheduler_config_init(&c, LR_SCHEDULER_LAMBDA);
    expect_bad(&c, 0.1, "LambdaLR: lr_lambda is required");
    c.lr_lambda = "0.95 *$ epoch";
    expect_bad(&c, 0.1, "LambdaLR: lr_lambda: unexpected character '$' at position 6");
    c.lr_lambda = "1 / epoch";
    expect_bad(&c, 0.1, "LambdaLR: lr_lambda at epoch 0: division by zero at position 2");
    c.lr_lambda = "1";
    expect_bad(&c, NAN, "LambdaLR: lr must be a finite number >= 0, got nan");
    expect_bad(&c, -0.1, "LambdaLR: lr must be a finite number >= 0, got -0.1");

    lr_scheduler_config_init(&c, LR_SCHEDULER_STEP);
    expect_bad(&c, 0.1, "StepLR: step_size must be > 0, got 0");
    c.step_size = -2;
    expect_bad(&c, 0.1, "StepLR: step_size must be > 0, got -2");
    c.step_size = 2;
    c.gamma = -0.5;
    expect_bad(&c, 0.1, "StepLR: gamma must be a finite number >= 0, got -0.5");
    c.gamma = INFINITY;
    expect_bad(&c, 0.1, "StepLR: gamma must be a finite number >= 0, got inf");

    lr_scheduler_config_init(&c, LR_SCHEDULER_MULTI_STEP);
    int64_t unsorted[] = {2, 7, 5}, negative[] = {-1, 3};
    c.milestones = unsorted;
    c.n_milestones = 3;
    expect_bad(&c, 0.1, "MultiStepLR: milestones must be in increasing order, milestones[2] = 5 "
                        "after 7");
    c.milestones = negative;
    c.n_milestones = 2;
    expect_bad(&c, 0.1, "MultiStepLR: milestones[0] is -1, must be >= 0");
    c.milestones = NULL;
    expect_bad(&c, 0.1, "MultiStepLR: milestones is NULL");
    c.n_milestones = 0; /* no milestones: a constant lr, as in torch */
    LrScheduler *s = lr_scheduler_new(&c, 0.1);
    cr_assert(s != NULL, "%s", error_get());
    for (int i = 0; i < 5; i++) cr_assert_eq(lr_scheduler_step(s), 0);
    cr_expect_eq(lr_scheduler_get_lr(s), 0.1);
    lr_scheduler_free(s);

    lr_scheduler_config_init(&c, LR_SCHEDULER_EXPONENTIAL);
    expect_bad(&c, 0.1, "ExponentialLR: gamma is required");

    lr_scheduler_config_init(&c, LR_SCHEDULER_COSINE);
    expect_bad(&c, 0.1, "CosineAnnealingLR: T_max must be in 1..4503599627370496, got 0");
    c.T_max = 10;
    c.eta_min = -1;
    expect_bad(&c, 0.1, "CosineAnnealingLR: eta_min must be a finite number >= 0, got -1");

    c.type = (LrSchedulerType)42;
    expect_bad(&c, 0.1, "scheduler: unknown type 42");
    expect_bad(NULL, 0.1, "scheduler: config is NULL");
}

/* An lr_lambda that fails at a later epoch: step reports it with the epoch
 * and leaves the scheduler as it was. */
Test(lr_scheduler, lambda_error_at_step) {
    LrSchedulerConfig c;
    lr_scheduler_config_init(&c, LR_SCHEDULER_LAMBDA);
    c.lr_lambda = "1 / (2 - epoch)";
    LrScheduler *s = lr_scheduler_new(&c, 0.1);
    cr_assert(s != NULL, "%s", error_get());
    cr_expect_eq(lr_scheduler_get_lr(s), 0.1 * 0.5);
    cr_assert_eq(lr_scheduler_step(s), 0);
    cr_expect_eq(lr_scheduler_get_lr(s), 0.1 * 1.0);
    cr_expect_eq(lr_scheduler_step(s), -1);
    cr_expect_str_eq(error_get(), "LambdaLR: lr_lambda at epoch 2: division by zero at position 2");
    cr_expect_eq(lr_scheduler_last_epoch(s), 1);
    cr_expect_eq(lr_scheduler_get_lr(s), 0.1);
    cr_expect_eq(lr_scheduler_set_last_epoch(s, 2), -1);
    cr_expect_eq(lr_scheduler_last_epoch(s), 1);
    cr_expect_eq(lr_scheduler_set_last_epoch(s, 3), 0);
    cr_expect_eq(lr_scheduler_get_lr(s), 0.1 * -1.0);
    lr_scheduler_free(s);
}

Test(lr_scheduler, set_last_epoch_bounds) {
    LrSchedulerConfig c;
    lr_scheduler_config_init(&c, LR_SCHEDULER_EXPONENTIAL);
    c.gamma = 0.9;
    LrScheduler *s = lr_scheduler_new(&c, 0.1);
    cr_assert(s != NULL);
    cr_expect_eq(lr_scheduler_set_last_epoch(s, -1), -1);
    cr_expect_str_eq(error_get(), "ExponentialLR: last_epoch must be in 0..10000000, got -1");
    cr_expect_eq(lr_scheduler_set_last_epoch(s, LR_SCHEDULER_MAX_EPOCH + 1), -1);
    cr_expect_eq(lr_scheduler_last_epoch(s), 0);
    cr_expect_eq(lr_scheduler_get_lr(s), 0.1);
    /* The chained product underflows and sticks at 5 units of the smallest
     * subnormal, as in Python (0.9 of it rounds back up to 5 units). */
    cr_expect_eq(lr_scheduler_set_last_epoch(s, 20000), 0);
    cr_expect_eq(lr_scheduler_get_lr(s), 2.5e-323); /* Python: 2.5e-323 */
    lr_scheduler_free(s);
}

/* Far past T_max the recursive form still follows PyTorch's restarts: the lr
 * comes back to base_lr at every even multiple of T_max. */
Test(lr_scheduler, cosine_long_run) {
    LrSchedulerConfig c;
    lr_scheduler_config_init(&c, LR_SCHEDULER_COSINE);
    c.T_max = 7;
    c.eta_min = 0.001;
    LrScheduler *s = lr_scheduler_new(&c, 0.1);
    cr_assert(s != NULL);
    for (int e = 1; e <= 700; e++) {
        cr_assert_eq(lr_scheduler_step(s), 0);
        double closed = 0.001 + (0.1 - 0.001) * (1 + cos(M_PI * e / 7)) / 2;
        cr_expect(fabs(lr_scheduler_get_lr(s) - closed) < 1e-12, "epoch %d: %.17g vs %.17g", e,
                  lr_scheduler_get_lr(s), closed);
    }
    lr_scheduler_free(s);
}
