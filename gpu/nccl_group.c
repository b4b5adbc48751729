/* nccl_group.c - the DistGroup of a data-parallel job on GPUs: gradients
 * are summed on the devices through NCCL (gpu/nccl.cu), the small host
 * collectives (a batch's loss and counts, broadcasts) go on through the
 * job's MPI group, which also carries NCCL's unique id from rank 0 to
 * the others. */
#include "gpu/nccl_group.h"

#include <stdlib.h>

#include "core/error.h"
#include "gpu/gpu.h"

typedef struct {
    DistGroup *mpi; /* borrowed */
    void *comm;
    int device;
} NcclImpl;

static DistGroup *host(DistGroup *g) {
    return ((NcclImpl *)g->impl)->mpi;
}

static int host_all_reduce(DistGroup *g, void *buf, int64_t count, DType dtype) {
    return host(g)->all_reduce(host(g), buf, count, dtype);
}

static int host_start(DistGroup *g, void *buf, int64_t count, DType dtype, DistRequest **req) {
    return host(g)->all_reduce_start(host(g), buf, count, dtype, req);
}

static void host_progress(DistGroup *g, DistRequest *req) {
    host(g)->progress(host(g), req);
}

static int host_wait(DistGroup *g, DistRequest *req) {
    return host(g)->wait(host(g), req);
}

static int host_broadcast(DistGroup *g, void *buf, int64_t bytes, int root) {
    return host(g)->broadcast(host(g), buf, bytes, root);
}

static void host_abort(DistGroup *g, int code) {
    host(g)->abort(host(g), code);
}

static int device_all_reduce(DistGroup *g, void *buf, int64_t count, DType dtype, Device device) {
    NcclImpl *i = g->impl;
    if (device.type != DEVICE_CUDA || device.index != i->device)
        return error_set("NCCL all-reduce: the buffer is on cuda:%d's group but not there",
                         i->device);
    if (dtype != DTYPE_FLOAT32 && dtype != DTYPE_FLOAT64)
        return error_set("NCCL all-reduce of %s is not supported", dtype_name(dtype));
    return gpu_nccl_all_reduce(i->comm, i->device, buf, count, dtype == DTYPE_FLOAT64 ? 1 : 0);
}

static int device_join(DistGroup *g, Device device, bool wait) {
    NcclImpl *i = g->impl;
    (void)device; /* the group's one GPU, checked when each all-reduce started */
    return gpu_nccl_join(i->comm, i->device, wait);
}

static int device_mark(DistGroup *g, Device device) {
    NcclImpl *i = g->impl;
    (void)device;
    return gpu_nccl_mark(i->comm, i->device);
}

static int device_watch(DistGroup *g, Device device, int mark) {
    NcclImpl *i = g->impl;
    (void)device;
    return gpu_nccl_watch(i->comm, i->device, mark);
}

DistGroup *gpu_nccl_group(DistGroup *mpi, int device) {
    /* rank 0's unique id, then a byte that says whether it made one: every
     * rank takes part in the broadcast, rank 0's failure included, so that
     * no peer waits in it for a rank that has given up */
    unsigned char id[GPU_NCCL_ID_BYTES + 1] = {0};
    if (mpi->rank == 0) id[GPU_NCCL_ID_BYTES] = gpu_nccl_unique_id(id) == 0;
    if (mpi->broadcast(mpi, id, sizeof id, 0) != 0) return NULL;
    if (!id[GPU_NCCL_ID_BYTES])
        return mpi->rank == 0 ? NULL : (error_set("rank 0 could not make NCCL's unique id"), NULL);
    NcclImpl *impl = calloc(1, sizeof *impl);
    DistGroup *g = calloc(1, sizeof *g);
    if (!impl || !g) {
        free(impl), free(g);
        return error_set("out of memory"), NULL;
    }
    if (!(impl->comm = gpu_nccl_comm_init(device, mpi->rank, mpi->world, id))) {
        free(impl), free(g);
        return NULL;
    }
    impl->mpi = mpi;
    impl->device = device;
    *g = (DistGroup){.backend = "nccl",
                     .rank = mpi->rank,
                     .world = mpi->world,
                     .all_reduce = host_all_reduce,
                     .all_reduce_start = host_start,
                     .progress = host_progress,
                     .wait = host_wait,
                     .all_reduce_device = device_all_reduce,
                     .join_device = device_join,
                     .mark_device = device_mark,
                     .watch_device = device_watch,
                     .broadcast = host_broadcast,
                     .abort = host_abort,
                     .impl = impl,
                     .always = mpi->always};
    return g;
}

void gpu_nccl_group_free(DistGroup *g, bool failed) {
    if (!g) return;
    NcclImpl *i = g->impl;
    gpu_nccl_comm_destroy(i->comm, failed);
    free(i);
    free(g);
}
