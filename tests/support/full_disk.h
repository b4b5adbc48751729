/* full_disk.h - a disk that fills, for the tests of what a full disk does:
 * a small tmpfs mounted on a fresh temporary directory, filled to its last
 * byte on demand, unmounted after. One per test (Criterion runs each test
 * in a process of its own). Mounting needs root (CAP_SYS_ADMIN): where it
 * is refused, the current test is skipped, saying why.
 */
#ifndef TRAIND_TESTS_FULL_DISK_H
#define TRAIND_TESTS_FULL_DISK_H

/* A tmpfs of kib KiB on a new directory /tmp/traind-<tag>-XXXXXX, whose
 * path it returns; skips the test when it cannot be mounted. The test
 * names full_disk_unmount as its .fini. */
const char *full_disk_mount(const char *tag, int kib);
/* Fills what is left with the file <dir>/filler, written until ENOSPC. */
void full_disk_fill(void);
/* Unmounts and removes the directory; nothing when none is mounted. */
void full_disk_unmount(void);

#endif
