/* command.c - another program's run and output; see command.h. */
#include "server/command.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"

extern char **environ;

typedef struct {
    int fd;
    char *buf;
    size_t len;
} Stream;

/* Reads what is there; 1 at end of file, 0 otherwise. */
static int drain(Stream *s) {
    char chunk[4096];
    ssize_t n = read(s->fd, chunk, sizeof chunk);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return 1;
    if (n < 0) return 0;
    size_t keep = (size_t)n;
    if (s->len + keep > COMMAND_OUTPUT_MAX) keep = COMMAND_OUTPUT_MAX - s->len;
    memcpy(s->buf + s->len, chunk, keep);
    s->len += keep;
    return 0;
}

/* Both pipes until they close or the deadline passes. */
static void read_until(Stream *s, double deadline) {
    bool open[2] = {true, true};
    while (open[0] || open[1]) {
        int ms = (int)((deadline - clock_now_s()) * 1000);
        if (ms <= 0) return;
        struct pollfd p[2];
        int n = 0, which[2];
        for (int i = 0; i < 2; i++)
            if (open[i]) p[n] = (struct pollfd){s[i].fd, POLLIN, 0}, which[n++] = i;
        if (poll(p, (nfds_t)n, ms) < 0 && errno != EINTR) return;
        for (int k = 0; k < n; k++)
            if (p[k].revents && drain(&s[which[k]])) open[which[k]] = false;
    }
}

/* A child starts with no signal blocked and SIGPIPE as by default. The
 * daemon blocks SIGINT, SIGTERM and SIGHUP in every thread (sigwait takes
 * them) and ignores SIGPIPE, and a child inherits both across exec: an
 * mpirun sent SIGTERM to stop its ranks would not see it. */
static void spawn_attr_init(posix_spawnattr_t *attr, short flags) {
    sigset_t none, pipe_only;
    sigemptyset(&none);
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    posix_spawnattr_init(attr);
    posix_spawnattr_setsigmask(attr, &none);
    posix_spawnattr_setsigdefault(attr, &pipe_only);
    posix_spawnattr_setflags(attr, flags | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

static int spawn(char *const argv[], int pipes[2][2], pid_t *pid) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    for (int i = 0; i < 2; i++) {
        posix_spawn_file_actions_adddup2(&fa, pipes[i][1], i + 1);
        posix_spawn_file_actions_addclose(&fa, pipes[i][0]);
        posix_spawn_file_actions_addclose(&fa, pipes[i][1]);
    }
    spawn_attr_init(&attr, 0);
    int rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return error_set("%s: %s", argv[0], strerror(rc));
    return 0;
}

int command_run(char *const argv[], int timeout_ms, CommandResult *out) {
    memset(out, 0, sizeof *out);
    int pipes[2][2] = {{-1, -1}, {-1, -1}};
    Stream s[2] = {{-1, NULL, 0}, {-1, NULL, 0}};
    pid_t pid = -1;
    int rc = -1;
    for (int i = 0; i < 2; i++) {
        if (pipe2(pipes[i], O_CLOEXEC) != 0) {
            error_sys(errno, "%s: pipe", argv[0]);
            goto done;
        }
        s[i].fd = pipes[i][0];
        if (!(s[i].buf = malloc(COMMAND_OUTPUT_MAX + 1))) {
            error_set("out of memory");
            goto done;
        }
    }
    if (spawn(argv, pipes, &pid) != 0) goto done;
    for (int i = 0; i < 2; i++) close(pipes[i][1]), pipes[i][1] = -1;
    double deadline = clock_now_s() + timeout_ms / 1000.0;
    read_until(s, deadline);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) { /* its pipes are closed, or the time is up */
        if (clock_now_s() >= deadline) {
            kill(pid, SIGKILL);
            out->timed_out = 1;
            waitpid(pid, &status, 0);
            break;
        }
        usleep(2000);
    }
    out->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    for (int i = 0; i < 2; i++) s[i].buf[s[i].len] = '\0';
    out->out = s[0].buf, out->err = s[1].buf;
    s[0].buf = s[1].buf = NULL;
    rc = 0;
done:
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 2; j++)
            if (pipes[i][j] >= 0) close(pipes[i][j]);
        free(s[i].buf);
    }
    return rc;
}

int command_start(char *const argv[], const char *log_path, pid_t *pid) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    spawn_attr_init(&attr, POSIX_SPAWN_SETSID);
    int rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? 0 : error_set("%s: %s", argv[0], strerror(rc));
}

void command_result_free(CommandResult *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* The session of process `pid` from /proc/<pid>/stat ("pid (comm) state
 * ppid pgrp session ..."; comm may hold spaces and parentheses), or -1. */
static pid_t session_of(const char *pid) {
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *close_paren = strrchr(text, ')');
    int ppid, pgrp, session;
    char state;
    if (!close_paren || sscanf(close_paren + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4)
        return -1;
    return (pid_t)session;
}

int command_kill_session(pid_t sid, int sig) {
    if (sid <= 1) return 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        if (session_of(e->d_name) == sid && kill((pid_t)atoi(e->d_name), sig) == 0) count++;
    }
    closedir(d);
    return count;
}
