/* elementwise.c - CPU binary, unary and activation-backward kernels.
 *
 * Each loop is written once as a macro over the element type T and
 * instantiated for float and double; <tgmath.h> makes exp/log/pow/... pick
 * expf or exp from T. The op switch sits outside the loops so the inner
 * loops are plain arithmetic the compiler can vectorise.
 *
 * Float semantics follow PyTorch's CPU kernels: relu(-0.0) = -0.0 and
 * relu(NaN) = NaN (torch's clamp_min), sign(NaN) = 0, MAX and CLAMP
 * propagate NaN (torch.maximum / clamp), GT and EQ give 1.0 / 0.0 in the
 * float dtype, scalars are cast to T before use (torch casts a Python
 * scalar to the tensor's dtype), and pow by 2, 3, 0.5, -0.5, -1, -2 takes
 * the same shortcuts as torch's pow_tensor_scalar kernel. The one deliberate
 * difference: sigmoid uses exp(x) / (1 + exp(x)) for x < 0, which never
 * forms exp(-x) = inf (torch computes 1 / (1 + exp(-x)) everywhere).
 * GELU (exact and tanh), SiLU and LeakyReLU, forward and backward, are
 * written as torch's CPU kernels write them (GeluKernelImpl, silu_kernel,
 * leaky_relu_kernel), constants included.
 */
#include <tgmath.h>

#include "core/cpu/cpu.h"

/* ---- binary: broadcast views ---- */

/* How a and b are laid out relative to the contiguous out. */
typedef enum {
    LAYOUT_DENSE,    /* both contiguous: one linear loop */
    LAYOUT_SCALAR_A, /* a is one broadcast value, b contiguous */
    LAYOUT_SCALAR_B, /* b is one broadcast value, a contiguous */
    LAYOUT_STRIDED,  /* anything else: odometer over the outer dims */
} Layout;

/* True when t addresses a single element: stride 0 in every dim of size > 1. */
static bool is_broadcast_scalar(const Tensor *t) {
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != 1 && t->strides[d] != 0) return false;
    return true;
}

static Layout binary_layout(const Tensor *a, const Tensor *b) {
    bool ca = tensor_is_contiguous(a), cb = tensor_is_contiguous(b);
    if (ca && cb) return LAYOUT_DENSE;
    if (cb && is_broadcast_scalar(a)) return LAYOUT_SCALAR_A;
    if (ca && is_broadcast_scalar(b)) return LAYOUT_SCALAR_B;
    return LAYOUT_STRIDED;
}

/* Advances the N-d index over dims [0, nd) in row-major order, keeping the
 * element offsets of a and b in step (no multiplication per element). */
static inline void odometer_step(int nd, const int64_t *shape, int64_t *idx, const int64_t *sa,
                                 const int64_t *sb, int64_t *oa, int64_t *ob) {
    for (int d = nd - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) {
            *oa += sa[d];
            *ob += sb[d];
            return;
        }
        *oa -= sa[d] * (shape[d] - 1);
        *ob -= sb[d] * (shape[d] - 1);
        idx[d] = 0;
    }
}

/* po[i] = EXPR for every element, EXPR reading `va` and `vb`. Expects pa,
 * pb, po, n, layout and the tensors a, b, out in scope. The strided path
 * runs the last dim as the inner loop and the odometer over the rest. */
#define BINARY_LOOP(T, EXPR)                                                                       \
    do {                                                                                           \
        switch (layout) {                                                                          \
        case LAYOUT_DENSE:                                                                         \
            _Pragma("omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)")                \
            for (int64_t i = 0; i < n; i++) {                                                      \
                const T va = pa[i], vb = pb[i];                                                    \
                po[i] = (EXPR);                                                                    \
            }                                                                                      \
            break;                                                                                 \
        case LAYOUT_SCALAR_A: {                                                                    \
            const T va = pa[0];                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                      \
                const T vb = pb[i];                                                                \
                po[i] = (EXPR);                                                                    \
            }                                                                                      \
        } break;                                                                                   \
        case LAYOUT_SCALAR_B: {                                                                    \
            const T vb = pb[0];                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                      \
                const T va = pa[i];                                                                \
                po[i] = (EXPR);                                                                    \
            }                                                                                      \
        } break;                                                                                   \
        case LAYOUT_STRIDED: {                                                                     \
            int nd = out->ndim;                                                                    \
            int64_t inner = out->shape[nd - 1];                                                    \
            int64_t ia = a->strides[nd - 1], ib = b->strides[nd - 1];                              \
            int64_t idx[TENSOR_MAX_DIMS] = {0}, oa = 0, ob = 0;                                    \
            for (int64_t o = 0; o < n; o += inner) {                                               \
                for (int64_t j = 0; j < inner; j++) {                                              \
                    const T va = pa[oa + j * ia], vb = pb[ob + j * ib];                            \
                    po[o + j] = (EXPR);                                                            \
                }                                                                                  \
                odometer_step(nd - 1, out->shape, idx, a->strides, b->strides, &oa, &ob);          \
            }                                                                                      \
        } break;                                                                                   \
        }                                                                                          \
    } while (0)

