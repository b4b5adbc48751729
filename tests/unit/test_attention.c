/* test_attention.c - causal scaled-dot-product attention
 * (tensor_causal_attention): gradients by finite differences in float64
 * (T of 1, T across the CPU's 64-key blocks, several head sizes), parity
 * with F.scaled_dot_product_attention(is_causal=True) in float32 and
 * float64 (tests/fixtures/gen_attention.py), causality (a query's output
 * does not move when later keys do), non-contiguous inputs, dropout on the
 * probabilities (against a mask drawn in the test, and its gradients), the
 * online softmax's rescaling where later key blocks score higher, and
 * errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "tests/support/fixture.h"
#include "tests/support/gradcheck.h"

static Tensor *attention_fn(Tensor **in, void *ctx) {
    (void)ctx;
    return tensor_causal_attention(in[0], in[1], in[2]);
}

static void attention_gradcheck(int64_t b, int64_t h, int64_t t, int64_t d, uint64_t seed) {
    char name[96];
    snprintf(name, sizeof name, "causal_attention [%lld, %lld, %lld, %lld]", (long long)b,
             (long long)h, (long long)t, (long long)d);
    Tensor *in[3];
    for (int i = 0; i < 3; i++) in[i] = gradcheck_input(SHAPE(b, h, t, d), -1.5, 1.5, seed + i);
    gradcheck(name, attention_fn, NULL, 3, in);
    for (int i = 0; i < 3; i++) tensor_release(in[i]);
}

Test(attention, gradcheck_float64) {
    attention_gradcheck(1, 1, 1, 3, 1);  /* one token: softmax over itself */
    attention_gradcheck(2, 2, 5, 3, 10);
    attention_gradcheck(1, 2, 9, 4, 20);
    attention_gradcheck(1, 1, 6, 1, 30);  /* D = 1 */
    attention_gradcheck(1, 1, 67, 2, 40); /* past one block of 64 keys */
}

/* ---- dropout on the probabilities ---- */

typedef struct {
    double p;
    uint64_t seed, offset;
} DropArgs;

static Tensor *dropout_fn(Tensor **in, void *ctx) {
    const DropArgs *a = ctx;
    return tensor_causal_attention_dropout(in[0], in[1], in[2], a->p, a->seed, a->offset, 0,
                                           NULL);
}

/* The mask is a function of (seed, offset): finite differences see a
 * fixed function, whose gradient the recomputed mask must give. */
/* The offset split between the argument and a base in memory gives the
 * mask at their sum, forward and backward. */
Test(attention, dropout_offset_base_adds_to_the_offset) {
    const uint64_t base = 1000;
    Tensor *in[3], *x[3];
    for (int i = 0; i < 3; i++) { /* the same values, leaves both */
        in[i] = gradcheck_input(SHAPE(2, 2, 7, 8), -1, 1, 70 + i);
        x[i] = gradcheck_input(SHAPE(2, 2, 7, 8), -1, 1, 70 + i);
        cr_assert(tensor_set_requires_grad(in[i], true) == 0 &&
                  tensor_set_requires_grad(x[i], true) == 0);
    }
    Tensor *want = tensor_causal_attention_dropout(in[0], in[1], in[2], 0.3, 5, 1234, 0, NULL);
    Tensor *got = tensor_causal_attention_dropout(x[0], x[1], x[2], 0.3, 5, 234, 0, &base);
    cr_assert(want && got, "%s", error_get());
    assert_tensor_close(got, want, 0, 0, "forward");
    Tensor *lw = tensor_sum(want), *lg = tensor_sum(got);
    cr_assert(lw && lg && tensor_backward(lw) == 0 && tensor_backward(lg) == 0, "%s",
              error_get());
    for (int i = 0; i < 3; i++) assert_tensor_close(x[i]->grad, in[i]->grad, 0, 0, "gradient");
    tensor_release(want), tensor_release(got), tensor_release(lw), tensor_release(lg);
    for (int i = 0; i < 3; i++) tensor_release(in[i]), tensor_release(x[i]);
}

Test(attention, dropout_gradcheck_float64) {
    DropArgs a = {0.3, 5, 17};
    Tensor *in[3];
    for (int i = 0; i < 3; i++) in[i] = gradcheck_input(SHAPE(2, 2, 7, 3), -1.5, 1.5, 50 + i);
    gradcheck("causal_attention dropout 0.3 [2, 2, 7, 3]", dropout_fn, &a, 3, in);
    a = (DropArgs){0.6, 9, 0};
    gradcheck("causal_attention dropout 0.6 [2, 2, 7, 3]", dropout_fn, &a, 3, in);
    for (int i = 0; i < 3; i++) tensor_release(in[i]);
}

