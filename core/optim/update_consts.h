/* update_consts.h - the layout of a fused optimizer update's numbers
 * (core/backend.h's OptimUpdate.consts), in a header of its own so that
 * the GPU's kernels read them by the same names.
 *
 * They are what torch computes from its Python-float hyperparameters, in
 * double as Python does (sgd_update_consts, adam_update_consts), for one
 * parameter and step. They reach the kernels through device memory, not as
 * arguments, so that an update captured once in a CUDA graph reads each
 * replay's own (core/train_graph.c); each kernel casts them to the
 * parameter's dtype, as torch casts a scalar. Flags are 0 or 1. */
#ifndef TRAIND_CORE_OPTIM_UPDATE_CONSTS_H
#define TRAIND_CORE_OPTIM_UPDATE_CONSTS_H

enum {
    SGD_WEIGHT_DECAY,         /* added to the gradient times the parameter */
    SGD_MOMENTUM,             /* 0: no buffer */
    SGD_ONE_MINUS_DAMPENING,
    SGD_NEG_LR,
    SGD_NESTEROV,
    SGD_FIRST,                /* the buffer's first use: it starts as d */
    SGD_CONSTS
};
enum {
    ADAM_BETA1,
    ADAM_ONE_MINUS_BETA1,
    ADAM_BETA2,
    ADAM_ONE_MINUS_BETA2,
    ADAM_WEIGHT_DECAY,        /* Adam's, added to the gradient (0 for AdamW) */
    ADAM_DECAY,               /* AdamW's parameter factor 1 - lr * wd (1 for Adam) */
    ADAM_EPS,
    ADAM_NEG_STEP_SIZE,       /* -(lr / (1 - beta1^step)) */
    ADAM_BC2_SQRT,            /* sqrt(1 - beta2^step) */
    ADAM_CONSTS
};

#endif
