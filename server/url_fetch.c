/* url_fetch.c - one URL into one file, the address of every connection
 * checked; see url_fetch.h. */
#include "server/url_fetch.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "server/log.h"
#include "storage/sha256.h"

#define URL_FETCH_MAX_REDIRECTS 5L
#define URL_FETCH_CONNECT_TIMEOUT_S 10L
#define URL_FETCH_LOW_SPEED_BYTES 1024L /* a second, */
#define URL_FETCH_LOW_SPEED_S 60L       /* averaged over this long */
#define URL_SHOWN_MAX 256               /* bytes of a URL as errors show it */

/* What a refused address reads as, after "<url> ". */
#define REFUSAL "resolves to %s, %s; the daemon refuses private addresses " \
                "(serve --import-allow-private)"

typedef struct {
    const char *url;
    char shown[URL_SHOWN_MAX]; /* url as errors say it (url_fetch_shown) */
    const UrlFetchOptions *o;
    FILE *f;
    Sha256 sha;
    int64_t bytes;
    bool too_large, write_failed;
    int write_errno;
    /* the first connection the policy refused */
    bool refused;
    AddrClass refused_class;
    char refused_addr[INET6_ADDRSTRLEN + 32];
    UrlFetchResult result; /* set once the transfer has ended */
} Fetch;

/* The URL cut as its text reads: no user:password@, the query "?...",
 * no fragment; the host as the user wrote it ("2130706433"). Text that is
 * no URL (parsed false) loses everything up to its last '@' before any
 * '?' or '#', for its credentials may lie past a slash there
 * ("http:/u:secret@ho st/x"); its "scheme://" is kept where no '@' is in
 * it. */
static void shown_as_text(const char *url, bool parsed, char *out, size_t size) {
    const char *scheme = strstr(url, "://");
    const char *host = scheme ? scheme + 3 : url;
    const char *end = host + strcspn(host, "/?#"), *at = NULL;
    if (!parsed) {
        end = url + strcspn(url, "?#");
        if (scheme && (scheme >= end || memchr(url, '@', (size_t)(scheme - url))))
            scheme = NULL;
        host = scheme ? scheme + 3 : url;
    }
    for (const char *p = host; p < end; p++)
        if (*p == '@') at = p;
    const char *rest = at ? at + 1 : host;
    size_t path = strcspn(rest, "?#");
    snprintf(out, size, "%.*s%.*s%s", (int)(host - url), url, (int)path, rest,
             rest[path] == '?' ? "?..." : "");
}

/* A URL in which libcurl reads credentials is shown as libcurl rebuilds
 * it without them, for its text may hide them from a cut by the text
 * ("http:/u:p@host" is a URL to libcurl, with a password); any other as
 * its text reads. */
void url_fetch_shown(const char *url, char *out, size_t size) {
    CURLU *u = curl_url();
    char *part = NULL, *shown = NULL;
    bool credentials = false, parsed = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK;
    if (parsed) {
        static const CURLUPart parts[] = {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++, curl_free(part), part = NULL)
            credentials |= curl_url_get(u, parts[i], &part, 0) == CURLUE_OK;
    }
    if (credentials) {
        bool has_query = curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK;
        if (curl_url_set(u, CURLUPART_USER, NULL, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_OPTIONS, NULL, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_QUERY, has_query ? "..." : NULL, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_URL, &shown, 0) != CURLUE_OK)
            shown = NULL;
    }
    if (shown) snprintf(out, size, "%s", shown);
    else if (credentials) snprintf(out, size, "%s", "(a URL with credentials)");
    else if (u) shown_as_text(url, parsed, out, size);
    else snprintf(out, size, "%s", "(a URL: out of memory)");
    curl_free(part);
    curl_free(shown);
    curl_url_cleanup(u);
}

/* url_fetch_shown into buf, for a refusal's message. */
static const char *shown_in(const char *url, char buf[static URL_SHOWN_MAX]) {
    url_fetch_shown(url, buf, URL_SHOWN_MAX);
    return buf;
}

int url_fetch_check(const char *url, const AddrPolicy *policy) {
    CURLU *u = curl_url();
    if (!u) return error_set("out of memory");
    char *scheme = NULL, *host = NULL;
    struct sockaddr_storage ss;
    AddrClass cls;
    char text[INET6_ADDRSTRLEN + 32], shown[URL_SHOWN_MAX]; /* the URL as a refusal names it */
    int rc = 0;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK)
        rc = error_set("'%.120s' is not a URL: %s", shown_in(url, shown), curl_url_strerror(uc));
    else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0))
        rc = error_set("only http:// and https:// URLs are imported, not '%.120s'",
                       shown_in(url, shown));
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
        rc = error_set("%.120s has no host", shown_in(url, shown));
    else if (addr_parse(host, &ss) && !addr_policy_allows(policy, (struct sockaddr *)&ss, &cls)) {
        addr_format((struct sockaddr *)&ss, text, sizeof text);
        rc = error_set("%.90s " REFUSAL, shown_in(url, shown), text, addr_class_name(cls));
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* CURLOPT_OPENSOCKETFUNCTION: the socket of a connection about to be made
 * to address, or CURL_SOCKET_BAD when the policy refuses the address (curl
 * then tries the name's next address, and fails when none is left). */
static curl_socket_t open_socket(void *ctx, curlsocktype purpose, struct curl_sockaddr *address) {
    Fetch *f = ctx;
    const struct sockaddr *sa = &address->addr;
    AddrClass cls;
    if (purpose != CURLSOCKTYPE_IPCXN || !addr_policy_allows(f->o->policy, sa, &cls)) {
        if (!f->refused) { /* the first of a hop's */
            f->refused = true;
            f->refused_class = purpose == CURLSOCKTYPE_IPCXN ? cls : ADDR_RESERVED;
            addr_format(sa, f->refused_addr, sizeof f->refused_addr);
        }
        return CURL_SOCKET_BAD;
    }
    f->refused = false; /* an address this hop may use: not the one to blame */
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx) {
    Fetch *f = ctx;
    size_t n = size * nmemb;
    if (f->bytes + (int64_t)n > f->o->max_bytes) {
        f->too_large = true;
        return 0; /* aborts the transfer */
    }
    if (fwrite(data, 1, n, f->f) != n) {
        f->write_failed = true;
        f->write_errno = errno;
        return 0;
    }
    sha256_update(&f->sha, data, n);
    f->bytes += (int64_t)n;
    return n;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    Fetch *f = ctx;
    return f->o->progress ? f->o->progress(f->o->ctx, f->bytes, (int64_t)dltotal) : 0;
}

static void set_options(CURL *c, Fetch *f, char *curl_err) {
    curl_easy_setopt(c, CURLOPT_URL, f->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, URL_FETCH_MAX_REDIRECTS);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* no proxy from the environment */
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, f);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, URL_FETCH_CONNECT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)f->o->timeout_s);
    /* a server that trickles would hold an import thread for the whole
     * timeout, and a user's few could hold them all */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, URL_FETCH_LOW_SPEED_BYTES);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, URL_FETCH_LOW_SPEED_S);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->o->max_bytes);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* we are one thread among many */
    curl_easy_setopt(c, CURLOPT_USERAGENT, "traind");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, f);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
}

