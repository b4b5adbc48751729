/* nccl_group.h - a DistGroup over NCCL for a job whose ranks train on GPUs
 * (one GPU each), built on the job's MPI group. Only in CUDA builds. */
#ifndef TRAIND_GPU_NCCL_GROUP_H
#define TRAIND_GPU_NCCL_GROUP_H

#include "core/dist/group.h"

/* The group of this rank on cuda:device; mpi is borrowed and must outlive
 * it. Collective: every rank of mpi calls it. NULL with an error. */
DistGroup *gpu_nccl_group(DistGroup *mpi, int device);
/* Frees g; `failed`: this rank stopped on an error its peers may not
 * share, so its communicator is aborted (gpu_nccl_comm_destroy). */
void gpu_nccl_group_free(DistGroup *g, bool failed);

#endif
