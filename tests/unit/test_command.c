/* test_command.c - server/command.c: another program's exit status, its
 * stdout and stderr, a timeout, a program that is not there, and children
 * that start with no signal blocked and SIGPIPE not ignored, whatever the
 * daemon's threads block and ignore. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "server/command.h"

Test(command, output_and_status) {
    char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    CommandResult r;
    cr_assert_eq(command_run(argv, 10000, &r), 0, "%s", error_get());
    cr_assert_eq(r.status, 3);
    cr_assert_str_eq(r.out, "out\n");
    cr_assert_str_eq(r.err, "err\n");
    cr_assert_eq(r.timed_out, 0);
    command_result_free(&r);
}

Test(command, output_is_capped) {
    char *argv[] = {"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x", NULL};
    CommandResult r;
    cr_assert_eq(command_run(argv, 10000, &r), 0, "%s", error_get());
    cr_assert_eq(r.status, 0);
    cr_assert_eq(strlen(r.out), COMMAND_OUTPUT_MAX, "the rest is read and dropped");
    command_result_free(&r);
}

Test(command, killed_after_the_timeout) {
    char *argv[] = {"sh", "-c", "echo started; exec sleep 30", NULL};
    CommandResult r;
    cr_assert_eq(command_run(argv, 300, &r), 0, "%s", error_get());
    cr_assert_eq(r.timed_out, 1);
    cr_assert_eq(r.status, 128 + 9, "SIGKILL");
    cr_assert_str_eq(r.out, "started\n");
    command_result_free(&r);
}

Test(command, missing_program) {
    char *argv[] = {"traind-no-such-program", NULL};
    CommandResult r;
    cr_assert_eq(command_run(argv, 1000, &r), -1);
    cr_assert_str_eq(error_get(), "traind-no-such-program: No such file or directory");
}

/* The signal lines of a child's /proc/self/status ("SigBlk: ...", "SigIgn:
 * ...") as command_run, then command_start, give them, with this thread
 * blocking SIGTERM and SIGHUP and ignoring SIGPIPE as the daemon does. */
Test(command, children_start_with_no_signal_blocked_or_ignored) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
    signal(SIGPIPE, SIG_IGN);
    char *argv[] = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL};
    CommandResult r;
    cr_assert_eq(command_run(argv, 10000, &r), 0, "%s", error_get());
    cr_assert(strstr(r.out, "SigBlk:\t0000000000000000\n"), "%s", r.out);
    /* SIGPIPE is signal 13: bit 12 of SigIgn, 0x1000 */
    const char *ign = strstr(r.out, "SigIgn:\t");
    cr_assert(ign, "%s", r.out);
    unsigned long long mask = strtoull(ign + 8, NULL, 16);
    cr_assert_eq(mask & 0x1000, 0, "SIGPIPE ignored: %s", r.out);
    command_result_free(&r);
    char log[] = "/tmp/test_command_XXXXXX";
    int fd = mkstemp(log);
    cr_assert(fd >= 0);
    close(fd);
    pid_t pid;
    cr_assert_eq(command_start(argv, log, &pid), 0, "%s", error_get());
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    char text[512] = "";
    FILE *f = fopen(log, "r");
    cr_assert(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(log);
    cr_assert(strstr(text, "SigBlk:\t0000000000000000\n"), "command_start: %s", text);
}

/* Whether process pid is gone (or a zombie no one has reaped yet). */
static bool gone(pid_t pid) {
    char path[64], text[256] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return true;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *paren = strrchr(text, ')');
    return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* A process that a command started in a process group of its own (as
 * mpirun's ranks are), still in the command's session: command_kill_session
 * reaches it, also once the command has exited. */
Test(command, a_session_is_killed_whole_after_its_leader_exits) {
    char log[] = "/tmp/test_command_XXXXXX";
    int fd = mkstemp(log);
    cr_assert(fd >= 0);
    close(fd);
    char *argv[] = {"python3", "-c",
                    "import os, time\n"
                    "if os.fork() == 0:\n"
                    "    os.setpgid(0, 0)\n"
                    "    print(os.getpid(), flush=True)\n"
                    "    time.sleep(60)\n",
                    NULL};
    pid_t pid;
    cr_assert_eq(command_start(argv, log, &pid), 0, "%s", error_get());
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    pid_t child = 0;
    for (int i = 0; i < 500 && child <= 0; i++) {
        FILE *f = fopen(log, "r");
        if (f && fscanf(f, "%d", &child) != 1) child = 0;
        if (f) fclose(f);
        if (child <= 0) usleep(10 * 1000);
    }
    unlink(log);
    cr_assert_gt(child, 0, "the child never said its pid");
    cr_assert(!gone(child));
    cr_assert_eq(command_kill_session(pid, SIGKILL), 1);
    for (int i = 0; i < 500 && !gone(child); i++) usleep(10 * 1000);
    cr_assert(gone(child), "the child of a session whose leader exited still runs");
}
