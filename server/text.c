/* text.c - the growable reply buffer of text.h. */
#include "server/text.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL; false (and oom) when there is none. */
static bool reserve(Text *t, size_t n) {
    if (t->oom) return false;
    if (t->len + n + 1 <= t->cap) return true;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + n + 1) cap *= 2;
    char *grown = realloc(t->buf, cap);
    if (!grown) {
        t->oom = true;
        return false;
    }
    t->buf = grown;
    t->cap = cap;
    return true;
}

void text_put(Text *t, const char *s, size_t n) {
    if (!reserve(t, n)) return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

void text_puts(Text *t, const char *s) { text_put(t, s, strlen(s)); }

void text_printf(Text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->oom = true;
        return;
    }
    if (!reserve(t, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void text_int(Text *t, long long v) {
    char b[24], *p = b + sizeof b;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do *--p = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (v < 0) *--p = '-';
    text_put(t, p, (size_t)(b + sizeof b - p));
}

/* %.17g through printf, then jansson's spelling: its bytes are the
 * contract, and the fast path below is checked against them. */
static void real_printf(Text *t, double v) {
    char b[40];
    int n = snprintf(b, sizeof b - 2, "%.17g", v);
    char *e = strchr(b, 'e');
    if (e) {
        char *from = e + 1, *to = e + 1;
        if (*from == '+') from++;
        else if (*from == '-') from++, to++;
        while (*from == '0' && from[1]) from++;
        memmove(to, from, strlen(from) + 1);
        n = (int)strlen(b);
    } else if (!strchr(b, '.')) {
        memcpy(b + n, ".0", 3);
        n += 2;
    }
    text_put(t, b, (size_t)n);
}

typedef unsigned __int128 u128;

static u128 pow10_u128(int p) { /* 0 <= p <= 38 */
    u128 r = 1;
    while (p >= 19) r *= 10000000000000000000ULL, p -= 19;
    while (p-- > 0) r *= 10;
    return r;
}

/* floor(a * 10^p), and that rounded to nearest, ties to even, as printf
 * rounds: exactly, in 128-bit integers, where a = m * 2^e. False when
 * that does not fit. */
static bool scaled_round(uint64_t m, int e, int p, uint64_t *floor_q, uint64_t *q) {
    u128 n, d;
    if (p >= 0) {
        if (p > 22) return false; /* m * 10^p < 2^128 */
        n = (u128)m * pow10_u128(p);
        if (e >= 0) {
            if (e > 127 || (n >> (127 - e)) != 0) return false;
            n <<= e;
            d = 1;
        } else {
            if (e < -127) return false;
            d = (u128)1 << -e;
        }
    } else {
        if (p < -38 || e < 0 || e > 74) return false;
        n = (u128)m << e;
        d = pow10_u128(-p);
    }
    u128 quo = n / d, rem = n - quo * d;
    if (quo >> 63) return false;
    *floor_q = (uint64_t)quo;
    if (2 * rem > d || (2 * rem == d && (quo & 1))) quo++;
    *q = (uint64_t)quo;
    return true;
}

/* The same bytes as real_printf without printf's multi-precision digit
 * loop (~0.5 us a number, half of a 10,000-point history reply): the 17
 * significant digits are one exact integer division. Values outside
 * [1e-6, 1e38], where that division would not fit 128 bits, take
 * real_printf. */
void text_real(Text *t, double v) {
    if (!isfinite(v)) {
        text_put(t, "null", 4);
        return;
    }
    double a = fabs(v);
    if (!(a >= 1e-6 && a <= 1e38)) {
        real_printf(t, v);
        return;
    }
    int x;
    double f = frexp(a, &x); /* a = f * 2^x, f in [0.5, 1) */
    uint64_t m = (uint64_t)ldexp(f, 53);
    int e = x - 53;
    int k = (int)floor(log10(a)); /* decimal exponent, maybe off by one */
    uint64_t fq = 0, q = 0;
    for (int tries = 0;; tries++) { /* until 10^16 <= floor(a * 10^(16-k)) < 10^17 */
        if (tries == 3 || !scaled_round(m, e, 16 - k, &fq, &q)) {
            real_printf(t, v);
            return;
        }
        if (fq >= 100000000000000000ULL) k++;
        else if (fq < 10000000000000000ULL) k--;
        else break;
    }
    if (q == 100000000000000000ULL) q /= 10, k++; /* 9.99..96 rounded up to 10 */
    char d[17];
    for (int i = 16; i >= 0; i--, q /= 10) d[i] = (char)('0' + q % 10);
    int len = 17;
    while (len > 1 && d[len - 1] == '0') len--;

    char b[40];
    int n = 0;
    if (v < 0) b[n++] = '-';
    if (k < -4 || k >= 17) { /* %g's exponent form, jansson's exponent */
        b[n++] = d[0];
        if (len > 1) {
            b[n++] = '.';
            memcpy(b + n, d + 1, (size_t)len - 1);
            n += len - 1;
        }
        b[n++] = 'e';
        if (k < 0) b[n++] = '-';
        int ak = k < 0 ? -k : k;
        if (ak >= 10) b[n++] = (char)('0' + ak / 10);
        b[n++] = (char)('0' + ak % 10);
    } else if (k >= 0) { /* k + 1 integer digits, then the fraction or ".0" */
        memcpy(b + n, d, (size_t)k + 1);
        n += k + 1;
        b[n++] = '.';
        if (len > k + 1) {
            memcpy(b + n, d + k + 1, (size_t)(len - k - 1));
            n += len - k - 1;
        } else
            b[n++] = '0';
    } else { /* 0.000ddd */
        b[n++] = '0';
        b[n++] = '.';
        for (int i = 0; i < -k - 1; i++) b[n++] = '0';
        memcpy(b + n, d, (size_t)len);
        n += len;
    }
    text_put(t, b, (size_t)n);
}

void text_free(Text *t) {
    free(t->buf);
    *t = (Text){0};
}
