/* nccl.cu - NCCL communicators for a data-parallel job's GPUs: the device
 * side of gpu/nccl_group.c's group.
 *
 * One communicator per process (one rank per GPU), made from a unique id
 * that rank 0 creates and the job's MPI group broadcasts (as llm.c does).
 * Every kernel of the backend runs on the thread's stream (gpu_stream():
 * the legacy default stream, or a capture's); the all-reduces run on a
 * stream of their own (non-blocking, so the legacy stream does not
 * serialise with it), each ordered after the thread's stream's work so
 * far by an event, so a gradient bucket is summed while the backward pass
 * goes on computing the next. gpu_nccl_join orders the thread's stream's
 * later work after them all, as DDP's reducer waits on its communication
 * stream before the optimizer reads the gradients. In a CUDA graph's
 * capture the same events fork the all-reduces' stream from the capture
 * and join it back, so the graph holds them (NCCL's collectives may be
 * captured).
 */
#include <cuda_runtime.h>
#include <nccl.h>

#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "gpu/gpu.h"
#include "gpu/kernels.h"
#include "gpu/stream.h"

extern "C" {
#include "core/clock.h"
#include "core/error.h"
}

static_assert(sizeof(ncclUniqueId) <= GPU_NCCL_ID_BYTES, "GPU_NCCL_ID_BYTES holds an ncclUniqueId");

/* NCCL's own account of the failure, when it gives one (its last error,
 * the process's: the argument is unused) */
static int nccl_failed(ncclResult_t r, const char *what) {
    const char *why = ncclGetLastError(NULL);
    if (why && *why) return error_set("NCCL %s: %s (%s)", what, ncclGetErrorString(r), why);
    return error_set("NCCL %s: %s", what, ncclGetErrorString(r));
}

extern "C" int gpu_nccl_unique_id(unsigned char id[GPU_NCCL_ID_BYTES]) {
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) return nccl_failed(r, "ncclGetUniqueId");
    memset(id, 0, GPU_NCCL_ID_BYTES);
    memcpy(id, &u, sizeof u);
    return 0;
}

/* Marks in flight at once: a graph's steps whose numbers are not read
 * yet (core/train_graph.c's 2), the one being watched, and a join's. */
#define MARKS 4

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream; /* the all-reduces' */
    cudaEvent_t ready;   /* the thread's stream's work before an all-reduce */
    cudaEvent_t done;    /* the all-reduces' end, for gpu_nccl_join */
    cudaEvent_t marks[MARKS]; /* points of the thread's stream the watchdog waits for */
    int next_mark;
} NcclComm;

static int cuda_failed(cudaError_t e, const char *what) {
    return error_set("NCCL's stream: %s: %s", what, cudaGetErrorString(e));
}

/* cuda:device the thread's device (gpu_use_device only records a failure
 * in the backend's sticky error): 0, or -1 with an error. */
static int use_device(int device) {
    gpu_use_device(device);
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != device)
        return error_set("NCCL: cuda:%d could not be made the thread's device", device);
    return 0;
}

/* ncclCommAbort, after the thread's graphs are let go of: NCCL 2.26 and
 * later wait until no graph holds the communicator (gpu_graph_abandon_all),
 * and a replay stuck in a collective ends once the abort has begun. */
static void abort_after_graphs(ncclComm_t comm) {
    gpu_graph_abandon_all();
    ncclCommAbort(comm);
}

static void comm_free(NcclComm *c, bool failed) {
    if (c->comm && failed) abort_after_graphs(c->comm);
    else if (c->comm) ncclCommDestroy(c->comm);
    if (c->stream) cudaStreamDestroy(c->stream);
    if (c->ready) cudaEventDestroy(c->ready);
    if (c->done) cudaEventDestroy(c->done);
    for (int i = 0; i < MARKS; i++)
        if (c->marks[i]) cudaEventDestroy(c->marks[i]);
    delete c;
}

extern "C" void *gpu_nccl_comm_init(int device, int rank, int world,
                                    const unsigned char id[GPU_NCCL_ID_BYTES]) {
    if (use_device(device) != 0) return nullptr;
    NcclComm *c = new (std::nothrow) NcclComm();
    if (!c) return error_set("out of memory"), nullptr;
    cudaError_t e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming);
    for (int i = 0; i < MARKS && e == cudaSuccess; i++)
        e = cudaEventCreateWithFlags(&c->marks[i], cudaEventDisableTiming);
    if (e != cudaSuccess) {
        cuda_failed(e, "creating the stream and its events");
        comm_free(c, true);
        return nullptr;
    }
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclResult_t r = ncclCommInitRank(&c->comm, world, u, rank);
    if (r != ncclSuccess) {
        nccl_failed(r, "ncclCommInitRank");
        c->comm = nullptr;
        comm_free(c, true);
        return nullptr;
    }
    return c;
}

