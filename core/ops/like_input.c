/* like_input.c - a tensor argument against the input's dtype and device;
 * see like_input.h. */
#include "core/ops/like_input.h"

#include "core/error.h"

int ops_check_like_input(const char *op, const char *what, const Tensor *t, const Tensor *x) {
    if (t->dtype != x->dtype)
        return error_set("%s: %s is %s but input is %s", op, what, dtype_name(t->dtype),
                         dtype_name(x->dtype));
    if (!device_equal(t->device, x->device)) {
        char a[16], b[16];
        return error_set("%s: %s is on %s but input is on %s", op, what,
                         device_name(t->device, a, sizeof a), device_name(x->device, b, sizeof b));
    }
    return 0;
}
