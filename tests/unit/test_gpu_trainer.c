/* test_gpu_trainer.c - the trainer's parity jobs (tests/fixtures/jobs) on
 * cuda against the same jobs on the CPU, whose path is itself checked
 * against PyTorch: every loss and accuracy, and the peak memory metric.
 *
 * Every test skips with "no CUDA device: ..." where there is none.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/train.h"
#include "job/build.h"
#include "tests/support/need_gpu.h"
#include "tests/support/parity.h"

/* ---- the trainer: parity jobs on cuda vs the CPU ---- */

typedef struct {
    int n;
    double loss[4096];
    char last_name[32];
    int peaks;           /* peak_memory_bytes metrics seen */
    double peak;         /* the last one */
} Losses;

static void rec_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    (void)step;
    (void)epoch;
    Losses *l = user;
    if (strcmp(name, "peak_memory_bytes") == 0) {
        l->peaks++;
        l->peak = value;
    }
    /* losses and accuracies; not train_time_s, which is the clock's */
    bool timing = strstr(name, "_time_s") != NULL;
    if (!timing && (strcmp(name, "loss") == 0 || strstr(name, "val_") == name ||
                    strstr(name, "train_") == name) && l->n < 4096)
        l->loss[l->n++] = value;
}

static void run_job(const char *path, Device device, Losses *out) {
    JobBuild b;
    memset(out, 0, sizeof *out);
    cr_assert_eq(job_build(&b, job_spec_parse_file(path), NULL), 0, "%s: %s", path, error_get());
    cr_assert_eq(job_build_to_device(&b, device), 0, "%s: %s", path, error_get());
    Trainer t;
    train_init(&t);
    job_build_trainer(&b, &t, device);
    t.cb = (TrainCallbacks){.user = out, .metric = rec_metric};
    cr_assert_eq(train_run(&t), 0, "%s on %s: %s", path,
                 device.type == DEVICE_CPU ? "cpu" : "cuda", error_get());
    job_build_free(&b);
}

Test(gpu, trainer_parity_jobs_on_cuda) {
    test_need_gpu();
    const char *cases[] = {"mlp_sgd_lambda", "cnn_adam_steplr", "batchnorm_dropout_sgd_multistep",
                           "csv_regression_adamw_cosine", "layernorm_mlp_adamw"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/jobs/%s.json", cases[i]);
        Losses *cpu = malloc(sizeof *cpu), *gpu = malloc(sizeof *gpu);
        cr_assert(cpu && gpu);
        run_job(path, DEVICE_CPU_INIT, cpu);
        run_job(path, CUDA0, gpu);
        cr_assert_eq(gpu->n, cpu->n, "%s: %d metrics on cuda, %d on cpu", cases[i], gpu->n,
                     cpu->n);
        double worst = 0;
        for (int k = 0; k < cpu->n; k++) {
            double e = fabs(gpu->loss[k] - cpu->loss[k]) / fmax(fabs(cpu->loss[k]), 1e-12);
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e; /* a NaN is the worst */
        }
        fprintf(stderr, "gpu trainer %-36s %d metrics, worst rel err %.3g, peak %.0f bytes\n",
                cases[i], cpu->n, worst, gpu->peak);
        /* one peak_memory_bytes per epoch on cuda (the allocator's count),
         * none on the CPU */
        cr_assert(gpu->peaks > 0 && gpu->peak > 0 && cpu->peaks == 0, "%s: peaks %d/%d, %g",
                  cases[i], gpu->peaks, cpu->peaks, gpu->peak);
        cr_assert(worst <= 1e-4, "%s: cuda run differs from cpu by %g (relative)", cases[i],
                  worst);
        free(cpu);
        free(gpu);
    }
}

/* A label past the model's classes, found on the GPU when the loss is
 * read (the device's index check): the step fails with that error, not
 * "loss is nan"; in validation too, where it was dropped (val_loss NaN). */
static void expect_label_error(bool in_val) {
    JobBuild b;
    const char *path = "tests/fixtures/jobs/mlp_sgd_lambda.json";
    cr_assert_eq(job_build(&b, job_spec_parse_file(path), NULL), 0, "%s", error_get());
    Dataset *ds = in_val ? b.val_ds : b.train_ds;
    cr_assert(ds && ds->targets, "a dense dataset");
    ((int64_t *)tensor_data(ds->targets))[3] = 99;
    cr_assert_eq(job_build_to_device(&b, CUDA0), 0, "%s", error_get());
    Trainer t;
    train_init(&t);
    job_build_trainer(&b, &t, CUDA0);
    Losses *seen = calloc(1, sizeof *seen);
    cr_assert_not_null(seen);
    t.cb = (TrainCallbacks){.user = seen, .metric = rec_metric};
    cr_assert_neq(train_run(&t), 0, "a label of 99 trained");
    cr_assert(strstr(error_get(), "class loss: target 99 at index 3 is out of range for 10 "
                                  "classes"), "%s", error_get());
    cr_assert_null(strstr(error_get(), "nan"), "%s", error_get());
    free(seen);
    job_build_free(&b);
}

Test(gpu, trainer_reports_the_devices_error_at_the_loss) {
    test_need_gpu();
    expect_label_error(false);
    expect_label_error(true);
}
