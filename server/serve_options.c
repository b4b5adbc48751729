/* serve_options.c - `traind serve`'s options; see serve_options.h.
 *
 * Each row of the table is an option as `serve --help` prints it (name,
 * its value's placeholder, the default, what it does) and what reading it
 * does: a flag or a field set from the value (an integer checked against
 * its range), a user quota's default, or a function for the options whose
 * value says more.
 * Adding an option is adding its row.
 */
#include "server/serve_options.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/api.h"
#include "server/cpu_list.h"
#include "server/http.h"
#include "server/importer.h"
#include "server/scheduler.h"

/* An integer option value in [min, max]; -1 with a message otherwise. */
static int int_arg(const char *opt, const char *v, long long min, long long max, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < min || x > max) {
        fprintf(stderr, "traind serve: %s: expected an integer in [%lld, %lld], got '%s'\n", opt,
                min, max, v);
        return -1;
    }
    *out = x;
    return 0;
}

/* --http-cpus V: the HTTP threads' CPUs, which must be CPUs this process
 * may run on, and the others for the workers, of which there must be one. */
static int http_cpus_arg(const char *name, const char *v, ServeOptions *o) {
    (void)name;
    cpu_set_t allowed;
    char list[256];
    if (cpu_list_parse(v, &o->http_set) != 0) {
        fprintf(stderr, "traind serve: --http-cpus: %s\n", error_get());
        return -1;
    }
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
        fprintf(stderr, "traind serve: --http-cpus: cannot read this process's CPUs: %s\n",
                strerror(errno));
        return -1;
    }
    cpu_set_t outside;
    CPU_XOR(&outside, &o->http_set, &allowed);
    CPU_AND(&outside, &outside, &o->http_set);
    cpu_list_format(&allowed, list, sizeof list);
    if (CPU_COUNT(&outside) > 0) {
        char bad[256];
        cpu_list_format(&outside, bad, sizeof bad);
        fprintf(stderr, "traind serve: --http-cpus %s: CPU(s) %s are not among this process's "
                        "CPUs (%s)\n", v, bad, list);
        return -1;
    }
    CPU_XOR(&o->train_set, &allowed, &o->http_set); /* allowed minus http: http is inside */
    if (CPU_COUNT(&o->train_set) == 0) {
        fprintf(stderr, "traind serve: --http-cpus %s: leaves none of this process's CPUs (%s) "
                        "for the training workers\n", v, list);
        return -1;
    }
    o->http_cpus = v;
    return 0;
}

/* A number of v with an optional unit suffix from units (factor each), in
 * [0, max]; -1 with a message otherwise. */
static int scaled_arg(const char *opt, const char *v, const char *units, const double *factors,
                      double max, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    const char *u = *end ? strchr(units, *end) : NULL;
    double f = u && end[1] == '\0' ? factors[u - units] : *end ? -1 : 1;
    if (!*v || errno || f < 0 || !(x >= 0) || x * f > max) {
        fprintf(stderr, "traind serve: %s: expected a number >= 0%s%s, got '%s'\n", opt,
                *units ? " with an optional unit from " : "", units, v);
        return -1;
    }
    *out = x * f;
    return 0;
}

/* --import-allow-net LIST: networks URL imports may reach though private. */
static int allow_net_arg(const char *name, const char *v, ServeOptions *o) {
    if (addr_policy_add_nets(&o->import_policy, v) == 0) return 0;
    fprintf(stderr, "traind serve: %s '%s': %s\n", name, v, error_get());
    return -1;
}

/* --quota-*: a user's `limit` unless set for them (GB for the bytes). */
static int quota_arg(const char *name, QuotaLimit limit, const char *v, ServeOptions *o) {
    double x;
    if (scaled_arg(name, v, "", NULL, 1e9, &x)) return -1;
    bool bytes = limit >= QUOTA_DATASET_BYTES;
    if (!bytes && x != floor(x)) { /* a count, as `traind user set-quota` takes it */
        fprintf(stderr, "traind serve: %s: expected a whole number, got '%s'\n", name, v);
        return -1;
    }
    quota_set(&o->quota_defaults, limit, (int64_t)(bytes ? x * 1e9 : x));
    return 0;
}

/* --fairshare-half-life T: seconds, or with s, m, h or d. */
static int half_life_arg(const char *name, const char *v, ServeOptions *o) {
    static const double time_f[] = {1, 60, 3600, 86400};
    return scaled_arg(name, v, "smhd", time_f, 1e10, &o->fairshare_half_life_s);
}

