/* lr_expr.c - LambdaLR's lr_lambda expressions: lexer, parser, evaluator.
 *
 * A recursive-descent parser over Python's grammar subset
 *
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '/') unary)*
 *   unary   := ('+' | '-') unary | power
 *   power   := primary ('**' unary)?
 *   primary := NUMBER | 'epoch' | FUNC '(' expr (',' expr)* ')' | '(' expr ')'
 *
 * emits postfix code as it goes, so evaluation is a loop over an array with a
 * fixed-size value stack: no tree, no recursion at run time. Every op keeps
 * the source position of the token it came from so that run-time errors
 * (division by zero...) can point at it too.
 *
 * Bounds: each op comes from a distinct source character (a number from its
 * first digit, a fold of min/max from its comma, ...), so the code is never
 * longer than the text, and the text is at most LR_EXPR_MAX_LEN characters;
 * recursion is bounded by LR_EXPR_MAX_DEPTH.
 */
#include "core/optim/lr_expr.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef enum {
    OP_NUM, OP_EPOCH,
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MIN, OP_MAX, /* binary */
    OP_NEG, OP_EXP, OP_COS, OP_SQRT,                        /* unary */
} LrOpKind;

typedef struct {
    LrOpKind kind;
    int pos;      /* 0-based index of the token in the source */
    double value; /* OP_NUM */
} LrOp;

struct LrExpr {
    char *text;
    int n_ops;
    LrOp ops[];
};

typedef enum {
    TOK_END, TOK_NUM, TOK_NAME,
    TOK_PLUS, TOK_MINUS, TOK_STAR, TOK_SLASH, TOK_POW,
    TOK_LPAREN, TOK_RPAREN, TOK_COMMA,
} TokKind;

typedef struct {
    TokKind kind;
    int pos, len;
    double num;
} Token;

typedef struct {
    const char *src;
    int len;
    int at;    /* lexer position */
    Token tok; /* current token */
    LrExpr *out;
    int cap;   /* ops allocated in out */
    int depth;
} Parser;

/* ---- lexer ---------------------------------------------------------------- */

static int lex_number(Parser *p, int start) {
    const char *s = p->src;
    int i = start, digits = 0;
    while (isdigit((unsigned char)s[i])) i++, digits++;
    if (s[i] == '.') {
        i++;
        while (isdigit((unsigned char)s[i])) i++, digits++;
    }
    if (digits == 0) /* a lone '.' */
        return error_set("unexpected character '.' at position %d", start);
    if (s[i] == 'e' || s[i] == 'E') {
        int j = i + 1;
        if (s[j] == '+' || s[j] == '-') j++;
        if (!isdigit((unsigned char)s[j]))
            return error_set("malformed number '%.*s' at position %d", j - start, s + start,
                             start);
        while (isdigit((unsigned char)s[j])) j++;
        i = j;
    }
    /* strtod on a bounded copy: it must not read on into hex, "inf", etc. */
    char buf[LR_EXPR_MAX_LEN + 1];
    memcpy(buf, s + start, (size_t)(i - start));
    buf[i - start] = '\0';
    double v = strtod(buf, NULL);
    if (!isfinite(v))
        return error_set("number '%s' out of range at position %d", buf, start);
    p->tok = (Token){TOK_NUM, start, i - start, v};
    p->at = i;
    return 0;
}

