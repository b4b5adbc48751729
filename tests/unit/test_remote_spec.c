/* test_remote_spec.c - server/remote_spec.c: a daemon job's spec as ranks
 * outside the daemon read it. `init`, a checkpoint id, becomes the
 * checkpoint's model file by absolute path, whether the spec gave the id
 * as a number or as a string (the spec takes both).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "server/remote_spec.h"
#include "tests/support/tmp_db.h"

static TmpDb env;

static void setup(void) { tmp_db_open(&env, "remote-spec"); }
static void teardown(void) { tmp_db_close(&env); }
TestSuite(remote_spec, .init = setup, .fini = teardown);

/* A checkpoint of job `job` on disk and recorded; its id. */
static int64_t checkpoint_of(int64_t job) {
    char rel[256], path[700];
    cr_assert_eq(db_checkpoint_rel_dir(job, 0, 10, false, rel, sizeof rel), 0);
    snprintf(path, sizeof path, "%s/%s", db_data_dir(env.db), rel);
    cr_assert_eq(db_mkdir_p(path), 0, "%s", error_get());
    for (int i = 0; i < 2; i++) {
        char file[800];
        snprintf(file, sizeof file, "%s/%s", path, i ? "trainer.safetensors" : "model.safetensors");
        FILE *f = fopen(file, "w");
        cr_assert(f != NULL);
        fputs("x", f);
        fclose(f);
    }
    DbCheckpoint c;
    cr_assert_eq(db_checkpoint_insert(env.db, job, 0, 10, false, rel, &c), DB_OK, "%s",
                 error_get());
    return c.id;
}

Test(remote_spec, init_by_number_or_string_becomes_the_model_file) {
    int64_t from;
    cr_assert_eq(db_job_insert(env.db, &(DbJobNew){.spec_json = "{}"}, &from), DB_OK);
    int64_t ckpt = checkpoint_of(from);
    char want[4400], spec[64];
    snprintf(want, sizeof want, "%s/jobs/%lld/checkpoints/epoch-0/model.safetensors",
             db_data_dir(env.db), (long long)from);
    cr_assert(want[0] == '/', "an absolute path: %s", want);
    const char *forms[] = {"{\"init\": %lld}", "{\"init\": \"%lld\"}"};
    for (int i = 0; i < 2; i++) {
        snprintf(spec, sizeof spec, forms[i], (long long)ckpt);
        DbJob job = {.id = from + 1, .spec_json = spec};
        char *text = remote_spec_json(env.db, &job, NULL);
        cr_assert_not_null(text, "%s: %s", spec, error_get());
        json_t *o = json_loads(text, 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(o, "init")), want, "%s", spec);
        json_decref(o);
        free(text);
    }
}
