/* test_tensor.c - core/tensor.c, tensor_view.c, tensor_copy.c: creation in
 * every dtype, parsing nested lists, views and the storage they share,
 * copies and dtype conversion, refcounting, dtype/device names, and what a
 * CUDA device does on a machine without the CUDA backend (a clear error,
 * never a crash). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "tests/support/fixture.h"

static const DType all_dtypes[] = {DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_INT64, DTYPE_UINT8};

/* Fails unless t has exactly this shape. */
static void assert_shape(const Tensor *t, int ndim, const int64_t *shape, const char *what) {
    char a[128], b[128];
    cr_assert(t != NULL, "%s: NULL (%s)", what, error_get());
    cr_assert(t->ndim == ndim && memcmp(t->shape, shape, (size_t)ndim * sizeof *shape) == 0,
              "%s: shape %s, expected %s", what, tensor_shape_str(t, a, sizeof a),
              shape_str(ndim, shape, b, sizeof b));
}

static void assert_strides(const Tensor *t, const int64_t *strides, const char *what) {
    for (int i = 0; i < t->ndim; i++)
        cr_assert(t->strides[i] == strides[i], "%s: stride[%d] = %lld, expected %lld", what, i,
                  (long long)t->strides[i], (long long)strides[i]);
}

/* Fails unless the last error contains `needle`. */
static void assert_error_has(const char *needle) {
    cr_assert(strstr(error_get(), needle) != NULL, "error '%s' lacks '%s'", error_get(), needle);
}

static Tensor *arange(int64_t n, DType dtype) {
    Tensor *t = tensor_empty(SHAPE(n), dtype, DEVICE_CPU_INIT);
    cr_assert(t != NULL);
    for (int64_t i = 0; i < n; i++) {
        double v = (double)i;
        Tensor *one = tensor_narrow(t, 0, i, 1);
        tensor_fill_(one, v);
        tensor_release(one);
    }
    return t;
}

/* ---- creation ---- */

