/* json_text.c - a JSON string of text that may not be UTF-8 (json_text.h). */
#include "core/json_text.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

json_t *json_text(const char *s) {
    if (!s) s = "";
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy) return NULL;
    /* keep ASCII and well-formed multi-byte sequences, replace the rest */
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int len = p[i] < 0x80 ? 1 : (p[i] >> 5) == 6 ? 2 : (p[i] >> 4) == 14 ? 3
                  : (p[i] >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++) ok = (p[i + k] >> 6) == 2;
        if (ok && len > 1) { /* overlong forms and surrogates: let jansson judge */
            json_t *probe = json_stringn((const char *)p + i, (size_t)len);
            ok = probe != NULL;
            json_decref(probe);
        }
        if (!ok) {
            copy[o++] = '?';
            i++;
            continue;
        }
        memcpy(copy + o, p + i, (size_t)len);
        o += (size_t)len;
        i += (size_t)len;
    }
    j = json_stringn(copy, o);
    free(copy);
    return j;
}
