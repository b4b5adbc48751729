/* tokens.c - token data as lazy datasets: uint16 .bin files (raw, as
 * nanoGPT's prepare.py writes them, or llm.c's with its header) and UTF-8
 * text with a character vocabulary (nanoGPT's shakespeare_char); see
 * dataset.h for the formats and the windows.
 *
 * The tokens stay as the file has them, little-endian uint16: a .bin is
 * mapped and read in place; a text's character ids are written once into
 * one uint16 buffer (2 bytes a character). A sample's window is cut from
 * them when the DataLoader gathers its batch, never stored as a row, so a
 * corpus of N tokens costs N * 2 bytes whatever the block_size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/data/dataset.h"
#include "core/error.h"

#define LLMC_MAGIC 20240520
#define LLMC_HEADER_BYTES (256 * 4)
#define MAX_VOCAB 65536          /* uint16 ids */
#define MAX_CODE_POINT 0x110000

typedef struct {
    DatasetProducer base;
    void *map; /* the mapped file, or NULL */
    size_t map_len;
    uint8_t *owned;     /* a text's ids, or NULL */
    const uint8_t *tok; /* token i: little-endian uint16 at tok + 2i */
    int64_t lo;         /* the split's first token */
    int64_t block_size;
} TokenProducer;

static inline int64_t tok_at(const uint8_t *tok, int64_t i) {
    return (int64_t)tok[2 * i] | (int64_t)tok[2 * i + 1] << 8;
}

/* Window idx[i] of the split: inputs tokens[o : o+T], targets one on. */
static int token_gather(const DatasetProducer *p, const int64_t *idx, int64_t n, void *inputs,
                        void *targets) {
    const TokenProducer *t = (const TokenProducer *)p;
    int64_t T = t->block_size, *x = inputs, *y = targets;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *w = t->tok + 2 * (size_t)(t->lo + idx[i] * T);
        for (int64_t j = 0; j < T; j++) {
            x[i * T + j] = tok_at(w, j);
            y[i * T + j] = tok_at(w, j + 1);
        }
    }
    return 0;
}

static void token_destroy(DatasetProducer *p) {
    TokenProducer *t = (TokenProducer *)p;
    if (t->map) munmap(t->map, t->map_len);
    free(t->owned);
    free(t);
}

static const DatasetProducerOps token_ops = {token_gather, token_destroy};

/* ---- splits and windows ---- */

void dataset_split_range(int64_t n, DatasetSplit split, double val_fraction, int64_t *lo,
                         int64_t *hi) {
    int64_t cut = split == DATASET_SPLIT_ALL ? n : (int64_t)((double)n * (1.0 - val_fraction));
    *lo = split == DATASET_SPLIT_VAL ? cut : 0;
    *hi = split == DATASET_SPLIT_TRAIN ? cut : n;
}

int dataset_token_windows(const char *what, DatasetSplit split, int64_t tokens,
                          int64_t block_size, int64_t *windows) {
    *windows = tokens > block_size ? (tokens - 1) / block_size : 0;
    if (*windows > 0) return 0;
    return error_set("%s: block_size %lld needs at least %lld tokens, but %s has %lld", what,
                     (long long)block_size, (long long)block_size + 1,
                     split == DATASET_SPLIT_ALL     ? "the file"
                     : split == DATASET_SPLIT_TRAIN ? "its train split"
                                                    : "its val split",
                     (long long)tokens);
}

static const char *const split_names[] = {"all", "train", "val"};

const char *dataset_split_name(DatasetSplit split) { return split_names[split]; }

int dataset_split_parse(const char *name, DatasetSplit *out) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, split_names[i]) == 0) return *out = (DatasetSplit)i, 0;
    return -1;
}

/* ---- files ---- */

