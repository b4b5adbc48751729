/* optim_one.h - one parameter through a backend's list-form optimizer
 * kernels (Backend.sgd_update / adam_update take a list of OptimUpdate), for
 * the kernel tests that check a single buffer's arithmetic. */
#ifndef TRAIND_TESTS_OPTIM_ONE_H
#define TRAIND_TESTS_OPTIM_ONE_H

#include "core/backend.h"

static inline void sgd_one(const Backend *be, Tensor *p, const Tensor *g, Tensor *buf, double lr,
                           double momentum, double dampening, double weight_decay,
                           bool nesterov, bool first) {
    OptimUpdate u = {.param = p, .grad = g, .state = {buf, NULL, NULL}, .first = first};
    be->sgd_update(1, &u, lr, momentum, dampening, weight_decay, nesterov);
}

static inline void adam_one(const Backend *be, Tensor *p, const Tensor *g, Tensor *m, Tensor *v,
                            Tensor *vmax, double lr, double beta1, double beta2, double eps,
                            double weight_decay, bool decoupled, int64_t step) {
    OptimUpdate u = {.param = p, .grad = g, .state = {m, v, vmax}, .step = step};
    be->adam_update(1, &u, lr, beta1, beta2, eps, weight_decay, decoupled);
}

#endif
