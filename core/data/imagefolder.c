/* imagefolder.c - torchvision's ImageFolder: root/<class>/.../<name>.png or .jpg.
 *
 * The rules are torchvision's (datasets/folder.py, 0.14):
 *   classes   the sub-directories of root (hidden ones too), sorted by
 *             name (Python's str order: UTF-8 byte order); a class's index
 *             is its position
 *   samples   per class, os.walk(class_dir, followlinks=True) sorted: the
 *             directories by their full path, the files of each sorted;
 *             a file is a sample when its name ends, case-insensitively,
 *             in one of IMG_EXTENSIONS, and is skipped otherwise
 *   errors    no class folder: "Couldn't find any class folder in ROOT.";
 *             classes without a sample: "Found no valid file for the
 *             classes A, B. Supported extensions are: .jpg, ..."
 * A file with an image extension that does not decode (a text file named
 * .png, a truncated PNG, a .bmp: only PNG and JPEG are decoded) fails the
 * load naming it, relative to root; so do images of different sizes
 * (resizing is a transform's job), naming the first that differs.
 *
 * The first image is decoded alone for the size; the rest by OpenMP's
 * threads straight into the dataset's rows, the failure of the lowest
 * index reported so that the error does not depend on the threads.
 *
 * Lazily (a job's data), only the first image is decoded at load: the
 * dataset keeps the file list, and the DataLoader's threads decode each
 * batch's files as they gather it, as torchvision's workers do, so a folder
 * needs no more memory than its batches. A file that fails then (changed
 * since it was checked) fails the batch, naming it. An upload's check
 * decodes every image once and drops it, in no more memory than a thread's
 * image each, and no more threads than the memory datasets may take holds
 * such images, shared by every folder decoding at once (an upload's check,
 * an import's, a job's eager load: dataset_imagefolder_decode_reserve).
 */
#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/data/dataset.h"
#include "core/data/image_decode.h"
#include "core/error.h"

#define WALK_MAX_DEPTH 32           /* symlinked directories may loop */
#define FOLDER_MAX_FILES 50000000   /* far more than memory would hold */
#define FOLDER_MAX_BYTES (INT64_C(1) << 40)

static const char *const IMG_EXTENSIONS[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
                                             ".pgm", ".tif", ".tiff", ".webp", NULL};

typedef struct {
    char **items;
    int n, cap;
} Names;

static void names_free(Names *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Takes s (may be NULL: out of memory). */
static int names_push(Names *l, char *s) {
    if (s && l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        char **items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) {
            free(s);
            s = NULL;
        } else {
            l->items = items;
            l->cap = cap;
        }
    }
    if (!s) return error_set("out of memory");
    l->items[l->n++] = s;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b); /* byte order */
}

static void names_sort(Names *l) {
    if (l->n > 1) qsort(l->items, (size_t)l->n, sizeof *l->items, cmp_str);
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s", a, *a && *b ? "/" : "", b);
    return s;
}

static bool has_image_extension(const char *name) {
    size_t n = strlen(name);
    for (int i = 0; IMG_EXTENSIONS[i]; i++) {
        size_t k = strlen(IMG_EXTENSIONS[i]);
        if (n >= k && strcasecmp(name + n - k, IMG_EXTENSIONS[i]) == 0) return true;
    }
    return false;
}

/* The entries of root/rel (names only, unsorted): directories into dirs
 * (as rel/name), image files into files (as rel/name). stat follows
 * links, as os.walk(followlinks=True) and scandir's is_dir() do. */
static int list_dir(const char *root, const char *rel, Names *dirs, Names *files) {
    char *path = join(root, rel);
    DIR *d = path ? opendir(path) : NULL;
    if (!d) {
        int e = errno;
        free(path);
        return error_sys(e, "%s", *rel ? rel : root);
    }
    int rc = 0;
    struct dirent *ent;
    while (rc == 0 && (ent = readdir(d)) != NULL) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
        char *full = join(path, ent->d_name);
        struct stat st;
        bool is_dir = full && stat(full, &st) == 0 && S_ISDIR(st.st_mode);
        free(full);
        if (is_dir && dirs)
            rc = names_push(dirs, join(rel, ent->d_name));
        else if (!is_dir && files && has_image_extension(ent->d_name))
            rc = names_push(files, join(rel, ent->d_name));
    }
    closedir(d);
    free(path);
    return rc;
}

/* ---- classes ---- */

int dataset_imagefolder_classes(const char *root, char ***names, int *n) {
    Names classes = {0};
    *names = NULL;
    *n = 0;
    if (list_dir(root, "", &classes, NULL) != 0) {
        names_free(&classes);
        return error_prefix("imagefolder");
    }
    if (classes.n == 0) {
        names_free(&classes);
        return error_set("imagefolder %s: Couldn't find any class folder in it.", root);
    }
    names_sort(&classes);
    *names = classes.items;
    *n = classes.n;
    return 0;
}

