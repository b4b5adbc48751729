/* slurm.c - batch scripts and Slurm's commands for the Slurm executor; see
 * slurm.h. */
#include "server/slurm.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "server/command.h"

#define COMMAND_TIMEOUT_MS 30000

void slurm_config_defaults(SlurmConfig *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->mpi, sizeof c->mpi, "pmix");
    snprintf(c->datasets_cache, sizeof c->datasets_cache, "%s", SLURM_DATASETS_CACHE_DEFAULT);
    ssize_t n = readlink("/proc/self/exe", c->traind, sizeof c->traind - 1);
    c->traind[n > 0 ? n : 0] = '\0';
}

/* A value that goes on an #SBATCH line or srun's: no spaces, quotes or
 * shell characters. */
static bool plain_word(const char *v) {
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_.:,+/=@", *p)) return false;
    return true;
}

/* A directory the script names: absolute (the nodes run it from anywhere),
 * one line (it goes on srun's line and an #SBATCH one). */
static int set_path(const char *key, const char *value, char *dst, size_t size) {
    if (value[0] != '/' || strchr(value, '\n') || strlen(value) >= size)
        return error_set("%s: expected an absolute path of at most %zu bytes, got '%s'", key,
                         size - 1, value);
    snprintf(dst, size, "%s", value);
    return 0;
}

/* The keys that are not plain words: a count, the datasets' mode, paths.
 * 1 when key is none of them. */
static int set_special(SlurmConfig *c, const char *key, const char *value) {
    if (strcmp(key, "gpus_per_node") == 0) {
        char *end;
        long n = strtol(value, &end, 10);
        if (*value == '\0' || *end || n < 0 || n > 1024)
            return error_set("gpus_per_node: expected 0 to 1024, got '%s'", value);
        c->gpus_per_node = (int)n;
        return 0;
    }
    if (strcmp(key, "datasets") == 0) {
        if (strcmp(value, "shared") && strcmp(value, "fetch"))
            return error_set("datasets: expected shared or fetch, got '%s'", value);
        c->datasets_fetch = strcmp(value, "fetch") == 0;
        return 0;
    }
    if (strcmp(key, "shared_dir") == 0)
        return set_path(key, value, c->shared_dir, sizeof c->shared_dir);
    if (strcmp(key, "datasets_cache") == 0)
        return set_path(key, value, c->datasets_cache, sizeof c->datasets_cache);
    return 1;
}

static int set_field(SlurmConfig *c, const char *key, const char *value) {
    int special = set_special(c, key, value);
    if (special <= 0) return special;
    struct {
        const char *key;
        char *dst;
        size_t size;
    } text[] = {{"partition", c->partition, sizeof c->partition},
                {"account", c->account, sizeof c->account},
                {"qos", c->qos, sizeof c->qos},
                {"time", c->time_limit, sizeof c->time_limit},
                {"traind", c->traind, sizeof c->traind},
                {"mpi", c->mpi, sizeof c->mpi}};
    for (size_t i = 0; i < sizeof text / sizeof *text; i++) {
        if (strcmp(key, text[i].key) != 0) continue;
        if (!plain_word(value) || strlen(value) >= text[i].size)
            return error_set("%s: '%s' is not a plain word of at most %zu characters", key, value,
                             text[i].size - 1);
        snprintf(text[i].dst, text[i].size, "%s", value);
        return 0;
    }
    return error_set("unknown key '%s' (partition, account, qos, time, gpus_per_node, traind, "
                     "mpi, shared_dir, datasets, datasets_cache)",
                     key);
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int slurm_config_load(SlurmConfig *c, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return error_sys(errno, "slurm config '%s'", path);
    char line[SLURM_CONFIG_LINE_MAX + 2]; /* the line, its '\n', the NUL */
    int n = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        n++;
        size_t len = strlen(line);
        /* a longer line would be read as two: a value cut short, taken */
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = error_set("slurm config '%s' line %d: longer than %d bytes", path, n,
                           SLURM_CONFIG_LINE_MAX);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *t = trim(line), *eq = strchr(t, '=');
        if (!*t) continue;
        if (!eq) {
            rc = error_set("slurm config '%s' line %d: expected key = value", path, n);
            break;
        }
        *eq = '\0';
        if (set_field(c, trim(t), trim(eq + 1)) != 0)
            rc = error_prefix("slurm config '%s' line %d", path, n);
    }
    fclose(f);
    return rc;
}

