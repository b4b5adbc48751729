/* test_serve_options.c - server/serve_options.c: `traind serve`'s options
 * table. Each option lands in its own field (a wrong offset or range in a
 * row shows here, whether or not an e2e script passes that option), the
 * defaults are the help's, and each way to get an option wrong says so on
 * stderr with the option's name. `serve --help` and README.md's table are
 * compared in tests/e2e/test_edge.sh. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <string.h>

#include "server/serve_options.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof *(a)))

Test(serve_options, defaults_are_the_helps) {
    ServeOptions o;
    cr_assert_eq(serve_options_parse(0, NULL, &o), 0);
    cr_assert_eq(o.port, 8080);
    cr_assert_str_eq(o.bind, "127.0.0.1");
    cr_assert_str_eq(o.data_dir, "./var");
    cr_assert_null(o.devices);
    cr_assert_eq(o.workers, 1);
    cr_assert_eq(o.http_threads, 4);
    cr_assert_eq(o.http_nice, 10, "10 without --http-cpus");
    cr_assert_eq(o.max_upload_mb, 4096);
    cr_assert_eq(o.import_timeout_s, 600);
    cr_assert_eq(o.quota_defaults.running_jobs, -1);
    cr_assert_eq(o.quota_defaults.checkpoint_bytes, -1);
    cr_assert_eq(o.fairshare_half_life_s, 7 * 86400.0);
    cr_assert(!o.quiet && !o.import_policy.allow_private);
    cr_assert_null(o.tls_cert);
    cr_assert_null(o.executor);
}

Test(serve_options, every_option_sets_its_own_field) {
    char *argv[] = {"--port", "9001", "--bind", "::1", "--data-dir", "/d", "--devices", "cpu,cpu",
                    "--workers", "3", "--threads-per-job", "5", "--http-threads", "7",
                    "--http-nice", "4", "--history-cache-mb", "9", "--max-upload-mb", "11",
                    "--import-timeout", "13", "--import-threads", "2", "--imports-per-user",
                    "17", "--import-allow-private", "--import-allow-net", "10.1.0.0/16",
                    "--max-connections", "19", "--max-connections-per-ip", "23",
                    "--header-timeout", "29", "--idle-timeout", "31", "--tls-cert", "c.pem",
                    "--tls-key", "k.pem", "--quota-running-jobs", "2", "--quota-queued-jobs", "6",
                    "--quota-gpus", "1", "--quota-dataset-gb", "1.5", "--quota-checkpoint-gb",
                    "0.25", "--fairshare-half-life", "2h", "--metrics-token-file", "t.txt",
                    "--executor", "slurm", "--executor-slots", "8", "--executor-poll-ms", "250",
                    "--advertise-url", "http://h:1", "--slurm-partition", "gpu",
                    "--slurm-account", "lab", "--slurm-time", "1:00:00",
                    "--slurm-gpus-per-node", "4", "--slurm-datasets", "fetch", "--quiet"};
    ServeOptions o;
    cr_assert_eq(serve_options_parse(ARGC(argv), argv, &o), 0);
    cr_assert_eq(o.port, 9001);
    cr_assert_str_eq(o.bind, "::1");
    cr_assert_str_eq(o.data_dir, "/d");
    cr_assert_str_eq(o.devices, "cpu,cpu");
    cr_assert_eq(o.workers, 3);
    cr_assert_eq(o.threads_per_job, 5);
    cr_assert_eq(o.http_threads, 7);
    cr_assert_eq(o.http_nice, 4);
    cr_assert_eq(o.history_cache_mb, 9);
    cr_assert_eq(o.max_upload_mb, 11);
    cr_assert_eq(o.import_timeout_s, 13);
    cr_assert_eq(o.import_threads, 2);
    cr_assert_eq(o.imports_per_user, 17);
    cr_assert(o.import_policy.allow_private);
    cr_assert_eq(o.import_policy.num_nets, 1);
    cr_assert_eq(o.import_policy.nets[0].prefix, 16);
    cr_assert_eq(o.max_connections, 19);
    cr_assert_eq(o.max_per_ip, 23);
    cr_assert_eq(o.header_timeout_s, 29);
    cr_assert_eq(o.idle_timeout_s, 31);
    cr_assert_str_eq(o.tls_cert, "c.pem");
    cr_assert_str_eq(o.tls_key, "k.pem");
    cr_assert_eq(o.quota_defaults.running_jobs, 2);
    cr_assert_eq(o.quota_defaults.queued_jobs, 6);
    cr_assert_eq(o.quota_defaults.gpus, 1);
    cr_assert_eq(o.quota_defaults.dataset_bytes, 1500000000);
    cr_assert_eq(o.quota_defaults.checkpoint_bytes, 250000000);
    cr_assert_eq(o.fairshare_half_life_s, 7200.0);
    cr_assert_str_eq(o.metrics_token_file, "t.txt");
    cr_assert_str_eq(o.executor, "slurm");
    cr_assert_eq(o.executor_slots, 8);
    cr_assert_eq(o.executor_poll_ms, 250);
    cr_assert_str_eq(o.advertise_url, "http://h:1");
    const SlurmConfig *s = &o.executor_config.slurm;
    cr_assert_str_eq(s->partition, "gpu");
    cr_assert_str_eq(s->account, "lab");
    cr_assert_str_eq(s->time_limit, "1:00:00");
    cr_assert_eq(s->gpus_per_node, 4);
    cr_assert(s->datasets_fetch);
    cr_assert(o.quiet);
}

/* Parsing argv fails, with exactly `says` on stderr. */
static void refused(int argc, char **argv, const char *says) {
    ServeOptions o;
    cr_assert_eq(serve_options_parse(argc, argv, &o), -1, "'%s' was accepted", argv[0]);
    fflush(stderr);
    cr_assert_stderr_eq_str(says);
}

