/* command.h - runs another program and collects what it prints: the
 * daemon's way to Slurm's commands (sbatch, scontrol, scancel).
 *
 * posix_spawnp, not fork: the daemon has many threads, and a forked copy of
 * a threaded process may only exec. stdin is /dev/null; stdout and stderr
 * are read through pipes (at most COMMAND_OUTPUT_MAX bytes each, the rest
 * discarded); a command still running after the timeout is killed.
 */
#ifndef TRAIND_SERVER_COMMAND_H
#define TRAIND_SERVER_COMMAND_H

#include <stddef.h>
#include <sys/types.h>

#define COMMAND_OUTPUT_MAX 65536

typedef struct {
    int status;    /* the exit status; 128 + N when killed by signal N */
    char *out;     /* stdout, NUL-terminated (malloc'd) */
    char *err;     /* stderr, likewise */
    int timed_out; /* killed after the timeout */
} CommandResult;

/* Runs argv[0] (found on PATH) with argv, waiting up to timeout_ms. 0 with
 * *out filled (whatever the exit status), or -1 with an error when it could
 * not be started ("sbatch: No such file or directory"). */
int command_run(char *const argv[], int timeout_ms, CommandResult *out);
void command_result_free(CommandResult *r);

/* Starts argv[0] in the background, in a session of its own (its pid is
 * the session's and its process group's id), stdout and stderr appended to
 * log_path, stdin /dev/null; the caller reaps it (waitpid). 0 with *pid, or
 * -1 with an error. */
int command_start(char *const argv[], const char *log_path, pid_t *pid);
/* Sends sig to every process of session sid (one command_start began):
 * what it started too, those in process groups of their own (mpirun's
 * ranks: Open MPI gives each its own), also after it has exited. How many. */
int command_kill_session(pid_t sid, int sig);

#endif