/* NaN in either operand gives NaN, as torch.maximum. */
#define NAN_MAX(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) < (y) ? (y) : (x))

#define DEFINE_BINARY(T, SFX)                                                                      \
    static void binary_##SFX(BinaryOp op, const Tensor *a, const Tensor *b, Tensor *out,           \
                             Layout layout, int64_t n) {                                           \
        const T *restrict pa = tensor_data(a), *restrict pb = tensor_data(b);                      \
        T *restrict po = tensor_data(out); /* out is always fresh memory */                        \
        switch (op) {                                                                              \
        case BINARY_ADD: BINARY_LOOP(T, va + vb); break;                                           \
        case BINARY_SUB: BINARY_LOOP(T, va - vb); break;                                           \
        case BINARY_MUL: BINARY_LOOP(T, (va * vb)); break;                                         \
        case BINARY_DIV: BINARY_LOOP(T, va / vb); break;                                           \
        case BINARY_POW: BINARY_LOOP(T, pow(va, vb)); break;                                       \
        case BINARY_MAX: BINARY_LOOP(T, NAN_MAX(va, vb)); break;                                   \
        case BINARY_GT: BINARY_LOOP(T, va > vb ? (T)1 : (T)0); break;                              \
        case BINARY_EQ: BINARY_LOOP(T, va == vb ? (T)1 : (T)0); break;                             \
        }                                                                                          \
    }

DEFINE_BINARY(float, f32)
DEFINE_BINARY(double, f64)

void cpu_binary(BinaryOp op, const Tensor *a, const Tensor *b, Tensor *out) {
    int64_t n = tensor_numel(out);
    if (n == 0) return;
    Layout layout = binary_layout(a, b);
    if (out->dtype == DTYPE_FLOAT32)
        binary_f32(op, a, b, out, layout, n);
    else
        binary_f64(op, a, b, out, layout, n);
}

/* ---- unary: contiguous x -> out ---- */

#define UNARY_LOOP(T, EXPR)                                                                        \
    do {                                                                                           \
        _Pragma("omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)")                    \
        for (int64_t i = 0; i < n; i++) {                                                          \
            const T v = px[i];                                                                     \
            po[i] = (EXPR);                                                                        \
        }                                                                                          \
    } while (0)

/* Stable on both sides: exp of a non-positive number only. */
#define DEFINE_SIGMOID(T, SFX)                                                                     \
    static inline T sigmoid_##SFX(T v) {                                                           \
        if (v >= 0) return (T)1 / ((T)1 + exp(-v));                                                \
        T e = exp(v);                                                                              \
        return e / ((T)1 + e);                                                                     \
    }

DEFINE_SIGMOID(float, f32)
DEFINE_SIGMOID(double, f64)

/* torch's GELU constants: 1/sqrt(2), 1/sqrt(2 pi), sqrt(2/pi), 0.044715. */
#define GELU_ALPHA 0.70710678118654752440
#define GELU_PDF 0.39894228040143267794
#define GELU_BETA 0.79788456080286535588
#define GELU_KAPPA 0.044715

