/* elementwise.cu - binary (with broadcast views), unary and activation
 * backward kernels: the CUDA twins of core/cpu/elementwise.c, with the same
 * float semantics (relu(-0) = -0, relu(NaN) = NaN, sign(NaN) = 0, MAX and
 * CLAMP propagate NaN, GT/EQ give 1/0, scalars cast to T first, pow's
 * shortcuts for 2, 3, 0.5, -0.5, -1, -2, the sigmoid that never forms
 * exp(-x) = inf, GELU/SiLU/LeakyReLU in torch's formulas). The op is a
 * kernel argument: it is the same for every thread, so the switch costs no
 * divergence.
 */
#include "gpu/kernels/common.cuh"

template <typename T> __device__ inline T binary_op(int op, T va, T vb) {
    switch (op) {
    case GPU_BIN_ADD: return va + vb;
    case GPU_BIN_SUB: return va - vb;
    case GPU_BIN_MUL: return va * vb;
    case GPU_BIN_DIV: return va / vb;
    case GPU_BIN_POW: return g_pow(va, vb);
    case GPU_BIN_MAX: return nan_max(va, vb);
    case GPU_BIN_GT: return va > vb ? (T)1 : (T)0;
    case GPU_BIN_EQ: return va == vb ? (T)1 : (T)0;
    }
    return (T)NAN;
}

template <typename T>
__global__ void binary_dense(int op, const T *a, const T *b, T *out, int64_t n) {
    GRID_STRIDE(i, n) out[i] = binary_op<T>(op, a[i], b[i]);
}

template <typename T>
__global__ void binary_strided(int op, const T *a, GpuView av, bool a_dense, const T *b,
                               GpuView bv, bool b_dense, T *out, int64_t n) {
    GRID_STRIDE(i, n) {
        T va = a[a_dense ? i : view_offset(av, i)];
        T vb = b[b_dense ? i : view_offset(bv, i)];
        out[i] = binary_op<T>(op, va, vb);
    }
}

/* Launch labels by op (gpu_check_launch; TRAIND_GPU_PROFILE's table):
 * literals, in kernels.h's order of GPU_BIN_* and GPU_UN_*. */
static const char *const binary_labels[2][GPU_BIN_EQ + 1] = {
    {"binary kernel add", "binary kernel sub", "binary kernel mul", "binary kernel div",
     "binary kernel pow", "binary kernel max", "binary kernel gt", "binary kernel eq"},
    {"binary kernel add (strided)", "binary kernel sub (strided)", "binary kernel mul (strided)",
     "binary kernel div (strided)", "binary kernel pow (strided)", "binary kernel max (strided)",
     "binary kernel gt (strided)", "binary kernel eq (strided)"}};
static const char *const unary_labels[GPU_UN_LEAKY_RELU + 1] = {
    "unary kernel neg", "unary kernel exp", "unary kernel log", "unary kernel sqrt",
    "unary kernel abs", "unary kernel sign", "unary kernel relu", "unary kernel sigmoid",
    "unary kernel tanh", "unary kernel pow", "unary kernel mul_scalar",
    "unary kernel add_scalar", "unary kernel rsub_scalar", "unary kernel rdiv_scalar",
    "unary kernel gt_scalar", "unary kernel clamp_min", "unary kernel clamp_max",
    "unary kernel gelu", "unary kernel gelu_tanh", "unary kernel silu", "unary kernel leaky_relu"};

static const char *op_label(const char *const *labels, int n, int op, const char *other) {
    return op >= 0 && op < n ? labels[op] : other;
}

/* Whether both operands are dense (binary_dense), else strided. */
template <typename T>
static bool binary_t(int op, const void *a, GpuView av, const void *b, GpuView bv, void *out,
                     int64_t n) {
    bool ad = view_is_contiguous(av), bd = view_is_contiguous(bv);
    if (ad && bd)
        binary_dense<T><<<gpu_blocks(n), GPU_THREADS, 0, gpu_stream()>>>(op, (const T *)a,
                                                                         (const T *)b, (T *)out, n);
    else
        binary_strided<T><<<gpu_blocks(n), GPU_THREADS, 0, gpu_stream()>>>(
            op, (const T *)a, av, ad, (const T *)b, bv, bd, (T *)out, n);
    return ad && bd;
}

extern "C" void gpu_launch_binary(int op, int dtype, const void *a, GpuView av, const void *b,
                                  GpuView bv, void *out, int64_t n) {
    if (n <= 0) return;
    bool dense = dtype == GPU_F32 ? binary_t<float>(op, a, av, b, bv, out, n)
                                  : binary_t<double>(op, a, av, b, bv, out, n);
    gpu_check_launch(op_label(binary_labels[dense ? 0 : 1], GPU_BIN_EQ + 1, op, "binary kernel"));
}