static int lex_next(Parser *p) {
    const char *s = p->src;
    while (s[p->at] == ' ' || s[p->at] == '\t' || s[p->at] == '\n' || s[p->at] == '\r') p->at++;
    int i = p->at;
    unsigned char c = (unsigned char)s[i];
    if (c == '\0') {
        p->tok = (Token){TOK_END, i, 0, 0};
        return 0;
    }
    if (isdigit(c) || c == '.') return lex_number(p, i);
    if (isalpha(c) || c == '_') {
        int j = i;
        while (isalnum((unsigned char)s[j]) || s[j] == '_') j++;
        p->tok = (Token){TOK_NAME, i, j - i, 0};
        p->at = j;
        return 0;
    }
    TokKind k;
    int n = 1;
    switch (c) {
    case '+': k = TOK_PLUS; break;
    case '-': k = TOK_MINUS; break;
    case '*':
        k = TOK_STAR;
        if (s[i + 1] == '*') k = TOK_POW, n = 2;
        break;
    case '/': k = TOK_SLASH; break;
    case '(': k = TOK_LPAREN; break;
    case ')': k = TOK_RPAREN; break;
    case ',': k = TOK_COMMA; break;
    case '^':
        return error_set("unexpected character '^' at position %d (powers are written **)", i);
    default:
        if (isprint(c)) return error_set("unexpected character '%c' at position %d", c, i);
        return error_set("unexpected character '\\x%02x' at position %d", c, i);
    }
    p->tok = (Token){k, i, n, 0};
    p->at = i + n;
    return 0;
}

/* "'text'" of the current token, or "end of expression". */
static const char *tok_desc(const Parser *p, char *buf, size_t n) {
    if (p->tok.kind == TOK_END) return "end of expression";
    int len = p->tok.len > 32 ? 32 : p->tok.len;
    snprintf(buf, n, "'%.*s%s'", len, p->src + p->tok.pos, p->tok.len > 32 ? "..." : "");
    return buf;
}

static int unexpected(const Parser *p, const char *expected) {
    char buf[48];
    if (expected)
        return error_set("unexpected %s at position %d (expected %s)", tok_desc(p, buf, sizeof buf),
                         p->tok.pos, expected);
    return error_set("unexpected %s at position %d", tok_desc(p, buf, sizeof buf), p->tok.pos);
}

/* ---- parser --------------------------------------------------------------- */

static int emit(Parser *p, LrOpKind kind, int pos, double value) {
    if (p->out->n_ops >= p->cap) /* cannot happen: see the bound above */
        return error_set("expression too complex at position %d", pos);
    p->out->ops[p->out->n_ops++] = (LrOp){kind, pos, value};
    return 0;
}

static int parse_expr(Parser *p);
static int parse_unary(Parser *p);

static int tok_is_name(const Parser *p, const char *name) {
    size_t n = strlen(name);
    return p->tok.kind == TOK_NAME && (size_t)p->tok.len == n &&
           memcmp(p->src + p->tok.pos, name, n) == 0;
}

/* ')' closing the '(' at open_pos; `expected` lists what else would do. */
static int expect_rparen(Parser *p, int open_pos, const char *expected) {
    if (p->tok.kind == TOK_RPAREN) return lex_next(p);
    if (p->tok.kind == TOK_END)
        return error_set("missing ')' at position %d (to close '(' at position %d)", p->tok.pos,
                         open_pos);
    return unexpected(p, expected);
}

