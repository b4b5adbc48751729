/* dataset_upload.c - POST /v1/datasets as multipart/form-data, streamed.
 *
 *   curl -H "Authorization: Bearer $T" -F name=mnist-test -F format=idx \
 *        -F images=@t10k-images-idx3-ubyte.gz -F labels=@t10k-labels-idx1-ubyte.gz \
 *        http://127.0.0.1:8080/v1/datasets
 *
 * Fields: name, format (idx | csv | npy | tokens | text | imagefolder |
 * cifar10), label_column and feature_columns (csv, optional;
 * feature_columns comma separated), grayscale (imagefolder, true | false),
 * shared (true | false, default false: whether every user may read and
 * train on it), then the files: images + labels (idx), file (csv, tokens,
 * text), inputs + targets (npy), archive (imagefolder: a .tar, .tar.gz or
 * .zip of class folders, extracted safely at the end,
 * server/dataset_archive.h), file one or more times (cifar10's batches, in
 * order). A tokens file is a .bin of uint16 token ids (raw or llm.c's); a
 * text file is UTF-8, its character vocabulary kept in the dataset's
 * options ("vocab"); both count tokens as their samples, and a job cuts
 * them into windows ({"name": ..., "block_size": ..., "split": "train" |
 * "val"}, core/data/dataset.h). The
 * fields must come before the files (curl -F and HTML forms send parts in
 * order): the row is inserted, state `uploading`, when the first file
 * starts, so a taken name (409) or a bad one (422) is refused before any
 * data is stored. The dataset is the uploader's: names are per user (a name
 * another user has is free; the uploader's own is 409).
 *
 * The uploader's dataset-byte quota (server/quota.h): a body whose
 * Content-Length, less UPLOAD_FORM_SLACK for the form around the files,
 * would pass it is refused (429) before a byte is read; without a
 * Content-Length, or when the files come to more than it let through, the
 * upload is refused as soon as the bytes stored would pass it, its files
 * and row removed at once. The bytes stored count in the owner's holdings
 * as they come (every half second, refresh_quota), so that two uploads (or
 * an upload and an import) that each fit but not together stop as their
 * bytes meet; dataset_ingest_finish looks again as it makes the dataset
 * ready, so that two that each fit but not together cannot both be kept.
 *
 * Each file part is written to <data-dir>/datasets/<id>/<name> as its bytes
 * arrive and hashed on the way (sha256); nothing of it is held in memory.
 * At the end the files are fsynced and loaded with core/data (magic
 * numbers, counts, shapes) and only then is the dataset `ready` and listed
 * (until then its `uploading` row marks them as temporary: a daemon
 * restarted removes such datasets). That check runs
 * on a thread of the ingest pool (server/ingest_pool.h), not the HTTP
 * thread, and the reply comes when it is done (http_reply_later). An
 * invalid file, a body cut short, or a client that goes away before the
 * check of its files begins leaves nothing behind: the last of the request
 * and the check to let go of the upload deletes the files and the row of
 * one not made ready. (A client gone while the check runs finds its
 * dataset ready, recorded in the audit trail.)
 *
 * A full disk is 507 `insufficient_storage`, naming the dataset and the
 * space left: at once when the body's Content-Length holds more file bytes
 * than the data dir's disk has free, else when a write fails (ENOSPC), its
 * files and row removed there and then, so that the space is free again
 * before the reply goes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/io/durable.h"
#include "server/api.h"
#include "server/dataset_ingest.h"
#include "server/disk_space.h"
#include "server/ingest_pool.h"
#include "server/log.h"
#include "server/multipart.h"
#include "server/quota_text.h"
#include "server/stream_auth.h"
#include "storage/sha256.h"

#define UPLOAD_FIELD_MAX 1024
/* What of a body is not file content, at most, for the quota's look at
 * Content-Length: the plain fields (each under UPLOAD_FIELD_MAX), the
 * parts' headers and boundaries. A body within this of the quota is let in
 * and counted as it is stored. */
#define UPLOAD_FORM_SLACK (64 * 1024)
#define UPLOAD_QUOTA_REFRESH_S 0.5

