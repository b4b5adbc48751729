/* fuzz_archive.c - the uploaded-archive extraction (server/dataset_archive.c,
 * libarchive underneath: .tar, .tar.gz, .zip).
 *
 * The input is the archive, extracted with a 64 KiB byte limit into
 * GRAND/p/d, GRAND a fresh temporary directory (on /dev/shm when it can:
 * the extraction syncs its filesystem). dataset_archive.h's promises are
 * checked: the archive writes nothing outside the folder (afterwards GRAND
 * holds only p, and p only d on success, nothing on failure: no ".part"
 * left); what it wrote is plain files and directories only, no symlink or
 * device, modes within 0755; what it returned is their bytes and 4096 for
 * each entry of the archive, at most the limit; a failure has a message,
 * and over_limit only with one.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/dataset_archive.h"
#include "tests/fuzz/fuzz_support.h"

#define LIMIT (64 << 10)

static char grand[64], parent[80], dir[96];

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)f;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static void remove_tree(const char *p) { nftw(p, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void cleanup(void) {
    if (grand[0]) remove_tree(grand);
}

/* GRAND/p, made once per process. */
static void setup(void) {
    const char *bases[] = {"/dev/shm", "/tmp"};
    for (int i = 0; i < 2 && !grand[0]; i++) {
        snprintf(grand, sizeof grand, "%s/fuzz_archive.XXXXXX", bases[i]);
        if (!mkdtemp(grand)) grand[0] = '\0';
    }
    if (!grand[0]) fuzz_fail("mkdtemp: %s", strerror(errno));
    snprintf(parent, sizeof parent, "%s/p", grand);
    snprintf(dir, sizeof dir, "%s/d", parent);
    if (mkdir(parent, 0755) != 0) fuzz_fail("mkdir %s: %s", parent, strerror(errno));
    atexit(cleanup);
}

/* Aborts unless folder `path` holds exactly `only` (NULL: nothing). */
static void expect_only(const char *path, const char *only) {
    DIR *d = opendir(path);
    if (!d) fuzz_fail("opendir %s: %s", path, strerror(errno));
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!only || strcmp(e->d_name, only) != 0)
            fuzz_fail("archive: '%s' appeared in %s, outside the folder", e->d_name, path);
        found++;
    }
    closedir(d);
    if (only && found != 1) fuzz_fail("archive: %s lacks '%s'", path, only);
}

static int64_t tree_bytes;

static int check_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)f;
    if (flag != FTW_F && flag != FTW_D) fuzz_fail("archive: cannot walk '%s' (%d)", p, flag);
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
        fuzz_fail("archive: '%s' is not a file or directory (mode %o)", p, st->st_mode);
    if (st->st_mode & 07777 & ~0755u)
        fuzz_fail("archive: '%s' has mode %o", p, st->st_mode & 07777);
    if (S_ISREG(st->st_mode)) tree_bytes += st->st_size;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!grand[0]) setup();
    const char *path = fuzz_file(0, (FuzzBytes){data, size});
    bool over = false;
    fuzz_begin();
    int64_t written = dataset_archive_extract(path, "fuzz.tar", dir, LIMIT, "the fuzz limit", &over);
    fuzz_end("dataset_archive_extract", written < 0);
    expect_only(grand, "p");
    expect_only(parent, written < 0 ? NULL : "d");
    if (written < 0) return 0;
    if (over) fuzz_fail("archive: over_limit set on a success");
    tree_bytes = 0;
    if (nftw(dir, check_entry, 16, FTW_PHYS) != 0) fuzz_fail("nftw %s: %s", dir, strerror(errno));
    /* the files' bytes and 4096 for each entry of the archive */
    if (written < tree_bytes || (written - tree_bytes) % 4096 != 0 || written > LIMIT)
        fuzz_fail("archive: %lld bytes written, %lld in its files, limit %d", (long long)written,
                  (long long)tree_bytes, LIMIT);
    remove_tree(dir);
    return 0;
}
