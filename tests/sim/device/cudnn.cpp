/* cudnn.cpp - cuDNN's legacy convolutions on the simulated device: direct
 * convolutions (cross-correlation, padding, stride, dilation, groups) in
 * double, queued on the handle's stream, for each pass.
 *
 * The algorithm search offers three algorithms a pass, as cuDNN offers
 * several: the fastest is not deterministic, the next needs a workspace,
 * the slowest needs neither; it runs the pass at once (it times them on
 * the caller's buffers), so it is refused in a graph's capture. Running
 * an algorithm checks the workspace it is given against what
 * cudnnGet*WorkspaceSize states for it, a little more than the search
 * said, as cuDNN's may be.
 */
#include <cudnn.h>
#include <math.h>
#include <string.h>

#include <vector>

#include "tests/sim/device/device.h"

struct SimDnn {
    cudaStream_t stream = nullptr;
};
struct SimDnnTensor { /* a tensor's or a filter's n (k), c, h, w */
    cudnnDataType_t type = CUDNN_DATA_FLOAT;
    int n = 0, c = 0, h = 0, w = 0;
};
struct SimDnnConv {
    int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1, groups = 1;
    cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

enum Pass { FORWARD, DATA, FILTER };

struct Algo {
    int algo;
    float time;
    size_t memory;
    cudnnDeterminism_t determinism;
};
const Algo ALGOS[] = {{1, 1.0f, 0, CUDNN_NON_DETERMINISTIC},
                      {2, 2.0f, (size_t)1 << 20, CUDNN_DETERMINISTIC},
                      {0, 3.0f, 0, CUDNN_DETERMINISTIC}};
const int N_ALGOS = 3;

/* the workspace algo needs to run: the search's figure and a little */
bool workspace_of(int algo, size_t *bytes) {
    for (const Algo &a : ALGOS)
        if (a.algo == algo) return *bytes = a.memory ? a.memory + 256 : 0, true;
    return false;
}

size_t elements(const SimDnnTensor *t) { return (size_t)t->n * t->c * t->h * t->w; }
size_t element_bytes(const SimDnnTensor *t) {
    return t->type == CUDNN_DATA_DOUBLE ? sizeof(double) : sizeof(float);
}

bool on_device(const SimDnnTensor *t, const void *p) {
    return simdev_on_device(p, elements(t) * element_bytes(t));
}

/* The shapes of a convolution: x [N, C, H, W], w [O, C / groups, kh, kw],
 * y [N, O, oh, ow], agreeing with each other and the descriptor. */
struct Shapes {
    const SimDnnTensor *x, *w, *y;
    const SimDnnConv *conv;
    bool tf32;
};

bool shapes_ok(const Shapes &s) {
    const SimDnnConv *c = s.conv;
    int oh = (s.x->h + 2 * c->pad_h - c->dil_h * (s.w->h - 1) - 1) / c->stride_h + 1;
    int ow = (s.x->w + 2 * c->pad_w - c->dil_w * (s.w->w - 1) - 1) / c->stride_w + 1;
    return c->mode == CUDNN_CROSS_CORRELATION && s.x->type == s.w->type &&
           s.x->type == s.y->type && s.x->c == s.w->c * c->groups && s.w->n % c->groups == 0 &&
           s.y->n == s.x->n && s.y->c == s.w->n && s.y->h == oh && s.y->w == ow;
}

template <typename T> double in(T v, bool tf32) {
    return tf32 ? (double)simdev_round_mantissa((float)v, 10) : (double)v;
}

/* One pass: every (image, output channel, output pixel, input channel,
 * filter tap) adds one product to the pass's output, summed in double,
 * then out = alpha sum + beta out (out not read when beta is 0). */
template <typename T>
void convolve(const Shapes &s, Pass pass, const T *a, const T *b, T *out, double alpha,
              double beta) {
    const SimDnnTensor &x = *s.x, &w = *s.w, &y = *s.y;
    const SimDnnConv &c = *s.conv;
    int cg = w.c, og = w.n / c.groups;
    size_t n_out = pass == FORWARD ? elements(&y) : pass == DATA ? elements(&x) : elements(&w);
    std::vector<double> sum(n_out, 0.0);
    for (int n = 0; n < x.n; n++)
        for (int o = 0; o < y.c; o++)
            for (int oh = 0; oh < y.h; oh++)
                for (int ow = 0; ow < y.w; ow++)
                    for (int ci = 0; ci < cg; ci++)
                        for (int kh = 0; kh < w.h; kh++)
                            for (int kw = 0; kw < w.w; kw++) {
                                int ih = oh * c.stride_h - c.pad_h + kh * c.dil_h;
                                int iw = ow * c.stride_w - c.pad_w + kw * c.dil_w;
                                if (ih < 0 || ih >= x.h || iw < 0 || iw >= x.w) continue;
                                int ch = o / og * cg + ci;
                                size_t xi = (((size_t)n * x.c + ch) * x.h + ih) * x.w + iw;
                                size_t wi = (((size_t)o * w.c + ci) * w.h + kh) * w.w + kw;
                                size_t yi = (((size_t)n * y.c + o) * y.h + oh) * y.w + ow;
                                if (pass == FORWARD) /* a = x, b = w */
                                    sum[yi] += in(a[xi], s.tf32) * in(b[wi], s.tf32);
                                else if (pass == DATA) /* a = w, b = dy */
                                    sum[xi] += in(a[wi], s.tf32) * in(b[yi], s.tf32);
                                else /* a = x, b = dy */
                                    sum[wi] += in(a[xi], s.tf32) * in(b[yi], s.tf32);
                            }
    for (size_t i = 0; i < n_out; i++)
        out[i] = (T)(alpha * sum[i] + (beta == 0 ? 0 : beta * (double)out[i]));
}

/* the pass's operands by role: what it reads (a, b) and writes */
struct Operands {
    const SimDnnTensor *a, *b, *out;
};

Operands operands(const Shapes &s, Pass pass) {
    if (pass == FORWARD) return {s.x, s.w, s.y};
    if (pass == DATA) return {s.w, s.y, s.x};
    return {s.x, s.y, s.w};
}

cudnnStatus_t run(cudnnHandle_t h, const Shapes &s, Pass pass, const void *alpha,
                  const void *a, const void *b, const void *beta, void *out, bool now) {
    Operands o = operands(s, pass);
    if (!shapes_ok(s)) return CUDNN_STATUS_BAD_PARAM;
    if (!on_device(o.a, a) || !on_device(o.b, b) || !on_device(o.out, out))
        return CUDNN_STATUS_BAD_PARAM;
    Shapes copy = s;
    SimDnnTensor x = *s.x, w = *s.w, y = *s.y;
    SimDnnConv conv = *s.conv;
    bool dbl = x.type == CUDNN_DATA_DOUBLE;
    double al = dbl ? *(const double *)alpha : *(const float *)alpha;
    double be = dbl ? *(const double *)beta : *(const float *)beta;
    auto work = [=]() mutable {
        copy.x = &x, copy.w = &w, copy.y = &y, copy.conv = &conv;
        if (dbl)
            convolve(copy, pass, (const double *)a, (const double *)b, (double *)out, al, be);
        else
            convolve(copy, pass, (const float *)a, (const float *)b, (float *)out, al, be);
    };
    if (now) { /* the drain and the pass under one hold of the lock, but for a drain
                * that waits for polled work (NCCL's): it lets go, and what another
                * thread queues then may run before the pass */
        std::lock_guard<SimLock> g(simdev_lock());
        if (simdev_drain(h->stream) != cudaSuccess) return CUDNN_STATUS_EXECUTION_FAILED;
        work();
        return CUDNN_STATUS_SUCCESS;
    }
    return simdev_enqueue(h->stream, work) == cudaSuccess ? CUDNN_STATUS_SUCCESS
                                                          : CUDNN_STATUS_EXECUTION_FAILED;
}

bool tf32_math(const SimDnnTensor *x, cudnnMathType_t math) {
    return x->type == CUDNN_DATA_FLOAT &&
           (math == CUDNN_TENSOR_OP_MATH || math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION);
}

/* The search: the pass run once on the caller's buffers, then the
 * algorithms, fastest first. */
template <typename Perf>
cudnnStatus_t find(cudnnHandle_t h, const Shapes &s, Pass pass, const void *a, const void *b,
                   void *out, int requested, int *returned, Perf *perf, void *ws, size_t wsb) {
    if (simdev_capture_refuses()) return CUDNN_STATUS_EXECUTION_FAILED;
    if (wsb && !simdev_on_device(ws, wsb)) return CUDNN_STATUS_BAD_PARAM;
    const double one = 1, zero = 0;
    const float onef = 1, zerof = 0;
    bool dbl = s.x->type == CUDNN_DATA_DOUBLE;
    cudnnStatus_t st = run(h, s, pass, dbl ? (const void *)&one : &onef, a, b,
                           dbl ? (const void *)&zero : &zerof, out, true);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    *returned = requested < N_ALGOS ? requested : N_ALGOS;
    for (int i = 0; i < *returned; i++) {
        memset(&perf[i], 0, sizeof perf[i]);
        perf[i].algo = (decltype(perf[i].algo))ALGOS[i].algo;
        perf[i].status = ALGOS[i].memory <= wsb ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
        perf[i].time = ALGOS[i].time;
        perf[i].memory = ALGOS[i].memory;
        perf[i].determinism = ALGOS[i].determinism;
        perf[i].mathType = s.conv->math;
    }
    return CUDNN_STATUS_SUCCESS;
}

int last_algo = -1; /* the algorithm the last pass ran, for the tests */

cudnnStatus_t run_algo(cudnnHandle_t h, const Shapes &s, Pass pass, int algo, void *ws,
                       size_t wsb, const void *alpha, const void *a, const void *b,
                       const void *beta, void *out) {
    last_algo = algo;
    size_t need;
    if (!workspace_of(algo, &need) || wsb < need) return CUDNN_STATUS_BAD_PARAM;
    if (need && !simdev_on_device(ws, need)) return CUDNN_STATUS_BAD_PARAM;
    return run(h, s, pass, alpha, a, b, beta, out, false);
}

cudnnStatus_t workspace(int algo, size_t *bytes) {
    return workspace_of(algo, bytes) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_BAD_PARAM;
}

} // namespace

