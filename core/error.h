/* error.h - the thread-local "last error" of core/.
 *
 * Functions in core/ report failure by returning NULL or -1 and leaving the
 * reason here, in the style of errno + strerror. The reason is a structure:
 * the whole sentence ("optimizer.lr: expected a number, got string") and,
 * when the error is about a field of the user's input, that field's JSON
 * path ("optimizer.lr"), so that an HTTP reply can name the field without
 * cutting it out of the text. Messages say what and where ("view(3,-1) of a
 * tensor of 10 elements"); callers higher up add context with error_prefix.
 * A failed system call's errno travels with its message (sys_errno), so
 * that a caller several layers up can tell a full disk (ENOSPC) from any
 * other failure without reading the text.
 * The state is per thread because the daemon trains several jobs at once.
 */
#ifndef TRAIND_CORE_ERROR_H
#define TRAIND_CORE_ERROR_H

#include <stdarg.h>

#define ERROR_MAX 1024
#define ERROR_PATH_MAX 256

typedef struct {
    char path[ERROR_PATH_MAX]; /* the JSON path of the field at fault, "" for none */
    char message[ERROR_MAX];   /* the whole sentence, path included */
    int sys_errno;             /* the errno of the system call at fault, 0 for none */
} Error;

/* Replace the current error (its path "", its sys_errno 0). Always returns
 * -1 so callers can `return error_set(...)`. */
int error_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A failed system call: "<fmt...>: <strerror(err)>", sys_errno err. -1. */
int error_sys(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Set the sys_errno of the current error, its message untouched (for a
 * message rebuilt from an earlier one). Returns -1. */
int error_set_errno(int err);
/* An error about the field at `path`: the message is "path: <fmt...>". */
int error_at(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepend context: "ctx: previous message"; the path and sys_errno stay.
 * Returns -1. */
int error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prepend a field's path, "path: previous message", which becomes the
 * error's path: the field whose value the inner error was about. */
int error_prefix_at(const char *path);
/* The current error, about a field of the object at `parent`, as seen from
 * above: "parent.<message>" and path "parent.<path>" (the message starts
 * with its path: "transforms[1] Normalize: ..." under "data"). Returns -1. */
int error_nest(const char *parent);
/* Set the path of the current error, its message untouched ("model[4]" for
 * "model[4] Linear: ..."). Returns -1. */
int error_set_path(const char *path);
/* The current message ("" when none). Valid until the next error_* call. */
const char *error_get(void);
/* The current error, path and message. */
const Error *error_last(void);
/* Makes *e (a copy of an earlier error_last()) the current error again,
 * for a caller whose clean-up may have replaced it. Returns -1. */
int error_restore(const Error *e);
void error_clear(void);

#endif
