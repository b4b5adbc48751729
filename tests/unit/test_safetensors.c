/* test_safetensors.c - core/io/safetensors: round trips, files written by
 * PyTorch (tests/fixtures/gen_safetensors.py), and lying or truncated files,
 * each of which must fail with a message that says what and where. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/io/safetensors.h"
#include "tests/support/fixture.h"
#include "tests/support/tmp_dir.h"

/* Each test works in its own fresh directory. */
static char dir[64];

static void setup(void) { tmp_dir_make(dir, sizeof dir, "st"); }

static void teardown(void) { tmp_dir_remove(dir); }

TestSuite(safetensors, .init = setup, .fini = teardown);

static const char *in_dir(const char *name, char *buf, size_t n) {
    return tmp_dir_path(dir, name, buf, n);
}

/* A file with this header text and `ndata` bytes of data (0x11 each). */
static void write_st(const char *path, const char *header, size_t ndata) {
    size_t hlen = strlen(header);
    unsigned char *buf = calloc(8 + hlen + ndata + 1, 1);
    cr_assert(buf != NULL);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    memset(buf + 8 + hlen, 0x11, ndata);
    tmp_dir_write_file(path, buf, 8 + hlen + ndata);
    free(buf);
}

/* Loading must fail, leave the dict and metadata empty, and the message must
 * name the file and contain each of the given fragments. */
static void expect_load_error(const char *path, const char *frag1, const char *frag2) {
    TensorDict d;
    SafetensorsMeta m;
    tensor_dict_init(&d);
    safetensors_meta_init(&m);
    error_clear();
    cr_assert_eq(safetensors_load(path, &d, &m), -1, "load of a bad file succeeded");
    cr_assert_eq(d.count, 0);
    cr_assert_eq(m.count, 0);
    const char *msg = error_get();
    cr_assert(strstr(msg, path), "message does not name the file: %s", msg);
    cr_assert(strstr(msg, frag1), "message lacks '%s': %s", frag1, msg);
    if (frag2) cr_assert(strstr(msg, frag2), "message lacks '%s': %s", frag2, msg);
    tensor_dict_free(&d);
    safetensors_meta_free(&m);
}

/* Same dtype, shape and bytes. */
static void assert_same_tensor(Tensor *actual, Tensor *expected, const char *what) {
    cr_assert(actual != NULL, "%s missing", what);
    cr_assert_eq(actual->dtype, expected->dtype, "%s: dtype", what);
    cr_assert_eq(actual->device.type, DEVICE_CPU, "%s: device", what);
    cr_assert(tensor_same_shape(actual, expected), "%s: shape", what);
    cr_assert(tensor_is_contiguous(actual), "%s: loaded tensor not contiguous", what);
    Tensor *e = tensor_contiguous(expected);
    cr_assert(e != NULL);
    size_t n = (size_t)tensor_numel(e) * dtype_size(e->dtype);
    if (n) cr_assert(memcmp(tensor_data(actual), tensor_data(e), n) == 0, "%s: bytes differ", what);
    tensor_release(e);
}

/* ---- round trips ---- */

