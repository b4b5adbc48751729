/* json_limits.c - the depth and string-length scan of a JSON body; see
 * json_limits.h. One pass, no allocation: brackets outside strings count
 * the depth, a string runs from its quote to the next unescaped quote. */
#include "server/json_limits.h"

#include "core/error.h"

/* Line and column (both from 1, columns in bytes) of byte i of s. */
static void line_col(const char *s, size_t i, int *line, int *col) {
    int l = 1;
    size_t start = 0;
    for (size_t k = 0; k < i; k++)
        if (s[k] == '\n') l++, start = k + 1;
    *line = l;
    *col = (int)(i - start) + 1;
}

/* The index of the quote that closes the string opened at s[open], or len
 * when the body ends inside it. */
static size_t string_end(const char *s, size_t len, size_t open) {
    size_t i = open + 1;
    while (i < len && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
    return i < len ? i : len;
}

int json_limits_check(const char *s, size_t len, int max_depth, size_t max_string) {
    int depth = 0, line, col;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '"') {
            size_t end = string_end(s, len, i);
            if (end - i - 1 > max_string) {
                line_col(s, i, &line, &col);
                return error_set("a string at line %d, column %d is longer than %zu bytes", line,
                                 col, max_string);
            }
            i = end;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                line_col(s, i, &line, &col);
                return error_set("arrays and objects nest deeper than %d levels at line %d, "
                                 "column %d", max_depth, line, col);
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}
