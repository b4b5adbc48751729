/* spec_examples.c - see spec_examples.h. */
#include "tests/support/spec_examples.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* design.md's example, verbatim, except that JSON has no comments. */
const char *const spec_example_design =
    "{\n"
    "  \"name\": \"mnist-cnn\",\n"
    "  \"data\": {\n"
    "    \"train\": \"mnist-train\",\n"
    "    \"val\": \"mnist-test\",\n"
    "    \"transforms\": [{\"type\": \"ToTensor\"}, {\"type\": \"Normalize\", \"mean\": [0.5], "
    "\"std\": [1.0]}]\n"
    "  },\n"
    "  \"model\": [\n"
    "    {\"type\": \"Conv2d\", \"in_channels\": 1, \"out_channels\": 32, \"kernel_size\": 3, "
    "\"padding\": 1},\n"
    "    {\"type\": \"ReLU\"},\n"
    "    {\"type\": \"MaxPool2d\", \"kernel_size\": 2},\n"
    "    {\"type\": \"Flatten\"},\n"
    "    {\"type\": \"Linear\", \"in_features\": 6272, \"out_features\": 10}\n"
    "  ],\n"
    "  \"loss\": {\"type\": \"CrossEntropyLoss\"},\n"
    "  \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.01, \"momentum\": 0.9},\n"
    "  \"scheduler\": {\"type\": \"LambdaLR\", \"lr_lambda\": \"0.95 ** epoch\"},\n"
    "  \"epochs\": 2, \"batch_size\": 64, \"shuffle\": true, \"seed\": 0,\n"
    "  \"device\": \"auto\",\n"
    "  \"metrics\": [\"accuracy\"],\n"
    "  \"checkpoint\": {\"every_epochs\": 1, \"keep_last\": 3},\n"
    "  \"init\": null\n"
    "}\n";

/* A small valid spec: an MLP on 4 features, 3 classes. */
const char *const spec_example_mlp =
    "{\"data\": {\"train\": \"t\"}, \"model\": [{\"type\": \"Linear\", \"in_features\": 4, "
    "\"out_features\": 3}], \"loss\": {\"type\": \"CrossEntropyLoss\"}, "
    "\"optimizer\": {\"type\": \"SGD\", \"lr\": 0.1}, \"epochs\": 1}";

JobSpec *spec_example_parse(const char *text) {
    JobSpec *s = job_spec_parse(text, strlen(text));
    cr_assert(s != NULL, "parse failed: %s", error_get());
    return s;
}

/* `base` with the value at a dotted path ("optimizer.lr") replaced by
 * value_json, or removed when value_json is NULL. Returns malloc'd text. */
char *spec_example_variant(const char *base, const char *dotted, const char *value_json) {
    json_t *root = json_loads(base, 0, NULL);
    cr_assert(root != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s", dotted);
    json_t *obj = root;
    char *key = path, *dot;
    while ((dot = strchr(key, '.'))) {
        *dot = '\0';
        obj = json_object_get(obj, key);
        cr_assert(json_is_object(obj), "variant: no object at %s", key);
        key = dot + 1;
    }
    if (value_json) {
        json_error_t err;
        json_t *v = json_loads(value_json, JSON_DECODE_ANY, &err);
        cr_assert(v != NULL, "variant: bad value %s: %s", value_json, err.text);
        json_object_set_new(obj, key, v);
    } else {
        json_object_del(obj, key);
    }
    char *out = json_dumps(root, 0);
    json_decref(root);
    return out;
}

void spec_example_expect_error(const char *text, const char *want, bool exact) {
    JobSpec *s = job_spec_parse(text, strlen(text));
    if (s) {
        job_spec_free(s);
        cr_assert_fail("parsed %s, expected the error: %s", text, want);
    }
    const char *got = error_get();
    if (exact)
        cr_assert_str_eq(got, want);
    else
        cr_assert(strncmp(got, want, strlen(want)) == 0, "got \"%s\", want \"%s...\"", got,
                  want);
}

/* MNIST as the daemon describes it: uint8 [28, 28] images, labels 0..9. */
SpecDataShape spec_example_mnist(void) {
    SpecDataShape d = {.input_dtype = DTYPE_UINT8,
                       .input_ndim = 2,
                       .input_shape = {28, 28},
                       .target_dtype = DTYPE_INT64,
                       .target_ndim = 0,
                       .num_classes = 10};
    return d;
}
