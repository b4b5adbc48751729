/* optim.cu - fused SGD and Adam/AdamW updates, one launch for a list of
 * parameters: the twins of core/cpu/optim.c, formula for formula (torch 1.13's
 * _single_tensor_sgd / _single_tensor_adam / _single_tensor_adamw).
 * Hyper-parameters are combined in double on the host as Python does
 * (1 - beta1, -lr, 1 - lr * wd, lr / bias_correction1, ...) and cast to T;
 * the per-element arithmetic keeps torch's association. With --fmad=false
 * nothing is contracted into an FMA, so a step rounds as the CPU's does.
 */
#include <math.h>

#include "gpu/kernels/common.cuh"

/* Multi-tensor apply, as torch's fused optimizers: one launch updates a
 * list of tensors. Each tensor is cut into chunks of kChunk elements, one
 * block per chunk; a block finds its tensor in the list's chunk prefix
 * sums (at most kListMax entries, passed by value as the kernel's
 * argument), then walks its chunk. Longer lists take several launches. */
static const int kListMax = 24;
static const int64_t kChunk = 65536;

template <typename T> struct TensorList {
    T *p[kListMax];
    const T *g[kListMax];
    T *s[3][kListMax];
    int64_t n[kListMax];
    int64_t chunk_end[kListMax]; /* prefix sums of the tensors' chunk counts */
    int count;
};

/* The tensor of block b, and the element range [*lo, *hi) of its chunk. */
template <typename T>
__device__ inline int chunk_of(const TensorList<T> &l, int64_t b, int64_t *lo, int64_t *hi) {
    int t = 0;
    while (b >= l.chunk_end[t]) t++;
    int64_t first_chunk = t ? l.chunk_end[t - 1] : 0;
    *lo = (b - first_chunk) * kChunk;
    *hi = *lo + kChunk < l.n[t] ? *lo + kChunk : l.n[t];
    return t;
}

template <typename T> struct SgdConsts {
    T wd, mom, damp, neg_lr;
    bool use_wd, use_mom, nesterov;
    bool first[kListMax];
};

template <typename T>
__global__ void sgd_kernel(TensorList<T> l, SgdConsts<T> k) {
    int64_t lo, hi;
    int t = chunk_of(l, blockIdx.x, &lo, &hi);
    T *p = l.p[t], *buf = l.s[0][t];
    const T *g = l.g[t];
    bool first = k.first[t];
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        T d = g[i];
        if (k.use_wd) d = d + k.wd * p[i];
        if (k.use_mom) {
            T b = first ? d : buf[i] * k.mom + k.damp * d;
            buf[i] = b;
            d = k.nesterov ? d + k.mom * b : b;
        }
        p[i] = p[i] + k.neg_lr * d;
    }
}

template <typename T> struct AdamConsts {
    T neg_step_size[kListMax], bc2_sqrt[kListMax]; /* per tensor: its own step */
    T b1, one_minus_b1, b2, one_minus_b2, wd, decay, e;
    bool decoupled, coupled_wd;
};

template <typename T>
__global__ void adam_kernel(TensorList<T> l, AdamConsts<T> k) {
    int64_t lo, hi;
    int t = chunk_of(l, blockIdx.x, &lo, &hi);
    T *p = l.p[t], *m = l.s[0][t], *v = l.s[1][t], *vmax = l.s[2][t];
    const T *g = l.g[t];
    const T neg_step_size = k.neg_step_size[t], bc2_sqrt = k.bc2_sqrt[t];
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
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
        T denom = g_sqrt(vi) / bc2_sqrt + k.e;
        p[i] = p[i] + neg_step_size * mi / denom;
    }
}

/* Fills l with up to kListMax non-empty tensors of t from *next on (moving
 * *next); `each(slot, tensor)` adds the per-tensor constants. Returns the
 * chunks (blocks) to launch, 0 when none are left. */
