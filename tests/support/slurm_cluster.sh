# shellcheck shell=bash
# tests/support/slurm_cluster.sh - a private one-node Slurm for the e2e
# tests: `slurm_up DIR` starts munged, slurmctld and slurmd with every file
# they write under DIR and exports SLURM_CONF so that sbatch, srun, squeue,
# scancel and scontrol talk to it; `slurm_down` stops all three. Sourced by
# bash scripts; needs Debian's slurm-wlm (22.05) and munge, run as root
# (SlurmUser=root: jobs run as the caller).
#
#   . tests/support/slurm_cluster.sh
#   slurm_up "$TMP/slurm" || exit 1
#   trap 'slurm_down; rm -rf "$TMP"' EXIT
#
# What it sets up, and why:
# - munged on its own key and socket (--socket, --key-file, --pid-file,
#   --log-file, --seed-file under DIR/munge); slurm.conf names the socket in
#   AuthInfo=socket=..., which auth/munge and cred/munge both read, so
#   nothing under /etc/munge or /run is touched. munged runs with --force:
#   it refuses a socket whose every parent directory is not executable by
#   all, and mktemp's directories are 0700.
# - SlurmctldPort and SlurmdPort are free loopback ports found at start;
#   the node is `hostname -s` (slurmd finds itself by that name) at
#   NodeAddr=127.0.0.1, with the CPUs and RealMemory `slurmd -C` reports.
# - select/cons_tres with CR_CPU: several 1-CPU jobs run side by side, and
#   a job asking for every CPU fills the node.
# - proctrack/linuxproc and task/none: no cgroups in a container.
# - EnforcePartLimits=ALL: a job that can never fit (more CPUs than the
#   node has) is refused by sbatch ("More processors requested than
#   permitted", status 1) rather than left pending for PartitionConfig.
# - Pending reasons (`squeue -h -j ID -o %r`): a job behind a full node
#   shows None or Priority for a second or two, until the scheduler has
#   looked at it, then Resources; one queued behind another pending job
#   shows Priority; `scontrol hold` gives JobHeldAdmin.
# - MpiDefault=pmix: `srun --mpi=pmix` (the default) wires Open MPI ranks up
#   directly, no mpirun.
# - JobRequeue=1 and AuthInfo cred_expire=SLURM_CRED_EXPIRE (default 5 s, the
#   least Slurm takes): a requeued job waits cred_expire seconds before it
#   may start again (the default, 120 s, is too long for a test); the main
#   and backfill schedulers run every second (SchedulerParameters), so it
#   starts again about a second after that.
# - A finished job's state and exit code: slurmdbd is not run, and 22.05 has
#   no accounting_storage/filetxt any more, so `sacct` has nothing to read.
#   Two sources are left: `scontrol show job ID` (JobState=COMPLETED
#   ExitCode=0:0) for MinJobAge (60 s) after the end, and the
#   jobcomp/filetxt log, DIR/jobcomp.log, one line a finished job ("JobId=3
#   ... JobState=COMPLETED ... ExitCode=0:0 ...") that is never purged;
#   slurm_job_field reads the first, slurm_jobcomp_field the second.

# where the running cluster lives; empty when none is up
SLURM_DIR=