/* out_i = sum_j softmax_ij z_ij v_j, z_ij = (u >= p) / (1 - p) with u number
 * offset + (h T + i) T + j of the stream, written out here. */
Test(attention, dropout_mask_as_documented) {
    enum { H = 2, T = 6, D = 3 };
    const double p = 0.4;
    const uint64_t seed = 77, offset = 1000;
    Tensor *q = gradcheck_input(SHAPE(1, H, T, D), -1, 1, 60);
    Tensor *k = gradcheck_input(SHAPE(1, H, T, D), -1, 1, 61);
    Tensor *v = gradcheck_input(SHAPE(1, H, T, D), -1, 1, 62);
    Tensor *out = tensor_causal_attention_dropout(q, k, v, p, seed, offset, 0, NULL);
    cr_assert(out, "%s", error_get());
    int dropped = 0;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++) {
            double s[T], mx = -INFINITY, sum = 0;
            for (int j = 0; j <= i; j++) {
                s[j] = 0;
                for (int c = 0; c < D; c++)
                    s[j] += tensor_get(q, (h * T + i) * D + c) * tensor_get(k, (h * T + j) * D + c);
                s[j] /= sqrt(D);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= i; j++) sum += exp(s[j] - mx);
            for (int c = 0; c < D; c++) {
                double want = 0;
                for (int j = 0; j <= i; j++) {
                    bool kept = philox_uniform(seed, offset + (uint64_t)((h * T + i) * T + j)) >= p;
                    dropped += !kept && c == 0;
                    if (kept)
                        want += exp(s[j] - mx) / sum / (1 - p) * tensor_get(v, (h * T + j) * D + c);
                }
                double got = tensor_get(out, (h * T + i) * D + c);
                cr_assert(fabs(got - want) <= 1e-12, "h %d i %d c %d: %.15g, want %.15g", h, i, c,
                          got, want);
            }
        }
    cr_assert(dropped > 0 && dropped < H * T * (T + 1) / 2, "%d dropped", dropped);
    /* p = 0 is plain attention; another offset, another mask */
    Tensor *plain = tensor_causal_attention(q, k, v);
    Tensor *zero = tensor_causal_attention_dropout(q, k, v, 0, seed, offset, 0, NULL);
    Tensor *other = tensor_causal_attention_dropout(q, k, v, p, seed, offset + 1, 0, NULL);
    assert_tensor_close(zero, plain, 0, 0, "dropout 0");
    bool differs = false;
    for (int64_t i = 0; i < tensor_numel(out); i++)
        differs |= tensor_get(other, i) != tensor_get(out, i);
    cr_assert(differs, "offset + 1 gave the same mask");
    fixture_expect_error(tensor_causal_attention_dropout(q, k, v, 1, 0, 0, 0, NULL),
                         "causal_attention: dropout must be in [0, 1), got 1");
    tensor_release(q), tensor_release(k), tensor_release(v), tensor_release(out),
        tensor_release(plain), tensor_release(zero), tensor_release(other);
}

/* ---- parity with torch ---- */

static void check_case(json_t *fx, const char *name, DType dt, double rtol, double atol) {
    json_t *kase = fixture_case(fx, name);
    const char *in_keys[] = {"q", "k", "v"}, *grad_keys[] = {"gq", "gk", "gv"};
    Tensor *in[3];
    for (int i = 0; i < 3; i++) {
        Tensor *t = fixture_tensor(kase, in_keys[i]);
        in[i] = tensor_to_dtype(t, dt);
        tensor_release(t);
        cr_assert(in[i] && tensor_set_requires_grad(in[i], true) == 0);
    }
    Tensor *gw64 = fixture_tensor(kase, "gw"), *gw = tensor_to_dtype(gw64, dt);
    Tensor *out = tensor_causal_attention(in[0], in[1], in[2]);
    cr_assert(out, "%s: %s", name, error_get());
    cr_assert_eq(out->dtype, dt);
    char what[64];
    snprintf(what, sizeof what, "%s %s", name, dtype_name(dt));
    fixture_assert_close(kase, "out", out, rtol, atol, what);
    Tensor *l = tensor_mul(out, gw), *s = tensor_sum(l);
    cr_assert_eq(tensor_backward(s), 0, "%s", error_get());
    for (int i = 0; i < 3; i++)
        fixture_assert_close(kase, grad_keys[i], in[i]->grad, rtol, atol, what);
    for (int i = 0; i < 3; i++) tensor_release(in[i]);
    tensor_release(gw64), tensor_release(gw), tensor_release(out), tensor_release(l),
        tensor_release(s);
}