int slurm_option(SlurmConfig *c, const char *option, const char *value) {
    static const char *const keys[][2] = {{"--slurm-partition", "partition"},
                                          {"--slurm-account", "account"},
                                          {"--slurm-time", "time"},
                                          {"--slurm-gpus-per-node", "gpus_per_node"},
                                          {"--slurm-shared-dir", "shared_dir"},
                                          {"--slurm-datasets", "datasets"},
                                          {"--slurm-datasets-cache", "datasets_cache"}};
    if (strcmp(option, "--slurm-config") == 0) return slurm_config_load(c, value);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (strcmp(option, keys[i][0]) == 0) return set_field(c, keys[i][1], value);
    return error_set("unknown option (--slurm-config, --slurm-partition, --slurm-account, "
                     "--slurm-time, --slurm-gpus-per-node, --slurm-shared-dir, --slurm-datasets, "
                     "--slurm-datasets-cache)");
}

/* <shared_dir>/jobs, where the attempts' folders go: made here, or found
 * a folder (not a link) of this daemon's user that no one else may write.
 * A cluster user who could make or replace it would own the attempts'
 * files, job.sbatch among them, which Slurm runs as the daemon's user. */
static int check_jobs_dir(const char *shared) {
    char jobs[sizeof ((SlurmConfig *)0)->shared_dir + 8];
    snprintf(jobs, sizeof jobs, "%s/jobs", shared);
    if (mkdir(jobs, 0755) != 0 && errno != EEXIST)
        return error_sys(errno, "slurm shared_dir: cannot create '%s'", jobs);
    struct stat st;
    if (lstat(jobs, &st) != 0) return error_sys(errno, "slurm shared_dir: '%s'", jobs);
    if (!S_ISDIR(st.st_mode))
        return error_set("slurm shared_dir: '%s' is not a directory (a link is not followed)",
                         jobs);
    if (st.st_uid != geteuid())
        return error_set("slurm shared_dir: '%s' belongs to uid %u, not to this daemon's user "
                         "(uid %u); remove it, or give the daemon a folder of its own", jobs,
                         (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return error_set("slurm shared_dir: '%s' is writable by other users (mode %04o); "
                         "chmod go-w it", jobs, (unsigned)(st.st_mode & 07777));
    return 0;
}

/* Whether the shared dir (or a link to it), of uid, may hold the daemon's
 * folders: its own, or root's; -1 with the error otherwise. Another user
 * could rename what the daemon makes in it, sticky bit or not, or point
 * the link elsewhere. */
static int check_owner(const char *shared, uid_t uid) {
    if (uid == geteuid() || uid == 0) return 0;
    return error_set("slurm shared_dir '%s' belongs to uid %u, neither this daemon's user nor "
                     "root: its owner could replace the daemon's folders in it",
                     shared, (unsigned)uid);
}

int slurm_config_check(const SlurmConfig *c) {
    if (!c->shared_dir[0]) return 0;
    struct stat st;
    if (lstat(c->shared_dir, &st) == 0 && check_owner(c->shared_dir, st.st_uid) != 0) return -1;
    if (stat(c->shared_dir, &st) != 0)
        return error_sys(errno, "slurm shared_dir '%s'", c->shared_dir);
    if (!S_ISDIR(st.st_mode))
        return error_set("slurm shared_dir '%s': not a directory", c->shared_dir);
    if (access(c->shared_dir, W_OK | X_OK) != 0)
        return error_sys(errno, "slurm shared_dir '%s': this daemon cannot write in it",
                         c->shared_dir);
    if (check_owner(c->shared_dir, st.st_uid) != 0) return -1;
    /* without the sticky bit, anyone who may write in it may rename the
     * daemon's folders away and put their own in their place */
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
        return error_set("slurm shared_dir '%s' is writable by other users without the sticky "
                         "bit (mode %04o): they could replace the daemon's folders in it; chmod "
                         "+t it, or give the daemon a folder of its own", c->shared_dir,
                         (unsigned)(st.st_mode & 07777));
    return check_jobs_dir(c->shared_dir);
}

/* s between single quotes for bash: ' becomes '\'' */
static int put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    return fputc('\'', f) == EOF ? -1 : 0;
}

static void sbatch_line(FILE *f, const char *option, const char *value) {
    if (value[0]) fprintf(f, "#SBATCH --%s=%s\n", option, value);
}

int slurm_check_gpus(const SlurmConfig *c, int ranks, int nodes, bool gpus) {
    int per_node = ranks / nodes;
    if (!gpus || per_node <= c->gpus_per_node) return 0;
    return error_set("the job asks for %d GPUs on each of %d node(s); a node gives at most %d "
                     "(slurm gpus_per_node)",
                     per_node, nodes, c->gpus_per_node);
}

char *slurm_script(const SlurmConfig *c, const SlurmRequest *r) {
    int per_node = r->ranks / r->nodes;
    if (slurm_check_gpus(c, r->ranks, r->nodes, r->gpus) != 0) return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return error_set("out of memory"), NULL;
    fprintf(f, "#!/bin/bash\n# traind job %lld, attempt %d (written by traind serve)\n",
            (long long)r->job, r->attempt);
    fprintf(f, "#SBATCH --job-name=traind-%lld\n", (long long)r->job);
    fprintf(f, "#SBATCH --output=%s/slurm-%%j.out\n", r->dir);
    fprintf(f, "#SBATCH --open-mode=append\n#SBATCH --requeue\n");
    fprintf(f, "#SBATCH --nodes=%d\n#SBATCH --ntasks-per-node=%d\n", r->nodes, per_node);
    sbatch_line(f, "partition", c->partition);
    sbatch_line(f, "account", c->account);
    sbatch_line(f, "qos", c->qos);
    sbatch_line(f, "time", c->time_limit);
    if (r->gpus) fprintf(f, "#SBATCH --gres=gpu:%d\n", per_node);
    /* a rank that dies (OOM-killed) takes the others down: Slurm's default
     * leaves them waiting in a collective till the time limit */
    fprintf(f, "exec srun --kill-on-bad-exit=1 --mpi=%s ", c->mpi);
    put_quoted(f, c->traind);
    fputs(" run ", f);
    put_quoted(f, r->spec_path);
    fputs(" --report ", f);
    put_quoted(f, r->report_url);
    fprintf(f, " --job %lld --attempt %d --token-file ", (long long)r->job, r->attempt);
    put_quoted(f, r->token_path);
    fputs(" --resume auto --out ", f);
    put_quoted(f, r->out_dir);
    if (r->datasets_cache) {
        fputs(" --datasets-cache ", f);
        put_quoted(f, r->datasets_cache);
    }
    fputc('\n', f);
    if (fclose(f) != 0 || !text) {
        free(text);
        return error_set("out of memory"), NULL;
    }
    /* a path with a newline would end the #SBATCH line early */
    if (strchr(r->dir, '\n')) {
        free(text);
        return error_set("the attempt directory '%s' has a newline", r->dir), NULL;
    }
    return text;
}

/* The first line of a command's stderr (or stdout), for an error. */
static const char *first_line(const CommandResult *res, char *buf, size_t size) {
    const char *src = res->err && res->err[0] ? res->err : res->out ? res->out : "";
    snprintf(buf, size, "%.*s", (int)strcspn(src, "\n"), src);
    return buf;
}

int slurm_submit(const char *script_path, char *id, size_t size) {
    char *argv[] = {"sbatch", "--parsable", (char *)script_path, NULL};
    CommandResult res;
    if (command_run(argv, COMMAND_TIMEOUT_MS, &res) != 0) return -1;
    char msg[256];
    int rc = 0;
    if (res.status != 0 || res.timed_out)
        rc = error_set("sbatch: %s",
                       res.timed_out ? "timed out" : first_line(&res, msg, sizeof msg));
    else {
        /* "1234" or "1234;cluster" */
        size_t n = strspn(res.out, "0123456789");
        if (n == 0 || n >= size)
            rc = error_set("sbatch printed no job id: '%s'", first_line(&res, msg, sizeof msg));
        else
            snprintf(id, size, "%.*s", (int)n, res.out);
    }
    command_result_free(&res);
    return rc;
}

SlurmPhase slurm_phase(const char *state) {
    static const char *const pending[] = {"PENDING",  "REQUEUED",  "REQUEUE_HOLD", "REQUEUE_FED",
                                          "RESIZING", "SUSPENDED", "CONFIGURING",  NULL};
    static const char *const running[] = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", NULL};
    for (int i = 0; pending[i]; i++)
        if (strcmp(state, pending[i]) == 0) return SLURM_PENDING;
    for (int i = 0; running[i]; i++)
        if (strcmp(state, running[i]) == 0) return SLURM_RUNNING;
    return SLURM_ENDED; /* COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, ... */
}

/* "0:15" into status 0, signal 15 */
static void parse_exit(const char *v, int *code, int *sig) {
    *code = atoi(v);
    const char *colon = strchr(v, ':');
    *sig = colon ? atoi(colon + 1) : 0;
}

int slurm_parse_scontrol(const char *line, SlurmJobState *out) {
    memset(out, 0, sizeof *out);
    bool have_state = false;
    const char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\n') p++;
        size_t n = strcspn(p, " \n");
        const char *eq = memchr(p, '=', n);
        if (eq) {
            size_t k = (size_t)(eq - p), vn = n - k - 1;
            char v[256];
            snprintf(v, sizeof v, "%.*s", (int)(vn < sizeof v ? vn : sizeof v - 1), eq + 1);
            if (k == 8 && strncmp(p, "JobState", 8) == 0) {
                snprintf(out->state, sizeof out->state, "%.31s", v);
                have_state = true;
            } else if (k == 6 && strncmp(p, "Reason", 6) == 0) {
                snprintf(out->reason, sizeof out->reason, "%.63s", strcmp(v, "None") ? v : "");
            } else if (k == 8 && strncmp(p, "ExitCode", 8) == 0) {
                parse_exit(v, &out->exit_code, &out->signal);
            } else if (k == 8 && strncmp(p, "Restarts", 8) == 0) {
                out->restarts = atoi(v);
            }
        }
        p += n;
    }
    if (!have_state) return error_set("no JobState in scontrol's line '%.80s'", line);
    out->phase = slurm_phase(out->state);
    if (out->phase != SLURM_PENDING) out->reason[0] = '\0';
    return 0;
}

