/* rank.c - a launched rank's group and device; see rank.h. */
#include "job/rank.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "dist/mpi.h"
#ifdef TRAIND_CUDA
#include "gpu/nccl_group.h"
#endif

int job_rank_open(DistGroup **group) {
    *group = NULL;
    int launched = dist_mpi_launched();
    if (launched <= 0) return launched;
    if (!(*group = dist_mpi_open())) return -1;
    const char *one = getenv("TRAIND_DIST_ONE_RANK");
    (*group)->always = one && strcmp(one, "1") == 0;
    return 0;
}

int job_rank_local(const DistGroup *g) {
    /* Open MPI's first: mpirun inside an sbatch script leaves every rank
     * the batch step's SLURM_LOCALID, 0 */
    const char *name = "OMPI_COMM_WORLD_LOCAL_RANK", *v = getenv(name);
    if (!v) v = getenv(name = "SLURM_LOCALID");
    if (!v) return dist_rank(g);
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    /* garbage read as 0, or -1, would pick another rank's GPU */
    if (!*v || *end || errno || n < 0 || n > INT_MAX)
        return error_set("%s: expected a local rank (a whole number, 0 or more), got '%.32s'",
                         name, v);
    return (int)n;
}

int job_rank_device(const DistGroup *group, const JobSpec *spec, const char *arg, Device *out) {
    *out = DEVICE_CPU_INIT;
    int local = group ? job_rank_local(group) : 0;
    if (local < 0) return -1;
    if (arg && strchr(arg, ','))
        return device_list_get(arg, local, out) == 0 ? 0 : error_prefix("--device, local rank %d",
                                                                          local);
    if (arg && device_parse(arg, out) != 0) return -1;
    if (!arg && spec->num_devices) {
        if (local >= spec->num_devices)
            return error_set("devices: %d GPUs listed, none for local rank %d",
                             spec->num_devices, local);
        *out = spec->devices[local];
        return 0;
    }
    if (!arg && !spec->device_auto) *out = spec->device;
    int gpus = backend_cuda_device_count();
    if (!group || gpus == 0) return 0;
    bool auto_gpu = !arg && spec->device_auto;
    bool named = arg && strchr(arg, ':'); /* --device cuda:1: that GPU, as asked */
    if ((out->type == DEVICE_CUDA && !named) || auto_gpu)
        *out = (Device){.type = DEVICE_CUDA, .index = local % gpus};
    return 0;
}

int job_rank_train_group(DistGroup *mpi, Device device, DistGroup **out, bool *made) {
    *made = false;
    *out = mpi;
    if (!dist_active(mpi) || device.type != DEVICE_CUDA) return 0;
#ifdef TRAIND_CUDA
    if (!(*out = gpu_nccl_group(mpi, device.index))) return -1;
    *made = true;
#endif
    return 0; /* a build without CUDA has no such device either */
}

void job_rank_close(DistGroup *mpi, DistGroup *train, bool made, bool failed) {
#ifdef TRAIND_CUDA
    if (made) gpu_nccl_group_free(train, failed);
#else
    (void)train, (void)made, (void)failed;
#endif
    dist_mpi_close(mpi);
}
