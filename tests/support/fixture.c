/* fixture.c - PyTorch fixture loading and tensor comparison for tests. */
#include "tests/support/fixture.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

json_t *fixture_load(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s.json", name);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) cr_assert_fail("fixture %s: %s (line %d)", path, err.text, err.line);
    return root;
}

json_t *fixture_case(json_t *fixture, const char *name) {
    json_t *kase = json_object_get(json_object_get(fixture, "cases"), name);
    if (!kase) cr_assert_fail("fixture case '%s' missing", name);
    return kase;
}

Tensor *fixture_tensor(json_t *kase, const char *key) {
    json_t *obj = json_object_get(kase, key);
    if (!obj) cr_assert_fail("fixture key '%s' missing", key);
    DType dtype;
    if (dtype_parse(json_string_value(json_object_get(obj, "dtype")), &dtype) != 0)
        cr_assert_fail("fixture '%s': %s", key, error_get());
    json_t *shape = json_object_get(obj, "shape"), *data = json_object_get(obj, "data");
    int ndim = (int)json_array_size(shape);
    int64_t dims[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) dims[i] = json_integer_value(json_array_get(shape, (size_t)i));
    size_t n = json_array_size(data);
    double *values = malloc((n ? n : 1) * sizeof *values);
    cr_assert(values != NULL);
    for (size_t i = 0; i < n; i++) values[i] = json_number_value(json_array_get(data, i));
    Tensor *t = tensor_from_doubles(values, ndim, dims, dtype);
    free(values);
    if (!t) cr_assert_fail("fixture '%s': %s", key, error_get());
    return t;
}

double fixture_number(json_t *kase, const char *key) {
    json_t *v = json_object_get(kase, key);
    if (!json_is_number(v)) cr_assert_fail("fixture number '%s' missing", key);
    return json_number_value(v);
}

void assert_tensor_close(const Tensor *actual, const Tensor *expected, double rtol, double atol,
                         const char *what) {
    cr_assert(actual != NULL, "%s: tensor is NULL (%s)", what, error_get());
    char sa[128], se[128];
    cr_assert(tensor_same_shape(actual, expected), "%s: shape %s, expected %s", what,
              tensor_shape_str(actual, sa, sizeof sa), tensor_shape_str(expected, se, sizeof se));
    int64_t n = tensor_numel(actual);
    for (int64_t i = 0; i < n; i++) {
        double a = tensor_get(actual, i), e = tensor_get(expected, i);
        if (!(fabs(a - e) <= atol + rtol * fabs(e)))
            cr_assert_fail("%s: element %lld is %.9g, expected %.9g (rtol %g, atol %g)", what,
                     (long long)i, a, e, rtol, atol);
    }
}

void assert_tensor_values(const Tensor *t, const double *values, int64_t n, double atol,
                          const char *what) {
    cr_assert(t != NULL, "%s: tensor is NULL (%s)", what, error_get());
    cr_assert_eq(tensor_numel(t), n, "%s: %lld elements, expected %lld", what,
                 (long long)tensor_numel(t), (long long)n);
    for (int64_t i = 0; i < n; i++) {
        double a = tensor_get(t, i);
        if (!(fabs(a - values[i]) <= atol))
            cr_assert_fail("%s: element %lld is %.9g, expected %.9g", what, (long long)i, a, values[i]);
    }
}

const char *shared_path(const char *rel, char *buf, size_t n) {
    const char *root = getenv("TRAIND_SHARED");
    snprintf(buf, n, "%s/%s", root ? root : "../shared", rel);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

void fixture_expect_error(Tensor *t, const char *want) {
    if (t) {
        tensor_release(t);
        cr_assert_fail("expected an error containing \"%s\", got a tensor", want);
    }
    cr_assert(strstr(error_get(), want) != NULL, "error \"%s\" lacks \"%s\"", error_get(), want);
}

void fixture_assert_close(json_t *kase, const char *key, const Tensor *got, double rtol,
                          double atol, const char *case_name) {
    char what[128];
    snprintf(what, sizeof what, "%s %s", case_name, key);
    cr_assert(got != NULL, "%s missing", what);
    Tensor *want = fixture_tensor(kase, key);
    assert_tensor_close(got, want, rtol, atol, what);
    tensor_release(want);
}

void fixture_assert_state_dict(const TensorDict *sd, json_t *kase) {
    json_t *names = json_object_get(kase, "names"), *shapes = json_object_get(kase, "shapes");
    json_t *dtypes = json_object_get(kase, "dtypes");
    cr_assert(names && shapes, "fixture case has no names or shapes");
    cr_assert_eq((size_t)sd->count, json_array_size(names), "%d entries, PyTorch has %zu",
                 sd->count, json_array_size(names));
    for (int i = 0; i < sd->count; i++) {
        const char *want = json_string_value(json_array_get(names, (size_t)i));
        cr_assert_str_eq(sd->names[i], want, "entry %d: '%s', PyTorch '%s'", i, sd->names[i],
                         want);
        json_t *shape = json_array_get(shapes, (size_t)i);
        const Tensor *t = sd->tensors[i];
        cr_assert_eq((size_t)t->ndim, json_array_size(shape), "'%s' ndim", want);
        for (int d = 0; d < t->ndim; d++)
            cr_assert_eq(t->shape[d], json_integer_value(json_array_get(shape, (size_t)d)),
                         "'%s' dim %d", want, d);
        if (dtypes)
            cr_assert_str_eq(dtype_name(t->dtype),
                             json_string_value(json_array_get(dtypes, (size_t)i)), "'%s' dtype",
                             want);
    }
}