/* sacct's one line "STATE|EXIT" for a job scontrol no longer knows. */
static int query_sacct(const char *id, SlurmJobState *out) {
    char *argv[] = {"sacct", "-n", "-P", "-X", "-j", (char *)id, "-o", "State,ExitCode", NULL};
    CommandResult res;
    if (command_run(argv, COMMAND_TIMEOUT_MS, &res) != 0) return -1;
    int rc = 1;
    char *bar = res.status == 0 ? strchr(res.out, '|') : NULL;
    if (bar) {
        memset(out, 0, sizeof *out);
        /* "CANCELLED by 0|0:15" */
        snprintf(out->state, sizeof out->state, "%.*s", (int)strcspn(res.out, " |"), res.out);
        parse_exit(bar + 1, &out->exit_code, &out->signal);
        out->phase = slurm_phase(out->state);
        rc = 0;
    }
    command_result_free(&res);
    return rc;
}

int slurm_query(const char *id, SlurmJobState *out) {
    char *argv[] = {"scontrol", "show", "job", "-o", (char *)id, NULL};
    CommandResult res;
    if (command_run(argv, COMMAND_TIMEOUT_MS, &res) != 0) return -1;
    int rc;
    char msg[256];
    if (res.status == 0)
        rc = slurm_parse_scontrol(res.out, out);
    else if (strstr(res.err, "Invalid job id"))
        rc = query_sacct(id, out);
    else
        rc = error_set("scontrol show job %s: %s", id, first_line(&res, msg, sizeof msg));
    command_result_free(&res);
    return rc;
}

int slurm_cancel(const char *id) {
    char *argv[] = {"scancel", (char *)id, NULL};
    CommandResult res;
    if (command_run(argv, COMMAND_TIMEOUT_MS, &res) != 0) return -1;
    char msg[256];
    int rc =
        res.status == 0 ? 0 : error_set("scancel %s: %s", id, first_line(&res, msg, sizeof msg));
    command_result_free(&res);
    return rc;
}
