/* test_users.c - users and what guards them, below HTTP: limits as people
 * write them (server/quota_text.h: the command line's values, PATCH's
 * JSON, the audit detail), a user's own "no limit" stored beside the
 * daemon's default (storage/db.h DB_QUOTA_UNLIMITED), the audit trail's
 * rows, the metrics scrape token's file (server/metrics_token.h), and a
 * stream cut off once its token is revoked or rotated
 * (server/stream_auth.h). Each database test works in its own temporary
 * data dir. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "server/metrics_token.h"
#include "server/quota_text.h"
#include "server/stream_auth.h"
#include "storage/db.h"
#include "storage/sha256.h"
#include "tests/support/tmp_dir.h"

static char tmpdir[256];

static Db *open_tmp(void) {
    tmp_dir_make(tmpdir, sizeof tmpdir, "users");
    Db *db = db_open(tmpdir);
    if (!db) cr_assert_fail("db_open: %s", error_get());
    return db;
}

static void close_tmp(Db *db) {
    db_close(db);
    tmp_dir_remove(tmpdir);
}

/* ---- quota_text ---- */

Test(users, quota_values_from_the_command_line) {
    int64_t v = 0;
    cr_assert_eq(quota_text_parse("2", 1, &v), 0);
    cr_assert_eq(v, 2);
    cr_assert_eq(quota_text_parse("0", 1, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(quota_text_parse("default", 1, &v), 0);
    cr_assert_eq(v, DB_QUOTA_DEFAULT);
    cr_assert_eq(quota_text_parse("unlimited", 1e9, &v), 0);
    cr_assert_eq(v, DB_QUOTA_UNLIMITED);
    cr_assert_eq(quota_text_parse("0.5", 1e9, &v), 0);
    cr_assert_eq(v, 500000000);
    cr_assert_eq(quota_text_parse("50", 1e9, &v), 0);
    cr_assert_eq(v, 50000000000LL);
    const char *bad_int[] = {"", "-1", "+2", " 2", "2x", "1.5", "none", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_int / sizeof *bad_int; i++) {
        v = 77;
        cr_assert_eq(quota_text_parse(bad_int[i], 1, &v), -1, "'%s'", bad_int[i]);
        cr_assert_eq(v, 77, "'%s' changed the value", bad_int[i]);
    }
    cr_assert_str_eq(error_get(), "expected an integer >= 0, 'default' or 'unlimited', got "
                                  "'99999999999999999999'");
    cr_assert_eq(quota_text_parse("-0.5", 1e9, &v), -1);
    cr_assert_eq(quota_text_parse("1e10", 1e9, &v), -1); /* 1e19 bytes: past int64 */
    cr_assert_eq(quota_text_parse("nan", 1e9, &v), -1);
    cr_assert(strstr(error_get(), "expected a number >= 0") != NULL, "%s", error_get());
}

Test(users, quota_values_as_shown) {
    char b[32];
    cr_assert_str_eq(quota_text_bytes(0, b, sizeof b), "0 B");
    cr_assert_str_eq(quota_text_bytes(999, b, sizeof b), "999 B");
    cr_assert_str_eq(quota_text_bytes(1500000, b, sizeof b), "1.5 MB");
    cr_assert_str_eq(quota_text_bytes(50000000000LL, b, sizeof b), "50.0 GB");
    cr_assert_str_eq(quota_text_bytes(2500000000000LL, b, sizeof b), "2.5 TB");
    cr_assert_str_eq(quota_text_limit(QUOTA_GPUS, DB_QUOTA_DEFAULT, b, sizeof b), "default");
    cr_assert_str_eq(quota_text_limit(QUOTA_GPUS, DB_QUOTA_UNLIMITED, b, sizeof b), "unlimited");
    cr_assert_str_eq(quota_text_limit(QUOTA_RUNNING_JOBS, 3, b, sizeof b), "3");
    cr_assert_str_eq(quota_text_limit(QUOTA_DATASET_BYTES, 4000000000LL, b, sizeof b), "4.0 GB");

    DbQuota own = {2, DB_QUOTA_DEFAULT, DB_QUOTA_UNLIMITED, 0, DB_QUOTA_DEFAULT};
    json_t *j = quota_text_json(&own, false);
    char *text = json_dumps(j, JSON_COMPACT);
    cr_assert_str_eq(text, "{\"running_jobs\":2,\"queued_jobs\":null,\"gpus\":\"unlimited\","
                           "\"dataset_bytes\":0,\"checkpoint_bytes\":null}");
    free(text);
    json_decref(j);
    /* effective: the defaults filled in; one still -1 (no default) is no limit */
    DbQuota defaults = {DB_QUOTA_DEFAULT, 40, 1, 9, DB_QUOTA_DEFAULT};
    DbQuota eff = quota_effective(&own, &defaults);
    j = quota_text_json(&eff, true);
    text = json_dumps(j, JSON_COMPACT);
    cr_assert_str_eq(text, "{\"running_jobs\":2,\"queued_jobs\":40,\"gpus\":\"unlimited\","
                           "\"dataset_bytes\":0,\"checkpoint_bytes\":\"unlimited\"}");
    free(text);
    json_decref(j);
}

Test(users, quota_change_from_json) {
    DbQuota c;
    json_error_t jerr;
    json_t *o = json_loads("{\"running_jobs\": 2, \"gpus\": \"unlimited\", \"queued_jobs\": null}",
                           0, &jerr);
    cr_assert_eq(quota_text_from_json(o, &c), 0, "%s", error_get());
    json_decref(o);
    cr_assert_eq(c.running_jobs, 2);
    cr_assert_eq(c.gpus, DB_QUOTA_UNLIMITED);
    cr_assert_eq(c.queued_jobs, DB_QUOTA_DEFAULT);
    cr_assert_eq(c.dataset_bytes, DB_QUOTA_UNCHANGED);
    cr_assert_eq(c.checkpoint_bytes, DB_QUOTA_UNCHANGED);
    char d[256];
    cr_assert_str_eq(quota_text_describe(&c, d, sizeof d),
                     "running_jobs=2 queued_jobs=default gpus=unlimited");

    static const struct {
        const char *json, *path, *message;
    } bad[] = {
        {"{\"gpus\": -1}", "quota.gpus", "quota.gpus: expected an integer >= 0, \"unlimited\" or "
                                         "null (the daemon's default)"},
        {"{\"gpus\": 1.5}", "quota.gpus", NULL},
        {"{\"dataset_bytes\": \"lots\"}", "quota.dataset_bytes", NULL},
        {"{\"gpu\": 1}", "quota.gpu", "quota.gpu: unknown limit (known: running_jobs, "
                                      "queued_jobs, gpus, dataset_bytes, checkpoint_bytes)"},
        {"[1]", "quota", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        o = json_loads(bad[i].json, JSON_DECODE_ANY, &jerr);
        cr_assert(o != NULL, "%s", bad[i].json);
        error_clear();
        cr_assert_eq(quota_text_from_json(o, &c), -1, "%s", bad[i].json);
        json_decref(o);
        cr_assert_str_eq(error_last()->path, bad[i].path, "%s", bad[i].json);
        if (bad[i].message) cr_assert_str_eq(error_get(), bad[i].message);
    }
}

/* ---- storage: a user's own "no limit", the audit trail ---- */

Test(users, unlimited_is_stored_apart_from_the_default) {
    Db *db = open_tmp();
    char token[DB_TOKEN_LEN + 1];
    cr_assert_eq(db_user_create(db, "alice", false, NULL, token), DB_OK);
    DbQuota q = {3, DB_QUOTA_UNLIMITED, DB_QUOTA_UNCHANGED, 1000, DB_QUOTA_UNCHANGED};
    cr_assert_eq(db_user_set_quota(db, "alice", &q), DB_OK, "%s", error_get());
    DbUser u;
    cr_assert_eq(db_user_get_by_name(db, "alice", &u), DB_OK);
    cr_assert_eq(u.quota.running_jobs, 3);
    cr_assert_eq(u.quota.queued_jobs, DB_QUOTA_UNLIMITED);
    cr_assert_eq(u.quota.gpus, DB_QUOTA_DEFAULT);
    cr_assert_eq(u.quota.dataset_bytes, 1000);
    /* the default applies where the user has none of their own, not where
     * they have "unlimited" */
    DbQuota defaults = {1, 10, 1, 5, 5};
    DbQuota eff = quota_effective(&u.quota, &defaults);
    cr_assert_eq(eff.queued_jobs, DB_QUOTA_UNLIMITED);
    cr_assert_eq(eff.gpus, 1);
    char msg[128];
    cr_assert(quota_allows("alice", &eff, QUOTA_QUEUED_JOBS, 1000000, 1, msg, sizeof msg));
    cr_assert(!quota_allows("alice", &eff, QUOTA_GPUS, 1, 1, msg, sizeof msg));
    /* back to the default */
    DbQuota back = {DB_QUOTA_UNCHANGED, DB_QUOTA_DEFAULT, DB_QUOTA_UNCHANGED, DB_QUOTA_UNCHANGED,
                    DB_QUOTA_UNCHANGED};
    cr_assert_eq(db_user_set_quota(db, "alice", &back), DB_OK);
    cr_assert_eq(db_user_get_by_name(db, "alice", &u), DB_OK);
    cr_assert_eq(u.quota.queued_jobs, DB_QUOTA_DEFAULT);
    cr_assert_eq(u.quota.running_jobs, 3);
    DbQuota worse = {-3, DB_QUOTA_UNCHANGED, DB_QUOTA_UNCHANGED, DB_QUOTA_UNCHANGED,
                     DB_QUOTA_UNCHANGED};
    cr_assert_eq(db_user_set_quota(db, "alice", &worse), DB_INVALID);
    cr_assert_eq(db_user_set_quota(db, "nobody", &q), DB_NOT_FOUND);
    close_tmp(db);
}

/* Recent use decays moment by moment: a run of 14 days at a 7-day half-
 * life weighs what 14 one-day runs do, each decayed from its own end
 * (H/ln2 × 3/4 device-days), not 14 device-days; a half-life of 0 never
 * forgets. */
Test(users, a_long_run_decays_as_the_short_ones_it_is_made_of) {
    const double day = 86400, h = 7 * day;
    double long_run = db_user_use_until_now(1, 14 * day, h), short_runs = 0;
    for (int k = 0; k < 14; k++) short_runs += db_user_use_until_now(1, day, h) * exp2(-k * day / h);
    cr_assert_float_eq(long_run, short_runs, 1e-6 * short_runs);
    cr_assert_float_eq(long_run, h / M_LN2 * 0.75, 1e-9 * long_run);
    cr_assert_float_eq(db_user_use_until_now(2, 1e-3, h), 2e-3, 1e-9 * 2e-3, "a moment: all of it");
    cr_assert_float_eq(db_user_use_until_now(3, 14 * day, 0), 42 * day, 0);
    cr_assert_float_eq(db_user_use_until_now(3, 0, h), 0, 0);
}

Test(users, audit_trail_pages) {
    Db *db = open_tmp();
    for (int i = 0; i < 5; i++) {
        char target[32];
        snprintf(target, sizeof target, "job %d", i + 1);
        cr_assert_eq(db_audit_add(db, i < 3 ? "alice" : "cli", "job.create", target,
                                  i == 4 ? "x=1" : NULL),
                     DB_OK);
    }
    DbAuditEntry *e = NULL;
    int n = 0;
    cr_assert_eq(db_audit_list(db, 0, 3, &e, &n), DB_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(e[0].actor, "alice");
    cr_assert_str_eq(e[2].target, "job 3");
    int64_t last = e[2].id;
    free(e);
    cr_assert_eq(db_audit_list(db, last, 3, &e, &n), DB_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(e[0].actor, "cli");
    cr_assert_str_eq(e[1].detail, "x=1");
    cr_assert_str_eq(e[0].detail, "");
    free(e);
    cr_assert_eq(db_audit_list(db, 0, 0, &e, &n), DB_INVALID);
    close_tmp(db);
}

/* ---- the scrape token's file ---- */

Test(users, metrics_token_file) {
    char dir[64], path[300], hash[SHA256_HEX_LEN + 1];
    tmp_dir_make(dir, sizeof dir, "mtoken");
    snprintf(path, sizeof path, "%s/token", dir);

    tmp_dir_write_file(path, "  s3cret-Token_0001\n", 20);
    cr_assert_eq(metrics_token_load(path, hash), 0, "%s", error_get());
    char want[SHA256_HEX_LEN + 1];
    sha256_buffer_hex("s3cret-Token_0001", 17, want);
    cr_assert_str_eq(hash, want);
    cr_assert(metrics_token_matches(hash, "s3cret-Token_0001"));
    cr_assert(!metrics_token_matches(hash, "s3cret-Token_0002"));
    cr_assert(!metrics_token_matches(hash, "s3cret-Token_0001 "));
    cr_assert(!metrics_token_matches("", "s3cret-Token_0001"));

    static const struct {
        const char *text, *says;
    } bad[] = {
        {"", "the file is empty"},
        {" \n\n", "the file is empty"},
        {"one\ntwo\n", "byte 4 of the token (0x0a)"},
        {"a b", "byte 2 of the token (0x20)"},
        {"s3cret-Token_00\n", "the token is 15 bytes, fewer than 16"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tmp_dir_write_file(path, bad[i].text, strlen(bad[i].text));
        cr_assert_eq(metrics_token_load(path, hash), -1, "'%s'", bad[i].text);
        cr_assert(strstr(error_get(), bad[i].says) && strstr(error_get(), path), "%s",
                  error_get());
    }
    char big[METRICS_TOKEN_MAX + 2];
    memset(big, 'a', sizeof big);
    tmp_dir_write_file(path, big, sizeof big);
    cr_assert_eq(metrics_token_load(path, hash), -1);
    cr_assert(strstr(error_get(), "over 1024 bytes") != NULL, "%s", error_get());
    unlink(path);
    cr_assert_eq(metrics_token_load(path, hash), -1);
    cr_assert(strstr(error_get(), "No such file") && strstr(error_get(), "--metrics-token-file"),
              "%s", error_get());
    tmp_dir_remove(dir);
}

/* ---- a stream's token, checked again ---- */

/* Makes the next stream_auth_lost call check now. */
static void check_due_now(StreamAuth *a) { a->checked.tv_sec -= 1; }

static HttpAuth caller(Db *db, const char *token) {
    HttpAuth who = {0};
    DbUser u;
    cr_assert_eq(db_user_by_token(db, token, &u, who.token_sha256), DB_OK);
    who.user_id = u.id;
    snprintf(who.name, sizeof who.name, "%s", u.name);
    return who;
}

static char *pending_text(SseBuf *out) {
    static char buf[1024];
    ssize_t n = sse_take(out, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

Test(users, stream_ends_once_its_token_is_revoked) {
    Db *db = open_tmp();
    char token[DB_TOKEN_LEN + 1];
    cr_assert_eq(db_user_create(db, "alice", false, NULL, token), DB_OK);
    HttpAuth who = caller(db, token);
    StreamAuth a;
    SseBuf out = {0};
    stream_auth_init(&a, db, &who, "/v1/jobs/3/metrics");
    check_due_now(&a);
    cr_assert(!stream_auth_lost(&a, &out));
    cr_assert(!sse_pending(&out));

    cr_assert_eq(db_user_revoke(db, "alice"), DB_OK);
    /* not asked again before STREAM_AUTH_CHECK_MS */
    cr_assert(!stream_auth_lost(&a, &out));
    check_due_now(&a);
    cr_assert(stream_auth_lost(&a, &out));
    cr_assert_str_eq(pending_text(&out),
                     "event: error\ndata: {\"error\":{\"code\":\"unauthorized\",\"message\":"
                     "\"user 'alice': the token was revoked or replaced\",\"path\":"
                     "\"/v1/jobs/3/metrics\"}}\n\n");
    /* lost for good, and said once */
    check_due_now(&a);
    cr_assert(stream_auth_lost(&a, &out));
    cr_assert(!sse_pending(&out));
    sse_free(&out);
    close_tmp(db);
}

Test(users, stream_ends_once_its_token_is_rotated) {
    Db *db = open_tmp();
    char token[DB_TOKEN_LEN + 1], fresh[DB_TOKEN_LEN + 1];
    cr_assert_eq(db_user_create(db, "bob", true, NULL, token), DB_OK);
    HttpAuth who = caller(db, token);
    StreamAuth a;
    SseBuf out = {0};
    stream_auth_init(&a, db, &who, "/v1/jobs/1/logs");
    cr_assert_eq(db_user_rotate(db, "bob", fresh), DB_OK);
    check_due_now(&a);
    cr_assert(stream_auth_lost(&a, &out));
    cr_assert(strstr(pending_text(&out), "\"path\":\"/v1/jobs/1/logs\"") != NULL);
    /* a stream opened with the new token goes on */
    HttpAuth again = caller(db, fresh);
    StreamAuth b;
    stream_auth_init(&b, db, &again, "/v1/jobs/1/logs");
    check_due_now(&b);
    cr_assert(!stream_auth_lost(&b, &out));
    sse_free(&out);
    close_tmp(db);
}