/* GELU, SiLU and their derivatives (dy/dx) at one element. */
#define DEFINE_ACTIVATIONS(T, SFX)                                                                 \
    static inline T gelu_##SFX(T v) { return v * (T)0.5 * ((T)1 + erf(v * (T)GELU_ALPHA)); }       \
    static inline T gelu_tanh_inner_##SFX(T v) {                                                   \
        return (T)GELU_BETA * (v + (T)GELU_KAPPA * (v * v * v));                                   \
    }                                                                                              \
    static inline T gelu_tanh_##SFX(T v) {                                                         \
        return (T)0.5 * v * ((T)1 + tanh(gelu_tanh_inner_##SFX(v)));                               \
    }                                                                                              \
    static inline T silu_##SFX(T v) { return v / ((T)1 + exp(-v)); }                               \
    static inline T gelu_grad_##SFX(T v) {                                                         \
        T cdf = (T)0.5 * ((T)1 + erf(v * (T)GELU_ALPHA));                                          \
        T pdf = (T)GELU_PDF * exp(v * v * (T)-0.5);                                                \
        return cdf + v * pdf;                                                                      \
    }                                                                                              \
    static inline T gelu_tanh_grad_##SFX(T v) {                                                    \
        T th = tanh(gelu_tanh_inner_##SFX(v));                                                     \
        T inner_grad = (T)GELU_BETA * ((T)1 + (T)3 * (T)GELU_KAPPA * (v * v));                     \
        return (T)0.5 * ((T)1 + th) + (T)0.5 * v * ((T)1 - th * th) * inner_grad;                  \
    }                                                                                              \
    static inline T silu_grad_##SFX(T v) {                                                         \
        T s = (T)1 / ((T)1 + exp(-v));                                                             \
        return s * ((T)1 + v * ((T)1 - s));                                                        \
    }

DEFINE_ACTIVATIONS(float, f32)
DEFINE_ACTIVATIONS(double, f64)

/* pow(x, alpha) with torch's shortcuts for the common exponents. */
#define UNARY_POW_LOOP(T)                                                                          \
    do {                                                                                           \
        if (alpha == 2.0)                                                                          \
            UNARY_LOOP(T, (v * v));                                                                \
        else if (alpha == 3.0)                                                                     \
            UNARY_LOOP(T, (v * v * v));                                                            \
        else if (alpha == 0.5)                                                                     \
            UNARY_LOOP(T, sqrt(v));                                                                \
        else if (alpha == -0.5)                                                                    \
            UNARY_LOOP(T, (T)1 / sqrt(v));                                                         \
        else if (alpha == -1.0)                                                                    \
            UNARY_LOOP(T, (T)1 / v);                                                               \
        else if (alpha == -2.0)                                                                    \
            UNARY_LOOP(T, (T)1 / (v * v));                                                         \
        else                                                                                       \
            UNARY_LOOP(T, pow(v, al));                                                             \
    } while (0)

