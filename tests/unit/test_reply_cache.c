/* test_reply_cache.c - server/reply_cache.c: hits return the bytes put,
 * the least recently used entry goes first when the byte or entry bound
 * is reached, a reply too large is returned but not kept, a key put twice
 * keeps the newer body, and a reference outlives its entry's eviction
 * (a reply still being sent). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "server/reply_cache.h"

static char *body_of(const char *s) { return strdup(s); }

static bool holds(ReplyCache *c, const char *key, const char *want) {
    CachedReply *r = reply_cache_get(c, key);
    if (!r) return false;
    size_t len;
    const char *b = cached_reply_body(r, &len);
    bool same = len == strlen(want) && !memcmp(b, want, len);
    cached_reply_release(r);
    return same;
}

Test(reply_cache, hit_miss_and_lru_by_entries) {
    ReplyCache *c = reply_cache_new(1 << 20, 2);
    cr_assert_not_null(c);
    cached_reply_release(reply_cache_put(c, "a", body_of("alpha"), 5));
    cached_reply_release(reply_cache_put(c, "b", body_of("beta"), 4));
    cr_assert(holds(c, "a", "alpha")); /* a is now the most recent */
    cr_assert_null(reply_cache_get(c, "zz"));
    cached_reply_release(reply_cache_put(c, "c", body_of("gamma"), 5)); /* evicts b */
    cr_assert(holds(c, "a", "alpha"));
    cr_assert(holds(c, "c", "gamma"));
    cr_assert_null(reply_cache_get(c, "b"));
    cached_reply_release(reply_cache_put(c, "c", body_of("delta"), 5)); /* replaced */
    cr_assert(holds(c, "c", "delta"));
    cr_assert(holds(c, "a", "alpha"));
    reply_cache_free(c);
}

Test(reply_cache, byte_bound_and_large_replies) {
    ReplyCache *c = reply_cache_new(100, 100);
    char *big = malloc(60);
    memset(big, 'x', 60);
    CachedReply *r = reply_cache_put(c, "big", big, 60); /* over a quarter: not kept */
    cr_assert_not_null(r);
    size_t len;
    cr_assert_eq(cached_reply_body(r, &len)[59], 'x');
    cr_assert_eq(len, 60);
    cached_reply_release(r);
    cr_assert_null(reply_cache_get(c, "big"));
    char key[16];
    for (int i = 0; i < 5; i++) { /* 5 x 24 bytes > 100: the first goes */
        snprintf(key, sizeof key, "k%d", i);
        char *b = malloc(24);
        memset(b, 'a' + i, 24);
        cached_reply_release(reply_cache_put(c, key, b, 24));
    }
    cr_assert_null(reply_cache_get(c, "k0"));
    for (int i = 1; i < 5; i++) {
        snprintf(key, sizeof key, "k%d", i);
        CachedReply *h = reply_cache_get(c, key);
        cr_assert_not_null(h, "%s was evicted", key);
        cr_assert_eq(cached_reply_body(h, &len)[0], 'a' + i);
        cached_reply_release(h);
    }
    reply_cache_free(c);
}

Test(reply_cache, reference_outlives_eviction_and_free) {
    ReplyCache *c = reply_cache_new(1 << 20, 1);
    CachedReply *held = reply_cache_put(c, "a", body_of("still here"), 10);
    cached_reply_release(reply_cache_put(c, "b", body_of("b"), 1)); /* evicts a */
    cr_assert_null(reply_cache_get(c, "a"));
    reply_cache_free(c);
    size_t len;
    cr_assert_eq(memcmp(cached_reply_body(held, &len), "still here", 10), 0); /* ASan: no UAF */
    cached_reply_release(held);
}

