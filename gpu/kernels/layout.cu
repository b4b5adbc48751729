/* layout.cu - strided copy with dtype conversion, and fill, for all four
 * dtypes: the twins of core/cpu/layout.c.
 *
 * Same-dtype copies move the element's bits (int64 values above 2^53 must
 * not pass through a double); converting copies go through double with C
 * cast semantics, as the CPU's dtype_load / dtype_store. A contiguous
 * same-dtype copy is one cudaMemcpyAsync on the thread's stream.
 */
#include "gpu/kernels/common.cuh"

template <typename T> __device__ inline double load_as_double(const void *p, int64_t i) {
    return (double)((const T *)p)[i];
}

__device__ inline double load_any(const void *p, int dtype, int64_t i) {
    switch (dtype) {
    case GPU_F32: return load_as_double<float>(p, i);
    case GPU_F64: return load_as_double<double>(p, i);
    case GPU_I64: return load_as_double<int64_t>(p, i);
    case GPU_U8: return load_as_double<uint8_t>(p, i);
    }
    return 0;
}

__device__ inline void store_any(void *p, int dtype, int64_t i, double v) {
    switch (dtype) {
    case GPU_F32: ((float *)p)[i] = (float)v; break;
    case GPU_F64: ((double *)p)[i] = v; break;
    case GPU_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case GPU_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    }
}

/* Same dtype: E is an unsigned integer of the element's size. */
template <typename E>
__global__ void copy_same(const E *src, GpuView sv, bool s_dense, E *dst, GpuView dv,
                          bool d_dense, int64_t n) {
    GRID_STRIDE(i, n) {
        E v = src[s_dense ? i : view_offset(sv, i)];
        dst[d_dense ? i : view_offset(dv, i)] = v;
    }
}

__global__ void copy_convert(const void *src, int sdt, GpuView sv, void *dst, int ddt,
                             GpuView dv, int64_t n) {
    GRID_STRIDE(i, n) store_any(dst, ddt, view_offset(dv, i), load_any(src, sdt, view_offset(sv, i)));
}

static size_t elem_size(int dtype) {
    switch (dtype) {
    case GPU_F32: return 4;
    case GPU_F64: return 8;
    case GPU_I64: return 8;
    default: return 1;
    }
}

extern "C" void gpu_launch_copy(const void *src, int src_dtype, GpuView sv, void *dst,
                                int dst_dtype, GpuView dv, int64_t n) {
    if (n <= 0) return;
    bool sd = view_is_contiguous(sv), dd = view_is_contiguous(dv);
    if (src_dtype == dst_dtype) {
        size_t es = elem_size(src_dtype);
        if (sd && dd) {
            if (src != dst)
                gpu_record((int)cudaMemcpyAsync(dst, src, (size_t)n * es, cudaMemcpyDeviceToDevice,
                                                gpu_stream()),
                           "cudaMemcpyAsync (copy)");
            return;
        }
        unsigned blocks = gpu_blocks(n);
        if (es == 8)
            copy_same<uint64_t><<<blocks, GPU_THREADS, 0, gpu_stream()>>>(
                (const uint64_t *)src, sv, sd, (uint64_t *)dst, dv, dd, n);
        else if (es == 4)
            copy_same<uint32_t><<<blocks, GPU_THREADS, 0, gpu_stream()>>>(
                (const uint32_t *)src, sv, sd, (uint32_t *)dst, dv, dd, n);
        else
            copy_same<uint8_t><<<blocks, GPU_THREADS, 0, gpu_stream()>>>(
                (const uint8_t *)src, sv, sd, (uint8_t *)dst, dv, dd, n);
    } else {
        copy_convert<<<gpu_blocks(n), GPU_THREADS, 0, gpu_stream()>>>(src, src_dtype, sv, dst,
                                                                      dst_dtype, dv, n);
    }
    gpu_check_launch("copy kernel");
}

template <typename T> __global__ void fill_kernel(T *dst, T value, int64_t n) {
    GRID_STRIDE(i, n) dst[i] = value;
}

extern "C" void gpu_launch_fill(void *dst, int dtype, int64_t n, double value) {
    if (n <= 0) return;
    if (value == 0.0) { /* zero bits for every dtype; -0.0 too, as the CPU's memset */
        gpu_record((int)cudaMemsetAsync(dst, 0, (size_t)n * elem_size(dtype), gpu_stream()),
                   "cudaMemsetAsync (fill)");
        return;
    }
    unsigned blocks = gpu_blocks(n);
    switch (dtype) {
    case GPU_F32:
        fill_kernel<float><<<blocks, GPU_THREADS, 0, gpu_stream()>>>((float *)dst, (float)value, n);
        break;
    case GPU_F64:
        fill_kernel<double><<<blocks, GPU_THREADS, 0, gpu_stream()>>>((double *)dst, value, n);
        break;
    case GPU_I64:
        fill_kernel<int64_t>
            <<<blocks, GPU_THREADS, 0, gpu_stream()>>>((int64_t *)dst, (int64_t)value, n);
        break;
    default:
        fill_kernel<uint8_t>
            <<<blocks, GPU_THREADS, 0, gpu_stream()>>>((uint8_t *)dst, (uint8_t)value, n);
        break;
    }
    gpu_check_launch("fill kernel");
}
