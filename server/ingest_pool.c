/* ingest_pool.c - a few threads taking tasks in order; see ingest_pool.h. */
#include "server/ingest_pool.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/error.h"

typedef struct Queued {
    IngestTask task;
    void *ctx;
    struct Queued *next;
} Queued;

struct IngestPool {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    Queued *head, *tail;
    bool stopping;
    int threads;
    pthread_t *tids;
};

/* The next task, NULL once the pool stops. With p->mu held. */
static Queued *next_task(IngestPool *p) {
    while (!p->head && !p->stopping) pthread_cond_wait(&p->wake, &p->mu);
    if (p->stopping) return NULL;
    Queued *q = p->head;
    p->head = q->next;
    if (!p->head) p->tail = NULL;
    return q;
}

static void *pool_main(void *arg) {
    IngestPool *p = arg;
    pthread_setname_np(pthread_self(), "ingest"); /* top, gdb */
    pthread_mutex_lock(&p->mu);
    Queued *q;
    while ((q = next_task(p))) {
        pthread_mutex_unlock(&p->mu);
        error_clear();
        q->task(q->ctx, false);
        free(q);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

IngestPool *ingest_pool_start(int threads) {
    IngestPool *p = calloc(1, sizeof *p);
    pthread_t *tids = p && threads > 0 ? calloc((size_t)threads, sizeof *tids) : NULL;
    if (!tids) {
        free(p);
        return error_set("ingest pool: out of memory"), NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->tids = tids;
    for (; p->threads < threads; p->threads++)
        if (pthread_create(&tids[p->threads], NULL, pool_main, p) != 0) break;
    if (p->threads == threads) return p;
    error_set("ingest pool: cannot start thread %d of %d", p->threads + 1, threads);
    ingest_pool_stop(p);
    return NULL;
}

int ingest_pool_run(IngestPool *p, IngestTask task, void *ctx) {
    Queued *q = malloc(sizeof *q);
    if (!q) return error_set("ingest pool: out of memory");
    *q = (Queued){task, ctx, NULL};
    pthread_mutex_lock(&p->mu);
    bool open = !p->stopping;
    if (open) {
        if (p->tail) p->tail->next = q;
        else p->head = q;
        p->tail = q;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->mu);
    if (open) return 0;
    free(q);
    return error_set("ingest pool: the daemon is stopping");
}

void ingest_pool_stop(IngestPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    Queued *left = p->head;
    p->head = p->tail = NULL;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->threads; i++) pthread_join(p->tids[i], NULL);
    while (left) {
        Queued *next = left->next;
        left->task(left->ctx, true);
        free(left);
        left = next;
    }
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p);
}
