/* importer.c - the import threads, their queue, cancelling; see
 * importer.h. One mutex guards the queue and the list of running imports;
 * a transfer runs without it. */
#include "server/importer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "server/dataset_ingest.h"
#include "server/disk_space.h"
#include "server/log.h"
#include "server/quota_text.h"
#include "server/url_fetch.h"

/* The row's progress is written at most this often while bytes arrive. */
#define IMPORTER_PROGRESS_MS 200

typedef struct Import {
    struct Import *next;
    int64_t id, owner;
    char format[16];
    char *options;
    int num_files;
    char roles[DB_DATASET_MAX_FILES][16];
    char *urls[DB_DATASET_MAX_FILES];
    atomic_bool cancel;
} Import;

struct Importer {
    ImporterConfig cfg;
    pthread_mutex_t mu;
    pthread_cond_t work;  /* a job waits, or stopping */
    pthread_cond_t ended; /* a running import ended */
    Import *waiting;      /* in the order they came */
    Import *running;
    bool stopping;
    atomic_uint_fast64_t generation;
    int num_threads;
    pthread_t threads[IMPORTER_MAX_THREADS];
};

static void import_free(Import *j) {
    if (!j) return;
    free(j->options);
    for (int i = 0; i < j->num_files; i++) free(j->urls[i]);
    free(j);
}

static Import *import_new(const ImportJob *job) {
    Import *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->id = job->dataset_id;
    j->owner = job->owner;
    snprintf(j->format, sizeof j->format, "%s", job->format);
    j->options = strdup(job->options_json ? job->options_json : "{}");
    bool ok = j->options != NULL;
    for (int i = 0; ok && i < job->num_files && i < DB_DATASET_MAX_FILES; i++) {
        snprintf(j->roles[i], sizeof j->roles[i], "%s", job->roles[i]);
        j->urls[j->num_files++] = strdup(job->urls[i]);
        ok = j->urls[i] != NULL;
    }
    if (!ok) {
        import_free(j);
        return NULL;
    }
    return j;
}

static void bump(Importer *im) { atomic_fetch_add(&im->generation, 1); }

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- one import ---- */

/* What the owner's dataset-byte quota leaves this import to fetch, all its
 * files together (left -1: no limit, or no owner). */
typedef struct {
    int64_t left, limit;
    char user[DB_USER_NAME_MAX + 1];
} QuotaRoom;

/* The room as the holdings say now, less `own`, what this import's row
 * holds of them: 0, or -1 with an error when they cannot be read. */
static int quota_room(Importer *im, const Import *j, int64_t own, QuotaRoom *room) {
    room->left = room->limit = -1;
    room->user[0] = '\0';
    if (j->owner <= 0) return 0;
    DbQuota q;
    DbUsage held;
    if (quota_lookup(im->cfg.db, j->owner, im->cfg.quota_defaults, &q, &held, room->user,
                     sizeof room->user) != DB_OK)
        return -1;
    room->limit = quota_get(&q, QUOTA_DATASET_BYTES);
    if (room->limit >= 0) {
        int64_t used = quota_holding(&held, QUOTA_DATASET_BYTES) - own;
        room->left = room->limit > used ? room->limit - used : 0;
    }
    return 0;
}

typedef struct {
    Importer *im;
    Import *job;
    int64_t done;                  /* bytes of the files already in */
    int64_t written_got, written_total; /* what the row says */
    int64_t written_at;
    QuotaRoom room; /* read again as the row's progress is written */
    bool over;      /* stopped: the bytes passed room.left */
} Progress;

static void record(Progress *p, int64_t got, int64_t total) {
    if (got == p->written_got && total == p->written_total) return;
    p->written_at = now_ms();
    if (db_dataset_import_progress(p->im->cfg.db, p->job->id, got, total) != DB_OK) {
        log_message("import", "dataset %lld: recording progress: %s", (long long)p->job->id,
                    error_get());
        return;
    }
    p->written_got = got;
    p->written_total = total;
    bump(p->im);
}

/* The holdings read again, so that the owner's uploads and imports that
 * each fit, not together, stop as their bytes meet rather than as each
 * ends. A database that cannot be read keeps the last look (the check as
 * the dataset is made ready weighs it again). */
static void refresh_room(Progress *p) {
    QuotaRoom now;
    if (quota_room(p->im, p->job, p->written_got, &now) != 0) {
        error_clear();
        return;
    }
    p->room = now;
}

static bool past_room(Progress *p, int64_t bytes) {
    if (p->room.left >= 0 && bytes > p->room.left) p->over = true;
    return p->over;
}

/* url_fetch's progress: stop when cancelled; the row's numbers, now and
 * then. total_bytes is what is known of the size: the files in, plus the
 * Content-Length of the one coming (0 while it is not known). */
static int on_progress(void *ctx, int64_t got, int64_t expected) {
    Progress *p = ctx;
    if (atomic_load(&p->job->cancel) || past_room(p, p->done + got)) return 1;
    if (got == 0 && expected == 0) return 0; /* nothing new to say */
    if (now_ms() - p->written_at < IMPORTER_PROGRESS_MS) return 0;
    record(p, p->done + got, expected > 0 ? p->done + expected : 0);
    refresh_room(p);
    return past_room(p, p->done + got);
}

