/* stream.h - the stream this thread's kernels, copies and library calls
 * are queued on.
 *
 * That is the legacy default stream (cudaStreamLegacy) at all times but one: while the
 * thread captures a CUDA graph (graph.cu), it is the capture's own stream,
 * since the legacy stream cannot be captured. Every launcher passes
 * gpu_stream() and sets it on the cuBLAS, cuBLASLt and cuDNN calls it
 * makes, so a training step captures whole; outside a capture nothing
 * changes (one stream, the ordering the allocator relies on).
 */
#ifndef TRAIND_GPU_STREAM_H
#define TRAIND_GPU_STREAM_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

cudaStream_t gpu_stream(void);
/* graph.cu's: the capture's stream, then 0 again */
void gpu_stream_set(cudaStream_t stream);
/* Set-up that allocates (a library's handle, a workspace, a block) may
 * first come inside a capture, whose thread-local mode refuses it and is
 * spoilt by the refusal: between gpu_capture_relax and
 * gpu_capture_restore(the mode it returned) the thread is not checked. */
enum cudaStreamCaptureMode gpu_capture_relax(void);
void gpu_capture_restore(enum cudaStreamCaptureMode mode);

#ifdef __cplusplus
}
#endif

#endif
