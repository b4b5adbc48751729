/* serve.c - `traind serve`: the daemon, from its options to a graceful stop.
 *
 *   traind serve [options]      (serve --help: each option, its default, what it does)
 *
 * Priority: the HTTP threads run at nice --http-nice (10; 0 turns it off),
 * the training workers at the daemon's own: a flood of requests on a
 * loaded machine then slows the requests, not the training. bench/api.sh
 * on 2 cores: saturating GET /v1/jobs/{id} cost the MNIST MLP 70% of its
 * speed at nice 0 and nothing measurable at nice 10 (p99 13 -> 9 ms).
 * The price: large uncached reads wait longer on a busy CPU, and an HTTP
 * thread holding SQLite's write lock (short transactions) runs slower.
 *
 * Cores: --http-cpus LIST ("3", "0-1"; taskset's form) puts the HTTP
 * threads and the metric writer on those CPUs and the training workers on
 * the others, each job then running as many threads as its worker has
 * CPUs (--threads-per-job overrides). A nice value only orders threads
 * that share a core; this keeps a burst of requests off the training's
 * cores altogether, at the price of those cores. The HTTP threads then
 * share no core with the training, so --http-nice defaults to 0 with it.
 * bench/api.sh measures both (HTTP_CPUS=last): on 2 cores, with
 * --http-cpus 1, saturating GET /v1/jobs/{id} had p99 7.7 ms and slowed
 * the MNIST MLP 1.7%; sharing the cores, 18 ms and 20%.
 *
 * Workers: --devices lists them, one per entry ("cpu,cpu,cuda:0");
 * without it, --workers CPU workers (1) and one per GPU found, so each GPU
 * runs one job at a time.
 *
 * One daemon per data dir and per port: the data dir is locked
 * (server/data_lock.h) before the database is opened, and the port is
 * bound without address sharing (server/http.c), so a second daemon exits
 * 1 with "data dir D is in use by pid P" or "127.0.0.1:8080 is already in
 * use" instead of training the first one's jobs again or taking half of
 * its requests.
 *
 * Connections: up to --max-connections at once (the file limit is raised
 * to fit), --max-connections-per-ip from one address, a request head due
 * within --header-timeout however slowly its bytes come, --idle-timeout
 * for a connection where nothing moves (server/http.h, http_conn.h).
 * --tls-cert and --tls-key serve HTTPS; their files are checked before
 * anything starts (exit 2 naming the file at fault). So is
 * --metrics-token-file's, whose token opens GET /metrics alone
 * (server/metrics_token.h).
 *
 * Start: lock the data dir, open (or create) its database, drop uploads and
 * imports a previous daemon left half done, create the admin user on first
 * start (its token in <data-dir>/admin.token, mode 0600), start the metric
 * writer, the scheduler (which requeues jobs left running), the importer
 * and the HTTP server, and log {"event":"listening","port":N} (--port 0
 * picks a free port: tests read it there).
 *
 * URL imports run on --import-threads threads of their own
 * (server/importer.h), at most --imports-per-user per user, and reach
 * public addresses only unless --import-allow-private or
 * --import-allow-net says otherwise (server/addr_policy.h).
 *
 * Stop, on SIGINT or SIGTERM: the HTTP server first (streams end, no new
 * request can reach the scheduler), the importer (transfers cancelled; the
 * next start removes what they leave), then the scheduler (running jobs are
 * checkpointed where they stand and requeued, to resume on the next
 * start), the metric writer (flushed), the database. A second signal
 * while stopping exits at once.
 *
 * Signals are blocked in every thread (masked before any is created) and
 * taken by sigwait in the main thread, so no handler runs inside an HTTP thread or a
 * training step.
 */
#include "server/serve.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "server/api.h"
#include "server/cpu_list.h"
#include "server/data_lock.h"
#include "server/executor.h"
#include "server/importer.h"
#include "server/log.h"
#include "server/metrics_token.h"
#include "server/tls_files.h"
#include "server/version.h"