static int parse_call(Parser *p) {
    static const struct { const char *name; LrOpKind op; int variadic; } funcs[] = {
        {"min", OP_MIN, 1}, {"max", OP_MAX, 1},
        {"exp", OP_EXP, 0}, {"cos", OP_COS, 0}, {"sqrt", OP_SQRT, 0},
    };
    int f = -1;
    for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++)
        if (tok_is_name(p, funcs[i].name)) f = (int)i;
    Token name = p->tok;
    if (f < 0)
        return error_set("unknown name '%.*s' at position %d (names: epoch, min, max, exp, cos, "
                         "sqrt)", name.len > 32 ? 32 : name.len, p->src + name.pos, name.pos);
    if (lex_next(p) != 0) return -1;
    if (p->tok.kind != TOK_LPAREN)
        return error_set("%s is a function: expected '(' at position %d", funcs[f].name,
                         p->tok.pos);
    int open = p->tok.pos, argc = 0;
    if (lex_next(p) != 0) return -1;
    if (p->tok.kind != TOK_RPAREN) {
        if (parse_expr(p) != 0) return -1;
        argc = 1;
        while (p->tok.kind == TOK_COMMA) {
            int comma = p->tok.pos;
            if (lex_next(p) != 0 || parse_expr(p) != 0) return -1;
            argc++;
            /* min(a, b, c) == min(min(a, b), c): Python's min keeps the
             * current value unless a later one is strictly smaller. */
            if (funcs[f].variadic && emit(p, funcs[f].op, comma, 0) != 0) return -1;
        }
    }
    if (expect_rparen(p, open, "',' or ')'") != 0) return -1;
    if (funcs[f].variadic && argc < 2)
        return error_set("%s() needs at least 2 arguments, got %d, at position %d", funcs[f].name,
                         argc, name.pos);
    if (!funcs[f].variadic) {
        if (argc != 1)
            return error_set("%s() takes 1 argument, got %d, at position %d", funcs[f].name, argc,
                             name.pos);
        return emit(p, funcs[f].op, name.pos, 0);
    }
    return 0;
}

static int parse_primary(Parser *p) {
    switch (p->tok.kind) {
    case TOK_NUM:
        if (emit(p, OP_NUM, p->tok.pos, p->tok.num) != 0) return -1;
        return lex_next(p);
    case TOK_NAME:
        if (tok_is_name(p, "epoch")) {
            if (emit(p, OP_EPOCH, p->tok.pos, 0) != 0) return -1;
            return lex_next(p);
        }
        return parse_call(p);
    case TOK_LPAREN: {
        int open = p->tok.pos;
        if (lex_next(p) != 0 || parse_expr(p) != 0) return -1;
        return expect_rparen(p, open, "')'");
    }
    case TOK_END:
        return error_set("unexpected end of expression at position %d", p->tok.pos);
    default:
        return unexpected(p, NULL);
    }
}

static int parse_power(Parser *p) {
    if (parse_primary(p) != 0) return -1;
    if (p->tok.kind != TOK_POW) return 0;
    int pos = p->tok.pos;
    /* The right operand is a unary: 2 ** -1, and 2 ** 3 ** 2 == 2 ** 9. */
    if (lex_next(p) != 0 || parse_unary(p) != 0) return -1;
    return emit(p, OP_POW, pos, 0);
}

/* Every level of nesting - parentheses, calls, signs, ** - passes here once. */
static int parse_unary(Parser *p) {
    if (++p->depth > LR_EXPR_MAX_DEPTH)
        return error_set("expression nested deeper than %d levels at position %d",
                         LR_EXPR_MAX_DEPTH, p->tok.pos);
    int rc;
    if (p->tok.kind == TOK_PLUS || p->tok.kind == TOK_MINUS) {
        Token sign = p->tok;
        rc = lex_next(p);
        if (rc == 0) rc = parse_unary(p);
        if (rc == 0 && sign.kind == TOK_MINUS) rc = emit(p, OP_NEG, sign.pos, 0);
    } else {
        rc = parse_power(p);
    }
    p->depth--;
    return rc;
}

static int parse_term(Parser *p) {
    if (parse_unary(p) != 0) return -1;
    while (p->tok.kind == TOK_STAR || p->tok.kind == TOK_SLASH) {
        Token op = p->tok;
        if (lex_next(p) != 0 || parse_unary(p) != 0) return -1;
        if (emit(p, op.kind == TOK_STAR ? OP_MUL : OP_DIV, op.pos, 0) != 0) return -1;
    }
    return 0;
}

static int parse_expr(Parser *p) {
    if (parse_term(p) != 0) return -1;
    while (p->tok.kind == TOK_PLUS || p->tok.kind == TOK_MINUS) {
        Token op = p->tok;
        if (lex_next(p) != 0 || parse_term(p) != 0) return -1;
        if (emit(p, op.kind == TOK_PLUS ? OP_ADD : OP_SUB, op.pos, 0) != 0) return -1;
    }
    return 0;
}

