/* graph.cu - CUDA graphs of a training step (core/train_graph.c, through
 * the backend's graph entries).
 *
 * A capture runs on a stream of its own (the legacy default stream cannot
 * be captured): gpu_stream() returns it to every launcher of the thread
 * until the capture ends, in thread-local mode, so that any call of the
 * thread that would synchronise or read a result back (cudaMemcpy to the
 * host, a cuDNN algorithm search) fails the capture instead of reading a
 * value that was never computed. Other threads' work is not affected. The
 * captured kernels' memory is the graph's pool (allocator.cu). A replay
 * runs on the legacy default stream, so it is ordered with everything
 * else as the step's kernels were.
 *
 * The capture stream is the thread's for its life, not one a capture: a
 * stream destroyed and made again may come back at the same address,
 * which cuBLAS's and cuDNN's handles (set to a stream when it changes)
 * would take for the one they hold. The thread's graphs are listed, so
 * that NCCL's abort can first let go of them (gpu_graph_abandon_all).
 */
#include <cuda_runtime.h>

#include <atomic>
#include <new>

#include "gpu/gpu.h"
#include "gpu/kernels.h"
#include "gpu/stream.h"

namespace {

struct Graph {
    int device;
    cudaGraphExec_t exec; /* NULL once abandoned */
    void *pool;
    Graph *next; /* the thread's next live graph */
};

/* The thread's capture streams, one a device, each made at the thread's
 * first capture there and destroyed when the thread ends. */
struct CaptureStreams {
    cudaStream_t on[GPU_MAX_DEVICES] = {};
    ~CaptureStreams() {
        for (int d = 0; d < GPU_MAX_DEVICES; d++)
            if (on[d]) {
                (void)cudaSetDevice(d);
                (void)cudaStreamDestroy(on[d]);
            }
    }
};

thread_local CaptureStreams capture_streams;
thread_local void *capture_pool;
thread_local int capture_device = -1;
thread_local Graph *live_graphs;

/* The thread's capture stream on `device`, the current device, made at
 * its first capture there. */
cudaError_t capture_stream_on(int device, cudaStream_t *stream) {
    if (device < 0 || device >= GPU_MAX_DEVICES) return cudaErrorInvalidDevice;
    cudaStream_t &s = capture_streams.on[device];
    cudaError_t e = s ? cudaSuccess : cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (e != cudaSuccess) s = NULL;
    *stream = s;
    return e;
}

std::atomic<int> captures_underway{0};

/* The capture's pool released, the thread back on stream 0, CUDA's own
 * last error of a failed capture cleared (the sticky one says it), so
 * that the next launch's check does not report it again. */
void capture_reset() {
    if (capture_device >= 0) captures_underway.fetch_sub(1);
    (void)cudaGetLastError();
    gpu_stream_set(cudaStreamLegacy);
    gpu_allocator_capture_end();
    capture_device = -1;
}

} // namespace

extern "C" int gpu_graph_capture_begin(int device) {
    if (capture_device >= 0) {
        gpu_record_msg("a capture is already under way on this thread", "graph capture");
        return -1;
    }
    gpu_use_device(device);
    if (gpu_last_error()) return -1; /* an earlier failure: the caller's to report */
    gpu_capture_refusal_clear();
    cudaStream_t stream = NULL;
    cudaError_t e = capture_stream_on(device, &stream);
    if (e != cudaSuccess) {
        gpu_record((int)e, "cudaStreamCreateWithFlags (capture)");
        return -1;
    }
    /* counted first: a trim or an unpin starting from now on skips its
     * frees, and one already freeing holds the lock the pool and the
     * pinned cache are taken under here, so none is running once the
     * capture begins */
    captures_underway.fetch_add(1);
    capture_device = device;
    capture_pool = gpu_allocator_capture_begin(device);
    gpu_pinned_wait_frees();
    if (!capture_pool) {
        capture_reset();
        gpu_record_msg("out of host memory", "graph capture");
        return -1;
    }
    e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        capture_reset();
        gpu_allocator_pool_release(capture_pool);
        gpu_record((int)e, "cudaStreamBeginCapture");
        return -1;
    }
    gpu_stream_set(stream);
    return 0;
}

extern "C" int gpu_captures_underway(void) { return captures_underway.load(); }

/* The capture ended, its graph instantiated; NULL with the sticky error. */
extern "C" void *gpu_graph_capture_end(int device) {
    if (capture_device != device) {
        gpu_record_msg("no capture under way on this device", "graph capture end");
        return NULL;
    }
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture(capture_streams.on[device], &graph);
    void *pool = capture_pool;
    capture_reset();
    if (const char *refused = gpu_capture_refusal()) gpu_record_msg(refused, "graph capture");
    gpu_record((int)e, "cudaStreamEndCapture");
    if (e == cudaSuccess && !gpu_last_error()) {
        gpu_record((int)cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
        (void)cudaGetLastError();
    }
    gpu_capture_refusal_clear();
    if (graph) (void)cudaGraphDestroy(graph); /* the executable graph is a copy */
    Graph *g = !gpu_last_error() ? new (std::nothrow) Graph : NULL;
    if (!g) {
        if (exec) (void)cudaGraphExecDestroy(exec);
        gpu_allocator_pool_release(pool);
        gpu_record_msg("out of host memory", "graph capture end");
        return NULL;
    }
    *g = Graph{device, exec, pool, live_graphs};
    live_graphs = g;
    return g;
}

extern "C" int gpu_graph_launch(void *graph) {
    Graph *g = (Graph *)graph;
    if (!g->exec) {
        gpu_record_msg("the graph was let go of after a failure", "cudaGraphLaunch");
        return -1;
    }
    gpu_use_device(g->device);
    gpu_record((int)cudaGraphLaunch(g->exec, cudaStreamLegacy), "cudaGraphLaunch");
    return gpu_last_error() ? -1 : 0;
}

extern "C" void gpu_graph_free(void *graph) {
    Graph *g = (Graph *)graph;
    if (!g) return;
    Graph **at = &live_graphs;
    while (*at && *at != g) at = &(*at)->next;
    if (!*at) { /* another thread's: its list still holds g, so g is kept */
        gpu_record_msg("a graph freed on another thread than its capture's", "graph free");
        return;
    }
    *at = g->next;
    if (g->exec) {
        gpu_use_device(g->device);
        /* an executable graph is destroyed once no replay of it runs */
        gpu_record((int)cudaStreamSynchronize(cudaStreamLegacy),
                   "cudaStreamSynchronize (graph free)");
        (void)cudaGraphExecDestroy(g->exec);
        gpu_allocator_pool_release(g->pool);
    }
    delete g;
}

/* CUDA frees an executable graph destroyed while a replay of it runs
 * once that replay ends; its pool stays the graph's for good, since the
 * replay may still write it. */
extern "C" void gpu_graph_abandon_all(void) {
    for (Graph *g = live_graphs; g; g = g->next) {
        if (!g->exec) continue;
        gpu_use_device(g->device);
        (void)cudaGraphExecDestroy(g->exec);
        g->exec = NULL;
    }
}
