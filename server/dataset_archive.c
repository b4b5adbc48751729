/* dataset_archive.c - safe extraction of an uploaded archive with
 * libarchive; see dataset_archive.h. */
#include "server/dataset_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io/durable.h"

#define ENTRY_PATH_MAX 1024
/* What an entry costs the disk beyond its data (an inode, a directory
 * block): counted too, so that an archive of a million empty entries
 * cannot fill the disk for free. */
#define ENTRY_OVERHEAD_BYTES 4096
/* Folders inside folders, at most: as deep as an image folder is read
 * (core/data/imagefolder.c), so that nothing is extracted only to be
 * refused. */
#define ENTRY_MAX_DEPTH 32

typedef struct {
    const char *name; /* the archive, for errors */
    int root;         /* fd of the folder being filled */
    int64_t written, max_bytes;
    const char *limit_what;
    bool over_limit;
    char buf[1 << 16];
} Extract;

/* entry's path made relative and plain into out: "./a//b.png" -> "a/b.png";
 * absolute paths and ".." refused. 0, or -1 with the reason. */
static int clean_path(const Extract *x, const char *path, char *out, size_t size) {
    if (!path || !*path) return error_set("archive '%s': an entry without a name", x->name);
    if (path[0] == '/')
        return error_set("archive '%s': entry '%.200s': an absolute path (entries must lie "
                         "inside the folder)", x->name, path);
    size_t len = 0;
    int depth = 0;
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return error_set("archive '%s': entry '%.200s': a '..' component (entries must lie "
                             "inside the folder)", x->name, path);
        if (n && !(n == 1 && p[0] == '.')) {
            if (++depth > ENTRY_MAX_DEPTH + 1)
                return error_set("archive '%s': entry '%.200s...': more than %d folders deep",
                                 x->name, path, ENTRY_MAX_DEPTH);
            if (len + n + 2 > size)
                return error_set("archive '%s': entry '%.200s...': a path over %zu bytes", x->name,
                                 path, size - 1);
            if (len) out[len++] = '/';
            memcpy(out + len, p, n);
            len += n;
        }
        p += n + (p[n] == '/');
    }
    out[len] = '\0';
    return 0;
}

/* n more bytes on the disk, against the limit: -1 with the reason past it. */
static int charge(Extract *x, int64_t n, const char *rel) {
    x->written += n;
    if (x->max_bytes < 0 || x->written <= x->max_bytes) return 0;
    x->over_limit = true;
    return error_set("archive '%s': its files come to more than %lld bytes once extracted "
                     "(at entry '%s'), over %s", x->name, (long long)x->max_bytes, rel,
                     x->limit_what);
}

/* mkdir -p of the directories of `rel` (all of it when whole) under root,
 * each one made charged as an entry: an archive naming a file a/b/.../f
 * makes its folders without listing them. */