void dataset_imagefolder_classes_free(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* ---- the samples: every image under each class, in torchvision's order ---- */

/* The directories under root/cls (cls included), walked depth-first. */
static int walk_dirs(const char *root, const char *rel, int depth, Names *dirs) {
    if (depth > WALK_MAX_DEPTH)
        return error_set("%s: more than %d directories deep (a symlink loop?)", rel,
                         WALK_MAX_DEPTH);
    Names sub = {0};
    int rc = names_push(dirs, strdup(rel)) || list_dir(root, rel, &sub, NULL);
    for (int i = 0; rc == 0 && i < sub.n; i++) rc = walk_dirs(root, sub.items[i], depth + 1, dirs);
    names_free(&sub);
    return rc ? -1 : 0;
}

/* Appends the samples of class `cls` (index c) to files/labels. */
static int class_samples(const char *root, const char *cls, int c, Names *files,
                         int64_t **labels, int *cap) {
    Names dirs = {0};
    int rc = walk_dirs(root, cls, 0, &dirs);
    names_sort(&dirs); /* sorted(os.walk(...)): by the directory's path */
    for (int i = 0; rc == 0 && i < dirs.n; i++) {
        Names here = {0};
        rc = list_dir(root, dirs.items[i], NULL, &here);
        names_sort(&here);
        for (int k = 0; rc == 0 && k < here.n; k++) {
            if (files->n >= FOLDER_MAX_FILES) {
                rc = error_set("more than %d images", FOLDER_MAX_FILES);
                break;
            }
            if (files->n == *cap) {
                int ncap = *cap ? *cap * 2 : 1024;
                int64_t *l = realloc(*labels, (size_t)ncap * sizeof *l);
                if (!l) {
                    rc = error_set("out of memory");
                    break;
                }
                *labels = l;
                *cap = ncap;
            }
            (*labels)[files->n] = c;
            rc = names_push(files, here.items[k]);
            here.items[k] = NULL;
        }
        names_free(&here);
    }
    names_free(&dirs);
    return rc;
}

/* "Found no valid file for the classes A, B. Supported extensions are: ..." */
static int no_valid_file(const char *const *empty, int n) {
    char list[ERROR_MAX / 2] = "", exts[200] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", empty[i]);
    len = 0;
    for (int i = 0; IMG_EXTENSIONS[i]; i++)
        len += (size_t)snprintf(exts + len, sizeof exts - len, "%s%s", i ? ", " : "",
                                IMG_EXTENSIONS[i]);
    return error_set("Found no valid file for the classes %s. Supported extensions "
                     "are: %s", list, exts);
}

static int list_samples(const char *root, char **classes, int num_classes, Names *files,
                        int64_t **labels) {
    int cap = 0, rc = 0, num_empty = 0;
    const char **empty = calloc((size_t)num_classes, sizeof *empty);
    if (!empty) return error_set("out of memory");
    for (int c = 0; rc == 0 && c < num_classes; c++) {
        int before = files->n;
        rc = class_samples(root, classes[c], c, files, labels, &cap);
        if (rc == 0 && files->n == before) empty[num_empty++] = classes[c];
    }
    if (rc == 0 && num_empty) rc = no_valid_file(empty, num_empty);
    free(empty);
    return rc;
}

/* ---- decoding ---- */

typedef struct {
    const char *root;
    char **files;
    int channels, width, height;
    uint8_t *rows; /* the inputs tensor's data */
    int64_t failed;  /* lowest failing index, or -1 */
    char error[ERROR_MAX];
} Decode;

/* File i into img: 0; -1 with an error; 1 (its size in img, no pixels)
 * when it is not of the folder's size, once that is known (d->width). */
static int decode_one(const Decode *d, int64_t i, Image *img) {
    char *path = join(d->root, d->files[i]);
    if (!path) return error_set("out of memory");
    Image like = {.width = d->width, .height = d->height};
    int rc = image_decode(path, d->files[i], d->channels, d->width ? &like : NULL, img);
    free(path);
    return rc;
}

static void record_failure(Decode *d, int64_t i) {
#pragma omp critical(imagefolder_failure)
    if (d->failed < 0 || i < d->failed) {
        d->failed = i;
        snprintf(d->error, sizeof d->error, "%s", error_get());
    }
}

static void decode_into_row(Decode *d, int64_t i) {
    Image img;
    int rc = decode_one(d, i, &img);
    if (rc == 1)
        error_set("%s: %dx%d pixels, but %s (the first image) is %dx%d; the images of a folder "
                  "must be of one size (resize them first)", d->files[i], img.width, img.height,
                  d->files[0], d->width, d->height);
    if (rc != 0) {
        record_failure(d, i);
        return;
    }
    if (d->rows) { /* NULL: only checking */
        size_t row = (size_t)d->channels * d->width * d->height;
        memcpy(d->rows + (size_t)i * row, img.pixels, row);
    }
    free(img.pixels);
}

/* A decoding holds the image's rows as its file has them (up to 4 bytes a
 * pixel: RGBA, 16-bit grey), a progressive JPEG's coefficients (2 bytes a
 * sample, 3 samples a pixel at most) and the planar copy: a 64-Mpixel
 * image, 832 MB. A machine of 64 cores would hold 53 GB at once without a
 * cap, and two uploads and four imports decode at once. */
static uint64_t decode_bytes(int width, int height, int channels) {
    return (uint64_t)width * (uint64_t)height * (uint64_t)(4 + 6 + channels);
}

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_freed = PTHREAD_COND_INITIALIZER;
static uint64_t held; /* bytes the decodings under way hold */

int dataset_imagefolder_decode_reserve(int width, int height, int channels, int64_t images) {
    int threads = omp_get_max_threads();
    if (images < threads) threads = images > 1 ? (int)images : 1;
    uint64_t limit = dataset_memory_limit(), each = decode_bytes(width, height, channels);
    if (!limit || !each) return threads;
    pthread_mutex_lock(&held_lock);
    /* one decoding fits what is left, or nothing is held (one image over
     * the limit decodes alone) */
    while (held > 0 && (held >= limit || limit - held < each))
        pthread_cond_wait(&held_freed, &held_lock);
    uint64_t left = held < limit ? limit - held : 0;
    if (left / each < (uint64_t)threads) threads = left / each > 0 ? (int)(left / each) : 1;
    held += (uint64_t)threads * each;
    pthread_mutex_unlock(&held_lock);
    return threads;
}

void dataset_imagefolder_decode_release(int threads, int width, int height, int channels) {
    if (!dataset_memory_limit()) return;
    uint64_t bytes = (uint64_t)threads * decode_bytes(width, height, channels);
    pthread_mutex_lock(&held_lock);
    held = held > bytes ? held - bytes : 0;
    pthread_cond_broadcast(&held_freed);
    pthread_mutex_unlock(&held_lock);
}

/* Images 1.. decoded by OpenMP's threads, into d->rows or (NULL) only to
 * check them; the failure of the lowest index reported. */
static int decode_rest(Decode *d, int64_t n) {
    d->failed = -1;
    if (n <= 1) return 0;
    int threads = dataset_imagefolder_decode_reserve(d->width, d->height, d->channels, n - 1);
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads)
    for (int64_t i = 1; i < n; i++) decode_into_row(d, i);
    dataset_imagefolder_decode_release(threads, d->width, d->height, d->channels);
    return d->failed >= 0 ? error_set("%s", d->error) : 0;
}

