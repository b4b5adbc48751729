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
 */
#include <cuda_runtime.h>

#include <new>

#include "gpu/gpu.h"
#include "gpu/kernels.h"
#include "gpu/stream.h"

namespace {

struct Graph {
    int device;
    cudaGraphExec_t exec;
    void *pool;
};

thread_local cudaStream_t capture_stream;
thread_local void *capture_pool;
thread_local int capture_device = -1;

/* The capture's stream and pool released, the thread back on stream 0,
 * CUDA's own last error of a failed capture cleared (the sticky one says
 * it), so that the next launch's check does not report it again. */
void capture_reset() {
    (void)cudaGetLastError();
    gpu_stream_set(cudaStreamLegacy);
    gpu_allocator_capture_end();
    if (capture_stream) (void)cudaStreamDestroy(capture_stream);
    capture_stream = NULL;
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
    cudaError_t e = cudaStreamCreateWithFlags(&capture_stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        capture_stream = NULL;
        gpu_record((int)e, "cudaStreamCreateWithFlags (capture)");
        return -1;
    }
    capture_pool = gpu_allocator_capture_begin(device);
    if (!capture_pool) {
        capture_reset();
        gpu_record_msg("out of host memory", "graph capture");
        return -1;
    }
    e = cudaStreamBeginCapture(capture_stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        capture_reset();
        gpu_allocator_pool_release(capture_pool);
        gpu_record((int)e, "cudaStreamBeginCapture");
        return -1;
    }
    capture_device = device;
    gpu_stream_set(capture_stream);
    return 0;
}

/* The capture ended, its graph instantiated; NULL with the sticky error. */
extern "C" void *gpu_graph_capture_end(int device) {
    if (capture_device != device) {
        gpu_record_msg("no capture under way on this device", "graph capture end");
        return NULL;
    }
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture(capture_stream, &graph);
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
    g->device = device;
    g->exec = exec;
    g->pool = pool;
    return g;
}

extern "C" int gpu_graph_launch(void *graph) {
    Graph *g = (Graph *)graph;
    gpu_use_device(g->device);
    gpu_record((int)cudaGraphLaunch(g->exec, cudaStreamLegacy), "cudaGraphLaunch");
    return gpu_last_error() ? -1 : 0;
}

extern "C" void gpu_graph_free(void *graph) {
    Graph *g = (Graph *)graph;
    if (!g) return;
    gpu_use_device(g->device);
    /* an executable graph is destroyed once no replay of it runs */
    gpu_record((int)cudaStreamSynchronize(cudaStreamLegacy), "cudaStreamSynchronize (graph free)");
    (void)cudaGraphExecDestroy(g->exec);
    gpu_allocator_pool_release(g->pool);
    delete g;
}
