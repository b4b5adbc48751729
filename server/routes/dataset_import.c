/* dataset_import.c - POST /v1/datasets with a JSON body: fetch the files
 * from URLs with libcurl, the daemon's `download=True`.
 *
 *   {"name": "mnist-test", "format": "idx",
 *    "urls": {"images": "https://.../t10k-images-idx3-ubyte.gz",
 *             "labels": "https://.../t10k-labels-idx1-ubyte.gz"}}
 *
 * (csv: "urls": {"file": ...} and optional "label_column",
 * "feature_columns"; npy: "inputs" and "targets"). Only http and https,
 * also across redirects (at most 5); a connect timeout of 10 s, a total
 * timeout per file, and a size limit per file (the server's import limit),
 * checked against Content-Length and again while the bytes arrive. Each
 * file streams to <data-dir>/datasets/<id>/ and is hashed on the way, then
 * the dataset is validated as an upload is (dataset_ingest.h). The request
 * waits for the whole import: one of the HTTP threads is busy meanwhile.
 * Any failure removes the files and the row.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/error.h"
#include "server/api.h"
#include "server/dataset_ingest.h"
#include "storage/sha256.h"

typedef struct {
    int fd;
    Sha256 sha;
    int64_t bytes, max;
    bool too_large, write_failed;
    int write_errno;
} Fetch;

static size_t on_body(char *data, size_t size, size_t nmemb, void *user) {
    Fetch *f = user;
    size_t n = size * nmemb;
    if (f->bytes + (int64_t)n > f->max) {
        f->too_large = true;
        return 0; /* aborts the transfer */
    }
    sha256_update(&f->sha, data, n);
    f->bytes += (int64_t)n;
    for (size_t done = 0; done < n;) {
        ssize_t w = write(f->fd, data + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            f->write_failed = true;
            f->write_errno = errno;
            return 0;
        }
        done += (size_t)w;
    }
    return n;
}

/* Downloads url into path. 0, or -1 with an error; *status the HTTP
 * status to answer (413 too large, 422 a remote failure, 503 ours). */
static int fetch(const char *url, const char *path, int64_t max, int timeout_s,
                 DbDatasetFile *file, int *status) {
    Fetch f = {.max = max};
    *status = 422;
    f.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f.fd < 0) {
        *status = 503;
        return error_set("cannot create %s: %s", file->name, strerror(errno));
    }
    sha256_init(&f.sha);
    CURL *c = curl_easy_init();
    if (!c) {
        close(f.fd);
        *status = 503;
        return error_set("cannot start libcurl");
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)timeout_s);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* we are one thread among many */
    curl_easy_setopt(c, CURLOPT_USERAGENT, "traind");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    int closed = close(f.fd);
    if (f.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        *status = 413;
        return error_set("the file is over the import limit of %lld bytes", (long long)max);
    }
    if (f.write_failed) {
        *status = 503;
        return error_set("cannot write %s: %s", file->name, strerror(f.write_errno));
    }
    if (rc == CURLE_HTTP_RETURNED_ERROR) return error_set("HTTP %ld from the server", code);
    if (rc != CURLE_OK)
        return error_set("%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
    if (closed != 0) {
        *status = 503;
        return error_set("cannot write %s: %s", file->name, strerror(errno));
    }
    file->bytes = f.bytes;
    sha256_final_hex(&f.sha, file->sha256);
    *status = 0;
    return 0;
}

/* A string field, or NULL when absent; -1 after replying 400 for a wrong
 * type. */