/* Inputs uint8 [N, C, H, W] from the files; the first decoded alone. */
static Tensor *decode_all(const char *root, Names *files, int channels) {
    Image first;
    Decode d = {.root = root, .files = files->items, .channels = channels, .failed = -1};
    if (decode_one(&d, 0, &first) != 0) return NULL;
    d.width = first.width;
    d.height = first.height;
    int64_t row = (int64_t)channels * first.width * first.height;
    if (row * files->n > FOLDER_MAX_BYTES) {
        free(first.pixels);
        error_set("%d images of %dx%d are over %lld bytes", files->n,
                  first.width, first.height, (long long)FOLDER_MAX_BYTES);
        return NULL;
    }
    char what[64];
    snprintf(what, sizeof what, "%d images of %dx%d", files->n, first.width, first.height);
    if (dataset_memory_check(what, (uint64_t)(row + (int64_t)sizeof(int64_t)) * files->n) != 0) {
        free(first.pixels);
        return NULL;
    }
    int64_t shape[4] = {files->n, channels, first.height, first.width};
    Tensor *t = tensor_empty(4, shape, DTYPE_UINT8, DEVICE_CPU_INIT);
    if (!t) return free(first.pixels), NULL;
    d.rows = tensor_data(t);
    memcpy(d.rows, first.pixels, (size_t)row);
    free(first.pixels);
    if (decode_rest(&d, files->n) != 0) {
        tensor_release(t);
        return NULL;
    }
    return t;
}

/* ---- lazily: decoded as the loader gathers ---- */

typedef struct {
    DatasetProducer base;
    Decode d;         /* root, files, channels, width, height; rows unused */
    char *root;       /* owned copy of d.root */
    Names files;      /* owned: d.files */
    int64_t *labels;  /* owned */
} FolderProducer;