template <typename T> __device__ inline T sigmoid_stable(T v) {
    if (v >= 0) return (T)1 / ((T)1 + g_exp(-v));
    T e = g_exp(v);
    return e / ((T)1 + e);
}

template <typename T> __device__ inline T pow_scalar(T v, double alpha, T al) {
    if (alpha == 2.0) return v * v;
    if (alpha == 3.0) return v * v * v;
    if (alpha == 0.5) return g_sqrt(v);
    if (alpha == -0.5) return (T)1 / g_sqrt(v);
    if (alpha == -1.0) return (T)1 / v;
    if (alpha == -2.0) return (T)1 / (v * v);
    return g_pow(v, al);
}

/* GELU and SiLU as torch writes them (and core/cpu/elementwise.c): the
 * value and dy/dx at one element. Constants: 1/sqrt(2), 1/sqrt(2 pi),
 * sqrt(2/pi), 0.044715. */
__device__ inline float g_erf(float x) { return erff(x); }
__device__ inline double g_erf(double x) { return erf(x); }
#define GELU_ALPHA 0.70710678118654752440
#define GELU_PDF 0.39894228040143267794
#define GELU_BETA 0.79788456080286535588
#define GELU_KAPPA 0.044715

template <typename T> __device__ inline T gelu(T v) {
    return v * (T)0.5 * ((T)1 + g_erf(v * (T)GELU_ALPHA));
}
template <typename T> __device__ inline T gelu_tanh_inner(T v) {
    return (T)GELU_BETA * (v + (T)GELU_KAPPA * (v * v * v));
}
template <typename T> __device__ inline T gelu_tanh(T v) {
    return (T)0.5 * v * ((T)1 + g_tanh(gelu_tanh_inner(v)));
}
template <typename T> __device__ inline T silu(T v) { return v / ((T)1 + g_exp(-v)); }
template <typename T> __device__ inline T gelu_grad(T v) {
    T cdf = (T)0.5 * ((T)1 + g_erf(v * (T)GELU_ALPHA));
    T pdf = (T)GELU_PDF * g_exp(v * v * (T)-0.5);
    return cdf + v * pdf;
}
template <typename T> __device__ inline T gelu_tanh_grad(T v) {
    T th = g_tanh(gelu_tanh_inner(v));
    T inner_grad = (T)GELU_BETA * ((T)1 + (T)3 * (T)GELU_KAPPA * (v * v));
    return (T)0.5 * ((T)1 + th) + (T)0.5 * v * ((T)1 - th * th) * inner_grad;
}
template <typename T> __device__ inline T silu_grad(T v) {
    T s = (T)1 / ((T)1 + g_exp(-v));
    return s * ((T)1 + v * ((T)1 - s));
}

template <typename T> __device__ inline T unary_op(int op, T v, double alpha, T al) {
    switch (op) {
    case GPU_UN_NEG: return -v;
    case GPU_UN_EXP: return g_exp(v);
    case GPU_UN_LOG: return g_log(v);
    case GPU_UN_SQRT: return g_sqrt(v);
    case GPU_UN_ABS: return g_fabs(v);
    case GPU_UN_SIGN: return (T)((v > 0) - (v < 0));
    case GPU_UN_RELU: return v < 0 ? (T)0 : v;
    case GPU_UN_SIGMOID: return sigmoid_stable(v);
    case GPU_UN_TANH: return g_tanh(v);
    case GPU_UN_POW: return pow_scalar(v, alpha, al);
    case GPU_UN_MUL_SCALAR: return v * al;
    case GPU_UN_ADD_SCALAR: return v + al;
    case GPU_UN_RSUB_SCALAR: return al - v;
    case GPU_UN_RDIV_SCALAR: return al / v;
    case GPU_UN_GT_SCALAR: return v > al ? (T)1 : (T)0;
    case GPU_UN_CLAMP_MIN: return v < al ? al : v; /* NaN stays NaN */
    case GPU_UN_CLAMP_MAX: return v > al ? al : v;
    case GPU_UN_GELU: return gelu(v);
    case GPU_UN_GELU_TANH: return gelu_tanh(v);
    case GPU_UN_SILU: return silu(v);
    case GPU_UN_LEAKY_RELU: return v > 0 ? v : v * al;
    }
    return (T)NAN;
}

template <typename T>
__global__ void unary_kernel(int op, const T *x, double alpha, T *out, int64_t n) {
    const T al = (T)alpha;
    GRID_STRIDE(i, n) out[i] = unary_op<T>(op, x[i], alpha, al);
}

