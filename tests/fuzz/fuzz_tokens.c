/* fuzz_tokens.c - token data (core/data/tokens.c): uint16 .bin files, raw
 * or with llm.c's header, and UTF-8 text with a character vocabulary.
 *
 * Byte 0 picks the options a spec could give: bits 0-4 block_size 1..32,
 * bits 5-6 the split (all, train, val; 3: val with val_fraction 0.5, else
 * 0.1), bit 7 vocab_size 100 (else 0: the data's own). The rest is the
 * file, loaded as tokens and as text. A load either fails with a message
 * or gives a lazy dataset of int64 [block_size] windows; a few windows are
 * gathered through its producer (as the DataLoader does): every token in
 * [0, num_classes), the targets the inputs shifted by one, and a text's
 * vocabulary num_classes characters long when vocab_size is not given.
 */
#include <stdlib.h>

#include "core/data/dataset.h"
#include "tests/fuzz/fuzz_support.h"

#define WINDOWS 8 /* gathered from each end of the dataset */

static void check_fields(const Dataset *ds, int64_t T) {
    const DatasetField *f[2] = {&ds->input, &ds->target};
    for (int k = 0; k < 2; k++)
        if (f[k]->dtype != DTYPE_INT64 || f[k]->ndim != 1 || f[k]->shape[0] != T)
            fuzz_fail("tokens: a field of dtype %s, %d dims, not int64 [%lld]",
                      dtype_name(f[k]->dtype), f[k]->ndim, (long long)T);
    if (!ds->producer || ds->inputs || ds->targets || ds->n < 1 || ds->num_classes < 1 ||
        !ds->description[0])
        fuzz_fail("tokens: not a lazy dataset of windows (%lld windows, %d classes)",
                  (long long)ds->n, ds->num_classes);
    if (ds->tokens < ds->n * T + 1)
        fuzz_fail("tokens: %lld windows of %lld + 1 from %lld tokens", (long long)ds->n,
                  (long long)T, (long long)ds->tokens);
}

/* Gathers windows 0.. and ..n-1 (up to WINDOWS each) in one batch. */
static void gather(const Dataset *ds, int64_t T) {
    int64_t idx[2 * WINDOWS], m = 0;
    for (int64_t i = 0; i < ds->n && i < WINDOWS; i++) idx[m++] = i;
    for (int64_t i = ds->n - 1; i >= WINDOWS && i >= ds->n - WINDOWS; i--) idx[m++] = i;
    int64_t *x = malloc((size_t)(m * T) * sizeof *x), *y = malloc((size_t)(m * T) * sizeof *y);
    if (!x || !y) fuzz_fail("out of memory");
    fuzz_begin();
    int rc = ds->producer->ops->gather(ds->producer, idx, m, x, y);
    fuzz_end("gather", rc != 0);
    for (int64_t i = 0; rc == 0 && i < m * T; i++) {
        if (x[i] < 0 || x[i] >= ds->num_classes || y[i] < 0 || y[i] >= ds->num_classes)
            fuzz_fail("tokens: window %lld has token %lld / %lld, %d classes",
                      (long long)idx[i / T], (long long)x[i], (long long)y[i], ds->num_classes);
        if (i % T != T - 1 && y[i] != x[i + 1])
            fuzz_fail("tokens: window %lld: target %lld is not input %lld",
                      (long long)idx[i / T], (long long)(i % T), (long long)(i % T + 1));
    }
    free(x);
    free(y);
}

/* The characters of a UTF-8 string (its bytes that do not continue one). */
static int64_t utf8_chars(const char *s) {
    int64_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void load(Dataset *(*fn)(const char *, const TokenOptions *), const char *what,
                 const char *path, const TokenOptions *o) {
    fuzz_begin();
    Dataset *ds = fn(path, o);
    fuzz_end(what, !ds);
    if (!ds) return;
    check_fields(ds, o->block_size);
    if (fn == dataset_load_text) {
        if (!ds->vocab) fuzz_fail("text: no vocabulary");
        int64_t chars = utf8_chars(ds->vocab);
        if (o->vocab_size ? chars > ds->num_classes : chars != ds->num_classes)
            fuzz_fail("text: a vocabulary of %lld characters, %d classes", (long long)chars,
                      ds->num_classes);
    }
    gather(ds, o->block_size);
    dataset_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned b = data[0], split = b >> 5 & 3;
    TokenOptions o = {.block_size = 1 + (b & 31),
                      .split = split == 3 ? DATASET_SPLIT_VAL : (DatasetSplit)split,
                      .val_fraction = split == 3 ? 0.5 : 0.1,
                      .vocab_size = b & 128 ? 100 : 0};
    const char *path = fuzz_file(0, (FuzzBytes){data + 1, size - 1});
    load(dataset_load_tokens, "dataset_load_tokens", path, &o);
    load(dataset_load_text, "dataset_load_text", path, &o);
    return 0;
}