Test(attention_torch, matches_sdpa_is_causal) {
    json_t *fx = fixture_load("attention");
    const char *names[] = {"small", "one_token", "long_odd", "wide_head"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        check_case(fx, names[i], DTYPE_FLOAT32, 1e-4, 1e-5);
        check_case(fx, names[i], DTYPE_FLOAT64, 1e-7, 1e-8);
    }
    json_decref(fx);
}

/* ---- properties ---- */

/* Changing key and value rows j >= 3 leaves the outputs of queries 0..2
 * exactly as they were, and changes query 3's. */
Test(attention, causal_mask) {
    Tensor *q = gradcheck_input(SHAPE(1, 1, 6, 4), -1, 1, 5);
    Tensor *k = gradcheck_input(SHAPE(1, 1, 6, 4), -1, 1, 6);
    Tensor *v = gradcheck_input(SHAPE(1, 1, 6, 4), -1, 1, 7);
    Tensor *k2 = tensor_clone(k), *v2 = tensor_clone(v);
    double *pk = tensor_data(k2), *pv = tensor_data(v2);
    for (int i = 3 * 4; i < 6 * 4; i++) pk[i] += 0.5, pv[i] -= 0.25;
    Tensor *a = tensor_causal_attention(q, k, v), *b = tensor_causal_attention(q, k2, v2);
    cr_assert(a && b, "%s", error_get());
    for (int i = 0; i < 3 * 4; i++)
        cr_assert_eq(tensor_get(a, i), tensor_get(b, i), "element %d", i);
    bool moved = false;
    for (int i = 3 * 4; i < 4 * 4; i++) moved |= tensor_get(a, i) != tensor_get(b, i);
    cr_assert(moved, "query 3 does not see key 3");
    /* row 0 sees only key 0: its output is v[0] */
    for (int c = 0; c < 4; c++) cr_assert_float_eq(tensor_get(a, c), tensor_get(v, c), 1e-15);
    tensor_release(q), tensor_release(k), tensor_release(v), tensor_release(k2),
        tensor_release(v2), tensor_release(a), tensor_release(b);
}

/* A key whose scores are NaN makes every row that sees it NaN, as torch's
 * softmax does, even a row that sees it alone in its block of keys (key
 * 64 starts the second block of 64: query 64's block was once skipped as
 * keyless, its row finite); rows before it stay finite. */
Test(attention, nan_key_makes_the_rows_that_see_it_nan) {
    Tensor *q = gradcheck_input(SHAPE(1, 1, 128, 4), -1, 1, 11);
    Tensor *k = gradcheck_input(SHAPE(1, 1, 128, 4), -1, 1, 12);
    Tensor *v = gradcheck_input(SHAPE(1, 1, 128, 4), -1, 1, 13);
    double *pk = tensor_data(k);
    for (int c = 0; c < 4; c++) pk[64 * 4 + c] = NAN;
    Tensor *out = tensor_causal_attention(q, k, v);
    cr_assert(out, "%s", error_get());
    for (int r = 0; r < 128; r++)
        for (int c = 0; c < 4; c++) {
            double o = tensor_get(out, r * 4 + c);
            cr_assert(r < 64 ? isfinite(o) : isnan(o), "row %d, column %d: %g", r, c, o);
        }
    tensor_release(q), tensor_release(k), tensor_release(v), tensor_release(out);
}

/* A block of keys whose scores are all -inf for a row adds nothing (a
 * later key's score decides): row 64 sees keys 0-63 at -inf (q 1e200
 * against k -1e200) and key 64 at 0, and its output is v[64]. */
