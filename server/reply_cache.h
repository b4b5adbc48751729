/* reply_cache.h - replies about finished jobs, kept as the bytes sent.
 *
 * A job that has succeeded, failed or been cancelled never changes again,
 * so the same question about it (a dashboard reloading the 10,000-point
 * loss curve of yesterday's run) has the same answer. The metric history
 * route keeps those answers here and sends them again without SQLite or
 * number formatting. The key names everything the answer depends on (the
 * job, its attempt and end time, the query). Bounded in bytes and entries,
 * least recently used out first; thread-safe. Entries are counted
 * references, so a reply still being sent outlives its eviction. A second
 * cache of the same kind holds the chunks pages are cut from
 * (history_chunks.h): blobs that never change, like these replies.
 */
#ifndef TRAIND_SERVER_REPLY_CACHE_H
#define TRAIND_SERVER_REPLY_CACHE_H

#include <stddef.h>

typedef struct ReplyCache ReplyCache;
typedef struct CachedReply CachedReply;

/* NULL when out of memory. */
ReplyCache *reply_cache_new(size_t max_bytes, int max_entries);
void reply_cache_free(ReplyCache *c);

/* A new reference to the reply under key, or NULL. */
CachedReply *reply_cache_get(ReplyCache *c, const char *key);
/* Takes body (malloc'd) and keeps it under key, evicting the least recently
 * used; one too large for the cache is not kept but still returned. A
 * reference, or NULL (body freed) when out of memory. */
CachedReply *reply_cache_put(ReplyCache *c, const char *key, char *body, size_t len);
/* Drops every entry whose key begins with prefix (references held stay
 * good until released). */
void reply_cache_drop_prefix(ReplyCache *c, const char *prefix);

const char *cached_reply_body(const CachedReply *r, size_t *len);
/* The body gzip-compressed (RFC 1952): made by the first caller, who pays
 * for it once (~10 ms a megabyte), and kept with the entry, so a reply
 * that is asked for again costs a fifth of the bytes to send. NULL while
 * another thread is making it, or when it cannot be made (no memory):
 * send the body instead. Counted in the cache's bytes. */
const char *cached_reply_gzip(CachedReply *r, size_t *len);
void cached_reply_release(CachedReply *r);

#endif
