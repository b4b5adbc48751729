/* backend.c - the CPU backend table: the host allocator (allocator.c) and
 * the kernels of core/cpu/, one file per concept. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "core/error.h"

static int cpu_memcpy(Device device, void *dst, const void *src, size_t nbytes) {
    (void)device;
    if (nbytes) memcpy(dst, src, nbytes);
    return 0;
}

/* The model name from /proc/cpuinfo ("cpu" where there is none, as on
 * some ARM kernels), and the machine's memory. */
static int cpu_device_info(Device device, char *name, size_t n, uint64_t *mem_total,
                           uint64_t *mem_free) {
    (void)device;
    snprintf(name, n, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(name, n, "%s", colon);
        break;
    }
    if (f) fclose(f);
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);
    if (pages < 0 || avail < 0 || page < 0)
        return error_set("cpu: cannot read the machine's memory size");
    *mem_total = (uint64_t)pages * (uint64_t)page;
    *mem_free = (uint64_t)avail * (uint64_t)page;
    return 0;
}

const Backend cpu_backend = {
    .name = "cpu",
    .blocked_layout = cpu_dnnl_takes, /* oneDNN's nChw16c */
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_memcpy,
    .from_host = cpu_memcpy,
    .device_info = cpu_device_info,
    .check_precision = cpu_check_precision,
    .set_precision = cpu_set_precision,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .convert_blocked = cpu_convert_blocked,
    .im2col = cpu_im2col,
    .col2im = cpu_col2im,
    .conv2d = cpu_conv2d,
    .conv2d_backward_data = cpu_conv2d_backward_data,
    .conv2d_backward_weights = cpu_conv2d_backward_weights,
    .conv2d_relu_max_pool2d = cpu_conv2d_relu_max_pool2d,
    .conv2d_relu_max_pool2d_backward = cpu_conv2d_relu_max_pool2d_backward,
    .conv2d_relu_max_pool2d_chains = cpu_conv2d_relu_max_pool2d_chains,
    .max_pool2d = cpu_max_pool2d,
    .max_pool2d_backward = cpu_max_pool2d_backward,
    .max_pool2d_2x2_blocked = cpu_max_pool2d_2x2_blocked,
    .max_pool2d_2x2_blocked_backward = cpu_max_pool2d_2x2_blocked_backward,
    .avg_pool2d = cpu_avg_pool2d,
    .avg_pool2d_backward = cpu_avg_pool2d_backward,
    .adaptive_avg_pool2d = cpu_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = cpu_adaptive_avg_pool2d_backward,
    .binary = cpu_binary,
    .unary = cpu_unary,
    .unary_backward = cpu_unary_backward,
    .sum = cpu_sum,
    .max_last_dim = cpu_max_last_dim,
    .gemm = cpu_gemm,
    .class_loss_rows = cpu_class_loss_rows,
    .class_loss_rows_backward = cpu_class_loss_rows_backward,
    .softmax = cpu_softmax,
    .softmax_backward = cpu_softmax_backward,
    .channel_sum_product = cpu_channel_sum_product,
    .channel_affine = cpu_channel_affine,
    .layer_norm = cpu_layer_norm,
    .layer_norm_backward = cpu_layer_norm_backward,
    .embedding = cpu_embedding,
    .embedding_backward = cpu_embedding_backward,
    .causal_attention = cpu_causal_attention,
    .causal_attention_backward = cpu_causal_attention_backward,
    .uniform = cpu_uniform,
    .sgd_update = cpu_sgd_update,
    .adam_update = cpu_adam_update,
    /* kernels: added here as their files land */
};
