/* url_fetch.h - one URL into one file with libcurl, for URL imports.
 *
 * Only http and https, also across redirects (at most 5); no proxy (the
 * environment's http_proxy is ignored: the address checked must be the
 * one connected to); a connect timeout of 10 s and a whole-transfer
 * timeout; a size limit, checked against Content-Length and again while
 * the bytes arrive. Every connection, the first and each redirect's, is
 * opened only to an address the AddrPolicy allows (server/addr_policy.h),
 * checked after DNS on the very address connect(2) gets.
 *
 * The file is written as core/io/durable.h writes: a temporary name,
 * fsynced, renamed, so a file of the dataset's directory is whole or
 * absent. The progress callback runs as bytes arrive and at least once a
 * second while nothing moves (libcurl's progress meter), so a transfer is
 * cancelled within a second of asking.
 */
#ifndef TRAIND_SERVER_URL_FETCH_H
#define TRAIND_SERVER_URL_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "server/addr_policy.h"

typedef enum {
    URL_FETCH_OK,
    URL_FETCH_REMOTE,    /* the server, the network, or a refused address */
    URL_FETCH_TOO_LARGE, /* over max_bytes */
    URL_FETCH_LOCAL,     /* our side: the disk, memory, libcurl itself */
    URL_FETCH_CANCELLED, /* progress said stop */
} UrlFetchResult;

typedef struct {
    const AddrPolicy *policy;
    int64_t max_bytes; /* per file */
    int timeout_s;     /* the whole transfer */
    /* bytes so far and the expected size (0: not known yet); non-zero
     * cancels the transfer. May be NULL. */
    int (*progress)(void *ctx, int64_t got, int64_t expected);
    void *ctx;
} UrlFetchOptions;

/* Whether url may be imported at all, before anything is fetched: an
 * http:// or https:// URL with a host, and, when the host is a numeric
 * address, one the policy allows. 0, or -1 with an error ("http://10.0.0.1/x
 * resolves to 10.0.0.1, a private address; the daemon refuses private
 * addresses (serve --import-allow-private)"). */
int url_fetch_check(const char *url, const AddrPolicy *policy);

/* url as errors and the log show it: without a user:password@ and with a
 * query cut to "?..." (a presigned URL's signature), for a shared
 * dataset's error is every user's to read. */
void url_fetch_shown(const char *url, char *out, size_t size);

/* Fetches url into path. URL_FETCH_OK with its size in *bytes and sha256
 * (65 bytes, hex); else the result and an error that names the URL (as
 * url_fetch_shown) but not path (the data dir is none of a client's
 * business). A transfer slower than 1 KB/s for 60 s is cut, as one past
 * the timeout. */
UrlFetchResult url_fetch(const char *url, const char *path, const UrlFetchOptions *o,
                         int64_t *bytes, char *sha256);

#endif
