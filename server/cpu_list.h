/* cpu_list.h - Linux CPU lists ("0-3,8"), the form taskset -c takes and
 * /proc/PID/status's Cpus_allowed_list shows, to and from a cpu_set_t.
 * serve's --http-cpus is one: the CPUs the HTTP threads run on, the
 * training workers taking the rest (serve.c says why).
 */
#ifndef TRAIND_SERVER_CPU_LIST_H
#define TRAIND_SERVER_CPU_LIST_H

#include <sched.h>
#include <stddef.h>

/* Parse TEXT ("1", "0-3,8", "2-2"): 0, or -1 with a message naming the byte
 * where it goes wrong (error_get) on an empty list, a CPU number at or
 * above CPU_SETSIZE, a range that runs backwards, or stray characters. */
int cpu_list_parse(const char *text, cpu_set_t *out);
/* SET as a CPU list ("0-3,8"; "" for the empty set), cut after the last
 * entry that fits in N bytes. */
void cpu_list_format(const cpu_set_t *set, char *buf, size_t n);

#endif
