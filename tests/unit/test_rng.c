/* test_rng.c - Philox-4x32-10 against Random123's known-answer vectors, and
 * the Rng front end: stream layout, ranges, moments, and that the whole
 * state is (seed, offset). */
#include <criterion/criterion.h>
#include <math.h>

#include "core/rng.h"

/* The 128-bit-counter form in core/rng.c, for the KAT vectors whose
 * counters use all four words. */
void philox4x32_full(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

static void assert_block(const uint32_t got[4], const uint32_t want[4], const char *what) {
    for (int i = 0; i < 4; i++)
        cr_assert_eq(got[i], want[i], "%s word %d: %08x, want %08x", what, i, got[i], want[i]);
}

Test(rng, philox_known_answer_vectors) {
    /* Random123 kat_vectors, philox4x32 with 10 rounds. */
    const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        philox4x32_full(kat[i].ctr, kat[i].key, out);
        assert_block(out, kat[i].out, "kat");
    }
}

Test(rng, philox_public_form_maps_seed_and_counter) {
    uint32_t out[4], full[4];
    philox4x32(0, 0, out);
    assert_block(out, (uint32_t[]){0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}, "zero");
    /* seed -> key (low, high); counter -> (low, high, 0, 0) */
    uint64_t seed = 0x0123456789abcdefull, counter = 0xfedcba9876543210ull;
    philox4x32(seed, counter, out);
    philox4x32_full((uint32_t[]){0x76543210, 0xfedcba98, 0, 0},
                    (uint32_t[]){0x89abcdef, 0x01234567}, full);
    assert_block(out, full, "mapping");
}

Test(rng, uniform_and_u32_read_the_stream_in_order) {
    uint32_t b0[4], b1[4];
    philox4x32(7, 0, b0);
    philox4x32(7, 1, b1);
    const uint32_t words[8] = {b0[0], b0[1], b0[2], b0[3], b1[0], b1[1], b1[2], b1[3]};
    Rng rng;
    rng_init(&rng, 7);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(philox_uniform(7, (uint64_t)i), (float)(words[i] >> 8) / 16777216.0f);
        cr_assert_eq(rng_next_u32(&rng), words[i], "draw %d", i);
    }
    cr_assert_eq(rng.offset, 8);
}

/* A uniform takes two words and a normal four, from any offset (a block
 * boundary between a uniform's two words included): the same numbers as
 * drawn word by word, and the offset advanced by as many. */
Test(rng, uniform_and_normal_take_their_words_from_any_offset) {
    for (uint64_t o = 0; o < 8; o++) {
        Rng a = {.seed = 11, .offset = o}, b = a;
        uint32_t w0 = rng_next_u32(&b) >> 5, w1 = rng_next_u32(&b) >> 6;
        double want = ((double)w0 * 67108864.0 + (double)w1) / 9007199254740992.0;
        cr_assert_eq(rng_uniform(&a), want, "offset %llu", (unsigned long long)o);
        cr_assert_eq(a.offset, o + RNG_UNIFORM_WORDS);
        Rng n = {.seed = 11, .offset = o}, u = n;
        double u1 = 1.0 - rng_uniform(&u), u2 = rng_uniform(&u);
        cr_assert_eq(rng_normal(&n), sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2),
                     "a normal is Box-Muller of two uniforms in turn, offset %llu",
                     (unsigned long long)o);
        cr_assert_eq(n.offset, o + RNG_NORMAL_WORDS);
    }
}

Test(rng, state_is_seed_and_offset) {
    Rng a, b;
    rng_init(&a, 99);
    for (int i = 0; i < 5; i++) rng_next_u32(&a);
    double u = rng_uniform(&a);
    cr_assert_eq(a.offset, 7, "uniform takes two words");
    double z = rng_normal(&a);
    cr_assert_eq(a.offset, 11, "normal takes four words");
    /* Restoring (seed, offset) replays exactly. */
    b.seed = 99;
    b.offset = 5;
    cr_assert_eq(rng_uniform(&b), u);
    cr_assert_eq(rng_normal(&b), z);
    /* Different seeds differ. */
    Rng c;
    rng_init(&c, 100);
    rng_init(&a, 99);
    cr_assert_neq(rng_next_u32(&a), rng_next_u32(&c));
}

Test(rng, uniform_range_and_mean) {
    Rng rng;
    rng_init(&rng, 1);
    double sum = 0, fsum = 0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double u = rng_uniform(&rng);
        cr_assert(u >= 0 && u < 1, "uniform %g", u);
        sum += u;
        float f = philox_uniform(2, (uint64_t)i);
        cr_assert(f >= 0 && f < 1, "philox_uniform %g", f);
        fsum += f;
    }
    /* sd of the mean is 1/sqrt(12 n) ~ 0.0009; allow 5 sd. */
    cr_assert(fabs(sum / n - 0.5) < 0.005, "mean %g", sum / n);
    cr_assert(fabs(fsum / n - 0.5) < 0.005, "float mean %g", fsum / n);
    for (int i = 0; i < 1000; i++) {
        double r = rng_uniform_range(&rng, -3, 5);
        cr_assert(r >= -3 && r < 5, "range %g", r);
    }
}

Test(rng, below_stays_in_range_and_covers_it) {
    Rng rng;
    rng_init(&rng, 3);
    const uint64_t bounds[] = {1, 2, 3, 7, 10, 1000, UINT32_MAX, (1ull << 32) + 5, UINT64_MAX};
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++)
        for (int i = 0; i < 2000; i++) {
            uint64_t x = rng_below(&rng, bounds[b]);
            cr_assert(x < bounds[b], "rng_below(%llu) = %llu", (unsigned long long)bounds[b],
                      (unsigned long long)x);
        }
    /* Bound 10: every value appears, counts near 10000 each (chi-square with
     * 9 degrees of freedom under 30: p < 0.001 of a false failure). */
    int count[10] = {0};
    for (int i = 0; i < 100000; i++) count[rng_below(&rng, 10)]++;
    double chi2 = 0;
    for (int k = 0; k < 10; k++) chi2 += (count[k] - 10000.0) * (count[k] - 10000.0) / 10000.0;
    cr_assert(chi2 < 30, "chi-square %g", chi2);
    /* The 64-bit path reaches above 2^32. */
    int high = 0;
    for (int i = 0; i < 100; i++) high += rng_below(&rng, 1ull << 40) > UINT32_MAX;
    cr_assert(high > 90, "only %d of 100 draws above 2^32", high);
}

Test(rng, normal_moments) {
    Rng rng;
    rng_init(&rng, 5);
    const int n = 100000;
    double sum = 0, sq = 0;
    for (int i = 0; i < n; i++) {
        double z = rng_normal(&rng);
        cr_assert(isfinite(z));
        sum += z;
        sq += z * z;
    }
    double mean = sum / n, var = sq / n - mean * mean;
    cr_assert(fabs(mean) < 0.02, "mean %g", mean);
    cr_assert(fabs(var - 1) < 0.03, "variance %g", var);
}
