/* mpi.h - the DistGroup of a job launched as N ranks by `mpirun -np N` or
 * `srun --mpi=pmix`: Open MPI's MPI_COMM_WORLD. */
#ifndef TRAIND_DIST_MPI_H
#define TRAIND_DIST_MPI_H

#include "core/dist/group.h"

/* Whether a launcher started this process as one rank of several: Open
 * MPI's mpirun (OMPI_COMM_WORLD_SIZE), or Slurm's srun with a PMIx or PMI-2
 * plugin (PMIX_RANK, PMI_RANK). srun without one runs N copies that cannot
 * find each other: -1 with an error saying so. 1 launched, 0 not. */
int dist_mpi_launched(void);

/* MPI_Init and the world's group; NULL with an error. */
DistGroup *dist_mpi_open(void);
/* MPI_Finalize; the group is freed. */
void dist_mpi_close(DistGroup *g);

#endif
