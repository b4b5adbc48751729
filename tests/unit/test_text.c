/* test_text.c - server/text.c: the reply buffer, and text_real's numbers
 * checked byte for byte against jansson's json_dumps(json_real(v)), the
 * bytes every other JSON reply of the daemon has: special values, powers
 * of ten and their neighbours (where the decimal exponent estimate is off
 * by one), ties, and a million random doubles in and out of the fast
 * path's range. */
#include <criterion/criterion.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "server/text.h"

/* 1 when text_real(v) differs from jansson, after saying how */
static int real_differs(double v) {
    Text t = {0};
    text_real(&t, v);
    json_t *j = json_real(v);
    char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    int bad = !t.buf || !want || strcmp(t.buf, want) != 0;
    if (bad)
        cr_log_error("text_real(%a): \"%s\", jansson \"%s\"", v, t.buf ? t.buf : "(null)",
                     want ? want : "(null)");
    free(want);
    text_free(&t);
    return bad;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

Test(text, put_printf_int) {
    Text t = {0};
    text_puts(&t, "a");
    text_printf(&t, "%d-%s", 42, "b");
    text_int(&t, -9223372036854775807LL - 1);
    text_put(&t, ",", 1);
    text_int(&t, 0);
    cr_assert_str_eq(t.buf, "a42-b-9223372036854775808,0");
    cr_assert_eq(t.len, strlen(t.buf));
    for (int i = 0; i < 5000; i++) text_puts(&t, "0123456789"); /* grows past 4 KiB */
    cr_assert_eq(t.len, strlen("a42-b-9223372036854775808,0") + 50000);
    cr_assert_eq(t.buf[t.len], '\0');
    text_free(&t);
    cr_assert_null(t.buf);
}

Test(text, real_special_values) {
    double cases[] = {0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 1.5, 2.5, 100.0, 1e16, 1e17, 1e-5, 1e-6,
                      1e-7, 1e38, 1e39, 123456789012345678.0, 9007199254740993.0, 0.69314718055994531,
                      2.3025850929940459, 1.0 / 3, 2.0 / 3, DBL_MAX, DBL_MIN, DBL_TRUE_MIN,
                      DBL_EPSILON, 99999999999999999.0, 0.000123456, 9.9999999999999995e-7,
                      1.7976931348623157e38, 5e-324, 4503599627370497.5};
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        bad += real_differs(cases[i]) + real_differs(-cases[i]);
    Text t = {0};
    text_real(&t, NAN);
    text_real(&t, INFINITY);
    cr_assert_str_eq(t.buf, "nullnull");
    text_free(&t);
    cr_assert_eq(bad, 0, "%d numbers differ from jansson", bad);
}

/* every power of ten the fast path spans, its neighbours, and ties */
Test(text, real_powers_of_ten) {
    int bad = 0;
    for (int k = -8; k <= 40; k++) {
        double p = pow(10, k);
        double near[] = {p, nextafter(p, 0), nextafter(p, INFINITY), p * (1 - 1e-16),
                         p * (1 + 1e-16), 9.5 * p, 1.5 * p, 5 * p};
        for (size_t i = 0; i < sizeof near / sizeof *near; i++) bad += real_differs(near[i]);
    }
    cr_assert_eq(bad, 0, "%d numbers differ from jansson", bad);
}

Test(text, real_random_doubles) {
    uint64_t seed = 1;
    int bad = 0;
    for (int i = 0; i < 1000000 && bad < 10; i++) {
        uint64_t r = splitmix(&seed);
        double v;
        if (i % 4 == 0) { /* any finite bit pattern */
            memcpy(&v, &r, sizeof v);
            if (!isfinite(v)) continue;
        } else if (i % 4 == 1) { /* a float32 value, as losses are */
            v = (double)(float)((double)(r >> 11) / 9007199254740992.0 * 10);
        } else { /* the fast path's range, every magnitude */
            double mant = (double)(r >> 11) / 9007199254740992.0;
            v = (1 + mant) * pow(10, (int)(splitmix(&seed) % 46) - 7);
        }
        bad += real_differs(v);
    }
    cr_assert_eq(bad, 0, "%d numbers differ from jansson", bad);
}
