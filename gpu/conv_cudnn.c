/* conv_cudnn.c - Conv2d's forward and both backward passes on cuDNN (issue
 * 14), the library PyTorch's CUDA convolutions run on: its kernels (implicit
 * GEMM, Winograd, FFT) beat our im2col + cuBLAS on most shapes and need no
 * column matrix.
 *
 * cuDNN 9's legacy convolution API, from C (cuDNN is a C API; this file
 * sees Tensors, so it is C for the reason gpu/backend.c is). One handle
 * per device, created on first use and kept, on the thread's stream (the
 * legacy default stream where every kernel of ours runs, a CUDA graph's
 * capture stream while one is captured); jobs on one GPU share it, so it is used
 * under that device's lock, as kernels/gemm.cu's cuBLAS handle is (queueing
 * takes microseconds). A plan per shape is made once and kept: the
 * tensor, filter and convolution descriptors and, per pass, the algorithm
 * cudnnFind*AlgorithmEx timed fastest (PyTorch's cudnn.benchmark): the
 * fastest DETERMINISTIC one that succeeded with at most WORKSPACE_CAP bytes
 * of workspace, so that a job repeats bit for bit (cuDNN's backward-filter
 * and some backward-data algorithms add with atomics in a varying order);
 * under TRAIND_CUDNN_PICK=first the lowest-numbered such one, which every
 * process picks alike.
 * Where no algorithm qualifies the pass declines (1) and ops/conv2d.c's
 * im2col, itself deterministic, does it, now and for every later call.
 *
 * Math: float32 in full float32 (CUDNN_FMA_MATH: no TF32) unless the
 * thread allowed TF32 (gpu_set_tf32, a job's "allow_tf32"); float64 as
 * is. The forward's bias is cudnnAddTensor; the bias gradient is our own
 * reduction kernel (sums in double in a fixed order, as the CPU's), not
 * cudnnConvolutionBackwardBias, so it too repeats. Workspace comes from the caching allocator and goes back to it once
 * the pass is queued (one stream: the next user of the block runs after).
 * Any cuDNN failure returns -1 with "conv2d: <call> failed: <cuDNN's
 * message>"; cases cuDNN does not support, other dtypes, bf16, and
 * TRAIND_CUDNN=0 return 1.
 */
#include <cudnn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor.h"
#include "gpu/conv_cudnn.h"
#include "gpu/gpu.h"
#include "gpu/kernels.h"
#include "gpu/stream.h"

/* the most workspace an algorithm may use: PyTorch's searches allow more,
 * but an algorithm needing more is rarely much faster, and the block is
 * kept by the caching allocator */
#define WORKSPACE_CAP ((size_t)256 << 20)
/* the smallest workspace worth offering a search when the cap is not free */
#define WORKSPACE_MIN ((size_t)1 << 20)

enum { PASS_FORWARD, PASS_DATA, PASS_FILTER, PASSES };
static const char *const find_calls[PASSES] = {"cudnnFindConvolutionForwardAlgorithmEx",
                                               "cudnnFindConvolutionBackwardDataAlgorithmEx",
                                               "cudnnFindConvolutionBackwardFilterAlgorithmEx"};
static const char *const run_calls[PASSES] = {"cudnnConvolutionForward",
                                              "cudnnConvolutionBackwardData",
                                              "cudnnConvolutionBackwardFilter"};

typedef struct {
    Window2d w;
    int64_t out_channels;
    int groups;
    int dtype;            /* GPU_F32, GPU_F64 */
    cudnnMathType_t math; /* the math asked for (TF32 allowed or not) */
} ConvKey;

typedef enum { CHOICE_NONE, CHOICE_READY, CHOICE_DECLINED } ChoiceState;

/* One pass's algorithm, found once. */
typedef struct {
    ChoiceState state;
    int algo; /* cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t */
    size_t workspace;
    cudnnMathType_t math; /* the math it runs under */
} Choice;

typedef struct Plan {
    ConvKey key;
    bool unsupported; /* cuDNN refused the descriptors: every pass declines */
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    Choice choice[PASSES];
    struct Plan *next;
} Plan;

