/* csv.c - numeric CSV files with a header row, as pandas.read_csv + a
 * TensorDataset would load them.
 *
 * The file is read one line at a time (next_line), each row parsed straight
 * into fixed-size chunks of float32 features and targets (so a pipe works
 * too: the row count is not needed up front; a chunk is 8192 rows, fewer
 * when rows are wide, at most 4 MB unless one row is more); at the end the
 * chunks are copied into the dataset's tensors and freed. The file text is
 * never held: the peak is one line plus twice the parsed numbers, for a
 * moment, which is about the size of the text of a typical numeric CSV, and
 * no realloc ever copies the growing set.
 *
 * Accepted: comma separators; fields optionally in double quotes with ""
 * for a quote (RFC 4180, but a quoted field may not span lines); CRLF line
 * ends; a UTF-8 BOM; blank lines at the end. Every used field must be a
 * finite number as strtod reads it, and one stored as float32 (features,
 * regression targets) within float32's range, or it would become inf.
 * Errors name the file, the line (the header is line 1) and the column:
 * "data.csv: line 1203, column 'x': 'abc' is not a number".
 *
 * Bounded for a daemon's uploads: a line under CSV_MAX_LINE bytes, a
 * header of at most CSV_MAX_COLUMNS columns (each costs some 80 bytes
 * held, a line of commas would cost 80 times its size), a row of no more
 * fields than the header, and the parsed
 * numbers within dataset_memory_check's limit, counted twice: at the end
 * the chunks are copied into tensors of their size.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/data/dataset.h"
#include "core/error.h"

#define CSV_CHUNK_ROWS 8192
#define CSV_CHUNK_BYTES (4 << 20) /* a chunk's most, unless one row is more */
#define CSV_MAX_LABEL (1 << 24) /* class indices above this are surely not labels */
#define CSV_MAX_COLUMNS (1 << 20)
#define CSV_MAX_LINE (64 << 20) /* a line holds fewer bytes: CSV_MAX_COLUMNS columns of 64 */

typedef struct {
    char **items;
    int count, capacity;
} Fields;

/* Splits `line` (NUL-terminated, no line end) at commas, unquoting quoted
 * fields in place. Returns 0, or -1 with an error for a bad quote or more
 * than `max` fields. */
static int split_fields(char *line, Fields *f, int max, const char *path, long lineno) {
    f->count = 0;
    char *p = line;
    for (;;) {
        if (f->count == max && lineno == 1)
            return error_set("csv: %s: line 1: more than %d columns", path, max);
        if (f->count == max)
            return error_set("csv: %s: line %ld has more fields than the header's %d columns",
                             path, lineno, max);
        if (f->count == f->capacity) {
            int cap = f->capacity ? 2 * f->capacity : 16;
            char **items = realloc(f->items, (size_t)cap * sizeof *items);
            if (!items) return error_set("csv: %s: out of memory", path);
            f->items = items;
            f->capacity = cap;
        }
        if (*p == '"') {
            /* quoted: copy down over the quotes, "" -> " */
            char *out = p, *in = p + 1;
            f->items[f->count++] = out;
            for (;;) {
                if (*in == '\0')
                    return error_set("csv: %s: line %ld, field %d: unterminated quote", path,
                                     lineno, f->count);
                if (*in == '"') {
                    if (in[1] == '"') {
                        *out++ = '"';
                        in += 2;
                        continue;
                    }
                    in++;
                    break;
                }
                *out++ = *in++;
            }
            if (*in != ',' && *in != '\0')
                return error_set("csv: %s: line %ld, field %d: text after a closing quote",
                                 path, lineno, f->count);
            *out = '\0';
            if (*in == '\0') return 0;
            p = in + 1;
        } else {
            f->items[f->count++] = p;
            char *comma = strchr(p, ',');
            if (!comma) return 0;
            *comma = '\0';
            p = comma + 1;
        }
    }
}