/* Which algorithm ran last (test_gpu_conv.c asks, where the device is this one). */
extern "C" int simdev_cudnn_last_algo(void) { return last_algo; }

const char *cudnnGetErrorString(cudnnStatus_t status) {
    switch (CUDNN_STATUS_CATEGORY(status)) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    default: return "CUDNN_STATUS_INTERNAL_ERROR";
    }
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) {
    if (simdev_capture_refuses()) return CUDNN_STATUS_INTERNAL_ERROR; /* as cublasCreate */
    *handle = simdev_keep(new SimDnn);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
    simdev_drop(handle);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
    handle->stream = stream;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *desc) {
    *desc = simdev_keep(new SimDnnTensor);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc) {
    simdev_drop(desc);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format,
                                         cudnnDataType_t type, int n, int c, int h, int w) {
    if (format != CUDNN_TENSOR_NCHW || n <= 0 || c <= 0 || h <= 0 || w <= 0)
        return CUDNN_STATUS_BAD_PARAM;
    *desc = SimDnnTensor{type, n, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *desc) {
    return cudnnCreateTensorDescriptor(desc);
}

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc) {
    return cudnnDestroyTensorDescriptor(desc);
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
    return cudnnSetTensor4dDescriptor(desc, format, type, k, c, h, w);
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *desc) {
    *desc = simdev_keep(new SimDnnConv);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc) {
    simdev_drop(desc);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h,
                                              int pad_w, int stride_h, int stride_w,
                                              int dilation_h, int dilation_w,
                                              cudnnConvolutionMode_t mode, cudnnDataType_t type) {
    (void)type;
    if (pad_h < 0 || pad_w < 0 || stride_h <= 0 || stride_w <= 0 || dilation_h <= 0 ||
        dilation_w <= 0)
        return CUDNN_STATUS_BAD_PARAM;
    desc->pad_h = pad_h, desc->pad_w = pad_w, desc->stride_h = stride_h;
    desc->stride_w = stride_w, desc->dil_h = dilation_h, desc->dil_w = dilation_w;
    desc->mode = mode;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc, int groups) {
    if (groups <= 0) return CUDNN_STATUS_BAD_PARAM;
    desc->groups = groups;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math) {
    desc->math = math;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(cudnnConvolutionDescriptor_t conv,
                                                    cudnnTensorDescriptor_t x,
                                                    cudnnFilterDescriptor_t w, int *n, int *c,
                                                    int *h, int *wd) {
    if (x->c != w->c * conv->groups) return CUDNN_STATUS_BAD_PARAM;
    *n = x->n, *c = w->n;
    *h = (x->h + 2 * conv->pad_h - conv->dil_h * (w->h - 1) - 1) / conv->stride_h + 1;
    *wd = (x->w + 2 * conv->pad_w - conv->dil_w * (w->w - 1) - 1) / conv->stride_w + 1;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(
    cudnnHandle_t h, cudnnTensorDescriptor_t xd, const void *x, cudnnFilterDescriptor_t wd,
    const void *w, cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t yd, void *y,
    int requested, int *returned, cudnnConvolutionFwdAlgoPerf_t *perf, void *ws, size_t wsb) {
    Shapes s{xd, wd, yd, conv, tf32_math(xd, conv->math)};
    return find(h, s, FORWARD, x, w, y, requested, returned, perf, ws, wsb);
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t h, cudnnFilterDescriptor_t wd, const void *w, cudnnTensorDescriptor_t dyd,
    const void *dy, cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t dxd, void *dx,
    int requested, int *returned, cudnnConvolutionBwdDataAlgoPerf_t *perf, void *ws, size_t wsb) {
    Shapes s{dxd, wd, dyd, conv, tf32_math(dxd, conv->math)};
    return find(h, s, DATA, w, dy, dx, requested, returned, perf, ws, wsb);
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t h, cudnnTensorDescriptor_t xd, const void *x, cudnnTensorDescriptor_t dyd,
    const void *dy, cudnnConvolutionDescriptor_t conv, cudnnFilterDescriptor_t dwd, void *dw,
    int requested, int *returned, cudnnConvolutionBwdFilterAlgoPerf_t *perf, void *ws,
    size_t wsb) {
    Shapes s{xd, dwd, dyd, conv, tf32_math(xd, conv->math)};
    return find(h, s, FILTER, x, dy, dw, requested, returned, perf, ws, wsb);
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, cudnnTensorDescriptor_t xd,
                                                      cudnnFilterDescriptor_t wd,
                                                      cudnnConvolutionDescriptor_t conv,
                                                      cudnnTensorDescriptor_t yd,
                                                      cudnnConvolutionFwdAlgo_t algo,
                                                      size_t *bytes) {
    (void)h, (void)xd, (void)wd, (void)conv, (void)yd;
    return workspace((int)algo, bytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t h, cudnnFilterDescriptor_t wd, cudnnTensorDescriptor_t dyd,
    cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t dxd,
    cudnnConvolutionBwdDataAlgo_t algo, size_t *bytes) {
    (void)h, (void)wd, (void)dyd, (void)conv, (void)dxd;
    return workspace((int)algo, bytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t h, cudnnTensorDescriptor_t xd, cudnnTensorDescriptor_t dyd,
    cudnnConvolutionDescriptor_t conv, cudnnFilterDescriptor_t dwd,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t *bytes) {
    (void)h, (void)xd, (void)dyd, (void)conv, (void)dwd;
    return workspace((int)algo, bytes);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha,
                                      cudnnTensorDescriptor_t xd, const void *x,
                                      cudnnFilterDescriptor_t wd, const void *w,
                                      cudnnConvolutionDescriptor_t conv,
                                      cudnnConvolutionFwdAlgo_t algo, void *ws, size_t wsb,
                                      const void *beta, cudnnTensorDescriptor_t yd, void *y) {
    Shapes s{xd, wd, yd, conv, tf32_math(xd, conv->math)};
    return run_algo(h, s, FORWARD, (int)algo, ws, wsb, alpha, x, w, beta, y);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha,
                                           cudnnFilterDescriptor_t wd, const void *w,
                                           cudnnTensorDescriptor_t dyd, const void *dy,
                                           cudnnConvolutionDescriptor_t conv,
                                           cudnnConvolutionBwdDataAlgo_t algo, void *ws,
                                           size_t wsb, const void *beta,
                                           cudnnTensorDescriptor_t dxd, void *dx) {
    Shapes s{dxd, wd, dyd, conv, tf32_math(dxd, conv->math)};
    return run_algo(h, s, DATA, (int)algo, ws, wsb, alpha, w, dy, beta, dx);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha,
                                             cudnnTensorDescriptor_t xd, const void *x,
                                             cudnnTensorDescriptor_t dyd, const void *dy,
                                             cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *ws,
                                             size_t wsb, const void *beta,
                                             cudnnFilterDescriptor_t dwd, void *dw) {
    Shapes s{xd, dwd, dyd, conv, tf32_math(xd, conv->math)};
    return run_algo(h, s, FILTER, (int)algo, ws, wsb, alpha, x, dy, beta, dw);
}

/* c = alpha a + beta c, a broadcast over c's dims where its are 1 */
cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void *alpha, cudnnTensorDescriptor_t ad,
                             const void *a, const void *beta, cudnnTensorDescriptor_t cd,
                             void *c) {
    SimDnnTensor at = *ad, ct = *cd;
    int dims_a[4] = {at.n, at.c, at.h, at.w}, dims_c[4] = {ct.n, ct.c, ct.h, ct.w};
    for (int i = 0; i < 4; i++)
        if (dims_a[i] != 1 && dims_a[i] != dims_c[i]) return CUDNN_STATUS_BAD_PARAM;
    if (at.type != ct.type || !on_device(&at, a) || !on_device(&ct, c))
        return CUDNN_STATUS_BAD_PARAM;
    bool dbl = ct.type == CUDNN_DATA_DOUBLE;
    double al = dbl ? *(const double *)alpha : *(const float *)alpha;
    double be = dbl ? *(const double *)beta : *(const float *)beta;
    auto work = [=] {
        size_t i = 0;
        for (int n = 0; n < ct.n; n++)
            for (int ch = 0; ch < ct.c; ch++)
                for (int y = 0; y < ct.h; y++)
                    for (int x = 0; x < ct.w; x++, i++) {
                        size_t j = (((size_t)(at.n > 1 ? n : 0) * at.c + (at.c > 1 ? ch : 0)) *
                                        at.h + (at.h > 1 ? y : 0)) * at.w + (at.w > 1 ? x : 0);
                        double av = dbl ? ((const double *)a)[j] : ((const float *)a)[j];
                        double *cd64 = (double *)c;
                        float *cd32 = (float *)c;
                        double prior = be == 0 ? 0 : be * (dbl ? cd64[i] : cd32[i]);
                        if (dbl) cd64[i] = al * av + prior;
                        else cd32[i] = (float)(al * av + prior);
                    }
    };
    return simdev_enqueue(h->stream, work) == cudaSuccess ? CUDNN_STATUS_SUCCESS
                                                          : CUDNN_STATUS_EXECUTION_FAILED;
}