template <typename T, typename Each>
static int64_t fill_list(TensorList<T> &l, const GpuOptimTensor *t, int count, int *next,
                         Each each) {
    l.count = 0;
    int64_t chunks = 0;
    for (; *next < count && l.count < kListMax; (*next)++) {
        const GpuOptimTensor &x = t[*next];
        if (x.n <= 0) continue;
        int j = l.count++;
        l.p[j] = (T *)x.param;
        l.g[j] = (const T *)x.grad;
        for (int s = 0; s < 3; s++) l.s[s][j] = (T *)x.state[s];
        l.n[j] = x.n;
        chunks += (x.n + kChunk - 1) / kChunk;
        l.chunk_end[j] = chunks;
        each(j, x);
    }
    return chunks;
}

template <typename T>
static void sgd_lists(int count, const GpuOptimTensor *t, double lr, double momentum,
                      double dampening, double weight_decay, bool nesterov) {
    SgdConsts<T> k;
    k.wd = (T)weight_decay;
    k.mom = (T)momentum;
    k.damp = (T)(1.0 - dampening);
    k.neg_lr = (T)(-lr);
    k.use_wd = weight_decay != 0;
    k.nesterov = nesterov;
    TensorList<T> l;
    for (int next = 0;;) {
        bool all_buffers = true; /* contract: a buffer whenever momentum != 0 */
        int64_t blocks = fill_list<T>(l, t, count, &next, [&](int j, const GpuOptimTensor &x) {
            k.first[j] = x.first;
            all_buffers &= x.state[0] != nullptr;
        });
        if (blocks == 0) return;
        k.use_mom = momentum != 0 && all_buffers;
        sgd_kernel<T><<<(unsigned)blocks, GPU_THREADS, 0, gpu_stream()>>>(l, k);
        gpu_check_launch("sgd_update kernel");
    }
}

template <typename T>
static void adam_lists(int count, const GpuOptimTensor *t, double lr, double beta1, double beta2,
                       double eps, double weight_decay, bool decoupled) {
    AdamConsts<T> k;
    k.b1 = (T)beta1;
    k.one_minus_b1 = (T)(1.0 - beta1);
    k.b2 = (T)beta2;
    k.one_minus_b2 = (T)(1.0 - beta2);
    k.wd = (T)weight_decay;
    k.decay = (T)(1.0 - lr * weight_decay);
    k.e = (T)eps;
    k.decoupled = decoupled;
    k.coupled_wd = !decoupled && weight_decay != 0;
    TensorList<T> l;
    for (int next = 0;;) {
        int64_t blocks = fill_list<T>(l, t, count, &next, [&](int j, const GpuOptimTensor &x) {
            /* in double, as Python computes them, then cast */
            double bias_correction1 = 1.0 - pow(beta1, (double)x.step);
            double bias_correction2 = 1.0 - pow(beta2, (double)x.step);
            k.neg_step_size[j] = (T)(-(lr / bias_correction1));
            k.bc2_sqrt[j] = (T)sqrt(bias_correction2);
        });
        if (blocks == 0) return;
        adam_kernel<T><<<(unsigned)blocks, GPU_THREADS, 0, gpu_stream()>>>(l, k);
        gpu_check_launch("adam_update kernel");
    }
}

extern "C" void gpu_launch_sgd(int dtype, int count, const GpuOptimTensor *t, double lr,
                               double momentum, double dampening, double weight_decay,
                               bool nesterov) {
    if (dtype == GPU_F32)
        sgd_lists<float>(count, t, lr, momentum, dampening, weight_decay, nesterov);
    else
        sgd_lists<double>(count, t, lr, momentum, dampening, weight_decay, nesterov);
}

extern "C" void gpu_launch_adam(int dtype, int count, const GpuOptimTensor *t, double lr,
                                double beta1, double beta2, double eps, double weight_decay,
                                bool decoupled) {
    if (dtype == GPU_F32)
        adam_lists<float>(count, t, lr, beta1, beta2, eps, weight_decay, decoupled);
    else
        adam_lists<double>(count, t, lr, beta1, beta2, eps, weight_decay, decoupled);
}