Test(tensor, zeros_full_scalar_every_dtype) {
    for (size_t k = 0; k < sizeof all_dtypes / sizeof all_dtypes[0]; k++) {
        DType dt = all_dtypes[k];
        Tensor *z = tensor_zeros(SHAPE(2, 3), dt, DEVICE_CPU_INIT);
        assert_shape(z, SHAPE(2, 3), dtype_name(dt));
        cr_assert_eq(z->dtype, dt);
        cr_assert_eq(tensor_numel(z), 6);
        assert_strides(z, (int64_t[]){3, 1}, "zeros");
        cr_assert(tensor_is_contiguous(z));
        cr_assert(z->storage->nbytes == 6 * dtype_size(dt));
        for (int i = 0; i < 6; i++) cr_assert_eq(tensor_get(z, i), 0.0);

        Tensor *f = tensor_full(SHAPE(4), 7, dt, DEVICE_CPU_INIT);
        assert_shape(f, SHAPE(4), "full");
        for (int i = 0; i < 4; i++) cr_assert_eq(tensor_get(f, i), 7.0, "%s", dtype_name(dt));

        Tensor *s = tensor_scalar(5, dt, DEVICE_CPU_INIT);
        cr_assert(s != NULL);
        cr_assert_eq(s->ndim, 0);
        cr_assert_eq(tensor_numel(s), 1);
        cr_assert_eq(tensor_item(s), 5.0);

        Tensor *zl = tensor_zeros_like(f);
        assert_shape(zl, SHAPE(4), "zeros_like");
        cr_assert_eq(zl->dtype, dt);
        cr_assert(zl->storage != f->storage);
        tensor_release(z);
        tensor_release(f);
        tensor_release(s);
        tensor_release(zl);
    }
    /* float32 full keeps a float32's value, not the double's */
    Tensor *f = tensor_full(SHAPE(1), 0.1, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(((float *)tensor_data(f))[0], 0.1f);
    tensor_release(f);
}

Test(tensor, empty_dims_and_bad_shapes) {
    Tensor *e = tensor_zeros(SHAPE(0, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    assert_shape(e, SHAPE(0, 3), "zero-size");
    cr_assert_eq(tensor_numel(e), 0);
    tensor_release(e);

    cr_assert_null(tensor_zeros(SHAPE(2, -1), DTYPE_FLOAT32, DEVICE_CPU_INIT));
    assert_error_has("negative size -1 in dimension 1");
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    cr_assert_null(tensor_zeros(9, nine, DTYPE_FLOAT32, DEVICE_CPU_INIT));
    assert_error_has("at most 8");
    /* element counts that overflow int64: an error, not a wrapped size */
    const int64_t big = INT64_C(1) << 40;
    cr_assert_null(tensor_zeros(SHAPE(big, big), DTYPE_FLOAT32, DEVICE_CPU_INIT));
    assert_error_has("too many elements");
    cr_assert_null(tensor_zeros(SHAPE(big, big / 1024), DTYPE_FLOAT32, DEVICE_CPU_INIT));
    /* a zero size makes no elements, but the others' strides still overflow */
    cr_assert_null(tensor_zeros(SHAPE(0, big, big), DTYPE_FLOAT32, DEVICE_CPU_INIT));
    assert_error_has("shape [0, 1099511627776, 1099511627776] has too many elements");
    Tensor *empty = tensor_zeros(SHAPE(0, big, 1024), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert(empty && tensor_numel(empty) == 0 && empty->strides[0] == big * 1024);
    tensor_release(empty);
    Tensor *one = tensor_zeros(SHAPE(1, 1), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_null(tensor_expand(one, SHAPE(big, big)));
    assert_error_has("too many elements");
    tensor_release(one);
}

Test(tensor, from_doubles_every_dtype) {
    const double v[4] = {1.5, -2.75, 3.0, 200.0};
    Tensor *f32 = tensor_from_doubles(v, SHAPE(2, 2), DTYPE_FLOAT32);
    Tensor *f64 = tensor_from_doubles(v, SHAPE(2, 2), DTYPE_FLOAT64);
    Tensor *i64 = tensor_from_doubles(v, SHAPE(4), DTYPE_INT64);
    const double u[4] = {0, 1, 200, 255};
    Tensor *u8 = tensor_from_doubles(u, SHAPE(4), DTYPE_UINT8);
    assert_tensor_values(f32, v, 4, 0, "float32");
    assert_tensor_values(f64, v, 4, 0, "float64");
    assert_tensor_values(i64, (double[]){1, -2, 3, 200}, 4, 0, "int64 truncates");
    assert_tensor_values(u8, u, 4, 0, "uint8");
    cr_assert_eq(((int64_t *)tensor_data(i64))[1], -2);
    cr_assert_eq(((uint8_t *)tensor_data(u8))[3], 255);
    tensor_release(f32);
    tensor_release(f64);
    tensor_release(i64);
    tensor_release(u8);
}

Test(tensor, from_buffer_every_dtype_copies) {
    float f[3] = {1.25f, -2, 3};
    double d[3] = {1e300, -2, 0.5};
    int64_t i[3] = {INT64_C(9007199254740993), -1, 7}; /* 2^53 + 1: not a double */
    uint8_t u[3] = {0, 128, 255};
    Tensor *tf = tensor_from_buffer(f, SHAPE(3), DTYPE_FLOAT32);
    Tensor *td = tensor_from_buffer(d, SHAPE(3), DTYPE_FLOAT64);
    Tensor *ti = tensor_from_buffer(i, SHAPE(3), DTYPE_INT64);
    Tensor *tu = tensor_from_buffer(u, SHAPE(1, 3), DTYPE_UINT8);
    cr_assert(tf && td && ti && tu, "%s", error_get());
    f[0] = 99, d[0] = 99, i[0] = 99, u[0] = 99; /* the tensors hold copies */
    cr_assert_eq(((float *)tensor_data(tf))[0], 1.25f);
    cr_assert_eq(((double *)tensor_data(td))[0], 1e300);
    cr_assert_eq(((int64_t *)tensor_data(ti))[0], INT64_C(9007199254740993));
    cr_assert_eq(((uint8_t *)tensor_data(tu))[0], 0);
    cr_assert_eq(tensor_get(tu, 2), 255.0);
    cr_assert_eq(tensor_get(ti, 1), -1.0);
    /* an int64 clone must not round through double */
    Tensor *c = tensor_clone(ti);
    cr_assert_eq(((int64_t *)tensor_data(c))[0], INT64_C(9007199254740993));
    tensor_release(c);
    tensor_release(tf);
    tensor_release(td);
    tensor_release(ti);
    tensor_release(tu);
}

/* ---- tensor_from_string ---- */

Test(tensor, from_string_nested) {
    Tensor *t = tensor_from_string("[[1,2],[3,4]]", DTYPE_FLOAT32);
    assert_shape(t, SHAPE(2, 2), "[[1,2],[3,4]]");
    assert_tensor_values(t, (double[]){1, 2, 3, 4}, 4, 0, "values");
    tensor_release(t);

    t = tensor_from_string("  [ [ 1.5 , -2e1 ] ,\n [ 3 , 4 ] , [5,6] ]  ", DTYPE_FLOAT64);
    assert_shape(t, SHAPE(3, 2), "whitespace");
    assert_tensor_values(t, (double[]){1.5, -20, 3, 4, 5, 6}, 6, 0, "values");
    tensor_release(t);

    t = tensor_from_string("[[[1],[2]],[[3],[4]]]", DTYPE_INT64);
    assert_shape(t, SHAPE(2, 2, 1), "3-d");
    cr_assert_eq(t->dtype, DTYPE_INT64);
    assert_tensor_values(t, (double[]){1, 2, 3, 4}, 4, 0, "values");
    tensor_release(t);
}

Test(tensor, from_string_scalars_and_empty) {
    Tensor *s = tensor_from_string("3.5", DTYPE_FLOAT32);
    cr_assert(s != NULL, "%s", error_get());
    cr_assert_eq(s->ndim, 0);
    cr_assert_eq(tensor_item(s), 3.5);
    tensor_release(s);

    s = tensor_from_string(" -7 ", DTYPE_INT64);
    cr_assert(s != NULL && s->ndim == 0, "%s", error_get());
    cr_assert_eq(tensor_item(s), -7.0);
    tensor_release(s);

    Tensor *e = tensor_from_string("[]", DTYPE_FLOAT32);
    assert_shape(e, SHAPE(0), "[]");
    cr_assert_eq(tensor_numel(e), 0);
    tensor_release(e);

    e = tensor_from_string("[[], []]", DTYPE_FLOAT32);
    assert_shape(e, SHAPE(2, 0), "[[], []]");
    tensor_release(e);

    Tensor *one = tensor_from_string("[7]", DTYPE_UINT8);
    assert_shape(one, SHAPE(1), "[7]");
    cr_assert_eq(tensor_item(one), 7.0);
    tensor_release(one);
}

Test(tensor, from_string_errors_name_the_byte) {
    error_clear();
    cr_assert_null(tensor_from_string("[[1,2],[3]]", DTYPE_FLOAT32));
    assert_error_has("ragged");
    assert_error_has("byte 7"); /* the '[' of [3] */

    cr_assert_null(tensor_from_string("[1, x]", DTYPE_FLOAT32));
    assert_error_has("byte 4");

    cr_assert_null(tensor_from_string("[[1,2],3]", DTYPE_FLOAT32));
    assert_error_has("ragged");
    assert_error_has("byte 7");

    cr_assert_null(tensor_from_string("[1,[2]]", DTYPE_FLOAT32));
    assert_error_has("ragged");

    cr_assert_null(tensor_from_string("[[1],[]]", DTYPE_FLOAT32));
    assert_error_has("ragged");
    cr_assert_null(tensor_from_string("[[],[1]]", DTYPE_FLOAT32));
    assert_error_has("ragged");
    cr_assert_null(tensor_from_string("[[[]],[1]]", DTYPE_FLOAT32));
    assert_error_has("ragged");

    cr_assert_null(tensor_from_string("[1,2", DTYPE_FLOAT32));
    assert_error_has("byte 4");
    cr_assert_null(tensor_from_string("[1 2]", DTYPE_FLOAT32));
    assert_error_has("expected ',' or ']' at byte 3");
    cr_assert_null(tensor_from_string("[1,]", DTYPE_FLOAT32));
    assert_error_has("byte 3");
    cr_assert_null(tensor_from_string("[1] x", DTYPE_FLOAT32));
    assert_error_has("unexpected 'x' at byte 4");
    cr_assert_null(tensor_from_string("", DTYPE_FLOAT32));
    assert_error_has("byte 0");
    cr_assert_null(tensor_from_string(NULL, DTYPE_FLOAT32));
}

Test(tensor, from_string_nesting_depth) {
    /* 8 levels is TENSOR_MAX_DIMS, 9 is one too many */
    Tensor *t = tensor_from_string("[[[[[[[[1]]]]]]]]", DTYPE_FLOAT32);
    assert_shape(t, SHAPE(1, 1, 1, 1, 1, 1, 1, 1), "8 levels");
    tensor_release(t);
    cr_assert_null(tensor_from_string("[[[[[[[[[1]]]]]]]]]", DTYPE_FLOAT32));
    assert_error_has("more than 8 nested lists at byte 8");
    /* a very deep input must not recurse without bound */
    char deep[20001];
    memset(deep, '[', 20000);
    deep[20000] = '\0';
    cr_assert_null(tensor_from_string(deep, DTYPE_FLOAT32));
    assert_error_has("nested");
}

/* ---- views ---- */

Test(tensor, views_as_the_seed_lecture) {
    Tensor *t = tensor_from_string("[[1,2],[3,4]]", DTYPE_FLOAT32);
    struct {
        int ndim;
        int64_t shape[2], want[2];
    } cases[] = {
        {2, {4, 1}, {4, 1}},
        {1, {-1}, {4}},
        {2, {1, -1}, {1, 4}},
        {2, {-1, 1}, {4, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Tensor *v = tensor_view(t, cases[i].ndim, cases[i].shape);
        assert_shape(v, cases[i].ndim, cases[i].want, "view");
        cr_assert(v->storage == t->storage, "a view shares storage");
        cr_assert(tensor_is_contiguous(v));
        assert_tensor_values(v, (double[]){1, 2, 3, 4}, 4, 0, "view values");
        tensor_release(v);
    }
    /* [4, 1] strides as torch: (1, 1) */
    Tensor *v = tensor_view(t, SHAPE(4, 1));
    assert_strides(v, (int64_t[]){1, 1}, "view(4,1)");
    tensor_release(v);
    tensor_release(t);
}

Test(tensor, view_errors) {
    Tensor *t = arange(10, DTYPE_FLOAT32);
    cr_assert_null(tensor_view(t, SHAPE(3, -1)));
    assert_error_has("view(3, -1) of a tensor of 10 elements");
    cr_assert_null(tensor_view(t, SHAPE(4, 2)));
    assert_error_has("view(4, 2) of a tensor of 10 elements");
    cr_assert_null(tensor_view(t, SHAPE(-1, -1)));
    assert_error_has("only one dimension can be -1");
    cr_assert_null(tensor_view(t, SHAPE(-2, 5)));
    assert_error_has("invalid size -2");
    cr_assert_null(tensor_view(t, SHAPE(0, -1)));
    cr_assert_null(tensor_reshape(t, SHAPE(3, -1)));
    assert_error_has("reshape(3, -1) of a tensor of 10 elements");
    tensor_release(t);
}

Test(tensor, view_of_non_contiguous_needs_reshape) {
    Tensor *t = tensor_from_string("[[1,2,3],[4,5,6]]", DTYPE_FLOAT32);
    Tensor *tt = tensor_transpose(t, 0, 1);
    assert_shape(tt, SHAPE(3, 2), "transpose");
    assert_strides(tt, (int64_t[]){1, 3}, "transpose");
    cr_assert(!tensor_is_contiguous(tt));
    error_clear();
    cr_assert_null(tensor_view(tt, SHAPE(6)));
    assert_error_has("non-contiguous");
    assert_error_has("reshape");

    Tensor *r = tensor_reshape(tt, SHAPE(6));
    assert_shape(r, SHAPE(6), "reshape");
    cr_assert(r->storage != t->storage, "reshape of a transpose copies");
    assert_tensor_values(r, (double[]){1, 4, 2, 5, 3, 6}, 6, 0, "reshape values");

    /* but a view that keeps the transposed dims apart still works */
    Tensor *u = tensor_view(tt, SHAPE(3, 1, 2));
    assert_shape(u, SHAPE(3, 1, 2), "view(3,1,2) of a transpose");
    cr_assert(u->storage == t->storage);
    assert_tensor_values(u, (double[]){1, 4, 2, 5, 3, 6}, 6, 0, "values");

    /* reshape of a contiguous tensor is a view */
    Tensor *r2 = tensor_reshape(t, SHAPE(3, 2));
    cr_assert(r2->storage == t->storage);
    tensor_release(t);
    tensor_release(tt);
    tensor_release(r);
    tensor_release(u);
    tensor_release(r2);
}

Test(tensor, view_of_narrowed_rows) {
    /* A block of whole rows of a [4, 3] is contiguous (views freely);
     * columns 0..1 are not (view fails, flatten copies). */
    Tensor *t = arange(12, DTYPE_FLOAT32);
    Tensor *m = tensor_view(t, SHAPE(4, 3));
    Tensor *rows = tensor_narrow(m, 0, 1, 2);
    cr_assert(tensor_is_contiguous(rows));
    Tensor *v = tensor_view(rows, SHAPE(6));
    assert_tensor_values(v, (double[]){3, 4, 5, 6, 7, 8}, 6, 0, "narrowed rows");
    Tensor *cols = tensor_narrow(m, 1, 0, 2);
    cr_assert(!tensor_is_contiguous(cols));
    cr_assert_null(tensor_view(cols, SHAPE(8)));
    Tensor *f = tensor_flatten(cols, 0, -1);
    assert_tensor_values(f, (double[]){0, 1, 3, 4, 6, 7, 9, 10}, 8, 0, "flatten copies");
    tensor_release(t);
    tensor_release(m);
    tensor_release(rows);
    tensor_release(v);
    tensor_release(cols);
    tensor_release(f);
}

Test(tensor, shape_ops) {
    Tensor *t = tensor_zeros(SHAPE(2, 3, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *v;

    v = tensor_unsqueeze(t, 0);
    assert_shape(v, SHAPE(1, 2, 3, 4), "unsqueeze(0)");
    tensor_release(v);
    v = tensor_unsqueeze(t, -1);
    assert_shape(v, SHAPE(2, 3, 4, 1), "unsqueeze(-1)");
    tensor_release(v);
    v = tensor_unsqueeze(t, 2);
    assert_shape(v, SHAPE(2, 3, 1, 4), "unsqueeze(2)");
    tensor_release(v);
    cr_assert_null(tensor_unsqueeze(t, 4));
    assert_error_has("unsqueeze: dimension 4 out of range");

    Tensor *u = tensor_zeros(SHAPE(1, 3, 1), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    v = tensor_squeeze(u, 0);
    assert_shape(v, SHAPE(3, 1), "squeeze(0)");
    tensor_release(v);
    v = tensor_squeeze(u, -1);
    assert_shape(v, SHAPE(1, 3), "squeeze(-1)");
    tensor_release(v);
    v = tensor_squeeze(u, 1); /* size 3: unchanged, as torch */
    assert_shape(v, SHAPE(1, 3, 1), "squeeze(1)");
    tensor_release(v);
    v = tensor_squeeze_all(u);
    assert_shape(v, SHAPE(3), "squeeze()");
    tensor_release(v);
    cr_assert_null(tensor_squeeze(u, 3));
    tensor_release(u);

    v = tensor_flatten(t, 0, -1);
    assert_shape(v, SHAPE(24), "flatten(0,-1)");
    cr_assert(v->storage == t->storage);
    tensor_release(v);
    v = tensor_flatten(t, 1, 2);
    assert_shape(v, SHAPE(2, 12), "flatten(1,2)");
    tensor_release(v);
    v = tensor_flatten(t, 0, 1);
    assert_shape(v, SHAPE(6, 4), "flatten(0,1)");
    tensor_release(v);
    cr_assert_null(tensor_flatten(t, 2, 1));
    assert_error_has("flatten");

    v = tensor_transpose(t, 0, 2);
    assert_shape(v, SHAPE(4, 3, 2), "transpose(0,2)");
    assert_strides(v, (int64_t[]){1, 4, 12}, "transpose(0,2)");
    tensor_release(v);
    v = tensor_transpose(t, -1, -2);
    assert_shape(v, SHAPE(2, 4, 3), "transpose(-1,-2)");
    assert_strides(v, (int64_t[]){12, 1, 4}, "transpose(-1,-2)");
    tensor_release(v);

    v = tensor_permute(t, (int[]){2, 0, 1});
    assert_shape(v, SHAPE(4, 2, 3), "permute(2,0,1)");
    assert_strides(v, (int64_t[]){1, 12, 4}, "permute(2,0,1)");
    cr_assert(v->storage == t->storage);
    tensor_release(v);
    cr_assert_null(tensor_permute(t, (int[]){0, 0, 1}));
    assert_error_has("repeated");

    Tensor *b = tensor_zeros(SHAPE(3, 1), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    v = tensor_expand(b, SHAPE(2, 3, 5));
    assert_shape(v, SHAPE(2, 3, 5), "expand");
    assert_strides(v, (int64_t[]){0, 1, 0}, "expand");
    tensor_release(v);
    v = tensor_expand(b, SHAPE(-1, 4));
    assert_shape(v, SHAPE(3, 4), "expand(-1, 4)");
    tensor_release(v);
    cr_assert_null(tensor_expand(b, SHAPE(2, 5)));
    assert_error_has("cannot expand [3, 1] to [2, 5]");
    cr_assert_null(tensor_expand(b, SHAPE(5)));
    assert_error_has("expand");
    tensor_release(b);

    v = tensor_narrow(t, 1, 1, 2);
    assert_shape(v, SHAPE(2, 2, 4), "narrow");
    assert_strides(v, (int64_t[]){12, 4, 1}, "narrow");
    cr_assert_eq(v->offset, 4);
    tensor_release(v);
    v = tensor_narrow(t, -1, 3, 1);
    assert_shape(v, SHAPE(2, 3, 1), "narrow(-1)");
    cr_assert_eq(v->offset, 3);
    tensor_release(v);
    cr_assert_null(tensor_narrow(t, 1, 2, 2));
    assert_error_has("narrow: length 2 from 2 is outside dimension 1 of size 3");
    cr_assert_null(tensor_narrow(t, 1, INT64_MAX, 1)); /* start + length would wrap */
    assert_error_has("narrow: length 1 from 9223372036854775807 is outside dimension 1");
    cr_assert_null(tensor_narrow(t, 3, 0, 1));
    assert_error_has("narrow: dimension 3 out of range");
    tensor_release(t);
}

Test(tensor, scalar_views) {
    Tensor *s = tensor_scalar(2, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *u = tensor_unsqueeze(s, 0);
    assert_shape(u, SHAPE(1), "unsqueeze of 0-d");
    Tensor *f = tensor_flatten(s, 0, -1);
    assert_shape(f, SHAPE(1), "flatten of 0-d");
    Tensor *b = tensor_view(u, 0, NULL);
    cr_assert(b && b->ndim == 0);
    Tensor *e = tensor_expand(s, SHAPE(2, 2));
    assert_shape(e, SHAPE(2, 2), "expand of 0-d");
    assert_tensor_values(e, (double[]){2, 2, 2, 2}, 4, 0, "expand values");
    /* squeeze takes dim 0 or -1 of a 0-d tensor, as torch's; narrow none */
    Tensor *q = tensor_squeeze(s, -1);
    cr_assert(q && q->ndim == 0, "%s", error_get());
    cr_assert_null(tensor_squeeze(s, 5));
    cr_assert_str_eq(error_get(), "squeeze: dimension 5 out of range for a 0-d tensor "
                                  "(expected -1..0)");
    cr_assert_null(tensor_narrow(s, 0, 0, 0));
    cr_assert_str_eq(error_get(), "narrow: a 0-d tensor has no dimension to narrow");
    tensor_release(s);
    tensor_release(u);
    tensor_release(f);
    tensor_release(b);
    tensor_release(e);
    tensor_release(q);
}

/* A tensor of no element is contiguous whatever its strides (torch's
 * rule): a view of zeros [3, 0] and its unsqueeze too. */
Test(tensor, empty_views_are_contiguous) {
    Tensor *z = tensor_zeros(SHAPE(3, 0), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *v = tensor_view(z, 2, (int64_t[]){3, 0});
    Tensor *u = tensor_unsqueeze(z, 1);
    cr_assert(z && v && u, "%s", error_get());
    cr_assert(tensor_is_contiguous(z) && tensor_is_contiguous(v) && tensor_is_contiguous(u));
    tensor_release(z), tensor_release(v), tensor_release(u);
}

Test(tensor, writing_through_views_changes_the_base) {
    Tensor *t = tensor_zeros(SHAPE(3, 4), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *col = tensor_narrow(t, 1, 2, 1); /* column 2 */
    cr_assert_eq(tensor_fill_(col, 5), 0);
    Tensor *row = tensor_narrow(t, 0, 1, 1);
    Tensor *rowv = tensor_view(row, SHAPE(4));
    Tensor *src = tensor_from_string("[1,2,3,4]", DTYPE_FLOAT64);
    cr_assert_eq(tensor_copy_(rowv, src), 0);
    double want[12] = {0, 0, 5, 0, 1, 2, 3, 4, 0, 0, 5, 0};
    assert_tensor_values(t, want, 12, 0, "base after writes");

    /* through a transpose: tt[3][0] is t[0][3] */
    Tensor *tt = tensor_transpose(t, 0, 1);
    Tensor *corner = tensor_narrow(tt, 0, 3, 1);
    Tensor *cell = tensor_narrow(corner, 1, 0, 1);
    tensor_fill_(cell, -1);
    cr_assert_eq(tensor_get(t, 3), -1.0);
    cr_assert_eq(tensor_get(tt, 9), -1.0);

    /* storage outlives the base while a view holds it */
    tensor_release(t);
    cr_assert_eq(tensor_get(col, 0), 5.0);
    tensor_release(col);
    tensor_release(row);
    tensor_release(rowv);
    tensor_release(src);
    tensor_release(tt);
    tensor_release(corner);
    tensor_release(cell);
}

Test(tensor, contiguous_copies_only_when_needed) {
    Tensor *t = tensor_from_string("[[1,2,3],[4,5,6]]", DTYPE_FLOAT64);
    Tensor *c = tensor_contiguous(t);
    cr_assert(c == t, "contiguous of a contiguous tensor is the same tensor");
    cr_assert_eq(t->refcount, 2);
    tensor_release(c);

    Tensor *tt = tensor_transpose(t, 0, 1);
    Tensor *ct = tensor_contiguous(tt);
    cr_assert(ct != tt && ct->storage != t->storage);
    cr_assert(tensor_is_contiguous(ct));
    assert_strides(ct, (int64_t[]){2, 1}, "contiguous strides");
    assert_tensor_values(ct, (double[]){1, 4, 2, 5, 3, 6}, 6, 0, "contiguous of transpose");

    /* size-1 dims with odd strides still count as contiguous */
    Tensor *row = tensor_narrow(t, 0, 1, 1);
    cr_assert(tensor_is_contiguous(row));
    Tensor *rc = tensor_contiguous(row);
    cr_assert(rc == row);
    cr_assert_eq(tensor_get(rc, 0), 4.0);

    Tensor *cl = tensor_clone(t);
    cr_assert(cl != t && cl->storage != t->storage);
    assert_tensor_values(cl, (double[]){1, 2, 3, 4, 5, 6}, 6, 0, "clone");
    tensor_release(t);
    tensor_release(tt);
    tensor_release(ct);
    tensor_release(row);
    tensor_release(rc);
    tensor_release(cl);
}

/* ---- dtype conversion and copy_ ---- */

Test(tensor, to_dtype_conversions) {
    Tensor *f = tensor_from_string("[1.7, -1.7, 2.5, 0, 255.9]", DTYPE_FLOAT32);
    Tensor *i = tensor_to_dtype(f, DTYPE_INT64);
    cr_assert(i && i->dtype == DTYPE_INT64);
    assert_tensor_values(i, (double[]){1, -1, 2, 0, 255}, 5, 0, "float -> int64 truncates");

    Tensor *pos = tensor_from_string("[0, 3.9, 128, 255]", DTYPE_FLOAT64);
    Tensor *u = tensor_to_dtype(pos, DTYPE_UINT8);
    cr_assert(u && u->dtype == DTYPE_UINT8);
    assert_tensor_values(u, (double[]){0, 3, 128, 255}, 4, 0, "float -> uint8");
    Tensor *back = tensor_to_dtype(u, DTYPE_FLOAT32);
    assert_tensor_values(back, (double[]){0, 3, 128, 255}, 4, 0, "uint8 -> float32");

    Tensor *d = tensor_to_dtype(f, DTYPE_FLOAT64);
    cr_assert_eq(d->dtype, DTYPE_FLOAT64);
    cr_assert_eq(tensor_get(d, 0), (double)1.7f, "float32 -> float64 keeps the float's value");
    Tensor *same = tensor_to_dtype(f, DTYPE_FLOAT32);
    cr_assert(same == f, "same dtype: no copy");

    /* conversion of a strided view */
    Tensor *m = tensor_from_string("[[1,2],[3,4]]", DTYPE_INT64);
    Tensor *mt = tensor_transpose(m, 0, 1);
    Tensor *mf = tensor_to_dtype(mt, DTYPE_FLOAT32);
    assert_tensor_values(mf, (double[]){1, 3, 2, 4}, 4, 0, "transposed int64 -> float32");
    cr_assert(tensor_is_contiguous(mf));

    tensor_release(f);
    tensor_release(i);
    tensor_release(pos);
    tensor_release(u);
    tensor_release(back);
    tensor_release(d);
    tensor_release(same);
    tensor_release(m);
    tensor_release(mt);
    tensor_release(mf);
}

Test(tensor, copy_in_place) {
    Tensor *dst = tensor_zeros(SHAPE(2, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *src = tensor_from_string("[[1,2,3],[4,5,6]]", DTYPE_INT64);
    cr_assert_eq(tensor_copy_(dst, src), 0, "%s", error_get());
    assert_tensor_values(dst, (double[]){1, 2, 3, 4, 5, 6}, 6, 0, "int64 -> float32");

    /* same numel, other shape: row-major order */
    Tensor *flat = tensor_from_string("[6,5,4,3,2,1]", DTYPE_FLOAT32);
    cr_assert_eq(tensor_copy_(dst, flat), 0, "%s", error_get());
    assert_tensor_values(dst, (double[]){6, 5, 4, 3, 2, 1}, 6, 0, "reshaped copy");

    /* into a transposed destination */
    Tensor *dt = tensor_transpose(dst, 0, 1); /* [3, 2] */
    Tensor *s32 = tensor_from_string("[[1,2],[3,4],[5,6]]", DTYPE_FLOAT64);
    cr_assert_eq(tensor_copy_(dt, s32), 0);
    assert_tensor_values(dst, (double[]){1, 3, 5, 2, 4, 6}, 6, 0, "copy into transpose");

    /* broadcast source via expand */
    Tensor *one = tensor_scalar(9, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *ex = tensor_expand(one, SHAPE(2, 3));
    cr_assert_eq(tensor_copy_(dst, ex), 0);
    assert_tensor_values(dst, (double[]){9, 9, 9, 9, 9, 9}, 6, 0, "copy of an expand");

    Tensor *bad = tensor_zeros(SHAPE(5), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_copy_(dst, bad), -1);
    assert_error_has("copy: source of shape [5] into destination of shape [2, 3]");

    /* copy_ is not recorded by autograd */
    Tensor *leaf = tensor_zeros(SHAPE(2, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_set_requires_grad(leaf, true), 0);
    cr_assert_eq(tensor_copy_(leaf, src), 0);
    cr_assert_null(leaf->grad_fn);
    cr_assert_eq(tensor_get(leaf, 5), 6.0);
    tensor_release(leaf);
    tensor_release(dst);
    tensor_release(src);
    tensor_release(flat);
    tensor_release(dt);
    tensor_release(s32);
    tensor_release(one);
    tensor_release(ex);
    tensor_release(bad);
}

Test(tensor, item) {
    Tensor *s = tensor_scalar(2.5, DTYPE_FLOAT64, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_item(s), 2.5);
    Tensor *one = tensor_full(SHAPE(1, 1), 3, DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_item(one), 3.0);
    Tensor *many = tensor_zeros(SHAPE(2, 3), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    error_clear();
    cr_assert(isnan(tensor_item(many)));
    assert_error_has("item: tensor of shape [2, 3] has 6 elements, not 1");
    Tensor *none = tensor_zeros(SHAPE(0), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert(isnan(tensor_item(none)));
    assert_error_has("0 elements");
    cr_assert(isnan(tensor_item(NULL)));

    double buf[6];
    cr_assert_eq(tensor_to_doubles(many, buf, 5), -1);
    assert_error_has("buffer of 5 for 6 elements");
    tensor_release(s);
    tensor_release(one);
    tensor_release(many);
    tensor_release(none);
}

Test(tensor, null_propagates) {
    error_set("earlier failure");
    cr_assert_null(tensor_view(NULL, SHAPE(2)));
    cr_assert_null(tensor_transpose(NULL, 0, 1));
    cr_assert_null(tensor_contiguous(NULL));
    cr_assert_null(tensor_to_dtype(NULL, DTYPE_FLOAT32));
    cr_assert_null(tensor_add(NULL, NULL));
    cr_assert_str_eq(error_get(), "earlier failure");
    tensor_release(NULL);
}

/* ---- refcounting ---- */

Test(tensor, refcounting_many_views) {
    Tensor *t = tensor_zeros(SHAPE(4, 6), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(t->refcount, 1);
    cr_assert(tensor_retain(t) == t);
    cr_assert_eq(t->refcount, 2);
    tensor_release(t);
    cr_assert_eq(t->refcount, 1);

    /* a chain of views of views, each released at once: the storage lives
     * on through the chain; ASan reports any leak. */
    Tensor *cur = tensor_retain(t);
    for (int i = 0; i < 2000; i++) {
        Tensor *next;
        switch (i % 4) {
        case 0: next = tensor_transpose(cur, 0, 1); break;
        case 1: next = tensor_unsqueeze(cur, 0); break;
        case 2: next = tensor_squeeze(cur, 0); break;
        default: next = tensor_narrow(cur, 0, 0, cur->shape[0]); break;
        }
        cr_assert(next != NULL, "%d: %s", i, error_get());
        cr_assert(next->storage == t->storage);
        tensor_release(cur);
        cur = next;
    }
    cr_assert_eq(atomic_load(&t->storage->refcount), 2);
    tensor_release(t); /* the view keeps the storage */
    tensor_fill_(cur, 1);
    cr_assert_eq(tensor_get(cur, 0), 1.0);
    tensor_release(cur);

    /* many live views of one base */
    Tensor *base = tensor_zeros(SHAPE(100), DTYPE_FLOAT64, DEVICE_CPU_INIT);
    Tensor *views[100];
    for (int i = 0; i < 100; i++) views[i] = tensor_narrow(base, 0, i, 1);
    cr_assert_eq(atomic_load(&base->storage->refcount), 101);
    tensor_release(base);
    for (int i = 0; i < 100; i++) tensor_release(views[i]);
}

/* ---- dtype and device names ---- */

Test(tensor, dtype_names_and_parse) {
    for (size_t k = 0; k < sizeof all_dtypes / sizeof all_dtypes[0]; k++) {
        DType out = (DType)-1;
        cr_assert_eq(dtype_parse(dtype_name(all_dtypes[k]), &out), 0);
        cr_assert_eq(out, all_dtypes[k]);
    }
    cr_assert_str_eq(dtype_name(DTYPE_FLOAT32), "float32");
    cr_assert_str_eq(dtype_name(DTYPE_FLOAT64), "float64");
    cr_assert_str_eq(dtype_name(DTYPE_INT64), "int64");
    cr_assert_str_eq(dtype_name(DTYPE_UINT8), "uint8");
    cr_assert_eq(dtype_size(DTYPE_FLOAT32), 4);
    cr_assert_eq(dtype_size(DTYPE_FLOAT64), 8);
    cr_assert_eq(dtype_size(DTYPE_INT64), 8);
    cr_assert_eq(dtype_size(DTYPE_UINT8), 1);
    cr_assert(dtype_is_float(DTYPE_FLOAT32) && dtype_is_float(DTYPE_FLOAT64));
    cr_assert(!dtype_is_float(DTYPE_INT64) && !dtype_is_float(DTYPE_UINT8));
    DType d;
    cr_assert_eq(dtype_parse("float", &d), 0);
    cr_assert_eq(d, DTYPE_FLOAT32);
    cr_assert_eq(dtype_parse("double", &d), 0);
    cr_assert_eq(d, DTYPE_FLOAT64);
    cr_assert_eq(dtype_parse("long", &d), 0);
    cr_assert_eq(d, DTYPE_INT64);
    cr_assert_eq(dtype_parse("float16", &d), -1);
    assert_error_has("unknown dtype 'float16'");
    cr_assert_eq(dtype_parse("", &d), -1);
    cr_assert_eq(dtype_parse(NULL, &d), -1);
}

Test(tensor, device_names_and_parse) {
    Device d;
    char buf[32];
    cr_assert_eq(device_parse("cpu", &d), 0);
    cr_assert(device_equal(d, DEVICE_CPU_INIT));
    cr_assert_str_eq(device_name(d, buf, sizeof buf), "cpu");
    cr_assert_eq(device_parse("cuda", &d), 0);
    cr_assert(d.type == DEVICE_CUDA && d.index == 0);
    cr_assert_str_eq(device_name(d, buf, sizeof buf), "cuda:0");
    cr_assert_eq(device_parse("cuda:3", &d), 0);
    cr_assert(d.type == DEVICE_CUDA && d.index == 3);
    cr_assert_str_eq(device_name(d, buf, sizeof buf), "cuda:3");
    cr_assert(!device_equal(d, (Device){DEVICE_CUDA, 0}));
    const char *bad[] = {"gpu",     "cuda:", "cuda:x", "cuda:-1",
                         "cuda:1x", "CPU",   "",       "cuda:99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(device_parse(bad[i], &d), -1, "'%s' parsed", bad[i]);
        assert_error_has("unknown device");
    }
    cr_assert_eq(device_parse(NULL, &d), -1);
    /* a GPU this machine lacks still parses: which ones exist is the
     * backend's to say, and the daemon's ("no such device cuda:99") */
    cr_assert_eq(device_parse("cuda:99", &d), 0);
    cr_assert(d.type == DEVICE_CUDA && d.index == 99);
}

/* A job's devices as text: "cuda:0,cuda:2" counts two, entry 1 is cuda:2;
 * an entry past the end or one that is no device says which list. */
Test(tensor, device_lists) {
    Device d;
    cr_assert_eq(device_list_count("cpu"), 1);
    cr_assert_eq(device_list_count("cuda:0,cuda:2"), 2);
    cr_assert_eq(device_list_get("cuda:0,cuda:2", 1, &d), 0);
    cr_assert(d.type == DEVICE_CUDA && d.index == 2);
    cr_assert_eq(device_list_get("cuda:0,cuda:2", 0, &d), 0);
    cr_assert(d.type == DEVICE_CUDA && d.index == 0);
    cr_assert_eq(device_list_get("cuda:0,cuda:2", 2, &d), -1);
    cr_assert_str_eq(error_get(), "devices cuda:0,cuda:2: no entry 2");
    cr_assert_eq(device_list_get("cuda:0,gpu", 1, &d), -1);
    assert_error_has("devices cuda:0,gpu: unknown device 'gpu'");
}

/* This machine's unit binary has no CUDA backend registered: every way of
 * putting a tensor on cuda fails with a message naming the device. */
Test(tensor, cuda_without_backend_is_an_error) {
    if (backend_cuda_device_count() > 0) cr_skip_test("a CUDA backend is registered");
    Device cuda;
    cr_assert_eq(device_parse("cuda:0", &cuda), 0);
    error_clear();
    cr_assert_null(tensor_zeros(SHAPE(2, 2), DTYPE_FLOAT32, cuda));
    assert_error_has("cuda:0");
    assert_error_has("no CUDA backend");
    cr_assert_null(tensor_empty(SHAPE(3), DTYPE_FLOAT64, cuda));
    cr_assert_null(tensor_scalar(1, DTYPE_FLOAT32, cuda));
    cr_assert_null(tensor_full(SHAPE(3), 1, DTYPE_INT64, (Device){DEVICE_CUDA, 1}));
    assert_error_has("cuda:1");

    Tensor *t = tensor_from_string("[1,2]", DTYPE_FLOAT32);
    error_clear();
    cr_assert_null(tensor_to_device(t, cuda));
    assert_error_has("cuda:0");
    Tensor *same = tensor_to_device(t, DEVICE_CPU_INIT);
    cr_assert(same == t);
    tensor_release(same);
    tensor_release(t);
}

Test(tensor, shape_strings_and_dims) {
    char buf[64];
    cr_assert_str_eq(shape_str(SHAPE(2, 3), buf, sizeof buf), "[2, 3]");
    cr_assert_str_eq(shape_str(0, NULL, buf, sizeof buf), "[]");
    char tiny[6];
    shape_str(SHAPE(1000, 2000, 3000), tiny, sizeof tiny); /* truncated, terminated */
    cr_assert(strlen(tiny) < sizeof tiny);
    cr_assert_eq(tensor_wrap_dim(-1, 3, "x"), 2);
    cr_assert_eq(tensor_wrap_dim(2, 3, "x"), 2);
    cr_assert_eq(tensor_wrap_dim(3, 3, "sum"), -1);
    assert_error_has("sum: dimension 3 out of range for a 3-d tensor (expected -3..2)");
    cr_assert_eq(tensor_wrap_dim(0, 0, "x"), 0);
    cr_assert_eq(tensor_wrap_dim(-1, 0, "x"), 0);
}

Test(tensor, fill_non_contiguous) {
    Tensor *t = tensor_zeros(SHAPE(3, 3), DTYPE_INT64, DEVICE_CPU_INIT);
    Tensor *tt = tensor_transpose(t, 0, 1);
    Tensor *cols = tensor_narrow(tt, 1, 1, 1); /* row 1 of t */
    cr_assert_eq(tensor_fill_(cols, 4), 0);
    assert_tensor_values(t, (double[]){0, 0, 0, 4, 4, 4, 0, 0, 0}, 9, 0, "fill through views");
    tensor_release(t);
    tensor_release(tt);
    tensor_release(cols);
}

/* Pinned host memory through a stand-in GPU: the CPU's kernel table
 * registered as cuda:0, plus host_alloc/host_free that count (a real GPU's
 * are checked in test_gpu_memory.c). tensor_empty_pinned takes its memory from the
 * device's backend and gives it back there; for the CPU, or a device
 * without host_alloc, it is plain host memory. */
static int pinned_allocs, pinned_frees;
static void *counting_host_alloc(Device d, size_t n) {
    (void)d;
    pinned_allocs++;
    return malloc(n);
}
static void counting_host_free(Device d, void *p) {
    (void)d;
    pinned_frees++;
    free(p);
}

Test(tensor, empty_pinned_takes_the_devices_host_memory) {
    static Backend standin;
    standin = cpu_backend;
    standin.host_alloc = counting_host_alloc;
    standin.host_free = counting_host_free;
    backend_register_cuda(&standin, 1);
    const Device cuda0 = {DEVICE_CUDA, 0};

    Tensor *t = tensor_empty_pinned(SHAPE(3, 4), DTYPE_FLOAT32, cuda0);
    cr_assert(t, "%s", error_get());
    cr_assert(tensor_is_pinned(t));
    cr_assert_eq(t->device.type, DEVICE_CPU, "pinned memory is host memory");
    cr_assert_eq(pinned_allocs, 1);
    cr_assert_eq(tensor_fill_(t, 2.5), 0);
    Tensor *v = tensor_view(t, SHAPE(12));
    cr_assert(v && tensor_is_pinned(v), "a view shares the pinned storage");
    Tensor *up = tensor_upload(v, cuda0);
    cr_assert(up, "%s", error_get());
    cr_assert(device_equal(up->device, cuda0));
    double back[12];
    cr_assert_eq(tensor_to_doubles(up, back, 12), 0, "%s", error_get());
    for (int i = 0; i < 12; i++) cr_assert_float_eq(back[i], 2.5, 0);
    tensor_release(up);
    tensor_release(t);
    cr_assert_eq(pinned_frees, 0, "the view still holds the storage");
    tensor_release(v);
    cr_assert_eq(pinned_frees, 1);

    Tensor *plain = tensor_empty_pinned(SHAPE(3), DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert(plain && !tensor_is_pinned(plain));
    tensor_release(plain);
    standin.host_alloc = NULL;
    plain = tensor_empty_pinned(SHAPE(3), DTYPE_INT64, cuda0);
    cr_assert(plain && !tensor_is_pinned(plain), "no host_alloc: plain memory");
    tensor_release(plain);
    cr_assert_eq(pinned_allocs, 1);
    cr_assert(!tensor_is_pinned(NULL));
    Tensor *gpu_side = tensor_zeros(SHAPE(2), DTYPE_FLOAT32, cuda0);
    cr_assert_null(tensor_upload(gpu_side, cuda0));
    assert_error_has("upload: the tensor is on cuda:0, not the CPU");
    tensor_release(gpu_side);
}
