/* dataset_archive.h - an uploaded .tar, .tar.gz or .zip extracted safely
 * into a dataset's directory (an image folder arrives as one archive).
 *
 * Safe means the archive decides nothing outside the folder it is given:
 * entries with an absolute path or a ".." component, symlinks, hard links
 * and device/fifo/socket entries are refused, naming the entry; only
 * regular files and directories are written, with fixed modes, each file
 * created anew (O_EXCL | O_NOFOLLOW: an entry given twice is refused).
 * Entries are counted (DATASET_ARCHIVE_MAX_ENTRIES) and the bytes written
 * are counted as they are written, not as headers claim, with 4096 bytes
 * more for each entry (its inode and directory block: a million empty
 * entries are not free), against a limit the caller gives (the owner's
 * dataset-byte quota): a zip bomb stops at the limit. The folder is filled under "<dir>.part", synced (syncfs),
 * and renamed to dir; on failure nothing is left. macOS's metadata
 * (__MACOSX/..., ._NAME files) is left out, unchecked and unwritten.
 */
#ifndef TRAIND_SERVER_DATASET_ARCHIVE_H
#define TRAIND_SERVER_DATASET_ARCHIVE_H

#include <stdbool.h>
#include <stdint.h>

#define DATASET_ARCHIVE_MAX_ENTRIES 2000000

/* Extracts the archive at `path` (called `name` in errors: the file the
 * client sent) into `dir` (through dir.part, renamed and fsynced into
 * place; whatever a crash left at either name is removed first). Returns
 * the bytes written (an entry's overhead, each file and folder made,
 * included), or -1 with an error "archive 'NAME': ..."; *over_limit tells
 * the failure was max_bytes (max_bytes < 0: no limit but the disk), which
 * the error calls `limit_what` ("what the dataset-byte quota leaves"). */
int64_t dataset_archive_extract(const char *path, const char *name, const char *dir,
                                int64_t max_bytes, const char *limit_what, bool *over_limit);
/* Removes an extracted folder and everything in it (the error state is
 * left as it was: for cleaning up after a failure). */
void dataset_archive_remove(const char *dir);

#endif
