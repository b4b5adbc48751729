/* optim.cu - fused SGD and Adam/AdamW updates, one launch for a list of
 * parameters: the twins of core/cpu/optim.c, formula for formula (torch 1.13's
 * _single_tensor_sgd / _single_tensor_adam / _single_tensor_adamw).
 * Hyper-parameters are combined in double on the host as Python does
 * (1 - beta1, -lr, 1 - lr * wd, lr / bias_correction1, ...) and read by the
 * kernels from device memory (core/optim/update_consts.h), which is what
 * lets a CUDA graph replay an update with each step's lr; each is cast to
 * T, and the per-element arithmetic keeps torch's association. With
 * --fmad=false nothing is contracted into an FMA, so a step rounds as the
 * CPU's does.
 */
#include <math.h>

#include "core/optim/update_consts.h"
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
    const double *k[kListMax];   /* each tensor's update numbers */
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

template <typename T> __global__ void sgd_kernel(TensorList<T> l) {
    int64_t lo, hi;
    int t = chunk_of(l, blockIdx.x, &lo, &hi);
    T *p = l.p[t], *buf = l.s[0][t];
    const T *g = l.g[t];
    const double *c = l.k[t];
    const T wd = (T)c[SGD_WEIGHT_DECAY], mom = (T)c[SGD_MOMENTUM];
    const T damp = (T)c[SGD_ONE_MINUS_DAMPENING], neg_lr = (T)c[SGD_NEG_LR];
    /* contract: a buffer whenever momentum != 0 */
    const bool use_wd = c[SGD_WEIGHT_DECAY] != 0, use_mom = c[SGD_MOMENTUM] != 0 && buf;
    const bool nesterov = c[SGD_NESTEROV] != 0, first = c[SGD_FIRST] != 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
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

template <typename T> __global__ void adam_kernel(TensorList<T> l) {
    int64_t lo, hi;
    int t = chunk_of(l, blockIdx.x, &lo, &hi);
    T *p = l.p[t], *m = l.s[0][t], *v = l.s[1][t], *vmax = l.s[2][t];
    const T *g = l.g[t];
    const double *c = l.k[t];
    const T neg_step_size = (T)c[ADAM_NEG_STEP_SIZE], bc2_sqrt = (T)c[ADAM_BC2_SQRT];
    const T b1 = (T)c[ADAM_BETA1], one_minus_b1 = (T)c[ADAM_ONE_MINUS_BETA1];
    const T b2 = (T)c[ADAM_BETA2], one_minus_b2 = (T)c[ADAM_ONE_MINUS_BETA2];
    const T wd = (T)c[ADAM_WEIGHT_DECAY], decay = (T)c[ADAM_DECAY], e = (T)c[ADAM_EPS];
    const bool decoupled = c[ADAM_DECAY] != 1, coupled_wd = c[ADAM_WEIGHT_DECAY] != 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        T gi = g[i];
        if (decoupled) p[i] = p[i] * decay;
        if (coupled_wd) gi = gi + wd * p[i];
        T mi = m[i] * b1 + one_minus_b1 * gi;
        T vi = v[i] * b2 + one_minus_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (vmax) {
            T mx = vmax[i];
            mx = (mx != mx || vi != vi) ? (T)NAN : (mx < vi ? vi : mx);
            vmax[i] = mx;
            vi = mx;
        }
        T denom = g_sqrt(vi) / bc2_sqrt + e;
        p[i] = p[i] + neg_step_size * mi / denom;
    }
}

/* Fills l with up to kListMax non-empty tensors of t from *next on (moving
 * *next). Returns the chunks (blocks) to launch, 0 when none are left. */
template <typename T>
static int64_t fill_list(TensorList<T> &l, const GpuOptimTensor *t, int count, int *next) {
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
        l.k[j] = x.consts;
        chunks += (x.n + kChunk - 1) / kChunk;
        l.chunk_end[j] = chunks;
    }
    return chunks;
}

template <typename T> static void sgd_lists(int count, const GpuOptimTensor *t) {
    TensorList<T> l;
    for (int next = 0;;) {
        int64_t blocks = fill_list<T>(l, t, count, &next);
        if (blocks == 0) return;
        sgd_kernel<T><<<(unsigned)blocks, GPU_THREADS, 0, gpu_stream()>>>(l);
        gpu_check_launch("sgd_update kernel");
    }
}

template <typename T> static void adam_lists(int count, const GpuOptimTensor *t) {
    TensorList<T> l;
    for (int next = 0;;) {
        int64_t blocks = fill_list<T>(l, t, count, &next);
        if (blocks == 0) return;
        adam_kernel<T><<<(unsigned)blocks, GPU_THREADS, 0, gpu_stream()>>>(l);
        gpu_check_launch("adam_update kernel");
    }
}

extern "C" void gpu_launch_sgd(int dtype, int count, const GpuOptimTensor *t) {
    if (dtype == GPU_F32) sgd_lists<float>(count, t);
    else sgd_lists<double>(count, t);
}

extern "C" void gpu_launch_adam(int dtype, int count, const GpuOptimTensor *t) {
    if (dtype == GPU_F32) adam_lists<float>(count, t);
    else adam_lists<double>(count, t);
}