Test(attention, keys_of_minus_inf_scores_add_nothing) {
    Tensor *q = gradcheck_input(SHAPE(1, 1, 128, 4), -1, 1, 21);
    Tensor *k = gradcheck_input(SHAPE(1, 1, 128, 4), -1, 1, 22);
    Tensor *v = gradcheck_input(SHAPE(1, 1, 128, 4), -1, 1, 23);
    double *pq = tensor_data(q), *pk = tensor_data(k);
    for (int c = 0; c < 4; c++) {
        pq[64 * 4 + c] = 1e200;
        for (int r = 0; r < 64; r++) pk[r * 4 + c] = -1e200;
        pk[64 * 4 + c] = 0;
    }
    Tensor *out = tensor_causal_attention(q, k, v);
    cr_assert(out, "%s", error_get());
    for (int c = 0; c < 4; c++)
        cr_assert_float_eq(tensor_get(out, 64 * 4 + c), tensor_get(v, 64 * 4 + c), 1e-15,
                           "column %d", c);
    tensor_release(q), tensor_release(k), tensor_release(v), tensor_release(out);
}

/* Scores that grow with the key's position, so each block of 64 keys the
 * CPU walks raises a row's running max and the output so far must be
 * rescaled: against softmax written out in double over T = 150, both
 * dtypes. */
Test(attention, online_softmax_rescales_when_later_keys_score_higher) {
    const int64_t t = 150, d = 4;
    for (int dt = 0; dt < 2; dt++) {
        DType dtype = dt ? DTYPE_FLOAT64 : DTYPE_FLOAT32;
        Tensor *q = tensor_full(SHAPE(1, 1, t, d), 1.0, dtype, DEVICE_CPU_INIT);
        Tensor *k64 = gradcheck_input(SHAPE(1, 1, t, d), -0.1, 0.1, 11);
        Tensor *v64 = gradcheck_input(SHAPE(1, 1, t, d), -1, 1, 12);
        double *pk = tensor_data(k64);
        for (int64_t j = 0; j < t; j++)
            for (int64_t c = 0; c < d; c++) pk[j * d + c] += 0.02 * (double)j;
        Tensor *k = tensor_to_dtype(k64, dtype), *v = tensor_to_dtype(v64, dtype);
        Tensor *out = tensor_causal_attention(q, k, v);
        cr_assert(out, "%s", error_get());
        for (int64_t i = 0; i < t; i++) {
            double s[150], m = -INFINITY, l = 0;
            for (int64_t j = 0; j <= i; j++) {
                s[j] = 0;
                for (int64_t c = 0; c < d; c++) s[j] += tensor_get(k, j * d + c);
                s[j] /= sqrt((double)d);
                m = fmax(m, s[j]);
            }
            for (int64_t j = 0; j <= i; j++) l += exp(s[j] - m);
            for (int64_t c = 0; c < d; c++) {
                double want = 0;
                for (int64_t j = 0; j <= i; j++)
                    want += exp(s[j] - m) / l * tensor_get(v, j * d + c);
                double got = tensor_get(out, i * d + c), tol = dt ? 1e-12 : 1e-5;
                cr_assert(fabs(got - want) <= tol * (1 + fabs(want)),
                          "%s row %ld col %ld: %.9g, want %.9g", dtype_name(dtype), (long)i,
                          (long)c, got, want);
            }
        }
        tensor_release(q), tensor_release(k), tensor_release(v), tensor_release(k64),
            tensor_release(v64), tensor_release(out);
    }
}

/* q, k, v as GPT makes them: transposed views of one [B, T, 3, H, D]
 * buffer, not contiguous; same values as from contiguous copies, and the
 * gradient reaches the buffer. */
Test(attention, strided_inputs) {
    Tensor *qkv = gradcheck_input(SHAPE(2, 5, 3 * 8), -1, 1, 8);
    Tensor *parts[3], *dense[3];
    for (int i = 0; i < 3; i++) {
        Tensor *n = tensor_narrow(qkv, 2, i * 8, 8);
        Tensor *r = tensor_reshape(n, SHAPE(2, 5, 2, 4));
        parts[i] = tensor_transpose(r, 1, 2);
        cr_assert(parts[i] && !tensor_is_contiguous(parts[i]));
        dense[i] = tensor_contiguous(parts[i]);
        tensor_release(n), tensor_release(r);
    }
    Tensor *a = tensor_causal_attention(parts[0], parts[1], parts[2]);
    Tensor *b = tensor_causal_attention(dense[0], dense[1], dense[2]);
    cr_assert(a && b, "%s", error_get());
    assert_tensor_close(a, b, 0, 0, "strided vs contiguous");
    Tensor *s = tensor_sum(a);
    cr_assert_eq(tensor_backward(s), 0, "%s", error_get());
    cr_assert(qkv->grad && tensor_same_shape(qkv->grad, qkv));
    for (int i = 0; i < 3; i++) tensor_release(parts[i]), tensor_release(dense[i]);
    tensor_release(qkv), tensor_release(a), tensor_release(b), tensor_release(s);
}

