/* test_tokens.c - core/data/tokens.c: uint16 .bin files (raw as numpy's
 * tofile writes them, and llm.c's with its header) and UTF-8 text as lazy
 * datasets of windows. Windows and targets are checked token by token
 * through the DataLoader; the text's vocabulary and ids against what
 * nanoGPT's shakespeare_char/prepare.py gives (tests/fixtures/gen_tokens.py);
 * every bad file against its exact message. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/data/dataloader.h"
#include "core/error.h"
#include "core/spec.h"
#include "tests/support/fixture.h"
#include "tests/support/tmp_dir.h"

static char dir[64];

static void setup(void) { tmp_dir_make(dir, sizeof dir, "tokens"); }

static void teardown(void) { tmp_dir_remove(dir); }

TestSuite(tokens, .init = setup, .fini = teardown);

static const char *in_dir(const char *name, char *buf, size_t n) {
    return tmp_dir_path(dir, name, buf, n);
}

/* The test's token stream: token i = (i * 7 + 3) % 50. */
static uint16_t tok(int64_t i) { return (uint16_t)((i * 7 + 3) % 50); }

/* n tokens as little-endian uint16 after `header` bytes of header (0: raw). */
static void write_bin(const char *path, int64_t n, const int32_t *header, size_t header_ints) {
    size_t hb = header_ints * 4, bytes = hb + (size_t)n * 2;
    uint8_t *b = calloc(1, bytes);
    cr_assert(b);
    for (size_t i = 0; i < header_ints; i++)
        for (int k = 0; k < 4; k++) b[4 * i + k] = (uint8_t)((uint32_t)header[i] >> (8 * k));
    for (int64_t i = 0; i < n; i++) {
        b[hb + 2 * i] = (uint8_t)(tok(i) & 0xFF);
        b[hb + 2 * i + 1] = (uint8_t)(tok(i) >> 8);
    }
    tmp_dir_write_file(path, b, bytes);
    free(b);
}

/* llm.c's header: 256 int32, magic, version, count. */
static void llmc_header(int32_t *h, int32_t version, int32_t count) {
    memset(h, 0, 256 * sizeof *h);
    h[0] = 20240520;
    h[1] = version;
    h[2] = count;
}

static TokenOptions opts(int64_t block_size, DatasetSplit split) {
    return (TokenOptions){.block_size = block_size, .split = split, .val_fraction = 0.1};
}

static DataLoader *loader(const Dataset *ds, int64_t bs, bool shuffle, int prefetch) {
    DataLoaderOptions o = {.batch_size = bs, .shuffle = shuffle, .seed = 7, .prefetch = prefetch};
    DataLoader *dl = dataloader_new(ds, &o, NULL);
    cr_assert(dl != NULL, "%s", error_get());
    return dl;
}

/* One epoch: every row of every batch is the window its sample index names,
 * window w of a split starting at `lo` being tokens [lo + w*T, lo + w*T + T]
 * of the stream `expect`. Returns the windows seen. */
static int64_t check_epoch(DataLoader *dl, int64_t T, int64_t lo, const int64_t *expect) {
    cr_assert_eq(dataloader_begin_epoch(dl, 0), 0, "%s", error_get());
    const int64_t *order = dataloader_order(dl);
    Batch b;
    int64_t seen = 0;
    while (dataloader_next(dl, &b) == 1) {
        cr_assert_eq(b.inputs->dtype, DTYPE_INT64);
        cr_assert_eq(b.targets->dtype, DTYPE_INT64);
        cr_assert_eq(b.inputs->ndim, 2);
        cr_assert_eq(b.inputs->shape[1], T);
        cr_assert_eq(b.targets->shape[1], T);
        const int64_t *x = tensor_data(b.inputs), *y = tensor_data(b.targets);
        for (int64_t r = 0; r < b.size; r++, seen++) {
            int64_t o = lo + order[seen] * T;
            for (int64_t j = 0; j < T; j++) {
                cr_assert_eq(x[r * T + j], expect[o + j], "window %lld input %lld",
                             (long long)order[seen], (long long)j);
                cr_assert_eq(y[r * T + j], expect[o + j + 1], "window %lld target %lld",
                             (long long)order[seen], (long long)j);
            }
        }
        batch_release(&b);
    }
    return seen;
}

