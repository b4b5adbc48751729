/* serve_options.h - `traind serve`'s options: one table that both
 * parses them and prints `serve --help` (README.md's "Daemon options"
 * lists the same; tests/e2e/test_edge.sh checks that it does).
 */
#ifndef TRAIND_SERVER_SERVE_OPTIONS_H
#define TRAIND_SERVER_SERVE_OPTIONS_H

#include <sched.h>
#include <stdbool.h>
#include <stdio.h>

#include "server/addr_policy.h"
#include "server/executor.h"
#include "server/quota.h"

typedef struct {
    int port;
    const char *bind, *data_dir, *devices;
    int workers, http_threads, http_nice, threads_per_job, import_timeout_s, history_cache_mb;
    int import_threads, imports_per_user;
    AddrPolicy import_policy; /* --import-allow-private, --import-allow-net */
    int max_upload_mb;
    int max_dataset_mb; /* 0: a quarter of the machine's memory */
    DbQuota quota_defaults; /* --quota-*: -1 (no limit) unless given */
    double fairshare_half_life_s;
    int max_connections, max_per_ip, header_timeout_s, idle_timeout_s;
    const char *tls_cert, *tls_key; /* file names, NULL without TLS */
    const char *metrics_token_file; /* NULL: /metrics takes an admin's token only */
    bool quiet;
    const char *executor;     /* --executor NAME; NULL: train in process */
    int executor_slots, executor_poll_ms;
    const char *advertise_url; /* NULL: http://127.0.0.1:<port> */
    ExecutorConfig executor_config; /* --slurm-config, then --slurm-* over it */
    const char *http_cpus;          /* --http-cpus as given, NULL without it */
    cpu_set_t http_set, train_set;  /* from it: the HTTP threads', the workers' */
} ServeOptions;

/* argv: the arguments after "serve" (o's strings point into it). 0, or -1
 * after a message on stderr that names the option; --help prints the
 * options and exits 0. */
int serve_options_parse(int argc, char **argv, ServeOptions *o);

#endif