/* strtod over the whole field, spaces around allowed; finite values only. */
static int parse_number(const char *field, double *out) {
    const char *p = field;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '\0') return -1;
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p) return -1;
    while (*end == ' ' || *end == '\t') end++;
    if (*end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* A header column, for the sorted index of names. */
typedef struct {
    const char *name;
    int index;
} Column;

/* Chunks of parsed rows. */
typedef struct {
    float *features; /* chunk_rows * nf */
    void *targets;   /* chunk_rows * nt, int64 or float */
} Chunk;

typedef struct {
    const char *path;
    FILE *fp;
    char *line;
    size_t line_cap;
    Fields fields;
    char **names; /* header names, copied */
    int ncols;
    Column *by_name; /* the columns sorted by name: lookups and the duplicate check */
    int *feat, nf; /* column indices */
    int *targ, nt;
    bool regression;
    Chunk *chunks;
    int nchunks, chunk_cap;
    int64_t chunk_rows;
    int64_t rows;
} Csv;

static void csv_cleanup(Csv *c) {
    if (c->fp) fclose(c->fp);
    free(c->line);
    free(c->fields.items);
    for (int i = 0; i < c->ncols; i++) free(c->names[i]);
    free(c->names);
    free(c->by_name);
    free(c->feat);
    free(c->targ);
    for (int i = 0; i < c->nchunks; i++) {
        free(c->chunks[i].features);
        free(c->chunks[i].targets);
    }
    free(c->chunks);
}

/* Line `lineno` into c->line without its line end: its length, -1 at the
 * end of the file (a read error left to ferror), -2 with an error: a NUL
 * byte (split_fields would end the line there), or a line over
 * CSV_MAX_LINE, refused as it grows rather than held whole first. */
static ssize_t next_line(Csv *c, long lineno) {
    size_t n = 0;
    int ch;
    while ((ch = getc_unlocked(c->fp)) != EOF && ch != '\n') {
        if (ch == '\0')
            return error_set("csv: %s: line %ld, byte %zu: a NUL byte (a CSV file has none; "
                             "is it UTF-16?)", c->path, lineno, n + 1), -2;
        if (n + 1 >= c->line_cap) {
            size_t cap = c->line_cap ? 2 * c->line_cap : 4096;
            if (cap > CSV_MAX_LINE)
                return error_set("csv: %s: line %ld is %d bytes or more", c->path, lineno,
                                 CSV_MAX_LINE), -2;
            char *grown = realloc(c->line, cap);
            if (!grown) return error_set("csv: %s: line %ld: out of memory", c->path, lineno), -2;
            c->line = grown;
            c->line_cap = cap;
        }
        c->line[n++] = (char)ch;
    }
    if (ch == EOF && n == 0) return -1;
    while (n > 0 && c->line[n - 1] == '\r') n--;
    if (!c->line) { /* an empty line first */
        if (!(c->line = malloc(c->line_cap = 4096)))
            return error_set("csv: %s: line %ld: out of memory", c->path, lineno), -2;
    }
    c->line[n] = '\0';
    return (ssize_t)n;
}

/* By name, then position. */
static int column_cmp(const void *pa, const void *pb) {
    const Column *a = pa, *b = pb;
    int d = strcmp(a->name, b->name);
    return d ? d : (a->index > b->index) - (a->index < b->index);
}

static int column_name_cmp(const void *pa, const void *pb) {
    return strcmp(((const Column *)pa)->name, ((const Column *)pb)->name);
}

static int find_column(const Csv *c, const char *name, const char *role) {
    const Column key = {name, -1};
    const Column *hit = bsearch(&key, c->by_name, (size_t)c->ncols, sizeof key, column_name_cmp);
    if (hit) return hit->index;
    /* list the header so a typo is easy to see */
    char cols[400] = "";
    size_t used = 0;
    for (int i = 0; i < c->ncols && used < sizeof cols - 8; i++) {
        int w = snprintf(cols + used, sizeof cols - used, "%s'%s'", i ? ", " : "", c->names[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (used >= sizeof cols - 8) snprintf(cols + sizeof cols - 8, 8, ", ...");
    error_set("csv: %s: %s column '%s' is not in the header (columns: %s)", c->path, role, name,
              cols);
    return -1;
}

/* Sorts the header's names into c->by_name and refuses a name given twice,
 * naming the first repeat (the earliest column that repeats an earlier
 * one). Sorted rather than compared pair by pair, here and in find_column:
 * a header of 100,000 columns is a 600 kB upload, not 5e9 strcmp. */
static int index_columns(Csv *c) {
    c->by_name = malloc((size_t)c->ncols * sizeof *c->by_name);
    if (!c->by_name) return error_set("csv: %s: out of memory", c->path);
    for (int i = 0; i < c->ncols; i++) c->by_name[i] = (Column){c->names[i], i};
    qsort(c->by_name, (size_t)c->ncols, sizeof *c->by_name, column_cmp);
    int first = -1, second = -1;
    for (int k = 1; k < c->ncols; k++) {
        const Column *a = &c->by_name[k - 1], *b = &c->by_name[k];
        if (strcmp(a->name, b->name) == 0 && (second < 0 || b->index < second))
            first = a->index, second = b->index;
    }
    if (second >= 0)
        return error_set("csv: %s: line 1: column '%s' appears twice (columns %d and %d)",
                         c->path, c->names[second], first + 1, second + 1);
    return 0;
}

/* The feature columns: those asked for, none of them a target, or every
 * column that is not a target. */
static int pick_features(Csv *c, const CsvOptions *o) {
    c->feat = malloc((size_t)c->ncols * sizeof *c->feat);
    bool *is_target = calloc((size_t)c->ncols, sizeof *is_target);
    if (!c->feat || !is_target) {
        free(is_target);
        return error_set("csv: %s: out of memory", c->path);
    }
    for (int j = 0; j < c->nt; j++) is_target[c->targ[j]] = true;
    int rc = 0;
    c->nf = 0;
    if (o->num_feature_columns > c->ncols) {
        rc = error_set("csv: %s: %d feature columns asked for, the header has %d", c->path,
                       o->num_feature_columns, c->ncols);
    } else if (o->num_feature_columns > 0) {
        for (int i = 0; i < o->num_feature_columns && rc == 0; i++) {
            int col = find_column(c, o->feature_columns[i], "feature");
            if (col < 0) rc = -1;
            else if (is_target[col])
                rc = error_set("csv: %s: column '%s' is both a feature and a label", c->path,
                               o->feature_columns[i]);
            else c->feat[c->nf++] = col;
        }
    } else {
        for (int i = 0; i < c->ncols; i++)
            if (!is_target[i]) c->feat[c->nf++] = i;
    }
    free(is_target);
    if (rc == 0 && c->nf == 0) rc = error_set("csv: %s: no feature columns left", c->path);
    return rc;
}

/* A row's bytes as held: nf float32 features and nt targets (float32
 * for regression, int64 class labels). */
static uint64_t row_bytes(const Csv *c) {
    return (uint64_t)c->nf * sizeof(float) +
           (uint64_t)c->nt * (c->regression ? sizeof(float) : sizeof(int64_t));
}

static int read_header(Csv *c, const CsvOptions *o) {
    ssize_t n = next_line(c, 1);
    if (n == -2) return -1;
    if (n < 0) return error_set("csv: %s: empty file (a header row is needed)", c->path);
    char *text = c->line;
    if ((unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF)
        text += 3; /* UTF-8 byte order mark */
    if (*text == '\0') return error_set("csv: %s: line 1: empty header row", c->path);
    if (split_fields(text, &c->fields, CSV_MAX_COLUMNS, c->path, 1) != 0) return -1;
    c->names = calloc((size_t)c->fields.count, sizeof *c->names);
    if (!c->names) return error_set("csv: %s: out of memory", c->path);
    for (int i = 0; i < c->fields.count; i++) {
        if (!(c->names[i] = strdup(c->fields.items[i])))
            return error_set("csv: %s: out of memory", c->path);
        c->ncols = i + 1;
    }
    if (index_columns(c) != 0) return -1;

    /* targets */
    c->nt = o->num_label_columns > 0 ? o->num_label_columns : 1;
    if (!c->regression && c->nt != 1)
        return error_set("csv: %s: classification takes one label column, not %d", c->path,
                         c->nt);
    c->targ = malloc((size_t)c->nt * sizeof *c->targ);
    if (!c->targ) return error_set("csv: %s: out of memory", c->path);
    if (o->num_label_columns > 0) {
        for (int i = 0; i < c->nt; i++)
            if ((c->targ[i] = find_column(c, o->label_columns[i], "label")) < 0) return -1;
    } else {
        c->targ[0] = c->ncols - 1;
    }

    if (pick_features(c, o) != 0) return -1;
    c->chunk_rows = (int64_t)(CSV_CHUNK_BYTES / row_bytes(c));
    if (c->chunk_rows > CSV_CHUNK_ROWS) c->chunk_rows = CSV_CHUNK_ROWS;
    if (c->chunk_rows < 1) c->chunk_rows = 1;
    return 0;
}

/* A chunk's bytes: chunk_rows rows. */
static uint64_t chunk_bytes(const Csv *c) { return (uint64_t)c->chunk_rows * row_bytes(c); }

static int add_chunk(Csv *c) {
    char what[4200];
    snprintf(what, sizeof what, "csv: %s: row %lld", c->path, (long long)c->rows + 1);
    if (dataset_memory_check(what, 2 * chunk_bytes(c) * (uint64_t)(c->nchunks + 1)) != 0)
        return -1;
    if (c->nchunks == c->chunk_cap) {
        int cap = c->chunk_cap ? 2 * c->chunk_cap : 8;
        Chunk *chunks = realloc(c->chunks, (size_t)cap * sizeof *chunks);
        if (!chunks) return error_set("csv: %s: out of memory", c->path);
        c->chunks = chunks;
        c->chunk_cap = cap;
    }
    Chunk *k = &c->chunks[c->nchunks];
    k->features = malloc((size_t)c->chunk_rows * (size_t)c->nf * sizeof(float));
    k->targets = malloc((size_t)c->chunk_rows * (size_t)c->nt *
                        (c->regression ? sizeof(float) : sizeof(int64_t)));
    if (!k->features || !k->targets) {
        free(k->features);
        free(k->targets);
        return error_set("csv: %s: out of memory after %lld rows", c->path, (long long)c->rows);
    }
    c->nchunks++;
    return 0;
}

/* Column `col` of the row just split, as a number; `as_float` when it is
 * stored as float32. */
static int field_value(const Csv *c, long lineno, int col, bool as_float, double *out) {
    const char *field = c->fields.items[col];
    const char *more = strlen(field) > 40 ? "..." : "";
    if (parse_number(field, out) != 0)
        return error_set("csv: %s: line %ld, column '%s': '%.40s%s' is not a number", c->path,
                         lineno, c->names[col], field, more);
    if (as_float && fabs(*out) > FLT_MAX)
        return error_set("csv: %s: line %ld, column '%s': '%.40s%s' is outside float32's range "
                         "(magnitudes up to %.4g)", c->path, lineno, c->names[col], field, more,
                         FLT_MAX);
    return 0;
}

static int read_rows(Csv *c) {
    long lineno = 1, blank_since = 0;
    ssize_t n;
    while ((n = next_line(c, lineno + 1)) >= 0) {
        lineno++;
        if (n == 0) {
            if (!blank_since) blank_since = lineno;
            continue;
        }
        if (blank_since)
            return error_set("csv: %s: line %ld is empty (blank lines are only allowed at the "
                             "end)", c->path, blank_since);
        if (split_fields(c->line, &c->fields, c->ncols, c->path, lineno) != 0) return -1;
        if (c->fields.count != c->ncols)
            return error_set("csv: %s: line %ld has %d field%s but the header has %d columns",
                             c->path, lineno, c->fields.count, c->fields.count == 1 ? "" : "s",
                             c->ncols);
        int64_t r = c->rows % c->chunk_rows;
        if (r == 0 && add_chunk(c) != 0) return -1;
        Chunk *k = &c->chunks[c->nchunks - 1];
        for (int i = 0; i < c->nf; i++) {
            double v;
            if (field_value(c, lineno, c->feat[i], true, &v) != 0) return -1;
            k->features[r * c->nf + i] = (float)v;
        }
        for (int j = 0; j < c->nt; j++) {
            double v;
            const char *field = c->fields.items[c->targ[j]];
            if (field_value(c, lineno, c->targ[j], c->regression, &v) != 0) return -1;
            if (c->regression) {
                ((float *)k->targets)[r * c->nt + j] = (float)v;
            } else {
                if (v != floor(v) || v < 0 || v >= CSV_MAX_LABEL)
                    return error_set("csv: %s: line %ld, column '%s': '%s' is not a class label "
                                     "(an integer from 0 to %d); for regression targets use "
                                     "a regression loss", c->path, lineno, c->names[c->targ[j]],
                                     field, CSV_MAX_LABEL - 1);
                ((int64_t *)k->targets)[r] = (int64_t)v;
            }
        }
        c->rows++;
    }
    if (n == -2) return -1;
    if (ferror(c->fp))
        return error_set("csv: %s: read error after line %ld: %s", c->path, lineno,
                         strerror(errno));
    if (c->rows == 0) return error_set("csv: %s: no data rows after the header", c->path);
    return 0;
}

Dataset *dataset_load_csv(const char *path, const CsvOptions *opts) {
    CsvOptions defaults = {0};
    if (!opts) opts = &defaults;
    if (!path) return error_set("csv: no path given"), NULL;
    Csv c = {.path = path, .regression = opts->regression};
    Tensor *x = NULL, *y = NULL;
    if (!(c.fp = fopen(path, "r"))) {
        error_set("csv: %s: %s", path, strerror(errno));
        goto fail;
    }
    if (read_header(&c, opts) != 0 || read_rows(&c) != 0) goto fail;

    /* Chunks into tensors, freeing each as it is copied. */
    x = tensor_empty(SHAPE(c.rows, c.nf), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    y = c.regression ? tensor_empty(SHAPE(c.rows, c.nt), DTYPE_FLOAT32, DEVICE_CPU_INIT)
                     : tensor_empty(SHAPE(c.rows), DTYPE_INT64, DEVICE_CPU_INIT);
    if (!x || !y) {
        error_prefix("csv: %s", path);
        goto fail;
    }
    size_t tsize = c.regression ? sizeof(float) : sizeof(int64_t);
    for (int i = 0; i < c.nchunks; i++) {
        int64_t first = (int64_t)i * c.chunk_rows;
        int64_t count = c.rows - first < c.chunk_rows ? c.rows - first : c.chunk_rows;
        memcpy((float *)tensor_data(x) + first * c.nf, c.chunks[i].features,
               (size_t)(count * c.nf) * sizeof(float));
        memcpy((char *)tensor_data(y) + (size_t)(first * c.nt) * tsize, c.chunks[i].targets,
               (size_t)(count * c.nt) * tsize);
        free(c.chunks[i].features);
        free(c.chunks[i].targets);
        c.chunks[i].features = NULL;
        c.chunks[i].targets = NULL;
    }

    const char *slash = strrchr(path, '/');
    char targets[160] = "";
    for (int j = 0, used = 0; j < c.nt && used < (int)sizeof targets - 1; j++) {
        int w = snprintf(targets + used, sizeof targets - (size_t)used, "%s'%s'", j ? ", " : "",
                         c.names[c.targ[j]]);
        if (w < 0) break;
        used += w;
    }
    Dataset *ds = dataset_from_tensors(x, y, NULL);
    x = y = NULL;
    if (!ds) goto fail;
    if (c.regression)
        snprintf(ds->description, sizeof ds->description,
                 "csv: %s: %lld samples of %d features, %d regression target%s (%s)",
                 slash ? slash + 1 : path, (long long)c.rows, c.nf, c.nt, c.nt == 1 ? "" : "s",
                 targets);
    else
        snprintf(ds->description, sizeof ds->description,
                 "csv: %s: %lld samples of %d features, label %s, %d classes",
                 slash ? slash + 1 : path, (long long)c.rows, c.nf, targets, ds->num_classes);
    csv_cleanup(&c);
    return ds;
fail:
    tensor_release(x);
    tensor_release(y);
    csv_cleanup(&c);
    return NULL;
}