typedef struct {
    int port;
    const char *bind, *data_dir, *devices;
    int workers, http_threads, http_nice, threads_per_job, import_timeout_s, history_cache_mb;
    int import_threads, imports_per_user;
    AddrPolicy import_policy; /* --import-allow-private, --import-allow-net */
    int64_t max_upload_mb;
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

/* A numeric default as the help's text. */
#define SERVE_STR_(x) #x
#define SERVE_STR(x) SERVE_STR_(x)

/* The options, their defaults and what they do: `serve --help` prints
 * this table, README.md's "Daemon options" says the same. */
static const struct {
    const char *option, *def, *what;
} serve_options[] = {
    {"--port N", "8080", "where the API listens (0: a free port, logged as "
                         "{\"event\":\"listening\",\"port\":N})"},
    {"--bind ADDR", "127.0.0.1", "the address it listens on (numeric IPv4 or IPv6)"},
    {"--data-dir DIR", "./var", "the database, datasets, checkpoints and admin.token; one "
                                "daemon per data dir"},
    {"--devices LIST", "one per GPU found", "one worker per entry (cpu,cuda:0,cuda:1); each runs "
                                            "one job at a time"},
    {"--workers N", "1", "CPU workers, beside one per GPU, when --devices is not given"},
    {"--threads-per-job N", "the worker's CPUs", "OpenMP threads of a job (OMP_NUM_THREADS, "
                                                 "when set, decides instead)"},
    {"--http-threads N", "4", "the HTTP thread pool"},
    {"--http-nice N", "10 (0 with --http-cpus)", "the HTTP threads run N nice levels below the "
                                                 "workers"},
    {"--http-cpus LIST", "off", "the HTTP threads and the metric writer on these CPUs (3, 0-1), "
                                "the workers on the others"},
    {"--history-cache-mb N", SERVE_STR(API_CHUNK_CACHE_MB),
     "memory for metric series kept as formatted chunks; 0 turns it off"},
    {"--max-upload-mb N", "4096", "the upload size limit (413 above it)"},
    {"--import-timeout S", "600", "the time a URL import may take, per file"},
    {"--import-threads N", SERVE_STR(IMPORTER_THREADS_DEFAULT),
     "URL imports fetched at once, all users together; more wait in order"},
    {"--imports-per-user N", SERVE_STR(IMPORTER_PER_USER_DEFAULT),
     "URL imports one user may have in progress; more are refused (429)"},
    {"--import-allow-private", "off", "URL imports may reach loopback, private, link-local "
                                      "addresses (refused otherwise)"},
    {"--import-allow-net LIST", "none", "networks URL imports may reach though private "
                                        "(10.1.0.0/16,fd00::/8)"},
    {"--max-connections N", SERVE_STR(HTTP_MAX_CONNECTIONS_DEFAULT),
     "HTTP connections at once, all clients together (the file limit is raised to fit)"},
    {"--max-connections-per-ip N", SERVE_STR(HTTP_MAX_PER_IP_DEFAULT),
     "HTTP connections at once from one address; more are closed as soon as accepted"},
    {"--header-timeout S", SERVE_STR(HTTP_HEADER_TIMEOUT_DEFAULT),
     "a request's line and headers must all arrive within S s; more bytes do not extend it"},
    {"--idle-timeout S", SERVE_STR(HTTP_IDLE_TIMEOUT_DEFAULT),
     "a connection on which no byte moves for S s is closed (a stream waiting for events is "
     "not idle)"},
    {"--tls-cert FILE", "off", "serve HTTPS with this PEM certificate (chain); needs --tls-key"},
    {"--tls-key FILE", "off", "the PEM private key of --tls-cert"},
    {"--quota-running-jobs N", "none", "a user's jobs running at once, unless set for them "
                                        "(traind user set-quota); more wait, reason "
                                        "QuotaRunningJobs"},
    {"--quota-queued-jobs N", "none", "a user's queued jobs; one more is refused (429)"},
    {"--quota-gpus N", "none", "GPUs a user's jobs use at once; more wait, reason QuotaGPUs"},
    {"--quota-dataset-gb G", "none", "bytes of a user's datasets; an upload past it is refused "
                                     "(429)"},
    {"--quota-checkpoint-gb G", "none", "bytes of a user's checkpoints; a job submitted past it "
                                        "is refused (429)"},
    {"--fairshare-half-life T", "7d", "how fast the fair queue forgets a user's device time "
                                      "(seconds, or with s, m, h or d)"},
    {"--metrics-token-file FILE", "off", "a token (the file's one line) that opens GET /metrics "
                                         "and nothing else, for Prometheus"},
    {"--executor NAME", "off", "jobs' ranks run outside the daemon, started by the launcher NAME "
                               "(external: by someone else) and reporting over HTTP"},
    {"--executor-slots N", "4", "with --executor: attempts followed at once"},
    {"--executor-poll-ms N", "1000", "with --executor: how often each attempt's launcher is asked "
                                     "how it stands"},
    {"--advertise-url URL", "http://127.0.0.1:<port>", "the daemon's base URL as ranks run by "
                                                       "--executor reach it"},
    {"--slurm-config FILE", "none", "with --executor slurm: key = value lines (partition, account, "
                                    "qos, time, gpus_per_node, traind, mpi, shared_dir, datasets, "
                                    "datasets_cache)"},
    {"--slurm-partition P", "Slurm's default", "with --executor slurm: sbatch --partition"},
    {"--slurm-account A", "the user's default", "with --executor slurm: sbatch --account"},
    {"--slurm-time T", "the partition's", "with --executor slurm: sbatch --time (1:00:00)"},
    {"--slurm-gpus-per-node N", "0", "with --executor slurm: GPUs a node gives a job (a rank "
                                      "each); \"auto\" jobs take them"},
    {"--slurm-shared-dir DIR", "the data dir", "with --executor: attempts' files (spec, token, "
                                               "out/) under DIR/jobs/, a directory the nodes see"},
    {"--slurm-datasets MODE", "shared", "with --executor: shared (the nodes see the data dir) or "
                                        "fetch (they download the datasets, sha256-checked)"},
    {"--slurm-datasets-cache DIR", SLURM_DATASETS_CACHE_DEFAULT,
     "with --slurm-datasets fetch: the nodes' own directory the datasets are fetched into"},
    {"--quiet", "off", "no log line per request"},
};

static void serve_usage(FILE *out) {
    fprintf(out, "usage: traind serve [options]   (serve --help: every option)\n");
}

static void serve_help(void) {
    printf("usage: traind serve [options]\n\noptions (default, what it does):\n");
    for (size_t i = 0; i < sizeof serve_options / sizeof *serve_options; i++)
        printf("  %-28s %-18s %s\n", serve_options[i].option, serve_options[i].def,
               serve_options[i].what);
}

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
static int http_cpus_arg(const char *v, ServeOptions *o) {
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

/* --quota-* and --fairshare-half-life: 1 when a is one of them (v taken),
 * 0 when it is not, -1 for a bad value. */
static int fair_share_arg(const char *a, const char *v, ServeOptions *o) {
    static const QuotaLimit counts[] = {QUOTA_RUNNING_JOBS, QUOTA_QUEUED_JOBS, QUOTA_GPUS,
                                        QUOTA_DATASET_BYTES, QUOTA_CHECKPOINT_BYTES};
    static const char *const names[] = {"--quota-running-jobs", "--quota-queued-jobs",
                                        "--quota-gpus", "--quota-dataset-gb",
                                        "--quota-checkpoint-gb"};
    static const double time_f[] = {1, 60, 3600, 86400};
    double x;
    if (!strcmp(a, "--fairshare-half-life")) {
        if (scaled_arg(a, v, "smhd", time_f, 1e10, &x)) return -1;
        o->fairshare_half_life_s = x;
        return 1;
    }
    for (int k = 0; k < 5; k++) {
        if (strcmp(a, names[k]) != 0) continue;
        bool bytes = counts[k] >= QUOTA_DATASET_BYTES;
        if (scaled_arg(a, v, "", NULL, 1e9, &x)) return -1;
        quota_set(&o->quota_defaults, counts[k], (int64_t)(bytes ? x * 1e9 : x));
        return 1;
    }
    return 0;
}

static int parse_options(int argc, char **argv, ServeOptions *o) {
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
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_help();
            exit(0);
        }
        if (!strcmp(a, "--quiet")) {
            o->quiet = true;
            continue;
        }
        if (!strcmp(a, "--import-allow-private")) {
            o->import_policy.allow_private = true;
            continue;
        }
        if (i + 1 >= argc || a[0] != '-') {
            fprintf(stderr, "traind serve: unexpected argument '%s'\n", a);
            serve_usage(stderr);
            return -1;
        }
        const char *v = argv[++i];
        long long x = 0;
        int fair = fair_share_arg(a, v, o);
        if (fair < 0) return -1;
        if (fair)
            continue;
        else if (!strcmp(a, "--bind"))
            o->bind = v;
        else if (!strcmp(a, "--data-dir"))
            o->data_dir = v;
        else if (!strcmp(a, "--devices"))
            o->devices = v;
        else if (!strcmp(a, "--port")) {
            if (int_arg(a, v, 0, 65535, &x)) return -1;
            o->port = (int)x;
        } else if (!strcmp(a, "--workers")) {
            if (int_arg(a, v, 1, SCHEDULER_MAX_WORKERS, &x)) return -1;
            o->workers = (int)x;
        } else if (!strcmp(a, "--http-threads")) {
            if (int_arg(a, v, 1, 256, &x)) return -1;
            o->http_threads = (int)x;
        } else if (!strcmp(a, "--http-nice")) {
            if (int_arg(a, v, 0, 19, &x)) return -1;
            o->http_nice = (int)x;
        } else if (!strcmp(a, "--history-cache-mb")) {
            if (int_arg(a, v, 0, 1 << 20, &x)) return -1;
            o->history_cache_mb = (int)x;
        } else if (!strcmp(a, "--http-cpus")) {
            if (http_cpus_arg(v, o)) return -1;
        } else if (!strcmp(a, "--threads-per-job")) {
            if (int_arg(a, v, 0, 1024, &x)) return -1;
            o->threads_per_job = (int)x;
        } else if (!strcmp(a, "--import-timeout")) {
            if (int_arg(a, v, 1, 86400, &x)) return -1;
            o->import_timeout_s = (int)x;
        } else if (!strcmp(a, "--import-threads")) {
            if (int_arg(a, v, 1, IMPORTER_MAX_THREADS, &x)) return -1;
            o->import_threads = (int)x;
        } else if (!strcmp(a, "--imports-per-user")) {
            if (int_arg(a, v, 1, 1 << 20, &x)) return -1;
            o->imports_per_user = (int)x;
        } else if (!strcmp(a, "--import-allow-net")) {
            if (addr_policy_add_nets(&o->import_policy, v) != 0) {
                fprintf(stderr, "traind serve: --import-allow-net '%s': %s\n", v, error_get());
                return -1;
            }
        } else if (!strcmp(a, "--max-upload-mb")) {
            if (int_arg(a, v, 1, (long long)1 << 30, &x)) return -1;
            o->max_upload_mb = x;
        } else if (!strcmp(a, "--max-connections")) {
            if (int_arg(a, v, 1, 1 << 20, &x)) return -1;
            o->max_connections = (int)x;
        } else if (!strcmp(a, "--max-connections-per-ip")) {
            if (int_arg(a, v, 1, 1 << 20, &x)) return -1;
            o->max_per_ip = (int)x;
        } else if (!strcmp(a, "--header-timeout")) {
            if (int_arg(a, v, 1, 3600, &x)) return -1;
            o->header_timeout_s = (int)x;
        } else if (!strcmp(a, "--idle-timeout")) {
            if (int_arg(a, v, 1, 86400, &x)) return -1;
            o->idle_timeout_s = (int)x;
        } else if (!strcmp(a, "--tls-cert")) {
            o->tls_cert = v;
        } else if (!strcmp(a, "--tls-key")) {
            o->tls_key = v;
        } else if (!strcmp(a, "--metrics-token-file")) {
            o->metrics_token_file = v;
        } else if (!strcmp(a, "--executor")) {
            o->executor = v;
        } else if (!strcmp(a, "--executor-slots")) {
            if (int_arg(a, v, 1, SCHEDULER_MAX_WORKERS, &x)) return -1;
            o->executor_slots = (int)x;
        } else if (!strcmp(a, "--executor-poll-ms")) {
            if (int_arg(a, v, 10, 3600 * 1000, &x)) return -1;
            o->executor_poll_ms = (int)x;
        } else if (!strcmp(a, "--advertise-url")) {
            o->advertise_url = v;
        } else if (!strncmp(a, "--slurm-", 8)) {
            if (slurm_option(&o->executor_config.slurm, a, v) != 0) {
                fprintf(stderr, "traind serve: %s: %s\n", a, error_get());
                return -1;
            }
        } else {
            fprintf(stderr, "traind serve: unknown option '%s'\n", a);
            serve_usage(stderr);
            return -1;
        }
    }
    if (o->http_nice < 0) o->http_nice = o->http_cpus ? 0 : 10; /* not given */
    if (!o->tls_cert != !o->tls_key) {
        fprintf(stderr, "traind serve: %s needs %s too\n", o->tls_cert ? "--tls-cert" : "--tls-key",
                o->tls_cert ? "--tls-key" : "--tls-cert");
        return -1;
    }
    return 0;
}