static int make_dirs(Extract *x, char *rel, bool whole) {
    for (char *s = rel;; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end) continue;
        if (end && !whole) return 0;
        char c = *s;
        *s = '\0';
        int rc = mkdirat(x->root, rel, 0755);
        int e = errno;
        struct stat st;
        bool ok = rc == 0 || (e == EEXIST && fstatat(x->root, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                              S_ISDIR(st.st_mode));
        if (!ok) {
            *s = c;
            return error_sys(rc == 0 ? EEXIST : e, "archive '%s': entry '%s': cannot make its "
                             "directory", x->name, rel);
        }
        int over = rc == 0 ? charge(x, ENTRY_OVERHEAD_BYTES, rel) : 0;
        *s = c;
        if (over != 0) return -1;
        if (end) return 0;
    }
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A regular file's data, counted against the limit as it is written. */
static int write_file(Extract *x, struct archive *a, char *rel) {
    if (make_dirs(x, rel, false) != 0) return -1;
    int fd = openat(x->root, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno == EEXIST ? error_set("archive '%s': entry '%s' appears twice", x->name, rel)
                               : error_sys(errno, "archive '%s': entry '%s'", x->name, rel);
    int rc = 0;
    for (;;) {
        la_ssize_t n = archive_read_data(a, x->buf, sizeof x->buf);
        if (n == 0) break;
        if (n < 0) {
            rc = error_set("archive '%s': entry '%s': %s", x->name, rel, archive_error_string(a));
            break;
        }
        if ((rc = charge(x, n, rel)) != 0) break;
        if (write_all(fd, x->buf, (size_t)n) != 0) {
            rc = error_sys(errno, "archive '%s': entry '%s': cannot write", x->name, rel);
            break;
        }
    }
    if (close(fd) != 0 && rc == 0) rc = error_sys(errno, "archive '%s': entry '%s'", x->name, rel);
    return rc;
}

static const char *kind_of(mode_t type) {
    switch (type) {
    case AE_IFLNK: return "a symbolic link";
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a fifo";
    case AE_IFSOCK: return "a socket";
    default: return "not a file or directory";
    }
}

/* What macOS puts beside the files it archives: Finder's zips hold it
 * under __MACOSX/, its tar as ._NAME (AppleDouble) files. Neither is data
 * (a ._cat.png is no image) and a lab's Mac adds them unasked. */
static bool macos_metadata(const char *rel) {
    if (strncmp(rel, "__MACOSX", 8) == 0 && (rel[8] == '/' || rel[8] == '\0')) return true;
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    return base[0] == '.' && base[1] == '_';
}

static int extract_entry(Extract *x, struct archive *a, struct archive_entry *e) {
    char rel[ENTRY_PATH_MAX];
    const char *path = archive_entry_pathname(e);
    if (clean_path(x, path, rel, sizeof rel) != 0) return -1;
    if (macos_metadata(rel)) return 0; /* left out: its data is skipped by the next header */
    mode_t type = archive_entry_filetype(e);
    if (archive_entry_hardlink(e))
        return error_set("archive '%s': entry '%s': a hard link (only files and directories "
                         "are taken)", x->name, rel);
    if (type == AE_IFDIR) return rel[0] ? make_dirs(x, rel, true) : 0;
    if (charge(x, ENTRY_OVERHEAD_BYTES, rel) != 0) return -1;
    if (type != AE_IFREG)
        return error_set("archive '%s': entry '%s': %s (only files and directories are taken)",
                         x->name, rel, kind_of(type));
    if (!rel[0]) return error_set("archive '%s': a file entry named '%s'", x->name, path);
    return write_file(x, a, rel);
}

static int extract_all(Extract *x, const char *path) {
    struct archive *a = archive_read_new();
    if (!a) return error_set("archive '%s': out of memory", x->name);
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_zip(a);
    int rc = 0;
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        rc = error_set("archive '%s': not a .tar, .tar.gz or .zip archive (%s)", x->name,
                       archive_error_string(a));
    }
    struct archive_entry *e;
    for (long entries = 0; rc == 0; entries++) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) {
            if (entries == 0) rc = error_set("archive '%s': no entries", x->name);
            break;
        }
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = error_set("archive '%s': %s%s (after %ld entries)", x->name,
                           entries ? "" : "not a .tar, .tar.gz or .zip archive: ",
                           archive_error_string(a), entries);
            break;
        }
        if (entries >= DATASET_ARCHIVE_MAX_ENTRIES)
            rc = error_set("archive '%s': more than %d entries", x->name,
                           DATASET_ARCHIVE_MAX_ENTRIES);
        else
            rc = extract_entry(x, a, e);
    }
    archive_read_free(a);
    return rc;
}

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)f;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

void dataset_archive_remove(const char *dir) {
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int64_t dataset_archive_extract(const char *path, const char *name, const char *dir,
                                int64_t max_bytes, const char *limit_what, bool *over_limit) {
    Extract *x = calloc(1, sizeof *x);
    char part[4200];
    *over_limit = false;
    if (!x) return error_set("archive '%s': out of memory", name);
    snprintf(part, sizeof part, "%s.part", dir);
    x->name = name;
    x->max_bytes = max_bytes;
    x->limit_what = limit_what;
    /* what a crash (or an id used again) left at either name goes first;
     * the messages name the archive, not the server's folders */
    dataset_archive_remove(part);
    dataset_archive_remove(dir);
    int rc = mkdir(part, 0755) != 0
                 ? error_sys(errno, "archive '%s': cannot make the folder to extract it in", name)
                 : 0;
    x->root = rc == 0 ? open(part, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (rc == 0 && x->root < 0)
        rc = error_sys(errno, "archive '%s': cannot open the folder to extract it in", name);
    if (rc == 0) rc = extract_all(x, path);
    if (rc == 0 && syncfs(x->root) != 0)
        rc = error_sys(errno, "archive '%s': cannot sync its extracted files", name);
    if (x->root >= 0) close(x->root);
    if (rc == 0 && rename(part, dir) != 0)
        rc = error_sys(errno, "archive '%s': cannot put its extracted folder in place", name);
    if (rc == 0 && durable_sync_parent(dir) != 0)
        rc = error_sys(error_last()->sys_errno, "archive '%s': cannot sync its folder's name",
                       name);
    if (rc != 0) dataset_archive_remove(part);
    int64_t written = x->written;
    *over_limit = x->over_limit;
    free(x);
    return rc == 0 ? written : -1;
}