#define USAGE "usage: traind serve [options]   (serve --help: every option)\n"

Test(serve_options, unknown_option, .init = cr_redirect_stderr) {
    char *argv[] = {"--prot", "80"};
    refused(ARGC(argv), argv, "traind serve: unknown option '--prot'\n" USAGE);
}

Test(serve_options, option_without_its_value, .init = cr_redirect_stderr) {
    char *argv[] = {"--quiet", "--port"};
    refused(ARGC(argv), argv, "traind serve: no value for '--port', which takes one\n" USAGE);
}

Test(serve_options, a_flag_takes_no_value, .init = cr_redirect_stderr) {
    char *argv[] = {"--quiet", "yes"};
    refused(ARGC(argv), argv, "traind serve: unexpected argument 'yes'\n" USAGE);
}

Test(serve_options, integer_out_of_its_range, .init = cr_redirect_stderr) {
    char *argv[] = {"--http-nice", "20"};
    refused(ARGC(argv), argv,
            "traind serve: --http-nice: expected an integer in [0, 19], got '20'\n");
}

Test(serve_options, integer_with_trailing_bytes, .init = cr_redirect_stderr) {
    char *argv[] = {"--max-upload-mb", "12k"};
    refused(ARGC(argv), argv,
            "traind serve: --max-upload-mb: expected an integer in [1, 1073741824], got '12k'\n");
}

Test(serve_options, half_life_unit_unknown, .init = cr_redirect_stderr) {
    char *argv[] = {"--fairshare-half-life", "3w"};
    refused(ARGC(argv), argv,
            "traind serve: --fairshare-half-life: expected a number >= 0 with an optional unit "
            "from smhd, got '3w'\n");
}

Test(serve_options, negative_quota, .init = cr_redirect_stderr) {
    char *argv[] = {"--quota-gpus", "-1"};
    refused(ARGC(argv), argv, "traind serve: --quota-gpus: expected a number >= 0, got '-1'\n");
}

Test(serve_options, a_quota_of_jobs_is_a_whole_number, .init = cr_redirect_stderr) {
    char *argv[] = {"--quota-running-jobs", "2.5"};
    refused(ARGC(argv), argv,
            "traind serve: --quota-running-jobs: expected a whole number, got '2.5'\n");
}

Test(serve_options, unknown_slurm_option_lists_the_known, .init = cr_redirect_stderr) {
    char *argv[] = {"--slurm-qeue", "x"};
    refused(ARGC(argv), argv,
            "traind serve: --slurm-qeue: unknown option (--slurm-config, --slurm-partition, "
            "--slurm-account, --slurm-time, --slurm-gpus-per-node, --slurm-shared-dir, "
            "--slurm-datasets, --slurm-datasets-cache)\n");
}

Test(serve_options, tls_cert_without_key, .init = cr_redirect_stderr) {
    char *argv[] = {"--tls-cert", "c.pem"};
    refused(ARGC(argv), argv, "traind serve: --tls-cert needs --tls-key too\n");
}

Test(serve_options, bad_network_names_its_byte, .init = cr_redirect_stderr) {
    char *argv[] = {"--import-allow-net", "10.1.0.0/33"};
    refused(ARGC(argv), argv,
            "traind serve: --import-allow-net '10.1.0.0/33': byte 9: expected a prefix length 0 "
            "to 32 after '/', got '33'\n");
}

Test(serve_options, relative_shared_dir, .init = cr_redirect_stderr) {
    char *argv[] = {"--slurm-shared-dir", "rel"};
    refused(ARGC(argv), argv,
            "traind serve: --slurm-shared-dir: shared_dir: expected an absolute path of at most "
            "4095 bytes, got 'rel'\n");
}
