/* test_conv_paths.c - every way a convolution runs, each against PyTorch
 * over a batch of 7 (tests/fixtures/gen_conv_groups.py, cases batch7*):
 * oneDNN on the CPU, direct and, for 16 channels of 3x3 stride 1, its
 * Winograd kernels where the processor has them (or direct under
 * TRAIND_WINOGRAD=0); im2col + GEMM on the CPU over the whole batch (the
 * forward's columns kept for the weight gradient) and in chunks of 3
 * images with a short last chunk of 1 (columns made again per chunk);
 * and on the GPU cuDNN, and its im2col (cuDNN off), whole and chunked
 * (skipped without one). A chunk that read the wrong images, forward or
 * backward, fails here. */
#include <criterion/criterion.h>

#include "core/autograd.h"
#include "core/cpu/cpu.h"
#include "core/cpu/dnnl.h"
#include "core/error.h"
#include "core/ops.h"
#include "tests/support/fixture.h"
#include "tests/support/need_gpu.h"

static const char *const cases[] = {"batch7", "batch7_groups2_stride2", "batch7_winograd"};

static Tensor *on(Tensor *t, Device d) {
    Tensor *m = tensor_to_device(t, d);
    cr_assert(m, "to %s: %s", d.type == DEVICE_CPU ? "cpu" : "cuda", error_get());
    tensor_release(t);
    return m;
}

/* Sets the im2col scratch to hold exactly `images` images of this case's
 * column matrix ([C*kh*kw, out_h*out_w] an image, float32): a batch of 7
 * in chunks of 3 is 3, 3 and a short last 1. */
static void chunks_of(int64_t images, const Tensor *x, const Tensor *w, const Tensor *gy) {
    int64_t per = x->shape[1] * w->shape[2] * w->shape[3] * gy->shape[2] * gy->shape[3] * 4;
    tensor_conv2d_set_scratch_bytes(images * per);
}

/* The absolute tolerance: 1e-5, but 16 channels' weight gradient sums
 * 7 x 72 products of values near 1 per element (about 20 in size), which
 * float32 in another order (im2col's GEMM, oneDNN's, Winograd's
 * transforms) moves by up to 2e-5. */
static double atol_of(const char *name) {
    return strcmp(name, "batch7_winograd") == 0 ? 1e-4 : 1e-5;
}

/* conv of the case's x, weight and bias on device d (im2col chunks of
 * `chunk` images where chunk > 0), backward with its upstream gradient,
 * each result against PyTorch's. */
static void check_case(json_t *fx, const char *name, Device d, int64_t chunk, const char *path) {
    json_t *kase = fixture_case(fx, name);
    Tensor *x = on(fixture_tensor(kase, "x"), d), *w = on(fixture_tensor(kase, "weight"), d);
    Tensor *b = on(fixture_tensor(kase, "bias"), d), *gw = on(fixture_tensor(kase, "gw"), d);
    if (chunk > 0) chunks_of(chunk, x, w, gw);
    tensor_set_requires_grad(x, true);
    tensor_set_requires_grad(w, true);
    tensor_set_requires_grad(b, true);
    int s = (int)fixture_number(kase, "stride"), p = (int)fixture_number(kase, "padding");
    Conv2dParams cp = {s, s, p, p, 1, 1, (int)fixture_number(kase, "groups")};
    Tensor *out = tensor_conv2d_with(x, w, b, &cp);
    cr_assert(out != NULL, "%s %s: %s", path, name, error_get());
    cr_assert(tensor_backward_with(out, gw) == 0, "%s %s: %s", path, name, error_get());
    const char *keys[4] = {"out", "gx", "gweight", "gbias"};
    Tensor *got[4] = {out, x->grad, w->grad, b->grad};
    for (int i = 0; i < 4; i++) {
        Tensor *want = fixture_tensor(kase, keys[i]);
        Tensor *host = tensor_to_device(got[i], DEVICE_CPU_INIT);
        char what[96];
        snprintf(what, sizeof what, "%s %s %s", path, name, keys[i]);
        assert_tensor_close(host, want, 1e-5, atol_of(name), what);
        tensor_release(host);
        tensor_release(want);
    }
    tensor_release(out), tensor_release(gw);
    tensor_release(x), tensor_release(w), tensor_release(b);
}

static void check_all(Device d, int64_t chunk, const char *path) {
    json_t *fx = fixture_load("conv_groups");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_case(fx, cases[i], d, chunk, path);
    json_decref(fx);
}

