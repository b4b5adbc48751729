/* fuzz_lr_expr.c - LambdaLR's lr_lambda expressions (core/optim/lr_expr.c).
 *
 * The input is the expression text (NUL-terminated here; a NUL inside ends
 * it, as in the JSON string it comes from). What compiles must keep its
 * text, and evaluate at a few epochs to a finite number or fail with a
 * message, as lr_expr.h promises.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/optim/lr_expr.h"
#include "tests/fuzz/fuzz_support.h"

static const double epochs[] = {0, 1, 2, 7, 100, 1e6};

static void check_eval(const LrExpr *e) {
    for (size_t i = 0; i < sizeof epochs / sizeof epochs[0]; i++) {
        double v = NAN;
        error_clear();
        int rc = lr_expr_eval(e, epochs[i], &v);
        if (rc != 0 && !error_get()[0])
            fuzz_fail("lr_expr_eval('%s', %g) failed without a message", lr_expr_text(e),
                      epochs[i]);
        if (rc == 0 && !isfinite(v))
            fuzz_fail("lr_expr_eval('%s', %g) = %g, not finite", lr_expr_text(e), epochs[i], v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    fuzz_begin();
    LrExpr *e = lr_expr_parse(text);
    fuzz_end("lr_expr_parse", !e);
    if (e) {
        if (strcmp(lr_expr_text(e), text) != 0)
            fuzz_fail("lr_expr_text is '%s', compiled from '%s'", lr_expr_text(e), text);
        check_eval(e);
    }
    lr_expr_free(e);
    free(text);
    return 0;
}
