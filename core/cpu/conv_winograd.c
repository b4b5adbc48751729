/* conv_winograd.c - which algorithm a float32 convolution runs on the CPU:
 * oneDNN's direct JIT kernels (what PyTorch's CPU convolutions use), or
 * its Winograd F(4x4, 3x3) kernels (jit_wino_4x3) where they are faster.
 *
 * Winograd trades multiplications for transforms: for a 3x3 window of
 * stride 1 it does 36 products per 4x4 outputs instead of 144. Measured
 * on the MNIST CNN's second convolution (32 -> 64 channels, 14x14, batch
 * 64; 2 AVX-512 cores): forward 1.4x, backward data 1.3x, weights 1.6x
 * faster than direct; on its first (one input channel) forward was 6x
 * slower, the transforms outweighing the few products. Hence the rule:
 * float32, 3x3, stride 1, no dilation, one group, at least
 * WINOGRAD_MIN_CHANNELS channels in and out. Its rounding differs from
 * direct summation's (the MNIST CNN's first five losses by 1e-7
 * relative); the PyTorch parity tests pass at their tolerances. The kernels exist only for some
 * processors (AVX-512): a probe of all three passes decides once per
 * process. TRAIND_WINOGRAD=0 keeps every convolution direct, for
 * PyTorch's own arithmetic.
 */
#include "core/cpu/dnnl.h"

#include <stdlib.h>
#include <string.h>

#define WINOGRAD_MIN_CHANNELS 16

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool available;

/* The three passes' primitive descriptors for a small eligible shape. */
static void probe(void) {
    const char *v = getenv("TRAIND_WINOGRAD");
    if (v && strcmp(v, "0") == 0) return;
    dnnl_engine_t e = cpu_dnnl_engine();
    if (!e) return;
    Window2d w = {.batch = 2, .channels = WINOGRAD_MIN_CHANNELS, .height = 8, .width = 8,
                  .kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1,
                  .pad_w = 1, .dilation_h = 1, .dilation_w = 1, .out_h = 8, .out_w = 8};
    DnnlConvShape s = {w, WINOGRAD_MIN_CHANNELS, 1};
    bool ok = true;
    dnnl_primitive_desc_t fwd = NULL;
    for (int pass = DNNL_CONV_FORWARD; ok && pass <= DNNL_CONV_BACKWARD_WEIGHTS; pass++) {
        dnnl_convolution_desc_t d;
        dnnl_primitive_desc_t pd = NULL;
        ok = cpu_dnnl_conv_desc_alg(&s, (DnnlConvPass)pass, dnnl_f32, dnnl_convolution_winograd,
                                    NULL, NULL, &d) == dnnl_success &&
             dnnl_primitive_desc_create(&pd, &d, NULL, e, fwd) == dnnl_success;
        if (pass == DNNL_CONV_FORWARD)
            fwd = pd; /* the hint of the backward passes */
        else if (pd)
            dnnl_primitive_desc_destroy(pd);
    }
    if (fwd) dnnl_primitive_desc_destroy(fwd);
    available = ok;
}

bool cpu_dnnl_winograd_available(void) {
    pthread_once(&probe_once, probe);
    return available;
}

dnnl_alg_kind_t cpu_dnnl_conv_algorithm(const DnnlConvShape *s, dnnl_data_type_t in) {
    const Window2d *w = &s->w;
    bool eligible = in == dnnl_f32 && s->groups == 1 && w->kernel_h == 3 && w->kernel_w == 3 &&
                    w->stride_h == 1 && w->stride_w == 1 && w->dilation_h == 1 &&
                    w->dilation_w == 1 && w->channels >= WINOGRAD_MIN_CHANNELS &&
                    s->out_channels >= WINOGRAD_MIN_CHANNELS;
    return eligible && cpu_dnnl_winograd_available() ? dnnl_convolution_winograd
                                                     : dnnl_convolution_direct;
}