typedef struct {
    Api *api;
    int64_t owner;
    Multipart *mp;
    char name[UPLOAD_FIELD_MAX], format[UPLOAD_FIELD_MAX];
    char label_column[UPLOAD_FIELD_MAX], feature_columns[UPLOAD_FIELD_MAX];
    char shared[UPLOAD_FIELD_MAX], grayscale[UPLOAD_FIELD_MAX];
    char *field; /* the plain field in progress (one of the above), NULL for none */
    char field_name[32];
    size_t field_len;

    int64_t id; /* the row, once the first file starts */
    bool ready;
    char dir[4096];
    int fd;         /* the file in progress, -1 for none */
    int file_index; /* into info.files */
    Sha256 sha;
    DbDataset info;
    ApiQuota quota; /* the uploader's dataset bytes, as of quota_at: held, less this one's */
    double quota_at; /* clock_now_s of the last refresh_quota, 0 for none */
    int64_t stored;  /* bytes of files written, all files */

    ApiPendingError err; /* the first error, replied by data() or the handler */
    StreamAuth auth;     /* the uploader's token, asked again as the body comes */

    /* the check of the files (ingest), on a pool thread */
    atomic_int refs;        /* the request's, and the check's while it runs */
    atomic_bool abandoned;  /* the request ended without its reply: a check not begun is not */
    atomic_bool checked;    /* result and error are written */
    DatasetIngestResult result;
    Error error;            /* the check's (errors are per thread) */
    char *options;          /* the stored options the check takes */
    char actor[DB_USER_NAME_MAX + 1];
    const char *why;        /* why the request let go of it, for discard's log */
} Upload;

/* Closes the file in progress and removes the files and row of an upload
 * that will not be made ready: a refused one, or one that went away. */
static void discard(Upload *u, const char *why) {
    if (u->fd >= 0) close(u->fd);
    u->fd = -1;
    if (!u->id || u->ready) return;
    if (db_dataset_delete(u->api->db, u->id, NULL, 0) != DB_OK)
        log_message("upload", "dataset %lld: cannot remove a failed upload: %s",
                    (long long)u->id, error_get());
    else
        log_message("upload", "dataset %lld ('%s'): upload %s; its files and row removed",
                    (long long)u->id, u->name, why);
    u->id = 0;
}

/* A file of the upload that could not be created, written or closed (err:
 * the errno). A full disk discards the upload at once, so that the reply
 * says what is free with its files gone. Returns -1. */
static int fail_file(Upload *u, const DbDatasetFile *f, const char *what, int err) {
    if (api_storage_status(err) != 507)
        return api_pending_error(&u->err, 503, "unavailable", f->role, "cannot %s %s: %s", what, f->name,
                    strerror(err));
    char name[sizeof f->name], role[sizeof f->role], got[32], left[96];
    snprintf(name, sizeof name, "%s", f->name);
    snprintf(role, sizeof role, "%s", f->role);
    quota_text_bytes(f->bytes, got, sizeof got);
    discard(u, "out of disk space");
    return api_pending_error(&u->err, 507, "insufficient_storage", role,
                "dataset '%s': the disk is full (%s) after %s of %s: %s; nothing of the upload "
                "was kept", u->name, strerror(err), got, name,
                disk_space_left(db_data_dir(u->api->db), left, sizeof left));
}

/* "true" or "false" (also 1, 0, or "" for false) of the form's `shared`
 * and `grayscale`. */
static int parse_flag(const char *s, bool *out) {
    *out = !strcmp(s, "true") || !strcmp(s, "1");
    return *out || !*s || !strcmp(s, "false") || !strcmp(s, "0") ? 0 : -1;
}

/* Closes the file in progress and records its size and hash. */
static int close_file(Upload *u) {
    if (u->fd < 0) return 0;
    DbDatasetFile *f = &u->info.files[u->file_index];
    sha256_final_hex(&u->sha, f->sha256);
    int rc = close(u->fd);
    u->fd = -1;
    return rc == 0 ? 0 : fail_file(u, f, "write", errno);
}

/* The row, state `uploading`, in the uploader's namespace; shared from
 * the start when the form says so (others see it once it is ready). */
