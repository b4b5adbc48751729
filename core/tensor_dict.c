/* tensor_dict.c - ordered named tensors; see tensor_dict.h. Lookups are
 * linear: state_dicts have tens of entries, not thousands. */
#include "core/tensor_dict.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void tensor_dict_init(TensorDict *d) { memset(d, 0, sizeof *d); }

void tensor_dict_free(TensorDict *d) {
    for (int i = 0; i < d->count; i++) {
        free(d->names[i]);
        tensor_release(d->tensors[i]);
    }
    free(d->names);
    free(d->tensors);
    tensor_dict_init(d);
}

int tensor_dict_index(const TensorDict *d, const char *name) {
    for (int i = 0; i < d->count; i++)
        if (strcmp(d->names[i], name) == 0) return i;
    return -1;
}

Tensor *tensor_dict_get(const TensorDict *d, const char *name) {
    int i = tensor_dict_index(d, name);
    return i < 0 ? NULL : d->tensors[i];
}

int tensor_dict_set(TensorDict *d, const char *name, Tensor *t) {
    if (!t) return -1;
    int i = tensor_dict_index(d, name);
    if (i >= 0) { /* retain first: t may be the entry itself (from get) */
        Tensor *old = d->tensors[i];
        d->tensors[i] = tensor_retain(t);
        tensor_release(old);
        return 0;
    }
    return tensor_dict_append(d, name, t);
}

int tensor_dict_append(TensorDict *d, const char *name, Tensor *t) {
    if (!t) return error_set("tensor_dict: no tensor for '%s'", name);
    if (d->count == d->capacity) {
        int cap = d->capacity ? d->capacity * 2 : 16;
        char **names = realloc(d->names, (size_t)cap * sizeof *names);
        if (!names) return error_set("tensor_dict: out of memory");
        d->names = names;
        Tensor **tensors = realloc(d->tensors, (size_t)cap * sizeof *tensors);
        if (!tensors) return error_set("tensor_dict: out of memory");
        d->tensors = tensors;
        d->capacity = cap;
    }
    char *copy = strdup(name);
    if (!copy) return error_set("tensor_dict: out of memory");
    d->names[d->count] = copy;
    d->tensors[d->count] = tensor_retain(t);
    d->count++;
    return 0;
}
