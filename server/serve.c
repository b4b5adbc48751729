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
 * writer, the scheduler (which ends or requeues jobs left running), the removal of
 * deleted datasets' files a stop left aside, the importer, the ingest
 * pools (uploads' checks, server/ingest_pool.h; ranks' checkpoints
 * stored, a pool of their own) and the HTTP
 * server, and log {"event":"listening","port":N} (--port 0
 * picks a free port: tests read it there).
 *
 * URL imports run on --import-threads threads of their own
 * (server/importer.h), at most --imports-per-user per user, and reach
 * public addresses only unless --import-allow-private or
 * --import-allow-net says otherwise (server/addr_policy.h).
 *
 * Stop, on SIGINT or SIGTERM: the HTTP server first (streams end, no new
 * request can reach the scheduler), the ingest pool (the uploads being
 * checked end, the queued ones are dropped), the importer (transfers cancelled; the
 * next start removes what they leave), then the scheduler (running jobs are
 * checkpointed where they stand and requeued, to resume on the next
 * start), the metric writer (flushed), the database. A second signal
 * while stopping exits at once.
 *
 * SIGHUP reads --tls-cert, --tls-key and --metrics-token-file again
 * (server/serve_reload.h): a renewed certificate or a rotated token
 * without a restart. It no longer ends the daemon, as it did by default.
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

#include "core/backend.h"
#include "core/data/dataset.h"
#include "core/error.h"
#include "server/api.h"
#include "server/cpu_list.h"
#include "server/data_lock.h"
#include "server/dataset_trash.h"
#include "server/executor.h"
#include "server/importer.h"
#include "server/log.h"
#include "server/metrics_token.h"
#include "server/serve_options.h"
#include "server/serve_reload.h"
#include "server/tls_files.h"
#include "server/version.h"

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
/* A connection's socket, and the file its request may hold open: an
 * upload being written, a checkpoint being sent. */
#define SERVE_FDS_PER_CONNECTION 2

/* Raises the soft file limit so that o->max_connections fit, as far as the
 * hard limit allows; with a hard limit too low, serves fewer connections
 * and says so. */
static void fit_file_limit(ServeOptions *o) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)o->max_connections * SERVE_FDS_PER_CONNECTION + SERVE_FDS_BESIDE_HTTP;
    if (rl.rlim_cur >= want) return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur >= want) return;
    rlim_t beside = rl.rlim_cur > 2 * SERVE_FDS_BESIDE_HTTP ? SERVE_FDS_BESIDE_HTTP
                                                            : rl.rlim_cur / 2;
    int fit = (int)((rl.rlim_cur - beside) / SERVE_FDS_PER_CONNECTION);
    if (fit > o->max_connections) fit = o->max_connections;
    log_message("start", "--max-connections %d: the file limit is %llu (ulimit -Hn), so at most "
                "%d connections", o->max_connections, (unsigned long long)rl.rlim_cur, fit);
    o->max_connections = fit;
}

/* --max-dataset-mb, or a quarter of the machine's memory: one user's
 * upload or job may not load a dataset that starves the rest. */
static void limit_dataset_memory(const ServeOptions *o) {
    char name[128];
    uint64_t total = 0, free_bytes;
    if (!o->max_dataset_mb && backend_for(DEVICE_CPU_INIT)->device_info(
                                  DEVICE_CPU_INIT, name, sizeof name, &total, &free_bytes) != 0)
        log_message("start", "no limit on a dataset's memory: %s", error_get());
    dataset_set_memory_limit(o->max_dataset_mb ? (uint64_t)o->max_dataset_mb << 20 : total / 4);
}

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

/* After the first signal: a second one ends the process at once (a
 * SIGHUP then reloads nothing, and ends nothing). */
static void *second_signal(void *arg) {
    sigset_t *set = arg;
    int sig = 0;
    while (sigwait(set, &sig) != 0 || sig == SIGHUP) {
    }
    log_message("stop", "second signal (%d): exiting without a graceful stop", sig);
    _exit(130);
}

/* What a running daemon holds, in the order it starts; the configs its
 * parts were started with point into it. */
typedef struct {
    int lock;
    HttpListener listener;
    Db *db;
    MetricWriter *mw;
    ExecutorOps executor;
    char report_url[1024];
    Scheduler *sched;
    Importer *importer;
    IngestPool *ingest; /* uploads' checks */
    IngestPool *stores; /* ranks' checkpoints stored, apart: never behind a check */
    Api api;
    HttpServer *http;
} Daemon;

/* The data dir's lock, the port, the database (what a previous daemon
 * left half done removed, the admin made on first start) and the metric
 * writer. */
