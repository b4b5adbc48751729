/* test_slurm.c - server/slurm.c without a cluster: the batch script (its
 * #SBATCH lines, srun's command quoted for bash, GPUs per node), the
 * config file and its errors, scontrol's one-line job records as Slurm
 * 22.05 prints them, and the executor's admission (the GPUs a job takes).
 * tests/e2e/test_slurm.sh runs the real thing. */
#include <criterion/criterion.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/spec.h"
#include "server/executor.h"
#include "server/slurm.h"
#include "tests/support/placed_spec.h"

static SlurmRequest request(int ranks, int nodes, bool gpus) {
    return (SlurmRequest){.job = 42,
                          .attempt = 2,
                          .ranks = ranks,
                          .nodes = nodes,
                          .gpus = gpus,
                          .dir = "/shared/jobs/42/attempt-2",
                          .spec_path = "/shared/jobs/42/attempt-2/spec.json",
                          .token_path = "/shared/jobs/42/attempt-2/token",
                          .out_dir = "/shared/it's here/out",
                          .report_url = "http://daemon:8080"};
}

Test(slurm, script) {
    SlurmConfig c;
    slurm_config_defaults(&c);
    snprintf(c.traind, sizeof c.traind, "/opt/traind/bin/traind");
    snprintf(c.partition, sizeof c.partition, "gpu");
    snprintf(c.time_limit, sizeof c.time_limit, "2:00:00");
    c.gpus_per_node = 8;
    SlurmRequest r = request(8, 2, true);
    char *s = slurm_script(&c, &r);
    cr_assert(s, "%s", error_get());
    const char *want =
        "#!/bin/bash\n"
        "# traind job 42, attempt 2 (written by traind serve)\n"
        "#SBATCH --job-name=traind-42\n"
        "#SBATCH --output=/shared/jobs/42/attempt-2/slurm-%j.out\n"
        "#SBATCH --open-mode=append\n"
        "#SBATCH --requeue\n"
        "#SBATCH --nodes=2\n"
        "#SBATCH --ntasks-per-node=4\n"
        "#SBATCH --partition=gpu\n"
        "#SBATCH --time=2:00:00\n"
        "#SBATCH --gres=gpu:4\n"
        "exec srun --kill-on-bad-exit=1 --mpi=pmix '/opt/traind/bin/traind' run "
        "'/shared/jobs/42/attempt-2/spec.json' "
        "--report 'http://daemon:8080' --job 42 --attempt 2 --token-file "
        "'/shared/jobs/42/attempt-2/token' --resume auto --out '/shared/it'\\''s here/out'\n";
    cr_assert_str_eq(s, want);
    free(s);
    /* a CPU job has no --gres; 9 GPUs on one node are more than 8 */
    r = request(3, 1, false);
    s = slurm_script(&c, &r);
    cr_assert(s && !strstr(s, "--gres") && strstr(s, "--ntasks-per-node=3\n"));
    free(s);
    r = request(9, 1, true);
    cr_assert_null(slurm_script(&c, &r));
    cr_assert_str_eq(error_get(), "the job asks for 9 GPUs on each of 1 node(s); a node gives at "
                                  "most 8 (slurm gpus_per_node)");
    cr_assert_eq(slurm_check_gpus(&c, 16, 2, true), 0, "8 a node");
    cr_assert_eq(slurm_check_gpus(&c, 16, 1, false), 0, "CPU ranks");
}