/* check_epoch over a new loader of ds (batches of bs, in order). */
static int64_t epoch_of(const Dataset *ds, int64_t bs, int64_t T, int64_t lo,
                        const int64_t *expect) {
    DataLoader *dl = loader(ds, bs, false, 0);
    int64_t seen = check_epoch(dl, T, lo, expect);
    dataloader_free(dl);
    return seen;
}

static int64_t *stream(int64_t n) {
    int64_t *s = malloc((size_t)n * sizeof *s);
    cr_assert(s);
    for (int64_t i = 0; i < n; i++) s[i] = tok(i);
    return s;
}

Test(tokens, raw_bin_windows_and_targets) {
    char p[256];
    write_bin(in_dir("raw.bin", p, sizeof p), 103, NULL, 0);
    TokenOptions o = opts(10, DATASET_SPLIT_ALL);
    Dataset *ds = dataset_load_tokens(p, &o);
    cr_assert(ds, "%s", error_get());
    cr_assert_eq(ds->n, 10, "(103 - 1) / 10 windows");
    cr_assert_eq(ds->tokens, 103);
    cr_assert_eq(ds->num_classes, 50, "max token 49 + 1");
    cr_assert_null(ds->inputs, "lazy: no dense table");
    cr_assert_eq(ds->input.dtype, DTYPE_INT64);
    cr_assert_eq(ds->input.ndim, 1);
    cr_assert_eq(ds->input.shape[0], 10);
    cr_assert_eq(ds->target.shape[0], 10);
    cr_assert_null(ds->vocab);
    int64_t *s = stream(103);
    DataLoader *dl = loader(ds, 3, false, 0);
    cr_assert_eq(dataloader_num_batches(dl), 4);
    cr_assert_eq(check_epoch(dl, 10, 0, s), 10);
    dataloader_free(dl);
    /* the windows by hand: window 9 is tokens 90..100, its target 91..100 */
    DataLoader *d2 = loader(ds, 10, false, 0);
    dataloader_begin_epoch(d2, 0);
    Batch b;
    cr_assert_eq(dataloader_next(d2, &b), 1);
    const int64_t *x = tensor_data(b.inputs), *y = tensor_data(b.targets);
    cr_assert_eq(x[90], tok(90));
    cr_assert_eq(y[99], tok(100));
    cr_assert_eq(x[0], 3);
    cr_assert_eq(y[0], 10);
    batch_release(&b);
    dataloader_free(d2);
    dataset_free(ds);
    free(s);
}

Test(tokens, llmc_bin_reads_as_raw) {
    char p[256], q[256];
    int32_t h[256];
    llmc_header(h, 1, 257);
    write_bin(in_dir("llmc.bin", p, sizeof p), 257, h, 256);
    write_bin(in_dir("raw.bin", q, sizeof q), 257, NULL, 0);
    TokenOptions o = opts(16, DATASET_SPLIT_ALL);
    Dataset *a = dataset_load_tokens(p, &o), *r = dataset_load_tokens(q, &o);
    cr_assert(a && r, "%s", error_get());
    cr_assert_eq(a->n, 16);
    cr_assert_eq(a->tokens, 257, "the header is not tokens");
    cr_assert(strstr(a->description, "tokens (llm.c)"), "%s", a->description);
    int64_t *s = stream(257);
    DataLoader *da = loader(a, 5, true, 2), *dr = loader(r, 5, true, 2);
    cr_assert_eq(check_epoch(da, 16, 0, s), 16);
    cr_assert_eq(check_epoch(dr, 16, 0, s), 16);
    dataloader_free(da);
    dataloader_free(dr);
    dataset_free(a);
    dataset_free(r);
    free(s);
}

/* Shuffle permutes windows as the DataLoader permutes any dataset: the same
 * seed gives a token dataset and a dense one of as many samples one order. */
