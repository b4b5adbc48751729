/* executor_ranks.c - a job of several ranks on a daemon that trains in
 * process: its worker starts them here with `mpirun -np N traind run ...
 * --report ...` and follows them through the executor lifecycle
 * (server/executor.h), as a Slurm job is followed, so the ranks report
 * their metrics and checkpoints to the daemon in the same way.
 *
 * The ranks share the worker's CPUs (--oversubscribe, not bound to cores,
 * each with its share of the job's OpenMP threads); on GPUs, each rank
 * takes one of the job's (traind run --device cuda:0,cuda:1: the local
 * rank's entry), NCCL between them. Their output goes to
 * DIR/ranks.log. The handle is mpirun's pid, the leader of a session of
 * its own: poll reaps it, cancel sends it SIGTERM, which mpirun passes on
 * to the ranks, and reap waits for it, killing the whole session past the
 * grace period (Open MPI puts each rank in a process group of its own, but
 * not outside mpirun's session), and what is left of it once mpirun has
 * exited, so no rank outlives its attempt on the job's devices (a
 * preempting job may take them at once).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "server/command.h"
#include "server/executor.h"

typedef struct {
    char traind[1024];
    int threads; /* the job's OpenMP threads, shared by its ranks */
    char devices[DB_DEVICES_MAX + 1]; /* "cpu", or the job's GPUs */
} RanksConfig;

static int ranks_launch(void *ctx, const RemoteAttempt *a, char *handle, size_t size) {
    const RanksConfig *c = ctx;
    char np[16], job[32], attempt[16], omp[48], log[4200];
    int threads = c->threads / a->ranks > 0 ? c->threads / a->ranks : 1;
    snprintf(np, sizeof np, "%d", a->ranks);
    snprintf(job, sizeof job, "%lld", (long long)a->job);
    snprintf(attempt, sizeof attempt, "%d", a->attempt);
    snprintf(omp, sizeof omp, "OMP_NUM_THREADS=%d", threads);
    snprintf(log, sizeof log, "%s/ranks.log", a->dir);
    char *argv[32];
    int n = 0;
    argv[n++] = "mpirun";
    /* Open MPI refuses root unless told so: a daemon run as root tells it */
    if (geteuid() == 0) argv[n++] = "--allow-run-as-root";
    char *rest[] = {"-np",
                    np,
                    "--oversubscribe",
                    "--bind-to",
                    "none",
                    "-x",
                    omp,
                    (char *)c->traind,
                    "run",
                    (char *)a->spec_path,
                    "--report",
                    (char *)a->report_url,
                    "--job",
                    job,
                    "--attempt",
                    attempt,
                    "--token-file",
                    (char *)a->token_path,
                    "--resume",
                    "auto",
                    "--out",
                    (char *)a->out_dir,
                    "--device",
                    (char *)c->devices,
                    NULL};
    for (size_t i = 0; i < sizeof rest / sizeof *rest; i++) argv[n++] = rest[i];
    pid_t pid;
    if (command_start(argv, log, &pid) != 0) return -1;
    snprintf(handle, size, "%d", (int)pid);
    return 0;
}

static int ranks_poll(void *ctx, const RemoteAttempt *a, const char *handle, RemoteStatus *out) {
    (void)ctx, (void)a;
    memset(out, 0, sizeof *out);
    int status = 0;
    pid_t got = waitpid((pid_t)atoi(handle), &status, WNOHANG);
    if (got == 0) {
        out->phase = REMOTE_RUNNING;
        return 0;
    }
    out->phase = REMOTE_ENDED;
    command_kill_session((pid_t)atoi(handle), SIGKILL); /* a rank that outlived it */
    if (got < 0)
        snprintf(out->detail, sizeof out->detail, "mpirun %s: %s", handle, strerror(errno));
    else if (WIFSIGNALED(status))
        snprintf(out->detail, sizeof out->detail, "mpirun killed by signal %d", WTERMSIG(status));
    else
        snprintf(out->detail, sizeof out->detail, "mpirun exit %d", WEXITSTATUS(status));
    return 0;
}

static void ranks_cancel(void *ctx, const char *handle) {
    (void)ctx;
    kill((pid_t)atoi(handle), SIGTERM);
}

static void ranks_reap(void *ctx, const char *handle, int grace_s) {
    (void)ctx;
    pid_t pid = (pid_t)atoi(handle);
    for (int waited_ms = 0;; waited_ms += 50) {
        pid_t got = waitpid(pid, NULL, WNOHANG);
        if (got == pid || (got < 0 && errno != EINTR)) break; /* gone, or reaped before */
        if (waited_ms >= grace_s * 1000) {
            kill(pid, SIGKILL); /* mpirun; its ranks with the session below */
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
            }
            break;
        }
        usleep(50 * 1000);
    }
    command_kill_session(pid, SIGKILL); /* a rank that outlived mpirun */
}

int executor_ranks(const char *traind, int threads, const char *devices, ExecutorOps *out) {
    RanksConfig *c = calloc(1, sizeof *c);
    if (!c) return error_set("out of memory");
    snprintf(c->traind, sizeof c->traind, "%s", traind);
    snprintf(c->devices, sizeof c->devices, "%s", devices);
    c->threads = threads > 0 ? threads : 1;
    *out = (ExecutorOps){.name = "mpirun",
                         .launch = ranks_launch,
                         .poll = ranks_poll,
                         .cancel = ranks_cancel,
                         .reap = ranks_reap,
                         .ctx = c};
    return 0;
}

void executor_ranks_close(ExecutorOps *ops) {
    free(ops->ctx);
    ops->ctx = NULL;
}
