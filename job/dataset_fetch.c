/* dataset_fetch.c - a node's cache of the job's dataset files, fetched
 * from the daemon and checked by sha256; see dataset_fetch.h. */
#include "job/dataset_fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "job/rank.h"
#include "storage/db.h"
#include "storage/sha256.h"

/* One file of the manifest. */
typedef struct {
    int64_t dataset, bytes;
    const char *file, *path, *sha256;
} FetchEntry;

int dataset_fetch_verify(const char *path, int64_t bytes, const char *sha256) {
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT ? 1 : error_sys(errno, "%s", path);
    if (st.st_size != bytes)
        return error_set("%s: %lld bytes, expected %" PRId64, path, (long long)st.st_size, bytes);
    char got[SHA256_HEX_LEN + 1];
    if (sha256_file_hex(path, got, NULL) != 0) return -1;
    if (strcmp(got, sha256) != 0)
        return error_set("%s: sha256 mismatch: expected %s, got %s", path, sha256, got);
    return 0;
}

/* ---- one download ---- */

/* The file being written: its digest and size as the bytes arrive. */
typedef struct {
    int fd;
    const char *tmp;
    const FetchEntry *e;
    Sha256 sha;
    int64_t got;
} Download;

static int download_restart(void *ctx) {
    Download *d = ctx;
    sha256_init(&d->sha);
    d->got = 0;
    if (ftruncate(d->fd, 0) != 0 || lseek(d->fd, 0, SEEK_SET) != 0)
        return error_sys(errno, "%s", d->tmp);
    return 0;
}

static size_t download_write(const char *data, size_t len, void *ctx) {
    Download *d = ctx;
    if (d->got + (int64_t)len > d->e->bytes)
        return error_set("dataset %" PRId64 " file '%s': the daemon sent more than the %" PRId64
                         " bytes of the manifest",
                         d->e->dataset, d->e->file, d->e->bytes),
               0;
    sha256_update(&d->sha, data, len);
    for (size_t done = 0; done < len;) {
        ssize_t w = write(d->fd, data + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return error_sys(w < 0 ? errno : EIO, "%s", d->tmp), 0;
        done += (size_t)w;
    }
    d->got += (int64_t)len;
    return len;
}

/* The downloaded bytes against the manifest, then to disk. */
static int download_check(Download *d) {
    const FetchEntry *e = d->e;
    if (d->got != e->bytes)
        return error_set("dataset %" PRId64 " file '%s': got %" PRId64 " bytes, expected %" PRId64,
                         e->dataset, e->file, d->got, e->bytes);
    char got[SHA256_HEX_LEN + 1];
    sha256_final_hex(&d->sha, got);
    if (strcmp(got, e->sha256) != 0)
        return error_set("dataset %" PRId64 " file '%s': sha256 mismatch: expected %s, got %s "
                         "(the download is not kept)",
                         e->dataset, e->file, e->sha256, got);
    return fsync(d->fd) == 0 ? 0 : error_sys(errno, "%s", d->tmp);
}

/* e into final: a temporary name, checked, renamed. */
static int download(const AttemptHttp *http, CURL *curl, const FetchEntry *e, const char *final) {
    char *tmp = durable_temp_name(final);
    if (!tmp) return -1;
    Download d = {.tmp = tmp, .e = e};
    d.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (d.fd < 0) {
        int rc = error_sys(errno, "cannot create %s", tmp);
        free(tmp);
        return rc;
    }
    AttemptSink sink = {.restart = download_restart, .write = download_write, .ctx = &d};
    AttemptRequest q = {.method = "GET", .sink = &sink};
    snprintf(q.path, sizeof q.path, "/datasets/%" PRId64 "/%s", e->dataset, e->file);
    AttemptReply reply;
    int rc = attempt_http_request(http, curl, &q, &reply) < 0 ? -1 : download_check(&d);
    if (close(d.fd) != 0 && rc == 0) rc = error_sys(errno, "%s", tmp);
    if (rc == 0 && rename(tmp, final) != 0) rc = error_sys(errno, "rename %s to %s", tmp, final);
    if (rc == 0) rc = durable_sync_parent(final);
    if (rc != 0) unlink(tmp); /* the half-written file never stays */
    free(tmp);
    return rc;
}

/* ---- the manifest ---- */

static bool safe_name(const char *s, bool slash_ok) {
    if (!s || !*s || s[0] == '.' || s[0] == '/' || strstr(s, "/.")) return false;
    for (; *s; s++)
        if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') && !(*s >= '0' && *s <= '9') &&
            !strchr(slash_ok ? "._-/" : "._-", *s))
            return false;
    return true;
}

/* Entry i of the manifest's files, checked: a path inside the cache, a
 * name and an id that make a URL, a digest. */
static int entry_of(json_t *files, size_t i, const char *manifest, FetchEntry *e) {
    json_t *o = json_array_get(files, i);
    *e = (FetchEntry){.dataset = json_integer_value(json_object_get(o, "dataset")),
                      .bytes = json_integer_value(json_object_get(o, "bytes")),
                      .file = json_string_value(json_object_get(o, "file")),
                      .path = json_string_value(json_object_get(o, "path")),
                      .sha256 = json_string_value(json_object_get(o, "sha256"))};
    if (e->dataset <= 0 || e->bytes < 0 || !safe_name(e->file, false) ||
        !safe_name(e->path, true) || !e->sha256 || strlen(e->sha256) != SHA256_HEX_LEN)
        return error_set("%s: files[%zu]: expected {dataset, file, path, bytes, sha256} with a "
                         "relative path",
                         manifest, i);
    return 0;
}