Test(tokens, shuffle_order_is_the_dataloaders) {
    char p[256];
    write_bin(in_dir("t.bin", p, sizeof p), 4 * 37 + 1, NULL, 0);
    TokenOptions o = opts(4, DATASET_SPLIT_ALL);
    Dataset *ds = dataset_load_tokens(p, &o);
    cr_assert(ds, "%s", error_get());
    cr_assert_eq(ds->n, 37);
    Dataset *dense = dataset_from_tensors(tensor_zeros(SHAPE(37, 1), DTYPE_FLOAT32, DEVICE_CPU_INIT),
                                          tensor_zeros(SHAPE(37), DTYPE_INT64, DEVICE_CPU_INIT),
                                          "dense");
    cr_assert(dense, "%s", error_get());
    DataLoader *a = loader(ds, 8, true, 2), *b = loader(dense, 8, true, 0);
    for (int epoch = 0; epoch < 3; epoch++) {
        cr_assert_eq(dataloader_begin_epoch(a, epoch), 0);
        cr_assert_eq(dataloader_begin_epoch(b, epoch), 0);
        cr_assert_arr_eq(dataloader_order(a), dataloader_order(b), 37 * sizeof(int64_t));
    }
    bool moved = false;
    for (int64_t i = 0; i < 37; i++) moved |= dataloader_order(a)[i] != i;
    cr_assert(moved, "shuffled");
    int64_t *s = stream(4 * 37 + 1);
    cr_assert_eq(check_epoch(a, 4, 0, s), 37);
    free(s);
    dataloader_free(a);
    dataloader_free(b);
    dataset_free(ds);
    dataset_free(dense);
}

/* train: [0, int(n*0.9)), val: the rest; each split's windows stay in it. */
Test(tokens, split_boundaries) {
    int64_t lo, hi;
    dataset_split_range(1000, DATASET_SPLIT_TRAIN, 0.1, &lo, &hi);
    cr_assert(lo == 0 && hi == 900);
    dataset_split_range(1000, DATASET_SPLIT_VAL, 0.1, &lo, &hi);
    cr_assert(lo == 900 && hi == 1000);
    dataset_split_range(10, DATASET_SPLIT_VAL, 0.25, &lo, &hi);
    cr_assert(lo == 7 && hi == 10, "int(10 * 0.75) = 7, got %lld", (long long)lo);
    dataset_split_range(158, DATASET_SPLIT_TRAIN, 0.1, &lo, &hi);
    cr_assert_eq(hi, 142, "int(158 * 0.9) = 142");

    char p[256];
    write_bin(in_dir("t.bin", p, sizeof p), 1000, NULL, 0);
    int64_t *s = stream(1000);
    TokenOptions tr = opts(8, DATASET_SPLIT_TRAIN), va = opts(8, DATASET_SPLIT_VAL);
    Dataset *t = dataset_load_tokens(p, &tr), *v = dataset_load_tokens(p, &va);
    cr_assert(t && v, "%s", error_get());
    cr_assert_eq(t->n, (900 - 1) / 8);
    cr_assert_eq(v->n, (100 - 1) / 8);
    cr_assert_eq(t->num_classes, v->num_classes, "classes of the whole file");
    DataLoader *dt = loader(t, 16, false, 0), *dv = loader(v, 5, true, 1);
    cr_assert_eq(check_epoch(dt, 8, 0, s), 112);
    cr_assert_eq(check_epoch(dv, 8, 900, s), 12);
    dataloader_free(dt);
    dataloader_free(dv);
    dataset_free(t);
    dataset_free(v);
    free(s);
}

/* A batch of over 1 MB is gathered in slices on several threads; the rows
 * are the same as one thread's, with and without prefetch. */
