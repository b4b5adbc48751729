/* disk_space.h - a full disk, said the same way wherever the daemon writes
 * one: a checkpoint (server/attempt.c), an upload
 * (server/routes/dataset_upload.c), a URL import (server/importer.c).
 *
 * Whether an error was the disk running out is its sys_errno (core/error.h):
 * ENOSPC, from the file written or from SQLite (storage/ maps SQLITE_FULL
 * to it), or EDQUOT, a filesystem quota. The free space is the filesystem's
 * own count (statvfs), read after the failed write was cleaned up: what a
 * retry would find.
 */
#ifndef TRAIND_SERVER_DISK_SPACE_H
#define TRAIND_SERVER_DISK_SPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether a failure with this errno was a full disk (ENOSPC, EDQUOT). */
bool disk_space_full(int sys_errno);

/* Bytes an unprivileged writer may still put in the filesystem of path
 * (statvfs: f_bavail * f_frsize); -1 when it cannot be read. */
int64_t disk_space_free(const char *path);

/* "412.0 kB free in the data dir" for the filesystem of path ("free space
 * unknown" when statvfs fails), into buf; returns buf. */
const char *disk_space_left(const char *path, char *buf, size_t size);

#endif
