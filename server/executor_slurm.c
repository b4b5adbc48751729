/* executor_slurm.c - `traind serve --executor slurm`: the executor's ops
 * over Slurm (server/executor.h for the lifecycle, server/slurm.h for the
 * script and the commands).
 *
 * launch writes the attempt's batch script (DIR/job.sbatch, durably) and
 * submits it; the handle is Slurm's job id. poll maps `scontrol show job`
 * onto the executor's phases: PENDING with Slurm's reason (Priority,
 * Resources, QOSMaxGRESPerUser, ...), RUNNING, ENDED with how ("COMPLETED
 * exit 0", "NODE_FAIL", "CANCELLED signal 15"), and Slurm's restart count,
 * which grows when Slurm requeues the job (a node failure, a preemption):
 * the rerun of the script resumes from the job's newest checkpoint by
 * itself. cancel is scancel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/io/durable.h"
#include "server/executor.h"
#include "server/log.h"
#include "server/slurm.h"

/* One GPU per rank when the job trains on GPUs: "auto" means GPUs when the
 * cluster's nodes have them. */
static bool wants_gpus(const SlurmConfig *c, const JobSpec *spec) {
    if (spec->device_auto) return c->gpus_per_node > 0;
    return spec->device.type == DEVICE_CUDA;
}

static int slurm_admit(void *ctx, const JobSpec *spec, int *gpus) {
    const SlurmConfig *c = ctx;
    bool on_gpus = wants_gpus(c, spec);
    *gpus = on_gpus ? spec->ranks : 0;
    if (slurm_check_gpus(c, spec->ranks, spec->nodes, on_gpus) == 0) return 0;
    return error_prefix_at(spec->gpus ? "gpus" : "ranks");
}

static int slurm_launch(void *ctx, const RemoteAttempt *a, char *handle, size_t size) {
    const SlurmConfig *c = ctx;
    SlurmRequest r = {.job = a->job,
                      .attempt = a->attempt,
                      .ranks = a->ranks,
                      .nodes = a->spec->nodes,
                      .gpus = wants_gpus(c, a->spec),
                      .dir = a->dir,
                      .spec_path = a->spec_path,
                      .token_path = a->token_path,
                      .out_dir = a->out_dir,
                      .report_url = a->report_url,
                      .datasets_cache = a->datasets_cache};
    char *script = slurm_script(c, &r);
    if (!script) return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/job.sbatch", a->dir);
    int rc = durable_write_text(path, 0644, script);
    free(script);
    if (rc != 0) return -1;
    return slurm_submit(path, handle, size);
}

static int slurm_poll(void *ctx, const RemoteAttempt *a, const char *handle, RemoteStatus *out) {
    (void)ctx, (void)a;
    SlurmJobState st;
    int rc = slurm_query(handle, &st);
    if (rc < 0) return -1;
    memset(out, 0, sizeof *out);
    if (rc == 1) { /* forgotten by scontrol, unknown to sacct */
        out->phase = REMOTE_ENDED;
        snprintf(out->detail, sizeof out->detail, "Slurm job %s is gone (no record of its end)",
                 handle);
        return 0;
    }
    out->phase = st.phase == SLURM_PENDING   ? REMOTE_PENDING
                 : st.phase == SLURM_RUNNING ? REMOTE_RUNNING
                                             : REMOTE_ENDED;
    out->restarts = st.restarts;
    snprintf(out->reason, sizeof out->reason, "%s", st.reason);
    if (out->phase == REMOTE_ENDED && st.signal)
        snprintf(out->detail, sizeof out->detail, "%s signal %d", st.state, st.signal);
    else if (out->phase == REMOTE_ENDED)
        snprintf(out->detail, sizeof out->detail, "%s exit %d", st.state, st.exit_code);
    return 0;
}

static void slurm_stop(void *ctx, const char *handle) {
    (void)ctx;
    if (slurm_cancel(handle) != 0) log_message("executor", "%s", error_get());
}

int executor_slurm(Db *db, const ExecutorConfig *config, ExecutorOps *out) {
    (void)db;
    if (!config->slurm.traind[0])
        return error_set("slurm: no traind for the nodes to run (slurm config key traind)");
    *out = (ExecutorOps){.name = "slurm",
                         .launch = slurm_launch,
                         .poll = slurm_poll,
                         .cancel = slurm_stop,
                         .admit = slurm_admit,
                         .ctx = (void *)&config->slurm};
    return 0;
}