/* the gzip copy inflates back to the body, is made once and kept */
Test(reply_cache, gzip_copy) {
    ReplyCache *c = reply_cache_new(1 << 20, 4);
    size_t n = 50000;
    char *body = malloc(n);
    cr_assert(body);
    for (size_t i = 0; i < n; i++) body[i] = "{\"step\":1234,\"value\":0.5}"[i % 25];
    CachedReply *r = reply_cache_put(c, "k", body, n);
    size_t gl = 0, gl2 = 0;
    const char *gz = cached_reply_gzip(r, &gl);
    cr_assert_not_null(gz);
    cr_assert(gl > 18 && gl < n / 10, "gzip of %zu bytes: %zu", n, gl);
    cr_assert_eq((unsigned char)gz[0], 0x1f); /* the gzip magic */
    cr_assert_eq((unsigned char)gz[1], 0x8b);
    cr_assert_eq(cached_reply_gzip(r, &gl2), gz, "made once");
    cr_assert_eq(gl2, gl);
    char *back = malloc(n + 1);
    z_stream z = {0};
    cr_assert_eq(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)gz;
    z.avail_in = (uInt)gl;
    z.next_out = (Bytef *)back;
    z.avail_out = (uInt)n + 1;
    cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
    cr_assert_eq(z.total_out, n);
    inflateEnd(&z);
    cr_assert_eq(memcmp(back, body, n), 0);
    free(back);
    cached_reply_release(r);
    reply_cache_free(c);
}

static char *noise(size_t n, uint32_t seed) { /* bytes gzip cannot shrink */
    char *b = malloc(n);
    cr_assert(b);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        b[i] = (char)(seed >> 24);
    }
    return b;
}

/* a gzip copy counts in the cache's bytes: with it, the next put must push
 * out the oldest entry, which would fit without it */
Test(reply_cache, gzip_copy_counts_in_the_bound) {
    ReplyCache *c = reply_cache_new(100000, 16);
    CachedReply *a = reply_cache_put(c, "a", noise(24000, 1), 24000);
    cached_reply_release(reply_cache_put(c, "b", noise(24000, 2), 24000));
    cached_reply_release(reply_cache_put(c, "c", noise(24000, 3), 24000));
    size_t gl = 0;
    cr_assert_not_null(cached_reply_gzip(a, &gl));
    cr_assert_gt(gl, 24000 - 100, "noise does not compress: %zu", gl);
    cached_reply_release(a); /* 3 x 24000 + ~24000 = ~96000 */
    cached_reply_release(reply_cache_put(c, "d", noise(24000, 4), 24000)); /* ~120000 */
    cr_assert_null(reply_cache_get(c, "a"), "the oldest, with its gzip copy, made room");
    const char *keys[] = {"b", "c", "d"};
    for (int i = 0; i < 3; i++) {
        CachedReply *r = reply_cache_get(c, keys[i]);
        cr_assert_not_null(r, "%s evicted", keys[i]);
        cached_reply_release(r);
    }
    reply_cache_free(c);
}

/* A job's entries dropped by their keys' prefix (its history rewritten):
 * the others stay, a reference held stays good, and the room is free. */
Test(reply_cache, entries_dropped_by_prefix) {
    ReplyCache *c = reply_cache_new(1 << 20, 8);
    cr_assert_not_null(c);
    cached_reply_release(reply_cache_put(c, "chunk 7 1 0 loss", body_of("seven"), 5));
    cached_reply_release(reply_cache_put(c, "chunk 7 1 1 loss", body_of("seven"), 5));
    cached_reply_release(reply_cache_put(c, "chunk 70 1 0 loss", body_of("seventy"), 7));
    cached_reply_release(reply_cache_put(c, "history 7 1", body_of("page"), 4));
    CachedReply *held = reply_cache_get(c, "chunk 7 1 0 loss");
    reply_cache_drop_prefix(c, "chunk 7 ");
    cr_assert_null(reply_cache_get(c, "chunk 7 1 0 loss"));
    cr_assert_null(reply_cache_get(c, "chunk 7 1 1 loss"));
    cr_assert(holds(c, "chunk 70 1 0 loss", "seventy"), "job 70's: not job 7's");
    cr_assert(holds(c, "history 7 1", "page"), "another prefix");
    size_t len;
    cr_assert_eq(memcmp(cached_reply_body(held, &len), "seven", 5), 0, "a reference held");
    cached_reply_release(held);
    reply_cache_free(c);
}
