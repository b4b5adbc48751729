/* text_json.c - jansson values as compact JSON text; see text_json.h. */
#include "server/text_json.h"

#include <stdlib.h>

/* s[0..n) as a JSON string: '"' and '\\' escaped, control characters as
 * \b \f \n \r \t or \u00XX (upper-case hex, as jansson writes them), the
 * rest (UTF-8 included) as it is. */
static void json_string_text(Text *t, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    text_put(t, "\"", 1);
    size_t run = 0; /* the start of the bytes not yet written */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        text_put(t, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', (char)c};
        size_t len = 2;
        switch (c) {
        case '"': case '\\': break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            len = 6;
        }
        text_put(t, esc, len);
    }
    text_put(t, s + run, n - run);
    text_put(t, "\"", 1);
}

static void object_text(Text *t, const json_t *o) {
    const char *key;
    size_t key_len;
    json_t *value;
    bool first = true;
    text_put(t, "{", 1);
    /* jansson keeps an object's keys in insertion order */
    json_object_keylen_foreach((json_t *)o, key, key_len, value) {
        if (!first) text_put(t, ",", 1);
        first = false;
        json_string_text(t, key, key_len);
        text_put(t, ":", 1);
        text_json(t, value);
    }
    text_put(t, "}", 1);
}

static void array_text(Text *t, const json_t *a) {
    text_put(t, "[", 1);
    for (size_t i = 0; i < json_array_size(a); i++) {
        if (i) text_put(t, ",", 1);
        text_json(t, json_array_get(a, i));
    }
    text_put(t, "]", 1);
}

void text_json(Text *t, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: object_text(t, v); break;
    case JSON_ARRAY: array_text(t, v); break;
    case JSON_STRING: json_string_text(t, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: text_int(t, (long long)json_integer_value(v)); break;
    case JSON_REAL: text_real(t, json_real_value(v)); break;
    case JSON_TRUE: text_put(t, "true", 4); break;
    case JSON_FALSE: text_put(t, "false", 5); break;
    case JSON_NULL: text_put(t, "null", 4); break;
    }
}

char *text_json_dumps(const json_t *v, size_t *len) {
    if (!v) return NULL;
    Text t = {0};
    text_json(&t, v);
    if (t.oom || !t.buf) {
        text_free(&t);
        return NULL;
    }
    if (len) *len = t.len;
    return t.buf;
}
