/* sha256.h - SHA-256 (FIPS 180-4), incremental and one-shot.
 *
 * Our own small implementation (storage/sha256.c, checked against the NIST
 * vectors in tests/unit/test_storage.c): datasets and checkpoints are
 * recorded with the sha256 of their files, uploads are hashed while they
 * stream in (init, update per chunk, final), and user tokens are stored
 * only as their hash.
 */
#ifndef TRAIND_STORAGE_SHA256_H
#define TRAIND_STORAGE_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN 64 /* a hex string needs SHA256_HEX_LEN + 1 bytes */

typedef struct {
    uint32_t h[8];
    uint64_t bytes;    /* message length so far */
    uint8_t buf[64];   /* a partial block */
    size_t buf_len;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t len);
/* Writes the digest; s must be re-initialised before reuse. */
void sha256_final(Sha256 *s, uint8_t digest[SHA256_DIGEST_LEN]);
/* Lower-case hex of a digest into hex (SHA256_HEX_LEN + 1 bytes). */
void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_LEN], char *hex);
/* Final + hex in one call. */
void sha256_final_hex(Sha256 *s, char *hex);

/* One-shot: hex digest of a buffer. */
void sha256_buffer_hex(const void *data, size_t len, char *hex);
/* Hex digest of a file's bytes, streamed; *bytes (may be NULL) gets its
 * size. 0, or -1 with an error naming the file. */
/* Whether two hex digests are equal, in time that does not depend on where
 * they differ (for tokens' hashes). */
bool sha256_hex_equal(const char *a, const char *b);

int sha256_file_hex(const char *path, char *hex, int64_t *bytes);

#endif