static char *write_tmp(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/test_slurm_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

Test(slurm, config_file) {
    SlurmConfig c;
    slurm_config_defaults(&c);
    cr_assert_str_eq(c.mpi, "pmix");
    char *path = write_tmp("# the lab's cluster\npartition = a100 \naccount=lab-7\n\n"
                           "gpus_per_node = 4 # HGX\ntime = 1-00:00:00\n");
    cr_assert_eq(slurm_config_load(&c, path), 0, "%s", error_get());
    cr_assert_str_eq(c.partition, "a100");
    cr_assert_str_eq(c.account, "lab-7");
    cr_assert_eq(c.gpus_per_node, 4);
    cr_assert_str_eq(c.time_limit, "1-00:00:00");
    unlink(path);
    const struct {
        const char *text, *error;
    } bad[] = {
        {"partition a100\n", "line 1: expected key = value"},
        {"\npartitions = a\n", "line 2: unknown key 'partitions'"},
        {"account = lab 7\n", "line 1: account: 'lab 7' is not a plain word"},
        {"gpus_per_node = many\n", "line 1: gpus_per_node: expected 0 to 1024, got 'many'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        path = write_tmp(bad[i].text);
        cr_assert_eq(slurm_config_load(&c, path), -1);
        cr_assert(strstr(error_get(), bad[i].error), "%s", error_get());
        cr_assert(strstr(error_get(), path), "names the file: %s", error_get());
        unlink(path);
    }
    cr_assert_eq(slurm_config_load(&c, "/nonexistent/slurm.conf"), -1);
    cr_assert(strstr(error_get(), "/nonexistent/slurm.conf"), "%s", error_get());
    /* a line longer than the reader's buffer: refused, not read as two (a
     * shared_dir cut at 1 KiB, then "line 2" of its rest) */
    static char lng[5000];
    int k = snprintf(lng, sizeof lng, "mpi = pmix\nshared_dir = /");
    memset(lng + k, 'd', 4300);
    strcpy(lng + k + 4300, "\n");
    path = write_tmp(lng);
    cr_assert_eq(slurm_config_load(&c, path), -1);
    cr_assert(strstr(error_get(), "line 2: longer than 4200 bytes"), "%s", error_get());
    unlink(path);
}

Test(slurm, scontrol_records) {
    SlurmJobState st;
    const char *pending =
        "JobId=3 JobName=traind-7 UserId=root(0) GroupId=root(0) MCS_label=N/A "
        "Priority=4294901757 Nice=0 Account=(null) QOS=(null) JobState=PENDING Reason=Resources "
        "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 "
        "RunTime=00:00:00 TimeLimit=UNLIMITED\n";
    cr_assert_eq(slurm_parse_scontrol(pending, &st), 0, "%s", error_get());
    cr_assert_eq(st.phase, SLURM_PENDING);
    cr_assert_str_eq(st.state, "PENDING");
    cr_assert_str_eq(st.reason, "Resources");
    const char *requeued = "JobId=3 JobState=PENDING Reason=BeginTime Requeue=1 Restarts=1 "
                           "ExitCode=0:0\n";
    cr_assert_eq(slurm_parse_scontrol(requeued, &st), 0);
    cr_assert_eq(st.restarts, 1);
    const char *failed = "JobId=4 JobState=NODE_FAIL Reason=NodeDown Restarts=0 ExitCode=1:9\n";
    cr_assert_eq(slurm_parse_scontrol(failed, &st), 0);
    cr_assert_eq(st.phase, SLURM_ENDED);
    cr_assert_str_eq(st.reason, "", "a reason only while pending");
    cr_assert_eq(st.exit_code, 1);
    cr_assert_eq(st.signal, 9);
    cr_assert_eq(slurm_parse_scontrol("JobId=5 Reason=None\n", &st), -1);
    cr_assert_eq(slurm_phase("RUNNING"), SLURM_RUNNING);
    cr_assert_eq(slurm_phase("COMPLETING"), SLURM_RUNNING);
    cr_assert_eq(slurm_phase("COMPLETED"), SLURM_ENDED);
    cr_assert_eq(slurm_phase("REQUEUED"), SLURM_PENDING);
}

/* Where the nodes find the attempts' files and the datasets. */
Test(slurm, shared_dir_and_datasets) {
    SlurmConfig c;
    slurm_config_defaults(&c);
    cr_assert_str_eq(c.shared_dir, "", "the data dir unless given");
    cr_assert(!c.datasets_fetch);
    cr_assert_str_eq(c.datasets_cache, "/tmp/traind-datasets");
    char shared[] = "/tmp/traind-shared-XXXXXX", text[200], jobs[64];
    cr_assert_not_null(mkdtemp(shared));
    snprintf(text, sizeof text, "shared_dir = %s\ndatasets = fetch\ndatasets_cache = "
             "/scratch/traind\n", shared);
    char *path = write_tmp(text);
    cr_assert_eq(slurm_config_load(&c, path), 0, "%s", error_get());
    unlink(path);
    cr_assert_str_eq(c.shared_dir, shared);
    cr_assert(c.datasets_fetch);
    cr_assert_str_eq(c.datasets_cache, "/scratch/traind");
    /* others may write in it: only with the sticky bit (as /tmp, /scratch) */
    cr_assert_eq(chmod(shared, 0777), 0);
    cr_assert_eq(slurm_config_check(&c), -1);
    cr_assert(strstr(error_get(), "writable by other users without the sticky bit (mode 0777)"),
              "%s", error_get());
    cr_assert_eq(chmod(shared, 01777), 0);
    cr_assert_eq(slurm_config_check(&c), 0, "%s", error_get());
    /* its jobs/, made there: the daemon's user's alone */
    snprintf(jobs, sizeof jobs, "%s/jobs", shared);
    struct stat st;
    cr_assert_eq(lstat(jobs, &st), 0, "jobs/ made");
    cr_assert(S_ISDIR(st.st_mode) && !(st.st_mode & (S_IWGRP | S_IWOTH)));
    cr_assert_eq(chmod(jobs, 0777), 0);
    cr_assert_eq(slurm_config_check(&c), -1);
    cr_assert(strstr(error_get(), "is writable by other users (mode 0777); chmod go-w it"), "%s",
              error_get());
    cr_assert_eq(chmod(jobs, 0755), 0);
    if (geteuid() == 0) { /* another user's (root can make it so) */
        cr_assert_eq(chown(jobs, 12345, (gid_t)-1), 0);
        cr_assert_eq(slurm_config_check(&c), -1);
        cr_assert(strstr(error_get(), "belongs to uid 12345, not to this daemon's user"), "%s",
                  error_get());
    }
    cr_assert_eq(rmdir(jobs), 0);
    cr_assert_eq(symlink("/tmp", jobs), 0);
    cr_assert_eq(slurm_config_check(&c), -1);
    cr_assert(strstr(error_get(), "is not a directory (a link is not followed)"), "%s", error_get());
    cr_assert_eq(unlink(jobs), 0);
    if (geteuid() == 0) { /* another user's shared dir, sticky or not: its owner could */
        cr_assert_eq(chown(shared, 12345, (gid_t)-1), 0);
        cr_assert_eq(slurm_config_check(&c), -1);
        cr_assert(strstr(error_get(), "belongs to uid 12345, neither this daemon's user nor root"),
                  "%s", error_get());
        cr_assert_eq(unlink(jobs), -1, "nothing made in it");
    }
    cr_assert_eq(rmdir(shared), 0);
    cr_assert_eq(slurm_option(&c, "--slurm-datasets", "shared"), 0);
    cr_assert(!c.datasets_fetch);
    cr_assert_eq(slurm_option(&c, "--slurm-datasets", "copy"), -1);
    cr_assert_str_eq(error_get(), "datasets: expected shared or fetch, got 'copy'");
    cr_assert_eq(slurm_option(&c, "--slurm-shared-dir", "shared"), -1);
    cr_assert(strstr(error_get(), "shared_dir: expected an absolute path"), "%s", error_get());
    cr_assert_eq(slurm_option(&c, "--slurm-datasets-cache", "cache"), -1);
    /* checked at start: a directory the daemon writes in */
    path = write_tmp("");
    cr_assert_eq(slurm_option(&c, "--slurm-shared-dir", path), 0);
    cr_assert_eq(slurm_config_check(&c), -1);
    cr_assert(strstr(error_get(), "not a directory") && strstr(error_get(), path), "%s",
              error_get());
    unlink(path);
    /* datasets fetched: srun's line says where to */
    snprintf(c.traind, sizeof c.traind, "/opt/traind");
    SlurmRequest r = request(2, 1, false);
    r.datasets_cache = "/scratch/traind";
    char *s = slurm_script(&c, &r);
    cr_assert(s, "%s", error_get());
    cr_assert(strstr(s, " --out '/shared/it'\\''s here/out' --datasets-cache '/scratch/traind'\n"),
              "%s", s);
    free(s);
}

/* admit's answer for a placement: 0 with *gpus, or -1. */
static int admit(const ExecutorOps *ops, const char *placement, int *gpus) {
    JobSpec *s = placed_spec(placement);
    *gpus = -1;
    int rc = ops->admit(ops->ctx, s, gpus);
    job_spec_free(s);
    return rc;
}

/* At submission the executor says how many GPUs a job takes (what the
 * GPU quota counts: one per rank on GPUs, "auto" too where the nodes have
 * them) and refuses one that asks a node for more than it gives, at the
 * spec's path. */
Test(slurm, admit_counts_the_gpus_a_job_takes) {
    ExecutorConfig cfg;
    slurm_config_defaults(&cfg.slurm);
    snprintf(cfg.slurm.traind, sizeof cfg.slurm.traind, "/opt/traind/bin/traind");
    cfg.slurm.gpus_per_node = 4;
    ExecutorOps ops;
    cr_assert_eq(executor_slurm(NULL, &cfg, &ops), 0, "%s", error_get());
    int gpus;
    cr_assert_eq(admit(&ops, ", \"gpus\": 4", &gpus), 0, "%s", error_get());
    cr_assert_eq(gpus, 4);
    cr_assert_eq(admit(&ops, ", \"ranks\": 2", &gpus), 0);
    cr_assert_eq(gpus, 2, "auto takes a GPU per rank where the nodes have them");
    cr_assert_eq(admit(&ops, ", \"ranks\": 2, \"device\": \"cpu\"", &gpus), 0);
    cr_assert_eq(gpus, 0);
    cr_assert_eq(admit(&ops, ", \"gpus\": 8, \"nodes\": 2", &gpus), 0, "%s", error_get());
    cr_assert_eq(gpus, 8);
    cr_assert_eq(admit(&ops, ", \"gpus\": 8", &gpus), -1);
    cr_assert_str_eq(error_get(), "gpus: the job asks for 8 GPUs on each of 1 node(s); a node "
                                  "gives at most 4 (slurm gpus_per_node)");
    cr_assert_eq(admit(&ops, ", \"ranks\": 8, \"device\": \"cuda\"", &gpus), -1);
    cr_assert(strstr(error_get(), "gpus: "), "\"device\": \"cuda\" with 8 ranks is \"gpus\": 8: %s",
              error_get());
    cfg.slurm.gpus_per_node = 0;
    cr_assert_eq(admit(&ops, ", \"ranks\": 2", &gpus), 0);
    cr_assert_eq(gpus, 0, "auto on nodes without GPUs: CPU ranks");
    cr_assert_eq(admit(&ops, ", \"gpus\": 1", &gpus), -1);
}
