/* repr.c - a double written as Python's repr(float) writes it; see repr.h.
 *
 * A double is written with the fewest significant digits that strtod reads
 * back to the same bits, the one nearest the double when several are that
 * short: the digits of Python's repr(float) and JavaScript's String(x).
 * Both ways below find them by the same argument. A normal double has 15
 * significant digits to spare (DBL_DIG): any decimal of 15 or fewer digits
 * that reads back as v is v rounded to 15 digits, so trying v rounded to
 * 15, then 16, then 17 digits (17 always reads back) finds the shortest,
 * trailing zeros dropped. Round to nearest is the closest candidate, so
 * when it does not read back no other of its length does, but for a power
 * of two: the double below it is half as far as the one above, and the
 * candidate one unit up may read back where the nearest (below) does not.
 * A subnormal has fewer digits to spare, so every length from 1 is tried. */
#include "core/repr.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    uint64_t q; /* the significant digits, as an integer */
    int n;      /* how many (q < 10^n) */
    int k;      /* the decimal exponent of the first: v = q * 10^(k - n + 1) */
} Digits;

static const uint64_t pow10_u64[20] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL,
    1000000ULL, 10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL,
    1000000000000ULL, 10000000000000ULL, 100000000000000ULL, 1000000000000000ULL,
    10000000000000000ULL, 100000000000000000ULL, 1000000000000000000ULL,
    10000000000000000000ULL};

static void strip_zeros(Digits *d) {
    while (d->n > 1 && d->q % 10 == 0) d->q /= 10, d->n--;
}

/* q one unit up, 10^n carried to 10^(n-1) one exponent up */
static Digits digits_up(Digits d) {
    if (++d.q == pow10_u64[d.n]) d.q /= 10, d.k++;
    return d;
}

/* ---- the exact way: 128-bit integers, for [1e-6, 1e38] ---- */

typedef unsigned __int128 u128;

static u128 pow10_u128(int p) { /* 0 <= p <= 38 */
    u128 r = 1;
    while (p >= 19) r *= 10000000000000000000ULL, p -= 19;
    while (p-- > 0) r *= 10;
    return r;
}

/* a = m * 2^e (m a 53-bit mantissa) scaled by 10^P, as the exact fraction
 * num / den, and ulp = 2^e * 10^P * den: a gap between doubles in those
 * units. False where that does not fit 128 bits. */
typedef struct {
    u128 num, den, ulp;
} Scaled;

static bool scale(uint64_t m, int e, int P, Scaled *s) {
    /* the bounds keep 4 * den (reads_back) below 2^128 too */
    if (P >= 0) {
        if (P > 22 || e < -120) return false; /* m * 10^P < 2^127 */
        u128 p10 = pow10_u128(P), mp = (u128)m * p10;
        if (e < 0) *s = (Scaled){.num = mp, .den = (u128)1 << -e, .ulp = p10};
        else if (e > 120 || (mp >> (126 - e)) != 0) return false;
        else *s = (Scaled){.num = mp << e, .den = 1, .ulp = p10 << e};
    } else {
        if (P < -36 || e < -8 || e > 73) return false;
        u128 p10 = pow10_u128(-P);
        if (e < 0) *s = (Scaled){.num = m, .den = p10 << -e, .ulp = 1}; /* [1e15, 2^53) */
        else *s = (Scaled){.num = (u128)m << e, .den = p10, .ulp = (u128)1 << e};
    }
    return true;
}

/* Whether the decimal `dist` (in Scaled units) above or below a = m * 2^e
 * reads back as a: within half the gap to the neighbouring double (a
 * quarter of the gap below a power of two), a tie going to the even
 * mantissa as strtod rounds. */
static bool reads_back(uint64_t m, const Scaled *s, u128 dist, bool below) {
    u128 twice = below && m == (1ULL << 52) ? 4 * dist : 2 * dist;
    return twice < s->ulp || (twice == s->ulp && !(m & 1));
}

/* The p-digit decimal nearest a = m * 2^e, and whether it or (below a power
 * of two) the one above it reads back as a; *k is the decimal exponent
 * guess, corrected here. False where 128 bits do not hold the numbers. */
static bool try_exact(uint64_t m, int e, int p, int *k, Digits *out, bool *found) {
    Scaled s;
    u128 fq;
    for (int tries = 0;; tries++) { /* until 10^(p-1) <= floor(a * 10^(p-1-k)) < 10^p */
        if (tries == 3 || !scale(m, e, p - 1 - *k, &s)) return false;
        fq = s.num / s.den;
        if (fq >= pow10_u64[p]) (*k)++;
        else if (fq < pow10_u64[p - 1]) (*k)--;
        else break;
    }
    u128 rem = s.num - fq * s.den;
    bool up = 2 * rem > s.den || (2 * rem == s.den && (fq & 1));
    Digits d = {.q = (uint64_t)fq, .n = p, .k = *k};
    *found = true;
    if (up && reads_back(m, &s, s.den - rem, false)) *out = digits_up(d);
    else if (!up && reads_back(m, &s, rem, true)) *out = d;
    else if (!up && m == (1ULL << 52) && reads_back(m, &s, s.den - rem, false))
        *out = digits_up(d);
    else *found = false;
    return true;
}

