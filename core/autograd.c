/* autograd.c - the graph recorder and the backward pass; see autograd.h.
 *
 * backward() sorts the graph reachable from the loss in topological order
 * with an explicit stack (a deep network must not overflow the C stack),
 * then walks it from the loss down. Each tensor's incoming gradient is
 * summed in its backward_grad slot; leaves that require grad accumulate into
 * .grad. After the walk every node is freed, so memory held for backward
 * (activations, masks) goes back at once, as PyTorch frees saved tensors.
 */
#include "core/autograd.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/ops.h"

static _Thread_local bool grad_disabled;
static _Thread_local AutogradLeafHook leaf_hook;
static _Thread_local void *leaf_hook_ctx;

AutogradLeafHook autograd_set_leaf_hook(AutogradLeafHook hook, void *ctx, void **prev_ctx) {
    AutogradLeafHook prev = leaf_hook;
    if (prev_ctx) *prev_ctx = leaf_hook_ctx;
    leaf_hook = hook;
    leaf_hook_ctx = ctx;
    return prev;
}

bool autograd_is_enabled(void) { return !grad_disabled; }

bool autograd_set_enabled(bool enabled) {
    bool prev = !grad_disabled;
    grad_disabled = !enabled;
    return prev;
}

bool autograd_needs_grad(int n_inputs, Tensor *const *inputs) {
    if (grad_disabled) return false;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

AutogradNode *autograd_record(Tensor *output, const char *name, BackwardFn backward,
                              int n_inputs, Tensor *const *inputs) {
    AutogradNode *node = calloc(1, sizeof *node);
    if (!node) return error_set("autograd: out of memory recording %s", name), NULL;
    node->name = name;
    node->backward = backward;
    node->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) node->inputs[i] = tensor_retain(inputs[i]);
    if (output->grad_fn) autograd_node_free(output->grad_fn);
    output->grad_fn = node;
    output->requires_grad = true;
    return node;
}

void autograd_save(AutogradNode *node, int slot, Tensor *t) {
    tensor_release(node->saved[slot]);
    node->saved[slot] = tensor_retain(t);
}

void autograd_node_free(AutogradNode *node) {
    if (!node) return;
    for (int i = 0; i < node->n_inputs; i++) tensor_release(node->inputs[i]);
    for (int i = 0; i < AUTOGRAD_MAX_SAVED; i++) tensor_release(node->saved[i]);
    if (node->ctx_free) node->ctx_free(node->ctx);
    free(node);
}

/* ---- backward ---- */

typedef struct {
    Tensor **items;
    int64_t count, cap;
} TensorList;

static int list_push(TensorList *l, Tensor *t) {
    if (l->count == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        Tensor **items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) return error_set("backward: out of memory");
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = t;
    return 0;
}

/* Adds g into *slot (taking ownership of g). */
static int accumulate(Tensor **slot, Tensor *g) {
    if (!*slot) {
        *slot = g;
        return 0;
    }
    Tensor *sum = tensor_add(*slot, g);
    tensor_release(g);
    if (!sum) return -1;
    tensor_release(*slot);
    *slot = sum;
    return 0;
}

/* Post-order DFS with an explicit stack; `order` ends with the root. The
 * backward_grad slot doubles as the visited mark (set to a sentinel). A
 * tensor is marked when it is expanded, not when it is pushed (it may be
 * pushed once per consumer): marking on push would let x in x + x*x be
 * emitted after the mul, so the walk would reach x before the mul's share
 * of its gradient. */