/* --slurm-*: server/slurm.h's. */
static int slurm_arg(const char *name, const char *v, ServeOptions *o) {
    if (slurm_option(&o->executor_config.slurm, name, v) == 0) return 0;
    fprintf(stderr, "traind serve: %s: %s\n", name, error_get());
    return -1;
}

/* A numeric default as the help's text. */
#define SERVE_STR_(x) #x
#define SERVE_STR(x) SERVE_STR_(x)

typedef enum { OPTION_FLAG, OPTION_INT, OPTION_TEXT, OPTION_QUOTA, OPTION_CALL } OptionKind;

typedef struct {
    const char *name, *arg, *def; /* as --help prints them, with `what` */
    OptionKind kind;
    size_t field; /* FLAG: a bool, INT: an int, TEXT: a const char *; QUOTA: its QuotaLimit */
    long long lo, hi; /* INT's range */
    int (*take)(const char *name, const char *v, ServeOptions *o); /* CALL */
    const char *what;
} ServeOption;

#define FLAG(f) OPTION_FLAG, offsetof(ServeOptions, f), 0, 0, NULL
#define INT(f, lo, hi) OPTION_INT, offsetof(ServeOptions, f), lo, hi, NULL
#define TEXT(f) OPTION_TEXT, offsetof(ServeOptions, f), 0, 0, NULL
#define QUOTA(limit) OPTION_QUOTA, limit, 0, 0, NULL
#define CALL(fn) OPTION_CALL, 0, 0, 0, fn

