/* test_durable.c - core/io/durable: a file replaced whole (content, mode),
 * and a failed write that leaves the old file as it was and no temporary
 * beside it; on a full disk (a small tmpfs), an error that names the file
 * and carries ENOSPC. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "tests/support/full_disk.h"
#include "tests/support/tmp_dir.h"

static char dir[64];

static void setup(void) { tmp_dir_make(dir, sizeof dir, "durable"); }

static void teardown(void) { tmp_dir_remove(dir); }

static int count_files(void) { return tmp_dir_count(dir); }

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

/* The counter starts at random: a process that got a dead writer's pid
 * does not take the names it left (n of 0 to 9 here, a chance of 1 in
 * 400 million that this test could not tell). */
Test(durable, temporary_names_are_unique) {
    char *a = durable_temp_name("/x/ckpt/"), *b = durable_temp_name("/x/ckpt");
    cr_assert(a && b);
    cr_assert(strncmp(a, "/x/ckpt.tmp.", 12) == 0, "%s", a);
    cr_assert_str_neq(a, b);
    unsigned n;
    cr_assert_eq(sscanf(strrchr(a, '.') + 1, "%u", &n), 1);
    cr_assert(n >= 10, "%s: the counter starts at %u", a, n);
    free(a);
    free(b);
}

/* A writer of `size` bytes (ctx points at it), in stdio's way: its own
 * error, with errno, when fwrite fails. */
static int write_bytes(FILE *f, const char *tmp, void *size) {
    static char block[4096];
    for (size_t left = *(size_t *)size; left > 0;) {
        size_t n = left < sizeof block ? left : sizeof block;
        if (fwrite(block, 1, n, f) != n) return error_sys(errno, "writing '%s'", tmp);
        left -= n;
    }
    return 0;
}

Test(durable, a_full_disk_is_enospc_and_leaves_no_temporary, .fini = full_disk_unmount) {
    const char *disk = full_disk_mount("durable-full", 64);
    char path[128], got[64];
    snprintf(path, sizeof path, "%s/model.safetensors", disk);
    cr_assert_eq(durable_write(path, 0644, write_text, "old"), 0, "%s", error_get());
    /* more than the 64 KiB there are: the writer's fwrite fails */
    size_t big = 256 * 1024;
    cr_assert_eq(durable_write(path, 0644, write_bytes, &big), -1);
    cr_assert_eq(error_last()->sys_errno, ENOSPC, "%s", error_get());
    cr_assert(strncmp(error_get(), path, strlen(path)) == 0, "%s", error_get());
    cr_assert(strstr(error_get(), ": No space left on device"), "%s", error_get());
    read_file(path, got, sizeof got);
    cr_assert_str_eq(got, "old");
    cr_assert_eq(tmp_dir_count(disk), 1, "a temporary was left behind");

    /* full to the last byte: what stdio buffered fails at the flush */
    full_disk_fill();
    size_t small = 100;
    cr_assert_eq(durable_write(path, 0644, write_bytes, &small), -1);
    cr_assert_eq(error_last()->sys_errno, ENOSPC, "%s", error_get());
    cr_assert(strstr(error_get(), "No space left on device"), "%s", error_get());
    read_file(path, got, sizeof got);
    cr_assert_str_eq(got, "old");
    cr_assert_eq(tmp_dir_count(disk), 2, "a temporary was left behind (old file + filler)");
}

Test(durable, other_errors_carry_no_enospc, .init = setup, .fini = teardown) {
    char path[128];
    snprintf(path, sizeof path, "%s/no/such/file", dir);
    cr_assert_eq(durable_write(path, 0644, write_text, "x"), -1);
    cr_assert_eq(error_last()->sys_errno, ENOENT, "%s", error_get());
    /* a writer's own error, not a system call's */
    snprintf(path, sizeof path, "%s/token", dir);
    cr_assert_eq(durable_write(path, 0644, fail_halfway, "x"), -1);
    cr_assert_eq(error_last()->sys_errno, 0, "%s", error_get());
}

/* A folder of one file `name` holding `text`. */
static void make_folder(const char *path, const char *text) {
    char file[256];
    cr_assert_eq(mkdir(path, 0755), 0, "%s", path);
    snprintf(file, sizeof file, "%s/f", path);
    cr_assert_eq(durable_write(file, 0644, write_text, (void *)text), 0, "%s", error_get());
}