static int insert_row(Upload *u) {
    bool shared, grayscale;
    if (parse_flag(u->shared, &shared) != 0)
        return api_pending_error(&u->err, 400, "bad_request", "shared", "field 'shared': expected true or false, "
                                                     "got '%.64s'", u->shared);
    if (parse_flag(u->grayscale, &grayscale) != 0)
        return api_pending_error(&u->err, 400, "bad_request", "grayscale", "field 'grayscale': expected true or "
                                                        "false, got '%.64s'", u->grayscale);
    char *options = dataset_ingest_options(u->label_column, u->feature_columns, grayscale);
    if (!options) return api_pending_error(&u->err, 503, "unavailable", "", "out of memory");
    error_clear();
    int st = db_dataset_insert(u->api->db, u->name, u->format, options, u->owner, &u->id);
    free(options);
    if (st == DB_CONFLICT) return api_pending_error(&u->err, 409, "conflict", "name", "%s", error_get());
    if (st == DB_INVALID) return api_pending_error(&u->err, 422, "invalid", "name", "%s", error_get());
    int status = api_storage_status(0);
    if (st != DB_OK) return api_pending_error(&u->err, status, api_storage_code(status), "", "%s", error_get());
    if ((shared && db_dataset_set_shared(u->api->db, u->id, true) != DB_OK) ||
        db_dataset_dir(u->api->db, u->id, u->dir, sizeof u->dir) != DB_OK) {
        status = api_storage_status(0);
        return api_pending_error(&u->err, status, api_storage_code(status), "", "%s", error_get());
    }
    return 0;
}

static int start_file(Upload *u, const char *role, const char *filename) {
    int n = 0;
    const char *const *roles = dataset_ingest_roles(u->format, &n);
    if (!roles)
        return api_pending_error(&u->err, 422, "invalid", "format", "unknown format '%.32s' (known: %s)", u->format,
                    DATASET_INGEST_FORMATS);
    if (!dataset_ingest_role_ok(u->format, role)) {
        return api_pending_error(&u->err, 422, "invalid", role, "format %s takes the files %s%s%s, not '%.64s'",
                    u->format, roles[0], n > 1 ? " and " : "", n > 1 ? roles[1] : "", role);
    }
    for (int i = 0; i < u->info.num_files && !dataset_ingest_role_repeats(u->format, role); i++)
        if (!strcmp(u->info.files[i].role, role))
            return api_pending_error(&u->err, 422, "invalid", role, "file '%s' sent twice", role);
    if (u->id == 0 && insert_row(u) != 0) return -1;
    DbDatasetFile *f = &u->info.files[u->info.num_files];
    memset(f, 0, sizeof *f);
    snprintf(f->role, sizeof f->role, "%s", role);
    dataset_ingest_file_name(u->info.files, u->info.num_files, role, filename, f->name,
                             sizeof f->name);
    u->file_index = u->info.num_files++;
    char path[4096 + 160];
    snprintf(path, sizeof path, "%s/%s", u->dir, f->name);
    u->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (u->fd < 0) return fail_file(u, f, "create", errno);
    sha256_init(&u->sha);
    return 0;
}

/* Every UPLOAD_QUOTA_REFRESH_S while the body comes: the bytes stored so
 * far put on the row, where the owner's other uploads and imports count
 * them (db_user_holdings), and the holdings read again, less them, so that
 * this one counts theirs. Two uploads that each fit, not together, then
 * stop as their bytes meet, not when each ends. A failing database keeps
 * the last look: the check at the end weighs the dataset again. */
static void refresh_quota(Upload *u) {
    u->quota_at = clock_now_s();
    ApiQuota now;
    if (db_dataset_upload_progress(u->api->db, u->id, u->stored) != DB_OK ||
        api_quota_read(u->api, u->owner, QUOTA_DATASET_BYTES, &now) != DB_OK) {
        error_clear();
        return;
    }
    now.held -= u->stored;
    u->quota = now;
}

