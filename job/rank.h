/* rank.h - what a process launched as one rank of a job (mpirun, srun)
 * trains with: its group and its device.
 *
 * The group is Open MPI's world (dist/mpi.h); on GPUs it becomes the NCCL
 * group (gpu/nccl_group.h), one GPU per rank: a rank on CUDA takes the GPU
 * of its local rank on the node (SLURM_LOCALID, or Open MPI's local rank)
 * among the node's GPUs, and a job on "auto" under a launcher takes GPUs
 * when the node has them. TRAIND_DIST_ONE_RANK=1 makes a world of one run
 * every collective anyway: the whole path checked on one device.
 */
#ifndef TRAIND_JOB_RANK_H
#define TRAIND_JOB_RANK_H

#include "core/dist/group.h"
#include "core/spec.h"

/* This process's group: NULL (and 0) when no launcher started it, -1 with
 * an error when the launch is broken (srun without an MPI plugin). */
int job_rank_open(DistGroup **group);

/* The rank's place on its node: Open MPI's (OMPI_COMM_WORLD_LOCAL_RANK),
 * Slurm's (SLURM_LOCALID), else its rank in g (0 for NULL); -1 with an
 * error when the launcher's variable is not a whole number, 0 or more. */
int job_rank_local(const DistGroup *g);

/* The device a rank trains on: `arg` (--device, may be NULL) or the
 * spec's, spread over the node's GPUs by local rank under a launcher (not
 * a GPU --device names: --device cuda:1 is cuda:1); from
 * a list (--device cuda:0,cuda:2, as the daemon gives a job's GPUs, or the
 * spec's "devices"), the local rank's entry. -1 with an error for a bad
 * --device or a list without an entry for this rank. */
int job_rank_device(const DistGroup *group, const JobSpec *spec, const char *arg, Device *out);

/* The group to train with on `device` into *out: NCCL's for a GPU (a new
 * group over mpi, *made set), else mpi itself (NULL in one process). 0, or
 * -1 with an error. */
int job_rank_train_group(DistGroup *mpi, Device device, DistGroup **out, bool *made);
/* Frees train (when made) and mpi; `failed`: this rank stopped on an error
 * its peers may not share, so NCCL's communicator is aborted rather than
 * waited for (its peers may wait in a collective this rank never joins;
 * the caller then aborts the job, MPI_Abort). */
void job_rank_close(DistGroup *mpi, DistGroup *train, bool made, bool failed);

#endif