Test(tokens, large_batches_gather_in_parallel) {
    char p[256];
    int64_t n = 64 * 2500 + 1;
    write_bin(in_dir("big.bin", p, sizeof p), n, NULL, 0);
    TokenOptions o = opts(64, DATASET_SPLIT_ALL);
    Dataset *ds = dataset_load_tokens(p, &o);
    cr_assert(ds, "%s", error_get());
    int64_t *s = stream(n);
    DataLoader *a = loader(ds, 2500, true, 0), *b = loader(ds, 2500, true, 2);
    cr_assert_eq(check_epoch(a, 64, 0, s), 2500);
    cr_assert_eq(check_epoch(b, 64, 0, s), 2500);
    dataloader_free(a);
    dataloader_free(b);
    dataset_free(ds);
    free(s);
}

/* The text's vocabulary and ids as nanoGPT's prepare.py makes them (\r\n
 * and \r read as \n, multi-byte characters, sorted by code point). */
Test(tokens, text_matches_nanogpt_prepare) {
    json_t *fx = fixture_load("tokens");
    json_t *kase = fixture_case(fx, "text");
    Tensor *ids = fixture_tensor(kase, "ids");
    int64_t n = (int64_t)fixture_number(kase, "n"), cut = (int64_t)fixture_number(kase, "train_end");
    const char *vocab = json_string_value(json_object_get(kase, "vocab"));
    cr_assert(vocab);
    TokenOptions o = opts(n - 1, DATASET_SPLIT_ALL); /* one window: the whole text */
    Dataset *ds = dataset_load_text("tests/fixtures/tokens/input.txt", &o);
    cr_assert(ds, "%s", error_get());
    cr_assert_str_eq(ds->vocab, vocab);
    cr_assert_eq(ds->num_classes, (int)fixture_number(kase, "vocab_size"));
    cr_assert_eq(ds->tokens, n, "characters, not bytes (%d bytes)",
                 (int)fixture_number(kase, "text_bytes"));
    cr_assert_eq(ds->n, 1);
    cr_assert_eq(epoch_of(ds, 1, n - 1, 0, tensor_data(ids)), 1);

    /* split train: the ids nanoGPT wrote to train.bin, read back as tokens */
    TokenOptions tr = opts(4, DATASET_SPLIT_TRAIN);
    Dataset *text_train = dataset_load_text("tests/fixtures/tokens/input.txt", &tr);
    Dataset *bin_train = dataset_load_tokens("tests/fixtures/tokens/train.bin",
                                             &(TokenOptions){.block_size = 4});
    cr_assert(text_train && bin_train, "%s", error_get());
    cr_assert_eq(bin_train->tokens, cut, "train.bin holds int(n*0.9) ids");
    cr_assert_eq(text_train->n, (cut - 1) / 4);
    cr_assert_eq(bin_train->n, text_train->n);
    cr_assert_eq(epoch_of(text_train, 3, 4, 0, tensor_data(ids)),
                 text_train->n);
    cr_assert_eq(epoch_of(bin_train, 3, 4, 0, tensor_data(ids)),
                 bin_train->n);
    /* val: the ids of val.bin, from the split point on */
    TokenOptions va = opts(3, DATASET_SPLIT_VAL);
    Dataset *text_val = dataset_load_text("tests/fixtures/tokens/input.txt", &va);
    cr_assert(text_val, "%s", error_get());
    cr_assert_eq(text_val->n, (n - cut - 1) / 3);
    cr_assert_eq(epoch_of(text_val, 2, 3, cut, tensor_data(ids)),
                 text_val->n);
    cr_assert_str_eq(text_val->vocab, vocab, "the vocabulary of the whole text");
    dataset_free(ds);
    dataset_free(text_train);
    dataset_free(bin_train);
    dataset_free(text_val);
    tensor_release(ids);
    json_decref(fx);
}

/* ---- bad input: each refused with its exact message ---- */

/* Loading `path` as tokens (or text) with o must fail with "<path>: want". */
static void expect_load_error(bool text, const char *path, TokenOptions o, const char *want) {
    Dataset *ds = text ? dataset_load_text(path, &o) : dataset_load_tokens(path, &o);
    cr_assert_null(ds, "%s loaded; expected: %s", path, want);
    char full[512];
    snprintf(full, sizeof full, "%s: %s", path, want);
    cr_assert_str_eq(error_get(), full);
}

