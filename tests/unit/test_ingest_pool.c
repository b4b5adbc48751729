/* test_ingest_pool.c - server/ingest_pool.c: tasks run in the order they
 * came, on the pool's threads; stopping waits for the running task and
 * calls the queued ones cancelled. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "core/error.h"
#include "server/ingest_pool.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int order[16], ran, cancelled;
static atomic_bool gate_open, first_started;
static pthread_t runner;

/* Task i: the first waits at the gate (so that the rest queue behind it);
 * each notes its number, or that it was cancelled. */
static void task(void *ctx, bool is_cancelled) {
    int i = (int)(intptr_t)ctx;
    if (i == 0) {
        atomic_store(&first_started, true);
        while (!atomic_load(&gate_open)) usleep(1000);
    }
    pthread_mutex_lock(&mu);
    if (is_cancelled)
        cancelled++;
    else {
        order[ran++] = i;
        runner = pthread_self();
    }
    pthread_mutex_unlock(&mu);
}

Test(ingest_pool, in_order_off_the_caller_then_stopped) {
    IngestPool *p = ingest_pool_start(1);
    cr_assert(p, "%s", error_get());
    for (intptr_t i = 0; i < 5; i++) cr_assert_eq(ingest_pool_run(p, task, (void *)i), 0);
    atomic_store(&gate_open, true);
    for (int k = 0; k < 500 && ran < 5; k++) usleep(2000);
    pthread_mutex_lock(&mu);
    cr_assert_eq(ran, 5);
    for (int i = 0; i < 5; i++) cr_assert_eq(order[i], i, "task %d ran %d-th", order[i], i);
    cr_assert(!pthread_equal(runner, pthread_self()), "on the pool's thread");
    pthread_mutex_unlock(&mu);
    ingest_pool_stop(p);
}

static void *stop_later(void *p) {
    usleep(100 * 1000);
    atomic_store(&gate_open, true);
    (void)p;
    return NULL;
}

Test(ingest_pool, stop_waits_for_the_running_and_cancels_the_queued) {
    ran = cancelled = 0;
    atomic_store(&gate_open, false);
    atomic_store(&first_started, false);
    IngestPool *p = ingest_pool_start(1);
    cr_assert(p, "%s", error_get());
    for (intptr_t i = 0; i < 4; i++) cr_assert_eq(ingest_pool_run(p, task, (void *)i), 0);
    while (!atomic_load(&first_started)) usleep(1000);
    pthread_t opener;
    cr_assert_eq(pthread_create(&opener, NULL, stop_later, NULL), 0);
    ingest_pool_stop(p); /* waits for task 0, at its gate for 100 ms */
    pthread_join(opener, NULL);
    cr_assert_eq(ran, 1, "the running task finished");
    cr_assert_eq(order[0], 0);
    cr_assert_eq(cancelled, 3, "the queued ones cancelled");
}
