/* lr_expr.h - the expression language of LambdaLR's "lr_lambda".
 *
 * A PyTorch script writes LambdaLR(opt, lambda epoch: 0.95 ** epoch); a traind
 * job writes "lr_lambda": "0.95 ** epoch". This is the small, safe evaluator
 * for that string: no Python, no eval, only
 *
 *   numbers        1  0.5  .5  1e-3  2.5E+2
 *   the variable   epoch
 *   operators      + - * / **   unary + -   ( )
 *   functions      min(a, b, ...)  max(a, b, ...)  exp(x)  cos(x)  sqrt(x)
 *
 * with Python's precedence: ** binds tighter than unary minus on its left and
 * is right-associative (-2**2 == -4, 2**3**2 == 512, 2**-1 == 0.5).
 *
 * The text is compiled once into postfix code (lr_expr_parse) and evaluated
 * per epoch without allocating (lr_expr_eval). Errors name the 0-based
 * character position: "unexpected character '$' at position 6". Evaluation
 * fails, as Python would raise, on division by zero, sqrt of a negative,
 * 0 to a negative power, a negative number to a fractional power, and
 * overflow to infinity.
 */
#ifndef TRAIND_CORE_OPTIM_LR_EXPR_H
#define TRAIND_CORE_OPTIM_LR_EXPR_H

#define LR_EXPR_MAX_LEN 1024 /* characters of source text */
#define LR_EXPR_MAX_DEPTH 64 /* nested parentheses, calls, unary signs and ** */

typedef struct LrExpr LrExpr;

/* Compiles `text`. NULL on error, with error_get() saying what and where. */
LrExpr *lr_expr_parse(const char *text);
/* Evaluates at `epoch` into *out. 0, or -1 with error_get() set. Thread-safe:
 * the expression is not modified. */
int lr_expr_eval(const LrExpr *expr, double epoch, double *out);
/* The source text the expression was compiled from. */
const char *lr_expr_text(const LrExpr *expr);
/* The operations one evaluation runs (what it costs: about 4 ns each). */
int lr_expr_ops(const LrExpr *expr);
void lr_expr_free(LrExpr *expr);

#endif