Test(tokens, bad_bin_files) {
    char p[256];
    uint8_t odd[7] = {1, 0, 2, 0, 3, 0, 4};
    tmp_dir_write_file(in_dir("odd.bin", p, sizeof p), odd, sizeof odd);
    expect_load_error(false, p, opts(2, DATASET_SPLIT_ALL),
                      "7 bytes, an odd count: a .bin of uint16 tokens has 2 bytes a token");
    tmp_dir_write_file(in_dir("empty.bin", p, sizeof p), odd, 0);
    expect_load_error(false, p, opts(2, DATASET_SPLIT_ALL), "the file is empty (no tokens)");

    int32_t h[256];
    llmc_header(h, 2, 100);
    write_bin(in_dir("v2.bin", p, sizeof p), 100, h, 256);
    expect_load_error(false, p, opts(2, DATASET_SPLIT_ALL),
                      "llm.c header version 2; only version 1 (uint16 tokens) is read");
    llmc_header(h, 1, 100);
    write_bin(in_dir("short.bin", p, sizeof p), 99, h, 256);
    expect_load_error(false, p, opts(2, DATASET_SPLIT_ALL),
                      "the llm.c header says 100 tokens (200 bytes after its 1024), but the file "
                      "has 198 bytes after it");
    llmc_header(h, 1, -5);
    write_bin(in_dir("neg.bin", p, sizeof p), 10, h, 256);
    expect_load_error(false, p, opts(2, DATASET_SPLIT_ALL),
                      "the llm.c header says -5 tokens (-10 bytes after its 1024), but the file "
                      "has 20 bytes after it");

    write_bin(in_dir("fifty.bin", p, sizeof p), 50, NULL, 0);
    expect_load_error(false, p, opts(64, DATASET_SPLIT_ALL),
                      "block_size 64 needs at least 65 tokens, but the file has 50");
    expect_load_error(false, p, opts(5, DATASET_SPLIT_VAL),
                      "block_size 5 needs at least 6 tokens, but its val split has 5");
    expect_load_error(false, p, opts(45, DATASET_SPLIT_TRAIN),
                      "block_size 45 needs at least 46 tokens, but its train split has 45");
    /* token 49 first comes at token 28: (28 * 7 + 3) % 50 */
    expect_load_error(false, p, (TokenOptions){.block_size = 4, .vocab_size = 49},
                      "vocab_size 49, but token 49 (at token 28) needs at least 50");
    expect_load_error(false, p, (TokenOptions){.block_size = 0}, "block_size must be >= 1, got 0");
    TokenOptions frac = opts(4, DATASET_SPLIT_VAL);
    frac.val_fraction = 1;
    expect_load_error(false, p, frac, "val_fraction must be in (0, 1), got 1");
    /* vocab_size above the data's is kept: GPT-2's 50257 over a small file */
    Dataset *ds = dataset_load_tokens(p, &(TokenOptions){.block_size = 4, .vocab_size = 50257});
    cr_assert(ds, "%s", error_get());
    cr_assert_eq(ds->num_classes, 50257);
    dataset_free(ds);
    in_dir("missing.bin", p, sizeof p);
    expect_load_error(false, p, opts(4, DATASET_SPLIT_ALL),
                      "cannot open: No such file or directory");
}