static int write_file(Upload *u, const char *data, size_t size) {
    DbDatasetFile *f = &u->info.files[u->file_index];
    char msg[256];
    if (clock_now_s() - u->quota_at >= UPLOAD_QUOTA_REFRESH_S) refresh_quota(u);
    if (!api_quota_fits(&u->quota, u->stored + (int64_t)size, msg, sizeof msg)) {
        discard(u, "over the quota");
        return api_pending_error(&u->err, 429, "quota_exceeded", u->quota.path,
                    "the upload was stopped as its files reached %lld bytes: %s",
                    (long long)(u->stored + (int64_t)size), msg);
    }
    sha256_update(&u->sha, data, size);
    while (size > 0) {
        ssize_t w = write(u->fd, data, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return fail_file(u, f, "write", w < 0 ? errno : EIO);
        data += w;
        size -= (size_t)w;
        u->stored += (int64_t)w;
        f->bytes += (int64_t)w;
    }
    return 0;
}

static int start_field(Upload *u, const char *field) {
    if (u->id != 0)
        return api_pending_error(&u->err, 400, "bad_request", field,
                    "field '%.64s' came after a file; send name, format and the other fields "
                    "before the files", field);
    char *dst = !strcmp(field, "name") ? u->name
              : !strcmp(field, "format") ? u->format
              : !strcmp(field, "label_column") ? u->label_column
              : !strcmp(field, "feature_columns") ? u->feature_columns
              : !strcmp(field, "shared") ? u->shared
              : !strcmp(field, "grayscale") ? u->grayscale
              : NULL;
    if (!dst)
        return api_pending_error(&u->err, 400, "bad_request", field,
                    "unknown field '%.64s' (fields: name, format, label_column, feature_columns, "
                    "grayscale, shared, and the files)", field);
    if (*dst) return api_pending_error(&u->err, 400, "bad_request", field, "field '%s' sent twice", field);
    u->field = dst;
    u->field_len = 0;
    snprintf(u->field_name, sizeof u->field_name, "%s", field);
    return 0;
}

static int on_part(void *ctx, const char *field, const char *filename, bool first, const char *data,
                   size_t size) {
    Upload *u = ctx;
    if (u->err.status) return -1;
    if (first) {
        u->field = NULL;
        if (close_file(u) != 0) return -1;
        if (filename) {
            if (!u->name[0])
                return api_pending_error(&u->err, 400, "bad_request", "name",
                            "field 'name' is missing (it must come before the files)");
            if (!u->format[0])
                return api_pending_error(&u->err, 400, "bad_request", "format",
                            "field 'format' is missing (it must come before the files)");
            if (u->info.num_files >= DB_DATASET_MAX_FILES)
                return api_pending_error(&u->err, 422, "invalid", field, "too many files");
            if (start_file(u, field, filename) != 0) return -1;
        } else if (start_field(u, field) != 0) {
            return -1;
        }
    }
    if (u->fd >= 0) return size ? write_file(u, data, size) : 0;
    if (!u->field) return 0;
    if (u->field_len + size >= UPLOAD_FIELD_MAX)
        return api_pending_error(&u->err, 413, "too_large", u->field_name, "field '%s' is over %d bytes",
                    u->field_name, UPLOAD_FIELD_MAX - 1);
    memcpy(u->field + u->field_len, data, size);
    u->field_len += size;
    u->field[u->field_len] = '\0';
    /* the format is known once its part ends; check it when the first
     * file starts (start_file), where the roles need it */
    return 0;
}

/* The bytes of files a body holds at least, from its Content-Length (0
 * without one); *declared gets the Content-Length. */
static long long declared_files(HttpRequest *req, long long *declared) {
    const char *cl = http_header(req, "Content-Length");
    *declared = cl ? strtoll(cl, NULL, 10) : 0;
    return *declared > UPLOAD_FORM_SLACK ? *declared - UPLOAD_FORM_SLACK : 0;
}

/* The quota, and the free space of the data dir's disk, against the body's
 * Content-Length, when it has one: 0, or -1 after replying 429 or 507.
 * The space is a first look (others may write meanwhile): each write is
 * checked too. */
static int declared_fits(HttpRequest *req, const ApiQuota *quota) {
    long long declared, files = declared_files(req, &declared);
    char msg[256], left[96];
    if (!api_quota_fits(quota, files, msg, sizeof msg)) {
        http_reply_error(req, 429, "quota_exceeded", quota->path,
                         "a body of %lld bytes (Content-Length) holds at least %lld bytes of "
                         "files: %s", declared, files, msg);
        return -1;
    }
    const char *dir = db_data_dir(((Api *)http_app(req))->db);
    int64_t free_bytes = disk_space_free(dir);
    if (free_bytes < 0 || files <= free_bytes) return 0;
    http_reply_error(req, 507, "insufficient_storage", "",
                     "a body of %lld bytes (Content-Length) holds at least %lld bytes of files, "
                     "more than the disk has room for: %s; nothing was stored", declared, files,
                     disk_space_left(dir, left, sizeof left));
    return -1;
}

static int upload_begin(HttpRequest *req) {
    const char *ct = http_header(req, "Content-Type");
    if (!ct || http_content_type_is(req, "application/json")) return HTTP_BODY_BUFFER;
    if (!http_content_type_is(req, "multipart/form-data")) {
        http_reply_error(req, 415, "unsupported_media_type", NULL,
                         "POST /v1/datasets takes multipart/form-data (an upload) or "
                         "application/json (an import from URLs), not '%.80s'", ct);
        return -1;
    }
    ApiQuota quota;
    if (api_quota_load(req, QUOTA_DATASET_BYTES, &quota) != 0 || declared_fits(req, &quota) != 0)
        return -1;
    Upload *u = calloc(1, sizeof *u);
    if (!u) {
        http_reply_error(req, 503, "unavailable", NULL, "out of memory");
        return -1;
    }
    u->quota = quota;
    u->api = http_app(req);
    u->owner = http_auth(req)->user_id;
    stream_auth_init(&u->auth, u->api->db, http_auth(req), "/v1/datasets");
    u->fd = -1;
    atomic_init(&u->refs, 1); /* the request's */
    u->mp = multipart_new(http_header(req, "Content-Type"), on_part, u);
    if (!u->mp) {
        free(u);
        http_reply_error(req, 400, "bad_request", NULL,
                         "multipart/form-data without a valid boundary, or out of memory");
        return -1;
    }
    http_set_state(req, u);
    return HTTP_BODY_STREAM;
}

/* The uploader's token stopped working (revoked, or replaced) while the
 * body came: as a stream's, the upload ends there, nothing of it kept. */
static int token_lost(Upload *u) {
    char why[ERROR_MAX];
    snprintf(why, sizeof why, "%s", error_get());
    discard(u, "ended: its token stopped working");
    return api_pending_error(&u->err, 401, "unauthorized", "", "%s; nothing of the upload was kept",
                             why);
}

static int upload_data(HttpRequest *req, const char *data, size_t size) {
    Upload *u = http_state(req);
    if (stream_auth_revoked(&u->auth, false)) token_lost(u);
    else if (multipart_feed(u->mp, data, size) == 0 && !u->err.status) return 0;
    if (!u->err.status) api_pending_error(&u->err, 400, "bad_request", "", "malformed multipart/form-data body");
    api_reply_pending(req, &u->err);
    return -1;
}

static void upload_release(Upload *u);

/* The files, then their directory and its entry, on the disk before the
 * dataset is made ready: a power cut after the reply must not leave a
 * ready dataset of empty or short files. Here, on the ingest pool's
 * thread, not as each file closes on the HTTP thread, whose every
 * connection would wait for gigabytes to reach the disk. */
static int sync_files(const Upload *u) {
    char path[4096 + 160];
    if (u->info.num_files == 0) return 0; /* refused before: each format has files */
    for (int i = 0; i < u->info.num_files; i++) {
        snprintf(path, sizeof path, "%s/%s", u->dir, u->info.files[i].name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int rc = fd >= 0 ? fsync(fd) : -1;
        int err = errno;
        if (fd >= 0) close(fd);
        if (rc != 0) return error_sys(err, "dataset '%s': fsync of %s", u->name, path);
    }
    return durable_sync_dir(u->dir) == 0 && durable_sync_parent(u->dir) == 0 ? 0 : -1;
}

/* The ingest pool's task: the files synced and checked and the dataset made ready,
 * its result and error kept for the reply; recorded in the audit trail
 * whether or not the client is still there for the reply. */
static void check_files(void *ctx, bool cancelled) {
    Upload *u = ctx;
    if (cancelled || atomic_load(&u->abandoned)) {
        error_set("dataset '%s': %s before its files were checked", u->name,
                  cancelled ? "the daemon stopped" : "the client went away");
        u->result = DATASET_INGEST_STORAGE;
    } else if (sync_files(u) != 0) {
        u->result = DATASET_INGEST_STORAGE;
    } else {
        DatasetIngest in = {.db = u->api->db, .quota_defaults = &u->api->quota_defaults,
                            .id = u->id, .owner = u->owner, .format = u->format,
                            .options_json = u->options};
        u->result = dataset_ingest_finish(&in, &u->info);
    }
    u->error = *error_last();
    u->ready = u->result == DATASET_INGEST_OK;
    if (u->ready) {
        char target[160];
        snprintf(target, sizeof target, "dataset %lld (%.64s/%.64s)", (long long)u->id, u->actor,
                 u->name);
        if (db_audit_add(u->api->db, u->actor, "dataset.create", target, NULL) != DB_OK)
            log_message("audit", "dataset.create %s by %s: not written to the audit trail: %s",
                        target, u->actor, error_get());
    }
    atomic_store(&u->checked, true);
    upload_release(u);
}

/* The reply to a checked upload: 201 with the dataset, or what was wrong. */
static int reply_checked(HttpRequest *req, Upload *u) {
    error_restore(&u->error);
    DatasetIngestResult r = u->result;
    if (r == DATASET_INGEST_BAD_DATA)
        return http_reply_error(req, 422, "invalid_dataset", "", "%s", error_get());
    if (r == DATASET_INGEST_OVER_QUOTA) /* another upload of the user's was made ready meanwhile */
        return http_reply_error(req, 429, "quota_exceeded", error_last()->path, "%s",
                                error_get());
    if (r != DATASET_INGEST_OK) {
        int status = api_storage_status(0);
        return http_reply_error(req, status, api_storage_code(status), "", "%s", error_get());
    }
    DbDataset ds;
    if (db_dataset_get(u->api->db, u->id, &ds) != DB_OK) return api_reply_db(req, DB_ERROR, NULL);
    json_t *body = dataset_json(&ds);
    db_dataset_clear(&ds);
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/datasets/%lld", (long long)u->id);
    http_reply_json(req, 201, body);
    http_reply_header(req, "Location", loc);
    return 0;
}

/* http_reply_later's question: 1 once the files are checked (replied). */
static int checked(HttpRequest *req) {
    Upload *u = http_state(req);
    if (!atomic_load(&u->checked)) return 0;
    reply_checked(req, u);
    return 1;
}

int dataset_upload_finish(HttpRequest *req) {
    Upload *u = http_state(req);
    int complete = multipart_end(u->mp);
    u->mp = NULL;
    if (u->err.status) return api_reply_pending(req, &u->err);
    if (close_file(u) != 0) return api_reply_pending(req, &u->err);
    if (stream_auth_revoked(&u->auth, true)) {
        token_lost(u);
        return api_reply_pending(req, &u->err);
    }
    refresh_quota(u); /* all its bytes on its row while it is checked */
    if (complete != 0)
        return http_reply_error(req, 400, "bad_request", "",
                                "the multipart body is cut short or malformed (no closing "
                                "boundary)");
    if (!u->name[0]) return http_reply_error(req, 400, "bad_request", "name", "field 'name' is missing");
    if (!u->format[0])
        return http_reply_error(req, 400, "bad_request", "format", "field 'format' is missing");
    if (db_dataset_name_check(u->name) != DB_OK)
        return http_reply_error(req, 422, "invalid", "name", "%s", error_get());
    int n = 0;
    const char *const *roles = dataset_ingest_roles(u->format, &n);
    if (!roles)
        return http_reply_error(req, 422, "invalid", "format", "unknown format '%.32s' (known: %s)",
                                u->format, DATASET_INGEST_FORMATS);
    for (int i = 0; i < n; i++) {
        bool have = false;
        for (int k = 0; k < u->info.num_files; k++) have |= !strcmp(u->info.files[k].role, roles[i]);
        if (!have)
            return http_reply_error(req, 422, "invalid", roles[i], "format %s needs the file '%s'",
                                    u->format, roles[i]);
    }
    bool grayscale = false;
    parse_flag(u->grayscale, &grayscale); /* checked by insert_row */
    u->options = dataset_ingest_options(u->label_column, u->feature_columns, grayscale);
    if (!u->options) return http_reply_error(req, 503, "unavailable", NULL, "out of memory");
    snprintf(u->actor, sizeof u->actor, "%.*s", (int)sizeof u->actor - 1, http_auth(req)->name);
    IngestPool *pool = u->api->ingest;
    atomic_fetch_add(&u->refs, 1); /* the check's */
    if (pool && ingest_pool_run(pool, check_files, u) == 0) {
        if (http_reply_later(req, checked) == 0) return 0;
        atomic_store(&u->abandoned, true); /* replied 503: not to be made ready unseen */
        return -1;
    }
    error_clear();
    check_files(u, false); /* no pool (a test's Api): here */
    return reply_checked(req, u);
}

/* Lets go of the upload: the last of the request and the check removes
 * what was not made ready (an invalid file, a body cut short, a client
 * gone: nothing stays), and frees it. */
static void upload_release(Upload *u) {
    if (atomic_fetch_sub(&u->refs, 1) != 1) return;
    if (u->mp) multipart_end(u->mp);
    discard(u, u->why ? u->why : "refused");
    free(u->options);
    free(u);
}

static void upload_finish(HttpRequest *req, bool completed) {
    Upload *u = http_state(req);
    if (!u) return;
    http_set_state(req, NULL);
    if (!completed && !atomic_load(&u->checked)) {
        u->why = "abandoned";
        atomic_store(&u->abandoned, true);
    }
    upload_release(u);
}

const HttpBodyStream datasets_upload_body = {upload_begin, upload_data, upload_finish};
