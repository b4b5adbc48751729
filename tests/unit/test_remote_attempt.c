/* test_remote_attempt.c - attempts run outside the daemon, the parts that
 * need no HTTP: the log line numbering that stores a line once
 * (db_log_seq_accept, db_job_remote_logs), the attempt token's check
 * (remote_attempt_check: 401 or 409), the token's row and the reported end
 * (storage/jobs.c). The routes and a real rank: tests/e2e/test_remote_report.sh. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/remote_attempt.h"
#include "storage/db.h"
#include "storage/sha256.h"
#include "tests/support/tmp_dir.h"

static char tmpdir[256];
static Db *db;

static void setup(void) {
    tmp_dir_make(tmpdir, sizeof tmpdir, "remote");
    db = db_open(tmpdir);
    cr_assert(db, "db_open: %s", error_get());
}

static void teardown(void) {
    db_close(db);
    tmp_dir_remove(tmpdir);
}

TestSuite(remote_attempt, .init = setup, .fini = teardown);

/* A job claimed (running, attempt 1) with the token "tok-1"'s hash. */
static int64_t running_job(void) {
    DbJobNew n = {.name = "r", .spec_json = "{}"};
    int64_t id;
    cr_assert_eq(db_job_insert(db, &n, &id), DB_OK);
    cr_assert_eq(db_job_claim(db, id, "external-0", NULL), DB_OK);
    char hash[SHA256_HEX_LEN + 1];
    sha256_buffer_hex("tok-1", 5, hash);
    cr_assert_eq(db_job_remote_token_set(db, id, 1, hash), DB_OK, "%s", error_get());
    return id;
}

Test(remote_attempt, seq_accept_takes_each_number_once) {
    int64_t next = 0;
    const int64_t seqs[] = {0, 1, 1, 0, 2, 5, 3, 6};
    const bool want[] = {true, true, false, false, true, true, false, true};
    for (size_t i = 0; i < sizeof seqs / sizeof *seqs; i++)
        cr_assert_eq(db_log_seq_accept(&next, seqs[i]), want[i], "seq %lld (i %zu)",
                     (long long)seqs[i], i);
    cr_assert_eq(next, 7);
}

static int log_count(int64_t job, const char *prefix) {
    DbLogLine *lines;
    int n, count = 0;
    cr_assert_eq(db_log_list(db, job, 0, 1000, &lines, &n), DB_OK);
    for (int i = 0; i < n; i++) count += strncmp(lines[i].line, prefix, strlen(prefix)) == 0;
    db_log_list_free(lines, n);
    return count;
}

Test(remote_attempt, a_batch_sent_again_stores_no_line_twice) {
    int64_t job = running_job();
    const char *lines[] = {"line 0", "line 1", "line 2", "line 3"};
    const int64_t first[] = {0, 1, 2}, again[] = {1, 2, 3};
    int stored = -1;
    cr_assert_eq(db_job_remote_logs(db, job, 1, first, lines, 3, &stored), DB_OK);
    cr_assert_eq(stored, 3);
    cr_assert_eq(db_job_remote_logs(db, job, 1, again, lines + 1, 3, &stored), DB_OK);
    cr_assert_eq(stored, 1, "only line 3 is new");
    cr_assert_eq(log_count(job, "line "), 4);
    DbJobRemote r;
    cr_assert_eq(db_job_remote_get(db, job, &r), DB_OK);
    cr_assert_eq(r.log_seq, 4);
    /* another attempt's rank stores nothing */
    cr_assert_eq(db_job_remote_logs(db, job, 2, first, lines, 1, &stored), DB_CONFLICT);
    cr_assert_eq(log_count(job, "line "), 4);
    /* a rank starting the attempt over numbers from 0 again */
    cr_assert_eq(db_job_remote_log_restart(db, job, 1), DB_OK);
    cr_assert_eq(db_job_remote_logs(db, job, 1, first, lines, 1, &stored), DB_OK);
    cr_assert_eq(stored, 1);
    cr_assert_eq(log_count(job, "line 0"), 2);
}

Test(remote_attempt, token_check) {
    int64_t job = running_job();
    DbJobRemote r;
    char why[256];
    cr_assert_eq(db_job_remote_get(db, job, &r), DB_OK);
    cr_assert_eq(remote_attempt_check(&r, job, 1, "tok-1", why, sizeof why), REMOTE_AUTH_OK);
    cr_assert_eq(remote_attempt_check(&r, job, 1, "tok-2", why, sizeof why), REMOTE_AUTH_BAD_TOKEN);
    cr_assert_eq(remote_attempt_check(&r, job, 1, "", why, sizeof why), REMOTE_AUTH_BAD_TOKEN);
    cr_assert_eq(remote_attempt_check(&r, job, 2, "tok-1", why, sizeof why), REMOTE_AUTH_STALE);
    cr_assert_str_eq(why, "job 1 runs attempt 1, not 2");
    /* the job over: the same token is stale */
    cr_assert_eq(db_job_finish(db, job, DB_JOB_SUCCEEDED, NULL), DB_OK);
    cr_assert_eq(db_job_remote_get(db, job, &r), DB_OK);
    cr_assert_eq(remote_attempt_check(&r, job, 1, "tok-1", why, sizeof why), REMOTE_AUTH_STALE);
    cr_assert_str_eq(why, "job 1 is succeeded: attempt 1 is over");
    /* a job that never had one takes no token, not even an empty one */
    DbJobRemote none = {.state = DB_JOB_RUNNING, .attempt = 1, .token_attempt = 1};
    cr_assert_eq(remote_attempt_check(&none, job, 1, "", why, sizeof why), REMOTE_AUTH_BAD_TOKEN);
}

Test(remote_attempt, token_only_for_the_running_attempt) {
    int64_t job = running_job();
    cr_assert_eq(db_job_remote_token_set(db, job, 2, "x"), DB_CONFLICT);
    cr_assert_eq(db_job_requeue(db, job, NULL, NULL), DB_OK);
    cr_assert_eq(db_job_remote_token_set(db, job, 1, "x"), DB_CONFLICT);
    cr_assert(strstr(error_get(), "queued") != NULL, "%s", error_get());
}

Test(remote_attempt, reported_end) {
    int64_t job = running_job();
    DbJobState st;
    char *err = (char *)"not set";
    cr_assert_eq(db_job_remote_end(db, job, 1, &st, &err), DB_NOT_FOUND);
    cr_assert_null(err);
    cr_assert_eq(db_job_remote_end_set(db, job, 1, DB_JOB_RUNNING, NULL), DB_INVALID);
    cr_assert_eq(db_job_remote_end_set(db, job, 1, DB_JOB_FAILED, "step 5: loss is nan"), DB_OK);
    cr_assert_eq(db_job_remote_end_set(db, job, 1, DB_JOB_CANCELLED, "cancelled at step 7"), DB_OK);
    cr_assert_eq(db_job_remote_end(db, job, 1, &st, &err), DB_OK);
    cr_assert_eq(st, DB_JOB_CANCELLED, "sent again, it replaces");
    cr_assert_str_eq(err, "cancelled at step 7");
    free(err);
    cr_assert_eq(db_job_remote_end(db, job, 2, &st, &err), DB_NOT_FOUND);
    cr_assert_eq(db_job_remote_end_set(db, job, 2, DB_JOB_SUCCEEDED, NULL), DB_CONFLICT);
}