extern "C" void gpu_launch_unary(int op, int dtype, const void *x, double alpha, void *out,
                                 int64_t n) {
    if (n <= 0) return;
    if (dtype == GPU_F32)
        unary_kernel<float><<<gpu_blocks(n), GPU_THREADS, 0, gpu_stream()>>>(
            op, (const float *)x, alpha, (float *)out, n);
    else
        unary_kernel<double><<<gpu_blocks(n), GPU_THREADS, 0, gpu_stream()>>>(
            op, (const double *)x, alpha, (double *)out, n);
    gpu_check_launch(op_label(unary_labels, GPU_UN_LEAKY_RELU + 1, op, "unary kernel"));
}

/* RELU as torch's threshold_backward (x <= 0 gives exactly 0), LEAKY_RELU
 * as torch's (x > 0 ? gy : gy * slope); SIGMOID, TANH, GELU and SILU in
 * torch's order; any other op writes NaN, as the CPU kernel. */
template <typename T>
__global__ void unary_backward_kernel(int op, const T *x, const T *y, T al, const T *gy, T *gx,
                                      int64_t n) {
    GRID_STRIDE(i, n) {
        switch (op) {
        case GPU_UN_RELU: gx[i] = x[i] > 0 ? gy[i] : (T)0; break;
        case GPU_UN_LEAKY_RELU: gx[i] = x[i] > 0 ? gy[i] : gy[i] * al; break;
        case GPU_UN_SIGMOID: gx[i] = gy[i] * ((T)1 - y[i]) * y[i]; break;
        case GPU_UN_TANH: gx[i] = gy[i] * ((T)1 - y[i] * y[i]); break;
        case GPU_UN_GELU: gx[i] = gy[i] * gelu_grad(x[i]); break;
        case GPU_UN_GELU_TANH: gx[i] = gy[i] * gelu_tanh_grad(x[i]); break;
        case GPU_UN_SILU: gx[i] = gy[i] * silu_grad(x[i]); break;
        default: gx[i] = (T)NAN; break;
        }
    }
}

extern "C" void gpu_launch_unary_backward(int op, int dtype, const void *x, const void *y,
                                          double alpha, const void *gy, void *gx, int64_t n) {
    if (n <= 0) return;
    if (dtype == GPU_F32)
        unary_backward_kernel<float><<<gpu_blocks(n), GPU_THREADS, 0, gpu_stream()>>>(
            op, (const float *)x, (const float *)y, (float)alpha, (const float *)gy, (float *)gx,
            n);
    else
        unary_backward_kernel<double><<<gpu_blocks(n), GPU_THREADS, 0, gpu_stream()>>>(
            op, (const double *)x, (const double *)y, alpha, (const double *)gy, (double *)gx, n);
    gpu_check_launch("unary_backward kernel");
}

/* Batch norm's affine pass over [n, c, s] (core/backend.h's
 * channel_affine): out = a[ch] * u + b[ch] * (v - m[ch]) + d[ch], in the
 * tensor's dtype as the CPU's; v NULL drops the middle term, d NULL is 0. */
template <typename T>
__global__ void channel_affine_kernel(const T *u, const T *a, const T *v, const T *m, const T *b,
                                      const T *d, T *out, int64_t c, int64_t s, int64_t total) {
    GRID_STRIDE(i, total) {
        int64_t ch = (i / s) % c;
        T r = a[ch] * u[i];
        if (v) r = r + b[ch] * (v[i] - m[ch]);
        out[i] = r + (d ? d[ch] : T(0)); /* + 0 as the CPU: -0 becomes +0 */
    }
}

extern "C" void gpu_launch_channel_affine(int dtype, const void *u, const void *a, const void *v,
                                          const void *m, const void *b, const void *d, void *out,
                                          int64_t n, int64_t c, int64_t s) {
    int64_t total = n * c * s;
    if (total <= 0) return;
    if (dtype == GPU_F32)
        channel_affine_kernel<float><<<gpu_blocks(total), GPU_THREADS, 0, gpu_stream()>>>(
            (const float *)u, (const float *)a, (const float *)v, (const float *)m,
            (const float *)b, (const float *)d, (float *)out, c, s, total);
    else
        channel_affine_kernel<double><<<gpu_blocks(total), GPU_THREADS, 0, gpu_stream()>>>(
            (const double *)u, (const double *)a, (const double *)v, (const double *)m,
            (const double *)b, (const double *)d, (double *)out, c, s, total);
    gpu_check_launch("channel_affine kernel");
}
