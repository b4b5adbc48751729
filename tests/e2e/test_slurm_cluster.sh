#!/usr/bin/env bash
# test_slurm_cluster.sh - the private one-node Slurm of
# tests/support/slurm_cluster.sh, which the Slurm executor's tests stand on:
# it comes up in a temporary directory and answers as a real cluster does.
#
#   tests/e2e/test_slurm_cluster.sh
#
# Covers: `sbatch --wrap` runs to COMPLETED with its output file written,
# and a failing job ends FAILED with its exit code (read from `scontrol
# show job` and from the jobcomp log, there being no sacct without
# slurmdbd); `srun -n 2 --mpi=pmix` of an MPI all-reduce (rank and world
# size as SLURM_PROCID / SLURM_STEP_NUM_TASKS / PMIX_RANK show them); a job
# submitted while the node is full pends with reason Resources and
# `scancel` ends it CANCELLED; `scontrol requeue` of a running batch job
# runs it again with SLURM_RESTART_COUNT=1; slurm_down leaves no daemon.
set -uo pipefail
cd "$(dirname "$0")/../.."

TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
. tests/support/slurm_cluster.sh
trap 'slurm_down; cleanup_daemons' EXIT

# wait_state ID STATE...: until job ID is in one of STATEs (20 s at most)
# or unknown (slurmctld gone: the script is ending); prints the state it
# ended in.
wait_state() {
    local id=$1 s
    shift
    for _ in $(seq 200); do
        s=$(slurm_job_field "$id" JobState)
        [ -n "$s" ] || break
        case " $* " in *" $s "*) break ;; esac
        sleep 0.1
    done
    echo "$s"
}

# seconds since START (a `date +%s%N`), to 0.01 s
since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

t0=$(date +%s%N)
if ! slurm_up "$TMP/slurm"; then
    fail "slurm_up" "the cluster did not come up (above)"
    summary
    exit 1
fi
pass "slurm_up: node $(sinfo -h -o %N) idle in $(since "$t0") s"
CPUS=$(sinfo -h -o %c)

# a batch job and its output; a failing one and its exit code
J=$(sbatch --parsable -o "$TMP/hello.out" --wrap 'echo "hello from job $SLURM_JOB_ID"')
check "sbatch --wrap ends COMPLETED" "$(wait_state "$J" COMPLETED FAILED CANCELLED)" COMPLETED
check "its exit code" "$(slurm_job_field "$J" ExitCode)" 0:0
check "its output file" "$(cat "$TMP/hello.out" 2>&1)" "hello from job $J"
check "its jobcomp record" "$(slurm_jobcomp_field "$J" JobState)" COMPLETED
F=$(sbatch --parsable -o /dev/null --wrap 'exit 3')
check "a job exiting 3 ends FAILED" "$(wait_state "$F" COMPLETED FAILED CANCELLED)" FAILED
check "with ExitCode 3:0" "$(slurm_job_field "$F" ExitCode)" 3:0
check "in the jobcomp log too" "$(slurm_jobcomp_field "$F" JobState) $(slurm_jobcomp_field "$F" ExitCode)" "FAILED 3:0"

# MPI over PMIx: two ranks all-reduce their rank numbers
cat >"$TMP/allreduce.c" <<'EOF'
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
    int rank, size, sum;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("%d %d\n", size, sum);
    MPI_Finalize();
    return 0;
}
EOF
OVER=()
[ "$CPUS" -ge 2 ] || OVER=(--overcommit) # two ranks on a one-CPU node
if mpicc -o "$TMP/allreduce" "$TMP/allreduce.c" 2>"$TMP/mpicc.err"; then
    check "srun -n 2 --mpi=pmix: world size 2, ranks sum to 1" \
        "$(srun -n 2 "${OVER[@]}" --mpi=pmix "$TMP/allreduce" 2>&1)" "2 1"
else
    fail "mpicc allreduce.c" "$(cat "$TMP/mpicc.err")"
fi
check "each task's rank and world size" \
    "$(srun -n 2 "${OVER[@]}" --mpi=pmix bash -c \
        'echo "$SLURM_PROCID/$SLURM_STEP_NUM_TASKS/$PMIX_RANK"' 2>&1 | sort | tr '\n' ' ')" \
    "0/2/0 1/2/1 "

# a job that fills the node (and marks each run), then one that must wait
A=$(sbatch --parsable -c "$CPUS" -o /dev/null \
    --wrap "echo \"run \${SLURM_RESTART_COUNT:-0}\" >>'$TMP/runs'; [ -n \"\${SLURM_RESTART_COUNT:-}\" ] || sleep 60")
check "a job on all $CPUS CPUs runs" "$(wait_state "$A" RUNNING)" RUNNING
B=$(sbatch --parsable -o /dev/null --wrap true)
# (first None or Priority, until the scheduler has looked at it: ~2 s)
for _ in $(seq 50); do
    [ "$(squeue -h -j "$B" -o %r)" = Resources ] && break
    sleep 0.1
done
check "a job submitted to the full node pends for Resources" \
    "$(squeue -h -j "$B" -o '%T %r')" "PENDING Resources"
scancel "$B"
check "scancel ends it CANCELLED" "$(wait_state "$B" CANCELLED)" CANCELLED

# requeue the running job: it runs again, as restart 1
t1=$(date +%s%N)
scontrol requeue "$A"
check "scontrol requeue: the job pends again" "$(wait_state "$A" PENDING)" PENDING
check "and runs to COMPLETED" "$(wait_state "$A" COMPLETED FAILED CANCELLED)" COMPLETED
echo "requeue to COMPLETED: $(since "$t1") s"
check "its runs saw SLURM_RESTART_COUNT unset, then 1" "$(tr '\n' ' ' <"$TMP/runs")" "run 0 run 1 "
check "scontrol counts the restart" "$(slurm_job_field "$A" Restarts)" 1

dir=$SLURM_DIR
t2=$(date +%s%N)
slurm_down
echo "slurm_down: $(since "$t2") s"
check "slurm_down leaves no daemon of the cluster" "$(slurm_procs "$dir" | tr '\n' ' ')" ""
check "nor at its pid files' pids" "$(slurm_pid "$dir/slurmctld.pid" slurmctld
    slurm_pid "$dir/slurmd.pid" slurmd; slurm_pid "$dir/munge/munged.pid" munged)" ""
summary
