/* test_durable.c - core/io/durable: a file replaced whole (content, mode),
 * and a failed write that leaves the old file as it was and no temporary
 * beside it. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io/durable.h"

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/traind-durable-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void teardown(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[400];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(dir);
}

static int count_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void read_file(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static int write_text(FILE *f, const char *tmp, void *text) {
    fputs(text, f);
    return 0;
}

static int fail_halfway(FILE *f, const char *tmp, void *text) {
    fputs(text, f);
    return error_set("the source ran dry");
}

Test(durable, replaces_whole_with_its_mode, .init = setup, .fini = teardown) {
    char path[128], got[64];
    snprintf(path, sizeof path, "%s/token", dir);
    cr_assert_eq(durable_write(path, 0600, write_text, "first\n"), 0, "%s", error_get());
    cr_assert_eq(durable_write(path, 0600, write_text, "second\n"), 0, "%s", error_get());
    read_file(path, got, sizeof got);
    cr_assert_str_eq(got, "second\n");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(count_files(), 1, "a temporary was left behind");
}

Test(durable, a_failed_write_leaves_the_old_file, .init = setup, .fini = teardown) {
    char path[128], got[64];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(durable_write(path, 0644, write_text, "old"), 0, "%s", error_get());
    cr_assert_eq(durable_write(path, 0644, fail_halfway, "new, half"), -1);
    char want[200];
    snprintf(want, sizeof want, "%s: the source ran dry", path);
    cr_assert_str_eq(error_get(), want);
    read_file(path, got, sizeof got);
    cr_assert_str_eq(got, "old");
    cr_assert_eq(count_files(), 1, "a temporary was left behind");
}

Test(durable, a_missing_directory_is_named, .init = setup, .fini = teardown) {
    char path[128];
    snprintf(path, sizeof path, "%s/no/such/file", dir);
    cr_assert_eq(durable_write(path, 0644, write_text, "x"), -1);
    cr_assert(strstr(error_get(), "cannot create temporary file"), "%s", error_get());
    cr_assert(strncmp(error_get(), path, strlen(path)) == 0, "%s", error_get());
}

Test(durable, temporary_names_are_unique) {
    char *a = durable_temp_name("/x/ckpt/"), *b = durable_temp_name("/x/ckpt");
    cr_assert(a && b);
    cr_assert(strncmp(a, "/x/ckpt.tmp.", 12) == 0, "%s", a);
    cr_assert_str_neq(a, b);
    free(a);
    free(b);
}