static const ServeOption options[] = {
    {"--port", "N", "8080", INT(port, 0, 65535),
     "where the API listens (0: a free port, logged as {\"event\":\"listening\",\"port\":N})"},
    {"--bind", "ADDR", "127.0.0.1", TEXT(bind),
     "the address it listens on (numeric IPv4 or IPv6)"},
    {"--data-dir", "DIR", "./var", TEXT(data_dir),
     "the database, datasets, checkpoints and admin.token; one daemon per data dir"},
    {"--devices", "LIST", "one per GPU found", TEXT(devices),
     "one worker per entry (cpu,cuda:0,cuda:1); each runs one job at a time"},
    {"--workers", "N", "1", INT(workers, 1, SCHEDULER_MAX_WORKERS),
     "CPU workers, beside one per GPU, when --devices is not given"},
    {"--threads-per-job", "N", "the worker's CPUs", INT(threads_per_job, 0, 1024),
     "OpenMP threads of a job (OMP_NUM_THREADS, when set, decides instead)"},
    {"--http-threads", "N", "4", INT(http_threads, 1, 256),
     "the HTTP thread pool"},
    {"--http-nice", "N", "10 (0 with --http-cpus)", INT(http_nice, 0, 19),
     "the HTTP threads (and datasets' checks) run N nice levels below the workers"},
    {"--http-cpus", "LIST", "off", CALL(http_cpus_arg),
     "the HTTP threads, metric writer and datasets' checks on these CPUs (3, 0-1), the workers "
     "on the others"},
    {"--history-cache-mb", "N", SERVE_STR(API_CHUNK_CACHE_MB), INT(history_cache_mb, 0, 1 << 20),
     "memory for metric series kept as formatted chunks; 0 turns it off"},
    {"--max-upload-mb", "N", "4096", INT(max_upload_mb, 1, 1 << 30),
     "the upload size limit (413 above it)"},
    {"--max-dataset-mb", "N", "memory / 4", INT(max_dataset_mb, 1, 1 << 30),
     "the memory one dataset may take once loaded (a gzipped IDX claiming more: 422)"},
    {"--import-timeout", "S", "600", INT(import_timeout_s, 1, 86400),
     "the time a URL import may take, per file"},
    {"--import-threads", "N", SERVE_STR(IMPORTER_THREADS_DEFAULT),
     INT(import_threads, 1, IMPORTER_MAX_THREADS),
     "URL imports fetched at once, all users together; more wait in order"},
    {"--imports-per-user", "N", SERVE_STR(IMPORTER_PER_USER_DEFAULT),
     INT(imports_per_user, 1, 1 << 20),
     "URL imports one user may have in progress; more are refused (429)"},
    {"--import-allow-private", "", "off", FLAG(import_policy.allow_private),
     "URL imports may reach loopback, private, link-local addresses (refused otherwise)"},
    {"--import-allow-net", "LIST", "none", CALL(allow_net_arg),
     "networks URL imports may reach though private (10.1.0.0/16,fd00::/8)"},
    {"--max-connections", "N", SERVE_STR(HTTP_MAX_CONNECTIONS_DEFAULT),
     INT(max_connections, 1, 1 << 20),
     "HTTP connections at once, all clients together (the file limit is raised to fit)"},
    {"--max-connections-per-ip", "N", SERVE_STR(HTTP_MAX_PER_IP_DEFAULT),
     INT(max_per_ip, 1, 1 << 20),
     "HTTP connections at once from one address; more are closed as soon as accepted"},
    {"--header-timeout", "S", SERVE_STR(HTTP_HEADER_TIMEOUT_DEFAULT),
     INT(header_timeout_s, 1, 3600),
     "a request's line and headers must all arrive within S s; more bytes do not extend it"},
    {"--idle-timeout", "S", SERVE_STR(HTTP_IDLE_TIMEOUT_DEFAULT), INT(idle_timeout_s, 1, 86400),
     "a connection on which no byte moves for S s is closed (a stream waiting for events is not "
     "idle)"},
    {"--tls-cert", "FILE", "off", TEXT(tls_cert),
     "serve HTTPS with this PEM certificate (chain); needs --tls-key; both read again on SIGHUP"},
    {"--tls-key", "FILE", "off", TEXT(tls_key),
     "the PEM private key of --tls-cert"},
    {"--quota-running-jobs", "N", "none", QUOTA(QUOTA_RUNNING_JOBS),
     "a user's jobs running at once, unless set for them (traind user set-quota); more wait, "
     "reason QuotaRunningJobs"},
    {"--quota-queued-jobs", "N", "none", QUOTA(QUOTA_QUEUED_JOBS),
     "a user's queued jobs; one more is refused (429)"},
    {"--quota-gpus", "N", "none", QUOTA(QUOTA_GPUS),
     "GPUs a user's jobs use at once; more wait, reason QuotaGPUs"},
    {"--quota-dataset-gb", "G", "none", QUOTA(QUOTA_DATASET_BYTES),
     "bytes of a user's datasets; an upload past it is refused (429)"},
    {"--quota-checkpoint-gb", "G", "none", QUOTA(QUOTA_CHECKPOINT_BYTES),
     "bytes of a user's checkpoints; a job submitted past it is refused (429)"},
    {"--fairshare-half-life", "T", "7d", CALL(half_life_arg),
     "how fast the fair queue forgets a user's device time (seconds, or with s, m, h or d)"},
    {"--metrics-token-file", "FILE", "off", TEXT(metrics_token_file),
     "a token (the file's one line) that opens GET /metrics and nothing else, for Prometheus; "
     "read again on SIGHUP"},
    {"--executor", "NAME", "off", TEXT(executor),
     "jobs' ranks run outside the daemon, started by the launcher NAME (external: by someone "
     "else) and reporting over HTTP"},
    {"--executor-slots", "N", "4", INT(executor_slots, 1, SCHEDULER_MAX_WORKERS),
     "with --executor: attempts followed at once"},
    {"--executor-poll-ms", "N", "1000", INT(executor_poll_ms, 10, 3600 * 1000),
     "with --executor: how often each attempt's launcher is asked how it stands"},
    {"--advertise-url", "URL", "http://127.0.0.1:<port>", TEXT(advertise_url),
     "the daemon's base URL as ranks run by --executor reach it"},
    {"--slurm-config", "FILE", "none", CALL(slurm_arg),
     "with --executor slurm: key = value lines (partition, account, qos, time, gpus_per_node, "
     "traind, mpi, shared_dir, datasets, datasets_cache)"},
    {"--slurm-partition", "P", "Slurm's default", CALL(slurm_arg),
     "with --executor slurm: sbatch --partition"},
    {"--slurm-account", "A", "the user's default", CALL(slurm_arg),
     "with --executor slurm: sbatch --account"},
    {"--slurm-time", "T", "the partition's", CALL(slurm_arg),
     "with --executor slurm: sbatch --time (1:00:00)"},
    {"--slurm-gpus-per-node", "N", "0", CALL(slurm_arg),
     "with --executor slurm: GPUs a node gives a job (a rank each); \"auto\" jobs take them"},
    {"--slurm-shared-dir", "DIR", "the data dir", CALL(slurm_arg),
     "with --executor: attempts' files (spec, token, out/) under DIR/jobs/, a directory the nodes "
     "see"},
    {"--slurm-datasets", "MODE", "shared", CALL(slurm_arg),
     "with --executor: shared (the nodes see the data dir) or fetch (they download the datasets, "
     "sha256-checked)"},
    {"--slurm-datasets-cache", "DIR", SLURM_DATASETS_CACHE_DEFAULT, CALL(slurm_arg),
     "with --slurm-datasets fetch: the nodes' own directory the datasets are fetched into"},
    {"--quiet", "", "off", FLAG(quiet),
     "no log line per request, nor per connection refused before one (a TLS handshake)"},
};

