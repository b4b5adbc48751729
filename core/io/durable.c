/* durable.c - the temporary name, fsync, rename, fsync of the directory;
 * see durable.h. */
#include "core/io/durable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

/* The counter of this process's temporary names. It starts at a random
 * number: a process that got the pid of one killed while writing (a
 * container's pid 1, run again) must not take the names it left, which
 * O_EXCL and mkdir would then refuse for ever. */
static atomic_uint seq;
static unsigned seq_start;
static pthread_once_t seq_once = PTHREAD_ONCE_INIT;

static void seq_seed(void) {
    unsigned r;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (unsigned)ts.tv_nsec ^ (unsigned)ts.tv_sec;
    }
    seq_start = r;
    atomic_store(&seq, r);
}

/* Whether n is a name this process has handed out. */
static bool made_here(unsigned n) {
    pthread_once(&seq_once, seq_seed);
    return n - seq_start < atomic_load(&seq) - seq_start;
}

char *durable_temp_name(const char *path) {
    /* pid and a counter: two threads, or two processes, never write into
     * the same temporary */
    pthread_once(&seq_once, seq_seed);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    char *tmp = NULL;
    if (asprintf(&tmp, "%.*s.tmp.%ld.%u", (int)n, path, (long)getpid(),
                 atomic_fetch_add(&seq, 1)) < 0) {
        error_set("%s: out of memory", path);
        return NULL;
    }
    return tmp;
}

/* fsync of dir: 0, or the errno of what failed. */
static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = fd < 0 || fsync(fd) != 0 ? errno : 0;
    if (fd >= 0) close(fd);
    return err;
}

int durable_sync_dir(const char *dir) {
    int err = fsync_dir(dir);
    return err ? error_sys(err, "fsync of directory '%s' failed", dir) : 0;
}

int durable_sync_parent(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *slash = memrchr(path, '/', n);
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return error_set("%s: out of memory", path);
    int err = fsync_dir(dir);
    int rc = err ? error_sys(err, "%s: written, but fsync of directory '%s' failed", path, dir) : 0;
    free(dir);
    return rc;
}

/* Writes, flushes, fsyncs and closes f; on failure the error names tmp. */
static int write_all(FILE *f, const char *tmp, DurableWriteFn write, void *ctx) {
    int rc = write(f, tmp, ctx);
    if (rc == 0 && (fflush(f) != 0 || ferror(f))) rc = error_sys(errno, "writing '%s'", tmp);
    if (rc == 0 && fsync(fileno(f)) != 0) rc = error_sys(errno, "fsync of '%s'", tmp);
    if (fclose(f) != 0 && rc == 0) rc = error_sys(errno, "closing '%s'", tmp);
    return rc;
}

int durable_write(const char *path, mode_t mode, DurableWriteFn write, void *ctx) {
    char *tmp = durable_temp_name(path);
    if (!tmp) return -1;
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (fd < 0)
        error_sys(errno, "cannot create temporary file '%s'", tmp);
    else if (!f) {
        error_sys(errno, "fdopen '%s'", tmp);
        close(fd);
    } else if (write_all(f, tmp, write, ctx) == 0) {
        if (rename(tmp, path) != 0)
            error_sys(errno, "renaming '%s' over it", tmp);
        else
            rc = 0;
    }
    if (rc != 0) {
        if (fd >= 0) unlink(tmp);
        error_prefix("%s", path);
    }
    free(tmp);
    return rc == 0 ? durable_sync_parent(path) : -1;
}

static int write_string(FILE *f, const char *tmp, void *text) {
    return fputs(text, f) < 0 ? error_sys(errno, "writing '%s'", tmp) : 0;
}

int durable_write_text(const char *path, mode_t mode, const char *text) {
    return durable_write(path, mode, write_string, (void *)text);
}

/* Removes a directory holding only files (a checkpoint); best effort. */
void durable_remove_flat_dir(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    rmdir(path);
}

