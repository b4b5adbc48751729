/* optim_one.h - optimizers for the tests: one parameter through a
 * backend's list-form optimizer kernels (Backend.sgd_update / adam_update
 * take a list of OptimUpdate), for the kernel tests that check a single
 * buffer's arithmetic, with the optimizers' own numbers
 * (sgd_update_consts, adam_update_consts) put on the parameter's device as
 * the optimizer step puts them; and each optimizer made from a pointer to
 * its options, for tests that run the same steps through all three. */
#ifndef TRAIND_TESTS_OPTIM_ONE_H
#define TRAIND_TESTS_OPTIM_ONE_H

#include <criterion/criterion.h>

#include "core/backend.h"
#include "core/optim/optimizer.h"

/* n numbers as a float64 tensor on p's device, or a failed test. */
static inline Tensor *optim_one_consts(const Tensor *p, const double *c, int n) {
    Tensor *host = tensor_from_doubles(c, 1, (int64_t[]){n}, DTYPE_FLOAT64);
    Tensor *t = host ? tensor_to_device(host, p->device) : NULL;
    tensor_release(host);
    cr_assert(t, "update numbers: %s", error_get());
    return t;
}

static inline void sgd_one(const Backend *be, Tensor *p, const Tensor *g, Tensor *buf, double lr,
                           double momentum, double dampening, double weight_decay,
                           bool nesterov, bool first) {
    double c[SGD_CONSTS];
    sgd_update_consts(c, lr, momentum, dampening, weight_decay, nesterov, first);
    Tensor *consts = optim_one_consts(p, c, SGD_CONSTS);
    OptimUpdate u = {.param = p, .grad = g, .state = {buf, NULL, NULL},
                     .consts = tensor_data(consts)};
    be->sgd_update(1, &u);
    tensor_release(consts);
}

static inline void adam_one(const Backend *be, Tensor *p, const Tensor *g, Tensor *m, Tensor *v,
                            Tensor *vmax, double lr, double beta1, double beta2, double eps,
                            double weight_decay, bool decoupled, int64_t step) {
    double c[ADAM_CONSTS];
    adam_update_consts(c, lr, beta1, beta2, eps, weight_decay, decoupled, step);
    Tensor *consts = optim_one_consts(p, c, ADAM_CONSTS);
    OptimUpdate u = {.param = p, .grad = g, .state = {m, v, vmax},
                     .consts = tensor_data(consts)};
    be->adam_update(1, &u);
    tensor_release(consts);
}

static inline Optimizer *make_sgd(Tensor *const *p, int n, const void *o) {
    return sgd_new(p, n, *(const SgdOptions *)o);
}
static inline Optimizer *make_adam(Tensor *const *p, int n, const void *o) {
    return adam_new(p, n, *(const AdamOptions *)o);
}
static inline Optimizer *make_adamw(Tensor *const *p, int n, const void *o) {
    return adamw_new(p, n, *(const AdamOptions *)o);
}

#endif
