/* autograd.h - dynamic reverse-mode differentiation, recorded as ops run.
 *
 * Each op whose inputs require grad (and while grad mode is on) attaches an
 * AutogradNode to its output: the inputs it needs, anything else it saved,
 * and a backward function. tensor_backward(loss) walks that graph in reverse
 * topological order (iteratively, no recursion), sums gradients where a tensor
 * feeds several ops, accumulates into the .grad of leaves that require grad,
 * and frees the graph as PyTorch does without retain_graph.
 *
 * Ownership: an output tensor owns its node; the node holds references to its
 * inputs and saved tensors. Releasing the last tensor of a graph frees it,
 * iteratively (tensor.c), so a graph of any depth can be dropped unused.
 *
 * Backward functions compute gradients with ordinary ops (grad mode off), so
 * they run on whatever device the tensors are on.
 */
#ifndef TRAIND_CORE_AUTOGRAD_H
#define TRAIND_CORE_AUTOGRAD_H

#include "core/tensor.h"

#define AUTOGRAD_MAX_INPUTS 4
#define AUTOGRAD_MAX_SAVED 4

/* Fills grad_inputs[i] (one new reference each) for every input i with
 * node->inputs[i]->requires_grad; others may stay NULL. grad_output has the
 * output's shape. Returns 0, or -1 with an error. */
typedef int (*BackwardFn)(AutogradNode *node, Tensor *grad_output, Tensor **grad_inputs);

struct AutogradNode {
    const char *name; /* "MulBackward", as PyTorch names them */
    BackwardFn backward;
    int n_inputs;
    Tensor *inputs[AUTOGRAD_MAX_INPUTS]; /* retained */
    Tensor *saved[AUTOGRAD_MAX_SAVED];   /* retained, may be NULL */
    double scalars[8];                   /* op parameters (alpha, eps, ...) */
    int64_t ints[TENSOR_MAX_DIMS * 2];   /* op parameters (dims, shapes, ...) */
    void *ctx;                           /* anything else, freed with ctx_free */
    void (*ctx_free)(void *ctx);
};

/* ---- grad mode (thread-local, like torch.no_grad) ---- */
bool autograd_is_enabled(void);
/* Sets grad mode and returns the previous one:
 *   bool prev = autograd_set_enabled(false); ... autograd_set_enabled(prev); */
bool autograd_set_enabled(bool enabled);

/* ---- recording, for op implementations ---- */
/* True when an op over these inputs must record a node. */
bool autograd_needs_grad(int n_inputs, Tensor *const *inputs);
/* Creates the node for `output` (sets output->grad_fn, requires_grad) with
 * the given inputs retained. Returns the node for saving more state, or NULL
 * (with an error) on allocation failure; the op should then fail. */
AutogradNode *autograd_record(Tensor *output, const char *name, BackwardFn backward,
                              int n_inputs, Tensor *const *inputs);
/* Retains t into node->saved[slot]. */
void autograd_save(AutogradNode *node, int slot, Tensor *t);
void autograd_node_free(AutogradNode *node);

/* ---- user API ---- */
/* Requires a one-element tensor. Gradients of leaves accumulate in ->grad. */
int tensor_backward(Tensor *loss);
/* Like backward with an explicit upstream gradient of output's shape. */
int tensor_backward_with(Tensor *output, Tensor *grad_output);
int tensor_set_requires_grad(Tensor *t, bool requires_grad); /* leaves only */
void tensor_zero_grad(Tensor *t); /* releases ->grad, as set_to_none=True */
/* Called on the backward's thread when a leaf's .grad holds everything
 * this backward pass gives it (a data-parallel job starts reducing a
 * gradient bucket then, as DDP's hooks do). Per thread; NULL: none.
 * Returns the previous hook; *prev_ctx its context. */
typedef void (*AutogradLeafHook)(void *ctx, Tensor *leaf);
AutogradLeafHook autograd_set_leaf_hook(AutogradLeafHook hook, void *ctx, void **prev_ctx);
/* A new tensor sharing storage, cut from the graph. */
Tensor *tensor_detach(Tensor *t);

/* Sums g over broadcast dimensions so it has `shape` again: the gradient of
 * an input that was broadcast to g's shape. Returns a new reference. */
Tensor *autograd_reduce_to_shape(Tensor *g, int ndim, const int64_t *shape);

#endif
