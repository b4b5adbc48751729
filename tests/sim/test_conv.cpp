/* test_conv.cpp - gpu/kernels/conv.cu's im2col and col2im on the CPU by
 * tests/sim against their definitions: a window with padding, strides and
 * dilation that differ by axis, two images, columns `ld` apart with room
 * past each row; col2im as im2col's adjoint (the sums of the columns that
 * came from each pixel), float32 and float64.
 *
 * Prints "sim_conv: N passed, M failed"; exits 1 on a failure.
 */
#include "tests/sim/test_common.h"

template <typename T> static void conv_case(void) {
    GpuWindow w = {2, 3, 7, 6, 3, 2, 2, 1, 1, 0, 1, 2, 0, 0};
    w.out_h = (w.height + 2 * w.pad_h - w.dilation_h * (w.kernel_h - 1) - 1) / w.stride_h + 1;
    w.out_w = (w.width + 2 * w.pad_w - w.dilation_w * (w.kernel_w - 1) - 1) / w.stride_w + 1;
    int64_t n = w.batch, L = w.out_h * w.out_w, rows = w.channels * w.kernel_h * w.kernel_w;
    int64_t ld = n * L + 3, pixels = n * w.channels * w.height * w.width;
    std::vector<T> images = sim_as<T>(sim_values(pixels, 11));
    std::vector<T> columns((size_t)(rows * ld), (T)7), back((size_t)pixels, (T)NAN);
    std::vector<long double> want((size_t)(rows * ld), 7), want_back((size_t)pixels, 0);
    for (int64_t row = 0; row < rows; row++)
        for (int64_t img = 0; img < n; img++)
            for (int64_t l = 0; l < L; l++) {
                int64_t c = row / (w.kernel_h * w.kernel_w), ki = row / w.kernel_w % w.kernel_h;
                int64_t kj = row % w.kernel_w, oh = l / w.out_w, ow = l % w.out_w;
                int64_t ih = oh * w.stride_h - w.pad_h + ki * w.dilation_h;
                int64_t iw = ow * w.stride_w - w.pad_w + kj * w.dilation_w;
                bool inside = ih >= 0 && ih < w.height && iw >= 0 && iw < w.width;
                int64_t at = ((img * w.channels + c) * w.height + ih) * w.width + iw;
                want[row * ld + img * L + l] = inside ? images[at] : 0;
                if (inside) want_back[at] += images[at]; /* col2im of the same columns */
            }
    gpu_launch_im2col(sim_dtype<T>(), &w, images.data(), n, columns.data(), ld);
    gpu_launch_col2im(sim_dtype<T>(), &w, columns.data(), ld, n, back.data());
    char name[64];
    snprintf(name, sizeof name, "im2col (ld past each row kept) %s", sim_dtype_name(sizeof(T)));
    sim_expect_near(name, columns, want, 0);
    snprintf(name, sizeof name, "col2im of im2col %s", sim_dtype_name(sizeof(T)));
    sim_expect_near(name, back, want_back, 1e-6);
}

int main(void) {
    conv_case<float>();
    conv_case<double>();
    return sim_summary("conv");
}
