/* gpu.h - the CUDA backend's C interface for the rest of traind.
 *
 * gpu_init() counts the CUDA devices and, when there is at least one,
 * registers the kernel table (gpu/backend.c) with backend_register_cuda(),
 * so that backend_for((Device){DEVICE_CUDA, i}) works from then on.
 * server/main.c calls it at start-up under #ifdef TRAIND_CUDA; core/ never
 * includes this header.
 *
 * Errors. Kernels of the Backend table return void and run asynchronously,
 * so a failed launch or a failed kernel cannot be returned where it
 * happened. gpu/ keeps a sticky, thread-local error instead: the first
 * CUDA or cuBLAS failure on a thread is recorded ("cuda: <what> at
 * <where>") and kept until read. The backend's to_host (the one point
 * where the host waits for the device: tensor_item, tensor_to_device to
 * the CPU, the trainer's metrics) reports it through error_set() and
 * returns -1, so the op that reads a result fails with the message. Tests
 * and callers can also poll gpu_last_error().
 */
#ifndef TRAIND_GPU_GPU_H
#define TRAIND_GPU_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices (0 when none or no driver); registers the CUDA
 * backend when > 0. Safe to call more than once. */
int gpu_init(void);

/* Name and memory of device `index`; -1 with an error when out of range. */
int gpu_device_info(int index, char *name, size_t n, size_t *mem_total, size_t *mem_free);

/* The first CUDA failure recorded on this thread, or NULL; and forget it. */
const char *gpu_last_error(void);
void gpu_clear_error(void);

/* TF32 tensor cores for the calling thread's float32 GEMMs (cuBLAS); off
 * unless its job asks ("allow_tf32"). */
void gpu_set_tf32(bool enabled);
/* What the calling thread last set (cuDNN's convolutions follow it too). */
bool gpu_tf32_enabled(void);

/* The job's "precision": "bf16" for the calling thread's float32 GEMMs:
 * cuBLAS rounds the inputs to bf16 and runs bf16 tensor cores with
 * float32 accumulation and float32 results (CUBLAS_COMPUTE_32F_FAST_16BF),
 * the contract core/backend.h's Precision gives. gpu_bf16 reads it back. */
void gpu_set_bf16(bool enabled);
bool gpu_bf16(void);

/* Compute capability of device `index` as major * 10 + minor (90 on an
 * H100/H200); -1 with an error when it cannot be read. */
int gpu_compute_capability(int index);

/* Caching allocator statistics for `device`: bytes handed out now, bytes
 * cached (freed, kept for reuse), the high-water mark of bytes handed out,
 * and how many times cudaMalloc was called. Any pointer may be NULL. */
void gpu_allocator_stats(int device, size_t *in_use, size_t *cached, size_t *peak,
                         uint64_t *cuda_mallocs);
/* Starts the high-water mark over from the bytes in use now (a new job). */
void gpu_allocator_reset_peak(int device);
/* Returns every cached block of `device` to CUDA (between jobs, on OOM). */
void gpu_allocator_trim(int device);

/* Page-locked host buffers (pinned.cu), cached: NULL when memory cannot be
 * pinned. Stats: bytes handed out now and bytes kept for reuse. */
/* NCCL (nccl.cu) for dist/nccl.c: rank 0 makes the unique id, the job's
 * MPI group broadcasts it, every rank makes its communicator on its GPU.
 * dtype: 0 float32, 1 float64 (kernels.h's GPU_F32, GPU_F64). -1 / NULL
 * with an error. */
#define GPU_NCCL_ID_BYTES 128
int gpu_nccl_unique_id(unsigned char id[GPU_NCCL_ID_BYTES]);
void *gpu_nccl_comm_init(int device, int rank, int world, const unsigned char id[GPU_NCCL_ID_BYTES]);
/* buf[0..count) summed over the ranks in place, on the communicator's
 * stream after the thread's stream's work so far (a capture records it);
 * gpu_nccl_join makes the thread's stream's later work wait for every
 * all-reduce started, and with `wait` (not in a capture) waits on the host
 * for them and the stream's work before, as a watchdog: NCCL's
 * asynchronous error, or TRAIND_NCCL_TIMEOUT_S (600 s) passing, fails it
 * with a message. */
int gpu_nccl_all_reduce(void *comm, int device, void *buf, int64_t count, int dtype);
int gpu_nccl_join(void *comm, int device, bool wait);
/* A point of the thread's stream (a number, or -1 with an error), and the
 * watchdog's wait for the work before it, as join's: so a graph's step is
 * watched alone while the next one is queued. The last 4 marks can be
 * waited for. The watchdog's failure aborts the communicator at once (its
 * collectives waiting for a peer end), the thread's graphs let go of
 * first; later all-reduces fail. */
int gpu_nccl_mark(void *comm, int device);
int gpu_nccl_watch(void *comm, int device, int mark);
/* Frees comm: after its all-reduces finish, or, `failed` (this rank
 * stopped while its peers may wait in a collective it will never join),
 * by ncclCommAbort, which waits for nothing once the thread's graphs are
 * let go of (gpu_graph_abandon_all). */
void gpu_nccl_comm_destroy(void *comm, bool failed);

/* CUDA graphs (graph.cu): between capture_begin and capture_end, the
 * calling thread's kernels, copies and library calls on `device` are
 * recorded, not run, and its allocations come from the graph's own pool;
 * capture_end makes the executable graph (NULL with the sticky error set
 * when the capture failed: something in it synchronised, read a result
 * back, or failed). gpu_graph_launch queues a replay on the legacy default
 * stream, after the work queued there and before the work queued later;
 * gpu_graph_free waits for the device, then frees the graph and gives its
 * pool's blocks back to the allocator, on the thread that captured it (the
 * thread's graphs are listed: gpu_graph_abandon_all). -1 / NULL with the
 * sticky error. */
int gpu_graph_capture_begin(int device);
void *gpu_graph_capture_end(int device);
int gpu_graph_launch(void *graph);
void gpu_graph_free(void *graph);
/* Every graph of the thread let go of without waiting for its replays:
 * NCCL 2.26 and later wait, in ncclCommAbort and ncclCommDestroy, until
 * no graph holds the communicator (one that captured its collectives),
 * and a replay stuck in a collective ends only once the abort began. A
 * graph let go of no longer launches; freeing it waits for nothing. */
void gpu_graph_abandon_all(void);

/* Copies of n device blocks to host memory queued on the legacy default
 * stream behind its work so far; gpu_read_end waits for them (and reports,
 * as gpu_memcpy_to_host, any failure queued before). NULL / -1 with the
 * sticky error. */
void *gpu_read_begin(int device, int n, void *const *dst, const void *const *src,
                     const size_t *nbytes);
int gpu_read_end(void *handle);

void *gpu_pinned_alloc(size_t nbytes);
void gpu_pinned_free(void *ptr);
void gpu_pinned_stats(size_t *in_use, size_t *cached);

#ifdef __cplusplus
}
#endif

#endif
