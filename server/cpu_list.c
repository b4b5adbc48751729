/* cpu_list.c - Linux CPU lists ("0-3,8") to and from a cpu_set_t; see
 * cpu_list.h. The parser is strict, as an option of a daemon should be:
 * "1,,2" or "3-1" is refused with the byte where it goes wrong rather than
 * read as something the operator did not mean.
 */
#include "server/cpu_list.h"

#include <stdio.h>

#include "core/error.h"

/* A CPU number at TEXT[*pos], below CPU_SETSIZE: -1 when there is none. */
static int read_cpu(const char *text, size_t *pos) {
    size_t i = *pos;
    long v = 0;
    if (text[i] < '0' || text[i] > '9') return -1;
    while (text[i] >= '0' && text[i] <= '9') {
        v = v * 10 + (text[i] - '0');
        if (v >= CPU_SETSIZE) return -1;
        i++;
    }
    *pos = i;
    return (int)v;
}

int cpu_list_parse(const char *text, cpu_set_t *out) {
    CPU_ZERO(out);
    size_t i = 0;
    for (;;) {
        int first = read_cpu(text, &i);
        if (first < 0)
            return error_set("CPU list '%s', byte %zu: expected a CPU number below %d", text, i,
                             CPU_SETSIZE);
        int last = first;
        if (text[i] == '-') {
            size_t at = ++i;
            last = read_cpu(text, &i);
            if (last < 0)
                return error_set("CPU list '%s', byte %zu: expected a CPU number below %d after "
                                 "'-'", text, at, CPU_SETSIZE);
            if (last < first)
                return error_set("CPU list '%s', byte %zu: the range %d-%d runs backwards", text,
                                 at, first, last);
        }
        for (int c = first; c <= last; c++) CPU_SET(c, out);
        if (text[i] == '\0') return 0;
        if (text[i] != ',')
            return error_set("CPU list '%s', byte %zu: expected ',' or '-', got '%c'", text, i,
                             text[i]);
        i++;
    }
}

void cpu_list_format(const cpu_set_t *set, char *buf, size_t n) {
    size_t len = 0;
    if (n) buf[0] = '\0';
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, set)) continue;
        int last = c;
        while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, set)) last++;
        int w = last > c ? snprintf(buf + len, n - len, "%s%d-%d", len ? "," : "", c, last)
                         : snprintf(buf + len, n - len, "%s%d", len ? "," : "", c);
        if (w < 0 || (size_t)w >= n - len) { /* cut after the last whole entry */
            if (n) buf[len] = '\0';
            return;
        }
        len += (size_t)w;
        c = last;
    }
}