Test(conv_paths, onednn_on_the_cpu) {
    check_all(DEVICE_CPU_INIT, 0, "oneDNN");
    const char *impl = cpu_conv_library_impl();
    cr_assert(impl != NULL, "oneDNN never ran: no kernel chosen");
    fprintf(stderr, "conv_paths: oneDNN chose %s\n", impl);
}

/* The algorithm the CPU picks for a case's shape (float32 unless bf16). */
static dnnl_alg_kind_t algorithm_of(json_t *fx, const char *name, bool bf16) {
    json_t *kase = fixture_case(fx, name);
    Tensor *x = fixture_tensor(kase, "x"), *w = fixture_tensor(kase, "weight");
    int s = (int)fixture_number(kase, "stride"), p = (int)fixture_number(kase, "padding");
    Window2d win = {.batch = x->shape[0], .channels = x->shape[1], .height = x->shape[2],
                    .width = x->shape[3], .kernel_h = w->shape[2], .kernel_w = w->shape[3],
                    .stride_h = s, .stride_w = s, .pad_h = p, .pad_w = p, .dilation_h = 1,
                    .dilation_w = 1};
    win.out_h = (win.height + 2 * p - win.kernel_h) / s + 1;
    win.out_w = (win.width + 2 * p - win.kernel_w) / s + 1;
    DnnlConvShape shape = {win, w->shape[0], (int)fixture_number(kase, "groups")};
    tensor_release(x), tensor_release(w);
    return cpu_dnnl_conv_algorithm(&shape, bf16 ? dnnl_bf16 : dnnl_f32);
}

Test(conv_paths, winograd_for_wide_3x3_stride_1_on_the_cpu) {
    if (!cpu_dnnl_winograd_available())
        cr_skip_test("this processor has no oneDNN Winograd kernels (they need AVX-512)");
    json_t *fx = fixture_load("conv_groups");
    cr_assert_eq(algorithm_of(fx, "batch7_winograd", false), dnnl_convolution_winograd);
    cr_assert_eq(algorithm_of(fx, "batch7_winograd", true), dnnl_convolution_direct, "bf16");
    cr_assert_eq(algorithm_of(fx, "batch7", false), dnnl_convolution_direct, "4 channels");
    cr_assert_eq(algorithm_of(fx, "batch7_groups2_stride2", false), dnnl_convolution_direct);
    check_case(fx, "batch7_winograd", DEVICE_CPU_INIT, 0, "oneDNN Winograd");
    const char *impl = cpu_conv_library_impl();
    cr_assert(impl && strstr(impl, "wino"), "oneDNN chose %s", impl ? impl : "nothing");
    fprintf(stderr, "conv_paths: Winograd ran as %s\n", impl);
    json_decref(fx);
}

Test(conv_paths, winograd_off_keeps_direct_on_the_cpu) {
    setenv("TRAIND_WINOGRAD", "0", 1); /* before the probe, once per process */
    cr_assert(!cpu_dnnl_winograd_available());
    json_t *fx = fixture_load("conv_groups");
    cr_assert_eq(algorithm_of(fx, "batch7_winograd", false), dnnl_convolution_direct);
    check_case(fx, "batch7_winograd", DEVICE_CPU_INIT, 0, "oneDNN direct");
    const char *impl = cpu_conv_library_impl();
    cr_assert(impl && !strstr(impl, "wino"), "oneDNN chose %s", impl ? impl : "nothing");
    json_decref(fx);
}

Test(conv_paths, im2col_whole_batch_on_the_cpu) {
    cpu_conv_library(false);
    check_all(DEVICE_CPU_INIT, 0, "im2col whole");
    cr_assert_null(cpu_conv_library_impl(), "oneDNN ran while switched off");
}

Test(conv_paths, im2col_in_chunks_on_the_cpu) {
    cpu_conv_library(false);
    check_all(DEVICE_CPU_INIT, 3, "im2col chunks of 3");
    check_all(DEVICE_CPU_INIT, 1, "im2col chunks of 1");
}

Test(conv_paths, cudnn_on_the_gpu) {
    test_need_gpu();
    test_gpu_cudnn(true);
    check_all((Device){DEVICE_CUDA, 0}, 0, "gpu cuDNN");
}

Test(conv_paths, im2col_whole_and_in_chunks_on_the_gpu) {
    test_need_gpu();
    test_gpu_cudnn(false);
    Device cuda = {DEVICE_CUDA, 0};
    check_all(cuda, 0, "gpu whole");
    check_all(cuda, 3, "gpu chunks of 3");
}
