/* test_job_rank.c - job/rank: the device a launched rank trains on, and
 * its place on its node. Two stand-in GPUs (the CPU's kernel table
 * registered as cuda:0 and cuda:1), a group of 4 ranks of which this
 * process is rank 3, and the launchers' variables set as each sets them:
 *   - the local rank: Open MPI's OMPI_COMM_WORLD_LOCAL_RANK over Slurm's
 *     SLURM_LOCALID (mpirun inside an sbatch script inherits the batch
 *     step's, 0 for every rank), else the rank in the group;
 *   - --device cuda:0,cuda:1 (the daemon's list for a job of several
 *     GPUs): the local rank's entry; none for it is an error naming it;
 *   - the spec's "devices": the same, from the spec;
 *   - "device": "cuda" (or "gpus"), and "auto" on a node with GPUs: the
 *     local rank's GPU among the node's, round robin; "cpu" stays, and a
 *     GPU --device names (cuda:1);
 *   - no launcher: the spec's device as written. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/spec.h"
#include "job/rank.h"
#include "tests/support/placed_spec.h"

static DistGroup rank3 = {.backend = "test", .rank = 3, .world = 4};

static void clear_launchers(void) {
    unsetenv("SLURM_LOCALID");
    unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
}

static Device device_of(const DistGroup *g, const char *placement, const char *arg) {
    JobSpec *s = placed_spec(placement);
    Device d;
    cr_assert_eq(job_rank_device(g, s, arg, &d), 0, "%s %s: %s", placement, arg ? arg : "",
                 error_get());
    job_spec_free(s);
    return d;
}

static void assert_device(Device d, DeviceType type, int index, const char *what) {
    cr_assert(d.type == type && (type == DEVICE_CPU || d.index == index), "%s: got %s:%d", what,
              d.type == DEVICE_CPU ? "cpu" : "cuda", d.index);
}

Test(job_rank, local_rank_from_open_mpi_then_slurm_then_the_group) {
    clear_launchers();
    cr_assert_eq(job_rank_local(&rank3), 3);
    cr_assert_eq(job_rank_local(NULL), 0);
    setenv("SLURM_LOCALID", "2", 1);
    cr_assert_eq(job_rank_local(&rank3), 2, "srun's");
    setenv("SLURM_LOCALID", "0", 1); /* the batch step's, under mpirun in sbatch */
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    cr_assert_eq(job_rank_local(&rank3), 1, "mpirun's over the batch step's");
    /* garbage is not rank 0, nor -1 an index */
    const char *bad[] = {"", "x", "1x", "-1", "99999999999"};
    for (int i = 0; i < 5; i++) {
        setenv("OMPI_COMM_WORLD_LOCAL_RANK", bad[i], 1);
        cr_assert_eq(job_rank_local(&rank3), -1, "'%s'", bad[i]);
        cr_assert(strstr(error_get(), "OMPI_COMM_WORLD_LOCAL_RANK: expected a local rank"), "%s",
                  error_get());
    }
}

Test(job_rank, a_device_list_gives_the_local_ranks_entry) {
    backend_register_cuda(&cpu_backend, 2);
    clear_launchers();
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    assert_device(device_of(&rank3, ", \"gpus\": 2", "cuda:1,cuda:0"), DEVICE_CUDA, 0,
                  "--device cuda:1,cuda:0 at local rank 1");
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0", 1);
    assert_device(device_of(&rank3, ", \"gpus\": 2", "cuda:1,cuda:0"), DEVICE_CUDA, 1,
                  "at local rank 0");
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "2", 1);
    JobSpec *s = placed_spec(", \"gpus\": 2");
    Device d;
    cr_assert_eq(job_rank_device(&rank3, s, "cuda:1,cuda:0", &d), -1);
    cr_assert(strstr(error_get(), "--device, local rank 2"), "%s", error_get());
    job_spec_free(s);
}

Test(job_rank, the_specs_devices_give_the_local_ranks_entry) {
    backend_register_cuda(&cpu_backend, 2);
    clear_launchers();
    setenv("SLURM_LOCALID", "1", 1);
    assert_device(device_of(&rank3, ", \"devices\": [\"cuda:1\", \"cuda:0\"]", NULL), DEVICE_CUDA,
                  0, "devices[1]");
    setenv("SLURM_LOCALID", "2", 1);
    JobSpec *s = placed_spec(", \"devices\": [\"cuda:1\", \"cuda:0\"]");
    Device d;
    cr_assert_eq(job_rank_device(&rank3, s, NULL, &d), -1);
    cr_assert_str_eq(error_get(), "devices: 2 GPUs listed, none for local rank 2");
    job_spec_free(s);
}

Test(job_rank, cuda_and_auto_take_the_local_ranks_gpu) {
    backend_register_cuda(&cpu_backend, 2);
    clear_launchers();
    setenv("SLURM_LOCALID", "3", 1);
    assert_device(device_of(&rank3, ", \"device\": \"cuda\", \"ranks\": 4", NULL), DEVICE_CUDA, 1,
                  "cuda, local rank 3 of a node of 2 GPUs");
    assert_device(device_of(&rank3, "", NULL), DEVICE_CUDA, 1, "auto on a node with GPUs");
    assert_device(device_of(&rank3, ", \"device\": \"cpu\"", NULL), DEVICE_CPU, 0, "cpu");
    assert_device(device_of(&rank3, "", "cpu"), DEVICE_CPU, 0, "--device cpu");
    assert_device(device_of(&rank3, "", "cuda"), DEVICE_CUDA, 1, "--device cuda");
    assert_device(device_of(&rank3, "", "cuda:0"), DEVICE_CUDA, 0, "--device cuda:0, as named");
    setenv("SLURM_LOCALID", "0", 1);
    assert_device(device_of(&rank3, "", "cuda:1"), DEVICE_CUDA, 1, "--device cuda:1, as named");
}

Test(job_rank, auto_without_gpus_and_without_a_launcher) {
    clear_launchers();
    assert_device(device_of(&rank3, "", NULL), DEVICE_CPU, 0, "auto on a node without GPUs");
    backend_register_cuda(&cpu_backend, 2);
    assert_device(device_of(NULL, "", NULL), DEVICE_CPU, 0, "auto in one process: as written");
    assert_device(device_of(NULL, ", \"device\": \"cuda:1\"", NULL), DEVICE_CUDA, 1,
                  "cuda:1 in one process");
}