/* The file's name in the dataset's directory: the URL's last path
 * segment, its query cut off, made safe and unlike the files' before it
 * (dataset_ingest_file_name). */
static void file_name(const Import *j, int i, const DbDataset *info, char *out, size_t size) {
    char base[256];
    const char *slash = strrchr(j->urls[i], '/');
    snprintf(base, sizeof base, "%s", slash ? slash + 1 : "");
    base[strcspn(base, "?#")] = '\0';
    dataset_ingest_file_name(info->files, i, j->roles[i], base, out, size);
}

static void remove_files(const char *dir, const DbDataset *info) {
    char path[4096 + 160];
    for (int i = 0; i < info->num_files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, info->files[i].name);
        unlink(path);
    }
}

/* The error of a file cut off at what the quota left (`left` bytes). */
static void over_quota(const QuotaRoom *room, const char *url, int64_t left) {
    if (left < 0) left = 0;
    char a[32], b[32], shown[256];
    url_fetch_shown(url, shown, sizeof shown);
    error_set("%.120s: the file is over the %s left of %s's dataset quota of %s", shown,
              quota_text_bytes(left, a, sizeof a), room->user,
              quota_text_bytes(room->limit, b, sizeof b));
}

/* Fetches the files into info (num_files counts those in). 0; -1 with an
 * error (the role's path in front); 1 when cancelled. */
static int fetch_all(Importer *im, Import *j, const char *dir, DbDataset *info) {
    Progress p = {.im = im, .job = j};
    UrlFetchOptions o = {.policy = &im->cfg.policy, .timeout_s = im->cfg.timeout_s,
                         .progress = on_progress, .ctx = &p};
    if (quota_room(im, j, 0, &p.room) != 0) return -1;
    for (int i = 0; i < j->num_files; i++) {
        DbDatasetFile *f = &info->files[i];
        snprintf(f->role, sizeof f->role, "%s", j->roles[i]);
        file_name(j, i, info, f->name, sizeof f->name);
        char path[4096 + 160];
        snprintf(path, sizeof path, "%s/%s", dir, f->name);
        int64_t left = p.room.left >= 0 ? p.room.left - p.done : -1;
        bool quota_caps = left >= 0 && left < im->cfg.max_bytes;
        o.max_bytes = quota_caps ? left : im->cfg.max_bytes;
        UrlFetchResult r = url_fetch(j->urls[i], path, &o, &f->bytes, f->sha256);
        if (atomic_load(&j->cancel)) return 1;
        if ((r == URL_FETCH_TOO_LARGE && quota_caps) || (r == URL_FETCH_CANCELLED && p.over))
            over_quota(&p.room, j->urls[i], p.room.left - p.done);
        else if (r == URL_FETCH_CANCELLED)
            return 1;
        if (r != URL_FETCH_OK) {
            char role[32];
            snprintf(role, sizeof role, "urls.%s", j->roles[i]);
            return error_prefix_at(role); /* the path names it for a full disk's message */
        }
        info->num_files = i + 1;
        p.done += f->bytes;
        record(&p, p.done, p.done);
    }
    return 0;
}

/* The error of an import that ran out of disk space (e: the failure, its
 * path the URL's role), said as an upload's 507 says it, within the 255
 * bytes of a dataset's error; the whole of e goes to the log. */
static void disk_full_message(Db *db, int64_t id, const Error *e, char *msg, size_t size) {
    log_message("import", "dataset %lld: %s", (long long)id, e->message);
    DbDataset ds;
    char name[48] = "", left[96];
    if (db_dataset_get(db, id, &ds) == DB_OK) {
        snprintf(name, sizeof name, "%.40s", ds.name);
        db_dataset_clear(&ds);
    }
    snprintf(msg, size, "dataset '%s': the disk is full (%s) storing %s: %s; nothing of the "
             "import was kept", name, strerror(e->sys_errno), e->path[0] ? e->path : "its files",
             disk_space_left(db_data_dir(db), left, sizeof left));
}

