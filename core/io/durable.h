/* durable.h - files written whole or not at all, and kept across a crash.
 *
 * A file is written to a temporary name beside it (unique to the process
 * and the call, so two writers never share one), flushed and fsynced, then
 * renamed over its name, and the directory holding it fsynced so that the
 * rename itself survives a power cut: a reader sees the old file or the
 * new one, never a half-written one, and a failure leaves no temporary
 * behind. Checkpoints (core/train_checkpoint.c), safetensors files
 * (core/io/safetensors.c) and the admin token (storage/users.c) are all
 * written this way.
 */
#ifndef TRAIND_CORE_IO_DURABLE_H
#define TRAIND_CORE_IO_DURABLE_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

/* Writes the content to f; 0, or -1 with an error naming what failed.
 * durable_write checks f's own write errors after it returns. */
typedef int (*DurableWriteFn)(FILE *f, const char *tmp_path, void *ctx);

/* path replaced by what write() writes, with the given mode. 0, or -1 with
 * an error "<path>: <what failed>" (nothing left at the temporary name);
 * a failed system call's errno is the error's sys_errno (ENOSPC: the disk
 * is full), as it is of a writer that reports its own with error_sys. */
int durable_write(const char *path, mode_t mode, DurableWriteFn write, void *ctx);

/* durable_write of a string. */
int durable_write_text(const char *path, mode_t mode, const char *text);

/* "<path>.tmp.<pid>.<n>", a name no other writer uses (n counts from a
 * random start: a process with the pid of one killed while writing does
 * not take the names it left): a new string, or NULL with an error. For a
 * file or directory built beside its final name. */
char *durable_temp_name(const char *path);

/* fsync of the directory holding path, after a rename into it. 0, or -1
 * with an error naming the directory. */
int durable_sync_parent(const char *path);
/* fsync of the directory dir itself (the names made in it). 0, or -1 with
 * an error naming it. */
int durable_sync_dir(const char *dir);

/* Puts the directory tmp in place of dir in one atomic step (the old dir,
 * if any, exchanged with it and removed; a filesystem without
 * RENAME_EXCHANGE leaves a short window without dir). 0, or -1 with an
 * error naming the paths. */
int durable_replace_dir(const char *tmp, const char *dir);
/* The same, the old dir kept: *had says whether there was one, now at
 * tmp (for the caller to remove, or to swap back). */
int durable_swap_dir(const char *tmp, const char *dir, bool *had);
/* Removes a directory holding only files (a checkpoint); best effort. */
void durable_remove_flat_dir(const char *path);

/* What a process killed (-9) while writing into dir left there: each
 * "<name>.tmp.<pid>.<n>" whose <name> the caller writes (ours(name)), of
 * a pid no longer alive on this machine, or of this process's pid but not
 * a name it made (one before it had the pid), and untouched for min_age_s (a
 * writer on another machine sharing the folder keeps writing to its own),
 * is removed (a file, or a directory of files), and a
 * "<name>.tmp.<pid>.<n>.old" whose <name> is missing (a swap without
 * RENAME_EXCHANGE cut short) is put back as <name>. The count removed or
 * put back; best effort. */
int durable_remove_strays(const char *dir, bool (*ours)(const char *name, void *ctx), void *ctx,
                          int min_age_s);

#endif