#undef FLAG
#undef INT
#undef TEXT
#undef QUOTA
#undef CALL

static void serve_usage(FILE *out) {
    fprintf(out, "usage: traind serve [options]   (serve --help: every option)\n");
}

static void serve_help(void) {
    printf("usage: traind serve [options]\n\noptions (default, what it does):\n");
    char option[64];
    for (size_t i = 0; i < sizeof options / sizeof *options; i++) {
        snprintf(option, sizeof option, "%s%s%s", options[i].name, *options[i].arg ? " " : "",
                 options[i].arg);
        printf("  %-28s %-18s %s\n", option, options[i].def, options[i].what);
    }
}

static const ServeOption *find_option(const char *name) {
    for (size_t i = 0; i < sizeof options / sizeof *options; i++)
        if (strcmp(options[i].name, name) == 0) return &options[i];
    return NULL;
}

/* Sets what opt sets from value v. */
static int take_value(const ServeOption *opt, const char *v, ServeOptions *o) {
    char *field = (char *)o + opt->field;
    long long x;
    switch (opt->kind) {
    case OPTION_INT:
        if (int_arg(opt->name, v, opt->lo, opt->hi, &x)) return -1;
        *(int *)field = (int)x;
        return 0;
    case OPTION_TEXT:
        *(const char **)field = v;
        return 0;
    case OPTION_QUOTA:
        return quota_arg(opt->name, (QuotaLimit)opt->field, v, o);
    case OPTION_CALL:
        return opt->take(opt->name, v, o);
    case OPTION_FLAG:
        break;
    }
    return -1;
}

static void set_defaults(ServeOptions *o) {
    *o = (ServeOptions){.port = 8080, .bind = "127.0.0.1", .data_dir = "./var", .workers = 1,
                        .http_threads = 4, .http_nice = -1, .import_timeout_s = 600,
                        .import_threads = IMPORTER_THREADS_DEFAULT,
                        .imports_per_user = IMPORTER_PER_USER_DEFAULT,
                        .max_upload_mb = 4096, .history_cache_mb = API_CHUNK_CACHE_MB,
                        .quota_defaults = {-1, -1, -1, -1, -1},
                        .fairshare_half_life_s = 7 * 86400,
                        .max_connections = HTTP_MAX_CONNECTIONS_DEFAULT,
                        .max_per_ip = HTTP_MAX_PER_IP_DEFAULT,
                        .header_timeout_s = HTTP_HEADER_TIMEOUT_DEFAULT,
                        .idle_timeout_s = HTTP_IDLE_TIMEOUT_DEFAULT};
    slurm_config_defaults(&o->executor_config.slurm);
}

int serve_options_parse(int argc, char **argv, ServeOptions *o) {
    set_defaults(o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_help();
            exit(0);
        }
        const ServeOption *opt = find_option(a);
        if (!opt && !strncmp(a, "--slurm-", 8) && i + 1 < argc) {
            /* slurm_option's message lists the --slurm-* options */
            if (slurm_arg(a, argv[++i], o) != 0) return -1;
            continue;
        }
        if (opt && opt->kind == OPTION_FLAG) {
            *(bool *)((char *)o + opt->field) = true;
            continue;
        }
        if (!opt || i + 1 >= argc) {
            fprintf(stderr, "traind serve: %s '%s'%s\n",
                    a[0] != '-' ? "unexpected argument" : opt ? "no value for" : "unknown option",
                    a, opt ? ", which takes one" : "");
            serve_usage(stderr);
            return -1;
        }
        if (take_value(opt, argv[++i], o) != 0) return -1;
    }
    if (o->http_nice < 0) o->http_nice = o->http_cpus ? 0 : 10; /* not given */
    if (!o->tls_cert != !o->tls_key) {
        fprintf(stderr, "traind serve: %s needs %s too\n", o->tls_cert ? "--tls-cert" : "--tls-key",
                o->tls_cert ? "--tls-key" : "--tls-cert");
        return -1;
    }
    return 0;
}