/* The calling thread onto SET; the threads it starts inherit it. */
static int pin_this_thread(const cpu_set_t *set, const char *what) {
    int e = pthread_setaffinity_np(pthread_self(), sizeof *set, set);
    if (e)
        return error_set("--http-cpus: cannot move the %s onto their CPUs: %s", what, strerror(e));
    return 0;
}

/* Descriptors beyond the HTTP connections: the database and its WAL,
 * datasets and checkpoints being read or written, libcurl's imports. */
#define SERVE_FDS_BESIDE_HTTP 256

/* Raises the soft file limit so that o->max_connections fit, as far as the
 * hard limit allows; with a hard limit too low, serves fewer connections
 * and says so. */
static void fit_file_limit(ServeOptions *o) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)o->max_connections + SERVE_FDS_BESIDE_HTTP;
    if (rl.rlim_cur >= want) return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur >= want) return;
    int fit = rl.rlim_cur > 2 * SERVE_FDS_BESIDE_HTTP ? (int)(rl.rlim_cur - SERVE_FDS_BESIDE_HTTP)
                                                      : (int)(rl.rlim_cur / 2);
    log_message("start", "--max-connections %d: the file limit is %llu (ulimit -Hn), so at most "
                "%d connections", o->max_connections, (unsigned long long)rl.rlim_cur, fit);
    o->max_connections = fit;
}

