/* data_lock.c - the flock of <data-dir>/traind.lock; see data_lock.h.
 *
 * The pid is written into the locked file itself, not through a temporary
 * file renamed over it: the lock belongs to the file's inode, and a rename
 * would hand the next daemon a fresh, unlocked one. */
#include "server/data_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/error.h"
#include "storage/db.h"

/* The pid the holder wrote into fd's file, or 0 when it has none yet. */
static long holder_pid(int fd) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    return n > 0 ? strtol(buf, NULL, 10) : 0;
}

static int write_pid(int fd) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n || fsync(fd) != 0) return -1;
    return 0;
}

int data_lock_take(const char *data_dir) {
    if (db_mkdir_p(data_dir) != 0) return error_prefix("data dir");
    char path[4200];
    snprintf(path, sizeof path, "%s/traind.lock", data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return error_set("data dir %s: cannot open %s: %s", data_dir, path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? holder_pid(fd) : 0;
        close(fd);
        if (e != EWOULDBLOCK)
            return error_set("data dir %s: cannot lock %s: %s", data_dir, path, strerror(e));
        if (pid > 0) return error_set("data dir %s is in use by pid %ld", data_dir, pid);
        return error_set("data dir %s is in use by another traind (%s)", data_dir, path);
    }
    if (write_pid(fd) != 0) {
        int e = errno;
        close(fd);
        return error_set("data dir %s: cannot write %s: %s", data_dir, path, strerror(e));
    }
    return fd;
}

void data_lock_release(int fd) {
    if (fd >= 0) close(fd);
}
