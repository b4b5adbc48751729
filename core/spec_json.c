/* spec_json.c - typed JSON field readers with path errors, for the job spec
 * parser (see spec_json.h). Keeping the "expected a number, got string"
 * wording in one place makes every field of the spec fail the same way. */
#include "core/spec_json.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

const char *spec_json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER:
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

const char *spec_path_key(char *buf, const char *parent, const char *key) {
    if (parent && parent[0])
        snprintf(buf, SPEC_PATH_MAX, "%s.%s", parent, key);
    else
        snprintf(buf, SPEC_PATH_MAX, "%s", key);
    return buf;
}

const char *spec_path_index(char *buf, const char *parent, size_t i) {
    snprintf(buf, SPEC_PATH_MAX, "%s[%zu]", parent, i);
    return buf;
}

int spec_expect_object(const json_t *v, const char *path) {
    if (json_is_object(v)) return 0;
    if (!path || !path[0]) /* the whole spec: no field to name */
        return error_set("job spec: expected an object, got %s", spec_json_kind(v));
    return error_at(path, "expected an object, got %s", spec_json_kind(v));
}

/* Edit distance with transpositions (optimal string alignment),
 * case-insensitive: "momentun" and "bais" are one edit from the field meant. */
static int distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 99;
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            int best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

int spec_suggest(const char *word, const char *const *known) {
    int best = -1, best_d = 99;
    size_t len = strlen(word);
    int limit = len >= 6 ? 2 : 1;
    for (int i = 0; known[i]; i++) {
        int d = distance(word, known[i]);
        if (d < best_d) best = i, best_d = d;
    }
    return best_d <= limit ? best : -1;
}

int spec_check_fields(const json_t *obj, const char *path, const char *const *known,
                      const char *owner) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        bool found = false;
        for (int i = 0; known[i] && !found; i++) found = strcmp(key, known[i]) == 0;
        if (found) continue;
        char p[SPEC_PATH_MAX];
        spec_path_key(p, path, key);
        int s = spec_suggest(key, known);
        if (s >= 0) return error_at(p, "unknown field (did you mean '%s'?)", known[s]);
        char list[512];
        size_t n = 0;
        list[0] = '\0';
        for (int i = 0; known[i] && n < sizeof list; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", known[i]);
        if (owner) return error_at(p, "unknown field (%s takes %s)", owner, list);
        return error_at(p, "unknown field (known: %s)", list);
    }
    return 0;
}

int spec_int_value(const json_t *v, const char *path, int64_t lo, int64_t hi, int64_t *out) {
    if (json_is_real(v)) return error_at(path, "expected an integer, got %g", json_real_value(v));
    if (!json_is_integer(v))
        return error_at(path, "expected an integer, got %s", spec_json_kind(v));
    long long x = json_integer_value(v);
    if (x < lo) return error_at(path, "must be >= %lld, got %lld", (long long)lo, x);
    if (x > hi) return error_at(path, "must be <= %lld, got %lld", (long long)hi, x);
    *out = (int64_t)x;
    return 0;
}

int spec_number_value(const json_t *v, const char *path, double *out) {
    if (!json_is_number(v)) return error_at(path, "expected a number, got %s", spec_json_kind(v));
    double x = json_number_value(v);
    if (!isfinite(x)) return error_at(path, "must be finite, got %g", x);
    *out = x;
    return 0;
}

int spec_non_negative(const char *path, const char *key, double x) {
    char p[SPEC_PATH_MAX];
    if (x < 0) return error_at(spec_path_key(p, path, key), "must be >= 0, got %g", x);
    return 0;
}

int spec_get_int(const json_t *obj, const char *path, const char *key, bool required,
                 int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    char p[SPEC_PATH_MAX];
    spec_path_key(p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required) return error_at(p, "required");
        *out = def;
        return 0;
    }
    return spec_int_value(v, p, lo, hi, out);
}

int spec_get_number(const json_t *obj, const char *path, const char *key, bool required,
                    double def, double *out) {
    char p[SPEC_PATH_MAX];
    spec_path_key(p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required) return error_at(p, "required");
        *out = def;
        return 0;
    }
    return spec_number_value(v, p, out);
}

int spec_get_bool(const json_t *obj, const char *path, const char *key, bool def, bool *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        char p[SPEC_PATH_MAX];
        return error_at(spec_path_key(p, path, key), "expected true or false, got %s",
                        spec_json_kind(v));
    }
    *out = json_is_true(v);
    return 0;
}

int spec_get_string(const json_t *obj, const char *path, const char *key, bool required,
                    const char **out) {
    char p[SPEC_PATH_MAX];
    spec_path_key(p, path, key);
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v) return required ? error_at(p, "required") : 0;
    if (!json_is_string(v)) return error_at(p, "expected a string, got %s", spec_json_kind(v));
    if (json_string_length(v) == 0) return error_at(p, "must not be empty");
    *out = json_string_value(v);
    return 0;
}

char *spec_strdup(const char *s) {
    char *d = strdup(s);
    if (!d) error_set("job spec: out of memory");
    return d;
}

char *spec_resolve_path(const char *base_dir, const char *path) {
    if (!base_dir || !base_dir[0] || path[0] == '/' || strcmp(base_dir, ".") == 0)
        return spec_strdup(path);
    size_t n = strlen(base_dir) + strlen(path) + 2;
    char *s = malloc(n);
    if (!s) {
        error_set("job spec: out of memory");
        return NULL;
    }
    snprintf(s, n, "%s%s%s", base_dir, base_dir[strlen(base_dir) - 1] == '/' ? "" : "/", path);
    return s;
}

/* obj[key] as a path resolved against base_dir, into *out (owned). */
int spec_get_path(const json_t *obj, const char *path, const char *key, const char *base_dir,
                    char **out) {
    const char *s;
    if (spec_get_string(obj, path, key, true, &s)) return -1;
    return (*out = spec_resolve_path(base_dir, s)) ? 0 : -1;
}

/* An argument traind accepts only at torch's default `def` (consumed). */
int spec_only_default(const json_t *obj, const char *path, const char *key, json_t *def,
                      const char *def_text) {
    json_t *v = json_object_get(obj, key);
    int ok = !v || json_equal(v, def);
    json_decref(def);
    if (ok) return 0;
    char p[SPEC_PATH_MAX];
    spec_path_key(p, path, key);
    char *got = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    error_at(p, "only torch's default %s is supported, got %s", def_text,
             got ? got : spec_json_kind(v));
    free(got);
    return -1;
}