/* A device's handle and plans, both used only under its lock. Plans live
 * as long as the process: a job has a handful of shapes (PyTorch's
 * benchmark cache is likewise unbounded). */
typedef struct {
    pthread_mutex_t lock;
    cudnnHandle_t handle;
    cudaStream_t stream; /* the handle's */
    Plan *plans;
} DeviceCudnn;

static DeviceCudnn devices[GPU_MAX_DEVICES];
static pthread_once_t devices_once = PTHREAD_ONCE_INIT;

static atomic_int enabled = -1; /* -1: TRAIND_CUDNN not read yet */
static atomic_uint_fast64_t finds, runs;

static void devices_init(void) {
    /* a default mutex: glibc's init cannot fail */
    for (int i = 0; i < GPU_MAX_DEVICES; i++) pthread_mutex_init(&devices[i].lock, NULL);
}

bool gpu_cudnn_enabled(void) {
    int e = atomic_load(&enabled);
    if (e < 0) {
        const char *s = getenv("TRAIND_CUDNN");
        int want = !(s && strcmp(s, "0") == 0), unread = -1;
        atomic_compare_exchange_strong(&enabled, &unread, want);
        e = atomic_load(&enabled);
    }
    return e != 0;
}

void gpu_cudnn_set_enabled(bool on) { atomic_store(&enabled, on ? 1 : 0); }

void gpu_cudnn_stats(uint64_t *f, uint64_t *r) {
    if (f) *f = atomic_load(&finds);
    if (r) *r = atomic_load(&runs);
}


/* ---- statuses ---- */

static bool not_supported(cudnnStatus_t st) {
    return CUDNN_STATUS_CATEGORY(st) == CUDNN_STATUS_NOT_SUPPORTED;
}

static int failed(cudnnStatus_t st, const char *call) {
    return error_set("conv2d: %s failed: %s", call, cudnnGetErrorString(st));
}

/* 0 on success, 1 where cuDNN does not support the case, else -1. */
static int checked(cudnnStatus_t st, const char *call) {
    if (st == CUDNN_STATUS_SUCCESS) return 0;
    return not_supported(st) ? 1 : failed(st, call);
}

/* ---- the handle ---- */

/* The device's handle, created on first use, set to the thread's stream
 * (gpu/stream.h: the legacy default stream, named explicitly, whatever
 * stream 0 means to the library's build; a graph's capture stream while
 * one is captured). */
static cudnnHandle_t handle_locked(DeviceCudnn *d) {
    if (!d->handle) {
        cudnnHandle_t h;
        enum cudaStreamCaptureMode mode = gpu_capture_relax(); /* a first use in a capture */
        cudnnStatus_t st = cudnnCreate(&h); /* on the current device: the caller's */
        gpu_capture_restore(mode);
        if (st != CUDNN_STATUS_SUCCESS) {
            failed(st, "cudnnCreate");
            return NULL;
        }
        d->handle = h;
        d->stream = NULL;
    }
    if (d->stream != gpu_stream()) {
        cudnnStatus_t st = cudnnSetStream(d->handle, gpu_stream());
        if (st != CUDNN_STATUS_SUCCESS) {
            failed(st, "cudnnSetStream");
            return NULL;
        }
        d->stream = gpu_stream();
    }
    return d->handle;
}

/* ---- plans ---- */

static cudnnDataType_t data_type(int dtype) {
    return dtype == GPU_F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
}

static void plan_free(Plan *p) {
    if (p->x) cudnnDestroyTensorDescriptor(p->x);
    if (p->y) cudnnDestroyTensorDescriptor(p->y);
    if (p->bias) cudnnDestroyTensorDescriptor(p->bias);
    if (p->w) cudnnDestroyFilterDescriptor(p->w);
    if (p->conv) cudnnDestroyConvolutionDescriptor(p->conv);
    free(p);
}

