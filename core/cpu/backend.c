/* backend.c - the CPU backend table: the host allocator (allocator.c) and
 * the kernels of core/cpu/, one file per concept. */
#include <string.h>

#include "core/cpu/cpu.h"

static int cpu_memcpy(Device device, void *dst, const void *src, size_t nbytes) {
    (void)device;
    if (nbytes) memcpy(dst, src, nbytes);
    return 0;
}

const Backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_memcpy,
    .from_host = cpu_memcpy,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .im2col = cpu_im2col,
    .col2im = cpu_col2im,
    .max_pool2d = cpu_max_pool2d,
    .max_pool2d_backward = cpu_max_pool2d_backward,
    .avg_pool2d = cpu_avg_pool2d,
    .avg_pool2d_backward = cpu_avg_pool2d_backward,
    .binary = cpu_binary,
    .unary = cpu_unary,
    .unary_backward = cpu_unary_backward,
    .sum = cpu_sum,
    .max_last_dim = cpu_max_last_dim,
    .gemm = cpu_gemm,
    .gather_last_dim = cpu_gather_last_dim,
    .scatter_last_dim = cpu_scatter_last_dim,
    .softmax = cpu_softmax,
    .softmax_backward = cpu_softmax_backward,
    .uniform = cpu_uniform,
    .sgd_update = cpu_sgd_update,
    .adam_update = cpu_adam_update,
    /* kernels: added here as their files land */
};