Test(safetensors, round_trip_every_dtype) {
    char path[256];
    in_dir("all.safetensors", path, sizeof path);
    float f32[6] = {1.5f, -0.0f, INFINITY, 1e-38f, NAN, -3.25f};
    double f64[3] = {1e-300, -2.5, 3.141592653589793};
    int64_t i64[4] = {INT64_MIN, -1, 0, INT64_MAX};
    uint8_t u8[5] = {0, 1, 127, 128, 255};
    float base[6] = {1, 2, 3, 4, 5, 6};

    Tensor *t_f32 = tensor_from_buffer(f32, SHAPE(2, 3), DTYPE_FLOAT32);
    Tensor *t_f64 = tensor_from_buffer(f64, SHAPE(3), DTYPE_FLOAT64);
    Tensor *t_i64 = tensor_from_buffer(i64, SHAPE(2, 2), DTYPE_INT64);
    Tensor *t_u8 = tensor_from_buffer(u8, SHAPE(5, 1), DTYPE_UINT8);
    Tensor *t_scalar = tensor_scalar(0.75, DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *t_empty = tensor_empty(SHAPE(0, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *t_base = tensor_from_buffer(base, SHAPE(2, 3), DTYPE_FLOAT32);
    Tensor *t_tr = tensor_transpose(t_base, 0, 1); /* [3, 2], strides (1, 3) */
    cr_assert(t_f32 && t_f64 && t_i64 && t_u8 && t_scalar && t_empty && t_tr, "%s", error_get());
    cr_assert(!tensor_is_contiguous(t_tr));

    TensorDict d;
    tensor_dict_init(&d);
    const char *names[] = {"f32", "f64", "i64", "u8", "scalar", "empty", "transposed"};
    Tensor *ts[] = {t_f32, t_f64, t_i64, t_u8, t_scalar, t_empty, t_tr};
    for (int i = 0; i < 7; i++) cr_assert_eq(tensor_dict_set(&d, names[i], ts[i]), 0);
    cr_assert_eq(safetensors_save(path, &d, NULL), 0, "%s", error_get());
    cr_assert_eq(tmp_dir_count(dir), 1, "temporary file left behind");

    TensorDict back;
    tensor_dict_init(&back);
    cr_assert_eq(safetensors_load(path, &back, NULL), 0, "%s", error_get());
    cr_assert_eq(back.count, 7);
    for (int i = 0; i < 7; i++) {
        cr_assert_str_eq(back.names[i], names[i], "order kept");
        assert_same_tensor(back.tensors[i], ts[i], names[i]);
    }
    Tensor *tr = tensor_dict_get(&back, "transposed");
    cr_assert_eq(tr->ndim, 2);
    cr_assert_eq(tr->shape[0], 3);
    cr_assert_eq(tr->shape[1], 2);
    double want[6] = {1, 4, 2, 5, 3, 6};
    for (int i = 0; i < 6; i++) cr_assert_eq(tensor_get(tr, i), want[i]);
    cr_assert_eq(tensor_dict_get(&back, "scalar")->ndim, 0);
    cr_assert_eq(tensor_get(tensor_dict_get(&back, "scalar"), 0), 0.75);

    tensor_dict_free(&back);
    tensor_dict_free(&d);
    for (int i = 0; i < 7; i++) tensor_release(ts[i]);
    tensor_release(t_base);
}

Test(safetensors, round_trip_metadata) {
    char path[256];
    in_dir("meta.safetensors", path, sizeof path);
    SafetensorsMeta m;
    safetensors_meta_init(&m);
    cr_assert_eq(safetensors_meta_set(&m, "step", "100"), 0);
    cr_assert_eq(safetensors_meta_set(&m, "epoch", "2"), 0);
    cr_assert_eq(safetensors_meta_set(&m, "epoch", "3"), 0); /* replaces */
    cr_assert_eq(safetensors_meta_set(&m, "note", "h\xc3\xa9llo \"quoted\"\n"), 0);
    cr_assert_eq(m.count, 3);

    TensorDict d;
    tensor_dict_init(&d);
    Tensor *t = tensor_full(SHAPE(2), 7.0, DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_dict_set(&d, "x", t), 0);
    cr_assert_eq(safetensors_save(path, &d, &m), 0, "%s", error_get());

    SafetensorsMeta back;
    safetensors_meta_init(&back);
    TensorDict bd;
    tensor_dict_init(&bd);
    cr_assert_eq(safetensors_load(path, &bd, &back), 0, "%s", error_get());
    cr_assert_eq(back.count, 3);
    cr_assert_str_eq(safetensors_meta_get(&back, "step"), "100");
    cr_assert_str_eq(safetensors_meta_get(&back, "epoch"), "3");
    cr_assert_str_eq(safetensors_meta_get(&back, "note"), "h\xc3\xa9llo \"quoted\"\n");
    cr_assert_null(safetensors_meta_get(&back, "absent"));
    assert_same_tensor(tensor_dict_get(&bd, "x"), t, "x");

    /* The header is padded with spaces to a multiple of 8. */
    FILE *f = fopen(path, "rb");
    unsigned char len8[8];
    cr_assert(f && fread(len8, 1, 8, f) == 8);
    fclose(f);
    cr_assert_eq(len8[0] % 8, 0);

    tensor_release(t);
    tensor_dict_free(&d);
    tensor_dict_free(&bd);
    safetensors_meta_free(&m);
    safetensors_meta_free(&back);
}

Test(safetensors, empty_dict_and_no_metadata) {
    char path[256];
    in_dir("empty.safetensors", path, sizeof path);
    TensorDict d;
    tensor_dict_init(&d);
    cr_assert_eq(safetensors_save(path, &d, NULL), 0, "%s", error_get());
    SafetensorsMeta m;
    safetensors_meta_init(&m);
    cr_assert_eq(safetensors_load(path, &d, &m), 0, "%s", error_get());
    cr_assert_eq(d.count, 0);
    cr_assert_eq(m.count, 0);
}

Test(safetensors, load_replaces_same_names_and_keeps_others) {
    char path[256];
    in_dir("x.safetensors", path, sizeof path);
    TensorDict d;
    tensor_dict_init(&d);
    Tensor *one = tensor_full(SHAPE(1), 1.0, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *two = tensor_full(SHAPE(1), 2.0, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_dict_set(&d, "a", two), 0);
    cr_assert_eq(safetensors_save(path, &d, NULL), 0, "%s", error_get());
    tensor_dict_free(&d);

    cr_assert_eq(tensor_dict_set(&d, "keep", one), 0);
    cr_assert_eq(tensor_dict_set(&d, "a", one), 0);
    cr_assert_eq(safetensors_load(path, &d, NULL), 0, "%s", error_get());
    cr_assert_eq(d.count, 2);
    cr_assert_eq(tensor_get(tensor_dict_get(&d, "a"), 0), 2.0);
    cr_assert_eq(tensor_get(tensor_dict_get(&d, "keep"), 0), 1.0);

    /* A failed load changes nothing. */
    char bad[256];
    write_st(in_dir("bad.safetensors", bad, sizeof bad), "{\"a\":{}}", 0);
    cr_assert_eq(safetensors_load(bad, &d, NULL), -1);
    cr_assert_eq(d.count, 2);
    cr_assert_eq(tensor_get(tensor_dict_get(&d, "a"), 0), 2.0);

    tensor_dict_free(&d);
    tensor_release(one);
    tensor_release(two);
}

Test(safetensors, save_replaces_existing_file) {
    char path[256];
    in_dir("model.safetensors", path, sizeof path);
    tmp_dir_write_file(path, "old contents", 12);
    TensorDict d;
    tensor_dict_init(&d);
    Tensor *t = tensor_full(SHAPE(2, 2), 4.5, DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_dict_set(&d, "w", t), 0);
    cr_assert_eq(safetensors_save(path, &d, NULL), 0, "%s", error_get());
    cr_assert_eq(tmp_dir_count(dir), 1);
    tensor_dict_free(&d);
    cr_assert_eq(safetensors_load(path, &d, NULL), 0, "%s", error_get());
    assert_same_tensor(tensor_dict_get(&d, "w"), t, "w");
    tensor_dict_free(&d);
    tensor_release(t);
}

/* ---- files written by PyTorch (gen_safetensors.py) ---- */

Test(safetensors, loads_torch_state_dict) {
    const char *path = "tests/fixtures/torch_state.safetensors";
    TensorDict d;
    SafetensorsMeta m;
    tensor_dict_init(&d);
    safetensors_meta_init(&m);
    cr_assert_eq(safetensors_load(path, &d, &m), 0, "%s", error_get());
    cr_assert_str_eq(safetensors_meta_get(&m, "format"), "pt");

    json_t *fx = fixture_load("safetensors");
    json_t *kase = fixture_case(fx, "torch_state");
    const char *names[] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    cr_assert_eq(d.count, 4);
    for (int i = 0; i < 4; i++) {
        Tensor *want = fixture_tensor(kase, names[i]);
        Tensor *got = tensor_dict_get(&d, names[i]);
        cr_assert(got != NULL, "%s missing", names[i]);
        cr_assert_eq(got->dtype, DTYPE_FLOAT32);
        assert_tensor_close(got, want, 0, 0, names[i]);
        tensor_release(want);
    }
    json_decref(fx);

    /* Written back by us, the file is byte for byte what Python wrote. */
    char out[256];
    in_dir("resaved.safetensors", out, sizeof out);
    cr_assert_eq(safetensors_save(out, &d, &m), 0, "%s", error_get());
    FILE *a = fopen(path, "rb"), *b = fopen(out, "rb");
    cr_assert(a && b);
    char ba[1024], bb[1024];
    size_t na = fread(ba, 1, sizeof ba, a), nb = fread(bb, 1, sizeof bb, b);
    fclose(a);
    fclose(b);
    cr_assert_eq(na, nb);
    cr_assert(memcmp(ba, bb, na) == 0, "re-saved file differs from PyTorch's");

    tensor_dict_free(&d);
    safetensors_meta_free(&m);
}

Test(safetensors, loads_torch_dtypes) {
    TensorDict d;
    SafetensorsMeta m;
    tensor_dict_init(&d);
    safetensors_meta_init(&m);
    cr_assert_eq(safetensors_load("tests/fixtures/torch_dtypes.safetensors", &d, &m), 0, "%s",
                 error_get());
    cr_assert_str_eq(safetensors_meta_get(&m, "step"), "12");
    cr_assert_str_eq(safetensors_meta_get(&m, "epoch"), "3");
    json_t *fx = fixture_load("safetensors");
    json_t *kase = fixture_case(fx, "torch_dtypes");
    const char *names[] = {"f64", "i64", "u8", "scalar", "empty"};
    cr_assert_eq(d.count, 5);
    for (int i = 0; i < 5; i++) {
        Tensor *want = fixture_tensor(kase, names[i]);
        Tensor *got = tensor_dict_get(&d, names[i]);
        cr_assert(got != NULL, "%s missing", names[i]);
        cr_assert_eq(got->dtype, want->dtype, "%s dtype", names[i]);
        assert_tensor_close(got, want, 0, 0, names[i]);
        tensor_release(want);
    }
    cr_assert_eq(tensor_dict_get(&d, "i64")->ndim, 1);
    cr_assert_eq(tensor_get(tensor_dict_get(&d, "i64"), 2), 1099511627783.0);
    cr_assert_eq(tensor_dict_get(&d, "scalar")->ndim, 0);
    json_decref(fx);
    tensor_dict_free(&d);
    safetensors_meta_free(&m);
}

/* ---- bad input ---- */

Test(safetensors, missing_file) {
    char path[256];
    in_dir("nope.safetensors", path, sizeof path);
    expect_load_error(path, "cannot open", "No such file");
}

Test(safetensors, directory_is_not_a_file) { expect_load_error(dir, "not a regular file", NULL); }

Test(safetensors, empty_file) {
    char path[256];
    tmp_dir_write_file(in_dir("e.safetensors", path, sizeof path), "", 0);
    expect_load_error(path, "file is 0 bytes", "shorter than the 8-byte header length");
}

Test(safetensors, five_byte_file) {
    char path[256];
    tmp_dir_write_file(in_dir("e.safetensors", path, sizeof path), "\x10\0\0\0\0", 5);
    expect_load_error(path, "file is 5 bytes", "shorter than the 8-byte");
}

Test(safetensors, header_length_past_eof) {
    char path[256];
    unsigned char b[18] = {0xe8, 0x03}; /* 1000 */
    memcpy(b + 8, "{}        ", 10);
    tmp_dir_write_file(in_dir("e.safetensors", path, sizeof path), b, sizeof b);
    expect_load_error(path, "header length 1000", "runs past the end of the file (18 bytes)");
}

Test(safetensors, header_length_over_limit) {
    char path[256];
    unsigned char b[16] = {0, 0xc2, 0xeb, 0x0b}; /* 200,000,000 */
    tmp_dir_write_file(in_dir("e.safetensors", path, sizeof path), b, sizeof b);
    expect_load_error(path, "header length 200000000", "exceeds the limit");
}

Test(safetensors, header_not_json) {
    char path[256];
    write_st(in_dir("e.safetensors", path, sizeof path), "{\"w\": {\"dtype\" \"F32\"}}", 0);
    /* jansson reports the byte after the unexpected string "F32" */
    expect_load_error(path, "header is not valid JSON", "header byte 20 (file byte 28");
}

Test(safetensors, header_not_object) {
    char path[256];
    write_st(in_dir("e.safetensors", path, sizeof path), "[1, 2]", 0);
    expect_load_error(path, "header is not a JSON object", NULL);
}

Test(safetensors, duplicate_names) {
    char path[256];
    write_st(in_dir("e.safetensors", path, sizeof path),
             "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
             "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
             2);
    expect_load_error(path, "not valid JSON", "duplicate");
}

/* A header of 50,000 tensors and 100,000 metadata keys (5 MB): each name
 * and key is added without a search of those before it (names are unique
 * in valid JSON), or this takes minutes under ASan, hence the timeout. */
Test(safetensors, many_tensors_and_metadata_keys, .timeout = 60) {
    enum { TENSORS = 50000, KEYS = 100000 };
    size_t cap = 64 + (size_t)TENSORS * 80 + (size_t)KEYS * 32, len = 0;
    char *header = malloc(cap), path[256], name[32];
    cr_assert(header != NULL);
    len += (size_t)snprintf(header + len, cap - len, "{\"__metadata__\":{");
    for (int i = 0; i < KEYS; i++)
        len += (size_t)snprintf(header + len, cap - len, "%s\"k%d\":\"v%d\"", i ? "," : "", i, i);
    len += (size_t)snprintf(header + len, cap - len, "}");
    for (int i = TENSORS - 1; i >= 0; i--) /* order in the file: by data, not header */
        len += (size_t)snprintf(header + len, cap - len,
                                ",\"t%d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                                i, i, i + 1);
    snprintf(header + len, cap - len, "}");
    write_st(in_dir("many.safetensors", path, sizeof path), header, TENSORS);
    free(header);
    TensorDict d;
    SafetensorsMeta m;
    tensor_dict_init(&d);
    safetensors_meta_init(&m);
    cr_assert_eq(safetensors_load(path, &d, &m), 0, "%s", error_get());
    cr_assert_eq(d.count, TENSORS);
    cr_assert_eq(m.count, KEYS);
    for (int i = 0; i < TENSORS; i += 4999) {
        snprintf(name, sizeof name, "t%d", i);
        cr_assert_str_eq(d.names[i], name);
        cr_assert_eq(*(uint8_t *)tensor_data(d.tensors[i]), 0x11);
    }
    cr_assert_str_eq(safetensors_meta_get(&m, "k99999"), "v99999");
    tensor_dict_free(&d);
    safetensors_meta_free(&m);
}

Test(safetensors, entry_not_object) {
    char path[256];
    write_st(in_dir("e.safetensors", path, sizeof path), "{\"w\": [1]}", 0);
    expect_load_error(path, "tensor 'w': entry is not a JSON object", NULL);
}

Test(safetensors, missing_field) {
    char path[256];
    write_st(in_dir("e.safetensors", path, sizeof path),
             "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_load_error(path, "tensor 'w': missing \"dtype\"", NULL);
    write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
    expect_load_error(path, "tensor 'w': missing \"data_offsets\"", NULL);
}

Test(safetensors, data_offsets_past_end) {
    char path[256];
    write_st(in_dir("e.safetensors", path, sizeof path),
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12);
    expect_load_error(path, "tensor 'w': data_offsets [0, 16] end past the data buffer of 12 bytes",
                      "file bytes 63..79");
}

Test(safetensors, size_mismatch) {
    char path[256];
    write_st(in_dir("e.safetensors", path, sizeof path),
             "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[10,784],\"data_offsets\":[0,31000]}}",
             31000);
    expect_load_error(path,
                      "tensor '0.weight': shape [10, 784] float32 needs 31360 bytes but "
                      "data_offsets [0, 31000] span 31000",
                      NULL);
}

Test(safetensors, unsupported_dtype) {
    char path[256];
    write_st(in_dir("e.safetensors", path, sizeof path),
             "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    expect_load_error(path, "tensor 'h': dtype F16 is not supported", NULL);
    write_st(path, "{\"h\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    expect_load_error(path, "tensor 'h': unknown dtype 'Q7'", NULL);
    write_st(path, "{\"h\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    expect_load_error(path, "tensor 'h': \"dtype\" is not a string", NULL);
}

Test(safetensors, bad_shapes) {
    char path[256];
    in_dir("e.safetensors", path, sizeof path);
    write_st(path, "{\"w\":{\"dtype\":\"U8\",\"shape\":[3,-2],\"data_offsets\":[0,0]}}", 0);
    expect_load_error(path, "tensor 'w': shape[1] is negative (-2)", NULL);
    write_st(path, "{\"w\":{\"dtype\":\"U8\",\"shape\":[2.5],\"data_offsets\":[0,2]}}", 2);
    expect_load_error(path, "tensor 'w': shape[0] is not an integer", NULL);
    write_st(path, "{\"w\":{\"dtype\":\"U8\",\"shape\":4,\"data_offsets\":[0,4]}}", 4);
    expect_load_error(path, "tensor 'w': \"shape\" is not an array", NULL);
    write_st(path,
             "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1);
    expect_load_error(path, "shape has 9 dimensions", NULL);
    write_st(path,
             "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904,4611686018427387904],"
             "\"data_offsets\":[0,0]}}",
             0);
    expect_load_error(path, "tensor 'w': shape [4611686018427387904, 4611686018427387904] is too "
                            "large",
                      NULL);
    /* no bytes at all, but the sizes beside the zero would overflow a stride */
    write_st(path,
             "{\"w\":{\"dtype\":\"U8\",\"shape\":[0,4611686018427387904,4611686018427387904],"
             "\"data_offsets\":[0,0]}}",
             0);
    expect_load_error(path, "tensor 'w': shape [0, 4611686018427387904, 4611686018427387904] is too "
                            "large",
                      NULL);
}

Test(safetensors, bad_offsets) {
    char path[256];
    in_dir("e.safetensors", path, sizeof path);
    write_st(path, "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,2]}}", 4);
    expect_load_error(path, "tensor 'w': data_offsets [4, 2] need 0 <= begin <= end", NULL);
    write_st(path, "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0]}}", 2);
    expect_load_error(path, "tensor 'w': \"data_offsets\" is not [begin, end]", NULL);
    write_st(path, "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[-2,0]}}", 2);
    expect_load_error(path, "data_offsets [-2, 0] need 0 <= begin <= end", NULL);
}

Test(safetensors, overlapping_offsets) {
    char path[256];
    write_st(in_dir("e.safetensors", path, sizeof path),
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             12);
    expect_load_error(path, "tensors 'a' (data_offsets [0, 8]) and 'b' (data_offsets [4, 12]) "
                            "overlap",
                      NULL);
}

Test(safetensors, hole_and_trailing_bytes) {
    char path[256];
    in_dir("e.safetensors", path, sizeof path);
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    write_st(path, h, 12);
    expect_load_error(path, "data bytes [4, 8)", "hole before 'b'");
    write_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8);
    expect_load_error(path, "4 bytes after the last tensor", NULL);
}

Test(safetensors, bad_metadata) {
    char path[256];
    in_dir("e.safetensors", path, sizeof path);
    write_st(path, "{\"__metadata__\":{\"step\":3}}", 0);
    expect_load_error(path, "\"__metadata__\" value of 'step' is not a string", NULL);
    write_st(path, "{\"__metadata__\":[]}", 0);
    expect_load_error(path, "\"__metadata__\" is not a JSON object", NULL);
}

/* ---- save failures ---- */

Test(safetensors, save_into_missing_directory) {
    char path[256];
    in_dir("no/such/dir/model.safetensors", path, sizeof path);
    TensorDict d;
    tensor_dict_init(&d);
    Tensor *t = tensor_zeros(SHAPE(3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_dict_set(&d, "w", t), 0);
    error_clear();
    cr_assert_eq(safetensors_save(path, &d, NULL), -1);
    const char *msg = error_get();
    cr_assert(strstr(msg, path), "message does not name the path: %s", msg);
    cr_assert(strstr(msg, "No such file or directory"), "%s", msg);
    cr_assert_eq(tmp_dir_count(dir), 0, "something was left behind");
    tensor_dict_free(&d);
    tensor_release(t);
}

Test(safetensors, save_rejects_reserved_name) {
    char path[256];
    in_dir("model.safetensors", path, sizeof path);
    TensorDict d;
    tensor_dict_init(&d);
    Tensor *t = tensor_zeros(SHAPE(1), DTYPE_UINT8, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_dict_set(&d, "__metadata__", t), 0);
    cr_assert_eq(safetensors_save(path, &d, NULL), -1);
    cr_assert(strstr(error_get(), "__metadata__"), "%s", error_get());
    cr_assert_eq(tmp_dir_count(dir), 0, "something was left behind");
    tensor_dict_free(&d);
    tensor_release(t);
}