/* After the first signal: a second one ends the process at once. */
/* The dashboard's address for the admin, with the token in its fragment
 * (as Jupyter logs its own): a browser never sends the fragment, and the
 * page takes it out of the address bar once read. Nothing when
 * admin.token is not there (removed by an admin who keeps it elsewhere). */
static void log_dashboard(const ServeOptions *o, int port, bool tls) {
    char path[PATH_MAX], token[128] = "";
    snprintf(path, sizeof path, "%s/admin.token", o->data_dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    bool got = fgets(token, sizeof token, f) != NULL;
    fclose(f);
    token[strcspn(token, "\r\n")] = '\0';
    if (!got || !token[0]) return;
    /* a wildcard bind is reached on loopback from this machine */
    const char *host = !strcmp(o->bind, "0.0.0.0") ? "127.0.0.1"
                       : !strcmp(o->bind, "::")    ? "::1"
                                                   : o->bind;
    char url[512];
    snprintf(url, sizeof url, strchr(host, ':') ? "%s://[%s]:%d/#token=%s" : "%s://%s:%d/#token=%s",
             tls ? "https" : "http", host, port, token);
    log_json("dashboard", json_pack("{s:s, s:s}", "url", url, "message",
                                    "the dashboard, signed in as the admin"));
}

static void *second_signal(void *arg) {
    sigset_t *set = arg;
    int sig;
    if (sigwait(set, &sig) == 0) {
        log_message("stop", "second signal (%d): exiting without a graceful stop", sig);
        _exit(130);
    }
    return NULL;
}

int cmd_serve(int argc, char **argv) {
    ServeOptions o;
    if (parse_options(argc, argv, &o) != 0) return 2;
    if (o.quiet) log_set_requests(0);
    TlsFiles tls = {0};
    if (o.tls_cert && tls_files_load(o.tls_cert, o.tls_key, &tls) != 0) {
        fprintf(stderr, "traind serve: %s\n", error_get());
        return 2;
    }
    char metrics_token[SHA256_HEX_LEN + 1] = "";
    if (o.metrics_token_file && metrics_token_load(o.metrics_token_file, metrics_token) != 0) {
        fprintf(stderr, "traind serve: %s\n", error_get());
        tls_files_free(&tls);
        return 2;
    }
    fit_file_limit(&o);

    /* before any thread exists, so every thread inherits the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "traind serve: cannot initialise libcurl\n");
        return 1;
    }

    /* Replies of a megabyte (a 10,000-point history) are built and freed
     * many times a second. glibc would map and unmap them, or trim the
     * arena after each, and every reply would fault in fresh zeroed pages:
     * half of such a GET's time in bench/api.sh. Keep freed memory up to
     * 64 MiB per arena for reuse instead. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);

    int status = 1, lock = -1;
    HttpListener listener = {.fd = -1};
    Db *db = NULL;
    MetricWriter *mw = NULL;
    Scheduler *sched = NULL;
    Importer *importer = NULL;
    HttpServer *http = NULL;
    Api api = {.started = time(NULL), .quota_defaults = o.quota_defaults};
    memcpy(api.metrics_token_sha256, metrics_token, sizeof metrics_token);

    /* before the database: a second daemon must not touch it at all */
    lock = data_lock_take(o.data_dir);
    if (lock < 0) goto fail;
    /* and the port before anything else: a daemon that cannot serve
     * requeues and trains nothing */
    if (http_listen(o.bind, o.port, &listener) != 0) goto fail;
    db = db_open(o.data_dir);
    if (!db) goto fail;
    int stale = 0;
    if (db_dataset_delete_stale(db, &stale) != DB_OK) goto fail;
    if (stale)
        log_message("start", "removed %d dataset upload(s) or import(s) left unfinished", stale);
    bool created = false;
    if (db_user_bootstrap_admin(db, &created) != DB_OK) goto fail;
    if (created)
        log_message("start", "created the admin user; its token is in %s/admin.token", o.data_dir);
    /* --http-cpus: each group of threads is started from this thread while it
     * stands on that group's CPUs, and inherits them */
    if (o.http_cpus && pin_this_thread(&o.http_set, "metric writer") != 0) goto fail;
    mw = metric_writer_start(db);
    if (!mw) goto fail;
    if (o.http_cpus && pin_this_thread(&o.train_set, "training workers") != 0) goto fail;
    ExecutorOps executor;
    char report_url[1024];
    snprintf(report_url, sizeof report_url, "%s", o.advertise_url ? o.advertise_url : "");
    if (!o.advertise_url)
        snprintf(report_url, sizeof report_url, "%s://127.0.0.1:%d", tls.cert ? "https" : "http",
                 listener.port);
    if (o.executor && executor_open(o.executor, db, &o.executor_config, &executor) != 0) {
        error_prefix("--executor");
        goto fail;
    }
    SchedulerConfig sc = {.db = db, .metrics = mw, .devices = o.devices, .workers = o.workers,
                          .threads_per_job = o.threads_per_job,
                          .quota_defaults = &o.quota_defaults,
                          .fairshare_half_life_s = o.fairshare_half_life_s,
                          .executor = o.executor ? &executor : NULL,
                          .executor_slots = o.executor_slots,
                          .executor_poll_ms = o.executor_poll_ms, .report_url = report_url};
    sched = scheduler_start(&sc);
    if (!sched) goto fail;
    ImporterConfig ic = {.db = db, .threads = o.import_threads, .per_user = o.imports_per_user,
                         .max_bytes = o.max_upload_mb << 20, .timeout_s = o.import_timeout_s,
                         .policy = o.import_policy, .quota_defaults = &o.quota_defaults};
    importer = importer_start(&ic);
    if (!importer) goto fail;
    api.importer = importer;
    api.db = db;
    api.metrics = mw;
    api.sched = sched;
    api.replies = reply_cache_new(API_REPLY_CACHE_BYTES, API_REPLY_CACHE_ENTRIES);
    if (o.history_cache_mb > 0)
        api.chunks = reply_cache_new((size_t)o.history_cache_mb << 20, API_CHUNK_CACHE_ENTRIES);
    if (!api.replies || (o.history_cache_mb > 0 && !api.chunks)) {
        error_set("out of memory");
        goto fail;
    }
    HttpConfig hc = {.listener = &listener, .threads = o.http_threads,
                     .json_max = HTTP_JSON_MAX_DEFAULT, .upload_max = o.max_upload_mb << 20,
                     .max_connections = o.max_connections, .max_per_ip = o.max_per_ip,
                     .header_timeout_s = o.header_timeout_s, .idle_timeout_s = o.idle_timeout_s,
                     .tls_cert = tls.cert, .tls_key = tls.key, .routes = api_routes,
                     .num_routes = api_num_routes, .authenticate = api_authenticate,
                     .app = &api};
    /* The HTTP threads inherit this thread's nice value (Linux: per
     * thread); the workers, started above, keep theirs. */
    if (o.http_nice > 0) {
        errno = 0;
        int base = getpriority(PRIO_PROCESS, (id_t)gettid()); /* -1 is a nice value */
        int nice = (errno ? 0 : base) + o.http_nice;
        if (setpriority(PRIO_PROCESS, (id_t)gettid(), nice > 19 ? 19 : nice) != 0)
            log_message("start", "--http-nice %d: %s", o.http_nice, strerror(errno));
    }
    if (o.http_cpus) {
        if (pin_this_thread(&o.http_set, "HTTP threads") != 0) goto fail;
        char train[256];
        cpu_list_format(&o.train_set, train, sizeof train);
        log_message("start", "HTTP threads on CPU(s) %s, training workers on %s", o.http_cpus,
                    train);
    }
    http = http_server_start(&hc);
    if (!http) goto fail;
    api.http = http;
    json_t *l = json_pack("{s:s, s:i, s:s, s:s, s:i, s:b}", "bind", o.bind, "port",
                          http_server_port(http), "data_dir", o.data_dir, "version",
                          TRAIND_VERSION, "pid", (int)getpid(), "tls", tls.cert != NULL);
    log_json("listening", l);
    log_dashboard(&o, http_server_port(http), tls.cert != NULL);

    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    log_message("stop", "signal %d: stopping (HTTP, then the scheduler checkpoints and requeues "
                        "running jobs)", sig);
    pthread_t watcher;
    if (pthread_create(&watcher, NULL, second_signal, &set) == 0) pthread_detach(watcher);
    status = 0;
    goto stop;
fail:
    fprintf(stderr, "traind serve: %s\n", error_get());
stop:
    http_server_stop(http);
    importer_stop(importer); /* running imports cancelled; the next start removes them */
    scheduler_stop(sched);
    metric_writer_stop(mw);
    reply_cache_free(api.replies);
    reply_cache_free(api.chunks);
    db_close(db);
    http_listener_close(&listener);
    data_lock_release(lock);
    tls_files_free(&tls);
    curl_global_cleanup();
    if (status == 0) log_message("stop", "stopped");
    return status;
}
