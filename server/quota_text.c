/* quota_text.c - limits as written and read by people; see quota_text.h. */
#include "server/quota_text.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Above this a byte count does not fit int64 once scaled. */
#define QUOTA_TEXT_MAX 9.2e18

int quota_text_parse(const char *text, double scale, int64_t *out) {
    const char *kind = scale == 1 ? "an integer >= 0" : "a number >= 0";
    if (!text || !*text)
        return error_set("expected %s, 'default' or 'unlimited', got ''", kind);
    if (!strcmp(text, "default")) {
        *out = DB_QUOTA_DEFAULT;
        return 0;
    }
    if (!strcmp(text, "unlimited")) {
        *out = DB_QUOTA_UNLIMITED;
        return 0;
    }
    char *end;
    errno = 0;
    double v = scale == 1 ? (double)strtoll(text, &end, 10) : strtod(text, &end);
    if (*end || errno || text[0] == '-' || text[0] == '+' || text[0] == ' ' || !isfinite(v) ||
        v < 0 || v * scale > QUOTA_TEXT_MAX)
        return error_set("expected %s, 'default' or 'unlimited', got '%.40s'", kind, text);
    /* exact for the integers; a decimal of GB rounds to the byte */
    *out = scale == 1 ? strtoll(text, NULL, 10) : (int64_t)llround(v * scale);
    return 0;
}

const char *quota_text_bytes(int64_t bytes, char *buf, size_t size) {
    static const char *const units[] = {"kB", "MB", "GB", "TB", "PB", "EB"};
    if (bytes < 1000) {
        snprintf(buf, size, "%lld B", (long long)bytes);
        return buf;
    }
    double v = (double)bytes / 1000;
    size_t u = 0;
    while (v >= 1000 && u + 1 < sizeof units / sizeof *units) {
        v /= 1000;
        u++;
    }
    snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

static bool is_bytes(QuotaLimit k) {
    return k == QUOTA_DATASET_BYTES || k == QUOTA_CHECKPOINT_BYTES;
}

const char *quota_text_limit(QuotaLimit k, int64_t v, char *buf, size_t size) {
    if (v == DB_QUOTA_DEFAULT)
        snprintf(buf, size, "default");
    else if (v < 0)
        snprintf(buf, size, "unlimited");
    else if (is_bytes(k))
        quota_text_bytes(v, buf, size);
    else
        snprintf(buf, size, "%lld", (long long)v);
    return buf;
}

json_t *quota_text_json(const DbQuota *q, bool effective) {
    json_t *o = json_object();
    for (int k = 0; o && k < QUOTA_NUM_LIMITS; k++) {
        int64_t v = quota_get(q, k);
        json_t *j = v == DB_QUOTA_DEFAULT && !effective ? json_null()
                    : v < 0               ? json_string("unlimited")
                                          : json_integer(v);
        if (json_object_set_new(o, quota_limit_name(k), j) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* The limit named `name`, or -1. */
static int limit_of(const char *name) {
    for (int k = 0; k < QUOTA_NUM_LIMITS; k++)
        if (!strcmp(name, quota_limit_name(k))) return k;
    return -1;
}

int quota_text_from_json(const json_t *obj, DbQuota *change) {
    for (int k = 0; k < QUOTA_NUM_LIMITS; k++) quota_set(change, k, DB_QUOTA_UNCHANGED);
    if (!json_is_object(obj))
        return error_at("quota", "expected an object of limits (running_jobs, queued_jobs, "
                                 "gpus, dataset_bytes, checkpoint_bytes)");
    const char *key;
    json_t *v;
    char path[96];
    json_object_foreach((json_t *)obj, key, v) {
        snprintf(path, sizeof path, "quota.%.64s", key);
        int k = limit_of(key);
        if (k < 0)
            return error_at(path, "unknown limit (known: running_jobs, queued_jobs, gpus, "
                                  "dataset_bytes, checkpoint_bytes)");
        if (json_is_null(v))
            quota_set(change, k, DB_QUOTA_DEFAULT);
        else if (json_is_string(v) && !strcmp(json_string_value(v), "unlimited"))
            quota_set(change, k, DB_QUOTA_UNLIMITED);
        else if (json_is_integer(v) && json_integer_value(v) >= 0)
            quota_set(change, k, json_integer_value(v));
        else
            return error_at(path, "expected an integer >= 0, \"unlimited\" or null (the "
                                  "daemon's default)");
    }
    return 0;
}

const char *quota_text_describe(const DbQuota *change, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; k < QUOTA_NUM_LIMITS; k++) {
        int64_t v = quota_get(change, k);
        if (v == DB_QUOTA_UNCHANGED) continue;
        char value[32];
        if (v >= 0)
            snprintf(value, sizeof value, "%lld", (long long)v);
        else
            snprintf(value, sizeof value, "%s", v == DB_QUOTA_DEFAULT ? "default" : "unlimited");
        int n = snprintf(buf + len, size - len, "%s%s=%s", len ? " " : "", quota_limit_name(k),
                         value);
        if (n < 0 || (size_t)n >= size - len) break; /* cut: the buffer holds what fit */
        len += (size_t)n;
    }
    return buf;
}
