/* test_dataset_fetch.c - job/dataset_fetch.c's check of a cached file
 * against the manifest: its size, then its sha256, the message naming the
 * path and both values. The download itself, from a real daemon, is
 * tests/e2e/test_remote_report.sh's (g). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
