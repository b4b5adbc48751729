/* allocator.c - host memory for CPU tensors, with a cache of large blocks.
 *
 * A training step allocates and frees the same large buffers every time
 * (im2col columns, activations, gradients). Handing them back to the system
 * and faulting them in again costs more than the arithmetic on them (on
 * this VM a page fault is a hypervisor exit), so blocks of at least
 * CACHE_MIN_BYTES go to a cache on free and are reused for a request of the
 * same rounded size, as PyTorch's caching allocator does on the GPU.
 *
 * The cache holds up to twice the most the process has had in large blocks
 * at once (their high-water mark; at least an eighth of the machine's
 * memory, at least 512 MiB, at most 8 GiB; at most three quarters of it):
 * a training step needs again the blocks the last one had, its live ones
 * and those freed and not yet reused when it peaked. A ResNet-18 step at
 * batch 256 peaks at 5.0 GB live in 6.6 GB of blocks; a cache of an eighth
 * of 23 GB gave about 4 GB back at every step, which the next faulted in
 * again (a million page faults a step, most of the run in the kernel
 * zeroing pages); with this one only the first step faults. Blocks up to
 * a quarter of the cache's size are kept; past its size the oldest go
 * back.
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
#define CACHE_MAX_BLOCKS 4096

typedef struct {
    size_t size; /* usable bytes after the header */
} BlockHeader;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static void *cache_blocks[CACHE_MAX_BLOCKS]; /* oldest first; header pointers */
static int cache_count;
static size_t cache_bytes;
static size_t live_bytes, peak_live_bytes; /* large blocks handed out, and their most */
#if defined(__SANITIZE_ADDRESS__)
static _Atomic bool cache_enabled = false;
#else
static _Atomic bool cache_enabled = true;
#endif

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

/* Under cache_lock: the cache's size now, within bounds from the
 * machine's memory, fixed at the first use. */
static size_t cache_max_bytes(void) {
    static size_t least, most;
    if (!least) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        size_t memory = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
        least = memory / 8 < CACHE_FLOOR_BYTES     ? CACHE_FLOOR_BYTES
                : memory / 8 > CACHE_CEILING_BYTES ? CACHE_CEILING_BYTES
                                                   : memory / 8;
        most = memory / 4 * 3 > least ? memory / 4 * 3 : least;
    }
    size_t want = 2 * peak_live_bytes;
    return want < least ? least : want > most ? most : want;
}

/* Under cache_lock: a large block of `size` handed out. */
static void count_out(size_t size) {
    live_bytes += size;
    if (live_bytes > peak_live_bytes) peak_live_bytes = live_bytes;
}

/* A large block of `size` counted as handed out: one from the cache, or
 * NULL for the caller to allocate. */
static void *take_large(size_t size) {
    void *found = NULL;
    pthread_mutex_lock(&cache_lock);
    for (int i = cache_enabled ? cache_count - 1 : -1; i >= 0; i--) { /* newest first: warm */
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
    count_out(size);
    pthread_mutex_unlock(&cache_lock);
    return found;
}

void *cpu_alloc(Device device, size_t nbytes) {
    (void)device;
    size_t size = round_size(nbytes ? nbytes : 1);
    if (size > SIZE_MAX - HEADER_BYTES) return NULL;
    bool large = size >= CACHE_MIN_BYTES;
    BlockHeader *h = large ? take_large(size) : NULL;
    if (!h) {
        h = aligned_alloc(64, size + HEADER_BYTES);
        if (!h) {
            cpu_allocator_trim(); /* give the cache back and try once more */
            h = aligned_alloc(64, size + HEADER_BYTES);
        }
        if (!h) {
            if (large) {
                pthread_mutex_lock(&cache_lock);
                live_bytes -= size;
                pthread_mutex_unlock(&cache_lock);
            }
            return NULL;
        }
        h->size = size;
    }
    return (char *)h + HEADER_BYTES;
}

void cpu_free(Device device, void *ptr) {
    (void)device;
    if (!ptr) return;
    BlockHeader *h = (BlockHeader *)((char *)ptr - HEADER_BYTES);
    if (h->size < CACHE_MIN_BYTES) {
        free(h);
        return;
    }
    pthread_mutex_lock(&cache_lock);
    live_bytes -= h->size;
    size_t max = cache_max_bytes();
    if (h->size > max / 4 || !cache_enabled) {
        pthread_mutex_unlock(&cache_lock);
        free(h);
        return;
    }
    void *evict[CACHE_MAX_BLOCKS];
    int n_evict = 0;
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

size_t cpu_allocator_cache_limit(void) {
    pthread_mutex_lock(&cache_lock);
    size_t n = cache_max_bytes();
    pthread_mutex_unlock(&cache_lock);
    return n;
}
