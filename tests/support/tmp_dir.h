/* tmp_dir.h - a fresh directory under /tmp for a test's files, and the
 * few things tests do with it. Each call fails the current Criterion test
 * where it cannot do its part.
 */
#ifndef TRAIND_TESTS_TMP_DIR_H
#define TRAIND_TESTS_TMP_DIR_H

#include <stddef.h>

/* Makes "/tmp/traind-<tag>-XXXXXX" and writes its name into dir. */
void tmp_dir_make(char *dir, size_t size, const char *tag);
/* rm -r path (links not followed); nothing to do where it is absent.
 * What it cannot remove it says on stderr, without failing the test. */
void tmp_dir_remove(const char *path);
/* "dir/name" into buf, which it returns. */
const char *tmp_dir_path(const char *dir, const char *name, char *buf, size_t size);
/* The entries of directory path other than "." and "..". */
int tmp_dir_count(const char *path);
/* Writes n bytes to path (a new file, or replacing one). */
void tmp_dir_write_file(const char *path, const void *data, size_t n);

#endif