static int create_descriptors(Plan *p) {
    int rc = checked(cudnnCreateTensorDescriptor(&p->x), "cudnnCreateTensorDescriptor");
    if (rc == 0) rc = checked(cudnnCreateTensorDescriptor(&p->y), "cudnnCreateTensorDescriptor");
    if (rc == 0)
        rc = checked(cudnnCreateTensorDescriptor(&p->bias), "cudnnCreateTensorDescriptor");
    if (rc == 0) rc = checked(cudnnCreateFilterDescriptor(&p->w), "cudnnCreateFilterDescriptor");
    if (rc == 0)
        rc = checked(cudnnCreateConvolutionDescriptor(&p->conv),
                     "cudnnCreateConvolutionDescriptor");
    return rc;
}

/* The convolution itself: windows, groups, the math asked for. */
static int set_convolution(Plan *p) {
    const ConvKey *k = &p->key;
    const Window2d *w = &k->w;
    int rc = checked(cudnnSetConvolution2dDescriptor(
                         p->conv, (int)w->pad_h, (int)w->pad_w, (int)w->stride_h,
                         (int)w->stride_w, (int)w->dilation_h, (int)w->dilation_w,
                         CUDNN_CROSS_CORRELATION, data_type(k->dtype)),
                     "cudnnSetConvolution2dDescriptor");
    if (rc == 0)
        rc = checked(cudnnSetConvolutionGroupCount(p->conv, k->groups),
                     "cudnnSetConvolutionGroupCount");
    if (rc == 0)
        rc = checked(cudnnSetConvolutionMathType(p->conv, k->math), "cudnnSetConvolutionMathType");
    return rc;
}

/* x [N, C, H, W], weight [O, C/groups, kh, kw], y [N, O, out_h, out_w] and
 * the bias [1, O, 1, 1], all NCHW; y's shape checked against cuDNN's. */
static int set_descriptors(Plan *p) {
    const ConvKey *k = &p->key;
    const Window2d *w = &k->w;
    cudnnDataType_t dt = data_type(k->dtype);
    int n = (int)w->batch, c = (int)w->channels, o = (int)k->out_channels;
    int rc = checked(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, dt, n, c, (int)w->height,
                                                (int)w->width),
                     "cudnnSetTensor4dDescriptor");
    if (rc == 0)
        rc = checked(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, dt, n, o, (int)w->out_h,
                                                (int)w->out_w),
                     "cudnnSetTensor4dDescriptor");
    if (rc == 0)
        rc = checked(cudnnSetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NCHW, dt, 1, o, 1, 1),
                     "cudnnSetTensor4dDescriptor");
    if (rc == 0)
        rc = checked(cudnnSetFilter4dDescriptor(p->w, dt, CUDNN_TENSOR_NCHW, o, c / k->groups,
                                                (int)w->kernel_h, (int)w->kernel_w),
                     "cudnnSetFilter4dDescriptor");
    if (rc == 0) rc = set_convolution(p);
    int dims[4] = {0, 0, 0, 0};
    if (rc == 0)
        rc = checked(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &dims[0],
                                                           &dims[1], &dims[2], &dims[3]),
                     "cudnnGetConvolution2dForwardOutputDim");
    if (rc == 0 && (dims[0] != n || dims[1] != o || dims[2] != w->out_h || dims[3] != w->out_w))
        rc = 1; /* cuDNN sees another shape than ours: leave it to im2col */
    return rc;
}

/* A new plan for k (its passes still to be searched); NULL with an error. */
static Plan *plan_make(const ConvKey *k) {
    Plan *p = calloc(1, sizeof *p);
    if (!p) {
        error_set("conv2d: out of memory for a cuDNN plan");
        return NULL;
    }
    p->key = *k;
    int rc = create_descriptors(p);
    if (rc == 0) rc = set_descriptors(p);
    if (rc < 0) {
        plan_free(p);
        return NULL;
    }
    p->unsupported = rc > 0;
    return p;
}

/* The device's plan for k, made the first time. */
static Plan *plan_locked(DeviceCudnn *d, const ConvKey *k) {
    for (Plan *p = d->plans; p; p = p->next)
        if (memcmp(&p->key, k, sizeof *k) == 0) return p;
    Plan *p = plan_make(k);
    if (!p) return NULL;
    p->next = d->plans;
    d->plans = p;
    return p;
}

/* ---- one call ---- */

