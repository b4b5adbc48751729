/* allocator.c - host memory for CPU tensors, with a cache of large blocks.
 *
 * A training step allocates and frees the same large buffers every time
 * (im2col columns, activations, gradients). Handing them back to the system
 * and faulting them in again costs more than the arithmetic on them (on
 * this VM a page fault is a hypervisor exit), so blocks of at least
 * CACHE_MIN_BYTES go to a cache on free and are reused for a request of the
 * same rounded size, as PyTorch's caching allocator does on the GPU. The
 * cache holds an eighth of the machine's memory (at least 512 MiB, at most
 * 8 GiB), blocks up to a quarter of that: a GPT-2's logits and their
 * gradient are 206 MB each, over the 128 MiB blocks a fixed 512 MiB cache
 * took, and their pages were faulted in again at every step. Past its
 * size the oldest blocks go back.
 *
 * Every block carries a 64-byte header with its size, so free needs no
 * size from the caller, and data stays 64-byte aligned for OpenBLAS.
 *
 * Under AddressSanitizer the cache starts off, so that a use after free of
 * a tensor's memory is still caught; tests turn it on to test it.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cpu/cpu.h"

#define HEADER_BYTES 64
#define CACHE_MIN_BYTES ((size_t)64 << 10)
#define CACHE_FLOOR_BYTES ((size_t)512 << 20)
#define CACHE_CEILING_BYTES ((size_t)8 << 30)
#define CACHE_MAX_BLOCKS 256

typedef struct {
    size_t size; /* usable bytes after the header */
} BlockHeader;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static void *cache_blocks[CACHE_MAX_BLOCKS]; /* oldest first; header pointers */
static int cache_count;
static size_t cache_bytes;
#if defined(__SANITIZE_ADDRESS__)
static _Atomic bool cache_enabled = false;
#else
static _Atomic bool cache_enabled = true;
#endif

/* The cache's size, from the machine's memory, fixed at the first use. */
static size_t cache_max_bytes(void) {
    static _Atomic size_t max;
    size_t m = max;
    if (m) return m;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    m = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 8 : CACHE_FLOOR_BYTES;
    m = m < CACHE_FLOOR_BYTES ? CACHE_FLOOR_BYTES : m > CACHE_CEILING_BYTES ? CACHE_CEILING_BYTES : m;
    max = m;
    return m;
}

void cpu_allocator_set_caching(bool enabled) {
    cache_enabled = enabled;
    if (!enabled) cpu_allocator_trim();
}

/* Requests round up to 4 KiB above the cache threshold so that shapes that
 * differ by a few elements still share blocks. */
static size_t round_size(size_t nbytes) {
    if (nbytes < CACHE_MIN_BYTES) return (nbytes + 63) & ~(size_t)63;
    return (nbytes + 4095) & ~(size_t)4095;
}

static void *take_cached(size_t size) {
    void *found = NULL;
    pthread_mutex_lock(&cache_lock);
    for (int i = cache_count - 1; i >= 0; i--) { /* newest first: warm in cache */
        BlockHeader *h = cache_blocks[i];
        if (h->size == size) {
            found = h;
            memmove(&cache_blocks[i], &cache_blocks[i + 1],
                    (size_t)(cache_count - i - 1) * sizeof cache_blocks[0]);
            cache_count--;
            cache_bytes -= size;
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return found;
}

void *cpu_alloc(Device device, size_t nbytes) {
    (void)device;
    size_t size = round_size(nbytes ? nbytes : 1);
    if (size > SIZE_MAX - HEADER_BYTES) return NULL;
    BlockHeader *h = (size >= CACHE_MIN_BYTES && cache_enabled) ? take_cached(size) : NULL;
    if (!h) {
        h = aligned_alloc(64, size + HEADER_BYTES);
        if (!h) {
            cpu_allocator_trim(); /* give the cache back and try once more */
            h = aligned_alloc(64, size + HEADER_BYTES);
            if (!h) return NULL;
        }
        h->size = size;
    }
    return (char *)h + HEADER_BYTES;
}

void cpu_free(Device device, void *ptr) {
    (void)device;
    if (!ptr) return;
    BlockHeader *h = (BlockHeader *)((char *)ptr - HEADER_BYTES);
    size_t max = cache_max_bytes();
    if (h->size < CACHE_MIN_BYTES || h->size > max / 4 || !cache_enabled) {
        free(h);
        return;
    }
    void *evict[CACHE_MAX_BLOCKS];
    int n_evict = 0;
    pthread_mutex_lock(&cache_lock);
    while (cache_count > 0 &&
           (cache_count == CACHE_MAX_BLOCKS || cache_bytes + h->size > max)) {
        BlockHeader *old = cache_blocks[0];
        cache_bytes -= old->size;
        evict[n_evict++] = old;
        memmove(&cache_blocks[0], &cache_blocks[1], (size_t)(--cache_count) * sizeof(void *));
    }
    cache_blocks[cache_count++] = h;
    cache_bytes += h->size;
    pthread_mutex_unlock(&cache_lock);
    for (int i = 0; i < n_evict; i++) free(evict[i]);
}

void cpu_allocator_trim(void) {
    pthread_mutex_lock(&cache_lock);
    int n = cache_count;
    void *blocks[CACHE_MAX_BLOCKS];
    memcpy(blocks, cache_blocks, (size_t)n * sizeof blocks[0]);
    cache_count = 0;
    cache_bytes = 0;
    pthread_mutex_unlock(&cache_lock);
    for (int i = 0; i < n; i++) free(blocks[i]);
}

size_t cpu_allocator_cached_bytes(void) {
    pthread_mutex_lock(&cache_lock);
    size_t n = cache_bytes;
    pthread_mutex_unlock(&cache_lock);
    return n;
}
