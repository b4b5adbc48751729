/* optim.c - fused CPU updates for SGD and Adam/AdamW, one pass over the
 * flat parameter buffers.
 *
 * The arithmetic replays torch 1.13's _single_tensor_sgd / _single_tensor_adam
 * / _single_tensor_adamw operation by operation, in the parameter's dtype:
 * each Python-float hyper-parameter is computed in double as Python does
 * (1 - beta1, -lr, 1 - lr * wd, lr / bias_correction1, ...: the update's
 * numbers, OptimUpdate.consts, from core/optim) and then cast to T, as
 * torch casts a scalar argument to the tensor's dtype; the tensor ops
 * keep torch's association (addcmul: self + v * t1 * t2, addcdiv:
 * self + v * t1 / t2). So a float32 trajectory rounds as PyTorch's does,
 * step by step, up to the FMA contraction of torch's vectorised add.
 */
#include <tgmath.h>

#include "core/cpu/cpu.h"

/* SGD, torch.optim.sgd._single_tensor_sgd:
 *   d_p = grad + wd * param                    (if wd != 0)
 *   buf = d_p on first use, else buf = momentum * buf + (1 - dampening) * d_p
 *   d_p = nesterov ? d_p + momentum * buf : buf (if momentum != 0)
 *   param -= lr * d_p                          (as param + (-lr) * d_p) */
/* The common case, momentum without weight decay or Nesterov after the
 * first step, has a loop of its own without branches, which the compiler
 * vectorises; large tensors are split over the OpenMP threads. */
#define DEFINE_SGD(T, SFX)                                                                         \
    static void sgd_##SFX(T *p, const T *g, T *buf, int64_t n, const double *c) {                  \
        const T wd = (T)c[SGD_WEIGHT_DECAY], mom = (T)c[SGD_MOMENTUM];                             \
        const T damp = (T)c[SGD_ONE_MINUS_DAMPENING], neg_lr = (T)c[SGD_NEG_LR];                   \
        /* contract: a buffer whenever momentum != 0 */                                            \
        const bool use_wd = c[SGD_WEIGHT_DECAY] != 0, use_mom = c[SGD_MOMENTUM] != 0 && buf;       \
        const bool nesterov = c[SGD_NESTEROV] != 0, first = c[SGD_FIRST] != 0;                     \
        if (use_mom && !use_wd && !nesterov && !first) {                                           \
            _Pragma("omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)")                \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T b = buf[i] * mom + damp * g[i];                                                  \
                buf[i] = b;                                                                        \
                p[i] = p[i] + neg_lr * b;                                                          \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        _Pragma("omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)")                    \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T d = g[i];                                                                            \
            if (use_wd) d = d + wd * p[i];                                                         \
            if (use_mom) {                                                                         \
                T b = first ? d : buf[i] * mom + damp * d;                                         \
                buf[i] = b;                                                                        \
                d = nesterov ? d + mom * b : b;                                                    \
            }                                                                                      \
            p[i] = p[i] + neg_lr * d;                                                              \
        }                                                                                          \
    }

DEFINE_SGD(float, f32)
DEFINE_SGD(double, f64)

void cpu_sgd_update(int count, const OptimUpdate *u) {
    for (int k = 0; k < count; k++) {
        Tensor *param = u[k].param;
        int64_t n = tensor_numel(param);
        void *buf = u[k].state[0] ? tensor_data(u[k].state[0]) : NULL;
        if (param->dtype == DTYPE_FLOAT32)
            sgd_f32(tensor_data(param), tensor_data(u[k].grad), buf, n, u[k].consts);
        else
            sgd_f64(tensor_data(param), tensor_data(u[k].grad), buf, n, u[k].consts);
    }
}

/* Adam (torch.optim.adam._single_tensor_adam) and AdamW (decoupled,
 * torch.optim.adamw._single_tensor_adamw), at 1-based `step`:
 *   AdamW: param *= 1 - lr * wd        Adam: grad = grad + wd * param (wd != 0)
 *   m = beta1 * m + (1 - beta1) * grad
 *   v = beta2 * v + (1 - beta2) * grad * grad
 *   bc1 = 1 - beta1^step, bc2 = 1 - beta2^step, step_size = lr / bc1
 *   vmax = max(vmax, v) if amsgrad
 *   denom = sqrt(amsgrad ? vmax : v) / sqrt(bc2) + eps
 *   param = param + (-step_size) * m / denom */
#define DEFINE_ADAM(T, SFX)                                                                        \
    static void adam_##SFX(T *p, const T *g, T *m, T *v, T *vmax, int64_t n, const double *c) {    \
        const T neg_step_size = (T)c[ADAM_NEG_STEP_SIZE], bc2_sqrt = (T)c[ADAM_BC2_SQRT];          \
        const T b1 = (T)c[ADAM_BETA1], one_minus_b1 = (T)c[ADAM_ONE_MINUS_BETA1];                  \
        const T b2 = (T)c[ADAM_BETA2], one_minus_b2 = (T)c[ADAM_ONE_MINUS_BETA2];                  \
        const T wd = (T)c[ADAM_WEIGHT_DECAY], decay = (T)c[ADAM_DECAY], e = (T)c[ADAM_EPS];        \
        const bool decoupled = c[ADAM_DECAY] != 1, coupled_wd = c[ADAM_WEIGHT_DECAY] != 0;         \
        _Pragma("omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)")                    \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T gi = g[i];                                                                           \
            if (decoupled) p[i] = p[i] * decay;                                                    \
            if (coupled_wd) gi = gi + wd * p[i];                                                   \
            T mi = m[i] * b1 + one_minus_b1 * gi;                                                  \
            T vi = v[i] * b2 + one_minus_b2 * gi * gi;                                             \
            m[i] = mi;                                                                             \
            v[i] = vi;                                                                             \
            if (vmax) {                                                                            \
                /* torch.maximum: NaN propagates */                                                \
                T mx = vmax[i];                                                                    \
                mx = (mx != mx || vi != vi) ? (T)NAN : (mx < vi ? vi : mx);                        \
                vmax[i] = mx;                                                                      \
                vi = mx;                                                                           \
            }                                                                                      \
            T denom = sqrt(vi) / bc2_sqrt + e;                                                     \
            p[i] = p[i] + neg_step_size * mi / denom;                                              \
        }                                                                                          \
    }

DEFINE_ADAM(float, f32)
DEFINE_ADAM(double, f64)

void cpu_adam_update(int count, const OptimUpdate *u) {
    for (int k = 0; k < count; k++) {
        Tensor *param = u[k].param;
        int64_t n = tensor_numel(param);
        void *m = tensor_data(u[k].state[0]), *v = tensor_data(u[k].state[1]);
        void *vmax = u[k].state[2] ? tensor_data(u[k].state[2]) : NULL;
        if (param->dtype == DTYPE_FLOAT32)
            adam_f32(tensor_data(param), tensor_data(u[k].grad), m, v, vmax, n, u[k].consts);
        else
            adam_f64(tensor_data(param), tensor_data(u[k].grad), m, v, vmax, n, u[k].consts);
    }
}
