/* all_reduce.c - x summed over a data-parallel group's ranks, as a
 * differentiable op (torch.distributed.nn.all_reduce): SyncBatchNorm's
 * global batch statistics are built from it.
 *
 * If every rank r contributes x_r and S = sum_r x_r, each rank's loss L_r
 * depends on S, and the job's loss is sum_r L_r, then dL/dx_r is
 * sum_r' dL_r'/dS: the backward is the same all-reduce of the gradients.
 * Ranks run the same graph, so they reach each backward all-reduce in the
 * same order.
 */
#include "core/autograd.h"
#include "core/dist/group.h"
#include "core/error.h"
#include "core/ops.h"

/* The sum on x's device through the group's device all-reduce (NCCL):
 * queued, with the device's later work ordered after it, so neither the
 * host nor the backward pass waits for it here. */
static Tensor *all_reduce_on_device(Tensor *x, DistGroup *g) {
    Tensor *out = tensor_clone(x); /* fresh and contiguous: reduced in place */
    if (!out) return NULL;
    if (g->all_reduce_device(g, tensor_data(out), tensor_numel(out), out->dtype, x->device) != 0) {
        tensor_release(out);
        return NULL;
    }
    /* unjoined, the sum may still be written: out is left, not freed for
     * reuse (the failed rank's job is ending) */
    return g->join_device(g, x->device, false) == 0 ? out : NULL;
}

/* A new tensor of x's shape, dtype and device holding the sum over ranks:
 * on the device where the group reduces device memory, else through a
 * host copy. */
static Tensor *all_reduce_copy(Tensor *x, DistGroup *g) {
    if (x->device.type != DEVICE_CPU && g->all_reduce_device && g->join_device)
        return all_reduce_on_device(x, g);
    /* a fresh contiguous host copy: reduced in place */
    Tensor *flat =
        x->device.type == DEVICE_CPU ? tensor_clone(x) : tensor_to_device(x, DEVICE_CPU_INIT);
    if (!flat) return NULL;
    if (dist_all_reduce(g, tensor_data(flat), tensor_numel(flat), flat->dtype) != 0) {
        tensor_release(flat);
        return NULL;
    }
    if (x->device.type == DEVICE_CPU) return flat;
    Tensor *out = tensor_to_device(flat, x->device);
    tensor_release(flat);
    return out;
}

static int all_reduce_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    gx[0] = all_reduce_copy(gy, node->ctx);
    return gx[0] ? 0 : -1;
}

Tensor *tensor_all_reduce_sum(Tensor *x, DistGroup *g) {
    if (!x) return NULL;
    if (x->dtype != DTYPE_FLOAT32 && x->dtype != DTYPE_FLOAT64)
        return error_set("all_reduce: expected a float32 or float64 tensor, got %s",
                         dtype_name(x->dtype)),
               NULL;
    /* one rank: the sum is x itself, returned as it is (callers only read
     * it), with no trip through the host (on a GPU that trip waited for the
     * device at each BatchNorm, and a CUDA graph could not hold the step) */
    if (!dist_active(g)) return tensor_retain(x);
    bool prev = autograd_set_enabled(false);
    Tensor *out = all_reduce_copy(x, g);
    autograd_set_enabled(prev);
    if (out && autograd_needs_grad(1, &x)) {
        AutogradNode *node = autograd_record(out, "AllReduceBackward", all_reduce_backward, 1, &x);
        if (!node) {
            tensor_release(out);
            return NULL;
        }
        node->ctx = g; /* borrowed: the group outlives the graph */
    }
    return out;
}