/* The stray of a dead writer: name is "<base>.tmp.<pid>.<n>[.old]", pid
 * not alive here; its base into base, *old whether it ends in ".old". */
static bool dead_writers(const char *name, char *base, size_t size, bool *old) {
    const char *at = strstr(name, ".tmp."), *next;
    while (at && (next = strstr(at + 1, ".tmp.")) != NULL) at = next;
    long pid;
    unsigned n;
    int end = 0;
    if (!at || at == name || (size_t)(at - name) >= size ||
        sscanf(at, ".tmp.%ld.%u%n", &pid, &n, &end) != 2 || pid <= 0)
        return false;
    *old = strcmp(at + end, ".old") == 0;
    if (at[end] != '\0' && !*old) return false;
    /* this pid's: a writer of this process, or of one before it that had
     * the same pid (its names are not this one's) */
    if (pid == (long)getpid() ? made_here(n) : kill((pid_t)pid, 0) == 0 || errno != ESRCH)
        return false;
    snprintf(base, size, "%.*s", (int)(at - name), name);
    return true;
}

int durable_remove_strays(const char *dir, bool (*ours)(const char *name, void *ctx), void *ctx,
                          int min_age_s) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    char base[256], path[4400], back[4400];
    time_t now = time(NULL);
    while ((e = readdir(d)) != NULL) {
        bool old;
        if (!dead_writers(e->d_name, base, sizeof base, &old) || !ours(base, ctx)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(back, sizeof back, "%s/%s", dir, base);
        struct stat st, at;
        if (lstat(path, &st) != 0 || now - st.st_mtime < min_age_s) continue;
        if (old && lstat(back, &at) != 0 && errno == ENOENT && rename(path, back) == 0) {
            count++;
            continue;
        }
        if (S_ISDIR(st.st_mode))
            durable_remove_flat_dir(path);
        else
            unlink(path);
        count += lstat(path, &at) != 0; /* a folder of folders is not ours: left */
    }
    closedir(d);
    return count;
}

/* A filesystem without RENAME_EXCHANGE: dir to "<tmp>.old", tmp to dir,
 * the old one to tmp; a short window without dir, in which a crash leaves
 * the old one as "<tmp>.old" (the daemon renames it back:
 * db_checkpoint_collect_strays). */
static int swap_by_renames(const char *tmp, const char *dir) {
    char *old = NULL;
    if (asprintf(&old, "%s.old", tmp) < 0) return error_set("out of memory");
    int rc = 0;
    if (rename(dir, old) != 0) {
        rc = error_sys(errno, "renaming '%s' to '%s'", dir, old);
    } else if (rename(tmp, dir) != 0) {
        int err = errno;
        if (rename(old, dir) != 0) {
            error_set("renaming '%s' to '%s': %s; the old one is left as '%s' (%s)", tmp, dir,
                      strerror(err), old, strerror(errno));
            rc = error_set_errno(err);
        } else {
            rc = error_sys(err, "renaming '%s' to '%s'", tmp, dir);
        }
    } else if (rename(old, tmp) != 0) {
        rc = error_sys(errno, "renaming '%s' to '%s'", old, tmp);
    }
    free(old);
    return rc;
}

int durable_swap_dir(const char *tmp, const char *dir, bool *had) {
    *had = false;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT) return error_sys(errno, "'%s'", dir);
        if (rename(tmp, dir) != 0) return error_sys(errno, "renaming '%s' to '%s'", tmp, dir);
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) return error_set("'%s' exists and is not a directory", dir);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) != 0) {
        if (errno != EINVAL && errno != ENOSYS)
            return error_sys(errno, "exchanging '%s' and '%s'", tmp, dir);
        if (swap_by_renames(tmp, dir) != 0) return -1;
    }
    *had = true;
    return 0;
}

int durable_replace_dir(const char *tmp, const char *dir) {
    bool had;
    if (durable_swap_dir(tmp, dir, &had) != 0) return -1;
    if (had) durable_remove_flat_dir(tmp); /* the old one, under the temporary name */
    return 0;
}

