/* error.h - the thread-local "last error" of core/.
 *
 * Functions in core/ report failure by returning NULL or -1 and leaving a
 * human-readable message here, in the style of errno + strerror. Messages say
 * what and where ("view(3,-1) of a tensor of 10 elements"); callers higher up
 * add context with error_prefix ("model[4] Linear: ..."). The buffer is per
 * thread because the daemon trains several jobs at once.
 */
#ifndef TRAIND_CORE_ERROR_H
#define TRAIND_CORE_ERROR_H

#include <stdarg.h>

#define ERROR_MAX 1024

/* Replace the current message. Always returns -1 so callers can
 * `return error_set(...)`. */
int error_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prepend context: "ctx: previous message". Returns -1. */
int error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The current message ("" when none). Valid until the next error_* call. */
const char *error_get(void);
void error_clear(void);

#endif
