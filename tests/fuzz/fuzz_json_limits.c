/* fuzz_json_limits.c - the depth and string-length scan every JSON body
 * passes before jansson (server/json_limits.c), against jansson itself.
 *
 * Byte 0 is the limits (bits 0-3: depth 1..16; bits 4-7: strings of at
 * most 4 × (1..16) bytes), the rest the body. Where the scan lets a body
 * through and jansson parses it (as http_json_body does), it nests no
 * deeper and holds no string (key or value) longer, decoded, than the
 * limits: the raw bytes the scan counts are never fewer. Where the scan
 * refuses a body jansson parses for its depth, jansson's own nesting is
 * deeper; a refusal always has its message.
 */
#include <jansson.h>
#include <string.h>

#include "core/error.h"
#include "server/json_limits.h"
#include "tests/fuzz/fuzz_support.h"

typedef struct {
    int depth;     /* of the deepest array or object, 1 for the outermost */
    size_t string; /* the longest string's (or key's) decoded bytes */
} Extent;

static void walk(json_t *v, int level, Extent *x) {
    if (json_is_string(v) && json_string_length(v) > x->string) x->string = json_string_length(v);
    if (!json_is_array(v) && !json_is_object(v)) return;
    if (level > x->depth) x->depth = level;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) walk(e, level + 1, x);
        return;
    }
    const char *key;
    json_t *e;
    json_object_foreach(v, key, e) {
        if (strlen(key) > x->string) x->string = strlen(key);
        walk(e, level + 1, x);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int max_depth = (data[0] & 15) + 1;
    size_t max_string = 4 * (size_t)((data[0] >> 4) + 1);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    fuzz_begin();
    int rc = json_limits_check(body, len, max_depth, max_string);
    fuzz_end("json_limits_check", rc != 0);
    bool deep = rc != 0 && strstr(error_get(), "nest deeper") != NULL;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!j) return 0;
    Extent x = {0, 0};
    walk(j, 1, &x);
    json_decref(j);
    if (rc == 0 && (x.depth > max_depth || x.string > max_string))
        fuzz_fail("let through a body of depth %d and a string of %zu bytes (limits %d, %zu)",
                  x.depth, x.string, max_depth, max_string);
    if (deep && x.depth <= max_depth)
        fuzz_fail("refused for its depth a body jansson nests %d deep (limit %d): %s", x.depth,
                  max_depth, error_get());
    return 0;
}
