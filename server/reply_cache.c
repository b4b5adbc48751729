/* reply_cache.c - the reply cache of reply_cache.h: a doubly linked list
 * in recency order, searched linearly by a hash of the key first (a few
 * hundred to a few thousand entries, each a sizeable reply or history
 * chunk, so a scan is nothing beside what a hit saves). */
#include "server/reply_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum { GZIP_NONE, GZIP_MAKING, GZIP_READY, GZIP_FAILED };

struct CachedReply {
    atomic_int refs; /* the cache's own (while listed) and each user's */
    CachedReply *prev, *next;
    uint64_t hash; /* of key: the scan compares this first */
    char *key, *body;
    size_t len;
    atomic_int gzip_state; /* gz is written once, before READY is stored */
    char *gz;
    size_t gz_len;
    _Atomic(ReplyCache *) cache; /* while listed; the cache outlives requests */
    size_t charged;              /* bytes counted in cache->bytes (under its lock) */
};

struct ReplyCache {
    pthread_mutex_t lock;
    CachedReply *head, *tail; /* most recently used first */
    size_t bytes, max_bytes;
    int entries, max_entries;
};

ReplyCache *reply_cache_new(size_t max_bytes, int max_entries) {
    ReplyCache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->max_bytes = max_bytes;
    c->max_entries = max_entries;
    return c;
}

void cached_reply_release(CachedReply *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    free(r->key);
    free(r->body);
    free(r->gz);
    free(r);
}

const char *cached_reply_body(const CachedReply *r, size_t *len) {
    *len = r->len;
    return r->body;
}

/* body as one gzip member; NULL when out of memory */
static char *gzip_body(const char *body, size_t len, size_t *out_len) {
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&z, (uLong)len);
    char *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)body;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_len = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    char *fit = realloc(out, *out_len ? *out_len : 1);
    return fit ? fit : out;
}

static void unlink_entry(ReplyCache *c, CachedReply *r) {
    if (r->prev) r->prev->next = r->next;
    else c->head = r->next;
    if (r->next) r->next->prev = r->prev;
    else c->tail = r->prev;
    r->prev = r->next = NULL;
}

static void push_front(ReplyCache *c, CachedReply *r) {
    r->prev = NULL;
    r->next = c->head;
    if (c->head) c->head->prev = r;
    c->head = r;
    if (!c->tail) c->tail = r;
}

static void evict(ReplyCache *c, CachedReply *r) {
    unlink_entry(c, r);
    atomic_store(&r->cache, NULL);
    c->bytes -= r->charged;
    c->entries--;
    cached_reply_release(r);
}

/* The gzip copy counts in the cache's bytes too, while the entry is
 * listed; older entries make room for it. */
static void charge_gzip(CachedReply *r) {
    ReplyCache *c = atomic_load(&r->cache);
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    if (atomic_load(&r->cache) == c) {
        r->charged += r->gz_len;
        c->bytes += r->gz_len;
        while (c->bytes > c->max_bytes && c->tail && c->tail != r) evict(c, c->tail);
    }
    pthread_mutex_unlock(&c->lock);
}

const char *cached_reply_gzip(CachedReply *r, size_t *len) {
    int state = atomic_load(&r->gzip_state);
    if (state == GZIP_NONE &&
        atomic_compare_exchange_strong(&r->gzip_state, &state, GZIP_MAKING)) {
        /* bodies are replies of at most a quarter of the cache: uInt fits */
        r->gz = gzip_body(r->body, r->len, &r->gz_len);
        if (r->gz) charge_gzip(r);
        atomic_store(&r->gzip_state, r->gz ? GZIP_READY : GZIP_FAILED);
        state = r->gz ? GZIP_READY : GZIP_FAILED;
    }
    if (state != GZIP_READY) return NULL;
    *len = r->gz_len;
    return r->gz;
}

void reply_cache_free(ReplyCache *c) {
    if (!c) return;
    while (c->head) evict(c, c->head);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* FNV-1a, 64 bits */
static uint64_t key_hash(const char *key) {
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return h;
}

static CachedReply *find(ReplyCache *c, const char *key, uint64_t hash) {
    for (CachedReply *r = c->head; r; r = r->next)
        if (r->hash == hash && !strcmp(r->key, key)) return r;
    return NULL;
}

CachedReply *reply_cache_get(ReplyCache *c, const char *key) {
    uint64_t hash = key_hash(key);
    pthread_mutex_lock(&c->lock);
    CachedReply *r = find(c, key, hash);
    if (r) {
        unlink_entry(c, r);
        push_front(c, r);
        atomic_fetch_add(&r->refs, 1);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

CachedReply *reply_cache_put(ReplyCache *c, const char *key, char *body, size_t len) {
    CachedReply *r = calloc(1, sizeof *r);
    char *k = strdup(key);
    if (!r || !k) {
        free(r);
        free(k);
        free(body);
        return NULL;
    }
    r->key = k;
    r->hash = key_hash(key);
    r->body = body;
    r->len = len;
    atomic_init(&r->refs, 1); /* the caller's */
    atomic_init(&r->gzip_state, GZIP_NONE);
    atomic_init(&r->cache, NULL);
    /* an entry over a quarter of the cache would push out most of it */
    if (len > c->max_bytes / 4 || c->max_entries < 1) return r;
    pthread_mutex_lock(&c->lock);
    CachedReply *old = find(c, key, r->hash); /* two requests raced to fill it */
    if (old) evict(c, old);
    while (c->head && (c->bytes + len > c->max_bytes || c->entries + 1 > c->max_entries))
        evict(c, c->tail);
    atomic_fetch_add(&r->refs, 1); /* the cache's */
    push_front(c, r);
    atomic_store(&r->cache, c);
    r->charged = len;
    c->bytes += len;
    c->entries++;
    pthread_mutex_unlock(&c->lock);
    return r;
}

void reply_cache_drop_prefix(ReplyCache *c, const char *prefix) {
    size_t n = strlen(prefix);
    pthread_mutex_lock(&c->lock);
    for (CachedReply *r = c->head, *next; r; r = next) {
        next = r->next;
        if (!strncmp(r->key, prefix, n)) evict(c, r);
    }
    pthread_mutex_unlock(&c->lock);
}
