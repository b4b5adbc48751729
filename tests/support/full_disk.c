/* full_disk.c - see full_disk.h. */
#include "tests/support/full_disk.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "tests/support/tmp_dir.h"

static char dir[64];
static bool mounted;

const char *full_disk_mount(const char *tag, int kib) {
    tmp_dir_make(dir, sizeof dir, tag);
    char opts[32];
    snprintf(opts, sizeof opts, "size=%dk,mode=0700", kib);
    if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
        int err = errno;
        rmdir(dir);
        cr_skip_test("mounting a tmpfs on %s: %s (a full disk needs root to fake)", dir,
                     strerror(err));
    }
    mounted = true;
    return dir;
}

void full_disk_fill(void) {
    char path[128], block[4096];
    snprintf(path, sizeof path, "%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
    memset(block, 0xab, sizeof block);
    /* pages first, then the bytes of a last partial page */
    for (size_t size = sizeof block; size > 0; size /= 2)
        while (write(fd, block, size) > 0) {
        }
    cr_assert(errno == ENOSPC, "filling %s: %s", path, strerror(errno));
    close(fd);
}

void full_disk_unmount(void) {
    if (!mounted) return;
    umount2(dir, MNT_DETACH);
    rmdir(dir);
    mounted = false;
}