static int topo_sort(Tensor *root, TensorList *order) {
    TensorList stack = {0};
    static Tensor visited_mark;
    int rc = 0;
    /* stack entries: a tensor pushed twice, once to expand, once to emit;
     * emission is signalled by a parallel list of flags. */
    TensorList emit = {0};
    if (list_push(&stack, root) || list_push(&emit, NULL)) rc = -1;
    while (rc == 0 && stack.count > 0) {
        Tensor *t = stack.items[--stack.count];
        bool expanded = emit.items[--emit.count] != NULL;
        if (expanded) {
            rc = list_push(order, t);
            /* out of memory: t is in neither list the marks are cleared
             * from below, and a mark left would skip it in the next pass
             * and be freed as a gradient with it */
            if (rc != 0) t->backward_grad = NULL;
            continue;
        }
        if (t->backward_grad == &visited_mark) continue; /* expanded via another path */
        if (t->backward_grad) tensor_release(t->backward_grad); /* left from a failed pass */
        t->backward_grad = &visited_mark;
        if (list_push(&stack, t) || list_push(&emit, t)) {
            t->backward_grad = NULL; /* as above */
            rc = -1;
            break;
        }
        AutogradNode *node = t->grad_fn;
        for (int i = 0; node && i < node->n_inputs; i++) {
            Tensor *in = node->inputs[i];
            if (!in || !in->requires_grad || in->backward_grad == &visited_mark) continue;
            if (list_push(&stack, in) || list_push(&emit, NULL)) {
                rc = -1;
                break;
            }
        }
    }
    /* clear the marks */
    for (int64_t i = 0; i < order->count; i++) order->items[i]->backward_grad = NULL;
    for (int64_t i = 0; i < stack.count; i++)
        if (stack.items[i]->backward_grad == &visited_mark) stack.items[i]->backward_grad = NULL;
    free(stack.items);
    free(emit.items);
    return rc;
}

#define SECOND_BACKWARD                                                                            \
    "backward: trying to backward through the graph a second time (an earlier backward already "   \
    "freed it)"

static int check_backward(const Tensor *output, const Tensor *grad_output) {
    if (!output->requires_grad)
        return error_set("backward: tensor does not require grad and has no grad_fn");
    if (output->graph_freed) return error_set(SECOND_BACKWARD);
    if (!tensor_same_shape(output, grad_output)) {
        char a[128], b[128];
        return error_set("backward: gradient of shape %s for an output of shape %s",
                         tensor_shape_str(grad_output, a, sizeof a),
                         tensor_shape_str(output, b, sizeof b));
    }
    /* the backward functions hand the buffers to kernels typed by the output */
    if (grad_output->dtype != output->dtype || !device_equal(grad_output->device, output->device)) {
        char a[32], b[32];
        return error_set("backward: a gradient of %s on %s for an output of %s on %s",
                         dtype_name(grad_output->dtype), device_name(grad_output->device, a, 32),
                         dtype_name(output->dtype), device_name(output->device, b, 32));
    }
    return 0;
}

/* Leaf t's gradient g (taken) into its .grad, then the leaf hook. */
static int to_leaf(Tensor *t, Tensor *g) {
    if (g->dtype != t->dtype || !tensor_same_shape(g, t)) {
        Tensor *fixed = tensor_reshape(g, t->ndim, t->shape);
        tensor_release(g);
        g = tensor_to_dtype(fixed, t->dtype);
        tensor_release(fixed);
        if (!g) return -1;
    }
    /* Optimizers read .grad as a flat buffer: keep it contiguous. */
    Tensor *flat = tensor_contiguous(g);
    tensor_release(g);
    /* .grad is written in place (optimizers, clipping), so it must own its
     * memory: add hands one gy to both inputs, and views share the caller's
     * grad_output. Like torch's AccumulateGrad, keep the gradient only when
     * nothing else holds it. */
    if (flat && !t->grad && (flat->refcount > 1 || atomic_load(&flat->storage->refcount) > 1)) {
        Tensor *own = tensor_clone(flat);
        tensor_release(flat);
        flat = own;
    }
    if (!flat || accumulate(&t->grad, flat) != 0) return -1;
    /* reverse topological order: no consumer of t is left */
    if (leaf_hook) leaf_hook(leaf_hook_ctx, t);
    return 0;
}

/* t's node run on its gradient g (taken), its inputs' shares summed into
 * their backward_grad, and the node freed (no retain_graph), whether or
 * not it succeeded. */
static int through_node(Tensor *t, Tensor *g) {
    AutogradNode *node = t->grad_fn;
    Tensor *grads[AUTOGRAD_MAX_INPUTS] = {NULL};
    int rc = node->backward(node, g, grads) == 0 ? 0 : error_prefix("backward of %s", node->name);
    tensor_release(g);
    for (int k = 0; k < node->n_inputs; k++) {
        Tensor *in = node->inputs[k];
        if (rc == 0 && grads[k] && in && in->requires_grad)
            rc = accumulate(&in->backward_grad, grads[k]);
        else
            tensor_release(grads[k]);
    }
    t->grad_fn = NULL;
    t->graph_freed = true;
    autograd_node_free(node);
    return rc;
}