/* A folder swapped into place keeps the one it replaced at its own name,
 * so that a caller can swap them back (a checkpoint whose row could not
 * be written); with none in place, it is simply renamed. */
Test(durable, a_swapped_folder_keeps_the_old_one_to_swap_back, .init = setup,
     .fini = teardown) {
    char tmp[128], at[128], got[160];
    snprintf(tmp, sizeof tmp, "%s/new", dir);
    snprintf(at, sizeof at, "%s/epoch-1", dir);
    make_folder(tmp, "one\n");
    bool had = true;
    cr_assert_eq(durable_swap_dir(tmp, at, &had), 0, "%s", error_get());
    cr_assert(!had, "nothing was there");
    cr_assert_eq(access(tmp, F_OK), -1, "renamed, not copied");
    make_folder(tmp, "two\n");
    cr_assert_eq(durable_swap_dir(tmp, at, &had), 0, "%s", error_get());
    cr_assert(had);
    snprintf(got, sizeof got, "%s/f", at);
    char text[16];
    read_file(got, text, sizeof text);
    cr_assert_str_eq(text, "two\n", "the new one in place");
    snprintf(got, sizeof got, "%s/f", tmp);
    read_file(got, text, sizeof text);
    cr_assert_str_eq(text, "one\n", "the old one at the temporary name");
    cr_assert_eq(durable_swap_dir(tmp, at, &had), 0, "%s", error_get());
    snprintf(got, sizeof got, "%s/f", at);
    read_file(got, text, sizeof text);
    cr_assert_str_eq(text, "one\n", "swapped back");
}

/* A pid that was a process's and is no longer any (a child, reaped). */
static long dead_pid(void) {
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    return (long)pid;
}

static bool all_names(const char *name, void *ctx) { return (void)name, (void)ctx, true; }
static bool epochs_only(const char *name, void *ctx) {
    (void)ctx;
    return strncmp(name, "epoch-", 6) == 0;
}

/* What a writer killed (-9) left: its temporary folder and file go, and
 * so does a temporary of this pid that this process did not make (one
 * before it had the pid); the old folder a swap by renames had moved aside
 * comes back where its name is missing; a live writer's (this process's)
 * temporaries stay, and so do names that are not temporaries, names the
 * caller does not write, and temporaries younger than the age asked for. */
Test(durable, a_dead_writers_strays_are_removed_or_put_back, .init = setup, .fini = teardown) {
    long dead = dead_pid();
    char path[160], f[200], text[16];
    const char *folders[] = {"epoch-1.tmp.%ld.0", "epoch-3.tmp.%ld.1.old"};
    for (int i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, folders[i], dead);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        make_folder(path, i == 1 ? "old\n" : "part\n");
    }
    /* this process's own, and one of its pid it did not make (a process
     * before it that had the pid) */
    snprintf(path, sizeof path, "%s/epoch-4", dir);
    char *live = durable_temp_name(path);
    cr_assert(live);
    make_folder(live, "part\n");
    unsigned n;
    cr_assert_eq(sscanf(strrchr(live, '.') + 1, "%u", &n), 1);
    snprintf(path, sizeof path, "%s/epoch-5.tmp.%ld.%u", dir, (long)getpid(), n - 1000);
    make_folder(path, "part\n");
    snprintf(path, sizeof path, "%s/train.csv.tmp.%ld.7", dir, dead);
    tmp_dir_write_file(path, "x", 1);
    snprintf(path, sizeof path, "%s/epoch-2.tmpl", dir);
    tmp_dir_write_file(path, "keep", 4);
    cr_assert_eq(durable_remove_strays(dir, all_names, NULL, 3600), 0, "none an hour old");
    cr_assert_eq(durable_remove_strays(dir, epochs_only, NULL, 0), 3, "the epochs' alone");
    cr_assert_eq(durable_remove_strays(dir, all_names, NULL, 0), 1, "then the file");
    snprintf(f, sizeof f, "%s/epoch-3/f", dir);
    read_file(f, text, sizeof text);
    cr_assert_str_eq(text, "old\n", "the swap's old folder put back");
    cr_assert_eq(count_files(), 3, "epoch-3, the live writer's epoch-4 temporary, epoch-2.tmpl");
    cr_assert_eq(access(live, F_OK), 0);
    free(live);
    cr_assert_eq(durable_remove_strays(dir, all_names, NULL, 0), 0, "nothing more");
}
