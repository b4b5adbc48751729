/* optim.c - fused CPU updates for SGD and Adam/AdamW, one pass over the
 * flat parameter buffers.
 *
 * The arithmetic replays torch 1.13's _single_tensor_sgd / _single_tensor_adam
 * / _single_tensor_adamw operation by operation, in the parameter's dtype:
 * each Python-float hyper-parameter is computed in double as Python does
 * (1 - beta1, -lr, 1 - lr * wd, lr / bias_correction1, ...) and then cast to
 * T, as torch casts a scalar argument to the tensor's dtype; the tensor ops
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
    static void sgd_##SFX(T *p, const T *g, T *buf, int64_t n, double lr, double momentum,         \
                          double dampening, double weight_decay, bool nesterov, bool first) {      \
        const T wd = (T)weight_decay, mom = (T)momentum, damp = (T)(1.0 - dampening);              \
        const T neg_lr = (T)(-lr);                                                                 \
        if (momentum != 0 && weight_decay == 0 && !nesterov && !first) {                           \
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
            if (weight_decay != 0) d = d + wd * p[i];                                              \
            if (momentum != 0) {                                                                   \
                T b = first ? d : buf[i] * mom + damp * d;                                         \
                buf[i] = b;                                                                        \
                d = nesterov ? d + mom * b : b;                                                    \
            }                                                                                      \
            p[i] = p[i] + neg_lr * d;                                                              \
        }                                                                                          \
    }

DEFINE_SGD(float, f32)
DEFINE_SGD(double, f64)

void cpu_sgd_update(int count, const OptimUpdate *u, double lr, double momentum,
                    double dampening, double weight_decay, bool nesterov) {
    for (int k = 0; k < count; k++) {
        Tensor *param = u[k].param;
        int64_t n = tensor_numel(param);
        void *buf = momentum != 0 && u[k].state[0] ? tensor_data(u[k].state[0]) : NULL;
        /* contract: a buffer whenever momentum != 0 */
        double mom = momentum != 0 && !buf ? 0 : momentum;
        if (param->dtype == DTYPE_FLOAT32)
            sgd_f32(tensor_data(param), tensor_data(u[k].grad), buf, n, lr, mom, dampening,
                    weight_decay, nesterov, u[k].first);
        else
            sgd_f64(tensor_data(param), tensor_data(u[k].grad), buf, n, lr, mom, dampening,
                    weight_decay, nesterov, u[k].first);
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
    static void adam_##SFX(T *p, const T *g, T *m, T *v, T *vmax, int64_t n, double lr,            \
                           double beta1, double beta2, double eps, double weight_decay,            \
                           bool decoupled, int64_t step) {                                         \
        double bias_correction1 = 1.0 - pow(beta1, (double)step);                                  \
        double bias_correction2 = 1.0 - pow(beta2, (double)step);                                  \
        const T neg_step_size = (T)(-(lr / bias_correction1));                                     \
        const T bc2_sqrt = (T)sqrt(bias_correction2);                                              \
        const T b1 = (T)beta1, one_minus_b1 = (T)(1.0 - beta1);                                    \
        const T b2 = (T)beta2, one_minus_b2 = (T)(1.0 - beta2);                                    \
        const T wd = (T)weight_decay, decay = (T)(1.0 - lr * weight_decay), e = (T)eps;            \
        const bool coupled_wd = !decoupled && weight_decay != 0;                                   \
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

void cpu_adam_update(int count, const OptimUpdate *u, double lr, double beta1, double beta2,
                     double eps, double weight_decay, bool decoupled) {
    for (int k = 0; k < count; k++) {
        Tensor *param = u[k].param;
        int64_t n = tensor_numel(param);
        void *m = tensor_data(u[k].state[0]), *v = tensor_data(u[k].state[1]);
        void *vmax = u[k].state[2] ? tensor_data(u[k].state[2]) : NULL;
        if (param->dtype == DTYPE_FLOAT32)
            adam_f32(tensor_data(param), tensor_data(u[k].grad), m, v, vmax, n, lr, beta1, beta2,
                     eps, weight_decay, decoupled, u[k].step);
        else
            adam_f64(tensor_data(param), tensor_data(u[k].grad), m, v, vmax, n, lr, beta1, beta2,
                     eps, weight_decay, decoupled, u[k].step);
    }
}
