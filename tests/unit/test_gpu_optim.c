/* test_gpu_optim.c - the optimizers' fused updates on the GPU against the
 * CPU's: one tensor's update kernel by kernel, and whole optimizers that
 * update lists of parameters in one launch.
 *
 * Every test skips with "no CUDA device: ..." where there is none.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/optim/optimizer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "tests/support/need_gpu.h"
#include "tests/support/optim_one.h"
#include "tests/support/parity.h"

/* The fused updates against the CPU's, three steps, bit for bit up to
 * sqrt/division rounding (both are IEEE on the GPU, so in practice equal). */
Test(gpu, fused_optimizer_updates) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    DType dts[] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    for (int d = 0; d < 2; d++)
        for (int variant = 0; variant < 4; variant++) {
            DType dt = dts[d];
            Rng r;
            rng_init(&r, 5 + (uint64_t)variant);
            Tensor *pc = parity_rand(&r, SHAPE(1000), dt, -1, 1), *pg = parity_to_gpu(pc);
            Tensor *s1c = tensor_zeros(SHAPE(1000), dt, DEVICE_CPU_INIT), *s1g = parity_to_gpu(s1c);
            Tensor *s2c = tensor_zeros(SHAPE(1000), dt, DEVICE_CPU_INIT), *s2g = parity_to_gpu(s2c);
            Tensor *s3c = tensor_zeros(SHAPE(1000), dt, DEVICE_CPU_INIT), *s3g = parity_to_gpu(s3c);
            for (int step = 1; step <= 3; step++) {
                Tensor *gc = parity_rand(&r, SHAPE(1000), dt, -1, 1), *gg = parity_to_gpu(gc);
                switch (variant) {
                case 0: /* SGD momentum + weight decay + dampening */
                    sgd_one(&cpu_backend, pc, gc, s1c, 0.1, 0.9, 0.1, 0.01, false, step == 1);
                    sgd_one(be, pg, gg, s1g, 0.1, 0.9, 0.1, 0.01, false, step == 1);
                    break;
                case 1: /* SGD nesterov */
                    sgd_one(&cpu_backend, pc, gc, s1c, 0.05, 0.8, 0, 0, true, step == 1);
                    sgd_one(be, pg, gg, s1g, 0.05, 0.8, 0, 0, true, step == 1);
                    break;
                case 2: /* Adam, coupled weight decay, amsgrad */
                    adam_one(&cpu_backend, pc, gc, s1c, s2c, s3c, 1e-3, 0.9, 0.999, 1e-8, 0.01,
                                            false, step);
                    adam_one(be, pg, gg, s1g, s2g, s3g, 1e-3, 0.9, 0.999, 1e-8, 0.01, false,
                                    step);
                    break;
                default: /* AdamW */
                    adam_one(&cpu_backend, pc, gc, s1c, s2c, NULL, 1e-3, 0.9, 0.999, 1e-8, 0.01,
                                            true, step);
                    adam_one(be, pg, gg, s1g, s2g, NULL, 1e-3, 0.9, 0.999, 1e-8, 0.01, true,
                                    step);
                    break;
                }
                tensor_release(gc);
                tensor_release(gg);
            }
            const char *names[] = {"sgd momentum", "sgd nesterov", "adam amsgrad", "adamw"};
            parity_check_close(names[variant], dt, pg, pc, dt == DTYPE_FLOAT32 ? 1e-6 : 1e-14);
            parity_check_close(names[variant], dt, s1g, s1c, dt == DTYPE_FLOAT32 ? 1e-6 : 1e-14);
            Tensor *all[] = {pc, pg, s1c, s1g, s2c, s2g, s3c, s3g};
            parity_release_all(8, all);
        }
}

/* The optimizers through optimizer_step on cuda, where one launch updates
 * a list of up to 24 tensors: 30 parameters (two launches) of 1 to 200,000
 * elements (several chunks of one tensor), one of them without a grad at
 * the second step (skipped: for Adam its step count falls behind the
 * others'), against the same optimizer on the CPU. */
Test(gpu, optimizers_update_lists_of_parameters) {
    test_need_gpu();
    enum { NP = 30 };
    for (int variant = 0; variant < 3; variant++) {
        Rng r;
        rng_init(&r, 40 + (uint64_t)variant);
        Tensor *pc[NP], *pg[NP];
        for (int i = 0; i < NP; i++) {
            int64_t n = i == 7 ? 200000 : 1 + (i * 37) % 500;
            pc[i] = parity_rand(&r, SHAPE(n), DTYPE_FLOAT32, -1, 1);
            pg[i] = parity_to_gpu(pc[i]);
        }
        Optimizer *oc, *og;
        if (variant == 0) {
            SgdOptions o = {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01};
            oc = sgd_new(pc, NP, o);
            og = sgd_new(pg, NP, o);
        } else {
            AdamOptions o = adam_options_default();
            o.weight_decay = 0.01;
            o.amsgrad = variant == 1;
            oc = variant == 1 ? adam_new(pc, NP, o) : adamw_new(pc, NP, o);
            og = variant == 1 ? adam_new(pg, NP, o) : adamw_new(pg, NP, o);
        }
        cr_assert(oc && og, "%s", error_get());
        for (int step = 1; step <= 3; step++) {
            for (int i = 0; i < NP; i++) {
                tensor_zero_grad(pc[i]);
                tensor_zero_grad(pg[i]);
                if (step == 2 && i == 5) continue; /* no grad: skipped */
                pc[i]->grad = parity_rand(&r, pc[i]->ndim, pc[i]->shape, DTYPE_FLOAT32, -1, 1);
                pg[i]->grad = parity_to_gpu(pc[i]->grad);
            }
            cr_assert_eq(optimizer_step(oc), 0, "%s", error_get());
            cr_assert_eq(optimizer_step(og), 0, "%s", error_get());
        }
        double worst = 0;
        for (int i = 0; i < NP; i++) {
            double e = parity_rel_err(pg[i], pc[i]);
            worst = e > worst ? e : worst;
        }
        fprintf(stderr, "gpu %-36s %-7s rel err %.3g\n",
                variant == 0 ? "SGD over 30 parameters" : variant == 1 ? "Adam amsgrad over 30"
                                                                       : "AdamW over 30",
                "float32", worst);
        cr_assert(worst <= 1e-6, "variant %d: relative error %g", variant, worst);
        optimizer_free(oc);
        optimizer_free(og);
        for (int i = 0; i < NP; i++) {
            tensor_release(pc[i]);
            tensor_release(pg[i]);
        }
    }
}