#define DEFINE_UNARY(T, SFX)                                                                       \
    static void unary_##SFX(UnaryOp op, const T *restrict px, double alpha, T *restrict po,  \
                            int64_t n) {                                                              \
        const T al = (T)alpha;                                                                     \
        switch (op) {                                                                              \
        case UNARY_NEG: UNARY_LOOP(T, -v); break;                                                  \
        case UNARY_EXP: UNARY_LOOP(T, exp(v)); break;                                              \
        case UNARY_LOG: UNARY_LOOP(T, log(v)); break;                                              \
        case UNARY_SQRT: UNARY_LOOP(T, sqrt(v)); break;                                            \
        case UNARY_ABS: UNARY_LOOP(T, fabs(v)); break;                                             \
        case UNARY_SIGN: UNARY_LOOP(T, (T)((v > 0) - (v < 0))); break;                             \
        case UNARY_RELU: UNARY_LOOP(T, v < 0 ? (T)0 : v); break;                                   \
        case UNARY_SIGMOID: UNARY_LOOP(T, sigmoid_##SFX(v)); break;                                \
        case UNARY_TANH: UNARY_LOOP(T, tanh(v)); break;                                            \
        case UNARY_POW: UNARY_POW_LOOP(T); break;                                                  \
        case UNARY_MUL_SCALAR: UNARY_LOOP(T, (v * al)); break;                                     \
        case UNARY_ADD_SCALAR: UNARY_LOOP(T, v + al); break;                                       \
        case UNARY_RSUB_SCALAR: UNARY_LOOP(T, al - v); break;                                      \
        case UNARY_RDIV_SCALAR: UNARY_LOOP(T, al / v); break;                                      \
        case UNARY_GT_SCALAR: UNARY_LOOP(T, v > al ? (T)1 : (T)0); break;                          \
        case UNARY_CLAMP_MIN: UNARY_LOOP(T, v < al ? al : v); break; /* NaN stays NaN */           \
        case UNARY_CLAMP_MAX: UNARY_LOOP(T, v > al ? al : v); break;                               \
        case UNARY_GELU: UNARY_LOOP(T, gelu_##SFX(v)); break;                                      \
        case UNARY_GELU_TANH: UNARY_LOOP(T, gelu_tanh_##SFX(v)); break;                            \
        case UNARY_SILU: UNARY_LOOP(T, silu_##SFX(v)); break;                                      \
        case UNARY_LEAKY_RELU: UNARY_LOOP(T, v > 0 ? v : v * al); break;                           \
        }                                                                                          \
    }

DEFINE_UNARY(float, f32)
DEFINE_UNARY(double, f64)

void cpu_unary(UnaryOp op, const Tensor *x, double alpha, Tensor *out) {
    int64_t n = tensor_numel(out);
    if (out->dtype == DTYPE_FLOAT32)
        unary_f32(op, tensor_data(x), alpha, tensor_data(out), n);
    else
        unary_f64(op, tensor_data(x), alpha, tensor_data(out), n);
}

/* ---- activation backward ---- */

/* gx = gy * EXPR over the elements, EXPR of v = x[i] (or y[i]). */
#define GRAD_LOOP(T, V, EXPR)                                                                      \
    do {                                                                                           \
        _Pragma("omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)")                    \
        for (int64_t i = 0; i < n; i++) {                                                          \
            const T v = (V)[i];                                                                    \
            pgx[i] = pgy[i] * (EXPR);                                                              \
        }                                                                                          \
    } while (0)

/* RELU as torch's threshold_backward (x <= 0 gives exactly 0, even for an
 * infinite or NaN gy); LEAKY_RELU as torch's (x > 0 ? gy : gy * slope);
 * the others in torch's operation order. Only these ops are supported: the
 * other ops' backwards are composed by the op layer from unary and binary
 * kernels. Any other op writes NaN, so a misuse shows up in the numbers
 * rather than as silent zeros. */
#define DEFINE_UNARY_BACKWARD(T, SFX)                                                              \
    static void unary_backward_##SFX(UnaryOp op, const T *restrict px, const T *restrict py,       \
                                     double alpha, const T *restrict pgy, T *restrict pgx,         \
                                     int64_t n) {                                                  \
        const T al = (T)alpha;                                                                     \
        switch (op) {                                                                              \
        case UNARY_RELU:                                                                           \
            _Pragma("omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)")                \
            for (int64_t i = 0; i < n; i++) { /* load first: a select vectorises */                \
                const T g = pgy[i];                                                                \
                pgx[i] = px[i] > 0 ? g : (T)0;                                                     \
            }                                                                                      \
            break;                                                                                 \
        case UNARY_LEAKY_RELU:                                                                     \
            _Pragma("omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)")                \
            for (int64_t i = 0; i < n; i++) {                                                      \
                const T g = pgy[i];                                                                \
                pgx[i] = px[i] > 0 ? g : g * al;                                                   \
            }                                                                                      \
            break;                                                                                 \
        case UNARY_SIGMOID:                                                                        \
            for (int64_t i = 0; i < n; i++) pgx[i] = pgy[i] * ((T)1 - py[i]) * py[i];              \
            break;                                                                                 \
        case UNARY_TANH:                                                                           \
            for (int64_t i = 0; i < n; i++) pgx[i] = pgy[i] * ((T)1 - py[i] * py[i]);              \
            break;                                                                                 \
        case UNARY_GELU: GRAD_LOOP(T, px, gelu_grad_##SFX(v)); break;                              \
        case UNARY_GELU_TANH: GRAD_LOOP(T, px, gelu_tanh_grad_##SFX(v)); break;                    \
        case UNARY_SILU: GRAD_LOOP(T, px, silu_grad_##SFX(v)); break;                              \
        default:                                                                                   \
            for (int64_t i = 0; i < n; i++) pgx[i] = (T)NAN;                                       \
            break;                                                                                 \
        }                                                                                          \
    }

DEFINE_UNARY_BACKWARD(float, f32)
DEFINE_UNARY_BACKWARD(double, f64)

void cpu_unary_backward(UnaryOp op, const Tensor *x, const Tensor *y, double alpha,
                        const Tensor *gy, Tensor *gx) {
    int64_t n = tensor_numel(gx);
    /* SIGMOID and TANH need only y, the others only x; the other may be NULL. */
    const void *px = x ? tensor_data(x) : NULL, *py = y ? tensor_data(y) : NULL;
    if (gx->dtype == DTYPE_FLOAT32)
        unary_backward_f32(op, px, py, alpha, tensor_data(gy), tensor_data(gx), n);
    else
        unary_backward_f64(op, px, py, alpha, tensor_data(gy), tensor_data(gx), n);
}