extern "C" int gpu_nccl_all_reduce(void *comm, int device, void *buf, int64_t count, int dtype) {
    NcclComm *c = (NcclComm *)comm;
    if (use_device(device) != 0) return -1;
    if (!c->comm) return error_set("NCCL: the communicator was aborted after a failure");
    cudaError_t e = cudaEventRecord(c->ready, gpu_stream());
    if (e == cudaSuccess) e = cudaStreamWaitEvent(c->stream, c->ready, 0);
    if (e != cudaSuccess) return cuda_failed(e, "ordering the all-reduce after the gradients");
    ncclDataType_t type = dtype == GPU_F64 ? ncclFloat64 : ncclFloat32;
    ncclResult_t r = ncclAllReduce(buf, buf, (size_t)count, type, ncclSum, c->comm, c->stream);
    return r == ncclSuccess ? 0 : nccl_failed(r, "ncclAllReduce");
}

/* TRAIND_NCCL_TIMEOUT_S: how long a step's all-reduces may take (600 s
 * by default, torch's ProcessGroupNCCL's 10 minutes). */
static double timeout_s(void) {
    const char *v = getenv("TRAIND_NCCL_TIMEOUT_S");
    double t = v ? atof(v) : 0;
    return t > 0 ? t : 600;
}

/* The watchdog's failure (its error already set): c's communicator
 * aborted at once, as torch's watchdog does, so that the collectives
 * still waiting for a peer end and the device's stream goes on: whoever
 * else waits for it (the batch loader's upload, the trainer's cleanup)
 * is not left waiting for ever. -1. */
static int abort_comm(NcclComm *c) {
    if (c->comm) abort_after_graphs(c->comm);
    c->comm = nullptr;
    return -1;
}

/* Waits for the work of the thread's stream before `mark` (the
 * all-reduces joined by then, a replayed graph's among them) as a
 * watchdog: an error NCCL found on its own (a peer's process gone, the
 * network) or a step past the timeout (a peer stuck) fails the step with
 * a message and aborts the communicator, instead of the host blocking for
 * ever in its next read of the sums. The caller's failure then ends the
 * job (MPI_Abort). */
static int watch(NcclComm *c, cudaEvent_t mark) {
    double start = clock_now_s(), limit = timeout_s();
    if (!c->comm) return error_set("NCCL: the communicator was aborted after a failure");
    for (;;) {
        cudaError_t e = cudaEventQuery(mark);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) return cuda_failed(e, "waiting for the all-reduces");
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(c->comm, &async);
        if (r != ncclSuccess) return nccl_failed(r, "ncclCommGetAsyncError");
        if (async != ncclSuccess && async != ncclInProgress) {
            error_set("NCCL: an all-reduce failed: %s (%s)", ncclGetErrorString(async),
                      ncclGetLastError(c->comm));
            return abort_comm(c);
        }
        if (clock_now_s() - start > limit) {
            error_set("NCCL: the step's all-reduces did not finish in %.0f s "
                      "(TRAIND_NCCL_TIMEOUT_S): a rank stopped or is stuck",
                      limit);
            return abort_comm(c);
        }
        struct timespec pause = {0, 20000}; /* 20 us */
        nanosleep(&pause, NULL);
    }
}

extern "C" int gpu_nccl_mark(void *comm, int device) {
    NcclComm *c = (NcclComm *)comm;
    if (use_device(device) != 0) return -1;
    int mark = c->next_mark;
    cudaError_t e = cudaEventRecord(c->marks[mark], gpu_stream());
    if (e != cudaSuccess) return cuda_failed(e, "marking the stream for the watchdog");
    c->next_mark = (mark + 1) % MARKS;
    return mark;
}

extern "C" int gpu_nccl_watch(void *comm, int device, int mark) {
    NcclComm *c = (NcclComm *)comm;
    if (use_device(device) != 0) return -1;
    if (mark < 0 || mark >= MARKS) return error_set("NCCL: no mark %d", mark);
    return watch(c, c->marks[mark]);
}

extern "C" int gpu_nccl_join(void *comm, int device, bool wait) {
    NcclComm *c = (NcclComm *)comm;
    if (use_device(device) != 0) return -1;
    cudaError_t e = cudaEventRecord(c->done, c->stream);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(gpu_stream(), c->done, 0);
    if (e != cudaSuccess) return cuda_failed(e, "ordering the sums' readers after the all-reduces");
    if (!wait) return 0;
    int mark = gpu_nccl_mark(comm, device);
    return mark < 0 ? -1 : gpu_nccl_watch(comm, device, mark);
}

extern "C" void gpu_nccl_comm_destroy(void *comm, bool failed) {
    if (!comm) return;
    NcclComm *c = (NcclComm *)comm;
    if (!failed) cudaStreamSynchronize(c->stream);
    comm_free(c, failed);
}