Test(tokens, bad_text_files) {
    static const struct {
        const char *bytes, *want;
    } cases[] = {
        {"abc\x80zz", "invalid UTF-8 at byte 3 (0x80)"},         /* a lone continuation */
        {"ab\xc0\xaf", "invalid UTF-8 at byte 2 (0xc0)"},        /* overlong '/' */
        {"a\xe0\x80\xaf", "invalid UTF-8 at byte 1 (0xe0)"},     /* overlong, 3 bytes */
        {"xy\xed\xa0\x80", "invalid UTF-8 at byte 2 (0xed)"},    /* a surrogate, U+D800 */
        {"\xf4\x90\x80\x80", "invalid UTF-8 at byte 0 (0xf4)"},  /* past U+10FFFF */
        {"caf\xc3\xa9 \xe2\x82", "invalid UTF-8 at byte 6 (0xe2)"}, /* cut short at the end */
        {"ok\xc3(", "invalid UTF-8 at byte 2 (0xc3)"},           /* a bad continuation */
        {"\xff", "invalid UTF-8 at byte 0 (0xff)"},
    };
    char p[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tmp_dir_write_file(in_dir("bad.txt", p, sizeof p), cases[i].bytes, strlen(cases[i].bytes));
        expect_load_error(true, p, opts(1, DATASET_SPLIT_ALL), cases[i].want);
    }
    tmp_dir_write_file(in_dir("nul.txt", p, sizeof p), "ab\0cd", 5);
    expect_load_error(true, p, opts(1, DATASET_SPLIT_ALL),
                      "a NUL character at byte 2 (a text file has none)");
    tmp_dir_write_file(in_dir("short.txt", p, sizeof p), "h\xc3\xa9llo", 6);
    expect_load_error(true, p, opts(5, DATASET_SPLIT_ALL),
                      "block_size 5 needs at least 6 tokens, but the file has 5");
    expect_load_error(true, p, (TokenOptions){.block_size = 1, .vocab_size = 3},
                      "vocab_size 3, but the text has 4 distinct characters");
    /* its 2 bytes a character counted in what one dataset may take */
    dataset_set_memory_limit(9);
    expect_load_error(true, p, (TokenOptions){.block_size = 4},
                      "would take 10 bytes of memory, over the 9 bytes one dataset may take on this "
                      "server");
    dataset_set_memory_limit(10);
    Dataset *fits = dataset_load_text(p, &(TokenOptions){.block_size = 4});
    dataset_set_memory_limit(0);
    cr_assert(fits, "%s", error_get());
    dataset_free(fits);
    /* the ids of "h\u00e9llo": vocab "hlo\u00e9" sorted by code point */
    Dataset *ds = dataset_load_text(p, &(TokenOptions){.block_size = 4});
    cr_assert(ds, "%s", error_get());
    cr_assert_str_eq(ds->vocab, "hlo\xc3\xa9");
    int64_t ids[] = {0, 3, 1, 1, 2};
    cr_assert_eq(epoch_of(ds, 1, 4, 0, ids), 1);
    dataset_free(ds);
}

/* ---- the job spec's token sources ---- */

static const char *spec_with(const char *data) {
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"data\": %s, \"model\": [{\"type\": \"Linear\", \"in_features\": 8, "
             "\"out_features\": 50}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, "
             "\"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1, \"batch_size\": 4}",
             data);
    return buf;
}

static void expect_spec_error(const char *data, const char *want) {
    const char *text = spec_with(data);
    JobSpec *s = job_spec_parse(text, strlen(text));
    cr_assert_null(s, "parsed %s", text);
    cr_assert_str_eq(error_get(), want);
}