static int string_field(HttpRequest *req, json_t *body, const char *key, const char **out) {
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        http_reply_error(req, 400, "invalid", key, "%s: expected a string", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int dataset_import(HttpRequest *req, json_t *body) {
    Api *api = http_app(req);
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        if (strcmp(key, "name") && strcmp(key, "format") && strcmp(key, "urls") &&
            strcmp(key, "label_column") && strcmp(key, "feature_columns"))
            return http_reply_error(req, 400, "invalid", key,
                                    "%.64s: unknown field (fields: name, format, urls, "
                                    "label_column, feature_columns)", key);
    }
    const char *name, *format, *label_column, *feature_columns;
    if (string_field(req, body, "name", &name) || string_field(req, body, "format", &format) ||
        string_field(req, body, "label_column", &label_column) ||
        string_field(req, body, "feature_columns", &feature_columns))
        return 0;
    if (!name) return http_reply_error(req, 400, "invalid", "name", "name: required");
    if (!format) return http_reply_error(req, 400, "invalid", "format", "format: required");
    json_t *urls = json_object_get(body, "urls");
    if (!urls)
        return http_reply_error(req, 400, "invalid", "urls",
                                "urls: required (or upload the files as multipart/form-data)");
    if (!json_is_object(urls))
        return http_reply_error(req, 400, "invalid", "urls", "urls: expected an object of role: URL");
    if (db_dataset_name_check(name) != DB_OK)
        return http_reply_error(req, 422, "invalid", "name", "%s", error_get());
    int nroles = 0;
    const char *const *roles = dataset_ingest_roles(format, &nroles);
    if (!roles)
        return http_reply_error(req, 422, "invalid", "format",
                                "format: unknown format '%.32s' (known: idx, csv, npy)", format);
    char path[64];
    json_object_foreach(urls, key, v) {
        snprintf(path, sizeof path, "urls.%.32s", key);
        if (!dataset_ingest_role_ok(format, key))
            return http_reply_error(req, 422, "invalid", path,
                                    "%s: format %s takes %s%s%s", path, format, roles[0],
                                    nroles > 1 ? " and " : "", nroles > 1 ? roles[1] : "");
        if (!json_is_string(v))
            return http_reply_error(req, 400, "invalid", path, "%s: expected a URL string", path);
        const char *u = json_string_value(v);
        if (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0)
            return http_reply_error(req, 422, "invalid", path,
                                    "%s: only http:// and https:// URLs are imported", path);
    }
    for (int i = 0; i < nroles; i++)
        if (!json_object_get(urls, roles[i])) {
            snprintf(path, sizeof path, "urls.%s", roles[i]);
            return http_reply_error(req, 422, "invalid", path, "%s: required for format %s",
                                    path, format);
        }

    char *options = dataset_ingest_options(label_column, feature_columns);
    if (!options) return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    int64_t id = 0;
    error_clear();
    int st = db_dataset_insert(api->db, name, format, options, http_auth(req)->user_id, &id);
    if (st != DB_OK) {
        free(options);
        return api_reply_db(req, st, st == DB_CONFLICT || st == DB_INVALID ? "name" : NULL);
    }
    api_audit(req, "dataset.create",
              "dataset %lld (%s/%s)", (long long)id, http_auth(req)->name, name);
    char dir[4096];
    DbDataset info;
    memset(&info, 0, sizeof info);
    int status = 0;
    char where[64] = "";
    if (db_dataset_dir(api->db, id, dir, sizeof dir) != DB_OK) status = 503;
    for (int i = 0; !status && i < nroles; i++) {
        const char *url = json_string_value(json_object_get(urls, roles[i]));
        DbDatasetFile *f = &info.files[info.num_files++];
        snprintf(f->role, sizeof f->role, "%s", roles[i]);
        /* the URL's last path segment, query cut off, as the file's name */
        char base[256];
        const char *slash = strrchr(url, '/');
        snprintf(base, sizeof base, "%s", slash ? slash + 1 : "");
        base[strcspn(base, "?#")] = '\0';
        dataset_ingest_file_name(roles[i], base, f->name, sizeof f->name);
        for (int k = 0; k < i; k++)
            if (!strcmp(info.files[k].name, f->name)) snprintf(f->name, sizeof f->name, "%s", roles[i]);
        char file_path[4096 + 160];
        snprintf(file_path, sizeof file_path, "%s/%s", dir, f->name);
        snprintf(where, sizeof where, "urls.%s", roles[i]);
        if (fetch(url, file_path, api->import_max, api->import_timeout_s, f, &status) != 0) {
            error_prefix("%s: %.200s", where, url);
            break;
        }
    }
    bool bad_data = false;
    if (!status) {
        where[0] = '\0';
        if (dataset_ingest_finish(api->db, id, format, options, &info, &bad_data) != 0)
            status = bad_data ? 422 : 503;
    }
    free(options);
    if (status) {
        char msg[ERROR_MAX];
        snprintf(msg, sizeof msg, "%s", error_get());
        db_dataset_delete(api->db, id);
        const char *code = status == 413 ? "too_large" : status == 503 ? "unavailable"
                         : bad_data ? "invalid_dataset" : "import_failed";
        return http_reply_error(req, status, code, where, "%s", msg);
    }
    DbDataset ds;
    if ((st = db_dataset_get(api->db, id, &ds)) != DB_OK) return api_reply_db(req, st, NULL);
    json_t *out = dataset_json(&ds);
    db_dataset_clear(&ds);
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)id);
    http_reply_json(req, 201, out);
    http_reply_header(req, "Location", path);
    return 0;
}
