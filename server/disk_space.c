/* disk_space.c - a full disk told from its errno, and the space left; see
 * disk_space.h. */
#include "server/disk_space.h"

#include <errno.h>
#include <stdio.h>
#include <sys/statvfs.h>

#include "server/quota_text.h"

bool disk_space_full(int sys_errno) { return sys_errno == ENOSPC || sys_errno == EDQUOT; }

int64_t disk_space_free(const char *path) {
    struct statvfs st;
    if (statvfs(path, &st) != 0) return -1;
    return (int64_t)st.f_bavail * (int64_t)st.f_frsize;
}

const char *disk_space_left(const char *path, char *buf, size_t size) {
    int64_t free_bytes = disk_space_free(path);
    char amount[32];
    if (free_bytes < 0)
        snprintf(buf, size, "free space unknown");
    else
        snprintf(buf, size, "%s free in the data dir",
                 quota_text_bytes(free_bytes, amount, sizeof amount));
    return buf;
}