static bool shortest_exact(double a, Digits *out) {
    int x;
    double f = frexp(a, &x); /* a = f * 2^x, f in [0.5, 1) */
    uint64_t m = (uint64_t)ldexp(f, 53);
    int e = x - 53;
    int k = (int)floor(log10(a)); /* maybe off by one */
    for (int p = 15; p <= 17; p++) {
        bool found;
        if (!try_exact(m, e, p, &k, out, &found)) return false;
        if (found) return true;
    }
    return false; /* 17 digits always read back: not reached */
}

/* ---- the way through printf and strtod, for the rest ---- */

/* v rounded to p digits by printf, as Digits; its text in buf. */
static Digits printf_digits(double a, int p, char *buf, size_t size) {
    snprintf(buf, size, "%.*e", p - 1, a);
    Digits d = {.q = 0, .n = p};
    const char *c = buf;
    for (; *c != 'e'; c++)
        if (*c != '.') d.q = d.q * 10 + (uint64_t)(*c - '0');
    d.k = atoi(c + 1);
    return d;
}

static bool digits_read_back(Digits d, double a) {
    char buf[48];
    snprintf(buf, sizeof buf, "%llue%d", (unsigned long long)d.q, d.k - d.n + 1);
    return strtod(buf, NULL) == a;
}

static void shortest_printf(double a, Digits *out) {
    int x;
    bool pow2 = frexp(a, &x) == 0.5 && a > DBL_MIN; /* a narrower gap below */
    char buf[48];
    for (int p = a < DBL_MIN ? 1 : 15; p <= 17; p++) {
        Digits d = printf_digits(a, p, buf, sizeof buf);
        double back = strtod(buf, NULL);
        if (back == a) {
            *out = d;
            return;
        }
        if (pow2 && back < a && digits_read_back(digits_up(d), a)) {
            *out = digits_up(d);
            return;
        }
    }
    *out = printf_digits(a, 17, buf, sizeof buf); /* reads back: not reached */
}

/* ---- the text: Python's repr layout ---- */

static char *put_digits(char *b, const char *d, int n) {
    memcpy(b, d, (size_t)n);
    return b + n;
}

/* d.ddd x 10^k: positional for 1e-4 <= |v| < 1e16 ("100.0", "0.0001"),
 * with ".0" when integral; else "1e+16", "1.5e-07", "5e-324". */
static size_t digits_text(char *out, bool negative, Digits d) {
    char s[20];
    for (int i = d.n - 1; i >= 0; i--, d.q /= 10) s[i] = (char)('0' + d.q % 10);
    char *b = out;
    if (negative) *b++ = '-';
    if (d.k < -4 || d.k >= 16) {
        *b++ = s[0];
        if (d.n > 1) {
            *b++ = '.';
            b = put_digits(b, s + 1, d.n - 1);
        }
        b += snprintf(b, 8, "e%c%02d", d.k < 0 ? '-' : '+', d.k < 0 ? -d.k : d.k);
    } else if (d.k >= 0) { /* k + 1 integer digits, then the fraction or ".0" */
        int whole = d.n < d.k + 1 ? d.n : d.k + 1;
        b = put_digits(b, s, whole);
        for (int i = d.n; i < d.k + 1; i++) *b++ = '0';
        *b++ = '.';
        if (d.n > whole) b = put_digits(b, s + whole, d.n - whole);
        else *b++ = '0';
    } else { /* 0.000ddd */
        *b++ = '0';
        *b++ = '.';
        for (int i = 0; i < -d.k - 1; i++) *b++ = '0';
        b = put_digits(b, s, d.n);
    }
    *b = '\0';
    return (size_t)(b - out);
}

size_t repr_double(char out[REPR_DOUBLE_MAX], double v) {
    if (!isfinite(v)) {
        memcpy(out, "null", 5);
        return 4;
    }
    double a = fabs(v);
    if (a == 0) return digits_text(out, signbit(v), (Digits){.q = 0, .n = 1, .k = 0});
    Digits d;
    if (!(a >= 1e-6 && a <= 1e38 && shortest_exact(a, &d))) shortest_printf(a, &d);
    strip_zeros(&d);
    return digits_text(out, v < 0, d);
}

