/* fuzz_url.c - what a URL import's URL goes through before anything is
 * fetched (server/url_fetch.c: url_fetch_check, url_fetch_shown) and the
 * address policy behind it (server/addr_policy.c), driven from bytes.
 *
 * Input: byte 0's low bit picks the reader; the rest (up to its first NUL)
 * is the text.
 *   0: a URL, as POST /v1/datasets/import takes it. url_fetch_check under
 *      the default policy fails with a message or accepts; url_fetch_shown
 *      fits any buffer, a short one getting a prefix of what a long one
 *      gets. For a URL libcurl parses with a user or a password (what
 *      url_fetch hands libcurl), the shown form, the one errors and the
 *      shared log carry, must parse in libcurl too with neither, the same
 *      host, and no query but "..."; text libcurl refuses is shown with no
 *      '@' before its "?...".
 *   1: a --import-allow-nets list. addr_policy_add_nets fails with a
 *      message naming a byte within the list, or keeps at most
 *      ADDR_POLICY_MAX_NETS networks whose prefixes fit their family, each
 *      allowing its own address.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/addr_policy.h"
#include "server/url_fetch.h"
#include "tests/fuzz/fuzz_support.h"

#define SHOWN_MAX 4096

/* A part of a parsed URL (NULL when it has none), for free(). */
static char *part_of(CURLU *u, CURLUPart part) {
    char *v = NULL;
    if (curl_url_get(u, part, &v, 0) != CURLUE_OK) return NULL;
    char *copy = strdup(v);
    curl_free(v);
    if (!copy) fuzz_fail("out of memory");
    return copy;
}

/* The URL's shown form hides what libcurl would send as credentials. */
static void check_credentials_hidden(const char *url, const char *shown) {
    CURLU *u = curl_url(), *s = curl_url();
    if (!u || !s) fuzz_fail("out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
        char *user = part_of(u, CURLUPART_USER), *password = part_of(u, CURLUPART_PASSWORD);
        char *host = part_of(u, CURLUPART_HOST);
        if (user || password) {
            if (curl_url_set(s, CURLUPART_URL, shown, 0) != CURLUE_OK)
                fuzz_fail("'%s' shown as '%s', which is no URL", url, shown);
            char *suser = part_of(s, CURLUPART_USER), *spassword = part_of(s, CURLUPART_PASSWORD);
            char *shost = part_of(s, CURLUPART_HOST), *squery = part_of(s, CURLUPART_QUERY);
            if (suser || spassword)
                fuzz_fail("'%s' shown as '%s', which still names user '%s' or password '%s'", url,
                          shown, suser ? suser : "", spassword ? spassword : "");
            if (!host || !shost || strcmp(host, shost) != 0)
                fuzz_fail("'%s' (host '%s') shown as '%s' (host '%s')", url, host ? host : "",
                          shown, shost ? shost : "");
            if (squery && strcmp(squery, "...") != 0)
                fuzz_fail("'%s' shown as '%s', with its query", url, shown);
            free(suser), free(spassword), free(shost), free(squery);
        }
        free(user), free(password), free(host);
    }
    curl_url_cleanup(u);
    curl_url_cleanup(s);
}

static void fuzz_url(const char *url) {
    AddrPolicy policy = {0};
    fuzz_begin();
    int rc = url_fetch_check(url, &policy);
    fuzz_end("url_fetch_check", rc != 0);
    if (rc != 0 && rc != -1) fuzz_fail("url_fetch_check returned %d", rc);

    static char shown[SHOWN_MAX], part[SHOWN_MAX];
    url_fetch_shown(url, shown, sizeof shown);
    size_t len = strlen(shown);
    if (len >= sizeof shown) fuzz_fail("shown past its buffer");
    static const size_t sizes[] = {1, 2, 9, 64};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(part, 'x', sizeof part);
        url_fetch_shown(url, part, sizes[i]);
        size_t n = strlen(part);
        if (n >= sizes[i] || strncmp(part, shown, n) != 0 || (n < len && n != sizes[i] - 1))
            fuzz_fail("shown in %zu bytes as '%s', in %zu as '%s'", sizes[i], part, sizeof shown,
                      shown);
    }
    if (len < sizeof shown - 1) check_credentials_hidden(url, shown);
    /* text libcurl refuses keeps no '@' before its query: what a user:
     * password@ there might be is cut wherever it stands */
    CURLU *u = curl_url();
    if (!u) fuzz_fail("out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK && len < sizeof shown - 1) {
        size_t before_query = strcspn(shown, "?");
        if (memchr(shown, '@', before_query))
            fuzz_fail("'%s', no URL to libcurl, shown as '%s', with an '@'", url, shown);
    }
    curl_url_cleanup(u);
}

/* A socket address of the network's own address. */
static struct sockaddr_storage address_of(const AddrNet *net) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (net->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, net->addr, 4);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, net->addr, 16);
    }
    return ss;
}

static void fuzz_nets(const char *list) {
    AddrPolicy policy = {0};
    fuzz_begin();
    int rc = addr_policy_add_nets(&policy, list);
    fuzz_end("addr_policy_add_nets", rc != 0);
    if (rc != 0) {
        size_t at;
        if (sscanf(error_get(), "byte %zu: ", &at) != 1 || at > strlen(list))
            fuzz_fail("'%s' refused without a byte within it: %s", list, error_get());
        return;
    }
    if (policy.num_nets < 1 || policy.num_nets > ADDR_POLICY_MAX_NETS)
        fuzz_fail("'%s' gave %d networks", list, policy.num_nets);
    for (int i = 0; i < policy.num_nets; i++) {
        const AddrNet *net = &policy.nets[i];
        int max = net->family == AF_INET ? 32 : net->family == AF_INET6 ? 128 : -1;
        if (max < 0 || net->prefix < 0 || net->prefix > max)
            fuzz_fail("'%s': network %d of family %d, prefix %d", list, i, net->family,
                      net->prefix);
        struct sockaddr_storage ss = address_of(net);
        if (!addr_policy_allows(&policy, (struct sockaddr *)&ss, NULL))
            fuzz_fail("'%s': network %d does not allow its own address", list, i);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t n = strnlen((const char *)data + 1, size - 1);
    char *text = malloc(n + 1);
    if (!text) fuzz_fail("out of memory copying %zu bytes", n);
    memcpy(text, data + 1, n);
    text[n] = '\0';
    if (data[0] & 1) fuzz_nets(text);
    else fuzz_url(text);
    free(text);
    return 0;
}