LrExpr *lr_expr_parse(const char *text) {
    if (!text) {
        error_set("expression is missing");
        return NULL;
    }
    size_t len = strnlen(text, LR_EXPR_MAX_LEN + 1);
    if (len > LR_EXPR_MAX_LEN) {
        error_set("expression longer than %d characters", LR_EXPR_MAX_LEN);
        return NULL;
    }
    Parser p = {.src = text, .len = (int)len, .cap = (int)len + 1};
    p.out = malloc(sizeof *p.out + (size_t)p.cap * sizeof(LrOp));
    if (!p.out) {
        error_set("out of memory compiling expression");
        return NULL;
    }
    p.out->n_ops = 0;
    p.out->text = strdup(text);
    if (!p.out->text) {
        error_set("out of memory compiling expression");
        goto fail;
    }
    if (lex_next(&p) != 0) goto fail;
    if (p.tok.kind == TOK_END) {
        error_set("empty expression");
        goto fail;
    }
    if (parse_expr(&p) != 0) goto fail;
    if (p.tok.kind == TOK_RPAREN) {
        error_set("unmatched ')' at position %d", p.tok.pos);
        goto fail;
    }
    if (p.tok.kind != TOK_END) {
        unexpected(&p, NULL);
        goto fail;
    }
    return p.out;
fail:
    lr_expr_free(p.out);
    return NULL;
}

/* ---- evaluator ------------------------------------------------------------ */

int lr_expr_eval(const LrExpr *e, double epoch, double *out) {
    if (!e || !out) return error_set("lr_expr_eval: NULL argument");
    if (!isfinite(epoch)) return error_set("epoch is not finite");
    /* The stack never holds more values than there are ops. */
    double st[LR_EXPR_MAX_LEN + 1];
    int sp = 0;
    for (int i = 0; i < e->n_ops; i++) {
        const LrOp *op = &e->ops[i];
        double a, b, r;
        switch (op->kind) {
        case OP_NUM: st[sp++] = op->value; continue;
        case OP_EPOCH: st[sp++] = epoch; continue;
        case OP_NEG: st[sp - 1] = -st[sp - 1]; continue;
        case OP_EXP: r = exp(st[sp - 1]); break;
        case OP_COS: r = cos(st[sp - 1]); break;
        case OP_SQRT:
            a = st[sp - 1];
            if (a < 0)
                return error_set("sqrt of a negative number (%g) at position %d", a, op->pos);
            r = sqrt(a);
            break;
        default: /* binary */
            b = st[--sp];
            a = st[sp - 1];
            switch (op->kind) {
            case OP_ADD: r = a + b; break;
            case OP_SUB: r = a - b; break;
            case OP_MUL: r = a * b; break;
            case OP_DIV:
                if (b == 0) return error_set("division by zero at position %d", op->pos);
                r = a / b;
                break;
            case OP_POW:
                if (a == 0 && b < 0)
                    return error_set("0 raised to a negative power at position %d", op->pos);
                if (a < 0 && b != floor(b))
                    return error_set("negative number (%g) raised to a fractional power at "
                                     "position %d", a, op->pos);
                r = pow(a, b);
                break;
            case OP_MIN: r = b < a ? b : a; break;
            case OP_MAX: r = b > a ? b : a; break;
            default: return error_set("lr_expr_eval: bad op %d", (int)op->kind);
            }
        }
        if (!isfinite(r)) return error_set("overflow at position %d", op->pos);
        st[sp - 1] = r;
    }
    *out = st[0];
    return 0;
}

const char *lr_expr_text(const LrExpr *e) { return e ? e->text : NULL; }

int lr_expr_ops(const LrExpr *e) { return e ? e->n_ops : 0; }

void lr_expr_free(LrExpr *e) {
    if (!e) return;
    free(e->text);
    free(e);
}
