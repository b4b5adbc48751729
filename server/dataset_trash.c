/* dataset_trash.c - deleted datasets' files removed off the request
 * threads; see dataset_trash.h. */
#include "server/dataset_trash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "server/log.h"

static void remove_now(const char *path) {
    if (db_remove_tree(path) != 0) log_message("dataset", "removing %s: %s", path, error_get());
}

static void *remove_tree(void *path) {
    remove_now(path);
    free(path);
    return NULL;
}

void dataset_trash_remove(const char *path) {
    char *own = strdup(path);
    pthread_attr_t attr;
    pthread_t thread;
    if (own && pthread_attr_init(&attr) == 0) {
        int rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (rc == 0) rc = pthread_create(&thread, &attr, remove_tree, own);
        pthread_attr_destroy(&attr);
        if (rc == 0) return;
    }
    free(own);
    remove_now(path); /* no thread: here, late rather than never */
}

static void remove_later(const char *path, void *ctx) {
    (void)ctx;
    log_message("start", "removing %s, left aside by a delete the daemon did not finish", path);
    dataset_trash_remove(path);
}

void dataset_trash_sweep(Db *db) {
    if (db_dataset_trash_each(db, remove_later, NULL) != DB_OK)
        log_message("start", "looking for datasets left aside: %s", error_get());
}