# slurm_free_port: a TCP port free on loopback now (the kernel's choice).
slurm_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# slurm_write_conf DIR: DIR/slurm.conf for this machine.
slurm_write_conf() {
    local dir=$1 node hw ctld_port slurmd_port
    node=$(uname -n) && node=${node%%.*} # as `hostname -s`; slurmd cuts there too
    # "CPUs=2 Boards=1 SocketsPerBoard=1 ... RealMemory=24105": the node
    # as slurmd will find it, so that it registers without a mismatch
    hw=$(slurmd -C | sed -n '1s/^NodeName=[^ ]* //p')
    [ -n "$hw" ] || { echo "slurm_up: slurmd -C printed no node line" >&2; return 1; }
    ctld_port=$(slurm_free_port) || return 1
    slurmd_port=$(slurm_free_port) || return 1
    while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(slurm_free_port) || return 1; done
    cat >"$dir/slurm.conf" <<EOF
ClusterName=traindtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=${SLURM_CRED_EXPIRE:-5}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
TmpFS=$dir/tmp
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
JobRequeue=1
ReturnToService=2
MinJobAge=60
EnforcePartLimits=ALL
KillWait=2
MailProg=/bin/true
InactiveLimit=0
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
AccountingStorageType=accounting_storage/none
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

# slurm_start_munged DIR: munged on a fresh key, its files in DIR/munge.
slurm_start_munged() {
    local m=$1/munge
    mkdir -p "$m" && chmod 755 "$m" || return 1
    (umask 077 && head -c 1024 /dev/urandom >"$m/munge.key") || return 1
    chmod 400 "$m/munge.key"
    munged --force --socket="$m/munge.socket" --key-file="$m/munge.key" \
        --pid-file="$m/munged.pid" --log-file="$m/munged.log" --seed-file="$m/munged.seed" \
        || return 1
    munge -n -S "$m/munge.socket" | unmunge -S "$m/munge.socket" >/dev/null
}

# slurm_wait_idle DIR TIMEOUT_S: until sinfo shows the node idle; fails
# early when slurmctld or slurmd has written its pid file and died (a bad
# slurm.conf, a port taken since it was found free), since sinfo would go
# on retrying a dead slurmctld.
slurm_wait_idle() {
    local deadline=$((SECONDS + $2)) d
    while [ "$SECONDS" -lt "$deadline" ]; do
        for d in slurmctld slurmd; do
            [ ! -f "$1/$d.pid" ] || slurm_pid "$1/$d.pid" $d >/dev/null || return 1
        done
        [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && return 0
        sleep 0.1
    done
    return 1
}

# slurm_show_logs DIR: the daemons' logs, for a failure message.
slurm_show_logs() {
    local f
    for f in "$1/munge/munged.log" "$1/slurmctld.log" "$1/slurmd.log"; do
        echo "--- $f (last 20 lines)" >&2
        tail -n 20 "$f" >&2 2>/dev/null || echo "(none)" >&2
    done
}

# slurm_up DIR: a one-node cluster whose state is all under DIR (made if
# missing), its node idle, SLURM_CONF exported; waits up to
# SLURM_UP_TIMEOUT seconds (default 30). On failure it prints why and the
# daemons' logs to stderr, stops what it started and returns 1.
slurm_up() {
    local dir tool
    for tool in munged munge slurmctld slurmd sinfo python3; do
        command -v "$tool" >/dev/null \
            || { echo "slurm_up: $tool not installed (scripts/install-deps.sh)" >&2; return 1; }
    done
    [ -z "$SLURM_DIR" ] || { echo "slurm_up: a cluster is up already in $SLURM_DIR" >&2; return 1; }
    mkdir -p "$1"/{state,spool,tmp} && dir=$(cd "$1" && pwd) || return 1
    SLURM_DIR=$dir
    if ! slurm_start_munged "$dir"; then
        echo "slurm_up: munged did not start" >&2
        slurm_show_logs "$dir"; slurm_down; return 1
    fi
    slurm_write_conf "$dir" || { slurm_down; return 1; }
    export SLURM_CONF=$dir/slurm.conf
    if ! slurmctld -f "$SLURM_CONF" || ! slurmd -f "$SLURM_CONF" \
        || ! slurm_wait_idle "$dir" "${SLURM_UP_TIMEOUT:-30}"; then
        echo "slurm_up: no idle node in $dir (waited up to ${SLURM_UP_TIMEOUT:-30} s;" \
            "slurmctld pid $(slurm_pid "$dir/slurmctld.pid" slurmctld || echo "none running")," \
            "slurmd pid $(slurm_pid "$dir/slurmd.pid" slurmd || echo "none running"))" >&2
        slurm_show_logs "$dir"; slurm_down; return 1
    fi
}

# slurm_procs DIR: pids of the Slurm and munge daemons, job step daemons
# included, that belong to the cluster in DIR (named in their command line
# or holding a file under it open).
slurm_procs() {
    local p comm f
    for p in /proc/[0-9]*; do
        comm=$(cat "$p/comm" 2>/dev/null) || continue
        case $comm in slurmctld | slurmd | slurmstepd | munged) ;; *) continue ;; esac
        if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$1/"; then
            echo "${p#/proc/}"
            continue
        fi
        for f in "$p"/fd/*; do
            case $(readlink "$f" 2>/dev/null) in "$1"/*) echo "${p#/proc/}" && break ;; esac
        done
    done
}

# slurm_pid PIDFILE NAME: the pid PIDFILE holds, if a process NAME runs
# there (a stale pid file gives nothing and fails).
slurm_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && echo "$pid"
}

# slurm_stop PIDFILE:NAME...: stops the daemons NAME whose pids the
# PIDFILEs hold, all at once (each takes 1-2 s to wind down): TERM, then
# KILL after 5 s.
slurm_stop() {
    local arg pid pids=()
    for arg in "$@"; do
        pid=$(slurm_pid "${arg%:*}" "${arg##*:}") && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    done
    for _ in $(seq 50); do
        for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && break; pid=; done
        [ -z "${pid:-}" ] && return 0
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null
}

# slurm_down: cancels every job, stops slurmd, slurmctld and munged, and
# kills any step daemon left behind; safe to call twice or after a failed
# slurm_up. Leaves DIR (and its logs) in place.
slurm_down() {
    local dir=$SLURM_DIR p jobs=()
    [ -n "$dir" ] || return 0
    # slurmd leaves running steps alone when it stops: end the jobs first,
    # and wait (10 s at most) for them to be gone. A client of a dead
    # slurmctld retries it for 18 s: ask a live one only.
    if slurm_pid "$dir/slurmctld.pid" slurmctld >/dev/null; then
        mapfile -t jobs < <(squeue -h -o %i 2>/dev/null)
        [ "${#jobs[@]}" -eq 0 ] || scancel --quiet "${jobs[@]}" 2>/dev/null
        for _ in $(seq 100); do
            [ -n "$(squeue -h -t RUNNING,COMPLETING 2>/dev/null)" ] || break
            sleep 0.1
        done
    fi
    slurm_stop "$dir/slurmd.pid:slurmd" "$dir/slurmctld.pid:slurmctld" \
        "$dir/munge/munged.pid:munged"
    for p in $(slurm_procs "$dir"); do kill -KILL "$p" 2>/dev/null; done
    SLURM_DIR=
}

# slurm_job_field ID FIELD: FIELD ("JobState", "ExitCode", "Reason",
# "Restarts") of job ID from `scontrol show job`, while slurmctld still
# holds it (MinJobAge after its end); nothing, at once, when the cluster's
# slurmctld is not running (scontrol would retry it for 18 s).
slurm_job_field() {
    slurm_pid "$SLURM_DIR/slurmctld.pid" slurmctld >/dev/null || return 1
    scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# slurm_jobcomp_field ID FIELD: FIELD of job ID's last record in the
# jobcomp/filetxt log (a requeued job also has a record, JobState=PENDING,
# for its ended run).
slurm_jobcomp_field() {
    grep "^JobId=$1 " "$SLURM_DIR/jobcomp.log" 2>/dev/null | tail -n 1 \
        | tr ' ' '\n' | sed -n "s/^$2=//p"
}