/* The manifest, its cache the one given. NULL with an error. */
static json_t *load_manifest(const char *path, const char *cache) {
    json_error_t jerr;
    json_t *m = json_load_file(path, 0, &jerr);
    if (!m) return error_set("%s line %d: %s", path, jerr.line, jerr.text), NULL;
    const char *want = json_string_value(json_object_get(m, "cache"));
    size_t n = strlen(cache);
    while (n > 1 && cache[n - 1] == '/') n--;
    const char *err = !json_is_array(json_object_get(m, "files")) ? "has no files array"
                      : !want ? "has no cache"
                      : (strlen(want) != n || strncmp(want, cache, n) != 0)
                          ? "names the files in another cache"
                          : NULL;
    if (err) {
        error_set("%s %s: the spec names dataset files under '%s', --datasets-cache is '%s'",
                  path, err, want ? want : "?", cache);
        json_decref(m);
        return NULL;
    }
    return m;
}

/* ---- the node's fetch ---- */

int dataset_fetch_cache_ready(const char *cache) {
    char parent[4200];
    snprintf(parent, sizeof parent, "%s", cache);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (db_mkdir_p(parent) != 0) return -1;
    }
    if (mkdir(cache, 0700) != 0 && errno != EEXIST)
        return error_sys(errno, "datasets cache %s: cannot make it", cache);
    struct stat st;
    if (lstat(cache, &st) != 0) return error_sys(errno, "datasets cache %s", cache);
    if (!S_ISDIR(st.st_mode))
        return error_set("datasets cache %s: not a directory (a link, or a file)", cache);
    if (st.st_uid != geteuid())
        return error_set("datasets cache %s: owned by uid %u, not by this user (uid %u): another "
                         "user's files would be trusted", cache, (unsigned)st.st_uid,
                         (unsigned)geteuid());
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return error_set("datasets cache %s: mode %03o lets others write it (chmod go-w)", cache,
                         (unsigned)(st.st_mode & 0777));
    return 0;
}

static bool same_name(const char *name, void *file) { return strcmp(name, file) == 0; }

/* One entry into the cache: kept when it is already good there. */
static int fetch_one(const AttemptHttp *http, CURL *curl, const char *cache, const FetchEntry *e,
                     int *fetched) {
    char final[4400], dir[4400];
    snprintf(final, sizeof final, "%s/%s", cache, e->path);
    snprintf(dir, sizeof dir, "%s", final);
    *strrchr(dir, '/') = '\0';
    int have = dataset_fetch_verify(final, e->bytes, e->sha256);
    if (have == 0) return 0;
    if (have < 0) { /* a file the cache holds wrong: fetched again */
        fprintf(stderr, "traind run: %s; fetching it again\n", error_get());
        if (unlink(final) != 0) return error_sys(errno, "cannot remove %s", final);
    }
    if (db_mkdir_p(dir) != 0) return -1;
    /* a fetch killed (scancel -9) left its partial file: an hour untouched,
     * so that one another node writes into a cache they share stays */
    durable_remove_strays(dir, same_name, strrchr(final, '/') + 1, 3600);
    if (download(http, curl, e, final) != 0) return -1;
    (*fetched)++;
    return 0;
}

/* This node's part: every file of the manifest into the cache. */
static int fetch_node(const char *manifest_path, const char *cache, const AttemptHttp *http) {
    if (dataset_fetch_cache_ready(cache) != 0) return -1;
    json_t *m = load_manifest(manifest_path, cache);
    if (!m) return -1;
    CURL *curl = curl_easy_init();
    int rc = curl ? 0 : error_set("datasets: cannot start libcurl");
    json_t *files = json_object_get(m, "files");
    int fetched = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(files); i++) {
        FetchEntry e;
        rc = entry_of(files, i, manifest_path, &e);
        if (rc == 0) rc = fetch_one(http, curl, cache, &e, &fetched);
    }
    if (rc == 0)
        fprintf(stderr, "traind run: datasets: %zu file(s) in %s, %d fetched\n",
                json_array_size(files), cache, fetched);
    if (curl) curl_easy_cleanup(curl);
    json_decref(m);
    return rc;
}

int dataset_fetch_all(const char *manifest_path, const char *cache, const AttemptHttp *http,
                      DistGroup *group) {
    int local = job_rank_local(group);
    int rc = local < 0 ? -1 : local == 0 ? fetch_node(manifest_path, cache, http) : 0;
    char mine[ERROR_MAX];
    snprintf(mine, sizeof mine, "%s", error_get());
    int64_t failed = rc != 0;
    if (dist_all_reduce(group, &failed, 1, DTYPE_INT64) != 0) return -1;
    if (rc != 0) return error_set("datasets: %s", mine);
    if (failed > 0)
        return error_set("datasets: %" PRId64 " node(s) could not fetch them (their ranks' "
                         "stderr says why)",
                         failed);
    return 0;
}
