/* test_data_lock.c - server/data_lock.c: one holder of a data dir at a
 * time, the second told the holder's pid; the lock goes with its
 * descriptor, and a stale lock file (a holder killed) does not stop the
 * next one. flock(2) locks belong to open files, so two takes in one
 * process conflict as two daemons would. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "server/data_lock.h"
#include "tests/support/tmp_dir.h"

Test(data_lock, second_taker_is_refused_with_the_pid) {
    char dir[64], sub[96], want[192], path[128];
    tmp_dir_make(dir, sizeof dir, "lock");
    snprintf(sub, sizeof sub, "%s/a/b", dir); /* created, parents too */
    int fd = data_lock_take(sub);
    cr_assert(fd >= 0, "%s", error_get());
    snprintf(path, sizeof path, "%s/traind.lock", sub);
    FILE *f = fopen(path, "r");
    long pid = 0;
    cr_assert(f && fscanf(f, "%ld", &pid) == 1);
    fclose(f);
    cr_assert_eq(pid, (long)getpid());
    cr_assert_eq(data_lock_take(sub), -1);
    snprintf(want, sizeof want, "data dir %s is in use by pid %ld", sub, (long)getpid());
    cr_assert_str_eq(error_get(), want);
    data_lock_release(fd);
    /* released: the file stays, with the old pid, and the next take works */
    int again = data_lock_take(sub);
    cr_assert(again >= 0, "%s", error_get());
    data_lock_release(again);
    tmp_dir_remove(dir);
}
