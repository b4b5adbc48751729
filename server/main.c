/* main.c - the traind command line: dispatches to the commands.
 *
 * `serve` runs the HTTP daemon (server/serve.c); `user` adds, lists,
 * revokes users and sets their quotas in its database (server/cmd_user.c).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/cpu/cpu.h"
#include "job/run_local.h"
#include "core/tensor.h"
#include "server/cmd_user.h"
#include "server/serve.h"
#include "server/version.h"
#ifdef TRAIND_CUDA
#include "gpu/gpu.h"
#endif

static void usage(FILE *out) {
    fprintf(out,
            "usage: traind <command> [options]\n"
            "\n"
            "commands:\n"
            "  version            print the version\n"
            "  info               dtypes, devices and backends of this build\n"
            "  run JOB.json [--jsonl] [--device cpu|cuda|cuda:N] [--out DIR]\n"
            "                     train one job in the foreground\n"
            "  serve [--port 8080] [--bind 127.0.0.1] [--data-dir ./var] [--workers N]\n"
            "        [--devices cpu,...]\n"
            "                     run the HTTP daemon (serve --help: all options)\n"
            "  user add|list|revoke|rotate|set-quota ... [--data-dir DIR]\n"
            "                     the daemon's users and their quotas (user --help)\n");
}

static int cmd_info(void) {
    printf("traind %s\n", TRAIND_VERSION);
    printf("dtypes: float32 float64 int64 uint8\n");
    char dnnl[160];
    printf("backends: cpu (OpenBLAS, %s kernels; %s)%s\n", cpu_blas_core(),
           cpu_dnnl_library_name(dnnl, sizeof dnnl), backend_cuda_device_count() ? ", cuda" : "");
    const char *wait = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("runtime: OMP_WAIT_POLICY=%s GOMP_SPINCOUNT=%s OPENBLAS_CORETYPE=%s\n",
           wait ? wait : "(unset)", spin ? spin : "(unset)", core ? core : "(unset)");
    printf("cuda devices: %d\n", backend_cuda_device_count());
#ifdef TRAIND_CUDA
    for (int i = 0; i < backend_cuda_device_count(); i++) {
        char name[256];
        size_t total = 0, free_ = 0;
        if (gpu_device_info(i, name, sizeof name, &total, &free_) == 0)
            printf("  cuda:%d  %s  %.1f GiB (%.1f GiB free)\n", i, name,
                   (double)total / (1 << 30), (double)free_ / (1 << 30));
    }
#else
    printf("  (built without CUDA: make GPU=0 or no nvcc)\n");
#endif
    return 0;
}

/* Settings the runtime libraries read once, before main runs; when the
 * user has not chosen them, set them and start over once:
 *   OMP_WAIT_POLICY  OpenMP threads (ours and OpenBLAS's) that wait by
 *       spinning steal the CPU from each other and from other jobs on a
 *       shared machine: measured on 2 loaded cores, the MNIST CNN trains
 *       2-3x faster with passive waiting.
 *   GOMP_SPINCOUNT  ... but waiting passively from the first instant costs
 *       a futex wake-up per parallel region, and a training step runs
 *       dozens back to back (oneDNN's and ours): a short spin first
 *       (10000 pause loops, well under a millisecond) took the MNIST CNN
 *       from ~2,800 to ~3,600 samples/s on 2 cores.
 *   OPENBLAS_CORETYPE  OpenBLAS's kernels for the CPU's instruction sets
 *       when it did not recognise the CPU (cpu_blas_better_core): a
 *       ResNet-18 step 2.3x faster on this VM's AVX-512 cores.
 * and one read later, set here while the process has one thread:
 *   NCCL_RUNTIME_CONNECT  0: NCCL makes its connections at a
 *       communicator's init, not at a collective's first use, since a
 *       data-parallel step's loss totals are first summed inside a CUDA
 *       graph's capture, where NCCL's setup (allocations, handshakes with
 *       the peers) has no place. */
static void set_runtime_env(char **argv) {
    setenv("NCCL_RUNTIME_CONNECT", "0", 0);
    bool restart = false;
    if (!getenv("OMP_WAIT_POLICY"))
        restart |= setenv("OMP_WAIT_POLICY", "passive", 1) == 0;
    if (!getenv("GOMP_SPINCOUNT")) restart |= setenv("GOMP_SPINCOUNT", "10000", 1) == 0;
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : cpu_blas_better_core();
    if (core) restart |= setenv("OPENBLAS_CORETYPE", core, 1) == 0;
    if (restart) execv("/proc/self/exe", argv); /* returns only on failure: go on as we are */
}

int main(int argc, char **argv) {
    set_runtime_env(argv);
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("traind %s\n", TRAIND_VERSION);
        return 0;
    }
#ifdef TRAIND_CUDA
    /* The CUDA backend is registered before any job can name a cuda device;
     * only the commands that use devices pay for the driver's start-up. */
    if (!strcmp(argv[1], "info") || !strcmp(argv[1], "run") || !strcmp(argv[1], "serve"))
        gpu_init();
#endif
    if (strcmp(argv[1], "info") == 0) return cmd_info();
    if (strcmp(argv[1], "run") == 0) return job_run_local(argc - 2, argv + 2);
    if (strcmp(argv[1], "serve") == 0) return cmd_serve(argc - 2, argv + 2);
    if (strcmp(argv[1], "user") == 0) return cmd_user(argc - 2, argv + 2);
    fprintf(stderr, "traind: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