Test(tokens, spec_sources) {
    char p[256], data[1024];
    write_bin(in_dir("t.bin", p, sizeof p), 1000, NULL, 0);
    snprintf(data, sizeof data,
             "{\"train\": {\"format\": \"tokens\", \"path\": \"%s\", \"block_size\": 8, "
             "\"split\": \"train\", \"val_fraction\": 0.2}, \"val\": {\"format\": \"tokens\", \"path\": \"%s\", "
             "\"block_size\": 8, \"split\": \"val\", \"val_fraction\": 0.2}}", p, p);
    const char *text = spec_with(data);
    JobSpec *s = job_spec_parse(text, strlen(text));
    cr_assert(s, "%s", error_get());
    cr_assert_eq(s->train.kind, SPEC_SOURCE_TOKENS);
    cr_assert_eq(s->val.split, DATASET_SPLIT_VAL);
    cr_assert_float_eq(s->val.val_fraction, 0.2, 0);
    cr_assert_float_eq(s->train.val_fraction, 0.2, 0);
    Dataset *t = job_spec_load_source(s, &s->train), *v = job_spec_load_source(s, &s->val);
    cr_assert(t && v, "%s", error_get());
    cr_assert_eq(t->n, (800 - 1) / 8);
    cr_assert_eq(v->n, (200 - 1) / 8);
    /* a layer list cannot take token ids: said before anything is built */
    cr_assert_eq(job_spec_check_data(s, t, NULL), -1);
    cr_assert_str_eq(error_get(),
                     "model: the data are token ids, int64 [4, 8]; a list of layers takes "
                     "float32 input unless it starts with an Embedding (or use a model that "
                     "embeds tokens, such as {\"arch\": \"gpt\", ...})");
    cr_assert_str_eq(error_last()->path, "model");
    dataset_free(t);
    dataset_free(v);
    job_spec_free(s);

    /* without a gpt arch, block_size is the source's to say */
    snprintf(data, sizeof data, "{\"train\": {\"format\": \"text\", \"path\": \"%s\"}}", p);
    text = spec_with(data);
    s = job_spec_parse(text, strlen(text));
    cr_assert(s, "%s", error_get());
    cr_assert_null(job_spec_load_source(s, &s->train));
    cr_assert_str_eq(error_get(), "data.train.block_size: required for token data (the "
                                  "windows' length), unless the model is {\"arch\": \"gpt\"} "
                                  "with its block_size");
    job_spec_free(s);

    /* a daemon's dataset by name, with its split */
    text = spec_with("{\"train\": {\"name\": \"shakespeare\", \"split\": \"train\", "
                     "\"block_size\": 64}, \"val\": {\"name\": \"shakespeare\", "
                     "\"split\": \"val\"}}");
    s = job_spec_parse(text, strlen(text));
    cr_assert(s, "%s", error_get());
    cr_assert_eq(s->train.kind, SPEC_SOURCE_NAME);
    cr_assert_str_eq(s->train.name, "shakespeare");
    cr_assert(s->train.token_options && s->val.token_options);
    cr_assert_eq(s->train.block_size, 64);
    cr_assert_eq(s->val.split, DATASET_SPLIT_VAL);
    job_spec_free(s);

    expect_spec_error("{\"train\": {\"name\": \"s\", \"split\": \"train\"}, \"val\": "
                      "{\"name\": \"s\", \"split\": \"val\", \"val_fraction\": 0.2}}",
                      "data.val.val_fraction: 0.2, but data.train's is 0.1: the splits of one "
                      "file must cut it at one place (give both the same val_fraction)");
    expect_spec_error("{\"train\": {\"name\": \"s\", \"split\": \"train\"}, \"val\": "
                      "{\"name\": \"s\"}}",
                      "data.val.split: all of 's', and data.train takes train of it: the val "
                      "tokens would overlap the train ones (give data.train \"split\": \"train\" "
                      "and data.val \"split\": \"val\")");
    expect_spec_error("{\"train\": {\"name\": \"s\"}, \"val\": {\"name\": \"s\", "
                      "\"split\": \"val\"}}",
                      "data.val.split: val of 's', and data.train takes all of it: the val "
                      "tokens would overlap the train ones (give data.train \"split\": \"train\" "
                      "and data.val \"split\": \"val\")");
    expect_spec_error("{\"train\": {\"name\": \"s\", \"split\": \"test\"}}",
                      "data.train.split: expected 'train' or 'val', got 'test'");
    expect_spec_error("{\"train\": {\"name\": \"s\", \"val_fraction\": 1.5}}",
                      "data.train.val_fraction: must be in (0, 1), got 1.5");
    expect_spec_error("{\"train\": {\"name\": \"s\", \"block_size\": 0}}",
                      "data.train.block_size: must be >= 1, got 0");
    expect_spec_error("{\"train\": {\"name\": \"s\", \"vocab_size\": 10}}",
                      "data.train.vocab_size: unknown field (a named source takes name, "
                      "block_size, split, val_fraction)");
    expect_spec_error("{\"train\": {\"format\": \"tokens\", \"path\": \"x.bin\", \"labels\": 1}}",
                      "data.train.labels: unknown field (a tokens source takes format, path, "
                      "block_size, split, val_fraction, vocab_size)");
}