Test(attention, errors) {
    Tensor *q = tensor_zeros(SHAPE(1, 2, 3, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *k3 = tensor_zeros(SHAPE(2, 3, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *kt = tensor_zeros(SHAPE(1, 2, 5, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *k64 = tensor_zeros(SHAPE(1, 2, 3, 4), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *wide = tensor_zeros(SHAPE(1, 1, 2, 129), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *ints = tensor_zeros(SHAPE(1, 2, 3, 4), DTYPE_INT64, DEVICE_CPU_INIT);
    fixture_expect_error(tensor_causal_attention(k3, k3, k3),
                         "causal_attention: expected q, k, v of shape [B, H, T, D], "
                         "got q [2, 3, 4]");
    fixture_expect_error(tensor_causal_attention(q, kt, q),
                         "causal_attention: k has shape [1, 2, 5, 4] but q has [1, 2, 3, 4]");
    fixture_expect_error(tensor_causal_attention(q, q, k64),
                         "causal_attention: v is float64 but input is float32");
    fixture_expect_error(tensor_causal_attention(wide, wide, wide),
                         "causal_attention: head dim D must be 1 to 128, got 129");
    fixture_expect_error(tensor_causal_attention(ints, ints, ints),
                         "causal_attention: expected float tensors, got int64");
    cr_assert_null(tensor_causal_attention(NULL, q, q));
    tensor_release(q), tensor_release(k3), tensor_release(kt), tensor_release(k64),
        tensor_release(wide), tensor_release(ints);
}

/* A data-parallel rank holding samples 1 and 3 of a batch of 4 (stride 2)
 * draws each sample's mask at its global place: its outputs and gradients
 * are rows 1 and 3 of the whole batch's. */
Test(attention, dropout_sample_stride_is_the_global_mask) {
    enum { B = 4, H = 2, T = 5, D = 3 };
    const uint64_t seed = 5, offset = 40, per_sample = H * T * T;
    enum { S = H * T * D }; /* values per sample */
    Tensor *in[3], *part[3];
    for (int i = 0; i < 3; i++) {
        in[i] = gradcheck_input(SHAPE(B, H, T, D), -1, 1, 70 + i);
        double all[B * S], two[2 * S];
        tensor_to_doubles(in[i], all, B * S);
        memcpy(two, all + 1 * S, sizeof(double) * S);
        memcpy(two + S, all + 3 * S, sizeof(double) * S);
        part[i] = tensor_from_doubles(two, SHAPE(2, H, T, D), DTYPE_FLOAT64);
        tensor_set_requires_grad(part[i], true);
    }
    Tensor *full =
        tensor_causal_attention_dropout(in[0], in[1], in[2], 0.3, seed, offset, 0, NULL);
    Tensor *mine = tensor_causal_attention_dropout(part[0], part[1], part[2], 0.3, seed,
                                                   offset + per_sample, 2 * per_sample, NULL);
    cr_assert(full && mine, "%s", error_get());
    for (int r = 0; r < 2; r++) {
        Tensor *want = tensor_narrow(full, 0, 1 + 2 * r, 1), *got = tensor_narrow(mine, 0, r, 1);
        assert_tensor_close(got, want, 0, 1e-15, "output of local sample");
        tensor_release(want), tensor_release(got);
    }
    Tensor *sf = tensor_sum(full), *sm = tensor_sum(mine);
    cr_assert_eq(tensor_backward(sf), 0, "%s", error_get());
    cr_assert_eq(tensor_backward(sm), 0, "%s", error_get());
    tensor_release(sf), tensor_release(sm);
    for (int r = 0; r < 2; r++) {
        Tensor *want = tensor_narrow(in[0]->grad, 0, 1 + 2 * r, 1);
        Tensor *got = tensor_narrow(part[0]->grad, 0, r, 1);
        assert_tensor_close(got, want, 0, 1e-15, "gradient of q of local sample");
        tensor_release(want), tensor_release(got);
    }
    tensor_release(full), tensor_release(mine);
    for (int i = 0; i < 3; i++) tensor_release(in[i]), tensor_release(part[i]);
}