static void run(Importer *im, Import *j) {
    Db *db = im->cfg.db;
    DbDataset info;
    memset(&info, 0, sizeof info);
    char dir[4096];
    int rc = db_dataset_dir(db, j->id, dir, sizeof dir) == DB_OK ? fetch_all(im, j, dir, &info) : -1;
    /* each file and its name were fsynced as it came; now the folder's name */
    if (rc == 0 && durable_sync_parent(dir) != 0) rc = -1;
    if (rc == 1) return; /* cancelled: the canceller deletes, or the next start does */
    DatasetIngest in = {.db = db, .quota_defaults = im->cfg.quota_defaults, .id = j->id,
                        .owner = j->owner, .format = j->format, .options_json = j->options};
    if (rc == 0 && dataset_ingest_finish(&in, &info) == DATASET_INGEST_OK) {
        log_message("import", "dataset %lld: ready, %lld bytes in %d file(s)", (long long)j->id,
                    (long long)info.bytes, info.num_files);
        bump(im);
        return;
    }
    Error e = *error_last();
    char msg[ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", e.message);
    remove_files(dir, &info);
    if (disk_space_full(e.sys_errno)) disk_full_message(db, j->id, &e, msg, sizeof msg);
    if (db_dataset_import_failed(db, j->id, msg) != DB_OK)
        log_message("import", "dataset %lld: recording its failure: %s", (long long)j->id,
                    error_get());
    log_message("import", "dataset %lld: failed: %s", (long long)j->id, msg);
    bump(im);
}

/* ---- the pool ---- */

static void unlink_job(Import **list, Import *j) {
    for (Import **pp = list; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            return;
        }
}

static void *worker(void *arg) {
    Importer *im = arg;
    pthread_setname_np(pthread_self(), "import"); /* top, gdb */
    pthread_mutex_lock(&im->mu);
    for (;;) {
        while (!im->waiting && !im->stopping) pthread_cond_wait(&im->work, &im->mu);
        if (im->stopping) break;
        Import *j = im->waiting;
        im->waiting = j->next;
        j->next = im->running;
        im->running = j;
        pthread_mutex_unlock(&im->mu);
        run(im, j);
        pthread_mutex_lock(&im->mu);
        unlink_job(&im->running, j);
        pthread_cond_broadcast(&im->ended);
        import_free(j);
    }
    pthread_mutex_unlock(&im->mu);
    return NULL;
}

Importer *importer_start(const ImporterConfig *config) {
    if (config->threads < 1 || config->threads > IMPORTER_MAX_THREADS || config->per_user < 1) {
        error_set("importer: %d threads (1 to %d), %d per user (at least 1)", config->threads,
                  IMPORTER_MAX_THREADS, config->per_user);
        return NULL;
    }
    Importer *im = calloc(1, sizeof *im);
    if (!im) {
        error_set("importer: out of memory");
        return NULL;
    }
    im->cfg = *config;
    pthread_mutex_init(&im->mu, NULL);
    pthread_cond_init(&im->work, NULL);
    pthread_cond_init(&im->ended, NULL);
    for (int i = 0; i < config->threads; i++) {
        int e = pthread_create(&im->threads[i], NULL, worker, im);
        if (e) {
            error_set("importer: cannot start thread %d: %s", i + 1, strerror(e));
            importer_stop(im);
            return NULL;
        }
        im->num_threads++;
    }
    return im;
}

void importer_stop(Importer *im) {
    if (!im) return;
    pthread_mutex_lock(&im->mu);
    im->stopping = true;
    for (Import *j = im->running; j; j = j->next) atomic_store(&j->cancel, true);
    while (im->waiting) {
        Import *j = im->waiting;
        im->waiting = j->next;
        import_free(j);
    }
    pthread_cond_broadcast(&im->work);
    pthread_mutex_unlock(&im->mu);
    for (int i = 0; i < im->num_threads; i++) pthread_join(im->threads[i], NULL);
    pthread_cond_destroy(&im->ended);
    pthread_cond_destroy(&im->work);
    pthread_mutex_destroy(&im->mu);
    free(im);
}

const AddrPolicy *importer_policy(const Importer *im) { return &im->cfg.policy; }

int importer_per_user(const Importer *im) { return im->cfg.per_user; }

static int count_owner(const Import *list, int64_t owner) {
    int n = 0;
    for (const Import *j = list; j; j = j->next) n += j->owner == owner;
    return n;
}

static Import *find(Import *list, int64_t id) {
    for (Import *j = list; j; j = j->next)
        if (j->id == id) return j;
    return NULL;
}

int importer_submit(Importer *im, const ImportJob *job, int *held) {
    Import *j = import_new(job);
    if (!j) return error_set("importer: out of memory");
    pthread_mutex_lock(&im->mu);
    int rc = 0;
    *held = count_owner(im->waiting, job->owner) + count_owner(im->running, job->owner);
    if (im->stopping)
        rc = error_set("the daemon is stopping");
    else if (*held >= im->cfg.per_user)
        rc = 1;
    else {
        Import **tail = &im->waiting;
        while (*tail) tail = &(*tail)->next;
        *tail = j;
        j = NULL;
        pthread_cond_signal(&im->work);
    }
    pthread_mutex_unlock(&im->mu);
    import_free(j);
    return rc;
}

bool importer_cancel_ask(Importer *im, int64_t dataset_id) {
    pthread_mutex_lock(&im->mu);
    Import *j = find(im->waiting, dataset_id);
    bool changed = j != NULL, running = false;
    if (j) {
        unlink_job(&im->waiting, j);
        import_free(j);
    } else if ((j = find(im->running, dataset_id)) != NULL) {
        running = true; /* its thread frees it once the transfer has stopped */
        changed = !atomic_exchange(&j->cancel, true);
    }
    pthread_mutex_unlock(&im->mu);
    if (changed) bump(im);
    return running;
}

uint64_t importer_generation(Importer *im) { return atomic_load(&im->generation); }
