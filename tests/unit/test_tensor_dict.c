/* test_tensor_dict.c - core/tensor_dict.c: ordered named tensors with
 * replacement, and the references the dict holds. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "core/error.h"
#include "core/tensor_dict.h"

Test(tensor_dict, set_get_order_replace) {
    TensorDict d;
    tensor_dict_init(&d);
    cr_assert_null(tensor_dict_get(&d, "w"));
    cr_assert_eq(tensor_dict_index(&d, "w"), -1);
    Tensor *ts[40];
    char name[16];
    for (int i = 0; i < 40; i++) { /* past the first capacity */
        ts[i] = tensor_scalar(i, DTYPE_FLOAT32, DEVICE_CPU_INIT);
        snprintf(name, sizeof name, "p%d", i);
        cr_assert_eq(tensor_dict_set(&d, name, ts[i]), 0);
        cr_assert_eq(ts[i]->refcount, 2);
    }
    cr_assert_eq(d.count, 40);
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "p%d", i);
        cr_assert_eq(tensor_dict_index(&d, name), i, "insertion order");
        cr_assert(tensor_dict_get(&d, name) == ts[i]);
    }
    /* replacing keeps the position and swaps the reference */
    Tensor *r = tensor_scalar(-1, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_dict_set(&d, "p3", r), 0);
    cr_assert_eq(d.count, 40);
    cr_assert_eq(tensor_dict_index(&d, "p3"), 3);
    cr_assert(tensor_dict_get(&d, "p3") == r);
    cr_assert_eq(ts[3]->refcount, 1);
    cr_assert_eq(r->refcount, 2);
    cr_assert_eq(tensor_dict_set(&d, "x", NULL), -1);
    tensor_dict_free(&d);
    cr_assert_eq(d.count, 0);
    cr_assert_eq(r->refcount, 1);
    for (int i = 0; i < 40; i++) tensor_release(ts[i]);
    tensor_release(r);
    tensor_dict_free(&d); /* reusable, and freeing twice is harmless */
}

Test(tensor_dict, append_adds_at_the_end) {
    TensorDict d;
    tensor_dict_init(&d);
    Tensor *a = tensor_scalar(1, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *b = tensor_scalar(2, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    cr_assert_eq(tensor_dict_set(&d, "a", a), 0);
    cr_assert_eq(tensor_dict_append(&d, "b", b), 0);
    cr_assert_eq(d.count, 2);
    cr_assert_str_eq(d.names[1], "b");
    cr_assert(d.tensors[1] == b);
    cr_assert_eq(b->refcount, 2);
    cr_assert_eq(tensor_dict_append(&d, "c", NULL), -1);
    cr_assert_str_eq(error_get(), "tensor_dict: no tensor for 'c'");
    cr_assert_eq(d.count, 2);
    tensor_dict_free(&d);
    cr_assert_eq(b->refcount, 1);
    tensor_release(a);
    tensor_release(b);
}

Test(tensor_dict, set_the_same_tensor_again) {
    /* The borrowed pointer from get, set again under its own name: the dict
     * holds the only reference, so it must not be released first. */
    TensorDict d;
    tensor_dict_init(&d);
    Tensor *t = tensor_scalar(7, DTYPE_FLOAT32, DEVICE_CPU_INIT);
    tensor_dict_set(&d, "w", t);
    tensor_release(t);
    Tensor *w = tensor_dict_get(&d, "w");
    cr_assert_eq(tensor_dict_set(&d, "w", w), 0);
    cr_assert_eq(tensor_dict_get(&d, "w")->refcount, 1);
    cr_assert_eq(tensor_item(tensor_dict_get(&d, "w")), 7.0);
    tensor_dict_free(&d);
}