static int open_storage(Daemon *d, const ServeOptions *o) {
    /* before the database: a second daemon must not touch it at all */
    if ((d->lock = data_lock_take(o->data_dir)) < 0) return -1;
    /* and the port before anything else: a daemon that cannot serve
     * requeues and trains nothing */
    if (http_listen(o->bind, o->port, &d->listener) != 0) return -1;
    if (!(d->db = db_open(o->data_dir))) return -1;
    int stale = 0;
    if (db_dataset_delete_stale(d->db, &stale) != DB_OK) return -1;
    if (stale)
        log_message("start", "removed %d dataset upload(s) or import(s) left unfinished", stale);
    bool created = false;
    if (db_user_bootstrap_admin(d->db, &created) != DB_OK) return -1;
    if (created)
        log_message("start", "created the admin user; its token is in %s/admin.token",
                    o->data_dir);
    /* --http-cpus: each group of threads is started from this thread while
     * it stands on that group's CPUs, and inherits them */
    if (o->http_cpus && pin_this_thread(&o->http_set, "metric writer") != 0) return -1;
    return (d->mw = metric_writer_start(d->db)) ? 0 : -1;
}

/* The scheduler: its workers, or --executor's launcher. */
static int start_work(Daemon *d, const ServeOptions *o, bool tls) {
    if (o->http_cpus && pin_this_thread(&o->train_set, "training workers") != 0) return -1;
    if (o->advertise_url)
        snprintf(d->report_url, sizeof d->report_url, "%s", o->advertise_url);
    else
        snprintf(d->report_url, sizeof d->report_url, "%s://127.0.0.1:%d",
                 tls ? "https" : "http", d->listener.port);
    if (o->executor && executor_open(o->executor, d->db, &o->executor_config, &d->executor) != 0)
        return error_prefix("--executor");
    SchedulerConfig sc = {.db = d->db, .metrics = d->mw, .devices = o->devices,
                          .workers = o->workers, .threads_per_job = o->threads_per_job,
                          .quota_defaults = &o->quota_defaults,
                          .fairshare_half_life_s = o->fairshare_half_life_s,
                          .executor = o->executor ? &d->executor : NULL,
                          .executor_slots = o->executor_slots,
                          .executor_poll_ms = o->executor_poll_ms, .report_url = d->report_url};
    return (d->sched = scheduler_start(&sc)) ? 0 : -1;
}

/* The importer, the ingest pool, and the removal of deleted datasets'
 * files a stop left aside, whose threads work on datasets' files: started
 * where the HTTP threads are, at their nice value and on their CPUs
 * (threads inherit both), not the training workers'. */
static int start_datasets(Daemon *d, const ServeOptions *o) {
    dataset_trash_sweep(d->db);
    ImporterConfig ic = {.db = d->db, .threads = o->import_threads,
                         .per_user = o->imports_per_user,
                         .max_bytes = (int64_t)o->max_upload_mb << 20,
                         .timeout_s = o->import_timeout_s, .policy = o->import_policy,
                         .quota_defaults = &o->quota_defaults};
    if (!(d->importer = importer_start(&ic))) return -1;
    if (!(d->ingest = ingest_pool_start(INGEST_POOL_THREADS_DEFAULT))) return -1;
    /* as many as the HTTP threads that stored them before: a preempted
     * rank's checkpoint must not wait out its grace behind others */
    return (d->stores = ingest_pool_start(o->http_threads > 0 ? o->http_threads : 4)) ? 0 : -1;
}

/* The HTTP threads inherit this thread's nice value (Linux: per thread);
 * the workers, started before, keep theirs. */
static void lower_priority(int nice_by) {
    errno = 0;
    int base = getpriority(PRIO_PROCESS, (id_t)gettid()); /* -1 is a nice value */
    int nice = (errno ? 0 : base) + nice_by;
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), nice > 19 ? 19 : nice) != 0)
        log_message("start", "--http-nice %d: %s", nice_by, strerror(errno));
}

/* The API's state and the HTTP server over it. */
static int start_http(Daemon *d, const ServeOptions *o, const TlsFiles *tls) {
    Api *api = &d->api;
    api->db = d->db;
    api->metrics = d->mw;
    api->sched = d->sched;
    api->replies = reply_cache_new(API_REPLY_CACHE_BYTES, API_REPLY_CACHE_ENTRIES);
    if (o->history_cache_mb > 0)
        api->chunks = reply_cache_new((size_t)o->history_cache_mb << 20, API_CHUNK_CACHE_ENTRIES);
    if (!api->replies || (o->history_cache_mb > 0 && !api->chunks))
        return error_set("out of memory");
    HttpConfig hc = {.listener = &d->listener, .threads = o->http_threads,
                     .json_max = HTTP_JSON_MAX_DEFAULT,
                     .upload_max = (int64_t)o->max_upload_mb << 20,
                     .max_connections = o->max_connections, .max_per_ip = o->max_per_ip,
                     .header_timeout_s = o->header_timeout_s, .idle_timeout_s = o->idle_timeout_s,
                     .tls_cert = tls->cert, .tls_key = tls->key, .routes = api_routes,
                     .num_routes = api_num_routes, .authenticate = api_authenticate, .app = api};
    if (o->http_nice > 0) lower_priority(o->http_nice);
    if (o->http_cpus) {
        if (pin_this_thread(&o->http_set, "HTTP threads") != 0) return -1;
        char train[256];
        cpu_list_format(&o->train_set, train, sizeof train);
        log_message("start", "HTTP threads on CPU(s) %s, training workers on %s", o->http_cpus,
                    train);
    }
    if (start_datasets(d, o) != 0) return -1;
    api->importer = d->importer;
    api->ingest = d->ingest;
    api->stores = d->stores;
    if (!(d->http = http_server_start(&hc))) return -1;
    api->http = d->http;
    return 0;
}

