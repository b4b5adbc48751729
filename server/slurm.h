/* slurm.h - the Slurm side of `traind serve --executor slurm`: the batch
 * script an attempt runs as, and the commands that submit, follow and
 * cancel it (sbatch, scontrol, sacct, scancel, through server/command.h).
 *
 * The script asks for the job's ranks (--nodes, --ntasks-per-node, a GPU
 * per rank with --gres when the job trains on GPUs) and runs
 * `srun --mpi=pmix traind run SPEC --report URL ... --resume auto`, so the
 * ranks find each other through Slurm's PMIx and rank 0 reports to the
 * daemon. --requeue lets Slurm run it again after a node failure or a
 * preemption; the rerun resumes from the job's newest checkpoint.
 *
 * A job's state comes from `scontrol show job -o`, which knows a job while
 * it waits, runs, and for MinJobAge after it ends, and otherwise from
 * `sacct` (a site with slurmdbd keeps every job there).
 */
#ifndef TRAIND_SERVER_SLURM_H
#define TRAIND_SERVER_SLURM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest line of a --slurm-config file (a shared_dir of 4095 bytes
 * and its key fit). */
#define SLURM_CONFIG_LINE_MAX 4200

typedef struct {
    char partition[64];  /* "" : Slurm's default partition */
    char account[64];    /* "" : the user's default account */
    char qos[64];        /* "" : none */
    char time_limit[32]; /* "" : the partition's; else sbatch's --time ("1:00:00") */
    int gpus_per_node;   /* the most GPUs a node gives one job; 0: no GPUs */
    char traind[1024];   /* traind as the nodes run it (default: this daemon's own path) */
    char mpi[16];        /* srun --mpi (default "pmix") */
    /* Where the ranks find their files; the external executor's attempts
     * follow these too (server/executor.h): */
    char shared_dir[4096]; /* attempt directories go under DIR/jobs/ ("": the data dir) */
    bool datasets_fetch;   /* datasets = fetch: the nodes download them (else shared) */
    char datasets_cache[1024]; /* the nodes' own directory they fetch into */
} SlurmConfig;

#define SLURM_DATASETS_CACHE_DEFAULT "/tmp/traind-datasets"


void slurm_config_defaults(SlurmConfig *c);
/* Options from a file of `key = value` lines (partition, account, qos,
 * time, gpus_per_node, traind, mpi, shared_dir, datasets = shared|fetch,
 * datasets_cache; # comments), over what *c holds. -1 with an error naming
 * the file and line. */
int slurm_config_load(SlurmConfig *c, const char *path);

/* One attempt, as the script runs it. */
typedef struct {
    int64_t job;
    int attempt;
    int ranks, nodes; /* ranks divide by nodes */
    bool gpus;        /* one GPU per rank */
    const char *dir;  /* the attempt's directory: the script, Slurm's output */
    const char *spec_path, *token_path, *out_dir, *report_url;
    const char *datasets_cache; /* datasets = fetch: srun's --datasets-cache; else NULL */
} SlurmRequest;

/* A serve option: --slurm-config FILE (slurm_config_load), or
 * --slurm-partition, --slurm-account, --slurm-time, --slurm-gpus-per-node,
 * --slurm-shared-dir, --slurm-datasets, --slurm-datasets-cache VALUE
 * (later ones win). -1 with an error. */
int slurm_option(SlurmConfig *c, const char *option, const char *value);

/* What serve checks at start, once every option is read: shared_dir a
 * directory this daemon can write in, that other users may write in only
 * with the sticky bit, and its jobs/ folder (made here) this daemon's user's
 * alone (paths are checked absolute as they are set; datasets_cache is the
 * nodes', not looked at here). -1 with an error naming the key and the
 * path. */
int slurm_config_check(const SlurmConfig *c);

/* Whether a job of `ranks` over `nodes` fits the cluster: with `gpus`
 * (one per rank), at most gpus_per_node on each node. -1 with an error
 * that gives the numbers otherwise. */
int slurm_check_gpus(const SlurmConfig *c, int ranks, int nodes, bool gpus);

/* The batch script (a new string) or NULL with an error (a job asking
 * for more GPUs per node than the configuration gives). */
char *slurm_script(const SlurmConfig *c, const SlurmRequest *r);

/* `sbatch --parsable SCRIPT`: the Slurm job id into id. -1 with sbatch's
 * own message. */
int slurm_submit(const char *script_path, char *id, size_t size);

typedef enum { SLURM_PENDING, SLURM_RUNNING, SLURM_ENDED } SlurmPhase;

typedef struct {
    SlurmPhase phase;
    char state[32];  /* JobState: PENDING, RUNNING, COMPLETED, NODE_FAIL, ... */
    char reason[64]; /* Reason while pending (Priority, Resources, ...), else "" */
    int exit_code;   /* ExitCode's status, and the signal that ended it */
    int signal;
    int restarts; /* Restarts: times Slurm requeued it */
} SlurmJobState;

/* One line of `scontrol show job -o` (KEY=VALUE words) into *out. -1 when
 * it has no JobState. */
int slurm_parse_scontrol(const char *line, SlurmJobState *out);
/* The phase a JobState name means. */
SlurmPhase slurm_phase(const char *state);

/* Where job id stands. 0 filled, 1 when neither scontrol nor sacct knows
 * it, -1 with an error when the commands fail. */
int slurm_query(const char *id, SlurmJobState *out);
/* `scancel ID`; -1 with scancel's message. */
int slurm_cancel(const char *id);

#endif
