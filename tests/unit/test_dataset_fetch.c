/* test_dataset_fetch.c - job/dataset_fetch.c's check of a cached file
 * against the manifest: its size, then its sha256, the message naming the
 * path and both values; the cache's root, this user's alone. The download
 * itself, from a real daemon, is tests/e2e/test_remote_report.sh's (g). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "job/dataset_fetch.h"

/* sha256("hello\n") */
#define HELLO_SHA "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"

Test(dataset_fetch, verify_size_then_digest) {
    char path[] = "/tmp/test_dataset_fetch_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "hello\n", 6), 6);
    close(fd);
    cr_assert_eq(dataset_fetch_verify(path, 6, HELLO_SHA), 0, "%s", error_get());
    cr_assert_eq(dataset_fetch_verify(path, 7, HELLO_SHA), -1);
    char want[256];
    snprintf(want, sizeof want, "%s: 6 bytes, expected 7", path);
    cr_assert_str_eq(error_get(), want);
    const char *other = "0000000000000000000000000000000000000000000000000000000000000000";
    cr_assert_eq(dataset_fetch_verify(path, 6, other), -1);
    snprintf(want, sizeof want, "%s: sha256 mismatch: expected %s, got %s", path, other, HELLO_SHA);
    cr_assert_str_eq(error_get(), want);
    unlink(path);
    cr_assert_eq(dataset_fetch_verify(path, 6, HELLO_SHA), 1, "no file: to be fetched");
}

/* The cache's root: made 0700 when missing (its parents too); refused when
 * others may write it, when it is a link, or another user's. */
Test(dataset_fetch, cache_root_is_this_users_alone) {
    char base[] = "/tmp/test_dataset_cache_XXXXXX", cache[128], link[128], want[256];
    cr_assert(mkdtemp(base));
    snprintf(cache, sizeof cache, "%s/nodes/cache", base);
    cr_assert_eq(dataset_fetch_cache_ready(cache), 0, "%s", error_get());
    struct stat st;
    cr_assert_eq(stat(cache, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    cr_assert_eq(dataset_fetch_cache_ready(cache), 0, "again: %s", error_get());
    cr_assert_eq(chmod(cache, 0777), 0); /* as a planted /tmp/traind-datasets would be */
    cr_assert_eq(dataset_fetch_cache_ready(cache), -1);
    snprintf(want, sizeof want, "datasets cache %s: mode 777 lets others write it (chmod go-w)",
             cache);
    cr_assert_str_eq(error_get(), want);
    cr_assert_eq(chmod(cache, 0755), 0);
    snprintf(link, sizeof link, "%s/link", base);
    cr_assert_eq(symlink(cache, link), 0);
    cr_assert_eq(dataset_fetch_cache_ready(link), -1);
    cr_assert(strstr(error_get(), "not a directory (a link, or a file)"), "%s", error_get());
    if (geteuid() == 0) { /* root may give it away */
        cr_assert_eq(chown(cache, 65534, 65534), 0);
        cr_assert_eq(dataset_fetch_cache_ready(cache), -1);
        cr_assert(strstr(error_get(), "owned by uid 65534, not by this user (uid 0)"), "%s",
                  error_get());
    }
    char rm[200];
    snprintf(rm, sizeof rm, "rm -rf %s", base);
    cr_assert_eq(system(rm), 0);
}
