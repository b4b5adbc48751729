/* test_lr_expr.c - LambdaLR's expression language: values, precedence as in
 * Python, errors with positions, and the bounds on length and nesting. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/optim/lr_expr.h"

static double eval_at(const char *text, double epoch) {
    LrExpr *e = lr_expr_parse(text);
    cr_assert(e != NULL, "parse \"%s\": %s", text, error_get());
    double v = NAN;
    int rc = lr_expr_eval(e, epoch, &v);
    cr_assert_eq(rc, 0, "eval \"%s\" at %g: %s", text, epoch, error_get());
    lr_expr_free(e);
    return v;
}

#define EXPECT(text, epoch, want)                                                        \
    do {                                                                                 \
        double got_ = eval_at(text, epoch), want_ = (want);                              \
        cr_expect(fabs(got_ - want_) <= 1e-15 * fabs(want_), "\"%s\" at %g: %.17g, expected %.17g", \
                  text, (double)(epoch), got_, want_);                                   \
    } while (0)

Test(lr_expr, arithmetic_and_precedence) {
    EXPECT("2 + 3 * 4", 0, 14);
    EXPECT("(2 + 3) * 4", 0, 20);
    EXPECT("10 - 4 - 3", 0, 3);   /* left-associative */
    EXPECT("64 / 4 / 2", 0, 8);
    EXPECT("2 * 3 / 4", 0, 1.5);
    EXPECT("7 / 2", 0, 3.5);      /* true division, as Python 3 */
    EXPECT("-2 ** 2", 0, -4);     /* ** binds tighter than unary minus */
    EXPECT("(-2) ** 2", 0, 4);
    EXPECT("2 ** 3 ** 2", 0, 512); /* right-associative */
    EXPECT("(2 ** 3) ** 2", 0, 64);
    EXPECT("2 ** -1", 0, 0.5);
    EXPECT("-2 ** -2", 0, -0.25);
    EXPECT("2 ** -2 ** 2", 0, 1.0 / 16);
    EXPECT("+-+1", 0, -1);
    EXPECT("--1", 0, 1);
    EXPECT("1 - -1", 0, 2);
    EXPECT("2 * -3", 0, -6);
    EXPECT("-epoch ** 2", 3, -9);
    EXPECT("(-8) ** 2.0", 0, 64);
    EXPECT("0 ** 0", 0, 1);
    EXPECT("1 + 2 * 3 ** 2 / 6 - 1", 0, 3);
}

Test(lr_expr, numbers) {
    EXPECT("1", 0, 1);
    EXPECT("0.5", 0, 0.5);
    EXPECT(".5", 0, 0.5);
    EXPECT("5.", 0, 5);
    EXPECT("1e-3", 0, 1e-3);
    EXPECT("1E3", 0, 1000);
    EXPECT("2.5e+2", 0, 250);
    EXPECT("007", 0, 7);
    EXPECT("3.141592653589793", 0, 3.141592653589793);
    EXPECT("1e308", 0, 1e308);
}

Test(lr_expr, lambdas_of_the_design) {
    for (int e = 0; e < 20; e++) {
        EXPECT("0.95 ** epoch", e, pow(0.95, e));
        EXPECT("1 / (1 + epoch)", e, 1.0 / (1 + e));
        EXPECT("min(1, (epoch + 1) / 5)", e, (e + 1) / 5.0 < 1 ? (e + 1) / 5.0 : 1);
    }
    EXPECT(" \t epoch\n", 4, 4);
    EXPECT("epoch", 2.5, 2.5);
}

Test(lr_expr, functions) {
    EXPECT("min(3, 1, 2)", 0, 1);
    EXPECT("max(1, 3, 2)", 0, 3);
    EXPECT("max(-1, -2)", 0, -1);
    EXPECT("min(epoch, 10 - epoch)", 7, 3);
    EXPECT("exp(0)", 0, 1);
    EXPECT("exp(-epoch / 10)", 3, exp(-0.3));
    EXPECT("cos(0)", 0, 1);
    EXPECT("0.5 * (1 + cos(3.141592653589793 * epoch / 12))", 5,
           0.5 * (1 + cos(3.141592653589793 * 5 / 12)));
    EXPECT("sqrt(16)", 0, 4);
    EXPECT("sqrt(epoch) * epoch", 4, 8);
    EXPECT("max(min(epoch, 2), sqrt(exp(0)))", 5, 2);
    EXPECT("-sqrt(4) ** 3", 0, -8); /* a call is a primary: -(sqrt(4) ** 3) */
}