/* The whole file mapped read-only. */
static int map_file(const char *path, void **map, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error_set("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0)
        error_set("%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        error_set("%s: not a regular file", path);
    else if (st.st_size == 0)
        error_set("%s: the file is empty (no tokens)", path);
    else if ((*map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
        error_set("%s: cannot map %lld bytes: %s", path, (long long)st.st_size, strerror(errno));
    else {
        *len = (size_t)st.st_size;
        rc = 0;
    }
    close(fd);
    return rc;
}

static int32_t le32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

/* A .bin's tokens: after llm.c's header when it starts with the magic,
 * else the whole file. *llmc says which. */
static int bin_tokens(const char *path, const uint8_t *b, size_t len, const uint8_t **tok,
                      int64_t *count, bool *llmc) {
    *llmc = len >= LLMC_HEADER_BYTES && le32(b) == LLMC_MAGIC;
    if (!*llmc) {
        if (len % 2)
            return error_set("%s: %zu bytes, an odd count: a .bin of uint16 tokens has 2 bytes "
                             "a token", path, len);
        *tok = b;
        *count = (int64_t)(len / 2);
        return 0;
    }
    int32_t version = le32(b + 4), n = le32(b + 8);
    if (version != 1)
        return error_set("%s: llm.c header version %d; only version 1 (uint16 tokens) is read",
                         path, version);
    if (n < 0 || (uint64_t)n * 2 != len - LLMC_HEADER_BYTES)
        return error_set("%s: the llm.c header says %d tokens (%lld bytes after its %d), but the "
                         "file has %zu bytes after it", path, n, (long long)n * 2,
                         LLMC_HEADER_BYTES, len - LLMC_HEADER_BYTES);
    *tok = b + LLMC_HEADER_BYTES;
    *count = n;
    return 0;
}

/* ---- UTF-8 text ---- */

/* The character at s[*i] (n bytes), strictly as Python decodes UTF-8 (no
 * overlong forms, surrogates or code points past U+10FFFF), with \r\n
 * and \r read as \n; *i moves past it. -1 when the bytes at *i are not
 * UTF-8. */
static int next_char(const uint8_t *s, size_t n, size_t *i, uint32_t *cp) {
    size_t at = *i;
    uint8_t c = s[at];
    if (c < 0x80) {
        *cp = c == '\r' ? '\n' : c;
        *i = at + 1 + (c == '\r' && at + 1 < n && s[at + 1] == '\n');
        return 0;
    }
    int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || at + (size_t)len > n) return -1;
    /* the second byte's range excludes overlongs, surrogates and > U+10FFFF */
    uint8_t lo2 = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    uint8_t hi2 = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (s[at + 1] < lo2 || s[at + 1] > hi2) return -1;
    uint32_t v = c & (0x7F >> len);
    for (int k = 1; k < len; k++) {
        if ((s[at + k] & 0xC0) != 0x80) return -1;
        v = v << 6 | (s[at + k] & 0x3F);
    }
    *cp = v;
    *i = at + (size_t)len;
    return 0;
}

/* A set of code points, and each one's rank in it (its id). */
typedef struct {
    uint64_t bits[MAX_CODE_POINT / 64];
    uint32_t rank[MAX_CODE_POINT / 64]; /* members below word w */
} CharSet;

static uint32_t char_id(const CharSet *cs, uint32_t cp) {
    uint64_t below = cs->bits[cp / 64] & ((UINT64_C(1) << (cp % 64)) - 1);
    return cs->rank[cp / 64] + (uint32_t)__builtin_popcountll(below);
}

/* Pass 1: validates the text, collects its characters, counts them. */
static int scan_text(const char *path, const uint8_t *s, size_t n, CharSet *cs, int64_t *count,
                     int *vocab) {
    *count = 0;
    for (size_t i = 0; i < n; (*count)++) {
        uint32_t cp;
        size_t at = i;
        if (next_char(s, n, &i, &cp) != 0)
            return error_set("%s: invalid UTF-8 at byte %zu (0x%02x)", path, at, s[at]);
        if (cp == 0)
            return error_set("%s: a NUL character at byte %zu (a text file has none)", path, at);
        cs->bits[cp / 64] |= UINT64_C(1) << (cp % 64);
    }
    uint32_t total = 0;
    for (size_t w = 0; w < MAX_CODE_POINT / 64; w++) {
        cs->rank[w] = total;
        total += (uint32_t)__builtin_popcountll(cs->bits[w]);
    }
    if (total > MAX_VOCAB)
        return error_set("%s: %u distinct characters; a character vocabulary holds at most %d",
                         path, total, MAX_VOCAB);
    *vocab = (int)total;
    return 0;
}

/* The characters of the set in id order, as a UTF-8 string. */
static char *vocab_string(const CharSet *cs, int n) {
    char *out = malloc((size_t)n * 4 + 1), *p = out;
    if (!out) return error_set("text: out of memory for the vocabulary"), NULL;
    for (uint32_t cp = 1; cp < MAX_CODE_POINT; cp++) {
        if (!(cs->bits[cp / 64] >> (cp % 64) & 1)) continue;
        if (cp < 0x80)
            *p++ = (char)cp;
        else if (cp < 0x800)
            *p++ = (char)(0xC0 | cp >> 6), *p++ = (char)(0x80 | (cp & 0x3F));
        else if (cp < 0x10000)
            *p++ = (char)(0xE0 | cp >> 12), *p++ = (char)(0x80 | (cp >> 6 & 0x3F)),
            *p++ = (char)(0x80 | (cp & 0x3F));
        else
            *p++ = (char)(0xF0 | cp >> 18), *p++ = (char)(0x80 | (cp >> 12 & 0x3F)),
            *p++ = (char)(0x80 | (cp >> 6 & 0x3F)), *p++ = (char)(0x80 | (cp & 0x3F));
    }
    *p = '\0';
    return out;
}

/* The text's character ids into t->owned (pass 2) and its vocabulary. */
static int text_tokens(const char *path, const uint8_t *s, size_t n, TokenProducer *t,
                       int64_t *count, char **vocab, int *vocab_n) {
    CharSet *cs = calloc(1, sizeof *cs);
    if (!cs) return error_set("%s: out of memory", path);
    int rc = -1;
    if (scan_text(path, s, n, cs, count, vocab_n) != 0 ||
        dataset_memory_check(path, (uint64_t)*count * 2) != 0)
        goto done;
    if (!(t->owned = malloc((size_t)*count * 2))) {
        error_set("%s: out of memory for %lld tokens", path, (long long)*count);
        goto done;
    }
    uint8_t *out = t->owned;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        (void)next_char(s, n, &i, &cp); /* valid: scan_text read it */
        uint32_t id = char_id(cs, cp);
        *out++ = (uint8_t)(id & 0xFF);
        *out++ = (uint8_t)(id >> 8);
    }
    t->tok = t->owned;
    rc = (*vocab = vocab_string(cs, *vocab_n)) ? 0 : -1;
done:
    free(cs);
    return rc;
}

/* ---- datasets ---- */

static int check_options(const char *path, const TokenOptions *o) {
    if (o->block_size < 1)
        return error_set("%s: block_size must be >= 1, got %lld", path, (long long)o->block_size);
    if (o->split != DATASET_SPLIT_ALL && !(o->val_fraction > 0 && o->val_fraction < 1))
        return error_set("%s: val_fraction must be in (0, 1), got %g", path, o->val_fraction);
    if (o->vocab_size < 0 || o->vocab_size > (1 << 24))
        return error_set("%s: vocab_size must be 1 to %d, got %lld", path, 1 << 24,
                         (long long)o->vocab_size);
    return 0;
}

/* The largest token and its position. */
static int64_t max_token(const uint8_t *tok, int64_t n, int64_t *where) {
    int64_t m = -1;
    for (int64_t i = 0; i < n; i++)
        if (tok_at(tok, i) > m) m = tok_at(tok, i), *where = i;
    return m;
}

/* num_classes: the vocabulary's size (natural) or the explicit vocab_size. */
static int classes(const char *path, const TokenOptions *o, int64_t natural, int64_t largest,
                   int64_t where, int *out) {
    if (o->vocab_size > 0 && o->vocab_size < natural)
        return largest >= 0 ? error_set("%s: vocab_size %lld, but token %lld (at token %lld) "
                                        "needs at least %lld", path, (long long)o->vocab_size,
                                        (long long)largest, (long long)where,
                                        (long long)largest + 1)
                            : error_set("%s: vocab_size %lld, but the text has %lld distinct "
                                        "characters", path, (long long)o->vocab_size,
                                        (long long)natural);
    *out = (int)(o->vocab_size > 0 ? o->vocab_size : natural);
    return 0;
}

/* The windows of the split of t's `count` tokens as a lazy dataset (t taken over). */
static Dataset *windows_dataset(const char *path, const char *kind, TokenProducer *t,
                                int64_t count, int num_classes, const TokenOptions *o) {
    int64_t lo, hi, n;
    dataset_split_range(count, o->split, o->val_fraction, &lo, &hi);
    if (dataset_token_windows(path, o->split, hi - lo, o->block_size, &n) != 0) {
        token_destroy(&t->base);
        return NULL;
    }
    t->lo = lo;
    t->block_size = o->block_size;
    DatasetField f = {.dtype = DTYPE_INT64, .ndim = 1, .shape = {o->block_size}};
    char desc[DATASET_DESCRIPTION_MAX];
    snprintf(desc, sizeof desc,
             "%s: %s: %lld tokens, %s split [%lld, %lld): %lld windows of %lld + 1, %d classes",
             kind, path, (long long)count, dataset_split_name(o->split), (long long)lo,
             (long long)hi, (long long)n, (long long)o->block_size, num_classes);
    Dataset *ds = dataset_lazy(&t->base, n, &f, &f, num_classes, desc);
    if (ds) ds->tokens = count;
    return ds;
}

static TokenProducer *producer_new(void) {
    TokenProducer *t = calloc(1, sizeof *t);
    if (!t) return error_set("tokens: out of memory"), NULL;
    t->base.ops = &token_ops;
    atomic_init(&t->base.refs, 1);
    return t;
}

Dataset *dataset_load_tokens(const char *path, const TokenOptions *opts) {
    if (check_options(path, opts) != 0) return NULL;
    TokenProducer *t = producer_new();
    if (!t) return NULL;
    int64_t count = 0, where = 0;
    bool llmc = false;
    int num_classes = 0;
    if (map_file(path, &t->map, &t->map_len) != 0 ||
        bin_tokens(path, t->map, t->map_len, &t->tok, &count, &llmc) != 0)
        goto fail;
    int64_t largest = max_token(t->tok, count, &where);
    if (classes(path, opts, largest + 1, largest, where, &num_classes) != 0) goto fail;
    return windows_dataset(path, llmc ? "tokens (llm.c)" : "tokens", t, count, num_classes, opts);
fail:
    token_destroy(&t->base);
    return NULL;
}

Dataset *dataset_load_text(const char *path, const TokenOptions *opts) {
    if (check_options(path, opts) != 0) return NULL;
    TokenProducer *t = producer_new();
    if (!t) return NULL;
    void *map = NULL;
    size_t len = 0;
    char *vocab = NULL;
    int64_t count = 0;
    int vocab_n = 0, num_classes = 0;
    int rc = map_file(path, &map, &len);
    if (rc == 0) rc = text_tokens(path, map, len, t, &count, &vocab, &vocab_n);
    if (map) munmap(map, len); /* the ids are a copy: the text is not kept */
    if (rc != 0 || classes(path, opts, vocab_n, -1, 0, &num_classes) != 0) {
        free(vocab);
        token_destroy(&t->base);
        return NULL;
    }
    Dataset *ds = windows_dataset(path, "text", t, count, num_classes, opts);
    if (ds)
        ds->vocab = vocab;
    else
        free(vocab);
    return ds;
}