static void folder_destroy(DatasetProducer *p) {
    FolderProducer *f = (FolderProducer *)p;
    free(f->root);
    names_free(&f->files);
    free(f->labels);
    free(f);
}

/* Row i of the batch: file idx[i], decoded and checked for its size. */
static int folder_gather(const DatasetProducer *p, const int64_t *idx, int64_t n, void *inputs,
                         void *targets) {
    const FolderProducer *f = (const FolderProducer *)p;
    Decode d = f->d;
    for (int64_t i = 0; i < n; i++) {
        Image img;
        int rc = decode_one(&d, idx[i], &img);
        if (rc == 1) {
            error_set("%s: %dx%d pixels, but the folder's images are %dx%d", d.files[idx[i]],
                      img.width, img.height, d.width, d.height);
            return error_prefix("imagefolder %s", d.root);
        }
        if (rc != 0) return error_prefix("imagefolder %s", d.root);
        memcpy((uint8_t *)inputs + (size_t)i * d.channels * d.width * d.height, img.pixels,
               (size_t)d.channels * d.width * d.height);
        free(img.pixels);
        ((int64_t *)targets)[i] = f->labels[idx[i]];
    }
    return 0;
}

static const DatasetProducerOps folder_ops = {folder_gather, folder_destroy};

/* Takes over files and labels (also on failure). With check, every image
 * is decoded once now and dropped: its errors are the load's. */
static Dataset *folder_lazy(const char *root, Names *files, int64_t *labels, int channels,
                            int num_classes, bool check) {
    FolderProducer *f = calloc(1, sizeof *f);
    Image first = {0};
    if (f) {
        f->base.ops = &folder_ops;
        atomic_init(&f->base.refs, 1);
        f->files = *files;
        f->labels = labels;
        f->root = strdup(root);
    } else {
        names_free(files);
        free(labels);
    }
    *files = (Names){0};
    if (!f || !f->root) {
        if (f) folder_destroy(&f->base);
        return error_set("out of memory"), NULL;
    }
    f->d = (Decode){.root = f->root, .files = f->files.items, .channels = channels, .failed = -1};
    if (decode_one(&f->d, 0, &first) != 0) {
        folder_destroy(&f->base);
        return NULL;
    }
    f->d.width = first.width, f->d.height = first.height;
    free(first.pixels);
    Decode all = f->d; /* rows NULL: decoded, checked, dropped */
    if (check && decode_rest(&all, f->files.n) != 0) {
        folder_destroy(&f->base);
        return NULL;
    }
    DatasetField in = {DTYPE_UINT8, 3, {channels, first.height, first.width}};
    DatasetField out = {DTYPE_INT64, 0, {0}};
    return dataset_lazy(&f->base, f->files.n, &in, &out, num_classes, NULL);
}

/* "imagefolder: 10 classes (0, 1, ...), 200 images of uint8 [3, 28, 28]" */
static void describe(Dataset *ds, char **classes, int n, int channels) {
    char list[256] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof list - 8; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", classes[i]);
    if (len >= sizeof list - 8) snprintf(list + sizeof list - 8, 8, ", ...");
    const int64_t *s = ds->input.shape;
    snprintf(ds->description, sizeof ds->description,
             "imagefolder: %d classes (%s), %lld images of uint8 [%d, %lld, %lld]%s", n, list,
             (long long)ds->n, channels, (long long)s[1], (long long)s[2],
             ds->producer ? ", decoded as loaded" : "");
}

Dataset *dataset_load_imagefolder(const char *root, bool grayscale, ImageFolderDecode when) {
    char **classes;
    int num_classes;
    if (dataset_imagefolder_classes(root, &classes, &num_classes) != 0) return NULL; /* named */
    Names files = {0};
    int64_t *labels = NULL;
    Dataset *ds = NULL;
    int channels = grayscale ? 1 : 3;
    if (list_samples(root, classes, num_classes, &files, &labels) == 0) {
        if (when != IMAGEFOLDER_DECODE_NOW) {
            ds = folder_lazy(root, &files, labels, channels, num_classes,
                             when == IMAGEFOLDER_CHECK_NOW_DECODE_PER_BATCH);
            labels = NULL;
        } else {
            Tensor *inputs = decode_all(root, &files, channels);
            Tensor *targets = inputs ? tensor_from_buffer(labels, 1, (int64_t[]){files.n},
                                                          DTYPE_INT64) : NULL;
            ds = dataset_from_tensors(inputs, targets, NULL);
        }
        if (ds) describe(ds, classes, num_classes, channels);
    }
    if (!ds) error_prefix("imagefolder %s", root);
    free(labels);
    names_free(&files);
    dataset_imagefolder_classes_free(classes, num_classes);
    return ds;
}