Test(lr_expr, text_is_kept) {
    LrExpr *e = lr_expr_parse("0.95 ** epoch");
    cr_assert(e != NULL);
    cr_expect_str_eq(lr_expr_text(e), "0.95 ** epoch");
    lr_expr_free(e);
    lr_expr_free(NULL);
}

static void expect_parse_error(const char *text, const char *msg) {
    error_clear();
    LrExpr *e = lr_expr_parse(text);
    cr_expect(e == NULL, "\"%s\" parsed", text ? text : "(null)");
    lr_expr_free(e);
    cr_expect_str_eq(error_get(), msg, "\"%s\"", text ? text : "(null)");
}

Test(lr_expr, parse_errors) {
    expect_parse_error("0.95 ** $poch", "unexpected character '$' at position 8");
    expect_parse_error("epoch % 2", "unexpected character '%' at position 6");
    expect_parse_error("2 ^ 3", "unexpected character '^' at position 2 (powers are written **)");
    expect_parse_error("\x01", "unexpected character '\\x01' at position 0");
    expect_parse_error("1 + \xc3\xa9", "unexpected character '\\xc3' at position 4");
    expect_parse_error(".", "unexpected character '.' at position 0");
    expect_parse_error("foo + 1",
                       "unknown name 'foo' at position 0 (names: epoch, min, max, exp, cos, sqrt)");
    expect_parse_error("2 * math.exp(1)",
                       "unknown name 'math' at position 4 (names: epoch, min, max, exp, cos, sqrt)");
    expect_parse_error("lambda epoch: 1",
                       "unknown name 'lambda' at position 0 (names: epoch, min, max, exp, cos, sqrt)");
    expect_parse_error("(epoch + 1", "missing ')' at position 10 (to close '(' at position 0)");
    expect_parse_error("min(1, (epoch", "missing ')' at position 13 (to close '(' at position 7)");
    expect_parse_error("min(1, 2", "missing ')' at position 8 (to close '(' at position 3)");
    expect_parse_error("(1 2)", "unexpected '2' at position 3 (expected ')')");
    expect_parse_error("min(1 2)", "unexpected '2' at position 6 (expected ',' or ')')");
    expect_parse_error("epoch)", "unmatched ')' at position 5");
    expect_parse_error("1 2", "unexpected '2' at position 2");
    expect_parse_error("2 epoch", "unexpected 'epoch' at position 2");
    expect_parse_error("2epoch", "malformed number '2e' at position 0");
    expect_parse_error("1.2.3", "unexpected '.3' at position 3");
    expect_parse_error("epoch(2)", "unexpected '(' at position 5");
    expect_parse_error("1 +", "unexpected end of expression at position 3");
    expect_parse_error("-", "unexpected end of expression at position 1");
    expect_parse_error("1 * * 2", "unexpected '*' at position 4");
    expect_parse_error("epoch // 2", "unexpected '/' at position 7");
    expect_parse_error("()", "unexpected ')' at position 1");
    expect_parse_error("min(1,)", "unexpected ')' at position 6");
    expect_parse_error("exp", "exp is a function: expected '(' at position 3");
    expect_parse_error("sqrt + 1", "sqrt is a function: expected '(' at position 5");
    expect_parse_error("exp(1, 2)", "exp() takes 1 argument, got 2, at position 0");
    expect_parse_error("1 + cos()", "cos() takes 1 argument, got 0, at position 4");
    expect_parse_error("min(1)", "min() needs at least 2 arguments, got 1, at position 0");
    expect_parse_error("max()", "max() needs at least 2 arguments, got 0, at position 0");
    expect_parse_error("1e", "malformed number '1e' at position 0");
    expect_parse_error("2 * 1e+x", "malformed number '1e+' at position 4");
    expect_parse_error("1e999", "number '1e999' out of range at position 0");
    expect_parse_error("", "empty expression");
    expect_parse_error(" \t\n", "empty expression");
    expect_parse_error(NULL, "expression is missing");
}

Test(lr_expr, long_token_is_truncated_in_message) {
    char text[128];
    snprintf(text, sizeof text, "1 %s", "abcdefghijabcdefghijabcdefghijabcdefghij");
    expect_parse_error(text, "unexpected 'abcdefghijabcdefghijabcdefghijab...' at position 2");
}