/* A pass's operands: forward (x, weight) -> y; backward data (weight, gy)
 * -> gx; backward filter (x, gy) -> gw. bias: the forward's, or NULL. */
typedef struct {
    int pass;
    int device;
    const void *a, *b;
    void *out, *bias;
} Call;

/* The scalars 1 and 0 in the data's type (double for float64). */
typedef struct {
    float f;
    double d;
} Scalar;

static const void *scalar(const Plan *p, const Scalar *s) {
    return p->key.dtype == GPU_F64 ? (const void *)&s->d : (const void *)&s->f;
}

static const Scalar one = {1.0f, 1.0}, zero = {0.0f, 0.0};

/* ---- choosing an algorithm ---- */

/* The fields the three AlgoPerf structs share, in one type. */
typedef struct {
    int algo;
    cudnnStatus_t status;
    float time;
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t math;
} Perf;

#define PERF_MAX CUDNN_CONVOLUTION_FWD_ALGO_COUNT
_Static_assert((int)CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT <= (int)PERF_MAX &&
                   (int)CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT <= (int)PERF_MAX,
               "PERF_MAX holds every pass's algorithms");

#define PERF_COPY(dst, src, n)                                                                     \
    for (int i_ = 0; i_ < (n); i_++)                                                               \
    (dst)[i_] = (Perf){(int)(src)[i_].algo, (src)[i_].status, (src)[i_].time, (src)[i_].memory,    \
                       (src)[i_].determinism, (src)[i_].mathType}

/* Times every algorithm of the pass on the call's own buffers (the output
 * is overwritten, as the pass will overwrite it); n results in perf. */
