/* tensor_dict.h - an ordered list of named tensors: a state_dict.
 *
 * Module state_dicts, optimizer state, safetensors files and checkpoints all
 * pass through this one type. Names are copied; tensors are retained.
 */
#ifndef TRAIND_CORE_TENSOR_DICT_H
#define TRAIND_CORE_TENSOR_DICT_H

#include "core/tensor.h"

typedef struct {
    int count, capacity;
    char **names;
    Tensor **tensors;
} TensorDict;

void tensor_dict_init(TensorDict *d);
void tensor_dict_free(TensorDict *d); /* releases every tensor; d reusable after init */
/* Appends (or replaces an entry of the same name). Retains t. */
int tensor_dict_set(TensorDict *d, const char *name, Tensor *t);
/* Appends without looking for the name, for a caller that knows it is not
 * there (a file's names, unique already): no linear search per entry. */
int tensor_dict_append(TensorDict *d, const char *name, Tensor *t);
Tensor *tensor_dict_get(const TensorDict *d, const char *name); /* borrowed, or NULL */
int tensor_dict_index(const TensorDict *d, const char *name);   /* -1 if absent */

#endif