/* "((...(1)...))" with n pairs. */
static char *nested(int n) {
    char *s = malloc((size_t)2 * n + 2);
    cr_assert(s != NULL);
    memset(s, '(', (size_t)n);
    s[n] = '1';
    memset(s + n + 1, ')', (size_t)n);
    s[2 * n + 1] = '\0';
    return s;
}

Test(lr_expr, nesting_is_bounded) {
    char *ok = nested(LR_EXPR_MAX_DEPTH - 1); /* the outermost level is the expression */
    EXPECT(ok, 0, 1);
    free(ok);
    char *deep = nested(LR_EXPR_MAX_DEPTH);
    expect_parse_error(deep, "expression nested deeper than 64 levels at position 64");
    free(deep);
    /* Unclosed, and far past the depth: stops at the bound, no stack overflow. */
    char open[LR_EXPR_MAX_LEN + 1];
    memset(open, '(', LR_EXPR_MAX_LEN);
    open[LR_EXPR_MAX_LEN] = '\0';
    expect_parse_error(open, "expression nested deeper than 64 levels at position 64");
    char signs[201];
    memset(signs, '-', 200);
    signs[200] = '\0';
    expect_parse_error(signs, "expression nested deeper than 64 levels at position 64");
    /* 2 ** 2 ** ... recurses on its right operand. */
    char pows[LR_EXPR_MAX_LEN + 1] = "";
    for (int i = 0; i < 100; i++) strcat(pows, "1**");
    strcat(pows, "1");
    expect_parse_error(pows, "expression nested deeper than 64 levels at position 192");
}

Test(lr_expr, length_is_bounded) {
    /* 1+1+...+1, exactly LR_EXPR_MAX_LEN characters: long but flat, fine. */
    char text[LR_EXPR_MAX_LEN + 2];
    int n = 0;
    text[n++] = '1';
    while (n + 2 <= LR_EXPR_MAX_LEN) text[n++] = '+', text[n++] = '1';
    while (n < LR_EXPR_MAX_LEN) text[n++] = ' ';
    text[n] = '\0';
    cr_assert_eq(strlen(text), LR_EXPR_MAX_LEN);
    EXPECT(text, 0, (LR_EXPR_MAX_LEN + 1) / 2);
    /* min(1,1,...,1): many arguments. */
    char args[LR_EXPR_MAX_LEN + 1] = "min(2";
    while (strlen(args) + 3 < LR_EXPR_MAX_LEN) strcat(args, ",3");
    strcat(args, ")");
    EXPECT(args, 0, 2);
    text[n++] = '1';
    text[n] = '\0';
    expect_parse_error(text, "expression longer than 1024 characters");
}

static void expect_eval_error(const char *text, double epoch, const char *msg) {
    LrExpr *e = lr_expr_parse(text);
    cr_assert(e != NULL, "parse \"%s\": %s", text, error_get());
    double v = 12345;
    error_clear();
    cr_expect_eq(lr_expr_eval(e, epoch, &v), -1, "\"%s\" at %g evaluated", text, epoch);
    cr_expect_eq(v, 12345, "output written on error");
    cr_expect_str_eq(error_get(), msg, "\"%s\" at %g", text, epoch);
    lr_expr_free(e);
}

Test(lr_expr, eval_errors) {
    expect_eval_error("1 / epoch", 0, "division by zero at position 2");
    EXPECT("1 / epoch", 4, 0.25);
    expect_eval_error("1 / (epoch - epoch)", 3, "division by zero at position 2");
    expect_eval_error("sqrt(epoch - 5)", 1, "sqrt of a negative number (-4) at position 0");
    expect_eval_error("0 ** -1", 0, "0 raised to a negative power at position 2");
    expect_eval_error("(-8) ** (1 / 3)", 0,
                      "negative number (-8) raised to a fractional power at position 5");
    expect_eval_error("exp(epoch)", 1000, "overflow at position 0");
    expect_eval_error("10 ** epoch", 400, "overflow at position 3");
    expect_eval_error("1e308 * 10", 0, "overflow at position 6");
    expect_eval_error("1e308 + 1e308", 0, "overflow at position 6");
    expect_eval_error("epoch", NAN, "epoch is not finite");
    expect_eval_error("epoch", INFINITY, "epoch is not finite");
}
