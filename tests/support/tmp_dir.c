/* tmp_dir.c - see tmp_dir.h. */
#include "tests/support/tmp_dir.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tmp_dir_make(char *dir, size_t size, const char *tag) {
    int n = snprintf(dir, size, "/tmp/traind-%s-XXXXXX", tag);
    cr_assert(n > 0 && (size_t)n < size, "tmp_dir_make: '%s' does not fit %zu bytes", tag, size);
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)f;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    return rc == 0 || errno == ENOENT ? 0 : -1; /* gone meanwhile: as good */
}

/* What cannot be removed is said, not failed on: the test's result is
 * already decided. */
void tmp_dir_remove(const char *path) {
    if (access(path, F_OK) != 0 && errno == ENOENT) return;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "tmp_dir_remove: cannot remove %s: %s\n", path, strerror(errno));
}

const char *tmp_dir_path(const char *dir, const char *name, char *buf, size_t size) {
    int n = snprintf(buf, size, "%s/%s", dir, name);
    cr_assert(n > 0 && (size_t)n < size, "tmp_dir_path: %s/%s does not fit %zu bytes", dir, name,
              size);
    return buf;
}

int tmp_dir_count(const char *path) {
    DIR *d = opendir(path);
    cr_assert(d != NULL, "cannot open directory %s: %s", path, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

void tmp_dir_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot write %s: %s", path, strerror(errno));
    cr_assert(n == 0 || fwrite(data, 1, n, f) == n, "short write to %s", path);
    cr_assert(fclose(f) == 0, "cannot close %s: %s", path, strerror(errno));
}
