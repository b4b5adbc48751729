/* optim.cu - fused SGD and Adam/AdamW updates over flat buffers: the
 * twins of core/cpu/optim.c, formula for formula (torch 1.13's
 * _single_tensor_sgd / _single_tensor_adam / _single_tensor_adamw).
 * Hyper-parameters are combined in double on the host as Python does
 * (1 - beta1, -lr, 1 - lr * wd, lr / bias_correction1, ...) and cast to T;
 * the per-element arithmetic keeps torch's association. With --fmad=false
 * nothing is contracted into an FMA, so a step rounds as the CPU's does.
 */
#include <math.h>

#include "gpu/kernels/common.cuh"

template <typename T>
__global__ void sgd_kernel(T *p, const T *g, T *buf, int64_t n, T wd, T mom, T damp, T neg_lr,
                           bool use_wd, bool use_mom, bool nesterov, bool first) {
    GRID_STRIDE(i, n) {
        T d = g[i];
        if (use_wd) d = d + wd * p[i];
        if (use_mom) {
            T b = first ? d : buf[i] * mom + damp * d;
            buf[i] = b;
            d = nesterov ? d + mom * b : b;
        }
        p[i] = p[i] + neg_lr * d;
    }
}

extern "C" void gpu_launch_sgd(int dtype, void *param, const void *grad, void *buf, int64_t n,
                               double lr, double momentum, double dampening, double weight_decay,
                               bool nesterov, bool first) {
    if (n <= 0) return;
    if (momentum != 0 && !buf) momentum = 0; /* contract: buf given whenever momentum != 0 */
    bool use_wd = weight_decay != 0, use_mom = momentum != 0;
    if (dtype == GPU_F32)
        sgd_kernel<float><<<gpu_blocks(n), GPU_THREADS>>>(
            (float *)param, (const float *)grad, (float *)buf, n, (float)weight_decay,
            (float)momentum, (float)(1.0 - dampening), (float)(-lr), use_wd, use_mom, nesterov,
            first);
    else
        sgd_kernel<double><<<gpu_blocks(n), GPU_THREADS>>>(
            (double *)param, (const double *)grad, (double *)buf, n, weight_decay, momentum,
            1.0 - dampening, -lr, use_wd, use_mom, nesterov, first);
    gpu_check_launch("sgd_update kernel");
}

template <typename T> struct AdamConsts {
    T neg_step_size, bc2_sqrt, b1, one_minus_b1, b2, one_minus_b2, wd, decay, e;
    bool decoupled, coupled_wd;
};

template <typename T>
__global__ void adam_kernel(T *p, const T *g, T *m, T *v, T *vmax, int64_t n, AdamConsts<T> k) {
    GRID_STRIDE(i, n) {
        T gi = g[i];
        if (k.decoupled) p[i] = p[i] * k.decay;
        if (k.coupled_wd) gi = gi + k.wd * p[i];
        T mi = m[i] * k.b1 + k.one_minus_b1 * gi;
        T vi = v[i] * k.b2 + k.one_minus_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (vmax) {
            T mx = vmax[i];
            mx = (mx != mx || vi != vi) ? (T)NAN : (mx < vi ? vi : mx);
            vmax[i] = mx;
            vi = mx;
        }
        T denom = g_sqrt(vi) / k.bc2_sqrt + k.e;
        p[i] = p[i] + k.neg_step_size * mi / denom;
    }
}

template <typename T>
static AdamConsts<T> adam_consts(double lr, double beta1, double beta2, double eps,
                                 double weight_decay, bool decoupled, int64_t step) {
    double bias_correction1 = 1.0 - pow(beta1, (double)step);
    double bias_correction2 = 1.0 - pow(beta2, (double)step);
    AdamConsts<T> k;
    k.neg_step_size = (T)(-(lr / bias_correction1));
    k.bc2_sqrt = (T)sqrt(bias_correction2);
    k.b1 = (T)beta1;
    k.one_minus_b1 = (T)(1.0 - beta1);
    k.b2 = (T)beta2;
    k.one_minus_b2 = (T)(1.0 - beta2);
    k.wd = (T)weight_decay;
    k.decay = (T)(1.0 - lr * weight_decay);
    k.e = (T)eps;
    k.decoupled = decoupled;
    k.coupled_wd = !decoupled && weight_decay != 0;
    return k;
}

extern "C" void gpu_launch_adam(int dtype, void *param, const void *grad, void *m, void *v,
                                void *vmax, int64_t n, double lr, double beta1, double beta2,
                                double eps, double weight_decay, bool decoupled, int64_t step) {
    if (n <= 0) return;
    if (dtype == GPU_F32)
        adam_kernel<float><<<gpu_blocks(n), GPU_THREADS>>>(
            (float *)param, (const float *)grad, (float *)m, (float *)v, (float *)vmax, n,
            adam_consts<float>(lr, beta1, beta2, eps, weight_decay, decoupled, step));
    else
        adam_kernel<double><<<gpu_blocks(n), GPU_THREADS>>>(
            (double *)param, (const double *)grad, (double *)m, (double *)v, (double *)vmax, n,
            adam_consts<double>(lr, beta1, beta2, eps, weight_decay, decoupled, step));
    gpu_check_launch("adam_update kernel");
}