static cudnnStatus_t find(cudnnHandle_t h, const Plan *p, const Call *c, void *ws, size_t wsb,
                          Perf *perf, int *n) {
    cudnnStatus_t st;
    if (c->pass == PASS_FORWARD) {
        cudnnConvolutionFwdAlgoPerf_t r[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        st = cudnnFindConvolutionForwardAlgorithmEx(h, p->x, c->a, p->w, c->b, p->conv, p->y,
                                                    c->out, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, n,
                                                    r, ws, wsb);
        if (st == CUDNN_STATUS_SUCCESS) PERF_COPY(perf, r, *n);
    } else if (c->pass == PASS_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        st = cudnnFindConvolutionBackwardDataAlgorithmEx(
            h, p->w, c->a, p->y, c->b, p->conv, p->x, c->out,
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, n, r, ws, wsb);
        if (st == CUDNN_STATUS_SUCCESS) PERF_COPY(perf, r, *n);
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        st = cudnnFindConvolutionBackwardFilterAlgorithmEx(
            h, p->x, c->a, p->y, c->b, p->conv, p->w, c->out,
            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, n, r, ws, wsb);
        if (st == CUDNN_STATUS_SUCCESS) PERF_COPY(perf, r, *n);
    }
    return st;
}

/* Whether the algorithm's math is allowed: without TF32, no tensor-op
 * math for float32 (cuDNN should not offer it under FMA math; checked
 * anyway, since a TF32 result would pass a loose test unnoticed). */
static bool math_allowed(const ConvKey *k, cudnnMathType_t m) {
    if (k->math != CUDNN_FMA_MATH) return true;
    return m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

/* TRAIND_CUDNN_PICK=first: the qualifying algorithm of the lowest
 * number, not the fastest. The search's timings vary between processes,
 * so two processes of one job may pick two algorithms and part in the
 * last bits; by number, every process of one cuDNN on one GPU picks the
 * same (gpu/check.sh compares separate processes bit for bit so). */
static bool pick_first(void) {
    static atomic_int first = -1;
    int f = atomic_load(&first);
    if (f < 0) {
        const char *s = getenv("TRAIND_CUDNN_PICK");
        f = s && strcmp(s, "first") == 0;
        atomic_store(&first, f);
    }
    return f;
}

/* The fastest (or first, above) deterministic algorithm that succeeded
 * within wsb bytes of workspace; -1 when none did. Determinism over
 * speed: a run's losses must repeat exactly. */
static int pick(const ConvKey *k, const Perf *perf, int n, size_t wsb) {
    int best = -1;
    bool first = pick_first();
    for (int i = 0; i < n; i++) {
        const Perf *q = &perf[i];
        if (q->status != CUDNN_STATUS_SUCCESS || q->determinism != CUDNN_DETERMINISTIC ||
            q->memory > wsb || !math_allowed(k, q->math))
            continue;
        if (best < 0) {
            best = i;
            continue;
        }
        /* by number, then math type: Find may list one algorithm under two
         * math types (TF32 allowed), in an order its timings decide */
        const Perf *b = &perf[best];
        bool before = first ? q->algo < b->algo || (q->algo == b->algo && q->math < b->math)
                            : q->time < b->time;
        if (before) best = i;
    }
    return best;
}

/* Workspace for a search: the cap, or the largest power-of-two share of
 * it the device can give (none at all when even WORKSPACE_MIN cannot be). */
static void *search_workspace(int device, size_t *bytes) {
    for (size_t b = WORKSPACE_CAP; b >= WORKSPACE_MIN; b /= 2) {
        void *ws = gpu_alloc_bytes(device, b);
        if (ws) {
            *bytes = b;
            return ws;
        }
    }
    *bytes = 0;
    return NULL;
}

/* The chosen algorithm's workspace under its math type, as cuDNN states
 * it for the run (the search's figure, perf.memory, can be smaller);
 * 1 where cuDNN refuses the pair. */
static int workspace_size(cudnnHandle_t h, const Plan *p, int pass, Choice *ch) {
    int rc = checked(cudnnSetConvolutionMathType(p->conv, ch->math), "cudnnSetConvolutionMathType");
    size_t bytes = 0;
    cudnnStatus_t st;
    if (rc != 0) return rc;
    if (pass == PASS_FORWARD)
        st = cudnnGetConvolutionForwardWorkspaceSize(h, p->x, p->w, p->conv, p->y,
                                                     (cudnnConvolutionFwdAlgo_t)ch->algo, &bytes);
    else if (pass == PASS_DATA)
        st = cudnnGetConvolutionBackwardDataWorkspaceSize(
            h, p->w, p->y, p->conv, p->x, (cudnnConvolutionBwdDataAlgo_t)ch->algo, &bytes);
    else
        st = cudnnGetConvolutionBackwardFilterWorkspaceSize(
            h, p->x, p->y, p->conv, p->w, (cudnnConvolutionBwdFilterAlgo_t)ch->algo, &bytes);
    rc = checked(st, "cudnnGetConvolutionWorkspaceSize");
    if (rc == 0 && bytes > ch->workspace) ch->workspace = bytes;
    return rc == 0 && ch->workspace > WORKSPACE_CAP ? 1 : rc;
}

/* Searches the call's pass once and records the choice (or the decline). */
static int choose(cudnnHandle_t h, Plan *p, const Call *c) {
    Choice *ch = &p->choice[c->pass];
    /* the search sees the math asked for, not another pass's choice */
    int rc = checked(cudnnSetConvolutionMathType(p->conv, p->key.math),
                     "cudnnSetConvolutionMathType");
    if (rc > 0) ch->state = CHOICE_DECLINED;
    if (rc != 0) return rc < 0 ? -1 : 0;
    size_t wsb;
    void *ws = search_workspace(c->device, &wsb);
    Perf perf[PERF_MAX];
    int n = 0;
    cudnnStatus_t st = find(h, p, c, ws, wsb, perf, &n);
    gpu_free_bytes(c->device, ws);
    atomic_fetch_add(&finds, 1);
    rc = checked(st, find_calls[c->pass]);
    if (rc < 0) return -1;
    int best = rc == 0 ? pick(&p->key, perf, n, wsb) : -1;
    if (best < 0) {
        ch->state = CHOICE_DECLINED;
        return 0;
    }
    /* without TF32 the run is FMA math whatever cuDNN reported (its
     * default math would let float32 run on TF32 tensor cores) */
    cudnnMathType_t math = p->key.math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : perf[best].math;
    /* recorded once its workspace is known: a failed query leaves the
     * pass unchosen (searched again), not ready with too small a one */
    Choice chosen = {CHOICE_READY, perf[best].algo, perf[best].memory, math};
    rc = workspace_size(h, p, c->pass, &chosen);
    if (rc < 0) return -1;
    *ch = chosen;
    if (rc > 0) ch->state = CHOICE_DECLINED;
    return 0;
}

/* ---- running a pass ---- */

static cudnnStatus_t run_conv(cudnnHandle_t h, const Plan *p, const Call *c, const Choice *ch,
                              void *ws) {
    const void *a1 = scalar(p, &one), *b0 = scalar(p, &zero);
    switch (c->pass) {
    case PASS_FORWARD:
        return cudnnConvolutionForward(h, a1, p->x, c->a, p->w, c->b, p->conv,
                                       (cudnnConvolutionFwdAlgo_t)ch->algo, ws, ch->workspace,
                                       b0, p->y, c->out);
    case PASS_DATA:
        return cudnnConvolutionBackwardData(h, a1, p->w, c->a, p->y, c->b, p->conv,
                                            (cudnnConvolutionBwdDataAlgo_t)ch->algo, ws,
                                            ch->workspace, b0, p->x, c->out);
    default:
        return cudnnConvolutionBackwardFilter(h, a1, p->x, c->a, p->y, c->b, p->conv,
                                              (cudnnConvolutionBwdFilterAlgo_t)ch->algo, ws,
                                              ch->workspace, b0, p->w, c->out);
    }
}

/* The forward's bias, added to y over N, H, W (a broadcast add: exact,
 * deterministic). */
static int run_bias(cudnnHandle_t h, const Plan *p, const Call *c) {
    if (!c->bias || c->pass != PASS_FORWARD) return 0;
    const void *a1 = scalar(p, &one);
    cudnnStatus_t st = cudnnAddTensor(h, a1, p->bias, c->bias, a1, p->y, c->out);
    /* the convolution is queued: a bias cuDNN refuses now is an error */
    return st == CUDNN_STATUS_SUCCESS ? 0 : failed(st, "cudnnAddTensor (bias)");
}

/* Queues the chosen algorithm, with its workspace, then the bias. A
 * workspace the device cannot give now declines (im2col needs less),
 * except in a CUDA graph's capture, which fails instead: the graph would
 * keep im2col for the whole run while its other steps use cuDNN. */
static int run(cudnnHandle_t h, Plan *p, const Call *c) {
    const Choice *ch = &p->choice[c->pass];
    void *ws = ch->workspace ? gpu_alloc_bytes(c->device, ch->workspace) : NULL;
    if (ch->workspace && !ws)
        return gpu_stream() == cudaStreamLegacy
                   ? 1
                   : error_set("conv2d: no memory for cuDNN's workspace in a CUDA graph");
    int rc = checked(cudnnSetConvolutionMathType(p->conv, ch->math), "cudnnSetConvolutionMathType");
    if (rc == 0) {
        cudnnStatus_t st = run_conv(h, p, c, ch, ws);
        rc = st == CUDNN_STATUS_SUCCESS ? 0 : failed(st, run_calls[c->pass]);
        if (rc == 0) gpu_profile_mark(run_calls[c->pass]);
    }
    if (rc == 0) rc = run_bias(h, p, c);
    gpu_free_bytes(c->device, ws); /* queued: the block's next user runs after */
    if (rc == 0) atomic_fetch_add(&runs, 1);
    return rc < 0 ? -1 : rc;
}

static int pass_locked(DeviceCudnn *d, const ConvKey *k, const Call *c) {
    cudnnHandle_t h = handle_locked(d);
    if (!h) return -1;
    Plan *p = plan_locked(d, k);
    if (!p) return -1;
    if (p->unsupported) return 1;
    if (p->choice[c->pass].state == CHOICE_NONE && gpu_stream() != cudaStreamLegacy)
        /* the search times every algorithm: nothing runs in a capture */
        return error_set("conv2d: cuDNN's algorithm search cannot run in a CUDA graph's "
                         "capture (a shape no step had run before)");
    if (p->choice[c->pass].state == CHOICE_NONE && choose(h, p, c) != 0) return -1;
    if (p->choice[c->pass].state == CHOICE_DECLINED) return 1;
    return run(h, p, c);
}

/* ---- the Backend entries ---- */

/* Whether cuDNN takes tensors of t's dtype and sizes: float32 / float64
 * and every count within its int parameters. */
static bool takes(const Window2d *w, int64_t out_channels, const Tensor *t) {
    /* under "precision": "bf16" the passes decline: im2col + GEMM run
     * the convolution on bf16 tensor cores (gemm.cu) */
    if (!gpu_cudnn_enabled() || gpu_bf16()) return false;
    if (t->dtype != DTYPE_FLOAT32 && t->dtype != DTYPE_FLOAT64) return false;
    const int64_t counts[] = {w->batch * w->channels * w->height * w->width,
                              w->batch * out_channels * w->out_h * w->out_w,
                              out_channels * w->channels * w->kernel_h * w->kernel_w};
    for (int i = 0; i < 3; i++)
        if (counts[i] <= 0 || counts[i] > INT_MAX) return false;
    return true;
}

static ConvKey key_of(const Window2d *w, int groups, int64_t out_channels, DType dt) {
    ConvKey k;
    memset(&k, 0, sizeof k); /* padding too: keys are compared with memcmp */
    k.w = *w, k.out_channels = out_channels, k.groups = groups, k.dtype = (int)dt;
    k.math = dt == DTYPE_FLOAT32 && gpu_tf32_enabled() ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    return k;
}

static int pass(const Window2d *w, int groups, int64_t out_channels, const Tensor *t, Call *c) {
    if (!takes(w, out_channels, t)) return 1;
    c->device = t->device.index;
    if (c->device < 0 || c->device >= GPU_MAX_DEVICES) return 1;
    pthread_once(&devices_once, devices_init);
    gpu_use_device(c->device); /* the handle and the search run on it */
    ConvKey k = key_of(w, groups, out_channels, t->dtype);
    DeviceCudnn *d = &devices[c->device];
    pthread_mutex_lock(&d->lock);
    int rc = pass_locked(d, &k, c);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int gpu_cudnn_conv2d(const Window2d *w, int groups, const Tensor *x, const Tensor *weight,
                     const Tensor *bias, Tensor *out) {
    Call c = {PASS_FORWARD, 0, tensor_data(x), tensor_data(weight), tensor_data(out),
              bias ? tensor_data(bias) : NULL};
    return pass(w, groups, weight->shape[0], x, &c);
}

int gpu_cudnn_conv2d_backward_data(const Window2d *w, int groups, const Tensor *weight,
                                   const Tensor *gy, Tensor *gx) {
    Call c = {PASS_DATA, 0, tensor_data(weight), tensor_data(gy), tensor_data(gx), NULL};
    return pass(w, groups, weight->shape[0], gy, &c);
}

/* gb = the sum of gy [N, O, L] over N and L, by our reduction kernel
 * (in double, in a fixed order: deterministic, as the CPU's), with the
 * size-1 dims dropped as the backend's sum drops them. */
static void bias_grad(const Window2d *w, const Tensor *gy, Tensor *gb) {
    int64_t o = gb->shape[0], l = w->out_h * w->out_w;
    int64_t ks[1] = {o}, kst[1] = {l}, rs[2], rst[2];
    int nr = 0;
    if (w->batch > 1) rs[nr] = w->batch, rst[nr++] = o * l;
    if (l > 1) rs[nr] = l, rst[nr++] = 1;
    gpu_launch_sum((int)gy->dtype, tensor_data(gy), o > 1 ? 1 : 0, ks, kst, nr, rs, rst,
                   tensor_data(gb), o, w->batch * l);
}

int gpu_cudnn_conv2d_backward_weights(const Window2d *w, int groups, const Tensor *x,
                                      const Tensor *gy, Tensor *gw, Tensor *gb) {
    Call c = {PASS_FILTER, 0, tensor_data(x), tensor_data(gy), tensor_data(gw), NULL};
    int rc = pass(w, groups, gw->shape[0], x, &c);
    if (rc == 0 && gb) bias_grad(w, gy, gb);
    return rc;
}
