/* conv.cu - im2col and col2im over a batch, the twins of core/cpu/conv.c.
 *
 * Layout as the CPU contract: n images [n, C, H, W] <-> columns
 * [C*kh*kw, n*L] (L = out_h*out_w) with rows `ld` elements apart; image i
 * owns columns i*L .. i*L+L-1 of every row.
 *
 * im2col: one thread per column element, reading its input pixel or 0.
 * col2im: one thread per image pixel, gathering the column entries that
 * came from it instead of scattering with atomics. For a pixel there is at
 * most one (oh, ow) per (ki, kj), and the gather visits (ki, kj) in the
 * CPU's order, so the sums are added in the same order: deterministic and
 * equal to the CPU's result.
 */
#include "gpu/kernels/common.cuh"

template <typename T>
__global__ void im2col_kernel(GpuWindow w, const T *images, int64_t n, T *columns, int64_t ld) {
    const int64_t OW = w.out_w, L = w.out_h * w.out_w;
    const int64_t rows = w.channels * w.kernel_h * w.kernel_w;
    const int64_t total = rows * n * L;
    GRID_STRIDE(t, total) {
        int64_t col = t % (n * L), row = t / (n * L);
        int64_t img = col / L, l = col % L;
        int64_t oh = l / OW, ow = l % OW;
        int64_t kj = row % w.kernel_w, ki = (row / w.kernel_w) % w.kernel_h;
        int64_t c = row / (w.kernel_w * w.kernel_h);
        int64_t ih = oh * w.stride_h - w.pad_h + ki * w.dilation_h;
        int64_t iw = ow * w.stride_w - w.pad_w + kj * w.dilation_w;
        T v = (T)0;
        if (ih >= 0 && ih < w.height && iw >= 0 && iw < w.width)
            v = images[((img * w.channels + c) * w.height + ih) * w.width + iw];
        columns[row * ld + col] = v;
    }
}

template <typename T>
__global__ void col2im_kernel(GpuWindow w, const T *columns, int64_t ld, int64_t n, T *images) {
    const int64_t H = w.height, W = w.width, OH = w.out_h, OW = w.out_w, L = OH * OW;
    const int64_t total = n * w.channels * H * W;
    GRID_STRIDE(t, total) {
        int64_t iw = t % W, ih = (t / W) % H;
        int64_t c = (t / (W * H)) % w.channels, img = t / (W * H * w.channels);
        T acc = (T)0;
        for (int64_t ki = 0; ki < w.kernel_h; ki++) {
            int64_t hnum = ih + w.pad_h - ki * w.dilation_h; /* = oh * stride_h */
            if (hnum < 0 || hnum % w.stride_h) continue;
            int64_t oh = hnum / w.stride_h;
            if (oh >= OH) continue;
            for (int64_t kj = 0; kj < w.kernel_w; kj++) {
                int64_t wnum = iw + w.pad_w - kj * w.dilation_w;
                if (wnum < 0 || wnum % w.stride_w) continue;
                int64_t ow = wnum / w.stride_w;
                if (ow >= OW) continue;
                int64_t row = (c * w.kernel_h + ki) * w.kernel_w + kj;
                acc += columns[row * ld + img * L + oh * OW + ow];
            }
        }
        images[t] = acc;
    }
}

extern "C" void gpu_launch_im2col(int dtype, const GpuWindow *w, const void *images, int64_t n,
                                  void *columns, int64_t ld) {
    int64_t total = w->channels * w->kernel_h * w->kernel_w * n * w->out_h * w->out_w;
    if (total <= 0) return;
    if (dtype == GPU_F32)
        im2col_kernel<float><<<gpu_blocks(total), GPU_THREADS, 0, gpu_stream()>>>(
            *w, (const float *)images, n, (float *)columns, ld);
    else
        im2col_kernel<double><<<gpu_blocks(total), GPU_THREADS, 0, gpu_stream()>>>(
            *w, (const double *)images, n, (double *)columns, ld);
    gpu_check_launch("im2col kernel");
}

extern "C" void gpu_launch_col2im(int dtype, const GpuWindow *w, const void *columns, int64_t ld,
                                  int64_t n, void *images) {
    int64_t total = n * w->channels * w->height * w->width;
    if (total <= 0) return;
    if (dtype == GPU_F32)
        col2im_kernel<float><<<gpu_blocks(total), GPU_THREADS, 0, gpu_stream()>>>(
            *w, (const float *)columns, ld, n, (float *)images);
    else
        col2im_kernel<double><<<gpu_blocks(total), GPU_THREADS, 0, gpu_stream()>>>(
            *w, (const double *)columns, ld, n, (double *)images);
    gpu_check_launch("col2im kernel");
}
