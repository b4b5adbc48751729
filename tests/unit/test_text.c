/* test_text.c - server/text.c: the reply buffer, and text_real's numbers:
 * the digits and layout Python's repr(float) gives (the expected strings
 * below are repr's, from CPython 3.11), and over a million random doubles
 * of every kind (any bit pattern, float32 values, subnormals, powers of
 * two, short decimals) the three properties that define them: strtod reads
 * the text back to the same bits, no decimal one digit shorter does, and
 * of the decimals as long, the one nearest the double is written. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/repr.h"
#include "server/text.h"

/* 64 random bits */
static uint64_t bits64(Rng *rng) { return (uint64_t)rng_next_u32(rng) << 32 | rng_next_u32(rng); }

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

Test(text, real_as_python_repr) {
    static const struct {
        double v;
        const char *repr;
    } cases[] = {
        {0.1, "0.1"},
        {1.0 / 3, "0.3333333333333333"},
        {0.9537, "0.9537"},
        {(double)0.9537f, "0.9537000060081482"},
        {0.9263, "0.9263"},
        {5e-324, "5e-324"},
        {1.5e-323, "1.5e-323"},
        {DBL_MIN, "2.2250738585072014e-308"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {1e23, "1e+23"},
        {1e21, "1e+21"},
        {1e22, "1e+22"},
        {1e-7, "1e-07"},
        {1e-5, "1e-05"},
        {1.5e-5, "1.5e-05"},
        {0.0001, "0.0001"},
        {123456789012345680.0, "1.2345678901234568e+17"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {9007199254740993.0, "9007199254740992.0"},
        {-0.0, "-0.0"},
        {0.0, "0.0"},
        {100.0, "100.0"},
        {1.0, "1.0"},
        {-2.5, "-2.5"},
        {0.30000000000000004, "0.30000000000000004"},
        {8.98846567431158e+307, "8.98846567431158e+307"}, /* 2^1023 */
        {9.332636185032189e-302, "9.332636185032189e-302"}, /* 2^-1000 */
        {2.7755575615628914e-17, "2.7755575615628914e-17"}, /* 2^-55 */
        {1e100, "1e+100"},
        {-1.7976931348623157e308, "-1.7976931348623157e+308"},
        {123.456, "123.456"},
        {0.001, "0.001"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char b[REPR_DOUBLE_MAX];
        size_t n = repr_double(b, cases[i].v);
        if (strcmp(b, cases[i].repr) != 0 || n != strlen(b)) {
            cr_log_error("%a: \"%s\", Python writes \"%s\"", cases[i].v, b, cases[i].repr);
            bad++;
        }
    }
    cr_assert_eq(bad, 0, "%d numbers differ from repr", bad);
}

Test(text, real_nan_and_infinity_are_null) {
    Text t = {0};
    text_real(&t, NAN);
    text_real(&t, INFINITY);
    text_real(&t, -INFINITY);
    text_real(&t, 0.1);
    cr_assert_str_eq(t.buf, "nullnullnull0.1");
    text_free(&t);
}

/* A decimal q * 10^e, q with n digits and no trailing zeros */
typedef struct {
    uint64_t q;
    int n, e;
} Dec;

static Dec dec_strip(Dec d) {
    while (d.n > 1 && d.q % 10 == 0) d.q /= 10, d.n--, d.e++;
    return d;
}

/* The decimal text s writes ("-0.0001", "100.0", "1.5e-07") */
static Dec dec_parse(const char *s) {
    Dec d = {0};
    int frac = 0;
    bool dot = false;
    const char *c = s + (*s == '-');
    for (; *c && *c != 'e'; c++) {
        if (*c == '.') {
            dot = true;
            continue;
        }
        frac += dot;
        if (d.q == 0 && *c == '0') continue; /* a leading zero */
        d.q = d.q * 10 + (uint64_t)(*c - '0');
        d.n++;
    }
    d.e = (*c == 'e' ? atoi(c + 1) : 0) - frac;
    return dec_strip(d);
}

/* a rounded to p significant digits by printf */
static Dec dec_round(double a, int p) {
    char b[48];
    snprintf(b, sizeof b, "%.*e", p - 1, a);
    return dec_parse(b);
}

static bool dec_reads_back(uint64_t q, int e, double a) {
    char b[48];
    snprintf(b, sizeof b, "%llue%d", (unsigned long long)q, e);
    return strtod(b, NULL) == a;
}

/* Whether a decimal of p digits reads back as a: the nearest, or the one
 * either side of it (also across a power of ten the rounding carried to) */
static bool some_decimal_reads_back(double a, int p) {
    char b[48];
    snprintf(b, sizeof b, "%.*e", p - 1, a);
    Dec d = dec_parse(b); /* as p digits: */
    uint64_t q = d.q;
    int e = d.e;
    for (int i = d.n; i < p; i++) q *= 10, e--;
    if (dec_reads_back(q - 1, e, a) || dec_reads_back(q, e, a) || dec_reads_back(q + 1, e, a))
        return true;
    uint64_t ten = 1;
    for (int i = 1; i < p; i++) ten *= 10;
    return q == ten && dec_reads_back(10 * ten - 1, e - 1, a); /* 9.99 below 10.0 */
}

/* 1 when text_real(v) breaks a property, after saying which */
static int real_wrong(double v) {
    char s[REPR_DOUBLE_MAX];
    repr_double(s, v);
    char *end;
    double back = strtod(s, &end);
    if (*end || memcmp(&back, &v, sizeof v) != 0) {
        cr_log_error("%a: \"%s\" reads back as %a", v, s, back);
        return 1;
    }
    double a = fabs(v);
    if (a == 0) return strcmp(s, signbit(v) ? "-0.0" : "0.0") != 0;
    Dec d = dec_parse(s);
    if (d.n > 1 && some_decimal_reads_back(a, d.n - 1)) {
        cr_log_error("%a: \"%s\", but a decimal of %d digits reads back", v, s, d.n - 1);
        return 1;
    }
    Dec near = dec_round(a, d.n);
    if (dec_reads_back(near.q, near.e, a) && (near.q != d.q || near.e != d.e)) {
        cr_log_error("%a: \"%s\", but %llue%d is nearer", v, s, (unsigned long long)near.q,
                     near.e);
        return 1;
    }
    int k = d.e + d.n - 1; /* the first digit's decimal exponent */
    bool exponent = strchr(s, 'e') != NULL, python_exponent = k < -4 || k >= 16;
    if (exponent != python_exponent || (!exponent && !strchr(s, '.'))) {
        cr_log_error("%a: \"%s\" is not repr's layout (exponent %d)", v, s, k);
        return 1;
    }
    return 0;
}

static double random_double(Rng *rng, int kind) {
    uint64_t r = bits64(rng);
    double v;
    switch (kind) {
    case 0: /* any finite bit pattern */
        memcpy(&v, &r, sizeof v);
        return isfinite(v) ? v : 1.0;
    case 1: /* a float32 value, as losses are */
        return (double)(float)((double)(r >> 11) / 9007199254740992.0 * 10);
    case 2: /* every magnitude of the exact path's range and around it */
        return (1 + (double)(r >> 11) / 9007199254740992.0) * pow(10, (int)(r % 50) - 9);
    case 3: /* a power of two: the double below is nearer than the one above */
        return ldexp(r & 1 ? 1.0 : -1.0, (int)(r % 2098) - 1074);
    case 4: /* a subnormal */
        r &= 0x000fffffffffffffULL;
        memcpy(&v, &r, sizeof v);
        return v;
    default: /* a short decimal, as accuracies and learning rates are */
        return round((double)(r >> 11) / 9007199254740992.0 * 1e6) / pow(10, (int)(r % 12));
    }
}

Test(text, real_random_doubles_round_trip_shortest) {
    Rng rng;
    rng_init(&rng, 1);
    int bad = 0;
    for (int i = 0; i < 1000000 && bad < 10; i++) bad += real_wrong(random_double(&rng, i % 6));
    cr_assert_eq(bad, 0, "%d numbers are not the shortest that reads back", bad);
}

/* every power of ten from 1e-325 to 1e308, its neighbours, and the
 * values where the exact path hands over to printf */
Test(text, real_powers_of_ten) {
    int bad = 0;
    for (int k = -325; k <= 308; k++) {
        char b[16];
        snprintf(b, sizeof b, "1e%d", k);
        double p = strtod(b, NULL);
        double near[] = {p, nextafter(p, 0), nextafter(p, INFINITY), 9.5 * p, 1.5 * p, 5 * p};
        for (size_t i = 0; i < sizeof near / sizeof *near; i++)
            if (isfinite(near[i])) bad += real_wrong(near[i]) + real_wrong(-near[i]);
    }
    cr_assert_eq(bad, 0, "%d numbers are not the shortest that reads back", bad);
}
