/* test_text_json.c - server/text_json.c, the writer of every JSON reply:
 * byte for byte jansson's json_dumps(JSON_COMPACT) for values without
 * reals (escapes of every control byte, quotes, backslashes, UTF-8, NUL
 * inside strings and keys, key order, nesting, integer extremes), reals
 * as Python writes them, and random trees that jansson parses back equal,
 * every real to the bit. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "server/text_json.h"

/* text_json_dumps(v) == want, and its length right */
static void assert_text(json_t *v, const char *want) {
    size_t len = 0;
    char *got = text_json_dumps(v, &len);
    cr_assert_not_null(got);
    cr_assert_str_eq(got, want);
    cr_assert_eq(len, strlen(want));
    free(got);
}

/* text_json_dumps(v) == json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) */
static void assert_as_jansson(json_t *v) {
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    cr_assert_not_null(want);
    assert_text(v, want);
    free(want);
}

Test(text_json, scalars_and_empty) {
    json_t *v[] = {json_true(), json_false(), json_null(), json_integer(0),
                   json_integer(INT64_MAX), json_integer(INT64_MIN), json_integer(-42),
                   json_string(""), json_object(), json_array()};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        assert_as_jansson(v[i]);
        json_decref(v[i]);
    }
    cr_assert_null(text_json_dumps(NULL, NULL));
}

Test(text_json, strings_escaped_as_jansson) {
    char all[256]; /* every byte below 0x80 but NUL, then UTF-8 */
    for (int i = 1; i < 128; i++) all[i - 1] = (char)i;
    strcpy(all + 127, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 /end");
    json_t *s = json_string(all);
    cr_assert_not_null(s);
    assert_as_jansson(s);
    json_decref(s);
    json_t *nul = json_stringn("a\0b", 3);
    assert_text(nul, "\"a\\u0000b\"");
    json_decref(nul);
    json_t *o = json_object();
    json_object_setn_new(o, "k\0\"\n", 4, json_string("\x1f\x7f"));
    assert_text(o, "{\"k\\u0000\\\"\\n\":\"\\u001F\x7f\"}");
    json_decref(o);
}

Test(text_json, keys_in_insertion_order) {
    json_t *o = json_object();
    const char *keys[] = {"zeta", "alpha", "mid", "beta", "a"};
    for (int i = 0; i < 5; i++) json_object_set_new(o, keys[i], json_integer(i));
    json_object_del(o, "mid");
    json_object_set_new(o, "mid", json_integer(9));     /* deleted and added: last */
    json_object_set_new(o, "alpha", json_integer(7)); /* replaced: keeps its place */
    assert_text(o, "{\"zeta\":0,\"alpha\":7,\"beta\":3,\"a\":4,\"mid\":9}");
    assert_as_jansson(o);
    json_decref(o);
}

Test(text_json, reals_as_python_writes_them) {
    json_t *v = json_pack("{s:f, s:[f, f, f, f, f, f], s:{s:f}}", "lr", 0.1, "x", 1e23, -0.0,
                          100.0, 1.0 / 3, 5e-324, 0.9537, "nested", "momentum", 0.95);
    cr_assert_not_null(v);
    assert_text(v, "{\"lr\":0.1,\"x\":[1e+23,-0.0,100.0,0.3333333333333333,5e-324,0.9537],"
                   "\"nested\":{\"momentum\":0.95}}");
    json_decref(v);
}

/* 64 random bits */
static uint64_t bits64(Rng *rng) { return (uint64_t)rng_next_u32(rng) << 32 | rng_next_u32(rng); }

/* A random string of 0..8 bytes: ASCII with control bytes and quotes */
static json_t *random_string(Rng *rng) {
    char b[9];
    uint64_t r = bits64(rng);
    size_t n = r % 9;
    for (size_t i = 0; i < n; i++) b[i] = (char)(1 + (r >> (8 + 6 * i)) % 127);
    return json_stringn(b, n);
}

/* A random tree down to `depth`, with reals when `reals` */
static json_t *random_value(Rng *rng, int depth, bool reals) {
    uint64_t r = bits64(rng);
    int kind = (int)(r % (depth > 0 ? 8 : 6));
    switch (kind) {
    case 0: return json_integer((json_int_t)bits64(rng));
    case 1: return random_string(rng);
    case 2: return json_boolean(r & 256);
    case 3: return json_null();
    case 4:
    case 5:
        if (reals) {
            double v;
            uint64_t bits = bits64(rng);
            memcpy(&v, &bits, sizeof v);
            return json_real(isfinite(v) ? v : (double)(r >> 12) / 4096.0);
        }
        return json_integer((json_int_t)(r >> 40));
    case 6: {
        json_t *a = json_array();
        for (uint64_t i = r >> 50; i > 0; i -= 1 + i / 2)
            json_array_append_new(a, random_value(rng, depth - 1, reals));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (uint64_t i = r >> 50; i > 0; i -= 1 + i / 2) {
            json_t *k = random_string(rng);
            json_object_setn_new(o, json_string_value(k), json_string_length(k),
                                 random_value(rng, depth - 1, reals));
            json_decref(k);
        }
        return o;
    }
    }
}

Test(text_json, random_trees) {
    Rng rng;
    rng_init(&rng, 7);
    for (int i = 0; i < 2000; i++) {
        json_t *plain = random_value(&rng, 4, false);
        assert_as_jansson(plain);
        json_decref(plain);

        json_t *v = random_value(&rng, 4, true);
        char *text = text_json_dumps(v, NULL);
        cr_assert_not_null(text);
        json_error_t err;
        json_t *back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        cr_assert_not_null(back, "tree %d: jansson cannot parse '%.200s': %s", i, text, err.text);
        /* json_equal compares reals with ==: every real read back exactly */
        cr_assert(json_equal(v, back), "tree %d: '%.200s' reads back different", i, text);
        json_decref(back);
        free(text);
        json_decref(v);
    }
}