/* Drops what the pass held of the graph's tensors; a failed pass still
 * frees the nodes it did not reach. */
static void release_order(TensorList *order, int rc) {
    for (int64_t i = 0; i < order->count; i++) {
        Tensor *t = order->items[i];
        tensor_release(t->backward_grad);
        t->backward_grad = NULL;
        if (rc != 0 && t->grad_fn) {
            autograd_node_free(t->grad_fn);
            t->grad_fn = NULL;
            t->graph_freed = true;
        }
        tensor_release(t);
    }
    free(order->items);
}

int tensor_backward_with(Tensor *output, Tensor *grad_output) {
    if (!output || !grad_output) return -1;
    if (check_backward(output, grad_output) != 0) return -1;
    TensorList order = {0};
    if (topo_sort(output, &order) != 0) {
        free(order.items);
        return -1;
    }
    /* Hold every tensor of the graph while nodes are freed under us. */
    for (int64_t i = 0; i < order.count; i++) tensor_retain(order.items[i]);
    bool prev = autograd_set_enabled(false);
    int rc = 0;
    output->backward_grad = tensor_retain(grad_output);
    for (int64_t i = order.count - 1; i >= 0 && rc == 0; i--) {
        Tensor *t = order.items[i];
        Tensor *g = t->backward_grad;
        t->backward_grad = NULL;
        if (!g) continue; /* no path from the loss carried a gradient here */
        if (t->grad_fn)
            rc = through_node(t, g);
        else if (!t->graph_freed)
            rc = to_leaf(t, g);
        else {
            tensor_release(g);
            rc = error_set(SECOND_BACKWARD);
        }
    }
    autograd_set_enabled(prev);
    release_order(&order, rc);
    return rc;
}

int tensor_backward(Tensor *loss) {
    if (!loss) return -1;
    if (tensor_numel(loss) != 1) {
        char s[128];
        return error_set("backward: grad can be implicitly created only for a one-element "
                         "tensor, not shape %s",
                         tensor_shape_str(loss, s, sizeof s));
    }
    Tensor *one = tensor_full(loss->ndim, loss->shape, 1.0, loss->dtype, loss->device);
    int rc = tensor_backward_with(loss, one);
    tensor_release(one);
    return rc;
}

int tensor_set_requires_grad(Tensor *t, bool requires_grad) {
    if (!t) return -1;
    if (t->grad_fn && !requires_grad)
        return error_set("requires_grad_: cannot turn off grad of a non-leaf tensor; use detach");
    if (requires_grad && !dtype_is_float(t->dtype))
        return error_set("requires_grad_: only float tensors can require grad, not %s",
                         dtype_name(t->dtype));
    t->requires_grad = requires_grad;
    return 0;
}

void tensor_zero_grad(Tensor *t) {
    if (!t) return;
    tensor_release(t->grad);
    t->grad = NULL;
}

Tensor *tensor_detach(Tensor *t) {
    if (!t) return NULL;
    return tensor_make_view(t, t->ndim, t->shape, t->strides, t->offset);
}

Tensor *autograd_reduce_to_shape(Tensor *g, int ndim, const int64_t *shape) {
    if (!g) return NULL;
    if (g->ndim == ndim && memcmp(g->shape, shape, (size_t)ndim * sizeof *shape) == 0)
        return tensor_retain(g);
    /* Dims that were added in front, and dims of size 1 that were expanded. */
    int dims[TENSOR_MAX_DIMS], n = 0;
    int lead = g->ndim - ndim;
    for (int i = 0; i < g->ndim; i++)
        if (i < lead || (shape[i - lead] == 1 && g->shape[i] != 1)) dims[n++] = i;
    Tensor *summed = n ? tensor_sum_dims(g, n, dims, true) : tensor_retain(g);
    Tensor *out = tensor_reshape(summed, ndim, shape);
    tensor_release(summed);
    return out;
}
