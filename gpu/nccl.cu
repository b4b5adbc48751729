/* nccl.cu - NCCL communicators for a data-parallel job's GPUs: the device
 * side of dist/nccl.c's group.
 *
 * One communicator per process (one rank per GPU), made from a unique id
 * that rank 0 creates and the job's MPI group broadcasts (as llm.c does).
 * The all-reduce runs on the legacy default stream, where every kernel of
 * the backend runs, so it is ordered after the kernels that wrote the
 * gradients and before those that read the sums, and the host does not
 * wait for it.
 */
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <cstring>

#include "gpu/gpu.h"
#include "gpu/kernels.h"

extern "C" {
#include "core/error.h"
}

static_assert(sizeof(ncclUniqueId) <= GPU_NCCL_ID_BYTES, "GPU_NCCL_ID_BYTES holds an ncclUniqueId");

static int nccl_failed(ncclResult_t r, const char *what) {
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

extern "C" void *gpu_nccl_comm_init(int device, int rank, int world,
                                    const unsigned char id[GPU_NCCL_ID_BYTES]) {
    gpu_use_device(device);
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclComm_t comm = nullptr;
    ncclResult_t r = ncclCommInitRank(&comm, world, u, rank);
    if (r != ncclSuccess) {
        nccl_failed(r, "ncclCommInitRank");
        return nullptr;
    }
    return comm;
}

extern "C" int gpu_nccl_all_reduce(void *comm, int device, void *buf, int64_t count, int dtype) {
    gpu_use_device(device);
    ncclDataType_t type = dtype == GPU_F64 ? ncclFloat64 : ncclFloat32;
    ncclResult_t r = ncclAllReduce(buf, buf, (size_t)count, type, ncclSum, (ncclComm_t)comm,
                                   cudaStreamLegacy);
    return r == ncclSuccess ? 0 : nccl_failed(r, "ncclAllReduce");
}

extern "C" void gpu_nccl_comm_destroy(void *comm) {
    if (comm) ncclCommDestroy((ncclComm_t)comm);
}
