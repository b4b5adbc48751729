/* metrics_token.h - the scrape token of `traind serve --metrics-token-file
 * FILE`: a secret that opens GET /metrics, and nothing else, for a
 * Prometheus that should not hold an admin's token.
 *
 * The file holds the token on one line (surrounding blanks and the line's
 * end are not part of it); the daemon keeps only its sha256 and compares a
 * request's token through its sha256 in constant time
 * (storage/sha256.h sha256_hex_equal), as it does users' tokens.
 */
#ifndef TRAIND_SERVER_METRICS_TOKEN_H
#define TRAIND_SERVER_METRICS_TOKEN_H

#include "storage/sha256.h"

/* A token is at most this long (it travels in an HTTP header), and at
 * least this long (one that opens /metrics must not be guessed). */
#define METRICS_TOKEN_MAX 1024
#define METRICS_TOKEN_MIN 16

/* The sha256 (hex, SHA256_HEX_LEN + 1 bytes) of the token in the file at
 * path: 0, or -1 with an error naming the file (missing, unreadable,
 * empty, shorter than METRICS_TOKEN_MIN or longer than METRICS_TOKEN_MAX,
 * more than one line, or bytes that
 * cannot be in a header). */
int metrics_token_load(const char *path, char *sha256_hex);

/* Whether token is the one whose hash is sha256_hex ("" : there is none). */
bool metrics_token_matches(const char *sha256_hex, const char *token);

#endif
