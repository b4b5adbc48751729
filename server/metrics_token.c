/* metrics_token.c - reading and checking --metrics-token-file; see
 * metrics_token.h. */
#include "server/metrics_token.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

#define OPT "--metrics-token-file"

static bool blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int metrics_token_load(const char *path, char *sha256_hex) {
    char buf[METRICS_TOKEN_MAX + 8];
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(OPT " %s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int bad = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (bad) return error_set(OPT " %s: cannot read: %s", path, strerror(bad));
    buf[n] = '\0';
    if (strlen(buf) != n) return error_set(OPT " %s: holds a NUL byte", path);
    char *start = buf, *end = buf + n;
    while (start < end && blank(*start)) start++;
    while (end > start && blank(end[-1])) end--;
    size_t len = (size_t)(end - start);
    if (len == 0) return error_set(OPT " %s: the file is empty (it holds the token)", path);
    if (len > METRICS_TOKEN_MAX)
        return error_set(OPT " %s: the token is over %d bytes", path, METRICS_TOKEN_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)start[i];
        if (c <= ' ' || c >= 127)
            return error_set(OPT " %s: byte %zu of the token (0x%02x) is a blank, a line's end "
                                 "or not printable ASCII; the file holds the token alone, on "
                                 "one line", path, (size_t)(start - buf) + i + 1, c);
    }
    if (len < METRICS_TOKEN_MIN) /* it opens /metrics to whoever guesses it */
        return error_set(OPT " %s: the token is %zu bytes, fewer than %d (openssl rand -hex 32 "
                         "makes one)", path, len, METRICS_TOKEN_MIN);
    sha256_buffer_hex(start, len, sha256_hex);
    return 0;
}

bool metrics_token_matches(const char *sha256_hex, const char *token) {
    if (!sha256_hex || !sha256_hex[0] || !token) return false;
    char hash[SHA256_HEX_LEN + 1];
    sha256_buffer_hex(token, strlen(token), hash);
    return sha256_hex_equal(hash, sha256_hex);
}