/* The error of a transfer that ended with rc, and its result. */
static int transfer_error(Fetch *f, CURL *c, CURLcode rc, const char *curl_err) {
    const char *effective = NULL;
    char at[URL_SHOWN_MAX] = "";
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &effective);
    if (effective) url_fetch_shown(effective, at, sizeof at);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    f->result = URL_FETCH_REMOTE;
    if (f->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        f->result = URL_FETCH_TOO_LARGE;
        return error_set("%.120s: the file is over the import limit of %lld bytes", f->shown,
                         (long long)f->o->max_bytes);
    }
    if (f->write_failed) {
        f->result = URL_FETCH_LOCAL;
        error_set("%.120s: writing the file failed: %s", f->shown, strerror(f->write_errno));
        return error_set_errno(f->write_errno); /* ENOSPC: the importer says the disk is full */
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        f->result = URL_FETCH_CANCELLED;
        return error_set("%.120s: cancelled", f->shown);
    }
    /* URLs are cut (here and above) so that the sentence fits the 255
     * bytes of a dataset's error; a refusal is the error only where no
     * address was left to connect to and none allowed was tried since (a
     * name's other address may have answered, 404 say, or refused the
     * connection itself) */
    if (rc != CURLE_COULDNT_CONNECT) f->refused = false;
    if (f->refused && at[0] && strcmp(at, f->shown) != 0)
        return error_set("a redirect to %.80s, which " REFUSAL, at, f->refused_addr,
                         addr_class_name(f->refused_class));
    if (f->refused)
        return error_set("%.90s " REFUSAL, f->shown, f->refused_addr,
                         addr_class_name(f->refused_class));
    if (rc == CURLE_HTTP_RETURNED_ERROR)
        return error_set("%.120s: HTTP %ld from the server", at[0] ? at : f->shown, code);
    if (rc == CURLE_OUT_OF_MEMORY || rc == CURLE_FAILED_INIT) f->result = URL_FETCH_LOCAL;
    return error_set("%.120s: %s", f->shown, curl_err[0] ? curl_err : curl_easy_strerror(rc));
}

/* durable_write's writer: the transfer into the temporary file. */
static int transfer(FILE *out, const char *tmp, void *ctx) {
    Fetch *f = ctx;
    f->f = out;
    CURL *c = curl_easy_init();
    if (!c) {
        f->result = URL_FETCH_LOCAL;
        return error_set("%.120s: cannot start libcurl", f->shown);
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    set_options(c, f, curl_err);
    CURLcode rc = curl_easy_perform(c);
    int ret = rc == CURLE_OK ? 0 : transfer_error(f, c, rc, curl_err);
    curl_easy_cleanup(c);
    return ret;
}

UrlFetchResult url_fetch(const char *url, const char *path, const UrlFetchOptions *o,
                         int64_t *bytes, char *sha256) {
    Fetch f = {.url = url, .o = o, .result = URL_FETCH_OK};
    url_fetch_shown(url, f.shown, sizeof f.shown);
    sha256_init(&f.sha);
    char message[ERROR_MAX];
    if (durable_write(path, 0644, transfer, &f) == 0) {
        *bytes = f.bytes;
        sha256_final_hex(&f.sha, sha256);
        return URL_FETCH_OK;
    }
    if (f.result != URL_FETCH_OK) {
        /* the transfer's own error, without durable_write's prefix (the path) */
        snprintf(message, sizeof message, "%s", error_get());
        size_t n = strlen(path);
        bool prefixed = strncmp(message, path, n) == 0 && message[n] == ':' && message[n + 1];
        int err = error_last()->sys_errno;
        error_set("%s", prefixed ? message + n + 2 : message);
        error_set_errno(err);
        return f.result;
    }
    /* the disk: the whole error goes to the log, the client learns less */
    log_message("import", "%s: %s", f.shown, error_get());
    int err = error_last()->sys_errno;
    error_set("%.120s: the daemon could not store the file (its log says why)", f.shown);
    error_set_errno(err);
    return URL_FETCH_LOCAL;
}