/* Stops what started, in the order the file's comment gives. */
static void stop_daemon(Daemon *d) {
    http_server_stop(d->http);
    ingest_pool_stop(d->ingest); /* uploads' checks: the running ones end, the queued go */
    ingest_pool_stop(d->stores); /* checkpoints: likewise */
    importer_stop(d->importer); /* running imports cancelled; the next start removes them */
    scheduler_stop(d->sched);
    metric_writer_stop(d->mw);
    reply_cache_free(d->api.replies);
    reply_cache_free(d->api.chunks);
    db_close(d->db);
    http_listener_close(&d->listener);
    data_lock_release(d->lock);
}

/* The files --tls-cert, --tls-key and --metrics-token-file name, read
 * before anything starts. */
static int load_files(const ServeOptions *o, TlsFiles *tls, char *metrics_token) {
    if (o->tls_cert && tls_files_load(o->tls_cert, o->tls_key, tls) != 0) return -1;
    if (tls->warning[0]) fprintf(stderr, "traind serve: warning: %s\n", tls->warning);
    if (o->metrics_token_file && metrics_token_load(o->metrics_token_file, metrics_token) != 0) {
        tls_files_free(tls);
        return -1;
    }
    return 0;
}

/* Waits for SIGINT or SIGTERM (blocked in every thread), reloading on
 * each SIGHUP meanwhile; after it, a second one ends the process at once. */
static void wait_for_signal(sigset_t *set, Daemon *d, const ServeOptions *o) {
    int sig = 0;
    while (sigwait(set, &sig) != 0 || sig == SIGHUP)
        if (sig == SIGHUP) serve_reload(o, d->http, &d->api);
    log_message("stop", "signal %d: stopping (HTTP, then the scheduler checkpoints and requeues "
                        "running jobs)", sig);
    pthread_t watcher;
    if (pthread_create(&watcher, NULL, second_signal, set) == 0) pthread_detach(watcher);
}

int cmd_serve(int argc, char **argv) {
    ServeOptions o;
    if (serve_options_parse(argc, argv, &o) != 0) return 2;
    if (o.quiet) log_set_requests(0);
    TlsFiles tls = {0};
    char metrics_token[SHA256_HEX_LEN + 1] = "";
    if (load_files(&o, &tls, metrics_token) != 0) {
        fprintf(stderr, "traind serve: %s\n", error_get());
        return 2;
    }
    fit_file_limit(&o);
    limit_dataset_memory(&o);

    /* before any thread exists, so every thread inherits the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "traind serve: cannot initialise libcurl\n");
        tls_files_free(&tls);
        return 1;
    }

    /* Replies of a megabyte (a 10,000-point history) are built and freed
     * many times a second. glibc would map and unmap them, or trim the
     * arena after each, and every reply would fault in fresh zeroed pages:
     * half of such a GET's time in bench/api.sh. Keep freed memory up to
     * 64 MiB per arena for reuse instead. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);

    Daemon d = {.lock = -1, .listener = {.fd = -1},
                .api = {.started = time(NULL), .quota_defaults = o.quota_defaults,
                        .metrics_token_lock = PTHREAD_MUTEX_INITIALIZER}};
    api_set_metrics_token(&d.api, metrics_token);
    int status = 1;
    bool https = tls.cert != NULL;
    if (open_storage(&d, &o) == 0 && start_work(&d, &o, https) == 0 &&
        start_http(&d, &o, &tls) == 0) {
        tls_files_free(&tls); /* GnuTLS holds its own copy: the key's text goes now */
        json_t *l = json_pack("{s:s, s:i, s:s, s:s, s:i, s:b}", "bind", o.bind, "port",
                              http_server_port(d.http), "data_dir", o.data_dir, "version",
                              TRAIND_VERSION, "pid", (int)getpid(), "tls", https);
        log_json("listening", l);
        log_dashboard(&o, http_server_port(d.http), https);
        wait_for_signal(&set, &d, &o);
        status = 0;
    } else {
        fprintf(stderr, "traind serve: %s\n", error_get());
    }
    stop_daemon(&d);
    tls_files_free(&tls);
    curl_global_cleanup();
    if (status == 0) log_message("stop", "stopped");
    return status;
}
