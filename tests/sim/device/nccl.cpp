/* nccl.cpp - NCCL on the simulated device: communicators of one rank (one
 * process, one device), whose all-reduce of a rank's buffer is the buffer
 * itself, queued on the caller's stream so that it orders as NCCL's.
 */
#include <nccl.h>
#include <string.h>

#include "tests/sim/device/device.h"

struct SimNccl {
    int ranks;
};

const char *ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "internal error";
    }
}

const char *ncclGetLastError(ncclComm_t comm) {
    (void)comm;
    return "";
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    memset(id, 0, sizeof *id);
    memcpy(id->internal, "simulated", 9);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    *comm = nullptr;
    if (memcmp(id.internal, "simulated", 9) != 0) return ncclInvalidArgument;
    if (nranks != 1 || rank != 0) return ncclInvalidUsage; /* one process, one device */
    *comm = simdev_keep(new SimNccl{nranks});
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    simdev_drop(comm);
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async) {
    *async = comm ? ncclSuccess : ncclInvalidArgument;
    return comm ? ncclSuccess : ncclInvalidArgument;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    size_t bytes = count * (type == ncclFloat64 ? 8 : 4);
    if (!comm || op != ncclSum || !simdev_on_device(send, bytes) || !simdev_on_device(recv, bytes))
        return ncclInvalidArgument;
    cudaError_t e = simdev_enqueue(stream, [=] {
        if (send != recv) memmove(recv, send, bytes);
    });
    return e == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}
